"""conv2d's algorithms (im2col, fused gathers, Winograd F(2x2, 3x3)) against each other and a
float64 reference, their gradients, the per-shape choice and deterministic mode."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import backend
from gpudl import functional as F
from gpudl.functional import conv_algorithms as A
from gpudl.testing import gradcheck

from tests.functional.test_conv import conv2d_ref

NUMPY_ALGORITHMS = list(A.ALGORITHMS["numpy"])


@pytest.fixture(autouse=True)
def _reset_choice():
    """Each test starts from the default setting and an empty choice cache."""
    old_alg, old_det = backend.conv_algorithm, backend.deterministic
    A.clear_choices()
    yield
    backend.conv_algorithm = old_alg
    gpudl.set_deterministic(old_det)
    A.clear_choices()


def _run(alg, x, W, b, gy, **kw):
    backend.conv_algorithm = alg
    xt, Wt = gpudl.Tensor(x, requires_grad=True), gpudl.Parameter(W)
    bt = gpudl.Parameter(b) if b is not None else None
    y = F.conv2d(xt, Wt, bt, **kw)
    y.backward(gy)
    return y.data, xt.grad, Wt.grad, (bt.grad if bt is not None else None)


def _reference(x, W, b, gy, stride, padding, relu):
    """float64 output by the loop definition; gradients from im2col in float64 (itself checked
    against central differences in test_conv.py)."""
    y = conv2d_ref(x, W, b, stride, padding)
    if relu:
        y = np.maximum(y, 0)
    _, gx, gW, gb = _run("im2col", x, W, b, gy, stride=stride, padding=padding,
                         activation="relu" if relu else None)
    return y, gx, gW, gb


# (batch, C, K, H, W, kernel, stride, padding, relu): Winograd's own shapes (3x3, stride 1:
# odd and even outputs, padding 0/1/2/same, a 1-pixel image), and shapes only the others take
SHAPES = [
    (2, 3, 4, 7, 6, 3, 1, 1, False),
    (2, 4, 6, 9, 8, 3, 1, 0, True),
    (1, 3, 2, 5, 5, 3, 1, 2, False),
    (3, 2, 3, 1, 1, 3, 1, 1, True),
    (2, 3, 4, 8, 7, 3, 1, "same", False),
    (2, 4, 6, 9, 8, 3, 2, 1, False),
    (3, 2, 5, 10, 9, 2, 1, (1, 0), True),
    (2, 3, 2, 6, 6, 5, 1, 2, False),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
@pytest.mark.parametrize("alg", NUMPY_ALGORITHMS)
def test_every_algorithm_matches_the_definition_in_float64(alg, shape):
    n, c, k, h, w, ks, stride, padding, relu = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    x = rng.standard_normal((n, c, h, w))
    W = rng.standard_normal((k, c, ks, ks))
    b = rng.standard_normal(k)
    y0 = conv2d_ref(x, W, b, stride, padding)
    gy = rng.standard_normal(y0.shape)
    ref = _reference(x, W, b, gy, stride, padding, relu)
    got = _run(alg, x, W, b, gy, stride=stride, padding=padding, activation="relu" if relu else None)
    for name, a, r in zip(("y", "gx", "gW", "gb"), got, ref):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10, err_msg=f"{alg} {name}")


@pytest.mark.parametrize("alg", ["fused", "winograd"])
@pytest.mark.parametrize("relu", [False, True])
def test_gradcheck_float64(alg, relu):
    backend.conv_algorithm = alg
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 5))
    W = gpudl.Parameter(rng.standard_normal((4, 3, 3, 3)))
    b = gpudl.Parameter(rng.standard_normal(4))
    act = "relu" if relu else None
    assert gradcheck(lambda x: F.conv2d(x, W, b, padding=1, activation=act), [x], params=[W, b])


def test_gradcheck_fused_strided_dilated_grouped():
    backend.conv_algorithm = "fused"
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 9, 8))
    W = gpudl.Parameter(rng.standard_normal((6, 2, 3, 2)))
    assert gradcheck(lambda x: F.conv2d(x, W, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
                     [x], params=[W])


def test_gradients_only_where_asked():
    """A frozen weight gets no gradient and an input that needs none gets none, on every path."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    for alg in NUMPY_ALGORITHMS:
        backend.conv_algorithm = alg
        W = gpudl.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=False)
        xt = gpudl.Tensor(x, requires_grad=True)
        F.conv2d(xt, W, padding=1).sum().backward()
        assert W.grad is None and xt.grad is not None, alg
        W2 = gpudl.Parameter(W.data)
        xt2 = gpudl.Tensor(x)
        F.conv2d(xt2, W2, padding=1).sum().backward()
        assert W2.grad is not None and xt2.grad is None, alg


