#!/usr/bin/env python3
"""gpudl's CUDA kernels on a real GPU: check each against NumPy, then time it beside PyTorch.

Run by benchmarks/gpu_check.sh (or alone: ``python3 benchmarks/bench_gpu.py``). First every
launcher is checked against a NumPy float64 reference at sizes that use real grids. Then each
workload is timed with CUDA events (warm-up, batches of calls between two events so host launch
gaps do not count, median of the batches), gpudl and PyTorch in the same process on the same
data, never on zeros. A short table comes last. GPU time is scarce, so one failure loses only
its own row: a failed check or workload is listed above the table and makes the exit status 1
(the timings still print, marked). Exit 2 when there is no GPU.

``--dry-run`` runs all of this script's Python on the CPU, under Numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1) at tiny sizes with NumPy arrays and PyTorch CPU, wall-clock timed: its
times mean nothing, but a GPU run then meets no untried line.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
import warnings

import numpy as np

NO_PADS = (0, 0, 0, 0)

# the shapes run_timings uses: on the GPU the issue's workloads; "simulator", each shrunk
TIMING_SIZES = {
    "gpu": dict(relu=1 << 28, maxout={"dense": (1 << 16, 1 << 12), "NCHW": (256, 256, 64, 64)},
                ce=(65536, 1000), conv=dict(N=128, C=32, F=64, H=26, W=26, k=3),
                pool=(128, 64, 24, 24), lstm=dict(N=128, T=28, D=28, units=128), launch=1024),
    "simulator": dict(relu=1000, maxout={"dense": (6, 16), "NCHW": (2, 8, 3, 3)},
                      ce=(5, 40), conv=dict(N=2, C=3, F=4, H=6, W=6, k=3),
                      pool=(2, 3, 4, 4), lstm=dict(N=2, T=3, D=4, units=5), launch=64),
}


# the shapes run_checks uses: on the GPU, sizes that use real grids (several blocks per
# multiprocessor, rows longer than a block); "simulator", the same cases shrunk to what
# Numba's CUDA simulator runs in seconds, so a CPU test runs every check before GPU time does
CHECK_SIZES = {
    "gpu": dict(
        elementwise=(1 << 20) + 3, bias_relu=(8, 37, 13, 11),
        maxout=(((64, 4 * 33, 7, 5), 4), ((1000, 4 * 256), 4), ((3, 3 * 5), 3)),
        softmax_ce=((513, 1000), (7, 10), (3, 4099)),
        conv=(((8, 3, 13, 11), (16, 3, 3, 3), (2, 1), (1, 0, 2, 1)),
              ((4, 32, 26, 26), (64, 32, 3, 3), (1, 1), NO_PADS),
              ((2, 5, 9, 9), (7, 5, 5, 5), (2, 2), (2, 2, 2, 2))),
        pool=(((8, 16, 13, 11), (3, 3), (2, 2), (1, 1, 1, 1)),
              ((4, 8, 24, 24), (2, 2), (2, 2), NO_PADS),
              ((2, 3, 9, 7), (3, 2), (2, 1), (1, 0, 0, 1)))),
    "simulator": dict(
        elementwise=1000 + 3, bias_relu=(2, 5, 3, 4),
        maxout=(((2, 4 * 3, 3, 2), 4), ((5, 4 * 8), 4), ((3, 3 * 5), 3)),
        softmax_ce=((9, 50), (7, 10), (3, 300)),
        conv=(((2, 3, 7, 6), (4, 3, 3, 3), (2, 1), (1, 0, 2, 1)),
              ((2, 4, 6, 6), (5, 4, 3, 3), (1, 1), NO_PADS),
              ((1, 2, 7, 7), (3, 2, 5, 5), (2, 2), (2, 2, 2, 2))),
        pool=(((2, 3, 7, 6), (3, 3), (2, 2), (1, 1, 1, 1)),
              ((1, 2, 8, 8), (2, 2), (2, 2), NO_PADS),
              ((2, 3, 9, 7), (3, 2), (2, 1), (1, 0, 0, 1)))),
}


# ----------------------------------------------------------------------------- references

def _windows(x, kh, kw, stride, pads, fill=0.0):
    top, bottom, left, right = pads
    xp_ = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)),
                 constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp_, (kh, kw), axis=(2, 3))
    return xp_, win[:, :, ::stride[0], ::stride[1]]         # (N, C, Ho, Wo, kh, kw)


def ref_conv(x, W, b, stride, pads):
    _, win = _windows(x, W.shape[2], W.shape[3], stride, pads)
    y = np.tensordot(win, W.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))  # N Ho Wo F
    y = y.transpose(0, 3, 1, 2)
    return y if b is None else y + b.astype(np.float64)[None, :, None, None]


def ref_conv_backward(x, W, gy, stride, pads):
    F, C, kh, kw = W.shape
    xp_, win = _windows(x, kh, kw, stride, pads)
    g = gy.astype(np.float64)
    gW = np.tensordot(g, win, axes=([0, 2, 3], [0, 2, 3]))          # F C kh kw
    gxp = np.zeros_like(xp_)
    Ho, Wo = gy.shape[2:]
    contrib = np.tensordot(g, W.astype(np.float64), axes=([1], [0]))  # N Ho Wo C kh kw
    for ki in range(kh):
        for kj in range(kw):
            gxp[:, :, ki:ki + stride[0] * Ho:stride[0], kj:kj + stride[1] * Wo:stride[1]] += \
                contrib[:, :, :, :, ki, kj].transpose(0, 3, 1, 2)
    top, left = pads[0], pads[2]
    gx = gxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    return gx, gW, g.sum(axis=(0, 2, 3))


def ref_softmax_ce(x, t):
    x = x.astype(np.float64)
    s = x - x.max(axis=1, keepdims=True)
    ls = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return -(t * ls).sum(axis=1).mean(), (np.exp(ls) - t) / x.shape[0]


# ----------------------------------------------------------------------------- checks

class Checks:
    def __init__(self, to_numpy):
        self.to_numpy = to_numpy
        self.failed = []
        self.count = 0

    def close(self, name, got, want, rtol=2e-5, atol=1e-6, exact=False):
        self.count += 1
        got = self.to_numpy(got)
        want = np.asarray(want)
        if got.shape != want.shape:
            self.failed.append(f"{name}: shape {got.shape}, expected {want.shape}")
            print(f"  FAIL {name}: shape {got.shape}, expected {want.shape}")
            return
        if exact:
            ok = np.array_equal(got, want, equal_nan=True)
        else:
            ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        with np.errstate(invalid="ignore"):
            err = float(np.nanmax(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
        print(f"  {'ok  ' if ok else 'FAIL'} {name}  (max abs err {err:.3g})")
        if not ok:
            self.failed.append(f"{name}: max abs err {err:.3g}")


def run_checks(cp, kernels, to_numpy, sizes="gpu"):
    """Every launcher against a NumPy float64 reference, on ``cp``'s arrays (CuPy on a GPU;
    NumPy under the simulator, with ``sizes="simulator"``); returns the Checks."""
    activation, maxout, softmax_ce, conv, pooling = kernels
    size = CHECK_SIZES[sizes]
    rng = np.random.default_rng(0)
    c = Checks(to_numpy)
    print(f"checks against NumPy float64 ({sizes} sizes):")
    for dt in (np.float32, np.float64):
        tag = np.dtype(dt).name
        x = rng.standard_normal(size["elementwise"]).astype(dt)
        gy = rng.standard_normal(x.shape).astype(dt)
        X, GY = cp.asarray(x), cp.asarray(gy)
        y = activation.relu_forward(X)
        c.close(f"relu_forward {tag}", y, np.maximum(x, 0), exact=True)
        c.close(f"relu_backward {tag}", activation.relu_backward(y, GY),
                np.where(x > 0, gy, 0), exact=True)
        x64 = x.astype(np.float64)
        c.close(f"leaky_relu_forward {tag}", activation.leaky_relu_forward(X, 0.01),
                np.where(x64 > 0, x64, 0.01 * x64))
        c.close(f"leaky_relu_backward {tag}", activation.leaky_relu_backward(X, GY, 0.01),
                np.where(x64 > 0, gy, 0.01 * gy.astype(np.float64)))
        x4 = rng.standard_normal(size["bias_relu"]).astype(dt)
        b = rng.standard_normal(x4.shape[1]).astype(dt)
        c.close(f"bias_relu_forward NCHW {tag}",
                activation.bias_relu_forward(cp.asarray(x4), cp.asarray(b)),
                np.maximum(x4.astype(np.float64) + b[None, :, None, None], 0))

        for shape, k in size["maxout"]:
            xm = rng.integers(-3, 4, shape).astype(dt)
            g = xm.astype(np.float64).reshape((shape[0], shape[1] // k, k) + shape[2:])
            ym, im = maxout.maxout_forward(cp.asarray(xm), k)
            c.close(f"maxout_forward {shape} k={k} {tag}", ym, g.max(axis=2), exact=True)
            c.close(f"maxout idx {shape} k={k} {tag}", im, g.argmax(axis=2), exact=True)
            gym = rng.standard_normal(g.max(axis=2).shape).astype(dt)
            want = np.zeros(g.shape)
            np.put_along_axis(want, np.expand_dims(g.argmax(axis=2), 2),
                              np.expand_dims(gym.astype(np.float64), 2), axis=2)
            c.close(f"maxout_backward {shape} k={k} {tag}",
                    maxout.maxout_backward(cp.asarray(gym), im, k), want.reshape(shape), exact=True)

        for rows, cols in size["softmax_ce"]:
            lx = (4 * rng.standard_normal((rows, cols))).astype(dt)
            lx[0, :3] = (1e4, -1e4, 5e3)  # a large-magnitude row must stay finite and exact
            labels = rng.integers(0, cols, rows)
            t = np.eye(cols)[labels]
            want_loss, want_grad = ref_softmax_ce(lx, t)
            for kind, lab in (("ids", cp.asarray(labels)), ("one-hot", cp.asarray(t.astype(dt)))):
                loss, grad, flag = softmax_ce.softmax_cross_entropy(cp.asarray(lx), lab)
                c.close(f"softmax_ce {kind} loss ({rows}, {cols}) {tag}", loss.reshape(1),
                        [want_loss], rtol=1e-5)
                c.close(f"softmax_ce {kind} grad ({rows}, {cols}) {tag}", grad, want_grad)
                c.close(f"softmax_ce {kind} flag ({rows}, {cols}) {tag}", flag, [0], exact=True)
        lx[1, 5] = np.nan
        _, _, flag = softmax_ce.softmax_cross_entropy(cp.asarray(lx), cp.asarray(labels))
        c.close(f"softmax_ce NaN flag {tag}", flag, [softmax_ce.FLAG_NONFINITE], exact=True)

        for xs, ws, stride, pads in size["conv"]:
            xc = rng.standard_normal(xs).astype(dt)
            Wc = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dt)
            bc = rng.standard_normal(ws[0]).astype(dt)
            yc = conv.conv2d_forward(cp.asarray(xc), cp.asarray(Wc), cp.asarray(bc), stride, pads)
            want_y = ref_conv(xc, Wc, bc, stride, pads)
            c.close(f"conv2d_forward {xs}x{ws} {tag}", yc, want_y, rtol=1e-4, atol=1e-4)
            gyc = rng.standard_normal(want_y.shape).astype(dt)
            gx, gW, gb = conv.conv2d_backward(cp.asarray(xc), cp.asarray(Wc), cp.asarray(gyc),
                                              stride, pads)
            wgx, wgW, wgb = ref_conv_backward(xc, Wc, gyc, stride, pads)
            c.close(f"conv2d_backward gx {xs} {tag}", gx, wgx, rtol=1e-4, atol=1e-4)
            c.close(f"conv2d_backward gW {xs} {tag}", gW, wgW, rtol=1e-4, atol=1e-3)
            c.close(f"conv2d_backward gb {xs} {tag}", gb, wgb, rtol=1e-4, atol=1e-3)

        for xs, kern, stride, pads in size["pool"]:
            xpool = rng.integers(-2, 3, xs).astype(dt)
            _, win = _windows(xpool, kern[0], kern[1], stride, pads, fill=-np.inf)
            win = win.reshape(win.shape[:4] + (-1,))
            yp, ip = pooling.max_pool2d_forward(cp.asarray(xpool), kern, stride, pads)
            c.close(f"max_pool2d_forward {xs} {kern} {tag}", yp, win.max(-1), exact=True)
            c.close(f"max_pool2d idx {xs} {kern} {tag}", ip, win.argmax(-1), exact=True)
            gyp = rng.standard_normal(yp.shape).astype(dt)
            top, bottom, left, right = pads
            gxp = np.zeros((xs[0], xs[1], xs[2] + top + bottom, xs[3] + left + right))
            n, ch = np.meshgrid(np.arange(xs[0]), np.arange(xs[1]), indexing="ij")
            am = win.argmax(-1)
            for i in range(yp.shape[2]):
                for j in range(yp.shape[3]):
                    kk = am[:, :, i, j]
                    np.add.at(gxp, (n, ch, i * stride[0] + kk // kern[1],
                                    j * stride[1] + kk % kern[1]), gyp[:, :, i, j])
            c.close(f"max_pool2d_backward {xs} {kern} {tag}",
                    pooling.max_pool2d_backward(cp.asarray(gyp), ip, xs, kern, stride, pads),
                    gxp[:, :, top:top + xs[2], left:left + xs[3]])
    return c



# ----------------------------------------------------------------------------- timing

class GpuClock:
    """Times per call in us. ``ours``: CuPy events; ``peer``: PyTorch's CUDA events; both the
    median over ``reps`` batches of ``inner`` calls after ``warmup`` calls. ``host``: host time
    per call of a tiny launch (what a CUDA graph would remove)."""

    reps, inner, warmup, host_calls = 15, 5, 2, 2000

    def __init__(self, cp, torch):
        self.cp, self.torch = cp, torch

    def _batches(self, fn, sync, event_pair, reps):
        for _ in range(self.warmup):
            fn()
        sync()
        times = []
        for _ in range(reps or self.reps):
            start, stop = event_pair()
            for _ in range(self.inner):
                fn()
            times.append(stop() * 1e3 / self.inner)
        return statistics.median(times)

    def ours(self, fn, reps=None):
        cp = self.cp

        def events():
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()

            def stop():
                end.record()
                end.synchronize()
                return cp.cuda.get_elapsed_time(start, end)
            return start, stop
        return self._batches(fn, self.sync_ours, events, reps)

    def peer(self, fn, reps=None):
        torch = self.torch
        if torch is None:
            return None

        def events():
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()

            def stop():
                end.record()
                end.synchronize()
                return start.elapsed_time(end)
            return start, stop
        return self._batches(fn, torch.cuda.synchronize, events, reps)

    def sync_ours(self):
        self.cp.cuda.get_current_stream().synchronize()

    def sync_peer(self):
        self.torch.cuda.synchronize()

    def host(self, fn, sync, calls=None):
        calls = calls or self.host_calls
        for _ in range(20):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        sync()
        return (t1 - t0) / calls * 1e6


class WallClock(GpuClock):
    """GpuClock's interface on the CPU (perf_counter, a call or two): for ``--dry-run``."""

    reps, inner, warmup, host_calls = 1, 1, 1, 2

    def _wall(self, fn, reps):
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6

    def ours(self, fn, reps=None):
        return self._wall(fn, reps)

    def peer(self, fn, reps=None):
        return None if self.torch is None else self._wall(fn, reps)

    def sync_ours(self):
        pass

    def sync_peer(self):
        pass


