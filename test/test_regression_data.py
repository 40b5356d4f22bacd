"""The restricted unpickler and the ModelNet10-SO3 release reader, on files written here:
a malicious pickle, a hand-written Python-2 pickle, and a tiny LMDB set of JPEG views."""
import os
import pickle
import struct
import sys

import numpy as np
import pytest
import tensorflow as tf

from spherical_cnn import errors
from spherical_regression import safe_pickle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- Python-2 pickle writer

def _py2_str(b):
    """A Python-2 ``str`` (bytes) opcode: SHORT_BINSTRING or BINSTRING."""
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _py2_array(a):
    """Opcodes of a NumPy array as Python 2 / NumPy 1.x pickled it at protocol 2:
    _reconstruct(ndarray, (0,), 'b') then BUILD with (1, shape, dtype, False, raw)."""
    a = np.ascontiguousarray(a)
    assert a.ndim == 1 and a.dtype == np.float64
    dtype_state = (b"(K\x03" + _py2_str(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t")
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
            + b"K\x00\x85" + _py2_str(b"b") + b"\x87R"
            + b"(K\x01" + b"K" + bytes([len(a)]) + b"\x85"
            + b"cnumpy\ndtype\n" + _py2_str(b"f8") + b"K\x00K\x01\x87R" + dtype_state + b"b"
            + b"\x89" + _py2_str(a.astype("<f8").tobytes()) + b"tb")


def py2_pickle_dict(d):
    """Protocol-2 pickle of {str: float64 1-D array} with Python-2 ``str`` keys and data."""
    out = b"\x80\x02}("
    for k, v in d.items():
        out += _py2_str(k.encode("ascii")) + _py2_array(v)
    return out + b"u."


# ---------------------------------------------------------------- restricted unpickler

class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _EvalEvil:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "viewID2quat.pkl"
    payload = pickle.dumps({"chair_0001.v001": _Evil(f"touch {marker}")}, protocol=2)
    assert b"system" in payload  # the pickle does name os.system (posix.system)
    path.write_bytes(payload)
    with pytest.raises(errors.DataError, match=r"viewID2quat\.pkl: refused.*posix\.system"):
        safe_pickle.load(path)
    assert not marker.exists()
    with pytest.raises(errors.DataError, match=r"refused.*builtins\.eval"):
        safe_pickle.loads(pickle.dumps([1, _EvalEvil()], protocol=4), path="x.pkl")
    # NumPy globals other than the array machinery are refused too
    with pytest.raises(errors.DataError, match=r"refused.*numpy\.load"):
        safe_pickle.loads(b"\x80\x02cnumpy\nload\nU\x01x\x85R.", path="y.pkl")
    # _codecs.encode only for latin1 (how protocol 2 stores bytes)
    with pytest.raises(errors.DataError, match="z.pkl"):
        safe_pickle.loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib"
                          b"\x86R.", path="z.pkl")
    with pytest.raises(errors.DataError, match="not a readable pickle"):
        safe_pickle.loads(b"\x80\x02}(U\x01a", path="cut.pkl")
    with pytest.raises(errors.DataError, match="cannot read"):
        safe_pickle.load(tmp_path / "missing.pkl")


def test_restricted_unpickler_loads_python2_and_python3_array_dicts(tmp_path):
    rng = np.random.default_rng(0)
    d = {f"bed_{i:04d}.v{j:03d}": rng.standard_normal(4) for i in range(3) for j in range(2)}
    path = tmp_path / "py2.pkl"
    path.write_bytes(py2_pickle_dict(d))
    got = safe_pickle.load(path)
    assert isinstance(got, dict) and sorted(got) == sorted(d)
    assert all(type(k) is str for k in got)
    for k in d:
        assert got[k].dtype == np.float64
        np.testing.assert_array_equal(got[k], d[k])
    # the same dict pickled by this Python at protocol 2 (bytes via _codecs.encode) and 5
    for protocol in (2, 5):
        got = safe_pickle.loads(pickle.dumps(d, protocol=protocol), path="p.pkl")
        for k in d:
            np.testing.assert_array_equal(got[k], d[k])
    # float32 arrays, numpy scalars and ordered dicts are data too
    from collections import OrderedDict
    od = OrderedDict(a=np.float32([1, 2]), b=np.float64(3.5), c="text")
    got = safe_pickle.loads(pickle.dumps(od, protocol=2))
    assert list(got) == ["a", "b", "c"] and got["b"] == 3.5 and got["c"] == "text"


# ---------------------------------------------------------------- tiny ModelNet10-SO3

