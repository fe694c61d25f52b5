"""The LSTM backward pass given a gradient with respect to the cell state of every step (``dc``).

``lstm_backward(cache, dy, dh_n, dc_n, dc=...)`` passes ``dc`` to the kernels as
``dc_seq``, added to the carried cell gradient at step ``t`` where ``dy[t]`` is
added to the hidden one. The torch-style module needs it for padded batches: the
gradients of ``h_n`` and ``c_n`` of a row go in at that row's own last valid step.

* the reference's gradients with ``dc`` equal central finite differences, in float64,
  of ``L = sum(dy * y) + sum(dc * c_all) + sum(dh_n * h_n) + sum(dc_n * c_n)``;
* every compiled backend agrees with the reference run in float64 (float64 and float32),
  and ``dc`` of zeros gives the same bits as no ``dc``;
* ``dc`` concentrated at step ``s`` of row ``b`` gives what a forward pass cut after step
  ``s`` with that gradient as ``dc_n`` gives, and rows of different lengths add up;
* a ``dc`` of the wrong shape raises :class:`fastrnn.ShapeError` naming ``dc``, before
  any kernel runs.
"""

from dataclasses import dataclass

import numpy as np
import pytest

import fastrnn
from conformance.cases import Case, lay_out
from conformance.cells import LSTM, require
from conftest import ALL_BACKENDS, COMPILED_BACKENDS
from fastrnn import _backends
from fastrnn._python import lstm as reference_kernels
from helpers import assert_close, finite_difference_gradient
from tolerances import BACKEND_VS_REFERENCE, FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, INVARIANT

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
INPUTS = LSTM.inputs
GRADIENTS = LSTM.gradients


@pytest.fixture(params=COMPILED_BACKENDS)
def lstm_compiled_backend(request):
    return require(LSTM, request.param)


@pytest.fixture(params=ALL_BACKENDS)
def lstm_any_backend(request):
    return require(LSTM, request.param)


@dataclass(frozen=True)
class DcCase(Case):
    """A conformance case of the LSTM, plus a gradient ``dc`` for the cell state of every step."""

    dc_layout: str = "c"          # "c", "fortran" or "strided": how the caller's dc is laid out

    def describe(self, backend, dtype):
        return Case.describe(self, LSTM, backend, dtype) + f" (dc given, dc_layout={self.dc_layout})"

    def arrays(self, dtype):
        """Time-major float64 inputs and loss weights, ``dc`` among them, rounded to ``dtype``."""
        arrays = self.reference_arrays(LSTM, dtype)
        dc = np.random.default_rng((self.seed, 1)).normal(size=(self.T, self.B, self.H))
        arrays["dc"] = dc.astype(dtype).astype(np.float64)
        return arrays


def user_layout(array, case, dtype):
    """A time-major array as the caller passes it: batch-first if the case is, in the case's dc layout."""
    array = np.asarray(array, dtype)
    if case.batch_first:
        array = array.transpose(1, 0, 2)
    return lay_out(array, case.dc_layout)


def run(case, arrays, backend, dtype, dc="given"):
    """Forward and backward through the public API; results time-major, as float arrays."""
    y, (h_n, c_n), cache = fastrnn.lstm_forward(
        *(user_layout(arrays["x"], case, dtype) if name == "x" else np.asarray(arrays[name], dtype)
          for name in INPUTS),
        batch_first=case.batch_first, backend=backend)
    dc_arg = {"given": user_layout(arrays["dc"], case, dtype),
              "zeros": user_layout(np.zeros_like(arrays["dc"]), case, dtype), "none": None}[dc]
    grads = fastrnn.lstm_backward(cache, user_layout(arrays["dy"], case, dtype), np.asarray(arrays["dh_n"], dtype),
                                  np.asarray(arrays["dc_n"], dtype), dc=dc_arg)
    out = {"y": np.asarray(y), "h_n": h_n, "c_n": c_n}
    for name, value in grads.items():
        out["d" + name] = np.asarray(value)
    if case.batch_first:
        out["y"] = out["y"].transpose(1, 0, 2)
        out["dx"] = out["dx"].transpose(1, 0, 2)
    return out


