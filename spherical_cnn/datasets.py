"""Input pipelines: spherical maps stored as TFRecords, read with tf.data.

``load(args)`` dispatches on ``args.dset``:
  ``from_cached_tfrecords``  read ``args.dset_dir/{train,val,test}*.tfrecord``;
  ``synthetic``              the built-in procedural shape dataset: built into
                             ``args.dset_dir`` at ``args.input_res`` if that
                             folder has no records yet, then read the same way.

Records follow the original demo's layout (see ``spherical_cnn.data.records``):
``x`` raw bytes of a ``(res, res, nchannels)`` array in (azimuth, polar,
channels) layout with dtype ``--dtype``, ``y`` the int64 label; an optional
``a`` holds one extra channel (then ``x`` holds ``nchannels - 1``), appended last.

Batches are ``(x, y)`` with ``x`` float32 ``(batch, azimuth, polar, channels)``
and ``y`` int64 ``(batch,)``. With ``--mag_ang`` the complex channels become
real ones as in the original: ``concat([|x|, imag(x / (|x| + 1e-8))], -1)``,
i.e. all magnitudes first, then all sines of the ray/normal angles.

Training reads one shard per epoch as the original: epoch ``e`` reads the
single train shard ``files['train'][e % n_shards]`` (shards sorted by name;
the original cycled through them in glob order). Unlike the original, whose
shuffle of the loaded shard was discarded, so that it trained in file order,
the shard is fully shuffled with seed ``args.seed + e``; ``--no_shuffle``
restores the file order. ``--first_n`` keeps the first n batches of a
training epoch and of the validation split (as the original); ``--test_n``
the first n test batches.
"""
import glob
import os
import sys

import tensorflow as tf

from .data import verify
from .errors import DataError

SPLITS = ('train', 'val', 'test')
CLASSES_FILE = 'classes.txt'


def _flag(args, name, default=None):
    value = getattr(args, name, default)
    return default if value is None else value


def list_record_files(dset_dir):
    """Sorted ``{split: [paths]}`` of ``<split>*.tfrecord`` files in ``dset_dir``."""
    return {s: sorted(glob.glob(os.path.join(glob.escape(dset_dir), f'{s}*.tfrecord')))
            for s in SPLITS}


