#!/usr/bin/env python3
"""Accuracy on the R test set of an image rotation study, by where each test image's rotation puts
the image centre (polar angle of R @ (0, 0, -1); 180 deg = the south pole, where NR images sit),
then per class on both test sets.

  python tools/image_study_by_latitude.py logs/fmnist-study

Reads <study>/data/images/r/test_000.tfrecord (the rotations) and every run's study_run.json
(per-image predictions on the test sets); prints two markdown tables, mean over the seeds.
"""
import os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spherical_cnn.data import records, rotations
from spherical_cnn.json_files import read_json
study = sys.argv[1]
recs = [records.decode_example(r) for r in records.iter_records(os.path.join(study, "data/images/r/test_000.tfrecord"))]
q = np.stack([r["rotation"] for r in recs]).astype(np.float64)
centre = rotations.quaternion_to_matrix(q) @ np.array([0, 0, -1.0])
polar = np.degrees(np.arccos(np.clip(centre[:, 2], -1, 1)))
fname = [r["fname"] for r in recs]
bins = [(0, 45), (45, 90), (90, 135), (135, 180)]
models = sorted(os.listdir(os.path.join(study, "runs")))


def predictions(model, train, test):
    """Per-image predictions on the ``test`` set of every seed's ``train`` run of ``model``
    (finished runs only; each study_run.json read once)."""
    out = []
    for seed in sorted(os.listdir(os.path.join(study, "runs", model))):
        p = (load(os.path.join(study, "runs", model, seed, train, "study_run.json")) or {}).get(test)
        if p is not None:
            out.append(p)
    return out


_runs = {}


def load(path):
    if path not in _runs:
        run = read_json(path) or {}
        _runs[path] = (run.get("result") or {}).get("predictions")
    return _runs[path]


rows = []
for model in models:
    for train in ("nr", "r"):
        accs = {b: [] for b in bins}
        for p in predictions(model, train, "r"):  # none for the flat reference (no R test set)
            assert p["fname"] == fname
            ok = np.array(p["pred"]) == np.array(p["label"])
            for lo, hi in bins:
                sel = (polar >= lo) & (polar < hi)
                accs[(lo, hi)].append(ok[sel].mean())
        if accs[bins[0]]:
            rows.append((model, train.upper(), [100 * np.mean(accs[b]) for b in bins], len(accs[bins[0]])))
print("| model | trained on | " + " | ".join("centre at polar {}-{} deg (n={})".format(lo, hi, int(((polar >= lo) & (polar < hi)).sum())) for lo, hi in bins) + " | seeds |")
print("|---|---|" + "---:|" * len(bins) + "---:|")
for m, t, a, n in rows:
    print("| {} | {} | {} | {} |".format(m, t, " | ".join("{:.1f}".format(v) for v in a), n))

classes = open(os.path.join(study, "data/images/r/classes.txt")).read().split()
print()
print("| model | train/test | " + " | ".join(classes) + " | seeds |")
print("|---|---|" + "---:|" * len(classes) + "---:|")
for model in models:
    for train in ("nr", "r"):
        for test in ("nr", "r"):
            per_class = []
            for p in predictions(model, train, test):
                label, pred = np.array(p["label"]), np.array(p["pred"])
                per_class.append([np.mean(pred[label == c] == c) for c in range(len(classes))])
            if per_class:
                print("| {} | {}/{} | {} | {} |".format(model, train.upper(), test.upper(), " | ".join(
                    "{:.1f}".format(100 * v) for v in np.mean(per_class, 0)), len(per_class)))
