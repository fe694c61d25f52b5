"""The one runner of a direction (fastrnn.functional.direction) and both facades on it.

* the runner against each row run alone through the functional API, in float64
  on the reference backend: per-row lengths including 0, the reverse direction
  per row, masks with holes and both fills;
* its gradients against central finite differences on a tiny case;
* the maps of :mod:`fastrnn.functional.lengths`: the reverse per row, and that
  each gradient map is the adjoint of its forward map;
* zero-length rows in both facades (nn ``lengths`` with 0, a Keras mask with an
  all-False row) against the non-empty rows run alone;
* inference keeps no cache: the runner, ``nn.no_grad()`` and Keras ``predict``
  call the functional forwards with ``requires_grad=False``.
"""

import numpy as np
import pytest

import fastrnn.keras as keras
import fastrnn.nn as fnn
from fastrnn.exceptions import ArgumentError
from fastrnn.functional import _gru, _lstm, _lstm_proj, _rnn, direction
from fastrnn.functional.cells import CELLS, cell_spec
from fastrnn.functional.direction import backward_direction, run_direction
from fastrnn.functional.lengths import MaskedSequences, SequenceLengths
from fastrnn.keras import layers
from helpers import assert_close, central_differences
from tolerances import FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, INVARIANT

F64 = np.dtype(np.float64)
#: cell name, and whether the LSTM has a projection
VARIANTS = [("rnn", False), ("lstm", False), ("gru", False), ("lstm", True)]
VARIANT_IDS = ["rnn", "lstm", "gru", "lstm_proj"]
FORWARDS = {("rnn", False): _rnn.rnn_forward, ("lstm", False): _lstm.lstm_forward,
            ("gru", False): _gru.gru_forward, ("lstm", True): _lstm_proj.lstm_proj_forward}


def make_problem(cell, projected, T, B, D, H, seed, P=2):
    """Weights (PyTorch packing), input and initial states in float64."""
    rng = np.random.default_rng(seed)
    spec = cell_spec(cell)
    G, H_out = spec.gates, (P if projected else H)
    weights = {"w_ih": rng.uniform(-0.6, 0.6, (G * H, D)), "w_hh": rng.uniform(-0.6, 0.6, (G * H, H_out)),
               "b_ih": rng.uniform(-0.3, 0.3, G * H), "b_hh": rng.uniform(-0.3, 0.3, G * H)}
    if projected:
        weights["w_hr"] = rng.uniform(-0.6, 0.6, (P, H))
    x = rng.standard_normal((T, B, D))
    sizes = {"h": H_out, "c": H}
    states = [rng.uniform(-0.5, 0.5, (B, sizes[s])) for s in spec.states]
    return x, weights, states


def run_alone(cell, projected, x, weights, states):
    """One row (x of shape (L, 1, D)) through the functional API directly: y and the final states."""
    spec = cell_spec(cell)
    arguments = {k: v for k, v in weights.items() if k != "w_hr" or projected}
    arguments.update(zip(spec.initial_state_names, states))
    y, finals, _ = FORWARDS[cell, projected](x, **arguments, backend="python", requires_grad=False)
    return y, (list(finals) if spec.has_cell_state else [finals])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell, projected", VARIANTS, ids=VARIANT_IDS)
