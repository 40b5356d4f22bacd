"""Losses for the spherical regression heads (keras.losses.Loss, usable in compile/fit).

``y_true`` is always the unit target ``(batch, d)``; ``y_pred`` is the head's
output (see heads.py). Each loss returns a per-sample value that Keras averages
over the batch (so the batch mean matches the original's torch means).

- SExpLoss: abs_weight * abs loss + sign_weight * CE(sign logits, sign label of
  y_true under the sign layout, signs.py). Abs losses (``abs_loss``)::

    'cosine'          1 - cos(|y_pred|, |y_true|); the original code's S^2 and S^3
                      tasks, with abs_weight=10, sign_weight=1 (the defaults);
    'log_likelihood'  -sum_i y_true_i^2 log(|y_pred_i|^2): the original S^1 task's
                      loss -sum y^2 log softmax(O), since |y|^2 = softmax(O) in its
                      convention (= softmax(2 O) under logit_scale='paper'; the loss is
                      the same function of |y| under both); the original weights it
                      with abs_weight=4. log|y_pred| is floored at the dtype's
                      smallest normal number (|y_pred_i| underflows to 0 only for logit
                      gaps beyond ~87 in float32; the gradient there is lost).

- SFlatLoss: 1 - cos(y_pred, y_true).
- DirectLoss: smooth-L1 (Huber with delta 1, torch.nn.SmoothL1Loss), mean over components.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any


import keras
import numpy as np
from keras import ops

from . import signs as signs_lib
from .signs import SignLayoutLike
from spherical_cnn._types import Tensor

_COS_EPS = 1e-8  # as torch.nn.CosineSimilarity


def cosine_similarity(a, b):
    """Row-wise cos(a, b) ``(batch,)``, norms floored at 1e-8 as in torch."""
    na = ops.maximum(ops.sqrt(ops.sum(ops.square(a), axis=-1)), _COS_EPS)
    nb = ops.maximum(ops.sqrt(ops.sum(ops.square(b), axis=-1)), _COS_EPS)
    return ops.sum(a * b, axis=-1) / (na * nb)


def cosine_proximity(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample 1 - cos(y_pred, y_true)."""
    return 1.0 - cosine_similarity(y_pred, y_true)


