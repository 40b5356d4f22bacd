"""Sign-combination classes for S_exp: sign label <-> sign vector.

A target y on S^{d-1} is split into its absolute values |y| (regressed) and the
signs of its components (classified). Which signs are classified, in which class
order, and how a zero component counts is a *sign layout* (:class:`SignLayout`).

The default layouts (``fix_first=False`` / ``True`` of the functions below)::

  - all signs free: 2^d classes, one per sign combination;
  - first sign fixed (``fix_first=True``, quaternions: q and -q are the same
    rotation): the first component is made non-negative by flipping y -> -y when it
    is negative (a zero first component is *not* flipped), and only the last d-1
    signs are classified: 2^(d-1) classes.
  In both, a zero component counts as positive, and the label order is the
  original code's ``itertools.product((-1, 1), ...)`` order: the free components,
  read left to right, are the bits of the label, most significant first, with bit
  1 meaning "+". E.g. d=4, fix_first=True: label 0 = (+, -, -, -), 7 = (+, +, +, +).

The layouts of the original code's three tasks (Liao et al. 2019; see
``SignLayout.preset``)::

  'quaternion_original'  S^3, (w, x, y, z): flipped so that w >= 0, and w == 0 is
        flipped too (the code keeps q if w > 0, else takes -q); 8 classes over the
        signs of (x, y, z) in product order; sign(0) counts as +1.
  'normal_yzx'           S^2, a surface normal stored as (y, z, x); z <= 0 always
        (normals face the camera), so z is *not* classified (and no flip happens:
        a normal is not equivalent to its negative); decoding gives z = -|z|. 4
        classes over the signs of (y, x) in product order: 0 = (y-, x-),
        1 = (y-, x+), 2 = (y+, x-), 3 = (y+, x+); sign(0) counts as -1.
  'biternion'            S^1, (cos t, sin t): 4 classes in quadrant order
        0 = (+, +), 1 = (-, +), 2 = (-, -), 3 = (+, -); sign(0) counts as +1
        (so t = 0 -> 0, pi/2 -> 0, pi -> 1, -pi/2 -> 3).

NumPy functions take/return ``(..., d)`` arrays; the ``*_ops`` variants use
keras.ops, work inside models and losses, and keep the dtype of their input.
"""
from __future__ import annotations

import itertools
from typing import Union

from spherical_cnn._types import ArrayLike

# A sign layout: a :class:`SignLayout`, a preset name or its config dict (None: the default).
# Bound before Keras is imported: that import can register the package's Keras classes, which
# imports heads and losses, and they read this name from this module while it is half made.
SignLayoutLike = Union["SignLayout", str, dict, None]

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402


