"""The library's traps that a researcher met using the layers in their own scripts (issue 30,
items 6, 8, 10-12): each test reproduces the trap and checks the fix against something
independent (a NumPy reference, SciPy, an invariance)."""
import warnings
import weakref

import keras
import numpy as np
import pytest

import spherical_cnn as scnn
import spherical_regression as sr
from spherical_cnn import rotation as rot
from spherical_cnn import training, util


# ---------------------------------------------------------------- item 6: channels_first

def _wap_reference(x, p=2):
    """The original's wap in NumPy: mean of w_n x over each p x p block, divided by w_m at the
    coarse row ((batch, azimuth, polar, channels); w_n the cell areas of grid n along polar)."""
    n, m = x.shape[1], x.shape[1] // p
    w = util.cell_area_weights(n)[None, None, :, None]
    b, _, _, c = x.shape
    return (x * w).reshape(b, m, p, m, p, c).mean((2, 4)) / util.cell_area_weights(m)[None, None, :, None]


def test_area_weighted_pooling_ignores_the_global_image_data_format():
    """Under keras.config.set_image_data_format('channels_first') it pooled (batch, 32, 32, 3) to
    (2, 32, 16, 2); the maps' layout is (batch, azimuth, polar, channels) whatever that says."""
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    before = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        out = np.asarray(scnn.AreaWeightedPooling()(x))
        cwap = np.asarray(scnn.CenteredAreaWeightedPooling()(x))
    finally:
        keras.config.set_image_data_format(before)
    assert out.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(out, _wap_reference(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cwap, np.asarray(scnn.CenteredAreaWeightedPooling()(x)), atol=1e-6)


# ---------------------------------------------------------------- item 8: mixed precision auto

def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 {}\nbogomips\t: 1\n".format(flags))
    return str(path)


def test_mixed_precision_auto_picks_bfloat16_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    import tensorflow as tf
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    said = []
    plain = _cpuinfo(tmp_path, "avx512f avx512bw")  # AVX-512 without BF16: emulated bfloat16
    assert training.mixed_precision_policy("auto", log=said.append, cpuinfo=plain) is None
    assert len(said) == 1 and "float32" in said[0] and "no native bfloat16" in said[0]
    for flag in ("avx512_bf16", "amx_bf16 amx_tile"):
        said.clear()
        assert training.mixed_precision_policy("auto", log=said.append,
                                               cpuinfo=_cpuinfo(tmp_path, flag)) == "mixed_bfloat16"
        assert "bfloat16" in said[0] and flag.split()[0] in said[0]
    assert training.mixed_precision_policy("auto", cpuinfo=str(tmp_path / "missing")) is None
    assert training.mixed_precision_policy("bfloat16", cpuinfo=plain) == "mixed_bfloat16"  # as asked
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    said.clear()
    assert training.mixed_precision_policy("auto", log=said.append, cpuinfo=plain) == "mixed_float16"
    assert "GPU" in said[0]


def test_this_machines_cpu_flags_are_read():
    """The parser reads the real /proc/cpuinfo where there is one (Linux)."""
    import os
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo")
    flags = open("/proc/cpuinfo").read()
    expected = tuple(f for f in training.NATIVE_BF16_CPU_FLAGS if f" {f}" in flags)
    assert training.cpu_native_bfloat16() == expected


# ---------------------------------------------------------------- item 10: rotations

def _maps(n=16, seed=0):
    from spherical_cnn.studies import equivariance as eq
    return eq.random_bandlimited(2, n, 1, np.random.default_rng(seed)).astype("float32")


def test_rotate_refuses_reflections_zero_quaternions_and_non_rotations():
    f = _maps()
    reflection = np.diag([1.0, 1.0, -1.0])
    with pytest.raises(ValueError, match="determinant -1.*reflection"):
        rot.rotate(f, reflection)
    with pytest.raises(ValueError, match="norm 0"):
        rot.rotate(f, np.zeros(4), scalar_first=True)
    with pytest.raises(ValueError, match="not orthogonal"):
        rot.rotate(f, 2 * np.eye(3))
    out = np.asarray(rot.rotate(f, -reflection))  # a rotation by pi about z (det +1)
    assert np.all(np.isfinite(out))


def test_quaternion_order_is_explicit_and_scipy_rotations_are_accepted():
    from scipy.spatial.transform import Rotation
    f = _maps()
    r = Rotation.from_euler("zyz", [0.3, 1.1, -0.7])
    by_matrix = np.asarray(rot.rotate(f, r.as_matrix()))
    np.testing.assert_allclose(np.asarray(rot.rotate(f, r)), by_matrix, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rot.rotate(f, r.as_quat(), scalar_first=False)), by_matrix,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(rot.rotate(f, r.as_quat(scalar_first=True), scalar_first=True)),
                               by_matrix, atol=1e-5)
    # SciPy's order read as ours is another rotation: the default says which order it reads
    with pytest.warns(UserWarning, match=r"\(w, x, y, z\).*scalar_first=False"):
        wrong = np.asarray(rot.rotate(f, r.as_quat()))
    assert np.abs(wrong - by_matrix).max() > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rot.rotate(f, r.as_quat(scalar_first=True), scalar_first=True)  # explicit: no warning


