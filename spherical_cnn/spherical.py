"""Spherical harmonic transforms and spherical convolution in NumPy (float64 / complex128).

The reference implementation that the keras transforms (``sht``) and layers are
checked against.  Names and behaviour follow the original Spherical CNN code so
that results compare numerically.

Conventions: DH grid of size n (see ``sht_tables``); single maps are
``(azimuth, polar)``, batches ``(batch, azimuth, polar, channels)``; L = n // 2
degrees.  Coefficients of a single map are lists of lists (``c[l][m - m_min]``,
m from -l (complex) or 0 (real) to l); batch coefficients use the shtools
layout ``(batch, S, L, L, channels)`` (index 0: m >= 0 at [0, l, m]; index 1:
m < 0 at [1, l, |m|]; S = 1 for the "real" layout with m >= 0 only).  With these
scales the coefficients equal pyshtools' orthonormal, Condon-Shortley-phased
expansion ``SHGrid.from_array(f.T).expand(csphase=-1, normalization='ortho')``.

``method='naive'`` multiplies by the dense harmonics; ``method='sep'`` separates
variables: an FFT along azimuth, then one associated Legendre matrix per order.

Inputs (maps, coefficients, harmonics, filters) may also be TensorFlow tensors
or variables, or lists of lists of them, where the original accepted
TensorFlow inputs; they are read as NumPy arrays (eager values) and results are
NumPy arrays. Symbolic tensors (inside ``tf.function``) are refused: the
TensorFlow/Keras implementation is ``spherical_cnn.sht``.
"""
import functools

import numpy as np
from scipy.special import sph_harm_y

from . import sht_tables as tables
from . import util


def _numpy(x):
    """``x`` with TensorFlow tensors/variables replaced by NumPy arrays (lists of lists element-wise)."""
    if isinstance(x, (list, tuple)):
        return [_numpy(v) for v in x]
    if isinstance(x, np.ndarray):
        return x
    symbolic = type(x).__module__.startswith(("tensorflow", "keras"))
    if callable(getattr(x, "numpy", None)):
        try:
            return x.numpy()
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            symbolic = True
    if symbolic:
        raise TypeError(f"spherical: cannot read the symbolic {type(x).__name__} {x!r} as an "
                        "array; these NumPy functions take eager values (inside tf.function "
                        "use spherical_cnn.sht)")
    return x


@functools.lru_cache(maxsize=4096)
def sph_harm_lm(l, m, n):
    """Spherical harmonic Y_l^m sampled on the n x n DH grid, ``(azimuth, polar)`` complex128."""
    if abs(m) > l:
        raise ValueError(f"sph_harm_lm: need |m| <= l, got l={l}, m={m}")
    polar, az = util.sph_sample(n)
    polar, az = np.meshgrid(polar, az)  # both (azimuth, polar)
    Y = sph_harm_y(l, m, polar, az)
    Y.setflags(write=False)
    return Y


