"""The TFRecord reader: records in the original's layout written here by hand (not by our writer)."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import datasets
from spherical_cnn.errors import DataError

RES = 8


def _write(path, xs, ys, extra=None):
    """Minimal writer of the original demo's layout: only x (raw bytes) and y (int64)."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for i, (x, y) in enumerate(zip(xs, ys)):
            f = {'x': tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()])),
                 'y': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y)]))}
            if extra is not None:
                f['a'] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[extra[i].tobytes()]))
            w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())


def _complex(rng, n, ch=1):
    mag = rng.uniform(0.2, 2.0, (n, RES, RES, ch))
    ang = rng.uniform(0, np.pi / 2, (n, RES, RES, ch))
    return (mag * np.exp(1j * ang)).astype(np.complex64), mag, ang


def _args(d, **kw):
    a = dict(dset='from_cached_tfrecords', dset_dir=str(d), dtype='complex64', input_res=RES, nchannels=1,
             mag_ang=True, train_bsize=4, first_n=None, test_n=0, round_batches=False, skip_val=False,
             spectral_input=False, n_classes=5, seed=0)
    a.update(kw)
    return SimpleNamespace(**a)


@pytest.fixture
def dset_dir(tmp_path):
    rng = np.random.default_rng(0)
    data = {}
    for name, n in [('train_000', 10), ('train_001', 6), ('val_000', 5), ('test_000', 7)]:
        x, mag, ang = _complex(rng, n)
        y = rng.integers(0, 5, n)
        _write(tmp_path / f'{name}.tfrecord', x, y)
        data[name] = (x, y, mag, ang)
    return tmp_path, data


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_reads_original_layout_with_mag_ang(dset_dir):
    d, data = dset_dir
    ds = datasets.load(_args(d))
    assert ds.input_shape == (RES, RES, 2) and ds.n_classes == 5 and ds.class_names is None
    assert [os.path.basename(p) for p in ds.files['train']] == ['train_000.tfrecord', 'train_001.tfrecord']
    x, y = _collect(ds.eval('test'))
    _, y0, mag, ang = data['test_000']
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_allclose(x[..., 0], mag[..., 0], rtol=1e-6)
    np.testing.assert_allclose(x[..., 1], np.sin(ang[..., 0]), atol=1e-6)
    assert ds.num_examples('train') == 16 and ds.num_examples('val') == 5


def test_train_cycles_shards_and_shuffles_with_seed(dset_dir):
    d, data = dset_dir
    ds = datasets.load(_args(d))
    sizes = [len(_collect(ds.train(e))[1]) for e in range(4)]
    assert sizes == [10, 6, 10, 6]
    x0, y0 = _collect(ds.train(0))
    x2, y2 = _collect(ds.train(2))
    # same shard, same contents, different order (seed + epoch)
    np.testing.assert_array_equal(np.sort(y0), np.sort(data['train_000'][1]))
    assert not np.array_equal(x0, x2)
    np.testing.assert_allclose(np.sort(x0.ravel()), np.sort(x2.ravel()))
    # reproducible
    np.testing.assert_array_equal(_collect(datasets.load(_args(d)).train(0))[0], x0)
    # batching options
    assert [int(b[1].shape[0]) for b in datasets.load(_args(d, round_batches=True)).train(0)] == [4, 4]
    assert len(list(datasets.load(_args(d, first_n=1)).train(0))) == 1
    assert len(list(datasets.load(_args(d, test_n=1)).eval('test'))) == 1
    assert len(list(datasets.load(_args(d, test_n=1)).eval('val'))) == 2


def test_real_dtype_and_extra_a_channel(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, RES, RES, 2)).astype(np.float32)
    a = rng.standard_normal((3, RES, RES, 1)).astype(np.float32)
    for s in ('train', 'val', 'test'):
        _write(tmp_path / f'{s}_0.tfrecord', x, [0, 1, 2], extra=a)
    ds = datasets.load(_args(tmp_path, dtype='float32', mag_ang=False, nchannels=3))
    xs, _ = _collect(ds.eval('test'))
    np.testing.assert_array_equal(xs, np.concatenate([x, a], -1))


def test_wrong_size_names_file_record_and_bytes(tmp_path):
    rng = np.random.default_rng(2)
    x, _, _ = _complex(rng, 2)
    _write(tmp_path / 'train_000.tfrecord', x, [0, 1])
    _write(tmp_path / 'test_000.tfrecord', x, [0, 1])
    with pytest.raises(ValueError, match=r'train_000.tfrecord record 0: x has 512 bytes, expected 2048 '
                                         r'for --input_res 16 --nchannels 1 --dtype complex64'):
        datasets.load(_args(tmp_path, input_res=16, skip_val=True))
    # a bad record in the middle of a file is caught before any training
    bad = [x[0], x[1, :4], x[0]]
    _write(tmp_path / 'test_000.tfrecord', bad, [0, 1, 2])
    with pytest.raises(DataError, match='test_000.tfrecord record 1: x has 256 bytes, expected 512'):
        datasets.load(_args(tmp_path, skip_val=True))


def test_missing_dir_and_splits(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope'):
        datasets.load(_args(tmp_path / 'nope'))
    with pytest.raises(FileNotFoundError, match=r'no train\*.tfrecord, val\*.tfrecord or test\*.tfrecord'):
        datasets.load(_args(tmp_path))
    x, _, _ = _complex(np.random.default_rng(3), 2)
    _write(tmp_path / 'train_000.tfrecord', x, [0, 1])
    _write(tmp_path / 'test_000.tfrecord', x, [0, 1])
    with pytest.raises(FileNotFoundError, match='skip_val'):
        datasets.load(_args(tmp_path))
    ds = datasets.load(_args(tmp_path, skip_val=True))
    with pytest.raises(ValueError, match=r'no val\*.tfrecord'):
        ds.eval('val')


def test_flag_errors(dset_dir):
    d, _ = dset_dir
    with pytest.raises(ValueError, match='--mag_ang'):
        datasets.load(_args(d, mag_ang=False))
    with pytest.raises(NotImplementedError, match='spectral_input'):
        datasets.load(_args(d, spectral_input=True))
    with pytest.raises(ValueError, match='unknown --dset'):
        datasets.load(_args(d, dset='modelnet'))


def test_class_names_from_classes_txt(dset_dir):
    d, _ = dset_dir
    (d / 'classes.txt').write_text('a\nb\nc\nd\ne\nf\n')
    ds = datasets.load(_args(d))
    assert ds.class_names == list('abcdef') and ds.n_classes == 6
