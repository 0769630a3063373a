"""``gpudl bench``: gpudl's ops against PyTorch on the active backend, one process.

Each case first checks that both give the same answer, then warms up and takes the median
of several timed runs (device-synchronised on the GPU). The table is printed last.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from . import backend
from . import functional as F
from .autograd import Tensor


def _time(fn, repeats, sync=backend.synchronize, warmup=2):
    """Median wall time of ``fn``, each call waited for with ``sync`` (the GPU queues work)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cases(quick, on_gpu):
    """(name, shape text, setup) where setup returns (gpudl_fn, torch_fn or None, check)."""
    big = 1 << (28 if on_gpu else (20 if quick else 22))
    n_ce, c_ce = (65536, 1000) if on_gpu else ((2048, 1000) if quick else (8192, 1000))
    n_conv = 128 if on_gpu else (16 if quick else 128)
    n_rnn = 32 if quick else 128
    return [
        ("relu fwd", f"{big:,} floats", lambda t, dev: _relu(big, t, dev)),
        ("maxout k=4 fwd", f"{big:,} floats", lambda t, dev: _maxout(big, t, dev)),
        ("softmax-CE fwd+bwd", f"N={n_ce}, C={c_ce}", lambda t, dev: _softmax_ce(n_ce, c_ce, t, dev)),
        ("conv2d fwd+bwd", f"N={n_conv}, 32->64, 26x26 in, 3x3", lambda t, dev: _conv(n_conv, t, dev)),
        ("LSTM fwd+bwd", f"N={n_rnn}, 28 steps, 28->128", lambda t, dev: _lstm(n_rnn, t, dev)),
    ]


