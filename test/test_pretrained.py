"""Models shipped in spherical_cnn/pretrained: complete metadata, the stated accuracy reproduced
on each model's fixed test subset (regenerated, not downloaded), and predict --pretrained."""
import json
import os
import re

import numpy as np
import pytest

from spherical_cnn import errors, pretrained
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
    args, model, names = predict.load(folder)
    want = np.asarray(model.predict_on_batch(images.project(imgs, args.input_res))["logits"]).argmax(1)
    assert [r.split(": ", 1)[1].split(" (")[0] for r in rows] == [names[k] for k in want]
    status = errors.run_cli(predict.main, ["--pretrained", "fashion-mnist", "--images", str(tmp_path / "img.npy")])
    assert status == 0 and ": {} (".format(names[want[0]]) in capsys.readouterr().out
