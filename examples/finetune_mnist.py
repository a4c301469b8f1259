"""Main job: fine-tune the bundled Fashion-MNIST int8 backbone on MNIST digits.

The whole pipeline a user walks, on real data:
1. load the int8 .tflite (tflm_train.load),
2. fine-tune in Keras with QAS + a sparse update scheme (model.fit, SparseUpdate callback),
3. write the trained parameters back into an int8 model and score it with the
   TFLite-Micro-exact reference (what the device computes),
4. export the training .tflite (`infer` + `train`) with its memory plan and run a few
   on-device training steps in the C++ micro runtime.

    python examples/finetune_mnist.py [--epochs 3] [--out finetuned.tflite] [-v]

TensorFlow's C++ start-up lines (absl, CUDA probing, oneDNN) are kept off stderr unless
``-v`` or TFLM_TRAIN_VERBOSE=1 asks for them (tflm_train.tf_quiet).
"""
import argparse
import os
import sys
import time

import numpy as np  # noqa: E402

import tflm_train  # noqa: E402
from tflm_train import datasets, reference  # noqa: E402
from tflm_train.training.scheme import SparseScheme  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(os.path.dirname(HERE), "tflm_train", "data", "fmnist_backbone.tflite")
SCHEME = os.path.join(HERE, "schemes", "fmnist_backbone.json") + ":sparse"


def mnist_int8(graph, n_train=4000, seed=0):
    """MNIST 5k resized to the backbone's input, quantized with its input scale / zero point."""
    images, labels = datasets.mnist_5k()
    inp = graph.tensors[graph.inputs[0]]
    size, channels = inp.shape[1], inp.shape[3]
    x = datasets.prepare_images(images, size, channels)
    x = datasets.to_int8_input(x, inp.scalar_scale(), inp.scalar_zero_point())
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:n_train], order[n_train:]
    return x[tr], labels[tr], x[te], labels[te]


def int8_accuracy(graph, x, y) -> float:
    """Top-1 accuracy of the int8 graph through the TFLite-Micro-exact reference, one image at a time."""
    hits = sum(int(np.argmax(reference.invoke(graph, xi[None])[0])) == int(yi) for xi, yi in zip(x, y))
    return hits / len(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--scheme", default=SCHEME, help="FILE[:KEY] (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--out", default="finetuned_mnist.tflite", help="fine-tuned int8 inference model")
    p.add_argument("--train-out", default="finetuned_mnist_train.tflite", help="training .tflite for the device")
    p.add_argument("--device-steps", type=int, default=5, help="training steps in the C++ micro runtime")
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's own start-up logging")
    args = p.parse_args(argv)
    if args.verbose:
        from tflm_train.tf_quiet import set_verbose

        set_verbose(True)

    from tflm_train.keras import QAS, SparseUpdate, from_graph, to_graph  # imports Keras quietly

    import keras

    keras.utils.set_random_seed(0)
    graph = tflm_train.load(args.model)
    scheme = SparseScheme.parse(args.scheme)
    x_tr, y_tr, x_te, y_te = mnist_int8(graph)
    print(f"model {os.path.basename(args.model)}: pretrained on Fashion-MNIST; new task: MNIST digits "
          f"({len(x_tr)} train / {len(x_te)} test images)")
    updates = scheme.resolve(graph)
    print(f"scheme {scheme.name}: biases of {sum(u.update_bias for u in updates)} layers, weights of "
          f"{sum(u.updates_weights for u in updates)} layers (classifier is a new 10-class head)")

    model = from_graph(graph, num_classes=10, head="int8")
    model.compile(optimizer=QAS(keras.optimizers.SGD(args.lr, momentum=0.9)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    before = int8_accuracy(to_graph(model), x_te, y_te)
    print(f"int8 accuracy before fine-tuning: {before:.1%}")
    t = time.time()
    model.fit(x_tr.astype("float32"), y_tr, batch_size=32, epochs=args.epochs,
              callbacks=[SparseUpdate(scheme)], verbose=2)
    trained = to_graph(model)
    after = int8_accuracy(trained, x_te, y_te)
    print(f"int8 accuracy after fine-tuning:  {after:.1%}  ({time.time() - t:.0f} s of Keras training)")
    with open(args.out, "wb") as f:
        f.write(trained.to_tflite())
    print(f"wrote {args.out}: the fine-tuned int8 model (runs in stock TFLite Micro / LiteRT)")

    # On-device continuation: the training .tflite with its memory plan, run by the C++ runtime.
    # head="keep": the device continues from the classifier just fine-tuned in Keras.
    # The device's rate: the default for a kept head (batch 1, no momentum: smaller than Keras's).
    r = tflm_train.export(trained, scheme, args.train_out, num_classes=10, head="keep", seed=1)
    from tflm_train.io.train_export import read_training_file

    data = open(args.train_out, "rb").read()
    _, _, plan = read_training_file(data)
    print(f"wrote {args.train_out}: {len(data):,} bytes, planned training arena {plan.peak_bytes:,} bytes, "
          f"device learning rate {r.train_graph.lr:g}")
    print(r.budget.describe())
    # No fallback: a missing or broken runtime build fails here, loudly.
    from tflm_train.micro import Interpreter

    it = Interpreter(data)
    losses = [it.train_step(x_te[i][None], int(y_te[i])) for i in range(args.device_steps)]
    print(f"C++ micro runtime: {args.device_steps} on-device training steps on new samples, loss "
          + ", ".join(f"{l:.3f}" for l in losses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
