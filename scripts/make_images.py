#!/usr/bin/env python3
"""Project an MNIST-format image set onto the sphere (TFRecords); see spherical_cnn/cli/make_images.py (`--help`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn.cli.make_images import main  # noqa: E402
from spherical_cnn.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main))
