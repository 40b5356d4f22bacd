"""Fault injection, round 3 (issue 31): each defect of the third battery, injected for real.

Signals are real (``os.kill`` of this or a child process, at a point the test chooses by
a marker, never by a sleep), archives are crafted byte by byte, files are truncated or
swapped on disk, the disk is a 64 KiB tmpfs (root only; skipped otherwise). Commands run
in this process through their ``main(argv)`` where a child process proves nothing.
See docs/faults.md ("Round 3") for the table of cases.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name")  # catalogs replaced in place
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


# --- the 2-worker build that waited on a futex after one Ctrl-C ---------------------------

# The interrupt is delivered while the main thread is inside concurrent.futures, after it
# took the first future's lock and before it took the others: where a KeyboardInterrupt
# raised by the old handler left that lock held, so that the pool's manager thread (joined
# at exit) waited on it forever. A real SIGINT, sent by the process to itself there.
CTRL_C_IN_FUTURES = r"""
import os, signal, sys
sys.path.insert(0, {root!r})
import concurrent.futures._base as base
real_enter = base._AcquireFutures.__enter__
calls = [0]

def enter(self):
    calls[0] += 1
    if calls[0] != 1:
        return real_enter(self)
    futures = list(self.futures)
    futures[0]._condition.acquire()
    print("SIGINT-IN-FUTURES", flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    for f in futures[1:]:
        f._condition.acquire()

base._AcquireFutures.__enter__ = enter
sys.path.insert(0, os.path.join({root!r}, "scripts"))
import make_dataset
from spherical_cnn.errors import run_cli
sys.exit(run_cli(make_dataset.main, sys.argv[1:], prog="make_dataset.py"))
"""


def test_ctrl_c_of_a_two_worker_build_exits_instead_of_waiting_forever(tmp_path):
    out = tmp_path / "syn"
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_IN_FUTURES.format(root=ROOT), "--synthetic", "--out", str(out),
         "--input_res", "8", "--n_train_per_class", "6", "--n_test_per_class", "2", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail("the build hung after Ctrl-C: " + stderr[-2000:])
    assert "SIGINT-IN-FUTURES" in stdout, stderr[-2000:]
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "make_dataset.py: interrupted"
    assert "Traceback" not in stderr  # the workers ignore Ctrl-C: no traceback of theirs either
    assert sorted(os.listdir(tmp_path)) == []  # no dataset, no staging folder, no lock


# --- hostile archives -----------------------------------------------------------------------

import gzip  # noqa: E402
import io  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import zipfile  # noqa: E402

from spherical_cnn.data import archives, furniture, images  # noqa: E402
from spherical_cnn.errors import DataError, UserError  # noqa: E402
from test_data_furniture import CHAIR, write_sh3f  # noqa: E402
from test_images import _ar, idx_bytes  # noqa: E402


def _deb(path, members, mode="w:gz"):
    """A .deb whose data.tar holds ``members``: (TarInfo, bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    suffix = {"w:gz": ".gz", "w:xz": ".xz", "w": ""}[mode]
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.gz", b""),
                          ("data.tar" + suffix, buf.getvalue())]))
    return str(path)


