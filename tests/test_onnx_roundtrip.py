"""fastrnn model -> fastrnn.onnx.export -> fastrnn.onnx.load: the imported graph computes what the model does.

The recurrent nodes run on the same kernels with the same weights (reordered to ONNX's gate
order by the exporter and back by the importer, which moves values without changing them),
so outputs, final states and gradients of the recurrent layers (Keras's included, with their
masks), embeddings and linear layers are bit-equal to the model's own. Heads the graph computes
with other operations than the model (LayerNorm, GELU, Keras's masked average, Dense
activations) agree within float32 rounding (``FLOAT32_REORDERED``). Each model is exported on one batch and run on another of other
batch size and length (the dynamic axes).
"""

import numpy as np
import pytest

from fastrnn import keras, nn
from fastrnn.keras import layers
from helpers import assert_close, keras_initial_state_model, masked_keras_functional_model, padded_ids
from tolerances import FLOAT32_REORDERED

#: The kernels' blocks in ONNX's order (LSTM i, o, f, c of i, f, g, o; GRU z, r, h of r, z, n).
ONNX_BLOCKS = {"RNN": [0], "LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}


def _round_trip(model, example):
    pytest.importorskip("onnx")
    import fastrnn.onnx

    return fastrnn.onnx.load(fastrnn.onnx.export(model, None, example).SerializeToString())


def _assert_bit_equal(actual, expected, context):
    actual = actual if isinstance(actual, tuple) else (actual,)
    assert len(actual) == len(expected), f"{context}: {len(actual)} outputs, expected {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape and a.dtype == e.dtype, f"{context}: output {index} is {a.dtype}{a.shape}"
        assert np.array_equal(a, e), (f"{context}: output {index} is not bit-equal "
                                      f"(largest difference {np.abs(a - e).max()})")


def _flat(result):
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in _flat(item)]
    return [result]


NN_CASES = [
    (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu", "bidirectional": True}), (nn.LSTM, {}), (nn.GRU, {}),
    (nn.LSTM, {"bidirectional": True, "num_layers": 2}), (nn.GRU, {"bidirectional": True, "batch_first": True}),
    (nn.RNN, {"num_layers": 2, "bias": False, "batch_first": True}),
    (nn.LSTM, {"bidirectional": True, "bias": False, "batch_first": True}),
    (nn.GRU, {"num_layers": 2, "bidirectional": True}),
]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cls, options", NN_CASES,
                         ids=[f"{c.__name__}-" + ("-".join(f"{k}={v}" for k, v in o.items()) or "plain")
                              for c, o in NN_CASES])
def test_nn_recurrent_modules_bit_equal(cls, options, with_lengths):
    rng = np.random.default_rng(0)
    module = cls(3, 4, seed=1, **options).eval()
    batch_first = options.get("batch_first", False)

    def batch(T, B):
        return rng.standard_normal((B, T, 3) if batch_first else (T, B, 3)).astype(np.float32)

    example = (batch(4, 2), np.array([4, 2], np.int32)) if with_lengths else batch(4, 2)
    imported = _round_trip(module, example)
    x, lengths = batch(7, 4), np.array([7, 1, 0, 5], np.int32)
    context = f"{cls.__name__} {options} lengths={with_lengths}"
    if with_lengths:
        output, state = module(x, lengths=lengths)
        actual = imported(x, lengths)
    else:
        output, state = module(x)
        actual = imported(x)
    _assert_bit_equal(actual, [output, *(state if isinstance(state, tuple) else (state,))], context)


def test_nn_classifier_outputs_gradients_and_training_bit_equal():
    """Embedding -> bidirectional LSTM -> LastStep -> Linear with lengths: the imported graph's outputs and
    gradients equal the model's bit for bit, and so do both after an SGD step each."""
    import fastrnn.optim

    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Embedding(40, 6), nn.LSTM(6, 8, batch_first=True, bidirectional=True, seed=0),
                          nn.LastStep(batch_first=True), nn.Linear(16, 3, seed=0))
    imported = _round_trip(model, (rng.integers(0, 40, (3, 6)), np.array([6, 2, 4], np.int32)))
    tokens, lengths = rng.integers(0, 40, (5, 9)), np.array([9, 1, 3, 4, 8], np.int32)

    def forward(x):
        for module in model:
            x = module(x, lengths=lengths) if isinstance(module, (nn.LSTM, nn.LastStep)) else module(x)
        return x

    optimizers = [fastrnn.optim.SGD(model.parameters(), lr=0.3), fastrnn.optim.SGD(imported.parameters(), lr=0.3)]
    own = dict(model.named_parameters())
    for step in range(2):
        expected = forward(tokens)
        _assert_bit_equal(imported(tokens, lengths), [expected], f"classifier step {step}")
        grad = np.random.default_rng(step).standard_normal(expected.shape).astype(np.float32)
        model.backward(grad)
        imported.backward(grad)
        for name in ("0.weight", "3.weight", "3.bias"):
            _assert_bit_equal(imported._parameters[name].grad, [own[name].grad], f"d loss / d {name}")
        for onnx_name, stem in (("1.l0.W", "weight_ih"), ("1.l0.R", "weight_hh")):
            onnx_grad = imported._parameters[onnx_name].grad
            for d, suffix in enumerate(("", "_reverse")):
                torch_grad = own[f"1.{stem}_l0{suffix}"].grad
                reordered = torch_grad.reshape(4, 8, -1)[ONNX_BLOCKS["LSTM"]].reshape(torch_grad.shape)
                _assert_bit_equal(onnx_grad[d], [reordered], f"d loss / d {onnx_name}[{d}]")
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()


