"""A ModelNet10-SO3-like rotation-estimation dataset rendered from meshes.

Each mesh is shown under uniformly sampled SO(3) rotations (Liao et al. use 100
per mesh for train and 4 for test) and rendered by orthographic ray casting
(render.py). Meshes come from the built-in synthetic shapes
(``spherical_cnn.data.synthetic``, the default) or from a ModelNet-style tree
``root/<class>/{train,test}/<mesh>``. ``classes`` (a sequence of class names,
None: all) restricts the dataset to a subset; ``class_names`` then lists only
those classes, in the source's order, and ``class_ids`` index into it.

Arrays of one split (``dict``):
  images      (n, size, size, channels) float32 in [0, 1]
  quaternions (n, 4) float32 (w, x, y, z), unit, w >= 0: the rotation that was
              applied to the mesh (image of the points R p)
  class_ids   (n,) int32, index into ``class_names``
  mesh_ids    (n,) int32, index of the mesh within the split

Generated splits are cached as ``<cache_dir>/<key>.npz`` together with
``<key>.json``, a manifest of every setting that made them; ``key`` is a hash of
that manifest, so a changed setting never reads a stale cache.
"""
import os

import numpy as np

from ..render import CHANNELS, OrthoRenderer
from ..rotations import quaternion_to_matrix, random_quaternions
from .common import load_or_make

SPLITS = ("train", "test")
_FORMAT_VERSION = 1


def select_classes(available, classes, source="synthetic shapes"):
    """The classes of ``available`` named in ``classes`` (None: all), in ``available``'s
    order. Raises ValueError for an unknown or repeated name, or an empty selection."""
    available = list(available)
    if classes is None:
        return available
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    classes = list(classes)
    if not classes:
        raise ValueError("classes must name at least one class; valid classes "
                         f"({source}): {', '.join(available)}")
    unknown = [c for c in classes if c not in available]
    if unknown:
        raise ValueError(f"unknown class name(s) {', '.join(map(repr, unknown))}; valid classes "
                         f"({source}): {', '.join(available)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes has repeated names: {classes}")
    return [c for c in available if c in classes]


def _mesh_items(split, mesh_root, meshes_per_class, seed, classes=None):
    """[(class name, mesh loader)] for one split, at most ``meshes_per_class`` per class,
    restricted to ``classes`` (None: all)."""
    if mesh_root is None:
        from spherical_cnn.data import synthetic
        class_names = select_classes(synthetic.CLASS_NAMES, classes)
        items = []
        for c in class_names:
            for i in range(meshes_per_class):
                s = synthetic.mesh_seed(seed, c, split, i)
                items.append((c, lambda c=c, s=s: synthetic.make_mesh(c, s)))
        return class_names, items
    from spherical_cnn.data import meshes
    class_names, listing = meshes.find_meshes(mesh_root, split)
    class_names = select_classes(class_names, classes, source=f"mesh root {mesh_root!r}")
    listing = [(rel, c) for rel, c in listing if c in class_names]
    if not listing:
        raise ValueError(f"mesh root {mesh_root!r} has no meshes for split {split!r} "
                         "(expected <root>/<class>/<split>/<mesh>)")
    counts, items = {}, []
    for rel, c in listing:
        if meshes_per_class is not None and counts.get(c, 0) >= meshes_per_class:
            continue
        counts[c] = counts.get(c, 0) + 1
        path = os.path.join(mesh_root, rel)
        items.append((c, lambda path=path: meshes.load_mesh(path)))
    return class_names, items


def render_split(split, views_per_mesh, mesh_root=None, meshes_per_class=10, size=64,
                 channels="both", seed=0, classes=None):
    """Render one split; returns the arrays described in the module docstring plus
    ``class_names`` (list of str; only the selected ``classes`` if given)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if views_per_mesh < 1:
        raise ValueError(f"views_per_mesh must be >= 1, got {views_per_mesh}")
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {sorted(CHANNELS)}, got {channels!r}")
    class_names, items = _mesh_items(split, mesh_root, meshes_per_class, seed, classes)
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 7919])
    n = len(items) * views_per_mesh
    images = np.zeros((n, size, size, len(CHANNELS[channels])), np.float32)
    quats = np.zeros((n, 4), np.float32)
    class_ids = np.zeros((n,), np.int32)
    mesh_ids = np.zeros((n,), np.int32)
    for m, (c, load) in enumerate(items):
        renderer = OrthoRenderer(load(), size=size, channels=channels)
        q = random_quaternions(views_per_mesh, rng)
        sl = slice(m * views_per_mesh, (m + 1) * views_per_mesh)
        images[sl] = renderer.render_many(quaternion_to_matrix(q))
        quats[sl] = q
        class_ids[sl] = class_names.index(c)
        mesh_ids[sl] = m
    return dict(images=images, quaternions=quats, class_ids=class_ids, mesh_ids=mesh_ids,
                class_names=class_names)


def dataset_manifest(split, views_per_mesh, mesh_root=None, meshes_per_class=10, size=64,
                     channels="both", seed=0, classes=None):
    """The settings that determine a split (what the cache key hashes). ``classes`` is
    stored sorted and only when given (so caches of all classes keep their keys); it is
    not checked here (rendering checks it)."""
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    manifest = dict(format_version=_FORMAT_VERSION, split=split,
                    views_per_mesh=int(views_per_mesh),
                    mesh_source="synthetic" if mesh_root is None else os.path.abspath(mesh_root),
                    meshes_per_class=meshes_per_class, image_size=int(size), channels=channels,
                    seed=int(seed), renderer="orthographic ray casting, camera on +z (render.py)",
                    rotations="Haar-uniform SO(3), quaternion (w,x,y,z) with w >= 0")
    if classes is not None:
        manifest["classes"] = sorted(classes)
    return manifest


def load_or_render(split, views_per_mesh, cache_dir="data/regression", mesh_root=None,
                   meshes_per_class=10, size=64, channels="both", seed=0, verbose=False,
                   classes=None):
    """``render_split`` through the npz cache of ``common.load_or_make`` in ``cache_dir``
    (None: no cache)."""
    manifest = dataset_manifest(split, views_per_mesh, mesh_root, meshes_per_class, size,
                                channels, seed, classes)
    return load_or_make(f"so3_{split}", manifest,
                        lambda: render_split(split, views_per_mesh, mesh_root, meshes_per_class,
                                             size, channels, seed, classes),
                        cache_dir, verbose)
