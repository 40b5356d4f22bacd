"""The command line as a user meets it: fast --help, quiet output, loadable models, predict.

One tiny run of ``scripts/train.py`` (resolution 16, records of test_training)
in a subprocess with TensorFlow's logging at its defaults is shared by the
tests: its output must hold no TensorFlow/absl line, its ``model.keras`` must
load in a fresh ``python -c "import spherical_cnn, keras"``, and ``predict``
runs on it.
"""
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from test_training import N_CLASSES, RES, TINY_MODEL, write_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["train", "make_dataset", "make_images", "import_furniture", "predict", "check_dataset", "ensemble", "retrieval", "rotation_study", "train_regression", "regression", "params"]
# Lines of TensorFlow's C++ logging, absl's banner, or its CUDA / oneDNN notices.
NOISE = re.compile(r"^[IWEF]\d{4} |absl|oneDNN|cuda|cuInit|rebuild TensorFlow", re.IGNORECASE | re.M)


def clean_env():
    """The user's environment: none of the variables conftest sets to quieten TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def run(cmd, cwd=ROOT, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=cwd,
                          timeout=timeout)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_is_fast_explains_argument_files_and_imports_no_tensorflow(name):
    cmd = [sys.executable, "-X", "importtime", os.path.join(ROOT, "scripts", name + ".py"), "--help"]
    t0 = time.time()
    out = run(cmd, timeout=60)
    seconds = time.time() - t0
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "jax", "trimesh"))
    assert not heavy, heavy[:5]
    assert not [l for l in out.stderr.splitlines() if "|" not in l]  # nothing but -X importtime
    assert seconds < 5, seconds  # well under 1 s on an idle machine; generous for a shared CI box
    if name == "regression":  # the task's own flags are in each subcommand's --help
        assert all(t in out.stdout for t in ("viewpoint", "normals", "rotation"))
        out = run([sys.executable, os.path.join(ROOT, "scripts", "regression.py"), "normals",
                   "--help"], timeout=60)
        assert out.returncode == 0 and "--quick" in out.stdout, out.stderr[-2000:]
    if name != "params":
        assert "@FILE" in out.stdout and "one token per line" in out.stdout
        assert "(default: " in out.stdout
    if name == "predict":
        assert re.search(r"--batch BATCH\s+inputs per forward pass", out.stdout)


def test_import_spherical_cnn_imports_no_keras():
    code = "import sys, spherical_cnn, spherical_cnn.cli.train; print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('keras', 'tensorflow')))"
    out = run([sys.executable, "-c", code])
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(logdir, records dir, stdout+stderr) of a tiny training run of scripts/train.py."""
    base = tmp_path_factory.mktemp("cli")
    dset_dir = write_records(str(base / "records"))
    logdir = str(base / "run")
    out = run([sys.executable, os.path.join(ROOT, "scripts", "train.py")] + TINY_MODEL + [
        "--dset_dir", dset_dir, "--logdir", logdir, "--n_epochs", "2"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return logdir, dset_dir, out.stdout + out.stderr


def test_train_output_has_no_tensorflow_lines(tiny_run):
    _, _, text = tiny_run
    assert "|model|train|val|test|train time|" in text
    noise = [line for line in text.splitlines() if NOISE.search(line)]
    assert not noise, noise


def test_verbose_brings_tensorflow_lines_back(tiny_run):
    """--verbose shows what the default hides (the filter, not a silent TensorFlow, removes it)."""
    logdir, dset_dir, _ = tiny_run
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "predict.py"), "--logdir", logdir,
           "--records", os.path.join(dset_dir, "test_000.tfrecord")]
    quiet, verbose = run(cmd), run(cmd + ["--verbose"])
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr[-2000:]
    assert not NOISE.search(quiet.stdout + quiet.stderr)
    assert re.search(r"^[IWEF]\d{4} ", verbose.stderr, re.M), verbose.stderr[-2000:]
    assert quiet.stdout == verbose.stdout


@pytest.mark.parametrize("first", ["spherical_cnn, keras", "keras, spherical_cnn",
                                   "spherical_cnn, tensorflow, keras"])
