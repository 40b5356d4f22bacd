"""Spherical harmonic transforms in ``keras.ops`` (TensorFlow and JAX backends).

Real arithmetic only: complex coefficients travel as (real, imaginary) pairs.
Maps are ``(batch, azimuth, polar, channels)`` on the DH grid of size n; the
coefficients are ``(batch, S, L, L, channels)`` in the shtools layout (index 0:
m >= 0 at [0, l, m]; index 1: m < 0 at [1, l, |m|]), with the scale of the NumPy
reference ``spherical.sph_harm_transform_batch``.  ``real=True`` keeps only
m >= 0 (S = 1; the inverse uses c_{-m} = (-1)^m conj(c_m)); ``real=False``
computes the full layout (S = 2) and the inverse returns the real part.

Methods: 'naive' multiplies by the dense harmonics (one (n*n, 2*S*L*L) matrix);
'sep' separates variables: a radix-2 butterfly that splits even and odd orders
(azimuth), a DFT of half length along azimuth written as matmuls with cos/sin
tables, then one batched matmul per (order, real/imaginary part) with the
associated Legendre table.  Its Legendre step (``legendre_rows``) either sums over
all n polar rows ('all') or uses the equatorial symmetry of the grid (rows theta
and pi - theta: 'half'): the rows are mirrored into g_j +- g_{n-j} by a second
butterfly (one 4 x 4 matrix with the first), which halves the Legendre FLOPs and
quarters its table but costs a memory pass over the maps each way.  The faster
one is chosen per grid size (``sht_tables.default_legendre_rows``, measured in
docs/speed.md).  ``analysis`` / ``synthesis`` expose the order-major
intermediate layout to layers that work per degree.  'sep' computes
the real layout and derives the full one from it (real maps: c_{-m} = (-1)^m
conj(c_m)); its inverse folds the negative orders into m >= 0 first.

Precision: ``dtype`` is the compute dtype of every matmul: 'float32' (default),
'float64', or the reduced 'bfloat16' (CPUs with AVX-512 BF16 / AMX) and
'float16' (GPUs) that the layers use under the Keras policies
``mixed_bfloat16`` / ``mixed_float16``.  In reduced precision the tables are
computed in float64, rounded once to the compute dtype, and the matmuls
accumulate in float32 (oneDNN's bfloat16 kernels on CPU, cuBLAS' default
float32 compute type for float16 on GPU), so the error is that of rounding the
inputs, the tables and each stage's output (about 2**-8 relative for
bfloat16, 2**-11 for float16): measured against pyshtools in
``docs/speed.md`` and bounded in ``test_sht.py``.  Layouts are chosen so that every contraction is a
plain (batched) matmul with the table on the left and batch*channels folded
into the matrix columns.  Tables come from ``sht_tables`` and are shared: obtain
transforms through ``get_transform`` so that layers of the same
(n, method, real, dtype) reuse one object.

Spectral tensors fed to layers are real ``(batch, 2, S, L, L, channels)``
(axis 1 = real, imaginary); see ``complex_to_spectral`` / ``spectral_to_complex``.
"""
from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from . import layouts
from . import sht_tables as tables
from ._types import ArrayLike, Tensor


def _backend_constant(array, dtype=None):
    """Backend tensor of a cached NumPy table, cast to ``dtype`` (default: the array's).

    On TensorFlow the tensor is created once per (table, dtype), eagerly
    (``tf.init_scope``), so that traced functions capture it by reference
    instead of embedding a copy per call site in the graph.  Other backends
    convert per call (under ``jax.jit`` the arrays become constants of the
    compiled function).
    """
    dtype = str(dtype or array.dtype)
    if keras.backend.backend() == "tensorflow":
        return _tf_constant((id(array), dtype), array, dtype)
    return ops.convert_to_tensor(array, dtype=dtype)


_TF_CONSTANTS = {}


def _tf_constant(key, array, dtype):
    import tensorflow as tf

    t = _TF_CONSTANTS.get(key)
    if t is None:
        with tf.init_scope():
            t = tf.cast(tf.constant(array), dtype)
        # keep the array alive with its tensor so that id() stays unique
        _TF_CONSTANTS[key] = t = (t, array)
    return t[0]


