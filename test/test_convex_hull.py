"""The convex hull channel: ``make-dataset --convex_hull``, the models that read it, and
``predict --meshes`` rendering it as the training set did.

Independent checks: the hull of a rotated mesh is built here from the explicitly rotated
vertices (``trimesh.convex_hull``) and cast with one unrotated ray per cell; the hull
contains the mesh, so every ray that hits the mesh hits the hull no later; a convex mesh is
its own hull.
"""
import json

import numpy as np
import pytest
import trimesh
from scipy.spatial import ConvexHull

from spherical_cnn import params, training
from spherical_cnn.cli import make_dataset, predict
from spherical_cnn.data import builder, meshes, raycast, records, rotations
from spherical_cnn.errors import run_cli

RES = 16


def _table():
    """A table: a top plate on four legs (not convex; the space under the top is in its hull)."""
    parts = [trimesh.creation.box(extents=(1.2, 0.8, 0.08)).apply_translation((0, 0, 0.3))]
    for x in (-0.55, 0.55):
        for y in (-0.35, 0.35):
            parts.append(trimesh.creation.box(extents=(0.06, 0.06, 0.6)).apply_translation((x, y, 0)))
    return trimesh.util.concatenate(parts)


def _hull(vertices):
    """The convex hull of ``vertices`` as a triangle mesh, straight from Qhull (face orientation
    does not matter: the map's angle is folded)."""
    return trimesh.Trimesh(vertices, ConvexHull(vertices).simplices, process=False)


def _tree(root):
    """Tables and boxes, two train meshes and one test mesh per class, as .off files."""
    rng = np.random.default_rng(3)
    for c, make in [('box', lambda: trimesh.creation.box(extents=rng.uniform(0.5, 1.5, 3))),
                    ('table', lambda: _table().apply_scale(rng.uniform(0.8, 1.2)))]:
        for split, n in (('train', 2), ('test', 1)):
            (root / c / split).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make().export(str(root / c / split / f'{c}_{i}.off'))
    return root


def _build(root, out, *more):
    argv = [str(root), '--out', str(out), '--input_res', str(RES), '--n_rotations', '2',
            '--n_test_rotations', '1', '--val_fraction', '0', '--seed', '5', '--workers', '1']
    assert run_cli(make_dataset.main, argv + list(more)) == 0


def _records(folder, fn, nchannels):
    return [records.decode_example(raw, shape=(RES, RES, nchannels))
            for raw in records.iter_records(str(folder / fn))]


@pytest.fixture(scope='module')
def hull_set(tmp_path_factory):
    root = _tree(tmp_path_factory.mktemp('meshes'))
    out = tmp_path_factory.mktemp('out')
    _build(root, out / 'hull', '--convex_hull')
    _build(root, out / 'plain')
    return root, out


def test_hull_channel_is_the_map_of_the_rotated_meshs_hull(hull_set):
    root, out = hull_set
    man = json.loads((out / 'hull' / 'manifest.json').read_text())
    assert man['nchannels'] == 2 and man['convex_hull'] is True
    assert json.loads((out / 'plain' / 'manifest.json').read_text())['nchannels'] == 1
    n_checked = 0
    for fn in ('train_000.tfrecord', 'train_001.tfrecord', 'test_000.tfrecord'):
        hull, plain = _records(out / 'hull', fn, 2), _records(out / 'plain', fn, 1)
        assert [d['fname'] for d in hull] == [d['fname'] for d in plain]
        for d, p in zip(hull, plain):
            np.testing.assert_array_equal(d['x'][..., :1], p['x'])  # channel 0: the build without it
            q = rotations.sample_quaternions('so3', 2 if fn.startswith('train') else 1,
                                             builder._mesh_rng(5, d['fname'], 1))[d['idrot']]
            rotated = meshes.load_mesh(str(root / d['fname']))
            rotated.vertices = rotated.vertices @ rotations.quaternion_to_matrix(q.astype(np.float64)).T
            expected = raycast.mesh_to_sphere(_hull(rotated.vertices), RES)
            np.testing.assert_allclose(d['x'][..., 1], expected, atol=2e-5)
            n_checked += 1
    assert n_checked == 2 * 4 + 2


def test_the_hull_is_hit_no_later_than_the_mesh(hull_set):
    _, out = hull_set
    saw_a_gap = False
    for d in _records(out / 'hull', 'train_000.tfrecord', 2):
        mesh, hull = np.abs(d['x'][..., 0]), np.abs(d['x'][..., 1])
        hits = mesh > 0
        assert np.all(hull[hits] <= mesh[hits] + 1e-5), d['fname']
        assert np.all(hull[hull == 0] == 0) and np.all(mesh[hull == 0] == 0)
        if d['fname'].startswith('box'):  # a convex mesh is its own hull
            np.testing.assert_allclose(d['x'][..., 1], d['x'][..., 0], atol=2e-5)
        else:
            saw_a_gap |= bool(np.any(hull[hits] < mesh[hits] - 0.1))  # rays under the top, between the legs
    assert saw_a_gap


