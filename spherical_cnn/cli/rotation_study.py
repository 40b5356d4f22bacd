"""Rotation study (z/z, SO(3)/SO(3), z/SO(3), SO(3)/z) and per-layer equivariance error.

  spherical-cnn-rotation-study                        # full study, 3 seeds (~1 h on 2 CPU cores)
  spherical-cnn-rotation-study --quick --out /tmp/rs  # smoke test (~80 s)
  spherical-cnn-rotation-study --models spherical-cwap,planar --seeds 0
  spherical-cnn-rotation-study --mesh_root ~/data/ModelNet10 --input_res 64 \\
      --params params/model-64.txt params/m40-64.txt params/training.txt --flags --n_classes 10
  spherical-cnn-rotation-study --images dataset-fashion-mnist_*.deb --n_train_images 4000 \\
      --n_test_images 2000 --models planar,spherical-spectral-aa --out logs/fmnist-study \\
      --flags --n_epochs 6 --learning_rate "{0: 0.001, 5: 0.0002}"    # ~66 min on 2 shared cores

With --images (an MNIST-format image set: its .deb, a folder holding the IDX
files, or "download" for apt-get download dataset-fashion-mnist) the study
follows the spherical MNIST protocol instead: the images are projected onto the
sphere not rotated (NR) and rotated (R, one uniform rotation per image), each
model is trained on both and tested on both: NR/NR, R/R, NR/R and R/NR
(spherical_cnn/data/images.py; default params model-32, fmnist-32, training-cpu).

Every model is trained on z- and on SO(3)-rotated data once per seed and tested
on both test sets: accuracy, consistency over rotations (test meshes predicted
the same under all their test rotations) and the spread of accuracy across
test rotations; tables give mean ± std over the seeds. Finished runs in
--out/runs are reused, an interrupted one resumes. Then (unless
--no_equivariance) the equivariance analysis of the spherical models trained
on z with the first seed (see spherical_cnn/equivariance.py). Outputs go to
--out: results.{json,csv}, results_per_seed.csv, table.md, rotation_study.png,
equivariance.{json,csv,md,png}.
"""
import argparse
import os

from . import common, make_dataset
from ..errors import UserError