def test_a_default_sexp_loss_is_refused_beside_a_head_of_another_layout(monkeypatch):
    """SExpHead(3, sign_layout='normal_yzx') has 4 sign logits, which SExpLoss() read as the
    'first_fixed' layout: other labels, trained silently."""
    # the refusal looks at every live SExpHead; other test files of this worker may leave some
    monkeypatch.setattr(sr.losses, "SEXP_HEADS", weakref.WeakSet())
    inputs = keras.Input((5,))
    head = sr.SExpHead(3, sign_layout="normal_yzx")
    model = keras.Model(inputs, head(inputs))
    x = np.random.default_rng(0).standard_normal((8, 5)).astype("float32")
    y = np.random.default_rng(1).standard_normal((8, 3))
    y[:, 1] = -np.abs(y[:, 1])  # normals face the camera: z (stored second) <= 0
    y = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype("float32")
    model.compile("adam", loss=sr.SExpLoss())
    with pytest.raises(ValueError, match="normal_yzx.*head.make_loss"):
        model.fit(x, y, epochs=1, verbose=0)
    model.compile("adam", loss=head.make_loss())
    model.fit(x, y, epochs=1, verbose=0)
    # the default layout's own head is fine, also while the other head lives
    plain = sr.SExpHead(3, fix_first_sign=True)
    other = keras.Model(inputs, plain(inputs))
    other.compile("adam", loss=sr.SExpLoss())
    other.fit(x, y, epochs=1, verbose=0)


# ---------------------------------------------------------------- item 11: SphericalActivation's tables

