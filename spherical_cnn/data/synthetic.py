"""A procedural dataset of 3D shapes built from trimesh primitives.

Twelve furniture/object classes (``CLASS_NAMES``) assembled from boxes,
cylinders, cones, spheres, capsules, tori and surfaces of revolution. Every
sample draws its own proportions, part counts, thicknesses and optional parts,
then gets a random anisotropic stretch, a small shear and a smooth vertex
perturbation, so classes overlap in their coarse silhouette (table / stool /
bench, chair / sofa / bench, bottle / vase / lamp, ...) and must be told apart
by their structure. Meshes are centred and scaled into the unit ball, so size
does not give the class away.

Shapes are built upright (+z up) in a canonical pose; rotations are applied
later by the dataset builder.
"""
import os

import numpy as np
import trimesh

from . import meshes

CLASS_NAMES = ('airplane', 'bed', 'bench', 'bookshelf', 'bottle', 'chair',
               'lamp', 'mug', 'sofa', 'stool', 'table', 'vase')

# the default dataset (see builder.build_synthetic)
DEFAULT_TRAIN_PER_CLASS = 60
DEFAULT_TEST_PER_CLASS = 15
DEFAULT_SEED = 0


# --- primitives -------------------------------------------------------------------

def _T(center):
    t = np.eye(4)
    t[:3, 3] = center
    return t


def box(extents, center):
    return trimesh.creation.box(extents=extents, transform=_T(center))


def cyl(radius, height, center, sections=16):
    """Cylinder along z."""
    return trimesh.creation.cylinder(radius=radius, height=height, sections=sections, transform=_T(center))


def rod(p0, p1, radius, sections=10):
    """Cylinder between two points."""
    return trimesh.creation.cylinder(radius=radius, segment=np.array([p0, p1], dtype=float), sections=sections)


def sphere(radius, center, subdivisions=2):
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius).apply_translation(center)


def capsule(radius, length, center, axis=2):
    """Capsule whose total length along ``axis`` is ``length``."""
    m = trimesh.creation.capsule(height=max(length - 2 * radius, 1e-3), radius=radius, count=[12, 12])
    m.apply_translation([0, 0, -m.bounds[:, 2].mean()])
    if axis != 2:
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0] if axis == 0 else [1, 0, 0]))
    return m.apply_translation(center)


def torus(major, minor, center, axis=2):
    m = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=20, minor_sections=8)
    if axis != 2:
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0] if axis == 0 else [1, 0, 0]))
    return m.apply_translation(center)


def lathe(profile, sections=20, z0=0.0):
    """Surface of revolution about z from a (radius, height) profile."""
    p = np.asarray(profile, dtype=float)
    return trimesh.creation.revolve(p, sections=sections).apply_translation([0, 0, z0])


def _join(parts):
    return trimesh.util.concatenate([p for p in parts if p is not None])


def _legs(rng, half_w, half_d, height, thick, z_top, round_legs=None, inset=None):
    """Four legs under the corners of a (2*half_w x 2*half_d) top at height z_top."""
    round_legs = rng.random() < 0.5 if round_legs is None else round_legs
    inset = rng.uniform(0.0, 0.15) if inset is None else inset
    splay = rng.uniform(0, 0.08)
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * half_w * (1 - inset) - sx * thick, sy * half_d * (1 - inset) - sy * thick
            top = np.array([x, y, z_top])
            bottom = np.array([x * (1 + splay), y * (1 + splay), z_top - height])
            if round_legs:
                parts.append(rod(bottom, top, thick))
            else:
                parts.append(box([2 * thick, 2 * thick, height], (top + bottom) / 2))
    return parts


# --- classes ----------------------------------------------------------------------

def _table(rng):
    w, d = rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.1)
    h, t = rng.uniform(0.55, 0.95), rng.uniform(0.03, 0.09)
    round_top = rng.random() < 0.25
    top = cyl(d / 2 * 1.2, t, [0, 0, h - t / 2], sections=24) if round_top else box([w, d, t], [0, 0, h - t / 2])
    if round_top:
        w = d * 1.2 / np.sqrt(2) * 2
        d = w
    if rng.random() < 0.25:  # pedestal
        parts = [top, cyl(rng.uniform(0.04, 0.1), h - t, [0, 0, (h - t) / 2]),
                 cyl(rng.uniform(0.2, 0.4) * d, 0.04, [0, 0, 0.02], sections=20)]
    else:
        parts = [top] + _legs(rng, w / 2, d / 2, h - t, rng.uniform(0.025, 0.06), h - t)
        if rng.random() < 0.35:  # lower shelf
            parts.append(box([w * 0.85, d * 0.85, t * 0.7], [0, 0, rng.uniform(0.1, 0.35) * h]))
    return _join(parts)