def _names(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def _seeds(text):
    try:
        return [int(v) for v in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list of integers, got {!r}".format(text))


def build_parser():
    from ..studies import rotation_study as rs  # NumPy only
    p = common.command_parser(__doc__)
    p.add_argument("--out", default="logs/rotation_study", help="output folder (datasets, runs, results)")
    p.add_argument("--quick", action="store_true",
                   help="tiny dataset and model, 2 epochs, seed 0 only (smoke test)")
    p.add_argument("--mesh_root", default=None,
                   help="ModelNet-style mesh tree <class>/{train,test}/<mesh> (default: built-in synthetic shapes)")
    p.add_argument("--params", nargs="+", default=None,
                   help="flag files of the spherical model (default: the installed model-32, "
                        "synthetic-32 and training-cpu; with --images fmnist-32 instead of synthetic-32)")
    p.add_argument("--images", default=None, metavar="SOURCE",
                   help="image study on an MNIST-format set: a .deb, a folder with its IDX files, or "
                        "'download' (apt-get download dataset-fashion-mnist)")
    p.add_argument("--n_train_images", type=int, default=None,
                   help="train images (the first ones of the file; default all but --n_val_images)")
    p.add_argument("--n_val_images", type=int, default=0,
                   help="validation images (after the train ones); with some, every run validates "
                        "after each epoch (learning curves in its TensorBoard events)")
    p.add_argument("--band_limit", type=int, default=0, metavar="K",
                   help="with --images: project on the K-times finer grid and keep the degrees < n/2 "
                        "(spherical-cnn-make-images --band_limit); 0: the protocol's sampling")
    p.add_argument("--flat_reference", action="store_true",
                   help="with --images: also train the planar CNN on the original images (not "
                        "projected), once per seed: the upper reference")
    p.add_argument("--n_test_images", type=int, default=None, help="test images (the first ones; default all)")
    p.add_argument("--flags", nargs=argparse.REMAINDER, default=[],
                   help="more training flags for all models, e.g. --flags --n_epochs 8 (must come last)")
    p.add_argument("--input_res", type=int, default=None, help="grid size n (default 32; 16 with --quick)")
    p.add_argument("--n_rotations", type=int, default=None,
                   help="rotations per train mesh (default 8); with --images: rotations of the R "
                        "train images, one train shard (epoch) each (default 1)")
    p.add_argument("--n_test_rotations", type=int, default=None,
                   help="rotations per test mesh (default 8; 2 with --quick)")
    p.add_argument("--augment", choices=make_dataset.AUGMENT_PRESETS, default="none",
                   help="meshes: augment the train and val instances of every dataset (z and SO(3)) "
                        "as make-dataset --augment does: anisotropic scale 0.8-1.2, centre shift 0.1; "
                        "the rotations stay the study's")
    p.add_argument("--supersample", type=int, default=1, metavar="S",
                   help="meshes: S x S rays per grid cell, averaged, in every dataset "
                        "(make-dataset --supersample)")
    p.add_argument("--convex_hull", action="store_true",
                   help="meshes: add the convex hull's map as a second channel of every dataset "
                        "(make-dataset --convex_hull); the models read --nchannels from the datasets")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (meshes, rotations, split)")
    p.add_argument("--seeds", type=_seeds, default=None,
                   help="training seeds, comma-separated; each model is trained once per seed "
                        "(default 0,1,2; 0 with --quick)")
    p.add_argument("--workers", type=int, default=None, help="dataset builder processes (default: all cores)")
    p.add_argument("--models", type=_names, nargs="+", default=None, metavar="NAMES",
                   help="models to train, comma-separated, of: {} (default: every one this version "
                        "supports; a variant needing a flag that is missing is left out and named)"
                   .format(", ".join(rs.MODEL_NAMES)))
    p.add_argument("--rebuild", action="store_true", help="rebuild the datasets even if they exist")
    p.add_argument("--no_equivariance", action="store_true", help="skip the equivariance analysis")
    p.add_argument("--equivariance_only", action="store_true",
                   help="only the equivariance analysis (of <out>/runs/spherical-{wap,cwap,spectral,cwap-aa,spectral-aa}/"
                        "seed<first seed>/z)")
    return common.add_output_flags(p)


def make_config(a):
    """The study's configuration from the parsed arguments."""
    from ..studies import rotation_study as rs
    cfg = rs.quick_config(a.out) if a.quick else rs.StudyConfig(out_dir=a.out)
    cfg.mesh_root = a.mesh_root
    if a.images and a.mesh_root:
        raise UserError("give --images or --mesh_root, not both")
    if a.images:
        cfg.images = a.images
        cfg.n_val_images = a.n_val_images
        cfg.n_train_images = a.n_train_images or (200 if a.quick else None)
        cfg.n_test_images = a.n_test_images or (100 if a.quick else None)
        if a.n_test_rotations is None:
            cfg.n_test_rotations = 1  # the protocol: one rotation per test image
        if a.n_rotations is None:
            cfg.n_rotations = 1
        cfg.flat_reference = a.flat_reference
        cfg.image_band_limit = a.band_limit
    elif a.flat_reference or a.band_limit:
        raise UserError("--{} needs --images (it is an option of the image study)".format(
            "flat_reference" if a.flat_reference else "band_limit"))
    if a.images and (a.augment != "none" or a.supersample != 1 or a.convex_hull):
        raise UserError("--{} is an option of the mesh study; the image study takes --band_limit".format(
            "augment" if a.augment != "none" else "supersample" if a.supersample != 1 else "convex_hull"))
    if a.supersample < 1:
        raise UserError("--supersample must be an integer >= 1, got {}".format(a.supersample))
    cfg.augment, cfg.supersample, cfg.convex_hull = a.augment, a.supersample, a.convex_hull
    cfg.params_files = tuple(a.params or (rs.IMAGE_PARAMS if a.images else rs.DEFAULT_PARAMS))
    cfg.extra_flags = tuple(cfg.extra_flags) + tuple(a.flags)
    for key in ("input_res", "n_rotations", "n_test_rotations", "workers"):
        if getattr(a, key) is not None:
            setattr(cfg, key, getattr(a, key))
    if a.seeds is not None:
        cfg.seeds = rs.check_seeds(a.seeds)
    if a.models is not None:
        cfg.models = tuple(n for group in a.models for n in group)
    cfg.seed, cfg.rebuild = a.seed, a.rebuild
    return cfg


def run_equivariance(cfg, quick):
    """Equivariance analysis of the z-trained wap/cwap/spectral runs of the first seed; prints its table."""
    from ..studies import equivariance as eq
    from ..studies import rotation_study as rs
    variants, _ = rs.select_models(cfg.models)
    logdirs = rs.equivariance_logdirs(cfg, [v.name for v in variants])
    if not logdirs:
        return
    unfinished = [d for d in logdirs.values() if not (rs.load_run(d) or {}).get("result")]
    if unfinished:
        raise UserError("no finished run in {}: run the study first (without --equivariance_only)"
                        .format(", ".join(unfinished)))
    res = eq.study_from_runs(logdirs, rs.dataset_dirs(cfg, "plain")["so3"], cfg.out_dir, quick=quick)
    print()
    print(eq.format_table(res))
    print()
    print("wrote {}".format(", ".join(os.path.join(cfg.out_dir, "equivariance." + e)
                                      for e in ("json", "csv", "md", "png"))))


def main(argv=None):
    """Run the study and/or the equivariance analysis; print their tables."""
    a = build_parser().parse_args(argv)
    common.quiet_tensorflow(a.verbose)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # retracing notes: each run builds its own tf.functions
    from ..studies import rotation_study as rs
    cfg = make_config(a)
    if not a.equivariance_only:
        results = rs.run_study(cfg)
        print()
        print(rs.format_table(results))
        print()
        print("wrote {}".format(", ".join(os.path.join(cfg.out_dir, f) for f in rs.OUTPUT_FILES)))
    if not a.no_equivariance and not cfg.images:
        run_equivariance(cfg, a.quick)
    return 0
