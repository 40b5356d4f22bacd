"""Real meshes: Sweet Home 3D's furniture libraries -> a ModelNet-style mesh tree.

The Debian package ``sweethome3d-furniture`` holds five furniture libraries
(``usr/share/sweethome3d/furniture/*.sh3f``, zip archives). Each archive has a
catalog ``PluginFurnitureCatalog.properties`` (Java properties: per item
``name#i``, ``category#i``, ``model#i`` = path of the item's OBJ inside the zip,
``width#i``/``depth#i``/``height#i`` in cm, optional ``modelRotation#i``,
``creator#i``; the archive's ``license``) and the OBJ models (y-up).

:func:`convert` writes ``<class>/{train,test}/<mesh>.off`` (what
``builder.build_from_tree`` and the rotation study read) and, beside the classes,
``LICENSES.csv`` (licence and creator of every written model), ``LEFT_OUT.csv``
(every catalog item not written, with the reason), ``licenses/<archive>.txt``
(each archive's LICENSE.TXT) and ``furniture.json`` (counts, source, options).

Geometry of each model, in this order:

1. ``modelRotation`` (nine numbers ``a b c d e f g h i``) is the 3x3 matrix with
   rows ``(a b c) (d e f) (g h i)``, applied to column vectors: ``v' = M v``.
   This is the convention that makes the rotated model's extents match the
   catalog's width (x), height (y) and depth (z); on the package, 33 items carry a
   rotation and :func:`rotation_convention_check` compares both readings.
2. y-up -> z-up: ``(x, y, z) -> (x, -z, y)`` (a proper rotation: the model's front,
   +z in Sweet Home 3D, becomes -y). Then x = width, y = depth, z = height.
3. A uniform scale to centimetres (geometric mean of the three catalog/model
   ratios; Sweet Home 3D would stretch each axis to the catalog size, we do not
   deform the model). ``aspect_error`` in LICENSES.csv is the largest relative
   deviation of the model's proportions from the catalog's.

Classes come from the item names through :data:`CLASS_RULES` (first matching rule
wins, whole words of the lower-cased name); :data:`EXCLUDE` names items that match
a rule's word but are not of its class. Identical geometries (the same vertex set
after the steps above, up to scale) are written once: the first in (archive,
item) order is kept and the others are listed in LEFT_OUT.csv. Classes with fewer
than ``min_per_class`` distinct meshes are left out. The split is deterministic:
within each class the meshes are ordered by a hash of (seed, archive, model path)
and the first ``round(test_fraction * n)`` go to test.
"""
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from ..errors import DataError, UserError
from . import archives
from .atomic_output import AtomicFolder

PACKAGE = 'sweethome3d-furniture'
INSTALLED_PATH = '/usr/share/sweethome3d/furniture'
CATALOG = 'PluginFurnitureCatalog.properties'
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_MIN_PER_CLASS = 15
DEFAULT_SEED = 0
MAX_OBJ_BYTES = 256 << 20  # one model's OBJ file
MAX_SIZE_CM = 1e5  # a catalog size above 1 km is not furniture

# (class, words): an item belongs to the first class one of whose words is a
# word of its lower-cased name. Order matters ("desk lamp" is a lamp, "glass door
# cabinet" a cabinet, "futon couch" a sofa, "bedside table" a table).
CLASS_RULES = (
    ('person', ('female', 'male', 'boy', 'girl', 'mannequin')),
    ('lamp', ('lamp', 'lamppost', 'light', 'lights', 'spotlight', 'lantern', 'chandelier')),
    ('plant', ('plant', 'plants', 'tree', 'bamboo', 'cactus', 'ficus', 'yucca', 'orchids', 'tulips',
               'flowers', 'lily', 'spathiphyllum', 'acacia', 'cypress', 'poplar', 'pine', 'maple',
               'beech', 'blossom', 'hedge', 'bush')),
    ('cabinet', ('cabinet', 'wardrobe', 'bookcase', 'shelves', 'cupboard', 'dresser', 'chest')),
    ('sofa', ('sofa', 'couch')),
    ('bed', ('bed', 'crib', 'futon')),
    ('armchair', ('armchair',)),
    ('chair', ('chair',)),
    ('table', ('table', 'desk')),
    ('window', ('window',)),
    ('door', ('door',)),
)

