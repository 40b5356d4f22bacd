"""Reader for the original ModelNet10-SO3 release (Liao et al. 2019), for the S^3 task.

Release layout (``DIR`` = the extracted ``ModelNet10-SO3`` folder):
  DIR/train_100V.Rawjpg.lmdb   100 random SO(3) views per training CAD model
  DIR/train_20V.Rawjpg.lmdb     20 views per training model
  DIR/test_20V.Rawjpg.lmdb      20 views per test model (the paper tests on a random
                                20 % of them)
Each folder is an LMDB environment whose keys are view ids, UTF-8,
``<category>_<model number>.v<view number>`` (e.g. ``night_stand_0201.v017``; the
category is the part before the last ``_``), and whose values are the raw bytes of a
colour JPEG render on a white background. Beside the LMDB files, in the same folder,
``viewID2quat.pkl`` maps each view id to its quaternion (w, x, y, z), a NumPy array,
pickled by Python 2; it is read with the restricted unpickler of
``spherical_regression.safe_pickle`` (never ``pickle.load``). The pickle's keys define
the records; each must be in the LMDB.

Arrays returned by :func:`load_split` (the same keys as ``rotation_data``):
  images      (n, size, size, 3) uint8 RGB (or (n, size, size, 1) luminance with
              ``gray``), resized from the stored JPEG with area averaging; uint8 keeps
              the 100-view training set (~4,000 models) at 64x64 RGB at about 5 GB
              instead of 4x that as float32; ``tasks.rotation`` scales batches to [0, 1]
  quaternions (n, 4) float32, unit, flipped as the original: q if w > 0 else -q
              (so w >= 0, and a zero w flips too)
  class_ids   (n,) int32, index into ``class_names``
  mesh_ids    (n,) int32, index of the CAD model (category, model number) in the split
  view_ids    list of the n view ids, sorted
  class_names the 10 categories in the release's order (:data:`CATEGORIES`), or the
              selected ``classes`` in that order

Errors in the data (missing folder or file, a pickle that is not a dict of view id
-> 4-vector, an unknown category, a view id absent from the LMDB, an undecodable
JPEG) raise ``spherical_cnn.errors.DataError`` naming the file or folder and the view
id. Reading LMDB needs the ``lmdb`` package (in requirements.txt).
"""
import os
import re

import numpy as np

from spherical_cnn import errors

from .. import safe_pickle
from .rotation_data import select_classes

CATEGORIES = ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
              "table", "toilet")
SETS = {"train": "train_100V.Rawjpg.lmdb", "train_100V": "train_100V.Rawjpg.lmdb",
        "train_20V": "train_20V.Rawjpg.lmdb", "test": "test_20V.Rawjpg.lmdb",
        "test_20V": "test_20V.Rawjpg.lmdb"}
QUAT_FILE = "viewID2quat.pkl"
_VIEW_ID = re.compile(r"^(?P<category>.+)_(?P<model>[^_.]+)\.v(?P<view>\d+)$")


def parse_view_id(view_id):
    """``'night_stand_0201.v017'`` -> ('night_stand', '0201', 17); ValueError if malformed."""
    m = _VIEW_ID.match(view_id)
    if m is None:
        raise ValueError(f"view id {view_id!r} is not <category>_<model>.v<view>")
    return m.group("category"), m.group("model"), int(m.group("view"))


def canonical_original(q):
    """The original's flip: q if w > 0 else -q (w == 0 flips too); ``(..., 4)``."""
    q = np.asarray(q)
    return np.where(q[..., :1] > 0, q, -q)


def load_view_quaternions(path):
    """``viewID2quat.pkl`` -> {view id (str): quaternion (4,) float64 (w, x, y, z), as
    stored}, through the restricted unpickler. Raises DataError naming ``path``."""
    obj = safe_pickle.load(path)
    if not isinstance(obj, dict):
        raise errors.DataError(f"{path}: expected a dict view id -> quaternion, got "
                               f"{type(obj).__name__}", path=path)
    out = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not isinstance(key, str):
            raise errors.DataError(f"{path}: view ids must be strings, got {key!r}", path=path)
        try:
            q = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            q = None
        if q is None or q.shape != (4,) or not np.all(np.isfinite(q)) or \
                not 0.5 < np.linalg.norm(q) < 1.5:
            raise errors.DataError(f"{path}: view {key!r}: expected a unit quaternion of 4 "
                                   f"finite numbers, got {value!r}", path=path)
        out[key] = q
    if not out:
        raise errors.DataError(f"{path}: no views", path=path)
    return out


def _open_lmdb(folder):
    try:
        import lmdb
    except ImportError:
        raise errors.UserError("reading ModelNet10-SO3 needs the lmdb package "
                               "(pip install lmdb==3.0.0, pinned in requirements.txt)") from None
    if not os.path.isdir(folder):
        raise errors.DataError(f"{folder}: no such LMDB folder", path=folder)
    try:
        return lmdb.open(folder, readonly=True, lock=False, readahead=False, subdir=True,
                         max_readers=4)
    except lmdb.Error as e:
        raise errors.DataError(f"{folder}: not a readable LMDB environment ({e})",
                               path=folder) from None


