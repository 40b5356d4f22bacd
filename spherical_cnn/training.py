"""Training and testing of the demo, with the original's epoch semantics.

One epoch trains on one training shard (cycling through the shards), then
validates (or, with ``--skip_val``, reports the training accuracy as
"valid"), saves ``best`` (when validation accuracy improved) and ``latest``,
and logs ``epoch=N; lr=X train: A, valid: B``. After the last epoch the model
is saved as ``final``, tested, and the row ``|run_id|train|val|test|train time|``
is printed (train time: mean seconds per training epoch). A run continues from
``latest`` unless ``--from_scratch``; ``--test_only`` reloads the saved flags
(``flags.yaml``) and tests ``final``.
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

from . import datasets
from . import models
from . import params as params_mod
from .checkpoints import CheckpointStore
from .losses import softmax_cross_entropy, triplet_semihard_loss
from .summaries import RunSummaries

LOGGER_NAME = "spherical_cnn"
FLAGS_FILE = "flags.yaml"
RESULTS_FILE = "results.json"
EXPORT_FILE = "model.keras"
CLASSES_FILE = "classes.txt"


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
        os.makedirs(logdir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(logdir, "logging.log"))
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


def make_strategy(name):
    """The ``tf.distribute`` strategy for ``--distribute``."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--distribute multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and task of this worker); see README")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_flags(args):
    write_atomic(os.path.join(args.logdir, FLAGS_FILE),
                 yaml.safe_dump(params_mod.to_dict(args), sort_keys=True))


def load_flags(logdir, overrides):
    """Flags saved by a training run in ``logdir``, with ``overrides`` applied."""
    path = os.path.join(logdir, FLAGS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError("--test_only: no saved flags at {} (train with --logdir {} first)"
                                .format(path, logdir))
    with open(path) as f:
        saved = yaml.safe_load(f)
    saved.update(overrides)
    return params_mod.parse(saved)


class Trainer:
    """Builds dataset, model and optimizer from flags; trains, tests and exports."""

    def __init__(self, args, logger=None, dataset=None):
        self.args = args
        self.logger = logger or get_logger(args.logdir)
        configure_devices()
        keras.utils.set_random_seed(args.seed)
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
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              epoch=self.epoch, best_valid=self.best_valid)
        self.store = CheckpointStore(args.logdir, writable=self.chief)
        self._train_step = None
        self._eval_step = None

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self):
        lr = params_mod.learning_rate_at(self.args.learning_rate, 0)
        if self.args.optimizer == "adam":
            return keras.optimizers.Adam(learning_rate=lr)
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)

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
                ce = tf.nn.compute_average_loss(softmax_cross_entropy(y, out["logits"]))
                extra = tf.zeros(())
                if args.extra_loss:
                    extra = tf.nn.compute_average_loss(softmax_cross_entropy(y, out["extra_logits"]))
                triplet = tf.zeros(())
                if args.triplet_loss:
                    desc = tf.math.l2_normalize(out["descriptor"], axis=-1)
                    triplet = triplet_semihard_loss(y, desc) / replicas
                reg = tf.zeros(())
                if model.losses:
                    reg = tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                total = ce + extra + triplet + reg
            grads = tape.gradient(total, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            pred = tf.argmax(out["logits"], axis=-1, output_type=tf.int64)
            correct = tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(y, tf.int64)), tf.float32))
            count = tf.cast(tf.shape(y)[0], tf.float32)
            return tf.stack([total, ce, extra, triplet, reg, correct, count])

        def replica_eval(x, y):
            out = model(x, training=False)
            pred = tf.argmax(out["logits"], axis=-1, output_type=tf.int64)
            return tf.math.confusion_matrix(tf.cast(y, tf.int64), pred, num_classes=args.n_classes,
                                            dtype=tf.int64)

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

    def train_epoch(self, epoch):
        """Train on the shard of ``epoch``; return (accuracy, mean loss terms, seconds)."""
        sums = np.zeros(7)
        n_steps = 0
        bar = self._progress(epoch)
        t0 = time.time()
        for x, y in self._distribute(self.dataset.train(epoch)):
            out = self._train_step(x, y).numpy()
            sums += out
            n_steps += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss="{:.3f}".format(sums[0] / n_steps / self.strategy.num_replicas_in_sync),
                                acc="{:.3f}".format(sums[5] / max(sums[6], 1)))
        seconds = time.time() - t0
        if bar is not None:
            bar.close()
        if n_steps == 0:
            raise RuntimeError("training shard of epoch {} yielded no batch (batch size {} with "
                               "--round_batches larger than the shard?)".format(epoch, self.args.train_bsize))
        replicas = self.strategy.num_replicas_in_sync
        terms = dict(zip(["total", "cross_entropy", "extra", "triplet", "regularization"],
                         sums[:5] / n_steps / replicas))
        return sums[5] / sums[6], terms, seconds

    def evaluate(self, split):
        """Accuracy and confusion-matrix counts of the current weights on ``split``."""
        if self._eval_step is None:
            self._build_steps()
        conf = np.zeros((self.args.n_classes, self.args.n_classes), dtype=np.int64)
        for x, y in self._distribute(self.dataset.eval(split)):
            conf += self._eval_step(x, y).numpy()
        if conf.sum() == 0:
            raise RuntimeError("the {} split yielded no batch".format(split))
        return float(np.trace(conf) / conf.sum()), conf

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
        if args.from_scratch:
            self.logger.info("Training from scratch; removing checkpoints and events in {}".format(args.logdir))
            if self.chief:
                self.store.remove_all()
                for f in os.listdir(args.logdir):
                    if f.startswith("events.out") or f in (RESULTS_FILE, EXPORT_FILE):
                        os.remove(os.path.join(args.logdir, f))
        elif self.store.restore("latest", self.checkpoint):
            self.logger.info("Continuing from checkpoint {} at epoch {}"
                             .format(self.store.path("latest"), int(self.epoch.numpy())))
        return int(self.epoch.numpy())

    def train(self):
        """Run the remaining epochs; return (train acc, valid acc, mean epoch seconds)."""
        args = self.args
        if self.chief:
            save_flags(args)
            names = getattr(self.dataset, "class_names", None)
            if names:
                write_atomic(os.path.join(args.logdir, CLASSES_FILE), "\n".join(names) + "\n")
        start = self.resume_or_start()
        self._build_steps()
        summaries = RunSummaries(args.logdir, enabled=self.chief)
        train_acc = valid_acc = float("nan")
        train_times = []
        if start >= args.n_epochs:
            self.logger.info("All {} epochs already done in {}".format(args.n_epochs, args.logdir))
        for epoch in range(start, args.n_epochs):
            lr = params_mod.learning_rate_at(args.learning_rate, epoch)
            self.set_learning_rate(lr)
            train_acc, terms, seconds = self.train_epoch(epoch)
            train_times.append(seconds)
            if args.skip_val:
                valid_acc, conf = train_acc, np.zeros((args.n_classes, args.n_classes))
            else:
                valid_acc, conf = self.evaluate("val")
            self.epoch.assign(epoch + 1)

            step = epoch + 1
            scalars = {"train_acc": train_acc, "valid_acc": valid_acc, "learning_rate": lr}
            scalars.update({"loss/" + k: v for k, v in terms.items()})
            summaries.scalars(scalars, step)
            if conf.sum():  # none with --skip_val
                summaries.confusion(conf, step, getattr(self.dataset, "class_names", None))
            every = args.tensorboard_histograms
            if self.chief and every and (step % every == 0 or step == args.n_epochs):
                summaries.histograms(self.model, self._activations(), step)
            summaries.flush()

            if valid_acc > float(self.best_valid.numpy()):
                self.best_valid.assign(valid_acc)
                self.store.save("best", self.checkpoint)
            self.store.save("latest", self.checkpoint)
            self.logger.info("epoch={}; lr={:.4f} train: {:.4f}, valid: {:.4f}"
                             .format(step, lr, train_acc, valid_acc))
        self.store.save("final", self.checkpoint)
        mean_time = float(np.mean(train_times)) if train_times else 0.0
        return train_acc, valid_acc, mean_time

    def test(self, checkpoint="final"):
        """Test accuracy and confusion counts of ``checkpoint`` (None: the weights in memory)."""
        if checkpoint and not self.store.restore(checkpoint, self.checkpoint, expect_partial=True):
            raise FileNotFoundError("no '{}' checkpoint in {}".format(checkpoint, self.args.logdir))
        return self.evaluate("test")

    def export(self):
        """Save the model for inference as ``logdir/model.keras`` (atomically)."""
        if not self.chief:
            return None
        path = os.path.join(self.args.logdir, EXPORT_FILE)
        tmp = os.path.join(self.args.logdir, ".export-tmp.keras")
        self.model.save(tmp)
        os.replace(tmp, path)
        return path


