"""PyTorch twins of gpudl's recipes, and one loop that trains them: what the examples and
benchmarks time gpudl against, with the same model, optimiser (Adam, Keras' epsilon),
batch size and data, in the same process, on the same device as gpudl's backend.

PyTorch is optional: it is imported when a twin is first built, with an error that says
how to install it when it is absent. Nothing here runs at import.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from . import backend
from .callbacks import Callback

__all__ = ["import_torch", "torch_device", "torch_twin", "copy_twin_weights", "TorchTrainer", "EpochTimer", "fit_beside", "example_parser",
           "parse_example_args", "TWINS", "TorchVAETrainer"]

#: recipes with a PyTorch twin (gpudl.recipes names)
TWINS = ("hello_mlp", "mnist_cnn", "rnn_rows", "vae")

#: gpudl.recipes.RNN_CELLS' cells, as PyTorch's modules (PyTorch's GRU is gpudl's reset_after GRU)
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU", "simple": "RNN"}


def import_torch():
    """The torch module, or ImportError saying how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError("comparing against PyTorch needs torch installed (pip install torch); "
                          f"importing it failed: {exc}") from exc
    return torch


def torch_device() -> str:
    """Where the peer runs: ``"cuda"`` when gpudl's backend is CuPy, else ``"cpu"``."""
    return "cuda" if backend.get_backend() == "cupy" else "cpu"


def torch_twin(recipe: str, seed=0, **kwargs):
    """The ``torch.nn.Module`` of ``gpudl.recipes.<recipe>(**kwargs)``: the same layers, with
    logits out (PyTorch's cross_entropy applies the softmax gpudl's last layer has), its
    initial weights drawn by PyTorch's own initialisers after ``torch.manual_seed(seed)``."""
    if recipe not in TWINS:
        raise ValueError(f"torch_twin: expected recipe in {', '.join(map(repr, TWINS))}, got {recipe!r}")
    torch = import_torch()
    torch.manual_seed(seed)
    return globals()[f"_{recipe}"](torch, **kwargs)


def _hello_mlp(torch, input_dim=784, hidden=500, classes=10, dropout=0.2, activation="relu"):
    nn = torch.nn
    act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[activation]
    return nn.Sequential(nn.Linear(input_dim, hidden), act(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), act(), nn.Dropout(dropout), nn.Linear(hidden, classes))


def _mnist_cnn(torch, input_shape=(1, 28, 28), classes=10, batchnorm=False):
    nn = torch.nn
    c, h, w = input_shape
    flat = 64 * ((h - 4) // 2) * ((w - 4) // 2)  # two valid 3x3 convolutions, then a 2x2 pool

    def block(c_in, c_out):
        # Keras' BatchNormalization(momentum=0.99, epsilon=1e-3): PyTorch's momentum is 1 - m
        conv, relu = nn.Conv2d(c_in, c_out, 3), nn.ReLU()
        if not batchnorm:
            return [conv, relu]
        norm = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)
        return [conv, relu, norm] if batchnorm == "post" else [conv, norm, relu]
    return nn.Sequential(*block(c, 32), *block(32, 64), nn.MaxPool2d(2),
                         nn.Dropout(0.25), nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(128, classes))


def _rnn_rows(torch, cell="lstm", rows=28, cols=28, units=128, classes=10):
    if cell not in TORCH_CELLS:
        raise ValueError(f"torch_twin: expected cell in {', '.join(map(repr, TORCH_CELLS))}, got {cell!r}")

    class RowReader(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, TORCH_CELLS[cell])(cols, units, batch_first=True)
            self.out = torch.nn.Linear(units, classes)

        def forward(self, x):
            return self.out(self.rnn(x)[0][:, -1])  # many-to-one: the last step's state
    return RowReader()


def _vae(torch, latent_dim=20, input_dim=784, hidden=400, name=None):
    """PyTorch's examples/vae model: fc1 (ReLU) -> fc21 (mean), fc22 (log-variance); z by the
    reparameterisation (sampled in train and eval mode alike); fc3 (ReLU) -> fc4 sigmoid.
    ``forward`` returns (reconstruction, mean, log_var)."""
    nn = torch.nn

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(input_dim, hidden)
            self.fc21 = nn.Linear(hidden, latent_dim)
            self.fc22 = nn.Linear(hidden, latent_dim)
            self.fc3 = nn.Linear(latent_dim, hidden)
            self.fc4 = nn.Linear(hidden, input_dim)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            return torch.sigmoid(self.fc4(torch.relu(self.fc3(z)))), mu, logvar
    return VAE()


def _twin_arrays(module):
    """A torch module's parameters in gpudl's layout and order (Linear's weight transposed to
    (in, out); BatchNorm's running statistics after gamma and beta)."""
    name = type(module).__name__
    if name == "Linear":
        out = [module.weight.detach().T]
    elif name in ("Conv1d", "Conv2d", "ConvTranspose2d"):
        out = [module.weight.detach()]
    elif name.startswith("BatchNorm"):
        return [t.detach().cpu().numpy() for t in (module.weight, module.bias, module.running_mean, module.running_var)]
    else:
        return None
    if module.bias is not None:
        out.append(module.bias.detach())
    return [t.cpu().numpy() for t in out]


