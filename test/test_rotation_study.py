"""Rotation study (invariance measures, seeds, model table, smoke test at the --quick size)
and equivariance measurements.

Equivariance is checked against pyshtools: inputs band-limited to degrees < n/2
are rotated exactly (``util.sphrot_shtools``), and outputs of purely spectral
layers (band-limited too) are rotated the same way.
"""
import csv
import json
import math
import os

import keras
import numpy as np
import pytest

from spherical_cnn.studies import equivariance as eq
from spherical_cnn import errors
from spherical_cnn import layers as sl
from spherical_cnn import models, params, util
from spherical_cnn.studies import rotation_metrics as rm
from spherical_cnn.studies import rotation_study as rs
from spherical_cnn.cli import rotation_study as cli

N = 16


def _spectral_stack(method):
    """SphConv -> SphConv(spectral pool 1) -> SphConv, no nonlinearity: (b, 16, 16, 2) -> (b, 8, 8, 3)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((N, N, 2))
    x = sl.SphConv(4, n_filter_params=4, method=method, name="c0")(inputs)
    x = sl.SphConv(5, n_filter_params=4, spectral_pool=1, method=method, name="c1")(x)
    x = sl.SphConv(3, method=method, name="c2")(x)
    return keras.Model(inputs, x)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _rotate_each(maps, angles):
    """util.sphrot_shtools on every (azimuth, polar) map of (batch, n, n, c)."""
    out = np.empty_like(maps)
    for i in range(maps.shape[0]):
        for c in range(maps.shape[3]):
            out[i, :, :, c] = util.sphrot_shtools(maps[i, :, :, c], angles)
    return out


@pytest.mark.parametrize("method", ["naive", "sep"])
def test_spectral_stack_equivariant_float32(method):
    model = _spectral_stack(method)
    x = eq.random_bandlimited(3, N, 2, rng=0)
    fx = np.asarray(model(x.astype(np.float32)), dtype=np.float64)
    assert fx.shape == (3, N // 2, N // 2, 3)
    # rotations that map the grid onto itself: azimuth by multiples of 2 pi * 2 / n
    for k in (2, 6, 10):
        got = np.asarray(model(np.roll(x, k, axis=1).astype(np.float32)), dtype=np.float64)
        assert _rel(got, np.roll(fx, k // 2, axis=1)) < 1e-5
    # arbitrary rotations, against pyshtools on both sides
    for angles in eq.random_rotations(3, rng=2):
        rx = _rotate_each(x, angles)
        got = np.asarray(model(rx.astype(np.float32)), dtype=np.float64)
        assert _rel(got, _rotate_each(fx, angles)) < 1e-5


def test_rotate_maps_matches_pyshtools_and_is_exact_on_bandlimited():
    x = eq.random_bandlimited(2, N, 1, rng=3)
    np.testing.assert_allclose(eq.band_limit(x), x, atol=1e-10)  # projection keeps band-limited maps
    angles = (0.4, 1.2, -2.0)
    np.testing.assert_allclose(eq.rotate_maps(x, angles), _rotate_each(x, angles), atol=1e-10)
    # a rotation and its inverse (x(-gamma, -beta, -alpha)) give back x
    back = eq.rotate_maps(eq.rotate_maps(x, angles), (2.0, -1.2, -0.4))
    np.testing.assert_allclose(back, x, atol=1e-9)
    # a z rotation by 2 pi k / n is a roll of the azimuth axis (pyshtools turns the frame: content moves by -k)
    np.testing.assert_allclose(eq.rotate_maps(x, (0, 0, 2 * np.pi * 3 / N)), np.roll(x, -3, axis=1), atol=1e-9)


def _two_branch(pool_flags, nonlin="identity"):
    args = params.parse(["--model", "two_branch", "--nfilters", "4,4,6", "--pool_layers", "0,1,0",
                         "--concat_branches", "0,1,0", "--n_filter_params", "4", "--batch_norm",
                         "--nonlin", nonlin, "--n_classes", "3", "--input_res", str(N),
                         "--real_inputs", "--logdir", "unused"] + pool_flags)
    keras.utils.set_random_seed(0)
    return models.build_model(args, (N, N, 2))


def test_layer_errors_spectral_vs_wap():
    x = eq.random_bandlimited(2, N, 2, rng=5)
    rots = eq.random_rotations(2, rng=6)
    spectral = eq.equivariance_errors(_two_branch(["--spectral_pool"]), x, rots)
    wap = eq.equivariance_errors(_two_branch([]), x, rots)
    assert [(l["block"], l["stage"]) for l in spectral["layers"]] == [
        (b, s) for b in range(3) for s in eq.STAGES]
    for l in spectral["layers"]:  # linear and spectral: equivariant up to float32 rounding
        assert l["so3"] < 1e-5 and l["grid"] < 1e-5, l
    for l in wap["layers"]:  # grid shifts by whole coarse cells are exact for wap too
        assert l["grid"] < 1e-5, l
    pooled = [l for l in wap["layers"] if (l["block"], l["stage"]) == (1, "out")][0]
    assert pooled["n"] == N // 2
    assert pooled["so3"] > 1e-3  # wap is not equivariant under arbitrary rotations
    assert 0 <= wap["prediction_changed"] <= 1


def test_planar_param_count_closed_form():
    rs._register_planar()
    for extra in (["--batch_norm"], ["--nonlin", "relu"]):
        args = params.parse(["--model", "planar", "--nfilters", "5,7,9", "--pool_layers", "0,1,1",
                             "--n_classes", "4", "--logdir", "unused"] + extra)
        model = models.build_model(args, (N, N, 2))
        assert model.count_params() == rs.planar_param_count(args, 2)
        assert set(model.output) == {"logits", "descriptor"}


# --------------------------------------------------------------------------- invariance measures

# Three test meshes under 4 rotations each (records in no particular order):
#   table_1 (label 0): predicted 0, 0, 0, 0  -> consistent, always right
#   vase_7  (label 1): predicted 1, 1, 2, 1  -> flips on rotation 2
#   mug_3   (label 2): predicted 0, 0, 0, 0  -> consistent, always wrong
HAND = [("table_1", 0, 0, [0, 0, 0, 0]), ("vase_7", 1, 1, [1, 1, 2, 1]), ("mug_3", 2, 2, [0, 0, 0, 0])]


def _hand_records(order_seed=0):
    recs = [(name, r, label, preds[r]) for name, _, label, preds in HAND for r in range(4)]
    recs = [recs[i] for i in np.random.default_rng(order_seed).permutation(len(recs))]
    fnames, idrots, labels, preds = zip(*recs)
    return list(fnames), list(idrots), list(labels), list(preds)


def test_invariance_metrics_hand_checked():
    m = rm.invariance_metrics(*_hand_records())
    assert m["n_meshes"] == 3 and m["n_rotations"] == 4
    assert m["accuracy"] == pytest.approx(7 / 12)        # 4 + 3 + 0 right of 12 records
    assert m["consistency"] == pytest.approx(2 / 3)      # table_1 and mug_3; a wrong mesh counts too
    # rotation r: right on table_1 always, on vase_7 except r = 2, never on mug_3
    assert m["per_rotation_accuracy"] == pytest.approx([2 / 3, 2 / 3, 1 / 3, 2 / 3])
    # population std of (2/3, 2/3, 1/3, 2/3): deviations 1/12 (x3), -1/4 -> variance (3/144 + 9/144) / 4 = 1/48
    assert m["spread_std"] == pytest.approx(math.sqrt(1 / 48))
    assert (m["spread_min"], m["spread_max"]) == pytest.approx((1 / 3, 2 / 3))
    assert m["spread_range"] == pytest.approx(1 / 3)


def test_consistency_two_meshes_one_flip():
    # mesh A the same class for all rotations, mesh B flips on one: consistency 0.5
    assert rm.consistency([[3, 3, 3], [5, 5, 4]]) == 0.5
    assert rm.consistency([[1], [2]]) == 1.0  # one rotation per mesh: trivially consistent
    np.testing.assert_allclose(rm.per_rotation_accuracy([[3, 3, 3], [5, 5, 4]], [3, 5]), [1, 1, 0.5])
    assert rm.spread([1.0, 1.0, 0.5]) == pytest.approx(
        {"std": math.sqrt(1 / 18), "min": 0.5, "max": 1.0, "range": 0.5})  # mean 5/6; (2/36 + 4/36)/3


def test_prediction_grid_groups_by_mesh_and_rejects_bad_layouts():
    meshes, label, pred = rm.prediction_grid(*_hand_records(order_seed=3))
    assert meshes == ["mug_3", "table_1", "vase_7"]
    assert label.tolist() == [2, 0, 1]
    assert pred.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 2, 1]]
    f, r, y, p = _hand_records()
    with pytest.raises(ValueError, match="expected rotations 0..3"):
        rm.prediction_grid(f[:-1], r[:-1], y[:-1], p[:-1])
    with pytest.raises(ValueError, match="appears twice"):
        rm.prediction_grid(f[:-1] + [f[0]], r[:-1] + [r[0]], y, p)
    with pytest.raises(ValueError, match="two labels"):
        rm.prediction_grid(f, r, [9] + y[1:], p)
    with pytest.raises(ValueError, match="without a mesh name"):
        rm.prediction_grid([""] + f[1:], r, y, p)


def test_mean_std_over_seeds():
    s = rm.mean_std([0.9, 0.8, 0.7])
    assert s["mean"] == pytest.approx(0.8) and s["std"] == pytest.approx(0.1)  # sample std, ddof=1
    assert s["values"] == [0.9, 0.8, 0.7]
    assert rm.mean_std([0.5]) == {"mean": 0.5, "std": None, "values": [0.5]}
    agg = rm.aggregate_seeds([{"accuracy": 1.0, "consistency": 0.5}, {"accuracy": 0.5, "consistency": 0.5}],
                             ["accuracy", "consistency"])
    assert agg["accuracy"]["mean"] == 0.75 and agg["accuracy"]["std"] == pytest.approx(math.sqrt(0.125))
    assert agg["consistency"]["std"] == 0.0


def _fake_run(acc_z, acc_so3, seconds):
    """A run result as train_and_test returns it (only what the summaries read)."""
    def metrics(acc):
        return {"accuracy": acc, "consistency": acc / 2, "spread_std": 0.01, "spread_range": 0.02,
                "spread_min": acc - 0.01, "spread_max": acc + 0.01, "per_rotation_accuracy": [acc, acc],
                "n_meshes": 10, "n_rotations": 2}
    return {"n_params": 1234, "nfilters": [4], "train_seconds": seconds,
            "test": {"z": metrics(acc_z), "so3": metrics(acc_so3)}}


def test_summaries_average_seeds_and_tables_show_four_regimes(tmp_path):
    runs = {0: {"z": _fake_run(0.9, 0.6, 10.0), "so3": _fake_run(0.7, 0.8, 20.0)},
            1: {"z": _fake_run(0.8, 0.4, 12.0), "so3": _fake_run(0.9, 0.8, 22.0)}}
    m = rs.summarize(rs.MODELS["planar"], runs)
    assert list(m["summary"]) == ["z/z", "SO(3)/SO(3)", "z/SO(3)", "SO(3)/z"]
    assert m["summary"]["z/z"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert m["summary"]["z/z"]["accuracy"]["std"] == pytest.approx(math.sqrt(0.005))   # (0.9, 0.8)
    assert m["summary"]["SO(3)/z"]["accuracy"]["values"] == [0.7, 0.9]                 # so3-trained on z
    assert m["summary"]["z/SO(3)"]["consistency"]["mean"] == pytest.approx(0.25)        # (0.3, 0.2)
    assert m["train_seconds"]["SO(3)"]["mean"] == pytest.approx(21.0)
    assert m["seeds"]["1"]["regimes"]["z/SO(3)"]["accuracy"] == 0.4                      # per seed kept

    results = {"seeds": [0, 1], "models": {"planar": m}}
    table = rs.format_table(results)
    row = "| planar CNN | 85.0 ± 7.1 | 80.0 ± 0.0 | 50.0 ± 14.1 | 80.0 ± 14.1 | 1,234 | 11 s / 21 s |"
    assert row in table
    assert "mean ± std over 2 seeds" in table and "all 2 of their test rotations" in table
    assert "| planar CNN | 1.0 ± 0.0 / 2.0 ± 0.0 |" in table  # spread std / max - min in points
    assert "r-th rotation of every test mesh, mean" in table
    rs.write_outputs(results, str(tmp_path))
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["regime"] for r in rows] == ["z/z", "SO(3)/SO(3)", "z/SO(3)", "SO(3)/z"]
    assert float(rows[3]["accuracy_mean"]) == pytest.approx(0.8) and rows[3]["train"] == "so3"
    assert float(rows[2]["consistency_std"]) == pytest.approx(math.sqrt(0.005), abs=1e-4)
    with open(tmp_path / "results_per_seed.csv") as f:
        per_seed = list(csv.DictReader(f))
    assert len(per_seed) == 8
    assert [float(r["train_seconds"]) for r in per_seed if r["seed"] == "1"] == [12.0, 22.0, 12.0, 22.0]
    assert os.path.getsize(tmp_path / "rotation_study.png") > 1000


# --------------------------------------------------------------------------- model table

def test_model_table_gating():
    all_flags = rs.known_training_flags() | {"nonlinearity_upsample"}
    # everything available: the default list is the whole table
    defaults = [n for n in rs.MODEL_NAMES if n != "spherical"]
    variants, skipped = rs.select_models(None, flags=all_flags, options={"supersample"})
    assert [v.name for v in variants] == defaults and not skipped
    # 'spherical' (the params files' model as it is) only when asked for
    assert [v.flags for v in rs.select_models(["spherical"])[0]] == [{}]
    # no supersampling option: the two variants on supersampled data are left out, with the reason
    variants, skipped = rs.select_models(None, options=set())
    assert [v.name for v in variants] == [n for n in defaults if "-ss" not in n]
    assert skipped["spherical-cwap-ss"] == "needs dataset builder option supersample, which this version lacks"
    # neither: every spherical variant states --nonlinearity_upsample, so only the planar CNN runs
    today = rs.known_training_flags() - {"nonlinearity_upsample"}
    variants, skipped = rs.select_models(None, flags=today, options=set())
    assert [v.name for v in variants] == ["planar"]
    assert skipped["spherical-cwap-aa"] == "needs training flag --nonlinearity_upsample, which this version lacks"
    both = skipped["spherical-cwap-ss-aa"]
    assert "--nonlinearity_upsample" in both and "supersample" in both
    # asked for by name (either spelling): one clear error
    message = "model spherical-spectral-aa needs training flag --nonlinearity_upsample"
    with pytest.raises(errors.UserError, match=message):
        rs.select_models(["spherical_spectral_aa"], flags=today, options=set())
    assert [v.name for v in rs.select_models(["spherical_cwap", "planar"])[0]] == ["spherical-cwap", "planar"]
    with pytest.raises(ValueError, match="unknown model"):
        rs.select_models(["spherical-cwap", "bogus"])


def test_cli_reports_a_missing_flag_in_one_line(tmp_path, monkeypatch, capsys):
    fake = rs.ModelVariant("spherical-fake", "fake", {"pool": "cwap", "no_such_flag": 2})
    monkeypatch.setattr(rs, "MODELS", {**rs.MODELS, fake.name: fake})
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))  # main sets it
    status = errors.run_cli(cli.main, ["--quick", "--out", str(tmp_path), "--models", "spherical_fake"],
                            prog="rotation_study")
    err = capsys.readouterr().err
    assert status == 2
    assert err == "rotation_study: error: model spherical-fake needs training flag --no_such_flag, " \
                  "which this version lacks\n"
    assert not os.listdir(tmp_path)  # nothing was built


def _examples(dset_dir):
    """``{file: [tf.train.Example features]}`` of a dataset's record files."""
    import tensorflow as tf
    from spherical_cnn.data import records
    return {fn: [tf.train.Example.FromString(r).features for r in records.iter_records(os.path.join(dset_dir, fn))]
            for fn in sorted(os.listdir(dset_dir)) if fn.endswith(".tfrecord")}


