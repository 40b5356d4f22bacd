"""The paper's rotation study: z/z, SO(3)/SO(3) and z/SO(3), spherical CNN vs a planar CNN.

One mesh tree (the built-in synthetic shapes by default) is rendered twice, with
the same meshes and the same train/val/test split (the builder's split depends
on the seed only):

  ``<out>/data/z``    train, val and test meshes rotated about the z axis only;
  ``<out>/data/so3``  the same meshes under uniformly random rotations.

Each model is trained on the train split of each dataset and tested on the test
split of both, which gives the regimes ``train/test``: z/z, SO(3)/SO(3), z/SO(3)
(the paper's table) and SO(3)/z (free, kept in the JSON/CSV).

Models (trained by the same :class:`spherical_cnn.training.Trainer`, same
optimizer, schedule, epochs, batches):

- ``spherical-wap``, ``spherical-cwap`` and ``spherical-spectral``: the demo's two-branch
  spherical CNN from the params files (default ``params/model-32.txt
  params/synthetic-32.txt params/training-cpu.txt``), pooling on the grid
  (area-weighted as the original, ``--pool wap``; grid-centred, ``--pool cwap``) or in
  the spectral domain (``--spectral_pool``);
- ``planar``: an ordinary Keras 2D CNN (:func:`planar_cnn`, registered as
  ``--model planar``) that reads the same 2-channel (azimuth, polar) maps as
  images: 3x3 convolutions with zero padding, batch norm, the same
  nonlinearity, max pooling where the spherical model pools, global average
  pooling and a dense classifier; its widths are scaled so that its parameter
  count is close to the spherical model's.

Outputs in ``<out>``: ``results.json``, ``results.csv``, ``table.md`` (the
markdown table) and ``rotation_study.png`` (bar chart), plus one training
folder per (model, train rotations) under ``<out>/runs``.
"""
import argparse
import csv
import dataclasses
import json
import logging
import os
import time

import numpy as np

from .params import PARAMS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (train rotations, test rotations) -> column label
REGIMES = (("z", "z"), ("so3", "so3"), ("z", "so3"))
EXTRA_REGIMES = (("so3", "z"),)
LABELS = {"z": "z", "so3": "SO(3)", "none": "none"}
# model -> (flag overrides, label in the table)
MODELS = {
    "spherical-wap": ({"spectral_pool": False, "pool": "wap"}, "spherical CNN, wap pooling"),
    "spherical-cwap": ({"spectral_pool": False, "pool": "cwap"}, "spherical CNN, cwap pooling"),
    "spherical-spectral": ({"spectral_pool": True, "pool": "wap"}, "spherical CNN, spectral pooling"),
    "planar": ({}, "planar CNN"),
}
MODEL_NAMES = tuple(MODELS)

DEFAULT_PARAMS = tuple(os.path.join(PARAMS_DIR, name) for name in (
    "model-32.txt", "synthetic-32.txt", "training-cpu.txt"))


def regime_label(train, test):
    """``('z', 'so3')`` -> ``'z/SO(3)'``."""
    return "{}/{}".format(LABELS[train], LABELS[test])


@dataclasses.dataclass
class StudyConfig:
    """What the study builds and trains.

    Attributes:
        out_dir: folder for datasets, runs and results.
        mesh_root: ModelNet-style tree ``<class>/{train,test}/<mesh>``; None for
            the built-in synthetic shapes.
        params_files: flag files of the spherical model (read relative to the repository root
            when not found as given).
        extra_flags: tokens appended to the flags of both models (e.g. ``['--n_epochs', '4']``).
        planar_extra_flags: tokens appended to the planar model's flags only.
        input_res, n_rotations, n_test_rotations, seed, workers: dataset builder arguments.
        n_train_per_class, n_test_per_class: synthetic dataset size (ignored with mesh_root).
        models: which of ``MODEL_NAMES`` to run.
        rebuild: rebuild the datasets even when a matching one exists.
    """
    out_dir: str = "logs/rotation_study"
    mesh_root: str = None
    params_files: tuple = DEFAULT_PARAMS
    extra_flags: tuple = ()
    planar_extra_flags: tuple = ()
    input_res: int = 32
    n_rotations: int = 8
    n_test_rotations: int = 4
    n_train_per_class: int = None
    n_test_per_class: int = None
    seed: int = 0
    workers: int = None
    models: tuple = MODEL_NAMES
    rebuild: bool = False
    quiet: bool = False


