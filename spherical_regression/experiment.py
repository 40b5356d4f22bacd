"""Moved: the S^3 rotation task lives in :mod:`spherical_regression.tasks.rotation`.

This name is kept so that ``from spherical_regression import experiment`` keeps
working; it is the same module object (private names included).
"""
import sys

from .tasks import rotation as _rotation

sys.modules[__name__] = _rotation
