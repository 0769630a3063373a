"""The dilated im2col / col2im kernels, grouped and transposed convolution launchers and the
average-pooling kernels against direct NumPy float64 loops; and the functional ops' GPU
branches (dilation, groups, conv1d, conv_transpose2d, "same" pooling) against their NumPy
branches."""
import numpy as np
import pytest

from gpudl import Tensor
from gpudl import functional as F
from gpudl.backend import to_numpy
from gpudl.functional import activation, conv, pooling
from gpudl.kernels import _launch
from gpudl.kernels import conv as K
from gpudl.kernels import pooling as P

SIMULATED = _launch.simulated()


def _padded(x, pads, fill=0.0):
    top, bottom, left, right = pads
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)


def _out_hw(shape, kh, kw, stride, pads, dilation):
    H, W = shape[2:]
    return ((H + pads[0] + pads[1] - (kh - 1) * dilation[0] - 1) // stride[0] + 1,
            (W + pads[2] + pads[3] - (kw - 1) * dilation[1] - 1) // stride[1] + 1)


def _ref_im2col(x, kh, kw, stride, pads, dilation):
    """cols[n, (c, ki, kj), (ho, wo)] = xpad[n, c, ho*sh + ki*dh, wo*sw + kj*dw], one pixel at a time."""
    xp_ = _padded(x, pads)
    N, C = x.shape[:2]
    Ho, Wo = _out_hw(x.shape, kh, kw, stride, pads, dilation)
    cols = np.empty((N, C, kh, kw, Ho, Wo))
    for ki in range(kh):
        for kj in range(kw):
            for i in range(Ho):
                for j in range(Wo):
                    cols[:, :, ki, kj, i, j] = xp_[:, :, i * stride[0] + ki * dilation[0],
                                                   j * stride[1] + kj * dilation[1]]
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def _ref_col2im(cols, x_shape, kh, kw, stride, pads, dilation):
    """The adjoint of im2col as a scatter-add, entry by entry (the kernel gathers)."""
    N, C, H, W = x_shape
    top, bottom, left, right = pads
    Ho, Wo = _out_hw(x_shape, kh, kw, stride, pads, dilation)
    gxp = np.zeros((N, C, H + top + bottom, W + left + right))
    c6 = cols.astype(np.float64).reshape(N, C, kh, kw, Ho, Wo)
    for ki in range(kh):
        for kj in range(kw):
            for i in range(Ho):
                for j in range(Wo):
                    gxp[:, :, i * stride[0] + ki * dilation[0], j * stride[1] + kj * dilation[1]] += \
                        c6[:, :, ki, kj, i, j]
    return gxp[:, :, top:top + H, left:left + W]


def _ref_conv_backward(x, W, gy, stride, pads, dilation, groups):
    """y, gx, gW, gb of a grouped dilated convolution, written window by window."""
    xp_ = _padded(x, pads)
    F_, Cg, kh, kw = W.shape
    Fg = F_ // groups
    Ho, Wo = gy.shape[2:]
    y = np.zeros(gy.shape)
    gxp = np.zeros_like(xp_)
    gW = np.zeros(W.shape)
    g = gy.astype(np.float64)
    Wd = W.astype(np.float64)
    for i in range(Ho):
        for j in range(Wo):
            rows = slice(i * stride[0], i * stride[0] + (kh - 1) * dilation[0] + 1, dilation[0])
            cols = slice(j * stride[1], j * stride[1] + (kw - 1) * dilation[1] + 1, dilation[1])
            for grp in range(groups):
                ch, fo = slice(grp * Cg, (grp + 1) * Cg), slice(grp * Fg, (grp + 1) * Fg)
                patch = xp_[:, ch, rows, cols]
                y[:, fo, i, j] = np.einsum("nckl,fckl->nf", patch, Wd[fo])
                gW[fo] += np.einsum("nf,nckl->fckl", g[:, fo, i, j], patch)
                gxp[:, ch, rows, cols] += np.einsum("nf,fckl->nckl", g[:, fo, i, j], Wd[fo])
    gx = gxp[:, :, pads[0]:pads[0] + x.shape[2], pads[2]:pads[2] + x.shape[3]]
    return y, gx, gW, g.sum(axis=(0, 2, 3))


# (x shape, kh, kw, stride, pads, dilation): stride and dilation sharing a factor or not, so
# the taps that meet a pixel step by sh / gcd(sh, dh)
IM2COL_CASES = [
    ((1, 1, 7, 6), 3, 2, (1, 1), (0, 0, 0, 0), (2, 3)),
    ((2, 2, 8, 7), 2, 3, (2, 2), (1, 0, 2, 1), (2, 2)),
    ((1, 2, 9, 8), 3, 3, (2, 3), (1, 1, 0, 2), (3, 2)),
    ((2, 3, 9, 6), 2, 2, (4, 1), (2, 1, 1, 1), (2, 1)),
    ((1, 1, 5, 9), 2, 2, (3, 2), (0, 1, 1, 0), (1, 4)),
]
IM2COL_IDS = ["s1-d23", "s2-d2", "s23-d32", "s4-d2", "d1-rows"]


@pytest.mark.parametrize("x_shape,kh,kw,stride,pads,dilation", IM2COL_CASES, ids=IM2COL_IDS)
def test_dilated_im2col_col2im(xp, dtype, rng, poison, tol, x_shape, kh, kw, stride, pads, dilation):
    x = rng.standard_normal(x_shape).astype(dtype)
    ref = _ref_im2col(x, kh, kw, stride, pads, dilation)
    poison(ref.size * dtype.itemsize)
    cols = K.im2col(xp.asarray(x), kh, kw, stride, pads, dilation=dilation)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(to_numpy(cols), ref)

    g = rng.standard_normal(ref.shape).astype(dtype)
    poison(x.nbytes)
    gx = K.col2im(xp.asarray(g), x_shape, kh, kw, stride, pads, dilation=dilation)
    np.testing.assert_allclose(to_numpy(gx), _ref_col2im(g, x_shape, kh, kw, stride, pads, dilation), **tol)


# (x shape, W shape, stride, pads, dilation, groups)
CONV_CASES = [
    ((1, 2, 6, 5), (3, 2, 2, 2), (1, 1), (1, 1, 0, 1), (2, 2), 1),
    ((2, 4, 5, 5), (4, 2, 3, 2), (2, 1), (1, 0, 1, 1), (1, 1), 2),
    ((2, 3, 5, 6), (3, 1, 2, 3), (1, 2), (0, 1, 1, 1), (2, 1), 3),
    ((1, 4, 7, 6), (8, 1, 2, 2), (2, 2), (0, 0, 0, 0), (3, 2), 4),
]
CONV_IDS = ["dilated", "grouped", "depthwise-dilated", "depthwise-s2-d32"]


@pytest.mark.parametrize("x_shape,w_shape,stride,pads,dilation,groups", CONV_CASES, ids=CONV_IDS)
def test_conv2d_dilation_groups(xp, dtype, rng, poison, tol, x_shape, w_shape, stride, pads, dilation, groups):
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    Ho, Wo = _out_hw(x_shape, w_shape[2], w_shape[3], stride, pads, dilation)
    gy = rng.standard_normal((x_shape[0], w_shape[0], Ho, Wo)).astype(dtype)
    ref_y, ref_gx, ref_gW, ref_gb = _ref_conv_backward(x, W, gy, stride, pads, dilation, groups)
    ref_y = ref_y + b.astype(np.float64)[None, :, None, None]
    poison(ref_y.size * dtype.itemsize)
    y = K.conv2d_forward(xp.asarray(x), xp.asarray(W), xp.asarray(b), stride, pads, dilation=dilation,
                         groups=groups)
    assert y.shape == ref_y.shape and y.dtype == dtype
    np.testing.assert_allclose(to_numpy(y), ref_y, **tol)

    poison(x.nbytes, W.nbytes)
    gx, gW, gb = K.conv2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), stride, pads,
                                   dilation=dilation, groups=groups)
    np.testing.assert_allclose(to_numpy(gx), ref_gx, **tol)
    np.testing.assert_allclose(to_numpy(gW), ref_gW, **tol)
    np.testing.assert_allclose(to_numpy(gb), ref_gb, **tol)
    _, gW2, _ = K.conv2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), stride, pads,
                                  need_x_grad=False, dilation=dilation, groups=groups)
    np.testing.assert_allclose(to_numpy(gW2), ref_gW, **tol)


