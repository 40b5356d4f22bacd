"""Trained models shipped with the package (``spherical-cnn-predict --pretrained NAME``).

Each model is a folder ``spherical_cnn/pretrained/<name>/`` laid out like a
training log directory, so that everything that reads one (``predict``) reads it:

  ``model.keras``   the exported model;
  ``flags.yaml``    the flags it was trained with (paths made relative);
  ``classes.txt``   class names, label = line index;
  ``meta.json``     what produced it: ``command``, ``revision`` (git commit),
                    ``sha256`` (the checksum of every other file, verified before the
                    model is loaded: :func:`spherical_cnn.trained_run.verify_checksums`),
                    ``test_accuracy`` (on its full test set, with ``test_set``
                    saying which), ``input`` ('meshes' or 'images'), and ``subset``:
                    a small fixed test subset that :func:`subset_data` regenerates
                    and its accuracy at shipping time (``subset.accuracy``); optionally
                    ``study``: the test accuracy of the study the model comes from, over
                    seeds (``regime``, ``mean``, ``std``, per-seed ``values``, ``command``);
  optional data of the subset (``subset.npz`` images, ``subset.tfrecord`` records).

Subset kinds (``meta['subset']['kind']``):
  ``synthetic``  the first k test meshes per class of the built-in synthetic set,
                 regenerated with the dataset builder (same meshes and rotations);
  ``images``     raw test images shipped in ``subset.npz`` (uint8 images, labels,
                 their indices in the IDX file), projected as the builder does;
  ``records``    test records shipped as they are in ``subset.tfrecord``.

Add one with ``tools/ship_pretrained.py LOGDIR NAME`` (docs/pretrained.md).
"""
import os

from ..errors import UserError

PRETRAINED_DIR = os.path.dirname(os.path.abspath(__file__))
META_FILE = "meta.json"


def names():
    """Names of the shipped models (sorted; hidden folders, e.g. a shipping in progress, are not)."""
    return sorted(d for d in os.listdir(PRETRAINED_DIR)
                  if not d.startswith(".") and os.path.isfile(os.path.join(PRETRAINED_DIR, d, META_FILE)))


def model_dir(name):
    """Folder of model ``name``; UserError naming the shipped ones if there is none."""
    path = os.path.join(PRETRAINED_DIR, name)
    if not name or os.sep in name or name.startswith(".") or not os.path.isfile(os.path.join(path, META_FILE)):
        raise UserError("no pretrained model {!r}; shipped: {} (spherical-cnn-predict --list_pretrained)"
                        .format(name, ", ".join(names()) or "none"))
    return path


def meta(name):
    """``meta.json`` of model ``name`` (dict); UserError naming the file if it is damaged."""
    from ..trained_run import read_meta
    return read_meta(os.path.join(model_dir(name), META_FILE))


def study_text(m):
    """``'; study R/R 0.8712 +- 0.0040 over 3 seeds'`` from meta.json's ``study`` (``''`` without)."""
    st = m.get("study")
    if not st:
        return ""
    return "; study {} {:.4f} +- {:.4f} over {} seeds".format(st["regime"], st["mean"], st["std"],
                                                             len(st["values"]))


def describe():
    """One line per shipped model: name, input, classes, test accuracy, size (or what is
    damaged)."""
    lines = []
    for n in names():
        try:
            m = meta(n)
        except UserError as err:
            lines.append("{:<14s} damaged: {}".format(n, err))
            continue
        size = sum(os.path.getsize(os.path.join(model_dir(n), f)) for f in os.listdir(model_dir(n)))
        try:
            lines.append("{:<14s} {:<7s} {:>2d} classes  test accuracy {:.4f} ({}{})  res {}  {:.1f} MB  {}".format(
                n, m.get("input", "?"), len(m.get("classes", [])), m.get("test_accuracy", float("nan")),
                m.get("test_set", "test set"), study_text(m), m.get("input_res", "?"), size / 1e6,
                m.get("description", "")))
        except (TypeError, ValueError, KeyError) as err:
            lines.append("{:<14s} damaged: {}: a field of the wrong type ({})".format(
                n, os.path.join(model_dir(n), META_FILE), err))
    return lines