def read_class_names(dset_dir):
    """Class names from ``dset_dir/classes.txt`` (label = line index), or None if absent."""
    path = os.path.join(dset_dir, CLASSES_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    return names or None


def to_model_input(x, mag_ang):
    """Records' maps ``(..., res, res, nchannels)`` -> float32 model inputs.

    With ``mag_ang`` each complex channel becomes two real channels
    ``[|x|, imag(x / (|x| + 1e-8))]`` (ray length and sine of the ray/normal
    angle for the demo's data), all magnitudes first, then all sines.
    """
    x = tf.convert_to_tensor(x)
    if mag_ang:
        re, im = tf.math.real(x), tf.math.imag(x)
        mag = tf.sqrt(re * re + im * im)
        x = tf.concat([mag, im / (mag + 1e-8)], axis=-1)
    return tf.cast(x, tf.float32)


class SphericalDataset:
    """Record files of one dataset directory plus the flags needed to decode them.

    Attributes:
      input_shape: ``(res, res, channels)`` of the batches fed to the model
        (channels doubled by ``--mag_ang``).
      n_classes: from ``classes.txt`` when present, else ``args.n_classes``.
      class_names: list of names (label = index) or None.
      files: ``{'train'|'val'|'test': sorted list of paths}``.
    """

    def __init__(self, args, dset_dir=None):
        if _flag(args, 'spectral_input', False):
            raise NotImplementedError(
                '--spectral_input is not supported by this reader: records hold spatial maps '
                '(res, res, nchannels); drop --spectral_input')
        self.dset_dir = dset_dir or args.dset_dir
        self.res = int(args.input_res)
        self.nchannels = int(_flag(args, 'nchannels', 1))
        try:
            self.dtype = tf.as_dtype(_flag(args, 'dtype', 'float32'))
        except TypeError as e:
            raise ValueError(f'--dtype {args.dtype!r} is not a TensorFlow dtype') from e
        self.mag_ang = bool(_flag(args, 'mag_ang', False))
        if self.dtype.is_complex and not self.mag_ang:
            raise ValueError(
                f'--dtype {self.dtype.name} gives complex inputs, which the model does not take '
                'directly: add --mag_ang to split each complex value into [magnitude, sin(angle)] channels')
        if self.mag_ang and not self.dtype.is_complex:
            raise ValueError(f'--mag_ang needs a complex --dtype (e.g. complex64), got --dtype {self.dtype.name}')
        self.batch_size = int(_flag(args, 'train_bsize', 128))
        self.first_n = _flag(args, 'first_n', None)
        self.test_n = int(_flag(args, 'test_n', 0))
        self.round_batches = bool(_flag(args, 'round_batches', False))
        self.shuffle = not _flag(args, 'no_shuffle', False)
        self.seed = int(_flag(args, 'seed', 0))
        self.skip_val = bool(_flag(args, 'skip_val', False))

        if not os.path.isdir(self.dset_dir):
            raise FileNotFoundError(f'--dset_dir {self.dset_dir!r} does not exist or is not a directory')
        self.files = list_record_files(self.dset_dir)
        if not any(self.files.values()):
            raise FileNotFoundError(
                f'--dset_dir {self.dset_dir!r}: no train*.tfrecord, val*.tfrecord or test*.tfrecord found')
        required = ['train', 'test'] + ([] if self.skip_val else ['val'])
        missing = [s for s in required if not self.files[s]]
        if missing:
            hint = ' (or pass --skip_val to train without validation)' if missing == ['val'] else ''
            raise FileNotFoundError(
                f'--dset_dir {self.dset_dir!r}: no {", ".join(s + "*.tfrecord" for s in missing)} found{hint}')
        self.class_names = read_class_names(self.dset_dir)
        self.n_classes = len(self.class_names) if self.class_names else int(_flag(args, 'n_classes', 10))
        ch = 2 * self.nchannels if self.mag_ang else self.nchannels
        self.input_shape = (self.res, self.res, ch)
        self.spec = verify.RecordSpec(res=self.res, nchannels=self.nchannels, dtype=self.dtype.name,
                                      n_classes=int(_flag(args, 'n_classes', self.n_classes)))
        self.manifest = verify.check_manifest(self.dset_dir, self.spec)  # None without manifest.json
        self.verified = self._verify(_flag(args, 'verify_progress', sys.stderr.isatty()))

    def _verify(self, progress):
        """Verify every record of every split (cached per file); ``{path: FileSummary}``."""
        paths = [p for s in SPLITS for p in self.files[s]]
        summaries = verify.verify_files(paths, self.spec, progress=progress,
                                        label='verifying {}'.format(self.dset_dir))
        self._counts = {p: s.records for p, s in summaries.items()}
        self._has_a = {p: s.has_a for p, s in summaries.items()}
        empty = [p for p in self.files['train'] if not summaries[p].records]
        for split in ('val', 'test'):
            if self.files[split] and not sum(summaries[p].records for p in self.files[split]):
                if not (split == 'val' and self.skip_val):
                    empty += self.files[split]
        if empty:
            raise DataError(f'--dset_dir {self.dset_dir!r}: {", ".join(map(os.path.basename, empty))} '
                            'hold(s) no record (an interrupted or failed build?)', path=empty[0])
        return summaries

    # --- decoding ---------------------------------------------------------------

    def _parser(self, path):
        has_a = self._has_a[path]
        res, dtype = self.res, self.dtype
        nx = self.nchannels - 1 if has_a else self.nchannels
        spec = {'x': tf.io.FixedLenFeature([], tf.string), 'y': tf.io.FixedLenFeature([], tf.int64)}
        if has_a:
            spec['a'] = tf.io.FixedLenFeature([], tf.string)

        def parse(index, serialized):
            ex = tf.io.parse_single_example(serialized, spec)
            x = tf.io.decode_raw(ex['x'], dtype)
            x = tf.reshape(x, (res, res, nx))
            if has_a:
                a = tf.io.decode_raw(ex['a'], dtype)
                x = tf.concat([x, tf.reshape(a, (res, res, 1))], axis=-1)
            return self._to_model_input(x), ex['y']

        return parse

    def _to_model_input(self, x):
        return to_model_input(x, self.mag_ang)

    def _file_dataset(self, path):
        return tf.data.TFRecordDataset(path).enumerate()

    def _count(self, path):
        if path not in self._counts:
            from .data import records
            self._counts[path] = records.count_records(path)
        return self._counts[path]

    # --- public -----------------------------------------------------------------

    def num_examples(self, split):
        """Number of records in all files of ``split`` (for 'train': all shards together)."""
        return sum(self._count(p) for p in self._split_files(split))

    def train_shard(self, epoch):
        """Path of the train shard read at ``epoch`` (shards are cycled)."""
        shards = self.files['train']
        return shards[epoch % len(shards)]

    def train_size(self, epoch):
        """Number of examples in the shard read at ``epoch``."""
        return self._count(self.train_shard(epoch))

    def _split_files(self, split):
        if split not in SPLITS:
            raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')
        paths = self.files[split]
        if not paths:
            hint = ' (validation is skipped with --skip_val)' if split == 'val' else ''
            raise ValueError(f'--dset_dir {self.dset_dir!r} has no {split}*.tfrecord files{hint}')
        return paths

    def _train_order(self, epoch):
        """``(index, serialized)`` of the shard of ``epoch`` in the order it is trained on."""
        path = self.train_shard(epoch)
        ds = self._file_dataset(path)
        if self.shuffle:
            ds = ds.shuffle(max(1, self._count(path)), seed=self.seed + int(epoch),
                            reshuffle_each_iteration=False)
        return ds

    def batch_records(self, epoch, step):
        """Names of the records in training batch ``step`` of ``epoch``: ``fname`` where the
        records carry it, else ``<file>#<index>`` (used to report a bad batch)."""
        path = self.train_shard(epoch)
        spec = {'fname': tf.io.FixedLenFeature([], tf.string, default_value='')}
        names = []
        batches = self._train_order(epoch).batch(self.batch_size).skip(int(step)).take(1)
        for index, serialized in batches:
            fnames = tf.io.parse_example(serialized, spec)['fname'].numpy()
            for i, f in zip(index.numpy(), fnames):
                names.append(f.decode('utf-8', 'replace') or f'{os.path.basename(path)}#{i}')
        return names

    def train(self, epoch):
        """Batches of the train shard for ``epoch``, shuffled with seed ``seed + epoch``.

        In file order with ``--no_shuffle``; the last partial batch dropped with
        ``--round_batches``; the first ``--first_n`` batches only.
        """
        path = self.train_shard(epoch)
        ds = self._train_order(epoch).map(self._parser(path), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(self.batch_size, drop_remainder=self.round_batches)
        if self.first_n:
            ds = ds.take(int(self.first_n))
        return ds.prefetch(tf.data.AUTOTUNE)

    def eval(self, split):
        """Batches of all files of ``split`` ('val' or 'test') in order, not shuffled.

        Partial last batch kept (also with ``--round_batches``); 'val' keeps the
        first ``--first_n`` batches, 'test' the first ``--test_n`` (0: all).
        """
        return self._eval_batches(split, self._parser).prefetch(tf.data.AUTOTUNE)

    def record_keys(self, split):
        """``(fname, idrot)`` of every record that :meth:`eval` yields for ``split``, in that order.

        ``fname`` (str, the mesh) is '' and ``idrot`` (the rotation index) -1 where a
        record does not carry them. Returns two lists.
        """
        spec = {'fname': tf.io.FixedLenFeature([], tf.string, default_value=''),
                'idrot': tf.io.FixedLenFeature([], tf.int64, default_value=-1)}

        def keys_parser(path):
            def parse(index, serialized):
                ex = tf.io.parse_single_example(serialized, spec)
                return ex['fname'], ex['idrot']
            return parse

        fnames, idrots = [], []
        for f, r in self._eval_batches(split, keys_parser):
            fnames += [v.decode('utf-8', 'replace') for v in f.numpy()]
            idrots += [int(v) for v in r.numpy()]
        return fnames, idrots

    def _eval_batches(self, split, parser):
        """Batches of ``parser(path)`` applied to the records of ``split``, in file order,
        cut to ``--test_n`` / ``--first_n`` batches (see :meth:`eval`)."""
        if split not in ('val', 'test'):
            raise ValueError(f'eval() takes split "val" or "test", got {split!r}')
        ds = None
        for path in self._split_files(split):
            d = self._file_dataset(path).map(parser(path), num_parallel_calls=tf.data.AUTOTUNE)
            ds = d if ds is None else ds.concatenate(d)
        ds = ds.batch(self.batch_size)
        if split == 'test' and self.test_n > 0:
            ds = ds.take(self.test_n)
        if split == 'val' and self.first_n:
            ds = ds.take(int(self.first_n))
        return ds

    def __repr__(self):
        counts = {s: len(p) for s, p in self.files.items()}
        return (f'SphericalDataset({self.dset_dir!r}, input_shape={self.input_shape}, '
                f'n_classes={self.n_classes}, shards={counts})')


def from_cached_tfrecords(args):
    """Read ``args.dset_dir/{train,val,test}*.tfrecord`` (see module docstring)."""
    if not _flag(args, 'dset_dir', None):
        raise ValueError('--dset_dir is required for --dset from_cached_tfrecords')
    return SphericalDataset(args)


def synthetic(args):
    """The built-in synthetic shape dataset, built into ``args.dset_dir`` on first use.

    If ``args.dset_dir`` is missing or empty, the default dataset
    (``spherical_cnn.data.synthetic``) is generated there at ``args.input_res``
    (this prints progress), then read like ``from_cached_tfrecords``. A
    non-empty folder without records is left alone (error).
    """
    dset_dir = _flag(args, 'dset_dir', None)
    if not dset_dir:
        raise ValueError('--dset_dir is required for --dset synthetic (the dataset is built there)')
    has_records = os.path.isdir(dset_dir) and any(list_record_files(dset_dir).values())
    if not has_records:
        if os.path.isdir(dset_dir) and os.listdir(dset_dir):
            raise FileExistsError(
                f'--dset_dir {dset_dir!r} is not empty but holds no *.tfrecord files; '
                'give an empty or new folder to build the synthetic dataset in')
        dtype = str(tf.as_dtype(_flag(args, 'dtype', 'complex64')).name)
        if dtype != 'complex64' or int(_flag(args, 'nchannels', 1)) != 1:
            raise ValueError('the synthetic dataset holds complex64 maps with one channel: use '
                             f'--dtype complex64 --nchannels 1 --mag_ang (got --dtype {dtype} '
                             f'--nchannels {_flag(args, "nchannels", 1)})')
        from .data import builder
        print(f'building the synthetic dataset in {dset_dir} at --input_res {args.input_res} ...', flush=True)
        builder.build_synthetic(dset_dir, input_res=int(args.input_res),
                                workers=_flag(args, 'workers', None), progress=True, out_flag='--dset_dir')
    return SphericalDataset(args, dset_dir)


def load(args):
    """Dataset named by ``args.dset``: 'from_cached_tfrecords' or 'synthetic'."""
    loaders = {'from_cached_tfrecords': from_cached_tfrecords, 'synthetic': synthetic}
    name = os.path.splitext(str(args.dset))[0]
    if name not in loaders:
        raise ValueError(f'unknown --dset {args.dset!r}; expected one of {sorted(loaders)}')
    return loaders[name](args)
