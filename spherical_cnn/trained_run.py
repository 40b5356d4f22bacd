"""Loading a finished training run for inference: its saved flags, its exported
``model.keras`` and its class names, with one-line errors for what is missing or
damaged. Used by ``spherical-cnn-predict``, the retrieval study and the shipped
pretrained models.

A model file is never trusted to run code: Keras loads it in safe mode, and before that
its ``config.json`` is read and every class it names must be one of Keras' own or of
this project's packages; a ``Lambda`` layer (Python code) or a custom object of any
other package is refused with one line. A folder with ``meta.json`` listing ``sha256``
checksums (a shipped pretrained model) is verified against them before anything is read.
"""
import json
import os

from .data.verify import sha256_file
from .errors import UserError

__all__ = ["load", "load_model", "check_model_config", "verify_checksums"]

OUR_PACKAGES = ("spherical_cnn", "spherical_regression")


def load(logdir):
    """(saved flags, model, class names) of the run in ``logdir``; UserError if there is none."""
    from . import training
    path = os.path.join(logdir, training.EXPORT_FILE)
    if not os.path.isdir(logdir):
        raise UserError("--logdir {} does not exist (train with spherical-cnn-train --logdir {} first)"
                        .format(logdir, logdir))
    verify_checksums(logdir)
    if not os.path.exists(path):
        raise UserError("no exported model at {} (train with spherical-cnn-train --logdir {} first)"
                        .format(path, logdir))
    flags = os.path.join(logdir, training.FLAGS_FILE)
    if not os.path.isfile(flags):
        raise UserError("{} has model.keras but no {} (the flags it was trained with: resolution, dtype, "
                        "--mag_ang); restore it from a copy of the run or, for a shipped model, reinstall "
                        "the package".format(logdir, training.FLAGS_FILE))
    args = training.load_flags(logdir, {"test_only": True, "from_scratch": False})
    model = load_model(path)
    names_file = os.path.join(logdir, training.CLASSES_FILE)
    if os.path.exists(names_file):
        with open(names_file, "rb") as f:
            try:
                names = [line.strip() for line in f.read().decode("utf-8").splitlines() if line.strip()]
            except UnicodeDecodeError:
                raise UserError("{} is not a text file (one class name per line)".format(names_file)) from None
        n_out = _n_logits(model)
        if n_out is not None and len(names) != n_out:
            raise UserError("{} names {} classes but the model in {} predicts {}: the file is damaged or "
                            "belongs to another model (restore it, or delete it to see class numbers)"
                            .format(names_file, len(names), path, n_out))
    else:
        names = ["class {}".format(i) for i in range(_n_logits(model) or args.n_classes)]
    return args, model, names


def _n_logits(model):
    try:
        shape = model.output["logits"].shape if isinstance(model.output, dict) else None
    except (AttributeError, KeyError, TypeError):
        return None
    return int(shape[-1]) if shape is not None and shape[-1] is not None else None


def verify_checksums(folder):
    """Check the files a ``meta.json`` in ``folder`` lists under ``sha256`` (a shipped model);
    UserError naming the first file that is missing or differs. No ``meta.json``, or one
    without checksums: nothing to check."""
    meta_path = os.path.join(folder, "meta.json")
    if not os.path.isfile(meta_path):
        return
    meta = read_meta(meta_path)
    sums = meta.get("sha256") or {}
    if not isinstance(sums, dict):
        raise UserError("damaged {}: 'sha256' is not a mapping of file names to checksums".format(meta_path))
    for name, expected in sorted(sums.items()):
        path = os.path.join(folder, name)
        if os.sep in name or name.startswith("."):
            raise UserError("damaged {}: file name {!r} in 'sha256'".format(meta_path, name))
        if not os.path.isfile(path):
            raise UserError("{} is missing ({} lists it); reinstall the package or ship the model again"
                            .format(path, meta_path))
        if sha256_file(path) != expected:
            raise UserError("{} does not match its checksum in {} (damaged or replaced); it is not loaded. "
                            "Reinstall the package or ship the model again".format(path, meta_path))


def read_meta(path):
    """A ``meta.json`` (dict); UserError naming the file when it is not a JSON object."""
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserError("damaged {}: not readable JSON ({})".format(path, " ".join(str(err).split())[:160])) from None
    if not isinstance(meta, dict):
        raise UserError("damaged {}: expected a JSON object, found {}".format(path, type(meta).__name__))
    return meta


def check_model_config(config, path="model.keras"):
    """Raise UserError if a model config names a class that is neither Keras' nor ours, or a
    ``Lambda`` layer (Python code). ``config``: the parsed ``config.json`` of a ``.keras`` file."""
    def refuse(why):
        return UserError("refusing to load the model {}: {}; only Keras' own layers and this package's "
                         "are loaded from files (Keras's safe mode), never code they carry".format(path, why))
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        cls = node.get("class_name")
        if not isinstance(cls, str):
            continue
        module = node.get("module")
        if cls in ("Lambda", "__lambda__"):
            raise refuse("it holds a Lambda layer ({}), i.e. Python code".format(
                (node.get("config") or {}).get("name", "?") if isinstance(node.get("config"), dict) else "?"))
        if module is None:
            if cls.startswith("__"):  # Keras' own markers: __keras_tensor__, __tuple__, ...
                continue
            raise refuse("it names the custom object {!r} of no known module".format(
                node.get("registered_name") or cls))
        if not isinstance(module, str):
            raise refuse("class {!r} has a module that is not a name".format(cls))
        top = module.split(".")[0]
        if top == "keras":
            continue
        registered = node.get("registered_name") or ""
        if top in OUR_PACKAGES and (not registered or registered.split(">")[0] in OUR_PACKAGES):
            continue
        raise refuse("it needs the custom object {!r} from module {!r}, which is not this package's".format(
            registered or cls, module))


def load_model(path):
    """``keras.models.load_model(path, safe_mode=True)`` after checking the file; a damaged
    file (a directory, text, truncated, a zip without ``config.json``) or one that names
    classes that are not Keras' or ours is one :class:`UserError` naming it."""
    import zipfile
    import keras

    def damaged(why):
        return UserError("cannot load the exported model {}: {} (export it again: spherical-cnn-train "
                         "--test_only does not, a training run with --logdir does)".format(path, why))
    if os.path.isdir(path):
        raise damaged("it is a directory, not a .keras file")
    if not zipfile.is_zipfile(path):
        raise damaged("not a .keras archive (truncated, or not a zip file)")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            bad = z.testzip()
            config = z.read("config.json") if "config.json" in names else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise damaged("unreadable zip archive ({})".format(" ".join(str(err).split()))) from None
    missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
    if missing:
        raise damaged("the archive has no {}".format(" and no ".join(missing)))
    if bad is not None:
        raise damaged("{} in the archive is damaged (CRC mismatch)".format(bad))
    try:
        config = json.loads(config.decode("utf-8"))
    except ValueError as err:
        raise damaged("its config.json is not JSON ({})".format(" ".join(str(err).split())[:160])) from None
    check_model_config(config, path)
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as err:  # noqa: B902 - any failure of the loader means the file is bad
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise damaged(text) from None
