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

from ._threads import run_blocks  # the thread pool (no numba there)


# ---- Winograd F(2x2, 3x3) ----------------------------------------------------------------------

# Every loop below works through one (image, channel) plane at a time. A tile's 16 values
# live in 16 rows of P_img = th*tw values (tile p = ti*tw + tj), and rows of V, M, dM and dV
# are read and written as 16 contiguous runs per plane (writing each tile's 16 values straight
# into (16, channels, P) touched 16 addresses a multiple of channels*P*4 bytes apart, the same
# cache sets: 3-5x slower).
#
# The output, output-gradient and input-gradient transforms run each step as one loop over all
# the plane's tiles that writes one row from one to three others: one store stream and unit
# stride, so LLVM vectorises it behind a few runtime overlap checks. Written tile by tile (16
# stores per iteration, stride-2 reads of the 2x2 outputs) they compiled to scalar code and
# took 1.6-2x longer. The gradients and outputs are kept split by the parity of their row and
# column ("phases"), so a tile's cell (a, b) is a whole-plane load from phase (a % 2, b % 2);
# the interleaving happens once, on the copy from or to the image plane. The input transform
# keeps its per-tile-row loops over a zero-bordered copy of the plane: the phase form measured
# no faster there (its cost is writing V, 4x the input's size).


# Each kernel is a serial compiled function over a range of planes (scratch made once per
# call, inside the function), compiled with nogil: Winograd's pipelines
# (conv_algorithms.Winograd) call them from each thread on its own images, the fused gathers
# through run_blocks. numba's parallel=True took about a minute to compile these loops (its
# passes turn every allocation and slice copy in a prange body into nested parfors), and its
# OpenMP threads spin after each region, which stole the cores from the BLAS calls between
# the transforms.


@njit(cache=True, nogil=True)
def winograd_input(x, pt, pl, th, tw, V, lo, hi):
    """V[u*4 + v, c, (n*th + ti)*tw + tj] = (B^T d B)[u, v] for the 4x4 tile d of the
    zero-padded image at rows 2*ti - pt.., columns 2*tj - pl...

    Planes lo..hi-1 (job = n*C + c) only, in the calling thread (the caller splits the planes
    over its threads)."""
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




@njit(cache=True, nogil=True)
def winograd_output(M, b, relu, tw, out, lo, hi):
    """out[n, k] = the 2x2 tiles A^T m A of M (16, K, P), cropped to (Ho, Wo), plus b[k]
    (b of length 0: no bias), then max(., 0) when ``relu``.

    Planes lo..hi-1 (job = n*K + k) only, in the calling thread (the caller splits the planes
    over its threads)."""
    k_out, ho, wo = out.shape[1:]
    th = (ho + 1) // 2
    t_img = th * tw
    has_b = b.shape[0] > 0
    zero = out.dtype.type(0)
    a = np.empty((8, t_img), dtype=M.dtype)  # A^T m: a[j] = rows 0 and a[4 + j] = row 1 of column j
    y = np.empty((4, t_img), dtype=out.dtype)  # the tile's (row, column) (0,0) (0,1) (1,0) (1,1)
    for job in range(lo, hi):
        n, k = job // k_out, job % k_out
        bias = b[k] if has_b else zero
        base = n * t_img
        for j in range(4):
            m0 = M[j, k, base:base + t_img]
            m1 = M[4 + j, k, base:base + t_img]
            m2 = M[8 + j, k, base:base + t_img]
            m3 = M[12 + j, k, base:base + t_img]
            aj = a[j]
            cj = a[4 + j]
            for p in range(t_img):
                aj[p] = m0[p] + m1[p] + m2[p]
            for p in range(t_img):
                cj[p] = m1[p] - m2[p] - m3[p]
        for r in range(2):  # then A on the right, bias added
            e0, e1, e2, e3 = a[4 * r], a[4 * r + 1], a[4 * r + 2], a[4 * r + 3]
            ye, yo = y[2 * r], y[2 * r + 1]
            for p in range(t_img):
                ye[p] = e0[p] + e1[p] + e2[p] + bias
            for p in range(t_img):
                yo[p] = e1[p] - e2[p] - e3[p] + bias
        dst = out[n, k]
        w_pairs = wo // 2
        for i in range(ho):
            ti, r = i // 2, i % 2
            ye = y[2 * r, ti * tw:]
            yo = y[2 * r + 1, ti * tw:]
            row = dst[i]
            if relu:
                for j in range(w_pairs):
                    ve, vo = ye[j], yo[j]
                    row[2 * j] = ve if ve > zero else zero
                    row[2 * j + 1] = vo if vo > zero else zero
                if wo % 2:
                    ve = ye[w_pairs]
                    row[wo - 1] = ve if ve > zero else zero
            else:
                for j in range(w_pairs):
                    row[2 * j] = ye[j]
                    row[2 * j + 1] = yo[j]
                if wo % 2:
                    row[wo - 1] = ye[w_pairs]




