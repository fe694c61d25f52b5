"""The GRU layer (both variants: ``reset_after=True``, PyTorch's; ``reset_after=False``, Keras/ONNX's).

* the reference backend's BPTT agrees with central finite differences of its forward pass
  (float64, every gradient), and its forward pass with a scalar transcription of the equations;
* every compiled backend that has a GRU kernel agrees with the reference (float64, and float32
  against the float64 reference), over a deterministic set of cases;
* invariants: a sequence fed in chunks equals the whole, a batch equals its rows one by one,
  ``n_threads=1`` and ``2`` are bit-identical on a case cut into several batch chunks;
* errors and empty shapes.

Parity with PyTorch and ONNX Runtime is in ``test_gru_parity.py``.
"""

import math
from dataclasses import dataclass

import numpy as np
import pytest

import fastrnn
from cases import _lay_out
from conftest import require_backend
from fastrnn import _backends
from fastrnn._parallel import batch_chunks, time_blocks
from helpers import assert_close, assert_results_close, assert_results_identical, collect
from tolerances import (
    BACKEND_VS_REFERENCE,
    FINITE_DIFFERENCE,
    FINITE_DIFFERENCE_STEP,
    HAND_CHECKED,
    INVARIANT,
)

BIASES = {"both": ("b_ih", "b_hh"), "none": (), "ih": ("b_ih",), "hh": ("b_hh",)}
INPUTS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")
DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
VARIANTS = [True, False]
VARIANT_IDS = ["reset_after", "reset_before"]


@dataclass(frozen=True)
class GRUCase:
    name: str
    seed: int
    T: int
    B: int
    D: int
    H: int
    bias: str = "both"
    h0: bool = True
    batch_first: bool = False
    layout: str = "c"
    input_scale: float = 1.0
    weight_scale: float = 1.0

    @property
    def shape(self):
        return (self.T, self.B, self.D, self.H)

    def describe(self, backend=None, dtype=None, reset_after=None):
        parts = [f"cell=GRU case={self.name!r}"]
        if reset_after is not None:
            parts.append(f"reset_after={reset_after}")
        if backend is not None:
            parts.append(f"backend={backend}")
        if dtype is not None:
            parts.append(f"dtype={np.dtype(dtype).name}")
        parts.append(f"(T, B, D, H)={self.shape} seed={self.seed} bias={self.bias} h0={self.h0} "
                     f"batch_first={self.batch_first} layout={self.layout}")
        return " ".join(parts)

    def reference_arrays(self, dtype):
        """Time-major C-contiguous float64 inputs (rounded to ``dtype``), plus ``dy`` and ``dh_n``."""
        rng = np.random.default_rng(self.seed)
        T, B, D, H = self.shape
        k = self.weight_scale / np.sqrt(H)
        values = {
            "x": rng.normal(0.0, self.input_scale, (T, B, D)),
            "w_ih": rng.uniform(-k, k, (3 * H, D)),
            "w_hh": rng.uniform(-k, k, (3 * H, H)),
            "b_ih": rng.uniform(-k, k, 3 * H),
            "b_hh": rng.uniform(-k, k, 3 * H),
            "h0": rng.uniform(-0.9, 0.9, (B, H)),
            "dy": rng.normal(size=(T, B, H)),
            "dh_n": rng.normal(size=(B, H)),
        }
        out = {}
        for name, value in values.items():
            if name in ("b_ih", "b_hh") and name not in BIASES[self.bias]:
                continue
            if name == "h0" and not self.h0:
                continue
            out[name] = value.astype(dtype).astype(np.float64)
        return out

    def arrays(self, dtype):
        """The inputs as a caller passes them: ``dtype``, the case's layout, time- or batch-major."""
        out = {}
        for name, value in self.reference_arrays(dtype).items():
            value = value.astype(dtype)
            if self.batch_first and name in ("x", "dy"):
                value = np.ascontiguousarray(value.transpose(1, 0, 2))
            out[name] = _lay_out(value, self.layout)
        return out


