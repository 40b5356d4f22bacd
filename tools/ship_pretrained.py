#!/usr/bin/env python3
"""Ship a trained model with the package: LOGDIR -> spherical_cnn/pretrained/NAME/.

  tools/ship_pretrained.py logs/synthetic synthetic --command "scripts/train.py @params/model-32.txt ..."
  tools/ship_pretrained.py logs/fmnist-study/runs/spherical-spectral-aa/seed0/r fashion-mnist \\
      --images dataset-fashion-mnist_*.deb --subset_size 500
  tools/ship_pretrained.py logs/furniture-study/runs/spherical-cwap/seed0/so3 furniture --subset_size 100

LOGDIR is a finished run of spherical-cnn-train (with model.keras), of the
rotation study (exported here from its 'final' checkpoint) or an ensemble of
runs written by spherical-cnn-ensemble (meta.json 'ensemble': its members' seeds). Written: model.keras,
flags.yaml (paths made relative), classes.txt, meta.json (command, revision, test
accuracy, the fixed test subset and its accuracy) and the subset's data:

- built-in synthetic set (--dset synthetic): no data, the subset (the first
  --n_per_class test meshes of each class, all their test rotations) is regenerated;
- image models (2-channel float32 records): the first --subset_size raw test
  images from --images SOURCE (.deb or folder of IDX files), projected as the
  training set was (its manifest gives rotation and seed);
- anything else: the first --subset_size records of the run's test split.

The test test/test_pretrained.py checks every shipped model against its stated
subset accuracy. Then add the name to docs/pretrained.md.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from spherical_cnn.data.atomic_output import AtomicFolder  # noqa: E402
from spherical_cnn.errors import UserError, run_cli  # noqa: E402
from spherical_cnn.json_files import read_json as _read_json  # noqa: E402

FILES = ("model.keras", "flags.yaml", "classes.txt")


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logdir", help="finished training run (train.py or a rotation-study run folder)")
    p.add_argument("name", help="name of the pretrained model (folder under spherical_cnn/pretrained)")
    p.add_argument("--description", default="", help="one line shown by --list_pretrained")
    p.add_argument("--command", default=None,
                   help="the command that trained it (default: LOGDIR/command.txt, else the saved flags)")
    p.add_argument("--revision", default=None,
                   help="git commit that trained it (default: LOGDIR/revision.txt, else this checkout's HEAD)")
    p.add_argument("--test_accuracy", type=float, default=None,
                   help="full test-set accuracy (default: from results.json or study_run.json)")
    p.add_argument("--test_set", default=None, help="what the test accuracy was measured on")
    p.add_argument("--classes", default=None,
                   help="class names, comma-separated, or 'fashion-mnist' (default: the run's classes.txt)")
    p.add_argument("--images", default=None, metavar="SOURCE",
                   help="image models: the image set's .deb or IDX folder (raw test images for the subset)")
    p.add_argument("--subset_size", type=int, default=None,
                   help="images or records in the subset (default 500 images / 100 records)")
    p.add_argument("--n_per_class", type=int, default=3, help="synthetic set: test meshes per class")
    p.add_argument("--dest", default=os.path.join(ROOT, "spherical_cnn", "pretrained"),
                   help="folder of the pretrained models")
    p.add_argument("--overwrite", action="store_true", help="replace a shipped model of that name")
    p.add_argument("--study", default=None, metavar="RESULTS_JSON",
                   help="results.json of the rotation study whose mean +- std over seeds is stated "
                        "beside the shipped model's own figure (meta.json 'study')")
    p.add_argument("--study_model", default=None,
                   help="the model of --study (default: from LOGDIR = .../runs/MODEL/seedN/ROT)")
    p.add_argument("--study_regime", default=None,
                   help="train/test regime of --study, e.g. R/R (default: the run's rotations on both)")
    p.add_argument("--study_command", default="", help="the command that gives --study")
    return p


def export_from_checkpoint(logdir, out_path):
    """Rebuild the run's model from its flags and 'final' checkpoint; save it as ``out_path``."""
    from spherical_cnn import training
    from spherical_cnn.studies import rotation_study
    rotation_study._register_planar()
    args = training.load_flags(logdir, {"test_only": True, "from_scratch": False})
    trainer = training.Trainer(args, training.get_logger(None))
    if not trainer.store.restore("final", trainer.checkpoint, expect_partial=True):
        raise UserError("{}: no model.keras and no 'final' checkpoint".format(logdir))
    trainer.model.save(out_path)
    return args


