"""The LSTM layer with a projection (``proj_size``): its reference trusted on its own evidence,
the compiled kernels (Numba, Cython) against it, agreement with ``torch.nn.LSTM(proj_size=P)``,
and errors.

* the reference's BPTT agrees with central finite differences in float64 for every gradient
  (input, both initial states, the three weights, both biases), including the per-step cell
  gradient ``dc``;
* every compiled backend agrees with the reference run in float64 (float64 and float32 inputs),
  accepts the reference's workspace, and does not change a bit with ``n_threads``, on odd
  sizes and on batches the kernels cut into several chunks, time blocks and column shares;
* a whole sequence equals its chunks with ``h`` and ``c`` carried;
* torch.nn.LSTM(proj_size=P) given the same weights gives the same outputs and gradients, on
  every backend;
* the kernels are chosen by the registry like every other cell's, and ``nn.LSTM`` passes its
  ``n_threads`` to them;
* wrong arguments raise fastrnn's errors naming the argument; importing fastrnn and the
  functional module does not import Numba.

The loss behind every gradient is
``L = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n) + sum(c_all * dc)``.
"""

import functools
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import fastrnn
from conftest import ALL_BACKENDS, COMPILED_BACKENDS, require_backend
from fastrnn import _backends
from fastrnn.functional._lstm_proj import LSTMProjCache, lstm_proj_backward, lstm_proj_forward
from helpers import assert_close, assert_results_identical
from tolerances import (BACKEND_VS_REFERENCE, FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, HAND_CHECKED, INVARIANT,
                        TORCH_PARITY)

try:  # the work partition moves from _parallel to _partition; either serves these guards
    from fastrnn._partition import batch_chunks, step_column_threads, time_blocks
except ImportError:
    from fastrnn._parallel import batch_chunks, step_column_threads, time_blocks

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
BIASES = {"both": ("b_ih", "b_hh"), "none": (), "ih": ("b_ih",), "hh": ("b_hh",)}
INPUTS = ("x", "w_ih", "w_hh", "w_hr", "b_ih", "b_hh", "h0", "c0")
GRADIENTS = ("x", "h0", "c0", "w_ih", "w_hh", "w_hr", "b_ih", "b_hh")


# ------------------------------------------------------------------------------------------
# Backends: those whose module has the projection kernels (every one, since the registry
# finds them like any other kernel)
# ------------------------------------------------------------------------------------------


def require_proj_backend(name):
    """``name`` if it loads and has the projection kernels; otherwise skip (or fail, see conftest)."""
    return require_backend(name, kernel="lstm_proj_forward")


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled(request):
    return require_proj_backend(request.param)


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request):
    return require_proj_backend(request.param)


# ------------------------------------------------------------------------------------------
# The case set
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjCase:
    name: str
    seed: int
    T: int
    B: int
    D: int
    H: int
    P: int
    bias: str = "both"            # which biases are passed: "both", "none", "ih", "hh"
    states: bool = True           # pass h0 and c0 (else the default zeros)
    per_step_dc: bool = True      # pass dc, the gradient w.r.t. every step's cell state
    input_scale: float = 1.0
    weight_scale: float = 1.0     # every weight and bias ~ U(-k, k) * weight_scale, k = 1/sqrt(H)

    def describe(self, backend=None, dtype=None):
        parts = [f"cell=LSTM(proj) case={self.name!r}"]
        if backend is not None:
            parts.append(f"backend={backend}")
        if dtype is not None:
            parts.append(f"dtype={np.dtype(dtype).name}")
        parts.append(f"(T, B, D, H, P)={(self.T, self.B, self.D, self.H, self.P)} seed={self.seed} "
                     f"bias={self.bias} states={self.states} dc={self.per_step_dc}")
        return " ".join(parts)

    def arrays(self, dtype):
        """Inputs and output gradients, drawn in float64 and rounded to ``dtype``."""
        rng = np.random.default_rng(self.seed)
        T, B, D, H, P = self.T, self.B, self.D, self.H, self.P
        k = 1.0 / np.sqrt(H)
        s = self.weight_scale
        values = {
            "x": rng.normal(0.0, self.input_scale, (T, B, D)),
            "w_ih": rng.uniform(-k, k, (4 * H, D)) * s,
            "w_hh": rng.uniform(-k, k, (4 * H, P)) * s,
            "w_hr": rng.uniform(-k, k, (P, H)) * s,
            "b_ih": rng.uniform(-k, k, 4 * H) * s,
            "b_hh": rng.uniform(-k, k, 4 * H) * s,
            "h0": rng.uniform(-0.9, 0.9, (B, P)),
            "c0": rng.normal(0.0, 1.0, (B, H)),
            "dy": rng.normal(size=(T, B, P)),
            "dh_n": rng.normal(size=(B, P)),
            "dc_n": rng.normal(size=(B, H)),
            "dc": rng.normal(size=(T, B, H)),
        }
        out = {}
        for name, value in values.items():
            if name in ("b_ih", "b_hh") and name not in BIASES[self.bias]:
                continue
            if name in ("h0", "c0") and not self.states:
                continue
            if name == "dc" and not self.per_step_dc:
                continue
            out[name] = value.astype(dtype)
        return out


