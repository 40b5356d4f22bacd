"""Conventions of the original code (Liao et al. 2019) as options: the S_exp logit scale,
the sign layouts of the S^1 / S^2 / S^3 tasks and their sign(0) rules, the S^1 abs loss,
the exact streaming median, and dtype handling. References are NumPy / closed forms."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from spherical_regression import heads, losses, metrics, signs


def _unit(rng, n, d):
    y = rng.standard_normal((n, d))
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def _np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- logit scale

def test_logit_scale_formulas_and_factor_two():
    rng = np.random.default_rng(0)
    o = rng.standard_normal((16, 4)) * 3
    paper = heads.sexp_abs(tf.constant(o), "paper").numpy()
    orig = heads.sexp_abs(tf.constant(o), "original_code").numpy()
    # closed forms: exp(o)/sqrt(sum exp(2o)) and sqrt(softmax(o))
    np.testing.assert_allclose(
        paper, np.exp(o) / np.sqrt(np.exp(2 * o).sum(1, keepdims=True)), rtol=1e-12)
    np.testing.assert_allclose(orig, np.sqrt(_np_softmax(o)), rtol=1e-12)
    # same |y| for logits o (paper) and 2 o (original code)
    np.testing.assert_allclose(
        paper, heads.sexp_abs(tf.constant(2 * o), "original_code").numpy(), rtol=1e-12)
    assert heads.sexp_abs(tf.constant(o)).numpy() == pytest.approx(paper)  # default: paper
    with pytest.raises(ValueError, match="logit_scale"):
        heads.sexp_abs(tf.constant(o), "torch")


@pytest.mark.parametrize("abs_loss", ["cosine", "log_likelihood"])
def test_gradient_wrt_logits_is_exactly_twice_under_paper_scale(abs_loss):
    """At matched outputs (o under 'paper', 2 o under 'original_code') the loss is the
    same and dL/dO(paper) = 2 dL/dO(original code), by the chain rule."""
    rng = np.random.default_rng(1)
    o = rng.standard_normal((8, 4)) * 2
    y = _unit(rng, 8, 4)
    sign_logits = tf.constant(rng.standard_normal((8, 16)))
    loss_fn = losses.SExpLoss(abs_loss=abs_loss, dtype="float64")

    def grad(logits, scale):
        logits = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            packed = tf.concat([heads.sexp_abs(logits, scale), sign_logits], axis=1)
            loss = loss_fn(tf.constant(y), packed)
        return float(loss), tape.gradient(loss, logits).numpy()

    loss_p, g_paper = grad(o, "paper")
    loss_o, g_orig = grad(2 * o, "original_code")
    assert loss_p == pytest.approx(loss_o, rel=1e-12)
    np.testing.assert_allclose(g_paper, 2 * g_orig, rtol=1e-9, atol=1e-15)
    assert np.abs(g_paper).max() > 1e-3  # not trivially zero


def test_head_logit_scale_option_encode_and_config():
    rng = np.random.default_rng(2)
    y = signs.canonicalize(_unit(rng, 10, 4))
    for scale in ("paper", "original_code"):
        head = heads.SExpHead(4, fix_first_sign=True, logit_scale=scale)
        o, sl = heads.sexp_encode(y, fix_first=True, logit_scale=scale)
        out = head.activate([tf.constant(o), tf.constant(sl)])
        np.testing.assert_allclose(head.decode(out).numpy(), y, atol=1e-12)
        clone = heads.SExpHead.from_config(head.get_config())
        assert clone.logit_scale == scale and clone.num_sign_classes == 8
    o_p, _ = heads.sexp_encode(y, True, logit_scale="paper")
    o_o, _ = heads.sexp_encode(y, True, logit_scale="original_code")
    np.testing.assert_allclose(o_o, 2 * o_p)
    with pytest.raises(ValueError, match="logit_scale"):
        heads.SExpHead(4, logit_scale="half")


# ---------------------------------------------------------------- sign layouts

# The original code's tables, written out (REFERENCE.md section 2)
NORMAL_YZX_TABLE = [(-1, -1, -1), (-1, -1, 1), (1, -1, -1), (1, -1, 1)]  # (y, z, x)
BITERNION_TABLE = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
# regEulerNet's map of np.sign(cos, sin) to a class, zeros included
BITERNION_SIGNS_TO_LABEL = {(1, 1): 0, (-1, 1): 1, (-1, -1): 2, (1, -1): 3,
                            (1, 0): 0, (0, 1): 0, (-1, 0): 1, (0, -1): 3}


def _normal_label_ref(n):
    """regNormalNet: sign(0) -> -1; label = 2 * [y > 0] + [x > 0] over (y, z, x)."""
    return 2 * (n[:, 0] > 0).astype(int) + (n[:, 2] > 0).astype(int)


def _normals_yzx(rng, n):
    v = _unit(rng, n, 3)
    v[:, 1] = -np.abs(v[:, 1])  # z <= 0: facing the camera
    special = np.array([[0.0, -1, 0], [0.6, -0.8, 0], [0, -0.8, 0.6], [-0.6, -0.8, 0],
                        [0, -0.8, -0.6], [0.6, 0, 0.8], [-0.6, 0, -0.8]])
    return np.concatenate([v, special])


def _roundtrip(layout, y, logit_scale="paper"):
    o, sl = heads.sexp_encode(y, sign_layout=layout, logit_scale=logit_scale)
    packed = tf.concat([heads.sexp_abs(tf.constant(o), logit_scale), tf.constant(sl)], 1)
    return heads.sexp_decode(packed, y.shape[1], layout).numpy()


def test_normal_yzx_layout_table_labels_and_round_trip():
    layout = signs.SignLayout.preset("normal_yzx")
    assert layout.num_classes == 4 and layout.fixed == 1
    np.testing.assert_array_equal(layout.table, NORMAL_YZX_TABLE)
    n = _normals_yzx(np.random.default_rng(3), 200)
    np.testing.assert_array_equal(layout.labels(n), _normal_label_ref(n))
    for dt in ("float16", "float32", "float64"):
        np.testing.assert_array_equal(
            layout.labels_ops(tf.constant(n, dt)).numpy(), _normal_label_ref(n))
    # sign(0) = -1: y = x = 0 is class 0, (y+, x 0) class 2, (y 0, x+) class 1
    assert layout.labels([[0.0, -1, 0], [0.6, -0.8, 0], [0, -0.8, 0.6]]).tolist() == [0, 2, 1]
    # encode target -> class + |y| -> decode = target (zeros included; z decodes to -|z|)
    np.testing.assert_allclose(_roundtrip(layout, n), n, atol=1e-12)
    np.testing.assert_allclose(_roundtrip(layout, n, "original_code"), n, atol=1e-12)


def test_biternion_layout_quadrant_order_and_sign_zero():
    layout = signs.SignLayout.preset("biternion")
    np.testing.assert_array_equal(layout.table, BITERNION_TABLE)
    t = np.concatenate([np.random.default_rng(4).uniform(-math.pi, math.pi, 300),
                        [0.0, math.pi / 2, math.pi, -math.pi / 2]])
    b = np.stack([np.cos(t), np.sin(t)], 1)
    b[-4:] = [[1, 0], [0, 1], [-1, 0], [0, -1]]  # exact zeros, as np.sign sees them
    ref = [BITERNION_SIGNS_TO_LABEL[tuple(np.sign(r).astype(int))] for r in b]
    np.testing.assert_array_equal(layout.labels(b), ref)
    np.testing.assert_array_equal(layout.labels_ops(tf.constant(b)).numpy(), ref)
    np.testing.assert_allclose(_roundtrip(layout, b), b, atol=1e-12)
    # quadrant k holds the angles in [k pi/2, (k+1) pi/2)
    inner = (np.abs(np.sin(2 * t)) > 1e-9)
    np.testing.assert_array_equal(layout.labels(b)[inner],
                                  (np.floor(np.mod(t, 2 * math.pi) / (math.pi / 2))
                                   .astype(int))[inner])


def test_quaternion_layouts_w_zero_rule():
    default = signs.SignLayout.preset("quaternion")
    orig = signs.SignLayout.preset("quaternion_original")
    assert default == signs.SignLayout.default(4, fix_first=True)
    np.testing.assert_array_equal(orig.table, default.table)  # product order, w = +1
    q = np.array([[0.0, -0.6, 0.0, 0.8]])
    # original: w == 0 flips to (0, 0.6, 0, -0.8): signs (x+, y 0 -> +, z-) = 0b110
    assert orig.labels(q).tolist() == [6] and default.labels(q).tolist() == [3]
    assert orig.labels_ops(tf.constant(q)).numpy().tolist() == [6]
    assert default.labels_ops(tf.constant(q)).numpy().tolist() == [3]
    np.testing.assert_allclose(_roundtrip(orig, q), -q, atol=1e-12)
    np.testing.assert_allclose(_roundtrip(default, q), q, atol=1e-12)
    rng = np.random.default_rng(5)
    r = _unit(rng, 50, 4)
    # away from w = 0 both agree; decode gives the canonical (w > 0) representative
    np.testing.assert_array_equal(orig.labels(r), default.labels(r))
    np.testing.assert_allclose(_roundtrip(orig, r), r * np.sign(r[:, :1]), atol=1e-12)


def test_sign_layout_in_loss_metric_and_head():
    rng = np.random.default_rng(6)
    t = rng.uniform(-math.pi, math.pi, 12)
    y = np.stack([np.cos(t), np.sin(t)], 1)
    layout = signs.SignLayout.preset("biternion")
    sign_logits = rng.standard_normal((12, 4))
    packed = np.concatenate([np.abs(_unit(rng, 12, 2)), sign_logits], 1)
    labels = [BITERNION_SIGNS_TO_LABEL[tuple(np.sign(r).astype(int))] for r in y]
    log_p = np.log(_np_softmax(sign_logits))
    ce = -log_p[np.arange(12), labels]
    got = losses.sign_cross_entropy(tf.constant(y), tf.constant(packed), "biternion").numpy()
    np.testing.assert_allclose(got, ce, rtol=1e-10)
    # the default (product) layout gives other labels for the same width
    other = losses.sign_cross_entropy(tf.constant(y), tf.constant(packed)).numpy()
    assert not np.allclose(other, ce)
    head = heads.SExpHead(2, sign_layout="biternion")
    assert head.compute_output_shape((None, 3)) == (None, 6)
    clone = heads.SExpHead.from_config(head.get_config())
    assert clone.sign_layout == layout
    loss = losses.SExpLoss(sign_layout="biternion")
    assert losses.SExpLoss.from_config(loss.get_config()).sign_layout == layout
    # a metric with the layout decodes the exact encoding to zero error
    o, sl = heads.sexp_encode(y, sign_layout=layout)
    med = metrics.MedianAngularError("vector", "sexp", sign_layout="biternion")
    med.update_state(tf.constant(y), tf.constant(np.concatenate([np.abs(y), sl], 1)))
    assert float(med.result()) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="do not fit"):
        heads.sexp_decode(tf.zeros((2, 2 + 2)), 2, "biternion")
    with pytest.raises(ValueError, match="is for dim=3"):
        heads.SExpHead(4, sign_layout="normal_yzx")


@pytest.mark.parametrize("name", ["quaternion", "quaternion_original", "normal_yzx",
                                  "biternion", "all", "first_fixed"])
def test_every_layout_labels_its_own_table(name):
    layout = signs.SignLayout.preset(name, dim=None if name not in ("all", "first_fixed") else 3)
    k = np.arange(layout.num_classes)
    assert len({tuple(r) for r in layout.table}) == layout.num_classes
    np.testing.assert_array_equal(layout.labels(layout.table), k)
    np.testing.assert_array_equal(layout.labels_ops(tf.constant(layout.table)).numpy(), k)
    np.testing.assert_array_equal(layout.signs(k), layout.table)
    assert signs.SignLayout(**layout.get_config()) == layout


def test_sign_layout_rejects_bad_settings():
    with pytest.raises(ValueError, match="quadrant"):
        signs.SignLayout(3, order="quadrant")
    with pytest.raises(ValueError, match="fixed must be"):
        signs.SignLayout(3, fixed=3)
    with pytest.raises(ValueError, match="unknown sign layout"):
        signs.SignLayout.preset("octonion")


# ---------------------------------------------------------------- S^1 abs loss

def test_log_likelihood_abs_loss_matches_original_s1_loss():
    """regEulerNet: 4 * mean(-sum y^2 log softmax(O)) + CE(sign logits, quadrant)."""
    rng = np.random.default_rng(7)
    n = 16
    t = rng.uniform(-math.pi, math.pi, n)
    y = np.stack([np.cos(t), np.sin(t)], 1)
    o = rng.standard_normal((n, 2)) * 2
    sign_logits = rng.standard_normal((n, 4))
    log_sm = np.log(_np_softmax(o))
    labels = [BITERNION_SIGNS_TO_LABEL[tuple(np.sign(r).astype(int))] for r in y]
    ce = -np.log(_np_softmax(sign_logits))[np.arange(n), labels]
    ref = np.mean(4 * -np.sum(y ** 2 * log_sm, 1) + ce)
    loss_fn = losses.SExpLoss(abs_weight=4.0, abs_loss="log_likelihood", sign_layout="biternion",
                             dtype="float64")
    o_t = tf.constant(o)
    with tf.GradientTape() as tape:
        tape.watch(o_t)
        packed = tf.concat([heads.sexp_abs(o_t, "original_code"), tf.constant(sign_logits)], 1)
        loss = loss_fn(tf.constant(y), packed)
    assert float(loss) == pytest.approx(ref, rel=1e-12)
    # d/dO of -sum y^2 log softmax(O) = softmax(O) - y^2 (sum y^2 = 1); batch mean, x4
    np.testing.assert_allclose(tape.gradient(loss, o_t).numpy(),
                               4 * (_np_softmax(o) - y ** 2) / n, rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError, match="abs_loss"):
        losses.SExpLoss(abs_loss="l2")


# ---------------------------------------------------------------- exact median

def _errors_as_outputs(deg, rng, dtype="float64"):
    """Targets on S^2 and S_flat outputs at the given angles (degrees) from them."""
    u = _unit(rng, len(deg), 3)
    w = _unit(rng, len(deg), 3)
    w = w - np.sum(w * u, 1, keepdims=True) * u
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    a = np.radians(deg)[:, None]
    v = np.cos(a) * u + np.sin(a) * w
    return tf.constant(u, dtype), tf.constant(v, dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 101, 1000])
def test_median_is_exact_for_odd_even_and_small_sets(n):
    rng = np.random.default_rng(100 + n)
    deg = rng.uniform(0, 180, n) if n > 4 else np.array([10.0, 50.0, 20.0, 170.0])[:n]
    yt, yp = _errors_as_outputs(deg, rng)
    med = metrics.MedianAngularError("vector", "sflat", dtype="float64")
    for i in range(0, n, 3):  # streamed in batches of 3
        med.update_state(yt[i:i + 3], yp[i:i + 3])
    assert not med.overflowed()
    assert float(med.result()) == pytest.approx(np.median(deg), abs=1e-6)
    med.reset_state()
    assert float(med.result()) == 0.0
    med.update_state(yt[:1], yp[:1])
    assert float(med.result()) == pytest.approx(deg[0], abs=1e-6)
    # float32 state: exact up to float32 rounding of the errors
    med32 = metrics.MedianAngularError("vector", "sflat")
    med32.update_state(yt, yp)
    assert float(med32.result()) == pytest.approx(np.median(deg), rel=1e-6, abs=1e-5)


def test_median_float32_and_sample_weight_mask():
    rng = np.random.default_rng(8)
    deg = rng.uniform(0, 180, 64)
    yt, yp = _errors_as_outputs(deg, rng, "float32")
    mask = (rng.random(64) < 0.5).astype("float32")
    med = metrics.MedianAngularError("vector", "sflat")
    med.update_state(yt, yp, sample_weight=mask)
    assert float(med.result()) == pytest.approx(np.median(deg[mask > 0]), abs=2e-3)
    med2 = metrics.MedianAngularError("vector", "sflat")
    med2.update_state(yt, yp)
    assert float(med2.result()) == pytest.approx(np.median(deg), abs=2e-3)


def test_median_inside_compiled_function():
    rng = np.random.default_rng(9)
    deg = rng.uniform(0, 180, 40)
    yt, yp = _errors_as_outputs(deg, rng)
    med = metrics.MedianAngularError("vector", "sflat", dtype="float64")

    @tf.function
    def step(a, b):
        med.update_state(a, b)
        return med.result()

    for i in range(0, 40, 8):
        step(yt[i:i + 8], yp[i:i + 8])
    assert float(med.result()) == pytest.approx(np.median(deg), abs=1e-9)


def test_median_past_capacity_falls_back_within_the_documented_bound():
    rng = np.random.default_rng(10)
    deg = rng.uniform(0, 180, 1001)
    yt, yp = _errors_as_outputs(deg, rng)
    med = metrics.MedianAngularError("vector", "sflat", capacity=16, bins=360)
    for i in range(0, 1001, 100):
        med.update_state(yt[i:i + 100], yp[i:i + 100])
    assert med.overflowed()
    s = np.sort(deg)
    gap = 0.5 * (s[len(s) // 2] - s[(len(s) - 1) // 2])  # 0 for an odd count
    assert abs(float(med.result()) - np.median(deg)) <= 180 / 360 + gap + 1e-9


# ---------------------------------------------------------------- dtypes

@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_decode_and_metrics_accept_non_floatx_outputs(dtype):
    rng = np.random.default_rng(11)
    q = signs.canonicalize(_unit(rng, 9, 4))
    deg = np.array([3.0, 9.0, 14.0, 25.0, 33.0, 50.0, 80.0, 120.0, 170.0])
    from spherical_regression import rotations
    p = signs.canonicalize(rotations.quaternion_multiply(
        q, rotations.axis_angle_to_quaternion(_unit(rng, 9, 3), np.radians(deg))))
    _, sl = heads.sexp_encode(p, fix_first=True)
    packed = np.concatenate([np.abs(p), sl], 1)
    dec = heads.sexp_decode(tf.constant(packed, dtype), 4)
    assert dec.dtype == dtype
    np.testing.assert_allclose(dec.numpy().astype(np.float64), p,
                               atol=1e-3 if dtype == "float16" else 1e-12)
    yt, yp = tf.constant(q, dtype), tf.constant(packed, dtype)
    tol = 0.5 if dtype == "float16" else 1e-6  # float16 inputs: ~1e-3 relative rounding
    for mdtype in ("float32", dtype):
        med = metrics.MedianAngularError(dtype=mdtype)
        med.update_state(yt, yp)
        assert float(med.result()) == pytest.approx(np.median(deg), abs=tol)
        for key, thr in metrics.THRESHOLDS.items():
            acc = metrics.AngularAccuracy(thr, dtype=mdtype)
            acc.update_state(yt, yp)
            assert float(acc.result()) == pytest.approx(np.mean(np.radians(deg) < thr))
    # mixed targets / outputs
    med = metrics.MedianAngularError()
    med.update_state(tf.constant(q, "float32"), yp)
    assert float(med.result()) == pytest.approx(np.median(deg), abs=tol)


def test_mixed_precision_head_with_metrics():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        rng = np.random.default_rng(12)
        x = rng.standard_normal((32, 6)).astype("float32")
        y = signs.canonicalize(_unit(rng, 32, 4)).astype("float32")
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                                  heads.SExpHead(4, fix_first_sign=True)])
        out = model(x)
        assert keras.backend.standardize_dtype(out.dtype) == "float16"
        assert heads.sexp_decode(out, 4).dtype == "float16"
        model.compile("adam", loss=losses.SExpLoss(), metrics=metrics.paper_metrics())
        res = model.evaluate(x, y, verbose=0, return_dict=True)
        assert 0.0 <= res["med_err"] <= 180.0 and np.isfinite(res["loss"])
    finally:
        keras.config.set_dtype_policy(previous)
