"""Fault injection, round 2 (issue 22): killed builder workers, concurrent builds, damaged
checkpoints, runs that moved, read-only file systems, damaged flags / @files / models /
caches, size guards and a killed worker of a multi-worker run.

Each test injects the fault for real (SIGKILL of a process, flipped or cut bytes, a
read-only tmpfs) and checks the exit status, the one line the user reads, and that
nothing that existed before was lost.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from spherical_cnn import training
from spherical_cnn.errors import run_cli

from test_faults import (ENV, MAKE_DATASET, ROOT, TINY, make_dataset, one_error_line, train_cli,
                         user_lines)

TRAIN = os.path.join(ROOT, "scripts", "train.py")
PREDICT = os.path.join(ROOT, "scripts", "predict.py")


def children(pid):
    """PIDs of the direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def cmdline(pid):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- 1. a killed builder worker ends the build with one line --------------------------------


def test_killed_builder_worker_stops_the_build_with_one_line(tmp_path):
    out = tmp_path / "wk"
    cmd = [sys.executable, MAKE_DATASET, "--synthetic", "--out", str(out), "--input_res", "16",
           "--n_train_per_class", "30", "--n_test_per_class", "5", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        workers = [p for p in children(proc.pid) if "spawn_main" in cmdline(p)]
        if len(workers) >= 2:
            time.sleep(2.0)  # let them render some meshes
            victim = workers[-1]
        time.sleep(0.1)
    assert victim is not None, "no builder worker seen"
    os.kill(victim, signal.SIGKILL)
    try:
        stdout, stderr = proc.communicate(timeout=60)  # it used to hang here forever
    finally:
        proc.kill()
    assert proc.returncode == 2, stderr[-2000:]
    lines = [l for l in user_lines(stderr) if "error:" in l]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert "builder worker process {} (killed by signal 9, SIGKILL) died".format(victim) in lines[0]
    assert not out.exists()
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)  # staging folder and lock removed
    for pid in children(proc.pid):
        pytest.fail("worker {} still runs".format(pid))
