"""bf16 and int8 inference, numerically: every cell, uni- and bidirectional, with lengths.

The expected results are computed independently of the functional layer and the direction
runner: each batch row on its own, its valid steps cut out (and reversed for the backward
direction) by hand, through the reference kernels called directly with weights reduced by
:func:`fastrnn._python.reduced.reduce_matrix`. int8 quantizes each batch row with its own
scale, so running the rows one by one changes nothing: the reference backend must match
bit for bit. The error against the float64 forward is bounded (``tolerances.py``), and a
reduced result must differ from the float32 one, so that a float32 run passed off as bf16
or int8 fails.
"""

import numpy as np
import pytest

import fastrnn
from conftest import require_backend
from fastrnn import _python
from fastrnn._python.reduced import reduce_matrix
from fastrnn.functional.direction import run_direction
from fastrnn.functional.lengths import SequenceLengths
from fastrnn.functional.packed import pack_cell
from helpers import REDUCED_CELL_CASES, assert_close
from tolerances import (INVARIANT, REDUCED_BACKEND_VS_REFERENCE, REDUCED_DIFFERS_FROM_FLOAT32,
                        REDUCED_VS_FLOAT64)

PRECISIONS = ("bf16", "int8")
BACKENDS = ("python", "cython")

CELLS = REDUCED_CELL_CASES


def backend_with_reduced_kernels(name):
    """``name`` if it has the reduced-precision kernels, else the test is skipped (or fails
    where ``FASTRNN_REQUIRE_BACKENDS`` requires the backend)."""
    return require_backend(name, kernel="rnn_forward_reduced")


def make_weights(rng, case, D, H, dtype=np.float32):
    """PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)); ``w_hr`` with P = H // 2."""
    _, G, _, projected = CELLS[case]
    bound = 1 / np.sqrt(H)
    P = H // 2 if projected else H
    shapes = {"w_ih": (G * H, D), "w_hh": (G * H, P), "b_ih": (G * H,), "b_hh": (G * H,)}
    if projected:
        shapes["w_hr"] = (P, H)
    return {name: rng.uniform(-bound, bound, shape).astype(dtype) for name, shape in shapes.items()}


def make_states(rng, case, B, H):
    cell, _, _, projected = CELLS[case]
    P = H // 2 if projected else H
    states = [0.5 * rng.standard_normal((B, P)).astype(np.float32)]
    if cell == "lstm":
        states.append(0.5 * rng.standard_normal((B, H)).astype(np.float32))
    return states


def reference_row(case, precision, x, weights, states):
    """One row's forward on its own (B = 1), the reference kernels on reduced weights.

    x : (L, 1, D); states : list of (1, F). Returns y (L, 1, F_out) and the final states.
    """
    cell, G, options, projected = CELLS[case]
    L = x.shape[0]
    w_ih = reduce_matrix(weights["w_ih"], precision)
    w_hh = reduce_matrix(weights["w_hh"], precision)
    H = weights["w_hh"].shape[0] // G
    out = states[0].shape[1]
    y = np.empty((L, 1, out), np.float32)
    finals = [np.empty_like(s) for s in states]
    if L == 0:
        return y, [s.copy() for s in states]
    if cell == "gru":
        bias_x = weights["b_ih"].copy()
        bias_x[:2 * H] += weights["b_hh"][:2 * H]
        b_hn = weights["b_hh"][2 * H:].copy()
        _python.gru_forward(x, w_ih, w_hh, bias_x, b_hn, states[0], options["reset_after"], y,
                            finals[0], np.empty((L, 1, 4 * H), np.float32), 1)
        return y, finals
    bias = weights["b_ih"] + weights["b_hh"]
    if cell == "rnn":
        _python.rnn_forward(x, w_ih, w_hh, bias, states[0], options["nonlinearity"] == "relu", y,
                            finals[0], 1)
        return y, finals
    gates = np.empty((L, 1, 4 * H), np.float32)
    none = np.empty((0, 1, H), np.float32)
    if projected:
        _python.lstm_proj_forward(x, w_ih, w_hh, reduce_matrix(weights["w_hr"], precision), bias,
                                  states[0], states[1], y, finals[0], finals[1], gates, none, none, 1)
    else:
        _python.lstm_forward(x, w_ih, w_hh, bias, states[0], states[1], y, finals[0], finals[1],
                             gates, none, 1)
    return y, finals


