"""Supersampled (anti-aliased) ray casting: ``supersample=s`` in raycast and make_dataset.

Scheme under test (``raycast`` module docstring), written out again here in
NumPy: cell (k, j) gets s x s sub-rays at polar ``pi * (j + o_u) / n`` and
azimuth ``2 * pi * (k + o_v) / n``, ``o_u = (u + 0.5) / s - 0.5``, weight
``|sin(polar)|``; the cell's distance is the weighted mean over all sub-rays
(a miss counts 0), its angle the weighted mean over the sub-rays that hit.
"""
import json

import numpy as np
import pytest
import trimesh

from spherical_cnn.cli import make_dataset
from spherical_cnn.data import builder, meshes, raycast, records, rotations
from spherical_cnn.errors import run_cli
from test_augmentation import _tree

R0 = raycast.DEFAULT_R0


def _subrays(n, s):
    """Independent sub-ray directions ``(n, n, s, s, 3)`` (azimuth, polar, u, v) and weights ``(n, n, s, s)``."""
    o = (np.arange(s) + 0.5) / s - 0.5
    k, j = np.arange(n), np.arange(n)
    polar = np.pi * (j[None, :, None, None] + o[None, None, :, None]) / n
    azimuth = 2 * np.pi * (k[:, None, None, None] + o[None, None, None, :]) / n
    polar, azimuth = np.broadcast_arrays(polar, azimuth)
    d = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], -1)
    return d, np.abs(np.sin(polar))


def _cell_average(t, angle, hit, w):
    """(distance, angle) per cell from per-sub-ray closed forms ``(n, n, s, s)``; cells with no hit: (0, 0)."""
    wh = w * hit
    dist = (wh * np.where(hit, t, 0)).sum((-1, -2)) / w.sum((-1, -2))
    with np.errstate(invalid='ignore'):
        ang = np.where(wh.sum((-1, -2)) > 0, (wh * np.where(hit, angle, 0)).sum((-1, -2)) / wh.sum((-1, -2)), 0)
    return dist, ang


def _cube(d, a):
    """First hit on the cube [-a, a]^3 of the ray from R0 d towards the centre: (t, angle)."""
    c = np.abs(d).max(-1)  # cosine between the ray and the normal of the face it hits
    return R0 - a / c, np.arccos(np.clip(c, 0, 1))


def _ellipsoid():
    return trimesh.creation.icosphere(subdivisions=3).apply_scale([0.9, 0.6, 0.4])


@pytest.mark.parametrize('s', [1, 4])
def test_unit_sphere(s):
    m = trimesh.creation.icosphere(subdivisions=5)  # vertices on the unit sphere
    x = raycast.mesh_to_sphere(m, 16, supersample=s)
    assert x.shape == (16, 16) and x.dtype == np.complex64
    # faceted sphere: the surface lies within 2e-3 inside the unit sphere, facet normals
    # deviate from the radius by less than an edge angle (~0.03 rad at subdivision 5)
    np.testing.assert_allclose(np.abs(x), R0 - 1, atol=2e-3)
    assert np.abs(x).min() >= R0 - 1 - 1e-6
    assert np.angle(x).max() < 0.03


def test_cube_equals_the_cell_average_of_the_closed_form():
    n, s, a = 16, 4, 0.5
    m = trimesh.creation.box(extents=[2 * a] * 3)
    x = raycast.mesh_to_sphere(m, n, supersample=s)
    d, w = _subrays(n, s)
    t, angle = _cube(d, a)
    dist, ang = _cell_average(t, angle, np.ones(t.shape, bool), w)
    # the same scheme: equal up to complex64 rounding
    np.testing.assert_allclose(np.abs(x), dist, atol=1e-6)
    np.testing.assert_allclose(np.angle(x), ang, atol=1e-6)
    assert np.ptp(dist) > 0.2 and np.ptp(ang) > 0.5  # the map is far from constant

    # Independent check of the scheme: the cell's solid-angle mean of the closed form, by a dense
    # 64 x 64 midpoint rule. The s x s midpoint rule misses it by O(1/s^2) of the one-ray error
    # (one ray = the 1 x 1 rule); at s = 4 we ask >= 10x better than one ray (1/16 in theory,
    # less where the angle has a ridge at the cube's edges) and, absolutely, 2e-3 in distance and
    # 1e-2 rad in angle (measured: 8.5e-4 and 4.1e-3; one ray: 7.4e-2 and 0.12).
    dd, dw = _subrays(n, 64)
    dt, dangle = _cube(dd, a)
    dense_dist, dense_ang = _cell_average(dt, dangle, np.ones(dt.shape, bool), dw)
    one = raycast.mesh_to_sphere(m, n)
    err_dist, err_ang = np.abs(np.abs(x) - dense_dist).max(), np.abs(np.angle(x) - dense_ang).max()
    one_dist, one_ang = np.abs(np.abs(one) - dense_dist).max(), np.abs(np.angle(one) - dense_ang).max()
    assert err_dist < 2e-3 and err_ang < 1e-2, (err_dist, err_ang)
    assert err_dist < one_dist / 10 and err_ang < one_ang / 10, (err_dist, one_dist, err_ang, one_ang)


