"""S^1 viewpoint estimation: the camera azimuth of a shape from its render.

Each view of an upright built-in synthetic shape (+z up, ``spherical_cnn.data.synthetic``)
puts the camera at azimuth a ~ U[0, 2 pi) and elevation e ~ U[e_min, e_max]: the camera
sits in the object frame at direction (cos e cos a, cos e sin a, sin e), looks at the
origin, and keeps the object's up axis pointing up in the image. So a is the angle of
the camera around the object's up axis, from the object's +x axis, counter-clockwise
seen from above (a = pi/2: camera on +y, in front of a chair, whose back is at -y).
The network predicts a as the biternion (cos a, sin a), a point on S^1.

The renderer (render.py) has its camera on +z looking along -z (x right, y up) and
shows the object with its points moved to R p; the view above is

    R = R_x(e - pi/2) @ R_z(-(a + pi/2)),

which maps the camera direction to +z and the object's up axis to (0, cos e, sin e)
(:func:`view_rotation`). Train and test shapes are different meshes (the 'train' and
'test' splits of ``synthetic.mesh_seed``).

Arrays of one split (dict, n = meshes x views):
  images     (n, size, size, 2) float32 in [0, 1], channels (shade, depth)
  targets    (n, 2) float32 (cos a, sin a)
  azimuth    (n,) float32, a in radians, [0, 2 pi)
  elevation  (n,) float32, e in radians
  class_ids  (n,) int32, index into class_names
  mesh_ids   (n,) int32, index of the mesh within the split
  class_names  list of str

Heads (heads.py): S_exp with the original S^1 code's 'biternion' sign layout (4
quadrant classes, signs.py) and, by default, its loss 4 * (-sum y^2 log |y_pred|^2) +
CE(sign) (``--abs_loss cosine``: 10 * (1 - cos) + CE instead); S_flat with cosine
proximity; Direct with smooth-L1. Metrics: MedErr (degrees, the median azimuth
error) and Acc@pi/6, Acc@pi/12, Acc@pi/24 (fractions of test views).
"""
import math

import numpy as np

from . import common

SUMMARY = "S^1: camera azimuth of a shape from its render (biternion targets)"
PRIMARY = "MedErr"
METRICS = ("MedErr", "Acc@pi/6", "Acc@pi/12", "Acc@pi/24")
ABS_LOSSES = {"log_likelihood": 4.0, "cosine": 10.0}  # abs loss -> its weight
_FORMAT_VERSION = 1

SIZE_FLAGS = common.IMAGE_TASK_SIZE_FLAGS
DEFAULTS = dict(image_size=48, train_meshes_per_class=40, test_meshes_per_class=10,
                train_views=40, test_views=20, width=16, epochs=12, batch_size=64,
                learning_rate=2e-3)
QUICK = dict(image_size=16, train_meshes_per_class=2, test_meshes_per_class=1,
             train_views=8, test_views=4, width=4, epochs=2, batch_size=16,
             learning_rate=2e-3)


# --- the camera --------------------------------------------------------------------

def rot_x(t):
    """Rotation matrix (3, 3) about +x by angle t (counter-clockwise seen from +x)."""
    c, s = math.cos(t), math.sin(t)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_z(t):
    """Rotation matrix (3, 3) about +z by angle t (counter-clockwise seen from +z)."""
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_direction(azimuth, elevation):
    """Unit vector (3,) from the object's origin to the camera, in the object frame."""
    ce = math.cos(elevation)
    return np.array([ce * math.cos(azimuth), ce * math.sin(azimuth), math.sin(elevation)])


def view_rotation(azimuth, elevation):
    """The rotation (3, 3) that render.OrthoRenderer applies to the object (p -> R p) to
    show it from azimuth a and elevation e (radians; module docstring)."""
    return rot_x(elevation - math.pi / 2) @ rot_z(-(azimuth + math.pi / 2))


def biternions(azimuth):
    """(cos a, sin a) ``(n, 2)`` float32 of angles ``(n,)`` in radians."""
    a = np.asarray(azimuth, np.float64)
    return np.stack([np.cos(a), np.sin(a)], axis=-1).astype(np.float32)


# --- data --------------------------------------------------------------------------

def render_split(split, meshes_per_class, views_per_mesh, size=48, elevation_deg=(10.0, 40.0),
                 classes=common.POSE_CLASSES, seed=0):
    """Render one split of the synthetic shapes of ``classes``; returns the arrays of the
    module docstring. Views are drawn from a generator seeded by (seed, split)."""
    from ..render import OrthoRenderer
    from .rotation_data import SPLITS, _mesh_items

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    class_names, items = _mesh_items(split, None, meshes_per_class, seed, list(classes))
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 1009])
    n = len(items) * views_per_mesh
    e_lo, e_hi = np.radians(elevation_deg[0]), np.radians(elevation_deg[1])
    azimuth = rng.uniform(0.0, 2 * np.pi, n)
    elevation = rng.uniform(e_lo, e_hi, n)
    images = np.zeros((n, size, size, 2), np.float32)
    class_ids = np.zeros((n,), np.int32)
    mesh_ids = np.zeros((n,), np.int32)
    for m, (c, load) in enumerate(items):
        renderer = OrthoRenderer(load(), size=size, channels="both")
        sl = slice(m * views_per_mesh, (m + 1) * views_per_mesh)
        images[sl] = renderer.render_many(
            [view_rotation(a, e) for a, e in zip(azimuth[sl], elevation[sl])])
        class_ids[sl] = class_names.index(c)
        mesh_ids[sl] = m
    return dict(images=images, targets=biternions(azimuth), azimuth=azimuth.astype(np.float32),
                elevation=elevation.astype(np.float32), class_ids=class_ids, mesh_ids=mesh_ids,
                class_names=class_names)


