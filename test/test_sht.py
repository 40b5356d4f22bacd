"""keras.ops transforms (spherical_cnn.sht) against the float64 NumPy reference."""
import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import sht
from spherical_cnn import sht_tables as tables
from spherical_cnn import spherical


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.complex128), np.asarray(b, dtype=np.complex128)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture
def maps():
    return np.random.default_rng(1).standard_normal((3, 16, 16, 2))


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("real", [True, False])
def test_forward_inverse_match_numpy(maps, method, real):
    tr = sht.get_transform(16, method, real)
    re, im = tr.forward(maps.astype("float32"))
    S = 1 if real else 2
    assert tuple(re.shape) == tuple(im.shape) == (3, S, 8, 8, 2)
    ref = spherical.sph_harm_transform_batch(maps, "naive", tables.harmonics(16, real))
    assert rel_err(np.asarray(re) + 1j * np.asarray(im), ref) < 1e-5
    rec = tr.inverse(re, im)
    ref_rec = spherical.sph_harm_inverse_batch(ref, "naive").real
    assert rec.dtype == "float32"
    assert rel_err(rec, ref_rec) < 1e-5


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_float64_transform_is_exact(maps, method):
    tr = sht.get_transform(16, method, True, "float64")
    re, im = tr.forward(maps)
    ref = spherical.sph_harm_transform_batch(maps, "sep", tables.harmonics(16, True))
    assert np.abs(np.asarray(re) + 1j * np.asarray(im) - ref).max() < 1e-12


def test_sep_equals_naive_and_real_equals_complex(maps):
    x = maps.astype("float32")
    outs = {}
    for method in ["naive", "sep"]:
        for real in [True, False]:
            re, im = sht.get_transform(16, method, real).forward(x)
            outs[method, real] = np.asarray(re) + 1j * np.asarray(im)
    for key, c in outs.items():
        assert rel_err(c[:, :1], outs["naive", True]) < 1e-5, key
    assert rel_err(outs["sep", False], outs["naive", False]) < 1e-5
    # the inverse of the full layout equals the inverse of the real layout
    c = outs["naive", False]
    r_full = sht.get_transform(16, "sep", False).inverse(c.real.astype("float32"), c.imag.astype("float32"))
    r_real = sht.get_transform(16, "sep", True).inverse(c[:, :1].real.astype("float32"),
                                                        c[:, :1].imag.astype("float32"))
    assert rel_err(r_full, r_real) < 1e-5


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_roundtrip_of_bandlimited_maps(maps, method):
    tr = sht.get_transform(16, method, True)
    f1 = tr.inverse(*tr.forward(maps.astype("float32")))
    f2 = tr.inverse(*tr.forward(f1))
    assert rel_err(f2, f1) < 1e-5


def test_compiled_with_unknown_batch(maps):
    tr = sht.get_transform(16, "sep", True)

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 2), tf.float32)])
    def roundtrip(x):
        return tr.inverse(*tr.forward(x))

    eager = tr.inverse(*tr.forward(maps.astype("float32")))
    assert rel_err(roundtrip(maps.astype("float32")), eager) < 1e-6


def test_transforms_and_tables_are_shared():
    a = sht.get_transform(16, "sep", True)
    assert sht.get_transform(16, "sep", True) is a
    assert a._leg_fwd is tables.sep_tables(16, True, "float32")["leg_fwd"]
    # the sep tables do not depend on the layout: the full layout reuses them
    assert sht.get_transform(16, "sep", False)._dft is a._dft
    assert sht.get_transform(16, "naive", True) is not a
    assert a.nbytes == tables.table_nbytes(16, "sep", True)


def test_spectral_conversion_roundtrip(maps):
    c = spherical.sph_harm_transform_batch(maps)
    x = sht.complex_to_spectral(c)
    assert x.shape == (3, 2, 2, 8, 8, 2) and x.dtype == np.float64
    assert np.array_equal(sht.spectral_to_complex(x), c)
    with pytest.raises(ValueError, match="spectral"):
        sht.spectral_to_complex(c)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="method"):
        sht.get_transform(16, "fft")
    with pytest.raises(ValueError, match="even"):
        sht.get_transform(15)
    tr = sht.get_transform(16, "sep", True)
    with pytest.raises(ValueError, match=r"\(2, 8, 16, 1\)"):
        tr.forward(np.zeros((2, 8, 16, 1), "float32"))
    with pytest.raises(ValueError, match="re must be"):
        tr.inverse(np.zeros((2, 2, 8, 8, 1), "float32"), np.zeros((2, 2, 8, 8, 1), "float32"))


