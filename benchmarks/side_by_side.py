"""Helpers shared by the benchmarks that compare implementations in separate processes.

- ``checkout(rev)`` / ``remove(path)``: a git revision of this repository in a temporary
  worktree (the "baseline" of a before/after comparison), and its removal;
- ``run_worker(script, argv, python=None)``: ``script`` run again as a worker process with ``argv``
  (under another interpreter if given, e.g. a virtual environment with PyTorch);
  its last stdout line is the JSON result. A failed worker ends the benchmark with its stderr.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout(rev):
    """A temporary worktree of ``rev``; returns its path."""
    path = tempfile.mkdtemp(prefix="benchmark_baseline_")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", path, rev], check=True,
                   capture_output=True)
    return path


def remove(path):
    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def run_worker(script, argv, python=None):
    """Run ``script`` with ``argv`` under ``python`` (default: this interpreter)."""
    out = subprocess.run([python or sys.executable, os.path.abspath(script)] + argv, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit("benchmark worker {} failed:\n{}".format(" ".join(argv), out.stderr[-3000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])
