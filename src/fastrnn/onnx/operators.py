"""The plain ONNX operators an imported graph runs around its recurrent nodes, forward and backward.

Each operator is an :class:`Operator`: ``forward(node, inputs, context)`` returns the
node's outputs (a list, one array per output) and what its backward pass needs;
``backward(node, saved, grads)`` takes the gradients of the outputs (None for an
output nothing depends on) and returns one gradient per input (None for inputs
that have none: indices, shapes, axes). An operator whose backward is None only
computes: shapes, constants, comparisons. :data:`OPERATORS` maps ONNX's op_type to
its operator; :mod:`fastrnn.onnx.recurrent` adds RNN, LSTM and GRU.

Floating-point values run in the model's dtype (``context.dtype``): ``Cast`` to a
float type, ``Constant`` and ``ConstantOfShape`` with float values produce it, so a
model turned to float64 computes in float64 throughout.
"""

import numpy as np
from scipy import special

from fastrnn.exceptions import OnnxImportError, ShapeError

__all__ = ["Operator", "OPERATORS", "Context", "unbroadcast"]

_SQRT_2 = np.sqrt(2.0)
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


class Context:
    """What a node's forward pass needs besides its inputs.

    Attributes
    ----------
    dtype : numpy.dtype
        The model's float dtype.
    opset : int
        The default domain's opset (Softmax's axis, Squeeze's axes moved across versions).
    keep : bool
        Keep what the backward pass needs.
    recurrent_weights : callable or None
        ``recurrent_weights(node, direction, build, options)``: a recurrent node's weights
        for one direction, packed once by the model while its parameters do not change;
        None to use ``build()``'s arrays (the weights computed in the graph).
    """

    def __init__(self, dtype, opset, keep, recurrent_weights=None):
        self.dtype, self.opset, self.keep = np.dtype(dtype), opset, keep
        self.recurrent_weights = recurrent_weights


class Operator:
    """One ONNX operator: its forward, its backward (or None), and an optional check of the
    node's attributes at load time (``check(node)`` raising OnnxImportError)."""

    def __init__(self, op_type, forward, backward=None, check=None):
        self.op_type, self.forward, self.backward, self.check = op_type, forward, backward, check


OPERATORS = {}


def _register(op_type, backward=None, check=None):
    def decorate(forward):
        OPERATORS[op_type] = Operator(op_type, forward, backward, check)
        return forward
    return decorate


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes broadcasting added or stretched, back to ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _float(array, context):
    """``array`` in the model's dtype when it is a float array (integers stay as they are)."""
    array = np.asarray(array)
    return array.astype(context.dtype, copy=False) if array.dtype.kind == "f" else array


def _ints(value):
    return [int(v) for v in np.asarray(value).reshape(-1)]


#: The most elements an operator that makes an array from a shape in the graph (ConstantOfShape,
#: Expand, Range) may create: a corrupt or hostile shape must fail cleanly, not exhaust memory.
MAX_ELEMENTS = 2 ** 31


def _check_size(node, shape):
    count = int(np.prod([int(size) for size in shape], dtype=object))
    if count > MAX_ELEMENTS:
        raise ShapeError(f"{node.label} would make an array of shape {list(shape)} ({count} elements); "
                         f"fastrnn.onnx refuses more than {MAX_ELEMENTS}")


def _axis(axis, ndim, node, name="axis"):
    axis = int(axis)
    if not -ndim <= axis < max(ndim, 1):
        raise ShapeError(f"{node.label}: {name}={axis} is outside the {ndim} axes of its input")
    return axis % max(ndim, 1)


# identity-like ------------------------------------------------------------------------------
def _pass_back(node, saved, grads):
    return [grads[0]] + [None] * (saved - 1)


@_register("Identity", backward=_pass_back)
def _identity(node, inputs, context):
    return [inputs[0]], 1


@_register("Dropout", backward=_pass_back)
def _dropout(node, inputs, context):
    # an imported graph runs dropout as inference does (ONNX Runtime's default): the identity
    outputs = [inputs[0]]
    if len(node.outputs) > 1:
        outputs.append(np.ones(np.shape(inputs[0]), bool))
    return outputs, len(inputs)


