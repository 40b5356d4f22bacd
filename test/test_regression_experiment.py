"""Rendering, the rotation dataset and a tiny end-to-end run of the train_regression command."""
import json

import numpy as np
import pytest
import tensorflow as tf

import spherical_regression as sr
from spherical_regression import losses
from spherical_regression.tasks import rotation, rotation_data
from spherical_regression.render import OrthoRenderer


def test_public_api_exports():
    for name in sr.__all__:
        assert hasattr(sr, name), name


def test_old_module_names_are_the_task_modules():
    """experiment / dataset moved to tasks/; the old names are the same module objects."""
    from spherical_regression import dataset as old_dataset
    from spherical_regression import experiment as old_experiment
    assert old_experiment is rotation and old_dataset is rotation_data
    assert old_dataset._mesh_items is rotation_data._mesh_items


def test_render_rotation_about_view_axis_rotates_the_image():
    """Depth is invariant under a rotation about the camera axis z; a +90 deg turn of
    the object turns the image counter-clockwise (np.rot90)."""
    from spherical_cnn.data import synthetic
    mesh = synthetic.make_mesh("chair", 0)
    r = OrthoRenderer(mesh, size=32, channels="depth")
    base = r.render(np.eye(3))[..., 0]
    turned = r.render(sr.axis_angle_to_matrix(np.array([0.0, 0, 1]), np.pi / 2))[..., 0]
    assert (base > 0).mean() > 0.05
    mismatch = np.abs(turned - np.rot90(base)) > 1e-4
    assert mismatch.mean() < 0.01  # a few silhouette pixels may differ at ray/edge ties
    with pytest.raises(ValueError, match="unit ball"):
        OrthoRenderer(mesh.copy().apply_scale(2.0))


def test_dataset_labels_cache_and_manifest(tmp_path):
    kw = dict(cache_dir=str(tmp_path), meshes_per_class=1, size=16, channels="shade", seed=3)
    a = rotation_data.load_or_render("test", 2, **kw)
    n = 2 * len(a["class_names"])
    assert a["images"].shape == (n, 16, 16, 1) and a["quaternions"].shape == (n, 4)
    np.testing.assert_allclose(np.linalg.norm(a["quaternions"], axis=1), 1.0, atol=1e-6)
    assert (a["quaternions"][:, 0] >= 0).all()
    manifests = list(tmp_path.glob("*.json"))
    assert len(manifests) == 1
    m = json.loads(manifests[0].read_text())
    assert m["views_per_mesh"] == 2 and m["num_images"] == n and m["mesh_source"] == "synthetic"
    b = rotation_data.load_or_render("test", 2, **kw)  # from the cache
    np.testing.assert_array_equal(a["images"], b["images"])
    assert b["class_names"] == a["class_names"]
    with pytest.raises(ValueError, match="split"):
        rotation_data.render_split("val", 2)


def test_dataset_class_subset_and_cache_key(tmp_path):
    """A class subset renders only those classes, with the same meshes and labels as the
    full set restricted to them, and caches under its own key."""
    from spherical_cnn.data import synthetic
    kw = dict(cache_dir=str(tmp_path), meshes_per_class=1, size=8, channels="depth", seed=1)
    pick = ["table", "airplane"]
    sub = rotation_data.load_or_render("test", 1, classes=pick, **kw)
    assert sub["class_names"] == sorted(pick, key=list(synthetic.CLASS_NAMES).index)
    assert sorted(set(sub["class_ids"].tolist())) == [0, 1] and len(sub["images"]) == 2
    full = rotation_data.load_or_render("test", 1, **kw)
    assert len(full["class_names"]) == len(synthetic.CLASS_NAMES) > 2
    for k, name in enumerate(sub["class_names"]):
        # the subset's class draws the same mesh as in the full set
        mesh_sub = rotation_data._mesh_items("test", None, 1, 1, [name])[1][0][1]()
        mesh_full = dict(rotation_data._mesh_items("test", None, 1, 1)[1])[name]()
        np.testing.assert_allclose(mesh_sub.vertices, mesh_full.vertices)
        assert (sub["class_ids"] == k).sum() == 1
    manifests = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(manifests) == 2  # distinct cache keys
    assert sorted(m.get("classes") is None for m in manifests) == [False, True]
    assert [m["class_names"] for m in manifests if m.get("classes")] == [sub["class_names"]]
    with pytest.raises(ValueError, match=r"unknown class.*'teapot'.*valid classes.*chair"):
        rotation_data.render_split("test", 1, meshes_per_class=1, size=8, classes=["chair", "teapot"])
    with pytest.raises(ValueError, match="at least one class"):
        rotation_data.select_classes(synthetic.CLASS_NAMES, [])


def test_dataset_class_subset_mesh_root(tmp_path):
    """With a ModelNet-style tree the subset filters the listing, and unknown names list
    the tree's classes."""
    import trimesh
    for c in ("cup", "desk", "sofa"):
        d = tmp_path / "meshes" / c / "test"
        d.mkdir(parents=True)
        trimesh.creation.box((0.5, 0.8, 1.0)).export(str(d / f"{c}_0.off"))
    root = str(tmp_path / "meshes")
    data = rotation_data.render_split("test", 1, mesh_root=root, meshes_per_class=None, size=8,
                                channels="depth", classes="sofa,cup")
    assert data["class_names"] == ["cup", "sofa"] and data["class_ids"].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"'chair'.*cup, desk, sofa"):
        rotation_data.render_split("test", 1, mesh_root=root, size=8, classes=["chair"])


def test_train_step_grad_wrt_head_logits():
    """The step's ||dL/dO|| equals an independent GradientTape on the same forward."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((8, 16, 16, 1)), tf.float32)
    q = tf.constant(sr.random_quaternions(8, rng), tf.float32)
    model = rotation.RotationRegressor("sflat", 16, 1, width=4, feature_units=16)
    with tf.GradientTape() as tape:
        o = model.head.pre_activation(model.backbone(x, training=True))[0]
        tape.watch(o)
        loss = tf.reduce_mean(losses.SFlatLoss().call(q, model.head.activate([o])))
    ref = float(tf.norm(tape.gradient(loss, o)))
    opt = __import__("keras").optimizers.SGD(0.0)
    _, o_norm, s_norm = rotation.make_train_step(model, losses.SFlatLoss().call, opt)(x, q)
    assert float(o_norm) == pytest.approx(ref, rel=1e-4) and float(s_norm) == 0.0


def test_script_smoke(tmp_path, capsys):
    from spherical_cnn.cli import train_regression
    out = tmp_path / "out"
    results = train_regression.run(train_regression.parse_args([
        "--head", "all", "--epochs", "1", "--train_meshes_per_class", "1", "--train_views", "6",
        "--test_meshes_per_class", "1", "--test_views", "2", "--image_size", "16",
        "--batch_size", "16", "--width", "4", "--data_dir", str(tmp_path / "data"),
        "--out", str(out)]))
    text = capsys.readouterr().out
    assert [r["head"] for r in results] == ["sexp", "sflat", "direct"]
    for r in results:
        assert 0.0 <= r["MedErr"] <= 180.0 and np.isfinite(r["grad_norm_var"])
        assert r["grad_norm_mean"] > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["head"] == "all" and len(saved["results"]) == 3
    assert "MedErr" in text and "Acc@pi/24" in text
    assert list((out / "tensorboard").glob("*/events.out.tfevents.*"))
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--head", "sexp", "--epochs", "0"])
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--classes", "chair,teapot"])
    assert train_regression.parse_args(["--classes", "chair, bed"]).classes == "chair,bed"
