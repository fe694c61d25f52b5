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


def padded_ids(rng, B, T, vocabulary, lengths):
    """Token ids of shape (B, T) in [1, vocabulary), each row zero-padded at its end after ``lengths[row]``
    (the padding ONNX export's mask-as-lengths assumes)."""
    ids = rng.integers(1, vocabulary, (B, T))
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def masked_keras_functional_model(keras, layers, cell, options):
    """A functional model over masked token ids using ``cell`` (a fastrnn.keras layer name) every way
    the ONNX exporter lowers it: stacked, Bidirectional (concat and sum), ``go_backwards`` with
    ``return_state``, Concatenate, a Dense softmax head and masked average pooling; outputs
    ``[probabilities, pooled, sequence, *states]``."""
    Cell = getattr(layers, cell)
    ids = keras.Input((None,), dtype="int64", name="ids")
    embedded = layers.Embedding(30, 5, mask_zero=True, seed=0)(ids)
    sequence = Cell(6, return_sequences=True, seed=1, **options)(embedded)
    both = layers.Bidirectional(Cell(4, return_sequences=True, seed=2, **options))(sequence)
    backwards, *states = Cell(5, go_backwards=True, return_state=True, seed=3, **options)(both)
    merged = layers.Bidirectional(Cell(3, seed=4, **options), merge_mode="sum")(both)
    joined = layers.Concatenate()([backwards, merged, states[0]])
    probabilities = layers.Dense(3, activation="softmax", seed=5)(joined)
    pooled = layers.GlobalAveragePooling1D()(both)
    return keras.Model(ids, [probabilities, pooled, sequence, *states])


def keras_initial_state_model(keras, layers):
    """A functional model whose recurrent layers start from given states: inputs ``[x (B, T, 3), h0 (B, 4)]``,
    a reversed GRU started at ``h0`` feeding a SimpleRNN started at the GRU's final state."""
    x = keras.Input((None, 3))
    h0 = keras.Input((4,))
    out, h = layers.GRU(4, return_sequences=True, return_state=True, go_backwards=True, seed=0)(
        x, initial_state=[h0])
    y = layers.SimpleRNN(4, seed=1)(out, initial_state=[h])
    return keras.Model([x, h0], [layers.Add()([y, h]), out])


#: The cell variants the reduced-precision tests run, name: (cell, gates, options, projected).
REDUCED_CELL_CASES = {
    "rnn-tanh": ("rnn", 1, {"nonlinearity": "tanh"}, False),
    "rnn-relu": ("rnn", 1, {"nonlinearity": "relu"}, False),
    "lstm": ("lstm", 4, {}, False),
    "lstm-proj": ("lstm", 4, {}, True),
    "gru": ("gru", 3, {"reset_after": True}, False),
    "gru-reset-before": ("gru", 3, {"reset_after": False}, False),
}