def test_grouped_relu_epilogue(xp, dtype, rng, tol):
    x = rng.standard_normal((2, 4, 5, 4)).astype(dtype)
    W = rng.standard_normal((4, 2, 2, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    pads, dil = (1, 0, 0, 1), (2, 1)
    y = K.conv2d_forward(xp.asarray(x), xp.asarray(W), xp.asarray(b), 1, pads, relu=True, dilation=dil, groups=2)
    gy = rng.standard_normal(y.shape).astype(dtype)
    ref_y, _, _, _ = _ref_conv_backward(x, W, gy, (1, 1), pads, dil, 2)
    ref_y = np.maximum(ref_y + b.astype(np.float64)[None, :, None, None], 0.0)
    np.testing.assert_allclose(to_numpy(y), ref_y, **tol)
    _, ref_gx, ref_gW, ref_gb = _ref_conv_backward(x, W, np.where(to_numpy(y) > 0, gy, 0), (1, 1), pads, dil, 2)
    gx, gW, gb = K.conv2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), 1, pads, relu_y=y,
                                   dilation=dil, groups=2)
    for got, want in ((gx, ref_gx), (gW, ref_gW), (gb, ref_gb)):
        np.testing.assert_allclose(to_numpy(got), want, **tol)


def _ref_transpose(x, W, gy, stride, pads, output_padding, dilation):
    """y, gx, gW, gb of the transposed convolution, scattered pixel by pixel; gy None: y only."""
    N, C_in, H, Wd = x.shape
    _, C_out, kh, kw = W.shape
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, output_padding
    top, bottom, left, right = pads
    full = ((H - 1) * sh + (kh - 1) * dh + 1, (Wd - 1) * sw + (kw - 1) * dw + 1)
    Ho, Wo = full[0] - top - bottom + oh, full[1] - left - right + ow
    big = np.zeros((N, C_out, full[0] + oh + top, full[1] + ow + left))
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    for i in range(H):
        for j in range(Wd):
            for a in range(kh):
                for c in range(kw):
                    big[:, :, i * sh + a * dh, j * sw + c * dw] += x64[:, :, i, j] @ W64[:, :, a, c]
    y = big[:, :, top:top + Ho, left:left + Wo]
    if gy is None:
        return y
    gbig = np.zeros_like(big)
    gbig[:, :, top:top + Ho, left:left + Wo] = gy
    gx = np.zeros(x.shape)
    gW = np.zeros(W.shape)
    for i in range(H):
        for j in range(Wd):
            for a in range(kh):
                for c in range(kw):
                    g = gbig[:, :, i * sh + a * dh, j * sw + c * dw]
                    gx[:, :, i, j] += g @ W64[:, :, a, c].T
                    gW[:, :, a, c] += x64[:, :, i, j].T @ g
    return y, gx, gW, gy.astype(np.float64).sum(axis=(0, 2, 3))