# Lower-cased phrases: an item whose name contains one is left out, with the reason.
EXCLUDE = (
    ('table tennis', 'a game, not a table'),
    ('football table', 'a game, not a table'),
    ('pool table', 'a game, not a table'),
    ('table fan', 'a fan, not a table'),
    ('chest freezer', 'an appliance, not a cabinet'),
    ('window blind', 'a window accessory, not a window'),
    ('window shutter', 'a window accessory, not a window'),
    ('shower door', 'part of a shower, not a door'),
)


class FurnitureError(UserError):
    """The furniture package or an archive cannot be used (one line naming it)."""


@contextlib.contextmanager
def _archive_errors():
    """:class:`~.archives.ArchiveError` as :class:`FurnitureError` (the same line)."""
    try:
        yield
    except archives.ArchiveError as err:
        raise FurnitureError(str(err)) from None


def classify(name):
    """(class or None, reason): the class of a catalog item name by :data:`CLASS_RULES`."""
    low = ' '.join(name.lower().split())
    for phrase, reason in EXCLUDE:
        if phrase in low:
            return None, f'excluded: {reason}'
    words = set(re.findall(r"[a-z]+", low))
    for cls, keys in CLASS_RULES:
        if words & set(keys):
            return cls, ''
    return None, 'name matches no class of the mapping table'


# ---------------------------------------------------------------- reading


def parse_properties(text):
    """Java .properties text -> dict (comments, continuation lines, \\uXXXX and \\t/\\n escapes)."""
    props = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if not line or line[0] in '#!':
            continue
        while _ends_with_continuation(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip()
            i += 1
        m = re.match(r'((?:[^\\=:\s]|\\.)*)\s*[=:\s]\s*(.*)$', line, re.S)
        key, value = (m.group(1), m.group(2)) if m else (line, '')
        props[_unescape(key)] = _unescape(value)
    return props


def _ends_with_continuation(line):
    n = len(line) - len(line.rstrip('\\'))
    return n % 2 == 1


def _unescape(s):
    def repl(m):
        c = m.group(1)
        if len(c) == 5:  # uXXXX
            return chr(int(c[1:], 16))
        return {'t': '\t', 'n': '\n', 'r': '\r', 'f': '\f'}.get(c, c)
    return re.sub(r'\\(u[0-9a-fA-F]{4}|.)', repl, s)


def read_catalog(archive_path, zf):
    """Items of one archive's catalog: list of dicts (index, name, category, model, dims, ...)."""
    try:
        raw = zf.read(CATALOG)
    except KeyError:
        raise FurnitureError(f'{archive_path}: no {CATALOG} in the archive (not a furniture library)')
    props = parse_properties(raw.decode('latin-1'))
    items = []
    for key in props:
        if not key.startswith('name#'):
            continue
        suffix = key[5:]  # the item's fields share this suffix exactly ('7', not '07' or '-0')
        try:
            i = int(suffix)
        except ValueError:
            continue
        get = lambda k, default=None: props.get(f'{k}#{suffix}', default)  # noqa: E731
        try:
            dims = tuple(float(get(k)) for k in ('width', 'depth', 'height'))
        except (TypeError, ValueError):
            dims = None
        rot = get('modelRotation')
        items.append({'index': i, 'name': get('name').strip(), 'category': get('category', ''),
                      'id': get('id', ''), 'model': get('model'), 'dims': dims,
                      'model_rotation': rot.split() if rot else None,
                      'creator': get('creator', ''),
                      'license': props.get('license', '').strip()})
    if not items:
        raise FurnitureError(f'{archive_path}: {CATALOG} lists no item')
    return sorted(items, key=lambda it: it['index'])


def parse_obj(data, name='model.obj'):
    """Vertices (n, 3) and triangles (m, 3) of an OBJ file's bytes (polygons fan-triangulated).

    Raises DataError naming ``name`` if the file has no vertex, no face, a bad
    number or a face index out of range.
    """
    verts, faces = [], []
    lineno = 0
    try:
        for lineno, line in enumerate(data.decode('latin-1').splitlines(), 1):
            if line.startswith('v '):
                coords = [float(t) for t in line.split()[1:4]]
                if len(coords) < 3:
                    raise ValueError(f'a vertex needs 3 coordinates, got {len(coords)}')
                verts.append(coords)
            elif line.startswith('f '):
                idx = []
                for tok in line.split()[1:]:
                    k = int(tok.split('/')[0])
                    idx.append(k - 1 if k > 0 else len(verts) + k)
                faces.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, len(idx) - 1))
    except ValueError as e:
        raise DataError(f'{name}: line {lineno}: cannot parse OBJ ({e})', path=name)
    v = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    if any(not 0 <= i < len(v) for face in faces for i in face):
        raise DataError(f'{name}: face index out of range ({len(v)} vertices)', path=name)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(v) == 0 or len(f) == 0:
        raise DataError(f'{name}: no triangle in the OBJ file ({len(v)} vertices, {len(f)} faces)', path=name)
    if not np.all(np.isfinite(v)):
        raise DataError(f'{name}: non-finite vertex coordinates', path=name)
    used = np.unique(f)
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]


