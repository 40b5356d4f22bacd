"""Build a TFRecord dataset of spherical maps from meshes (a ModelNet-style tree or the synthetic set).

Output folder layout (read by ``spherical_cnn.datasets``):
  ``train_XXX.tfrecord``  shard i holds rotation i of every train mesh, shuffled
                          (the trainer reads one shard per epoch, cycling);
  ``val_000.tfrecord``    a held-out fraction of the TRAIN meshes (split by mesh,
                          stratified by class), ``n_test_rotations`` each, drawn
                          like the train rotations (``rotations``);
  ``test_000.tfrecord``   the test meshes, ``n_test_rotations`` each, drawn with
                          ``test_rotations`` (defaults to ``rotations``; use
                          rotations='z', test_rotations='so3' for z/SO(3));
  ``classes.txt``         one class name per line, label = line index (sorted);
  ``manifest.json``       how the folder was made (arguments, counts, R0, versions, ...).

Records: see ``records.py``; ``x`` is complex64 ``(res, res, 1)`` (azimuth,
polar, channel) from ``raycast.cast_rotated``, or ``(res, res, 2)`` with
``convex_hull`` (channel 1: the mesh's convex hull cast with the same rays,
``raycast.with_convex_hull``; ``manifest.json`` then says ``nchannels`` 2).
With ``supersample`` s > 1 each value is the average of s x s sub-rays over its
grid cell (``raycast`` module docstring; 1 = one ray per grid point, the default), recorded in
``manifest.json``. Val/test records are ordered by (mesh path, rotation index);
train shards are shuffled with a seeded permutation, so the output does not
depend on the number of workers, and records serialize deterministically: the same
command gives byte-identical record files, run after run (manifest.json also records
when the build ran and how long it took).

Rotations of a mesh are drawn from a generator seeded with (seed, CRC32 of the
mesh's relative path), hence reproducible and independent of processing order.
A mesh that cannot be read or is empty is reported and skipped.

Augmentation (off by default): ``aniso_scale``/``center_shift`` scale each train
and val instance anisotropically and shift the ray sphere's centre, on top of the
rotation (order and sampling in ``augment.py``); such records also carry ``scale``
and ``center``, and ``manifest.json`` records the ranges under ``augmentation``.
"""
import concurrent.futures
import json
import multiprocessing
import os
import platform
import signal
import sys
import time
import zlib

import numpy as np

from . import augment, meshes, raycast, rotations, synthetic
from .. import sizes
from ..errors import UserError, deferred_interrupts, raise_if_interrupted
from .atomic_output import AtomicFolder


class WorkerDied(UserError):
    """A worker process of the build died (killed, out of memory); the build was stopped."""

SPLIT_ORDER = ('train', 'val', 'test')
MESH_INPUT_KIND = 'mesh renders'


def input_description(manifest):
    """How a model trained on a mesh dataset needs new meshes rendered, as its training maps
    were (kept by the trainer as ``input.json``, read by ``predict --meshes``): grid size, ray
    start radius ``r0`` and ``supersample``, from the dataset's manifest; None for datasets
    this builder did not write (image sets, records without a manifest). ``convex_hull``
    is there only when the maps have the hull channel, so older descriptions stay equal."""
    if not manifest or 'r0' not in manifest or manifest.get('kind'):
        return None
    described = {'kind': MESH_INPUT_KIND, 'input_res': int(manifest['input_res']),
                 'r0': float(manifest['r0']), 'supersample': int(manifest.get('supersample') or 1)}
    if manifest.get('convex_hull'):
        described['convex_hull'] = True
    return described


def render_settings(description):
    """``(r0, supersample, convex_hull)`` of an :func:`input_description`; without one (runs
    trained before input.json described meshes, or on records alone) the defaults:
    ``raycast.DEFAULT_R0``, 1 ray, no hull channel."""
    if not description or description.get('kind') != MESH_INPUT_KIND:
        return raycast.DEFAULT_R0, 1, False
    return float(description['r0']), int(description['supersample']), bool(description.get('convex_hull'))


def _mesh_rng(seed, relpath, purpose):
    return np.random.default_rng([int(seed), zlib.crc32(relpath.encode('utf-8')), purpose])


