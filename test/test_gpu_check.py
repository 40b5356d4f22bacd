"""benchmarks/gpu_check.py on the CPU: the smoke run covers every section with results or a
skip reason (TensorFlow blocked in its workers, as on the GPU machine), its numerics are the
NumPy reference's within the CPU tests' bounds, its maps are make_images' records, and a
recipe or flag it cannot honour is refused in one line."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spherical_cnn import errors
from spherical_cnn.cli import make_images
from spherical_cnn.data import images, records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import gpu_check  # noqa: E402  (imports neither Keras nor TensorFlow)

NAMES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
         "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}


def write_idx_set(folder, n_train, n_test, seed=0):
    """Four IDX files of 28 x 28 images whose class is the width of a bright band."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        band = np.arange(28)[None, None, :] < 2 * (y[:, None, None] + 1)
        x = (rng.random((n, 28, 28)) * 40 + band * 200).astype(np.uint8)
        images.write_idx(os.path.join(folder, NAMES[split + "_images"]), x)
        images.write_idx(os.path.join(folder, NAMES[split + "_labels"]), y)
    return folder


def run_script(*argv, timeout=1800):
    return subprocess.run([sys.executable, SCRIPT] + [str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    idx = write_idx_set(str(tmp / "idx"), *gpu_check.CONFIG["smoke"]["train_counts"])
    out = tmp / "out"
    # a generous budget: on a busy machine the run is slower, and every item must run here
    proc = run_script("--smoke", "--idx", idx, "--out", out, "--budget_s", 1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "gpu_check.json") as f:
        return json.load(f), out


def _has(module):
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_smoke_run_has_every_section_with_results_or_a_reason(smoke):
    results, out = smoke
    assert results["mode"] == "smoke" and set(results["sections"]) == set(gpu_check.SECTIONS)
    page = (out / "gpu_check.md").read_text()
    for name, sec in results["sections"].items():
        assert sec["rows"] or sec["skipped"], name
        assert sec["status"] == ("skipped" if not sec["rows"] else "ok" if not sec["skipped"] else "partial")
        assert [r["error"] for r in sec["rows"] if "error" in r] == [], name
        assert not any("time budget" in k or "rest" in k for k in sec["skipped"]), (name, sec["skipped"])
        assert "## {} ({})".format(name, sec["status"]) in page
    assert (out / "gpu_check.log").read_text().count("worker:") >= 3
    for worker, device in results["devices"].items():
        assert device["platform"] == "cpu" and "keras" in device["versions"], worker


@pytest.mark.slow
def test_smoke_numerics_are_the_reference_within_the_cpu_bounds(smoke):
    rows = [r for r in smoke[0]["sections"]["numerics"]["rows"] if r["backend"] == "jax"]
    done = {(r["method"], r["legendre_rows"], r["dtype"], r["option"], r["op"]) for r in rows}
    want = {(m, l, d, o, op) for m, l in (("sep", "all"), ("sep", "half"), ("naive", None))
            for d in gpu_check.DTYPES for o in (("default", "highest") if d == "float32" else ("default",))
            for op in ("forward", "inverse", "sphconv")}
    assert done == want
    for r in rows:
        assert r["within_bound"] and r["rel_err"] < gpu_check.BOUNDS[r["op"]][r["dtype"]], r
        # reduced precision really computed in it: its error is far above float32's
        assert r["rel_err"] > {"float32": 0, "float16": 5e-5, "bfloat16": 5e-4}[r["dtype"]], r


@pytest.mark.slow
def test_smoke_torch_sections_ran_or_say_why(smoke):
    sections = smoke[0]["sections"]
    for name in ("numerics", "transforms", "step"):
        torch_rows = [r for r in sections[name]["rows"] if r["backend"] == "torch"]
        if _has("torch"):
            assert torch_rows, name
        else:
            assert not torch_rows and "torch is not installed" in sections[name]["skipped"]["torch"]
    th = sections["torch_harmonics"]
    if _has("torch") and _has("torch_harmonics"):
        assert [r["n"] for r in th["rows"]] == list(gpu_check.CONFIG["smoke"]["transform_n"])
    else:
        assert not th["rows"] and "not installed" in " ".join(th["skipped"].values())


@pytest.mark.slow
def test_smoke_steps_and_training_ran(smoke):
    sections = smoke[0]["sections"]
    cfg = gpu_check.CONFIG["smoke"]
    jax_steps = [r for r in sections["step"]["rows"] if r["backend"] == "jax"]
    assert [(r["method"], r["legendre_rows"], r["policy"]) for r in jax_steps] == [
        (m, l or "default", gpu_check.POLICIES[d]) for m, l, d, _ in cfg["step_variants"]]
    for r in sections["step"]["rows"]:
        assert r["examples_per_s"] > 0 and r["loss_finite"] and r["batch"] == cfg["step_batches"][0], r
    train = sections["train"]
    n_train, n_test = cfg["train_counts"]
    assert {k: train["data"][k] for k in ("train", "val", "test_NR", "test_R")} == {
        "train": n_train - cfg["n_val"], "val": cfg["n_val"], "test_NR": n_test, "test_R": n_test}
    assert [r["epoch"] for r in train["rows"]] == list(range(1, cfg["max_epochs"] + 1))
    for r in train["rows"]:
        assert r["steps"] == r["of_steps"] == (n_train - cfg["n_val"]) // cfg["max_train_batch"]
        for key in ("train_acc", "val_acc", "test_acc_NR", "test_acc_R"):
            assert 0 <= r[key] <= 1, (key, r)
        assert np.isfinite(r["train_loss"]) and r["learning_rate"] == 1e-3
    assert train["recipe"][0] == "@" + os.path.join("params", "model-64.txt")  # no path of this machine


def test_maps_are_make_images_records(tmp_path):
    """The training maps the GPU check projects are the records make_images writes (same
    projection, seed, rotation per image and split)."""
    src = write_idx_set(str(tmp_path / "idx"), 12, 5, seed=3)
    cfg = {"train_counts": (10, 4), "n_val": 3, "projection_chunk": 4}
    res = 8
    for rotation in ("NR", "R"):
        out = str(tmp_path / rotation)
        assert errors.run_cli(make_images.main, [src, "--out", out, "--rotation", rotation, "--input_res", str(res),
                                                 "--n_train", "7", "--n_val", "3", "--n_test", "4"]) == 0
        maps = gpu_check.load_fashion_mnist(src, res, rotation, cfg, str(tmp_path), log=lambda *a: None)
        for split, name in (("train", "train_000"), ("val", "val_000"), ("test_" + rotation, "test_000")):
            recs = [records.decode_example(r, (res, res, 2), "float32")
                    for r in records.iter_records(os.path.join(out, name + ".tfrecord"))]
            np.testing.assert_allclose(maps[split][0], np.stack([r["x"] for r in recs]), atol=1e-6)
            assert list(maps[split][1]) == [r["y"] for r in recs]
    assert not np.allclose(maps["test_NR"][0], maps["test_R"][0])


@pytest.mark.parametrize("argv, says", [
    (["--train_params", "RECIPE"], "--triplet_loss is not implemented"),
    (["--sections", "numerics,gpu"], "--sections 'numerics,gpu': expected"),
    (["--idx", "no/such/folder"], "--idx no/such/folder: no such file"),
    (["--train_params", "no/such/recipe.txt"], "--train_params no/such/recipe.txt: no such file"),
    (["--train_s", "400"], "--train_s 400: must be positive and at most --budget_s (170)"),
])
def test_bad_arguments_are_one_line(tmp_path, argv, says):
    recipe = tmp_path / "recipe.txt"
    recipe.write_text("@{}\n--triplet_loss\n--round_batches\n".format(os.path.join(ROOT, "params", "model-64.txt")))
    proc = run_script("--smoke", "--out", tmp_path / "out", *[str(recipe) if a == "RECIPE" else a for a in argv],
                      timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_time_budget_is_shared_in_running_order():
    """Each worker's sections end in the order they run, the last at the budget's end; --train_s
    gives the training that much and the others share the rest; sections left out take nothing."""
    every = gpu_check._deadlines(0.0, 300.0, list(gpu_check.SECTIONS))
    order = [every[w][s] for w, sections in gpu_check.PLAN for s, _ in sections]
    assert order == sorted(order) and order[-1] == 300.0 and len(set(order)) == len(order)
    assert every["train"]["train"] - every["torch"]["step"] == pytest.approx(300 * 0.42)
    assert gpu_check._deadlines(0.0, 300.0, list(gpu_check.SECTIONS), 200.0)["torch"]["step"] == pytest.approx(100)
    only_steps = gpu_check._deadlines(0.0, 300.0, ["step"], 200.0)
    assert only_steps["torch"]["step"] == 300.0 and only_steps["jax"]["step"] == pytest.approx(300 * 0.25 / 0.35)
    assert gpu_check._deadlines(0.0, 300.0, ["numerics", "train"], shared=False) == {
        "jax": {"numerics": 300.0}, "torch": {"numerics": 300.0}, "train": {"train": 300.0}}