def reference_forward(arrays):
    """The reference kernel's forward pass in float64; returns ``y, h_n, c_n, c_all``."""
    x, w_hh = arrays["x"], arrays["w_hh"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    y, c_all = np.empty((T, B, H)), np.empty((T, B, H))
    h_n, c_n, gates = np.empty((B, H)), np.empty((B, H)), np.empty((T, B, 4 * H))
    reference_kernels.lstm_forward(x, arrays["w_ih"], w_hh, arrays["b_ih"] + arrays["b_hh"], arrays["h0"],
                                   arrays["c0"], y, h_n, c_n, gates, c_all, 1)
    return y, h_n, c_n, c_all


# ------------------------------------------------------------------------------------------
# (a) the reference against finite differences
# ------------------------------------------------------------------------------------------


def loss(arrays):
    y, h_n, c_n, c_all = reference_forward(arrays)
    return float(np.sum(arrays["dy"] * y) + np.sum(arrays["dc"] * c_all)
                 + np.sum(arrays["dh_n"] * h_n) + np.sum(arrays["dc_n"] * c_n))


FD_CASES = [
    DcCase("fd_small", seed=701, T=3, B=2, D=3, H=2),
    DcCase("fd_batch_first", seed=702, T=4, B=2, D=2, H=3, batch_first=True),
    DcCase("fd_one_step", seed=703, T=1, B=1, D=2, H=2),
]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda case: case.name)
def test_reference_gradients_with_dc_match_finite_differences(case):
    arrays = case.arrays(np.float64)
    context = case.describe("python", np.float64)
    got = run(case, arrays, "python", np.float64)
    for name in GRADIENTS:
        numeric = finite_difference_gradient(loss, arrays, name, FINITE_DIFFERENCE_STEP)
        np.testing.assert_allclose(got["d" + name], numeric, **FINITE_DIFFERENCE,
                                   err_msg=f"{context}: gradient {name} vs central finite differences")


def test_reference_dc_is_not_the_same_as_no_dc():
    """Guards the test above: the ``dc`` term must change every gradient it reaches."""
    case = FD_CASES[0]
    arrays = case.arrays(np.float64)
    with_dc = run(case, arrays, "python", np.float64)
    without = run(case, arrays, "python", np.float64, dc="none")
    for name in GRADIENTS:
        assert not np.allclose(with_dc["d" + name], without["d" + name]), f"{case.describe('python', np.float64)}: {name}"


# ------------------------------------------------------------------------------------------
# (b) every compiled backend against the reference
# ------------------------------------------------------------------------------------------


