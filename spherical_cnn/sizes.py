"""Memory estimates before a long job starts: one dataset mesh, one training batch.

The figures are estimates (within a factor of about 2), enough to tell a command
that fits from one that will be killed by the out-of-memory killer hours later:

- rendering one mesh (``make_dataset``) holds about ``RAY_BYTES`` per ray and
  rotation (ray origins and directions, hit records, the map; measured with
  ``raycast.cast_rotated``: 195-245 bytes) plus a base of ``WORKER_BASE`` per
  worker process; rays = ``input_res**2 * supersample**2`` per rotation;
- training holds the spherical-harmonic tables of each resolution (the naive
  transform's dense matrices grow as ``res**4``) and, per batch, each layer's
  activations (float32, ``ACTIVATION_FACTOR`` copies for the spectral transforms and
  the backward pass) on a grid ``nonlinearity_upsample`` times finer for the
  nonlinearity.

:func:`check` compares an estimate with the memory this machine has available
now (``MemAvailable``, or the cgroup limit if lower): above it the command stops
with one line giving the estimate (``--ignore_size_check`` goes on anyway), above
half of it a warning is printed.
"""
import os

from .errors import UserError

RAY_BYTES = 250
WORKER_BASE = 150 * 2 ** 20
ACTIVATION_FACTOR = 8


class TooLarge(UserError):
    """The estimated memory of a job exceeds what the machine has."""


def fmt(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return "{:.1f} {}".format(nbytes, unit) if unit != "B" else "{} B".format(int(nbytes))
        nbytes /= 1024.0


def available_memory():
    """Bytes of memory available to this process now (None if unknown)."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit() and int(text) < 2 ** 60:
                found.append(int(text))
        except OSError:
            pass
    return min(found) if found else None


def mesh_bytes(input_res, n_rotations, supersample=1):
    """Estimated peak bytes of one worker rendering one mesh."""
    return WORKER_BASE + RAY_BYTES * input_res ** 2 * supersample ** 2 * max(1, n_rotations)


def build_estimate(input_res, n_rotations, n_test_rotations, supersample, workers):
    """(total bytes, one line describing it) of a dataset build."""
    per_mesh = mesh_bytes(input_res, max(n_rotations, n_test_rotations), supersample)
    total = per_mesh * workers
    return total, ("rendering needs about {} per mesh (--input_res {}, {} rotations, --supersample {}) "
                   "x {} worker(s) = {}".format(fmt(per_mesh), input_res,
                                                max(n_rotations, n_test_rotations), supersample,
                                                workers, fmt(total)))


def _table_bytes(n, method, real):
    L, S = n // 2, 1 if real else 2
    if method == "naive":  # forward and inverse (n*n, 2*S*L*L) float32 matrices
        return 2 * n * n * 2 * S * L * L * 4
    return 2 * 4 * ((L + 1) // 2) * L * n * 4 * S + 4 * n * n * 4  # Legendre + DFT tables


def training_estimate(args, n_records=None):
    """(total bytes, one line describing it) of training with these flags.

    A batch holds at most ``n_records`` (the largest train shard, val or test split; None:
    unknown), so ``--train_bsize`` above the dataset's size does not count.
    """
    batch = min(args.train_bsize, n_records) if n_records else args.train_bsize
    res, tables, act = args.input_res, 0, 0
    seen = set()
    branches = 2 if getattr(args, "model", "") == "two_branch" else 1
    up = max(1, getattr(args, "nonlinearity_upsample", 1))
    for nf, pools in zip(args.nfilters, args.pool_layers):
        for n in (res, res * up) if up > 1 else (res,):
            if n not in seen and n >= 2:
                seen.add(n)
                tables += _table_bytes(n, args.transform_method, args.real_inputs)
        act += branches * batch * (res * up) ** 2 * nf * 4 * ACTIVATION_FACTOR
        res = max(2, res // 2 ** pools)
    inputs = batch * args.input_res ** 2 * args.nchannels * 8 * 4
    total = tables + act + inputs
    return total, ("training needs about {} (harmonic tables {}, one batch of {} at --input_res {} {})"
                   .format(fmt(total), fmt(tables), batch, args.input_res,
                           fmt(act + inputs)))


def check(estimate, flag="--ignore_size_check", warn=None, ignore=False, available=None):
    """Stop (:class:`TooLarge`) or warn when the estimate ``(bytes, text)`` does not fit."""
    need, text = estimate
    have = available_memory() if available is None else available
    if have is None:
        return
    if need > have and not ignore:
        raise TooLarge("{}, more than the {} of memory available on this machine; lower the "
                       "sizes, or pass {} to try anyway".format(text, fmt(have), flag))
    if need > have / 2 and warn is not None:
        warn("warning: {} ({} available){}".format(
            text, fmt(have), "; going on as {} asks".format(flag) if need > have else ""))
