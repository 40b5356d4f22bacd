"""The S^3 rotation task: ``spherical-regression-train`` = ``spherical-regression rotation``.

Kept as its own command (and scripts/train_regression.py) because it came first;
see spherical_cnn/cli/regression.py and ``--help`` for the flags.
"""
from . import common, regression


def parse_args(argv=None):
    return regression.parse_args(argv, task="rotation")


def run(args):
    return regression.run(args)


def main(argv=None):
    args = parse_args(argv)
    common.quiet_tensorflow(args.verbose)
    run(args)
    return 0
