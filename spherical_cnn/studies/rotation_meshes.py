"""The rotation study's mesh data source: the z and SO(3) datasets rendered from one mesh
tree (or the built-in synthetic shapes) by :mod:`spherical_cnn.data.builder`, per dataset
variant.

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import os

from .rotation_config import mesh_builder_options
from .rotation_datasets import _check_same_split, _matches, dataset_dirs


def _dataset_spec(cfg, mode, data):
    """The settings that identify the mesh dataset (``mode`` rotations, variant ``data``) in its manifest."""
    from ..data import synthetic
    spec = {"input_res": cfg.input_res, "rotations": mode, "test_rotations": mode,
            "n_rotations": cfg.n_rotations, "n_test_rotations": cfg.n_test_rotations, "seed": cfg.seed,
            "options": mesh_builder_options(cfg, data)}
    if cfg.mesh_root:
        spec["mesh_root"] = os.path.abspath(cfg.mesh_root)
    else:
        spec["n_train_per_class"] = cfg.n_train_per_class or synthetic.DEFAULT_TRAIN_PER_CLASS
        spec["n_test_per_class"] = cfg.n_test_per_class or synthetic.DEFAULT_TEST_PER_CLASS
    return spec


def build_mesh_datasets(cfg, data_variants=("plain",), log=print):
    """Render the z and SO(3) datasets of each dataset variant (same meshes, splits, rotations).

    Returns ``{variant: {'z': dir, 'so3': dir}}``. A folder whose manifest records the
    same settings is reused (unless ``cfg.rebuild``).
    """
    from ..data import builder
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
                          extra_manifest={"rotation_study": spec}, **spec["options"])
            if cfg.mesh_root:
                builder.build_from_tree(cfg.mesh_root, d, seed=cfg.seed, **common)
            else:
                builder.build_synthetic(d, n_train_per_class=spec["n_train_per_class"],
                                        n_test_per_class=spec["n_test_per_class"], seed=cfg.seed, **common)
    _check_same_split([d for dirs in out.values() for d in dirs.values()])
    return out
