"""Cached tables for spherical harmonic transforms on the Driscoll-Healy grid.

Every table is computed once per argument tuple (``functools.lru_cache``) and
shared by all callers: the NumPy reference functions in ``spherical``, the
keras transforms in ``sht`` and therefore every layer of a model.  Returned
arrays are marked read-only so that a caller cannot corrupt the cache.

Conventions (fixed for the project):

* grid: n x n, n = 2b, polar (colatitude) of index j is ``pi*j/n``, azimuth of
  index k is ``2*pi*k/n``; maps are laid out ``(azimuth, polar)``.
* degrees l = 0..L-1 with L = n // 2.
* harmonics: orthonormal complex Y_l^m with the Condon-Shortley phase
  (SciPy's ``sph_harm_y``), ``Y_l^m(polar, az) = P[m, l, j] * exp(i m az)``.
* "shtools layout" of coefficients / harmonics: ``(S, L, L, ...)`` where index
  0 holds m >= 0 at ``[0, l, m]`` and index 1 holds m < 0 at ``[1, l, |m|]``;
  S = 1 (real layout, m >= 0 only) or S = 2 (full complex layout).
"""
import functools

import numpy as np
from scipy.special import sph_harm_y

METHODS = ("naive", "sep")


def check_n(n, name="n"):
    """Return ``n`` as int after checking that it is an even grid size >= 2."""
    if int(n) != n or n < 2 or n % 2:
        raise ValueError(f"{name} must be an even grid size >= 2 (n = 2 * bandwidth), got {n!r}")
    return int(n)


def check_method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _readonly(a):
    a.setflags(write=False)
    return a


def grid(n):
    """(polar, azimuth) 1-D arrays of the DH grid of size n."""
    n = check_n(n)
    j = np.arange(n)
    return j * np.pi / n, j * 2 * np.pi / n


