"""Loading a finished training run for inference: its saved flags, its exported
``model.keras`` and its class names, with one-line errors for what is missing or
damaged. Used by ``spherical-cnn-predict`` and by the shipped pretrained models.
"""
import os

from .errors import UserError

__all__ = ["load", "load_model"]


def load(logdir):
    """(saved flags, model, class names) of the run in ``logdir``; UserError if there is none."""
    import keras
    from . import training
    path = os.path.join(logdir, training.EXPORT_FILE)
    if not os.path.isdir(logdir):
        raise UserError("--logdir {} does not exist (train with spherical-cnn-train --logdir {} first)"
                        .format(logdir, logdir))
    if not os.path.exists(path):
        raise UserError("no exported model at {} (train with spherical-cnn-train --logdir {} first)"
                        .format(path, logdir))
    args = training.load_flags(logdir, {"test_only": True, "from_scratch": False})
    model = load_model(path)
    names_file = os.path.join(logdir, training.CLASSES_FILE)
    if os.path.exists(names_file):
        with open(names_file) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = ["class {}".format(i) for i in range(args.n_classes)]
    return args, model, names


def load_model(path):
    """``keras.models.load_model(path)``; a damaged file (a directory, text, truncated, a zip
    without ``config.json``) is one :class:`UserError` naming it."""
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
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise damaged("unreadable zip archive ({})".format(err)) from None
    missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
    if missing:
        raise damaged("the archive has no {}".format(" and no ".join(missing)))
    if bad is not None:
        raise damaged("{} in the archive is damaged (CRC mismatch)".format(bad))
    try:
        return keras.models.load_model(path)
    except Exception as err:  # noqa: B902 - any failure of the loader means the file is bad
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise damaged(text) from None
