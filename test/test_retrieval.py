"""Retrieval metrics against a hand-computed ranking (6 items, 2 classes) and perfect descriptors.

Items on a line at x = 0, 1.2, 3.1, 2, 5.2, 6.5 with labels 0, 0, 0, 1, 1, 1 (no ties).
Rankings by distance, worked out by hand:
  q0: 1 3 2 4 5   q1: 3 0 2 4 5   q2: 3 1 4 0 5
  q3: 1 2 0 4 5   q4: 5 2 3 1 0   q5: 4 2 3 1 0
"""
import math

import numpy as np

from spherical_cnn.studies import retrieval

X = np.array([0, 1.2, 3.1, 2, 5.2, 6.5])
DESC = np.stack([X, np.zeros(6)], 1)
LABELS = np.array([0, 0, 0, 1, 1, 1])
RANKS = [[1, 3, 2, 4, 5], [3, 0, 2, 4, 5], [3, 1, 4, 0, 5], [1, 2, 0, 4, 5], [5, 2, 3, 1, 0], [4, 2, 3, 1, 0]]


def test_ranking_by_hand():
    got = retrieval.rankings(retrieval.distance_matrix(DESC, normalize=False))
    assert got.tolist() == RANKS


def test_cutoff_3_by_hand():
    # relevance of the first 3: q0 101, q1 011, q2 010, q3 000, q4 101, q5 101; 2 relevant per query
    g = 1 / math.log2(3)
    p = [2 / 3, 2 / 3, 1 / 3, 0, 2 / 3, 2 / 3]
    r = [1, 1, 0.5, 0, 1, 1]
    f1 = [0.8, 0.8, 0.4, 0, 0.8, 0.8]
    ap = [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2, (1 / 2) / 2, 0, (1 + 2 / 3) / 2, (1 + 2 / 3) / 2]
    ndcg = [(1 + g) / 2, (1 + g) / 2, 1 / 2, 0, (1 + g) / 2, (1 + g) / 2]
    res = retrieval.evaluate(DESC, LABELS, cutoff=3, normalize=False)
    for name, v in (('precision', p), ('recall', r), ('f1', f1), ('map', ap), ('ndcg', ndcg)):
        assert math.isclose(res['micro'][name], np.mean(v)), name
        assert math.isclose(res['macro'][name], (np.mean(v[:3]) + np.mean(v[3:])) / 2), name


def test_class_cutoff_by_hand():
    # item 2 predicted as class 1: q0 retrieves [1]; q2 retrieves [3, 4, 5]; q3 retrieves [2, 4, 5]
    pred = np.array([0, 0, 1, 1, 1, 1])
    lists = retrieval.retrieval_lists(retrieval.rankings(retrieval.distance_matrix(DESC, False)), 'class', pred)
    assert [l.tolist() for l in lists][:4] == [[1], [0], [3, 4, 5], [2, 4, 5]]
    per, valid = retrieval.query_metrics(lists, LABELS, 1000)
    g = 1 / math.log2(3)
    np.testing.assert_allclose([per[m][0] for m in retrieval.METRICS], [1, 0.5, 2 / 3, 0.5, 0.5])
    np.testing.assert_allclose([per[m][2] for m in retrieval.METRICS], [0, 0, 0, 0, 0])
    np.testing.assert_allclose([per[m][3] for m in retrieval.METRICS],
                               [2 / 3, 1, 0.8, (1 / 2 + 2 / 3) / 2, (1 + g) / 2])


def test_macro_differs_from_micro_on_unbalanced_classes():
    res = retrieval.summarize({'map': [1, 1, 1, 0]}, [0, 0, 0, 1])
    assert res['micro']['map'] == 0.75 and res['macro']['map'] == 0.5


def test_perfect_descriptors_give_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 5)
    desc = np.eye(8)[labels] + 0.01 * rng.standard_normal((20, 8))
    for cutoff, pred in (('class', labels), (4, None)):
        res = retrieval.evaluate(desc, labels, pred, cutoff=cutoff)
        for avg in ('micro', 'macro'):
            for m in retrieval.METRICS:
                assert math.isclose(res[avg][m], 1.0), (cutoff, avg, m)
    np.testing.assert_allclose(res['pr_curve']['precision'], 1.0)


def test_command_end_to_end_on_a_tiny_triplet_run(tmp_path, capsys):
    import json
    import os
    from test_training import TINY_MODEL, write_records
    from spherical_cnn import training
    dset = write_records(str(tmp_path / "records"))
    logdir = str(tmp_path / "run")
    training.run(TINY_MODEL + ["--dset_dir", dset, "--logdir", logdir, "--n_epochs", "1",
                               "--triplet_loss", "--round_batches", "--tensorboard_histograms", "0"])
    out = str(tmp_path / "ret")
    from spherical_cnn.cli import retrieval as retrieval_cli
    assert retrieval_cli.DEFAULT_MAX_RETRIEVED == retrieval.DEFAULT_MAX_RETRIEVED
    assert retrieval_cli.main(["--logdir", logdir, "--out", out]) == 0
    res = json.load(open(os.path.join(out, "retrieval.json")))
    assert res["n_queries"] == 24 and res["split"] == "test"  # records without fname: all kept
    for avg in ("micro", "macro"):
        assert all(0 <= res[avg][m] <= 1 for m in retrieval.METRICS)
    with open(os.path.join(out, "precision_recall.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "|micro |" in capsys.readouterr().out
