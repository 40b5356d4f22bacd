"""Optimizers with the update rules of the original demo's TF1 optimizers.

The demo trained with ``tf.train.AdamOptimizer`` (``--optimizer adam``) or
``tf.train.MomentumOptimizer(momentum=0.9, use_nesterov=True)``
(``--optimizer momentum``), with their TF1 defaults.

- Adam: TF1 computes ``lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)`` and
  ``var -= lr_t * m / (sqrt(v) + eps)`` ("epsilon hat" placement), the same
  form as Keras 3's Adam, but with ``eps = 1e-8`` where Keras defaults to
  1e-7, and with ``1 - beta`` computed from the float32 betas (Keras rounds
  the float64 ``1 - beta`` instead: 1 - 0.999 differs by 1.3e-5 relative).
  :class:`TF1Adam` does both.
- Momentum: TF1 keeps an accumulator of raw gradients,
  ``accum = m * accum + g``, and with Nesterov updates
  ``var -= lr * g + lr * m * accum``. Keras' SGD accumulates
  learning-rate-scaled steps (``v = m * v - lr * g``), which is the same
  trajectory while the learning rate is constant but not after a change of
  the learning rate (the schedule ``--learning_rate {0: ..., 32: ...}``):
  TF1 applies the new rate to the whole accumulated history at once.
  :class:`TF1Momentum` implements TF1's rule.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

# a constant learning rate or a schedule
LearningRate = float | keras.optimizers.schedules.LearningRateSchedule
ADAM_EPSILON = 1e-8  # tf.train.AdamOptimizer's default
MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="spherical_cnn")
class TF1Adam(keras.optimizers.Adam):
    """Adam with the arithmetic of TF1's ``AdamOptimizer`` (its ``ApplyAdam`` kernel).

    Per variable with gradient ``g`` at step ``t`` (1-based), all in the
    variable's dtype, betas ``b1``, ``b2`` cast to it first::

        lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)
        m   += (g - m) * (1 - b1)
        v   += (g^2 - v) * (1 - b2)
        var -= lr_t * m / (sqrt(v) + epsilon)

    Defaults as TF1: ``epsilon=1e-8``. Other arguments as ``keras.optimizers.Adam``
    (its optimizer variables, hence checkpoints, are the same); ``amsgrad`` is
    refused (TF1's optimizer had none).
    """

    def __init__(self, learning_rate: LearningRate = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = ADAM_EPSILON, amsgrad: bool = False,
                 name: str = "tf1_adam", **kwargs: Any) -> None:
        if amsgrad:
            raise ValueError("TF1Adam: amsgrad is not supported")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=False, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        b1 = ops.cast(self.beta_1, dtype)
        b2 = ops.cast(self.beta_2, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        alpha = lr * ops.sqrt(1 - ops.power(b2, t)) / (1 - ops.power(b1, t))
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1 - b1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(g), v), 1 - b2))
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha),
                                             ops.add(ops.sqrt(v), ops.cast(self.epsilon, dtype))))

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        return config


@keras.saving.register_keras_serializable(package="spherical_cnn")
class TF1Momentum(keras.optimizers.Optimizer):
    """Momentum with TF1's ``MomentumOptimizer`` update (raw-gradient accumulator).

    Per variable ``var`` with gradient ``g``, learning rate ``lr`` (of this
    step) and momentum ``m``::

        accum = m * accum + g
        var  -= lr * (g + m * accum)   # use_nesterov=True
        var  -= lr * accum             # use_nesterov=False

    ``accum`` starts at zero and holds gradients, not steps, so a new learning
    rate scales the accumulated history too (as in TF1).

    Args:
        learning_rate: float, schedule or callable (as any Keras optimizer).
        momentum: float in [0, 1).
        use_nesterov: Nesterov's variant (TF1's ``use_nesterov``).
        name, **kwargs: the keyword arguments of ``keras.optimizers.Optimizer``
            (clipping, weight decay, EMA, ...).

    Optimizer variables: one ``accumulator`` per trained variable, of its
    shape and dtype (saved by ``tf.train.Checkpoint(optimizer=...)``).
    """

    def __init__(self, learning_rate: LearningRate = 0.01, momentum: float = MOMENTUM,
                 use_nesterov: bool = True, name: str = "tf1_momentum", **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError("TF1Momentum: momentum must be in [0, 1), got {}".format(momentum))
        self.momentum = momentum
        self.use_nesterov = bool(use_nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(variables, "accumulator")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        m = ops.cast(self.momentum, variable.dtype)
        accum = self.accumulators[self._get_variable_index(variable)]
        self.assign(accum, ops.add(ops.multiply(accum, m), g))
        if self.use_nesterov:
            step = ops.add(ops.multiply(g, lr), ops.multiply(ops.multiply(accum, m), lr))
        else:
            step = ops.multiply(accum, lr)
        self.assign_sub(variable, step)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "use_nesterov": self.use_nesterov})
        return config


def make_optimizer(name: str, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    """The optimizer of ``--optimizer name`` with TF1's semantics.

    ``'adam'``: :class:`TF1Adam` (betas 0.9, 0.999, epsilon 1e-8);
    ``'momentum'``: :class:`TF1Momentum` (0.9, Nesterov).
    """
    if name == "adam":
        return TF1Adam(learning_rate=learning_rate)
    if name == "momentum":
        return TF1Momentum(learning_rate=learning_rate, momentum=MOMENTUM, use_nesterov=True)
    raise ValueError("--optimizer {!r}: expected adam or momentum".format(name))