def _decode_many(blobs, size, gray, folder, view_ids):
    """Decode JPEG bytes and resize to ``(size, size)`` with area averaging -> uint8."""
    import tensorflow as tf
    channels = 1 if gray else 3

    def one(blob):
        img = tf.io.decode_jpeg(blob, channels=3)
        img = tf.image.resize(tf.cast(img, tf.float32), (size, size), method="area",
                              antialias=True)
        if gray:
            img = tf.image.rgb_to_grayscale(img)
        return tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)

    try:
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(blobs, dtype=tf.string))
        ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
        return np.concatenate([b.numpy() for b in ds], axis=0).reshape(-1, size, size, channels)
    except tf.errors.InvalidArgumentError:
        pass
    for blob, view_id in zip(blobs, view_ids):  # locate the undecodable one
        try:
            one(tf.constant(blob))
        except tf.errors.InvalidArgumentError as e:
            raise errors.DataError(f"{folder}: view {view_id!r}: not a decodable JPEG "
                                   f"({e.message.splitlines()[0]})", path=folder) from None
    raise errors.DataError(f"{folder}: JPEG decoding failed", path=folder)  # pragma: no cover


def load_split(data_dir, split="train", size=64, classes=None, sampling=1.0, max_views=None,
               gray=False, seed=0, chunk=4096, verbose=False):
    """Read one LMDB folder of the release (module docstring).

    Args:
      data_dir: the ``ModelNet10-SO3`` folder, or directly a ``*.Rawjpg.lmdb`` folder.
      split: 'train' (= 'train_100V'), 'train_20V' or 'test' (= 'test_20V'); ignored
        when ``data_dir`` is itself an LMDB folder.
      size: output image size (pixels, square).
      classes: category names to keep (None: all), returned in :data:`CATEGORIES` order.
      sampling: keep this random fraction of the views (seeded by ``seed``; the paper
        tests on 0.2 of the test views).
      max_views: keep at most this many views per CAD model (the lowest view numbers).
      gray: one luminance channel instead of RGB.
    """
    folder = data_dir
    if not os.path.exists(os.path.join(folder, QUAT_FILE)) or not folder.rstrip("/").endswith(
            ".lmdb"):
        if split not in SETS:
            raise ValueError(f"split must be one of {sorted(SETS)}, got {split!r}")
        folder = os.path.join(data_dir, SETS[split])
    if not os.path.isdir(folder):
        raise errors.DataError(f"{folder}: no such folder (expected the ModelNet10-SO3 "
                               f"release: {', '.join(sorted(set(SETS.values())))})",
                               path=folder)
    if not 0.0 < sampling <= 1.0:
        raise ValueError(f"sampling must be in (0, 1], got {sampling}")
    class_names = select_classes(CATEGORIES, classes, source="ModelNet10-SO3")
    quat_path = os.path.join(folder, QUAT_FILE)
    quats = load_view_quaternions(quat_path)

    records = []
    for view_id in sorted(quats):
        try:
            category, model, view = parse_view_id(view_id)
        except ValueError as e:
            raise errors.DataError(f"{quat_path}: {e}", path=quat_path) from None
        if category not in CATEGORIES:
            raise errors.DataError(f"{quat_path}: view {view_id!r} has the unknown category "
                                   f"{category!r} (expected one of {', '.join(CATEGORIES)})",
                                   path=quat_path)
        if category in class_names:
            records.append((view_id, category, model, view))
    if max_views is not None:
        if max_views < 1:
            raise ValueError(f"max_views must be >= 1, got {max_views}")
        by_model = {}
        for r in records:
            by_model.setdefault((r[1], r[2]), []).append(r)
        records = sorted(r for rs in by_model.values()
                         for r in sorted(rs, key=lambda r: r[3])[:max_views])
    if sampling < 1.0:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(records), size=max(1, int(len(records) * sampling)),
                                  replace=False))
        records = [records[i] for i in keep]
    if not records:
        raise errors.DataError(f"{quat_path}: no views of the selected classes "
                               f"({', '.join(class_names)})", path=quat_path)

    n = len(records)
    channels = 1 if gray else 3
    images = np.empty((n, size, size, channels), np.uint8)
    env = _open_lmdb(folder)
    try:
        with env.begin(buffers=False) as txn:
            for start in range(0, n, chunk):
                part = records[start:start + chunk]
                blobs = []
                for view_id, *_ in part:
                    blob = txn.get(view_id.encode("utf-8"))
                    if blob is None:
                        raise errors.DataError(f"{folder}: view {view_id!r} (listed in "
                                               f"{QUAT_FILE}) is not in the LMDB", path=folder)
                    blobs.append(bytes(blob))
                images[start:start + len(part)] = _decode_many(
                    blobs, size, gray, folder, [r[0] for r in part])
                if verbose:
                    print(f"{folder}: {start + len(part)}/{n} views", flush=True)
    finally:
        env.close()

    models = sorted({(r[1], r[2]) for r in records})
    model_index = {m: i for i, m in enumerate(models)}
    q = canonical_original(np.stack([quats[r[0]] for r in records]))
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return dict(images=images, quaternions=q.astype(np.float32),
                class_ids=np.array([class_names.index(r[1]) for r in records], np.int32),
                mesh_ids=np.array([model_index[(r[1], r[2])] for r in records], np.int32),
                view_ids=[r[0] for r in records], class_names=list(class_names))
