#!/usr/bin/env python3
"""SHREC'17-style retrieval metrics of a trained run's descriptor (see spherical_cnn/retrieval.py).

    python3 scripts/retrieval.py --logdir logs/synthetic-triplet [--split test] [--out DIR]
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spherical_cnn import errors  # noqa: E402


def main(argv=None):
    from spherical_cnn.retrieval import main as retrieval_main
    return retrieval_main(argv)


if __name__ == "__main__":
    sys.exit(errors.run_cli(main))