def normal(xp, shape, scale=1.0):
    """Standard normal float32 data made where it is used (CuPy draws on the GPU)."""
    if xp is np:
        return (np.random.default_rng(0).standard_normal(shape) * scale).astype(np.float32)
    out = xp.random.standard_normal(shape, dtype=xp.float32)
    return out * xp.float32(scale) if scale != 1.0 else out


def set_cupy_tf32(cp, on):
    """Switch CuPy's float32 matmul between TF32 and plain FP32; False when CuPy cannot."""
    if cp is np:
        return False
    try:
        from cupy._core import _routines_linalg as rl
        rl.set_compute_type(cp.float32, rl.COMPUTE_TYPE_TF32 if on else rl.COMPUTE_TYPE_DEFAULT)
        return True
    except Exception as exc:  # an internal API: say so rather than stop the run
        print(f"  note: cannot switch CuPy TF32 ({exc})")
        return False


def set_torch_tf32(torch, on):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on


def free(cp, torch):
    if cp is not np:
        cp.get_default_memory_pool().free_all_blocks()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _gbps(nbytes, us):
    return f"{nbytes / us / 1e3:.0f} GB/s"


# each workload: (cp, kernels, torch, clock, size) -> [(workload, gpudl us, peer, peer us, notes)]

def relu_rows(cp, kernels, torch, clock, n):
    activation = kernels[0]
    T = torch.from_dlpack if torch is not None else None
    x, gy = normal(cp, n), normal(cp, n)
    nbytes = 2 * x.nbytes  # one read, one write
    ours = clock.ours(lambda: activation.relu_forward(x))
    theirs = note = None
    if torch is not None:
        xt = T(x)
        dst = torch.empty_like(xt)
        theirs = clock.peer(lambda: torch.relu(xt))
        copy_us = clock.peer(lambda: dst.copy_(xt))
        note = (f" vs {_gbps(nbytes, theirs)}; d2d copy {_gbps(nbytes, copy_us)}"
                f" ({100 * copy_us / ours:.0f}% of copy)")
    rows = [(f"relu fwd {n:,} f32", ours, "torch.relu", theirs, _gbps(nbytes, ours) + (note or ""))]
    y = activation.relu_forward(x)
    ours = clock.ours(lambda: activation.relu_backward(y, gy))
    theirs = None
    if torch is not None:
        yt, gyt = T(y), T(gy)
        theirs = clock.peer(lambda: torch.where(yt > 0, gyt, 0.0))
    rows.append((f"relu bwd {n:,} f32", ours, "torch.where", theirs, _gbps(3 * x.nbytes, ours)))
    return rows


