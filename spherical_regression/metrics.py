"""Angular errors and the paper's summary metrics (MedErr, Acc@theta).

NumPy functions (float64) for evaluation and keras.ops / keras.metrics.Metric
forms for compile/fit. Angles are in radians except MedErr, which is in degrees.

Rotation error (the corrected metric of Liao et al.): the geodesic angle
arccos(clip((trace(R1^T R2) - 1) / 2, -1, 1)), in [0, pi]; from quaternions
(w, x, y, z) it is evaluated through their rotation matrices, so q ~ -q.
"""
import math

import keras
import numpy as np
from keras import ops

from . import heads as heads_lib
from .rotations import quaternion_to_matrix

THRESHOLDS = {"pi/6": math.pi / 6, "pi/12": math.pi / 12, "pi/24": math.pi / 24}


# ---------------------------------------------------------------- NumPy

def geodesic_distance_matrices(r1, r2):
    """Geodesic angles ``(...)`` between rotation matrices ``(..., 3, 3)``."""
    r1, r2 = np.asarray(r1, np.float64), np.asarray(r2, np.float64)
    if r1.shape[-2:] != (3, 3) or r2.shape[-2:] != (3, 3):
        raise ValueError(f"geodesic_distance_matrices: expected (..., 3, 3) arrays, "
                         f"got {r1.shape} and {r2.shape}")
    trace = np.einsum("...ij,...ij->...", r1, r2)  # trace(R1^T R2)
    return np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))


def geodesic_distance_quaternions(q1, q2):
    """Geodesic angles ``(N,)`` between rotations given as quaternions ``(N, 4)``
    (w, x, y, z); not necessarily unit or canonical."""
    q1, q2 = np.asarray(q1), np.asarray(q2)
    if q1.shape != q2.shape or q1.shape[-1:] != (4,):
        raise ValueError(f"geodesic_distance_quaternions: expected two (N, 4) arrays, "
                         f"got {q1.shape} and {q2.shape}")
    return geodesic_distance_matrices(quaternion_to_matrix(q1), quaternion_to_matrix(q2))


