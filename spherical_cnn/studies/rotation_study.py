"""The paper's rotation study: z/z, SO(3)/SO(3), z/SO(3) and SO(3)/z, spherical CNNs vs a planar CNN.

Datasets. One mesh tree (the built-in synthetic shapes by default) is rendered
twice per dataset variant, with the same meshes and the same train/val/test
split; datasets of the same rotation kind share their rotations across variants
(the builder draws them from the seed and the mesh path):

  ``<out>/data/<variant>/z``    train, val and test meshes rotated about the z axis only;
  ``<out>/data/<variant>/so3``  the same meshes under uniformly random rotations.

Dataset variants (:data:`DATA_VARIANTS`) are builder options: ``plain`` (none)
and ``ss4`` (``supersample=4``). Every test mesh is rendered under
``n_test_rotations`` rotations (records ``fname`` = mesh path, ``idrot`` = 0 ..
R-1), which the invariance measures need (:mod:`spherical_cnn.studies.rotation_metrics`).

Regimes ``train/test``: each model is trained on the train split of the z and
of the SO(3) dataset and tested on the test split of both: z/z, SO(3)/SO(3),
z/SO(3) (the paper's table) and SO(3)/z.

Models (:data:`MODEL_TABLE`, one :class:`ModelVariant` per line: name, label,
flag values, dataset variant, builder) are trained by the same
:class:`spherical_cnn.training.Trainer` with the same optimizer, schedule,
epochs and batches (params files, default ``params/model-32.txt
params/synthetic-32.txt params/training-cpu.txt``). A variant whose flag or
builder option this version lacks is left out of the default list (and named
in ``skipped_models``); asking for it is a one-line error. ``planar`` is an
ordinary Keras 2D CNN (:func:`planar_cnn`, ``--model planar``) reading the
same 2-channel (azimuth, polar) maps as images, its widths scaled so that its
parameter count is close to the spherical model's.

Seeds: every (model, train rotations) is trained once per seed of
``cfg.seeds`` (the trainer's ``--seed``: weights and shuffling; the datasets
stay the same). Run folders ``<out>/runs/<model>/seed<k>/<z|so3>``; each holds
``study_run.json`` = ``{"key": what the run was made from (flags, datasets),
"result": its figures and per-record predictions, or null while training}``.
A run whose key matches and that has a result is reused without training; one
without a result resumes from its ``latest`` checkpoint; any other is trained
from scratch.

Image sets (``cfg.images``: the IDX files of an MNIST-format set, e.g. Fashion-MNIST,
as a ``.deb``, a folder or None to download it; :mod:`spherical_cnn.data.images`):
the spherical MNIST protocol instead of meshes. The same images are projected
onto the sphere twice, ``<out>/data/images/nr`` (not rotated) and
``<out>/data/images/r`` (one uniformly random rotation per image and rotation
index); each model is trained on both and tested on both: regimes NR/NR, R/R,
NR/R (the protocol's) and R/NR. Records name the image (``fname`` =
``test/<index>``) and the rotation (``idrot``), so the invariance measures work
as for meshes (with one test rotation per image consistency is trivially 100 %).

Outputs in ``<out>`` (see :func:`write_outputs`): ``results.json``,
``results.csv`` (mean and std over seeds), ``results_per_seed.csv``,
``table.md`` and ``rotation_study.png``.

This module is the study's entry point and runner (datasets, then every run, then the
summary and the outputs); every name of the study can be imported from here. The parts,
one job each:

- :mod:`.rotation_config`: rotation kinds, regimes, labels, dataset variants, :class:`StudyConfig`;
- :mod:`.rotation_variants`: :data:`MODEL_TABLE` and :func:`select_models`;
- :mod:`.rotation_datasets`: dataset folders and manifests, the same split across datasets;
- :mod:`.rotation_meshes`: the mesh data source; :mod:`.rotation_images`: the image data source;
- :mod:`.rotation_models`: the models' flags and the planar CNN baseline;
- :mod:`.rotation_runs`: run folders and ``study_run.json`` records;
- :mod:`.rotation_tables` (markdown), :mod:`.rotation_plot` (png) and
  :mod:`.rotation_reports` (every output file).
"""
import dataclasses
import logging
import os
import time

