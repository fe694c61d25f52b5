"""The LSTM layer: its reference trusted on its own evidence, every compiled backend against it,
the invariants, agreement with torch.nn.LSTM, and errors and empty input.

* the reference's forward pass agrees with an independent scalar loop (``math.exp``,
  ``math.tanh``), and its BPTT with central finite differences in float64 for every
  gradient (input, both initial states, both weights, both biases);
* every compiled backend that has LSTM kernels agrees with the reference run in float64
  on a deterministic case set (float64 and float32), and accepts the reference's workspace;
* a whole sequence equals its chunks with ``h`` and ``c`` carried, a batch equals its
  rows one by one, and ``n_threads`` does not change a single bit;
* torch.nn.LSTM given the same weights gives the same outputs and gradients.

The loss behind every gradient is ``L = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n)``.
"""

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

import fastrnn
from cases import _lay_out
from conftest import ALL_BACKENDS, COMPILED_BACKENDS, require_backend
from fastrnn import _backends
from fastrnn._parallel import batch_chunks, time_blocks
from helpers import assert_close, assert_results_close, assert_results_identical
from tolerances import (BACKEND_VS_REFERENCE, FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, INVARIANT,
                        TORCH_PARITY)

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
BIASES = {"both": ("b_ih", "b_hh"), "none": (), "ih": ("b_ih",), "hh": ("b_hh",)}
INPUTS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
GRADIENTS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")


# ------------------------------------------------------------------------------------------
# Backends: only those whose module has the LSTM kernels
# ------------------------------------------------------------------------------------------


def require_lstm_backend(name):
    """``name`` if it loads and has LSTM kernels; otherwise skip (or fail, see conftest)."""
    return require_backend(name, kernel="lstm_forward")


@pytest.fixture(params=COMPILED_BACKENDS)
def lstm_compiled_backend(request):
    return require_lstm_backend(request.param)


@pytest.fixture(params=ALL_BACKENDS)
def lstm_any_backend(request):
    return require_lstm_backend(request.param)


# ------------------------------------------------------------------------------------------
# The case set
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LSTMCase:
    name: str
    seed: int
    T: int
    B: int
    D: int
    H: int
    bias: str = "both"            # which biases are passed: "both", "none", "ih", "hh"
    states: bool = True           # pass h0 and c0 (else the default zeros)
    batch_first: bool = False
    layout: str = "c"             # "c", "fortran", "strided" or "readonly" (see cases.py)
    input_scale: float = 1.0
    weight_scale: float = 1.0     # w_ih, biases ~ U(-k, k) * weight_scale, k = 1/sqrt(H)
    recurrent_scale: float = 1.0  # w_hh ~ U(-k, k) * recurrent_scale
    forget_bias: float = None     # if set, the f block of b_ih (or of b_hh) is this value

    @property
    def shape(self):
        return (self.T, self.B, self.D, self.H)

    def describe(self, backend=None, dtype=None):
        parts = [f"cell=LSTM case={self.name!r}"]
        if backend is not None:
            parts.append(f"backend={backend}")
        if dtype is not None:
            parts.append(f"dtype={np.dtype(dtype).name}")
        parts.append(f"(T, B, D, H)={self.shape} seed={self.seed} bias={self.bias} states={self.states} "
                     f"batch_first={self.batch_first} layout={self.layout}")
        return " ".join(parts)

    def reference_arrays(self, dtype):
        """Time-major C-contiguous float64 inputs (rounded to ``dtype``), plus dy, dh_n, dc_n."""
        rng = np.random.default_rng(self.seed)
        T, B, D, H = self.shape
        k = 1.0 / np.sqrt(max(H, 1))
        values = {
            "x": rng.normal(0.0, self.input_scale, (T, B, D)),
            "w_ih": rng.uniform(-k, k, (4 * H, D)) * self.weight_scale,
            "w_hh": rng.uniform(-k, k, (4 * H, H)) * self.recurrent_scale,
            "b_ih": rng.uniform(-k, k, 4 * H) * self.weight_scale,
            "b_hh": rng.uniform(-k, k, 4 * H) * self.weight_scale,
            "h0": rng.uniform(-0.9, 0.9, (B, H)),
            "c0": rng.normal(0.0, 1.0, (B, H)),
            "dy": rng.normal(size=(T, B, H)),
            "dh_n": rng.normal(size=(B, H)),
            "dc_n": rng.normal(size=(B, H)),
        }
        if self.forget_bias is not None:
            name = "b_ih" if "b_ih" in BIASES[self.bias] else "b_hh"
            values[name][H:2 * H] = self.forget_bias
        out = {}
        for name, value in values.items():
            if name in ("b_ih", "b_hh") and name not in BIASES[self.bias]:
                continue
            if name in ("h0", "c0") and not self.states:
                continue
            out[name] = value.astype(dtype).astype(np.float64)
        return out

    def arrays(self, dtype):
        """The inputs as a caller passes them: dtype, layout, time- or batch-major."""
        out = {}
        for name, value in self.reference_arrays(dtype).items():
            value = value.astype(dtype)
            if self.batch_first and name in ("x", "dy"):
                value = np.ascontiguousarray(value.transpose(1, 0, 2))
            out[name] = _lay_out(value, self.layout)
        return out


