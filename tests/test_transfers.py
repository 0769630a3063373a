"""A training step on the GPU reads nothing back and copies nothing over: counted on the test device.

Runs only where ``import cupy`` finds gpudl's strict CuPy stand-in (tests/fakecupy, which
counts every device-to-host read and host-to-device copy) under Numba's simulator: ``make
test``'s gpu tier. Each test fits the same recipe on two dataset sizes and compares the
counts: whatever grows with the number of steps is a per-step transfer.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import gpudl
from gpudl import callbacks, recipes

_spec = importlib.util.find_spec("cupy")
TEST_DEVICE = _spec is not None and _spec.origin is not None and "fakecupy" in _spec.origin

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not TEST_DEVICE, reason="counts transfers on gpudl's CuPy stand-in "
                                               "(PYTHONPATH=tests/fakecupy, as make test's gpu tier sets)"),
]


def _data(n, shape, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape, dtype=np.float32), rng.integers(0, classes, n)


def _fit_counts(make, shape, n, batch_size, epochs=1, cbs=(), validation=None, metrics=("accuracy",)):
    import cupy
    gpudl.set_backend("cupy")
    gpudl.set_seed(0)
    model = make()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=list(metrics))
    x, y = _data(n, shape, 10)
    cupy.reset_transfers()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=list(cbs),
              validation_data=validation)
    return dict(cupy.transfers)


def _per_step(make, shape, batch_size, small_steps, large_steps, **kw):
    small = _fit_counts(make, shape, small_steps * batch_size, batch_size, **kw)
    large = _fit_counts(make, shape, large_steps * batch_size, batch_size, **kw)
    extra = large_steps - small_steps
    return small, {k: (large[k] - small[k]) / extra for k in small}


def _mlp():
    return recipes.hello_mlp(input_dim=12, hidden=8)


def _cnn():
    return recipes.mnist_cnn(input_shape=(1, 6, 6))


@pytest.mark.parametrize("make,shape,steps", [(_mlp, (12,), (2, 5)), (_cnn, (1, 6, 6), (1, 3))],
                         ids=["hello_mlp", "mnist_cnn"])
def test_no_transfer_per_training_step(make, shape, steps):
    total, per_step = _per_step(make, shape, 4, *steps)
    assert per_step == {"d2h": 0, "h2d": 0, "sync": 0}, (
        f"a training step of fit moved data between host and device: {per_step} per step")
    # what one fit of one epoch costs (the default progress interval is the epoch when stdout
    # is not a terminal): x and y go over once and the epoch's order once; the epoch's loss and
    # accuracy come back once (host data is validated on the host, before it moves)
    assert total["h2d"] == 3, total
    assert total["d2h"] == 2, total


def test_terminate_on_nan_reads_the_loss_once_per_step():
    _, per_step = _per_step(_mlp, (12,), 4, 2, 5, cbs=[callbacks.TerminateOnNaN()])
    assert per_step == {"d2h": 1, "h2d": 0, "sync": 0}, per_step


def test_evaluate_reads_nothing_per_batch():
    import cupy

    def run(n):
        gpudl.set_backend("cupy")
        gpudl.set_seed(0)
        model = _mlp()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "mse"])
        x, y = _data(n, (12,), 10, seed=1)
        x, y = cupy.asarray(x), cupy.asarray(y)
        cupy.reset_transfers()
        model.evaluate(x, y, batch_size=4)
        return dict(cupy.transfers)
    # 2 batches against 5: the label range check and the three sums are read once either way
    small, large = run(8), run(20)
    assert large == small, f"evaluate moved data per batch: {small} for 2 batches, {large} for 5"
    assert small["h2d"] == 0 and small["d2h"] == 6, small


def test_dropout_draws_no_device_generator():
    import cupy
    before = cupy.random.generators_created
    _fit_counts(_mlp, (12,), 16, 4)
    assert cupy.random.generators_created == before


def test_prelu_backward_keeps_its_shape_on_the_host():
    import cupy
    gpudl.set_backend("cupy")
    from gpudl import functional as F
    for alpha_shape in [(), (1,), (3,)]:
        x = gpudl.Tensor(np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4), requires_grad=True)
        alpha = gpudl.Tensor(np.full(alpha_shape, 0.25, dtype=np.float32), requires_grad=True)
        y = F.prelu(x, alpha).sum()
        cupy.reset_transfers()
        y.backward()
        assert cupy.transfers == {"d2h": 0, "h2d": 0, "sync": 0}, (alpha_shape, cupy.transfers)
        assert alpha.grad.shape == alpha_shape