def _host(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _relu(n, torch, dev):
    x = Tensor(_host((n,), 0))
    g = lambda: F.relu(x)
    if torch is None:
        return g, None, None
    tx = torch.as_tensor(backend.to_numpy(x.data), device=dev)
    return g, lambda: torch.relu(tx), lambda: np.allclose(backend.to_numpy(g().data), torch.relu(tx).cpu().numpy())


def _maxout(n, torch, dev):
    x = Tensor(_host((n // 1024, 1024), 1))
    g = lambda: F.maxout(x, 4)
    if torch is None:
        return g, None, None
    tx = torch.as_tensor(backend.to_numpy(x.data), device=dev)
    tf = lambda: tx.view(tx.shape[0], 256, 4).amax(dim=2)
    return g, tf, lambda: np.array_equal(backend.to_numpy(g().data), tf().cpu().numpy())


def _softmax_ce(n, c, torch, dev):
    logits = _host((n, c), 2)
    labels = np.random.default_rng(3).integers(0, c, size=n)
    x = Tensor(logits, requires_grad=True)
    lab = backend.to_backend(labels)

    def g():
        x.grad = None
        loss = F.softmax_cross_entropy(x, lab)
        loss.backward()
        return loss
    if torch is None:
        return g, None, None
    tx = torch.tensor(logits, device=dev, requires_grad=True)
    tl = torch.as_tensor(labels, device=dev)

    def tf():
        tx.grad = None
        loss = torch.nn.functional.cross_entropy(tx, tl)
        loss.backward()
        return loss

    def check():
        a, b = g(), tf()
        return np.allclose(a.item(), b.item(), rtol=1e-4) and \
            np.allclose(backend.to_numpy(x.grad), tx.grad.cpu().numpy(), atol=1e-6)
    return g, tf, check


def _conv(n, torch, dev):
    xh, wh, bh = _host((n, 32, 28, 28), 4), _host((64, 32, 3, 3), 5) * 0.05, _host((64,), 6)
    x, w, b = Tensor(xh, requires_grad=True), Tensor(wh, requires_grad=True), Tensor(bh, requires_grad=True)

    def g():
        for t in (x, w, b):
            t.grad = None
        y = F.conv2d(x, w, b)
        y.backward(backend.get_xp().ones(y.shape, dtype=y.dtype))
        return y
    if torch is None:
        return g, None, None
    tx, tw, tb = (torch.tensor(a, device=dev, requires_grad=True) for a in (xh, wh, bh))

    def tf():
        for t in (tx, tw, tb):
            t.grad = None
        y = torch.nn.functional.conv2d(tx, tw, tb)
        y.backward(torch.ones_like(y))
        return y

    def check():
        a, ty = g(), tf()
        return np.allclose(backend.to_numpy(a.data), ty.detach().cpu().numpy(), rtol=1e-3, atol=1e-3) and \
            np.allclose(backend.to_numpy(w.grad), tw.grad.cpu().numpy(), rtol=1e-3, atol=1e-2)
    return g, tf, check


def _lstm(n, torch, dev):
    from . import layers
    xh = _host((n, 28, 28), 7) * 0.5
    lstm, x = layers.LSTM(128), Tensor(xh)
    lstm(x)  # builds the weights

    def g():
        for p in lstm.params():
            p.grad = None
        y = lstm(x)
        y.sum().backward()
        return y
    if torch is None:
        return g, None, None
    m = torch.nn.LSTM(28, 128, batch_first=True).to(dev)
    with torch.no_grad():  # the same weights: Keras' layout (in, 4n) is PyTorch's transposed
        m.weight_ih_l0.copy_(torch.as_tensor(backend.to_numpy(lstm.W.data).T.copy()))
        m.weight_hh_l0.copy_(torch.as_tensor(backend.to_numpy(lstm.U.data).T.copy()))
        m.bias_ih_l0.copy_(torch.as_tensor(backend.to_numpy(lstm.b.data)))
        m.bias_hh_l0.zero_()
    tx = torch.as_tensor(xh, device=dev)

    def tf():
        m.zero_grad(set_to_none=True)
        y = m(tx)[0][:, -1]
        y.sum().backward()
        return y

    def check():
        a, b = g(), tf()
        return np.allclose(backend.to_numpy(a.data), b.detach().cpu().numpy(), atol=1e-5) and \
            np.allclose(backend.to_numpy(lstm.U.grad), m.weight_hh_l0.grad.cpu().numpy().T, rtol=1e-3, atol=1e-4)
    return g, tf, check


def run(quick: bool = False) -> int:
    on_gpu = backend.get_backend() == "cupy"
    torch = _torch()
    dev = "cuda" if on_gpu else "cpu"
    if torch is not None and on_gpu and not torch.cuda.is_available():
        torch = None
    if torch is not None and on_gpu:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    repeats = 3 if quick else 10
    rows = []
    for name, shape, setup in _cases(quick, on_gpu):
        g, tf, check = setup(torch, dev)
        ok = "-" if check is None else ("yes" if check() else "NO")
        tg = _time(g, repeats)
        # PyTorch queues its CUDA work on its own stream: wait for that one, not CuPy's
        tt = None if tf is None else _time(tf, repeats, torch.cuda.synchronize if on_gpu else lambda: None)
        rows.append((name, shape, ok, tg, tt))
    peer = f"PyTorch {torch.__version__} ({dev})" if torch is not None else "PyTorch: not installed"
    print(f"\ngpudl bench, backend {backend.describe()}; peer: {peer}; median of {repeats}")
    print(f"{'op':22s}{'shape':34s}{'same?':>6s}{'gpudl ms':>11s}{'torch ms':>11s}{'ratio':>8s}")
    for name, shape, ok, tg, tt in rows:
        ts = f"{tt * 1e3:11.3f}" if tt is not None else f"{'-':>11s}"
        ratio = f"{tg / tt:8.2f}" if tt else f"{'-':>8s}"
        print(f"{name:22s}{shape:34s}{ok:>6s}{tg * 1e3:11.3f}{ts}{ratio}")
    return 0 if all(r[2] != "NO" for r in rows) else 1
