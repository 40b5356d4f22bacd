"""Rotation study (smoke test at the --quick size) and equivariance measurements.

Equivariance is checked against pyshtools: inputs band-limited to degrees < n/2
are rotated exactly (``util.sphrot_shtools``), and outputs of purely spectral
layers (band-limited too) are rotated the same way.
"""
import csv
import json
import os

import keras
import numpy as np
import pytest

from spherical_cnn import equivariance as eq
from spherical_cnn import layers as sl
from spherical_cnn import models, params, util
from spherical_cnn import rotation_study as rs

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


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch, n, n, channels"):
        eq.expand(np.zeros((2, 8, 6, 1)))
    with pytest.raises(ValueError, match="unknown model"):
        rs.run_study(rs.StudyConfig(out_dir="unused", models=("spherical", "bogus")))


@pytest.mark.slow
def test_quick_study(tmp_path):
    cfg = rs.quick_config(str(tmp_path))
    cfg.models = ("spherical-spectral", "planar")
    cfg.quiet = True
    res = rs.run_study(cfg, log=None)

    # same meshes, different rotations
    made = {m: json.load(open(tmp_path / "data" / m / "manifest.json")) for m in ("z", "so3")}
    assert made["z"]["rotations"] == "z" and made["so3"]["rotations"] == "so3"
    assert made["z"]["counts"] == made["so3"]["counts"]

    models_ = res["models"]
    assert list(models_) == ["spherical-spectral", "planar"]
    for m in models_.values():
        assert set(m["accuracy"]) == {"z/z", "SO(3)/SO(3)", "z/SO(3)", "SO(3)/z"}
        assert all(0 <= v <= 1 for v in m["accuracy"].values())
    # similar parameter counts
    ratio = models_["planar"]["n_params"] / models_["spherical-spectral"]["n_params"]
    assert 0.8 < ratio < 1.25

    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == list(models_)
    for r in rows:
        assert float(r["z/SO(3)"]) == pytest.approx(models_[r["model"]]["accuracy"]["z/SO(3)"], abs=1e-4)
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0].startswith("| model | z/z (%) | SO(3)/SO(3) (%) | z/SO(3) (%) |") and len(table) == 4
    assert os.path.getsize(tmp_path / "rotation_study.png") > 1000
    assert json.load(open(tmp_path / "results.json"))["models"].keys() == models_.keys()

    res_eq = eq.study_from_runs({"spectral": str(tmp_path / "runs" / "spherical-spectral-z")},
                                str(tmp_path / "data" / "so3"), str(tmp_path), quick=True, log=None)
    assert set(res_eq["variants"]) == {"spectral, naive", "spectral, sep", "spectral, sep, linear"}
    for l in res_eq["variants"]["spectral, sep, linear"]["layers"]:
        assert l["so3"] < 1e-5
    assert os.path.getsize(tmp_path / "equivariance.png") > 1000