SMALL_CASES = [
    LSTMCase("tiny_T1_B1_D1_H1", seed=101, T=1, B=1, D=1, H=1),
    LSTMCase("T1", seed=102, T=1, B=3, D=4, H=5),
    LSTMCase("B1", seed=103, T=6, B=1, D=3, H=4),
    LSTMCase("H1", seed=104, T=6, B=3, D=2, H=1),
    LSTMCase("odd_7_5_3_11", seed=105, T=7, B=5, D=3, H=11),
    LSTMCase("no_bias", seed=106, T=4, B=3, D=2, H=5, bias="none"),
    LSTMCase("only_b_hh", seed=107, T=3, B=2, D=3, H=4, bias="hh"),
    LSTMCase("no_states", seed=108, T=4, B=3, D=3, H=5, states=False),
    LSTMCase("saturated", seed=109, T=5, B=4, D=3, H=6, input_scale=3.0, weight_scale=8.0,
             recurrent_scale=8.0),
    LSTMCase("forget_near_0", seed=110, T=5, B=3, D=3, H=4, forget_bias=-10.0),
    LSTMCase("forget_near_1", seed=111, T=5, B=3, D=3, H=4, forget_bias=10.0),
    LSTMCase("batch_first", seed=112, T=5, B=3, D=4, H=6, batch_first=True),
    LSTMCase("fortran_order", seed=113, T=5, B=3, D=4, H=6, layout="fortran"),
    LSTMCase("strided", seed=114, T=4, B=3, D=5, H=6, layout="strided"),
    LSTMCase("read_only", seed=115, T=4, B=3, D=5, H=6, layout="readonly"),
    LSTMCase("batch_first_strided_no_bias", seed=116, T=4, B=3, D=2, H=5, batch_first=True,
             layout="strided", bias="none"),
]
#: One long sequence: errors the recurrence accumulates over many steps.
LONG = LSTMCase("long_T2000_B1", seed=120, T=2000, B=1, D=3, H=4)
#: Large enough that batch_chunks(B, H, 4) cuts the time loop into 2 chunks, and the
#: backward GEMMs into several time blocks (checked by test_multi_chunk_case_really_cuts).
MULTI_CHUNK = LSTMCase("multi_chunk", seed=121, T=8, B=64, D=16, H=128)
CASES = SMALL_CASES + [LONG, MULTI_CHUNK]


def case_params(cases):
    return [pytest.param(case, id=case.name) for case in cases]


# ------------------------------------------------------------------------------------------
# Running a case
# ------------------------------------------------------------------------------------------


def forward_kwargs(arrays):
    return {name: arrays[name] for name in INPUTS if name in arrays}


def collect(y, h_n, c_n, grads, batch_first):
    out = {"y": np.asarray(y).transpose(1, 0, 2) if batch_first else np.asarray(y),
           "h_n": np.asarray(h_n), "c_n": np.asarray(c_n)}
    for name, value in grads.items():
        value = np.asarray(value)
        out["d" + name] = value.transpose(1, 0, 2) if (batch_first and name == "x") else value
    return out


def run_case(case, backend, dtype, n_threads=None, arrays=None):
    arrays = case.arrays(dtype) if arrays is None else arrays
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**forward_kwargs(arrays), batch_first=case.batch_first,
                                                backend=backend, n_threads=n_threads)
    grads = fastrnn.lstm_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"])
    return collect(y, h_n, c_n, grads, case.batch_first)


@functools.lru_cache(maxsize=None)
def reference(case, dtype):
    """The reference backend in float64 on the case's inputs rounded to ``dtype``."""
    arrays = case.reference_arrays(np.dtype(dtype))
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**forward_kwargs(arrays), backend="python")
    grads = fastrnn.lstm_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"])
    result = collect(y, h_n, c_n, grads, batch_first=False)
    for value in result.values():
        value.flags.writeable = False
    return result


# ------------------------------------------------------------------------------------------
# The reference on its own evidence
# ------------------------------------------------------------------------------------------


def scalar_loop_forward(arrays):
    """The LSTM equations entry by entry with Python floats, math.exp and math.tanh."""
    x, w_ih, w_hh = arrays["x"], arrays["w_ih"], arrays["w_hh"]
    T, B, D = x.shape
    H = w_hh.shape[1]
    b_ih = arrays.get("b_ih", np.zeros(4 * H))
    b_hh = arrays.get("b_hh", np.zeros(4 * H))
    h = arrays.get("h0", np.zeros((B, H))).tolist()
    c = arrays.get("c0", np.zeros((B, H))).tolist()

    def sigma(v):
        return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))

    ys = np.zeros((T, B, H))
    for t in range(T):
        new_h = [[0.0] * H for _ in range(B)]
        new_c = [[0.0] * H for _ in range(B)]
        for b in range(B):
            z = [b_ih[r] + b_hh[r] + math.fsum(w_ih[r, k] * x[t, b, k] for k in range(D))
                 + math.fsum(w_hh[r, k] * h[b][k] for k in range(H)) for r in range(4 * H)]
            for j in range(H):
                i, f = sigma(z[j]), sigma(z[H + j])
                g, o = math.tanh(z[2 * H + j]), sigma(z[3 * H + j])
                new_c[b][j] = f * c[b][j] + i * g
                new_h[b][j] = o * math.tanh(new_c[b][j])
        h, c = new_h, new_c
        ys[t] = h
    return ys, np.array(h), np.array(c)