def _file(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


# (member path pattern, link kind and target or None, what the message says)
HOSTILE = [
    ("./usr/share/../../../tmp/evil-{}", None, "climbs out with '..'"),
    ("/usr/share/data/{}", None, "an absolute path"),
    ("./usr/share/data/{}", (tarfile.SYMTYPE, "/etc/passwd"), "a symbolic link (to '/etc/passwd')"),
    ("./usr/share/data/{}", (tarfile.LNKTYPE, "etc/shadow"), "a hard link"),
]


def _hostile(pattern, link, name):
    if link is None:
        return _file(pattern.format(name), b"x")
    return _link(pattern.format(name), link[1], link[0])


@pytest.mark.parametrize("pattern,link,why", HOSTILE)
def test_deb_members_outside_the_destination_or_links_are_refused(tmp_path, capsys, pattern, link, why):
    """The furniture importer's and the image builder's .deb: one line naming the package
    and the member; nothing is written, inside or outside the destination."""
    from spherical_cnn.cli import import_furniture
    member = _hostile(pattern, link, "x.sh3f")
    deb = _deb(tmp_path / "hostile.deb", [_file("./usr/share/doc/x/README", b"doc"), member])
    assert run_cli_in(import_furniture.main, [deb, "--out", str(tmp_path / "tree")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hostile.deb" in err[0] and member[0].name in err[0] and why in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["hostile.deb"]

    member = _hostile(pattern, link, "train-images-idx3-ubyte.gz")
    deb = _deb(tmp_path / "images.deb", [member])
    with pytest.raises(UserError) as got:
        images.extract_deb(deb, str(tmp_path / "x"))
    assert "images.deb" in str(got.value) and member[0].name in str(got.value) and why in str(got.value)
    assert not os.path.exists("/tmp/evil-train-images-idx3-ubyte.gz")


def run_cli_in(main, argv):
    from spherical_cnn.errors import run_cli
    return run_cli(main, argv, prog="cmd")


def test_zip_members_outside_or_links_are_refused(tmp_path):
    for name, why in (("../../evil.obj", "a path that climbs out"), ("/abs/evil.obj", "an absolute path")):
        path = tmp_path / "Bad.sh3f"
        write_sh3f(path, [CHAIR], extra={name: "v 0 0 0\n"})
        with pytest.raises(furniture.FurnitureError, match="Bad.sh3f: member '{}' is {}".format(
                name.replace(".", r"\."), why)):
            furniture.collect([str(path)], progress=False)
    path = tmp_path / "Link.sh3f"
    write_sh3f(path, [CHAIR])
    with zipfile.ZipFile(path, "a") as z:
        info = zipfile.ZipInfo("lib/chair/link.obj")
        info.create_system, info.external_attr = 3, (0o120777 << 16)
        z.writestr(info, "/etc/passwd")
    with pytest.raises(furniture.FurnitureError, match="Link.sh3f: member 'lib/chair/link.obj' is a symbolic link"):
        furniture.collect([str(path)], progress=False)


def test_a_model_path_that_leaves_the_archive_is_skipped_and_named(tmp_path):
    bad = dict(CHAIR, name="Other chair", path="lib/x/../../../../etc/passwd.obj")
    path = write_sh3f(tmp_path / "Cat.sh3f", [CHAIR])
    with zipfile.ZipFile(path, "a") as z:  # the catalog alone names the path: no such member
        z.writestr("PluginFurnitureCatalog.properties", z.read("PluginFurnitureCatalog.properties").decode()
                   + "name#9=Other chair\nmodel#9=/lib/x/../../../../etc/passwd.obj\n")
    warnings = []
    kept, _, skipped = furniture.collect([path], progress=False, warn=warnings.append)
    assert [k["name"] for k in kept] == ["Kitchen chair"]
    assert len(skipped) == 1 and "climbs out with '..'" in skipped[0]["reason"], skipped
    assert len(warnings) == 1 and "Cat.sh3f" in warnings[0] and "passwd.obj" in warnings[0]
    del bad


def _bomb_zip(path, nbytes):
    """A real zip bomb: ``nbytes`` of zeros deflated (about 1/1000 of that on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("PluginFurnitureCatalog.properties", "name#1=Chair\nmodel#1=/bomb.obj\n")
        with z.open("bomb.obj", "w", force_zip64=True) as f:
            block = bytes(1 << 24)
            for _ in range(nbytes >> 24):
                f.write(block)
    return str(path)


def test_zip_bomb_stops_at_once_in_bounded_memory(tmp_path):
    path = _bomb_zip(tmp_path / "Bomb.sh3f", archives.MAX_MEMBER + (64 << 20))
    assert os.path.getsize(path) < 4 << 20  # a few MB that expand past the limit
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(furniture.FurnitureError, match="Bomb.sh3f: member 'bomb.obj' would unpack to"):
            furniture.collect([path], progress=False)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 5 and peak < 16 << 20, (seconds, peak)


def test_tar_bomb_in_a_deb_stops_at_once(tmp_path):
    """data.tar.gz whose .sh3f member declares more than the budget: refused before any byte
    of it is unpacked (a lower budget keeps the test quick: the check is the same)."""
    big = tarfile.TarInfo("./usr/share/data/big.sh3f")
    big.size = archives.MAX_MEMBER + 1
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(big)  # the header alone: what a bomb's header says
    deb = tmp_path / "bomb.deb"
    deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("data.tar", buf.getvalue())]))
    with pytest.raises(furniture.FurnitureError, match="bomb.deb .data.tar.: member './usr/share/data/big.sh3f' "
                                                      "would unpack to"):
        furniture.extract_deb(str(deb), str(tmp_path))
    assert not os.path.exists(tmp_path / "deb" / "big.sh3f")


def test_gzip_bomb_idx_reads_only_what_its_header_announces(tmp_path):
    """An IDX file whose header says 2 labels but whose gzip stream expands to 256 MiB."""
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(idx_bytes(np.zeros(2, np.uint8)))
        block = bytes(1 << 24)
        for _ in range(16):
            f.write(block)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="says 2 values .2. but the file holds more"):
            images.read_idx(str(path), 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("field,value,why", [
    ("width", "nan", "width nan is not a size"), ("height", "inf", "height inf is not a size"),
    ("depth", "-3", "depth -3.0 is not a size"), ("width", "1e30", "width 1e+30 is not a size"),
    ("modelRotation", "1 2 3 4 5 6 7 8 9", "is not a rotation"),
    ("modelRotation", "nan 0 0 0 1 0 0 0 1", "is not a rotation"),
    ("modelRotation", "1 0 0", "must hold nine numbers")])
def test_absurd_catalog_values_are_named_and_skipped(tmp_path, field, value, why):
    from test_data_furniture import catalog
    bad = dict(CHAIR, name="Bad chair", path="lib/bad/chair.obj")
    path = write_sh3f(tmp_path / "Cat.sh3f", [CHAIR, bad])
    text = catalog([CHAIR, bad]).replace("{}#2=".format(field), "{}#2={}\n# was ".format(field, value))
    if field == "modelRotation":
        text += "modelRotation#2={}\n".format(value)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("PluginFurnitureCatalog.properties", text)
    warnings = []
    kept, _, skipped = furniture.collect([path], progress=False, warn=warnings.append)
    assert [k["name"] for k in kept] == ["Kitchen chair"]
    assert len(skipped) == 1 and why in skipped[0]["reason"] and "Bad chair" in skipped[0]["reason"], skipped
    assert len(warnings) == 1 and "Cat.sh3f" in warnings[0]


# --- safe model loading, damaged pretrained folders ----------------------------------------

import json  # noqa: E402
import shutil  # noqa: E402

from spherical_cnn import pretrained, trained_run  # noqa: E402
from spherical_cnn.data.verify import sha256_file  # noqa: E402

CHAIR_OFF = os.path.join(ROOT, "examples", "chair.off")


def _predict(argv, capsys):
    from spherical_cnn.cli import predict
    from spherical_cnn.errors import run_cli
    status = run_cli(predict.main, argv, prog="predict")
    captured = capsys.readouterr()
    return status, captured.out, [l for l in captured.err.splitlines() if l.strip()]


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the shipped models, which predict --pretrained reads instead of the package's."""
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained.PRETRAINED_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", str(folder))
    return folder


def test_shipped_models_carry_checksums_that_match():
    for name in pretrained.names():
        folder = pretrained.model_dir(name)
        assert pretrained.meta(name)["sha256"] == pretrained.checksums(folder), name
        assert set(pretrained.meta(name)["sha256"]) >= {"model.keras", "flags.yaml", "classes.txt"}


def test_a_changed_model_file_is_refused_before_loading(shipped, capsys, monkeypatch):
    model = shipped / "synthetic" / "model.keras"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    import keras
    calls = []
    monkeypatch.setattr(keras.models, "load_model", lambda *a, **k: calls.append(a))
    status, _, err = _predict(["--pretrained", "synthetic", "--meshes", CHAIR_OFF], capsys)
    assert status == 2 and len(err) == 1, err
    assert "{} does not match its checksum in".format(model) in err[0] and "meta.json" in err[0]
    assert calls == []  # never handed to Keras


def test_short_classes_txt_is_one_line(shipped, capsys):
    """Issue 31: a short classes.txt gave an IndexError traceback in predict."""
    folder = shipped / "synthetic"
    (folder / "classes.txt").write_text("airplane\nbed\n")
    meta = json.loads((folder / "meta.json").read_text())
    meta["sha256"]["classes.txt"] = sha256_file(str(folder / "classes.txt"))  # consistent, still short
    (folder / "meta.json").write_text(json.dumps(meta))
    status, _, err = _predict(["--pretrained", "synthetic", "--meshes", CHAIR_OFF], capsys)
    assert status == 2 and len(err) == 1, err
    assert "classes.txt names 2 classes but the model" in err[0] and "predicts 12" in err[0]


def test_damaged_meta_json_is_named_in_predict_and_in_the_listing(shipped, capsys):
    """Issue 31: a JSON error with no file name, also in --list_pretrained."""
    (shipped / "furniture" / "meta.json").write_text('{"name": "furniture", ')
    status, _, err = _predict(["--pretrained", "furniture", "--meshes", CHAIR_OFF], capsys)
    assert status == 2 and len(err) == 1, err
    assert "damaged {}: not readable JSON".format(shipped / "furniture" / "meta.json") in err[0]
    status, out, err = _predict(["--list_pretrained"], capsys)
    assert status == 0 and err == []
    lines = out.splitlines()
    assert len(lines) == 3 and lines[1].startswith("furniture") and "damaged" in lines[1]
    assert "synthetic" in lines[2] and "test accuracy" in lines[2]


def test_missing_flags_yaml_says_what_is_missing(shipped, capsys):
    """Issue 31: a missing flags.yaml gave a message about --test_only and training."""
    folder = shipped / "synthetic"
    os.remove(folder / "flags.yaml")
    meta = json.loads((folder / "meta.json").read_text())
    del meta["sha256"]["flags.yaml"]
    (folder / "meta.json").write_text(json.dumps(meta))
    status, _, err = _predict(["--pretrained", "synthetic", "--meshes", CHAIR_OFF], capsys)
    assert status == 2 and len(err) == 1, err
    assert "has model.keras but no flags.yaml" in err[0] and "--test_only" not in err[0]


def _save(model, path):
    model.save(path)
    return str(path)


def test_a_model_file_with_python_code_is_refused(tmp_path):
    import keras
    x = keras.Input((4,))
    evil = keras.Model(x, {"logits": keras.layers.Lambda(lambda t: t * 2, name="code")(x)})
    path = _save(evil, tmp_path / "model.keras")
    with pytest.raises(UserError, match="refusing to load the model .*model.keras: it holds a Lambda layer "
                                        r"\(code\), i.e. Python code"):
        trained_run.load_model(path)


def test_a_custom_object_that_is_not_ours_is_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="someone_else")
    class Scale(keras.layers.Layer):
        def call(self, t):
            return t * 3
    x = keras.Input((4,))
    path = _save(keras.Model(x, {"logits": Scale()(x)}), tmp_path / "model.keras")
    assert keras.models.load_model(path) is not None  # Keras alone would load it (registered here)
    with pytest.raises(UserError, match="needs the custom object 'someone_else>Scale'"):
        trained_run.load_model(path)


# --- exact resume of the classification trainer ---------------------------------------------

from spherical_cnn import training  # noqa: E402
from spherical_cnn.checkpoints import CheckpointStore  # noqa: E402
from spherical_cnn.errors import EXIT_INTERRUPTED, run_cli  # noqa: E402
from test_faults import ENV as TRAIN_ENV, TINY, make_dataset, signal_at_marker, user_lines  # noqa: E402

RESUME_FLAGS = ["--n_epochs", "3", "--no_export", "--dropout"]  # dropout: random draws are resumed too


def train_cli(argv):
    return run_cli(lambda a: training.run(a) and None, argv, prog="train.py")


@pytest.fixture(scope="module")
def data3(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data3"))


@pytest.fixture(scope="module")
def reference(data3, tmp_path_factory):
    """The uninterrupted run every resumed one must equal."""
    logdir = str(tmp_path_factory.mktemp("ref") / "run")
    assert train_cli(TINY + ["--dset_dir", data3, "--logdir", logdir] + RESUME_FLAGS) == 0
    return logdir


def tensors(logdir, name="final"):
    prefix = CheckpointStore(logdir).path(name)
    reader = training.tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in k}


def scalars(logdir):
    """{(tag, epoch): value} of every TensorBoard scalar written in ``logdir`` (last value wins)."""
    tf = training.tf
    out = {}
    for fn in sorted(os.listdir(logdir)):
        if fn.startswith("events.out"):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, fn)):
                for v in event.summary.value:
                    if v.metadata.plugin_data.plugin_name == "scalars":
                        out[v.tag, event.step] = float(tf.make_ndarray(v.tensor))
    return out


