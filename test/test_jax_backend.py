"""The layers give the same numbers on JAX as on TensorFlow (fixed weights and inputs).

The JAX side runs in a subprocess with KERAS_BACKEND=jax (the backend is fixed
per process); it writes its outputs to an .npz file that is compared here with
the same computation on the TensorFlow backend.
"""
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Builds the layers with deterministic weights, runs them, saves outputs to sys.argv[1].
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    from spherical_cnn import layers

    def run():
        rng = np.random.default_rng(7)
        x = rng.standard_normal((2, 16, 16, 3)).astype("float32")
        out = {}
        for method in ["naive", "sep"]:
            for real in [True, False]:
                conv = layers.SphConv(4, n_filter_params=3, spectral_pool=1, method=method, real_inputs=real)
                conv.build(x.shape)
                conv.set_weights([rng.standard_normal(w.shape).astype("float32") for w in conv.get_weights()])
                y = conv(x)
                key = f"{method}_{real}"
                out["conv_" + key] = np.asarray(y)
                out["wap_" + key] = np.asarray(layers.AreaWeightedPooling()(y))
                out["wsa_" + key] = np.asarray(layers.SphericalAreaWeighting()(y))
                out["power_" + key] = np.asarray(layers.DegreePowerPooling(method, real)(y))
                # a compiled training step (jit on JAX, tf.function on TensorFlow)
                inp = keras.Input((16, 16, 3))
                model = keras.Model(inp, layers.DegreePowerPooling(method, real)(
                    layers.SphConv(2, method=method, real_inputs=real, kernel_initializer="ones")(inp)))
                model.compile(keras.optimizers.SGD(1e-3), "mse")
                out["loss_" + key] = np.array(model.train_on_batch(x, np.zeros((2, 8 * 2), "float32")))
        # anti-aliased PReLU on the grid 2n, eagerly and inside a compiled training step
        rng = np.random.default_rng(8)
        for method in ["naive", "sep"]:
            act = layers.SphericalActivation("prelu", upsample=2, method=method)
            act.build(x.shape)
            act.set_weights([rng.uniform(-1, 1, w.shape).astype("float32") for w in act.get_weights()])
            out["aa_" + method] = np.asarray(act(x))
            inp = keras.Input((16, 16, 3))
            model = keras.Model(inp, layers.DegreePowerPooling(method)(
                layers.SphericalActivation("prelu", upsample=2, method=method)(
                    layers.SphConv(2, method=method, kernel_initializer="ones")(inp))))
            model.compile(keras.optimizers.SGD(1e-3), "mse")
            out["aa_loss_" + method] = np.array(model.train_on_batch(x, np.zeros((2, 8 * 2), "float32")))
        # TF1's moving-variance update, eagerly and inside a compiled training step
        bn = layers.FusedBatchNormalization(scale=False, momentum=0.9)
        out["bn_batch"] = np.asarray(bn(x, training=True))
        out["bn_moving_variance"] = np.asarray(bn.moving_variance)
        inp = keras.Input((16, 16, 3))
        bn = layers.FusedBatchNormalization(scale=False, momentum=0.9)
        model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(bn(inp)))
        model.compile(keras.optimizers.SGD(1e-3), "mse")
        model.train_on_batch(x, np.zeros((2, 3), "float32"))
        out["bn_compiled_moving_variance"] = np.asarray(bn.moving_variance)
        return out

    if __name__ == "__main__":
        assert keras.backend.backend() == sys.argv[2], keras.backend.backend()
        np.savez(sys.argv[1], **run())
""")


def _run(backend, tmp_path):
    script = tmp_path / "run_layers.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{backend}.npz"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), str(out), backend], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{backend} run failed:\n{proc.stderr[-3000:]}"
    return dict(np.load(out))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (pip install -r requirements-dev.txt)")
def test_layers_match_between_jax_and_tensorflow(tmp_path):
    jax_out = _run("jax", tmp_path)
    tf_out = _run("tensorflow", tmp_path)
    assert set(jax_out) == set(tf_out) and len(tf_out) == 27
    # the compiled step updated the moving variance with the Bessel-corrected batch variance
    x = np.random.default_rng(7).standard_normal((2, 16, 16, 3))  # the script's input
    n = 2 * 16 * 16
    expected = 0.9 + 0.1 * x.var(axis=(0, 1, 2)) * n / (n - 1)
    np.testing.assert_allclose(tf_out["bn_compiled_moving_variance"], expected, rtol=1e-5)
    for key, ref in tf_out.items():
        scale = max(np.abs(ref).max(), 1e-12)
        assert np.abs(jax_out[key] - ref).max() / scale < 1e-5, key
