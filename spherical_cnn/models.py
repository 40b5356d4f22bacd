"""Spherical CNN models, looked up by ``--model`` name.

A model builder takes the parsed flags and the input shape and returns a
``keras.Model`` whose outputs are a dict:

- ``logits``: ``(batch, n_classes)`` class scores;
- ``descriptor``: ``(batch, d)`` the features before the classifier (used by
  ``--triplet_loss`` and for retrieval);
- ``extra_logits``: ``(batch, n_classes)`` scores of the second branch's
  classifier, only with ``--extra_loss``.

Adding a model is one decorated function::

    @register("my_model")
    def my_model(args, input_shape): ...
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import keras
from keras import layers as kl

from . import layers as sl
# The module, not its names: importing spherical_cnn.losses first imports Keras, whose import
# hook imports this module while losses is still half initialised (_registration.py).
from . import losses

MODELS = {}


@keras.saving.register_keras_serializable(package="spherical_cnn")
class ChannelSlice(kl.Layer):
    """Channels ``[start, stop)`` of the last axis (serialisable, unlike a Lambda)."""

    def __init__(self, start: int, stop: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.stop - self.start,)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def register(name):
    """Decorator adding a model builder ``fn(args, input_shape) -> keras.Model`` to :data:`MODELS`."""
    def wrap(fn):
        MODELS[name] = fn
        return fn
    return wrap


def build_model(args: argparse.Namespace, input_shape: Sequence[int]) -> keras.Model:
    """Build the model named by ``args.model`` for inputs of shape ``input_shape`` (no batch axis)."""
    if args.model not in MODELS:
        raise ValueError("--model {!r} is not a known model; known: {}"
                         .format(args.model, ", ".join(sorted(MODELS))))
    return MODELS[args.model](args, tuple(input_shape))


def nonlinearity(name, rank, layer_name):
    """The layer for ``--nonlin name`` applied to tensors of rank ``rank`` (batch included).

    ``prelu`` has one learned slope per channel, initialised to 0.1 as in the
    original; ``identity`` is no-op; anything else is a Keras activation name
    (see :func:`spherical_cnn.layers.pointwise_nonlinearity`).
    """
    return sl.pointwise_nonlinearity(name, rank, layer_name)


def conv_block(x, args, filters, name, spectral_pool=0, regularizer=None, spectral_input=False,
               nonlinearity_upsample=None):
    """Spherical convolution -> batch norm (centre only) -> nonlinearity.

    The batch norm is :class:`~spherical_cnn.layers.FusedBatchNormalization`
    (TF1's moving-variance update; ``--batch_renorm`` as Keras).

    ``x``: ``(batch, azimuth, polar, channels)``. The convolution has a bias
    only when there is no batch norm (the norm's centre replaces it).

    ``nonlinearity_upsample`` (default ``args.nonlinearity_upsample``, 1 when
    absent): with u > 1 the nonlinearity is a
    :class:`~spherical_cnn.layers.SphericalActivation` applied on the grid u*n
    and band-limited back to n (same name ``<name>_act``, same weights). The
    batch norm is a per-channel affine map, so it commutes with that resampling.
    """
    if nonlinearity_upsample is None:
        nonlinearity_upsample = getattr(args, "nonlinearity_upsample", 1)
    x = sl.SphConv(filters,
                   n_filter_params=args.n_filter_params,
                   use_bias=not args.batch_norm,
                   spectral_pool=spectral_pool,
                   method=args.transform_method,
                   real_inputs=args.real_inputs,
                   spectral_input=spectral_input,
                   kernel_regularizer=regularizer,
                   name=name + "_conv")(x)
    if args.batch_norm:
        # A learned scale is redundant before (P)ReLU. Moving variance as TF1's fused batch norm.
        x = sl.FusedBatchNormalization(scale=False, renorm=args.batch_renorm, name=name + "_bn")(x)
    if nonlinearity_upsample == 1:
        return nonlinearity(args.nonlin, 4, name + "_act")(x)
    return sl.SphericalActivation(args.nonlin, upsample=nonlinearity_upsample,
                                  method=args.transform_method, name=name + "_act")(x)


def grid_pool(x, kind, levels, name):
    """Pool ``(batch, azimuth, polar, channels)`` maps by ``2**levels`` on the grid."""
    size = 2 ** levels
    if kind == "wap":
        return sl.AreaWeightedPooling(pool_size=size, name=name)(x)
    if kind == "cwap":
        return sl.CenteredAreaWeightedPooling(pool_size=size, name=name)(x)
    if kind == "avg":
        return kl.AveragePooling2D(size, size, padding="same", name=name)(x)
    if kind == "max":
        return kl.MaxPooling2D(size, size, padding="same", name=name)(x)
    raise ValueError("--pool {!r}: expected wap, cwap, avg or max".format(kind))


def _regularizer(args, n_convs):
    if not args.regularization_weight:
        return None
    return keras.regularizers.L2(losses.l2_regularizer_factor(args.regularization_weight, n_convs))


@register("two_branch")
def two_branch(args, input_shape):
    """The demo's two-branch spherical CNN.

    The 2-channel input (for ModelNet40: ray length and sine of the ray/normal
    angle) is split into one branch per channel. An input of 2k channels is split
    into halves (k each): with ``--mag_ang`` on k complex channels (e.g. mesh and
    convex hull, ``make-dataset --convex_hull``) branch 0 gets the k ray lengths and
    branch 1 the k sines. At layers where
    ``--concat_branches`` is 1, branch 0 receives the concatenation of both
    branches. Layers with ``--pool_layers`` p > 0 reduce the resolution by 2**p,
    in the spectral domain (``--spectral_pool``) or on the grid (``--pool``).
    """
    channels = input_shape[-1]
    if not channels or channels % 2:
        raise ValueError("two_branch needs an even number of input channels, one half per branch (use "
                         "--mag_ang with complex records), got input shape {}".format(input_shape))
    n_layers = len(args.nfilters)
    regularizer = _regularizer(args, 2 * n_layers)

    inputs = keras.Input(shape=input_shape, name="x")
    half = channels // 2
    branches = [ChannelSlice(b * half, (b + 1) * half, name="split_b{}".format(b))(inputs) for b in (0, 1)]

    for i, (nf, pool, concat) in enumerate(zip(args.nfilters, args.pool_layers, args.concat_branches)):
        spectral = args.spectral_pool or (args.spectral_input and i == 0)
        for b in (0, 1):
            name = "conv{}_b{}".format(i, b)
            if concat and b == 0:
                branches[0] = kl.Concatenate(name="concat{}".format(i))(branches)
            x = conv_block(branches[b], args, nf, name,
                           spectral_pool=pool if (pool and spectral) else 0,
                           regularizer=regularizer)
            if pool and not spectral:
                x = grid_pool(x, args.pool, pool, name + "_pool")
            branches[b] = x

    features = kl.Concatenate(name="concat_final")(branches)
    return classifier_head(features, inputs, args, name="two_branch")


def classifier_head(features, inputs, args, name):
    """Everything after the convolutions: weighting, final pooling, FC, classifiers.

    ``features``: ``(batch, azimuth, polar, channels)``; the second half of the
    channels is branch 1 (used by ``--extra_loss``).

    ``--weighted_sph_avg`` weights the maps by cell area before the average and
    max pools (the original's integral); the per-degree power (``magnitudes``)
    is taken of the unweighted maps, because its transform integrates with its
    own quadrature weights and a weighted map is no longer a rotated copy of
    the rotated input's map.
    """
    maps = features
    if args.weighted_sph_avg:
        features = sl.SphericalAreaWeighting(name="area_weighting")(features)

    channels = features.shape[-1]
    pools = {}
    if args.final_pool in ("gap", "all"):
        pools["gap"] = kl.GlobalAveragePooling2D(name="gap")(features)
    if args.final_pool in ("max", "all"):
        pools["max"] = kl.GlobalMaxPooling2D(name="max")(features)
    if args.final_pool in ("magnitudes", "all"):
        pools["magnitudes"] = sl.DegreePowerPooling(method=args.transform_method,
                                                    real_inputs=args.real_inputs,
                                                    name="magnitudes")(maps)
    if args.final_pool == "all":
        x = kl.Concatenate(name="final_pool")([pools["gap"], pools["max"], pools["magnitudes"]])
    else:
        x = pools[args.final_pool]

    if args.dropout:
        x = kl.Dropout(0.5, name="dropout")(x)
    if not args.no_final_fc:
        x = kl.Dense(64, name="fc1")(x)
        x = nonlinearity(args.nonlin, 2, "fc1_act")(x)
        if args.dropout:
            x = kl.Dropout(0.5, name="fc1_dropout")(x)

    outputs = {"descriptor": x, "logits": kl.Dense(args.n_classes, name="out")(x)}
    if args.extra_loss:
        if args.no_final_fc:
            half = _branch1_features(x, [(kind, pools[kind].shape[-1] // channels)
                                         for kind in ("gap", "max", "magnitudes") if kind in pools],
                                     channels)
        else:  # the original's choice: the second half of the FC layer's units
            half = ChannelSlice(x.shape[-1] // 2, x.shape[-1], name="branch1_features")(x)
        outputs["extra_logits"] = kl.Dense(args.n_classes, name="out_extra")(half)
    return keras.Model(inputs, outputs, name=name)


def _branch1_features(x, parts, channels):
    """The entries of the pooled descriptor ``x`` that come from branch 1 (the second half of the channels).

    ``parts``: ``(kind, rows)`` in the order concatenated in ``x``, each ``rows * channels``
    wide in the layout ``row * channels + channel`` (1 row for gap and max, one per degree for
    magnitudes). With gap or max alone this is the second half of ``x``, as in the original.
    """
    first = channels // 2
    if len(parts) == 1 and parts[0][1] == 1:
        return ChannelSlice(first, channels, name="branch1_features")(x)
    pieces, start = [], 0
    for kind, rows in parts:
        part = ChannelSlice(start, start + rows * channels, name="{}_part".format(kind))(x)
        part = kl.Reshape((rows, channels), name="{}_rows".format(kind))(part)
        part = ChannelSlice(first, channels, name="{}_branch1".format(kind))(part)
        pieces.append(kl.Flatten(name="{}_branch1_flat".format(kind))(part))
        start += rows * channels
    return pieces[0] if len(pieces) == 1 else kl.Concatenate(name="branch1_features")(pieces)


def block_outputs(model):
    """Names of the layers ending each convolution block (for activation summaries and analysis)."""
    return [l.name for l in model.layers if l.name.endswith("_act") and l.name.startswith("conv")]
