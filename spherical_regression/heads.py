"""Regression heads for targets on S^{d-1}: S_exp, S_flat and Direct (Liao et al. 2019).

All heads map features ``(batch, features)`` to an output tensor; ``decode`` maps
that output to unit vectors ``(batch, d)``. Each head splits its forward pass in
``pre_activation(x)`` (a list whose first element is O, the pre-activation
logits the paper's gradient analysis is about) and ``activate(parts)``, so a
training loop can take dL/dO.

Output layouts::

  SExpHead   (batch, d + K): [:, :d] absolute values |y| (unit norm, >= 0),
             [:, d:] sign-class logits; K and the class order come from the sign
             layout (signs.py): 2^d, or 2^(d-1) with the first sign fixed
             (``fix_first_sign``), or a named layout such as 'biternion'.
  SFlatHead  (batch, d): O / ||O||.
  DirectHead (batch, d): O itself (decode l2-normalises it).

S_exp logit convention (``logit_scale``)::

  'paper'         |y_i| = exp(o_i) / sqrt(sum_j exp(2 o_j)) = sqrt(softmax(2 o))_i,
                  the formula of the paper (the default);
  'original_code' |y_i| = sqrt(softmax(o))_i, what the original PyTorch code computes.

The two give the same |y| for logits o (paper) and 2 o (original code), so a
network trained with one reaches the same outputs with logits twice as large under
the other, and dL/dO under 'paper' is exactly 2x dL/dO under 'original_code' at
matched outputs.

All functions keep the dtype of their input (float16, float32, float64).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from . import losses as losses_lib
from . import signs as signs_lib
from .signs import SignLayoutLike
from spherical_cnn._types import ArrayLike, Tensor

from . import decoding

# decoding's names, public names of this module since the start. Looked up on use, not copied
# at import: importing spherical_regression.decoding first imports Keras, whose import hook
# imports this module while decoding is still half initialised (spherical_cnn/_registration.py).
_FROM_DECODING = ("_EPS", "LOGIT_SCALES", "_logit_factor", "decode_output", "l2_normalize",
                  "sexp_abs", "sexp_decode")


def __getattr__(name: str) -> Any:
    if name in _FROM_DECODING:
        return getattr(decoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_DECODING))


class _Head(keras.layers.Layer):
    """Shared parts: optional hidden Dense+ReLU layers, then Dense(dim) -> O."""

    head_name = None

    def __init__(self, dim: int, hidden_units: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(dim, int) or dim < 2:
            raise ValueError(f"{type(self).__name__}: dim must be an int >= 2, got {dim!r}")
        self.dim = dim
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.hidden = [keras.layers.Dense(u, activation="relu", name=f"hidden_{i}")
                       for i, u in enumerate(self.hidden_units)]
        self.out_dense = keras.layers.Dense(dim, name="logits")

    def _trunk(self, layers, x):
        for layer in layers:
            x = layer(x)
        return x

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.out_dense.build(shape)

    def pre_activation(self, x):
        return [self.out_dense(self._trunk(self.hidden, x))]

    def activate(self, parts):
        raise NotImplementedError

    def call(self, x):
        return self.activate(self.pre_activation(x))

    def decode(self, output):
        """Unit vectors ``(batch, dim)`` from this head's output."""
        return decoding.decode_output(self.head_name, output, self.dim)

    def make_loss(self, **kwargs):
        """The paper's loss for this head's output, with the head's conventions
        (S_exp: its sign layout; ``kwargs`` go to ``SExpLoss``, e.g. ``abs_weight``)."""
        return losses_lib.loss_for_head(self.head_name, **kwargs)

    def make_metrics(self, kind=None):
        """[MedErr, Acc@pi/6, Acc@pi/12, Acc@pi/24] for this head's output (``kind``: None
        picks 'rotation' for d = 4, else 'vector'; see ``metrics.resolve_kind``)."""
        from . import metrics
        return metrics.paper_metrics(metrics.resolve_kind(kind, self.dim), self.head_name,
                                     self._metric_layout())

    def _metric_layout(self):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, hidden_units=list(self.hidden_units))
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SExpHead(_Head):
    """Spherical exponential head: |y| = sqrt(softmax(2 O)) (or sqrt(softmax(O)), see
    ``logit_scale``) plus a sign classifier.

    Args:
      dim: d, the target lives on S^{d-1}.
      fix_first_sign: classify only the last d-1 signs (first component >= 0);
        use for quaternions, where q ~ -q. Ignored when ``sign_layout`` is given.
      hidden_units: widths of Dense+ReLU layers before each branch (the
        original uses one layer of 996 units, separate per branch).
      logit_scale: 'paper' (default) or 'original_code' (module docstring).
      sign_layout: a ``signs.SignLayout``, a preset name ('quaternion',
        'quaternion_original', 'normal_yzx', 'biternion', 'all', 'first_fixed') or
        its config dict; None: the default layout of ``fix_first_sign``.
    """

    head_name = "sexp"

    def __init__(self, dim: int, fix_first_sign: bool = False, hidden_units: Sequence[int] = (),
                 logit_scale: str = "paper", sign_layout: SignLayoutLike = None,
                 **kwargs: Any) -> None:
        super().__init__(dim, hidden_units, **kwargs)
        decoding._logit_factor(logit_scale)
        self.logit_scale = logit_scale
        self.sign_layout = signs_lib.SignLayout.coerce(sign_layout, dim, bool(fix_first_sign))
        self._layout_given = sign_layout is not None
        self.fix_first_sign = self.sign_layout.fixed == 0
        self.num_sign_classes = self.sign_layout.num_classes
        self.sign_hidden = [keras.layers.Dense(u, activation="relu", name=f"sign_hidden_{i}")
                            for i, u in enumerate(self.hidden_units)]
        self.sign_dense = keras.layers.Dense(self.num_sign_classes, name="sign_logits")
        losses_lib.SEXP_HEADS.add(self)

    def build(self, input_shape):
        super().build(input_shape)
        shape = tuple(input_shape)
        for layer in self.sign_hidden:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.sign_dense.build(shape)

    def pre_activation(self, x):
        """[O (batch, d) absolute-value logits, sign logits (batch, K)]."""
        return [self.out_dense(self._trunk(self.hidden, x)),
                self.sign_dense(self._trunk(self.sign_hidden, x))]

    def activate(self, parts):
        logits, sign_logits = parts
        return ops.concatenate([decoding.sexp_abs(logits, self.logit_scale), sign_logits], axis=-1)

    def decode(self, output):
        """Unit vectors ``(batch, dim)``: |y| times the signs of the top sign class."""
        return decoding.sexp_decode(output, self.dim, self.sign_layout)

    def make_loss(self, **kwargs):
        """``SExpLoss`` with this head's sign layout (the |y| it reads is already activated,
        so the logit scale does not enter the loss); ``kwargs`` go to ``SExpLoss``."""
        kwargs.setdefault("sign_layout", self.sign_layout)
        return losses_lib.SExpLoss(**kwargs)

    def _metric_layout(self):
        return self.sign_layout

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dim + self.num_sign_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(fix_first_sign=self.fix_first_sign, logit_scale=self.logit_scale,
                      sign_layout=self.sign_layout.get_config() if self._layout_given else None)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SFlatHead(_Head):
    """S_flat head: l2-normalised raw output O / ||O||."""

    head_name = "sflat"

    def activate(self, parts):
        return decoding.l2_normalize(parts[0])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dim,)


