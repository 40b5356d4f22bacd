"""Classify records, meshes or images with a model exported by spherical-cnn-train or a
model shipped with the package.

    spherical-cnn-predict --list_pretrained
    spherical-cnn-predict --pretrained synthetic --meshes examples/chair.off --top_k 3
    spherical-cnn-predict --pretrained fashion-mnist --images shoe.png --invert --top_k 3
    spherical-cnn-predict --logdir logs/synthetic --meshes examples/chair.off examples/mug.off --top_k 3
    spherical-cnn-predict --logdir logs/synthetic --records data/synthetic-32/test_000.tfrecord
    spherical-cnn-predict --logdir logs/synthetic --records data/synthetic-32/test_000.tfrecord \\
        --aggregate vote

Reads LOGDIR/model.keras (or the shipped model NAME, docs/pretrained.md) and the
flags saved with it (resolution, dtype, --mag_ang) and prints the top classes with their probabilities: one row per
mesh, or per record ("FNAME rot IDROT" when the records name their mesh and
rotation). With --aggregate, the rotations of one mesh (records with the same
fname) are combined into one prediction: "vote" takes the class most of them
predict (ties: the higher mean probability), "mean" averages their
probabilities. For labelled records the accuracy is printed at the end, per
record or, with --aggregate, per mesh.

Images (PNG, JPEG, ... read as greyscale, or .npy 2-D arrays: uint8, or floats in
[0, 1]; an alpha channel is composited over the background, black or with --invert
white, and a shape drawn in the alpha channel alone is read from it) are resized to the training images' size (28 x 28 for Fashion-MNIST) and
projected onto the sphere as spherical-cnn-make-images does (NR, not rotated).
Fashion-MNIST shows light objects on black: pass --invert for dark objects on a
light background (a photo or a drawing).

A mesh, image or record that cannot be read is reported as one line naming the file
(and record) and skipped; the exit status is then 1. Missing, empty and folder inputs
are reported at once, before the model loads. With many records, --rows wrong prints
only the misclassified rows and --rows none only the accuracy; a progress bar goes to
stderr when it is a terminal.
"""
import os
import sys

from . import common
from ..errors import DataError, UserError
from ..trained_run import load, load_model  # noqa: F401 (load_model: part of the command's names)

AGGREGATES = ("none", "vote", "mean")
ROWS = ("all", "wrong", "none")
INPUT_KINDS = {"records": "TFRecord", "meshes": "mesh", "images": "image"}


def build_parser():
    p = common.command_parser(__doc__)
    model = p.add_mutually_exclusive_group()
    model.add_argument("--logdir", help="log directory of a finished training run")
    model.add_argument("--pretrained", metavar="NAME", help="a model shipped with the package (see --list_pretrained)")
    p.add_argument("--list_pretrained", action="store_true", help="list the shipped models and exit")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--records", nargs="+", metavar="FILE",
                     help="TFRecord files in the training data's format")
    src.add_argument("--meshes", nargs="+", metavar="FILE", help="mesh files (.off, .obj, .stl, .ply)")
    src.add_argument("--images", nargs="+", metavar="FILE",
                     help="greyscale images (PNG, JPEG, ... or .npy) for an image model")
    p.add_argument("--invert", action="store_true",
                   help="images: invert the grey levels (dark object on a light background)")
    p.add_argument("--top_k", type=int, default=1, help="how many classes to print per row")
    p.add_argument("--batch", type=int, default=64,
                   help="inputs per forward pass (lower it if memory is short; results do not change)")
    p.add_argument("--rows", choices=ROWS, default="all",
                   help="which rows to print: all, the misclassified ones of labelled records (wrong), "
                        "or none (the accuracy and the errors only)")
    p.add_argument("--aggregate", choices=AGGREGATES, default="none",
                   help="combine the rotations of one mesh (records with the same fname): majority "
                        "vote or mean of the probabilities")
    return common.add_output_flags(p)


