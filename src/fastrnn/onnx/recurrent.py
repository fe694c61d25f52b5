"""ONNX's RNN, LSTM and GRU nodes on fastrnn's compiled kernels, forward and backward.

A node's tensors ``W`` [dirs, G*H, D], ``R`` [dirs, G*H, H] and ``B`` [dirs, 2*G*H]
stack the gate blocks in ONNX's order (LSTM ``i, o, f, c``, GRU ``z, r, h``); each
direction is reordered to the kernels' (PyTorch's) packing by
:func:`fastrnn.onnx.layout.kernel_blocks` (the exporter's inverse) and run through
:func:`fastrnn.functional.direction.run_direction`, whose lengths and reverse
direction are ONNX's ``sequence_lens`` semantics: a row runs over its first
``sequence_lens[b]`` steps (the reverse direction from its last valid step back),
``Y`` is zero past its end, ``Y_h``/``Y_c`` are the states after its last valid
step. The backward pass returns the gradients in ONNX's layout and order.

Supported: every ``direction``, ``layout`` 0 and 1, ``hidden_size``,
``sequence_lens``, ``initial_h``/``initial_c``, the GRU's ``linear_before_reset``
0 and 1, any subset of the outputs, an all-zero peephole ``P``, and the default
activations (and ``Relu`` for the RNN, the kernels' ``nonlinearity="relu"``).
Refused with :class:`~fastrnn.exceptions.OnnxImportError`, at load time: ``clip``,
``input_forget=1``, other activations and ``activation_alpha``/``activation_beta``,
none of which ``torch.onnx.export`` or the Keras converters write and none of which
the kernels compute; a non-zero ``P`` is refused when the node runs (its values may
come from the graph).
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, OnnxImportError, ShapeError
from fastrnn.functional import cells
from fastrnn.functional.direction import backward_direction, run_direction
from fastrnn.functional.lengths import SequenceLengths
from fastrnn.onnx.layout import kernel_blocks, onnx_blocks
from fastrnn.onnx.operators import OPERATORS, Operator

__all__ = ["RECURRENT_SPECS"]

#: The cell of each ONNX recurrent operator.
RECURRENT_SPECS = {spec.onnx_name: spec for spec in cells.CELLS.values()}

#: The activations ONNX applies by default, per direction, in its order (f, g[, h]).
_DEFAULT_ACTIVATIONS = {"RNN": ("tanh",), "LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}

_ATTRIBUTES = {
    "RNN": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout"},
    "LSTM": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
             "input_forget", "layout"},
    "GRU": {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
            "layout", "linear_before_reset"},
}

_DIRECTIONS = ("forward", "reverse", "bidirectional")


def _refuse(node, attribute, value, supported):
    raise OnnxImportError(f"{node.label}: attribute {attribute}={value!r} is not supported by fastrnn; "
                          f"{supported}")


def _check(node):
    """Validate a recurrent node's attributes at load time (see the module docstring)."""
    op = node.op_type
    attributes = node.attributes
    most_inputs, most_outputs = (8, 3) if op == "LSTM" else (6, 2)
    if len(node.inputs) > most_inputs or len(node.outputs) > most_outputs or len(node.inputs) < 3:
        raise OnnxImportError(f"{node.label} has {len(node.inputs)} inputs and {len(node.outputs)} outputs; "
                              f"an ONNX {op} has 3 to {most_inputs} inputs and at most {most_outputs} outputs")
    if not all(node.inputs[:3]):
        raise OnnxImportError(f"{node.label} leaves out one of its required inputs X, W, R: "
                              f"{list(node.inputs[:3])}")
    unknown = sorted(set(attributes) - _ATTRIBUTES[op])
    if unknown:
        raise OnnxImportError(f"{node.label}: unknown attribute(s) {unknown}; an ONNX {op} has "
                              f"{sorted(_ATTRIBUTES[op])}")
    if "clip" in attributes:
        _refuse(node, "clip", attributes["clip"], "fastrnn's kernels do not clip: remove the attribute "
                "(no clipping) to run the node")
    for name in ("activation_alpha", "activation_beta"):
        if name in attributes:
            _refuse(node, name, attributes[name], "fastrnn runs the default activations only, which take "
                    "no alpha or beta")
    if attributes.get("input_forget", 0) not in (0,):
        _refuse(node, "input_forget", attributes["input_forget"], "fastrnn supports input_forget=0 only "
                "(separate input and forget gates)")
    direction = attributes.get("direction", "forward")
    if direction not in _DIRECTIONS:
        _refuse(node, "direction", direction, f"it must be one of {', '.join(_DIRECTIONS)}")
    if attributes.get("layout", 0) not in (0, 1):
        _refuse(node, "layout", attributes["layout"], "it must be 0 or 1")
    if attributes.get("linear_before_reset", 0) not in (0, 1):
        _refuse(node, "linear_before_reset", attributes["linear_before_reset"], "it must be 0 or 1")
    hidden_size = attributes.get("hidden_size")
    if hidden_size is not None and (not isinstance(hidden_size, int) or hidden_size < 1):
        _refuse(node, "hidden_size", hidden_size, "it must be a positive integer")
    _nonlinearities(node)


