"""NumPy reference transforms and convolution (spherical_cnn.spherical, sht_tables, util)."""
import numpy as np
import pyshtools
import pytest

from spherical_cnn import sht_tables as tables
from spherical_cnn import spherical, util


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def lowpass(f):
    """Band-limit a single map to degrees < n/2."""
    return spherical.sph_harm_inverse(spherical.sph_harm_transform(f, harmonics=spherical.sph_harm_all(f.shape[0], real=True)))


def lowpass_batch(f):
    h = tables.harmonics(f.shape[1], real=True)
    return spherical.sph_harm_inverse_batch(spherical.sph_harm_transform_batch(f, harmonics=h))


def test_sph_harm_lm_closed_form():
    n = 10
    polar, az = np.meshgrid(*util.sph_sample(n))
    Y = spherical.sph_harm_lm(2, -2, n)
    assert np.allclose(Y, 1 / 4 * np.sqrt(15 / 2 / np.pi) * np.sin(polar) ** 2 * np.exp(-2j * az))
    Y = spherical.sph_harm_lm(2, 1, n)
    assert np.allclose(Y, -1 / 2 * np.sqrt(15 / 2 / np.pi) * np.sin(polar) * np.cos(polar) * np.exp(1j * az))


def test_legendre_table_matches_harmonics():
    n = 16
    P = tables.legendre(n)
    for l, m in [(0, 0), (3, 2), (7, 7), (5, 0)]:
        Y = spherical.sph_harm_lm(l, m, n)
        _, az = util.sph_sample(n)
        assert np.allclose(Y, P[m, l][None, :] * np.exp(1j * m * az)[:, None])
    assert np.all(P[3, 2] == 0)  # m > l


def test_isft_sft_isft_roundtrip(rng):
    """Coefficients of a real band-limited map survive ISFT -> SFT."""
    for n in [8, 16]:
        L = n // 2
        coeffs = [np.zeros(2 * l + 1, dtype=complex) for l in range(L)]
        for l in range(L):
            coeffs[l][l] = rng.standard_normal()
            for m in range(1, l + 1):
                c = rng.standard_normal() + 1j * rng.standard_normal()
                coeffs[l][l + m] = c
                coeffs[l][l - m] = (-1) ** m * np.conj(c)
        f = spherical.sph_harm_inverse(coeffs)
        assert np.abs(f.imag).max() < 1e-12
        coeffs_ = spherical.sph_harm_transform(f)
        for c1, c2 in zip(coeffs, coeffs_):
            assert np.allclose(c1, c2)
        assert np.allclose(f, spherical.sph_harm_inverse(coeffs_))


def test_sft_isft_bandlimits(rng):
    f = rng.random((16, 16))
    f1 = spherical.sph_harm_inverse(spherical.sph_harm_transform(f))
    assert not np.allclose(f1, f)  # f is not band-limited
    f2 = spherical.sph_harm_inverse(spherical.sph_harm_transform(f1))
    assert np.allclose(f1, f2)


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("real", [False, True])
def test_batch_roundtrip(rng, method, real):
    h = tables.harmonics(32, real)
    f = rng.random((3, 32, 32, 2))
    c1 = spherical.sph_harm_transform_batch(f, method, h)
    assert c1.shape == (3, 1 if real else 2, 16, 16, 2)
    r1 = spherical.sph_harm_inverse_batch(c1, method)
    c2 = spherical.sph_harm_transform_batch(r1, method, h)
    r2 = spherical.sph_harm_inverse_batch(c2, method)
    assert np.allclose(c1, c2)
    assert np.allclose(r1, r2)


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_batch_real_equals_complex(rng, method):
    f = rng.random((3, 16, 16, 2))
    hc, hr = tables.harmonics(16, False), tables.harmonics(16, True)
    c1 = spherical.sph_harm_transform_batch(f, method, hc)
    c2 = spherical.sph_harm_transform_batch(f.astype(complex), method, hc)
    c3 = spherical.sph_harm_transform_batch(f, method, hr)
    assert np.allclose(c1, c2)
    assert np.allclose(c1[:, :1], c3)
    # c_{l,-m} = (-1)^m conj(c_lm) for real maps
    sign = (-1.0) ** np.arange(8)
    assert np.allclose(c1[:, 1, :, 1:], (sign[None, None, :, None] * np.conj(c1[:, 0]))[:, :, 1:])
    r_c = spherical.sph_harm_inverse_batch(c1, method)
    r_r = spherical.sph_harm_inverse_batch(c3, method)
    assert np.abs(r_c.imag).max() < 1e-12
    assert np.allclose(r_c.real, r_r)