def test_figures(logdir):
    """(test accuracy, description, all accuracies) from results.json or study_run.json."""
    res = _read_json(os.path.join(logdir, "results.json"))
    if res and res.get("test") is not None:
        return float(res["test"]), "test split of the training data set", {}
    run = _read_json(os.path.join(logdir, "study_run.json"))
    if run and run.get("result"):
        from spherical_cnn.studies.rotation_study import LABELS
        mode = os.path.basename(os.path.normpath(logdir))
        tests = {LABELS.get(m, m): float(v["accuracy"]) for m, v in run["result"]["test"].items()}
        label = LABELS.get(mode, mode)
        return tests[label], "{} test set (trained on {})".format(label, label), tests
    raise UserError("{}: no results.json or finished study_run.json; give --test_accuracy".format(logdir))


def study_figures(a):
    """meta.json's ``study``: mean, std and per-seed values of the study's test accuracy for the
    shipped model's kind of run; ``None`` without ``--study``."""
    if not a.study:
        return None
    from spherical_cnn.studies.rotation_study import LABELS
    results = _read_json(a.study)
    if not results or "models" not in results:
        raise UserError("{}: not a rotation study's results.json".format(a.study))
    parts = os.path.normpath(os.path.abspath(a.logdir)).split(os.sep)
    from_run = len(parts) >= 4 and parts[-4] == "runs" and parts[-2].startswith("seed")
    model = a.study_model or (parts[-3] if from_run else None)
    regime = a.study_regime or ("{0}/{0}".format(LABELS.get(parts[-1], parts[-1])) if from_run else None)
    if model is None or regime is None:
        raise UserError("{}: not a study run folder; give --study_model and --study_regime".format(a.logdir))
    if model not in results["models"]:
        raise UserError("{}: no model {!r} (it has {})".format(a.study, model, ", ".join(results["models"])))
    summary = results["models"][model]["summary"]
    if regime not in summary:
        raise UserError("{}: no regime {!r} (it has {})".format(a.study, regime, ", ".join(summary)))
    acc = summary[regime]["accuracy"]
    return {"model": model, "regime": regime, "seeds": results.get("seeds"), "mean": acc["mean"],
            "std": acc["std"], "values": acc["values"], "command": a.study_command}


def ensemble_members(logdir):
    """meta.json's ``ensemble`` for a run folder written by spherical-cnn-ensemble (method,
    members' seeds and sizes; not their folders, which are paths of the shipping machine)."""
    from spherical_cnn.ensemble import ENSEMBLE_FILE
    described = _read_json(os.path.join(logdir, ENSEMBLE_FILE))
    if not described:
        return None
    return {"method": described["method"], "n_members": len(described["members"]),
            "seeds": [m.get("seed") for m in described["members"]],
            "parameters": described.get("parameters")}


def relative_flags(flags_path, out_path, name):
    import yaml
    with open(flags_path) as f:
        flags = yaml.safe_load(f)
    flags["logdir"] = "."
    if flags.get("dset_dir"):
        flags["dset_dir"] = os.path.join("data", os.path.basename(os.path.normpath(flags["dset_dir"])))
    flags["run_id"] = name
    with open(out_path, "w") as f:
        yaml.safe_dump(flags, f, sort_keys=True)
    return flags


def make_subset(a, args, stage):
    """The subset spec (and its data in ``stage``)."""
    import numpy as np
    if args.dset == "synthetic":
        made = _read_json(os.path.join(args.dset_dir, "manifest.json")) or {}
        return {"kind": "synthetic", "n_test_per_class": a.n_per_class, "seed": made.get("seed", 0),
                "rotations": made.get("test_rotations", "so3"),
                "n_test_rotations": made.get("n_test_rotations", 4), "input_res": args.input_res,
                "r0": made.get("r0", 1.2), "supersample": made.get("supersample", 1)}
    if args.nchannels == 2 and not args.mag_ang:
        from spherical_cnn.data import images
        made = _read_json(os.path.join(args.dset_dir, "manifest.json"))
        if not made or made.get("kind") != "spherical images":
            raise UserError("{}: no manifest of a spherical image set".format(args.dset_dir))
        if not a.images:
            raise UserError("an image model: give --images SOURCE (the .deb or IDX folder it was built from)")
        n = a.subset_size or 500
        with tempfile.TemporaryDirectory() as tmp:
            paths = images.resolve_source(a.images, tmp)
            x, y = images.load_split(paths["test_images"], paths["test_labels"])
        index = np.arange(n)
        np.savez_compressed(os.path.join(stage, "subset.npz"), images=x[index], labels=y[index].astype(np.uint8),
                            index=index)
        return {"kind": "images", "file": "subset.npz", "rotation": made["protocol"]["rotation"],
                "seed": made["seed"], "n_file": int(len(x)), "input_res": made["input_res"],
                "band_limit": int(made["protocol"].get("band_limit", 0) or 0),
                "n": int(n), "source": made["source"]["test_images"]}
    from spherical_cnn.data import records
    from spherical_cnn import datasets
    files = datasets.list_record_files(args.dset_dir)["test"]
    if not files:
        raise UserError("{}: no test records for the subset".format(args.dset_dir))
    n = a.subset_size or 100
    recs = []
    for path in files:
        for r in records.iter_records(path):
            recs.append(r)
            if len(recs) >= n:
                break
    records.write_records(os.path.join(stage, "subset.tfrecord"), recs)
    return {"kind": "records", "file": "subset.tfrecord", "n": len(recs),
            "source": os.path.basename(files[0])}


