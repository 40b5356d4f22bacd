#!/usr/bin/env python3
"""Training step of the demo model: this tree against a baseline revision, side by side.

Every measurement runs in its own subprocess (so that peak memory is its own)
and the variants alternate for ``--rounds`` rounds (in reverse order every
other round), so that load from other
processes falls on all of them alike; a variant's figure is the best of its
rounds' median step times, printed with the range of those medians and, as the
figure least moved by a shared machine's drifting load, the median over rounds of
its ratio to the reference within each round. A variant is ``TREE:METHOD[:xla][:mixed][:half|:all]`` or ``torch``:

- TREE ``current`` is this checkout; ``baseline`` is ``--baseline REV`` checked out
  with ``git worktree add`` in a temporary folder (removed afterwards);
- METHOD is the ``--transform_method`` (``sep`` or ``naive``);
- ``xla`` adds ``--xla`` (the steps compiled with XLA; current tree only);
- ``mixed`` adds ``--mixed_precision`` (bfloat16 on a CPU; current tree only);
- ``half`` / ``all`` force the sep transform's Legendre step at every size
  (``sht_tables.HALF_ROWS_MIN_N``; default: the size rule; current tree only);
- ``torch``: the same network written the way a PyTorch user would write it with
  torch-harmonics (``RealSHT`` -> per-degree channel mixing with the same
  interpolated zonal filters -> ``InverseRealSHT``, batch norm with a centre only,
  PReLU, area-weighted 2x2 pooling, the same widths, branches and heads, Adam),
  eager, in float32, run by ``--torch_python`` (an interpreter with torch and
  torch-harmonics: ``pip install .[bench]`` in a separate virtual environment).

Every variant gets the same batch and ``--threads`` threads (TensorFlow intra- and
inter-op, ``torch.set_num_threads``); the parameter counts of both networks are
printed (trainable; Keras' total also counts the batch norms' moving statistics).

The model is ``params/model-64.txt`` + ``params/m40-64.txt`` with random
``(batch, 64, 64, 2)`` inputs; a step is forward, losses, backward and the
optimizer update (the trainer's own compiled step).

Also measured in the same run:

- the float32 matmul speed of this machine (a 1024 x 1024 x 1024 product, best
  of 10, in each round) and the floating-point work of the step's spherical
  convolutions (transforms and per-degree filters, forward and backward,
  counted from the model's layers): their ratio is the time the step would
  take if it ran only those matmuls at that speed ("FLOP limit");
- the input pipeline: records read, parsed and converted (``--mag_ang``) per
  second by the trainer's own tf.data pipeline from a temporary set of
  res-64 complex64 records, against the samples per second trained.

    python3 benchmarks/train_step.py --baseline c43df2f        # before/after table
    python3 benchmarks/train_step.py --baseline c43df2f --profile   # ... and where the time goes
    python3 benchmarks/train_step.py --variants current:sep,current:naive
    python3 benchmarks/train_step.py --baseline main --variants baseline:sep,current:sep,current:sep:mixed,torch \
        --torch_python .venv-bench/bin/python
    KERAS_BACKEND=jax python3 benchmarks/train_step.py --variants current:sep   # JAX path

Prints a table and writes benchmarks/results/train_step.json.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

import side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ORIGINAL_SAMPLES = 468_000   # ~48 augmented copies of the 9,843 ModelNet40 training meshes


# ----------------------------------------------------------------------------- workers

def _flags(root, method, batch, res, xla, logdir, mixed=False):
    argv = ["@" + os.path.join(root, "params", "model-64.txt"),
            "@" + os.path.join(root, "params", "m40-64.txt"),
            "--transform_method", method, "--input_res", str(res), "--train_bsize", str(batch),
            "--logdir", logdir]
    return argv + (["--xla"] if xla else []) + (["--mixed_precision"] if mixed else [])


def _tf_threads(threads):
    if threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _force_legendre_rows(rows):
    """Make every sep transform use the Legendre step ``rows`` ('half' or 'all')."""
    if rows:
        from spherical_cnn import sht_tables
        sht_tables.HALF_ROWS_MIN_N = 2 if rows == "half" else 1 << 30


def step_worker(root, method, xla, batch, res, steps, warmup, mixed=False, threads=0, rows=None):
    """Time the training step of the tree at ``root``; print one JSON line."""
    sys.path.insert(0, root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _tf_threads(threads)
    import numpy as np
    import keras
    from spherical_cnn import models, params
    _force_legendre_rows(rows)

    logdir = tempfile.mkdtemp(prefix="train_step_")
    args = params.parse(_flags(root, method, batch, res, xla, logdir, mixed))
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

        def step():
            return trainer._train_step(x, y).numpy()
        n_params = trainer.model.count_params()
        n_trainable = int(sum(np.prod(v.shape) for v in trainer.model.trainable_weights))
    else:
        model = models.build_model(args, (res, res, 2))
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            "extra_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
        targets = {"logits": y, "extra_logits": y}

        def step():
            return model.train_on_batch(x, targets)
        n_params = model.count_params()
        n_trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    _time_steps(step, warmup, steps, t_build, backend=backend, n_params=int(n_params), n_trainable=n_trainable)
    shutil.rmtree(logdir, ignore_errors=True)


def _time_steps(step, warmup, steps, t_build, **info):
    """Run ``warmup`` then ``steps`` timed calls of ``step``; print one JSON line with ``info``."""
    for _ in range(warmup):
        step()
    build_s = time.perf_counter() - t_build
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps(dict(info, times_s=times, build_and_warmup_s=build_s,
                          peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)))


def torch_worker(batch, res, steps, warmup, threads):
    """The model-64 network as a PyTorch user would write it with torch-harmonics; one JSON line.

    Same architecture as ``params/model-64.txt`` (two branches, widths
    16,16,32,32,64,64,128,128, 2x2 area-weighted pooling after layers 2, 4, 6,
    branches concatenated at those layers, 8 filter parameters per (input, output)
    pair interpolated over the degrees, batch norm with a centre only, PReLU with
    per-channel slopes, area-weighted global average, a classifier on all features
    and an extra one on branch 1's, 40 classes, Adam), written here from the
    description of the model (no code of another project). Maps are torch-harmonics'
    ``(batch, channels, polar, azimuth)`` on the equiangular n x n grid.
    """
    import numpy as np
    import torch
    from torch import nn
    from torch_harmonics import InverseRealSHT, RealSHT
    if threads:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    torch.manual_seed(0)
    nfilters = [16, 16, 32, 32, 64, 64, 128, 128]
    pools = [0, 0, 1, 0, 1, 0, 1, 0]
    concats = [0, 0, 1, 0, 1, 0, 1, 0]
    nfp, n_classes = 8, 40

    def cell_weights(n):  # sin at the cell centre, one per polar row
        return torch.tensor(np.sin(np.pi * np.arange(n) / n + np.pi / (2 * n)), dtype=torch.float32)

    class SphConv(nn.Module):
        def __init__(self, n, cin, cout):
            super().__init__()
            L = n // 2
            self.sht = RealSHT(n, n, lmax=L, mmax=L, grid="equiangular")
            self.isht = InverseRealSHT(n, n, lmax=L, mmax=L, grid="equiangular")
            self.weight = nn.Parameter(torch.randn(cin, min(nfp, L), cout) * 2 / (2 * np.pi * np.sqrt(L * cin)))
            w = min(nfp, L)
            interp = np.stack([np.interp(np.linspace(0, 1, L), np.linspace(0, 1, w), np.eye(w)[i])
                               for i in range(w)])
            zonal = 2 * np.pi * np.sqrt(4 * np.pi / (2 * np.arange(L) + 1))
            self.register_buffer("degree", torch.tensor(interp * zonal, dtype=torch.float32))

        def forward(self, x):
            c = self.sht(x)  # (b, cin, l, m) complex
            k = torch.einsum("cwf,wl->clf", self.weight, self.degree).to(c.dtype)
            return self.isht(torch.einsum("bclm,clf->bflm", c, k))

    class Block(nn.Module):
        def __init__(self, n, cin, cout, pool):
            super().__init__()
            self.conv = SphConv(n, cin, cout)
            self.bn = nn.BatchNorm2d(cout, affine=False)
            self.beta = nn.Parameter(torch.zeros(cout, 1, 1))  # centre only, as the original
            self.act = nn.PReLU(cout, init=0.1)
            self.pool = pool
            if pool:
                self.register_buffer("w_fine", cell_weights(n)[:, None])
                self.register_buffer("w_coarse", cell_weights(n // 2)[:, None])

        def forward(self, x):
            x = self.act(self.bn(self.conv(x)) + self.beta)
            if self.pool:
                x = nn.functional.avg_pool2d(x * self.w_fine, 2) / self.w_coarse
            return x

    class TwoBranch(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.blocks = nn.ModuleList()
            cin = [1, 1]
            for nf, pool, concat in zip(nfilters, pools, concats):
                ins = [cin[0] + cin[1] if concat else cin[0], cin[1]]
                self.blocks.append(nn.ModuleList([Block(n, ins[b], nf, pool) for b in (0, 1)]))
                cin = [nf, nf]
                n = n // 2 if pool else n
            self.register_buffer("w_final", cell_weights(n)[:, None])
            self.out = nn.Linear(2 * nfilters[-1], n_classes)
            self.out_extra = nn.Linear(nfilters[-1], n_classes)

        def forward(self, x):
            br = [x[:, :1], x[:, 1:]]
            for (b0, b1), concat in zip(self.blocks, concats):
                if concat:
                    br[0] = torch.cat(br, dim=1)
                br = [b0(br[0]), b1(br[1])]
            f = (torch.cat(br, dim=1) * self.w_final).mean(dim=(2, 3))
            return self.out(f), self.out_extra(f[:, nfilters[-1]:])

    model = TwoBranch(res)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(batch, 2, res, res)).astype("float32"))
    y = torch.from_numpy(rng.integers(0, n_classes, size=batch).astype("int64"))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        logits, extra = model(x)
        loss = loss_fn(logits, y) + loss_fn(extra, y)
        loss.backward()
        opt.step()
        return loss.item()

    n_trainable = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    _time_steps(step, warmup, steps, time.perf_counter(), backend="torch " + torch.__version__,
                n_params=int(n_trainable + n_buffers), n_trainable=int(n_trainable))


def conv_flops(model, batch):
    """Floating-point operations of the ``SphConv`` layers of ``model`` for one training step.

    Counts the matmuls of the 'sep' transforms as implemented with the Legendre step
    of each size's default (``sht_tables.default_legendre_rows``: 'half' = the 4 x 4
    azimuth and equator butterfly, half-length DFTs, Legendre per order, degree parity
    and part over half the polar rows; 'all' = the 2 x 2 azimuth butterfly,
    half-length DFTs, Legendre per order and part over all rows) and
    of the per-degree filter, forward and backward: the backward pass of a
    linear map costs what its forward pass costs for the input gradient, and the
    filter also needs its kernel gradient; the first layer needs no input
    gradient. Returns ``{"transforms": flops, "filters": flops}``.
    """
    from spherical_cnn import layers, sht_tables

    def per_map(n):  # analysis or synthesis of one map on the n x n grid
        h = n // 2
        L2 = Lh = (h + 1) // 2
        if sht_tables.default_legendre_rows(n) == "all":
            # 2 x 2 butterfly, half-length DFTs, Legendre over all rows
            return 4 * n * n + 8 * L2 * h * n + 16 * L2 * Lh * n
        # 4 x 4 butterfly, half-length DFTs, Legendre over half the rows (synthesis: h + 1 rows)
        return 8 * n * n + 16 * L2 * h * h + 16 * L2 * Lh * (h + 1)

    total = {"transforms": 0.0, "filters": 0.0}
    convs = [l for l in model.layers if isinstance(l, layers.SphConv)]
    for layer in convs:
        n, p = layer.n, layer.spectral_pool
        n_out = n // 2 ** p
        L2p = (n_out // 2 + 1) // 2
        first = not _has_weights_upstream(layer.input)
        analysis = batch * layer.in_channels * per_map(n)
        synthesis = batch * layer.filters * per_map(n_out)
        filt = 2 * (n_out // 2) * 4 * L2p * batch * layer.in_channels * layer.filters
        total["transforms"] += (analysis + synthesis) * 2 - (analysis if first else 0)
        total["filters"] += filt * (2 if first else 3)
    return total


def _has_weights_upstream(tensor):
    """Whether a layer with weights lies between the model's input and ``tensor``."""
    op = tensor._keras_history.operation
    if op.weights:
        return True
    inputs = op._inbound_nodes[0].input_tensors if op._inbound_nodes else []
    return any(_has_weights_upstream(t) for t in inputs)


