"""Rotation invariance measured from per-record predictions (NumPy only).

A test set renders every test mesh under the same number R of rotations; each
record names its mesh (``fname``, the mesh path relative to the mesh root) and
its rotation index (``idrot``, 0 .. R-1). From the predicted class of every
record:

- ``accuracy``: fraction of records classified correctly;
- ``consistency``: fraction of test meshes whose predicted class is the same
  for all R of their rotations (right or wrong alike);
- per-rotation accuracy ``acc[r]``: accuracy on the r-th rotation of every
  test mesh (R values). Rotation r of one mesh has nothing to do with
  rotation r of another (each mesh draws its own), so the R values are R
  accuracies on test sets of the same meshes under different random rotations;
- ``spread_std``: their standard deviation (population, ``ddof=0``);
  ``spread_min``, ``spread_max``, ``spread_range = max - min``.

Accuracies, consistency and spreads are fractions in [0, 1] (the tables print
percent and percentage points).

Over training seeds, :func:`mean_std` gives the mean and the sample standard
deviation (``ddof=1``; None for a single seed).
"""
import numpy as np


def prediction_grid(fnames, idrots, labels, preds):
    """Per-record values -> per-mesh arrays, meshes sorted by name.

    Args:
        fnames: mesh name of each record (str or bytes).
        idrots: rotation index of each record (int).
        labels: true class of each record.
        preds: predicted class of each record.

    Returns:
        ``(meshes, label, pred)``: ``meshes`` the sorted list of names, ``label``
        ``(n_meshes,)`` and ``pred`` ``(n_meshes, R)`` with ``pred[i, r]`` the
        prediction for rotation r of mesh i.

    Raises:
        ValueError: lengths differ, a record has no mesh name, a mesh carries two
            labels, a (mesh, rotation) pair repeats, or meshes do not all have
            the rotations 0 .. R-1.
    """
    n = len(fnames)
    if not (len(idrots) == len(labels) == len(preds) == n):
        raise ValueError("fnames, idrots, labels and preds must have the same length, got {}, {}, {}, {}"
                         .format(n, len(idrots), len(labels), len(preds)))
    if n == 0:
        raise ValueError("no record to measure")
    names = [f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f) for f in fnames]
    if any(not f for f in names):
        raise ValueError("records without a mesh name (fname): rotations cannot be grouped by mesh")
    meshes = sorted(set(names))
    row = {m: i for i, m in enumerate(meshes)}
    idrots = np.asarray(idrots, dtype=np.int64)
    n_rot = int(idrots.max()) + 1
    if idrots.min() < 0 or n != len(meshes) * n_rot:
        raise ValueError("{} records for {} meshes: expected rotations 0..{} of every mesh ({} records)"
                         .format(n, len(meshes), n_rot - 1, len(meshes) * n_rot))
    label = np.full(len(meshes), -1, dtype=np.int64)
    pred = np.full((len(meshes), n_rot), -1, dtype=np.int64)
    for name, r, y, p in zip(names, idrots, labels, preds):
        i = row[name]
        if pred[i, r] != -1:
            raise ValueError("mesh {} rotation {} appears twice".format(name, r))
        if label[i] not in (-1, y):
            raise ValueError("mesh {} carries two labels ({} and {})".format(name, label[i], y))
        label[i], pred[i, r] = y, p
    return meshes, label, pred


def consistency(pred):
    """Fraction of rows (meshes) of ``pred`` ``(n_meshes, R)`` whose entries are all equal."""
    pred = np.asarray(pred)
    return float(np.mean(np.all(pred == pred[:, :1], axis=1)))


def per_rotation_accuracy(pred, label):
    """``(R,)`` accuracy of column r of ``pred`` ``(n_meshes, R)`` against ``label`` ``(n_meshes,)``."""
    pred, label = np.asarray(pred), np.asarray(label)
    return np.mean(pred == label[:, None], axis=0)


def spread(acc):
    """``{'std' (ddof=0), 'min', 'max', 'range'}`` of per-rotation accuracies ``acc`` ``(R,)``."""
    acc = np.asarray(acc, dtype=np.float64)
    lo, hi = float(acc.min()), float(acc.max())
    return {"std": float(acc.std()), "min": lo, "max": hi, "range": hi - lo}


def invariance_metrics(fnames, idrots, labels, preds):
    """All measures of the module docstring for one test set (per-record inputs as
    :func:`prediction_grid`).

    Returns:
        dict: ``accuracy``, ``consistency``, ``per_rotation_accuracy`` (list of R),
        ``spread_std``, ``spread_min``, ``spread_max``, ``spread_range``,
        ``n_meshes``, ``n_rotations``.
    """
    _, label, pred = prediction_grid(fnames, idrots, labels, preds)
    acc = per_rotation_accuracy(pred, label)
    s = spread(acc)
    return {"accuracy": float(np.mean(pred == label[:, None])), "consistency": consistency(pred),
            "per_rotation_accuracy": [float(a) for a in acc],
            "spread_std": s["std"], "spread_min": s["min"], "spread_max": s["max"],
            "spread_range": s["range"], "n_meshes": int(pred.shape[0]), "n_rotations": int(pred.shape[1])}


def mean_std(values):
    """``{'mean', 'std', 'values'}`` of per-seed values; ``std`` has ``ddof=1`` (None for one value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no value to average")
    std = float(v.std(ddof=1)) if v.size > 1 else None
    return {"mean": float(v.mean()), "std": std, "values": [float(x) for x in v]}


def aggregate_seeds(per_seed, keys):
    """``[metrics dict per seed]`` -> ``{key: mean_std([d[key] for d in per_seed])}`` for ``keys``."""
    return {k: mean_std([d[k] for d in per_seed]) for k in keys}
