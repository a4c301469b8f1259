"""``SparseUpdate``: train only what a sparse-update scheme selects, inside ``model.fit``.

At the start of ``fit`` the callback resolves the scheme against the model's source graph
(``SparseScheme.resolve``) and configures the emulating layers:

- a layer's bias trains only if the scheme updates it; a kernel with no selected channel is
  marked non-trainable, so Keras computes no gradient for it and no optimizer sees it;
- a kernel with some selected channels stays trainable, and two things keep its frozen
  channels exactly where they are, whatever the optimizer: the forward routes the frozen
  elements through ``stop_gradient`` (their gradient is exactly zero, so momentum, Adam
  moments and global-norm clipping never see them), and a variable constraint, which
  Keras applies right after every optimizer step inside the compiled train step, writes
  their values back from a snapshot (so even weight decay or optimizer state left over from
  earlier training cannot move them);
- the new head (and a kept classifier) always trains fully, as a scheme specifies.

The train function is re-traced so the configuration takes effect; at the end of ``fit``
the layers get their previous trainability back. An optimizer is built for the variables it
first trains: to train another selection later, compile with a fresh optimizer.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import keras
from keras import ops

from ..graph import GraphError, QuantGraph
from ..training.scheme import SparseScheme, weight_update_axis
from .layers import FloatHead, QuantConv


class _KeepFrozen(keras.constraints.Constraint):
    """After an optimizer step: selected elements keep the step (through ``inner``), the
    others get their snapshot value back."""

    def __init__(self, mask: np.ndarray, frozen_values: np.ndarray, inner=None):
        self.mask = np.asarray(mask, dtype=bool)
        self.frozen_values = np.asarray(frozen_values)
        self.inner = inner

    def __call__(self, w):
        stepped = self.inner(w) if self.inner is not None else w
        return ops.where(ops.convert_to_tensor(self.mask), stepped,
                         ops.convert_to_tensor(self.frozen_values, dtype=w.dtype))


def channel_mask(kernel_shape, op_type: str, channels) -> np.ndarray:
    """Boolean mask, broadcastable to the kernel, True on the selected channels of the
    scheme's channel axis (input channels; channels for depthwise)."""
    axis = weight_update_axis(op_type)
    shape = [1] * len(kernel_shape)
    shape[axis] = kernel_shape[axis]
    mask = np.zeros(kernel_shape[axis], dtype=bool)
    mask[list(channels)] = True
    return mask.reshape(shape)


class SparseUpdate(keras.callbacks.Callback):
    """Train only the biases, layers and channels that ``scheme`` selects.

    ``scheme``: a ``SparseScheme``, its dict form, or ``"FILE[:KEY]"``. ``graph``: the graph to
    resolve it against; by default the model's ``tflm_graph`` (set by ``from_graph``).
    """

    def __init__(self, scheme, graph: Optional[QuantGraph] = None):
        super().__init__()
        if isinstance(scheme, dict):
            scheme = SparseScheme.from_dict(scheme)
        elif isinstance(scheme, str):
            scheme = SparseScheme.parse(scheme)
        if not isinstance(scheme, SparseScheme):
            raise GraphError(f"SparseUpdate: expected a SparseScheme, got {type(scheme).__name__}")
        self.scheme = scheme
        self.graph = graph
        self._saved = []

    # ------------------------------------------------------------------ keras hooks
    def on_train_begin(self, logs=None):
        self.apply_to(self.model)
        self.model.make_train_function(force=True)

    def on_train_end(self, logs=None):
        self.release(self.model)
        self.model.make_train_function(force=True)

    # ------------------------------------------------------------------ configuration
    def plan(self, model):
        """{op_index: LayerUpdate} of the layers that train."""
        graph = self.graph if self.graph is not None else getattr(model, "tflm_graph", None)
        if not isinstance(graph, QuantGraph):
            raise GraphError("SparseUpdate: the model has no source graph; build it with tflm_train.keras.from_graph "
                             "or pass graph=")
        return {u.op_index: u for u in self.scheme.resolve(graph)}

    def apply_to(self, model) -> None:
        """Configure ``model``'s layers for the scheme (undone by ``release``)."""
        if self._saved:
            self.release(model)
        plan = self.plan(model)
        layers = [l for l in model.layers if isinstance(l, (QuantConv, FloatHead))]
        if not layers:
            raise GraphError("SparseUpdate: the model has no tflm_train emulating layers")
        for layer in layers:
            self._saved.append((layer, layer.kernel.trainable, None if layer.bias is None else layer.bias.trainable,
                                layer.kernel.constraint, layer.kernel_update_mask))
            if getattr(layer, "is_new_head", False):
                layer.kernel.trainable = True
                layer.bias.trainable = True
                continue
            update = plan.get(layer.op_index)
            if layer.bias is not None:
                layer.bias.trainable = bool(update is not None and update.update_bias)
            channels = update.weight_channels if update is not None else ()
            axis = weight_update_axis(layer.op_type)
            layer.kernel.trainable = len(channels) > 0
            if 0 < len(channels) < layer.kernel_shape[axis]:
                mask = channel_mask(layer.kernel_shape, layer.op_type, channels)
                layer.kernel_update_mask = mask
                snapshot = np.asarray(layer.kernel.numpy())
                layer.kernel.constraint = _KeepFrozen(np.broadcast_to(mask, snapshot.shape), snapshot,
                                                      layer.kernel.constraint)

    def release(self, model=None) -> None:
        """Give the layers their trainability, constraints and masks from before ``apply_to``."""
        for layer, k_trainable, b_trainable, constraint, mask in reversed(self._saved):
            layer.kernel.trainable = k_trainable
            if b_trainable is not None:
                layer.bias.trainable = b_trainable
            layer.kernel.constraint = constraint
            layer.kernel_update_mask = mask
        self._saved = []

    def get_config(self):
        return {"scheme": self.scheme.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(SparseScheme.from_dict(config["scheme"]))
