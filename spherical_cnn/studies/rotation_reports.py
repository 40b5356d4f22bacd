"""The rotation study's output files: ``results.json``, ``results.csv``,
``results_per_seed.csv``, ``table.md`` and ``rotation_study.png`` (:func:`write_outputs`).

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import csv
import json
import os

from .rotation_config import LABELS, METRICS, regime_label, result_regimes
from .rotation_plot import plot
from .rotation_tables import format_table


SUMMARY_COLUMNS = (["model", "regime", "train", "test", "n_seeds"]
                   + ["{}_{}".format(k, s) for k in METRICS for s in ("mean", "std")]
                   + ["n_params", "train_seconds_mean"])
PER_SEED_COLUMNS = ["model", "seed", "regime", "accuracy", "consistency", "spread_std", "spread_min",
                    "spread_max", "spread_range", "per_rotation_accuracy", "train_seconds"]


def _num(v, fmt="{:.4f}"):
    """``v`` formatted for a CSV cell; empty for None."""
    return "" if v is None else fmt.format(v)


def summary_csv_rows(results):
    """Rows of ``results.csv`` (columns :data:`SUMMARY_COLUMNS`): one per (model, regime)."""
    rows = []
    for name, m in results["models"].items():
        for train, test in result_regimes(results):
            reg = regime_label(train, test)
            if reg not in m["summary"]:
                continue
            stats = m["summary"][reg]
            row = [name, reg, train, test, len(stats["accuracy"]["values"])]
            for k in METRICS:
                row += [_num(stats[k]["mean"]), _num(stats[k]["std"])]
            secs = m["train_seconds"].get(LABELS[train])
            rows.append(row + [m["n_params"], _num(secs and secs["mean"], "{:.1f}")])
    return rows


def per_seed_csv_rows(results):
    """Rows of ``results_per_seed.csv`` (columns :data:`PER_SEED_COLUMNS`): one per (model, seed, regime)."""
    rows = []
    for name, m in results["models"].items():
        for seed, p in m["seeds"].items():
            for reg, v in p["regimes"].items():
                train = LABELS[next(t for t, s in result_regimes(results) if regime_label(t, s) == reg)]
                rows.append([name, seed, reg] + [_num(v[k]) for k in PER_SEED_COLUMNS[3:9]]
                            + [" ".join("{:.4f}".format(a) for a in v["per_rotation_accuracy"]),
                               _num(p["train_seconds"].get(train), "{:.1f}")])
    return rows


def _write_csv(path, header, rows):
    """Write a CSV file: the header row, then ``rows``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_outputs(results, out_dir):
    """Write into ``out_dir``:

    - ``results.json``: the results dict (:func:`run_study`; per-seed values under
      ``models.<name>.seeds``, per-record predictions stay in the runs' ``study_run.json``);
    - ``results.csv``: one row per (model, regime), mean and std over seeds (:data:`SUMMARY_COLUMNS`);
    - ``results_per_seed.csv``: one row per (model, seed, regime) (:data:`PER_SEED_COLUMNS`;
      ``per_rotation_accuracy`` space-separated);
    - ``table.md``: :func:`format_table`; ``rotation_study.png``: :func:`plot`.

    Fractions in the JSON and CSV files are in [0, 1]; the table prints percent.
    """
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    _write_csv(os.path.join(out_dir, "results.csv"), SUMMARY_COLUMNS, summary_csv_rows(results))
    _write_csv(os.path.join(out_dir, "results_per_seed.csv"), PER_SEED_COLUMNS, per_seed_csv_rows(results))
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(format_table(results) + "\n")
    plot(results, os.path.join(out_dir, "rotation_study.png"))


OUTPUT_FILES = ("results.json", "results.csv", "results_per_seed.csv", "table.md", "rotation_study.png")
