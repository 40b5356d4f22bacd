#!/usr/bin/env python3
"""Data pipeline throughput: ray casting and building the default synthetic dataset.

  python3 benchmarks/data.py [--res 64] [--n_rotations 8] [--n_meshes 120] [--workers K] [--skip_build]
                             [--ss_res 32,64] [--ss_factors 1,2,4] [--ss_meshes 24] [--ss_repeat 3]

Measures, in one run:
  * meshes per second rendered at --res with --n_rotations rotations each, in one
    process (generation of the synthetic mesh excluded, then included; and
    casting by rotating the rays vs rebuilding the mesh per rotation);
  * meshes per second with supersampling (``raycast.cast_rotated(..., supersample=s)``,
    s x s rays per grid cell) for each --ss_factors s at each --ss_res, side by side,
    on the first --ss_meshes meshes, --n_rotations rotations each, one process, best
    of --ss_repeat passes;
  * wall time of builder.build_synthetic at res 32 (the default dataset) with --workers.
Prints a table and writes benchmarks/results/data.json.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import trimesh  # noqa: E402

from spherical_cnn.data import builder, raycast, rotations, synthetic  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--res', type=int, default=64)
    p.add_argument('--n_rotations', type=int, default=8)
    p.add_argument('--n_meshes', type=int, default=120)
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--skip_build', action='store_true')
    p.add_argument('--ss_res', default='32,64', help='grid sizes of the supersampling table')
    p.add_argument('--ss_factors', default='1,2,4', help='supersample factors s of the table')
    p.add_argument('--ss_meshes', type=int, default=24, help='meshes cast for each cell of the table')
    p.add_argument('--ss_repeat', type=int, default=3, help='passes per cell of the table (best is kept)')
    args = p.parse_args()
    ss_res = [int(v) for v in args.ss_res.split(',') if v]
    ss_factors = [int(v) for v in args.ss_factors.split(',') if v]

    rng = np.random.default_rng(0)
    classes = [synthetic.CLASS_NAMES[i % len(synthetic.CLASS_NAMES)] for i in range(args.n_meshes)]
    t = time.perf_counter()
    meshes = [synthetic.make_mesh(c, rng) for c in classes]
    t_gen = time.perf_counter() - t
    quats = rotations.sample_quaternions('so3', args.n_rotations, 0)

    raycast.cast_rotated(meshes[0], args.res, quats)  # warm up
    t = time.perf_counter()
    for m in meshes:
        raycast.cast_rotated(m.copy(), args.res, quats)  # copy: fresh BVH per mesh, as in the builder
    t_cast = time.perf_counter() - t

    mats = rotations.quaternion_to_matrix(quats)
    n_slow = max(1, args.n_meshes // 4)
    t = time.perf_counter()
    for m in meshes[:n_slow]:
        for r in mats:
            raycast.mesh_to_sphere(trimesh.Trimesh(m.vertices @ r.T, m.faces, process=False), args.res)
    t_slow = (time.perf_counter() - t) * args.n_meshes / n_slow

    rows = [
        ('cast (rotate rays, one BVH per mesh)', args.n_meshes / t_cast),
        ('generate synthetic mesh + cast', args.n_meshes / (t_cast + t_gen)),
        ('cast (rotate vertices, BVH per rotation)', args.n_meshes / t_slow),
    ]
    result = {'res': args.res, 'n_rotations': args.n_rotations, 'n_meshes': args.n_meshes,
              'rays_per_mesh': args.n_rotations * args.res ** 2,
              'meshes_per_s': {name: round(v, 2) for name, v in rows},
              'mean_faces': float(np.mean([len(m.faces) for m in meshes])),
              'cpu_count': os.cpu_count(), 'python': platform.python_version(),
              'trimesh': trimesh.__version__}

    print(f'ray casting at res {args.res}, {args.n_rotations} rotations per mesh, one process, '
          f'{args.n_meshes} synthetic meshes (~{result["mean_faces"]:.0f} faces):')
    print(f'| {"method":42s} | {"meshes/s":>9s} | {"records/s":>9s} |')
    print(f'|{"-" * 44}|{"-" * 11}|{"-" * 11}|')
    for name, v in rows:
        print(f'| {name:42s} | {v:9.1f} | {v * args.n_rotations:9.1f} |')

    ss_meshes = meshes[:max(1, min(args.ss_meshes, len(meshes)))]
    table = {}
    for res in ss_res:
        for s in ss_factors:
            raycast.cast_rotated(ss_meshes[0], res, quats, supersample=s)  # warm up
            best = np.inf
            for _ in range(max(1, args.ss_repeat)):
                t = time.perf_counter()
                for m in ss_meshes:
                    raycast.cast_rotated(m.copy(), res, quats, supersample=s)
                best = min(best, time.perf_counter() - t)
            table.setdefault(res, {})[s] = len(ss_meshes) / best
    result['supersample'] = {
        'n_meshes': len(ss_meshes), 'n_rotations': args.n_rotations, 'repeat': max(1, args.ss_repeat),
        'meshes_per_s': {str(r): {str(s): round(v, 2) for s, v in row.items()} for r, row in table.items()},
        'rays_per_mesh': {str(r): {str(s): args.n_rotations * r * r * s * s for s in row}
                          for r, row in table.items()}}
    print(f'\nsupersampling (cast_rotated, s x s rays per cell), meshes/s, {args.n_rotations} rotations per mesh, '
          f'one process, {len(ss_meshes)} meshes, best of {max(1, args.ss_repeat)} '
          f'(cost relative to s = {ss_factors[0]} in brackets):')
    print('| res | ' + ' | '.join(f's = {s}' for s in ss_factors) + ' |')
    print('|---|' + '---|' * len(ss_factors))
    for res, row in table.items():
        base = row[ss_factors[0]]
        print(f'| {res} | ' + ' | '.join(f'{row[s]:.1f} ({base / row[s]:.1f}x)' for s in ss_factors) + ' |')

    if not args.skip_build:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            man = builder.build_synthetic(os.path.join(d, 'syn'), input_res=32, workers=args.workers,
                                          progress=False)
            wall = time.perf_counter() - t
        result['default_synthetic_build'] = {
            'input_res': 32, 'workers': man['workers'], 'seconds': round(wall, 2),
            'meshes': sum(c['meshes'] for c in man['counts'].values()),
            'records': sum(c['records'] for c in man['counts'].values())}
        b = result['default_synthetic_build']
        print(f'\ndefault synthetic dataset (res 32, {b["meshes"]} meshes, {b["records"]} records, '
              f'{b["workers"]} workers): {wall:.1f} s')

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'data.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
