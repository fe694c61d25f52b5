"""ONNX nodes for :mod:`fastrnn.keras` models: ``Sequential`` and the functional ``Model``,
layer by layer, in the order the model runs them.

Keras's masks become lengths: an ``Embedding(mask_zero=True)`` gives each row's count of
non-zero ids as ONNX's ``sequence_lens`` (int32, computed in the graph). This equals
Keras's mask when the padding (id 0) sits at the end of each row, which is how padded
batches are built (``pad_sequences(padding="post")``); a 0 inside a row, which Keras
skips as a hole, is not representable by ``sequence_lens``. The lengths travel with
the tensors as Keras's masks do, to the recurrent layers and the masked pooling.
"""

import numpy as np
from onnx import TensorProto

from fastrnn.exceptions import OnnxExportError
from fastrnn.keras.layers.core import Activation, Dense, Dropout, Embedding
from fastrnn.keras.layers.input_layer import InputLayer
from fastrnn.keras.layers.merging import Add, Concatenate
from fastrnn.keras.layers.pooling import GlobalAveragePooling1D
from fastrnn.keras.layers.recurrent import GRU, LSTM, Bidirectional, RNNLayer, SimpleRNN
from fastrnn.keras.models import Sequential
from fastrnn.onnx.lowering import activation, dense, recurrent_node

__all__ = ["SUPPORTED", "check_exportable", "lower_model"]

#: The layers the exporter writes.
SUPPORTED = (InputLayer, Embedding, SimpleRNN, LSTM, GRU, Bidirectional, Dense, Dropout, Activation,
             Concatenate, Add, GlobalAveragePooling1D)

_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax")


def _supported_names():
    return ", ".join(cls.__name__ if cls is not InputLayer else "Input" for cls in SUPPORTED)


def _layers(model):
    return model.layers


def check_exportable(model):
    """Refuse, before anything runs, a model with a layer or option the exporter cannot write.

    Raises
    ------
    OnnxExportError
        Naming the layer and what cannot be exported.
    """
    if isinstance(model, Sequential) and not model.built:
        raise OnnxExportError("the Sequential model is not built: call it on data or build(input_shape) "
                              "first, so that its layers have weights")
    for layer in _layers(model):
        _check_layer(layer)


def _check_layer(layer):
    label = f"layer {layer.name!r} ({type(layer).__name__})"
    if type(layer) not in SUPPORTED:
        raise OnnxExportError(f"cannot export {label}: the ONNX exporter supports the layers "
                              f"{_supported_names()}")
    if isinstance(layer, Bidirectional):
        for inner in layer.layers:
            _check_layer(inner)
    if isinstance(layer, RNNLayer) and layer.stateful:
        raise OnnxExportError(f"cannot export {label}: stateful=True keeps states between calls, which an "
                              "ONNX graph does not; export a copy built with stateful=False")
    if isinstance(layer, (Dense, Activation)) and layer.activation.name not in _ACTIVATIONS:
        raise OnnxExportError(f"cannot export {label}: activation {layer.activation.name!r}; the exporter "
                              f"writes {', '.join(_ACTIVATIONS)}")
    if isinstance(layer, GlobalAveragePooling1D) and layer.data_format != "channels_last":
        raise OnnxExportError(f"cannot export {label}: data_format={layer.data_format!r}; the exporter writes "
                              "channels_last")


def lower_model(g, model, inputs):
    """Add the model's nodes.

    Parameters
    ----------
    g : GraphBuilder
    model : fastrnn.keras.Sequential or Model
    inputs : list of Value
        The graph inputs, one per model input.

    Returns
    -------
    list of Value
        One per model output.
    """
    if isinstance(model, Sequential):
        x, lengths = inputs[0], None
        for layer in model.layers:
            (x, *_), lengths = _lower_layer(g, layer, x, lengths, {})
        return [x]
    values, lengths = {}, {}
    for tensor, value in zip(model.inputs, inputs):
        values[id(tensor)], lengths[id(tensor)] = value, None
    for node in model._nodes:
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        if node.kwargs:
            raise OnnxExportError(f"cannot export layer {layer.name!r}: it is called with the keyword(s) "
                                  f"{', '.join(sorted(node.kwargs))}, which the exporter does not write")
        if isinstance(node.x, list):
            x = [values[id(t)] for t in node.x]
            mask = [lengths[id(t)] for t in node.x]
        else:
            x, mask = values[id(node.x)], lengths[id(node.x)]
        keywords = {name: [values[id(t)] for t in tensors] for name, tensors in node.tensor_kwargs.items()}
        outputs, out_lengths = _lower_layer(g, layer, x, mask, keywords)
        for tensor, value in zip(node.outputs, outputs):
            values[id(tensor)] = value
            lengths[id(tensor)] = out_lengths if tensor.index == 0 else None
    return [values[id(t)] for t in model.outputs]