def copy_twin_weights(twin, model) -> None:
    """Start the built gpudl ``model`` from the twin's current weights (a ``torch_twin`` of the
    same recipe: Linear, Conv and BatchNorm modules in the same order as gpudl's layers with
    parameters), so the two runs differ only in their random draws (shuffle, dropout)."""
    theirs = [a for m in twin.modules() if (a := _twin_arrays(m)) is not None]
    ours = _weighted_layers(model)
    if len(theirs) != len(ours):
        raise ValueError(f"copy_twin_weights: the twin has {len(theirs)} layers with weights, the gpudl "
                         f"model {len(ours)}: expected the same recipe")
    for layer, arrays in zip(ours, theirs):
        shapes = [tuple(p.shape) for p in layer.params()]
        if shapes != [a.shape for a in arrays]:
            raise ValueError(f"copy_twin_weights: {layer.describe()} expected weights of shapes {shapes}, "
                             f"the twin has {[a.shape for a in arrays]}")
        layer.set_weights(arrays)


def _weighted_layers(model):
    """The layers with parameters, in order, looking inside nested models (a VAE's encoder
    and decoder)."""
    out = []
    for layer in model.layers:
        if getattr(layer, "layers", None) is not None and hasattr(layer, "inputs"):
            out.extend(_weighted_layers(layer))
        elif layer.params():
            out.append(layer)
    return out


def _say(line):
    print(line, flush=True)


class TorchTrainer:
    """Trains a twin the way gpudl's ``fit`` trains its model: Adam (Keras' epsilon 1e-7),
    a fresh shuffle each epoch, the last batch smaller, cross-entropy on integer labels
    ``y`` (N,). The data moves to ``device`` once."""

    def __init__(self, model, x, y, batch_size, learning_rate=1e-3, device=None, seed=0):
        torch = self.torch = import_torch()
        self.device = device or torch_device()
        if len(x) != len(y):
            raise ValueError(f"TorchTrainer: x and y must have the same number of samples, got {len(x)} and {len(y)}")
        if getattr(y, "ndim", None) != 1 or y.dtype.kind not in "iu":
            raise ValueError("TorchTrainer: y must be integer class labels of shape (N,), got "
                             f"{getattr(y, 'dtype', type(y).__name__)} of shape {getattr(y, 'shape', None)}")
        self.model = model.to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate, eps=1e-7)
        self.x, self.y = self._tensor(x), self._tensor(y).long()
        self.batch_size = int(batch_size)
        self.gen = torch.Generator().manual_seed(seed)

    def _tensor(self, a):
        return self.torch.as_tensor(np.ascontiguousarray(backend.to_numpy(a)), device=self.device)

    def _sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def epoch(self, lo=0, hi=None) -> float:
        """One training epoch (or, with ``lo``/``hi``, one pass over samples [lo, hi), shuffled);
        its wall time in seconds, the device synchronised."""
        torch, F = self.torch, self.torch.nn.functional
        hi = len(self.x) if hi is None else hi
        self._sync()
        t0 = time.perf_counter()
        self.model.train()
        order = (torch.randperm(hi - lo, generator=self.gen) + lo).to(self.device)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            self.opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(self.x[idx]), self.y[idx]).backward()
            self.opt.step()
        self._sync()
        return time.perf_counter() - t0

    def accuracy(self, x, y, batch_size=1000) -> float:
        """Test accuracy, in batches so a large test set fits."""
        torch = self.torch
        self.model.eval()
        tx, ty = self._tensor(x), self._tensor(y).long()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(tx), batch_size):
                correct += int((self.model(tx[s:s + batch_size]).argmax(1) == ty[s:s + batch_size]).sum())
        return correct / len(tx)


class TorchVAETrainer:
    """Trains the ``torch_twin("vae")`` as gpudl trains ``recipes.vae``: Adam (Keras'
    epsilon), a fresh shuffle each epoch, loss = binary cross entropy summed over pixels + KL,
    averaged over the batch (nats per image; PyTorch's example sums over the batch instead,
    the same gradient direction at another scale)."""

    def __init__(self, model, x, batch_size=128, learning_rate=1e-3, device=None, seed=0):
        torch = self.torch = import_torch()
        self.device = device or torch_device()
        self.model = model.to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=learning_rate, eps=1e-7)
        self.x = self._tensor(x)
        self.batch_size = int(batch_size)
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)

    def _tensor(self, a):
        return self.torch.as_tensor(np.ascontiguousarray(backend.to_numpy(a)), device=self.device)

    def _loss(self, x):
        """Summed (over the batch) loss of a batch, in nats."""
        F = self.torch.nn.functional
        recon, mu, logvar = self.model(x)
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        kld = -0.5 * self.torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    def epoch(self) -> float:
        """One training epoch; the mean training loss per image over it."""
        torch = self.torch
        self.model.train()
        order = torch.randperm(len(self.x), generator=self.gen).to(self.device)
        total = 0.0
        for s in range(0, len(order), self.batch_size):
            xb = self.x[order[s:s + self.batch_size]]
            self.opt.zero_grad(set_to_none=True)
            loss = self._loss(xb)
            (loss / len(xb)).backward()
            self.opt.step()
            total += float(loss.detach())
        return total / len(self.x)

    def evaluate(self, x, batch_size=500) -> float:
        """The loss in nats per image on ``x`` (one sample of z per image, as in training)."""
        torch = self.torch
        self.model.eval()
        tx = self._tensor(x)
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(tx), batch_size):
                total += float(self._loss(tx[s:s + batch_size]))
        return total / len(tx)


