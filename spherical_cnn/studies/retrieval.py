"""Shape retrieval with the trained descriptor, scored like SHREC'17.

The paper's second experiment (Esteves et al. 2018, SHREC'17 "Large-scale 3D
shape retrieval from ShapeNet Core55", perturbed set; micro mAP 0.685) ranks
shapes by the distance between the descriptors of a model trained with
``--triplet_loss``. This module computes that evaluation for any labelled set of
descriptors; the command is :mod:`spherical_cnn.cli.retrieval` (``scripts/retrieval.py``).

Definitions (our reading of the SHREC'16/'17 track reports, written anew; the
official evaluator is a Node.js script that is not used here):

* **Ranking.** Every item of the split is a query; the other items are ranked
  by the Euclidean distance between L2-normalised descriptors (the triplet loss
  is trained on L2-normalised descriptors), nearest first, ties broken by item
  index. The query itself is not part of its ranking.
* **Retrieval list** of query ``i`` (the SHREC protocol asks each method to
  return one list per query, at most 1000 items):
  ``cutoff='class'`` (default, as SHREC'17 entries built from a classifier
  did): the items whose *predicted* class (argmax of the logits) equals the
  query's predicted class, in ranking order, truncated to ``max_retrieved``;
  ``cutoff=K`` (an integer): the K nearest items.
* **Relevance** is binary: item ``j`` is relevant to query ``i`` if it has the
  same label. (SHREC's NDCG also grades by ShapeNet subcategory, which our data
  has not.) ``R_i`` = number of relevant items in the split other than ``i``;
  queries with ``R_i = 0`` are left out of every average.
* Per query, with list length ``n`` and ``h`` relevant items in the list:
  precision ``P = h / n`` (0 for an empty list); recall ``R = h / R_i``;
  ``F1 = 2 P R / (P + R)`` (0 if both are 0); average precision
  ``AP = (1 / R_i) * sum_k rel_k * P@k`` over the list positions ``k`` (``P@k``:
  precision of the first ``k`` items), so relevant items missing from the list
  count as precision 0; normalised discounted cumulative gain
  ``NDCG = DCG / IDCG`` with ``DCG = sum_k rel_k / D(k)``, ``D(1) = 1``,
  ``D(k) = log2(k)`` for ``k >= 2`` (the discount of the Princeton Shape
  Benchmark and the SHREC reports), and ``IDCG`` the DCG of the ideal list:
  ``min(R_i, L)`` relevant items first, where ``L`` is the list-length limit
  (``K`` or ``max_retrieved``).
* **Micro** average: the mean over all queries (each query weighs the same).
  **Macro** average: the mean over classes of the per-class mean over that
  class's queries (each class weighs the same). "mAP" is the (micro or macro)
  mean of AP.
* **Precision-recall curve**: for every query, over its full ranking,
  interpolated precision ``p(r) = max{P@k : R@k >= r}`` at recall levels
  ``r = 0, 0.05, ..., 1``, then the micro average over queries.

Arrays: ``descriptors`` ``(N, d)``, ``labels`` and ``predicted`` int ``(N,)``.
"""
import json
import os

import numpy as np

RECALL_LEVELS = np.linspace(0.0, 1.0, 21)
METRICS = ('precision', 'recall', 'f1', 'map', 'ndcg')
DEFAULT_MAX_RETRIEVED = 1000


def distance_matrix(descriptors, normalize=True):
    """Euclidean distances ``(N, N)`` between rows, after L2 normalisation if ``normalize``."""
    x = np.asarray(descriptors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f'descriptors must be (N, d) with N >= 2, got shape {x.shape}')
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def rankings(dist):
    """For each query ``i``, the other items by increasing distance (ties: lower index first); ``(N, N-1)``."""
    dist = np.asarray(dist)
    n = len(dist)
    order = np.argsort(dist, axis=1, kind='stable')
    return np.stack([row[row != i] for i, row in enumerate(order)]) if n else order


