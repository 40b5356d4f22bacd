"""Spherical images (spherical_cnn/data/images.py, make_images): IDX files, the projection
against its closed form, the rotation regime, records, sources and errors.

Every test writes its own tiny IDX files; nothing is downloaded.
"""
import gzip
import io
import json
import os
import stat
import struct
import tarfile

import numpy as np
import pytest

from spherical_cnn import errors
from spherical_cnn.cli import make_images
from spherical_cnn.data import images, records, rotations

H = W = 6
N_TRAIN, N_TEST = 12, 5
HEIGHT = 2.0 + 1e-3  # the protocol's projection point (0, 0, 2 + 1e-3)


def idx_bytes(array):
    """IDX file content written by hand (independent of images.write_idx)."""
    a = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">i", d) for d in a.shape) + a.tobytes()


def tiny_set(seed=0):
    rng = np.random.default_rng(seed)
    return {"train_images": rng.integers(0, 256, (N_TRAIN, H, W)), "train_labels": np.arange(N_TRAIN) % 3,
            "test_images": rng.integers(0, 256, (N_TEST, H, W)), "test_labels": np.arange(N_TEST) % 3}


FILE_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def write_set(folder, data, gz=True):
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for role, arr in data.items():
        path = os.path.join(folder, FILE_NAMES[role] + (".gz" if gz else ""))
        raw = idx_bytes(arr)
        with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
            f.write(raw)
        paths[role] = path
    return paths


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_parse(tmp_path, gz):
    data = tiny_set()
    paths = write_set(str(tmp_path), data, gz=gz)
    x, y = images.load_split(paths["train_images"], paths["train_labels"])
    assert x.shape == (N_TRAIN, H, W) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, data["train_images"])
    np.testing.assert_array_equal(y, data["train_labels"])
    assert images.find_idx_files(str(tmp_path)) == paths
    images.write_idx(str(tmp_path / "copy.gz"), data["test_images"])  # our writer reads back
    np.testing.assert_array_equal(images.read_idx(str(tmp_path / "copy.gz")), data["test_images"])


def test_corrupt_idx_is_one_line_naming_the_file(tmp_path, capsys):
    data = tiny_set()
    paths = write_set(str(tmp_path / "src"), data, gz=False)
    with open(paths["train_images"], "rb") as f:
        raw = f.read()
    with open(paths["train_images"], "wb") as f:
        f.write(raw[:-7])  # truncated
    with pytest.raises(errors.DataError, match="train-images-idx3-ubyte: IDX header says 432 values"):
        images.read_idx(paths["train_images"])
    status = errors.run_cli(make_images.main, [str(tmp_path / "src"), "--out", str(tmp_path / "out")],
                            prog="make_images")
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("make_images: error: ") and paths["train_images"] in err
    assert not os.path.exists(tmp_path / "out")

    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(errors.DataError, match="bad.gz: unreadable IDX file"):
        images.read_idx(str(bad))
    (tmp_path / "text").write_bytes(b"P5 6 6 255\n")
    with pytest.raises(errors.DataError, match="text: not an IDX file"):
        images.read_idx(str(tmp_path / "text"))
    with pytest.raises(errors.DataError, match="1 dimension.*expected 3"):
        images.read_idx(paths["train_labels"], 3)
    paths = write_set(str(tmp_path / "src2"), dict(data, test_labels=data["test_labels"][:-1]))
    with pytest.raises(errors.DataError, match="5 images but .*t10k-labels-idx1-ubyte.gz holds 4 labels"):
        images.load_split(paths["test_images"], paths["test_labels"])


# --------------------------------------------------------------------------- projection

def plane_point(p):
    """Where the ray from (0, 0, HEIGHT) through p + (0, 0, 1) meets z = 0 (line-plane intersection)."""
    a = np.array([0.0, 0.0, HEIGHT])
    b = np.asarray(p) + np.array([0.0, 0.0, 1.0])
    t = (0.0 - a[2]) / (b[2] - a[2])
    return (a + t * (b - a))[:2]


SIZE = 28  # the projection tests use MNIST's image size


def linear_image(a=0.1, bx=0.02, by=-0.03):
    """An image linear in the plane coordinates (bilinear sampling reproduces it exactly)."""
    xs = np.linspace(-1.5, 1.5, SIZE)        # column centres
    ys = np.linspace(1.5, -1.5, SIZE)        # row centres, top row at +1.5
    return a + bx * xs[None, :] + by * ys[:, None] + 0.5, (a + 0.5, bx, by)