def test_batch_equals_single(rng):
    f = rng.random((2, 16, 16, 1))
    for real in [False, True]:
        h = spherical.sph_harm_all(16, real=real)
        c1 = spherical.sph_harm_transform_batch(f, harmonics=spherical.sph_harm_to_shtools(h))
        for i in range(2):
            c2 = spherical.sph_harm_to_shtools(spherical.sph_harm_transform(f[i, ..., 0], harmonics=h))
            assert np.allclose(c1[i, ..., 0], c2)


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_sep_equals_naive_complex_input(rng, method):
    f = rng.random((2, 16, 16, 2)) + 1j * rng.random((2, 16, 16, 2))
    c_naive = spherical.sph_harm_transform_batch(f, "naive")
    c = spherical.sph_harm_transform_batch(f, method)
    assert np.allclose(c, c_naive, atol=1e-13)
    assert np.allclose(spherical.sph_harm_inverse_batch(c, method),
                       spherical.sph_harm_inverse_batch(c_naive, "naive"), atol=1e-13)


def _pysh_coeffs(f):
    # a complex grid gives pyshtools' complex harmonics (a real one gives real harmonics)
    return pyshtools.SHGrid.from_array(f.T.astype(complex)).expand(csphase=-1, normalization="ortho").coeffs


@pytest.mark.parametrize("n, atol", [(32, 1e-8), (64, 1e-10)])
def test_coefficients_equal_pyshtools(rng, n, atol):
    f = lowpass_batch(rng.random((1, n, n, 1)))[0, ..., 0]
    c_pysh = _pysh_coeffs(f)
    L = n // 2
    # pyshtools' entry (l = L-1, m = -(L-1)) is unreliable at the DH limit (as in the original test)
    c_pysh[1, L - 1, L - 1] = 0
    if n <= 32:  # the list-of-lists path is slow at n = 64
        c_list = spherical.sph_harm_to_shtools(spherical.sph_harm_transform(f))
        c_list[1, L - 1, L - 1] = 0
        assert np.abs(c_list - c_pysh).max() < atol
    for method in ["naive", "sep"]:
        c = spherical.sph_harm_transform_batch(f[None, ..., None], method)[0, ..., 0]
        c[1, L - 1, L - 1] = 0
        assert np.abs(c - c_pysh).max() < atol


def test_pyshtools_rotation_moves_the_map(rng):
    f = lowpass(rng.random((16, 16)))
    fr = util.sphrot_shtools(f, [0.3, 0.9, -0.4])
    assert fr.shape == f.shape
    assert not np.allclose(fr, f)
    # a pure azimuthal rotation by a whole number of grid steps is a roll of axis 0
    fz = util.sphrot_shtools(f, [2 * np.pi * 3 / 16, 0, 0])
    assert np.allclose(fz, np.roll(f, 3, axis=0)) or np.allclose(fz, np.roll(f, -3, axis=0))


def test_sph_conv_commutes_with_rotation(rng):
    n = 32
    f = lowpass(rng.random((n, n)))
    g = np.zeros_like(f)
    g[:, :5] = rng.random(5)
    g /= g.sum()
    ang = rng.random(3) * 2 * np.pi
    rot_conv = util.sphrot_shtools(spherical.sph_conv(f, g).real, ang)
    conv_rot = spherical.sph_conv(util.sphrot_shtools(f, ang), g).real
    assert not np.allclose(rot_conv, f)
    assert np.allclose(rot_conv, conv_rot)


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_sph_conv_batch_commutes_with_rotation(rng, method):
    n = 16
    f = lowpass_batch(rng.random((1, n, n, 2)))
    g = rng.random((2, n, n, 3))
    h = tables.harmonics(n, True)
    ang = rng.random(3) * 2 * np.pi
    conv = spherical.sph_conv_batch(f, g, h, method)
    rot_f = np.stack([util.sphrot_shtools(f[0, ..., c], ang) for c in range(2)], -1)[None]
    conv_rot = spherical.sph_conv_batch(rot_f, g, h, method)
    rot_conv = np.stack([util.sphrot_shtools(conv[0, ..., d], ang) for d in range(3)], -1)[None]
    assert np.allclose(rot_conv, conv_rot, atol=1e-10)


def test_sph_conv_batch_equals_loop(rng):
    f = rng.random((2, 16, 16, 3))
    g = rng.random((3, 16, 16, 4))
    res = spherical.sph_conv_batch(f, g)
    for i in range(2):
        for j in range(4):
            conv = sum(spherical.sph_conv(f[i, ..., k], g[k, ..., j]) for k in range(3))
            assert np.allclose(conv, res[i, ..., j])


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_sph_conv_batch_real_complex_and_methods(rng, method):
    f = rng.random((2, 16, 16, 3))
    g = rng.random((3, 16, 16, 4))
    hc, hr = tables.harmonics(16, False), tables.harmonics(16, True)
    ref = spherical.sph_conv_batch(f, g, hc, "naive").real
    assert np.allclose(spherical.sph_conv_batch(f, g, hc, method).real, ref)
    assert np.allclose(spherical.sph_conv_batch(f, g, hr, method), ref)


