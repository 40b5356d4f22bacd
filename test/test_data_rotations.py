"""Rotation sampling and quaternion helpers (checked against SciPy and invariants)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spherical_cnn.data import rotations as rot


def test_quaternion_matrix_agree_with_scipy_and_round_trip():
    q = rot.sample_quaternions('so3', 200, 1)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-12)
    m = rot.quaternion_to_matrix(q)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # scipy is scalar-last
    np.testing.assert_allclose(m, ref, atol=1e-12)
    np.testing.assert_allclose(rot.matrix_to_quaternion(m), q, atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(m), 1, atol=1e-12)


def test_sampling_reproducible_with_seed():
    a = rot.sample_quaternions('so3', 10, np.random.default_rng(5))
    b = rot.sample_quaternions('so3', 10, np.random.default_rng(5))
    c = rot.sample_quaternions('so3', 10, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_so3_is_uniform_ish():
    m = rot.sample_rotations('so3', 20000, 0)
    # Haar measure: E[R] = 0 (every entry), and the image of a fixed vector is uniform on S^2
    assert np.abs(m.mean(0)).max() < 0.02
    v = m @ np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    hist = np.histogram(v[:, 2], bins=10, range=(-1, 1))[0] / len(v)  # uniform on sphere => z uniform
    np.testing.assert_allclose(hist, 0.1, atol=0.015)


def test_z_rotations_fix_z_and_none_is_identity():
    m = rot.sample_rotations('z', 100, 3)
    np.testing.assert_allclose(m @ [0, 0, 1], np.tile([0, 0, 1], (100, 1)), atol=1e-12)
    angles = np.arctan2(m[:, 1, 0], m[:, 0, 0])
    assert angles.std() > 1.0  # spread over the circle, not all the same
    np.testing.assert_array_equal(rot.sample_rotations('none', 3, 0), np.tile(np.eye(3), (3, 1, 1)))


def test_unknown_mode():
    with pytest.raises(ValueError, match='so3'):
        rot.sample_quaternions('xyz', 2, 0)
