"""Lecture II's CNN on images: Keras' mnist_cnn recipe (conv32-conv64-maxpool-dropout-
dense128-dropout-softmax, Adam) trained on Fashion-MNIST, optionally beside the same model
in PyTorch, in the same process and on the same device.

    python examples/mnist_cnn.py                              # NumPy, 12 epochs
    python examples/mnist_cnn.py --limit 2000 --epochs 2      # a quick run
    python examples/mnist_cnn.py --backend cupy --torch       # GPU, beside PyTorch eager on CUDA

Prints each epoch's time and scores, then the test accuracy; with --torch, one PyTorch epoch
runs after each gpudl epoch (timed apart), then both accuracies and the median epoch ratio.
On the CuPy backend the training images move to the GPU once, as PyTorch's do.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpudl  # noqa: E402
from gpudl import optimizers, peers, recipes  # noqa: E402


def parse_args(argv=None):
    parser = peers.example_parser("Keras' mnist_cnn recipe on Fashion-MNIST or MNIST", epochs=12)
    parser.add_argument("--batchnorm", nargs="?", const="pre", default=False, choices=["pre", "post"],
                        help="BatchNormalization after each convolution (both models): 'pre' (the default "
                             "with the flag) between the convolution and its ReLU, 'post' after the ReLU")
    parser.add_argument("--twin-init", action="store_true",
                        help="start gpudl from the PyTorch twin's initial weights (PyTorch's default "
                             "initialisers, seeded with --seed) instead of Keras' glorot_uniform")
    return peers.parse_example_args(parser, argv)


def load(dataset, limit, data_dir=None, layout="image"):
    """(x_train, y_train, x_test, y_test) in [0, 1]; with ``limit``, the first ``limit`` training
    and ``limit // 5`` test samples."""
    (x_train, y_train), (x_test, y_test) = recipes.load_dataset(dataset, layout, limit=limit, data_dir=data_dir)
    if limit is not None:
        x_test, y_test = x_test[:max(limit // 5, 10)], y_test[:max(limit // 5, 10)]
    return x_train, y_train, x_test, y_test


def main(argv=None):
    args = parse_args(argv)
    print(f"backend: {gpudl.set_backend(args.backend)}")
    gpudl.set_seed(args.seed)
    x_train, y_train, x_test, y_test = load(args.dataset, args.limit, args.data_dir)
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images of shape {x_train.shape[1:]}")

    model = recipes.mnist_cnn(input_shape=x_train.shape[1:], batchnorm=args.batchnorm)
    model.compile(optimizer=optimizers.Adam(learning_rate=args.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    twin = peers.torch_twin("mnist_cnn", seed=args.seed, input_shape=x_train.shape[1:],
                            batchnorm=args.batchnorm) if args.torch or args.twin_init else None
    if args.twin_init:
        peers.copy_twin_weights(twin, model)
        print("gpudl starts from the PyTorch twin's initial weights")
    if not args.torch:
        twin = None
    return peers.fit_beside(model, (x_train, y_train, x_test, y_test), twin, epochs=args.epochs,
                            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)


if __name__ == "__main__":
    main()
