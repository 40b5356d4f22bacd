"""Fault injection, round 2 (issue 22): killed builder workers, concurrent builds, damaged
checkpoints, runs that moved, read-only file systems, damaged flags / @files / models /
caches, size guards and a killed worker of a multi-worker run.

Each test injects the fault for real (SIGKILL of a process, flipped or cut bytes, a
read-only tmpfs) and checks the exit status, the one line the user reads, and that
nothing that existed before was lost.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from spherical_cnn import training
from spherical_cnn.errors import run_cli

from test_faults import (ENV, MAKE_DATASET, ROOT, TINY, good_dir, make_dataset, mounted_tmpfs, one_error_line,  # noqa: F401
                         train_cli, user_lines)

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


@pytest.mark.slow
def test_killed_builder_worker_stops_the_build_with_one_line(tmp_path):
    out = tmp_path / "wk"
    # enough work (~2,000 meshes at res 64) that the build cannot finish before the kill on a
    # quiet machine (420 meshes at res 16 once did, in CI)
    cmd = [sys.executable, MAKE_DATASET, "--synthetic", "--out", str(out), "--input_res", "64",
           "--n_train_per_class", "150", "--n_test_per_class", "10", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        workers = [p for p in children(proc.pid) if "spawn_main" in cmdline(p)]
        if len(workers) >= 2:
            time.sleep(1.0)  # let them start rendering
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


def test_the_killed_worker_is_named_when_the_pool_reaps_it_late(monkeypatch):
    """The CI failure this reproduces: under load the pool's manager thread reaped the killed
    worker (waitpid) just before the builder read its exit code, so the builder saw none and
    named only a worker the pool had ended with SIGTERM. Here the manager thread reaps the
    killed worker before failing the futures and stores its exit code 3 s later."""
    import concurrent.futures.process as cf_process
    import multiprocessing
    from spherical_cnn.data import builder

    original = cf_process._ExecutorManagerThread.terminate_broken
    killed = {}

    def terminate_broken_reaping_late(self, cause):
        victim = next(p for p in self.processes.values() if p.pid == killed["pid"])
        _, status = os.waitpid(victim.pid, 0)
        original(self, cause)
        time.sleep(3.0)
        victim._popen.returncode = os.waitstatus_to_exitcode(status)

    monkeypatch.setattr(cf_process._ExecutorManagerThread, "terminate_broken", terminate_broken_reaping_late)
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    processes = {}
    try:
        futures = [pool.submit(time.sleep, 60) for _ in range(2)]
        processes = dict(pool._processes)
        assert len(processes) == 2
        time.sleep(2.0)  # both workers started
        # the first worker: the manager thread may not watch a worker spawned after it began to wait
        killed["pid"] = min(processes)
        os.kill(killed["pid"], signal.SIGKILL)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            futures[0].result(timeout=30)
        message = builder._dead_workers(pool, processes)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes.values():
            proc.kill()
    assert message == "builder worker process {} (killed by signal 9, SIGKILL) died".format(killed["pid"])


# --- 8. multi-worker: a worker killed mid-epoch, the run resumes on restart -----------------


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_workers(cmd, tmp_path, ports):
    cluster = {"worker": ["127.0.0.1:{}".format(p) for p in ports]}
    procs = []
    for index in range(2):
        env = {**ENV, "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(cmd + ["--logdir", str(tmp_path / "worker{}".format(index))],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


@pytest.mark.slow
def test_multi_worker_run_survives_a_killed_worker(good_dir, tmp_path):
    from spherical_cnn.checkpoints import saved_epoch
    cmd = [sys.executable, TRAIN] + TINY + ["--dset_dir", good_dir, "--n_epochs", "4", "--no_export",
                                            "--skip_val", "--distribute", "multi_worker"]
    procs = _start_workers(cmd, tmp_path, [_free_port(), _free_port()])
    try:
        seen = []
        for line in procs[0].stdout:
            seen.append(line)
            if "epoch=1;" in line:
                time.sleep(0.5)  # into epoch 2
                os.kill(procs[1].pid, signal.SIGKILL)
                break
        assert any("epoch=1;" in l for l in seen), "".join(seen[-20:]) + procs[0].stderr.read()[-2000:]
        out, err = procs[0].communicate(timeout=180)  # the chief notices and stops
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 2, err[-3000:]
    lines = user_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "lost worker /job:worker/replica:0/task:1 of the multi-worker run" in lines[0]
    # on a loaded machine the chief may finish epoch 2 before it notices the loss
    kept = re.search(r"'latest' \(epoch (\d+)\) in (\S+) is intact", lines[0])
    assert kept and kept.group(2) == str(tmp_path / "worker0"), lines[0]
    kept = int(kept.group(1))
    assert 1 <= kept < 4, lines[0]
    chief = tmp_path / "worker0"
    assert saved_epoch(str(chief / "latest" / "ckpt")) == kept  # nothing lost

    # restart both workers with the same command: the run resumes at epoch 1 and finishes
    procs = _start_workers(cmd, tmp_path, [_free_port(), _free_port()])
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, o[-2000:] + e[-2000:]
    assert "Continuing from checkpoint" in outs[0][0] and "at epoch {}".format(kept) in outs[0][0]
    assert "Continuing from the chief's checkpoint at epoch {}".format(kept) in outs[1][0]
    assert "epoch={};".format(kept) not in outs[0][0]
    assert all("epoch={};".format(e) in outs[0][0] for e in range(kept + 1, 5))
    results = json.load(open(chief / "results.json"))
    assert results["steps"] == 4 * 3  # 4 epochs of 18 records in batches of 6: none lost or repeated


# --- a finished tiny run, trained once, copied by the tests ---------------------------------


@pytest.fixture(scope="module")
def finished_run(good_dir, tmp_path_factory):
    """A 2-epoch run with best, latest (+ latest.prev), final and model.keras."""
    logdir = str(tmp_path_factory.mktemp("finished") / "run")
    training.run(TINY + ["--dset_dir", good_dir, "--logdir", logdir, "--n_epochs", "2"])
    assert os.path.isdir(os.path.join(logdir, "latest.prev"))
    return logdir


def copy_run(finished_run, dest):
    shutil.copytree(finished_run, str(dest), symlinks=True)
    return str(dest)


def snapshot(directory):
    """{relative path: bytes} of every file below ``directory``."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, directory)] = open(path, "rb").read()
    return out