# ---- float32 accuracy: Winograd's error stays within 10x of im2col's ------------------------------

ACCURACY_SHAPES = [(8, 32, 64, 26, 26, 0), (4, 64, 64, 32, 32, 1), (4, 128, 128, 16, 16, 1),
                   (4, 3, 16, 15, 15, 1)]


def _float32_errors(shape, alg):
    n, c, k, h, w, pad = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, c, h, w))
    W = rng.standard_normal((k, c, 3, 3)) * np.sqrt(2.0 / (9 * c))
    b = rng.standard_normal(k)
    gy = rng.standard_normal((n, k, h + 2 * pad - 2, w + 2 * pad - 2))
    ref = _run("im2col", x, W, b, gy, padding=pad)  # float64
    got = _run(alg, *(a.astype(np.float32) for a in (x, W, b, gy)), padding=pad)
    return [float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(got, ref)]


@pytest.mark.parametrize("shape", ACCURACY_SHAPES, ids=[str(s) for s in ACCURACY_SHAPES])
def test_winograd_float32_error_within_10x_of_im2col(shape):
    base = _float32_errors(shape, "im2col")
    wino = _float32_errors(shape, "winograd")
    fused = _float32_errors(shape, "fused")
    for name, e0, e1, e2 in zip(("y", "gx", "gW", "gb"), base, wino, fused):
        assert e1 <= 10 * max(e0, 1e-7), f"winograd {name}: relative error {e1:.2e}, im2col's {e0:.2e}"
        assert e2 <= 10 * max(e0, 1e-7), f"fused {name}: relative error {e2:.2e}, im2col's {e0:.2e}"


# ---- thread-count independence ----------------------------------------------------------------

def test_compiled_paths_do_not_depend_on_the_thread_count(set_threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 9, 9)).astype(np.float32)
    W = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    for alg in ("fused", "winograd"):
        outs = []
        for t in (1, 2, 3):
            set_threads(t)
            A.clear_choices()
            outs.append(_run(alg, x, W, None, gy, padding=1)[:3])
        for other in outs[1:]:
            for a, b in zip(outs[0], other):
                np.testing.assert_array_equal(a, b, err_msg=alg)


def test_winograd_groups_and_chunks_do_not_change_the_answer(monkeypatch, set_threads):
    """A batch larger than the group count, cut into several chunks per group (a tiny chunk
    budget), on 1, 2 and 3 threads: the same bits each time, and im2col's answer within
    float32 rounding (the weight gradient is summed per chunk, then per group, in order)."""
    monkeypatch.setattr(A, "CHUNK_BYTES", 1)  # one image per chunk
    monkeypatch.setattr(A, "GROUPS", 4)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((11, 3, 8, 7)).astype(np.float32)
    W = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    gy = rng.standard_normal((11, 5, 8, 7)).astype(np.float32)
    outs = []
    for t in (1, 2, 3):
        set_threads(t)
        outs.append(_run("winograd", x, W, b, gy, padding=1, activation="relu"))
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            np.testing.assert_array_equal(a, c)
    ref = _run("im2col", x, W, b, gy, padding=1, activation="relu")
    for name, a, r in zip(("y", "gx", "gW", "gb"), outs[0], ref):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name)