def _chair(rng):
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    h, t = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.1)
    back_h = rng.uniform(0.35, 0.7)
    leg = rng.uniform(0.02, 0.04)
    parts = [box([w, d, t], [0, 0, h])] + _legs(rng, w / 2, d / 2, h - t / 2, leg, h - t / 2, inset=0.02)
    bt = rng.uniform(0.03, 0.07)
    yb = -d / 2 + bt / 2
    if rng.random() < 0.5:  # solid back, maybe tilted
        back = box([w, bt, back_h], [0, 0, 0])
        back.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(-0.05, 0.3), [1, 0, 0]))
        parts.append(back.apply_translation([0, yb, h + t / 2 + back_h / 2]))
    else:  # slats between two posts and a top rail
        n = rng.integers(2, 6)
        for x in (-w / 2 + leg, w / 2 - leg):
            parts.append(box([2 * leg, 2 * leg, back_h], [x, yb, h + back_h / 2]))
        parts.append(box([w, bt, rng.uniform(0.05, 0.12)], [0, yb, h + back_h]))
        for x in np.linspace(-w / 2, w / 2, n + 2)[1:-1]:
            parts.append(box([rng.uniform(0.02, 0.05), bt / 2, back_h], [x, yb, h + back_h / 2]))
    if rng.random() < 0.3:  # armrests
        ah = rng.uniform(0.18, 0.28)
        for sx in (-1, 1):
            parts.append(box([0.05, d, 0.04], [sx * w / 2, 0, h + ah]))
            parts.append(box([0.04, 0.04, ah], [sx * w / 2, d / 2 - 0.04, h + ah / 2]))
    return _join(parts)


def _stool(rng):
    h = rng.uniform(0.45, 0.85)
    r, t = rng.uniform(0.15, 0.25), rng.uniform(0.03, 0.08)
    round_seat = rng.random() < 0.7
    seat = cyl(r, t, [0, 0, h], sections=20) if round_seat else box([2 * r, 2 * r, t], [0, 0, h])
    parts = [seat]
    n_legs = rng.choice([3, 4]) if round_seat else 4
    splay = rng.uniform(1.0, 1.6)
    leg = rng.uniform(0.015, 0.035)
    for a in 2 * np.pi * np.arange(n_legs) / n_legs + rng.uniform(0, np.pi):
        top = np.array([0.8 * r * np.cos(a), 0.8 * r * np.sin(a), h])
        bottom = np.array([splay * 0.8 * r * np.cos(a), splay * 0.8 * r * np.sin(a), 0])
        parts.append(rod(bottom, top, leg))
    if rng.random() < 0.5:  # foot ring
        z = rng.uniform(0.2, 0.45) * h
        rr = 0.8 * r * (splay + (1 - splay) * z / h)
        parts.append(torus(rr, leg * 0.8, [0, 0, z]))
    if rng.random() < 0.15:  # low back
        parts.append(box([2 * r, 0.03, rng.uniform(0.1, 0.25)], [0, -r, h + 0.1]))
    return _join(parts)


def _bench(rng):
    w, d = rng.uniform(1.1, 2.2), rng.uniform(0.3, 0.5)
    h, t = rng.uniform(0.38, 0.5), rng.uniform(0.04, 0.1)
    parts = []
    if rng.random() < 0.5:  # slatted seat
        n = rng.integers(2, 5)
        for y in np.linspace(-d / 2, d / 2, n + 1)[:-1] + d / (2 * n):
            parts.append(box([w, d / n * 0.8, t], [0, y, h]))
    else:
        parts.append(box([w, d, t], [0, 0, h]))
    if rng.random() < 0.5:  # slab legs
        for sx in (-1, 1):
            parts.append(box([rng.uniform(0.04, 0.1), d * 0.9, h], [sx * w * rng.uniform(0.35, 0.48), 0, h / 2]))
    else:
        parts += _legs(rng, w / 2, d / 2, h - t / 2, rng.uniform(0.02, 0.05), h - t / 2)
    if rng.random() < 0.4:  # backrest
        bh = rng.uniform(0.25, 0.45)
        parts.append(box([w, 0.04, bh * 0.6], [0, -d / 2, h + bh * 0.7]))
        for sx in (-1, 1):
            parts.append(box([0.05, 0.05, bh], [sx * w * 0.45, -d / 2, h + bh / 2]))
    return _join(parts)