@keras.saving.register_keras_serializable(package="spherical_regression")
class DirectHead(_Head):
    """Direct head: the raw output O, unconstrained (trained with smooth-L1)."""

    head_name = "direct"

    def activate(self, parts):
        return parts[0]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dim,)


HEADS = {"sexp": SExpHead, "sflat": SFlatHead, "direct": DirectHead}



@keras.saving.register_keras_serializable(package="spherical_regression")
class CategoryConditionedHead(keras.layers.Layer):
    """One head per category; each sample gets the output of its own category's head
    (the original's S^3 model: its regression and sign layers have one output block per
    category, and the ground-truth category selects the block, at training and at test).

    Called on ``(features (batch, f), category_ids (batch,) int)``; the output, its layout
    and ``decode`` are those of the unconditioned head ``make_head(head, dim, ...)`` (the
    extra keyword arguments go there: ``fix_first_sign``, ``logit_scale``,
    ``sign_layout``). The category blocks are one Dense layer of ``num_categories`` x
    width per branch (O, and the sign logits for S_exp); block c equals a plain head
    whose Dense weights are the c-th slice. ``pre_activation`` returns the *selected* O
    (``(batch, dim)``), so dL/dO is the gradient that reaches the head that was used.
    """

    def __init__(self, head: str, dim: int, num_categories: int, **head_kwargs: Any) -> None:
        # the Layer's own arguments stay here (the inner head only activates and decodes)
        layer_kwargs = {k: head_kwargs.pop(k) for k in ("name", "trainable", "dtype", "autocast")
                        if k in head_kwargs}
        super().__init__(**layer_kwargs)
        if not isinstance(num_categories, int) or num_categories < 1:
            raise ValueError(f"CategoryConditionedHead: num_categories must be an int >= 1, "
                             f"got {num_categories!r}")
        if head_kwargs.get("hidden_units"):
            raise ValueError("CategoryConditionedHead: hidden_units are not supported")
        self.head_name, self.dim, self.num_categories = head, dim, num_categories
        self.head_kwargs = dict(head_kwargs)
        self.inner = make_head(head, dim, dtype=self.dtype_policy,
                               **head_kwargs)  # activation, decoding, layout
        widths = [dim] + ([self.inner.num_sign_classes] if head == "sexp" else [])
        self.widths = widths
        names = ["logits", "sign_logits"]
        self.blocks = [keras.layers.Dense(w * num_categories, name=f"{names[i]}_per_category",
                                          dtype=self.dtype_policy)
                       for i, w in enumerate(widths)]

    def build(self, input_shape):
        features_shape = tuple(input_shape[0]) if isinstance(input_shape[0], (list, tuple)) \
            else tuple(input_shape)
        for block in self.blocks:
            block.build(features_shape)

    def pre_activation(self, features, category_ids):
        """[O (batch, dim), sign logits (batch, K) for S_exp] of each sample's category."""
        ids = ops.reshape(ops.cast(category_ids, "int32"), (-1, 1, 1))
        parts = []
        for block, width in zip(self.blocks, self.widths):
            out = ops.reshape(block(features), (-1, self.num_categories, width))
            parts.append(ops.take_along_axis(out, ids, axis=1)[:, 0])
        return parts

    def activate(self, parts):
        return self.inner.activate(parts)

    def call(self, inputs):
        features, category_ids = inputs
        return self.activate(self.pre_activation(features, category_ids))

    def decode(self, output):
        return self.inner.decode(output)

    def make_loss(self, **kwargs):
        """The loss of the unconditioned head (its conventions; see ``SExpHead.make_loss``)."""
        return self.inner.make_loss(**kwargs)

    def make_metrics(self, kind=None):
        """The metrics of the unconditioned head (see ``_Head.make_metrics``)."""
        return self.inner.make_metrics(kind)

    def get_config(self):
        config = super().get_config()
        config.update(head=self.head_name, dim=self.dim, num_categories=self.num_categories,
                      **self.head_kwargs)
        return config


