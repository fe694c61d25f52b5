"""fastrnn.onnx.load: ONNX graphs run by fastrnn, against ONNX Runtime as the oracle.

* Recurrent nodes built with ``onnx.helper`` for every attribute fastrnn supports
  (each direction, ``layout`` 1, ``sequence_lens`` with short rows,
  ``initial_h``/``initial_c``, ``linear_before_reset`` 0 and 1, RNN ``Relu``,
  subsets of the outputs) against ONNX Runtime on the same file. ONNX Runtime
  refuses ``layout=1``, so a layout-1 node is compared with ONNX Runtime running
  its layout-0 twin on the transposed inputs (the layout only transposes).
* Models exported by ``torch.onnx.export(..., dynamo=False)`` against ONNX Runtime,
  and their gradients against torch autograd on the same torch model.
* Gradients of helper-built nodes in float64 against central finite differences.
* Every refusal: the rare recurrent attributes, unknown operators, malformed
  bytes, external data, broken graphs, wrong inputs at call time.
"""

import io
import warnings

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, DTypeError, OnnxImportError, ShapeError
from helpers import assert_close, central_differences
from tolerances import FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, TORCH_PARITY

F32 = TORCH_PARITY[np.dtype(np.float32)]
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
#: Blocks of ONNX's order in PyTorch's: LSTM i,o,f,c of i,f,g,o; GRU z,r,h of r,z,n.
ONNX_BLOCKS = {"RNN": [0], "LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}


def _onnx():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return onnx


def _load(source):
    import fastrnn.onnx

    return fastrnn.onnx.load(source)


def _run_ort(data, feeds):
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _model(onnx, nodes, inputs, outputs, initializers=(), opset=14):
    helper = onnx.helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _float_info(onnx, name, shape=None, dtype=None):
    return onnx.helper.make_tensor_value_info(name, dtype or onnx.TensorProto.FLOAT, shape)


# recurrent nodes built with onnx.helper -------------------------------------------------------------
def recurrent_model(op, *, direction="forward", layout=0, lengths=None, initial=False, outputs=None,
                    attributes=None, bias=True, T=5, B=3, D=4, H=3, seed=0, extra_inputs=()):
    """An ONNX model of one recurrent node and the feeds to run it: ``(ModelProto, feeds)``.

    ``outputs`` names the outputs kept (a subset of Y, Y_h, Y_c); ``lengths`` is
    the sequence_lens array (a graph input), ``initial`` adds initial_h (and
    initial_c) as graph inputs.
    """
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    scale = 0.7
    tensors = {"W": rng.uniform(-scale, scale, (dirs, G * H, D)), "R": rng.uniform(-scale, scale, (dirs, G * H, H)),
               "B": rng.uniform(-scale, scale, (dirs, 2 * G * H))}
    initializers = [numpy_helper.from_array(tensors[name].astype(np.float32), name)
                    for name in ("W", "R", "B") if bias or name != "B"]
    x_shape = (T, B, D) if layout == 0 else (B, T, D)
    state_shape = (dirs, B, H) if layout == 0 else (B, dirs, H)
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32)}
    graph_inputs = [_float_info(onnx, "X", list(x_shape))]
    node_inputs = ["X", "W", "R", "B" if bias else "", "", "", ""]
    if lengths is not None:
        feeds["sequence_lens"] = np.asarray(lengths, np.int32)
        graph_inputs.append(_float_info(onnx, "sequence_lens", [B], onnx.TensorProto.INT32))
        node_inputs[4] = "sequence_lens"
    if initial:
        states = ["initial_h", "initial_c"] if op == "LSTM" else ["initial_h"]
        for index, name in enumerate(states):
            feeds[name] = rng.standard_normal(state_shape).astype(np.float32)
            graph_inputs.append(_float_info(onnx, name, list(state_shape)))
            node_inputs[5 + index] = name
    node_inputs += list(extra_inputs)
    while node_inputs[-1] == "":
        node_inputs.pop()
    names = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    kept = names if outputs is None else list(outputs)
    node_outputs = [name if name in kept else "" for name in names]
    while node_outputs[-1] == "":
        node_outputs.pop()
    attributes = dict(attributes or {})
    attributes.setdefault("hidden_size", H)
    if direction != "forward":
        attributes["direction"] = direction
    if layout:
        attributes["layout"] = layout
    node = onnx.helper.make_node(op, node_inputs, node_outputs, name=f"the_{op.lower()}", **attributes)
    model = _model(onnx, [node], graph_inputs, [_float_info(onnx, name) for name in kept], initializers)
    return model, feeds


def _ort_reference(model, feeds):
    """ONNX Runtime's outputs; a layout-1 node runs as its layout-0 twin on transposed arrays."""
    node = model.graph.node[0]
    layout = {a.name: a.i for a in node.attribute}.get("layout", 0)
    if not layout:
        return _run_ort(model.SerializeToString(), feeds)
    twin = type(model)()
    twin.CopyFrom(model)
    for attribute in twin.graph.node[0].attribute:
        if attribute.name == "layout":
            attribute.i = 0
    for value in twin.graph.input:  # shapes change with the layout: declare none
        value.type.tensor_type.ClearField("shape")
    transposed = {name: (np.swapaxes(value, 0, 1) if name != "sequence_lens" else value)
                  for name, value in feeds.items()}
    results = _run_ort(twin.SerializeToString(), transposed)
    kinds = [name for name in node.output if name]
    return [np.transpose(r, (2, 0, 1, 3)) if kind == "Y" else np.swapaxes(r, 0, 1)
            for kind, r in zip(kinds, results)]


