"""rotate(maps, R): Wigner-D rotation in keras.ops (issue 20, finding 9).

References, independent of the implementation:
  * direct evaluation: the band-limited map's harmonic series (SciPy's sph_harm_y)
    evaluated at R^T x for every grid point x;
  * pyshtools: SHCoeffs.rotate(alpha, beta, gamma, convention='y', body=True) with
    the ZYZ Euler angles of R;
  * rendering: raycast.mesh_to_sphere of the rotated mesh (R @ mesh);
  * NumPy: rotation matrices from spherical_cnn.data.rotations.
"""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from scipy.special import sph_harm_y

from spherical_cnn import layouts, sht
from spherical_cnn import rotation as rot
from spherical_cnn.data import rotations as drot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_coeffs(n, rng):
    """Complex c[l, m + L - 1] of a real band-limited map (c_{-m} = (-1)^m conj c_m)."""
    L = n // 2
    c = np.zeros((L, 2 * L - 1), complex)
    for l in range(L):
        for m in range(l + 1):
            v = rng.standard_normal() + (1j * rng.standard_normal() if m else 0)
            c[l, L - 1 + m] = v
            c[l, L - 1 - m] = (-1) ** m * np.conj(v)
    return c


def _evaluate(c, polar, azimuth):
    L = c.shape[0]
    return sum(c[l, L - 1 + m] * sph_harm_y(l, m, polar, azimuth)
               for l in range(L) for m in range(-l, l + 1)).real


def _grid_vectors(n):
    pol = np.pi * np.arange(n) / n
    az = 2 * np.pi * np.arange(n) / n
    A, P = np.meshgrid(az, pol, indexing="ij")  # (azimuth, polar)
    return P, A, np.stack([np.sin(P) * np.cos(A), np.sin(P) * np.sin(A), np.cos(P)], -1)


def _rotated_reference(c, R, n):
    """f(R^T x) on the grid, (n, n) (azimuth, polar)."""
    _, _, x = _grid_vectors(n)
    y = x @ R  # rows: (R^T x)^T
    return _evaluate(c, np.arccos(np.clip(y[..., 2], -1, 1)), np.arctan2(y[..., 1], y[..., 0]))


@pytest.mark.parametrize("n", [8, 16])
def test_rotate_matches_direct_evaluation(n):
    rng = np.random.default_rng(n)
    c = _random_coeffs(n, rng)
    P, A, _ = _grid_vectors(n)
    f = _evaluate(c, P, A)[None, :, :, None]
    q = drot.sample_quaternions("so3", 3, rng)
    R = drot.quaternion_to_matrix(q)
    ref = np.stack([_rotated_reference(c, r, n) for r in R])[..., None]
    scale = np.abs(ref).max()
    # a batch of matrices, a batch of quaternions (also -q), one matrix per call
    for rots in (R, q, -q):
        out = np.asarray(rot.rotate(np.repeat(f, 3, 0), rots, scalar_first=True))
        assert np.abs(out - ref).max() < 1e-11 * scale
    one = np.asarray(rot.rotate(f, R[1]))
    assert one.shape == (1, n, n, 1) and np.abs(one - ref[1:2]).max() < 1e-11 * scale
    # float32 in, float32 out
    out32 = rot.rotate(np.repeat(f, 3, 0).astype("float32"), R.astype("float32"))
    assert keras.backend.standardize_dtype(out32.dtype) == "float32"
    assert np.abs(np.asarray(out32) - ref).max() < 2e-5 * scale


def test_rotate_one_rotation_many_maps_and_channels():
    rng = np.random.default_rng(1)
    n = 8
    maps = np.stack([_evaluate(_random_coeffs(n, rng), *_grid_vectors(n)[:2]) for _ in range(6)])
    maps = maps.reshape(2, 3, n, n).transpose(0, 2, 3, 1)  # (batch 2, n, n, channels 3)
    R = drot.quaternion_to_matrix(drot.sample_quaternions("so3", 1, rng))[0]
    out = np.asarray(rot.rotate(maps, R))
    for b in range(2):
        for ch in range(3):
            alone = np.asarray(rot.rotate(maps[b:b + 1, :, :, ch:ch + 1], R))[0, :, :, 0]
            np.testing.assert_allclose(out[b, :, :, ch], alone, atol=1e-12)


def test_rotate_gimbal_lock_and_identity():
    rng = np.random.default_rng(2)
    n = 12
    c = _random_coeffs(n, rng)
    f = _evaluate(c, *_grid_vectors(n)[:2])[None, :, :, None]
    for R in (np.eye(3), rot.euler_zyz_to_matrix(0.7, 0.0, 0.4), rot.euler_zyz_to_matrix(0.7, np.pi, 0.4),
              rot.euler_zyz_to_matrix(0.3, 1e-7, -0.2), rot.euler_zyz_to_matrix(2.0, np.pi - 1e-7, 1.0)):
        out = np.asarray(rot.rotate(f, R))[0, :, :, 0]
        np.testing.assert_allclose(out, _rotated_reference(c, R, n), atol=1e-9 * np.abs(f).max())