# (x shape, W shape, stride, pads, output_padding, dilation)
TRANSPOSE_CASES = [
    ((1, 2, 3, 3), (2, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (1, 1)),
    ((2, 3, 2, 3), (3, 2, 2, 3), (2, 3), (0, 1, 1, 0), (1, 2), (1, 1)),
    ((2, 2, 3, 2), (2, 2, 2, 2), (1, 1), (1, 0, 0, 1), (1, 0), (2, 3)),
    ((1, 2, 2, 2), (2, 1, 3, 2), (3, 2), (0, 2, 0, 0), (2, 1), (1, 2)),
]
TRANSPOSE_IDS = ["s2-pad1-op1", "asymmetric", "dilated-op-below-dilation", "op-past-the-pad"]


@pytest.mark.parametrize("x_shape,w_shape,stride,pads,output_padding,dilation", TRANSPOSE_CASES,
                         ids=TRANSPOSE_IDS)
def test_conv_transpose2d(xp, dtype, rng, poison, tol, x_shape, w_shape, stride, pads, output_padding, dilation):
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1]).astype(dtype)
    ref_y = _ref_transpose(x, W, None, stride, pads, output_padding, dilation)
    ref_y = ref_y + b.astype(np.float64)[None, :, None, None]
    poison(ref_y.size * dtype.itemsize)
    y = K.conv_transpose2d_forward(xp.asarray(x), xp.asarray(W), xp.asarray(b), stride, pads, output_padding,
                                   dilation=dilation)
    assert y.shape == ref_y.shape and y.dtype == dtype
    np.testing.assert_allclose(to_numpy(y), ref_y, **tol)

    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    _, ref_gx, ref_gW, ref_gb = _ref_transpose(x, W, gy, stride, pads, output_padding, dilation)
    poison(x.nbytes, W.nbytes)
    gx, gW, gb = K.conv_transpose2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), stride, pads,
                                             output_padding, dilation=dilation)
    assert gx.shape == x.shape and gx.flags.c_contiguous
    np.testing.assert_allclose(to_numpy(gx), ref_gx, **tol)
    np.testing.assert_allclose(to_numpy(gW), ref_gW, **tol)
    np.testing.assert_allclose(to_numpy(gb), ref_gb, **tol)


