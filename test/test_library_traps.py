"""The library's traps that a researcher met using the layers in their own scripts (issue 30,
items 6, 8, 10-12): each test reproduces the trap and checks the fix against something
independent (a NumPy reference, SciPy, an invariance)."""
import warnings

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


def test_a_default_sexp_loss_is_refused_beside_a_head_of_another_layout():
    """SExpHead(3, sign_layout='normal_yzx') has 4 sign logits, which SExpLoss() read as the
    'first_fixed' layout: other labels, trained silently."""
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
