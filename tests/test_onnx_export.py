"""fastrnn.onnx.export: the exported graph passes onnx.checker and runs in ONNX Runtime and
OpenVINO with fastrnn's own outputs, at another batch size and sequence length than the
example's (the dynamic axes); every refusal names what it refuses."""

import io
import pathlib
import re

import numpy as np
import pytest
from helpers import assert_close, keras_initial_state_model, masked_keras_functional_model, padded_ids
from tolerances import TORCH_PARITY

from fastrnn import keras, nn
from fastrnn.exceptions import ArgumentError, DTypeError, OnnxExportError, ShapeError
from fastrnn.keras import layers

#: fastrnn against the runtimes' operators on the same float32 weights.
TOLERANCE = TORCH_PARITY[np.dtype(np.float32)]


@pytest.fixture
def runtimes():
    """Run a ModelProto in ONNX Runtime and OpenVINO (CPU, float32); returns both results."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    ov = pytest.importorskip("openvino")
    core = ov.Core()

    def run(proto, feeds, static_for_openvino=False):
        onnx.checker.check_model(proto, full_check=True)
        data = proto.SerializeToString()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        by_ort = session.run(None, feeds)
        model = core.read_model(data, b"")
        if static_for_openvino:
            # OpenVINO 2026.4's CPU plugin ignores sequence_lens on dynamic shapes: set them first
            model.reshape({name: list(array.shape) for name, array in feeds.items()})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled(feeds)
        by_openvino = [result[output] for output in compiled.outputs]
        return {"onnxruntime": by_ort, "openvino": by_openvino}

    return run


def assert_runs_as(results, expected, context):
    for runtime, outputs in results.items():
        assert len(outputs) == len(expected), f"{context}: {runtime} gave {len(outputs)} outputs"
        for i, (actual, want) in enumerate(zip(outputs, expected)):
            assert_close(actual, want, TOLERANCE, f"{context} on {runtime}", f"output {i}")


def flat(result):
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in flat(item)]
    return [result]


def fastrnn_forward(model, x, lengths=None):
    """The model's inference forward, with lengths given to its recurrent modules and LastStep."""
    model.eval()
    if isinstance(model, nn.Sequential):
        for module in model:
            x = fastrnn_forward(module, x, lengths)
        return x
    if isinstance(model, (nn.RNN, nn.LSTM, nn.GRU, nn.LastStep)):
        return model(x, lengths=lengths)
    return model(x)


def rows(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# nn recurrent modules ----------------------------------------------------------------------
NN_CASES = [
    pytest.param(cls, options, id=f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in options.items()) or 'plain'}")
    for cls, options in [
        (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"}), (nn.LSTM, {}), (nn.GRU, {}),
        (nn.RNN, {"bidirectional": True, "nonlinearity": "relu"}), (nn.LSTM, {"bidirectional": True}),
        (nn.GRU, {"bidirectional": True}),
        (nn.LSTM, {"num_layers": 2, "batch_first": True}), (nn.GRU, {"num_layers": 2, "bidirectional": True,
                                                                     "batch_first": True}),
        (nn.RNN, {"num_layers": 3, "bias": False}), (nn.LSTM, {"num_layers": 2, "bidirectional": True,
                                                                "bias": False}),
    ]
]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cls, options", NN_CASES)
def test_nn_recurrent_module(runtimes, cls, options, with_lengths):
    import fastrnn.onnx

    rng = np.random.default_rng(0)
    module = cls(3, 4, seed=1, **options)
    batch_first = options.get("batch_first", False)

    def batch(T, B):
        x = rows(rng, (B, T, 3) if batch_first else (T, B, 3))
        lengths = rng.integers(0, T + 1, B).astype(np.int32) if with_lengths else None
        if with_lengths:
            lengths[0] = T  # one full row, others shorter (one may be empty)
        return x, lengths

    x, lengths = batch(5, 2)
    proto = fastrnn.onnx.export(module, None, (x, lengths) if with_lengths else x)
    x, lengths = batch(7, 3)  # another T and B than the example's
    expected = flat(fastrnn_forward(module, x, lengths))
    feeds = {"input": x, **({"lengths": lengths} if with_lengths else {})}
    names = [output.name for output in proto.graph.output]
    assert names == ["output", "h_n", "c_n"][:len(expected)]
    assert_runs_as(runtimes(proto, feeds, static_for_openvino=with_lengths), expected, f"{cls.__name__} {options}")


def test_nn_declares_dynamic_batch_and_time_axes():
    onnx = pytest.importorskip("onnx")
    import fastrnn.onnx

    module = nn.GRU(3, 4, batch_first=True, num_layers=2, bidirectional=True, seed=0)
    x = np.zeros((2, 5, 3), np.float32)

    def shapes(proto):
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in list(proto.graph.input) + list(proto.graph.output)}

    dynamic = fastrnn.onnx.export(module, None, (x, np.array([5, 3])))
    assert shapes(dynamic) == {"input": ["batch", "time", 3], "lengths": ["batch"],
                               "output": ["batch", "time", 8], "h_n": [4, "batch", 4]}
    fixed = fastrnn.onnx.export(module, None, x, dynamic_axes=False)
    assert shapes(fixed) == {"input": [2, 5, 3], "output": [2, 5, 8], "h_n": [4, 2, 4]}
    chosen = fastrnn.onnx.export(module, None, x, dynamic_axes={"x": {0: "n"}, "y": [0]},
                                 input_names=["x"], output_names=["y"])
    assert shapes(chosen) == {"x": ["n", 5, 3], "y": ["y_dim0", 5, 8], "h_n": [4, 2, 4]}
    assert dynamic.ir_version == 8 and dynamic.opset_import[0].version == 17
    assert onnx.checker.check_model(dynamic, full_check=True) is None