def test_runner_with_lengths_equals_each_row_alone(cell, projected, reverse):
    T, B, D, H = 6, 5, 3, 4
    x, weights, states = make_problem(cell, projected, T, B, D, H, seed=1)
    lengths = np.array([6, 0, 2, 1, 5])
    y, finals, tape = run_direction(cell, x, weights, states, steps=SequenceLengths(lengths, T, B),
                                    reverse=reverse, backend="python", requires_grad=False)
    assert tape is None
    context = f"{cell}{'_proj' if projected else ''} reverse={reverse}"
    for b, length in enumerate(lengths):
        assert np.all(y[length:, b] == 0), f"{context}: row {b} output past its end"
        if length == 0:
            for final, initial in zip(finals, states):
                np.testing.assert_array_equal(final[b], initial[b], err_msg=f"{context}: empty row")
            continue
        row = x[:length, b:b + 1]
        y_alone, finals_alone = run_alone(cell, projected, row[::-1] if reverse else row, weights,
                                          [s[b:b + 1] for s in states])
        expected_y = y_alone[::-1, 0] if reverse else y_alone[:, 0]
        assert_close(y[:length, b], expected_y, INVARIANT[F64], f"{context} row {b}", "y")
        for k, (final, alone) in enumerate(zip(finals, finals_alone)):
            assert_close(final[b], alone[0], INVARIANT[F64], f"{context} row {b}", f"final state {k}")


@pytest.mark.parametrize("fill", ["zeros", "previous"])
@pytest.mark.parametrize("cell, projected", VARIANTS, ids=VARIANT_IDS)
def test_runner_with_mask_holes_equals_valid_steps_alone(cell, projected, fill):
    T, B, D, H = 6, 4, 3, 4
    x, weights, states = make_problem(cell, projected, T, B, D, H, seed=2)
    mask = np.array([[1, 1, 0, 1, 0, 0],
                     [0, 1, 1, 0, 1, 1],
                     [0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 1, 1, 1]], dtype=bool).T  # (T, B)
    y, finals, _ = run_direction(cell, x, weights, states, steps=MaskedSequences(mask), fill=fill,
                                 backend="python", requires_grad=False)
    context = f"{cell}{'_proj' if projected else ''} fill={fill}"
    for b in range(B):
        valid = np.nonzero(mask[:, b])[0]
        if valid.size == 0:
            assert np.all(y[:, b] == 0), f"{context}: a fully masked row outputs zeros"
            for final, initial in zip(finals, states):
                np.testing.assert_array_equal(final[b], initial[b])
            continue
        y_alone, finals_alone = run_alone(cell, projected, x[valid, b:b + 1], weights,
                                          [s[b:b + 1] for s in states])
        expected = np.zeros_like(y[:, b])
        for t in range(T):
            shown = np.nonzero(valid <= t)[0]
            if mask[t, b]:
                expected[t] = y_alone[shown[-1], 0]
            elif fill == "previous" and shown.size:
                expected[t] = y_alone[shown[-1], 0]
        assert_close(y[:, b], expected, INVARIANT[F64], f"{context} row {b}", "y")
        for final, alone in zip(finals, finals_alone):
            assert_close(final[b], alone[0], INVARIANT[F64], f"{context} row {b}", "final state")


def _steps(kind, T, B):
    if kind == "lengths":
        return SequenceLengths([4, 0, 2], T, B)
    return MaskedSequences(np.array([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]], dtype=bool).T)


@pytest.mark.parametrize("kind, reverse, fill", [("lengths", False, "zeros"), ("lengths", True, "zeros"),
                                                 ("mask", False, "previous")])
@pytest.mark.parametrize("cell, projected", VARIANTS, ids=VARIANT_IDS)
def test_runner_gradients_equal_finite_differences(cell, projected, kind, reverse, fill):
    """Loss ``sum(w * y) + sum_k sum(v_k * final_k)``; every entry of every gradient."""
    T, B, D, H = 4, 3, 2, 3
    x, weights, states = make_problem(cell, projected, T, B, D, H, seed=3)
    weights = {k: v for k, v in weights.items() if k != "w_hr" or projected}
    steps = _steps(kind, T, B)
    options = dict(steps=steps, reverse=reverse, fill=fill, backend="python")
    rng = np.random.default_rng(4)
    y, finals, tape = run_direction(cell, x, weights, states, **options)
    w = rng.standard_normal(y.shape)
    v = [rng.standard_normal(f.shape) for f in finals]
    grads = backward_direction(tape, w, v)

    def loss():
        y, finals, _ = run_direction(cell, x, weights, states, requires_grad=False, **options)
        return float(np.sum(w * y) + sum(np.sum(a * b) for a, b in zip(v, finals)))

    spec = cell_spec(cell)
    arrays = {"x": x, **weights, **dict(zip(spec.initial_state_names, states))}
    context = f"{cell}{'_proj' if projected else ''} {kind} reverse={reverse} fill={fill}"
    for name, array in arrays.items():
        numeric = central_differences(loss, array, FINITE_DIFFERENCE_STEP)
        assert_close(grads[name], numeric, FINITE_DIFFERENCE, context, f"d{name}")