def rotation_matrix(numbers, name='item'):
    """The 3x3 ``modelRotation`` matrix (row-major: rows (a b c) (d e f) (g h i))."""
    try:
        m = np.asarray([float(t) for t in numbers], dtype=np.float64)
    except ValueError:
        m = np.zeros(0)
    if m.size != 9:
        raise DataError(f'{name}: modelRotation must hold nine numbers, got {" ".join(numbers)!r}')
    return m.reshape(3, 3)


Y_UP_TO_Z_UP = np.array([[1., 0., 0.], [0., 0., -1.], [0., 1., 0.]])  # (x, y, z) -> (x, -z, y)


def upright(vertices, model_rotation=None):
    """Vertices turned upright (``modelRotation`` as ``M v``) and then y-up -> z-up."""
    v = vertices if model_rotation is None else vertices @ model_rotation.T
    return v @ Y_UP_TO_Z_UP.T


def extents(v):
    return v.max(axis=0) - v.min(axis=0)


def catalog_fit(v_zup, dims):
    """(uniform scale to the catalog's cm, largest relative deviation of the proportions).

    ``v_zup``: upright z-up vertices (x = width, y = depth, z = height); ``dims``:
    (width, depth, height).
    """
    ext = extents(v_zup)
    dims = np.asarray(dims, dtype=np.float64)
    ok = (ext > 0) & (dims > 0)
    if not ok.any():
        return 1.0, float('nan')
    ratios = dims[ok] / ext[ok]
    scale = float(np.exp(np.log(ratios).mean()))
    return scale, float(np.abs(ratios / scale - 1).max())


def geometry_key(v_zup, decimals=3):
    """Hash of the set of vertices centred and scaled to a unit bounding box (identical geometry)."""
    lo, hi = v_zup.min(axis=0), v_zup.max(axis=0)
    size = float((hi - lo).max()) or 1.0
    q = np.round((v_zup - (lo + hi) / 2) / size, decimals) + 0.0  # + 0.0: no -0.0
    q = np.unique(q, axis=0)
    return hashlib.sha1(q.astype('<f8').tobytes()).hexdigest()


def rotation_convention_check(v, model_rotation, dims):
    """Aspect errors of the two readings of ``modelRotation`` ('rows', 'columns') against ``dims``."""
    out = {}
    for label, m in (('rows', model_rotation), ('columns', model_rotation.T)):
        out[label] = catalog_fit(upright(v, m), dims)[1]
    return out


def write_off(path, vertices, faces):
    with open(path, 'w') as f:
        f.write(f'OFF\n{len(vertices)} {len(faces)} 0\n')
        np.savetxt(f, vertices, fmt='%.5g')
        np.savetxt(f, np.column_stack([np.full(len(faces), 3), faces]), fmt='%d')


# ---------------------------------------------------------------- sources


