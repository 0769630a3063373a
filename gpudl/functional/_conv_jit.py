"""Compiled CPU loops for conv2d's copy-light algorithms (NumPy backend only).

Two families, both parallel over independent output planes so no two threads write the same
element and every sum runs in a fixed order (the results do not depend on the thread count):

* **Winograd F(2x2, 3x3)** (Lavin & Gray 2016) for stride-1, undilated 3x3 kernels. The
  output is cut into 2x2 tiles, each read from a 4x4 input tile ``d``; in the transformed
  domain a tile's output is ``A^T [(G g G^T) * (B^T d B)] A``, so the 9 products per output
  pixel of a direct convolution become 16 per 2x2 tile (2.25x fewer), done as 16 GEMMs over
  channels. The loops here are the transforms: input tiles into V (16, C, P), the GEMMs'
  result M (16, K, P) back into the output (bias and ReLU folded in), the output gradient
  into dM = A dY A^T, and dV back into the input gradient (B dV B^T, overlapping tiles
  added in place, each image plane owned by one thread).
* **Fused im2col / col2im** for any kernel, stride, dilation and groups: the columns are
  gathered straight from NCHW into (C*kh*kw, N*Ho*Wo), with rows in W's own (C, kh, kw)
  order, so no padded copy, no transposed copy of W and no separate col2im pass: the input
  gradient is gathered per pixel from the GEMM's result in one pass that writes NCHW.

Imported lazily: ``import gpudl`` never loads numba.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# the thread pool and the split GEMMs live in _threads (no numba there); re-exported for
# the algorithms that call them through this module
from ._threads import matmul_batched, matmul_split, run_blocks, set_threads, single_blas, threads  # noqa: F401


# ---- Winograd F(2x2, 3x3) ----------------------------------------------------------------------


# Every loop below works through one (image, channel) plane at a time in small local buffers:
# a zero-bordered copy of the plane (no bounds checks in the tile loops) and the plane's
# transformed tiles as 16 rows of P_img = th*tw values, filled along the tile row so the inner
# loops run over consecutive tiles (which LLVM vectorises) and copied to or from V, M, dM and
# dV as 16 contiguous runs. Writing each tile's 16 values straight into (16, channels, P)
# touched 16 addresses a multiple of channels*P*4 bytes apart, the same cache sets: 3-5x slower.


# Each kernel is a serial compiled function over a range of planes (scratch made once per
# range, inside the function: arrays it allocates itself are known not to overlap its
# arguments, which lets LLVM vectorise the loops; the same code split into a per-plane
# function taking the scratch as arguments ran 2x slower), run on a few Python threads by
# run_blocks (compiled with nogil). numba's parallel=True
# took about a minute to compile these four (its passes turn every allocation and slice copy
# in a prange body into nested parfors), and its OpenMP threads spin after each region, which
# stole the cores from the BLAS calls between the transforms.


@njit(cache=True, nogil=True)
def _input_block(x, pt, pl, th, tw, V, lo, hi):
    """Planes lo..hi-1 (job = n*C + c) of winograd_input."""
    c_in, h_in, w_in = x.shape[1:]
    t_img = th * tw
    hp, wp = 2 * th + 2, 2 * tw + 2
    # the border of d is never written, so it stays zero from plane to plane
    d = np.zeros((hp, wp), dtype=x.dtype)
    rows = np.empty((4, wp), dtype=x.dtype)
    buf = np.empty((16, t_img), dtype=x.dtype)
    for job in range(lo, hi):
        n, c = job // c_in, job % c_in
        src = x[n, c]
        for h in range(max(0, -pt), min(h_in, hp - pt)):
            for w in range(max(0, -pl), min(w_in, wp - pl)):
                d[h + pt, w + pl] = src[h, w]
        for ti in range(th):
            r = 2 * ti
            d0, d1, d2, d3 = d[r], d[r + 1], d[r + 2], d[r + 3]
            for w in range(wp):  # B^T d along the whole tile row
                rows[0, w] = d0[w] - d2[w]
                rows[1, w] = d1[w] + d2[w]
                rows[2, w] = d2[w] - d1[w]
                rows[3, w] = d1[w] - d3[w]
            o = ti * tw
            for u in range(4):  # then B on the right, tile by tile
                ru = rows[u]
                b0, b1, b2, b3 = buf[4 * u], buf[4 * u + 1], buf[4 * u + 2], buf[4 * u + 3]
                for tj in range(tw):
                    q = 2 * tj
                    b0[o + tj] = ru[q] - ru[q + 2]
                    b1[o + tj] = ru[q + 1] + ru[q + 2]
                    b2[o + tj] = ru[q + 2] - ru[q + 1]
                    b3[o + tj] = ru[q + 1] - ru[q + 3]
        for u in range(16):
            V[u, c, n * t_img:(n + 1) * t_img] = buf[u]


def winograd_input(x, pt, pl, th, tw, V):
    """V[u*4 + v, c, (n*th + ti)*tw + tj] = (B^T d B)[u, v] for the 4x4 tile d of the
    zero-padded image at rows 2*ti - pt.., columns 2*tj - pl..."""
    run_blocks(_input_block, x.shape[0] * x.shape[1], x, pt, pl, th, tw, V)


@njit(cache=True, nogil=True)
def _output_block(M, b, relu, tw, out, lo, hi):
    """Planes lo..hi-1 (job = n*K + k) of winograd_output."""
    k_out, ho, wo = out.shape[1:]
    th = (ho + 1) // 2
    t_img = th * tw
    has_b = b.shape[0] > 0
    zero = out.dtype.type(0)
    m = np.empty((16, t_img), dtype=M.dtype)
    yp = np.empty((2 * th, 2 * tw), dtype=out.dtype)
    for job in range(lo, hi):
        n, k = job // k_out, job % k_out
        bias = b[k] if has_b else zero
        base = n * t_img
        for u in range(16):
            m[u] = M[u, k, base:base + t_img]
        for ti in range(th):
            o = ti * tw
            r0, r1 = yp[2 * ti], yp[2 * ti + 1]
            for tj in range(tw):
                p = o + tj
                # A^T m: two rows over the four columns, then A on the right
                a0 = m[0, p] + m[4, p] + m[8, p]
                a1 = m[1, p] + m[5, p] + m[9, p]
                a2 = m[2, p] + m[6, p] + m[10, p]
                a3 = m[3, p] + m[7, p] + m[11, p]
                c0 = m[4, p] - m[8, p] - m[12, p]
                c1 = m[5, p] - m[9, p] - m[13, p]
                c2 = m[6, p] - m[10, p] - m[14, p]
                c3 = m[7, p] - m[11, p] - m[15, p]
                r0[2 * tj] = a0 + a1 + a2 + bias
                r0[2 * tj + 1] = a1 - a2 - a3 + bias
                r1[2 * tj] = c0 + c1 + c2 + bias
                r1[2 * tj + 1] = c1 - c2 - c3 + bias
        dst = out[n, k]
        for i in range(ho):
            for j in range(wo):
                v = yp[i, j]
                dst[i, j] = (v if v > zero else zero) if relu else v


def winograd_output(M, b, relu, tw, out):
    """out[n, k] = the 2x2 tiles A^T m A of M (16, K, P), cropped to (Ho, Wo), plus b[k]
    (b of length 0: no bias), then max(., 0) when ``relu``."""
    run_blocks(_output_block, out.shape[0] * out.shape[1], M, b, relu, tw, out)


@njit(cache=True, nogil=True)
def _grad_output_block(gy, y, relu, tw, dM, db, lo, hi):
    """Planes lo..hi-1 (job = n*K + k) of winograd_grad_output."""
    k_out, ho, wo = gy.shape[1:]
    th = (ho + 1) // 2
    t_img = th * tw
    zero = gy.dtype.type(0)
    # only the plane's own pixels are written, so the padding past them stays zero
    g = np.zeros((2 * th, 2 * tw), dtype=gy.dtype)
    buf = np.empty((16, t_img), dtype=gy.dtype)
    for job in range(lo, hi):
        n, k = job // k_out, job % k_out
        src = gy[n, k]
        yk = y[n, k]
        total = zero
        for i in range(ho):
            for j in range(wo):
                v = src[i, j]
                if relu and not yk[i, j] > zero:
                    v = zero
                g[i, j] = v
                total += v
        db[n, k] = total
        for ti in range(th):
            o = ti * tw
            ga, gb = g[2 * ti], g[2 * ti + 1]
            for tj in range(tw):
                p = o + tj
                g00, g01, g10, g11 = ga[2 * tj], ga[2 * tj + 1], gb[2 * tj], gb[2 * tj + 1]
                # rows of A g (A = [[1, 0], [1, 1], [1, -1], [0, -1]]), then A^T on the right
                s10, s11 = g00 + g10, g01 + g11
                s20, s21 = g00 - g10, g01 - g11
                buf[0, p] = g00
                buf[1, p] = g00 + g01
                buf[2, p] = g00 - g01
                buf[3, p] = -g01
                buf[4, p] = s10
                buf[5, p] = s10 + s11
                buf[6, p] = s10 - s11
                buf[7, p] = -s11
                buf[8, p] = s20
                buf[9, p] = s20 + s21
                buf[10, p] = s20 - s21
                buf[11, p] = -s21
                buf[12, p] = -g10
                buf[13, p] = -g10 - g11
                buf[14, p] = g11 - g10
                buf[15, p] = g11
        for u in range(16):
            dM[u, k, n * t_img:(n + 1) * t_img] = buf[u]


def winograd_grad_output(gy, y, relu, tw, dM, db):
    """dM[:, k, p] = A g A^T for each 2x2 tile g of gy (N, K, Ho, Wo) (masked by y > 0 when
    ``relu``; zero past the edge), and db[n, k] = the sum of image n's masked plane k."""
    run_blocks(_grad_output_block, gy.shape[0] * gy.shape[1], gy, y, relu, tw, dM, db)