# nn whole models ---------------------------------------------------------------------------
def classifier(seed=0):
    return nn.Sequential(nn.Embedding(40, 6), nn.LSTM(6, 8, batch_first=True, bidirectional=True, seed=seed),
                         nn.LastStep(batch_first=True), nn.Linear(16, 3, seed=seed))


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_nn_classifier(runtimes, with_lengths):
    import fastrnn.onnx

    rng = np.random.default_rng(1)
    model = classifier()
    tokens = rng.integers(0, 40, (3, 6))
    lengths = np.array([6, 2, 4], np.int32)
    proto = fastrnn.onnx.export(model, None, (tokens, lengths) if with_lengths else tokens)
    ops = [node.op_type for node in proto.graph.node]
    assert "Gather" in ops and "LSTM" in ops and "Gemm" in ops
    tokens = rng.integers(0, 40, (5, 9)).astype(np.int64)
    lengths = np.array([9, 1, 0, 4, 8], np.int32)
    expected = [fastrnn_forward(model, tokens, lengths if with_lengths else None)]
    feeds = {"input": tokens, **({"lengths": lengths} if with_lengths else {})}
    assert_runs_as(runtimes(proto, feeds, static_for_openvino=with_lengths), expected, "classifier")


def test_nn_heads_and_activations(runtimes):
    import fastrnn.onnx

    rng = np.random.default_rng(2)
    model = nn.Sequential(
        nn.GRU(4, 6, num_layers=2, seed=0), nn.TakeOutput(), nn.Dropout(0.3, seed=0), nn.Linear(6, 5, seed=1),
        nn.LayerNorm(5), nn.GELU(), nn.Linear(5, 5, bias=False, seed=2), nn.GELU(approximate="tanh"),
        nn.Identity(), nn.Tanh(), nn.Sequential(nn.ReLU(), nn.Sigmoid()), nn.LastStep(), nn.Softmax(dim=-1))
    model.train()  # the export computes inference whatever the mode, and leaves the mode alone
    proto = fastrnn.onnx.export(model, None, rows(rng, (4, 2, 4)))
    assert model.training and model[2].training
    ops = {node.op_type for node in proto.graph.node}
    assert {"MatMul", "LayerNormalization", "Erf", "Softmax"} <= ops
    x = rows(rng, (6, 3, 4))
    assert_runs_as(runtimes(proto, {"input": x}), [fastrnn_forward(model, x)], "heads")
    log_model = nn.Sequential(nn.Linear(4, 3, seed=0), nn.LogSoftmax(dim=1))
    proto = fastrnn.onnx.export(log_model, None, rows(rng, (2, 4)))
    x = rows(rng, (5, 4))
    assert_runs_as(runtimes(proto, {"input": x}), [log_model(x)], "log softmax")


