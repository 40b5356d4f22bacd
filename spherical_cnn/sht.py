"""Spherical harmonic transforms in ``keras.ops`` (TensorFlow and JAX backends).

Real arithmetic only: complex coefficients travel as (real, imaginary) pairs.
Maps are ``(batch, azimuth, polar, channels)`` on the DH grid of size n; the
coefficients are ``(batch, S, L, L, channels)`` in the shtools layout (index 0:
m >= 0 at [0, l, m]; index 1: m < 0 at [1, l, |m|]), with the scale of the NumPy
reference ``spherical.sph_harm_transform_batch``.  ``real=True`` keeps only
m >= 0 (S = 1; the inverse uses c_{-m} = (-1)^m conj(c_m)); ``real=False``
computes the full layout (S = 2) and the inverse returns the real part.

Methods: 'naive' multiplies by the dense harmonics (one (n*n, 2*S*L*L) matrix);
'sep' separates variables: a DFT along azimuth written as a matmul with
cos/sin tables, then one batched matmul over the orders with the associated
Legendre table.  Tables come from ``sht_tables`` and are shared: obtain
transforms through ``get_transform`` so that layers of the same
(n, method, real, dtype) reuse one object.

Spectral tensors fed to layers are real ``(batch, 2, S, L, L, channels)``
(axis 1 = real, imaginary); see ``complex_to_spectral`` / ``spectral_to_complex``.
"""
import functools

import keras
import numpy as np
from keras import ops

from . import sht_tables as tables


def _backend_constant(array):
    """Backend tensor of a cached NumPy table.

    On TensorFlow the tensor is created once, eagerly (``tf.init_scope``), so
    that traced functions capture it by reference instead of embedding a copy
    per call site in the graph.  Other backends convert per call (under
    ``jax.jit`` the arrays become constants of the compiled function).
    """
    if keras.backend.backend() == "tensorflow":
        return _tf_constant(id(array), array)
    return ops.convert_to_tensor(array)


_TF_CONSTANTS = {}


def _tf_constant(key, array):
    import tensorflow as tf

    t = _TF_CONSTANTS.get(key)
    if t is None:
        with tf.init_scope():
            t = tf.constant(array)
        # keep the array alive with its tensor so that id() stays unique
        _TF_CONSTANTS[key] = t = (t, array)
    return t[0]


