"""fastrnn.nn modules without torch: gradients by finite differences, variable lengths
against rows run alone, streaming in chunks, dropout determinism, parameters and
state dicts, gradient accumulation, no_grad, and every error a caller can cause."""

import numpy as np
import pytest

import fastrnn.nn as fnn
from fastrnn import keras
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from helpers import assert_close, central_differences
from tolerances import FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, INVARIANT

CELLS = {"RNN": fnn.RNN, "LSTM": fnn.LSTM, "GRU": fnn.GRU}
T, B, D, H = 5, 3, 4, 6


def loss_and_gradient_directions(module, x, lengths, rng):
    """A scalar loss sum(w * output) + sum(v * h_n) and its weights."""
    output, state = module(x, lengths=lengths)
    h_n = state[0] if isinstance(state, tuple) else state
    w = rng.standard_normal(output.shape)
    v = rng.standard_normal(h_n.shape)
    return w, v


@pytest.mark.parametrize("cell", CELLS)
def test_parameter_gradients_equal_finite_differences(cell):
    """Stacked, bidirectional, variable lengths, float64: every parameter's .grad against
    central differences of the loss (a few entries each)."""
    module = CELLS[cell](D, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, D))
    lengths = [5, 2, 3]
    w, v = loss_and_gradient_directions(module, x, lengths, rng)

    def loss():
        # central_differences writes into the parameters' arrays: say so, as code writing
        # into ``data`` must (the module keeps its weights packed, Parameter.version)
        for parameter in module.parameters():
            parameter.mark_changed()
        with fnn.no_grad():
            output, state = module(x, lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state
        return float((w * output).sum() + (v * h_n).sum())

    module(x, lengths=lengths)
    d_x = module.backward(w, v)
    for name, parameter in module.named_parameters():
        flat = parameter.data.reshape(-1)
        indices = rng.choice(flat.size, size=3, replace=False)
        numerics = central_differences(loss, flat, FINITE_DIFFERENCE_STEP, indices=indices)
        for index in indices:
            numeric = numerics[index]
            assert abs(parameter.grad.reshape(-1)[index] - numeric) < FINITE_DIFFERENCE["rtol"] * max(1, abs(numeric)), (
                f"{cell} {name}[{index}]")
    # padded inputs do not reach the outputs, so their gradient is exactly zero
    assert np.all(d_x[2:, 1] == 0) and np.all(d_x[3:, 2] == 0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_equal_each_row_run_alone(cell, bidirectional):
    module = CELLS[cell](D, H, num_layers=2, bidirectional=bidirectional, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, D))
    lengths = np.array([3, 5, 1])
    output, state = module(x, lengths=lengths)
    h_n = state[0] if isinstance(state, tuple) else state
    for b, length in enumerate(lengths):
        alone, alone_state = module(x[:length, b:b + 1])
        alone_h = alone_state[0] if isinstance(alone_state, tuple) else alone_state
        assert_close(output[:length, b], alone[:, 0], INVARIANT[np.dtype(np.float64)], cell, "output")
        assert np.all(output[length:, b] == 0)
        assert_close(h_n[:, b], alone_h[:, 0], INVARIANT[np.dtype(np.float64)], cell, "h_n")


@pytest.mark.parametrize("cell", CELLS)
def test_streaming_in_chunks_equals_one_call(cell):
    """Truncated BPTT's forward: the state carried between chunks gives the whole sequence."""
    module = CELLS[cell](D, H, num_layers=2, dtype=np.float64, seed=5)
    x = np.random.default_rng(6).standard_normal((12, B, D))
    whole, whole_state = module(x)
    state, pieces = None, []
    for start in range(0, 12, 5):
        out, state = module(x[start:start + 5], state)
        pieces.append(out)
    assert_close(np.concatenate(pieces), whole, INVARIANT[np.dtype(np.float64)], cell, "output")
    for a, b in zip(np.atleast_1d(state) if cell != "LSTM" else state,
                    np.atleast_1d(whole_state) if cell != "LSTM" else whole_state):
        assert_close(a, b, INVARIANT[np.dtype(np.float64)], cell, "state")


def test_same_seed_same_weights_and_dropout_masks():
    a = fnn.LSTM(D, H, num_layers=3, dropout=0.3, seed=42)
    b = fnn.LSTM(D, H, num_layers=3, dropout=0.3, seed=42)
    c = fnn.LSTM(D, H, num_layers=3, dropout=0.3, seed=43)
    x = np.random.default_rng(0).standard_normal((T, B, D)).astype(np.float32)
    assert all(np.array_equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert np.array_equal(a(x)[0], b(x)[0])
    assert not np.array_equal(a(x)[0], c(x)[0])


def test_initialisation_is_uniform_within_one_over_sqrt_hidden():
    module = fnn.GRU(D, 400, seed=0)
    bound = 1 / np.sqrt(400)
    values = np.concatenate([p.data.ravel() for p in module.parameters()])
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.95 * bound and values.max() > 0.95 * bound
    assert abs(values.mean()) < 0.01 * bound


def test_parameter_names_follow_torch():
    module = fnn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=2)
    names = [name for name, _ in module.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert names[5] == "weight_ih_l0_reverse"
    assert dict(module.named_parameters())["weight_ih_l1"].shape == (4 * H, 2 * 2)
    assert dict(module.named_parameters())["weight_hh_l1_reverse"].shape == (4 * H, 2)


def test_gradients_accumulate_until_zero_grad():
    module = fnn.GRU(D, H, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((T, B, D))
    d = np.ones((T, B, H))
    module(x)
    module.backward(d)
    first = {name: p.grad.copy() for name, p in module.named_parameters()}
    module(x)
    module.backward(d)
    for name, p in module.named_parameters():
        assert_close(p.grad, 2 * first[name], INVARIANT[np.dtype(np.float64)], "GRU", name)
    module.zero_grad()
    assert all(p.grad is None for p in module.parameters())


def test_no_grad_keeps_no_cache():
    module = fnn.RNN(D, H)
    with fnn.no_grad():
        module(np.zeros((T, B, D), np.float32))
    with pytest.raises(ArgumentError, match="backward"):
        module.backward(np.zeros((T, B, H), np.float32))


def test_load_state_dict_names_missing_unexpected_and_misshaped_keys():
    module = fnn.RNN(D, H)
    state = module.state_dict()
    del state["bias_hh_l0"]
    state["weight_ih_l1"] = np.zeros((H, H))
    with pytest.raises(ArgumentError, match=r"missing key\(s\): 'bias_hh_l0'.*unexpected key\(s\): 'weight_ih_l1'"):
        module.load_state_dict(state)
    state = module.state_dict()
    state["weight_hh_l0"] = np.zeros((H, H + 1))
    with pytest.raises(ShapeError, match=r"'weight_hh_l0': expected shape \(6, 6\), got \(6, 7\)"):
        module.load_state_dict(state)
    missing, unexpected = module.load_state_dict({"weight_ih_l0": np.ones((H, D))}, strict=False)
    assert "weight_hh_l0" in missing and unexpected == []
    assert np.all(module.weight_ih_l0.data == 1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dropout=1.0), "dropout must be a probability in \\[0, 1\\); got 1.0"),
    (dict(dropout=-0.1), "dropout"),
    (dict(num_layers=0), "num_layers must be a positive integer; got 0"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(proj_size=6), "proj_size must be smaller than hidden_size = 6; got 6"),
    (dict(dtype=np.int32), "dtype must be float32 or float64"),
])
def test_constructor_errors(kwargs, match):
    arguments = dict(input_size=D, hidden_size=H)
    arguments.update(kwargs)
    with pytest.raises((ArgumentError, DTypeError), match=match):
        fnn.LSTM(**arguments)


