"""The one place that verifies record files before they are trusted.

Every record of every file is checked against the flags that will read it:

- framing: the file reads to its end (a truncated file or a corrupted record
  is reported with the index of the first record that could not be read);
- fields: ``x`` and ``y`` present; ``x`` (and ``a`` when the file carries it)
  has exactly ``res * res * channels * itemsize`` bytes for the flags;
- labels: ``0 <= y < n_classes``;
- values: all finite (real and imaginary parts for complex dtypes).

The first problem raises :class:`~spherical_cnn.errors.DataError` naming the
file, the record index (and ``fname`` where the record carries one) and what
is wrong. A verified file is remembered by (path, size, modification time,
flags) in a small JSON cache, so repeated runs do not read it again.

Layout of ``x``: ``(res, res, nchannels)`` = (azimuth, polar, channels), raw
bytes in C order, dtype ``--dtype``; see :mod:`spherical_cnn.data.records`.
"""
import dataclasses
import hashlib
import json
import os
import re
import struct
import sys

import numpy as np

from ..errors import DataError

CACHE_ENV = "SPHERICAL_CNN_CACHE"
CACHE_VERSION = 1
_BATCH = 256
MISSING_LABEL = -(2 ** 62)


def cache_path():
    """File remembering verified record files (``$SPHERICAL_CNN_CACHE`` or ``~/.cache/spherical_cnn``)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "spherical_cnn")
    return os.path.join(root, "verified-records.json")


@dataclasses.dataclass(frozen=True)
class RecordSpec:
    """What a record must look like for the flags that read it.

    ``nchannels`` counts the optional ``a`` channel (then ``x`` holds
    ``nchannels - 1`` channels). ``n_classes=None`` skips the label check.
    """
    res: int
    nchannels: int = 1
    dtype: str = "float32"
    n_classes: int = None

    @classmethod
    def from_args(cls, args, n_classes=None):
        """Spec from training flags (``--input_res``, ``--nchannels``, ``--dtype``, ``--n_classes``)."""
        dtype = np.dtype(str(getattr(args, "dtype", "float32") or "float32")).name
        return cls(res=int(args.input_res), nchannels=int(getattr(args, "nchannels", 1) or 1),
                   dtype=dtype, n_classes=n_classes if n_classes is not None
                   else getattr(args, "n_classes", None))

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    def x_bytes(self, has_a):
        return self.res * self.res * (self.nchannels - (1 if has_a else 0)) * self.itemsize

    @property
    def a_bytes(self):
        return self.res * self.res * self.itemsize

    def flags_text(self):
        return "--input_res {} --nchannels {} --dtype {}".format(self.res, self.nchannels, self.dtype)

    def key(self):
        return "{}|{}|{}|{}".format(self.res, self.nchannels, self.dtype, self.n_classes)

    def decode(self, raw, path, index):
        """One serialized record -> dict ``x`` (res, res, nchannels) in the record dtype, ``y``,
        ``fname``, ``idrot`` (None when absent); DataError if it does not fit this spec."""
        from . import records
        try:
            d = records.decode_example(raw, dtype=self.dtype)
        except Exception as err:  # protobuf parse errors have no common base class
            raise _error(path, index, "not a tf.train.Example ({})".format(err))
        where = dict(path=path, index=index, fname=d.get("fname"))
        has_a = "a" in d
        nbytes = d["x"].nbytes
        if nbytes != self.x_bytes(has_a):
            raise _error(msg=_size_text("x", nbytes, self.x_bytes(has_a), self), **where)
        x = d["x"].reshape(self.res, self.res, -1)
        if has_a:
            if d["a"].nbytes != self.a_bytes:
                raise _error(msg=_size_text("a", d["a"].nbytes, self.a_bytes, self), **where)
            x = np.concatenate([x, d["a"].reshape(self.res, self.res, 1)], axis=-1)
        if not np.all(np.isfinite(x)):
            raise _error(msg="{} non-finite value(s) in x".format(int(np.sum(~np.isfinite(x)))), **where)
        y = d["y"]
        if self.n_classes is not None and not 0 <= y < self.n_classes:
            raise _error(msg="label y={} outside [0, {}) for --n_classes {}".format(
                y, self.n_classes, self.n_classes), **where)
        return {"x": x, "y": y, "fname": d.get("fname"), "idrot": d.get("idrot")}


def _size_text(name, found, expected, spec):
    return "{} has {} bytes, expected {} for {}".format(name, found, expected, spec.flags_text())


def _error(path, index, msg, fname=None):
    what = "{} record {}".format(path, index)
    if fname:
        what += " ({})".format(fname)
    return DataError("{}: {}".format(what, msg), path=path, record=index)


def _tf_message(err):
    """The useful part of a TensorFlow error message (without op and function-node noise)."""
    text = err.message.splitlines()[0] if getattr(err, "message", None) else str(err)
    text = re.sub(r"\{\{[^}]*\}\}", "", text)
    text = re.sub(r"\[Op:[^\]]*\].*$", "", text)
    return " ".join(text.split())


def check_framing(path):
    """Number of records in ``path`` from the TFRecord framing alone; DataError if it is broken.

    A TFRecord file is a sequence of ``[uint64 length][uint32 crc][data][uint32 crc]``;
    this walks the length fields (reading 12 bytes per record), so a truncated
    file or a damaged length is found without reading the data.
    """
    size = os.path.getsize(path)
    index, offset = 0, 0
    with open(path, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise _error(path, index, "truncated file: record header cut off at byte {} of {}"
                             .format(offset, size))
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + 12 + length + 4
            if end > size:
                raise _error(path, index, "truncated or corrupted file: record at byte {} claims {} "
                             "bytes but the file ends at byte {}".format(offset, length, size))
            offset = end
            f.seek(offset)
            index += 1
    return index


def iter_raw_records(path):
    """Yield ``(index, serialized record)`` of a TFRecord file; DataError on a broken file."""
    import tensorflow as tf
    if not os.path.isfile(path):
        raise DataError("{}: no such record file".format(path), path=path)
    index = 0
    it = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            rec = next(it)
        except StopIteration:
            check_framing(path)  # TensorFlow stops silently at a truncated last record
            return
        except tf.errors.DataLossError as err:
            raise _error(path, index, "cannot be read: truncated or corrupted file ({})".format(
                _tf_message(err)))
        yield index, rec.numpy()
        index += 1


@dataclasses.dataclass
class FileSummary:
    """What verification found in one file."""
    path: str
    records: int = 0
    has_a: bool = False
    label_counts: dict = dataclasses.field(default_factory=dict)
    abs_min: float = float("inf")
    abs_max: float = 0.0
    fname_field: bool = False

    def to_json(self):
        d = dataclasses.asdict(self)
        d["label_counts"] = {str(k): v for k, v in self.label_counts.items()}
        if not self.records:
            d["abs_min"] = None
        return d

    @classmethod
    def from_json(cls, d):
        d = dict(d)
        d["label_counts"] = {int(k): v for k, v in d["label_counts"].items()}
        d["abs_min"] = float("inf") if d["abs_min"] is None else d["abs_min"]
        return cls(**d)


def _batch_checker(spec, has_a):
    """tf.data map function: a batch of serialized records -> per-record check results.

    Vectorised over the batch (one parse and one decode per batch, no Python per
    record): byte lengths, finiteness and |value| range of ``x`` (and ``a``), labels.
    """
    import tensorflow as tf
    dtype = tf.as_dtype(spec.dtype)
    feats = {"x": tf.io.FixedLenFeature([], tf.string, default_value=""),
             "y": tf.io.FixedLenFeature([], tf.int64, default_value=MISSING_LABEL),
             "a": tf.io.FixedLenFeature([], tf.string, default_value="")}

    # complex values are decoded as their (real, imag) float pairs: decode_raw has no complex
    # fixed_length mode, and finiteness and magnitude need only the parts
    parts = {tf.complex64: tf.float32, tf.complex128: tf.float64}.get(dtype, dtype)

    def values(raw, n):
        length = tf.strings.length(raw)
        v = tf.io.decode_raw(raw, parts, fixed_length=n)  # (batch, n / itemsize), zero padded
        if parts.is_floating:
            finite = tf.math.is_finite(v)
        else:
            finite = tf.ones(tf.shape(v), tf.bool)
        v = tf.cast(tf.where(finite, v, tf.zeros_like(v)), tf.float32)
        if dtype.is_complex:
            v = tf.reshape(v, (tf.shape(v)[0], -1, 2))
            mag = tf.sqrt(tf.reduce_sum(tf.square(v / 2.0 ** 64), axis=-1)) * 2.0 ** 64  # no overflow
        else:
            mag = tf.abs(v)
        return (tf.equal(length, n), tf.reduce_all(finite, axis=1), tf.reduce_min(mag, axis=1),
                tf.reduce_max(mag, axis=1), length)

    def check(serialized):
        ex = tf.io.parse_example(serialized, feats)
        x_ok, x_fin, lo, hi, x_n = values(ex["x"], spec.x_bytes(has_a))
        out = {"x_ok": x_ok, "x_finite": x_fin, "min": lo, "max": hi, "x_len": x_n, "y": ex["y"]}
        if has_a:
            a_ok, a_fin, alo, ahi, a_n = values(ex["a"], spec.a_bytes)
            out.update(a_ok=a_ok, a_finite=a_fin, a_len=a_n)
            out["min"], out["max"] = tf.minimum(lo, alo), tf.maximum(hi, ahi)
        return out
    return check


def _unparsable_record(path, start):
    """Index of the first record from ``start`` on that is not a tf.train.Example."""
    from . import records
    for index, raw in iter_raw_records(path):
        if index >= start:
            try:
                records.feature_names(raw)
            except Exception:  # protobuf's DecodeError has no stable import path
                return index
    return start


def _first_problem(path, start, out, spec, has_a):
    """Index and message of the first bad record in one batch of check results, or None."""
    bad = ~out["x_ok"] | ~out["x_finite"]
    if has_a:
        bad |= ~out["a_ok"] | ~out["a_finite"]
    y = out["y"]
    missing_y = y == MISSING_LABEL
    bad |= missing_y
    if spec.n_classes is not None:
        bad |= (y < 0) | (y >= spec.n_classes)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    if not out["x_ok"][i]:
        n = int(out["x_len"][i])
        msg = "missing feature 'x'" if n == 0 else _size_text("x", n, spec.x_bytes(has_a), spec)
    elif has_a and not out["a_ok"][i]:
        msg = _size_text("a", int(out["a_len"][i]), spec.a_bytes, spec)
    elif not out["x_finite"][i] or (has_a and not out["a_finite"][i]):
        msg = "non-finite value (NaN or Inf) in x"
    elif missing_y[i]:
        msg = "missing label 'y'"
    else:
        msg = "label y={} outside [0, {}) for --n_classes {}".format(int(y[i]), spec.n_classes,
                                                                     spec.n_classes)
    return start + i, msg


def _fname_of(path, index):
    """``fname`` of record ``index`` where it carries one (None for a record too damaged to
    say: the message then names the file and the index only)."""
    from . import records
    for i, raw in iter_raw_records(path):
        if i == index:
            try:
                names = records.feature_names(raw)
                return records.decode_example(raw).get("fname") if {"x", "y"} <= names else None
            except Exception:  # noqa: B902 - protobuf's DecodeError has no stable import path
                return None
    return None


def _inspect_first(path, spec):
    """(has_a, has_fname) from the first record; DataError if it has no x/y or has_a with 1 channel."""
    from . import records
    for index, raw in iter_raw_records(path):
        try:
            names = records.feature_names(raw)
        except Exception as err:
            raise _error(path, index, "not a tf.train.Example ({})".format(err))
        for key in ("x", "y"):
            if key not in names:
                raise _error(path, 0, "missing feature {!r}".format(key))
        has_a = "a" in names
        if has_a and spec.nchannels < 2:
            raise _error(path, 0, 'has an extra channel "a", so --nchannels must count it (>= 2), '
                                  'got --nchannels {}'.format(spec.nchannels))
        return has_a, "fname" in names
    return False, False


def verify_file(path, spec, progress=None):
    """Check every record of ``path`` against ``spec``; return a FileSummary or raise DataError.

    ``progress``: optional callable(n_records) called as records are read.
    """
    import tensorflow as tf
    has_a, has_fname = _inspect_first(path, spec)
    summary = FileSummary(path=path, has_a=has_a, fname_field=has_fname)
    ds = tf.data.TFRecordDataset(path, buffer_size=1 << 22)
    ds = ds.batch(_BATCH).map(_batch_checker(spec, has_a), num_parallel_calls=tf.data.AUTOTUNE)
    it = iter(ds.prefetch(2))
    start = 0
    while True:
        try:
            out = next(it)
        except StopIteration:
            check_framing(path)
            break
        except tf.errors.DataLossError as err:
            # the batch that failed starts at `start`; find the first unreadable record
            n_ok = sum(1 for _ in _readable_prefix(path))
            raise _error(path, n_ok, "cannot be read: truncated or corrupted record ({})".format(_tf_message(err)))
        except tf.errors.InvalidArgumentError as err:
            raise _error(path, _unparsable_record(path, start), "not a valid tf.train.Example ({})"
                         .format(_tf_message(err)))
        out = {k: v.numpy() for k, v in out.items()}
        if len(out["y"]) < _BATCH:
            check_framing(path)  # last batch: TensorFlow stops silently at a truncated record
        problem = _first_problem(path, start, out, spec, has_a)
        if problem is not None:
            index, msg = problem
            raise _error(path, index, msg, fname=_fname_of(path, index) if has_fname else None)
        for label, count in zip(*np.unique(out["y"], return_counts=True)):
            summary.label_counts[int(label)] = summary.label_counts.get(int(label), 0) + int(count)
        n = len(out["y"])
        summary.records += n
        summary.abs_min = min(summary.abs_min, float(out["min"].min()))
        summary.abs_max = max(summary.abs_max, float(out["max"].max()))
        start += n
        if progress is not None:
            progress(n)
    return summary


def _readable_prefix(path):
    import tensorflow as tf
    it = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            yield next(it)
        except (StopIteration, tf.errors.DataLossError):
            return


def _cache_warning(path, why):
    """One line on stderr: the cache is ignored and rebuilt (records are verified again)."""
    import sys
    print("warning: verification cache {} is {}; ignoring it and verifying again (the cache is "
          "rebuilt)".format(path, why), file=sys.stderr)


class VerifiedCache:
    """Remembers files verified with a given spec, keyed by (real path, size, mtime)."""

    def __init__(self, path=None):
        self.path = path or cache_path()
        self._data = None

    def _load(self):
        if self._data is None:
            data = {}
            try:
                with open(self.path, "rb") as f:
                    data = json.loads(f.read().decode("utf-8"))
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError too
                _cache_warning(self.path, "unreadable ({})".format(" ".join(str(err).split())[:120]))
                data = {}
            if not (isinstance(data, dict) and isinstance(data.get("files", {}), dict)):
                _cache_warning(self.path, "not a cache of this program (a JSON {})".format(
                    type(data).__name__ if data is not None else "null"))
                data = {}
            self._data = data if data.get("version") == CACHE_VERSION else {}
            self._data.setdefault("version", CACHE_VERSION)
            self._data.setdefault("files", {})
        return self._data

    @staticmethod
    def _key(path, spec):
        st = os.stat(path)
        text = "{}|{}|{}|{}".format(os.path.realpath(path), st.st_size, st.st_mtime_ns, spec.key())
        return hashlib.sha1(text.encode()).hexdigest()

    def get(self, path, spec):
        entry = self._load()["files"].get(self._key(path, spec))
        if entry is None:
            return None
        try:
            return FileSummary.from_json(entry)
        except (TypeError, ValueError, KeyError, AttributeError):
            _cache_warning(self.path, "an entry of the wrong shape")
            return None  # verified again, and the entry rewritten

    def put(self, path, spec, summary):
        self._load()["files"][self._key(path, spec)] = summary.to_json()

    def save(self):
        """Write the cache atomically; a read-only cache location is not an error."""
        if self._data is None:
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = "{}.{}.tmp".format(self.path, os.getpid())
            with open(tmp, "w") as f:
                json.dump(self._data, f)
            os.replace(tmp, self.path)
        except OSError:
            pass


def verify_files(paths, spec, use_cache=True, progress=False, label=None):
    """Verify several files; return ``{path: FileSummary}`` (raises DataError on the first problem).

    Files already verified (same size, mtime and spec) are taken from the cache.
    ``progress``: show a tqdm bar over the records of the files still to check.
    """
    cache = VerifiedCache() if use_cache else None
    out, todo = {}, []
    for p in paths:
        hit = cache.get(p, spec) if cache else None
        if hit is not None:
            out[p] = hit
        else:
            todo.append(p)
    if todo:
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=sum(os.path.getsize(p) for p in todo), unit="B", unit_scale=True,
                       desc=label or "verifying records", leave=False, file=sys.stderr,
                       dynamic_ncols=True)
        try:
            for p in todo:
                size, done = os.path.getsize(p), [0]

                def tick(n, size=size, done=done, approx=spec.x_bytes(False) + 64):
                    step = min(n * approx, size - done[0])
                    done[0] += step
                    bar.update(step)
                out[p] = verify_file(p, spec, progress=tick if bar is not None else None)
                if bar is not None:
                    bar.update(size - done[0])
                if cache:
                    cache.put(p, spec, out[p])
        finally:
            if bar is not None:
                bar.close()
            if cache:
                cache.save()
    return {p: out[p] for p in paths}


def sha256_file(path):
    """The SHA-256 of a file's bytes (hex), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_manifest(dset_dir, spec):
    """Compare ``dset_dir/manifest.json`` (if any) with the flags; DataError on a mismatch."""
    path = os.path.join(dset_dir, "manifest.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            made = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError("{}: unreadable manifest ({})".format(path, err), path=path)
    checks = [("input_res", spec.res, int), ("nchannels", spec.nchannels, int),
              ("dtype", spec.dtype, lambda v: np.dtype(str(v)).name)]
    wrong = [(key, made[key], given) for key, given, conv in checks
             if made.get(key) is not None and conv(made[key]) != given]
    if wrong:
        raise DataError("{} was built with {} (says {}) but {} was given: the records would be read "
                        "with the wrong layout".format(
                            dset_dir, " ".join("--{} {}".format(k, m) for k, m, _ in wrong), path,
                            " ".join("--{} {}".format(k, g) for k, _, g in wrong)), path=path)
    return made


def summarize(summaries):
    """Totals of a split: records, files, label counts, |value| range."""
    total = {"files": len(summaries), "records": 0, "labels": {}, "abs_min": float("inf"),
             "abs_max": 0.0}
    for s in summaries:
        total["records"] += s.records
        for k, v in s.label_counts.items():
            total["labels"][k] = total["labels"].get(k, 0) + v
        total["abs_min"] = min(total["abs_min"], s.abs_min)
        total["abs_max"] = max(total["abs_max"], s.abs_max)
    return total
