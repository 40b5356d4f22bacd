"""Rotation of spherical maps in the spectral domain (Wigner-D), in ``keras.ops``.

``rotate(maps, R)`` returns the map ``g(x) = f(R^T x)``: the content of ``f``
carried by the rotation R (a feature at direction ``x`` moves to ``R x``).
This is the convention of ``spherical_cnn.data.raycast``: the map of the
rotated mesh ``R @ mesh`` equals ``rotate(map of mesh, R)`` up to the
sampling error of the render.

Layouts (see docs/layouts.md):

* maps ``(batch, n, n, channels)`` = (batch, azimuth, polar, channels) on the
  Driscoll-Healy grid, polar ``pi*j/n``, azimuth ``2*pi*k/n``; the grid point
  (k, j) is the unit vector ``(sin p cos a, sin p sin a, cos p)``;
* rotations ``(3, 3)`` or ``(batch, 3, 3)`` matrices acting on column vectors,
  or unit quaternions ``(4,)`` / ``(batch, 4)`` ordered (w, x, y, z) (the
  project's convention, ``spherical_cnn.data.rotations``; q and -q are the same
  rotation and non-unit quaternions are normalised; SciPy's order (x, y, z, w)
  with ``scalar_first=False``), or a SciPy ``Rotation``. Reflections, non-orthogonal
  matrices and zero quaternions are refused. One rotation is applied to
  the whole batch; a batch of rotations pairs with the maps one to one (or
  rotates a single map into a batch of rotated copies).
* coefficients (``rotate_coefficients``) in the packed real layout of
  ``sht``: ``(batch, 2, 1, L, L, channels)`` (axis 1 real/imaginary part, then
  degree l and order m >= 0).

Method. With the ZYZ Euler angles of ``R = Rz(alpha) Ry(beta) Rz(gamma)``
(``rotation_to_euler_zyz``), the coefficients of degree l change as
``c'_m = sum_k D^l_{mk}(R) c_k`` with
``D^l(R) = Z(alpha - pi/2) d^l(pi/2)^T Z(beta) d^l(pi/2) Z(gamma + pi/2)``,
``Z(t) = diag(exp(-i m t))`` and the real Wigner matrix ``d^l(pi/2)``
(orthonormal complex harmonics with the Condon-Shortley phase, as everywhere in
the project). To keep the Euler angles away from gimbal lock (beta = 0 or pi,
where they are not unique and their gradients are not finite), R is applied as
``(R R0) R0^T`` with R0 = I or Ry(pi/2), whichever leaves ``R R0`` far from it.
So only one fixed table is needed: ``d^l(pi/2)`` for l < L,
``(L, 2L - 1, 2L - 1)`` float32, 4 L (2L - 1)^2 bytes (4.2 MB at n = 128,
33 MB at n = 256); the angles enter as per-order phases. The maps go through
the 'sep' transform (its tables: ``sht_tables.estimate_table_nbytes``).

The result is band-limited to degrees < L = n / 2: exact (to float rounding)
for band-limited maps; for other maps it is the rotation of their band-limited
part. Gradients flow to ``maps`` and to ``R`` (matrix or quaternion) everywhere,
the identity included.
"""
from __future__ import annotations

import functools
import warnings

import keras
import numpy as np
from keras import ops

from ._types import ArrayLike, Tensor
from scipy.linalg import expm

from . import layouts
from . import sht
from . import sht_tables as tables

__all__ = ["rotate", "rotate_coefficients", "rotation_to_euler_zyz", "rotation_to_euler_zyz_numpy",
           "quaternion_to_matrix", "euler_zyz_to_matrix", "wigner_d_half_pi", "wigner_D_numpy"]


# ---------------------------------------------------------------- NumPy tables / references

def _wigner_d_l(l, beta):
    """Real Wigner small-d ``d^l(beta)``, ``(2l+1, 2l+1)`` float64, rows/columns m = -l..l.

    ``d^l(beta) = exp(-i beta J_y) = expm(-beta (J_+ - J_-) / 2)`` with
    ``<m+1|J_+|m> = sqrt(l(l+1) - m(m+1))``.
    """
    m = np.arange(-l, l)
    jp = np.diag(np.sqrt(l * (l + 1.0) - m * (m + 1.0)), k=-1)  # J_+ : m -> m+1 (row m+1)
    return expm(-0.5 * beta * (jp - jp.T))


