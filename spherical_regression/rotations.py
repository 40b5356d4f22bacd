"""Quaternion / rotation-matrix helpers (NumPy, float64).

Quaternions are ``(..., 4)`` arrays (w, x, y, z) = the paper's (a, b, c, d),
q = a + b i + c j + d k, acting on column vectors as R(q) v. q and -q are the
same rotation; ``canonical`` picks the one with w >= 0.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# One implementation of the conversions and the sampling for the whole project.
from spherical_cnn.data.rotations import quaternion_to_matrix, sample_quaternions  # noqa: F401


def axis_angle_to_matrix(axis: ArrayLike, angle: ArrayLike) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` (radians, ``(...)``) about ``axis`` ``(..., 3)``."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    x, y, z = np.moveaxis(axis, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1),
                  np.stack([-y, x, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def axis_angle_to_quaternion(axis: ArrayLike, angle: ArrayLike) -> np.ndarray:
    """Quaternion ``(..., 4)`` of a rotation by ``angle`` about ``axis`` ``(..., 3)``."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    half = 0.5 * np.asarray(angle, dtype=np.float64)[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def quaternion_multiply(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Hamilton product p q, ``(..., 4)``; R(p q) = R(p) R(q)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    a1, b1, c1, d1 = np.moveaxis(p, -1, 0)
    a2, b2, c2, d2 = np.moveaxis(q, -1, 0)
    return np.stack([a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
                     a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                     a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
                     a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2], axis=-1)


def canonical(q: ArrayLike) -> np.ndarray:
    """q or -q, whichever has w >= 0 (the representative used for labels)."""
    q = np.asarray(q, dtype=np.float64)
    return np.where(q[..., :1] < 0, -q, q)


def random_quaternions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 4)`` unit quaternions, Haar-uniform on SO(3), canonical (w >= 0)."""
    return sample_quaternions("so3", n, rng)
