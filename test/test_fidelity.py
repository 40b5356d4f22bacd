"""Training behaviour of the original TF1 demo (issue 13), each against a reference computed here.

- Adam: TF1's update with epsilon 1e-8 and the "epsilon hat" placement;
- momentum: TF1's raw-gradient accumulator, across a learning-rate change,
  under tf.distribute and through a checkpoint;
- batch norm: TF1's fused kernel updates the moving variance with the
  Bessel-corrected batch variance;
- validation accuracy: mean of per-batch accuracies; test accuracy per sample;
- ``--first_n`` limits validation; ``--no_shuffle`` keeps file order;
- the original-named NumPy functions take TensorFlow variables.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import datasets, layers, models, optimizers, params, spherical, training
from test_datasets import _args as dset_args
from test_datasets import _complex, _write
from test_training import N_CLASSES, RES, TINY_MODEL


# ----------------------------------------------------------------------------- optimizers

def _gradients(rng, steps, size):
    """Gradients spanning 1e-10 .. 1e-3 in magnitude (epsilon matters at the small end), both signs."""
    mag = 10.0 ** rng.uniform(-10, -3, (steps, size))
    return (mag * rng.choice([-1.0, 1.0], (steps, size))).astype(np.float32)


def _tf1_adam(var, grads, lr, eps, b1=0.9, b2=0.999, hat=True):
    """NumPy float64 TF1 Adam: lr_t = lr sqrt(1-b2^t)/(1-b1^t); var -= lr_t m / (sqrt(v) + eps).

    ``hat=False`` is the textbook placement (eps added to the bias-corrected sqrt(v)).
    The constants are float32, as TF1 held them (1 - 0.999 is 1.3e-5 off in float32).
    """
    lr, eps, b1, b2 = (float(np.float32(v)) for v in (lr, eps, b1, b2))
    var = var.astype(np.float64)
    m = np.zeros_like(var)
    v = np.zeros_like(var)
    for t, g in enumerate(grads.astype(np.float64), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if hat:
            var = var - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
        else:
            var = var - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return var


def _tf1_adam_kernel_float32(var, grads, lr, eps, b1=0.9, b2=0.999):
    """TF1's ApplyAdam kernel step by step in float32 (m += (g - m)(1 - b1), ...).

    The beta powers are taken as float32 ``b ** t``; TF1 kept running float32
    products, which differ from the powers by float32 rounding (checked below).
    """
    f = np.float32
    lr, eps, b1, b2 = f(lr), f(eps), f(b1), f(b2)
    var = var.astype(f)
    m = np.zeros_like(var)
    v = np.zeros_like(var)
    for t, g in enumerate(grads.astype(f), start=1):
        alpha = f(lr * np.sqrt(f(1) - np.power(b2, f(t))) / (f(1) - np.power(b1, f(t))))
        m = m + (g - m) * (f(1) - b1)
        v = v + (g * g - v) * (f(1) - b2)
        var = var - (m * alpha) / (np.sqrt(v) + eps)
    return var


def _apply(opt, var, grads, lrs=None):
    for i, g in enumerate(grads):
        if lrs is not None:
            opt.learning_rate.assign(lrs[i])
        opt.apply_gradients([(tf.constant(g), var)])
    return var.numpy()


def test_adam_matches_tf1_update_with_epsilon_1e8():
    rng = np.random.default_rng(0)
    var0 = (0.01 * rng.standard_normal(200)).astype(np.float32)
    grads = _gradients(rng, 3, 200)
    lr = 0.01
    opt = optimizers.make_optimizer("adam", lr)
    assert isinstance(opt, optimizers.TF1Adam) and opt.epsilon == 1e-8
    got = _apply(opt, keras.Variable(var0), grads)
    # TF1's arithmetic in float32: the same to a few float32 ulps of values ~0.03
    np.testing.assert_allclose(got, _tf1_adam_kernel_float32(var0, grads, lr, 1e-8), rtol=0, atol=1e-8)
    # TF1's formula in float64: float32's cancellation in 1 - b2^t (~t ulp / (t 1e-3),
    # relative) bounds the difference by ~3e-5 of the total step 3 * lr
    ref = _tf1_adam(var0, grads, lr, 1e-8)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # the test tells apart Keras' default epsilon and the other epsilon placement ...
    for other in (_tf1_adam(var0, grads, lr, 1e-7), _tf1_adam(var0, grads, lr, 1e-8, hat=False)):
        assert np.abs(other - ref).max() > 1e-4
    # ... and Keras' Adam even with epsilon 1e-8 (its 1 - beta is rounded from float64)
    keras_adam = _apply(keras.optimizers.Adam(lr, epsilon=1e-8), keras.Variable(var0), grads)
    assert np.abs(keras_adam - got).max() > 5e-8
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, optimizers.TF1Adam) and again.epsilon == 1e-8


def _tf1_momentum(var, grads, lrs, m=0.9):
    """NumPy float64 TF1 MomentumOptimizer(use_nesterov=True): accum = m accum + g;
    var -= lr g + lr m accum."""
    var = var.astype(np.float64)
    accum = np.zeros_like(var)
    for g, lr in zip(grads.astype(np.float64), lrs):
        accum = m * accum + g
        var = var - (lr * g + lr * m * accum)
    return var


def _keras_sgd_nesterov(var, grads, lrs, m=0.9):
    """NumPy float64 Keras SGD(momentum, nesterov): v = m v - lr g; var += m v - lr g."""
    var = var.astype(np.float64)
    vel = np.zeros_like(var)
    for g, lr in zip(grads.astype(np.float64), lrs):
        vel = m * vel - lr * g
        var = var + m * vel - lr * g
    return var


def _momentum_case():
    rng = np.random.default_rng(1)
    var0 = rng.standard_normal(30).astype(np.float32)
    grads = rng.standard_normal((8, 30)).astype(np.float32)
    lrs = [0.1] * 4 + [0.01] * 4  # a learning-rate change after step 4
    return var0, grads, lrs


def test_momentum_matches_tf1_across_learning_rate_change():
    var0, grads, lrs = _momentum_case()
    opt = optimizers.make_optimizer("momentum", lrs[0])
    assert isinstance(opt, optimizers.TF1Momentum) and opt.momentum == 0.9 and opt.use_nesterov
    got = _apply(opt, keras.Variable(var0), grads, lrs)
    ref = _tf1_momentum(var0, grads, lrs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # Keras' SGD takes the same steps while the rate is constant, not after the change
    np.testing.assert_allclose(_keras_sgd_nesterov(var0, grads[:4], lrs[:4]),
                               _tf1_momentum(var0, grads[:4], lrs[:4]), rtol=1e-12)
    assert np.abs(_keras_sgd_nesterov(var0, grads, lrs) - ref).max() > 1e-2
    # serialisable
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, optimizers.TF1Momentum)
    assert again.get_config()["momentum"] == 0.9 and again.get_config()["use_nesterov"]


def test_momentum_under_distribution_and_checkpoint(tmp_path):
    """Steps in a replica context of a MirroredStrategy, saved and restored half way."""
    var0, grads, lrs = _momentum_case()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])

    def make():
        with strategy.scope():
            var = keras.Variable(var0, name="w")
            opt = optimizers.make_optimizer("momentum", lrs[0])
            opt.build([var])
        return var, opt

    def steps(var, opt, idx):
        @tf.function
        def step(g):
            # the gradient must be a tensor of the replica (the input itself is not)
            strategy.run(lambda gg: opt.apply_gradients([(tf.identity(gg), var)]), args=(g,))
        for i in idx:
            opt.learning_rate.assign(lrs[i])
            step(tf.constant(grads[i]))

    var, opt = make()
    steps(var, opt, range(5))
    path = tf.train.Checkpoint(optimizer=opt, var=var).write(str(tmp_path / "ckpt"))
    var2, opt2 = make()
    tf.train.Checkpoint(optimizer=opt2, var=var2).read(path).assert_existing_objects_matched()
    assert int(opt2.iterations.numpy()) == 5
    np.testing.assert_array_equal(opt2.accumulators[0].numpy(), opt.accumulators[0].numpy())
    steps(var2, opt2, range(5, 8))
    np.testing.assert_allclose(var2.numpy(), _tf1_momentum(var0, grads, lrs), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- batch norm

def test_fused_batch_norm_moving_variance_is_bessel_corrected():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3, 6, 6, 4)) * [0.5, 1.0, 2.0, 4.0] + [1.0, -2.0, 0.0, 3.0]).astype(np.float32)
    ours = layers.FusedBatchNormalization(scale=False, momentum=0.9)
    keras_bn = keras.layers.BatchNormalization(scale=False, momentum=0.9)
    out = ours(x, training=True).numpy()
    out_keras = keras_bn(x, training=True).numpy()

    x64 = x.astype(np.float64)
    n = 3 * 6 * 6
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    np.testing.assert_allclose(ours.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    # Keras' moving variance is uncorrected (so the test tells them apart) ...
    np.testing.assert_allclose(keras_bn.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    assert np.abs(ours.moving_variance.numpy() - keras_bn.moving_variance.numpy()).min() > 1e-4
    # ... and the batch itself is normalised as before, with the biased variance
    np.testing.assert_allclose(out, (x64 - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, out_keras, rtol=1e-5, atol=1e-6)
    # inference uses the moving statistics
    inf = ours(x, training=False).numpy()
    mv = ours.moving_variance.numpy().astype(np.float64)
    np.testing.assert_allclose(inf, (x64 - ours.moving_mean.numpy()) / np.sqrt(mv + 1e-3), rtol=1e-4, atol=1e-5)
    # one value per channel: factor 1, not a division by zero
    single = layers.FusedBatchNormalization(scale=False, momentum=0.5)
    single(x[:1, :1, :1], training=True)
    np.testing.assert_allclose(single.moving_variance.numpy(), 0.5)


def test_fused_batch_norm_tf_kernel_matches_the_keras_ops_path(monkeypatch):
    """On TensorFlow the training step runs TF's FusedBatchNormV3; it must give the
    same output, moving statistics and gradients as the backend-neutral path."""
    rng = np.random.default_rng(4)
    x = tf.constant((rng.standard_normal((4, 8, 8, 5)) * 3 + 1).astype(np.float32))
    beta = rng.standard_normal(5).astype(np.float32)

    def run(use_kernel):
        monkeypatch.setattr(layers.FusedBatchNormalization, "_can_use_tf_kernel",
                            lambda self, inputs: use_kernel)
        bn = layers.FusedBatchNormalization(scale=False, momentum=0.8)
        bn.build(x.shape)
        bn.beta.assign(beta)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = bn(x, training=True)
            loss = tf.reduce_sum(out * tf.sin(x))
        gx, gb = tape.gradient(loss, [x, bn.beta])
        return [v.numpy() for v in (out, bn.moving_mean, bn.moving_variance, gx, gb)]

    assert layers.FusedBatchNormalization()._can_use_tf_kernel(x)
    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_renorm_and_serialisation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 4, 4, 3)).astype(np.float32) * 2
    ours = layers.FusedBatchNormalization(scale=False, renorm=True)
    ref = keras.layers.BatchNormalization(scale=False, renorm=True)
    np.testing.assert_allclose(ours(x, training=True), ref(x, training=True), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), ref.moving_variance.numpy(), rtol=1e-6)
    again = layers.FusedBatchNormalization.from_config(ours.get_config())
    assert again.renorm and not again.scale
    with pytest.raises(ValueError, match="synchronized"):
        layers.FusedBatchNormalization(synchronized=True)


def test_model_uses_fused_batch_norm(tmp_path):
    args = params.parse(TINY_MODEL + ["--logdir", str(tmp_path)])
    model = models.build_model(args, (RES, RES, 2))
    bns = [l for l in model.layers if l.name.endswith("_bn")]
    assert len(bns) == 6 and all(isinstance(l, layers.FusedBatchNormalization) for l in bns)
    assert not any(l.scale for l in bns)


# ----------------------------------------------------------------------------- evaluation

def _mag_ang(x):
    """NumPy version of the original's input: [|x|, imag(x / (|x| + 1e-8))]."""
    mag = np.abs(x)
    return np.concatenate([mag, np.imag(x / (mag + 1e-8))], axis=-1).astype(np.float32)


