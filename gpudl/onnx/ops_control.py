"""ONNX control flow (If, Loop, Scan), sequences and optionals.

Subgraphs are Graph attributes run by the same interpreter; they see every value of the
enclosing graph. Sequences are Python lists of Tensors, an empty optional is None. Scan
outputs are stacked with the autograd's ``stack``, so a loop over float data trains.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor, concatenate, stack
from ._values import axis_of, ints, is_float, raw, scalar_of, wrap, xp_of
from .runtime import op


def _outputs_of(graph, result):
    return tuple(result[name] for name in graph.outputs)


@op("If")
def _if(run, node, cond):
    branch = node.attr("then_branch") if bool(scalar_of(cond)) else node.attr("else_branch")
    return _outputs_of(branch, run.run_graph(branch, {}))


def _stack(values, axis=0):
    if not values:
        return wrap(np.zeros((0,), dtype=np.float32))
    if isinstance(values[0], Tensor) and is_float(values[0]) and any(v.requires_grad for v in values):
        return stack(values, axis=axis)
    return wrap(xp_of(*values).stack([raw(v) for v in values], axis=axis))


@op("Loop")
def _loop(run, node, trip=None, cond=None, *carried):
    body = node.attr("body")
    limit = None if trip is None else int(scalar_of(trip))
    keep_going = True if cond is None else bool(scalar_of(cond))
    carried = list(carried)
    k = len(carried)
    scans = [[] for _ in range(len(body.outputs) - 1 - k)]
    i = 0
    while keep_going and (limit is None or i < limit):
        feeds = {body.inputs[0]: wrap(np.asarray(i, dtype=np.int64)),
                 body.inputs[1]: wrap(np.asarray(keep_going))}
        feeds.update(zip(body.inputs[2:], carried))
        out = _outputs_of(body, run.run_graph(body, feeds))
        keep_going = bool(scalar_of(out[0]))
        carried = list(out[1:1 + k])
        for lst, v in zip(scans, out[1 + k:]):
            lst.append(v)
        i += 1
    return tuple(carried) + tuple(_stack(s) for s in scans)


@op("Scan")
def _scan(run, node, *args):
    body = node.attr("body")
    m = int(node.attr("num_scan_inputs"))
    if run.opset.get("", 17) < 9:  # Scan-8: sequence_lens first, a batch axis on every input
        return _scan_batched(run, node, body, m, args)
    states, xs = list(args[:len(args) - m]), list(args[len(args) - m:])
    n_out = len(body.outputs) - len(states)
    return _scan_steps(run, body, states, xs, node.attr("scan_input_axes") or [0] * m,
                       node.attr("scan_input_directions") or [0] * m, node.attr("scan_output_axes") or [0] * n_out,
                       node.attr("scan_output_directions") or [0] * n_out)


def _scan_batched(run, node, body, m, args):
    states, xs = list(args[1:len(args) - m]), list(args[len(args) - m:])
    dirs = node.attr("directions") or [0] * m
    n_out = len(body.outputs) - len(states)
    per = [_scan_steps(run, body, [s[b] for s in states], [x[b] for x in xs], [0] * m, dirs, [0] * n_out,
                       [0] * n_out) for b in range(xs[0].shape[0])]
    return tuple(_stack([p[i] for p in per]) for i in range(len(body.outputs)))


def _scan_steps(run, body, states, xs, in_axes, in_dirs, out_axes, out_dirs):
    in_axes = [axis_of(a, x.ndim) for a, x in zip(in_axes, xs)]
    steps = xs[0].shape[in_axes[0]] if xs else 0
    scans = [[] for _ in out_axes]
    for t in range(steps):
        feeds = dict(zip(body.inputs, states))
        for name, x, a, rev in zip(body.inputs[len(states):], xs, in_axes, in_dirs):
            idx = steps - 1 - t if rev else t
            feeds[name] = x[(slice(None),) * a + (idx,)]
        out = _outputs_of(body, run.run_graph(body, feeds))
        states = list(out[:len(states)])
        for lst, v in zip(scans, out[len(states):]):
            lst.append(v)
    results = []
    for lst, a, rev in zip(scans, out_axes, out_dirs):
        if rev:
            lst = lst[::-1]
        rank = lst[0].ndim + 1 if lst else 1
        results.append(_stack(lst, axis_of(a, rank)))
    return tuple(states) + tuple(results)


@op("SequenceMap")
def _sequence_map(run, node, seq, *extra):
    body = node.attr("body")
    n = len(seq)
    outs = [[] for _ in body.outputs]
    for i in range(n):
        feeds = {body.inputs[0]: seq[i]}
        for name, v in zip(body.inputs[1:], extra):
            feeds[name] = v[i] if isinstance(v, list) else v
        for lst, v in zip(outs, _outputs_of(body, run.run_graph(body, feeds))):
            lst.append(v)
    return tuple(outs)


# ---- sequences --------------------------------------------------------------------------------

@op("SequenceEmpty")
def _seq_empty(run, node):
    return []


@op("SequenceConstruct")
def _seq_construct(run, node, *xs):
    return list(xs)


def _position(seq, pos, default, insert=False):
    """A sequence position, negative ones counted from the end; an insert may also name the
    end itself (ONNX: [-n, n - 1], or [-n, n] for SequenceInsert)."""
    p = default if pos is None else int(scalar_of(pos))
    n = len(seq)
    top = n if insert else n - 1
    if not -n <= p <= top:
        raise ValueError(f"sequence position {p} is out of range for a sequence of {n}")
    return p + n if p < 0 else p


@op("SequenceAt")
def _seq_at(run, node, seq, pos):
    return seq[_position(seq, pos, 0)]


@op("SequenceInsert")
def _seq_insert(run, node, seq, t, pos=None):
    out = list(seq)
    out.insert(_position(seq, pos, len(seq), insert=True), t)
    return out


@op("SequenceErase")
def _seq_erase(run, node, seq, pos=None):
    out = list(seq)
    del out[_position(seq, pos, -1)]
    return out


@op("SequenceLength")
def _seq_length(run, node, seq):
    return wrap(np.asarray(len(seq), dtype=np.int64))


@op("ConcatFromSequence")
def _concat_from_sequence(run, node, seq):
    new_axis = node.attr("new_axis", 0)
    rank = seq[0].ndim + (1 if new_axis else 0)
    axis = axis_of(node.attr("axis"), rank, "ConcatFromSequence axis")
    if new_axis:
        return _stack(seq, axis)
    if is_float(seq[0]) and any(v.requires_grad for v in seq):
        return concatenate(seq, axis=axis)
    return wrap(xp_of(*seq).concatenate([raw(v) for v in seq], axis=axis))


@op("SplitToSequence")
def _split_to_sequence(run, node, x, split=None):
    axis = axis_of(node.attr("axis", 0), x.ndim, "SplitToSequence axis")
    n = x.shape[axis]
    if split is None:
        sizes, squeeze = [1] * n, not node.attr("keepdims", 1)
    else:
        s = ints(split)
        sizes = s if raw(split).ndim else [s[0]] * (n // s[0]) + ([n % s[0]] if n % s[0] else [])
        squeeze = False
    out, start = [], 0
    for size in sizes:
        part = x[(slice(None),) * axis + (slice(start, start + size),)]
        if squeeze:
            part = part.reshape(tuple(d for i, d in enumerate(part.shape) if i != axis))
        out.append(part)
        start += size
    return out


# ---- optionals --------------------------------------------------------------------------------

@op("Optional")
def _optional(run, node, x=None):
    return x


@op("OptionalHasElement")
def _optional_has(run, node, x=None):
    return wrap(np.asarray(x is not None))


@op("OptionalGetElement")
def _optional_get(run, node, x):
    if x is None:
        raise ValueError("OptionalGetElement on an empty optional")
    return x

