"""Mesh -> spherical map by ray casting on the Driscoll-Healy grid.

For every grid direction ``d`` (polar ``pi*j/n``, azimuth ``2*pi*k/n``,
``d = (sin p cos a, sin p sin a, cos p)``) one ray starts OUTSIDE the mesh at
``R0 * d`` and travels towards the centre (direction ``-d``). The mesh is
expected inside the unit ball (see ``meshes.normalize_mesh``) and
``R0 = DEFAULT_R0 = 1.2`` by default, so every hit is at distance >= R0 - 1 > 0
and the phase of the stored complex value is never erased by a zero modulus.

Each map value is ``distance * exp(1j * angle)`` (complex64):
  distance: length along the ray from its origin to the first hit;
  angle:    angle between the ray and the hit triangle's normal, folded to
            [0, pi/2] (0 = head-on, pi/2 = grazing); independent of the
            normal's orientation.
Rays are not stopped at the centre: a ray that passes the centre without a
hit goes on and may hit the far side of the mesh (distance > R0), like a line
of sight through the ball. Rays that miss the mesh get ``MISS_VALUE = 0 + 0j``.

Layout: ``(n, n)`` = (azimuth, polar), value[k, j]; ``(n, n, 1)`` with channels
via ``channels=True``. Ray intersections use Embree (trimesh + embreex); the
hit distance is then recomputed in float64 from the hit triangle's plane.

Rotations: the map of ``R @ mesh`` at direction ``d`` equals the map of
``mesh`` at ``R^T d`` (the angle is rotation invariant), so ``cast_rotated``
casts the rotated rays against one acceleration structure instead of
rebuilding it for every rotated copy of the mesh.

Augmented instances (``cast_augmented``): the mesh point ``v`` is placed at
``p = R diag(s) v`` (scale in the mesh frame, then rotate) and the ray of grid
direction ``d`` starts at ``c + R0 d`` and travels along ``-d`` (aimed at the
sphere centre ``c``); the distance is measured from the ray's start. The rays
are mapped into the mesh frame (``diag(1/s) R^T``) and cast against the one
acceleration structure of the untransformed mesh; the distance and the angle
are then computed in float64 for the transformed triangle.
"""
import numpy as np
import trimesh

from . import rotations as _rot

DEFAULT_R0 = 1.2
MISS_VALUE = 0j


def grid_angles(n):
    """Polar and azimuth angles of the n x n DH grid, each ``(n, n)`` in (azimuth, polar) layout."""
    if n < 2 or n % 2:
        raise ValueError(f'grid size must be an even integer >= 2, got {n}')
    az = 2 * np.pi * np.arange(n) / n
    pol = np.pi * np.arange(n) / n
    azimuth, polar = np.meshgrid(az, pol, indexing='ij')
    return polar, azimuth


def grid_directions(n):
    """Unit vectors of the grid, ``(n, n, 3)`` in (azimuth, polar) layout."""
    polar, azimuth = grid_angles(n)
    return np.stack([np.sin(polar) * np.cos(azimuth),
                     np.sin(polar) * np.sin(azimuth),
                     np.cos(polar)], axis=-1)


def _intersector(mesh):
    ray = mesh.ray
    if 'embree' not in type(ray).__module__:
        # trimesh silently falls back to a slow pure-Python intersector
        import warnings
        warnings.warn('embreex not available: ray casting uses trimesh\'s slow fallback')
    return ray