def _write_split(d, name, x, y):
    _write(os.path.join(d, name + ".tfrecord"), x, y)


def _predict_batches(model, x, bsize, first_n=None):
    """Predicted labels per batch of ``bsize`` (the last one partial), from the model itself."""
    starts = list(range(0, len(x), bsize))[:first_n]
    return [np.argmax(model(_mag_ang(x[s:s + bsize]), training=False)["logits"], axis=-1) for s in starts]


def test_validation_accuracy_is_mean_of_batch_accuracies(tmp_path):
    """10 samples in batches of 4, 4, 2: validation averages the 3 batch accuracies, test the samples."""
    rng = np.random.default_rng(4)
    d = str(tmp_path / "records")
    os.makedirs(d)
    mag = rng.uniform(0.5, 2.0, (10, RES, RES, 1))
    x = (mag * np.exp(1j * rng.uniform(0, np.pi / 2, mag.shape))).astype(np.complex64)
    y = np.zeros(10, dtype=np.int64)
    for name in ("train_000", "val_000", "test_000"):
        _write_split(d, name, x, y)
    base = TINY_MODEL + ["--dset_dir", d, "--train_bsize", "4"]
    trainer = training.Trainer(params.parse(base + ["--logdir", str(tmp_path / "run")]))
    assert isinstance(trainer.optimizer, keras.optimizers.Adam) and trainer.optimizer.epsilon == 1e-8

    # labels: batches 1 and 3 all right, batch 2 all wrong (per batch 2/3, per sample 6/10)
    pred = np.concatenate(_predict_batches(trainer.model, x, 4))
    right = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1], dtype=bool)
    y = np.where(right, pred, (pred + 1) % N_CLASSES)
    for name in ("val_000", "test_000"):
        _write_split(d, name, x, y)

    batches = _predict_batches(trainer.model, x, 4)
    per_batch = [np.mean(p == y[4 * i:4 * i + len(p)]) for i, p in enumerate(batches)]
    assert per_batch == [1.0, 0.0, 1.0]
    acc, conf = trainer.evaluate("val")
    assert acc == pytest.approx(np.mean(per_batch)) and acc == pytest.approx(2 / 3)
    expected_conf = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(expected_conf, (y, np.concatenate(batches)), 1)
    np.testing.assert_array_equal(conf, expected_conf)
    # test accuracy per sample, as the original's batch-size-weighted mean
    test_acc, _ = trainer.evaluate("test")
    assert test_acc == pytest.approx(0.6)

    # --first_n 2 also limits validation: batches 1 and 2 only
    limited = training.Trainer(params.parse(base + ["--logdir", str(tmp_path / "run2"), "--first_n", "2"]))
    batches = _predict_batches(limited.model, x, 4, first_n=2)
    ref = np.mean([np.mean(p == y[4 * i:4 * i + 4]) for i, p in enumerate(batches)])
    acc, conf = limited.evaluate("val")
    assert conf.sum() == 8 and acc == pytest.approx(ref)
    # ... but not testing (--test_n does)
    assert limited.evaluate("test")[1].sum() == 10


