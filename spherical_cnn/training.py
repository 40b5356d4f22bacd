"""Training and testing of the demo, with the original's epoch semantics.

One epoch trains on one training shard (cycling through the shards), then
validates (or, with ``--skip_val``, reports the training accuracy as
"valid"), saves ``best`` (when validation accuracy improved) and ``latest``,
and logs ``epoch=N; lr=X train: A, valid: B``. Validation accuracy is the mean
of the per-batch accuracies (as the original); training accuracy is per sample. After the last epoch the model
is saved as ``final``, tested, and the row ``|run_id|train|val|test|train time|``
is printed (train time: mean seconds per training epoch). A run continues from
``latest`` unless ``--from_scratch``; ``--test_only`` reloads the saved flags
(``flags.yaml``) and tests ``final``.

Stopping and resuming changes nothing. SIGTERM (what cloud preemption sends) or Ctrl-C
during training lets the current step finish, saves ``latest`` with the position inside
the epoch (``state.json``: epoch, step, the epoch's loss sums so far, the random
generators' state) and exits with status 130; the same command resumes at the next step.
The resumed run's per-epoch figures and final weights equal an uninterrupted run's, bit
for bit on the same machine (``--deterministic`` makes TensorFlow's kernels deterministic
where they are not by default, e.g. on a GPU). A second interrupt stops at once. SIGKILL
(no grace) loses the work since the last checkpoint: ``progress.json`` in the log
directory records the position about every second, and the next run says how many steps
it repeats.
"""
import json
import logging
import math
import os
import socket
import sys
import time

import numpy as np
import tensorflow as tf
import keras
import yaml

from . import batch_norm_statistics
from . import datasets
from . import models
from . import optimizers
from . import params as params_mod
from .checkpoints import CheckpointDamaged, CheckpointStore
from .data import verify
from .data.images import input_description
from .errors import (DataError, DiskFull, Interrupted, NonFiniteError, WorkerLost, deferred_interrupts,
                     describe, interrupt_count, interrupt_signal_name, interrupted, is_disk_full, is_read_only,
                     raise_if_interrupted)
from .losses import softmax_cross_entropy, triplet_semihard_loss
from .runlock import LogdirLock
from .summaries import RunSummaries

LOGGER_NAME = "spherical_cnn"
FLAGS_FILE = "flags.yaml"
RESULTS_FILE = "results.json"
EXPORT_FILE = "model.keras"
CLASSES_FILE = "classes.txt"
INPUT_FILE = "input.json"  # how the inputs were made (image sets: the projection), for predict
PROGRESS_FILE = "progress.json"
# errors of tf.data while reading records (a file replaced, truncated or removed under a run)
_READ_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError,
                tf.errors.FailedPreconditionError)
STEP_TERMS = ("total", "cross_entropy", "extra", "triplet", "regularization", "correct", "count",
              "nonfinite_loss", "nonfinite_grad")


class EpochInterrupted(Exception):
    """Raised inside :meth:`Trainer.train` at a step boundary after an interrupt: where the
    epoch stopped (epoch, steps done, loss sums, seconds)."""

    def __init__(self, epoch, step, sums, seconds):
        super().__init__(epoch, step)
        self.epoch, self.step, self.sums, self.seconds = epoch, step, sums, seconds


class _RunLogHandler(logging.FileHandler):
    """``logging.log``: a record that cannot be written (a full disk) is dropped quietly; the
    console has it, and the error that follows says what happened."""

    def handleError(self, record):
        pass


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of each record."""

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def get_logger(logdir=None):
    """Logger printing ``[time:LEVEL] message`` to stderr and to ``logdir/logging.log``."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("[%(asctime)s:%(levelname)s] %(message)s")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        console = _StdoutHandler(sys.stdout)
        console.setFormatter(fmt)
        logger.addHandler(console)
    for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        logger.removeHandler(h)
        h.close()
    if logdir:
        path = os.path.join(logdir, "logging.log")
        try:
            os.makedirs(logdir, exist_ok=True)
            fh = _RunLogHandler(path)
        except OSError as err:
            if not is_read_only(err):
                raise
            logger.warning("cannot write {} ({}); logging to the console only".format(
                path, err.strerror or err))
        else:
            fh.setFormatter(fmt)
            logger.addHandler(fh)
    return logger


def configure_devices():
    """Let TensorFlow grow GPU memory as needed instead of taking all of it."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised


# the rule lives in params (no TensorFlow there, for the GPU check); the CPU probe with it
NATIVE_BF16_CPU_FLAGS = params_mod.NATIVE_BF16_CPU_FLAGS
cpu_native_bfloat16 = params_mod.cpu_native_bfloat16


def mixed_precision_policy(choice, log=None, cpuinfo="/proc/cpuinfo"):
    """The Keras dtype policy name for ``--mixed_precision`` (None: no change):
    :func:`spherical_cnn.params.mixed_precision_policy` with TensorFlow's view of the GPUs."""
    return params_mod.mixed_precision_policy(choice, bool(tf.config.list_physical_devices("GPU")),
                                             log=log, cpuinfo=cpuinfo)


# Training step with --transform_method naive over the same step with sep, model-64
# flags, batch 16, 2-core CPU, quiet machine, side by side in one run of
# benchmarks/train_step.py: 872 ms against 208-227 ms (3.8-4.2x; the lower end is
# quoted), by input_res; see docs/speed.md.
NAIVE_SLOWDOWN_CPU = {64: 3.8}


