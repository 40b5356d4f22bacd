"""Keras layers (spherical_cnn.layers) against the NumPy reference, invariances and Keras plumbing."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import layers, sht, spherical, util
from spherical_cnn import sht_tables as tables


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def lowpass_batch(f):
    h = tables.harmonics(f.shape[1], real=True)
    return spherical.sph_harm_inverse_batch(spherical.sph_harm_transform_batch(f, harmonics=h))


def rotate_batch(x, ang):
    """Rotate every (azimuth, polar) map of a (batch, n, n, c) array with pyshtools."""
    return np.stack([np.stack([util.sphrot_shtools(x[b, ..., c], ang) for c in range(x.shape[3])], -1)
                     for b in range(x.shape[0])])


def zonal_filters(layer):
    """The layer's weights as zonal spectral filters (in_ch, 1, L, 1, filters) for sph_conv_batch."""
    M = tables.degree_interpolation(layer.n_weights, layer.n // 2)
    g = np.einsum("cwf,wl->clf", np.asarray(layer.kernel, dtype=np.float64), M)
    return g[:, None, :, None, :]


@pytest.fixture
def x16():
    return np.random.default_rng(2).standard_normal((2, 16, 16, 3)).astype("float32")


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("real_inputs", [True, False])
@pytest.mark.parametrize("spectral_pool, nfp", [(0, 0), (1, 3), (2, 5)])
def test_sphconv_equals_numpy(x16, method, real_inputs, spectral_pool, nfp):
    layer = layers.SphConv(4, n_filter_params=nfp, spectral_pool=spectral_pool, method=method,
                           real_inputs=real_inputs, use_bias=True)
    out = layer(x16)
    layer.bias.assign(np.arange(4, dtype="float32"))
    out = np.asarray(layer(x16))
    m = 16 // 2 ** spectral_pool
    assert out.shape == (2, m, m, 4) and out.dtype == np.float32
    assert layer.kernel.shape == (3, 8 if nfp == 0 else nfp, 4)
    ref = spherical.sph_conv_batch(x16.astype(np.float64), zonal_filters(layer), tables.harmonics(16, True),
                                   method, spectral_pool, tables.harmonics(m, True)) + np.arange(4)
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("half_rows_min_n", [2, 12, 1 << 30], ids=["half", "mixed", "all"])
@pytest.mark.parametrize("n, spectral_pool", [(10, 0), (12, 1), (20, 1), (24, 2)])
def test_sphconv_sep_odd_half_bandwidths_equal_numpy(n, spectral_pool, half_rows_min_n, monkeypatch):
    """The order-major 'sep' path pads odd L (n = 10) and keeps order L' when the pooled
    L' is odd (n = 12, 20: L' = 3, 5; n = 24 pooled twice: L' = 3); check against NumPy
    with either Legendre step, and with the 'half' layout in and the 'all' layout out."""
    monkeypatch.setattr(tables, "HALF_ROWS_MIN_N", half_rows_min_n)
    x = np.random.default_rng(n).standard_normal((2, n, n, 3)).astype("float32")
    layer = layers.SphConv(4, n_filter_params=3, spectral_pool=spectral_pool, method="sep")
    out = np.asarray(layer(x))
    m = n // 2 ** spectral_pool
    ref = spherical.sph_conv_batch(x.astype(np.float64), zonal_filters(layer), tables.harmonics(n, True),
                                   "naive", spectral_pool, tables.harmonics(m, True))
    assert out.shape == (2, m, m, 4)
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("real_inputs", [True, False])
def test_sphconv_spectral_input_equals_spatial(x16, real_inputs):
    spatial = layers.SphConv(4, real_inputs=real_inputs, spectral_pool=1)
    out = spatial(x16)
    h = tables.harmonics(16, real_inputs)
    spec = sht.complex_to_spectral(spherical.sph_harm_transform_batch(x16.astype(np.float64), harmonics=h))
    spectral = layers.SphConv(4, real_inputs=real_inputs, spectral_pool=1, spectral_input=True)
    spectral.build(spec.shape)
    spectral.set_weights(spatial.get_weights())
    assert rel_err(spectral(spec.astype("float32")), out) < 1e-5
    with pytest.raises(ValueError, match="spectral input"):
        layers.SphConv(4, real_inputs=not real_inputs, spectral_input=True)(spec.astype("float32"))


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_sphconv_commutes_with_rotation(method):
    x = lowpass_batch(np.random.default_rng(3).random((1, 16, 16, 2)))
    layer = layers.SphConv(3, n_filter_params=4, method=method)
    ang = [0.7, 1.1, -2.0]
    rot_conv = rotate_batch(np.asarray(layer(x.astype("float32")), np.float64), ang)
    conv_rot = np.asarray(layer(rotate_batch(x, ang).astype("float32")))
    assert not np.allclose(rot_conv, np.asarray(layer(x.astype("float32"))), atol=1e-3)
    assert rel_err(conv_rot, rot_conv) < 1e-4


def test_sphconv_default_initializer_scale():
    layer = layers.SphConv(64)
    layer.build((None, 32, 32, 16))
    std = np.asarray(layer.kernel).std()
    target = 2 / (2 * np.pi * np.sqrt(16 * 16))
    # a normal truncated at 2 standard deviations has 0.88 of the standard deviation
    assert 0.8 * target < std < 0.95 * target
    assert np.all(np.asarray(layer.bias) == 0)
    assert layers.SphConv(4, use_bias=False)(np.zeros((1, 8, 8, 1), "float32")) is not None


def test_sphconv_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 8, 2))
    w = rng.standard_normal((2, 8, 8, 3))
    layer = layers.SphConv(3, n_filter_params=3, method="sep", dtype="float64")
    layer.build(x.shape)
    k0 = rng.standard_normal(layer.kernel.shape)

    def loss(k):
        layer.kernel.assign(k)
        return float(tf.reduce_sum(layer(x) * w))

    layer.kernel.assign(k0)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value = tf.reduce_sum(layer(xt) * w)
    gk, gx = tape.gradient(value, [layer.kernel, xt])
    assert np.all(np.isfinite(gk)) and np.all(np.isfinite(gx))
    eps = 1e-6
    num = np.zeros_like(k0)
    for idx in np.ndindex(*k0.shape):
        d = np.zeros_like(k0)
        d[idx] = eps
        num[idx] = (loss(k0 + d) - loss(k0 - d)) / (2 * eps)
    assert np.allclose(np.asarray(gk), num, rtol=1e-6, atol=1e-8)
    # the layer is linear in its input: d(sum(w * conv(x)))/dx is the adjoint applied to w
    layer.kernel.assign(k0)
    e = rng.standard_normal(x.shape)
    fd = (float(tf.reduce_sum(layer(x + eps * e) * w)) - float(tf.reduce_sum(layer(x - eps * e) * w))) / (2 * eps)
    assert np.isclose(np.sum(np.asarray(gx) * e), fd, rtol=1e-6)