def sph_harm_all(n, as_tfvar=False, real=False):
    """All harmonics of degree < n // 2 for an n x n grid.

    Returns a list of lists ``h[l][m - m_min]`` (m from -l, or 0 when ``real``);
    with ``as_tfvar`` a complex64 TensorFlow constant in shtools layout.
    """
    tables.check_n(n)
    harmonics = [[sph_harm_lm(l, m, n) for m in range(0 if real else -l, l + 1)]
                 for l in range(n // 2)]
    if as_tfvar:
        import tensorflow as tf
        return tf.constant(sph_harm_to_shtools(harmonics).astype("complex64"))
    return harmonics


def DHaj(n, mode="DH"):
    """Driscoll-Healy quadrature weights along the polar axis, shape (n,).

    ``mode='DH'``: samples at pi*j/n; ``'ours'``: samples at cell centres.
    """
    if mode == "DH":
        return np.array(tables.dh_weights(n))
    if mode == "ours":
        tables.check_n(n)
        theta = np.pi * (2 * np.arange(n) + 1) / (2 * n)
        l = np.arange(n // 2)
        s = (np.sin(np.outer(theta, 2 * l + 1)) / (2 * l + 1)).sum(axis=1)
        return 2 * np.sqrt(2) / n * np.sin(theta) * s
    raise ValueError(f"DHaj: mode must be 'DH' or 'ours', got {mode!r}")


def _check_map(f, name="f"):
    f = np.asarray(f)
    if f.ndim != 2 or f.shape[0] != f.shape[1] or f.shape[0] % 2:
        raise ValueError(f"{name} must be a square (n, n) map with n even, got shape {f.shape}")
    return f


def sph_harm_transform(f, mode="DH", harmonics=None):
    """Spherical harmonic coefficients of one map ``f`` (azimuth, polar).

    Returns a list of lists ``c[l][m - m_min]``; real-layout when ``harmonics``
    is a real-layout list (m >= 0 only).
    """
    f = _check_map(_numpy(f))
    n = f.shape[0]
    if harmonics is None:
        harmonics = sph_harm_all(n)
    harmonics = _numpy(harmonics)
    fa = f * DHaj(n, mode)[np.newaxis, :]
    scale = tables.forward_scale(n)
    return [[scale * np.sum(fa * np.conj(Y)) for Y in row] for row in harmonics]


def sph_harm_inverse(c, harmonics=None):
    """Map (azimuth, polar) from list-of-lists coefficients.

    Real layout (m >= 0 only) returns a real map using c_{-m} = (-1)^m conj(c_m);
    the full layout returns a complex map.
    """
    c = _numpy(c)
    n = 2 * len(c)
    real = is_real_sft(c)
    if harmonics is None:
        harmonics = sph_harm_all(n, real=real)
    harmonics = _numpy(harmonics)
    f = np.zeros((n, n), dtype=float if real else complex)
    for l in range(n // 2):
        for i, (cc, Y) in enumerate(zip(c[l], harmonics[l])):
            if real:
                w = 1 if i == 0 else 2
                f += w * (np.real(cc) * Y.real - np.imag(cc) * Y.imag)
            else:
                f = f + cc * Y
    return f


def is_real_sft(h_or_c):
    """True if list-of-lists harmonics/coefficients hold m >= 0 only (degree 1 has 2 entries)."""
    if len(h_or_c) < 2:
        raise ValueError("is_real_sft: need at least degrees 0 and 1 to tell the layout")
    return len(_numpy(h_or_c[1])) == 2


def sph_harm_to_shtools(c):
    """List-of-lists coefficients/harmonics -> shtools layout (S, L, L, ...) complex array."""
    c = _numpy(c)
    L = len(c)
    real = is_real_sft(c)
    shape = np.shape(c[0][0])
    out = np.zeros((1 if real else 2, L, L, *shape), dtype=complex)
    for l, row in enumerate(c):
        row = np.asarray(row)
        if real:
            out[0, l, :l + 1] = row
        else:
            out[0, l, :l + 1] = row[l:]
            out[1, l, 1:l + 1] = row[:l][::-1]
    return out


def _check_method(method):
    return tables.check_method(method)


def _check_batch(f, name="f"):
    f = np.asarray(_numpy(f))
    if f.ndim != 4 or f.shape[1] != f.shape[2] or f.shape[1] % 2:
        raise ValueError(f"{name} must be (batch, n, n, channels) with n even, got shape {f.shape}")
    return f


def _check_harmonics(h, n, name="harmonics"):
    h = np.asarray(_numpy(h))
    L = n // 2
    if h.ndim != 5 or h.shape[0] not in (1, 2) or h.shape[1:] != (L, L, n, n):
        raise ValueError(f"{name} must have shape (1 or 2, {L}, {L}, {n}, {n}) for n={n}, "
                         f"got {h.shape}")
    return h


def sph_harm_transform_batch(f, method="naive", harmonics=None, m0_only=False):
    """Batch forward transform.

    Args:
        f: (batch, n, n, channels) maps, ``(azimuth, polar)`` axes 1, 2; real or complex.
        method: 'naive' (dense harmonics) or 'sep' (FFT + per-order Legendre).
        harmonics: shtools-layout harmonics ``(S, L, L, n, n)``, default the
            full complex layout (S = 2).  With 'sep' only its leading size S is
            used (to choose the layout); the Legendre tables are cached.
        m0_only: keep only order 0, ``(batch, 1, L, 1, channels)`` (the zonal
            part, all a convolution needs from a filter).

    Returns:
        (batch, S, L, L, channels) complex128 coefficients.
    """
    _check_method(method)
    f = _check_batch(f)
    n = f.shape[1]
    L = n // 2
    S = 2 if harmonics is None else _check_harmonics(harmonics, n).shape[0]
    if method == "naive":
        if harmonics is None:
            harmonics = tables.harmonics(n, real=False)
        h = np.asarray(_numpy(harmonics))
        if m0_only:
            h = h[:1, :, :1]
        fa = f * DHaj(n)[None, None, :, None]
        c = tables.forward_scale(n) * np.tensordot(fa, np.conj(h), axes=([1, 2], [3, 4]))
        return np.transpose(c, (0, 2, 3, 4, 1))
    P = tables.legendre(n)  # (m, l, j)
    F = np.fft.fft(f, axis=1)  # F[:, m] = sum_k f_k exp(-i m az_k)
    w = tables.forward_scale(n) * DHaj(n)
    out = np.zeros((f.shape[0], S, L, L, f.shape[3]), dtype=complex)
    out[:, 0] = np.einsum("mlj,bmjc->blmc", P * w, F[:, :L])
    if S == 2:
        sign = (-1.0) ** np.arange(L)
        neg = np.einsum("mlj,bmjc->blmc", P * w * sign[:, None, None], F[:, (-np.arange(L)) % n])
        neg[:, :, 0] = 0
        out[:, 1] = neg
    if m0_only:
        out = out[:, :1, :, :1]
    return out


def sph_harm_inverse_batch(c, method="naive", harmonics=None):
    """Batch inverse transform.

    Args:
        c: (batch, S, L, L, channels) coefficients in shtools layout.
        method: 'naive' or 'sep'.
        harmonics: (S, L, L, n, n) harmonics for 'naive' (default: the layout of c).

    Returns:
        (batch, n, n, channels) with n = 2L: real for the real layout (S = 1),
        complex for the full layout.
    """
    _check_method(method)
    c = np.asarray(_numpy(c))
    if c.ndim != 5 or c.shape[1] not in (1, 2) or c.shape[2] != c.shape[3]:
        raise ValueError(f"c must be (batch, 1 or 2, L, L, channels), got shape {c.shape}")
    S, L = c.shape[1], c.shape[2]
    n = 2 * L
    real = S == 1
    w = np.ones(L)
    if real:
        w[1:] = 2  # c_{-m} Y_{-m} + c_m Y_m = 2 Re(c_m Y_m)
    if method == "naive":
        h = tables.harmonics(n, real=real) if harmonics is None else _check_harmonics(harmonics, n)
        if h.shape[0] != S:
            raise ValueError(f"harmonics layout {h.shape[0]} does not match coefficients layout "
                             f"{S} (c shape {c.shape})")
        if real:
            cw = c * w[None, None, None, :, None]
            f = (np.tensordot(cw.real, h.real, axes=([1, 2, 3], [0, 1, 2]))
                 - np.tensordot(cw.imag, h.imag, axes=([1, 2, 3], [0, 1, 2])))
        else:
            f = np.tensordot(c, h, axes=([1, 2, 3], [0, 1, 2]))
        return np.transpose(f, (0, 2, 3, 1))
    P = tables.legendre(n)
    G = np.einsum("mlj,blmc->bmjc", P, c[:, 0])  # (batch, m, polar, channels)
    if real:
        spec = np.zeros((c.shape[0], n // 2 + 1, n, c.shape[4]), dtype=complex)
        spec[:, :L] = G
        return n * np.fft.irfft(spec, n=n, axis=1)
    spec = np.zeros((c.shape[0], n, n, c.shape[4]), dtype=complex)
    spec[:, :L] = G
    sign = (-1.0) ** np.arange(L)
    Gneg = np.einsum("mlj,blmc->bmjc", P * sign[:, None, None], c[:, 1])
    spec[:, (-np.arange(1, L)) % n] += Gneg[:, 1:]
    return n * np.fft.ifft(spec, axis=1)


def sph_conv(f, g, harmonics=None):
    """Spherical convolution of two single maps (azimuth, polar): f * g with g's zonal part."""
    harmonics = _numpy(harmonics)
    cf, cg = [sph_harm_transform(x, harmonics=harmonics) for x in (f, g)]
    real = is_real_sft(cf)
    cfg = []
    for l, (c1, c2) in enumerate(zip(cf, cg)):
        g0 = c2[0] if real else c2[l]  # order 0 of the filter
        cfg.append(2 * np.pi * np.sqrt(4 * np.pi / (2 * l + 1)) * np.asarray(c1) * g0)
    return sph_harm_inverse(cfg)


def sph_conv_batch(f, g, harmonics_or_legendre=None, method="naive", spectral_pool=0,
                   harmonics_or_legendre_low=None):
    """CNN-like batch spherical convolution with zonal filters.

    (f * g)_l^m = sum_c 2 pi sqrt(4 pi / (2l+1)) f_{c,l}^m g_{c,d,l}^0.

    Args:
        f: (batch, n, n, c) maps or (batch, S, L, L, c) coefficients (spectral input).
        g: (c, n, n, d) filter maps or (c, 1, L, 1, d) zonal coefficients
            (spectral filters, as from ``sph_harm_transform_batch(g, m0_only=True)``).
        harmonics_or_legendre: harmonics (S, L, L, n, n) for 'naive' (also only
            the layout S for 'sep'); default the full complex layout.
        method: 'naive' or 'sep'.
        spectral_pool: keep degrees < L / 2**spectral_pool and invert at
            n / 2**spectral_pool.
        harmonics_or_legendre_low: harmonics at the pooled resolution.

    Returns:
        (batch, n', n', d) maps, real for the real layout, complex otherwise.
    """
    _check_method(method)
    f, g = np.asarray(_numpy(f)), np.asarray(_numpy(g))
    harmonics_or_legendre = _numpy(harmonics_or_legendre)
    harmonics_or_legendre_low = _numpy(harmonics_or_legendre_low)
    if f.ndim == 5:
        cf = f
        if f.shape[2] != f.shape[3]:
            raise ValueError(f"spectral input f must be (batch, S, L, L, c), got shape {f.shape}")
    else:
        cf = sph_harm_transform_batch(f, method, harmonics_or_legendre)
    L = cf.shape[2]
    if g.ndim == 5:
        cg = g
    elif g.ndim == 4:
        if g.shape[1] != 2 * L:
            raise ValueError(f"filter g must be (c, n, n, d) with n={2 * L}, got shape {g.shape}")
        cg = sph_harm_transform_batch(g, method, harmonics_or_legendre, m0_only=True)
    else:
        raise ValueError(f"filter g must be (c, n, n, d) or (c, 1, L, 1, d), got shape {g.shape}")
    if cg.shape[0] != cf.shape[4] or cg.shape[2] != L:
        raise ValueError(f"filter {g.shape} does not match input {f.shape}: need "
                         f"{cf.shape[4]} input channels and {L} degrees")
    if spectral_pool < 0 or L % (2 ** spectral_pool):
        raise ValueError(f"spectral_pool={spectral_pool} invalid for L={L}")
    factor = tables.zonal_factor(L)
    kernel = cg[:, 0, :, 0, :] * factor[None, :, None]  # (c, L, d)
    cfg = np.einsum("bslmc,cld->bslmd", cf, kernel)
    Lp = L // 2 ** spectral_pool
    hol = harmonics_or_legendre
    if spectral_pool > 0:
        cfg = cfg[:, :, :Lp, :Lp]
        hol = harmonics_or_legendre_low
    if method == "naive" and hol is not None and np.shape(hol)[0] != cfg.shape[1]:
        raise ValueError(f"harmonics layout {np.shape(hol)[0]} does not match the coefficients' "
                         f"{cfg.shape[1]}")
    return sph_harm_inverse_batch(cfg, method, hol if method == "naive" else None)
