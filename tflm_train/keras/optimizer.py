"""Quantization-Aware Scaling (QAS) as a Keras 3 optimizer wrapper.

For an int8-emulating layer the gradient Keras computes w.r.t. the int8-valued kernel is
``G_q = s_w * G_w`` (``G_w``: the gradient w.r.t. the real weight). QAS multiplies it by
``s_w^-2`` per output channel (bias: ``(s_x s_w)^-2``), so an SGD step on the int8 value,
``w_q <- w_q - lr * G_w / s_w``, moves the real weight by ``lr * G_w``: the float step
(DESIGN.md). The factors come from the variables themselves: ``QuantConv.build`` registers
them (``layers.qas_factor(variable)``); every other variable (a float head) is passed
through unscaled. The scaled gradients go to the wrapped optimizer (SGD with or without
momentum, Adam, ...), which owns the state, learning rate and iteration count.

After the step, ``rounding`` decides what the int8 / int32 variables hold:

- ``"stochastic"`` (default, the device's update rule): weights are rounded stochastically,
  ``floor(v + u)`` with ``u`` uniform in [0, 1) (computed as ``f + (u < v - f)``,
  ``f = floor(v)``, so an integer never moves), biases to the nearest integer (ties away
  from zero). The uniforms come from a Keras ``SeedGenerator(seed)``: the same statistics
  as the device's xorshift32 stream, not the same numbers.
- ``"none"``: the variables keep fractional values between steps (a float accumulator, as
  in quantization-aware training); the forward still computes with their rounded values.

``scale_gradients=False`` turns the scaling off while keeping the rounding: the int8 update
rule without QAS, for ablations.
"""
from __future__ import annotations

import keras
from keras import ops

from .layers import PACKAGE, int_kind, qas_factor

ROUNDINGS = ("stochastic", "none")


def stochastic_round(v, u):
    """``floor(v + u)`` evaluated as ``f + (u < v - f)``: exact, an integer ``v`` stays."""
    f = ops.floor(v)
    return f + ops.cast(u < v - f, v.dtype)


def round_half_away(v):
    whole = ops.sign(v) * ops.floor(ops.abs(v))
    return whole + ops.where(ops.abs(v - whole) >= 0.5, ops.sign(v), ops.zeros_like(v))


@keras.saving.register_keras_serializable(package=PACKAGE)
class QAS(keras.optimizers.Optimizer):
    """``QAS(inner_optimizer)``: rescale per-channel gradients, let ``inner_optimizer`` step,
    round the int8 / int32 variables (see the module docstring).

    Works with ``model.fit`` (TensorFlow backend). ``learning_rate`` and ``iterations`` are
    the inner optimizer's.
    """

    def __init__(self, inner_optimizer, rounding: str = "stochastic", scale_gradients: bool = True, seed: int = 0,
                 name=None, **kwargs):
        if kwargs:
            raise ValueError(f"QAS: unexpected arguments {sorted(kwargs)}; set them on the inner optimizer")
        if isinstance(inner_optimizer, (str, dict)):
            inner_optimizer = keras.optimizers.get(inner_optimizer)
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise ValueError(f"QAS: inner_optimizer must be a keras.optimizers.Optimizer, "
                             f"got {type(inner_optimizer).__name__}")
        if isinstance(inner_optimizer, QAS):
            raise ValueError("QAS: the inner optimizer is already a QAS optimizer")
        if rounding not in ROUNDINGS:
            raise ValueError(f"QAS: rounding must be one of {ROUNDINGS}, got {rounding!r}")
        super().__init__(learning_rate=0.0, name=name or "qas")
        self.inner_optimizer = inner_optimizer
        self.rounding = rounding
        self.scale_gradients = bool(scale_gradients)
        self.seed = int(seed)
        self._seed_generator = keras.random.SeedGenerator(self.seed) if rounding == "stochastic" else None

    def build(self, var_list):
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def scale_gradient(self, gradient, variable):
        """``gradient * factor`` for a variable with a registered QAS factor, else unchanged."""
        factor = qas_factor(variable)
        if gradient is None or factor is None or not self.scale_gradients:
            return gradient
        return gradient * ops.cast(factor, gradient.dtype)

    def _round(self, variable):
        kind = int_kind(variable)
        if kind is None or self.rounding == "none":
            return
        v = ops.convert_to_tensor(variable)
        if kind == "int8":
            u = keras.random.uniform(ops.shape(v), dtype=v.dtype, seed=self._seed_generator)
            variable.assign(stochastic_round(v, u))
        else:
            variable.assign(round_half_away(v))

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            if not self.inner_optimizer.built:
                raise ValueError("QAS.apply: pass trainable_variables on the first call (the optimizer is not built)")
            trainable_variables = self.inner_optimizer._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        scaled = [self.scale_gradient(g, v) for g, v in zip(grads, trainable_variables)]
        self.inner_optimizer.apply(scaled, trainable_variables)
        for g, v in zip(grads, trainable_variables):
            if g is not None:
                self._round(v)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        raise NotImplementedError("QAS supports the TensorFlow backend's stateful apply only")

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "rounding": self.rounding,
            "scale_gradients": self.scale_gradients,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"), custom_objects=custom_objects)
        return cls(inner, **config)
