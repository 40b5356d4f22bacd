"""Sign-combination classes for S_exp: sign label <-> sign vector.

A target y on S^{d-1} is split into its absolute values |y| (regressed) and the
signs of its components (classified). With ``fix_first=False`` there are 2^d
classes, one per sign combination. With ``fix_first=True`` the first component
is taken non-negative (quaternions: q and -q are the same rotation), so only the
last d-1 signs are classified: 2^(d-1) classes.

Label order (same as the original code's ``itertools.product((-1, 1), ...)``):
the free components, read left to right, are the bits of the label, most
significant first, with bit 1 meaning "+". E.g. d=4, fix_first=True:
label 0 = (+, -, -, -), label 7 = (+, +, +, +).

A zero component counts as positive. With ``fix_first=True``, a vector whose
first component is negative is first flipped to -y (its canonical form) before
its label is taken.

NumPy functions take/return ``(..., d)`` arrays; the ``*_ops`` variants use
keras.ops and work inside models and losses.
"""
import itertools

import keras
import numpy as np
from keras import ops


def num_sign_classes(dim, fix_first=False):
    """Number of sign classes: 2^dim, or 2^(dim-1) with the first sign fixed."""
    _check_dim(dim)
    return 2 ** (dim - 1 if fix_first else dim)


def sign_table(dim, fix_first=False):
    """All sign vectors, ``(num_classes, dim)`` float32 of +-1; row k is label k."""
    _check_dim(dim)
    n_free = dim - 1 if fix_first else dim
    rows = list(itertools.product((-1.0, 1.0), repeat=n_free))
    if fix_first:
        rows = [(1.0,) + r for r in rows]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)


def canonicalize(y):
    """Flip rows of ``(..., d)`` so that the first component is >= 0 (q ~ -q)."""
    y = np.asarray(y)
    s = np.where(y[..., :1] < 0, -1.0, 1.0).astype(y.dtype)
    return y * s


def sign_labels(y, fix_first=False):
    """Sign class labels of vectors ``(..., d)`` -> int64 ``(...)``."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim < 1:
        raise ValueError(f"sign_labels: expected an array (..., d), got shape {y.shape}")
    dim = y.shape[-1]
    _check_dim(dim)
    if fix_first:
        y = canonicalize(y)[..., 1:]
    positive = (y >= 0).astype(np.int64)
    weights = 2 ** np.arange(positive.shape[-1] - 1, -1, -1, dtype=np.int64)
    return positive @ weights


def label_signs(labels, dim, fix_first=False):
    """Sign vectors ``(..., dim)`` of labels ``(...)``."""
    labels = np.asarray(labels, dtype=np.int64)
    k = num_sign_classes(dim, fix_first)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"label_signs: labels must lie in [0, {k}) for dim={dim}, "
                         f"fix_first={fix_first}; got range [{labels.min()}, {labels.max()}]")
    return sign_table(dim, fix_first)[labels]


def fix_first_from_num_classes(dim, num_classes):
    """Infer ``fix_first`` from the number of sign logits (2^dim or 2^(dim-1))."""
    if num_classes == 2 ** dim:
        return False
    if num_classes == 2 ** (dim - 1):
        return True
    raise ValueError(f"{num_classes} sign logits do not fit dim={dim}: expected "
                     f"{2 ** dim} (all signs) or {2 ** (dim - 1)} (first sign fixed)")


# ---------------------------------------------------------------- keras.ops forms

def sign_labels_ops(y, fix_first=False):
    """keras.ops version of :func:`sign_labels`: ``(batch, d)`` -> int32 ``(batch,)``."""
    dim = y.shape[-1]
    _check_dim(dim)
    if fix_first:
        first = y[..., :1]
        y = ops.where(first < 0, -y, y)[..., 1:]
    positive = ops.cast(y >= 0, "int32")
    weights = ops.convert_to_tensor(2 ** np.arange(positive.shape[-1] - 1, -1, -1), dtype="int32")
    return ops.sum(positive * weights, axis=-1)


def label_signs_ops(labels, dim, fix_first=False):
    """keras.ops version of :func:`label_signs`: int ``(batch,)`` -> ``(batch, dim)``."""
    table = ops.convert_to_tensor(sign_table(dim, fix_first), dtype=keras.backend.floatx())
    return ops.take(table, ops.cast(labels, "int32"), axis=0)


def _check_dim(dim):
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dimension of the target vectors must be a positive int, got {dim!r}")
