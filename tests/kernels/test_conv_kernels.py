"""im2col / col2im kernels and the conv2d launchers against direct NumPy float64 loops."""
import numpy as np
import pytest

from gpudl.backend import to_numpy
from gpudl.kernels import _launch
from gpudl.kernels import conv as K

SIMULATED = _launch.simulated()


def _padded(x, pads):
    top, bottom, left, right = pads
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))


def _out_hw(shape, kh, kw, stride, pads):
    H, W = shape[2:]
    return ((H + pads[0] + pads[1] - kh) // stride[0] + 1,
            (W + pads[2] + pads[3] - kw) // stride[1] + 1)


def _ref_im2col(x, kh, kw, stride, pads):
    xp_ = _padded(x, pads)
    N, C = x.shape[:2]
    Ho, Wo = _out_hw(x.shape, kh, kw, stride, pads)
    cols = np.empty((N, C, kh, kw, Ho, Wo))
    for ki in range(kh):
        for kj in range(kw):
            cols[:, :, ki, kj] = xp_[:, :, ki:ki + stride[0] * Ho:stride[0],
                                     kj:kj + stride[1] * Wo:stride[1]]
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def _ref_col2im(cols, x_shape, kh, kw, stride, pads):
    """The adjoint of im2col as a scatter-add (the kernel gathers)."""
    N, C, H, W = x_shape
    top, bottom, left, right = pads
    Ho, Wo = _out_hw(x_shape, kh, kw, stride, pads)
    gxp = np.zeros((N, C, H + top + bottom, W + left + right))
    c6 = cols.astype(np.float64).reshape(N, C, kh, kw, Ho, Wo)
    for ki in range(kh):
        for kj in range(kw):
            gxp[:, :, ki:ki + stride[0] * Ho:stride[0], kj:kj + stride[1] * Wo:stride[1]] += \
                c6[:, :, ki, kj]
    return gxp[:, :, top:top + H, left:left + W]


def _ref_conv(x, W, b, stride, pads):
    xp_ = _padded(x, pads)
    F, C, kh, kw = W.shape
    Ho, Wo = _out_hw(x.shape, kh, kw, stride, pads)
    y = np.zeros((x.shape[0], F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp_[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            y[:, :, i, j] = np.einsum("nckl,fckl->nf", patch, W.astype(np.float64))
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def _ref_conv_backward(x, W, gy, stride, pads):
    """gx, gW, gb of sum(y * gy), written window by window."""
    xp_ = _padded(x, pads)
    gxp = np.zeros_like(xp_)
    gW = np.zeros(W.shape)
    F, C, kh, kw = W.shape
    g = gy.astype(np.float64)
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            hs, ws = i * stride[0], j * stride[1]
            patch = xp_[:, :, hs:hs + kh, ws:ws + kw]
            gW += np.einsum("nf,nckl->fckl", g[:, :, i, j], patch)
            gxp[:, :, hs:hs + kh, ws:ws + kw] += np.einsum("nf,fckl->nckl", g[:, :, i, j], W)
    top, left = pads[0], pads[2]
    gx = gxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    return gx, gW, g.sum(axis=(0, 2, 3))


# (x shape, W shape, stride, pads (top, bottom, left, right), bias)
CASES = [
    ((1, 1, 5, 5), (1, 1, 3, 3), (1, 1), (0, 0, 0, 0), False),   # batch 1, no padding
    ((2, 3, 7, 6), (4, 3, 3, 2), (2, 1), (1, 0, 2, 1), True),    # stride 2, asymmetric pads
    ((2, 2, 6, 5), (3, 2, 3, 3), (2, 2), (1, 1, 1, 1), True),    # "same"-like, stride 2, odd W
    ((3, 4, 4, 3), (5, 4, 1, 1), (1, 1), (0, 0, 0, 0), True),    # 1x1 kernel, odd sizes
    ((1, 2, 5, 4), (2, 2, 2, 3), (3, 2), (0, 2, 1, 0), False),   # stride larger than kernel
]
IDS = ["batch1", "stride2-asym-pads", "pad1-stride2", "1x1", "stride-over-kernel"]


@pytest.mark.parametrize("x_shape,w_shape,stride,pads,bias", CASES, ids=IDS)
def test_im2col_col2im(xp, dtype, rng, poison, tol, x_shape, w_shape, stride, pads, bias):
    kh, kw = w_shape[2:]
    x = rng.standard_normal(x_shape).astype(dtype)
    ref = _ref_im2col(x, kh, kw, stride, pads)
    poison(ref.size * dtype.itemsize)
    cols = K.im2col(xp.asarray(x), kh, kw, stride, pads)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(to_numpy(cols), ref)

    g = rng.standard_normal(ref.shape).astype(dtype)
    poison(x.nbytes)
    gx = K.col2im(xp.asarray(g), x_shape, kh, kw, stride, pads)
    np.testing.assert_allclose(to_numpy(gx), _ref_col2im(g, x_shape, kh, kw, stride, pads), **tol)


@pytest.mark.parametrize("x_shape,w_shape,stride,pads,bias", CASES, ids=IDS)
def test_conv2d_forward_backward(xp, dtype, rng, poison, tol, x_shape, w_shape, stride, pads,
                                 bias):
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    ref_y = _ref_conv(x, W, b, stride, pads)
    poison(ref_y.size * dtype.itemsize)
    y = K.conv2d_forward(xp.asarray(x), xp.asarray(W), None if b is None else xp.asarray(b),
                         stride, pads)
    assert y.shape == ref_y.shape and y.dtype == dtype
    np.testing.assert_allclose(to_numpy(y), ref_y, **tol)

    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    ref_gx, ref_gW, ref_gb = _ref_conv_backward(x, W, gy, stride, pads)
    poison(x.nbytes, W.nbytes)
    gx, gW, gb = K.conv2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), stride, pads)
    assert gx.shape == x.shape and gW.shape == W.shape and gb.shape == (W.shape[0],)
    np.testing.assert_allclose(to_numpy(gx), ref_gx, **tol)
    np.testing.assert_allclose(to_numpy(gW), ref_gW, **tol)
    np.testing.assert_allclose(to_numpy(gb), ref_gb, **tol)


@pytest.mark.parametrize("x_shape,w_shape,stride,pads,bias", CASES[1:3], ids=IDS[1:3])
def test_conv2d_relu_epilogue_forward_backward(xp, dtype, rng, poison, tol, x_shape, w_shape,
                                               stride, pads, bias):
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    ref_y = np.maximum(_ref_conv(x, W, b, stride, pads), 0.0)
    poison(ref_y.size * dtype.itemsize)
    y = K.conv2d_forward(xp.asarray(x), xp.asarray(W), xp.asarray(b), stride, pads, relu=True)
    np.testing.assert_allclose(to_numpy(y), ref_y, **tol)

    gy = rng.standard_normal(ref_y.shape).astype(dtype)
    # the ReLU's backward: gy passes where the output is positive
    ref_gx, ref_gW, ref_gb = _ref_conv_backward(x, W, np.where(to_numpy(y) > 0, gy, 0.0), stride, pads)
    gx, gW, gb = K.conv2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), stride, pads,
                                   relu_y=y)
    np.testing.assert_allclose(to_numpy(gx), ref_gx, **tol)
    np.testing.assert_allclose(to_numpy(gW), ref_gW, **tol)
    np.testing.assert_allclose(to_numpy(gb), ref_gb, **tol)