@functools.lru_cache(maxsize=None)
def wigner_d_half_pi(L, dtype="float64"):
    """``d^l(pi/2)`` for l < L, ``(L, 2L-1, 2L-1)``: ``[l, m + L - 1, k + L - 1]``, zero where |m| or |k| > l.

    Read-only, cached; 4 L (2L-1)^2 bytes in float32.
    """
    if int(L) != L or L < 1:
        raise ValueError(f"wigner_d_half_pi: L must be a positive integer, got {L!r}")
    M = 2 * L - 1
    out = np.zeros((L, M, M))
    for l in range(L):
        s = slice(L - 1 - l, L + l)
        out[l, s, s] = _wigner_d_l(l, np.pi / 2)
    out = out.astype(dtype)
    out.setflags(write=False)
    return out


def euler_zyz_to_matrix(alpha, beta, gamma):
    """``Rz(alpha) Ry(beta) Rz(gamma)`` (NumPy, float64), ``(..., 3, 3)`` for broadcast angles."""
    a, b, g = np.broadcast_arrays(*(np.asarray(t, np.float64) for t in (alpha, beta, gamma)))

    def rz(t):
        c, s, o, z = np.cos(t), np.sin(t), np.ones_like(t), np.zeros_like(t)
        return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(t.shape + (3, 3))

    c, s, o, z = np.cos(b), np.sin(b), np.ones_like(b), np.zeros_like(b)
    ry = np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(b.shape + (3, 3))
    return rz(a) @ ry @ rz(g)


def wigner_D_numpy(l, R):
    """Complex ``D^l(R)`` ``(2l+1, 2l+1)`` (rows/columns m = -l..l) for one rotation matrix (NumPy).

    ``f(R^T x) = sum_m c'_m Y_l^m(x)`` with ``c' = D^l(R) c`` when ``f = sum_m c_m Y_l^m``.
    """
    a, b, g = (float(t) for t in rotation_to_euler_zyz_numpy(R))
    m = np.arange(-l, l + 1)
    return (np.exp(-1j * m * a)[:, None] * _wigner_d_l(l, b) * np.exp(-1j * m * g)[None, :])


def rotation_to_euler_zyz_numpy(R):
    """NumPy twin of ``rotation_to_euler_zyz`` for one or more matrices ``(..., 3, 3)``."""
    R = np.asarray(R, np.float64)
    out = rotation_to_euler_zyz(ops.convert_to_tensor(R))
    return tuple(np.asarray(ops.convert_to_numpy(t), np.float64) for t in out)


# ---------------------------------------------------------------- keras.ops

def quaternion_to_matrix(q):
    """Rotation matrices ``(..., 3, 3)`` from quaternions ``(..., 4)`` (w, x, y, z), normalised first (keras.ops)."""
    q = q / ops.sqrt(ops.sum(ops.square(q), axis=-1, keepdims=True))
    w, x, y, z = (q[..., i] for i in range(4))
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    m = ops.stack(rows, axis=-1)
    return ops.reshape(m, tuple(ops.shape(q)[:-1]) + (3, 3))


