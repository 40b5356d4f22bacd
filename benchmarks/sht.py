"""Throughput of the keras spherical harmonic transforms: naive vs sep (and torch-harmonics).

Forward and inverse transforms of a batch of real maps (batch x channels maps of
n x n) for n = 32, 64, 128, compiled with tf.function on the TensorFlow backend,
measured side by side in one run (warm-up, then timed repeats in which the
implementations alternate; best and median of the repeats).  If ``torch_harmonics`` is importable, its ``RealSHT`` /
``InverseRealSHT`` on the same batch shape (equiangular n x n grid, lmax = n/2)
run in the same process, and so does `sep` compiled with XLA (row sep_xla; `--no-xla` skips it).
Prints a table and writes benchmarks/results/sht.json.

Each timed call returns the framework's own tensor (TensorFlow's eager execution
and PyTorch on CPU are synchronous, so the work is done when the call returns);
``--to-numpy`` also converts every result to a NumPy array (a host copy for
TensorFlow, a view for PyTorch).  ``--threads N`` gives TensorFlow (intra- and
inter-op) and PyTorch the same number of threads; by default both use their own
defaults (all cores), which the table header reports.

Usage: python benchmarks/sht.py [--sizes 32,64,128] [--batch 16] [--channels 8] [--repeats 10]
                                [--threads N] [--to-numpy]
"""
import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from spherical_cnn import sht, sht_tables  # noqa: E402