def test_mesh_study_augments_and_supersamples_as_make_dataset(tmp_path):
    from spherical_cnn.cli import make_dataset
    a = cli.build_parser().parse_args(["--quick", "--out", str(tmp_path / "study"), "--augment", "original",
                                       "--supersample", "2"])
    cfg = cli.make_config(a)
    dirs = rs.build_mesh_datasets(cfg, log=lambda *_: None)["plain"]
    for mode, d in dirs.items():
        made = json.load(open(os.path.join(d, "manifest.json")))
        assert made["supersample"] == 2 and made["rotations"] == mode
        assert made["augmentation"]["aniso_scale"] == [0.8, 1.2] and made["augmentation"]["center_shift"] == 0.1
        # the same records as the dataset command builds with the same settings
        ref = str(tmp_path / ("make-dataset-" + mode))
        make_dataset.main(["--synthetic", "--out", ref, "--input_res", "16", "--rotations", mode,
                           "--n_rotations", "2", "--n_test_rotations", "2", "--augment", "original",
                           "--supersample", "2", "--n_train_per_class", "3", "--n_test_per_class", "2",
                           "--seed", "0", "--workers", "1"])
        ours, theirs = _examples(d), _examples(ref)
        assert list(ours) == list(theirs) and ours == theirs
        scales = [np.array(f.feature["scale"].float_list.value) for f in ours["train_000.tfrecord"]]
        assert max(np.ptp(s) for s in scales) > 0.05  # anisotropic: the instances really are scaled
    # the plain study's datasets are told apart from the augmented ones and rebuilt
    cfg.augment, cfg.supersample, lines = "none", 1, []
    rs.build_mesh_datasets(cfg, log=lines.append)
    assert sum(l.startswith("building dataset") for l in lines) == 2
    made = json.load(open(os.path.join(dirs["z"], "manifest.json")))
    assert made["supersample"] == 1 and made["augmentation"]["splits"] == []
    for flags in (["--images", "x.deb", "--augment", "original"], ["--images", "x.deb", "--supersample", "2"],
                  ["--supersample", "0"]):
        with pytest.raises(errors.UserError, match="--augment|--supersample"):
            cli.make_config(cli.build_parser().parse_args(flags))


