"""Write a fastrnn model as an ONNX file: :func:`export`.

The recurrent layers become ONNX's ``RNN``, ``LSTM`` and ``GRU`` operators (weights
laid out by :mod:`fastrnn.onnx.layout`), the other layers the plain operators that
compute them (``Gather``, ``Gemm``/``MatMul``+``Add``, ``LayerNormalization``, the
activations). The graph is float32, opset 17 by default, with the batch and time axes
left dynamic; :mod:`fastrnn.onnx.nn_export` and :mod:`fastrnn.onnx.keras_export`
write the two facades' layers.
"""

import os

import numpy as np

from fastrnn._version import __version__
from fastrnn.exceptions import ArgumentError, DTypeError, OnnxExportError, ShapeError

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export"]

#: The opset written by default: it has every operator the exporter uses (LayerNormalization
#: is 17's) and ONNX Runtime and OpenVINO run it.
DEFAULT_OPSET = 17
#: The oldest opset accepted: Squeeze, Unsqueeze and ReduceSum take their axes as inputs
#: from 13 on, and 14 is the current version of the RNN, LSTM and GRU operators.
MIN_OPSET = 14

_INSTALL = 'the ONNX export needs the onnx package: pip install "fastrnn[onnx]" (or pip install onnx)'


def _import_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"{_INSTALL} ({error})") from error
    return onnx