CASES = [
    ProjCase("tiny_T1_B1_D1_H2_P1", seed=201, T=1, B=1, D=1, H=2, P=1),
    ProjCase("T1", seed=202, T=1, B=3, D=4, H=5, P=2),
    ProjCase("B1", seed=203, T=6, B=1, D=3, H=4, P=3),
    ProjCase("P1", seed=204, T=5, B=3, D=2, H=3, P=1),
    ProjCase("odd_7_5_3_11_4", seed=205, T=7, B=5, D=3, H=11, P=4),
    ProjCase("no_bias", seed=206, T=4, B=3, D=2, H=5, P=2, bias="none"),
    ProjCase("only_b_hh", seed=207, T=3, B=2, D=3, H=4, P=2, bias="hh"),
    ProjCase("no_states_no_dc", seed=208, T=4, B=3, D=3, H=5, P=3, states=False, per_step_dc=False),
    ProjCase("saturated", seed=209, T=5, B=4, D=3, H=6, P=2, input_scale=3.0, weight_scale=8.0),
    ProjCase("long_T300", seed=210, T=300, B=2, D=3, H=4, P=2),
]
#: Cut by the kernels into 2 batch chunks and 2 time blocks (checked below), so pieces meet threads.
MULTI_CHUNK = ProjCase("multi_chunk", seed=211, T=8, B=64, D=128, H=128, P=32)
#: One batch chunk of a layer large enough that threads share each step's columns (checked below);
#: P > 4 * 8 and not a multiple of 4, so threads share dW_hr's rows unevenly.
COLUMN_SHARE = ProjCase("column_share", seed=212, T=3, B=15, D=7, H=600, P=37, per_step_dc=False)
#: P above the size from which the weight-gradient kernel packs its left factor, and T*B rows
#: not a multiple of its slabs.
WIDE_P = ProjCase("wide_P_261", seed=213, T=2, B=3, D=2, H=300, P=261)
THREADED = [MULTI_CHUNK, COLUMN_SHARE, WIDE_P]
FD_CASES = [
    ProjCase("fd_both_biases", seed=231, T=3, B=2, D=3, H=4, P=2),
    ProjCase("fd_only_b_ih_T1", seed=232, T=1, B=2, D=2, H=3, P=2, bias="ih"),
    ProjCase("fd_saturated_P1", seed=233, T=3, B=2, D=2, H=3, P=1, input_scale=2.0, weight_scale=4.0),
]


def case_params(cases):
    return [pytest.param(case, id=case.name) for case in cases]


# ------------------------------------------------------------------------------------------
# Running a case
# ------------------------------------------------------------------------------------------


def forward_kwargs(arrays):
    return {name: arrays[name] for name in INPUTS if name in arrays}


def run_case(arrays, backend, n_threads=None):
    """Forward and backward through the public functional API; results as one dict of arrays."""
    y, (h_n, c_n), cache = lstm_proj_forward(**forward_kwargs(arrays), backend=backend, n_threads=n_threads)
    grads = lstm_proj_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"],
                               dc=arrays.get("dc"))
    out = {"y": np.array(y), "h_n": h_n, "c_n": c_n}
    out.update({"d" + name: value for name, value in grads.items()})
    return out