def naive_warning(args, have_gpu):
    """The once-per-run advice when ``--transform_method naive`` runs where ``sep`` is much
    faster (a CPU, grids of 64 and more), or None. Both methods compute the same
    coefficients (to float32 rounding); the params files keep the original's ``naive``."""
    if args.transform_method != "naive" or have_gpu:
        return None
    res = int(getattr(args, "input_res", 0) or 0)
    known = [r for r in sorted(NAIVE_SLOWDOWN_CPU) if r <= res]
    if not known or NAIVE_SLOWDOWN_CPU[known[-1]] < 2.0:
        return None
    factor = NAIVE_SLOWDOWN_CPU[known[-1]]
    return ("--transform_method naive (the original's setting in the params files) makes a training "
            "step about {:.1f}x slower than --transform_method sep on a CPU at --input_res {} "
            "(measured, docs/speed.md); sep computes the same coefficients (to float32 rounding) "
            "with a fraction of the tables' memory. Add --transform_method sep after the params "
            "files to use it.".format(factor, known[-1]))


def make_strategy(name):
    """The ``tf.distribute`` strategy for ``--distribute``."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--distribute multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task of this worker); see docs/demo.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def n_workers(strategy):
    """Number of processes (workers) of a multi-worker strategy; 1 otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, sum(len(v) for v in spec.values())) if spec else 1


# Errors of a collective operation whose peer died or cannot be reached.
_PEER_ERRORS = ("UnavailableError", "AbortedError", "DeadlineExceededError", "CancelledError",
                "InternalError")


def worker_lost(err, trainer):
    """A :class:`WorkerLost` for ``err`` if it means another worker of a multi-worker run
    died, else None. The message names the task and what was kept."""
    if trainer is None or n_workers(trainer.strategy) < 2 or type(err).__name__ not in _PEER_ERRORS:
        return None
    import re
    text = getattr(err, "message", "") or str(err)
    resolver = trainer.strategy.cluster_resolver
    me = "/job:{}/replica:0/task:{}".format(resolver.task_type, resolver.task_id)
    tasks = [t for t in dict.fromkeys(re.findall(r"/job:\w+/replica:\d+/task:\d+", text)) if t != me]
    who = "worker {}".format(", ".join(tasks)) if tasks else "another worker"
    epoch = trainer.saved_epoch
    kept = ("'latest' (epoch {}) in {} is intact".format(epoch, trainer.args.logdir) if epoch
            else "no epoch had finished, nothing was saved")
    return WorkerLost("lost {} of the multi-worker run ({}); this worker stopped. Nothing is lost: "
                      "{}. Restart every worker with the same command to resume".format(
                          who, "it stopped sending heartbeats" if "heartbeat" in text
                          else "it cannot be reached", kept))


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_flags(args):
    """``flags.yaml``: the run's flags; ``dset_dir`` and ``logdir`` are stored absolute (for
    information: a reloaded run uses the ``--logdir`` it is given, see :func:`load_flags`)."""
    flags = params_mod.to_dict(args)
    for key in ("dset_dir", "logdir"):
        if flags.get(key):
            flags[key] = os.path.abspath(flags[key])
    write_atomic(os.path.join(args.logdir, FLAGS_FILE), yaml.safe_dump(flags, sort_keys=True))


