"""What the image tasks share: the small CNN backbone, the npz cache of rendered
datasets, and the built-in classes whose shapes have no rotational symmetry.

Images are ``(batch, height, width, channels)``, row 0 at the top (render.py).
"""
import hashlib
import json
import os
import sys
import time
import zipfile
import zlib

import numpy as np

# Built-in synthetic classes whose shapes (almost always) have no rotational symmetry,
# so that their pose or azimuth is defined by the image: the bed's headboard, the
# chair's and sofa's backs, the airplane's tail. Tables, stools, benches without a
# backrest, bookshelves without a back panel, bottles, vases, straight lamps and mugs
# seen without their handle look the same under some rotations, which no regressor can
# resolve (the paper's ModelNet10-SO3 has such classes; their errors dominate).
POSE_CLASSES = ("airplane", "bed", "chair", "sofa")

# The size flags of the tasks that show meshes under random views (viewpoint, rotation).
IMAGE_TASK_SIZE_FLAGS = {
    "image_size": (int, "rendered image size (pixels)"),
    "train_meshes_per_class": (int, "distinct training meshes per class"),
    "test_meshes_per_class": (int, "distinct test meshes per class (other meshes than training)"),
    "train_views": (int, "random views (rotations) per training mesh"),
    "test_views": (int, "random views (rotations) per test mesh"),
    "width": (int, "channels of the backbone's first convolution"),
}


def build_backbone(image_size, channels, width=32, feature_units=256, name="backbone"):
    """Conv(3x3, stride 2)+BN+ReLU x4 (width, 2w, 2w, 4w) -> Flatten -> Dense+ReLU.
    Input ``(batch, size, size, channels)``, output ``(batch, feature_units)``."""
    import keras
    layers = [keras.Input((image_size, image_size, channels))]
    for w in (width, 2 * width, 2 * width, 4 * width):
        layers += [keras.layers.Conv2D(w, 3, strides=2, padding="same", use_bias=False),
                   keras.layers.BatchNormalization(), keras.layers.ReLU()]
    layers += [keras.layers.Flatten(), keras.layers.Dense(feature_units, activation="relu")]
    return keras.Sequential(layers, name=name)


def load_or_make(prefix, manifest, make, cache_dir, verbose=False):
    """``make()`` (a dict of arrays, optionally ``class_names``) through an npz cache:
    ``<cache_dir>/<prefix>_<key>.npz`` plus ``.json``, the manifest of every setting
    that made it; ``key`` hashes the manifest, so a changed setting never reads a stale
    cache. ``cache_dir`` None: no cache. The npz is written to a temporary name and
    renamed, so an interrupted build leaves no half-written cache; a cache damaged
    anyway (truncated, not a zip, non-finite values) is rendered again with a one-line
    warning. Data made with non-finite values are a DataError."""
    key = hashlib.sha1(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, f"{prefix}_{key}.npz")
        if os.path.exists(path):
            data, why = _read_cache(path)
            if data is not None:
                return data
            # derived data: rendered again (one line says why), never a traceback
            print(f"warning: dataset cache {path} is {why}; rendering it again", file=sys.stderr, flush=True)
    t0 = time.time()
    data = make()
    bad = _nonfinite(data)
    if bad:
        from spherical_cnn.errors import DataError
        raise DataError(f"{prefix}: the data made from {manifest.get('data') or 'the settings'} hold "
                        f"non-finite values in {bad}")
    n = len(next(v for k, v in data.items() if k != "class_names"))
    if verbose:
        print(f"rendered {prefix}: {n} samples in {time.time() - t0:.1f} s", flush=True)
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in data.items()})
        os.replace(tmp, path)
        info = dict(manifest, num_samples=int(n), created=time.strftime("%Y-%m-%d %H:%M:%S"))
        if "class_names" in data:
            info["class_names"] = list(data["class_names"])
        with open(path[:-4] + ".json", "w") as f:
            json.dump(info, f, indent=2)
    return data


def _nonfinite(data):
    """Names of the float arrays of ``data`` that hold NaN or infinity."""
    return ", ".join(k for k, v in data.items() if k != "class_names" and np.asarray(v).dtype.kind in "fc"
                     and not np.all(np.isfinite(v)))


def _read_cache(path):
    """``(data, None)`` of a readable cache file with finite values, else ``(None, why)``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        return None, "unreadable ({}: {})".format(type(err).__name__, " ".join(str(err).split())[:120])
    sizes = {len(v) for k, v in data.items() if k != "class_names" and np.asarray(v).ndim}
    if not data or len(sizes) != 1:
        return None, "incomplete (arrays of different lengths or none)"
    bad = _nonfinite(data)
    if bad:
        return None, "damaged (non-finite values in {})".format(bad)
    if "class_names" in data:
        data["class_names"] = [str(c) for c in data["class_names"]]
    return data, None