def retrieval_lists(ranking, cutoff='class', predicted=None, max_retrieved=DEFAULT_MAX_RETRIEVED):
    """The retrieved items of each query (see module docstring): a list of int arrays."""
    if cutoff == 'class':
        if predicted is None:
            raise ValueError("cutoff='class' needs the predicted classes")
        predicted = np.asarray(predicted)
        return [row[predicted[row] == predicted[i]][:max_retrieved] for i, row in enumerate(ranking)]
    k = int(cutoff)
    if k < 1:
        raise ValueError(f'the retrieval cut-off must be a positive integer or "class", got {cutoff!r}')
    return [row[:k] for row in ranking]


def _discounts(n):
    k = np.arange(1, n + 1, dtype=np.float64)
    return np.where(k < 2, 1.0, np.log2(np.maximum(k, 2)))


def query_metrics(lists, labels, list_limit):
    """Per-query precision, recall, F1, AP and NDCG (dict of ``(N,)`` arrays) and the
    boolean mask of queries that have at least one relevant item."""
    labels = np.asarray(labels)
    n_q = len(labels)
    counts = np.bincount(labels, minlength=labels.max() + 1)
    n_rel = counts[labels] - 1
    out = {m: np.zeros(n_q) for m in METRICS}
    for i, items in enumerate(lists):
        if n_rel[i] == 0:
            continue
        rel = (labels[items] == labels[i]).astype(np.float64)
        n, h = len(rel), rel.sum()
        p = h / n if n else 0.0
        r = h / n_rel[i]
        out['precision'][i], out['recall'][i] = p, r
        out['f1'][i] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        if n:
            p_at_k = np.cumsum(rel) / np.arange(1, n + 1)
            out['map'][i] = (rel * p_at_k).sum() / n_rel[i]
            dcg = (rel / _discounts(n)).sum()
        else:
            dcg = 0.0
        ideal = int(min(n_rel[i], list_limit))
        out['ndcg'][i] = dcg / (1.0 / _discounts(ideal)).sum()
    return out, n_rel > 0


def summarize(per_query, labels, valid=None):
    """Micro and macro averages ``{'micro': {metric: v}, 'macro': {...}}`` of per-query values."""
    labels = np.asarray(labels)
    valid = np.ones(len(labels), bool) if valid is None else np.asarray(valid)
    classes = np.unique(labels[valid])
    result = {'micro': {}, 'macro': {}}
    for m, v in per_query.items():
        v = np.asarray(v, dtype=np.float64)
        result['micro'][m] = float(v[valid].mean())
        result['macro'][m] = float(np.mean([v[valid & (labels == c)].mean() for c in classes]))
    return result


def precision_recall_curve(ranking, labels, levels=RECALL_LEVELS):
    """Micro-averaged interpolated precision at ``levels`` over the full rankings; ``(len(levels),)``."""
    labels = np.asarray(labels)
    curves = []
    for i, row in enumerate(ranking):
        rel = (labels[row] == labels[i]).astype(np.float64)
        if rel.sum() == 0:
            continue
        hits = np.cumsum(rel)
        prec = hits / np.arange(1, len(rel) + 1)
        rec = hits / rel.sum()
        # interpolated: best precision at any recall >= r
        best_after = np.maximum.accumulate(prec[::-1])[::-1]
        idx = np.searchsorted(rec, levels, side='left')
        curves.append(np.where(idx < len(rec), best_after[np.minimum(idx, len(rec) - 1)], 0.0))
    return np.mean(curves, axis=0)