def test_legendre_recurrence_equals_scipy():
    """The recurrence that replaced L^2 n calls of sph_harm_y (a minute at n = 512)."""
    from scipy.special import sph_harm_y
    from spherical_cnn import sht_tables as tables
    n, L = 128, 48
    P = tables.legendre_values(n, L)
    theta = np.pi * np.arange(n) / n
    m, l = np.arange(L)[:, None, None], np.arange(L)[None, :, None]
    ref = np.where(m <= l, sph_harm_y(l, m, theta[None, None, :], 0.0).real, 0.0)
    np.testing.assert_allclose(P, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("rows", ["all", "half"])
def test_a_transform_of_fewer_degrees_is_the_full_one_truncated(rows):
    from spherical_cnn import sht
    from spherical_cnn.studies import equivariance as eq
    n, L = 32, 8
    full = sht.get_transform(n, "sep", True, "float64", legendre_rows=rows)
    part = sht.get_transform(n, "sep", True, "float64", legendre_rows=rows, degrees=L)
    assert part.L == L and part.nbytes < full.nbytes / 3
    f = np.random.default_rng(0).standard_normal((2, n, n, 3))
    np.testing.assert_allclose(np.asarray(part.forward_packed(f)),
                               np.asarray(full.forward_packed(f))[:, :, :, :L, :L], atol=1e-12)
    c = np.asarray(part.forward_packed(f))
    padded = np.pad(c, [(0, 0)] * 3 + [(0, n // 2 - L)] * 2 + [(0, 0)])
    np.testing.assert_allclose(np.asarray(part.inverse_packed(c)), np.asarray(full.inverse_packed(padded)),
                               atol=1e-12)
    g = eq.random_bandlimited(1, n, 1, np.random.default_rng(1))  # degrees < n/2: not < L
    assert np.abs(np.asarray(part.inverse_packed(part.forward_packed(g))) - g).max() > 1e-3


def test_spherical_activation_computes_what_zero_padding_computed():
    """The fine grid's transforms keep the input's degrees only; the result is that of the
    full transforms of the fine grid with zero-padded coefficients (the layer's definition)."""
    from spherical_cnn import sht
    n, u = 16, 2
    x = np.random.default_rng(2).standard_normal((2, n, n, 3))
    layer = scnn.SphericalActivation("relu", upsample=u, dtype="float64")
    coarse, fine = sht.get_transform(n, "sep", True, "float64"), sht.get_transform(u * n, "sep", True, "float64")
    c = np.asarray(coarse.forward_packed(x))
    c = np.pad(c, [(0, 0)] * 3 + [(0, (u - 1) * n // 2)] * 2 + [(0, 0)])
    y = np.maximum(np.asarray(fine.inverse_packed(c)), 0.0)
    ref = np.asarray(coarse.inverse_packed(np.asarray(fine.forward_packed(y))[:, :, :, :n // 2, :n // 2]))
    np.testing.assert_allclose(np.asarray(layer(x)), ref, atol=1e-12)


def test_table_warnings_state_one_size():
    """At n = 256 the activation's tables (65 MiB) no longer warn; a warning states one size,
    in one unit (before: '0.3 GiB ... method='sep' needs 259 MiB' for the same tables)."""
    from spherical_cnn import sht_tables as tables
    assert tables.estimate_table_nbytes(512, "sep", degrees=128) < 70 * 2 ** 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scnn.SphericalActivation("relu").build((None, 256, 256, 1))  # tables not built yet
    with pytest.warns(UserWarning) as record:
        scnn.SphConv(2, method="naive").build((None, 128, 128, 1))
    text = str(record[0].message)
    assert "method='naive' needs 1.0 GiB" in text and "method='sep' needs 8 MiB" in text
    with pytest.warns(UserWarning) as record:
        scnn.SphericalActivation("relu").build((None, 512, 512, 1))
    text = str(record[0].message)
    assert "method='sep' needs" in text and text.count("needs") == 1 and "upsample" in text


# ---------------------------------------------------------------- item 12: examples, keywords, layouts

def test_wap_does_not_keep_a_constant_map_constant_and_cwap_does():
    """Why the README's and the guide's examples now use CenteredAreaWeightedPooling."""
    ones = np.ones((1, 16, 16, 1), "float32")
    wap = np.asarray(scnn.AreaWeightedPooling()(ones))
    assert 4e-3 < np.abs(wap - 1).max() < 6e-3  # 4.8e-3, the figure
    np.testing.assert_allclose(np.asarray(scnn.CenteredAreaWeightedPooling()(ones)), 1.0, atol=1e-6)
    for page in ("README.md", "docs/guide.md"):
        import os
        text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), page)).read()
        assert "scnn.AreaWeightedPooling()" not in text and "scnn.CenteredAreaWeightedPooling()" in text


def test_sphconv_takes_keras_conv_keywords():
    x = np.random.default_rng(3).standard_normal((2, 8, 8, 2)).astype("float32")
    plain = scnn.SphConv(3, bias_initializer=keras.initializers.Constant(0.25))
    relu = scnn.SphConv(3, bias_initializer=keras.initializers.Constant(0.25), activation="relu",
                        kernel_constraint=keras.constraints.MaxNorm(0.01),
                        bias_regularizer=keras.regularizers.L2(0.5))
    y = np.asarray(plain(x))
    relu.build(x.shape)
    relu.set_weights(plain.get_weights())
    r = np.asarray(relu(x))
    np.testing.assert_allclose(np.asarray(plain.bias), 0.25)
    np.testing.assert_allclose(r, np.maximum(y, 0), atol=1e-6)  # Conv2D's order: bias, then activation
    assert len(relu.losses) == 1 and float(relu.losses[0]) == pytest.approx(0.5 * 3 * 0.25 ** 2)
    again = scnn.SphConv.from_config(relu.get_config())
    assert again.activation is keras.activations.relu and isinstance(again.kernel_constraint,
                                                                     keras.constraints.MaxNorm)
    # the config of a default layer is what it was: saved models' configs load unchanged
    assert not {"activation", "bias_initializer", "bias_regularizer", "kernel_constraint",
                "bias_constraint"} & set(scnn.SphConv(3).get_config())
    # the constraint acts in fit
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, relu(inputs))
    model.compile("sgd", "mse")
    model.fit(x, np.ones((2, 8, 8, 3), "float32"), epochs=1, verbose=0)
    norms = np.sqrt(np.sum(np.square(np.asarray(relu.kernel)), axis=0))  # MaxNorm over axis 0
    assert norms.max() <= 0.01 + 1e-6


def test_torch_harmonics_layout_helpers():
    from spherical_cnn import layouts, sht
    from spherical_cnn.studies import equivariance as eq
    n, L = 16, 8
    f = eq.random_bandlimited(2, n, 3, np.random.default_rng(4))
    re, im = sht.get_transform(n, "sep", True, "float64").forward(f)
    c = np.asarray(re) + 1j * np.asarray(im)  # (2, 1, L, L, 3)
    th = layouts.coeffs_to_torch_harmonics(c)
    assert th.shape == (2, 3, L, L)
    assert th[1, 2, 5, 3] == c[1, 0, 5, 3, 2]  # [b, c, l, m]
    np.testing.assert_array_equal(layouts.coeffs_from_torch_harmonics(th), c)
    # torch-harmonics' default mmax = nlon // 2 + 1 and more degrees: cut to L; fewer orders: zeros
    wide = np.zeros((2, 3, 10, 12), complex)
    wide[:, :, :L, :L] = th
    np.testing.assert_array_equal(layouts.coeffs_from_torch_harmonics(wide, L), c)
    narrow = layouts.coeffs_from_torch_harmonics(th[..., :5])
    np.testing.assert_array_equal(narrow[..., :5, :], c[..., :5, :]) and np.all(narrow[:, :, :, 5:] == 0)


def test_torch_harmonics_synthesises_our_coefficients():
    """Where torch-harmonics is installed (it needs torch 2.14, not in requirements-dev): its
    inverse of our coefficients equals the harmonic series (SciPy) on its own grid."""
    torch = pytest.importorskip("torch")
    th = pytest.importorskip("torch_harmonics")
    from scipy.special import sph_harm_y
    from spherical_cnn import layouts, sht
    from spherical_cnn.studies import equivariance as eq
    n, L = 16, 8
    f = eq.random_bandlimited(1, n, 1, np.random.default_rng(5))
    re, im = sht.get_transform(n, "sep", False, "float64").forward(f)
    c = np.asarray(re) + 1j * np.asarray(im)  # full layout, for the series
    isht = th.InverseRealSHT(2 * n, 2 * n, lmax=L, mmax=L, grid="equiangular", norm="ortho",
                             csphase=True).double()
    g = isht(torch.from_numpy(layouts.coeffs_to_torch_harmonics(c))).numpy()[0, 0]
    theta = np.pi * np.arange(2 * n) / (2 * n - 1)  # equiangular: both poles
    phi = 2 * np.pi * np.arange(2 * n) / (2 * n)
    series = sum((c[0, 0 if m >= 0 else 1, l, abs(m), 0] * sph_harm_y(l, m, theta[:, None], phi[None, :])).real
                 for l in range(L) for m in range(-l, l + 1))
    np.testing.assert_allclose(g, series, atol=1e-12 * np.abs(series).max())
