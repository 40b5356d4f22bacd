"""Rotation estimation with spherical regression heads (Liao et al. 2019, ModelNet10-SO3-like).

Renders meshes (built-in synthetic shapes by default, or a ModelNet-style tree
with --mesh_root) under uniformly sampled SO(3) rotations, trains a small CNN
from scratch with each requested head and prints the paper-style table
(MedErr in degrees, Acc@pi/6, pi/12, pi/24) plus the mean and variance of the
per-batch norm of dL/dO (gradient w.r.t. the head's pre-activation).

With --data DIR it trains on the original's ModelNet10-SO3 release instead
(DIR = the extracted ModelNet10-SO3 folder with train_100V.Rawjpg.lmdb,
train_20V.Rawjpg.lmdb and test_20V.Rawjpg.lmdb; colour JPEG views resized to
--image_size; categories in the release's order).

    spherical-regression-train --head all --epochs 15
    spherical-regression-train --classes airplane,bed,bench,chair,sofa,table
    spherical-regression-train --data ~/ModelNet10-SO3 --data_train_set train_20V
"""
import argparse
import os

from . import common
from ..errors import UserError


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter,
                                fromfile_prefix_chars="@", epilog=common.epilog(common.ARGFILE_HELP))
    p.add_argument("--head", default="all", choices=["sexp", "sflat", "direct", "all"],
                   help="regression head(s) to train")
    p.add_argument("--mesh_root", default=None,
                   help="ModelNet-style tree <root>/<class>/{train,test}/<mesh> "
                        "(default: the built-in synthetic shapes)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names to use (default: all classes of the "
                        "source), e.g. airplane,bed,bench,chair,sofa,table")
    p.add_argument("--train_meshes_per_class", type=int, default=10, help="train meshes per class")
    p.add_argument("--test_meshes_per_class", type=int, default=15, help="test meshes per class")
    p.add_argument("--train_views", type=int, default=100, help="rotations per train mesh")
    p.add_argument("--test_views", type=int, default=4, help="rotations per test mesh")
    p.add_argument("--image_size", type=int, default=64, help="rendered image size (pixels)")
    p.add_argument("--channels", default="both", choices=["shade", "depth", "both"],
                   help="rendered channels")
    p.add_argument("--epochs", type=int, default=15, help="training epochs")
    p.add_argument("--batch_size", type=int, default=64, help="batch size")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--width", type=int, default=32, help="channels of the first conv layer")
    p.add_argument("--abs_weight", type=float, default=10.0, help="S_exp: weight of the |y| loss")
    p.add_argument("--sign_weight", type=float, default=1.0, help="S_exp: weight of the sign CE")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--data_dir", default="data/regression", help="cache of rendered datasets")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="train and test on the original ModelNet10-SO3 release in DIR "
                        "(LMDB folders + viewID2quat.pkl) instead of rendering; the mesh "
                        "flags (--mesh_root, --*_meshes_per_class, --*_views, --channels) "
                        "are then unused")
    p.add_argument("--data_train_set", default="train_100V", choices=["train_100V", "train_20V"],
                   help="--data: training folder (100 or 20 views per CAD model; 100V at 64x64 "
                        "RGB holds about 5 GB of uint8 images in memory)")
    p.add_argument("--data_test_sampling", type=float, default=0.2,
                   help="--data: random fraction of the test views used (the paper: 0.2)")
    p.add_argument("--data_max_views", type=int, default=None,
                   help="--data: at most this many training views per CAD model")
    p.add_argument("--data_gray", action="store_true",
                   help="--data: one luminance channel instead of RGB")
    p.add_argument("--logit_scale", default="paper", choices=["paper", "original_code"],
                   help="S_exp: |y| = sqrt(softmax(2 O)) (the paper's formula) or "
                        "sqrt(softmax(O)) (the original code)")
    p.add_argument("--sign_layout", default="quaternion",
                   choices=["quaternion", "quaternion_original"],
                   help="S_exp sign classes: w < 0 flips q (quaternion) or w <= 0 flips "
                        "(quaternion_original, as the original code)")
    p.add_argument("--out", default="logs/regression", help="results.json + TensorBoard logs")
    return common.add_output_flags(p)