@functools.lru_cache(maxsize=None)
def reference(case, dtype):
    """The reference in float64 on the case's inputs rounded to ``dtype``."""
    arrays = {name: value.astype(np.float64) for name, value in case.arrays(np.dtype(dtype)).items()}
    result = run_case(arrays, "python")
    for value in result.values():
        value.flags.writeable = False
    return result


def assert_all_close(got, expected, tolerance, context):
    assert sorted(got) == sorted(expected), f"{context}: results {sorted(got)} vs {sorted(expected)}"
    for name in expected:
        assert got[name].dtype == got["y"].dtype, f"{context}: {name} has dtype {got[name].dtype}"
        assert_close(got[name], expected[name], tolerance, context, name)


# ------------------------------------------------------------------------------------------
# The reference on its own: finite differences
# ------------------------------------------------------------------------------------------


def loss(arrays):
    """``L`` of the module docstring, on the reference, float64."""
    y, (h_n, c_n), cache = lstm_proj_forward(**forward_kwargs(arrays), backend="python")
    value = np.sum(y * arrays["dy"]) + np.sum(h_n * arrays["dh_n"]) + np.sum(c_n * arrays["dc_n"])
    if "dc" in arrays:
        value += np.sum(cache.c_all * arrays["dc"])
    return float(value)


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


@pytest.mark.parametrize("case", case_params(FD_CASES))
def test_reference_gradients_match_finite_differences(case):
    context = case.describe("python", np.float64) + " vs central finite differences"
    arrays = case.arrays(np.float64)
    if not case.states:  # differentiate with respect to the zero states too
        arrays["h0"] = np.zeros((case.B, case.P))
        arrays["c0"] = np.zeros((case.B, case.H))
    got = run_case(arrays, "python")
    names = [name for name in GRADIENTS if name in arrays]
    assert sorted("d" + name for name in names) == sorted(k for k in got if k.startswith("d")), context
    for name in names:
        expected = finite_difference_gradient(arrays, name, FINITE_DIFFERENCE_STEP)
        assert_close(got["d" + name], expected, FINITE_DIFFERENCE, context, f"gradient {name}")


def test_reference_per_step_cell_gradient_is_linear():
    """dc of every step adds to the gradients exactly what it contributes alone (BPTT is linear)."""
    case = FD_CASES[0]
    arrays = case.arrays(np.float64)
    with_dc = run_case(arrays, "python")
    zero = dict(arrays, dy=np.zeros_like(arrays["dy"]), dh_n=np.zeros_like(arrays["dh_n"]),
                dc_n=np.zeros_like(arrays["dc_n"]))
    only_dc = run_case(zero, "python")
    without = run_case({k: v for k, v in arrays.items() if k != "dc"}, "python")
    for name in GRADIENTS:
        assert_close(with_dc["d" + name], without["d" + name] + only_dc["d" + name], INVARIANT[np.dtype(np.float64)],
                     case.describe("python", np.float64), f"gradient {name}")
    # with dc only at the last step it is the same as dc_n
    last = np.zeros_like(arrays["dc"])
    last[-1] = arrays["dc_n"]
    as_dc = run_case(dict(zero, dc=last), "python")
    as_dc_n = run_case({k: v for k, v in dict(zero, dc_n=arrays["dc_n"]).items() if k != "dc"}, "python")
    for name in GRADIENTS:
        np.testing.assert_allclose(as_dc["d" + name], as_dc_n["d" + name], **HAND_CHECKED)


