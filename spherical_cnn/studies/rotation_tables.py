"""The rotation study's results as markdown tables: accuracy, consistency over rotations
and spread across test rotations, per model and regime (mean ± std over seeds).

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
from .rotation_config import LABELS, REGIMES, regime_label, result_regimes, result_rotations


def format_mean_std(stat, scale=100.0, digits=1):
    """``{'mean', 'std'}`` -> ``'98.2 ± 0.3'`` (``'98.2'`` for one seed), values times ``scale``."""
    text = "{:.{d}f}".format(scale * stat["mean"], d=digits)
    if stat.get("std") is not None:
        text += " ± {:.{d}f}".format(scale * stat["std"], d=digits)
    return text


def _cell(model, regime, metric, digits=1):
    """``'mean ± std'`` of ``metric`` in ``regime`` (percent), ``'-'`` when not measured."""
    stat = model["summary"].get(regime, {}).get(metric)
    return "-" if stat is None else format_mean_std(stat, digits=digits)


def accuracy_rows(results):
    """Rows ``[model, accuracy per regime (%), params, train time]`` as strings."""
    rows = []
    labels = [regime_label(*r) for r in result_regimes(results)]
    for m in results["models"].values():
        cells = [m["label"]] + [_cell(m, r, "accuracy") for r in labels]
        cells.append("{:,}".format(m["n_params"]))
        secs = m["train_seconds"]
        cells.append(" / ".join("{:.0f} s".format(secs[LABELS[k]]["mean"]) for k in result_rotations(results)
                                if LABELS[k] in secs))
        rows.append(cells)
    return rows


def consistency_rows(results):
    """Rows ``[model, consistency per regime (%)]`` as strings."""
    labels = [regime_label(*r) for r in result_regimes(results)]
    return [[m["label"]] + [_cell(m, r, "consistency") for r in labels]
            for m in results["models"].values()]


def spread_rows(results):
    """Rows ``[model, 'std / max-min' of the per-rotation accuracy per regime (points)]``."""
    return [[m["label"]] + ["{} / {}".format(_cell(m, r, "spread_std"), _cell(m, r, "spread_range"))
                            for r in [regime_label(*p) for p in result_regimes(results)]]
            for m in results["models"].values()]


def _markdown(header, rows):
    """Lines of a markdown table (first column left-aligned, the others right)."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _seeds_text(results):
    """``'one seed'`` or ``'mean ± std over N seeds'``."""
    n = len(results["seeds"])
    return "one seed" if n == 1 else "mean ± std over {} seeds".format(n)


def format_table(results):
    """Markdown: accuracy, consistency and spread tables (train/test columns), each under a title.

    The consistency and spread tables are left out when every test item has one rotation
    (the image protocol): they could only read 100 % and 0 points there.
    """
    regimes = [regime_label(*r) for r in result_regimes(results)]
    n_rot = _n_test_rotations(results)
    what, one = ("meshes", "mesh") if result_regimes(results) == REGIMES else ("images", "image")
    parts = [
        ["Test accuracy (%), {}:".format(_seeds_text(results)), ""] + _markdown(
            ["model"] + ["{} (%)".format(r) for r in regimes] + ["params", "train time ({})".format(
                " / ".join(LABELS[k] for k in result_rotations(results)))],
            accuracy_rows(results)) + reference_lines(results),
    ]
    if n_rot is not None and n_rot > 1:
        parts += [
            ["Consistency over rotations: test {} (%) classified the same under all {} of their "
             "test rotations, {}:".format(what, n_rot, _seeds_text(results)), ""] + _markdown(
                ["model"] + regimes, consistency_rows(results)),
            ["Spread of accuracy across test rotations (percentage points): std / max - min over the "
             "rotation index r of the accuracy on the r-th rotation of every test {}, {}:".format(one,
                 _seeds_text(results)), ""] + _markdown(["model"] + regimes, spread_rows(results)),
        ]
    return "\n\n".join("\n".join(p) for p in parts)


def reference_lines(results):
    """Lines stating the references of ``results['references']`` (the flat CNN), or none."""
    lines = []
    for ref in results.get("references", {}).values():
        n = len(ref["accuracy"]["values"])
        lines.append("")
        lines.append("Upper reference, the {} with the same flags: test accuracy {} % ({}), {:,} "
                     "params, {:.0f} s of training.".format(
                         ref["label"], format_mean_std(ref["accuracy"]),
                         "one seed" if n == 1 else "mean ± std over {} seeds".format(n),
                         ref["n_params"], ref["train_seconds"]["mean"]))
    return lines


def _n_test_rotations(results):
    """Rotations per test item of the first measured regime, or None."""
    for m in results["models"].values():
        for p in m["seeds"].values():
            for metrics in p["regimes"].values():
                return metrics["n_rotations"]
    return None
