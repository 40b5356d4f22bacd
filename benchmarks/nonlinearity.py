#!/usr/bin/env python3
"""Cost and equivariance of the anti-aliased nonlinearity (``--nonlinearity_upsample``).

Default: training-step time of the model-32 configuration
(``params/model-32.txt params/synthetic-32.txt``, two-branch, sep transform,
real inputs) with each ``--nonlinearity_upsample`` value of ``--upsample``
(default 1,2), random ``(batch, 32, 32, 2)`` inputs. All models are built in
one process and measured in alternating rounds (each round times ``--steps``
steps of every model in turn), so that a change of machine load hits them
alike. Printed: mean and best ms/step per value and the ratio to the first.
Written to ``benchmarks/results/nonlinearity.json``.

``--equivariance``: per-block equivariance error (``equivariance.equivariance_errors``,
the rotation study's measure) of the same configuration, untrained (random
initialisation, inference mode), with grid pooling wap and cwap and with
spectral pooling, for each upsample value, on random band-limited inputs.
Written to ``benchmarks/results/nonlinearity_equivariance.json``.

    python3 benchmarks/nonlinearity.py                 # step time, TF backend
    KERAS_BACKEND=jax python3 benchmarks/nonlinearity.py
    python3 benchmarks/nonlinearity.py --equivariance
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results")
PARAMS = ("model-32.txt", "synthetic-32.txt")


def parse_flags(upsample, logdir, extra=()):
    from spherical_cnn import params
    argv = ["@" + os.path.join(ROOT, "params", name) for name in PARAMS]
    argv += ["--nonlinearity_upsample", str(upsample), "--logdir", logdir] + list(extra)
    return params.parse(argv)


def make_step(args, x, y):
    """A full training step (forward, losses, backward, Adam) as a no-argument function."""
    import keras
    res = args.input_res
    if keras.backend.backend() == "tensorflow":
        from spherical_cnn import training

        class OneBatch:
            input_shape = (res, res, 2)
            class_names = None

        trainer = training.Trainer(args, dataset=OneBatch())
        trainer._build_steps()
        return (lambda: trainer._train_step(x, y).numpy()), trainer.model.count_params()
    from spherical_cnn import models
    keras.utils.set_random_seed(args.seed)
    model = models.build_model(args, (res, res, 2))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"logits": loss, "extra_logits": loss})
    targets = {"logits": y, "extra_logits": y}
    return (lambda: model.train_on_batch(x, targets)), model.count_params()


def time_steps(a):
    import keras
    import numpy as np
    values = [int(v) for v in a.upsample.split(",")]
    steps, rows = {}, []
    with tempfile.TemporaryDirectory() as logdir:
        for u in values:
            args = parse_flags(u, os.path.join(logdir, str(u)), ["--train_bsize", str(a.batch)])
            rng = np.random.default_rng(0)
            x = rng.normal(size=(a.batch, args.input_res, args.input_res, 2)).astype("float32")
            y = rng.integers(0, args.n_classes, size=a.batch).astype("int64")
            t0 = time.perf_counter()
            step, n_params = make_step(args, x, y)
            for _ in range(a.warmup):
                step()
            steps[u] = step
            rows.append({"upsample": u, "n_params": int(n_params),
                         "build_and_warmup_s": time.perf_counter() - t0, "times": []})
            print("built upsample={} ({:.1f} s)".format(u, rows[-1]["build_and_warmup_s"]),
                  file=sys.stderr, flush=True)
        for _ in range(a.rounds):
            for r in rows:
                step = steps[r["upsample"]]
                for _ in range(a.steps):
                    t0 = time.perf_counter()
                    step()
                    r["times"].append(time.perf_counter() - t0)
    base = None
    for r in rows:
        t = np.array(r.pop("times")) * 1e3
        r.update(step_ms=float(t.mean()), step_ms_median=float(np.median(t)), step_ms_min=float(t.min()),
                 n_steps=int(t.size))
        base = base or r
        r["ratio_to_first"] = r["step_ms"] / base["step_ms"]
        r["ratio_to_first_median"] = r["step_ms_median"] / base["step_ms_median"]
    print("\nTraining step, model-32 configuration (params/{} params/{}), batch {}, backend {}, {} ({} CPUs)"
          .format(PARAMS[0], PARAMS[1], a.batch, keras.backend.backend(),
                  platform.processor() or platform.machine(), os.cpu_count()))
    print("| --nonlinearity_upsample | ms/step (mean) | median | best | vs {} (mean / median) |"
          .format(base["upsample"]))
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| {} | {:.0f} | {:.0f} | {:.0f} | {:.2f}x / {:.2f}x |".format(
            r["upsample"], r["step_ms"], r["step_ms_median"], r["step_ms_min"], r["ratio_to_first"],
            r["ratio_to_first_median"]))
    return {"rows": rows, "batch": a.batch, "backend": keras.backend.backend(), "nproc": os.cpu_count(),
            "rounds": a.rounds, "steps_per_round": a.steps, "params": list(PARAMS)}


POOLING = (("wap", []), ("cwap", ["--pool", "cwap"]), ("spectral", ["--spectral_pool"]))


def equivariance(a):
    import keras
    from spherical_cnn.studies import equivariance as eq
    from spherical_cnn import models
    values = [int(v) for v in a.upsample.split(",")]
    x = eq.random_bandlimited(a.inputs, 32, 2, rng=0)
    rotations = eq.random_rotations(a.rotations, rng=1)
    out = {"n_inputs": a.inputs, "n_rotations": a.rotations, "variants": {}}
    for pool, extra in POOLING:
        for u in values:
            args = parse_flags(u, "unused", extra)
            keras.utils.set_random_seed(0)  # same initial weights for every upsample value
            model = models.build_model(args, (args.input_res, args.input_res, 2))
            label = "{}, upsample {}".format(pool, u)
            print("equivariance: {} ...".format(label), file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            out["variants"][label] = eq.equivariance_errors(model, x, rotations)
            out["variants"][label]["seconds"] = time.perf_counter() - t0
    print("\nEquivariance error per block, untrained model-32 configuration, {} band-limited random "
          "inputs x {} rotations (SO(3) error; descriptor: invariance)".format(a.inputs, a.rotations))
    print(eq.format_table(out).split("\n\nwap pooling")[0])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upsample", default="1,2", help="comma list of --nonlinearity_upsample values")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    p.add_argument("--steps", type=int, default=4, help="timed steps per model and round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--equivariance", action="store_true",
                   help="measure the per-block equivariance error of untrained models instead")
    p.add_argument("--inputs", type=int, default=8, help="band-limited inputs (--equivariance)")
    p.add_argument("--rotations", type=int, default=2, help="random rotations (--equivariance)")
    a = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    res = equivariance(a) if a.equivariance else time_steps(a)
    res["argv"] = sys.argv[1:]
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "nonlinearity_equivariance.json" if a.equivariance else "nonlinearity.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print("\nwrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
