"""Comparing results with messages that say what failed, and central finite differences.

Every assertion message starts with a context naming the cell, backend, dtype,
shape and seed (see :meth:`conformance.cases.Case.describe`) and says which
quantity disagreed.
"""

import numpy as np
import pytest

from tolerances import scaled


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


def central_differences(f, array, step, indices=None):
    """Central differences of the scalar ``f()`` with respect to entries of ``array``, which ``f`` reads.

    Each entry is moved to ``value + step`` and ``value - step`` in place and then restored, so
    ``array`` may be a model's own weight (or a view of it).

    Parameters
    ----------
    f : callable
        No arguments; returns a float.
    array : ndarray
    step : float
    indices : iterable of int or tuple, optional
        The entries to differentiate (indices into ``array``); every entry by default.

    Returns
    -------
    ndarray of float64 shaped like ``array``
        Zero at the entries not in ``indices``.
    """
    grad = np.zeros(array.shape, np.float64)
    for index in np.ndindex(array.shape) if indices is None else indices:
        saved = array[index]
        array[index] = saved + step
        up = f()
        array[index] = saved - step
        down = f()
        array[index] = saved
        grad[index] = (up - down) / (2 * step)
    return grad


def finite_difference_gradient(loss, arrays, name, step):
    """Central differences of ``loss(arrays)`` (a float) with respect to every entry of ``arrays[name]``.

    ``arrays`` is not modified: the differences move the entries of a copy.

    Returns
    -------
    ndarray of float64 shaped like ``arrays[name]``
    """
    shifted = dict(arrays, **{name: np.array(arrays[name], dtype=np.float64)})
    return central_differences(lambda: loss(shifted), shifted[name], step)


def keras_twins(build, real):
    """One architecture built twice, by ``build(module)`` with ``fastrnn.keras`` and with real Keras
    (``real``), Keras's given fastrnn's initial weights: ``(ours, theirs)``."""
    from fastrnn import keras

    ours, theirs = build(keras), build(real)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def usable_keras():
    """The ``keras`` package with a working backend, or skip the test (absent, or installed without a
    usable backend)."""
    try:
        keras = pytest.importorskip("keras")
        keras.ops.convert_to_tensor(np.zeros(1, dtype=np.float32))
    except (ImportError, RuntimeError, ValueError, AttributeError) as error:
        pytest.skip(f"keras is not usable here: {type(error).__name__}: {error}")
    return keras
