"""Rotation equivariance error of a spherical CNN, per layer.

For a layer output ``f`` (a map ``(batch, n_i, n_i, channels)`` on the DH grid
of size n_i), an input ``x`` band-limited to degrees < n/2, and a rotation R:

    err_f(R) = || C(f(R x)) - D(R) C(f(x)) || / || C(f(x)) ||

where ``C`` is the spherical harmonic expansion on the DH grid of the layer
(pyshtools, degrees < n_i/2, 4-pi normalised real coefficients, float64) and
``D(R)`` the exact rotation of coefficients (pyshtools ``SHRotateRealCoef``).
``R x`` itself is the library's spectral rotation (:func:`rotate_maps`, the same
convention), so it is the exact rotation of the band-limited ``x``. By Parseval the coefficient norm is
the L2 norm on the sphere of the band-limited part of the map, so for a
band-limited output (a spectral convolution of a band-limited input, or a
spectral pooling) ``err`` is the exact equivariance error; for outputs of
pointwise nonlinearities and grid pooling (not band-limited) it compares the
band-limited parts, i.e. it counts the aliasing these layers add.
Numerators and denominators are summed over maps, channels, the two branches
and the rotations before the ratio.

Also measured:

- ``grid``: the same ratio for azimuthal rotations by multiples of
  ``2 pi 2**P / n`` (P = total pooling levels), which map every grid of the
  network onto itself; there ``R f`` is a roll of the grid and the error is
  computed on the grid values directly (float32 rounding only, for every layer);
- the final descriptor's invariance error ``||d(R x) - d(x)|| / ||d(x)||`` and the
  fraction of predicted classes that change under R.

Maps are ``(batch, azimuth, polar, channels)``; pyshtools grids are the
transpose of a map (rows = polar).
"""
import csv
import json
import os

import numpy as np

STAGES = ("conv", "out")


# --------------------------------------------------------------------------- pyshtools helpers