def closed_form(points, coef):
    """The projection of linear_image at unit vectors ``points``: exact where the ray lands inside."""
    a, bx, by = coef
    out = np.zeros(len(points))
    for i, p in enumerate(points):
        if p[2] >= 0:
            continue  # northern hemisphere: no image
        x, y = plane_point(p)
        if abs(x) <= 1.5 and abs(y) <= 1.5:
            out[i] = a + bx * x + by * y
        else:
            out[i] = np.nan  # on the border ramp or outside: checked separately
    return out


def dh_points(res):
    j, k = np.arange(res), np.arange(res)
    polar, az = np.pi * j / res, 2 * np.pi * k / res
    pts = np.zeros((res, res, 3))
    for kk in range(res):
        for jj in range(res):
            pts[kk, jj] = [np.sin(polar[jj]) * np.cos(az[kk]), np.sin(polar[jj]) * np.sin(az[kk]),
                           np.cos(polar[jj])]
    return pts


def test_projection_matches_the_closed_form():
    res = 24
    img, coef = linear_image()
    m = images.project(img[None], res)[0]
    pts = dh_points(res).reshape(-1, 3)
    want = closed_form(pts, coef)
    got = m[..., 0].reshape(-1)
    north = pts[:, 2] >= 0
    np.testing.assert_array_equal(want[north], 0)
    inside = np.isfinite(want) & ~north  # rays landing on the image
    assert inside.sum() > 40
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-5)
    assert np.all(m.reshape(-1, 2)[north] == 0)            # both channels zero on the north
    far = np.array([p[2] < 0 and max(abs(plane_point(p))) > 1.5 + 3.0 / (SIZE - 1) for p in pts])
    assert far.sum() >= 8 and np.all(m.reshape(-1, 2)[far] == 0)
    np.testing.assert_allclose(m[..., 1].reshape(-1)[inside], 1.0, atol=1e-6)  # support channel
    # the point of the plane a south grid point's ray hits carries that grid point's value
    k, j = 5, 20
    x, y = plane_point(dh_points(res)[k, j])
    assert m[k, j, 0] == pytest.approx(coef[0] + coef[1] * x + coef[2] * y, abs=1e-5)


def test_uint8_images_are_scaled_to_unit_range():
    img = np.full((1, H, W), 255, np.uint8)
    m = images.project(img, 16)
    assert m.dtype == np.float32 and m.max() == pytest.approx(1.0) and m.min() == 0.0


def test_rotation_regime_is_a_rotation_of_the_map():
    res = 24
    img, coef = linear_image()
    # a rotation about z by k grid steps rolls the map along the azimuth axis (map_R(p) = map(R^T p))
    steps = 5
    q = np.array([np.cos(np.pi * steps / res), 0, 0, np.sin(np.pi * steps / res)])
    m0 = images.project(img[None], res)[0]
    mz = images.project(img[None], res, rotations.quaternion_to_matrix(q)[None])[0]
    np.testing.assert_allclose(mz, np.roll(m0, steps, axis=0), atol=1e-5)
    # a general rotation: the value at grid point p is the closed form at R^T p
    R = rotations.quaternion_to_matrix(rotations.sample_quaternions("so3", 1, 3))[0]
    m = images.project(img[None], res, R[None])[0]
    pts = dh_points(res).reshape(-1, 3)
    want = closed_form(pts @ R, coef)  # rows p^T R = (R^T p)^T
    inside = np.isfinite(want)
    assert inside.sum() > 40
    np.testing.assert_allclose(m[..., 0].reshape(-1)[inside], want[inside], atol=1e-5)
    # the image's mass is carried along: more than in the cap rotated away from the south pole
    assert np.abs(m - m0).max() > 0.1


def test_rotations_per_image_are_haar_distributed():
    q = images.rotation_quaternions("so3", 4000, 0, "train", 0)
    mats = rotations.quaternion_to_matrix(q)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", mats, mats), np.broadcast_to(np.eye(3), mats.shape),
                               atol=1e-9)
    assert np.allclose(np.linalg.det(mats), 1)
    assert np.abs(mats.mean(0)).max() < 0.05   # E[R] = 0 under the Haar measure
    # the same image gets the same rotation whatever the subset size
    np.testing.assert_array_equal(images.rotation_quaternions("so3", 10, 0, "train", 0), q[:10])
    assert not np.allclose(images.rotation_quaternions("so3", 10, 0, "test", 0), q[:10])


# --------------------------------------------------------------------------- records and sources