@pytest.mark.skipif(not SIMULATED, reason="runs the kernels under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")
def test_backward_weight_gradient_is_one_gemm_over_the_batch(monkeypatch, rng):
    """gW is one (F, N*P) @ (N*P, C*kh*kw) product whose cols operand is a transposed view
    (a GEMM takes it as is), not N per-sample products summed, nor a copy of cols."""
    N, C, F = 3, 2, 4
    x = rng.standard_normal((N, C, 6, 5)).astype(np.float32)
    W = rng.standard_normal((F, C, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((N, F, 4, 3)).astype(np.float32)
    products = []

    def recording(product):
        def call(a, b, *args, **kwargs):
            products.append((a, b))
            return product(a, b, *args, **kwargs)
        return call
    monkeypatch.setattr(np, "matmul", recording(np.matmul))
    monkeypatch.setattr(np, "dot", recording(np.dot))
    K.conv2d_backward(x, W, gy, 1, (0, 0, 0, 0))
    CK, NP = C * 9, N * 4 * 3
    assert [(a.shape, b.shape) for a, b in products] == [((F, NP), (NP, CK)), ((CK, F), (F, NP))]
    cols_t = products[0][1]
    assert cols_t.flags.f_contiguous and cols_t.base is not None, "cols was copied for the product"


def test_backward_without_input_grad(xp, dtype, rng, tol):
    x = rng.standard_normal((2, 2, 5, 5)).astype(dtype)
    W = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    gx, gW, gb = K.conv2d_backward(xp.asarray(x), xp.asarray(W), xp.asarray(gy), 1, (0, 0, 0, 0),
                                   need_x_grad=False)
    assert gx is None
    _, ref_gW, ref_gb = _ref_conv_backward(x, W, gy, (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(to_numpy(gW), ref_gW, **tol)
    np.testing.assert_allclose(to_numpy(gb), ref_gb, **tol)


def test_rejects_bad_input():
    x = np.zeros((1, 2, 5, 5), np.float32)
    W = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"W must be \(F, C, kh, kw\) with C = 2"):
        K.conv2d_forward(x, np.zeros((3, 4, 3, 3), np.float32), None, 1, (0, 0, 0, 0))
    with pytest.raises(TypeError, match="W must have the dtype of x"):
        K.conv2d_forward(x, W.astype(np.float64), None, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="does not fit"):
        K.conv2d_forward(np.zeros((1, 2, 2, 2), np.float32), W, None, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        K.conv2d_forward(x, W, np.zeros(2, np.float32), 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="pads must be non-negative"):
        K.conv2d_forward(x, W, None, 1, (0, -1, 0, 0))
    with pytest.raises(TypeError, match="pads must be"):
        K.conv2d_forward(x, W, None, 1, 1)
    with pytest.raises(ValueError, match="stride must be positive"):
        K.conv2d_forward(x, W, None, (1, 0), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"gy must have shape \(1, 3, 3, 3\)"):
        K.conv2d_backward(x, W, np.zeros((1, 3, 2, 3), np.float32), 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="cols must have shape"):
        K.col2im(np.zeros((1, 18, 8), np.float32), (1, 2, 5, 5), 3, 3, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="NCHW"):
        K.im2col(np.zeros((2, 5, 5), np.float32), 3, 3, 1, (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"relu_y must have shape \(1, 3, 3, 3\)"):
        K.conv2d_backward(x, W, np.zeros((1, 3, 3, 3), np.float32), 1, (0, 0, 0, 0),
                          relu_y=np.zeros((1, 3, 3, 2), np.float32))


def test_rejects_an_image_past_32_bit_positions():
    with pytest.raises(ValueError, match=r"Ho\*Wo must be at most 2\*\*31 - 1 = 2147483647"):
        K._output_hw("im2col", 65536, 32769, 1, 1, 1, 1, 0, 0, 0, 0)
