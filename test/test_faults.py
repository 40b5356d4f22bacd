"""Fault injection: every failure a user can cause is one clear line, and nothing is lost.

Each test injects a real fault (a NaN in a record, a truncated file, a killed
process, a full disk, a second trainer) and checks the exit status, that the
message names the file / record / flag at fault, and that what existed before
(checkpoints, datasets, results) is intact. Training runs use a tiny model at
resolution 16 on records written here.
"""
import json
import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spherical_cnn import training
from spherical_cnn.checkpoints import CheckpointStore
from spherical_cnn.data import records
from spherical_cnn.errors import EXIT_INTERRUPTED, raise_if_interrupted, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES, N_CLASSES, PER_CLASS = 16, 3, 6
TINY = ["--model", "two_branch", "--nfilters", "4,4", "--pool_layers", "0,1", "--concat_branches", "0,0",
        "--n_filter_params", "4", "--input_res", str(RES), "--n_classes", str(N_CLASSES),
        "--dtype", "complex64", "--mag_ang", "--real_inputs", "--dset", "from_cached_tfrecords",
        "--train_bsize", "6", "--tensorboard_histograms", "0", "--progress", "none",
        "--learning_rate", "{0: 0.01}"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
TF_NATIVE_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} )")


def signal_at_marker(cmd, marker, sig, env, timeout):
    """Run ``cmd``; send ``sig`` once a line of its stdout holds ``marker``; wait for it to end.
    Returns (process, rest of stdout, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if marker in line:
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=timeout)
    return proc, out, err


def user_lines(text):
    """Lines of a subprocess' stderr without TensorFlow's native logging."""
    return [l for l in text.splitlines() if l.strip() and not TF_NATIVE_LOG.match(l)]


def _maps(rng, n, y):
    mag = 1.0 + np.asarray(y)[:, None, None, None] + 0.2 * rng.random((n, RES, RES, 1))
    return (mag * np.exp(1j * rng.uniform(0, np.pi / 2, (n, RES, RES, 1)))).astype(np.complex64)


def write_split(path, seed, label_offset=0, edit=None):
    """A file of PER_CLASS records per class with fnames; ``edit(i, x, y)`` may alter record i."""
    rng = np.random.default_rng(seed)
    y = np.arange(PER_CLASS * N_CLASSES) % N_CLASSES
    x = _maps(rng, len(y), y)
    stem = os.path.basename(path).split(".")[0]
    recs = []
    for i in range(len(y)):
        xi, yi = x[i], int(y[i]) + label_offset
        if edit is not None:
            xi, yi = edit(i, xi.copy(), yi)
        recs.append(records.encode_example(xi, yi, fname="{}/mesh_{:02d}.off".format(stem, i), idrot=0))
    records.write_records(str(path), recs)
    return str(path)


def make_dataset(directory, **edits):
    """train_000, train_001, val_000, test_000; ``edits[name]`` alters records of that file."""
    os.makedirs(directory, exist_ok=True)
    for seed, name in enumerate(["train_000", "train_001", "val_000", "test_000"]):
        write_split(os.path.join(directory, name + ".tfrecord"), seed, edit=edits.get(name))
    return str(directory)


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("good"))


def train_cli(argv):
    """Run the trainer as scripts/train.py does, in this process; return the exit status."""
    return run_cli(lambda a: training.run(a) and None, argv, prog="train.py")


def one_error_line(capsys):
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("train.py: error: ") and "Traceback" not in err[0]
    return err[0]


# --- bad data: named with file and record, before any epoch -------------------------------


def _nan(i, x, y):
    if i == 4:
        x[3, 5, 0] = np.nan
    return x, y


def _inf(i, x, y):
    if i == 7:
        x[0, 0, 0] = np.inf + 0j
    return x, y


def _bad_label(i, x, y):
    return x, (N_CLASSES if i == 5 else y)


@pytest.mark.parametrize("fault,split,record", [
    (_nan, "train_001", 4), (_inf, "test_000", 7),
    (_bad_label, "train_000", 5), (_bad_label, "val_000", 5), (_bad_label, "test_000", 5)])
def test_bad_record_stops_before_training(tmp_path, capsys, fault, split, record):
    dset = make_dataset(tmp_path / "d", **{split: fault})
    logdir = str(tmp_path / "run")
    assert train_cli(TINY + ["--dset_dir", dset, "--logdir", logdir, "--n_epochs", "1"]) == 2
    line = one_error_line(capsys)
    assert "{}.tfrecord record {} ({}/mesh_{:02d}.off)".format(split, record, split, record) in line
    expected = "label y=3 outside [0, 3)" if fault is _bad_label else "non-finite value"
    assert expected in line
    assert not os.path.exists(os.path.join(logdir, "latest"))  # nothing trained


def test_truncated_and_corrupted_files_are_named(tmp_path, capsys):
    dset = make_dataset(tmp_path / "d")
    path = os.path.join(dset, "test_000.tfrecord")
    data = open(path, "rb").read()
    record_size = len(data) // (PER_CLASS * N_CLASSES)
    with open(path, "wb") as f:  # cut in the middle of record 10
        f.write(data[:10 * record_size + record_size // 2])
    assert train_cli(TINY + ["--dset_dir", dset, "--logdir", str(tmp_path / "r"), "--n_epochs", "1"]) == 2
    line = one_error_line(capsys)
    assert "test_000.tfrecord record 10" in line and "truncated" in line

    corrupted = bytearray(data)
    corrupted[7 * record_size + record_size // 2] ^= 0xFF  # a data byte of record 7: CRC fails
    with open(path, "wb") as f:
        f.write(bytes(corrupted))
    assert train_cli(TINY + ["--dset_dir", dset, "--logdir", str(tmp_path / "r"), "--n_epochs", "1"]) == 2
    line = one_error_line(capsys)
    assert "test_000.tfrecord record 7" in line and "corrupted" in line


def test_dtype_that_contradicts_the_manifest(tmp_path, capsys):
    dset = make_dataset(tmp_path / "d")
    with open(os.path.join(dset, "manifest.json"), "w") as f:
        json.dump({"input_res": RES, "nchannels": 1, "dtype": "complex64"}, f)
    # float32 x 2 channels has exactly the byte count of complex64 x 1: only the manifest tells
    argv = [a for a in TINY if a not in ("--mag_ang",)]
    argv[argv.index("complex64")] = "float32"
    assert train_cli(argv + ["--nchannels", "2", "--dset_dir", dset, "--logdir", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert "built with --nchannels 1 --dtype complex64" in line and "manifest.json" in line
    assert "but --nchannels 2 --dtype float32 was given" in line


def test_verification_is_cached(tmp_path):
    from spherical_cnn.data import verify
    dset = make_dataset(tmp_path / "d")
    spec = verify.RecordSpec(res=RES, nchannels=1, dtype="complex64", n_classes=N_CLASSES)
    paths = [os.path.join(dset, f) for f in sorted(os.listdir(dset))]
    first = verify.verify_files(paths, spec)
    calls = []
    real = verify.verify_file
    verify.verify_file = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        assert verify.verify_files(paths, spec) == first and calls == []
        write_split(paths[0], 9, edit=_nan)  # changed file (size/mtime): checked again, and caught
        with pytest.raises(verify.DataError, match="record 4"):
            verify.verify_files(paths, spec)
        assert len(calls) == 1
    finally:
        verify.verify_file = real


def test_learning_rate_and_ranges_are_checked(good_dir, tmp_path, capsys):
    for flag, value, text in [("--learning_rate", "{0: -1}", "positive"),
                              ("--first_n", "0", "--first_n"), ("--nfilters", "4,0", "--nfilters")]:
        argv = TINY + ["--dset_dir", good_dir, "--logdir", str(tmp_path / "r"), flag, value]
        assert train_cli(argv) == 2
        assert text in one_error_line(capsys)


# --- non-finite training ------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    def huge(i, x, y):  # finite values whose squares overflow float32: the loss becomes NaN
        if i == 2:
            x[:] = 3e38
        return x, y
    dset = make_dataset(tmp_path / "d", train_001=huge)
    logdir = str(tmp_path / "run")
    argv = TINY + ["--dset_dir", dset, "--logdir", logdir, "--n_epochs", "3"]
    assert train_cli(argv) == 2
    line = one_error_line(capsys)
    assert "non-finite" in line and "at epoch 2, step" in line
    assert "train_001/mesh_02.off" in line and "epoch 1" in line
    store = CheckpointStore(logdir)
    import tensorflow as tf
    epoch = tf.Variable(0, dtype=tf.int64)
    assert store.restore("latest", tf.train.Checkpoint(epoch=epoch), expect_partial=True)
    assert int(epoch.numpy()) == 1
    assert not os.path.exists(os.path.join(logdir, "final"))


# --- results are never lost -------------------------------------------------------------


def test_rerun_resume_and_test_only_keep_the_real_figures(good_dir, tmp_path, capsys):
    logdir = str(tmp_path / "run")
    argv = TINY + ["--dset_dir", good_dir, "--logdir", logdir, "--n_epochs", "2", "--no_export"]
    first = training.run(argv)
    saved = json.load(open(os.path.join(logdir, "results.json")))
    capsys.readouterr()
    again = training.run(argv)  # finished run re-run: nothing to train
    out = capsys.readouterr().out
    assert "All 2 epochs already done" in out
    for key in ("train", "val", "test", "train_time"):
        assert again[key] == pytest.approx(first[key]) and np.isfinite(again[key])
    assert json.load(open(os.path.join(logdir, "results.json"))) == saved
    row = "|run|{:.4f}|{:.4f}|{:.4f}|".format(first["train"], first["val"], first["test"])
    assert row in out
    only = training.run(["--test_only", "--logdir", logdir])
    assert (only["train"], only["val"]) == pytest.approx((first["train"], first["val"]))
    assert row in capsys.readouterr().out


def test_results_json_is_strict(tmp_path):
    training.write_results(str(tmp_path), {"train": float("nan"), "test": 0.5, "run_id": "x"})
    assert json.loads(open(tmp_path / "results.json").read()) == {"train": None, "test": 0.5, "run_id": "x"}


# --- one trainer per logdir ---------------------------------------------------------------


def test_second_trainer_is_refused_and_stale_lock_taken_over(good_dir, tmp_path, capsys):
    logdir = tmp_path / "run"
    logdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (logdir / ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid,
                                                  "started": "earlier"}))
        argv = TINY + ["--dset_dir", good_dir, "--logdir", str(logdir), "--n_epochs", "1", "--no_export"]
        assert train_cli(argv) == 2
        line = one_error_line(capsys)
        assert "in use by another trainer (PID {}".format(holder.pid) in line and str(logdir) in line
        assert not (logdir / "latest").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and taken over
    assert train_cli(argv) == 0
    assert "taking over the lock" in capsys.readouterr().out
    assert (logdir / "latest").exists() and not (logdir / ".lock").exists()


def test_concurrent_trainers_one_wins(good_dir, tmp_path):
    logdir = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train.py")] + TINY + [
        "--dset_dir", good_dir, "--logdir", logdir, "--n_epochs", "2", "--no_export"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    assert [l for l in user_lines(loser[1]) if "in use by another trainer" in l]
    assert "Traceback" not in loser[1]
    log = open(os.path.join(logdir, "logging.log")).read()
    assert log.count("epoch=1;") == 1 and log.count("epoch=2;") == 1


# --- interruptions ------------------------------------------------------------------------

KILL_IN_SAVE = r"""
import os, sys, time
sys.path.insert(0, {root!r})
from spherical_cnn import checkpoints, training
phase = {phase!r}
real_replace = os.replace
def slow_replace(src, dst):
    real_replace(src, dst)
    if phase == "after_move_old" and dst.endswith("latest.old"):
        print("IN-SAVE", flush=True); time.sleep(60)