def info_worker(root, batch, res, threads=0):
    """Matmul speed of this machine and the step's convolution FLOPs; one JSON line."""
    sys.path.insert(0, root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _tf_threads(threads)
    import numpy as np
    import tensorflow as tf
    from spherical_cnn import models, params

    a = tf.constant(np.random.default_rng(0).standard_normal((1024, 1024)).astype("float32"))
    mm = tf.function(lambda: tf.matmul(a, a))
    mm().numpy()
    best = min(_timed(lambda: mm().numpy()) for _ in range(10))
    args = params.parse(_flags(root, "sep", batch, res, False, tempfile.gettempdir()))
    model = models.build_model(args, (res, res, 2))
    print(json.dumps({"matmul_gflops": 2 * 1024 ** 3 / best / 1e9, **conv_flops(model, batch)}))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pipeline_worker(root, batch, res, records):
    """Samples/s of the trainer's input pipeline (read, parse, --mag_ang) alone; one JSON line."""
    sys.path.insert(0, root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from spherical_cnn import datasets, params
    from spherical_cnn.data import records as rec

    d = tempfile.mkdtemp(prefix="train_step_data_")
    try:
        rng = np.random.default_rng(0)
        x = (rng.random((records, res, res, 1)) * np.exp(1j * rng.random((records, res, res, 1)))
             ).astype(np.complex64)
        for split in ("train", "test"):
            rec.write_records(os.path.join(d, split + "_000.tfrecord"),
                              (rec.encode_example(x[i], i % 40, fname="m/{}.off".format(i))
                               for i in range(records)))
        args = params.parse(_flags(root, "sep", batch, res, False, d) + ["--dset_dir", d, "--skip_val"])
        ds = datasets.load(args)
        for _ in ds.train(0):  # warm-up: file cache, tf.data start
            pass
        t0 = time.perf_counter()
        n = 0
        for epoch in range(3):
            for xb, _ in ds.train(epoch):
                n += int(xb.shape[0])
        print(json.dumps({"pipeline_samples_per_s": n / (time.perf_counter() - t0)}))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def profile_worker(root, batch, res, steps, mixed=False, threads=0):
    """Where the time of the current step goes: TensorFlow profiler, self time per op type
    and per kind of layer (summed over threads), one JSON line. Uses the profiler's
    converter to op statistics (a TensorFlow-internal module: if it is missing, says so)."""
    sys.path.insert(0, root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import glob
    import re
    import numpy as np
    import tensorflow as tf
    from spherical_cnn import params, training
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError:
        print(json.dumps({"error": "this TensorFlow has no profiler plugin converter"}))
        return

    _tf_threads(threads)
    logdir = tempfile.mkdtemp(prefix="train_step_profile_")
    args = params.parse(_flags(root, "sep", batch, res, False, logdir, mixed))

    class OneBatch:
        input_shape = (res, res, 2)
        class_names = None

    trainer = training.Trainer(args, dataset=OneBatch())
    trainer._build_steps()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, res, res, 2)).astype("float32")
    y = rng.integers(0, args.n_classes, size=batch).astype("int64")
    for _ in range(3):
        trainer._train_step(x, y).numpy()
    trace = os.path.join(logdir, "trace")
    t0 = time.perf_counter()
    tf.profiler.experimental.start(trace)
    for _ in range(steps):
        trainer._train_step(x, y).numpy()
    tf.profiler.experimental.stop()
    wall_ms = (time.perf_counter() - t0) / steps * 1e3
    xplane = glob.glob(os.path.join(trace, "**", "*.xplane.pb"), recursive=True)[0]
    data, _ = plugin.xspace_to_tools_data([xplane], "framework_op_stats", {})
    table = json.loads(data)[0]
    cols = [c["id"] for c in table["cols"]]
    rows = [{k: (c or {}).get("v") for k, c in zip(cols, r["c"])} for r in table["rows"]]
    by_type, by_kind = {}, {}
    for r in rows:
        if r["type"] == "IDLE":
            continue
        ms = r["total_self_time"] / steps / 1e3
        op_type = re.sub(r"^_Mkl(Native)?", "", r["type"])
        by_type[op_type] = by_type.get(op_type, 0.0) + ms
        m = re.search(r"conv\d+_b\d+_(conv|bn|act|pool)", r["operation"])
        kind = {"conv": "spherical convolutions", "bn": "batch norm", "act": "nonlinearity (PReLU)",
                "pool": "grid pooling"}[m.group(1)] if m else "other (head, losses, optimizer)"
        by_kind[kind] = by_kind.get(kind, 0.0) + ms
    shutil.rmtree(logdir, ignore_errors=True)
    print(json.dumps({"wall_ms_per_step_profiled": wall_ms, "by_op_type_ms": by_type, "by_kind_ms": by_kind}))


def print_profile(prof):
    if "error" in prof:
        print("profile:", prof["error"])
        return
    total = sum(prof["by_kind_ms"].values())
    print("\nWhere the time goes (current:sep, TensorFlow profiler, self time summed over threads: "
          "{:.0f} thread-ms per step, {:.0f} ms wall while profiled)".format(total, prof["wall_ms_per_step_profiled"]))
    print("| layers | thread-ms | share |")
    print("|---|---:|---:|")
    for k, v in sorted(prof["by_kind_ms"].items(), key=lambda kv: -kv[1]):
        print("| {} | {:.1f} | {:.0f}% |".format(k, v, 100 * v / total))
    print("| op type | thread-ms | share |")
    print("|---|---:|---:|")
    for k, v in sorted(prof["by_op_type_ms"].items(), key=lambda kv: -kv[1])[:10]:
        print("| {} | {:.1f} | {:.0f}% |".format(k, v, 100 * v / total))


# ----------------------------------------------------------------------------- driver

def parse_variant(text, have_baseline):
    if text == "torch":
        return {"name": text, "tree": "torch", "method": None, "xla": False, "mixed": False, "rows": None}
    parts = text.split(":")
    opts = parts[2:]
    rows = [o for o in opts if o in ("half", "all")]
    if len(parts) < 2 or parts[0] not in ("current", "baseline") or parts[1] not in ("sep", "naive") \
            or len(set(opts)) != len(opts) or not set(opts) <= {"xla", "mixed", "half", "all"} or len(rows) > 1:
        sys.exit("--variants: expected TREE:METHOD[:xla][:mixed][:half|:all] with TREE current|baseline and "
                 "METHOD sep|naive, or torch; got {!r}".format(text))
    if parts[0] == "baseline" and not have_baseline:
        sys.exit("--variants {}: needs --baseline REV".format(text))
    return {"name": text, "tree": parts[0], "method": parts[1], "xla": "xla" in opts,
            "mixed": "mixed" in opts, "rows": rows[0] if rows else None}


def median(v):
    v = sorted(v)
    return 0.5 * (v[(len(v) - 1) // 2] + v[len(v) // 2])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", help="git revision to compare against (checked out in a temporary worktree)")
    p.add_argument("--variants", help="comma-separated TREE:METHOD[:xla] (default: baseline:sep if "
                                      "--baseline, current:sep, current:sep:xla)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pipeline_records", type=int, default=512,
                   help="records of the input pipeline measurement (0: skip it)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for TensorFlow (intra- and inter-op) and PyTorch alike (0: defaults)")
    p.add_argument("--torch_python", default=sys.executable,
                   help="interpreter with torch and torch-harmonics for the torch variant")
    p.add_argument("--out", default=os.path.join(HERE, "results", "train_step.json"))
    p.add_argument("--profile", action="store_true",
                   help="also profile the current tree's step (TensorFlow) and print where the time goes")
    p.add_argument("--worker", choices=["step", "info", "pipeline", "profile"], help=argparse.SUPPRESS)
    p.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    p.add_argument("--method", default="sep", help=argparse.SUPPRESS)
    p.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mixed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--legendre_rows", choices=["half", "all"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker == "step" and a.method == "torch":
        return torch_worker(a.batch, a.res, a.steps, a.warmup, a.threads)
    if a.worker == "step":
        return step_worker(a.root, a.method, a.xla, a.batch, a.res, a.steps, a.warmup, a.mixed, a.threads,
                           a.legendre_rows)
    if a.worker == "info":
        return info_worker(a.root, a.batch, a.res, a.threads)
    if a.worker == "pipeline":
        return pipeline_worker(a.root, a.batch, a.res, a.pipeline_records)
    if a.worker == "profile":
        return profile_worker(a.root, a.batch, a.res, a.steps, a.mixed, a.threads)

    default = (["baseline:sep"] if a.baseline else []) + ["current:sep", "current:sep:xla"]
    variants = [parse_variant(v, bool(a.baseline)) for v in (a.variants.split(",") if a.variants else default)]
    base_dir = side_by_side.checkout(a.baseline) if a.baseline else None
    try:
        common = ["--batch", str(a.batch), "--res", str(a.res), "--threads", str(a.threads)]
        for v in variants:
            v["medians_ms"], v["peak_rss_mb"] = [], 0.0
        speeds = []
        for r in range(a.rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):  # no variant always goes first
                print("round {}/{}: {} ...".format(r + 1, a.rounds, v["name"]), file=sys.stderr, flush=True)
                root = base_dir if v["tree"] == "baseline" else ROOT
                res = side_by_side.run_worker(__file__, [
                    "--worker", "step", "--root", root, "--method", v["method"] or "torch",
                    "--steps", str(a.steps), "--warmup", str(a.warmup)] + (["--xla"] if v["xla"] else [])
                    + (["--mixed"] if v["mixed"] else [])
                    + (["--legendre_rows", v["rows"]] if v["rows"] else []) + common,
                    python=a.torch_python if v["tree"] == "torch" else None)
                v["medians_ms"].append(1e3 * median(res["times_s"]))
                print("  {}: median {:.0f} ms/step".format(v["name"], v["medians_ms"][-1]), file=sys.stderr,
                      flush=True)
                v["peak_rss_mb"] = max(v["peak_rss_mb"], res["peak_rss_mb"])
                v["backend"], v["n_params"] = res["backend"], res["n_params"]
                v["n_trainable"] = res.get("n_trainable")
            info = side_by_side.run_worker(__file__, ["--worker", "info"] + common)
            speeds.append(info["matmul_gflops"])
        pipe = (side_by_side.run_worker(
            __file__, ["--worker", "pipeline", "--pipeline_records", str(a.pipeline_records)] + common)
            if a.pipeline_records else {"pipeline_samples_per_s": float("nan")})
        prof = (side_by_side.run_worker(__file__, ["--worker", "profile", "--steps", str(a.steps)] + common)
                if a.profile else None)
    finally:
        if base_dir:
            side_by_side.remove(base_dir)

    gflops = max(speeds)
    conv = info["transforms"] + info["filters"]
    limit_ms = conv / (gflops * 1e9) * 1e3
    ref = next((v for v in variants if v["tree"] == "baseline"), variants[0])
    for v in variants:
        v["step_ms"] = min(v["medians_ms"])
        v["samples_per_s"] = a.batch / v["step_ms"] * 1e3
        v["x_vs_ref"] = ref["step_ms"] / v["step_ms"]
        # variants alternate within a round, so a ratio within each round cancels the slow
        # drifts of a shared machine's load that best-of-rounds figures carry
        v["x_vs_ref_per_round"] = median([r / m for r, m in zip(ref["medians_ms"], v["medians_ms"])])
        v["x_flop_limit"] = v["step_ms"] / limit_ms
        v["original_schedule_h"] = ORIGINAL_SAMPLES / v["samples_per_s"] / 3600

    print("\nTraining step, model-64 configuration, batch {}, res {}, backend {}; {} CPUs ({}); "
          "best of {} rounds x median of {} steps".format(
              a.batch, a.res, variants[0]["backend"], os.cpu_count(),
              platform.processor() or platform.machine(), a.rounds, a.steps))
    if a.baseline:
        print("baseline = {}".format(a.baseline))
    print("{} threads per variant".format(a.threads or "default"))
    print("| variant | ms/step | rounds (ms) | samples/s | x {0} | x {0}, per round | x FLOP limit "
          "| peak RSS (MB) | 48-epoch ModelNet40 (h) | parameters (trainable / total) |".format(ref["name"]))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        print("| {} | {:.0f} | {:.0f}-{:.0f} | {:.1f} | {:.2f} | {:.2f} | {:.1f} | {:.0f} | {:.1f} | {} / {} |".format(
            v["name"], v["step_ms"], min(v["medians_ms"]), max(v["medians_ms"]), v["samples_per_s"],
            v["x_vs_ref"], v["x_vs_ref_per_round"], v["x_flop_limit"],
            v["peak_rss_mb"], v["original_schedule_h"], v.get("n_trainable"), v["n_params"]))
    print("(ms/step: the best round's median; rounds: the range of the rounds' medians; per round: the "
          "median over rounds of the ratio within each round)")
    print("\nSpherical convolutions: {:.2f} GFLOP per step (transforms {:.2f}, filters {:.2f}); "
          "float32 matmul speed {:.0f} GFLOP/s (best of the rounds: {}) -> FLOP limit {:.0f} ms/step"
          .format(conv / 1e9, info["transforms"] / 1e9, info["filters"] / 1e9, gflops,
                  ", ".join("{:.0f}".format(s) for s in speeds), limit_ms))
    best = max(variants, key=lambda v: v["samples_per_s"])
    print("Input pipeline (read + parse + --mag_ang, res {}): {:.0f} samples/s = {:.1f}x the fastest "
          "variant's {:.0f} samples/s trained".format(a.res, pipe["pipeline_samples_per_s"],
                                                      pipe["pipeline_samples_per_s"] / best["samples_per_s"],
                                                      best["samples_per_s"]))
    if prof:
        print_profile(prof)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"variants": variants, "profile": prof, "baseline": a.baseline, "matmul_gflops": speeds,
                   "conv_flops": {"transforms": info["transforms"], "filters": info["filters"]},
                   "flop_limit_ms": limit_ms, "pipeline_samples_per_s": pipe["pipeline_samples_per_s"],
                   "batch": a.batch, "res": a.res, "cpus": os.cpu_count(),
                   "machine": platform.processor() or platform.machine(), "argv": sys.argv[1:]}, f, indent=2)
    print("wrote", os.path.relpath(a.out, ROOT))


if __name__ == "__main__":
    main()
