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
from .callbacks import Callback
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


# ---- Lecture III: auto-encoders and the VAE (MNIST-sized images) --------------------------------

def _images(dataset, data_dir, train_size, limit):
    """Flat images in [0, 1]: the digits (8x8) or what recipes.load_images gives."""
    from .recipes import load_dataset, load_images
    if dataset == "digits":
        (xtr, ytr), (xte, yte) = load_dataset("digits")
    else:
        (xtr, ytr), (xte, yte) = load_images(dataset, data_dir, train_size)
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:max(limit // 4, 1)], yte[:max(limit // 4, 1)]
    return (xtr, ytr), (xte, yte)


def _side(n_pixels):
    side = int(round(n_pixels ** 0.5))
    return side if side * side == n_pixels else None


class _HeldOutError(Callback):
    """Prints the held-out squared error per image after each epoch (its time kept apart)."""

    def __init__(self, x_in, x, say):
        self.x_in, self.x, self.say = x_in, x, say
        self.errors, self.seconds, self.start = [], 0.0, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from .generative import reconstruction_error
        t = time.perf_counter()
        recon = self.model.predict(self.x_in, batch_size=500)
        self.errors.append(reconstruction_error(self.x, recon))
        self.seconds += time.perf_counter() - t
        self.say(f"epoch {epoch + 1}: loss {(logs or {}).get('loss', float('nan')):.4f}  held-out error "
                 f"{self.errors[-1]:.2f}  ({time.perf_counter() - self.start - self.seconds:.0f} s training)",
                 flush=True)


def _autoencoder_figure(path, x, recon, codes, labels, title):
    from .plots import _pyplot
    plt = _pyplot()
    side, n = _side(x.shape[1]), min(10, len(x))
    fig = plt.figure(figsize=(12, 5))
    grid = fig.add_gridspec(2, n + 6)
    for i in range(n):
        for row, img in ((0, x[i]), (1, recon[i])):
            ax = fig.add_subplot(grid[row, i])
            ax.imshow(img.reshape(side, side), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            if i == 0:
                ax.set_title("original" if row == 0 else "reconstruction", fontsize=8, loc="left")
    ax = fig.add_subplot(grid[:, n + 1:])
    what = "the 2-D codes"
    if codes.shape[1] > 2:  # a wider code is seen along its own two main directions
        from .generative import pca_fit, pca_reconstruct
        what = f"the {codes.shape[1]}-D codes' first 2 principal components"
        codes = pca_reconstruct(codes, *pca_fit(codes, 2))[0]
    pts = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=4)
    fig.colorbar(pts, ax=ax, label="class")
    ax.set_title(f"{what} (held-out images)", fontsize=9)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@demo("autoencoder", "Deep auto-encoder vs PCA at the same code size (squared error per image)")
def autoencoder(dataset="mnist", data_dir=None, kind="deep", code_size=30, hidden=(1000, 500, 250),
                epochs=10, batch_size=128, learning_rate=1e-3, train_size=8000, limit=None, noise=0.3,
                seed=0, plot="autoencoder.png", verbose=True):
    """Train ``kind`` ("deep", "denoising" or "conv") end to end with Adam on binary cross
    entropy, fit PCA with ``code_size`` components on the same training images, and compare
    their held-out reconstruction errors (squared error summed over pixels, mean per image).
    ``dataset``: "mnist" (full MNIST where found, else its 10k test images split
    ``train_size`` / rest), "mnist-10k", "fashion-mnist" or "digits"."""
    from . import generative, recipes
    say = print if verbose else (lambda *a, **k: None)
    (xtr, ytr), (xte, yte) = _images(dataset, data_dir, train_size, limit)
    say(f"{dataset}: {len(xtr)} training images, {len(xte)} held out, {xtr.shape[1]} pixels")
    grandom.set_seed(seed)
    side = _side(xtr.shape[1])
    if kind == "conv":
        if side is None or side % 4:
            raise ValueError(f"autoencoder kind 'conv' expected square images with a side divisible by 4, "
                             f"got {xtr.shape[1]} pixels")
        model = recipes.conv_autoencoder(code_size, input_shape=(1, side, side))
        shape = (lambda a: a.reshape(len(a), 1, side, side))
    elif kind in ("deep", "denoising"):
        model = recipes.deep_autoencoder(code_size, xtr.shape[1], tuple(hidden),
                                         noise_stddev=noise if kind == "denoising" else None)
        shape = (lambda a: a)
    else:
        raise ValueError(f"autoencoder expected kind 'deep', 'denoising' or 'conv', got {kind!r}")
    model.compile(optimizers.Adam(learning_rate), "binary_crossentropy")
    t0 = time.perf_counter()
    curve = _HeldOutError(shape(xte), xte, say)
    hist = model.fit(shape(xtr), shape(xtr), batch_size=batch_size, epochs=epochs, verbose=0, seed=seed,
                     callbacks=[curve])
    train_s = time.perf_counter() - t0 - curve.seconds
    recon = model.predict(shape(xte), batch_size=500).reshape(len(xte), -1)
    codes = model.get_layer("encoder").predict(shape(xte), batch_size=500)
    mean, comps = generative.pca_fit(xtr, code_size)
    _, pca_recon = generative.pca_reconstruct(xte, mean, comps)
    ae_err = generative.reconstruction_error(xte, recon)
    pca_err = generative.reconstruction_error(xte, pca_recon)
    out = {"autoencoder_error": ae_err, "pca_error": pca_err, "ratio": ae_err / pca_err, "epochs": epochs,
           "train_seconds": train_s, "loss": hist.history["loss"], "held_out_by_epoch": curve.errors}
    if verbose:
        _table(["model", f"held-out squared error per image (code {code_size})"],
               [[f"{kind} auto-encoder ({epochs} epochs, {train_s:.0f} s)", f"{ae_err:.2f}"],
                [f"PCA-{code_size}", f"{pca_err:.2f}"]])
    say(f"auto-encoder / PCA = {out['ratio']:.3f} (Hinton and Salakhutdinov 2006, MNIST: 3.00 / 13.87 = 0.216)")
    if plot and side is not None:
        _autoencoder_figure(plot, xte, recon, np.asarray(codes), yte,
                            f"{kind} auto-encoder on {dataset}: held-out error {ae_err:.2f} vs PCA {pca_err:.2f}")
        say(f"wrote {plot}")
    return out


def _vae_figure(path, samples, walk, side, title):
    from .plots import _pyplot
    plt = _pyplot()
    rows = [samples[i:i + 10] for i in range(0, len(samples), 10)] + [walk]
    fig, axes = plt.subplots(len(rows), 10, figsize=(10, len(rows) + 0.6))
    for r, imgs in enumerate(rows):
        for c in range(10):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(imgs[c].reshape(side, side), cmap="gray", vmin=0, vmax=1)
    axes[-1, 0].set_title("walk from one test image's code to another's", fontsize=8, loc="left")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@demo("vae", "Variational auto-encoder, gpudl beside its PyTorch twin (test loss in nats per image)")
def vae_demo(dataset="mnist-10k", data_dir=None, latent_dim=20, hidden=400, epochs=3, batch_size=128,
             learning_rate=1e-3, train_size=8000, limit=None, seed=0, torch=True, plot="vae.png",
             verbose=True):
    """Train recipes.vae and, with ``torch``, its PyTorch twin (the same initial weights,
    Adam, batch size and data, in the same run); print both test losses (binary cross entropy
    summed over pixels + KL, nats per image) and draw samples and a latent walk."""
    from . import generative, peers, recipes
    say = print if verbose else (lambda *a, **k: None)
    (xtr, _), (xte, _) = _images(dataset, data_dir, train_size, limit)
    say(f"{dataset}: {len(xtr)} training images, {len(xte)} test, {xtr.shape[1]} pixels")
    grandom.set_seed(seed)
    model = recipes.vae(latent_dim, xtr.shape[1], hidden)
    twin = None
    if torch:
        twin = peers.torch_twin("vae", seed=seed, latent_dim=latent_dim, input_dim=xtr.shape[1], hidden=hidden)
        peers.copy_twin_weights(twin, model)
        peer = peers.TorchVAETrainer(twin, xtr, batch_size, learning_rate, seed=seed)
    model.compile(optimizers.Adam(learning_rate), generative.SummedBinaryCrossentropy())
    losses, torch_losses = [], []
    t0 = time.perf_counter()
    for e in range(epochs):
        losses.append(model.fit(xtr, batch_size=batch_size, epochs=1, verbose=0, seed=seed + e).history["loss"][0])
        line = f"epoch {e + 1}: gpudl training loss {losses[-1]:.2f}"
        if twin is not None:
            torch_losses.append(peer.epoch())
            line += f"  | PyTorch {torch_losses[-1]:.2f}"
        say(line)
    out = {"loss": losses, "test_loss": model.evaluate(xte, batch_size=500), "epochs": epochs,
           "seconds": time.perf_counter() - t0}
    rows = [["gpudl", f"{out['test_loss']:.2f}"]]
    if twin is not None:
        out["torch_loss"] = torch_losses
        out["torch_test_loss"] = peer.evaluate(xte)
        out["relative_difference"] = out["test_loss"] / out["torch_test_loss"] - 1.0
        rows.append([f"PyTorch {peer.torch.__version__}", f"{out['torch_test_loss']:.2f}"])
    if verbose:
        _table(["VAE", f"test loss, nats per image ({epochs} epochs)"], rows)
    if twin is not None:
        say(f"gpudl / PyTorch - 1 = {100 * out['relative_difference']:+.2f} %")
    say(f"training and testing took {out['seconds']:.0f} s")
    side = _side(xtr.shape[1])
    if plot and side is not None:
        decoder = model.get_layer("decoder")
        samples = decoder.predict(grandom.normal(0.0, 1.0, (30, latent_dim)))
        means = model.get_layer("encoder").predict(xte[:2])[0]
        steps = np.linspace(0.0, 1.0, 10, dtype=np.float32)[:, None]
        walk = decoder.predict((1 - steps) * means[0] + steps * means[1])
        _vae_figure(plot, samples, walk, side, f"VAE on {dataset}: 30 samples from N(0, I), then a latent walk")
        say(f"wrote {plot}")
    return out


# ---- Lecture III: reinforcement learning ----------------------------------------------------------

@demo("policy-gradient", "Policy gradient on CartPole-v1 until solved (average return >= 475 over 100 episodes)")
def policy_gradient(episodes=1000, seed=0, algorithm="reinforce", plot="policy_gradient.png"):
    """REINFORCE with a learned baseline (or ``algorithm="actor-critic"``) on gymnasium's
    CartPole-v1; the exit code says whether it was solved within ``episodes`` (0) or not (1)."""
    from .rl.demo import policy_gradient_demo
    return policy_gradient_demo(episodes=episodes, seed=seed, out=plot, algorithm=algorithm)


def _demo_parser(name, fn):
    """argparse options from a demo's keyword arguments: ``--epochs 30``, ``--hidden 64,32``,
    ``--no-torch``."""
    import argparse
    import inspect
    p = argparse.ArgumentParser(prog=f"gpudl demo {name}", description=DEMOS[name][0])
    for arg, param in inspect.signature(fn).parameters.items():
        if arg == "verbose":
            continue
        flag, default = f"--{arg.replace('_', '-')}", param.default
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            p.add_argument(flag, default=default, metavar="N,N,...",
                           type=lambda v: tuple(int(n) for n in v.split(",")))
        elif isinstance(default, (int, float)):
            p.add_argument(flag, type=type(default), default=default)
        elif arg in _INT_OPTIONS:
            p.add_argument(flag, default=default, type=int)
        else:
            p.add_argument(flag, default=default, type=lambda v: None if v.lower() == "none" else v)
    return p


#: demo options whose default is None but whose values are integers
_INT_OPTIONS = ("limit",)


def run(name: str, argv=None) -> int:
    """Run demo ``name`` ('all' runs each with its defaults; 'list' names them); ``argv``: the
    demo's own options (``gpudl demo autoencoder --epochs 60``)."""
    if name in ("list", "help"):
        for k, (title, _) in DEMOS.items():
            print(f"{k:32s} {title}")
        return 0
    names = list(DEMOS) if name == "all" else [name]
    for n in names:
        if n not in DEMOS:
            raise ValueError(f"unknown demo {n!r}: expected one of {', '.join(DEMOS)}, 'all' or 'list'")
    if argv and len(names) != 1:
        raise ValueError(f"demo options {' '.join(argv)} apply to one demo, not {name!r}")
    rc = 0
    for n in names:
        title, fn = DEMOS[n]
        kwargs = vars(_demo_parser(n, fn).parse_args(argv or []))
        print(f"== {title}")
        result = fn(**kwargs)
        if isinstance(result, int) and not isinstance(result, bool) and result:
            rc = result  # a demo that reports an exit code (not solved, a missing extra)
        print()
    return rc