_SPLIT_COEFFS = ("pass the real and imaginary parts as (c.real, c.imag) to inverse, or "
                 "sht.complex_to_spectral(c) to inverse_packed")
DTYPES = ("float32", "float64", "bfloat16", "float16")


class SphericalHarmonicTransform:
    """Forward/inverse transform for an n x n DH grid (use ``get_transform``).

    Args:
        n: grid size (even).
        method: 'naive' or 'sep'.
        real: True for the real layout (m >= 0), False for the full layout.
        dtype: compute dtype, 'float32' (default, the layer path), 'float64', or
            'bfloat16' / 'float16' (reduced precision: tables rounded to it,
            matmuls accumulating in float32; see the module docstring).
        legendre_rows: 'sep' only: 'half' (the equatorial symmetry: half the
            Legendre FLOPs, maps' rows mirrored), 'all' (every polar row, no
            mirroring) or None: ``sht_tables.default_legendre_rows(n)``, the faster
            one as measured (docs/speed.md).  Both give the same coefficients (to
            rounding); their order-major layouts (``analysis``) have the same
            shape but a different order (``order_major_axes``), so pass
            ``synthesis`` only what the same transform's ``analysis`` laid out.
        degrees: 'sep' only: keep degrees (and orders) l < ``degrees`` = L (default
            n // 2, all the grid resolves). Coefficients are then ``(.., L, L, ..)``:
            the same as the full transform's, truncated, and the inverse takes them as
            if the others were zero; tables and FLOPs shrink with L^2 (a nonlinearity
            applied on a finer grid needs no more degrees than its input has).
    """

    def __init__(self, n: int, method: str = "naive", real: bool = True,
                 dtype: str = "float32", legendre_rows: str | None = None,
                 degrees: int | None = None) -> None:
        self.n = tables.check_n(n)
        self.method = tables.check_method(method)
        if degrees is not None and method != "sep" and degrees != self.n // 2:
            raise ValueError(f"degrees < n/2 needs method='sep', got method={method!r}")
        self.real = bool(real)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.dtype = dtype
        # tables are held in float32 (float64 for dtype float64) and cast once per compute dtype
        self.table_dtype = "float64" if dtype == "float64" else "float32"
        self.L = tables.check_degrees(self.n, degrees)
        self.degrees = None if self.L == self.n // 2 else self.L
        self.S = tables.n_layouts(self.real)
        if method == "naive":
            self._fwd, self._inv = tables.naive_matrices(self.n, self.real, self.table_dtype)
            self.legendre_rows = None
        else:
            self.legendre_rows = tables.check_legendre_rows(legendre_rows or tables.default_legendre_rows(self.n))
            t = tables.sep_tables(self.n, self.real, self.table_dtype, self.legendre_rows, self.degrees)
            self._fold, self._unfold, self._dft, self._idft = t["fold"], t["unfold"], t["dft"], t["idft"]
            self._leg_fwd, self._leg_inv = t["leg_fwd"], t["leg_inv"]
            self._L2 = self._Lh = (self.L + 1) // 2
            self.order_major_axes = tables.ORDER_MAJOR_AXES[self.legendre_rows]
            sizes = {"kf": 2, "s": 2, "mh": self._L2, "r": 2, "i": self._Lh}
            self.order_major_shape = tuple(sizes[a] for a in self.order_major_axes)
            if not self.real:
                self._neg_sign, self._combine = _full_layout_factors(self.L, self.table_dtype)

    def _const(self, array):
        """A table as a backend tensor in the compute dtype."""
        return _backend_constant(array, self.dtype)

    @property
    def nbytes(self):
        return tables.table_nbytes(self.n, self.method, self.real, self.table_dtype, self.legendre_rows,
                                   self.degrees)

    def __repr__(self):
        rows = f", legendre_rows={self.legendre_rows!r}" if self.legendre_rows else ""
        rows += f", degrees={self.degrees}" if self.degrees else ""
        return (f"SphericalHarmonicTransform(n={self.n}, method={self.method!r}, "
                f"real={self.real}, dtype={self.dtype!r}{rows})")

    def _check_map(self, x):
        layouts.refuse_complex(x, f"{self!r}")
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.n or shape[2] != self.n or shape[3] is None:
            raise ValueError(f"{self!r}: input must be (batch, {self.n}, {self.n}, channels) "
                             f"(batch, azimuth, polar, channels), got shape {shape}")

    def _check_coeffs(self, re, im):
        want = (self.S, self.L, self.L)
        for name, c in (("re", re), ("im", im)):
            layouts.refuse_complex(c, f"{self!r}.inverse ({name})", _SPLIT_COEFFS)
            shape = tuple(c.shape)
            if len(shape) != 5 or shape[1:4] != want:
                raise ValueError(f"{self!r}: {name} must be (batch, {self.S}, {self.L}, {self.L}, "
                                 f"channels), got shape {shape}")

    def forward_packed(self, x: Tensor) -> Tensor:
        """Forward transform, coefficients as (batch, 2, S, L, L, channels) (axis 1: re, im)."""
        self._check_map(x)
        x = ops.cast(x, self.dtype)
        n, L, S = self.n, self.L, self.S
        c = x.shape[3]  # static; the batch may be unknown (-1 below)
        if self.method == "naive":
            # (b, k, j, c) -> (b, c, k*j) @ (k*j, 2*S*L*L)
            xt = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, n * n))
            y = ops.matmul(xt, self._const(self._fwd))
            y = ops.reshape(y, (-1, c, 2, S, L, L))
            return ops.transpose(y, (0, 2, 3, 4, 5, 1))
        return self._forward_sep(x)

    def _forward_sep(self, x):
        L, L2, Lh, c = self.L, self._L2, self._Lh, x.shape[3]
        y = ops.reshape(self._analysis(x), self.order_major_shape + (-1, c))
        # -> (b, r, (i, s), (mh, kf), c): l = 2 i + s, m = 2 mh + kf
        y = permute_axes(y, self.order_major_axes + ("b", "c"), _PACKED_AXES)
        y = ops.reshape(y, (-1, 2, 1, 2 * Lh, 2 * L2, c))
        if 2 * L2 != L:
            y = y[:, :, :, :L, :L]
        if self.real:
            return y
        # real maps: c_{l,-m} = (-1)^m conj(c_lm); order 0 is stored at s = 0 only
        return ops.concatenate([y, y * self._const(self._neg_sign)], axis=2)

    def analysis(self, x):
        """Forward transform ('sep') of real maps into the order-major layout.

        x: ``(batch, n, n, channels)`` (batch, azimuth, polar, channels).
        Returns ``(8 * L2, Lh, batch, channels)``: axes 0 and 1 are the axes named
        by ``order_major_axes`` (shape ``order_major_shape``) flattened:
        ``(kf, s, mh, r), i`` for ``legendre_rows='half'``, ``(kf, mh, r, i), s`` for
        'all'; order m = 2 mh + kf, degree l = 2 i + s (L2 = Lh = ceil(L / 2);
        orders m >= L and degrees l >= L, present only when L is odd, are zero),
        r = 0 real part, 1 imaginary part.
        The same coefficients as ``forward_packed`` (real layout) without its final
        transpose; ``synthesis`` is its inverse.  Layers that work per degree
        (``SphConv``) use this pair to skip the packed layout.
        """
        self._check_map(x)
        if self.method != "sep":
            raise ValueError(f"{self!r}: analysis/synthesis need method='sep'")
        return self._analysis(ops.cast(x, self.dtype))

    def _analysis(self, x):
        """``analysis`` of maps already checked and cast (``forward_packed`` did both)."""
        n, L2, Lh, h = self.n, self._L2, self._Lh, self.n // 2
        c = x.shape[3]  # static; the batch may be unknown (-1 below)
        if self.legendre_rows == "all":
            # (b, (kh, k'), j, c) -> (kh, k'*j*b*c); radix-2 butterfly: kf = m parity
            z = self._radix2(ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (2, -1)))  # (kf, k'*j*b*c)
            # half-length DFTs: (kf, (mh, r), k') @ (kf, k', j*b*c)
            y = ops.matmul(self._const(self._dft), ops.reshape(z, (2, h, -1)))
            # Legendre over all rows: ((kf, mh, r), l = (i, s), j) @ ((kf, mh, r), j, b*c)
            y = ops.matmul(self._const(self._leg_fwd), ops.reshape(y, (4 * L2, n, -1)))
            return ops.reshape(y, (8 * L2, Lh, -1, c))
        # polar rows (jh, j'): the northern rows 1..h and their mirrors n-1..h (the pole
        # row 0 has quadrature weight 0; the equator h is its own mirror)
        # (split, reverse, concatenate: kernels whose gradients are as cheap; strided slices with
        # a negative stride and their gradients cost more than the Legendre step on a CPU)
        _, north, equator, south = ops.split(x, [1, h, h + 1], axis=2)
        x = ops.concatenate([north, equator, ops.flip(south, axis=2), equator], axis=2)
        # (b, (kh, k'), (jh, j'), c) -> ((kh, jh), k'*j'*b*c); both butterflies in one matmul:
        # kf = m parity (azimuth), s = l parity (g_j +- g_{n-j} as l + m is even or odd)
        xt = ops.reshape(ops.transpose(ops.reshape(x, (-1, 2, h, 2, h, c)), (1, 3, 2, 4, 0, 5)), (4, -1))
        z = ops.matmul(self._const(self._fold), xt)  # ((kf, s), k'*j'*b*c)
        # half-length DFTs: ((kf, s), (mh, r), k') @ ((kf, s), k', j'*b*c)
        y = ops.matmul(self._const(self._dft), ops.reshape(z, (4, h, -1)))
        # Legendre over half the rows: ((kf, s, mh, r), i, j') @ ((kf, s, mh, r), j', b*c)
        y = ops.matmul(self._const(self._leg_fwd), ops.reshape(y, (8 * L2, h, -1)))
        return ops.reshape(y, (8 * L2, Lh, -1, c))

    def synthesis(self, z):
        """Inverse of ``analysis``: ``(8 * L2, Lh, batch, channels)`` -> real ``(batch, n, n, channels)``."""
        layouts.refuse_complex(z, f"{self!r}.synthesis", _SPLIT_COEFFS)
        shape = tuple(z.shape)
        if self.method != "sep" or (len(shape) != 4 or shape[0] != 8 * self._L2
                                    or shape[1] != self._Lh or shape[3] is None):
            raise ValueError(f"{self!r}: order-major coefficients must be ({8 * self._L2}, {self._Lh}, "
                             f"batch, channels) with method='sep', got shape {shape}")
        z = ops.cast(z, self.dtype)
        n, L2, h, ch = self.n, self._L2, self.n // 2, shape[3]
        if self.legendre_rows == "all":
            # Legendre sums at every row: ((kf, mh, r), j, l = (i, s)) @ ((kf, mh, r), l, b*ch)
            y = ops.matmul(self._const(self._leg_inv), ops.reshape(z, (4 * L2, 2 * self._Lh, -1)))
            # half-length inverse DFTs: (kf, k', (mh, r)) @ (kf, (mh, r), j*b*ch)
            y = ops.matmul(self._const(self._idft), ops.reshape(y, (2, 2 * L2, -1)))
            y = self._radix2(ops.reshape(y, (2, -1)))  # (kh, k'*j*b*ch)
            return ops.transpose(ops.reshape(y, (n, n, -1, ch)), (2, 0, 1, 3))
        # Legendre sums at the rows j' = 0..h (pole to equator), per degree parity s
        y = ops.matmul(self._const(self._leg_inv), ops.reshape(z, (8 * L2, self._Lh, -1)))
        # half-length inverse DFTs: ((kf, s), k', (mh, r)) @ ((kf, s), (mh, r), j'*b*ch)
        y = ops.matmul(self._const(self._idft), ops.reshape(y, (4, 2 * L2, -1)))
        # both butterflies: ((kh, jh), (kf, s)) @ ((kf, s), k'*j'*b*ch); jh = 1 is the mirror row n - j'
        y = ops.matmul(self._const(self._unfold), ops.reshape(y, (4, -1)))
        y = ops.transpose(ops.reshape(y, (2, 2, h, h + 1, -1, ch)), (4, 0, 2, 1, 3, 5))
        y = ops.reshape(y, (-1, n, 2 * (h + 1), ch))  # (b, k, (jh, j'), ch)
        # rows 0..h from jh = 0, rows h+1..n-1 from the mirrors j' = h-1..1
        north, _, south, _ = ops.split(y, [h + 1, h + 2, 2 * h + 1], axis=2)
        return ops.concatenate([north, ops.flip(south, axis=2)], axis=2)

    def _radix2(self, z):
        """The 'all' step's butterfly ``[[1, 1], [1, -1]] @ z`` (its ``fold`` = ``unfold``), ``z`` (2, N).

        A matmul in float32 (one kernel each way); an add and a subtract in reduced
        precision, where oneDNN's bfloat16 matmul with an inner dimension of 2 is slow.
        In a model-64 training step (TensorFlow profiler, docs/speed.md) the add/subtract
        form costs about half the matmul's thread time in bfloat16 and about twice it in
        float32, where its split, concatenation and gradient sums add more kernels than
        they save.
        """
        if self.dtype in ("float32", "float64"):
            return ops.matmul(self._const(self._fold), z)
        a, b = ops.split(z, 2, axis=0)
        return ops.concatenate([a + b, a - b], axis=0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Forward transform of real maps (batch, n, n, channels) -> (re, im), each (batch, S, L, L, channels)."""
        y = self.forward_packed(x)
        return y[:, 0], y[:, 1]

    def inverse_packed(self, c: Tensor) -> Tensor:
        """Inverse of packed coefficients (batch, 2, S, L, L, channels) -> real (batch, n, n, channels)."""
        layouts.refuse_complex(c, f"{self!r}.inverse_packed", _SPLIT_COEFFS)
        shape = tuple(c.shape)
        if (len(shape) != 6 or shape[1] != 2 or shape[2:5] != (self.S, self.L, self.L)
                or shape[5] is None):
            raise ValueError(f"{self!r}: packed coefficients must be (batch, 2, {self.S}, {self.L}, "
                             f"{self.L}, channels), got shape {shape}")
        c = ops.cast(c, self.dtype)
        n, L, S = self.n, self.L, self.S
        ch = c.shape[5]
        if self.method == "naive":
            ct = ops.reshape(ops.transpose(c, (0, 5, 1, 2, 3, 4)), (-1, 2 * S * L * L))
            y = ops.matmul(ct, self._const(self._inv))  # (b*ch, k*j)
            y = ops.reshape(y, (-1, ch, n, n))
            return ops.transpose(y, (0, 2, 3, 1))
        return self._inverse_sep(c)

    def _inverse_sep(self, c):
        L, L2, Lh = self.L, self._L2, self._Lh
        ch = c.shape[5]
        if not self.real:
            # fold the negative orders into m >= 0 (the real part of the sum is unchanged):
            # Re(c_{-m} Y_{-m}) = Re((-1)^m conj(c_{-m}) Y_m); the table doubles m > 0
            c = ops.sum(c * self._const(self._combine), axis=2, keepdims=True)
        if 2 * L2 != L:
            c = ops.pad(c, [(0, 0)] * 3 + [(0, 2 * Lh - L), (0, 2 * L2 - L), (0, 0)])
        # (b, r, 1, l = (i, s), m = (mh, kf), ch) -> the order-major layout
        z = permute_axes(ops.reshape(c, (-1, 2, Lh, 2, L2, 2, ch)), _PACKED_AXES,
                         self.order_major_axes + ("b", "c"))
        return self.synthesis(ops.reshape(z, (8 * L2, Lh, -1, ch)))

    def inverse(self, re: Tensor, im: Tensor) -> Tensor:
        """Inverse transform: (re, im), each (batch, S, L, L, channels) -> real (batch, n, n, channels)."""
        self._check_coeffs(re, im)
        return self.inverse_packed(ops.stack([re, im], axis=1))


# the packed layout (b, r, 1, l, m, c) with l = (i, s), m = (mh, kf), by axis names
_PACKED_AXES = ("b", "r", "i", "s", "mh", "kf", "c")


def _permutation(src, dst):
    """The ``transpose`` permutation from axes named ``src`` to axes named ``dst``."""
    return tuple(src.index(a) for a in dst)


def permute_axes(x, src, dst):
    """``x`` with axes named ``src`` transposed to the order ``dst``, by a transpose of as few
    axes as the two orders allow.

    Axes of static size 1 are dropped, and axes that are neighbours in the same order in
    both ``src`` and ``dst`` are merged, by reshapes of contiguous axes (free) before and
    after one transpose that moves the same data. So the layouts' rank-7 transposes are
    transposes of at most 6 axes, which TFLite's TRANSPOSE requires (``export.to_tflite``).
    At most one axis may have an unknown size (the batch).
    """
    shape = tuple(x.shape)
    size = dict(zip(src, shape))
    keep = [a for a in src if size[a] != 1]
    keep_dst = [a for a in dst if size[a] != 1]
    groups = []
    for a in keep:
        if groups and keep_dst.index(a) == keep_dst.index(groups[-1][-1]) + 1:
            groups[-1].append(a)
        else:
            groups.append([a])
    if len(groups) == len(src):  # nothing to merge or drop
        return ops.transpose(x, _permutation(src, dst))

    def extent(axes):
        sizes = [size[a] for a in axes]
        return -1 if None in sizes else int(np.prod(sizes, dtype=np.int64))

    order = sorted(range(len(groups)), key=lambda g: keep_dst.index(groups[g][0]))
    y = ops.reshape(x, tuple(extent(g) for g in groups))
    if order != sorted(order):
        y = ops.transpose(y, tuple(order))
    return ops.reshape(y, tuple(-1 if size[a] is None else size[a] for a in dst))


def _full_layout_factors(L, dtype):
    """Factors between the real layout and the full layout (S = 2), for real maps.

    ``neg_sign`` (1, 2, 1, 1, L, 1): ``[0, r, 0, 0, m, 0]`` = (-1)^m for r = 0 and
    -(-1)^m for r = 1, 0 for m = 0, so that ``c[:, :, 1] = neg_sign * c[:, :, 0]``.
    ``combine`` (1, 2, 2, 1, L, 1): weights over s that give real-layout coefficients
    with the same inverse: c_m + (-1)^m conj(c_{-m}), halved for m > 0 (the real
    layout's inverse doubles those orders).
    """
    m = np.arange(L)
    sgn = np.where(m > 0, (-1.0) ** m, 0.0)
    neg = np.stack([sgn, -sgn]).reshape(1, 2, 1, 1, L, 1)
    a = np.where(m > 0, 0.5, 1.0)
    comb = np.stack([np.stack([a, 0.5 * sgn]), np.stack([a, -0.5 * sgn])]).reshape(1, 2, 2, 1, L, 1)
    return neg.astype(dtype), comb.astype(dtype)


def get_transform(n: int, method: str = "naive", real: bool = True,
                  dtype: str = "float32", legendre_rows: str | None = None,
                  degrees: int | None = None) -> SphericalHarmonicTransform:
    """Shared ``SphericalHarmonicTransform`` for (n, method, real, dtype, legendre_rows, degrees).

    ``legendre_rows=None`` resolves to ``sht_tables.default_legendre_rows(n)`` (and
    ``degrees=n // 2`` to None) before the cache is consulted, so that None and its value
    share one object.
    """
    if method == "sep" and legendre_rows is None:
        legendre_rows = tables.default_legendre_rows(n)
    if degrees is not None and int(degrees) == int(n) // 2:
        degrees = None
    return _cached_transform(int(n), method, bool(real), dtype, legendre_rows, degrees)


@functools.lru_cache(maxsize=None)
def _cached_transform(n, method, real, dtype, legendre_rows, degrees=None):
    return SphericalHarmonicTransform(n, method, real, dtype, legendre_rows, degrees)


# the cache's statistics and reset, as on the functools.lru_cache wrapper get_transform once was
get_transform.cache_info = _cached_transform.cache_info
get_transform.cache_clear = _cached_transform.cache_clear


def complex_to_spectral(c: ArrayLike) -> np.ndarray:
    """Complex coefficients (batch, S, L, L, ch) -> real (batch, 2, S, L, L, ch) (NumPy)."""
    c = np.asarray(c)
    if c.ndim != 5:
        raise ValueError(f"complex coefficients must be (batch, S, L, L, channels), got shape {c.shape}")
    return np.stack([c.real, c.imag], axis=1)


def spectral_to_complex(x: ArrayLike) -> np.ndarray:
    """Real spectral tensor (batch, 2, S, L, L, ch) -> complex (batch, S, L, L, ch) (NumPy)."""
    x = np.asarray(x)
    if x.ndim != 6 or x.shape[1] != 2:
        raise ValueError(f"spectral array must be (batch, 2, S, L, L, channels), got shape {x.shape}")
    return x[:, 0] + 1j * x[:, 1]
