"""Recomputed batch-norm statistics (``--recompute_bn``) against a NumPy reference."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from spherical_cnn import batch_norm_statistics
from spherical_cnn.layers import FusedBatchNormalization


def _two_norm_model(rng):
    """maps (b, 8, 8, 3) -> 1x1 conv -> batch norm -> relu -> 1x1 conv -> batch norm."""
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 1, use_bias=False, name="c1")(inputs)
    h = FusedBatchNormalization(scale=False, name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(5, 1, use_bias=False, name="c2")(h)
    h = FusedBatchNormalization(scale=False, name="bn2")(h)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h))
    for layer in ("c1", "c2"):
        w = model.get_layer(layer).kernel
        w.assign(rng.normal(size=w.shape).astype("float32"))
    for layer in ("bn1", "bn2"):
        b = model.get_layer(layer).beta
        b.assign(rng.normal(size=b.shape).astype("float32"))
    return model


def _reference(model, batches):
    """Population mean and variance of each norm's input, the network run as in training
    (each norm normalising with its batch's own biased moments), in float64."""
    w1 = model.get_layer("c1").kernel.numpy()[0, 0].astype(np.float64)
    w2 = model.get_layer("c2").kernel.numpy()[0, 0].astype(np.float64)
    bn1 = model.get_layer("bn1")
    h1s, h2s = [], []
    for x in batches:
        h1 = x.astype(np.float64) @ w1
        m, v = h1.mean(axis=(0, 1, 2)), h1.var(axis=(0, 1, 2))
        a = np.maximum((h1 - m) / np.sqrt(v + bn1.epsilon) + bn1.beta.numpy(), 0.0)
        h1s.append(h1)
        h2s.append(a @ w2)
    return [(np.concatenate(h).mean(axis=(0, 1, 2)), np.concatenate(h).var(axis=(0, 1, 2)))
            for h in (h1s, h2s)]


def test_recompute_equals_population_statistics_of_each_input():
    rng = np.random.default_rng(0)
    model = _two_norm_model(rng)
    # batches of different means, so that the variance between batches counts
    batches = [rng.normal(loc=k, scale=1 + k, size=(6, 8, 8, 3)).astype("float32") for k in range(4)]
    weights = [w.numpy() for w in model.trainable_weights]
    used = batch_norm_statistics.recompute(model, [(b, None) for b in batches] + [(batches[0], None)], 4)
    assert used == 4
    for (mean, var), name in zip(_reference(model, batches), ("bn1", "bn2")):
        layer = model.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-4)
    for w, before in zip(model.trainable_weights, weights):
        np.testing.assert_array_equal(w.numpy(), before)


def test_inference_matches_training_mode_on_one_batch():
    """With the statistics of one batch, inference on that batch equals the training-mode
    output for a single norm (a model whose only norm sees the input through a linear map)."""
    rng = np.random.default_rng(1)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 1, name="c1")(inputs)
    out = FusedBatchNormalization(scale=False, epsilon=1e-3, name="bn1")(h)
    model = keras.Model(inputs, out)
    x = rng.normal(loc=3.0, size=(5, 8, 8, 3)).astype("float32")
    train_out = model(x, training=True).numpy()
    assert np.abs(model(x, training=False).numpy() - train_out).max() > 0.1  # running averages differ
    batch_norm_statistics.recompute(model, [x], 1)
    np.testing.assert_allclose(model(x, training=False).numpy(), train_out, atol=2e-4)


def test_no_batch_norm_changes_nothing():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert batch_norm_statistics.recompute(model, [np.ones((2, 4), "float32")], 3) == 0


def test_trainer_recompute_bn_sets_statistics_of_the_last_shard(tmp_path):
    """``--recompute_bn 2``: after training, the first norm's moving statistics are the
    moments of its input (the first convolution's output, recomputed here with a
    sub-model) over the first 2 batches of the last epoch's shard."""
    from test_training import TINY_MODEL, write_records
    from spherical_cnn import params, training

    dset = write_records(str(tmp_path / "records"))
    args = params.parse(TINY_MODEL + ["--dset_dir", dset, "--logdir", str(tmp_path / "run"),
                                      "--n_epochs", "2", "--recompute_bn", "2", "--no_export"])
    trainer = training.Trainer(args)
    trainer.train()
    conv = keras.Model(trainer.model.inputs, trainer.model.get_layer("conv0_b0_conv").output)
    feats = np.concatenate([conv(x).numpy() for x, _ in trainer.dataset.train(1).take(2)]).astype(np.float64)
    batch = feats[:8]
    assert len(feats) == 16 and np.abs(feats.mean((0, 1, 2)) - batch.mean((0, 1, 2))).max() > 1e-4
    bn = trainer.model.get_layer("conv0_b0_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), feats.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), feats.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    # the saved checkpoint holds them
    restored = training.Trainer(args)
    restored.store.restore("final", restored.checkpoint, expect_partial=True)
    np.testing.assert_array_equal(restored.model.get_layer("conv0_b0_bn").moving_mean.numpy(),
                                  bn.moving_mean.numpy())