@pytest.mark.parametrize("n", [6, 10, 12])
@pytest.mark.parametrize("real", [True, False])
def test_sep_odd_and_even_half_bandwidth(n, real):
    """L = n/2 odd pads the parity groups of orders; check both cases against NumPy."""
    f = np.random.default_rng(n).standard_normal((2, n, n, 3))
    tr = sht.get_transform(n, "sep", real)
    re, im = tr.forward(f.astype("float32"))
    ref = spherical.sph_harm_transform_batch(f, "naive", tables.harmonics(n, real))
    assert rel_err(np.asarray(re) + 1j * np.asarray(im), ref) < 1e-5
    rec = tr.inverse(re, im)
    assert rel_err(rec, spherical.sph_harm_inverse_batch(ref, "naive").real) < 1e-5


def test_sep_full_layout_inverse_of_general_coefficients():
    """The full-layout inverse folds negative orders into m >= 0: check it on
    coefficients that are not those of a real map (c_{-m} != (-1)^m conj(c_m))."""
    rng = np.random.default_rng(3)
    L = 8
    c = rng.standard_normal((2, 2, L, L, 3)) + 1j * rng.standard_normal((2, 2, L, L, 3))
    l, m = np.arange(L)[:, None], np.arange(L)[None, :]
    c = c * (m <= l)[None, None, :, :, None]
    c[:, 1, :, 0] = 0  # order 0 lives at s = 0 only
    tr = sht.get_transform(2 * L, "sep", False)
    rec = tr.inverse(c.real.astype("float32"), c.imag.astype("float32"))
    ref = spherical.sph_harm_inverse_batch(c, "naive").real
    assert rel_err(rec, ref) < 1e-5


def test_sep_radix2_tables_match_the_full_dft():
    """fold + half-length DFT tables reproduce exp(-i m az_k) for every k and m < L."""
    n = 12
    t = tables.sep_tables(n, True, "float64")
    L, h, L2 = n // 2, n // 2, (n // 2 + 1) // 2
    _, az = tables.grid(n)
    dft = t["dft"].reshape(2, L2, 2, h)  # (kf, mh, r, k')
    for mm in range(L):
        kf, mh = mm % 2, mm // 2
        for k in range(n):
            kh, kp = divmod(k, h)
            got = t["fold"][kf, kh] * (dft[kf, mh, 0, kp] + 1j * dft[kf, mh, 1, kp])
            assert abs(got - np.exp(-1j * mm * az[k])) < 1e-12


@pytest.mark.parametrize("n", [10, 16])
def test_order_major_analysis_is_the_numpy_transform_reordered(n):
    """analysis() holds the real-layout coefficients (NumPy reference) at ((kf, mh, r), l) with
    m = 2 mh + kf; synthesis() inverts it on band-limited maps (and rejects other layouts)."""
    f = np.random.default_rng(n).standard_normal((2, n, n, 3))
    tr = sht.get_transform(n, "sep", True, "float64")
    L, L2 = n // 2, (n // 2 + 1) // 2
    z = np.asarray(tr.analysis(f)).reshape(2, L2, 2, L, 2, 3)  # (kf, mh, r, l, b, c)
    c = spherical.sph_harm_transform_batch(f, "naive", tables.harmonics(n, True))[:, 0]  # (b, l, m, c)
    ref = np.stack([c.real, c.imag], axis=1)  # (b, r, l, m, c)
    for m in range(L):
        np.testing.assert_allclose(z[m % 2, m // 2].transpose(2, 0, 1, 3), ref[:, :, :, m], atol=1e-10)
    if L % 2:
        assert np.all(z[1, L2 - 1] == 0)  # the padded order m = L
    band_limited = spherical.sph_harm_inverse_batch(c[:, None], "naive").real
    np.testing.assert_allclose(np.asarray(tr.synthesis(tr.analysis(band_limited))), band_limited, atol=1e-12)
    with pytest.raises(ValueError, match="order-major"):
        tr.synthesis(np.zeros((4 * L2, L + 1, 2, 3)))
    with pytest.raises(ValueError, match="method='sep'"):
        sht.get_transform(n, "naive", True).analysis(f)
