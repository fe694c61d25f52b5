"""Packed-weights objects: validation as the forward functions', immutability, pickling, use in
place of the weights of the forward functions, and the nn modules' packed copies rebuilt when a
parameter changes."""

import pickle

import numpy as np
import pytest

import fastrnn
from fastrnn.functional._lstm_proj import lstm_proj_forward
from fastrnn.parameter import Parameter

D, H, P, B, T = 4, 6, 3, 2, 5


def lstm_weights(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, shape).astype(dtype) for shape in ((4 * H, D), (4 * H, H), (4 * H,), (4 * H,))]


def raised(function, *args, **kwargs):
    with pytest.raises(fastrnn.FastRNNError) as info:
        function(*args, **kwargs)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("change", ["w_hh_shape", "b_ih_shape", "mixed_dtype", "nan", "int", "w_ih_ndim"])
def test_pack_refuses_what_forward_refuses(change):
    w = lstm_weights()
    if change == "w_hh_shape":
        w[1] = w[1][:, :-1]
    elif change == "b_ih_shape":
        w[2] = w[2][:-1]
    elif change == "mixed_dtype":
        w[1] = w[1].astype(np.float64)
    elif change == "nan":
        w[3][2] = np.nan
    elif change == "int":
        w[0] = w[0].astype(np.int64)
    else:
        w[0] = w[0][None]
    x = np.zeros((1, 1, D), w[0].dtype if w[0].dtype.kind == "f" else np.float32)
    from_pack = raised(fastrnn.pack_lstm, *w)
    from_forward = raised(fastrnn.lstm_forward, x, *w)
    assert from_pack[0] is from_forward[0]
    names = [n for n in ("w_ih", "w_hh", "b_ih", "b_hh") if n in from_forward[1]]
    assert names and all(n in from_pack[1] for n in names), (from_pack, from_forward)


def test_pack_options_are_checked():
    w = lstm_weights()
    gru = [a[: 3 * H] for a in w[:1]] + [w[1][: 3 * H], w[2][: 3 * H], w[3][: 3 * H]]
    with pytest.raises(fastrnn.ArgumentError, match="nonlinearity"):
        fastrnn.pack_rnn(w[0][:H], w[1][:H, :H], nonlinearity="sigmoid")
    with pytest.raises(fastrnn.ArgumentError, match="reset_after"):
        fastrnn.pack_gru(*gru, reset_after="no")
    with pytest.raises(fastrnn.UnknownBackendError):
        fastrnn.pack_lstm(*w, backend="fortran")
    with pytest.raises(fastrnn.ShapeError, match="w_hr"):
        fastrnn.pack_lstm(w[0], w[1][:, :P], w_hr=np.zeros((H, H), np.float32))


def test_packed_objects_are_read_only_copies():
    w = lstm_weights()
    packed = fastrnn.pack_lstm(*w)
    before = packed.step(np.ones((B, D), np.float32))[0].copy()
    w[1][...] = 0  # the caller's arrays are copied
    assert np.array_equal(packed.step(np.ones((B, D), np.float32))[0], before)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        with pytest.raises(ValueError):
            getattr(packed, name)[...] = 1
    with pytest.raises(AttributeError, match="pack_lstm"):
        packed.hidden_size = 3
    with pytest.raises(AttributeError):
        del packed.weights
    with pytest.raises(TypeError):
        packed.weights["w_hh"] = w[1]
    assert (packed.input_size, packed.hidden_size, packed.dtype) == (D, H, np.float32)