def test_thread_settings_are_checked(monkeypatch):
    from gpudl.functional import _threads
    with pytest.raises(ValueError, match="set_threads expected a positive int, got 0"):
        _threads.set_threads(0)
    monkeypatch.setattr(_threads, "_threads", None)
    monkeypatch.setenv("GPUDL_CPU_THREADS", "many")
    with pytest.raises(ValueError, match="GPUDL_CPU_THREADS expected a positive integer, got 'many'"):
        _threads.threads()
    monkeypatch.setenv("GPUDL_CPU_THREADS", "3")
    assert _threads.threads() == 3
    monkeypatch.setattr(_threads, "_threads", None)  # back to the default on teardown


# ---- the choice --------------------------------------------------------------------------------

def test_auto_times_each_applicable_algorithm_once_per_shape(monkeypatch):
    calls = []
    real = A._run_once

    def counting(alg, *args):
        calls.append(alg.name)
        return real(alg, *args)

    monkeypatch.setattr(A, "_run_once", counting)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    W = gpudl.Parameter(rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    for _ in range(3):
        F.conv2d(gpudl.Tensor(x, requires_grad=True), W, padding=1).sum().backward()
    assert set(calls) == {"im2col", "fused", "winograd"}
    assert len(calls) <= 5  # one run each, and at most one more for the two closest
    (key, (name, times)), = A.choices().items()
    assert name in NUMPY_ALGORITHMS and set(times) == {"im2col", "fused", "winograd"}
    assert name == min(times, key=times.get)
    seconds, shapes = A.tuning_seconds()
    assert shapes == 1 and seconds > 0
    # a 5x5 kernel: Winograd does not apply, so it is never timed
    calls.clear()
    W5 = gpudl.Parameter(rng.standard_normal((16, 16, 5, 5)).astype(np.float32))
    F.conv2d(gpudl.Tensor(x), W5, padding=2)
    assert "winograd" not in calls and set(calls) == {"im2col", "fused"}


def test_a_candidate_slower_forward_than_the_best_step_skips_its_backward(monkeypatch):
    backwards = []
    real = A.Fused.backward
    monkeypatch.setattr(A.Fused, "backward", lambda *a: backwards.append(1) or real(*a))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    W = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    geom = A.Geometry(x.shape, W.shape, (1, 1), (1, 1, 1, 1), (6, 6), (1, 1), 1, x.dtype)
    assert A._run_once(A.Fused, x, W, None, False, geom, True, 0.0) > 0 and backwards == []
    assert A._run_once(A.Fused, x, W, None, False, geom, True) > 0 and backwards == [1]
    assert A._run_once(A.Fused, x, W, None, False, geom, False) > 0 and backwards == [1]  # no gradients


def _spy_forwards(monkeypatch):
    """The names of the algorithms whose forward runs, in order."""
    seen = []
    for alg in A.ALGORITHMS["numpy"].values():
        def wrapped(*args, _fn=alg.forward, _name=alg.name):
            seen.append(_name)
            return _fn(*args)
        monkeypatch.setattr(alg, "forward", wrapped)
    return seen


def test_the_timed_winner_is_used(monkeypatch):
    fake = {"im2col": 3.0, "fused": 1.0, "winograd": 2.0}
    monkeypatch.setattr(A, "_run_once", lambda alg, *a: fake[alg.name])
    seen = _spy_forwards(monkeypatch)
    rng = np.random.default_rng(8)
    F.conv2d(gpudl.Tensor(rng.standard_normal((1, 16, 6, 6)).astype(np.float32)),
             gpudl.Tensor(rng.standard_normal((16, 16, 3, 3)).astype(np.float32)), padding=1)
    assert seen[-1] == "fused"
    assert A.choices()[next(iter(A.choices()))][0] == "fused"


def test_deterministic_mode_never_times_and_follows_the_fixed_rule(monkeypatch):
    gpudl.set_deterministic(True)
    monkeypatch.setattr(A, "_time_candidates", lambda *a: pytest.fail("timed in deterministic mode"))
    seen = _spy_forwards(monkeypatch)
    rng = np.random.default_rng(9)
    for c, ks in ((16, 3), (3, 3), (16, 5)):
        x = gpudl.Tensor(rng.standard_normal((1, c, 8, 8)).astype(np.float32))
        W = gpudl.Tensor(rng.standard_normal((16, c, ks, ks)).astype(np.float32))
        F.conv2d(x, W, padding=ks // 2)
    # Winograd where it applies with enough channels; the fused gathers elsewhere
    assert seen == ["winograd", "fused", "fused"]
    assert A.choices() == {}


def test_two_deterministic_runs_give_the_same_bits():
    gpudl.set_deterministic(True)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 16, 10, 10)).astype(np.float32)
    W = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 16, 10, 10)).astype(np.float32)
    first = _run("auto", x, W, None, gy, padding=1)
    A.clear_choices()
    second = _run("auto", x, W, None, gy, padding=1)
    for a, b in zip(first[:3], second[:3]):
        np.testing.assert_array_equal(a, b)


