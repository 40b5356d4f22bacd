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
"""
import argparse
import csv
import dataclasses
import inspect
import json
import logging
import os
import time

import numpy as np

from . import rotation_metrics as rm
from ..errors import UserError
from ..params import PARAMS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository

ROTATIONS = ("z", "so3")
# (train rotations, test rotations), in table order
REGIMES = (("z", "z"), ("so3", "so3"), ("z", "so3"), ("so3", "z"))
# the image study (spherical MNIST protocol): not rotated / rotated
IMAGE_ROTATIONS = ("nr", "r")
IMAGE_REGIMES = (("nr", "nr"), ("r", "r"), ("nr", "r"), ("r", "nr"))
IMAGE_PROTOCOL = {"nr": "NR", "r": "R", "flat": "flat"}  # -> spherical_cnn.data.images.build(rotation=...)
LABELS = {"z": "z", "so3": "SO(3)", "none": "none", "nr": "NR", "r": "R"}
# measures per (model, regime, seed), averaged over seeds; fractions in [0, 1]
METRICS = ("accuracy", "consistency", "spread_std", "spread_range")
RUN_FILE = "study_run.json"

# dataset variant -> builder options (spherical_cnn.data.builder keyword arguments)
DATA_VARIANTS = {
    "plain": {},
    "ss4": {"supersample": 4},
}


@dataclasses.dataclass(frozen=True)
class ModelVariant:
    """One model of the study.

    Attributes:
        name: key in the results and on the command line (``--models``).
        label: its row name in the tables.
        flags: training flag values set over the params files (``{dest: value}``,
            e.g. ``{'pool': 'cwap'}`` for ``--pool cwap``).
        data: dataset variant (key of :data:`DATA_VARIANTS`).
        kind: ``'spherical'`` (the params files' model) or ``'planar'`` (:func:`planar_cnn`).
        default: in the study's default list of models (``--models`` not given).
    """
    name: str
    label: str
    flags: dict
    data: str = "plain"
    kind: str = "spherical"
    default: bool = True


# Every spherical variant states the flags it differs in, so that a change of the params
# files' defaults (model-32.txt turns on spectral pooling and the anti-aliased nonlinearity)
# does not change what a variant is.
_CWAP = {"spectral_pool": False, "pool": "cwap", "nonlinearity_upsample": 1}
_SPECTRAL = {"spectral_pool": True, "pool": "wap", "nonlinearity_upsample": 1}
_AA = {"nonlinearity_upsample": 2}
MODEL_TABLE = (
    ModelVariant("spherical-wap", "spherical CNN, wap pooling",
                 {"spectral_pool": False, "pool": "wap", "nonlinearity_upsample": 1}),
    ModelVariant("spherical-cwap", "spherical CNN, cwap pooling", _CWAP),
    ModelVariant("spherical-spectral", "spherical CNN, spectral pooling", _SPECTRAL),
    ModelVariant("planar", "planar CNN", {}, kind="planar"),
    ModelVariant("spherical-cwap-aa", "spherical CNN, cwap, anti-aliased nonlinearity", {**_CWAP, **_AA}),
    ModelVariant("spherical-spectral-aa", "spherical CNN, spectral, anti-aliased nonlinearity",
                 {**_SPECTRAL, **_AA}),
    ModelVariant("spherical-cwap-ss", "spherical CNN, cwap, supersampled data", _CWAP, data="ss4"),
    ModelVariant("spherical-cwap-ss-aa", "spherical CNN, cwap, supersampled data, anti-aliased",
                 {**_CWAP, **_AA}, data="ss4"),
    # the model of the params files as they are (e.g. a real-data recipe such as
    # params/recipe-fmnist-32.txt); only when asked for, it repeats a variant above otherwise
    ModelVariant("spherical", "spherical CNN, the params files' model", {}, default=False),
)
MODELS = {v.name: v for v in MODEL_TABLE}
MODEL_NAMES = tuple(MODELS)
# equivariance.py's weight sources -> the study's model trained on z
EQUIVARIANCE_SOURCES = {"wap": "spherical-wap", "cwap": "spherical-cwap", "spectral": "spherical-spectral",
                        "cwap_aa": "spherical-cwap-aa", "spectral_aa": "spherical-spectral-aa"}

DEFAULT_PARAMS = tuple(os.path.join(PARAMS_DIR, name) for name in (
    "model-32.txt", "synthetic-32.txt", "training-cpu.txt"))
IMAGE_PARAMS = tuple(os.path.join(PARAMS_DIR, name) for name in (
    "model-32.txt", "fmnist-32.txt", "training-cpu.txt"))
DEFAULT_SEEDS = (0, 1, 2)


def study_rotations(cfg):
    """The rotation kinds the datasets are built with: z/so3 (meshes) or nr/r (images)."""
    return IMAGE_ROTATIONS if getattr(cfg, "images", None) else ROTATIONS


def study_regimes(cfg):
    """(train, test) pairs of the study, in table order."""
    return IMAGE_REGIMES if getattr(cfg, "images", None) else REGIMES


def result_regimes(results):
    """(train, test) pairs of a results dict (meshes: :data:`REGIMES`)."""
    pairs = results.get("regime_pairs")
    return tuple(tuple(p) for p in pairs) if pairs else REGIMES


def result_rotations(results):
    """Rotation kinds of a results dict, in order."""
    return tuple(dict.fromkeys(t for t, _ in result_regimes(results)))


def regime_label(train, test):
    """``('z', 'so3')`` -> ``'z/SO(3)'``."""
    return "{}/{}".format(LABELS[train], LABELS[test])


REGIME_LABELS = tuple(regime_label(*r) for r in REGIMES)


def canonical_name(name):
    """Model name as in :data:`MODEL_TABLE`: ``spherical_cwap_aa`` -> ``spherical-cwap-aa``."""
    return name.replace("_", "-")


@dataclasses.dataclass
class StudyConfig:
    """What the study builds and trains.

    Attributes:
        out_dir: folder for datasets, runs and results.
        mesh_root: ModelNet-style tree ``<class>/{train,test}/<mesh>``; None for
            the built-in synthetic shapes.
        params_files: flag files of the spherical model (read relative to the repository root
            when not found as given).
        extra_flags: tokens appended to the flags of all models (e.g. ``['--n_epochs', '4']``).
        planar_extra_flags: tokens appended to the planar model's flags only.
        input_res, n_rotations, n_test_rotations, seed, workers: dataset builder arguments
            (``seed``: meshes, rotations and split).
        n_train_per_class, n_test_per_class: synthetic dataset size (ignored with mesh_root).
        seeds: training seeds; each (model, train rotations) is trained once per seed.
        models: names from :data:`MODEL_TABLE`; None for every variant this version supports.
        rebuild: rebuild the datasets even when a matching one exists.
        images: an image set's IDX files (a ``.deb``, a folder, or ``"download"`` to fetch
            the Fashion-MNIST package with apt-get): the image study instead of meshes.
        image_files: ``{role: path}`` of IDX files given one by one (roles of
            :data:`spherical_cnn.data.images.ROLES`).
        n_train_images, n_test_images: subset sizes (first images of each file; None: all
            but the validation images / all); n_val_images: validation images (after the
            train ones): with some, every run validates after each epoch (learning curves in
            its TensorBoard events). ``n_rotations`` is the number of rotations (train shards)
            of the R train set.
        image_band_limit: images only: 0 (the protocol's sampling) or the oversampling factor
            of a band-limited projection (``spherical_cnn.data.images.project_band_limited``).
        flat_reference: images only: also train, once per seed, the planar CNN on the
            original images (not projected; :func:`flat_reference_args`), the upper
            reference of the image study.
    """
    out_dir: str = "logs/rotation_study"
    mesh_root: str = None
    params_files: tuple = DEFAULT_PARAMS
    extra_flags: tuple = ()
    planar_extra_flags: tuple = ()
    input_res: int = 32
    n_rotations: int = 8
    n_test_rotations: int = 8
    n_train_per_class: int = None
    n_test_per_class: int = None
    seed: int = 0
    workers: int = None
    seeds: tuple = DEFAULT_SEEDS
    models: tuple = None
    rebuild: bool = False
    quiet: bool = False
    images: str = None
    image_files: dict = None
    n_train_images: int = None
    n_val_images: int = 0
    n_test_images: int = None
    image_band_limit: int = 0
    flat_reference: bool = False


def quick_config(out_dir):
    """The --quick size: a few meshes per class at 16 x 16, 2 test rotations, a tiny model,
    2 epochs, one seed (CI smoke test)."""
    return StudyConfig(
        out_dir=out_dir, input_res=16, n_rotations=2, n_test_rotations=2,
        n_train_per_class=3, n_test_per_class=2, workers=1, seeds=(0,),
        extra_flags=("--nfilters", "4,6,8", "--pool_layers", "0,1,0", "--concat_branches", "0,1,0",
                     "--n_filter_params", "4", "--n_epochs", "2", "--learning_rate", "{0: 0.001}",
                     "--train_bsize", "16"))


# --------------------------------------------------------------------------- variants

def known_training_flags():
    """Names (argparse ``dest``) of the flags of ``spherical_cnn.params``."""
    from .. import params
    return {a.dest for a in params.build_parser()._actions}


def builder_options():
    """Keyword arguments that ``spherical_cnn.data.builder`` takes (its build functions)."""
    from ..data import builder
    names = set()
    for fn in (builder.build, builder._build_in, builder.build_synthetic, builder.build_from_tree):
        names.update(p.name for p in inspect.signature(fn).parameters.values()
                     if p.kind is not inspect.Parameter.VAR_KEYWORD)
    return names


def missing_requirements(variant, flags=None, options=None):
    """What ``variant`` needs and this version lacks: a list of texts (empty: runnable).

    ``flags`` and ``options`` default to :func:`known_training_flags` and :func:`builder_options`.
    """
    flags = known_training_flags() if flags is None else flags
    missing = ["training flag --{}".format(k) for k in variant.flags if k not in flags]
    if variant.data not in DATA_VARIANTS:
        return missing + ["dataset variant {!r}".format(variant.data)]
    options = builder_options() if options is None and DATA_VARIANTS[variant.data] else options
    missing += ["dataset builder option {}".format(k) for k in DATA_VARIANTS[variant.data]
                if k not in options]
    return missing


def select_models(requested, flags=None, options=None):
    """The variants to run and the ones left out.

    Args:
        requested: model names (``_`` or ``-``), or None for every variant of
            :data:`MODEL_TABLE` that this version supports.

    Returns:
        ``(variants, skipped)``: list of :class:`ModelVariant`, ``{name: reason}``.

    Raises:
        ValueError: an unknown name. UserError: a requested variant this version cannot run.
    """
    if requested is None:
        variants, skipped = [], {}
        for v in (v for v in MODEL_TABLE if v.default):
            missing = missing_requirements(v, flags, options)
            if missing:
                skipped[v.name] = "needs " + ", ".join(missing) + ", which this version lacks"
            else:
                variants.append(v)
        return variants, skipped
    names = [canonical_name(n) for n in requested]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError("unknown model(s) {}; expected some of {}".format(
            ", ".join(unknown), ", ".join(MODEL_NAMES)))
    if not names:
        raise ValueError("no model to run")
    for n in names:
        missing = missing_requirements(MODELS[n], flags, options)
        if missing:
            raise UserError("model {} needs {}, which this version lacks".format(n, ", ".join(missing)))
    return [MODELS[n] for n in dict.fromkeys(names)], {}


# --------------------------------------------------------------------------- datasets

def dataset_dirs(cfg, data):
    """``{'z': dir, 'so3': dir}`` of dataset variant ``data`` (images: ``{'nr': dir, 'r': dir}``)."""
    if getattr(cfg, "images", None):
        data = "images"
    return {mode: os.path.join(cfg.out_dir, "data", data, mode) for mode in study_rotations(cfg)}


def _image_spec(cfg, mode):
    source = cfg.images if cfg.images in (None, "download") else os.path.abspath(cfg.images)
    return {"images": source, "image_files": {k: os.path.abspath(v) for k, v in
                                              sorted((cfg.image_files or {}).items()) if v},
            "input_res": cfg.input_res, "rotation": IMAGE_PROTOCOL[mode],
            "n_train": cfg.n_train_images, "n_val": cfg.n_val_images, "n_test": cfg.n_test_images,
            "n_rotations": image_train_rotations(cfg, mode),
            "n_test_rotations": image_test_rotations(cfg, mode), "seed": cfg.seed,
            "band_limit": 0 if mode == "flat" else cfg.image_band_limit}


def image_train_rotations(cfg, mode):
    """Train shards of the image set ``mode``: ``cfg.n_rotations`` rotations for R, one otherwise."""
    return cfg.n_rotations if mode == "r" else 1


def image_test_rotations(cfg, mode):
    """Rotations per test image: ``cfg.n_test_rotations``, one for the flat images."""
    return 1 if mode == "flat" else cfg.n_test_rotations


def flat_dir(cfg):
    """Dataset folder of the original (flat) images of the image study."""
    return os.path.join(cfg.out_dir, "data", "images", "flat")


def build_image_datasets(cfg, log=print):
    """Project the image set twice (NR and R) into ``<out>/data/images/{nr,r}`` (and, with
    ``cfg.flat_reference``, write the original images to ``<out>/data/images/flat``); reuse
    matching ones."""
    import tempfile
    from ..data import images
    dirs = dataset_dirs(cfg, "images")
    every = dict(dirs, **({"flat": flat_dir(cfg)} if cfg.flat_reference else {}))
    todo = {m: d for m, d in every.items() if cfg.rebuild or not _matches(d, _image_spec(cfg, m))}
    for m, d in every.items():
        if m not in todo:
            log("reusing dataset {} ({})".format(d, IMAGE_PROTOCOL[m]))
    if todo:
        with tempfile.TemporaryDirectory(prefix="rotation-study-images-") as tmp:
            source = None if cfg.images == "download" else cfg.images
            paths = images.resolve_source(source, tmp, cfg.image_files, log=log)
            for m, d in todo.items():
                log("building dataset {} ({}, res {}) ...".format(d, IMAGE_PROTOCOL[m], cfg.input_res))
                images.build(paths, d, rotation=IMAGE_PROTOCOL[m], input_res=cfg.input_res,
                             n_train=cfg.n_train_images, n_val=cfg.n_val_images, n_test=cfg.n_test_images,
                             n_rotations=image_train_rotations(cfg, m),
                             n_test_rotations=image_test_rotations(cfg, m), seed=cfg.seed,
                             band_limit=0 if m == "flat" else cfg.image_band_limit,
                             overwrite=True, progress=False,
                             extra_manifest={"rotation_study": _image_spec(cfg, m)})
    _check_same_split(list(every.values()))
    return {"plain": dirs}


def _dataset_spec(cfg, mode, data):
    from ..data import synthetic
    spec = {"input_res": cfg.input_res, "rotations": mode, "test_rotations": mode,
            "n_rotations": cfg.n_rotations, "n_test_rotations": cfg.n_test_rotations, "seed": cfg.seed,
            "options": dict(DATA_VARIANTS[data])}
    if cfg.mesh_root:
        spec["mesh_root"] = os.path.abspath(cfg.mesh_root)
    else:
        spec["n_train_per_class"] = cfg.n_train_per_class or synthetic.DEFAULT_TRAIN_PER_CLASS
        spec["n_test_per_class"] = cfg.n_test_per_class or synthetic.DEFAULT_TEST_PER_CLASS
    return spec


def _read_manifest(dset_dir):
    path = os.path.join(dset_dir, "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _matches(dset_dir, spec):
    made = _read_manifest(dset_dir)
    return made is not None and made.get("rotation_study") == spec


def dataset_identity(dset_dir):
    """What identifies a built dataset: its study settings and creation time (from the manifest)."""
    made = _read_manifest(dset_dir) or {}
    return {"spec": made.get("rotation_study"), "created": made.get("created")}


def build_datasets(cfg, data_variants=("plain",), log=print):
    """Render the z and SO(3) datasets of each dataset variant (same meshes, splits, rotations).

    Returns ``{variant: {'z': dir, 'so3': dir}}``. A folder whose manifest records the
    same settings is reused (unless ``cfg.rebuild``).
    """
    from ..data import builder
    if getattr(cfg, "images", None):
        return build_image_datasets(cfg, log=log)
    out = {}
    for data in data_variants:
        out[data] = dataset_dirs(cfg, data)
        for mode, d in out[data].items():
            spec = _dataset_spec(cfg, mode, data)
            if not cfg.rebuild and _matches(d, spec):
                log("reusing dataset {} ({} rotations)".format(d, mode))
                continue
            log("building dataset {} ({} rotations, res {}) ...".format(d, mode, cfg.input_res))
            common = dict(input_res=cfg.input_res, rotations_mode=mode, test_rotations=mode,
                          n_rotations=cfg.n_rotations, n_test_rotations=cfg.n_test_rotations,
                          workers=cfg.workers, overwrite=True, progress=False,
                          extra_manifest={"rotation_study": spec}, **DATA_VARIANTS[data])
            if cfg.mesh_root:
                builder.build_from_tree(cfg.mesh_root, d, seed=cfg.seed, **common)
            else:
                builder.build_synthetic(d, n_train_per_class=spec["n_train_per_class"],
                                        n_test_per_class=spec["n_test_per_class"], seed=cfg.seed, **common)
    _check_same_split([d for dirs in out.values() for d in dirs.values()])
    return out


def _split_meshes(dset_dir, split):
    """Set of ``fname`` of the records of ``split`` in ``dset_dir``."""
    from ..data import records
    import tensorflow as tf
    names = set()
    for fn in sorted(os.listdir(dset_dir)):
        if fn.startswith(split) and fn.endswith(".tfrecord"):
            for rec in records.iter_records(os.path.join(dset_dir, fn)):
                ex = tf.train.Example.FromString(rec)
                names.add(ex.features.feature["fname"].bytes_list.value[0])
    return names


def _check_same_split(dset_dirs):
    """All datasets must hold the same meshes in each split (else the comparison is void)."""
    for split in ("train", "test"):
        first = _split_meshes(dset_dirs[0], split)
        for d in dset_dirs[1:]:
            if _split_meshes(d, split) != first:
                raise RuntimeError("the datasets in {} and {} hold different {} meshes; "
                                   "rebuild them with --rebuild".format(dset_dirs[0], d, split))


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
    from ..layers import FusedBatchNormalization
    from ..models import nonlinearity

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
    from .. import models
    if "planar" not in models.MODELS:
        models.register("planar")(planar_cnn)


def _resolve(path):
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.join(ROOT, path)
    return candidate if os.path.exists(candidate) else path


def spherical_args(cfg, dset_dir, logdir, seed=0, more=()):
    """Parsed flags of the spherical model on ``dset_dir``, training seed ``seed``
    (``more``: tokens appended last)."""
    from .. import params
    tokens = ["@" + _resolve(p) for p in cfg.params_files]
    tokens += ["--dset", "from_cached_tfrecords", "--dset_dir", dset_dir, "--logdir", logdir,
               "--input_res", str(cfg.input_res), "--seed", str(seed),
               "--from_scratch", "--no_export", "--progress", "none", "--tensorboard_histograms", "0"]
    if not (getattr(cfg, "images", None) and cfg.n_val_images):
        tokens.append("--skip_val")
    if getattr(cfg, "images", None):  # the image set's own number of classes (MNIST-format sets vary)
        from ..datasets import read_class_names
        names = read_class_names(dset_dir)
        if names:
            tokens += ["--n_classes", str(len(names))]
    tokens += list(cfg.extra_flags) + list(more)
    return params.parse(tokens)


def planar_args(cfg, dset_dir, logdir, seed=0, target_params=None, input_shape=None):
    """Flags of the planar baseline: the spherical flags with ``--model planar``.

    The two-branch and spherical options are dropped (``--extra_loss``,
    ``--concat_branches``, ``--nonlinearity_upsample``) and, when ``target_params`` is given, the widths ``--nfilters`` are scaled
    by one common factor so that the parameter count is the closest to it.
    """
    from .. import params
    _register_planar()
    args = spherical_args(cfg, dset_dir, logdir, seed, more=cfg.planar_extra_flags)
    args.model = "planar"
    args.extra_loss = False
    args.weighted_sph_avg = False
    args.spectral_pool = False
    args.nonlinearity_upsample = 1
    if target_params and input_shape is not None:
        args.nfilters = match_widths(args, input_shape[-1], target_params)
    params.check(args)
    return args


def flat_reference_args(cfg, logdir, seed=0, target_params=None):
    """Flags of the flat reference: the planar CNN (:func:`planar_cnn`, the planar baseline's
    flags) on the original images of :func:`flat_dir` (``(H, W, 1)`` maps), its widths scaled
    to ``target_params`` parameters as the planar baseline's are."""
    from .. import params
    dset_dir = flat_dir(cfg)
    args = planar_args(cfg, dset_dir, logdir, seed)
    args.input_res, args.nchannels = int(_read_manifest(dset_dir)["input_res"]), 1
    if target_params:
        args.nfilters = match_widths(args, 1, target_params)
    params.check(args)
    return args


FLAT_LABEL = "planar CNN on the original images (not projected)"


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


def count_params(args, input_shape):
    """Parameters of the model named by ``args.model`` for inputs ``input_shape`` (no batch axis)."""
    import keras
    from .. import models
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

def run_dir(cfg, name, seed, train_mode):
    """Training folder of model ``name``, training seed ``seed``, trained on ``train_mode`` rotations."""
    return os.path.join(cfg.out_dir, "runs", name, "seed{}".format(seed), train_mode)


def model_args(cfg, variant, train_dir, logdir, seed, target_params=None, input_shape=None):
    """Parsed and checked flags of ``variant`` trained on ``train_dir`` with seed ``seed``."""
    from .. import params
    if variant.kind == "planar":
        args = planar_args(cfg, train_dir, logdir, seed, target_params, input_shape)
    else:
        args = spherical_args(cfg, train_dir, logdir, seed)
    for k, v in variant.flags.items():
        setattr(args, k, v)
    params.check(args)
    return args


# flags that say where or how verbosely a run goes, not what it computes
_VOLATILE_FLAGS = ("from_scratch", "logdir", "run_id", "dset_dir", "progress", "verbose", "debug",
                   "test_only")


def run_key(args, test_dirs):
    """What a run is made from, as JSON values: its flags and the identity of its datasets."""
    from .. import params
    flags = {k: v for k, v in params.to_dict(args).items() if k not in _VOLATILE_FLAGS}
    key = {"flags": flags, "train_data": dataset_identity(args.dset_dir),
           "test_data": {mode: dataset_identity(d) for mode, d in sorted(test_dirs.items())}}
    return json.loads(json.dumps(key))  # as read back from JSON (tuples -> lists, int keys -> str)


def load_run(logdir):
    """``study_run.json`` of ``logdir`` (dict), or None if absent or unreadable."""
    try:
        with open(os.path.join(logdir, RUN_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save_run(logdir, record):
    """Write ``study_run.json`` atomically."""
    from ..training import write_atomic
    os.makedirs(logdir, exist_ok=True)
    write_atomic(os.path.join(logdir, RUN_FILE), json.dumps(record, indent=1))


def run_state(logdir, key):
    """``'done'`` (same key, result saved), ``'partial'`` (same key, no result) or ``'new'``."""
    rec = load_run(logdir)
    if rec is None or rec.get("key") != key:
        return "new"
    return "done" if rec.get("result") else "partial"


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
    variants, skipped = select_models(cfg.models)
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


def check_seeds(seeds):
    """``seeds`` as a tuple of distinct non-negative ints; ValueError otherwise."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("--seeds is empty")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError("--seeds must be distinct non-negative integers, got {}".format(
            ",".join(map(str, seeds))))
    return seeds


def _config_dict(cfg):
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


# --------------------------------------------------------------------------- outputs

def format_mean_std(stat, scale=100.0, digits=1):
    """``{'mean', 'std'}`` -> ``'98.2 ± 0.3'`` (``'98.2'`` for one seed), values times ``scale``."""
    text = "{:.{d}f}".format(scale * stat["mean"], d=digits)
    if stat.get("std") is not None:
        text += " ± {:.{d}f}".format(scale * stat["std"], d=digits)
    return text


def _cell(model, regime, metric, digits=1):
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
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _seeds_text(results):
    n = len(results["seeds"])
    return "one seed" if n == 1 else "mean ± std over {} seeds".format(n)


def format_table(results):
    """Markdown: accuracy, consistency and spread tables (train/test columns), each under a title."""
    regimes = [regime_label(*r) for r in result_regimes(results)]
    n_rot = _n_test_rotations(results)
    what = "meshes" if result_regimes(results) == REGIMES else "images"
    parts = [
        ["Test accuracy (%), {}:".format(_seeds_text(results)), ""] + _markdown(
            ["model"] + ["{} (%)".format(r) for r in regimes] + ["params", "train time ({})".format(
                " / ".join(LABELS[k] for k in result_rotations(results)))],
            accuracy_rows(results)) + reference_lines(results),
        ["Consistency over rotations: test {} (%) classified the same under all {} of their "
         "test rotations, {}:".format(what, n_rot, _seeds_text(results)), ""] + _markdown(
            ["model"] + regimes, consistency_rows(results)),
        ["Spread of accuracy across test rotations (percentage points): std / max - min over the "
         "rotation index r of the accuracy on the r-th rotation of every test {}, {}:".format(what[:-1],
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
    for m in results["models"].values():
        for p in m["seeds"].values():
            for metrics in p["regimes"].values():
                return metrics["n_rotations"]
    return None


SUMMARY_COLUMNS = (["model", "regime", "train", "test", "n_seeds"]
                   + ["{}_{}".format(k, s) for k in METRICS for s in ("mean", "std")]
                   + ["n_params", "train_seconds_mean"])
PER_SEED_COLUMNS = ["model", "seed", "regime", "accuracy", "consistency", "spread_std", "spread_min",
                    "spread_max", "spread_range", "per_rotation_accuracy", "train_seconds"]


def _num(v, fmt="{:.4f}"):
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


OUTPUT_FILES = ("results.json", "results.csv", "results_per_seed.csv", "table.md", "rotation_study.png")


def equivariance_logdirs(cfg, names):
    """``{source: run folder}`` (sources of ``equivariance.study``) of the z-trained runs of the first seed of
    ``cfg.seeds`` for the models among ``names`` (input of ``equivariance.study_from_runs``)."""
    seed = check_seeds(cfg.seeds)[0]
    return {kind: run_dir(cfg, name, seed, "z") for kind, name in EQUIVARIANCE_SOURCES.items()
            if name in names}