def test_saved_model_loads_after_import_spherical_cnn(tiny_run, tmp_path, first):
    """A fresh process loads model.keras after `import spherical_cnn`; logits match the checkpoint."""
    import tensorflow as tf
    from spherical_cnn import datasets, training
    logdir, _, _ = tiny_run
    args = training.load_flags(logdir, {"test_only": True, "from_scratch": False})
    x, _ = next(iter(datasets.load(args).eval("test")))
    np.save(tmp_path / "x.npy", x.numpy())
    code = ("import {}, numpy as np; m = keras.models.load_model({!r}); "
            "np.save({!r}, np.asarray(m(np.load({!r}))['logits']))").format(
        first, os.path.join(logdir, "model.keras"), str(tmp_path / "logits.npy"), str(tmp_path / "x.npy"))
    out = run([sys.executable, "-c", code], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    trainer = training.Trainer(args)
    trainer.store.restore("final", trainer.checkpoint, expect_partial=True)
    expected = trainer.model(x, training=False)["logits"]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), tf.convert_to_tensor(expected),
                               rtol=1e-4, atol=1e-5)


def test_without_import_loading_fails_with_keras_message(tiny_run):
    """The control: plain Keras cannot find the classes, so the test above tests the import."""
    logdir, _, _ = tiny_run
    code = "import keras; keras.models.load_model({!r})".format(os.path.join(logdir, "model.keras"))
    out = run([sys.executable, "-c", code], cwd="/")
    assert out.returncode != 0 and "ChannelSlice" in out.stderr


# ------------------------------------------------------------------------------------- predict
def predict(logdir, *args):
    return run([sys.executable, os.path.join(ROOT, "scripts", "predict.py"), "--logdir", logdir]
               + list(args))


def test_predict_goes_on_past_a_bad_mesh(tiny_run, tmp_path):
    logdir, _, _ = tiny_run
    bad = tmp_path / "broken.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n")
    good = [os.path.join(ROOT, "examples", name) for name in ("chair.off", "mug.off")]
    out = predict(logdir, "--meshes", good[0], str(bad), good[1])
    assert out.returncode == 1, out.stderr[-2000:]
    rows = [line.split(":")[0] for line in out.stdout.splitlines()]
    assert rows == good
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert "Traceback" not in out.stderr


