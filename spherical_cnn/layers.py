"""Keras layers of the Spherical CNN: spherical convolution, sphere-aware pooling, anti-aliased nonlinearity.

Maps are ``(batch, azimuth, polar, channels)`` on the Driscoll-Healy grid of
size n (polar pi*j/n, azimuth 2*pi*k/n); L = n // 2 degrees.  All math is in
``keras.ops`` with real arithmetic, so the layers run on TensorFlow and JAX.
Transform tables are shared between layers through ``sht.get_transform``.
"""
from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from . import layouts
from . import sht
from . import sht_tables as tables
from . import util

_PACKAGE = "spherical_cnn"


_COMPUTE_DTYPES = ("float32", "float64", "bfloat16", "float16")


def _compute_dtype(layer):
    """The dtype a layer's transforms and filters compute in: its policy's compute dtype.

    Under ``mixed_bfloat16`` / ``mixed_float16`` that is bfloat16 / float16: the
    transform and filter matmuls run in it (accumulating in float32, see
    :mod:`spherical_cnn.sht`), and the layer returns it, as its policy declares.
    Variables stay float32 (the policy's variable dtype) and are cast per call.
    """
    dtype = layer.compute_dtype
    return dtype if dtype in _COMPUTE_DTYPES else "float32"


def _check_grid(shape, who):
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[1] % 2 or shape[3] is None:
        raise ValueError(f"{who}: input must be (batch, n, n, channels) with n even, "
                         f"(batch, azimuth, polar, channels); got shape {tuple(shape)}")
    return shape[1]


#: Transform tables larger than this (bytes) make a layer warn when it is built.
TABLE_WARN_BYTES = 256 * 2 ** 20


def _size(nbytes):
    """Bytes in one unit: MiB below 1 GiB, GiB above."""
    return f"{nbytes / 2 ** 20:.0f} MiB" if nbytes < 2 ** 30 else f"{nbytes / 2 ** 30:.1f} GiB"


def _check_table_size(who, n, method, real, dtype, degrees=None, hint=""):
    """Warn when the transform tables of a layer need more than ``TABLE_WARN_BYTES``.

    One size, in one unit; for 'naive' also what 'sep' would need; ``hint`` ends the line."""
    nbytes = tables.estimate_table_nbytes(n, method, real, dtype, degrees=degrees)
    if nbytes > TABLE_WARN_BYTES:
        alt = ""
        if method != "sep":
            alt = f"; method='sep' needs {_size(tables.estimate_table_nbytes(n, 'sep', real, dtype))}"
        warnings.warn(f"{who}: method={method!r} needs {_size(nbytes)} of transform tables at "
                      f"n={n}{alt}{hint}", stacklevel=3)


def _refuse_complex(inputs, who):
    layouts.refuse_complex(inputs, who)


def _map_spec(n=None, channels=None):
    """Keras InputSpec of maps (batch, n, n, channels): checked by Keras on every later call."""
    axes = {}
    if n is not None:
        axes.update({1: n, 2: n})
    if channels is not None:
        axes[3] = channels
    return keras.layers.InputSpec(ndim=4, axes=axes)


