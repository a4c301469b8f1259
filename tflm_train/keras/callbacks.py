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
from ..training.scheme import SparseScheme, is_builtin, scheme_of, weight_update_axis
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

    ``scheme``: a ``SparseScheme``, its dict form, or any spelling of ``scheme_of`` (``"full"``,
    ``"bias_only"``, ``"last_k(2)"``, ``"FILE[:KEY]"``; built-ins resolve against the graph); without one
    (``SparseUpdate()``, or ``SparseUpdate(budget_kb=N)``), the data-free default rule
    ``tflm_train.training.search.default_scheme`` picks a scheme whose planned training step
    fits ``budget_kb`` (default: 256 KB minus the application reserve), and it is reported once
    when ``fit`` starts. For a scheme searched on your data, see ``tflm_train.search_scheme``.
    ``graph``: the graph to resolve it against; by default the model's ``tflm_graph`` (set by
    ``from_graph``). A scheme whose ``model`` names another graph is refused unless ``force_scheme``.
    """

    def __init__(self, scheme=None, graph: Optional[QuantGraph] = None, budget_kb: Optional[float] = None,
                 force_scheme: bool = False):
        super().__init__()
        if isinstance(scheme, dict):
            scheme = SparseScheme.from_dict(scheme)
        elif isinstance(scheme, str):
            # a file is read now; a built-in (it counts the graph's layers) when the graph is known
            scheme = scheme_of(scheme, graph) if graph is not None or not is_builtin(scheme) else scheme.strip()
        if scheme is not None and not isinstance(scheme, (SparseScheme, str)):
            raise GraphError(f"SparseUpdate: expected a SparseScheme, got {type(scheme).__name__}")
        if scheme is not None and budget_kb is not None:
            raise GraphError("SparseUpdate: pass a scheme or a budget_kb, not both")
        if budget_kb is not None and not budget_kb > 0:
            raise GraphError(f"SparseUpdate: budget_kb must be positive, got {budget_kb}")
        self.scheme = scheme
        self.force_scheme = bool(force_scheme)
        self.budget_kb = budget_kb
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
        if self.scheme is None:
            self.scheme = self._default_scheme(model, graph)
        else:  # a built-in spelling resolves here; a scheme made for another model is refused here
            self.scheme = scheme_of(self.scheme, graph, force=self.force_scheme)
        return {u.op_index: u for u in self.scheme.resolve(graph)}

    def _default_scheme(self, model, graph: QuantGraph) -> SparseScheme:
        """The data-free default for the budget, planned with the model's own head; reported once."""
        from ..training.search import DEFAULT_BUDGET_KB, CostModel, default_scheme

        heads = [l for l in model.layers if getattr(l, "is_new_head", False)]
        head = "keep" if not heads else ("float" if isinstance(heads[0], FloatHead) else "int8")
        num_classes = int(model.outputs[0].shape[-1])
        budget_kb = DEFAULT_BUDGET_KB if self.budget_kb is None else self.budget_kb
        cost = CostModel(graph, num_classes, head)
        scheme = default_scheme(graph, budget_kb, num_classes=num_classes, head=head, cost=cost)
        n = len(graph.conv_op_indices())
        weights = ", ".join(f"conv {k} x{r:g}" for k, r in scheme.weight_update.items()) or "none"
        print(f"SparseUpdate: no scheme given; default rule for {budget_kb:g} KB: biases of the last "
              f"{scheme.n_bias_update} of {n} conv layers, weights of {weights} (+ classifier); planned peak "
              f"{cost.exact_peak(scheme) / 1024:.1f} KB")
        return scheme

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
        scheme = self.scheme.to_dict() if isinstance(self.scheme, SparseScheme) else self.scheme
        return {"scheme": scheme, "budget_kb": self.budget_kb}

    @classmethod
    def from_config(cls, config):
        scheme = config.get("scheme")
        return cls(SparseScheme.from_dict(scheme) if isinstance(scheme, dict) else scheme,
                   budget_kb=config.get("budget_kb") if scheme is None else None)