def test_reverse_is_per_row_within_its_prefix():
    T, B = 5, 3
    lengths = SequenceLengths([5, 2, 0], T, B)
    seq = np.arange(T * B, dtype=float).reshape(T, B, 1)
    out = lengths.reverse(seq)
    np.testing.assert_array_equal(out[:, 0, 0], seq[::-1, 0, 0])
    np.testing.assert_array_equal(out[:, 1, 0], seq[[1, 0, 2, 3, 4], 1, 0])
    np.testing.assert_array_equal(out[:, 2, 0], seq[:, 2, 0])
    np.testing.assert_array_equal(lengths.reverse(out), seq)


@pytest.mark.parametrize("fill", ["zeros", "previous"])
@pytest.mark.parametrize("kind", ["lengths", "mask"])
def test_gradient_maps_are_adjoints(kind, fill):
    """<f(a), g> == <a, f*(g)> for compact/expand and show/show_adjoint."""
    T, B, F = 4, 3, 2
    steps = _steps(kind, T, B)
    rng = np.random.default_rng(5)
    a, g = rng.standard_normal((T, B, F)), rng.standard_normal((T, B, F))
    compacted = steps.compact(a)
    assert np.isclose(np.sum(compacted * g), np.sum(a * steps.expand(g)))
    shown = steps.show(a, fill)
    assert np.isclose(np.sum(shown * g), np.sum(a * steps.show_adjoint(g, fill)))


def test_lengths_accept_zero_and_refuse_outside_zero_to_t():
    assert SequenceLengths([0, 3], 3, 2).empty.tolist() == [True, False]
    for bad in ([-1, 3], [0, 4]):
        with pytest.raises(ArgumentError, match=r"lengths must lie in \[0, T\] = \[0, 3\]"):
            SequenceLengths(bad, 3, 2)


# --------------------------------------------------------------------------- facades

NN_CELLS = {"RNN": fnn.RNN, "LSTM": fnn.LSTM, "GRU": fnn.GRU}


def _nn_states(state):
    return list(state) if isinstance(state, tuple) else [state]


#: (cell, proj_size): every cell, and the LSTM with a projection too
NN_CONFIGS = [(cell, 0) for cell in NN_CELLS] + [("LSTM", 2)]


