"""gpudl.peers: the recipes' PyTorch twins, their trainer, and the epoch timer the examples and
benchmarks compare with. The parts that need PyTorch skip without it."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import gpudl
from gpudl import optimizers, peers, recipes

ROOT = Path(__file__).resolve().parents[1]


def _digits(n_train=600, n_test=200):
    (xtr, ytr), (xte, yte) = recipes.load_dataset("digits", "flat")
    return xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test]


def _compiled_mlp(hidden=32):
    model = recipes.hello_mlp(input_dim=64, hidden=hidden)
    model.compile(optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
    return model


class _FakePeer:
    """Stands in for a TorchTrainer: counts its epochs, says each took 0.5 s."""

    def __init__(self):
        self.epochs = 0

    def epoch(self):
        self.epochs += 1
        return 0.5


def test_epoch_timer_times_each_epoch_and_runs_the_peer_after_it():
    lines, peer = [], _FakePeer()
    timer = peers.EpochTimer(peer, out=lines.append)
    x, y, _, _ = _digits(200)
    _compiled_mlp().fit(x, y, batch_size=50, epochs=3, verbose=0, callbacks=[timer], seed=0)
    assert peer.epochs == 3 and len(timer.times) == 3 and all(t > 0 for t in timer.times)
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "epoch 3"]
    assert all("loss" in line and "| PyTorch epoch   0.50 s" in line for line in lines)
    s = timer.summary()
    assert s["torch_epoch_s"] == 0.5
    assert s["ratio"] == pytest.approx(s["gpudl_epoch_s"] / 0.5)


def test_epoch_timer_summary_needs_an_epoch():
    with pytest.raises(ValueError, match="no epoch has been timed yet"):
        peers.EpochTimer(out=lambda line: None).summary()


def test_fit_beside_without_a_twin_trains_and_reports(capsys):
    gpudl.set_seed(0)
    scores = peers.fit_beside(_compiled_mlp(), _digits(), epochs=4, batch_size=32)
    out = capsys.readouterr().out
    assert "epoch 4:" in out and "test accuracy" in out and "median epoch:" in out
    assert "PyTorch" not in out and "ratio" not in scores
    assert 0.5 < scores["accuracy"] <= 1.0, "4 epochs of the digits MLP should learn"
    assert scores["gpudl_epoch_s"] > 0


def test_import_torch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install torch"):
        peers.import_torch()
    with pytest.raises(ImportError, match=r"pip install torch"):
        peers.torch_twin("mnist_cnn")


def test_torch_twin_rejects_unknown_recipes_before_importing_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match=r"expected recipe in 'hello_mlp', 'mnist_cnn', 'rnn_rows', 'vae', got 'resnet'"):
        peers.torch_twin("resnet")


def test_torch_device_follows_the_backend():
    gpudl.set_backend("numpy")
    assert peers.torch_device() == "cpu"


# ---- with PyTorch ----------------------------------------------------------------------

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("recipe, kwargs, x_shape", [
    ("hello_mlp", {"input_dim": 64, "hidden": 40}, (5, 64)),
    ("mnist_cnn", {}, (5, 1, 28, 28)),
    ("mnist_cnn", {"input_shape": (3, 20, 18), "classes": 4}, (5, 3, 20, 18)),
    ("rnn_rows", {"cell": "lstm"}, (5, 28, 28)),
    ("rnn_rows", {"cell": "gru", "units": 16}, (5, 28, 28)),
    ("rnn_rows", {"cell": "simple", "rows": 7, "cols": 9, "units": 12}, (5, 7, 9)),
])
def test_twin_matches_the_recipe_in_parameters_and_output(torch, recipe, kwargs, x_shape):
    """Same number of weights as gpudl's recipe (PyTorch's RNNs carry a second bias vector,
    which gpudl's Keras-layout cells fold into one), same output shape."""
    model = getattr(recipes, recipe)(**kwargs)
    twin = peers.torch_twin(recipe, **kwargs)
    n_twin = sum(p.numel() for p in twin.parameters())
    extra = sum(p.numel() for n, p in twin.named_parameters() if n.startswith("rnn.bias_hh"))
    if recipe == "rnn_rows" and kwargs["cell"] == "gru":
        # Keras' reset_after GRU keeps both biases too: (2, 3 * units)
        extra = 0
    x = np.random.default_rng(0).random(x_shape, dtype=np.float32)
    assert tuple(twin(torch.from_numpy(x)).shape) == tuple(model.predict(x).shape)
    assert n_twin - extra == model.count_params()


def test_twin_is_seeded(torch):
    a, b = peers.torch_twin("hello_mlp", seed=3), peers.torch_twin("hello_mlp", seed=3)
    c = peers.torch_twin("hello_mlp", seed=4)
    wa, wb, wc = (next(m.parameters()).detach().numpy() for m in (a, b, c))
    assert np.array_equal(wa, wb) and not np.array_equal(wa, wc)


def test_torch_trainer_learns_and_scores(torch):
    xtr, ytr, xte, yte = _digits()
    trainer = peers.TorchTrainer(peers.torch_twin("hello_mlp", input_dim=64, hidden=64), xtr, ytr, batch_size=32)
    assert trainer.device == "cpu"
    before = trainer.accuracy(xte, yte)
    times = [trainer.epoch() for _ in range(5)]
    after = trainer.accuracy(xte, yte, batch_size=7)  # batches that do not divide the set
    assert all(t > 0 for t in times)
    assert after > max(before, 0.6), f"5 epochs should learn the digits: {before:.3f} -> {after:.3f}"
    logits = trainer.model(torch.from_numpy(xte)).argmax(1).numpy()
    assert after == pytest.approx(float(np.mean(logits == yte)))


