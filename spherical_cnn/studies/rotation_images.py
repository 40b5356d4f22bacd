"""The rotation study's image data source: an MNIST-format image set projected onto the
sphere not rotated (NR) and rotated (R), and the original images for the flat reference
(:mod:`spherical_cnn.data.images`).

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import os

from .rotation_config import IMAGE_PROTOCOL
from .rotation_datasets import _check_same_split, _matches, dataset_dirs


def _image_spec(cfg, mode):
    """The settings that identify the image set ``mode`` (nr, r or flat) in its manifest."""
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
