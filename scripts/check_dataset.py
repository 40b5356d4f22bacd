#!/usr/bin/env python3
"""Verify a TFRecord dataset folder and print a per-split summary; see spherical_cnn/cli/check_dataset.py.

    python3 scripts/check_dataset.py data/synthetic-32
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.check_dataset import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
