"""What every command shares: help layout, ``--verbose``/``--debug``, quiet TensorFlow.

TensorFlow prints a dozen lines nobody asked for on a CPU-only machine: absl's
"All log messages before absl::InitializeLog()" banner, the oneDNN and CPU
feature notices, "Could not find cuda drivers" and an error-level "failed call
to cuInit". Some are written by C++ code while ``tensorflow`` is being
imported, before its log level is read, so ``TF_CPP_MIN_LOG_LEVEL`` alone does
not remove them. :func:`quiet_tensorflow` therefore

- sets ``TF_CPP_MIN_LOG_LEVEL=3`` in ``os.environ`` (inherited by worker
  processes started later) for the messages logged after the import, and
- imports TensorFlow with file descriptor 2 redirected to a temporary file,
  then writes back to stderr every captured line that is not one of
  TensorFlow's C++ log lines (so nothing else is lost).

Only logging is changed: ``TF_ENABLE_ONEDNN_OPTS`` (which changes numerics) is
left alone. ``--verbose`` skips all of it.
"""
import argparse
import os
import re
import sys
import tempfile
import textwrap

ARGFILE_HELP = (
    "Arguments can also be read from files: @FILE on the command line is replaced by the "
    "lines of FILE, one token per line (e.g. '--n_epochs' and '32' on two lines); several "
    "@FILE arguments and further flags can be combined, later ones win.")

# A line of TensorFlow's / absl's C++ logging: "I0000 00:00:1795317743.979466 4704 port.cc:153] ...".
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
TF_NOISE = (
    TF_LOG_LINE,
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
)


def expand_argfiles(tokens, prefix_chars="@", _chain=()):
    """``tokens`` with every ``@FILE`` replaced by the lines of FILE (one token per line),
    recursively, as argparse does, but a file that includes itself (directly or through
    others), an unreadable file or one that is not text is one :class:`UserError` naming it."""
    from ..errors import UserError
    out = []
    for token in tokens:
        if not token or token[0] not in prefix_chars:
            out.append(token)
            continue
        path = token[1:]
        real = os.path.realpath(path)
        if real in _chain:
            names = [p for p in _chain[_chain.index(real):]] + [real]
            raise UserError("@file {} includes itself ({}); remove the @ line that closes the cycle"
                            .format(path, " -> ".join(names)))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise UserError("cannot read @file {}: {}".format(path, err.strerror or err)) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            text = None
            where = err.start
        else:
            where = text.find("\0")
        if text is None or where >= 0:
            raise UserError("@file {} is not a text file (binary data at byte {}); an @file holds "
                            "flags, one token per line".format(path, where))
        out.extend(expand_argfiles(text.splitlines(), prefix_chars, _chain + (real,)))
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose ``@file`` expansion detects cycles and names bad files
    (:func:`expand_argfiles`) instead of a RecursionError or UnicodeDecodeError."""

    def _read_args_from_files(self, arg_strings):
        return expand_argfiles(arg_strings, self.fromfile_prefix_chars)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends each flag's default.

    Switches (default False) and flags without a default show none.
    """

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def epilog(*paragraphs):
    """Paragraphs wrapped for the end of ``--help`` (the description keeps its own layout)."""
    return "\n\n".join(textwrap.fill(p, 79) for p in paragraphs)


def add_output_flags(parser):
    """``--verbose`` (TensorFlow's own log lines) and ``--debug`` (full tracebacks)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's log lines (CUDA, oneDNN, absl), hidden by default")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: SPHERICAL_CNN_DEBUG=1)")
    return parser


def is_tensorflow_noise(line):
    """True for a line of TensorFlow's C++ logging (or absl's banner)."""
    return any(p.search(line) for p in TF_NOISE)


def quiet_tensorflow(verbose=False):
    """Silence TensorFlow in this process and in the processes it starts (see module doc).

    Call after parsing the arguments and before anything imports TensorFlow.
    """
    if verbose:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" not in sys.modules:
        _import_filtered("tensorflow")
    import logging
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def _import_filtered(name):
    """Import module ``name`` with stderr (fd 2) captured; re-emit what is not TF noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            __import__(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_tensorflow_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