def test_conv_transpose2d_relu(xp, dtype, rng, tol):
    x = rng.standard_normal((2, 2, 3, 2)).astype(dtype)
    W = rng.standard_normal((2, 3, 2, 2)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    args = ((2, 2), (0, 0, 1, 0), (1, 0))
    y = K.conv_transpose2d_forward(xp.asarray(x), xp.asarray(W), xp.asarray(b), *args, relu=True)
    ref = _ref_transpose(x, W, None, *args, (1, 1)) + b.astype(np.float64)[None, :, None, None]
    np.testing.assert_allclose(to_numpy(y), np.maximum(ref, 0), **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    _, ref_gx, ref_gW, ref_gb = _ref_transpose(x, W, np.where(to_numpy(y) > 0, gy, 0), *args, (1, 1))
    gx, gW, gb = K.conv_transpose2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), *args, relu_y=y)
    for got, want in ((gx, ref_gx), (gW, ref_gW), (gb, ref_gb)):
        np.testing.assert_allclose(to_numpy(got), want, **tol)
    gx, _, _ = K.conv_transpose2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), *args, relu_y=y,
                                           need_x_grad=False)
    assert gx is None


def _ref_avg(x, kernel, stride, pads, include):
    xp_ = _padded(x, pads)
    real = _padded(np.ones_like(x), pads)
    kh, kw = kernel
    Ho = (xp_.shape[2] - kh) // stride[0] + 1
    Wo = (xp_.shape[3] - kw) // stride[1] + 1
    y = np.empty(x.shape[:2] + (Ho, Wo))
    count = np.empty((Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = (slice(None), slice(None), slice(i * stride[0], i * stride[0] + kh),
                   slice(j * stride[1], j * stride[1] + kw))
            count[i, j] = kh * kw if include else real[win][0, 0].sum()
            y[:, :, i, j] = xp_[win].sum(axis=(2, 3)) / count[i, j]
    return y, count


def _ref_avg_backward(gy, x_shape, kernel, stride, pads, count):
    top, bottom, left, right = pads
    N, C, H, W = x_shape
    gxp = np.zeros((N, C, H + top + bottom, W + left + right))
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            gxp[:, :, i * stride[0]:i * stride[0] + kernel[0], j * stride[1]:j * stride[1] + kernel[1]] += \
                (gy[:, :, i, j].astype(np.float64) / count[i, j])[:, :, None, None]
    return gxp[:, :, top:top + H, left:left + W]


AVG_CASES = [
    ((2, 3, 4, 6), (2, 2), (2, 2), (0, 0, 0, 0)),
    ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 2, 5, 6), (3, 2), (2, 1), (1, 0, 0, 1)),    # "same"-like: odd pad bottom/right
    ((1, 1, 7, 3), (3, 3), (1, 1), (1, 1, 0, 2)),
    ((3, 3, 7, 8), (2, 3), (3, 3), (0, 1, 1, 1)),    # more samples and channels than the grid
]
AVG_IDS = ["2x2s2", "3x3s2-pad1", "asymmetric", "3x3s1", "stride-over-kernel"]


