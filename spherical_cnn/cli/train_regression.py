"""Rotation estimation with spherical regression heads (Liao et al. 2019, ModelNet10-SO3-like).

Renders meshes (built-in synthetic shapes by default, or a ModelNet-style tree
with --mesh_root) under uniformly sampled SO(3) rotations, trains a small CNN
from scratch with each requested head and prints the paper-style table
(MedErr in degrees, Acc@pi/6, pi/12, pi/24) plus the mean and variance of the
per-batch norm of dL/dO (gradient w.r.t. the head's pre-activation).

    spherical-regression-train --head all --epochs 15
    spherical-regression-train --classes airplane,bed,bench,chair,sofa,table
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
    if args.classes is not None:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not names:
            p.error(f"--classes {args.classes!r} names no class")
        if args.mesh_root is None:
            from spherical_regression import dataset
            from ..data import synthetic
            try:
                dataset.select_classes(synthetic.CLASS_NAMES, names)
            except ValueError as e:
                p.error(f"--classes: {e}")
        args.classes = ",".join(names)
    return args


def run(args):
    """Render (or reload) the data, train each head, print and save the table; return the results."""
    from spherical_regression import dataset, experiment

    common_kw = dict(cache_dir=args.data_dir, mesh_root=args.mesh_root, size=args.image_size,
                     channels=args.channels, seed=args.seed, verbose=True,
                     classes=None if args.classes is None else args.classes.split(","))
    train = dataset.load_or_render("train", args.train_views,
                                   meshes_per_class=args.train_meshes_per_class, **common_kw)
    test = dataset.load_or_render("test", args.test_views,
                                  meshes_per_class=args.test_meshes_per_class, **common_kw)
    if len(train["images"]) < args.batch_size:
        raise UserError(f"{len(train['images'])} training images, fewer than "
                        f"--batch_size {args.batch_size}")
    print(f"train {train['images'].shape}, test {test['images'].shape}", flush=True)
    heads = experiment.HEAD_NAMES if args.head == "all" else (args.head,)
    results = []
    for head in heads:
        results.append(experiment.train_head(
            head, train, test, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, seed=args.seed, width=args.width,
            abs_weight=args.abs_weight, sign_weight=args.sign_weight,
            log_dir=os.path.join(args.out, "tensorboard")))
    print()
    print(experiment.format_table(results))
    path = experiment.save_results(results, args.out, vars(args))
    print(f"\nresults: {path}")
    return results


def main(argv=None):
    """Command-line entry: parse, silence TensorFlow, run; exit status 0."""
    args = parse_args(argv)
    common.quiet_tensorflow(args.verbose)
    run(args)
    return 0
