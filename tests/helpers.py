"""Running a case through the public API, and comparing results with messages that say what failed.

Every assertion message names the cell, backend, dtype, shape and seed (through
:meth:`cases.Case.describe`) and which quantity disagreed.
"""

import functools

import numpy as np

import fastrnn
from tolerances import scaled

#: Every gradient rnn_backward can return, in a fixed order.
GRADIENTS = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
INPUTS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0")


def forward_kwargs(arrays):
    """The keyword arguments of ``rnn_forward`` among ``arrays`` (drops ``dy``/``dh_n``)."""
    return {name: arrays[name] for name in INPUTS if name in arrays}


def run_case(case, backend, dtype, n_threads=None, arrays=None):
    """Forward and backward of ``case`` on ``backend`` in ``dtype`` through the public API.

    Returns
    -------
    dict of str to ndarray
        ``"y"`` (time-major), ``"h_n"``, and ``"d<name>"`` for each gradient returned.
    """
    arrays = case.arrays(dtype) if arrays is None else arrays
    y, h_n, cache = fastrnn.rnn_forward(
        **forward_kwargs(arrays), nonlinearity=case.nonlinearity, batch_first=case.batch_first,
        backend=backend, n_threads=n_threads,
    )
    grads = fastrnn.rnn_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    return collect(y, h_n, grads, case.batch_first)


def collect(y, h_n, grads, batch_first):
    """Results in one dict, time-major, as plain arrays."""
    out = {"y": np.asarray(y).transpose(1, 0, 2) if batch_first else np.asarray(y), "h_n": np.asarray(h_n)}
    for name, value in grads.items():
        value = np.asarray(value)
        out["d" + name] = value.transpose(1, 0, 2) if (batch_first and name == "x") else value
    return out


@functools.lru_cache(maxsize=None)
def reference(case, dtype):
    """The reference backend's results, in float64, on the case's inputs rounded to ``dtype``."""
    arrays = case.reference_arrays(np.dtype(dtype))
    y, h_n, cache = fastrnn.rnn_forward(**forward_kwargs(arrays), nonlinearity=case.nonlinearity,
                                        backend="python")
    grads = fastrnn.rnn_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    result = collect(y, h_n, grads, batch_first=False)
    for value in result.values():
        value.flags.writeable = False
    return result


def assert_close(actual, expected, tolerance, context, what):
    """``np.testing.assert_allclose`` with the atol scaled (see tolerances.py) and a full message."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{context}: {what} has shape {actual.shape}, expected {expected.shape}")
    np.testing.assert_allclose(actual, expected, **scaled(tolerance, expected),
                               err_msg=f"{context}: {what} differs")


def assert_results_close(actual, expected, tolerance, context):
    """Every entry of two result dicts of :func:`run_case` agree within ``tolerance``."""
    assert sorted(actual) == sorted(expected), f"{context}: results {sorted(actual)} != {sorted(expected)}"
    for name in expected:
        assert_close(actual[name], expected[name], tolerance, context, name)


def assert_results_identical(actual, expected, context):
    """Every entry of two result dicts is bit for bit the same (dtype included)."""
    assert sorted(actual) == sorted(expected), f"{context}: results {sorted(actual)} != {sorted(expected)}"
    for name in expected:
        a, e = actual[name], expected[name]
        assert a.dtype == e.dtype, f"{context}: {name} has dtype {a.dtype}, expected {e.dtype}"
        if not np.array_equal(a, e):
            diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
            raise AssertionError(
                f"{context}: {name} is not bit-identical: {np.count_nonzero(diff)} of {diff.size} "
                f"entries differ, by up to {diff.max():.3g}")
