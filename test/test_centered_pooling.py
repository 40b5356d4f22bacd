"""Grid-centred area-weighted pooling ('cwap') against a NumPy loop and the grid it pools to."""
import numpy as np
import pytest

from spherical_cnn import layers, spherical, util


def cwap_reference(x, p):
    """Loop version: tent filter centred on fine sample (p*k, p*j), reflected over the north pole."""
    b, n, _, c = x.shape
    m = n // p
    w = util.cell_area_weights(n)
    out = np.zeros((b, m, m, c))
    for k in range(m):
        for j in range(m):
            num, den = 0.0, 0.0
            for da in range(-(p - 1), p):
                for dp in range(-(p - 1), p):
                    t = (p - abs(da)) * (p - abs(dp)) / p ** 4
                    row, col = p * j + dp, (p * k + da) % n
                    if row < 0:  # across the north pole
                        row, col = -row, (col + n // 2) % n
                    num = num + t * w[row] * x[:, col, row]
                    den += t * w[row]
            out[:, k, j] = num / den
    return out


@pytest.mark.parametrize("n, p", [(8, 2), (16, 2), (16, 4)])
def test_matches_numpy_reference(n, p):
    x = np.random.default_rng(n + p).normal(size=(2, n, n, 3)).astype("float32")
    got = np.asarray(layers.CenteredAreaWeightedPooling(pool_size=p)(x))
    np.testing.assert_allclose(got, cwap_reference(x.astype(np.float64), p), rtol=1e-5, atol=1e-6)


def test_constant_maps_stay_constant_and_azimuth_rotation_commutes():
    n = 16
    pool = layers.CenteredAreaWeightedPooling(pool_size=2)
    np.testing.assert_allclose(np.asarray(pool(np.full((1, n, n, 1), 3.0, "float32"))), 3.0, rtol=1e-6)
    x = np.random.default_rng(0).normal(size=(1, n, n, 2)).astype("float32")
    rolled = np.asarray(pool(np.roll(x, 2, axis=1)))
    np.testing.assert_allclose(rolled, np.roll(np.asarray(pool(x)), 1, axis=1), rtol=1e-5, atol=1e-6)


def test_centered_pooling_lands_on_the_coarse_grid_unlike_wap():
    """On a smooth band-limited map, cwap approximates the map's values at the coarse
    DH grid points (error O(h^2)); wap is shifted by half a fine cell (error O(h))."""
    n = 32
    rng = np.random.default_rng(1)
    coeffs = np.zeros((1, 1, n // 2, n // 2, 1), complex)
    coeffs[0, 0, :4, :4, 0] = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    coeffs[0, 0, :, 0, 0] = coeffs[0, 0, :, 0, 0].real
    f = np.real(spherical.sph_harm_inverse_batch(np.tril(coeffs[0, 0, ..., 0])[None, None, ..., None]))
    f = f.astype("float32")
    target = f[:, ::2, ::2]
    err_c = np.linalg.norm(np.asarray(layers.CenteredAreaWeightedPooling(2)(f)) - target)
    err_w = np.linalg.norm(np.asarray(layers.AreaWeightedPooling(2)(f)) - target)
    assert err_c < 0.25 * err_w, (err_c, err_w)


def test_bad_grid_is_named():
    with pytest.raises(ValueError, match="divisible by 2 \\* pool_size"):
        layers.CenteredAreaWeightedPooling(pool_size=4)(np.zeros((1, 12, 12, 1), "float32"))