def find_archives(source=None, workdir=None, progress=True):
    """Paths of the ``.sh3f`` archives of ``source`` (a .deb, a folder, an .sh3f, or None).

    None: the installed package (:data:`INSTALLED_PATH`) if present, otherwise
    ``apt-get download sweethome3d-furniture`` into ``workdir``. A .deb is
    unpacked into ``workdir``. Returns (archives sorted, description of the source).
    """
    if source is None:
        if os.path.isdir(INSTALLED_PATH) and _sh3f_under(INSTALLED_PATH):
            return _sh3f_under(INSTALLED_PATH), INSTALLED_PATH
        deb = download_deb(workdir, progress=progress)
        return extract_deb(deb, workdir), f'apt-get download {PACKAGE} ({os.path.basename(deb)})'
    if not os.path.exists(source):
        raise FileNotFoundError(f'{source}: no such file or folder (give the {PACKAGE} .deb, an '
                                'extracted folder or the installed path)')
    if os.path.isdir(source):
        found = _sh3f_under(source)
        if not found:
            raise FurnitureError(f'{source}: no .sh3f furniture archive under this folder')
        return found, source
    if source.lower().endswith('.sh3f'):
        return [source], source
    return extract_deb(source, workdir), source


def _sh3f_under(root):
    found = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        found.extend(os.path.join(d, f) for f in sorted(files) if f.lower().endswith('.sh3f'))
    return sorted(found, key=lambda p: os.path.basename(p).lower())


def download_deb(workdir, package=PACKAGE, progress=True):
    """``apt-get download PACKAGE`` into ``workdir``; the path of the .deb."""
    apt = shutil.which('apt-get')
    if apt is None:
        raise FurnitureError(f'no package manager: apt-get not found; download the {package} .deb '
                             'elsewhere and pass its path')
    if progress:
        print(f'downloading {package} with apt-get ...', file=sys.stderr)
    proc = subprocess.run([apt, 'download', package], cwd=workdir, capture_output=True, text=True,
                          errors='replace')
    debs = [f for f in os.listdir(workdir) if f.endswith('.deb')]
    if proc.returncode != 0 or not debs:
        text = ' '.join((proc.stderr or proc.stdout or '').split())
        if 'unable to locate' in text.lower() or 'no packages found' in text.lower():
            raise FurnitureError(f'package {package} not found by apt-get (run apt-get update, or enable the '
                                 f'repository that has it): {text}')
        raise FurnitureError(f'apt-get download {package} failed (exit {proc.returncode}): {text}')
    return os.path.join(workdir, sorted(debs)[0])


def _is_sh3f(name):
    return name.lower().endswith('.sh3f')


def extract_deb(deb, workdir):
    """The ``.sh3f`` archives inside a Debian package, unpacked into ``workdir``.

    Reads the ``ar`` archive and its ``data.tar.{xz,gz,bz2,}`` with the standard
    library (``dpkg-deb -x`` for other compressions, when present), with the checks of
    :mod:`.archives` (member names, links, sizes).
    """
    with _archive_errors():
        return _extract_deb(deb, workdir)


def _extract_deb(deb, workdir):
    name, blob = archives.deb_data(deb)
    out = os.path.join(workdir, 'deb')
    os.makedirs(out, exist_ok=True)
    found = []
    if name in archives.STDLIB_TARS:
        where = f'{deb} ({name})'
        with archives.open_tar(blob, where) as tar:
            budget = [archives.MAX_UNPACKED]
            for m in archives.tar_members(tar, where, _is_sh3f):
                dest = os.path.join(out, os.path.basename(m.name))
                archives.copy_member(tar, m, dest, where, budget)
                found.append(dest)
    else:
        dpkg = shutil.which('dpkg-deb')
        if dpkg is None:
            raise FurnitureError(f'{deb}: {name} needs dpkg-deb to unpack; extract the package and pass the folder')
        proc = subprocess.run([dpkg, '-x', deb, out], capture_output=True, text=True, errors='replace')
        if proc.returncode != 0:
            raise FurnitureError(f'{deb}: dpkg-deb -x failed: {" ".join(proc.stderr.split())}')
        archives.check_links_under(out, _is_sh3f)
        found = _sh3f_under(out)
    if not found:
        raise FurnitureError(f'{deb}: no .sh3f furniture archive in the package')
    return sorted(found, key=lambda p: os.path.basename(p).lower())