def flip_bytes(path, offset=None, n=8):
    data = bytearray(open(path, "rb").read())
    at = len(data) // 2 if offset is None else offset
    for i in range(at, min(at + n, len(data))):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def data_file(ckpt_dir):
    return [os.path.join(ckpt_dir, f) for f in os.listdir(ckpt_dir) if f.startswith("ckpt.data-")][0]


# --- 2. a run is its --logdir: copied, moved, relative paths --------------------------------


def test_copied_and_moved_runs_are_tested_where_they_are(finished_run, tmp_path, capsys):
    original_log = open(os.path.join(finished_run, "logging.log")).read()
    copy = copy_run(finished_run, tmp_path / "copy")
    shutil.rmtree(os.path.join(copy, "final"))
    capsys.readouterr()
    assert train_cli(["--test_only", "--logdir", copy]) == 2  # used to test the original's final
    line = one_error_line(capsys)
    assert "no 'final' checkpoint in {}".format(copy) in line and "--fallback_to_best" in line
    assert train_cli(["--test_only", "--logdir", copy, "--fallback_to_best"]) == 0
    out = capsys.readouterr().out
    assert "testing 'best' instead of 'final', as --fallback_to_best asks" in out
    assert open(os.path.join(finished_run, "logging.log")).read() == original_log  # untouched
    assert "Start testing" in open(os.path.join(copy, "logging.log")).read()

    moved = str(tmp_path / "moved")
    os.rename(copy_run(finished_run, tmp_path / "tomove"), moved)
    assert train_cli(["--test_only", "--logdir", moved]) == 0
    assert "|run|" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "tomove")  # not re-created


def test_run_with_relative_paths_is_tested_from_elsewhere(finished_run, good_dir, tmp_path, capsys,
                                                          monkeypatch):
    copy = copy_run(finished_run, tmp_path / "archive" / "run")
    flags = os.path.join(copy, "flags.yaml")
    text = open(flags).read().replace(good_dir, "data").replace(finished_run, "run")
    open(flags, "w").write(text)  # as saved by a run started with relative paths
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert train_cli(["--test_only", "--logdir", copy]) == 2
    line = one_error_line(capsys)
    assert "the dataset saved in {}, data, is not there".format(flags) in line and "--dset_dir" in line
    assert train_cli(["--test_only", "--logdir", copy, "--dset_dir", good_dir]) == 0  # the flag wins
    assert os.listdir(elsewhere) == []  # no stray logging.log or run folder