def _check_against_ort(model, feeds, context):
    ours = _load(model)(**feeds)
    ours = ours if isinstance(ours, tuple) else (ours,)
    expected = _ort_reference(model, feeds)
    assert len(ours) == len(expected), context
    for name, a, e in zip([o.name for o in model.graph.output], ours, expected):
        assert_close(a, e, F32, context, name)


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
def test_every_direction_and_layout(op, direction, layout):
    model, feeds = recurrent_model(op, direction=direction, layout=layout, initial=True)
    _check_against_ort(model, feeds, f"{op} direction={direction} layout={layout}")


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
def test_sequence_lens_with_short_rows(op, direction, layout):
    model, feeds = recurrent_model(op, direction=direction, layout=layout, lengths=[5, 2, 4], initial=True,
                                   T=5, B=3, seed=1)
    _check_against_ort(model, feeds, f"{op} direction={direction} layout={layout} sequence_lens=[5, 2, 4]")


@pytest.mark.parametrize("linear_before_reset", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_linear_before_reset(linear_before_reset, direction):
    model, feeds = recurrent_model("GRU", direction=direction, lengths=[3, 5, 1], initial=True,
                                   attributes={"linear_before_reset": linear_before_reset}, seed=2)
    _check_against_ort(model, feeds, f"GRU linear_before_reset={linear_before_reset} {direction}")


@pytest.mark.parametrize("activations", [["Relu"], ["Relu", "Tanh"], ["Tanh", "Tanh"]])
def test_rnn_activations(activations):
    direction = "bidirectional" if len(activations) == 2 else "forward"
    model, feeds = recurrent_model("RNN", direction=direction, attributes={"activations": activations}, seed=3)
    _check_against_ort(model, feeds, f"RNN activations={activations}")


@pytest.mark.parametrize("outputs", [["Y"], ["Y_h"], ["Y_c"], ["Y_h", "Y_c"], ["Y", "Y_c"]])
def test_subsets_of_outputs(outputs):
    model, feeds = recurrent_model("LSTM", direction="bidirectional", outputs=outputs, lengths=[2, 5, 3])
    _check_against_ort(model, feeds, f"LSTM outputs={outputs}")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_defaults_no_bias_no_hidden_size_and_explicit_default_activations(op):
    defaults = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}[op]
    model, feeds = recurrent_model(op, bias=False, attributes={"activations": defaults})
    expected = _run_ort(model.SerializeToString(), feeds)  # ONNX Runtime needs hidden_size
    for attribute in list(model.graph.node[0].attribute):
        if attribute.name == "hidden_size":  # fastrnn infers it from R
            model.graph.node[0].attribute.remove(attribute)
    for name, a, e in zip(["Y", "Y_h", "Y_c"], _load(model)(**feeds), expected):
        assert_close(a, e, F32, f"{op} without B and hidden_size", name)


def test_all_zero_peepholes_run():
    onnx = _onnx()
    model, feeds = recurrent_model("LSTM", extra_inputs=["P"])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 9), np.float32), "P"))
    _check_against_ort(model, feeds, "LSTM with an all-zero P")


# gradients ---------------------------------------------------------------------------------------------
def _fd_case(op, direction, layout, lengths, initial, attributes=None):
    model, feeds = recurrent_model(op, direction=direction, layout=layout, lengths=lengths, initial=initial,
                                   T=4, B=3, D=2, H=2, attributes=attributes, seed=5)
    imported = _load(model).double()
    rng = np.random.default_rng(9)
    feeds = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in feeds.items()}
    outputs = imported(**feeds)
    weights = [rng.standard_normal(np.shape(o)) for o in outputs]

    def loss():
        for parameter in imported.parameters():
            parameter.mark_changed()  # written in place by the differences: repack
        with_no_grad = imported(**feeds)
        return float(sum(np.sum(o * w) for o, w in zip(with_no_grad, weights)))

    imported.zero_grad()
    imported(**feeds)
    grad_inputs = imported.backward(*weights)
    context = f"{op} {direction} layout={layout} lengths={lengths}"
    for name, parameter in imported.named_parameters():
        expected = central_differences(loss, parameter.data, FINITE_DIFFERENCE_STEP)
        assert_close(parameter.grad, expected, FINITE_DIFFERENCE, context, f"d loss / d {name}")
    for name, grad in zip(imported.input_names, grad_inputs):
        if feeds[name].dtype.kind == "f":
            expected = central_differences(loss, feeds[name], FINITE_DIFFERENCE_STEP)
            assert_close(grad, expected, FINITE_DIFFERENCE, context, f"d loss / d {name}")


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
def test_gradients_against_finite_differences(op):
    _onnx()
    _fd_case(op, "bidirectional", 0, [4, 1, 3], True)
    _fd_case(op, "reverse", 1, None, True, {"linear_before_reset": 0} if op == "GRU" else None)