def _nonlinearities(node):
    """The RNN kernels' ``nonlinearity`` of each direction (None for LSTM and GRU)."""
    op, attributes = node.op_type, node.attributes
    dirs = 2 if attributes.get("direction", "forward") == "bidirectional" else 1
    defaults = _DEFAULT_ACTIVATIONS[op]
    given = attributes.get("activations")
    if given is None:
        return [("tanh" if op == "RNN" else None)] * dirs
    names = [str(a).lower() for a in given]
    if op == "RNN":
        if len(names) == dirs and all(name in ("tanh", "relu") for name in names):
            return names
        supported = f"an RNN runs Tanh or Relu, one per direction ({dirs} here)"
    else:
        if names == list(defaults) * dirs:
            return [None] * dirs
        supported = (f"an {op} runs ONNX's default activations only: "
                     f"{[a.capitalize() for a in defaults * dirs]}")
    _refuse(node, "activations", list(given), supported)


class _Shapes:
    """A recurrent node's sizes read from its inputs, checked against each other."""

    def __init__(self, node, spec, x, w, r, b, lengths, h0, c0):
        self.dirs = 2 if node.attributes.get("direction", "forward") == "bidirectional" else 1
        if x.ndim != 3:
            raise ShapeError(f"{node.label}: X must have 3 axes ([T, B, D], or [B, T, D] with layout=1); "
                             f"got shape {x.shape}")
        self.T, self.B, self.D = x.shape
        G = spec.gates
        self.H = node.attributes.get("hidden_size", r.shape[-1] if r.ndim == 3 else None)
        H = self.H
        expected = {"W": (w, (self.dirs, G * H, self.D)), "R": (r, (self.dirs, G * H, H)),
                    "B": (b, (self.dirs, 2 * G * H)), "initial_h": (h0, (self.dirs, self.B, H)),
                    "initial_c": (c0, (self.dirs, self.B, H)), "sequence_lens": (lengths, (self.B,))}
        for name, (array, shape) in expected.items():
            if array is not None and array.shape != shape:
                raise ShapeError(f"{node.label}: {name} must have shape {list(shape)} (dirs={self.dirs}, "
                                 f"batch={self.B}, input={self.D}, hidden_size={H}, {G} gate(s), layout 0); "
                                 f"got {list(array.shape)}")


def _inputs(inputs):
    padded = list(inputs) + [None] * (8 - len(inputs))
    return [None if value is None else np.asarray(value) for value in padded[:8]]


