"""Where the rotation study's datasets live and what they hold: folders, manifests, the
same split across datasets. Shared by the mesh source (:mod:`.rotation_meshes`) and the
image source (:mod:`.rotation_images`).

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import json
import os

from .rotation_config import study_rotations


def dataset_dirs(cfg, data):
    """``{'z': dir, 'so3': dir}`` of dataset variant ``data`` (images: ``{'nr': dir, 'r': dir}``)."""
    if getattr(cfg, "images", None):
        data = "images"
    return {mode: os.path.join(cfg.out_dir, "data", data, mode) for mode in study_rotations(cfg)}


def _read_manifest(dset_dir):
    """The dataset's ``manifest.json`` (dict), or None when there is none."""
    path = os.path.join(dset_dir, "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _matches(dset_dir, spec):
    """Whether ``dset_dir`` was built by the study with settings ``spec``."""
    made = _read_manifest(dset_dir)
    return made is not None and made.get("rotation_study") == spec


def dataset_identity(dset_dir):
    """What identifies a built dataset: its study settings and creation time (from the manifest)."""
    made = _read_manifest(dset_dir) or {}
    return {"spec": made.get("rotation_study"), "created": made.get("created")}


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
