"""Spherical images: MNIST-format image sets (IDX files) projected onto the sphere.

The protocol of the spherical MNIST experiments of the spherical-CNN literature
(Cohen et al., ICLR 2018), written here from its description:

- the unit sphere is moved to sit on the plane z = 0 (centre (0, 0, 1)); each
  Driscoll-Healy grid point is projected onto that plane along the ray from
  the point ``(0, 0, 2 + 1e-3)`` just above the north pole (a stereographic
  projection); only the southern hemisphere (z < 0 before the move) receives
  the image, the northern one stays 0;
- the H x W image spans ``[-1.5, 1.5] x [-1.5, 1.5]`` on the plane (pixel
  centres at ``linspace(-1.5, 1.5, W)``; column c at X, row r at Y = 1.5 - 3 r /
  (H - 1), i.e. the image seen from above, top row towards +y) and is sampled
  bilinearly, pixels outside the image counting as 0;
- "R": the map is rotated by a uniformly random rotation R (Haar measure on
  SO(3)), i.e. the grid is rotated by R^T before projecting:
  ``map_R(p) = map_NR(R^T p)``; one rotation per image ("NR": the identity).
  Band-limited sets (``band_limit`` >= 2, our addition to the protocol) rotate the
  band-limited unrotated map exactly instead (:func:`project_band_limited`).

Values: pixel / 255, so every map lies in [0, 1] (bilinear sampling is a
convex combination; no further rescaling). Records hold two channels, float32
``(res, res, 2)`` in (azimuth, polar, channel) layout: channel 0 the image,
channel 1 the image's support (the same projection of an all-ones image:
1 inside the projected square, 0 outside, bilinear at its border). The demo's
two-branch model takes two channels; the support channel is the only second
signal that rotates with the image and says nothing about its class.

IDX format (MNIST, Fashion-MNIST, ...): big-endian; 2 zero bytes, a type code
(0x08 = unsigned byte), the number of dimensions d, d int32 sizes, then the
data. Images: d = 3 (magic 2051), labels: d = 1 (magic 2049). Files may be
gzip-compressed (detected from their first bytes, not their name).
"""
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

from . import rotations
from ..errors import DataError, UserError
from . import archives
from .verify import sha256_file
from .atomic_output import AtomicFolder, check_destination

PACKAGE = "dataset-fashion-mnist"
MAX_IDX_BYTES = 1 << 32  # values of one IDX file (Fashion-MNIST's largest: 47 million)
PLANE_EXTENT = 1.5  # the image spans [-1.5, 1.5]^2 on the plane
PROJECTION_HEIGHT = 2.0 + 1e-3  # the rays start at (0, 0, 2 + 1e-3), just above the north pole
NCHANNELS = 2
FASHION_MNIST_CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle_boot")
IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
MODES = {"NR": "none", "R": "so3"}  # the protocol's names -> rotations.MODES
SPLIT_CODE = {"train": 1, "test": 2}


# --------------------------------------------------------------------------- IDX files