# models exported by torch --------------------------------------------------------------------------------
def _export(torch, module, args, input_names, output_names, dynamic_axes=None):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes)
    return buffer.getvalue()


def _recurrent_nodes(imported):
    return [node for node in imported.graph.nodes if node.op_type in GATES]


def _check_recurrent_grads(imported, module, op, context):
    """Each torch layer's weight gradients against the ONNX node's W, R, B gradients (ONNX's gate order)."""
    blocks = ONNX_BLOCKS[op]
    dirs = 2 if module.bidirectional else 1
    for layer, node in enumerate(_recurrent_nodes(imported)):
        w, r, b = (imported._parameters[name].grad for name in node.inputs[1:4])
        H = module.hidden_size
        for d in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if d else "")

            def onnx_order(grad):
                return grad.reshape(len(blocks), H, *grad.shape[1:])[blocks].reshape(grad.shape)

            for stem, actual in (("weight_ih", w[d]), ("weight_hh", r[d]),
                                 ("bias_ih", b[d, :len(blocks) * H]), ("bias_hh", b[d, len(blocks) * H:])):
                expected = onnx_order(getattr(module, stem + suffix).grad.numpy())
                assert_close(actual, expected, F32, context, f"d loss / d {stem}{suffix}")


TORCH_LAYERS = {
    "lstm": ("LSTM", dict()),
    "gru": ("GRU", dict()),
    "rnn-tanh": ("RNN", dict()),
    "rnn-relu": ("RNN", dict(nonlinearity="relu")),
    "lstm-bidirectional-stacked": ("LSTM", dict(bidirectional=True, num_layers=2)),
    "gru-bidirectional-batch_first": ("GRU", dict(bidirectional=True, batch_first=True)),
    "rnn-stacked-batch_first": ("RNN", dict(num_layers=2, batch_first=True)),
}


@pytest.mark.parametrize("initial_states", [False, True])
@pytest.mark.parametrize("name", list(TORCH_LAYERS))
def test_torch_exported_layers(name, initial_states):
    _onnx()
    torch = pytest.importorskip("torch")
    op, options = TORCH_LAYERS[name]
    torch.manual_seed(0)
    module = getattr(torch.nn, op)(4, 5, **options)
    T, B = 6, 3
    batch_first = options.get("batch_first", False)
    x = torch.randn((B, T, 4) if batch_first else (T, B, 4), requires_grad=True)
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    states = []
    if initial_states:
        states = [torch.randn(layers, B, 5, requires_grad=True) for _ in range(2 if op == "LSTM" else 1)]

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = module

        def forward(self, x, *states):
            hx = None if not states else (tuple(states) if op == "LSTM" else states[0])
            y, h = self.rnn(x, hx)
            return (y, *h) if op == "LSTM" else (y, h)

    input_names = ["x"] + [f"s{i}" for i in range(len(states))]
    output_names = ["y", "h_n", "c_n"][:3 if op == "LSTM" else 2]
    axis = {0: "batch", 1: "time"} if batch_first else {0: "time", 1: "batch"}
    data = _export(torch, Wrapper(), (x, *states), input_names, output_names,
                   {"x": axis, **{n: {1: "batch"} for n in input_names[1:]}})
    imported = _load(data)
    assert imported.input_names == input_names and imported.output_names == output_names
    feeds = {n: t.detach().numpy() for n, t in zip(input_names, (x, *states))}
    ours = imported(**feeds)
    for out_name, a, e in zip(output_names, ours, _run_ort(data, feeds)):
        assert_close(a, e, F32, name, out_name)

    # gradients against torch autograd on the same module
    rng = np.random.default_rng(4)
    weights = [rng.standard_normal(np.shape(o)).astype(np.float32) for o in ours]
    torch_outputs = Wrapper()(x, *states)
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(torch_outputs, weights)).backward()
    grads = imported.backward(*weights)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for input_name, tensor, grad in zip(input_names, (x, *states), grads):
        assert_close(grad, tensor.grad.numpy(), F32, name, f"d loss / d {input_name}")
    _check_recurrent_grads(imported, module, op, name)