checkpoints.os.replace = slow_replace
real_write = checkpoints.tf.train.Checkpoint.write
def slow_write(self, prefix, **kw):
    out = real_write(self, prefix, **kw)
    if phase == "after_write_tmp" and "latest.tmp" in prefix and training_epoch[0] >= 2:
        print("IN-SAVE", flush=True); time.sleep(60)
    return out
training_epoch = [0]
real_epoch = training.Trainer.train_epoch
def counting(self, epoch):
    training_epoch[0] = epoch + 1
    return real_epoch(self, epoch)
training.Trainer.train_epoch = counting
checkpoints.tf.train.Checkpoint.write = slow_write
training.run(sys.argv[1:])
"""


@pytest.mark.parametrize("phase", ["after_write_tmp", "after_move_old"])
def test_kill_during_checkpoint_save_loses_nothing(good_dir, tmp_path, phase):
    """SIGKILL while `latest` of epoch 2 is being saved; the rerun resumes from a complete one."""
    logdir = str(tmp_path / "run")
    argv = TINY + ["--dset_dir", good_dir, "--logdir", logdir, "--n_epochs", "3", "--no_export"]
    script = KILL_IN_SAVE.format(root=ROOT, phase=phase)
    proc = subprocess.Popen([sys.executable, "-c", script] + argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV)
    lines = []
    deadline = time.time() + 240
    for line in proc.stdout:
        lines.append(line)
        if "IN-SAVE" in line or time.time() > deadline:
            break
    proc.kill()
    proc.wait()
    assert any("IN-SAVE" in l for l in lines), "".join(lines[-20:])
    left = sorted(os.listdir(logdir))
    assert ("latest.tmp" in left) if phase == "after_write_tmp" else ("latest.old" in left), left

    rerun = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py")] + argv,
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    # either way epoch 1's `latest` is the complete one (restored from latest.old in the second case)
    assert "Continuing from checkpoint" in rerun.stdout and "at epoch 1" in rerun.stdout
    assert "taking over the lock" in rerun.stdout  # the killed trainer's lock was stale
    left = sorted(os.listdir(logdir))
    assert not [f for f in left if f.endswith((".tmp", ".old"))], left
    assert "epoch=3;" in rerun.stdout


def test_ctrl_c_reports_the_kept_checkpoint(good_dir, tmp_path):
    logdir = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train.py")] + TINY + [
        "--dset_dir", good_dir, "--logdir", logdir, "--n_epochs", "200", "--no_export"]
    proc, out, err = signal_at_marker(cmd, "epoch=2;", signal.SIGINT, ENV, timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    lines = user_lines(err)
    assert len(lines) == 1 and "interrupted; latest checkpoint is epoch" in lines[0], err[-2000:]
    kept = int(lines[0].split("epoch ")[1].split()[0])
    assert kept >= 2 and os.path.exists(os.path.join(logdir, "latest", "ckpt.index"))
    assert not os.path.exists(os.path.join(logdir, ".lock"))


def test_an_interrupt_swallowed_by_library_code_still_stops_the_command(capsys):
    """Code that catches KeyboardInterrupt (or Python ignoring it inside a __del__) must
    not lose a Ctrl-C: the next raise_if_interrupted() raises it again."""
    steps = []

    def main(argv):
        for i in range(50):
            try:  # a callback that swallows the interrupt
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)
            except KeyboardInterrupt:
                pass
            steps.append(i)
            raise_if_interrupted()
        return 0
    before = signal.getsignal(signal.SIGINT)
    assert run_cli(main, [], prog="loop") == EXIT_INTERRUPTED
    assert steps == [0] and "loop: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before
    assert run_cli(lambda argv: raise_if_interrupted() or 0, [], prog="next") == 0  # reset


# --- full disk ----------------------------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(mnt, size):
    """A tmpfs of ``size`` (e.g. '64k') mounted at the new folder ``mnt``, unmounted afterwards.

    Skips the test where that is not possible (not root, no mount permission).
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    os.mkdir(mnt)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "full", "64k") as mnt:
        yield mnt