@pytest.mark.parametrize("case", case_params(SMALL_CASES))
def test_reference_forward_matches_scalar_loops(case):
    arrays = case.reference_arrays(np.float64)
    context = case.describe("python", np.float64)
    expected_y, expected_h, expected_c = scalar_loop_forward(arrays)
    y, (h_n, c_n), _ = fastrnn.lstm_forward(**forward_kwargs(arrays), backend="python")
    for name, got, expected in (("y", y, expected_y), ("h_n", h_n, expected_h), ("c_n", c_n, expected_c)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14, err_msg=f"{context}: {name}")


def test_hand_checked_scalar_one_step(lstm_any_backend):
    """T=B=D=H=1: every gate worked out by hand, forward and backward."""
    x, h0, c0 = 0.5, -0.3, 0.8
    w_ih = np.array([0.4, -0.6, 0.9, 0.2])        # rows i, f, g, o
    w_hh = np.array([0.3, 0.5, -0.7, 0.1])
    b = np.array([0.1, 0.2, -0.1, 0.05])
    z = w_ih * x + w_hh * h0 + b
    sig = [1 / (1 + math.exp(-v)) for v in z]
    i, f, g, o = sig[0], sig[1], math.tanh(z[2]), sig[3]
    c1 = f * c0 + i * g
    h1 = o * math.tanh(c1)
    dy, dh_n, dc_n = 0.7, -0.25, 1.3
    dh = dy + dh_n
    tc = math.tanh(c1)
    dc = dc_n + dh * o * (1 - tc * tc)
    dz = np.array([dc * g * i * (1 - i), dc * c0 * f * (1 - f), dc * i * (1 - g * g), dh * tc * o * (1 - o)])
    expected = {"y": h1, "h_n": h1, "c_n": c1, "x": dz @ w_ih, "h0": dz @ w_hh, "c0": dc * f,
                "w_ih": dz * x, "w_hh": dz * h0, "b_ih": dz}

    y, (h_n, c_n), cache = fastrnn.lstm_forward(
        np.array([[[x]]]), w_ih.reshape(4, 1), w_hh.reshape(4, 1), b_ih=b, h0=np.array([[h0]]),
        c0=np.array([[c0]]), backend=lstm_any_backend)
    grads = fastrnn.lstm_backward(cache, dy=np.array([[[dy]]]), dh_n=np.array([[dh_n]]), dc_n=np.array([[dc_n]]))
    got = {"y": y, "h_n": h_n, "c_n": c_n, **grads}
    context = f"cell=LSTM backend={lstm_any_backend} dtype=float64 (T, B, D, H)=(1, 1, 1, 1) seed=none (hand-checked)"
    assert sorted(got) == sorted(expected), context
    for name, value in expected.items():
        np.testing.assert_allclose(np.ravel(got[name]), np.ravel(value), rtol=1e-13, atol=1e-15,
                                   err_msg=f"{context}: {name}")


def loss(arrays):
    y, (h_n, c_n), _ = fastrnn.lstm_forward(**forward_kwargs(arrays), backend="python", requires_grad=False)
    return float(np.sum(y * arrays["dy"]) + np.sum(h_n * arrays["dh_n"]) + np.sum(c_n * arrays["dc_n"]))


def finite_difference_gradient(arrays, name, step):
    grad = np.zeros_like(arrays[name])
    for index in np.ndindex(grad.shape):
        shifted = {key: value.copy() for key, value in arrays.items()}
        shifted[name][index] += step
        up = loss(shifted)
        shifted[name][index] -= 2 * step
        down = loss(shifted)
        grad[index] = (up - down) / (2 * step)
    return grad


FD_CASES = [
    LSTMCase("fd_both_biases", seed=131, T=3, B=2, D=3, H=2),
    LSTMCase("fd_only_b_ih_no_states", seed=132, T=3, B=2, D=2, H=3, bias="ih", states=False),
    LSTMCase("fd_forget_near_1", seed=133, T=4, B=1, D=2, H=2, forget_bias=3.0, weight_scale=2.0),
]


@pytest.mark.parametrize("case", case_params(FD_CASES))
def test_reference_gradients_match_finite_differences(case):
    arrays = case.reference_arrays(np.float64)
    context = case.describe("python", np.float64)
    _, _, cache = fastrnn.lstm_forward(**forward_kwargs(arrays), backend="python")
    grads = fastrnn.lstm_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"])
    expected_names = {"x", "h0", "c0", "w_ih", "w_hh"} | {name for name in ("b_ih", "b_hh") if name in arrays}
    assert set(grads) == expected_names, f"{context}: gradients returned {sorted(grads)}"
    arrays.setdefault("h0", np.zeros((case.B, case.H)))
    arrays.setdefault("c0", np.zeros((case.B, case.H)))
    for name in GRADIENTS:
        if name not in grads:
            continue
        numeric = finite_difference_gradient(arrays, name, FINITE_DIFFERENCE_STEP)
        assert grads[name].shape == numeric.shape, f"{context}: gradient {name} has shape {grads[name].shape}"
        np.testing.assert_allclose(grads[name], numeric, **FINITE_DIFFERENCE,
                                   err_msg=f"{context}: gradient {name} vs central finite differences")