def test_euler_angles_round_trip():
    R = drot.quaternion_to_matrix(drot.sample_quaternions("so3", 50, 3))
    a, b, g = rot.rotation_to_euler_zyz_numpy(R)
    assert np.all((b >= 0) & (b <= np.pi))
    np.testing.assert_allclose(rot.euler_zyz_to_matrix(a, b, g), R, atol=1e-12)
    np.testing.assert_allclose(np.asarray(rot.quaternion_to_matrix(drot.sample_quaternions("so3", 5, 4))),
                               drot.quaternion_to_matrix(drot.sample_quaternions("so3", 5, 4)), atol=1e-12)


def test_wigner_table_is_orthogonal_and_matches_numpy_D():
    d = rot.wigner_d_half_pi(9)
    for l in range(9):
        s = slice(8 - l, 9 + l)
        np.testing.assert_allclose(d[l, s, s] @ d[l, s, s].T, np.eye(2 * l + 1), atol=1e-12)
    # D(Ry(pi/2)) = d(pi/2)
    R = rot.euler_zyz_to_matrix(0.0, np.pi / 2, 0.0)
    np.testing.assert_allclose(rot.wigner_D_numpy(4, R), d[4, 4:13, 4:13], atol=1e-12)


@pytest.mark.parametrize("n", [16, 32])
def test_rotate_matches_pyshtools(n):
    pysh = pytest.importorskip("pyshtools")
    from spherical_cnn.studies import equivariance as eq
    f = eq.random_bandlimited(1, n, 1, n)
    R = drot.quaternion_to_matrix(drot.sample_quaternions("so3", 2, n))
    out = np.asarray(rot.rotate(np.repeat(f, 2, 0), R))
    coeffs = pysh.SHGrid.from_array(layouts.to_pyshtools(f[0, :, :, 0])).expand(
        normalization="ortho", csphase=-1)
    for i, r in enumerate(R):
        a, b, g = np.degrees(rot.rotation_to_euler_zyz_numpy(r))
        ref = coeffs.rotate(a, b, g, degrees=True, convention="y", body=True).expand(
            grid="DH", extend=False)
        np.testing.assert_allclose(out[i, :, :, 0], layouts.from_pyshtools(ref.data),
                                   atol=1e-11 * np.abs(f).max())


@pytest.mark.parametrize("n,tol", [(16, 0.01), (32, 0.0015)])
def test_rotate_matches_rendering_the_rotated_mesh(n, tol):
    """rotate(map of mesh, R) == map of (R @ mesh), up to the render's sampling (band-limited)."""
    trimesh = pytest.importorskip("trimesh")
    from spherical_cnn.data import raycast
    mesh = trimesh.creation.icosphere(subdivisions=4)
    mesh.apply_scale((0.9, 0.6, 0.4))
    mesh.apply_translation((0.05, -0.03, 0.02))
    R = drot.quaternion_to_matrix(drot.sample_quaternions("so3", 3, 5))
    f = np.abs(raycast.mesh_to_sphere(mesh, n, channels=True)).astype("float64")[None]
    rendered = []
    for r in R:
        m = mesh.copy()
        T = np.eye(4)
        T[:3, :3] = r
        m.apply_transform(T)
        rendered.append(np.abs(raycast.mesh_to_sphere(m, n, channels=True)))
    rendered = np.stack(rendered).astype("float64")
    t = sht.get_transform(n, "sep", True, "float64")
    bandlimited = np.asarray(t.inverse_packed(t.forward_packed(rendered)))
    out = np.asarray(rot.rotate(np.repeat(f, 3, 0), R))
    err = np.abs(out - bandlimited).max()
    unrotated = np.abs(np.asarray(t.inverse_packed(t.forward_packed(np.repeat(f, 3, 0)))) - bandlimited).max()
    assert err < tol, err
    assert unrotated > 0.3  # the rotations are not trivial


