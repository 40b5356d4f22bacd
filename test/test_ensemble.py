"""Ensembles (spherical_cnn/ensemble.py, spherical-cnn-ensemble): the probabilities are the
members' mean (NumPy reference), the saved ensemble loads in safe mode and predicts what its
members predict, and members that read different inputs are refused with one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from spherical_cnn import training
from spherical_cnn.errors import UserError
from test_training import N_CLASSES, TINY_MODEL, write_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def test_mean_probability_logits_against_numpy():
    import keras
    from spherical_cnn.ensemble import MeanProbabilityLogits
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 5, (6, 4)).astype("float32") for _ in range(3)]
    logits[2][0] = [900.0, -900.0, 0.0, 0.0]  # a confident member: no overflow, no log(0)
    out = keras.ops.convert_to_numpy(MeanProbabilityLogits()([keras.ops.convert_to_tensor(x) for x in logits]))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np_softmax(out), np.mean([np_softmax(x.astype("float64")) for x in logits], 0),
                               rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(dset_dir, [logdir seed 0, logdir seed 1]) of two tiny finished runs."""
    base = tmp_path_factory.mktemp("ensemble")
    dset_dir = write_records(str(base / "records"))
    logdirs = []
    for seed in (0, 1):
        logdir = str(base / "seed{}".format(seed))
        training.run(TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", logdir, "--n_epochs", "1",
                                   "--skip_val", "--seed", str(seed), "--learning_rate", "0.01"])
        logdirs.append(logdir)
    return dset_dir, logdirs


def test_ensemble_run_predicts_the_members_mean(runs, tmp_path):
    from spherical_cnn import trained_run
    from spherical_cnn.cli.predict import record_rows
    from spherical_cnn.datasets import to_model_input
    dset_dir, logdirs = runs
    out = str(tmp_path / "ens")
    test_file = os.path.join(dset_dir, "test_000.tfrecord")
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "ensemble.py")] + logdirs + ["--out", out]
    done = subprocess.run(cmd + ["--records", test_file], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ensemble of 2 runs written to" in done.stdout
    described = json.load(open(os.path.join(out, "ensemble.json")))
    assert [m["logdir"] for m in described["members"]] == logdirs
    assert [m["seed"] for m in described["members"]] == [0, 1]

    # loaded as any run (safe mode, saved flags, classes): probabilities = the members' mean
    args, model, names = trained_run.load(out)
    assert len(names) == N_CLASSES and args.input_res == training.load_flags(logdirs[0], {}).input_res
    rows = record_rows([os.path.join(dset_dir, "test_000.tfrecord")], args, pytest.fail)
    x = np.asarray(to_model_input(np.stack([r["x"] for r in rows]), args.mag_ang))
    got = np_softmax(np.asarray(model.predict_on_batch(x)["logits"], dtype="float64"))
    members = [trained_run.load(d)[1] for d in logdirs]
    expected = np.mean([np_softmax(np.asarray(m.predict_on_batch(x)["logits"], dtype="float64"))
                        for m in members], axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    descriptor = np.asarray(model.predict_on_batch(x)["descriptor"])
    parts = [np.asarray(m.predict_on_batch(x)["descriptor"]) for m in members]
    np.testing.assert_allclose(descriptor, np.concatenate(parts, axis=-1), rtol=1e-4, atol=1e-5)

    # --records: each member's accuracy (as its own training run measured it) and the ensemble's
    labels = np.array([r["y"] for r in rows])
    for i, logdir in enumerate(logdirs):
        own = json.load(open(os.path.join(logdir, "results.json")))["test"]
        assert "|member {} ({})|{:.4f}|{}|".format(i, logdir, own, len(rows)) in done.stdout
    assert "|ensemble|{:.4f}|{}|".format(np.mean(expected.argmax(1) == labels), len(rows)) in done.stdout

    # predict --logdir reads it like a training run, and prints the accuracy of the mean
    pred = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "predict.py"), "--logdir", out,
                           "--records", test_file, "--rows", "none"], capture_output=True, text=True, timeout=300)
    assert pred.returncode == 0, pred.stderr[-3000:]
    assert "accuracy: {:.4f} over {} records".format(np.mean(expected.argmax(1) == labels), len(rows)) \
        in pred.stdout

    # shipped as a pretrained model: meta.json names the members' seeds, not their folders
    import importlib.util
    from spherical_cnn import errors, pretrained
    spec = importlib.util.spec_from_file_location("ship", os.path.join(ROOT, "tools", "ship_pretrained.py"))
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    assert errors.run_cli(ship.main, [out, "tiny-ensemble", "--dest", str(tmp_path / "pretrained"),
                                      "--subset_size", "10", "--revision", "0" * 40,
                                      "--test_accuracy", "0.5"]) == 0
    meta = json.load(open(tmp_path / "pretrained" / "tiny-ensemble" / "meta.json"))
    assert meta["ensemble"]["seeds"] == [0, 1] and meta["ensemble"]["n_members"] == 2
    assert meta["command"].split()[0].endswith("ensemble.py") and str(tmp_path) not in json.dumps(meta["ensemble"])
    assert pretrained.evaluate(str(tmp_path / "pretrained" / "tiny-ensemble")) == (meta["subset"]["accuracy"], 10)

    # an existing ensemble is not replaced without --overwrite; nothing of it is lost
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert os.path.exists(os.path.join(out, "model.keras"))


def test_members_that_read_different_inputs_are_refused(runs, tmp_path):
    from spherical_cnn.ensemble import write_ensemble
    _, logdirs = runs
    other = tmp_path / "other"
    os.makedirs(other)
    for name in os.listdir(logdirs[1]):
        path = os.path.join(logdirs[1], name)
        if os.path.isfile(path):
            with open(path, "rb") as src, open(other / name, "wb") as dst:
                dst.write(src.read())
    flags = yaml.safe_load(open(other / "flags.yaml"))
    flags["mag_ang"] = False  # the same weights, told to read the maps another way
    yaml.safe_dump(flags, open(other / "flags.yaml", "w"))
    out = str(tmp_path / "ens")
    with pytest.raises(UserError, match=r"--mag_ang is False in .*other but True in .*seed0"):
        write_ensemble([logdirs[0], str(other)], out)
    with pytest.raises(UserError, match="named twice"):
        write_ensemble([logdirs[0], logdirs[0]], out)
    with pytest.raises(UserError, match="at least 2 runs"):
        write_ensemble([logdirs[0]], out)
    assert not os.path.exists(out)