# ------------------------------------------------------------------------------------------
# Compiled backends against the reference
# ------------------------------------------------------------------------------------------


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(CASES))
def test_compiled_matches_reference(case, lstm_compiled_backend, dtype):
    context = case.describe(lstm_compiled_backend, dtype)
    result = run_case(case, lstm_compiled_backend, dtype)
    for name, value in result.items():
        assert value.dtype == np.dtype(dtype), f"{context}: {name} has dtype {value.dtype}"
    assert_results_close(result, reference(case, np.dtype(dtype)), BACKEND_VS_REFERENCE[np.dtype(dtype)], context)


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(SMALL_CASES[::3]))
def test_backward_accepts_reference_cache(case, lstm_compiled_backend, dtype):
    """The workspace is part of the contract: a compiled backward runs on the reference forward's cache."""
    context = case.describe(lstm_compiled_backend, dtype) + " (forward on python, backward on compiled)"
    arrays = case.arrays(dtype)
    _, _, cache = fastrnn.lstm_forward(**forward_kwargs(arrays), batch_first=case.batch_first, backend="python")
    gradients = dict(dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"])
    expected = fastrnn.lstm_backward(cache, **gradients)
    cache.backend = lstm_compiled_backend
    grads = fastrnn.lstm_backward(cache, **gradients)
    assert sorted(grads) == sorted(expected), context
    for name in expected:
        assert grads[name].dtype == np.dtype(dtype), f"{context}: gradient {name} has dtype {grads[name].dtype}"
        assert_close(grads[name], expected[name], INVARIANT[np.dtype(dtype)], context, f"gradient {name}")


@pytest.mark.parametrize("case", case_params(SMALL_CASES[:6]))
def test_inference_matches_training_forward(case, lstm_any_backend):
    """``requires_grad=False`` gives the same outputs, no cache, and does not keep c of every step."""
    context = case.describe(lstm_any_backend, np.float64)
    arrays = case.arrays(np.float64)
    kwargs = dict(forward_kwargs(arrays), batch_first=case.batch_first, backend=lstm_any_backend)
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**kwargs)
    y2, (h_n2, c_n2), cache2 = fastrnn.lstm_forward(**kwargs, requires_grad=False)
    assert cache is not None and cache2 is None, context
    assert cache.c_all.shape == (case.T, case.B, case.H), context
    np.testing.assert_array_equal(y2, y, err_msg=context)
    np.testing.assert_array_equal(h_n2, h_n, err_msg=context)
    np.testing.assert_array_equal(c_n2, c_n, err_msg=context)


def test_inference_kernel_gets_empty_cell_workspace(lstm_any_backend, monkeypatch):
    """With requires_grad=False the kernel receives c_all of shape (0, B, H)."""
    _, module = _backends.resolve(lstm_any_backend)
    seen = []
    kernel = module.lstm_forward

    def spy(*args):
        seen.append(args[10].shape)
        return kernel(*args)

    monkeypatch.setattr(module, "lstm_forward", spy)
    arrays = SMALL_CASES[4].arrays(np.float64)
    fastrnn.lstm_forward(**forward_kwargs(arrays), backend=lstm_any_backend, requires_grad=False)
    fastrnn.lstm_forward(**forward_kwargs(arrays), backend=lstm_any_backend)
    T, B, _, H = SMALL_CASES[4].shape
    assert seen == [(0, B, H), (T, B, H)], f"backend={lstm_any_backend}: c_all shapes {seen}"


@pytest.mark.parametrize("case", case_params(SMALL_CASES[::2]))
def test_inputs_are_not_modified(case, lstm_any_backend):
    context = case.describe(lstm_any_backend, np.float64)
    arrays = case.arrays(np.float64)
    before = {name: value.copy() for name, value in arrays.items()}
    run_case(case, lstm_any_backend, np.float64, arrays=arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{context}: {name} was modified")


# ------------------------------------------------------------------------------------------
# Invariants
# ------------------------------------------------------------------------------------------

SPLITTABLE = [case for case in SMALL_CASES if case.T >= 3 and case.B >= 2][:6]


def time_major(case, dtype):
    arrays = {name: np.ascontiguousarray(value.astype(dtype)) for name, value in case.reference_arrays(dtype).items()}
    arrays.setdefault("h0", np.zeros((case.B, case.H), dtype))
    arrays.setdefault("c0", np.zeros((case.B, case.H), dtype))
    return arrays


def run_time_major(arrays, backend, dy, dh_n, dc_n):
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**forward_kwargs(arrays), backend=backend)
    return np.array(y), h_n, c_n, fastrnn.lstm_backward(cache, dy=dy, dh_n=dh_n, dc_n=dc_n)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(SPLITTABLE))
def test_whole_sequence_equals_chunks_with_carried_state(case, lstm_any_backend, dtype):
    """Forward carries (h_n, c_n) into (h0, c0); backward carries the gradients of (h0, c0) into (dh_n, dc_n)."""
    context = case.describe(lstm_any_backend, dtype) + " (whole vs chunks of steps)"
    arrays = time_major(case, dtype)
    y, h_n, c_n, grads = run_time_major(arrays, lstm_any_backend, arrays["dy"], arrays["dh_n"], arrays["dc_n"])

    bounds = [0, 1, (case.T + 1) // 2 + 1, case.T]
    pieces, h, c = [], arrays["h0"], arrays["c0"]
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        piece = dict(arrays, x=arrays["x"][t0:t1], h0=h, c0=c)
        out_y, (h, c), cache = fastrnn.lstm_forward(**forward_kwargs(piece), backend=lstm_any_backend)
        pieces.append((np.asarray(out_y), cache, t0, t1))
    tolerance = INVARIANT[np.dtype(dtype)]
    assert_close(np.concatenate([p[0] for p in pieces]), y, tolerance, context, "y")
    assert_close(h, h_n, tolerance, context, "h_n")
    assert_close(c, c_n, tolerance, context, "c_n")

    carried_h, carried_c = arrays["dh_n"], arrays["dc_n"]
    total = {name: 0 for name in grads if name not in ("x", "h0", "c0")}
    dx = []
    for _, cache, t0, t1 in reversed(pieces):
        g = fastrnn.lstm_backward(cache, dy=arrays["dy"][t0:t1], dh_n=carried_h, dc_n=carried_c)
        carried_h, carried_c = g["h0"], g["c0"]
        dx.insert(0, g["x"])
        for name in total:
            total[name] = total[name] + g[name]
    assert_close(np.concatenate(dx), grads["x"], tolerance, context, "gradient x")
    assert_close(carried_h, grads["h0"], tolerance, context, "gradient h0")
    assert_close(carried_c, grads["c0"], tolerance, context, "gradient c0")
    for name, value in total.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(SPLITTABLE[:4]))