def expand(maps):
    """Real SH coefficients of maps ``(batch, n, n, c)``: ``(batch, c, 2, L, L)`` float64, L = n/2."""
    from pyshtools.expand import SHExpandDH
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4 or maps.shape[1] != maps.shape[2] or maps.shape[1] % 2:
        raise ValueError("expand: maps must be (batch, n, n, channels) with n even, got shape {}"
                         .format(maps.shape))
    b, n, _, c = maps.shape
    out = np.empty((b, c, 2, n // 2, n // 2))
    for i in range(b):
        for k in range(c):
            out[i, k] = SHExpandDH(np.ascontiguousarray(maps[i, :, :, k].T), sampling=1)
    return out


def synthesize(coeffs):
    """Maps ``(batch, n, n, c)`` from coefficients ``(batch, c, 2, L, L)`` (n = 2L)."""
    from pyshtools.expand import MakeGridDH
    coeffs = np.asarray(coeffs, dtype=np.float64)
    b, c, _, L, _ = coeffs.shape
    out = np.empty((b, 2 * L, 2 * L, c))
    for i in range(b):
        for k in range(c):
            out[i, :, :, k] = MakeGridDH(coeffs[i, k], sampling=1).T
    return out


def band_limit(maps):
    """Project maps ``(batch, n, n, c)`` onto degrees < n/2 (DH expansion and synthesis)."""
    return synthesize(expand(maps))


_DJ = {}


def _dj(L):
    if L not in _DJ:
        from pyshtools.rotate import djpi2
        _DJ[L] = djpi2(L - 1)
    return _DJ[L]


def rotate_coeffs(coeffs, angles):
    """Rotate coefficients ``(batch, c, 2, L, L)`` by Euler angles (pyshtools ``SHRotateRealCoef``)."""
    from pyshtools.rotate import SHRotateRealCoef
    coeffs = np.asarray(coeffs, dtype=np.float64)
    L = coeffs.shape[-1]
    dj = _dj(L)
    out = np.empty_like(coeffs)
    for i in range(coeffs.shape[0]):
        for k in range(coeffs.shape[1]):
            out[i, k] = SHRotateRealCoef(coeffs[i, k], np.asarray(angles, dtype=np.float64), dj)
    return out


def rotate_maps(maps, angles):
    """Rotated band-limited part of maps ``(batch, n, n, c)`` (exact for band-limited maps), float64.

    The rotation of pyshtools' ``SHRotateRealCoef`` for Euler angles ``(alpha, beta, gamma)``
    (as :func:`rotate_coeffs`), which is the inverse of the library's ZYZ convention:
    :func:`spherical_cnn.rotate` by ``R(alpha, beta, gamma)^T`` (docs/layouts.md).
    """
    from ..rotation import euler_zyz_to_matrix, rotate
    R = euler_zyz_to_matrix(*np.asarray(angles, dtype=np.float64))
    return np.asarray(rotate(np.asarray(maps, dtype=np.float64), R.T))


def random_rotations(count, rng):
    """``count`` Euler angles ``(alpha, beta, gamma)`` of uniformly random rotations."""
    rng = np.random.default_rng(rng)
    return np.stack([rng.uniform(0, 2 * np.pi, count), np.arccos(rng.uniform(-1, 1, count)),
                     rng.uniform(0, 2 * np.pi, count)], axis=1)


def random_bandlimited(batch, n, channels, rng, decay=1.0):
    """Random maps ``(batch, n, n, channels)`` band-limited to degrees < n/2 (coefficients ~ N(0, (l+1)^-decay))."""
    rng = np.random.default_rng(rng)
    L = n // 2
    c = rng.standard_normal((batch, channels, 2, L, L))
    l_idx, m_idx = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    c *= ((m_idx <= l_idx) * (l_idx + 1.0) ** (-decay / 2))[None, None, None]
    c[:, :, 1, :, 0] = 0  # no sine term for m = 0
    return synthesize(c)


# --------------------------------------------------------------------------- measurements

def _grouped(names):
    """``{(block, stage): [layer names]}`` for ``conv{i}_b{b}_{conv,act,pool}`` layer names."""
    groups = {}
    for name in names:
        parts = name.split("_")
        block = int(parts[0][4:])
        stage = "conv" if parts[-1] == "conv" else "out"
        groups.setdefault((block, stage), []).append(name)
    return groups


def block_layers(model):
    """Names of the layers measured: each block's convolution and its output (after pooling if any)."""
    names = [l.name for l in model.layers if l.name.startswith("conv") and l.name.endswith("_conv")]
    outs = []
    for conv in names:
        stem = conv[:-len("_conv")]
        pool = stem + "_pool"
        act = stem + "_act"
        have = {l.name for l in model.layers}
        outs.append(pool if pool in have else act)
    return names + outs


def probe(model, names):
    """Model mapping the input to ``[outputs of names..., descriptor, logits]``."""
    import keras
    outs = [model.get_layer(n).output for n in names]
    return keras.Model(model.input, outs + [model.output["descriptor"], model.output["logits"]])


def _run(probe_model, x, batch=16):
    outs = None
    for s in range(0, len(x), batch):
        o = [np.asarray(v, dtype=np.float64) for v in probe_model(x[s:s + batch].astype(np.float32),
                                                                  training=False)]
        outs = o if outs is None else [np.concatenate([a, b]) for a, b in zip(outs, o)]
    return outs


def equivariance_errors(model, x, rotations, names=None, shifts=None):
    """Per-layer equivariance errors of ``model`` on band-limited inputs ``x``.

    Args:
        model: a Keras model with dict outputs ``descriptor``/``logits`` and
            layers named ``conv{i}_b{b}_{conv,act,pool}`` (see ``models.two_branch``).
        x: band-limited inputs ``(batch, n, n, channels)`` (use :func:`band_limit`).
        rotations: Euler angles ``(R, 3)`` for the arbitrary-rotation error.
        names: layers to measure (default :func:`block_layers`).
        shifts: azimuthal grid shifts (in input cells) for the grid-aligned error;
            default: 3 multiples of the coarsest grid's cell.

    Returns:
        dict with ``layers``: ``[{'block', 'stage', 'n', 'so3', 'grid'}]``,
        ``descriptor_so3``, ``descriptor_grid`` (relative invariance errors) and
        ``prediction_changed`` (fraction of argmax changes under the arbitrary rotations).
    """
    names = names or block_layers(model)
    pm = probe(model, names)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    base = _run(pm, x)
    groups = _grouped(names)
    acc = {key: np.zeros(4) for key in groups}  # so3 num, so3 den, grid num, grid den
    desc = np.zeros(4)
    changed, total = 0, 0
    base_coeffs = {name: expand(base[i]) for i, name in enumerate(names)}
    for angles in rotations:
        rot = _run(pm, rotate_maps(x, angles))
        for i, name in enumerate(names):
            key = _key(groups, name)
            want = rotate_coeffs(base_coeffs[name], angles)
            got = expand(rot[i])
            acc[key][0] += np.sum((got - want) ** 2)
            acc[key][1] += np.sum(want ** 2)
        d0, d1 = base[len(names)], rot[len(names)]
        desc[0] += np.sum((d1 - d0) ** 2)
        desc[1] += np.sum(d0 ** 2)
        changed += int(np.sum(np.argmax(base[-1], -1) != np.argmax(rot[-1], -1)))
        total += len(x)

    n_min = min(base[i].shape[1] for i in range(len(names)))
    step = n // n_min
    if shifts is None:
        shifts = [step * k for k in (1, n_min // 4 + 1, n_min // 2 + 1)]
    for k in shifts:
        if k % step:
            raise ValueError("grid shift {} is not a multiple of {} (the coarsest grid's cell)".format(k, step))
        rot = _run(pm, np.roll(x, k, axis=1))
        for i, name in enumerate(names):
            key = _key(groups, name)
            f = base[i]
            want = np.roll(f, k * f.shape[1] // n, axis=1)
            acc[key][2] += np.sum((rot[i] - want) ** 2)
            acc[key][3] += np.sum(want ** 2)
        d0, d1 = base[len(names)], rot[len(names)]
        desc[2] += np.sum((d1 - d0) ** 2)
        desc[3] += np.sum(d0 ** 2)

    layers = []
    for (block, stage) in sorted(groups, key=lambda k: (k[0], STAGES.index(k[1]))):
        a = acc[(block, stage)]
        first = groups[(block, stage)][0]
        layers.append({"block": block, "stage": stage, "n": int(base[names.index(first)].shape[1]),
                       "layers": groups[(block, stage)],
                       "so3": float(np.sqrt(a[0] / a[1])), "grid": float(np.sqrt(a[2] / a[3]))})
    return {"layers": layers, "descriptor_so3": float(np.sqrt(desc[0] / desc[1])),
            "descriptor_grid": float(np.sqrt(desc[2] / desc[3])),
            "prediction_changed": changed / max(total, 1), "n_rotations": len(rotations),
            "n_inputs": int(len(x)), "shifts": [int(s) for s in shifts]}


def pooling_error(x, rotations, pool_size=2, centered=False):
    """Equivariance error of the area-weighted pooling layer alone on band-limited ``x`` (same measure).

    ``centered=False``: ``layers.AreaWeightedPooling`` ('wap', the original's);
    ``centered=True``: ``layers.CenteredAreaWeightedPooling`` ('cwap').
    """
    from ..layers import AreaWeightedPooling, CenteredAreaWeightedPooling
    layer = (CenteredAreaWeightedPooling if centered else AreaWeightedPooling)(pool_size)
    base = expand(np.asarray(layer(x.astype(np.float32)), dtype=np.float64))
    num = den = 0.0
    for angles in rotations:
        want = rotate_coeffs(base, angles)
        got = expand(np.asarray(layer(rotate_maps(x, angles).astype(np.float32)), dtype=np.float64))
        num += np.sum((got - want) ** 2)
        den += np.sum(want ** 2)
    return float(np.sqrt(num / den))


def _key(groups, name):
    for key, members in groups.items():
        if name in members:
            return key
    raise KeyError(name)


# --------------------------------------------------------------------------- variants of a trained model

# label, trained model it takes its weights from ('wap', 'cwap' or 'spectral' pooling), flag overrides
VARIANTS = (
    ("wap, naive", "wap", {"transform_method": "naive"}),
    ("wap, sep", "wap", {"transform_method": "sep"}),
    ("cwap, naive", "cwap", {"transform_method": "naive"}),
    ("cwap, sep", "cwap", {"transform_method": "sep"}),
    ("spectral, naive", "spectral", {"transform_method": "naive"}),
    ("spectral, sep", "spectral", {"transform_method": "sep"}),
    ("spectral, sep, linear", "spectral", {"transform_method": "sep", "nonlin": "identity"}),
    ("cwap, anti-aliased, sep", "cwap_aa", {"transform_method": "sep"}),
    ("spectral, anti-aliased, sep", "spectral_aa", {"transform_method": "sep"}),
)


def load_trained(logdir):
    """(flags, model) of a finished training run in ``logdir`` (weights of its ``final`` checkpoint)."""
    import tensorflow as tf
    from .. import models
    from ..checkpoints import CheckpointStore
    from ..training import load_flags

    args = load_flags(logdir, {"test_only": True, "from_scratch": False})
    _register_extra_models()
    model = models.build_model(args, (args.input_res, args.input_res, 2 * args.nchannels
                                      if args.mag_ang else args.nchannels))
    prefix = CheckpointStore(logdir).path("final")
    if prefix is None:
        raise FileNotFoundError("no 'final' checkpoint in {} (train it first)".format(logdir))
    tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    return args, model


def _register_extra_models():
    from . import rotation_study
    rotation_study._register_planar()


def variant(args, model, overrides):
    """``model`` rebuilt with flags changed by ``overrides``; weights copied by layer name.

    Layers of the new model without weights in the old one (or with other shapes) keep their
    own (e.g. nonlinearity 'identity' has none). Pooling and the transform change no weight shape.
    """
    import argparse
    from .. import models
    new_args = argparse.Namespace(**vars(args))
    for k, v in overrides.items():
        setattr(new_args, k, v)
    new = models.build_model(new_args, tuple(model.input.shape[1:]))
    old = {l.name: l for l in model.layers}
    for layer in new.layers:
        src = old.get(layer.name)
        if src is None or not layer.weights:
            continue
        w = src.get_weights()
        if [a.shape for a in w] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(w)
    return new


def study(sources, x, n_rotations=4, seed=0, variants=VARIANTS, log=print):
    """Equivariance errors of the variants of trained models on band-limited ``x``.

    Args:
        sources: ``{'wap' | 'cwap' | 'spectral' | 'cwap_aa' | 'spectral_aa': (flags, model)}``
            ('_aa': trained with ``--nonlinearity_upsample 2``); variants whose source is
            missing are skipped.
        x: band-limited inputs ``(batch, n, n, channels)``.
    """
    rotations = random_rotations(n_rotations, seed)
    out = {"variants": {}, "n_inputs": int(len(x)), "n_rotations": int(n_rotations),
           "input_res": int(x.shape[1]),
           "weights_from": {k: getattr(a, "logdir", "") for k, (a, _) in sources.items()}}
    for label, source, overrides in variants:
        if source not in sources:
            continue
        args, model = sources[source]
        m = variant(args, model, overrides)
        if log:
            log("equivariance: {} ...".format(label))
        out["variants"][label] = equivariance_errors(m, x, rotations)
    out["wap_alone"] = pooling_error(x, rotations)
    out["cwap_alone"] = pooling_error(x, rotations, centered=True)
    if not out["variants"]:
        raise ValueError("no variant to measure: sources {} match none of {}"
                         .format(sorted(sources), sorted({v[1] for v in variants})))
    return out


def test_inputs(dset_dir, args, count, seed=0):
    """``count`` test maps of a dataset, as fed to the model, projected onto degrees < n/2."""
    from ..datasets import SphericalDataset
    ds = SphericalDataset(args, dset_dir)
    xs = []
    for x, _ in ds.eval("test"):
        xs.append(x.numpy())
        if sum(len(a) for a in xs) >= 4 * count:
            break
    x = np.concatenate(xs)
    idx = np.random.default_rng(seed).choice(len(x), size=min(count, len(x)), replace=False)
    return band_limit(x[np.sort(idx)])


def study_from_runs(logdirs, dset_dir, out_dir, quick=False, n_inputs=None, n_rotations=None,
                    log=print):
    """Equivariance study of trained models on band-limited test maps of ``dset_dir``.

    Args:
        logdirs: ``{source: training folder}`` (sources as in :func:`study`; runs of ``scripts/train.py``
            or of the rotation study; their ``final`` checkpoint is loaded).

    Writes ``equivariance.{json,csv,md,png}`` into ``out_dir``; returns the results dict.
    """
    sources = {k: load_trained(d) for k, d in logdirs.items()}
    first = next(iter(sources.values()))[0]
    n_inputs = n_inputs or (4 if quick else 16)
    n_rotations = n_rotations or (2 if quick else 4)
    x = test_inputs(dset_dir, first, n_inputs)
    res = study(sources, x, n_rotations=n_rotations, log=log)
    write_outputs(res, out_dir)
    return res


# --------------------------------------------------------------------------- outputs

def _rows(res):
    labels = list(res["variants"])
    first = res["variants"][labels[0]]
    keys = [(l["block"], l["stage"]) for l in first["layers"]]
    rows = []
    for block, stage in keys:
        cells = {}
        for lab in labels:
            for l in res["variants"][lab]["layers"]:
                if (l["block"], l["stage"]) == (block, stage):
                    cells[lab] = l
        rows.append((block, stage, cells))
    return labels, rows


def format_table(res):
    """Markdown table: rows = layers, columns = variants (SO(3) error; grid-aligned error last column)."""
    labels, rows = _rows(res)
    head = ["layer"] + labels + ["grid-aligned (max)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for block, stage, cells in rows:
        name = "block {} {}".format(block, "conv" if stage == "conv" else "output")
        ns = sorted({c["n"] for c in cells.values()})
        name += " (n={})".format("/".join(str(v) for v in ns))
        vals = ["{:.1e}".format(cells[l]["so3"]) if l in cells else "-" for l in labels]
        grid = max(c["grid"] for c in cells.values())
        lines.append("| " + " | ".join([name] + vals + ["{:.1e}".format(grid)]) + " |")
    v = res["variants"]
    lines.append("| descriptor (invariance) | " + " | ".join("{:.1e}".format(v[l]["descriptor_so3"]) for l in labels)
                 + " | {:.1e} |".format(max(v[l]["descriptor_grid"] for l in labels)))
    lines.append("| predictions changed | " + " | ".join("{:.1f}%".format(100 * v[l]["prediction_changed"])
                                                        for l in labels) + " | |")
    if "wap_alone" in res:
        lines.append("")
        lines.append("wap pooling layer alone (AreaWeightedPooling(2) on the band-limited inputs): "
                     "relative error {:.1e}".format(res["wap_alone"]))
    if "cwap_alone" in res:
        lines.append("cwap pooling layer alone (CenteredAreaWeightedPooling(2), same inputs): "
                     "relative error {:.1e}".format(res["cwap_alone"]))
    return "\n".join(lines)


def write_outputs(res, out_dir):
    """``equivariance.json``, ``.csv``, ``.md`` and ``.png`` in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "equivariance.json"), "w") as f:
        json.dump(res, f, indent=1)
    labels, rows = _rows(res)
    with open(os.path.join(out_dir, "equivariance.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "block", "stage", "n", "so3_rel_error", "grid_rel_error"])
        for lab in labels:
            for l in res["variants"][lab]["layers"]:
                w.writerow([lab, l["block"], l["stage"], l["n"], "{:.3e}".format(l["so3"]),
                            "{:.3e}".format(l["grid"])])
            d = res["variants"][lab]
            w.writerow([lab, "descriptor", "invariance", "", "{:.3e}".format(d["descriptor_so3"]),
                        "{:.3e}".format(d["descriptor_grid"])])
    with open(os.path.join(out_dir, "equivariance.md"), "w") as f:
        f.write(format_table(res) + "\n")
    plot(res, os.path.join(out_dir, "equivariance.png"))


def plot(res, path):
    """Relative equivariance error per layer (log scale), one line per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, rows = _rows(res)
    fig, ax = plt.subplots(figsize=(9.0, 4.0), dpi=120)
    xt = ["{}{}".format(b, "c" if s == "conv" else "o") for b, s, _ in rows] + ["desc"]
    for lab in labels:
        ys = [cells[lab]["so3"] if lab in cells else np.nan for _, _, cells in rows]
        ys.append(res["variants"][lab]["descriptor_so3"])
        ax.semilogy(range(len(ys)), np.maximum(ys, 1e-9), marker="o", label=lab)
    grid = [max(c["grid"] for c in cells.values()) for _, _, cells in rows]
    grid.append(max(res["variants"][l]["descriptor_grid"] for l in labels))
    ax.semilogy(range(len(grid)), np.maximum(grid, 1e-9), "k--", marker="x", label="grid-aligned z (max)")
    ax.axhline(1e-5, color="gray", lw=0.8, ls=":")
    ax.set_xticks(range(len(xt)))
    ax.set_xticklabels(xt, fontsize=8)
    ax.set_xlabel("block (c: after the spherical conv, o: block output) and final descriptor")
    ax.set_ylabel("relative error")
    ax.set_title("Equivariance error per layer under random rotations")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