def abs_cosine_proximity(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample 1 - cos(|y_pred[:, :d]|, |y_true|); d from y_true. Works on the
    packed S_exp output (its first d columns are already |y|)."""
    dim = y_true.shape[-1]
    return cosine_proximity(ops.abs(y_true), ops.abs(y_pred[..., :dim]))


def abs_log_likelihood(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample -sum_i y_true_i^2 log(|y_pred_i|^2) on the first d columns of y_pred
    (the original S^1 abs loss, unweighted; module docstring)."""
    dim = y_true.shape[-1]
    abs_pred = ops.abs(y_pred[..., :dim])
    tiny = np.finfo(keras.backend.standardize_dtype(abs_pred.dtype)).tiny
    log_sq = 2.0 * ops.log(ops.maximum(abs_pred, ops.cast(tiny, abs_pred.dtype)))
    return -ops.sum(ops.square(ops.cast(y_true, abs_pred.dtype)) * log_sq, axis=-1)


ABS_LOSSES = {"cosine": abs_cosine_proximity, "log_likelihood": abs_log_likelihood}


def sign_cross_entropy(y_true: Tensor, y_pred: Tensor,
                       sign_layout: SignLayoutLike = None) -> Tensor:
    """Per-sample cross-entropy of the S_exp sign logits ``y_pred[:, d:]`` against the
    sign label of y_true under ``sign_layout`` (None: the default layout read from the
    width, 2^d or 2^(d-1) classes)."""
    dim = y_true.shape[-1]
    logits = y_pred[..., dim:]
    layout = signs_lib.layout_for_output(dim, logits.shape[-1], sign_layout)
    labels = layout.labels_ops(y_true)
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def smooth_l1(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample mean over components of smooth-L1 (delta 1)."""
    diff = ops.abs(y_pred - y_true)
    per = ops.where(diff < 1.0, 0.5 * ops.square(diff), diff - 0.5)
    return ops.mean(per, axis=-1)


#: |‖y_true‖ - 1| above this makes ``check_targets`` refuse a target.
UNIT_TOLERANCE = 1e-2


def _target_problems(y, weights, layout, tol):
    """NumPy: (number of non-unit targets, number breaking the layout's fixed sign) among
    the targets ``(..., d)`` whose weight is not 0."""
    y = np.asarray(y, np.float64)
    keep = np.ones(y.shape[:-1], bool) if weights is None else \
        np.broadcast_to(np.asarray(weights) != 0, y.shape[:-1])
    non_unit = np.abs(np.linalg.norm(y, axis=-1) - 1.0) > tol
    wrong_sign = np.zeros_like(non_unit)
    if layout is not None and layout.fixed is not None and not layout.antipodal:
        wrong_sign = y[..., layout.fixed] * layout.fixed_sign < -1e-6
    return int(np.sum(non_unit & keep)), int(np.sum(wrong_sign & keep))


def _problem_message(who, non_unit, wrong_sign, layout, tol):
    parts = []
    if non_unit:
        parts.append(f"{non_unit} target(s) are not unit vectors (| |y| - 1 | > {tol:g}); "
                     "normalise them (targets live on S^(d-1))")
    if wrong_sign:
        parts.append(f"{wrong_sign} target(s) break the sign layout's assumption that component "
                     f"{layout.fixed} has sign {layout.fixed_sign:+d} ({layout!r}); that sign is not "
                     "classified, so these targets cannot be predicted: fix the data or use a "
                     "layout that classifies it")
    return f"{who}: " + "; ".join(parts)


def check_targets(y_true: Tensor, sign_layout: SignLayoutLike = None, sample_weight: Tensor | None = None,
                  tol: float = UNIT_TOLERANCE, who: str = "SExpLoss") -> Tensor:
    """Refuse targets that S_exp cannot fit: non-unit vectors, and (for a sign layout with a
    fixed, non-antipodal component such as 'normal_yzx') a fixed component of the wrong sign.

    ``y_true`` ``(..., d)``; ``sample_weight`` (broadcast to ``y_true.shape[:-1]``): samples
    of weight 0 (masked pixels) are not checked. Eagerly a bad target raises
    ``ValueError``; inside a TensorFlow graph (``fit``) the check is a
    ``tf.debugging.Assert`` that stops the step with the same message (as
    ``InvalidArgumentError``); inside ``jax.jit`` it is a host callback that warns.
    Returns ``y_true`` (with the check attached as a control dependency in TF graphs).
    """
    layout = None if sign_layout is None else signs_lib.SignLayout.coerce(sign_layout)
    backend = keras.backend.backend()
    eager = True
    if backend == "tensorflow":
        import tensorflow as tf
        eager = tf.executing_eagerly()
    elif backend == "jax":
        import jax
        eager = not any(isinstance(t, jax.core.Tracer) for t in (y_true, sample_weight))
    if _in_symbolic_scope():
        # Keras traces shapes with placeholder tensors (the torch trainer calls the loss once
        # with targets of ones before the first step): nothing real to check
        return y_true
    if eager:
        bad = _target_problems(ops.convert_to_numpy(y_true),
                               None if sample_weight is None else ops.convert_to_numpy(sample_weight),
                               layout, tol)
        if any(bad):
            raise ValueError(_problem_message(who, *bad, layout, tol))
        return y_true
    yt = ops.convert_to_tensor(y_true)
    y = ops.cast(yt, "float32")
    keep = ops.ones(ops.shape(y)[:-1], "bool") if sample_weight is None else \
        ops.broadcast_to(ops.not_equal(sample_weight, 0), ops.shape(y)[:-1])
    non_unit = ops.abs(ops.sqrt(ops.sum(ops.square(y), axis=-1)) - 1.0) > tol
    wrong = ops.zeros_like(non_unit)
    if layout is not None and layout.fixed is not None and not layout.antipodal:
        wrong = y[..., layout.fixed] * float(layout.fixed_sign) < -1e-6
    n_bad = ops.sum(ops.cast(ops.logical_and(non_unit, keep), "int32"))
    n_wrong = ops.sum(ops.cast(ops.logical_and(wrong, keep), "int32"))
    if backend == "tensorflow":
        import tensorflow as tf
        ok = tf.logical_and(tf.equal(n_bad, 0), tf.equal(n_wrong, 0))
        msg = _problem_message(who, 1, 1 if (layout is not None and layout.fixed is not None
                                             and not layout.antipodal) else 0, layout, tol)
        assertion = tf.debugging.Assert(ok, [msg, "non-unit:", n_bad, "wrong fixed sign:", n_wrong])
        with tf.control_dependencies([assertion]):
            return tf.identity(yt)
    if backend == "jax":
        import jax

        def _warn(nb, nw):
            if int(nb) or int(nw):
                warnings.warn(_problem_message(who, int(nb), int(nw), layout, tol), stacklevel=2)

        jax.debug.callback(_warn, n_bad, n_wrong)
    return yt


def _in_symbolic_scope():
    """True while Keras infers shapes with placeholder tensors (``compute_output_spec``)."""
    try:
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
    except ImportError:  # a Keras without it: no placeholder calls to skip
        return False
    return in_symbolic_scope()


#: The SExpHead layers alive in this process (heads.py adds each): a loss without a sign
#: layout checks that the layout it reads from the output width is one of theirs.
SEXP_HEADS: "weakref.WeakSet" = weakref.WeakSet()


def _check_default_layout(who, dim, num_classes):
    """Refuse ``sign_layout=None`` when every live SExpHead of this output width (d, K) uses
    another layout than the default one the width gives (e.g. 'normal_yzx', 4 logits for
    d = 3, read as 'first_fixed'): its sign labels would be another head's."""
    default = signs_lib.layout_for_output(dim, num_classes)
    layouts = [h.sign_layout for h in list(SEXP_HEADS)
               if h.dim == dim and h.num_sign_classes == num_classes]
    if layouts and all(layout != default for layout in layouts):
        name = _preset_name(layouts[0])
        raise ValueError(f"{who}: sign_layout=None reads the {num_classes} sign logits as "
                         f"{_preset_name(default)}, but the SExpHead of this output uses {name}; "
                         f"give the loss the head's layout: loss=head.make_loss() or "
                         f"SExpLoss(sign_layout={name})")


def _preset_name(layout):
    """'normal_yzx' (quoted) for a preset layout, else the layout's repr."""
    for name in signs_lib.SignLayout.PRESETS:
        try:
            if signs_lib.SignLayout.preset(name, layout.dim) == layout:
                return repr(name)
        except ValueError:  # a preset of another dimension
            continue
    return repr(layout)


def _layout_or_none(layout):
    return None if layout is None else signs_lib.SignLayout.coerce(layout)


def _layout_config(layout):
    return None if layout is None else layout.get_config()


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

    def __init__(self, name: str = "abs_cosine_proximity", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] is not None and y_pred.shape[-1] < y_true.shape[-1]:
            raise ValueError(f"{self.name}: y_pred has {y_pred.shape[-1]} columns, fewer "
                             f"than the {y_true.shape[-1]} target components")
        return abs_cosine_proximity(y_true, y_pred)


@keras.saving.register_keras_serializable(package="spherical_regression")
class SignCrossEntropyLoss(keras.losses.Loss):
    """Cross-entropy of the S_exp sign logits against the target's sign class."""

    def __init__(self, sign_layout: SignLayoutLike = None, name: str = "sign_cross_entropy",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.sign_layout = _layout_or_none(sign_layout)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=True)
        return sign_cross_entropy(y_true, y_pred, self.sign_layout)

    def get_config(self):
        config = super().get_config()
        config.update(sign_layout=_layout_config(self.sign_layout))
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SExpLoss(keras.losses.Loss):
    """S_exp total: abs_weight * abs loss + sign_weight * sign CE.

    ``abs_loss``: 'cosine' (default) or 'log_likelihood' (the original S^1 loss; use
    abs_weight=4 as the original). ``sign_layout``: the head's sign layout (signs.py;
    None: the default layout read from the output width); ``SExpHead.make_loss()``
    passes the head's own.

    ``check_targets`` (default True): calling the loss (``loss(y_true, y_pred,
    sample_weight)``, as ``fit`` does) refuses non-unit targets and targets whose
    fixed sign contradicts the layout (see :func:`check_targets`; samples of weight 0
    are not checked). ``call`` itself does not check."""

    def __init__(self, abs_weight: float = 10.0, sign_weight: float = 1.0,
                 abs_loss: str = "cosine", sign_layout: SignLayoutLike = None,
                 name: str = "sexp_loss", check_targets: bool = True, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.check_targets = bool(check_targets)
        if abs_loss not in ABS_LOSSES:
            raise ValueError(f"unknown abs_loss {abs_loss!r}: expected one of {sorted(ABS_LOSSES)}")
        self.abs_weight = float(abs_weight)
        self.sign_weight = float(sign_weight)
        self.abs_loss = abs_loss
        self.sign_layout = _layout_or_none(sign_layout)

    def __call__(self, y_true, y_pred, sample_weight=None):
        d, w = y_true.shape[-1], y_pred.shape[-1]
        if self.sign_layout is None and d is not None and w is not None and w > d:
            _check_default_layout(self.name, d, w - d)
        if self.check_targets:
            layout = self.sign_layout
            if layout is None and d is not None and w is not None and w > d:
                layout = signs_lib.layout_for_output(y_true.shape[-1],
                                                     y_pred.shape[-1] - y_true.shape[-1])
            y_true = check_targets(y_true, layout, sample_weight, who=self.name)
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=True)
        return (self.abs_weight * ABS_LOSSES[self.abs_loss](y_true, y_pred)
                + self.sign_weight * sign_cross_entropy(y_true, y_pred, self.sign_layout))

    def get_config(self):
        config = super().get_config()
        config.update(abs_weight=self.abs_weight, sign_weight=self.sign_weight,
                      abs_loss=self.abs_loss, sign_layout=_layout_config(self.sign_layout),
                      check_targets=self.check_targets)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SFlatLoss(keras.losses.Loss):
    """Cosine proximity 1 - cos(y_pred, y_true) for the S_flat head."""

    def __init__(self, name: str = "sflat_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=False)
        return cosine_proximity(y_true, y_pred)


@keras.saving.register_keras_serializable(package="spherical_regression")
class DirectLoss(keras.losses.Loss):
    """Smooth-L1 between the raw output and the target, for the Direct head."""

    def __init__(self, name: str = "direct_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_pred_width(self.name, y_true, y_pred, packed=False)
        return smooth_l1(y_true, y_pred)


def loss_for_head(head: str, **kwargs: Any) -> keras.losses.Loss:
    """The paper's loss for a head name: sexp -> SExpLoss(**kwargs), sflat -> SFlatLoss,
    direct -> DirectLoss."""
    if head == "sexp":
        return SExpLoss(**kwargs)
    if head == "sflat":
        return SFlatLoss()
    if head == "direct":
        return DirectLoss()
    raise ValueError(f"unknown head {head!r}: expected 'sexp', 'sflat' or 'direct'")