from . import rotation_metrics as rm
# Re-exported: the study's names, as scripts, tools, tests and docs import them from here.
from .rotation_config import (  # noqa: F401
    DATA_VARIANTS, DEFAULT_PARAMS, DEFAULT_SEEDS, IMAGE_PARAMS, IMAGE_PROTOCOL, IMAGE_REGIMES,
    IMAGE_ROTATIONS, LABELS, METRICS, REGIME_LABELS, REGIMES, ROTATIONS, RUN_FILE, StudyConfig,
    check_seeds, quick_config, regime_label, result_regimes, result_rotations, study_regimes,
    study_rotations)
from .rotation_datasets import (  # noqa: F401
    _check_same_split, _matches, _read_manifest, _split_meshes, dataset_dirs, dataset_identity)
from .rotation_images import (  # noqa: F401
    _image_spec, build_image_datasets, flat_dir, image_test_rotations, image_train_rotations)
from .rotation_meshes import _dataset_spec, build_mesh_datasets  # noqa: F401
from .rotation_models import (  # noqa: F401
    FLAT_LABEL, ROOT, _register_planar, _resolve, count_params, flat_reference_args, match_widths,
    model_args, planar_args, planar_cnn, planar_param_count, spherical_args)
from .rotation_plot import _bars, plot  # noqa: F401
from .rotation_reports import (  # noqa: F401
    OUTPUT_FILES, PER_SEED_COLUMNS, SUMMARY_COLUMNS, _num, _write_csv, per_seed_csv_rows,
    summary_csv_rows, write_outputs)
from .rotation_runs import _VOLATILE_FLAGS, load_run, run_dir, run_key, run_state, save_run  # noqa: F401
from .rotation_tables import (  # noqa: F401
    _cell, _markdown, _n_test_rotations, _seeds_text, accuracy_rows, consistency_rows,
    format_mean_std, format_table, reference_lines, spread_rows)
from .rotation_variants import (  # noqa: F401
    _AA, _CWAP, _SPECTRAL, EQUIVARIANCE_SOURCES, MODEL_NAMES, MODEL_TABLE, MODELS, ModelVariant,
    builder_options, canonical_name, known_training_flags, missing_requirements, select_models)


# --------------------------------------------------------------------------- datasets

def build_datasets(cfg, data_variants=("plain",), log=print):
    """Render the z and SO(3) datasets of each dataset variant (same meshes, splits, rotations).

    Returns ``{variant: {'z': dir, 'so3': dir}}``. A folder whose manifest records the
    same settings is reused (unless ``cfg.rebuild``). With ``cfg.images``: the image sets
    instead (:func:`build_image_datasets`).
    """
    if getattr(cfg, "images", None):
        return build_image_datasets(cfg, log=log)
    return build_mesh_datasets(cfg, data_variants, log=log)


# --------------------------------------------------------------------------- running

def predictions_on(trainer, args, dset_dir):
    """Per-record ``{'fname', 'idrot', 'label', 'pred'}`` lists of the test split of ``dset_dir``,
    read by the trainer's dataset and evaluation path."""
    from .. import datasets
    trainer.dataset = datasets.SphericalDataset(args, dset_dir)
    labels, preds = trainer.predict("test")
    fnames, idrots = trainer.dataset.record_keys("test")
    return {"fname": fnames, "idrot": idrots, "label": labels.tolist(), "pred": preds.tolist()}