CASES = [
    GRUCase("tiny_T1_B1_D1_H1", seed=101, T=1, B=1, D=1, H=1),
    GRUCase("T1", seed=102, T=1, B=3, D=4, H=5),
    GRUCase("B1", seed=103, T=6, B=1, D=3, H=4),
    GRUCase("H1", seed=104, T=6, B=3, D=2, H=1),
    GRUCase("odd_7_5_3_11", seed=105, T=7, B=5, D=3, H=11),
    GRUCase("no_bias", seed=106, T=4, B=3, D=2, H=5, bias="none"),
    GRUCase("only_b_ih", seed=107, T=3, B=2, D=3, H=4, bias="ih"),
    GRUCase("only_b_hh", seed=108, T=3, B=2, D=3, H=4, bias="hh"),
    GRUCase("no_h0", seed=109, T=4, B=3, D=3, H=5, h0=False),
    GRUCase("saturated", seed=110, T=5, B=4, D=3, H=6, input_scale=3.0, weight_scale=8.0),
    GRUCase("batch_first", seed=111, T=5, B=3, D=4, H=6, batch_first=True),
    GRUCase("fortran_order", seed=112, T=5, B=3, D=4, H=6, layout="fortran"),
    GRUCase("strided", seed=113, T=4, B=3, D=5, H=6, layout="strided"),
    GRUCase("read_only", seed=114, T=4, B=3, D=5, H=6, layout="readonly"),
    GRUCase("batch_first_strided_no_bias", seed=115, T=4, B=3, D=2, H=5, batch_first=True,
            layout="strided", bias="none"),
]
#: Large enough that the compiled backends cut the batch into >= 2 chunks (batch_chunks(B, H, 3))
#: and the steps into >= 2 blocks, so the multi-piece paths and n_threads bit-identity are exercised.
MULTI_CHUNK = GRUCase("multi_chunk", seed=131, T=8, B=64, D=140, H=160)


def params(cases):
    return [pytest.param(case, id=case.name) for case in cases]


def forward_kwargs(arrays):
    return {name: arrays[name] for name in INPUTS if name in arrays}


def run_case(case, backend, dtype, reset_after, n_threads=None, arrays=None):
    arrays = case.arrays(dtype) if arrays is None else arrays
    y, h_n, cache = fastrnn.gru_forward(**forward_kwargs(arrays), reset_after=reset_after,
                                        batch_first=case.batch_first, backend=backend, n_threads=n_threads)
    grads = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    return collect(y, h_n, grads, case.batch_first)


_REFERENCE = {}


def reference(case, dtype, reset_after):
    """The reference backend's results in float64 on the case's inputs rounded to ``dtype``."""
    key = (case, np.dtype(dtype), reset_after)
    if key not in _REFERENCE:
        arrays = case.reference_arrays(np.dtype(dtype))
        y, h_n, cache = fastrnn.gru_forward(**forward_kwargs(arrays), reset_after=reset_after, backend="python")
        grads = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
        _REFERENCE[key] = collect(y, h_n, grads, batch_first=False)
    return _REFERENCE[key]


def require_gru_backend(name):
    """``name`` if it loads and has GRU kernels; otherwise skip (or fail, see conftest)."""
    return require_backend(name, kernel="gru_forward")


@pytest.fixture(params=("numba", "cython"))
def gru_compiled_backend(request):
    return require_gru_backend(request.param)


@pytest.fixture(params=("cython", "numba", "python"))
def gru_any_backend(request):
    return require_gru_backend(request.param)


