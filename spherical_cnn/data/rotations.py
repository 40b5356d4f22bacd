"""Rotation sampling and quaternion helpers for data augmentation.

Conventions: unit quaternions are ``(w, x, y, z)`` with ``w >= 0`` (q and -q
are the same rotation; we keep the representative with non-negative scalar
part). Matrices are 3x3 and act on column vectors, ``v' = R @ v``; a batch of
points ``(n, 3)`` is rotated as ``points @ R.T``.

Modes:
  ``so3``  uniform (Haar) random rotations, from normalised 4D Gaussians;
  ``z``    rotations about the vertical z axis by a uniform angle;
  ``none`` the identity.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

MODES = ('so3', 'z', 'none')


def canonical_quaternion(q):
    """Unit-normalise ``q`` (..., 4) and flip the sign so that ``w >= 0``.

    Raises ValueError for a shape other than (..., 4) or a zero quaternion.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f'quaternions must have shape (..., 4) (w, x, y, z), got {q.shape}')
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError('zero quaternion: it is no rotation')
    q = q / norm
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: ArrayLike) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from quaternions ``(..., 4)`` (w, x, y, z)."""
    q = canonical_quaternion(q)
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(m):
    """Quaternions ``(..., 4)`` (w, x, y, z), ``w >= 0``, from rotation matrices ``(..., 3, 3)``.

    Uses the largest of the four diagonal combinations for numerical stability.
    """
    m = np.asarray(m, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    tr = np.trace(m, axis1=1, axis2=2)
    # 4*w^2, 4*x^2, 4*y^2, 4*z^2 (each up to a common factor)
    cand = np.stack([1 + tr,
                     1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], axis=1)
    best = np.argmax(cand, axis=1)
    q = np.empty((len(m), 4))
    for i, (r, b) in enumerate(zip(m, best)):
        s = 2 * np.sqrt(max(cand[i, b], 1e-300))
        if b == 0:
            q[i] = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif b == 1:
            q[i] = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif b == 2:
            q[i] = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
        else:
            q[i] = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    return canonical_quaternion(q).reshape(shape + (4,))


def sample_quaternions(mode, n, rng):
    """Sample ``n`` rotations as quaternions ``(n, 4)`` (w, x, y, z), ``w >= 0``.

    Args:
      mode: 'so3' (uniform on SO(3)), 'z' (about the z axis, uniform angle) or
        'none' (n identities).
      n: number of rotations.
      rng: a ``numpy.random.Generator`` (or an int seed); same seed, same rotations.
    """
    rng = np.random.default_rng(rng)
    if mode == 'so3':
        # a normalised isotropic 4D Gaussian is uniform on S^3, i.e. Haar on SO(3)
        return canonical_quaternion(rng.standard_normal((n, 4)))
    if mode == 'z':
        half = rng.uniform(0, 2 * np.pi, size=n) / 2
        q = np.zeros((n, 4))
        q[:, 0], q[:, 3] = np.cos(half), np.sin(half)
        return canonical_quaternion(q)
    if mode == 'none':
        q = np.zeros((n, 4))
        q[:, 0] = 1
        return q
    raise ValueError(f'unknown rotation mode {mode!r}; expected one of {MODES}')


def sample_rotations(mode, n, rng):
    """Like :func:`sample_quaternions` but returns matrices ``(n, 3, 3)``."""
    return quaternion_to_matrix(sample_quaternions(mode, n, rng))


def rotate_points(points, rotation):
    """Rotate points ``(n, 3)`` by a matrix ``(3, 3)`` or quaternion ``(4,)``."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape == (4,):
        r = quaternion_to_matrix(r)
    return np.asarray(points, dtype=np.float64) @ r.T
