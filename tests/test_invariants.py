"""Properties every backend must have, whatever its inner order of operations:

* a whole sequence equals the same sequence fed in chunks, with the state carried
  forward and the state's gradient carried backward;
* a batch equals its rows run one by one;
* ``n_threads=1`` and ``n_threads=2`` give bit-identical results (compiled backends),
  on a case large enough to be cut into several batch chunks and time blocks.
"""

import numpy as np
import pytest

import fastrnn
from cases import COLUMN_SPLIT, MULTI_CHUNK, MULTI_CHUNK_RELU, SMALL_CASES, case_params
from fastrnn._parallel import batch_chunks, step_column_threads, time_blocks
from helpers import assert_close, assert_results_identical, forward_kwargs, run_case
from tolerances import INVARIANT

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
#: Cases with enough steps and rows to cut.
SPLITTABLE = [case for case in SMALL_CASES if case.T >= 3 and case.B >= 2]


def run_time_major(arrays, nonlinearity, backend, dy, dh_n):
    """Forward and backward on time-major arrays; returns y, h_n and the gradient dict."""
    y, h_n, cache = fastrnn.rnn_forward(**forward_kwargs(arrays), nonlinearity=nonlinearity, backend=backend)
    return np.array(y), h_n, fastrnn.rnn_backward(cache, dy=dy, dh_n=dh_n)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(SPLITTABLE))
def test_whole_sequence_equals_chunks_with_carried_state(case, any_backend, dtype):
    """Steps [0, 1), [1, c), [c, T): forward carries h_n into h0; backward carries grads['h0'] into dh_n."""
    context = case.describe(any_backend, dtype) + " (whole vs chunks of steps)"
    arrays = {name: np.ascontiguousarray(value.astype(dtype)) for name, value in case.reference_arrays(dtype).items()}
    arrays.setdefault("h0", np.zeros((case.B, case.H), dtype))
    y, h_n, grads = run_time_major(arrays, case.nonlinearity, any_backend, arrays["dy"], arrays["dh_n"])

    bounds = [0, 1, (case.T + 1) // 2 + 1, case.T]
    pieces, h = [], arrays["h0"]
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        piece = dict(arrays, x=arrays["x"][t0:t1], h0=h)
        out = fastrnn.rnn_forward(**forward_kwargs(piece), nonlinearity=case.nonlinearity, backend=any_backend)
        pieces.append((piece, out[2], t0, t1))
        h = out[1]
    tolerance = INVARIANT[np.dtype(dtype)]
    assert_close(np.concatenate([np.asarray(p[1].y) for p in pieces]), y, tolerance, context, "y")
    assert_close(h, h_n, tolerance, context, "h_n")

    carried = arrays["dh_n"]
    total = {name: 0 for name in grads if name not in ("x", "h0")}
    dx = []
    for piece, cache, t0, t1 in reversed(pieces):
        g = fastrnn.rnn_backward(cache, dy=arrays["dy"][t0:t1], dh_n=carried)
        carried = g["h0"]
        dx.insert(0, g["x"])
        for name in total:
            total[name] = total[name] + g[name]
    assert_close(np.concatenate(dx), grads["x"], tolerance, context, "gradient x")
    assert_close(carried, grads["h0"], tolerance, context, "gradient h0")
    for name, value in total.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(SPLITTABLE))
def test_batch_equals_rows_one_by_one(case, any_backend, dtype):
    context = case.describe(any_backend, dtype) + " (batch vs rows one by one)"
    arrays = {name: np.ascontiguousarray(value.astype(dtype)) for name, value in case.reference_arrays(dtype).items()}
    arrays.setdefault("h0", np.zeros((case.B, case.H), dtype))
    y, h_n, grads = run_time_major(arrays, case.nonlinearity, any_backend, arrays["dy"], arrays["dh_n"])

    tolerance = INVARIANT[np.dtype(dtype)]
    weight_grads = {name: 0 for name in grads if name not in ("x", "h0")}
    for b in range(case.B):
        rows = dict(arrays, x=arrays["x"][:, b:b + 1], h0=arrays["h0"][b:b + 1])
        y_b, h_b, g = run_time_major(rows, case.nonlinearity, any_backend, arrays["dy"][:, b:b + 1],
                                     arrays["dh_n"][b:b + 1])
        row = f"{context} row {b}"
        assert_close(y_b, y[:, b:b + 1], tolerance, row, "y")
        assert_close(h_b, h_n[b:b + 1], tolerance, row, "h_n")
        assert_close(g["x"], grads["x"][:, b:b + 1], tolerance, row, "gradient x")
        assert_close(g["h0"], grads["h0"][b:b + 1], tolerance, row, "gradient h0")
        for name in weight_grads:
            weight_grads[name] = weight_grads[name] + g[name]
    for name, value in weight_grads.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name} summed over rows")


def test_multi_chunk_cases_really_cut_the_work():
    """Guard: if the thresholds in fastrnn/_parallel.py change, the multi-chunk cases must grow with them."""
    for case in (MULTI_CHUNK, MULTI_CHUNK_RELU):
        T, B, D, H = case.shape
        assert len(batch_chunks(B, H)) - 1 >= 2, f"{case.describe()}: the time loop runs in one batch chunk"
    T, B, D, H = MULTI_CHUNK.shape
    assert len(time_blocks(T, B, D * H)) - 1 >= 2, f"{MULTI_CHUNK.describe()}: the input projection is one block"
    assert len(time_blocks(T, B, (2 * D + H) * H)) - 1 >= 2, f"{MULTI_CHUNK.describe()}: the BPTT GEMMs are one block"
    T, B, D, H = COLUMN_SPLIT.shape
    assert len(batch_chunks(B, H)) - 1 == 1, f"{COLUMN_SPLIT.describe()}: the batch is cut into chunks"
    assert step_column_threads(B, H, 1, 2) == 2, f"{COLUMN_SPLIT.describe()}: steps are not split by columns"


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params([MULTI_CHUNK, MULTI_CHUNK_RELU, COLUMN_SPLIT] + SMALL_CASES[:5]))
def test_n_threads_bit_identical(case, compiled_backend, dtype):
    """Results do not depend on n_threads: 1, 2 and 3 threads and the default agree bit for bit."""
    context = case.describe(compiled_backend, dtype)
    one = run_case(case, compiled_backend, dtype, n_threads=1)
    for n_threads in (2, 3, None):
        other = run_case(case, compiled_backend, dtype, n_threads=n_threads)
        assert_results_identical(other, one, f"{context} n_threads={n_threads} vs 1")
