"""One trainer per log directory: a lock file holding host, PID and start time.

``LOCK_FILE`` is created with ``O_EXCL``, so of two trainers started on the same
``--logdir`` exactly one gets it; the other stops with
:class:`~spherical_cnn.errors.LogdirInUse` naming the holder. A lock left by a
process that no longer runs on this host (killed, machine crash) is taken over
with a warning. A lock held on another host is never taken over: the message
says which file to delete if that run is really gone.
"""
import json
import os
import socket
import time

from .errors import LogdirInUse, UserError, is_read_only

LOCK_FILE = ".lock"


def pid_alive(pid):
    """True if a process with this PID runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LogdirLock:
    """Context manager holding ``logdir/.lock`` for this process."""

    def __init__(self, logdir, warn=None, read_only_ok=False, path=None, what="--logdir",
                 holder_name="trainer"):
        self.path = path or os.path.join(logdir, LOCK_FILE)
        self.read_only_ok = read_only_ok
        self.what, self.holder_name = what, holder_name
        self.warn = warn or (lambda msg: None)
        self.info = {"host": socket.gethostname(), "pid": os.getpid(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.held = False
        self.target = logdir

    def _read(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _stale_reason(self, holder):
        if holder is None:
            # unreadable: a holder killed while writing it, unless it is being written right now
            age = time.time() - os.path.getmtime(self.path)
            return "an unreadable lock file {:.0f} s old".format(age) if age > 5 else None
        if holder.get("host") == self.info["host"] and not pid_alive(int(holder.get("pid", -1))):
            return "process {} (started {}) no longer runs".format(holder.get("pid"), holder.get("started"))
        return None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                pass
            except OSError as err:
                if is_read_only(err):
                    return self._read_only(err)
                raise
            try:
                holder = self._read()
                reason = self._stale_reason(holder)
            except FileNotFoundError:
                continue  # released meanwhile
            if reason is None:
                if holder is None:
                    time.sleep(1)
                    continue
                raise LogdirInUse(
                    "{} {} is in use by another {} (PID {} on {}, started {}); wait for "
                    "it to finish or use another {} (if that one is gone, delete {})".format(
                        self.what, self.target, self.holder_name, holder.get("pid"), holder.get("host"),
                        holder.get("started"), self.what, self.path))
            self.warn("taking over the lock of {}: {}".format(self.target, reason))
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            continue
        else:
            raise LogdirInUse("could not take the lock {} (another {} keeps taking it)".format(
                self.path, self.holder_name))
        with os.fdopen(fd, "w") as f:
            json.dump(self.info, f)
        self.held = True
        return self

    def _read_only(self, err):
        """The lock cannot be written: fine for reading a run (a note), else one line."""
        folder = self.target
        if self.read_only_ok:
            self.warn("{} {} is read-only ({}): going on without its lock {} (nothing is written "
                      "there)".format(self.what, folder, err.strerror or err, self.path))
            return self
        raise UserError("cannot write to {} {} ({}: {}); use a writable folder".format(
            self.what, folder, self.path, err.strerror or err))

    def release(self):
        if self.held:
            holder = self._read()
            if holder and holder.get("pid") == self.info["pid"] and holder.get("host") == self.info["host"]:
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