def vector_angle(u, v):
    """Angles ``(...)`` between vectors ``(..., d)`` (normalised first), e.g. surface
    normals; 2 atan2(|u - v|, |u + v|) of the unit vectors, accurate at 0 and pi."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    if u.shape != v.shape:
        raise ValueError(f"vector_angle: shapes differ, {u.shape} vs {v.shape}")
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return 2.0 * np.arctan2(np.linalg.norm(u - v, axis=-1), np.linalg.norm(u + v, axis=-1))


def biternion_angle(b1, b2):
    """Angular error ``(...)`` in [0, pi] between biternions (cos t, sin t) ``(..., 2)``."""
    b1, b2 = np.asarray(b1, np.float64), np.asarray(b2, np.float64)
    if b1.shape[-1:] != (2,) or b2.shape[-1:] != (2,):
        raise ValueError(f"biternion_angle: expected (..., 2) arrays, got {b1.shape}, {b2.shape}")
    t = np.arctan2(b1[..., 1], b1[..., 0]) - np.arctan2(b2[..., 1], b2[..., 0])
    return np.abs(np.angle(np.exp(1j * t)))


def median_error_deg(angles):
    """MedErr: median of angular errors (radians) in degrees."""
    angles = np.asarray(angles, np.float64)
    if angles.size == 0:
        raise ValueError("median_error_deg: no angles")
    return float(np.degrees(np.median(angles)))


def accuracy_at(angles, threshold):
    """Fraction of errors strictly below ``threshold`` (radians)."""
    angles = np.asarray(angles, np.float64)
    if angles.size == 0:
        raise ValueError("accuracy_at: no angles")
    return float(np.mean(angles < threshold))


def summarize_errors(angles):
    """{'MedErr': degrees, 'Acc@pi/6': frac, 'Acc@pi/12': frac, 'Acc@pi/24': frac}."""
    out = {"MedErr": median_error_deg(angles)}
    out.update({f"Acc@{k}": accuracy_at(angles, t) for k, t in THRESHOLDS.items()})
    return out


# ---------------------------------------------------------------- keras.ops

def geodesic_distance_quaternions_ops(q1, q2):
    """keras.ops geodesic angle ``(batch,)`` between quaternions ``(batch, 4)``.

    (trace(R1^T R2) - 1)/2 = 2 <q1,q2>^2 - 1 for unit q, so the angle is
    2 arccos|<q1,q2>|, twice the angle between s q2 and q1 on S^3 (s = sign<q1,q2>);
    evaluated as 4 atan2(|q1 - s q2|, |q1 + s q2|), which stays accurate in float32
    near 0.
    """
    q1 = heads_lib.l2_normalize(q1)
    q2 = heads_lib.l2_normalize(q2)
    s = ops.where(ops.sum(q1 * q2, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    q2 = q2 * ops.cast(s, q2.dtype)
    return 4.0 * ops.arctan2(ops.norm(q1 - q2, axis=-1), ops.norm(q1 + q2, axis=-1))


def vector_angle_ops(u, v):
    """keras.ops angle ``(batch,)`` between vectors ``(batch, d)``."""
    u, v = heads_lib.l2_normalize(u), heads_lib.l2_normalize(v)
    return 2.0 * ops.arctan2(ops.norm(u - v, axis=-1), ops.norm(u + v, axis=-1))


def angular_error_ops(kind, y_true, y_pred_unit):
    """Angles for ``kind`` 'rotation' (quaternions, q ~ -q) or 'vector' (S^{d-1},
    biternions included)."""
    if kind == "rotation":
        return geodesic_distance_quaternions_ops(y_true, y_pred_unit)
    if kind == "vector":
        return vector_angle_ops(y_true, y_pred_unit)
    raise ValueError(f"unknown error kind {kind!r}: expected 'rotation' or 'vector'")


class _AngularMetric(keras.metrics.Metric):
    """Decodes the head output (``head`` = 'sexp'|'sflat'|'direct'), then accumulates
    angular errors against the unit targets ``(batch, d)``."""

    def __init__(self, kind="rotation", head="sexp", name=None, dtype="float32", **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if kind not in ("rotation", "vector"):
            raise ValueError(f"unknown error kind {kind!r}: expected 'rotation' or 'vector'")
        if head not in heads_lib.HEADS:
            raise ValueError(f"unknown head {head!r}: expected one of {sorted(heads_lib.HEADS)}")
        self.kind, self.head = kind, head

    def _errors(self, y_true, y_pred):
        y_true = ops.cast(y_true, self.dtype)
        y_pred = ops.cast(y_pred, self.dtype)
        unit = heads_lib.decode_output(self.head, y_pred, y_true.shape[-1])
        return angular_error_ops(self.kind, y_true, unit)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, head=self.head)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class MedianAngularError(_AngularMetric):
    """MedErr in degrees, streaming: errors are counted in ``bins`` equal bins on
    [0, 180] deg and the median is interpolated inside its bin (exact to 180/bins/2)."""

    def __init__(self, kind="rotation", head="sexp", bins=3600, name="med_err", **kwargs):
        super().__init__(kind=kind, head=head, name=name, **kwargs)
        self.bins = int(bins)
        self.counts = self.add_variable(shape=(self.bins,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        deg = self._errors(y_true, y_pred) * (180.0 / math.pi)
        idx = ops.clip(ops.cast(ops.floor(deg * (self.bins / 180.0)), "int32"), 0, self.bins - 1)
        onehot = ops.one_hot(idx, self.bins, dtype=self.dtype)
        if sample_weight is not None:
            onehot = onehot * ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
        self.counts.assign(self.counts + ops.sum(onehot, axis=0))

    def result(self):
        total = ops.sum(self.counts)
        cum = ops.cumsum(self.counts)
        half = 0.5 * total
        k = ops.argmax(ops.cast(cum >= half, "int32"))  # first bin reaching half
        before = ops.where(k > 0, ops.take(cum, ops.maximum(k - 1, 0)), 0.0)
        inside = ops.maximum(ops.take(self.counts, k), 1e-12)
        frac = ops.clip((half - before) / inside, 0.0, 1.0)
        width = 180.0 / self.bins
        return ops.where(total > 0, (ops.cast(k, self.dtype) + frac) * width, 0.0)

    def reset_state(self):
        self.counts.assign(ops.zeros((self.bins,), dtype=self.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(bins=self.bins)
        return config


@keras.saving.register_keras_serializable(package="spherical_regression")
class AngularAccuracy(_AngularMetric):
    """Acc@threshold: fraction of angular errors below ``threshold`` radians."""

    def __init__(self, threshold=math.pi / 6, kind="rotation", head="sexp", name=None, **kwargs):
        name = name or f"acc_{threshold:.4f}"
        super().__init__(kind=kind, head=head, name=name, **kwargs)
        self.threshold = float(threshold)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        hit = ops.cast(self._errors(y_true, y_pred) < self.threshold, self.dtype)
        w = ops.ones_like(hit) if sample_weight is None else ops.cast(
            ops.reshape(sample_weight, (-1,)), self.dtype)
        self.hits.assign(self.hits + ops.sum(hit * w))
        self.total.assign(self.total + ops.sum(w))

    def result(self):
        return ops.where(self.total > 0, self.hits / ops.maximum(self.total, 1e-12), 0.0)

    def reset_state(self):
        self.hits.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold)
        return config


def paper_metrics(kind="rotation", head="sexp"):
    """[MedErr, Acc@pi/6, Acc@pi/12, Acc@pi/24] as Keras metrics for compile()."""
    return [MedianAngularError(kind=kind, head=head, name="med_err")] + [
        AngularAccuracy(t, kind=kind, head=head, name=f"acc_pi_{k.split('/')[1]}")
        for k, t in THRESHOLDS.items()]