def interleaved_times(calls, repeats, warmup=2):
    """Best and median seconds of each named call; the calls alternate within every repeat
    so that load from other processes affects all of them alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (float(np.min(v)), float(np.median(v))) for k, v in times.items()}


def keras_calls(n, method, x, to_numpy=False, xla=False):
    """Compiled forward/inverse of our transform; ``xla=True`` compiles with XLA (jit_compile)."""
    tr = sht.get_transform(n, method, True)
    fwd = tf.function(lambda v: tr.forward_packed(v), jit_compile=xla)
    inv = tf.function(lambda c: tr.inverse_packed(c), jit_compile=xla)
    xt = tf.constant(x)
    c = fwd(xt)
    if to_numpy:
        calls = {"forward": lambda: fwd(xt).numpy(), "inverse": lambda: inv(c).numpy()}
    else:
        calls = {"forward": lambda: fwd(xt), "inverse": lambda: inv(c)}
    return calls, {"table_bytes": sht_tables.table_nbytes(n, method, True)}


def torch_harmonics_calls(n, x, to_numpy=False, threads=0):
    try:
        import torch
    except ImportError:
        return None
    try:
        from torch_harmonics.sht import InverseRealSHT, RealSHT
    except ImportError:
        # The wheel's compiled extensions (attention, disco) may not match the installed
        # torch; the SHT itself is pure Python, so load its modules without the package's
        # __init__ (which imports those extensions).
        import importlib.util
        import types
        spec = importlib.util.find_spec("torch_harmonics")
        if spec is None:
            return None
        for name in [k for k in sys.modules if k.startswith("torch_harmonics")]:
            del sys.modules[name]
        pkg = types.ModuleType("torch_harmonics")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["torch_harmonics"] = pkg
        try:
            from torch_harmonics.sht import InverseRealSHT, RealSHT
        except ImportError:
            return None
    torch.set_grad_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    b, _, _, c = x.shape
    # torch-harmonics grids are (..., nlat, nlon)
    xt = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 2, 1))))
    fwd = RealSHT(n, n, lmax=n // 2, mmax=n // 2, grid="equiangular")
    inv = InverseRealSHT(n, n, lmax=n // 2, mmax=n // 2, grid="equiangular")
    coeffs = fwd(xt)
    info = {"table_bytes": int(sum(t.numel() * t.element_size() for t in
                                   list(fwd.buffers()) + list(inv.buffers()))),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if to_numpy:
        # complex coefficients: view_as_real gives a real view, as the keras layout
        return ({"forward": lambda: torch.view_as_real(fwd(xt)).numpy(),
                 "inverse": lambda: inv(coeffs).numpy()}, info)
    return {"forward": lambda: fwd(xt), "inverse": lambda: inv(coeffs)}, info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,128")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for TensorFlow and PyTorch alike (0: each library's default)")
    ap.add_argument("--to-numpy", action="store_true",
                    help="convert every result to a NumPy array inside the timed call")
    ap.add_argument("--no-xla", action="store_true",
                    help="skip the sep_xla row (sep compiled with XLA, tf.function(jit_compile=True))")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "sht.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    nmaps = args.batch * args.channels
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        x = rng.standard_normal((args.batch, n, n, args.channels)).astype("float32")
        impls = {m: keras_calls(n, m, x, args.to_numpy) for m in ["naive", "sep"]}
        if not args.no_xla:
            impls["sep_xla"] = keras_calls(n, "sep", x, args.to_numpy, xla=True)
        th_calls = torch_harmonics_calls(n, x, args.to_numpy, args.threads)
        if th_calls is not None:
            impls["torch_harmonics"] = th_calls
        calls = {(impl, d): fn for impl, (fns, _) in impls.items() for d, fn in fns.items()}
        times = interleaved_times(calls, args.repeats)
        res = {}
        for impl, (_, info) in impls.items():
            r = dict(info)
            for d in ("forward", "inverse"):
                r[f"{d}_s"], r[f"{d}_median_s"] = times[impl, d]
            res[impl] = r
        for impl, r in res.items():
            rows.append({"n": n, "impl": impl, "maps": nmaps,
                         "forward_maps_per_s": nmaps / r["forward_s"],
                         "inverse_maps_per_s": nmaps / r["inverse_s"], **r})
        print(f"n={n} done", file=sys.stderr, flush=True)

    by = {(r["n"], r["impl"]): r for r in rows}
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    th_threads = next((r["torch_threads"] for r in rows if "torch_threads" in r), None)
    threads_note = f"TF {tf_threads}" + (f", torch {th_threads}" if th_threads else "")
    print(f"\nbatch {args.batch} x {args.channels} channels = {nmaps} real maps per call; "
          f"best of {args.repeats}; TF {tf.__version__}, {os.cpu_count()} CPUs; threads: {threads_note}; "
          f"results {'converted to NumPy' if args.to_numpy else 'kept as framework tensors'}")
    head = (f"{'n':>4} {'impl':>16} {'fwd maps/s':>12} {'inv maps/s':>12} {'fwd x naive':>11} "
            f"{'inv x naive':>11} {'tables MiB':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        base = by[(r["n"], "naive")]
        r["forward_speedup_vs_naive"] = base["forward_s"] / r["forward_s"]
        r["inverse_speedup_vs_naive"] = base["inverse_s"] / r["inverse_s"]
        print(f"{r['n']:>4} {r['impl']:>16} {r['forward_maps_per_s']:>12.0f} {r['inverse_maps_per_s']:>12.0f} "
              f"{r['forward_speedup_vs_naive']:>11.1f} {r['inverse_speedup_vs_naive']:>11.1f} "
              f"{r['table_bytes'] / 2**20:>10.2f}")
    for n in sizes:
        if (n, "torch_harmonics") in by:
            t = by[(n, "torch_harmonics")]
            for impl in ("sep", "sep_xla"):
                if (n, impl) in by:
                    s = by[(n, impl)]
                    print(f"n={n}: {impl} / torch-harmonics throughput: forward "
                          f"{t['forward_s'] / s['forward_s']:.2f}x, inverse {t['inverse_s'] / s['inverse_s']:.2f}x")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    meta = {"batch": args.batch, "channels": args.channels, "repeats": args.repeats,
            "tf_threads": tf_threads, "torch_threads": th_threads, "to_numpy": args.to_numpy,
            "tensorflow": tf.__version__, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