def _polar_weights(n, dtype):
    return ops.convert_to_tensor(util.cell_area_weights(n).reshape(1, 1, n, 1).astype(dtype))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SphConv(keras.layers.Layer):
    """Spherical convolution with zonal filters learned in the spectral domain.

    ``out_{d,l}^m = sum_c 2 pi sqrt(4 pi / (2l+1)) x_{c,l}^m k_{c,l,d} (+ bias)``:
    the convolution of the input with a zonal filter whose order-0 coefficients
    are ``k_{c,l,d}``; it commutes with rotations.

    Args:
        filters: number of output channels.
        n_filter_params: 0 for one weight per degree (nw = L); otherwise
            nw = min(n_filter_params, L) weights per (input, output) pair,
            placed at linspace(0, 1, nw) and linearly interpolated over the
            degrees at linspace(0, 1, L) (a smooth spectrum gives a localized filter).
        use_bias: add a per-filter bias (zeros initially).
        spectral_pool: keep degrees < L / 2**spectral_pool and return the map at
            n / 2**spectral_pool.
        method: 'sep' (default; separation of variables, tables of ~n^3 bytes in
            float32: 1 MiB at n = 64, 8 MiB at n = 128, 33 MiB at n = 256 with each
            size's default Legendre step, ``sht_tables.default_legendre_rows``) or 'naive'
            (dense harmonics, ~n^4 bytes: 64 MiB at n = 64, 1 GiB at n = 128, 16 GiB
            at n = 256; the original's method, selected by the demo's
            ``--transform_method naive``). Same coefficients up to float rounding;
            ``sht_tables.estimate_table_nbytes`` gives the size without building.
        real_inputs: use the real layout (orders m >= 0); False computes all orders.
        spectral_input: inputs are spectral, real ``(batch, 2, S, L, L, in_ch)``
            (axis 1 = real, imaginary; S = 1 if real_inputs else 2).
        kernel_regularizer, kernel_initializer: keras objects/identifiers; the
            default initializer is a truncated normal with stddev
            2 / (2 pi sqrt(L * in_ch)).
        activation: applied to the output, as Keras's ``Conv2D`` (default None: linear;
            note that a pointwise nonlinearity on the grid is not equivariant, see
            :class:`SphericalActivation`).
        bias_initializer, bias_regularizer, kernel_constraint, bias_constraint: as
            Keras's ``Conv2D``; ``activity_regularizer`` and the other ``Layer``
            arguments go to ``keras.layers.Layer``.

    Input: ``(batch, n, n, in_ch)``. Output: ``(batch, n', n', filters)``,
    n' = n // 2**spectral_pool.

    Weights: ``kernel`` (in_ch, nw, filters); ``bias`` (filters,).
    Once built, the layer accepts only its grid size and channel count (a Keras
    ``InputSpec``); complex inputs are refused (the transform is real).

    Precision: the transforms and the per-degree filter compute in the policy's
    compute dtype (bfloat16 / float16 under the mixed policies, matmuls
    accumulating in float32) and the output has that dtype; the kernel and bias
    are float32 variables, the filter per degree is formed in float32 and then
    rounded.
    """

    def __init__(self, filters: int, n_filter_params: int = 0, use_bias: bool = True,
                 spectral_pool: int = 0, method: str = "sep", real_inputs: bool = True,
                 spectral_input: bool = False, kernel_regularizer: Any = None,
                 kernel_initializer: Any = None, activation: Any = None,
                 bias_initializer: Any = "zeros", bias_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(filters) != filters or filters < 1:
            raise ValueError(f"SphConv: filters must be a positive integer, got {filters!r}")
        if int(n_filter_params) != n_filter_params or n_filter_params < 0:
            raise ValueError(f"SphConv: n_filter_params must be >= 0, got {n_filter_params!r}")
        if int(spectral_pool) != spectral_pool or spectral_pool < 0:
            raise ValueError(f"SphConv: spectral_pool must be >= 0, got {spectral_pool!r}")
        self.filters = int(filters)
        self.n_filter_params = int(n_filter_params)
        self.use_bias = bool(use_bias)
        self.spectral_pool = int(spectral_pool)
        self.method = tables.check_method(method)
        self.real_inputs = bool(real_inputs)
        self.spectral_input = bool(spectral_input)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_initializer = (keras.initializers.get(kernel_initializer)
                                   if kernel_initializer is not None else None)
        self.activation = keras.activations.get(activation)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def _grid_of(self, input_shape):
        shape = tuple(input_shape)
        if self.spectral_input:
            S = tables.n_layouts(self.real_inputs)
            if (len(shape) != 6 or shape[1] != 2 or shape[2] != S or shape[3] is None
                    or shape[3] != shape[4] or shape[5] is None):
                raise ValueError(f"SphConv({self.name}): spectral input must be (batch, 2, {S}, L, L, "
                                 f"channels) for real_inputs={self.real_inputs}; got shape {shape}")
            n, in_ch = 2 * shape[3], shape[5]
        else:
            n, in_ch = _check_grid(shape, f"SphConv({self.name})"), shape[3]
        if n % (2 ** (self.spectral_pool + 1)):
            raise ValueError(f"SphConv({self.name}): spectral_pool={self.spectral_pool} needs n "
                             f"divisible by {2 ** (self.spectral_pool + 1)}, got n={n}")
        return n, in_ch

    def build(self, input_shape):
        n, in_ch = self._grid_of(input_shape)
        self.n, self.in_channels = n, in_ch
        if self.spectral_input:
            S = tables.n_layouts(self.real_inputs)
            self.input_spec = keras.layers.InputSpec(
                ndim=6, axes={1: 2, 2: S, 3: n // 2, 4: n // 2, 5: in_ch})
        else:
            self.input_spec = _map_spec(n, in_ch)
        _check_table_size(f"SphConv({self.name})", n, self.method, self.real_inputs,
                          _compute_dtype(self))
        L = n // 2
        self.n_weights = L if self.n_filter_params == 0 else min(self.n_filter_params, L)
        init = self.kernel_initializer
        if init is None:
            init = keras.initializers.TruncatedNormal(stddev=2.0 / (2 * np.pi * np.sqrt(L * in_ch)))
        self.kernel = self.add_weight(name="kernel", shape=(in_ch, self.n_weights, self.filters),
                                      initializer=init, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        else:
            self.bias = None
        # interpolation over degrees and the zonal-convolution factor, as one (nw, L) matrix
        interp = tables.degree_interpolation(self.n_weights, L) * tables.zonal_factor(L)[None, :]
        self._degree_matrix = interp
        self._parity_matrices = {}
        self.built = True

    def _degree_kernel(self, dtype, matrix=None):
        """The filter per degree, ``(L, in_ch * filters)`` (rows of ``matrix.T``: default one per degree).

        Formed in float32 (float64 for a float64 policy) and cast to ``dtype``.
        """
        wide = "float64" if dtype == "float64" else "float32"
        matrix = self._degree_matrix if matrix is None else matrix
        k = ops.matmul(ops.convert_to_tensor(matrix.T.astype(wide)),
                       ops.reshape(ops.transpose(ops.cast(self.kernel, wide), (1, 0, 2)),
                                   (self.n_weights, -1)))
        return ops.cast(k, dtype)

    def _parity_degree_matrix(self, Lp, order):
        """The (nw, 2 * ceil(Lp / 2)) degree matrix for degrees l < Lp in the order of an
        order-major layout: ``order`` ("s", "i") or ("i", "s") with l = 2 i + s (zero
        columns for l >= Lp).  Cached per (Lp, order)."""
        key = (Lp, order)
        if key not in self._parity_matrices:
            Lh = (Lp + 1) // 2
            M = np.zeros((self.n_weights, 2, Lh))
            for l in range(Lp):
                M[:, l % 2, l // 2] = self._degree_matrix[:, l]
            if order == ("i", "s"):
                M = M.transpose(0, 2, 1)
            self._parity_matrices[key] = M.reshape(self.n_weights, 2 * Lh)
        return self._parity_matrices[key]

    def call(self, inputs):
        _refuse_complex(inputs, f"SphConv({self.name})")
        dtype = _compute_dtype(self)
        if self.method == "sep" and not self.spectral_input:
            return self._call_order_major(inputs, dtype)
        L = self.n // 2
        fwd = sht.get_transform(self.n, self.method, self.real_inputs, dtype)
        if self.spectral_input:
            coeffs = ops.cast(inputs, dtype)
        else:
            coeffs = fwd.forward_packed(inputs)  # (b, 2, S, L, L, c)
        kernel = ops.reshape(self._degree_kernel(dtype), (L, self.in_channels, self.filters))
        Lp = L // 2 ** self.spectral_pool
        if self.spectral_pool:
            coeffs = coeffs[:, :, :, :Lp, :Lp]
            kernel = kernel[:Lp]
        # per degree: (b, r, s, m, c) x (c, f); batched over l
        out = ops.einsum("brslmc,lcf->brslmf", coeffs, kernel)
        inv = sht.get_transform(self.n // 2 ** self.spectral_pool, self.method, self.real_inputs, dtype)
        return self._add_bias(inv.inverse_packed(out), dtype)

    def _call_order_major(self, inputs, dtype):
        """The 'sep' path for maps: analysis -> filter per degree -> synthesis.

        Works in the transforms' order-major layouts (``order_major_axes``: the
        order parity kf, the degree parity s, mh, the real/imaginary part r and
        i, with order m = 2 mh + kf and degree l = 2 i + s) and applies the filter
        as one matmul batched over degrees, so no packed ``(batch, 2, S, L, L, ch)``
        tensor is formed.  (Broadcasting the filter over the orders instead, which
        needs no transposes, measured slower: its matmuls and the reduction of its
        kernel gradient cost more than the two transposes.)  Inputs are real maps,
        whose negative orders follow from the others, so the result is the same for
        ``real_inputs`` True and False (the full layout would filter c_{l,-m}
        exactly as c_{l,m}).
        """
        fwd = sht.get_transform(self.n, "sep", True, dtype)
        inv = sht.get_transform(self.n // 2 ** self.spectral_pool, "sep", True, dtype)
        c, f = self.in_channels, self.filters
        Lp, L2p, Lhp = inv.L, inv._L2, inv._Lh
        # batch and channels stay together (one axis "bc"): every op below has rank <= 6
        z = ops.reshape(fwd.analysis(inputs), fwd.order_major_shape + (-1,))
        axes = fwd.order_major_axes + ("bc",)
        if self.spectral_pool:
            # keep degrees l = 2 i + s with i < Lhp and orders m = 2 mh + kf with mh < L2p (a
            # degree or order Lp, present when Lp is odd, meets a zero of the smaller synthesis table)
            keep = {"mh": L2p, "i": Lhp}
            z = z[tuple(slice(0, keep.get(a)) for a in axes)]
        # per degree: ((kf, mh, r) * b, c) @ (c, f), batched over the degree axes in the order
        # of the analysis layout, so that both transposes move whole blocks
        degrees = tuple(a for a in fwd.order_major_axes if a in ("s", "i"))
        filt_axes = degrees + ("kf", "mh", "r", "bc")
        kernel = ops.reshape(self._degree_kernel(dtype, self._parity_degree_matrix(Lp, degrees)), (2 * Lhp, c, f))
        z = ops.reshape(sht.permute_axes(z, axes, filt_axes), (2 * Lhp, -1, c))
        out = ops.matmul(z, kernel)
        sizes = dict(zip(inv.order_major_axes, inv.order_major_shape))
        out = ops.reshape(out, tuple(sizes[a] for a in filt_axes[:-1]) + (-1,))
        out = sht.permute_axes(out, filt_axes, inv.order_major_axes + ("bc",))
        return self._add_bias(inv.synthesis(ops.reshape(out, (8 * L2p, Lhp, -1, f))), dtype)

    def _add_bias(self, x, dtype):
        """The bias, then the activation (Keras's Conv2D order)."""
        x = x + ops.cast(self.bias, dtype) if self.use_bias else x
        return x if self.activation is keras.activations.linear else self.activation(x)

    def compute_output_shape(self, input_shape):
        n, _ = self._grid_of(input_shape)
        m = n // 2 ** self.spectral_pool
        return (input_shape[0], m, m, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "n_filter_params": self.n_filter_params,
            "use_bias": self.use_bias,
            "spectral_pool": self.spectral_pool,
            "method": self.method,
            "real_inputs": self.real_inputs,
            "spectral_input": self.spectral_input,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)
            if self.kernel_initializer is not None else None,
        })
        # the Conv2D-like keywords, written only when not their defaults, so that the config
        # of a default layer is what it was (models saved before them load unchanged)
        extra = {"activation": keras.activations.serialize(self.activation),
                 "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                 "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer)
                 if self.bias_regularizer is not None else None,
                 "kernel_constraint": keras.constraints.serialize(self.kernel_constraint)
                 if self.kernel_constraint is not None else None,
                 "bias_constraint": keras.constraints.serialize(self.bias_constraint)
                 if self.bias_constraint is not None else None}
        defaults = {"activation": "linear", "bias_initializer": keras.initializers.serialize(
            keras.initializers.get("zeros"))}
        config.update({k: v for k, v in extra.items() if v is not None and v != defaults.get(k)})
        return config


class _GridPooling(keras.layers.Layer):
    """Shared parts of the grid pooling layers: ``pool_size``, output shape, config.

    Subclasses define ``_sizes(shape) -> (n, m)`` (fine and coarse grid sizes) and ``call``.
    """

    def __init__(self, pool_size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(pool_size) != pool_size or pool_size < 1:
            raise ValueError(f"{type(self).__name__}: pool_size must be a positive integer, "
                             f"got {pool_size!r}")
        self.pool_size = int(pool_size)

    def compute_output_shape(self, input_shape):
        _, m = self._sizes(input_shape)
        return (input_shape[0], m, m, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AreaWeightedPooling(_GridPooling):
    """Area-weighted average pooling ('wap') on the DH grid.

    ``x * w_fine(polar)`` -> average pool ``pool_size x pool_size`` (stride
    pool_size, 'same' padding) -> ``/ w_coarse(polar)``, with
    ``w = util.cell_area_weights`` along axis 2 (polar).
    Input ``(batch, n, n, c)``, output ``(batch, ceil(n / pool_size), ..., c)``.

    The original's pooling, kept for its models. It is the least rotation-invariant of
    the poolings (its coarse samples sit half a fine cell off the coarse grid; features
    change 6-7.5 % under rotation where ``CenteredAreaWeightedPooling`` changes 0.4 %)
    and it does not keep a constant map constant (wap(1) - 1 = 4.8e-3 at n = 16, as
    the mean of the fine weights is not the coarse weight): prefer
    :class:`CenteredAreaWeightedPooling` or ``SphConv(spectral_pool=1)`` in new models.
    """

    def _sizes(self, shape):
        n = _check_grid(shape, f"AreaWeightedPooling({self.name})")
        m = -(-n // self.pool_size)
        if m % 2:
            raise ValueError(f"AreaWeightedPooling({self.name}): pooled grid size {m} (n={n}, "
                             f"pool_size={self.pool_size}) must be even")
        return n, m

    def call(self, inputs):
        n, m = self._sizes(inputs.shape)
        x = inputs * ops.cast(_polar_weights(n, "float64"), inputs.dtype)
        p = self.pool_size
        # the maps' layout is fixed, whatever keras.config.image_data_format() says
        x = ops.average_pool(x, pool_size=(p, p), strides=(p, p), padding="same",
                             data_format="channels_last")
        return x / ops.cast(_polar_weights(m, "float64"), inputs.dtype)


def _tent(p):
    """Weights (p - |d|) / p**2 for offsets d = -(p-1) .. p-1 (they sum to 1)."""
    d = np.arange(-(p - 1), p)
    return d, (p - np.abs(d)) / float(p * p)


def _centered_polar_weights(n, p):
    """The tent-filtered cell weights at the coarse rows p*j (the layer's normaliser), ``(n // p,)``."""
    w = util.cell_area_weights(n)
    d, t = _tent(p)
    rows = p * np.arange(n // p)[:, None] + d[None, :]
    # rows above the north pole reflect onto row |r| (same polar angle, other side)
    return (w[np.abs(rows)] * t[None, :]).sum(axis=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CenteredAreaWeightedPooling(_GridPooling):
    """Grid-centred area-weighted pooling ('cwap') on the DH grid.

    Coarse sample ``(k, j)`` is placed where the coarse DH grid puts it, at
    fine sample ``(p*k, p*j)``: the map is weighted by the cell area, filtered
    with a separable tent of half-width ``p`` centred there (weights
    1/4, 1/2, 1/4 for p = 2), and divided by the equally filtered weights, so
    constant maps stay constant. Rows above the north pole are taken from the
    other side of the pole (row ``r`` at azimuth + pi); azimuth wraps around.

    Why: ``wap`` (the original's pooling) averages fine rows 2j and 2j+1, which
    is centred half a fine cell away from coarse sample j; that shift is not a
    rotation and breaks SO(3) equivariance (see docs/rotation-study.md, "Does it hold up
    under rotation?"). ``cwap`` has no such shift.

    Input ``(batch, n, n, c)`` with n divisible by ``2 * pool_size``; output
    ``(batch, n // pool_size, n // pool_size, c)``.
    """

    def _sizes(self, shape):
        n = _check_grid(shape, f"CenteredAreaWeightedPooling({self.name})")
        if n % (2 * self.pool_size):
            raise ValueError(f"CenteredAreaWeightedPooling({self.name}): grid size n={n} must be "
                             f"divisible by 2 * pool_size = {2 * self.pool_size}")
        return n, n // self.pool_size

    def call(self, inputs):
        n, m = self._sizes(inputs.shape)
        p = self.pool_size
        if p == 1:
            return inputs
        offsets, taps = _tent(p)
        x = inputs * ops.cast(_polar_weights(n, "float64"), inputs.dtype)
        # polar: prepend rows p-1 .. 1 seen across the north pole (azimuth + pi)
        above = ops.flip(ops.roll(x[:, :, 1:p, :], shift=n // 2, axis=1), axis=2)
        x = ops.concatenate([above, x], axis=2)
        x = sum(float(t) * x[:, :, p - 1 + d: p - 1 + d + p * (m - 1) + 1: p, :]
                for d, t in zip(offsets, taps))
        # azimuth: periodic
        x = ops.concatenate([x[:, n - (p - 1):], x, x[:, :p - 1]], axis=1)
        x = sum(float(t) * x[:, p - 1 + d: p - 1 + d + p * (m - 1) + 1: p]
                for d, t in zip(offsets, taps))
        return x / ops.cast(_centered_polar_weights(n, p), inputs.dtype)[:, None]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SphericalAreaWeighting(keras.layers.Layer):
    """Multiply a map ``(batch, n, n, c)`` by ``util.cell_area_weights(n)`` along axis 2 (polar)."""

    def call(self, inputs):
        n = _check_grid(inputs.shape, f"SphericalAreaWeighting({self.name})")
        return inputs * ops.cast(_polar_weights(n, "float64"), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Batch norm whose moving variance follows TF1's fused batch norm.

    The demo's ``tf.layers.batch_normalization`` ran TF1's fused kernel (4-D
    inputs, no renorm). It normalises each batch like Keras, with the biased
    batch variance, but updates the moving variance with the Bessel-corrected
    one::

        moving_variance = momentum * moving_variance + (1 - momentum) * var * n / (n - 1)

    with ``n`` the number of values reduced per channel (batch * azimuth *
    polar for ``(batch, azimuth, polar, channels)`` maps; per replica under
    ``tf.distribute``, as TF1's per-device kernel). ``n = 1`` uses factor 1.
    The moving mean, the normalisation of the batch itself, inference, and
    ``renorm=True`` (TF1 ran batch renorm unfused, without the correction)
    are Keras' own. Arguments are those of ``keras.layers.BatchNormalization``;
    ``synchronized=True`` is refused (its variance is cross-replica).

    Precision: under a mixed policy the maps are normalised in their compute
    dtype (bfloat16 / float16) while the batch moments, the moving statistics
    and the centre/scale stay float32 (the fused kernel's and the ``keras.ops``
    path's arithmetic alike): a variance summed in bfloat16 over
    batch * azimuth * polar values would lose most of its digits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.synchronized:
            raise ValueError(f"{type(self).__name__}: synchronized=True is not supported")

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.renorm or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        if self._can_use_tf_kernel(inputs):
            return self._tf_fused_call(inputs)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)
        channels = x.shape[self.axis]
        n = ops.cast(ops.size(x), x.dtype) / float(channels)
        corrected = variance * (n / ops.maximum(n - 1.0, 1.0))
        m = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, x.dtype) * m + mean * (1.0 - m))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, x.dtype) * m + corrected * (1.0 - m))
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        out = ops.batch_normalization(x, mean=mean, variance=variance, axis=self.axis,
                                      offset=beta, scale=gamma, epsilon=self.epsilon)
        return ops.cast(out, self.compute_dtype)

    def _can_use_tf_kernel(self, inputs):
        """TensorFlow's own fused kernel applies: TF backend, 4-D float32 / bfloat16 / float16
        maps, channels last (for the reduced dtypes the kernel keeps its statistics in float32)."""
        return (keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                and self.axis in (-1, 3) and inputs.dtype in ("float32", "bfloat16", "float16")
                and self.epsilon >= 1.001e-5)

    def _tf_fused_call(self, x):
        """Training step through ``FusedBatchNormV3``, the kernel TF1's fused batch norm ran.

        One pass computes the batch moments, normalises, and returns the moving
        statistics updated as described above (``exponential_avg_factor`` =
        1 - momentum); its gradient is one fused kernel as well. Numerically the
        same as the ``keras.ops`` path below it (checked in test_fidelity.py).
        """
        import tensorflow as tf

        channels = x.shape[-1]
        # scale, offset and statistics in float32 whatever the maps' dtype (mixed precision)
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
        out, moving_mean, moving_variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=True,
            exponential_avg_factor=1.0 - self.momentum)
        self.moving_mean.assign(moving_mean)
        self.moving_variance.assign(moving_variance)
        return out


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DegreePowerPooling(keras.layers.Layer):
    """Per-degree power of each channel's spherical harmonic coefficients.

    ``(batch, n, n, c)`` -> ``(batch, L*c)``, entry ``l*c + ch`` =
    ``sum_{m=-l..l} |x_{ch,l}^m|^2`` (with the real layout,
    ``|c_l0|^2 + 2 sum_{m>0} |c_lm|^2``, equal for real maps).  The power per
    degree is invariant under rotations of the map.

    Precision: the transform runs in the policy's compute dtype; squares and
    sums in float32 (float64 under a float64 policy); the output has the compute dtype.

    Note: the original summed ``Re(c^2)`` over m >= 0 only ("magnitudes"),
    which is not rotation invariant; this layer uses the invariant power.

    Args:
        method: 'sep' (default) or 'naive', as for :class:`SphConv` (tables, sizes).
        real_inputs: real layout (m >= 0, doubled) or all orders; equal for real maps.
    """

    def __init__(self, method: str = "sep", real_inputs: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = tables.check_method(method)
        self.real_inputs = bool(real_inputs)

    def build(self, input_shape):
        n = _check_grid(input_shape, f"DegreePowerPooling({self.name})")
        self.input_spec = _map_spec()  # stateless: any grid, any channel count
        _check_table_size(f"DegreePowerPooling({self.name})", n, self.method, self.real_inputs,
                          _compute_dtype(self))
        self.built = True

    def call(self, inputs):
        _refuse_complex(inputs, f"DegreePowerPooling({self.name})")
        n = _check_grid(inputs.shape, f"DegreePowerPooling({self.name})")
        dtype = _compute_dtype(self)
        L, c = n // 2, inputs.shape[3]
        coeffs = sht.get_transform(n, self.method, self.real_inputs, dtype).forward_packed(inputs)
        # squares and sums in float32 at least: the power spans many octaves across degrees
        wide = "float64" if dtype == "float64" else "float32"
        w = np.ones(L, dtype=wide)
        if self.real_inputs:
            w[1:] = 2.0  # |c_{l,-m}| = |c_{lm}| for real maps
        # coeffs (b, r, s, l, m, c): sum over re/im, layout and order
        power = ops.sum(ops.square(ops.cast(coeffs, wide)) * ops.convert_to_tensor(w.reshape(1, 1, 1, 1, L, 1)),
                        axis=(1, 2, 4))  # (b, L, c)
        return ops.cast(ops.reshape(power, (-1, L * c)), dtype)

    def compute_output_shape(self, input_shape):
        n = _check_grid(input_shape, f"DegreePowerPooling({self.name})")
        return (input_shape[0], (n // 2) * input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"method": self.method, "real_inputs": self.real_inputs})
        return config


def pointwise_nonlinearity(name: str, rank: int, layer_name: str | None = None,
                           **kwargs: Any) -> keras.layers.Layer:
    """The layer for ``--nonlin name`` applied to tensors of rank ``rank`` (batch included).

    ``prelu`` has one learned slope per channel (shared over the other axes),
    initialised to 0.1 as in the original; ``identity`` (also ``linear``,
    ``none``) is a no-op; anything else is a Keras activation name.
    ``kwargs`` go to the layer's constructor (e.g. ``dtype``).
    """
    if name == "prelu":
        shared = list(range(1, rank - 1)) or None
        return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.1),
                                  shared_axes=shared, name=layer_name, **kwargs)
    if name in ("identity", "linear", "none"):
        return keras.layers.Identity(name=layer_name, **kwargs)
    try:
        keras.activations.get(name)
    except ValueError:
        raise ValueError("--nonlin {!r} is neither prelu, identity nor a Keras activation"
                         .format(name)) from None
    return keras.layers.Activation(name, name=layer_name, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SphericalActivation(keras.layers.Layer):
    """Pointwise nonlinearity applied on a finer grid, band-limited back (anti-aliased).

    For a map ``x`` ``(batch, n, n, channels)`` on the DH grid of size n
    (``(batch, azimuth, polar, channels)``, L = n // 2 degrees), with u = ``upsample``:

    1. forward transform at n: coefficients of degrees < L;
    2. inverse transform at u*n of these degrees (the samples of the same
       band-limited function on the finer grid);
    3. the pointwise nonlinearity there;
    4. forward transform at u*n of the degrees < L only, inverse transform at n.

    With method 'sep' the transforms of grid u*n compute only the degrees and orders
    < L that steps 2 and 4 use (``get_transform(u*n, degrees=L)``): their tables and
    FLOPs are 1/u^2 of a full transform of grid u*n (at n = 256, u = 2: 65 MiB of
    tables instead of 259 MiB); the result is the same, to rounding, as zero-padding
    to degrees < u*L and truncating after.

    The output is band-limited to degrees < L. The DH quadrature on grid u*n
    aliases into those degrees only the content of the activated map at
    degrees >= u*n - L (n/2 for the nonlinearity applied on grid n itself),
    which is why equivariance improves with u. ``upsample=1`` skips the transforms: the
    nonlinearity is applied to the grid values, as a plain layer would do.
    Coefficients do not depend on the grid size (they are the integrals of the
    map against orthonormal harmonics), so zero-padding and truncation need no
    rescaling.

    Args:
        nonlinearity: as ``--nonlin``: 'prelu' (one slope per channel, initial
            0.1), 'identity', or a Keras activation name
            (see :func:`pointwise_nonlinearity`).
        upsample: integer u >= 1.
        method: 'sep' (default) or 'naive', as for :class:`SphConv` (tables, sizes).
            The tables are those of grids n and u*n (real layout: maps are real).

    Input and output: ``(batch, n, n, channels)``, n even.
    Weights: those of the nonlinearity (PReLU: ``alpha`` ``(1, 1, channels)``),
    held by the sublayer ``pointwise``. Once built, the layer accepts only its channel
    count (any grid).
    """

    def __init__(self, nonlinearity: str = "prelu", upsample: int = 2, method: str = "sep",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(upsample, bool) or int(upsample) != upsample or upsample < 1:
            raise ValueError(f"SphericalActivation: upsample must be an integer >= 1, got {upsample!r}")
        self.nonlinearity = str(nonlinearity)
        self.upsample = int(upsample)
        self.method = tables.check_method(method)
        self.pointwise = pointwise_nonlinearity(self.nonlinearity, 4, f"{self.name}_pointwise",
                                                dtype=self.dtype_policy)

    def _fine_degrees(self, n):
        """Degrees of the transform of the fine grid: those of grid n ('sep'), else all."""
        return n // 2 if self.method == "sep" else None

    def build(self, input_shape):
        n = _check_grid(input_shape, f"SphericalActivation({self.name})")
        u = self.upsample
        self.pointwise.build((input_shape[0], u * n, u * n, input_shape[3]))
        self.input_spec = _map_spec(channels=input_shape[3])  # the nonlinearity's weights
        if u > 1:
            _check_table_size(f"SphericalActivation({self.name})", u * n, self.method, True,
                              _compute_dtype(self), self._fine_degrees(n),
                              f" (the grid upsampled {u} x from {n}; upsample=1 uses none)")
        self.built = True

    def call(self, inputs):
        _refuse_complex(inputs, f"SphericalActivation({self.name})")
        if self.upsample == 1:
            return self.pointwise(inputs)
        n = _check_grid(inputs.shape, f"SphericalActivation({self.name})")
        dtype = _compute_dtype(self)
        coarse = sht.get_transform(n, self.method, True, dtype)
        fine = sht.get_transform(self.upsample * n, self.method, True, dtype,
                                 degrees=self._fine_degrees(n))
        L, pad = coarse.L, fine.L - coarse.L
        coeffs = coarse.forward_packed(inputs)  # (b, 2, 1, L, L, c)
        if pad:  # 'naive': the full transform of the fine grid
            coeffs = ops.pad(coeffs, [(0, 0), (0, 0), (0, 0), (0, pad), (0, pad), (0, 0)])
        y = self.pointwise(fine.inverse_packed(coeffs))
        coeffs = fine.forward_packed(y)[:, :, :, :L, :L]
        return coarse.inverse_packed(coeffs)

    def compute_output_shape(self, input_shape):
        _check_grid(input_shape, f"SphericalActivation({self.name})")
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"nonlinearity": self.nonlinearity, "upsample": self.upsample,
                       "method": self.method})
        return config
