"""The authors' augmentation (anisotropic scaling, shifted sphere centre) against closed forms.

Geometry (``raycast.cast_augmented``): mesh point v -> R diag(s) v; the ray of grid
direction d starts at c + R0 d and travels along -d. For the unit sphere scaled
to the ellipsoid E = {x : |diag(1/s) R^T x| = 1} the first hit solves
|p - t q| = 1 with p = diag(1/s) R^T (c + R0 d), q = diag(1/s) R^T d:
t = (p.q - sqrt((p.q)^2 - |q|^2 (|p|^2 - 1))) / |q|^2, which for c = 0 is
R0 - 1 / |q| = R0 - 1 / sqrt(sum_i (R^T d)_i^2 / s_i^2).
"""
import json
import os

import numpy as np
import pytest
import trimesh

from spherical_cnn.data import augment, builder, meshes, raycast, records, rotations, synthetic

from spherical_cnn.cli import make_dataset
from spherical_cnn.errors import run_cli

R0 = raycast.DEFAULT_R0


def _ellipsoid_distance(d, rot, s, c, r0=R0):
    """Closed-form first-hit distance (see module docstring) for directions d (N, 3)."""
    p = ((c + r0 * d) @ rot) / s      # rows: diag(1/s) R^T (c + r0 d)
    q = (d @ rot) / s
    pq, qq, pp = (p * q).sum(1), (q * q).sum(1), (p * p).sum(1)
    return (pq - np.sqrt(pq ** 2 - qq * (pp - 1))) / qq


def _sphere():
    return trimesh.creation.icosphere(subdivisions=5)  # unit sphere, vertices on it


def test_scaled_sphere_is_closed_form_ellipsoid():
    n = 16
    s = np.array([1.0, 0.7, 0.45])
    d = raycast.grid_directions(n).reshape(-1, 3)
    x = raycast.cast_augmented(_sphere(), n, np.eye(3)[None], s[None])[0].reshape(-1)
    expected = R0 - 1 / np.sqrt(((d / s) ** 2).sum(1))
    # faceted sphere: the surface lies within ~2e-3 (relative) of the ellipsoid (test_data_raycast)
    np.testing.assert_allclose(np.abs(x), expected, atol=2e-3)
    assert np.ptp(expected) > 0.4  # the map really is anisotropic
    # angle: normal of the ellipsoid at the hit point h is diag(1/s^2) h
    h = (R0 - np.abs(x))[:, None] * d
    normal = h / s ** 2
    cos = np.abs((d * normal).sum(1)) / np.linalg.norm(normal, axis=1)
    # a facet's normal deviates from the smooth one by up to about one edge angle (0.035 rad at
    # subdivision 5), stretched by the anisotropy (up to s_max / s_min)
    err = np.abs(np.angle(x) - np.arccos(np.clip(cos, 0, 1)))
    assert err.max() < 0.035 * s.max() / s.min() and err.mean() < 0.02, (err.max(), err.mean())


def test_scaled_rotated_shifted_ellipsoid():
    n = 16
    s = np.array([0.5, 0.9, 0.7])
    c = np.array([0.05, -0.1, 0.08])
    q = rotations.sample_quaternions('so3', 1, 5)
    rot = rotations.quaternion_to_matrix(q)[0]
    x = raycast.cast_augmented(_sphere(), n, q, s[None], c[None])[0].reshape(-1)
    d = raycast.grid_directions(n).reshape(-1, 3)
    np.testing.assert_allclose(np.abs(x), _ellipsoid_distance(d, rot, s, c), atol=2e-3)


def test_shifted_centre_sphere_closed_form():
    """Sphere of radius r at the origin seen from centre c: t = R0 + c.d - sqrt((c.d)^2 - |c|^2 + r^2)."""
    n, r = 16, 0.6
    c = np.array([0.12, -0.05, 0.1])
    m = trimesh.creation.icosphere(subdivisions=5, radius=r)
    x = raycast.cast_augmented(m, n, np.eye(3)[None], None, c[None])[0].reshape(-1)
    d = raycast.grid_directions(n).reshape(-1, 3)
    cd = d @ c
    t = R0 + cd - np.sqrt(cd ** 2 - c @ c + r ** 2)
    np.testing.assert_allclose(np.abs(x), t, atol=2e-3 * r)
    assert np.ptp(t) > 0.25  # the shift really moves the map
    # hit point relative to the sphere's centre, and the angle to its normal
    h = c + (R0 - t)[:, None] * d
    cos = np.abs((h * d).sum(1)) / r
    err = np.abs(np.angle(x) - np.arccos(np.clip(cos, 0, 1)))
    assert err.max() < 0.04 and err.mean() < 0.02, (err.max(), err.mean())
    # equivalently: the sphere moved to c and seen from the origin gives the constant map R0 - r
    moved = trimesh.Trimesh(m.vertices + c, m.faces)
    y = raycast.cast_augmented(moved, n, np.eye(3)[None], None, c[None])[0]
    np.testing.assert_allclose(np.abs(y), R0 - r, atol=2e-3 * r)


