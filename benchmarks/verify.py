#!/usr/bin/env python3
"""Cost of verifying a dataset before training (spherical_cnn/data/verify.py).

Writes a synthetic set in the layout of the authors' ModelNet40 data (complex64
maps at res 64, ``--shards`` train shards), then times, in one process:

- ``read only``: iterating the records with tf.data and nothing else (the floor);
- ``verify``: the full check (framing, sizes, labels, finite values), uncached;
- ``verify, cached``: the same call again (files unchanged: cache hits only).

and extrapolates the uncached rate to the original 7.0 GB set. Prints a table
and writes ``benchmarks/results/verify.json``.

    python3 benchmarks/verify.py                 # 48 shards x 300 records (~470 MB)
    python3 benchmarks/verify.py --records_per_shard 1000
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

ORIGINAL_BYTES = 7.0e9  # m40_tf_csph_3d_48aug_64


def write_set(directory, shards, per_shard, res, seed=0):
    from spherical_cnn.data import records
    rng = np.random.default_rng(seed)
    x = (rng.random((per_shard, res, res, 1)) * np.exp(1j * rng.random((per_shard, res, res, 1)))
         ).astype(np.complex64)
    for s in range(shards):
        recs = (records.encode_example(x[i], (i + s) % 40, fname="m/{}_{}.off".format(s, i), idrot=s)
                for i in range(per_shard))
        records.write_records(os.path.join(directory, "train_{:03d}.tfrecord".format(s)), recs)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory))


def read_only(paths):
    import tensorflow as tf
    n = 0
    for _ in tf.data.TFRecordDataset(paths, buffer_size=1 << 22).batch(256).prefetch(2):
        n += 1
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=48)
    p.add_argument("--records_per_shard", type=int, default=300)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--dir", default=None, help="where to write the set (default: a temporary folder)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results", "verify.json"))
    a = p.parse_args()
    from spherical_cnn.data import verify

    directory = a.dir or tempfile.mkdtemp(prefix="verify-bench-")
    os.makedirs(directory, exist_ok=True)
    os.environ[verify.CACHE_ENV] = os.path.join(directory, "cache")
    try:
        t0 = time.perf_counter()
        paths = write_set(directory, a.shards, a.records_per_shard, a.res)
        write_s = time.perf_counter() - t0
        total = sum(os.path.getsize(p) for p in paths)
        n = a.shards * a.records_per_shard
        spec = verify.RecordSpec(res=a.res, nchannels=1, dtype="complex64", n_classes=40)
        rows = []
        for name, fn in [("read only", lambda: read_only(paths)),
                         ("verify", lambda: verify.verify_files(paths, spec)),
                         ("verify, cached", lambda: verify.verify_files(paths, spec))]:
            t0 = time.perf_counter()
            fn()
            s = time.perf_counter() - t0
            rows.append({"what": name, "seconds": s, "records_per_s": n / s, "mb_per_s": total / s / 1e6})
        full = rows[1]["seconds"] * ORIGINAL_BYTES / total
        print("{} records in {} shards, {:.0f} MB (res {}, complex64), written in {:.1f} s".format(
            n, a.shards, total / 1e6, a.res, write_s))
        print("| what | seconds | records/s | MB/s |")
        print("|---|---:|---:|---:|")
        for r in rows:
            print("| {} | {:.2f} | {:.0f} | {:.0f} |".format(r["what"], r["seconds"], r["records_per_s"],
                                                         r["mb_per_s"]))
        print("verify / read-only time: {:.2f}x".format(rows[1]["seconds"] / rows[0]["seconds"]))
        print("estimate for the original 7.0 GB set: {:.0f} s ({:.1f} min) once; cached runs: {:.2f} s".format(
            full, full / 60, rows[2]["seconds"]))
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"records": n, "shards": a.shards, "bytes": total, "res": a.res, "rows": rows,
                       "estimate_original_seconds": full, "cpu_count": os.cpu_count(),
                       "machine": platform.machine(), "python": platform.python_version()}, f, indent=1)
        print("wrote", a.out)
    finally:
        if a.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