def test_rotate_is_differentiable_tensorflow():
    """Gradients to the maps and to the quaternions, checked by central differences (float64),
    also at the identity (where ZYZ Euler angles are not unique: the gradient was NaN)."""
    import tensorflow as tf
    rng = np.random.default_rng(6)
    n = 8
    f = tf.constant(rng.standard_normal((2, n, n, 1)))
    w = tf.constant(rng.standard_normal((2, n, n, 1)))
    q0 = rng.standard_normal((2, 4))
    q0[1] = [1.0, 0.0, 0.0, 0.0]  # the identity (a gimbal lock of the Euler angles)
    q = tf.Variable(q0)
    loss = lambda x, r: tf.reduce_sum(w * rot.rotate(x, r, scalar_first=True))  # noqa: E731
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(f)
        y = loss(f, q)
    gf, gq = tape.gradient(y, f).numpy(), tape.gradient(y, q).numpy()
    assert np.all(np.isfinite(gf)) and np.abs(gf).max() > 0 and np.all(np.isfinite(gq))
    h = 1e-6
    for _ in range(4):
        dq = rng.standard_normal(q0.shape)
        fd = (loss(f, q0 + h * dq) - loss(f, q0 - h * dq)).numpy() / (2 * h)
        np.testing.assert_allclose(np.sum(gq * dq), fd, rtol=1e-6, atol=1e-8)
        df = rng.standard_normal(f.shape)
        fd = (loss(f + h * df, q0) - loss(f - h * df, q0)).numpy() / (2 * h)
        np.testing.assert_allclose(np.sum(gf * df), fd, rtol=1e-6, atol=1e-8)


def test_rotate_inside_tf_function():
    import tensorflow as tf
    n = 8
    f = np.random.default_rng(7).standard_normal((3, n, n, 2)).astype("float32")
    R = drot.quaternion_to_matrix(drot.sample_quaternions("so3", 3, 7)).astype("float32")
    fn = tf.function(lambda x, r: rot.rotate(x, r),
                     input_signature=[tf.TensorSpec((None, n, n, 2)), tf.TensorSpec((None, 3, 3))])
    np.testing.assert_allclose(fn(f, R).numpy(), np.asarray(rot.rotate(f, R)), atol=1e-5)


def test_rotate_refuses_complex_and_bad_shapes():
    f = np.zeros((1, 8, 8, 1), np.complex64)
    with pytest.raises(TypeError, match="complex_to_channels"):
        rot.rotate(f, np.eye(3))
    with pytest.raises(ValueError, match="azimuth, polar"):
        rot.rotate(np.zeros((1, 8, 6, 1), "float32"), np.eye(3))
    with pytest.raises(ValueError, match="quaternion"):
        rot.rotate(np.zeros((1, 8, 8, 1), "float32"), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="3 rotations for a batch of 2"):
        rot.rotate(np.zeros((2, 8, 8, 1), "float32"), np.tile(np.eye(3), (3, 1, 1)))
    # one map, many rotations: a batch of rotated copies
    f = np.random.default_rng(0).standard_normal((1, 8, 8, 1))
    R = drot.quaternion_to_matrix(drot.sample_quaternions("so3", 3, 0))
    np.testing.assert_allclose(np.asarray(rot.rotate(f, R)), np.asarray(rot.rotate(np.repeat(f, 3, 0), R)),
                               atol=1e-12)


JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    from spherical_cnn import rotation as rot
    from spherical_cnn.data import rotations as drot
    rng = np.random.default_rng(0)
    f = rng.standard_normal((2, 8, 8, 1)).astype("float32")
    q = drot.sample_quaternions("so3", 2, 1).astype("float32")
    rotate = lambda x, r: rot.rotate(x, r, scalar_first=True)  # noqa: E731
    out = np.asarray(jax.jit(rotate)(f, q))
    g = np.asarray(jax.grad(lambda x: (rotate(x, q) ** 2).sum())(f))
    np.savez(sys.argv[1], out=out, grad=g, f=f, q=q)
""")


def test_rotate_on_jax(tmp_path):
    pytest.importorskip("jax")
    path = str(tmp_path / "jax.npz")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", JAX_SCRIPT, path], check=True, env=env, cwd=ROOT)
    res = np.load(path)
    np.testing.assert_allclose(res["out"], np.asarray(rot.rotate(res["f"], res["q"], scalar_first=True)),
                               atol=1e-5)
    assert np.all(np.isfinite(res["grad"])) and np.abs(res["grad"]).max() > 0


def test_old_euler_helper_is_the_inverse_rotation():
    """studies.equivariance.rotate_maps(maps, (a, b, g)) (pyshtools' SHRotateRealCoef) rotates by
    R(a, b, g)^T = Rz(-g) Ry(-b) Rz(-a): stated in docs/layouts.md, checked here."""
    pytest.importorskip("pyshtools")
    from spherical_cnn.studies import equivariance as eq
    f = eq.random_bandlimited(2, 16, 1, 0)
    angles = np.array([0.3, 1.1, -0.7])
    R = rot.euler_zyz_to_matrix(*angles)
    np.testing.assert_allclose(np.asarray(rot.rotate(f, R.T)), eq.rotate_maps(f, angles),
                               atol=1e-11 * np.abs(f).max())
