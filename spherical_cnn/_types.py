"""Type aliases of the public signatures of both packages (no imports beyond NumPy).
``spherical_regression``'s own alias, ``SignLayoutLike``, lives beside ``SignLayout`` in
``spherical_regression/signs.py`` (so that the core imports nothing of that package).

``Tensor``: what ``keras.ops`` accepts and returns on the active backend
(``tf.Tensor``, ``jax.Array``, a NumPy array, a symbolic ``keras.KerasTensor``);
Keras has no common static type for them, so it is ``Any`` to a type checker.
"""
from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike

Tensor = Any

__all__ = ["Tensor", "ArrayLike"]