def test_batch_equals_rows_one_by_one(case, lstm_any_backend, dtype):
    context = case.describe(lstm_any_backend, dtype) + " (batch vs rows one by one)"
    arrays = time_major(case, dtype)
    y, h_n, c_n, grads = run_time_major(arrays, lstm_any_backend, arrays["dy"], arrays["dh_n"], arrays["dc_n"])
    tolerance = INVARIANT[np.dtype(dtype)]
    weight_grads = {name: 0 for name in grads if name not in ("x", "h0", "c0")}
    for b in range(case.B):
        rows = dict(arrays, x=arrays["x"][:, b:b + 1], h0=arrays["h0"][b:b + 1], c0=arrays["c0"][b:b + 1])
        y_b, h_b, c_b, g = run_time_major(rows, lstm_any_backend, arrays["dy"][:, b:b + 1],
                                          arrays["dh_n"][b:b + 1], arrays["dc_n"][b:b + 1])
        row = f"{context} row {b}"
        assert_close(y_b, y[:, b:b + 1], tolerance, row, "y")
        assert_close(h_b, h_n[b:b + 1], tolerance, row, "h_n")
        assert_close(c_b, c_n[b:b + 1], tolerance, row, "c_n")
        assert_close(g["x"], grads["x"][:, b:b + 1], tolerance, row, "gradient x")
        assert_close(g["h0"], grads["h0"][b:b + 1], tolerance, row, "gradient h0")
        assert_close(g["c0"], grads["c0"][b:b + 1], tolerance, row, "gradient c0")
        for name in weight_grads:
            weight_grads[name] = weight_grads[name] + g[name]
    for name, value in weight_grads.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name} summed over rows")


def test_multi_chunk_case_really_cuts():
    """Guard: if the thresholds in fastrnn/_parallel.py change, MULTI_CHUNK must grow with them."""
    T, B, D, H = MULTI_CHUNK.shape
    assert len(batch_chunks(B, H, 4)) - 1 >= 2, f"{MULTI_CHUNK.describe()}: the time loop runs in one batch chunk"
    assert len(time_blocks(T, B, (2 * D + H) * 4 * H)) - 1 >= 2, \
        f"{MULTI_CHUNK.describe()}: the BPTT GEMMs are one block"


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params([MULTI_CHUNK, SMALL_CASES[4]]))
def test_n_threads_bit_identical(case, lstm_compiled_backend, dtype):
    context = case.describe(lstm_compiled_backend, dtype)
    one = run_case(case, lstm_compiled_backend, dtype, n_threads=1)
    for n_threads in (2, None):
        other = run_case(case, lstm_compiled_backend, dtype, n_threads=n_threads)
        assert_results_identical(other, one, f"{context} n_threads={n_threads} vs 1")


# ------------------------------------------------------------------------------------------
# torch.nn.LSTM
# ------------------------------------------------------------------------------------------

TORCH_NAMES = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
TORCH_CASES = [
    LSTMCase("torch_both_biases", seed=141, T=5, B=3, D=4, H=6),
    LSTMCase("torch_no_bias", seed=142, T=4, B=2, D=3, H=5, bias="none"),
    LSTMCase("torch_only_b_ih_batch_first", seed=143, T=4, B=3, D=2, H=4, bias="ih", batch_first=True),
    LSTMCase("torch_no_states_batch_first", seed=144, T=3, B=2, D=3, H=3, states=False, batch_first=True),
    LSTMCase("torch_saturated", seed=145, T=4, B=2, D=3, H=4, input_scale=3.0, weight_scale=8.0,
             recurrent_scale=8.0),
]


