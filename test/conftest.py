"""Shared pytest setup: repository root on sys.path, quiet TensorFlow, fixed seeds."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Verified-record cache of this test session only (never the user's).
if "SPHERICAL_CNN_CACHE" not in os.environ:
    import tempfile
    os.environ["SPHERICAL_CNN_CACHE"] = tempfile.mkdtemp(prefix="spherical-cnn-cache-")
