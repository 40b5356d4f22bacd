"""Anti-aliased nonlinearity (layers.SphericalActivation) and --nonlinearity_upsample.

Maps are (batch, azimuth, polar, channels) on the DH grid; band-limited inputs
and exact rotations come from pyshtools (spherical_cnn.studies.equivariance), as in
test_rotation_study.py.
"""
import hashlib
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn.studies import equivariance as eq
from spherical_cnn import layers, models, params
from spherical_cnn.studies import rotation_study as rs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rel_max(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def _pad_degrees(coeffs, L):
    """pyshtools coefficients (batch, c, 2, l, l) zero-padded to degrees < L."""
    p = L - coeffs.shape[-1]
    return np.pad(coeffs, [(0, 0)] * 3 + [(0, p), (0, p)])


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("n", [8, 16])
def test_identity_keeps_bandlimited_maps(method, n):
    x = eq.random_bandlimited(2, n, 3, rng=n)
    for u in (1, 2, 3):
        y = layers.SphericalActivation("identity", upsample=u, method=method)(x.astype("float32"))
        assert y.shape == x.shape
        assert _rel_max(y, x) < 1e-6, u  # measured: 4e-8 (u=1), 1e-7 to 5e-7 (u=2, 3)


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("n", [8, 16])
def test_relu_matches_pyshtools_reference(method, n):
    """Same algorithm in float64 with pyshtools transforms: expand, synthesize on 2n, ReLU, truncate."""
    x = eq.random_bandlimited(2, n, 3, rng=n + 1)
    fine = eq.synthesize(_pad_degrees(eq.expand(x), n))  # (2, 2n, 2n, 3)
    assert fine.shape[1] == 2 * n
    np.testing.assert_allclose(fine[:, ::2, ::2], x, atol=1e-12)  # same function on both grids
    ref = eq.synthesize(eq.expand(np.maximum(fine, 0))[..., :n // 2, :n // 2])
    got = layers.SphericalActivation("relu", upsample=2, method=method)(x.astype("float32"))
    assert _rel_max(got, ref) < 2e-6  # measured 1e-7 to 5e-7


def _so3_error(layer, x, rotations):
    """||C(f(Rx)) - D(R) C(f(x))|| / ||D(R) C(f(x))||, summed over maps, channels and rotations."""
    base = eq.expand(np.asarray(layer(x.astype("float32")), np.float64))
    num = den = 0.0
    for angles in rotations:
        got = eq.expand(np.asarray(layer(eq.rotate_maps(x, angles).astype("float32")), np.float64))
        want = eq.rotate_coeffs(base, angles)
        num += np.sum((got - want) ** 2)
        den += np.sum(want ** 2)
    return np.sqrt(num / den)


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("nonlin", ["relu", "prelu"])
def test_upsampling_reduces_equivariance_error(nonlin, method):
    # Measured at n = 16 and 8, 3 seeds, both methods (they agree to 3 digits):
    #   u=1: relu 1.08e-1..1.22e-1, prelu 9.6e-2..1.08e-1
    #   u=2: relu 9.9e-3..1.49e-2,  prelu 8.8e-3..1.32e-2  (ratio u2/u1 0.08..0.12)
    #   u=3: 3e-3..5e-3, u=4: 1.4e-3..2.9e-3.
    x = eq.random_bandlimited(2, 16, 4, rng=0)
    rotations = eq.random_rotations(3, rng=10)
    e1 = _so3_error(layers.SphericalActivation(nonlin, upsample=1, method=method), x, rotations)
    e2 = _so3_error(layers.SphericalActivation(nonlin, upsample=2, method=method), x, rotations)
    assert 8e-2 < e1 < 1.5e-1, e1
    assert e2 < 2.5e-2 and e2 < 0.2 * e1, (e1, e2)


def test_upsample_1_is_the_plain_nonlinearity_and_weights_match():
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    plain = models.nonlinearity("prelu", 4, "plain")
    wrapped = layers.SphericalActivation("prelu", upsample=1)
    np.testing.assert_array_equal(wrapped(x), plain(x))
    fine = layers.SphericalActivation("prelu", upsample=2, method="sep")
    fine.build(x.shape)
    for layer in (wrapped, fine):
        assert [tuple(w.shape) for w in layer.weights] == [(1, 1, 3)]
        np.testing.assert_array_equal(layer.get_weights()[0], np.float32(0.1))
    fine.set_weights([np.array([[[0.5, -1.0, 2.0]]], "float32")])
    assert not np.allclose(fine(x), plain(x))


def test_config_roundtrip_and_saved_model_loads(tmp_path):
    layer = layers.SphericalActivation("elu", upsample=3, method="sep", name="a")
    clone = layers.SphericalActivation.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert (clone.nonlinearity, clone.upsample, clone.method) == ("elu", 3, "sep")

    inp = keras.Input((16, 16, 2))
    y = layers.SphConv(3, method="sep")(inp)
    y = layers.SphericalActivation("prelu", upsample=2, method="sep", name="act")(y)
    model = keras.Model(inp, y)
    model.get_layer("act").set_weights([np.array([[[0.3, -0.2, 0.7]]], "float32")])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = eq.random_bandlimited(2, 16, 2, rng=4).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-7)


def test_xla_compiled_and_gradients():
    x = tf.constant(eq.random_bandlimited(2, 8, 3, rng=5).astype("float32"))
    layer = layers.SphericalActivation("prelu", upsample=2, method="sep")
    eager = layer(x)
    compiled = tf.function(lambda v: layer(v), jit_compile=True)(x)
    np.testing.assert_allclose(compiled, eager, atol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) ** 2)
    gx, ga = tape.gradient(loss, [x, layer.weights[0]])
    assert np.all(np.isfinite(gx)) and np.abs(ga).max() > 0
    with pytest.raises(ValueError, match="upsample must be an integer >= 1"):
        layers.SphericalActivation("relu", upsample=0)
    with pytest.raises(ValueError, match=r"--nonlin 'bogus'"):
        layers.SphericalActivation("bogus")


def _model32(extra=()):
    args = params.parse(["@" + os.path.join(ROOT, "params", f) for f in ("model-32.txt", "synthetic-32.txt")]
                        + ["--logdir", "unused"] + list(extra))
    keras.utils.set_random_seed(0)
    return models.build_model(args, (32, 32, 2))


def _fingerprint(model):
    return [(w.path, tuple(w.shape)) for w in model.weights]


def _digest(model):
    return hashlib.sha1(repr(_fingerprint(model)).encode()).hexdigest()


def test_default_flag_keeps_the_model_and_upsample_keeps_its_weights():
    # model-32.txt itself asks for --spectral_pool --nonlinearity_upsample 2 (the rotation
    # study's best configuration); upsample 1 must give back the plain model
    default = _model32(["--nonlinearity_upsample", "1"])
    # recorded before --nonlinearity_upsample existed (grid pooling; spectral pooling has the
    # same weights): sha1 of repr(_fingerprint(model))
    assert _digest(default) == "84367eb4b143f0f488e073aa13c2e073c66f0fd2"
    assert default.count_params() == 94488
    acts = [l for l in default.layers if l.name.endswith("_act")]
    assert len(acts) == 12 and all(type(l) is keras.layers.PReLU for l in acts)

    fine = _model32(["--nonlinearity_upsample", "2"])
    assert [l.name for l in fine.layers] == [l.name for l in default.layers]
    assert all(isinstance(fine.get_layer(l.name), layers.SphericalActivation) for l in acts)
    assert fine.get_layer("conv0_b0_act").upsample == 2
    assert fine.get_layer("conv0_b0_act").method == "sep"
    # trained weights of a plain model load into the anti-aliased one, layer by layer
    assert [tuple(w.shape) for w in fine.weights] == [s for _, s in _fingerprint(default)]
    fine.set_weights(default.get_weights())


@pytest.mark.parametrize("extra, message", [
    (["--nonlinearity_upsample", "0"], "--nonlinearity_upsample must be >= 1, got 0"),
    (["--nonlinearity_upsample", "2", "--nonlin", "identity"],
     "--nonlinearity_upsample has no effect with --nonlin identity"),
    (["--nonlinearity_upsample", "2", "--model", "planar"], "--nonlinearity_upsample needs a spherical"),
])
def test_flag_errors_are_one_line(extra, message):
    with pytest.raises(params.ParamsError, match=message) as err:
        params.parse(["--model", "two_branch", "--logdir", "unused"] + extra)
    assert "\n" not in str(err.value)


def test_block_argument_without_the_flag():
    args = params.parse(["--model", "two_branch", "--logdir", "unused", "--nonlin", "relu"])
    inp = keras.Input((16, 16, 2))
    out = models.conv_block(inp, args, 4, "conv0_b0", nonlinearity_upsample=2)
    model = keras.Model(inp, out)
    act = model.get_layer("conv0_b0_act")
    assert isinstance(act, layers.SphericalActivation) and act.upsample == 2
    assert act.nonlinearity == "relu" and act.method == "naive"
    assert model.output_shape == (None, 16, 16, 4)


def test_rotation_study_planar_baseline_drops_the_flag():
    cfg = rs.StudyConfig(extra_flags=("--nonlinearity_upsample", "2"))
    assert rs.spherical_args(cfg, "unused", "unused").nonlinearity_upsample == 2
    assert rs.planar_args(cfg, "unused", "unused").nonlinearity_upsample == 1


@pytest.mark.parametrize("n", [10, 12])
@pytest.mark.parametrize("upsample", [2, 3])
def test_sep_and_dense_transforms_agree_for_odd_and_even_half_bandwidths(n, upsample):
    """Resampling between grids with 'sep' (whose tables pad an order when L is odd: n = 10)
    and with the dense 'naive' harmonics must give the same map."""
    x = np.random.default_rng(n).standard_normal((2, n, n, 3)).astype("float32")
    sep = np.asarray(layers.SphericalActivation("relu", upsample=upsample, method="sep")(x))
    dense = np.asarray(layers.SphericalActivation("relu", upsample=upsample, method="naive")(x))
    assert np.abs(sep - dense).max() < 2e-6 * np.abs(dense).max()