@pytest.mark.parametrize("cell, proj", NN_CONFIGS, ids=[c + ("-proj" if p else "") for c, p in NN_CONFIGS])
def test_nn_zero_length_rows_equal_the_other_rows_alone(cell, proj):
    T, D, H = 5, 3, 4
    extra = {"proj_size": proj} if proj else {}
    module = NN_CELLS[cell](D, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=6,
                            backend="python", **extra)
    rng = np.random.default_rng(7)
    lengths = np.array([3, 0, 5, 0])
    full, empty = np.nonzero(lengths)[0], np.nonzero(lengths == 0)[0]
    x = rng.standard_normal((T, 4, D))
    hx = [rng.standard_normal((4, 4, module.output_size))]
    if cell == "LSTM":
        hx.append(rng.standard_normal((4, 4, H)))
    output, state = module(x, hx[0] if cell != "LSTM" else tuple(hx), lengths=lengths)
    d_out = rng.standard_normal(output.shape)
    d_states = [rng.standard_normal(s.shape) for s in _nn_states(state)]
    dx = module.backward(d_out, *d_states)
    grads = {name: p.grad.copy() for name, p in module.named_parameters()}
    grad_hx = _nn_states(module.grad_hx)

    # the non-empty rows alone, as a batch of their own
    module.zero_grad()
    sub_hx = [h[:, full] for h in hx]
    sub_out, sub_state = module(x[:, full], sub_hx[0] if cell != "LSTM" else tuple(sub_hx),
                                lengths=lengths[full])
    sub_dx = module.backward(d_out[:, full], *[d[:, full] for d in d_states])
    tol = INVARIANT[F64]
    assert_close(output[:, full], sub_out, tol, cell, "output")
    for a, b in zip(_nn_states(state), _nn_states(sub_state)):
        assert_close(a[:, full], b, tol, cell, "final state")
    assert_close(dx[:, full], sub_dx, tol, cell, "d input")
    for name, p in module.named_parameters():
        assert_close(grads[name], p.grad, tol, cell, f"d {name}")
    for a, b in zip(grad_hx, _nn_states(module.grad_hx)):
        assert_close(a[:, full], b, tol, cell, "grad_hx")

    # the empty rows: zeros out, initial states kept, their gradients passed straight back
    assert np.all(output[:, empty] == 0) and np.all(dx[:, empty] == 0)
    for final, initial, d_final, d_initial in zip(_nn_states(state), hx, d_states, grad_hx):
        np.testing.assert_array_equal(final[:, empty], initial[:, empty])
        np.testing.assert_array_equal(d_initial[:, empty], d_final[:, empty])


