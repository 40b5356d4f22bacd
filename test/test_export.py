"""TFLite export (issue 30, item 9): the demo's model with the default layers ('sep' SphConv
with spectral pooling, the anti-aliased nonlinearity, DegreePowerPooling) converts with
TFLite's builtin operators only, and the TFLite interpreter's outputs equal Keras's."""
import itertools
import os

import keras
import numpy as np
import pytest

from spherical_cnn import errors, export, models, params, sht

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tf = pytest.importorskip("tensorflow")


def _interpreter_outputs(blob, x, resize=False):
    """{output name: array} of the TFLite interpreter on ``x`` (resized to its batch first)."""
    it = tf.lite.Interpreter(model_content=blob)
    if resize:
        it.resize_tensor_input(it.get_input_details()[0]["index"], x.shape)
    runner = it.get_signature_runner()
    name = it.get_signature_list()["serving_default"]["inputs"][0]
    return runner(**{name: x})


def test_the_demos_model_converts_and_runs_in_the_tflite_interpreter(tmp_path):
    """params/model-32.txt (spectral pooling, anti-aliased PReLU, DegreePowerPooling) at n = 16."""
    with open(os.path.join(ROOT, "params", "model-32.txt")) as f:
        flags = f.read().split()
    args = params.parse(flags + ["--input_res", "16", "--n_classes", "5", "--nfilters", "4,4,6,6,8,8",
                                 "--logdir", str(tmp_path / "run")])
    keras.utils.set_random_seed(0)
    model = models.build_model(args, (16, 16, 2))
    x = np.random.default_rng(0).standard_normal((3, 16, 16, 2)).astype("float32")
    ref = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    path = tmp_path / "model.tflite"
    blob = export.to_tflite(model, str(path))
    assert path.read_bytes() == blob and not list(tmp_path.glob("*.tmp-*"))
    for i in range(len(x)):  # batch 1: one map at a time
        out = _interpreter_outputs(blob, x[i:i + 1])
        assert set(out) == set(ref)
        for k in ref:
            np.testing.assert_allclose(out[k][0], ref[k][i], atol=2e-6 * np.abs(ref[k]).max(), err_msg=k)


class _HalfRows(keras.layers.Layer):
    """The 'sep' transform with the equatorial Legendre step (the default from n = 256)."""

    def call(self, x):
        t = sht.get_transform(16, "sep", True, "float32", legendre_rows="half")
        return t.inverse_packed(t.forward_packed(x) * 0.5)


def test_a_model_tflite_cannot_take_is_refused_in_one_line():
    """The 'sep' transform's 'half' Legendre step (the default from n = 256) trips the
    converter with a fixed batch (the module's known limits): one line, no traceback."""
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, _HalfRows()(inputs))
    with pytest.raises(errors.UserError, match="^export.to_tflite: the model needs .*known limits"):
        export.to_tflite(model)


@pytest.mark.parametrize("batch", [1, 3, None])
def test_permute_axes_is_a_transpose(batch):
    """Against NumPy's transpose, for every order of 5 named axes (some of size 1)."""
    sizes = {"a": 2, "b": 1, "c": 3, "d": 4, "e": 2}
    names = tuple(sizes)
    x = np.random.default_rng(2).standard_normal(tuple(sizes.values()) + (3 if batch is None else batch,))
    src = names + ("n",)
    for dst in itertools.permutations(src):
        want = np.transpose(x, [src.index(a) for a in dst])
        if batch is None:  # an unknown batch inside a traced function
            fn = tf.function(lambda t: sht.permute_axes(t, src, dst),
                             input_signature=[tf.TensorSpec(tuple(sizes.values()) + (None,), tf.float64)])
            got = fn(x).numpy()
        else:
            got = np.asarray(sht.permute_axes(x, src, dst))
        np.testing.assert_array_equal(got, want)
        if batch is None:
            break  # one traced order suffices; the eager cases cover them all