try:  # pinned in requirements.txt; only the LMDB reader needs it
    import lmdb
except ImportError:  # pragma: no cover
    lmdb = None
needs_lmdb = pytest.mark.skipif(lmdb is None, reason="the lmdb package is not installed")

from spherical_regression.tasks import modelnet10_so3  # noqa: E402

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220),
           (220, 40, 220), (120, 60, 10), (10, 90, 160)]


def _view_image(k, size=32):
    """White image with a left half of colour k and a right half of colour k+1."""
    img = np.full((size, size, 3), 255, np.uint8)
    img[:, : size // 2] = COLOURS[k % len(COLOURS)]
    img[:, size // 2:] = COLOURS[(k + 1) % len(COLOURS)]
    return img


def write_tiny_release(folder, views, quats, corrupt=(), skip=()):
    """An LMDB folder ``*.Rawjpg.lmdb`` with the JPEG of ``_view_image(k)`` for the k-th
    view id, and ``viewID2quat.pkl`` (Python-2 style) beside it."""
    os.makedirs(folder, exist_ok=True)
    env = lmdb.open(str(folder), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, view_id in enumerate(views):
            if view_id in skip:
                continue
            blob = tf.io.encode_jpeg(_view_image(k), quality=95).numpy()
            if view_id in corrupt:
                blob = blob[:40]
            txn.put(view_id.encode("utf-8"), blob)
    env.close()
    with open(os.path.join(folder, "viewID2quat.pkl"), "wb") as f:
        f.write(py2_pickle_dict(dict(zip(views, quats))))


def _tiny_views():
    views = [f"{c}_{m}.v{v:03d}" for c, m in (("night_stand", "0201"), ("bathtub", "0107"),
                                              ("bathtub", "0110"), ("toilet", "0001"))
             for v in (1, 2)]
    rng = np.random.default_rng(1)
    q = rng.standard_normal((len(views), 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[0] = [0.0, -0.6, 0.0, 0.8]  # w == 0: the original flips it
    q[1, 0] = -abs(q[1, 0])       # w < 0: flipped
    return views, q


@needs_lmdb
def test_reader_returns_images_labels_and_categories(tmp_path):
    views, q = _tiny_views()
    root = tmp_path / "ModelNet10-SO3"
    write_tiny_release(root / "test_20V.Rawjpg.lmdb", views, q)
    data = modelnet10_so3.load_split(str(root), "test", size=16)
    assert data["class_names"] == list(modelnet10_so3.CATEGORIES)
    order = np.argsort(views)  # records come sorted by view id
    assert data["view_ids"] == sorted(views)
    cats = [v.rsplit("_", 1)[0] for v in np.array(views)[order]]
    assert data["class_ids"].tolist() == [modelnet10_so3.CATEGORIES.index(c) for c in cats]
    assert modelnet10_so3.CATEGORIES.index("night_stand") == 6
    # quaternions: as stored, flipped when w <= 0 (the original's rule)
    expect = q[order] * np.where(q[order, :1] > 0, 1.0, -1.0)
    np.testing.assert_allclose(data["quaternions"], expect, atol=1e-6)
    assert data["quaternions"].dtype == np.float32 and (data["quaternions"][:, 0] >= 0).all()
    np.testing.assert_allclose(data["quaternions"][sorted(views).index(views[0])],
                               [0.0, 0.6, 0.0, -0.8], atol=1e-7)
    # images: 16x16 uint8 RGB, left half colour k, right half colour k+1 (JPEG tolerance;
    # the two columns at the seam mix both colours)
    imgs = data["images"]
    assert imgs.shape == (8, 16, 16, 3) and imgs.dtype == np.uint8
    for row, k in enumerate(order):
        left, right = imgs[row, :, :7].astype(int), imgs[row, :, 9:].astype(int)
        assert np.abs(left - COLOURS[k % 8]).max() <= 12, (row, k)
        assert np.abs(right - COLOURS[(k + 1) % 8]).max() <= 12, (row, k)
    # one id per CAD model
    models = [v.split(".")[0] for v in sorted(views)]
    assert len(set(data["mesh_ids"].tolist())) == 4
    for i, j in zip(*np.nonzero(np.equal.outer(models, models))):
        assert data["mesh_ids"][i] == data["mesh_ids"][j]
    # a class subset, a view limit, sampling, grayscale
    sub = modelnet10_so3.load_split(str(root), "test", size=8, classes="toilet,bathtub",
                                    max_views=1)
    assert sub["class_names"] == ["bathtub", "toilet"]
    assert sub["view_ids"] == ["bathtub_0107.v001", "bathtub_0110.v001", "toilet_0001.v001"]
    assert sub["class_ids"].tolist() == [0, 0, 1]
    half = modelnet10_so3.load_split(str(root / "test_20V.Rawjpg.lmdb"), size=8, sampling=0.5,
                                     gray=True, seed=3)
    assert half["images"].shape == (4, 8, 8, 1) and set(half["view_ids"]) <= set(views)


@needs_lmdb
def test_reader_errors_name_the_file(tmp_path):
    views, q = _tiny_views()
    root = tmp_path / "release"
    with pytest.raises(errors.DataError, match="test_20V.Rawjpg.lmdb: no such folder"):
        modelnet10_so3.load_split(str(root), "test")
    write_tiny_release(root / "test_20V.Rawjpg.lmdb", views, q, corrupt={views[3]})
    with pytest.raises(errors.DataError, match=r"test_20V\.Rawjpg\.lmdb: view "
                                               r"'bathtub_0107\.v002': not a decodable JPEG"):
        modelnet10_so3.load_split(str(root), "test", size=8)
    write_tiny_release(root / "train_20V.Rawjpg.lmdb", views, q, skip={views[5]})
    with pytest.raises(errors.DataError, match=r"train_20V\.Rawjpg\.lmdb: view "
                                               r"'bathtub_0110\.v002'.*not in the LMDB"):
        modelnet10_so3.load_split(str(root), "train_20V", size=8)
    bad = root / "train_100V.Rawjpg.lmdb"
    write_tiny_release(bad, ["teapot_0001.v001"], q[:1])
    with pytest.raises(errors.DataError, match=r"viewID2quat\.pkl: view 'teapot_0001\.v001' "
                                               r"has the unknown category 'teapot'"):
        modelnet10_so3.load_split(str(root), "train", size=8)
    (bad / "viewID2quat.pkl").write_bytes(pickle.dumps({"chair_0001.v001": "x"}, protocol=2))
    with pytest.raises(errors.DataError, match=r"viewID2quat\.pkl: view 'chair_0001\.v001': "
                                               r"expected a unit quaternion"):
        modelnet10_so3.load_split(str(root), "train", size=8)
    (bad / "viewID2quat.pkl").write_bytes(pickle.dumps({"x": _Evil("true")}, protocol=2))
    with pytest.raises(errors.DataError, match="refused"):
        modelnet10_so3.load_split(str(root), "train", size=8)
    with pytest.raises(ValueError, match=r"unknown class.*'airplane'"):
        modelnet10_so3.load_split(str(root), "test", classes=["airplane"])


@needs_lmdb
def test_train_regression_script_on_release_data(tmp_path, capsys):
    """--data DIR: the S^3 experiment trains and evaluates on the LMDB views."""
    views = [f"{c}_{m:04d}.v{v:03d}" for c in ("chair", "sofa") for m in (1, 2)
             for v in range(1, 5)]
    rng = np.random.default_rng(2)
    q = rng.standard_normal((len(views), 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    root = tmp_path / "ModelNet10-SO3"
    write_tiny_release(root / "train_100V.Rawjpg.lmdb", views, q)
    write_tiny_release(root / "test_20V.Rawjpg.lmdb", views[:6], q[:6])
    from spherical_cnn.cli import train_regression
    out = tmp_path / "out"
    results, _ = train_regression.run(train_regression.parse_args([
        "--data", str(root), "--data_test_sampling", "1.0", "--head", "all", "--epochs", "1",
        "--seeds", "0", "--image_size", "16", "--batch_size", "8", "--width", "4",
        "--logit_scale", "original_code", "--sign_layout", "quaternion_original",
        "--out", str(out)]))
    assert [r["head"] for r in results] == ["sexp", "sflat", "direct"]
    for r in results:
        assert r["train_samples"] == 16 and sorted(r["per_class"]) == ["chair"]  # test: chair views only
        assert 0.0 <= r["MedErr"] <= 180.0
    assert "train (16, 16, 16, 3), test (6, 16, 16, 3)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--data", str(tmp_path / "nowhere")])
    # the command line: a refused pickle is one line naming the file, exit status 2
    marker = tmp_path / "marker"
    (root / "train_100V.Rawjpg.lmdb" / "viewID2quat.pkl").write_bytes(
        pickle.dumps({"chair_0001.v001": _Evil(f"touch {marker}")}, protocol=2))
    import subprocess
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train_regression.py"),
                           "--data", str(root), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not marker.exists()
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "viewID2quat.pkl: refused" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--data", str(root), "--classes", "airplane"])
