"""Semi-hard triplet loss and the regularisation term against NumPy references."""
import numpy as np
import pytest

from spherical_cnn import losses


def triplet_reference(labels, emb, margin=1.0):
    """Loop-based semi-hard triplet loss with squared Euclidean distances."""
    n = len(labels)
    d = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    total, pairs = 0.0, 0
    for a in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            farther = [d[a, k] for k in negatives if d[a, k] > d[a, p]]
            if farther:
                neg = min(farther)
            elif negatives:
                neg = max(d[a, k] for k in negatives)
            else:
                neg = 0.0
            total += max(margin + d[a, p] - neg, 0.0)
            pairs += 1
    return total / pairs if pairs else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_triplet_loss_matches_reference(seed):
    rng = np.random.default_rng(seed)
    batch, dim = 12, 5
    labels = rng.integers(0, 4, size=batch)
    emb = rng.normal(size=(batch, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    got = float(losses.triplet_semihard_loss(labels, emb.astype("float32")))
    np.testing.assert_allclose(got, triplet_reference(labels, emb), rtol=1e-5, atol=1e-6)


def test_triplet_loss_without_positives_is_zero():
    emb = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    labels = np.arange(6)
    assert float(losses.triplet_semihard_loss(labels, emb)) == 0.0
    assert triplet_reference(labels, emb) == 0.0


def test_triplet_loss_without_negatives_matches_reference():
    emb = np.random.default_rng(1).normal(size=(5, 3))
    labels = np.zeros(5, dtype=int)
    got = float(losses.triplet_semihard_loss(labels, emb.astype("float32")))
    np.testing.assert_allclose(got, triplet_reference(labels, emb), rtol=1e-5)


def test_triplet_loss_is_zero_for_well_separated_classes():
    # Two tight clusters far apart (squared distance 4 > margin): no violation.
    emb = np.array([[1, 0], [1, 0.01], [-1, 0], [-1, 0.01]], dtype="float32")
    assert float(losses.triplet_semihard_loss(np.array([0, 0, 1, 1]), emb)) == pytest.approx(0.0, abs=1e-6)


def test_cross_entropy_matches_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(7, 5)).astype("float32")
    labels = rng.integers(0, 5, size=7)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -logp[np.arange(7), labels]
    np.testing.assert_allclose(np.asarray(losses.softmax_cross_entropy(labels, logits)), expected,
                               rtol=1e-5)


def test_regularizer_factor_reproduces_original_term():
    import keras
    rng = np.random.default_rng(3)
    kernels = [rng.normal(size=(2, 3, 4)) for _ in range(5)]
    weight = 0.3
    # original: weight / n * sum of l2_loss, l2_loss = sum(w^2) / 2
    original = weight / len(kernels) * sum((w ** 2).sum() / 2 for w in kernels)
    reg = keras.regularizers.L2(losses.l2_regularizer_factor(weight, len(kernels)))
    ours = sum(float(reg(keras.ops.convert_to_tensor(w))) for w in kernels)
    np.testing.assert_allclose(ours, original, rtol=1e-5)
    with pytest.raises(ValueError):
        losses.l2_regularizer_factor(1.0, 0)


def smoothed_cross_entropy_reference(labels, logits, e):
    """-sum_k q_k log softmax(logits)_k with q = (1 - e) one_hot(label) + e / n_classes."""
    logits = logits.astype("float64")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    q = np.full(logits.shape, e / logits.shape[1])
    q[np.arange(len(labels)), labels] += 1.0 - e
    return -(q * log_p).sum(axis=1)


@pytest.mark.parametrize("e", [0.0, 0.1, 0.5])
def test_softmax_cross_entropy_with_label_smoothing_matches_reference(e):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, size=9)
    logits = rng.normal(scale=3.0, size=(9, 5)).astype("float32")
    got = np.asarray(losses.softmax_cross_entropy(labels, logits, label_smoothing=e))
    np.testing.assert_allclose(got, smoothed_cross_entropy_reference(labels, logits, e), rtol=1e-5)