BACKEND_CASES = [
    DcCase("small", seed=711, T=5, B=3, D=4, H=6),
    DcCase("one_unit_one_row", seed=712, T=4, B=1, D=1, H=1),
    DcCase("units_past_a_block", seed=713, T=3, B=2, D=5, H=70),
    DcCase("batch_first", seed=714, T=6, B=4, D=3, H=5, batch_first=True),
    DcCase("fortran_dc", seed=715, T=4, B=3, D=2, H=4, dc_layout="fortran"),
    DcCase("strided_dc_batch_first", seed=716, T=3, B=5, D=2, H=3, batch_first=True, dc_layout="strided"),
    DcCase("multi_chunk", seed=717, T=6, B=64, D=16, H=128),
]


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", BACKEND_CASES, ids=lambda case: case.name)
def test_compiled_backend_with_dc_matches_reference(case, lstm_compiled_backend, dtype):
    arrays = case.arrays(dtype)
    context = case.describe(lstm_compiled_backend, dtype)
    expected = run(case, arrays, "python", np.float64)
    got = run(case, arrays, lstm_compiled_backend, dtype)
    assert sorted(got) == sorted(expected), context
    for name, value in expected.items():
        assert got[name].dtype == dtype, f"{context}: {name} has dtype {got[name].dtype}"
        assert_close(got[name], value, BACKEND_VS_REFERENCE[np.dtype(dtype)], context, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", [BACKEND_CASES[0], BACKEND_CASES[-1]], ids=lambda case: case.name)
def test_dc_of_zeros_equals_no_dc_bit_for_bit(case, lstm_any_backend, dtype):
    arrays = case.arrays(dtype)
    context = case.describe(lstm_any_backend, dtype)
    zeros = run(case, arrays, lstm_any_backend, dtype, dc="zeros")
    none = run(case, arrays, lstm_any_backend, dtype, dc="none")
    for name, value in none.items():
        np.testing.assert_array_equal(zeros[name], value, err_msg=f"{context}: {name}")


# ------------------------------------------------------------------------------------------
# (c) the semantic the module relies on: dc at step s acts as dc_n of the sequence cut after s
# ------------------------------------------------------------------------------------------


SEMANTIC_CASE = DcCase("semantic", seed=721, T=6, B=4, D=3, H=5)


def truncated_gradients(arrays, b, steps, dh_n, dc_n, backend, dtype):
    """Gradients of row ``b`` alone, run for its first ``steps`` steps, with ``dh_n``/``dc_n`` at the end."""
    inputs = [np.asarray(arrays["x"][:steps, b:b + 1], dtype)]
    inputs += [np.asarray(arrays[name], dtype) for name in ("w_ih", "w_hh", "b_ih", "b_hh")]
    inputs += [np.asarray(arrays[name][b:b + 1], dtype) for name in ("h0", "c0")]
    _, _, cache = fastrnn.lstm_forward(*inputs, backend=backend)
    dy = np.zeros((steps, 1, arrays["dy"].shape[2]), dtype)
    return fastrnn.lstm_backward(cache, dy, np.asarray(dh_n, dtype)[None], np.asarray(dc_n, dtype)[None])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("b, s", [(0, 0), (2, 3), (3, 5)], ids=["row0_step0", "row2_step3", "row3_last_step"])
def test_dc_at_one_step_equals_dc_n_of_truncated_sequence(lstm_any_backend, dtype, b, s):
    case = SEMANTIC_CASE
    arrays = case.arrays(dtype)
    context = case.describe(lstm_any_backend, dtype) + f" dc at row {b}, step {s}"
    T, B, D, H = case.shape
    dc = np.zeros((T, B, H), dtype)
    dc[s, b] = arrays["dc_n"][b]
    _, _, cache = fastrnn.lstm_forward(*(np.asarray(arrays[name], dtype) for name in INPUTS), backend=lstm_any_backend)
    grads = fastrnn.lstm_backward(cache, dc=dc)
    expected = truncated_gradients(arrays, b, s + 1, np.zeros(H), arrays["dc_n"][b], lstm_any_backend, dtype)
    tolerance = INVARIANT[np.dtype(dtype)]
    expected_dx = np.zeros((T, B, D), dtype)
    expected_dx[:s + 1, b] = expected["x"][:, 0]
    assert_close(grads["x"], expected_dx, tolerance, context, "dx")
    for name in ("h0", "c0"):
        expected_state = np.zeros((B, H), dtype)
        expected_state[b] = expected[name][0]
        assert_close(grads[name], expected_state, tolerance, context, "d" + name)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert_close(grads[name], expected[name], tolerance, context, "d" + name)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_final_state_gradients_at_each_rows_last_step(lstm_any_backend, dtype, batch_first):
    """A padded batch: dh_n through dy and dc_n through dc at each row's last valid step equal
    the sum over rows of each row run alone for its own length."""
    case = SEMANTIC_CASE
    arrays = case.arrays(dtype)
    context = case.describe(lstm_any_backend, dtype) + f" batch_first={batch_first} (variable lengths)"
    T, B, D, H = case.shape
    lengths = [T, 1, 4, 2]
    dy = np.zeros((T, B, H), dtype)
    dc = np.zeros((T, B, H), dtype)
    for b, length in enumerate(lengths):
        dy[length - 1, b] = arrays["dh_n"][b]
        dc[length - 1, b] = arrays["dc_n"][b]
    x = np.asarray(arrays["x"], dtype)
    other = [np.asarray(arrays[name], dtype) for name in INPUTS[1:]]
    if batch_first:
        x, dy, dc = (a.transpose(1, 0, 2) for a in (x, dy, dc))
    _, _, cache = fastrnn.lstm_forward(x, *other, batch_first=batch_first, backend=lstm_any_backend)
    grads = fastrnn.lstm_backward(cache, dy, dc=dc)
    dx = grads["x"].transpose(1, 0, 2) if batch_first else grads["x"]

    expected = {name: np.zeros_like(grads[name]) for name in ("h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")}
    expected_dx = np.zeros((T, B, D), dtype)
    for b, length in enumerate(lengths):
        row = truncated_gradients(arrays, b, length, arrays["dh_n"][b], arrays["dc_n"][b], lstm_any_backend, dtype)
        expected_dx[:length, b] = row["x"][:, 0]
        for name in ("h0", "c0"):
            expected[name][b] = row[name][0]
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            expected[name] += row[name]
    tolerance = INVARIANT[np.dtype(dtype)]
    assert_close(dx, expected_dx, tolerance, context, "dx")
    for name, value in expected.items():
        assert_close(grads[name], value, tolerance, context, "d" + name)


# ------------------------------------------------------------------------------------------
# (d) errors
# ------------------------------------------------------------------------------------------


T, B, D, H = 3, 2, 4, 5


@pytest.fixture
def kernel_calls(lstm_any_backend, monkeypatch):
    """The backend's LSTM backward kernel, wrapped to record each call."""
    _, module = _backends.resolve(lstm_any_backend)
    calls = []
    kernel = module.lstm_backward

    def recording(*args):
        calls.append("lstm_backward")
        return kernel(*args)

    monkeypatch.setattr(module, "lstm_backward", recording)
    return lstm_any_backend, calls


def forward(backend, batch_first=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, D) if batch_first else (T, B, D))
    _, _, cache = fastrnn.lstm_forward(x, rng.uniform(-0.4, 0.4, (4 * H, D)), rng.uniform(-0.4, 0.4, (4 * H, H)),
                                       batch_first=batch_first, backend=backend)
    return cache


