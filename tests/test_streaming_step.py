"""The streaming step (``packed.step``) against the forward functions: on one step
(bit for bit on the Cython backend, where the same code runs), over a loop of steps,
against the float64 reference, and its argument checks."""

import numpy as np
import pytest

import fastrnn
from fastrnn.functional._lstm_proj import lstm_proj_forward
from conftest import isa_levels, isa_variants, require_backend
from helpers import assert_close
from tolerances import BACKEND_VS_REFERENCE, INVARIANT

DTYPES = (np.float32, np.float64)
#: (name, gates, packer, forward, options); "lstm_proj" packs w_hr too
CELLS = {
    "rnn_tanh": (1, fastrnn.pack_rnn, fastrnn.rnn_forward, {"nonlinearity": "tanh"}),
    "rnn_relu": (1, fastrnn.pack_rnn, fastrnn.rnn_forward, {"nonlinearity": "relu"}),
    "lstm": (4, fastrnn.pack_lstm, fastrnn.lstm_forward, {}),
    "lstm_proj": (4, fastrnn.pack_lstm, lstm_proj_forward, {}),
    "gru_after": (3, fastrnn.pack_gru, fastrnn.gru_forward, {"reset_after": True}),
    "gru_before": (3, fastrnn.pack_gru, fastrnn.gru_forward, {"reset_after": False}),
}
D, H, P, B, T = 5, 19, 7, 3, 6   # H not a multiple of any panel width


def weights(cell, dtype, seed=0):
    rng = np.random.default_rng(seed)
    gates = CELLS[cell][0]
    K = P if cell == "lstm_proj" else H
    w = {"w_ih": rng.uniform(-0.5, 0.5, (gates * H, D)), "w_hh": rng.uniform(-0.5, 0.5, (gates * H, K)),
         "b_ih": rng.uniform(-0.5, 0.5, gates * H), "b_hh": rng.uniform(-0.5, 0.5, gates * H)}
    if cell == "lstm_proj":
        w["w_hr"] = rng.uniform(-0.5, 0.5, (P, H))
    return {k: v.astype(dtype) for k, v in w.items()}


def states(cell, dtype, batch=B, seed=1):
    rng = np.random.default_rng(seed)
    K = P if cell == "lstm_proj" else H
    h = rng.uniform(-1, 1, (batch, K)).astype(dtype)
    if cell.startswith("lstm"):
        return h, rng.uniform(-1, 1, (batch, H)).astype(dtype)
    return h


def pack(cell, w, backend):
    _, packer, _, options = CELLS[cell]
    extra = {"w_hr": w["w_hr"]} if "w_hr" in w else {}
    return packer(w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], backend=backend, **options, **extra)


def forward(cell, w, x, state, backend):
    """The forward function on the sequence ``x`` (T, B, D) from ``state``: (y, final state)."""
    _, _, function, options = CELLS[cell]
    if cell.startswith("lstm"):
        args = [w["w_ih"], w["w_hh"]] + ([w["w_hr"]] if cell == "lstm_proj" else [])
        y, finals, _ = function(x, *args, w["b_ih"], w["b_hh"], h0=state[0], c0=state[1],
                                backend=backend, requires_grad=False, **options)
    else:
        y, finals, _ = function(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], h0=state,
                                backend=backend, requires_grad=False, **options)
    return y, finals


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


