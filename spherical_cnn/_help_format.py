"""How the commands' ``--help`` looks: argument files, defaults, the epilog (stdlib only).

Used by the training flags (:mod:`spherical_cnn.params`, a core module) and by
every command of :mod:`spherical_cnn.cli` (which re-exports these names), so
that no core module imports the command-line package.
"""
import argparse
import textwrap

ARGFILE_HELP = (
    "Arguments can also be read from files: @FILE on the command line is replaced by the "
    "lines of FILE, one token per line (e.g. '--n_epochs' and '32' on two lines); several "
    "@FILE arguments and further flags can be combined, later ones win.")


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