# ----------------------------------------------------------------------------- datasets

@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(5)
    data = {}
    for name, n in [("train_000", 10), ("val_000", 6), ("test_000", 6)]:
        x, _, _ = _complex(rng, n)
        y = rng.integers(0, 5, n)
        _write(tmp_path / f"{name}.tfrecord", x, y)
        data[name] = (x, y)
    return tmp_path, data


def _labels(ds):
    return np.concatenate([y.numpy() for _, y in ds])


def test_first_n_limits_validation_batches(shards):
    d, data = shards
    assert [int(b[1].shape[0]) for b in datasets.load(dset_args(d)).eval("val")] == [4, 2]
    assert len(list(datasets.load(dset_args(d, first_n=1)).eval("val"))) == 1
    assert len(list(datasets.load(dset_args(d, first_n=1)).eval("test"))) == 2  # --test_n limits test
    # --round_batches drops the partial training batch (first_n still applies), validation keeps it
    rb = datasets.load(dset_args(d, round_batches=True))
    assert [int(b[1].shape[0]) for b in rb.train(0)] == [4, 4]
    assert [int(b[1].shape[0]) for b in rb.eval("val")] == [4, 2]
    assert len(list(datasets.load(dset_args(d, round_batches=True, first_n=1)).train(0))) == 1


