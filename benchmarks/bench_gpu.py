#!/usr/bin/env python3
"""gpudl's CUDA kernels on a real GPU: check each against NumPy, then time it beside PyTorch.

Run by benchmarks/gpu_check.sh (or alone: ``python3 benchmarks/bench_gpu.py``). First every
launcher is checked against a NumPy float64 reference at sizes that use real grids; a failure
stops the run (exit 1) before any timing. Then each workload is timed with CUDA events (warm-up,
batches of calls between two events so host launch gaps do not count, median of the batches),
gpudl and PyTorch in the same process on the same data, never on zeros. A short table comes last.
Exit 2 when there is no GPU.
"""
from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np

RELU_N = 1 << 28
MAXOUT_SHAPES = {"dense (65536, 4*1024)": (1 << 16, 1 << 12), "NCHW (256, 4*64, 64, 64)":
                 (256, 256, 64, 64)}
CE_ROWS, CE_CLASSES = 65536, 1000
CONV = dict(N=128, C=32, F=64, H=26, W=26, k=3)
POOL_SHAPE = (128, 64, 24, 24)
NO_PADS = (0, 0, 0, 0)

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

def cupy_time(cp, fn, reps=15, inner=5, warmup=2):
    """Median over ``reps`` batches of the GPU time per call (us), CuPy events."""
    for _ in range(warmup):
        fn()
    cp.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(reps):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1e3 / inner)
    return statistics.median(times)


def torch_time(torch, fn, reps=15, inner=5, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / inner)
    return statistics.median(times)


def host_us_per_call(fn, sync, calls=2000):
    for _ in range(20):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    sync()
    return (t1 - t0) / calls * 1e6


def set_cupy_tf32(cp, on):
    """Switch CuPy's float32 matmul between TF32 and plain FP32; False when CuPy cannot."""
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
    cp.get_default_memory_pool().free_all_blocks()
    if torch is not None:
        torch.cuda.empty_cache()


