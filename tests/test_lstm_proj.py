"""What only the LSTM layer with a projection (``proj_size``) has, beyond the conformance suite.

The conformance suite (``tests/conformance/``) runs the projected LSTM like every other cell:
the reference against finite differences, every backend against the reference (multi-chunk and
column-split cases included), the reference's cache on the compiled kernels, ``n_threads``
bit-identity, whole sequence versus chunks, empty inputs, the registry, torch parity and the
common errors. This file checks what the other cells do not have:

* the gradient ``dc`` with respect to the cell state of every step: the reference's BPTT with
  ``dc`` agrees with central finite differences in float64, ``dc`` adds linearly, ``dc`` at the
  last step is ``dc_n``, and every compiled backend agrees with the reference when ``dc`` is given;
* sizes that reach code only the projection has: threads sharing each step's columns with
  ``P = 37`` rows of ``dW_hr`` split unevenly, and ``P > 256`` where the weight-gradient kernel
  packs its left factor (compiled backends against the reference, bit-identical for ``n_threads``);
* ``n_threads`` reaches both kernels, from the functional API and from ``nn.LSTM(proj_size=...)``;
* importing the projection modules does not import Numba;
* the errors only the projection has: ``H`` and ``P`` read from ``w_hr``, ``0 < P < H``, ``h0``
  of width ``P``, ``w_hr``'s dtype, ``dh_n`` and ``dc`` shapes, a stale ``m_all``.

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
from conformance.cases import Case
from conformance.cells import LSTM_PROJ
from fastrnn import _backends
from fastrnn._partition import batch_chunks, step_column_threads
from fastrnn.functional._lstm_proj import lstm_proj_backward, lstm_proj_forward
from helpers import assert_close, assert_results_close, assert_results_identical, finite_difference_gradient
from tolerances import BACKEND_VS_REFERENCE, FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, HAND_CHECKED, INVARIANT

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
GRADIENTS = LSTM_PROJ.gradients


# ------------------------------------------------------------------------------------------
# The case set
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjCase(Case):
    """A conformance case of the projected LSTM, plus a gradient ``dc`` for the cell state of every step."""

    per_step_dc: bool = True      # pass dc, the gradient w.r.t. every step's cell state

    def describe(self, backend=None, dtype=None):
        return Case.describe(self, LSTM_PROJ, backend, dtype) + f" dc={self.per_step_dc}"

    def arrays(self, dtype):
        """Time-major inputs and loss weights in ``dtype``, ``dc`` among them with ``per_step_dc``."""
        arrays = {name: value.astype(dtype) for name, value in self.reference_arrays(LSTM_PROJ, dtype).items()}
        if self.per_step_dc:
            dc = np.random.default_rng((self.seed, 1)).normal(size=(self.T, self.B, self.H))
            arrays["dc"] = dc.astype(dtype)
        return arrays


#: Cases with ``dc``, for the compiled kernels' handling of it.
DC_CASES = [
    ProjCase("odd_7_5_3_11_4", seed=205, T=7, B=5, D=3, H=11, P=4),
    ProjCase("only_b_hh", seed=207, T=3, B=2, D=3, H=4, P=2, bias="hh"),
    ProjCase("saturated", seed=209, T=5, B=4, D=3, H=6, P=2, input_scale=3.0, weight_scale=8.0,
             recurrent_scale=8.0),
    ProjCase("long_T300", seed=210, T=300, B=2, D=3, H=4, P=2, small=False),
]
#: One batch chunk of a layer large enough that threads share each step's columns (checked below);
#: P > 4 * 8 and not a multiple of 4, so threads share dW_hr's rows unevenly.
COLUMN_SHARE = ProjCase("column_share", seed=212, T=3, B=15, D=7, H=600, P=37, per_step_dc=False, small=False)
#: P above the size from which the weight-gradient kernel packs its left factor, and T*B rows
#: not a multiple of its slabs.
WIDE_P = ProjCase("wide_P_261", seed=213, T=2, B=3, D=2, H=300, P=261, small=False)
PROJECTION_SIZES = [COLUMN_SHARE, WIDE_P]
FD_CASES = [
    ProjCase("fd_both_biases", seed=231, T=3, B=2, D=3, H=4, P=2),
    ProjCase("fd_only_b_ih_T1", seed=232, T=1, B=2, D=2, H=3, P=2, bias="ih"),
    ProjCase("fd_saturated_P1", seed=233, T=3, B=2, D=2, H=3, P=1, input_scale=2.0, weight_scale=4.0,
             recurrent_scale=4.0),
]


def case_params(cases):
    return [pytest.param(case, id=case.name) for case in cases]


# ------------------------------------------------------------------------------------------
# Running a case
# ------------------------------------------------------------------------------------------


def forward_kwargs(arrays):
    return {name: arrays[name] for name in LSTM_PROJ.inputs if name in arrays}


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


# ------------------------------------------------------------------------------------------
# The per-step cell gradient dc on the reference: finite differences, linearity
# ------------------------------------------------------------------------------------------


def loss(arrays):
    """``L`` of the module docstring, on the reference, float64."""
    y, (h_n, c_n), cache = lstm_proj_forward(**forward_kwargs(arrays), backend="python")
    value = np.sum(y * arrays["dy"]) + np.sum(h_n * arrays["dh_n"]) + np.sum(c_n * arrays["dc_n"])
    if "dc" in arrays:
        value += np.sum(cache.c_all * arrays["dc"])
    return float(value)


@pytest.mark.parametrize("case", case_params(FD_CASES))
def test_reference_gradients_match_finite_differences(case):
    context = case.describe("python", np.float64) + " vs central finite differences"
    arrays = case.arrays(np.float64)
    got = run_case(arrays, "python")
    names = [name for name in GRADIENTS if name in arrays]
    assert sorted("d" + name for name in names) == sorted(k for k in got if k.startswith("d")), context
    for name in names:
        expected = finite_difference_gradient(loss, arrays, name, FINITE_DIFFERENCE_STEP)
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
# Compiled backends against the reference: with dc, and on the projection's own sizes
# ------------------------------------------------------------------------------------------


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params(DC_CASES + PROJECTION_SIZES))
def test_compiled_matches_reference(case, compiled_backend, dtype):
    context = case.describe(compiled_backend, dtype)
    got = run_case(case.arrays(dtype), compiled_backend)
    for name, value in got.items():
        assert value.dtype == got["y"].dtype, f"{context}: {name} has dtype {value.dtype}"
    assert_results_close(got, reference(case, dtype), BACKEND_VS_REFERENCE[np.dtype(dtype)], context)


def test_projection_sizes_really_reach_their_code():
    """Guard: if the thresholds of the work partition change, these cases must grow with them."""
    B, H = COLUMN_SHARE.B, COLUMN_SHARE.H
    assert len(batch_chunks(B, H, 4)) - 1 == 1, f"{COLUMN_SHARE.describe()}: several batch chunks"
    assert step_column_threads(B, H, 4, 2) == 2, f"{COLUMN_SHARE.describe()}: no column share"
    assert COLUMN_SHARE.P > 4 * 8 and COLUMN_SHARE.P % 4, COLUMN_SHARE.describe()
    assert WIDE_P.P > 256 and (WIDE_P.T * WIDE_P.B) % 256, WIDE_P.describe()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", case_params([DC_CASES[0]] + PROJECTION_SIZES))
def test_n_threads_bit_identical(case, any_backend, dtype):
    context = case.describe(any_backend, dtype)
    one = run_case(case.arrays(dtype), any_backend, n_threads=1)
    for n_threads in (2, 3, None):
        other = run_case(case.arrays(dtype), any_backend, n_threads=n_threads)
        assert_results_identical(other, one, f"{context} n_threads={n_threads} vs 1")


# ------------------------------------------------------------------------------------------
# Threads reach the kernels; lazy import
# ------------------------------------------------------------------------------------------


def test_n_threads_reaches_the_kernels(any_backend, monkeypatch):
    """The functional API passes its n_threads (or its default) to both kernels, and so does nn.LSTM."""
    from fastrnn import _threads

    monkeypatch.setattr(_threads, "available_cores", lambda: 8)  # n_threads=3 is not capped on a small machine
    _, module = _backends.resolve(any_backend, kernel="lstm_proj_forward")
    seen = []
    # the Cython forward on weights packed once (nn modules) counts as the forward
    kernels = ("lstm_proj_forward", "lstm_proj_backward", "lstm_proj_forward_packed")
    for kernel in (k for k in kernels if hasattr(module, k)):
        def spy(*args, _kernel=getattr(module, kernel), _name=kernel.replace("_packed", "")):
            seen.append((_name, args[-1]))
            return _kernel(*args)
        monkeypatch.setattr(module, kernel, spy)
    arrays = DC_CASES[0].arrays(np.float64)
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


def test_import_does_not_import_numba():
    code = ("import sys, fastrnn, fastrnn.functional._lstm_proj, fastrnn._python.lstm_proj; "
            "assert 'numba' not in sys.modules, 'numba was imported'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------
# Errors only the projection has (the common ones: tests/conformance/test_errors.py)
# ------------------------------------------------------------------------------------------


def valid():
    return ProjCase("valid", seed=250, T=3, B=2, D=3, H=4, P=2).arrays(np.float64)


def call_with(**changes):
    arrays = forward_kwargs(valid())
    arrays.update(changes)
    return lstm_proj_forward(**arrays, backend="python")


@pytest.mark.parametrize("name, value, pattern", [
    ("w_hr", np.zeros((2, 5)), r"w_ih must have shape \(20, 3\)"),         # H from w_hr disagrees with w_ih
    ("w_hr", np.zeros((5, 4)), r"0 < P < H.*got shape \(5, 4\)"),
    ("w_hr", np.zeros((0, 4)), r"0 < P < H.*lstm_forward"),
    ("h0", np.zeros((2, 4)), r"h0 must have shape \(2, 2\).*P = 2.*got shape \(2, 4\)"),
])
def test_shape_errors(name, value, pattern):
    with pytest.raises(fastrnn.ShapeError, match=pattern):
        call_with(**{name: value})


def test_dtype_errors():
    with pytest.raises(fastrnn.DTypeError, match="w_hr"):
        call_with(w_hr=np.zeros((2, 4), np.float32))
    with pytest.raises(fastrnn.DTypeError, match="w_hr must be a float32 or float64 array; got dtype int64"):
        call_with(w_hr=np.zeros((2, 4), np.int64))


@pytest.mark.parametrize("name, value, pattern", [
    ("dh_n", np.zeros((2, 4)), r"dh_n must have shape \(2, 2\)"),
    ("dc", np.zeros((2, 4)), r"dc must have shape \(3, 2, 4\)"),
    ("dc", np.zeros((3, 2, 2)), r"dc must have shape \(3, 2, 4\)"),
])
def test_backward_shape_errors(name, value, pattern):
    _, _, cache = call_with()
    with pytest.raises(fastrnn.ShapeError, match=pattern):
        lstm_proj_backward(cache, **{name: value})


def test_backward_errors_on_stale_workspace():
    _, _, cache = call_with()
    cache.m_all = np.zeros((1, 1, 1))
    with pytest.raises(fastrnn.StaleCacheError, match="m_all"):
        lstm_proj_backward(cache)
