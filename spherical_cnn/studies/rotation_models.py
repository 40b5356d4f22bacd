"""The rotation study's models: the flags of the spherical variants, the planar CNN
baseline (:func:`planar_cnn`, ``--model planar``) with its widths matched to a parameter
count, and the flat reference's flags.

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import argparse
import os

import numpy as np

from .rotation_datasets import _read_manifest
from .rotation_images import flat_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


def planar_cnn(args, input_shape):
    """An ordinary 2D CNN on the (azimuth, polar) maps, outputs like the spherical models.

    Per entry of ``--nfilters``: Conv2D 3x3 ('same' zero padding; bias only
    without batch norm) -> batch norm (centre only) -> nonlinearity ->
    MaxPooling2D(2**p) when ``--pool_layers`` gives p > 0. Then global average
    pooling (the ``descriptor``) and a dense classifier (``logits``).
    Input ``(batch, azimuth, polar, channels)`` treated as an image.
    """
    import keras
    from keras import layers as kl
    from ..layers import FusedBatchNormalization
    from ..models import nonlinearity

    inputs = keras.Input(shape=tuple(input_shape), name="x")
    x = inputs
    for i, (nf, pool) in enumerate(zip(args.nfilters, args.pool_layers)):
        x = kl.Conv2D(nf, 3, padding="same", use_bias=not args.batch_norm, name="conv{}".format(i))(x)
        if args.batch_norm:
            x = FusedBatchNormalization(scale=False, name="conv{}_bn".format(i))(x)
        x = nonlinearity(args.nonlin, 4, "conv{}_act".format(i))(x)
        if pool:
            x = kl.MaxPooling2D(2 ** pool, padding="same", name="conv{}_pool".format(i))(x)
    x = kl.GlobalAveragePooling2D(name="gap")(x)
    if args.dropout:
        x = kl.Dropout(0.5, name="dropout")(x)
    outputs = {"descriptor": x, "logits": kl.Dense(args.n_classes, name="out")(x)}
    return keras.Model(inputs, outputs, name="planar")


def _register_planar():
    """Register :func:`planar_cnn` as ``--model planar`` (once)."""
    from .. import models
    if "planar" not in models.MODELS:
        models.register("planar")(planar_cnn)


def _resolve(path):
    """``path`` as given if it exists (or is absolute), else relative to the repository when there."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.join(ROOT, path)
    return candidate if os.path.exists(candidate) else path


def spherical_args(cfg, dset_dir, logdir, seed=0, more=()):
    """Parsed flags of the spherical model on ``dset_dir``, training seed ``seed``
    (``more``: tokens appended last)."""
    from .. import params
    tokens = ["@" + _resolve(p) for p in cfg.params_files]
    tokens += ["--dset", "from_cached_tfrecords", "--dset_dir", dset_dir, "--logdir", logdir,
               "--input_res", str(cfg.input_res), "--seed", str(seed),
               "--from_scratch", "--no_export", "--progress", "none", "--tensorboard_histograms", "0"]
    if not (getattr(cfg, "images", None) and cfg.n_val_images):
        tokens.append("--skip_val")
    manifest = _read_manifest(dset_dir) or {}
    if manifest.get("convex_hull"):  # the mesh and convex hull channels
        tokens += ["--nchannels", str(manifest["nchannels"])]
    if getattr(cfg, "images", None):  # the image set's own number of classes (MNIST-format sets vary)
        from ..datasets import read_class_names
        names = read_class_names(dset_dir)
        if names:
            tokens += ["--n_classes", str(len(names))]
    tokens += list(cfg.extra_flags) + list(more)
    return params.parse(tokens)


def planar_args(cfg, dset_dir, logdir, seed=0, target_params=None, input_shape=None):
    """Flags of the planar baseline: the spherical flags with ``--model planar``.

    The two-branch and spherical options are dropped (``--extra_loss``,
    ``--concat_branches``, ``--nonlinearity_upsample``) and, when ``target_params`` is given, the widths ``--nfilters`` are scaled
    by one common factor so that the parameter count is the closest to it.
    """
    from .. import params
    _register_planar()
    args = spherical_args(cfg, dset_dir, logdir, seed, more=cfg.planar_extra_flags)
    args.model = "planar"
    args.extra_loss = False
    args.weighted_sph_avg = False
    args.spectral_pool = False
    args.nonlinearity_upsample = 1
    if target_params and input_shape is not None:
        args.nfilters = match_widths(args, input_shape[-1], target_params)
    params.check(args)
    return args


def flat_reference_args(cfg, logdir, seed=0, target_params=None):
    """Flags of the flat reference: the planar CNN (:func:`planar_cnn`, the planar baseline's
    flags) on the original images of :func:`flat_dir` (``(H, W, 1)`` maps), its widths scaled
    to ``target_params`` parameters as the planar baseline's are."""
    from .. import params
    dset_dir = flat_dir(cfg)
    args = planar_args(cfg, dset_dir, logdir, seed)
    args.input_res, args.nchannels = int(_read_manifest(dset_dir)["input_res"]), 1
    if target_params:
        args.nfilters = match_widths(args, 1, target_params)
    params.check(args)
    return args


FLAT_LABEL = "planar CNN on the original images (not projected)"


def count_params(args, input_shape):
    """Parameters of the model named by ``args.model`` for inputs ``input_shape`` (no batch axis)."""
    import keras
    from .. import models
    _register_planar()
    model = models.build_model(args, input_shape)
    n = model.count_params()
    keras.backend.clear_session()
    return n


def planar_param_count(args, in_channels):
    """Parameter count of :func:`planar_cnn` (trainable and not), in closed form."""
    n, prev = 0, in_channels
    for nf in args.nfilters:
        n += 9 * prev * nf + (0 if args.batch_norm else nf)
        n += 3 * nf if args.batch_norm else 0  # beta, moving mean, moving variance
        n += nf if args.nonlin == "prelu" else 0
        prev = nf
    return n + prev * args.n_classes + args.n_classes


def match_widths(args, in_channels, target, scales=None):
    """``args.nfilters`` scaled by the common factor whose planar model's parameter count is closest to ``target``."""
    scales = np.linspace(0.25, 4.0, 301) if scales is None else scales
    best = None
    for s in scales:
        trial = argparse.Namespace(**vars(args))
        trial.nfilters = [max(1, int(round(s * f))) for f in args.nfilters]
        n = planar_param_count(trial, in_channels)
        if best is None or abs(n - target) < abs(best[0] - target):
            best = (n, trial.nfilters)
    return best[1]


def model_args(cfg, variant, train_dir, logdir, seed, target_params=None, input_shape=None):
    """Parsed and checked flags of ``variant`` trained on ``train_dir`` with seed ``seed``."""
    from .. import params
    if variant.kind == "planar":
        args = planar_args(cfg, train_dir, logdir, seed, target_params, input_shape)
    else:
        args = spherical_args(cfg, train_dir, logdir, seed)
    for k, v in variant.flags.items():
        setattr(args, k, v)
    params.check(args)
    return args
