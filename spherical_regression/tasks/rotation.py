"""Rotation estimation from images with the S_exp, S_flat or Direct head.

A small CNN (trained from scratch) maps an image ``(size, size, channels)`` to
features; the head maps them to its output (heads.py). Training uses a custom
TensorFlow step so that the gradient of the loss w.r.t. the head's
pre-activation O (dL/dO, the logits the head's activation consumes) is available
per batch; its norm's mean and variance per epoch is the quantity behind the
paper's stability claim. For S_exp, O are the d absolute-value logits (the
sign-classifier logits are reported separately as ``sign_grad_norm``).

The loss is the batch mean of the per-sample loss, so dL/dO carries a 1/batch
factor, the same for all heads.

Conventions (heads.py, signs.py): targets are quaternions (w, x, y, z) with w >= 0;
the S_exp head classifies the signs of (x, y, z) with the sign layout 'quaternion'
(w < 0 flips) or 'quaternion_original' (w <= 0 flips, as the original code), and
computes |y| under ``logit_scale`` 'paper' (sqrt(softmax(2 O))) or 'original_code'
(sqrt(softmax(O))). Data: ``rotation_data`` (renders, float32 images) or
``modelnet10_so3`` (the original's release, uint8 images, scaled per batch).
"""
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from .. import heads as heads_lib
from .. import losses as losses_lib
from .. import metrics as metrics_lib

HEAD_NAMES = ("sexp", "sflat", "direct")


def build_backbone(image_size, channels, width=32, feature_units=256, name="backbone"):
    """Conv(3x3, stride 2)+BN+ReLU x4 (width, 2w, 2w, 4w) -> Flatten -> Dense+ReLU.
    Input ``(batch, size, size, channels)``, output ``(batch, feature_units)``."""
    layers = [keras.Input((image_size, image_size, channels))]
    for w in (width, 2 * width, 2 * width, 4 * width):
        layers += [keras.layers.Conv2D(w, 3, strides=2, padding="same", use_bias=False),
                   keras.layers.BatchNormalization(), keras.layers.ReLU()]
    layers += [keras.layers.Flatten(), keras.layers.Dense(feature_units, activation="relu")]
    return keras.Sequential(layers, name=name)


class RotationRegressor(keras.Model):
    """Backbone + head; ``call`` returns the head output, ``predict_quaternions`` unit
    quaternions ``(n, 4)`` (w, x, y, z)."""

    def __init__(self, head="sexp", image_size=64, channels=2, width=32, feature_units=256,
                 logit_scale="paper", sign_layout="quaternion", **kwargs):
        super().__init__(**kwargs)
        if head not in HEAD_NAMES:
            raise ValueError(f"unknown head {head!r}: expected one of {HEAD_NAMES}")
        self.head_name = head
        self.backbone = build_backbone(image_size, channels, width, feature_units)
        # quaternions: first component made non-negative, so fix its sign ('quaternion',
        # or the original's 'quaternion_original', where w == 0 flips too)
        self.head = heads_lib.make_head(head, 4, fix_first_sign=True, logit_scale=logit_scale,
                                        sign_layout=sign_layout if head == "sexp" else None)
        self.head.build((None, feature_units))

    def call(self, images, training=False):
        return self.head(self.backbone(images, training=training))

    def forward_parts(self, images, training=False):
        """(pre-activation parts [O, ...], head output)."""
        parts = self.head.pre_activation(self.backbone(images, training=training))
        return parts, self.head.activate(parts)

    def predict_quaternions(self, images, batch_size=256):
        out = [self.head.decode(self(as_float_images(images[i:i + batch_size]))).numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out, axis=0)


def as_float_images(batch):
    """float32 images in [0, 1]: uint8 batches (ModelNet10-SO3 reader) are divided by
    255, float batches (renders) pass through."""
    batch = np.asarray(batch)
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / 255.0
    return batch.astype(np.float32, copy=False)


def make_train_step(model, loss_fn, optimizer):
    """A tf.function step -> (loss, ||dL/dO||, ||dL/d sign logits|| or 0)."""

    @tf.function
    def step(images, targets):
        with tf.GradientTape() as tape:
            parts, out = model.forward_parts(images, training=True)
            loss = tf.reduce_mean(loss_fn(targets, out))
        variables = model.trainable_variables
        grads = tape.gradient(loss, list(variables) + list(parts))
        optimizer.apply_gradients(zip(grads[:len(variables)], variables))
        part_grads = grads[len(variables):]
        o_norm = tf.norm(part_grads[0])
        sign_norm = tf.norm(part_grads[1]) if len(part_grads) > 1 else tf.constant(0.0)
        return loss, o_norm, sign_norm

    return step


def evaluate(model, images, quaternions, batch_size=256):
    """Geodesic errors (radians, ``(n,)``) and the paper's summary of them."""
    pred = model.predict_quaternions(images, batch_size)
    errors = metrics_lib.geodesic_distance_quaternions(quaternions, pred)
    return errors, metrics_lib.summarize_errors(errors)