# ---------------------------------------------------------------- conversion


def _slug(text):
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-') or 'item'


def _split_rank(seed, archive, model):
    return hashlib.sha1(f'{seed}:{archive}:{model}'.encode()).hexdigest()


def collect(sh3f_paths, progress=True, warn=None):
    """Read, classify, turn upright and deduplicate every catalog item of the ``.sh3f`` archives.

    Returns (kept, left_out, skipped): ``kept`` dicts have 'vertices' (cm, z-up),
    'faces', 'class' and the catalog fields; ``left_out`` and ``skipped`` are dicts
    with 'archive', 'index', 'name', 'model', 'reason'. An unreadable OBJ is
    skipped (``warn`` is called with a line naming it); a corrupt archive raises
    FurnitureError naming it.
    """
    catalogs = []
    try:
        for path in sh3f_paths:
            with _archive_errors():
                zf = archives.open_zip(path)
            catalogs.append((path, zf, None))
            try:
                catalogs[-1] = (path, zf, read_catalog(path, zf))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
                raise FurnitureError(f'{path}: corrupt archive ({e})')
    except BaseException:
        for _, zf, _ in catalogs:
            zf.close()
        raise
    total = sum(len(items) for _, _, items in catalogs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc='furniture models', unit='model', file=sys.stderr)
    if warn is None:  # a line of its own, not glued to the progress bar
        warn = (lambda line: bar.write(line, file=sys.stderr)) if bar is not None else (
            lambda line: print(line, file=sys.stderr))
    kept, left_out, skipped, seen = [], [], [], {}
    try:
        for path, zf, items in catalogs:
            arch = os.path.splitext(os.path.basename(path))[0]
            licence_text = _read_licence(zf)
            for it in items:
                if bar is not None:
                    bar.update(1)
                rec = dict(it, archive=arch, licence_text=licence_text)
                cls, reason = classify(it['name'])
                if cls is None:
                    left_out.append(dict(rec, reason=reason))
                    continue
                where = f'{path}:{_printable(it["model"])} (item {it["index"]} {it["name"]!r})'
                try:
                    _, rot = check_catalog_values(it, where)
                    v, f = _read_model(zf, it, where)
                except (DataError, zipfile.BadZipFile, EOFError, OSError, KeyError,
                        NotImplementedError, RuntimeError) as e:
                    msg = str(e) if isinstance(e, DataError) else f'{where}: {type(e).__name__}: {e}'
                    warn(f'skipped {msg}')
                    skipped.append(dict(rec, reason=msg))
                    continue
                vz = upright(v, rot)
                scale, aspect = catalog_fit(vz, it['dims']) if it['dims'] else (1.0, float('nan'))
                vz = vz * scale
                key = geometry_key(vz)
                if key in seen:
                    first = seen[key]
                    left_out.append(dict(rec, reason=f'duplicate geometry of {first["archive"]} item '
                                                     f'{first["index"]} {first["name"]!r}'))
                    continue
                rec.update(vertices=vz, faces=f, **{'class': cls, 'aspect_error': aspect, 'scale': scale,
                                                    'rotated': rot is not None})
                seen[key] = rec
                kept.append(rec)
    finally:
        if bar is not None:
            bar.close()
        for _, zf, _ in catalogs:
            zf.close()
    return kept, left_out, skipped