@functools.lru_cache(maxsize=None)
def torch_lstm(case, dtype):
    torch = pytest.importorskip("torch")
    arrays = case.reference_arrays(dtype)
    tdtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[np.dtype(dtype)]
    has_bias = any(name in arrays for name in ("b_ih", "b_hh"))
    lstm = torch.nn.LSTM(case.D, case.H, bias=has_bias, batch_first=case.batch_first, dtype=tdtype)

    def tensor(value):
        return torch.tensor(np.ascontiguousarray(value), dtype=tdtype)

    with torch.no_grad():
        for name, torch_name in TORCH_NAMES.items():
            if hasattr(lstm, torch_name):
                getattr(lstm, torch_name).copy_(tensor(arrays[name]) if name in arrays else 0.0)
    x = tensor(arrays["x"].transpose(1, 0, 2) if case.batch_first else arrays["x"]).requires_grad_(True)
    h0 = tensor(arrays.get("h0", np.zeros((case.B, case.H)))[None]).requires_grad_(True)
    c0 = tensor(arrays.get("c0", np.zeros((case.B, case.H)))[None]).requires_grad_(True)
    y, (h_n, c_n) = lstm(x, (h0, c0))
    dy = arrays["dy"].transpose(1, 0, 2) if case.batch_first else arrays["dy"]
    loss = ((y * tensor(dy)).sum() + (h_n[0] * tensor(arrays["dh_n"])).sum()
            + (c_n[0] * tensor(arrays["dc_n"])).sum())
    loss.backward()
    out = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy()[0], "c_n": c_n.detach().numpy()[0],
           "dx": x.grad.numpy(), "dh0": h0.grad.numpy()[0], "dc0": c0.grad.numpy()[0]}
    for name, torch_name in TORCH_NAMES.items():
        if name in arrays:
            out["d" + name] = getattr(lstm, torch_name).grad.numpy()
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(TORCH_CASES))
def test_matches_torch(case, lstm_any_backend, dtype):
    pytest.importorskip("torch")
    context = case.describe(lstm_any_backend, dtype) + " vs torch.nn.LSTM"
    arrays = case.arrays(dtype)
    expected = torch_lstm(case, np.dtype(dtype))
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**forward_kwargs(arrays), batch_first=case.batch_first,
                                                backend=lstm_any_backend)
    grads = fastrnn.lstm_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"])
    got = {"y": y, "h_n": h_n, "c_n": c_n, **{"d" + name: value for name, value in grads.items()}}
    assert sorted(got) == sorted(expected), f"{context}: results {sorted(got)} vs torch's {sorted(expected)}"
    tolerance = TORCH_PARITY[np.dtype(dtype)]
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, f"{context}: {name} has dtype {got[name].dtype}"
        assert_close(got[name], value, tolerance, context, name)


# ------------------------------------------------------------------------------------------
# Errors and empty input
# ------------------------------------------------------------------------------------------

T, B, D, H = 3, 2, 4, 5


def valid_arrays(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(T, B, D)).astype(dtype),
        "w_ih": rng.uniform(-0.4, 0.4, (4 * H, D)).astype(dtype),
        "w_hh": rng.uniform(-0.4, 0.4, (4 * H, H)).astype(dtype),
        "b_ih": rng.uniform(-0.4, 0.4, 4 * H).astype(dtype),
        "b_hh": rng.uniform(-0.4, 0.4, 4 * H).astype(dtype),
        "h0": rng.uniform(-0.5, 0.5, (B, H)).astype(dtype),
        "c0": rng.uniform(-0.5, 0.5, (B, H)).astype(dtype),
    }


@pytest.fixture
def kernel_calls(lstm_any_backend, monkeypatch):
    """The backend's LSTM kernels, wrapped to record each call."""
    _, module = _backends.resolve(lstm_any_backend)
    calls = []
    for name in ("lstm_forward", "lstm_backward"):
        kernel = getattr(module, name)

        def recording(*args, _kernel=kernel, _name=name):
            calls.append(_name)
            return _kernel(*args)

        monkeypatch.setattr(module, name, recording)
    return lstm_any_backend, calls


def shape(*dims):
    return re.escape(str(tuple(dims)))


def changed(name, value):
    def change(arrays):
        arrays[name] = value(arrays)
    return change


def nan_in_c0(arrays):
    arrays["c0"] = arrays["c0"].copy()
    arrays["c0"][0, 1] = np.nan


FORWARD_ERRORS = {
    "w_hh_rows_not_multiple_of_4": (changed("w_hh", lambda a: a["w_hh"][:4 * H - 1]), fastrnn.ShapeError,
                                    [r"\bw_hh must have 4\*H rows for a LSTM", "got shape " + shape(4 * H - 1, H)]),
    "w_ih_rows_not_multiple_of_4": (changed("w_ih", lambda a: a["w_ih"][:4 * H - 1]), fastrnn.ShapeError,
                                    [r"\bw_ih must have shape " + shape(4 * H, D), "got shape " + shape(4 * H - 1, D)]),
    "w_hh_4_rows_H_columns": (changed("w_hh", lambda a: a["w_hh"][:4]), fastrnn.ShapeError,
                              [r"\bw_hh must have shape " + shape(4, 1), "got shape " + shape(4, H)]),
    "b_ih_length_H": (changed("b_ih", lambda a: a["b_ih"][:H]), fastrnn.ShapeError,
                      [r"\bb_ih must have shape " + shape(4 * H), "got shape " + shape(H)]),
    "c0_hidden": (changed("c0", lambda a: np.zeros((B, H + 1))), fastrnn.ShapeError,
                  [r"\bc0 must have shape " + shape(B, H), "got shape " + shape(B, H + 1)]),
    "c0_3d_like_torch": (changed("c0", lambda a: a["c0"][None]), fastrnn.ShapeError,
                         [r"\bc0 must be 2-dimensional", "got shape " + shape(1, B, H)]),
    "c0_float32_rest_float64": (changed("c0", lambda a: a["c0"].astype(np.float32)), fastrnn.DTypeError,
                                [r"\bx is float64 but c0 is float32"]),
    "x_float32_weights_float64": (changed("x", lambda a: a["x"].astype(np.float32)), fastrnn.DTypeError,
                                  [r"\bx is float32 but w_ih is float64"]),
    "c0_nan": (nan_in_c0, fastrnn.NonFiniteError, [r"\bc0 must be finite", "1 NaN or infinite"]),
}