@pytest.mark.parametrize("backend", ["cython", "numba", "python"])
def test_pickle_round_trip(backend):
    from conftest import require_backend

    require_backend(backend)
    x = np.random.default_rng(3).uniform(-1, 1, (B, D)).astype(np.float32)
    for packed in (fastrnn.pack_lstm(*lstm_weights(), backend=backend),
                   fastrnn.pack_lstm(lstm_lw := lstm_weights()[0], lstm_weights()[1][:, :P],
                                     w_hr=np.full((P, H), 0.1, np.float32), backend=backend),
                   fastrnn.pack_gru(*[a[: 3 * H] for a in lstm_weights()], reset_after=False,
                                    backend=backend),
                   fastrnn.pack_rnn(lstm_lw[:H], lstm_weights()[1][:H, :H], nonlinearity="relu",
                                    backend=backend)):
        for protocol in (2, pickle.HIGHEST_PROTOCOL):
            copy = pickle.loads(pickle.dumps(packed, protocol))
            assert type(copy) is type(packed) and copy.options == packed.options
            assert copy.backend == packed.backend
            a, b = packed.step(x)[0], copy.step(x)[0]
            assert np.array_equal(a, b)


def test_forward_functions_take_packed_weights():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (T, B, D)).astype(np.float32)
    w = lstm_weights()
    h0 = rng.uniform(-1, 1, (B, H)).astype(np.float32)
    y, (h, c), _ = fastrnn.lstm_forward(x, *w, h0=h0, requires_grad=False)
    y2, (h2, c2), cache = fastrnn.lstm_forward(x, fastrnn.pack_lstm(*w), h0=h0)
    assert np.array_equal(y, y2) and np.array_equal(c, c2) and cache is not None
    gru = [a[: 3 * H] for a in w]
    for reset_after in (True, False):
        packed = fastrnn.pack_gru(*gru, reset_after=reset_after)
        expected = fastrnn.gru_forward(x, *gru, reset_after=reset_after, requires_grad=False)[0]
        got = fastrnn.gru_forward(x, packed, reset_after=reset_after, requires_grad=False)[0]
        assert np.array_equal(got, expected)
    with pytest.raises(fastrnn.ArgumentError, match="reset_after"):
        fastrnn.gru_forward(x, fastrnn.pack_gru(*gru, reset_after=False))  # the default, True
    rnn = [w[0][:H], w[1][:H, :H]]
    packed = fastrnn.pack_rnn(*rnn, nonlinearity="relu")
    expected = fastrnn.rnn_forward(x, *rnn, nonlinearity="relu", requires_grad=False)[0]
    got = fastrnn.rnn_forward(x, packed, nonlinearity="relu", requires_grad=False)[0]
    assert np.array_equal(got, expected)
    with pytest.raises(fastrnn.ArgumentError, match="nonlinearity"):
        fastrnn.rnn_forward(x, packed)  # the default, tanh
    w_hr = rng.uniform(-0.5, 0.5, (P, H)).astype(np.float32)
    proj = fastrnn.pack_lstm(w[0], w[1][:, :P], w[2], w[3], w_hr=w_hr)
    expected = lstm_proj_forward(x, w[0], w[1][:, :P], w_hr, w[2], w[3], requires_grad=False)[0]
    assert np.array_equal(lstm_proj_forward(x, proj, requires_grad=False)[0], expected)


def test_forward_with_packed_weights_refuses_extra_weights_and_other_cells():
    x = np.zeros((T, B, D), np.float32)
    w = lstm_weights()
    packed = fastrnn.pack_lstm(*w)
    with pytest.raises(fastrnn.ArgumentError, match="w_hh must be omitted"):
        fastrnn.lstm_forward(x, packed, np.zeros((B, H), np.float32))  # h0 given positionally
    with pytest.raises(fastrnn.ArgumentError, match="b_hh must be omitted"):
        fastrnn.lstm_forward(x, packed, b_hh=w[3])
    with pytest.raises(fastrnn.ArgumentError, match="pack_gru"):
        fastrnn.gru_forward(x, packed)
    with pytest.raises(fastrnn.ArgumentError, match="lstm_proj_forward"):
        fastrnn.lstm_forward(x, fastrnn.pack_lstm(w[0], w[1][:, :P], w_hr=np.zeros((P, H), np.float32)))
    with pytest.raises(fastrnn.ArgumentError, match="lstm_forward"):
        lstm_proj_forward(x, packed)


# ---- nn modules

