"""The vectorisable float32 tanh of the compiled backends, against float64 tanh rounded to float32.

The Numba function is called directly through a small njit wrapper; every compiled
backend is also checked through its kernel: with T=1, D=H=1, w_ih=1, w_hh=0, no bias
and h0=0, the pre-activation is exactly x, so the output is the kernel's tanh(x).
"""

import math

import numpy as np
import pytest

import fastrnn
from tolerances import TANH_FLOAT32_ULP, TANH_FLOAT64_ULP


def grid(dtype):
    """Dense over [-12, 12], plus tiny, subnormal, huge and infinite values, both signs, and zero."""
    info = np.finfo(dtype)
    dense = np.linspace(-12.0, 12.0, 240_001)
    tiny = np.geomspace(float(info.smallest_subnormal), 1e-2, 2_000)
    large = np.geomspace(12.0, float(info.max) / 2, 500)
    magnitudes = np.concatenate([tiny, large, [info.smallest_normal, 7.9, 7.905, 7.906, 8.0, 9.0, 10.0, 1e4]])
    values = np.concatenate([dense, magnitudes, -magnitudes, [0.0, np.inf, -np.inf]])
    return values.astype(dtype)


def ulp_distance(a, b):
    """Distance in units in the last place between float arrays of one dtype (0 between +0 and -0)."""
    assert a.dtype == b.dtype
    int_type = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}[a.dtype]
    smallest = np.int64(np.iinfo(int_type).min)

    def on_a_line(v):  # sign-magnitude bit patterns mapped onto a monotone integer line
        bits = v.view(int_type).astype(np.int64)
        return np.where(bits < 0, smallest - bits, bits)

    return np.abs(on_a_line(a) - on_a_line(b))


def exact_tanh(x):
    """float64 tanh, rounded to the dtype of ``x``."""
    return np.tanh(x.astype(np.float64)).astype(x.dtype)


def check_tanh(actual, x, max_ulp, context):
    actual = np.asarray(actual)
    assert actual.dtype == x.dtype, f"{context}: result dtype {actual.dtype}"
    expected = exact_tanh(x)
    distance = ulp_distance(actual, expected)
    worst = int(np.argmax(distance))
    assert distance[worst] <= max_ulp, (
        f"{context}: tanh({x[worst]!r}) = {actual[worst]!r}, expected {expected[worst]!r} "
        f"({distance[worst]} ulp > {max_ulp})")
    assert np.all(np.abs(actual) <= 1), f"{context}: |tanh| > 1 at x = {x[np.abs(actual) > 1][:5]}"


def numba_tanh():
    numba = pytest.importorskip("numba")
    from conftest import require_backend

    require_backend("numba")
    from fastrnn._numba.activations import tanh

    @numba.njit
    def apply(values):
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = tanh(values[i])
        return out

    return apply


@pytest.mark.compiled
def test_numba_tanh_float32_within_ulp():
    apply = numba_tanh()
    x = grid(np.float32)
    y = apply(x)
    check_tanh(y, x, TANH_FLOAT32_ULP, "backend=numba dtype=float32 fastrnn._numba.activations.tanh")
    assert np.abs(y[x == np.inf] - 1) <= TANH_FLOAT32_ULP * np.finfo(np.float32).epsneg
    np.testing.assert_array_equal(apply(-x), -y, err_msg="backend=numba dtype=float32: tanh is not odd")


@pytest.mark.compiled
def test_numba_tanh_float64_is_exact():
    apply = numba_tanh()
    x = grid(np.float64)
    y = apply(x)
    check_tanh(y, x, TANH_FLOAT64_ULP, "backend=numba dtype=float64 fastrnn._numba.activations.tanh")
    expected = np.array([math.tanh(v) for v in x[::97]])
    np.testing.assert_array_equal(y[::97], expected, err_msg="backend=numba dtype=float64: not libm's tanh")


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_numba_tanh_nan_is_nan(dtype):
    apply = numba_tanh()
    y = apply(np.array([np.nan, -np.nan, 0.5], dtype))
    assert np.isnan(y[0]) and np.isnan(y[1]), f"backend=numba dtype={np.dtype(dtype).name}: tanh(nan) = {y[:2]}"


def kernel_tanh(backend, x):
    """y = tanh(x) through rnn_forward: T=1, B=x.size, D=H=1, w_ih=1, w_hh=0, no bias, h0=0."""
    one = np.ones((1, 1), x.dtype)
    y, h_n, _ = fastrnn.rnn_forward(x.reshape(1, -1, 1), one, np.zeros_like(one), backend=backend,
                                    requires_grad=False)
    return y.reshape(-1)


@pytest.mark.compiled
def test_kernel_tanh_float32_within_ulp(compiled_backend):
    x = grid(np.float32)
    x = x[x != 0]   # -0 + 0 (the recurrent term) is +0: not a property of tanh
    check_tanh(kernel_tanh(compiled_backend, x), x, TANH_FLOAT32_ULP,
               f"backend={compiled_backend} dtype=float32 tanh inside rnn_forward, (T, B, D, H)=(1, {x.size}, 1, 1)")


@pytest.mark.compiled
def test_kernel_tanh_float64_within_ulp(compiled_backend):
    x = grid(np.float64)
    x = x[x != 0]
    check_tanh(kernel_tanh(compiled_backend, x), x, TANH_FLOAT64_ULP,
               f"backend={compiled_backend} dtype=float64 tanh inside rnn_forward, (T, B, D, H)=(1, {x.size}, 1, 1)")


@pytest.mark.compiled
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kernel_tanh_nan_is_nan(compiled_backend, dtype):
    """x is not checked for NaN (only weights and h0 are), so NaN must come out as NaN, not as a number."""
    y = kernel_tanh(compiled_backend, np.array([np.nan, 0.5, -np.nan], dtype))
    assert np.isnan(y[0]) and np.isnan(y[2]) and not np.isnan(y[1]), (
        f"backend={compiled_backend} dtype={np.dtype(dtype).name}: tanh(nan) inside rnn_forward gave {y}")
