"""The two quick-start commands: `make demo` and `make test` set up the environment once.

A fake virtual environment whose ``python`` only records its arguments (and
exits with a chosen status) stands in for a real one, so these tests check the
Makefile's and ``tools/ensure_venv.sh``'s logic without installing anything.
"""
import hashlib
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INSTALL_CHECKOUT = "-m pip install -q --no-deps -e ."

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def requirements_hash(name):
    """What the stamp must hold: sha256 of the file followed by requirements.txt."""
    data = b"".join(open(os.path.join(ROOT, f), "rb").read() for f in (name, "requirements.txt"))
    return hashlib.sha256(data).hexdigest()


def fake_venv(tmp_path, status=0):
    """A folder with bin/python that appends its arguments to calls.txt and exits with ``status``."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text('#!/bin/sh\necho "$*" >> "{}"\nexit {}\n'.format(tmp_path / "calls.txt", status))
    python.chmod(0o755)
    return venv


def calls(tmp_path):
    path = tmp_path / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_setup_installs_once_and_again_when_requirements_change(tmp_path):
    venv = fake_venv(tmp_path)
    out = make("venv", "VENV={}".format(venv))
    assert out.returncode == 0, out.stderr
    assert calls(tmp_path) == ["-m pip install -q --upgrade pip", "-m pip install -q -r requirements.txt",
                               INSTALL_CHECKOUT]
    assert (venv / ".installed-requirements").read_text().strip() == requirements_hash("requirements.txt")

    out = make("venv", "VENV={}".format(venv))  # second call: nothing to do
    assert out.returncode == 0 and out.stdout == "" and len(calls(tmp_path)) == 3

    (venv / ".installed-requirements").write_text("an older requirements.txt\n")
    assert make("venv", "VENV={}".format(venv)).returncode == 0
    assert len(calls(tmp_path)) == 6


def test_setup_installs_the_checkout_so_that_the_readme_commands_exist(tmp_path):
    """README's commands after `make demo` (spherical-cnn-predict, ...) are the checkout's entry
    points: installed with it, again when pyproject.toml (which lists them) changes."""
    venv = fake_venv(tmp_path)
    assert make("venv", "VENV={}".format(venv)).returncode == 0
    assert calls(tmp_path)[-1] == INSTALL_CHECKOUT
    n = len(calls(tmp_path))
    (venv / ".installed-package").write_text("an older pyproject.toml\n")
    out = make("venv", "VENV={}".format(venv))
    assert out.returncode == 0
    # only the checkout is installed again, not the requirements
    assert calls(tmp_path)[n:] == [INSTALL_CHECKOUT]
    assert make("venv", "VENV={}".format(venv)).returncode == 0 and len(calls(tmp_path)) == n + 1


def test_dev_setup_covers_the_demo(tmp_path):
    venv = fake_venv(tmp_path)
    assert make("venv-dev", "VENV={}".format(venv)).returncode == 0
    assert calls(tmp_path)[-2:] == ["-m pip install -q -r requirements-dev.txt", INSTALL_CHECKOUT]
    assert (venv / ".installed-requirements-dev").read_text().strip() == \
        requirements_hash("requirements-dev.txt")
    n = len(calls(tmp_path))
    assert make("venv", "VENV={}".format(venv)).returncode == 0  # requirements.txt came with it
    assert len(calls(tmp_path)) == n


def test_demo_runs_the_readme_command(tmp_path):
    venv = fake_venv(tmp_path)
    assert make("demo", "VENV={}".format(venv)).returncode == 0
    assert calls(tmp_path)[-1] == ("scripts/train.py @params/model-32.txt @params/synthetic-32.txt "
                                   "@params/training-cpu.txt --logdir logs/synthetic")


@pytest.mark.parametrize("status, expected", [(0, 0), (1, 1), (5, 1)])
def test_test_target_fails_when_pytest_fails_or_collects_nothing(tmp_path, status, expected):
    venv = fake_venv(tmp_path, status=0)
    assert make("venv-dev", "VENV={}".format(venv)).returncode == 0
    (venv / "bin" / "python").write_text('#!/bin/sh\necho "$*" >> "{}"\nexit {}\n'.format(
        tmp_path / "calls.txt", status))
    out = make("test", "VENV={}".format(venv), "PYTEST_ARGS=-q")
    assert (out.returncode != 0) == bool(expected), (out.stdout, out.stderr)
    ran = calls(tmp_path)[-1]
    assert ran.startswith("-m pytest ") and ran.endswith(" -q") and "--durations=15" in ran, ran
    assert ("collected no tests" in out.stderr) == (status == 5)


def test_ci_and_readme_use_the_same_commands():
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert re.search(r"^exec make test\b", ci, re.M)
    readme = open(os.path.join(ROOT, "README.md")).read()
    quick = readme.split("## Quick start", 1)[1]
    first_block = quick.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block == "make demo\nmake test\n"