def _cast_back(node, saved, grads):
    dtype = saved
    if dtype.kind != "f" or grads[0] is None or grads[0].dtype.kind != "f":
        return [None]
    return [grads[0].astype(dtype, copy=False)]


@_register("Cast", backward=_cast_back)
def _cast(node, inputs, context):
    x = np.asarray(inputs[0])
    target = node.attributes["to"]  # a NumPy dtype: reader.read_graph converts ONNX's type number
    if target.kind == "f":
        target = context.dtype
    return [x.astype(target)], x.dtype


# constants and shapes -------------------------------------------------------------------------
@_register("Constant")
def _constant(node, inputs, context):
    attributes = node.attributes
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attributes:
            value = attributes[key]
            if key in ("value_float", "value_floats"):
                value = np.asarray(value, np.float32)
            elif key in ("value_int", "value_ints"):
                value = np.asarray(value, np.int64)
            return [_float(np.array(value), context)], None
    raise OnnxImportError(f"{node.label} has none of the attributes fastrnn reads (value, value_float(s), "
                          f"value_int(s)); it has {sorted(attributes)}")


@_register("ConstantOfShape")
def _constant_of_shape(node, inputs, context):
    value = node.attributes.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    shape = _ints(inputs[0])
    if any(size < 0 for size in shape):
        raise ShapeError(f"{node.label}: a shape must not hold negative sizes; got {shape}")
    _check_size(node, shape)
    return [_float(np.full(shape, value[0], value.dtype), context)], None


@_register("Shape")
def _shape(node, inputs, context):
    shape = np.asarray(np.shape(inputs[0]), np.int64)
    start, end = node.attributes.get("start", 0), node.attributes.get("end")
    return [shape[start:end]], None


@_register("Size")
def _size(node, inputs, context):
    return [np.asarray(np.size(inputs[0]), np.int64)], None


@_register("Range")
def _range(node, inputs, context):
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])
    if delta == 0:
        raise ShapeError(f"{node.label}: delta must not be 0")
    _check_size(node, [max(np.ceil((limit - start) / delta), 0)])
    return [_float(np.arange(start, limit, delta, dtype=start.dtype), context)], None


def _comparison(function):
    def forward(node, inputs, context):
        return [function(inputs[0], inputs[1])], None
    return forward


for _op, _function in (("Equal", np.equal), ("NotEqual", np.not_equal), ("Less", np.less),
                       ("Greater", np.greater), ("And", np.logical_and), ("Or", np.logical_or)):
    _register(_op)(_comparison(_function))


@_register("Not")
def _not(node, inputs, context):
    return [np.logical_not(inputs[0])], None


def _where_back(node, saved, grads):
    condition, x_shape, y_shape = saved
    g = grads[0]
    return [None, unbroadcast(np.where(condition, g, 0), x_shape),
            unbroadcast(np.where(condition, 0, g), y_shape)]


@_register("Where", backward=_where_back)
def _where(node, inputs, context):
    condition, x, y = inputs
    return [np.where(condition, x, y)], (condition, np.shape(x), np.shape(y))


# arithmetic -------------------------------------------------------------------------------------
def _binary_back(node, saved, grads):
    a, b = saved
    g = grads[0]
    op = node.op_type
    if op == "Add":
        ga, gb = g, g
    elif op == "Sub":
        ga, gb = g, -g
    elif op == "Mul":
        ga, gb = g * b, g * a
    else:  # Div
        ga, gb = g / b, -g * a / (b * b)
    return [unbroadcast(ga, np.shape(a)) if np.asarray(a).dtype.kind == "f" else None,
            unbroadcast(gb, np.shape(b)) if np.asarray(b).dtype.kind == "f" else None]


def _binary(op_type, function):
    def forward(node, inputs, context):
        a, b = inputs
        return [function(a, b)], (a, b) if context.keep else None
    _register(op_type, backward=_binary_back)(forward)


