"""Rendering, the rotation dataset, the category-conditioned head, the per-category
metrics and a tiny end-to-end run of the S^3 rotation task (train_regression command)."""
import json

import numpy as np
import pytest
import tensorflow as tf

import spherical_regression as sr
from spherical_regression import losses
from spherical_regression.tasks import rotation_data, rotation_model
from spherical_regression.render import OrthoRenderer


def test_public_api_exports():
    for name in sr.__all__:
        assert hasattr(sr, name), name


def test_old_module_names_are_the_task_modules():
    """experiment / dataset moved to tasks/; the old names are the same module objects."""
    from spherical_regression import dataset as old_dataset
    from spherical_regression import experiment as old_experiment
    assert old_experiment is rotation_model and old_dataset is rotation_data
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
    assert m["views_per_mesh"] == 2 and m["num_samples"] == n and m["mesh_source"] == "synthetic"
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
    model = rotation_model.RotationRegressor("sflat", 16, 1, width=4, feature_units=16)
    with tf.GradientTape() as tape:
        o = model.head.pre_activation(model.backbone(x, training=True))[0]
        tape.watch(o)
        loss = tf.reduce_mean(losses.SFlatLoss().call(q, model.head.activate([o])))
    ref = float(tf.norm(tape.gradient(loss, o)))
    opt = __import__("keras").optimizers.SGD(0.0)
    _, o_norm, s_norm = rotation_model.make_train_step(model, losses.SFlatLoss().call, opt)((x,), q)
    assert float(o_norm) == pytest.approx(ref, rel=1e-4) and float(s_norm) == 0.0


@pytest.mark.parametrize("head", ["sexp", "sflat", "direct"])
def test_conditioned_head_is_the_plain_head_of_each_category(head):
    """Block c of the conditioned head = a plain head with the c-th slice of its weights;
    dL/dO of the selected O is zero nowhere but the rows' own category."""
    rng = np.random.default_rng(1)
    n_cat, dim, feats = 3, 4, 6
    cond = sr.CategoryConditionedHead(head, dim, n_cat, fix_first_sign=True)
    cond.build((None, feats))
    for block in cond.blocks:
        block.kernel.assign(rng.standard_normal(block.kernel.shape).astype("float32"))
        block.bias.assign(rng.standard_normal(block.bias.shape).astype("float32"))
    x = rng.standard_normal((10, feats)).astype("float32")
    ids = rng.integers(0, n_cat, 10).astype("int32")
    out = np.asarray(cond((x, ids)))
    for c in range(n_cat):
        plain = sr.make_head(head, dim, fix_first_sign=True)
        plain.build((None, feats))
        dense = [plain.out_dense] + ([plain.sign_dense] if head == "sexp" else [])
        for d, block, w in zip(dense, cond.blocks, cond.widths):
            k, b = np.asarray(block.kernel), np.asarray(block.bias)
            d.kernel.assign(k.reshape(feats, n_cat, w)[:, c])
            d.bias.assign(b.reshape(n_cat, w)[c])
        sel = ids == c
        np.testing.assert_allclose(out[sel], np.asarray(plain(x[sel])), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(cond.decode(out[sel])),
                                   np.asarray(plain.decode(plain(x[sel]))), atol=1e-5)
    with pytest.raises(ValueError, match="num_categories"):
        sr.CategoryConditionedHead(head, dim, 0)


def test_conditioned_gradients_reach_only_the_sample_category():
    """Training on samples of category 0 leaves the other categories' blocks unchanged."""
    model = rotation_model.RotationRegressor("sexp", 16, 1, width=4, feature_units=8,
                                             num_categories=3)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.random((4, 16, 16, 1)), tf.float32)
    q = tf.constant(sr.canonical(sr.random_quaternions(4, rng)), tf.float32)
    before = [np.asarray(b.kernel).copy() for b in model.head.blocks]
    opt = __import__("keras").optimizers.SGD(0.5)
    rotation_model.make_train_step(model, rotation_model.make_loss("sexp"), opt)(
        (x, tf.zeros(4, tf.int32)), q)
    for block, old, w in zip(model.head.blocks, before, model.head.widths):
        delta = np.abs(np.asarray(block.kernel) - old).reshape(8, 3, w).max(axis=(0, 2))
        assert delta[0] > 0 and delta[1] == 0 and delta[2] == 0


def test_per_class_summary_averages_categories():
    """MedErr = mean over categories of each category's exact median; Acc likewise."""
    rng = np.random.default_rng(3)
    errors = rng.uniform(0, np.pi, 25)
    ids = np.array([0] * 4 + [1] * 21)  # unequal sizes: pooled and per-class means differ
    s = rotation_model.per_class_summary(errors, ids, ["a", "b", "unused"])
    deg = np.degrees(errors)
    per = [np.median(deg[:4]), np.median(deg[4:])]
    assert s["MedErr"] == pytest.approx(np.mean(per))
    assert s["MedErr_all"] == pytest.approx(np.median(deg))
    acc = [np.mean(deg[:4] < 30), np.mean(deg[4:] < 30)]
    assert s["Acc@pi/6"] == pytest.approx(np.mean(acc))
    assert sorted(s["per_class"]) == ["a", "b"]


def test_script_smoke(tmp_path, capsys):
    """The S^3 task end to end at --quick size: 3 heads x 2 seeds, table, files, reuse."""
    from spherical_cnn.cli import train_regression
    out = tmp_path / "out"
    argv = ["--quick", "--seeds", "0,1", "--data_dir", str(tmp_path / "data"), "--out", str(out)]
    results, summary = train_regression.run(train_regression.parse_args(argv))
    text = capsys.readouterr().out
    assert [(r["head"], r["seed"]) for r in results] == [
        (h, s) for h in ("sexp", "sflat", "direct") for s in (0, 1)]
    for r in results:
        assert 0.0 <= r["MedErr"] <= 180.0 and r["grad_norm_mean"] > 0
        assert sorted(r["per_class"]) == ["airplane", "bed", "chair", "sofa"]
        assert r["train_samples"] == 4 * 2 * 8  # classes x meshes x views of --quick
        assert len(r["grad_norms"]) == 2 * (64 // 16) and len(r["history"]) == 2
    for head, row in summary.items():
        vals = [r["MedErr"] for r in results if r["head"] == head]
        assert row["MedErr"]["mean"] == pytest.approx(np.mean(vals))
        assert row["MedErr"]["std"] == pytest.approx(np.std(vals))
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 6 and saved["primary"] == "MedErr"
    assert "paper's ordering" in saved["paper_ordering"]
    csv_rows = (out / "summary.csv").read_text().splitlines()
    assert csv_rows[0].startswith("head,seeds,MedErr_mean,MedErr_std") and len(csv_rows) == 4
    assert (out / "grad_norm.png").read_bytes()[:4] == b"\x89PNG"
    assert "MedErr" in text and "Acc@pi/24" in text and "paper's ordering" in text
    assert "--quick: tiny data" in text
    assert list((out / "tensorboard").glob("*/events.out.tfevents.*"))
    # run again: every run is read back, none retrained
    again, _ = train_regression.run(train_regression.parse_args(argv))
    assert "finished earlier" in capsys.readouterr().out
    assert [r["MedErr"] for r in again] == [r["MedErr"] for r in results]
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--head", "sexp", "--epochs", "0"])
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--classes", "chair,teapot"])
    with pytest.raises(SystemExit):
        train_regression.parse_args(["--seeds", "0,x"])
    assert train_regression.parse_args(["--classes", "chair, bed"]).classes == "chair,bed"
