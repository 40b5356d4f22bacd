#!/usr/bin/env python3
"""Sweet Home 3D furniture -> ModelNet-style mesh tree; see spherical_cnn/cli/import_furniture.py (`--help`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.import_furniture import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
