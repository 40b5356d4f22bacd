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
via ``channels=True``; ``(..., n, n, 2)`` from :func:`with_convex_hull` (channel 0
the mesh, channel 1 its convex hull, cast with the same rays). Ray intersections use Embree (trimesh + embreex); the
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

Supersampling (``supersample=s``, an integer >= 1, in ``mesh_to_sphere``,
``cast_rotated`` and ``cast_augmented``): with s = 1 every cell gets the one ray
above (bit for bit the same values). With s > 1 the cell of grid point (k, j)
is the polar x azimuth box of one grid step around it, and it gets s x s
sub-rays at the offsets ``o_u = (u + 0.5) / s - 0.5`` (u = 0..s-1) grid steps:
polar ``pi * (j + o_u) / n``, azimuth ``2 * pi * (k + o_v) / n``. The sub-rays of
a cell are flattened as ``u * s + v`` (polar offset major); they are rotated,
scaled and shifted exactly like the cell's ray. Each sub-ray carries the weight
``w = |sin(polar)|`` (its share of the solid angle of the cell), and the cell
value is ``D * exp(1j * A)`` with
  D = sum(w * distance * hit) / sum(w)       (a miss counts as distance 0),
  A = sum(w * angle * hit) / sum(w * hit)    (mean angle of the hits);
