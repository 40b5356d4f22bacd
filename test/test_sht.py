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
    assert a._leg_fwd is tables.sep_tables(16, True, "float32", a.legendre_rows)["leg_fwd"]
    assert a.legendre_rows == tables.default_legendre_rows(16)
    assert sht.get_transform(16, "sep", True, legendre_rows=a.legendre_rows) is a
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
    with pytest.raises(ValueError, match="legendre_rows must be one of"):
        sht.get_transform(16, "sep", True, legendre_rows="quarter")


@pytest.mark.parametrize("rows", tables.LEGENDRE_ROWS)
@pytest.mark.parametrize("n", [6, 10, 12])
@pytest.mark.parametrize("real", [True, False])
def test_sep_odd_and_even_half_bandwidth(n, real, rows):
    """L = n/2 odd pads the parity groups of orders; check both cases against NumPy."""
    f = np.random.default_rng(n).standard_normal((2, n, n, 3))
    tr = sht.get_transform(n, "sep", real, legendre_rows=rows)
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


def test_sep_butterfly_tables_match_the_full_dft_and_the_mirror_rows():
    """fold + half-length DFT tables reproduce exp(-i m az_k) for every k and m < L (azimuth
    butterfly), and the polar butterfly pairs row j with its mirror n - j with the sign
    (-1)^(l+m) of P_l^m(pi - theta) = (-1)^(l+m) P_l^m(theta)."""
    n = 12
    t = tables.sep_tables(n, True, "float64")
    L, h, L2 = n // 2, n // 2, (n // 2 + 1) // 2
    _, az = tables.grid(n)
    dft = t["dft"].reshape(2, 2, L2, 2, h)  # (kf, s, mh, r, k')
    fold = t["fold"].reshape(2, 2, 2, 2)  # (kf, s, kh, jh)
    np.testing.assert_array_equal(t["unfold"], t["fold"].T)
    for mm in range(L):
        kf, mh = mm % 2, mm // 2
        for s in range(2):
            assert fold[kf, s, 0, 1] == (-1.0) ** (kf + s)  # mirror row: (-1)^(l+m), l = s mod 2
            for k in range(n):
                kh, kp = divmod(k, h)
                got = fold[kf, s, kh, 0] * (dft[kf, s, mh, 0, kp] + 1j * dft[kf, s, mh, 1, kp])
                assert abs(got - np.exp(-1j * mm * az[k])) < 1e-12
    P = tables.legendre(n)  # (m, l, j)
    l, m = np.arange(L)[None, :, None], np.arange(L)[:, None, None]
    np.testing.assert_allclose(P[:, :, n - 1:h:-1], (-1.0) ** (l + m) * P[:, :, 1:h], atol=1e-12)
    np.testing.assert_array_equal(t["fwd_rows"], np.r_[1:h + 1, n - 1:h - 1:-1])


@pytest.mark.parametrize("rows", tables.LEGENDRE_ROWS)
@pytest.mark.parametrize("n", [6, 10, 12, 16, 32])
def test_symmetric_legendre_equals_the_plain_sum(n, rows):
    """Both Legendre steps of the sep transform (half the polar rows with even/odd parts, or
    all rows) equal the plain Legendre sum over all n rows (written out here in float32) to
    float32 rounding, forward and inverse, for odd (n = 6, 10) and even L; pole and equator
    rows included."""
    rng = np.random.default_rng(n)
    f = rng.standard_normal((2, n, n, 3)).astype("float32")
    L = n // 2
    P = tables.legendre(n).astype("float32")  # (m, l, j)
    a = tables.dh_weights(n).astype("float32")
    _, az = tables.grid(n)
    m = np.arange(L)
    e = np.exp(-1j * np.outer(m, az)).astype("complex64")  # (m, k)
    g = np.einsum("mk,bkjc->bmjc", e, f)  # azimuth DFT
    plain = np.float32(tables.forward_scale(n)) * np.einsum("mlj,j,bmjc->blmc", P, a, g)  # (b, l, m, c)
    tr = sht.get_transform(n, "sep", True, legendre_rows=rows)
    re, im = tr.forward(f)
    got = np.asarray(re)[:, 0] + 1j * np.asarray(im)[:, 0]
    assert rel_err(got, plain) < 2e-6
    # inverse: sum_l P_l^m(theta_j) c_lm, then Re sum_m w_m c_m(j) e^{i m az}
    c = (rng.standard_normal((2, L, L, 3)) + 1j * rng.standard_normal((2, L, L, 3))).astype("complex64")
    c *= (m[None, :] <= np.arange(L)[:, None])[None, :, :, None]
    c[:, :, 0] = c[:, :, 0].real
    w = np.where(m > 0, 2.0, 1.0).astype("float32")
    cj = np.einsum("mlj,blmc->bmjc", P, c)
    plain_inv = np.einsum("m,mk,bmjc->bkjc", w, np.conj(e), cj).real
    rec = tr.inverse(c.real[:, None].astype("float32"), c.imag[:, None].astype("float32"))
    assert rel_err(rec, plain_inv) < 2e-6


