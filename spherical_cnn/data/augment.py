"""The authors' kind of augmentation: anisotropic scaling and a shifted sphere centre.

Each rendered instance of a mesh is made in this order (all of it on top of the
builder's rotation; see ``raycast.cast_augmented`` for the ray geometry):

1. the mesh is normalised as always (``meshes.normalize_mesh``): centre of its
   bounding box at the origin, farthest vertex at distance 1;
2. **anisotropic scaling** in the mesh's own frame: vertex ``v`` becomes
   ``diag(f) v`` with factors ``f = (fx, fy, fz)`` drawn independently and
   uniformly from ``[LO, HI]`` (``--aniso_scale LO,HI``); the result is then
   rescaled uniformly so that its farthest vertex is at distance 1 again, so
   the mesh still fills the unit ball and stays inside the ray start radius
   ``R0`` (only the ratios of the factors change the shape). The factors
   actually applied, ``scale = f / max_v |diag(f) v|``, are what the record
   stores as ``scale``. Scaling about the origin keeps the bounding-box centre
   at the origin;
3. **rotation** ``R`` (stored as ``rotation``): ``p = R diag(scale) v``;
4. **shifted sphere centre**: the rays start on the sphere of radius ``R0``
   around ``c`` (stored as ``center``, in the frame of the rotated mesh, which
   is the frame of the map's grid directions) and are aimed at ``c``; ``c`` is
   drawn uniformly from the ball of radius ``MAX`` (``--center_shift MAX``):
   direction uniform on the sphere, radius ``MAX * u**(1/3)``. ``MAX`` must be
   below ``R0 - 1`` so that every ray starts outside the unit ball.

Parameters are drawn from a generator seeded with (seed, CRC32 of the mesh's
relative path, 2), separate from the rotations' stream, so that switching
augmentation on does not change the rotations, and the output does not depend
on the number of workers. Scales and centres are rounded to float32 before
rendering, so that the float32 values stored in a record reproduce its map
exactly.

Which splits: ``train`` and ``val`` (val is drawn like the train instances);
the test meshes are never scaled or shifted (only rotated).

The ``original`` preset (``--augment original``): 48 instances per training
mesh (``--n_rotations 48``, i.e. 48 train shards, one per epoch of
``params/training.txt``'s 48 epochs), SO(3) rotations, scale factors in
[0.8, 1.2] and centre shifts up to 0.1. The authors' training set holds 48
augmented instances per mesh made with a random rotation, anisotropic scaling
and a shifted sphere centre, but their mesh-to-sphere code and the ranges they
used were never published: the two ranges are OUR ESTIMATE (moderate values
common for ModelNet augmentation; the shift bound also has to stay below
``R0 - 1 = 0.2``).
"""
import numpy as np

PRESETS = {
    'none': {},
    'original': {'rotations': 'so3', 'n_rotations': 48, 'aniso_scale': (0.8, 1.2), 'center_shift': 0.1},
}
AUGMENTED_SPLITS = ('train', 'val')
ORDER = ('normalise into the unit ball; scale by diag(f) in the mesh frame, then rescale so the farthest '
         'vertex is at distance 1 (stored scale = the factors applied); rotate (stored rotation); cast rays '
         'from the sphere of radius r0 around the shifted centre c (stored center, rotated frame), aimed at c')


def parse_range(text, flag='--aniso_scale'):
    """``'LO,HI'`` -> (lo, hi) floats; ValueError naming ``flag`` if malformed."""
    parts = str(text).split(',')
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise ValueError(f'{flag} takes two numbers LO,HI (e.g. 0.8,1.2), got {text!r}')
    return values


def check(aniso_scale, center_shift, r0):
    """Validate the ranges; returns ``(aniso_scale or None, center_shift)``.

    Raises ValueError (one line, naming the flag) for factors that are not
    ``0 < LO <= HI`` or a shift outside ``[0, r0 - 1)``.
    """
    if aniso_scale is not None:
        lo, hi = (float(v) for v in aniso_scale)
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f'--aniso_scale LO,HI needs 0 < LO <= HI, got {lo},{hi}')
        aniso_scale = (lo, hi)
    center_shift = float(center_shift or 0.0)
    if not (np.isfinite(center_shift) and 0 <= center_shift < r0 - 1):
        raise ValueError(f'--center_shift must be in [0, r0 - 1) = [0, {r0 - 1:.6g}) for --r0 {r0:g} '
                         f'(every ray must start outside the unit ball), got {center_shift:g}')
    return aniso_scale, center_shift


def enabled(aniso_scale, center_shift):
    return aniso_scale is not None or bool(center_shift)


def sample(rng, n, aniso_scale, center_shift):
    """Raw per-axis factors ``(n, 3)`` and sphere centres ``(n, 3)`` for ``n`` instances.

    Factors are uniform in ``aniso_scale`` (ones if None); centres uniform in the
    ball of radius ``center_shift`` (zeros if 0). Always draws from ``rng`` in the
    same order (factors, directions, radii), so each range only changes its own values.
    """
    rng = np.random.default_rng(rng)
    u = rng.uniform(size=(n, 3))
    w = rng.standard_normal((n, 3))
    r = rng.uniform(size=n)
    factors = np.ones((n, 3)) if aniso_scale is None else aniso_scale[0] + (aniso_scale[1] - aniso_scale[0]) * u
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    w = np.where(norm > 0, w / np.where(norm > 0, norm, 1), [[1.0, 0.0, 0.0]])
    centers = float(center_shift) * np.cbrt(r)[:, None] * w
    return factors, centers


def renormalised_scales(vertices, factors):
    """Factors ``(n, 3)`` times the uniform rescale that puts the farthest scaled vertex at distance 1."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(factors, dtype=np.float64)
    radius = np.sqrt(((v[None, :, :] * f[:, None, :]) ** 2).sum(-1).max(1))
    return f / radius[:, None]


def manifest_entry(preset, aniso_scale, center_shift):
    """What ``manifest.json`` records about the augmentation (ranges, splits, order)."""
    on = enabled(aniso_scale, center_shift)
    return {'preset': preset, 'aniso_scale': list(aniso_scale) if aniso_scale is not None else None,
            'center_shift': float(center_shift or 0.0), 'splits': list(AUGMENTED_SPLITS) if on else [],
            'order': ORDER if on else None}
