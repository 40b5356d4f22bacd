"""The S^2 surface-normal task (spherical_regression.tasks.normals): the normal
convention, the (y, z, x) sign layout on real targets, masking, metrics, the cache
and a --quick study through the regression CLI."""
import json

import numpy as np
import pytest
import trimesh

from spherical_regression import heads, signs
from spherical_regression.render import OrthoRenderer
from spherical_regression.rotations import axis_angle_to_matrix
from spherical_regression.tasks import normals, normals_model


def _pixel_xy(size):
    """Renderer-frame (x, y) of the pixel centres, ``(size, size)`` each, row 0 at y = +1."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(c, -c)


def test_frame_conversion_round_trip():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(5, 4, 3))
    t = normals.to_original_frame(n)
    np.testing.assert_array_equal(t[..., 0], -n[..., 1])  # y down
    np.testing.assert_array_equal(t[..., 1], -n[..., 2])  # z forward
    np.testing.assert_array_equal(t[..., 2], n[..., 0])   # x right
    np.testing.assert_allclose(normals.from_original_frame(t), n)


def test_plane_facing_the_camera():
    """A thin slab facing the camera: every foreground pixel has target (0, -1, 0) in
    (y, z, x); the background has mask 0 and target 0."""
    slab = trimesh.creation.box((1.2, 1.2, 0.2))
    image, target, mask = normals.render_scene(slab, 16, "depth")
    fg = mask > 0
    assert image.shape == (16, 16, 1) and target.shape == (16, 16, 3) and mask.shape == (16, 16)
    x, y = _pixel_xy(16)
    np.testing.assert_array_equal(fg, (np.abs(x) < 0.6) & (np.abs(y) < 0.6))
    np.testing.assert_allclose(target[fg], np.tile([0.0, -1.0, 0.0], (fg.sum(), 1)), atol=1e-6)
    assert not target[~fg].any() and not image[~fg].any()
    np.testing.assert_allclose(image[fg, 0], (0.1 + 1.0) / 2.0, atol=1e-6)  # depth of z = 0.1


def test_sphere_normals_are_the_point_directions():
    """On a sphere the normal at the visible point (x, y, sqrt(r^2 - x^2 - y^2)) is its
    direction; converted, it has y and x opposite/equal to the pixel's, z < 0."""
    r = 0.9
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    size = 24
    _, target, mask = normals.render_scene(sphere, size, "both")
    x, y = _pixel_xy(size)
    inner = (x ** 2 + y ** 2) < (0.8 * r) ** 2
    assert (mask[inner] == 1).all() and (mask[(x ** 2 + y ** 2) > r ** 2] == 0).all()
    z = np.sqrt(np.clip(r ** 2 - x ** 2 - y ** 2, 0, None))
    expected = normals.to_original_frame(np.stack([x, y, z], -1) / r)
    cos = np.sum(target[inner] * expected[inner], axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 4.0  # facets of the icosphere
    np.testing.assert_allclose(np.linalg.norm(target[mask > 0], axis=-1), 1.0, atol=1e-5)
    assert (target[mask > 0][:, 1] <= 0).all()
    # a pixel up and to the right: OpenCV y (down) < 0, x > 0
    i, j = size // 4, 3 * size // 4
    assert target[i, j, 0] < 0 and target[i, j, 2] > 0


@pytest.mark.parametrize("axis,angle", [((1, 0, 0), 0.5), ((0, 1, 0), -0.7),
                                        ((1, 1, 0), 0.9), ((1, 0, 0), 2.6)])
def test_box_face_tilts_with_the_rotation(axis, angle):
    """A pixel near the centre (off the faces' diagonals) of a rotated slab sees a face whose normal is +-R e_z (the one
    facing the camera); the render's normal and its conversion follow R."""
    slab = trimesh.creation.box((1.2, 1.2, 0.2))
    rot = axis_angle_to_matrix(np.asarray(axis, float) / np.linalg.norm(axis), angle)
    full = OrthoRenderer(slab, size=17, channels="depth").render_full(rot)
    face = rot @ np.array([0.0, 0.0, 1.0])
    face = face if face[2] >= 0 else -face
    np.testing.assert_allclose(full["normals"][6, 9], face, atol=1e-6)
    assert full["mask"][6, 9] == 1
    t = normals.to_original_frame(full["normals"][6, 9])
    np.testing.assert_allclose(t, [-face[1], -face[2], face[0]], atol=1e-6)


def test_render_full_keeps_render_and_mask_is_the_hit():
    from spherical_cnn.data import synthetic
    mesh = synthetic.make_mesh("chair", 1)
    r = OrthoRenderer(mesh, size=16, channels="both")
    rot = axis_angle_to_matrix(np.array([0.3, 0.8, 0.5]) / np.linalg.norm([0.3, 0.8, 0.5]), 1.1)
    full = r.render_full(rot)
    np.testing.assert_array_equal(r.render(rot), full["image"])
    np.testing.assert_array_equal(full["mask"] > 0, full["image"][..., 0] > 0)  # shade >= 0.15
    fg = full["mask"] > 0
    np.testing.assert_allclose(np.linalg.norm(full["normals"][fg], axis=-1), 1.0, atol=1e-5)
    assert (full["normals"][fg][:, 2] >= 0).all() and not full["normals"][~fg].any()


def test_split_arrays_and_sign_layout_round_trip():
    """Real targets: unit with z <= 0 on the foreground; the 'normal_yzx' labels are the
    product-order classes of sign(y), sign(x) (0 counts as -1), and sexp_encode ->
    sexp_decode gives the targets back."""
    data = normals.render_split("test", 6, size=16, input_channels="both", seed=2)
    assert data["inputs"].shape == (6, 16, 16, 2) and data["inputs"].dtype == np.float32
    assert data["targets"].shape == (6, 16, 16, 3) and data["mask"].shape == (6, 16, 16)
    t = data["targets"][data["mask"] > 0]
    assert len(t) > 100
    np.testing.assert_allclose(np.linalg.norm(t, axis=-1), 1.0, atol=1e-5)
    assert (t[:, 1] <= 0).all()
    layout = signs.SignLayout.preset("normal_yzx")
    labels = layout.labels(t)
    np.testing.assert_array_equal(labels, 2 * (t[:, 0] > 0) + (t[:, 2] > 0))
    assert set(labels.tolist()) == {0, 1, 2, 3}
    logits, sign_logits = heads.sexp_encode(t, sign_layout="normal_yzx")
    out = np.concatenate([np.asarray(heads.sexp_abs(logits.astype(np.float32))),
                          sign_logits.astype(np.float32)], axis=-1)
    decoded = np.asarray(heads.sexp_decode(out, 3, sign_layout="normal_yzx"))
    np.testing.assert_allclose(decoded, t, atol=1e-5)


def test_multi_shape_scene_fits_the_unit_ball():
    rng = np.random.default_rng(5)
    scene = normals.make_scene(rng, shapes_per_scene=3, classes="bed,table")
    assert np.linalg.norm(scene.vertices, axis=1).max() <= 1.0
    _, _, mask = normals.render_scene(scene, 16)
    assert mask.sum() > 10


def test_metrics_against_numpy():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(3, 5, 4, 3))
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    p = t + 0.4 * rng.normal(size=t.shape)
    mask = (rng.random((3, 5, 4)) > 0.3).astype(np.float32)
    got = normals_model.normal_metrics(normals_model.pixel_errors(t, p, mask))
    fg = mask > 0
    pu = p[fg] / np.linalg.norm(p[fg], axis=-1, keepdims=True)
    deg = np.degrees(np.arccos(np.clip(np.sum(t[fg] * pu, -1), -1, 1)))
    s = np.sort(deg)
    m = len(s)
    median = s[m // 2] if m % 2 else 0.5 * (s[m // 2 - 1] + s[m // 2])
    assert got["MedErr"] == pytest.approx(median, abs=1e-6)
    assert got["MeanErr"] == pytest.approx(deg.mean(), abs=1e-6)
    for th in (11.25, 22.5, 30.0):
        assert got[f"<{th:g}"] == pytest.approx(np.mean(deg < th))
    assert list(got) == list(normals.METRICS)
    with pytest.raises(ValueError, match="no foreground"):
        normals_model.normal_metrics(normals_model.pixel_errors(t, p, np.zeros_like(mask)))


@pytest.mark.parametrize("head", ["sexp", "sflat", "direct"])
def test_background_pixels_count_nowhere(head):
    """Changing the predictions (or targets) on background pixels changes neither the
    mask-weighted loss of the runner nor the metrics."""
    import tensorflow as tf
    data = normals.render_split("train", 4, size=8, seed=3)
    model = normals_model.NormalNet(head, 1, width=4)
    parts, out = model.forward_parts((tf.constant(data["inputs"]),))
    assert parts[0].shape == (4, 8, 8, 3)
    out = out.numpy()
    bg = data["mask"] == 0
    assert bg.any() and (~bg).any()
    changed = out.copy()
    changed[bg] = np.random.default_rng(0).normal(size=changed[bg].shape) * 5
    loss = normals_model.loss_for(head)
    w = data["mask"]

    def weighted(o):
        per = loss(tf.constant(data["targets"]), tf.constant(o)).numpy()
        assert per.shape == (4, 8, 8)
        return float((per * w).sum() / w.sum())

    assert weighted(changed) == pytest.approx(weighted(out), rel=1e-6)
    decode = lambda o: np.asarray(model.head.decode(tf.constant(o)))  # noqa: E731
    a = normals_model.normal_metrics(normals_model.pixel_errors(data["targets"], decode(out), w))
    b = normals_model.normal_metrics(normals_model.pixel_errors(data["targets"], decode(changed), w))
    assert a == b
    test = dict(inputs=(data["inputs"],), targets=data["targets"], weights=w)
    got = normals_model.evaluate(model, test)
    noisy = dict(test, targets=np.where(bg[..., None], 1.0, data["targets"]).astype(np.float32))
    assert normals_model.evaluate(model, noisy) == got
    assert got == pytest.approx(a, abs=1e-4)


def test_cache_reuse(tmp_path, monkeypatch):
    kw = dict(cache_dir=str(tmp_path), size=8, input_channels="shade", seed=4)
    a = normals.load_or_render("test", 3, **kw)
    assert len(list(tmp_path.glob("normals_test_*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("rendered again")
    monkeypatch.setattr(normals, "render_split", fail)
    b = normals.load_or_render("test", 3, **kw)
    for k in ("inputs", "targets", "mask"):
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(AssertionError, match="rendered again"):
        normals.load_or_render("test", 3, **dict(kw, input_channels="depth"))


def test_bad_flags():
    from spherical_cnn.cli import regression
    for argv in (["--image_size", "15"], ["--shapes_per_scene", "0"], ["--classes", "teapot"],
                 ["--head_hidden", "-1"]):
        with pytest.raises(SystemExit):
            regression.parse_args(["normals", "--quick"] + argv)


def test_quick_study_end_to_end(tmp_path, capsys):
    from spherical_cnn.cli import regression
    out, data = tmp_path / "out", tmp_path / "data"
    argv = ["normals", "--quick", "--seeds", "0", "--out", str(out), "--data_dir", str(data)]
    assert regression.main(argv) == 0
    text = capsys.readouterr().out
    for name in ("results.json", "summary.csv", "grad_norm.png"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["summary"]) == ["sexp", "sflat", "direct"]
    for run in saved["runs"]:
        for key in normals.METRICS:
            assert np.isfinite(run[key])
        assert 0 <= run["MedErr"] <= 180 and 0 <= run["<30"] <= 1
    assert "S_exp" in text and "MedErr" in text
    assert regression.main(argv) == 0
    assert capsys.readouterr().out.count("finished earlier") == 3


def test_zero_prediction_is_the_worst_error():
    t = np.array([[[[0.0, -1.0, 0.0], [0.6, -0.8, 0.0]]]])
    p = np.array([[[[0.0, 0.0, 0.0], [0.6, -0.8, 0.0]]]])
    np.testing.assert_allclose(normals_model.pixel_errors(t, p, np.ones((1, 1, 2))), [np.pi, 0.0],
                               atol=1e-7)


@pytest.mark.parametrize("head,width", [("sexp", 3 + 4), ("sflat", 3), ("direct", 3)])
def test_model_output_per_pixel(head, width):
    """Any even image size; a hidden layer per head branch keeps the per-pixel layout."""
    x = np.random.default_rng(0).random((2, 10, 6, 2)).astype(np.float32)
    model = normals_model.NormalNet(head, 2, width=4, head_hidden=5)
    assert tuple(model((x,)).shape) == (2, 10, 6, width)
    unit = model.predict_normals(x)
    assert unit.shape == (2, 10, 6, 3)