@njit(cache=True, nogil=True)
def _grad_input_block(dV, pt, pl, th, tw, gx, lo, hi):
    """Planes lo..hi-1 (job = n*C + c) of winograd_grad_input."""
    c_in, h_in, w_in = gx.shape[1:]
    t_img = th * tw
    e = np.empty((16, t_img), dtype=dV.dtype)
    g = np.empty((2 * th + 2, 2 * tw + 2), dtype=gx.dtype)
    z = np.empty((4, 4, tw), dtype=gx.dtype)  # one tile row's B dV: (row, column, tile)
    for job in range(lo, hi):
        n, c = job // c_in, job % c_in
        base = n * t_img
        for u in range(16):
            e[u] = dV[u, c, base:base + t_img]
        g[:, :] = 0  # the plane accumulates overlapping tiles: start from zero
        for ti in range(th):
            o = ti * tw
            for v in range(4):  # B on the left, for every tile of the row
                e0, e1, e2, e3 = e[v, o:o + tw], e[4 + v, o:o + tw], e[8 + v, o:o + tw], e[12 + v, o:o + tw]
                for tj in range(tw):
                    z[0, v, tj] = e0[tj]
                    z[1, v, tj] = e1[tj] - e2[tj] + e3[tj]
                    z[2, v, tj] = e1[tj] + e2[tj] - e0[tj]
                    z[3, v, tj] = -e3[tj]
            for r in range(4):  # then B^T on the right, tiles overlapping by two columns
                row = g[2 * ti + r]
                zr = z[r]
                for tj in range(tw):
                    b0, b1, b2, b3 = zr[0, tj], zr[1, tj], zr[2, tj], zr[3, tj]
                    q = 2 * tj
                    row[q] += b0
                    row[q + 1] += b1 - b2 + b3
                    row[q + 2] += b1 + b2 - b0
                    row[q + 3] -= b3
        dst = gx[n, c]
        for h in range(h_in):
            for w in range(w_in):
                dst[h, w] = g[h + pt, w + pl]