def test_cli_flags():
    a = cli.build_parser().parse_args(["--models", "planar,spherical_cwap", "spherical-wap", "--seeds", "0,2"])
    cfg = cli.make_config(a)
    assert cfg.models == ("planar", "spherical_cwap", "spherical-wap") and cfg.seeds == (0, 2)
    assert cfg.n_test_rotations == 8 and cli.make_config(cli.build_parser().parse_args([])).seeds == (0, 1, 2)
    quick = cli.make_config(cli.build_parser().parse_args(["--quick"]))
    assert quick.seeds == (0,) and quick.models is None
    with pytest.raises(ValueError, match="distinct"):
        cli.make_config(cli.build_parser().parse_args(["--seeds", "1,1"]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch, n, n, channels"):
        eq.expand(np.zeros((2, 8, 6, 1)))
    with pytest.raises(ValueError, match="unknown model"):
        rs.run_study(rs.StudyConfig(out_dir="unused", models=("spherical", "bogus")))


# --------------------------------------------------------------------------- end to end

def _checkpoint_mtimes(runs_dir):
    """{path: mtime_ns} of every file under the runs' checkpoint folders and study_run.json."""
    out = {}
    for root, _, files in os.walk(runs_dir):
        for f in files:
            p = os.path.join(root, f)
            if f == rs.RUN_FILE or os.path.basename(root) in ("latest", "final", "best"):
                out[p] = os.stat(p).st_mtime_ns
    return out


@pytest.mark.slow
def test_quick_study(tmp_path):
    cfg = rs.quick_config(str(tmp_path))
    cfg.models = ("spherical-spectral", "planar")
    cfg.quiet = True
    res = rs.run_study(cfg, log=None)

    # same meshes, different rotations
    made = {m: json.load(open(tmp_path / "data" / "plain" / m / "manifest.json")) for m in ("z", "so3")}
    assert made["z"]["rotations"] == "z" and made["so3"]["rotations"] == "so3"
    assert made["z"]["counts"] == made["so3"]["counts"]

    regimes = ["z/z", "SO(3)/SO(3)", "z/SO(3)", "SO(3)/z"]
    models_ = res["models"]
    assert list(models_) == ["spherical-spectral", "planar"] and res["seeds"] == [0]
    for m in models_.values():
        assert list(m["summary"]) == regimes
        for stats in m["summary"].values():
            assert all(0 <= stats[k]["mean"] <= 1 for k in rs.METRICS)
        seed0 = m["seeds"]["0"]["regimes"]
        assert seed0["SO(3)/z"]["n_meshes"] == 24 and seed0["SO(3)/z"]["n_rotations"] == 2  # 12 classes x 2
    # similar parameter counts
    ratio = models_["planar"]["n_params"] / models_["spherical-spectral"]["n_params"]
    assert 0.8 < ratio < 1.25

    # per-record predictions: one label per mesh, the class named by its path, metrics recomputed
    run = rs.load_run(rs.run_dir(cfg, "planar", 0, "so3"))["result"]
    classes = made["z"]["classes"]
    p = run["predictions"]["z"]
    assert all(classes[y] == f.split("/")[0] for f, y in zip(p["fname"], p["label"]))
    assert sorted(set(p["idrot"])) == [0, 1]
    assert run["test"]["z"] == rm.invariance_metrics(p["fname"], p["idrot"], p["label"], p["pred"])
    assert models_["planar"]["summary"]["SO(3)/z"]["accuracy"]["mean"] == run["test"]["z"]["accuracy"]

    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["regime"]) for r in rows] == [(m, g) for m in models_ for g in regimes]
    for r in rows:
        assert float(r["accuracy_mean"]) == pytest.approx(
            models_[r["model"]]["summary"][r["regime"]]["accuracy"]["mean"], abs=1e-4)
    table = (tmp_path / "table.md").read_text()
    assert "| model | z/z (%) | SO(3)/SO(3) (%) | z/SO(3) (%) | SO(3)/z (%) | params |" in table
    assert table.count("| planar CNN |") == 3  # accuracy, consistency, spread
    assert os.path.getsize(tmp_path / "rotation_study.png") > 1000
    assert json.load(open(tmp_path / "results.json"))["models"].keys() == models_.keys()

    # a second invocation reuses every finished run: no checkpoint or run file is written
    before = _checkpoint_mtimes(tmp_path / "runs")
    assert len([p for p in before if p.endswith(rs.RUN_FILE)]) == 4
    lines = []
    again = rs.run_study(cfg, log=lines.append)
    assert _checkpoint_mtimes(tmp_path / "runs") == before
    assert sum(l.strip().startswith("reusing " + str(tmp_path / "runs")) for l in lines) == 4
    assert again["models"]["planar"]["summary"] == models_["planar"]["summary"]

    # a run interrupted after training (no result yet) resumes: no epoch is trained again
    logdir = rs.run_dir(cfg, "planar", 0, "z")
    rec = rs.load_run(logdir)
    rs.save_run(logdir, {"key": rec["key"], "result": None})
    latest = {p: t for p, t in before.items() if os.sep + "latest" + os.sep in p and p.startswith(logdir)}
    cfg.models, lines = ("planar",), []
    third = rs.run_study(cfg, log=lines.append)
    assert "  resuming " + logdir in lines
    assert {p: os.stat(p).st_mtime_ns for p in latest} == latest
    assert third["models"]["planar"]["summary"] == models_["planar"]["summary"]

    # the equivariance table from the per-seed run folders (seed 0)
    logdirs = rs.equivariance_logdirs(cfg, ["spherical-spectral", "planar"])
    assert logdirs == {"spectral": str(tmp_path / "runs" / "spherical-spectral" / "seed0" / "z")}
    res_eq = eq.study_from_runs(logdirs, rs.dataset_dirs(cfg, "plain")["so3"], str(tmp_path),
                                quick=True, log=None)
    assert set(res_eq["variants"]) == {"spectral, naive", "spectral, sep", "spectral, sep, linear"}
    for l in res_eq["variants"]["spectral, sep, linear"]["layers"]:
        assert l["so3"] < 1e-5
    assert os.path.getsize(tmp_path / "equivariance.png") > 1000