# --- 3. damaged checkpoints: verified on restore, fallback, one line ------------------------


@pytest.mark.parametrize("damage", ["flip_index", "truncate_data", "delete_data", "flip_data"])
def test_damaged_latest_falls_back_to_the_newest_good_checkpoint(finished_run, good_dir, tmp_path,
                                                                 capsys, damage):
    from spherical_cnn.checkpoints import saved_epoch
    run = copy_run(finished_run, tmp_path / "run")
    latest = os.path.join(run, "latest")
    if damage == "flip_index":
        flip_bytes(os.path.join(latest, "ckpt.index"), offset=10)
        named = os.path.join(latest, "ckpt.index")
    elif damage == "truncate_data":
        path = data_file(latest)
        os.truncate(path, os.path.getsize(path) // 2)
        named = path
    elif damage == "delete_data":
        named = data_file(latest)
        os.remove(named)
    else:
        named = data_file(latest)
        flip_bytes(named)
    newest_good = max(saved_epoch(os.path.join(run, n, "ckpt")) for n in ("latest.prev", "best"))
    capsys.readouterr()
    argv = TINY + ["--dset_dir", good_dir, "--logdir", run, "--n_epochs", "3", "--no_export"]
    assert train_cli(argv) == 0
    out = capsys.readouterr().out
    assert "checkpoint 'latest' is damaged (latest: {}".format(named) in out, out[-3000:]
    assert "instead" in out and "at epoch {}".format(newest_good) in out
    assert "epoch=3;" in out


def test_no_good_checkpoint_is_one_line_and_deletes_nothing(finished_run, good_dir, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    for name in ("latest", "latest.prev", "best"):
        flip_bytes(os.path.join(run, name, "ckpt.index"), offset=10)
    before = snapshot(run)
    capsys.readouterr()
    argv = TINY + ["--dset_dir", good_dir, "--logdir", run, "--n_epochs", "3", "--no_export"]
    assert train_cli(argv) == 2
    line = one_error_line(capsys)
    assert "no usable 'latest' checkpoint in {}".format(run) in line
    for name in ("latest", "latest.prev", "best"):
        assert os.path.join(run, name, "ckpt.index") in line
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k != "logging.log"} == \
        {k: v for k, v in before.items() if k != "logging.log"}


def test_damaged_final_with_test_only(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    named = data_file(os.path.join(run, "final"))
    flip_bytes(named)
    capsys.readouterr()
    assert train_cli(["--test_only", "--logdir", run]) == 2
    line = one_error_line(capsys)
    assert "no usable 'final' checkpoint" in line and named in line and "--fallback_to_best" in line
    assert train_cli(["--test_only", "--logdir", run, "--fallback_to_best"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint 'final' is damaged" in out and "using 'best'" in out and "|run|" in out


# --- 4. two builds into one --out -----------------------------------------------------------


def test_concurrent_builds_into_one_out_one_refused(tmp_path):
    out = tmp_path / "syn"
    cmd = [sys.executable, MAKE_DATASET, "--synthetic", "--out", str(out), "--input_res", "8",
           "--n_train_per_class", "4", "--n_test_per_class", "2", "--workers", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    loser = outs[codes.index(2)][1]
    lines = [l for l in user_lines(loser) if "error:" in l]
    assert len(lines) == 1 and "Traceback" not in loser, loser
    # refused by the lock while the other runs, or by the non-empty --out once it finished
    assert ("--out {} is in use by another dataset build".format(out) in lines[0]
            or "exists and is not empty" in lines[0]), lines
    assert sorted(os.listdir(tmp_path)) == ["syn"]
    assert json.load(open(out / "manifest.json"))["counts"]["test"]["meshes"] == 24


# (the rename step never replacing a dataset it did not start from: test/test_atomic_output.py)


# --- 5. read-only file systems --------------------------------------------------------------


@pytest.fixture
def read_only_copy(finished_run, good_dir, tmp_path):
    """The finished run and its dataset on a tmpfs remounted read-only (needs root)."""
    # (chmod does not stop root, so the read-only file system is a remounted tmpfs)
    with mounted_tmpfs(tmp_path / "ro", "64m") as mnt:
        run = copy_run(finished_run, mnt / "run")
        data = shutil.copytree(good_dir, str(mnt / "data"))
        done = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only: " + done.stderr.strip())
        yield run, data, mnt


def test_read_only_run_is_tested_and_predicted(read_only_copy, capsys):
    run, data, mnt = read_only_copy
    before = snapshot(str(mnt))
    capsys.readouterr()
    assert train_cli(["--test_only", "--logdir", run, "--dset_dir", data]) == 0
    out = capsys.readouterr().out
    assert "--logdir {} is read-only".format(run) in out and "going on without its lock" in out
    assert "|run|" in out

    from spherical_cnn.cli import predict
    status = run_cli(predict.main, ["--logdir", run, "--records", os.path.join(data, "test_000.tfrecord")],
                     prog="predict.py")
    assert status == 0 and "accuracy:" in capsys.readouterr().out
    assert snapshot(str(mnt)) == before


def test_writing_to_a_read_only_place_is_one_line(read_only_copy, capsys):
    run, data, mnt = read_only_copy
    before = snapshot(str(mnt))
    capsys.readouterr()
    argv = TINY + ["--dset_dir", data, "--logdir", run, "--n_epochs", "3", "--no_export"]
    assert train_cli(argv) == 2  # resume: checkpoints cannot be written
    line = one_error_line(capsys)
    assert "cannot write to --logdir {}".format(run) in line and "Read-only file system" in line
    assert train_cli(TINY + ["--dset_dir", data, "--logdir", str(mnt / "new"), "--n_epochs", "1"]) == 2
    line = one_error_line(capsys)
    assert str(mnt / "new") in line and "read-only file system" in line.lower()

    from test_faults import _make_dataset_cli
    out = str(mnt / "ds")
    assert _make_dataset_cli(["--synthetic", "--out", out, "--input_res", "8", "--workers", "1",
                              "--n_train_per_class", "2", "--n_test_per_class", "1"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "--out {}".format(out) in err[0] and "Read-only file system" in err[0], err
    assert snapshot(str(mnt)) == before


# --- 6. damaged flags.yaml, @files, model.keras, verification cache -------------------------


@pytest.mark.parametrize("content,why", [
    (b"", "an empty file"),
    (None, "--input_res: 'abc' is not a valid value"),
    (b"!!python/object/apply:os.system ['touch /tmp/spherical-cnn-pwned']\n", "not readable YAML"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    (b"- a\n- list\n", "expected a mapping of flags, found list"),
])
def test_damaged_flags_file_is_one_line(finished_run, tmp_path, capsys, content, why):
    run = copy_run(finished_run, tmp_path / "run")
    flags = os.path.join(run, "flags.yaml")
    if content is None:
        content = open(flags, "rb").read().replace(b"input_res: 16", b"input_res: abc")
    open(flags, "wb").write(content)
    capsys.readouterr()
    assert train_cli(["--test_only", "--logdir", run]) == 2
    line = one_error_line(capsys)
    assert "damaged flags file {}".format(flags) in line and why in line, line
    from spherical_cnn.cli import predict
    mesh = tmp_path / "x.off"  # a readable input: the flags file is the only fault
    mesh.write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n")
    assert run_cli(predict.main, ["--logdir", run, "--meshes", str(mesh)], prog="predict.py") == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "damaged flags file {}".format(flags) in err[0], err
    assert not os.path.exists("/tmp/spherical-cnn-pwned")


def test_at_file_cycles_and_binary_at_files_are_one_line(tmp_path, capsys):
    a, b, c, binary = (tmp_path / n for n in ("a.txt", "b.txt", "c.txt", "bin.txt"))
    a.write_text("--n_epochs\n1\n@{}\n".format(a))
    b.write_text("@{}\n".format(c))
    c.write_text("--seed\n3\n@{}\n".format(b))
    binary.write_bytes(b"--n_epochs\n\x00\x01\xff\xfe")
    for path, text in ((a, "@file {} includes itself ({} -> {})".format(a, a, a)),
                       (b, "includes itself ({} -> {} -> {})".format(b, c, b)),
                       (binary, "@file {} is not a text file".format(binary))):
        assert train_cli(["@" + str(path), "--logdir", str(tmp_path / "run")]) == 2
        line = one_error_line(capsys)
        assert text in line, line
    assert not os.path.exists(tmp_path / "run")


def _zip_without_config(path):
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", "{}")


@pytest.mark.parametrize("damage,why", [
    ("truncate", "not a .keras archive"), ("text", "not a .keras archive"),
    ("directory", "it is a directory"), ("no_config", "the archive has no config.json")])
def test_bad_model_keras_is_one_line(finished_run, tmp_path, capsys, damage, why):
    from spherical_cnn.cli import predict
    run = copy_run(finished_run, tmp_path / "run")
    model = os.path.join(run, "model.keras")
    if damage == "truncate":
        os.truncate(model, os.path.getsize(model) // 2)
    elif damage == "text":
        open(model, "w").write("not a model\n")
    elif damage == "directory":
        os.remove(model)
        os.mkdir(model)
    else:
        _zip_without_config(model)
    capsys.readouterr()
    mesh = tmp_path / "x.off"  # a readable input: the flags file is the only fault
    mesh.write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n")
    assert run_cli(predict.main, ["--logdir", run, "--meshes", str(mesh)], prog="predict.py") == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "cannot load the exported model {}".format(model) in err[0] and why in err[0], err


@pytest.mark.parametrize("content", ["[]", "null", '{"version": 1, "files": []}', "\x00\x01"])
def test_verification_cache_of_the_wrong_shape_is_rebuilt(good_dir, tmp_path, capsys, monkeypatch,
                                                         content):
    from spherical_cnn.cli import check_dataset
    from spherical_cnn.data import verify
    cache = str(tmp_path / "cache" / "verified-records.json")
    os.makedirs(os.path.dirname(cache))
    open(cache, "w").write(content)
    monkeypatch.setattr(verify, "cache_path", lambda: cache)
    argv = [good_dir, "--input_res", "16", "--dtype", "complex64", "--n_classes", "3"]
    assert run_cli(check_dataset.main, argv, prog="check_dataset.py") == 0
    err = capsys.readouterr().err
    assert "warning: verification cache {} is".format(cache) in err and "rebuilt" in err
    assert "Traceback" not in err
    rebuilt = json.load(open(cache))
    assert isinstance(rebuilt, dict) and rebuilt["files"]  # rebuilt with this check's files
    assert run_cli(check_dataset.main, argv, prog="check_dataset.py") == 0
    assert "verification cache" not in capsys.readouterr().err  # good again


# --- 7. size guards -------------------------------------------------------------------------


def test_size_guards_refuse_with_the_estimate(good_dir, tmp_path, capsys):
    from test_faults import _make_dataset_cli
    logdir = str(tmp_path / "run")
    assert train_cli(TINY[:-2] + ["--input_res", "1024", "--dset_dir", good_dir, "--logdir", logdir]) == 2
    line = one_error_line(capsys)
    assert "training needs about" in line and "harmonic tables" in line and "--ignore_size_check" in line
    assert not os.path.exists(logdir)
    out = str(tmp_path / "big")
    assert _make_dataset_cli(["--synthetic", "--out", out, "--input_res", "16384", "--workers", "1"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "rendering needs about" in err[0] and "per mesh (--input_res 16384" in err[0]
    assert sorted(os.listdir(tmp_path)) == []


def test_size_estimate_warns_above_half_the_memory():
    from spherical_cnn import sizes
    warned = []
    sizes.check((600, "it needs 600 B"), warn=warned.append, available=1000)
    assert warned and "it needs 600 B" in warned[0]
    with pytest.raises(sizes.TooLarge, match="more than the 1000 B"):
        sizes.check((1200, "it needs 1.2 KiB"), available=1000)
    sizes.check((1200, "x"), available=1000, ignore=True, warn=warned.append)
    assert "going on as --ignore_size_check asks" in warned[-1]


# --- 11. disk full: the builder names the dataset --------------------------------------------


def test_full_disk_during_build_names_the_path(tmp_path, capsys):
    from test_faults import _make_dataset_cli
    with mounted_tmpfs(tmp_path / "full", "64k") as mnt:
        out = str(mnt / "ds")
        assert _make_dataset_cli(["--synthetic", "--out", out, "--input_res", "32", "--workers", "1",
                                  "--n_train_per_class", "4", "--n_test_per_class", "2"]) == 2
        err = [l for l in capsys.readouterr().err.splitlines() if "error:" in l]
        assert len(err) == 1 and "no space left on the device writing the dataset {}".format(out) in err[0]
        assert os.listdir(mnt) == []  # staging folder and lock removed, no dataset