a cell whose sub-rays all miss (or whose only hits have weight 0) is MISS_VALUE
exactly. So |value| is the box-filtered (cell-averaged) distance map: at a
silhouette it fades continuously towards the miss value 0 with the covered
fraction of the cell, instead of jumping, while the phase stays the surface
angle of the covered part (averaging the complex values instead would also
shrink |value| wherever the angle varies inside a cell). The polar row j = 0
straddles the north pole: its sub-rays with negative polar offsets are the
directions at polar ``|p|`` and azimuth + pi, so that cell is the two opposite
wedges of the polar cap around azimuth ``2*pi*k/n`` and stays centred on the
pole (for odd s the sub-rays exactly at the pole have weight 0). All sub-rays
of all instances are cast in one call against one acceleration structure; the
cost grows about like s^2.
"""
import numpy as np
import trimesh

from . import rotations as _rot
from ..errors import first_line

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


def check_supersample(supersample):
    """``supersample`` as an int; ValueError unless it is an integer >= 1."""
    if isinstance(supersample, (bool, np.bool_)) or not isinstance(supersample, (int, np.integer)) \
            or supersample < 1:
        raise ValueError(f'supersample must be an integer >= 1, got {supersample!r}')
    return int(supersample)


def subcell_offsets(supersample):
    """Sub-ray offsets inside a cell, in grid steps: ``(u + 0.5) / s - 0.5``, u = 0..s-1."""
    s = check_supersample(supersample)
    return (np.arange(s) + 0.5) / s - 0.5


def subray_grid(n, supersample=1):
    """Sub-ray directions and weights of the n x n grid (see the module docstring).

    Returns ``(directions, weights)``: float64 ``(n, n, S, 3)`` unit vectors and
    ``(n, n, S)`` solid-angle weights ``|sin(polar)|``, S = s * s, in (azimuth,
    polar, sub-ray) layout with sub-ray index ``u * s + v`` (u: polar offset, v:
    azimuth offset). For s = 1 the directions are ``grid_directions(n)`` and the
    weights are ones.
    """
    s = check_supersample(supersample)
    if s == 1:
        return grid_directions(n)[:, :, None, :], np.ones((n, n, 1))
    polar, azimuth = grid_angles(n)
    off = subcell_offsets(s)
    p = polar[:, :, None, None] + (np.pi / n) * off[None, None, :, None]        # (n, n, s, 1)
    a = azimuth[:, :, None, None] + (2 * np.pi / n) * off[None, None, None, :]  # (n, n, 1, s)
    p, a = np.broadcast_arrays(p, a)
    d = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], axis=-1)
    return d.reshape(n, n, s * s, 3), np.abs(np.sin(p)).reshape(n, n, s * s)


def _cell_values(t, angle, hit, weights):
    """Complex64 cell values from their sub-rays' results (see the module docstring).

    Args:
      t, angle: float64 ``(..., S)`` distance and folded angle of each sub-ray (ignored where it missed).
      hit: bool ``(..., S)``.
      weights: ``(..., S)`` or broadcastable to it; unused for S = 1.
    Returns complex64 ``(...)``.
    """
    out = np.full(hit.shape[:-1], MISS_VALUE, dtype=np.complex64)
    if hit.shape[-1] == 1:
        # one ray per cell: the same operations as casting without supersampling
        h = hit[..., 0]
        out[h] = (t[..., 0][h] * np.exp(1j * angle[..., 0][h])).astype(np.complex64)
        return out
    w = np.broadcast_to(weights, hit.shape)
    w_hit = np.where(hit, w, 0.0)
    w_hit_sum = w_hit.sum(-1)
    cells = w_hit_sum > 0
    dist = (w_hit * np.where(hit, t, 0.0)).sum(-1)[cells] / w.sum(-1)[cells]
    mean_angle = (w_hit * np.where(hit, angle, 0.0)).sum(-1)[cells] / w_hit_sum[cells]
    out[cells] = (dist * np.exp(1j * mean_angle)).astype(np.complex64)
    return out


def _cast_rays(mesh, directions, r0):
    """First hits of rays from ``r0 * d`` along ``-d`` for unit directions ``(N, 3)``.

    Returns float64 ``t`` (N,) distance, float64 ``angle`` (N,) folded to [0, pi/2]
    (both 0 where the ray missed) and bool ``hit`` (N,).
    """
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    origins = r0 * d
    tri = _intersector(mesh).intersects_first(origins, -d)
    t_all, angle_all = np.zeros(len(d)), np.zeros(len(d))
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
        t_all[hit] = t
        angle_all[hit] = np.arccos(np.clip(np.abs(cos), 0.0, 1.0))
    return t_all, angle_all, hit


def _check_mesh(mesh, caller):
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f'{caller} needs a non-empty trimesh.Trimesh')


def cast_directions(mesh, directions, r0=DEFAULT_R0):
    """Cast one ray per unit direction ``(..., 3)`` from ``r0 * d`` towards the centre.

    Returns complex64 ``(...)``: distance * exp(1j * angle), MISS_VALUE for misses.
    """
    _check_mesh(mesh, 'cast_directions')
    shape = np.shape(directions)[:-1]
    t, angle, hit = _cast_rays(mesh, directions, r0)
    return _cell_values(t[:, None], angle[:, None], hit[:, None], None).reshape(shape)


def mesh_to_sphere(mesh, n, r0=DEFAULT_R0, channels=False, supersample=1):
    """Spherical map of ``mesh`` on the n x n DH grid.

    ``supersample`` = s: s x s sub-rays per cell, averaged (module docstring); 1 = one ray.
    Returns complex64 ``(n, n)`` (azimuth, polar), or ``(n, n, 1)`` if ``channels``.
    """
    _check_mesh(mesh, 'mesh_to_sphere')
    d, w = subray_grid(n, supersample)
    t, angle, hit = _cast_rays(mesh, d, r0)
    shape = d.shape[:-1]
    out = _cell_values(t.reshape(shape), angle.reshape(shape), hit.reshape(shape), w)
    return out[..., None] if channels else out


def with_convex_hull(render, mesh, convex_hull=True):
    """``render(mesh)``, maps ``(..., n, n, 1)``; with ``convex_hull`` the map of the mesh's
    convex hull, cast with the same rays, is appended as channel 1: ``(..., n, n, 2)``.

    The hull of a rotated, scaled and shifted mesh is the transformed hull (affine maps
    keep convexity), so one ``render`` serves both. On the hull every ray hits no later
    than on the mesh (the hull contains it), and a ray that misses the hull misses the mesh.
    Raises ValueError if Qhull cannot build the hull (fewer than 4 vertices, say).
    """
    maps = render(mesh)
    if not convex_hull:
        return maps
    from scipy.spatial import QhullError
    try:
        hull = mesh.convex_hull
    except QhullError as err:  # a RuntimeError: the callers report ValueErrors by mesh
        raise ValueError(f'its convex hull cannot be computed ({first_line(err)})') from None
    return np.concatenate([maps, render(hull)], axis=-1)


def _as_matrices(rotations):
    """Rotation matrices ``(m, 3, 3)`` float64 from matrices or quaternions ``(m, 4)`` (w, x, y, z)."""
    rot = np.asarray(rotations, dtype=np.float64)
    if rot.ndim == 2 and rot.shape[-1] == 4:
        rot = _rot.quaternion_to_matrix(rot)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise ValueError(f'rotations must be (m, 3, 3) or (m, 4), got {np.shape(rotations)}')
    return rot


def cast_rotated(mesh, n, rotations, r0=DEFAULT_R0, channels=False, supersample=1):
    """Maps of ``R @ mesh`` for each rotation, without rotating the mesh.

    Args:
      rotations: matrices ``(m, 3, 3)`` or quaternions ``(m, 4)`` (w, x, y, z).
      supersample: s x s sub-rays per cell, averaged (module docstring); 1 = one ray.
    Returns complex64 ``(m, n, n)`` or ``(m, n, n, 1)`` (azimuth, polar[, channel]).
    """
    _check_mesh(mesh, 'cast_rotated')
    rot = _as_matrices(rotations)
    d, w = subray_grid(n, supersample)
    S = d.shape[2]
    # rotated ray directions R^T d, for all rotations: (m, n, n * S, 3) (for S = 1 exactly
    # the array shapes of one ray per cell, hence the same rounding)
    dirs = np.einsum('mji,abj->mabi', rot, d.reshape(n, n * S, 3))
    t, angle, hit = _cast_rays(mesh, dirs, r0)
    shape = (len(rot), n, n, S)
    out = _cell_values(t.reshape(shape), angle.reshape(shape), hit.reshape(shape), w)
    return out[..., None] if channels else out


def _dot3(a, b):
    """Sum over the last axis (length 3) of ``a * b``, written out so that every
    element is computed the same way whatever the array sizes (bitwise reproducible)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def cast_augmented(mesh, n, rotations, scales=None, centers=None, r0=DEFAULT_R0, channels=False,
                   supersample=1):
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
      supersample: s x s sub-rays per cell (grid directions d of the sub-rays, each
        from ``centers[k] + r0 * d``), averaged (module docstring); 1 = one ray.
    Returns complex64 ``(m, n, n)`` or ``(m, n, n, 1)`` (azimuth, polar[, channel]).
    Raises ValueError if a transformed mesh reaches the sphere the rays start
    from (``|R diag(s) v - c| >= r0`` for some vertex).
    """
    _check_mesh(mesh, 'cast_augmented')
    rot = _as_matrices(rotations)
    grid, w = subray_grid(n, supersample)
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

    d = grid.reshape(-1, 3)                                                 # (N, 3), N = n * n * S
    N = len(d)
    rtd = np.stack([_dot3(rot[:, None, :, i], d[None]) for i in range(3)], -1)  # R^T d: (m, N, 3)
    rtc = np.stack([_dot3(rot[:, :, i], c) for i in range(3)], -1)            # R^T c: (m, 3)
    # mesh-frame rays: origin diag(1/s) R^T (c + r0 d), direction u = diag(1/s) R^T (-d) (not unit:
    # the ray parameter t is then the world distance, since |d| = 1)
    inv = 1.0 / s[:, None, :]
    origins = (rtc[:, None, :] + r0 * rtd) * inv
    u = -rtd * inv
    flat_o, flat_u = origins.reshape(-1, 3), u.reshape(-1, 3)
    tri = _intersector(mesh).intersects_first(flat_o, flat_u)
    t_all, angle_all = np.zeros(len(flat_o)), np.zeros(len(flat_o))
    hit = tri >= 0
    if hit.any():
        inst = np.nonzero(hit)[0] // N
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
            cd = _dot3(c[inst[bad]], d[np.nonzero(hit)[0][bad] % N])
            t[bad] = r0 + cd - _dot3(cen * s[inst[bad]], rtd_hit)
        t_all[hit] = t
        angle_all[hit] = np.arccos(np.clip(np.abs(cos), 0.0, 1.0))
    shape = (m, n, n, grid.shape[2])
    out = _cell_values(t_all.reshape(shape), angle_all.reshape(shape), hit.reshape(shape), w)
    return out[..., None] if channels else out
