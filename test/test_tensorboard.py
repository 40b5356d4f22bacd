"""The real TensorBoard server reads a finished run: scalars, histograms, the confusion image.

A tiny training run (records of test_training, with class names) is served by
``tensorboard --logdir RUN --host 127.0.0.1 --port 0``; its HTTP data API must
return what the event files hold, and the confusion image must be a PNG of the
size matplotlib renders.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import summaries, training
from test_training import N_CLASSES, TINY_MODEL, write_records

CLASS_NAMES = ["cone", "cube", "sphere"]


def tensorboard_binary():
    path = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    return path if os.path.exists(path) else shutil.which("tensorboard")


def events(logdir):
    """{tag: [(step, ndarray)]} from the event files of ``logdir``."""
    out = {}
    for f in sorted(os.listdir(logdir)):
        if f.startswith("events.out"):
            for raw in tf.data.TFRecordDataset(os.path.join(logdir, f)):
                event = tf.compat.v1.Event.FromString(raw.numpy())
                for v in event.summary.value:
                    out.setdefault(v.tag, []).append((event.step, tf.make_ndarray(v.tensor)))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, logdir) of a TensorBoard server on a finished tiny run; stopped afterwards."""
    binary = tensorboard_binary()
    if binary is None:
        pytest.skip("the tensorboard command is not installed")
    base = tmp_path_factory.mktemp("tb")
    dset_dir = write_records(str(base / "records"))
    with open(os.path.join(dset_dir, "classes.txt"), "w") as f:
        f.write("\n".join(CLASS_NAMES) + "\n")
    logdir = str(base / "run")
    training.run(TINY_MODEL + ["--dset_dir", dset_dir, "--logdir", logdir, "--n_epochs", "2"])

    log = open(base / "tensorboard.log", "w+")
    proc = subprocess.Popen([binary, "--logdir", logdir, "--host", "127.0.0.1", "--port", "0"],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = None, time.time() + 120
        while url is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            log.seek(0)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", log.read())
            url = m and m.group(1)
        log.seek(0)
        assert url, "TensorBoard did not start: " + log.read()[-2000:]
        while time.time() < deadline:  # wait until the run is loaded
            if "train_acc" in json.dumps(get_json(url, "/data/plugin/scalars/tags")):
                break
            time.sleep(0.5)
        yield url, logdir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def get(url, path, **query):
    with urllib.request.urlopen(url + path + ("?" + urllib.parse.urlencode(query) if query else ""),
                                timeout=30) as r:
        return r.read()


def get_json(url, path, **query):
    return json.loads(get(url, path, **query))


def test_scalars_match_the_event_files(server):
    url, logdir = server
    ev = events(logdir)
    for tag in ("train_acc", "valid_acc", "learning_rate", "loss/total"):
        served = get_json(url, "/data/plugin/scalars/scalars", run=".", tag=tag)
        assert [s for _, s, _ in served] == [1, 2]
        np.testing.assert_allclose([v for _, _, v in served], [float(a) for _, a in ev[tag]], rtol=1e-6)


def test_histograms_match_the_event_files(server):
    url, logdir = server
    ev = events(logdir)
    tags = get_json(url, "/data/plugin/histograms/tags")["."]
    assert any(t.startswith("weights/") for t in tags) and any(t.startswith("activations/") for t in tags)
    tag = sorted(t for t in tags if t.startswith("weights/") and t.endswith("kernel"))[0]
    served = get_json(url, "/data/plugin/histograms/histograms", run=".", tag=tag)
    assert [step for _, step, _ in served] == [s for s, _ in ev[tag]]
    for (_, _, buckets), (_, written) in zip(served, ev[tag]):
        np.testing.assert_allclose(np.array(buckets), written, rtol=1e-6)


def test_confusion_image_is_the_rendered_png(server):
    url, logdir = server
    ev = events(logdir)
    entries = get_json(url, "/data/plugin/images/images", run=".", tag="valid_confusion", sample=0)
    assert [e["step"] for e in entries] == [1, 2]
    png = get(url, "/data/plugin/images/individualImage?" + entries[-1]["query"])
    width, height, written = ev["valid_confusion"][-1][1]
    assert png == written
    image = tf.io.decode_png(png).numpy()
    fig_w, fig_h = summaries.confusion_figure_size(N_CLASSES)
    dpi = summaries.CONFUSION_DPI
    assert image.shape[:2] == (int(height), int(width)) == (int(fig_h * dpi), int(fig_w * dpi))
    assert image.std() > 10  # not a flat grey square
