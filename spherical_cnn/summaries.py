"""TensorBoard summaries of a training run.

Scalars: ``train_acc``, each loss term (``loss/total``, ``loss/cross_entropy``,
``loss/extra``, ``loss/triplet``, ``loss/regularization``), ``learning_rate``,
``valid_acc``; histograms of every weight (``weights/...``) and of each
convolution block's activations (``activations/...``); the validation
confusion matrix as an image (``valid_confusion``).
"""
import numpy as np
import tensorflow as tf


def confusion_image(confusion, cell_pixels=8):
    """Row-normalised confusion matrix as a ``(1, H, W, 1)`` float image in [0, 1]."""
    conf = np.asarray(confusion, dtype=np.float32)
    rows = conf.sum(axis=1, keepdims=True)
    conf = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    conf = np.kron(conf, np.ones((cell_pixels, cell_pixels), dtype=np.float32))
    return conf[None, :, :, None]


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

    def confusion(self, confusion, step, name="valid_confusion"):
        with self.writer.as_default(step=step):
            tf.summary.image(name, confusion_image(confusion))

    def flush(self):
        self.writer.flush()
