"""Cached tables for spherical harmonic transforms on the Driscoll-Healy grid.

Every table is computed once per argument tuple (``functools.lru_cache``) and
shared by all callers: the NumPy reference functions in ``spherical``, the
keras transforms in ``sht`` and therefore every layer of a model.  Returned
arrays are marked read-only so that a caller cannot corrupt the cache.

Conventions (fixed for the project):

* grid: n x n, n = 2b, polar (colatitude) of index j is ``pi*j/n``, azimuth of
  index k is ``2*pi*k/n``; maps are laid out ``(azimuth, polar)``.
* degrees l = 0..L-1 with L = n // 2 (the 'sep' tables also for fewer degrees,
  ``degrees`` < n // 2: the same coefficients, truncated; a nonlinearity's
  upsampled grid needs no more than its input's degrees).
* harmonics: orthonormal complex Y_l^m with the Condon-Shortley phase
  (SciPy's ``sph_harm_y``), ``Y_l^m(polar, az) = P[m, l, j] * exp(i m az)``.
* "shtools layout" of coefficients / harmonics: ``(S, L, L, ...)`` where index
  0 holds m >= 0 at ``[0, l, m]`` and index 1 holds m < 0 at ``[1, l, |m|]``;
  S = 1 (real layout, m >= 0 only) or S = 2 (full complex layout).
"""
import functools