def parse_args(argv=None):
    """Parse and check the arguments (argparse's one-line error, exit 2, for bad ones)."""
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("train_meshes_per_class", "test_meshes_per_class", "train_views", "test_views",
                 "image_size", "epochs", "batch_size", "width"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.mesh_root is not None and not os.path.isdir(args.mesh_root):
        p.error(f"--mesh_root {args.mesh_root!r} is not a directory")
    if args.data is not None and not os.path.isdir(args.data):
        p.error(f"--data {args.data!r} is not a directory")
    if not 0.0 < args.data_test_sampling <= 1.0:
        p.error(f"--data_test_sampling must be in (0, 1], got {args.data_test_sampling}")
    if args.data_max_views is not None and args.data_max_views < 1:
        p.error(f"--data_max_views must be >= 1, got {args.data_max_views}")
    if args.classes is not None:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not names:
            p.error(f"--classes {args.classes!r} names no class")
        from spherical_regression.tasks import rotation_data
        if args.data is not None:
            from spherical_regression.tasks import modelnet10_so3
            known, source = modelnet10_so3.CATEGORIES, "ModelNet10-SO3"
        elif args.mesh_root is None:
            from ..data import synthetic
            known, source = synthetic.CLASS_NAMES, "synthetic shapes"
        else:
            known = None  # checked against the mesh tree when it is read
        if known is not None:
            try:
                rotation_data.select_classes(known, names, source=source)
            except ValueError as e:
                p.error(f"--classes: {e}")
        args.classes = ",".join(names)
    return args


def run(args):
    """Render (or reload) the data, train each head, print and save the table; return the results."""
    from spherical_regression.tasks import rotation, rotation_data

    classes = None if args.classes is None else args.classes.split(",")
    if args.data is not None:
        from spherical_regression.tasks import modelnet10_so3
        kw = dict(size=args.image_size, classes=classes, gray=args.data_gray, seed=args.seed,
                  verbose=True)
        train = modelnet10_so3.load_split(args.data, args.data_train_set,
                                          max_views=args.data_max_views, **kw)
        test = modelnet10_so3.load_split(args.data, "test", sampling=args.data_test_sampling, **kw)
    else:
        kw = dict(cache_dir=args.data_dir, mesh_root=args.mesh_root, size=args.image_size,
                  channels=args.channels, seed=args.seed, verbose=True, classes=classes)
        train = rotation_data.load_or_render("train", args.train_views,
                                             meshes_per_class=args.train_meshes_per_class, **kw)
        test = rotation_data.load_or_render("test", args.test_views,
                                            meshes_per_class=args.test_meshes_per_class, **kw)
    if len(train["images"]) < args.batch_size:
        raise UserError(f"{len(train['images'])} training images, fewer than "
                        f"--batch_size {args.batch_size}")
    print(f"train {train['images'].shape}, test {test['images'].shape}", flush=True)
    heads = rotation.HEAD_NAMES if args.head == "all" else (args.head,)
    results = []
    for head in heads:
        results.append(rotation.train_head(
            head, train, test, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, seed=args.seed, width=args.width,
            abs_weight=args.abs_weight, sign_weight=args.sign_weight,
            logit_scale=args.logit_scale, sign_layout=args.sign_layout,
            log_dir=os.path.join(args.out, "tensorboard")))
    print()
    print(rotation.format_table(results))
    path = rotation.save_results(results, args.out, vars(args))
    print(f"\nresults: {path}")
    return results


def main(argv=None):
    """Command-line entry: parse, silence TensorFlow, run; exit status 0."""
    args = parse_args(argv)
    common.quiet_tensorflow(args.verbose)
    run(args)
    return 0
