#!/usr/bin/env python3
"""Spherical regression tasks (viewpoint S^1, normals S^2, rotation S^3); see spherical_cnn/cli/regression.py (`--help`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.regression import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