def _forward(node, inputs, context):
    spec = RECURRENT_SPECS[node.op_type]
    x, w, r, b, lengths, h0, c0, peepholes = _inputs(inputs)
    dtype = context.dtype
    layout = node.attributes.get("layout", 0)
    if x.dtype.kind != "f":
        raise ShapeError(f"{node.label}: X must be a float tensor; got dtype {x.dtype}")
    x = x.astype(dtype, copy=False)
    if layout == 1:  # batch first: [B, T, D], states [B, dirs, H]
        x = x.transpose(1, 0, 2)
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    if not spec.has_cell_state:
        c0 = None
    shapes = _Shapes(node, spec, x, w, r, b, lengths, h0, c0)
    if peepholes is not None and np.any(peepholes != 0):
        raise OnnxImportError(f"{node.label}: input P (peepholes) holds non-zero values; fastrnn's LSTM "
                              "kernels have no peephole connections (an all-zero P, or none, runs)")
    if lengths is not None:
        if lengths.dtype.kind not in "iu" or (lengths.size and (lengths.min() < 0 or lengths.max() > shapes.T)):
            raise ArgumentError(f"{node.label}: sequence_lens must lie in [0, T] = [0, {shapes.T}] (integers); "
                                f"got {lengths.tolist()}")
    steps = None if lengths is None else SequenceLengths(lengths, shapes.T, shapes.B)
    GH = spec.gates * shapes.H
    nonlinearities = _nonlinearities(node)
    direction = node.attributes.get("direction", "forward")
    options = {}
    if spec is cells.GRU:
        options["reset_after"] = bool(node.attributes.get("linear_before_reset", 0))
    ys, finals, tapes = [], [], []
    for d in range(shapes.dirs):
        def build(d=d):
            weights = {"w_ih": kernel_blocks(spec, w[d].astype(dtype, copy=False)),
                       "w_hh": kernel_blocks(spec, r[d].astype(dtype, copy=False))}
            if b is not None:
                weights["b_ih"] = kernel_blocks(spec, b[d, :GH].astype(dtype, copy=False))
                weights["b_hh"] = kernel_blocks(spec, b[d, GH:].astype(dtype, copy=False))
            return weights

        if spec is cells.RNN:
            options["nonlinearity"] = nonlinearities[d]
        weights = (build() if context.recurrent_weights is None
                   else context.recurrent_weights(node, d, build, dict(options)))
        states = [np.zeros((shapes.B, shapes.H), dtype) if h0 is None else h0[d].astype(dtype)]
        if spec.has_cell_state:
            states.append(np.zeros((shapes.B, shapes.H), dtype) if c0 is None else c0[d].astype(dtype))
        y, state, tape = run_direction(spec, x, weights, states, steps=steps,
                                       reverse=direction == "reverse" or d == 1, fill="zeros",
                                       requires_grad=context.keep, **options)
        ys.append(y)
        finals.append(state)
        tapes.append(tape)
    if shapes.dirs == 1:  # views: no copy of the outputs
        y, y_h = ys[0][:, None], finals[0][0][None]
        y_c = finals[0][1][None] if spec.has_cell_state else None
    else:
        y = np.stack(ys, axis=1)  # [T, dirs, B, H]
        y_h = np.stack([state[0] for state in finals])
        y_c = np.stack([state[1] for state in finals]) if spec.has_cell_state else None
    if layout == 1:
        y, y_h = y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2)
        y_c = None if y_c is None else y_c.transpose(1, 0, 2)
    outputs = [y, y_h, y_c][:len(node.outputs)]
    saved = (tapes, shapes, layout, [v is not None for v in (x, w, r, b, lengths, h0, c0, peepholes)],
             len(inputs)) if context.keep else None
    return outputs, saved


def _backward(node, saved, grads):
    spec = RECURRENT_SPECS[node.op_type]
    tapes, shapes, layout, present, count = saved
    grads = list(grads) + [None] * (3 - len(grads))
    g_y, g_h, g_c = grads[:3]
    if layout == 1:
        g_y = None if g_y is None else g_y.transpose(1, 2, 0, 3)
        g_h = None if g_h is None else g_h.transpose(1, 0, 2)
        g_c = None if g_c is None else g_c.transpose(1, 0, 2)
    g_x = None
    g_w, g_r, g_b, g_h0, g_c0 = [], [], [], [], []
    for d, tape in enumerate(tapes):
        d_finals = [None if g_h is None else g_h[d]]
        if spec.has_cell_state:
            d_finals.append(None if g_c is None else g_c[d])
        result = backward_direction(tape, None if g_y is None else g_y[:, d], d_finals)
        g_x = result["x"] if g_x is None else g_x + result["x"]
        g_w.append(onnx_blocks(spec, result["w_ih"]))
        g_r.append(onnx_blocks(spec, result["w_hh"]))
        if present[3]:
            g_b.append(np.concatenate([onnx_blocks(spec, result["b_ih"]),
                                       onnx_blocks(spec, result["b_hh"])]))
        g_h0.append(result["h0"])
        if spec.has_cell_state:
            g_c0.append(result["c0"])
    g_h0 = np.stack(g_h0)
    g_c0 = np.stack(g_c0) if g_c0 else None
    if layout == 1:
        g_x = g_x.transpose(1, 0, 2)
        g_h0 = g_h0.transpose(1, 0, 2)
        g_c0 = None if g_c0 is None else g_c0.transpose(1, 0, 2)
    result = [g_x, np.stack(g_w), np.stack(g_r), np.stack(g_b) if g_b else None, None,
              g_h0 if present[5] else None, g_c0 if present[6] else None, None]
    return result[:count]


for _op in RECURRENT_SPECS:
    OPERATORS[_op] = Operator(_op, _forward, _backward, _check)