def _pyshtools_coeffs(f):
    """pyshtools' orthonormal complex coefficients (m >= 0) of real maps (batch, n, n), (batch, L, L)."""
    import pyshtools

    L = f.shape[1] // 2
    return np.stack([pyshtools.SHGrid.from_array(x.T.astype(complex)).expand(
        csphase=-1, normalization="ortho").coeffs[0, :L, :L] for x in f])


# max |error| / max |coefficient| against pyshtools; measured (n = 16..64, normal maps):
# float32 1.6e-7, float16 5.2e-4, bfloat16 4.1e-3 (docs/speed.md)
PRECISION_BOUNDS = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1.5e-2}


@pytest.mark.parametrize("rows", tables.LEGENDRE_ROWS)
@pytest.mark.parametrize("dtype", sorted(PRECISION_BOUNDS))
@pytest.mark.parametrize("n", [16, 32])
def test_reduced_precision_error_against_pyshtools(n, dtype, rows):
    """Forward transform in each compute dtype and with each Legendre step against pyshtools
    (float64), and the round trip against float64, within the bounds in PRECISION_BOUNDS."""
    f = np.random.default_rng(n).standard_normal((3, n, n))
    ref = _pyshtools_coeffs(f)
    tr = sht.get_transform(n, "sep", True, dtype, rows)
    assert tr.dtype == dtype and tr.table_dtype == "float32"
    re, im = tr.forward(f[..., None].astype("float32"))
    assert re.dtype == dtype
    c = np.asarray(re, "float64")[:, 0, :, :, 0] + 1j * np.asarray(im, "float64")[:, 0, :, :, 0]
    assert rel_err(c, ref) < PRECISION_BOUNDS[dtype]
    rec = tr.inverse(re, im)
    assert rec.dtype == dtype
    t64 = sht.get_transform(n, "sep", True, "float64")
    assert rel_err(np.asarray(rec, "float64"), t64.inverse(*t64.forward(f[..., None]))) < 1.5 * PRECISION_BOUNDS[dtype]


@pytest.mark.parametrize("rows", tables.LEGENDRE_ROWS)
@pytest.mark.parametrize("n", [10, 16])
def test_order_major_analysis_is_the_numpy_transform_reordered(n, rows):
    """analysis() holds the real-layout coefficients (NumPy reference) at ((kf, s, mh, r), i)
    ('half') or ((kf, mh, r, s), i) ('all') with m = 2 mh + kf, l = 2 i + s; synthesis() inverts it on
    band-limited maps (and rejects other layouts)."""
    f = np.random.default_rng(n).standard_normal((2, n, n, 3))
    tr = sht.get_transform(n, "sep", True, "float64", rows)
    L, L2 = n // 2, (n // 2 + 1) // 2
    assert tr.order_major_axes == tables.ORDER_MAJOR_AXES[rows]
    z = np.asarray(tr.analysis(f)).reshape(tr.order_major_shape + (2, 3))
    z = z.transpose([tr.order_major_axes.index(a) for a in ("kf", "s", "mh", "r", "i")] + [5, 6])
    assert z.shape == (2, 2, L2, 2, L2, 2, 3)  # (kf, s, mh, r, i, b, c)
    c = spherical.sph_harm_transform_batch(f, "naive", tables.harmonics(n, True))[:, 0]  # (b, l, m, c)
    ref = np.stack([c.real, c.imag], axis=1)  # (b, r, l, m, c)
    for m in range(L):
        for l in range(L):
            np.testing.assert_allclose(z[m % 2, l % 2, m // 2, :, l // 2].transpose(1, 0, 2),
                                       ref[:, :, l, m], atol=1e-10)
    if L % 2:
        assert np.all(z[1, :, L2 - 1] == 0)  # the padded order m = L
        assert np.all(z[:, 1, :, :, L2 - 1] == 0)  # the padded degree l = L
    band_limited = spherical.sph_harm_inverse_batch(c[:, None], "naive").real
    np.testing.assert_allclose(np.asarray(tr.synthesis(tr.analysis(band_limited))), band_limited, atol=1e-12)
    with pytest.raises(ValueError, match="order-major"):
        tr.synthesis(np.zeros((8 * L2, L2 + 1, 2, 3)))
    with pytest.raises(ValueError, match="method='sep'"):
        sht.get_transform(n, "naive", True).analysis(f)