@functools.lru_cache(maxsize=None)
def dh_weights(n):
    """Driscoll-Healy quadrature weights a_j, shape (n,), along the polar axis.

    a_j = (2 sqrt(2) / n) sin(theta_j) sum_{l<n/2} sin((2l+1) theta_j) / (2l+1).
    """
    n = check_n(n)
    theta = np.pi * np.arange(n) / n
    l = np.arange(n // 2)
    s = (np.sin(np.outer(theta, 2 * l + 1)) / (2 * l + 1)).sum(axis=1)
    return _readonly(2 * np.sqrt(2) / n * np.sin(theta) * s)


def forward_scale(n):
    """Scale of the forward transform: c = forward_scale * sum f * a_j * conj(Y)."""
    return 2 * np.sqrt(2) * np.pi / n


@functools.lru_cache(maxsize=None)
def legendre(n):
    """Orthonormal associated Legendre values ``P[m, l, j]``, shape (L, L, n), float64.

    ``Y_l^m(polar_j, az) = P[m, l, j] exp(i m az)`` for m >= 0 (zero where m > l);
    for m < 0, ``P_l^{-m} = (-1)^m P_l^m``.  Computed directly with SciPy,
    without building the dense harmonics.
    """
    n = check_n(n)
    L = n // 2
    polar, _ = grid(n)
    m = np.arange(L)[:, None, None]
    l = np.arange(L)[None, :, None]
    P = sph_harm_y(l, m, polar[None, None, :], 0.0).real
    P = np.where(m <= l, P, 0.0)
    return _readonly(np.ascontiguousarray(P))


@functools.lru_cache(maxsize=None)
def harmonics(n, real=False):
    """Dense harmonics in shtools layout, ``(S, L, L, n_azimuth, n_polar)`` complex128.

    S = 1 when ``real`` (m >= 0 only), else 2 (index 1 holds Y_l^{-|m|}).
    """
    n = check_n(n)
    L = n // 2
    P = legendre(n)  # (m, l, j)
    _, az = grid(n)
    m = np.arange(L)
    e = np.exp(1j * np.outer(m, az))  # (m, k)
    pos = np.einsum("mlj,mk->lmkj", P, e)  # (l, m, k, j)
    if real:
        return _readonly(pos[None])
    sign = (-1.0) ** m
    neg = np.conj(pos) * sign[None, :, None, None]
    neg[:, 0] = 0  # m = 0 is stored in index 0 only
    return _readonly(np.stack([pos, neg]))


def n_layouts(real):
    return 1 if real else 2


def _signed_orders(n, real):
    """Orders grouped as q = s*L + m: signed orders (S*L,), Legendre (S*L, L, n), order weights (S*L,)."""
    L = n // 2
    P = legendre(n)  # (m, l, j)
    m = np.arange(L)
    if real:
        msigned, leg = m, P
    else:
        neg = P * ((-1.0) ** m)[:, None, None]
        neg[0] = 0.0  # order 0 lives in s = 0 only
        msigned, leg = np.concatenate([m, -m]), np.concatenate([P, neg])
    w = np.tile(_order_weights(L, real), n_layouts(real))
    return msigned, leg, w


def _order_weights(L, real):
    w = np.ones(L)
    if real:
        w[1:] = 2.0  # c_{-m} Y_{-m} + c_m Y_m = 2 Re(c_m Y_m) for real maps
    return w


@functools.lru_cache(maxsize=None)
def naive_matrices(n, real=True, dtype="float32"):
    """Real matrices of the dense ("naive") transform.

    Returns ``(fwd, inv)``:
      * ``fwd`` (n*n, 2*S*L*L): row ``k*n + j`` (azimuth k, polar j); column
        ``(r, s, l, m)`` flattened, r = 0 real part, r = 1 imaginary part of c.
      * ``inv`` (2*S*L*L, n*n): real map from the stacked (re, im) coefficients;
        for the real layout the orders m > 0 are doubled.
    """
    n = check_n(n)
    L, S = n // 2, n_layouts(real)
    _, az = grid(n)
    msigned, leg, w = _signed_orders(n, real)
    ang = np.outer(msigned, az)  # (q, k)
    trig = np.stack([np.cos(ang), -np.sin(ang)]).reshape(2, S, L, n).astype(dtype)
    lw = (forward_scale(n) * leg * dh_weights(n)).reshape(S, L, L, n).astype(dtype)
    fwd = np.einsum("smlj,rsmk->kjrslm", lw, trig).reshape(n * n, 2 * S * L * L)
    li = (leg * w[:, None, None]).reshape(S, L, L, n).astype(dtype)
    # Re(c Y) = Re(c) Re(Y) - Im(c) Im(Y); trig[1] holds -sin(m az) = -Im(Y) / P
    inv = np.einsum("smlj,rsmk->rslmkj", li, trig).reshape(2 * S * L * L, n * n)
    return (_readonly(np.ascontiguousarray(fwd)), _readonly(np.ascontiguousarray(inv)))


@functools.lru_cache(maxsize=None)
def sep_tables(n, real=True, dtype="float32"):
    """Tables of the separation-of-variables transform (the same for both layouts).

    The azimuth DFT is split by the parity of the order (one radix-2 step):
    with k = kh * n/2 + k' (kh = 0, 1), ``exp(-i m az_k) = (-1)^(m*kh) exp(-i m az_k')``,
    so even orders need ``f[k'] + f[k' + n/2]`` and odd orders ``f[k'] - f[k' + n/2]``,
    each a DFT of length n/2 (half the work of the full DFT).  Orders are grouped
    as ``q = kf * L2 + mh`` with parity ``kf``, ``m = 2 mh + kf`` and
    ``L2 = ceil(L / 2)``; rows of orders m >= L (only when L is odd) are zero.
    Returns a dict of:
      * ``fold`` (2, 2): ``[[1, 1], [1, -1]]``, the radix-2 butterfly (forward
        and inverse).
      * ``dft`` (2, 2*L2, n/2): ``[kf, (mh, r), k']``: ``cos(m az_k')`` for r = 0,
        ``-sin(m az_k')`` for r = 1 (real, imaginary part of ``exp(-i m az_k')``).
      * ``leg_fwd`` (4*L2, L, n): ``[(q, r), l, j] = forward_scale * a_j * P_l^m(polar_j)``,
        the same for both parts r (real, imaginary), so that the Legendre step is one
        matmul batched over ``(kf, mh, r)`` (the order in which the DFT leaves them).
      * ``leg_inv`` (4*L2, n, L): ``[(q, r), j, l] = w_m P_l^m(polar_j)``, w = 2 for
        m > 0 (the real layout: c_{-m} Y_{-m} + c_m Y_m = 2 Re(c_m Y_m)), else 1.
      * ``idft`` (2, n/2, 2*L2): ``[kf, k', (mh, r)]``: ``cos(m az_k')`` for r = 0,
        ``-sin(m az_k')`` for r = 1, so that it maps (Re G, Im G) to ``Re(G exp(i m az_k'))``.
    ``real`` is accepted for symmetry with ``naive_matrices``; the full layout is
    derived from the real one in ``sht``.
    """
    n = check_n(n)
    if real is not True:
        return sep_tables(n, True, dtype)
    L, h = n // 2, n // 2
    L2 = (L + 1) // 2
    _, az = grid(n)
    m = 2 * np.arange(L2)[None, :] + np.arange(2)[:, None]  # (kf, mh)
    valid = (m < L).astype(float)
    ang = m[:, :, None] * az[None, None, :h]  # (kf, mh, k')
    trig = np.stack([np.cos(ang), -np.sin(ang)], axis=2) * valid[:, :, None, None]  # (kf, mh, r, k')
    dft = trig.reshape(2, 2 * L2, h)
    idft = np.transpose(trig, (0, 3, 1, 2)).reshape(2, h, 2 * L2)
    P = np.zeros((2 * L2, L, n))
    P[:L] = legendre(n)  # (m, l, j), rows m >= L stay zero
    order = m.reshape(-1)  # q = kf * L2 + mh -> m
    P = P[order]
    leg_fwd = forward_scale(n) * P * dh_weights(n)[None, None, :]
    leg_inv = np.transpose(P * _order_weights(2 * L2, True)[order][:, None, None], (0, 2, 1))
    # one copy per part (r = re, im) so that the Legendre matmuls batch over (kf, mh, r)
    leg_fwd = np.repeat(leg_fwd, 2, axis=0)
    leg_inv = np.repeat(leg_inv, 2, axis=0)
    fold = np.array([[1.0, 1.0], [1.0, -1.0]])
    out = {"fold": fold, "dft": dft, "leg_fwd": leg_fwd, "leg_inv": leg_inv, "idft": idft}
    return {k: _readonly(np.ascontiguousarray(v, dtype=dtype)) for k, v in out.items()}


def table_nbytes(n, method, real=True, dtype="float32"):
    """Bytes held by the cached tables that a keras transform of (n, method, real) uses.

    Builds the tables (and keeps them cached); ``estimate_table_nbytes`` gives the
    same number from the shapes alone.
    """
    check_method(method)
    if method == "naive":
        return int(sum(t.nbytes for t in naive_matrices(n, real, dtype)))
    return int(sum(t.nbytes for t in sep_tables(n, real, dtype).values()))


def estimate_table_nbytes(n, method, real=True, dtype="float32"):
    """Bytes of the tables of a keras transform of (n, method, real), from their shapes only.

    Nothing is built (``table_nbytes`` builds and measures). With L = n / 2, S = 1
    (real) or 2 and ``itemsize`` 4 (float32) or 8:

    * 'naive': two dense matrices, ``4 S n^2 L^2 itemsize`` (float32, real layout:
      64 MiB at n = 64, 1 GiB at n = 128, 16 GiB at n = 256);
    * 'sep': Legendre tables ``8 ceil(L/2) L n itemsize`` plus DFT tables
      ``8 ceil(L/2) (n/2) itemsize`` (the same for both layouts; float32: 1 MiB at
      n = 64, 8 MiB at n = 128, 64 MiB at n = 256).
    """
    n = check_n(n)
    check_method(method)
    itemsize = np.dtype(dtype).itemsize
    L = n // 2
    if method == "naive":
        return int(4 * n_layouts(real) * n * n * L * L * itemsize)
    L2 = (L + 1) // 2
    return int((4 + 8 * L2 * (n // 2) + 8 * L2 * L * n) * itemsize)


@functools.lru_cache(maxsize=None)
def degree_interpolation(nw, L):
    """(nw, L) matrix linearly interpolating nw values at linspace(0,1,nw) onto linspace(0,1,L)."""
    if nw < 1 or L < 1 or nw > L:
        raise ValueError(f"need 1 <= nw <= L for the filter interpolation, got nw={nw}, L={L}")
    if nw == 1:
        return _readonly(np.ones((1, L)))
    xin = np.linspace(0, 1, nw)
    xout = np.linspace(0, 1, L)
    M = np.stack([np.interp(xout, xin, np.eye(nw)[i]) for i in range(nw)])
    return _readonly(M)


@functools.lru_cache(maxsize=None)
def zonal_factor(L):
    """Per-degree factor of the zonal-filter convolution, 2 pi sqrt(4 pi / (2l + 1)), shape (L,)."""
    l = np.arange(L)
    return _readonly(2 * np.pi * np.sqrt(4 * np.pi / (2 * l + 1)))
