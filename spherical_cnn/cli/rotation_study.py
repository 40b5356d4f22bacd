"""Rotation study (z/z, SO(3)/SO(3), z/SO(3)) and per-layer equivariance error.

  spherical-cnn-rotation-study                        # full study (~12-25 min on 2 CPU cores)
  spherical-cnn-rotation-study --quick --out /tmp/rs  # smoke test (~35 s)
  spherical-cnn-rotation-study --mesh_root ~/data/ModelNet10 --input_res 64 \\
      --params params/model-64.txt params/m40-64.txt params/training.txt --flags --n_classes 10

Then (unless --no_equivariance) the equivariance analysis of the spherical
models trained on z (see spherical_cnn/equivariance.py). Outputs go to --out:
results.{json,csv}, table.md, rotation_study.png, equivariance.{json,csv,md,png}.
"""
import argparse
import os

from . import common


def build_parser():
    from .. import rotation_study as rs  # NumPy only
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter,
                                fromfile_prefix_chars="@", epilog=common.epilog(common.ARGFILE_HELP))
    p.add_argument("--out", default="logs/rotation_study", help="output folder (datasets, runs, results)")
    p.add_argument("--quick", action="store_true", help="tiny dataset and model, 2 epochs (smoke test)")
    p.add_argument("--mesh_root", default=None,
                   help="ModelNet-style mesh tree <class>/{train,test}/<mesh> (default: built-in synthetic shapes)")
    p.add_argument("--params", nargs="+", default=list(rs.DEFAULT_PARAMS),
                   help="flag files of the spherical model (default: the installed model-32, "
                        "synthetic-32 and training-cpu)")
    p.add_argument("--flags", nargs=argparse.REMAINDER, default=[],
                   help="more training flags for both models, e.g. --flags --n_epochs 8 (must come last)")
    p.add_argument("--input_res", type=int, default=None, help="grid size n (default 32; 16 with --quick)")
    p.add_argument("--n_rotations", type=int, default=None, help="rotations per train mesh (default 8)")
    p.add_argument("--n_test_rotations", type=int, default=None, help="rotations per test mesh (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--workers", type=int, default=None, help="dataset builder processes (default: all cores)")
    p.add_argument("--models", nargs="+", default=list(rs.MODEL_NAMES), choices=rs.MODEL_NAMES,
                   help="models to train")
    p.add_argument("--rebuild", action="store_true", help="rebuild the datasets even if they exist")
    p.add_argument("--no_equivariance", action="store_true", help="skip the equivariance analysis")
    p.add_argument("--equivariance_only", action="store_true",
                   help="only the equivariance analysis (of <out>/runs/spherical-{wap,spectral}-z)")
    return common.add_output_flags(p)


def make_config(a):
    """The study's configuration from the parsed arguments."""
    from .. import rotation_study as rs
    cfg = rs.quick_config(a.out) if a.quick else rs.StudyConfig(out_dir=a.out)
    cfg.mesh_root = a.mesh_root
    cfg.params_files = tuple(a.params)
    cfg.extra_flags = tuple(cfg.extra_flags) + tuple(a.flags)
    for key in ("input_res", "n_rotations", "n_test_rotations", "workers"):
        if getattr(a, key) is not None:
            setattr(cfg, key, getattr(a, key))
    cfg.seed, cfg.models, cfg.rebuild = a.seed, tuple(a.models), a.rebuild
    return cfg


def main(argv=None):
    """Run the study and/or the equivariance analysis; print their tables."""
    a = build_parser().parse_args(argv)
    common.quiet_tensorflow(a.verbose)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # retracing notes: each run builds its own tf.functions
    from .. import rotation_study as rs
    cfg = make_config(a)
    if not a.equivariance_only:
        results = rs.run_study(cfg)
        print()
        print(rs.format_table(results))
        print()
        print("wrote {}".format(", ".join(os.path.join(cfg.out_dir, f) for f in (
            "results.json", "results.csv", "table.md", "rotation_study.png"))))
    logdirs = {kind: os.path.join(cfg.out_dir, "runs", "spherical-{}-z".format(kind))
               for kind in ("wap", "cwap", "spectral") if "spherical-" + kind in cfg.models}
    if not a.no_equivariance and logdirs:
        from .. import equivariance as eq
        res = eq.study_from_runs(logdirs, os.path.join(cfg.out_dir, "data", "so3"), cfg.out_dir,
                                 quick=a.quick)
        print()
        print(eq.format_table(res))
        print()
        print("wrote {}".format(", ".join(os.path.join(cfg.out_dir, "equivariance." + e)
                                          for e in ("json", "csv", "md", "png"))))
    return 0
