"""Batch-norm statistics recomputed for the current weights ("precise batch norm").

A batch norm normalises with the statistics of each training batch, but at
inference it uses running averages (momentum 0.99: about the last 100 steps).
While the weights still move fast (a high learning rate, short epochs) those
averages describe weights that no longer exist, and inference accuracy can be
far below training accuracy: a spherical CNN on spherical Fashion-MNIST after
3 epochs at learning rate 0.002 validated at 28 % with the running averages
and at 80 % with recomputed statistics (training accuracy 79 %; docs/real-data.md).

:func:`recompute` replaces every batch norm's moving mean and variance by the
statistics of its input over a number of training batches, with the weights
frozen and the layers before it normalising as in training (Wu & Johnson,
"Rethinking 'Batch' in BatchNorm", 2021). Nothing else changes: the weights,
and so training itself, are untouched.
"""
from __future__ import annotations

import numpy as np


def batch_norm_layers(model):
    """The batch-norm layers of ``model`` (nested models included), in call order."""
    import keras
    return [l for l in model._flatten_layers(include_self=False)
            if isinstance(l, keras.layers.BatchNormalization)]


class Recomputer:
    """Recomputes the batch norms' moving statistics of ``model`` (see :func:`recompute`).

    Build it once per model: the probe that reads each batch norm's input is
    compiled on the first call and reused.

    Args:
        model: a built Keras model.
        strategy: the ``tf.distribute`` strategy the model was built under (None: the
            default one); batches are per-replica batches of a distributed dataset then.
    """

    def __init__(self, model, strategy=None):
        import keras
        import tensorflow as tf

        self.layers = [l for l in batch_norm_layers(model) if not l.renorm]
        self.strategy = strategy or tf.distribute.get_strategy()
        self._step = None
        if not self.layers:
            return
        probe = keras.Model(model.inputs, [l.input for l in self.layers])
        strategy = self.strategy

        def replica_moments(x):
            feats = probe(x, training=True)
            feats = feats if isinstance(feats, (list, tuple)) else [feats]
            out = []
            for layer, f in zip(self.layers, feats):
                f = tf.cast(f, tf.float32)
                axes = [a for a in range(len(f.shape)) if a != layer.axis % len(f.shape)]
                mean, var = tf.nn.moments(f, axes)
                out += [mean, var, tf.square(mean)]
            return out

        @tf.function
        def step(x):
            per_replica = strategy.run(replica_moments, args=(x,))
            return [strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for v in per_replica]

        self._step = step

    def __call__(self, batches, max_batches):
        """Set the moving statistics from the first ``max_batches`` of ``batches``.

        ``batches`` yields ``(x, y)`` or ``x``. Returns the number of batches used
        (0: nothing changed, e.g. a model without batch norm).
        """
        if not self.layers or max_batches <= 0:
            return 0
        sums, count = None, 0
        for batch in batches:
            if count >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            moments = [v.numpy().astype(np.float64) for v in self._step(x)]
            sums = moments if sums is None else [s + m for s, m in zip(sums, moments)]
            count += 1
        if not count:
            return 0
        for i, layer in enumerate(self.layers):
            mean, var, mean_sq = (s / count for s in sums[3 * i: 3 * i + 3])
            # the variance over all batches: within batches plus between their means
            total_var = var + np.maximum(mean_sq - mean * mean, 0.0)
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(total_var.astype(layer.moving_variance.dtype))
        return count


def recompute(model, batches, max_batches, strategy=None):
    """Replace the moving mean and variance of every batch norm of ``model`` by the
    statistics of its input over the first ``max_batches`` of ``batches`` (batches
    ``(x, y)`` or ``x``, e.g. the training split); returns the number of batches used.

    Each batch goes through the model in training mode (each batch norm
    normalises with the batch's statistics, as in a training step); per channel,
    the mean is the mean of the batch means and the variance the mean of the
    batch variances plus the variance of the batch means, over all axes but the
    channel axis ((batch, azimuth, polar) for maps). Layers with ``renorm=True``
    are left alone (their running statistics are part of the normalisation).
    Weights are not changed. Build a :class:`Recomputer` instead to call it repeatedly.
    """
    return Recomputer(model, strategy)(batches, max_batches)