class EpochTimer(Callback):
    """Times each of gpudl's epochs (device-synchronised) and prints it beside the epoch's
    scores; with ``peer`` (a TorchTrainer) trains and times one PyTorch epoch after each,
    outside gpudl's time, so both meet the same machine load."""

    def __init__(self, peer=None, out=None):
        self.peer = peer
        self.out = out or _say
        self.times, self.peer_times = [], []

    def on_epoch_begin(self, epoch, logs=None):
        backend.synchronize()
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        backend.synchronize()
        self.times.append(time.perf_counter() - self.start)
        scores = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        line = f"epoch {epoch + 1}: {self.times[-1]:6.2f} s  {scores}"
        if self.peer is not None:
            self.peer_times.append(self.peer.epoch())
            line += f"  | PyTorch epoch {self.peer_times[-1]:6.2f} s"
        self.out(line)

    def summary(self) -> dict:
        """Median epoch times and, with a peer, their ratio gpudl / PyTorch."""
        import statistics
        if not self.times:
            raise ValueError("EpochTimer.summary: no epoch has been timed yet")
        res = {"gpudl_epoch_s": statistics.median(self.times)}
        if self.peer_times:
            res["torch_epoch_s"] = statistics.median(self.peer_times)
            res["ratio"] = res["gpudl_epoch_s"] / res["torch_epoch_s"]
        return res


def fit_beside(model, data, twin=None, *, epochs, batch_size, learning_rate=1e-3, seed=0, out=None):
    """Train the compiled gpudl ``model`` on ``data`` = (x_train, y_train, x_test, y_test),
    printing each epoch; with ``twin`` (a ``torch_twin``), train it one epoch after each of
    gpudl's on the same device, and report both test accuracies and the median epoch ratio.

    On the CuPy backend the training data moves to the GPU once, as the twin's does.
    Returns the test scores with the EpochTimer's summary (and ``torch_accuracy``)."""
    say = out or _say
    x_train, y_train, x_test, y_test = data
    peer = None
    if twin is not None:
        peer = TorchTrainer(twin, x_train, y_train, batch_size, learning_rate, seed=seed)
        say(f"peer: PyTorch {peer.torch.__version__} on {peer.device}")
    if backend.get_backend() == "cupy":
        x_train, y_train = backend.to_backend(x_train), backend.to_backend(y_train)
    timer = EpochTimer(peer, out=say)
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True,
              callbacks=[timer], verbose=0, seed=seed)
    scores = model.evaluate(x_test, y_test, batch_size=500, return_dict=True)
    say(f"test accuracy: {scores['accuracy']:.4f}  (test loss {scores['loss']:.4f})")
    summary = timer.summary()
    if peer is None:
        say(f"median epoch: {summary['gpudl_epoch_s']:.2f} s")
    else:
        scores["torch_accuracy"] = peer.accuracy(x_test, y_test)
        say(f"PyTorch test accuracy: {scores['torch_accuracy']:.4f}")
        say(f"median epoch: gpudl {summary['gpudl_epoch_s']:.2f} s, PyTorch {summary['torch_epoch_s']:.2f} s, "
            f"ratio {summary['ratio']:.2f}")
    scores.update(summary)
    return scores


def example_parser(description: str, epochs: int) -> argparse.ArgumentParser:
    """The options every example that trains a recipe beside PyTorch takes (dataset, data
    folder, epochs, batch size, learning rate, a quick --limit, backend, seed, --torch);
    an example adds its own, then calls ``parse_example_args``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dataset", choices=["fashion-mnist", "mnist"], default="fashion-mnist")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's IDX files")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N images and test on the first N/5 (a quick run)")
    p.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch", action="store_true",
                   help="after each gpudl epoch, train the same model one epoch in PyTorch on the "
                        "same device (timed apart) and compare epoch times and test accuracy")
    return p


def parse_example_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with the shared options' ranges checked (exit 2 if not)."""
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 10):
        parser.error("--epochs and --batch-size must be positive and --limit at least 10")
    return args
