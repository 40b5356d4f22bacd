"""The one place where failures become what the user reads.

Library code raises exceptions; command-line entry points run through
:func:`run_cli`, which turns every user-caused failure into one line on
stderr (``error: ...``) and an exit status, and lets real bugs through as
tracebacks. ``--debug`` on the command line, or ``SPHERICAL_CNN_DEBUG=1`` in the
environment, shows the full traceback of every failure.

Exit statuses: 0 success, 1 some inputs failed (e.g. ``predict.py`` went on
past a bad mesh), 2 a user-caused error, 130 interrupted (Ctrl-C / SIGTERM).
"""
import contextlib
import errno
import os
import signal
import sys

DEBUG_ENV = "SPHERICAL_CNN_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A failure caused by flags, input data or the environment: reported as one line."""

    exit_code = EXIT_USER_ERROR


class DataError(UserError, ValueError):
    """A dataset file or record is malformed or does not match the flags.

    The message names the file and, where known, the record index.
    """

    def __init__(self, message, path=None, record=None):
        super().__init__(message)
        self.path = path
        self.record = record


class NonFiniteError(UserError):
    """Training produced a non-finite loss or gradient."""


class LogdirInUse(UserError):
    """Another trainer holds the lock of this ``--logdir``."""


class DiskFull(UserError):
    """Writing an output failed for lack of space; the message names the path."""


def is_disk_full(err):
    """True for an OSError or TensorFlow error caused by a full disk or quota."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(getattr(err, "message", "") or err).lower()
    return "no space left" in text or "disk quota exceeded" in text


def is_read_only(err):
    """True for an OSError or TensorFlow error caused by a read-only file system (or no
    write permission)."""
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    text = str(getattr(err, "message", "") or err).lower()
    return "read-only file system" in text


class WorkerLost(UserError):
    """A worker of a multi-worker run died or could not be reached; the message says what was kept."""


class Interrupted(UserError):
    """The user interrupted the run (Ctrl-C, SIGTERM); the message says what was kept."""

    exit_code = EXIT_INTERRUPTED


# Exceptions raised for bad flags or inputs by this project and the libraries it
# calls. ValueError is on the list because argument checks all over the code
# base (ours, NumPy's, Keras') raise it for bad user input.
USER_EXCEPTIONS = (UserError, ValueError, FileNotFoundError, FileExistsError,
                   NotADirectoryError, IsADirectoryError, PermissionError)


def first_line(err):
    """The first line of an exception's message (TensorFlow's ``message`` or ``str``), spaces
    collapsed; the exception's type name when the message is empty."""
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    return " ".join(text.strip().splitlines()[0].split()) if text.strip() else type(err).__name__


