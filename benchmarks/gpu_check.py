#!/usr/bin/env python3
"""GPU check: numerics, speed and a full-size training run on whatever accelerator
Keras sees, in one command that fits a short GPU lease (docs/gpu.md).

Runs WITHOUT TensorFlow (the GPU machine has none): the project's layers and
``models.build_model`` on Keras' JAX backend (every step compiled by XLA with
``jax.jit``) and on Keras' torch backend (eager). Each backend runs in a worker
process of its own (Keras fixes the backend per process); TensorFlow is blocked
in the workers, so a CPU with TensorFlow installed runs the same code as the GPU
machine. Sections, in this order, each within its share of ``--budget_s``:

- ``numerics``: the transforms ('naive', 'sep' with both Legendre steps; forward
  and inverse) and ``SphConv`` computed on the device in float32, bfloat16 and
  float16 (JAX: float32 also with ``jax_default_matmul_precision='highest'``,
  since JAX's default lets a GPU multiply float32 matrices in TF32), against
  the NumPy reference ``spherical_cnn.spherical`` in float64, at n = 32 .. 256:
  max |error| / max |reference|, with the CPU tests' bounds;
- ``transforms``: forward and inverse transforms alone, maps per second (JAX
  jitted; torch eager, also with the tables kept on the device), per method,
  Legendre step and precision;
- ``torch_harmonics``: torch-harmonics' ``RealSHT`` / ``InverseRealSHT`` on the
  same device and maps, when its wheel is there (else skipped, with the reason);
- ``step``: the demo's model-64 network (``params/model-64.txt`` +
  ``params/m40-64.txt``, built by ``models.build_model``), forward + losses +
  backward + Adam update, at batch 16, 32, 128: 'naive' against 'sep' (and
  'sep' with the other Legendre step), float32 against the Keras policies
  mixed_bfloat16 and mixed_float16 (with loss scaling), under JAX and torch:
  milliseconds per step, examples per second, device memory (torch: peak
  allocated; JAX: the compiled step's buffers and the process' peak), and
  JAX at 'highest' float32 precision, torch with the tables on the device;
- ``train``: spherical Fashion-MNIST at res 64 (all 60,000 + 10,000 images of
  the IDX files given by ``--idx``, projected here with
  ``spherical_cnn.data.images``, the maps ``make_images`` writes), trained with
  the recipe of ``--train_params`` on JAX for as many epochs as fit in its
  time, with train / validation / test accuracy per epoch (test both unrotated
  and rotated).

The choices the GPU defaults need are all measured: the transform method, the
Legendre step ('all' / 'half'), XLA (JAX's compiled steps and transforms against
torch's eager ones: TensorFlow itself is not on the machine) and mixed precision
(bfloat16 / float16 against float32). A section runs its items most wanted first
and lists those its share of the time did not reach.

    python3 benchmarks/gpu_check.py --idx data/fashion-mnist-idx --out results/  # GPU
    python3 benchmarks/gpu_check.py --smoke --out /tmp/gpu_check                 # CPU, tiny

``--smoke`` runs every section on the CPU at tiny sizes (n = 16, model-64 cut to two
layers, one step variant per method, policy and Legendre step); a test runs it in CI.
Writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` into ``--out``;
a section that cannot run (no GPU, a missing package, out of time) is marked
skipped with the reason. Progress and the time left go to stderr.
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from spherical_cnn import params  # noqa: E402  (light: no Keras, no TensorFlow)
from spherical_cnn.errors import UserError, run_cli  # noqa: E402

SECTIONS = ("numerics", "transforms", "torch_harmonics", "step", "train")
# the workers in the order they run, with their sections and each section's share of the budget
PLAN = (("jax", (("numerics", 0.10), ("transforms", 0.05), ("step", 0.25))),
        ("torch", (("numerics", 0.03), ("transforms", 0.03), ("torch_harmonics", 0.02), ("step", 0.10))),
        ("train", (("train", 0.42),)))
# 330 s with the grace period and the wheels' install stays inside the device call's 420 s
# timeout, and two such calls fit a 15-minute lease (docs/gpu.md)
DEFAULT_BUDGET_S = {"gpu": 330.0, "smoke": 170.0}
GRACE_S = 30.0  # a worker still running this long after its last deadline is stopped

# the CPU tests' bounds on max |error| / max |reference| (test_sht.py PRECISION_BOUNDS and
# test_layers.py); the inverse transform gets 1.5x the forward's, as the round trip there
BOUNDS = {"forward": {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1.5e-2},
          "inverse": {"float32": 1.5e-6, "float16": 3e-3, "bfloat16": 2.25e-2},
          "sphconv": {"float32": 1e-5, "float16": 5e-3, "bfloat16": 3e-2}}
DTYPES = ("float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}

# Sizes of the GPU run and of the CPU smoke run. The smoke run covers every code path once:
# its network is model-64 cut to two layers (``model_overrides``; XLA compiles the full one in
# minutes on a CPU), its step variants one per method, policy and Legendre step.
CONFIG = {
    "gpu": {"numerics_n": (32, 64, 128, 256), "naive_max_n": 128, "numerics_maps": (2, 3),
            "transform_n": (64, 128, 256), "transform_maps": (32, 16), "time_round_s": 0.1,
            "step_res": 64, "step_batches": (32, 128, 16), "step_extras": (32, 128), "step_variants": None,
            "model_overrides": [], "train_res": None, "train_counts": None, "n_val": 1000,
            "eval_batch": 500, "max_train_batch": None, "max_epochs": None, "projection_chunk": 2000},
    "smoke": {"numerics_n": (16,), "naive_max_n": 16, "numerics_maps": (2, 2),
              "transform_n": (16,), "transform_maps": (2, 2), "time_round_s": 0.01,
              "step_res": 16, "step_batches": (2,), "step_extras": (), "model_overrides":
              ["--nfilters", "8,8", "--pool_layers", "0,1", "--concat_branches", "0,1"],
              "step_variants": [("sep", None, "float32", "default"), ("naive", None, "float16", "default"),
                                ("sep", "half", "bfloat16", "default")],
              "train_res": 16, "train_counts": (96, 32), "n_val": 32, "eval_batch": 16,
              "max_train_batch": 16, "max_epochs": 2, "projection_chunk": 32},
}

MODEL_64 = ["@" + os.path.join(ROOT, "params", name) for name in ("model-64.txt", "m40-64.txt")]
# the training recipe when --train_params is not given (issue 28 chooses the real one)
DEFAULT_RECIPE = ["@" + os.path.join(ROOT, "params", "model-64.txt"), "--transform_method", "sep",
                  "--real_inputs", "--optimizer", "adam", "--learning_rate", "{0: 0.001}",
                  "--train_bsize", "32", "--n_epochs", "1000"]
# flags of the trainer that this training loop does not implement: refused, not ignored
UNSUPPORTED_FLAGS = ("triplet_loss", "spectral_input", "mag_ang", "first_n", "test_n")
DATA_SEED = 0  # the dataset builder's default seed: the same rotations as make_images' records
N_CLASSES = 10


# ============================================================================ the parent

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for gpu_check.json, .md and .log (required)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (the CI test)")
    p.add_argument("--idx", help="the Fashion-MNIST IDX files: a folder holding them, or the "
                                 "dataset-fashion-mnist .deb (train: skipped without it)")
    p.add_argument("--train_params", nargs="+", metavar="FILE",
                   help="flags files of the training recipe (as the trainer's @files); default: "
                        "params/model-64.txt --transform_method sep, Adam 1e-3, batch 32")
    p.add_argument("--train_rotation", choices=["NR", "R"], default="R",
                   help="training maps unrotated (NR) or rotated (R, one SO(3) rotation per image); "
                        "the test set is evaluated both ways")
    p.add_argument("--budget_s", type=float,
                   help="seconds for the whole check (default {gpu:.0f}; --smoke {smoke:.0f})"
                        .format(**DEFAULT_BUDGET_S))
    p.add_argument("--train_s", type=float,
                   help="seconds for the training section, at least (default: {:.0%} of the budget; the other "
                        "sections share the rest)".format(dict(PLAN[-1][1])["train"]))
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated subset of " + ", ".join(SECTIONS))
    p.add_argument("--worker", choices=[w for w, _ in PLAN], help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.worker and not a.out:
        p.error("the following arguments are required: --out")
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.worker:
        return worker_main(a.worker, a.plan)
    mode = "smoke" if a.smoke else "gpu"
    sections = _check_sections(a.sections)
    budget = a.budget_s or DEFAULT_BUDGET_S[mode]
    if a.train_s is not None and not 0 < a.train_s <= budget:
        raise UserError("--train_s {:g}: must be positive and at most --budget_s ({:g})".format(a.train_s, budget))
    recipe = training_recipe(a.train_params) if "train" in sections else None
    if "train" in sections and a.idx and not os.path.exists(a.idx):
        raise UserError("--idx {}: no such file or folder".format(a.idx))
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    log = Log(os.path.join(a.out, "gpu_check.log"), t0, budget)
    results = {"mode": mode, "argv": [_relative(t) for t in sys.argv[1:]], "budget_s": budget, "python": platform.python_version(),
               "machine": platform.machine(), "cpus": os.cpu_count(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "devices": {},
               "sections": {s: {"rows": [], "skipped": {}, "notes": []} for s in sections}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        deadlines = _deadlines(t0, budget, sections, a.train_s, shared=mode == "gpu")
        for worker, worker_sections in PLAN:
            names = [s for s, _ in worker_sections if s in sections]
            if not names:
                continue
            if worker == "train" and not a.idx:
                _skip(results, "train", "train", "no --idx given (the Fashion-MNIST IDX files or their .deb)")
                continue
            plan = {"mode": mode, "config": CONFIG[mode], "sections": names, "t0": t0, "budget_s": budget,
                    "deadlines": deadlines[worker], "tmp": tmp,
                    "part": os.path.join(tmp, worker + ".json"),
                    "train": {"recipe": recipe, "idx": a.idx, "rotation": a.train_rotation}}
            part = run_worker(worker, plan, log)
            merge_part(results, worker, names, part)
    results["elapsed_s"] = round(time.time() - t0, 1)
    finish_sections(results)
    write_outputs(results, a.out, log)
    return 0


def _check_sections(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise UserError("--sections {!r}: expected a comma-separated subset of {}"
                        .format(text, ", ".join(SECTIONS)))
    return [s for s in SECTIONS if s in names]


def _deadlines(t0, budget, sections, train_s=None, shared=True):
    """``{worker: {section: absolute end time}}``: shares of the budget, in the order the
    sections run, so that time a section leaves unused passes to the next ones; with ``train_s``
    the training (the last section) gets that and the others share the rest. ``shared`` False
    (the smoke run, whose sizes are tiny but whose worker starts take most of the time): every
    section may run to the budget's end."""
    shares = [(w, s, share) for w, ws in PLAN for s, share in ws if s in sections]
    others = sum(share for _, s, share in shares if s != "train")
    if "train" not in sections:
        train_s = 0.0
    elif train_s is None or not others:
        train_s = budget * dict(PLAN[-1][1])["train"] / (others + dict(PLAN[-1][1])["train"])
    out, acc = {}, 0.0
    for w, s, share in shares:
        acc += train_s if s == "train" else (budget - train_s) * share / others
        out.setdefault(w, {})[s] = t0 + (acc if shared else budget)
    return out


