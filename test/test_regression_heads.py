"""S_exp / S_flat / Direct heads and the sign-label mapping (spherical_regression)."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from spherical_regression import heads, signs


def _unit(rng, n, d):
    y = rng.standard_normal((n, d))
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [2, 3, 4])
@pytest.mark.parametrize("fix_first", [False, True])
def test_sign_mapping_round_trip_all_combinations(dim, fix_first):
    k = signs.num_sign_classes(dim, fix_first)
    assert k == 2 ** (dim - 1 if fix_first else dim)
    table = signs.sign_table(dim, fix_first)
    # every combination appears exactly once (first sign + when fixed)
    combos = {tuple(r) for r in itertools.product((-1.0, 1.0), repeat=dim)
              if not fix_first or r[0] > 0}
    assert {tuple(r) for r in table} == combos
    labels = np.arange(k)
    vecs = signs.label_signs(labels, dim, fix_first)
    np.testing.assert_array_equal(signs.sign_labels(vecs, fix_first), labels)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(signs.sign_labels_ops(tf.constant(vecs), fix_first)), labels)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(signs.label_signs_ops(tf.constant(labels), dim, fix_first)),
        vecs)
    # signs of arbitrary vectors: label -> sign vector reproduces sign(y) (canonical if fixed)
    y = _unit(np.random.default_rng(dim), 50, dim)
    if fix_first:
        y = signs.canonicalize(y)
    np.testing.assert_array_equal(signs.label_signs(signs.sign_labels(y, fix_first), dim,
                                                    fix_first), np.sign(y))


def test_sign_labels_reject_bad_input():
    with pytest.raises(ValueError, match="labels must lie"):
        signs.label_signs([8], 4, fix_first=True)
    with pytest.raises(ValueError, match="sign logits do not fit"):
        signs.fix_first_from_num_classes(4, 5)


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_sexp_output_unit_norm_and_decode_of_encode(dim):
    rng = np.random.default_rng(10 + dim)
    fix_first = dim == 4
    head = heads.SExpHead(dim, fix_first_sign=fix_first)
    out = head(tf.constant(rng.standard_normal((16, 7)) * 5, tf.float32))
    abs_y = out.numpy()[:, :dim]
    np.testing.assert_allclose(np.linalg.norm(abs_y, axis=1), 1.0, atol=1e-5)
    assert (abs_y >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(head.decode(out).numpy(), axis=1), 1.0, atol=1e-5)
    # encode a unit target into (O, sign logits), activate, decode: the target comes back
    y = _unit(rng, 32, dim)
    if fix_first:
        y = signs.canonicalize(y)
    o, sign_logits = heads.sexp_encode(y, fix_first)
    packed = head.activate([tf.constant(o, tf.float32), tf.constant(sign_logits, tf.float32)])
    np.testing.assert_allclose(head.decode(packed).numpy(), y, atol=1e-5)
    # the activation agrees with exp(o)/sqrt(sum exp(2o)) in float64
    ref = np.exp(o) / np.sqrt(np.sum(np.exp(2 * o), axis=1, keepdims=True))
    np.testing.assert_allclose(heads.sexp_abs(tf.constant(o)).numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_sflat_and_direct_outputs(dim):
    x = tf.constant(np.random.default_rng(dim).standard_normal((8, 5)), tf.float32)
    sflat, direct = heads.SFlatHead(dim), heads.DirectHead(dim)
    out = sflat(x).numpy()
    o = sflat.out_dense(x).numpy()
    np.testing.assert_allclose(out, (o / np.linalg.norm(o, axis=1, keepdims=True)),
                               rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(sflat(x).numpy(), axis=1), 1.0, atol=1e-5)
    out = direct(x).numpy()
    np.testing.assert_allclose(out, direct.out_dense(x).numpy())
    np.testing.assert_allclose(np.linalg.norm(direct.decode(direct(x)).numpy(), axis=1), 1.0,
                               atol=1e-5)


def _grad_norm_wrt_logits(activation, loss_fn, o, y):
    o = tf.constant(o, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(o)
        loss = tf.reduce_mean(loss_fn(tf.constant(y, tf.float32), activation(o)))
    g = tape.gradient(loss, o).numpy()
    return np.linalg.norm(g, axis=1).max() * len(o)  # per-sample gradient norm


def test_sexp_gradient_bounded_where_direct_is_not():
    from spherical_regression import losses
    rng = np.random.default_rng(0)
    y = np.abs(_unit(rng, 8, 4))
    sexp_norms, direct_norms = [], []
    for scale in (1.0, 1e2, 1e4, 1e6):
        o = rng.standard_normal((8, 4)) * scale
        # S_exp: cosine proximity on |y| through the spherical exponential
        sexp_norms.append(_grad_norm_wrt_logits(
            heads.sexp_abs, lambda t, p: losses.cosine_proximity(t, p), o, y))
        # Direct trained with L2 (the unbounded case the paper analyses): grows with |o|
        direct_norms.append(_grad_norm_wrt_logits(
            lambda z: z, lambda t, p: tf.reduce_sum(tf.square(p - t), axis=-1), o, y))
    # |dL/dO| <= ||dL/dy|| * ||dy/dO||: for unit y, ||dL/dy|| <= 1 (cosine proximity) and
    # dy_i/do_j = y_i (delta_ij - y_j^2) has norm <= ||diag(y)|| + ||y|| ||y^2|| <= 2
    assert np.all(np.isfinite(sexp_norms)) and max(sexp_norms) <= 2.0
    assert direct_norms[-1] > 1e5 and direct_norms[-1] > 1e4 * direct_norms[0]


def test_make_head_rejects_unknown():
    with pytest.raises(ValueError, match="unknown head"):
        heads.make_head("sphere", 4)
    with pytest.raises(ValueError, match="dim must be"):
        heads.SExpHead(1)
    with pytest.raises(ValueError, match="cannot hold"):
        heads.sexp_decode(tf.zeros((2, 4)), 4)
