#!/usr/bin/env python3
"""Combine finished training runs into one model averaging their probabilities; see spherical_cnn/cli/ensemble.py.

    python3 scripts/ensemble.py logs/run-s0 logs/run-s1 --out logs/run-ens
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.ensemble import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
