"""Export a Keras model with the package's layers to TensorFlow Lite (phones, edge devices).

    from spherical_cnn import export
    export.to_tflite(model, "model.tflite")              # TFLite's builtin ops only

The layers convert with TFLite's builtin operators alone (no Select TF ops, which the
TFLite interpreter shipped with TensorFlow cannot run): their transposes have at most 6
axes (``sht.permute_axes``), the anti-aliased nonlinearity pads nothing, and the
pooling layers are slices, sums and average pools. ``to_tflite`` fixes the batch (1 by
default: a map at a time, as an edge device runs), converts with builtin ops only and
writes the file. Outputs
are those of the model (a dict model gives one output per key, by name in
``get_signature_runner()``); the float32 result equals Keras's to about 2e-7 relative
(``test/test_export.py`` runs the interpreter on the demo's model).

Known limits (TensorFlow 2.21's converter and interpreter): the 'sep' transform's
``legendre_rows='half'``, the default from n = 256, does not convert with a fixed batch (a
converter bug: a reshape of -1 elements; refused in one line), and with a dynamic batch
it converts to a flatbuffer the interpreter refuses; grids below 256 (the 'all' Legendre
step) convert. ``batch_size=None`` (a dynamic batch) is not supported by the interpreter
for the demo's model either. ``SphericalActivation(method='naive')`` pads a 6-axis
tensor, which TFLite refuses: use 'sep' (the default).
"""
from __future__ import annotations

import os

from .errors import UserError

__all__ = ["to_tflite"]


def to_tflite(model, path: str | None = None, batch_size: int | None = 1) -> bytes:
    """The TFLite flatbuffer of ``model`` (a Keras model on the TensorFlow backend).

    Args:
        model: a ``keras.Model`` whose inputs are maps ``(batch, n, n, channels)`` (or any
            fixed-shape inputs).
        path: where to write it (atomically); None: only return the bytes.
        batch_size: the fixed batch of the converted model (1 by default); None keeps the
            model's batch (dynamic for a ``keras.Input`` without one), which the TFLite
            interpreter refuses for the demo's model (module docstring).
    Returns the flatbuffer. A model that needs operators TFLite lacks is refused with one
    line naming the operator (``UserError``).
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise UserError("export.to_tflite needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    if batch_size is not None:  # the same model behind inputs of a fixed batch
        inputs = [keras.Input(batch_shape=(batch_size,) + tuple(t.shape[1:]), dtype=t.dtype,
                              name=t.name.split(":")[0]) for t in model.inputs]
        model = keras.Model(inputs, model(inputs if len(inputs) > 1 else inputs[0]))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # variables become constants
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        blob = converter.convert()
    except Exception as err:  # ConverterError: name the operator TFLite lacks
        text = " ".join(str(err).split())
        op = text.split("'tf.", 1)[1].split("'", 1)[0] if "'tf." in text else None
        raise UserError("export.to_tflite: the model needs {} that TFLite's builtin operators lack "
                        "(see spherical_cnn.export: its known limits)".format(
                            "the TensorFlow op " + op if op else "an operator")) from None
    if path is not None:
        tmp = "{}.tmp-{}".format(path, os.getpid())
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    return blob
