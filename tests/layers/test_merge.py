"""Merge layers: forward against NumPy float64 references, float64 gradchecks (broadcast
inputs included), PyTorch's cat / add / maximum ..., masks, configs, and the input errors."""
from __future__ import annotations

import numpy as np
import pytest

import gpudl
from gpudl import Tensor
from gpudl.layers.base import get_layer_class
from gpudl.layers.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from harness import check_grad, check_op

SHAPES = [(1, 4), (3, 5), (2, 3, 4)]

ELEMENTWISE = {
    "add": (Add, lambda *xs: sum(xs)),
    "subtract": (Subtract, lambda a, b: a - b),
    "multiply": (Multiply, lambda *xs: np.prod(np.stack(np.broadcast_arrays(*xs)), axis=0)),
    "average": (Average, lambda *xs: sum(xs) / len(xs)),
    "maximum": (Maximum, lambda *xs: np.max(np.stack(np.broadcast_arrays(*xs)), axis=0)),
    "minimum": (Minimum, lambda *xs: np.min(np.stack(np.broadcast_arrays(*xs)), axis=0)),
}


def _distinct(shapes, seed):
    """Inputs whose values are all distinct and at least 0.01 apart (no ties for max/min)."""
    total = sum(int(np.prod(s)) for s in shapes)
    vals = np.random.default_rng(seed).permutation(total) / 50.0 - total / 100.0
    out, k = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(vals[k:k + n].reshape(s))
        k += n
    return out


def _call(cls, **kwargs):
    # a fresh layer per call: a built layer keeps its first dtype
    return lambda *ts: cls(**kwargs)(list(ts))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", list(ELEMENTWISE))
def test_elementwise_merges(backend_name, kind, shape):
    cls, ref = ELEMENTWISE[kind]
    n = 2 if kind == "subtract" else 3
    check_op(_call(cls), ref, _distinct([shape] * n, seed=len(shape)))


@pytest.mark.parametrize("shapes", [[(3, 1, 4), (3, 5, 4)], [(1, 3, 1), (1, 1, 4)], [(2, 4), (2, 1), (2, 4)]])
@pytest.mark.parametrize("kind", list(ELEMENTWISE))
def test_elementwise_merges_broadcast_size_one_axes(backend_name, kind, shapes):
    cls, ref = ELEMENTWISE[kind]
    shapes = shapes[:2] if kind == "subtract" else shapes
    check_op(_call(cls), ref, _distinct(shapes, seed=3))


@pytest.mark.parametrize("shapes,axis", [([(1, 2), (1, 3)], -1), ([(3, 2, 4), (3, 5, 4)], 1),
                                         ([(2, 3, 1), (2, 3, 2), (2, 3, 3)], 2), ([(1, 3), (2, 3)], 0)])
def test_concatenate(backend_name, shapes, axis):
    check_op(_call(Concatenate, axis=axis), lambda *xs: np.concatenate(xs, axis=axis), _distinct(shapes, 1))


def test_integer_inputs_compute_in_float32():
    y = Add()([np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=np.int32)])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), np.arange(6).reshape(2, 3) + 1)


def test_built_layer_casts_to_its_dtype():
    layer = Add()
    layer([np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)])
    assert layer([np.ones((2, 3)), np.ones((2, 3))]).dtype == np.float32


# ---- against PyTorch -------------------------------------------------------------------------

