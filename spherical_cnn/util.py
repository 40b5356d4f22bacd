"""Grid sampling, rotations with pyshtools, TFRecord loading and small helpers.

Maps are laid out ``(azimuth, polar)`` (batch/channel axes around them where
present); pyshtools grids are ``(latitude rows, longitude columns)``, i.e. the
transpose of one of our maps.
"""
import numpy as np


def sph_sample(n, mode="DH"):
    """Sample an n x n grid on the sphere.

    Args:
        n (int): grid size (even).
        mode (str): 'DH' (Driscoll-Healy: polar pi*j/n), 'ours' (polar at cell
            centres pi*(2j+1)/(2n)), 'GLQ' (Gauss-Legendre nodes from pyshtools)
            or 'naive' (both ends included; for plotting).

    Returns:
        (polar, azimuth): 1-D arrays of the colatitudes and the azimuths.
    """
    if int(n) != n or n < 2 or n % 2:
        raise ValueError(f"sph_sample: n must be an even integer >= 2, got {n!r}")
    j = np.arange(n)
    if mode == "DH":
        return j * np.pi / n, j * 2 * np.pi / n
    if mode == "ours":
        return (2 * j + 1) * np.pi / (2 * n), j * 2 * np.pi / n
    if mode == "GLQ":
        from pyshtools.expand import GLQGridCoord
        lat, lon = GLQGridCoord(n - 1)
        return np.radians(90 - lat), np.radians(lon)
    if mode == "naive":
        return np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, n)
    raise ValueError(f"sph_sample: mode must be 'DH', 'ours', 'GLQ' or 'naive', got {mode!r}")


def cell_area_weights(n):
    """Area weight of each polar row of the DH grid, ``sin(polar + pi/(2n))``, shape (n,).

    The sine at the cell centre (half a grid step below the sample); proportional
    to the cell area.  Used by area-weighted pooling and by the weighted average.
    """
    polar, _ = sph_sample(n)
    return np.sin(polar + np.pi / (2 * n))


def sphrot_shtools(f, x, lmax=None, latcols=True):
    """Rotate a map on the sphere by the Euler angles ``x`` (radians) with pyshtools.

    Args:
        f (n, n) real array: map on the DH grid, ``(azimuth, polar)`` when
            ``latcols`` (our layout), else ``(polar, azimuth)`` (pyshtools').
        x: (alpha, beta, gamma) Euler angles, pyshtools' ``SHCoeffs.rotate`` convention.
        lmax: maximum degree of the output expansion (default: the input's).

    Returns:
        The rotated map, same layout as ``f`` (n x n when lmax is None).
    """
    from pyshtools import SHGrid

    f = np.asarray(f)
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"sphrot_shtools: f must be a square (n, n) map, got shape {f.shape}")
    if latcols:
        f = f.T
    coeffs = SHGrid.from_array(f, grid="DH").expand()
    rotated = coeffs.rotate(*x, degrees=False)
    out = rotated.expand(grid="DH", lmax=lmax, extend=False).to_array()
    return out.T if latcols else out


def tfrecord2np(fname, shape, dtype="float32", get_meta=False, max_records=np.inf):
    """Load a TFRecord file of serialized samples as NumPy arrays.

    Each record is a ``tf.train.Example`` with ``x`` (bytes: raw array of ``dtype``),
    ``y`` (int64 label) and optionally ``a`` (bytes: an extra angle channel,
    appended as the last channel), ``fname`` (bytes) and ``idrot`` (int64).

    Args:
        fname: path of the .tfrecord file.
        shape: shape of the stacked X including the channels, e.g. (-1, n, n, c);
            when records carry ``a``, the last entry counts the angle channel too.
        max_records: read at most this many records.

    Returns:
        (X, Y) or (X, Y, meta) with meta a list of {'fname', 'idrot'} dicts.
    """
    import tensorflow as tf

    X, Y, A, meta = [], [], [], []
    for i, record in enumerate(tf.data.TFRecordDataset(fname)):
        if i >= max_records:
            break
        feats = tf.train.Example.FromString(record.numpy()).features.feature
        if "x" not in feats or "y" not in feats:
            raise ValueError(f"{fname}: record {i} lacks the 'x' or 'y' feature")
        X.append(np.frombuffer(feats["x"].bytes_list.value[0], dtype=dtype))
        Y.append(feats["y"].int64_list.value[0])
        if "a" in feats:
            A.append(np.frombuffer(feats["a"].bytes_list.value[0], dtype=dtype))
        if get_meta:
            meta.append({"fname": feats["fname"].bytes_list.value[0] if "fname" in feats else None,
                         "idrot": feats["idrot"].int64_list.value[0] if "idrot" in feats else None})
    if not X:
        raise ValueError(f"{fname}: no records read")
    try:
        if A:
            shape_x = (*shape[:-1], shape[-1] - 1)
            X = np.stack(X).reshape(shape_x)
            A = np.stack(A).reshape((*shape[:-1], 1))
            X = np.concatenate([X, A], axis=-1)
        else:
            X = np.stack(X).reshape(shape)
    except ValueError as e:
        raise ValueError(f"{fname}: cannot reshape {len(X)} records of {X[0].size} {dtype} "
                         f"values to shape {tuple(shape)}: {e}") from None
    Y = np.asarray(Y, dtype=np.int64)
    return (X, Y, meta) if get_meta else (X, Y)


class AttrDict(dict):
    """A dict whose keys are also attributes (``d.key`` is ``d['key']``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__ = self


def shuffle_all(*args):
    """Apply one random permutation (along axis 0) to all arrays."""
    idx = np.random.permutation(len(args[0]))
    return [a[idx] for a in args]
