"""gpudl's functional ops take their GPU branch (the kernel launchers) under the simulator:
forward and gradients must equal the NumPy branch. This checks the wiring between the
ops and the kernels (argument order, saved state, returned gradients) without a GPU."""
import numpy as np
import pytest

from gpudl import Tensor
from gpudl import functional as F
from gpudl.functional import activation, conv, loss, pooling, recurrent
from gpudl.kernels import _launch

pytestmark = pytest.mark.skipif(not _launch.simulated(),
                                reason="runs the kernels under Numba's simulator (NUMBA_ENABLE_CUDASIM=1)")


def _run(fn, arrays, gpu, monkeypatch):
    for mod in (activation, conv, loss, pooling, recurrent):
        monkeypatch.setattr(mod, "on_gpu", (lambda *a: True) if gpu else (lambda *a: False))
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    y = fn(*ts)
    w = np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)
    (y * Tensor(w)).sum().backward()
    return y.numpy(), [t.grad for t in ts]


CASES = [
    ("relu", lambda x: F.relu(x), [(3, 7)]),
    ("relu_of_a_transposed_view", lambda x: F.relu(x.T), [(3, 7)]),
    ("maxout_of_a_transposed_view", lambda x: F.maxout(x.T, 2), [(4, 3)]),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2), [(2, 3, 5)]),
    ("maxout", lambda x: F.maxout(x, 3), [(2, 6, 3)]),
    ("maxout_130_pieces", lambda x: F.maxout(x, 130), [(2, 260, 2)]),  # int32 argmax
    ("softmax_ce_ids", lambda x: F.softmax_cross_entropy(x, np.array([0, 4, 2])), [(3, 5)]),
    ("softmax_ce_onehot", lambda x: F.softmax_cross_entropy(x, np.eye(5, dtype=np.float32)[[1, 1, 3]]), [(3, 5)]),
    ("conv_same_stride2", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding="same"), [(2, 2, 5, 6), (3, 2, 3, 2), (3,)]),
    ("conv_relu_fused", lambda x, w, b: F.conv2d(x, w, b, padding=1, activation="relu"), [(2, 2, 4, 5), (3, 2, 3, 3), (3,)]),
    ("conv_valid", lambda x, w: F.conv2d(x, w, padding=1), [(1, 1, 4, 4), (2, 1, 3, 3)]),
    ("max_pool", lambda x: F.max_pool2d(x, 2), [(2, 2, 4, 5)]),
    ("max_pool_pad", lambda x: F.max_pool2d(x, 3, stride=2, padding=1), [(1, 2, 5, 5)]),
    ("lstm_sequence", lambda xw, h0, c0, U: (lambda hs, c: hs + c)(*F.lstm_sequence(xw, h0, c0, U)),
     [(3, 2, 12), (2, 3), (2, 3), (3, 12)]),
    ("gru_sequence", lambda xw, h0, U, b: F.gru_sequence(xw, h0, U, b), [(4, 2, 9), (2, 3), (3, 9), (9,)]),
]


@pytest.mark.parametrize("name,fn,shapes", CASES, ids=[c[0] for c in CASES])
def test_gpu_branch_equals_numpy_branch(name, fn, shapes, monkeypatch):
    rng = np.random.default_rng(7)
    arrays = [rng.permutation(int(np.prod(s))).reshape(s).astype(np.float32) / 10 - 1 for s in shapes]
    y_cpu, g_cpu = _run(fn, arrays, False, monkeypatch)
    y_gpu, g_gpu = _run(fn, arrays, True, monkeypatch)
    np.testing.assert_allclose(y_gpu, y_cpu, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_gpu, g_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gpu_conv_relu_makes_one_pass_for_bias_and_relu(monkeypatch):
    """Conv2D(activation="relu") on the GPU: bias + ReLU are the product's epilogue (one
    bias_relu_forward, in place, no separate ReLU), and the ReLU's backward rides on the
    transposing copy the weight gradient makes (channel_major with the mask)."""
    from gpudl.kernels import activation as KA
    calls = []

    def spy(name):
        real = getattr(KA, name)

        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            return real(*args, **kwargs)
        monkeypatch.setattr(KA, name, call)
    for name in ("bias_relu_forward", "channel_major", "relu_forward", "relu_backward"):
        spy(name)
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(2, 2, 4, 5), (3, 2, 3, 3), (3,)]]
    _run(lambda x, w, b: F.conv2d(x, w, b, padding=1, activation="relu"), arrays, True, monkeypatch)
    assert [name for name, _, _ in calls] == ["bias_relu_forward", "channel_major"]
    (_, (y, _), fwd), (_, (_, relu_y), _) = calls
    assert fwd["relu"] is True and fwd["out"] is y, "the epilogue runs in place on the product"
    assert relu_y is not None, "the ReLU's mask is applied in the transposing copy"