def load_flags(logdir, overrides):
    """Flags saved by a training run in ``logdir``, with ``overrides`` applied.

    The run is the folder ``logdir`` wherever it is now (copied, moved, archived): the
    saved ``logdir`` is replaced by it. A damaged file (not YAML, not a mapping, a tag
    the safe loader refuses, a value of the wrong type) is a :class:`ParamsError`
    naming it.
    """
    path = os.path.join(logdir, FLAGS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError("--test_only: no saved flags at {} (train with --logdir {} first)"
                                .format(path, logdir))

    def damaged(why):
        return params_mod.ParamsError("damaged flags file {}: {} (restore it from a copy, or "
                                      "rerun the training command)".format(path, why))
    try:
        with open(path, "rb") as f:
            saved = yaml.safe_load(f.read().decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged("not a text file") from None
    except yaml.YAMLError as err:
        raise damaged("not readable YAML ({})".format(" ".join(str(err).split())[:200])) from None
    if not isinstance(saved, dict):
        raise damaged("expected a mapping of flags, found {}".format(
            "an empty file" if saved is None else type(saved).__name__))
    saved.update(overrides, logdir=logdir)
    try:
        return params_mod.parse(saved)
    except params_mod.ParamsError as err:
        raise damaged(err) from None


class Trainer:
    """Builds dataset, model and optimizer from flags; trains, tests and exports."""

    def __init__(self, args, logger=None, dataset=None):
        self.args = args
        self.logger = logger or get_logger(args.logdir)
        configure_devices()
        policy = mixed_precision_policy(getattr(args, "mixed_precision", None), log=self.logger.info)
        if policy:
            # layers compute in bfloat16/float16 (transform and filter matmuls accumulate in
            # float32); variables, batch-norm statistics and the losses stay float32
            keras.config.set_dtype_policy(policy)
            self.logger.info("mixed precision: Keras dtype policy {}".format(policy))
        self.loss_scaling = policy == "mixed_float16"
        advice = naive_warning(args, bool(tf.config.list_physical_devices("GPU")))
        if advice:
            self.logger.warning(advice)
        keras.utils.set_random_seed(args.seed)
        if getattr(args, "deterministic", False):
            tf.config.experimental.enable_op_determinism()
        self.strategy = make_strategy(args.distribute)
        self.chief = is_chief(self.strategy)
        self.dataset = dataset if dataset is not None else datasets.load(args)
        names = getattr(self.dataset, "class_names", None)
        if names and len(names) != args.n_classes:
            raise params_mod.ParamsError(
                "--n_classes {} but {} lists {} classes".format(
                    args.n_classes, os.path.join(args.dset_dir, "classes.txt"), len(names)))
        with self.strategy.scope():
            self.model = models.build_model(args, self.dataset.input_shape)
            self.optimizer = self._make_optimizer()
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_valid = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_valid")
            # figures of the last trained epoch and the total training time, kept in every
            # checkpoint so that a resumed run, a finished run re-run and --test_only report them
            self.figures = {
                "train": tf.Variable(float("nan"), dtype=tf.float64, trainable=False, name="train_acc"),
                "valid": tf.Variable(float("nan"), dtype=tf.float64, trainable=False, name="valid_acc"),
                "seconds": tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds"),
                "epochs": tf.Variable(0, dtype=tf.int64, trainable=False, name="timed_epochs")}
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              epoch=self.epoch, best_valid=self.best_valid,
                                              **{"figure_" + k: v for k, v in self.figures.items()})
        self.store = CheckpointStore(args.logdir, writable=self.chief)
        self._train_step = None
        self._eval_step = None
        self._bn_recomputer = None
        self.saved_epoch = 0  # epoch of the 'latest' checkpoint on disk
        self.resume_at = None  # (epoch, step, loss sums, seconds) of a checkpoint saved mid-epoch
        self._file_stats = self._stats()
        self._progress_written = 0.0
        self._epoch_wall_seconds = []  # whole epochs of this process: training, statistics, validation, saving

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self):
        """TF1's Adam (epsilon 1e-8) or Nesterov momentum, see :mod:`spherical_cnn.optimizers`."""
        lr = params_mod.learning_rate_at(self.args.learning_rate, 0)
        optimizer = optimizers.make_optimizer(self.args.optimizer, lr)
        if self.loss_scaling:
            # float16 gradients underflow without it; steps with non-finite scaled
            # gradients are skipped and the scale lowered (bfloat16 needs none of this)
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)

    def _distribute(self, ds):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    def _build_steps(self):
        args, model, optimizer, strategy = self.args, self.model, self.optimizer, self.strategy
        replicas = strategy.num_replicas_in_sync

        def replica_train(x, y):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                # losses in float32 (under a mixed policy the model's outputs are bfloat16/float16)
                out = {k: tf.cast(v, tf.float32) for k, v in out.items()}
                ce = tf.nn.compute_average_loss(
                    softmax_cross_entropy(y, out["logits"], args.label_smoothing))
                extra = tf.zeros(())
                if args.extra_loss:
                    extra = tf.nn.compute_average_loss(
                        softmax_cross_entropy(y, out["extra_logits"], args.label_smoothing))
                triplet = tf.zeros(())
                if args.triplet_loss:
                    desc = tf.math.l2_normalize(out["descriptor"], axis=-1)
                    triplet = triplet_semihard_loss(y, desc) / replicas
                reg = tf.zeros(())
                if model.losses:
                    reg = tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                total = ce + extra + triplet + reg
                scaled = optimizer.scale_loss(total) if self.loss_scaling else total
            grads = tape.gradient(scaled, model.trainable_variables)
            # A non-finite step is still applied (the run stops right after it and saves
            # nothing from it), which keeps the step free of control flow. With loss scaling
            # (float16) non-finite gradients are expected now and then: the optimizer skips
            # those steps, so only the loss is checked.
            grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                                          if g is not None] or [True])
            if self.loss_scaling:
                grads_finite = tf.constant(True)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            pred = tf.argmax(out["logits"], axis=-1, output_type=tf.int64)
            correct = tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(y, tf.int64)), tf.float32))
            count = tf.cast(tf.shape(y)[0], tf.float32)
            nonfinite_loss = 1.0 - tf.cast(tf.math.is_finite(total), tf.float32)
            nonfinite_grad = 1.0 - tf.cast(grads_finite, tf.float32)
            return tf.stack([total, ce, extra, triplet, reg, correct, count,
                             nonfinite_loss, nonfinite_grad])

        def replica_eval(x, y):
            out = model(x, training=False)
            pred = tf.argmax(out["logits"], axis=-1, output_type=tf.int64)
            return tf.math.confusion_matrix(tf.cast(y, tf.int64), pred, num_classes=args.n_classes,
                                            dtype=tf.int64)

        if args.xla:
            # XLA compiles each replica's step (model, loss, gradients, update) into one program.
            replica_train = tf.function(replica_train, jit_compile=True)
            replica_eval = tf.function(replica_eval, jit_compile=True)

        @tf.function
        def train_step(x, y):
            per_replica = strategy.run(replica_train, args=(x, y))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        @tf.function
        def eval_step(x, y):
            per_replica = strategy.run(replica_eval, args=(x, y))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        self._train_step, self._eval_step = train_step, eval_step

    # -------------------------------------------------------------- training
    def _progress(self, epoch):
        mode = self.args.progress
        if mode == "none" or (mode == "auto" and not sys.stderr.isatty()) or not self.chief:
            return None
        from tqdm import tqdm
        return tqdm(desc="epoch {}/{}".format(epoch + 1, self.args.n_epochs), unit="batch",
                    leave=False, dynamic_ncols=True)

    def train_epoch(self, epoch, start_step=0, sums=None, seconds=0.0):
        """Train on the shard of ``epoch`` from batch ``start_step`` on (a resumed epoch: with
        the loss sums and seconds of the batches before it); return (accuracy, mean loss
        terms, seconds).

        An interrupt (see :func:`~spherical_cnn.errors.deferred_interrupts`) ends the epoch
        after the step in flight with :class:`EpochInterrupted`, which holds the position.
        """
        sums = np.zeros(len(STEP_TERMS)) if sums is None else np.array(sums, dtype=np.float64)
        n_steps = int(start_step)
        bar = self._progress(epoch)
        t0 = time.time()
        batches = self.dataset.train(epoch)
        if start_step:
            batches = batches.skip(int(start_step))
        path = self.dataset.train_shard(epoch) if hasattr(self.dataset, "train_shard") else None
        for x, y in self._read(self._distribute(batches), path, "epoch {}".format(epoch + 1)):
            if interrupted():  # a step not taken: stop where the batches before it left off
                raise EpochInterrupted(epoch, n_steps, sums, seconds + time.time() - t0)
            out = self._train_step(x, y).numpy()
            if out[7] or out[8]:
                if bar is not None:
                    bar.close()
                raise NonFiniteError(self._nonfinite_message(epoch, n_steps, out))
            sums += out
            n_steps += 1
            self._note_progress(epoch, n_steps)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss="{:.3f}".format(sums[0] / n_steps / self.strategy.num_replicas_in_sync),
                                acc="{:.3f}".format(sums[5] / max(sums[6], 1)))
            if interrupted():
                raise EpochInterrupted(epoch, n_steps, sums, seconds + time.time() - t0)
        seconds += time.time() - t0
        if bar is not None:
            bar.close()
        if n_steps != self.dataset_steps(epoch) and hasattr(self.dataset, "train_size"):
            # TensorFlow stops quietly at a record cut short: a shard truncated while it was read
            self.check_data_unchanged(("train",), during="epoch {}".format(epoch + 1))
        if n_steps == 0:
            raise RuntimeError("training shard of epoch {} yielded no batch (batch size {} with "
                               "--round_batches larger than the shard?)".format(epoch, self.args.train_bsize))
        self._last_epoch = (epoch, n_steps, sums.copy(), seconds)
        replicas = self.strategy.num_replicas_in_sync
        terms = dict(zip(["total", "cross_entropy", "extra", "triplet", "regularization"],
                         sums[:5] / n_steps / replicas))
        return sums[5] / sums[6], terms, seconds

    def recompute_batch_norm(self, epoch):
        """Set the batch norms' moving statistics to those of the first ``--recompute_bn``
        batches of the shard of ``epoch`` under the current weights (see
        :mod:`spherical_cnn.batch_norm_statistics`); returns the number of batches used."""
        if self._bn_recomputer is None:
            self._bn_recomputer = batch_norm_statistics.Recomputer(self.model, self.strategy)
        return self._bn_recomputer(self._distribute(self.dataset.train(epoch)), self.args.recompute_bn)

    def _read(self, batches, path, when):
        """Iterate ``batches``; a read error (a record file replaced, truncated or removed
        while the run goes on) is a DataError naming the file and what is kept."""
        it = iter(batches)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except _READ_ERRORS as err:
                raise DataError("reading {} failed during {} ({}): the record file changed or was "
                                "damaged while training; {}".format(
                                    path or self.args.dset_dir, when, verify._tf_message(err),
                                    self._kept()), path=path) from None
            yield item

    def _kept(self):
        """What is kept on disk, for messages: "'latest' (epoch N) in LOGDIR is intact"."""
        if self.saved_epoch:
            return "'latest' (epoch {}) in {} is intact".format(self.saved_epoch, self.args.logdir)
        return "no epoch had finished, so no checkpoint was saved"

    def _stats(self):
        """(size, mtime) of every record file, as they were verified."""
        out = {}
        for paths in getattr(self.dataset, "files", {}).values():
            for p in paths:
                try:
                    st = os.stat(p)
                    out[p] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    out[p] = None
        return out

    def check_data_unchanged(self, splits=("train", "val", "test"), during=None):
        """Verify again the record files that changed since the run started (replaced,
        truncated, rewritten): DataError naming the file and record if one no longer fits."""
        when = "during {}".format(during) if during else "while training"
        spec = getattr(self.dataset, "spec", None)
        for split in splits:
            for p in getattr(self.dataset, "files", {}).get(split, ()):
                try:
                    st = os.stat(p)
                    now = (st.st_size, st.st_mtime_ns)
                except OSError as err:
                    raise DataError("record file {} disappeared {} ({}); {}".format(
                        p, when, err.strerror, self._kept()), path=p) from None
                if now == self._file_stats.get(p) or spec is None:
                    continue
                try:
                    summary = verify.verify_files([p], spec)[p]
                except DataError as err:
                    raise DataError("record file {} changed {} and no longer fits: {}; {}"
                                    .format(p, when, err, self._kept()), path=p) from None
                self.dataset._counts[p] = summary.records
                self.dataset._has_a[p] = summary.has_a
                self._file_stats[p] = now
                self.logger.warning("record file {} changed {}; verified again ({} records), going on"
                                    .format(p, when, summary.records))

    def _note_progress(self, epoch, step, force=False):
        """``progress.json``: where training is now, about once a second (for a run killed
        without a checkpoint: the next run says how much it repeats)."""
        now = time.time()
        if not self.chief or (not force and now - self._progress_written < 1.0):
            return
        if not force:  # the forced notes at epoch ends leave the clock alone: with epochs shorter
            self._progress_written = now  # than a second, the steps inside them are noted too
        try:
            write_atomic(os.path.join(self.args.logdir, PROGRESS_FILE), json.dumps(
                {"epoch": int(epoch), "step": int(step), "pid": os.getpid(), "time": now}))
        except OSError:
            pass  # a note for the next run, never a reason to stop this one

    def _lost_work_note(self, epoch, step):
        """A line saying how much a run stopped without a checkpoint (SIGKILL) repeats, or None."""
        try:
            with open(os.path.join(self.args.logdir, PROGRESS_FILE)) as f:
                last = json.load(f)
            last_epoch, last_step = int(last["epoch"]), int(last["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (last_epoch, last_step) <= (epoch, step):
            return None
        steps = [self.dataset_steps(e) for e in range(epoch, last_epoch)]
        lost = sum(steps) - step + last_step
        return ("the previous run stopped without saving (killed?) at epoch {}, step {}; resuming from "
                "the last checkpoint at epoch {}, step {}: about {} step(s) are done again".format(
                    last_epoch + 1, last_step, epoch + 1, step, lost))

    def dataset_steps(self, epoch):
        """Training batches of ``epoch`` (as :meth:`train_epoch` takes them)."""
        n = self.dataset.train_size(epoch) if hasattr(self.dataset, "train_size") else 0
        b = self.args.train_bsize
        steps = n // b if self.args.round_batches else -(-n // b)
        return min(steps, int(self.args.first_n)) if self.args.first_n else steps

    def _seed_states(self):
        # in model order: their names (seed_generator_N) depend on what the process built before
        return [v for v in self.model.variables if "seed_generator_state" in v.path]

    def _rng_state(self):
        """Values of the model's random-generator states (dropout), which TensorFlow
        checkpoints leave out; saved in ``state.json`` so that a resumed run draws the same."""
        return [np.asarray(v.numpy()).tolist() for v in self._seed_states()]

    def _set_rng_state(self, values):
        states = self._seed_states()
        if isinstance(values, list) and len(values) == len(states):
            for v, value in zip(states, values):
                v.assign(np.asarray(value, dtype=v.dtype))

    def _checkpoint_state(self, epoch=None, step=0, sums=None, seconds=0.0):
        state = {"rng": self._rng_state()}
        if step:
            state.update(epoch=int(epoch), step=int(step), sums=[float(v) for v in sums],
                         seconds=float(seconds))
        return state

    def _nonfinite_message(self, epoch, step, out):
        what = "loss ({})".format(out[0]) if out[7] else "gradient"
        records = ""
        batch_records = getattr(self.dataset, "batch_records", None)
        if batch_records is not None and self.strategy.num_replicas_in_sync == 1:
            names = batch_records(epoch, step)
            shown = ", ".join(names[:8]) + (", ... ({} in all)".format(len(names)) if len(names) > 8 else "")
            records = "; records of that batch: {}".format(shown)
        saved = self.saved_epoch
        kept = ("'latest' (epoch {}) is the last good checkpoint".format(saved) if saved
                else "no checkpoint was saved")
        return ("non-finite {} at epoch {}, step {}{}. Stopped without saving; {}. The data was "
                "verified finite, so lower --learning_rate or check the model flags".format(
                    what, epoch + 1, step + 1, records, kept))

    def evaluate(self, split, per_batch=None):
        """Accuracy and confusion-matrix counts of the current weights on ``split``.

        Accuracy as the original: for 'val' the mean of the per-batch
        accuracies (every batch counts the same, the last partial one
        included); for 'test' per sample. ``per_batch`` overrides that choice.
        Under ``tf.distribute`` a batch is one global batch (all replicas of
        one step). The confusion counts ``(true, predicted)`` sum all samples.
        """
        if self._eval_step is None:
            self._build_steps()
        if per_batch is None:
            per_batch = split == "val"
        conf = np.zeros((self.args.n_classes, self.args.n_classes), dtype=np.int64)
        batch_accs = []
        files = ", ".join(getattr(self.dataset, "files", {}).get(split, ())) or None
        for x, y in self._read(self._distribute(self.dataset.eval(split)), files, "the {} split".format(split)):
            raise_if_interrupted()
            counts = self._eval_step(x, y).numpy()
            if counts.sum() > 0:
                batch_accs.append(np.trace(counts) / counts.sum())
            conf += counts
        limited = self.args.test_n if split == "test" else self.args.first_n
        if not limited and hasattr(self.dataset, "num_examples") and conf.sum() != self.dataset.num_examples(split):
            self.check_data_unchanged((split,), during="the {} split".format(split))  # cut short quietly
        if conf.sum() == 0:
            raise RuntimeError("the {} split yielded no batch".format(split))
        accuracy = np.mean(batch_accs) if per_batch else np.trace(conf) / conf.sum()
        return float(accuracy), conf

    def predict(self, split):
        """True and predicted classes of every record of ``split`` ('val' or 'test') with the
        current weights, in the order of ``dataset.eval(split)`` (file order; see
        ``SphericalDataset.record_keys`` for the records' names).

        Returns ``(labels, predictions)``, int64 arrays ``(n_records,)``; the prediction is
        the argmax of the logits, as in :meth:`evaluate` (which counts the same values).
        """
        model = self.model

        @tf.function
        def classes(x):
            return tf.argmax(model(x, training=False)["logits"], axis=-1, output_type=tf.int64)

        labels, preds = [], []
        for x, y in self.dataset.eval(split):
            labels.append(y.numpy())
            preds.append(classes(x).numpy())
        if not labels:
            raise RuntimeError("the {} split yielded no batch".format(split))
        return np.concatenate(labels).astype(np.int64), np.concatenate(preds)

    def _activations(self):
        names = models.block_outputs(self.model)
        if not names:
            return {}
        probe = keras.Model(self.model.input, [self.model.get_layer(n).output for n in names])
        x, _ = next(iter(self.dataset.train(0).take(1)))
        outs = probe(x, training=False)
        return {n: o.numpy() for n, o in zip(names, outs)}

    def resume_or_start(self):
        """Restore ``latest`` unless ``--from_scratch``; return the epoch to start from."""
        args = self.args
        for line in self.store.clean_leftovers() if self.chief else ():
            self.logger.warning("Interrupted checkpoint save: {}".format(line))
        if args.from_scratch:
            self.logger.info("Training from scratch; removing checkpoints and events in {}".format(args.logdir))
            if self.chief:
                self.store.remove_all()
                for f in os.listdir(args.logdir):
                    if f.startswith("events.out") or f in (RESULTS_FILE, EXPORT_FILE, PROGRESS_FILE):
                        os.remove(os.path.join(args.logdir, f))
        else:
            prefix = self.store.restore("latest", self.checkpoint, fallbacks=("best",),
                                        warn=self.logger.warning)
            if prefix:
                state = self.store.state(prefix) or {}
                self._set_rng_state(state.get("rng"))
                epoch = int(self.epoch.numpy())
                if state.get("step") and state.get("epoch") == epoch:
                    self.resume_at = (epoch, int(state["step"]), state["sums"], float(state["seconds"]))
                    self.logger.info("Continuing from checkpoint {} at epoch {}, step {}".format(
                        prefix, epoch, self.resume_at[1]))
                else:
                    self.logger.info("Continuing from checkpoint {} at epoch {}".format(prefix, epoch))
                note = self._lost_work_note(epoch, self.resume_at[1] if self.resume_at else 0)
                if note:
                    self.logger.warning(note)
        if n_workers(self.strategy) > 1:
            self._sync_from_chief()
        self.saved_epoch = int(self.epoch.numpy())
        return self.saved_epoch

    def _sync_from_chief(self):
        """Give every worker the chief's weights, optimizer state and epoch.

        Only the chief keeps checkpoints, so after a restart only the chief restored
        ``latest``; an all-reduce in which the other workers contribute zeros copies its
        values to all of them (values go through float64, exact for these dtypes).
        """
        variables = [v for v in (list(self.model.variables) + list(self.optimizer.variables)
                                 + [self.epoch, self.best_valid] + list(self.figures.values()))
                     if tf.as_dtype(v.dtype).is_floating or tf.as_dtype(v.dtype).is_integer]
        weight = 1.0 if self.chief else 0.0
        strategy = self.strategy

        @tf.function
        def broadcast():
            def replica_fn():
                return [tf.cast(tf.convert_to_tensor(v), tf.float64) * weight for v in variables]
            per_replica = strategy.run(replica_fn)
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, p, axis=None) for p in per_replica]
        for v, value in zip(variables, broadcast()):
            v.assign(tf.cast(value, v.dtype))
        if not self.chief and int(self.epoch.numpy()):
            self.logger.info("Continuing from the chief's checkpoint at epoch {}".format(int(self.epoch.numpy())))

    def saved_figures(self):
        """(train acc, valid acc, mean seconds per training epoch) kept in the checkpoint."""
        epochs = int(self.figures["epochs"].numpy())
        seconds = float(self.figures["seconds"].numpy()) / epochs if epochs else float("nan")
        return float(self.figures["train"].numpy()), float(self.figures["valid"].numpy()), seconds

    def train(self):
        """Run the remaining epochs; return (train acc, valid acc, mean epoch seconds).

        Interrupts (SIGTERM, Ctrl-C) are deferred to the next step boundary: ``latest`` is
        saved there with the position inside the epoch and :class:`Interrupted` is raised
        (module docstring); a second interrupt stops at once.
        """
        args = self.args
        start = self.resume_or_start()  # first: a run that cannot resume changes nothing
        if self.chief:
            save_flags(args)
            names = getattr(self.dataset, "class_names", None)
            if names:
                write_atomic(os.path.join(args.logdir, CLASSES_FILE), "\n".join(names) + "\n")
            manifest = getattr(self.dataset, "manifest", None)
            described = input_description(manifest)
            if described is None and manifest:
                from .data.builder import input_description as mesh_input_description
                described = mesh_input_description(manifest)
            if described:
                write_atomic(os.path.join(args.logdir, INPUT_FILE), json.dumps(described, indent=1))
        self._build_steps()
        summaries = RunSummaries(args.logdir, enabled=self.chief)
        if start >= args.n_epochs:
            self.logger.info("All {} epochs already done in {}".format(args.n_epochs, args.logdir))
        with deferred_interrupts(raise_after=1):
            for epoch in range(start, args.n_epochs):
                try:
                    self._train_one(epoch, summaries)
                except EpochInterrupted as stop:
                    self._save_interrupted(stop)
                if interrupted():  # while the epoch's checkpoint was written: it is complete
                    raise Interrupted("interrupted; latest checkpoint is epoch {} ({}); the same command "
                                      "resumes from it".format(self.saved_epoch, args.logdir))
            self.store.save("final", self.checkpoint, state=self._checkpoint_state())
        return self.saved_figures()

    def _train_one(self, epoch, summaries):
        """One epoch: train (from a saved step when resuming), validate, summarise, save."""
        args = self.args
        started = time.monotonic()
        lr = params_mod.learning_rate_at(args.learning_rate, epoch)
        self.set_learning_rate(lr)
        self.check_data_unchanged(("train",) if args.skip_val else ("train", "val"))
        resume = self.resume_at if self.resume_at and self.resume_at[0] == epoch else None
        self.resume_at = None
        if resume:  # the rest of an epoch interrupted at a step
            train_acc, terms, seconds = self.train_epoch(epoch, start_step=resume[1], sums=resume[2],
                                                         seconds=resume[3])
        else:
            train_acc, terms, seconds = self.train_epoch(epoch)
        try:
            if args.recompute_bn:
                self.recompute_batch_norm(epoch)
            if args.skip_val:
                valid_acc, conf = train_acc, np.zeros((args.n_classes, args.n_classes))
            else:
                valid_acc, conf = self.evaluate("val")
        except KeyboardInterrupt:
            if not interrupted() or interrupt_count() > 1:
                raise
            raise EpochInterrupted(*self._last_epoch) from None
        self.epoch.assign(epoch + 1)
        self.figures["train"].assign(train_acc)
        self.figures["valid"].assign(valid_acc)
        self.figures["seconds"].assign_add(seconds)
        self.figures["epochs"].assign_add(1)

        step = epoch + 1
        scalars = {"train_acc": train_acc, "valid_acc": valid_acc, "learning_rate": lr}
        scalars.update({"loss/" + k: v for k, v in terms.items()})
        try:
            summaries.scalars(scalars, step)
            if conf.sum():  # none with --skip_val
                summaries.confusion(conf, step, getattr(self.dataset, "class_names", None))
            every = args.tensorboard_histograms
            if self.chief and every and (step % every == 0 or step == args.n_epochs):
                summaries.histograms(self.model, self._activations(), step)
            summaries.flush()
        except (OSError, tf.errors.OpError) as err:
            if not is_disk_full(err):
                raise
            raise DiskFull("no space left on the device writing the TensorBoard events of {} (epoch {}); "
                           "{}; free some space and run the same command again to resume".format(
                               args.logdir, step, self._kept())) from err

        if valid_acc > float(self.best_valid.numpy()):
            self.best_valid.assign(valid_acc)
            self.store.save("best", self.checkpoint, state=self._checkpoint_state())
        self.store.save("latest", self.checkpoint, state=self._checkpoint_state())
        self.saved_epoch = step
        self._note_progress(step, 0, force=True)
        if not resume:  # a resumed epoch's rest would read short
            self._epoch_wall_seconds.append(time.monotonic() - started)
        self.logger.info("epoch={}; lr={:.4f} train: {:.4f}, valid: {:.4f}{}"
                         .format(step, lr, train_acc, valid_acc, self._time_left(step)))

    def _save_interrupted(self, stop):
        """Save ``latest`` at the position of an interrupted epoch; raise Interrupted."""
        self.epoch.assign(stop.epoch)
        self.store.save("latest", self.checkpoint, state=self._checkpoint_state(
            stop.epoch, stop.step, stop.sums, stop.seconds))
        self._note_progress(stop.epoch, stop.step, force=True)
        raise Interrupted("interrupted; latest checkpoint is epoch {} and {} step(s) of epoch {} (of {}), saved "
                          "when {} arrived ({}); the same command resumes from there".format(
                              stop.epoch, stop.step, stop.epoch + 1, self.dataset_steps(stop.epoch),
                              interrupt_signal_name() or "the interrupt", self.args.logdir))

    def _time_left(self, epochs_done):
        """`` (52 s/epoch, about 9 min left)``: the mean wall time of this process's whole epochs
        (training, batch-norm statistics, validation, checkpoints) times the epochs still to
        train; empty after the last epoch. The results table's train time counts training only."""
        left = self.args.n_epochs - epochs_done
        if left <= 0 or not self._epoch_wall_seconds:
            return ""
        per_epoch = float(np.mean(self._epoch_wall_seconds))
        remaining = per_epoch * left
        when = ("{:.0f} s".format(remaining) if remaining < 120 else "{:.0f} min".format(remaining / 60)
                if remaining < 7200 else "{:.1f} h".format(remaining / 3600))
        return " ({:.{d}f} s/epoch, about {} left)".format(per_epoch, when, d=1 if per_epoch < 10 else 0)

    def test(self, checkpoint="final"):
        """Test accuracy and confusion counts of ``checkpoint`` (None: the weights in memory)."""
        if checkpoint:
            fallbacks = ("best",) if checkpoint == "final" and self.args.fallback_to_best else ()
            try:
                prefix = self.store.restore(checkpoint, self.checkpoint, expect_partial=True,
                                            fallbacks=fallbacks, warn=self.logger.warning)
            except CheckpointDamaged as err:
                if checkpoint == "final" and not fallbacks and self.store.find("best") is not None:
                    raise CheckpointDamaged("{}; --fallback_to_best tests 'best' instead".format(err)) from None
                raise
            if prefix is None:
                hint = ("; --fallback_to_best tests 'best' instead" if checkpoint == "final" and not fallbacks
                        and self.store.path("best") else "")
                raise FileNotFoundError("no '{}' checkpoint in {}{}".format(checkpoint, self.args.logdir, hint))
            if os.path.basename(os.path.dirname(prefix)).split(".")[0] != checkpoint:
                self.logger.warning("testing '{}' instead of '{}', as --fallback_to_best asks; the "
                                    "table below is of that checkpoint".format(
                                        os.path.basename(os.path.dirname(prefix)), checkpoint))
        return self.evaluate("test")

    def export(self):
        """Save the model for inference as ``logdir/model.keras`` (atomically)."""
        if not self.chief:
            return None
        path = os.path.join(self.args.logdir, EXPORT_FILE)
        tmp = os.path.join(self.args.logdir, ".export-tmp.keras")
        try:
            self.model.save(tmp)
            os.replace(tmp, path)
        except BaseException as err:
            if os.path.exists(tmp):
                os.remove(tmp)
            if is_disk_full(err):
                raise DiskFull("no space left on the device exporting the model to {}; the checkpoints in {} "
                               "are intact ('final', epoch {}): free some space and run the same command "
                               "again to export it (nothing is trained again)".format(
                                   path, self.args.logdir, int(self.epoch.numpy()))) from err
            raise
        return path