def debug_enabled(argv=None):
    """True if tracebacks were asked for (``--debug`` in ``argv`` or the environment variable)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def describe(err):
    """One line for a user-caused failure, or None if ``err`` is not one (a bug)."""
    if is_disk_full(err) and not isinstance(err, UserError):
        where = getattr(err, "filename", None) or "the output folder"
        return "no space left on the device writing {} (free some space and run again)".format(where)
    if is_read_only(err) and not isinstance(err, UserError) and isinstance(err, OSError) \
            and err.errno == errno.EROFS:
        where = err.filename or "the output folder"
        return "cannot write {}: read-only file system".format(where)
    if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG and not isinstance(err, UserError):
        return name_too_long(err.filename or err.filename2 or "a path")
    if isinstance(err, USER_EXCEPTIONS):
        text = str(err)
        if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
            text = "{}: {}".format(err.strerror or text, err.filename)
        return " ".join(text.split()) or type(err).__name__
    try:  # TensorFlow's errors for a full disk or unreadable data, without importing TF here
        import tensorflow as tf
    except ImportError:
        return None
    if isinstance(err, (tf.errors.DataLossError, tf.errors.NotFoundError,
                        tf.errors.PermissionDeniedError)) or (
            isinstance(err, tf.errors.OpError) and is_read_only(err)):
        return err.message.splitlines()[0]
    return None


def name_too_long(path):
    """One line for a path the file system refuses as too long (ENAMETOOLONG)."""
    path = os.fsdecode(path)
    longest = max((len(os.fsencode(p)) for p in path.split(os.sep)), default=0)
    return ("file name too long: {} (its longest component has {} bytes, the file system allows "
            "{}; the whole path {} bytes); use a shorter name".format(
                path, longest, _name_max(path), len(os.fsencode(path))))


def _name_max(path):
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return os.pathconf(folder or "/", "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


_INTERRUPT = {"requested": False, "deferred": False, "count": 0}


def _interrupt_handler(signum, frame):
    _INTERRUPT["requested"] = True
    _INTERRUPT["count"] += 1
    _INTERRUPT["signal"] = signum
    if _INTERRUPT["deferred"] and _INTERRUPT["count"] <= _INTERRUPT["deferred"]:
        return  # noted; raise_if_interrupted() raises at the next safe point
    raise KeyboardInterrupt


def interrupt_signal_name():
    """'SIGTERM' or 'SIGINT' for the last interrupt received (None if none)."""
    sig = _INTERRUPT.get("signal")
    return signal.Signals(sig).name if sig else None


def interrupt_count():
    """How many interrupts arrived since the command started."""
    return _INTERRUPT["count"]


def interrupted():
    """True if an interrupt arrived since the command started (see :func:`deferred_interrupts`)."""
    return _INTERRUPT["requested"]


@contextlib.contextmanager
def deferred_interrupts(raise_after=None):
    """Within this block SIGINT and SIGTERM do not raise where they land: they are noted,
    and :func:`raise_if_interrupted` (called at the block's safe points) raises
    KeyboardInterrupt there. This keeps an interrupt out of library code that must not be
    cut short (a lock held inside ``concurrent.futures``, a checkpoint half saved).

    ``raise_after``: the interrupt after that many noted ones raises at once (e.g. 1: a
    second Ctrl-C stops a long step without waiting); None: never. Outside
    :func:`run_cli` the block installs the handlers itself and restores them after.
    """
    previous = {}
    if signal.getsignal(signal.SIGINT) is not _interrupt_handler:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, _interrupt_handler)
            except ValueError:  # not the main thread: nothing to defer
                break
        _INTERRUPT.update(requested=False, count=0)
    saved = _INTERRUPT["deferred"]
    _INTERRUPT["deferred"] = float("inf") if raise_after is None else _INTERRUPT["count"] + raise_after
    try:
        yield
    finally:
        _INTERRUPT["deferred"] = saved
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupts_as_keyboard_interrupt():
    """SIGINT (Ctrl-C) and SIGTERM (``kill PID``) raise KeyboardInterrupt and are also
    remembered, so that :func:`raise_if_interrupted` can raise it again where a
    KeyboardInterrupt was swallowed (an exception raised inside a ``__del__`` or a
    callback from C++ is ignored by Python and the program would go on).

    Returns the previous handlers {signal: handler} (empty if they could not be set:
    not the main thread).
    """
    _INTERRUPT.update(requested=False, count=0, signal=None)
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, _interrupt_handler)
        except ValueError:
            break
    return previous


def raise_if_interrupted():
    """Raise KeyboardInterrupt if an interrupt arrived since the command started; long
    loops call this at their safe points (after each step)."""
    if _INTERRUPT["requested"]:
        raise KeyboardInterrupt


def run_cli(main, argv=None, prog=None):
    """Run ``main(argv)`` as a command-line program and return its exit status.

    ``main`` returns an exit status (None means 0). A user-caused failure
    prints ``PROG: error: MESSAGE`` and returns 2 (130 for an interruption);
    anything else is a bug and propagates with its traceback.
    """
    prog = prog or os.path.basename(sys.argv[0])
    debug = debug_enabled(argv)
    previous = interrupts_as_keyboard_interrupt()
    try:
        status = main(argv)
        return 0 if status is None else int(status)
    except KeyboardInterrupt:
        if debug:
            raise
        print("{}: interrupted".format(prog), file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except BaseException as err:  # noqa: B902 - filtered by describe()
        message = None if debug else describe(err)
        if message is None:
            raise
        print("{}: error: {}".format(prog, message), file=sys.stderr)
        return getattr(err, "exit_code", EXIT_USER_ERROR)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
