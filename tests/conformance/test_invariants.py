"""Properties every backend must have, whatever its inner order of operations:

* a whole sequence equals the same sequence fed in chunks, with the states carried
  forward and their gradients carried backward;
* a batch equals its rows run one by one;
* ``n_threads`` 1, 2, 3 and the default give bit-identical results (compiled backends),
  on cases large enough to be cut into several batch chunks and time blocks.
"""

import numpy as np
import pytest

import fastrnn._threads

from conformance.cases import SMALL_CASES, column_split, matrix, multi_chunk, partition, run
from conformance.cells import CELLS, require
from conftest import COMPILED_BACKENDS
from helpers import assert_close, assert_results_identical
from tolerances import INVARIANT

#: Cases with enough steps and rows to cut, in C order (the layouts are covered against the reference).
SPLITTABLE = [case for case in SMALL_CASES if case.T >= 3 and case.B >= 2 and case.layout == "c"
              and not case.batch_first][:5]


def forward_backward(cell, arrays, backend, loss_weights):
    """Forward and backward on time-major arrays: ``y, states, grads``."""
    y, states, cache = cell.forward(arrays, backend)
    return np.array(y), states, cell.backward(cache, loss_weights)


@pytest.mark.parametrize("cell, case, backend, dtype", matrix(SPLITTABLE, reference_run=True))
def test_whole_sequence_equals_chunks_with_carried_state(cell, case, backend, dtype):
    """Steps [0, 1), [1, c), [c, T): forward carries the final states into the initial ones; backward
    carries the initial states' gradients into the final states' loss weights."""
    require(cell, backend)
    context = case.describe(cell, backend, dtype) + " (whole vs chunks of steps)"
    arrays = case.time_major(cell, dtype)
    y, states, grads = forward_backward(cell, arrays, backend, arrays)
    tolerance = INVARIANT[dtype]

    bounds = [0, 1, (case.T + 1) // 2 + 1, case.T]
    pieces, carried = [], {name: arrays[name] for name in cell.states}
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        out_y, out_states, cache = cell.forward(dict(arrays, x=arrays["x"][t0:t1], **carried), backend)
        pieces.append((np.asarray(out_y), cache, t0, t1))
        carried = {name: out_states[final] for name, final in zip(cell.states, cell.final_states)}
    assert_close(np.concatenate([piece[0] for piece in pieces]), y, tolerance, context, "y")
    for name, final in zip(cell.states, cell.final_states):
        assert_close(carried[name], states[final], tolerance, context, final)

    carried = {"d" + final: arrays["d" + final] for final in cell.final_states}
    total = {name: 0 for name in grads if name not in ("x",) + cell.states}
    dx = []
    for _, cache, t0, t1 in reversed(pieces):
        g = cell.backward(cache, dict(carried, dy=arrays["dy"][t0:t1]))
        carried = {"d" + final: g[name] for name, final in zip(cell.states, cell.final_states)}
        dx.insert(0, g["x"])
        for name in total:
            total[name] = total[name] + g[name]
    assert_close(np.concatenate(dx), grads["x"], tolerance, context, "gradient x")
    for name, final in zip(cell.states, cell.final_states):
        assert_close(carried["d" + final], grads[name], tolerance, context, f"gradient {name}")
    for name, value in total.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name}")


@pytest.mark.parametrize("cell, case, backend, dtype", matrix(SPLITTABLE[:3], reference_run=True))
def test_batch_equals_rows_one_by_one(cell, case, backend, dtype):
    require(cell, backend)
    context = case.describe(cell, backend, dtype) + " (batch vs rows one by one)"
    arrays = case.time_major(cell, dtype)
    y, states, grads = forward_backward(cell, arrays, backend, arrays)
    tolerance = INVARIANT[dtype]
    per_row = ("x", "dy") + cell.states + tuple("d" + final for final in cell.final_states)
    weight_grads = {name: 0 for name in grads if name not in ("x",) + cell.states}
    for b in range(case.B):
        rows = {name: (value[:, b:b + 1] if name in ("x", "dy") else value[b:b + 1]) if name in per_row else value
                for name, value in arrays.items()}
        y_b, states_b, g = forward_backward(cell, rows, backend, rows)
        row = f"{context} row {b}"
        assert_close(y_b, y[:, b:b + 1], tolerance, row, "y")
        for name, value in states_b.items():
            assert_close(value, states[name][b:b + 1], tolerance, row, name)
        assert_close(g["x"], grads["x"][:, b:b + 1], tolerance, row, "gradient x")
        for name in cell.states:
            assert_close(g[name], grads[name][b:b + 1], tolerance, row, f"gradient {name}")
        for name in weight_grads:
            weight_grads[name] = weight_grads[name] + g[name]
    for name, value in weight_grads.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name} summed over rows")


@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_multi_chunk_cases_really_cut_the_work(cell):
    """Guard: the cases derived from the partition thresholds do reach the multi-piece code paths."""
    case = multi_chunk(cell)
    T, B, D, H = case.shape
    G = cell.gates
    assert len(partition.batch_chunks(B, H, G)) - 1 >= 2, f"{case.describe(cell)}: the time loop is one batch chunk"
    if G == 1:  # the Elman cell projects into y in time blocks, the gated cells in projection pieces
        assert len(partition.time_blocks(T, B, D * G * H)) - 1 >= 2, \
            f"{case.describe(cell)}: the input projection is one block"
    else:
        assert len(partition.projection_blocks(T, B, D, 4 * H)[0]) - 1 >= 2, \
            f"{case.describe(cell)}: the input projection is one piece"
    assert len(partition.time_blocks(T, B, (2 * D + H) * G * H)) - 1 >= 2, f"{case.describe(cell)}: BPTT is one block"
    case = column_split(cell)
    T, B, D, H = case.shape
    assert len(partition.batch_chunks(B, H, G)) - 1 == 1, f"{case.describe(cell)}: the batch is cut into chunks"
    assert partition.step_column_threads(B, H, G, 2) == 2, f"{case.describe(cell)}: steps are not split by columns"


def thread_cases(cell):
    return [multi_chunk(cell), column_split(cell), SMALL_CASES[5]]


@pytest.mark.parametrize("cell, case, backend, dtype", matrix(thread_cases, COMPILED_BACKENDS))
def test_n_threads_bit_identical(cell, case, backend, dtype, monkeypatch):
    """Results do not depend on n_threads: 1, 2 and 3 threads and the default agree bit for bit."""
    require(cell, backend)
    # calls cap n_threads at the cores; pretend to have more so that 3 threads really run
    monkeypatch.setattr(fastrnn._threads, "available_cores", lambda: 8)
    context = case.describe(cell, backend, dtype)
    one = run(cell, case, backend, dtype, n_threads=1)
    for n_threads in (2, 3, None):
        assert_results_identical(run(cell, case, backend, dtype, n_threads=n_threads), one,
                                 f"{context} n_threads={n_threads} vs 1")