def rotation_to_euler_zyz(R):
    """ZYZ Euler angles ``(alpha, beta, gamma)``, each ``(...)``, of ``R = Rz(alpha) Ry(beta) Rz(gamma)``.

    ``R`` ``(..., 3, 3)`` (keras.ops). beta in [0, pi]; alpha and gamma in (-2 pi, 2 pi].
    The sum alpha + gamma is taken from ``R[0,0] + R[1,1]`` and ``R[1,0] - R[0,1]``
    (well conditioned for beta <= pi/2) and the difference from ``R[0,0] - R[1,1]``,
    ``R[1,0] + R[0,1]`` (for beta > pi/2), gamma from the third row; so near the
    poles (beta = 0 or pi) the angles that matter are accurate. At beta = 0 or pi
    exactly, gamma is 0 or pi and alpha completes it; there the angles are not
    differentiable (``rotate`` never evaluates them there).
    """
    r = lambda i, j: R[..., i, j]  # noqa: E731
    sb = ops.sqrt(ops.square(r(0, 2)) + ops.square(r(1, 2)))
    beta = ops.arctan2(sb, r(2, 2))
    gamma = ops.arctan2(r(2, 1), -r(2, 0))
    total = ops.arctan2(r(1, 0) - r(0, 1), r(0, 0) + r(1, 1))           # alpha + gamma
    diff = ops.arctan2(-(r(1, 0) + r(0, 1)), r(1, 1) - r(0, 0))         # alpha - gamma
    alpha = ops.where(r(2, 2) >= 0, total - gamma, diff + gamma)
    return alpha, beta, gamma


def _concrete(x):
    """``x`` as a float64 NumPy array when its values are known now, else None (traced)."""
    if isinstance(x, (np.ndarray, list, tuple, float, int)):
        return np.asarray(x, np.float64)
    try:
        return np.asarray(ops.convert_to_numpy(x), np.float64)
    except Exception:  # a symbolic tensor (tf.function, jax.jit): checked where values exist
        return None


#: |R^T R - I| above this (or det R < 0) makes ``rotate`` refuse a matrix.
ORTHOGONALITY_TOLERANCE = 1e-3


def _check_rotation(values, quaternion):
    """Refuse what is not a rotation: a reflection (det -1), a non-orthogonal matrix, a zero
    quaternion. ``values``: NumPy ``(..., 3, 3)`` or ``(..., 4)``."""
    if quaternion:
        norms = np.linalg.norm(values, axis=-1)
        if np.any(norms < 1e-12) or not np.all(np.isfinite(norms)):
            raise ValueError("rotate: a quaternion of norm 0 (or not finite) is not a rotation; "
                             "the identity is (1, 0, 0, 0)")
        return
    det = np.linalg.det(values)
    if np.any(det < 0):
        raise ValueError(f"rotate: R has determinant {float(np.min(det)):.3g}: a reflection, not a "
                         "rotation; multiply it by -1 (or flip one axis) to get the rotation part")
    err = np.abs(np.swapaxes(values, -1, -2) @ values - np.eye(3)).max()
    if not err <= ORTHOGONALITY_TOLERANCE:
        raise ValueError(f"rotate: R is not orthogonal (|R^T R - I| = {err:.3g} > "
                         f"{ORTHOGONALITY_TOLERANCE:g}); give a rotation matrix or a quaternion")


def _as_rotation_matrices(R, dtype, scalar_first=None):
    if _is_scipy_rotation(R):
        R = R.as_matrix()
    values = _concrete(R)
    R = ops.cast(ops.convert_to_tensor(R), dtype)
    shape = tuple(R.shape)
    if shape[-1:] == (4,) and len(shape) in (1, 2):
        if values is not None:
            _check_rotation(values, quaternion=True)
        if scalar_first is None:
            warnings.warn("rotate: reading the quaternion as (w, x, y, z), scalar first; SciPy's "
                          "Rotation.as_quat() gives (x, y, z, w): pass scalar_first=False for that "
                          "order (or the Rotation itself), scalar_first=True to silence this",
                          UserWarning, stacklevel=4)
        elif not scalar_first:
            R = ops.concatenate([R[..., 3:], R[..., :3]], axis=-1)
        R = quaternion_to_matrix(R)
    elif not (shape[-2:] == (3, 3) and len(shape) in (2, 3)):
        raise ValueError(f"rotate: R must be a rotation matrix (3, 3) / (batch, 3, 3) or a quaternion "
                         f"(4,) / (batch, 4) (w, x, y, z), got shape {shape}")
    elif values is not None:
        _check_rotation(values, quaternion=False)
    if len(R.shape) == 2:
        R = R[None]
    return R


def _is_scipy_rotation(R):
    return type(R).__name__ == "Rotation" and hasattr(R, "as_matrix")