def test_sph_conv_batch_spectral_filters_and_inputs(rng):
    f = rng.random((2, 16, 16, 3))
    g = rng.random((3, 16, 16, 4))
    ref = spherical.sph_conv_batch(f, g)
    cg = spherical.sph_harm_transform_batch(g, m0_only=True)
    assert cg.shape == (3, 1, 8, 1, 4)
    assert np.allclose(spherical.sph_conv_batch(f, cg), ref)
    cf = spherical.sph_harm_transform_batch(f)
    assert np.allclose(spherical.sph_conv_batch(cf, g), ref)
    assert np.allclose(spherical.sph_conv_batch(cf, cg), ref)


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_sph_conv_batch_spectral_pool(rng, method):
    f = rng.random((2, 16, 16, 3))
    g = rng.random((3, 16, 16, 4))
    h, hl = tables.harmonics(16, True), tables.harmonics(8, True)
    out = spherical.sph_conv_batch(f, g, h, method, spectral_pool=1, harmonics_or_legendre_low=hl)
    assert out.shape == (2, 8, 8, 4)
    # equals the full-resolution convolution of the band-limited (degrees < 4) result, subsampled
    full = spherical.sph_conv_batch(f, g, h, method)
    c = spherical.sph_harm_transform_batch(full, method, h)
    c[:, :, 4:] = 0
    assert np.allclose(spherical.sph_harm_inverse_batch(c, method)[:, ::2, ::2], out)


def test_bad_arguments_raise():
    f = np.zeros((2, 16, 16, 1))
    with pytest.raises(ValueError, match="method"):
        spherical.sph_harm_transform_batch(f, method="fft")
    with pytest.raises(ValueError, match=r"\(2, 16, 8, 1\)"):
        spherical.sph_harm_transform_batch(np.zeros((2, 16, 8, 1)))
    with pytest.raises(ValueError, match="harmonics"):
        spherical.sph_harm_transform_batch(f, harmonics=tables.harmonics(8))
    with pytest.raises(ValueError, match="filter"):
        spherical.sph_conv_batch(f, np.zeros((2, 16, 16, 1)))
    with pytest.raises(ValueError, match="even"):
        tables.legendre(7)


def test_tables_are_cached_and_readonly():
    assert tables.legendre(16) is tables.legendre(16)
    assert tables.sep_tables(16, True) is tables.sep_tables(16, True)
    with pytest.raises(ValueError):
        tables.legendre(16)[0, 0, 0] = 1.0
    assert tables.table_nbytes(32, "sep") < tables.table_nbytes(32, "naive")
    assert tables.table_nbytes(32, "naive") == 2 * (32 * 32) * (2 * 16 * 16) * 4


def test_dh_weights_integrate_polynomials():
    """The DH rule integrates cos(polar)^k exactly for k < n/2: with the forward scale
    2 sqrt(2) pi / n and n azimuth samples, integral = 2 sqrt(2) pi sum_j a_j g(polar_j)."""
    n = 16
    a = tables.dh_weights(n)
    polar, _ = util.sph_sample(n)
    for k in range(n // 2):
        exact = 2 * np.pi * (2 / (k + 1) if k % 2 == 0 else 0)  # integral of cos^k over the sphere
        approx = 2 * np.sqrt(2) * np.pi * np.sum(a * np.cos(polar) ** k)
        assert np.isclose(approx, exact, atol=1e-12)
    assert np.allclose(spherical.DHaj(n), a)


def test_degree_interpolation_matches_np_interp(rng):
    vals = rng.random(3)
    M = tables.degree_interpolation(3, 8)
    assert np.allclose(vals @ M, np.interp(np.linspace(0, 1, 8), np.linspace(0, 1, 3), vals))
    assert np.allclose(tables.degree_interpolation(8, 8), np.eye(8))


def test_sph_sample_and_cell_weights():
    polar, az = util.sph_sample(8)
    assert np.allclose(polar, np.pi * np.arange(8) / 8)
    assert np.allclose(az, 2 * np.pi * np.arange(8) / 8)
    assert np.allclose(util.cell_area_weights(8), np.sin(polar + np.pi / 16))
    with pytest.raises(ValueError):
        util.sph_sample(7)


def test_tfrecord2np_roundtrip(tmp_path, rng):
    tf = pytest.importorskip("tensorflow")
    x = rng.random((3, 4, 4, 1)).astype("complex64")
    a = rng.random((3, 4, 4, 1)).astype("complex64")
    fname = str(tmp_path / "train0.tfrecord")
    with tf.io.TFRecordWriter(fname) as w:
        for i in range(3):
            feats = {
                "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x[i].tobytes()])),
                "a": tf.train.Feature(bytes_list=tf.train.BytesList(value=[a[i].tobytes()])),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i + 5])),
                "fname": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"m%d" % i])),
                "idrot": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    X, Y, meta = util.tfrecord2np(fname, (-1, 4, 4, 2), dtype="complex64", get_meta=True)
    assert np.array_equal(X, np.concatenate([x, a], -1))
    assert Y.tolist() == [5, 6, 7]
    assert meta[2] == {"fname": b"m2", "idrot": 2}
    X, Y = util.tfrecord2np(fname, (-1, 4, 4, 2), dtype="complex64", max_records=2)
    assert len(X) == len(Y) == 2
    with pytest.raises(ValueError, match="reshape"):
        util.tfrecord2np(fname, (-1, 5, 4, 2), dtype="complex64")
