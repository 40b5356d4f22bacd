"""Console-script entry points (``[project.scripts]`` in ``pyproject.toml``).

Each runs the ``main`` of its command module through :func:`run_cli`. They live
apart from the command modules so that their names do not shadow them.
"""
import importlib

from ..errors import run_cli


def _run(name):
    module = importlib.import_module("spherical_cnn.cli." + name)
    return run_cli(module.main)


def train():
    """``spherical-cnn-train``: train and test a spherical CNN (the demo's command line)."""
    return _run("train")


def make_dataset():
    """``spherical-cnn-make-dataset``: meshes (or the synthetic shapes) -> TFRecord dataset."""
    return _run("make_dataset")


def make_images():
    """``spherical-cnn-make-images``: an MNIST-format image set -> spherical TFRecord dataset."""
    return _run("make_images")


def import_furniture():
    """``spherical-cnn-import-furniture``: Sweet Home 3D furniture package -> mesh tree."""
    return _run("import_furniture")


def predict():
    """``spherical-cnn-predict``: classify records or meshes with a trained model."""
    return _run("predict")


def check_dataset():
    """``spherical-cnn-check-dataset``: check a dataset folder against the flags."""
    return _run("check_dataset")


def ensemble():
    """``spherical-cnn-ensemble``: one model averaging the probabilities of several trained runs."""
    return _run("ensemble")


def retrieval():
    """``spherical-cnn-retrieval``: SHREC'17-style retrieval metrics of a trained descriptor."""
    return _run("retrieval")


def rotation_study():
    """``spherical-cnn-rotation-study``: z/z, SO(3)/SO(3), z/SO(3) and equivariance error."""
    return _run("rotation_study")


def train_regression():
    """``spherical-regression-train``: the S^3 rotation task (= ``spherical-regression rotation``)."""
    return _run("train_regression")


def regression():
    """``spherical-regression``: the S^1 / S^2 / S^3 regression tasks, heads x seeds."""
    return _run("regression")


def params():
    """``spherical-cnn-params``: path of an installed params file."""
    return _run("params")