class SignLayout:
    """How the signs of a vector ``(..., dim)`` map to class labels and back.

    Args:
      dim: d, the vectors' length.
      fixed: index of the component whose sign is not classified (None: all
        signs are classified).
      fixed_sign: the sign (+1 or -1) that the fixed component has; decoding puts
        it there.
      antipodal: y and -y mean the same thing (quaternions): a vector whose fixed
        component has the other sign is flipped to -y before its label is taken.
        Without it the fixed component's sign is simply assumed (normals).
      flip_zero: with ``antipodal``, a fixed component equal to 0 also flips the
        vector (the original code's ``q if q[0] > 0 else -q``).
      zero_sign: how a zero free component counts, +1 or -1.
      order: 'product' (``itertools.product((-1, 1), ...)`` over the free
        components, first one most significant) or 'quadrant' (exactly two free
        components: (+,+), (-,+), (-,-), (+,-), counter-clockwise from the first
        quadrant).
    """

    ORDERS = ("product", "quadrant")

    def __init__(self, dim: int, fixed: int | None = None, fixed_sign: int = 1,
                 antipodal: bool = False, flip_zero: bool = False, zero_sign: int = 1,
                 order: str = "product") -> None:
        _check_dim(dim)
        self.dim = int(dim)
        if fixed is not None and not (isinstance(fixed, (int, np.integer)) and 0 <= fixed < dim):
            raise ValueError(f"SignLayout: fixed must be None or a component index in "
                             f"[0, {dim}), got {fixed!r}")
        if fixed_sign not in (1, -1) or zero_sign not in (1, -1):
            raise ValueError(f"SignLayout: fixed_sign and zero_sign must be +1 or -1, got "
                             f"{fixed_sign!r}, {zero_sign!r}")
        if order not in self.ORDERS:
            raise ValueError(f"SignLayout: order must be one of {self.ORDERS}, got {order!r}")
        self.fixed = None if fixed is None else int(fixed)
        self.fixed_sign = int(fixed_sign)
        self.antipodal = bool(antipodal) and self.fixed is not None
        self.flip_zero = bool(flip_zero) and self.antipodal
        self.zero_sign = int(zero_sign)
        self.order = order
        self.free = [i for i in range(self.dim) if i != self.fixed]
        if order == "quadrant" and len(self.free) != 2:
            raise ValueError(f"SignLayout: order 'quadrant' needs exactly 2 classified "
                             f"components, this layout has {len(self.free)}")
        self.num_classes = 2 ** len(self.free)
        self.table = self._table()
        # label of each sign pattern of the free components, pattern read as product bits
        bits = (self.table[:, self.free] > 0).astype(np.int64)
        codes = bits @ (2 ** np.arange(len(self.free) - 1, -1, -1, dtype=np.int64))
        self._code_to_label = np.empty(self.num_classes, np.int64)
        self._code_to_label[codes] = np.arange(self.num_classes)

    PRESETS = {
        "all": dict(),
        "first_fixed": dict(fixed=0, antipodal=True),
        "quaternion": dict(fixed=0, antipodal=True),
        "quaternion_original": dict(fixed=0, antipodal=True, flip_zero=True),
        "normal_yzx": dict(fixed=1, fixed_sign=-1, zero_sign=-1),
        "biternion": dict(order="quadrant"),
    }
    _PRESET_DIMS = {"quaternion": 4, "quaternion_original": 4, "normal_yzx": 3, "biternion": 2}

    @classmethod
    def preset(cls, name, dim=None):
        """A named layout: 'all' (2^dim classes), 'first_fixed' / 'quaternion' (the
        default fix_first=True), 'quaternion_original', 'normal_yzx', 'biternion'
        (module docstring). ``dim`` is needed for 'all' and 'first_fixed' only."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown sign layout {name!r}: expected one of "
                             f"{sorted(cls.PRESETS)}")
        want = cls._PRESET_DIMS.get(name)
        if want is not None and dim is not None and dim != want:
            raise ValueError(f"sign layout {name!r} is for dim={want}, got dim={dim}")
        dim = want if want is not None else dim
        if dim is None:
            raise ValueError(f"sign layout {name!r} needs dim")
        layout = cls(dim, **cls.PRESETS[name])
        return layout

    @classmethod
    def default(cls, dim, fix_first=False):
        """The layout of the ``fix_first`` functions (module docstring)."""
        return cls(dim, fixed=0, antipodal=True) if fix_first else cls(dim)

    @classmethod
    def coerce(cls, layout, dim=None, fix_first=False):
        """A SignLayout from a SignLayout, a preset name, a config dict, or None (the
        ``fix_first`` default layout for ``dim``)."""
        if layout is None:
            if dim is None:
                raise ValueError("a sign layout needs dim")
            layout = cls.default(dim, fix_first)
        elif isinstance(layout, str):
            layout = cls.preset(layout, dim)
        elif isinstance(layout, dict):
            layout = cls(**layout)
        elif not isinstance(layout, SignLayout):
            raise ValueError(f"sign layout must be a SignLayout, a preset name or a dict, "
                             f"got {type(layout).__name__}")
        if dim is not None and layout.dim != dim:
            raise ValueError(f"sign layout is for dim={layout.dim}, the vectors have dim={dim}")
        return layout

    def get_config(self):
        return dict(dim=self.dim, fixed=self.fixed, fixed_sign=self.fixed_sign,
                    antipodal=self.antipodal, flip_zero=self.flip_zero,
                    zero_sign=self.zero_sign, order=self.order)

    def __eq__(self, other):
        return isinstance(other, SignLayout) and self.get_config() == other.get_config()

    def __repr__(self):
        return "SignLayout({})".format(", ".join(f"{k}={v!r}" for k, v in self.get_config().items()))

    def _table(self):
        n_free = len(self.free)
        if self.order == "quadrant":
            free_rows = [(1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)]
        else:
            free_rows = list(itertools.product((-1.0, 1.0), repeat=n_free))
        table = np.empty((len(free_rows), self.dim), np.float32)
        for k, row in enumerate(free_rows):
            table[k, self.free] = row
            if self.fixed is not None:
                table[k, self.fixed] = self.fixed_sign
        return table

    # ------------------------------------------------------------ NumPy

    def canonicalize(self, y):
        """y, or -y where the layout is antipodal and the fixed component has the other
        sign (or is zero, with ``flip_zero``); ``(..., d)``, same dtype."""
        y = np.asarray(y)
        if not self.antipodal:
            return y
        f = y[..., self.fixed:self.fixed + 1] * self.fixed_sign
        flip = (f <= 0) if self.flip_zero else (f < 0)
        return np.where(flip, -y, y).astype(y.dtype, copy=False)

    def labels(self, y):
        """Sign class labels of vectors ``(..., d)`` -> int64 ``(...)``."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim < 1 or y.shape[-1] != self.dim:
            raise ValueError(f"sign labels: expected an array (..., {self.dim}), got shape "
                             f"{y.shape}")
        free = self.canonicalize(y)[..., self.free]
        positive = (free > 0) | ((free == 0) & (self.zero_sign > 0))
        weights = 2 ** np.arange(len(self.free) - 1, -1, -1, dtype=np.int64)
        return self._code_to_label[positive.astype(np.int64) @ weights]

    def signs(self, labels):
        """Sign vectors ``(..., d)`` float32 of labels ``(...)``."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"sign labels must lie in [0, {self.num_classes}) for {self!r}; "
                             f"got range [{labels.min()}, {labels.max()}]")
        return self.table[labels]

    # ------------------------------------------------------------ keras.ops

    def labels_ops(self, y):
        """keras.ops :meth:`labels`: ``(..., d)`` -> int32 ``(...)``, any float dtype."""
        if y.shape[-1] != self.dim:
            raise ValueError(f"sign labels: expected (..., {self.dim}) vectors, got shape "
                             f"{tuple(y.shape)}")
        if self.antipodal:
            f = y[..., self.fixed:self.fixed + 1] * ops.cast(self.fixed_sign, y.dtype)
            flip = (f <= 0) if self.flip_zero else (f < 0)
            y = ops.where(flip, -y, y)
        free = ops.take(y, np.asarray(self.free, np.int32), axis=-1)
        positive = (free > 0) if self.zero_sign < 0 else (free >= 0)
        weights = ops.convert_to_tensor(
            2 ** np.arange(len(self.free) - 1, -1, -1), dtype="int32")
        codes = ops.sum(ops.cast(positive, "int32") * weights, axis=-1)
        return ops.take(ops.convert_to_tensor(self._code_to_label.astype(np.int32)), codes,
                        axis=0)

    def signs_ops(self, labels, dtype=None):
        """keras.ops :meth:`signs`: int ``(...)`` -> ``(..., d)`` of ``dtype`` (default floatx)."""
        table = ops.convert_to_tensor(self.table, dtype=dtype or keras.backend.floatx())
        return ops.take(table, ops.cast(labels, "int32"), axis=0)


# ---------------------------------------------------------------- default-layout functions

def num_sign_classes(dim: int, fix_first: bool = False) -> int:
    """Number of sign classes: 2^dim, or 2^(dim-1) with the first sign fixed."""
    _check_dim(dim)
    return 2 ** (dim - 1 if fix_first else dim)


def sign_table(dim: int, fix_first: bool = False, layout: SignLayoutLike = None) -> np.ndarray:
    """All sign vectors, ``(num_classes, dim)`` float32 of +-1; row k is label k."""
    return SignLayout.coerce(layout, dim, fix_first).table.copy()


def canonicalize(y):
    """Flip rows of ``(..., d)`` so that the first component is >= 0 (q ~ -q; a zero
    first component is not flipped)."""
    y = np.asarray(y)
    s = np.where(y[..., :1] < 0, -1.0, 1.0).astype(y.dtype)
    return y * s


def sign_labels(y: ArrayLike, fix_first: bool = False,
                layout: SignLayoutLike = None) -> np.ndarray:
    """Sign class labels of vectors ``(..., d)`` -> int64 ``(...)`` (``layout``, if given,
    replaces the ``fix_first`` default layout)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim < 1:
        raise ValueError(f"sign_labels: expected an array (..., d), got shape {y.shape}")
    return SignLayout.coerce(layout, y.shape[-1], fix_first).labels(y)