def training_recipe(files):
    """The recipe's flags as tokens, checked: parsed as the trainer parses them, and refused
    when they ask for what this loop does not do (one line naming the flag)."""
    tokens = ["@" + f for f in files] if files else list(DEFAULT_RECIPE)
    for f in files or ():
        if not os.path.isfile(f):
            raise UserError("--train_params {}: no such file".format(f))
    args = parse_recipe(tokens, tempfile.gettempdir())
    defaults = params.parse(["--logdir", tempfile.gettempdir()])
    for flag in UNSUPPORTED_FLAGS:
        if getattr(args, flag) != getattr(defaults, flag):
            raise UserError("--train_params: --{} is not implemented by the GPU check's training "
                            "loop; remove it from the recipe".format(flag))
    if args.distribute != "none":
        raise UserError("--train_params: --distribute {} is not implemented by the GPU check's "
                        "training loop (one device); remove it".format(args.distribute))
    if args.model == "planar" or args.nchannels not in (1, 2):
        raise UserError("--train_params: the GPU check trains spherical models on 2-channel maps "
                        "(--model {}, --nchannels {})".format(args.model, args.nchannels))
    return tokens


def parse_recipe(tokens, logdir, input_res=None, overrides=()):
    """The trainer's flags for the recipe ``tokens`` on Fashion-MNIST (10 classes, res 64 unless
    the recipe says otherwise; ``input_res`` and ``overrides`` win over both)."""
    args = params.parse(["--logdir", logdir, "--n_classes", str(N_CLASSES), "--input_res", "64"]
                        + list(tokens) + (["--input_res", str(input_res)] if input_res else [])
                        + list(overrides))
    if args.n_classes != N_CLASSES:
        raise UserError("--train_params: --n_classes {} but Fashion-MNIST has {} classes"
                        .format(args.n_classes, N_CLASSES))
    return args


