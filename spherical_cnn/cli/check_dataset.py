"""Verify a dataset folder of TFRecords and print a per-split summary.

    spherical-cnn-check-dataset data/synthetic-32          # or python3 scripts/check_dataset.py
    spherical-cnn-check-dataset ~/data/m40-so3-64 @params/m40-64.txt

Every record of every ``train*/val*/test*.tfrecord`` file is checked against
the flags that will read it (record framing, byte sizes, label range, finite
values; see spherical_cnn/data/verify.py). Resolution, dtype and channels come
from the folder's manifest.json when it has one, else from the flags; flags
given explicitly are checked against the manifest. Training flags files
(``@params/...``) are accepted; flags that do not concern the data are ignored.
Exit status 0 when everything is readable, 2 at the first problem (named with
file and record index).
"""
import argparse
import dataclasses
import json
import os
import sys

from . import common

SPLITS = ("train", "val", "test")


def build_parser():
    p = common.command_parser(__doc__)
    p.add_argument("dset_dir", nargs="?", help="folder with train*/val*/test*.tfrecord "
                   "(default: --dset_dir of the flags files)")
    p.add_argument("--dset_dir", "-dd", dest="dset_dir_flag", default=None, help=argparse.SUPPRESS)
    p.add_argument("--input_res", "-res", type=int, default=None,
                   help="grid size n of the (n, n, channels) maps (default: manifest, else 32)")
    p.add_argument("--nchannels", type=int, default=None,
                   help="channels per map, counting an 'a' channel (default: manifest, else 1)")
    p.add_argument("--dtype", "-dt", default=None,
                   help="dtype of the raw x bytes (default: manifest, else float32)")
    p.add_argument("--n_classes", "-nc", type=int, default=None,
                   help="labels must be < this (default: classes.txt, else no check)")
    p.add_argument("--no_cache", action="store_true",
                   help="read every file even if it was verified before")
    p.add_argument("--json", default=None, help="also write the summary to this JSON file")
    return common.add_output_flags(p)


def _spec(a, dset_dir):
    from ..data import verify
    from .. import datasets
    manifest = {}
    path = os.path.join(dset_dir, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            manifest = json.load(f)
    names = datasets.read_class_names(dset_dir)
    n_classes = a.n_classes if a.n_classes is not None else (len(names) if names else None)
    spec = verify.RecordSpec(
        res=a.input_res if a.input_res is not None else int(manifest.get("input_res", 32)),
        nchannels=a.nchannels if a.nchannels is not None else int(manifest.get("nchannels", 1)),
        dtype=a.dtype or str(manifest.get("dtype", "float32")), n_classes=n_classes)
    verify.check_manifest(dset_dir, spec)
    return spec, names


def main(argv=None):
    a, _unknown = build_parser().parse_known_args(argv)  # flags of training params files ignored
    common.quiet_tensorflow(a.verbose)
    dset_dir = os.path.expanduser(a.dset_dir or a.dset_dir_flag or "")
    if not dset_dir:
        raise ValueError("give the dataset folder (DSET_DIR or --dset_dir)")
    if not os.path.isdir(dset_dir):
        raise FileNotFoundError("dataset folder {!r} does not exist".format(dset_dir))
    from ..data import verify
    from .. import datasets
    files = datasets.list_record_files(dset_dir)
    if not any(files.values()):
        raise FileNotFoundError("{}: no train*/val*/test*.tfrecord files".format(dset_dir))
    spec, names = _spec(a, dset_dir)
    print("checking {} ({}{})".format(dset_dir, spec.flags_text(),
                                      "" if spec.n_classes is None else " --n_classes {}".format(spec.n_classes)))
    summary = {}
    for split in SPLITS:
        if not files[split]:
            continue
        found = verify.verify_files(files[split], spec, use_cache=not a.no_cache,
                                    progress=sys.stderr.isatty(), label="verifying " + split)
        summary[split] = verify.summarize(found.values())
    print("{:6s} {:>6s} {:>9s} {:>8s} {:>11s}  {}".format("split", "files", "records", "classes",
                                                        "|x| range", "smallest / largest class"))
    for split, t in summary.items():
        counts = sorted(t["labels"].items(), key=lambda kv: kv[1])
        label = (lambda k: names[k] if names and k < len(names) else str(k))
        extremes = "{} {} / {} {}".format(label(counts[0][0]), counts[0][1], label(counts[-1][0]),
                                          counts[-1][1]) if counts else "-"
        rng = "{:.3g}..{:.3g}".format(t["abs_min"], t["abs_max"]) if t["records"] else "-"
        print("{:6s} {:6d} {:9d} {:8d} {:>11s}  {}".format(split, t["files"], t["records"],
                                                          len(t["labels"]), rng, extremes))
    problems = [s for s in ("train", "test") if not files[s]]
    if names:
        for split, t in summary.items():
            empty = [names[k] for k in range(len(names)) if k not in t["labels"]]
            if empty and split != "val":
                problems.append("{}: no record of class(es) {}".format(split, ", ".join(empty)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"dset_dir": dset_dir, "spec": dataclasses.asdict(spec),
                       "splits": {s: {**t, "labels": {str(k): v for k, v in t["labels"].items()}}
                                  for s, t in summary.items()}}, f, indent=1)
    if problems:
        for p in problems:
            print("problem: {}".format(p if ":" in p else "no {}*.tfrecord file".format(p)), file=sys.stderr)
        return 2
    print("ok: every record is readable with these flags")
    return 0