# ------------------------------------------------------------------------------------------
# Compiled backends against the reference
# ------------------------------------------------------------------------------------------


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(CASES + THREADED))
def test_compiled_matches_reference(case, compiled, dtype):
    context = case.describe(compiled, dtype)
    got = run_case(case.arrays(dtype), compiled)
    assert_all_close(got, reference(case, dtype), BACKEND_VS_REFERENCE[np.dtype(dtype)], context)


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params([CASES[4], CASES[8], MULTI_CHUNK]))
def test_backward_accepts_reference_cache(case, compiled, dtype):
    """The workspace is part of the contract: a compiled BPTT on the reference's forward cache."""
    context = case.describe(f"{compiled} on python's cache", dtype)
    arrays = case.arrays(dtype)
    _, _, cache = lstm_proj_forward(**forward_kwargs(arrays), backend="python")
    kwargs = dict(dy=arrays["dy"], dh_n=arrays["dh_n"], dc_n=arrays["dc_n"], dc=arrays.get("dc"))
    expected = lstm_proj_backward(cache, **kwargs)
    try:  # the cache names its backend; run the same cache through the compiled kernels instead
        cache.backend = compiled
        got = lstm_proj_backward(cache, **kwargs)
    finally:
        cache.backend = "python"
    for name in expected:
        assert_close(got[name], expected[name], INVARIANT[np.dtype(dtype)], context, f"gradient {name}")


def test_threaded_cases_really_cut():
    """Guard: if the thresholds of the work partition change, these cases must grow with them."""
    T, B, D, H = MULTI_CHUNK.T, MULTI_CHUNK.B, MULTI_CHUNK.D, MULTI_CHUNK.H
    assert len(batch_chunks(B, H, 4)) - 1 >= 2, f"{MULTI_CHUNK.describe()}: one batch chunk"
    assert len(time_blocks(T, B, D * 4 * H)) - 1 >= 2, f"{MULTI_CHUNK.describe()}: one time block"
    B, H = COLUMN_SHARE.B, COLUMN_SHARE.H
    assert len(batch_chunks(B, H, 4)) - 1 == 1, f"{COLUMN_SHARE.describe()}: several batch chunks"
    assert step_column_threads(B, H, 4, 2) == 2, f"{COLUMN_SHARE.describe()}: no column share"
    assert WIDE_P.P > 256 and (WIDE_P.T * WIDE_P.B) % 256, WIDE_P.describe()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params([CASES[4]] + THREADED))
def test_n_threads_bit_identical(case, any_backend, dtype):
    context = case.describe(any_backend, dtype)
    one = run_case(case.arrays(dtype), any_backend, n_threads=1)
    for n_threads in (2, 3, None):
        other = run_case(case.arrays(dtype), any_backend, n_threads=n_threads)
        assert_results_identical(other, one, f"{context} n_threads={n_threads} vs 1")


def test_inference_matches_training_forward(any_backend):
    case = CASES[4]
    arrays = case.arrays(np.float64)
    y, (h_n, c_n), cache = lstm_proj_forward(**forward_kwargs(arrays), backend=any_backend)
    y2, (h_n2, c_n2), cache2 = lstm_proj_forward(**forward_kwargs(arrays), backend=any_backend,
                                                 requires_grad=False)
    assert isinstance(cache, LSTMProjCache) and cache2 is None
    assert cache.c_all.shape == cache.m_all.shape == (case.T, case.B, case.H)
    assert y.shape == (case.T, case.B, case.P) and h_n.shape == (case.B, case.P) and c_n.shape == (case.B, case.H)
    assert not y.flags.writeable  # the cache refers to it
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h_n2, h_n)
    np.testing.assert_array_equal(c_n2, c_n)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_whole_sequence_equals_chunks_with_carried_state(any_backend, dtype):
    case = CASES[4]
    context = case.describe(any_backend, dtype) + " (whole vs chunks of steps)"
    arrays = case.arrays(dtype)
    whole = run_case(arrays, any_backend)
    bounds = [0, 1, 4, case.T]
    pieces, h, c = [], arrays["h0"], arrays["c0"]
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        piece = dict(arrays, x=arrays["x"][t0:t1], h0=h, c0=c)
        y, (h, c), cache = lstm_proj_forward(**forward_kwargs(piece), backend=any_backend)
        pieces.append((np.array(y), cache, t0, t1))
    tolerance = INVARIANT[np.dtype(dtype)]
    assert_close(np.concatenate([p[0] for p in pieces]), whole["y"], tolerance, context, "y")
    assert_close(h, whole["h_n"], tolerance, context, "h_n")
    assert_close(c, whole["c_n"], tolerance, context, "c_n")
    dh, dc = arrays["dh_n"], arrays["dc_n"]
    totals, dx = {}, []
    for _, cache, t0, t1 in reversed(pieces):
        g = lstm_proj_backward(cache, dy=arrays["dy"][t0:t1], dh_n=dh, dc_n=dc, dc=arrays["dc"][t0:t1])
        dh, dc = g["h0"], g["c0"]
        dx.insert(0, g["x"])
        for name in ("w_ih", "w_hh", "w_hr", "b_ih", "b_hh"):
            totals[name] = totals.get(name, 0) + g[name]
    assert_close(np.concatenate(dx), whole["dx"], tolerance, context, "gradient x")
    assert_close(dh, whole["dh0"], tolerance, context, "gradient h0")
    assert_close(dc, whole["dc0"], tolerance, context, "gradient c0")
    for name, value in totals.items():
        assert_close(value, whole["d" + name], tolerance, context, f"gradient {name}")