def test_area_weighted_pooling_equals_numpy(x16):
    out = np.asarray(layers.AreaWeightedPooling()(x16))
    wf, wc = util.cell_area_weights(16), util.cell_area_weights(8)
    y = x16 * wf[None, None, :, None]
    ref = y.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4)) / wc[None, None, :, None]
    assert out.shape == (2, 8, 8, 3)
    assert rel_err(out, ref) < 1e-6
    out4 = np.asarray(layers.AreaWeightedPooling(4)(x16))
    ref4 = (x16 * wf[None, None, :, None]).reshape(2, 4, 4, 4, 4, 3).mean(axis=(2, 4))
    assert rel_err(out4, ref4 / util.cell_area_weights(4)[None, None, :, None]) < 1e-6


def test_spherical_area_weighting(x16):
    out = layers.SphericalAreaWeighting()(x16)
    assert rel_err(out, x16 * util.cell_area_weights(16)[None, None, :, None]) < 1e-7


@pytest.mark.parametrize("method", ["naive", "sep"])
@pytest.mark.parametrize("real_inputs", [True, False])
def test_degree_power_pooling_equals_numpy(x16, method, real_inputs):
    out = np.asarray(layers.DegreePowerPooling(method, real_inputs)(x16))
    c = spherical.sph_harm_transform_batch(x16.astype(np.float64))  # full layout, all orders
    ref = (np.abs(c) ** 2).sum(axis=(1, 3)).reshape(2, 8 * 3)  # (batch, l, channel) flattened
    assert out.shape == (2, 24)
    assert rel_err(out, ref) < 1e-5


def test_degree_power_pooling_is_rotation_invariant():
    x = lowpass_batch(np.random.default_rng(5).random((1, 16, 16, 2)))
    xr = rotate_batch(x, [0.3, 2.1, 1.3])
    pool = layers.DegreePowerPooling("sep")
    p, pr = np.asarray(pool(x.astype("float32"))), np.asarray(pool(xr.astype("float32")))
    assert rel_err(pr, p) < 1e-4
    # the order-0 coefficient alone is not invariant
    c0 = spherical.sph_harm_transform_batch(x)[0, 0, :, 0]
    c0r = spherical.sph_harm_transform_batch(xr)[0, 0, :, 0]
    assert not np.allclose(np.abs(c0), np.abs(c0r), rtol=1e-2)