@pytest.mark.parametrize("include", [True, False], ids=["count-pads", "real-cells"])
@pytest.mark.parametrize("x_shape,kernel,stride,pads", AVG_CASES, ids=AVG_IDS)
def test_avg_pool(xp, dtype, rng, poison, tol, x_shape, kernel, stride, pads, include):
    x = rng.standard_normal(x_shape).astype(dtype)
    ref_y, count = _ref_avg(x, kernel, stride, pads, include)
    poison(ref_y.size * dtype.itemsize)
    y = P.avg_pool2d_forward(xp.asarray(x), kernel, stride, pads, count_include_pad=include)
    assert y.dtype == dtype
    np.testing.assert_allclose(to_numpy(y), ref_y, **tol)
    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    poison(x.nbytes)
    gx = P.avg_pool2d_backward(xp.asarray(gy), x_shape, kernel, stride, pads, count_include_pad=include)
    assert gx.shape == x_shape and gx.dtype == dtype
    np.testing.assert_allclose(to_numpy(gx), _ref_avg_backward(gy, x_shape, kernel, stride, pads, count), **tol)


def test_rejects_bad_input():
    x = np.zeros((1, 4, 5, 5), np.float32)
    W = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"with groups=2, x's channels \(4\) and W's filters must divide"):
        K.conv2d_forward(x, np.zeros((3, 2, 3, 3), np.float32), None, 1, (0, 0, 0, 0), groups=2)
    with pytest.raises(ValueError, match=r"W must be \(F, C/groups, kh, kw\)"):
        K.conv2d_forward(x, W, None, 1, (0, 0, 0, 0), groups=4)
    with pytest.raises(ValueError, match="groups must be a positive int, got 0"):
        K.conv2d_backward(x, W, np.zeros((1, 4, 3, 3), np.float32), 1, (0, 0, 0, 0), groups=0)
    with pytest.raises(ValueError, match="dilation must be positive"):
        K.conv2d_forward(x, W, None, 1, (0, 0, 0, 0), dilation=(1, 0), groups=2)
    with pytest.raises(ValueError, match=r"a 3x3 window dilated by \(3, 3\) does not fit a 5x5 input"):
        K.conv2d_forward(x, W, None, 1, (0, 0, 0, 0), dilation=3, groups=2)
    with pytest.raises(ValueError, match=r"cols must have shape \(1, 36, 1\)"):
        K.col2im(np.zeros((1, 36, 9), np.float32), (1, 4, 5, 5), 3, 3, 1, (0, 0, 0, 0), dilation=2)
    with pytest.raises(ValueError, match=r"W must be \(C_in, C_out, kh, kw\) with C_in = 4"):
        K.conv_transpose2d_forward(x, np.zeros((2, 4, 3, 3), np.float32), None, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="output_padding must be non-negative"):
        K.conv_transpose2d_forward(x, W, None, 1, (0, 0, 0, 0), output_padding=(0, -1))
    with pytest.raises(ValueError, match=r"crop the whole output .* leaving \(-1, 7\)"):
        K.conv_transpose2d_forward(np.zeros((1, 4, 1, 5), np.float32), np.zeros((4, 2, 1, 3), np.float32),
                                   None, 1, (1, 1, 0, 0))
    with pytest.raises(ValueError, match=r"gy must have shape \(1, 2, 7, 7\)"):
        K.conv_transpose2d_backward(x, W, np.zeros((1, 2, 7, 6), np.float32), 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"relu_y must have shape \(1, 2, 7, 7\)"):
        K.conv_transpose2d_backward(x, W, np.zeros((1, 2, 7, 7), np.float32), 1, (0, 0, 0, 0),
                                    relu_y=np.zeros((1, 2, 7, 6), np.float32))
    with pytest.raises(TypeError, match="W must have the dtype of x"):
        K.conv_transpose2d_forward(x, W.astype(np.float64), None, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"count_include_pad=False every window must hold a real cell"):
        P.avg_pool2d_forward(np.zeros((1, 1, 4, 4), np.float32), 2, 2, (2, 0, 0, 0), count_include_pad=False)
    with pytest.raises(ValueError, match=r"gy must have shape \(1, 1, 2, 2\)"):
        P.avg_pool2d_backward(np.zeros((1, 1, 3, 2), np.float32), (1, 1, 4, 4), 2, 2, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="does not fit"):
        P.avg_pool2d_forward(np.zeros((1, 1, 4, 4), np.float32), 5, 1, (0, 0, 0, 0))