def quick_config(out_dir):
    """The --quick size: a few meshes per class at 16 x 16, a tiny model, 2 epochs (CI smoke test)."""
    return StudyConfig(
        out_dir=out_dir, input_res=16, n_rotations=2, n_test_rotations=1,
        n_train_per_class=3, n_test_per_class=2, workers=1,
        extra_flags=("--nfilters", "4,6,8", "--pool_layers", "0,1,0", "--concat_branches", "0,1,0",
                     "--n_filter_params", "4", "--n_epochs", "2", "--learning_rate", "{0: 0.001}",
                     "--train_bsize", "16"))


# --------------------------------------------------------------------------- datasets

def _dataset_spec(cfg, mode):
    from .data import synthetic
    spec = {"input_res": cfg.input_res, "rotations": mode, "test_rotations": mode,
            "n_rotations": cfg.n_rotations, "n_test_rotations": cfg.n_test_rotations, "seed": cfg.seed}
    if cfg.mesh_root:
        spec["mesh_root"] = os.path.abspath(cfg.mesh_root)
    else:
        spec["n_train_per_class"] = cfg.n_train_per_class or synthetic.DEFAULT_TRAIN_PER_CLASS
        spec["n_test_per_class"] = cfg.n_test_per_class or synthetic.DEFAULT_TEST_PER_CLASS
    return spec


