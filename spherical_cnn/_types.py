"""Type aliases of the public signatures of both packages (no imports beyond NumPy).

``Tensor``: what ``keras.ops`` accepts and returns on the active backend
(``tf.Tensor``, ``jax.Array``, a NumPy array, a symbolic ``keras.KerasTensor``);
Keras has no common static type for them, so it is ``Any`` to a type checker.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from spherical_regression.signs import SignLayout

Tensor = Any
# A sign layout: a ``spherical_regression.signs.SignLayout``, a preset name or its config dict.
SignLayoutLike = Union["SignLayout", str, dict, None]

__all__ = ["Tensor", "ArrayLike", "SignLayoutLike"]