def _torch_case(torch, fn_gpudl, fn_torch, arrays):
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    y = fn_gpudl(*ts)
    w = np.random.default_rng(5).standard_normal(y.shape)
    (y * Tensor(w)).sum().backward()
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = fn_torch(*tt)
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    for t, u in zip(ts, tt):
        np.testing.assert_allclose(t.grad, u.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("shapes,axis", [([(1, 2, 3), (1, 4, 3)], 1), ([(3, 2), (3, 5)], -1),
                                         ([(2, 3, 2), (2, 3, 1)], 2)])
def test_concatenate_against_torch_cat(shapes, axis):
    torch = pytest.importorskip("torch")
    _torch_case(torch, _call(Concatenate, axis=axis), lambda *ts: torch.cat(ts, dim=axis), _distinct(shapes, 2))


@pytest.mark.torch
@pytest.mark.parametrize("shapes", [[(1, 3), (1, 3)], [(4, 3, 2), (4, 1, 2)], [(2, 5), (2, 5)]])
def test_elementwise_against_torch(shapes):
    torch = pytest.importorskip("torch")
    arrays = _distinct(shapes, 4)
    cases = [(Add, torch.add), (Subtract, torch.sub), (Multiply, torch.mul),
             (Average, lambda a, b: (a + b) / 2), (Maximum, torch.maximum), (Minimum, torch.minimum)]
    for cls, fn in cases:
        _torch_case(torch, _call(cls), fn, arrays)


@pytest.mark.torch
def test_maximum_and_minimum_split_ties_as_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 0.0, 3.0]])
    _torch_case(torch, _call(Maximum), torch.maximum, [a, b])
    _torch_case(torch, _call(Minimum), torch.minimum, [a, b])


# ---- masks -----------------------------------------------------------------------------------

def test_elementwise_masks_combine_with_and():
    xs = [Tensor(np.zeros((2, 3, 4))) for _ in range(3)]
    m1 = np.array([[True, True, False], [True, False, True]])
    m2 = np.array([[True, False, True], [True, True, True]])
    layer = Add()
    assert layer.compute_mask(xs, None) is None
    assert layer.compute_mask(xs, [None, None, None]) is None
    np.testing.assert_array_equal(layer.compute_mask(xs, [m1, None, None]), m1)
    np.testing.assert_array_equal(layer.compute_mask(xs, [m1, m2, None]), m1 & m2)
    layer(xs, mask=[m1, None, m2])
    np.testing.assert_array_equal(layer.last_mask, m1 & m2)
    layer(xs)
    assert layer.last_mask is None


def test_concatenate_masks_follow_keras():
    x1, x2 = Tensor(np.zeros((2, 3, 4))), Tensor(np.zeros((2, 3, 5)))
    m1 = np.array([[True, False, False], [True, True, False]])
    m2 = np.array([[False, True, False], [True, False, False]])
    last = Concatenate(axis=-1)
    assert last.compute_mask([x1, x2], None) is None
    assert last.compute_mask([x1, x2], [None, None]) is None
    # along the features: a step is kept if either input keeps it; a missing mask keeps all
    np.testing.assert_array_equal(last.compute_mask([x1, x2], [m1, m2]), m1 | m2)
    assert last.compute_mask([x1, x2], [m1, None]).all()
    # along the steps: the masks are joined
    y1, y2 = Tensor(np.zeros((2, 3, 4))), Tensor(np.zeros((2, 2, 4)))
    m3 = np.array([[True, False], [False, False]])
    steps = Concatenate(axis=1)
    np.testing.assert_array_equal(steps.compute_mask([y1, y2], [m1, m3]), np.concatenate([m1, m3], axis=1))
    np.testing.assert_array_equal(steps.compute_mask([y1, y2], [None, m3]),
                                  np.concatenate([np.ones((2, 3), bool), m3], axis=1))
    steps([y1, y2], mask=[m1, m3])
    np.testing.assert_array_equal(steps.last_mask, np.concatenate([m1, m3], axis=1))


def test_mask_errors_name_the_layer():
    xs = [Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 3)))]
    with pytest.raises(ValueError, match=r"Add 'add' expected mask as a list .* got ndarray"):
        Add().compute_mask(xs, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"Concatenate 'concatenate' expected one mask per input \(2\), got 1 masks"):
        Concatenate()(xs, mask=[np.ones(2, bool)])


# ---- configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kwargs", [(Concatenate, {"axis": 1}), (Concatenate, {}), (Add, {}),
                                        (Subtract, {}), (Multiply, {}), (Average, {}), (Maximum, {}),
                                        (Minimum, {})])