def test_empty_sequence(any_backend):
    arrays = CASES[1].arrays(np.float64)
    x = np.zeros((0, 3, 4))
    y, (h_n, c_n), cache = lstm_proj_forward(x, arrays["w_ih"], arrays["w_hh"], arrays["w_hr"],
                                             h0=arrays["h0"], c0=arrays["c0"], backend=any_backend)
    assert y.shape == (0, 3, 2)
    np.testing.assert_array_equal(h_n, arrays["h0"])
    np.testing.assert_array_equal(c_n, arrays["c0"])
    g = lstm_proj_backward(cache, dh_n=arrays["dh_n"], dc_n=arrays["dc_n"])
    assert g["x"].shape == (0, 3, 4)
    np.testing.assert_array_equal(g["h0"], arrays["dh_n"])
    np.testing.assert_array_equal(g["c0"], arrays["dc_n"])
    assert not g["w_hr"].any() and g["w_hr"].shape == (2, 5)


def test_inputs_are_not_modified(any_backend):
    arrays = CASES[4].arrays(np.float64)
    before = {name: value.copy() for name, value in arrays.items()}
    run_case(arrays, any_backend)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} was modified by {any_backend}")


# ------------------------------------------------------------------------------------------
# Backend selection (the registry, as for every cell) and lazy import
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["lstm_proj_forward", "lstm_proj_backward"])
def test_every_backend_module_has_the_kernels(any_backend, kernel):
    _, module = _backends.resolve(any_backend, kernel=kernel)
    assert callable(getattr(module, kernel)), f"backend {any_backend} lacks {kernel}"


def test_each_backend_runs_on_itself(any_backend):
    arrays = CASES[1].arrays(np.float64)
    _, _, cache = lstm_proj_forward(**forward_kwargs(arrays), backend=any_backend)
    assert cache.backend == any_backend
    with fastrnn.use_backend(any_backend):
        _, _, cache = lstm_proj_forward(**forward_kwargs(arrays))
    assert cache.backend == any_backend


def test_auto_takes_the_first_available_backend():
    arrays = CASES[1].arrays(np.float64)
    expected = fastrnn.available_backends()[0]
    for backend in ("auto", None):
        _, _, cache = lstm_proj_forward(**forward_kwargs(arrays), backend=backend)
        assert cache.backend == expected, f"backend={backend!r} ran on {cache.backend}, not {expected}"


def test_n_threads_reaches_the_kernels(any_backend, monkeypatch):
    """The functional API passes its n_threads (or its default) to both kernels, and so does nn.LSTM."""
    _, module = _backends.resolve(any_backend, kernel="lstm_proj_forward")
    seen = []
    for kernel in ("lstm_proj_forward", "lstm_proj_backward"):
        def spy(*args, _kernel=getattr(module, kernel), _name=kernel):
            seen.append((_name, args[-1]))
            return _kernel(*args)
        monkeypatch.setattr(module, kernel, spy)
    arrays = CASES[4].arrays(np.float64)
    run_case(arrays, any_backend, n_threads=3)
    assert seen == [("lstm_proj_forward", 3), ("lstm_proj_backward", 3)]
    seen.clear()
    run_case(arrays, any_backend)
    assert [name for name, _ in seen] == ["lstm_proj_forward", "lstm_proj_backward"]
    assert all(isinstance(n, int) and n >= 1 for _, n in seen), seen
    seen.clear()
    lstm = fastrnn.nn.LSTM(3, 11, proj_size=4, dtype=np.float64, seed=0, backend=any_backend, n_threads=2)
    lstm(arrays["x"])
    assert seen == [("lstm_proj_forward", 2)], seen


