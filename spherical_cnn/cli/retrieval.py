"""``spherical-cnn-retrieval`` / ``scripts/retrieval.py``: SHREC'17-style retrieval metrics of a run.

    spherical-cnn-retrieval --logdir logs/synthetic-triplet [--split test] [--out DIR]

Embeds one split with the run's ``descriptor`` output (``LOGDIR/model.keras``
and the flags saved with it), ranks every item against all others and writes
``DIR/retrieval.json`` (metrics, settings) and ``DIR/precision_recall.png``.
Definitions: spherical_cnn/retrieval.py.
"""
import argparse
import json
import os

from . import common

DEFAULT_MAX_RETRIEVED = 1000  # = spherical_cnn.studies.retrieval.DEFAULT_MAX_RETRIEVED (SHREC's limit)


def _cutoff(text):
    if text == "class":
        return text
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError('must be "class" or a positive integer, got {!r}'.format(text))
    return k


def build_parser():
    p = common.command_parser(__doc__)
    p.add_argument("--logdir", required=True, help="a finished training run (model.keras + flags.yaml)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="split to rank")
    p.add_argument("--out", default=None, help="output folder (default LOGDIR/retrieval-SPLIT)")
    p.add_argument("--dset_dir", default=None, help="records folder (default: the run's --dset_dir)")
    p.add_argument("--cutoff", type=_cutoff, default="class",
                   help="'class' (items of the predicted class, SHREC'17 style) or K nearest items")
    p.add_argument("--max_retrieved", type=int, default=DEFAULT_MAX_RETRIEVED,
                   help="longest retrieval list (SHREC: 1000)")
    p.add_argument("--all_instances", action="store_true",
                   help="use every record; default: one instance (the first record) per mesh")
    p.add_argument("--batch", type=int, default=64, help="batch size of the embedding")
    return common.add_output_flags(p)


def parse_args(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    if a.max_retrieved < 1:
        p.error("--max_retrieved must be >= 1")
    return a


def main(argv=None):
    """Embed a split, compute the metrics, write JSON and PNG, print the table; returns 0."""
    a = parse_args(argv)
    common.quiet_tensorflow(a.verbose)
    import numpy as np
    from ..studies import retrieval
    args, model = retrieval.load_run(a.logdir)
    dset_dir = a.dset_dir or args.dset_dir
    if not os.path.isdir(dset_dir):
        raise FileNotFoundError("--dset_dir {} does not exist (give --dset_dir)".format(dset_dir))
    x, y, _ = retrieval.read_split(dset_dir, a.split, args, a.all_instances)
    desc, logits = retrieval.embed(model, x, args.mag_ang, a.batch)
    predicted = np.argmax(logits, axis=1)
    result = retrieval.evaluate(desc, y, predicted, a.cutoff, a.max_retrieved)
    result.update({"logdir": a.logdir, "split": a.split, "dset_dir": dset_dir,
                   "instances": "all" if a.all_instances else "one per mesh",
                   "classification_accuracy": float(np.mean(predicted == y)),
                   "descriptor_dim": int(desc.shape[1])})
    out = a.out or os.path.join(a.logdir, "retrieval-{}".format(a.split))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "retrieval.json"), "w") as f:
        json.dump(result, f, indent=1)
    retrieval.plot_precision_recall(
        result, os.path.join(out, "precision_recall.png"),
        title="{} {}: micro mAP {:.3f}".format(os.path.basename(os.path.normpath(a.logdir)), a.split,
                                               result["micro"]["map"]))
    print("{} queries ({}), retrieval list: {} (mean length {:.1f}); classification accuracy {:.4f}".format(
        result["n_queries"], result["instances"], result["cutoff"], result["mean_list_length"],
        result["classification_accuracy"]))
    print("|      |    P   |    R   |   F1   |   mAP  |  NDCG  |")
    for avg in ("micro", "macro"):
        r = result[avg]
        print("|{:6s}| {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} |".format(
            avg, r["precision"], r["recall"], r["f1"], r["map"], r["ndcg"]))
    print("written to {}/retrieval.json and precision_recall.png".format(out))
    return 0
