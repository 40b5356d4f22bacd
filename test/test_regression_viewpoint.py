"""The S^1 viewpoint task (spherical_regression.tasks.viewpoint): camera convention,
data, cache, metrics, model and a --quick study through the regression CLI."""
import json
import math

import numpy as np
import pytest
import trimesh

from spherical_regression import heads, signs
from spherical_regression.render import OrthoRenderer
from spherical_regression.tasks import viewpoint as vp
from spherical_regression.tasks import viewpoint_model as vpm


def _look_at(azimuth, elevation):
    """Rows (right, up, back) of a camera at the spherical direction (a, e) looking at
    the origin with world up +z: the world-to-camera rotation, built without rot_x/rot_z."""
    c = np.array([math.cos(elevation) * math.cos(azimuth),
                  math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
    forward = -c
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, c])


def _pixel(point_cam, size):
    """(row, col) of a camera-frame point in an image of render.py's layout."""
    return (1.0 - point_cam[1]) / 2.0 * size - 0.5, (point_cam[0] + 1.0) / 2.0 * size - 0.5


@pytest.mark.parametrize("a,e", [(0.0, 0.3), (1.0, 0.1), (2.5, 0.7), (4.0, -0.4), (6.0, 1.2)])
def test_view_rotation_is_the_look_at_camera(a, e):
    r = vp.view_rotation(a, e)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r, _look_at(a, e), atol=1e-12)
    np.testing.assert_allclose(r @ vp.camera_direction(a, e), [0, 0, 1], atol=1e-12)
    up = r @ np.array([0.0, 0.0, 1.0])  # the object's up axis, in the image
    assert up[0] == pytest.approx(0.0, abs=1e-12) and up[1] > 0


@pytest.mark.parametrize("a", [0.0, math.pi / 2, math.pi, 3 * math.pi / 2, 1.0])
def test_render_puts_a_marker_where_the_camera_sees_it(a):
    """A small ball at p = (0.6, 0, 0.2) shows up at the pixel of the look-at projection;
    seen from +y (a = pi/2) the +x side is on the image's left, from -y on its right
    (the azimuth turns counter-clockwise seen from above)."""
    size, e, p = 48, 0.35, np.array([0.6, 0.0, 0.2])
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.15).apply_translation(p)
    depth = OrthoRenderer(ball, size=size, channels="depth").render(vp.view_rotation(a, e))[..., 0]
    rows, cols = np.nonzero(depth > 0)
    assert len(rows) > 20
    row, col = _pixel(_look_at(a, e) @ p, size)
    assert abs(rows.mean() - row) < 0.5 and abs(cols.mean() - col) < 0.5
    if a == math.pi / 2:
        assert cols.mean() < size / 2 - 5
    if a == 3 * math.pi / 2:
        assert cols.mean() > size / 2 + 5


def test_chair_back_switches_sides_between_a_and_a_plus_pi():
    """The chair's back (built at -y, the tallest part) is on the image's left seen from
    +x (a = 0) and on its right seen from -x (a = pi)."""
    from spherical_cnn.data import synthetic
    mesh = synthetic.make_mesh("chair", 0)
    top_y = mesh.vertices[mesh.vertices[:, 2] > mesh.vertices[:, 2].max() - 0.1, 1].mean()
    assert top_y < mesh.vertices[:, 1].mean()  # the back is the top part, at -y
    r = OrthoRenderer(mesh, size=48, channels="depth")
    for a, left in ((0.0, True), (math.pi, False)):
        mask = r.render(vp.view_rotation(a, math.radians(20)))[..., 0] > 0
        rows = np.nonzero(mask.any(axis=1))[0]
        top = mask[rows[0]:rows[0] + 6]  # the highest rows of the silhouette
        centre = np.nonzero(mask)[1].mean()
        assert (np.nonzero(top)[1].mean() < centre) == left


def test_split_arrays_targets_and_meshes():
    d = vp.render_split("train", 2, 3, size=16, elevation_deg=(5.0, 30.0),
                        classes=("chair", "sofa"), seed=4)
    n = 2 * 2 * 3
    assert d["images"].shape == (n, 16, 16, 2) and d["images"].dtype == np.float32
    assert 0.0 <= d["images"].min() and d["images"].max() <= 1.0
    assert d["targets"].shape == (n, 2) and d["targets"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d["targets"], axis=1), 1.0, atol=1e-6)
    a = d["azimuth"].astype(np.float64)
    assert ((0 <= a) & (a < 2 * np.pi)).all()
    np.testing.assert_allclose(np.arctan2(d["targets"][:, 1], d["targets"][:, 0]) % (2 * np.pi),
                               a, atol=1e-5)
    e = np.degrees(d["elevation"])
    assert ((5.0 <= e) & (e <= 30.0)).all()
    assert d["class_names"] == ["chair", "sofa"]
    np.testing.assert_array_equal(d["class_ids"], np.repeat([0, 0, 1, 1], 3))
    np.testing.assert_array_equal(d["mesh_ids"], np.repeat(np.arange(4), 3))
    # every view shows its object: a non-empty depth silhouette
    assert ((d["images"][..., 1] > 0).mean(axis=(1, 2)) > 0.02).all()


def test_train_and_test_meshes_differ():
    from spherical_regression.tasks.rotation_data import _mesh_items
    _, train = _mesh_items("train", None, 2, 0, ["chair"])
    _, test = _mesh_items("test", None, 2, 0, ["chair"])
    train_v = [load().vertices for _, load in train]
    for _, load in test:
        v = load().vertices
        assert all(t.shape != v.shape or not np.allclose(t, v) for t in train_v)