def test_unknown_backend():
    arrays = CASES[1].arrays(np.float64)
    with pytest.raises(fastrnn.UnknownBackendError, match="backend"):
        lstm_proj_forward(**forward_kwargs(arrays), backend="fortran")


def test_import_does_not_import_numba():
    code = ("import sys, fastrnn, fastrnn.functional._lstm_proj, fastrnn._python.lstm_proj; "
            "assert 'numba' not in sys.modules, 'numba was imported'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------
# torch.nn.LSTM(proj_size=P)
# ------------------------------------------------------------------------------------------

TORCH_NAMES = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "w_hr": "weight_hr_l0",
               "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
TORCH_CASES = [
    ProjCase("torch_both_biases", seed=241, T=5, B=3, D=4, H=6, P=3, per_step_dc=False),
    ProjCase("torch_no_bias_P1", seed=242, T=4, B=2, D=3, H=5, P=1, bias="none", per_step_dc=False),
    ProjCase("torch_only_b_ih", seed=243, T=4, B=3, D=2, H=4, P=2, bias="ih", per_step_dc=False),
    ProjCase("torch_no_states", seed=244, T=3, B=2, D=3, H=3, P=2, states=False, per_step_dc=False),
    ProjCase("torch_saturated", seed=245, T=4, B=2, D=3, H=4, P=3, input_scale=3.0, weight_scale=8.0,
             per_step_dc=False),
]


def torch_lstm_proj(case, dtype):
    """torch.nn.LSTM(proj_size=P)'s outputs and gradients for the case, in ``dtype``."""
    torch = pytest.importorskip("torch")
    arrays = case.arrays(dtype)
    tdtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[np.dtype(dtype)]
    lstm = torch.nn.LSTM(case.D, case.H, proj_size=case.P, bias=case.bias != "none", dtype=tdtype)

    def tensor(value, grad=False):
        return torch.tensor(np.ascontiguousarray(value), dtype=tdtype, requires_grad=grad)

    with torch.no_grad():
        for name, torch_name in TORCH_NAMES.items():
            if hasattr(lstm, torch_name):  # a bias torch has but the case lacks is zero
                getattr(lstm, torch_name).copy_(tensor(arrays[name]) if name in arrays else 0.0)
    x = tensor(arrays["x"], grad=True)
    h0 = tensor(arrays.get("h0", np.zeros((case.B, case.P)))[None], grad=True)
    c0 = tensor(arrays.get("c0", np.zeros((case.B, case.H)))[None], grad=True)
    y, (h_n, c_n) = lstm(x, (h0, c0))
    value = (y * tensor(arrays["dy"])).sum() + (h_n[0] * tensor(arrays["dh_n"])).sum() \
        + (c_n[0] * tensor(arrays["dc_n"])).sum()
    value.backward()
    out = {"y": y.detach().numpy(), "h_n": h_n[0].detach().numpy(), "c_n": c_n[0].detach().numpy(),
           "dx": x.grad.numpy(), "dh0": h0.grad[0].numpy(), "dc0": c0.grad[0].numpy()}
    for name, torch_name in TORCH_NAMES.items():
        if name in arrays or not name.startswith("b_"):
            out["d" + name] = getattr(lstm, torch_name).grad.numpy()
    return out


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(TORCH_CASES))
def test_matches_torch(case, any_backend, dtype):
    pytest.importorskip("torch")
    context = case.describe(any_backend, dtype) + " vs torch.nn.LSTM(proj_size)"
    expected = torch_lstm_proj(case, np.dtype(dtype))
    got = run_case(case.arrays(dtype), any_backend)
    assert_all_close(got, expected, TORCH_PARITY[np.dtype(dtype)], context)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def valid():
    return ProjCase("valid", seed=250, T=3, B=2, D=3, H=4, P=2).arrays(np.float64)