# --------------------------------------------------------------------------- the fixed subset

def _synthetic_subset(spec):
    from ..data import builder, raycast, synthetic
    import numpy as np
    xs, ys = [], []
    for label, c in enumerate(synthetic.CLASS_NAMES):
        for i in range(int(spec["n_test_per_class"])):
            rel = "{}/test/{}_{:04d}.off".format(c, c, i + 1)
            job = {"index": 0, "source": "synthetic", "class_name": c, "relpath": rel,
                   "mesh_seed": synthetic.mesh_seed(spec["seed"], c, "test", i),
                   "rot_mode": spec["rotations"], "n_rot": int(spec["n_test_rotations"]),
                   "seed": spec["seed"], "res": int(spec["input_res"]),
                   "r0": spec.get("r0", raycast.DEFAULT_R0), "supersample": spec.get("supersample", 1),
                   "convex_hull": bool(spec.get("convex_hull", False)),
                   "aniso_scale": None, "center_shift": 0.0}
            _, maps, _, _, err = builder._render(job)
            if err:
                raise RuntimeError("{}: {}".format(rel, err))
            xs.append(maps)
            ys += [label] * len(maps)
    return np.concatenate(xs), np.asarray(ys)


def _images_subset(folder, spec):
    import numpy as np
    from ..data import images, rotations
    with np.load(os.path.join(folder, spec["file"])) as d:
        imgs, labels, index = d["images"], d["labels"], d["index"]
    mats = None
    if spec["rotation"] != "NR":
        quats = images.rotation_quaternions(images.MODES[spec["rotation"]], int(spec["n_file"]),
                                            spec["seed"], "test", 0)[index]
        mats = rotations.quaternion_to_matrix(quats)
    return (images.project_band_limited(imgs, int(spec["input_res"]), mats, int(spec.get("band_limit", 0))),
            labels.astype(np.int64))


def _records_subset(folder, spec, args):
    import numpy as np
    from ..data import verify
    xs, ys = [], []
    rspec = verify.RecordSpec.from_args(args)
    for index, raw in verify.iter_raw_records(os.path.join(folder, spec["file"])):
        d = rspec.decode(raw, spec["file"], index)
        xs.append(d["x"])
        ys.append(d["y"])
    return np.stack(xs), np.asarray(ys)


def checksums(folder):
    """``{file: sha256}`` of every file of a model folder but ``meta.json`` (what
    ``meta.json`` records under ``sha256``)."""
    from ..data.verify import sha256_file
    return {f: sha256_file(os.path.join(folder, f)) for f in sorted(os.listdir(folder))
            if f != META_FILE and not f.startswith(".") and os.path.isfile(os.path.join(folder, f))}


def subset_data(folder, spec, args=None):
    """``(x, y)`` of the fixed subset described by ``spec`` (``meta['subset']``), as records hold them."""
    kind = spec["kind"]
    if kind == "synthetic":
        return _synthetic_subset(spec)
    if kind == "images":
        return _images_subset(folder, spec)
    if kind == "records":
        return _records_subset(folder, spec, args)
    raise ValueError("unknown subset kind {!r}".format(kind))


def evaluate(folder, spec=None, batch=64):
    """Accuracy of the model in ``folder`` (a pretrained folder or a log directory) on its subset.

    Returns ``(accuracy, n)``.
    """
    import numpy as np
    from .. import trained_run
    from ..datasets import to_model_input
    args, model, _ = trained_run.load(folder)
    if spec is None:
        spec = trained_run.read_meta(os.path.join(folder, META_FILE))["subset"]
    x, y = subset_data(folder, spec, args)
    x = np.asarray(to_model_input(x, args.mag_ang))
    logits = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch])["logits"])
                             for i in range(0, len(x), batch)])
    return float(np.mean(logits.argmax(1) == y)), int(len(y))