def test_torch_classifier_trains_like_torch():
    """Embedding -> LSTM -> Linear exported by torch: outputs against ONNX Runtime, every gradient against
    torch, then two SGD steps in both with the same results."""
    _onnx()
    torch = pytest.importorskip("torch")
    import fastrnn.optim

    torch.manual_seed(1)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(20, 6)
            self.lstm = torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(10, 3)

        def forward(self, tokens):
            y, _ = self.lstm(self.embedding(tokens))
            return torch.log_softmax(self.head(y[:, -1]), dim=-1)

    model = Classifier()
    tokens = np.random.default_rng(0).integers(0, 20, (4, 7))
    data = _export(torch, model, (torch.from_numpy(tokens),), ["tokens"], ["log_probs"],
                   {"tokens": {0: "batch", 1: "time"}})
    imported = _load(data)
    assert_close(imported(tokens), _run_ort(data, {"tokens": tokens})[0], F32, "classifier", "log_probs")
    assert_close(imported(tokens[:2, :3]), _run_ort(data, {"tokens": tokens[:2, :3]})[0], F32,
                 "classifier, other batch and length", "log_probs")

    labels = np.array([0, 2, 1, 2])
    optimizer = fastrnn.optim.SGD(imported.parameters(), lr=0.5)
    torch_optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(2):
        log_probs = imported(tokens)
        d_log_probs = np.zeros_like(log_probs)
        d_log_probs[np.arange(4), labels] = -1 / 4  # the gradient of the mean negative log-likelihood
        imported.zero_grad()
        imported.backward(d_log_probs)
        torch_optimizer.zero_grad()
        torch.nn.functional.nll_loss(model(torch.from_numpy(tokens)), torch.from_numpy(labels)).backward()
        for name in ("embedding.weight", "head.weight", "head.bias"):
            assert_close(imported._parameters[name].grad, dict(model.named_parameters())[name].grad.numpy(),
                         F32, f"classifier step {step}", f"d loss / d {name}")
        _check_recurrent_grads(imported, model.lstm, "LSTM", f"classifier step {step}")
        optimizer.step()
        torch_optimizer.step()
    with torch.no_grad():
        assert_close(imported(tokens), model(torch.from_numpy(tokens)).numpy(), F32, "classifier after training",
                     "log_probs")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_torch_exported_packed_sequences(op):
    """pack_padded_sequence(enforce_sorted=False) -> bidirectional layer -> pad_packed_sequence, exported by
    torch (TopK sorts the rows, ScatterElements puts the final states back): against ONNX Runtime and torch,
    and the gradients against torch autograd."""
    _onnx()
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)

    class Packed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, op)(3, 4, bidirectional=True)

        def forward(self, x, lengths):
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            y, h = self.rnn(packed)
            h = h[0] if op == "LSTM" else h
            return torch.nn.utils.rnn.pad_packed_sequence(y, total_length=x.shape[0])[0], h

    module = Packed()
    x = torch.randn(5, 3, 3, requires_grad=True)
    lengths = torch.tensor([2, 5, 4])
    data = _export(torch, module, (x, lengths), ["x", "lengths"], ["y", "h_n"])
    feeds = {"x": x.detach().numpy(), "lengths": lengths.numpy()}
    imported = _load(data)
    ours = imported(**feeds)
    expected_torch = module(x, lengths)
    for a, e, t, name in zip(ours, _run_ort(data, feeds), expected_torch, ["y", "h_n"]):
        assert_close(a, e, F32, f"packed {op} against ONNX Runtime", name)
        assert_close(a, t.detach().numpy(), F32, f"packed {op} against torch", name)

    rng = np.random.default_rng(3)
    weights = [rng.standard_normal(np.shape(o)).astype(np.float32) for o in ours]
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(expected_torch, weights)).backward()
    grad_x, _ = imported.backward(*weights)
    assert_close(grad_x, x.grad.numpy(), F32, f"packed {op}", "d loss / d x")
    _check_recurrent_grads(imported, module.rnn, op, f"packed {op}")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_torch_exported_head_with_gelu_and_layer_norm(approximate):
    """Linear -> GELU -> LayerNorm -> Linear -> Softmax as torch exports it (Gelu at opset 20, Erf
    arithmetic before; LayerNormalization):
    outputs against ONNX Runtime, gradients against torch autograd."""
    _onnx()
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    head = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.GELU(approximate=approximate),
                               torch.nn.LayerNorm(6), torch.nn.Linear(6, 3), torch.nn.Softmax(dim=-1))
    x = torch.randn(5, 4, requires_grad=True)
    for opset in (17, 20):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(head, (x,), buffer, dynamo=False, input_names=["x"], output_names=["p"],
                              opset_version=opset)
        data = buffer.getvalue()
        imported = _load(data)
        ours = imported(x.detach().numpy())
        assert_close(ours, _run_ort(data, {"x": x.detach().numpy()})[0], F32, f"GELU opset {opset}", "p")
        weight = np.random.default_rng(opset).standard_normal(ours.shape).astype(np.float32)
        x.grad = None
        head.zero_grad()
        (head(x) * torch.from_numpy(weight)).sum().backward()
        assert_close(imported.backward(weight), x.grad.numpy(), F32, f"GELU opset {opset}", "d loss / d x")
        for name, parameter in head.named_parameters():
            onnx_name = next(n for n in imported.state_dict() if n == name)
            assert_close(imported._parameters[onnx_name].grad, parameter.grad.numpy(), F32,
                         f"GELU opset {opset}", f"d loss / d {name}")


