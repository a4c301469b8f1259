"""Keras 3 front-end: emulate an int8 QuantGraph in Keras, train it with QAS and a sparse
update scheme, and write the result back (DESIGN.md, "The pipeline a user walks").

- ``from_graph(graph, num_classes, head=...)`` -> ``keras.Model`` of emulating layers
- ``QAS(inner_optimizer)``: quantization-aware scaling of per-channel gradients
- ``SparseUpdate(scheme)``: callback training only the scheme's biases / channels
- ``to_graph(model)`` -> ``QuantGraph`` with the trained int8 parameters
- ``emulated_activations(model, x)``: every graph tensor's int8 value in the Keras forward
"""
from ..tf_quiet import import_keras

import_keras()  # Keras + TensorFlow's runtime, without TensorFlow's C++ start-up lines (unless verbose)

from .callbacks import SparseUpdate  # noqa: E402
from .convert import emulated_activations, from_graph, to_graph  # noqa: E402
from .layers import qas_factor  # noqa: E402
from .optimizer import QAS  # noqa: E402

__all__ = ["from_graph", "to_graph", "QAS", "SparseUpdate", "emulated_activations", "qas_factor"]
