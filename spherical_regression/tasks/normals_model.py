"""The S^2 normals task's network, per-pixel loss and metrics (the task is ``normals``).

Images ``(batch, h, w, channels)`` float32 in [0, 1]; targets ``(batch, h, w, 3)`` unit
normals in the original's (y, z, x) layout (normals.py), zero on the background; the
foreground mask ``(batch, h, w)`` weights the loss and selects the pixels of the metrics.
"""
import keras
import numpy as np

from .. import heads as heads_lib
from .. import losses as losses_lib
from .. import metrics as metrics_lib
from . import runner
from .normals import SIGN_LAYOUT, THRESHOLDS_DEG


# --- the model ------------------------------------------------------------------------

def build_fcn(channels, width):
    """Fully convolutional trunk: ``(batch, h, w, channels)`` -> ``(batch, h, w, width)``
    (h and w even; module docstring)."""
    from keras import layers

    def cbr(x, units, stride=1, dilation=1):
        x = layers.Conv2D(units, 3, strides=stride, dilation_rate=dilation, padding="same",
                          use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))

    images = keras.Input((None, None, channels))
    x = cbr(images, width)
    full = cbr(x, width)
    y = cbr(full, 2 * width, stride=2)
    y = cbr(y, 2 * width, dilation=2)
    y = layers.UpSampling2D(2, interpolation="bilinear")(y)
    x = cbr(layers.Concatenate()([full, y]), width)
    return keras.Model(images, x, name="fcn")


class NormalNet(keras.Model):
    """FCN trunk + per-pixel head. Inputs: the tuple ``(images,)`` with images
    ``(batch, h, w, channels)``; output: the head's output ``(batch, h, w, k)``."""

    def __init__(self, head="sexp", channels=1, width=24, head_hidden=0, **kwargs):
        super().__init__(**kwargs)
        self.head_name = head
        self.trunk = build_fcn(channels, width)
        hidden = (head_hidden,) if head_hidden else ()
        self.head = heads_lib.make_head(head, 3, hidden_units=hidden,
                                        sign_layout=SIGN_LAYOUT if head == "sexp" else None)
        self.head.build((None, None, None, width))

    def call(self, inputs, training=False):
        return self.forward_parts(inputs, training)[1]

    def forward_parts(self, inputs, training=False):
        """(pre-activation parts [O (batch, h, w, 3), ...], head output)."""
        images = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        parts = self.head.pre_activation(self.trunk(images, training=training))
        return parts, self.head.activate(parts)

    def predict_normals(self, images, batch_size=128):
        """Unit normals ``(n, h, w, 3)`` in the (y, z, x) layout."""
        out = [self.head.decode(self((runner.as_model_input(images[i:i + batch_size]),)))
               for i in range(0, len(images), batch_size)]
        return np.concatenate([np.asarray(o) for o in out], axis=0)


def loss_for(head):
    """Per-pixel loss ``(targets, output) -> (batch, h, w)`` of a head."""
    if head == "sexp":
        loss = losses_lib.SExpLoss(abs_weight=10.0, sign_weight=1.0, sign_layout=SIGN_LAYOUT)
    else:
        loss = losses_lib.loss_for_head(head)
    return loss.call


# --- metrics --------------------------------------------------------------------------

def pixel_errors(targets, predictions, mask):
    """Angular errors (radians) ``(m,)`` of the foreground pixels (mask > 0) of
    ``(n, h, w, 3)`` targets and predictions. A prediction of zero length (a raw
    output of exactly 0, which has no direction) counts as the worst error, pi."""
    fg = np.asarray(mask) > 0
    t, p = np.asarray(targets, np.float64)[fg], np.asarray(predictions, np.float64)[fg]
    zero = np.linalg.norm(p, axis=-1) < 1e-12
    p[zero] = -t[zero]
    return metrics_lib.vector_angle(t, p)


def normal_metrics(errors):
    """{'MedErr', 'MeanErr'} in degrees and {'<11.25', '<22.5', '<30'} fractions of
    angular errors (radians) ``(m,)``."""
    deg = np.degrees(np.asarray(errors, np.float64))
    if deg.size == 0:
        raise ValueError("normal_metrics: no foreground pixels")
    out = {"MedErr": float(np.median(deg)), "MeanErr": float(np.mean(deg))}
    out.update({f"<{t:g}": float(np.mean(deg < t)) for t in THRESHOLDS_DEG})
    return out


def evaluate(model, test, batch_size=128):
    """The metrics of ``model`` over the foreground pixels of ``test``."""
    pred = model.predict_normals(test["inputs"][0], batch_size)
    return normal_metrics(pixel_errors(test["targets"], pred, test["weights"]))


def build_run(head, seed, train, test, width, head_hidden=0):
    """The runner.Run of one (head, seed) on the arrays of ``normals.load_data``."""
    keras.utils.set_random_seed(seed)
    model = NormalNet(head, train["inputs"][0].shape[-1], width, head_hidden)
    return runner.Run(model=model, loss_fn=loss_for(head), train=train,
                      evaluate=lambda m: evaluate(m, test))


def make_run(head, seed, train, test, args):
    """The runner.Run of one (head, seed) with the flags of ``normals`` (the CLI's entry point)."""
    return build_run(head, seed, train, test, args.width, args.head_hidden)
