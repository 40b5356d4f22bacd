"""Regression heads for targets on S^{d-1}: S_exp, S_flat and Direct (Liao et al. 2019).

All heads map features ``(batch, features)`` to an output tensor; ``decode`` maps
that output to unit vectors ``(batch, d)``. Each head splits its forward pass in
``pre_activation(x)`` (a list whose first element is O, the pre-activation
logits the paper's gradient analysis is about) and ``activate(parts)``, so a
training loop can take dL/dO.

Output layouts:
  SExpHead   (batch, d + K): [:, :d] absolute values |y| (unit norm, >= 0),
             [:, d:] sign-class logits, K = 2^d or 2^(d-1) (``fix_first_sign``).
  SFlatHead  (batch, d): O / ||O||.
  DirectHead (batch, d): O itself (decode l2-normalises it).
"""
import keras
from keras import ops

from . import signs as signs_lib

_EPS = 1e-12


def sexp_abs(logits):
    """|y_i| = exp(o_i) / sqrt(sum_j exp(2 o_j)) = sqrt(softmax(2o))_i, computed in
    log space (o_i - logsumexp(2o)/2) so that neither overflow nor sqrt(0) occurs."""
    log_abs = logits - 0.5 * ops.logsumexp(2.0 * logits, axis=-1, keepdims=True)
    return ops.exp(log_abs)


def l2_normalize(x, axis=-1):
    """x / ||x|| with the squared norm floored at 1e-12 (as tf.math.l2_normalize)."""
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, _EPS))


def sexp_decode(output, dim):
    """Unit vectors ``(batch, dim)`` from a packed S_exp output ``(batch, dim + K)``:
    |y| * signs[argmax(sign logits)]. K is read from the output width."""
    width = output.shape[-1]
    if width is None or width <= dim:
        raise ValueError(f"S_exp output of width {width} cannot hold dim={dim} absolute "
                         "values plus sign logits")
    fix_first = signs_lib.fix_first_from_num_classes(dim, width - dim)
    abs_y = output[..., :dim]
    label = ops.argmax(output[..., dim:], axis=-1)
    return abs_y * signs_lib.label_signs_ops(label, dim, fix_first)


def decode_output(head, output, dim):
    """Unit vectors from the output of a head named ``head`` ('sexp'|'sflat'|'direct')."""
    if head == "sexp":
        return sexp_decode(output, dim)
    if head in ("sflat", "direct"):
        return l2_normalize(output)
    raise ValueError(f"unknown head {head!r}: expected 'sexp', 'sflat' or 'direct'")


class _Head(keras.layers.Layer):
    """Shared parts: optional hidden Dense+ReLU layers, then Dense(dim) -> O."""

    head_name = None

    def __init__(self, dim, hidden_units=(), **kwargs):
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
        return decode_output(self.head_name, output, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, hidden_units=list(self.hidden_units))
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SExpHead(_Head):
    """Spherical exponential head: |y| = sqrt(softmax(2 O)) plus a sign classifier.

    Args:
      dim: d, the target lives on S^{d-1}.
      fix_first_sign: classify only the last d-1 signs (first component >= 0);
        use for quaternions, where q ~ -q.
      hidden_units: widths of Dense+ReLU layers before each branch (the
        original uses one layer of 996 units, separate per branch).
    """

    head_name = "sexp"

    def __init__(self, dim, fix_first_sign=False, hidden_units=(), **kwargs):
        super().__init__(dim, hidden_units, **kwargs)
        self.fix_first_sign = bool(fix_first_sign)
        self.num_sign_classes = signs_lib.num_sign_classes(dim, self.fix_first_sign)
        self.sign_hidden = [keras.layers.Dense(u, activation="relu", name=f"sign_hidden_{i}")
                            for i, u in enumerate(self.hidden_units)]
        self.sign_dense = keras.layers.Dense(self.num_sign_classes, name="sign_logits")

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
        return ops.concatenate([sexp_abs(logits), sign_logits], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dim + self.num_sign_classes,)

    def get_config(self):
        config = super().get_config()
        config.update(fix_first_sign=self.fix_first_sign)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class SFlatHead(_Head):
    """S_flat head: l2-normalised raw output O / ||O||."""

    head_name = "sflat"

    def activate(self, parts):
        return l2_normalize(parts[0])

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


def make_head(name, dim, fix_first_sign=False, hidden_units=(), **kwargs):
    """Head by name ('sexp'|'sflat'|'direct'); ``fix_first_sign`` only matters for sexp."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}: expected one of {sorted(HEADS)}")
    if name == "sexp":
        return SExpHead(dim, fix_first_sign=fix_first_sign, hidden_units=hidden_units, **kwargs)
    return HEADS[name](dim, hidden_units=hidden_units, **kwargs)


def sexp_encode(y, fix_first=False, sign_margin=10.0):
    """NumPy inverse of the S_exp head's activation: unit vectors ``(n, d)`` ->
    (logits O ``(n, d)`` with sexp_abs(O) = |y|, sign logits ``(n, K)`` whose argmax
    is the sign label of y). Zero components get logit log(1e-30)."""
    import numpy as np
    y = np.asarray(y, dtype=np.float64)
    logits = np.log(np.maximum(np.abs(y), 1e-30))
    labels = signs_lib.sign_labels(y, fix_first)
    k = signs_lib.num_sign_classes(y.shape[-1], fix_first)
    sign_logits = sign_margin * np.eye(k)[labels]
    return logits, sign_logits
