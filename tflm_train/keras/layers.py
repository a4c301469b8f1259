"""Keras 3 layers that emulate the ops of an int8 QuantGraph.

Two modes, chosen per layer by ``quantized``:

- ``quantized=True`` (int8 emulation): inputs and outputs are the int8 *values* (float32
  tensors holding integers). A conv-like layer's ``kernel`` holds the int8 weight values and
  its ``bias`` the int32 bias values, in float32 variables, in the graph's layout (CONV_2D
  OHWI, DEPTHWISE_CONV_2D ``[1,kh,kw,C]``, FULLY_CONNECTED ``[out,in]``). The forward
  rounds them (straight-through), so it always computes with what the int8 graph would
  hold even while an optimizer moves the variables between integers. The accumulator
  ``sum (x_q - zp_x) w_q + b_q`` is computed in float32 (exact while it stays below 2^24,
  as in MCU models) and requantized with TFLite's own integer arithmetic
  (``fake_quant.requantize_acc``): the forward values equal the reference's.
- ``quantized=False`` (the float version of the same network): real values flow; weights
  and biases are real; the clamps of the int8 graph (its activations) are kept; nothing is
  rounded.

Because the int8 values are an affine reparametrisation of the real ones, autodiff of the
int8-mode forward gives DESIGN.md's gradients: ``dL/dkernel = s_w * dL/dw_real`` (``G_q``),
``dL/dbias = s_x s_w * dL/db_real``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..training.autodiff import head_init  # noqa: F401  (one head-init rule for Keras and the compiler)
import keras
from keras import ops

from ..ops.forward import leaky_relu_multipliers, relu6_range, relu_multiplier
from ..ops.quant import activation_range, f32
from .fake_quant import (
    WEIGHT_MAX,
    WEIGHT_MIN,
    _i64,
    clamp_mask,
    clamp_ste,
    multiplier_of,
    multiply_by_quantized_multiplier,
    requantize_acc,
    round_ste,
    rounding_divide_by_pot,
    srdhm,
    to_int64,
    with_gradient_of,
    wrap_int32,
)

PACKAGE = "tflm_train"

#: Name of the attribute set on a variable to tell the QAS optimizer its gradient factor.
QAS_ATTR = "_tflm_qas_factor"
#: Name of the attribute that says what integer type a variable stands for: "int8" weight or "int32" bias.
INT_KIND_ATTR = "_tflm_int_kind"


def qas_factor(variable) -> Optional[np.ndarray]:
    """The QAS gradient factor registered on ``variable`` (None: a plain variable, factor 1)."""
    return getattr(variable, QAS_ATTR, None)


def int_kind(variable) -> Optional[str]:
    """"int8" for an emulated int8 weight, "int32" for an emulated bias, None otherwise."""
    return getattr(variable, INT_KIND_ATTR, None)


def layer_name(graph_name: str) -> str:
    """A Keras-legal layer name for a graph op or tensor name ('/' is not allowed)."""
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in graph_name) or "op"


def _as_array(value, dtype):
    return None if value is None else np.asarray(value, dtype=dtype)


def _real_range(scale, zero_point, lo, hi):
    return scale * (lo - zero_point), scale * (hi - zero_point)


class _ClipWeights(keras.constraints.Constraint):
    """Keep int8 weight values inside [-127, 127] after every optimizer step."""

    def __call__(self, w):
        return ops.clip(w, float(WEIGHT_MIN), float(WEIGHT_MAX))

    def get_config(self):
        return {}


class _GraphLayer(keras.layers.Layer):
    """Common config of the layers that stand for one graph op."""

    def __init__(self, quantized=True, op_index=-1, **kwargs):
        super().__init__(**kwargs)
        self.quantized = bool(quantized)
        self.op_index = int(op_index)

    def get_config(self):
        config = super().get_config()
        config.update(quantized=self.quantized, op_index=self.op_index)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantConv(_GraphLayer):
    """CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED of an int8 graph (see module docstring).

    Scales: ``x_scale``/``x_zero_point`` (input), ``w_scales`` (per output channel),
    ``y_scale``/``y_zero_point`` (output); ``clamp`` is the integer output range (int8 range
    intersected with the fused activation). ``output_shape_no_batch`` is the graph's output
    shape without the batch dimension. ``kernel_values``/``bias_values`` initialise the
    variables (int8 / int32 values, or real values when ``quantized=False``).
    """

    def __init__(
        self,
        op_type: str,
        kernel_shape: Sequence[int],
        output_shape_no_batch: Sequence[int],
        x_scale: float,
        x_zero_point: int,
        w_scales: Sequence[float],
        y_scale: float,
        y_zero_point: int,
        clamp: Sequence[int] = (-128, 127),
        use_bias: bool = True,
        strides: Sequence[int] = (1, 1),
        padding: str = "VALID",
        dilation: Sequence[int] = (1, 1),
        is_new_head: bool = False,
        kernel_values=None,
        bias_values=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if op_type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            raise ValueError(f"QuantConv: unsupported op type {op_type!r}")
        self.op_type = op_type
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.output_shape_no_batch = tuple(int(d) for d in output_shape_no_batch)
        self.x_scale = float(x_scale)
        self.x_zero_point = int(x_zero_point)
        self.w_scales = np.asarray(w_scales, dtype=np.float64).reshape(-1)
        self.y_scale = float(y_scale)
        self.y_zero_point = int(y_zero_point)
        self.clamp = (int(clamp[0]), int(clamp[1]))
        self.use_bias = bool(use_bias)
        self.strides = tuple(int(s) for s in strides)
        self.padding = str(padding).upper()
        self.dilation = tuple(int(d) for d in dilation)
        self.is_new_head = bool(is_new_head)
        self._kernel_values = _as_array(kernel_values, np.float32)
        self._bias_values = _as_array(bias_values, np.float64)
        #: set by SparseUpdate: boolean array broadcastable to the kernel, True = this element trains
        self.kernel_update_mask = None
        n_out = self.out_channels
        if self.w_scales.size == 1 and n_out > 1:
            self.w_scales = np.repeat(self.w_scales, n_out)
        if self.w_scales.size != n_out:
            raise ValueError(f"QuantConv {self.name}: {self.w_scales.size} weight scales for {n_out} output channels")
        # TFLite Micro's conv Prepare: double(s_x) * double(s_w[c]) / double(s_y) from the float32 scales.
        self.multiplier, self.shift = multiplier_of(f32(self.x_scale) * f32(self.w_scales) / f32(self.y_scale))

    # ------------------------------------------------------------------ geometry
    @property
    def out_channels(self) -> int:
        return self.kernel_shape[3] if self.op_type == "DEPTHWISE_CONV_2D" else self.kernel_shape[0]

    @property
    def channel_axis(self) -> int:
        """Axis of the kernel that holds the output channel (the per-channel scale axis)."""
        return 3 if self.op_type == "DEPTHWISE_CONV_2D" else 0

    def per_channel_shape(self):
        shape = [1] * len(self.kernel_shape)
        shape[self.channel_axis] = self.out_channels
        return tuple(shape)

    # ------------------------------------------------------------------ variables
    def build(self, input_shape):
        kernel_init = "zeros" if self._kernel_values is None else keras.initializers.Constant(self._kernel_values)
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_shape, initializer=kernel_init,
                                      constraint=_ClipWeights() if self.quantized else None)
        self.bias = None
        if self.use_bias:
            bias_init = "zeros" if self._bias_values is None else keras.initializers.Constant(self._bias_values)
            # int32 values beyond 2^24 are not float32 numbers: int8 emulation keeps biases in float64
            self.bias = self.add_weight(name="bias", shape=(self.out_channels,), initializer=bias_init,
                                        dtype="float64" if self.quantized else "float32")
        if self.quantized:
            # QAS (DESIGN.md): the gradient w.r.t. the int8 weight is s_w * G_w; multiplying it by
            # s_w^-2 (bias: (s_x s_w)^-2) makes an SGD step equal to the float step in real units.
            setattr(self.kernel, QAS_ATTR, (self.w_scales ** -2).astype(np.float32).reshape(self.per_channel_shape()))
            setattr(self.kernel, INT_KIND_ATTR, "int8")
            if self.bias is not None:
                setattr(self.bias, QAS_ATTR, ((self.x_scale * self.w_scales) ** -2).astype(np.float32))
                setattr(self.bias, INT_KIND_ATTR, "int32")
        self._kernel_values = self._bias_values = None  # only needed until the variables exist

    def effective_kernel(self):
        w = ops.convert_to_tensor(self.kernel)
        if self.kernel_update_mask is not None:
            # frozen elements: same value, no gradient
            w = ops.where(ops.convert_to_tensor(self.kernel_update_mask), w, ops.stop_gradient(w))
        return round_ste(w) if self.quantized else w

    def effective_bias(self):
        b = ops.convert_to_tensor(self.bias)
        return round_ste(b) if self.quantized else b

    # ------------------------------------------------------------------ forward
    def _linear(self, x, w):
        if self.op_type == "CONV_2D":
            return ops.conv(x, ops.transpose(w, (1, 2, 3, 0)), strides=self.strides,
                            padding=self.padding.lower(), dilation_rate=self.dilation)
        if self.op_type == "DEPTHWISE_CONV_2D":
            _, kh, kw, c_out = self.kernel_shape
            c_in = int(x.shape[-1])
            kernel = ops.reshape(w, (kh, kw, c_in, c_out // c_in))
            return ops.depthwise_conv(x, kernel, strides=self.strides, padding=self.padding.lower(),
                                      dilation_rate=self.dilation)
        _, n_in = self.kernel_shape
        y = ops.matmul(ops.reshape(x, (-1, n_in)), ops.transpose(w))
        return ops.reshape(y, (-1,) + self.output_shape_no_batch)

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.quantized:
            acc = self._linear(x - float(self.x_zero_point), self.effective_kernel())
            acc_int = to_int64(acc)
            if self.bias is not None:
                bias = self.effective_bias()
                acc_int = wrap_int32(acc_int + to_int64(bias))  # int32 accumulator, as on the device
                acc = acc + ops.cast(bias, "float32")
            return requantize_acc(acc, self.multiplier, self.shift, self.y_zero_point, *self.clamp, acc_int=acc_int)
        y = self._linear(x, self.effective_kernel())
        if self.bias is not None:
            y = y + self.effective_bias()
        return clamp_ste(y, *_real_range(self.y_scale, self.y_zero_point, *self.clamp))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_shape_no_batch

    def get_config(self):
        config = super().get_config()
        config.update(
            op_type=self.op_type, kernel_shape=list(self.kernel_shape),
            output_shape_no_batch=list(self.output_shape_no_batch),
            x_scale=self.x_scale, x_zero_point=self.x_zero_point, w_scales=self.w_scales.tolist(),
            y_scale=self.y_scale, y_zero_point=self.y_zero_point, clamp=list(self.clamp),
            use_bias=self.use_bias, strides=list(self.strides), padding=self.padding,
            dilation=list(self.dilation), is_new_head=self.is_new_head,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantAdd(_GraphLayer):
    """Elementwise ADD of two int8 tensors, TFLite's scheme: both inputs shifted left by 20
    bits and rescaled by ``s_i / (2 max(s1, s2))``, summed, the sum rescaled to the output."""

    LEFT_SHIFT = 20

    def __init__(self, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
                 clamp=(-128, 127), constant=None, constant_position=1, **kwargs):
        super().__init__(**kwargs)
        #: an int8 operand stored in the graph (called with the other operand only)
        self.constant = None if constant is None else np.asarray(constant, dtype=np.float32)
        self.constant_position = int(constant_position)
        self.a_scale, self.a_zero_point = float(a_scale), int(a_zero_point)
        self.b_scale, self.b_zero_point = float(b_scale), int(b_zero_point)
        self.y_scale, self.y_zero_point = float(y_scale), int(y_zero_point)
        self.clamp = (int(clamp[0]), int(clamp[1]))
        sa, sb, sy = float(f32(self.a_scale)), float(f32(self.b_scale)), float(f32(self.y_scale))
        twice_max = 2.0 * max(sa, sb)
        self._ma = multiplier_of(sa / twice_max)
        self._mb = multiplier_of(sb / twice_max)
        self._my = multiplier_of(twice_max / (float(1 << self.LEFT_SHIFT) * sy))

    def _scaled_input(self, q, zero_point, mult):
        m, e = mult
        shifted = (to_int64(q) - zero_point) * (1 << self.LEFT_SHIFT)
        return rounding_divide_by_pot(srdhm(shifted, _i64(m)), -e)

    def call(self, a, b=None):
        if self.constant is not None:
            c = ops.convert_to_tensor(self.constant)
            a, b = (a, c) if self.constant_position == 1 else (c, a)
        a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
        lo, hi = self.clamp
        if not self.quantized:
            return clamp_ste(a + b, *_real_range(self.y_scale, self.y_zero_point, lo, hi))
        # gradient: that of the real sum, in output LSBs
        y = (a - float(self.a_zero_point)) * (self.a_scale / self.y_scale) + \
            (b - float(self.b_zero_point)) * (self.b_scale / self.y_scale)
        total = self._scaled_input(a, self.a_zero_point, self._ma) + self._scaled_input(b, self.b_zero_point, self._mb)
        m, e = self._my
        raw = rounding_divide_by_pot(srdhm(total, _i64(m)), -e) + self.y_zero_point
        q = ops.cast(ops.clip(raw, lo, hi), "float32")
        return with_gradient_of(q, y, clamp_mask(q, float(lo), float(hi)))

    def get_config(self):
        config = super().get_config()
        config.update(a_scale=self.a_scale, a_zero_point=self.a_zero_point, b_scale=self.b_scale,
                      b_zero_point=self.b_zero_point, y_scale=self.y_scale, y_zero_point=self.y_zero_point,
                      clamp=list(self.clamp), constant_position=self.constant_position,
                      constant=None if self.constant is None else self.constant.tolist())
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantMean(_GraphLayer):
    """MEAN of an int8 tensor, TFLite Micro's integer algorithm (see ``ops.forward.mean``):
    ``sum(q) - zp_in * count`` rescaled by the multiplier of ``s_in / s_out`` with ``1/count``
    folded in, plus ``zp_out``. Gradient: that of the real mean."""

    def __init__(self, axes, keep_dims, x_scale, x_zero_point, y_scale, y_zero_point, **kwargs):
        super().__init__(**kwargs)
        self.axes = [int(a) for a in axes]
        self.keep_dims = bool(keep_dims)
        self.x_scale, self.x_zero_point = float(x_scale), int(x_zero_point)
        self.y_scale, self.y_zero_point = float(y_scale), int(y_zero_point)

    def _resolved_axes(self, ndim):
        axes = sorted({a % ndim for a in self.axes})
        if 0 in axes:
            raise ValueError(f"{self.name}: MEAN over the batch axis is not supported")
        return tuple(axes)

    def folded_multiplier(self, count: int):
        """(multiplier, shift) of ``s_in / (s_out * count)`` as TFLite Micro forms them."""
        m, s = multiplier_of(float(f32(self.x_scale)) / float(f32(self.y_scale)))
        m, s = int(m[0]), int(s[0])
        k = min(count.bit_length() - 1, 32, 31 + s)
        return np.array([(m << k) // count], np.int64), np.array([s - k], np.int64)

    def call(self, x):
        x = ops.cast(x, "float32")
        if not self.axes:
            return x
        axes = self._resolved_axes(len(x.shape))
        count = int(np.prod([x.shape[a] for a in axes]))
        centered_sum = ops.sum(x - float(self.x_zero_point), axis=axes, keepdims=self.keep_dims)
        if not self.quantized:
            real = ops.mean(x, axis=axes, keepdims=self.keep_dims)
            return clamp_ste(real, *_real_range(self.y_scale, self.y_zero_point, -128, 127))
        m, s = self.folded_multiplier(count)
        q = multiply_by_quantized_multiplier(wrap_int32(to_int64(centered_sum)), m, s) + self.y_zero_point
        q = ops.cast(ops.clip(q, -128, 127), "float32")
        y = centered_sum * (self.x_scale / (self.y_scale * count)) + float(self.y_zero_point)
        return with_gradient_of(q, y, clamp_mask(q, -128.0, 127.0))

    def get_config(self):
        config = super().get_config()
        config.update(axes=list(self.axes), keep_dims=self.keep_dims, x_scale=self.x_scale,
                      x_zero_point=self.x_zero_point, y_scale=self.y_scale, y_zero_point=self.y_zero_point)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantPool(_GraphLayer):
    """AVERAGE_POOL_2D / MAX_POOL_2D on int8 values (TFLite: input and output share quantization).

    The average divides the window sum by the number of in-image elements (SAME padding does
    not count) and rounds half away from zero; then the activation clamp.
    """

    def __init__(self, kind, pool_size, strides, padding, scale, zero_point, clamp=(-128, 127), **kwargs):
        super().__init__(**kwargs)
        if kind not in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            raise ValueError(f"QuantPool: unsupported pool {kind!r}")
        self.kind = kind
        self.pool_size = tuple(int(p) for p in pool_size)
        self.strides = tuple(int(s) for s in strides)
        self.padding = str(padding).upper()
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.clamp = (int(clamp[0]), int(clamp[1]))

    def _window_sum(self, x):
        channels = int(x.shape[-1])
        ones = ops.ones(self.pool_size + (channels, 1), dtype="float32")
        return ops.depthwise_conv(x, ones, strides=self.strides, padding=self.padding.lower())

    def call(self, x):
        x = ops.cast(x, "float32")
        lo, hi = self.clamp
        if self.kind == "MAX_POOL_2D":
            y = ops.max_pool(x, self.pool_size, strides=self.strides, padding=self.padding.lower())
        else:
            # exact integer sums and counts, one correctly rounded division
            count = self._window_sum(ops.ones_like(x[:1, :, :, :1]))
            total = self._window_sum(x)
            # float64 quotient rounded once to float32: exact .5 ties survive (see divide_exact)
            y = with_gradient_of(ops.cast(ops.cast(total, "float64") / ops.cast(count, "float64"), "float32"),
                                 total / count)
        if not self.quantized:
            return clamp_ste(y, *_real_range(self.scale, self.zero_point, lo, hi))
        if self.kind == "AVERAGE_POOL_2D":
            y = round_ste(y)
        return clamp_ste(y, float(lo), float(hi))

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, pool_size=list(self.pool_size), strides=list(self.strides),
                      padding=self.padding, scale=self.scale, zero_point=self.zero_point, clamp=list(self.clamp))
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantPad(_GraphLayer):
    """PAD: int8 values are padded with the zero point (real zero), real values with 0."""

    def __init__(self, paddings, zero_point, **kwargs):
        super().__init__(**kwargs)
        self.paddings = [[int(a), int(b)] for a, b in paddings]
        if self.paddings[0] != [0, 0]:
            raise ValueError("QuantPad: padding the batch dimension is not supported")
        self.zero_point = int(zero_point)

    def call(self, x):
        x = ops.cast(x, "float32")
        value = float(self.zero_point) if self.quantized else 0.0
        return ops.pad(x, self.paddings, constant_values=value)

    def get_config(self):
        config = super().get_config()
        config.update(paddings=self.paddings, zero_point=self.zero_point)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Requantize(_GraphLayer):
    """QUANTIZE of an int8 tensor to another int8 scale / zero point."""

    def __init__(self, x_scale, x_zero_point, y_scale, y_zero_point, **kwargs):
        super().__init__(**kwargs)
        self.x_scale, self.x_zero_point = float(x_scale), int(x_zero_point)
        self.y_scale, self.y_zero_point = float(y_scale), int(y_zero_point)
        self.multiplier, self.shift = multiplier_of(float(f32(self.x_scale)) / float(f32(self.y_scale)))

    def call(self, x):
        x = ops.cast(x, "float32")
        if not self.quantized:
            return clamp_ste(x, *_real_range(self.y_scale, self.y_zero_point, -128, 127))
        return requantize_acc(x - float(self.x_zero_point), self.multiplier, self.shift, self.y_zero_point, -128, 127)

    def get_config(self):
        config = super().get_config()
        config.update(x_scale=self.x_scale, x_zero_point=self.x_zero_point, y_scale=self.y_scale,
                      y_zero_point=self.y_zero_point)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantRelu(_GraphLayer):
    """Standalone RELU / RELU6 (``kind``), as TFLite Micro computes them (ops.forward.relu /
    relu6): RELU requantizes to the output and clamps at its zero point; RELU6 clamps the
    input values to [zp_in, zp_in + round(6 / s_in)] and passes them on unchanged, so the
    output values, read in the output's quantization, have the real slope s_out / s_in.
    The float version (``quantized=False``) keeps that clamp and slope on real values."""

    def __init__(self, kind, x_scale, x_zero_point, y_scale, y_zero_point, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("RELU", "RELU6"):
            raise ValueError(f"QuantRelu: kind must be RELU or RELU6, not {kind!r}")
        self.kind = kind
        self.x_scale, self.x_zero_point = float(x_scale), int(x_zero_point)
        self.y_scale, self.y_zero_point = float(y_scale), int(y_zero_point)
        if kind == "RELU":
            m, s = relu_multiplier(self.x_scale, self.y_scale)
            self.multiplier, self.shift = np.asarray([m], np.int64), np.asarray([s], np.int64)
            self.clamp = activation_range("RELU", self.y_scale, self.y_zero_point)
        else:
            self.clamp = relu6_range(self.x_scale, self.x_zero_point)

    def call(self, x):
        x = ops.cast(x, "float32")
        lo, hi = self.clamp
        if self.kind == "RELU":
            if not self.quantized:
                return clamp_ste(x, *_real_range(self.y_scale, self.y_zero_point, lo, hi))
            return requantize_acc(x - float(self.x_zero_point), self.multiplier, self.shift, self.y_zero_point, lo, hi)
        if not self.quantized:
            q = clamp_ste(x / self.x_scale + float(self.x_zero_point), lo, hi)  # input units, unrounded
            return (q - float(self.y_zero_point)) * self.y_scale
        return clamp_ste(x, lo, hi)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, x_scale=self.x_scale, x_zero_point=self.x_zero_point, y_scale=self.y_scale,
                      y_zero_point=self.y_zero_point)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantLeakyRelu(_GraphLayer):
    """LEAKY_RELU as TFLite Micro computes it (ops.forward.leaky_relu): ``x - zp_in`` requantized
    with the identity multiplier where it is >= 0, with the alpha multiplier elsewhere, then
    clamped to int8. The float version keeps the slopes 1 / alpha and the output's int8 range."""

    def __init__(self, alpha, x_scale, x_zero_point, y_scale, y_zero_point, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.x_scale, self.x_zero_point = float(x_scale), int(x_zero_point)
        self.y_scale, self.y_zero_point = float(y_scale), int(y_zero_point)
        (mi, si), (ma, sa) = leaky_relu_multipliers(self.x_scale, self.y_scale, self.alpha)
        self.identity = (np.asarray([mi], np.int64), np.asarray([si], np.int64))
        self.negative = (np.asarray([ma], np.int64), np.asarray([sa], np.int64))

    def call(self, x):
        x = ops.cast(x, "float32")
        if not self.quantized:
            y = ops.where(x >= 0, x, x * self.alpha)
            return clamp_ste(y, *_real_range(self.y_scale, self.y_zero_point, -128, 127))
        v = x - float(self.x_zero_point)
        pos = requantize_acc(v, *self.identity, self.y_zero_point, -128, 127)
        neg = requantize_acc(v, *self.negative, self.y_zero_point, -128, 127)
        return ops.where(v >= 0, pos, neg)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, x_scale=self.x_scale, x_zero_point=self.x_zero_point, y_scale=self.y_scale,
                      y_zero_point=self.y_zero_point)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dequantize(_GraphLayer):
    """int8 values -> real values ``s * (q - zp)`` (identity when ``quantized=False``)."""

    def __init__(self, scale, zero_point, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.zero_point = float(scale), int(zero_point)

    def call(self, x):
        x = ops.cast(x, "float32")
        if not self.quantized:
            return x
        return (x - float(self.zero_point)) * self.scale

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, zero_point=self.zero_point)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class GradientStore(keras.layers.Layer):
    """Identity whose backward rounds the gradient as the device stores it (``grad_dtype``
    of the training graph): float16 rounds each element once to IEEE binary16 (nearest
    even), float32 passes it on. ``from_graph`` puts one on every graph tensor but the
    logits (whose gradients the device keeps in float32).

    The device stores the gradient of one sample in real units; Keras carries the gradient
    w.r.t. the layer's values (int8 values: ``s`` times the real one) of a batch-mean loss
    (``1/B`` times the sample's), so the rounding happens on ``g * B / s`` and is mapped back
    (``s = 1`` for real values). For a power-of-two batch the batch factor is exact; the scale
    adds two float32 roundings (2^-24 relative), below binary16's 2^-11.
    """

    def __init__(self, scale=1.0, grad_dtype="float16", **kwargs):
        super().__init__(**kwargs)
        self.scale, self.grad_dtype = float(scale), str(grad_dtype)

    def call(self, x):
        if self.grad_dtype == "float32":
            return x
        to_real = float(np.float32(1.0 / self.scale))
        to_value = float(np.float32(self.scale))

        @ops.custom_gradient
        def stored(a):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                batch = ops.cast(ops.shape(upstream)[0], "float32")
                per_sample = upstream * (batch * to_real)
                rounded = ops.cast(ops.cast(per_sample, self.grad_dtype), "float32")
                return rounded * (to_value / batch)

            return a, grad

        return stored(x)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, grad_dtype=self.grad_dtype)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class FloatHead(_GraphLayer):
    """A new float32 classifier on the flattened features: ``x @ kernel + bias``.

    ``kernel`` is ``[in, num_classes]``, ``head_init(in, num_classes).T`` (zero) unless given; bias
    zero unless given.
    With ``quantized=True`` the int8 features are dequantized first (``x_scale``,
    ``x_zero_point``); with ``quantized=False`` they are already real.
    """

    def __init__(self, num_classes, x_scale=1.0, x_zero_point=0, kernel_values=None,
                 bias_values=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.x_scale, self.x_zero_point = float(x_scale), int(x_zero_point)
        self.is_new_head = True
        self._kernel_values = _as_array(kernel_values, np.float32)
        self._bias_values = _as_array(bias_values, np.float32)
        self.kernel_update_mask = None

    def build(self, input_shape):
        n_in = int(np.prod(input_shape[1:]))
        values = head_init(n_in, self.num_classes).T if self._kernel_values is None else self._kernel_values
        kernel_init = keras.initializers.Constant(values)
        bias_init = "zeros" if self._bias_values is None else keras.initializers.Constant(self._bias_values)
        self.kernel = self.add_weight(name="kernel", shape=(n_in, self.num_classes), initializer=kernel_init)
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer=bias_init)
        self._kernel_values = self._bias_values = None

    def features(self, x):
        """The real, flattened input features."""
        x = ops.cast(x, "float32")
        x = ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))
        if self.quantized:
            x = (x - float(self.x_zero_point)) * self.x_scale
        return x

    def call(self, x):
        w = ops.convert_to_tensor(self.kernel)
        if self.kernel_update_mask is not None:
            w = ops.where(ops.convert_to_tensor(self.kernel_update_mask), w, ops.stop_gradient(w))
        return ops.matmul(self.features(x), w) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, x_scale=self.x_scale, x_zero_point=self.x_zero_point)
        return config



def round_to_int(values: np.ndarray, lo: int, hi: int, dtype) -> np.ndarray:
    """The integers the emulated forward computes with (round half away, clamp), as ``dtype``."""
    v = np.asarray(values, dtype=np.float64)
    whole = np.trunc(v)
    r = whole + np.where(np.abs(v - whole) >= 0.5, np.sign(v), 0.0)
    return np.clip(r, lo, hi).astype(dtype)


__all__ = [
    "QuantConv", "QuantAdd", "QuantMean", "QuantPool", "QuantPad", "QuantRelu", "QuantLeakyRelu", "Requantize", "Dequantize",
    "FloatHead", "qas_factor", "int_kind", "layer_name", "round_to_int", "head_init", "QAS_ATTR",
]