@njit(cache=True, nogil=True)
def winograd_grad_output(gy, y, relu, tw, dM, db, lo, hi):
    """dM[:, k, p] = A g A^T for each 2x2 tile g of gy (N, K, Ho, Wo) (masked by y > 0 when
    ``relu``; zero past the edge), and db[n, k] = the sum of image n's masked plane k.

    Planes lo..hi-1 (job = n*K + k) only, in the calling thread (the caller splits the planes
    over its threads)."""
    k_out, ho, wo = gy.shape[1:]
    th = (ho + 1) // 2
    t_img = th * tw
    zero = gy.dtype.type(0)
    # g[r * 2 + s, ti*tw + tj] = the masked gradient at row 2ti + r, column 2tj + s; only the
    # plane's own pixels are written, so the cells past an odd edge stay zero
    g = np.zeros((4, t_img), dtype=gy.dtype)
    s = np.empty((4, t_img), dtype=gy.dtype)  # the rows of A g: s10, s11, s20, s21
    for job in range(lo, hi):
        n, k = job // k_out, job % k_out
        src = gy[n, k]
        yk = y[n, k]
        total = zero
        for i in range(ho):
            r = i % 2
            ge = g[2 * r, (i // 2) * tw:]
            go = g[2 * r + 1, (i // 2) * tw:]
            srow = src[i]
            yrow = yk[i]
            for j in range(wo):
                v = srow[j]
                if relu and not yrow[j] > zero:
                    v = zero
                total += v
                if j % 2 == 0:
                    ge[j // 2] = v
                else:
                    go[j // 2] = v
        db[n, k] = total
        g00, g01, g10, g11 = g[0], g[1], g[2], g[3]
        s10, s11, s20, s21 = s[0], s[1], s[2], s[3]
        # rows of A g (A = [[1, 0], [1, 1], [1, -1], [0, -1]]), then A^T on the right
        for p in range(t_img):
            s10[p] = g00[p] + g10[p]
        for p in range(t_img):
            s11[p] = g01[p] + g11[p]
        for p in range(t_img):
            s20[p] = g00[p] - g10[p]
        for p in range(t_img):
            s21[p] = g01[p] - g11[p]
        base = n * t_img
        for blk in range(4):
            if blk == 0:
                e, o, sign = g00, g01, 1
            elif blk == 1:
                e, o, sign = s10, s11, 1
            elif blk == 2:
                e, o, sign = s20, s21, 1
            else:
                e, o, sign = g10, g11, -1
            d0 = dM[4 * blk, k, base:base + t_img]
            d1 = dM[4 * blk + 1, k, base:base + t_img]
            d2 = dM[4 * blk + 2, k, base:base + t_img]
            d3 = dM[4 * blk + 3, k, base:base + t_img]
            if sign > 0:
                for p in range(t_img):
                    d0[p] = e[p]
                for p in range(t_img):
                    d1[p] = e[p] + o[p]
                for p in range(t_img):
                    d2[p] = e[p] - o[p]
                for p in range(t_img):
                    d3[p] = -o[p]
            else:  # the last row of A is (0, -1): -g10, -g10 - g11, g11 - g10, g11
                for p in range(t_img):
                    d0[p] = -e[p]
                for p in range(t_img):
                    d1[p] = -e[p] - o[p]
                for p in range(t_img):
                    d2[p] = o[p] - e[p]
                for p in range(t_img):
                    d3[p] = o[p]




@njit(cache=True, nogil=True)
def winograd_grad_input(dV, pt, pl, th, tw, gx, lo, hi):
    """gx[n, c] = the sum over tiles of B dV B^T, each 4x4 tile added at rows 2*ti - pt..,
    columns 2*tj - pl.. (the padding's share dropped); one thread owns each image plane.

    Planes lo..hi-1 (job = n*C + c) only, in the calling thread (the caller splits the planes
    over its threads)."""
    c_in, h_in, w_in = gx.shape[1:]
    t_img = th * tw
    L = tw + 1
    z = np.empty((4, t_img), dtype=dV.dtype)  # one row r of B dV: z[v] over the tiles
    # f[r, col] = what row r of each tile adds to its columns 2tj, 2tj+1, 2tj+2, 2tj+3
    f = np.empty((4, 4, t_img), dtype=dV.dtype)
    # the padded plane's gradient by column parity: ge[h, j] = column 2j, go[h, j] = 2j + 1
    ge = np.empty((2 * th + 2, L), dtype=gx.dtype)
    go = np.empty((2 * th + 2, L), dtype=gx.dtype)
    for job in range(lo, hi):
        n, c = job // c_in, job % c_in
        base = n * t_img
        for r in range(4):
            for v in range(4):  # B on the left: row r of each tile's B dV, column v
                e0 = dV[v, c, base:base + t_img]
                e1 = dV[4 + v, c, base:base + t_img]
                e2 = dV[8 + v, c, base:base + t_img]
                e3 = dV[12 + v, c, base:base + t_img]
                zv = z[v]
                if r == 0:
                    for p in range(t_img):
                        zv[p] = e0[p]
                elif r == 1:
                    for p in range(t_img):
                        zv[p] = e1[p] - e2[p] + e3[p]
                elif r == 2:
                    for p in range(t_img):
                        zv[p] = e1[p] + e2[p] - e0[p]
                else:
                    for p in range(t_img):
                        zv[p] = -e3[p]
            b0, b1, b2, b3 = z[0], z[1], z[2], z[3]
            fa, fb, fc, fd = f[r, 0], f[r, 1], f[r, 2], f[r, 3]
            for p in range(t_img):  # then B^T on the right
                fa[p] = b0[p]
            for p in range(t_img):
                fb[p] = b1[p] - b2[p] + b3[p]
            for p in range(t_img):
                fc[p] = b1[p] + b2[p] - b0[p]
            for p in range(t_img):
                fd[p] = -b3[p]
        ge[:, :] = 0  # the plane accumulates overlapping tiles: start from zero
        go[:, :] = 0
        # each cell's shares are added in tile order: tile rows top to bottom, and within a
        # row the right half of tile tj - 1 before the left half of tile tj
        for ti in range(th):
            o = ti * tw
            for r in range(4):
                row_e = ge[2 * ti + r]
                row_o = go[2 * ti + r]
                fa, fb, fc, fd = f[r, 0, o:o + tw], f[r, 1, o:o + tw], f[r, 2, o:o + tw], f[r, 3, o:o + tw]
                re1 = row_e[1:]
                ro1 = row_o[1:]
                for tj in range(tw):
                    re1[tj] += fc[tj]
                for tj in range(tw):
                    ro1[tj] += fd[tj]
                for tj in range(tw):
                    row_e[tj] += fa[tj]
                for tj in range(tw):
                    row_o[tj] += fb[tj]
        dst = gx[n, c]
        for h in range(h_in):
            hh = h + pt
            rowe, rowo = ge[hh], go[hh]
            out = dst[h]
            for w in range(w_in):
                ww = w + pl
                out[w] = rowe[ww // 2] if ww % 2 == 0 else rowo[ww // 2]




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