def test_torch_trainer_rejects_mismatched_data(torch):
    twin, x = peers.torch_twin("hello_mlp", input_dim=4), np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="same number of samples, got 10 and 9"):
        peers.TorchTrainer(twin, x, np.zeros(9, np.int64), batch_size=4)
    with pytest.raises(ValueError, match=r"integer class labels of shape \(N,\), got float32 of shape \(10, 10\)"):
        peers.TorchTrainer(twin, x, np.eye(10, dtype=np.float32), batch_size=4)


def test_fit_beside_with_a_twin_reports_both(torch, capsys):
    gpudl.set_seed(0)
    twin = peers.torch_twin("hello_mlp", input_dim=64, hidden=32)
    scores = peers.fit_beside(_compiled_mlp(), _digits(), twin, epochs=3, batch_size=32, learning_rate=3e-3)
    out = capsys.readouterr().out
    assert "peer: PyTorch" in out and "PyTorch test accuracy" in out and "ratio" in out
    assert 0.5 < scores["torch_accuracy"] <= 1.0
    assert scores["ratio"] == pytest.approx(scores["gpudl_epoch_s"] / scores["torch_epoch_s"])


# ---- examples/mnist_cnn.py ---------------------------------------------------------------

def _example():
    spec = importlib.util.spec_from_file_location("mnist_cnn_example", ROOT / "examples" / "mnist_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cnn_example_learns_fashion_mnist(capsys):
    from gpudl.datasets import fashion_mnist
    try:
        fashion_mnist.load_data(download=False)
    except Exception as exc:  # no local copy: the example needs the real images
        pytest.skip(f"Fashion-MNIST not on this machine ({exc})")
    scores = _example().main(["--limit", "1000", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "1000 training and 200 test images of shape (1, 28, 28)" in out
    assert "epoch 1:" in out and "median epoch:" in out
    assert 0.3 < scores["accuracy"] <= 1.0, "one epoch on 1,000 images should beat chance (0.1)"


def test_cnn_example_checks_its_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        _example().parse_args(["--limit", "3"])
    assert exc.value.code == 2
    assert "--limit at least 10" in capsys.readouterr().err


def test_torch_trainer_trains_a_range_of_samples(torch):
    xtr, ytr, _, _ = _digits()
    trainer = peers.TorchTrainer(peers.torch_twin("hello_mlp", input_dim=64, hidden=8), xtr, ytr, batch_size=32)
    trainer.epoch(100, 170)  # 70 samples: batches of 32, 32 and 6
    steps = {int(st["step"]) for st in trainer.opt.state.values()}
    assert steps == {3}
    trainer.epoch()          # the whole 600: 19 more batches
    assert {int(st["step"]) for st in trainer.opt.state.values()} == {22}


@pytest.mark.parametrize("batchnorm, order", [
    ("pre", ["Conv2D", "BatchNormalization", "ReLU", "Conv2D", "BatchNormalization", "ReLU"]),
    ("post", ["Conv2D", "BatchNormalization", "Conv2D", "BatchNormalization"]),
])
def test_batchnorm_recipe_and_its_twin_put_the_normalisation_in_the_same_place(torch, batchnorm, order):
    model = recipes.mnist_cnn(batchnorm=batchnorm)
    model.build()
    assert [type(l).__name__ for l in model.layers[:len(order)]] == order
    twin = peers.torch_twin("mnist_cnn", batchnorm=batchnorm)
    names = [type(m).__name__ for m in twin][:7]
    bn_at = [i for i, n in enumerate(names) if n == "BatchNorm2d"]
    assert bn_at == ([1, 4] if batchnorm == "pre" else [2, 5])
    bn = twin[bn_at[0]]
    assert bn.momentum == pytest.approx(0.01) and bn.eps == pytest.approx(1e-3)  # Keras' 0.99 and 1e-3
    trainable = sum(int(p.size) for p in model.trainable_params())
    assert sum(p.numel() for p in twin.parameters()) == trainable
    with pytest.raises(ValueError, match="batchnorm"):
        recipes.mnist_cnn(batchnorm="middle")


@pytest.mark.parametrize("recipe, kwargs, x_shape", [
    ("hello_mlp", {"input_dim": 64, "hidden": 40}, (4, 64)),
    ("mnist_cnn", {"batchnorm": "pre"}, (4, 1, 28, 28)),
    ("mnist_cnn", {"batchnorm": "post"}, (4, 1, 28, 28)),
])
def test_copy_twin_weights_gives_the_twins_predictions(torch, recipe, kwargs, x_shape):
    model = getattr(recipes, recipe)(**kwargs)
    model.build()
    twin = peers.torch_twin(recipe, seed=5, **kwargs).eval()
    x = np.random.default_rng(1).random(x_shape, dtype=np.float32)
    with torch.no_grad():
        want = torch.softmax(twin(torch.from_numpy(x)), dim=-1).numpy()
    assert np.abs(model.predict(x) - want).max() > 1e-3  # different initialisers before the copy
    peers.copy_twin_weights(twin, model)
    np.testing.assert_allclose(model.predict(x), want, atol=1e-6)


def test_copy_twin_weights_refuses_another_recipe(torch):
    model = recipes.mnist_cnn()
    model.build()
    with pytest.raises(ValueError, match="the twin has 3 layers with weights, the gpudl model 4"):
        peers.copy_twin_weights(peers.torch_twin("hello_mlp"), model)
