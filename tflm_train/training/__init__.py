"""Training: sparse-update schemes, the compile-time training graph, the reference trainer."""
from .scheme import LayerUpdate, SparseScheme
from .train_graph import TRAIN_OPS, TrainGraph, TrainOp, TrainTensor
from .autodiff import build_train_graph
from .trainer import TrainState, apply_to_graph, evaluate, forward_logits, run_step, run_train_op, train_step

make_train_graph = build_train_graph

__all__ = [
    "LayerUpdate", "SparseScheme", "TRAIN_OPS", "TrainGraph", "TrainOp", "TrainTensor", "build_train_graph",
    "make_train_graph", "TrainState", "apply_to_graph", "evaluate", "forward_logits", "run_step", "run_train_op",
    "train_step",
]
