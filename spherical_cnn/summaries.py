"""TensorBoard summaries of a training run.

Scalars: ``train_acc``, each loss term (``loss/total``, ``loss/cross_entropy``,
``loss/extra``, ``loss/triplet``, ``loss/regularization``), ``learning_rate``,
``valid_acc``; histograms of every weight (``weights/...``) and of each
convolution block's activations (``activations/...``); the validation
confusion matrix as an image (``valid_confusion``): class names on both axes,
counts in the cells, coloured by the fraction of each true class, with a
colour bar (rendered with matplotlib's Agg backend).
"""
import io

import numpy as np
import tensorflow as tf


CONFUSION_DPI = 80


def confusion_figure_size(n_classes):
    """Figure size in inches: room for the class names, growing with the number of classes."""
    side = min(4.0 + 0.32 * n_classes, 18.0)
    return side + 1.2, side


def confusion_image(confusion, class_names=None, title="validation confusion", dpi=CONFUSION_DPI):
    """The confusion matrix as an RGB ``(1, H, W, 3)`` uint8 image for ``tf.summary.image``.

    Rows are true classes, columns predicted ones; each cell shows its count and
    is coloured by the count's fraction of its row (true class).
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    conf = np.asarray(confusion, dtype=np.int64)
    n = conf.shape[0]
    names = list(class_names) if class_names is not None and len(class_names) == n \
        else [str(i) for i in range(n)]
    rows = conf.sum(axis=1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)

    fig = Figure(figsize=confusion_figure_size(n), dpi=dpi)
    ax = fig.add_axes((0.16, 0.16, 0.72, 0.76))  # fixed margins for the names (tight_layout is slow)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), names, rotation=90)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("{} ({} samples, accuracy {:.3f})".format(
        title, int(conf.sum()), float(np.trace(conf) / max(conf.sum(), 1))))
    fontsize = max(4, min(10, int(200 / max(n, 1))))
    for i in range(n):
        for j in range(n):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if frac[i, j] > 0.5 else "black")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    image = tf.io.decode_png(buf.getvalue(), channels=3).numpy()
    return image[None]


class RunSummaries:
    """Writes the run's summaries; a no-op writer on non-chief workers."""

    def __init__(self, logdir, enabled=True):
        self.writer = tf.summary.create_file_writer(logdir) if enabled else tf.summary.create_noop_writer()

    def scalars(self, values, step):
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, float(value))

    def histograms(self, model, activations, step):
        """Weights of ``model`` and a dict ``{block name: activation array}``."""
        with self.writer.as_default(step=step):
            for w in model.weights:
                tf.summary.histogram("weights/" + w.path, np.asarray(w.numpy()))
            for name, value in activations.items():
                tf.summary.histogram("activations/" + name, np.asarray(value))

    def confusion(self, confusion, step, class_names=None, name="valid_confusion"):
        """The confusion matrix image (see :func:`confusion_image`) at ``step``."""
        with self.writer.as_default(step=step):
            tf.summary.image(name, confusion_image(confusion, class_names))

    def flush(self):
        self.writer.flush()
