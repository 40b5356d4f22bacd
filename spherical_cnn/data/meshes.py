"""Loading and normalising triangle meshes (.off, .obj, .stl, .ply) with trimesh.

``load_mesh`` returns a mesh centred at the origin and scaled into the unit
ball (the vertex farthest from the centre lies on the unit sphere). The centre
is the centre of the axis-aligned bounding box, which, unlike the vertex mean,
does not depend on how finely each part is tessellated.

ModelNet's OFF files sometimes fuse the header with the counts on the first
line (``OFF123 456 0``); those are accepted.
"""
import io
import os
import re

import numpy as np
import trimesh

MESH_EXTENSIONS = ('.off', '.obj', '.stl', '.ply')

_FUSED_OFF_HEADER = re.compile(rb'^(\s*OFF)(?=[\s]*[-+0-9])')


class MeshError(ValueError):
    """A mesh file that cannot be used (unreadable, empty, degenerate)."""


def _read_off(path):
    with open(path, 'rb') as f:
        data = f.read()
    # 'OFF123 456 0' -> 'OFF\n123 456 0'
    first_line_end = data.find(b'\n')
    first = data if first_line_end < 0 else data[:first_line_end]
    if _FUSED_OFF_HEADER.match(first) and first.strip() != b'OFF':
        data = _FUSED_OFF_HEADER.sub(rb'\1\n', data, count=1)
    return trimesh.load(io.BytesIO(data), file_type='off', force='mesh', process=False)


def read_mesh(path):
    """Read a mesh file as a ``trimesh.Trimesh`` (not normalised).

    Raises:
      MeshError naming the file if it cannot be read or holds no triangles.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in MESH_EXTENSIONS:
        raise MeshError(f'{path}: unsupported mesh extension {ext!r}; expected one of {MESH_EXTENSIONS}')
    try:
        if ext == '.off':
            mesh = _read_off(path)
        else:
            mesh = trimesh.load(path, force='mesh', process=False)
    except Exception as e:  # trimesh raises many kinds of errors on bad files
        raise MeshError(f'{path}: cannot read mesh ({type(e).__name__}: {e})') from e
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshError(f'{path}: no triangle mesh found (got {type(mesh).__name__})')
    return mesh


def normalize_mesh(mesh, name='mesh'):
    """Return a cleaned copy of ``mesh`` centred at the origin, inside the unit ball.

    Drops degenerate and unreferenced faces/vertices. Raises MeshError (naming
    ``name``) for meshes without usable triangles or with non-finite vertices.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if len(v) == 0 or len(f) == 0:
        raise MeshError(f'{name}: empty mesh ({len(v)} vertices, {len(f)} faces)')
    if not np.all(np.isfinite(v)):
        raise MeshError(f'{name}: non-finite vertex coordinates')
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError(f'{name}: face indices out of range for {len(v)} vertices')
    try:
        mesh = trimesh.Trimesh(vertices=v, faces=f, process=False)
        mesh.update_faces(mesh.nondegenerate_faces())
        mesh.remove_unreferenced_vertices()
    except Exception as e:  # trimesh raises many kinds of errors on odd shapes
        raise MeshError(f'{name}: cannot use the mesh ({type(e).__name__}: {e})') from e
    if len(mesh.faces) == 0:
        raise MeshError(f'{name}: all faces are degenerate')
    lo, hi = mesh.bounds
    v = mesh.vertices - (lo + hi) / 2
    radius = np.linalg.norm(v, axis=1).max()
    if not (radius > 0 and np.isfinite(radius)):
        raise MeshError(f'{name}: mesh has zero or non-finite extent')
    return trimesh.Trimesh(vertices=v / radius, faces=mesh.faces, process=False)


def load_mesh(path):
    """Read ``path`` and normalise it into the unit ball (see module docstring)."""
    return normalize_mesh(read_mesh(path), name=path)


def find_meshes(root, split):
    """ModelNet-style listing: ``root/<class>/<split>/<mesh>``.

    Returns (class_names sorted, list of (relative path, class name)) sorted by path.
    Classes are the subdirectories of ``root`` that contain ``train`` or ``test`` folders.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f'mesh root {root!r} does not exist or is not a directory')
    classes = sorted(c for c in os.listdir(root)
                     if os.path.isdir(os.path.join(root, c))
                     and any(os.path.isdir(os.path.join(root, c, s)) for s in ('train', 'test')))
    items = []
    for c in classes:
        d = os.path.join(root, c, split)
        if not os.path.isdir(d):
            continue
        for fn in sorted(os.listdir(d)):
            if os.path.splitext(fn)[1].lower() in MESH_EXTENSIONS:
                items.append((os.path.join(c, split, fn), c))
    return classes, items
