"""Losses for the spherical regression heads (keras.losses.Loss, usable in compile/fit).

``y_true`` is always the unit target ``(batch, d)``; ``y_pred`` is the head's
output (see heads.py). Each loss returns a per-sample value that Keras averages
over the batch (so the batch mean matches the original's torch means).

- SExpLoss: abs_weight * (1 - cos(|y_pred|, |y_true|)) + sign_weight * CE(sign
  logits, sign label of y_true). The original code uses abs_weight=10, sign_weight=1.
- SFlatLoss: 1 - cos(y_pred, y_true).
- DirectLoss: smooth-L1 (Huber with delta 1, torch.nn.SmoothL1Loss), mean over components.
"""
import keras
from keras import ops

from . import signs as signs_lib

_COS_EPS = 1e-8  # as torch.nn.CosineSimilarity


def cosine_similarity(a, b):
    """Row-wise cos(a, b) ``(batch,)``, norms floored at 1e-8 as in torch."""
    na = ops.maximum(ops.sqrt(ops.sum(ops.square(a), axis=-1)), _COS_EPS)
    nb = ops.maximum(ops.sqrt(ops.sum(ops.square(b), axis=-1)), _COS_EPS)
    return ops.sum(a * b, axis=-1) / (na * nb)


def cosine_proximity(y_true, y_pred):
    """Per-sample 1 - cos(y_pred, y_true)."""
    return 1.0 - cosine_similarity(y_pred, y_true)


def abs_cosine_proximity(y_true, y_pred):
    """Per-sample 1 - cos(|y_pred[:, :d]|, |y_true|); d from y_true. Works on the
    packed S_exp output (its first d columns are already |y|)."""
    dim = y_true.shape[-1]
    return cosine_proximity(ops.abs(y_true), ops.abs(y_pred[..., :dim]))


def sign_cross_entropy(y_true, y_pred):
    """Per-sample cross-entropy of the S_exp sign logits ``y_pred[:, d:]`` against the
    sign label of y_true; 2^d or 2^(d-1) classes read from the width."""
    dim = y_true.shape[-1]
    logits = y_pred[..., dim:]
    fix_first = signs_lib.fix_first_from_num_classes(dim, logits.shape[-1])
    labels = signs_lib.sign_labels_ops(y_true, fix_first)
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def smooth_l1(y_true, y_pred):
    """Per-sample mean over components of smooth-L1 (delta 1)."""
    diff = ops.abs(y_pred - y_true)
    per = ops.where(diff < 1.0, 0.5 * ops.square(diff), diff - 0.5)
    return ops.mean(per, axis=-1)


def _check_pred_width(name, y_true, y_pred, packed):
    d, w = y_true.shape[-1], y_pred.shape[-1]
    if d is None or w is None:
        return
    if not packed and w != d:
        raise ValueError(f"{name}: y_pred has {w} columns but the targets have {d}")
    if packed and w <= d:
        raise ValueError(f"{name}: y_pred has {w} columns; an S_exp output needs d={d} "
                         "absolute values plus 2^d or 2^(d-1) sign logits")


@keras.saving.register_keras_serializable(package="spherical_regression")
class AbsCosineProximityLoss(keras.losses.Loss):
    """1 - cos(|y_pred|, |y_true|) on the first d columns of y_pred."""

    def __init__(self, name="abs_cosine_proximity", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] is not None and y_pred.shape[-1] < y_true.shape[-1]:
            raise ValueError(f"{self.name}: y_pred has {y_pred.shape[-1]} columns, fewer "
                             f"than the {y_true.shape[-1]} target components")
        return abs_cosine_proximity(y_true, y_pred)


@keras.saving.register_keras_serializable(package="spherical_regression")
class SignCrossEntropyLoss(keras.losses.Loss):
    """Cross-entropy of the S_exp sign logits against the target's sign class."""

    def __init__(self, name="sign_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=True)
        return sign_cross_entropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="spherical_regression")
class SExpLoss(keras.losses.Loss):
    """S_exp total: abs_weight * abs cosine proximity + sign_weight * sign CE."""

    def __init__(self, abs_weight=10.0, sign_weight=1.0, name="sexp_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.abs_weight = float(abs_weight)
        self.sign_weight = float(sign_weight)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=True)
        return (self.abs_weight * abs_cosine_proximity(y_true, y_pred)
                + self.sign_weight * sign_cross_entropy(y_true, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update(abs_weight=self.abs_weight, sign_weight=self.sign_weight)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SFlatLoss(keras.losses.Loss):
    """Cosine proximity 1 - cos(y_pred, y_true) for the S_flat head."""

    def __init__(self, name="sflat_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=False)
        return cosine_proximity(y_true, y_pred)


@keras.saving.register_keras_serializable(package="spherical_regression")
class DirectLoss(keras.losses.Loss):
    """Smooth-L1 between the raw output and the target, for the Direct head."""

    def __init__(self, name="direct_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=False)
        return smooth_l1(y_true, y_pred)


def loss_for_head(head, **kwargs):
    """The paper's loss for a head name: sexp -> SExpLoss(**kwargs), sflat -> SFlatLoss,
    direct -> DirectLoss."""
    if head == "sexp":
        return SExpLoss(**kwargs)
    if head == "sflat":
        return SFlatLoss()
    if head == "direct":
        return DirectLoss()
    raise ValueError(f"unknown head {head!r}: expected 'sexp', 'sflat' or 'direct'")
