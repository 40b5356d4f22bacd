"""Band-limited projection (``make-images --band_limit K``) against pyshtools and rotations."""
import os

import numpy as np
import pytest

from spherical_cnn.data import images, rotations


def _images(count, seed=0):
    """Smooth-edged blobs on a 28 x 28 black background (a shape, as in Fashion-MNIST)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    out = []
    for _ in range(count):
        cy, cx, r = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(4, 9)
        out.append(255 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r))
    return np.asarray(out, dtype=np.uint8)


def test_band_limit_equals_pyshtools_truncation():
    """The result is the fine map's expansion cut to degrees < res/2, sampled on the res grid:
    pyshtools (polar-first grids, its own DH quadrature) computes the same."""
    pyshtools = pytest.importorskip("pyshtools")
    res, fine = 16, 64
    maps = images.project(_images(2), fine)  # (2, 64, 64, 2)
    got = images.band_limit(maps, res)
    for i in range(2):
        for c in range(2):
            coeffs = pyshtools.expand.SHExpandDH(np.ascontiguousarray(maps[i, :, :, c].T.astype(np.float64)),
                                                 sampling=1)
            cut = coeffs[:, :res // 2, :res // 2]
            want = pyshtools.expand.MakeGridDH(cut, sampling=1, lmax=res // 2 - 1).T
            np.testing.assert_allclose(got[i, :, :, c], want, atol=2e-5 * np.abs(want).max())


def test_band_limited_rotation_is_exact_and_plain_sampling_is_not():
    """Band-limited R maps are the NR map rotated in the spectral domain, to float32
    rounding; maps sampled directly on the rotated grid are not."""
    from spherical_cnn.rotation import rotate
    res = 16
    imgs = _images(4, seed=1)
    quats = rotations.sample_quaternions("so3", len(imgs), np.random.default_rng(3))
    mats = rotations.quaternion_to_matrix(quats)

    def error(project):
        nr, r = project(imgs, res, None), project(imgs, res, mats)
        rotated = np.asarray(rotate(nr.astype(np.float64), mats.astype(np.float64), scalar_first=True))
        return np.linalg.norm(rotated - r) / np.linalg.norm(r)

    plain = error(images.project)
    limited = error(lambda x, n, m: images.project_band_limited(x, n, m, oversample=2))
    assert limited < 1e-6 and plain > 0.02, (limited, plain)


def test_band_limited_rotation_turns_the_way_the_projection_does():
    """Independent of ``rotate``'s own convention: the exactly rotated map is close to the
    projection of the rotated grid made band-limited from a 4x finer grid (they differ only
    by that grid's aliasing), and far from the unrotated map."""
    res = 16
    imgs = _images(4, seed=4)
    mats = rotations.quaternion_to_matrix(
        rotations.sample_quaternions("so3", len(imgs), np.random.default_rng(5)))
    exact = images.project_band_limited(imgs, res, mats, oversample=2)
    via_grid = images.band_limit(images.project(imgs, 4 * res, mats), res)
    unrotated = images.project_band_limited(imgs, res, None, oversample=2)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    assert rel(exact, via_grid) < 0.03 and rel(unrotated, via_grid) > 0.3, (
        rel(exact, via_grid), rel(unrotated, via_grid))


def test_build_with_band_limit_records_and_manifest(tmp_path):
    paths = {}
    for role, arr in (("train_images", _images(6)), ("train_labels", np.arange(6) % 3),
                      ("test_images", _images(3, seed=2)), ("test_labels", np.arange(3) % 3)):
        paths[role] = str(tmp_path / role)
        images.write_idx(paths[role], arr)
    made = images.build(paths, str(tmp_path / "out"), input_res=16, n_val=2, band_limit=2,
                        progress=False)
    assert made["protocol"]["band_limit"] == 2
    from spherical_cnn.data import records
    first = records.decode_example(next(records.iter_records(str(tmp_path / "out" / "test_000.tfrecord"))),
                                   shape=(16, 16, 2), dtype="float32")
    np.testing.assert_allclose(first["x"], images.project_band_limited(_images(3, seed=2)[:1], 16)[0],
                               atol=1e-6)
    with pytest.raises(ValueError, match="band_limit"):
        images.build(paths, str(tmp_path / "bad"), input_res=16, band_limit=-1, progress=False)


def test_band_limited_r_set_is_the_nr_set_rotated(tmp_path):
    """An R set built band-limited holds, record by record, the NR set's map rotated by the
    record's own quaternion: a model trained on either sees no trace of how a map was made."""
    from spherical_cnn.data import records
    from spherical_cnn.rotation import rotate
    paths = {}
    for role, arr in (("train_images", _images(5)), ("train_labels", np.arange(5) % 2),
                      ("test_images", _images(4, seed=6)), ("test_labels", np.arange(4) % 2)):
        paths[role] = str(tmp_path / role)
        images.write_idx(paths[role], arr)
    sets = {}
    for mode in ("NR", "R"):
        made = images.build(paths, str(tmp_path / mode), rotation=mode, input_res=16, n_val=1,
                            band_limit=2, progress=False)
        sets[mode] = [records.decode_example(raw, shape=(16, 16, 2), dtype="float32")
                      for raw in records.iter_records(str(tmp_path / mode / "test_000.tfrecord"))]
        assert made["protocol"]["rotation_method"] == (
            "none" if mode == "NR" else "band-limited unrotated map rotated exactly in the spherical-harmonic domain")
    nr = np.stack([d["x"] for d in sets["NR"]]).astype(np.float64)
    quats = np.stack([d["rotation"] for d in sets["R"]]).astype(np.float64)
    assert [d["fname"] for d in sets["NR"]] == [d["fname"] for d in sets["R"]]
    r = np.stack([d["x"] for d in sets["R"]])
    want = np.asarray(rotate(nr, quats, scalar_first=True))
    assert np.linalg.norm(r - want) / np.linalg.norm(want) < 1e-6
    assert np.linalg.norm(r - nr) / np.linalg.norm(nr) > 0.3  # the rotations are not the identity


@pytest.mark.slow
def test_predict_projects_as_the_training_set_was(tmp_path, capsys):
    """A model trained on a band-limited image set keeps how its inputs were made
    (input.json); predict projects a PNG the same way, not the protocol's plain way."""
    from PIL import Image
    from spherical_cnn import errors, trained_run, training
    from spherical_cnn.cli import predict
    paths = {}
    for role, arr in (("train_images", _images(12)), ("train_labels", np.arange(12) % 2),
                      ("test_images", _images(4, seed=2)), ("test_labels", np.arange(4) % 2)):
        paths[role] = str(tmp_path / role)
        images.write_idx(paths[role], arr)
    images.build(paths, str(tmp_path / "set"), input_res=16, n_val=2, band_limit=2, progress=False)
    logdir = str(tmp_path / "run")
    training.run(["--model", "two_branch", "--nfilters", "4,4", "--pool_layers", "0,1",
                  "--concat_branches", "0,1", "--n_filter_params", "4", "--batch_norm", "--transform_method",
                  "sep", "--spectral_pool", "--real_inputs", "--input_res", "16", "--nchannels", "2",
                  "--dtype", "float32", "--n_classes", "2", "--dset", "from_cached_tfrecords",
                  "--dset_dir", str(tmp_path / "set"), "--logdir", logdir, "--n_epochs", "1",
                  "--train_bsize", "4", "--progress", "none", "--tensorboard_histograms", "0"])
    shape, band_limit = predict.image_projection(logdir, (99, 99))
    assert (shape, band_limit) == ((28, 28), 2)
    img = _images(1, seed=5)[0]
    Image.fromarray(img).save(tmp_path / "shape.png")
    args, model, names = trained_run.load(logdir)
    rows = predict.image_rows([str(tmp_path / "shape.png")], args, print, shape, band_limit=band_limit)
    want = images.project_band_limited(img[None], 16, None, 2)[0]
    np.testing.assert_allclose(rows[0]["x"], want, atol=1e-6)
    assert np.abs(images.project(img[None], 16)[0] - want).max() > 0.05  # not the plain projection
    assert errors.run_cli(predict.main, ["--logdir", logdir, "--images", str(tmp_path / "shape.png")]) == 0
    assert str(tmp_path / "shape.png") + ": " in capsys.readouterr().out
    # a damaged description is one line naming it
    with open(os.path.join(logdir, training.INPUT_FILE), "w") as f:
        f.write("{not json")
    assert errors.run_cli(predict.main, ["--logdir", logdir, "--images", str(tmp_path / "shape.png")]) == 2
    assert "input.json: unreadable description" in capsys.readouterr().err
