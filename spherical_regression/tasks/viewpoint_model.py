"""The S^1 viewpoint task's model, loss and metrics (the task is ``viewpoint``).

Images ``(batch, height, width, channels)`` float32 in [0, 1]; targets biternions
``(batch, 2)`` = (cos a, sin a) of the camera azimuth a (viewpoint.py).
"""
import keras
import numpy as np

from .. import heads as heads_lib
from .. import losses as losses_lib
from .. import metrics as metrics_lib
from . import common, runner
from .viewpoint import ABS_LOSSES


class ViewpointRegressor(keras.Model):
    """common.build_backbone + a head with d = 2. ``call((images,))`` returns the head
    output; ``forward_parts((images,), training)`` returns ([O, ...], output);
    ``predict_biternions(images)`` unit (cos a, sin a) ``(n, 2)``."""

    def __init__(self, head, image_size, channels=2, width=16, feature_units=256, **kwargs):
        super().__init__(**kwargs)
        self.head_name = head
        self.backbone = common.build_backbone(image_size, channels, width, feature_units)
        self.head = heads_lib.make_head(head, 2,
                                        sign_layout="biternion" if head == "sexp" else None)
        self.head.build((None, feature_units))

    def call(self, inputs, training=False):
        return self.forward_parts(inputs, training)[1]

    def forward_parts(self, inputs, training=False):
        parts = self.head.pre_activation(self.backbone(inputs[0], training=training))
        return parts, self.head.activate(parts)

    def predict_biternions(self, images, batch_size=256):
        out = [self.head.decode(self((runner.as_model_input(images[i:i + batch_size]),))).numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out, axis=0)


def build_model(head, image_size, channels=2, width=16, feature_units=256):
    return ViewpointRegressor(head, image_size, channels, width, feature_units)


def make_loss(head, abs_loss="log_likelihood"):
    """The per-sample loss ``(targets (batch, 2), output) -> (batch,)`` of a head; S_exp:
    the original S^1 loss (log-likelihood abs loss, weight 4) or cosine (weight 10)."""
    if head == "sexp":
        loss = losses_lib.SExpLoss(abs_loss=abs_loss, abs_weight=ABS_LOSSES[abs_loss],
                                   sign_weight=1.0, sign_layout="biternion")
    else:
        loss = losses_lib.loss_for_head(head)
    return loss.call


def azimuth_metrics(targets, predictions):
    """MedErr (degrees) and Acc@pi/6, pi/12, pi/24 (fractions) of the azimuth errors
    between biternions ``(n, 2)`` (predictions need not be unit)."""
    errors = metrics_lib.biternion_angle(targets, predictions)
    out = {"MedErr": metrics_lib.median_error_deg(errors)}
    for name, t in metrics_lib.THRESHOLDS.items():
        out[f"Acc@{name}"] = metrics_lib.accuracy_at(errors, t)
    return out


def build_run(head, seed, train, test, width=16, abs_loss="log_likelihood"):
    """The runner.Run of one (head, seed): a fresh model seeded by ``seed``."""
    keras.utils.set_random_seed(seed)
    model = build_model(head, train["images"].shape[1], train["images"].shape[3], width)
    return runner.Run(model=model, loss_fn=make_loss(head, abs_loss),
                      train=dict(inputs=(train["images"],), targets=train["targets"]),
                      evaluate=lambda m: azimuth_metrics(test["targets"],
                                                         m.predict_biternions(test["images"])))


def make_run(head, seed, train, test, args):
    """The runner.Run of one (head, seed) with the flags of ``viewpoint`` (the CLI's entry point)."""
    return build_run(head, seed, train, test, args.width, args.abs_loss)
