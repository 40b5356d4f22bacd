"""Writer and reader: round trips, records from a foreign writer, the clear errors."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import datasets
from spherical_cnn.data import builder, raycast, records, synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = 16


def flags(dset_dir, **kw):
    base = dict(dset="from_cached_tfrecords", dset_dir=str(dset_dir), dtype="complex64", input_res=RES,
                nchannels=1, mag_ang=True, train_bsize=4, first_n=None, test_n=0, round_batches=False,
                seed=0, skip_val=False, spectral_input=False, n_classes=3)
    base.update(kw)
    return argparse.Namespace(**base)


def foreign_example(**features):
    """A tf.train.Example written without our writer (original field layout)."""
    f = {}
    for k, v in features.items():
        if isinstance(v, bytes):
            f[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        else:
            f[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def write(path, examples):
    with tf.io.TFRecordWriter(str(path)) as w:
        for e in examples:
            w.write(e)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "ds"
    manifest = builder.build_synthetic(str(out), input_res=RES, n_train_per_class=3, n_test_per_class=1,
                                       n_rotations=2, n_test_rotations=2, val_fraction=0.34, workers=1,
                                       progress=False)
    return str(out), manifest


def test_builder_layout_and_manifest(tiny_dataset):
    out, manifest = tiny_dataset
    names = sorted(os.listdir(out))
    assert {"classes.txt", "manifest.json", "train_000.tfrecord", "train_001.tfrecord"} <= set(names)
    assert any(n.startswith("val_") for n in names) and any(n.startswith("test_") for n in names)
    classes = open(os.path.join(out, "classes.txt")).read().split()
    assert classes == sorted(synthetic.CLASS_NAMES)
    saved = json.load(open(os.path.join(out, "manifest.json")))
    assert saved["input_res"] == RES and saved["rotations"] == "so3" and saved["n_rotations"] == 2
    n_classes = len(classes)
    assert saved["counts"]["test"]["records"] == 2 * n_classes


def test_records_hold_the_map_of_their_stored_rotation(tiny_dataset):
    """Write-then-read round trip: x equals the map re-rendered from the record's fname/rotation."""
    out, _ = tiny_dataset
    raw = next(records.iter_records(os.path.join(out, "test_000.tfrecord")))
    d = records.decode_example(raw, shape=(RES, RES, 1))
    assert set(d) >= {"x", "y", "fname", "idrot", "rotation"}
    cls, split, i = None, None, None
    for rel, c, s, idx in synthetic.mesh_list(3, 1):
        if rel == d["fname"]:
            cls, split, i = c, s, idx
    assert cls is not None, d["fname"]
    assert d["y"] == sorted(synthetic.CLASS_NAMES).index(cls)
    mesh = synthetic.make_mesh(cls, np.random.default_rng(synthetic.mesh_seed(synthetic.DEFAULT_SEED, cls, split, i)))
    again = raycast.cast_rotated(mesh, RES, d["rotation"][None].astype(np.float64), channels=True)[0]
    np.testing.assert_allclose(d["x"], again, rtol=1e-5, atol=1e-5)


def test_reader_batches_follow_the_original_semantics(tiny_dataset):
    out, _ = tiny_dataset
    ds = datasets.from_cached_tfrecords(flags(out, n_classes=12))
    assert ds.input_shape == (RES, RES, 2) and ds.n_classes == 12
    assert len(ds.files["train"]) == 2
    # epoch e reads shard e % 2; shuffling is seeded per epoch
    ys = [np.concatenate([y.numpy() for _, y in ds.train(e)]) for e in (0, 1, 2)]
    assert len(ys[0]) == ds.num_examples("train") // 2
    np.testing.assert_array_equal(np.sort(ys[0]), np.sort(ys[2]))
    assert not np.array_equal(ys[0], ys[2])
    # eval: the raw maps through the --mag_ang transform, in file order
    x, _ = next(iter(ds.eval("test")))
    raw = records.read_numpy(os.path.join(out, "test_000.tfrecord"), (RES, RES, 1), max_records=4)[0]
    mag = np.abs(raw)
    np.testing.assert_allclose(x.numpy(), np.concatenate([mag, raw.imag / (mag + 1e-8)], -1), rtol=1e-6)


