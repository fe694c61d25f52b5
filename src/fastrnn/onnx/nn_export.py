"""ONNX nodes for :mod:`fastrnn.nn` models: a recurrent module alone, or an ``nn.Sequential``
(nested ones too) of the supported modules.

A recurrent module becomes one ``RNN``/``LSTM``/``GRU`` node per layer (both directions
in one node), with PyTorch's outputs ``output``, ``h_n`` (and ``c_n``). With lengths,
the lengths reach every recurrent module (ONNX's ``sequence_lens``) and every
:class:`~fastrnn.nn.LastStep` of the model: what :func:`run` computes.
"""

import numpy as np
from onnx import TensorProto

from fastrnn.exceptions import OnnxExportError
from fastrnn.nn.blocks import (
    GELU,
    Dropout,
    Embedding,
    Identity,
    LayerNorm,
    Linear,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from fastrnn.nn.containers import LastStep, Sequential, TakeOutput
from fastrnn.nn.module import Module
from fastrnn.nn.recurrent import RNNBase
from fastrnn.onnx.lowering import (
    activation,
    dense,
    directions_to_features,
    recurrent_node,
)

__all__ = ["SUPPORTED", "check_exportable", "first_module", "first_recurrent", "lower", "run"]

#: The modules the exporter writes, in the order its messages list them.
SUPPORTED = (RNNBase, Sequential, Embedding, Linear, Dropout, LayerNorm, Identity, ReLU, Tanh, Sigmoid, GELU,
             Softmax, LogSoftmax, TakeOutput, LastStep)


def _supported_names():
    names = ["RNN", "LSTM", "GRU"] + [cls.__name__ for cls in SUPPORTED[1:]]
    return ", ".join(f"nn.{name}" for name in names)


def _label(path, module):
    return f"module {path!r} ({type(module).__name__})" if path else f"the model ({type(module).__name__})"


def _known_class(module):
    """The supported class ``module`` is an instance of, or None."""
    for cls in type(module).__mro__:
        if cls in SUPPORTED:
            return cls
    return None


def check_exportable(module, path=""):
    """Refuse, before anything runs, a module tree the exporter cannot write.

    Raises
    ------
    OnnxExportError
        For a module of an unsupported class, a subclass that overrides ``forward``
        (its code cannot be traced), or an LSTM with ``proj_size``.
    """
    cls = _known_class(module)
    if cls is None:
        own = type(module).__module__.split(".")[0] == "fastrnn"
        if isinstance(module, Module) and not own and type(module).forward is not Module.forward:
            raise OnnxExportError(
                f"cannot export {_label(path, module)}: a Module subclass with its own forward() is "
                "Python code the exporter cannot trace; build the model as nn.Sequential of the supported "
                f"modules ({_supported_names()})")
        raise OnnxExportError(f"cannot export {_label(path, module)}: the ONNX exporter supports "
                              f"{_supported_names()}")
    if type(module).forward is not cls.forward:
        raise OnnxExportError(
            f"cannot export {_label(path, module)}: it overrides {cls.__name__}.forward(), which the exporter "
            "cannot trace; build the model as nn.Sequential of the supported modules")
    if isinstance(module, RNNBase) and module.proj_size:
        raise OnnxExportError(
            f"cannot export {_label(path, module)}: proj_size={module.proj_size} has no equivalent in ONNX's "
            "LSTM operator (it has no projection of the hidden state); export a model without proj_size")
    if isinstance(module, Sequential):
        for name, child in module.named_children():
            check_exportable(child, f"{path}.{name}" if path else name)


def _leaves(module):
    if isinstance(module, Sequential):
        for child in module:
            yield from _leaves(child)
    else:
        yield module


def first_module(module):
    """The first module that sees the input (descending into Sequential), or None."""
    return next(_leaves(module), None)


def first_recurrent(module):
    """The first recurrent module of the model, or None."""
    return next((m for m in _leaves(module) if isinstance(m, RNNBase)), None)


def uses_lengths(module):
    """Whether some module of the model takes lengths (a recurrent module or LastStep)."""
    return any(isinstance(m, (RNNBase, LastStep)) for m in _leaves(module))


def run(module, x, lengths=None):
    """The model's forward as the exported graph computes it: ``lengths`` go to every
    recurrent module and every LastStep, the other modules take one input."""
    if isinstance(module, Sequential):
        for child in module:
            x = run(child, x, lengths)
        return x
    if isinstance(module, (RNNBase, LastStep)):
        return module(x, lengths=lengths)
    return module(x)


def lower(g, module, value, lengths, path=""):
    """Add ``module``'s nodes on ``value``.

    Parameters
    ----------
    g : GraphBuilder
    module : Module
        Already accepted by :func:`check_exportable`.
    value : Value, or the tuple a recurrent module returns
    lengths : Value of int32 of shape (B,) or None

    Returns
    -------
    Value, or ``(output, h_n)`` / ``(output, (h_n, c_n))`` of Values for a recurrent module
    """
    hint = path or type(module).__name__.lower()
    if isinstance(module, Sequential):
        for name, child in module.named_children():
            value = lower(g, child, value, lengths, f"{path}.{name}" if path else name)
        return value
    if isinstance(module, RNNBase):
        return _recurrent(g, module, _tensor(value, module, path), lengths, hint)
    if isinstance(module, TakeOutput):
        return value[0] if isinstance(value, tuple) else value
    if isinstance(module, LastStep):
        return _last_step(g, module, value[0] if isinstance(value, tuple) else value, lengths, hint)
    if isinstance(module, (Dropout, Identity)):  # dropout is the identity in inference
        return value
    x = _tensor(value, module, path)
    if isinstance(module, Embedding):
        weight = np.asarray(module.weight.values, np.float32)
        return x.like(g.node("Gather", [g.initializer(weight, f"{hint}.weight"), x.name], hint),
                      x.dims + (weight.shape[1],), TensorProto.FLOAT)
    if isinstance(module, Linear):
        bias = None if module.bias is None else module.bias.values
        return dense(g, x, module.weight.values, bias, transposed=True, hint=hint)
    if isinstance(module, LayerNorm):
        return _layer_norm(g, module, x, hint)
    if isinstance(module, GELU):
        return activation(g, x, "gelu" if module.approximate == "none" else "gelu_tanh", hint=hint)
    if isinstance(module, (Softmax, LogSoftmax)):
        # PyTorch's legacy choice when dim is None (the module warned about it when it ran)
        dim = module.dim if module.dim is not None else (0 if x.rank in (0, 1, 3) else 1)
        name = "softmax" if isinstance(module, Softmax) else "log_softmax"
        return activation(g, x, name, axis=int(dim) % max(x.rank, 1), hint=hint)
    names = {ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid"}
    return activation(g, x, names[_known_class(module)], hint=hint)


def _tensor(value, module, path):
    if isinstance(value, tuple):
        raise OnnxExportError(f"{_label(path, module)} receives a recurrent module's (output, h_n) tuple; put "
                              "nn.TakeOutput() or nn.LastStep() in between")
    return value


def _recurrent(g, module, value, lengths, hint):
    x = g.transpose(value, (1, 0, 2), f"{hint}_time_major") if module.batch_first else value
    dirs = module.num_directions
    finals = []
    for layer in range(module.num_layers):
        weights = [module._weights(layer, direction) for direction in range(dirs)]
        y, h, c = recurrent_node(g, module.SPEC, x, weights, direction="bidirectional" if dirs == 2 else "forward",
                                 lengths=lengths, nonlinearity=getattr(module, "nonlinearity", "tanh"),
                                 hint=f"{hint}.l{layer}")
        x = directions_to_features(g, y, f"{hint}.l{layer}_output")
        finals.append((h, c))
    output = g.transpose(x, (1, 0, 2), f"{hint}_output") if module.batch_first else x

    def stacked(states, name):
        if len(states) == 1:
            return states[0]
        first = states[0]
        dims = (first.dims[0] * len(states),) + first.dims[1:]
        return first.like(g.node("Concat", [s.name for s in states], f"{hint}_{name}", axis=0), dims)

    h_n = stacked([h for h, _ in finals], "h_n")
    if not module.SPEC.has_cell_state:
        return output, h_n
    return output, (h_n, stacked([c for _, c in finals], "c_n"))


def _last_step(g, module, value, lengths, hint):
    time_axis = 1 if module.batch_first else 0
    if lengths is None:
        return g.last(value, time_axis, hint)
    # the step lengths[b] - 1 of each row b (none, so zeros, for a row of length 0)
    pick = g.step_mask(lengths, value, time_axis, last_only=True, hint=f"{hint}_pick")
    weights = g.unsqueeze(g.cast(pick, TensorProto.FLOAT, f"{hint}_weights"), 2)
    picked = value.like(g.node("Mul", [value.name, weights.name], f"{hint}_picked"))
    return g.reduce("ReduceSum", picked, [time_axis], keepdims=False, hint=hint)


def _layer_norm(g, module, x, hint):
    if g.opset < 17:
        raise OnnxExportError(f"nn.LayerNorm ({hint}) needs ONNX's LayerNormalization, which exists from opset "
                              f"17; got opset={g.opset}")
    shape = module.normalized_shape
    weight = np.ones(shape, np.float32) if module.weight is None else np.asarray(module.weight.values, np.float32)
    inputs = [x.name, g.initializer(weight, f"{hint}.weight")]
    if module.bias is not None:
        inputs.append(g.initializer(np.asarray(module.bias.values, np.float32), f"{hint}.bias"))
    return x.like(g.node("LayerNormalization", inputs, hint, axis=-len(shape), epsilon=module.eps))