@pytest.mark.parametrize("make", [lambda dtype: fnn.LSTM(D, H, dtype=dtype),
                                  lambda dtype: keras.layers.LSTM(H, dtype=dtype),
                                  lambda dtype: keras.layers.Dense(H, dtype=dtype)],
                         ids=["nn", "keras-lstm", "keras-dense"])
def test_dtype_none_means_float32_and_others_are_refused_by_name(make):
    # torch.nn modules and Keras layers both read dtype=None as float32 (torch's default dtype,
    # Keras's floatx); NumPy alone would read it as float64.
    assert make(None).dtype == np.float32
    assert make("float64").dtype == np.float64
    for bad in ("x", np.float16, "int32", 3):
        with pytest.raises(DTypeError, match=r"^dtype must be float32 or float64; got "):
            make(bad)


def test_rnn_nonlinearity_error():
    with pytest.raises(ArgumentError, match="nonlinearity must be 'tanh' or 'relu'; got 'sigmoid'"):
        fnn.RNN(D, H, nonlinearity="sigmoid")


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m(np.zeros((T, B, D + 1), np.float32)), ShapeError, "input_size = 4 features"),
    (lambda m: m(np.zeros((T, B, 1, D), np.float32)), ShapeError, "input must have shape"),
    (lambda m: m(np.zeros((T, B, D), np.int64)), DTypeError, "input must be a float array"),
    (lambda m: m(np.zeros((T, B, D)), (np.zeros((2, B, H)), np.zeros((4, B, H)))), ShapeError,
     r"h0 must have shape \(4, 3, 6\)"),
    (lambda m: m(np.zeros((T, B, D)), np.zeros((4, B, H))), ArgumentError, "pair"),
    (lambda m: m(np.zeros((T, B, D)), lengths=[T + 1, 1, 1]), ArgumentError,
     r"lengths must lie in \[0, T\] = \[0, 5\]; got \[6\]"),
    (lambda m: m(np.zeros((T, B, D)), lengths=[-1, 1, 1]), ArgumentError, "got \\[-1\\]"),
    (lambda m: m(np.zeros((T, B, D)), lengths=[1, 1]), ShapeError, r"lengths must have shape \(3,\)"),
    (lambda m: m(np.zeros((T, D)), lengths=[1]), ShapeError, "unbatched"),
])
def test_forward_errors(call, error, match):
    module = fnn.LSTM(D, H, num_layers=2, bidirectional=True)
    with pytest.raises(error, match=match):
        call(module)


def test_backward_gradient_shape_errors():
    module = fnn.GRU(D, H, batch_first=True)
    module(np.zeros((B, T, D), np.float32))
    with pytest.raises(ShapeError, match=r"d_output must have shape \(3, 5, 6\)"):
        module.backward(np.zeros((T, B, H)))
    with pytest.raises(ArgumentError, match="d_c_n is for LSTM only"):
        module.backward(np.zeros((B, T, H)), None, np.zeros((1, B, H)))