def test_records_from_a_foreign_writer_with_angle_channel(tmp_path):
    rng = np.random.default_rng(0)
    maps = [(rng.normal(size=(RES, RES, 1)) + 1j * rng.normal(size=(RES, RES, 1))).astype(np.complex64)
            for _ in range(5)]
    extra = [rng.normal(size=(RES, RES, 1)).astype(np.complex64) for _ in range(5)]
    for split in ("train", "test"):
        write(tmp_path / "{}.tfrecord".format(split),
              [foreign_example(x=m.tobytes(), a=a.tobytes(), y=i % 3) for i, (m, a) in enumerate(zip(maps, extra))])
    ds = datasets.load(flags(tmp_path, nchannels=2, skip_val=True))
    assert ds.input_shape == (RES, RES, 4)
    x, y = next(iter(ds.eval("test")))
    full = np.concatenate([np.stack(maps), np.stack(extra)], axis=-1)[:4]
    mag = np.abs(full)
    np.testing.assert_allclose(x.numpy(), np.concatenate([mag, full.imag / (mag + 1e-8)], -1), rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="has no val"):
        ds.eval("val")


def test_float_records_without_mag_ang(tmp_path):
    maps = np.random.default_rng(1).normal(size=(3, RES, RES, 2)).astype(np.float32)
    for split in ("train", "val", "test"):
        write(tmp_path / "{}_0.tfrecord".format(split), [foreign_example(x=m.tobytes(), y=1) for m in maps])
    ds = datasets.load(flags(tmp_path, dtype="float32", nchannels=2, mag_ang=False))
    x, _ = next(iter(ds.eval("val")))
    np.testing.assert_array_equal(x.numpy(), maps)


def test_wrong_record_size_names_file_record_and_bytes(tmp_path):
    good = np.zeros((RES, RES, 1), np.complex64).tobytes()
    write(tmp_path / "train_0.tfrecord", [foreign_example(x=good, y=0)])
    write(tmp_path / "test_0.tfrecord", [foreign_example(x=good, y=0), foreign_example(x=good[:100], y=0)])
    ds = datasets.load(flags(tmp_path, skip_val=True))
    with pytest.raises(Exception, match=r"test_0\.tfrecord record 1: x has 100 bytes, expected 2048"):
        for _ in ds.eval("test"):
            pass
    with pytest.raises(ValueError, match=r"record 0: x has 2048 bytes, expected 8192 for --input_res 32"):
        datasets.load(flags(tmp_path, skip_val=True, input_res=32))


def test_missing_or_empty_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.load(flags(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"no train\*\.tfrecord"):
        datasets.load(flags(tmp_path))
    with pytest.raises(ValueError, match="--mag_ang"):
        datasets.load(flags(tmp_path, mag_ang=False))
    with pytest.raises(ValueError, match="unknown --dset"):
        datasets.load(flags(tmp_path, dset="bogus"))


def test_make_dataset_skips_broken_meshes_and_refuses_to_overwrite(tmp_path):
    root = tmp_path / "meshes"
    synthetic.write_mesh_tree(str(root), 2, 1)
    broken = root / "chair" / "train" / "broken.off"
    broken.write_text("OFF\n3 1 0\n0 0 nan\n1 0 0\n0 1 0\n3 0 1 2\n")
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "make_dataset.py"), str(root), "--out", str(out),
           "--input_res", str(RES), "--n_rotations", "1", "--n_test_rotations", "1", "--workers", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.load(open(out / "manifest.json"))
    assert [s["mesh"] for s in manifest["skipped"]] == [os.path.join("chair", "train", "broken.off")]
    assert "broken.off" in run.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr
