"""Angular errors and the paper's summary metrics (MedErr, Acc@theta).

NumPy functions (float64) for evaluation and keras.ops / keras.metrics.Metric
forms for compile/fit. Angles are in radians except MedErr, which is in degrees.

Rotation error (the corrected metric of Liao et al.): the geodesic angle
arccos(clip((trace(R1^T R2) - 1) / 2, -1, 1)), in [0, pi]; from quaternions
(w, x, y, z) it is evaluated through their rotation matrices, so q ~ -q.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from . import decoding
from . import signs as signs_lib
from .rotations import quaternion_to_matrix
from .signs import SignLayoutLike
from spherical_cnn._types import ArrayLike, Tensor

THRESHOLDS = {"pi/6": math.pi / 6, "pi/12": math.pi / 12, "pi/24": math.pi / 24}


# ---------------------------------------------------------------- NumPy

def geodesic_distance_matrices(r1: ArrayLike, r2: ArrayLike) -> np.ndarray:
    """Geodesic angles ``(...)`` between rotation matrices ``(..., 3, 3)``."""
    r1, r2 = np.asarray(r1, np.float64), np.asarray(r2, np.float64)
    if r1.shape[-2:] != (3, 3) or r2.shape[-2:] != (3, 3):
        raise ValueError(f"geodesic_distance_matrices: expected (..., 3, 3) arrays, "
                         f"got {r1.shape} and {r2.shape}")
    trace = np.einsum("...ij,...ij->...", r1, r2)  # trace(R1^T R2)
    return np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))


def geodesic_distance_quaternions(q1: ArrayLike, q2: ArrayLike) -> np.ndarray:
    """Geodesic angles ``(N,)`` between rotations given as quaternions ``(N, 4)``
    (w, x, y, z); not necessarily unit or canonical."""
    q1, q2 = np.asarray(q1), np.asarray(q2)
    if q1.shape != q2.shape or q1.shape[-1:] != (4,):
        raise ValueError(f"geodesic_distance_quaternions: expected two (N, 4) arrays, "
                         f"got {q1.shape} and {q2.shape}")
    return geodesic_distance_matrices(quaternion_to_matrix(q1), quaternion_to_matrix(q2))


def vector_angle(u: ArrayLike, v: ArrayLike) -> np.ndarray:
    """Angles ``(...)`` between vectors ``(..., d)`` (normalised first), e.g. surface
    normals; 2 atan2(|u - v|, |u + v|) of the unit vectors, accurate at 0 and pi."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    if u.shape != v.shape:
        raise ValueError(f"vector_angle: shapes differ, {u.shape} vs {v.shape}")
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return 2.0 * np.arctan2(np.linalg.norm(u - v, axis=-1), np.linalg.norm(u + v, axis=-1))


def biternion_angle(b1: ArrayLike, b2: ArrayLike) -> np.ndarray:
    """Angular error ``(...)`` in [0, pi] between biternions (cos t, sin t) ``(..., 2)``."""
    b1, b2 = np.asarray(b1, np.float64), np.asarray(b2, np.float64)
    if b1.shape[-1:] != (2,) or b2.shape[-1:] != (2,):
        raise ValueError(f"biternion_angle: expected (..., 2) arrays, got {b1.shape}, {b2.shape}")
    t = np.arctan2(b1[..., 1], b1[..., 0]) - np.arctan2(b2[..., 1], b2[..., 0])
    return np.abs(np.angle(np.exp(1j * t)))


def median_error_deg(angles: ArrayLike) -> float:
    """MedErr: median of angular errors (radians) in degrees."""
    angles = np.asarray(angles, np.float64)
    if angles.size == 0:
        raise ValueError("median_error_deg: no angles")
    return float(np.degrees(np.median(angles)))


def accuracy_at(angles: ArrayLike, threshold: float) -> float:
    """Fraction of errors strictly below ``threshold`` (radians)."""
    angles = np.asarray(angles, np.float64)
    if angles.size == 0:
        raise ValueError("accuracy_at: no angles")
    return float(np.mean(angles < threshold))


def summarize_errors(angles: ArrayLike) -> dict[str, float]:
    """{'MedErr': degrees, 'Acc@pi/6': frac, 'Acc@pi/12': frac, 'Acc@pi/24': frac}."""
    out = {"MedErr": median_error_deg(angles)}
    out.update({f"Acc@{k}": accuracy_at(angles, t) for k, t in THRESHOLDS.items()})
    return out