def _bed(rng):
    L, W = rng.uniform(1.9, 2.2), rng.uniform(0.9, 1.9)
    fh, mh = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.3)
    parts = [box([W, L, fh], [0, 0, fh / 2 + 0.05]), box([W * 0.97, L * 0.97, mh], [0, 0, 0.05 + fh + mh / 2])]
    parts += _legs(rng, W / 2, L / 2, 0.06, 0.04, 0.06, inset=0.0)
    hb = rng.uniform(0.4, 0.9)
    parts.append(box([W * 1.02, rng.uniform(0.04, 0.1), hb + fh], [0, -L / 2, (hb + fh) / 2]))
    if rng.random() < 0.5:  # footboard
        fb = rng.uniform(0.1, 0.5) * hb
        parts.append(box([W * 1.02, 0.05, fb + fh], [0, L / 2, (fb + fh) / 2]))
    for i in range(rng.integers(0, 3)):  # pillows
        pw = W / 2.4
        p = sphere(1.0, [0, 0, 0], subdivisions=1)
        p.apply_scale([pw / 2, 0.18, 0.07])
        x = 0 if W < 1.2 else (-1) ** i * W / 4
        parts.append(p.apply_translation([x, -L / 2 + 0.3, 0.05 + fh + mh + 0.05]))
    return _join(parts)


def _bookshelf(rng):
    H, W, D = rng.uniform(1.0, 2.0), rng.uniform(0.5, 1.3), rng.uniform(0.22, 0.4)
    t = rng.uniform(0.02, 0.05)
    parts = [box([t, D, H], [-W / 2, 0, H / 2]), box([t, D, H], [W / 2, 0, H / 2]),
             box([W, D, t], [0, 0, H - t / 2]), box([W, D, t], [0, 0, rng.uniform(0.0, 0.1) + t / 2])]
    if rng.random() < 0.8:
        parts.append(box([W, t / 2, H], [0, -D / 2, H / 2]))
    n = rng.integers(2, 7)
    for z in np.linspace(0, H, n + 2)[1:-1] + rng.normal(0, 0.02, n):
        parts.append(box([W, D * 0.95, t], [0, 0, z]))
    if rng.random() < 0.3:  # a middle divider
        parts.append(box([t, D, H], [rng.uniform(-0.2, 0.2) * W, 0, H / 2]))
    return _join(parts)


def _lamp(rng):
    parts = []
    base_r, base_t = rng.uniform(0.1, 0.25), rng.uniform(0.02, 0.06)
    parts.append(cyl(base_r, base_t, [0, 0, base_t / 2], sections=20) if rng.random() < 0.7
                 else box([2 * base_r, 2 * base_r, base_t], [0, 0, base_t / 2]))
    H = rng.uniform(0.5, 1.6)
    stem_r = rng.uniform(0.01, 0.03)
    if rng.random() < 0.6:  # straight stem, shade on top
        parts.append(rod([0, 0, 0], [0, 0, H], stem_r))
        top = np.array([0.0, 0.0, H])
    else:  # bent arm
        elbow = np.array([rng.uniform(-0.1, 0.1), 0, H * rng.uniform(0.5, 0.8)])
        top = np.array([rng.uniform(0.2, 0.5), 0, H])
        parts += [rod([0, 0, 0], elbow, stem_r), rod(elbow, top, stem_r)]
    r_top, r_bot = rng.uniform(0.05, 0.2), rng.uniform(0.12, 0.35)
    sh = rng.uniform(0.15, 0.4)
    wall = 0.01
    shade = lathe([[r_bot, 0], [r_top, sh], [r_top - wall, sh], [r_bot - wall, 0]], sections=20)
    parts.append(shade.apply_translation(top - [0, 0, sh * rng.uniform(0.3, 0.7)]))
    if rng.random() < 0.5:
        parts.append(sphere(rng.uniform(0.03, 0.06), top))
    return _join(parts)