def assert_message(error, patterns, context):
    message = str(error.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{context}: message {message!r} does not match {pattern!r}"


@pytest.mark.parametrize("error_id", list(FORWARD_ERRORS))
def test_forward_rejects_bad_input(error_id, kernel_calls):
    backend, calls = kernel_calls
    change, error_class, patterns = FORWARD_ERRORS[error_id]
    arrays = valid_arrays()
    change(arrays)
    with pytest.raises(error_class) as error:
        fastrnn.lstm_forward(**arrays, backend=backend)
    assert isinstance(error.value, (ValueError, TypeError))
    assert_message(error, patterns, f"cell=LSTM backend={backend} case={error_id}")
    assert calls == [], f"backend={backend} case={error_id}: a kernel ran before the error: {calls}"


def test_kernel_spy_records_a_valid_call(kernel_calls):
    """Guard: the recording wrapper does see kernel calls, so 'no call' above means something."""
    backend, calls = kernel_calls
    _, _, cache = fastrnn.lstm_forward(**valid_arrays(), backend=backend)
    fastrnn.lstm_backward(cache, dh_n=np.ones((B, H)))
    assert calls == ["lstm_forward", "lstm_backward"], f"backend={backend}: {calls}"


@pytest.mark.parametrize("name", ["fortran", "Numba", "", 3])
def test_unknown_backend(name):
    with pytest.raises(fastrnn.UnknownBackendError, match=re.escape(f"got {name!r}")):
        fastrnn.lstm_forward(**valid_arrays(), backend=name)


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_backend_without_lstm_kernels_is_named_in_the_error(name):
    """A backend asked for by name either runs the LSTM or says it has no LSTM kernels; auto always runs."""
    require_backend(name)
    _, module = _backends.resolve(name)
    if hasattr(module, "lstm_forward"):
        _, _, cache = fastrnn.lstm_forward(**valid_arrays(), backend=name)
        assert cache.backend == name
    else:
        with pytest.raises(fastrnn.BackendUnavailableError, match="no lstm_forward kernel"):
            fastrnn.lstm_forward(**valid_arrays(), backend=name)
    _, _, cache = fastrnn.lstm_forward(**valid_arrays(), backend="auto")
    assert hasattr(_backends.resolve(cache.backend)[1], "lstm_forward"), cache.backend


def forward(backend, **changes):
    arrays = dict(valid_arrays(), **changes)
    _, _, cache = fastrnn.lstm_forward(**arrays, backend=backend)
    return arrays, cache


def test_stale_cache_after_x_reshaped_in_place(kernel_calls):
    backend, calls = kernel_calls
    arrays, cache = forward(backend)
    arrays["x"].shape = (T * B, D)
    calls.clear()
    with pytest.raises(fastrnn.StaleCacheError) as error:
        fastrnn.lstm_backward(cache, dy=np.ones((T, B, H)))
    assert_message(error, [r"\bx was changed", "expected an array of shape " + shape(T, B, D),
                           "found " + shape(T * B, D)], f"backend={backend}")
    assert calls == []


def test_stale_cache_after_c0_reshaped_in_place(kernel_calls):
    backend, calls = kernel_calls
    arrays, cache = forward(backend)
    arrays["c0"].shape = (H, B)
    calls.clear()
    with pytest.raises(fastrnn.StaleCacheError, match=r"\bc0 was changed.*" + shape(B, H) + ".*found " + shape(H, B)):
        fastrnn.lstm_backward(cache, dc_n=np.ones((B, H)))
    assert calls == []


BACKWARD_ERRORS = {
    "dc_n_hidden": (dict(dc_n=np.ones((B, H + 1))), [r"\bdc_n must have shape " + shape(B, H),
                                                     "got shape " + shape(B, H + 1)]),
    "dc_n_3d_like_torch": (dict(dc_n=np.ones((1, B, H))), [r"\bdc_n must have shape " + shape(B, H)]),
    "dh_n_batch": (dict(dh_n=np.ones((B + 1, H))), [r"\bdh_n must have shape " + shape(B, H)]),
    "dy_hidden": (dict(dy=np.ones((T, B, H + 1))), [r"\bdy must have shape " + shape(T, B, H)]),
}


@pytest.mark.parametrize("error_id", list(BACKWARD_ERRORS))
def test_backward_rejects_bad_gradients(error_id, kernel_calls):
    backend, calls = kernel_calls
    gradients, patterns = BACKWARD_ERRORS[error_id]
    _, cache = forward(backend)
    calls.clear()
    with pytest.raises(fastrnn.ShapeError) as error:
        fastrnn.lstm_backward(cache, **gradients)
    assert_message(error, patterns, f"cell=LSTM backend={backend} case={error_id}")
    assert calls == []


def test_backward_rejects_rnn_cache_and_none(lstm_any_backend):
    _, _, rnn_cache = fastrnn.rnn_forward(np.ones((2, 1, 1)), np.ones((1, 1)), np.ones((1, 1)), backend="python")
    with pytest.raises(TypeError, match=r"cache must be the LSTMCache.*got RNNCache"):
        fastrnn.lstm_backward(rnn_cache)
    _, _, cache = fastrnn.lstm_forward(**valid_arrays(), backend=lstm_any_backend, requires_grad=False)
    assert cache is None
    with pytest.raises(TypeError, match=r"requires_grad=True.*got NoneType"):
        fastrnn.lstm_backward(cache)


def test_y_is_read_only_while_cached(lstm_any_backend):
    y, _, cache = fastrnn.lstm_forward(**valid_arrays(), backend=lstm_any_backend)
    assert not y.flags.writeable
    with pytest.raises(ValueError):
        y[0, 0, 0] = 1.0
    y2, _, _ = fastrnn.lstm_forward(**valid_arrays(), backend=lstm_any_backend, requires_grad=False)
    assert y2.flags.writeable


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_zero_steps(lstm_any_backend, dtype, batch_first):
    """T=0: no output steps, (h_n, c_n) = (h0, c0), their gradients are (dh_n, dc_n), the rest zero."""
    context = f"cell=LSTM backend={lstm_any_backend} dtype={np.dtype(dtype).name} (T, B, D, H)=(0, {B}, {D}, {H})"
    arrays = valid_arrays(dtype)
    arrays["x"] = np.zeros((B, 0, D) if batch_first else (0, B, D), dtype)
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**arrays, batch_first=batch_first, backend=lstm_any_backend)
    assert y.shape == ((B, 0, H) if batch_first else (0, B, H)) and y.dtype == dtype, context
    np.testing.assert_array_equal(h_n, arrays["h0"], err_msg=context)
    np.testing.assert_array_equal(c_n, arrays["c0"], err_msg=context)
    assert h_n.dtype == dtype and c_n.dtype == dtype, context
    dh_n = np.arange(B * H, dtype=dtype).reshape(B, H)
    dc_n = -dh_n - 1
    grads = fastrnn.lstm_backward(cache, dy=np.zeros(y.shape, dtype), dh_n=dh_n, dc_n=dc_n)
    assert grads["x"].shape == arrays["x"].shape, context
    np.testing.assert_array_equal(grads["h0"], dh_n, err_msg=context)
    np.testing.assert_array_equal(grads["c0"], dc_n, err_msg=context)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert grads[name].shape == arrays[name].shape and grads[name].dtype == dtype, f"{context}: {name}"
        assert not grads[name].any(), f"{context}: gradient {name} is not zero"
    _, (h_n, c_n), cache = fastrnn.lstm_forward(arrays["x"], arrays["w_ih"], arrays["w_hh"],
                                                batch_first=batch_first, backend=lstm_any_backend)
    assert not h_n.any() and not c_n.any(), context
    grads = fastrnn.lstm_backward(cache)
    assert not grads["h0"].any() and not grads["c0"].any(), context


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_zero_batch(lstm_any_backend, dtype, batch_first):
    context = f"cell=LSTM backend={lstm_any_backend} dtype={np.dtype(dtype).name} (T, B, D, H)=({T}, 0, {D}, {H})"
    arrays = valid_arrays(dtype)
    arrays["x"] = np.zeros((0, T, D) if batch_first else (T, 0, D), dtype)
    arrays["h0"] = np.zeros((0, H), dtype)
    arrays["c0"] = np.zeros((0, H), dtype)
    y, (h_n, c_n), cache = fastrnn.lstm_forward(**arrays, batch_first=batch_first, backend=lstm_any_backend)
    assert y.shape == ((0, T, H) if batch_first else (T, 0, H)) and y.dtype == dtype, context
    assert h_n.shape == (0, H) and c_n.shape == (0, H), context
    grads = fastrnn.lstm_backward(cache, dy=np.zeros(y.shape, dtype))
    assert grads["x"].shape == arrays["x"].shape and grads["c0"].shape == (0, H), context
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert grads[name].shape == arrays[name].shape and grads[name].dtype == dtype, f"{context}: {name}"
        assert not grads[name].any(), f"{context}: gradient {name} is not zero"