@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_module_step_follows_parameter_changes(name):
    from fastrnn.optim import SGD

    module = getattr(fastrnn.nn, name)(D, H, seed=0)
    x = np.random.default_rng(5).uniform(-1, 1, (T, B, D)).astype(np.float32)

    def last_step_output():
        state = None
        for t in range(T):
            y_t, state = module.step(x[t], state)
        return y_t

    def forward_output():
        with fastrnn.nn.no_grad():
            return module(x)[0][-1]

    first = last_step_output()
    np.testing.assert_allclose(first, forward_output(), rtol=2e-5, atol=2e-6)
    packed = module._packed_weights()
    assert module._packed_weights() is packed  # unchanged parameters: no repacking

    for p in module.parameters():
        p.grad = np.full_like(p.data, 0.5)
    SGD(module.parameters(), lr=0.1).step()
    after_sgd = last_step_output()
    assert not np.array_equal(after_sgd, first)
    np.testing.assert_allclose(after_sgd, forward_output(), rtol=2e-5, atol=2e-6)

    other = getattr(fastrnn.nn, name)(D, H, seed=1)
    module.load_state_dict(other.state_dict())
    loaded = last_step_output()
    assert np.array_equal(loaded, _steps(other, x))

    module.weight_hh_l0 = Parameter(np.zeros_like(module.weight_hh_l0.data))
    assigned = last_step_output()
    np.testing.assert_allclose(assigned, forward_output(), rtol=2e-5, atol=2e-6)

    module.bias_ih_l0.data[...] = 1.0  # in place, as PyTorch users write: reading data counts
    np.testing.assert_allclose(last_step_output(), forward_output(), rtol=2e-5, atol=2e-6)


def _steps(module, x):
    state = None
    for t in range(x.shape[0]):
        y_t, state = module.step(x[t], state)
    return y_t