def make_head(name: str, dim: int, fix_first_sign: bool = False, hidden_units: Sequence[int] = (),
              logit_scale: str = "paper", sign_layout: SignLayoutLike = None,
              **kwargs: Any) -> keras.layers.Layer:
    """Head by name ('sexp'|'sflat'|'direct'); ``fix_first_sign``, ``logit_scale`` and
    ``sign_layout`` only matter for sexp."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}: expected one of {sorted(HEADS)}")
    if name == "sexp":
        return SExpHead(dim, fix_first_sign=fix_first_sign, hidden_units=hidden_units,
                        logit_scale=logit_scale, sign_layout=sign_layout, **kwargs)
    return HEADS[name](dim, hidden_units=hidden_units, **kwargs)


def sexp_encode(y: ArrayLike, fix_first: bool = False, sign_margin: float = 10.0,
                logit_scale: str = "paper", sign_layout: SignLayoutLike = None) -> np.ndarray:
    """NumPy inverse of the S_exp head's activation: unit vectors ``(n, d)`` ->
    (logits O ``(n, d)`` with sexp_abs(O, logit_scale) = |y|, sign logits ``(n, K)`` whose
    argmax is the sign label of y under the layout). O = log|y| for 'paper' and 2 log|y|
    for 'original_code'; zero components get log(1e-30) (times 2)."""
    y = np.asarray(y, dtype=np.float64)
    layout = signs_lib.SignLayout.coerce(sign_layout, y.shape[-1], fix_first)
    logits = (2.0 / decoding._logit_factor(logit_scale)) * np.log(np.maximum(np.abs(y), 1e-30))
    labels = layout.labels(y)
    sign_logits = sign_margin * np.eye(layout.num_classes)[labels]
    return logits, sign_logits