def cast_directions(mesh, directions, r0=DEFAULT_R0):
    """Cast one ray per unit direction ``(..., 3)`` from ``r0 * d`` towards the centre.

    Returns complex64 ``(...)``: distance * exp(1j * angle), MISS_VALUE for misses.
    """
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError('cast_directions needs a non-empty trimesh.Trimesh')
    directions = np.asarray(directions, dtype=np.float64)
    shape = directions.shape[:-1]
    d = directions.reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    origins = r0 * d
    tri = _intersector(mesh).intersects_first(origins, -d)
    out = np.full(len(d), MISS_VALUE, dtype=np.complex64)
    hit = tri >= 0
    if hit.any():
        normals = mesh.face_normals[tri[hit]]
        p0 = mesh.triangles[tri[hit], 0]
        cos = np.einsum('ij,ij->i', -d[hit], normals)
        # distance t along the ray (origin o, direction -d) to the hit triangle's plane:
        # (o - t d - p0) . N = 0  =>  t = (p0 - o) . N / ((-d) . N); float64, exact for planar
        # faces and independent of the normal's orientation
        with np.errstate(divide='ignore', invalid='ignore'):
            t = np.einsum('ij,ij->i', p0 - origins[hit], normals) / cos
        # a (nearly) grazing hit makes the plane distance ill-conditioned: fall back to r0
        # minus the projection of the triangle's centroid, which is exact to within its size
        bad = ~np.isfinite(t) | (t < 0) | (t > 2 * r0)
        if bad.any():
            cen = mesh.triangles_center[tri[hit][bad]]
            t[bad] = r0 - np.einsum('ij,ij->i', cen, d[hit][bad])
        angle = np.arccos(np.clip(np.abs(cos), 0.0, 1.0))
        out[hit] = (t * np.exp(1j * angle)).astype(np.complex64)
    return out.reshape(shape)


def mesh_to_sphere(mesh, n, r0=DEFAULT_R0, channels=False):
    """Spherical map of ``mesh`` on the n x n DH grid.

    Returns complex64 ``(n, n)`` (azimuth, polar), or ``(n, n, 1)`` if ``channels``.
    """
    out = cast_directions(mesh, grid_directions(n), r0=r0)
    return out[..., None] if channels else out


def _as_matrices(rotations):
    """Rotation matrices ``(m, 3, 3)`` float64 from matrices or quaternions ``(m, 4)`` (w, x, y, z)."""
    rot = np.asarray(rotations, dtype=np.float64)
    if rot.ndim == 2 and rot.shape[-1] == 4:
        rot = _rot.quaternion_to_matrix(rot)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise ValueError(f'rotations must be (m, 3, 3) or (m, 4), got {np.shape(rotations)}')
    return rot


def cast_rotated(mesh, n, rotations, r0=DEFAULT_R0, channels=False):
    """Maps of ``R @ mesh`` for each rotation, without rotating the mesh.

    Args:
      rotations: matrices ``(m, 3, 3)`` or quaternions ``(m, 4)`` (w, x, y, z).
    Returns complex64 ``(m, n, n)`` or ``(m, n, n, 1)`` (azimuth, polar[, channel]).
    """
    rot = _as_matrices(rotations)
    d = grid_directions(n)
    # rotated ray directions R^T d, for all rotations: (m, n, n, 3)
    dirs = np.einsum('mji,abj->mabi', rot, d)
    out = cast_directions(mesh, dirs, r0=r0)
    return out[..., None] if channels else out