def test_writes_paths_and_file_objects(tmp_path):
    onnx = pytest.importorskip("onnx")
    import fastrnn.onnx

    model = nn.LSTM(3, 4, seed=0)
    x = np.zeros((2, 1, 3), np.float32)
    proto = fastrnn.onnx.export(model, tmp_path / "lstm.onnx", x)
    assert onnx.load(str(tmp_path / "lstm.onnx")) == proto
    fastrnn.onnx.export(model, str(tmp_path / "again.onnx"), x)
    assert (tmp_path / "again.onnx").read_bytes() == proto.SerializeToString()
    buffer = io.BytesIO()
    fastrnn.onnx.export(model, buffer, x)
    assert buffer.getvalue() == proto.SerializeToString()


@pytest.mark.parametrize("opset", [14, 18])
def test_other_opsets(runtimes, opset):
    import fastrnn.onnx

    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.LSTM(3, 4, seed=0), nn.LastStep(), nn.Linear(4, 2, seed=0))
    proto = fastrnn.onnx.export(model, None, (rows(rng, (3, 2, 3)), np.array([3, 1])), opset=opset)
    assert proto.opset_import[0].version == opset
    x, lengths = rows(rng, (5, 4, 3)), np.array([5, 2, 1, 4], np.int32)
    assert_runs_as(runtimes(proto, {"input": x, "lengths": lengths}, static_for_openvino=True),
                   [fastrnn_forward(model, x, lengths)], f"opset {opset}")


# Keras models -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell, options", [
    ("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu"}), ("LSTM", {}), ("GRU", {}),
    ("GRU", {"reset_after": False}), ("LSTM", {"use_bias": False}),
], ids=["simple_rnn", "simple_rnn_relu", "lstm", "gru", "gru_reset_before", "lstm_no_bias"])
def test_keras_functional_with_mask(runtimes, cell, options):
    import fastrnn.onnx

    rng = np.random.default_rng(4)
    model = masked_keras_functional_model(keras, layers, cell, options)
    proto = fastrnn.onnx.export(model, None, padded_ids(rng, 2, 5, 30, [5, 3]))
    assert [value.name for value in proto.graph.input] == ["ids"]
    ops = [node.op_type for node in proto.graph.node]
    onnx_op = {"SimpleRNN": "RNN"}.get(cell, cell)
    assert ops.count(onnx_op) == 6
    if cell == "GRU":
        reset = [a.i for node in proto.graph.node if node.op_type == "GRU" for a in node.attribute
                 if a.name == "linear_before_reset"]
        assert set(reset) == {int(options.get("reset_after", True))}
    tokens = padded_ids(rng, 4, 8, 30, [8, 2, 5, 1])
    expected = flat(model(tokens))
    assert_runs_as(runtimes(proto, {"ids": tokens}, static_for_openvino=True), expected, f"Keras {cell} {options}")


def test_keras_sequential_classifier(runtimes):
    import fastrnn.onnx

    rng = np.random.default_rng(5)
    model = keras.Sequential([
        layers.Embedding(50, 8, mask_zero=True, seed=0),
        layers.Bidirectional(layers.LSTM(6, return_sequences=True, seed=1)),
        layers.Dropout(0.5),
        layers.GRU(5, seed=2),
        layers.Dense(4, activation="relu", seed=3),
        layers.Activation("tanh"),
        layers.Dense(1, activation="sigmoid", seed=4),
    ])
    model.build((None, None))
    proto = fastrnn.onnx.export(model, None, padded_ids(rng, 2, 4, 50, [4, 2]))
    tokens = padded_ids(rng, 5, 7, 50, [7, 3, 1, 6, 4])
    assert_runs_as(runtimes(proto, {"input": tokens}, static_for_openvino=True), [model(tokens)], "Sequential")


def test_keras_without_mask_is_dynamic_everywhere(runtimes):
    """No lengths: OpenVINO runs the file with its dynamic shapes as they are."""
    import fastrnn.onnx

    rng = np.random.default_rng(6)
    model = keras_initial_state_model(keras, layers)
    proto = fastrnn.onnx.export(model, None, [rows(rng, (2, 5, 3)), rows(rng, (2, 4))])
    feeds = [rows(rng, (3, 8, 3)), rows(rng, (3, 4))]
    names = [value.name for value in proto.graph.input]
    assert_runs_as(runtimes(proto, dict(zip(names, feeds))), flat(model(feeds)), "Keras initial states")