def test_a_forced_algorithm_applies_where_it_can_and_the_rule_decides_elsewhere(monkeypatch):
    monkeypatch.setattr(A, "_time_candidates", lambda *a: pytest.fail("a forced choice timed"))
    backend.conv_algorithm = "winograd"
    rng = np.random.default_rng(11)
    geom3 = A.Geometry((1, 2, 6, 6), (2, 2, 3, 3), (1, 1), (1, 1, 1, 1), (6, 6), (1, 1), 1, np.float32)
    geom5 = A.Geometry((1, 2, 6, 6), (2, 2, 5, 5), (1, 1), (2, 2, 2, 2), (6, 6), (1, 1), 1, np.float32)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    assert A.choose(x, None, None, False, geom3, True, "numpy").name == "winograd"
    assert A.choose(x, None, None, False, geom5, True, "numpy").name == A.fixed_rule(geom5, "numpy").name
    backend.conv_algorithm = "IM2COL"  # case-insensitive, as the value is a name
    assert backend.conv_algorithm == "im2col"
    assert A.choose(x, None, None, False, geom3, True, "numpy").name == "im2col"


@pytest.mark.parametrize("bad", ["wino", "", None, 3, "cudnn"])
def test_a_bad_algorithm_name_fails_at_the_assignment(bad):
    with pytest.raises(ValueError, match="conv_algorithm expected one of 'auto', 'im2col'"):
        backend.conv_algorithm = bad
    assert backend.conv_algorithm == "auto"


def test_set_deterministic_checks_its_argument_and_returns_the_old_value():
    assert gpudl.set_deterministic(True) is False
    assert backend.deterministic is True
    assert gpudl.set_deterministic(False) is True
    with pytest.raises(TypeError, match="set_deterministic expected True or False, got 'yes'"):
        gpudl.set_deterministic("yes")
    backend.deterministic = True  # the flag assigned like torch.backends.cudnn's
    assert backend.deterministic is True


