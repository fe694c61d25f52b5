"""The user-facing API of bf16 and int8 inference: ``precision=`` on the packers and the
functional forwards, nn modules, Keras layers and models, :func:`fastrnn.quantize`, and
the errors a user can cause.

The numbers themselves are tested in ``test_precision.py``; here the results are compared
with the functional forward in the same precision on the same weights (an independent path
through the API), and with float32 to see that the precision was applied at all.
"""

import pickle

import numpy as np
import pytest

import fastrnn
from fastrnn import nn
from fastrnn.exceptions import ArgumentError, BackendUnavailableError, DTypeError
from fastrnn.functional._lstm_proj import lstm_proj_forward
from tolerances import INVARIANT, REDUCED_DIFFERS_FROM_FLOAT32

PRECISIONS = ("bf16", "int8")


@pytest.fixture(autouse=True)
def _quiet_reference_fallback(recwarn):
    """Without the compiled reduced kernels, ``auto`` runs the reference and warns once."""
    yield


def lstm_weights(rng, D=5, H=6, dtype=np.float32):
    bound = 1 / np.sqrt(H)
    return [rng.uniform(-bound, bound, shape).astype(dtype)
            for shape in [(4 * H, D), (4 * H, H), (4 * H,), (4 * H,)]]


def differs_from(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() > REDUCED_DIFFERS_FROM_FLOAT32


# ---- the functional API and the packers

@pytest.mark.parametrize("call", ["rnn_forward", "lstm_forward", "gru_forward", "pack_rnn",
                                  "pack_lstm", "pack_gru"])
def test_unknown_precision_names_the_argument_and_the_choices(call):
    rng = np.random.default_rng(0)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[call.split("_")[-1] if call.startswith("pack") else call.split("_")[0]]
    w_ih = rng.standard_normal((G * 4, 3)).astype(np.float32)
    w_hh = rng.standard_normal((G * 4, 4)).astype(np.float32)
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    function = getattr(fastrnn, call)
    args = (w_ih, w_hh) if call.startswith("pack") else (x, w_ih, w_hh)
    for bad in ("int4", "fp16", 8, None if call.startswith("pack") else "INT8"):
        with pytest.raises(ArgumentError, match=r"precision must be one of 'float32', 'bf16', 'int8'"):
            function(*args, precision=bad, **({} if call.startswith("pack") else {"requires_grad": False}))


def test_unknown_precision_on_the_projected_lstm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    w_ih, w_hh, w_hr = (rng.standard_normal(s).astype(np.float32) for s in [(16, 3), (16, 2), (2, 4)])
    with pytest.raises(ArgumentError, match="precision must be one of"):
        lstm_proj_forward(x, w_ih, w_hh, w_hr, precision="int7", requires_grad=False)


def test_training_in_int8_is_refused():
    # bf16 trains (tests/test_bf16_training.py); int8 has no backward pass
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    weights = lstm_weights(rng)
    message = r"precision='int8' is inference only.*requires_grad=False.*'bf16' or 'float32'"
    with pytest.raises(ArgumentError, match=message):
        fastrnn.lstm_forward(x, *weights, precision="int8")  # requires_grad defaults to True
    packed = fastrnn.pack_lstm(*weights, precision="int8")
    with pytest.raises(ArgumentError, match=message):
        fastrnn.lstm_forward(x, packed, requires_grad=True)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_float64_in_reduced_precision_is_a_dtype_error(precision):
    rng = np.random.default_rng(3)
    weights64 = lstm_weights(rng, dtype=np.float64)
    x64 = rng.standard_normal((3, 2, 5))
    with pytest.raises(DTypeError, match=r"computes in float32.*float64"):
        fastrnn.lstm_forward(x64, *weights64, precision=precision, requires_grad=False)
    with pytest.raises(DTypeError, match=r"computes in float32.*float64"):
        fastrnn.pack_lstm(*weights64, precision=precision)
    # float32 weights packed, float64 input: the inputs must share the weights' dtype
    packed = fastrnn.pack_lstm(*[w.astype(np.float32) for w in weights64], precision=precision)
    with pytest.raises(DTypeError):
        fastrnn.lstm_forward(x64, packed, requires_grad=False)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_numba_has_no_reduced_kernels(precision):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    weights = lstm_weights(rng)
    with pytest.raises(BackendUnavailableError) as error:
        fastrnn.lstm_forward(x, *weights, precision=precision, requires_grad=False, backend="numba")
    with pytest.raises(BackendUnavailableError):
        fastrnn.pack_lstm(*weights, precision=precision, backend="numba")
    if "numba" in fastrnn.available_backends():  # loaded: the message says what is missing
        assert "bf16/int8" in str(error.value)
    with fastrnn.use_backend("numba"), pytest.raises(BackendUnavailableError):
        fastrnn.lstm_forward(x, *weights, precision=precision, requires_grad=False)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_auto_runs_reduced_precision_on_a_backend_that_has_it(precision):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    weights = lstm_weights(rng)
    packed = fastrnn.pack_lstm(*weights, precision=precision)
    assert packed.backend in ("cython", "python")
    expected = fastrnn.lstm_forward(x, *weights, precision=precision, requires_grad=False,
                                    backend=packed.backend)[0]
    assert np.array_equal(fastrnn.lstm_forward(x, packed, requires_grad=False)[0], expected)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_packed_weights_carry_their_precision(precision):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    weights = lstm_weights(rng)
    packed = fastrnn.pack_lstm(*weights, precision=precision, backend="python")
    assert packed.precision == precision
    assert f"precision={precision!r}" in repr(packed)
    assert fastrnn.pack_lstm(*weights).precision == "float32"
    assert "precision='float32'" in repr(fastrnn.pack_lstm(*weights))
    # the float32 weights are kept as given: packing converted a copy
    for name, given in zip(("w_ih", "w_hh", "b_ih", "b_hh"), weights):
        assert np.array_equal(packed.weights[name], given)
    y, (h_n, c_n), cache = fastrnn.lstm_forward(x, packed, requires_grad=False, backend="python")
    assert cache is None
    # the same as passing the arrays with precision=, and not float32's
    y_arrays = fastrnn.lstm_forward(x, *weights, precision=precision, requires_grad=False,
                                    backend="python")[0]
    assert np.array_equal(y, y_arrays)
    assert differs_from(y, fastrnn.lstm_forward(x, *weights, requires_grad=False)[0])
    # precision= on a packed call may repeat the packed one, not contradict it
    assert np.array_equal(fastrnn.lstm_forward(x, packed, requires_grad=False, precision=precision,
                                               backend="python")[0], y)
    with pytest.raises(ArgumentError, match="differs from the packed weights"):
        fastrnn.lstm_forward(x, packed, requires_grad=False, precision="float32")
    # converted once: the same reduced layer at every call
    assert packed.reduced_layer("python") is packed.reduced_layer("python")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_packed_weights_pickle_with_their_precision(precision):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    H = 5
    packs = [fastrnn.pack_rnn(rng.uniform(-.4, .4, (H, 3)).astype(np.float32),
                              rng.uniform(-.4, .4, (H, H)).astype(np.float32),
                              nonlinearity="relu", precision=precision),
             fastrnn.pack_gru(rng.uniform(-.4, .4, (3 * H, 3)).astype(np.float32),
                              rng.uniform(-.4, .4, (3 * H, H)).astype(np.float32),
                              reset_after=False, precision=precision),
             fastrnn.pack_lstm(*lstm_weights(rng, D=3, H=H), precision=precision)]
    for packed, forward, options in zip(packs, (fastrnn.rnn_forward, fastrnn.gru_forward,
                                                fastrnn.lstm_forward),
                                        ({"nonlinearity": "relu"}, {"reset_after": False}, {})):
        again = pickle.loads(pickle.dumps(packed))
        assert type(again) is type(packed) and again.precision == precision
        assert repr(again) == repr(packed)
        a = forward(x, packed, requires_grad=False, **options)[0]
        b = forward(x, again, requires_grad=False, **options)[0]
        assert np.array_equal(a, b)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_packed_step_runs_in_every_precision(precision):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    weights = lstm_weights(rng)
    packed = fastrnn.pack_lstm(*weights, precision=precision)
    y_t, (h, c) = packed.step(x[0])
    y, (h_n, c_n), _ = fastrnn.lstm_forward(x, packed, requires_grad=False)
    np.testing.assert_allclose(y_t, y[0], **INVARIANT[np.dtype(np.float32)])
    np.testing.assert_allclose(c, c_n, **INVARIANT[np.dtype(np.float32)])
    with pytest.raises(DTypeError):
        packed.step(x[0].astype(np.float64), (h, c))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_empty_sequences_in_reduced_precision(precision):
    rng = np.random.default_rng(9)
    weights = lstm_weights(rng)
    h0 = rng.standard_normal((2, 6)).astype(np.float32)
    y, (h_n, c_n), _ = fastrnn.lstm_forward(np.empty((0, 2, 5), np.float32), *weights, h0=h0,
                                            precision=precision, requires_grad=False)
    assert y.shape == (0, 2, 6) and np.array_equal(h_n, h0) and not c_n.any()


# ---- nn modules

def functional_stack(module, x, precision):
    """A multi-layer, bidirectional nn module recomputed with the functional forwards."""
    layer_input = x
    for layer in range(module.num_layers):
        outputs = []
        for direction in range(module.num_directions):
            w = {key: p for key, p in module._weights(layer, direction).items() if p is not None}
            source = layer_input[::-1] if direction else layer_input
            source = np.ascontiguousarray(source)
            if module.proj_size:
                y = lstm_proj_forward(source, **w, requires_grad=False, precision=precision)[0]
            elif isinstance(module, nn.LSTM):
                y = fastrnn.lstm_forward(source, **w, requires_grad=False, precision=precision)[0]
            elif isinstance(module, nn.GRU):
                y = fastrnn.gru_forward(source, **w, requires_grad=False, precision=precision)[0]
            else:
                y = fastrnn.rnn_forward(source, **w, requires_grad=False, precision=precision,
                                        nonlinearity=module.nonlinearity)[0]
            outputs.append(y[::-1] if direction else y)
        layer_input = np.concatenate(outputs, axis=2)
    return layer_input


@pytest.mark.parametrize("make", [
    lambda p: nn.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, seed=0, precision=p),
    lambda p: nn.GRU(5, 8, num_layers=2, bidirectional=True, seed=0, precision=p),
    lambda p: nn.RNN(5, 8, nonlinearity="relu", seed=0, precision=p),
    lambda p: nn.LSTM(5, 8, seed=0, precision=p),
], ids=["lstm-proj-bi-2", "gru-bi-2", "rnn-relu", "lstm"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_nn_eval_forward_equals_the_functional_forward(precision, make):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    module = make(precision).eval()
    assert module.precision == precision and f"precision={precision!r}" in repr(module)
    output, _ = module(x)
    assert np.array_equal(output, functional_stack(module, x, precision))
    module.precision = "float32"
    assert differs_from(output, module(x)[0])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_nn_lengths_and_the_final_states(precision):
    rng = np.random.default_rng(11)
    module = nn.GRU(4, 6, bidirectional=True, seed=1, precision=precision).eval()
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    lengths = np.array([5, 2, 0])
    output, h_n = module(x, lengths=lengths)
    for b, L in enumerate(lengths):  # each row alone, cut to its length
        alone, h_alone = module(x[:L, b:b + 1]) if L else (None, None)
        if L:
            np.testing.assert_allclose(output[:L, b], alone[:, 0], **INVARIANT[np.dtype(np.float32)])
            np.testing.assert_allclose(h_n[:, b], h_alone[:, 0], **INVARIANT[np.dtype(np.float32)])
        assert not output[L:, b].any()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_nn_eval_mode_in_reduced_precision_keeps_nothing(precision):
    module = nn.LSTM(3, 4, seed=0, precision=precision)
    x = np.zeros((2, 1, 3), np.float32)
    if precision == "int8":  # bf16 trains (tests/test_bf16_training.py)
        with pytest.raises(ArgumentError, match=r"'int8' is inference only.*eval\(\).*'bf16'"):
            module(x)
    module.eval()
    module(x)
    with pytest.raises(ArgumentError, match="backward"):  # nothing was kept for it
        module.backward(np.zeros((2, 1, 4), np.float32))


def test_nn_precision_errors():
    with pytest.raises(ArgumentError, match="precision must be one of"):
        nn.GRU(3, 4, precision="int4")
    module = nn.GRU(3, 4).eval()
    module.precision = "fp8"
    with pytest.raises(ArgumentError, match="precision must be one of"):
        module(np.zeros((2, 1, 3), np.float32))
    module64 = nn.GRU(3, 4, dtype=np.float64, precision="int8").eval()
    with pytest.raises(DTypeError, match="float32"):
        module64(np.zeros((2, 1, 3)))
    with pytest.raises(DTypeError, match="float32"):
        fastrnn.quantize(nn.GRU(3, 4, dtype=np.float64), "bf16")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_nn_step_runs_in_the_modules_precision(precision):
    rng = np.random.default_rng(12)
    module = nn.LSTM(4, 6, seed=2, precision=precision)
    x = rng.standard_normal((1, 2, 4)).astype(np.float32)
    y_t, _ = module.step(x[0])
    weights = {key: w for key, w in module._weights(0, 0).items() if w is not None}
    expected = fastrnn.lstm_forward(x, **weights, requires_grad=False, precision=precision)[0][0]
    np.testing.assert_allclose(y_t, expected, **INVARIANT[np.dtype(np.float32)])
    module.precision = "float32"
    assert differs_from(module.step(x[0])[0], expected)


def test_nn_packed_cache_keeps_precisions_apart():
    rng = np.random.default_rng(13)
    module = nn.LSTM(4, 6, seed=3).eval()
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    float32 = module(x)[0]
    module.precision = "int8"
    int8 = module(x)[0]
    module.precision = "float32"
    assert np.array_equal(module(x)[0], float32)
    module.precision = "int8"
    assert np.array_equal(module(x)[0], int8)
    assert differs_from(int8, float32)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_quantize_an_nn_module_returns_a_converted_copy(precision):
    rng = np.random.default_rng(14)
    module = nn.LSTM(4, 6, num_layers=2, bidirectional=True, seed=4)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    before = module.state_dict()
    quantized = fastrnn.quantize(module, precision)
    assert quantized is not module and type(quantized) is nn.LSTM
    assert quantized.precision == precision and not quantized.training
    assert module.precision == "float32" and module.training  # the original is unchanged
    for name, value in quantized.state_dict().items():  # float32 master copies, not shared
        assert value.dtype == np.float32 and np.array_equal(value, before[name])
        assert quantized._parameters[name].values is not module._parameters[name].values
    # packed once, at quantize: the forward finds the packed copies
    cache = quantized.__dict__["_packed_cache"]
    assert len(cache._entries) == 4
    packed = dict(cache._entries)
    output = quantized(x)[0]
    assert all(cache._entries[slot][1] is packed[slot][1] for slot in packed)
    assert np.array_equal(output, functional_stack(quantized, x, precision))
    assert differs_from(output, module.eval()(x)[0])
    # pickling keeps the precision and the results
    again = pickle.loads(pickle.dumps(quantized))
    assert again.precision == precision and np.array_equal(again(x)[0], output)
    # back to float32
    assert np.array_equal(fastrnn.quantize(quantized, "float32")(x)[0], module(x)[0])


def test_quantize_refuses_what_it_cannot_convert():
    with pytest.raises(ArgumentError, match="precision must be one of"):
        fastrnn.quantize(nn.GRU(3, 4), "int3")
    with pytest.raises(ArgumentError, match="model must be"):
        fastrnn.quantize(object(), "int8")


# ---- Keras

def keras_model(precision=None):
    from fastrnn.keras import Sequential, layers

    options = {} if precision is None else {"precision": precision}
    model = Sequential([layers.Bidirectional(layers.LSTM(6, return_sequences=True, seed=0, **options)),
                        layers.GRU(5, seed=1, **options), layers.Dense(2, seed=2)])
    model.build((None, 7, 3))
    return model


@pytest.mark.parametrize("precision", PRECISIONS)
def test_keras_recurrent_layers_take_precision(precision):
    from fastrnn.keras import layers
    from fastrnn.keras.serialization import deserialize_layer, serialize_layer

    layer = layers.GRU(4, reset_after=False, precision=precision)
    assert layer.precision == precision and layer.get_config()["precision"] == precision
    assert "precision" not in layers.GRU(4).get_config()
    again = deserialize_layer(serialize_layer(layer))
    assert again.precision == precision
    wrapped = deserialize_layer(serialize_layer(layers.Bidirectional(layer)))
    assert wrapped.forward_layer.precision == wrapped.backward_layer.precision == precision
    assert wrapped.precision == precision
    wrapped.precision = "float32"
    assert wrapped.forward_layer.precision == wrapped.backward_layer.precision == "float32"
    with pytest.raises(ArgumentError, match="precision must be one of"):
        wrapped.precision = "int2"
    with pytest.raises(ArgumentError, match="precision must be one of"):
        layers.LSTM(4, precision="int16")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_keras_predict_runs_in_the_layers_precision(precision):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((4, 7, 3)).astype(np.float32)
    model = keras_model(precision)
    reference = keras_model()
    reference.set_weights(model.get_weights())
    predicted = model.predict(x, verbose=0)
    assert differs_from(predicted, reference.predict(x, verbose=0))
    # the GRU layer alone against the functional forward in the same precision
    gru = model.layers[1]
    features = model.layers[0](x)
    w = gru._torch_weights()
    h = fastrnn.gru_forward(features.transpose(1, 0, 2), **w, requires_grad=False,
                            precision=precision)[1]
    assert np.array_equal(gru(features), h)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_quantize_a_keras_model(precision, tmp_path):
    from fastrnn.keras.saving import load_model

    rng = np.random.default_rng(16)
    x = rng.standard_normal((4, 7, 3)).astype(np.float32)
    y = rng.standard_normal((4, 2)).astype(np.float32)
    model = keras_model()
    model.compile(loss="mse", optimizer="adam")
    float32 = model.predict(x, verbose=0)
    quantized = fastrnn.quantize(model, precision)
    assert quantized is not model
    recurrent = quantized.layers[0].layers + [quantized.layers[1]]
    assert [layer.precision for layer in recurrent] == [precision] * 3
    assert all(layer.precision == "float32" for layer in model.layers[0].layers + [model.layers[1]])
    for a, b in zip(quantized.get_weights(), model.get_weights()):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    predicted = quantized.predict(x, verbose=0)
    assert differs_from(predicted, float32)
    assert np.array_equal(model.predict(x, verbose=0), float32)
    assert np.isfinite(quantized.evaluate(x, y, verbose=0))
    if precision == "int8":  # bf16 trains (tests/test_bf16_training.py)
        with pytest.raises(ArgumentError, match="'int8', which is inference only"):
            quantized.fit(x, y, verbose=0)
    again = pickle.loads(pickle.dumps(quantized))
    assert np.array_equal(again.predict(x, verbose=0), predicted)
    path = tmp_path / "quantized.fastrnn"
    quantized.save(str(path))
    loaded = load_model(str(path))
    assert loaded.layers[1].precision == precision
    assert np.array_equal(loaded.predict(x, verbose=0), predicted)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_keras_masks_in_reduced_precision(precision):
    """Masked steps (holes included) change nothing: a row equals its valid steps run alone."""
    from fastrnn.keras import Sequential, layers

    rng = np.random.default_rng(17)
    model = Sequential([layers.Masking(0.0), layers.Bidirectional(layers.GRU(5, seed=3,
                                                                              precision=precision))])
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    x[1, 2] = 0.0   # a hole
    x[2, 4:] = 0.0  # padding
    predicted = model.predict(x, verbose=0)
    for b in range(3):
        valid = np.abs(x[b]).sum(axis=1) != 0
        alone = model.predict(x[b:b + 1, valid], verbose=0)
        np.testing.assert_allclose(predicted[b], alone[0], **INVARIANT[np.dtype(np.float32)])
