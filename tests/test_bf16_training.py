"""bf16 training (mixed precision) through the public API: the functional forwards and
backwards, the direction runner (bidirectional, lengths), nn modules and Keras ``fit``.

The expected gradients come from the float64 reference: the same layer run on the python
backend in float64 (no rounding to bf16 anywhere), so a bf16 result must stay within the
bf16 error bound of ``tolerances.BF16_TRAINING_VS_FLOAT64`` of it and must differ from the
float32 gradients (a float32 backward passed off as bf16 fails). Every backend that has the
bf16 backward kernels is checked against the python reference and for results that do not
depend on ``n_threads``. Training loops in bf16 are compared with the same loops in float32.
"""

import warnings

import numpy as np
import pytest

import fastrnn
from conftest import isa_variants, require_backend
from fastrnn import _backends, nn
from fastrnn.exceptions import ArgumentError, BackendUnavailableError, DTypeError
from fastrnn.functional.direction import backward_direction, run_direction
from fastrnn.functional.lengths import SequenceLengths
from helpers import REDUCED_CELL_CASES, assert_close, assert_results_identical
from tolerances import (BF16_TRAINING_BACKEND_VS_REFERENCE, BF16_TRAINING_LOSS_VS_FLOAT32,
                        BF16_TRAINING_VS_FLOAT64, REDUCED_DIFFERS_FROM_FLOAT32)

#: The reference and every ISA level of the Cython kernels (bf16 native or emulated).
BACKENDS = [pytest.param(backend, id=name)
            for backend, name in [("python", "python")] + isa_variants("cython")]

CELLS = REDUCED_CELL_CASES
BACKWARD_KERNEL = {"rnn": "rnn_backward_reduced", "lstm": "lstm_backward_reduced",
                   "gru": "gru_backward_reduced"}