def test_nn_zero_length_rows_next_to_torch():
    """torch refuses length 0 in pack_padded_sequence: the other rows against torch, the empty
    row against its obvious values."""
    torch = pytest.importorskip("torch")
    from fastrnn.nn.torch_interop import to_torch

    T, D, H = 4, 3, 5
    ours = fnn.LSTM(D, H, bidirectional=True, dtype=np.float64, seed=8)
    theirs = to_torch(ours)
    lengths = np.array([4, 0, 2])
    x = np.random.default_rng(9).standard_normal((T, 3, D))
    output, (h_n, c_n) = ours(x, lengths=lengths)
    full = [0, 2]
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x[:, full]),
                                                     torch.tensor(lengths[full]), enforce_sorted=False)
    with torch.no_grad():
        out, (th, tc) = theirs(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    from tolerances import TORCH_PARITY
    assert_close(output[:, full], out.numpy(), TORCH_PARITY[F64], "LSTM", "output")
    assert_close(h_n[:, full], th.numpy(), TORCH_PARITY[F64], "LSTM", "h_n")
    assert_close(c_n[:, full], tc.numpy(), TORCH_PARITY[F64], "LSTM", "c_n")
    assert np.all(output[:, 1] == 0) and np.all(h_n[:, 1] == 0) and np.all(c_n[:, 1] == 0)


KERAS_CELLS = {"SimpleRNN": layers.SimpleRNN, "LSTM": layers.LSTM, "GRU": layers.GRU}


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("cell", KERAS_CELLS)
def test_keras_all_false_mask_row_equals_the_other_rows_alone(cell, return_sequences):
    B, T, D, H = 4, 5, 3, 4
    rng = np.random.default_rng(10)
    n_states = len(cell_spec(cell).states)
    layer = KERAS_CELLS[cell](H, return_sequences=return_sequences, return_state=True, seed=11,
                              dtype="float64", backend="python")
    x = rng.standard_normal((B, T, D))
    mask = np.array([[1, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    initial = [rng.standard_normal((B, H)) for _ in range(n_states)]
    output, *finals = layer(x, mask=mask, training=True, initial_state=initial)
    d_output = [rng.standard_normal(output.shape)] + [rng.standard_normal((B, H)) for _ in finals]
    dx = layer.backward(d_output)
    grads = [w.grad.copy() for w in layer.weights]
    d_initial = layer.grad_initial_state

    rows = [0, 2, 3]
    for w in layer.weights:
        w.grad = None
    sub_output, *sub_finals = layer(x[rows], mask=mask[rows], training=True,
                                    initial_state=[s[rows] for s in initial])
    sub_dx = layer.backward([d[rows] for d in d_output])
    tol = INVARIANT[F64]
    assert_close(output[rows], sub_output, tol, cell, "output")
    for a, b in zip(finals, sub_finals):
        assert_close(a[rows], b, tol, cell, "final state")
    assert_close(dx[rows], sub_dx, tol, cell, "d input")
    for g, w in zip(grads, layer.weights):
        assert_close(g, w.grad, tol, cell, "weight gradient")
    for a, b in zip(d_initial, layer.grad_initial_state):
        assert_close(a[rows], b, tol, cell, "d initial state")

    # the fully masked row: zeros out, initial states kept, their gradients passed straight back
    assert np.all(output[1] == 0) and np.all(dx[1] == 0)
    for final, state0, d_final, d_state0 in zip(finals, initial, d_output[1:], d_initial):
        np.testing.assert_array_equal(final[1], state0[1])
        np.testing.assert_array_equal(d_state0[1], d_final[1])


# --------------------------------------------------------------------------- no cache at inference


@pytest.fixture
def forward_calls(monkeypatch):
    """Every functional forward the runner calls, recorded as (name, requires_grad, cache)."""
    calls = []
    for name in [s.forward for s in CELLS.values()] + ["lstm_proj_forward"]:
        function = direction._FUNCTIONS[name]

        def recording(*args, _function=function, _name=name, **kwargs):
            result = _function(*args, **kwargs)
            calls.append((_name, kwargs.get("requires_grad"), result[2]))
            return result

        monkeypatch.setitem(direction._FUNCTIONS, name, recording)
    return calls


@pytest.mark.parametrize("cell, projected", VARIANTS, ids=VARIANT_IDS)
def test_runner_at_inference_keeps_no_cache(cell, projected, forward_calls):
    x, weights, states = make_problem(cell, projected, 5, 3, 2, 4, seed=12)
    weights = {k: v for k, v in weights.items() if k != "w_hr" or projected}
    _, _, tape = run_direction(cell, x, weights, states, steps=SequenceLengths([5, 0, 2], 5, 3),
                               reverse=True, requires_grad=False)
    assert tape is None
    assert forward_calls and all(rg is False and cache is None for _, rg, cache in forward_calls)


@pytest.mark.parametrize("proj", [0, 2], ids=["", "proj"])
def test_nn_no_grad_with_lengths_keeps_no_cache(proj, forward_calls):
    module = fnn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=proj, seed=13)
    x = np.random.default_rng(14).standard_normal((5, 3, 3)).astype(np.float32)
    with fnn.no_grad():
        module(x, lengths=[5, 1, 0])
    assert module._tape is None
    assert len(forward_calls) == 4
    assert all(rg is False and cache is None for _, rg, cache in forward_calls)


@pytest.mark.parametrize("cell", KERAS_CELLS)
def test_keras_predict_with_mask_keeps_no_cache(cell, forward_calls):
    model = keras.Sequential([layers.Masking(0.0), KERAS_CELLS[cell](4, seed=15), layers.Dense(1, seed=16)])
    x = np.random.default_rng(17).standard_normal((3, 5, 2)).astype(np.float32)
    x[0, 3:] = 0.0  # right padding
    x[1, 1] = 0.0  # a hole
    x[2] = 0.0  # a fully masked row
    model.predict(x, verbose=0)
    recurrent = model.layers[1]
    assert recurrent._tape is None
    assert forward_calls and all(rg is False and cache is None for _, rg, cache in forward_calls)