def _divide(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return (np.trunc(a / b)).astype(np.result_type(a, b))  # ONNX's integer Div truncates
    return np.divide(a, b)


for _op, _function in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", _divide)):
    _binary(_op, _function)


def _neg_back(node, saved, grads):
    return [-grads[0]]


@_register("Neg", backward=_neg_back)
def _neg(node, inputs, context):
    return [np.negative(inputs[0])], None


def _matmul_back(node, saved, grads):
    a, b = saved
    g = grads[0]
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
    gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
    ga = unbroadcast(ga, a2.shape).reshape(a.shape)
    gb = unbroadcast(gb, b2.shape).reshape(b.shape)
    return [ga, gb]


@_register("MatMul", backward=_matmul_back)
def _matmul(node, inputs, context):
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    return [np.matmul(a, b)], (a, b) if context.keep else None


def _gemm_back(node, saved, grads):
    a, b, c_shape = saved
    alpha = node.attributes.get("alpha", 1.0)
    beta = node.attributes.get("beta", 1.0)
    trans_a, trans_b = node.attributes.get("transA", 0), node.attributes.get("transB", 0)
    g = grads[0]
    a_used = a.T if trans_a else a
    b_used = b.T if trans_b else b
    ga = (g @ b_used.T) * a.dtype.type(alpha)
    gb = (a_used.T @ g) * b.dtype.type(alpha)
    result = [ga.T if trans_a else ga, gb.T if trans_b else gb]
    if c_shape is not None:
        result.append(unbroadcast(g * g.dtype.type(beta), c_shape))
    return result


@_register("Gemm", backward=_gemm_back)
def _gemm(node, inputs, context):
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    c = inputs[2] if len(inputs) > 2 else None
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"{node.label}: Gemm multiplies 2-D matrices; got shapes {a.shape} and {b.shape}")
    attributes = node.attributes
    a_used = a.T if attributes.get("transA", 0) else a
    b_used = b.T if attributes.get("transB", 0) else b
    y = a_used @ b_used
    alpha = attributes.get("alpha", 1.0)
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if c is not None:
        beta = attributes.get("beta", 1.0)
        y = y + (np.asarray(c) * y.dtype.type(beta) if beta != 1.0 else c)
    return [y], (a, b, None if c is None else np.shape(c)) if context.keep else None


# activations -------------------------------------------------------------------------------------
def _activation_back(node, saved, grads):
    x, y = saved
    g = grads[0]
    op = node.op_type
    if op == "Relu":
        return [g * (x > 0)]
    if op == "Tanh":
        return [g * (1 - y * y)]
    if op == "Sigmoid":
        return [g * y * (1 - y)]
    if op == "Erf":
        return [g * (2 / np.sqrt(np.pi)) * np.exp(-x * x).astype(x.dtype)]
    # Gelu
    if node.attributes.get("approximate", "none") == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        t = np.tanh(inner)
        derivative = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
    else:
        derivative = 0.5 * (1 + special.erf(x / _SQRT_2)) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return [g * derivative.astype(x.dtype)]


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + special.erf(x / _SQRT_2))


def _activation(op_type, function):
    def forward(node, inputs, context):
        x = np.asarray(inputs[0])
        y = np.asarray(function(node, x)).astype(x.dtype, copy=False)
        return [y], (x, y) if context.keep else None
    _register(op_type, backward=_activation_back)(forward)


_activation("Relu", lambda node, x: np.maximum(x, 0))
_activation("Tanh", lambda node, x: np.tanh(x))
_activation("Sigmoid", lambda node, x: special.expit(x))
_activation("Erf", lambda node, x: special.erf(x))
_activation("Gelu", lambda node, x: _gelu(x, node.attributes.get("approximate", "none")))


def _softmax_axis(node, ndim, context):
    """(axis, flatten): the axis the softmax runs over, and whether the axes from it on are
    flattened into one (before opset 13)."""
    flatten = context.opset < 13
    return _axis(node.attributes.get("axis", 1 if flatten else -1), ndim, node), flatten


def _to_last(array, axis, flatten):
    """``array`` viewed so that the softmax runs over its last axis."""
    if flatten:
        return array.reshape(int(np.prod(array.shape[:axis])), -1)
    return np.moveaxis(array, axis, -1)


def _from_last(array, axis, flatten, shape):
    return array.reshape(shape) if flatten else np.moveaxis(array, -1, axis)