def _lower_layer(g, layer, x, lengths, keywords):
    """One layer call: returns (its outputs, the lengths that go with the first)."""
    hint = layer.name
    unknown = sorted(set(keywords) - {"initial_state"})
    if unknown or (keywords and not isinstance(layer, (RNNLayer, Bidirectional))):
        raise OnnxExportError(f"cannot export layer {layer.name!r}: it is called with tensor keyword(s) "
                              f"{', '.join(sorted(keywords))}, which the exporter does not write")
    initial_state = keywords.get("initial_state")
    if isinstance(layer, Embedding):
        weight = np.asarray(layer.embeddings.values, np.float32)
        y = x.like(g.node("Gather", [g.initializer(weight, f"{hint}.embeddings"), x.name], hint),
                   x.dims + (weight.shape[1],), TensorProto.FLOAT)
        return [y], (_count_nonzero(g, x, hint) if layer.mask_zero else None)
    if isinstance(layer, RNNLayer):
        return _recurrent(g, layer, x, lengths, initial_state)
    if isinstance(layer, Bidirectional):
        return _bidirectional(g, layer, x, lengths, initial_state)
    if isinstance(layer, Dense):
        bias = None if layer.bias is None else layer.bias.values
        z = dense(g, x, np.asarray(layer.kernel.values), bias, transposed=False, hint=hint)
        return [activation(g, z, layer.activation.name, hint=f"{hint}_{layer.activation.name}")], lengths
    if isinstance(layer, Activation):
        return [activation(g, x, layer.activation.name, hint=hint)], lengths
    if isinstance(layer, Dropout):  # the identity in inference
        return [x], lengths
    if isinstance(layer, GlobalAveragePooling1D):
        return [_average_pooling(g, layer, x, lengths, hint)], None
    if isinstance(layer, (Concatenate, Add)):
        return [_merge(g, layer, x, hint)], _merged_lengths(g, lengths, hint)
    raise OnnxExportError(f"cannot export layer {layer.name!r} ({type(layer).__name__})")  # checked before


def _count_nonzero(g, ids, hint):
    """Each row's count of non-zero ids (int32 of shape (B,)): its length if padded at the end."""
    zero = g.initializer(np.zeros((), _numpy_type(ids.elem_type)), f"{hint}.pad_id")
    is_pad = g.node("Equal", [ids.name, zero], f"{hint}_is_pad")
    valid = g.node("Cast", [g.node("Not", [is_pad], f"{hint}_valid")], f"{hint}_valid_int", to=TensorProto.INT32)
    counts = ids.like(valid, elem_type=TensorProto.INT32)
    return g.reduce("ReduceSum", counts, [1], keepdims=False, hint=f"{hint}_lengths")


def _numpy_type(elem_type):
    return {TensorProto.INT32: np.int32, TensorProto.INT64: np.int64, TensorProto.FLOAT: np.float32}[elem_type]