def export(model, f, example_input, *, opset=DEFAULT_OPSET, dynamic_axes=True, input_names=None,
           output_names=None, check=True):
    """Write ``model`` as an ONNX graph, like ``torch.onnx.export``.

    Parameters
    ----------
    model : fastrnn.nn.Module or fastrnn.keras.Sequential / Model
        A :mod:`fastrnn.nn` recurrent module (``RNN``, ``LSTM``, ``GRU``), or an
        ``nn.Sequential`` of ``Embedding``, the recurrent modules, ``TakeOutput``,
        ``LastStep``, ``Linear``, ``Dropout``, ``LayerNorm``, ``Identity``, ``ReLU``,
        ``Tanh``, ``Sigmoid``, ``GELU``, ``Softmax``, ``LogSoftmax``; or a
        :mod:`fastrnn.keras` model of ``Input``, ``Embedding``, ``SimpleRNN``, ``LSTM``,
        ``GRU``, ``Bidirectional``, ``Dense``, ``Dropout``, ``Activation``,
        ``Concatenate``, ``Add``, ``GlobalAveragePooling1D``. Exported as it computes in
        inference (dropout off); the model itself is not changed.
    f : str, os.PathLike, file object or None
        Where to write the ``.onnx`` file (a binary file object is written to);
        None writes nothing (use the returned model).
    example_input : ndarray, or tuple
        A batch the model runs on, as in its own forward: for an ``nn`` model, ``x``
        (float of shape (T, B, D), or (B, T, D) with ``batch_first``; int token ids of
        shape (T, B) or (B, T) before an ``Embedding``) or ``(x, lengths)`` with
        ``lengths`` int of shape (B,): lengths become a second graph input (int32)
        fed to every recurrent layer's ``sequence_lens`` and to ``LastStep``. For a
        Keras model, its input array (a list of them for several inputs). The model
        runs on it once, which checks it; its sizes are the fixed sizes of the axes
        that are not dynamic.
    opset : int
        The ONNX opset, 14 or later (``LayerNorm`` needs 17).
    dynamic_axes : bool or dict
        True: the batch axis of every input and output (named ``"batch"``) and the
        time axis (``"time"``) are dynamic. False: every size is the example's. A dict
        as ``torch.onnx.export`` takes it, ``{name: {axis: "label"}}`` or ``{name:
        [axis, ...]}`` for inputs and outputs by name: those axes dynamic, the rest fixed.
    input_names, output_names : list of str, optional
        Names of the graph's inputs and outputs, in order (a shorter list names the
        first ones). Defaults: ``nn`` ``["input", "lengths"]`` and ``["output"]``
        (``["output", "h_n"]``, ``["output", "h_n", "c_n"]`` for a recurrent module
        alone, as PyTorch returns them); Keras the model's input and output names.
    check : bool
        Run ``onnx.checker.check_model(full_check=True)`` on the graph before writing it.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ArgumentError
        ``model`` is not a fastrnn model, or an option has a value outside the ones
        accepted.
    ShapeError, DTypeError
        ``example_input`` does not fit the model.
    OnnxExportError
        A module or layer the exporter does not write (named, with what it supports),
        a Module subclass with its own ``forward`` (which cannot be traced), or an
        option ONNX cannot express (an LSTM's ``proj_size``, a ``stateful`` layer).
    ImportError
        The ``onnx`` package is not installed (``pip install "fastrnn[onnx]"``).

    Notes
    -----
    The graph's IR version is the oldest that carries ``opset`` (8 for opset 17), so
    that runtimes older than the ``onnx`` package still load it. For a Keras model,
    ``Embedding(mask_zero=True)``'s mask becomes each row's count of non-zero ids:
    Keras's mask when padding sits at the end of the rows (see
    :mod:`fastrnn.onnx.keras_export`). Initial states are zeros (an ``nn`` model's
    ``hx`` is not an input; a Keras functional model's ``initial_state`` tensors are).
    Weights are written in float32, also for a model in ``precision`` bf16 or int8
    (its float32 weights) or in float64.

    OpenVINO 2026.4's CPU plugin ignores ``sequence_lens`` when the shapes are
    dynamic: with lengths, reshape the model to the batch's shapes
    (``ov_model.reshape({...})``) before compiling it. ONNX Runtime runs the dynamic
    graph as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from fastrnn import nn
    >>> import fastrnn.onnx
    >>> model = nn.Sequential(nn.Embedding(100, 8), nn.LSTM(8, 16, batch_first=True),
    ...                       nn.LastStep(batch_first=True), nn.Linear(16, 2))
    >>> tokens = np.zeros((4, 10), np.int64)
    >>> proto = fastrnn.onnx.export(model, "classifier.onnx", tokens)  # doctest: +SKIP
    """
    family = _family(model)
    opset = _check_opset(opset)
    if isinstance(dynamic_axes, (bool, np.bool_)):
        dynamic_axes = bool(dynamic_axes)
    elif not isinstance(dynamic_axes, dict):
        raise ArgumentError(f"dynamic_axes must be True, False or a dict of names to axes; got {dynamic_axes!r}")
    input_names = _check_names("input_names", input_names)
    output_names = _check_names("output_names", output_names)
    onnx = _import_onnx()
    from fastrnn.onnx.graph import GraphBuilder, Value

    if family == "nn":
        from fastrnn.onnx import nn_export as lowering
    else:
        from fastrnn.onnx import keras_export as lowering
    lowering.check_exportable(model)
    builder = GraphBuilder(opset)
    prepare = _prepare_nn if family == "nn" else _prepare_keras
    arrays, example_outputs, input_specs, defaults = prepare(model, example_input)
    in_names = _final_names("input_names", input_names, defaults[0])
    out_names = _final_names("output_names", output_names, defaults[1][:len(example_outputs)])
    if set(in_names) & set(out_names):
        raise ArgumentError(f"input and output names must differ; both have {sorted(set(in_names) & set(out_names))}")
    for name in in_names + out_names:
        builder.reserve(name)
    inputs = [Value(name, dims, elem) for name, (dims, elem) in zip(in_names, input_specs)]
    if family == "nn":
        from fastrnn.onnx.nn_export import lower
        outputs = _flatten(lower(builder, model, inputs[0], inputs[1] if len(inputs) > 1 else None))
    else:
        from fastrnn.onnx.keras_export import lower_model
        outputs = lower_model(builder, model, inputs)
    outputs = [_named(builder, value, name) for value, name in zip(outputs, out_names)]
    inputs = _declared(inputs, arrays, dynamic_axes, "input")
    outputs = _declared(outputs, example_outputs, dynamic_axes, "output")
    if isinstance(dynamic_axes, dict):
        unknown = sorted(set(dynamic_axes) - set(in_names) - set(out_names))
        if unknown:
            raise ArgumentError(f"dynamic_axes names {unknown}, which are not among the inputs {in_names} or "
                                f"outputs {out_names}")
    ir_version = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    proto = builder.model(inputs, outputs, f"fastrnn_{type(model).__name__}", ir_version,
                          ("fastrnn", __version__))
    if check:
        onnx.checker.check_model(proto, full_check=True)
    _write(proto, f)
    return proto


# the model and its example ---------------------------------------------------------------
def _family(model):
    from fastrnn.keras.training import TrainingModel
    from fastrnn.nn.module import Module

    if isinstance(model, Module):
        return "nn"
    if isinstance(model, TrainingModel):
        return "keras"
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    hint = ""
    if type(model).__module__.startswith("torch"):
        hint = " (for a torch module use torch.onnx.export, or fastrnn.nn.from_torch first)"
    elif type(model).__module__.startswith(("keras", "tensorflow", "tf_keras")):
        hint = " (for a Keras model use tf2onnx, or load its .keras file with fastrnn.keras.load_model first)"
    raise ArgumentError(f"model must be a fastrnn.nn Module or a fastrnn.keras Sequential/Model; got {kind}{hint}")


def _check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or opset < MIN_OPSET:
        raise ArgumentError(f"opset must be an integer >= {MIN_OPSET}; got {opset!r}")
    return int(opset)


