"""The README's library example on Keras's three backends, TensorFlow, JAX and PyTorch (issue
30, item 7): fit with SExpLoss, save and load, rotate; an ensemble saved and loaded. One subprocess per backend (the backend
is chosen at import); JAX and torch are CPU wheels in requirements-dev.txt."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import json, os, sys
import numpy as np
import keras
import spherical_cnn as scnn
import spherical_regression as sr
from spherical_cnn.studies import equivariance as eq

exec(compile(sys.argv[1], "README.md", "exec"))     # the README's example: `model`, compiled
rng = np.random.default_rng(0)
x = eq.random_bandlimited(8, 32, 1, rng).astype("float32")
y = rng.standard_normal((8, 3)); y /= np.linalg.norm(y, axis=1, keepdims=True)
y = y.astype("float32")
keras.utils.set_random_seed(0)
history = model.fit(x, y, epochs=2, batch_size=4, verbose=0).history["loss"]
path = os.path.join(sys.argv[2], "model.keras")
model.save(path)
again = keras.models.load_model(path)
loaded = float(np.abs(keras.ops.convert_to_numpy(again(x[:2])) - keras.ops.convert_to_numpy(model(x[:2]))).max())
try:
    sr.SExpLoss()(2 * y, model(x))           # non-unit targets
    refused = False
except ValueError:
    refused = True
# a rotation about the polar axis by 2 grid cells is a roll of the azimuth axis (exact)
t = 2 * np.pi * 2 / 32
Rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
rotated = keras.ops.convert_to_numpy(scnn.rotate(x[:2], Rz))
roll = float(np.abs(rotated - np.roll(x[:2], 2, axis=1)).max() / np.abs(x[:2]).max())
q = np.array([np.cos(t / 2), 0, 0, np.sin(t / 2)])
by_q = keras.ops.convert_to_numpy(scnn.rotate(x[:2], q, scalar_first=True))
# an ensemble of two classifiers, saved and loaded: its softmax is the members' mean
def classifier(seed):
    keras.utils.set_random_seed(seed)
    i = keras.Input((32, 32, 1))
    d = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(i))
    return keras.Model(i, {"descriptor": d, "logits": keras.layers.Dense(3)(d)})
def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
members = [classifier(1), classifier(2)]
scnn.ensemble_model(members).save(os.path.join(sys.argv[2], "ensemble.keras"))
ens = keras.models.load_model(os.path.join(sys.argv[2], "ensemble.keras"))
mean = sum(softmax(keras.ops.convert_to_numpy(m(x)["logits"])) for m in members) / 2
ensemble = float(np.abs(softmax(keras.ops.convert_to_numpy(ens(x)["logits"])) - mean).max())
print(json.dumps({"backend": keras.backend.backend(), "loss": history, "loaded": loaded,
                  "refused": refused, "roll": roll, "ensemble": ensemble,
                  "quaternion": float(np.abs(by_q - rotated).max())}))
'''


def _readme_example():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)[0]


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_readme_example_on_each_backend(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here (requirements-dev.txt installs it)")
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT, _readme_example(), str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["backend"] == backend
    assert len(res["loss"]) == 2 and all(0 < v < 100 for v in res["loss"])  # SExpLoss trained (torch: refused before)
    assert res["loaded"] < 1e-5
    assert res["refused"]
    assert res["roll"] < 1e-4  # torch: "step must be greater than zero" before
    assert res["quaternion"] < 1e-4
    assert res["ensemble"] < 1e-5
