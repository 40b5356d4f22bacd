#!/usr/bin/env python3
"""Train and test a spherical CNN (the demo's command line); see spherical_cnn/cli/train.py.

    python3 scripts/train.py @params/model-64.txt @params/m40-64.txt @params/training.txt \
        --dset_dir ~/data/m40-so3-64 --logdir /tmp/m40-so3 --run_id m40-so3
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.train import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