def test_records_round_trip_nr_and_r(tmp_path):
    data = tiny_set()
    src = str(tmp_path / "src")
    write_set(src, data)
    res = 16
    for rot in ("NR", "R"):
        out = str(tmp_path / rot)
        status = errors.run_cli(make_images.main, [src, "--out", out, "--rotation", rot, "--input_res",
                                                   str(res), "--n_train", "8", "--n_val", "2",
                                                   "--n_test", "4"])
        assert status == 0
        made = json.load(open(os.path.join(out, "manifest.json")))
        assert made["nchannels"] == 2 and made["dtype"] == "float32" and made["input_res"] == res
        assert made["counts"]["train"]["records"] == 8 and made["counts"]["val"]["records"] == 2
        assert sorted(os.listdir(out)) == ["classes.txt", "manifest.json", "test_000.tfrecord",
                                           "train_000.tfrecord", "val_000.tfrecord"]
        assert open(os.path.join(out, "classes.txt")).read().split() == ["0", "1", "2"]
        recs = [records.decode_example(r, (res, res, 2), "float32")
                for r in records.iter_records(os.path.join(out, "test_000.tfrecord"))]
        assert [r["fname"] for r in recs] == ["test/{:05d}".format(i) for i in range(4)]
        assert [r["y"] for r in recs] == list(data["test_labels"][:4]) and {r["idrot"] for r in recs} == {0}
        for i, r in enumerate(recs):
            mats = None if rot == "NR" else rotations.quaternion_to_matrix(r["rotation"].astype(np.float64))[None]
            if rot == "NR":
                np.testing.assert_array_equal(r["rotation"], [1, 0, 0, 0])
            np.testing.assert_allclose(r["x"], images.project(data["test_images"][i:i + 1].astype(np.uint8),
                                                              res, mats)[0], atol=1e-5)
        val = [records.decode_example(r)["fname"] for r in records.iter_records(os.path.join(out, "val_000.tfrecord"))]
        assert val == ["train/00008", "train/00009"]
    # the trainer's reader takes it with the fmnist params' layout flags
    from spherical_cnn import datasets, params
    args = params.parse(["@" + os.path.join(params.PARAMS_DIR, "fmnist-32.txt"), "--dset_dir",
                         str(tmp_path / "R"), "--input_res", str(res), "--n_classes", "3", "--logdir", str(tmp_path / "log")])
    ds = datasets.SphericalDataset(args)
    assert ds.input_shape == (res, res, 2) and ds.class_names == ["0", "1", "2"]
    x, y = next(iter(ds.eval("test")))
    assert x.shape == (4, res, res, 2)


def _ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        header = "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n".format(name, 0, 0, 0, "100644", len(data))
        out += header.encode("ascii") + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_deb_source_and_atomic_output(tmp_path, monkeypatch):
    data = tiny_set(1)
    src = write_set(str(tmp_path / "src"), data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for role, path in src.items():
            tar.add(path, arcname="./usr/share/datasets/fashion-mnist/" + os.path.basename(path))
    deb = tmp_path / "dataset-fashion-mnist_0_all.deb"
    deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", buf.getvalue())]))
    out = str(tmp_path / "out")
    made = images.build_from_source(str(deb), out, input_res=8, n_val=0, progress=False)
    assert made["classes"] == ["0", "1", "2"] and made["counts"]["test"]["records"] == N_TEST
    assert made["input"] == deb.name
    assert made["source"]["train_images"]["file"] == "train-images-idx3-ubyte.gz"

    # interrupted while writing: the old dataset stays, nothing half-written is left
    before = sorted(os.listdir(out))
    calls = []

    def boom(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt
    monkeypatch.setattr(images, "project", boom)
    with pytest.raises(KeyboardInterrupt):
        images.build_from_source(str(deb), out, input_res=8, n_val=0, progress=False, overwrite=True)
    assert calls and sorted(os.listdir(out)) == before
    assert [f for f in os.listdir(tmp_path) if "partial" in f] == []
    with pytest.raises(FileExistsError, match="not empty"):
        images.build_from_source(str(deb), out, input_res=8, n_val=0, progress=False)
    (tmp_path / "notadeb.deb").write_bytes(b"garbage")
    with pytest.raises(errors.UserError, match="notadeb.deb: not a Debian package"):
        images.build_from_source(str(tmp_path / "notadeb.deb"), str(tmp_path / "o2"), progress=False)


def test_download_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get at all
    status = errors.run_cli(make_images.main, ["--out", str(tmp_path / "out")], prog="make_images")
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("make_images: error: no package manager: apt-get is not installed")
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'Reading package lists...'\n"
                    "echo 'E: Unable to locate package dataset-fashion-mnist' >&2\nexit 100\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    status = errors.run_cli(make_images.main, ["--out", str(tmp_path / "out")], prog="make_images")
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "package dataset-fashion-mnist not found" in err
    assert not os.path.exists(tmp_path / "out")