def split_manifest(split, meshes_per_class, views_per_mesh, size, elevation_deg, classes, seed):
    """The settings that determine a split (what the cache key hashes)."""
    return dict(format_version=_FORMAT_VERSION, task="viewpoint", split=split,
                mesh_source="synthetic", classes=sorted(classes),
                meshes_per_class=int(meshes_per_class), views_per_mesh=int(views_per_mesh),
                image_size=int(size), channels="both",
                elevation_deg=[float(elevation_deg[0]), float(elevation_deg[1])],
                seed=int(seed),
                camera="azimuth ~ U[0, 2pi) ccw from +x seen from +z, elevation ~ U[e_min, "
                       "e_max]; R = R_x(e - pi/2) R_z(-(a + pi/2))")


def load_split(split, meshes_per_class, views_per_mesh, size=48, elevation_deg=(10.0, 40.0),
               classes=common.POSE_CLASSES, seed=0, cache_dir=None, verbose=False):
    """:func:`render_split` through the npz cache of ``common.load_or_make`` (``cache_dir``
    None: no cache)."""
    manifest = split_manifest(split, meshes_per_class, views_per_mesh, size, elevation_deg,
                              classes, seed)
    return common.load_or_make(
        f"viewpoint_{split}", manifest,
        lambda: render_split(split, meshes_per_class, views_per_mesh, size, elevation_deg,
                             classes, seed),
        cache_dir, verbose)


# --- the CLI protocol (tasks/__init__.py) ------------------------------------------

def add_arguments(parser):
    """The task's own flags."""
    parser.add_argument("--classes", default=",".join(common.POSE_CLASSES),
                        help="comma-separated synthetic classes (shapes without rotational "
                             "symmetry about the up axis)")
    parser.add_argument("--elevation", default="10,40",
                        help="camera elevation range 'min,max' in degrees")
    parser.add_argument("--abs_loss", default="log_likelihood", choices=sorted(ABS_LOSSES),
                        help="S_exp abs loss: the original S^1 code's log-likelihood "
                             "(weight 4) or the S^2/S^3 cosine proximity (weight 10)")
    parser.add_argument("--data_seed", type=int, default=0,
                        help="seed of the meshes and views (the --seeds only seed training)")


def check_args(parser, args):
    """Parse --classes and --elevation into ``args.class_list`` and
    ``args.elevation_deg``; parser.error on a bad value."""
    from spherical_cnn.data import synthetic
    from .rotation_data import select_classes
    try:
        args.class_list = select_classes(synthetic.CLASS_NAMES, args.classes)
    except ValueError as e:
        parser.error(f"--classes: {e}")
    try:
        lo, hi = (float(v) for v in args.elevation.split(","))
    except ValueError:
        parser.error(f"--elevation must be 'min,max' in degrees, got {args.elevation!r}")
    if not -90.0 < lo <= hi < 90.0:
        parser.error(f"--elevation must satisfy -90 < min <= max < 90, got {lo:g},{hi:g}")
    args.elevation_deg = (lo, hi)


def _split_args(args, split):
    per_class = args.train_meshes_per_class if split == "train" else args.test_meshes_per_class
    views = args.train_views if split == "train" else args.test_views
    return dict(meshes_per_class=per_class, views_per_mesh=views, size=args.image_size,
                elevation_deg=args.elevation_deg, classes=args.class_list, seed=args.data_seed)


def load_data(args):
    """(train, test) split dicts, rendered or read from the cache in ``args.data_dir``."""
    return tuple(load_split(split, cache_dir=args.data_dir, verbose=True,
                            **_split_args(args, split)) for split in ("train", "test"))


def describe_data(train, test):
    n_cls = len(train["class_names"])
    return (f"{len(train['targets'])} train views of {len(np.unique(train['mesh_ids']))} meshes, "
            f"{len(test['targets'])} test views of {len(np.unique(test['mesh_ids']))} meshes "
            f"({n_cls} classes: {', '.join(train['class_names'])}), "
            f"images {'x'.join(map(str, train['images'].shape[1:]))}")


def config(args):
    """What determines a run besides the fit settings (for reuse of finished runs)."""
    return dict(task="viewpoint",
                data={s: split_manifest(s, **_split_args(args, s)) for s in ("train", "test")},
                width=args.width, abs_loss=args.abs_loss,
                abs_weight=ABS_LOSSES[args.abs_loss], sign_layout="biternion")
