"""The ONNX nodes both facades' exports share: a recurrent layer as one ``RNN``/``LSTM``/``GRU``
node, a fully connected layer, and the elementwise activations.

Each function takes the :class:`~fastrnn.onnx.graph.GraphBuilder` and the
:class:`~fastrnn.onnx.graph.Value` s it works on, and returns Values. Shapes follow
ONNX's recurrent operators: time-major ``X`` of shape (T, B, D), ``Y`` of shape
(T, dirs, B, H), ``Y_h``/``Y_c`` of shape (dirs, B, H).
"""

import math

import numpy as np

from fastrnn.functional.cells import cell_spec
from fastrnn.onnx.layout import onnx_recurrent_weights

__all__ = ["ACTIVATIONS", "activation", "dense", "directions_to_features", "recurrent_node"]

#: The activations :func:`activation` writes, by the name both facades use.
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "softmax", "log_softmax")


def recurrent_node(g, cell, x, directions, *, direction, lengths=None, initial_h=None, initial_c=None,
                   nonlinearity="tanh", reset_after=True, hint="rnn"):
    """One ONNX recurrent node.

    Parameters
    ----------
    g : GraphBuilder
    cell : str or CellSpec
    x : Value of shape (T, B, D)
    directions : list of dict
        The kernels' weights of each direction (see
        :func:`~fastrnn.onnx.layout.onnx_recurrent_weights`).
    direction : {"forward", "reverse", "bidirectional"}
    lengths : Value of int32 of shape (B,), optional
        ONNX's ``sequence_lens``: steps at and past a row's length leave the states
        unchanged and output zeros.
    initial_h, initial_c : Value of shape (dirs, B, H), optional
    nonlinearity : {"tanh", "relu"}
        The SimpleRNN's activation.
    reset_after : bool
        GRU: ``True`` is PyTorch's cell (ONNX ``linear_before_reset=1``), ``False``
        applies the reset gate before the recurrent product (``linear_before_reset=0``).

    Returns
    -------
    y : Value of shape (T, dirs, B, H)
    h : Value of shape (dirs, B, H)
    c : Value of shape (dirs, B, H) or None
    """
    spec = cell_spec(cell)
    W, R, B = onnx_recurrent_weights(spec, directions)
    dirs, H = W.shape[0], R.shape[2]
    inputs = [x.name, g.initializer(W, f"{hint}.W"), g.initializer(R, f"{hint}.R"),
              g.initializer(B, f"{hint}.B"), "" if lengths is None else lengths.name,
              "" if initial_h is None else initial_h.name, "" if initial_c is None else initial_c.name]
    while inputs[-1] == "":
        inputs.pop()
    attributes = dict(spec.onnx_attributes)
    if spec.name == "gru":
        attributes["linear_before_reset"] = int(reset_after)
    if spec.name == "rnn" and nonlinearity != "tanh":
        attributes["activations"] = [nonlinearity.capitalize()] * dirs
    outputs = g.node(spec.onnx_name, inputs, hint, outputs=3 if spec.has_cell_state else 2,
                     hidden_size=H, direction=direction, **attributes)
    T, batch = x.dims[0], x.dims[1]
    y = x.like(outputs[0], (T, dirs, batch, H))
    h = x.like(outputs[1], (dirs, batch, H))
    c = x.like(outputs[2], (dirs, batch, H)) if spec.has_cell_state else None
    return y, h, c


def directions_to_features(g, y, hint="features"):
    """ONNX's ``Y`` (T, dirs, B, H) as (T, B, dirs*H): the directions side by side, as
    PyTorch and Keras's ``concat`` give them."""
    T, dirs, batch, H = y.dims
    if dirs == 1:
        return g.squeeze(y, 1, hint)
    moved = g.transpose(y, (0, 2, 1, 3), f"{hint}_tbdh")
    shape = g.ints([0, 0, -1], "shape")
    return y.like(g.node("Reshape", [moved.name, shape], hint), (T, batch, dirs * H))


def dense(g, x, weight, bias, *, transposed, hint="dense"):
    """``x @ W^T + b`` (``transposed``: ``weight`` of shape (out, in), PyTorch's) or ``x @ W + b``
    (``weight`` of shape (in, out), Keras's): ``Gemm`` on 2-D input, ``MatMul`` and ``Add`` above.

    Parameters
    ----------
    x : Value of shape (..., in)
    weight : ndarray
    bias : ndarray of shape (out,) or None
    """
    weight = np.asarray(weight, np.float32)
    bias = None if bias is None else np.asarray(bias, np.float32)
    out = weight.shape[0] if transposed else weight.shape[1]
    dims = x.dims[:-1] + (out,)
    if x.rank == 2:
        inputs = [x.name, g.initializer(weight, f"{hint}.weight")]
        if bias is not None:
            inputs.append(g.initializer(bias, f"{hint}.bias"))
        return x.like(g.node("Gemm", inputs, hint, transB=int(transposed)), dims)
    matrix = np.ascontiguousarray(weight.T) if transposed else weight
    product = g.node("MatMul", [x.name, g.initializer(matrix, f"{hint}.weight")], f"{hint}_matmul")
    if bias is None:
        return x.like(product, dims)
    return x.like(g.node("Add", [product, g.initializer(bias, f"{hint}.bias")], hint), dims)


def activation(g, x, name, axis=-1, hint=None):
    """An elementwise activation (or softmax along ``axis``) by name (:data:`ACTIVATIONS`)."""
    hint = hint or name
    if name == "linear":
        return x
    simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax",
              "log_softmax": "LogSoftmax"}
    if name in ("softmax", "log_softmax"):
        return g.apply(simple[name], x, hint, axis=axis)
    if name in simple:
        return g.apply(simple[name], x, hint)
    if name == "gelu":
        # x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); the Gelu operator needs opset 20
        scaled = g.node("Div", [x.name, g.scalar(math.sqrt(2), "sqrt2")], f"{hint}_scaled")
        erf = g.node("Erf", [scaled], f"{hint}_erf")
        return _half_x_times_one_plus(g, x, erf, hint)
    if name == "gelu_tanh":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's approximate="tanh"
        cube = g.node("Mul", [x.name, g.node("Mul", [x.name, x.name], f"{hint}_sq")], f"{hint}_cube")
        inner = g.node("Add", [x.name, g.node("Mul", [cube, g.scalar(0.044715, "k")], f"{hint}_kcube")],
                       f"{hint}_inner")
        tanh = g.node("Tanh", [g.node("Mul", [inner, g.scalar(math.sqrt(2 / math.pi), "k")],
                                      f"{hint}_arg")], f"{hint}_tanh")
        return _half_x_times_one_plus(g, x, tanh, hint)
    raise ValueError(f"no ONNX lowering for activation {name!r}")  # guarded by the callers


def _half_x_times_one_plus(g, x, t, hint):
    one_plus = g.node("Add", [t, g.scalar(1.0, "one")], f"{hint}_1p")
    half_x = g.node("Mul", [x.name, g.scalar(0.5, "half")], f"{hint}_halfx")
    return x.like(g.node("Mul", [half_x, one_plus], hint))