def label_signs(labels: ArrayLike, dim: int, fix_first: bool = False,
                layout: SignLayoutLike = None) -> np.ndarray:
    """Sign vectors ``(..., dim)`` of labels ``(...)``."""
    return SignLayout.coerce(layout, dim, fix_first).signs(labels)


def fix_first_from_num_classes(dim, num_classes):
    """Infer ``fix_first`` from the number of sign logits (2^dim or 2^(dim-1))."""
    if num_classes == 2 ** dim:
        return False
    if num_classes == 2 ** (dim - 1):
        return True
    raise ValueError(f"{num_classes} sign logits do not fit dim={dim}: expected "
                     f"{2 ** dim} (all signs) or {2 ** (dim - 1)} (first sign fixed)")


def layout_for_output(dim, num_classes, layout=None):
    """The layout of an S_exp output with ``num_classes`` sign logits: ``layout`` if
    given (checked against the width), else the default layout that fits it."""
    if layout is None:
        return SignLayout.default(dim, fix_first_from_num_classes(dim, num_classes))
    layout = SignLayout.coerce(layout, dim)
    if num_classes != layout.num_classes:
        raise ValueError(f"{num_classes} sign logits do not fit {layout!r}, which has "
                         f"{layout.num_classes} classes")
    return layout


# ---------------------------------------------------------------- keras.ops forms

def sign_labels_ops(y, fix_first=False, layout=None):
    """keras.ops version of :func:`sign_labels`: ``(batch, d)`` -> int32 ``(batch,)``."""
    return SignLayout.coerce(layout, y.shape[-1], fix_first).labels_ops(y)


def label_signs_ops(labels, dim, fix_first=False, layout=None, dtype=None):
    """keras.ops version of :func:`label_signs`: int ``(batch,)`` -> ``(batch, dim)`` of
    ``dtype`` (default floatx)."""
    return SignLayout.coerce(layout, dim, fix_first).signs_ops(labels, dtype)


def _check_dim(dim):
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dimension of the target vectors must be a positive int, got {dim!r}")
