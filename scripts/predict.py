#!/usr/bin/env python3
"""Classify records or meshes with a model exported by scripts/train.py.

    python3 scripts/predict.py --logdir logs/synthetic --meshes chair.off table.obj
    python3 scripts/predict.py --logdir logs/synthetic --records data/synthetic-32/test_000.tfrecord

Reads ``LOGDIR/model.keras`` and the flags saved with it (resolution, dtype,
``--mag_ang``), and prints the top classes with their probabilities. For
records with labels, the accuracy is printed at the end.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def load(logdir):
    import keras
    from spherical_cnn import training
    path = os.path.join(logdir, training.EXPORT_FILE)
    if not os.path.exists(path):
        sys.exit("error: no exported model at {} (train with scripts/train.py --logdir {} first)"
                 .format(path, logdir))
    args = training.load_flags(logdir, {"test_only": True})
    model = keras.models.load_model(path)
    names_file = os.path.join(logdir, training.CLASSES_FILE)
    if os.path.exists(names_file):
        names = [l.strip() for l in open(names_file) if l.strip()]
    else:
        names = ["class {}".format(i) for i in range(args.n_classes)]
    return args, model, names


def record_inputs(paths, args):
    """(maps (N, res, res, nchannels) in the records' dtype, labels, names) from TFRecord files."""
    from spherical_cnn.data import records
    res, nch = args.input_res, args.nchannels
    xs, ys, ids = [], [], []
    for path in paths:
        if not os.path.exists(path):
            sys.exit("error: --records file {} does not exist".format(path))
        for i, raw in enumerate(records.iter_records(path)):
            d = records.decode_example(raw, dtype=args.dtype)
            x = d["x"]
            if "a" in d:
                x = np.concatenate([x.reshape(res, res, nch - 1), d["a"].reshape(res, res, 1)], -1)
            if x.size != res * res * nch:
                sys.exit("error: {} record {}: {} values, expected {} for --input_res {} --nchannels {}"
                         .format(path, i, x.size, res * res * nch, res, nch))
            xs.append(x.reshape(res, res, nch))
            ys.append(d["y"])
            ids.append(d.get("fname") or "{}#{}".format(os.path.basename(path), i))
    return np.stack(xs), np.array(ys), ids


def mesh_inputs(paths, args):
    """Ray-cast each mesh on the training resolution's grid (no rotation)."""
    from spherical_cnn.data import meshes, raycast
    xs = []
    for path in paths:
        try:
            mesh = meshes.load_mesh(path)
        except (OSError, ValueError) as err:
            sys.exit("error: --meshes {}: {}".format(path, err))
        xs.append(raycast.mesh_to_sphere(mesh, args.input_res, channels=True))
    return np.stack(xs), None, list(paths)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logdir", required=True, help="log directory of a finished training run")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--records", nargs="+", help="TFRecord files in the training data's format")
    src.add_argument("--meshes", nargs="+", help="mesh files (.off, .obj, .stl, .ply)")
    p.add_argument("--top_k", type=int, default=1, help="how many classes to print per input")
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()

    from spherical_cnn.datasets import to_model_input
    args, model, names = load(a.logdir)
    if a.records:
        x, y, ids = record_inputs(a.records, args)
    else:
        x, y, ids = mesh_inputs(a.meshes, args)
    x = np.asarray(to_model_input(x, args.mag_ang))
    logits = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + a.batch])["logits"])
                             for i in range(0, len(x), a.batch)])
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    top = np.argsort(-prob, axis=1)[:, :a.top_k]
    for i, name in enumerate(ids):
        guesses = ", ".join("{} ({:.3f})".format(names[k], prob[i, k]) for k in top[i])
        truth = "" if y is None else "  true: {}".format(names[y[i]] if y[i] < len(names) else y[i])
        print("{}: {}{}".format(name, guesses, truth))
    if y is not None:
        print("accuracy: {:.4f} over {} records".format(float(np.mean(top[:, 0] == y)), len(y)))


if __name__ == "__main__":
    main()
