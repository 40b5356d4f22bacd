"""Per-class accuracy (mean over seeds) of the furniture study runs, and a rendering check:
the area-weighted hit fraction and mean distance of each test map are rotation-invariant on the
continuous sphere, so their spread over a mesh's test rotations measures what the res-n grid
misses (thin parts that rays hit at some rotations and not at others).
Usage: python3 benchmarks/furniture_analysis.py STUDY_OUT MODEL[,MODEL...] [SO3_SYNTHETIC_DSET_DIR]
(used for docs/real-data.md; STUDY_OUT = the --out of the rotation study on the furniture tree)"""
import collections, json, os, sys
import numpy as np
out, models = sys.argv[1], sys.argv[2].split(',')
synth = sys.argv[3] if len(sys.argv) > 3 else None
classes = open(os.path.join(out, 'data/plain/so3/classes.txt')).read().split()
REG = [('z', 'z'), ('so3', 'so3'), ('z', 'so3'), ('so3', 'z')]
LAB = {'z': 'z', 'so3': 'SO(3)'}
print('## per-class test accuracy (%), mean over seeds\n')
print('| model | regime | ' + ' | '.join(classes) + ' |')
print('|---|---|' + '---:|' * len(classes))
for m in models:
    for tr, te in REG:
        acc = collections.defaultdict(list)
        for sd in sorted(os.listdir(os.path.join(out, 'runs', m))):
            p = os.path.join(out, 'runs', m, sd, tr, 'study_run.json')
            if not os.path.exists(p):
                continue
            r = json.load(open(p))['result']
            if not r:
                continue
            pr = r['predictions'][te]
            lab, pred = np.array(pr['label']), np.array(pr['pred'])
            for c in range(len(classes)):
                acc[c].append(100 * np.mean(pred[lab == c] == c))
        print(f'| {m} | {LAB[tr]}/{LAB[te]} | ' + ' | '.join(f'{np.mean(acc[c]):.0f}' for c in range(len(classes))) + ' |')
print()
# confusion of the first model, SO(3)/SO(3), summed over seeds
m = models[0]
conf = np.zeros((len(classes), len(classes)), int)
for sd in sorted(os.listdir(os.path.join(out, 'runs', m))):
    p = os.path.join(out, 'runs', m, sd, 'so3', 'study_run.json')
    if os.path.exists(p) and json.load(open(p))['result']:
        pr = json.load(open(p))['result']['predictions']['so3']
        for a, b in zip(pr['label'], pr['pred']):
            conf[a, b] += 1
print(f'## most frequent confusions, {m}, SO(3)/SO(3), all seeds (records)\n')
off = [(conf[i, j], classes[i], classes[j]) for i in range(len(classes)) for j in range(len(classes)) if i != j]
for n, a, b in sorted(off, reverse=True)[:10]:
    print(f'- {a} -> {b}: {n} of {conf[classes.index(a)].sum()}')
print()

import tensorflow as tf  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spherical_cnn.data import records  # noqa: E402


def render_stats(dset):
    man = json.load(open(os.path.join(dset, 'manifest.json')))
    n = man['input_res']
    names = open(os.path.join(dset, 'classes.txt')).read().split()
    theta = (np.arange(n) + 0.5) * np.pi / n  # polar angle of the rows (axis 1 = polar)
    w = np.sin(theta)[None, :]
    w = w / w.sum() / n
    per = collections.defaultdict(lambda: collections.defaultdict(list))
    for fn in man['files']['test']:
        for rec in records.iter_records(os.path.join(dset, fn)):
            ex = records.decode_example(rec, (n, n, man['nchannels']), man['dtype'])
            d = np.abs(ex['x'][..., 0])
            per[ex['y']][ex['fname']].append(((w * (d > 0)).sum(), (w * d).sum()))
    rows = {}
    for y, meshes in per.items():
        hs, ds = [], []
        for v in meshes.values():
            v = np.array(v)
            hs.append(v[:, 0].std() / max(v[:, 0].mean(), 1e-9))
            ds.append(v[:, 1].std() / max(v[:, 1].mean(), 1e-9))
        rows[names[y]] = (len(meshes), 100 * np.mean([np.array(v)[:, 0].mean() for v in meshes.values()]),
                          100 * np.mean(hs), 100 * np.mean(ds))
    return rows


for label, dset in [('furniture', os.path.join(out, 'data/plain/so3'))] + ([('synthetic', synth)] if synth else []):
    rows = render_stats(dset)
    print(f'## rendering, {label} test set ({os.path.basename(os.path.dirname(dset.rstrip("/")))}/{os.path.basename(dset.rstrip("/"))}): spread over the test rotations of quantities '
          'that are rotation-invariant on the continuous sphere\n')
    print('| class | meshes | hit fraction (%) | rel. std of hit fraction (%) | rel. std of mean distance (%) |')
    print('|---|---:|---:|---:|---:|')
    for c, (k, h, sh, sd) in sorted(rows.items()):
        print(f'| {c} | {k} | {h:.0f} | {sh:.1f} | {sd:.1f} |')
    allv = np.array(list(rows.values()))
    print(f'| all (class mean) | {int(allv[:,0].sum())} | {allv[:,1].mean():.0f} | {allv[:,2].mean():.1f} | {allv[:,3].mean():.1f} |\n')