def assert_same_run(logdir, reference):
    a, b = tensors(logdir), tensors(reference)
    assert sorted(a) == sorted(b)
    timing = "figure_seconds/.ATTRIBUTES/VARIABLE_VALUE"  # wall-clock seconds of training: not a result
    different = [k for k in a if k != timing and not np.array_equal(a[k], b[k])]
    assert not different, different[:5]  # bit-exact: weights, optimizer state, epoch, figures
    got, want = scalars(logdir), scalars(reference)
    losses = {k: v for k, v in want.items() if k[0].startswith(("loss/", "train_acc", "valid_acc"))}
    assert len(losses) == 3 * 7 and all(got[k] == v for k, v in losses.items()), \
        [(k, got.get(k), v) for k, v in losses.items() if got.get(k) != v][:5]


def _sigterm_on_call(monkeypatch, owner, name, call, when="after"):
    """Make ``owner.name`` send a real SIGTERM to this process on its ``call``-th call."""
    real = getattr(owner, name)
    count = [0]

    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == call and when == "before":
            os.kill(os.getpid(), signal.SIGTERM)
        out = real(*args, **kwargs)
        if count[0] == call and when == "after":
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    monkeypatch.setattr(owner, name, wrapped)


def _step_hook(monkeypatch, call):
    """SIGTERM right after training step ``call`` of the process (counted over every trainer
    it builds; the update is applied when the signal arrives)."""
    real_build = training.Trainer._build_steps
    count = [0]

    def build(self):
        real_build(self)
        step = self._train_step

        def counted(x, y):
            out = step(x, y)
            count[0] += 1
            if count[0] == call:
                os.kill(os.getpid(), signal.SIGTERM)
            return out
        self._train_step = counted
    monkeypatch.setattr(training.Trainer, "_build_steps", build)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-epoch step", "last step of an epoch", "validation", "checkpoint save"])
