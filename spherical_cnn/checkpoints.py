"""Atomic named checkpoints (``best``, ``latest``, ``final``) in a log directory.

Each checkpoint is a directory ``logdir/<name>/`` holding a TensorFlow
checkpoint (model weights, optimizer state, epoch counter, best validation
accuracy). A checkpoint is first written to ``<name>.tmp``; the old one is
moved to ``<name>.old``, the new one renamed into place, then the old one is
removed. An interrupted save therefore leaves either the previous checkpoint
(``<name>`` or ``<name>.old``) or the new one, never a half-written one, and
:meth:`CheckpointStore.path` finds whichever is complete.

``latest`` also keeps the one before it as ``latest.prev``.

A checkpoint may carry ``state.json`` beside the TensorFlow files (written into the
same folder before it is renamed into place, so it is exactly as atomic): the trainer's
position inside an epoch and the state of the random generators, which the
TensorFlow checkpoint does not hold (see ``training.Trainer``). Old checkpoints have none.

Restoring verifies a checkpoint first (its index and every tensor, whose CRC32C
TensorFlow checks on reading). A damaged one (flipped bytes, a truncated or
missing data file) is never read into the model: :meth:`CheckpointStore.restore`
falls back to the newest good candidate (``<name>.old``, ``latest.prev``, and the
names given as ``fallbacks``, e.g. ``best``) with a warning naming the damaged
files, or raises :class:`CheckpointDamaged` naming them all when none is good.
"""
import json
import os
import shutil

import tensorflow as tf

from .errors import DiskFull, UserError, first_line, is_disk_full

NAMES = ("best", "latest", "final")
KEEP_PREVIOUS = ("latest",)  # names whose previous version is kept as <name>.prev
_PREFIX = "ckpt"
STATE_FILE = "state.json"
_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointDamaged(UserError):
    """No usable checkpoint: every candidate is damaged; the message names their files."""


def verify(prefix):
    """None if the checkpoint ``prefix`` reads completely, else why not, naming the file(s).

    Reads the index and every tensor (TensorFlow checks each tensor's CRC32C), so
    flipped bytes, a truncated or missing data file and a damaged index are all found.
    """
    folder = os.path.dirname(prefix)
    index = prefix + ".index"
    if not os.path.isfile(index):
        return "{} is missing".format(index)
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_shape_map())
    except Exception as err:  # noqa: B902 - any failure to read the index means damage
        return "{} is unreadable ({})".format(index, first_line(err))
    data = sorted(f for f in os.listdir(folder) if f.startswith(_PREFIX + ".data-"))
    data_names = (", ".join(os.path.join(folder, f) for f in data)
                  or prefix + ".data-00000-of-00001 (missing)")
    try:
        for name in names:
            reader.get_tensor(name)
    except Exception as err:  # noqa: B902 - any failure to read a tensor back means damage
        return "{} is damaged ({})".format(data_names, first_line(err))
    return None


def saved_epoch(prefix):
    """The epoch counter stored in a (verified) checkpoint, or -1 if it has none."""
    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor(_EPOCH_KEY))
    except (tf.errors.OpError, ValueError, KeyError):
        return -1