def test_identity_augmentation_equals_cast_rotated():
    m = trimesh.creation.icosphere(subdivisions=3).apply_scale([0.9, 0.6, 0.4])
    q = rotations.sample_quaternions('so3', 3, 1)
    a = raycast.cast_augmented(m, 16, q)
    b = raycast.cast_rotated(m, 16, q)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_mesh_outside_start_sphere_is_refused():
    with pytest.raises(ValueError, match='ray start radius'):
        raycast.cast_augmented(_sphere(), 8, np.eye(3)[None], [[1.0, 1.0, 1.0]], [[0.25, 0, 0]])


def test_renormalised_scales_keep_unit_ball():
    v = meshes.normalize_mesh(synthetic.make_mesh('chair', np.random.default_rng(0))).vertices
    f, _ = augment.sample(0, 5, (0.8, 1.2), 0.0)
    s = augment.renormalised_scales(v, f)
    radius = np.linalg.norm(v[None] * s[:, None], axis=-1).max(1)
    np.testing.assert_allclose(radius, 1.0, rtol=1e-12)
    np.testing.assert_allclose(s / s[:, :1], f / f[:, :1], rtol=1e-12)  # ratios kept


def test_sampling_ranges():
    f, c = augment.sample(3, 4000, (0.8, 1.2), 0.1)
    assert f.min() >= 0.8 and f.max() <= 1.2 and abs(f.mean() - 1.0) < 0.01
    r = np.linalg.norm(c, axis=1)
    assert r.max() <= 0.1 + 1e-12
    # uniform in the ball: P(|c| < 0.1 * 2^(-1/3)) = 1/2
    assert abs(np.mean(r < 0.1 * 0.5 ** (1 / 3)) - 0.5) < 0.03
    f0, c0 = augment.sample(3, 10, None, 0.0)
    assert np.all(f0 == 1) and np.all(c0 == 0)