def _recurrent(g, layer, x, lengths, initial_state, flipped=False):
    """A SimpleRNN, LSTM or GRU as one ONNX node.

    The output sequence is in the order Keras processes the steps (reversed for
    ``go_backwards``), or that order reversed with ``flipped`` (as Bidirectional turns
    its backward half).
    """
    hint = layer.name
    if initial_state is not None and len(initial_state) != layer.N_STATES:
        raise OnnxExportError(f"cannot export layer {layer.name!r}: it takes {layer.N_STATES} initial state(s); "
                              f"got {len(initial_state)}")
    X = g.transpose(x, (1, 0, 2), f"{hint}_time_major")
    h0, c0 = (None, None) if initial_state is None else \
        [g.unsqueeze(s, 0, f"{hint}_initial_{i}") for i, s in enumerate(initial_state)] + [None] * (2 - layer.N_STATES)
    y, h, c = recurrent_node(
        g, layer.SPEC, X, [layer._torch_weights()], direction="reverse" if layer.go_backwards else "forward",
        lengths=lengths, initial_h=h0, initial_c=c0, nonlinearity=getattr(layer, "activation", "tanh"),
        reset_after=getattr(layer, "reset_after", True), hint=hint)
    sequence = g.squeeze(y, 1, f"{hint}_sequence")  # (T, B, H)
    if lengths is not None and not layer.zero_output_for_mask:
        # Keras repeats the previous output at a masked step, where ONNX writes zeros: after a
        # row's end that is its last output (the final state); before a reversed row's start,
        # its initial state
        fill = h if not layer.go_backwards else h0
        if fill is not None:
            inside = g.unsqueeze(g.step_mask(lengths, sequence, 0, hint=f"{hint}_mask"), 2)
            sequence = sequence.like(g.node("Where", [inside.name, sequence.name, fill.name], f"{hint}_filled"))
    # ONNX's Y is in the input's order in both directions
    if layer.go_backwards != flipped:
        sequence = g.reverse(sequence, 0, f"{hint}_processing_order")
    if layer.return_sequences:
        output = g.transpose(sequence, (1, 0, 2), f"{hint}_output")
    else:
        output = g.last(sequence, 0, f"{hint}_output")
    outputs = [output]
    if layer.return_state:
        outputs += [g.squeeze(state, 0, f"{hint}_state_{i}") for i, state in enumerate((h, c)[:layer.N_STATES])]
    return outputs, (lengths if layer.return_sequences else None)


def _bidirectional(g, layer, x, lengths, initial_state):
    n = layer.forward_layer.N_STATES
    halves = [None, None] if initial_state is None else [initial_state[:n], initial_state[n:]]
    (y_f, *states_f), _ = _recurrent(g, layer.forward_layer, x, lengths, halves[0])
    (y_b, *states_b), _ = _recurrent(g, layer.backward_layer, x, lengths, halves[1],
                                     flipped=layer.return_sequences)
    hint = layer.name
    mode = layer.merge_mode
    if mode == "concat":
        dims = y_f.dims[:-1] + (y_f.dims[-1] + y_b.dims[-1],)
        outputs = [y_f.like(g.node("Concat", [y_f.name, y_b.name], hint, axis=-1), dims)]
    elif mode in ("sum", "mul"):
        outputs = [y_f.like(g.node("Add" if mode == "sum" else "Mul", [y_f.name, y_b.name], hint))]
    elif mode == "ave":
        total = g.node("Add", [y_f.name, y_b.name], f"{hint}_sum")
        outputs = [y_f.like(g.node("Div", [total, g.scalar(2.0, "two")], hint))]
    else:
        outputs = [y_f, y_b]
    return outputs + states_f + states_b, (lengths if layer.return_sequences else None)


def _average_pooling(g, layer, x, lengths, hint):
    if lengths is None:
        return g.reduce("ReduceMean", x, [1], keepdims=layer.keepdims, hint=hint)
    # the mean over each row's valid steps
    inside = g.cast(g.step_mask(lengths, x, 1, hint=f"{hint}_mask"), TensorProto.FLOAT, f"{hint}_weights")
    weights = g.unsqueeze(inside, 2)
    total = g.reduce("ReduceSum", x.like(g.node("Mul", [x.name, weights.name], f"{hint}_masked")), [1],
                     keepdims=layer.keepdims, hint=f"{hint}_total")
    counts = g.reduce("ReduceSum", weights, [1], keepdims=layer.keepdims, hint=f"{hint}_counts")
    return total.like(g.node("Div", [total.name, counts.name], hint))


def _merge(g, layer, xs, hint):
    if isinstance(layer, Add):
        result = xs[0]
        for other in xs[1:]:
            result = result.like(g.node("Add", [result.name, other.name], hint))
        return result
    axis = layer.axis % xs[0].rank
    size = sum(x.dims[axis] for x in xs) if all(isinstance(x.dims[axis], int) for x in xs) else xs[0].dims[axis]
    dims = xs[0].dims[:axis] + (size,) + xs[0].dims[axis + 1:]
    return xs[0].like(g.node("Concat", [x.name for x in xs], hint, axis=axis), dims)


def _merged_lengths(g, lengths, hint):
    """Keras ORs the inputs' masks (None if one has none): the longer length of each row."""
    if not isinstance(lengths, list) or any(item is None for item in lengths):
        return None
    names = list(dict.fromkeys(item.name for item in lengths))
    if len(names) == 1:
        return lengths[0]
    return lengths[0].like(g.node("Max", names, f"{hint}_lengths"))