def _render(job):
    """Worker: load/generate one mesh and cast all its instances (NumPy + trimesh only).

    Returns (index, maps, quaternions float32, augmentation or None, error or None);
    augmentation is ``(scales, centers)``, float32 ``(n, 3)`` each, for jobs with
    scaling or a centre shift (see ``augment.py``), else None.
    """
    try:
        if job['source'] == 'file':
            mesh = meshes.load_mesh(job['path'])
        else:
            mesh = synthetic.make_mesh(job['class_name'], np.random.default_rng(job['mesh_seed']))
        quats = rotations.sample_quaternions(job['rot_mode'], job['n_rot'],
                                             _mesh_rng(job['seed'], job['relpath'], 1))
        aug = None
        if augment.enabled(job['aniso_scale'], job['center_shift']):
            factors, centers = augment.sample(_mesh_rng(job['seed'], job['relpath'], 2), job['n_rot'],
                                              job['aniso_scale'], job['center_shift'])
            scales = augment.renormalised_scales(mesh.vertices, factors)
            # render from the float32 values the record stores, so they reproduce the map exactly
            quats, scales, centers = (a.astype(np.float32) for a in (quats, scales, centers))
            def render(surface):
                return raycast.cast_augmented(surface, job['res'], quats.astype(np.float64),
                                              scales.astype(np.float64), centers.astype(np.float64),
                                              r0=job['r0'], channels=True, supersample=job['supersample'])
            aug = (scales, centers)
        else:
            def render(surface):
                return raycast.cast_rotated(surface, job['res'], quats, r0=job['r0'], channels=True,
                                            supersample=job['supersample'])
        maps = raycast.with_convex_hull(render, mesh, job.get('convex_hull', False))
        if not np.any(maps[..., 0] != 0):
            raise meshes.MeshError(f'{job["relpath"]}: no ray hit the mesh')
        return job['index'], maps, quats.astype(np.float32), aug, None
    except Exception as e:  # report and skip, never fatal
        msg = str(e) if isinstance(e, meshes.MeshError) else f'{type(e).__name__}: {e}'
        return job['index'], None, None, None, msg


def _broken_future():
    """A future that raises ``BrokenProcessPool``, as the pool's own do once a worker died."""
    future = concurrent.futures.Future()
    future.set_exception(concurrent.futures.process.BrokenProcessPool('a worker died during submission'))
    return future


def _pool_results(pool, jobs):
    """Results of ``_render`` over ``jobs`` in completion order; a worker process that dies
    (killed, out of memory) raises :class:`WorkerDied` naming it instead of a hang.

    Call it inside :func:`~spherical_cnn.errors.deferred_interrupts`: Ctrl-C is raised
    here between waits, never inside ``concurrent.futures``, where a KeyboardInterrupt
    could leave a future's lock held, and the pool's manager thread (joined when Python
    exits) would wait for it forever.
    """
    pending = set()
    try:  # a worker can die while the jobs are still being submitted (submit then raises)
        for job in jobs:
            pending.add(pool.submit(_render, job))
    except concurrent.futures.process.BrokenProcessPool:
        pending = {_broken_future()}
    processes = dict(getattr(pool, '_processes', None) or {})
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=0.2,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        raise_if_interrupted()
        processes.update(getattr(pool, '_processes', None) or {})
        for future in done:
            try:
                result = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                processes.update(getattr(pool, '_processes', None) or {})
                raise WorkerDied(_dead_workers(pool, processes) + '; the build is stopped, its partial output '
                                 'removed and --out left unchanged (a killed worker is often the '
                                 'out-of-memory killer: try fewer --workers or a lower --input_res)') from None
            yield result


