"""Dataset builder and the make_dataset command: layout, round trip, skipping, errors."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from spherical_cnn import datasets
from spherical_cnn.cli import make_dataset
from spherical_cnn.data import builder, raycast, records, rotations, synthetic
from spherical_cnn.errors import run_cli

RES = 16
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(root, n_train=4, n_test=1):
    rng = np.random.default_rng(0)
    for c, make in [('box', lambda: trimesh.creation.box(extents=rng.uniform(0.5, 1.5, 3))),
                    ('cone', lambda: trimesh.creation.cone(rng.uniform(0.3, 0.6), rng.uniform(0.8, 1.5)))]:
        for split, n in (('train', n_train), ('test', n_test)):
            os.makedirs(root / c / split, exist_ok=True)
            for i in range(n):
                make().export(str(root / c / split / f'{c}_{i}.off'))
    (root / 'box' / 'train' / 'broken.off').write_text('OFF\n3 1 0\n0 0\n')
    (root / 'cone' / 'train' / 'empty.off').write_text('')
    return root


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    root = _tree(tmp_path_factory.mktemp('meshes'))
    out = tmp_path_factory.mktemp('out') / 'ds'
    man = builder.build_from_tree(str(root), str(out), input_res=RES, n_rotations=3, n_test_rotations=2,
                                  val_fraction=0.25, seed=1, workers=1, progress=False)
    return root, out, man


def test_layout_and_counts(built):
    root, out, man = built
    assert sorted(os.listdir(out)) == ['classes.txt', 'manifest.json', 'test_000.tfrecord',
                                       'train_000.tfrecord', 'train_001.tfrecord', 'train_002.tfrecord',
                                       'val_000.tfrecord']
    assert (out / 'classes.txt').read_text() == 'box\ncone\n'
    # 10 train files per class pair: 1 per class picked for val (by file, before loading);
    # the 2 broken ones are skipped wherever they fall
    c = man['counts']
    assert c['train']['meshes'] + c['val']['meshes'] == 8 and 1 <= c['val']['meshes'] <= 2
    assert c['train']['records'] == 3 * c['train']['meshes'] and c['val']['records'] == 2 * c['val']['meshes']
    assert c['test'] == {'meshes': 2, 'records': 4}
    assert sorted(s['mesh'] for s in man['skipped']) == ['box/train/broken.off', 'cone/train/empty.off']
    assert json.loads((out / 'manifest.json').read_text())['r0'] == raycast.DEFAULT_R0
    # train shard i = rotation i of every train mesh
    for i in range(3):
        recs = [records.decode_example(r) for r in records.iter_records(str(out / f'train_{i:03d}.tfrecord'))]
        assert {r['idrot'] for r in recs} == {i}
        assert len({r['fname'] for r in recs}) == len(recs) == c['train']['meshes']
    val = {records.decode_example(r)['fname'] for r in records.iter_records(str(out / 'val_000.tfrecord'))}
    train = {records.decode_example(r)['fname'] for r in records.iter_records(str(out / 'train_000.tfrecord'))}
    assert not val & train


def test_records_match_direct_rendering(built):
    """Round trip: what is read back equals rendering the mesh with the stored rotation."""
    root, out, _ = built
    from spherical_cnn.data import meshes
    for rec in list(records.iter_records(str(out / 'train_001.tfrecord')))[:2]:
        d = records.decode_example(rec, shape=(RES, RES, 1))
        mesh = meshes.load_mesh(str(root / d['fname']))
        r = rotations.quaternion_to_matrix(d['rotation'].astype(np.float64))
        direct = raycast.mesh_to_sphere(trimesh.Trimesh(mesh.vertices @ r.T, mesh.faces), RES, channels=True)
        np.testing.assert_allclose(d['x'], direct, atol=1e-4)
        assert d['y'] == ['box', 'cone'].index(d['fname'].split('/')[0])


def test_write_then_read_exact(tmp_path):
    x = (np.random.default_rng(0).standard_normal((RES, RES, 1)) * (1 + 1j)).astype(np.complex64)
    q = rotations.sample_quaternions('so3', 1, 0)[0]
    p = str(tmp_path / 'a.tfrecord')
    records.write_records(p, [records.encode_example(x, 3, fname='c/train/m.off', idrot=2, rotation=q)])
    d = records.decode_example(records.first_record(p), shape=x.shape)
    np.testing.assert_array_equal(d['x'], x)
    assert (d['y'], d['fname'], d['idrot']) == (3, 'c/train/m.off', 2)
    np.testing.assert_allclose(d['rotation'], q, rtol=1e-6)
    xs, ys = records.read_numpy(p, x.shape)
    np.testing.assert_array_equal(xs[0], x)


def test_reader_reads_builder_output(built):
    _, out, _ = built
    args = SimpleNamespace(dset='from_cached_tfrecords', dset_dir=str(out), dtype='complex64', input_res=RES,
                           nchannels=1, mag_ang=True, train_bsize=5, first_n=None, test_n=0,
                           round_batches=False, skip_val=False, spectral_input=False, n_classes=10)
    ds = datasets.load(args)
    assert ds.n_classes == 2 and ds.class_names == ['box', 'cone']
    x, y = next(iter(ds.train(1)))
    assert x.shape == (5, RES, RES, 2)
    assert np.all(x.numpy()[..., 0] >= 0) and np.all(x.numpy()[..., 0][x.numpy()[..., 0] > 0] >= raycast.DEFAULT_R0 - 1 - 1e-6)
    with pytest.raises(ValueError, match='built with --input_res 16 .* but --input_res 32 was given'):
        datasets.load(SimpleNamespace(**{**vars(args), 'input_res': 32}))


def test_deterministic_across_workers(tmp_path):
    root = _tree(tmp_path / 'm', n_train=3, n_test=1)
    outs = []
    for w in (1, 2):
        out = tmp_path / f'o{w}'
        builder.build_from_tree(str(root), str(out), input_res=8, n_rotations=2, n_test_rotations=1,
                                seed=3, workers=w, progress=False)
        outs.append(out)
    for fn in ('train_000.tfrecord', 'train_001.tfrecord', 'val_000.tfrecord', 'test_000.tfrecord'):
        assert (outs[0] / fn).read_bytes() == (outs[1] / fn).read_bytes()


def test_same_bytes_from_separate_processes(tmp_path):
    """A build here and one in another process give byte-identical files (a record's features
    are a protobuf map, whose default serialization order differs from process to process)."""
    root = _tree(tmp_path / 'm', n_train=2, n_test=1)
    options = dict(input_res=8, n_rotations=1, n_test_rotations=1, seed=3, workers=1, progress=False)
    code = ("import sys; from spherical_cnn.data import builder; "
            "builder.build_from_tree(sys.argv[1], sys.argv[2], **{})".format(options))
    outs = [tmp_path / f'o{i}' for i in range(2)]
    builder.build_from_tree(str(root), str(outs[0]), **options)
    subprocess.run([sys.executable, '-c', code, str(root), str(outs[1])], check=True,
                   capture_output=True, cwd=ROOT)
    for fn in ('train_000.tfrecord', 'test_000.tfrecord'):
        assert (outs[0] / fn).read_bytes() == (outs[1] / fn).read_bytes(), fn


def test_script_refuses_existing_output_and_overwrites_on_request(tmp_path, capsys):
    root = _tree(tmp_path / 'm', n_train=2, n_test=1)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'something').write_text('x')
    argv = [str(root), '--out', str(out), '--input_res', '8', '--n_rotations', '2', '--workers', '1']
    assert run_cli(make_dataset.main, argv) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert run_cli(make_dataset.main, argv + ['--overwrite']) == 0
    assert (out / 'train_001.tfrecord').exists() and not (out / 'something').exists()
    man = json.loads((out / 'manifest.json').read_text())
    assert man['args']['n_rotations'] == 2 and len(man['skipped']) == 2


def test_synthetic_shapes():
    assert len(synthetic.CLASS_NAMES) >= 10
    for c in synthetic.CLASS_NAMES:
        a = synthetic.make_mesh(c, np.random.default_rng(1))
        b = synthetic.make_mesh(c, np.random.default_rng(1))
        other = synthetic.make_mesh(c, np.random.default_rng(2))
        np.testing.assert_array_equal(a.vertices, b.vertices)  # reproducible
        assert a.vertices.shape != other.vertices.shape or not np.allclose(a.vertices, other.vertices)
        np.testing.assert_allclose(np.linalg.norm(a.vertices, axis=1).max(), 1, atol=1e-12)
    with pytest.raises(ValueError, match='unknown synthetic class'):
        synthetic.make_mesh('teapot', 0)


def test_synthetic_tree_and_small_build(tmp_path):
    paths = synthetic.write_mesh_tree(str(tmp_path / 'm'), 2, 1, seed=0)
    assert len(paths) == 3 * len(synthetic.CLASS_NAMES)
    man = builder.build_synthetic(str(tmp_path / 'o'), input_res=8, n_train_per_class=2, n_test_per_class=1,
                                  n_rotations=2, n_test_rotations=1, workers=1, progress=False)
    assert man['counts']['test']['records'] == len(synthetic.CLASS_NAMES)
    assert man['counts']['train']['records'] + 2 * man['counts']['val']['records'] == 4 * len(synthetic.CLASS_NAMES)
    assert not man['skipped']


def test_datasets_synthetic_builds_on_first_use(tmp_path, monkeypatch):
    calls = []
    real = builder.build_synthetic

    def small(out, input_res, **kw):
        calls.append(input_res)
        return real(out, input_res=input_res, n_train_per_class=2, n_test_per_class=1, n_rotations=2,
                    n_test_rotations=1, workers=1, progress=False)
    monkeypatch.setattr(builder, 'build_synthetic', small)
    args = SimpleNamespace(dset='synthetic', dset_dir=str(tmp_path / 'syn'), dtype='complex64', input_res=8,
                           nchannels=1, mag_ang=True, train_bsize=4, first_n=None, test_n=0,
                           round_batches=False, skip_val=False, spectral_input=False, n_classes=12)
    ds = datasets.load(args)
    assert calls == [8] and ds.n_classes == len(synthetic.CLASS_NAMES)
    datasets.load(args)  # second time: records exist, nothing built
    assert calls == [8]
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'f').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'):
        datasets.load(SimpleNamespace(**{**vars(args), 'dset_dir': str(tmp_path / 'other')}))


def test_command_defaults_match_the_library():
    """make_dataset writes its defaults out (so that --help needs no trimesh); they must agree."""
    assert make_dataset.ROTATION_MODES == rotations.MODES
    assert make_dataset.DEFAULT_R0 == raycast.DEFAULT_R0
    assert make_dataset.DEFAULT_TRAIN_PER_CLASS == synthetic.DEFAULT_TRAIN_PER_CLASS
    assert make_dataset.DEFAULT_TEST_PER_CLASS == synthetic.DEFAULT_TEST_PER_CLASS
    from spherical_cnn.data import augment
    assert sorted(make_dataset.AUGMENT_PRESETS) == sorted(augment.PRESETS)
