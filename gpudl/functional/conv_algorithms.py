"""conv2d's algorithms, and the choice among them per shape (as ``cudnn.benchmark`` does).

Each algorithm computes the same convolution (forward, input gradient, weight gradient,
bias gradient) and is exact to float32 rounding against the others:

============  ==========  =====================================================================
name          backends    what it does
============  ==========  =====================================================================
``im2col``    numpy,      NumPy im2col (a padded channels-last copy, then the windows), one
              cupy        BLAS GEMM per direction, col2im as kh*kw strided additions. On CuPy
                          the Numba CUDA im2col kernels + cuBLAS (``gpudl.kernels.conv``).
``fused``     numpy       the columns gathered straight from NCHW by compiled parallel loops
                          (no padded or transposed copies), the same GEMMs, and col2im gathered
                          per input pixel in one pass (no zeroed buffer, no kh*kw passes).
``winograd``  numpy       Winograd F(2x2, 3x3) for stride-1, undilated, ungrouped 3x3 kernels:
                          2.25x fewer multiplications in 16 batched GEMMs, compiled transforms.
============  ==========  =====================================================================

``gpudl.backend.conv_algorithm`` picks one for every call (where it does not apply, the
fixed rule below decides) or ``"auto"`` (the default): on the first call with a new key
(shapes, stride, padding, dilation, groups, dtype, backend, compiled-loop threads, whether
gradients are needed; not the fused ReLU or the bias) each applicable algorithm runs once on that call's data (forward, and
backward when gradients are needed) and the fastest is kept for the rest of the process
(:func:`choices` shows them, :func:`tuning_seconds` what the timing cost). Under
``gpudl.set_deterministic(True)`` no timing happens and the fixed rule decides, so the same
program always rounds the same way.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .. import backend
from . import _workspace as W_
from ._threads import held_gemm, matmul_split, run_blocks

__all__ = ["ALGORITHMS", "Geometry", "algorithms_for", "choose", "choices", "clear_choices",
           "tuning_seconds", "fixed_rule"]


class Geometry:
    """The static facts of one conv2d call: what every algorithm needs besides the arrays."""

    __slots__ = ("x_shape", "w_shape", "stride", "pads", "out_hw", "dilation", "groups", "dtype")

    def __init__(self, x_shape, w_shape, stride, pads, out_hw, dilation, groups, dtype):
        self.x_shape, self.w_shape = tuple(x_shape), tuple(w_shape)
        self.stride, self.pads, self.out_hw = tuple(stride), tuple(pads), tuple(out_hw)
        self.dilation, self.groups, self.dtype = tuple(dilation), int(groups), np.dtype(dtype)

    def key(self):
        return (self.x_shape, self.w_shape, self.stride, self.pads, self.dilation, self.groups, self.dtype.str)

    @property
    def y_shape(self):
        return (self.x_shape[0], self.w_shape[0]) + self.out_hw


class Algorithm:
    """What every conv2d algorithm provides; the defaults suit one that applies to every shape
    and keeps only ordinary arrays between forward and backward."""

    name = ""
    backends = ("numpy",)

    @staticmethod
    def applicable(geom):
        return True

    @staticmethod
    def recycle(state):
        """Hand the saved state's scratch back once the graph is done with it (no-op here)."""


class _Pooled(Algorithm):
    """An algorithm whose saved state leads with a pooled array (the columns or the tiles)."""

    @staticmethod
    def recycle(state):
        W_.give(state[0])


# ---- im2col + GEMM (the NumPy reference path) ---------------------------------------------------

