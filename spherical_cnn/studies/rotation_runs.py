"""The rotation study's run records: each run's folder and ``study_run.json`` (what the run
was made from and its result), which decide whether a run is reused, resumed or trained
from scratch.

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import json
import os

from .rotation_config import RUN_FILE
from .rotation_datasets import dataset_identity
from ..json_files import read_json


def run_dir(cfg, name, seed, train_mode):
    """Training folder of model ``name``, training seed ``seed``, trained on ``train_mode`` rotations."""
    return os.path.join(cfg.out_dir, "runs", name, "seed{}".format(seed), train_mode)


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
    return read_json(os.path.join(logdir, RUN_FILE))


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