def _check_names(argument, names):
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ArgumentError(f"{argument} must be a list of non-empty strings; got {names!r}")
    names = list(names)
    if len(set(names)) != len(names):
        raise ArgumentError(f"{argument} must not repeat a name; got {names}")
    return names


def _final_names(argument, given, defaults):
    if given is None:
        return list(defaults)
    if len(given) > len(defaults):
        raise ArgumentError(f"{argument} has {len(given)} names for a graph with {len(defaults)}: {given}")
    names = list(given) + [name for name in defaults[len(given):]]
    if len(set(names)) != len(names):
        raise ArgumentError(f"{argument} {given} repeat a default name among {names}")
    return names


def _as_array(argument, value):
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise DTypeError(f"{argument} must be a numeric array; got {type(value).__name__} ({error})") from None
    if array.dtype.kind not in "biuf":
        raise DTypeError(f"{argument} must be a numeric array; got dtype {array.dtype}")
    return array


def _token_array(argument, array, where):
    if array.dtype.kind not in "iu":
        raise DTypeError(f"{argument} feeds {where} and must hold integer token ids (int32 or int64); got dtype "
                         f"{array.dtype}")
    return array.astype(np.int32 if array.dtype == np.int32 else np.int64, copy=False)


def _float_array(argument, array):
    if array.dtype.kind != "f":
        raise DTypeError(f"{argument} must be a float array (the graph's input is float32); got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _prepare_nn(model, example_input):
    """Check and run the example; returns its arrays, the model's results, the inputs'
    (dims, element type) and the default names."""
    from onnx import TensorProto

    from fastrnn.nn.blocks import Embedding
    from fastrnn.nn.grad_mode import no_grad
    from fastrnn.nn.recurrent import RNNBase
    from fastrnn.onnx import nn_export

    if isinstance(example_input, tuple):
        if len(example_input) != 2:
            raise ArgumentError(f"example_input must be x or a pair (x, lengths); got a tuple of {len(example_input)}")
        x, lengths = example_input
    else:
        x, lengths = example_input, None
    x = _as_array("example_input", x)
    first = nn_export.first_module(model)
    recurrent = nn_export.first_recurrent(model)
    batch_first = recurrent is not None and recurrent.batch_first
    if isinstance(first, Embedding):
        x = _token_array("example_input", x, "nn.Embedding")
        if x.ndim != 2:
            raise ShapeError(f"example_input (token ids for nn.Embedding) must have shape "
                             f"{'(B, T)' if batch_first else '(T, B)'}; got shape {x.shape}")
    else:
        x = _float_array("example_input", x)
        if isinstance(first, RNNBase) and x.ndim != 3:
            layout = "(B, T, input_size)" if first.batch_first else "(T, B, input_size)"
            raise ShapeError(f"example_input must be a batch of shape {layout} (the export needs the batch axis); "
                             f"got shape {x.shape}")
    arrays = [x]
    if lengths is not None:
        if not nn_export.uses_lengths(model):
            raise ArgumentError("example_input has lengths, but no module of the model takes them (a recurrent "
                                "module or nn.LastStep)")
        lengths = np.asarray(lengths)
        B = x.shape[0] if batch_first else x.shape[1]
        T = x.shape[1] if batch_first else x.shape[0]
        if lengths.dtype.kind not in "iu" or lengths.shape != (B,) or (B and not 0 <= lengths.min() <= lengths.max() <= T):
            raise ArgumentError(f"lengths (example_input[1]) must be {B} integers in [0, {T}]; got {lengths!r}")
        arrays.append(lengths.astype(np.int32))
    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # the graph computes inference: dropout off
    try:
        with no_grad():
            result = nn_export.run(model, x, None if lengths is None else arrays[1])
    finally:
        for module, training in modes:
            object.__setattr__(module, "training", training)
    example_outputs = _flatten(result)

    dims = _sequence_dims(x.shape, x.ndim >= 2 and recurrent is not None, batch_first)
    specs = [(dims, _elem_type(x))]
    if lengths is not None:
        specs.append((("batch",), TensorProto.INT32))
    n = len(example_outputs)
    outputs = ["output"] if n == 1 else ["output", "h_n", "c_n"][:n] if n <= 3 else [f"output_{i}" for i in range(n)]
    return arrays, example_outputs, specs, (["input", "lengths"][:len(specs)], outputs)


def _elem_type(array):
    from onnx import TensorProto

    if array.dtype.kind == "f":
        return TensorProto.FLOAT
    return TensorProto.INT32 if array.dtype == np.int32 else TensorProto.INT64


def _flatten(result):
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in _flatten(item)]
    return [result]