# ------------------------------------------------------------------------------------------
# The reference on its own
# ------------------------------------------------------------------------------------------


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def scalar_gru(x, w_ih, w_hh, b_ih, b_hh, h0, reset_after):
    """One loop per index, math.exp/math.tanh, float64: an independent transcription of the equations."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    y = np.zeros((T, B, H))
    h = h0.copy()
    for t in range(T):
        new = np.zeros((B, H))
        for b in range(B):
            for j in range(H):
                def pre(block, vec, w, bias):
                    row = block * H + j
                    return sum(w[row, k] * vec[k] for k in range(len(vec))) + bias[row]
                r = sigmoid(pre(0, x[t, b], w_ih, b_ih) + pre(0, h[b], w_hh, b_hh))
                z = sigmoid(pre(1, x[t, b], w_ih, b_ih) + pre(1, h[b], w_hh, b_hh))
                if reset_after:
                    n = math.tanh(pre(2, x[t, b], w_ih, b_ih) + r * pre(2, h[b], w_hh, b_hh))
                else:
                    # r of every unit k times h_{t-1}[k]: the input of the n rows of w_hh
                    rh = np.array([sigmoid(sum(w_ih[k, m] * x[t, b, m] for m in range(D)) + b_ih[k]
                                           + sum(w_hh[k, m] * h[b, m] for m in range(H)) + b_hh[k]) * h[b, k]
                                   for k in range(H)])
                    n = math.tanh(pre(2, x[t, b], w_ih, b_ih) + pre(2, rh, w_hh, b_hh))
                new[b, j] = (1 - z) * n + z * h[b, j]
        h = new
        y[t] = h
    return y, h


@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", params([CASES[0], CASES[3], CASES[4], CASES[5]]))
def test_reference_forward_matches_scalar_loop(case, reset_after):
    arrays = case.reference_arrays(np.float64)
    H = case.H
    b_ih = arrays.get("b_ih", np.zeros(3 * H))
    b_hh = arrays.get("b_hh", np.zeros(3 * H))
    h0 = arrays.get("h0", np.zeros((case.B, H)))
    expected_y, expected_h = scalar_gru(arrays["x"], arrays["w_ih"], arrays["w_hh"], b_ih, b_hh, h0, reset_after)
    y, h_n, _ = fastrnn.gru_forward(**forward_kwargs(arrays), reset_after=reset_after, backend="python")
    context = case.describe("python", np.float64, reset_after) + " (scalar loop)"
    np.testing.assert_allclose(y, expected_y, rtol=1e-13, atol=1e-14, err_msg=f"{context}: y")
    np.testing.assert_allclose(h_n, expected_h, rtol=1e-13, atol=1e-14, err_msg=f"{context}: h_n")


def test_hand_checked_one_unit_one_step():
    """T=B=D=H=1: the two variants worked out by hand (they differ only by where b_hn sits)."""
    x, h0 = 0.7, -0.4
    w_ih = np.array([[0.5], [-0.3], [0.8]])
    w_hh = np.array([[0.2], [0.6], [-0.9]])
    b_ih = np.array([0.1, -0.2, 0.05])
    b_hh = np.array([-0.1, 0.3, 0.25])
    r = sigmoid(0.5 * x + 0.1 + 0.2 * h0 - 0.1)
    z = sigmoid(-0.3 * x - 0.2 + 0.6 * h0 + 0.3)
    n_after = math.tanh(0.8 * x + 0.05 + r * (-0.9 * h0 + 0.25))
    n_before = math.tanh(0.8 * x + 0.05 + (-0.9 * (r * h0)) + 0.25)
    for reset_after, n in [(True, n_after), (False, n_before)]:
        y, h_n, _ = fastrnn.gru_forward(np.array(x).reshape(1, 1, 1), w_ih, w_hh, b_ih, b_hh,
                                        np.array(h0).reshape(1, 1), reset_after=reset_after, backend="python")
        np.testing.assert_allclose(y.ravel(), [(1 - z) * n + z * h0], **HAND_CHECKED,
                                   err_msg=f"cell=GRU reset_after={reset_after} (hand-checked)")


def loss(arrays, reset_after):
    y, h_n, _ = fastrnn.gru_forward(**forward_kwargs(arrays), reset_after=reset_after, backend="python",
                                    requires_grad=False)
    return float(np.sum(y * arrays["dy"]) + np.sum(h_n * arrays["dh_n"]))


FD_CASES = [
    GRUCase("fd_small", seed=141, T=3, B=2, D=2, H=3),
    GRUCase("fd_only_b_hh", seed=142, T=2, B=2, D=3, H=2, bias="hh"),
    GRUCase("fd_saturated", seed=143, T=3, B=1, D=2, H=2, input_scale=2.0, weight_scale=3.0),
]


@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", params(FD_CASES))
def test_reference_gradients_match_finite_differences(case, reset_after):
    arrays = case.reference_arrays(np.float64)
    arrays.setdefault("h0", np.zeros((case.B, case.H)))
    y, h_n, cache = fastrnn.gru_forward(**forward_kwargs(arrays), reset_after=reset_after, backend="python")
    grads = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    expected_keys = {"x", "h0", "w_ih", "w_hh"} | set(BIASES[case.bias])
    assert set(grads) == expected_keys
    step = FINITE_DIFFERENCE_STEP
    for name in sorted(expected_keys):
        numeric = np.zeros_like(arrays[name])
        for index in np.ndindex(arrays[name].shape):
            plus = {k: v.copy() for k, v in arrays.items()}
            minus = {k: v.copy() for k, v in arrays.items()}
            plus[name][index] += step
            minus[name][index] -= step
            numeric[index] = (loss(plus, reset_after) - loss(minus, reset_after)) / (2 * step)
        np.testing.assert_allclose(grads[name], numeric, **FINITE_DIFFERENCE,
                                   err_msg=f"{case.describe('python', np.float64, reset_after)}: gradient {name}")


# ------------------------------------------------------------------------------------------
# Compiled backends against the reference
# ------------------------------------------------------------------------------------------


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", params(CASES))
def test_compiled_matches_reference(case, reset_after, dtype, gru_compiled_backend):
    context = case.describe(gru_compiled_backend, dtype, reset_after)
    actual = run_case(case, gru_compiled_backend, dtype, reset_after)
    for name, value in actual.items():
        assert value.dtype == np.dtype(dtype), f"{context}: {name} has dtype {value.dtype}"
    expected = reference(case, dtype, reset_after)
    assert_results_close({k: v.astype(np.float64) for k, v in actual.items()}, expected,
                         BACKEND_VS_REFERENCE[np.dtype(dtype)], context)


@pytest.mark.compiled
@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
def test_compiled_backward_accepts_reference_workspace(reset_after, gru_compiled_backend):
    """The workspace layout is part of the contract: a compiled backward on a reference forward's cache."""
    case = CASES[4]
    arrays = case.reference_arrays(np.float64)
    _, _, cache = fastrnn.gru_forward(**forward_kwargs(arrays), reset_after=reset_after, backend="python")
    expected = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    cache.backend = gru_compiled_backend
    actual = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    context = case.describe(gru_compiled_backend, np.float64, reset_after) + " (reference workspace)"
    for name in expected:
        assert_close(actual[name], expected[name], INVARIANT[np.dtype(np.float64)], context, name)