def reference_direction(case, precision, x, weights, states, lengths, reverse):
    """The padded batch row by row: valid steps only, reversed for the backward direction,
    zeros at the padding, final states after each row's last valid step."""
    T, B, _ = x.shape
    out = states[0].shape[1]
    y = np.zeros((T, B, out), np.float32)
    finals = [np.empty_like(s) for s in states]
    for b in range(B):
        L = int(lengths[b])
        xb = x[:L, b:b + 1]
        if reverse:
            xb = xb[::-1]
        yb, fb = reference_row(case, precision, np.ascontiguousarray(xb), weights,
                               [s[b:b + 1] for s in states])
        y[:L, b] = (yb[::-1] if reverse else yb)[:, 0]
        for final, value in zip(finals, fb):
            final[b] = value[0]
    return y, finals


def run(case, precision, x, weights, states, *, backend, lengths=None, reverse=False, packed=False,
        n_threads=None):
    cell, _, options, _ = CELLS[case]
    T, B, _ = x.shape
    steps = None if lengths is None else SequenceLengths(lengths, T, B)
    if packed:  # the packed object carries the precision
        w = pack_cell(cell, weights, backend=backend, precision=precision, **options)
        y, finals, _ = run_direction(cell, x, w, states, steps=steps, reverse=reverse,
                                     requires_grad=False, backend=backend, n_threads=n_threads,
                                     **options)
    else:
        y, finals, _ = run_direction(cell, x, weights, states, steps=steps, reverse=reverse,
                                     requires_grad=False, backend=backend, n_threads=n_threads,
                                     precision=precision, **options)
    return np.asarray(y), [np.asarray(f) for f in finals]