import numpy as np

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
    for m < 0, ``P_l^{-m} = (-1)^m P_l^m``.  Computed by the three-term recurrence
    (``legendre_values``), equal to SciPy's ``sph_harm_y`` to rounding, without
    building the dense harmonics.
    """
    n = check_n(n)
    return _readonly(legendre_values(n, n // 2))


def legendre_values(n, L):
    """``P[m, l, j]`` for m, l < L at the n polar rows of the DH grid, (L, L, n) float64, not cached.

    The standard recurrences of the orthonormal functions with the Condon-Shortley phase:
    ``P_m^m = (-1)^m sqrt((2m+1)/(4 pi) prod_{k<=m} (2k-1)/(2k)) sin^m``,
    ``P_{m+1}^m = sqrt(2m+3) cos P_m^m`` and, for l >= m + 2,
    ``P_l^m = a (cos P_{l-1}^m - b P_{l-2}^m)`` with ``a = sqrt((4l^2-1)/(l^2-m^2))``,
    ``b = sqrt(((l-1)^2-m^2)/(4(l-1)^2-1))``: L vector steps instead of L^2 n
    evaluations of ``sph_harm_y`` (a second instead of a minute at n = 512).
    ``sin^m`` underflows to 0 only where the values are below 1e-300.
    """
    n = check_n(n)
    if int(L) != L or not 1 <= L <= n // 2:
        raise ValueError(f"degrees must be an integer in [1, n/2 = {n // 2}], got {L!r}")
    L = int(L)
    polar, _ = grid(n)
    x, sin = np.cos(polar), np.sin(polar)
    m = np.arange(L, dtype=np.float64)
    k = np.arange(1, L, dtype=np.float64)
    c = np.sqrt((2 * m + 1) / (4 * np.pi) * np.concatenate([[1.0], np.cumprod((2 * k - 1) / (2 * k))]))
    P = np.zeros((L, L, n))  # (m, l, j)
    with np.errstate(under="ignore"):
        P[np.arange(L), np.arange(L)] = ((-1.0) ** m * c)[:, None] * sin[None, :] ** m[:, None]
        for l in range(1, L):
            P[l - 1, l] = np.sqrt(2.0 * l + 1) * x * P[l - 1, l - 1]
            if l >= 2:
                mm = m[:l - 1, None]
                a = np.sqrt((4.0 * l * l - 1) / (l * l - mm * mm))
                b = np.sqrt(((l - 1.0) ** 2 - mm * mm) / (4.0 * (l - 1) ** 2 - 1))
                P[:l - 1, l] = a * (x * P[:l - 1, l - 1] - b * P[:l - 1, l - 2])
    return P


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


def _legendre_exact(n, L):
    """``legendre_values(n, L)`` with the pole and equator rows set to their exact values.

    At the north pole (j = 0) P_l^m vanishes for m > 0 and P_l^0(0) = sqrt((2l+1)/(4 pi));
    at the equator (j = n/2) P_l^m(pi/2) = 0 when l + m is odd.  The recurrence's values
    there differ from these by rounding only; the symmetric Legendre step relies on the zeros.
    Not cached: only the tables made from it are.
    """
    P = legendre_values(n, L)
    h = n // 2
    l = np.arange(L)
    P[:, :, 0] = 0.0
    P[0, :, 0] = np.sqrt((2 * l + 1) / (4 * np.pi))
    odd = (l[None, :] + l[:, None]) % 2 == 1  # [m, l]
    P[:, :, h][odd] = 0.0
    return _readonly(P)


LEGENDRE_ROWS = ("half", "all")
# the axes of the 'sep' transform's order-major layout, outer to inner, per Legendre step
ORDER_MAJOR_AXES = {"half": ("kf", "s", "mh", "r", "i"), "all": ("kf", "mh", "r", "i", "s")}


def check_legendre_rows(rows):
    if rows not in LEGENDRE_ROWS:
        raise ValueError(f"legendre_rows must be one of {LEGENDRE_ROWS}, got {rows!r}")
    return rows


def _parity_grouped(n, L):
    """Orders and Legendre values grouped by parity, shared by both Legendre steps.

    Returns ``(m, trig, P)``: ``m`` (2, L2) the order ``2 mh + kf``; ``trig``
    (kf, mh, r, k') = cos(m az_k'), -sin(m az_k') for k' < n/2 (zero rows where
    m >= L); ``P`` (kf, s, mh, i, j) = P_l^m(polar_j) with l = 2 i + s, for all n
    rows (pole and equator exact; zero where m >= L or l >= L). L: the degrees (<= n/2).
    """
    h = n // 2
    L2 = Lh = (L + 1) // 2
    _, az = grid(n)
    m = 2 * np.arange(L2)[None, :] + np.arange(2)[:, None]  # (kf, mh)
    valid = (m < L).astype(float)
    ang = m[:, :, None] * az[None, None, :h]  # (kf, mh, k')
    trig = np.stack([np.cos(ang), -np.sin(ang)], axis=2) * valid[:, :, None, None]  # (kf, mh, r, k')
    P = np.zeros((2 * L2, 2 * Lh, n))
    P[:L, :L] = _legendre_exact(n, L)  # (m, l, j)
    mm = m.reshape(2, 1, L2, 1)
    ll = (2 * np.arange(Lh)[None, :] + np.arange(2)[:, None]).reshape(1, 2, 1, Lh)  # (s, i)
    return m, trig, P[mm, ll]


def check_degrees(n, degrees):
    """The number of degrees L of a transform of grid n: ``degrees`` (1 <= L <= n/2) or n/2 for None."""
    n = check_n(n)
    if degrees is None:
        return n // 2
    if isinstance(degrees, bool) or int(degrees) != degrees or not 1 <= degrees <= n // 2:
        raise ValueError(f"degrees must be an integer in [1, n/2 = {n // 2}] for n = {n}, got {degrees!r}")
    return int(degrees)


def sep_tables(n, real=True, dtype="float32", legendre_rows="half", degrees=None):
    """Tables of the separation-of-variables transform (the same for both layouts).

    Both Legendre steps leave the coefficients in an order-major layout of
    ``(8 * L2, Lh)`` entries: ``((kf, s, mh, r), i)`` ('half') or
    ``((kf, mh, r, i), s)`` ('all', i.e. the degrees l in their natural order;
    ``ORDER_MAJOR_AXES``), with order m = 2 mh + kf,
    degree l = 2 i + s and r the real/imaginary part (L2 = Lh = ceil(L / 2); rows of
    orders or degrees >= L, present only when L is odd, are zero).  Two symmetries
    save work:

    * azimuth (one radix-2 step): with k = kh * n/2 + k' (kh = 0, 1),
      ``exp(-i m az_k) = (-1)^(m*kh) exp(-i m az_k')``, so even orders need
      ``f[k'] + f[k' + n/2]`` and odd orders ``f[k'] - f[k' + n/2]``, each a DFT of
      length n/2.  Orders are grouped by parity ``kf``.
    * equator (``legendre_rows='half'``): rows j and n - j of the DH grid are mirror
      images (polar pi - theta) and ``P_l^m(pi - theta) = (-1)^(l+m) P_l^m(theta)``,
      so the Legendre sum over the n rows becomes a sum over half of them of
      ``g_j + g_{n-j}`` (degrees with l + m even) or ``g_j - g_{n-j}`` (l + m odd):
      half the Legendre FLOPs, a quarter of its tables, but the maps' rows must be
      mirrored (a memory pass each way).  ``legendre_rows='all'`` sums over all n
      rows with the degrees of both parities in one matmul batched over (kf, mh, r)
      (no mirroring; twice the Legendre FLOPs).  Which is faster depends on n and the machine (``sht.HALF_ROWS_MIN_N``).

    With ``legendre_rows='half'`` both butterflies act on ``(kh, jh)`` where ``jh``
    picks the northern row j = j' + 1 (jh = 0) or its mirror n - 1 - j' (jh = 1);
    together they are one 4 x 4 matrix.  The forward transform reads the rows
    ``fwd_rows`` (the north pole, whose quadrature weight is exactly 0, is left
    out; the equator row n/2 is read twice, as its own mirror, and its weight
    halved).  The inverse computes rows j' = 0..n/2 (pole to equator) for both
    signs and picks the n rows of the map with ``inv_rows``; the pole
    (P_l^m(0) = 0 for m > 0) and the equator (P_l^m(pi/2) = 0 for l + m odd) use
    exact values.

    Returns a dict of, for ``legendre_rows='half'``:
      * ``fold`` (4, 4): ``[(kf, s), (kh, jh)] = (-1)^(kf*kh) * (-1)^((kf+s)*jh)``,
        the two butterflies (forward); ``unfold`` (4, 4) is its transpose, the inverse's.
      * ``fwd_rows`` (n,) int32: polar rows gathered by the forward transform,
        ``[1, ..., n/2, n-1, ..., n/2]``: ``(jh, j')`` flattened.
      * ``inv_rows`` (n,) int32: for each polar row j of the map, its index in the
        inverse's ``(jh, j')`` rows (j' = 0..n/2).
      * ``dft`` (4, 2*L2, n/2): ``[(kf, s), (mh, r), k']``: ``cos(m az_k')`` for r = 0,
        ``-sin(m az_k')`` for r = 1 (real, imaginary part of ``exp(-i m az_k')``),
        the same for both s.
      * ``leg_fwd`` (8*L2, Lh, n/2): ``[(kf, s, mh, r), i, j'] = forward_scale * a_j *
        P_l^m(polar_j)`` with j = j' + 1 (halved at the equator j = n/2), the same for
        both parts r, so that the Legendre step is one matmul batched over
        ``(kf, s, mh, r)`` (the order in which the DFT leaves them).
      * ``leg_inv`` (8*L2, n/2 + 1, Lh): ``[(kf, s, mh, r), j', i] = w_m P_l^m(polar_j')``,
        w = 2 for m > 0 (the real layout: c_{-m} Y_{-m} + c_m Y_m = 2 Re(c_m Y_m)), else 1.
      * ``idft`` (4, n/2, 2*L2): ``[(kf, s), k', (mh, r)]``: ``cos(m az_k')`` for r = 0,
        ``-sin(m az_k')`` for r = 1, so that it maps (Re G, Im G) to ``Re(G exp(i m az_k'))``.

    and for ``legendre_rows='all'``:
      * ``fold`` = ``unfold`` (2, 2): ``[kf, kh] = (-1)^(kf*kh)``;
      * ``dft`` (2, 2*L2, n/2) and ``idft`` (2, n/2, 2*L2): as above, one per kf;
      * ``leg_fwd`` (4*L2, 2*Lh, n): ``[(kf, mh, r), (i, s), j] = forward_scale * a_j *
        P_l^m(polar_j)``, one matmul batched over (kf, mh, r), the order in which the
        DFT leaves them;
      * ``leg_inv`` (4*L2, n, 2*Lh): ``[(kf, mh, r), j, (i, s)] = w_m P_l^m(polar_j)``.

    ``real`` is accepted for symmetry with ``naive_matrices``; the full layout is
    derived from the real one in ``sht``.  The 'half' tables hold 2 L2 Lh (n + 1)
    Legendre values per part, the 'all' tables 4 L2 Lh n.  ``degrees`` (default n/2):
    the transform keeps degrees and orders < ``degrees`` = L only (the same coefficients,
    truncated; tables and FLOPs shrink with L^2).
    """
    n = check_n(n)
    return _sep_tables(n, str(dtype), check_legendre_rows(legendre_rows), check_degrees(n, degrees))


@functools.lru_cache(maxsize=None)
def _sep_tables(n, dtype, legendre_rows, L):
    """``sep_tables`` for normalised arguments (one cache entry per table set)."""
    h = n // 2
    L2 = Lh = (L + 1) // 2
    m, trig, P = _parity_grouped(n, L)
    w = _order_weights(2 * L2, True)[m].reshape(2, 1, L2, 1, 1)
    if legendre_rows == "all":
        fold = np.array([[1.0, 1.0], [1.0, -1.0]])
        leg_fwd = np.transpose(forward_scale(n) * P * dh_weights(n), (0, 2, 3, 1, 4))  # (kf, mh, i, s, j)
        leg_inv = np.transpose(P * w, (0, 2, 4, 3, 1))  # (kf, mh, j, i, s)
        out = {"fold": fold, "unfold": fold.T,
               "dft": trig.reshape(2, 2 * L2, h),
               "idft": np.transpose(trig, (0, 3, 1, 2)).reshape(2, h, 2 * L2),
               "leg_fwd": np.repeat(leg_fwd[:, :, None], 2, axis=2).reshape(4 * L2, 2 * Lh, n),
               "leg_inv": np.repeat(leg_inv[:, :, None], 2, axis=2).reshape(4 * L2, n, 2 * Lh)}
        return {k: _readonly(np.ascontiguousarray(v, dtype=dtype)) for k, v in out.items()}
    dft = np.repeat(trig.reshape(2, 2 * L2, h), 2, axis=0)  # (kf, s) with s repeated
    idft = np.repeat(np.transpose(trig, (0, 3, 1, 2)).reshape(2, h, 2 * L2), 2, axis=0)
    a = dh_weights(n).copy()
    a[h] *= 0.5  # the equator row is read twice (as its own mirror)
    leg_fwd = forward_scale(n) * P[..., 1:h + 1] * a[1:h + 1]  # (kf, s, mh, i, j')
    leg_inv = np.swapaxes(P[..., :h + 1] * w, -1, -2)  # (kf, s, mh, j', i)
    # one copy per part (r = re, im) so that the Legendre matmuls batch over (kf, s, mh, r)
    leg_fwd = np.repeat(leg_fwd[:, :, :, None], 2, axis=3).reshape(8 * L2, Lh, h)
    leg_inv = np.repeat(leg_inv[:, :, :, None], 2, axis=3).reshape(8 * L2, h + 1, Lh)
    kf, s, kh, jh = np.meshgrid(*[np.arange(2)] * 4, indexing="ij")
    fold = ((-1.0) ** (kf * kh + (kf + s) * jh)).reshape(4, 4)
    fwd_rows = np.concatenate([np.arange(1, h + 1), np.arange(n - 1, h - 1, -1)])
    j = np.arange(n)
    inv_rows = np.where(j <= h, j, (h + 1) + (n - j))
    out = {"fold": fold, "unfold": fold.T, "dft": dft, "leg_fwd": leg_fwd, "leg_inv": leg_inv,
           "idft": idft}
    out = {k: _readonly(np.ascontiguousarray(v, dtype=dtype)) for k, v in out.items()}
    out["fwd_rows"] = _readonly(fwd_rows.astype("int32"))
    out["inv_rows"] = _readonly(inv_rows.astype("int32"))
    return out


# The 'sep' transform's default Legendre step: 'half' (equatorial symmetry) from this
# grid size up, 'all' below.  Chosen by measurement (docs/speed.md): on CPUs the
# mirror passes of 'half' cost more than the Legendre FLOPs they save at the sizes
# measured.
HALF_ROWS_MIN_N = 256


def default_legendre_rows(n):
    """The Legendre step ``get_transform`` uses for an n x n grid: 'half' or 'all'."""
    return "half" if check_n(n) >= HALF_ROWS_MIN_N else "all"


def table_nbytes(n, method, real=True, dtype="float32", legendre_rows=None, degrees=None):
    """Bytes held by the cached tables that a keras transform of (n, method, real) uses.

    Builds the tables (and keeps them cached); ``estimate_table_nbytes`` gives the
    same number from the shapes alone.  ``legendre_rows`` (for 'sep'): 'half',
    'all' or None (``default_legendre_rows(n)``).
    """
    check_method(method)
    if method == "naive":
        return int(sum(t.nbytes for t in naive_matrices(n, real, dtype)))
    rows = legendre_rows or default_legendre_rows(n)
    return int(sum(t.nbytes for t in sep_tables(n, real, dtype, rows, degrees).values()))


def estimate_table_nbytes(n, method, real=True, dtype="float32", legendre_rows=None, degrees=None):
    """Bytes of the tables of a keras transform of (n, method, real), from their shapes only.

    Nothing is built (``table_nbytes`` builds and measures). With L = n / 2, S = 1
    (real) or 2 and ``itemsize`` 4 (float32) or 8:

    * 'naive': two dense matrices, ``4 S n^2 L^2 itemsize`` (float32, real layout:
      64 MiB at n = 64, 1 GiB at n = 128, 16 GiB at n = 256);
    * 'sep': with L2 = ceil(L/2) and h = n/2, DFT tables ``16 L2 h`` entries
      ('half': one per (kf, s)) or ``8 L2 h`` ('all') and Legendre tables
      ``8 L2^2 (2h + 1)`` ('half': one hemisphere and the equator) or
      ``16 L2^2 n`` ('all'); the same for both layouts (float32, 'all': about 1 MiB
      at n = 64, 8 MiB at n = 128; 'half': 32 MiB at n = 256); L = ``degrees`` when given
      ('sep' only).
    """
    n = check_n(n)
    check_method(method)
    itemsize = np.dtype(dtype).itemsize
    L = n // 2 if method == "naive" else check_degrees(n, degrees)
    if method == "naive":
        return int(4 * n_layouts(real) * n * n * L * L * itemsize)
    rows = check_legendre_rows(legendre_rows or default_legendre_rows(n))
    L2 = (L + 1) // 2  # degrees of one parity of l + m
    h = n // 2  # rows of one hemisphere
    if rows == "all":
        floats = (8  # fold / unfold (2, 2) each
                  + 2 * 2 * 2 * L2 * h  # DFT and inverse DFT (2, 2 L2, h)
                  + 2 * 8 * L2 * L2 * n)  # Legendre (4 L2, 2 L2, n) and its inverse
        return int(floats * itemsize)
    floats = (32  # fold / unfold (4, 4) each
              + 2 * 4 * 2 * L2 * h  # DFT and inverse DFT (4, 2 L2, h)
              + 8 * L2 * L2 * h  # forward Legendre (8 L2, L2, h)
              + 8 * L2 * (h + 1) * L2)  # inverse Legendre (8 L2, h + 1, L2): equator row too
    return int(floats * itemsize + 2 * n * 4)  # + the int32 row orders


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
