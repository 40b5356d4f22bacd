"""The one atomic-output helper (spherical_cnn.data.atomic_output) that every builder,
importer and the pretrained shipper write through.

Faults are injected for real: a writer killed with SIGKILL between its two renames and
right after its exchange, an error inside the block, a full disk (a 64 KiB tmpfs, root
only), a dataset that appears while the writer runs, names at the file-system limit.
"""
import os
import signal
import subprocess
import sys

import pytest

from spherical_cnn.data import atomic_output
from spherical_cnn.data.atomic_output import AtomicFolder, hidden_name
from spherical_cnn.errors import DiskFull, LogdirInUse, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fill(folder, text):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        f.write(text)


def _read(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        return f.read()


def _hidden(parent):
    return sorted(f for f in os.listdir(parent) if f.startswith("."))


@pytest.mark.parametrize("use_exchange", [True, False])
def test_writes_and_replaces_only_when_complete(tmp_path, use_exchange):
    out = str(tmp_path / "ds")
    with AtomicFolder(out, exchange=use_exchange) as w:
        assert not os.path.exists(out) and os.path.isdir(w.stage)
        _fill(w.stage, "one")
    assert _read(out) == "one" and _hidden(tmp_path) == []

    with pytest.raises(FileExistsError, match="pass --overwrite to replace it"):
        AtomicFolder(out)
    with AtomicFolder(out, overwrite=True, exchange=use_exchange) as w:
        _fill(w.stage, "two")
        assert _read(out) == "one"  # the old output stays readable until the end
    assert _read(out) == "two" and _hidden(tmp_path) == []


def test_an_error_leaves_the_destination_as_it_was(tmp_path):
    out = str(tmp_path / "ds")
    _fill(out, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicFolder(out, overwrite=True) as w:
            _fill(w.stage, "half")
            raise RuntimeError("boom")
    assert _read(out) == "old" and _hidden(tmp_path) == []


def test_a_file_or_a_full_folder_is_refused_before_any_work(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        AtomicFolder(str(path), overwrite=True)
    with pytest.raises(FileExistsError, match="--dset_dir .* not empty"):
        _fill(str(tmp_path / "full"), "x")
        AtomicFolder(str(tmp_path / "full"), what="--dset_dir")


def test_never_replaces_a_dataset_it_did_not_start_from(tmp_path):
    """Moved here from test_faults_round2 (round 2, case 4): a dataset that appeared in
    --out while this build ran, without the lock (another host), is never replaced."""
    out = tmp_path / "ds"
    with pytest.raises(FileExistsError, match="filled by someone else"):
        with AtomicFolder(str(out)) as w:
            _fill(w.stage, "{}")
            _fill(str(out), '{"other": 1}')  # appeared while this build ran
    assert _read(str(out)) == '{"other": 1}'
    assert _hidden(tmp_path) == []


def test_one_writer_per_destination(tmp_path):
    out = str(tmp_path / "ds")
    with AtomicFolder(out) as w:
        _fill(w.stage, "first")
        with pytest.raises(LogdirInUse, match="--out {} is in use by another dataset build".format(out)):
            with AtomicFolder(out):
                pass
    assert _read(out) == "first"


@pytest.mark.parametrize("length", [245, 255])
def test_longest_legal_names_work(tmp_path, length):
    """A 245-character --out made the staging name pass the 255-byte limit (ENAMETOOLONG)."""
    out = str(tmp_path / ("d" * length))
    for overwrite in (False, True):
        with AtomicFolder(out, overwrite=overwrite) as w:
            assert all(len(f) <= 255 for f in os.listdir(tmp_path))
            _fill(w.stage, str(overwrite))
    assert _read(out) == "True" and _hidden(tmp_path) == []
    assert hidden_name("d" * length, "partial-h-1").split(".partial")[0] == \
        hidden_name("d" * length, "old-h-2").split(".old")[0]


# A writer that stops (SIGKILL from the test) at one point of its commit.
KILLED_WRITER = r"""
import os, sys, time
sys.path.insert(0, {root!r})
from spherical_cnn.data import atomic_output
point = sys.argv[2]
real_replace, real_exchange = os.replace, atomic_output.exchange

def replace(a, b):
    real_replace(a, b)
    if point == "between-renames" and os.path.basename(str(b)).startswith("."):
        print("STOPPED", flush=True)
        time.sleep(600)

def exchange(a, b):
    done = real_exchange(a, b)
    if point == "after-exchange":
        print("STOPPED" if done else "NO-EXCHANGE", flush=True)
        time.sleep(600)
    return done

os.replace, atomic_output.exchange = replace, exchange
with atomic_output.AtomicFolder(sys.argv[1], overwrite=True,
                                exchange=point == "after-exchange") as w:
    with open(os.path.join(w.stage, "manifest.json"), "w") as f:
        f.write("new")
"""


def _kill_at(out, point):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(root=ROOT), out, point],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # waits for the marker: no timing race
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if line.strip() == "NO-EXCHANGE":
        pytest.skip("this file system has no atomic exchange (renameat2)")
    assert line.strip() == "STOPPED", line


def test_killed_between_the_two_renames_the_next_build_restores_the_old_dataset(tmp_path, capsys):
    """Issue 31: --overwrite killed between its two renames left no --out, and the next
    build deleted the hidden old dataset. Now the next writer puts it back."""
    out = str(tmp_path / "ds")
    _fill(out, "old")
    _kill_at(out, "between-renames")
    assert not os.path.exists(out)
    assert [f for f in _hidden(tmp_path) if ".old-" in f], _hidden(tmp_path)

    # the next build (the real make_dataset command, without --overwrite) finds the old one
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import make_dataset
    finally:
        sys.path.pop(0)
    status = run_cli(make_dataset.main, ["--synthetic", "--out", out, "--input_res", "8",
                                         "--n_train_per_class", "2", "--n_test_per_class", "1",
                                         "--workers", "1"], prog="make_dataset.py")
    err = capsys.readouterr().err
    assert "restored {} from".format(out) in err and "left by an interrupted --overwrite" in err
    assert status == 2 and "exists and is not empty; pass --overwrite" in err
    assert _read(out) == "old" and _hidden(tmp_path) == []


def test_killed_right_after_the_exchange_the_new_output_is_in_place(tmp_path):
    out = str(tmp_path / "ds")
    _fill(out, "old")
    _kill_at(out, "after-exchange")
    assert _read(out) == "new"  # the destination never went missing
    left = _hidden(tmp_path)
    assert [f for f in left if ".partial-" in f], left  # the replaced output, to be removed
    with AtomicFolder(out, overwrite=True) as w:
        _fill(w.stage, "newer")
    assert _read(out) == "newer" and _hidden(tmp_path) == []


def test_full_disk_names_the_destination_and_keeps_it(tmp_path):
    from test_faults import mounted_tmpfs
    with mounted_tmpfs(tmp_path / "full", "64k") as mnt:
        out = str(mnt / "ds")
        _fill(out, "old")
        with pytest.raises(DiskFull) as err:
            with AtomicFolder(out, overwrite=True) as w:
                with open(os.path.join(w.stage, "big"), "wb") as f:
                    f.write(b"\0" * (1 << 20))
        assert "no space left on the device writing the dataset {}".format(out) in str(err.value)
        assert "{} is unchanged".format(out) in str(err.value)
        assert _read(out) == "old" and _hidden(mnt) == []


def test_every_writer_goes_through_the_helper():
    """The builder, the furniture importer, the image builder and the shipper use
    AtomicFolder, and none of them renames output folders on its own."""
    for rel in ("spherical_cnn/data/builder.py", "spherical_cnn/data/furniture.py",
                "spherical_cnn/data/images.py", "tools/ship_pretrained.py"):
        with open(os.path.join(ROOT, rel)) as f:
            text = f.read()
        assert "AtomicFolder(" in text, rel
        assert "os.replace(stage" not in text and "_staging_dir" not in text, rel
