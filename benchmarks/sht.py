#!/usr/bin/env python3
"""Throughput of the spherical harmonic transforms: ours (this tree and a baseline
revision), ours compiled with XLA, and torch-harmonics, side by side.

Forward and inverse transforms of a batch of real maps (``--batch`` x
``--channels`` maps of n x n, float32) for each size in ``--sizes``. Every
implementation runs in its own subprocess (PyTorch's and TensorFlow's thread
pools, spinning in one process, slow each other down many-fold on a small
machine), and the implementations alternate for ``--rounds`` rounds (in reverse
order every other round) so that load from other processes, and whatever a
process start leaves behind, falls on all of them alike. A figure is the best time
over all repeats of all rounds, as maps per second. Implementations:

- ``current:sep`` / ``current:naive``: this tree, ``tf.function`` on TensorFlow;
- ``current:sep:xla``: the same compiled with XLA (``jit_compile=True``);
- ``baseline:sep``: ``--baseline REV`` checked out in a temporary git worktree;
- ``current:sep:bf16`` / ``current:sep:f16``: this tree's sep transform computing
  in bfloat16 / float16 (the layers' path under the mixed-precision policies);
- ``current:sep:half`` / ``current:sep:all``: this tree's sep transform with the
  Legendre step forced (half the rows with the equatorial symmetry, or all rows;
  plain ``current:sep`` uses the size rule ``sht_tables.default_legendre_rows``);
  options combine, e.g. ``current:sep:xla:half``;
- ``torch_harmonics``: ``RealSHT`` / ``InverseRealSHT`` (equiangular n x n grid,
  lmax = mmax = n/2), if torch and torch_harmonics are importable by
  ``--torch_python`` (default: this interpreter; e.g. a virtual environment with
  ``pip install .[bench]``).

``--threads N`` (default 2) gives TensorFlow (intra- and inter-op) and PyTorch
the same number of threads. Prints a table and writes benchmarks/results/sht.json.

    python3 benchmarks/sht.py --baseline c43df2f
    python3 benchmarks/sht.py --sizes 32,64,128,256 --impls current:sep,torch_harmonics
    python3 benchmarks/sht.py --sizes 32,64,128 --impls current:sep,current:sep:xla,current:sep:bf16,torch_harmonics \
        --torch_python .venv-bench/bin/python
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ----------------------------------------------------------------------------- workers

def _best_times(calls, repeats, warmup=3):
    """Best seconds of each named call; the calls alternate within every repeat."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    best = {k: float("inf") for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def keras_worker(root, method, xla, sizes, batch, channels, repeats, threads, dtype="float32", rows=None):
    sys.path.insert(0, root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from spherical_cnn import sht

    out = {}
    for n in sizes:
        x = tf.constant(np.random.default_rng(n).standard_normal((batch, n, n, channels)).astype("float32"))
        tr = sht.get_transform(n, method, True, dtype, **({"legendre_rows": rows} if rows else {}))
        fwd = tf.function(lambda v: tr.forward_packed(v), jit_compile=xla)
        inv = tf.function(lambda c: tr.inverse_packed(c), jit_compile=xla)
        c = fwd(x)
        out[n] = _best_times({"forward": lambda: fwd(x), "inverse": lambda: inv(c)}, repeats)
    return out


def torch_worker(sizes, batch, channels, repeats, threads):
    import numpy as np
    import torch
    from torch_harmonics.sht import InverseRealSHT, RealSHT
    torch.set_grad_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    out = {}
    for n in sizes:
        # torch-harmonics grids are (..., nlat, nlon)
        x = torch.from_numpy(np.random.default_rng(n).standard_normal((batch, channels, n, n)).astype("float32"))
        fwd = RealSHT(n, n, lmax=n // 2, mmax=n // 2, grid="equiangular")
        inv = InverseRealSHT(n, n, lmax=n // 2, mmax=n // 2, grid="equiangular")
        c = fwd(x)
        out[n] = _best_times({"forward": lambda: fwd(x), "inverse": lambda: inv(c)}, repeats)
    return out


def torch_available(python=None):
    code = "import torch, torch_harmonics.sht"
    return subprocess.run([python or sys.executable, "-c", code], capture_output=True).returncode == 0


# ----------------------------------------------------------------------------- driver

DTYPES = {"bf16": "bfloat16", "f16": "float16"}


def _known_impl(impl):
    if impl in ("torch_harmonics", "current:naive", "baseline:sep"):
        return True
    parts = impl.split(":")
    opts = parts[2:]
    return (parts[:2] == ["current", "sep"] and len(set(opts)) == len(opts)
            and set(opts) <= {"xla", "bf16", "f16", "half", "all"}
            and len([o for o in opts if o in DTYPES]) <= 1 and len([o for o in opts if o in ("half", "all")]) <= 1)

def _k(rate):
    """Maps per second in thousands, 3 significant digits (158k, 3.42k)."""
    return "{:.3g}k".format(rate / 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,128,256")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for TensorFlow and PyTorch alike (0: each library's default)")
    ap.add_argument("--baseline", help="git revision whose sep transform is measured as baseline:sep")
    ap.add_argument("--impls", help="comma-separated; default: baseline:sep (with --baseline), current:sep, "
                                    "current:sep:xla, torch_harmonics (if importable)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "sht.json"))
    ap.add_argument("--torch_python", default=sys.executable,
                    help="interpreter with torch and torch-harmonics (default: this one)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shape = (args.batch, args.channels, args.repeats, args.threads)
    if args.worker:
        if args.worker == "torch_harmonics":
            res = torch_worker(sizes, *shape)
        else:
            _, method, *opts = args.worker.split(":")
            dtype = next((DTYPES[o] for o in opts if o in DTYPES), "float32")
            rows = next((o for o in opts if o in ("half", "all")), None)
            res = keras_worker(args.root, method, "xla" in opts, sizes, *shape, dtype=dtype, rows=rows)
        print(json.dumps(res))
        return

    impls = args.impls.split(",") if args.impls else (
        (["baseline:sep"] if args.baseline else []) + ["current:sep", "current:sep:xla"]
        + (["torch_harmonics"] if torch_available(args.torch_python) else []))
    for impl in impls:
        if not _known_impl(impl):
            sys.exit("--impls: unknown {!r}; known: torch_harmonics, current:naive, baseline:sep, "
                     "current:sep[:xla][:bf16|:f16][:half|:all]".format(impl))
        if impl.startswith("baseline") and not args.baseline:
            sys.exit("--impls {}: needs --baseline REV".format(impl))
    base_dir = side_by_side.checkout(args.baseline) if args.baseline else None
    best = {}
    try:
        for r in range(args.rounds):
            for impl in (impls if r % 2 == 0 else impls[::-1]):  # no implementation always goes first
                print("round {}/{}: {} ...".format(r + 1, args.rounds, impl), file=sys.stderr, flush=True)
                root = base_dir if impl.startswith("baseline") else ROOT
                res = side_by_side.run_worker(__file__, [
                    "--worker", impl, "--root", root, "--sizes", args.sizes, "--batch", str(args.batch),
                    "--channels", str(args.channels), "--repeats", str(args.repeats),
                    "--threads", str(args.threads)],
                    python=args.torch_python if impl == "torch_harmonics" else None)
                res = {int(n): v for n, v in res.items()}
                for n, t in res.items():
                    for d, s in t.items():
                        best[impl, n, d] = min(best.get((impl, n, d), float("inf")), s)
    finally:
        if base_dir:
            side_by_side.remove(base_dir)

    nmaps = args.batch * args.channels
    rows = [{"n": n, "impl": impl, "maps": nmaps,
             "forward_s": best[impl, n, "forward"], "inverse_s": best[impl, n, "inverse"],
             "forward_maps_per_s": nmaps / best[impl, n, "forward"],
             "inverse_maps_per_s": nmaps / best[impl, n, "inverse"]} for n in sizes for impl in impls]
    ref = "torch_harmonics" if "torch_harmonics" in impls else impls[0]
    print("\n{} x {} = {} real maps per call, float32; best of {} rounds x {} repeats; {} threads; "
          "{} CPUs ({})".format(args.batch, args.channels, nmaps, args.rounds, args.repeats,
                                args.threads or "default", os.cpu_count(),
                                platform.processor() or platform.machine()))
    if args.baseline:
        print("baseline = {}".format(args.baseline))
    print("| n | " + " | ".join(impls) + " | " + " | ".join(
        "{} / {}".format(i, ref) for i in impls if i != ref) + " |")
    print("|---" * (1 + 2 * len(impls) - 1) + "|")
    by = {(r["n"], r["impl"]): r for r in rows}
    for n in sizes:
        cells = ["{} / {}".format(_k(by[n, i]["forward_maps_per_s"]), _k(by[n, i]["inverse_maps_per_s"]))
                 for i in impls]
        ratios = ["{:.2f}x / {:.2f}x".format(by[n, ref]["forward_s"] / by[n, i]["forward_s"],
                                             by[n, ref]["inverse_s"] / by[n, i]["inverse_s"])
                  for i in impls if i != ref]
        print("| {} | {} | {} |".format(n, " | ".join(cells), " | ".join(ratios)))
    print("(forward / inverse maps per second; ratios are throughput relative to {})".format(ref))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    meta = {"batch": args.batch, "channels": args.channels, "repeats": args.repeats, "rounds": args.rounds,
            "threads": args.threads, "baseline": args.baseline, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "argv": sys.argv[1:]}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print("wrote", os.path.relpath(args.out, ROOT))


if __name__ == "__main__":
    main()
