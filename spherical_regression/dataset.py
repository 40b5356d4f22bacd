"""Moved: the rendered S^3 (ModelNet10-SO3-like) dataset lives in
:mod:`spherical_regression.tasks.rotation_data`.

This name is kept so that ``from spherical_regression import dataset`` keeps
working; it is the same module object (private names included).
"""
import sys

from .tasks import rotation_data as _rotation_data

sys.modules[__name__] = _rotation_data