def _bottle(rng):
    r, h = rng.uniform(0.1, 0.22), rng.uniform(0.5, 1.0)
    body = rng.uniform(0.45, 0.75) * h
    neck_r = rng.uniform(0.2, 0.45) * r
    shoulder = rng.uniform(0.05, 0.25) * h
    square = rng.random() < 0.2
    prof = [[0, 0], [r * 0.95, 0], [r, 0.02], [r, body]]
    k = np.linspace(0, 1, 5)[1:]
    prof += [[neck_r + (r - neck_r) * np.cos(a * np.pi / 2), body + shoulder * np.sin(a * np.pi / 2)] for a in k]
    prof += [[neck_r, h], [neck_r * 1.1, h], [neck_r * 1.1, h + 0.03], [0, h + 0.03]]
    m = lathe(prof, sections=4 if square else 20)
    if square:
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 4, [0, 0, 1]))
    parts = [m]
    if rng.random() < 0.3:  # cap
        parts.append(cyl(neck_r * 1.25, rng.uniform(0.03, 0.08), [0, 0, h + 0.04]))
    return _join(parts)


def _mug(rng):
    r, h = rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.6)
    wall, bottom = rng.uniform(0.015, 0.04), rng.uniform(0.02, 0.05)
    taper = rng.uniform(0.75, 1.1)
    m = lathe([[0, 0], [r * taper, 0], [r, h], [r - wall, h], [r * taper - wall, bottom], [0, bottom]], sections=20)
    hr = rng.uniform(0.3, 0.45) * h
    handle = torus(hr, rng.uniform(0.015, 0.035), [0, 0, 0], axis=1)
    if rng.random() < 0.3:  # squarer handle
        handle.apply_scale([0.7, 1.0, 1.0])
    handle.apply_translation([r * (1 + taper) / 2 + hr * 0.55, 0, h * rng.uniform(0.45, 0.6)])
    return _join([m, handle])


def _vase(rng):
    h = rng.uniform(0.6, 1.4)
    z = np.linspace(0, h, 12)
    r0 = rng.uniform(0.12, 0.3)
    freq, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    r = r0 * (1 + rng.uniform(0.2, 0.6) * np.sin(freq * np.pi * z / h + phase)) + rng.normal(0, 0.01, len(z))
    r = np.clip(r, 0.04, None)
    r[-1] *= rng.uniform(1.0, 1.4)  # lip
    wall = 0.015
    outer = np.stack([r, z], 1)
    inner = np.stack([r - wall, z], 1)[::-1][:-1]
    depth = rng.uniform(0.3, 0.8) * h  # how deep the opening goes
    inner = inner[inner[:, 1] >= h - depth]
    prof = np.concatenate([[[0, 0]], outer, inner, [[0, inner[-1, 1]]]])
    parts = [lathe(prof, sections=20)]
    if rng.random() < 0.3:  # foot
        parts.append(cyl(r[0] * 1.2, 0.04, [0, 0, 0.02]))
    return _join(parts)


def _sofa(rng):
    L, D = rng.uniform(1.4, 2.6), rng.uniform(0.75, 1.0)
    sh, bh = rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.55)
    arm_w, arm_h = rng.uniform(0.08, 0.25), rng.uniform(0.1, 0.3)
    bt = rng.uniform(0.12, 0.25)
    parts = [box([L, D, sh - 0.08], [0, 0, 0.08 + (sh - 0.08) / 2]),
             box([L, bt, bh + sh], [0, -D / 2 + bt / 2, (bh + sh) / 2 + 0.04])]
    if rng.random() < 0.85:
        for sx in (-1, 1):
            parts.append(box([arm_w, D, sh + arm_h], [sx * (L / 2 - arm_w / 2), 0, (sh + arm_h) / 2 + 0.04]))
    n = rng.integers(1, 4)
    inner = L - 2 * arm_w
    for x in np.linspace(-inner / 2, inner / 2, n + 1)[:-1] + inner / (2 * n):
        parts.append(box([inner / n * 0.96, D - bt, 0.1], [x, bt / 2, sh + 0.05]))
    parts += _legs(rng, L / 2, D / 2, 0.08, 0.03, 0.08, inset=0.02)
    if rng.random() < 0.3:  # chaise
        parts.append(box([L * 0.35, D * 0.8, sh], [L * 0.3, D * 0.8, sh / 2 + 0.04]))
    return _join(parts)


