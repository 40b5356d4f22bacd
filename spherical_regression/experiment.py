"""Moved: the S^3 rotation task lives in :mod:`spherical_regression.tasks.rotation_model` (the task: ``tasks.rotation``).

This name is kept so that ``from spherical_regression import experiment`` keeps
working; it is the same module object (private names included).
"""
import sys

from .tasks import rotation_model as _rotation

sys.modules[__name__] = _rotation
