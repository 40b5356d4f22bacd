"""pip install: declared dependencies agree with the lock, and the built wheel works on its own.

The wheel test builds a wheel from a copy of the sources, installs it into a
new virtual environment outside the repository and runs the installed
commands there: ``spherical-cnn-make-dataset`` (a tiny synthetic set, two
worker processes), ``spherical-cnn-params`` and ``spherical-cnn-train`` with the
installed params file, then loads the model in that environment. The
dependencies are not downloaded: the new environment sees the running
interpreter's site-packages through a ``.pth`` file (and ``--no-deps``).
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest
from packaging.requirements import Requirement

from test_training import TINY_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = re.compile(r"^[IWEF]\d{4} |absl|oneDNN|cuInit|rebuild TensorFlow", re.M)
COMMANDS = ["spherical-cnn-train", "spherical-cnn-make-dataset", "spherical-cnn-make-images", "spherical-cnn-import-furniture",
            "spherical-cnn-predict",
            "spherical-cnn-check-dataset", "spherical-cnn-ensemble", "spherical-cnn-retrieval", "spherical-cnn-rotation-study",
            "spherical-cnn-params",
            "spherical-regression-train", "spherical-regression"]


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def pins(path):
    """{normalised name: version} of the ``name==version`` lines of a requirements file."""
    out = {}
    for line in open(os.path.join(ROOT, path)):
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_declared_ranges_contain_the_pinned_versions():
    project = pyproject()
    locked = {**pins("requirements.txt"), **pins("requirements-dev.txt")}
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["jax"]]
    for req in declared:
        name = req.name.lower().replace("_", "-")
        assert name in locked, "{} is declared but not pinned in requirements*.txt".format(name)
        assert req.specifier.contains(locked[name], prereleases=True), (str(req), locked[name])
    runtime = {Requirement(r).name.lower() for r in project["dependencies"]}
    missing = set(pins("requirements.txt")) - runtime - {"pytest"}
    assert not missing, "pinned in requirements.txt but not declared: {}".format(sorted(missing))
    assert sorted(project["scripts"]) == sorted(COMMANDS)


def _copy_sources(dest):
    def ignore(folder, names):
        top = os.path.abspath(folder) == ROOT
        return [n for n in names if n in ("__pycache__", ".git", ".pytest_cache")
                or n.endswith(".egg-info") or (top and (n.startswith(".venv") or n in (
                    "data", "logs", "build", "dist", "benchmarks")))]
    shutil.copytree(ROOT, dest, symlinks=True, ignore=ignore)


@pytest.mark.slow
def test_wheel_installs_and_its_commands_train_a_tiny_model(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    pytest.importorskip("wheel", reason="building the wheel needs the wheel package")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(cmd, timeout=600):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path),
                             timeout=timeout)
        assert out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-3000:])
        return out

    _copy_sources(tmp_path / "src")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(tmp_path / "src")])
    wheels = os.listdir(tmp_path / "dist")
    assert len(wheels) == 1 and wheels[0].startswith("spherical_cnn-"), wheels

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py, bindir = str(venv / "bin" / "python"), venv / "bin"
    purelib = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    with open(os.path.join(purelib, "_outer_site_packages.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # TensorFlow & co. of this environment
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(tmp_path / "dist" / wheels[0])])
    for command in COMMANDS:
        assert (bindir / command).exists(), command

    where = run([py, "-c", "import spherical_cnn; print(spherical_cnn.__file__)"]).stdout.strip()
    assert where.startswith(purelib), where  # the installed copy, not the repository

    data = tmp_path / "data"
    made = run([str(bindir / "spherical-cnn-make-dataset"), "--synthetic", str(tmp_path / "meshes"),
                "--out", str(data), "--input_res", "16", "--n_train_per_class", "2",
                "--n_test_per_class", "1", "--n_rotations", "2", "--n_test_rotations", "1",
                "--val_fraction", "0.5", "--workers", "2"])
    assert not NOISE.search(made.stdout + made.stderr), made.stderr[-2000:]
    assert (tmp_path / "meshes" / "chair" / "test" / "chair_0001.off").exists()

    training_cpu = run([str(bindir / "spherical-cnn-params"), "training-cpu"]).stdout.strip()
    assert training_cpu.startswith(purelib) and os.path.isfile(training_cpu)
    logdir = tmp_path / "run"
    trained = run([str(bindir / "spherical-cnn-train"), "@" + training_cpu] + TINY_MODEL + [
        "--n_classes", "12", "--dset_dir", str(data), "--logdir", str(logdir), "--n_epochs", "1"])
    text = trained.stdout + trained.stderr
    assert "|model|train|val|test|train time|" in text and "|run|" in text, text[-2000:]
    assert not NOISE.search(text), text[-2000:]

    code = ("import spherical_cnn, keras, numpy as np; m = keras.models.load_model({!r}); "
            "x = np.zeros((1,) + tuple(m.input_shape[1:]), 'float32'); "
            "print(tuple(m(x)['logits'].shape))").format(str(logdir / "model.keras"))
    assert run([py, "-c", code]).stdout.strip().endswith("(1, 12)")
