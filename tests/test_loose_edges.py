"""Loose edges of issue 11 (item 6) in the facades and the reference backend.

The functional API's checks (boolean options, gradient dtypes, T=0 and B=0)
are in tests/conformance/test_errors.py; here are the same rules through
``fastrnn.nn`` and ``fastrnn.keras``, and the relu gradient's NaN semantics.
"""

import re

import numpy as np
import pytest

import fastrnn
from fastrnn import keras, nn
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import callbacks, layers, losses, optimizers
from tolerances import TORCH_PARITY

NOT_BOOLEANS = ["no", "", 1, 0, None, 1.0, np.array([True])]


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
@pytest.mark.parametrize("option", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("module", [nn.RNN, nn.LSTM, nn.GRU])
def test_nn_boolean_options(module, option, value):
    with pytest.raises(ArgumentError, match=rf"\b{option} must be True or False; got " + re.escape(repr(value))):
        module(3, 4, **{option: value})
    assert getattr(module(3, 4, **{option: np.bool_(True)}), option) is True


@pytest.mark.parametrize("value", ["no", 1, None])
def test_module_train_mode_is_boolean(value):
    with pytest.raises(ArgumentError, match=r"\bmode must be True or False"):
        nn.LSTM(3, 4).train(value)


KERAS_BOOLEAN_OPTIONS = [
    (layers.LSTM, "return_sequences"), (layers.LSTM, "return_state"), (layers.LSTM, "go_backwards"),
    (layers.LSTM, "stateful"), (layers.LSTM, "use_bias"), (layers.LSTM, "unit_forget_bias"),
    (layers.GRU, "reset_after"), (layers.SimpleRNN, "zero_output_for_mask"), (layers.Dense, "use_bias"),
]


@pytest.mark.parametrize("value", ["no", 1, None], ids=repr)
@pytest.mark.parametrize("layer, option", KERAS_BOOLEAN_OPTIONS, ids=lambda v: getattr(v, "__name__", v))
def test_keras_layer_boolean_options(layer, option, value):
    with pytest.raises(ArgumentError, match=rf"\b{option} must be True or False; got " + re.escape(repr(value))):
        layer(4, **{option: value})


@pytest.mark.parametrize("make", [
    lambda: layers.Embedding(5, 2, mask_zero="no"),
    lambda: optimizers.Adam(amsgrad="no"),
    lambda: optimizers.SGD(nesterov="no"),
    lambda: optimizers.RMSprop(centered="no"),
    lambda: losses.BinaryCrossentropy(from_logits="no"),
    lambda: callbacks.EarlyStopping(restore_best_weights="no"),
    lambda: callbacks.ModelCheckpoint("m.fastrnn", save_best_only="no"),
])
def test_other_keras_boolean_options(make):
    with pytest.raises(ArgumentError, match=r"must be True or False; got 'no'"):
        make()


def _keras_model(return_sequences):
    model = keras.Sequential([layers.LSTM(4, seed=0, return_sequences=return_sequences), layers.Dense(1, seed=1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_keras_zero_steps_without_sequences_is_a_clear_error(call):
    """There is no last step to return (this raised IndexError from inside the layer)."""
    x, y = np.zeros((4, 0, 3), np.float32), np.zeros((4, 1), np.float32)
    model = _keras_model(False)
    args = (x,) if call == "predict" else (x, y)
    with pytest.raises(ShapeError, match=r"x has no time steps \(shape \(4, 0, 3\)\).*T >= 1"):
        getattr(model, call)(*args, verbose=0)


def test_keras_zero_steps_with_sequences_works():
    model = _keras_model(True)
    x, y = np.zeros((4, 0, 3), np.float32), np.zeros((4, 0, 1), np.float32)
    before = model.get_weights()
    model.fit(x, y, verbose=0)
    assert model.predict(x, verbose=0).shape == (4, 0, 1)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_keras_zero_samples_is_a_clear_error(call):
    x, y = np.zeros((0, 5, 3), np.float32), np.zeros((0, 1), np.float32)
    args = (x,) if call == "predict" else (x, y)
    with pytest.raises(ShapeError, match="no samples"):
        getattr(_keras_model(False), call)(*args, verbose=0)


@pytest.mark.parametrize("shape", [(0, 2, 3), (4, 0, 3)], ids=["T=0", "B=0"])
@pytest.mark.parametrize("module", [nn.RNN, nn.LSTM, nn.GRU])
def test_nn_empty_input_gives_empty_results(module, shape):
    layer = module(3, 4)
    y, _ = layer(np.zeros(shape))
    assert y.shape == shape[:2] + (4,)
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == shape


def _relu_problem():
    """A relu RNN whose last output has zeros, and a dy with NaN and inf exactly at two of them."""
    rng = np.random.default_rng(7)
    T, B, D, H = 4, 3, 2, 6
    x = rng.normal(size=(T, B, D))
    w_ih, w_hh = rng.normal(size=(H, D)), rng.normal(size=(H, H)) * 0.3
    y, _, _ = fastrnn.rnn_forward(x, w_ih, w_hh, nonlinearity="relu", backend="python")
    zeros = np.argwhere(y[-1] == 0)
    assert len(zeros) >= 2
    dy = np.ones_like(y)
    dy[-1][tuple(zeros[0])] = np.nan
    dy[-1][tuple(zeros[1])] = np.inf
    return x, w_ih, w_hh, dy


def test_relu_gradient_ignores_nan_where_the_output_is_zero(any_backend):
    """``dy * (y > 0)`` as a selection: a NaN or inf in dy at a unit whose output is 0 gives 0."""
    x, w_ih, w_hh, dy = _relu_problem()
    _, _, cache = fastrnn.rnn_forward(x, w_ih, w_hh, nonlinearity="relu", backend=any_backend)
    grads = fastrnn.rnn_backward(cache, dy)
    for name in ("x", "w_ih", "w_hh", "h0"):
        assert np.isfinite(grads[name]).all(), name
    # the same as a dy with those entries zeroed
    clean = np.where(np.isfinite(dy), dy, 0)
    expected = fastrnn.rnn_backward(cache, clean)
    for name in ("x", "w_ih", "w_hh", "h0"):
        np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)


def test_relu_gradient_with_nan_matches_torch():
    torch = pytest.importorskip("torch")
    x, w_ih, w_hh, dy = _relu_problem()
    _, _, cache = fastrnn.rnn_forward(x, w_ih, w_hh, nonlinearity="relu", backend="python")
    grads = fastrnn.rnn_backward(cache, dy)
    rnn = torch.nn.RNN(x.shape[2], w_hh.shape[0], nonlinearity="relu", bias=False).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(w_ih))
        rnn.weight_hh_l0.copy_(torch.from_numpy(w_hh))
    x_torch = torch.from_numpy(x).requires_grad_(True)
    y_torch, _ = rnn(x_torch)
    y_torch.backward(torch.from_numpy(dy))
    tol = TORCH_PARITY[np.dtype(np.float64)]
    np.testing.assert_allclose(grads["x"], x_torch.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["w_hh"], rnn.weight_hh_l0.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["w_ih"], rnn.weight_ih_l0.grad.numpy(), **tol)


# --------------------------------------------------------------------------------------
# what the fuzz suite found: arguments that reached NumPy before any check of fastrnn's
# --------------------------------------------------------------------------------------
_X = np.ones((1, 3, 2), np.float32)
FUZZ_FINDINGS = {
    "nn seed str": (lambda: nn.LSTM(2, 3, seed="1"), ArgumentError, "seed"),
    "nn seed float": (lambda: nn.LSTM(2, 3, seed=1.5), ArgumentError, "seed"),
    "nn seed negative": (lambda: nn.GRU(2, 3, seed=-1), ArgumentError, "seed"),
    "keras seed str": (lambda: layers.SimpleRNN(2, seed="1"), ArgumentError, "seed"),
    "nn dtype unknown": (lambda: nn.GRU(2, 3, dtype="x"), fastrnn.DTypeError, "dtype"),
    "nn hx str": (lambda: nn.GRU(1, 1)(np.ones((2, 1, 1), np.float32), ""), fastrnn.DTypeError, "h0"),
    "nn hx complex": (lambda: nn.GRU(2, 2)(np.ones((3, 1, 2), np.float32), np.full((1, 1, 2), 1 + 5j)),
                      fastrnn.DTypeError, "h0"),
    "keras initial_state bool": (lambda: layers.GRU(2)(_X, initial_state=False), ArgumentError,
                                 "initial_state"),
    "keras initial_state int": (lambda: layers.GRU(2)(_X, initial_state=3), ArgumentError, "initial_state"),
    "keras initial_state 0-d": (lambda: layers.LSTM(1)(_X, initial_state=np.float64(1)), ArgumentError,
                                "initial_state"),
    "keras initial_state complex": (lambda: layers.GRU(2)(_X, initial_state=[np.full((1, 2), 1 + 5j)]),
                                    fastrnn.DTypeError, "initial_state"),
    "lstm_proj None weight": (
        lambda: fastrnn.functional._lstm_proj.lstm_proj_forward(
            np.zeros((2, 1, 3)), None, np.zeros((8, 1)), np.zeros((1, 2))),
        fastrnn.DTypeError, "w_ih"),
}


@pytest.mark.parametrize("case", sorted(FUZZ_FINDINGS))
def test_fuzz_findings_raise_fastrnn_errors_naming_the_argument(case):
    call, error, argument = FUZZ_FINDINGS[case]
    with pytest.raises(error, match=rf"\b{argument}\b"):
        call()


def test_valid_seeds_and_states_still_work():
    nn.LSTM(2, 3, seed=np.int64(3))
    generator = np.random.default_rng(1)
    assert nn.LSTM(2, 3, seed=generator).rng is generator
    assert layers.GRU(2)(_X, initial_state=np.zeros((1, 2))).shape == (1, 2)
    assert layers.GRU(2)(_X, initial_state=[np.zeros((1, 2), np.float64)]).shape == (1, 2)