def test_training_a_cnn_is_the_same_under_every_algorithm():
    """A few steps of a small CNN give the same weights (to float32 rounding) whichever
    algorithm runs its convolutions."""
    from gpudl import layers, optimizers
    rng = np.random.default_rng(12)
    x = rng.uniform(0, 1, (32, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    finals = {}
    for alg in NUMPY_ALGORITHMS:
        backend.conv_algorithm = alg
        gpudl.set_seed(0)
        model = gpudl.Sequential([layers.Conv2D(16, 3, padding="same", activation="relu"),
                                  layers.Conv2D(16, 3, activation="relu"), layers.Flatten(),
                                  layers.Dense(3, activation="softmax")])
        model.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
        finals[alg] = [p.data.copy() for p in model.params()]
    for alg in ("fused", "winograd"):
        for a, b in zip(finals[alg], finals["im2col"]):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=alg)


# ---- the scratch pool ------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["fused", "winograd"])
def test_a_retained_graph_keeps_its_saved_state_out_of_the_pool(alg):
    """backward twice (retain_graph) reads the saved tiles/columns twice: they must not have
    gone back to the pool after the first, where another conv could overwrite them."""
    backend.conv_algorithm = alg
    rng = np.random.default_rng(13)
    x = gpudl.Tensor(rng.standard_normal((4, 16, 12, 12)).astype(np.float32), requires_grad=True)
    W = gpudl.Parameter(rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    y = F.conv2d(x, W, padding=1)
    loss = (y * y).sum()
    loss.backward(retain_graph=True)
    first = W.grad.copy()
    # another conv of the same shape in between would take any buffer handed back too early
    F.conv2d(gpudl.Tensor(rng.standard_normal((4, 16, 12, 12)).astype(np.float32) * 100), W, padding=1)
    W.grad = None
    loss.backward()
    np.testing.assert_array_equal(W.grad, first)


def test_the_pool_reuses_and_stays_bounded(monkeypatch):
    from gpudl.functional import _workspace
    _workspace.clear()
    a = _workspace.take((64, 1024), np.float32)
    _workspace.give(a)
    assert _workspace.take((64, 1024), np.float32) is a  # the same array comes back
    assert _workspace.take((64, 1024), np.float32) is not a  # ... once
    monkeypatch.setattr(_workspace, "MAX_BYTES", 3 * a.nbytes)
    arrays = [np.empty((64, 1024), np.float32) for _ in range(5)]
    _workspace.give(*arrays)
    assert _workspace.idle_bytes() <= 3 * a.nbytes
    view = np.empty((128, 1024), np.float32)[:64]
    before = _workspace.idle_bytes()
    _workspace.give(view)  # a view of someone's array is never recycled
    assert _workspace.idle_bytes() == before
    _workspace.clear()
    assert _workspace.idle_bytes() == 0


def test_inference_hands_its_scratch_back_at_once():
    from gpudl.functional import _workspace
    backend.conv_algorithm = "winograd"
    _workspace.clear()
    rng = np.random.default_rng(14)
    x = gpudl.Tensor(rng.standard_normal((4, 16, 12, 12)).astype(np.float32))
    W = gpudl.Tensor(rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    with gpudl.no_grad():
        y1 = F.conv2d(x, W, padding=1).numpy()
    idle = _workspace.idle_bytes()
    assert idle > 0  # the transformed tiles and the GEMM result went back
    with gpudl.no_grad():
        y2 = F.conv2d(x, W, padding=1).numpy()
    assert _workspace.idle_bytes() == idle  # ... and were taken and returned again, not grown
    np.testing.assert_array_equal(y1, y2)


def test_float16_takes_the_numpy_path_whatever_is_asked(monkeypatch):
    """The compiled loops have no float16: every setting ends on im2col, with no timing."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float16)
    W = rng.standard_normal((16, 16, 3, 3)).astype(np.float16)
    ref = F.conv2d(gpudl.Tensor(x.astype(np.float32)), gpudl.Tensor(W.astype(np.float32)), padding=1).numpy()
    monkeypatch.setattr(A, "_run_once", lambda *a: pytest.fail("timed a float16 conv"))
    for alg in ("auto", "winograd", "fused"):
        backend.conv_algorithm = alg
        y = F.conv2d(gpudl.Tensor(x), gpudl.Tensor(W), padding=1).numpy()
        assert y.dtype == np.float16
        np.testing.assert_allclose(y, ref, rtol=2e-2, atol=2e-2)