def _figure(value, fmt):
    return fmt.format(value) if value is not None and math.isfinite(value) else "n/a"


def results_table(run_id, train, valid, test, train_time):
    """The original's final markdown table: header line and one row (unknown figures: n/a)."""
    cells = [_figure(v, "{:.4f}") for v in (train, valid, test)] + [_figure(train_time, "{:.2f}")]
    return ["|model|train|val|test|train time|", "|{}|{}|".format(run_id, "|".join(cells))]


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def write_results(logdir, results):
    """``results.json``, strict JSON (unknown figures are null), written atomically."""
    clean = {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in results.items()}
    write_atomic(os.path.join(logdir, RESULTS_FILE), json.dumps(clean, indent=2, allow_nan=False))


def _saved_results(logdir):
    try:
        with open(os.path.join(logdir, RESULTS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run(argv=None):
    """Entry point of ``scripts/train.py``: train (unless --test_only), test, print the table.

    Holds the lock of ``--logdir`` throughout; Ctrl-C (or SIGTERM through
    :func:`spherical_cnn.errors.run_cli`) raises :class:`Interrupted` saying which
    checkpoint is kept.
    """
    args = params_mod.parse(argv)
    if args.test_only:
        if not args.logdir:
            raise params_mod.ParamsError("--test_only needs --logdir of a finished run")
        # the run is the folder given, wherever it is now; flags given here win over the saved ones
        overrides = {"test_only": True, "from_scratch": False, "fallback_to_best": args.fallback_to_best}
        parser = params_mod.build_parser()
        dset_given = args.dset_dir != os.path.expanduser(parser.get_default("dset_dir"))
        if dset_given:
            overrides["dset_dir"] = args.dset_dir
        for key in ("progress", "verbose", "debug", "ignore_size_check"):
            if getattr(args, key) != parser.get_default(key):
                overrides[key] = getattr(args, key)
        args = load_flags(args.logdir, overrides)
        if (not dset_given and args.dset == "from_cached_tfrecords"
                and not os.path.isdir(args.dset_dir)):
            raise params_mod.ParamsError(
                "--test_only: the dataset saved in {}, {}, is not there; give its folder with "
                "--dset_dir".format(os.path.join(args.logdir, FLAGS_FILE), args.dset_dir))
    logger = get_logger(None)
    from . import sizes
    sizes.check(sizes.training_estimate(args, n_records=largest_split(args)),
                ignore=args.ignore_size_check, warn=logger.warning)
    if os.path.lexists(args.logdir) and not os.path.isdir(args.logdir):
        raise params_mod.ParamsError("--logdir {} is a file, not a folder; give a folder for the run"
                                     .format(args.logdir))
    if not args.test_only:
        os.makedirs(args.logdir, exist_ok=True)
    with LogdirLock(args.logdir, warn=logger.warning, read_only_ok=args.test_only):
        logger = get_logger(args.logdir)
        state = {}
        try:
            return _run_locked(args, logger, state)
        except KeyboardInterrupt:
            if args.test_only:
                err = Interrupted("interrupted while testing; nothing was written, the checkpoints in {} "
                                  "are unchanged".format(args.logdir))
            else:
                epoch = state["trainer"].saved_epoch if "trainer" in state else None
                kept = ("latest checkpoint is epoch {}".format(epoch) if epoch
                        else "no checkpoint was saved")
                err = Interrupted("interrupted; {} ({})".format(kept, args.logdir))
            _log_to_file(logger, logging.WARNING, str(err))
            raise err from None
        except BaseException as err:  # noqa: B902 - logged, then raised as it was
            message = describe(err)
            if message is not None:
                _log_to_file(logger, logging.WARNING if isinstance(err, Interrupted) else logging.ERROR,
                             ("stopped: " if not isinstance(err, Interrupted) else "") + message)
            elif not isinstance(err, SystemExit):
                _log_to_file(logger, logging.ERROR, "stopped by an unexpected error", exc_info=err)
            raise


def _log_to_file(logger, level, message, exc_info=None):
    """Write one record to the run's ``logging.log`` only (the console gets the error from
    :func:`~spherical_cnn.errors.run_cli`, once)."""
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None,
                               (type(exc_info), exc_info, exc_info.__traceback__) if exc_info else None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def largest_split(args):
    """Records in the largest batch source of ``args.dset_dir`` (a train shard, the val or the
    test files), counted from the TFRecord framing; None if there are none yet."""
    files = datasets.list_record_files(args.dset_dir) if os.path.isdir(args.dset_dir or "") else {}
    sizes = []
    try:
        sizes += [verify.check_framing(p) for p in files.get("train", ())]
        sizes += [sum(verify.check_framing(p) for p in files.get(s, ())) for s in ("val", "test")]
    except (OSError, DataError):
        return None  # verification names the bad file later
    return max(sizes) if any(sizes) else None


def _run_locked(args, logger, state):
    logger.info("Running on {}".format(socket.gethostname()))
    logger.info(args)
    logger.info("Loading and verifying dataset from {} ({})...".format(args.dset_dir, args.dset))
    t0 = time.time()
    trainer = state["trainer"] = Trainer(args, logger)
    counts = {s: trainer.dataset.num_examples(s) for s in datasets.SPLITS if trainer.dataset.files[s]}
    logger.info("Dataset verified in {:.1f} s: {} records".format(
        time.time() - t0, ", ".join("{} {}".format(k, v) for k, v in counts.items())))
    n_params = trainer.model.count_params()
    logger.info("Model {}: {:,} parameters. Logdir {}".format(args.model, n_params, args.logdir))

    try:
        if not args.test_only:
            logger.info("Start training...")
            train, valid, train_time = trainer.train()
        logger.info("Start testing...")
        # Right after training the weights in memory are the final ones (a non-chief
        # worker keeps no checkpoint); --test_only restores them.
        test, _ = trainer.test("final" if args.test_only else None)
    except tf.errors.OpError as err:
        lost = worker_lost(err, trainer)
        if lost is None:
            raise
        raise lost from None
    if args.test_only:
        train, valid, train_time = trainer.saved_figures()
        if not math.isfinite(train):  # checkpoint of an older version: figures in results.json
            saved = _saved_results(args.logdir)
            train, valid, train_time = (saved.get(k, float("nan")) for k in ("train", "val", "train_time"))
    else:
        if args.export:
            logger.info("Exported model to {}".format(trainer.export()))
        if trainer.chief:
            write_results(args.logdir, {
                "run_id": args.run_id, "train": train, "val": valid, "test": test,
                "train_time": train_time, "n_params": n_params,
                "steps": int(trainer.optimizer.iterations.numpy()), "epochs": args.n_epochs})
    for line in results_table(args.run_id, train, valid, test, train_time):
        logger.info(line)
    return {"train": train, "val": valid, "test": test, "train_time": train_time}