class SphericalHarmonicTransform:
    """Forward/inverse transform for an n x n DH grid (use ``get_transform``).

    Args:
        n: grid size (even).
        method: 'naive' or 'sep'.
        real: True for the real layout (m >= 0), False for the full layout.
        dtype: 'float32' (default, the layer path) or 'float64'.
    """

    def __init__(self, n, method="naive", real=True, dtype="float32"):
        self.n = tables.check_n(n)
        self.method = tables.check_method(method)
        self.real = bool(real)
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = dtype
        self.L = self.n // 2
        self.S = tables.n_layouts(self.real)
        if method == "naive":
            self._fwd, self._inv = tables.naive_matrices(self.n, self.real, dtype)
        else:
            t = tables.sep_tables(self.n, self.real, dtype)
            self._dft, self._leg_fwd = t["dft"], t["leg_fwd"]
            self._leg_inv, self._idft = t["leg_inv"], t["idft"]

    @property
    def nbytes(self):
        return tables.table_nbytes(self.n, self.method, self.real, self.dtype)

    def __repr__(self):
        return (f"SphericalHarmonicTransform(n={self.n}, method={self.method!r}, "
                f"real={self.real}, dtype={self.dtype!r})")

    def _check_map(self, x):
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.n or shape[2] != self.n or shape[3] is None:
            raise ValueError(f"{self!r}: input must be (batch, {self.n}, {self.n}, channels) "
                             f"(batch, azimuth, polar, channels), got shape {shape}")

    def _check_coeffs(self, re, im):
        want = (self.S, self.L, self.L)
        for name, c in (("re", re), ("im", im)):
            shape = tuple(c.shape)
            if len(shape) != 5 or shape[1:4] != want:
                raise ValueError(f"{self!r}: {name} must be (batch, {self.S}, {self.L}, {self.L}, "
                                 f"channels), got shape {shape}")

    def forward_packed(self, x):
        """Forward transform, coefficients as (batch, 2, S, L, L, channels) (axis 1: re, im)."""
        self._check_map(x)
        x = ops.cast(x, self.dtype)
        n, L, S = self.n, self.L, self.S
        c = x.shape[3]  # static; the batch may be unknown (-1 below)
        if self.method == "naive":
            # (b, k, j, c) -> (b, c, k*j) @ (k*j, 2*S*L*L)
            xt = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, n * n))
            y = ops.matmul(xt, _backend_constant(self._fwd))
            y = ops.reshape(y, (-1, c, 2, S, L, L))
            return ops.transpose(y, (0, 2, 3, 4, 5, 1))
        # DFT along azimuth: (2*S*L, k) @ (k, j*b*c)
        xt = ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (n, -1))
        y = ops.matmul(_backend_constant(self._dft), xt)  # (q*2, j*b*c)
        y = ops.reshape(y, (S * L, 2, n, -1))
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (S * L, n, -1))  # (q, j, 2*b*c)
        # Legendre per order: (q, l, j) @ (q, j, 2*b*c)
        y = ops.matmul(_backend_constant(self._leg_fwd), y)  # (q, l, 2*b*c)
        y = ops.reshape(y, (S, L, L, 2, -1, c))  # (s, m, l, r, b, c)
        return ops.transpose(y, (4, 3, 0, 2, 1, 5))

    def forward(self, x):
        """Forward transform of real maps (batch, n, n, channels) -> (re, im), each (batch, S, L, L, channels)."""
        y = self.forward_packed(x)
        return y[:, 0], y[:, 1]

    def inverse_packed(self, c):
        """Inverse of packed coefficients (batch, 2, S, L, L, channels) -> real (batch, n, n, channels)."""
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
            y = ops.matmul(ct, _backend_constant(self._inv))  # (b*ch, k*j)
            y = ops.reshape(y, (-1, ch, n, n))
            return ops.transpose(y, (0, 2, 3, 1))
        # (b, r, s, l, m, ch) -> (q=(s, m), l, r*b*ch)
        ct = ops.reshape(ops.transpose(c, (2, 4, 3, 1, 0, 5)), (S * L, L, -1))
        y = ops.matmul(_backend_constant(self._leg_inv), ct)  # (q, j, r*b*ch)
        y = ops.reshape(y, (S * L, n, 2, -1))
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (2 * S * L, -1))  # ((q, r), j*b*ch)
        y = ops.matmul(_backend_constant(self._idft), y)  # (k, j*b*ch)
        y = ops.reshape(y, (n, n, -1, ch))
        return ops.transpose(y, (2, 0, 1, 3))

    def inverse(self, re, im):
        """Inverse transform: (re, im), each (batch, S, L, L, channels) -> real (batch, n, n, channels)."""
        self._check_coeffs(re, im)
        return self.inverse_packed(ops.stack([re, im], axis=1))


@functools.lru_cache(maxsize=None)
def get_transform(n, method="naive", real=True, dtype="float32"):
    """Shared ``SphericalHarmonicTransform`` for (n, method, real, dtype)."""
    return SphericalHarmonicTransform(int(n), method, bool(real), dtype)


def complex_to_spectral(c):
    """Complex coefficients (batch, S, L, L, ch) -> real (batch, 2, S, L, L, ch) (NumPy)."""
    c = np.asarray(c)
    if c.ndim != 5:
        raise ValueError(f"complex coefficients must be (batch, S, L, L, channels), got shape {c.shape}")
    return np.stack([c.real, c.imag], axis=1)


def spectral_to_complex(x):
    """Real spectral tensor (batch, 2, S, L, L, ch) -> complex (batch, S, L, L, ch) (NumPy)."""
    x = np.asarray(x)
    if x.ndim != 6 or x.shape[1] != 2:
        raise ValueError(f"spectral array must be (batch, 2, S, L, L, channels), got shape {x.shape}")
    return x[:, 0] + 1j * x[:, 1]