def _ignore_interrupts():
    """Worker initializer: Ctrl-C reaches the whole process group; the main process alone
    handles it (and ends the workers), so a worker is never cut short holding a queue's lock."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dead_workers(pool, processes):
    """'builder worker process PID died (killed by signal 9, SIGKILL)' for the dead ones.

    Once a worker died, the pool's manager thread fails the futures, ends the other workers and
    reaps them all. Exit codes read while it reaps race it for ``waitpid``: the loser sees no
    exit code and would leave that worker out (the killed one, under load). So the manager
    thread is waited for first."""
    manager = getattr(pool, '_executor_manager_thread', None)
    if manager is not None:
        manager.join(timeout=10)
    dead = []
    for pid, proc in sorted(processes.items()):
        proc.join(timeout=1)
        code = proc.exitcode
        if code is None or code == 0:
            continue
        how = (f'killed by signal {-code}, {signal.Signals(-code).name}' if code < 0
               else f'exit status {code}')
        dead.append((code == -signal.SIGTERM, f'{pid} ({how})'))
    # the pool ends the other workers with SIGTERM once one died: name the first cause
    dead = [text for terminated, text in dead if not terminated] or [text for _, text in dead]
    if not dead:
        return 'a builder worker process died'
    return 'builder worker process {} died'.format(', '.join(dead))


def _stop_pool(pool):
    """Stop a ProcessPoolExecutor now: cancel what waits, end its workers."""
    processes = list((getattr(pool, '_processes', None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()


def _close_all(pool, writers):
    """Stop ``pool`` at once (an error or Ctrl-C) and close the record writers."""
    if pool is not None:
        _stop_pool(pool)
    for ws in writers.values():
        for w in ws:
            w.close()


def _split_val(train_items, val_fraction, seed):
    """Pick validation meshes among the train meshes, per class; returns a set of relpaths."""
    by_class = {}
    for rel, c in train_items:
        by_class.setdefault(c, []).append(rel)
    val = set()
    rng = np.random.default_rng([int(seed), 7])
    for c in sorted(by_class):
        rels = sorted(by_class[c])
        n = int(round(val_fraction * len(rels)))
        if val_fraction > 0 and n == 0 and len(rels) >= 2:
            n = 1
        val.update(rels[i] for i in rng.permutation(len(rels))[:n])
    return val


def _check_classes(jobs_items, class_names):
    """Every class needs meshes in the train and the test split (an empty class is an error)."""
    have = {(j['class_name'], j['split']) for j in jobs_items}
    missing = [f'{c!r} ({split})' for c in class_names for split in ('train', 'test')
               if (c, split) not in have]
    if not jobs_items:
        raise ValueError('no mesh to render')
    if missing:
        raise ValueError(f'class(es) without any mesh: {", ".join(missing)}; remove the empty '
                         'class folder(s) or add meshes')


def _check_rendered(per_class, planned, skipped):
    """Error if a class lost every train or test mesh (all failed to render).

    Returns warnings for classes that lost their validation meshes (validation
    meshes are drawn before rendering, so a broken file can be among them).
    """
    lost = [f'{c!r} ({split})' for (c, split) in sorted(planned)
            if split != 'val' and not per_class.get((c, split))]
    warnings = [f'class {c!r} has no validation mesh: its {split} meshes failed to render'
                for (c, split) in sorted(planned) if split == 'val' and not per_class.get((c, split))]
    if not lost:
        return warnings
    first = f'; first error: {skipped[0]["mesh"]}: {skipped[0]["error"]}' if skipped else ''
    if not any(per_class.values()):
        raise ValueError(f'no mesh could be rendered ({len(skipped)} skipped{first})')
    raise ValueError(f'no mesh could be rendered for class(es) {", ".join(lost)} '
                     f'({len(skipped)} mesh(es) skipped{first})')


def _versions():
    import tensorflow as tf
    import trimesh
    v = {'python': platform.python_version(), 'numpy': np.__version__,
         'trimesh': trimesh.__version__, 'tensorflow': tf.__version__}
    try:
        from importlib.metadata import version
        v['embreex'] = version('embreex')
    except Exception:
        v['embreex'] = None
    return v


def build(jobs_items, class_names, out_dir, *, overwrite=False, progress=True, out_flag='--out', **kwargs):
    """Render meshes into a TFRecord dataset folder ``out_dir`` (see module docstring), atomically.

    The dataset is built in a hidden folder beside ``out_dir`` and put in place only
    when every record file, ``classes.txt`` and ``manifest.json`` are complete; with
    ``overwrite`` an existing dataset is replaced only then (:mod:`.atomic_output`). An
    error or interruption leaves ``out_dir`` as it was. A class without meshes in
    the train or test split, or whose meshes all fail to render, is an error.

    ``aniso_scale`` ((lo, hi) or None) and ``center_shift`` (max norm, 0 = off) add the
    authors' augmentation to the train and val instances (see ``augment.py``); the
    defaults (off) give exactly the records of a build without them. ``supersample`` (an
    integer s >= 1) casts s x s sub-rays per grid cell and stores their cell average
    (``raycast`` module docstring); 1, the default, is one ray per grid point as before.
    ``convex_hull`` adds the map of each mesh's convex hull as a second channel.

    Args:
      jobs_items: list of dicts with 'relpath', 'class_name', 'split' ('train'/'test') and
        either 'path' (a mesh file) or 'mesh_seed' (a synthetic mesh).
      class_names: sorted class names; label = index.
      out_flag: how messages name ``out_dir`` (the flag that gave it).
      kwargs: see :func:`_build_in`.
    Returns:
      the manifest dict (also written to ``out_dir/manifest.json``).
    """
    ignore_size_check = kwargs.pop('ignore_size_check', False)
    _check_classes(jobs_items, class_names)
    workers = int(kwargs.get('workers') or os.cpu_count() or 1)
    sizes.check(sizes.build_estimate(kwargs.get('input_res', 64), kwargs.get('n_rotations', 8),
                                     kwargs.get('n_test_rotations', 4), kwargs.get('supersample', 1) or 1,
                                     max(1, min(workers, len(jobs_items)))),
                ignore=ignore_size_check, warn=lambda m: print(m, file=sys.stderr))
    # one build per --out, written beside it and put in place when complete
    with AtomicFolder(out_dir, overwrite=overwrite, what=out_flag) as out:
        manifest = _build_in(out.stage, jobs_items, class_names, progress=progress, **kwargs)
    if progress:
        print_summary(manifest, out_dir)
    return manifest


def _build_in(out_dir, jobs_items, class_names, *, input_res=64, rotations_mode='so3', n_rotations=8,
          test_rotations=None, n_test_rotations=4, val_fraction=0.1, seed=0, r0=raycast.DEFAULT_R0,
          workers=None, progress=True, extra_manifest=None, aniso_scale=None, center_shift=0.0,
          augment_preset=None, supersample=1, convex_hull=False):
    """Render meshes into the empty folder ``out_dir``; return the manifest (see :func:`build`)."""
    from . import records  # TensorFlow is only needed in the main process

    if rotations_mode not in rotations.MODES:
        raise ValueError(f'--rotations must be one of {rotations.MODES}, got {rotations_mode!r}')
    test_rotations = test_rotations or rotations_mode
    if test_rotations not in rotations.MODES:
        raise ValueError(f'--test_rotations must be one of {rotations.MODES}, got {test_rotations!r}')
    if n_rotations < 1 or n_test_rotations < 1:
        raise ValueError('--n_rotations and --n_test_rotations must be >= 1')
    if not 0 <= val_fraction < 1:
        raise ValueError(f'--val_fraction must be in [0, 1), got {val_fraction}')
    if input_res < 2 or input_res % 2:
        raise ValueError(f'--input_res must be an even integer >= 2, got {input_res}')
    if not r0 > 1:
        raise ValueError(f'R0 must be > 1 (meshes fill the unit ball), got {r0}')
    try:
        supersample = raycast.check_supersample(supersample)
    except ValueError:
        raise ValueError(f'--supersample must be an integer >= 1, got {supersample!r}') from None
    aniso_scale, center_shift = augment.check(aniso_scale, center_shift, r0)
    extra_manifest = dict(extra_manifest or {},
                          augmentation=augment.manifest_entry(augment_preset, aniso_scale, center_shift))
    t0 = time.time()

    label = {c: i for i, c in enumerate(class_names)}
    val_set = _split_val([(j['relpath'], j['class_name']) for j in jobs_items if j['split'] == 'train'],
                         val_fraction, seed)
    jobs = []
    for j in sorted(jobs_items, key=lambda j: j['relpath']):
        split = 'val' if j['relpath'] in val_set else j['split']
        mode, n = {'train': (rotations_mode, n_rotations), 'val': (rotations_mode, n_test_rotations),
                   'test': (test_rotations, n_test_rotations)}[split]
        aug = split in augment.AUGMENTED_SPLITS
        jobs.append(dict(j, index=len(jobs), split=split, rot_mode=mode, n_rot=n, seed=seed,
                         res=input_res, r0=r0, supersample=supersample, convex_hull=bool(convex_hull),
                         source='file' if 'path' in j else 'synthetic',
                         aniso_scale=aniso_scale if aug else None, center_shift=center_shift if aug else 0.0))

    names = {'val': ['val_000.tfrecord'], 'test': ['test_000.tfrecord'],
             'train': [f'train_{i:03d}.tfrecord' for i in range(n_rotations)]}
    tmp = {s: [os.path.join(out_dir, f + '.tmp') for f in fs] for s, fs in names.items()}
    import tensorflow as tf
    writers = {s: [tf.io.TFRecordWriter(p) for p in ps] for s, ps in tmp.items()}
    keys = {s: [[] for _ in ps] for s, ps in tmp.items()}  # (relpath, idrot) per written record
    skipped = []
    counts = {s: {'meshes': 0, 'records': 0} for s in SPLIT_ORDER}
    planned = {(j['class_name'], j['split']) for j in jobs}
    per_class = {}  # (class, split) -> meshes rendered

    workers = int(workers or os.cpu_count() or 1)
    if workers > 1 and len(jobs) > 1:
        pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)),
                                                      mp_context=multiprocessing.get_context('spawn'),
                                                      initializer=_ignore_interrupts)
        results = _pool_results(pool, jobs)
    else:
        pool, results = None, map(_render, jobs)
    bar = None
    try:
        with deferred_interrupts():  # Ctrl-C: raised between meshes (see _pool_results)
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), unit='mesh', disable=not progress, file=sys.stderr, dynamic_ncols=True)
            for index, maps, quats, aug, err in results:
                raise_if_interrupted()
                job = jobs[index]
                bar.update(1)
                if err is not None:
                    skipped.append({'mesh': job['relpath'], 'error': err})
                    if progress:
                        bar.write(f'skipped {job["relpath"]}: {err}')
                    continue
                split = job['split']
                counts[split]['meshes'] += 1
                per_class[job['class_name'], split] = per_class.get((job['class_name'], split), 0) + 1
                for r in range(len(maps)):
                    shard = r if split == 'train' else 0
                    scale, center = (None, None) if aug is None else (aug[0][r], aug[1][r])
                    writers[split][shard].write(records.encode_example(
                        maps[r], label[job['class_name']], fname=job['relpath'], idrot=r, rotation=quats[r],
                        scale=scale, center=center))
                    keys[split][shard].append((job['relpath'], r))
                    counts[split]['records'] += 1
            if pool is not None:
                pool.shutdown(wait=True)
                pool = None
            raise_if_interrupted()
    finally:
        if bar is not None:
            bar.close()  # now, not at exit: its last redraw would follow the error line
        _close_all(pool, writers)  # at once on an error or Ctrl-C

    warnings = _check_rendered(per_class, planned, skipped)
    for w in warnings if progress else ():
        print(f'warning: {w}', file=sys.stderr)

    # reorder deterministically: val/test by (mesh, rotation); train shards sorted then permuted
    files = {}
    for split in SPLIT_ORDER:
        files[split] = []
        for i, path in enumerate(tmp[split]):
            final = path[:-len('.tmp')]
            recs = list(records.iter_records(path))
            order = sorted(range(len(recs)), key=lambda k: keys[split][i][k])
            if split == 'train':
                perm = np.random.default_rng([int(seed), 11, i]).permutation(len(order))
                order = [order[k] for k in perm]
            if recs or split != 'val' or val_fraction > 0:
                records.write_records(final, (recs[k] for k in order))
                files[split].append(os.path.basename(final))
            os.remove(path)

    with open(os.path.join(out_dir, 'classes.txt'), 'w') as f:
        f.write(''.join(c + '\n' for c in class_names))
    elapsed = time.time() - t0
    manifest = {
        'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'input_res': input_res, 'nchannels': 2 if convex_hull else 1, 'dtype': 'complex64',
        'layout': (f'x: complex64 (res, res, {2 if convex_hull else 1}) = (azimuth, polar, channel); '
                   'value = distance * exp(1j * angle); miss = 0'
                   + ('; channel 0 the mesh, channel 1 its convex hull' if convex_hull else '')),
        'r0': r0, 'supersample': supersample, 'convex_hull': bool(convex_hull),
        'rotations': rotations_mode, 'n_rotations': n_rotations,
        'test_rotations': test_rotations, 'n_test_rotations': n_test_rotations,
        'val_fraction': val_fraction, 'seed': seed, 'workers': workers,
        'classes': list(class_names), 'counts': counts, 'files': files,
        'skipped': skipped, 'warnings': warnings, 'seconds': round(elapsed, 2), 'versions': _versions(),
    }
    manifest.update(extra_manifest or {})
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    return manifest


def print_summary(manifest, out_dir):
    c = manifest['counts']
    ss = manifest.get('supersample', 1)
    print(f'dataset written to {out_dir} in {manifest["seconds"]:.1f} s '
          f'(res {manifest["input_res"]}, {len(manifest["classes"])} classes, R0 {manifest["r0"]}'
          f'{f", supersample {ss}" if ss > 1 else ""}'
          f'{", mesh + convex hull channels (train with --nchannels 2)" if manifest.get("convex_hull") else ""})')
    print(f'{"split":6s} {"meshes":>7s} {"records":>8s} {"files":>6s}')
    for s in SPLIT_ORDER:
        print(f'{s:6s} {c[s]["meshes"]:7d} {c[s]["records"]:8d} {len(manifest["files"][s]):6d}')
    if manifest['skipped']:
        print(f'skipped {len(manifest["skipped"])} mesh(es):')
        for s in manifest['skipped'][:10]:
            print(f'  {s["mesh"]}: {s["error"]}')
        if len(manifest['skipped']) > 10:
            print(f'  ... (all listed in manifest.json)')


def build_from_tree(mesh_root, out_dir, **kwargs):
    """Dataset from a ModelNet-style tree ``mesh_root/<class>/{train,test}/<mesh>``.

    Keyword arguments are those of :func:`build`.
    """
    classes, train = meshes.find_meshes(mesh_root, 'train')
    _, test = meshes.find_meshes(mesh_root, 'test')
    if not classes or not (train or test):
        raise FileNotFoundError(f'{mesh_root!r}: no meshes found in <class>/train or <class>/test '
                                f'(extensions {meshes.MESH_EXTENSIONS})')
    items = [{'relpath': rel, 'class_name': c, 'split': split, 'path': os.path.join(mesh_root, rel)}
             for split, lst in (('train', train), ('test', test)) for rel, c in lst]
    extra = {'source': {'mesh_root': os.path.abspath(mesh_root)}}
    extra.update(kwargs.pop('extra_manifest', None) or {})
    return build(items, classes, out_dir, extra_manifest=extra, **kwargs)


def build_synthetic(out_dir, input_res=32, n_train_per_class=synthetic.DEFAULT_TRAIN_PER_CLASS,
                    n_test_per_class=synthetic.DEFAULT_TEST_PER_CLASS, seed=synthetic.DEFAULT_SEED,
                    mesh_dir=None, **kwargs):
    """The built-in synthetic dataset (defaults = the default dataset: 12 classes, so3 x 8).

    With ``mesh_dir`` the meshes are also written there as a ModelNet-style .off
    tree and the records are built from those files; otherwise they are generated
    in the workers. Other keyword arguments are those of :func:`build`.
    """
    extra = {'source': {'synthetic': True, 'n_train_per_class': n_train_per_class,
                        'n_test_per_class': n_test_per_class, 'mesh_seed': seed}}
    extra.update(kwargs.pop('extra_manifest', None) or {})
    if mesh_dir:
        synthetic.write_mesh_tree(mesh_dir, n_train_per_class, n_test_per_class, seed=seed)
        extra['source']['mesh_root'] = os.path.abspath(mesh_dir)
        return build_from_tree(mesh_dir, out_dir, seed=seed, extra_manifest=extra, input_res=input_res, **kwargs)
    items = [{'relpath': rel, 'class_name': c, 'split': split,
              'mesh_seed': synthetic.mesh_seed(seed, c, split, i)}
             for rel, c, split, i in synthetic.mesh_list(n_train_per_class, n_test_per_class)]
    return build(items, list(synthetic.CLASS_NAMES), out_dir, input_res=input_res, seed=seed,
                 extra_manifest=extra, **kwargs)