@pytest.fixture(autouse=True)
def _quiet_reference_fallback():
    """Without the compiled bf16 backward kernels, ``auto`` runs the reference and warns once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "precision='bf16' runs on the pure-NumPy", RuntimeWarning)
        yield


def backend_with_training_kernels(name):
    """``name`` if it has the bf16 backward kernels, else the test is skipped (or fails where
    ``FASTRNN_REQUIRE_BACKENDS`` requires the backend)."""
    return require_backend(name, kernel="lstm_backward_reduced")


def make_problem(seed, case, T=12, B=5, D=7, H=16):
    """Weights (PyTorch's initialisation), input ~ N(0, 1), initial states, output and final
    state gradients ~ N(0, 1), and lengths with an empty and a full row."""
    cell, G, _, projected = CELLS[case]
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(H)
    P = H // 2 if projected else H
    shapes = {"w_ih": (G * H, D), "w_hh": (G * H, P), "b_ih": (G * H,), "b_hh": (G * H,)}
    if projected:
        shapes["w_hr"] = (P, H)
    weights = {k: rng.uniform(-bound, bound, s).astype(np.float32) for k, s in shapes.items()}
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    states = [0.5 * rng.standard_normal((B, P)).astype(np.float32)]
    d_finals = [rng.standard_normal((B, P)).astype(np.float32)]
    if cell == "lstm":
        states.append(0.5 * rng.standard_normal((B, H)).astype(np.float32))
        d_finals.append(rng.standard_normal((B, H)).astype(np.float32))
    dy = rng.standard_normal((T, B, P)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    lengths[0], lengths[-1] = 0, T
    return weights, x, states, dy, d_finals, lengths


def as_float64(arrays):
    if isinstance(arrays, dict):
        return {k: None if v is None else v.astype(np.float64) for k, v in arrays.items()}
    return [a.astype(np.float64) for a in arrays]


def train_direction(case, precision, weights, x, states, dy, d_finals, *, backend, lengths=None,
                    reverse=False, n_threads=None, relu_pattern=None, with_tape=False):
    """One direction's forward and backward through the direction runner: a dict of the
    output, the final states and every gradient.

    With ``with_tape`` the direction's tape comes too: ``(results, tape)``. ``relu_pattern``,
    another run's tape, makes the backward pass read that run's outputs (an Elman layer's backward reads nothing else of its forward):
    its relu derivatives and its states then enter the products."""
    cell, _, options, _ = CELLS[case]
    steps = None if lengths is None else SequenceLengths(lengths, x.shape[0], x.shape[1])
    y, finals, tape = run_direction(cell, x, weights, states, steps=steps, reverse=reverse,
                                    backend=backend, n_threads=n_threads, precision=precision,
                                    **options)
    if relu_pattern is not None:
        tape.cache.y[...] = relu_pattern.cache.y
    grads = backward_direction(tape, dy, d_finals)
    results = {"y": np.array(y)}
    results.update({f"final{i}": np.array(f) for i, f in enumerate(finals)})
    results.update({f"d{k}": v for k, v in grads.items()})
    return (results, tape) if with_tape else results


def float64_reference(case, weights, x, states, dy, d_finals, **kwargs):
    return train_direction(case, None, as_float64(weights), x.astype(np.float64), as_float64(states),
                           dy.astype(np.float64), as_float64(d_finals), backend="python", **kwargs)


DIRECTIONS = [(False, None), (True, None), (False, "lengths"), (True, "lengths")]
DIRECTION_IDS = ["forward", "reverse", "forward-lengths", "reverse-lengths"]


@pytest.mark.parametrize("reverse, with_lengths", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("case", sorted(CELLS))
def test_gradients_against_float64(case, reverse, with_lengths):
    weights, x, states, dy, d_finals, lengths = make_problem(1, case)
    lengths = lengths if with_lengths else None
    kwargs = dict(lengths=lengths, reverse=reverse)
    bf16, tape = train_direction(case, "bf16", weights, x, states, dy, d_finals, backend="python",
                                 with_tape=True, **kwargs)
    float32 = train_direction(case, "float32", weights, x, states, dy, d_finals, backend="python",
                              **kwargs)
    expected = float64_reference(case, weights, x, states, dy, d_finals, **kwargs)
    if CELLS[case][2].get("nonlinearity") == "relu":
        # relu's derivative jumps at 0, and bf16's forward error moves pre-activations near 0
        # across it (relative errors up to 0.5 measured): the float64 backward runs on the bf16
        # forward's outputs, so that only the backward's bf16 products differ
        outputs = {k: v for k, v in expected.items() if not k.startswith("d")}
        expected = float64_reference(case, weights, x, states, dy, d_finals, relu_pattern=tape,
                                     **kwargs)
        expected.update(outputs)
    assert sorted(bf16) == sorted(expected)
    context = f"{case}, reverse={reverse}, lengths={lengths}"
    for name in expected:
        assert bf16[name].dtype == np.float32, f"{context}: {name} is {bf16[name].dtype}"
        assert_close(bf16[name], expected[name], BF16_TRAINING_VS_FLOAT64, context, name)
    # the weights' gradients went through bf16 products: not float32's
    differs = max(np.abs(bf16[k].astype(np.float64) - float32[k]).max() for k in ("dw_ih", "dw_hh"))
    assert differs > REDUCED_DIFFERS_FROM_FLOAT32, f"{context}: bf16 gradients equal float32's"
    if lengths is not None:  # padding: no gradient reaches the input there
        for b, L in enumerate(lengths):
            assert not bf16["dx"][L:, b].any(), f"{context}: dx nonzero past row {b}'s end"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CELLS))
def test_backends_agree_with_the_reference(case, backend):
    backend = backend_with_training_kernels(backend)
    weights, x, states, dy, d_finals, lengths = make_problem(2, case)
    for reverse in (False, True):
        kwargs = dict(lengths=lengths, reverse=reverse)
        actual = train_direction(case, "bf16", weights, x, states, dy, d_finals, backend=backend,
                                 **kwargs)
        expected = train_direction(case, "bf16", weights, x, states, dy, d_finals,
                                   backend="python", **kwargs)
        context = f"{case} on {backend}, reverse={reverse}"
        for name in expected:
            assert_close(actual[name], expected[name], BF16_TRAINING_BACKEND_VS_REFERENCE, context,
                         name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CELLS))
def test_bit_identical_for_any_thread_count(case, backend):
    backend = backend_with_training_kernels(backend)
    weights, x, states, dy, d_finals, lengths = make_problem(3, case, T=9, B=11, D=5, H=24)
    runs = [train_direction(case, "bf16", weights, x, states, dy, d_finals, backend=backend,
                            lengths=lengths, reverse=True, n_threads=n) for n in (1, 2, 3)]
    for n, run in zip((2, 3), runs[1:]):
        assert_results_identical(run, runs[0], f"{case} on {backend}, n_threads={n} vs 1")


def functional_call(case, weights, x, states, **kwargs):
    """The cell's own functional forward on plain arrays (or a packed object as ``weights``)."""
    cell, _, options, projected = CELLS[case]
    names = ["h0", "c0"] if cell == "lstm" else ["h0"]
    arguments = dict(zip(names, states), **kwargs)
    if not isinstance(weights, dict):
        arguments["w_ih"] = weights
    else:
        arguments.update(weights)
    if projected:
        from fastrnn.functional._lstm_proj import lstm_proj_backward, lstm_proj_forward
        return lstm_proj_forward(x, **arguments), lstm_proj_backward
    forward = {"rnn": fastrnn.rnn_forward, "lstm": fastrnn.lstm_forward,
               "gru": fastrnn.gru_forward}[cell]
    backward = {"rnn": fastrnn.rnn_backward, "lstm": fastrnn.lstm_backward,
                "gru": fastrnn.gru_backward}[cell]
    return forward(x, **arguments, **options), backward


@pytest.mark.parametrize("case", sorted(CELLS))
def test_packed_bf16_weights_train_like_plain_arrays(case):
    cell, _, options, projected = CELLS[case]
    weights, x, states, dy, d_finals, lengths = make_problem(4, case)
    packer = {"rnn": fastrnn.pack_rnn, "lstm": fastrnn.pack_lstm, "gru": fastrnn.pack_gru}[cell]
    extra = {"w_hr": weights["w_hr"]} if projected else {}
    packed = packer(weights["w_ih"], weights["w_hh"], weights["b_ih"], weights["b_hh"],
                    backend="python", precision="bf16", **extra, **options)
    results = []
    for source in (packed, weights):
        (y, finals, cache), backward = functional_call(case, source, x, states, ends=lengths,
                                                       backend="python", precision="bf16")
        names = {"rnn": ["dh_n"], "gru": ["dh_n"]}.get(cell, ["dh_n", "dc_n"])
        grads = backward(cache, dy, **dict(zip(names, d_finals)))
        results.append({"y": np.array(y), **{f"d{k}": v for k, v in grads.items()}})
    assert_results_identical(results[0], results[1], f"{case}: packed bf16 against plain arrays")
    # the backward layer is packed once per object, apart from the inference one
    layer = packed.reduced_layer("python", backward=True)
    assert layer.backward and layer is packed.reduced_layer("python", backward=True)
    assert not packed.reduced_layer("python").backward


def test_batch_first_and_dc_in_bf16():
    weights, x, states, dy, d_finals, lengths = make_problem(5, "lstm")
    w = weights
    xb = np.ascontiguousarray(x.transpose(1, 0, 2))
    dyb = np.ascontiguousarray(dy.transpose(1, 0, 2))
    dc = np.random.default_rng(5).standard_normal(dy.shape).astype(np.float32)
    y, _, cache = fastrnn.lstm_forward(xb, **w, h0=states[0], c0=states[1], batch_first=True,
                                       backend="python", precision="bf16")
    grads = fastrnn.lstm_backward(cache, dyb, *d_finals, dc=dc.transpose(1, 0, 2))
    y_t, _, cache_t = fastrnn.lstm_forward(x, **w, h0=states[0], c0=states[1], backend="python",
                                           precision="bf16")
    grads_t = fastrnn.lstm_backward(cache_t, dy, *d_finals, dc=dc)
    assert np.array_equal(y, y_t.transpose(1, 0, 2))
    assert np.array_equal(grads["x"], grads_t["x"].transpose(1, 0, 2))
    for name in ("w_ih", "w_hh", "b_ih", "h0", "c0"):
        assert np.array_equal(grads[name], grads_t[name]), name
    expected = fastrnn.lstm_backward(fastrnn.lstm_forward(
        x.astype(np.float64), **as_float64(w), h0=states[0].astype(np.float64),
        c0=states[1].astype(np.float64), backend="python")[2], dy.astype(np.float64),
        *as_float64(d_finals), dc=dc.astype(np.float64))
    for name in expected:
        assert_close(grads_t[name], expected[name], BF16_TRAINING_VS_FLOAT64, "lstm, dc", name)


# ---- refusals and errors

@pytest.mark.parametrize("case", sorted(CELLS))
def test_int8_training_is_refused(case):
    weights, x, states, *_ = make_problem(6, case, T=3, B=2)
    with pytest.raises(ArgumentError, match=r"precision='int8' is inference only.*"
                                            r"requires_grad=False.*'bf16' or 'float32'"):
        functional_call(case, weights, x, states, precision="int8", requires_grad=True)


def test_float64_in_bf16_training_is_a_dtype_error():
    weights, x, states, *_ = make_problem(7, "gru", T=3, B=2)
    with pytest.raises(DTypeError, match=r"precision='bf16' computes in float32.*float64"):
        fastrnn.gru_forward(x.astype(np.float64), **as_float64(weights), precision="bf16")
    with pytest.raises(DTypeError, match=r"precision='bf16' computes in float32.*float64"):
        nn.GRU(3, 4, dtype=np.float64, precision="bf16")(np.zeros((2, 1, 3)))


def test_a_backend_without_the_backward_kernels_is_named(monkeypatch):
    # the reference stripped of one backward kernel: named, it is refused; inference still runs
    monkeypatch.delattr(_backends.resolve("python")[1], "lstm_backward_reduced")
    weights, x, states, *_ = make_problem(8, "lstm", T=3, B=2)
    with pytest.raises(BackendUnavailableError, match=r"no bf16 training kernels "
                                                      r"\(lstm_backward_reduced\).*requires_grad=False"):
        fastrnn.lstm_forward(x, **weights, backend="python", precision="bf16")
    fastrnn.lstm_forward(x, **weights, backend="python", precision="bf16", requires_grad=False)


def test_auto_trains_on_a_backend_with_the_backward_kernels():
    weights, x, states, *_ = make_problem(9, "gru", T=3, B=2)
    for call in (fastrnn.gru_forward(x, **weights, precision="bf16"),
                 fastrnn.gru_forward(x, fastrnn.pack_gru(**weights, precision="bf16"))):
        cache = call[2]
        assert cache.reduced.backward
        assert hasattr(_backends.resolve(cache.backend)[1], "gru_backward_reduced")
        assert fastrnn.gru_backward(cache)["w_hh"].dtype == np.float32


def test_numba_has_no_bf16_training():
    weights, x, states, *_ = make_problem(9, "rnn-tanh", T=3, B=2)
    with pytest.raises(BackendUnavailableError):
        fastrnn.rnn_forward(x, **weights, backend="numba", precision="bf16")


# ---- nn modules

def regression_task(seed, T=15, B=16, D=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    target = np.tanh(np.cumsum(x[..., :2], axis=0) / 3).astype(np.float32)
    lengths = rng.integers(T // 2, T + 1, B)
    return x, target, lengths


def nn_losses(make, precision, x, target, lengths, steps=25):
    from fastrnn.optim import Adam

    module = make(precision)
    optimizer = Adam(module.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        module.zero_grad()
        y, _ = module(x, lengths=lengths)
        residual = y[..., :2] - target
        losses.append(float(np.mean(residual ** 2)))
        d_output = np.zeros_like(y)
        d_output[..., :2] = 2 * residual / residual.size
        module.backward(d_output)
        optimizer.step()
    return module, losses


NN_MODULES = {
    "lstm-proj-bidirectional": lambda p: nn.LSTM(4, 12, num_layers=2, bidirectional=True,
                                                 proj_size=5, seed=0, precision=p),
    "gru-bidirectional": lambda p: nn.GRU(4, 12, num_layers=2, bidirectional=True, seed=0,
                                          precision=p),
    "rnn-relu": lambda p: nn.RNN(4, 12, nonlinearity="relu", seed=0, precision=p),
}


@pytest.mark.parametrize("name", sorted(NN_MODULES))
def test_nn_training_in_bf16_follows_float32(name):
    x, target, lengths = regression_task(10)
    module, bf16 = nn_losses(NN_MODULES[name], "bf16", x, target, lengths)
    _, float32 = nn_losses(NN_MODULES[name], "float32", x, target, lengths)
    assert bf16[-1] < 0.85 * bf16[0], f"{name}: the bf16 loss did not fall: {bf16}"
    np.testing.assert_allclose(bf16, float32, **BF16_TRAINING_LOSS_VS_FLOAT32,
                               err_msg=f"{name}: bf16 loss curve against float32's")
    assert bf16 != float32, f"{name}: bf16 training ran in float32"
    # the master weights and their gradients stay float32
    assert all(p.values.dtype == np.float32 and p.grad.dtype == np.float32
               for p in module.parameters())


def test_nn_bf16_gradients_against_the_functional_api():
    module = nn.LSTM(4, 6, seed=1, backend="python", precision="bf16")
    x, _, _ = regression_task(11, T=5, B=3)
    y, _ = module(x)
    d_output = np.random.default_rng(11).standard_normal(y.shape).astype(np.float32)
    module.backward(d_output)
    w = {"w_ih": module.weight_ih_l0.values, "w_hh": module.weight_hh_l0.values,
         "b_ih": module.bias_ih_l0.values, "b_hh": module.bias_hh_l0.values}
    y_f, _, cache = fastrnn.lstm_forward(x, **w, backend="python", precision="bf16")
    grads = fastrnn.lstm_backward(cache, d_output)
    np.testing.assert_array_equal(y, y_f)
    for key, name in [("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"), ("b_ih", "bias_ih_l0"),
                      ("b_hh", "bias_hh_l0")]:
        np.testing.assert_array_equal(getattr(module, name).grad, grads[key], err_msg=key)


def test_nn_int8_training_mode_is_refused_and_eval_is_unchanged():
    module = nn.GRU(3, 4, seed=0, precision="int8")
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ArgumentError, match=r"precision='int8' is inference only.*eval\(\).*"
                                            r"'bf16' or 'float32'"):
        module(x)
    bf16 = nn.GRU(3, 4, seed=0, precision="bf16").eval()
    bf16(x)
    with pytest.raises(ArgumentError, match="backward"):  # eval() keeps nothing, as before
        bf16.backward(np.zeros((2, 1, 4), np.float32))
    with nn.no_grad():  # training mode without gradients: inference, nothing kept
        bf16.train()(x)
    with pytest.raises(ArgumentError, match="backward"):
        bf16.backward(np.zeros((2, 1, 4), np.float32))


# ---- Keras

def keras_history(precision, x, y, epochs=6):
    from fastrnn.keras import Sequential, layers

    model = Sequential([
        layers.Bidirectional(layers.LSTM(8, return_sequences=True, seed=1, precision=precision)),
        layers.GRU(6, seed=2, precision=precision),
        layers.Dense(y.shape[1], seed=3),
    ])
    model.build((None,) + x.shape[1:])
    model.compile(loss="mse", optimizer="adam")
    history = model.fit(x, y, epochs=epochs, batch_size=16, shuffle=False, verbose=0)
    return model, history.history["loss"]


def test_keras_fit_in_bf16_follows_float32():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((48, 10, 3)).astype(np.float32)
    y = np.stack([np.tanh(x[:, :, 0].sum(1) / 3), np.tanh(x[:, :, 1].mean(1))], 1).astype(np.float32)
    model, bf16 = keras_history("bf16", x, y)
    _, float32 = keras_history("float32", x, y)
    assert bf16[-1] < bf16[0], f"the bf16 loss did not fall: {bf16}"
    np.testing.assert_allclose(bf16, float32, **BF16_TRAINING_LOSS_VS_FLOAT32,
                               err_msg="Keras fit: bf16 loss curve against float32's")
    assert bf16 != float32, "Keras fit in bf16 ran in float32"
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_keras_int8_fit_is_refused():
    from fastrnn.keras import Sequential, layers

    model = Sequential([layers.GRU(4, precision="int8"), layers.Dense(1)])
    model.build((None, 5, 3))
    model.compile(loss="mse", optimizer="adam")
    x = np.zeros((4, 5, 3), np.float32)
    with pytest.raises(ArgumentError, match=r"precision='int8', which is inference only.*"
                                            r"'bf16' or 'float32' to train"):
        model.fit(x, np.zeros((4, 1), np.float32), verbose=0)
    model.predict(x, verbose=0)  # inference still runs
