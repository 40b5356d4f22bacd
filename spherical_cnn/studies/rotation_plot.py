"""The rotation study's figure: grouped bars of test accuracy and consistency per regime
and model (``rotation_study.png``).

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import numpy as np

from .rotation_config import regime_label, result_regimes
from .rotation_tables import _seeds_text


def _bars(ax, results, metric, ylabel):
    """Grouped bars of ``metric`` (percent): groups = regimes, bars = models, error bars = std over seeds."""
    regimes = [regime_label(*r) for r in result_regimes(results)]
    names = list(results["models"])
    width = 0.8 / max(1, len(names))
    xs = np.arange(len(regimes))
    for i, name in enumerate(names):
        m = results["models"][name]
        stats = [m["summary"].get(r, {}).get(metric) for r in regimes]
        mean = [100 * s["mean"] if s else np.nan for s in stats]
        err = [100 * s["std"] if s and s["std"] is not None else 0.0 for s in stats]
        bars = ax.bar(xs + (i - (len(names) - 1) / 2) * width, mean, width,
                      yerr=err if any(err) else None, capsize=2,
                      label="{} ({:,} params)".format(m["label"], m["n_params"]))
        for b, v, e in zip(bars, mean, err):
            if np.isfinite(v) and len(names) <= 5:
                ax.text(b.get_x() + b.get_width() / 2, v + e + 1, "{:.0f}".format(v), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels(["{}\n(train/test)".format(r) if j == 0 else r for j, r in enumerate(regimes)])
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 110)
    ax.grid(axis="y", alpha=0.3)


def plot(results, path):
    """Two panels of grouped bars per regime and model: test accuracy and consistency over
    rotations (mean over seeds, error bars: std)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.0, 5.0), dpi=120)
    _bars(axes[0], results, "accuracy", "test accuracy (%)")
    axes[0].set_title("Test accuracy")
    _bars(axes[1], results, "consistency", "meshes with one class for all rotations (%)")
    axes[1].set_title("Consistency over test rotations")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Rotations seen in training vs at test time ({})".format(_seeds_text(results)))
    n_rows = (len(labels) + 1) // 2
    fig.tight_layout(rect=(0, 0.04 + 0.035 * n_rows, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path