class CheckpointStore:
    """Save and restore ``tf.train.Checkpoint`` objects under fixed names in ``logdir``."""

    def __init__(self, logdir, writable=True):
        self.logdir = logdir
        self.writable = writable

    def _dir(self, name):
        return os.path.join(self.logdir, name)

    def path(self, name):
        """Prefix of the complete checkpoint ``name``, or None if there is none."""
        for candidate in (self._dir(name), self._dir(name) + ".old"):
            prefix = os.path.join(candidate, _PREFIX)
            if os.path.exists(prefix + ".index"):
                return prefix
        return None

    def _candidates(self, name):
        """(label, prefix) of every folder that may hold checkpoint ``name``, newest first."""
        suffixes = ("", ".old", ".prev") if name in KEEP_PREVIOUS else ("", ".old")
        out = []
        for suffix in suffixes:
            folder = self._dir(name) + suffix
            if os.path.isdir(folder) and os.listdir(folder):
                out.append((name + suffix, os.path.join(folder, _PREFIX)))
        return out

    def find(self, name, fallbacks=(), warn=None):
        """Prefix of the good checkpoint to restore for ``name``, or None if none exists.

        ``name`` itself is used when it verifies. Otherwise the newest good one (by
        saved epoch) among ``<name>.old``, ``<name>.prev`` and the checkpoints
        ``fallbacks`` is used, and ``warn`` receives a line naming the damaged files.
        Raises :class:`CheckpointDamaged` when checkpoints exist but none is good.
        """
        damaged, good = [], []
        for order, (label, prefix) in enumerate(
                self._candidates(name) + [c for f in fallbacks for c in self._candidates(f)]):
            reason = verify(prefix)
            if reason is not None:
                damaged.append("{}: {}".format(label, reason))
                continue
            if not damaged and order == 0:
                return prefix  # the checkpoint asked for is good
            good.append((saved_epoch(prefix), -order, label, prefix))
        if good:
            epoch, _, label, prefix = max(good)
            if damaged and warn is not None:
                warn("checkpoint '{}' is damaged ({}); using '{}' (epoch {}) instead".format(
                    name, "; ".join(damaged), label, epoch))
            elif warn is not None and label.split(".")[0] != name:
                warn("no '{}' checkpoint in {}; using '{}' (epoch {}) instead".format(
                    name, self.logdir, label, epoch))
            return prefix
        if damaged:
            raise CheckpointDamaged("no usable '{}' checkpoint in {}: {}".format(
                name, self.logdir, "; ".join(damaged)))
        return None

    def save(self, name, checkpoint, state=None):
        """Write ``checkpoint`` as ``name``, atomically with respect to interruptions;
        ``state`` (a JSON-able dict) is written with it as ``state.json``.

        On a non-chief worker of a multi-worker run (``writable=False``) the
        checkpoint is written to a scratch directory and discarded: every
        worker must take part in saving, only the chief keeps the result.
        """
        final = self._dir(name)
        tmp, old = final + ".tmp", final + ".old"
        if not self.writable:
            tmp = os.path.join(self.logdir, ".scratch-{}-{}".format(name, os.getpid()))
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            checkpoint.write(os.path.join(tmp, _PREFIX))
            if state is not None:
                with open(os.path.join(tmp, STATE_FILE), "w") as f:
                    json.dump(state, f)
        except (OSError, tf.errors.OpError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(err):
                previous = self.path(name)
                epoch = saved_epoch(previous) if previous else -1
                kept = ("the previous '{}' checkpoint{} is intact".format(
                    name, " (epoch {})".format(epoch) if epoch >= 0 else "") if previous
                        else "no '{}' checkpoint exists yet".format(name))
                raise DiskFull("no space left on the device writing checkpoint {} ({}); {}"
                               .format(name, tmp, kept)) from err
            raise
        if not self.writable:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if os.path.isdir(final):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        self._keep_previous(name)

    def _keep_previous(self, name):
        """``<name>.old`` becomes ``<name>.prev`` for names in KEEP_PREVIOUS, else is removed."""
        old, prev = self._dir(name) + ".old", self._dir(name) + ".prev"
        if name in KEEP_PREVIOUS and os.path.isdir(old):
            shutil.rmtree(prev, ignore_errors=True)
            os.replace(old, prev)
        else:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self, name, checkpoint, expect_partial=False, fallbacks=(), warn=None):
        """Restore ``checkpoint`` from the good checkpoint :meth:`find` picks for ``name``.

        Returns its prefix, or None if no checkpoint ``name`` (nor a fallback) exists.
        Raises :class:`CheckpointDamaged` if they all are damaged.
        """
        prefix = self.find(name, fallbacks, warn)
        if prefix is None:
            return None
        try:
            status = checkpoint.read(prefix)
        except (ValueError, tf.errors.OpError) as err:  # a variable of another shape or dtype
            raise UserError("checkpoint {} does not match the model of these flags ({}); use the flags "
                            "it was trained with, or --from_scratch".format(
                                os.path.dirname(prefix), first_line(err)[:300])) from None
        if expect_partial:
            status.expect_partial()
        else:
            try:
                status.assert_existing_objects_matched()
            except AssertionError as err:
                raise UserError("checkpoint {} does not match the model of these flags ({}); "
                                "use the flags it was trained with, or --from_scratch".format(
                                    os.path.dirname(prefix), first_line(err))) from None
        return prefix

    @staticmethod
    def state(prefix):
        """The ``state.json`` saved with the checkpoint ``prefix`` (dict), or None."""
        try:
            with open(os.path.join(os.path.dirname(prefix), STATE_FILE)) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def clean_leftovers(self):
        """Finish or undo saves that were interrupted; return what was done (for the log).

        ``<name>.tmp`` (a save cut short) is removed; ``<name>.old`` is removed when
        ``<name>`` is complete, else renamed back to ``<name>`` (the new one never
        made it into place). Scratch folders of other workers are removed too.
        """
        done = []
        if not self.writable or not os.path.isdir(self.logdir):
            return done
        for name in NAMES:
            final, tmp, old = self._dir(name), self._dir(name) + ".tmp", self._dir(name) + ".old"
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
                done.append("removed unfinished {}".format(tmp))
            if os.path.isdir(old):
                if os.path.exists(os.path.join(final, _PREFIX + ".index")):
                    self._keep_previous(name)
                    done.append("kept {} as {}.prev".format(old, final) if name in KEEP_PREVIOUS
                                else "removed {}".format(old))
                else:
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(old, final)
                    done.append("restored {} from {}".format(final, old))
        for fn in os.listdir(self.logdir):
            if fn.startswith(".scratch-"):
                shutil.rmtree(os.path.join(self.logdir, fn), ignore_errors=True)
        return done

    def remove_all(self):
        """Delete every named checkpoint (used by ``--from_scratch``)."""
        for name in NAMES:
            for suffix in ("", ".tmp", ".old", ".prev"):
                shutil.rmtree(self._dir(name) + suffix, ignore_errors=True)