def test_augmented_hull_channel_uses_the_instances_transform(tmp_path):
    """With scaling and a shifted centre, channel 1 is the cast of the hull with the record's
    own scale, rotation and centre: the transformed hull is the hull of the transformed mesh."""
    root = _tree(tmp_path / 'm')
    _build(root, tmp_path / 'aug', '--convex_hull', '--aniso_scale', '0.7,1.3', '--center_shift', '0.1')
    for d in _records(tmp_path / 'aug', 'train_001.tfrecord', 2):
        mesh = meshes.load_mesh(str(root / d['fname']))
        hull = _hull(mesh.vertices * d['scale'].astype(np.float64))
        hull.vertices = hull.vertices / d['scale']
        expected = raycast.cast_augmented(hull, RES, d['rotation'][None].astype(np.float64),
                                          d['scale'][None].astype(np.float64),
                                          d['center'][None].astype(np.float64))[0]
        np.testing.assert_allclose(d['x'][..., 1], expected, atol=2e-5)


def test_two_branch_gives_each_branch_half_of_the_channels():
    import keras
    from spherical_cnn import models
    from test_training import TINY_MODEL
    args = params.parse(TINY_MODEL + ['--nchannels', '2', '--logdir', 'unused'])
    model = models.build_model(args, (RES, RES, 4))
    x = np.random.default_rng(0).normal(size=(2, RES, RES, 4)).astype(np.float32)
    for b, channels in ((0, [0, 1]), (1, [2, 3])):
        split = keras.Model(model.inputs, model.get_layer(f'split_b{b}').output)
        np.testing.assert_array_equal(np.asarray(split({'x': x})), x[..., channels])
    with pytest.raises(ValueError, match='even number of input channels'):
        models.build_model(args, (RES, RES, 3))


def test_train_and_predict_on_the_hull_channel(hull_set, tmp_path, capsys):
    from test_training import TINY_MODEL
    root, out = hull_set
    logdir = str(tmp_path / 'run')
    flags = TINY_MODEL + ['--input_res', str(RES), '--dset_dir', str(out / 'hull'), '--logdir', logdir,
                          '--n_epochs', '1', '--n_classes', '2', '--skip_val']
    # without --nchannels 2 the records would be read with the wrong layout: refused, naming both
    with pytest.raises(Exception, match='--nchannels 2.*--nchannels 1'):
        training.Trainer(params.parse(flags)).train()
    args = params.parse(flags + ['--nchannels', '2'])
    trainer = training.Trainer(args)
    trainer.train()
    trainer.export()
    with open(tmp_path / 'run' / training.INPUT_FILE) as f:
        assert json.load(f)['convex_hull'] is True
    assert predict.mesh_rendering(logdir) == (raycast.DEFAULT_R0, 1, True)
    # predict --meshes casts the hull too: an unrotated test set's records are what it renders
    _build(root, tmp_path / 'upright', '--convex_hull', '--test_rotations', 'none')
    test = _records(tmp_path / 'upright', 'test_000.tfrecord', 2)
    rows = predict.mesh_rows([str(root / d['fname']) for d in test], args, print,
                             *predict.mesh_rendering(logdir))
    for d, row in zip(test, rows):
        np.testing.assert_allclose(row['x'], d['x'], atol=1e-6)
    capsys.readouterr()
    assert run_cli(predict.main, ['--logdir', logdir, '--meshes', str(root / 'table/test/table_0.off')]) == 0
    assert 'table_0.off' in capsys.readouterr().out
    # a mesh Qhull cannot wrap (one triangle: 3 points, no simplex) is reported by name and
    # skipped, not a traceback; the other mesh is still predicted
    flat = str(tmp_path / 'triangle.off')
    trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False).export(flat)
    assert run_cli(predict.main, ['--logdir', logdir, '--meshes', flat, str(root / 'table/test/table_0.off')]) == 1
    captured = capsys.readouterr()
    assert 'table_0.off' in captured.out and 'Traceback' not in captured.err
    assert [line for line in captured.err.splitlines() if 'triangle.off' in line and 'convex hull' in line]


def test_rotation_study_renders_and_reads_the_hull_channel(tmp_path):
    from spherical_cnn.studies import rotation_config, rotation_meshes, rotation_models
    from spherical_cnn.studies.rotation_config import StudyConfig
    assert rotation_config.mesh_builder_options(StudyConfig(out_dir=str(tmp_path)), 'plain') == {}
    cfg = StudyConfig(out_dir=str(tmp_path), convex_hull=True, input_res=8, n_rotations=1,
                      n_test_rotations=1, n_train_per_class=1, n_test_per_class=1, workers=1, quiet=True)
    assert rotation_config.mesh_builder_options(cfg, 'plain') == {'convex_hull': True}
    dirs = rotation_meshes.build_mesh_datasets(cfg, log=lambda *a: None)['plain']
    for mode in ('z', 'so3'):
        man = json.loads((tmp_path / 'data' / 'plain' / mode / 'manifest.json').read_text())
        assert man['nchannels'] == 2 and man['convex_hull'] is True
        args = rotation_models.spherical_args(cfg, dirs[mode], str(tmp_path / 'run'))
        assert args.nchannels == 2
        assert rotation_models.planar_args(cfg, dirs[mode], str(tmp_path / 'run')).nchannels == 2
    plain = StudyConfig(out_dir=str(tmp_path / 'p'), input_res=8, n_rotations=1, n_test_rotations=1,
                        n_train_per_class=1, n_test_per_class=1, workers=1, quiet=True)
    d = rotation_meshes.build_mesh_datasets(plain, log=lambda *a: None)['plain']['z']
    assert rotation_models.spherical_args(plain, d, str(tmp_path / 'run')).nchannels == 1
