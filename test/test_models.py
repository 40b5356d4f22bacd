"""Every option of the two-branch model builds and runs one training step."""
import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import models, params, training

from test_losses import smoothed_cross_entropy_reference

RES = 16


class ArrayDataset:
    """In-memory stand-in with the SphericalDataset interface used by the trainer."""

    def __init__(self, n=8, n_classes=3, bsize=4, seed=0):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, RES, RES, 2)).astype("float32")
        self.y = (np.arange(n) % n_classes).astype("int64")
        self.bsize = bsize
        self.input_shape = (RES, RES, 2)
        self.n_classes = n_classes

    def train(self, epoch):
        return tf.data.Dataset.from_tensor_slices((self.x, self.y)).batch(self.bsize, drop_remainder=True)

    def eval(self, split):
        return self.train(0)

    def num_examples(self, split):
        return len(self.y)


BASE = ["--model", "two_branch", "--nfilters", "4,4,6", "--pool_layers", "0,1,0",
        "--concat_branches", "0,1,0", "--input_res", str(RES), "--n_classes", "3",
        "--train_bsize", "4", "--progress", "none", "--logdir"]

OPTIONS = {
    "defaults": [],
    "demo-like": ["--batch_norm", "--extra_loss", "--weighted_sph_avg", "--n_filter_params", "3",
                  "--no_final_fc", "--real_inputs"],
    "pool-avg": ["--pool", "avg"],
    "pool-max": ["--pool", "max"],
    "spectral-pool": ["--spectral_pool"],
    "batch-renorm": ["--batch_norm", "--batch_renorm"],
    "relu": ["--nonlin", "relu"],
    "identity": ["--nonlin", "identity"],
    "elu": ["--nonlin", "elu"],
    "final-max": ["--final_pool", "max"],
    "final-magnitudes": ["--final_pool", "magnitudes", "--real_inputs"],
    "final-all": ["--final_pool", "all"],
    "dropout-fc": ["--dropout"],
    "triplet": ["--triplet_loss", "--round_batches"],
    "sep": ["--transform_method", "sep", "--real_inputs"],
    "complex-sep": ["--transform_method", "sep"],
    "momentum-reg": ["--optimizer", "momentum", "--regularization_weight", "0.1"],
    "nonlinearity-upsample": ["--batch_norm", "--nonlinearity_upsample", "2", "--transform_method", "sep",
                              "--real_inputs"],
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_option_builds_and_trains_one_step(name, tmp_path):
    args = params.parse(BASE + [str(tmp_path)] + OPTIONS[name])
    data = ArrayDataset()
    trainer = training.Trainer(args, dataset=data)
    before = [w.numpy().copy() for w in trainer.model.trainable_weights]
    trainer._build_steps()
    x, y = next(iter(data.train(0)))
    out = trainer._train_step(x, y).numpy()
    assert np.all(np.isfinite(out)), out
    total, ce, extra, triplet, reg = out[:5]
    np.testing.assert_allclose(total, ce + extra + triplet + reg, rtol=1e-5)
    assert (extra > 0) == args.extra_loss
    assert (reg > 0) == bool(args.regularization_weight)
    after = [w.numpy() for w in trainer.model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "no weight changed"
    logits = trainer.model(x, training=False)["logits"]
    assert logits.shape == (4, 3)


def test_label_smoothing_enters_both_classifiers_losses(tmp_path):
    """The step's two cross-entropies are those of the smoothed targets, computed in NumPy
    from the same forward pass (no batch norm or dropout, so the pass is deterministic)."""
    e = 0.3
    args = params.parse(BASE + [str(tmp_path), "--extra_loss", "--label_smoothing", str(e)])
    data = ArrayDataset()
    trainer = training.Trainer(args, dataset=data)
    trainer._build_steps()
    x, y = next(iter(data.train(0)))
    out = trainer.model(x, training=True)
    expected = [smoothed_cross_entropy_reference(y.numpy(), out[k].numpy(), e).mean()
                for k in ("logits", "extra_logits")]
    ce, extra = trainer._train_step(x, y).numpy()[1:3]
    np.testing.assert_allclose([ce, extra], expected, rtol=1e-5)


def test_spatial_shapes_follow_pooling(tmp_path):
    args = params.parse(BASE + [str(tmp_path), "--nfilters", "4,4,4,4", "--pool_layers", "0,1,0,1",
                                "--concat_branches", "0,0,1,0"])
    model = models.build_model(args, (RES, RES, 2))
    assert model.get_layer("conv1_b0_pool").output.shape[1:3] == (RES // 2, RES // 2)
    assert model.get_layer("conv3_b1_pool").output.shape[1:3] == (RES // 4, RES // 4)
    # concatenation at layer 2 feeds both branches' 4 channels into branch 0
    assert model.get_layer("conv2_b0_conv").kernel.shape[0] == 8
    assert model.get_layer("conv2_b1_conv").kernel.shape[0] == 4


def test_regularization_term_equals_hand_computation(tmp_path):
    args = params.parse(BASE + [str(tmp_path), "--regularization_weight", "0.5"])
    model = models.build_model(args, (RES, RES, 2))
    kernels = [l.kernel.numpy() for l in model.layers if l.name.endswith("_conv")]
    assert len(kernels) == 6
    expected = 0.5 / len(kernels) * sum((k ** 2).sum() / 2 for k in kernels)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


def test_model_registry_and_clear_errors(tmp_path):
    assert "two_branch" in models.MODELS
    args = params.parse(BASE + [str(tmp_path)])
    with pytest.raises(ValueError, match="even number of input channels"):
        models.build_model(args, (RES, RES, 1))
    args.model = "nope"
    with pytest.raises(ValueError, match="--model 'nope'"):
        models.build_model(args, (RES, RES, 2))
    args.model, args.nonlin = "two_branch", "bogus"
    with pytest.raises(ValueError, match="--nonlin 'bogus'"):
        models.build_model(args, (RES, RES, 2))


def test_centered_pooling_option_trains(tmp_path):
    args = params.parse(BASE + [str(tmp_path), "--pool", "cwap"])
    data = ArrayDataset()
    trainer = training.Trainer(args, dataset=data)
    trainer._build_steps()
    x, y = next(iter(data.train(0)))
    assert np.all(np.isfinite(trainer._train_step(x, y).numpy()))
    assert trainer.model.get_layer("conv1_b0_pool").output.shape[1:3] == (RES // 2, RES // 2)


def _linear_head_model(tmp_path, final_pool):
    """The demo's head (area weighting, extra loss, no FC) on a linear network: exactly equivariant."""
    args = params.parse(BASE + [str(tmp_path), "--batch_norm", "--extra_loss", "--weighted_sph_avg",
                                "--no_final_fc", "--real_inputs", "--spectral_pool", "--nonlin", "identity",
                                "--transform_method", "sep", "--final_pool", final_pool])
    return models.build_model(args, (RES, RES, 2))


@pytest.mark.parametrize("final_pool", ["magnitudes", "all"])
def test_degree_power_descriptor_is_rotation_invariant_with_area_weighting(final_pool, tmp_path):
    # pyshtools rotates band-limited inputs exactly; a linear network of spectral convolutions and
    # spectral pooling is then exactly equivariant, so the per-degree power must be invariant
    # (taking it of the area-weighted maps gave errors of ~4e-3).
    from spherical_cnn.studies import equivariance as eq
    model = _linear_head_model(tmp_path, final_pool)
    rng = np.random.default_rng(3)
    x = eq.random_bandlimited(3, RES, 2, rng)
    angles = eq.random_rotations(3, rng)
    xr = np.concatenate([eq.rotate_maps(x[i:i + 1], angles[i]) for i in range(3)])
    power = models.keras.Model(model.input, model.get_layer("magnitudes").output)
    p, pr = (np.asarray(power(v.astype("float32"), training=False)) for v in (x, xr))
    assert np.linalg.norm(pr - p) / np.linalg.norm(p) < 1e-5


@pytest.mark.parametrize("final_pool", ["gap", "magnitudes", "all"])
def test_extra_classifier_sees_branch_one_only(final_pool, tmp_path):
    # Zeroing branch 0's final maps must leave the extra logits unchanged, and zeroing branch 1's
    # must leave only the bias (the descriptor of a zero map is zero for every final pool).
    model = _linear_head_model(tmp_path, final_pool)
    maps = model.get_layer("concat_final").output
    c = maps.shape[-1]
    head = models.keras.Model(model.input, [maps, model.output["extra_logits"]])
    x = np.random.default_rng(4).normal(size=(2, RES, RES, 2)).astype("float32")
    feats, extra = (np.asarray(v) for v in head(x, training=False))
    tail = models.keras.Model(maps, model.output["extra_logits"])  # the head alone, on given maps
    only_b1 = feats.copy(); only_b1[..., :c // 2] = 0
    only_b0 = feats.copy(); only_b0[..., c // 2:] = 0
    np.testing.assert_allclose(np.asarray(tail(only_b1, training=False)), extra, rtol=1e-5, atol=1e-5)
    bias = model.get_layer("out_extra").bias.numpy()
    np.testing.assert_allclose(np.asarray(tail(only_b0, training=False)), np.broadcast_to(bias, extra.shape),
                               atol=1e-6)
