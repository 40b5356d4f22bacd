#!/usr/bin/env python3
"""Render meshes (or the synthetic shapes) to a TFRecord dataset; see spherical_cnn/cli/make_dataset.py (`--help`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.make_dataset import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