def _matches(dset_dir, spec):
    path = os.path.join(dset_dir, "manifest.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        made = json.load(f)
    return made.get("rotation_study") == spec


def build_datasets(cfg, log=print):
    """Render the z and SO(3) datasets (same meshes, same splits); returns ``{'z': dir, 'so3': dir}``.

    A folder whose manifest records the same settings is reused (unless ``cfg.rebuild``).
    """
    from .data import builder
    dirs = {}
    for mode in ("z", "so3"):
        d = os.path.join(cfg.out_dir, "data", mode)
        spec = _dataset_spec(cfg, mode)
        dirs[mode] = d
        if not cfg.rebuild and _matches(d, spec):
            log("reusing dataset {} ({} rotations)".format(d, mode))
            continue
        log("building dataset {} ({} rotations, res {}) ...".format(d, mode, cfg.input_res))
        common = dict(input_res=cfg.input_res, rotations_mode=mode, test_rotations=mode,
                      n_rotations=cfg.n_rotations, n_test_rotations=cfg.n_test_rotations,
                      workers=cfg.workers, overwrite=True, progress=False,
                      extra_manifest={"rotation_study": spec})
        if cfg.mesh_root:
            builder.build_from_tree(cfg.mesh_root, d, seed=cfg.seed, **common)
        else:
            builder.build_synthetic(d, n_train_per_class=spec["n_train_per_class"],
                                    n_test_per_class=spec["n_test_per_class"], seed=cfg.seed, **common)
    _check_same_split(dirs)
    return dirs


def _check_same_split(dirs):
    """The two datasets must hold the same meshes in each split (else the comparison is void)."""
    from .data import records
    import tensorflow as tf

    def meshes(d, split):
        names = set()
        for fn in sorted(os.listdir(d)):
            if fn.startswith(split) and fn.endswith(".tfrecord"):
                for rec in records.iter_records(os.path.join(d, fn)):
                    ex = tf.train.Example.FromString(rec)
                    names.add(ex.features.feature["fname"].bytes_list.value[0])
        return names

    for split in ("train", "test"):
        a, b = meshes(dirs["z"], split), meshes(dirs["so3"], split)
        if a != b:
            raise RuntimeError("the z and SO(3) datasets in {} and {} hold different {} meshes; "
                               "rebuild them with --rebuild".format(dirs["z"], dirs["so3"], split))


# --------------------------------------------------------------------------- models

def planar_cnn(args, input_shape):
    """An ordinary 2D CNN on the (azimuth, polar) maps, outputs like the spherical models.

    Per entry of ``--nfilters``: Conv2D 3x3 ('same' zero padding; bias only
    without batch norm) -> batch norm (centre only) -> nonlinearity ->
    MaxPooling2D(2**p) when ``--pool_layers`` gives p > 0. Then global average
    pooling (the ``descriptor``) and a dense classifier (``logits``).
    Input ``(batch, azimuth, polar, channels)`` treated as an image.
    """
    import keras
    from keras import layers as kl
    from .layers import FusedBatchNormalization
    from .models import nonlinearity

    inputs = keras.Input(shape=tuple(input_shape), name="x")
    x = inputs
    for i, (nf, pool) in enumerate(zip(args.nfilters, args.pool_layers)):
        x = kl.Conv2D(nf, 3, padding="same", use_bias=not args.batch_norm, name="conv{}".format(i))(x)
        if args.batch_norm:
            x = FusedBatchNormalization(scale=False, name="conv{}_bn".format(i))(x)
        x = nonlinearity(args.nonlin, 4, "conv{}_act".format(i))(x)
        if pool:
            x = kl.MaxPooling2D(2 ** pool, padding="same", name="conv{}_pool".format(i))(x)
    x = kl.GlobalAveragePooling2D(name="gap")(x)
    if args.dropout:
        x = kl.Dropout(0.5, name="dropout")(x)
    outputs = {"descriptor": x, "logits": kl.Dense(args.n_classes, name="out")(x)}
    return keras.Model(inputs, outputs, name="planar")


def _register_planar():
    from . import models
    if "planar" not in models.MODELS:
        models.register("planar")(planar_cnn)


def _resolve(path):
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.join(ROOT, path)
    return candidate if os.path.exists(candidate) else path


def spherical_args(cfg, dset_dir, logdir, more=()):
    """Parsed flags of the spherical model on ``dset_dir`` (``more``: tokens appended last)."""
    from . import params
    tokens = ["@" + _resolve(p) for p in cfg.params_files]
    tokens += ["--dset", "from_cached_tfrecords", "--dset_dir", dset_dir, "--logdir", logdir,
               "--input_res", str(cfg.input_res), "--seed", str(cfg.seed), "--skip_val",
               "--from_scratch", "--no_export", "--progress", "none", "--tensorboard_histograms", "0"]
    tokens += list(cfg.extra_flags) + list(more)
    return params.parse(tokens)


def planar_args(cfg, dset_dir, logdir, target_params=None, input_shape=None):
    """Flags of the planar baseline: the spherical flags with ``--model planar``.

    The two-branch and spherical options are dropped (``--extra_loss``,
    ``--concat_branches``, ``--nonlinearity_upsample``) and, when ``target_params`` is given, the widths ``--nfilters`` are scaled
    by one common factor so that the parameter count is the closest to it.
    """
    from . import params
    _register_planar()
    args = spherical_args(cfg, dset_dir, logdir, more=cfg.planar_extra_flags)
    args.model = "planar"
    args.extra_loss = False
    args.weighted_sph_avg = False
    args.spectral_pool = False
    args.nonlinearity_upsample = 1
    if target_params and input_shape is not None:
        args.nfilters = match_widths(args, input_shape[-1], target_params)
    params.check(args)
    return args


def count_params(args, input_shape):
    """Parameters of the model named by ``args.model`` for inputs ``input_shape`` (no batch axis)."""
    import keras
    from . import models
    _register_planar()
    model = models.build_model(args, input_shape)
    n = model.count_params()
    keras.backend.clear_session()
    return n


def planar_param_count(args, in_channels):
    """Parameter count of :func:`planar_cnn` (trainable and not), in closed form."""
    n, prev = 0, in_channels
    for nf in args.nfilters:
        n += 9 * prev * nf + (0 if args.batch_norm else nf)
        n += 3 * nf if args.batch_norm else 0  # beta, moving mean, moving variance
        n += nf if args.nonlin == "prelu" else 0
        prev = nf
    return n + prev * args.n_classes + args.n_classes


def match_widths(args, in_channels, target, scales=None):
    """``args.nfilters`` scaled by the common factor whose planar model's parameter count is closest to ``target``."""
    scales = np.linspace(0.25, 4.0, 301) if scales is None else scales
    best = None
    for s in scales:
        trial = argparse.Namespace(**vars(args))
        trial.nfilters = [max(1, int(round(s * f))) for f in args.nfilters]
        n = planar_param_count(trial, in_channels)
        if best is None or abs(n - target) < abs(best[0] - target):
            best = (n, trial.nfilters)
    return best[1]


# --------------------------------------------------------------------------- running

def train_and_test(args, test_dirs, quiet=False):
    """Train one model with :class:`Trainer`, test it on the test split of each of ``test_dirs``.

    Args:
        args: parsed flags (``args.dset_dir`` = the training dataset).
        test_dirs: ``{test rotations: dataset dir}``.

    Returns:
        dict with ``n_params``, ``train_seconds`` (wall time of all epochs),
        ``epoch_seconds`` (mean), ``train_acc`` and ``test`` ``{rotations: accuracy}``.
    """
    import keras
    from . import datasets
    from .training import Trainer, get_logger

    _register_planar()
    logger = get_logger(args.logdir)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    trainer = Trainer(args, logger)
    n_params = trainer.model.count_params()
    t0 = time.time()
    train_acc, _, epoch_seconds = trainer.train()
    train_seconds = time.time() - t0
    test = {}
    for mode, d in test_dirs.items():
        trainer.dataset = datasets.SphericalDataset(args, d)
        test[mode], _ = trainer.evaluate("test")
    keras.backend.clear_session()
    return {"n_params": int(n_params), "train_seconds": float(train_seconds),
            "epoch_seconds": float(epoch_seconds), "train_acc": float(train_acc), "test": test}


def run_study(cfg, log=print):
    """Build the datasets, train every model on z and SO(3), test each on z and SO(3).

    Returns the results dict (also written to ``<out>/results.json``, ``results.csv``,
    ``table.md`` and ``rotation_study.png``).
    """
    log = log or (lambda *a, **k: None)
    unknown = [m for m in cfg.models if m not in MODEL_NAMES]
    if unknown:
        raise ValueError("unknown model(s) {}; expected some of {}".format(unknown, MODEL_NAMES))
    os.makedirs(cfg.out_dir, exist_ok=True)
    t_start = time.time()
    dirs = build_datasets(cfg, log=log)
    data_seconds = time.time() - t_start

    first = spherical_args(cfg, dirs["z"], os.path.join(cfg.out_dir, "runs", "probe"))
    from . import datasets
    input_shape = datasets.SphericalDataset(first, dirs["z"]).input_shape
    sph_params = count_params(first, input_shape)

    results = {"config": _config_dict(cfg), "input_shape": list(input_shape),
               "dataset_seconds": data_seconds, "models": {}}
    for name in cfg.models:
        per_train = {}
        for train_mode in ("z", "so3"):
            logdir = os.path.join(cfg.out_dir, "runs", "{}-{}".format(name, train_mode))
            if name.startswith("spherical"):
                args = spherical_args(cfg, dirs[train_mode], logdir)
                for k, v in MODELS[name][0].items():
                    setattr(args, k, v)
            else:
                args = planar_args(cfg, dirs[train_mode], logdir, sph_params, input_shape)
            log("training {} on {} rotations ({} epochs) ...".format(name, LABELS[train_mode], args.n_epochs))
            r = train_and_test(args, dirs, quiet=cfg.quiet)
            r["nfilters"] = list(args.nfilters)
            r["flags"] = {k: v for k, v in vars(args).items() if k in (
                "model", "nfilters", "pool_layers", "pool", "spectral_pool", "transform_method",
                "n_filter_params", "n_epochs", "train_bsize", "final_pool", "nonlin")}
            per_train[train_mode] = r
            log("  {} {}: test z {:.4f}, test SO(3) {:.4f}, {:.0f} s".format(
                name, LABELS[train_mode], r["test"]["z"], r["test"]["so3"], r["train_seconds"]))
        results["models"][name] = summarize(per_train)
    results["total_seconds"] = time.time() - t_start
    write_outputs(results, cfg.out_dir)
    return results


def _config_dict(cfg):
    d = dataclasses.asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def summarize(per_train):
    """``{train: run result}`` -> one model's row: accuracies per regime, params, train time."""
    acc = {}
    for train, test in REGIMES + EXTRA_REGIMES:
        if train in per_train:
            acc[regime_label(train, test)] = per_train[train]["test"][test]
    any_run = next(iter(per_train.values()))
    return {"accuracy": acc, "n_params": any_run["n_params"], "nfilters": any_run["nfilters"],
            "train_seconds": {LABELS[k]: v["train_seconds"] for k, v in per_train.items()},
            "runs": per_train}


# --------------------------------------------------------------------------- outputs

def table_rows(results):
    """Rows ``[model, acc z/z, acc SO(3)/SO(3), acc z/SO(3), params, train time]`` as strings."""
    rows = []
    for name, m in results["models"].items():
        cells = [MODELS[name][1] if name in MODELS else name]
        for train, test in REGIMES:
            v = m["accuracy"].get(regime_label(train, test))
            cells.append("-" if v is None else "{:.1f}".format(100 * v))
        cells.append("{:,}".format(m["n_params"]))
        secs = m["train_seconds"]
        cells.append(" / ".join("{:.0f} s".format(secs[k]) for k in ("z", "SO(3)") if k in secs))
        rows.append(cells)
    return rows


TABLE_HEADER = (["model"] + ["{} (%)".format(regime_label(*r)) for r in REGIMES]
                + ["params", "train time (z / SO(3))"])


def format_table(results):
    """The markdown table (test accuracy in %, train/test rotations)."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(TABLE_HEADER) - 1)) + "|"]
    for row in table_rows(results):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_outputs(results, out_dir):
    """Write ``results.json``, ``results.csv``, ``table.md`` and ``rotation_study.png`` into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    regimes = [regime_label(*r) for r in REGIMES + EXTRA_REGIMES]
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model"] + regimes + ["n_params", "train_seconds_z", "train_seconds_so3"])
        for name, m in results["models"].items():
            w.writerow([name] + ["" if m["accuracy"].get(r) is None else "{:.4f}".format(m["accuracy"][r])
                                 for r in regimes]
                       + [m["n_params"]] + ["{:.1f}".format(m["train_seconds"].get(k, float("nan")))
                                            for k in ("z", "SO(3)")])
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(format_table(results) + "\n")
    plot(results, os.path.join(out_dir, "rotation_study.png"))


def plot(results, path):
    """Grouped bar chart: test accuracy per regime (groups) and model (bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [regime_label(*r) for r in REGIMES]
    names = list(results["models"])
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    xs = np.arange(len(regimes))
    for i, name in enumerate(names):
        acc = [100 * results["models"][name]["accuracy"].get(r, np.nan) for r in regimes]
        label = MODELS[name][1] if name in MODELS else name
        bars = ax.bar(xs + (i - (len(names) - 1) / 2) * width, acc, width,
                      label="{} ({:,} params)".format(label, results["models"][name]["n_params"]))
        for b, v in zip(bars, acc):
            if np.isfinite(v):
                ax.text(b.get_x() + b.get_width() / 2, v + 1, "{:.1f}".format(v), ha="center",
                        va="bottom", fontsize=8)
    ax.set_xticks(xs)
    ax.set_xticklabels(["{}\n(train/test)".format(r) if j == 0 else r for j, r in enumerate(regimes)])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title("Rotations seen in training vs at test time")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=1, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