# ------------------------------------------------------------------------------------------
# Invariants
# ------------------------------------------------------------------------------------------

SPLITTABLE = [case for case in CASES if case.T >= 3 and case.B >= 2 and not case.batch_first]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", params(SPLITTABLE[:3]))
def test_whole_sequence_equals_chunks(case, reset_after, dtype, gru_any_backend):
    context = case.describe(gru_any_backend, dtype, reset_after) + " (whole vs chunks of steps)"
    arrays = {name: np.ascontiguousarray(v.astype(dtype)) for name, v in case.reference_arrays(dtype).items()}
    arrays.setdefault("h0", np.zeros((case.B, case.H), dtype))
    kw = dict(reset_after=reset_after, backend=gru_any_backend)
    y, h_n, cache = fastrnn.gru_forward(**forward_kwargs(arrays), **kw)
    grads = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    bounds = [0, 1, (case.T + 1) // 2 + 1, case.T]
    pieces, h = [], arrays["h0"]
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        piece = dict(arrays, x=arrays["x"][t0:t1], h0=h)
        out = fastrnn.gru_forward(**forward_kwargs(piece), **kw)
        pieces.append((np.array(out[0]), out[2], t0, t1))
        h = out[1]
    tolerance = INVARIANT[np.dtype(dtype)]
    assert_close(np.concatenate([p[0] for p in pieces]), y, tolerance, context, "y")
    assert_close(h, h_n, tolerance, context, "h_n")
    carried, dx = arrays["dh_n"], []
    total = {name: 0 for name in grads if name not in ("x", "h0")}
    for _, piece_cache, t0, t1 in reversed(pieces):
        g = fastrnn.gru_backward(piece_cache, dy=arrays["dy"][t0:t1], dh_n=carried)
        carried = g["h0"]
        dx.insert(0, g["x"])
        for name in total:
            total[name] = total[name] + g[name]
    assert_close(np.concatenate(dx), grads["x"], tolerance, context, "gradient x")
    assert_close(carried, grads["h0"], tolerance, context, "gradient h0")
    for name, value in total.items():
        assert_close(value, grads[name], tolerance, context, f"gradient {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", params([CASES[4], CASES[8]]))
def test_batch_equals_rows_one_by_one(case, reset_after, dtype, gru_any_backend):
    context = case.describe(gru_any_backend, dtype, reset_after) + " (batch vs rows one by one)"
    arrays = {name: np.ascontiguousarray(v.astype(dtype)) for name, v in case.reference_arrays(dtype).items()}
    whole = run_case(case, gru_any_backend, dtype, reset_after, arrays=arrays)
    rows = []
    for b in range(case.B):
        row = dict(arrays, x=arrays["x"][:, b:b + 1], dy=arrays["dy"][:, b:b + 1], dh_n=arrays["dh_n"][b:b + 1])
        if "h0" in arrays:
            row["h0"] = arrays["h0"][b:b + 1]
        rows.append(run_case(case, gru_any_backend, dtype, reset_after, arrays=row))
    tolerance = INVARIANT[np.dtype(dtype)]
    assert_close(np.concatenate([r["y"] for r in rows], axis=1), whole["y"], tolerance, context, "y")
    assert_close(np.concatenate([r["h_n"] for r in rows]), whole["h_n"], tolerance, context, "h_n")
    assert_close(np.concatenate([r["dx"] for r in rows], axis=1), whole["dx"], tolerance, context, "gradient x")
    for name in whole:
        if name in ("y", "h_n", "dx"):
            continue
        combined = (np.concatenate([r[name] for r in rows]) if name == "dh0"
                    else sum(r[name] for r in rows))
        assert_close(combined, whole[name], tolerance, context, name)


@pytest.mark.compiled
@pytest.mark.parametrize("reset_after", VARIANTS, ids=VARIANT_IDS)
def test_n_threads_bit_identical(reset_after, gru_compiled_backend):
    case = MULTI_CHUNK
    assert len(batch_chunks(case.B, case.H, 3)) - 1 >= 2, "the case must be cut into several batch chunks"
    assert len(time_blocks(case.T, case.B, case.D * 3 * case.H)) - 1 >= 2, "and several time blocks"
    context = case.describe(gru_compiled_backend, np.float32, reset_after) + " (n_threads 1 vs 2)"
    one = run_case(case, gru_compiled_backend, np.float32, reset_after, n_threads=1)
    two = run_case(case, gru_compiled_backend, np.float32, reset_after, n_threads=2)
    assert_results_identical(two, one, context)
    # and the multi-chunk path computes the right thing
    expected = reference(case, np.float32, reset_after)
    assert_results_close({k: v.astype(np.float64) for k, v in one.items()}, expected,
                         BACKEND_VS_REFERENCE[np.dtype(np.float32)], context)


# ------------------------------------------------------------------------------------------
# Errors and empty shapes
# ------------------------------------------------------------------------------------------


def small_inputs(dtype=np.float64, T=3, B=2, D=4, H=5):
    case = GRUCase("errors", seed=151, T=T, B=B, D=D, H=H)
    return {k: v.astype(dtype) for k, v in case.reference_arrays(dtype).items()}


def test_rows_not_a_multiple_of_three():
    a = small_inputs()
    with pytest.raises(fastrnn.ShapeError, match="3\\*H rows"):
        fastrnn.gru_forward(a["x"], a["w_ih"], np.zeros((14, 5)), backend="python")


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_reset_after_must_be_bool(value):
    a = small_inputs()
    with pytest.raises(fastrnn.ArgumentError, match="reset_after"):
        fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"], reset_after=value, backend="python")


def test_mixed_dtypes():
    a = small_inputs()
    with pytest.raises(fastrnn.DTypeError):
        fastrnn.gru_forward(a["x"].astype(np.float32), a["w_ih"], a["w_hh"], backend="python")


def test_stale_cache_and_wrong_dh_n(gru_any_backend):
    a = small_inputs()
    _, _, cache = fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"], backend=gru_any_backend)
    with pytest.raises(fastrnn.ShapeError, match="dh_n"):
        fastrnn.gru_backward(cache, dh_n=np.zeros((2, 4)))
    with pytest.raises(TypeError, match="GRUCache"):
        fastrnn.gru_backward(object())
    cache.w_hh = np.zeros((3, 3))
    with pytest.raises(fastrnn.StaleCacheError, match="w_hh"):
        fastrnn.gru_backward(cache)


def test_y_is_read_only_while_cached(gru_any_backend):
    a = small_inputs()
    y, _, _ = fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"], backend=gru_any_backend)
    assert not y.flags.writeable
    y2, _, cache = fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"], backend=gru_any_backend, requires_grad=False)
    assert cache is None and y2.flags.writeable
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("T, B", [(0, 2), (3, 0), (0, 0)])
def test_empty_shapes(T, B, batch_first, gru_any_backend):
    a = small_inputs(T=max(T, 1), B=max(B, 1))
    H, D = 5, 4
    x = np.zeros((B, T, D) if batch_first else (T, B, D))
    h0 = np.full((B, H), 0.5)
    b = np.full(3 * H, 0.1)
    y, h_n, cache = fastrnn.gru_forward(x, a["w_ih"], a["w_hh"], b, b, h0, batch_first=batch_first,
                                        backend=gru_any_backend)
    assert y.shape == ((B, T, H) if batch_first else (T, B, H))
    np.testing.assert_array_equal(h_n, h0)
    dh_n = np.full((B, H), 2.0)
    grads = fastrnn.gru_backward(cache, dh_n=dh_n)
    assert grads["x"].shape == x.shape
    np.testing.assert_array_equal(grads["h0"], dh_n)
    for name, shape in [("w_ih", (3 * H, D)), ("w_hh", (3 * H, H)), ("b_ih", (3 * H,)), ("b_hh", (3 * H,))]:
        assert grads[name].shape == shape
        np.testing.assert_array_equal(grads[name], 0)


def test_backend_without_gru_kernel_is_an_error_by_name_and_skipped_by_auto(monkeypatch):
    """Until every backend has GRU kernels: naming one that lacks them raises, ``auto`` passes it by."""
    import types

    fake = types.SimpleNamespace(rnn_forward=None)  # a loaded backend with no gru_forward
    real_load = _backends._load
    monkeypatch.setattr(_backends, "_load", lambda name: fake if name == "cython" else real_load(name))
    a = small_inputs()
    with pytest.raises(fastrnn.BackendUnavailableError, match="no gru_forward kernel"):
        fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"], backend="cython")
    y, _, cache = fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"])
    assert cache.backend in ("numba", "python")
    expected, _, _ = fastrnn.gru_forward(a["x"], a["w_ih"], a["w_hh"], backend="python")
    np.testing.assert_allclose(y, expected, **BACKEND_VS_REFERENCE[np.dtype(np.float64)])
