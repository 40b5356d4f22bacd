"""The real-data recipes (params/recipe-*.txt with their data set's flags file) parse, and the
trainer takes them as scripts/train.py does: one epoch on a tiny cached-TFRecord set of the
layout the data set's flags file declares, finite loss, a checkpoint and a test table."""
import os

import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import params, training
from spherical_cnn.data import records

# (recipe, data set's flags file, record layout written by the data set's builder)
RECIPES = [("recipe-fmnist-32", "fmnist-32", (2, np.float32)),
           ("recipe-furniture-32", "furniture-32", (1, np.complex64))]


def _write_tiny_set(folder, res, n_classes, channels, dtype, per_split=4):
    rng = np.random.default_rng(0)
    os.makedirs(folder)
    for name in ("train_000", "val_000", "test_000"):
        with tf.io.TFRecordWriter(os.path.join(folder, name + ".tfrecord")) as w:
            for i in range(per_split):
                x = rng.standard_normal((res, res, channels))
                if dtype == np.complex64:
                    x = x + 1j * rng.standard_normal(x.shape)
                w.write(records.encode_example(x.astype(dtype), i % n_classes, fname="{}/{}".format(name, i),
                                               idrot=0, rotation=np.array([1, 0, 0, 0], np.float32)))
    with open(os.path.join(folder, "classes.txt"), "w") as f:
        f.write("".join("c{}\n".format(c) for c in range(n_classes)))


@pytest.mark.parametrize("recipe, data_flags, layout", RECIPES)
def test_recipe_trains_one_epoch_with_its_data_sets_flags(recipe, data_flags, layout, tmp_path):
    files = ["@" + params.bundled_path(data_flags), "@" + params.bundled_path(recipe)]
    args = params.parse(files + ["--logdir", str(tmp_path / "run")])
    assert args.input_res == 32 and args.transform_method == "sep" and args.recompute_bn > 0
    assert args.n_epochs >= 16 and len(args.learning_rate) >= 3  # a decayed schedule, not the demo's

    data = str(tmp_path / "data")
    _write_tiny_set(data, args.input_res, args.n_classes, *layout)
    argv = files + ["--dset_dir", data, "--logdir", str(tmp_path / "run"), "--n_epochs", "1",
                    "--train_bsize", "4", "--progress", "none", "--tensorboard_histograms", "0", "--no_export"]
    results = training.run(argv)
    assert all(0.0 <= results[k] <= 1.0 for k in ("train", "val", "test")), results  # NaN fails too
    assert os.path.exists(str(tmp_path / "run" / "latest"))
    with open(str(tmp_path / "run" / "logging.log")) as f:
        log = f.read()
    assert "epoch=1;" in log and "|model|train|val|test|train time|" in log

    # tools/learning_curves.py reads the same figures back from the run's TensorBoard events
    import importlib.util
    spec = importlib.util.spec_from_file_location("learning_curves", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "learning_curves.py"))
    curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curves)
    png, values = str(tmp_path / "curves.png"), str(tmp_path / "curves.json")
    assert curves.main([str(tmp_path / "run"), "--labels", recipe, "--out", png, "--json", values]) == 0
    scalars = curves.read_scalars(str(tmp_path / "run"))
    assert [v for _, v in scalars["train_acc"]] == pytest.approx([results["train"]], abs=1e-6)
    assert [v for _, v in scalars["valid_acc"]] == pytest.approx([results["val"]], abs=1e-6)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
