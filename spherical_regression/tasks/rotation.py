"""S^3 rotation task (ModelNet10-SO3-like): 3D pose of a shape from one render.

Every view shows a mesh under a Haar-uniform random rotation R (orthographic,
shaded + depth, ``rotation_data``; or the original's ModelNet10-SO3 release with
``--data``, ``modelnet10_so3``); the target is R's unit quaternion (w, x, y, z) with
w >= 0. A small CNN (``common.build_backbone``, trained from scratch) maps the image
to features and a head maps those to the output. As the original, the head is
*category-conditioned* by default: one output block per category, selected by the
ground-truth category (``heads.CategoryConditionedHead``; ``--no-conditioned`` for
one shared head). The built-in data defaults to the classes without rotational
symmetry (``common.POSE_CLASSES``), with many distinct meshes and few views each.

Metrics as the paper reports them: per category, the median geodesic error (MedErr,
degrees) and the fraction of views within pi/6, pi/12, pi/24 (Acc@...), then the
mean over categories; ``per_class`` keeps each category's figures and ``MedErr_all``
the median over all test views pooled.

The model, its loss and the evaluation are in ``rotation_model`` (imported when a
run is made, so that ``--help`` does not load TensorFlow).

Conventions (heads.py, signs.py): the S_exp head classifies the signs of (x, y, z)
with the sign layout 'quaternion' (w < 0 flips) or 'quaternion_original' (w <= 0
flips, as the original code), and computes |y| under ``--logit_scale`` 'paper'
(sqrt(softmax(2 O))) or 'original_code' (sqrt(softmax(O))).
"""
from . import common

SUMMARY = "S^3: 3D pose (unit quaternion) of a shape from its render, ModelNet10-SO3-like"
SIZE_FLAGS = common.IMAGE_TASK_SIZE_FLAGS
DEFAULTS = dict(image_size=48, train_meshes_per_class=800, test_meshes_per_class=25,
                train_views=4, test_views=8, width=32, epochs=12, batch_size=64,
                learning_rate=2e-3)
QUICK = dict(image_size=16, train_meshes_per_class=2, test_meshes_per_class=1, train_views=8,
             test_views=4, width=4, epochs=2, batch_size=16, learning_rate=1e-3)
PRIMARY = "MedErr"
METRICS = ("MedErr", "Acc@pi/6", "Acc@pi/12", "Acc@pi/24")


# --- the task protocol of spherical_cnn.cli.regression ----------------------------------

def add_arguments(p):
    p.add_argument("--mesh_root", default=None,
                   help="ModelNet-style tree <root>/<class>/{train,test}/<mesh> "
                        "(default: the built-in synthetic shapes)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names (default: the built-in classes without "
                        f"rotational symmetry, {','.join(common.POSE_CLASSES)}; all classes of "
                        "--mesh_root or --data)")
    p.add_argument("--channels", default="both", choices=["shade", "depth", "both"],
                   help="rendered channels")
    p.add_argument("--no-conditioned", dest="conditioned", action="store_false",
                   help="one head for all categories instead of one per category (selected "
                        "by the ground-truth category, as the original)")
    p.add_argument("--abs_weight", type=float, default=10.0, help="S_exp: weight of the |y| loss")
    p.add_argument("--sign_weight", type=float, default=1.0, help="S_exp: weight of the sign CE")
    p.add_argument("--logit_scale", default="paper", choices=["paper", "original_code"],
                   help="S_exp: |y| = sqrt(softmax(2 O)) (the paper's formula) or "
                        "sqrt(softmax(O)) (the original code)")
    p.add_argument("--sign_layout", default="quaternion",
                   choices=["quaternion", "quaternion_original"],
                   help="S_exp sign classes: w < 0 flips q (quaternion) or w <= 0 flips "
                        "(quaternion_original, as the original code)")
    g = p.add_argument_group("the original's ModelNet10-SO3 release")
    g.add_argument("--data", default=None, metavar="DIR",
                   help="train and test on the release in DIR (LMDB folders + viewID2quat.pkl) "
                        "instead of rendering; the mesh flags are then unused")
    g.add_argument("--data_train_set", default="train_100V", choices=["train_100V", "train_20V"],
                   help="training folder (100 or 20 views per CAD model; 100V at 64x64 RGB "
                        "holds about 5 GB of uint8 images in memory)")
    g.add_argument("--data_test_sampling", type=float, default=0.2,
                   help="random fraction of the test views used (the paper: 0.2)")
    g.add_argument("--data_max_views", type=int, default=None,
                   help="at most this many training views per CAD model")
    g.add_argument("--data_gray", action="store_true",
                   help="one luminance channel instead of RGB")


def check_args(p, args):
    import os
    if args.mesh_root is not None and not os.path.isdir(args.mesh_root):
        p.error(f"--mesh_root {args.mesh_root!r} is not a directory")
    if args.data is not None and not os.path.isdir(args.data):
        p.error(f"--data {args.data!r} is not a directory")
    if not 0.0 < args.data_test_sampling <= 1.0:
        p.error(f"--data_test_sampling must be in (0, 1], got {args.data_test_sampling}")
    if args.data_max_views is not None and args.data_max_views < 1:
        p.error(f"--data_max_views must be >= 1, got {args.data_max_views}")
    if args.classes is None:
        if args.data is None and args.mesh_root is None:
            args.classes = ",".join(common.POSE_CLASSES)
        return
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not names:
        p.error(f"--classes {args.classes!r} names no class")
    from . import rotation_data
    known = None  # a --mesh_root tree is checked when it is read
    if args.data is not None:
        from . import modelnet10_so3
        known, source = modelnet10_so3.CATEGORIES, "ModelNet10-SO3"
    elif args.mesh_root is None:
        from spherical_cnn.data import synthetic
        known, source = synthetic.CLASS_NAMES, "synthetic shapes"
    if known is not None:
        try:
            rotation_data.select_classes(known, names, source=source)
        except ValueError as e:
            p.error(f"--classes: {e}")
    args.classes = ",".join(names)


def load_data(args):
    """(train, test): rendered (cached in --data_dir) or read from --data."""
    classes = None if args.classes is None else args.classes.split(",")
    if args.data is not None:
        from . import modelnet10_so3
        kw = dict(size=args.image_size, classes=classes, gray=args.data_gray, seed=0,
                  verbose=True)
        train = modelnet10_so3.load_split(args.data, args.data_train_set,
                                          max_views=args.data_max_views, **kw)
        test = modelnet10_so3.load_split(args.data, "test", sampling=args.data_test_sampling, **kw)
    else:
        from . import rotation_data
        kw = dict(cache_dir=args.data_dir, mesh_root=args.mesh_root, size=args.image_size,
                  channels=args.channels, seed=0, verbose=True, classes=classes)
        train = rotation_data.load_or_render("train", args.train_views,
                                             meshes_per_class=args.train_meshes_per_class, **kw)
        test = rotation_data.load_or_render("test", args.test_views,
                                            meshes_per_class=args.test_meshes_per_class, **kw)
    train["targets"] = train["quaternions"]
    return train, test


def describe_data(train, test):
    return (f"train {train['images'].shape}, test {test['images'].shape}, "
            f"classes {','.join(train['class_names'])}")


def config(args):
    keys = ["image_size", "width", "conditioned", "abs_weight", "sign_weight", "logit_scale",
            "sign_layout", "classes"]
    if args.data is None:
        keys += ["mesh_root", "channels", "train_meshes_per_class", "test_meshes_per_class",
                 "train_views", "test_views"]
    else:
        keys += ["data", "data_train_set", "data_test_sampling", "data_max_views", "data_gray"]
    return {k: getattr(args, k) for k in keys}