def test_config_round_trip(cls, kwargs):
    layer = cls(name="m", **kwargs)
    cfg = layer.get_config()
    again = get_layer_class(cls.__name__).from_config(cfg)
    assert type(again) is cls and again.get_config() == cfg
    if cls is Concatenate:
        assert again.axis == kwargs.get("axis", -1)
    xs = _distinct([(2, 3, 3), (2, 3, 3)], 6)
    np.testing.assert_array_equal(again([Tensor(x) for x in xs]).numpy(), layer([Tensor(x) for x in xs]).numpy())


# ---- bad input -------------------------------------------------------------------------------

def test_bad_inputs_are_refused_with_the_layer_named():
    a, b = Tensor(np.zeros((2, 3, 4))), Tensor(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match=r"^Concatenate 'concatenate' expected inputs with matching shapes "
                                         r"except on axis -1, got shapes \[\(None, 3, 4\), \(None, 5, 4\)\]$"):
        Concatenate()([a, b])
    with pytest.raises(ValueError, match=r"^Add 'add' expected inputs of one rank and batch size with matching "
                                         r"shapes \(or size 1 on an axis, broadcast\), got shapes "
                                         r"\[\(None, 3, 4\), \(None, 5, 4\)\]$"):
        Add()([a, b])
    with pytest.raises(ValueError, match=r"Multiply 'multiply' expected inputs of one rank .* got shapes "
                                         r"\[\(None, 3, 4\), \(None, 3\)\]"):
        Multiply()([a, Tensor(np.zeros((2, 3)))])
    # batch sizes that differ are shown as they are
    with pytest.raises(ValueError, match=r"Maximum 'maximum' expected .* got shapes \[\(2, 3, 4\), \(3, 3, 4\)\]"):
        Maximum()([a, Tensor(np.zeros((3, 3, 4)))])
    with pytest.raises(ValueError, match=r"Concatenate 'concatenate_1' expected inputs with matching shapes except "
                                         r"on axis 1, got shapes \[\(None, 3, 4\), \(None, 3\)\]"):
        Concatenate(axis=1)([a, Tensor(np.zeros((2, 3)))])
    with pytest.raises(ValueError, match=r"Concatenate 'concatenate_2' expected an axis in \[-3, 3\) for inputs "
                                         r"of rank 3, got axis=3"):
        Concatenate(axis=3)([a, b])
    with pytest.raises(ValueError, match=r"^Concatenate expected an integer axis, got 'last'$"):
        Concatenate(axis="last")


@pytest.mark.parametrize("cls,name", [(Add, "add"), (Concatenate, "concatenate"), (Minimum, "minimum")])
def test_a_single_tensor_or_a_list_of_one_is_refused(cls, name):
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=rf"^{cls.__name__} '{name}' expected a list of at least 2 input tensors, "
                                         r"got Tensor$"):
        cls()(x)
    with pytest.raises(ValueError, match=rf"^{cls.__name__} '{name}_1' expected a list of at least 2 input "
                                         r"tensors, got a list of 1$"):
        cls()([x])


def test_subtract_takes_exactly_two():
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^Subtract 'subtract' expected a list of exactly 2 input tensors, "
                                         r"got a list of 3$"):
        Subtract()([x, x, x])


def test_mixed_float_dtypes_are_refused():
    with pytest.raises(TypeError, match=r"Add 'add' expected inputs of one floating dtype, got dtypes "
                                        r"\['float32', 'float64'\]"):
        Add()([np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float64)])


@pytest.mark.gpu
def test_mixed_backends_are_refused():
    if not gpudl.backend.cupy_available():
        pytest.skip("CuPy backend unavailable: no CuPy package or no CUDA GPU here")
    host = Tensor(np.zeros((2, 3)))
    device = host.to("cupy")
    with pytest.raises(TypeError, match=r"Add 'add': arrays of two backends in one call: numpy.ndarray \(numpy\) "
                                        r"and cupy.* \(cupy\)"):
        Add()([host, device])


def test_gradcheck_batch_one_with_three_inputs(backend_name):
    # the batch-1 case once more through the harness's gradcheck alone, for every merge
    for kind, (cls, _) in ELEMENTWISE.items():
        n = 2 if kind == "subtract" else 3
        check_grad(_call(cls), _distinct([(1, 2, 3)] * n, 9))