def parse_args(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    if a.list_pretrained:
        return a
    if not (a.logdir or a.pretrained):
        p.error("give --logdir or --pretrained (or --list_pretrained)")
    if not (a.records or a.meshes or a.images):
        p.error("give --records, --meshes or --images")
    if a.top_k < 1:
        p.error("--top_k must be >= 1, got {}".format(a.top_k))
    if a.batch < 1:
        p.error("--batch must be >= 1, got {}".format(a.batch))
    return a


def usable_inputs(paths, kind, report):
    """The paths that are non-empty files; each other one reported in one line (no TensorFlow yet).

    ``kind``: 'records', 'meshes' or 'images' (names the file kind in the message)."""
    what = INPUT_KINDS[kind]
    usable = []
    for path in paths:
        if os.path.isdir(path):
            report("{} is a folder, not a {} file: give its files (e.g. {})".format(
                path, what, os.path.join(path, "*.off" if kind == "meshes" else "*")))
        elif not os.path.exists(path):
            report("{}: no such file".format(path))
        elif os.path.getsize(path) == 0:
            report("{}: empty file (0 bytes), not a {} file".format(path, what))
        else:
            usable.append(path)
    return usable


# ---------------------------------------------------------------- records
def record_rows(paths, args, report):
    """Rows ``{x, y, name, group}`` of every readable record; ``report(message)`` for the others."""
    from ..data import verify
    spec = verify.RecordSpec.from_args(args)
    rows = []
    for path in paths:
        try:
            for index, raw in verify.iter_raw_records(path):
                try:
                    d = spec.decode(raw, path, index)
                except DataError as err:
                    report(str(err))
                    continue
                group = d["fname"] or "{}#{}".format(os.path.basename(path), index)
                name = group if d["idrot"] is None else "{} rot {}".format(group, d["idrot"])
                rows.append({"x": d["x"], "y": d["y"], "name": name, "group": group})
        except DataError as err:  # the rest of this file is unreadable
            report(str(err))
    return rows


# ---------------------------------------------------------------- meshes
def mesh_rows(paths, args, report, r0=None, supersample=1, convex_hull=False):
    """Each mesh ray-cast on the training resolution's grid (no rotation), with the training
    set's ray start radius ``r0`` (None: ``raycast.DEFAULT_R0``), ``supersample`` and, with
    ``convex_hull``, the hull's map as channel 1."""
    from ..data import meshes, raycast
    r0 = raycast.DEFAULT_R0 if r0 is None else r0
    rows = []
    for path in paths:
        try:
            mesh = meshes.load_mesh(path)
            x = raycast.with_convex_hull(
                lambda surface: raycast.mesh_to_sphere(surface, args.input_res, r0=r0, channels=True,
                                                       supersample=supersample), mesh, convex_hull)
        except (OSError, ValueError) as err:
            text = " ".join(str(err).split()) or type(err).__name__
            report(text if path in text else "{}: {}".format(path, text))
            continue
        rows.append({"x": x, "y": None, "name": path, "group": path})
    return rows


# ---------------------------------------------------------------- images
def is_image_model(args):
    """Image models read 2 real channels (image, support) of spherical_cnn.data.images."""
    return not args.mag_ang and int(args.nchannels) == 2


def read_image(path, shape, invert=False, note=None):
    """A greyscale image as floats in [0, 1], resized to ``shape`` (H, W).

    An alpha channel (PNG's RGBA / LA / transparency, a ``(H, W, 4)`` or ``(H, W, 2)`` .npy)
    is composited over the background: black, or white with ``invert`` (so it ends black
    after the inversion, as Fashion-MNIST's). When that leaves a uniform image while the
    alpha channel is not, the shape is in the alpha channel alone (opaque = object) and is
    read from it; ``note(message)`` says so.
    """
    import numpy as np
    from PIL import Image
    alpha = None
    if path.lower().endswith(".npy"):
        a = np.load(path, allow_pickle=False)
        if a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
            scale = 255.0 if a.dtype == np.uint8 or a.max() > 1 else 1.0
            if a.shape[-1] in (2, 4):
                alpha = a[..., -1].astype(np.float64) / scale
            a = a[..., :3].mean(-1) if a.shape[-1] >= 3 else a[..., 0]
        if a.ndim != 2:
            raise ValueError("{}: expected a 2-D greyscale array, got shape {}".format(path, a.shape))
        a = a.astype(np.float64) / (255.0 if a.dtype == np.uint8 or a.max() > 1 else 1.0)
    else:
        from PIL import UnidentifiedImageError
        try:
            img = Image.open(path)
            img.load()
        except UnidentifiedImageError:
            raise ValueError("{}: not an image file PIL can read".format(path)) from None
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
            img = rgba.convert("RGB")
        if alpha is None:
            img = img.convert("L")
        else:
            a = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    if alpha is not None:
        background = 1.0 if invert else 0.0
        composite = alpha * a + (1.0 - alpha) * background
        if np.ptp(composite) < 1.0 / 255 and np.ptp(alpha) >= 1.0 / 255:
            if note is not None:
                note("{}: the colour is uniform and the shape is in the alpha channel: reading the "
                     "image from its alpha channel (opaque = object)".format(path))
            composite = 1.0 - alpha if invert else alpha
        a = composite
    if alpha is not None or path.lower().endswith(".npy"):
        img = Image.fromarray(np.clip(a * 255, 0, 255).astype(np.uint8))
    if img.size != (shape[1], shape[0]):
        img = img.resize((shape[1], shape[0]), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float64) / 255.0
    return 1.0 - x if invert else x


def input_description(folder):
    """The model's ``input.json`` (how its training inputs were made; written by the trainer
    for image sets and mesh datasets), or None when it has none. A damaged one is one line
    naming it."""
    import json
    from ..training import INPUT_FILE
    path = os.path.join(folder, INPUT_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            described = json.load(f)
        if not isinstance(described, dict):
            raise ValueError("not a JSON object")
        return described
    except (OSError, ValueError) as err:
        raise _unreadable_description(path, err) from None


def _unreadable_description(path, err):
    return UserError("{}: unreadable description of the model's inputs ({}); copy it again from "
                     "the training run".format(path, " ".join(str(err).split())[:200] or type(err).__name__))


def image_projection(folder, shape):
    """``(image shape, band_limit)`` the model in ``folder`` was trained with: from its
    ``input.json``, else the protocol's projection of ``shape`` images."""
    from ..data import images
    from ..training import INPUT_FILE
    described = input_description(folder)
    if described and described.get("kind") != "spherical images":
        described = None
    try:
        return images.projection_settings(described, shape)
    except (ValueError, TypeError, AttributeError) as err:
        raise _unreadable_description(os.path.join(folder, INPUT_FILE), err) from None


def mesh_rendering(folder):
    """``(r0, supersample, convex_hull)`` the model's training meshes were rendered with (its
    ``input.json``), else the defaults (``raycast.DEFAULT_R0``, one ray per cell, no hull)."""
    from ..data.builder import render_settings
    from ..training import INPUT_FILE
    try:
        return render_settings(input_description(folder))
    except (KeyError, ValueError, TypeError) as err:
        raise _unreadable_description(os.path.join(folder, INPUT_FILE), err) from None


def image_rows(paths, args, report, shape=(28, 28), invert=False, note=None, band_limit=0):
    """Each image projected onto the training resolution's grid (not rotated), as the model's
    training images were (``band_limit``: see ``spherical_cnn.data.images.project_band_limited``)."""
    from ..data import images
    rows = []
    for path in paths:
        try:
            x = read_image(path, shape, invert, note)
        except Exception as err:  # noqa: B902 - PIL and NumPy raise many kinds of errors on bad files
            # (DecompressionBombError, EOFError, SyntaxError, tokenize errors: found by benchmarks/fuzz.py)
            text = " ".join(str(err).split()) or type(err).__name__
            report(text if path in text else "{}: {}".format(path, text))
            continue
        rows.append({"x": images.project_band_limited(x[None], args.input_res, None, band_limit)[0],
                     "y": None, "name": path, "group": path})
    return rows


# ---------------------------------------------------------------- prediction
def softmax(logits):
    import numpy as np
    prob = np.exp(logits - logits.max(1, keepdims=True))
    return prob / prob.sum(1, keepdims=True)


def aggregate(prob, groups, how):
    """Combine rows with the same group: ``(group names, probabilities (G, C), row indices per group)``.

    ``mean``: the mean of the rows' probabilities. ``vote``: each row votes for
    its top class; the result is the vote share per class, ties broken by the
    mean probability (so its argmax is the majority class).
    """
    import numpy as np
    order = list(dict.fromkeys(groups))
    members = {g: [] for g in order}
    for i, g in enumerate(groups):
        members[g].append(i)
    out = []
    for g in order:
        p = prob[members[g]]
        mean = p.mean(0)
        if how == "vote":
            votes = np.bincount(p.argmax(1), minlength=p.shape[1]) / len(p)
            out.append(votes + 1e-6 * mean)  # ties: higher mean probability
        else:
            out.append(mean)
    return order, np.stack(out), [members[g] for g in order]


def main(argv=None):
    """Predict; exit status 1 if some input failed, 2 for a missing model or bad flags."""
    a = parse_args(argv)
    if a.list_pretrained:
        from .. import pretrained
        lines = pretrained.describe()
        print("\n".join(lines) if lines else "no pretrained model is shipped with this installation")
        return 0
    failures = []
    prog = os.path.basename(sys.argv[0]) or "predict"

    def report(message):
        failures.append(message)
        print("{}: error: {}".format(prog, message), file=sys.stderr, flush=True)

    def note(message):
        print("{}: note: {}".format(prog, message), file=sys.stderr, flush=True)

    kind = "records" if a.records else "meshes" if a.meshes else "images"
    # missing, empty and folder inputs are reported now, before TensorFlow loads (~10 s); the
    # model is still loaded, so that a bad model is reported too (exit status 2)
    inputs = usable_inputs(getattr(a, kind), kind, report)
    common.quiet_tensorflow(a.verbose)
    import numpy as np
    from ..datasets import to_model_input

    shape = (28, 28)
    if a.pretrained:
        from .. import pretrained
        folder = pretrained.model_dir(a.pretrained)
        shape = tuple(pretrained.meta(a.pretrained).get("image_shape", shape))
    else:
        folder = a.logdir
    args, model, names = load(folder)
    shape, band_limit = image_projection(folder, shape)
    what = "images" if is_image_model(args) else "meshes"
    if (a.images and what != "images") or (a.meshes and what != "meshes"):
        raise UserError("{} was trained on {}: give --{} (or a model trained on {})".format(
            a.pretrained or a.logdir, what, what, "images" if a.images else "meshes"))
    if not inputs:
        rows = []
    elif a.records:
        rows = record_rows(inputs, args, report)
    elif a.meshes:
        rows = mesh_rows(inputs, args, report, *mesh_rendering(folder))
    else:
        rows = image_rows(inputs, args, report, shape, a.invert, note, band_limit)
    if rows:
        x = np.asarray(to_model_input(np.stack([r["x"] for r in rows]), args.mag_ang))
        logits = batch_logits(model, x, a.batch, _progress(range(0, len(x), a.batch), a.batch, len(x)))
        prob = softmax(logits)
        labels = [r["y"] for r in rows]
        row_names = [r["name"] for r in rows]
        if a.aggregate != "none":
            row_names, prob, members = aggregate(prob, [r["group"] for r in rows], a.aggregate)
            labels = [_group_label(labels, idx, name) for idx, name in zip(members, row_names)]
        top = np.argsort(-prob, axis=1)[:, :a.top_k]
        unit = "meshes" if a.aggregate != "none" else "records"
        for i, name in enumerate(row_names):
            y = labels[i]
            if a.rows == "none" or (a.rows == "wrong" and (y is None or top[i, 0] == y)):
                continue
            guesses = ", ".join("{} ({:.3f})".format(names[k], prob[i, k]) for k in top[i])
            truth = "" if y is None else "  true: {}".format(names[y] if y < len(names) else y)
            print("{}: {}{}".format(name, guesses, truth))
        if all(y is not None for y in labels):
            correct = np.mean(top[:, 0] == np.asarray(labels))
            print("accuracy: {:.4f} over {} {}".format(float(correct), len(labels), unit))
    return _finish(failures)


def batch_logits(model, x, batch, starts=None):
    """The model's ``logits`` for the inputs ``x``, ``batch`` at a time (``starts``: the batch
    starts, e.g. wrapped in a progress bar; default every ``batch``-th index)."""
    import numpy as np
    starts = range(0, len(x), batch) if starts is None else starts
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch])["logits"]) for i in starts])


def _progress(batches, batch, total):
    """``batches`` with a progress bar on stderr when it is a terminal and there are several."""
    if len(batches) < 2 or not sys.stderr.isatty():
        return batches
    from tqdm import tqdm
    return tqdm(batches, desc="predicting {} inputs".format(total), unit="batch", file=sys.stderr,
                leave=False, dynamic_ncols=True)


def _finish(failures):
    if failures:
        print("{} input(s) failed (see the errors above)".format(len(failures)), file=sys.stderr)
        return 1
    return 0


def _group_label(labels, indices, name):
    """The label shared by the rows of one mesh (DataError if they disagree)."""
    values = {labels[i] for i in indices}
    if len(values) > 1:
        raise DataError("records of {} carry different labels {}".format(name, sorted(values)))
    return values.pop()