def test_predict_missing_logdir_is_one_line(tmp_path):
    out = predict(str(tmp_path / "nowhere"), "--meshes", os.path.join(ROOT, "examples", "chair.off"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "nowhere" in out.stderr and "Traceback" not in out.stderr


def _write_rotated_records(path, dset_dir, n_meshes=6, n_rot=4):
    """Records of test_000 regrouped as meshes: ``n_rot`` same-label records share an fname."""
    from spherical_cnn.data import records
    by_label = {}
    for raw in records.iter_records(os.path.join(dset_dir, "test_000.tfrecord")):
        d = records.decode_example(raw, dtype="complex64")
        by_label.setdefault(d["y"], []).append(d["x"])
    out = []
    for m in range(n_meshes):
        y = m % N_CLASSES
        for r in range(n_rot):
            x = by_label[y][(m // N_CLASSES) * n_rot + r]
            out.append(records.encode_example(x.reshape(RES, RES, 1), y, fname="mesh{}.off".format(m),
                                              idrot=r))
    records.write_records(str(path), out)
    return n_meshes, n_rot


def _rows(stdout):
    """{row name: ({class: probability}, true class)} from predict's output."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(.*?): (.*?)(?:  true: (.*))?$", line)
        if not m or line.startswith("accuracy"):
            continue
        probs = {c: float(p) for c, p in re.findall(r"(\S+) \(([0-9.]+)\)", m.group(2))}
        rows[m.group(1)] = (probs, m.group(3) and m.group(3).split()[-1])  # "class 2" -> "2"
    return rows


def test_predict_records_label_rotations_and_aggregate(tiny_run, tmp_path):
    logdir, dset_dir, _ = tiny_run
    path = tmp_path / "rotated.tfrecord"
    n_meshes, n_rot = _write_rotated_records(path, dset_dir)
    per_record = predict(logdir, "--records", str(path), "--top_k", str(N_CLASSES))
    assert per_record.returncode == 0, per_record.stderr[-2000:]
    rows = _rows(per_record.stdout)
    assert sorted(rows) == sorted("mesh{}.off rot {}".format(m, r) for m in range(n_meshes)
                                  for r in range(n_rot))
    assert "over {} records".format(n_meshes * n_rot) in per_record.stdout

    expected = {}
    for m in range(n_meshes):
        probs = np.array([[rows["mesh{}.off rot {}".format(m, r)][0][str(c)] for c in range(N_CLASSES)]
                          for r in range(n_rot)])
        votes = np.bincount(probs.argmax(1), minlength=N_CLASSES)
        best = np.flatnonzero(votes == votes.max())
        vote = best[np.argmax(probs.mean(0)[best])]
        expected["mesh{}.off".format(m)] = (probs.mean(0), vote, rows["mesh{}.off rot 0".format(m)][1])

    for how in ("mean", "vote"):
        out = predict(logdir, "--records", str(path), "--aggregate", how, "--top_k", str(N_CLASSES))
        assert out.returncode == 0, out.stderr[-2000:]
        agg = _rows(out.stdout)
        assert sorted(agg) == sorted(expected)
        correct = 0
        for name, (mean, vote, truth) in expected.items():
            probs, shown_truth = agg[name]
            top = next(iter(probs))  # the first class listed is the prediction
            assert shown_truth == truth
            if how == "mean":
                np.testing.assert_allclose([probs[str(c)] for c in range(N_CLASSES)], mean, atol=2e-3)
                assert top == str(int(np.argmax(mean)))
            else:
                assert top == str(vote), (name, probs)
            correct += top == truth
        assert "accuracy: {:.4f} over {} meshes".format(correct / n_meshes, n_meshes) in out.stdout


def test_predict_rows_wrong_and_none_for_many_records(tiny_run):
    """--rows wrong prints exactly the misclassified rows of --rows all; none only the accuracy."""
    logdir, dset_dir, _ = tiny_run
    path = os.path.join(dset_dir, "test_000.tfrecord")
    full = predict(logdir, "--records", path)
    assert full.returncode == 0, full.stderr[-2000:]
    rows = _rows(full.stdout)
    wrong = {name for name, (probs, truth) in rows.items() if next(iter(probs)) != truth}
    accuracy = [line for line in full.stdout.splitlines() if line.startswith("accuracy")]
    out = predict(logdir, "--records", path, "--rows", "wrong")
    assert out.returncode == 0 and set(_rows(out.stdout)) == wrong
    assert [line for line in out.stdout.splitlines() if line.startswith("accuracy")] == accuracy
    out = predict(logdir, "--records", path, "--rows", "none")
    assert out.returncode == 0 and out.stdout.splitlines() == accuracy


def test_predict_reports_a_truncated_record_file_and_goes_on(tiny_run, tmp_path):
    logdir, dset_dir, _ = tiny_run
    data = open(os.path.join(dset_dir, "test_000.tfrecord"), "rb").read()
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(data[:len(data) // 2 + 7])
    out = predict(logdir, "--records", str(cut), os.path.join(dset_dir, "val_000.tfrecord"))
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    first_lost = 8 * N_CLASSES // 2  # equal-sized records: the cut falls in that record's header
    assert len(errors) == 1 and "cut.tfrecord record {}".format(first_lost) in errors[0], out.stderr[-2000:]
    assert sum(line.startswith("val_000.tfrecord#") for line in out.stdout.splitlines()) == 8 * N_CLASSES


def test_noise_filter_drops_only_tensorflow_lines(tmp_path, monkeypatch, capfd):
    """_import_filtered hides TF's C++ lines written to fd 2 during an import and keeps the rest."""
    from spherical_cnn.cli import common
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795317743.979466    4704 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1795317747.856095    4704 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        "W1122 03:41:16.720000   27092 some_file.cc:7] a warning",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
        "with the appropriate compiler flags.",
    ]
    kept = ["a real message from a library", "I0000 is not a log line without the rest"]
    module = tmp_path / "noisy_module_for_test.py"
    module.write_text("import os\nos.write(2, {!r}.encode())\n".format("\n".join(lines + kept) + "\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    common._import_filtered("noisy_module_for_test")
    err = capfd.readouterr().err
    assert err.splitlines() == kept
    assert all(common.is_tensorflow_noise(line) for line in lines)
