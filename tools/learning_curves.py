#!/usr/bin/env python3
"""Learning curves of training runs, from their TensorBoard scalars, as one PNG.

  tools/learning_curves.py RUN [RUN ...] --out docs/figures/curves.png [--labels a,b]

Each RUN is a training log directory (``spherical-cnn-train --logdir``, or a run
folder of the rotation study): its ``events.out.*`` files hold ``train_acc``,
``valid_acc`` (validation accuracy; with ``--skip_val`` the training accuracy
again) and ``learning_rate`` per epoch. One panel per scalar, one line per run;
``--json`` also writes the values read.
"""
import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from spherical_cnn.errors import UserError, run_cli  # noqa: E402

TAGS = ("train_acc", "valid_acc", "learning_rate")


def read_scalars(logdir, tags=TAGS):
    """``{tag: [(epoch, value), ...]}`` of the scalar summaries in ``logdir``'s event files,
    sorted by epoch (the last value written wins for an epoch written twice, e.g. by a
    resumed run)."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2
    files = sorted(glob.glob(os.path.join(glob.escape(logdir), "events.out.*")))
    if not files:
        raise UserError("{}: no TensorBoard event files (events.out.*) in this folder".format(logdir))
    out = {t: {} for t in tags}
    for path in files:
        for raw in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(raw.numpy())
            for v in event.summary.value:
                if v.tag in out:
                    value = v.simple_value if v.HasField("simple_value") else \
                        float(tf.make_ndarray(v.tensor))
                    out[v.tag][int(event.step)] = float(value)
    return {t: sorted(d.items()) for t, d in out.items()}


def plot(curves, labels, path, title=None):
    """One panel per tag of ``curves`` (``[{tag: [(epoch, value)]}]`` per run)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(TAGS), figsize=(4.2 * len(TAGS), 3.6), dpi=110)
    for ax, tag in zip(axes, TAGS):
        for run, label in zip(curves, labels):
            if run[tag]:
                e, v = zip(*run[tag])
                ax.plot(e, v, marker=".", label=label)
        ax.set_title(tag)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if tag == "learning_rate":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="training log directories")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--labels", default=None, help="comma-separated names of the runs (default: their folders)")
    p.add_argument("--title", default=None)
    p.add_argument("--json", default=None, help="also write the values read to this JSON file")
    a = p.parse_args(argv)
    labels = a.labels.split(",") if a.labels else [os.path.relpath(r) for r in a.runs]
    if len(labels) != len(a.runs):
        raise UserError("--labels names {} runs, {} given".format(len(labels), len(a.runs)))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    curves = [read_scalars(r) for r in a.runs]
    plot(curves, labels, a.out, a.title)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({label: c for label, c in zip(labels, curves)}, f, indent=1)
    print("wrote {}".format(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="learning_curves.py"))