def _softmax_back(node, saved, grads):
    y_last, axis, flatten, shape = saved
    g_last = _to_last(grads[0], axis, flatten)
    if node.op_type == "Softmax":
        d = y_last * (g_last - np.sum(g_last * y_last, axis=-1, keepdims=True))
    else:
        d = g_last - np.exp(y_last) * np.sum(g_last, axis=-1, keepdims=True)
    return [_from_last(d, axis, flatten, shape)]


def _softmax(op_type):
    def forward(node, inputs, context):
        x = np.asarray(inputs[0])
        axis, flatten = _softmax_axis(node, x.ndim, context)
        x_last = _to_last(x, axis, flatten)
        shifted = x_last - np.max(x_last, axis=-1, keepdims=True)
        if op_type == "Softmax":
            e = np.exp(shifted)
            y_last = e / np.sum(e, axis=-1, keepdims=True)
        else:
            y_last = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        saved = (y_last, axis, flatten, x.shape) if context.keep else None
        return [_from_last(y_last, axis, flatten, x.shape)], saved
    _register(op_type, backward=_softmax_back)(forward)


_softmax("Softmax")
_softmax("LogSoftmax")


# layout -------------------------------------------------------------------------------------------
def _transpose_back(node, saved, grads):
    return [np.transpose(grads[0], np.argsort(saved))]


@_register("Transpose", backward=_transpose_back)
def _transpose(node, inputs, context):
    x = np.asarray(inputs[0])
    perm = node.attributes.get("perm")
    perm = list(range(x.ndim))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"{node.label}: perm={perm} is not a permutation of the {x.ndim} axes of its input")
    return [np.transpose(x, perm)], perm


def _reshape_back(node, saved, grads):
    shape, count = saved
    return [grads[0].reshape(shape)] + [None] * (count - 1)


def _axes_argument(node, inputs, attribute="axes"):
    """Axes from the second input (opset 13 on) or the attribute (before); None if neither."""
    if len(inputs) > 1 and inputs[1] is not None:
        return _ints(inputs[1])
    value = node.attributes.get(attribute)
    return None if value is None else [int(v) for v in value]


@_register("Squeeze", backward=_reshape_back)
def _squeeze(node, inputs, context):
    x = np.asarray(inputs[0])
    axes = _axes_argument(node, inputs)
    if axes is None:
        y = np.squeeze(x)
    else:
        axes = tuple(_axis(a, x.ndim, node, "axes") for a in axes)
        if any(x.shape[a] != 1 for a in axes):
            raise ShapeError(f"{node.label}: cannot squeeze axes {list(axes)} of shape {x.shape}: "
                             "their sizes must be 1")
        y = np.squeeze(x, axis=axes)
    return [y], (x.shape, len(inputs))


@_register("Unsqueeze", backward=_reshape_back)
def _unsqueeze(node, inputs, context):
    x = np.asarray(inputs[0])
    axes = _axes_argument(node, inputs)
    if axes is None:
        raise OnnxImportError(f"{node.label} has no axes (neither an input nor an attribute)")
    rank = x.ndim + len(axes)
    y = np.expand_dims(x, tuple(sorted(_axis(a, rank, node, "axes") for a in axes)))
    return [y], (x.shape, len(inputs))


@_register("Reshape", backward=_reshape_back)
def _reshape(node, inputs, context):
    x = np.asarray(inputs[0])
    shape = _ints(inputs[1])
    if not node.attributes.get("allowzero", 0):
        shape = [x.shape[i] if size == 0 and i < x.ndim else size for i, size in enumerate(shape)]
    try:
        y = x.reshape(shape)
    except ValueError as error:
        raise ShapeError(f"{node.label}: cannot reshape an array of shape {x.shape} to {shape}") from error
    return [y], (x.shape, len(inputs))


@_register("Flatten", backward=_reshape_back)
def _flatten(node, inputs, context):
    x = np.asarray(inputs[0])
    axis = node.attributes.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis]))
    return [x.reshape(rows, -1 if rows else int(np.prod(x.shape[axis:])))], (x.shape, 1)


def _expand_back(node, saved, grads):
    return [unbroadcast(grads[0], saved), None]


