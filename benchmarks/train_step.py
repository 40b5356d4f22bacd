#!/usr/bin/env python3
"""Training-step throughput of the demo model: ``naive`` vs ``sep`` transforms.

Each method runs in its own subprocess (so that peak memory is its own):
the model of ``params/model-64.txt`` (+ ``params/m40-64.txt``) is built with
``--transform_method`` set to that method, random ``(batch, 64, 64, 2)``
inputs are fed, and after warm-up the mean time of a full training step
(forward, losses, backward, Adam update) is measured. Printed: samples/s,
ms/step, the sep/naive speed ratio, the peak resident memory of the process,
and the projected time of the original schedule (48 epochs of the ~468k
augmented ModelNet40 training samples at that rate).

    python3 benchmarks/train_step.py                      # TF backend, CPU/GPU as available
    KERAS_BACKEND=jax python3 benchmarks/train_step.py    # JAX backend (e.g. on a GPU machine)

Results are also written to benchmarks/results/train_step.json.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ORIGINAL_SAMPLES = 468_000   # ~48 augmented copies of the 9,843 ModelNet40 training meshes
ORIGINAL_EPOCHS = 48         # params/training.txt; one epoch = one of 48 shards ~ 9.8k samples
SAMPLES_PER_EPOCH = ORIGINAL_SAMPLES / ORIGINAL_EPOCHS


def worker(method, batch, steps, warmup, res):
    """Measure one method in this process; print a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import keras
    from spherical_cnn import params, models

    argv = ["@" + os.path.join(ROOT, "params", "model-64.txt"),
            "@" + os.path.join(ROOT, "params", "m40-64.txt"),
            "--transform_method", method, "--input_res", str(res), "--train_bsize", str(batch),
            "--logdir", os.path.join(ROOT, "benchmarks", "results", "scratch")]
    args = params.parse(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, res, res, 2)).astype("float32")
    y = rng.integers(0, args.n_classes, size=batch).astype("int64")
    backend = keras.backend.backend()

    t_build = time.perf_counter()
    if backend == "tensorflow":
        from spherical_cnn import training

        class OneBatch:
            input_shape = (res, res, 2)
            class_names = None

        trainer = training.Trainer(args, dataset=OneBatch())
        trainer._build_steps()
        step = lambda: trainer._train_step(x, y).numpy()  # noqa: E731
        n_params = trainer.model.count_params()
    else:
        model = models.build_model(args, (res, res, 2))
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            "extra_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
        targets = {"logits": y, "extra_logits": y}
        step = lambda: model.train_on_batch(x, targets)  # noqa: E731
        n_params = model.count_params()
    for _ in range(warmup):
        step()
    build_s = time.perf_counter() - t_build
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times = np.array(times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"method": method, "backend": backend, "batch": batch, "res": res,
                      "n_params": int(n_params), "step_ms": float(times.mean() * 1e3),
                      "step_ms_min": float(times.min() * 1e3),
                      "samples_per_s": float(batch / times.mean()),
                      "peak_rss_mb": peak_mb, "build_and_warmup_s": build_s}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="naive,sep")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.batch, a.steps, a.warmup, a.res)
        return

    rows = []
    for method in a.methods.split(","):
        print("measuring {} ...".format(method), file=sys.stderr, flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--batch", str(a.batch),
               "--res", str(a.res), "--steps", str(a.steps), "--warmup", str(a.warmup)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("worker {} failed:\n{}".format(method, out.stderr[-3000:]))
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    base = next((r for r in rows if r["method"] == "naive"), rows[0])
    print("\nTraining step, model-64 configuration, batch {}, res {}, backend {} ({})".format(
        a.batch, a.res, rows[0]["backend"], platform.processor() or platform.machine()))
    print("| method | ms/step | samples/s | vs naive | peak RSS (MB) | 48-epoch ModelNet40 (h) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["speedup_vs_naive"] = base["step_ms"] / r["step_ms"]
        r["projected_48_epochs_h"] = ORIGINAL_EPOCHS * SAMPLES_PER_EPOCH / r["samples_per_s"] / 3600
        print("| {} | {:.0f} | {:.1f} | {:.2f}x | {:.0f} | {:.1f} |".format(
            r["method"], r["step_ms"], r["samples_per_s"], r["speedup_vs_naive"], r["peak_rss_mb"],
            r["projected_48_epochs_h"]))
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benchmarks", "results", "train_step.json")
    with open(path, "w") as f:
        json.dump({"rows": rows, "nproc": os.cpu_count(), "argv": sys.argv[1:]}, f, indent=2)
    print("\nwrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