def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path, expect_ndim=None):
    """The array of an IDX file (uint8 data only), gzip or not; DataError naming the file.

    Reads the header first and then exactly the bytes it announces (at most
    :data:`MAX_IDX_BYTES`), so a gzip bomb or a lying header costs no more memory than
    the data it claims.
    """
    def bad(why):
        return DataError("{}: {}".format(path, why), path=path)
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise bad("not an IDX file (no IDX magic number)")
            dtype, ndim = head[2], head[3]
            if dtype != 0x08:
                raise bad("IDX data type 0x{:02x} is not supported (only unsigned bytes, 0x08)".format(dtype))
            if expect_ndim is not None and ndim != expect_ndim:
                raise bad("IDX file with {} dimension(s), expected {} ({})".format(
                    ndim, expect_ndim, "images" if expect_ndim == 3 else "labels"))
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise bad("truncated IDX header")
            shape = struct.unpack(">" + "I" * ndim, dims)
            n, extent = 1, 1
            for d in shape:
                n, extent = n * d, extent * max(d, 1)  # extent: also with a size 0 (NumPy's limit)
            if extent > MAX_IDX_BYTES:
                raise bad("IDX header says {} values ({}), more than the {} this reader takes".format(
                    n, " x ".join(map(str, shape)), MAX_IDX_BYTES))
            body = f.read(n + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise bad("unreadable IDX file ({})".format(" ".join(str(e).split()) or type(e).__name__)) from None
    if len(body) != n:
        raise bad("IDX header says {} values ({}) but the file holds {} (truncated or corrupt)".format(
            n, " x ".join(map(str, shape)), len(body) if len(body) <= n else "more"))
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzip-compressed when ``path`` ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def load_split(images_path, labels_path):
    """``(images (N, H, W) uint8, labels (N,) int64)`` of one split; DataError on a mismatch."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1).astype(np.int64)
    if len(images) != len(labels):
        raise DataError("{} holds {} images but {} holds {} labels".format(
            images_path, len(images), labels_path, len(labels)), path=labels_path)
    return images, labels


# --------------------------------------------------------------------------- finding the files

def find_idx_files(folder):
    """``{role: path}`` of the four IDX files under ``folder`` (searched recursively)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for fn in sorted(files):
            m = IDX_NAME.match(fn)
            if not m:
                continue
            role = "{}_{}".format("train" if m.group(1) == "train" else "test", m.group(2))
            found.setdefault(role, os.path.join(root, fn))
    missing = [r for r in ROLES if r not in found]
    if missing:
        raise UserError("{}: no {} IDX file found (expected names like train-images-idx3-ubyte.gz, "
                        "t10k-labels-idx1-ubyte.gz)".format(folder, ", ".join(missing)))
    return found


def _is_idx(name):
    return bool(IDX_NAME.match(os.path.basename(name)))


def extract_deb(deb, dest):
    """Extract the IDX files of the Debian package ``deb`` into ``dest``; returns ``{role: path}``.

    Reads the ``ar`` archive and its ``data.tar.{xz,gz,bz2}`` with the standard library
    (``dpkg-deb -x`` is used for other compressions, e.g. zstd), with the checks of
    :mod:`.archives` (member names, links, sizes).
    """
    name, data = archives.deb_data(deb)
    where = "{} ({})".format(deb, name)
    if name not in archives.STDLIB_TARS:
        if not shutil.which("dpkg-deb"):
            raise UserError("{}: cannot read its {} (compression not supported here, and dpkg-deb "
                            "is not installed)".format(deb, name)) from None
        r = subprocess.run(["dpkg-deb", "-x", deb, dest], capture_output=True, text=True, errors="replace")
        if r.returncode:
            raise UserError("{}: dpkg-deb -x failed: {}".format(deb, _last_line(r.stderr))) from None
        archives.check_links_under(dest, _is_idx)
        return find_idx_files(dest)
    with archives.open_tar(data, where) as tar:
        budget = [archives.MAX_UNPACKED]
        for m in archives.tar_members(tar, where, _is_idx):
            # keep the package's folder name (e.g. fashion-mnist/): it names the class set
            folder = os.path.join(dest, os.path.basename(os.path.dirname(m.name)) or "idx")
            os.makedirs(folder, exist_ok=True)
            archives.copy_member(tar, m, os.path.join(folder, os.path.basename(m.name)), where, budget)
    return find_idx_files(dest)


def _last_line(text):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "no message"


def download_deb(dest, package=PACKAGE):
    """``apt-get download PACKAGE`` into ``dest``; returns the .deb's path (UserError: one line)."""
    apt = shutil.which("apt-get")
    if not apt:
        raise UserError("no package manager: apt-get is not installed here; download the {} .deb "
                        "elsewhere (or the IDX files) and pass its path".format(package))
    r = subprocess.run([apt, "download", package], cwd=dest, capture_output=True, text=True, errors="replace")
    if r.returncode:
        text = _last_line(r.stderr)
        if "unable to locate package" in (r.stderr or "").lower():
            raise UserError("apt-get download: package {} not found (run 'apt-get update' as root, or "
                            "pass the .deb / the IDX files)".format(package))
        raise UserError("apt-get download {} failed: {}".format(package, text))
    debs = sorted(f for f in os.listdir(dest) if f.endswith(".deb"))
    if not debs:
        raise UserError("apt-get download {} wrote no .deb".format(package))
    return os.path.join(dest, debs[0])


def resolve_source(source, tmp_dir, explicit=None, log=print):
    """``{role: path}`` of the four IDX files.

    Args:
        source: a ``.deb``, a folder holding the IDX files (e.g. the extracted package or
            ``/usr/share/datasets/fashion-mnist``), or None to download the package.
        tmp_dir: where to extract or download.
        explicit: ``{role: path}`` given one by one (override what ``source`` finds).
    """
    explicit = {k: v for k, v in (explicit or {}).items() if v}
    if len(explicit) == len(ROLES):
        found = {}
    elif source is None:
        log("downloading {} with apt-get ...".format(PACKAGE))
        deb = download_deb(tmp_dir)
        found = extract_deb(deb, tmp_dir)
    elif os.path.isdir(source):
        found = find_idx_files(source)
    elif os.path.isfile(source):
        if source.endswith(".deb"):
            found = extract_deb(source, tmp_dir)
        else:
            raise UserError("{}: expected a .deb or a folder holding the IDX files (or pass "
                            "--train_images/--train_labels/--test_images/--test_labels)".format(source))
    else:
        raise FileNotFoundError("{}: no such file or folder".format(source))
    found.update(explicit)
    for role, path in found.items():
        if not os.path.isfile(path):
            raise FileNotFoundError("{} {}: no such file".format(role, path))
    return found


def class_names(paths, n_classes, names=None):
    """Class names: ``names`` (comma list) if given, Fashion-MNIST's for its files, else the labels."""
    if names:
        out = [n.strip() for n in names.split(",") if n.strip()]
        if len(out) != n_classes:
            raise UserError("--classes names {} classes but the labels have {}".format(len(out), n_classes))
        return out
    if n_classes == 10 and any("fashion" in p.lower() for p in paths.values()):
        return list(FASHION_MNIST_CLASSES)
    return [str(i) for i in range(n_classes)]


# --------------------------------------------------------------------------- projection

def sphere_grid(res):
    """Unit vectors ``(res, res, 3)`` of the Driscoll-Healy grid in (azimuth, polar) layout."""
    polar = np.pi * np.arange(res) / res
    azimuth = 2 * np.pi * np.arange(res) / res
    az, po = np.meshgrid(azimuth, polar, indexing="ij")
    return np.stack([np.sin(po) * np.cos(az), np.sin(po) * np.sin(az), np.cos(po)], axis=-1)


def plane_coordinates(points):
    """``(X, Y, south)`` where the rays through ``points`` (unit vectors, (..., 3)) meet the plane.

    The sphere sits on the plane z = 0 (its point p moves to p + (0, 0, 1)); the ray
    from (0, 0, 2 + 1e-3) through it meets the plane at t * (p_x, p_y) with
    t = h / (h - 1 - p_z). ``south`` is p_z < 0 (the hemisphere that gets the image).
    """
    p = np.asarray(points, dtype=np.float64)
    t = PROJECTION_HEIGHT / (PROJECTION_HEIGHT - 1.0 - p[..., 2])
    return t * p[..., 0], t * p[..., 1], p[..., 2] < 0


def _bilinear(images, col, row):
    """Sample ``images`` (N, H, W) at fractional pixel positions (N, P); 0 outside the image."""
    n, h, w = images.shape
    c0, r0 = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    fc, fr = col - c0, row - r0
    out = np.zeros(col.shape, dtype=np.float64)
    idx = np.arange(n)[:, None]
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            r, c = r0 + dr, c0 + dc
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            vals = images[idx, np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]
            out += np.where(inside, wr * wc * vals, 0.0)
    return out


def project(images, res, matrices=None):
    """Project images (N, H, W) (uint8 0..255 or floats in [0, 1]) onto the sphere.

    Args:
        matrices: None (NR) or rotation matrices (N, 3, 3); map i is rotated by R_i:
            its value at grid point p is the projection at R_i^T p.

    Returns:
        float32 ``(N, res, res, 2)``: (azimuth, polar, [image, support]) (module docstring).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError("images must be (N, H, W), got shape {}".format(images.shape))
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    n, h, w = images.shape
    grid = sphere_grid(res).reshape(-1, 3)
    if matrices is None:
        pts = np.broadcast_to(grid, (n,) + grid.shape)
    else:
        pts = np.einsum("pi,nij->npj", grid, np.asarray(matrices, dtype=np.float64))  # R^T p as rows: p @ R
    x, y, south = plane_coordinates(pts)
    col = (x + PLANE_EXTENT) / (2 * PLANE_EXTENT) * (w - 1)
    row = (PLANE_EXTENT - y) / (2 * PLANE_EXTENT) * (h - 1)
    img = _bilinear(images.astype(np.float64) / scale, col, row)
    support = _bilinear(np.ones((1, h, w)), col, row) if matrices is not None else \
        np.broadcast_to(_bilinear(np.ones((1, h, w)), col[:1], row[:1]), col.shape)
    out = np.stack([np.where(south, img, 0.0), np.where(south, support, 0.0)], axis=-1)
    return out.reshape(n, res, res, NCHANNELS).astype(np.float32)


def band_limit(maps, res, chunk=500):
    """Maps ``(N, m, m, C)`` on a finer DH grid -> ``(N, res, res, C)`` float32: the samples on
    the ``res`` grid of their spherical harmonic expansion cut to degrees < res/2.

    The expansion is computed on the fine grid (exact for content below degree m/2;
    content above degree ``m - res/2`` aliases into the degrees kept), so the result is
    exactly band-limited: a rotation of such a map is the map of the rotated
    function, with no aliasing of the grid to tell the two apart.
    """
    from .. import sht
    maps = np.asarray(maps, dtype=np.float32)
    fine, coarse = sht.get_transform(maps.shape[1], "sep"), sht.get_transform(res, "sep")
    out = np.empty((len(maps), res, res, maps.shape[3]), dtype=np.float32)
    for start in range(0, len(maps), chunk):
        coeffs = fine.forward_packed(maps[start:start + chunk])[:, :, :, :coarse.L, :coarse.L]
        out[start:start + chunk] = np.asarray(coarse.inverse_packed(coeffs))
    return out


def project_band_limited(images, res, matrices=None, oversample=2):
    """:func:`project` on the grid ``oversample * res``, then :func:`band_limit` to ``res``:
    the projection's degrees < res/2, without the aliasing of sampling it on the ``res``
    grid directly (on spherical Fashion-MNIST at res 32 the rotation-invariant power per
    degree of a map and of its rotated copy differ by 1.2 % sampled directly, 0.13 % with
    oversample 2, 0.02 % with 4; docs/real-data.md).

    With ``matrices`` (and ``oversample >= 2``) map i is the unrotated band-limited map
    rotated exactly by R_i in the spherical-harmonic domain (:func:`spherical_cnn.rotation.rotate`,
    computed in float64): ``map_R = rotate(map_NR, R)`` to float32 rounding. Projecting the
    rotated grid instead would leave the fine grid's aliasing in the kept degrees, and that
    aliasing differs with the rotation (0.9 % of the support channel's sharp-edged square on
    Fashion-MNIST, enough for a model trained on rotated maps to tell them from unrotated ones:
    docs/real-data.md). ``oversample < 2``: :func:`project` (the protocol's grid sampling).
    """
    if oversample < 2:
        return project(images, res, matrices)
    maps = band_limit(project(images, oversample * res), res)
    if matrices is None:
        return maps
    from ..rotation import rotate
    rotated = rotate(maps.astype(np.float64), np.asarray(matrices, dtype=np.float64))
    return np.asarray(rotated, dtype=np.float32)


def flat_maps(images, size=None):
    """The images themselves as float32 maps ``(N, size, size, 1)`` in [0, 1] (no sphere): what
    the flat reference CNN of the image study reads (``build(..., rotation='flat')``). Images
    smaller than ``size`` are centred on a zero frame (28 x 28 -> 32 x 32: a model that pools
    twice needs a multiple of 8, and Fashion-MNIST's background is 0 already)."""
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    maps = (images.astype(np.float64) / scale)[..., None].astype(np.float32)
    extra = 0 if size is None else int(size) - maps.shape[1]
    if extra > 0:
        before = extra // 2
        maps = np.pad(maps, ((0, 0), (before, extra - before), (before, extra - before), (0, 0)))
    return maps


INPUT_KEYS = ("kind", "input_res", "image_shape", "protocol")


def input_description(manifest):
    """What a model trained on a spherical image set needs to project new images as its
    training images were (kept by the trainer as ``input.json``), from the set's manifest;
    None for other datasets."""
    if not manifest or manifest.get("kind") != "spherical images" or not manifest.get("protocol"):
        return None
    return {k: manifest.get(k) for k in INPUT_KEYS}


def projection_settings(description, default_shape=(28, 28)):
    """``(image shape (H, W), band_limit)`` of an :func:`input_description` (None: the
    protocol's projection of ``default_shape`` images)."""
    if not description:
        return tuple(default_shape), 0
    shape = tuple(description.get("image_shape") or default_shape)
    return shape, int((description.get("protocol") or {}).get("band_limit", 0) or 0)


def _rotation_method(mode, band_limit):
    """How the rotated maps of a set were made (manifest ``protocol.rotation_method``)."""
    if mode == "none":
        return "none"
    if band_limit >= 2:
        return "band-limited unrotated map rotated exactly in the spherical-harmonic domain"
    return "projected on the rotated grid"


def rotation_quaternions(mode, n, seed, split, r):
    """Quaternions (n, 4) of rotation index ``r`` of images 0..n-1 of ``split`` (all the file's images,
    so that image i gets the same rotation whatever subset is built)."""
    rng = np.random.default_rng([int(seed), SPLIT_CODE[split], int(r)])
    return rotations.sample_quaternions(mode, n, rng)


# --------------------------------------------------------------------------- dataset

def _select(n_total, start, count, what):
    if count is None:
        count = n_total - start
    if count < 1 or start + count > n_total:
        raise ValueError("{}: {} images asked for (from image {}), the file has {}".format(
            what, count, start, n_total))
    return np.arange(start, start + count)


def build(paths, out_dir, *, rotation="NR", input_res=32, n_train=None, n_val=1000, n_test=None,
          n_rotations=1, n_test_rotations=1, seed=0, classes=None, overwrite=False, progress=True,
          chunk=2000, extra_manifest=None, band_limit=0):
    """Write a spherical image dataset (records of ``records.py``) to ``out_dir``, atomically.

    Layout: ``train_XXX.tfrecord`` (shard r = rotation r of the first ``n_train`` train
    images; with NR one shard), ``val_000.tfrecord`` (the next ``n_val`` train images,
    ``n_test_rotations`` each; none if 0), ``test_000.tfrecord`` (the first ``n_test``
    test images, ``n_test_rotations`` each), ``classes.txt``, ``manifest.json``.
    Records: ``x`` float32 (res, res, 2), ``y``, ``fname`` = ``<train|test>/<image index>``,
    ``idrot`` = rotation index, ``rotation`` = its quaternion (w, x, y, z).

    Args:
        paths: ``{role: path}`` of the four IDX files (:func:`resolve_source`).
        band_limit: 0 (default, the protocol: the projection sampled on the grid) or an
            oversampling factor k >= 2: :func:`project_band_limited` on the grid k * input_res.
        rotation: ``'NR'`` (none) or ``'R'`` (one uniform SO(3) rotation per image and index);
            ``'flat'``: not projected at all, records hold the H x W images themselves
            (:func:`flat_maps`, ``x`` float32 ``(H, W, 1)``, centred on a zero frame of
            ``input_res`` when that is larger): the input of
            the flat reference CNN.
    Returns:
        the manifest dict.
    """
    from . import records
    import tensorflow as tf

    flat = rotation == "flat"
    if rotation not in MODES and not flat:
        raise ValueError("--rotation must be NR or R, got {!r}".format(rotation))
    if input_res < 2 or input_res % 2:
        raise ValueError("--input_res must be an even integer >= 2, got {}".format(input_res))
    if n_rotations < 1 or n_test_rotations < 1:
        raise ValueError("--n_rotations and --n_test_rotations must be >= 1")
    if n_val < 0:
        raise ValueError("--n_val must be >= 0, got {}".format(n_val))
    if band_limit not in (0, 1) and (band_limit < 2 or flat):
        raise ValueError("--band_limit must be 0 (off) or an oversampling factor >= 2 (spherical "
                         "maps only), got {}".format(band_limit))
    out = AtomicFolder(out_dir, overwrite=overwrite)
    mode = "none" if flat else MODES[rotation]
    t0 = time.time()
    train_x, train_y = load_split(paths["train_images"], paths["train_labels"])
    test_x, test_y = load_split(paths["test_images"], paths["test_labels"])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError("train images are {} but test images {}".format(
            "x".join(map(str, train_x.shape[1:])), "x".join(map(str, test_x.shape[1:]))),
            path=paths["test_images"])
    if flat:
        if train_x.shape[1] != train_x.shape[2]:
            raise DataError("flat maps need square images, got {}".format(
                "x".join(map(str, train_x.shape[1:]))), path=paths["train_images"])
        input_res = max(int(train_x.shape[1]), int(input_res))  # framed to input_res when larger
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    names = class_names(paths, n_classes, classes)
    if n_train is None:
        n_train = len(train_x) - n_val
    train_idx = _select(len(train_x), 0, n_train, "--n_train")
    val_idx = _select(len(train_x), n_train, n_val, "--n_val") if n_val else np.arange(0)
    test_idx = _select(len(test_x), 0, n_test, "--n_test")

    jobs = []  # (file name, split of the IDX file, indices, images, labels, rotation index)
    for r in range(n_rotations):
        jobs.append(("train_{:03d}.tfrecord".format(r), "train", train_idx, train_x, train_y, r))
    for r in range(n_test_rotations):
        if n_val:
            jobs.append(("val_000.tfrecord", "train", val_idx, train_x, train_y, n_rotations + r))
        jobs.append(("test_000.tfrecord", "test", test_idx, test_x, test_y, r))
    total = sum(len(j[2]) for j in jobs)

    with out:
        stage = out.stage
        from tqdm import tqdm
        bar = tqdm(total=total, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True,
                   desc="projecting ({}, res {})".format(rotation, input_res))
        writers, counts = {}, {}
        quat_cache = {}
        try:
            for fname, split, idx, xs, ys, r in jobs:
                if fname not in writers:
                    writers[fname] = tf.io.TFRecordWriter(os.path.join(stage, fname + ".tmp"))
                key = (split, r)
                if key not in quat_cache:
                    quat_cache = {key: rotation_quaternions(mode, len(xs), seed, split, r)}
                quats = quat_cache[key]
                rid = r - n_rotations if fname.startswith("val") else r
                for start in range(0, len(idx), chunk):
                    sel = idx[start:start + chunk]
                    mats = None if mode == "none" else rotations.quaternion_to_matrix(quats[sel])
                    maps = (flat_maps(xs[sel], input_res) if flat else
                            project_band_limited(xs[sel], input_res, mats, band_limit))
                    for k, i in enumerate(sel):
                        writers[fname].write(records.encode_example(
                            maps[k], ys[i], fname="{}/{:05d}".format(split, i), idrot=rid,
                            rotation=quats[i].astype(np.float32)))
                    counts[fname] = counts.get(fname, 0) + len(sel)
                    bar.update(len(sel))
        finally:
            for w in writers.values():
                w.close()
            bar.close()
        for fname in writers:
            os.replace(os.path.join(stage, fname + ".tmp"), os.path.join(stage, fname))
        with open(os.path.join(stage, "classes.txt"), "w") as f:
            f.write("".join(c + "\n" for c in names))
        files = {s: sorted(f for f in writers if f.startswith(s)) for s in ("train", "val", "test")}
        manifest = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "kind": "flat images" if flat else "spherical images",
            "input_res": input_res, "nchannels": 1 if flat else NCHANNELS, "dtype": "float32",
            "layout": ("x: float32 (rows, columns, 1) = the image / 255, not projected" if flat else
                       "x: float32 (res, res, 2) = (azimuth, polar, [image / 255, image support]); "
                       "northern hemisphere 0"),
            "protocol": None if flat else {"projection": "stereographic from (0, 0, {}) onto the plane z = 0 under the "
                                       "sphere centred at (0, 0, 1); southern hemisphere only".format(
                                           PROJECTION_HEIGHT),
                         "plane_extent": [-PLANE_EXTENT, PLANE_EXTENT], "sampling": "bilinear",
                         "band_limit": band_limit if band_limit >= 2 else 0,
                         "rotation": rotation, "rotations": mode,
                         "rotation_method": _rotation_method(mode, band_limit),
                         "rotation_sampling": "one rotation per image and rotation index, seeded by "
                                              "(seed, split, rotation index)"},
            "rotations": mode, "n_rotations": n_rotations, "n_test_rotations": n_test_rotations,
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
            "image_shape": list(train_x.shape[1:]), "seed": seed, "classes": names,
            "counts": {s: {"images": int(n), "records": sum(counts.get(f, 0) for f in files[s])}
                       for s, n in (("train", len(train_idx)), ("val", len(val_idx)), ("test", len(test_idx)))},
            "files": files,
            "source": {role: {"file": os.path.basename(p), "sha256": sha256_file(p)} for role, p in paths.items()},
            "seconds": round(time.time() - t0, 2),
        }
        manifest.update(extra_manifest or {})
        with open(os.path.join(stage, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
    if progress:
        c = manifest["counts"]
        print("dataset written to {} in {:.1f} s ({}, res {}, {} classes): train {} / val {} / test {} "
              "records".format(out_dir, manifest["seconds"], rotation, input_res, len(names),
                               c["train"]["records"], c["val"]["records"], c["test"]["records"]))
    return manifest


def build_from_source(source, out_dir, explicit=None, log=print, **kwargs):
    """:func:`build` from a .deb, a folder, explicit IDX paths or (``source`` None) a download.

    The destination is checked first (before any download)."""
    check_destination(out_dir, kwargs.get("overwrite", False))
    with tempfile.TemporaryDirectory(prefix="spherical-images-") as tmp:
        paths = resolve_source(source, tmp, explicit, log=log)
        extra = dict(kwargs.pop("extra_manifest", None) or {})
        given = any((explicit or {}).values())
        extra.setdefault("input", "download ({})".format(PACKAGE) if source is None and not given
                         else os.path.basename(os.path.abspath(source)) if source else "IDX files")
        return build(paths, out_dir, extra_manifest=extra, **kwargs)