def test_layers_serialise_and_model_roundtrip(tmp_path, x16):
    objs = [layers.SphConv(4, n_filter_params=3, spectral_pool=1, method="sep", real_inputs=False,
                           kernel_regularizer=keras.regularizers.L2(0.5), name="c"),
            layers.AreaWeightedPooling(2), layers.SphericalAreaWeighting(),
            layers.DegreePowerPooling("sep", real_inputs=False)]
    for obj in objs:
        clone = obj.__class__.from_config(obj.get_config())
        assert clone.get_config() == obj.get_config()
    inp = keras.Input((16, 16, 3))
    y = layers.SphConv(4, n_filter_params=3, method="sep")(inp)
    y = layers.AreaWeightedPooling()(y)
    y = layers.SphConv(4, spectral_pool=1, kernel_regularizer="l2")(y)
    y = layers.SphericalAreaWeighting()(y)
    y = layers.DegreePowerPooling()(y)
    model = keras.Model(inp, y)
    assert model.output_shape == (None, 2 * 4)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert np.allclose(loaded(x16), model(x16), rtol=1e-6)


def test_fit_in_compiled_graph_shares_tables(x16):
    before = sht.get_transform.cache_info().currsize
    inp = keras.Input((16, 16, 3))
    y = layers.SphConv(4, method="sep")(inp)
    y = layers.SphConv(4, method="sep")(y)
    y = layers.DegreePowerPooling(method="sep")(y)
    model = keras.Model(inp, keras.layers.Dense(2)(y))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(x16, np.array([0, 1]), epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    # three layers at one (n, method, real) use at most one new shared transform
    assert sht.get_transform.cache_info().currsize - before <= 1


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(2, 16, 8, 1\)"):
        layers.SphConv(4)(np.zeros((2, 16, 8, 1), "float32"))
    with pytest.raises(ValueError, match="spectral_pool"):
        layers.SphConv(4, spectral_pool=3)(np.zeros((2, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="method"):
        layers.SphConv(4, method="fft")
    with pytest.raises(ValueError, match="DegreePowerPooling"):
        layers.DegreePowerPooling()(np.zeros((2, 8), "float32"))


@pytest.fixture
def policy():
    """Set a Keras dtype policy for one test; restore float32 afterwards."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


# max |error| / max |float32 output| of a layer under a mixed policy (inputs and weights equal)
MIXED_BOUNDS = {"mixed_bfloat16": 3e-2, "mixed_float16": 5e-3}


def _spherical_layers():
    return {
        "sphconv_sep": lambda: layers.SphConv(4, n_filter_params=3, method="sep"),
        "sphconv_sep_pool": lambda: layers.SphConv(4, spectral_pool=1, method="sep"),
        "sphconv_naive": lambda: layers.SphConv(4, method="naive", real_inputs=False),
        "activation_u2": lambda: layers.SphericalActivation("prelu", upsample=2, method="sep"),
        "power": lambda: layers.DegreePowerPooling(method="sep"),
        "wap": lambda: layers.AreaWeightedPooling(),
        "cwap": lambda: layers.CenteredAreaWeightedPooling(),
        "area": lambda: layers.SphericalAreaWeighting(),
        "bn": lambda: layers.FusedBatchNormalization(scale=False),
    }


@pytest.mark.parametrize("mixed", sorted(MIXED_BOUNDS))
@pytest.mark.parametrize("name", sorted(_spherical_layers()))
def test_layers_under_mixed_policies_return_their_declared_dtype(policy, x16, mixed, name):
    """Under mixed_float16 / mixed_bfloat16 every layer returns its compute dtype (eager, and
    symbolically in a functional model), keeps float32 variables, and agrees with the float32
    layer (same weights) within MIXED_BOUNDS."""
    make = _spherical_layers()[name]
    ref_layer = make()
    ref = np.asarray(ref_layer(x16, training=True))
    policy(mixed)
    layer = make()
    out = layer(x16, training=True)
    layer.set_weights(ref_layer.get_weights())
    out = layer(x16, training=True)
    compute = mixed.split("_")[1]
    assert layer.compute_dtype == compute and out.dtype == compute
    assert all(v.dtype == "float32" for v in layer.weights)
    sym = layer(keras.Input((16, 16, 3)))
    assert sym.dtype == compute
    assert rel_err(out, ref) < MIXED_BOUNDS[mixed], rel_err(out, ref)
