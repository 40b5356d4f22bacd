"""End to end: scripts/train.py on records in the original format.

Records are written here with a minimal ``tf.train.Example`` writer (only the
original's ``x`` and ``y`` fields), so that these tests depend on the reader
and the trainer only. Resolution 16, tiny models, a few dozen samples.
"""
import json
import logging
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import params, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = 16
N_CLASSES = 3

TINY_MODEL = ["--model", "two_branch", "--nfilters", "4,4,6", "--pool_layers", "0,1,0",
              "--concat_branches", "0,1,0", "--n_filter_params", "4", "--batch_norm",
              "--input_res", str(RES), "--n_classes", str(N_CLASSES), "--dtype", "complex64",
              "--mag_ang", "--real_inputs", "--dset", "from_cached_tfrecords",
              "--train_bsize", "8", "--tensorboard_histograms", "1", "--progress", "none"]


def _example(x, y):
    feature = {"x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()])),
               "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y)]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(directory, n_per_class=8, seed=0):
    """Class c: a map whose magnitude grows with c (learnable), random phases."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    files = {"train_000": 0, "train_001": 1, "val_000": 2, "test_000": 3}
    for name, offset in files.items():
        with tf.io.TFRecordWriter(os.path.join(directory, name + ".tfrecord")) as w:
            for i in range(n_per_class * N_CLASSES):
                y = i % N_CLASSES
                mag = 1.0 + y + 0.2 * rng.random((RES, RES, 1))
                ang = rng.uniform(0, np.pi / 2, (RES, RES, 1))
                w.write(_example((mag * np.exp(1j * ang)).astype(np.complex64), y))
    return directory


@pytest.fixture(scope="module")
def dset_dir(tmp_path_factory):
    return write_records(str(tmp_path_factory.mktemp("records")))


def read_scalars(logdir):
    """{tag: [(step, value)]} from the TensorBoard event files in logdir."""
    out = {}
    for f in sorted(os.listdir(logdir)):
        if not f.startswith("events.out"):
            continue
        for raw in tf.data.TFRecordDataset(os.path.join(logdir, f)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v))
    return out


def test_train_test_table_checkpoints_and_summaries(dset_dir, tmp_path, capsys):
    logdir = str(tmp_path / "run")
    result = training.run(TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", logdir,
                                        "--n_epochs", "2", "--learning_rate", "{0: 0.01, 1: 0.005}"])
    out = capsys.readouterr().out
    assert "epoch=1; lr=0.0100 train: " in out and "epoch=2; lr=0.0050 train: " in out
    # the time left: the mean wall time of a whole epoch times the epochs still to train (none
    # after the last)
    line1 = next(l for l in out.splitlines() if "epoch=1;" in l)
    per_epoch, left = re.search(r"\(([\d.]+) s/epoch, about (\d+) s left\)$", line1).groups()
    assert abs(int(left) - float(per_epoch)) <= 0.5
    assert next(l for l in out.splitlines() if "epoch=2;" in l).endswith("valid: {:.4f}".format(result["val"]))
    assert "|model|train|val|test|train time|" in out
    assert "|run|{:.4f}|{:.4f}|{:.4f}|".format(result["train"], result["val"], result["test"]) in out
    for name in ("best", "latest", "final"):
        assert os.path.exists(os.path.join(logdir, name, "ckpt.index")), name
    assert os.path.exists(os.path.join(logdir, "flags.yaml"))
    assert os.path.exists(os.path.join(logdir, "model.keras"))
    saved = json.load(open(os.path.join(logdir, "results.json")))
    assert saved["test"] == pytest.approx(result["test"])

    tags = read_scalars(logdir)
    for tag in ["train_acc", "valid_acc", "learning_rate", "loss/total", "loss/cross_entropy",
                "loss/extra", "loss/triplet", "loss/regularization", "valid_confusion"]:
        assert tag in tags, (tag, sorted(tags))
    assert [s for s, _ in tags["train_acc"]] == [1, 2]
    assert any(t.startswith("weights/") for t in tags)
    assert any(t.startswith("activations/conv0_b0") for t in tags)

    # --test_only reloads the saved flags and reproduces the test accuracy
    again = training.run(["--test_only", "--logdir", logdir])
    assert again["test"] == pytest.approx(result["test"])

    # The exported model reproduces the checkpoint's predictions.
    import keras
    from spherical_cnn import datasets
    args = training.load_flags(logdir, {})
    x, _ = next(iter(datasets.load(args).eval("test")))
    exported = keras.models.load_model(os.path.join(logdir, "model.keras"))
    trainer = training.Trainer(args)
    trainer.store.restore("final", trainer.checkpoint, expect_partial=True)
    np.testing.assert_allclose(exported(x)["logits"], trainer.model(x)["logits"], rtol=1e-4, atol=1e-5)


def test_killed_run_continues_from_latest(dset_dir, tmp_path):
    """Kill a run right after epoch 1 is logged; the rerun starts at epoch 2."""
    logdir = str(tmp_path / "killed")
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train.py")] + TINY_MODEL + [
        "--dset_dir", dset_dir, "--logdir", logdir, "--n_epochs", "3", "--skip_val"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.time() + 300
    for line in proc.stdout:
        lines.append(line)
        if "epoch=1;" in line or time.time() > deadline:
            proc.kill()
            break
    proc.wait()
    assert any("epoch=1;" in l for l in lines), "".join(lines[-20:])
    assert not any("epoch=2;" in l for l in lines)

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "Continuing from checkpoint" in rerun.stdout and "at epoch 1" in rerun.stdout
    epochs = [l.split("epoch=")[1].split(";")[0] for l in rerun.stdout.splitlines() if "epoch=" in l
              and "; lr=" in l]
    assert epochs == ["2", "3"]


def test_from_scratch_discards_checkpoints(dset_dir, tmp_path, capsys):
    logdir = str(tmp_path / "scratch")
    base = TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", logdir, "--skip_val", "--no_export"]
    training.run(base + ["--n_epochs", "1"])
    training.run(base + ["--n_epochs", "1", "--from_scratch"])
    out = capsys.readouterr().out
    assert "Training from scratch" in out
    assert out.count("epoch=1;") == 2


def test_missing_dataset_dir_is_named(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(Exception, match="nowhere"):
        training.run(TINY_MODEL + ["--dset_dir", missing, "--logdir", str(tmp_path / "r")])


def test_wrong_resolution_names_file_and_sizes(dset_dir, tmp_path):
    argv = [a if a != str(RES) else "32" for a in TINY_MODEL]
    with pytest.raises(Exception, match=r"train_000\.tfrecord.*record 0.*expected"):
        training.run(argv + ["--dset_dir", dset_dir, "--logdir", str(tmp_path / "r"), "--n_epochs", "1"])


def test_test_only_without_run_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="flags.yaml"):
        training.run(["--test_only", "--logdir", str(tmp_path / "empty")])


def test_predict_script_on_records_and_meshes(dset_dir, tmp_path):
    import trimesh
    logdir = str(tmp_path / "pred")
    result = training.run(TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", logdir, "--n_epochs", "1",
                                        "--skip_val"])
    script = os.path.join(ROOT, "scripts", "predict.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, script, "--logdir", logdir, "--records",
                          os.path.join(dset_dir, "test_000.tfrecord")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [l for l in out.stdout.splitlines() if l.startswith("test_000.tfrecord#")]
    assert len(lines) == 8 * N_CLASSES
    accuracy = float(out.stdout.split("accuracy: ")[1].split()[0])
    assert accuracy == pytest.approx(result["test"], abs=1e-4)

    mesh_path = str(tmp_path / "box.off")
    trimesh.creation.box(extents=[1, 2, 3]).export(mesh_path)
    out = subprocess.run([sys.executable, script, "--logdir", logdir, "--meshes", mesh_path, "--top_k", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [l for l in out.stdout.splitlines() if l.startswith(mesh_path)][0]
    probs = [float(p) for p in re.findall(r"\(([0-9.]+)\)", line)]
    assert len(probs) == 2 and probs[0] >= probs[1] and 0 < sum(probs) <= 1 + 1e-6

    missing = subprocess.run([sys.executable, script, "--logdir", str(tmp_path / "none"), "--meshes", mesh_path],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "none" in missing.stderr and "Traceback" not in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = subprocess.run([sys.executable, script, "--logdir", str(empty), "--meshes", mesh_path],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "no exported model" in missing.stderr


def test_xla_step_matches_the_plain_step(dset_dir, tmp_path):
    """--xla compiles the same training step: from the same initialisation, a
    shard of steps gives the same loss terms and (nearly) the same weights."""
    results = []
    for xla in (False, True):
        flags = TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", str(tmp_path / str(xla)),
                              "--transform_method", "sep", "--no_shuffle", "--optimizer", "momentum"] + (["--xla"] if xla else [])
        trainer = training.Trainer(params.parse(flags))
        init = [v.numpy() for v in trainer.model.trainable_variables]
        trainer._build_steps()
        sums = [trainer._train_step(x, y).numpy() for x, y in trainer.dataset.train(0)]
        results.append((sums, init, [v.numpy() for v in trainer.model.trainable_variables]))
    (plain_sums, init, plain_w), (xla_sums, xla_init, xla_w) = results
    assert all(np.array_equal(a, b) for a, b in zip(init, xla_init))
    # the first step agrees to ~1e-5; the batch norms amplify rounding (maps with a large mean),
    # and after three steps the sep transform's mirror sums leave 1.4e-4 (measured)
    np.testing.assert_allclose(xla_sums, plain_sums, rtol=3e-4, atol=1e-5)
    # momentum (not Adam, which turns rounding-level differences of ~0 gradients into
    # lr-sized steps) keeps the updates proportional to the gradients
    flat = lambda ws: np.concatenate([w.ravel() for w in ws])  # noqa: E731
    update = flat(plain_w) - flat(init)
    # (measured 1.3e-3 with the symmetric sep transform: the batch norms of these maps, whose
    # mean is ~20x their spread, amplify float32 rounding of any change of summation order)
    assert np.linalg.norm(flat(xla_w) - flat(plain_w)) < 3e-3 * np.linalg.norm(update)


def test_steps_have_device_kernels_for_every_op(tmp_path):
    """GPU-ready by construction: every op of the compiled training and evaluation
    steps (nested functions included) has a GPU or device-agnostic kernel in this
    TensorFlow build, and none calls back into Python (py_function / numpy_function)."""
    from tensorflow.python.framework import kernels

    args = params.parse(TINY_MODEL + ["--logdir", str(tmp_path), "--transform_method", "sep",
                                      "--dset_dir", str(tmp_path)])

    class OneBatch:
        input_shape = (RES, RES, 2)
        class_names = None

    trainer = training.Trainer(args, dataset=OneBatch())
    trainer._build_steps()
    x, y = tf.zeros((8, RES, RES, 2)), tf.zeros((8,), tf.int64)
    types = set()
    for step in (trainer._train_step, trainer._eval_step):
        graph = step.get_concrete_function(x, y).graph.as_graph_def()
        types |= {node.op for node in graph.node}
        types |= {node.op for f in graph.library.function for node in f.node_def}
    assert {"BatchMatMulV2", "FusedBatchNormV3"} <= types  # the transforms and the fused batch norm
    assert not types & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    host_only = sorted(t for t in types if not {"GPU", "DEFAULT"} & {
        k.device_type for k in kernels.get_registered_kernels_for_op(t).kernel})
    assert host_only == [], host_only


@pytest.mark.parametrize("kind, tol", [("bfloat16", 0.02), ("float16", 0.005)])
def test_mixed_precision_step_loss_matches_float32(dset_dir, tmp_path, kind, tol):
    """--mixed_precision: from the same initialisation, the first training step's losses
    (total and cross-entropy) stay within ``tol`` (relative) of float32's, and those of
    the whole first shard within 0.05 (float16's loss scaling skips the first steps
    while it lowers its scale); variables stay float32, the layers compute in the
    reduced dtype."""
    import keras

    results = {}
    try:
        for mp in (None, kind):
            flags = TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", str(tmp_path / str(mp)),
                                  "--transform_method", "sep", "--no_shuffle", "--optimizer", "momentum"]
            trainer = training.Trainer(params.parse(flags + (["--mixed_precision", mp] if mp else [])))
            assert all(v.dtype == "float32" for v in trainer.model.weights)
            conv = trainer.model.get_layer("conv0_b0_conv")
            assert conv.compute_dtype == (kind if mp else "float32")
            assert trainer.loss_scaling == (mp == "float16")
            trainer._build_steps()
            sums = np.array([trainer._train_step(x, y).numpy() for x, y in trainer.dataset.train(0)])
            assert np.isfinite(sums).all() and sums[:, 7:].sum() == 0  # no non-finite flags
            results[mp] = sums
            keras.config.set_dtype_policy("float32")
    finally:
        keras.config.set_dtype_policy("float32")
    ref, got = results[None], results[kind]
    np.testing.assert_allclose(got[0, :2], ref[0, :2], rtol=tol)
    np.testing.assert_allclose(got.sum(axis=0)[:2], ref.sum(axis=0)[:2], rtol=0.05)


def test_naive_on_cpu_is_pointed_to_sep_once(tmp_path):
    """The original's --transform_method naive on a CPU at res 64: one warning naming the
    measured factor and the flag; none for sep, for small grids, or with a GPU."""
    args = params.parse(["@" + os.path.join(ROOT, "params", "model-64.txt"), "--input_res", "64",
                         "--logdir", str(tmp_path)])
    text = training.naive_warning(args, have_gpu=False)
    assert "--transform_method sep" in text and "{:.1f}x".format(training.NAIVE_SLOWDOWN_CPU[64]) in text
    assert training.naive_warning(args, have_gpu=True) is None
    small = ["--logdir", str(tmp_path)]
    assert training.naive_warning(params.parse(small + ["--input_res", "16"]), have_gpu=False) is None
    assert training.naive_warning(params.parse(small + ["--input_res", "64", "--transform_method", "sep"]),
                                  have_gpu=False) is None
    flags = TINY_MODEL + ["--logdir", str(tmp_path / "t"), "--transform_method", "naive"]
    flags[flags.index("--input_res") + 1] = "64"

    class OneBatch:
        input_shape = (64, 64, 2)
        class_names = None

    # a handler of our own on the trainer's logger: counts what the trainer emits, whatever
    # handlers earlier tests left on the root logger (caplog saw the record twice there)
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = training.get_logger(None)
    collect = Collect(level=logging.WARNING)
    logger.addHandler(collect)
    try:
        training.Trainer(params.parse(flags), logger=logger, dataset=OneBatch())
    finally:
        logger.removeHandler(collect)
    assert sum("--transform_method sep" in m for m in seen) == 1