def _airplane(rng):
    fl, fr = rng.uniform(2.0, 3.2), rng.uniform(0.08, 0.2)
    parts = [capsule(fr, fl, [0, 0, 0], axis=0)]
    span, chord = rng.uniform(1.4, 3.2), rng.uniform(0.25, 0.6)
    sweep = rng.uniform(-0.1, 0.6)
    wx = rng.uniform(-0.2, 0.25) * fl
    wz = rng.uniform(-0.8, 0.8) * fr
    for sy in (-1, 1):
        wing = box([chord, span / 2, rng.uniform(0.02, 0.06)], [0, 0, 0])
        shear = np.eye(4)
        shear[0, 1] = sy * sweep  # sweep back along the span
        wing.apply_transform(shear)
        parts.append(wing.apply_translation([wx, sy * span / 4, wz]))
    tail_x = -fl / 2 + rng.uniform(0.1, 0.3)
    fin_h = rng.uniform(0.25, 0.6)
    parts.append(box([rng.uniform(0.2, 0.4), 0.03, fin_h], [tail_x, 0, fr + fin_h / 2 - 0.03]))
    ts = rng.uniform(0.4, 1.0)
    parts.append(box([rng.uniform(0.15, 0.3), ts, 0.03], [tail_x, 0, rng.choice([0.0, fr + fin_h * 0.9])]))
    n_eng = rng.choice([0, 2, 4])
    for i in range(n_eng):
        y = (-1) ** i * span * (0.15 if i < 2 else 0.3)
        parts.append(cyl(rng.uniform(0.05, 0.1), rng.uniform(0.25, 0.45), [0, 0, 0]).apply_transform(
            trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0])).apply_translation([wx + 0.1, y, wz - 0.1]))
    return _join(parts)


_BUILDERS = {'airplane': _airplane, 'bed': _bed, 'bench': _bench, 'bookshelf': _bookshelf,
             'bottle': _bottle, 'chair': _chair, 'lamp': _lamp, 'mug': _mug, 'sofa': _sofa,
             'stool': _stool, 'table': _table, 'vase': _vase}
assert tuple(sorted(_BUILDERS)) == CLASS_NAMES


def _deform(mesh, rng):
    """Random anisotropic stretch, small shear and a smooth vertex perturbation."""
    v = mesh.vertices.copy()
    a = np.diag(np.exp(rng.normal(0, 0.12, 3)))
    a += np.triu(rng.normal(0, 0.04, (3, 3)), 1)
    v = v @ a.T
    scale = np.linalg.norm(v - v.mean(0), axis=1).max()
    k = rng.normal(0, 2.0, (3, 3)) / scale
    phase = rng.uniform(0, 2 * np.pi, 3)
    v += rng.uniform(0, 0.02) * scale * np.sin(v @ k.T + phase)
    return trimesh.Trimesh(vertices=v, faces=mesh.faces, process=False)


def make_mesh(class_name, rng):
    """One random shape of ``class_name``, deformed, centred and scaled into the unit ball.

    Args:
      class_name: one of ``CLASS_NAMES``.
      rng: ``numpy.random.Generator`` or int seed (same seed, same mesh).
    """
    if class_name not in _BUILDERS:
        raise ValueError(f'unknown synthetic class {class_name!r}; expected one of {CLASS_NAMES}')
    rng = np.random.default_rng(rng)
    mesh = _deform(_BUILDERS[class_name](rng), rng)
    return meshes.normalize_mesh(mesh, name=f'synthetic {class_name}')


def mesh_seed(seed, class_name, split, index):
    """Deterministic seed of one synthetic mesh (independent of generation order)."""
    return [int(seed), CLASS_NAMES.index(class_name), ('train', 'test').index(split), int(index)]


def mesh_list(n_train_per_class, n_test_per_class):
    """``[(relative path, class, split, index)]`` of a synthetic ModelNet-style tree."""
    items = []
    for c in CLASS_NAMES:
        for split, n in (('train', n_train_per_class), ('test', n_test_per_class)):
            for i in range(n):
                items.append((f'{c}/{split}/{c}_{i + 1:04d}.off', c, split, i))
    return items


def write_mesh_tree(root, n_train_per_class, n_test_per_class, seed=DEFAULT_SEED):
    """Write a ModelNet-style tree ``root/<class>/{train,test}/<class>_NNNN.off``; returns the paths."""
    paths = []
    for rel, c, split, i in mesh_list(n_train_per_class, n_test_per_class):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        make_mesh(c, np.random.default_rng(mesh_seed(seed, c, split, i))).export(path, file_type='off')
        paths.append(path)
    return paths