# --------------------------------------------------------------------------- image study

def test_image_study_regimes_tables_and_config(tmp_path):
    def run(acc_nr, acc_r, seconds):
        r = _fake_run(acc_nr, acc_r, seconds)
        r["test"] = {"nr": r["test"]["z"], "r": r["test"]["so3"]}
        return r
    runs = {0: {"nr": run(0.9, 0.5, 10.0), "r": run(0.8, 0.78, 20.0)},
            1: {"nr": run(0.8, 0.3, 12.0), "r": run(0.82, 0.8, 22.0)}}
    m = rs.summarize(rs.MODELS["planar"], runs, rs.IMAGE_REGIMES)
    assert list(m["summary"]) == ["NR/NR", "R/R", "NR/R", "R/NR"]
    assert m["summary"]["NR/R"]["accuracy"]["mean"] == pytest.approx(0.4)
    results = {"seeds": [0, 1], "models": {"planar": m}, "regimes": list(m["summary"]),
               "regime_pairs": [list(p) for p in rs.IMAGE_REGIMES]}
    table = rs.format_table(results)
    assert "| model | NR/NR (%) | R/R (%) | NR/R (%) | R/NR (%) | params | train time (NR / R) |" in table
    assert "| planar CNN | 85.0 ± 7.1 | 79.0 ± 1.4 | 40.0 ± 14.1 | 81.0 ± 1.4 | 1,234 | 11 s / 21 s |" in table
    assert "test images (%)" in table and "r-th rotation of every test image, mean" in table
    one_rotation = json.loads(json.dumps(results))  # the image protocol: one rotation per test image
    for p in one_rotation["models"]["planar"]["seeds"].values():
        for metrics in p["regimes"].values():
            metrics["n_rotations"] = 1
    table_one = rs.format_table(one_rotation)
    assert "| planar CNN | 85.0 ± 7.1 |" in table_one
    assert "Consistency over rotations" not in table_one and "Spread of accuracy" not in table_one
    rs.write_outputs(json.loads(json.dumps(results)), str(tmp_path))  # as read back from results.json
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["regime"], r["train"], r["test"]) for r in rows] == [
        ("NR/NR", "nr", "nr"), ("R/R", "r", "r"), ("NR/R", "nr", "r"), ("R/NR", "r", "nr")]

    a = cli.build_parser().parse_args(["--images", "some.deb", "--n_train_images", "100", "--out", str(tmp_path)])
    cfg = cli.make_config(a)
    assert cfg.images == "some.deb" and cfg.n_train_images == 100 and cfg.n_test_rotations == 1
    assert [os.path.basename(p) for p in cfg.params_files] == ["model-32.txt", "fmnist-32.txt", "training-cpu.txt"]
    assert rs.dataset_dirs(cfg, "plain") == {m: os.path.join(str(tmp_path), "data", "images", m) for m in ("nr", "r")}
    with pytest.raises(errors.UserError, match="not both"):
        cli.make_config(cli.build_parser().parse_args(["--images", "x.deb", "--mesh_root", "m"]))
    for flag in (["--band_limit", "2"], ["--flat_reference"]):
        with pytest.raises(errors.UserError, match="needs --images"):
            cli.make_config(cli.build_parser().parse_args(flag))