@pytest.mark.parametrize("D, H", [(0, 4), (3, 0), (0, 0)], ids=["D=0", "H=0", "D=H=0"])
def test_zero_features_or_units(lstm_any_backend, D, H):
    """D=0 or H=0 runs (or raises a fastrnn error), never a raw error from inside a kernel."""
    T, B = 3, 2
    context = f"cell=LSTM backend={lstm_any_backend} dtype=float64 (T, B, D, H)=({T}, {B}, {D}, {H})"
    rng = np.random.default_rng(0)
    w_hh, b_ih = rng.uniform(-0.5, 0.5, (4 * H, H)), rng.uniform(-0.5, 0.5, 4 * H)
    h0, c0 = rng.uniform(-0.5, 0.5, (B, H)), rng.uniform(-0.5, 0.5, (B, H))
    try:
        y, (h_n, c_n), cache = fastrnn.lstm_forward(np.ones((T, B, D)), np.zeros((4 * H, D)), w_hh, b_ih,
                                                    None, h0, c0, backend=lstm_any_backend)
        grads = fastrnn.lstm_backward(cache, dy=np.ones((T, B, H)), dh_n=np.ones((B, H)))
    except fastrnn.FastRNNError:
        return
    except Exception as error:
        pytest.fail(f"{context}: raw {type(error).__name__} from inside the call: {error}")
    expected, _, expected_c = scalar_loop_forward({"x": np.ones((T, B, D)), "w_ih": np.zeros((4 * H, D)),
                                                   "w_hh": w_hh, "b_ih": b_ih, "h0": h0, "c0": c0})
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14, err_msg=context)
    np.testing.assert_allclose(c_n, expected_c, rtol=1e-12, atol=1e-14, err_msg=context)
    assert grads["x"].shape == (T, B, D) and grads["w_ih"].shape == (4 * H, D), context