def _plate(b=0.5, y=(0.0, 0.27), z=(-0.27, 0.27)):
    """Square plate in the plane x = b (two triangles), y in ``y``, z in ``z``."""
    v = np.array([[b, y[0], z[0]], [b, y[1], z[0]], [b, y[1], z[1]], [b, y[0], z[1]]])
    return trimesh.Trimesh(v, [[0, 1, 2], [0, 2, 3]], process=False)


def _plate_closed_form(d, b=0.5, y=(0.0, 0.27), z=(-0.27, 0.27)):
    """Ray from R0 d along -d (the line lambda d, lambda <= R0) against the plate: (t, angle, hit, margin).

    The line meets x = b at lambda = b / d_x (behind the centre when d_x < 0), at the
    point b d / d_x; margin = distance of that point from the plate's border (< 0 outside).
    """
    with np.errstate(divide='ignore', invalid='ignore'):
        lam = b / d[..., 0]
        py, pz = lam * d[..., 1], lam * d[..., 2]
        margin = np.minimum.reduce([py - y[0], y[1] - py, pz - z[0], z[1] - pz])
    hit = np.isfinite(lam) & (lam <= R0) & (margin > 0)
    return R0 - lam, np.arccos(np.abs(d[..., 0])), hit, margin


def test_partly_covered_cells_fade_with_the_covered_fraction():
    n, s = 16, 4
    x = raycast.mesh_to_sphere(_plate(), n, supersample=s)
    d, w = _subrays(n, s)
    t, angle, hit, margin = _plate_closed_form(d)
    # no sub-ray passes within 1e-3 of the plate's border, where the float32 intersector could
    # decide either way
    assert np.abs(margin[np.isfinite(margin) & (R0 - t <= R0)]).min() > 1e-3
    dist, ang = _cell_average(t, angle, hit, w)
    np.testing.assert_allclose(np.abs(x), dist, atol=1e-6)
    np.testing.assert_allclose(np.angle(x), ang, atol=1e-6)

    # the plate ends at y = 0, i.e. azimuth 0, in the middle of the cells k = 0 (seen from +x)
    # and k = n/2 (from -x, through the centre): the sub-rays of one azimuth half hit, so the
    # distance is half the hits' mean and the angle is the hits' mean
    for k, t0 in ((0, R0 - 0.5), (n // 2, R0 + 0.5)):
        cell = (k, n // 2)
        assert np.all(hit[cell][:, s // 2:]) and not np.any(hit[cell][:, :s // 2])
        wh = (w * hit)[cell]
        np.testing.assert_allclose(abs(x[cell]), 0.5 * (wh * t[cell]).sum() / wh.sum(), rtol=1e-6)
        np.testing.assert_allclose(abs(x[cell]), 0.5 * t0, rtol=0.01)
        np.testing.assert_allclose(np.angle(x[cell]), (wh * angle[cell]).sum() / wh.sum(), atol=1e-6)
    # partly covered cells lie strictly between a miss and a full hit
    frac = (w * hit).sum((-1, -2)) / w.sum((-1, -2))
    partial = (frac > 0) & (frac < 1)
    assert partial.sum() >= 4
    assert np.all(x[partial] != 0)
    # cells that every sub-ray misses are exactly the miss value; the one-ray map agrees there
    assert np.all(x[frac == 0] == raycast.MISS_VALUE) and (frac == 0).sum() > n * n / 2
    assert np.all(raycast.mesh_to_sphere(_plate(), n)[frac == 0] == 0)


def _one_ray_reference(mesh, directions, r0=R0):
    """The one-ray-per-direction computation as it was before supersampling, kept as the reference."""
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    origins = r0 * d
    tri = mesh.ray.intersects_first(origins, -d)
    out = np.full(len(d), 0j, dtype=np.complex64)
    hit = tri >= 0
    normals = mesh.face_normals[tri[hit]]
    cos = np.einsum('ij,ij->i', -d[hit], normals)
    with np.errstate(divide='ignore', invalid='ignore'):
        t = np.einsum('ij,ij->i', mesh.triangles[tri[hit], 0] - origins[hit], normals) / cos
    bad = ~np.isfinite(t) | (t < 0) | (t > 2 * r0)
    t[bad] = r0 - np.einsum('ij,ij->i', mesh.triangles_center[tri[hit][bad]], d[hit][bad])
    out[hit] = (t * np.exp(1j * np.arccos(np.clip(np.abs(cos), 0.0, 1.0)))).astype(np.complex64)
    return out.reshape(np.shape(directions)[:-1])


def test_supersample_1_is_the_one_ray_map_bit_for_bit():
    m, n = _ellipsoid(), 16
    q = rotations.sample_quaternions('so3', 3, 0)
    grid = raycast.grid_directions(n)
    ref = _one_ray_reference(m, grid)
    assert raycast.mesh_to_sphere(m, n, supersample=1).tobytes() == ref.tobytes()
    assert raycast.mesh_to_sphere(m, n).tobytes() == ref.tobytes()
    assert raycast.cast_directions(m, grid).tobytes() == ref.tobytes()
    rotated = _one_ray_reference(m, np.einsum('mji,abj->mabi', rotations.quaternion_to_matrix(q), grid))
    assert raycast.cast_rotated(m, n, q, supersample=1).tobytes() == rotated.tobytes()
    sc, c = np.full((3, 3), 0.9), np.full((3, 3), 0.05)
    assert (raycast.cast_augmented(m, n, q, sc, c, supersample=1).tobytes()
            == raycast.cast_augmented(m, n, q, sc, c).tobytes())
    d, w = raycast.subray_grid(n, 1)
    assert d.shape == (n, n, 1, 3) and np.array_equal(d[:, :, 0], grid) and np.all(w == 1)


def test_subray_grid_layout():
    n, s = 8, 3
    d, w = raycast.subray_grid(n, s)
    ref_d, ref_w = _subrays(n, s)
    assert d.shape == (n, n, s * s, 3) and w.shape == (n, n, s * s)
    np.testing.assert_allclose(d, ref_d.reshape(n, n, s * s, 3), atol=1e-15)
    np.testing.assert_allclose(w, ref_w.reshape(n, n, s * s), atol=1e-15)
    # odd s: the middle sub-ray is the grid point itself; at the pole it has weight 0
    np.testing.assert_allclose(d[:, :, s * s // 2], raycast.grid_directions(n), atol=1e-15)
    assert np.all(w[:, 0, s * s // 2] == 0) and np.all(w[:, 0].sum(-1) > 0)


def test_rotated_casting_equals_casting_the_rotated_mesh():
    m, n, s = _ellipsoid(), 16, 3
    q = rotations.sample_quaternions('so3', 2, 1)
    fast = raycast.cast_rotated(m, n, q, supersample=s)
    assert fast.shape == (2, n, n)
    assert raycast.cast_rotated(m, n, q, supersample=s, channels=True).shape == (2, n, n, 1)
    for k, r in enumerate(rotations.quaternion_to_matrix(q)):
        slow = raycast.mesh_to_sphere(trimesh.Trimesh(m.vertices @ r.T, m.faces), n, supersample=s)
        np.testing.assert_allclose(fast[k], slow, atol=1e-5)
    # and supersampling really changes the map of this smooth but non-constant shape
    assert np.abs(fast - raycast.cast_rotated(m, n, q)).max() > 1e-3


def test_augmented_casting_equals_casting_the_transformed_mesh():
    """The ray from c + R0 d towards c against R diag(s) v = the ray from R0 d towards 0 against R diag(s) v - c."""
    m, n, s = _ellipsoid(), 16, 2
    q = rotations.sample_quaternions('so3', 2, 2)
    scales = np.array([[1.0, 0.8, 1.1], [0.9, 1.05, 0.85]])
    centers = np.array([[0.05, -0.08, 0.02], [-0.03, 0.0, 0.1]])
    x = raycast.cast_augmented(m, n, q, scales, centers, supersample=s, channels=True)
    assert x.shape == (2, n, n, 1)
    for k, r in enumerate(rotations.quaternion_to_matrix(q)):
        moved = trimesh.Trimesh((m.vertices * scales[k]) @ r.T - centers[k], m.faces)
        np.testing.assert_allclose(x[k, ..., 0], raycast.mesh_to_sphere(moved, n, supersample=s), atol=1e-5)
    np.testing.assert_allclose(raycast.cast_augmented(m, n, q, supersample=s),
                               raycast.cast_rotated(m, n, q, supersample=s), atol=1e-5)


@pytest.mark.parametrize('bad', [0, -1, 2.5, True, '2', None])
def test_bad_supersample_is_refused(bad):
    m, q = _ellipsoid(), np.eye(3)[None]
    for call in (lambda: raycast.mesh_to_sphere(m, 8, supersample=bad),
                 lambda: raycast.cast_rotated(m, 8, q, supersample=bad),
                 lambda: raycast.cast_augmented(m, 8, q, supersample=bad)):
        with pytest.raises(ValueError, match='supersample must be an integer >= 1'):
            call()


def test_make_dataset_supersample(tmp_path, capsys):
    root = _tree(tmp_path / 'm', n_train=2)
    argv = [str(root), '--input_res', '8', '--n_rotations', '2', '--n_test_rotations', '1', '--seed', '2',
            '--val_fraction', '0', '--workers', '1']
    assert run_cli(make_dataset.main, argv + ['--out', str(tmp_path / 'ss'), '--supersample', '3']) == 0
    man = json.loads((tmp_path / 'ss' / 'manifest.json').read_text())
    assert man['supersample'] == 3 and man['args']['supersample'] == 3
    n_checked = 0
    for fn in ('train_000.tfrecord', 'train_001.tfrecord', 'test_000.tfrecord'):
        for raw in records.iter_records(str(tmp_path / 'ss' / fn)):
            d = records.decode_example(raw, shape=(8, 8, 1))
            q = rotations.sample_quaternions('so3', 2 if fn.startswith('train') else 1,
                                             builder._mesh_rng(2, d['fname'], 1))[d['idrot']]
            x = raycast.cast_rotated(meshes.load_mesh(str(root / d['fname'])), 8, q[None], channels=True,
                                     supersample=3)[0]
            np.testing.assert_array_equal(d['x'], x)
            n_checked += 1
    assert n_checked == 2 * 4 + 2
    # the default is one ray per grid point, recorded as supersample 1
    assert run_cli(make_dataset.main, argv + ['--out', str(tmp_path / 'one')]) == 0
    assert json.loads((tmp_path / 'one' / 'manifest.json').read_text())['supersample'] == 1
    capsys.readouterr()
    for bad in ('0', '-1'):
        assert run_cli(make_dataset.main, argv + ['--out', str(tmp_path / 'bad'), '--supersample', bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and '--supersample must be an integer >= 1' in err[0], err
    assert not (tmp_path / 'bad').exists()


def test_synthetic_build_records_supersample(tmp_path):
    man = builder.build_synthetic(str(tmp_path / 'syn'), input_res=8, n_train_per_class=1, n_test_per_class=1,
                                  n_rotations=1, n_test_rotations=1, val_fraction=0, workers=1,
                                  progress=False, supersample=2)
    assert man['supersample'] == 2 and not man['skipped']


def test_predict_renders_meshes_as_the_training_set_was(tmp_path, capsys):
    """A model trained on supersampled renders keeps how they were made (input.json), and
    ``predict --meshes`` casts a new mesh the same way: its map equals the dataset's own record
    of that mesh unrotated, which one ray per cell (the default) does not give."""
    from test_training import TINY_MODEL
    from spherical_cnn import params, training
    from spherical_cnn.cli import predict
    root = _tree(tmp_path / 'm', n_train=2)
    dset = tmp_path / 'ss'
    assert run_cli(make_dataset.main, [str(root), '--out', str(dset), '--input_res', '16', '--n_rotations', '1',
                                       '--test_rotations', 'none', '--n_test_rotations', '1', '--r0', '1.5',
                                       '--supersample', '3', '--val_fraction', '0', '--workers', '1']) == 0
    capsys.readouterr()
    logdir = str(tmp_path / 'run')
    args = params.parse(TINY_MODEL + ['--dset_dir', str(dset), '--logdir', logdir, '--n_epochs', '1',
                                      '--n_classes', '2', '--skip_val'])
    training.Trainer(args).train()
    with open(tmp_path / 'run' / training.INPUT_FILE) as f:
        assert json.load(f) == {'kind': 'mesh renders', 'input_res': 16, 'r0': 1.5, 'supersample': 3}
    assert predict.mesh_rendering(logdir) == (1.5, 3, False)
    test = [records.decode_example(raw, shape=(16, 16, 1))
            for raw in records.iter_records(str(dset / 'test_000.tfrecord'))]
    paths = [str(root / d['fname']) for d in test]
    rows = predict.mesh_rows(paths, args, print, *predict.mesh_rendering(logdir))
    for d, row in zip(test, rows):
        np.testing.assert_allclose(row['x'], d['x'], atol=1e-6)
    one_ray = predict.mesh_rows(paths, args, print)
    assert max(np.abs(r['x'] - d['x']).max() for r, d in zip(one_ray, test)) > 1e-2
    # a damaged description is one line naming the file
    (tmp_path / 'run' / training.INPUT_FILE).write_text('{"kind": "mesh renders", "r0": "far"}')
    with pytest.raises(predict.UserError, match='input.json'):
        predict.mesh_rendering(logdir)
