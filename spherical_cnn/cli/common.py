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
import os
import re
import sys
import tempfile

from .._arguments import (  # noqa: F401 (re-exported)
    ARGFILE_HELP, ArgumentParser, HelpFormatter, epilog, expand_argfiles)

# A line of TensorFlow's / absl's C++ logging: "I0000 00:00:1795317743.979466 4704 port.cc:153] ...".
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
TF_NOISE = (
    TF_LOG_LINE,
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
)


def command_parser(description):
    """The parser of a command: @file arguments, the project's help layout and epilog."""
    return ArgumentParser(description=description, formatter_class=HelpFormatter,
                          fromfile_prefix_chars="@", epilog=epilog(ARGFILE_HELP))


def output_folder_parser(description, source, source_help, out_help):
    """The parser of a command that writes one output folder from an optional source
    (make_dataset, make_images, import_furniture): the positional ``source`` (optional) and
    ``--out`` (required), in that order. The command adds its own flags, then
    :func:`add_overwrite_flag` and :func:`add_output_flags`."""
    p = command_parser(description)
    p.add_argument(source, nargs="?", default=None, help=source_help)
    p.add_argument("--out", required=True, help=out_help)
    return p


def add_overwrite_flag(parser, what):
    """``--overwrite``: replace ``what`` (e.g. ``'the dataset'``) in a non-empty ``--out``."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace {} in a non-empty --out".format(what))
    return parser


def command_line(prog, argv):
    """The command as typed (``sys.argv``), or ``prog`` and ``argv`` when ``main(argv)`` was
    called with arguments: what a manifest records as ``command``."""
    return " ".join(sys.argv if argv is None else [prog] + list(argv))


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