def _printable(text):
    """``text`` on one line: control characters as escapes (a catalog value may hold ``\\n``)."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _read_licence(zf):
    for n in zf.namelist():
        if os.path.basename(n).upper() in ('LICENSE.TXT', 'LICENSE'):
            return zf.read(n).decode('latin-1')
    return ''


def _read_model(zf, item, where):
    model = item['model']
    if not model:
        raise DataError(f'{where}: the catalog gives no model path')
    name = model.lstrip('/')
    why = archives.unsafe_name(name)
    if why:
        raise DataError(f'{where}: the model path is {why}; not read')
    if not name.lower().endswith('.obj'):
        raise DataError(f'{where}: not an OBJ model')
    try:
        size = zf.getinfo(name).file_size
    except KeyError:
        raise DataError(f'{where}: model file missing from the archive')
    if size > MAX_OBJ_BYTES:
        raise DataError(f'{where}: the OBJ file has {size} bytes, more than the {MAX_OBJ_BYTES} read')
    return parse_obj(zf.read(name), where)


def check_catalog_values(item, where):
    """The item's sizes (finite, > 0, at most :data:`MAX_SIZE_CM`) and ``modelRotation`` (nine
    finite numbers forming a rotation or a reflection) as arrays; DataError naming the item."""
    dims = item['dims']
    if dims is not None:
        bad = [f'{k} {v!r}' for k, v in zip(('width', 'depth', 'height'), dims)
               if not (np.isfinite(v) and 0 < v <= MAX_SIZE_CM)]
        if bad:
            raise DataError(f'{where}: catalog size {", ".join(bad)} is not a size in (0, {MAX_SIZE_CM:g}] cm')
    rot = None
    if item['model_rotation']:
        rot = rotation_matrix(item['model_rotation'], where)
        if not np.all(np.isfinite(rot)) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3):
            raise DataError(f'{where}: modelRotation {" ".join(item["model_rotation"])!r} is not a rotation')
    return dims, rot


def assign_splits(kept, test_fraction=DEFAULT_TEST_FRACTION, seed=DEFAULT_SEED):
    """Set 'split' of each kept item: per class, hash order, the first round(f*n) are test."""
    by_class = {}
    for rec in kept:
        by_class.setdefault(rec['class'], []).append(rec)
    for recs in by_class.values():
        recs.sort(key=lambda r: _split_rank(seed, r['archive'], r['model']))
        n_test = int(round(test_fraction * len(recs)))
        if len(recs) >= 2:
            n_test = min(max(n_test, 1), len(recs) - 1)
        for j, r in enumerate(recs):
            r['split'] = 'test' if j < n_test else 'train'


LICENCE_FIELDS = ('file', 'class', 'split', 'name', 'creator', 'licence', 'archive', 'catalog_id',
                  'model', 'width_cm', 'depth_cm', 'height_cm', 'aspect_error', 'model_rotation')
LEFT_OUT_FIELDS = ('archive', 'index', 'name', 'category', 'creator', 'model', 'reason')


def convert(out_dir, source=None, *, test_fraction=DEFAULT_TEST_FRACTION, min_per_class=DEFAULT_MIN_PER_CLASS,
            seed=DEFAULT_SEED, overwrite=False, progress=True, command=None):
    """Write the furniture mesh tree to ``out_dir`` atomically; return the summary dict.

    ``source``: the package's .deb, a folder holding .sh3f archives (extracted
    package, installed path) or one .sh3f; None: installed package or apt-get
    download. The tree is written in a hidden folder beside ``out_dir`` and put in
    place when complete (:mod:`.atomic_output`); an existing non-empty ``out_dir`` is
    replaced only with ``overwrite``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
    out = AtomicFolder(out_dir, overwrite=overwrite, holder='furniture import', noun='mesh tree')
    with out, tempfile.TemporaryDirectory(prefix='furniture-') as work:
        archives, source_desc = find_archives(source, work, progress=progress)
        kept, left_out, skipped = collect(archives, progress=progress)
        counts = {}
        for r in kept:
            counts[r['class']] = counts.get(r['class'], 0) + 1
        small = {c for c, n in counts.items() if n < min_per_class}
        for r in [r for r in kept if r['class'] in small]:
            left_out.append(dict(r, reason=f'class {r["class"]!r} has {counts[r["class"]]} distinct meshes '
                                           f'(< --min_per_class {min_per_class})'))
        kept = [r for r in kept if r['class'] not in small]
        if not kept:
            raise FurnitureError(f'no class with at least {min_per_class} readable meshes in {source_desc}')
        assign_splits(kept, test_fraction, seed)
        used = set()
        for r in sorted(kept, key=lambda r: (r['archive'].lower(), r['index'])):
            base = f'{_slug(r["archive"])}-{r["index"]:03d}-{_slug(r["name"])}'
            r['file'] = f'{r["class"]}/{r["split"]}/{base}.off'
            assert r['file'] not in used
            used.add(r['file'])
        return _write_tree(out.stage, kept, left_out, skipped, source_desc, archives,
                           dict(test_fraction=test_fraction, min_per_class=min_per_class, seed=seed),
                           command, progress)