def check_against(actual, expected, exact, tolerance, context):
    y, finals = actual
    y_ref, finals_ref = expected
    for name, a, e in [("y", y, y_ref)] + [(f"final[{i}]", a, e)
                                            for i, (a, e) in enumerate(zip(finals, finals_ref))]:
        assert a.dtype == np.float32, f"{context}: {name} has dtype {a.dtype}"
        if exact:
            diff = np.abs(a.astype(np.float64) - e)
            assert np.array_equal(a, e), (f"{context}: {name} is not bit-identical to the reference "
                                          f"({np.count_nonzero(diff)} entries differ, up to {diff.max():.3g})")
        else:
            assert_close(a, e, tolerance, context, name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", list(CELLS))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_direction_matches_reference_row_by_row(precision, case, reverse, with_lengths, backend):
    backend = backend_with_reduced_kernels(backend)
    rng = np.random.default_rng([7, len(case), reverse, with_lengths])
    T, B, D, H = 9, 4, 5, 8
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    weights = make_weights(rng, case, D, H)
    states = make_states(rng, case, B, H)
    lengths = np.array([9, 0, 4, 7]) if with_lengths else np.full(B, T)
    expected = reference_direction(case, precision, x, weights, states, lengths, reverse)
    # int8 scales each row on its own and the reference's sums are exact: bit for bit
    exact = backend == "python" and precision == "int8"
    tolerance = REDUCED_BACKEND_VS_REFERENCE if backend != "python" else INVARIANT[np.dtype(np.float32)]
    for packed in (False, True):
        context = f"{case} {precision} {backend} reverse={reverse} lengths={lengths} packed={packed}"
        actual = run(case, precision, x, weights, states, backend=backend,
                     lengths=lengths if with_lengths else None, reverse=reverse, packed=packed)
        check_against(actual, expected, exact, tolerance, context)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CELLS))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_error_against_float64_is_bounded(precision, case, backend):
    backend = backend_with_reduced_kernels(backend)
    cell, _, options, projected = CELLS[case]
    rng = np.random.default_rng([11, len(case)])
    T, B, D, H = 100, 4, 32, 64
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    weights = make_weights(rng, case, D, H)
    w64 = {name: value.astype(np.float64) for name, value in weights.items()}
    y64, _, _ = run_direction(cell, x.astype(np.float64), w64, [np.zeros((B, s), np.float64) for s in
                              ([H // 2, H] if projected else [H, H][:1 + (cell == "lstm")])],
                              requires_grad=False, backend="python", **options)
    states = [np.zeros((B, s), np.float32) for s in
              ([H // 2, H] if projected else [H, H][:1 + (cell == "lstm")])]
    y32, _ = run(case, "float32", x, weights, states, backend=backend)
    y, _ = run(case, precision, x, weights, states, backend=backend)
    error = np.abs(y - y64)
    bound = REDUCED_VS_FLOAT64[precision]
    context = f"{case} {precision} {backend} T={T} H={H}"
    assert error.max() <= bound["max"], f"{context}: largest error {error.max():.3g} > {bound['max']}"
    assert error.mean() <= bound["mean"], f"{context}: mean error {error.mean():.3g} > {bound['mean']}"
    assert np.abs(y - y32).max() > REDUCED_DIFFERS_FROM_FLOAT32, (
        f"{context}: the output equals float32's (within {REDUCED_DIFFERS_FROM_FLOAT32}): "
        "the products did not run in reduced precision")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["rnn-tanh", "lstm", "lstm-proj", "gru", "gru-reset-before"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_bit_identical_for_any_thread_count(precision, case, backend):
    backend = backend_with_reduced_kernels(backend)
    rng = np.random.default_rng([13, len(case)])
    T, B, D, H = 6, 40, 24, 128  # enough rows per step for the kernels to split the batch
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    weights = make_weights(rng, case, D, H)
    states = make_states(rng, case, B, H)
    lengths = rng.integers(0, T + 1, B)
    results = [run(case, precision, x, weights, states, backend=backend, lengths=lengths,
                   packed=True, n_threads=n) for n in (1, 2, 3)]
    for n, (y, finals) in zip((2, 3), results[1:]):
        assert np.array_equal(y, results[0][0]), f"{case} {precision} {backend}: y differs with {n} threads"
        for a, e in zip(finals, results[0][1]):
            assert np.array_equal(a, e), f"{case} {precision} {backend}: a final state differs with {n} threads"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CELLS))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_step_loop_matches_forward(precision, case, backend):
    backend = backend_with_reduced_kernels(backend)
    cell, _, options, projected = CELLS[case]
    rng = np.random.default_rng([17, len(case)])
    T, B, D, H = 5, 3, 6, 8
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    weights = make_weights(rng, case, D, H)
    states = make_states(rng, case, B, H)
    packed = pack_cell(cell, weights, backend=backend, precision=precision, **options)
    assert packed.precision == precision
    y, finals = run(case, precision, x, weights, states, backend=backend, packed=True)
    state = states[0] if cell != "lstm" else tuple(states)
    for t in range(T):
        y_t, state = packed.step(x[t], state)
        context = f"{case} {precision} {backend} step {t}"
        if backend == "python" and precision == "int8":
            assert np.array_equal(y_t, y[t]), f"{context}: differs from the forward pass"
        else:
            assert_close(y_t, y[t], INVARIANT[np.dtype(np.float32)], context, "y_t")
    last = [state] if cell != "lstm" else list(state)
    for a, e in zip(last, finals):
        assert_close(a, e, INVARIANT[np.dtype(np.float32)], f"{case} {precision} {backend}", "state")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_functional_forwards_match_reference_with_batch_first_and_ends(precision):
    """The public forwards (not the runner): batch_first and ends, against the rows run alone."""
    rng = np.random.default_rng(19)
    T, B, D, H = 7, 3, 4, 6
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    ends = np.array([7, 2, 0])
    for case, forward in [("rnn-tanh", fastrnn.rnn_forward), ("lstm", fastrnn.lstm_forward),
                          ("gru", fastrnn.gru_forward)]:
        weights = make_weights(rng, case, D, H)
        states = make_states(rng, case, B, H)
        names = ["h0", "c0"][:len(states)]
        y, finals, cache = forward(x.transpose(1, 0, 2), **weights, **dict(zip(names, states)),
                                   batch_first=True, requires_grad=False, ends=ends,
                                   precision=precision, backend="python")
        assert cache is None
        y_full, _ = reference_direction(case, precision, x, weights, states, np.full(B, T), False)
        _, finals_ref = reference_direction(case, precision, x, weights, states, ends, False)
        finals = list(finals) if isinstance(finals, tuple) else [finals]
        assert np.array_equal(y.transpose(1, 0, 2), y_full), f"{case} {precision}: y differs"
        for a, e in zip(finals, finals_ref):
            assert np.array_equal(a, e), f"{case} {precision}: a state at ends differs"