def train_head(head, train, test, epochs=10, batch_size=64, learning_rate=1e-3, seed=0,
               width=32, feature_units=256, abs_weight=10.0, sign_weight=1.0,
               logit_scale="paper", sign_layout="quaternion", log_dir=None, verbose=True):
    """Train one head from scratch and evaluate it on ``test``; returns a result dict.

    ``train`` / ``test`` are dicts with ``images`` and ``quaternions`` (rotation_data.py or
    modelnet10_so3.py; uint8 images are scaled to [0, 1] per batch).
    """
    keras.utils.set_random_seed(seed)
    images, quats = train["images"], train["quaternions"].astype(np.float32)
    size, channels = images.shape[1], images.shape[3]
    model = RotationRegressor(head, size, channels, width, feature_units,
                              logit_scale=logit_scale, sign_layout=sign_layout)
    loss_fn = (losses_lib.SExpLoss(abs_weight=abs_weight, sign_weight=sign_weight,
                                   sign_layout=sign_layout)
               if head == "sexp" else losses_lib.loss_for_head(head))
    loss_fn = _per_sample(loss_fn)
    optimizer = keras.optimizers.Adam(learning_rate)
    step = make_train_step(model, loss_fn, optimizer)
    writer = tf.summary.create_file_writer(os.path.join(log_dir, head)) if log_dir else None

    rng = np.random.default_rng(seed)
    history, gstep = [], 0
    t0 = time.time()
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        losses, onorms, snorms = [], [], []
        for i in range(0, len(order) - batch_size + 1, batch_size):  # full batches only
            idx = order[i:i + batch_size]
            loss, on, sn = step(tf.constant(as_float_images(images[idx])),
                                tf.constant(quats[idx]))
            losses.append(float(loss)); onorms.append(float(on)); snorms.append(float(sn))
            if writer:
                with writer.as_default(step=gstep):
                    tf.summary.scalar("batch/grad_norm_dL_dO", onorms[-1])
            gstep += 1
        _, summary = evaluate(model, test["images"], test["quaternions"])
        rec = dict(epoch=epoch + 1, loss=float(np.mean(losses)),
                   grad_norm_mean=float(np.mean(onorms)), grad_norm_var=float(np.var(onorms)),
                   sign_grad_norm_mean=float(np.mean(snorms)), time_s=time.time() - t0, **summary)
        history.append(rec)
        if writer:
            with writer.as_default(step=epoch + 1):
                for k in ("loss", "grad_norm_mean", "grad_norm_var", "MedErr", "Acc@pi/6"):
                    tf.summary.scalar(f"epoch/{k.replace('@', '_at_').replace('/', '_')}", rec[k])
        if verbose:
            print(f"[{head}] epoch {epoch + 1}/{epochs} loss {rec['loss']:.4f} "
                  f"|dL/dO| mean {rec['grad_norm_mean']:.3e} var {rec['grad_norm_var']:.3e} "
                  f"test MedErr {rec['MedErr']:.1f} Acc@pi/6 {rec['Acc@pi/6']:.3f} "
                  f"({rec['time_s']:.0f} s)", flush=True)
    if writer:
        writer.flush()
    final = history[-1]
    all_norms = dict(grad_norm_mean_all=float(np.mean([h["grad_norm_mean"] for h in history])),
                     grad_norm_var_mean=float(np.mean([h["grad_norm_var"] for h in history])))
    return dict(head=head, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                seed=seed, train_images=int(len(images)), test_images=int(len(test["images"])),
                train_time_s=time.time() - t0, history=history,
                **{k: final[k] for k in ("MedErr", "Acc@pi/6", "Acc@pi/12", "Acc@pi/24",
                                         "grad_norm_mean", "grad_norm_var")},
                **all_norms)


def _per_sample(loss):
    """The per-sample values of a keras Loss (its ``call``), batch reduction done by us."""
    return loss.call


def format_table(results):
    """Paper-style table: one row per head; the |dL/dO| columns average the per-epoch mean
    and variance of the per-batch norm over all epochs, std/mean = sqrt(var) / mean."""
    lines = [f"{'head':<8}{'MedErr':>8}{'Acc@pi/6':>10}{'Acc@pi/12':>11}{'Acc@pi/24':>11}"
             f"{'|dL/dO| mean':>14}{'|dL/dO| var':>13}{'std/mean':>10}"]
    for r in results:
        lines.append(f"{r['head']:<8}{r['MedErr']:>8.1f}{100 * r['Acc@pi/6']:>9.1f}%"
                     f"{100 * r['Acc@pi/12']:>10.1f}%{100 * r['Acc@pi/24']:>10.1f}%"
                     f"{r['grad_norm_mean_all']:>14.3e}{r['grad_norm_var_mean']:>13.3e}"
                     f"{_relative_spread(r):>10.3f}")
    return "\n".join(lines)


def _relative_spread(result):
    """sqrt(mean per-epoch variance) / mean of ||dL/dO||: scale-free spread of the norm."""
    mean = result["grad_norm_mean_all"]
    return float(np.sqrt(result["grad_norm_var_mean"]) / mean) if mean > 0 else float("nan")


def save_results(results, out_dir, config):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as f:
        json.dump(dict(config=config, results=results), f, indent=2)
    return path


__all__ = ["HEAD_NAMES", "RotationRegressor", "build_backbone", "as_float_images",
           "make_train_step", "evaluate",
           "train_head", "format_table", "save_results"]