# the plain operators ------------------------------------------------------------------------------------
def test_plain_operators_against_ort_and_finite_differences():
    """A graph of most plain operators with backward (opset 13 forms), against ONNX Runtime, and its
    gradients in float64 against finite differences."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(6)
    init = {"w": rng.standard_normal((4, 5)), "c": rng.standard_normal((5,)), "v": rng.standard_normal((3, 5)),
            "table": rng.standard_normal((6, 4))}
    ints = {"axes0": np.array([0], np.int64), "shape": np.array([0, -1], np.int64),
            "starts": np.array([1], np.int64), "ends": np.array([100], np.int64),
            "sl_axes": np.array([1], np.int64), "exp_shape": np.array([2, 3, 5], np.int64),
            "idx": np.array([2, 0, 5], np.int64)}
    nodes = [
        helper.make_node("Gather", ["table", "idx"], ["emb"]),                       # (3, 4)
        helper.make_node("MatMul", ["x", "w"], ["mm"]),                              # (3, 5)
        helper.make_node("Gemm", ["emb", "w", "c"], ["gemm"], alpha=0.5, beta=2.0),  # (3, 5)
        helper.make_node("Add", ["mm", "gemm"], ["s1"]),
        helper.make_node("Mul", ["s1", "v"], ["s2"]),
        helper.make_node("Sub", ["s2", "c"], ["s3"]),
        helper.make_node("Div", ["s3", "v2"], ["s4"]),
        helper.make_node("Tanh", ["s4"], ["a1"]),
        helper.make_node("Sigmoid", ["s1"], ["a2"]),
        helper.make_node("Relu", ["s2"], ["a3"]),
        helper.make_node("Erf", ["s3"], ["a4"]),
        helper.make_node("Concat", ["a1", "a2", "a3", "a4"], ["cat"], axis=0),         # (12, 5)
        helper.make_node("Transpose", ["cat"], ["tr"], perm=[1, 0]),                   # (5, 12)
        helper.make_node("Unsqueeze", ["tr", "axes0"], ["un"]),                        # (1, 5, 12)
        helper.make_node("Squeeze", ["un", "axes0"], ["sq"]),                          # (5, 12)
        helper.make_node("Reshape", ["sq", "shape"], ["rs"]),                          # (5, 12)
        helper.make_node("Slice", ["rs", "starts", "ends", "sl_axes"], ["sl"]),        # (5, 11)
        helper.make_node("Softmax", ["sl"], ["sm"], axis=-1),
        helper.make_node("LogSoftmax", ["sl"], ["lsm"], axis=0),
        helper.make_node("Add", ["sm", "lsm"], ["both"]),
        helper.make_node("ReduceMean", ["both"], ["rm"], axes=[1], keepdims=1),        # (5, 1)
        helper.make_node("Flatten", ["rm"], ["fl"], axis=0),                           # (1, 5)
        helper.make_node("Expand", ["fl", "exp_shape"], ["ex"]),                       # (2, 3, 5)
        helper.make_node("Identity", ["ex"], ["id"]),
        helper.make_node("Dropout", ["id"], ["out"]),
    ]
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in init.items()]
    initializers += [numpy_helper.from_array(v, k) for k, v in ints.items()]
    model = _model(onnx, nodes, [_float_info(onnx, "x", [3, 4]), _float_info(onnx, "v2", [3, 5])],
                   [_float_info(onnx, "out")], initializers, opset=13)
    feeds = {"x": rng.standard_normal((3, 4)).astype(np.float32),
             "v2": rng.uniform(1, 2, (3, 5)).astype(np.float32)}
    data = model.SerializeToString()
    assert_close(_load(data)(**feeds), _run_ort(data, feeds)[0], F32, "plain operators", "out")

    imported = _load(data).double()
    feeds = {k: v.astype(np.float64) for k, v in feeds.items()}
    weight = rng.standard_normal((2, 3, 5))

    def loss():
        return float(np.sum(imported(**feeds) * weight))

    imported(**feeds)
    grad_x, grad_v2 = imported.backward(weight)
    for name, parameter in imported.named_parameters():
        expected = central_differences(loss, parameter.data, FINITE_DIFFERENCE_STEP)
        assert_close(parameter.grad, expected, FINITE_DIFFERENCE, "plain operators", f"d loss / d {name}")
    for name, grad in (("x", grad_x), ("v2", grad_v2)):
        expected = central_differences(loss, feeds[name], FINITE_DIFFERENCE_STEP)
        assert_close(grad, expected, FINITE_DIFFERENCE, "plain operators", f"d loss / d {name}")


def test_opset_11_attribute_forms_and_shape_subgraphs():
    """Squeeze/Unsqueeze with axes attributes, Slice of opset 11, a shape computed from the input
    (Shape, Gather, Concat, ConstantOfShape, Cast, Range) and Where/Equal/Not on a mask."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    T = onnx.TensorProto
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["shape", "zero"], ["rows"], axis=0),
        helper.make_node("Unsqueeze", ["rows"], ["rows1"], axes=[0]),
        helper.make_node("Constant", [], ["one"], value_ints=[1]),
        helper.make_node("Concat", ["rows1", "one"], ["col_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["col_shape"], ["ones"],
                         value=numpy_helper.from_array(np.array([1.5], np.float32))),
        helper.make_node("Cast", ["rows"], ["rows_f"], to=T.FLOAT),
        helper.make_node("Constant", [], ["start"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Constant", [], ["delta"], value=numpy_helper.from_array(np.array(1, np.int64))),
        helper.make_node("Range", ["start", "rows", "delta"], ["steps"]),
        helper.make_node("Cast", ["steps"], ["steps_f"], to=T.FLOAT),
        helper.make_node("Unsqueeze", ["steps_f"], ["steps_col"], axes=[1]),
        helper.make_node("Mul", ["x", "ones"], ["scaled"]),
        helper.make_node("Add", ["scaled", "steps_col"], ["shifted"]),
        helper.make_node("Div", ["shifted", "rows_f"], ["normed"]),
        helper.make_node("Constant", [], ["starts"], value_ints=[0, -3]),
        helper.make_node("Constant", [], ["ends"], value_ints=[1000, 1000]),
        helper.make_node("Constant", [], ["axes"], value_ints=[0, 1]),
        helper.make_node("Slice", ["normed", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Unsqueeze", ["sliced"], ["u"], axes=[0, 3]),
        helper.make_node("Squeeze", ["u"], ["s"], axes=[0]),
        helper.make_node("Squeeze", ["s"], ["s2"]),
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Greater", ["s2", "half"], ["big"]),
        helper.make_node("Not", ["big"], ["small"]),
        helper.make_node("Equal", ["small", "big"], ["never"]),
        helper.make_node("Where", ["small", "s2", "half"], ["clipped"]),
        helper.make_node("Where", ["never", "half", "clipped"], ["out"]),
        helper.make_node("Softmax", ["out"], ["sm"], axis=1),  # opset 11: softmax over the flattened tail
    ]
    model = _model(onnx, nodes, [_float_info(onnx, "x", ["rows", 5])], [_float_info(onnx, "sm")], opset=11)
    data = model.SerializeToString()
    for rows in (2, 4):
        x = np.random.default_rng(rows).standard_normal((rows, 5)).astype(np.float32)
        assert_close(_load(data)(x), _run_ort(data, {"x": x})[0], F32, f"opset 11, {rows} rows", "sm")
    imported = _load(data).double()
    x = np.random.default_rng(8).standard_normal((3, 5))
    weight = np.random.default_rng(9).standard_normal((3, 3))
    imported(x)
    grad = imported.backward(weight)
    expected = central_differences(lambda: float(np.sum(imported(x) * weight)), x, FINITE_DIFFERENCE_STEP)
    assert_close(grad, expected, FINITE_DIFFERENCE, "opset 11 graph", "d loss / d x")

    # opset 9: Slice's starts, ends and axes as attributes, a negative step impossible
    nodes = [helper.make_node("Slice", ["x"], ["y"], starts=[1, -2], ends=[1000, 1000], axes=[0, 1])]
    data = _model(onnx, nodes, [_float_info(onnx, "x", [3, 5])], [_float_info(onnx, "y")], opset=9).SerializeToString()
    x = np.arange(15, dtype=np.float32).reshape(3, 5)
    assert np.array_equal(_load(data)(x), _run_ort(data, {"x": x})[0])


# the model object ---------------------------------------------------------------------------------------
def test_model_interface_state_dict_modes_and_pickling():
    import pickle

    import fastrnn.nn

    model, feeds = recurrent_model("GRU", direction="bidirectional", lengths=[5, 1, 3], initial=True)
    imported = _load(model)
    assert imported.input_names == ["X", "sequence_lens", "initial_h"]
    assert imported.output_names == ["Y", "Y_h"]
    assert isinstance(imported, fastrnn.nn.Module)
    assert list(imported.state_dict()) == ["W", "R", "B"]
    for name in ("W", "R", "B"):
        expected = [onnx_array for onnx_array in model.graph.initializer if onnx_array.name == name][0]
        assert np.array_equal(imported.state_dict()[name], _onnx().numpy_helper.to_array(expected))
    positional = imported(feeds["X"], feeds["sequence_lens"], feeds["initial_h"])
    named = imported(feeds["X"], initial_h=feeds["initial_h"], sequence_lens=feeds["sequence_lens"])
    for a, b in zip(positional, named):
        assert np.array_equal(a, b)
    assert imported.eval() is imported and not imported.training
    with fastrnn.nn.no_grad():
        inference = imported(**feeds)
    for a, b in zip(positional, inference):
        assert np.array_equal(a, b)
    with pytest.raises(ArgumentError, match="needs a forward"):
        imported.backward(None, None)
    copy = pickle.loads(pickle.dumps(imported.train()))
    for a, b in zip(copy(**feeds), positional):
        assert np.array_equal(a, b)
    state = {k: v * 0.5 for k, v in imported.state_dict().items()}
    copy.load_state_dict(state)
    assert not np.array_equal(copy(**feeds)[0], positional[0])


def test_wrong_inputs_at_call_time():
    model, feeds = recurrent_model("LSTM", lengths=[5, 2, 4])
    imported = _load(model)
    with pytest.raises(ArgumentError, match=r"missing input\(s\) \['sequence_lens'\]"):
        imported(feeds["X"])
    with pytest.raises(ArgumentError, match="unknown input 'Z'"):
        imported(Z=1, **feeds)
    with pytest.raises(ArgumentError, match="given twice"):
        imported(feeds["X"], X=feeds["X"], sequence_lens=feeds["sequence_lens"])
    with pytest.raises(ShapeError, match=r"input 'X' must have shape \[5, 3, 4\]; got \[5, 3, 2\]"):
        imported(feeds["X"][..., :2], feeds["sequence_lens"])
    with pytest.raises(ShapeError, match="input 'X' must have shape"):
        imported(feeds["X"][0], feeds["sequence_lens"])
    with pytest.raises(DTypeError, match="input 'sequence_lens' must be an integer array"):
        imported(feeds["X"], feeds["sequence_lens"].astype(np.float32))
    with pytest.raises(ArgumentError, match=r"node 'the_lstm' \(LSTM\): sequence_lens must lie in \[0, T\]"):
        imported(feeds["X"], np.array([9, 1, 1], np.int32))


# refusals ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op, attributes, match", [
    ("LSTM", {"clip": 3.0}, "attribute clip=3.0 is not supported"),
    ("GRU", {"clip": 1.0}, "attribute clip=1.0"),
    ("LSTM", {"input_forget": 1}, "attribute input_forget=1"),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"]}, "attribute activations=.*default activations"),
    ("GRU", {"activations": ["HardSigmoid", "Tanh"]}, "attribute activations="),
    ("RNN", {"activations": ["Sigmoid"]}, "Tanh or Relu"),
    ("RNN", {"activations": ["Relu"], "activation_alpha": [0.1]}, "attribute activation_alpha"),
    ("LSTM", {"activation_beta": [0.1, 0.2, 0.3]}, "attribute activation_beta"),
    ("GRU", {"linear_before_reset": 2}, "linear_before_reset=2"),
    ("RNN", {"layout": 2}, "layout=2"),
    ("LSTM", {"hidden_size": 0}, "hidden_size=0"),
])
def test_rare_recurrent_attributes_are_refused(op, attributes, match):
    model, _ = recurrent_model(op, attributes=attributes)
    with pytest.raises(OnnxImportError, match=match) as caught:
        _load(model)
    assert f"node 'the_{op.lower()}' ({op})" in str(caught.value)


def test_non_zero_peepholes_are_refused():
    onnx = _onnx()
    model, feeds = recurrent_model("LSTM", extra_inputs=["P"])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.full((1, 9), 0.1, np.float32), "P"))
    imported = _load(model)
    with pytest.raises(OnnxImportError, match=r"node 'the_lstm' \(LSTM\): input P \(peepholes\) holds non-zero"):
        imported(**feeds)