def _write_tree(stage, kept, left_out, skipped, source_desc, archives, options, command, progress):
    kept = sorted(kept, key=lambda r: r['file'])
    it = kept
    if progress:
        from tqdm import tqdm
        it = tqdm(kept, desc='writing .off', unit='mesh', file=sys.stderr)
    for r in it:
        path = os.path.join(stage, r['file'])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_off(path, r['vertices'], r['faces'])
    with open(os.path.join(stage, 'LICENSES.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(LICENCE_FIELDS)
        for r in kept:
            w.writerow([r['file'], r['class'], r['split'], r['name'], r['creator'], r['license'], r['archive'],
                        r['id'], r['model'], *(f'{d:g}' for d in r['dims']), f'{r["aspect_error"]:.3f}',
                        ' '.join(r['model_rotation'] or [])])
    with open(os.path.join(stage, 'LEFT_OUT.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(LEFT_OUT_FIELDS)
        for r in sorted(left_out + skipped, key=lambda r: (r['archive'].lower(), r['index'])):
            w.writerow([r['archive'], r['index'], r['name'], r['category'], r['creator'], r['model'], r['reason']])
    os.makedirs(os.path.join(stage, 'licenses'))
    seen = set()
    for r in kept + left_out + skipped:
        if r['archive'] not in seen:
            seen.add(r['archive'])
            with open(os.path.join(stage, 'licenses', r['archive'] + '.txt'), 'w') as f:
                f.write(r['licence_text'])
    classes = sorted({r['class'] for r in kept})
    counts = {c: {s: sum(1 for r in kept if r['class'] == c and r['split'] == s) for s in ('train', 'test')}
              for c in classes}
    summary = {
        'source': source_desc,
        'archives': [os.path.basename(a) for a in archives],
        'options': options,
        'command': command,
        'classes': classes,
        'counts': counts,
        'n_meshes': len(kept),
        'n_left_out': len(left_out),
        'left_out_reasons': _reason_counts(left_out),
        'skipped': [{'model': r['model'], 'archive': r['archive'], 'reason': r['reason']} for r in skipped],
        'rotated_items': sum(1 for r in kept if r['rotated']),
        'class_rules': [[c, list(words)] for c, words in CLASS_RULES],
        'exclude': [list(e) for e in EXCLUDE],
    }
    with open(os.path.join(stage, 'furniture.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


def _reason_counts(left_out):
    out = {}
    for r in left_out:
        key = r['reason'].split(' of ')[0] if r['reason'].startswith('duplicate') else r['reason']
        key = re.sub(r"^class '[a-z]+' has \d+", 'class has too few', key)
        out[key] = out.get(key, 0) + 1
    return out


def print_summary(summary, out_dir, file=sys.stdout):
    print(f'wrote {summary["n_meshes"]} meshes in {len(summary["classes"])} classes to {out_dir} '
          f'(source: {summary["source"]})', file=file)
    print(f'{"class":<10} {"train":>5} {"test":>5}', file=file)
    for c in summary['classes']:
        n = summary['counts'][c]
        print(f'{c:<10} {n["train"]:>5} {n["test"]:>5}', file=file)
    print(f'left out: {summary["n_left_out"]} items (LEFT_OUT.csv)', file=file)
    for reason, n in sorted(summary['left_out_reasons'].items(), key=lambda kv: -kv[1]):
        print(f'  {n:4d}  {reason}', file=file)
    if summary['skipped']:
        print(f'skipped {len(summary["skipped"])} unreadable model(s):', file=file)
        for s in summary['skipped']:
            print(f'  {s["reason"]}', file=file)