def maxout_rows(cp, kernels, torch, clock, shapes):
    maxout = kernels[1]
    rows = []
    for label, shape in shapes.items():
        xm = normal(cp, shape)
        nb = xm.nbytes * 5 // 4  # x read, y (a quarter of it) written
        ours = clock.ours(lambda: maxout.maxout_forward(xm, 4))
        theirs = xt = None
        if torch is not None:
            xt = torch.from_dlpack(xm)
            gshape = (shape[0], shape[1] // 4, 4) + tuple(shape[2:])
            theirs = clock.peer(lambda: xt.view(gshape).max(dim=2))
        rows.append((f"maxout k=4 fwd {label} {shape}", ours, "view().max(2)", theirs,
                     _gbps(nb, ours) + ("" if theirs is None else f" vs {_gbps(nb, theirs)}")))
        xm = xt = None  # let the pool take this shape's memory back
        free(cp, torch)
    return rows


def softmax_ce_rows(cp, kernels, torch, clock, size):
    softmax_ce = kernels[2]
    n, c = size
    logits = normal(cp, (n, c), scale=3.0)
    labels = cp.asarray(np.random.default_rng(1).integers(0, c, n).astype(np.int64))
    ours = clock.ours(lambda: softmax_ce.softmax_cross_entropy(logits, labels))
    theirs = None
    if torch is not None:
        lt = torch.from_dlpack(logits).detach().clone().requires_grad_(True)
        labt = torch.from_dlpack(labels)

        def torch_ce():
            loss = torch.nn.functional.cross_entropy(lt, labt)
            return torch.autograd.grad(loss, lt)
        theirs = clock.peer(torch_ce)
    return [(f"softmax-CE fwd+bwd {n}x{c}", ours, "F.cross_entropy", theirs,
             f"{_gbps(2 * logits.nbytes, ours)} (read + grad write)")]


def conv_rows(cp, kernels, torch, clock, p):
    conv = kernels[3]
    xc = normal(cp, (p["N"], p["C"], p["H"], p["W"]))
    Wc = normal(cp, (p["F"], p["C"], p["k"], p["k"]), scale=0.05)
    bc = normal(cp, p["F"])
    ho, wo = p["H"] - p["k"] + 1, p["W"] - p["k"] + 1
    gyc = normal(cp, (p["N"], p["F"], ho, wo))

    def ours_conv():
        conv.conv2d_forward(xc, Wc, bc, 1, NO_PADS)
        conv.conv2d_backward(xc, Wc, gyc, 1, NO_PADS)

    if torch is not None:
        F = torch.nn.functional
        xt, Wt, bt = (torch.from_dlpack(a).detach().clone().requires_grad_(True) for a in (xc, Wc, bc))
        gyt = torch.from_dlpack(gyc)

        def torch_conv():
            return torch.autograd.grad(F.conv2d(xt, Wt, bt), (xt, Wt, bt), gyt)
    rows = []
    for tf32 in (False, True):
        switched = set_cupy_tf32(cp, tf32)
        ours = clock.ours(ours_conv)
        theirs = None
        if torch is not None:
            set_torch_tf32(torch, tf32)
            theirs = clock.peer(torch_conv)
        rows.append((f"conv fwd+bwd {p['N']}x{p['C']}->{p['F']} {p['H']}x{p['W']} {p['k']}x{p['k']} "
                     f"{'TF32' if tf32 else 'FP32'}", ours, "cuDNN", theirs,
                     "" if switched else "CuPy TF32 switch unavailable"))
    set_cupy_tf32(cp, False)
    if torch is not None:
        set_torch_tf32(torch, True)  # torch's default for cuDNN convolutions
    return rows


def pool_rows(cp, kernels, torch, clock, shape):
    pooling = kernels[4]
    xpool = normal(cp, shape)
    gpool = normal(cp, shape[:2] + (shape[2] // 2, shape[3] // 2))

    def ours_pool():
        _, idx = pooling.max_pool2d_forward(xpool, 2, 2, NO_PADS)
        pooling.max_pool2d_backward(gpool, idx, shape, 2, 2, NO_PADS)
    ours = clock.ours(ours_pool)
    theirs = None
    if torch is not None:
        xpt = torch.from_dlpack(xpool).detach().clone().requires_grad_(True)
        gpt = torch.from_dlpack(gpool)

        def torch_pool():
            return torch.autograd.grad(torch.nn.functional.max_pool2d(xpt, 2), xpt, gpt)
        theirs = clock.peer(torch_pool)
    return [(f"maxpool 2x2 fwd+bwd {shape}", ours, "F.max_pool2d", theirs, "")]


def lstm_rows(cp, kernels, torch, clock, p):
    """The row reader's LSTM, forward + backward (gpudl: cuBLAS matmuls + one step kernel each
    way per step; PyTorch: cuDNN), FP32."""
    import gpudl
    from gpudl import layers as gl
    set_cupy_tf32(cp, False)
    lstm = gl.LSTM(p["units"])
    xs = gpudl.Tensor(cp.abs(normal(cp, (p["N"], p["T"], p["D"]), scale=0.5)))
    lstm(xs)

    def ours_lstm():
        for w in lstm.params():
            w.grad = None
        lstm(xs).sum().backward()
    ours = clock.ours(ours_lstm, reps=7)
    theirs = None
    if torch is not None:
        set_torch_tf32(torch, False)
        xt = torch.from_dlpack(xs.data)
        t_lstm = torch.nn.LSTM(p["D"], p["units"], batch_first=True).to(xt.device)

        def torch_lstm():
            t_lstm.zero_grad(set_to_none=True)
            t_lstm(xt)[0][:, -1].sum().backward()
        theirs = clock.peer(torch_lstm, reps=7)
        set_torch_tf32(torch, True)
    return [(f"LSTM({p['units']}) fwd+bwd {p['T']} steps, batch {p['N']}", ours, "cuDNN LSTM", theirs, "FP32")]


def launch_rows(cp, kernels, torch, clock, n):
    activation = kernels[0]
    small = normal(cp, n)
    ours = clock.host(lambda: activation.relu_forward(small), clock.sync_ours)
    theirs = None
    if torch is not None:
        st = torch.from_dlpack(small)
        theirs = clock.host(lambda: torch.relu(st), clock.sync_peer)
    return [(f"relu launch, {n} floats (host us/call)", ours, "torch.relu", theirs, "")]


WORKLOADS = (("relu", relu_rows), ("maxout", maxout_rows), ("ce", softmax_ce_rows), ("conv", conv_rows),
             ("pool", pool_rows), ("lstm", lstm_rows), ("launch", launch_rows))


def run_timings(cp, kernels, torch, clock, sizes="gpu"):
    """Every workload's rows; one that raises is reported and becomes an error row, so the
    others still run. Returns (rows, errors)."""
    size = TIMING_SIZES[sizes]
    rows, errors = [], []
    print("timing (median of batches, CUDA events) ...")
    for key, workload in WORKLOADS:
        try:
            rows += workload(cp, kernels, torch, clock, size[key])
        except KeyboardInterrupt:  # a timeout sends SIGINT: keep the rows so far
            errors.append(f"interrupted during {key}")
            rows.append((f"{key}: INTERRUPTED (timeout or Ctrl-C)", None, "-", None, "later rows not run"))
            break
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"{workload.__name__}: {type(exc).__name__}: {exc}")
            rows.append((f"{key}: FAILED", None, "-", None, f"{type(exc).__name__}: {exc}"[:60]))
        free(cp, torch)
    return rows, errors


def print_table(device, rows, failed=()):
    print()
    if failed:
        print(f"{len(failed)} CHECK(S) OR WORKLOAD(S) FAILED (listed above): read these figures with care")
    print(f"gpudl kernels vs PyTorch on {device} (float32; us per call, median; "
          "speedup = peer time / gpudl time)")
    head = (f"{'workload':50s} {'gpudl us':>10s} {'peer':>16s} {'peer us':>10s} "
            f"{'speedup':>8s}  notes")
    print(head)
    print("-" * len(head))
    for name, ours, peer_name, theirs, note in rows:
        ours_us = "-" if ours is None else f"{ours:10.1f}"
        peer_us = "-" if theirs is None else f"{theirs:10.1f}"
        speed = "-" if theirs is None or ours is None else f"{theirs / ours:7.2f}x"
        print(f"{name:50s} {ours_us:>10s} {peer_name:>16s} {peer_us:>10s} {speed:>8s}  {note}")


def _torch(dry_run):
    try:
        import torch
        if not dry_run and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        return torch
    except Exception as exc:
        print(f"note: PyTorch unavailable ({exc}); timing gpudl alone")
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="run every line on the CPU under NUMBA_ENABLE_CUDASIM=1, tiny sizes, times meaningless")
    args = p.parse_args(argv)
    from gpudl import backend
    from gpudl.errors import BackendUnavailableError
    from gpudl.kernels import _launch
    if args.dry_run:
        if not _launch.simulated():
            print("bench_gpu: --dry-run needs NUMBA_ENABLE_CUDASIM=1 (the kernels run in the simulator)",
                  file=sys.stderr)
            return 2
        backend.set_backend("numpy")
        cp, device, sizes = np, "the CPU (dry run under the CUDA simulator: times mean nothing)", "simulator"
    else:
        try:
            backend.set_backend("cupy")
        except BackendUnavailableError as exc:
            print(f"bench_gpu: no GPU to run on: {exc}", file=sys.stderr)
            return 2
        cp, sizes = backend.get_xp(), "gpu"
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    from gpudl.kernels import activation, conv, maxout, pooling, softmax_ce
    kernels = (activation, maxout, softmax_ce, conv, pooling)
    torch = _torch(args.dry_run)
    import numba
    print(f"device {device}; numpy {np.__version__}, numba {numba.__version__}, "
          f"cupy {getattr(cp, '__version__', '-') if cp is not np else '-'}, "
          f"torch {None if torch is None else torch.__version__}")

    t0 = time.perf_counter()
    try:
        checks = run_checks(cp, kernels, backend.to_numpy, sizes=sizes)
    except KeyboardInterrupt:
        print("bench_gpu: interrupted during the answer checks: no timings", file=sys.stderr)
        print_table(device, [], ["interrupted during the checks"])
        return 1
    print(f"{checks.count} checks in {time.perf_counter() - t0:.1f} s, {len(checks.failed)} failed")
    free(cp, torch)
    clock = (WallClock if args.dry_run else GpuClock)(cp, torch)
    rows, errors = run_timings(cp, kernels, torch, clock, sizes=sizes)
    failed = checks.failed + errors
    if failed:
        print("bench_gpu: failed:\n  " + "\n  ".join(failed), file=sys.stderr)
    print_table(device, rows, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