def train_and_test(args, test_dirs, quiet=False):
    """Train one model with :class:`Trainer` (resuming from ``latest`` unless
    ``args.from_scratch``), then predict the test split of each of ``test_dirs``.

    Args:
        args: parsed flags (``args.dset_dir`` = the training dataset).
        test_dirs: ``{test rotations: dataset dir}``.

    Returns:
        dict with ``n_params``, ``train_seconds`` (total of the training epochs, also over
        resumptions), ``epoch_seconds`` (mean), ``train_acc``, ``nfilters``, ``test``
        ``{rotations: invariance metrics}`` (:func:`rotation_metrics.invariance_metrics`)
        and ``predictions`` ``{rotations: per-record lists}``.
    """
    import keras
    from ..runlock import LogdirLock
    from ..training import Trainer, get_logger

    _register_planar()
    logger = get_logger(args.logdir)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    with LogdirLock(args.logdir, warn=logger.warning):
        trainer = Trainer(args, logger)
        n_params = trainer.model.count_params()
        train_acc, _, epoch_seconds = trainer.train()
        train_seconds = float(trainer.figures["seconds"].numpy())
        preds = {mode: predictions_on(trainer, args, d) for mode, d in test_dirs.items()}
    keras.backend.clear_session()
    test = {mode: rm.invariance_metrics(p["fname"], p["idrot"], p["label"], p["pred"])
            for mode, p in preds.items()}
    return {"n_params": int(n_params), "train_seconds": train_seconds,
            "epoch_seconds": float(epoch_seconds), "train_acc": float(train_acc),
            "nfilters": list(args.nfilters), "test": test, "predictions": preds}


def run_once(args, test_dirs, quiet=False, log=print):
    """One training run, reused when ``study_run.json`` says it is done (see module docstring).

    Returns the run's result dict (:func:`train_and_test`).
    """
    key = run_key(args, test_dirs)
    state = run_state(args.logdir, key)
    if state == "done":
        log("  reusing {}".format(args.logdir))
        return load_run(args.logdir)["result"]
    args.from_scratch = state == "new"
    if state == "partial":
        log("  resuming {}".format(args.logdir))
    save_run(args.logdir, {"key": key, "result": None})
    result = train_and_test(args, test_dirs, quiet=quiet)
    save_run(args.logdir, {"key": key, "result": result})
    return result


def run_flat_reference(cfg, seeds, target_params, log=print):
    """Train the flat reference once per seed (``<out>/runs/flat/seed<k>/flat``, reused and
    resumed like the other runs); returns its entry of ``results['references']``:
    ``label``, ``n_params``, ``nfilters``, ``accuracy`` and ``train_seconds`` (mean, std and
    values over seeds) and ``seeds`` ``{seed: accuracy}``."""
    runs = {}
    for seed in seeds:
        args = flat_reference_args(cfg, run_dir(cfg, "flat", seed, "flat"), seed, target_params)
        log("flat reference seed {} ({} epochs) ...".format(seed, args.n_epochs))
        runs[seed] = run_once(args, {"flat": flat_dir(cfg)}, quiet=cfg.quiet, log=log)
        log("  test {:.4f}, {:.0f} s".format(runs[seed]["test"]["flat"]["accuracy"],
                                            runs[seed]["train_seconds"]))
    accs = {str(s): r["test"]["flat"]["accuracy"] for s, r in runs.items()}
    any_run = next(iter(runs.values()))
    return {"label": FLAT_LABEL, "n_params": any_run["n_params"], "nfilters": any_run["nfilters"],
            "accuracy": rm.mean_std(list(accs.values())),
            "train_seconds": rm.mean_std([r["train_seconds"] for r in runs.values()]),
            "epoch_seconds": rm.mean_std([r["epoch_seconds"] for r in runs.values()]),
            "seeds": accs}


def _probe(cfg, dset_dir):
    """(input shape, parameter count of the params files' spherical model) on ``dset_dir``."""
    from .. import datasets
    args = spherical_args(cfg, dset_dir, os.path.join(cfg.out_dir, "runs", "probe"))
    input_shape = datasets.SphericalDataset(args, dset_dir).input_shape
    return input_shape, count_params(args, input_shape)


