"""Geodesic / angular metrics and the losses of spherical_regression vs closed forms
and NumPy references."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.transform import Rotation

from spherical_regression import heads, losses, metrics, rotations, signs


def _unit(rng, n, d):
    y = rng.standard_normal((n, d))
    return y / np.linalg.norm(y, axis=1, keepdims=True)


# ---------------------------------------------------------------- rotations / geodesic

def test_quaternion_to_matrix_matches_scipy():
    q = _unit(np.random.default_rng(0), 20, 4)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # scipy: (x, y, z, w)
    np.testing.assert_allclose(rotations.quaternion_to_matrix(q), ref, atol=1e-12)


def test_geodesic_of_r_and_r_times_axis_rotation_is_t():
    rng = np.random.default_rng(1)
    n = 200
    r = rotations.quaternion_to_matrix(rotations.random_quaternions(n, rng))
    axes = _unit(rng, n, 3)
    t = rng.uniform(1e-3, math.pi - 1e-3, n)
    r2 = r @ rotations.axis_angle_to_matrix(axes, t)
    np.testing.assert_allclose(metrics.geodesic_distance_matrices(r, r2), t, atol=1e-6)
    # the same through quaternions: q2 = q * q(axis, t)
    q = rotations.random_quaternions(n, rng)
    q2 = rotations.quaternion_multiply(q, rotations.axis_angle_to_quaternion(axes, t))
    np.testing.assert_allclose(metrics.geodesic_distance_quaternions(q, q2), t, atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(metrics.geodesic_distance_quaternions_ops(
            tf.constant(q, tf.float64), tf.constant(q2, tf.float64))), t, atol=1e-6)


def test_quaternion_and_matrix_forms_agree_and_q_minus_q():
    rng = np.random.default_rng(2)
    q1, q2 = _unit(rng, 100, 4), _unit(rng, 100, 4)
    d_q = metrics.geodesic_distance_quaternions(q1, q2)
    d_r = metrics.geodesic_distance_matrices(rotations.quaternion_to_matrix(q1),
                                             rotations.quaternion_to_matrix(q2))
    np.testing.assert_allclose(d_q, d_r, atol=1e-10)
    # closed form for unit quaternions: 2 arccos |<q1, q2>|
    np.testing.assert_allclose(d_q, 2 * np.arccos(np.abs(np.sum(q1 * q2, 1))), atol=1e-6)
    np.testing.assert_allclose(metrics.geodesic_distance_quaternions(q1, -q1), 0.0, atol=1e-6)
    ops_d = keras.ops.convert_to_numpy(metrics.geodesic_distance_quaternions_ops(
        tf.constant(q1, tf.float32), tf.constant(-q1, tf.float32)))
    np.testing.assert_allclose(ops_d, 0.0, atol=1e-3)
    assert metrics.geodesic_distance_quaternions(q1, q2).max() <= math.pi


def test_geodesic_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        metrics.geodesic_distance_quaternions(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        metrics.geodesic_distance_matrices(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))


def test_vector_and_biternion_angles():
    u = np.array([[1.0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 2]])
    v = np.array([[0.0, 1, 0], [-1, 0, 0], [1, 1, 0], [0, 0, 5]])
    np.testing.assert_allclose(metrics.vector_angle(u, v), [math.pi / 2, math.pi, math.pi / 4, 0],
                               atol=1e-12)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(metrics.vector_angle_ops(
        tf.constant(u), tf.constant(v))), [math.pi / 2, math.pi, math.pi / 4, 0], atol=1e-7)
    a, b = np.array([0.1, 3.0, -3.0]), np.array([0.4, -3.0, 2.9])
    bit = lambda t: np.stack([np.cos(t), np.sin(t)], -1)  # noqa: E731
    np.testing.assert_allclose(metrics.biternion_angle(bit(a), bit(b)),
                               [0.3, 2 * math.pi - 6.0, 2 * math.pi - 5.9], atol=1e-12)


def test_summary_metrics_hand_computed():
    deg = np.array([5.0, 10.0, 20.0, 40.0, 100.0])
    s = metrics.summarize_errors(np.radians(deg))
    assert s["MedErr"] == pytest.approx(20.0)
    assert s["Acc@pi/6"] == pytest.approx(3 / 5)   # < 30 deg
    assert s["Acc@pi/12"] == pytest.approx(2 / 5)  # < 15 deg
    assert s["Acc@pi/24"] == pytest.approx(1 / 5)  # < 7.5 deg
    with pytest.raises(ValueError, match="no angles"):
        metrics.median_error_deg([])


@pytest.mark.parametrize("head", ["sexp", "sflat", "direct"])
def test_keras_metrics_match_numpy(head):
    """Keras MedErr / Acc@ on rotations rotated from the target by known angles."""
    rng = np.random.default_rng(3)
    deg = np.array([3.0, 9.0, 14.0, 25.0, 33.0, 50.0, 80.0, 120.0, 170.0])  # odd: one median
    q = rotations.random_quaternions(len(deg), rng)
    p = rotations.quaternion_multiply(
        q, rotations.axis_angle_to_quaternion(_unit(rng, len(deg), 3), np.radians(deg)))
    p = signs.canonicalize(p)
    if head == "sexp":
        o, sl = heads.sexp_encode(p, fix_first=True)
        y_pred = np.concatenate([np.abs(p), sl], axis=1)
    else:
        y_pred = p * (3.0 if head == "direct" else 1.0)  # direct: decode normalises
    yt, yp = tf.constant(q, tf.float32), tf.constant(y_pred, tf.float32)
    expected = metrics.summarize_errors(np.radians(deg))
    med = metrics.MedianAngularError(head=head)
    med.update_state(yt[:4], yp[:4])
    med.update_state(yt[4:], yp[4:])  # streaming over two batches
    assert float(med.result()) == pytest.approx(expected["MedErr"], abs=0.05)
    for key, thr in metrics.THRESHOLDS.items():
        acc = metrics.AngularAccuracy(thr, head=head)
        acc.update_state(yt, yp)
        assert float(acc.result()) == pytest.approx(expected[f"Acc@{key}"])
    assert len(metrics.paper_metrics(head=head)) == 4


# ---------------------------------------------------------------- losses vs NumPy

def _np_cos_prox(a, b):
    return 1 - np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _np_log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("dim,fix_first", [(2, False), (3, False), (4, True)])
def test_losses_match_numpy(dim, fix_first):
    rng = np.random.default_rng(4 + dim)
    n, k = 12, signs.num_sign_classes(dim, fix_first)
    y = _unit(rng, n, dim)
    if fix_first:
        y = signs.canonicalize(y)
    abs_pred = np.abs(_unit(rng, n, dim))
    sign_logits = rng.standard_normal((n, k))
    packed = np.concatenate([abs_pred, sign_logits], 1)
    yt, yp = tf.constant(y, tf.float32), tf.constant(packed, tf.float32)

    labels = np.array([int("".join("1" if s >= 0 else "0" for s in row[1 if fix_first else 0:]), 2)
                       for row in y])
    ce = -_np_log_softmax(sign_logits)[np.arange(n), labels]
    cos = _np_cos_prox(np.abs(y), abs_pred)
    np.testing.assert_allclose(losses.sign_cross_entropy(yt, yp).numpy(), ce, rtol=1e-5)
    np.testing.assert_allclose(losses.abs_cosine_proximity(yt, yp).numpy(), cos, atol=1e-6)
    # Keras Loss objects: batch mean; paper weighting 10 * cos + 1 * CE, and a configured one
    assert float(losses.SExpLoss()(yt, yp)) == pytest.approx(np.mean(10 * cos + ce), rel=1e-5)
    assert float(losses.SExpLoss(abs_weight=2.0, sign_weight=0.5)(yt, yp)) == pytest.approx(
        np.mean(2 * cos + 0.5 * ce), rel=1e-5)
    assert float(losses.AbsCosineProximityLoss()(yt, yp)) == pytest.approx(cos.mean(), abs=1e-6)
    assert float(losses.SignCrossEntropyLoss()(yt, yp)) == pytest.approx(ce.mean(), rel=1e-5)

    raw = rng.standard_normal((n, dim)) * 1.5
    diff = np.abs(raw - y)
    sl1 = np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).mean(1)
    assert float(losses.DirectLoss()(yt, tf.constant(raw, tf.float32))) == pytest.approx(
        sl1.mean(), rel=1e-5)
    assert float(losses.SFlatLoss()(yt, tf.constant(raw, tf.float32))) == pytest.approx(
        _np_cos_prox(y, raw).mean(), abs=1e-6)


def test_losses_reject_wrong_widths():
    yt = tf.constant(_unit(np.random.default_rng(0), 3, 4), tf.float32)
    with pytest.raises(ValueError, match="sflat_loss"):
        losses.SFlatLoss()(yt, tf.zeros((3, 5)))
    with pytest.raises(ValueError, match="sexp_loss"):
        losses.SExpLoss()(yt, tf.zeros((3, 4)))
    with pytest.raises(ValueError, match="unknown head"):
        losses.loss_for_head("l2")


@pytest.mark.parametrize("head", ["sexp", "sflat", "direct"])
def test_compile_fit_with_head_loss_and_metrics(head):
    """Heads, losses and metrics work together in model.compile / fit / evaluate."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 6)).astype("float32")
    y = signs.canonicalize(_unit(rng, 64, 4)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              heads.make_head(head, 4, fix_first_sign=True)])
    model.compile(keras.optimizers.Adam(1e-2), loss=losses.loss_for_head(head),
                  metrics=metrics.paper_metrics(head=head))
    hist = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    res = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0.0 <= res["med_err"] <= 180.0 and 0.0 <= res["acc_pi_6"] <= 1.0