class Im2col(Algorithm):
    name = "im2col"
    backends = ("numpy",)

    @staticmethod
    def forward(x, W, b, relu, geom):
        from .conv import _im2col
        out_ch, _, kh, kw = W.shape
        n = x.shape[0]
        ho, wo = geom.out_hw
        groups = geom.groups
        cols = _im2col(x, (kh, kw), geom.stride, geom.pads, geom.out_hw, geom.dilation, groups)
        w_rows = W.transpose(0, 2, 3, 1).reshape(out_ch, -1)  # (out_ch, kh*kw*C/G) like cols
        # (out_ch, N*Ho*Wo): moving it to NCHW then copies runs of Ho*Wo floats, where the
        # (N*Ho*Wo, out_ch) product would need a gather of single floats (measured 1.2-2x slower)
        if groups == 1:
            y = held_gemm(w_rows, cols.T)
        else:  # one batched product: (G, out_ch/G, K) @ (G, K, N*Ho*Wo), K = kh*kw*C/G
            y = np.matmul(w_rows.reshape(groups, out_ch // groups, -1),
                          cols.reshape(cols.shape[0], groups, -1).transpose(1, 2, 0)).reshape(out_ch, -1)
        out = np.empty((n, out_ch, ho, wo), dtype=y.dtype)
        y4 = y.reshape(out_ch, n, ho, wo).transpose(1, 0, 2, 3)
        if b is not None:
            np.add(y4, b.reshape(1, out_ch, 1, 1), out=out)
        else:
            out[...] = y4
        if relu:
            np.maximum(out, 0, out=out)
        return out, (cols, W)

    @staticmethod
    def backward(state, gy, y, relu, need_x, need_w, has_b, geom):
        from .conv import _col2im
        cols, W = state
        out_ch, c, kh, kw = W.shape
        groups = geom.groups
        # (out_ch, N*Ho*Wo): one copy serves the bias, weight and input gradients
        if relu:  # the ReLU's mask applied in the same pass as the transposing copy
            gy_t = np.empty((out_ch,) + (gy.shape[0],) + gy.shape[2:], dtype=gy.dtype)
            np.multiply(gy.transpose(1, 0, 2, 3), (y > 0).transpose(1, 0, 2, 3), out=gy_t)
            gy_t = gy_t.reshape(out_ch, -1)
        else:
            gy_t = np.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(out_ch, -1)
        gW = gx = None
        if need_w:
            # computed transposed, (kh*kw*C, out_ch): the same product, but OpenBLAS runs this
            # orientation of the long-K GEMM far more steadily when the cores are shared
            if groups == 1:
                gW = held_gemm(cols.T, gy_t.T).T.reshape(out_ch, kh, kw, c).transpose(0, 3, 1, 2)
            else:  # (G, K, N*Ho*Wo) @ (G, N*Ho*Wo, out_ch/G), then back to (out_ch, C/G, kh, kw)
                gwt = np.matmul(cols.reshape(cols.shape[0], groups, -1).transpose(1, 2, 0),
                                gy_t.reshape(groups, out_ch // groups, -1).transpose(0, 2, 1))
                gW = gwt.transpose(0, 2, 1).reshape(out_ch, kh, kw, c).transpose(0, 3, 1, 2)
            gW = np.ascontiguousarray(gW, dtype=W.dtype)
        if need_x:
            if groups == 1:
                w_cols = W.transpose(1, 2, 3, 0).reshape(c * kh * kw, out_ch)  # (C*kh*kw, out_ch)
                gcols = held_gemm(w_cols, gy_t)
            else:  # (G, C/G*kh*kw, out_ch/G) @ (G, out_ch/G, N*Ho*Wo): rows come out (C, kh, kw)
                fg = out_ch // groups
                w_cols = W.reshape(groups, fg, c, kh, kw).transpose(0, 2, 3, 4, 1).reshape(groups, -1, fg)
                gcols = np.matmul(w_cols, gy_t.reshape(groups, fg, -1))
            gcols = gcols.reshape(geom.x_shape[1], kh, kw, gy.shape[0], *geom.out_hw)
            gx = _col2im(gcols, geom.x_shape, (kh, kw), geom.stride, geom.pads, geom.out_hw, geom.dilation)
        gb = gy_t.sum(axis=1) if has_b else None
        return gx, gW, gb


# ---- fused im2col / col2im (compiled gathers, no copies between) ---------------------------------

_NO_BIAS = {}


def _bias_or_empty(b, dtype):
    """b itself, or a length-0 array that tells the compiled loops there is no bias."""
    if b is not None:
        return b
    empty = _NO_BIAS.get(dtype.str)
    if empty is None:
        empty = _NO_BIAS[dtype.str] = np.empty(0, dtype=dtype)
    return empty


def _grouped_gemm(a, bm, groups, out_rows):
    """(G*m, k) x (G*k, n) as G independent products, rows stacked: (G*m, n)."""
    if groups == 1:
        return a @ bm
    m, k = a.shape[0] // groups, bm.shape[0] // groups
    return np.matmul(a.reshape(groups, m, -1), bm.reshape(groups, k, -1)).reshape(out_rows, -1)


#: the dtypes the compiled loops are built for (numba has no float16 on the CPU)
_JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Fused(_Pooled):
    name = "fused"
    backends = ("numpy",)

    @staticmethod
    def applicable(geom):
        return geom.dtype in _JIT_DTYPES

    @staticmethod
    def forward(x, W, b, relu, geom):
        from . import _conv_jit as J
        out_ch, cg, kh, kw = W.shape
        n, c = geom.x_shape[:2]
        ho, wo = geom.out_hw
        (sh, sw), (dh, dw), (pt, _, pl, _) = geom.stride, geom.dilation, geom.pads
        cols = W_.take((c * kh * kw, n * ho * wo), x.dtype)
        J.gather_columns(x, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols)
        # rows of cols are (C, kh, kw): W's own layout, so W needs no transposed copy
        w2 = W.reshape(out_ch, cg * kh * kw)
        if geom.groups == 1:
            y = matmul_split(w2, cols, W_.take((out_ch, cols.shape[1]), x.dtype), axis=1)
        else:
            y = _grouped_gemm(w2, cols, geom.groups, out_ch)
        out = np.empty(geom.y_shape, dtype=x.dtype)
        J.bias_relu_nchw(y, _bias_or_empty(b, x.dtype), relu, out)
        W_.give(y)
        return out, (cols, W)

    @staticmethod
    def backward(state, gy, y, relu, need_x, need_w, has_b, geom):
        from . import _conv_jit as J
        cols, W = state
        out_ch, cg, kh, kw = W.shape
        n, c = geom.x_shape[:2]
        ho, wo = geom.out_hw
        groups = geom.groups
        gy_t = W_.take((out_ch, n * ho * wo), gy.dtype)
        db = np.empty((n, out_ch), dtype=gy.dtype)
        J.grad_rows(gy, y if relu else gy, relu, gy_t, db)
        gW = gx = None
        if need_w:
            # (C*kh*kw, out_ch) = cols @ gy_t^T, the long N*Ho*Wo axis contracted
            if groups == 1:
                gwt = matmul_split(cols, gy_t.T, np.empty((cols.shape[0], out_ch), gy.dtype), axis=0)
                gW = np.ascontiguousarray(gwt.T).reshape(W.shape)
            else:
                fg = out_ch // groups
                gwt = np.matmul(cols.reshape(groups, cg * kh * kw, -1),
                                gy_t.reshape(groups, fg, -1).transpose(0, 2, 1))  # (G, cg*kh*kw, fg)
                gW = np.ascontiguousarray(gwt.transpose(0, 2, 1)).reshape(W.shape)
        if need_x:
            w2 = W.reshape(out_ch, cg * kh * kw)
            if groups == 1:
                gcols = matmul_split(w2.T, gy_t, W_.take((c * kh * kw, gy_t.shape[1]), gy.dtype), axis=1)
            else:
                fg = out_ch // groups
                gcols = np.matmul(w2.reshape(groups, fg, -1).transpose(0, 2, 1),
                                  gy_t.reshape(groups, fg, -1)).reshape(c * kh * kw, -1)
            gx = np.empty(geom.x_shape, dtype=gy.dtype)
            (sh, sw), (dh, dw), (pt, _, pl, _) = geom.stride, geom.dilation, geom.pads
            J.scatter_columns(gcols, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, gx)
            W_.give(gcols)
        W_.give(gy_t)
        gb = db.sum(axis=0) if has_b else None
        return gx, gW, gb


# ---- Winograd F(2x2, 3x3) -----------------------------------------------------------------------

# G (4x3) of F(2x2, 3x3): U = G g G^T for each 3x3 kernel g, as one (16, 9) matrix G (x) G
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_GG = np.kron(_G, _G)
#: bytes of one chunk's transformed tiles (V or dV and M or dM together) that a thread works
#: through at a time, about its share of the L2 cache, so each chunk's GEMMs read and write
#: cached data
CHUNK_BYTES = 2 << 20
#: a batch splits into this many groups of images at most (fewer for a smaller batch), whatever
#: the thread count: a thread takes whole groups, and the weight gradient is summed per group
#: and then over the groups in order, so the result does not depend on the thread count
GROUPS = 16


class Winograd(_Pooled):
    """Each thread runs whole groups of images through every stage in turn, a few images at a
    time (input transform, 16 GEMMs, output transform; backward: output-gradient transform, the
    two GEMMs, input-gradient transform), so a chunk's tiles stay in that core's cache between
    the stages. Stage by stage over the whole batch (every thread on every stage, a barrier
    between) the tiles went out to memory between the stages: the backward took 1.3-1.5x
    longer on two cores."""

    name = "winograd"
    backends = ("numpy",)

    @staticmethod
    def applicable(geom):
        return (geom.w_shape[2:] == (3, 3) and geom.stride == (1, 1) and geom.dilation == (1, 1)
                and geom.groups == 1 and geom.dtype in _JIT_DTYPES)

    @staticmethod
    def _tiles(geom):
        ho, wo = geom.out_hw
        return (ho + 1) // 2, (wo + 1) // 2

    @staticmethod
    def _plan(n, c, out_ch, t_img, itemsize):
        """(group bounds over the images, images per chunk)."""
        groups = min(GROUPS, n)
        bounds = [g * n // groups for g in range(groups + 1)]
        per = max(1, CHUNK_BYTES // (16 * itemsize * (c + out_ch) * t_img))
        return bounds, per

    @staticmethod
    def _chunks(bounds, g, per):
        lo, end = bounds[g], bounds[g + 1]
        while lo < end:
            hi = min(lo + per, end)
            yield lo, hi
            lo = hi

    @staticmethod
    def forward(x, W, b, relu, geom):
        from . import _conv_jit as J
        out_ch, c = W.shape[:2]
        n = geom.x_shape[0]
        th, tw = Winograd._tiles(geom)
        t_img = th * tw
        pt, pl = geom.pads[0], geom.pads[2]
        gg = _GG.astype(x.dtype)
        # U (16, K, C): the kernels in the transformed domain
        U = held_gemm(gg, W.reshape(out_ch * c, 9).T).reshape(16, out_ch, c)
        V = W_.take((16, c, n * t_img), x.dtype)  # saved for the weight gradient
        out = np.empty(geom.y_shape, dtype=x.dtype)
        bias = _bias_or_empty(b, x.dtype)
        bounds, per = Winograd._plan(n, c, out_ch, t_img, x.dtype.itemsize)

        def work(g0, g1):
            flat = W_.take((16 * out_ch * per * t_img,), x.dtype)
            for g in range(g0, g1):
                for lo, hi in Winograd._chunks(bounds, g, per):
                    M = flat[:16 * out_ch * (hi - lo) * t_img].reshape(16, out_ch, -1)
                    J.winograd_input(x, pt, pl, th, tw, V, lo * c, hi * c)  # planes of images lo..hi-1
                    np.matmul(U, V[:, :, lo * t_img:hi * t_img], out=M)  # the 16 GEMMs over channels
                    J.winograd_output(M, bias, relu, tw, out[lo:hi], 0, (hi - lo) * out_ch)
            W_.give(flat)

        run_blocks(work, len(bounds) - 1)  # BLAS held to one thread inside
        return out, (V, U, W)

    @staticmethod
    def backward(state, gy, y, relu, need_x, need_w, has_b, geom):
        from . import _conv_jit as J
        V, U, W = state
        out_ch, c = W.shape[:2]
        n = geom.x_shape[0]
        th, tw = Winograd._tiles(geom)
        t_img = th * tw
        pt, pl = geom.pads[0], geom.pads[2]
        db = np.empty((n, out_ch), dtype=gy.dtype)
        yy = y if relu else gy
        gx = np.empty(geom.x_shape, dtype=gy.dtype) if need_x else None
        bounds, per = Winograd._plan(n, c, out_ch, t_img, gy.dtype.itemsize)
        groups = len(bounds) - 1
        dU_parts = np.empty((groups, 16, out_ch, c), dtype=gy.dtype) if need_w else None
        Ut = U.transpose(0, 2, 1)

        def work(g0, g1):
            flat_m = W_.take((16 * out_ch * per * t_img,), gy.dtype)
            flat_v = W_.take((16 * c * per * t_img,), gy.dtype) if need_x else None
            part = np.empty((16, out_ch, c), dtype=gy.dtype) if need_w else None
            for g in range(g0, g1):
                first = True
                for lo, hi in Winograd._chunks(bounds, g, per):
                    m = (hi - lo) * t_img
                    dM = flat_m[:16 * out_ch * m].reshape(16, out_ch, m)
                    J.winograd_grad_output(gy[lo:hi], yy[lo:hi], relu, tw, dM, db[lo:hi], 0, (hi - lo) * out_ch)
                    if need_w:  # (16, K, C): the chunk's tiles contracted, summed within the group
                        vt = V[:, :, lo * t_img:hi * t_img].transpose(0, 2, 1)
                        if first:
                            np.matmul(dM, vt, out=dU_parts[g])
                        else:
                            dU_parts[g] += np.matmul(dM, vt, out=part)
                    if need_x:
                        dV = flat_v[:16 * c * m].reshape(16, c, m)
                        np.matmul(Ut, dM, out=dV)  # (16, C, tiles)
                        J.winograd_grad_input(dV, pt, pl, th, tw, gx[lo:hi], 0, (hi - lo) * c)
                    first = False
            W_.give(flat_m, flat_v)

        run_blocks(work, groups)
        gW = None
        if need_w:
            dU = dU_parts.sum(axis=0)  # over the groups, in order
            gg = _GG.astype(gy.dtype)
            gW = np.ascontiguousarray(held_gemm(gg.T, dU.reshape(16, -1)).T).reshape(W.shape)
        gb = db.sum(axis=0) if has_b else None
        return gx, gW, gb


# ---- the GPU path ---------------------------------------------------------------------------------

class CudaIm2col(Algorithm):
    """The Numba CUDA im2col kernels + cuBLAS (``gpudl.kernels.conv``); further CUDA
    algorithms join this registry under their own names once a GPU can time them."""

    name = "im2col"
    backends = ("cupy",)  # CuPy's memory pool reuses the device buffers: nothing to recycle

    @staticmethod
    def forward(x, W, b, relu, geom):
        from ..kernels import conv as K
        # bias and ReLU are the product's epilogue: one pass over y, in place
        y = K.conv2d_forward(x, W, b, geom.stride, geom.pads, relu=relu, dilation=geom.dilation,
                             groups=geom.groups)
        return y, (x, W)

    @staticmethod
    def backward(state, gy, y, relu, need_x, need_w, has_b, geom):
        from ..kernels import conv as K
        x, W = state
        # the ReLU's mask rides on the transposing copy of gy the weight gradient makes
        gx, gW, gb = K.conv2d_backward(x, W, gy, geom.stride, geom.pads, need_x_grad=need_x,
                                       relu_y=y if relu else None, dilation=geom.dilation,
                                       groups=geom.groups)
        return (gx if need_x else None), gW, (gb if has_b else None)


#: every algorithm by backend, in the order the fixed rule and the timing consider them
ALGORITHMS = {"numpy": {"im2col": Im2col, "fused": Fused, "winograd": Winograd},
              "cupy": {"im2col": CudaIm2col}}


def algorithms_for(geom, backend_name):
    """The algorithms that apply to ``geom`` on ``backend_name``, in registry order."""
    return [a for a in ALGORITHMS[backend_name].values() if a.applicable(geom)]


def fixed_rule(geom, backend_name):
    """The choice without timing (deterministic mode, and shapes a forced algorithm does not
    fit): Winograd where it applies and there are enough channels for its GEMMs to pay for
    the transforms, else the fused gathers on NumPy; the only algorithm on CuPy."""
    table = ALGORITHMS[backend_name]
    if backend_name != "numpy":
        return table["im2col"]
    if Winograd.applicable(geom) and geom.w_shape[0] >= 16 and geom.w_shape[1] >= 16:
        return Winograd
    return Fused if Fused.applicable(geom) else Im2col


_lock = threading.Lock()
_chosen = {}
_tuning = {"seconds": 0.0, "shapes": 0}


def _threads():
    from ._threads import threads
    return threads()


def choose(x, W, b, relu, geom, need_grad, backend_name):
    """The algorithm for this call: the forced one, the fixed rule's, or the timed winner."""
    setting = backend.conv_algorithm
    table = ALGORITHMS[backend_name]
    if setting != "auto":
        forced = table.get(setting)
        if forced is not None and forced.applicable(geom):
            return forced
        return fixed_rule(geom, backend_name)
    if backend.deterministic:
        return fixed_rule(geom, backend_name)
    # the fused ReLU and the bias are left out of the key: they barely move the timings, and
    # a conv with and without them must round the same way (relu(conv(x)) == conv(x, relu))
    key = (backend_name, geom.key(), bool(need_grad), _threads())
    alg = _chosen.get(key)
    if alg is None:
        with _lock:
            alg = _chosen.get(key)
            if alg is None:
                alg = _chosen[key] = _time_candidates(x, W, b, relu, geom, need_grad, backend_name)
    return alg


_warm = set()


def _warm_up(alg, dtype, relu, has_b):
    """Compile (or load from numba's cache) an algorithm's loops on a tiny input, so the first
    timing measures the algorithm and not the compiler."""
    key = (alg.name, np.dtype(dtype).str)
    if key in _warm or alg.backends != ("numpy",):
        return
    x = np.ones((1, 2, 4, 4), dtype=dtype)
    W = np.ones((2, 2, 3, 3), dtype=dtype)
    b = np.ones(2, dtype=dtype)
    geom = Geometry(x.shape, W.shape, (1, 1), (1, 1, 1, 1), (4, 4), (1, 1), 1, dtype)
    y, state = alg.forward(x, W, b if has_b else None, relu, geom)
    alg.backward(state, np.ones_like(y), y, relu, True, True, has_b, geom)
    _warm.add(key)


def _run_once(alg, x, W, b, relu, geom, need_grad, beat=float("inf")):
    """Seconds of one forward (+ backward) of ``alg``; the backward is skipped when the forward
    alone took ``beat`` seconds or more (that candidate has lost already: its forward time is
    returned, a lower bound of its step)."""
    backend.synchronize()
    t0 = time.perf_counter()
    y, state = alg.forward(x, W, b, relu, geom)
    if need_grad:
        backend.synchronize()
        if time.perf_counter() - t0 < beat:
            alg.backward(state, y, y, relu, True, True, b is not None, geom)
    backend.synchronize()
    elapsed = time.perf_counter() - t0
    alg.recycle(state)
    return elapsed


def _time_candidates(x, W, b, relu, geom, need_grad, backend_name):
    """Run each applicable algorithm once on this call's data (its own output standing in
    for the output gradient), the fixed rule's pick first, and a later one's backward only
    if its forward alone was faster than the best whole step so far; the two fastest run
    once more when they are within 15 % of each other, so one noisy timing on a shared
    machine does not decide a close race."""
    cands = algorithms_for(geom, backend_name)
    if len(cands) == 1:
        return cands[0]
    for alg in cands:
        _warm_up(alg, x.dtype, relu, b is not None)
    t_start = time.perf_counter()
    rule = fixed_rule(geom, backend_name)
    times = {}
    for alg in sorted(cands, key=lambda a: a is not rule):  # a stable sort: registry order after
        times[alg] = _run_once(alg, x, W, b, relu, geom, need_grad, min(times.values(), default=float("inf")))
    ranked = sorted(cands, key=times.get)
    first, second = ranked[0], ranked[1]
    if times[second] < 1.15 * times[first]:
        for alg in (first, second):
            times[alg] = min(times[alg], _run_once(alg, x, W, b, relu, geom, need_grad))
    _tuning["seconds"] += time.perf_counter() - t_start
    _tuning["shapes"] += 1
    _last_times[(backend_name, geom.key(), bool(need_grad))] = {a.name: t for a, t in times.items()}
    return min(cands, key=times.get)


_last_times = {}


def choices():
    """{(backend, shapes key, needs gradients): (chosen name, {name: seconds})} for every shape
    timed so far in this process (a candidate dropped after its forward shows that forward's
    seconds, already more than the winner's whole step)."""
    out = {}
    for key, alg in _chosen.items():
        short = (key[0], key[1], key[2])
        out[short] = (alg.name, dict(_last_times.get(short, {})))
    return out


def tuning_seconds():
    """(seconds spent timing candidates, shapes timed) so far in this process."""
    return _tuning["seconds"], _tuning["shapes"]


def clear_choices():
    """Forget every timed choice (the next call of each shape times again)."""
    with _lock:
        _chosen.clear()
        _last_times.clear()
        _tuning["seconds"], _tuning["shapes"] = 0.0, 0