def _dot3(a, b):
    """Sum over the last axis (length 3) of ``a * b``, written out so that every
    element is computed the same way whatever the array sizes (bitwise reproducible)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def cast_augmented(mesh, n, rotations, scales=None, centers=None, r0=DEFAULT_R0, channels=False):
    """Maps of scaled, rotated copies of ``mesh`` seen from shifted sphere centres.

    Instance k places mesh point ``v`` at ``R_k diag(scales[k]) v`` and casts, for
    every grid direction ``d``, a ray from ``centers[k] + r0 * d`` along ``-d``.
    Each value is ``distance * exp(1j * angle)`` as in :func:`cast_directions`
    (distance from the ray's start; angle between the ray and the transformed
    triangle's normal, folded to [0, pi/2]); misses are ``MISS_VALUE``.
    With unit scales and zero centres this equals :func:`cast_rotated`.

    Args:
      rotations: matrices ``(m, 3, 3)`` or quaternions ``(m, 4)`` (w, x, y, z).
      scales: per-axis factors ``(m, 3)`` (> 0) applied in the mesh frame; None = ones.
      centers: sphere centres ``(m, 3)`` in the rotated frame; None = zeros.
    Returns complex64 ``(m, n, n)`` or ``(m, n, n, 1)`` (azimuth, polar[, channel]).
    Raises ValueError if a transformed mesh reaches the sphere the rays start
    from (``|R diag(s) v - c| >= r0`` for some vertex).
    """
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError('cast_augmented needs a non-empty trimesh.Trimesh')
    rot = _as_matrices(rotations)
    m = len(rot)
    s = np.ones((m, 3)) if scales is None else np.asarray(scales, dtype=np.float64)
    c = np.zeros((m, 3)) if centers is None else np.asarray(centers, dtype=np.float64)
    if s.shape != (m, 3) or not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(f'scales must be positive finite factors of shape ({m}, 3), got shape {s.shape}')
    if c.shape != (m, 3) or not np.all(np.isfinite(c)):
        raise ValueError(f'centers must be finite, of shape ({m}, 3), got shape {c.shape}')
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    # transformed vertices R diag(s) v - c: (m, V, 3); all must lie inside the start sphere
    sv = verts[None, :, :] * s[:, None, :]
    placed = np.stack([_dot3(rot[:, None, i, :], sv) for i in range(3)], axis=-1) - c[:, None, :]
    reach = np.sqrt(_dot3(placed, placed).max(axis=1))
    if np.any(reach >= r0):
        k = int(np.argmax(reach))
        raise ValueError(f'instance {k}: the transformed mesh reaches {reach[k]:.4f} from the sphere centre, '
                         f'not inside the ray start radius r0 = {r0}')

    d = grid_directions(n).reshape(-1, 3)                                   # (N, 3)
    rtd = np.stack([_dot3(rot[:, None, :, i], d[None]) for i in range(3)], -1)  # R^T d: (m, N, 3)
    rtc = np.stack([_dot3(rot[:, :, i], c) for i in range(3)], -1)            # R^T c: (m, 3)
    # mesh-frame rays: origin diag(1/s) R^T (c + r0 d), direction u = diag(1/s) R^T (-d) (not unit:
    # the ray parameter t is then the world distance, since |d| = 1)
    inv = 1.0 / s[:, None, :]
    origins = (rtc[:, None, :] + r0 * rtd) * inv
    u = -rtd * inv
    flat_o, flat_u = origins.reshape(-1, 3), u.reshape(-1, 3)
    tri = _intersector(mesh).intersects_first(flat_o, flat_u)
    out = np.full(len(flat_o), MISS_VALUE, dtype=np.complex64)
    hit = tri >= 0
    if hit.any():
        inst = np.nonzero(hit)[0] // (n * n)
        normals = mesh.face_normals[tri[hit]]
        p0 = mesh.triangles[tri[hit], 0]
        uh, oh = flat_u[hit], flat_o[hit]
        un = _dot3(uh, normals)
        with np.errstate(divide='ignore', invalid='ignore'):
            # (o + t u - p0) . N = 0 in the mesh frame
            t = _dot3(p0 - oh, normals) / un
        # world normal ~ R diag(1/s) N, and (-d) . R diag(1/s) N = u . N
        wn = normals / s[inst]
        cos = un / np.sqrt(_dot3(wn, wn))
        bad = ~np.isfinite(t) | (t < 0) | (t > 2 * r0)
        if bad.any():
            # projection of the transformed centroid on the ray: t = (c + r0 d - R diag(s) cen) . d
            cen = mesh.triangles_center[tri[hit][bad]]
            rtd_hit = rtd.reshape(-1, 3)[hit][bad]
            cd = _dot3(c[inst[bad]], d[np.nonzero(hit)[0][bad] % (n * n)])
            t[bad] = r0 + cd - _dot3(cen * s[inst[bad]], rtd_hit)
        angle = np.arccos(np.clip(np.abs(cos), 0.0, 1.0))
        out[hit] = (t * np.exp(1j * angle)).astype(np.complex64)
    out = out.reshape(m, n, n)
    return out[..., None] if channels else out