def _sequence_dims(shape, has_time, batch_first):
    """Labels of an input's axes: "batch" and, for a sequence, "time" (by the layout), the rest sizes."""
    dims = list(shape)
    if not dims:
        return ()
    if has_time:
        batch_axis, time_axis = (0, 1) if batch_first else (1, 0)
        dims[batch_axis], dims[time_axis] = "batch", "time"
    else:
        dims[0] = "batch"
    return tuple(dims)


def _prepare_keras(model, example_input):
    """As :func:`_prepare_nn`, for a Keras model."""
    from fastrnn.onnx import keras_export

    if isinstance(model, keras_export.Sequential):
        n_inputs = 1
    else:
        n_inputs = len(model.inputs)
    if n_inputs == 1 and not isinstance(example_input, (list, tuple)):
        examples = [example_input]
    elif isinstance(example_input, (list, tuple)) and len(example_input) == n_inputs:
        examples = list(example_input)
    else:
        given = f"a list of {len(example_input)}" if isinstance(example_input, (list, tuple)) else "one array"
        raise ArgumentError(f"example_input must be {'one array' if n_inputs == 1 else f'a list of {n_inputs} arrays'}, "
                            f"one per model input; got {given}")
    first_layers = _keras_first_layers(model, n_inputs)
    arrays = []
    for position, (array, first) in enumerate(zip(examples, first_layers)):
        argument = "example_input" if n_inputs == 1 else f"example_input[{position}]"
        array = _as_array(argument, array)
        if any(type(layer).__name__ == "Embedding" for layer in first):
            array = _token_array(argument, array, "an Embedding")
            if array.ndim != 2:
                raise ShapeError(f"{argument} (token ids for an Embedding) must have shape (B, T); got {array.shape}")
        else:
            array = _float_array(argument, array)
            if array.ndim < 2:
                raise ShapeError(f"{argument} must have a batch axis first: shape (B, ...); got {array.shape}")
        arrays.append(array)
    result = model(arrays[0] if n_inputs == 1 else arrays)
    example_outputs = _flatten(result)

    specs = [(_sequence_dims(a.shape, a.ndim == 3 or a.dtype.kind in "iu", True), _elem_type(a)) for a in arrays]
    if isinstance(model, keras_export.Sequential):
        defaults = (["input"], list(model.output_names))
    else:
        defaults = (list(model.input_names), list(model.output_names))
    return arrays, example_outputs, specs, defaults


def _keras_first_layers(model, n_inputs):
    """For each model input, the layers that read it directly."""
    from fastrnn.onnx import keras_export

    if isinstance(model, keras_export.Sequential):
        return [model.layers[:1]]
    readers = []
    for tensor in model.inputs:
        readers.append([node.layer for node in model._nodes
                        if any(t is tensor for t in node.inputs)])
    return readers


# the graph's ends ------------------------------------------------------------------------
def _named(builder, value, name):
    """``value`` as the graph output ``name`` (an Identity node gives it the name)."""
    from onnx import helper

    builder.nodes.append(helper.make_node("Identity", [value.name], [name], name=builder.fresh(f"Identity_{name}")))
    return value.like(name)


def _declared(values, arrays, dynamic_axes, kind):
    """``values`` with the dims their declaration gets: labels where dynamic, sizes elsewhere."""
    declared = []
    for value, array in zip(values, arrays):
        sizes = np.shape(array)
        if len(sizes) != value.rank:
            raise OnnxExportError(f"internal: {kind} {value.name!r} has {value.rank} axes in the graph and "
                                  f"{len(sizes)} in the model's result")
        if dynamic_axes is True:
            dims = tuple(d if isinstance(d, str) else int(s) for d, s in zip(value.dims, sizes))
        elif dynamic_axes is False or value.name not in dynamic_axes:
            dims = tuple(int(s) for s in sizes)
        else:
            dims = [int(s) for s in sizes]
            chosen = dynamic_axes[value.name]
            labels = chosen.items() if isinstance(chosen, dict) else ((a, None) for a in chosen)
            for axis, label in labels:
                if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -len(dims) <= axis < len(dims):
                    raise ArgumentError(f"dynamic_axes[{value.name!r}] names axis {axis!r}; {kind} {value.name!r} "
                                        f"has {len(dims)} axes")
                dims[axis] = str(label) if label is not None else f"{value.name}_dim{int(axis) % len(dims)}"
            dims = tuple(dims)
        declared.append(value.like(value.name, dims))
    return declared


def _write(proto, f):
    if f is None:
        return
    data = proto.SerializeToString()
    if hasattr(f, "write"):
        f.write(data)
        return
    try:
        path = os.fspath(f)
    except TypeError:
        raise ArgumentError(f"f must be a path, a binary file object or None; got {type(f).__name__}") from None
    with open(path, "wb") as file:
        file.write(data)