def test_a_window_of_padding_averages_to_zero_when_pads_count(xp, dtype):
    x = np.ones((1, 1, 4, 4), dtype)
    y = P.avg_pool2d_forward(xp.asarray(x), 2, 2, (2, 0, 0, 0))
    np.testing.assert_array_equal(to_numpy(y)[0, 0], [[0, 0], [1, 1], [1, 1]])


# ---- the functional ops' GPU branch against their NumPy branch -----------------------------

def _run(fn, arrays, gpu, monkeypatch):
    for mod in (activation, conv, pooling):
        monkeypatch.setattr(mod, "on_gpu", (lambda *a: True) if gpu else (lambda *a: False))
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    y = fn(*ts)
    w = np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)
    (y * Tensor(w)).sum().backward()
    return y.numpy(), [t.grad for t in ts]


WIRING = [
    ("conv_dilated_same", lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=2),
     [(2, 2, 5, 4), (3, 2, 2, 3), (3,)]),
    ("conv_grouped_relu", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2, activation="relu"),
     [(2, 4, 5, 4), (4, 2, 3, 2), (4,)]),
    ("conv_depthwise_dilated_strided", lambda x, w: F.conv2d(x, w, stride=2, dilation=(2, 3), groups=3),
     [(1, 3, 7, 8), (6, 1, 2, 2)]),
    ("conv1d_causal_grouped", lambda x, w, b: F.conv1d(x, w, b, padding="causal", dilation=2, groups=2),
     [(2, 4, 7), (2, 2, 3), (2,)]),
    ("conv_transpose", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
     [(2, 2, 3, 3), (2, 3, 3, 3), (3,)]),
    ("conv_transpose_dilated_relu", lambda x, w: F.conv_transpose2d(x, w, padding=(0, 1), dilation=2,
                                                                      activation="relu"),
     [(1, 2, 3, 3), (2, 2, 2, 3)]),
    ("max_pool_same", lambda x: F.max_pool2d(x, 3, 2, "same"), [(2, 2, 5, 6)]),
    ("avg_pool_same", lambda x: F.avg_pool2d(x, (2, 3), (2, 1), "same", count_include_pad=False), [(1, 2, 5, 4)]),
    ("avg_pool_counts_pads", lambda x: F.avg_pool2d(x, 3, 2, 1), [(2, 1, 5, 5)]),
]


@pytest.mark.skipif(not SIMULATED, reason="runs the kernels under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")
@pytest.mark.parametrize("name,fn,shapes", WIRING, ids=[c[0] for c in WIRING])
def test_gpu_branch_equals_numpy_branch(name, fn, shapes, monkeypatch):
    rng = np.random.default_rng(7)
    arrays = [rng.permutation(int(np.prod(s))).reshape(s).astype(np.float32) / 10 - 1 for s in shapes]
    y_cpu, g_cpu = _run(fn, arrays, False, monkeypatch)
    y_gpu, g_gpu = _run(fn, arrays, True, monkeypatch)
    np.testing.assert_allclose(y_gpu, y_cpu, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_gpu, g_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