def evaluate(descriptors, labels, predicted=None, cutoff='class', max_retrieved=DEFAULT_MAX_RETRIEVED,
             normalize=True):
    """SHREC'17-style retrieval metrics (see module docstring).

    Returns a dict: ``micro`` and ``macro`` (precision, recall, f1, map, ndcg),
    ``pr_curve`` (``recall`` levels and micro ``precision``), ``n_queries``,
    ``mean_list_length`` and the settings.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(descriptors):
        raise ValueError(f'{len(descriptors)} descriptors but {len(labels)} labels')
    ranking = rankings(distance_matrix(descriptors, normalize))
    lists = retrieval_lists(ranking, cutoff, predicted, max_retrieved)
    limit = max_retrieved if cutoff == 'class' else int(cutoff)
    per_query, valid = query_metrics(lists, labels, limit)
    if not valid.any():
        raise ValueError('no query has a relevant item (every class has a single item)')
    result = summarize(per_query, labels, valid)
    result.update({
        'pr_curve': {'recall': [round(float(r), 6) for r in RECALL_LEVELS],
                     'precision': [float(p) for p in precision_recall_curve(ranking, labels)]},
        'n_queries': int(valid.sum()), 'n_items': int(len(labels)),
        'mean_list_length': float(np.mean([len(l) for l in lists])),
        'cutoff': cutoff if cutoff == 'class' else int(cutoff), 'max_retrieved': int(max_retrieved),
        'distance': 'euclidean between L2-normalised descriptors' if normalize else 'euclidean',
    })
    return result


def plot_precision_recall(result, path, title=None):
    """Write the micro-averaged precision-recall curve of ``evaluate``'s result as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(result['pr_curve']['recall'], result['pr_curve']['precision'], marker='.', label='ranking (interpolated)')
    ax.plot([result['micro']['recall']], [result['micro']['precision']], 'o',
            label=f'retrieval list ({result["cutoff"]}), micro')
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower left')
    ax.set_title(title or f'micro mAP {result["micro"]["map"]:.3f}')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- command

def read_split(dset_dir, split, args, all_instances):
    """Maps ``(N, res, res, nchannels)`` (records' dtype), labels and names of ``split``'s records.

    Records are read and checked by :mod:`spherical_cnn.data.verify` (a bad
    record stops with its file and index). Unless ``all_instances``, keeps one
    instance per mesh (the first record of each ``fname``), like SHREC where
    each shape appears once; records without ``fname`` are all kept.
    """
    from .. import datasets
    from ..data import verify
    from ..errors import UserError
    paths = datasets.list_record_files(dset_dir)[split]
    if not paths:
        raise UserError(f'--dset_dir {dset_dir}: no {split}*.tfrecord files')
    spec = verify.RecordSpec.from_args(args)
    xs, ys, names, seen = [], [], [], set()
    for path in paths:
        for i, raw in verify.iter_raw_records(path):
            d = spec.decode(raw, path, i)
            name = d['fname']
            if name is not None and not all_instances:
                if name in seen:
                    continue
                seen.add(name)
            xs.append(d['x'])
            ys.append(d['y'])
            names.append(name or f'{os.path.basename(path)}#{i}')
    return np.stack(xs), np.array(ys, dtype=np.int64), names


def load_run(logdir):
    """(flags, model) of a training run: ``logdir/model.keras`` and ``logdir/flags.yaml``."""
    from .. import training
    from ..errors import UserError
    path = os.path.join(logdir, training.EXPORT_FILE)
    if not os.path.exists(path):
        raise UserError(f'no exported model at {path} (train with scripts/train.py --logdir {logdir} first)')
    args = training.load_flags(logdir, {'test_only': True})
    from ..trained_run import load_model  # Keras's safe mode, only our classes and Keras'
    return args, load_model(path)


def embed(model, x, mag_ang, batch=64):
    """Descriptors ``(N, d)`` and logits ``(N, n_classes)`` of maps ``x`` (records' layout)."""
    from ..datasets import to_model_input
    desc, logits = [], []
    for i in range(0, len(x), batch):
        out = model.predict_on_batch(np.asarray(to_model_input(x[i:i + batch], mag_ang)))
        if 'descriptor' not in out:
            from ..errors import UserError
            raise UserError('the exported model has no "descriptor" output')
        desc.append(np.asarray(out['descriptor']))
        logits.append(np.asarray(out['logits']))
    return np.concatenate(desc), np.concatenate(logits)
