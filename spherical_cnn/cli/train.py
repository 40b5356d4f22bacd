"""``spherical-cnn-train`` / ``scripts/train.py``: train and test a spherical CNN.

    spherical-cnn-train @params/model-64.txt @params/m40-64.txt @params/training.txt \\
        --dset_dir ~/data/m40-so3-64 --logdir /tmp/m40-so3 --run_id m40-so3

The flags are the original demo's (:mod:`spherical_cnn.params`).
"""
from . import common


def main(argv=None):
    """Parse the flags (no TensorFlow yet), then train, test and print the table."""
    from .. import params
    args = params.parse(argv)
    common.quiet_tensorflow(args.verbose)
    from .. import training
    training.run(argv)
    return 0