def _phase(c, s, re, im):
    """(re + i im) * exp(-i t) for cos t = c, sin t = s."""
    return re * c + im * s, im * c - re * s


def rotate_coefficients(coeffs: Tensor, R: ArrayLike | Tensor, scalar_first: bool | None = None) -> Tensor:
    """Rotate packed real-layout coefficients ``(batch, 2, 1, L, L, channels)`` by R.

    Args:
        coeffs: real ``(batch, 2, 1, L, L, channels)`` (axis 1 real/imaginary part,
            ``[.., l, m]`` for m >= 0), the coefficients of real maps (``sht``'s
            ``forward_packed`` with ``real=True``).
        R: ``(3, 3)``, ``(batch, 3, 3)``, ``(4,)`` or ``(batch, 4)`` (module docstring), or
            a ``scipy.spatial.transform.Rotation``.
        scalar_first: quaternion order, as SciPy's ``Rotation.from_quat``: True (w, x, y, z,
            the project's), False (x, y, z, w, SciPy's default); None reads (w, x, y, z) and
            warns that SciPy's order differs.
    Returns the coefficients of ``g(x) = f(R^T x)``, same shape and dtype (float32 or float64).
    """
    layouts.refuse_complex(coeffs, "rotate_coefficients",
                           "split a complex map into real and imaginary channels first "
                           "(spherical_cnn.layouts.complex_to_channels)")
    shape = tuple(coeffs.shape)
    if len(shape) != 6 or shape[1:3] != (2, 1) or shape[3] != shape[4] or shape[3] is None:
        raise ValueError(f"rotate_coefficients: coefficients must be (batch, 2, 1, L, L, channels) "
                         f"(real layout), got shape {shape}")
    dtype = "float64" if keras.backend.standardize_dtype(coeffs.dtype) == "float64" else "float32"
    coeffs = ops.cast(coeffs, dtype)
    L, ch = shape[3], shape[5]
    M = 2 * L - 1
    Rm = _as_rotation_matrices(R, dtype, scalar_first)  # (B, 3, 3), B = 1 or batch
    nb, nr = shape[0], Rm.shape[0]
    if nb is not None and nr is not None and nb != nr and 1 not in (nb, nr):
        raise ValueError(f"rotate: {nr} rotations for a batch of {nb} maps; give one rotation, "
                         f"one per map, or one map")
    # R = (R R0) R0^T with R0 = I, or Ry(pi/2) where R is within ~41 deg of a gimbal lock
    # (|R22| >= 0.75): then R R0 is at least ~41 deg away from one, so its Euler angles
    # are smooth functions of R (finite, correct gradients also at R = I)
    flip = ops.abs(Rm[:, 2, 2]) >= 0.75  # (B,)
    ry90 = ops.convert_to_tensor(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype))
    R0 = ops.where(flip[:, None, None], ry90[None], ops.eye(3, dtype=dtype)[None])
    alpha, beta, gamma = rotation_to_euler_zyz(ops.matmul(Rm, R0))  # (B,)
    beta0 = ops.cast(flip, dtype) * (-np.pi / 2)  # R0^T = Ry(beta0)
    # the full order range m = -(L-1)..L-1 of real maps: c_{-m} = (-1)^m conj(c_m)
    c = ops.transpose(coeffs[:, :, 0], (2, 3, 0, 1, 4))  # (l, m, b, r, ch)
    sgn = ops.convert_to_tensor(((-1.0) ** np.arange(L))[::-1].reshape(1, L, 1, 1).astype(dtype))
    neg = ops.flip(c[:, 1:], axis=1)  # orders L-1 .. 1 (no negative-step slice: torch has none)
    neg_re = neg[:, :, :, 0] * sgn[:, :-1]
    neg_im = -neg[:, :, :, 1] * sgn[:, :-1]
    re = ops.concatenate([neg_re, c[:, :, :, 0]], axis=1)  # (l, M, b, ch)
    im = ops.concatenate([neg_im, c[:, :, :, 1]], axis=1)
    m = ops.convert_to_tensor(np.arange(-(L - 1), L).astype(dtype))

    def phases(t):
        ang = m[:, None] * ops.reshape(t, (1, -1))  # (M, B)
        return ops.cos(ang)[None, :, :, None], ops.sin(ang)[None, :, :, None]  # (1, M, B, 1)

    d = sht._backend_constant(wigner_d_half_pi(L, dtype))  # (l, M, M)

    def apply(table, x):
        b = ops.shape(x)[2]
        y = ops.matmul(table, ops.reshape(x, (L, table.shape[-1], -1)))
        return ops.reshape(y, (L, table.shape[-2], b, ch))

    dT = ops.transpose(d, (0, 2, 1))
    # D(R0^T) = Z(-pi/2) d^T Z(beta0) d Z(pi/2), then D(R R0) = Z(a - pi/2) d^T Z(b) d Z(g + pi/2)
    re, im = _phase(*phases(ops.zeros_like(beta0) + np.pi / 2), re, im)
    re, im = apply(d, re), apply(d, im)
    re, im = _phase(*phases(beta0), re, im)
    re, im = apply(dT, re), apply(dT, im)
    re, im = _phase(*phases(gamma), re, im)  # Z(-pi/2) Z(g + pi/2)
    re, im = apply(d, re), apply(d, im)
    re, im = _phase(*phases(beta), re, im)
    dT = dT[:, L - 1:]  # rows m >= 0 of d^T
    re, im = apply(dT, re), apply(dT, im)  # (l, L, b, ch)
    ang = ops.convert_to_tensor(np.arange(L).astype(dtype))[:, None] * ops.reshape(alpha - np.pi / 2,
                                                                                   (1, -1))
    re, im = _phase(ops.cos(ang)[None, :, :, None], ops.sin(ang)[None, :, :, None], re, im)
    out = ops.stack([re, im], axis=3)  # (l, m, b, r, ch)
    # orders m > l are zero by the table; keep them exactly zero
    return ops.transpose(out, (2, 3, 0, 1, 4))[:, :, None]