class Log:
    """Progress lines with the time spent and left, to stderr and to gpu_check.log."""

    def __init__(self, path, t0, budget):
        self.path, self.t0, self.budget, self.lines = path, t0, budget, []

    def __call__(self, text):
        line = "[{:5.0f} s, {:4.0f} s left] {}".format(time.time() - self.t0,
                                                      self.budget - (time.time() - self.t0), text)
        self.raw(line)

    def raw(self, line):
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)

    def save(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def run_worker(worker, plan, log):
    """Run one worker process to its last deadline (plus a grace period); its part of the
    results as it left them, with a failure or a stop noted."""
    with open(plan["part"].replace(".json", "_plan.json"), "w") as f:
        json.dump(plan, f)
    env = dict(os.environ, KERAS_BACKEND="torch" if worker == "torch" else "jax",
               XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    if plan["mode"] == "smoke":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    log("{} worker: {}".format(worker, ", ".join(plan["sections"])))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", worker, "--plan",
                             f.name], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    reader = threading.Thread(target=_echo, args=(proc.stdout, log, tail), daemon=True)
    reader.start()
    limit = max(plan["deadlines"].values()) + GRACE_S - time.time()
    stopped = None
    try:
        proc.wait(timeout=max(limit, 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        stopped = "stopped {:.0f} s after its deadline".format(GRACE_S)
    reader.join(timeout=10)
    try:  # what the worker wrote last (nothing if it died before its first result)
        with open(plan["part"]) as f:
            part = json.load(f)
    except (OSError, ValueError):
        part = {}
    if stopped or proc.returncode:
        why = stopped or "worker exited with status {}: {}".format(
            proc.returncode, " | ".join(tail[-3:]) or "no output")
        part.setdefault("failures", []).append(why)
        log("{} worker: {}".format(worker, why))
    return part


def _echo(stream, log, tail):
    for line in stream:
        line = line.rstrip("\n")
        log.raw("    " + line)
        if line.strip():
            tail[:] = (tail + [line.strip()])[-20:]


def merge_part(results, worker, names, part):
    """Rows, skips and notes of a worker's part into ``results``; sections a failed worker
    did not reach are skipped with its failure."""
    if part.get("device"):
        results["devices"][worker] = part["device"]
    got = part.get("sections", {})
    for s in names:
        sec, mine = results["sections"][s], got.get(s)
        if mine is None:
            why = "; ".join(part.get("failures") or ["the worker did not reach it"])
            sec["skipped"][worker] = why
            continue
        sec["rows"].extend(mine.get("rows", []))
        sec["skipped"].update({"{}: {}".format(worker, k) if k != worker else k: v
                               for k, v in mine.get("skipped", {}).items()})
        sec["notes"].extend(n for n in mine.get("notes", []) if n not in sec["notes"])
        sec.update({k: v for k, v in mine.items() if k not in ("rows", "skipped", "notes", "done")})
    if part.get("failures") and got:
        for s in names:
            if s in got and not got[s].get("done"):
                results["sections"][s]["skipped"]["{}: rest".format(worker)] = "; ".join(part["failures"])


def _skip(results, section, key, reason):
    results["sections"][section]["skipped"][key] = reason


def finish_sections(results):
    """Each section's status: ok (results, nothing skipped), partial, or skipped (no results)."""
    for name, sec in results["sections"].items():
        has = any("error" not in r for r in sec["rows"])
        sec["status"] = "ok" if has and not sec["skipped"] else "partial" if has else "skipped"
        if sec["status"] == "skipped" and not sec["skipped"]:
            sec["skipped"]["all"] = "no results"


# ============================================================================ the workers

class Part:
    """A worker's results, written to disk after every change: a worker stopped at its
    deadline or killed by a crash leaves what it had measured."""

    def __init__(self, path, sections):
        self.path = path
        self.data = {"sections": {s: {"rows": [], "skipped": {}, "notes": []} for s in sections}}

    def add(self, section, row):
        self.data["sections"][section]["rows"].append(row)
        self.save()

    def skip(self, section, key, reason):
        self.data["sections"][section]["skipped"][key] = reason
        self.save()

    def note(self, section, text):
        self.data["sections"][section]["notes"].append(text)
        self.save()

    def set(self, section, key, value):
        self.data["sections"][section][key] = value
        self.save()

    def save(self):
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, default=_json_default)
        os.replace(self.path + ".tmp", self.path)


def _json_default(value):
    return value.item() if hasattr(value, "item") else str(value)


def worker_main(worker, plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    part = Part(plan["part"], plan["sections"])
    block_tensorflow()
    backend = "torch" if worker == "torch" else "jax"
    missing = missing_packages(backend)
    if missing:
        for s in plan["sections"]:
            part.skip(s, worker, missing)
        return 0
    ctx = Context(worker, backend, plan, part)
    part.data["device"] = ctx.device
    part.save()
    ctx.say("{} on {} ({})".format(ctx.versions, ctx.device["platform"], ctx.device["name"]))
    if plan["mode"] == "gpu" and ctx.device["platform"] != "gpu":
        for s in plan["sections"]:
            part.skip(s, worker, "no GPU: {} sees only {} ({})".format(backend, ctx.device["platform"],
                                                                       ctx.device["name"]))
        return 0
    for s in plan["sections"]:
        try:
            RUNNERS[s](ctx, plan["deadlines"][s])
        except Exception as err:  # noqa: BLE001 - the next sections still run; the traceback is logged
            import traceback
            traceback.print_exc(file=sys.stdout)
            part.skip(s, "error", "{}: {}".format(type(err).__name__, " ".join(str(err).split())[:300]))
        part.data["sections"][s]["done"] = True
        part.save()
    return 0


def block_tensorflow():
    """Make TensorFlow look absent, as on the GPU machine: ``import tensorflow`` raises
    ModuleNotFoundError and ``importlib.util.find_spec('tensorflow')`` is None."""
    sys.modules["tensorflow"] = None


def missing_packages(backend):
    """Why this worker cannot run (a missing package), or None."""
    import importlib.util
    for name, why in (("keras", "carry its wheel, docs/gpu.md"), (backend, "")):
        if importlib.util.find_spec(name) is None:
            return "{} is not installed{}".format(name, " ({})".format(why) if why else "")
    return None


class Context:
    """What the sections share in a worker: the backend's compile / sync / conversion, the
    device, the sizes, the results and the progress lines."""

    def __init__(self, worker, backend, plan, part):
        import keras
        self.worker, self.backend, self.plan, self.part = worker, backend, plan, part
        self.cfg, self.smoke, self.tmp = plan["config"], plan["mode"] == "smoke", plan["tmp"]
        assert keras.backend.backend() == backend, keras.backend.backend()
        if backend == "jax":
            import jax
            dev = jax.devices()[0]
            self.versions = "jax {}, keras {}".format(jax.__version__, keras.__version__)
            self.device = {"platform": jax.default_backend(), "name": dev.device_kind,
                           "count": jax.device_count()}
        else:
            import torch
            cuda = torch.cuda.is_available()
            if self.smoke:
                torch.set_num_threads(1)  # a busy small CPU: torch's thread pool waits on its own threads
            self.versions = "torch {}, keras {}".format(torch.__version__, keras.__version__)
            self.device = {"platform": "gpu" if cuda else "cpu",
                           "name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
                           "count": torch.cuda.device_count() if cuda else 1}
        self.device["versions"] = self.versions

    def say(self, text):
        spent = time.time() - self.plan["t0"]
        print("[{:5.0f} s, {:4.0f} s left] {}: {}".format(spent, self.plan["budget_s"] - spent, self.worker,
                                                          text), flush=True)

    def compile(self, fn):
        """``fn`` jitted (JAX: XLA compiles the whole function) or as it is (torch: eager)."""
        if self.backend == "jax":
            import jax
            return jax.jit(fn)
        return fn

    def sync(self, value):
        """Wait for the device to finish ``value`` (a tensor or a tuple of them)."""
        if self.backend == "jax":
            import jax
            return jax.block_until_ready(value)
        import torch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return value

    def numpy(self, value):
        from keras import ops
        return ops.convert_to_numpy(ops.cast(value, "float32")).astype("float64")

    def precisions(self, dtype):
        """JAX's float32 matmuls at its default precision (TF32 on a recent GPU) and at 'highest'."""
        return ("default", "highest") if self.backend == "jax" and dtype == "float32" else ("default",)

    def inference(self):
        if self.backend == "torch":
            import torch
            return torch.no_grad()
        return contextlib.nullcontext()


def run_items(ctx, section, items, deadline):
    """Run ``items`` ((label, function returning rows, or a reason it is skipped)) in order
    until ``deadline``; an item that fails gives a row with its error and the next runs."""
    items, first = iter(items), True
    for label, fn in items:
        if not callable(fn):
            ctx.part.skip(section, label, fn)
            continue
        if time.time() > deadline and not first:  # the first item runs in any case
            left = [label] + [l for l, f in items if callable(f)]
            ctx.part.skip(section, "time budget", "not run: " + ", ".join(left))
            ctx.say("{}: out of time, {} item(s) not run".format(section, len(left)))
            return
        first = False
        try:
            rows = fn()
        except Exception as err:  # noqa: BLE001 - one variant's failure (out of memory ...) is a result
            rows = [{"error": "{}: {}".format(type(err).__name__, " ".join(str(err).split())[:300])}]
        for row in rows:
            ctx.part.add(section, dict({"backend": ctx.backend, "item": label}, **row))
        ctx.say("{} {}: {}".format(section, label, "; ".join(_summary(r) for r in rows)))


def _summary(row):
    if "error" in row:
        return "ERROR " + row["error"][:120]
    keys = ("op", "rel_err", "within_bound", "forward_ms", "inverse_ms", "ms_per_step", "examples_per_s")
    return " ".join("{}={}".format(k, _fmt(row[k])) for k in keys if k in row)


def _fmt(v):
    return "{:.3g}".format(v) if isinstance(v, float) else str(v)


def time_calls(ctx, fn, round_s, rounds=5):
    """Median and best milliseconds per call of ``fn`` after two warm-up calls: ``rounds`` rounds
    of k calls (k sized to ``round_s``), the device synchronised at the end of each round."""
    ctx.sync(fn())
    t = time.perf_counter()
    ctx.sync(fn())
    k = int(min(max(round_s / max(time.perf_counter() - t, 1e-6), 1), 200))
    per_call = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(k):
            out = fn()
        ctx.sync(out)
        per_call.append((time.perf_counter() - t) / k)
    per_call.sort()
    return {"median_ms": 1e3 * per_call[len(per_call) // 2], "best_ms": 1e3 * per_call[0],
            "calls": rounds * k}


@contextlib.contextmanager
def legendre_rows(rows):
    """Make every 'sep' transform built inside use the Legendre step ``rows`` ('half' or
    'all'; None: the size rule ``sht_tables.default_legendre_rows``)."""
    from spherical_cnn import sht_tables
    saved = sht_tables.HALF_ROWS_MIN_N
    if rows:
        sht_tables.HALF_ROWS_MIN_N = 2 if rows == "half" else 1 << 30
    try:
        yield
    finally:
        sht_tables.HALF_ROWS_MIN_N = saved


# what else a variant can change, per backend (besides method, Legendre step and precision):
# JAX's float32 matmuls at 'highest' precision (its default lets a GPU use TF32), and torch with
# the transform tables kept on the device ('sep' converts its NumPy tables at every call on
# backends other than TensorFlow: on a GPU a host-to-device copy each time)
OPTIONS = {"jax": ("highest",), "torch": ("device_tables",)}


@contextlib.contextmanager
def variant_option(option):
    """The context of a variant's ``option``: 'default', 'highest' or 'device_tables'."""
    if option == "highest":
        import jax
        with jax.default_matmul_precision("highest"):
            yield
        return
    if option != "device_tables":
        yield
        return
    from spherical_cnn import sht
    convert, cache = sht._backend_constant, {}

    def cached(array, dtype=None):
        key = (id(array), str(dtype or array.dtype))
        if key not in cache:
            cache[key] = (convert(array, dtype), array)  # the array kept alive: its id stays unique
        return cache[key][0]
    sht._backend_constant = cached
    try:
        yield
    finally:
        sht._backend_constant = convert


# ---------------------------------------------------------------------------- numerics

def rel_err(out, ref):
    return float(abs(out - ref).max() / abs(ref).max())


class Reference:
    """Random maps at n and the NumPy reference's (float64) transforms and convolution of them."""

    def __init__(self, n, maps):
        import numpy as np
        from spherical_cnn import sht, spherical
        b, c = maps
        rng = np.random.default_rng(n)
        self.x32 = rng.standard_normal((b, n, n, c)).astype("float32")
        x = self.x32.astype("float64")
        coeffs = spherical.sph_harm_transform_batch(x, "sep")[:, :1]  # real layout (b, 1, L, L, c)
        self.forward = sht.complex_to_spectral(coeffs)
        self.c32 = self.forward.astype("float32")
        self.inverse = spherical.sph_harm_inverse_batch(sht.spectral_to_complex(self.c32.astype("float64")),
                                                        "sep")
        self.kernel = rng.standard_normal((c, n // 2, c + 1)).astype("float32")  # one weight per degree
        zonal = self.kernel.astype("float64")[:, None, :, None, :]  # (in, 1, L, 1, out)
        self.conv = spherical.sph_conv_batch(x, zonal, None, "sep").real


def numerics_items(ctx):
    """'sep' at every size first, then 'naive' (its dense tables, 0.5 GiB each at n = 128, become
    constants of the compiled programs: the slowest items, the least wanted)."""
    refs = {}

    def ref(n):
        if n not in refs:
            refs[n] = Reference(n, ctx.cfg["numerics_maps"])
        return refs[n]

    sizes = ctx.cfg["numerics_n"]
    for n, method, rows in ([(n, "sep", r) for n in sizes for r in ("all", "half")]
                            + [(n, "naive", None) for n in sizes]):
        if method == "naive" and n > ctx.cfg["naive_max_n"]:
            yield "naive n={}".format(n), ("not run: n > {} ('naive' tables grow as n^4: {:.1f} GiB "
                                           "at n = {})".format(ctx.cfg["naive_max_n"], _naive_gib(n), n))
            continue
        for dtype in DTYPES:
            for precision in ctx.precisions(dtype):
                label = "n={} {}".format(n, _label(method, rows, dtype, precision))
                yield label, (lambda n=n, m=method, r=rows, d=dtype, p=precision:
                              numerics_rows(ctx, ref(n), n, m, r, d, p))


def _naive_gib(n):
    from spherical_cnn import sht_tables
    return sht_tables.estimate_table_nbytes(n, "naive") / 2 ** 30


def numerics_rows(ctx, ref, n, method, rows, dtype, precision):
    """Forward, inverse and SphConv on the device against the reference: max relative error."""
    from keras import ops
    from spherical_cnn import sht
    tr = sht.get_transform(n, method, True, dtype, rows)
    with variant_option(precision), ctx.inference():
        fwd = ctx.numpy(ctx.compile(tr.forward_packed)(ops.convert_to_tensor(ref.x32)))
        inv = ctx.numpy(ctx.compile(tr.inverse_packed)(ops.convert_to_tensor(ref.c32)))
        conv = sphconv_output(ctx, ref, method, rows, dtype)
    common = {"n": n, "method": method, "legendre_rows": rows, "dtype": dtype, "option": precision}
    out = []
    for op, value, want in (("forward", fwd, ref.forward), ("inverse", inv, ref.inverse),
                            ("sphconv", conv, ref.conv)):
        err, bound = rel_err(value, want), BOUNDS[op][dtype]
        out.append(dict(common, op=op, rel_err=err, bound=bound, within_bound=bool(err < bound)))
    return out


def sphconv_output(ctx, ref, method, rows, dtype):
    """``SphConv`` (no bias, one weight per degree, the reference's kernel) under the Keras policy
    of ``dtype``, called through its stateless call (jitted on JAX)."""
    import numpy as np
    from keras import ops
    from spherical_cnn import layers
    with legendre_rows(rows):
        layer = layers.SphConv(ref.kernel.shape[2], use_bias=False, method=method, real_inputs=True,
                               dtype=POLICIES[dtype])
        layer.build(ref.x32.shape)
        layer.kernel.assign(ref.kernel)

        def call(kernel, x):
            return layer.stateless_call([kernel], [], x)[0]
        out = ctx.compile(call)(layer.kernel.value, ops.convert_to_tensor(ref.x32))
        return ctx.numpy(out)


def run_numerics(ctx, deadline):
    ctx.part.note("numerics", "max |device - reference| / max |reference|; reference: "
                  "spherical_cnn.spherical in float64 ('sep': FFT + Legendre) on the same float32 inputs")
    run_items(ctx, "numerics", numerics_items(ctx), deadline)


# ---------------------------------------------------------------------------- transforms

def transform_items(ctx):
    """Each size's 'sep' variants, then 'naive' (its tables become constants of the compiled
    program: slow to compile at n = 128)."""
    from spherical_cnn import sht_tables
    variants = ([("sep", "all", "float32", "default"), ("sep", "half", "float32", "default"),
                 ("sep", None, "bfloat16", "default"), ("sep", None, "float16", "default")]
                + [("sep", None, "float32", o) for o in OPTIONS[ctx.backend] if o != "highest"])
    sizes = ctx.cfg["transform_n"]
    for n, (method, rows, dtype, option) in ([(n, v) for n in sizes for v in variants]
                                             + [(n, ("naive", None, "float32", "default")) for n in sizes]):
        rows = rows or (sht_tables.default_legendre_rows(n) if method == "sep" else None)
        label = "n={} {}".format(n, _label(method, rows, dtype, option))
        if method == "naive" and n > ctx.cfg["naive_max_n"]:
            yield label, "not run: n > {} ({:.1f} GiB of tables)".format(ctx.cfg["naive_max_n"],
                                                                         _naive_gib(n))
            continue
        yield label, (lambda n=n, m=method, r=rows, d=dtype, o=option: [transform_timing(ctx, n, m, r, d, o)])


def transform_timing(ctx, n, method, rows, dtype, option="default"):
    import numpy as np
    from keras import ops
    from spherical_cnn import sht
    b, c = ctx.cfg["transform_maps"]
    x = ops.convert_to_tensor(np.random.default_rng(n).standard_normal((b, n, n, c)).astype("float32"))
    tr = sht.get_transform(n, method, True, dtype, rows)
    with ctx.inference(), variant_option(option):
        fwd, inv = ctx.compile(tr.forward_packed), ctx.compile(tr.inverse_packed)
        t = time.perf_counter()
        coeffs = ctx.sync(fwd(x))
        ctx.sync(inv(coeffs))
        first = time.perf_counter() - t
        f = time_calls(ctx, lambda: fwd(x), ctx.cfg["time_round_s"])
        i = time_calls(ctx, lambda: inv(coeffs), ctx.cfg["time_round_s"])
    return _transform_row(n, b * c, f, i, first, impl="ours ({})".format("jitted" if ctx.backend == "jax"
                                                                          else "eager"),
                          method=method, legendre_rows=rows, dtype=dtype, option=option)


def _transform_row(n, maps, f, i, first, **info):
    return dict(info, n=n, maps=maps, forward_ms=f["median_ms"], inverse_ms=i["median_ms"],
                forward_best_ms=f["best_ms"], inverse_best_ms=i["best_ms"],
                forward_maps_per_s=maps / f["median_ms"] * 1e3,
                inverse_maps_per_s=maps / i["median_ms"] * 1e3,
                first_calls_s=first)


def run_transforms(ctx, deadline):
    ctx.part.note("transforms", "forward / inverse of {} x {} float32 maps per call (batch x channels), "
                  "median of 5 rounds".format(*ctx.cfg["transform_maps"]))
    run_items(ctx, "transforms", transform_items(ctx), deadline)


def import_torch_harmonics():
    """``(RealSHT, InverseRealSHT, how)``; if the package's compiled extensions do not load
    (a wheel built for another torch), its pure-Python ``sht`` module alone."""
    try:
        import torch_harmonics
        return (torch_harmonics.RealSHT, torch_harmonics.InverseRealSHT,
                "torch-harmonics " + getattr(torch_harmonics, "__version__", "?"))
    except (ImportError, OSError) as err:
        first = "{}: {}".format(type(err).__name__, " ".join(str(err).split())[:200])
    import importlib.util
    import types
    for name in [m for m in sys.modules if m == "torch_harmonics" or m.startswith("torch_harmonics.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("torch_harmonics")
    package = types.ModuleType("torch_harmonics")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_harmonics"] = package
    from torch_harmonics.sht import InverseRealSHT, RealSHT
    return RealSHT, InverseRealSHT, ("torch-harmonics' sht module alone (the package did not import: {})"
                                     .format(first))


def torch_harmonics_items(ctx):
    import importlib.util
    if importlib.util.find_spec("torch_harmonics") is None:
        yield "torch_harmonics", "torch-harmonics is not installed (carry its wheel, docs/gpu.md)"
        return
    try:
        RealSHT, InverseRealSHT, how = import_torch_harmonics()
    except Exception as err:  # noqa: BLE001 - a wheel that does not load is a skip with its reason
        yield "torch_harmonics", "torch-harmonics does not import: {}: {}".format(type(err).__name__, err)
        return
    ctx.part.note("torch_harmonics", how + "; RealSHT / InverseRealSHT on the equiangular n x n grid, "
                  "lmax = mmax = n / 2, the same number of float32 maps as 'transforms'")
    for n in ctx.cfg["transform_n"]:
        yield "n={} torch-harmonics".format(n), (lambda n=n: [torch_harmonics_timing(ctx, n, RealSHT,
                                                                                     InverseRealSHT)])


def torch_harmonics_timing(ctx, n, RealSHT, InverseRealSHT):
    import torch
    b, c = ctx.cfg["transform_maps"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fwd = RealSHT(n, n, lmax=n // 2, mmax=n // 2, grid="equiangular").to(device)
    inv = InverseRealSHT(n, n, lmax=n // 2, mmax=n // 2, grid="equiangular").to(device)
    gen = torch.Generator().manual_seed(n)
    x = torch.randn((b, c, n, n), generator=gen).to(device)  # (batch, channels, polar, azimuth)
    with torch.no_grad():
        t = time.perf_counter()
        coeffs = fwd(x)
        ctx.sync(inv(coeffs))
        first = time.perf_counter() - t
        f = time_calls(ctx, lambda: fwd(x), ctx.cfg["time_round_s"])
        i = time_calls(ctx, lambda: inv(coeffs), ctx.cfg["time_round_s"])
    return _transform_row(n, b * c, f, i, first, impl="torch-harmonics (eager)", method="RealSHT",
                          legendre_rows=None, dtype="float32", option="default")


def run_torch_harmonics(ctx, deadline):
    run_items(ctx, "torch_harmonics", torch_harmonics_items(ctx), deadline)


# ---------------------------------------------------------------------------- training steps

def objective(out, y, losses):
    """The trainer's loss (softmax cross-entropy + the extra branch's + regularisation, in
    float32) and the number of correct predictions, in ``keras.ops``."""
    from keras import ops
    from spherical_cnn.losses import softmax_cross_entropy
    logits = ops.cast(out["logits"], "float32")
    total = ops.mean(softmax_cross_entropy(y, logits))
    if "extra_logits" in out:
        total = total + ops.mean(softmax_cross_entropy(y, ops.cast(out["extra_logits"], "float32")))
    for loss in losses:
        total = total + ops.cast(loss, "float32")
    hits = ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), ops.cast(y, "int32"))
    return total, hits


class JaxTrainer:
    """Keras on JAX without ``fit``: the model's and optimizer's variables as one state, a training
    step (forward, loss, gradients, update) compiled by XLA as one program with the state donated,
    as Keras documents for JAX training loops."""

    def __init__(self, model, optimizer):
        import jax
        self.model, self.optimizer = model, optimizer
        self.scaling = hasattr(optimizer, "scale_loss") and type(optimizer).__name__ == "LossScaleOptimizer"
        self.state = ([v.value for v in model.trainable_variables],
                      [v.value for v in model.non_trainable_variables],
                      [v.value for v in optimizer.variables])
        self._step = jax.jit(self._train_step, donate_argnums=0)
        self._eval = jax.jit(self._eval_step)
        self.compiled = None

    def _loss(self, trainable, non_trainable, opt_vars, x, y):
        import keras
        from keras import ops
        out, non_trainable, losses = self.model.stateless_call(trainable, non_trainable, x, training=True,
                                                                return_losses=True)
        total, hits = objective(out, y, losses)
        scaled = total
        if self.scaling:  # the loss scale is an optimizer variable: read it from the state
            with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, opt_vars))):
                scaled = self.optimizer.scale_loss(total)
        return scaled, (non_trainable, total, ops.sum(ops.cast(hits, "float32")))

    def _train_step(self, state, x, y):
        import jax
        trainable, non_trainable, opt_vars = state
        grad = jax.value_and_grad(self._loss, has_aux=True)
        (_, (non_trainable, total, correct)), grads = grad(trainable, non_trainable, opt_vars, x, y)
        trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), total, correct

    def _eval_step(self, trainable, non_trainable, x, y, weight):
        from keras import ops
        out, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
        _, hits = objective(out, y, [])
        return ops.sum(ops.cast(hits, "float32") * weight)

    def compile(self, x, y):
        """Trace and compile the step for batches like ``(x, y)`` (the first ``train`` does it too)."""
        self.compiled = self._step.lower(self.state, x, y).compile()

    def train(self, x, y):
        """One step; ``(loss, correct)`` as device scalars."""
        if self.compiled is None:
            self.compile(x, y)
        self.state, total, correct = self.compiled(self.state, x, y)
        return total, correct

    def correct(self, x, y, weight):
        return self._eval(self.state[0], self.state[1], x, y, weight)

    def memory(self):
        """Bytes of the compiled step's buffers (XLA's memory analysis) and the device's peak so far."""
        import jax
        out = {}
        analysis = self.compiled.memory_analysis() if self.compiled is not None else None
        if analysis is not None:
            out["xla_step_bytes"] = int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                                        - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
            out["xla_temp_bytes"] = int(analysis.temp_size_in_bytes)
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["process_peak_bytes"] = int(stats["peak_bytes_in_use"])
        return out


class TorchTrainer:
    """Keras on torch without ``fit``: eager forward, ``backward()`` and the optimizer's update,
    as Keras documents for torch training loops."""

    def __init__(self, model, optimizer):
        import torch
        self.model, self.optimizer = model, optimizer
        self.scaling = type(optimizer).__name__ == "LossScaleOptimizer"
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def train(self, x, y):
        import torch
        from keras import ops
        out = self.model(x, training=True)
        total, hits = objective(out, y, self.model.losses)
        scaled = self.optimizer.scale_loss(total) if self.scaling else total
        self.model.zero_grad()
        scaled.backward()
        variables = self.model.trainable_weights
        with torch.no_grad():
            self.optimizer.apply([v.value.grad for v in variables], variables)
        return total.detach(), ops.sum(ops.cast(hits, "float32"))

    def memory(self):
        import torch
        return {"peak_allocated_bytes": int(torch.cuda.max_memory_allocated())} if self.cuda else {}


def build_for_training(ctx, args, policy, learning_rate):
    """The model of ``args`` under the Keras dtype ``policy`` and the trainer's optimizer (with loss
    scaling under mixed_float16), ready for a JAX or torch trainer."""
    import keras
    from spherical_cnn import models, optimizers
    keras.backend.clear_session()
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(args.seed)
    model = models.build_model(args, (args.input_res, args.input_res, 2))
    optimizer = optimizers.make_optimizer(args.optimizer, learning_rate)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def make_trainer(ctx, model, optimizer):
    return JaxTrainer(model, optimizer) if ctx.backend == "jax" else TorchTrainer(model, optimizer)


def step_variants(ctx):
    """(batch, method, Legendre step, dtype, option), most wanted first: the first batch size's
    variants, then the others'; at the batches of ``step_extras`` also 'sep' with the 'half'
    Legendre step (the model's sizes use 'all' by default) and the backend's ``OPTIONS``."""
    if ctx.cfg["step_variants"]:
        return [(ctx.cfg["step_batches"][0],) + tuple(v) for v in ctx.cfg["step_variants"]]
    main = [(m, None, d, "default") for m in ("sep", "naive") for d in DTYPES]
    extras = [("sep", "half", "float32", "default")]
    extras += [("sep", None, "float32", o) for o in OPTIONS[ctx.backend]]
    return [(b,) + v for b in ctx.cfg["step_batches"]
            for v in main + (extras if b in ctx.cfg["step_extras"] else [])]


def _label(method, rows, dtype, option, batch=None):
    return "{}{}{} {}{}".format("" if batch is None else "b={} ".format(batch), method, ":" + rows if rows else "",
                                dtype, "" if option == "default" else " " + option)


def step_items(ctx):
    for batch, method, rows, dtype, option in step_variants(ctx):
        yield (_label(method, rows, POLICIES[dtype], option, batch),
               lambda b=batch, m=method, r=rows, d=dtype, o=option: [step_row(ctx, b, m, r, d, o)])


def step_row(ctx, batch, method, rows, dtype, option):
    """Time the model-64 training step of one variant: ms per step, examples per second, memory."""
    import keras
    import numpy as np
    from keras import ops
    res = ctx.cfg["step_res"]
    args = params.parse(MODEL_64 + ["--transform_method", method, "--input_res", str(res), "--train_bsize",
                                    str(batch), "--logdir", ctx.tmp] + ctx.cfg["model_overrides"])
    rng = np.random.default_rng(batch)
    x = ops.convert_to_tensor(rng.normal(size=(batch, res, res, 2)).astype("float32"))
    y = ops.convert_to_tensor(rng.integers(0, args.n_classes, size=batch).astype("int32"))
    try:
        with legendre_rows(rows), variant_option(option):
            model, optimizer = build_for_training(ctx, args, POLICIES[dtype], 1e-3)
            trainer = make_trainer(ctx, model, optimizer)
            t = time.perf_counter()
            ctx.sync(trainer.train(x, y))
            first = time.perf_counter() - t
            timing = time_calls(ctx, lambda: trainer.train(x, y)[0], 5 * ctx.cfg["time_round_s"], rounds=3)
            loss = float(ctx.numpy(trainer.train(x, y)[0]))
    finally:
        keras.config.set_dtype_policy("float32")
    return dict({"batch": batch, "res": res, "method": method, "legendre_rows": rows or "default",
                 "policy": POLICIES[dtype], "option": option,
                 "ms_per_step": timing["median_ms"], "best_ms": timing["best_ms"],
                 "steps_timed": timing["calls"],
                 "examples_per_s": batch / timing["median_ms"] * 1e3, "first_step_s": first,
                 "loss_finite": bool(np.isfinite(loss)), "parameters": int(model.count_params())},
                **trainer.memory())


def run_step(ctx, deadline):
    ctx.part.note("step", "model-64 (params/model-64.txt + params/m40-64.txt, --transform_method as "
                  "given) on random (batch, {0}, {0}, 2) maps: forward, losses, backward, Adam update; "
                  "median of 3 rounds; JAX: one XLA program per step, torch: eager"
                  .format(ctx.cfg["step_res"]))
    run_items(ctx, "step", step_items(ctx), deadline)


# ---------------------------------------------------------------------------- training

def epoch_schedule(schedule, steps_per_epoch):
    """The trainer's ``--learning_rate {epoch: value}`` as a Keras schedule of the step count."""
    import keras
    from keras import ops

    class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            epoch = ops.floor_divide(ops.cast(step, "int32"), steps_per_epoch)
            items = sorted(schedule.items())
            lr = ops.full((), items[0][1], "float32")
            for start, value in items[1:]:
                lr = ops.where(epoch >= start, value, lr)
            return lr

    return EpochSchedule()


def load_fashion_mnist(idx, res, rotation, cfg, tmp, log=print):
    """The spherical maps of Fashion-MNIST as ``make_images`` writes them (the same projection,
    seed and rotation indices): train (rotated as ``rotation`` says), validation (the last
    ``cfg['n_val']`` of the ``cfg['train_counts'][0]`` training images, rotated alike), test
    (the first ``cfg['train_counts'][1]``) unrotated and rotated; all images when the counts
    are None. ``{split: (maps (N, res, res, 2) float32, labels (N,) int64)}``."""
    import numpy as np
    from spherical_cnn.data import images
    paths = images.resolve_source(idx, tmp, log=log)
    train_x, train_y = images.load_split(paths["train_images"], paths["train_labels"])
    test_x, test_y = images.load_split(paths["test_images"], paths["test_labels"])
    counts = cfg["train_counts"] or (len(train_x), len(test_x))
    n_val = cfg["n_val"]
    train_idx, val_idx = np.arange(counts[0] - n_val), np.arange(counts[0] - n_val, counts[0])
    test_idx = np.arange(counts[1])
    mode = images.MODES[rotation]
    jobs = {"train": (train_x, train_y, train_idx, mode, "train", 0),
            "val": (train_x, train_y, val_idx, mode, "train", 1),
            "test_NR": (test_x, test_y, test_idx, "none", "test", 0),
            "test_R": (test_x, test_y, test_idx, "so3", "test", 0)}
    out = {}
    chunk = cfg["projection_chunk"]
    with _projection_pool(sum(-(-len(j[2]) // chunk) for j in jobs.values())) as pool:
        for split, (xs, ys, sel, how, which, r) in jobs.items():
            out[split] = (project(pool, xs, sel, res, how, which, r, chunk), ys[sel])
    return out


@contextlib.contextmanager
def _projection_pool(n_chunks):
    """Processes for the projection (NumPy, one core each); None for a small job."""
    workers = min(os.cpu_count() or 1, n_chunks)
    if workers < 2:
        yield None
        return
    import concurrent.futures
    import multiprocessing
    # spawned, not forked: the worker has JAX's threads running
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        yield pool


def project(pool, xs, sel, res, mode, split, r, chunk):
    """Maps ``(len(sel), res, res, 2)`` of the images ``xs[sel]``, rotated as the dataset builder
    rotates image i of ``split`` at rotation index ``r`` (rotations drawn for the whole file)."""
    import numpy as np
    from spherical_cnn.data import images, rotations
    quats = images.rotation_quaternions(mode, len(xs), DATA_SEED, split, r)[sel]
    mats = None if mode == "none" else rotations.quaternion_to_matrix(quats)
    starts = range(0, len(sel), chunk)
    parts = ([xs[sel[i:i + chunk]] for i in starts], [res] * len(starts),
             [None if mats is None else mats[i:i + chunk] for i in starts])
    maps = list(pool.map(images.project, *parts)) if pool else [images.project(*p) for p in zip(*parts)]
    return np.concatenate(maps) if maps else np.zeros((0, res, res, 2), "float32")


def accuracy(trainer, x, y, batch):
    """Fraction of ``x`` classified right, in batches of ``batch`` (the last one padded)."""
    import numpy as np
    from keras import ops
    correct = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        weight = np.zeros(batch, "float32")
        weight[:len(xb)] = 1
        pad = batch - len(xb)
        xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)]) if pad else xb
        yb = np.concatenate([yb, np.zeros(pad, yb.dtype)]) if pad else yb
        correct += float(trainer.correct(ops.convert_to_tensor(xb), ops.convert_to_tensor(yb.astype("int32")),
                                         ops.convert_to_tensor(weight)))
    return correct / max(len(x), 1)


def run_train(ctx, deadline):
    import keras
    import numpy as np
    from keras import ops
    spec = ctx.plan["train"]
    args = parse_recipe(spec["recipe"], ctx.tmp, ctx.cfg["train_res"], ctx.cfg["model_overrides"])
    batch = min(args.train_bsize, ctx.cfg["max_train_batch"] or args.train_bsize)
    policy = params.mixed_precision_policy(args.mixed_precision, ctx.device["platform"] == "gpu") or "float32"
    ctx.part.set("train", "recipe", [_relative(t) for t in spec["recipe"]])
    ctx.part.set("train", "setup", {"input_res": args.input_res, "batch": batch, "policy": policy,
                                    "learning_rate": args.learning_rate, "optimizer": args.optimizer,
                                    "transform_method": args.transform_method, "seed": args.seed,
                                    "train_rotation": spec["rotation"], "shuffle": not args.no_shuffle})
    t = time.time()
    ctx.say("train: projecting Fashion-MNIST at res {} ({} training maps)"
            .format(args.input_res, spec["rotation"]))
    data = load_fashion_mnist(spec["idx"], args.input_res, spec["rotation"], ctx.cfg, ctx.tmp, ctx.say)
    counts = {k: len(v[1]) for k, v in data.items()}
    ctx.part.set("train", "data", dict(counts, projection_s=round(time.time() - t, 1),
                                       train_batches_per_epoch=counts["train"] // batch))
    ctx.say("train: projected {} in {:.0f} s".format(counts, time.time() - t))
    steps = counts["train"] // batch
    if steps == 0:
        ctx.part.skip("train", "train", "fewer training images ({}) than one batch ({})"
                      .format(counts["train"], batch))
        return
    try:
        model, optimizer = build_for_training(ctx, args, policy, epoch_schedule(args.learning_rate, steps))
        trainer = JaxTrainer(model, optimizer)
        x_train = ops.convert_to_tensor(data["train"][0])
        y_train = ops.convert_to_tensor(data["train"][1].astype("int32"))
        t = time.time()
        trainer.compile(x_train[:batch], y_train[:batch])
        ctx.part.set("train", "compile_s", round(time.time() - t, 1))
        train_epochs(ctx, args, trainer, data, x_train, y_train, batch, steps, deadline)
    finally:
        keras.config.set_dtype_policy("float32")


def train_epochs(ctx, args, trainer, data, x_train, y_train, batch, steps, deadline):
    """Epochs while the next one (and its evaluation) fits before ``deadline``; one row each."""
    import numpy as np
    rng = np.random.default_rng(args.seed)
    epoch_s = eval_s = 0.0
    for epoch in range(min(args.n_epochs, ctx.cfg["max_epochs"] or args.n_epochs)):
        if epoch and time.time() + epoch_s + eval_s > deadline:
            ctx.part.set("train", "stopped", "time budget: {} epoch(s) fit".format(epoch))
            return
        n = len(data["train"][1])
        order = np.arange(n) if args.no_shuffle else rng.permutation(n)
        t = time.time()
        loss = correct = 0.0
        done = 0
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            total, hits = trainer.train(x_train[idx], y_train[idx])
            loss, correct, done = loss + total, correct + hits, s + 1
            if s % 100 == 99:  # the host waits for the device now and then, to keep to the deadline
                ctx.sync(total)
                if s % 500 == 499:
                    ctx.say("train epoch {}: step {} of {}".format(epoch + 1, s + 1, steps))
                if time.time() > deadline:
                    break
        loss, correct = float(ctx.numpy(loss)), float(ctx.numpy(correct))
        epoch_s = time.time() - t
        t = time.time()
        eb = ctx.cfg["eval_batch"]
        row = {"epoch": epoch + 1, "steps": done, "of_steps": steps,
               "learning_rate": params.learning_rate_at(args.learning_rate, epoch),
               "train_loss": loss / done, "train_acc": correct / (done * batch),
               "val_acc": accuracy(trainer, *data["val"], eb),
               "test_acc_NR": accuracy(trainer, *data["test_NR"], eb),
               "test_acc_R": accuracy(trainer, *data["test_R"], eb),
               "train_s": round(epoch_s, 1), "examples_per_s": done * batch / epoch_s}
        eval_s = time.time() - t
        row["eval_s"] = round(eval_s, 1)
        ctx.part.add("train", row)
        ctx.say("train epoch {}: loss {:.3f}, train {:.4f}, val {:.4f}, test NR {:.4f} / R {:.4f} "
                "({:.0f} s + {:.0f} s eval, {:.0f} ex/s)".format(
                    row["epoch"], row["train_loss"], row["train_acc"], row["val_acc"], row["test_acc_NR"],
                    row["test_acc_R"], epoch_s, eval_s, row["examples_per_s"]))
        if done < steps:
            ctx.part.set("train", "stopped", "time budget: epoch {} stopped after {} of {} steps"
                         .format(epoch + 1, done, steps))
            return
    ctx.part.set("train", "stopped", "all {} epochs done".format(epoch + 1))


def _relative(token):
    """A token (a path, or an @file) without the absolute path of this machine (results get
    committed): relative to the checkout, or only its last part."""
    at = "@" if token.startswith("@") else ""
    path = token[len(at):]
    if not os.path.isabs(path):
        return token
    inside = os.path.commonpath([os.path.abspath(path), ROOT]) == ROOT
    return at + (os.path.relpath(path, ROOT) if inside else os.path.join("...", os.path.basename(path)))


RUNNERS = {"numerics": run_numerics, "transforms": run_transforms, "torch_harmonics": run_torch_harmonics,
           "step": run_step, "train": run_train}


# ============================================================================ the report

def write_outputs(results, out, log):
    """gpu_check.json (everything), gpu_check.md (the tables, also printed) and gpu_check.log."""
    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(results, f, indent=1, default=_json_default)
    text = markdown(results)
    with open(os.path.join(out, "gpu_check.md"), "w") as f:
        f.write(text)
    print(text)
    log("wrote gpu_check.json, gpu_check.md, gpu_check.log in {}".format(out))
    log.save()


def markdown(results):
    secs = results["sections"]
    lines = ["# GPU check ({})".format(results["mode"]), "",
             "{} s of a {:.0f} s budget; Python {}, {} CPUs.".format(
                 results["elapsed_s"], results["budget_s"], results["python"], results["cpus"]), ""]
    for worker, dev in results["devices"].items():
        lines.append("- {}: {} x {} ({}; {})".format(worker, dev["count"], dev["name"], dev["platform"],
                                                     dev["versions"]))
    tables = {"numerics": _numerics_table, "transforms": _transforms_table,
              "torch_harmonics": _transforms_table, "step": _step_table, "train": _train_table}
    for name, table in tables.items():
        if name not in secs:
            continue
        sec = secs[name]
        errors = [r for r in sec["rows"] if "error" in r]
        blocks = [["## {} ({})".format(name, sec["status"])], ["- " + n for n in sec["notes"]],
                  table(sec, secs) if len(errors) < len(sec["rows"]) else [],
                  ["Errors:"] + ["- {backend} {item}: {error}".format(**r) for r in errors] if errors else [],
                  ["Skipped:"] + ["- {}: {}".format(*kv) for kv in sec["skipped"].items()] if sec["skipped"] else []]
        for block in blocks:
            lines += [""] + block if block else []
    return "\n".join(lines) + "\n"


def _table(header, rows):
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _e(row):
    return "{:.1e}{}".format(row["rel_err"], "" if row["within_bound"] else " **over**")


def _numerics_table(sec, _):
    groups = {}
    for r in sec["rows"]:
        if "error" in r:
            continue
        key = (r["backend"], r["n"], r["method"] + (":" + r["legendre_rows"] if r["legendre_rows"] else ""),
               r["dtype"], r["option"])
        groups.setdefault(key, {})[r["op"]] = r
    rows = [list(k) + [_e(g[op]) if op in g else "" for op in ("forward", "inverse", "sphconv")]
            for k, g in groups.items()]
    bounds = "; ".join("{}: {}".format(op, ", ".join("{} {:g}".format(d, b) for d, b in v.items()))
                       for op, v in BOUNDS.items())
    return _table(["backend", "n", "method", "dtype", "option", "forward", "inverse", "SphConv"],
                  rows) + ["", "Bounds (the CPU tests'): " + bounds]


def _rate(v):
    return "{:.3g}k".format(v / 1e3)


def _transforms_table(sec, secs):
    theirs = {r["n"]: r for r in secs.get("torch_harmonics", {}).get("rows", []) if "error" not in r}
    rows = []
    for r in sec["rows"]:
        if "error" in r:
            continue
        th = theirs.get(r["n"])
        ratio = ("{:.2f}x / {:.2f}x".format(r["forward_maps_per_s"] / th["forward_maps_per_s"],
                                            r["inverse_maps_per_s"] / th["inverse_maps_per_s"]) if th else "")
        variant = _label(r["method"], r["legendre_rows"], r["dtype"], r["option"])
        rows.append([r["backend"], r["n"], r["impl"], variant,
                     "{:.3g} / {:.3g}".format(r["forward_ms"], r["inverse_ms"]),
                     _rate(r["forward_maps_per_s"]) + " / " + _rate(r["inverse_maps_per_s"]), ratio])
    return _table(["backend", "n", "implementation", "variant", "ms forward / inverse",
                   "maps/s forward / inverse", "throughput vs torch-harmonics"], rows)


def _mib(row):
    b = row.get("peak_allocated_bytes", row.get("xla_step_bytes"))
    return "{:.1f}".format(b / 2 ** 20) if b is not None else ""


def _step_table(sec, _):
    rows = [[r["backend"], r["batch"],
             r["method"] + ("" if r["legendre_rows"] == "default" else ":" + r["legendre_rows"]),
             r["policy"], r["option"], "{:.3g}".format(r["ms_per_step"]), "{:.0f}".format(r["examples_per_s"]),
             _mib(r), "{:.1f}".format(r["first_step_s"]), "" if r["loss_finite"] else "**non-finite loss**"]
            for r in sec["rows"] if "error" not in r]
    return _table(["backend", "batch", "method", "policy", "option", "ms/step", "examples/s",
                   "device MiB", "first step (s)", ""], rows) + [
        "", "device MiB: torch's peak allocated; JAX: the compiled step's buffers (arguments, outputs, "
            "temporaries)"]


def _train_table(sec, _):
    setup = sec.get("setup", {})
    head = ["recipe: `{}`".format(" ".join(sec.get("recipe", []))),
            "setup: {}".format(json.dumps(setup)), "data: {}".format(json.dumps(sec.get("data", {}))),
            "stopped: {}".format(sec.get("stopped", "")), ""]
    rows = [[r["epoch"], "{}/{}".format(r["steps"], r["of_steps"]), "{:g}".format(r["learning_rate"]),
             "{:.3f}".format(r["train_loss"]), "{:.4f}".format(r["train_acc"]), "{:.4f}".format(r["val_acc"]),
             "{:.4f}".format(r["test_acc_NR"]), "{:.4f}".format(r["test_acc_R"]), r["train_s"], r["eval_s"],
             "{:.0f}".format(r["examples_per_s"])] for r in sec["rows"] if "error" not in r]
    return ["- " + h if h else h for h in head] + _table(
        ["epoch", "steps", "lr", "train loss", "train acc", "val acc", "test acc NR", "test acc R",
         "train s", "eval s", "examples/s"], rows)


if __name__ == "__main__":
    sys.exit(run_cli(main))