def test_unknown_operators_are_refused():
    onnx = _onnx()
    helper = onnx.helper
    for node, match in ((helper.make_node("Conv", ["x", "x"], ["y"], name="conv1"), r"node 'conv1' \(Conv\): "
                         r"operator 'Conv' is not supported .* it runs .*Gather.*LSTM"),
                        (helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example"),
                         "operator 'Relu' of domain 'com.example' is not supported")):
        model = _model(onnx, [node], [_float_info(onnx, "x", [2, 2])], [_float_info(onnx, "y")])
        if node.domain:
            model.opset_import.append(helper.make_opsetid(node.domain, 1))
        with pytest.raises(OnnxImportError, match=match):
            _load(model)


def test_a_node_without_backward_is_refused_only_when_backward_passes_through_it():
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes = [helper.make_node("Mul", ["x", "w"], ["xw"]),
             helper.make_node("Greater", ["xw", "zero"], ["mask"], name="cmp"),
             helper.make_node("Cast", ["mask"], ["maskf"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Mul", ["maskf", "xw"], ["y"])]
    model = _model(onnx, nodes, [_float_info(onnx, "x", [3])], [_float_info(onnx, "y")],
                   [numpy_helper.from_array(np.ones(3, np.float32), "w"),
                    numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    imported = _load(model)
    imported(np.array([1.0, -2.0, 3.0]))
    imported.backward(np.ones(3))  # Greater's output is boolean: no gradient flows through it
    assert np.array_equal(imported._parameters["w"].grad, [1.0, 0.0, 3.0])
    model.graph.node[2].attribute[0].i = onnx.TensorProto.FLOAT
    model.graph.node[1].op_type = "Range"  # a float Range: forward only, and on the gradient's path
    model.graph.node[1].ClearField("input")
    model.graph.node[1].input.extend(["zero_s", "xw_s", "one_s"])
    model.graph.node.insert(0, helper.make_node("Constant", [], ["zero_s"], value_float=0.0))
    model.graph.node.insert(0, helper.make_node("Constant", [], ["one_s"], value_float=1.0))
    model.graph.node.insert(2, helper.make_node("ReduceSum", ["xw"], ["xw_s"], keepdims=0))
    model.graph.node[-1].input[1] = "maskf"
    model.graph.node[-1].input[0] = "maskf"
    imported = _load(model)
    imported(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(OnnxImportError, match=r"node 'cmp' \(Range\): fastrnn runs Range forward only"):
        imported.backward(np.ones(6))
    imported.requires_grad_(False)  # nothing to train before it: only the input's gradient stops there
    imported(np.array([1.0, 2.0, 3.0]))
    assert imported.backward(np.ones(6)) is None and imported._parameters["w"].grad is None


def test_malformed_sources_are_refused(tmp_path):
    _onnx()
    model, _ = recurrent_model("GRU")
    data = model.SerializeToString()
    for bad, match in ((b"", "not a valid ONNX model"), (b"\x00\xff garbage \x13" * 5, "not a valid ONNX model"),
                       (data[: len(data) // 2], "not a valid ONNX model")):
        with pytest.raises(OnnxImportError, match=match):
            _load(bad)
    with pytest.raises(OnnxImportError, match="cannot read the ONNX file"):
        _load(tmp_path / "missing.onnx")
    with pytest.raises(ArgumentError, match="source must be a file name"):
        _load(3.5)
    path = tmp_path / "gru.onnx"
    path.write_bytes(data)
    assert _load(path).output_names == ["Y", "Y_h"] and _load(str(path)).input_names == ["X"]


def test_external_data_is_refused(tmp_path):
    onnx = _onnx()
    model, _ = recurrent_model("LSTM", H=16, D=16)
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    with pytest.raises(OnnxImportError, match="stored outside the model, in 'weights.bin'"):
        _load(tmp_path / "m.onnx")
    with pytest.raises(OnnxImportError, match="stored outside the model"):
        _load((tmp_path / "m.onnx").read_bytes())


def test_broken_graphs_are_refused():
    onnx = _onnx()
    helper = onnx.helper
    cases = [
        ([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], r"node 'r' \(Relu\) reads the value 'nowhere'"),
        ([helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")],
         "the graph has a cycle: .*first.*second"),
        ([helper.make_node("Relu", ["x"], ["y"], name="one"), helper.make_node("Tanh", ["x"], ["y"], name="two")],
         "value 'y' is computed twice"),
        ([helper.make_node("Relu", ["x"], ["z"])], "graph output 'y' is computed by no node"),
    ]
    for nodes, match in cases:
        output = "a" if "cycle" in match else "y"
        model = _model(onnx, nodes, [_float_info(onnx, "x", [2])], [_float_info(onnx, output)])
        with pytest.raises(OnnxImportError, match=match):
            _load(model)


def test_loading_without_onnx_names_the_extra(monkeypatch):
    import sys

    import fastrnn.onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "fastrnn\[onnx\]"'):
        fastrnn.onnx.load(b"anything")


def test_corrupted_files_raise_fastrnn_errors_only():
    """Bytes of a valid file with a few changed at random: loading and running give a model or a
    fastrnn error, never another exception (a huge shape from a corrupted constant included)."""
    from fastrnn.exceptions import FastRNNError

    model, feeds = recurrent_model("LSTM", direction="bidirectional", lengths=[5, 2, 4], initial=True)
    data = model.SerializeToString()
    rng = np.random.default_rng(0)
    outcomes = {"ran": 0, "refused": 0}
    for _ in range(300):
        corrupted = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            corrupted[rng.integers(len(corrupted))] = rng.integers(256)
        try:
            _load(bytes(corrupted))(**feeds)
            outcomes["ran"] += 1
        except FastRNNError:
            outcomes["refused"] += 1
    assert outcomes["ran"] and outcomes["refused"], outcomes


def test_shapes_from_the_graph_are_bounded():
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["y"], name="huge")]
    model = _model(onnx, nodes, [], [_float_info(onnx, "y")],
                   [numpy_helper.from_array(np.array([2 ** 20, 2 ** 20, 8], np.int64), "shape")])
    with pytest.raises(ShapeError, match=r"node 'huge' \(ConstantOfShape\) would make an array of shape"):
        _load(model)()


def test_a_loaded_model_runs_and_trains_without_onnx(monkeypatch):
    """Only reading needs onnx: a loaded (or unpickled) model runs forward and backward without it."""
    import pickle
    import sys

    model, feeds = recurrent_model("GRU", direction="bidirectional", lengths=[5, 3, 1])
    data = pickle.dumps(_load(model))
    expected = _load(model)(**feeds)
    monkeypatch.setitem(sys.modules, "onnx", None)
    imported = pickle.loads(data)
    outputs = imported(**feeds)
    for a, e in zip(outputs, expected):
        assert np.array_equal(a, e)
    imported.backward(*(np.ones_like(o) for o in outputs))
    assert all(p.grad is not None for p in imported.parameters())


def test_a_node_naming_more_outputs_than_its_operator_has():
    onnx = _onnx()
    nodes = [onnx.helper.make_node("Relu", ["x"], ["y", "extra"], name="two"),
             onnx.helper.make_node("Tanh", ["extra"], ["z"])]
    model = _model(onnx, nodes, [_float_info(onnx, "x", [2])], [_float_info(onnx, "z")])
    with pytest.raises(OnnxImportError, match=r"node 'two' \(Relu\) names 2 outputs; fastrnn's Relu computes 1"):
        _load(model)(np.ones(2, np.float32))
