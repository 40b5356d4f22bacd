"""tf.train.Example records in the layout of the original Spherical CNN demo.

One record per sample, features:
  ``x``        bytes: raw array, C order, ``(res, res, nchannels)`` in
               (azimuth, polar, channels) layout, dtype given by ``--dtype``
               (complex64 for ray-cast meshes).
  ``y``        int64: class label (line index in ``classes.txt``).
  ``fname``    bytes, optional: mesh path relative to the mesh root.
  ``idrot``    int64, optional: index of the rotation applied to the mesh.
  ``rotation`` float list, optional (ours): that rotation as a quaternion (w, x, y, z).
  ``scale``    float list, optional (ours): 3 per-axis factors applied in the mesh
               frame before the rotation (anisotropic scaling, ``augment.py``).
  ``center``   float list, optional (ours): 3 coordinates of the ray sphere's
               centre in the rotated frame (shifted sphere centre, ``augment.py``).
  ``a``        bytes, optional (read only): one extra channel appended after ``x``'s.

Only ``x`` and ``y`` are required by the reader.
"""
import numpy as np
import tensorflow as tf


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in np.ravel(values)]))


def encode_example(x, y, fname=None, idrot=None, rotation=None, scale=None, center=None):
    """Serialize one sample to ``tf.train.Example`` bytes (``x`` written as-is, C order)."""
    x = np.ascontiguousarray(x)
    feature = {
        'x': tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()])),
        'y': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y)])),
    }
    if fname is not None:
        if isinstance(fname, str):
            fname = fname.encode('utf-8')
        feature['fname'] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[fname]))
    if idrot is not None:
        feature['idrot'] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(idrot)]))
    if rotation is not None:
        feature['rotation'] = _floats(rotation)
    if scale is not None:
        feature['scale'] = _floats(scale)
    if center is not None:
        feature['center'] = _floats(center)
    # deterministic: the features are a protobuf map, whose default serialization order
    # changes from process to process; two builds of a dataset must be the same bytes
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def decode_example(serialized, shape=None, dtype='complex64'):
    """Parse example bytes into a dict of NumPy values (``x`` reshaped to ``shape`` if given).

    ``a`` (if present) is returned separately, not concatenated.
    """
    ex = tf.train.Example()
    ex.ParseFromString(serialized)
    f = ex.features.feature
    out = {'x': np.frombuffer(f['x'].bytes_list.value[0], dtype=dtype),
           'y': int(f['y'].int64_list.value[0])}
    if shape is not None:
        out['x'] = out['x'].reshape(shape)
    if 'a' in f:
        out['a'] = np.frombuffer(f['a'].bytes_list.value[0], dtype=dtype)
    if 'fname' in f:
        out['fname'] = f['fname'].bytes_list.value[0].decode('utf-8', 'replace')
    if 'idrot' in f:
        out['idrot'] = int(f['idrot'].int64_list.value[0])
    for name in ('rotation', 'scale', 'center'):
        if name in f:
            out[name] = np.array(f[name].float_list.value, dtype=np.float32)
    return out


def feature_names(serialized):
    """Names of the features in one serialized example."""
    ex = tf.train.Example()
    ex.ParseFromString(serialized)
    return set(ex.features.feature.keys())


def iter_records(path):
    """Yield the raw serialized records of a TFRecord file, in order."""
    for rec in tf.data.TFRecordDataset(path):
        yield rec.numpy()


def first_record(path):
    """The first serialized record of ``path``, or None if the file holds none."""
    for rec in tf.data.TFRecordDataset(path).take(1):
        return rec.numpy()
    return None


def count_records(path):
    """Number of records in a TFRecord file."""
    return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))


def write_records(path, records):
    """Write an iterable of serialized records to ``path``; returns how many were written."""
    n = 0
    with tf.io.TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
            n += 1
    return n


def read_numpy(path, shape, dtype='complex64', max_records=None):
    """Load a whole file as NumPy arrays ``(x (N, *shape), y (N,))``, like the original's tfrecord2np.

    If records carry ``a``, ``x`` holds ``shape[-1] - 1`` channels and ``a`` one,
    concatenated last.
    """
    xs, ys = [], []
    for i, rec in enumerate(iter_records(path)):
        if max_records is not None and i >= max_records:
            break
        d = decode_example(rec, dtype=dtype)
        if 'a' in d:
            x = np.concatenate([d['x'].reshape(*shape[:-1], shape[-1] - 1),
                                d['a'].reshape(*shape[:-1], 1)], axis=-1)
        else:
            x = d['x'].reshape(shape)
        xs.append(x)
        ys.append(d['y'])
    if not xs:
        return np.zeros((0, *shape), dtype=dtype), np.zeros((0,), dtype=np.int64)
    return np.stack(xs), np.array(ys, dtype=np.int64)