DC_ERRORS = {
    "hidden": (False, np.ones((T, B, H + 1)), fastrnn.ShapeError, (T, B, H)),
    "steps": (False, np.ones((T + 1, B, H)), fastrnn.ShapeError, (T, B, H)),
    "final_state_shape": (False, np.ones((B, H)), fastrnn.ShapeError, (T, B, H)),
    "empty_steps": (False, np.ones((0, B, H)), fastrnn.ShapeError, (T, B, H)),
    "time_major_to_batch_first": (True, np.ones((T, B, H)), fastrnn.ShapeError, (B, T, H)),
}


@pytest.mark.parametrize("error_id", list(DC_ERRORS))
def test_dc_of_wrong_shape_raises_naming_dc(error_id, kernel_calls):
    backend, calls = kernel_calls
    batch_first, dc, error_type, expected_shape = DC_ERRORS[error_id]
    cache = forward(backend, batch_first)
    with pytest.raises(error_type) as error:
        fastrnn.lstm_backward(cache, dc=dc)
    message = str(error.value)
    context = f"cell=LSTM backend={backend} case={error_id}: message {message!r}"
    assert message.startswith("dc ") or " dc " in message, context
    assert str(expected_shape).replace(" ", "") in message.replace(" ", ""), context
    assert str(dc.shape).replace(" ", "") in message.replace(" ", ""), context
    assert calls == [], context


def test_dc_of_integers_raises_dtype_error_naming_dc(kernel_calls):
    backend, calls = kernel_calls
    cache = forward(backend)
    with pytest.raises(fastrnn.DTypeError, match=r"^dc must be a float32 or float64 array"):
        fastrnn.lstm_backward(cache, dc=np.ones((T, B, H), dtype=np.int64))
    assert calls == []