def inputs(dtype, steps=1, seed=2):
    return np.random.default_rng(seed).uniform(-1, 1, (steps, B, D)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_step_equals_forward_on_one_step(cell, dtype, any_backend):
    w, state, x = weights(cell, dtype), states(cell, dtype), inputs(dtype)
    y, finals = forward(cell, w, x, state, any_backend)
    y_t, new_state = pack(cell, w, any_backend).step(x[0], state)
    context = f"{cell} {np.dtype(dtype)} {any_backend}"
    assert y_t is as_list(new_state)[0]
    for got, expected in zip([y_t, *as_list(new_state)], [y[0], *as_list(finals)]):
        assert got.dtype == dtype and got.shape == expected.shape
        if any_backend == "cython":  # the forward kernels' code on T = 1
            assert np.array_equal(got, expected), f"{context}: the step is not bit-identical"
        else:  # the weights are laid out transposed: BLAS may sum in another order
            assert_close(got, expected, INVARIANT[np.dtype(dtype)], context, "step")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_step_against_float64_reference(cell, dtype, any_backend):
    w, state, x = weights(cell, dtype), states(cell, dtype), inputs(dtype)
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    state64 = tuple(s.astype(np.float64) for s in as_list(state))
    y, finals = forward(cell, w64, x.astype(np.float64), state64 if len(state64) == 2 else state64[0],
                        "python")
    _, new_state = pack(cell, w, any_backend).step(x[0], state)
    for name, got, expected in zip(("h", "c"), as_list(new_state), as_list(finals)):
        assert_close(got, expected, BACKEND_VS_REFERENCE[np.dtype(dtype)],
                     f"{cell} {np.dtype(dtype)} {any_backend}", name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_loop_of_steps_equals_forward(cell, dtype, any_backend):
    w, state, x = weights(cell, dtype), states(cell, dtype), inputs(dtype, T)
    y, finals = forward(cell, w, x, state, any_backend)
    packed = pack(cell, w, any_backend)
    carried, outputs = state, []
    for t in range(T):
        y_t, carried = packed.step(x[t], carried)
        outputs.append(y_t)
    context = f"{cell} {np.dtype(dtype)} {any_backend}"
    # the forward kernels project all T*B rows at once: tiles of other heights may round
    # differently (FMA or not), so the whole sequence agrees within the reordering tolerance
    assert_close(np.stack(outputs), y, INVARIANT[np.dtype(dtype)], context, "y")
    for got, expected in zip(as_list(carried), as_list(finals)):
        assert_close(got, expected, INVARIANT[np.dtype(dtype)], context, "final state")
    if any_backend == "cython":  # and bit for bit the forward function run one step at a time
        carried_fw = state
        for t in range(T):
            _, carried_fw = forward(cell, w, x[t:t + 1], carried_fw, "cython")
        for got, expected in zip(as_list(carried), as_list(carried_fw)):
            assert np.array_equal(got, expected), f"{context}: steps differ from T=1 forwards"


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_out_buffers_and_default_state(cell, any_backend):
    dtype = np.float32
    w, x = weights(cell, dtype), inputs(dtype, 2)
    packed = pack(cell, w, any_backend)
    zeros = tuple(np.zeros_like(s) for s in as_list(states(cell, dtype)))
    _, from_zeros = packed.step(x[0], zeros if len(zeros) == 2 else zeros[0])
    y0, first = packed.step(x[0])  # state None: zeros
    for a, b in zip(as_list(first), as_list(from_zeros)):
        assert np.array_equal(a, b)
    expected = as_list(packed.step(x[1], first)[1])
    buffers = [np.full_like(s, np.nan) for s in as_list(first)]
    if cell.startswith("lstm"):  # the cell state may be updated in place
        buffers[1] = first[1].copy()
        y1, second = packed.step(x[1], (first[0], buffers[1]), out=tuple(buffers))
        assert second[1] is buffers[1]
    else:
        y1, second = packed.step(x[1], first, out=buffers[0])
    assert y1 is buffers[0]
    for a, b in zip(as_list(second), expected):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru_after", "rnn_tanh"])
def test_converted_arguments_take_the_checked_path(cell, any_backend):
    """float16 input and strided arrays are converted, as the forward functions do."""
    w, state, x = weights(cell, np.float32), states(cell, np.float32), inputs(np.float32)
    packed = pack(cell, w, any_backend)
    expected = as_list(packed.step(x[0], state)[1])
    strided = np.asfortranarray(x[0])
    for given in (strided, x[0][:, ::-1][:, ::-1]):
        for a, b in zip(as_list(packed.step(given, state)[1]), expected):
            assert np.array_equal(a, b)
    half = as_list(packed.step(x[0].astype(np.float16), state)[1])
    assert half[0].dtype == np.float32


def test_empty_batch(any_backend):
    packed = pack("lstm", weights("lstm", np.float32), any_backend)
    y, (h, c) = packed.step(np.zeros((0, D), np.float32))
    assert y.shape == h.shape == c.shape == (0, H)


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_errors_name_the_argument(backend):
    from conftest import require_backend

    require_backend(backend)
    packed = pack("lstm", weights("lstm", np.float32), backend)
    x = inputs(np.float32)[0]
    h, c = states("lstm", np.float32)
    cases = [
        ((x[:, :3], (h, c)), {}, fastrnn.ShapeError, "x_t"),
        ((x[0], (h, c)), {}, fastrnn.ShapeError, "x_t"),
        ((x.astype(np.float64), (h, c)), {}, fastrnn.DTypeError, "x_t"),
        ((x.astype(np.float64), (h.astype(np.float64), c.astype(np.float64))), {}, fastrnn.DTypeError,
         "dtype float32"),
        ((x.astype(np.int32), (h, c)), {}, fastrnn.DTypeError, "x_t"),
        ((x, (h[:, :4], c)), {}, fastrnn.ShapeError, "state[0]"),
        ((x, (h, c[:2])), {}, fastrnn.ShapeError, "state[1]"),
        ((x, h), {}, fastrnn.ArgumentError, "state"),
        ((x, (h, c)), {"out": (h, np.empty_like(c))}, fastrnn.ArgumentError, "out[0]"),
        ((x, (h, c)), {"out": (np.empty((B, H), np.float64), np.empty_like(c))}, fastrnn.DTypeError, "out[0]"),
        ((x, (h, c)), {"out": (np.empty_like(h), np.empty((B, H + 1), np.float32))}, fastrnn.ShapeError, "out[1]"),
        ((x, (h, c)), {"out": (np.empty((H, B), np.float32).T, np.empty_like(c))}, fastrnn.ArgumentError, "out[0]"),
        ((x, (h, c)), {"out": (c_shared := np.empty_like(c), c_shared)}, fastrnn.ArgumentError, "out[1]"),
    ]
    for args, kwargs, error, name in cases:
        with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
            packed.step(*args, **kwargs)
    rnn = pack("rnn_tanh", weights("rnn_tanh", np.float32), backend)
    with pytest.raises(fastrnn.ShapeError, match="state"):
        rnn.step(x, np.zeros((B + 1, H), np.float32))
    with pytest.raises(fastrnn.ArgumentError, match="out"):
        rnn.step(x, np.zeros((B, H), np.float32), out=[1.0])


@pytest.mark.parametrize("cell", ["gru_before", "lstm", "lstm_proj"])
def test_large_workspace(cell):
    """A workspace beyond the step's stack buffer (32 KiB) is allocated per call, same results."""
    from conftest import require_backend

    require_backend("cython")
    rng = np.random.default_rng(7)
    gates, _, _, options = CELLS[cell]
    hidden, proj, batch = 300, 40, 4
    K = proj if cell == "lstm_proj" else hidden
    w = {"w_ih": rng.uniform(-0.1, 0.1, (gates * hidden, D)), "w_hh": rng.uniform(-0.1, 0.1, (gates * hidden, K)),
         "b_ih": rng.uniform(-0.1, 0.1, gates * hidden), "b_hh": None}
    if cell == "lstm_proj":
        w["w_hr"] = rng.uniform(-0.1, 0.1, (proj, hidden))
    x = rng.uniform(-1, 1, (1, batch, D))
    state = rng.uniform(-1, 1, (batch, K))
    if cell != "gru_before":
        state = (state, rng.uniform(-1, 1, (batch, hidden)))
    _, finals = forward(cell, w, x, state, "cython")
    _, new_state = pack(cell, w, "cython").step(x[0], state)
    for got, expected in zip(as_list(new_state), as_list(finals)):
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("sizes", [(0, 5), (3, 0), (0, 0)])
def test_empty_input_or_hidden_size(sizes, any_backend):
    d, h = sizes
    packed = fastrnn.pack_gru(np.full((3 * h, d), 0.1), np.full((3 * h, h), 0.1), np.full(3 * h, 0.1),
                              backend=any_backend)
    y_t, _ = packed.step(np.ones((2, d)))
    expected = fastrnn.gru_forward(np.ones((1, 2, d)), packed, requires_grad=False)[0][0]
    assert y_t.shape == (2, h) and np.array_equal(y_t, expected)


def test_threads_share_a_packed_object():
    """The compiled step releases the GIL and keeps its workspace per call: threads may share it."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import require_backend

    require_backend("cython")
    w = weights("lstm", np.float32)
    packed = pack("lstm", w, "cython")
    xs = inputs(np.float32, 40, seed=8)

    def run(offset):
        state = None
        for t in range(offset, 40):
            _, state = packed.step(xs[t], state)
        return state

    expected = [run(k) for k in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    for got, want in zip(results, expected):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def forward_packed(cell, packed, x, state, backend):
    """The forward function on ``x`` with a packed-weights object: (y, final state)."""
    _, _, function, options = CELLS[cell]
    if cell.startswith("lstm"):
        y, finals, _ = function(x, packed, h0=state[0], c0=state[1], backend=backend,
                                requires_grad=False, **options)
    else:
        y, finals, _ = function(x, packed, h0=state, backend=backend, requires_grad=False, **options)
    return y, finals


#: The Cython backend on every ISA level this CPU supports (conftest's _isa_level sets it).
CYTHON_LEVELS = [pytest.param(backend, id=name) for backend, name in isa_variants("cython")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("backend", CYTHON_LEVELS)
def test_cython_step_and_packed_forward_on_every_isa_level(cell, dtype, backend):
    """On each level: the step equals the forward on T = 1, a loop of steps equals T = 1
    forwards, and the forward on packed weights equals the forward on arrays, bit for bit."""
    require_backend("cython")
    w, state = weights(cell, dtype), states(cell, dtype)
    x = inputs(dtype, T)
    packed = pack(cell, w, backend)
    context = f"{cell} {np.dtype(dtype)} {backend}"
    y, finals = forward(cell, w, x, state, backend)
    y_p, finals_p = forward_packed(cell, packed, x, state, backend)
    for got, expected in zip([y_p, *as_list(finals_p)], [y, *as_list(finals)]):
        assert np.array_equal(got, expected), f"{context}: packed forward differs from arrays"
    carried, carried_fw = state, state
    for t in range(T):
        y_t, carried = packed.step(x[t], carried)
        y_fw, carried_fw = forward(cell, w, x[t:t + 1], carried_fw, backend)
        assert np.array_equal(y_t, y_fw[0]), f"{context}: step {t} differs from the T=1 forward"
    for got, expected in zip(as_list(carried), as_list(carried_fw)):
        assert np.array_equal(got, expected), f"{context}: final states differ"


@pytest.mark.parametrize("cell", ["lstm", "gru_after"])
def test_weights_packed_on_another_isa_level_are_refused(cell):
    """The buffers' layout depends on the level: the step and the forward refuse them."""
    require_backend("cython")
    from fastrnn import _cy

    levels = isa_levels()
    if len(levels) < 2:
        pytest.skip("this CPU supports one ISA level")
    w, state, x = weights(cell, np.float32), states(cell, np.float32), inputs(np.float32)
    packed = pack(cell, w, "cython")
    before, why = _cy.isa_level()
    _cy.set_isa_level(levels[-1], reason="set by the test suite")
    try:
        with pytest.raises(fastrnn.StaleCacheError, match="pack them again"):
            packed.step(x[0], state)
        with pytest.raises(fastrnn.StaleCacheError, match="pack them again"):
            forward_packed(cell, packed, x, state, "cython")
        # packed again on this level, they run, as the arrays do
        y, _ = forward_packed(cell, pack(cell, w, "cython"), x, state, "cython")
        assert np.array_equal(y, forward(cell, w, x, state, "cython")[0])
    finally:
        _cy.set_isa_level(before, reason=why)
