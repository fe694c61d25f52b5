"""Every backend against the reference backend run in float64, on the deterministic case list.

For a float32 run the reference sees the same float32-rounded inputs, computed in
float64, so the comparison measures only what the float32 kernels lose. The
reference backend itself is checked too wherever it is not the reference run
(float32, and every layout other than time-major C order).
"""

import numpy as np
import pytest

from conformance.cases import (DTYPES, SMALL_CASES, Case, assert_matches_reference, backend_params, dtype_params, matrix,
                               run)
from conformance.cells import CELLS, require
from conftest import COMPILED_BACKENDS
from helpers import assert_close
from tolerances import BACKEND_VS_REFERENCE, INVARIANT


@pytest.mark.parametrize("cell, case, backend, dtype", matrix())
def test_matches_reference(cell, case, backend, dtype):
    """Outputs, final states and every gradient agree with the float64 reference."""
    require(cell, backend)
    context = case.describe(cell, backend, dtype)
    assert_matches_reference(run(cell, case, backend, dtype), cell, case, dtype, BACKEND_VS_REFERENCE[dtype], context)


@pytest.mark.parametrize("cell, case, backend, dtype", matrix(SMALL_CASES[::3], COMPILED_BACKENDS))
def test_backward_accepts_reference_cache(cell, case, backend, dtype):
    """The workspace is part of the contract: a compiled backward runs on the reference forward's cache."""
    require(cell, backend)
    context = case.describe(cell, backend, dtype) + " (forward on python, backward on compiled)"
    arrays = case.arrays(cell, dtype)
    _, _, cache = cell.forward(arrays, "python", batch_first=case.batch_first)
    assert cache.backend == "python", context
    expected = cell.backward(cache, arrays)
    cache.backend = backend
    grads = cell.backward(cache, arrays)
    assert sorted(grads) == sorted(expected), context
    for name in expected:
        assert grads[name].dtype == dtype, f"{context}: gradient {name} has dtype {grads[name].dtype}"
        assert_close(grads[name], expected[name], INVARIANT[dtype], context, f"gradient {name}")


@pytest.mark.parametrize("cell, case, backend, dtype", matrix(SMALL_CASES[:6], dtypes=DTYPES[:1]))
def test_inference_matches_training_forward(cell, case, backend, dtype):
    """``requires_grad=False`` returns the same outputs, bit for bit, and no cache."""
    require(cell, backend)
    context = case.describe(cell, backend, dtype)
    arrays = case.arrays(cell, dtype)
    y, states, cache = cell.forward(arrays, backend, batch_first=case.batch_first)
    y2, states2, cache2 = cell.forward(arrays, backend, batch_first=case.batch_first, requires_grad=False)
    assert cache is not None and cache2 is None, context
    assert y2.flags.writeable and not y.flags.writeable, f"{context}: y is read-only exactly while a cache refers to it"
    np.testing.assert_array_equal(y2, y, err_msg=f"{context}: y")
    for name, value in states.items():
        np.testing.assert_array_equal(states2[name], value, err_msg=f"{context}: {name}")


@pytest.mark.parametrize("cell, case, backend, dtype", matrix(SMALL_CASES[::2], dtypes=DTYPES[:1]))
def test_inputs_are_not_modified(cell, case, backend, dtype):
    """Forward and backward leave every argument as it was (read-only cases would raise anyway)."""
    require(cell, backend)
    context = case.describe(cell, backend, dtype)
    arrays = case.arrays(cell, dtype)
    before = {name: value.copy() for name, value in arrays.items()}
    run(cell, case, backend, dtype, arrays=arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{context}: {name} was modified")


@pytest.mark.parametrize("backend", backend_params(COMPILED_BACKENDS))
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_float16_computes_in_float32(cell, backend):
    """float16 inputs compute in float32 and agree with the float32 run on the same values."""
    require(cell, backend)
    case = SMALL_CASES[5]
    context = case.describe(cell, backend, np.float16)
    arrays16 = {name: value.astype(np.float16) for name, value in case.arrays(cell, np.float64).items()}
    arrays32 = {name: value.astype(np.float32) for name, value in arrays16.items()}
    got = run(cell, case, backend, np.float16, arrays=arrays16)
    expected = run(cell, case, backend, np.float32, arrays=arrays32)
    for name, value in expected.items():
        assert got[name].dtype == np.float32, f"{context}: {name} has dtype {got[name].dtype}"
        np.testing.assert_array_equal(got[name], value, err_msg=f"{context}: {name}")


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("backend", backend_params(COMPILED_BACKENDS))
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_nan_in_x_propagates_like_reference(cell, backend, dtype):
    """x is not checked for NaN (only weights and states are), so a NaN input must come out as NaN,
    as in the reference and in torch; a kernel must not turn it into a number."""
    require(cell, backend)
    case = Case("nan_in_x", seed=41, T=2, B=3, D=2, H=2, P=1)
    context = case.describe(cell, backend, dtype)
    arrays = case.arrays(cell, dtype)
    arrays["x"][0, 0, 0] = np.nan
    expected, _, _ = cell.forward({name: value.astype(np.float64) for name, value in arrays.items()}, "python")
    y, _, _ = cell.forward(arrays, backend)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected),
                                  err_msg=f"{context}: NaN positions differ from the reference; got {y.ravel()}")
    assert np.isnan(y[0, 0]).all() and not np.isnan(y[:, 1:]).any(), f"{context}: NaN reached other rows: {y}"
