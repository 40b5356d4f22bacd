"""The commands' argument parsing: ``@file`` expansion and how ``--help`` looks (stdlib only).

Used by the training flags (:mod:`spherical_cnn.params`, a core module) and by
every command of :mod:`spherical_cnn.cli` (which re-exports these names), so
that no core module imports the command-line package.
"""
import argparse
import os
import re
import textwrap

ARGFILE_HELP = (
    "Arguments can also be read from files: @FILE on the command line is replaced by the "
    "lines of FILE, one token per line (e.g. '--n_epochs' and '32' on two lines); several "
    "@FILE arguments and further flags can be combined, later ones win.")


def expand_argfiles(tokens, prefix_chars="@", _chain=()):
    """``tokens`` with every ``@FILE`` replaced by the lines of FILE (one token per line),
    recursively, as argparse does, but a file that includes itself (directly or through
    others), an unreadable file or one that is not text is one :class:`UserError` naming it.
    Blank lines are skipped and each line is stripped of surrounding white space (a blank
    line used to become an empty argument, "unrecognized arguments: ")."""
    return expand_argfiles_traced(tokens, prefix_chars, _chain)[0]


def expand_argfiles_traced(tokens, prefix_chars="@", _chain=()):
    """:func:`expand_argfiles`, also returning where each token came from: a list of
    ``(@file, line number)`` or None (the command line), aligned with the tokens."""
    from .errors import UserError
    out, origins = [], []
    for token in tokens:
        if not token or token[0] not in prefix_chars:
            out.append(token)
            origins.append(None)
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
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            sub, sub_origins = expand_argfiles_traced([line], prefix_chars, _chain + (real,))
            out.extend(sub)
            origins.extend(o if o is not None else (path, lineno) for o in sub_origins)
    return out, origins


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose ``@file`` expansion detects cycles and names bad files
    (:func:`expand_argfiles`) instead of a RecursionError or UnicodeDecodeError, and whose
    errors are one line, naming the @file and line a bad argument came from (argparse
    printed its whole usage first: 23 lines for the trainer)."""

    _origins = ()
    _tokens = ()

    def _read_args_from_files(self, arg_strings):
        self._tokens, self._origins = expand_argfiles_traced(arg_strings, self.fromfile_prefix_chars)
        return self._tokens

    def _origin(self, message):
        """' (from @file F, line N)' for the argument ``message`` is about, or ''."""
        wanted = []
        if message.startswith("unrecognized arguments: "):
            wanted = message[len("unrecognized arguments: "):].split()
        elif message.startswith("argument "):
            value = re.search(r"(?:value|choice): '(.*)'", message)  # the bad value's line first
            wanted = ([value.group(1)] if value else []) + message[len("argument "):].split(":")[0].split("/")
        for name in wanted:
            hits = [o for t, o in zip(self._tokens, self._origins)
                    if o is not None and (t == name or t.startswith(name + "="))]
            if hits:
                return " (from @file {}, line {})".format(*hits[-1])
        return ""

    def error(self, message):
        self.exit(2, "{}: error: {}{} (see {} --help)\n".format(
            self.prog, message, self._origin(message), self.prog))


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
