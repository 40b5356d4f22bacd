"""Ensembles of trained classifiers: one Keras model whose class probabilities are the mean
of its members' (the members are, typically, the same recipe trained with several seeds).

:func:`ensemble_model` builds it from loaded models; :func:`write_ensemble` from finished
training runs, into a run folder that ``spherical-cnn-predict --logdir``, the retrieval
study and ``tools/ship_pretrained.py`` read like any other (``model.keras``,
``flags.yaml``, ``classes.txt``, ``input.json``), with ``ensemble.json`` naming the members.

Layouts: the input is the members' input, ``(batch, azimuth, polar, channels)``; the
outputs are ``logits`` ``(batch, n_classes)``, the log of the mean probability (so that
``softmax(logits)`` is the mean of the members' ``softmax``), and ``descriptor``, the
members' descriptors concatenated in member order.
"""
import json
import os
from typing import Sequence

import keras
from keras import ops

from .errors import UserError

__all__ = ["MeanProbabilityLogits", "ensemble_model", "write_ensemble", "INPUT_FLAGS", "ENSEMBLE_FILE"]

ENSEMBLE_FILE = "ensemble.json"
# flags that fix what a model reads and predicts: every member must agree on them
INPUT_FLAGS = ("input_res", "nchannels", "dtype", "mag_ang", "real_inputs", "n_classes")


@keras.saving.register_keras_serializable(package="spherical_cnn")
class MeanProbabilityLogits(keras.layers.Layer):
    """``log(mean_i softmax(logits_i))`` of a list of ``(batch, n_classes)`` logits: logits
    whose softmax is the members' mean probability (computed as a log-sum-exp of the
    log-softmaxes, so that no probability underflows)."""

    def call(self, logits):
        stacked = ops.stack([ops.log_softmax(x, axis=-1) for x in logits], axis=0)
        return ops.logsumexp(stacked, axis=0) - ops.log(float(len(logits)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


def ensemble_model(models: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model averaging the probabilities of ``models`` (Keras models with the outputs
    ``logits`` and ``descriptor`` and one input, all of the same shape and dtype).
    The members are kept as they are (nested as ``member_0``, ``member_1``, ...)."""
    if len(models) < 2:
        raise UserError("an ensemble needs at least 2 models, got {}".format(len(models)))
    first = models[0].input
    for i, m in enumerate(models):
        if isinstance(m.input, (list, tuple, dict)) or not isinstance(m.output, dict) \
                or "logits" not in m.output or "descriptor" not in m.output:
            raise UserError("model {} ({}) is not a classifier of this package (one input; outputs "
                            "'logits' and 'descriptor')".format(i, m.name))
        if tuple(m.input.shape[1:]) != tuple(first.shape[1:]) or m.input.dtype != first.dtype:
            raise UserError("model {} reads {} {} but model 0 reads {} {}: the members must read the same "
                            "inputs".format(i, m.input.dtype, tuple(m.input.shape[1:]), first.dtype,
                                            tuple(first.shape[1:])))
    x = keras.Input(shape=tuple(first.shape[1:]), dtype=first.dtype, name="x")
    outputs = []
    for i, m in enumerate(models):
        member = keras.Model(m.input, {"logits": m.output["logits"], "descriptor": m.output["descriptor"]},
                             name="member_{}".format(i))
        outputs.append(member(x))
    logits = MeanProbabilityLogits(name="mean_probability")([o["logits"] for o in outputs])
    descriptor = keras.layers.Concatenate(name="descriptors")([o["descriptor"] for o in outputs])
    return keras.Model(x, {"logits": logits, "descriptor": descriptor}, name=name)


def _read_member(logdir):
    """(flags dict as saved, parsed flags, model, class names) of one member run."""
    import yaml
    from . import trained_run, training
    args, model, names = trained_run.load(logdir)
    with open(os.path.join(logdir, training.FLAGS_FILE), "rb") as f:
        saved = yaml.safe_load(f.read().decode("utf-8"))
    return saved, args, model, names


def _input_description(logdir):
    from .training import INPUT_FILE
    path = os.path.join(logdir, INPUT_FILE)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def write_ensemble(logdirs, out_dir, overwrite=False, command=None, log=print):
    """Write the ensemble of the finished runs ``logdirs`` to the run folder ``out_dir``
    (atomically). Every member must agree on :data:`INPUT_FLAGS`, its class names and its
    ``input.json``; the first disagreement is one :class:`UserError` naming both runs.
    Returns the ensemble model."""
    import shutil
    import yaml
    from . import training
    from .data.atomic_output import AtomicFolder
    if len(logdirs) < 2:
        raise UserError("an ensemble needs at least 2 runs, got {}".format(len(logdirs)))
    if len(set(os.path.realpath(d) for d in logdirs)) != len(logdirs):
        raise UserError("a run is named twice in {}: each member must be its own run".format(" ".join(logdirs)))
    folder = AtomicFolder(out_dir, overwrite=overwrite, what="--out", holder="ensemble", noun="ensemble")
    members = []
    for i, logdir in enumerate(logdirs):
        saved, args, model, names = _read_member(logdir)
        log("member {}: {} ({:,} parameters)".format(i, logdir, model.count_params()))
        if members:
            ref = members[0]
            for flag in INPUT_FLAGS:
                mine, theirs = getattr(args, flag, None), getattr(ref["args"], flag, None)
                if mine != theirs:
                    raise UserError("--{} is {!r} in {} but {!r} in {}: the members must read the same "
                                    "inputs".format(flag, mine, logdir, theirs, ref["logdir"]))
            if names != ref["names"]:
                raise UserError("{} names its classes {} but {} names them {}: the members must predict "
                                "the same classes".format(logdir, ",".join(names), ref["logdir"],
                                                          ",".join(ref["names"])))
            if _input_description(logdir) != _input_description(ref["logdir"]):
                raise UserError("{} and {} were trained on inputs made differently (their {} differ)"
                                .format(logdir, ref["logdir"], training.INPUT_FILE))
        members.append({"logdir": logdir, "saved": saved, "args": args, "model": model, "names": names})
    model = ensemble_model([m["model"] for m in members])
    with folder as out:
        model.save(os.path.join(out.stage, training.EXPORT_FILE))
        flags = dict(members[0]["saved"])
        flags["logdir"] = out_dir
        flags["run_id"] = os.path.basename(os.path.normpath(out_dir))
        with open(os.path.join(out.stage, training.FLAGS_FILE), "w") as f:
            yaml.safe_dump(flags, f, sort_keys=True)
        with open(os.path.join(out.stage, training.CLASSES_FILE), "w") as f:
            f.write("\n".join(members[0]["names"]) + "\n")
        if _input_description(logdirs[0]) is not None:
            shutil.copy(os.path.join(logdirs[0], training.INPUT_FILE), os.path.join(out.stage, training.INPUT_FILE))
        described = {"method": "mean of the members' softmax probabilities",
                     "members": [{"logdir": m["logdir"], "seed": m["saved"].get("seed"),
                                  "parameters": int(m["model"].count_params())} for m in members],
                     "parameters": int(model.count_params())}
        if command:
            described["command"] = command
            with open(os.path.join(out.stage, "command.txt"), "w") as f:
                f.write(command + "\n")
        with open(os.path.join(out.stage, ENSEMBLE_FILE), "w") as f:
            json.dump(described, f, indent=1)
    return model