def results_table(run_id, train, valid, test, train_time):
    """The original's final markdown table: header line and one row."""
    return ["|model|train|val|test|train time|",
            "|{}|{:.4f}|{:.4f}|{:.4f}|{:.2f}|".format(run_id, train, valid, test, train_time)]


def run(argv=None):
    """Entry point of ``scripts/train.py``: train (unless --test_only), test, print the table."""
    args = params_mod.parse(argv)
    if args.test_only:
        if not args.logdir:
            raise params_mod.ParamsError("--test_only needs --logdir of a finished run")
        overrides = {"test_only": True, "from_scratch": False}
        parser_default = params_mod.build_parser().get_default("dset_dir")
        if args.dset_dir != os.path.expanduser(parser_default):
            overrides["dset_dir"] = args.dset_dir
        args = load_flags(args.logdir, overrides)
    logger = get_logger(args.logdir)
    logger.info("Running on {}".format(socket.gethostname()))
    logger.info(args)
    logger.info("Loading dataset from {} ({})...".format(args.dset_dir, args.dset))
    trainer = Trainer(args, logger)
    n_params = trainer.model.count_params()
    logger.info("Model {}: {:,} parameters. Logdir {}".format(args.model, n_params, args.logdir))

    if not args.test_only:
        logger.info("Start training...")
        train, valid, train_time = trainer.train()
    else:
        train, valid, train_time = 0.0, 0.0, 0.0

    logger.info("Start testing...")
    # Right after training the weights in memory are the final ones (a non-chief
    # worker keeps no checkpoint); --test_only restores them.
    test, _ = trainer.test("final" if args.test_only else None)
    if not args.test_only:
        if args.export:
            logger.info("Exported model to {}".format(trainer.export()))
        if trainer.chief:
            write_atomic(os.path.join(args.logdir, RESULTS_FILE), json.dumps(
                {"run_id": args.run_id, "train": train, "val": valid, "test": test,
                 "train_time": train_time, "n_params": n_params,
                 "steps": int(trainer.optimizer.iterations.numpy()),
                 "epochs": args.n_epochs}, indent=2))
    for line in results_table(args.run_id, train, valid, test, train_time):
        logger.info(line)
    return {"train": train, "val": valid, "test": test, "train_time": train_time}