def test_no_shuffle_trains_in_file_order(shards):
    d, data = shards
    x, y = data["train_000"]
    ds = datasets.load(dset_args(d, no_shuffle=True))
    got = np.concatenate([b.numpy() for b, _ in ds.train(0)])
    np.testing.assert_allclose(got, _mag_ang(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(_labels(ds.train(3)), y)
    # the default shuffles
    assert not np.array_equal(_labels(datasets.load(dset_args(d)).train(0)), y)
    assert params.parse(["--logdir", "x", "--no_shuffle"]).no_shuffle
    assert not params.parse(["--logdir", "x"]).no_shuffle


# ----------------------------------------------------------------------------- TF inputs

@pytest.mark.parametrize("real", [False, True])
def test_tf_variable_harmonics_through_transform_and_inverse(real):
    """The original's test case: harmonics as tf.Variables (complex64), both layouts."""
    n = 16
    rng = np.random.default_rng(6)
    # a band-limited real map, so that transform and inverse reproduce it
    f = spherical.sph_harm_inverse(spherical.sph_harm_transform(rng.random((n, n))))
    h_np = spherical.sph_harm_all(n, real=real)
    h_tf = [[tf.Variable(hh.astype(np.complex64)) for hh in row] for row in h_np]
    inp = tf.constant(f.astype(np.complex64))

    c = spherical.sph_harm_transform(inp, harmonics=h_tf)
    r = spherical.sph_harm_inverse(c, harmonics=h_tf)
    assert isinstance(r, np.ndarray) and r.shape == (n, n)
    c_ref = spherical.sph_harm_transform(f, harmonics=h_np)
    for row, row_ref in zip(c, c_ref):
        np.testing.assert_allclose(row, row_ref, atol=1e-5)
    np.testing.assert_allclose(np.real(r), f, atol=1e-4)
    if real:
        assert not np.iscomplexobj(r)
    assert spherical.is_real_sft(h_tf) == real
    assert spherical.is_real_sft([h_tf[0], tf.stack(h_tf[1])]) == real
    np.testing.assert_allclose(spherical.sph_harm_to_shtools(h_tf),
                               spherical.sph_harm_to_shtools(h_np), atol=1e-6)
    # shtools-layout harmonics as one variable, batch inverse
    cb = spherical.sph_harm_transform_batch(f[None, :, :, None], harmonics=tables_of(n, real))
    rb = spherical.sph_harm_inverse_batch(tf.constant(cb), harmonics=tf.Variable(tables_of(n, real)))
    np.testing.assert_allclose(np.real(rb[0, ..., 0]), f, atol=1e-4)


def test_tf_inputs_to_convolutions():
    """The original's other TensorFlow cases: sph_conv with a TF kernel, sph_conv_batch with constants."""
    n = 16
    rng = np.random.default_rng(7)
    f = rng.random((n, n))
    ker = np.zeros((n, n), dtype=np.complex128)
    ker[:, :5] = rng.standard_normal(5)  # zonal: depends on the polar angle only
    got = spherical.sph_conv(tf.constant(f.astype(np.complex128)), tf.Variable(ker))
    np.testing.assert_allclose(got, spherical.sph_conv(f, ker), atol=1e-10)

    fb = rng.random((2, n, n, 3)).astype(np.float32)
    gb = rng.random((3, n, n, 4)).astype(np.float32)
    h_real = tables_of(n, True)
    ref = spherical.sph_conv_batch(fb, gb, harmonics_or_legendre=h_real)
    got = spherical.sph_conv_batch(tf.constant(fb), tf.constant(gb), harmonics_or_legendre=tf.constant(h_real))
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)


def tables_of(n, real):
    return spherical.sph_harm_to_shtools(spherical.sph_harm_all(n, real=real))


def test_symbolic_tensors_are_refused_clearly():
    fn = tf.function(lambda x: spherical.sph_harm_transform(x))
    with pytest.raises(TypeError, match="symbolic"):
        fn(tf.zeros((8, 8)))
