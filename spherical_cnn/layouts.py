"""Array layouts of the project and conversions to other libraries' orientation.

The project's layouts (stated once; docs/layouts.md has a picture):

* **maps**: ``(batch, n, n, channels)`` = (batch, **azimuth**, **polar**,
  channels) on the Driscoll-Healy (DH) grid of size n (even): ``maps[b, k, j, c]``
  is the value at polar angle (colatitude) ``pi * j / n`` and azimuth
  ``2 * pi * k / n``, i.e. at the unit vector
  ``(sin p cos a, sin p sin a, cos p)``. Row j = 0 is the north pole, the
  south pole (j = n) is not sampled. Real values (float32 / float64).
* **coefficients**: the "shtools layout" ``(S, L, L)`` per map with L = n / 2:
  ``[0, l, m]`` holds m >= 0, ``[1, l, |m|]`` holds m < 0; the real layout
  keeps index 0 only (S = 1; real maps have c_{l,-m} = (-1)^m conj(c_{lm})).
  Orthonormal complex harmonics with the Condon-Shortley phase. NumPy functions
  (``spherical``) use complex ``(batch, S, L, L, channels)``; the keras.ops
  transforms (``sht``) and layers use real ``(batch, 2, S, L, L, channels)``
  with axis 1 = (real part, imaginary part).

Other libraries put the polar angle first, and on a square grid a transposed
map passes every shape check while giving wrong coefficients. Convert with:

* pyshtools: ``SHGrid.from_array(a)`` wants ``a[j, k]`` (latitude rows from the
  north pole, longitude columns from 0), i.e. (polar, azimuth). A DH grid of
  pyshtools with ``sampling=1`` has the same sample positions as ours;
  ``extend=True`` grids (n + 1) x (n + 1) add the south pole row and the 360 deg
  column, which ``from_pyshtools`` drops. Complex coefficients of
  ``expand(normalization='ortho', csphase=-1)`` (``kind='complex'`` grids) are the
  project's full layout exactly; ``coeffs_from_pyshtools`` converts any ``SHCoeffs``
  (real kind, other normalizations) to them.
* torch-harmonics / e3nn: ``(batch, channels, nlat, nlon)`` (polar, azimuth
  last): ``to_polar_first(maps, channels_first=True)``. Only the axes are
  converted: the sample positions must agree too (torch-harmonics'
  ``grid='equiangular'`` samples both poles and e3nn's ``s2_grid`` has its own
  latitudes: neither is the DH grid; resample before converting).

torch-harmonics' coefficients (``RealSHT(..., norm='ortho', csphase=True)``:
``(batch, channels, lmax, mmax)`` complex, ``[.., l, m]`` for m >= 0) are the project's
real layout in another axis order: ``coeffs_to_torch_harmonics`` /
``coeffs_from_torch_harmonics`` (same values; equal to 2e-15 on the same function).

All conversions are exact (transposes and slices) and work on NumPy arrays and
keras tensors alike (``keras.ops``), except the pyshtools ones, which are NumPy.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ._types import ArrayLike, Tensor

__all__ = ["MAP_LAYOUT", "refuse_complex", "complex_to_channels", "to_polar_first",
           "from_polar_first", "to_pyshtools", "from_pyshtools", "coeffs_from_pyshtools",
           "coeffs_to_pyshtools", "coeffs_to_torch_harmonics", "coeffs_from_torch_harmonics"]

MAP_LAYOUT = "(batch, azimuth, polar, channels)"


def _is_complex(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return np.iscomplexobj(x)
    try:
        return "complex" in keras.backend.standardize_dtype(dtype)
    except ValueError:
        return "complex" in str(dtype)


def refuse_complex(x, who, fix=None):
    """Raise ``TypeError`` if ``x`` is complex: the real-arithmetic transforms would drop its imaginary part."""
    if _is_complex(x):
        fix = fix or ("convert it to real channels first: spherical_cnn.layouts.complex_to_channels(x) "
                      "([real, imag]) or, for the project's records, the --mag_ang conversion "
                      "([|x|, imag(x / |x|)])")
        raise TypeError(f"{who}: got complex input ({getattr(x, 'dtype', type(x))}); the transform "
                        f"works on real values and would drop the imaginary part; {fix}")


def complex_to_channels(x: Tensor, mode: str = "real_imag") -> Tensor:
    """Complex maps ``(batch, n, n, c)`` -> real ``(batch, n, n, 2c)`` (NumPy or keras.ops).

    mode 'real_imag': channels ``[Re x_0..Re x_{c-1}, Im x_0..Im x_{c-1}]``;
    'mag_ang': ``[|x|, imag(x / (|x| + 1e-8))]`` per channel, the demo's ``--mag_ang``
    (ray length and sine of the ray-normal angle for the ModelNet40 records).
    """
    if isinstance(x, np.ndarray):
        if mode == "real_imag":
            return np.concatenate([x.real, x.imag], axis=-1)
        if mode == "mag_ang":
            mag = np.abs(x)
            return np.concatenate([mag, (x / (mag + 1e-8)).imag], axis=-1)
    else:
        if mode == "real_imag":
            return ops.concatenate([ops.real(x), ops.imag(x)], axis=-1)
        if mode == "mag_ang":
            re, im = ops.real(x), ops.imag(x)
            mag = ops.sqrt(re * re + im * im)
            return ops.concatenate([mag, im / (mag + 1e-8)], axis=-1)
    raise ValueError(f"complex_to_channels: mode must be 'real_imag' or 'mag_ang', got {mode!r}")


def _transpose(x, perm):
    return np.transpose(x, perm) if isinstance(x, np.ndarray) else ops.transpose(x, perm)


def to_polar_first(maps: Tensor, channels_first: bool = False) -> Tensor:
    """Project maps ``(batch, azimuth, polar, channels)`` -> ``(batch, polar, azimuth, channels)``,
    or ``(batch, channels, polar, azimuth)`` with ``channels_first`` (torch-harmonics, e3nn)."""
    if len(maps.shape) != 4:
        raise ValueError(f"to_polar_first: maps must be {MAP_LAYOUT}, got shape {tuple(maps.shape)}")
    return _transpose(maps, (0, 3, 2, 1) if channels_first else (0, 2, 1, 3))


def from_polar_first(maps: Tensor, channels_first: bool = False) -> Tensor:
    """Inverse of ``to_polar_first``: ``(batch, polar, azimuth, channels)`` (or
    ``(batch, channels, polar, azimuth)`` with ``channels_first``) -> project layout."""
    if len(maps.shape) != 4:
        raise ValueError(f"from_polar_first: expected a 4-D array, got shape {tuple(maps.shape)}")
    return _transpose(maps, (0, 3, 2, 1) if channels_first else (0, 2, 1, 3))


def to_pyshtools(maps: ArrayLike) -> np.ndarray:
    """Project maps -> NumPy arrays for ``pyshtools.SHGrid.from_array``.

    ``(n, n)`` (azimuth, polar) -> ``(n, n)`` (polar, azimuth);
    ``(batch, n, n, channels)`` -> ``(batch, channels, n, n)`` so that
    ``SHGrid.from_array(out[b, c])`` is map b, channel c.
    """
    a = np.asarray(maps)
    if a.ndim == 2:
        return a.T
    if a.ndim == 4:
        return np.transpose(a, (0, 3, 2, 1))
    raise ValueError(f"to_pyshtools: maps must be (n, n) (azimuth, polar) or {MAP_LAYOUT}, got "
                     f"shape {a.shape}")


def _drop_extension(a):
    """(n+1, n+1) pyshtools extend=True grids -> (n, n); (n, 2n) sampling=2 grids are refused."""
    nlat, nlon = a.shape[-2:]
    if nlat % 2 and nlat == nlon:
        return a[..., :-1, :-1]
    if nlat != nlon or nlat % 2:
        raise ValueError(f"from_pyshtools: a DH grid with sampling=1 is n x n (or (n+1) x (n+1) with "
                         f"extend=True), got {nlat} x {nlon} (latitude x longitude); use sampling=1")
    return a


def from_pyshtools(grids: ArrayLike) -> np.ndarray:
    """pyshtools DH grids ``(n, n)`` / ``(batch, channels, n, n)`` (polar, azimuth) -> project maps.

    Accepts an ``SHGrid`` (its ``.data``), a ``(nlat, nlon)`` array (returns ``(n, n)``
    azimuth, polar) or ``(batch, channels, nlat, nlon)`` (returns ``(batch, n, n, channels)``).
    ``extend=True`` grids lose their last row and column.
    """
    a = np.asarray(getattr(grids, "data", grids))
    if a.ndim not in (2, 4):
        raise ValueError(f"from_pyshtools: expected (nlat, nlon) or (batch, channels, nlat, nlon), got "
                         f"shape {a.shape}")
    a = _drop_extension(a)
    return a.T if a.ndim == 2 else np.transpose(a, (0, 3, 2, 1))


def coeffs_from_pyshtools(coeffs):
    """pyshtools coefficients -> project full layout ``(1, 2, L, L, 1)`` complex (batch and
    channel axes of size 1), L = lmax + 1.

    ``coeffs``: an ``SHCoeffs`` of any kind, normalization and csphase (a real map's
    ``SHGrid.expand()`` gives ``kind='real'``): pyshtools converts it to
    ``kind='complex'``, ``normalization='ortho'``, ``csphase=-1`` first; or a complex
    array ``(2, lmax+1, lmax+1)`` already in that convention. A real array is refused:
    it holds real (cosine / sine) coefficients, which are not the complex ones.
    """
    if hasattr(coeffs, "coeffs") and hasattr(coeffs, "kind"):
        if (coeffs.kind, coeffs.normalization, coeffs.csphase) != ("complex", "ortho", -1):
            coeffs = coeffs.convert(kind="complex", normalization="ortho", csphase=-1)
        c = np.asarray(coeffs.coeffs)
    else:
        c = np.asarray(coeffs)
        if not np.iscomplexobj(c):
            raise ValueError("coeffs_from_pyshtools: got a real array; pyshtools' real coefficients "
                             "(kind='real') are not the complex ones: pass the SHCoeffs object, or "
                             "SHCoeffs.from_array(c).convert(kind='complex', normalization='ortho', "
                             "csphase=-1).coeffs")
    if c.ndim != 3 or c.shape[0] != 2 or c.shape[1] != c.shape[2]:
        raise ValueError(f"coeffs_from_pyshtools: expected (2, lmax+1, lmax+1), got shape {c.shape}")
    out = np.array(c, dtype=np.complex128)
    out[1, :, 0] = 0  # m = 0 lives at index 0 only
    return out[None, ..., None]


def coeffs_to_pyshtools(coeffs):
    """Project complex coefficients ``(S, L, L)`` or one map's ``(1, S, L, L, 1)`` -> pyshtools
    ``(2, L, L)`` (for ``SHCoeffs.from_array(c, normalization='ortho', csphase=-1)``).

    The real layout (S = 1, real maps) is completed with c_{l,-m} = (-1)^m conj(c_{lm}).
    """
    c = np.asarray(coeffs)
    if c.ndim == 5:
        if c.shape[0] != 1 or c.shape[-1] != 1:
            raise ValueError(f"coeffs_to_pyshtools: one map at a time, got shape {c.shape}")
        c = c[0, ..., 0]
    if c.ndim != 3 or c.shape[0] not in (1, 2) or c.shape[1] != c.shape[2]:
        raise ValueError(f"coeffs_to_pyshtools: expected (S, L, L) with S = 1 or 2, got shape {c.shape}")
    out = np.zeros((2,) + c.shape[1:], dtype=np.complex128)
    out[0] = c[0]
    if c.shape[0] == 2:
        out[1, :, 1:] = c[1, :, 1:]
    else:
        m = np.arange(c.shape[1])
        out[1, :, 1:] = (((-1.0) ** m)[None, :] * np.conj(c[0]))[:, 1:]
    return out  # pyshtools leaves [1, l, 0] zero


def coeffs_to_torch_harmonics(coeffs: Tensor) -> Tensor:
    """Project complex coefficients ``(batch, S, L, L, channels)`` -> torch-harmonics'
    ``(batch, channels, L, L)`` (``[b, c, l, m]``, m >= 0; its ``norm='ortho'``,
    ``csphase=True``: the same values). Index 0 of S (orders m >= 0) is taken; NumPy or
    keras.ops (complex tensors)."""
    if len(coeffs.shape) != 5 or coeffs.shape[1] not in (1, 2) or coeffs.shape[2] != coeffs.shape[3]:
        raise ValueError(f"coeffs_to_torch_harmonics: expected (batch, S, L, L, channels) complex, got "
                         f"shape {tuple(coeffs.shape)}")
    return _transpose(coeffs[:, 0], (0, 3, 1, 2))


def coeffs_from_torch_harmonics(coeffs: Tensor, L: int | None = None) -> Tensor:
    """torch-harmonics' ``(batch, channels, lmax, mmax)`` complex (``[b, c, l, m]``, m >= 0,
    ``norm='ortho'``, ``csphase=True``) -> the project's real layout ``(batch, 1, L, L,
    channels)``. L (default lmax) must be <= lmax; orders m >= mmax are zero and orders
    beyond L dropped (torch-harmonics' default mmax is nlon // 2 + 1)."""
    shape = tuple(coeffs.shape)
    if len(shape) != 4:
        raise ValueError(f"coeffs_from_torch_harmonics: expected (batch, channels, lmax, mmax), got "
                         f"shape {shape}")
    L = shape[2] if L is None else int(L)
    if L > shape[2]:
        raise ValueError(f"coeffs_from_torch_harmonics: L={L} > lmax={shape[2]}")
    c = coeffs[:, :, :L, :L]
    if c.shape[3] < L:  # fewer orders than degrees: the others are zero
        pad = [(0, 0)] * 3 + [(0, L - c.shape[3])]
        c = np.pad(c, pad) if isinstance(c, np.ndarray) else ops.pad(c, pad)
    return _transpose(c, (0, 2, 3, 1))[:, None]
