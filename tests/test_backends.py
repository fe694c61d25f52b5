"""Every compiled backend against the reference backend, run in float64, on the deterministic case set.

For a float32 run the reference sees the same float32-rounded inputs, computed in
float64, so the comparison measures only what the compiled float32 kernels lose.
"""

import numpy as np
import pytest

import fastrnn
from cases import CASES, SMALL_CASES, case_params
from helpers import assert_close, assert_results_close, forward_kwargs, reference, run_case
from tolerances import BACKEND_VS_REFERENCE, INVARIANT

DTYPES = [np.float64, np.float32]

pytestmark = pytest.mark.compiled


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", case_params(CASES))
def test_matches_reference(case, compiled_backend, dtype):
    """Outputs, final state and every gradient agree with the float64 reference."""
    context = case.describe(compiled_backend, dtype)
    result = run_case(case, compiled_backend, dtype)
    for name, value in result.items():
        assert value.dtype == np.dtype(dtype), f"{context}: {name} has dtype {value.dtype}"
    expected = reference(case, np.dtype(dtype))
    assert_results_close(result, expected, BACKEND_VS_REFERENCE[np.dtype(dtype)], context)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", case_params(SMALL_CASES))
def test_backward_accepts_reference_cache(case, compiled_backend, dtype):
    """The workspace is part of the contract: a compiled backward runs on the reference forward's cache."""
    context = case.describe(compiled_backend, dtype) + " (forward on python, backward on compiled)"
    arrays = case.arrays(dtype)
    y, h_n, cache = fastrnn.rnn_forward(**forward_kwargs(arrays), nonlinearity=case.nonlinearity,
                                        batch_first=case.batch_first, backend="python")
    assert cache.backend == "python"
    expected = fastrnn.rnn_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    cache.backend = compiled_backend
    grads = fastrnn.rnn_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    assert sorted(grads) == sorted(expected), context
    for name in expected:
        assert grads[name].dtype == np.dtype(dtype), f"{context}: gradient {name} has dtype {grads[name].dtype}"
        assert_close(grads[name], expected[name], INVARIANT[np.dtype(dtype)], context, f"gradient {name}")


@pytest.mark.parametrize("case", case_params(SMALL_CASES[:6]))
def test_inference_matches_training_forward(case, compiled_backend):
    """``requires_grad=False`` returns the same outputs and no cache."""
    context = case.describe(compiled_backend, np.float64)
    arrays = case.arrays(np.float64)
    kwargs = dict(forward_kwargs(arrays), nonlinearity=case.nonlinearity, batch_first=case.batch_first,
                  backend=compiled_backend)
    y, h_n, cache = fastrnn.rnn_forward(**kwargs)
    y2, h_n2, cache2 = fastrnn.rnn_forward(**kwargs, requires_grad=False)
    assert cache is not None and cache2 is None, context
    np.testing.assert_array_equal(y2, y, err_msg=context)
    np.testing.assert_array_equal(h_n2, h_n, err_msg=context)


@pytest.mark.parametrize("case", case_params(SMALL_CASES))
def test_inputs_are_not_modified(case, compiled_backend):
    """Forward and backward leave every argument as it was (read-only cases would raise anyway)."""
    context = case.describe(compiled_backend, np.float64)
    arrays = case.arrays(np.float64)
    before = {name: value.copy() for name, value in arrays.items()}
    run_case(case, compiled_backend, np.float64, arrays=arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{context}: {name} was modified")


def test_float16_computes_in_float32(compiled_backend):
    """float16 inputs compute in float32 and agree with the float32 run on the same values."""
    case = SMALL_CASES[4]
    arrays16 = {name: value.astype(np.float16) for name, value in case.arrays(np.float64).items()}
    arrays32 = {name: value.astype(np.float32) for name, value in arrays16.items()}
    y16, h16, _ = fastrnn.rnn_forward(**forward_kwargs(arrays16), backend=compiled_backend)
    y32, h32, _ = fastrnn.rnn_forward(**forward_kwargs(arrays32), backend=compiled_backend)
    assert y16.dtype == np.float32 and h16.dtype == np.float32
    np.testing.assert_array_equal(y16, y32, err_msg=case.describe(compiled_backend, np.float16))
    np.testing.assert_array_equal(h16, h32, err_msg=case.describe(compiled_backend, np.float16))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_nan_in_x_propagates_like_reference(compiled_backend, nonlinearity, dtype):
    """x is not checked for NaN (only weights and h0 are), so a NaN input must come out as NaN,
    as in the reference and in torch.nn.RNN; a kernel must not turn it into a number."""
    context = f"cell=RNN backend={compiled_backend} dtype={np.dtype(dtype).name} (T, B, D, H)=(2, 3, 1, 1) " \
              f"seed=none nonlinearity={nonlinearity}"
    x = np.array([[np.nan, 1.0, -1.0], [0.5, 0.5, 0.5]], dtype).reshape(2, 3, 1)
    w_ih, w_hh = np.ones((1, 1), dtype), np.full((1, 1), 0.5, dtype)
    expected, _, _ = fastrnn.rnn_forward(x.astype(np.float64), w_ih.astype(np.float64), w_hh.astype(np.float64),
                                         nonlinearity=nonlinearity, backend="python")
    y, _, _ = fastrnn.rnn_forward(x, w_ih, w_hh, nonlinearity=nonlinearity, backend=compiled_backend)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected),
                                  err_msg=f"{context}: NaN positions differ from the reference; got {y.ravel()}")
