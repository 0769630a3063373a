"""The tutorial's comparisons, each on the bundled 8x8 digits so they run anywhere.

``gpudl demo list`` names them; each prints the comparison the slides draw and returns
its numbers (tests check the direction of each effect).
"""
from __future__ import annotations

import time

import numpy as np

from . import layers, optimizers
from . import random as grandom
from .autograd import Tensor
from .models import Sequential

DEMOS = {}


def demo(name, title):
    def register(fn):
        DEMOS[name] = (title, fn)
        return fn
    return register


def _digits():
    from .recipes import load_dataset
    return load_dataset("digits")


def _mlp(hidden, depth, activation, input_dim=64, dropout=0.0):
    seq = []
    for _ in range(depth):
        seq.append(layers.Dense(hidden, activation=activation))
        if dropout:
            seq.append(layers.Dropout(dropout))
    seq.append(layers.Dense(10, activation="softmax"))
    return Sequential(seq, input_shape=(input_dim,))


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) + 2 for i in range(len(header))]
    print("".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("".join(str(c).ljust(w) for c, w in zip(r, widths)))


@demo("square-error-vs-cross-entropy", "Square error vs cross entropy: same net, same data, same epochs")
def square_error_vs_cross_entropy(epochs=10, seed=0):
    (xtr, ytr), (xte, yte) = _digits()
    out = {}
    for loss in ("mse", "categorical_crossentropy"):
        grandom.set_seed(seed)
        m = _mlp(64, 2, "sigmoid")
        m.compile(optimizers.SGD(0.5), loss, ["accuracy"])
        h = m.fit(xtr, ytr, batch_size=32, epochs=epochs, verbose=0)
        out[loss] = (h.history["accuracy"], m.evaluate(xte, yte, return_dict=True)["accuracy"])
    _table(["loss", "train acc by epoch", "test acc"],
           [[k, " ".join(f"{a:.2f}" for a in v[0]), f"{v[1]:.3f}"] for k, v in out.items()])
    print("cross entropy learns faster: its gradient does not vanish when the output saturates.")
    return {k: v[1] for k, v in out.items()}


@demo("sigmoid-vs-relu", "Deep sigmoid net: vanishing gradient; ReLU: no such problem")
def sigmoid_vs_relu(depth=8, epochs=10, seed=0):
    (xtr, ytr), (xte, yte) = _digits()
    rows, out = [], {}
    for act in ("sigmoid", "relu"):
        grandom.set_seed(seed)
        m = _mlp(64, depth, act)
        m.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
        # gradient size per layer at initialisation, on one batch
        from . import functional as F
        for p in m.params():
            p.grad = None
        F.softmax_cross_entropy(m.forward(Tensor(xtr[:256]), logits=True), ytr[:256]).backward()
        norms = [float(np.abs(l.W.grad).mean()) for l in m.layers]
        m.fit(xtr, ytr, batch_size=32, epochs=epochs, verbose=0)
        acc = m.evaluate(xte, yte, return_dict=True)["accuracy"]
        out[act] = {"first_layer_grad": norms[0], "last_layer_grad": norms[-1], "test_accuracy": acc}
        rows.append([act, f"{norms[0]:.2e}", f"{norms[-1]:.2e}", f"{acc:.3f}"])
    _table(["activation", "mean |dL/dW| layer 1", f"layer {depth + 1}", "test acc"], rows)
    print("with sigmoid the first layers barely learn: the gradient shrinks through every layer.")
    return out


@demo("minibatch-vs-fullbatch", "Mini-batch vs full-batch gradient descent, same number of epochs")
def minibatch_vs_fullbatch(epochs=20, seed=0):
    (xtr, ytr), (xte, yte) = _digits()
    rows, out = [], {}
    for label, bs in (("mini-batch (100)", 100), ("full batch", len(xtr))):
        grandom.set_seed(seed)
        m = _mlp(128, 2, "relu")
        m.compile(optimizers.SGD(0.1), "categorical_crossentropy", ["accuracy"])
        t0 = time.perf_counter()
        m.fit(xtr, ytr, batch_size=bs, epochs=epochs, verbose=0)
        dt = (time.perf_counter() - t0) / epochs
        acc = m.evaluate(xte, yte, return_dict=True)["accuracy"]
        out[bs] = acc
        rows.append([label, f"{dt * 1000:.1f} ms", f"{acc:.3f}"])
    _table(["updates", "time per epoch", "test acc"], rows)
    n_batches = -(-len(xtr) // 100)
    print(f"one pass over the data gives {n_batches} updates with mini-batches, 1 with the full batch: "
          f"after {epochs} epochs mini-batch is {100 * (out[100] - out[len(xtr)]):+.1f} points ahead.")
    return {"minibatch": out[100], "fullbatch": out[len(xtr)]}


@demo("dropout", "Dropout: a smaller gap between training and test accuracy")
def dropout_demo(epochs=60, seed=0, train_size=500):
    (xtr, ytr), (xte, yte) = _digits()
    xtr, ytr = xtr[:train_size], ytr[:train_size]  # small data: overfitting shows
    rows, out = [], {}
    for rate in (0.0, 0.5):
        grandom.set_seed(seed)
        m = _mlp(512, 3, "relu", dropout=rate)
        m.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
        m.fit(xtr, ytr, batch_size=32, epochs=epochs, verbose=0)
        tr = m.evaluate(xtr, ytr, return_dict=True)
        te = m.evaluate(xte, yte, return_dict=True)
        out[rate] = {"train_loss": tr["loss"], "test_loss": te["loss"], "test_accuracy": te["accuracy"]}
        rows.append([f"{rate:.1f}", f"{tr['loss']:.3f}", f"{te['loss']:.3f}", f"{te['accuracy']:.3f}"])
    _table(["dropout", "train loss", "test loss", "test acc"], rows)
    gain = 100 * (out[0.5]["test_accuracy"] - out[0.0]["test_accuracy"])
    print(f"dropout fits the training set less tightly (training loss x"
          f"{out[0.5]['train_loss'] / max(out[0.0]['train_loss'], 1e-12):.0f}) and changed test accuracy by "
          f"{gain:+.1f} points; at test time nothing is dropped (inverted scaling needs no rescale).")
    return out


@demo("optimizers", "SGD, momentum, Nesterov, Adagrad, RMSProp, Adam on the same net")
def optimizers_demo(epochs=5, seed=0):
    (xtr, ytr), (xte, yte) = _digits()
    rows, out = [], {}
    for label, make in (("SGD", lambda: optimizers.SGD(0.05)),
                        ("momentum", lambda: optimizers.SGD(0.05, momentum=0.9)),
                        ("Nesterov", lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
                        ("Adagrad", lambda: optimizers.Adagrad(0.05)),
                        ("RMSProp", lambda: optimizers.RMSProp(1e-3)),
                        ("Adam", lambda: optimizers.Adam(1e-3))):
        grandom.set_seed(seed)
        m = _mlp(64, 2, "relu")
        m.compile(make(), "categorical_crossentropy", ["accuracy"])
        h = m.fit(xtr, ytr, batch_size=32, epochs=epochs, verbose=0)
        acc = m.evaluate(xte, yte, return_dict=True)["accuracy"]
        out[label] = {"loss": h.history["loss"], "test_accuracy": acc}
        rows.append([label, " ".join(f"{v:.3f}" for v in h.history["loss"]), f"{acc:.3f}"])
    _table(["optimizer", "training loss by epoch", "test acc"], rows)
    return out


def run(name: str) -> int:
    if name in ("list", "help"):
        for k, (title, _) in DEMOS.items():
            print(f"{k:32s} {title}")
        return 0
    names = list(DEMOS) if name == "all" else [name]
    for n in names:
        if n not in DEMOS:
            raise ValueError(f"unknown demo {n!r}: expected one of {', '.join(DEMOS)}, 'all' or 'list'")
        title, fn = DEMOS[n]
        print(f"== {title}")
        fn()
        print()
    return 0