def test_full_disk_during_checkpoint_is_one_line(good_dir, tiny_tmpfs, capsys):
    logdir = str(tiny_tmpfs / "run")
    argv = TINY + ["--dset_dir", good_dir, "--logdir", logdir, "--n_epochs", "2", "--no_export"]
    assert train_cli(argv) == 2
    line = one_error_line(capsys)
    assert "no space left on the device" in line and logdir in line
    left = os.listdir(logdir)
    assert not [f for f in left if f.endswith(".tmp")], left


# --- dataset builds are atomic ------------------------------------------------------------

MAKE_DATASET = os.path.join(ROOT, "scripts", "make_dataset.py")


def _mesh_tree(root, classes=("box", "cone"), broken=False):
    import trimesh
    for c in classes:
        for split, n in (("train", 3), ("test", 1)):
            os.makedirs(os.path.join(root, c, split), exist_ok=True)
            for i in range(n):
                path = os.path.join(root, c, split, "{}_{}.off".format(c, i))
                if broken:
                    with open(path, "w") as f:
                        f.write("OFF\n3 1 0\n0 0\n")
                else:
                    trimesh.creation.box(extents=[1, 1 + i, 2]).export(path)
    return str(root)


def _make_dataset_cli(argv):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import make_dataset
    finally:
        sys.path.pop(0)
    return run_cli(make_dataset.main, argv, prog="make_dataset.py")


