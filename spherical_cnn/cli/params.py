"""``spherical-cnn-params``: where the installed params files are.

    spherical-cnn-train @$(spherical-cnn-params model-32) @$(spherical-cnn-params synthetic-32) \\
        @$(spherical-cnn-params training-cpu) --logdir logs/synthetic
"""
import argparse

from . import common


def main(argv=None):
    """Print the path of each named params file, or the list of names."""
    from .. import params
    p = argparse.ArgumentParser(prog="spherical-cnn-params", description=__doc__,
                                formatter_class=common.HelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="params file name, e.g. model-64 (.txt optional)")
    p.add_argument("--list", action="store_true", help="list the names with their paths")
    a = p.parse_args(argv)
    if a.list or not a.names:
        for name in params.bundled_names():
            print("{:14s} {}".format(name, params.bundled_path(name)))
        return 0
    for name in a.names:
        print(params.bundled_path(name))
    return 0