@_register("Expand", backward=_expand_back)
def _expand(node, inputs, context):
    x = np.asarray(inputs[0])
    try:
        shape = np.broadcast_shapes(x.shape, tuple(_ints(inputs[1])))
    except ValueError as error:
        raise ShapeError(f"{node.label}: cannot expand shape {x.shape} to {_ints(inputs[1])}") from error
    _check_size(node, shape)
    return [np.broadcast_to(x, shape)], x.shape


def _concat_back(node, saved, grads):
    axis, sizes = saved
    bounds = np.cumsum(sizes)[:-1]
    return list(np.split(grads[0], bounds, axis=axis))


@_register("Concat", backward=_concat_back)
def _concat(node, inputs, context):
    arrays = [np.asarray(x) for x in inputs]
    axis = _axis(node.attributes.get("axis", 0), arrays[0].ndim, node)
    try:
        y = np.concatenate(arrays, axis=axis)
    except ValueError as error:
        raise ShapeError(f"{node.label}: cannot concatenate shapes {[a.shape for a in arrays]} on axis "
                         f"{axis}") from error
    return [y], (axis, [a.shape[axis] for a in arrays])


def _slice_back(node, saved, grads):
    shape, dtype, index, count = saved
    g = np.zeros(shape, grads[0].dtype)
    g[index] = grads[0]
    return [g] + [None] * (count - 1)


