"""One way to write an output folder atomically: datasets, mesh trees, pretrained models.

Every command that writes a folder ``OUT`` (``make_dataset --out``, ``import_furniture
--out``, ``make_images --out``, the synthetic set built by ``train --dset_dir``,
``tools/ship_pretrained.py``) goes through :class:`AtomicFolder`, which

1. checks the destination at once: ``OUT`` must not be a file, and a non-empty ``OUT``
   is replaced only with ``overwrite``;
2. holds the lock ``.<name>.lock`` beside ``OUT`` (one writer per ``OUT``; same format
   and stale-lock rules as the logdir lock, :mod:`spherical_cnn.runlock`);
3. finishes what a writer that died left beside ``OUT`` (see below);
4. notes whether ``OUT`` held something (what ``overwrite`` may replace);
5. has everything written into the staging folder ``.<name>.partial-<host>-<pid>``
   beside ``OUT`` (never mistaken for a dataset);
6. replaces ``OUT`` by the staging folder only when it is complete. On Linux both are
   exchanged in one step (``renameat2`` with ``RENAME_EXCHANGE``), so ``OUT`` never
   disappears; elsewhere ``OUT`` is first renamed to ``.<name>.old-<host>-<pid>``, then
   the staging folder to ``OUT``.

An error or interruption before step 6 leaves ``OUT`` as it was and removes the staging
folder; a full disk is one line naming ``OUT`` and the staging folder. A dataset that
appeared in ``OUT`` while the writer ran (another host, no lock) is never replaced
without ``overwrite``.

Recovery (step 3), for writers on this host whose process no longer runs: a staging
folder is removed (an unfinished output, or after an exchange the replaced one); an
``.old`` folder is put back as ``OUT`` when ``OUT`` is missing (the writer died between
the two renames of step 6: the old output is kept, never deleted), and removed when
``OUT`` is there (the replacement was complete).

Hidden names longer than the file system allows (255 bytes) use the start of ``OUT``'s
name and a hash of all of it, so any legal ``OUT`` name works.
"""
import ctypes
import errno
import hashlib
import os
import shutil
import socket
import sys

from ..errors import DiskFull, is_disk_full
from ..runlock import LogdirLock, pid_alive

NAME_MAX = 255  # bytes in one file name (Linux, macOS)
KINDS = ('partial', 'old')


def _warn(message):
    print(message, file=sys.stderr)


def _host():
    return socket.gethostname()[:64]


# the longest suffix of a hidden name: 'partial-' + host (64) + '-' + PID (10 digits)
_SUFFIX_ROOM = len('partial-') + 64 + 1 + 10


def hidden_name(base, suffix):
    """``.<stem>.<suffix>``: ``stem`` is ``base``, or, where a name with the longest suffix
    would pass :data:`NAME_MAX` bytes, the start of ``base`` and a hash of all of it (the
    same stem for every suffix, so that leftovers are found by their prefix)."""
    raw = os.fsencode(base)
    stem = base
    if 1 + len(raw) + 1 + _SUFFIX_ROOM > NAME_MAX:
        digest = hashlib.sha1(raw).hexdigest()[:12]
        room = NAME_MAX - 2 - _SUFFIX_ROOM - 1 - len(digest)
        stem = '{}~{}'.format(raw[:room].decode('utf-8', 'ignore'), digest)
    return '.{}.{}'.format(stem, suffix)