def main(argv=None):
    a = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from spherical_cnn import pretrained, training
    logdir = a.logdir
    if not os.path.isdir(logdir):
        raise UserError("{}: no such run folder".format(logdir))
    final = os.path.join(a.dest, a.name)
    with AtomicFolder(final, overwrite=a.overwrite, what="pretrained model folder",
                      holder="shipping", noun="pretrained model") as out:
        stage = out.stage
        model_path = os.path.join(logdir, training.EXPORT_FILE)
        if os.path.exists(model_path):
            shutil.copy(model_path, os.path.join(stage, "model.keras"))
            args = training.load_flags(logdir, {"test_only": True, "from_scratch": False})
        else:
            args = export_from_checkpoint(logdir, os.path.join(stage, "model.keras"))
        relative_flags(os.path.join(logdir, training.FLAGS_FILE), os.path.join(stage, "flags.yaml"), a.name)
        classes = [p for p in (os.path.join(logdir, training.CLASSES_FILE),
                               os.path.join(args.dset_dir, "classes.txt")) if os.path.exists(p)]
        if classes:
            with open(classes[0]) as f:
                class_names = [l.strip() for l in f if l.strip()]
        else:  # as predict names them without a classes.txt
            class_names = ["class {}".format(i) for i in range(args.n_classes)]
        if a.classes:
            from spherical_cnn.data import images
            names = list(images.FASHION_MNIST_CLASSES) if a.classes == "fashion-mnist" else \
                [c.strip() for c in a.classes.split(",") if c.strip()]
            if len(names) != len(class_names):
                raise UserError("--classes names {} classes, the model has {}".format(len(names), len(class_names)))
            class_names = names
        with open(os.path.join(stage, "classes.txt"), "w") as f:
            f.write("".join(c + "\n" for c in class_names))
        if os.path.exists(os.path.join(logdir, training.INPUT_FILE)):
            shutil.copy(os.path.join(logdir, training.INPUT_FILE), os.path.join(stage, training.INPUT_FILE))
        if a.test_accuracy is not None:
            acc, test_set, all_tests = a.test_accuracy, "test set", {}
        else:
            acc, test_set, all_tests = test_figures(logdir)
        command = a.command
        if command is None and os.path.exists(os.path.join(logdir, "command.txt")):
            command = open(os.path.join(logdir, "command.txt")).read().strip()
        if command is None:
            command = "scripts/train.py " + " ".join(
                "--{} {}".format(k, v) for k, v in sorted(vars(args).items()))
        revision = a.revision
        if revision is None and os.path.exists(os.path.join(logdir, "revision.txt")):
            revision = open(os.path.join(logdir, "revision.txt")).read().strip()
        study = study_figures(a)
        subset = make_subset(a, args, stage)
        t0 = time.time()
        sub_acc, n = pretrained.evaluate(stage, subset)
        subset.update(accuracy=sub_acc, n=n)
        meta = {"name": a.name, "description": a.description,
                "input": "images" if subset["kind"] == "images" else "meshes",
                "classes": class_names, "input_res": args.input_res, "model": args.model,
                "test_accuracy": acc, "test_set": a.test_set or test_set, "test_accuracies": all_tests,
                "command": command, "revision": revision or git_revision(),
                "shipped": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "shipped_by": "tools/ship_pretrained.py", "subset": subset}
        if study:
            meta["study"] = study
        members = ensemble_members(logdir)
        if members:
            meta["ensemble"] = members
        if subset["kind"] == "images":
            import numpy as np
            with np.load(os.path.join(stage, subset["file"])) as d:
                meta["image_shape"] = list(d["images"].shape[1:])
        meta["sha256"] = pretrained.checksums(stage)  # verified before the model is loaded
        with open(os.path.join(stage, pretrained.META_FILE), "w") as f:
            json.dump(meta, f, indent=1)
        os.chmod(stage, 0o755)
    size = sum(os.path.getsize(os.path.join(final, f)) for f in os.listdir(final))
    print("shipped {} to {} ({:.2f} MB): test accuracy {:.4f} ({}){}; subset of {} {:.4f} in {:.0f} s".format(
        a.name, final, size / 1e6, acc, meta["test_set"], pretrained.study_text(meta), n, sub_acc,
        time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
