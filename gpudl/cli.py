"""The ``gpudl`` command: hello | train | bench | demo."""
from __future__ import annotations

import argparse
import sys
import time

from . import backend
from .errors import BackendUnavailableError, DatasetError, GpudlError

MODELS = ("mlp", "cnn", "rnn")


def _set_backend(name):
    chosen = backend.set_backend(name)
    print(f"backend: {backend.describe()}")
    return chosen


def _hello_data(dataset, data_dir):
    """MNIST when present or downloadable, else the bundled digits; says which and why."""
    from .recipes import load_dataset
    if dataset in ("auto", "mnist"):
        try:
            data = load_dataset("mnist", data_dir=data_dir)
            print("data: MNIST (60,000 training and 10,000 test images of 28x28)")
            return data, "mnist"
        except DatasetError as exc:
            if dataset == "mnist":
                raise
            first = str(exc).splitlines()[0].rstrip(":")
            print(f"data: MNIST is not available here ({first}); using scikit-learn's bundled "
                  "8x8 digits (1,797 images) instead")
    data = load_dataset("digits")
    if dataset == "digits":
        print("data: scikit-learn's bundled 8x8 digits (1,797 images)")
    return data, "digits"


def cmd_hello(args):
    """The tutorial's hello world: a Keras-style MLP on handwritten digits."""
    import gpudl
    from . import optimizers
    from .recipes import hello_mlp
    _set_backend(args.backend)
    gpudl.set_seed(args.seed)
    ((xtr, ytr), (xte, yte)), name = _hello_data(args.dataset, args.data_dir)
    epochs, dropout = args.epochs or 20, 0.2
    if name == "digits":
        # 1,437 training images of 64 pixels: standardise the pixels, train longer, drop more
        mean, std = xtr.mean(axis=0), xtr.std(axis=0) + 0.1
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
        epochs, dropout = args.epochs or 30, 0.5
    model = hello_mlp(input_dim=xtr.shape[1], dropout=dropout)
    model.compile(optimizers.Adam(learning_rate=1e-3), "categorical_crossentropy", ["accuracy"])
    model.summary()
    t0 = time.perf_counter()
    model.fit(xtr, ytr, batch_size=args.batch_size, epochs=epochs, validation_split=0.1,
              verbose=args.verbose)
    elapsed = time.perf_counter() - t0
    res = model.evaluate(xte, yte, return_dict=True)
    print(f"trained {epochs} epochs in {elapsed:.1f} s on {name}")
    print(f"test loss: {res['loss']:.4f}")
    print(f"test accuracy: {res['accuracy']:.4f}")
    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    return 0


def _say_root(args):
    """print on rank 0 only in a distributed run (every rank trains; one speaks)."""
    if not getattr(args, "distributed", False):
        return print
    from . import distributed
    return print if distributed.rank() == 0 else (lambda *a, **k: None)


def cmd_train(args):
    import gpudl
    from . import optimizers
    from .recipes import hello_mlp, load_dataset, mnist_cnn, rnn_rows
    chosen = backend.set_backend(args.backend)
    if args.distributed:
        from . import distributed
        # before any array is made: a GPU rank selects its device by local rank here
        distributed.init("nccl" if chosen == "cupy" else "auto")
    say = _say_root(args)
    say(f"backend: {backend.describe()}")
    if args.distributed:
        say(f"distributed: {distributed.size()} ranks ({distributed.world().name})")
    gpudl.set_seed(args.seed)
    layout = {"mlp": "flat", "cnn": "image", "rnn": "rows"}[args.model]
    (xtr, ytr), (xte, yte) = load_dataset(args.dataset, layout, limit=args.limit, data_dir=args.data_dir)
    if args.model == "mlp":
        model = hello_mlp(input_dim=xtr.shape[1])
    elif args.model == "cnn":
        model = mnist_cnn(input_shape=xtr.shape[1:])
    else:
        model = rnn_rows(args.cell or "lstm", rows=xtr.shape[1], cols=xtr.shape[2])
    model.compile(optimizers.Adam(learning_rate=args.lr), "categorical_crossentropy", ["accuracy"])
    if args.verbose:
        model.summary(print_fn=say)
    t0 = time.perf_counter()
    history = model.fit(xtr, ytr, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(xte, yte), verbose=args.verbose, distributed=args.distributed)
    elapsed = time.perf_counter() - t0
    res = model.evaluate(xte, yte, return_dict=True)
    if args.distributed and distributed.rank() != 0:
        return 0  # rank 0 reports and writes; the others trained the same weights
    print(f"{args.model} on {args.dataset}: {args.epochs} epochs in {elapsed:.1f} s "
          f"({elapsed / args.epochs:.2f} s/epoch); test loss {res['loss']:.4f}, "
          f"test accuracy {res['accuracy']:.4f}")
    if args.plot:
        from .plots import plot_history
        plot_history(history, args.plot, title=f"{args.model} on {args.dataset}")
        print(f"curves: {args.plot}")
    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    return 0


def cmd_bench(args):
    from .bench import run
    _set_backend(args.backend)
    return run(quick=args.quick)


def cmd_demo(args):
    from . import demos
    _set_backend(args.backend)
    return demos.run(args.name, args.options)


def build_parser():
    p = argparse.ArgumentParser(prog="gpudl", description="gpudl: the Deep Learning Tutorial as a library")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--backend", default="auto", choices=["numpy", "cupy", "auto"],
                        help="array backend (default: auto = CuPy when a GPU is usable)")
        sp.add_argument("--seed", type=int, default=0)

    h = sub.add_parser("hello", help="the tutorial's hello world: an MLP on handwritten digits")
    common(h)
    h.add_argument("--dataset", default="auto", choices=["auto", "mnist", "digits"])
    h.add_argument("--data-dir", default=None, help="folder holding the MNIST IDX files")
    h.add_argument("--epochs", type=int, default=None, help="default: 20 (MNIST), 30 (digits)")
    h.add_argument("--batch-size", type=int, default=100)
    h.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    h.add_argument("--save", default=None, help="write the trained model here")
    h.set_defaults(func=cmd_hello)

    t = sub.add_parser("train", help="train a reference model on a dataset")
    common(t)
    t.add_argument("--model", default="mlp", choices=MODELS)
    t.add_argument("--cell", default=None, choices=["lstm", "gru", "simple"],
                   help="the recurrent layer of --model rnn (default: lstm)")
    t.add_argument("--dataset", default="digits", choices=["mnist", "fashion-mnist", "digits"])
    t.add_argument("--data-dir", default=None)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--limit", type=int, default=None, help="use only the first N training samples")
    t.add_argument("--plot", default=None, help="draw loss and accuracy curves into this PNG")
    t.add_argument("--save", default=None, help="write the trained model here")
    t.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI launch (mpiexec -n N gpudl train ...); "
                        "--batch-size is then the global batch")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="benchmark gpudl against its peers on this machine")
    common(b)
    b.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="the tutorial's comparisons (square error vs cross entropy, ...)")
    common(d)
    d.add_argument("name", help="a demo name, or 'all' / 'list'")
    d.add_argument("options", nargs=argparse.REMAINDER,
                   help="the demo's own options (gpudl demo NAME --help lists them)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            print(f"gpudl: error: --{name.replace('_', '-')} must be a positive integer, "
                  f"got {getattr(args, name)}", file=sys.stderr)
            return 2
    if getattr(args, "cell", None) is not None and args.model != "rnn":
        print(f"gpudl: error: --cell applies to --model rnn, got --model {args.model}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (GpudlError, BackendUnavailableError, ValueError, TypeError, ImportError) as exc:
        print(f"gpudl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