# ---------------------------------------------------------------- keras.ops

def geodesic_distance_quaternions_ops(q1: Tensor, q2: Tensor) -> Tensor:
    """keras.ops geodesic angle ``(batch,)`` between quaternions ``(batch, 4)``.

    (trace(R1^T R2) - 1)/2 = 2 <q1,q2>^2 - 1 for unit q, so the angle is
    2 arccos|<q1,q2>|, twice the angle between s q2 and q1 on S^3 (s = sign<q1,q2>);
    evaluated as 4 atan2(|q1 - s q2|, |q1 + s q2|), which stays accurate in float32
    near 0.
    """
    q1 = decoding.l2_normalize(q1)
    q2 = decoding.l2_normalize(q2)
    s = ops.where(ops.sum(q1 * q2, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    q2 = q2 * ops.cast(s, q2.dtype)
    return 4.0 * ops.arctan2(ops.norm(q1 - q2, axis=-1), ops.norm(q1 + q2, axis=-1))


def vector_angle_ops(u: Tensor, v: Tensor) -> Tensor:
    """keras.ops angle ``(batch,)`` between vectors ``(batch, d)``."""
    u, v = decoding.l2_normalize(u), decoding.l2_normalize(v)
    return 2.0 * ops.arctan2(ops.norm(u - v, axis=-1), ops.norm(u + v, axis=-1))


KINDS = ("rotation", "vector")


def resolve_kind(kind: str | None, dim: int | None, who: str = "angular error") -> str:
    """The error kind for targets of width ``dim``: ``None`` gives 'rotation' for d = 4
    (quaternions) and 'vector' otherwise; 'rotation' on targets that are not quaternions
    is refused (it would report twice the angle between S^2 vectors)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown error kind {kind!r}: expected 'rotation', 'vector' or None")
    if dim is None:
        return kind or "rotation"
    if kind is None:
        return "rotation" if dim == 4 else "vector"
    if kind == "rotation" and dim != 4:
        raise ValueError(f"{who}: kind='rotation' needs quaternion targets (d = 4, w x y z), got "
                         f"d = {dim}; use kind='vector' (or None) for vectors on S^{dim - 1}")
    return kind


def angular_error_ops(kind, y_true, y_pred_unit):
    """Angles for ``kind`` 'rotation' (quaternions, q ~ -q) or 'vector' (S^{d-1},
    biternions included); ``None`` picks by the width (:func:`resolve_kind`)."""
    kind = resolve_kind(kind, y_true.shape[-1])
    if kind == "rotation":
        return geodesic_distance_quaternions_ops(y_true, y_pred_unit)
    if kind == "vector":
        return vector_angle_ops(y_true, y_pred_unit)
    raise ValueError(f"unknown error kind {kind!r}: expected 'rotation' or 'vector'")


def _compute_dtype(*dtypes):
    """float64 if any of ``dtypes`` is float64, else float32 (errors of float16 / bfloat16
    outputs are computed in float32: arctan2 in half precision is off by ~0.1 deg)."""
    names = [keras.backend.standardize_dtype(d) for d in dtypes]
    return "float64" if "float64" in names else "float32"


class _AngularMetric(keras.metrics.Metric):
    """Decodes the head output (``head`` = 'sexp'|'sflat'|'direct'; ``sign_layout`` for
    'sexp', signs.py), then accumulates angular errors against the unit targets
    ``(batch, d)``. Targets and outputs of any float dtype are accepted; errors are
    computed in float64 if either is float64 (or the metric's dtype is), else float32.

    ``kind``: 'rotation' (quaternion targets, d = 4: the rotation angle, q ~ -q),
    'vector' (the angle between vectors on S^{d-1}) or None (default: 'rotation' for
    d = 4, else 'vector'). 'rotation' on targets of another width is refused at the
    first update. A head's ``make_metrics()`` fills in head, layout and kind."""

    def __init__(self, kind: str | None = None, head: str = "sexp", name: str | None = None,
                 dtype: str = "float32", sign_layout: SignLayoutLike = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name, dtype=dtype, **kwargs)
        resolve_kind(kind, None)
        if head not in decoding.HEAD_NAMES:
            raise ValueError(f"unknown head {head!r}: expected one of {sorted(decoding.HEAD_NAMES)}")
        self.kind, self.head = kind, head
        self.sign_layout = None if sign_layout is None else signs_lib.SignLayout.coerce(
            sign_layout)

    def _errors(self, y_true, y_pred):
        """Angular errors in radians ``(batch,)``, in the compute dtype."""
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        dtype = _compute_dtype(self.dtype, y_true.dtype, y_pred.dtype)
        y_true = ops.cast(y_true, dtype)
        y_pred = ops.cast(y_pred, dtype)
        kind = resolve_kind(self.kind, y_true.shape[-1], f"{type(self).__name__}({self.name})")
        unit = decoding.decode_output(self.head, y_pred, y_true.shape[-1], self.sign_layout)
        return angular_error_ops(kind, y_true, unit)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, head=self.head,
                      sign_layout=None if self.sign_layout is None
                      else self.sign_layout.get_config())
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class MedianAngularError(_AngularMetric):
    """MedErr in degrees, equal to ``np.median`` of the errors (weighted: the midpoint of
    the lower and upper weighted medians) while at most ``capacity`` samples were seen.

    A Keras metric's state has a fixed shape, so the errors are kept in a buffer of
    ``capacity`` entries (default 65536, 0.5 MiB with their weights); the median is
    taken by sorting it. The errors are also counted in ``bins`` equal bins on
    [0, 180] deg; past ``capacity`` samples the result falls back to the histogram,
    interpolated linearly inside the bin where the cumulative weight reaches half the
    total. That estimate lies within one bin width (180 / bins deg) of the lower
    median, so its distance to np.median is at most 180 / bins plus half the gap
    between the two middle errors (for large sets, essentially 180 / bins).
    ``overflowed`` (a result-side helper) tells which case holds.

    Errors are stored in float64 if the metric's dtype is float64, else float32 (a
    float32 median is then exact up to float32 rounding of the errors).
    Under a multi-replica tf.distribute strategy the buffers of the replicas are not
    merged: use the NumPy metrics (``median_error_deg``) there.
    """

    def __init__(self, kind: str | None = None, head: str = "sexp", bins: int = 3600,
                 capacity: int = 65536, name: str = "med_err", **kwargs: Any) -> None:
        super().__init__(kind=kind, head=head, name=name, **kwargs)
        self.bins = int(bins)
        self.capacity = int(capacity)
        if self.bins < 1 or self.capacity < 0:
            raise ValueError(f"MedianAngularError: bins must be >= 1 and capacity >= 0, got "
                             f"{bins}, {capacity}")
        self._store = _compute_dtype(self.dtype)
        self.counts = self.add_variable(shape=(self.bins,), initializer="zeros", name="counts",
                                        dtype=self._store)
        # one extra slot at the end absorbs writes past the capacity
        self.values = self.add_variable(shape=(self.capacity + 1,), initializer="zeros",
                                        name="values", dtype=self._store)
        self.weights_buf = self.add_variable(shape=(self.capacity + 1,), initializer="zeros",
                                             name="value_weights", dtype=self._store)
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen", dtype="int32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        deg = ops.cast(self._errors(y_true, y_pred), self._store) * (180.0 / math.pi)
        deg = ops.reshape(deg, (-1,))
        if sample_weight is None:
            w = ops.ones_like(deg)
        else:
            w = ops.reshape(ops.cast(sample_weight, self._store), (-1,))
            w = w * ops.ones_like(deg)
        idx = ops.clip(ops.cast(ops.floor(deg * (self.bins / 180.0)), "int32"), 0, self.bins - 1)
        onehot = ops.one_hot(idx, self.bins, dtype=self._store)
        self.counts.assign(self.counts + ops.sum(onehot * ops.reshape(w, (-1, 1)), axis=0))
        n = ops.shape(deg)[0]
        pos = self.seen + ops.arange(n, dtype="int32")
        pos = ops.reshape(ops.where(pos < self.capacity, pos, self.capacity), (-1, 1))
        self.values.assign(ops.scatter_update(ops.convert_to_tensor(self.values), pos, deg))
        self.weights_buf.assign(ops.scatter_update(ops.convert_to_tensor(self.weights_buf), pos,
                                                   w))
        self.seen.assign(self.seen + ops.cast(n, "int32"))

    def overflowed(self):
        """True once more than ``capacity`` samples were seen (the histogram case)."""
        return bool(ops.convert_to_numpy(self.seen) > self.capacity)

    def _exact(self):
        used = ops.arange(self.capacity + 1, dtype="int32") < ops.minimum(self.seen,
                                                                          self.capacity)
        values = ops.convert_to_tensor(self.values)
        weights = ops.convert_to_tensor(self.weights_buf)
        vals = ops.where(used, values, ops.cast(float("inf"), self._store))
        wts = ops.where(used, weights, ops.zeros_like(weights))
        order = ops.argsort(vals)
        vals, wts = ops.take(vals, order), ops.take(wts, order)
        cum = ops.cumsum(wts)
        half = 0.5 * cum[-1]
        # lower median: first value whose cumulative weight reaches half the total;
        # upper median: first value whose cumulative weight exceeds it
        lower = ops.take(vals, ops.argmax(ops.cast(cum >= half, "int32")))
        upper = ops.take(vals, ops.argmax(ops.cast(cum > half, "int32")))
        return 0.5 * (lower + upper), cum[-1]

    def _histogram(self):
        counts = ops.convert_to_tensor(self.counts)
        total = ops.sum(counts)
        cum = ops.cumsum(counts)
        half = 0.5 * total
        k = ops.argmax(ops.cast(cum >= half, "int32"))  # first bin reaching half
        zero = ops.zeros((), self._store)
        before = ops.where(k > 0, ops.take(cum, ops.maximum(k - 1, 0)), zero)
        inside = ops.maximum(ops.take(counts, k), ops.cast(1e-12, self._store))
        frac = ops.clip((half - before) / inside, 0.0, 1.0)
        width = 180.0 / self.bins
        return (ops.cast(k, self._store) + frac) * width, total

    def result(self):
        exact, w_exact = self._exact()
        hist, w_hist = self._histogram()
        over = ops.convert_to_tensor(self.seen) > self.capacity
        value = ops.where(over, hist, exact)
        total = ops.where(over, w_hist, w_exact)
        return ops.where(total > 0, value, ops.zeros_like(value))

    def reset_state(self):
        self.counts.assign(ops.zeros((self.bins,), dtype=self._store))
        self.values.assign(ops.zeros((self.capacity + 1,), dtype=self._store))
        self.weights_buf.assign(ops.zeros((self.capacity + 1,), dtype=self._store))
        self.seen.assign(ops.zeros((), dtype="int32"))

    def get_config(self):
        config = super().get_config()
        config.update(bins=self.bins, capacity=self.capacity)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class AngularAccuracy(_AngularMetric):
    """Acc@threshold: fraction of angular errors below ``threshold`` radians."""

    def __init__(self, threshold: float = math.pi / 6, kind: str | None = None, head: str = "sexp",
                 name: str | None = None, **kwargs: Any) -> None:
        name = name or f"acc_{threshold:.4f}"
        super().__init__(kind=kind, head=head, name=name, **kwargs)
        self.threshold = float(threshold)
        # counts in float32 at least (float16 stops counting exactly at 2048)
        self._store = _compute_dtype(self.dtype)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits",
                                      dtype=self._store)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total",
                                       dtype=self._store)

    def update_state(self, y_true, y_pred, sample_weight=None):
        hit = ops.cast(self._errors(y_true, y_pred) < self.threshold, self._store)
        hit = ops.reshape(hit, (-1,))
        w = ops.ones_like(hit) if sample_weight is None else ops.cast(
            ops.reshape(sample_weight, (-1,)), self._store) * ops.ones_like(hit)
        self.hits.assign(self.hits + ops.sum(hit * w))
        self.total.assign(self.total + ops.sum(w))

    def result(self):
        hits, total = ops.convert_to_tensor(self.hits), ops.convert_to_tensor(self.total)
        return ops.where(total > 0, hits / ops.maximum(total, 1e-12), ops.zeros_like(total))

    def reset_state(self):
        self.hits.assign(ops.zeros((), self._store))
        self.total.assign(ops.zeros((), self._store))

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold)
        return config


def paper_metrics(kind: str | None = None, head: str = "sexp",
                  sign_layout: SignLayoutLike = None) -> list[keras.metrics.Metric]:
    """[MedErr, Acc@pi/6, Acc@pi/12, Acc@pi/24] as Keras metrics for compile() (``kind``
    None: by the target width, see :func:`resolve_kind`)."""
    return [MedianAngularError(kind=kind, head=head, name="med_err",
                               sign_layout=sign_layout)] + [
        AngularAccuracy(t, kind=kind, head=head, name=f"acc_pi_{k.split('/')[1]}",
                        sign_layout=sign_layout)
        for k, t in THRESHOLDS.items()]