def test_biternion_sign_layout_on_the_targets():
    """The biternion layout's label is the quadrant of a; encoding the targets as an S_exp
    output and decoding it gives them back."""
    a = np.random.default_rng(0).uniform(0, 2 * np.pi, 200)
    y = vp.biternions(a)
    layout = signs.SignLayout.preset("biternion")
    np.testing.assert_array_equal(layout.labels(y), np.floor(a / (np.pi / 2)).astype(int))
    logits, sign_logits = heads.sexp_encode(y, sign_layout="biternion")
    out = np.concatenate([heads.sexp_abs(logits.astype(np.float32)), sign_logits], -1)
    decoded = np.asarray(heads.sexp_decode(out.astype(np.float32), 2, sign_layout="biternion"))
    np.testing.assert_allclose(decoded, y, atol=1e-5)
    # the S_exp loss is lower at that output than at one with the sign class shifted
    loss = vpm.make_loss("sexp")
    wrong = out.copy()
    wrong[:, 2:] = np.roll(out[:, 2:], 1, axis=1)
    assert (np.asarray(loss(y, out.astype(np.float32)))
            < np.asarray(loss(y, wrong.astype(np.float32)))).all()


def test_cache_reuse_and_key_change(tmp_path, monkeypatch):
    kw = dict(meshes_per_class=1, views_per_mesh=2, size=12, classes=("bed",), seed=0,
              cache_dir=str(tmp_path))
    a = vp.load_split("test", **kw)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    manifest = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert manifest["split"] == "test" and manifest["elevation_deg"] == [10.0, 40.0]

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again instead of reading the cache")
    monkeypatch.setattr(vp, "render_split", no_render)
    b = vp.load_split("test", **kw)
    for key in ("images", "targets", "azimuth", "elevation", "class_ids", "mesh_ids"):
        np.testing.assert_array_equal(a[key], b[key])
    assert b["class_names"] == ["bed"]
    monkeypatch.undo()
    vp.load_split("test", elevation_deg=(0.0, 10.0), **kw)  # another setting, another key
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_azimuth_metrics_against_numpy():
    rng = np.random.default_rng(1)
    a_true = rng.uniform(0, 2 * np.pi, 301)
    a_pred = a_true + rng.normal(0, 0.4, 301)
    a_pred[:20] += np.pi  # some flipped views
    scale = rng.uniform(0.2, 3.0, (301, 1))  # predictions need not be unit
    got = vpm.azimuth_metrics(vp.biternions(a_true), vp.biternions(a_pred) * scale)
    err = np.abs((a_pred - a_true + np.pi) % (2 * np.pi) - np.pi)
    assert got["MedErr"] == pytest.approx(np.degrees(np.sort(err)[150]), abs=1e-3)
    for k, t in (("Acc@pi/6", np.pi / 6), ("Acc@pi/12", np.pi / 12), ("Acc@pi/24", np.pi / 24)):
        assert got[k] == pytest.approx(np.mean(err < t), abs=1e-9)
    assert set(got) == set(vp.METRICS)


@pytest.mark.parametrize("head,widths", [("sexp", [(4, 2), (4, 4)]), ("sflat", [(4, 2)]),
                                         ("direct", [(4, 2)])])
def test_model_parts_and_outputs(head, widths):
    model = vpm.build_model(head, 16, 2, width=4, feature_units=8)
    images = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 2)).astype(np.float32)
    parts, out = model.forward_parts((images,), training=False)
    assert [tuple(p.shape) for p in parts] == widths
    assert out.shape[-1] == 6 if head == "sexp" else out.shape[-1] == 2
    pred = model.predict_biternions(images, batch_size=3)
    assert pred.shape == (4, 2)
    np.testing.assert_allclose(np.linalg.norm(pred, axis=1), 1.0, atol=1e-5)
    loss = vpm.make_loss(head)(vp.biternions(np.zeros(4)), out)
    assert tuple(loss.shape) == (4,)


@pytest.mark.parametrize("flags,message", [
    (["--elevation", "40,10"], "--elevation"), (["--elevation", "x"], "--elevation"),
    (["--classes", "chair,dragon"], "dragon"), (["--image_size", "0"], "--image_size")])
def test_bad_flags_are_one_line_errors(capsys, flags, message):
    from spherical_cnn.cli import regression
    with pytest.raises(SystemExit) as e:
        regression.parse_args(["viewpoint", "--quick"] + flags)
    assert e.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_quick_study_through_the_cli(tmp_path, capsys):
    from spherical_cnn.cli import regression
    argv = ["viewpoint", "--quick", "--seeds", "0", "--out", str(tmp_path / "out"),
            "--data_dir", str(tmp_path / "data")]
    assert regression.main(argv) == 0
    out = tmp_path / "out"
    for name in ("results.json", "summary.csv", "grad_norm.png"):
        assert (out / name).stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    assert [r["head"] for r in res["runs"]] == ["sexp", "sflat", "direct"]
    assert set(res["summary"]) == {"sexp", "sflat", "direct"}
    for r in res["runs"]:
        assert 0.0 <= r["MedErr"] <= 180.0 and len(r["history"]) == vp.QUICK["epochs"]
        assert all(0.0 <= r[k] <= 1.0 for k in vp.METRICS[1:])
    assert res["settings"]["config"]["abs_loss"] == "log_likelihood"
    assert len(list((tmp_path / "data").glob("viewpoint_*.npz"))) == 2
    capsys.readouterr()
    assert regression.main(argv) == 0  # everything reused
    assert capsys.readouterr().out.count("finished earlier") == 3