# refusals -----------------------------------------------------------------------------------
class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4)

    def forward(self, x):
        return self.lstm(x)[0]


@pytest.mark.parametrize("model, pattern", [
    (nn.LSTM(3, 4, proj_size=2), r"the model \(LSTM\): proj_size=2 has no equivalent in ONNX"),
    (nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 4, proj_size=2)), r"module '1' \(LSTM\): proj_size"),
    (nn.Sequential(nn.LSTMCell(3, 4)), r"module '0' \(LSTMCell\).*supports nn.RNN, nn.LSTM"),
    (nn.ModuleList([nn.Linear(3, 3)]), r"the model \(ModuleList\).*supports"),
    (Custom(), r"Module subclass with its own forward\(\).*nn.Sequential"),
])
def test_nn_refusals(model, pattern):
    pytest.importorskip("onnx")
    import fastrnn.onnx

    with pytest.raises(OnnxExportError, match=pattern):
        fastrnn.onnx.export(model, None, np.zeros((2, 1, 3), np.float32))


def test_keras_refusals():
    pytest.importorskip("onnx")
    import fastrnn.onnx

    stateful = keras.Sequential([keras.Input(batch_shape=(2, 3, 4)), layers.LSTM(3, stateful=True)])
    with pytest.raises(OnnxExportError, match=r"layer 'lstm.*\(LSTM\): stateful=True"):
        fastrnn.onnx.export(stateful, None, np.zeros((2, 3, 4), np.float32))
    unknown = keras.Sequential([keras.Input((3, 4)), layers.Flatten()])
    with pytest.raises(OnnxExportError, match=r"\(Flatten\).*supports the layers Input, Embedding"):
        fastrnn.onnx.export(unknown, None, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(OnnxExportError, match="not built"):
        fastrnn.onnx.export(keras.Sequential([layers.Dense(2)]), None, np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("model, example, error, pattern", [
    (nn.LSTM(3, 4), np.zeros((2, 3), np.float32), ShapeError, r"\(T, B, input_size\)"),
    (nn.LSTM(3, 4), np.zeros((2, 1, 5), np.float32), ShapeError, "input_size"),
    (nn.LSTM(3, 4), np.zeros((2, 1, 3), np.int64), DTypeError, "float"),
    (nn.LSTM(3, 4), np.array([["a"]]), DTypeError, "numeric"),
    (classifier(), np.zeros((2, 3), np.float32), DTypeError, "integer token ids"),
    (classifier(), np.zeros((2, 3, 1), np.int64), ShapeError, r"\(B, T\)"),
    (nn.LSTM(3, 4), (np.zeros((2, 1, 3), np.float32), np.array([3])), ArgumentError, r"lengths.*\[0, 2\]"),
    (nn.LSTM(3, 4), (np.zeros((2, 1, 3), np.float32),), ArgumentError, "pair"),
    (nn.Linear(3, 4), (np.zeros((2, 3), np.float32), np.array([1, 1])), ArgumentError, "no module"),
    ("lstm", np.zeros((2, 1, 3), np.float32), ArgumentError, "fastrnn.nn Module or a fastrnn.keras"),
])
def test_bad_arguments(model, example, error, pattern):
    pytest.importorskip("onnx")
    import fastrnn.onnx

    with pytest.raises(error, match=pattern):
        fastrnn.onnx.export(model, None, example)


@pytest.mark.parametrize("options, pattern", [
    ({"opset": 12}, "opset must be an integer >= 14"),
    ({"dynamic_axes": "yes"}, "dynamic_axes must be"),
    ({"dynamic_axes": {"nothing": [0]}}, "not among the inputs"),
    ({"dynamic_axes": {"input": [5]}}, r"names axis 5"),
    ({"input_names": ["a", "b", "c"]}, "3 names for a graph with 1"),
    ({"output_names": "y"}, "list of non-empty strings"),
    ({"output_names": ["x"], "input_names": ["x"]}, "must differ"),
])
def test_bad_options(options, pattern):
    pytest.importorskip("onnx")
    import fastrnn.onnx

    with pytest.raises(ArgumentError, match=pattern):
        fastrnn.onnx.export(nn.GRU(3, 4), None, np.zeros((2, 1, 3), np.float32), **options)


def test_layer_norm_needs_opset_17():
    pytest.importorskip("onnx")
    import fastrnn.onnx

    with pytest.raises(OnnxExportError, match="LayerNormalization.*opset 17"):
        fastrnn.onnx.export(nn.Sequential(nn.LayerNorm(3)), None, np.zeros((2, 3), np.float32), opset=16)


def test_missing_onnx_names_the_extra(monkeypatch):
    import builtins

    import fastrnn.onnx

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=re.escape('pip install "fastrnn[onnx]"')):
        fastrnn.onnx.export(nn.GRU(3, 4), None, np.zeros((2, 1, 3), np.float32))


def test_readme_round_trip_snippet(tmp_path, monkeypatch):
    """The README's ONNX export example (not run by test_readme: it needs onnxruntime) runs."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "fastrnn.onnx.export" in b]
    assert blocks, "README has no ONNX export example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
        expected = fastrnn_forward(namespace["model"], namespace["batch"], namespace["lengths"])
        assert_close(namespace["logits"], expected, TOLERANCE, "README example", "logits")


@pytest.mark.parametrize("merge_mode", ["concat", "mul", "ave", None])
def test_keras_bidirectional_merge_modes(runtimes, merge_mode):
    import fastrnn.onnx

    rng = np.random.default_rng(7)
    x = keras.Input((None, 3), name="x")
    merged = layers.Bidirectional(layers.LSTM(4, return_sequences=True, seed=0), merge_mode=merge_mode)(x)
    model = keras.Model(x, merged)
    proto = fastrnn.onnx.export(model, None, rows(rng, (2, 3, 3)))
    x = rows(rng, (3, 6, 3))
    assert_runs_as(runtimes(proto, {"x": x}), flat(model(x)), f"merge_mode={merge_mode}")


def test_int32_ids_and_float64_models(runtimes):
    import fastrnn.onnx

    rng = np.random.default_rng(8)
    model = classifier().double()
    tokens = rng.integers(0, 40, (2, 5)).astype(np.int32)
    proto = fastrnn.onnx.export(model, None, tokens)
    assert proto.graph.input[0].type.tensor_type.elem_type == 6  # int32, as given
    tokens = rng.integers(0, 40, (4, 7)).astype(np.int32)
    expected = fastrnn_forward(model, tokens).astype(np.float32)
    assert_runs_as(runtimes(proto, {"input": tokens}), [expected], "float64 model, int32 ids")


@pytest.mark.parametrize("cell, blocks", [("lstm", [0, 3, 1, 2]), ("gru", [1, 0, 2]), ("rnn", [0])])
def test_onnx_layout_reorders_pytorch_blocks(cell, blocks):
    """ONNX stacks LSTM gates i, o, f, c and GRU gates z, r, h (PyTorch: i, f, g, o and r, z, n)."""
    from fastrnn.onnx.layout import onnx_recurrent_weights

    rng = np.random.default_rng(9)
    G, H, D = len(blocks), 2, 3
    forward = {"w_ih": rng.standard_normal((G * H, D)), "w_hh": rng.standard_normal((G * H, H)),
               "b_ih": rng.standard_normal(G * H), "b_hh": None}
    reverse = {key: None if value is None else value + 1 for key, value in forward.items()}
    W, R, B = onnx_recurrent_weights(cell, [forward, reverse], dtype=np.float64)
    assert W.shape == (2, G * H, D) and R.shape == (2, G * H, H) and B.shape == (2, 2 * G * H)
    for d, weights in enumerate((forward, reverse)):
        for position, block in enumerate(blocks):
            rows_of = slice(position * H, (position + 1) * H)
            source = slice(block * H, (block + 1) * H)
            np.testing.assert_array_equal(W[d, rows_of], weights["w_ih"][source])
            np.testing.assert_array_equal(R[d, rows_of], weights["w_hh"][source])
            np.testing.assert_array_equal(B[d, rows_of], weights["b_ih"][source])
        np.testing.assert_array_equal(B[d, G * H:], 0)  # the missing recurrent bias
