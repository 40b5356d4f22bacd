"""The S^3 rotation task's model, loss and evaluation (the task is ``rotation``).

Images ``(batch, size, size, channels)`` float32 in [0, 1]; targets unit quaternions
``(batch, 4)`` (w, x, y, z), w >= 0; class ids ``(batch,)`` int32.
"""
import keras
import numpy as np

from .. import heads as heads_lib
from .. import losses as losses_lib
from .. import metrics as metrics_lib
from . import runner
from .common import build_backbone
from .rotation import METRICS

HEAD_NAMES = ("sexp", "sflat", "direct")


class RotationRegressor(keras.Model):
    """Backbone + head. ``forward_parts(inputs)`` with inputs ``(images,)`` or, when
    conditioned (``num_categories`` given), ``(images, class_ids)``; images
    ``(batch, size, size, channels)`` float32 in [0, 1]. ``predict_quaternions`` gives
    unit quaternions ``(n, 4)`` (w, x, y, z)."""

    def __init__(self, head="sexp", image_size=64, channels=2, width=32, feature_units=256,
                 logit_scale="paper", sign_layout="quaternion", num_categories=None, **kwargs):
        super().__init__(**kwargs)
        if head not in HEAD_NAMES:
            raise ValueError(f"unknown head {head!r}: expected one of {HEAD_NAMES}")
        self.head_name = head
        self.conditioned = num_categories is not None
        self.backbone = build_backbone(image_size, channels, width, feature_units)
        # quaternions: first component made non-negative, so fix its sign ('quaternion',
        # or the original's 'quaternion_original', where w == 0 flips too)
        kw = dict(fix_first_sign=True, logit_scale=logit_scale,
                  sign_layout=sign_layout if head == "sexp" else None)
        if self.conditioned:
            self.head = heads_lib.CategoryConditionedHead(head, 4, int(num_categories), **kw)
        else:
            self.head = heads_lib.make_head(head, 4, **kw)
        self.head.build((None, feature_units))

    def _head_parts(self, inputs, training):
        features = self.backbone(inputs[0], training=training)
        if self.conditioned:
            return self.head.pre_activation(features, inputs[1])
        return self.head.pre_activation(features)

    def forward_parts(self, inputs, training=False):
        """(pre-activation parts [O, ...], head output)."""
        parts = self._head_parts(inputs, training)
        return parts, self.head.activate(parts)

    def call(self, inputs, training=False):
        return self.forward_parts(inputs, training)[1]

    def predict_quaternions(self, images, class_ids=None, batch_size=256):
        out = []
        for i in range(0, len(images), batch_size):
            inputs = (runner.as_model_input(images[i:i + batch_size]),)
            if self.conditioned:
                inputs += (runner.as_model_input(class_ids[i:i + batch_size]),)
            out.append(self.head.decode(self.forward_parts(inputs)[1]).numpy())
        return np.concatenate(out, axis=0)


def make_train_step(model, loss_fn, optimizer):
    """The shared compiled step (runner.make_train_step) for inputs ``(images,)``."""
    return runner.make_train_step(model, loss_fn, optimizer)


def per_class_summary(errors, class_ids, class_names):
    """The paper's figures: per category MedErr (deg) and Acc@..., then their mean over
    the categories present; ``errors`` in radians ``(n,)``."""
    per_class = {}
    for c, name in enumerate(class_names):
        sel = class_ids == c
        if np.any(sel):
            per_class[name] = metrics_lib.summarize_errors(errors[sel])
    out = {k: float(np.mean([s[k] for s in per_class.values()])) for k in METRICS}
    out["MedErr_all"] = metrics_lib.median_error_deg(errors)
    out["per_class"] = per_class
    return out


def evaluate(model, test, batch_size=256):
    """Geodesic errors (radians, ``(n,)``) and :func:`per_class_summary` on ``test``."""
    pred = model.predict_quaternions(test["images"], test["class_ids"], batch_size)
    errors = metrics_lib.geodesic_distance_quaternions(test["quaternions"], pred)
    return errors, per_class_summary(errors, test["class_ids"], test["class_names"])


def make_loss(head, abs_weight=10.0, sign_weight=1.0, sign_layout="quaternion"):
    """Per-sample loss function of a head (S_exp: the original's S^3 weights 10 and 1)."""
    if head == "sexp":
        return losses_lib.SExpLoss(abs_weight=abs_weight, sign_weight=sign_weight,
                                   sign_layout=sign_layout).call
    return losses_lib.loss_for_head(head).call


def build_run(head, seed, train, test, image_size, width=32, feature_units=256,
              conditioned=True, logit_scale="paper", sign_layout="quaternion",
              abs_weight=10.0, sign_weight=1.0):
    """The runner.Run of one (head, seed) on arrays from rotation_data / modelnet10_so3."""
    keras.utils.set_random_seed(seed)
    channels = train["images"].shape[-1]
    num_categories = len(train["class_names"]) if conditioned else None
    model = RotationRegressor(head, image_size, channels, width, feature_units,
                              logit_scale=logit_scale, sign_layout=sign_layout,
                              num_categories=num_categories)
    inputs = (train["images"], train["class_ids"]) if conditioned else (train["images"],)
    return runner.Run(model=model,
                      loss_fn=make_loss(head, abs_weight, sign_weight, sign_layout),
                      train=dict(inputs=inputs, targets=train["quaternions"].astype(np.float32)),
                      evaluate=lambda m: evaluate(m, test)[1])


def make_run(head, seed, train, test, args):
    """The runner.Run of one (head, seed) with the flags of ``rotation`` (the CLI's entry point)."""
    return build_run(head, seed, train, test, args.image_size, width=args.width,
                     conditioned=args.conditioned, logit_scale=args.logit_scale,
                     sign_layout=args.sign_layout, abs_weight=args.abs_weight,
                     sign_weight=args.sign_weight)


__all__ = ["HEAD_NAMES", "RotationRegressor", "make_train_step", "evaluate",
           "per_class_summary", "build_run", "make_loss", "make_run"]