def call_with(**changes):
    arrays = forward_kwargs(valid())
    arrays.update(changes)
    return lstm_proj_forward(**arrays, backend="python")


@pytest.mark.parametrize("name, value, pattern", [
    ("w_hr", np.zeros((2, 5)), r"w_ih must have shape \(20, 3\)"),         # H from w_hr disagrees with w_ih
    ("w_hr", np.zeros(8), r"w_hr must be 2-dimensional.*\(P, H\).*got shape \(8,\)"),
    ("w_hr", np.zeros((4, 4)), r"w_hr must have shape \(P, H\) with 0 < P < H.*got shape \(4, 4\)"),
    ("w_hr", np.zeros((5, 4)), r"0 < P < H.*got shape \(5, 4\)"),
    ("w_hr", np.zeros((0, 4)), r"0 < P < H.*lstm_forward"),
    ("w_hh", np.zeros((16, 4)), r"w_hh must have shape \(16, 2\).*got shape \(16, 4\)"),
    ("w_hh", np.zeros((16,)), r"w_hh must be 2-dimensional"),
    ("w_ih", np.zeros((16, 2)), r"w_ih must have shape \(16, 3\).*got shape \(16, 2\)"),
    ("x", np.zeros((3, 3)), r"x must be 3-dimensional.*got shape \(3, 3\)"),
    ("b_ih", np.zeros(12), r"b_ih must have shape \(16,\).*got shape \(12,\)"),
    ("b_hh", np.zeros((16, 1)), r"b_hh must be 1-dimensional"),
    ("h0", np.zeros((2, 4)), r"h0 must have shape \(2, 2\).*P = 2.*got shape \(2, 4\)"),
    ("c0", np.zeros((2, 2)), r"c0 must have shape \(2, 4\).*got shape \(2, 2\)"),
    ("c0", np.zeros((1, 2, 4)), r"c0 must be 2-dimensional"),
])
def test_shape_errors(name, value, pattern):
    with pytest.raises(fastrnn.ShapeError, match=pattern):
        call_with(**{name: value})


def test_dtype_errors():
    with pytest.raises(fastrnn.DTypeError, match="w_hr"):
        call_with(w_hr=np.zeros((2, 4), np.float32))
    with pytest.raises(fastrnn.DTypeError, match="w_hr must be a float32 or float64 array; got dtype int64"):
        call_with(w_hr=np.zeros((2, 4), np.int64))


def test_non_finite_weight():
    w_hr = valid()["w_hr"].copy()
    w_hr[0, 0] = np.nan
    with pytest.raises(fastrnn.NonFiniteError, match="w_hr"):
        call_with(w_hr=w_hr)


def test_bad_n_threads():
    with pytest.raises(fastrnn.ArgumentError, match="n_threads"):
        lstm_proj_forward(**forward_kwargs(valid()), n_threads=0)


@pytest.mark.parametrize("name, value, pattern", [
    ("dy", np.zeros((3, 2, 4)), r"dy must have shape \(3, 2, 2\)"),
    ("dh_n", np.zeros((2, 4)), r"dh_n must have shape \(2, 2\)"),
    ("dc_n", np.zeros((2, 2)), r"dc_n must have shape \(2, 4\)"),
    ("dc", np.zeros((2, 4)), r"dc must have shape \(3, 2, 4\)"),
    ("dc", np.zeros((3, 2, 2)), r"dc must have shape \(3, 2, 4\)"),
])
def test_backward_shape_errors(name, value, pattern):
    _, _, cache = call_with()
    with pytest.raises(fastrnn.ShapeError, match=pattern):
        lstm_proj_backward(cache, **{name: value})


def test_backward_errors_on_wrong_cache():
    with pytest.raises(TypeError, match="LSTMProjCache"):
        lstm_proj_backward(object())
    _, _, cache = call_with()
    cache.m_all = np.zeros((1, 1, 1))
    with pytest.raises(fastrnn.StaleCacheError, match="m_all"):
        lstm_proj_backward(cache)
