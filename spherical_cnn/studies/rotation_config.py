"""What a rotation study is: rotation kinds, regimes and their labels, dataset variants,
the measures, and the study's configuration (:class:`StudyConfig`).

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import dataclasses
import os

from ..params import PARAMS_DIR

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

DEFAULT_PARAMS = tuple(os.path.join(PARAMS_DIR, name) for name in (
    "model-32.txt", "synthetic-32.txt", "training-cpu.txt"))
IMAGE_PARAMS = tuple(os.path.join(PARAMS_DIR, name) for name in (
    "model-32.txt", "fmnist-32.txt", "training-cpu.txt"))
DEFAULT_SEEDS = (0, 1, 2)


def mesh_builder_options(cfg, data):
    """Builder options of the mesh datasets of variant ``data`` (JSON values, as in the manifest).

    The study's ``augment``, ``supersample`` and ``convex_hull`` first, then the variant's own options
    (:data:`DATA_VARIANTS`); options at their defaults are left out, so that a study
    without them identifies its datasets as before.
    """
    from ..data import augment
    options = {}
    preset = augment.PRESETS[cfg.augment]
    if preset:
        options.update(augment_preset=cfg.augment, aniso_scale=list(preset["aniso_scale"]),
                       center_shift=preset["center_shift"])
    if cfg.supersample != 1:
        options["supersample"] = cfg.supersample
    if getattr(cfg, "convex_hull", False):
        options["convex_hull"] = True
    options.update(DATA_VARIANTS[data])
    return options


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
        augment: meshes only: ``'none'`` or a preset of ``spherical_cnn.data.augment.PRESETS``
            (``'original'``: anisotropic scale and shifted centre) for the train and val
            instances of every dataset, z and SO(3) alike; the rotations stay the study's.
        supersample: meshes only: rays per grid cell side of every dataset
            (``make-dataset --supersample``); a dataset variant's own option wins.
        convex_hull: meshes only: the convex hull's map as a second channel of every
            dataset (``make-dataset --convex_hull``); the models read ``--nchannels`` 2.
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
    augment: str = "none"
    supersample: int = 1
    convex_hull: bool = False


def quick_config(out_dir):
    """The --quick size: a few meshes per class at 16 x 16, 2 test rotations, a tiny model,
    2 epochs, one seed (CI smoke test)."""
    return StudyConfig(
        out_dir=out_dir, input_res=16, n_rotations=2, n_test_rotations=2,
        n_train_per_class=3, n_test_per_class=2, workers=1, seeds=(0,),
        extra_flags=("--nfilters", "4,6,8", "--pool_layers", "0,1,0", "--concat_branches", "0,1,0",
                     "--n_filter_params", "4", "--n_epochs", "2", "--learning_rate", "{0: 0.001}",
                     "--train_bsize", "16"))


def check_seeds(seeds):
    """``seeds`` as a tuple of distinct non-negative ints; ValueError otherwise."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("--seeds is empty")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError("--seeds must be distinct non-negative integers, got {}".format(
            ",".join(map(str, seeds))))
    return seeds