@pytest.mark.slow
def test_quick_image_study(tmp_path):
    """The image study end to end on a tiny MNIST-format set written here."""
    import gzip
    from spherical_cnn.data import images
    rng = np.random.default_rng(0)
    src = tmp_path / "idx"
    src.mkdir()
    for name, arr in (("train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 8, 8))),
                      ("train-labels-idx1-ubyte.gz", np.arange(40) % 3),
                      ("t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 8, 8))),
                      ("t10k-labels-idx1-ubyte.gz", np.arange(12) % 3)):
        images.write_idx(str(src / name), arr)
    out = tmp_path / "study"
    a = cli.build_parser().parse_args(["--quick", "--images", str(src), "--out", str(out),
                                       "--models", "spherical-spectral,planar", "--n_train_images", "24",
                                       "--n_val_images", "6", "--n_test_images", "12", "--n_rotations", "2",
                                       "--flat_reference", "--band_limit", "2"])
    cfg = cli.make_config(a)
    cfg.quiet = True
    res = rs.run_study(cfg, log=None)
    regimes = ["NR/NR", "R/R", "NR/R", "R/NR"]
    assert res["regimes"] == regimes
    made = {m: json.load(open(out / "data" / "images" / m / "manifest.json")) for m in ("nr", "r", "flat")}
    assert made["nr"]["protocol"]["rotation"] == "NR" and made["r"]["protocol"]["rotation"] == "R"
    assert made["r"]["counts"]["test"]["records"] == 12 and made["nr"]["counts"]["val"]["records"] == 6
    assert made["nr"]["protocol"]["band_limit"] == made["r"]["protocol"]["band_limit"] == 2
    # --n_rotations: two rotations (shards) of the R train images, one NR shard
    assert made["r"]["counts"]["train"]["records"] == 48 and made["nr"]["counts"]["train"]["records"] == 24
    assert len(made["r"]["files"]["train"]) == 2 and len(made["nr"]["files"]["train"]) == 1
    # with validation images every run validates (no --skip_val)
    assert rs.load_run(rs.run_dir(cfg, "planar", 0, "r"))["key"]["flags"]["skip_val"] is False
    # the flat reference reads the images themselves: records equal the IDX pixels / 255,
    # centred on a zero frame of the study's grid size (8 x 8 images, --quick's res 16)
    res_flat = cfg.input_res
    assert res_flat == 16 and (made["flat"]["input_res"], made["flat"]["nchannels"]) == (res_flat, 1)
    from spherical_cnn.data import records
    first = records.decode_example(next(records.iter_records(str(out / "data" / "images" / "flat" / "test_000.tfrecord"))),
                                   shape=(res_flat, res_flat, 1), dtype="float32")
    test_pixels = images.read_idx(str(src / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_allclose(first["x"][4:12, 4:12, 0], test_pixels[0] / 255.0, rtol=1e-6)
    framed = first["x"][..., 0].copy()
    framed[4:12, 4:12] = 0
    assert not framed.any()
    flat = res["references"]["flat"]
    assert len(flat["accuracy"]["values"]) == 1 and 0.0 <= flat["accuracy"]["mean"] <= 1.0
    assert rs.load_run(rs.run_dir(cfg, "flat", 0, "flat"))["result"]["predictions"]["flat"]["fname"] == [
        "test/{:05d}".format(i) for i in range(12)]
    for m in res["models"].values():
        assert list(m["summary"]) == regimes
        assert m["seeds"]["0"]["regimes"]["NR/R"]["n_meshes"] == 12  # one row per test image
    run = rs.load_run(rs.run_dir(cfg, "planar", 0, "nr"))["result"]
    assert run["predictions"]["r"]["fname"] == ["test/{:05d}".format(i) for i in range(12)]
    table = open(out / "table.md").read()
    assert "| NR/NR (%) | R/R (%) | NR/R (%) | R/NR (%) |" in table
    assert "Upper reference, the planar CNN on the original images (not projected)" in table
