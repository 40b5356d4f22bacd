"""Meshes to spherical maps: closed forms, rotation consistency, mesh loading, rotations, synthetic shapes."""
import numpy as np
import pytest
import trimesh

from spherical_cnn.data import meshes, raycast, rotations, synthetic

R0 = raycast.DEFAULT_R0


def test_sphere_map_is_constant_with_closed_form_distance_and_zero_angle():
    r = 0.7
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=r)
    x = raycast.mesh_to_sphere(mesh, 16)
    assert x.shape == (16, 16) and x.dtype == np.complex64
    # Facets lie inside the true sphere by at most r (1 - cos(half the edge angle)) ~ 1e-4 here,
    # and a facet normal deviates from the radial direction by at most ~half an edge angle.
    np.testing.assert_allclose(np.abs(x), R0 - r, atol=5e-4)
    assert np.max(np.angle(x)) < 0.03


def test_cube_gives_closed_form_distance_and_angle():
    h, n = 0.5, 16
    mesh = trimesh.creation.box(extents=[2 * h] * 3)
    x = raycast.mesh_to_sphere(mesh, n)
    # polar index j = pi*j/n, azimuth index k = 2*pi*k/n; layout (azimuth, polar)
    top, side = x[0, 0], x[0, n // 2]          # +z (north pole) and +x (equator, azimuth 0)
    assert abs(top) == pytest.approx(R0 - h, abs=1e-5) and np.angle(top) == pytest.approx(0, abs=1e-5)
    assert abs(side) == pytest.approx(R0 - h, abs=1e-5) and np.angle(side) == pytest.approx(0, abs=1e-5)
    # oblique: polar pi/8, azimuth 0 hits the top face z = h at an angle pi/8 to its normal
    obl = x[0, n // 8]
    theta = np.pi / 8
    assert abs(obl) == pytest.approx(R0 - h / np.cos(theta), abs=1e-5)
    assert np.angle(obl) == pytest.approx(theta, abs=1e-5)
    # azimuth pi/4 on the equator: hits the side x = h at an angle pi/4
    diag = x[n // 8, n // 2]
    assert abs(diag) == pytest.approx(R0 - h / np.cos(np.pi / 4), abs=1e-5)
    assert np.angle(diag) == pytest.approx(np.pi / 4, abs=1e-5)


def test_misses_get_the_documented_empty_value():
    # every ray passes through the centre, so only an off-centre shape can be missed
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.15)
    mesh.apply_translation([0, 0, 0.8])
    x = raycast.mesh_to_sphere(mesh, 16)
    assert np.all(x[:, 8] == raycast.MISS_VALUE)                  # the equator misses it
    assert abs(x[0, 0]) == pytest.approx(R0 - 0.95, abs=1e-3)     # the north pole hits its top


def test_map_of_rotated_mesh_equals_rotated_map():
    """Nearest-grid comparison on a smooth ellipsoid at n = 64.

    The map of R(mesh) at direction d must equal the map of the mesh at R^T d; we look
    R^T d up at the nearest grid point, so differences are bounded by the map's variation
    over half a grid cell: we require a median |difference| of the distance below 0.01
    and a 95th percentile below 0.03 (distances are ~0.3 to 0.8).
    """
    n = 64
    mesh = trimesh.creation.icosphere(subdivisions=4)
    mesh.vertices *= [0.9, 0.6, 0.4]
    R = rotations.sample_rotations("so3", 1, 3)[0]
    rotated = trimesh.Trimesh(vertices=mesh.vertices @ R.T, faces=mesh.faces, process=False)
    got = np.abs(raycast.mesh_to_sphere(rotated, n))
    base = np.abs(raycast.mesh_to_sphere(mesh, n))

    d = raycast.grid_directions(n) @ R          # rows: R^T d
    polar = np.arccos(np.clip(d[..., 2], -1, 1))
    azimuth = np.mod(np.arctan2(d[..., 1], d[..., 0]), 2 * np.pi)
    j = np.clip(np.rint(polar / (np.pi / n)).astype(int), 0, n - 1)
    k = np.rint(azimuth / (2 * np.pi / n)).astype(int) % n
    diff = np.abs(got - base[k, j])
    assert np.median(diff) < 0.01 and np.percentile(diff, 95) < 0.03, (np.median(diff), np.percentile(diff, 95))
    # casting the rotated rays against the unrotated mesh is the same map
    np.testing.assert_allclose(np.abs(raycast.cast_rotated(mesh, n, R[None])[0]), got, atol=1e-4)


def test_malformed_off_header_is_accepted_and_mesh_is_normalised(tmp_path):
    path = tmp_path / "bad.off"
    v = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]], float) + 5
    faces = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
    text = "OFF4 4 0\n" + "".join("{} {} {}\n".format(*p) for p in v) + "".join(
        "3 {} {} {}\n".format(*f) for f in faces)
    path.write_text(text)
    mesh = meshes.load_mesh(str(path))
    assert len(mesh.faces) == 4
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert radius.max() == pytest.approx(1.0)
    np.testing.assert_allclose((mesh.bounds[0] + mesh.bounds[1]) / 2, 0, atol=1e-12)