def check_destination(out_dir, overwrite, what='--out'):
    """FileExistsError if ``out_dir`` is a file, or a non-empty folder without ``overwrite``."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError('{} {} exists and is not a folder'.format(what, out_dir))
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError('{} {} exists and is not empty; pass --overwrite to replace it'
                              .format(what, out_dir))


def exchange(a, b):
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2``,
    ``RENAME_EXCHANGE``). Returns False where the system or file system cannot."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), a, None, b)


class AtomicFolder:
    """Write the folder ``out_dir`` atomically (module docstring); a context manager.

    The destination is checked when the object is made, so a command fails before any
    long work; ``with`` takes the lock, recovers what dead writers left and makes the
    staging folder (:attr:`stage`); leaving the block without an error puts the output
    in place, with an error removes the staging folder and leaves ``out_dir`` as it was.

    Args:
      out_dir: the folder to write.
      overwrite: replace a non-empty ``out_dir``.
      what: how messages name the folder (the flag that gave it, e.g. ``--dset_dir``).
      holder: what messages call the writer (``dataset build``).
      noun: what messages call the output (``dataset``).
      warn: callable for one-line notes (default: stderr).
      exchange: use the atomic exchange where possible (False: always the two renames).
    """

    def __init__(self, out_dir, overwrite=False, what='--out', holder='dataset build', warn=None,
                 exchange=True, noun='dataset'):
        self.out = os.path.abspath(out_dir)
        self.given = out_dir
        self.overwrite, self.what, self.holder, self.noun = overwrite, what, holder, noun
        self.warn = warn or _warn
        self.use_exchange = exchange
        self.parent, self.base = os.path.split(self.out)
        self.stage = None
        self.existed = False
        self._lock = None
        check_destination(out_dir, overwrite, what)

    def _hidden(self, kind, pid=None):
        return os.path.join(self.parent, hidden_name(self.base, '{}-{}-{}'.format(
            kind, _host(), os.getpid() if pid is None else pid)))

    def __enter__(self):
        os.makedirs(self.parent, exist_ok=True)
        self._lock = LogdirLock(self.given, path=os.path.join(self.parent, hidden_name(self.base, 'lock')),
                                what=self.what, holder_name=self.holder, warn=self.warn)
        self._lock.acquire()
        try:
            self.recover()
            check_destination(self.out, self.overwrite, self.what)
            self.existed = os.path.isdir(self.out) and bool(os.listdir(self.out))
            self.stage = self._hidden('partial')
            shutil.rmtree(self.stage, ignore_errors=True)
            os.makedirs(self.stage)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self._commit()
                except BaseException as err:
                    self._discard()
                    self._raise_disk_full(err)
                    raise
                return False
            self._discard()
            self._raise_disk_full(exc)
            return False
        finally:
            self._lock.release()

    def _discard(self):
        if self.stage:
            shutil.rmtree(self.stage, ignore_errors=True)

    def _raise_disk_full(self, err):
        if is_disk_full(err) and not isinstance(err, DiskFull):
            raise DiskFull('no space left on the device writing the {} {} (in its staging folder {}, '
                           'now removed; {} is unchanged)'.format(self.noun, self.out, self.stage, self.out)) from err

    def _commit(self):
        """Put the complete staging folder in place of ``out`` (see the module docstring)."""
        out, stage = self.out, self.stage
        full = os.path.isdir(out) and bool(os.listdir(out))
        if full and not self.overwrite and not self.existed:
            raise FileExistsError('{} {} was filled by someone else while this {} ran; not '
                                  'replacing it without --overwrite (this output is discarded)'
                                  .format(self.what, out, self.holder))
        if not os.path.lexists(out) or (os.path.isdir(out) and not full):
            os.replace(stage, out)  # onto nothing or an empty folder: one atomic rename
        elif self.use_exchange and exchange(stage, out):
            shutil.rmtree(stage, ignore_errors=True)  # now the replaced output
        else:
            old = self._hidden('old')
            os.replace(out, old)
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        self.stage = None

    def recover(self):
        """Finish or undo what writers of ``out`` on this host left when they died; returns
        the notes it printed."""
        notes = []
        if not os.path.isdir(self.parent):
            return notes
        for kind in KINDS:
            marker = hidden_name(self.base, '{}-{}-'.format(kind, _host()))
            for fn in sorted(os.listdir(self.parent)):
                if not fn.startswith(marker) or not fn[len(marker):].isdigit():
                    continue
                pid = int(fn[len(marker):])
                if pid == os.getpid() or pid_alive(pid):
                    continue
                path = os.path.join(self.parent, fn)
                if kind == 'old' and not os.path.lexists(self.out):
                    os.replace(path, self.out)
                    notes.append('restored {} from {}, left by an interrupted --overwrite (the '
                                 'output it was replacing is kept)'.format(self.out, path))
                else:
                    shutil.rmtree(path, ignore_errors=True)
                    notes.append('removing {} left by an interrupted build'.format(path))
        for note in notes:
            self.warn(note)
        return notes