def run_study(cfg, log=print):
    """Build the datasets; train every model on z and SO(3) once per seed; measure each on
    the z and SO(3) test sets.

    Returns the results dict (also written to ``<out>``, see :func:`write_outputs`).
    """
    log = log or (lambda *a, **k: None)
    variants, skipped = select_models(cfg.models, table=MODELS)  # this module's table (tests extend it)
    seeds = check_seeds(cfg.seeds)
    for name, why in skipped.items():
        log("leaving out {}: {}".format(name, why))
    os.makedirs(cfg.out_dir, exist_ok=True)
    t_start = time.time()
    dirs = build_datasets(cfg, tuple(dict.fromkeys(v.data for v in variants)), log=log)
    data_seconds = time.time() - t_start
    input_shape, sph_params = _probe(cfg, next(iter(next(iter(dirs.values())).values())))

    regimes = study_regimes(cfg)
    results = {"config": _config_dict(cfg), "input_shape": list(input_shape), "seeds": list(seeds),
               "regimes": [regime_label(*r) for r in regimes],
               "regime_pairs": [list(r) for r in regimes], "dataset_seconds": data_seconds,
               "skipped_models": skipped, "models": {}}
    for v in variants:
        runs = {}
        for seed in seeds:
            for train_mode in study_rotations(cfg):
                logdir = run_dir(cfg, v.name, seed, train_mode)
                args = model_args(cfg, v, dirs[v.data][train_mode], logdir, seed, sph_params, input_shape)
                log("{} seed {} on {} rotations ({} epochs) ...".format(
                    v.name, seed, LABELS[train_mode], args.n_epochs))
                r = run_once(args, dirs[v.data], quiet=cfg.quiet, log=log)
                runs.setdefault(seed, {})[train_mode] = r
                log("  {}, {:.0f} s".format(", ".join(
                    "test {} {:.4f}".format(LABELS[m], r["test"][m]["accuracy"]) for m in study_rotations(cfg)),
                    r["train_seconds"]))
        results["models"][v.name] = summarize(v, runs, regimes)
    if getattr(cfg, "images", None) and cfg.flat_reference:
        results["references"] = {"flat": run_flat_reference(cfg, seeds, sph_params, log=log)}
    results["total_seconds"] = time.time() - t_start
    write_outputs(results, cfg.out_dir)
    return results


def _config_dict(cfg):
    """``cfg`` as JSON values (tuples as lists), for ``results['config']``."""
    d = dataclasses.asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- summaries

def seed_metrics(run_by_train, regimes=REGIMES):
    """``{train rotations: run result}`` of one seed -> ``{regime label: metrics}``."""
    out = {}
    for train, test in regimes:
        if train in run_by_train:
            out[regime_label(train, test)] = dict(run_by_train[train]["test"][test])
    return out


def summarize(variant, runs, regime_pairs=REGIMES):
    """One model's entry of ``results['models']``.

    Args:
        runs: ``{seed: {train rotations: run result}}``.

    Returns:
        dict: ``label``, ``data``, ``flags``, ``n_params``, ``nfilters``; ``summary``
        ``{regime: {metric: {'mean', 'std', 'values'}}}`` over seeds (metrics of
        :data:`METRICS`); ``train_seconds`` ``{'z' | 'SO(3)': {'mean', 'std', 'values'}}``;
        ``seeds`` ``{seed (str): {'regimes': {regime: metrics}, 'train_seconds': {...}}}``.
    """
    per_seed = {str(s): {"regimes": seed_metrics(r, regime_pairs),
                         "train_seconds": {LABELS[k]: v["train_seconds"] for k, v in r.items()}}
                for s, r in runs.items()}
    regimes = list(next(iter(per_seed.values()))["regimes"])
    summary = {reg: rm.aggregate_seeds([p["regimes"][reg] for p in per_seed.values()], METRICS)
               for reg in regimes}
    secs = {LABELS[m]: rm.mean_std([r[m]["train_seconds"] for r in runs.values()])
            for m in dict.fromkeys(t for t, _ in regime_pairs) if all(m in r for r in runs.values())}
    any_run = next(iter(next(iter(runs.values())).values()))
    return {"label": variant.label, "data": variant.data, "flags": dict(variant.flags),
            "n_params": any_run["n_params"], "nfilters": any_run["nfilters"],
            "summary": summary, "train_seconds": secs, "seeds": per_seed}


def equivariance_logdirs(cfg, names):
    """``{source: run folder}`` (sources of ``equivariance.study``) of the z-trained runs of the first seed of
    ``cfg.seeds`` for the models among ``names`` (input of ``equivariance.study_from_runs``)."""
    seed = check_seeds(cfg.seeds)[0]
    return {kind: run_dir(cfg, name, seed, "z") for kind, name in EQUIVARIANCE_SOURCES.items()
            if name in names}