def rotate(maps: Tensor, R: ArrayLike | Tensor, method: str = "sep",
           scalar_first: bool | None = None) -> Tensor:
    """Rotate real maps ``(batch, n, n, channels)`` by R: ``g(x) = f(R^T x)`` (module docstring).

    Args:
        maps: real ``(batch, n, n, channels)`` (batch, azimuth, polar, channels) on the DH
            grid, float32 or float64 (the result has the same dtype; other floats compute
            in float32). Complex maps are refused (split them into channels first).
        R: rotation matrix ``(3, 3)`` / ``(batch, 3, 3)``, quaternion ``(4,)`` /
            ``(batch, 4)`` (w, x, y, z), or a ``scipy.spatial.transform.Rotation``.
            Refused (``ValueError``) when its values are known: a reflection (det -1), a
            matrix that is not orthogonal, a zero quaternion.
        method: transform used for the maps, 'sep' (default) or 'naive'.
        scalar_first: quaternion order, as SciPy's ``Rotation.from_quat``: True
            (w, x, y, z, the project's), False (x, y, z, w, SciPy's ``as_quat()``); None
            reads (w, x, y, z) and warns that SciPy's order differs.
    Returns the rotated band-limited map, ``(batch, n, n, channels)``. Differentiable
    (keras.ops only; TensorFlow, JAX and torch backends).
    """
    layouts.refuse_complex(maps, "rotate",
                           "split a complex map into real and imaginary channels first "
                           "(spherical_cnn.layouts.complex_to_channels)")
    shape = tuple(maps.shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] is None:
        raise ValueError(f"rotate: maps must be (batch, n, n, channels) (batch, azimuth, polar, "
                         f"channels), got shape {shape}")
    n = tables.check_n(shape[1])
    in_dtype = keras.backend.standardize_dtype(maps.dtype)
    dtype = "float64" if in_dtype == "float64" else "float32"
    t = sht.get_transform(n, method, True, dtype)
    out = t.inverse_packed(rotate_coefficients(t.forward_packed(maps), R, scalar_first))
    return ops.cast(out, in_dtype) if in_dtype != dtype else out
