"""Ray casting against closed forms (sphere, cube) and rotation equivariance."""
import numpy as np
import pytest
import trimesh

from spherical_cnn.data import raycast, rotations

R0 = raycast.DEFAULT_R0


def test_grid_layout():
    d = raycast.grid_directions(8)
    assert d.shape == (8, 8, 3)
    np.testing.assert_allclose(d[:, 0], np.tile([0, 0, 1], (8, 1)), atol=1e-12)  # polar 0 = north pole
    np.testing.assert_allclose(d[0, 4], [1, 0, 0], atol=1e-12)  # azimuth 0, polar pi/2
    np.testing.assert_allclose(d[2, 4], [0, 1, 0], atol=1e-12)  # azimuth pi/2


def test_sphere_gives_constant_map():
    r = 0.6
    m = trimesh.creation.icosphere(subdivisions=5, radius=r)
    x = raycast.mesh_to_sphere(m, 16)
    assert x.shape == (16, 16) and x.dtype == np.complex64
    # faceted sphere: the surface lies between r*cos(edge angle) and r
    np.testing.assert_allclose(np.abs(x), R0 - r, atol=2e-3 * r)
    assert np.angle(x).max() < 0.03  # near head-on everywhere
    assert raycast.mesh_to_sphere(m, 16, channels=True).shape == (16, 16, 1)


def test_cube_closed_form_everywhere():
    h = 0.5
    m = trimesh.creation.box(extents=[2 * h] * 3)
    n = 32
    x = raycast.mesh_to_sphere(m, n)
    d = raycast.grid_directions(n)
    c = np.abs(d).max(-1)  # cosine between the ray and the normal of the face it hits
    np.testing.assert_allclose(np.abs(x), R0 - h / c, atol=1e-5)
    np.testing.assert_allclose(np.angle(x), np.arccos(c), atol=1e-3)
    # face centres: distance R0 - h, head-on
    np.testing.assert_allclose(x[0, n // 2], R0 - h, atol=1e-6)
    np.testing.assert_allclose(x[n // 4, n // 2], R0 - h, atol=1e-6)
    # an oblique ray hitting the +x face
    v = np.array([1.0, 0.4, -0.3])
    v /= np.linalg.norm(v)
    y = raycast.cast_directions(m, v[None])[0]
    np.testing.assert_allclose(abs(y), R0 - h / v[0], atol=1e-6)
    np.testing.assert_allclose(np.angle(y), np.arccos(v[0]), atol=1e-6)


def test_misses_are_zero():
    m = trimesh.creation.box(extents=[0.2, 0.2, 0.2]).apply_translation([0.7, 0, 0])
    x = raycast.mesh_to_sphere(m, 16)
    d = raycast.grid_directions(16)
    # lines through the centre far from the +x axis never meet the small box
    assert np.all(x[np.abs(d[..., 0]) < 0.9] == 0)
    # along +x it is hit head-on at x = 0.8; from -x the ray crosses the centre
    # and hits the box's near face (x = 0.6) on the far side
    np.testing.assert_allclose(x[0, 8], R0 - 0.8, atol=1e-6)
    np.testing.assert_allclose(x[8, 8], R0 + 0.6, atol=1e-6)


def _ellipsoid():
    m = trimesh.creation.icosphere(subdivisions=4)
    return m.apply_scale([0.9, 0.6, 0.4])


def test_rotated_mesh_equals_rotated_rays():
    """cast_rotated (rotating the rays) == literally rotating the vertices."""
    m = _ellipsoid()
    q = rotations.sample_quaternions('so3', 3, 0)
    fast = raycast.cast_rotated(m, 16, q)
    for k, r in enumerate(rotations.quaternion_to_matrix(q)):
        slow = raycast.mesh_to_sphere(trimesh.Trimesh(m.vertices @ r.T, m.faces), 16)
        np.testing.assert_allclose(fast[k], slow, atol=1e-5)


def test_map_of_rotated_mesh_is_rotated_map():
    """f_{Rm}(d) = f_m(R^T d), checked by nearest-grid lookup on a smooth ellipsoid.

    Tolerance: the lookup moves the direction by up to half a grid step
    (pi/32 at n=32), and the ellipsoid's distance changes by < 0.4 per radian,
    so we allow 0.06 per point and a mean error below 0.015.
    """
    n = 32
    m = _ellipsoid()
    base = raycast.mesh_to_sphere(m, n)
    r = rotations.sample_rotations('so3', 1, 4)[0]
    rotated = raycast.mesh_to_sphere(trimesh.Trimesh(m.vertices @ r.T, m.faces), n)
    d = raycast.grid_directions(n) @ r  # R^T d for every grid direction
    polar = np.arccos(np.clip(d[..., 2], -1, 1))
    az = np.mod(np.arctan2(d[..., 1], d[..., 0]), 2 * np.pi)
    j = np.clip(np.rint(polar / (np.pi / n)).astype(int), 0, n - 1)
    k = np.rint(az / (2 * np.pi / n)).astype(int) % n
    lookup = base[k, j]
    err = np.abs(np.abs(rotated) - np.abs(lookup))
    assert err.max() < 0.06 and err.mean() < 0.015, (err.max(), err.mean())
    assert np.abs(np.angle(rotated) - np.angle(lookup)).mean() < 0.05
    # and the map really changed (the test would be empty for a rotation-invariant shape)
    assert np.abs(np.abs(rotated) - np.abs(base)).mean() > 0.05


def test_bad_input():
    with pytest.raises(ValueError, match='even'):
        raycast.grid_directions(7)
    with pytest.raises(ValueError, match='rotations'):
        raycast.cast_rotated(_ellipsoid(), 8, np.zeros((2, 3)))