def run_timings(cp, kernels, torch):
    activation, maxout, softmax_ce, conv, pooling = kernels
    F = None if torch is None else torch.nn.functional
    rows = []   # (workload, gpudl us, peer name, peer us, extra)

    def peer(fn):
        return None if torch is None else torch_time(torch, fn)

    def T(a):
        return torch.from_dlpack(a)

    print("timing (median of batches, CUDA events) ...")
    # ReLU forward, 2^28 floats: GB/s counts one read and one write
    x = cp.random.standard_normal(RELU_N, dtype=cp.float32)
    nbytes = 2 * x.nbytes
    ours = cupy_time(cp, lambda: activation.relu_forward(x))
    theirs = copy_us = None
    if torch is not None:
        xt = T(x)
        dst = torch.empty_like(xt)
        theirs = peer(lambda: torch.relu(xt))
        copy_us = peer(lambda: dst.copy_(xt))
        del xt, dst
    rows.append(("relu fwd 2^28 f32", ours, "torch.relu", theirs,
                 f"{nbytes / ours / 1e3:.0f} GB/s"
                 + ("" if theirs is None else f" vs {nbytes / theirs / 1e3:.0f};"
                    f" d2d copy {nbytes / copy_us / 1e3:.0f} GB/s"
                    f" ({100 * copy_us / ours:.0f}% of copy)")))
    gy = cp.random.standard_normal(RELU_N, dtype=cp.float32)
    y = activation.relu_forward(x)
    ours = cupy_time(cp, lambda: activation.relu_backward(y, gy))
    theirs = None
    if torch is not None:
        yt, gyt = T(y), T(gy)
        theirs = peer(lambda: torch.where(yt > 0, gyt, 0.0))
        del yt, gyt
    rows.append(("relu bwd 2^28 f32", ours, "torch.where", theirs,
                 f"{3 * x.nbytes / ours / 1e3:.0f} GB/s"))
    del x, y, gy
    free(cp, torch)

    # maxout k=4 forward over 2^28 input floats; GB/s counts x and y
    for label, shape in MAXOUT_SHAPES.items():
        xm = cp.random.standard_normal(shape, dtype=cp.float32)
        nb = xm.nbytes * 5 // 4
        ours = cupy_time(cp, lambda: maxout.maxout_forward(xm, 4))
        theirs = None
        if torch is not None:
            xt = T(xm)
            gshape = (shape[0], shape[1] // 4, 4) + tuple(shape[2:])
            theirs = peer(lambda: xt.view(gshape).max(dim=2))
            del xt
        rows.append((f"maxout k=4 fwd {label}", ours, "view().max(2)", theirs,
                     f"{nb / ours / 1e3:.0f} GB/s"
                     + ("" if theirs is None else f" vs {nb / theirs / 1e3:.0f}")))
        del xm
        free(cp, torch)

    # softmax cross-entropy forward + backward
    logits = cp.random.standard_normal((CE_ROWS, CE_CLASSES), dtype=cp.float32) * 3
    labels = cp.random.randint(0, CE_CLASSES, CE_ROWS).astype(cp.int64)
    ours = cupy_time(cp, lambda: softmax_ce.softmax_cross_entropy(logits, labels))
    theirs = None
    if torch is not None:
        lt = T(logits).detach().clone().requires_grad_(True)
        labt = T(labels)

        def torch_ce():
            loss = F.cross_entropy(lt, labt)
            return torch.autograd.grad(loss, lt)
        theirs = peer(torch_ce)
        del lt, labt
    rows.append((f"softmax-CE fwd+bwd {CE_ROWS}x{CE_CLASSES}", ours, "F.cross_entropy", theirs,
                 f"{2 * logits.nbytes / ours / 1e3:.0f} GB/s (read + grad write)"))
    del logits, labels
    free(cp, torch)

    # conv fwd + bwd, as the second conv of Keras' mnist_cnn
    p = CONV
    xc = cp.random.standard_normal((p["N"], p["C"], p["H"], p["W"]), dtype=cp.float32)
    Wc = cp.random.standard_normal((p["F"], p["C"], p["k"], p["k"]), dtype=cp.float32) * 0.05
    bc = cp.random.standard_normal(p["F"], dtype=cp.float32)
    Ho = p["H"] - p["k"] + 1
    gyc = cp.random.standard_normal((p["N"], p["F"], Ho, Ho), dtype=cp.float32)

    def ours_conv():
        conv.conv2d_forward(xc, Wc, bc, 1, NO_PADS)
        conv.conv2d_backward(xc, Wc, gyc, 1, NO_PADS)

    if torch is not None:
        xt = T(xc).detach().clone().requires_grad_(True)
        Wt = T(Wc).detach().clone().requires_grad_(True)
        bt = T(bc).detach().clone().requires_grad_(True)
        gyt = T(gyc)

        def torch_conv():
            yt = F.conv2d(xt, Wt, bt)
            return torch.autograd.grad(yt, (xt, Wt, bt), gyt)
    for tf32 in (False, True):
        switched = set_cupy_tf32(cp, tf32)
        ours = cupy_time(cp, ours_conv)
        theirs = None
        if torch is not None:
            set_torch_tf32(torch, tf32)
            theirs = peer(torch_conv)
        mode = "TF32" if tf32 else "FP32"
        rows.append((f"conv fwd+bwd 128x32->64 26x26 3x3 {mode}", ours, "cuDNN", theirs,
                     "" if switched else "CuPy TF32 switch unavailable"))
    set_cupy_tf32(cp, False)
    if torch is not None:
        set_torch_tf32(torch, True)  # torch's default for cuDNN convolutions
    free(cp, torch)

    # max pool 2x2 fwd + bwd
    xpool = cp.random.standard_normal(POOL_SHAPE, dtype=cp.float32)
    gpool = cp.random.standard_normal(POOL_SHAPE[:2] + (POOL_SHAPE[2] // 2, POOL_SHAPE[3] // 2),
                                      dtype=cp.float32)

    def ours_pool():
        _, idx = pooling.max_pool2d_forward(xpool, 2, 2, NO_PADS)
        pooling.max_pool2d_backward(gpool, idx, POOL_SHAPE, 2, 2, NO_PADS)
    ours = cupy_time(cp, ours_pool)
    theirs = None
    if torch is not None:
        xpt = T(xpool).detach().clone().requires_grad_(True)
        gpt = T(gpool)

        def torch_pool():
            return torch.autograd.grad(F.max_pool2d(xpt, 2), xpt, gpt)
        theirs = peer(torch_pool)
    rows.append(("maxpool 2x2 fwd+bwd 128x64x24x24", ours, "F.max_pool2d", theirs, ""))
    free(cp, torch)

    # the row reader's LSTM(128): 28 steps of 28 features, batch 128, forward + backward
    # (gpudl: cuBLAS matmuls + one step kernel each way per step; PyTorch: cuDNN), FP32
    import gpudl
    from gpudl import layers as gl
    set_cupy_tf32(cp, False)
    lstm = gl.LSTM(128)
    xs = gpudl.Tensor(cp.random.random((128, 28, 28), dtype=cp.float32))
    lstm(xs)

    def ours_lstm():
        for p in lstm.params():
            p.grad = None
        lstm(xs).sum().backward()
    ours = cupy_time(cp, ours_lstm, reps=7)
    theirs = None
    if torch is not None:
        set_torch_tf32(torch, False)
        t_lstm = torch.nn.LSTM(28, 128, batch_first=True).cuda()
        xt = T(xs.data)

        def torch_lstm():
            t_lstm.zero_grad(set_to_none=True)
            t_lstm(xt)[0][:, -1].sum().backward()
        theirs = torch_time(torch, torch_lstm, reps=7)
    rows.append(("LSTM(128) fwd+bwd 28 steps, batch 128", ours, "cuDNN LSTM", theirs, "FP32"))
    free(cp, torch)

    # host cost of one launch on a tiny array (what a CUDA graph would remove)
    small = cp.random.standard_normal(1024, dtype=cp.float32)
    sync = cp.cuda.get_current_stream().synchronize
    ours = host_us_per_call(lambda: activation.relu_forward(small), sync)
    theirs = None
    if torch is not None:
        st = T(small)
        theirs = host_us_per_call(lambda: torch.relu(st), torch.cuda.synchronize)
    rows.append(("relu launch, 1024 floats (host us/call)", ours, "torch.relu", theirs, ""))
    return rows


def print_table(device, rows):
    print()
    print(f"gpudl kernels vs PyTorch on {device} (float32; us per call, median; "
          "speedup = peer time / gpudl time)")
    head = (f"{'workload':44s} {'gpudl us':>10s} {'peer':>16s} {'peer us':>10s} "
            f"{'speedup':>8s}  notes")
    print(head)
    print("-" * len(head))
    for name, ours, peer_name, theirs, note in rows:
        peer_us = "-" if theirs is None else f"{theirs:10.1f}"
        speed = "-" if theirs is None else f"{theirs / ours:7.2f}x"
        print(f"{name:44s} {ours:10.1f} {peer_name:>16s} {peer_us:>10s} {speed:>8s}  {note}")


def main() -> int:
    from gpudl import backend
    from gpudl.errors import BackendUnavailableError
    try:
        backend.set_backend("cupy")
    except BackendUnavailableError as exc:
        print(f"bench_gpu: no GPU to run on: {exc}", file=sys.stderr)
        return 2
    cp = backend.get_xp()
    from gpudl.kernels import activation, conv, maxout, pooling, softmax_ce
    kernels = (activation, maxout, softmax_ce, conv, pooling)
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
    except Exception as exc:
        print(f"note: PyTorch unavailable ({exc}); timing gpudl alone")
        torch = None
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    import numba
    print(f"device {device}; numpy {np.__version__}, numba {numba.__version__}, cupy "
          f"{cp.__version__}, torch {None if torch is None else torch.__version__}")

    t0 = time.perf_counter()
    checks = run_checks(cp, kernels, backend.to_numpy)
    print(f"{checks.count} checks in {time.perf_counter() - t0:.1f} s, "
          f"{len(checks.failed)} failed")
    if checks.failed:
        print("bench_gpu: kernel checks failed, no timing:\n  " + "\n  ".join(checks.failed),
              file=sys.stderr)
        return 1
    free(cp, torch)
    rows = run_timings(cp, kernels, torch)
    print_table(device, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
