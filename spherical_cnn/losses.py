"""Loss terms of the demo: softmax cross-entropy (optionally with label smoothing), the extra
branch loss, the within-batch semi-hard triplet loss and the L2 regularisation weighting.

Written with ``keras.ops`` so that they run on every Keras backend.
"""
import keras
from keras import ops


def softmax_cross_entropy(labels, logits, label_smoothing=0.0):
    """Per-example softmax cross-entropy.

    Args:
        labels: int tensor ``(batch,)`` of class indices.
        logits: float tensor ``(batch, n_classes)``.
        label_smoothing: ``e`` in [0, 1): the target distribution is ``1 - e`` on the label
            plus ``e / n_classes`` on every class (Szegedy et al. 2016); 0, the original's
            loss, is the one-hot target.

    Returns:
        float tensor ``(batch,)``.
    """
    if not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    targets = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype=logits.dtype)
    return keras.losses.categorical_crossentropy(targets, logits, from_logits=True,
                                                 label_smoothing=label_smoothing)


def pairwise_squared_distances(embeddings):
    """Squared Euclidean distances ``(batch, batch)`` between rows of ``embeddings``."""
    sq = ops.sum(ops.square(embeddings), axis=1)
    dist = sq[:, None] - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings)) + sq[None, :]
    dist = ops.maximum(dist, 0.0)
    # Exact zeros on the diagonal (rounding can leave tiny positive values).
    return dist * (1.0 - ops.eye(ops.shape(embeddings)[0], dtype=dist.dtype))


def triplet_semihard_loss(labels, embeddings, margin=1.0):
    """Semi-hard triplet loss over all anchor-positive pairs of a batch.

    This is the loss that the original demo took from ``tf.contrib`` (FaceNet,
    Schroff et al. 2015), written anew. Distances are squared Euclidean. For
    each anchor ``a`` and positive ``p`` (same label, ``p != a``) the negative
    is the closest one that is farther from ``a`` than ``p`` (semi-hard); if
    there is none, the farthest negative is used; if the anchor has no
    negative at all, the negative distance counts as 0. Each pair contributes
    ``max(margin + d(a, p) - d(a, n), 0)`` and the loss is their mean. A
    batch without any positive pair gives 0 (the original produced NaN and
    then replaced it by 0).

    Args:
        labels: int tensor ``(batch,)``.
        embeddings: float tensor ``(batch, dim)``; the demo l2-normalises them first.
        margin: the margin of the hinge.

    Returns:
        scalar loss.
    """
    labels = ops.reshape(labels, (-1,))
    dist = pairwise_squared_distances(embeddings)
    dtype = dist.dtype
    batch = ops.shape(dist)[0]

    same = ops.equal(labels[:, None], labels[None, :])
    positive_mask = ops.cast(same, dtype) - ops.eye(batch, dtype=dtype)
    negative_mask = 1.0 - ops.cast(same, dtype)

    big = ops.max(dist) + 1.0
    # [a, p, n]: n is a negative of a and farther from a than p is.
    farther = ops.cast(dist[:, None, :] > dist[:, :, None], dtype) * negative_mask[:, None, :]
    closest_farther = ops.min(dist[:, None, :] * farther + big * (1.0 - farther), axis=2)
    has_semihard = ops.max(farther, axis=2) > 0
    farthest_negative = ops.max(dist * negative_mask, axis=1)  # 0 when no negative
    negative_dist = ops.where(has_semihard, closest_farther, farthest_negative[:, None])

    hinge = ops.maximum(margin + dist - negative_dist, 0.0) * positive_mask
    n_pairs = ops.sum(positive_mask)
    return ops.where(n_pairs > 0, ops.sum(hinge) / ops.maximum(n_pairs, 1.0), ops.zeros((), dtype))


def l2_regularizer_factor(regularization_weight, n_regularized):
    """Factor of ``keras.regularizers.L2`` that reproduces the original's term.

    The original adds ``regularization_weight / n * sum_i l2_loss(W_i)`` with
    ``l2_loss(W) = sum(W**2) / 2`` over the ``n`` convolution kernels; a Keras
    ``L2(f)`` adds ``f * sum(W**2)`` per kernel, hence
    ``f = regularization_weight / (2 n)``.
    """
    if n_regularized <= 0:
        raise ValueError("n_regularized must be positive, got {}".format(n_regularized))
    return float(regularization_weight) / (2.0 * n_regularized)
