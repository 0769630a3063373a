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
from .data import Dataset
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
    """Prints the held-out squared error per image after each epoch (its time kept apart),
    and the validation loss when the fit has one."""

    def __init__(self, x_in, x, say):
        self.x_in, self.x, self.say = x_in, x, say
        self.errors, self.seconds, self.start = [], 0.0, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from .generative import reconstruction_error
        logs = logs or {}
        t = time.perf_counter()
        recon = self.model.predict(self.x_in, batch_size=500)
        self.errors.append(reconstruction_error(self.x, recon))
        self.seconds += time.perf_counter() - t
        val = f"  val loss {logs['val_loss']:.4f}" if "val_loss" in logs else ""
        self.say(f"epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}{val}  held-out error "
                 f"{self.errors[-1]:.2f}  ({time.perf_counter() - self.start - self.seconds:.0f} s training)",
                 flush=True)


class _AugmentedImages(Dataset):
    """Flat training images, reshuffled every epoch, each batch shifted and rotated afresh
    (gpudl.augment) and given as both input and target: an auto-encoder must rebuild the
    moved image it was shown, so fit's ``augment=`` (which moves the inputs alone) does not
    fit here. A batch is a pure function of (seed, epoch, index), so read-ahead threads and
    reruns see the same images."""

    def __init__(self, x, batch_size, side, max_shift, max_rotation, seed, shape):
        super().__init__()
        from .augment import RandomShiftRotate
        self.x, self.batch_size, self.seed, self.shape = x, batch_size, seed, shape
        self.aug = RandomShiftRotate(max_shift, max_rotation, image_shape=(side, side))
        self.epoch, self._order = 0, None

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def _rows(self, i):
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng((self.seed, self.epoch)).permutation(len(self.x)))
        return self._order[1][i * self.batch_size:(i + 1) * self.batch_size]

    def __getitem__(self, i):
        xb = self.aug(self.x[self._rows(i)], np.random.default_rng((self.seed, self.epoch, i)))
        return self.shape(xb), self.shape(xb)

    def on_epoch_end(self):
        self.epoch += 1


def _autoencoder_figure(path, x, recon, codes, labels, title):
    from .plots import _pyplot, save_figure
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
    save_figure(fig, path, tight=False)


