#!/usr/bin/env python3
"""Data tooling speed: mesh rendering and the default synthetic dataset.

1. Meshes per second rendered to spherical maps at ``--res`` (default 64) with
   ``--n_rotations`` (default 8) SO(3) rotations each, on one core, for the
   synthetic shapes (one mesh per class, generated beforehand so that only
   rendering is timed).
2. Wall time of generating the default synthetic dataset at res 32 with all
   cores (``python3 scripts/make_dataset.py --synthetic --out DIR --input_res 32``):
   mesh generation, ray casting, record writing.

    python3 benchmarks/data.py

Prints a table; writes benchmarks/results/data.json.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from spherical_cnn.data import builder, raycast, rotations, synthetic  # noqa: E402


def render_rate(res, n_rotations, repeats):
    rng = np.random.default_rng(0)
    meshes = [synthetic.make_mesh(c, rng) for c in synthetic.CLASS_NAMES]
    rots = rotations.sample_rotations("so3", n_rotations, 1)
    raycast.cast_rotated(meshes[0], res, rots)  # warm-up (Embree scene build, imports)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for m in meshes:
            raycast.cast_rotated(m, res, rots)
    seconds = time.perf_counter() - t0
    n = repeats * len(meshes)
    faces = int(np.mean([len(m.faces) for m in meshes]))
    return {"res": res, "n_rotations": n_rotations, "meshes": n, "seconds": seconds,
            "meshes_per_s": n / seconds, "maps_per_s": n * n_rotations / seconds,
            "rays_per_s": n * n_rotations * res * res / seconds, "mean_faces": faces}


def default_dataset_time(workers):
    out = tempfile.mkdtemp(prefix="synthetic-bench-")
    try:
        t0 = time.perf_counter()
        manifest = builder.build_synthetic(os.path.join(out, "ds"), input_res=32, workers=workers,
                                           progress=False)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    records = sum(v["records"] for v in manifest["counts"].values())
    return {"seconds": seconds, "records": records, "workers": workers or os.cpu_count(),
            "counts": manifest["counts"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--n_rotations", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--skip_dataset", action="store_true")
    a = p.parse_args()

    render = render_rate(a.res, a.n_rotations, a.repeats)
    print("| measure | value |")
    print("|---|---|")
    print("| meshes/s rendered at res {} x {} rotations (1 core) | {:.2f} |".format(
        render["res"], render["n_rotations"], render["meshes_per_s"]))
    print("| maps/s (same run) | {:.1f} |".format(render["maps_per_s"]))
    print("| rays/s (same run) | {:.2e} |".format(render["rays_per_s"]))
    result = {"render": render, "nproc": os.cpu_count()}
    if not a.skip_dataset:
        ds = default_dataset_time(a.workers)
        print("| default synthetic dataset, res 32 ({} records, {} workers) | {:.1f} s |".format(
            ds["records"], ds["workers"], ds["seconds"]))
        result["default_dataset"] = ds
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benchmarks", "results", "data.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("\nwrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
