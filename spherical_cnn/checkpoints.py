"""Atomic named checkpoints (``best``, ``latest``, ``final``) in a log directory.

Each checkpoint is a directory ``logdir/<name>/`` holding a TensorFlow
checkpoint (model weights, optimizer state, epoch counter, best validation
accuracy). A checkpoint is first written to ``<name>.tmp``; the old one is
moved to ``<name>.old``, the new one renamed into place, then the old one is
removed. An interrupted save therefore leaves either the previous checkpoint
(``<name>`` or ``<name>.old``) or the new one, never a half-written one, and
:meth:`CheckpointStore.path` finds whichever is complete.
"""
import os
import shutil

import tensorflow as tf

from .errors import DiskFull, is_disk_full

NAMES = ("best", "latest", "final")
_PREFIX = "ckpt"


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

    def save(self, name, checkpoint):
        """Write ``checkpoint`` as ``name``, atomically with respect to interruptions.

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
        except (OSError, tf.errors.OpError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(err):
                kept = ("the previous '{}' checkpoint is intact".format(name) if self.path(name)
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
        shutil.rmtree(old, ignore_errors=True)

    def restore(self, name, checkpoint, expect_partial=False):
        """Restore ``checkpoint`` from ``name``; return False if that checkpoint does not exist."""
        prefix = self.path(name)
        if prefix is None:
            return False
        status = checkpoint.read(prefix)
        if expect_partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
        return True

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
                    shutil.rmtree(old, ignore_errors=True)
                    done.append("removed {}".format(old))
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
            for suffix in ("", ".tmp", ".old"):
                shutil.rmtree(self._dir(name) + suffix, ignore_errors=True)