def test_nn_heads_and_activations():
    rng = np.random.default_rng(2)
    model = nn.Sequential(
        nn.GRU(4, 6, num_layers=2, seed=0), nn.TakeOutput(), nn.Dropout(0.3, seed=0), nn.Linear(6, 5, seed=1),
        nn.LayerNorm(5), nn.GELU(), nn.Linear(5, 5, bias=False, seed=2), nn.GELU(approximate="tanh"),
        nn.Identity(), nn.Tanh(), nn.Sequential(nn.ReLU(), nn.Sigmoid()), nn.LastStep(), nn.Softmax(dim=-1)).eval()
    imported = _round_trip(model, rng.standard_normal((4, 2, 4)).astype(np.float32))
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    assert_close(imported(x), model(x), FLOAT32_REORDERED, "heads and activations", "output")
    log_model = nn.Sequential(nn.Linear(4, 3, seed=0), nn.LogSoftmax(dim=1))
    imported = _round_trip(log_model, rng.standard_normal((2, 4)).astype(np.float32))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert_close(imported(x), log_model(x), FLOAT32_REORDERED, "log softmax", "output")


# Keras models -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell, options", [
    ("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu"}), ("LSTM", {}), ("GRU", {}),
    ("GRU", {"reset_after": False}),
], ids=["simple_rnn", "simple_rnn_relu", "lstm", "gru", "gru_reset_before"])
def test_keras_functional_with_mask(cell, options):
    rng = np.random.default_rng(4)
    model = masked_keras_functional_model(keras, layers, cell, options)
    imported = _round_trip(model, padded_ids(rng, 2, 5, 30, [5, 3]))
    tokens = padded_ids(rng, 4, 8, 30, [8, 2, 5, 1])
    expected = _flat(model(tokens))
    actual = imported(tokens)
    # the recurrent layers, the mask's lengths and the softmax head are bit-equal; the masked
    # average (a sum over the valid steps divided by their count in the graph) is rounded otherwise
    _assert_bit_equal(actual[:1] + actual[2:], expected[:1] + expected[2:], f"Keras {cell} {options}")
    assert_close(actual[1], expected[1], FLOAT32_REORDERED, f"Keras {cell} {options}", "pooled")


def test_keras_sequential_and_initial_states():
    rng = np.random.default_rng(5)
    model = keras.Sequential([
        layers.Embedding(50, 8, mask_zero=True, seed=0),
        layers.Bidirectional(layers.LSTM(6, return_sequences=True, seed=1)),
        layers.GRU(5, seed=2),
        layers.Dense(4, activation="relu", seed=3),
        layers.Dense(1, activation="sigmoid", seed=4),
    ])
    model.build((None, None))
    imported = _round_trip(model, padded_ids(rng, 2, 4, 50, [4, 2]))
    tokens = padded_ids(rng, 5, 7, 50, [7, 3, 1, 6, 4])
    assert_close(imported(tokens), model(tokens), FLOAT32_REORDERED, "Keras Sequential", "output")

    model = keras_initial_state_model(keras, layers)
    imported = _round_trip(model, [rng.standard_normal((2, 5, 3)).astype(np.float32),
                                   rng.standard_normal((2, 4)).astype(np.float32)])
    feeds = [rng.standard_normal((3, 8, 3)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)]
    for index, (a, e) in enumerate(zip(imported(*feeds), _flat(model(feeds)))):
        assert_close(a, e, FLOAT32_REORDERED, "Keras initial states", f"output {index}")


def test_readme_import_snippet(tmp_path, monkeypatch):
    """The README's ONNX import example, run after its export example in the same namespace."""
    import pathlib
    import re

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    export = [b for b in blocks if "fastrnn.onnx.export(" in b]
    load = [b for b in blocks if "fastrnn.onnx.load(" in b]
    assert len(export) == 1 and len(load) == 1, "README's ONNX export and import examples"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in export + load:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
    model, batch, lengths = namespace["model"], namespace["batch"], namespace["lengths"]
    x = batch
    for module in model:
        x = module(x, lengths=lengths) if isinstance(module, (nn.LSTM, nn.LastStep)) else module(x)
    imported = namespace["imported"]
    assert imported.input_names == ["input", "lengths"] and imported.output_names == ["output"]
    _assert_bit_equal(namespace["scores"], [x], "README import example")
    assert all(p.grad is not None for p in imported.parameters())