def test_broken_and_empty_meshes_raise_errors_naming_the_file(tmp_path):
    junk = tmp_path / "junk.off"
    junk.write_text("this is not a mesh\n")
    with pytest.raises(meshes.MeshError, match="junk.off"):
        meshes.load_mesh(str(junk))
    empty = tmp_path / "empty.off"
    empty.write_text("OFF\n0 0 0\n")
    with pytest.raises(meshes.MeshError, match="empty.off"):
        meshes.load_mesh(str(empty))
    with pytest.raises(meshes.MeshError, match="unsupported mesh extension"):
        meshes.load_mesh(str(tmp_path / "x.xyz"))


def test_rotation_sampling_is_reproducible_and_uniform():
    a = rotations.sample_quaternions("so3", 2000, 7)
    b = rotations.sample_quaternions("so3", 2000, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[:, 0] >= 0)
    m = rotations.quaternion_to_matrix(a)
    np.testing.assert_allclose(m @ np.swapaxes(m, 1, 2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1, atol=1e-12)
    # Haar measure: E[R] = 0 (each entry ~ N(0, 1/3)/sqrt(2000) -> |mean| < 0.05)
    assert np.abs(m.mean(axis=0)).max() < 0.05
    np.testing.assert_allclose(rotations.matrix_to_quaternion(m), a, atol=1e-9)


def test_z_rotations_fix_the_vertical_axis_and_none_is_identity():
    m = rotations.sample_rotations("z", 50, 1)
    np.testing.assert_allclose(m @ np.array([0, 0, 1.0]), np.tile([0, 0, 1.0], (50, 1)), atol=1e-12)
    assert np.std(np.arctan2(m[:, 1, 0], m[:, 0, 0])) > 1.0   # angles spread over the circle
    np.testing.assert_allclose(rotations.sample_rotations("none", 3, 0), np.tile(np.eye(3), (3, 1, 1)))
    with pytest.raises(ValueError, match="unknown rotation mode"):
        rotations.sample_quaternions("xyz", 1, 0)


@pytest.mark.parametrize("name", synthetic.CLASS_NAMES)
def test_synthetic_classes_vary_and_fit_the_unit_ball(name):
    a = synthetic.make_mesh(name, np.random.default_rng(1))
    b = synthetic.make_mesh(name, np.random.default_rng(2))
    for mesh in (a, b):
        assert len(mesh.faces) > 0
        assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    # intra-class variation: the two instances' spherical maps differ noticeably
    xa, xb = (np.abs(raycast.mesh_to_sphere(m, 16)) for m in (a, b))
    assert np.mean(np.abs(xa - xb)) > 0.01
    assert len(synthetic.CLASS_NAMES) >= 10