def test_module_step_with_projection_and_dtype():
    module = fastrnn.nn.LSTM(D, H, proj_size=P, dtype=np.float64, seed=0)
    x = np.random.default_rng(6).uniform(-1, 1, (T, B, D))
    with fastrnn.nn.no_grad():
        out, (h_n, c_n) = module(x)
    state = None
    for t in range(T):
        y_t, state = module.step(x[t].tolist(), state)
    np.testing.assert_allclose(y_t, out[-1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state[1], c_n[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kwargs", [{"num_layers": 2}, {"bidirectional": True}])
def test_module_step_refuses_stacks_and_reverse_directions(kwargs):
    module = fastrnn.nn.GRU(D, H, **kwargs)
    with pytest.raises(fastrnn.ArgumentError, match="single-layer, unidirectional"):
        module.step(np.zeros((B, D), np.float32))


def test_parameter_version_moves_on_every_possible_write_and_not_on_reads_of_values():
    p = Parameter(np.zeros(3))
    v = p.version
    p.data -= 1.0  # a read of data (it may be written), then an assignment
    assert p.version > v
    v = p.version
    p.data = np.ones(3)
    assert p.version > v
    v = p.version
    p.data[0] = 5.0  # in place, as PyTorch users write
    assert p.version > v
    v = p.version
    p.mark_changed()
    assert p.version > v
    v = p.version
    assert np.array_equal(p.values, [5.0, 1.0, 1.0]) and p.shape == (3,) and p.dtype == np.float64
    assert p.version == v
    with pytest.raises(ValueError):
        p.values[0] = 0.0  # values is read-only: a write must go through data
    copy = pickle.loads(pickle.dumps(p))
    assert np.array_equal(copy.values, p.values)


# ---- the forward of nn modules and Keras layers on packed weights: every write path repacks

def _fresh_nn_output(module, name, x):
    """The output of a newly built module with ``module``'s current weights (nothing packed
    before: an independent computation)."""
    fresh = getattr(fastrnn.nn, name)(D, H, num_layers=2, bidirectional=True, seed=9)
    fresh.load_state_dict(module.state_dict())
    with fastrnn.nn.no_grad():
        return fresh(x)[0]


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_module_forward_follows_every_write_path(name):
    from fastrnn.optim import SGD, Adam, RMSprop

    module = getattr(fastrnn.nn, name)(D, H, num_layers=2, bidirectional=True, seed=0)
    x = np.random.default_rng(7).uniform(-1, 1, (T, B, D)).astype(np.float32)

    def output():
        with fastrnn.nn.no_grad():
            return module(x)[0]

    previous = output()
    packed = module._packed_weights(1, 1)
    output()
    assert module._packed_weights(1, 1) is packed  # unchanged parameters: no repacking

    def check(path):
        nonlocal previous
        got = output()
        assert not np.array_equal(got, previous), f"{path}: the weights did not change"
        assert np.array_equal(got, _fresh_nn_output(module, name, x)), f"{path}: stale packed weights"
        previous = got

    for optimizer in (SGD, Adam, RMSprop):
        module(x)  # a training forward and backward, then the optimizer's step
        module.backward(np.ones_like(previous))
        optimizer(module.parameters(), lr=0.05).step()
        check(optimizer.__name__)
    other = getattr(fastrnn.nn, name)(D, H, num_layers=2, bidirectional=True, seed=1)
    module.load_state_dict(other.state_dict())
    check("load_state_dict")
    module.weight_hh_l1_reverse.data = module.weight_hh_l1_reverse.data * 0.5
    check("assigning data")
    module.weight_ih_l0 = Parameter(module.weight_ih_l0.data[::-1].copy())
    check("replacing a parameter")
    module.bias_hh_l1.data[...] += 0.25  # in place, as PyTorch users write
    check("writing into data in place")
    held = module.bias_hh_l0.data  # a reference taken before the next forward packs...
    previous = output()
    held += 0.25  # ...then written through: fastrnn cannot see this one...
    module.bias_hh_l0.mark_changed()  # ...unless it is announced
    check("mark_changed")


def _keras_model(cell, seed):
    from fastrnn import keras
    from fastrnn.keras import layers

    layer = getattr(layers, cell)(H, return_sequences=True, seed=seed)
    model = keras.Sequential([keras.Input((T, D)), layers.Bidirectional(layer),
                              getattr(layers, cell)(H, seed=seed + 1)])
    model.compile(loss="mse", optimizer="adam")
    return model


def _fresh_keras_output(model, cell, x):
    fresh = _keras_model(cell, 9)
    fresh.set_weights(model.get_weights())
    return fresh.predict(x, verbose=0)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_keras_forward_follows_every_write_path(cell, tmp_path):
    from fastrnn import keras

    model = _keras_model(cell, 0)
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (B, T, D)).astype(np.float32)
    target = rng.uniform(-1, 1, (B, H)).astype(np.float32)
    previous = model.predict(x, verbose=0)
    layer = model.layers[-1]
    packed = layer._packed_weights()
    model.predict(x, verbose=0)
    assert layer._packed_weights() is packed  # unchanged weights: no repacking

    def check(path, got=None):
        nonlocal previous
        got = model.predict(x, verbose=0) if got is None else got
        assert not np.array_equal(got, previous), f"{path}: the weights did not change"
        assert np.array_equal(got, _fresh_keras_output(model, cell, x)), f"{path}: stale packed weights"
        previous = got

    model.train_on_batch(x, target)  # the Keras optimizer's step
    check("train_on_batch")
    model.set_weights([w * 0.5 for w in model.get_weights()])
    check("set_weights")
    layer.recurrent_kernel.data = layer.recurrent_kernel.data[::-1].copy()
    check("assigning data")
    model.save(tmp_path / "model.fastrnn")
    loaded = keras.load_model(tmp_path / "model.fastrnn")
    assert np.array_equal(loaded.predict(x, verbose=0), previous), "load_model"
    loaded.predict(x, verbose=0)  # packed now; loading new weights into it must repack
    loaded.set_weights([w + 0.125 for w in loaded.get_weights()])
    model.set_weights(loaded.get_weights())
    check("set_weights after a forward", loaded.predict(x, verbose=0))
