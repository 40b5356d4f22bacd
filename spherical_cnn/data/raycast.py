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


def cast_rotated(mesh, n, rotations, r0=DEFAULT_R0, channels=False):
    """Maps of ``R @ mesh`` for each rotation, without rotating the mesh.

    Args:
      rotations: matrices ``(m, 3, 3)`` or quaternions ``(m, 4)`` (w, x, y, z).
    Returns complex64 ``(m, n, n)`` or ``(m, n, n, 1)`` (azimuth, polar[, channel]).
    """
    rot = np.asarray(rotations, dtype=np.float64)
    if rot.ndim == 2 and rot.shape[-1] == 4:
        rot = _rot.quaternion_to_matrix(rot)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise ValueError(f'rotations must be (m, 3, 3) or (m, 4), got {np.shape(rotations)}')
    d = grid_directions(n)
    # rotated ray directions R^T d, for all rotations: (m, n, n, 3)
    dirs = np.einsum('mji,abj->mabi', rot, d)
    out = cast_directions(mesh, dirs, r0=r0)
    return out[..., None] if channels else out