@demo("autoencoder", "Deep auto-encoder vs PCA at the same code size (squared error per image)")
def autoencoder(dataset="mnist", data_dir=None, kind="deep", code_size=30, hidden=(1000, 500, 250),
                epochs=10, batch_size=128, learning_rate=1e-3, train_size=8000, limit=None, noise=0.3,
                seed=0, plot="autoencoder.png", augment=False, max_shift=1, max_rotation=8.0,
                weight_decay=0.0, dropout=0.0, lr_schedule="constant", validation=0, patience=10,
                verbose=True):
    """Train ``kind`` ("deep", "denoising" or "conv") end to end with Adam on binary cross
    entropy, fit PCA with ``code_size`` components on the same training images, and compare
    their held-out reconstruction errors (squared error summed over pixels, mean per image).
    ``dataset``: "mnist" (full MNIST where found, else its 10k test images split
    ``train_size`` / rest), "mnist-10k", "fashion-mnist" or "digits".

    Against overfitting a small training set: ``augment`` shows every training image shifted
    by up to ``max_shift`` pixels and turned by up to ``max_rotation`` degrees, drawn afresh
    each epoch, and asks for that moved image back (the held-out images are never moved);
    ``weight_decay`` is Adam's decoupled decay (``w -= lr * weight_decay * w`` a step);
    ``dropout`` a Dropout after each hidden layer of "deep" and "denoising" (on MNIST it
    raised the held-out error: the noise it adds costs detail the decoder needs);
    ``lr_schedule`` "cosine" takes the rate from ``learning_rate`` down to 0 over the epochs.
    On MNIST's 8,000 / 2,000 split ``augment`` with "cosine" (150 epochs, batch 64) brings the
    deep auto-encoder under a third of PCA's error; benchmarks/RESULTS.md has the runs.
    ``validation`` > 0 keeps that many of the training images (the last ones) out of the
    auto-encoder's training (PCA still fits them all), stops when their loss has not improved
    for ``patience`` epochs and puts back the best epoch's weights: the held-out images never
    choose the epoch."""
    from . import generative, recipes
    from .callbacks import EarlyStopping
    say = print if verbose else (lambda *a, **k: None)
    _check_autoencoder_options(augment, max_shift, max_rotation, weight_decay, dropout, lr_schedule,
                               validation, patience)
    (xtr, ytr), (xte, yte) = _images(dataset, data_dir, train_size, limit)
    if validation >= len(xtr):
        raise ValueError(f"autoencoder expected validation < the {len(xtr)} training images, got {validation}")
    # PCA, which has nothing to stop early, is fitted on every training image, validation ones too
    x_pca, xval = xtr, (xtr[len(xtr) - validation:] if validation else None)
    xtr = xtr[:len(xtr) - validation]
    say(f"{dataset}: {len(xtr)} training images{f', {validation} for validation' if validation else ''}, "
        f"{len(xte)} held out, {xtr.shape[1]} pixels")
    grandom.set_seed(seed)
    side = _side(xtr.shape[1])
    if augment and side is None:
        raise ValueError(f"autoencoder augment expected square images, got {xtr.shape[1]} pixels")
    if kind == "conv":
        if side is None or side % 4:
            raise ValueError(f"autoencoder kind 'conv' expected square images with a side divisible by 4, "
                             f"got {xtr.shape[1]} pixels")
        if dropout:
            raise ValueError(f"autoencoder dropout applies to kind 'deep' or 'denoising', got kind 'conv' "
                             f"with dropout {dropout!r}")
        model = recipes.conv_autoencoder(code_size, input_shape=(1, side, side))
        shape = (lambda a: a.reshape(len(a), 1, side, side))
    elif kind in ("deep", "denoising"):
        model = recipes.deep_autoencoder(code_size, xtr.shape[1], tuple(hidden),
                                         noise_stddev=noise if kind == "denoising" else None, dropout=dropout)
        shape = (lambda a: a)
    else:
        raise ValueError(f"autoencoder expected kind 'deep', 'denoising' or 'conv', got {kind!r}")
    steps = -(-len(xtr) // batch_size)
    rate = (optimizers.schedules.CosineDecay(learning_rate, epochs * steps) if lr_schedule == "cosine"
            else learning_rate)
    model.compile(optimizers.Adam(rate, weight_decay=weight_decay or None), "binary_crossentropy")
    t0 = time.perf_counter()
    curve = _HeldOutError(shape(xte), xte, say)
    callbacks, stop = [curve], None
    if validation:
        stop = EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
        callbacks.append(stop)
    fit_kw = {"validation_data": (shape(xval), shape(xval))} if validation else {}
    if augment:
        data = _AugmentedImages(xtr, batch_size, side, max_shift, max_rotation, seed, shape)
        hist = model.fit(data, epochs=epochs, verbose=0, seed=seed, callbacks=callbacks, **fit_kw)
    else:
        hist = model.fit(shape(xtr), shape(xtr), batch_size=batch_size, epochs=epochs, verbose=0, seed=seed,
                         callbacks=callbacks, **fit_kw)
    train_s = time.perf_counter() - t0 - curve.seconds
    trained = len(hist.history["loss"])
    recon = model.predict(shape(xte), batch_size=500).reshape(len(xte), -1)
    codes = model.get_layer("encoder").predict(shape(xte), batch_size=500)
    mean, comps = generative.pca_fit(x_pca, code_size)
    _, pca_recon = generative.pca_reconstruct(xte, mean, comps)
    ae_err = generative.reconstruction_error(xte, recon)
    pca_err = generative.reconstruction_error(xte, pca_recon)
    out = {"autoencoder_error": ae_err, "pca_error": pca_err, "ratio": ae_err / pca_err, "epochs": trained,
           "train_seconds": train_s, "loss": hist.history["loss"], "held_out_by_epoch": curve.errors}
    if stop is not None:
        out["best_epoch"] = (stop.best_epoch + 1) if stop.best_epoch is not None else trained
        out["val_loss"] = hist.history["val_loss"]
    label = f"{kind} auto-encoder ({trained} epochs"
    label += f", weights of epoch {out['best_epoch']} by validation loss" if stop is not None else ""
    if verbose:
        _table(["model", f"held-out squared error per image (code {code_size})"],
               [[f"{label}, {train_s:.0f} s)", f"{ae_err:.2f}"], [f"PCA-{code_size}", f"{pca_err:.2f}"]])
    say(f"auto-encoder / PCA = {out['ratio']:.3f} (Hinton and Salakhutdinov 2006, MNIST: 3.00 / 13.87 = 0.216)")
    if plot and side is not None:
        _autoencoder_figure(plot, xte, recon, np.asarray(codes), yte,
                            f"{kind} auto-encoder on {dataset}: held-out error {ae_err:.2f} vs PCA {pca_err:.2f}")
        say(f"wrote {plot}")
    return out


def _check_autoencoder_options(augment, max_shift, max_rotation, weight_decay, dropout, lr_schedule,
                               validation, patience):
    """The auto-encoder demo's training options, refused at once with what was expected."""
    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)

    def count(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0

    if not isinstance(augment, bool):
        raise ValueError(f"autoencoder expected augment True or False, got {augment!r}")
    if not count(max_shift):
        raise ValueError(f"autoencoder expected max_shift a whole number of pixels >= 0, got {max_shift!r}")
    if not number(max_rotation) or max_rotation < 0:
        raise ValueError(f"autoencoder expected max_rotation a number of degrees >= 0, got {max_rotation!r}")
    if not number(weight_decay) or weight_decay < 0:
        raise ValueError(f"autoencoder expected weight_decay a number >= 0, got {weight_decay!r}")
    if not number(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"autoencoder expected dropout in [0, 1), got {dropout!r}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"autoencoder expected lr_schedule 'constant' or 'cosine', got {lr_schedule!r}")
    if not count(validation):
        raise ValueError(f"autoencoder expected validation a number of training images >= 0, got {validation!r}")
    if not count(patience):
        raise ValueError(f"autoencoder expected patience a number of epochs >= 0, got {patience!r}")


def _vae_figure(path, samples, walk, side, title):
    from .plots import _pyplot, save_figure
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
    save_figure(fig, path, tight=False)


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


# ---- Lecture III: word embeddings ----------------------------------------------------------------

_W2V_INSTALL = "pip install 'gpudl[embeddings]' (gensim: its test data holds the corpus and the evaluation sets)"


def _w2v_scores(wv, datapath):
    """WordSim-353 and SimLex-999 Spearman, analogy accuracy and its question count (questions
    whose four words are in the vocabulary); a Spearman is NaN where no pair is covered."""
    out = {}
    for key, name in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        try:
            out[key] = wv.evaluate_word_pairs(datapath(name))[1][0]
        except ValueError:  # no pair of known words in a tiny vocabulary
            out[key] = float("nan")
    score, sections = wv.evaluate_word_analogies(datapath("questions-words.txt"))
    out["analogy"] = score
    out["analogy_questions"] = len(sections[-1]["correct"]) + len(sections[-1]["incorrect"])
    return out


@demo("word2vec", "Word2vec with negative sampling: gpudl beside gensim on one corpus "
                  "(WordSim-353, SimLex-999, analogies, words/s)")
def word2vec_demo(corpus=None, vector_size=100, window=5, min_count=5, sg=1, negative=5, epochs=5,
                  sample=1e-3, alpha=0.025, workers=1, seed=0, limit=None, gensim=True, verbose=True):
    """Train gpudl's Word2Vec and, with ``gensim``, gensim's on the same sentences with the same
    hyperparameters and threads; print both models' WordSim-353 and SimLex-999 Spearman, analogy
    accuracy on questions-words.txt (questions within the vocabulary) and training words/s,
    beside the untrained vectors' scores. ``corpus``: a file of one sentence a line (default
    gensim's head500.noblanks.cor); ``limit``: its first ``limit`` lines."""
    say = print if verbose else (lambda *a, **k: None)
    try:
        from gensim.test.utils import datapath
    except ImportError:
        say(f"the word2vec demo needs gensim: {_W2V_INSTALL}")
        return 1
    from .word2vec import Word2Vec
    path = corpus or datapath("head500.noblanks.cor")
    with open(path, encoding="utf8") as fin:
        sentences = [line.split() for n, line in enumerate(fin) if limit is None or n < limit]
    settings = dict(vector_size=vector_size, window=window, min_count=min_count, sg=sg,
                    negative=negative, epochs=epochs, sample=sample, alpha=alpha, workers=workers,
                    seed=seed)
    words = sum(len(s) for s in sentences)
    model = Word2Vec(**settings)
    model.build_vocab(sentences)
    say(f"{path}: {len(sentences)} sentences, {words} words, vocabulary {len(model.wv)} "
        f"(min_count={min_count}); {'skip-gram' if sg else 'CBOW'}, {vector_size} dims, window "
        f"{window}, {negative} negatives, {epochs} epochs, {workers} worker thread(s) each")
    out = {"corpus": path, "sentences": len(sentences), "words": words, "vocab": len(model.wv),
           "untrained": _w2v_scores(model.wv, datapath)}
    model.train()
    out["gpudl"] = {**_w2v_scores(model.wv, datapath), "words_per_second": model.words_per_second,
                    "seconds": model.train_seconds}
    rows = []
    if gensim:
        import gensim as gensim_pkg
        from gensim.models import Word2Vec as GensimWord2Vec
        peer = GensimWord2Vec(**settings)
        peer.build_vocab(sentences)
        t0 = time.perf_counter()
        peer.train(sentences, total_examples=peer.corpus_count, epochs=peer.epochs)
        seconds = time.perf_counter() - t0
        out["gensim"] = {**_w2v_scores(peer.wv, datapath), "seconds": seconds,
                         "words_per_second": peer.corpus_total_words * epochs / seconds}
        out["gensim_version"] = gensim_pkg.__version__
    if verbose:
        named = [("gpudl", out["gpudl"])]
        if "gensim" in out:
            named.append((f"gensim {out['gensim_version']}", out["gensim"]))
        named.append(("untrained vectors", out["untrained"]))
        for name, r in named:
            speed = f"{r['words_per_second']:,.0f}" if "words_per_second" in r else "-"
            rows.append([name, f"{r['wordsim353']:.3f}", f"{r['simlex999']:.3f}",
                         f"{100 * r['analogy']:.1f} % of {r['analogy_questions']}", speed])
        _table(["model", "WordSim-353 rho", "SimLex-999 rho", "analogies", "train words/s"], rows)
    if "gensim" in out:
        say(f"gpudl - gensim: WordSim-353 {out['gpudl']['wordsim353'] - out['gensim']['wordsim353']:+.3f}, "
            f"words/s x{out['gpudl']['words_per_second'] / out['gensim']['words_per_second']:.2f}")
    else:
        say("gensim not trained (--no-gensim)")
    return out


# ---- Lecture III: reinforcement learning ----------------------------------------------------------

@demo("policy-gradient", "Policy gradient on CartPole-v1 until solved (average return >= 475 over 100 episodes)")
def policy_gradient(episodes=1000, seed=0, algorithm="reinforce", plot="policy_gradient.png"):
    """REINFORCE with a learned baseline (or ``algorithm="actor-critic"``) on gymnasium's
    CartPole-v1; the exit code says whether it was solved within ``episodes`` (0) or not (1)."""
    from .rl.demo import policy_gradient_demo
    return policy_gradient_demo(episodes=episodes, seed=seed, out=plot, algorithm=algorithm)


# ---- Lecture III: the generative adversarial network ---------------------------------------------

def _score_samples(classifier, images, classes=10):
    """How a digit classifier reads generated images: (count of each top class, mean top-class
    probability)."""
    probs = classifier.predict(images, batch_size=500)
    counts = np.bincount(probs.argmax(axis=1), minlength=classes)
    return counts, float(probs.max(axis=1).mean())


def _gan_figure(path, images, labels, confidences, side, title):
    from .plots import _pyplot, save_figure
    plt = _pyplot()
    rows = -(-len(images) // 10)
    fig, axes = plt.subplots(rows, 10, figsize=(10, 1.1 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i].reshape(side, side), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{labels[i]} ({confidences[i]:.2f})", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, tight=False)


@demo("gan", "Generative adversarial network (DCGAN): its digits as a CNN classifier reads them")
def gan_demo(dataset="mnist", data_dir=None, epochs=30, batch_size=32, latent_dim=100,
             generator_filters=(128, 64), discriminator_filters=(64, 128), classifier_epochs=3, samples=1000,
             train_size=8000, limit=None, seed=0, deterministic=False, plot="gan.png", verbose=True):
    """Train a CNN digit classifier (recipes.mnist_cnn) on the training images and report its
    held-out accuracy; train recipes.gan on the same images (Adam(2e-4, beta_1=0.5) for both
    models); draw ``samples`` images and report how many of the 10 classes the classifier finds
    among their top classes, the count of each, and their mean top-class probability (beside
    the untrained generator's). ``dataset``: "mnist" (full MNIST where found, else its 10k test
    images split ``train_size`` / rest), "mnist-10k", "fashion-mnist" or "digits" (8x8).
    ``deterministic``: gpudl.set_deterministic(True) for the run, so that the same seed repeats
    the same numbers in another process too (no timed choice of convolution algorithm; within
    one process the timed choice is made once per shape and kept)."""
    from . import backend
    old = backend.set_deterministic(True) if deterministic else None
    try:
        return _gan_demo(dataset, data_dir, epochs, batch_size, latent_dim, generator_filters, discriminator_filters,
                         classifier_epochs, samples, train_size, limit, seed, plot, verbose)
    finally:
        if deterministic:
            backend.set_deterministic(old)


def _gan_demo(dataset, data_dir, epochs, batch_size, latent_dim, generator_filters, discriminator_filters,
              classifier_epochs, samples, train_size, limit, seed, plot, verbose):
    from . import recipes
    say = print if verbose else (lambda *a, **k: None)
    (xtr, ytr), (xte, yte) = _images(dataset, data_dir, train_size, limit)
    side = _side(xtr.shape[1])
    if side is None:
        raise ValueError(f"gan demo expected square images, got {xtr.shape[1]} pixels")
    image_shape = (1, side, side)
    xtr, xte = xtr.reshape((-1,) + image_shape), xte.reshape((-1,) + image_shape)
    say(f"{dataset}: {len(xtr)} training images, {len(xte)} held out, {side}x{side}")

    grandom.set_seed(seed)
    classifier = recipes.mnist_cnn(image_shape)
    classifier.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
    t0 = time.perf_counter()
    classifier.fit(xtr, ytr, batch_size=128, epochs=classifier_epochs, verbose=0, seed=seed)
    classifier_s = time.perf_counter() - t0
    accuracy = classifier.evaluate(xte, yte, batch_size=500, return_dict=True)["accuracy"]
    real_counts, real_conf = _score_samples(classifier, xte)
    say(f"classifier (mnist_cnn, {classifier_epochs} epochs, {classifier_s:.0f} s): held-out accuracy {accuracy:.4f}")

    gan = recipes.gan(latent_dim, image_shape, tuple(generator_filters), tuple(discriminator_filters))
    gan.compile()
    untrained_counts, untrained_conf = _score_samples(classifier, gan.sample(samples))
    t0 = time.perf_counter()
    hist = gan.fit(xtr, epochs=epochs, batch_size=batch_size, verbose=verbose)
    train_s = time.perf_counter() - t0
    images = gan.sample(samples)
    counts, confidence = _score_samples(classifier, images)
    found = int((counts > 0).sum())
    out = {"classifier_accuracy": accuracy, "classes_found": found, "class_counts": counts.tolist(),
           "mean_confidence": confidence, "untrained_classes_found": int((untrained_counts > 0).sum()),
           "untrained_confidence": untrained_conf, "real_confidence": real_conf, "epochs": epochs,
           "train_seconds": train_s, "classifier_seconds": classifier_s, **hist.history}
    if verbose:
        _table(["digit"] + [str(c) for c in range(10)], [["samples"] + [str(int(c)) for c in counts]])
        _table(["images", "classes found", "mean top-class probability"],
               [[f"{len(xte)} held-out real images", str(int((real_counts > 0).sum())), f"{real_conf:.3f}"],
                [f"{samples} from the untrained generator", str(out["untrained_classes_found"]),
                 f"{untrained_conf:.3f}"],
                [f"{samples} after {epochs} epochs ({train_s:.0f} s)", str(found), f"{confidence:.3f}"]])
    say(f"the goal, at least 9 of the 10 classes and a mean confidence of 0.8 or more: "
        f"{'met' if found >= 9 and confidence >= 0.8 else 'not met'}")
    if plot:
        shown = images[:50]
        probs = classifier.predict(shown)
        _gan_figure(plot, shown, probs.argmax(axis=1), probs.max(axis=1), side,
                    f"GAN on {dataset} after {epochs} epochs: {found} classes among {samples} samples, mean "
                    f"confidence {confidence:.3f} (titles: the classifier's top class and its probability)")
        say(f"wrote {plot}")
    return out


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