@_register("Slice", backward=_slice_back)
def _slice(node, inputs, context):
    x = np.asarray(inputs[0])
    if len(inputs) > 1:  # opset 10 on: starts, ends, axes, steps as inputs
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    else:
        starts, ends = list(node.attributes["starts"]), list(node.attributes["ends"])
        axes, steps = node.attributes.get("axes"), None
    axes = list(range(len(starts))) if axes is None else [_axis(a, x.ndim, node, "axes") for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
        raise ShapeError(f"{node.label}: starts {starts}, ends {ends}, axes {axes} and steps {steps} "
                         "must have one entry per sliced axis, and steps must not be 0")
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    index = tuple(index)
    return [x[index]], (x.shape, x.dtype, index, len(inputs))


def _gather_back(node, saved, grads):
    shape, indices, axis = saved
    g = grads[0]
    full = np.zeros(shape, g.dtype)
    # rows of the table are summed as an embedding's gradient is: once per lookup
    target = np.moveaxis(full, axis, 0)
    source = np.moveaxis(g, tuple(range(axis, axis + indices.ndim)), tuple(range(indices.ndim)))
    np.add.at(target, indices, source)
    return [full, None]


@_register("Gather", backward=_gather_back)
def _gather(node, inputs, context):
    data, indices = np.asarray(inputs[0]), np.asarray(inputs[1])
    axis = _axis(node.attributes.get("axis", 0), data.ndim, node)
    if indices.dtype.kind not in "iu":
        raise ShapeError(f"{node.label}: indices must be integers; got dtype {indices.dtype}")
    size = data.shape[axis]
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise ShapeError(f"{node.label}: indices must lie in [{-size}, {size - 1}] (axis {axis} of shape "
                         f"{data.shape}); got values from {indices.min()} to {indices.max()}")
    indices = np.where(indices < 0, indices + size, indices)
    y = np.take(data, indices, axis=axis)
    return [y], (data.shape, indices, axis)


def _reduce_back(node, saved, grads):
    shape, axes, keepdims, count, mean = saved
    g = grads[0]
    if not keepdims:
        g = np.expand_dims(g, axes)
    g = np.broadcast_to(g, shape)
    if mean:
        g = g / max(int(np.prod([shape[a] for a in axes])), 1)
    return [np.array(g)] + [None] * (count - 1)


def _reduce(op_type, mean, axes_input_from):
    def forward(node, inputs, context):
        x = np.asarray(inputs[0])
        if context.opset >= axes_input_from:
            axes = _ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
        else:
            axes = node.attributes.get("axes")
        keepdims = bool(node.attributes.get("keepdims", 1))
        if not axes:
            if node.attributes.get("noop_with_empty_axes", 0):
                return [x], (x.shape, (), True, len(inputs), False)
            axes = list(range(x.ndim))
        axes = tuple(sorted(_axis(a, x.ndim, node, "axes") for a in axes))
        y = (np.mean if mean else np.sum)(x, axis=axes, keepdims=keepdims)
        return [np.asarray(y, x.dtype)], (x.shape, axes, keepdims, len(inputs), mean)
    _register(op_type, backward=_reduce_back)(forward)


_reduce("ReduceSum", False, 13)
_reduce("ReduceMean", True, 18)


# sorting and scattering (torch's export of pack_padded_sequence(enforce_sorted=False)) ----------------------
def _topk_back(node, saved, grads):
    shape, indices, axis = saved
    g = np.zeros(shape, grads[0].dtype if grads[0] is not None else np.float64)
    if grads[0] is not None:
        np.put_along_axis(g, indices, grads[0], axis)  # TopK picks distinct entries: no sums needed
    return [g, None]


@_register("TopK", backward=_topk_back)
def _topk(node, inputs, context):
    x = np.asarray(inputs[0])
    axis = _axis(node.attributes.get("axis", -1), x.ndim, node)
    k = _ints(inputs[1])[0]
    if not 0 <= k <= x.shape[axis]:
        raise ShapeError(f"{node.label}: k={k} must lie in [0, {x.shape[axis]}] (axis {axis} of shape {x.shape})")
    largest = node.attributes.get("largest", 1)
    # stable: of equal values the one of lower index comes first, as ONNX specifies
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    values = np.take_along_axis(x, indices, axis)
    return [values, indices], (x.shape, indices, axis)


def _scatter_back(node, saved, grads):
    indices, axis = saved
    g = grads[0]
    g_data = np.array(g)
    np.put_along_axis(g_data, indices, 0, axis)  # overwritten entries do not reach the output
    return [g_data, None, np.take_along_axis(g, indices, axis)]


def _check_scatter(node):
    if node.attributes.get("reduction", "none") != "none":
        raise OnnxImportError(f"{node.label}: attribute reduction={node.attributes['reduction']!r} is not "
                              "supported by fastrnn; it runs ScatterElements with reduction='none' only")


@_register("ScatterElements", backward=_scatter_back, check=_check_scatter)
def _scatter_elements(node, inputs, context):
    data, indices, updates = (np.asarray(v) for v in inputs[:3])
    axis = _axis(node.attributes.get("axis", 0), data.ndim, node)
    size = data.shape[axis]
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise ShapeError(f"{node.label}: indices must lie in [{-size}, {size - 1}]; got values from "
                         f"{indices.min()} to {indices.max()}")
    indices = np.where(indices < 0, indices + size, indices)
    out = np.array(data)
    np.put_along_axis(out, indices, updates, axis)
    return [out], (indices, axis)


# normalization -------------------------------------------------------------------------------------------
def _layer_norm_back(node, saved, grads):
    x_hat, inv, scale, axes, scale_shape, has_bias = saved
    g = grads[0]
    g_x_hat = g * scale
    mean_g = np.mean(g_x_hat, axis=axes, keepdims=True)
    mean_gx = np.mean(g_x_hat * x_hat, axis=axes, keepdims=True)
    g_x = inv * (g_x_hat - mean_g - x_hat * mean_gx)
    result = [g_x, unbroadcast(g * x_hat, scale_shape)]
    if has_bias:
        result.append(unbroadcast(g, scale_shape))
    return result


@_register("LayerNormalization", backward=_layer_norm_back)
def _layer_norm(node, inputs, context):
    x, scale = np.asarray(inputs[0]), np.asarray(inputs[1])
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    axis = _axis(node.attributes.get("axis", -1), x.ndim, node)
    axes = tuple(range(axis, x.ndim))
    epsilon = x.dtype.type(node.attributes.get("epsilon", 1e-5))
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    inv = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + epsilon)
    x_hat = centered * inv
    y = x_hat * scale + (0 if bias is None else bias)
    outputs = [y.astype(x.dtype, copy=False), mean, inv][:max(len(node.outputs), 1)]
    saved = (x_hat, inv, scale, axes, scale.shape, bias is not None) if context.keep else None
    return outputs, saved