def test_sigterm_then_the_same_command_equals_an_uninterrupted_run(point, data3, reference, tmp_path,
                                                                   monkeypatch, capsys):
    logdir = str(tmp_path / "run")
    argv = TINY + ["--dset_dir", data3, "--logdir", logdir] + RESUME_FLAGS
    with monkeypatch.context() as m:
        if point == "mid-epoch step":
            _step_hook(m, 5)  # epoch 2, step 2 of 3
        elif point == "last step of an epoch":
            _step_hook(m, 3)
        elif point == "validation":
            _sigterm_on_call(m, training.Trainer, "evaluate", 2, when="before")
        else:
            _sigterm_on_call(m, CheckpointStore, "save", 2, when="before")  # epoch 1's 'latest'
        assert train_cli(argv) == EXIT_INTERRUPTED
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("train.py: error: interrupted; latest checkpoint is epoch"), err
    expect = {"mid-epoch step": "epoch 1 and 2 step(s) of epoch 2 (of 3), saved when SIGTERM arrived",
              "last step of an epoch": "epoch 0 and 3 step(s) of epoch 1 (of 3)",
              "validation": "epoch 1 and 3 step(s) of epoch 2 (of 3)",
              "checkpoint save": "epoch 1 ({})".format(logdir)}[point]
    assert expect in err[0], err
    with open(os.path.join(logdir, "logging.log")) as f:
        assert "interrupted; latest checkpoint is epoch" in f.read()  # the log says why it stopped

    assert train_cli(argv) == 0
    out = capsys.readouterr().out
    assert "Continuing from checkpoint" in out
    if point == "mid-epoch step":
        # the resumed epoch ran only its last step in this process: no time-left estimate from it
        resumed = next(l for l in out.splitlines() if "epoch=2;" in l)
        assert "left)" not in resumed, resumed
    assert_same_run(logdir, reference)