def winograd_grad_input(dV, pt, pl, th, tw, gx):
    """gx[n, c] = the sum over tiles of B dV B^T, each 4x4 tile added at rows 2*ti - pt..,
    columns 2*tj - pl.. (the padding's share dropped); one thread owns each image plane."""
    run_blocks(_grad_input_block, gx.shape[0] * gx.shape[1], dV, pt, pl, th, tw, gx)


# ---- fused im2col / col2im ---------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _gather_block(x, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols, lo, hi):
    """Rows lo..hi-1 of gather_columns (row = (c*kh + a)*kw + b)."""
    n_img, c_in, h_in, w_in = x.shape
    zero = x.dtype.type(0)
    for row in range(lo, hi):
        c = row // (kh * kw)
        a = (row // kw) % kh
        b = row % kw
        out = cols[row]
        for n in range(n_img):
            plane = x[n, c]
            for i in range(ho):
                h = i * sh + a * dh - pt
                base = (n * ho + i) * wo
                if h < 0 or h >= h_in:
                    for j in range(wo):
                        out[base + j] = zero
                    continue
                src = plane[h]
                for j in range(wo):
                    w = j * sw + b * dw - pl
                    out[base + j] = src[w] if 0 <= w < w_in else zero


def gather_columns(x, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols):
    """cols[(c*kh + a)*kw + b, (n*Ho + i)*Wo + j] = x[n, c, i*sh + a*dh - pt, j*sw + b*dw - pl]
    (zero in the padding)."""
    run_blocks(_gather_block, x.shape[1] * kh * kw, x, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, cols)


@njit(cache=True, nogil=True)
def _scatter_block(gcols, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, gx, lo, hi):
    """Planes lo..hi-1 (job = n*C + c) of scatter_columns."""
    n_img, c_in, h_in, w_in = gx.shape
    zero = gx.dtype.type(0)
    for job in range(lo, hi):
        n = job // c_in
        c = job % c_in
        g = gx[n, c]
        for h in range(h_in):
            for w in range(w_in):
                g[h, w] = zero
        for a in range(kh):
            for b in range(kw):
                src = gcols[(c * kh + a) * kw + b]
                for i in range(ho):
                    h = i * sh + a * dh - pt
                    if h < 0 or h >= h_in:
                        continue
                    base = (n * ho + i) * wo
                    row = g[h]
                    for j in range(wo):
                        w = j * sw + b * dw - pl
                        if 0 <= w < w_in:
                            row[w] += src[base + j]


def scatter_columns(gcols, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, gx):
    """gx[n, c, h, w] = the sum of gcols[(c*kh + a)*kw + b, (n*Ho + i)*Wo + j] over the taps
    (a, b) and output pixels (i, j) that read input pixel (h, w): col2im, gathered per pixel so
    each thread writes only its own image planes, in a fixed order."""
    run_blocks(_scatter_block, gx.shape[0] * gx.shape[1], gcols, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, gx)


@njit(cache=True, nogil=True)
def _bias_relu_block(y, b, relu, out, lo, hi):
    """Planes lo..hi-1 (job = n*K + k) of bias_relu_nchw."""
    k_out, ho, wo = out.shape[1:]
    hw = ho * wo
    has_b = b.shape[0] > 0
    zero = out.dtype.type(0)
    for job in range(lo, hi):
        n = job // k_out
        k = job % k_out
        bias = b[k] if has_b else zero
        src = y[k]
        dst = out[n, k]
        base = n * hw
        for i in range(ho):
            row = dst[i]
            for j in range(wo):
                v = src[base + i * wo + j] + bias
                row[j] = (v if v > zero else zero) if relu else v


def bias_relu_nchw(y, b, relu, out):
    """out (N, K, Ho, Wo) from the GEMM's (K, N*Ho*Wo) result, plus b[k] (b of length 0: no
    bias), then max(., 0) when ``relu``: the epilogue in one pass."""
    run_blocks(_bias_relu_block, out.shape[0] * out.shape[1], y, b, relu, out)


@njit(cache=True, nogil=True)
def _grad_rows_block(gy, y, relu, gy_t, db, lo, hi):
    """Planes lo..hi-1 (job = n*K + k) of grad_rows."""
    k_out, ho, wo = gy.shape[1:]
    hw = ho * wo
    zero = gy.dtype.type(0)
    for job in range(lo, hi):
        n = job // k_out
        k = job % k_out
        src = gy[n, k]
        ys = y[n, k]
        dst = gy_t[k]
        base = n * hw
        total = zero
        for i in range(ho):
            for j in range(wo):
                v = src[i, j]
                if relu and not ys[i, j] > zero:
                    v = zero
                dst[base + i * wo + j] = v
                total += v
        db[n, k] = total


def grad_rows(gy, y, relu, gy_t, db):
    """gy_t (K, N*Ho*Wo) = gy (N, K, Ho, Wo) moved channel-first (masked by y > 0 when
    ``relu``) and db[n, k] = the sum of its plane, in one pass."""
    run_blocks(_grad_rows_block, gy.shape[0] * gy.shape[1], gy, y, relu, gy_t, db)
