"""Models shipped in spherical_cnn/pretrained: complete metadata, the stated accuracy reproduced
on each model's fixed test subset (regenerated, not downloaded), and predict --pretrained."""
import json
import os
import re

import numpy as np
import pytest

from spherical_cnn import errors, pretrained, trained_run
from spherical_cnn.cli import predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = pretrained.names()


def test_the_quick_start_model_is_shipped():
    assert "synthetic" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_stated_accuracy(name):
    folder = pretrained.model_dir(name)
    meta = pretrained.meta(name)
    for key in ("command", "revision", "test_accuracy", "classes", "subset", "input"):
        assert key in meta, key
    assert re.fullmatch(r"[0-9a-f]{40}", meta["revision"]), meta["revision"]
    assert 0 < meta["test_accuracy"] <= 1 and meta["command"].strip()
    with open(os.path.join(folder, "classes.txt")) as f:
        assert [l.strip() for l in f if l.strip()] == meta["classes"]
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert size < 4e6, size
    acc, n = pretrained.evaluate(folder)
    assert n == meta["subset"]["n"]
    # the same model on the same regenerated inputs: equal up to one borderline record
    assert abs(acc - meta["subset"]["accuracy"]) <= 1.0 / n + 1e-9, (acc, meta["subset"])


def test_predict_pretrained_mesh_and_listing(capsys):
    assert errors.run_cli(predict.main, ["--list_pretrained"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in SHIPPED)
    status = errors.run_cli(predict.main, ["--pretrained", "synthetic", "--meshes",
                                           os.path.join(ROOT, "examples", "chair.off")])
    out = capsys.readouterr().out
    assert status == 0 and out.strip().endswith(")") and ": chair (" in out
    status = errors.run_cli(predict.main, ["--pretrained", "synthetic", "--images", "x.png"], prog="predict")
    assert status == 2 and "synthetic was trained on meshes" in capsys.readouterr().err
    status = errors.run_cli(predict.main, ["--pretrained", "no-such", "--meshes", "x.off"], prog="predict")
    assert status == 2 and "no pretrained model 'no-such'; shipped: " in capsys.readouterr().err


@pytest.mark.skipif("fashion-mnist" not in SHIPPED, reason="fashion-mnist is not shipped")
def test_predict_pretrained_image_files(tmp_path, capsys):
    from PIL import Image
    folder = pretrained.model_dir("fashion-mnist")
    meta = pretrained.meta("fashion-mnist")
    with np.load(os.path.join(folder, meta["subset"]["file"])) as d:
        imgs, labels = d["images"][:4], d["labels"][:4]
    paths = []
    for i, img in enumerate(imgs):
        Image.fromarray(255 - img).save(tmp_path / "img{}.png".format(i))  # dark on light, as a photo
        paths.append(str(tmp_path / "img{}.png".format(i)))
    np.save(tmp_path / "img.npy", imgs[0].astype(np.float32) / 255)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    status = errors.run_cli(predict.main, ["--pretrained", "fashion-mnist", "--invert", "--images"] + paths
                            + [str(bad)], prog="predict")
    captured = capsys.readouterr()
    assert status == 1 and "bad.png: not an image file" in captured.err
    rows = [l for l in captured.out.splitlines() if l.startswith(str(tmp_path))]
    assert len(rows) == 4
    # the projected PNG gives the prediction of the projected array
    from spherical_cnn.data import images
    args, model, names = trained_run.load(folder)
    want = np.asarray(model.predict_on_batch(images.project(imgs, args.input_res))["logits"]).argmax(1)
    assert [r.split(": ", 1)[1].split(" (")[0] for r in rows] == [names[k] for k in want]
    status = errors.run_cli(predict.main, ["--pretrained", "fashion-mnist", "--images", str(tmp_path / "img.npy")])
    assert status == 0 and ": {} (".format(names[want[0]]) in capsys.readouterr().out


@pytest.mark.slow
def test_ship_pretrained_tool(tmp_path, capsys):
    """tools/ship_pretrained.py on a tiny run: copied (train.py export) or exported from the
    'final' checkpoint (a study run has no model.keras); the subset's stated accuracy reproduces,
    and so does meta.json's full-test figure with the command docs/pretrained.md gives
    (predict --records on the test split, --rows none)."""
    import importlib.util
    import shutil
    from spherical_cnn import training
    from test_training import TINY_MODEL, write_records
    dset_dir = write_records(str(tmp_path / "records"))
    logdir = str(tmp_path / "run")
    training.run(TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", logdir, "--n_epochs", "2"])
    spec = importlib.util.spec_from_file_location("ship", os.path.join(ROOT, "tools", "ship_pretrained.py"))
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    dest = tmp_path / "pretrained"
    dest.mkdir()
    assert errors.run_cli(ship.main, [logdir, "tiny", "--dest", str(dest), "--subset_size", "10",
                                      "--revision", "0" * 40, "--command", "train tiny"]) == 0
    meta = json.load(open(dest / "tiny" / "meta.json"))
    assert meta["subset"]["kind"] == "records" and meta["subset"]["n"] == 10
    assert meta["test_accuracy"] == json.load(open(os.path.join(logdir, "results.json")))["test"]
    assert sorted(os.listdir(dest / "tiny")) == ["classes.txt", "flags.yaml", "meta.json", "model.keras",
                                                 "subset.tfrecord"]
    assert "logdir: ." in open(dest / "tiny" / "flags.yaml").read()
    acc, n = pretrained.evaluate(str(dest / "tiny"))
    assert (acc, n) == (meta["subset"]["accuracy"], 10)

    # the study's mean +- std beside the model's own figure, from a study's results.json
    from spherical_cnn.studies import rotation_study as rs
    from test_rotation_study import _fake_run
    runs = {s: {"z": _fake_run(0.9 - s / 10, 0.5, 10.0), "so3": _fake_run(0.7, 0.6 + s / 20, 20.0)}
            for s in (0, 1, 2)}
    rs.write_outputs({"seeds": [0, 1, 2], "models": {"spherical": rs.summarize(rs.MODELS["spherical"], runs)}},
                     str(tmp_path / "study"))
    study_args = [logdir, "tiny-study", "--dest", str(dest), "--subset_size", "10", "--revision", "0" * 40,
                  "--command", "x", "--study", str(tmp_path / "study" / "results.json")]
    assert errors.run_cli(ship.main, study_args, prog="ship") == 2  # not a study run folder: say which
    assert "give --study_model and --study_regime" in capsys.readouterr().err
    assert errors.run_cli(ship.main, study_args + ["--study_model", "spherical", "--study_regime", "R/R"],
                          prog="ship") == 2
    assert "no regime 'R/R' (it has z/z, SO(3)/SO(3)" in capsys.readouterr().err
    assert errors.run_cli(ship.main, study_args + ["--study_model", "spherical", "--study_regime",
                                                   "SO(3)/SO(3)", "--study_command", "study cmd"]) == 0
    study = json.load(open(dest / "tiny-study" / "meta.json"))["study"]
    want = [0.6, 0.65, 0.7]
    assert study["values"] == pytest.approx(want) and study["command"] == "study cmd"
    assert (study["mean"], study["std"]) == pytest.approx((np.mean(want), np.std(want, ddof=1)))
    assert "study SO(3)/SO(3) 0.6500 +- 0.0500 over 3 seeds" in capsys.readouterr().out

    os.remove(os.path.join(logdir, "model.keras"))  # as a study run: exported from 'final'
    assert errors.run_cli(ship.main, [logdir, "tiny", "--dest", str(dest), "--subset_size", "10",
                                      "--revision", "0" * 40, "--command", "x"]) == 2  # exists
    assert errors.run_cli(ship.main, [logdir, "tiny", "--dest", str(dest), "--subset_size", "10",
                                      "--revision", "0" * 40, "--command", "x", "--overwrite"]) == 0
    again = json.load(open(dest / "tiny" / "meta.json"))
    assert again["subset"]["accuracy"] == meta["subset"]["accuracy"]
    assert [f for f in os.listdir(dest) if f.startswith(".ship")] == []
    capsys.readouterr()
    assert errors.run_cli(predict.main, ["--logdir", str(dest / "tiny"), "--records",
                                         os.path.join(dset_dir, "test_000.tfrecord"), "--rows", "none"]) == 0
    shown = re.search(r"accuracy: ([0-9.]+) over (\d+) records", capsys.readouterr().out)
    assert shown and float(shown.group(1)) == pytest.approx(meta["test_accuracy"], abs=5e-5), shown
    shutil.rmtree(tmp_path / "records")