# --- defects of the third battery: training -------------------------------------------------

from test_faults import mounted_tmpfs, write_split  # noqa: E402

BASE = TINY + ["--no_export"]


def _err_lines(capsys):
    return [l for l in capsys.readouterr().err.splitlines() if l.strip()]


def _after_save(monkeypatch, call, action):
    """Run ``action()`` right after the ``call``-th checkpoint save (epoch 1's 'latest' is 2: best, latest)."""
    real, count = CheckpointStore.save, [0]

    def save(self, *args, **kwargs):
        real(self, *args, **kwargs)
        count[0] += 1
        if count[0] == call:
            action()
    monkeypatch.setattr(CheckpointStore, "save", save)


def _logged(logdir):
    with open(os.path.join(logdir, "logging.log")) as f:
        return f.read()


def test_records_replaced_under_a_running_training_are_named(tmp_path, monkeypatch, capsys):
    """Issue 31: shards swapped for files of another resolution after epoch 1 ended in a
    TensorFlow InvalidArgumentError traceback. The changed file is verified again."""
    data = make_dataset(tmp_path / "data")
    logdir = str(tmp_path / "run")
    shard = os.path.join(data, "train_001.tfrecord")

    def swap():
        from spherical_cnn.data import records
        records.write_records(shard, [records.encode_example(np.ones((8, 8, 1), np.complex64), 0)] * 4)
    _after_save(monkeypatch, 2, swap)
    assert train_cli(BASE + ["--dset_dir", data, "--logdir", logdir, "--n_epochs", "3"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "record file {} changed while training and no longer fits".format(shard) in err[0]
    assert "record 0" in err[0] and "--input_res 16" in err[0], err
    assert "'latest' (epoch 1) in {} is intact".format(logdir) in err[0]
    assert "stopped: record file {} changed while training".format(shard) in _logged(logdir)


def test_records_truncated_while_being_read_are_named(tmp_path, monkeypatch, capsys):
    """Issue 31: a shard truncated mid-run gave one raw TensorFlow line with no file name."""
    data = make_dataset(tmp_path / "data")
    logdir = str(tmp_path / "run")
    shard = os.path.join(data, "train_001.tfrecord")
    real_check = training.Trainer.check_data_unchanged

    def check_then_truncate(self, splits=("train", "val", "test"), during=None):
        real_check(self, splits, during)
        if self.saved_epoch == 1 and during is None:  # after the check, before epoch 2 reads its shard
            with open(shard, "r+b") as f:
                f.truncate(os.path.getsize(shard) // 2 + 7)  # inside a record
    monkeypatch.setattr(training.Trainer, "check_data_unchanged", check_then_truncate)
    assert train_cli(BASE + ["--dset_dir", data, "--logdir", logdir, "--n_epochs", "3"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "record file {} changed during epoch 2 and no longer fits".format(shard) in err[0], err
    assert "truncated" in err[0]
    assert "'latest' (epoch 1) in {} is intact".format(logdir) in err[0]


def test_batch_larger_than_the_dataset_is_not_refused(tmp_path, capsys):
    """Issue 31: --train_bsize 10000000 on a small dataset was refused ("needs 1.6 TiB")."""
    data = make_dataset(tmp_path / "data")
    argv = BASE + ["--dset_dir", data, "--logdir", str(tmp_path / "run"), "--n_epochs", "1",
                   "--train_bsize", "10000000"]
    assert train_cli(argv) == 0, _err_lines(capsys)
    from spherical_cnn import params, sizes
    args = params.parse(argv)
    assert sizes.training_estimate(args)[0] > 100 * sizes.training_estimate(args, n_records=18)[0]
    assert training.largest_split(args) == 18


def test_a_logdir_name_too_long_is_one_line(tmp_path, capsys):
    logdir = str(tmp_path / ("l" * 300))
    assert train_cli(BASE + ["--dset_dir", str(tmp_path), "--logdir", logdir, "--n_epochs", "1"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "file name too long: {}".format(logdir) in err[0], err
    assert "300 bytes, the file system allows 255" in err[0]


def test_a_logdir_that_is_a_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "run"
    path.write_text("x")
    assert train_cli(BASE + ["--dset_dir", str(tmp_path), "--logdir", str(path)]) == 2
    err = _err_lines(capsys)
    assert err == ["train.py: error: --logdir {} is a file, not a folder; give a folder for the run".format(path)]


def _fill(folder):
    """Fill the file system of ``folder`` to the last byte."""
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
        for block in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(bytes(block))
            except OSError:
                pass


def test_full_disk_writing_tensorboard_events_says_what_is_intact(data3, tmp_path, monkeypatch, capsys):
    with mounted_tmpfs(tmp_path / "disk", "16m") as mnt:
        logdir = str(mnt / "run")
        _after_save(monkeypatch, 2, lambda: _fill(str(mnt)))
        # with histograms an epoch writes more summaries than the writer queues (10): they
        # reach the disk inside the epoch (with fewer, TensorFlow's flush drops them quietly
        # and the checkpoint save that follows reports the full disk, naming its folder)
        assert train_cli(BASE + ["--dset_dir", data3, "--logdir", logdir, "--n_epochs", "3",
                                 "--tensorboard_histograms", "1"]) == 2
        err = _err_lines(capsys)
        assert len(err) == 1, err
        assert "no space left on the device writing the TensorBoard events of {} (epoch 2)".format(logdir) in err[0]
        assert "'latest' (epoch 1) in {} is intact".format(logdir) in err[0]
        assert CheckpointStore(logdir).path("latest") and tensors(logdir, "latest")


def test_full_disk_during_the_export_leaves_nothing_half_written(data3, tmp_path, monkeypatch, capsys):
    with mounted_tmpfs(tmp_path / "disk", "16m") as mnt:
        logdir = str(mnt / "run")
        real_export = training.Trainer.export

        def fill_then_export(self):
            _fill(str(mnt))
            return real_export(self)
        monkeypatch.setattr(training.Trainer, "export", fill_then_export)
        assert train_cli(TINY + ["--dset_dir", data3, "--logdir", logdir, "--n_epochs", "2"]) == 2
        err = _err_lines(capsys)
        assert len(err) == 1 and "no space left on the device exporting the model to {}".format(
            os.path.join(logdir, "model.keras")) in err[0], err
        assert "('final', epoch 2)" in err[0] and "run the same command again to export it" in err[0]
        left = os.listdir(logdir)
        assert ".export-tmp.keras" not in left and "model.keras" not in left, left


@pytest.fixture(scope="module")
def finished(data3, tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("finished") / "run")
    assert train_cli(BASE + ["--dset_dir", data3, "--logdir", logdir, "--n_epochs", "1"]) == 0
    return logdir


def test_ctrl_c_during_test_only_says_the_checkpoints_are_intact(finished, monkeypatch, capsys):
    """Issue 31: Ctrl-C during --test_only said "no checkpoint was saved"."""
    before = tensors(finished)
    capsys.readouterr()
    _sigterm_on_call(monkeypatch, training.Trainer, "evaluate", 1, when="before")
    assert train_cli(["--test_only", "--logdir", finished]) == EXIT_INTERRUPTED
    err = _err_lines(capsys)
    assert err == ["train.py: error: interrupted while testing; nothing was written, the checkpoints in {} "
                   "are unchanged".format(finished)]
    after = tensors(finished)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_resume_with_other_model_flags_names_the_checkpoint(finished, data3, tmp_path, capsys):
    """Issue 31: resume with different --nfilters gave TensorFlow's raw shape mismatch."""
    run = str(tmp_path / "run")
    shutil.copytree(finished, run)
    argv = [a if a != "4,4" else "4,8" for a in BASE] + ["--dset_dir", data3, "--logdir", run, "--n_epochs", "2"]
    assert train_cli(argv) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "checkpoint {} does not match the model of these flags".format(
        os.path.join(run, "latest")) in err[0], err
    assert "use the flags it was trained with, or --from_scratch" in err[0]


def test_at_file_errors_are_one_line_naming_the_file(tmp_path, capsys):
    """Issue 31: a blank line gave "unrecognized arguments: " with nothing after it, @file
    errors never named the @file, and argparse printed 23 lines of usage first."""
    from spherical_cnn import params
    argfile = tmp_path / "flags.txt"
    argfile.write_text("--logdir\nrun\n--n_epochs\n\n2\n   \n--input_res\n16\n")
    assert params.parse(["@" + str(argfile)]).n_epochs == 2  # blank lines are skipped
    argfile.write_text("--n_epochs\n2\n--unknown_flag\n")
    with pytest.raises(SystemExit) as exit_:
        params.build_parser().parse_args(["@" + str(argfile)])
    err = _err_lines(capsys)
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].endswith(": error: unrecognized arguments: --unknown_flag (from @file {}, line 3) (see {} "
                           "--help)".format(argfile, err[0].split(":")[0]))
    argfile.write_text("--n_epochs\nmany\n")
    with pytest.raises(SystemExit):
        params.build_parser().parse_args(["@" + str(argfile)])
    err = _err_lines(capsys)
    assert len(err) == 1 and "invalid int value: 'many' (from @file {}, line 2)".format(argfile) in err[0]


def test_a_synthetic_set_being_built_names_dset_dir(tmp_path, capsys):
    """Issue 31: two first uses of --dset synthetic at once pointed at --out, a flag train.py lacks."""
    from spherical_cnn.data.atomic_output import AtomicFolder
    dset = str(tmp_path / "syn")
    with AtomicFolder(dset, what="--dset_dir"):  # another build holds it (this process: alive)
        assert train_cli(BASE + ["--dset", "synthetic", "--dset_dir", dset, "--logdir", str(tmp_path / "run"),
                                 "--n_classes", "12", "--n_epochs", "1"]) == 2
    err = [l for l in _err_lines(capsys) if "error:" in l]
    assert len(err) == 1 and "--dset_dir {} is in use by another dataset build".format(dset) in err[0], err
    assert "--out" not in err[0]


# --- the regression trainer -----------------------------------------------------------------

from spherical_regression.tasks import runner  # noqa: E402

QUICK = ["viewpoint", "--quick", "--head", "direct", "--seeds", "0"]


def regression_cli(argv):
    from spherical_cnn.cli import regression
    return run_cli(regression.main, argv, prog="regression")


@pytest.fixture(scope="module")
def regression_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    out, data = str(root / "out"), str(root / "data")
    assert regression_cli(QUICK + ["--out", out, "--data_dir", data]) == 0
    return out, data


def _run_result(out):
    with open(os.path.join(out, "results.json")) as f:
        run = json.load(f)["runs"][0]
    return {k: ([{m: v for m, v in h.items() if m != "time_s"} for h in run[k]] if k == "history" else run[k])
            for k in run if k not in ("train_time_s",)}


@pytest.mark.parametrize("call", [2, 5])  # mid-epoch 1, mid-epoch 2 (4 steps per epoch)
def test_regression_sigterm_then_the_same_command_equals_an_uninterrupted_run(call, regression_reference,
                                                                              tmp_path, monkeypatch, capsys):
    ref_out, data = regression_reference
    out = str(tmp_path / "out")
    real = runner.make_train_step

    def counted_step(*args, **kwargs):
        step, count = real(*args, **kwargs), [0]

        def wrapped(*a):
            result = step(*a)
            count[0] += 1
            if count[0] == call:
                os.kill(os.getpid(), signal.SIGTERM)
            return result
        return wrapped
    with monkeypatch.context() as m:
        m.setattr(runner, "make_train_step", counted_step)
        assert regression_cli(QUICK + ["--out", out, "--data_dir", data]) == EXIT_INTERRUPTED
    err = _err_lines(capsys)
    assert len(err) == 1 and "interrupted by SIGTERM in run [direct seed 0] after epoch {} and {} step(s)".format(
        (call - 1) // 4, call % 4 or 4) in err[0], err
    assert "the same command resumes from there" in err[0]
    assert os.path.isdir(os.path.join(out, "runs", "direct_seed0.ckpt", "latest"))
    assert regression_cli(QUICK + ["--out", out, "--data_dir", data]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert _run_result(out) == _run_result(ref_out)  # history, ||dL/dO|| per batch, final metrics
    assert not os.path.exists(os.path.join(out, "runs", "direct_seed0.ckpt"))


def test_regression_non_finite_loss_is_one_line(regression_reference, tmp_path, capsys):
    """Issue 31: --learning_rate 1e30 ended in a FloatingPointError traceback."""
    _, data = regression_reference
    status = regression_cli(QUICK + ["--out", str(tmp_path / "out"), "--data_dir", data, "--learning_rate", "1e30"])
    err = _err_lines(capsys)
    assert status == 2 and len(err) == 1, err
    assert ("non-finite" in err[0] or "not finite" in err[0]) and "lower --learning_rate (now 1e+30)" in err[0]


@pytest.mark.parametrize("damage", ["truncated", "nan target"])
def test_regression_damaged_cache_is_rendered_again(damage, regression_reference, tmp_path, capsys):
    """Issue 31: a truncated .npz cache gave a BadZipFile traceback, a NaN target one too."""
    _, data = regression_reference
    cache = str(tmp_path / "data")
    shutil.copytree(data, cache)
    train = [f for f in sorted(os.listdir(cache)) if f.endswith(".npz") and "train" in f][0]
    path = os.path.join(cache, train)
    if damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        key = "targets" if "targets" in arrays else sorted(k for k in arrays if arrays[k].dtype.kind == "f")[0]
        arrays[key] = arrays[key].astype(np.float64)
        arrays[key].flat[3] = np.nan
        np.savez_compressed(path, **arrays)
    assert regression_cli(QUICK + ["--out", str(tmp_path / "out"), "--data_dir", cache]) == 0
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("warning: dataset cache {} is {}".format(
        path, "unreadable" if damage == "truncated" else "damaged (non-finite values in")), err
    assert err[0].endswith("rendering it again")
    from spherical_regression.tasks import common
    assert common._read_cache(path)[0] is not None  # rewritten, readable


# --- the image study: interrupted between runs or inside one, it finishes the rest ----------


def _idx_source(folder):
    from spherical_cnn.data import images as images_mod
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for name, arr in (("train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 8, 8))),
                      ("train-labels-idx1-ubyte.gz", np.arange(40) % 3),
                      ("t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 8, 8))),
                      ("t10k-labels-idx1-ubyte.gz", np.arange(12) % 3)):
        images_mod.write_idx(os.path.join(folder, name), arr)
    return str(folder)


def study_cli(argv):
    from spherical_cnn.cli import rotation_study as cli
    return run_cli(cli.main, argv, prog="rotation_study")


def _study_argv(src, out):
    return ["--quick", "--images", src, "--out", out, "--models", "planar", "--n_train_images", "30",
            "--n_test_images", "12"]


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items()
                if not any(w in k for w in ("seconds", "time", "out_dir", "created"))}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


@pytest.fixture(scope="module")
def study_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    src = _idx_source(root / "idx")
    assert study_cli(_study_argv(src, str(root / "ref"))) == 0
    with open(root / "ref" / "results.json") as f:
        return src, _without_timing(json.load(f))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["between runs", "inside the second run"])
def test_study_interrupted_continues_with_the_runs_not_yet_done(point, study_reference, tmp_path,
                                                                 monkeypatch, capsys):
    from spherical_cnn.studies import rotation_study as rs
    src, reference = study_reference
    out = str(tmp_path / "study")
    with monkeypatch.context() as m:
        if point == "between runs":  # right after the first run's result is saved
            real_save, saved = rs.save_run, []

            def save_run(logdir, record):
                real_save(logdir, record)
                if record.get("result"):
                    saved.append(logdir)
                    if len(saved) == 1:
                        os.kill(os.getpid(), signal.SIGTERM)
            m.setattr(rs, "save_run", save_run)
        else:
            _step_hook(m, 5)  # the second run, mid-epoch 1 (a run takes 2 x 2 steps: 30 images, batch 16)
        assert study_cli(_study_argv(src, out)) == EXIT_INTERRUPTED
    err = [l for l in _err_lines(capsys) if "rotation_study:" in l]
    assert len(err) == 1 and "interrupted" in err[0], err
    done = [d for d in ("nr", "r") if (rs.load_run(os.path.join(out, "runs", "planar", "seed0", d)) or {}).get("result")]
    assert done == ["nr"]

    assert study_cli(_study_argv(src, out)) == 0
    log = capsys.readouterr().out
    assert "reusing {}".format(os.path.join(out, "runs", "planar", "seed0", "nr")) in log
    with open(os.path.join(out, "results.json")) as f:
        assert _without_timing(json.load(f)) == reference


# --- signals from outside: a real preemption (SIGTERM) and a SIGKILL --------------------------

TRAIN = os.path.join(ROOT, "scripts", "train.py")


@pytest.mark.slow
def test_sigterm_from_outside_then_the_same_command_equals_an_uninterrupted_run(data3, reference, tmp_path):
    """scripts/train.py sent SIGTERM by another process once epoch 1 is logged (a marker, not
    a sleep: resuming is exact wherever the signal lands), then run again."""
    logdir = str(tmp_path / "run")
    cmd = [sys.executable, TRAIN] + TINY + ["--dset_dir", data3, "--logdir", logdir] + RESUME_FLAGS
    proc, out, err = signal_at_marker(cmd, "epoch=1;", signal.SIGTERM, TRAIN_ENV, timeout=300)
    lines = user_lines(err)
    if proc.returncode == 0:  # the signal landed after the last step: nothing left to resume
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == EXIT_INTERRUPTED and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("train.py: error: interrupted; latest checkpoint is epoch"), lines
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=TRAIN_ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_same_run(logdir, reference)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_work_since_the_checkpoint_and_says_how_much(data3, tmp_path):
    logdir = str(tmp_path / "run")
    cmd = [sys.executable, TRAIN] + TINY + ["--dset_dir", data3, "--logdir", logdir, "--n_epochs", "400",
                                            "--no_export"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=TRAIN_ENV)
    progress = os.path.join(logdir, training.PROGRESS_FILE)
    try:
        for _ in range(30000):  # the marker: progress.json inside an epoch after a checkpoint
            try:
                with open(progress) as f:
                    at = json.load(f)
            except (OSError, ValueError):
                at = {}
            if at.get("step", 0) > 0 and at.get("epoch", 0) >= 1:
                break
            if proc.poll() is not None:
                pytest.fail("the run ended early")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    from spherical_cnn.checkpoints import saved_epoch
    saved = saved_epoch(CheckpointStore(logdir).path("latest"))
    rerun = subprocess.run(cmd[:-3] + ["--n_epochs", str(saved + 1), "--no_export"], capture_output=True,
                           text=True, env=TRAIN_ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "the previous run stopped without saving (killed?) at epoch" in rerun.stdout, rerun.stdout[-2000:]
    assert "step(s) are done again" in rerun.stdout and "taking over the lock" in rerun.stdout