@pytest.mark.parametrize('flags, match', [
    (['--aniso_scale', '1.2,0.8'], '--aniso_scale'),
    (['--aniso_scale', '0,1'], '--aniso_scale'),
    (['--center_shift', '0.2'], '--center_shift'),
    (['--center_shift', '-0.1'], '--center_shift'),
])
def test_bad_ranges_name_the_flag(tmp_path, capsys, flags, match):
    argv = ['--synthetic', '--out', str(tmp_path / 'o'), '--input_res', '8', '--n_train_per_class', '1',
            '--n_test_per_class', '1', '--workers', '1'] + flags
    assert run_cli(make_dataset.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_malformed_range_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_dataset.parse_args(['--synthetic', '--out', str(tmp_path), '--aniso_scale', '0.8'])
    assert '--aniso_scale takes two numbers' in capsys.readouterr().err


def _tree(root, n_train=3):
    """A two-class mesh tree (boxes and cones) with ``n_train`` train meshes and one test mesh each."""
    rng = np.random.default_rng(0)
    for c, make in [('box', lambda: trimesh.creation.box(extents=rng.uniform(0.5, 1.5, 3))),
                    ('cone', lambda: trimesh.creation.cone(rng.uniform(0.3, 0.6), rng.uniform(0.8, 1.5)))]:
        for split, n in (('train', n_train), ('test', 1)):
            os.makedirs(root / c / split, exist_ok=True)
            for i in range(n):
                make().export(str(root / c / split / f'{c}_{i}.off'))
    return root


@pytest.fixture(scope='module')
def augmented(tmp_path_factory):
    root = _tree(tmp_path_factory.mktemp('meshes'))
    out = tmp_path_factory.mktemp('out') / 'ds'
    argv = [str(root), '--out', str(out), '--input_res', '16', '--n_rotations', '3', '--n_test_rotations', '2',
            '--val_fraction', '0.3', '--seed', '4', '--workers', '1', '--aniso_scale', '0.7,1.3',
            '--center_shift', '0.15']
    assert run_cli(make_dataset.main, argv) == 0
    return root, out


def test_records_store_parameters_that_reproduce_the_map_exactly(augmented):
    root, out = augmented
    n_checked = 0
    for fn in ('train_000.tfrecord', 'train_002.tfrecord', 'val_000.tfrecord'):
        for raw in records.iter_records(str(out / fn)):
            d = records.decode_example(raw, shape=(16, 16, 1))
            assert d['scale'].shape == (3,) and d['center'].shape == (3,) and d['rotation'].shape == (4,)
            assert np.linalg.norm(d['center']) <= 0.15 + 1e-6
            mesh = meshes.load_mesh(str(root / d['fname']))
            again = raycast.cast_augmented(mesh, 16, d['rotation'][None].astype(np.float64),
                                           d['scale'][None].astype(np.float64),
                                           d['center'][None].astype(np.float64), channels=True)[0]
            np.testing.assert_array_equal(d['x'], again)
            # the scaled mesh fills the unit ball again
            radius = np.linalg.norm(mesh.vertices * d['scale'].astype(np.float64), axis=1).max()
            assert abs(radius - 1) < 1e-6
            n_checked += 1
    assert n_checked >= 6
    # test records are only rotated
    for raw in records.iter_records(str(out / 'test_000.tfrecord')):
        assert not {'scale', 'center'} & records.feature_names(raw)
    man = json.loads((out / 'manifest.json').read_text())['augmentation']
    assert man['aniso_scale'] == [0.7, 1.3] and man['center_shift'] == 0.15
    assert man['splits'] == ['train', 'val'] and 'rotate' in man['order']


def test_augmentation_keeps_rotations_and_is_worker_independent(augmented, tmp_path):
    root, out = augmented
    other = tmp_path / 'w2'
    argv = [str(root), '--out', str(other), '--input_res', '16', '--n_rotations', '3', '--n_test_rotations', '2',
            '--val_fraction', '0.3', '--seed', '4', '--workers', '2', '--aniso_scale', '0.7,1.3',
            '--center_shift', '0.15']
    assert run_cli(make_dataset.main, argv) == 0
    for fn in ('train_000.tfrecord', 'train_001.tfrecord', 'train_002.tfrecord', 'val_000.tfrecord',
               'test_000.tfrecord'):
        assert (out / fn).read_bytes() == (other / fn).read_bytes()
    # same rotations as without augmentation (separate random streams)
    plain = tmp_path / 'plain'
    argv = [str(root), '--out', str(plain), '--input_res', '16', '--n_rotations', '3', '--n_test_rotations', '2',
            '--val_fraction', '0.3', '--seed', '4', '--workers', '1']
    assert run_cli(make_dataset.main, argv) == 0
    rot = lambda p: {(d['fname'], d['idrot']): d['rotation'] for d in  # noqa: E731
                     map(records.decode_example, records.iter_records(str(p / 'train_001.tfrecord')))}
    a, b = rot(out), rot(plain)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_defaults_leave_the_builder_output_unchanged(tmp_path):
    root = _tree(tmp_path / 'm')
    common = [str(root), '--input_res', '8', '--n_rotations', '2', '--n_test_rotations', '1', '--seed', '2',
              '--workers', '1']
    assert run_cli(make_dataset.main, common + ['--out', str(tmp_path / 'a')]) == 0
    assert run_cli(make_dataset.main, common + ['--out', str(tmp_path / 'b'), '--augment', 'none',
                                       '--center_shift', '0']) == 0
    names = ('train_000.tfrecord', 'train_001.tfrecord', 'val_000.tfrecord', 'test_000.tfrecord')
    for fn in names:
        assert (tmp_path / 'a' / fn).read_bytes() == (tmp_path / 'b' / fn).read_bytes()
    # and the records are the plain rotated rendering (float64 rotations), without the new features
    for fn in names:
        for raw in records.iter_records(str(tmp_path / 'a' / fn)):
            assert 'scale' not in records.feature_names(raw) and 'center' not in records.feature_names(raw)
            d = records.decode_example(raw, shape=(8, 8, 1))
            q = rotations.sample_quaternions('so3', 2, builder._mesh_rng(2, d['fname'], 1))[d['idrot']]
            x = raycast.cast_rotated(meshes.load_mesh(str(root / d['fname'])), 8, q[None], channels=True)[0]
            np.testing.assert_array_equal(d['x'], x)
    man = json.loads((tmp_path / 'a' / 'manifest.json').read_text())['augmentation']
    assert man == {'preset': 'none', 'aniso_scale': None, 'center_shift': 0.0, 'splits': [], 'order': None}


def test_original_preset_record_count(tmp_path):
    out = tmp_path / 'orig'
    argv = ['--synthetic', '--out', str(out), '--input_res', '8', '--n_train_per_class', '1',
            '--n_test_per_class', '1', '--val_fraction', '0', '--workers', '1', '--augment', 'original']
    assert run_cli(make_dataset.main, argv) == 0
    man = json.loads((out / 'manifest.json').read_text())
    n_classes = len(synthetic.CLASS_NAMES)
    assert man['n_rotations'] == 48 and man['rotations'] == 'so3'
    assert man['counts']['train'] == {'meshes': n_classes, 'records': 48 * n_classes}
    assert len(man['files']['train']) == 48
    assert man['augmentation']['preset'] == 'original'
    assert man['augmentation']['aniso_scale'] == [0.8, 1.2] and man['augmentation']['center_shift'] == 0.1
    assert records.count_records(str(out / 'train_047.tfrecord')) == n_classes
    # explicit flags win over the preset
    args = make_dataset.parse_args(['--synthetic', '--out', 'x', '--augment', 'original', '--n_rotations', '4'])
    assert args.n_rotations == 4 and args.center_shift == 0.1