def _snapshot(directory):
    return {f: open(os.path.join(directory, f), "rb").read() for f in sorted(os.listdir(directory))}


def test_empty_class_and_unrenderable_meshes_replace_nothing(tmp_path, capsys):
    out = str(tmp_path / "ds")
    good = _mesh_tree(tmp_path / "good")
    assert _make_dataset_cli([good, "--out", out, "--input_res", "8", "--n_rotations", "2",
                              "--workers", "1"]) == 0
    before = _snapshot(out)
    capsys.readouterr()

    empty = _mesh_tree(tmp_path / "empty")
    os.makedirs(os.path.join(empty, "lamp", "train"))
    assert _make_dataset_cli([empty, "--out", out, "--overwrite", "--input_res", "8", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'lamp' (train)" in err[0] and "'lamp' (test)" in err[0]

    broken = _mesh_tree(tmp_path / "broken", broken=True)
    assert _make_dataset_cli([broken, "--out", out, "--overwrite", "--input_res", "8", "--workers", "1"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if "error:" in l]
    assert len(err) == 1 and "no mesh could be rendered (8 skipped; first error: box/" in err[0]
    assert _snapshot(out) == before  # the old dataset is untouched
    assert sorted(os.listdir(tmp_path)) == ["broken", "ds", "empty", "good"]  # no leftovers


def test_killed_build_leaves_no_dataset_and_next_build_cleans_up(tmp_path):
    out = tmp_path / "syn"
    cmd = [sys.executable, MAKE_DATASET, "--synthetic", "--out", str(out), "--input_res", "8",
           "--n_train_per_class", "6", "--n_test_per_class", "2", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 120
    staging = []
    while time.time() < deadline and proc.poll() is None:
        staging = [f for f in os.listdir(tmp_path) if f.startswith(".syn.partial-")]
        if staging:
            time.sleep(0.5)  # let it write some records
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert staging, "the build finished or never started its staging folder"
    assert not out.exists()  # nothing that looks like a dataset
    assert [f for f in os.listdir(tmp_path) if f.startswith(".syn.partial-")]

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "left by an interrupted build" in rerun.stderr
    assert sorted(os.listdir(tmp_path)) == ["syn"]
    assert os.path.exists(out / "manifest.json") and os.path.exists(out / "test_000.tfrecord")
