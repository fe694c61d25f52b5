"""fastrnn.keras.utils: pad_sequences and to_categorical, against hand-worked cases and real Keras."""

import itertools
import os
import zlib

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import utils


@pytest.fixture(scope="module")
def keras_utils():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    return keras.utils


# ---- hand-worked cases: what the definitions give

def test_pad_sequences_pre_pads_and_truncates_at_the_front():
    out = utils.pad_sequences([[1, 2, 3, 4], [5]], maxlen=3)
    np.testing.assert_array_equal(out, [[2, 3, 4], [0, 0, 5]])
    assert out.dtype == np.int32


def test_pad_sequences_post_pads_and_truncates_at_the_end():
    out = utils.pad_sequences([[1, 2, 3, 4], [5]], maxlen=3, padding="post", truncating="post", value=-1)
    np.testing.assert_array_equal(out, [[1, 2, 3], [5, -1, -1]])


def test_pad_sequences_keeps_the_steps_trailing_shape():
    out = utils.pad_sequences([np.ones((2, 3)), np.full((1, 3), 2.0)], dtype="float32")
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[1], [[0, 0, 0], [2, 2, 2]])


def test_pad_sequences_pads_text_with_an_object_dtype():
    out = utils.pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert out.tolist() == [["a", "b"], ["<pad>", "c"]]


def test_pad_sequences_of_nothing():
    assert utils.pad_sequences([]).shape == (0, 0)
    assert utils.pad_sequences([], maxlen=4).shape == (0, 4)
    np.testing.assert_array_equal(utils.pad_sequences([[1, 2]], maxlen=0), np.zeros((1, 0)))


@pytest.mark.parametrize("kwargs, match", [
    ({"padding": "middle"}, "padding must be 'pre' or 'post'; got 'middle'"),
    ({"truncating": "both"}, "truncating must be 'pre' or 'post'; got 'both'"),
    ({"maxlen": -1}, "maxlen must be None or a non-negative int; got -1"),
    ({"maxlen": 2.5}, "maxlen must be None or a non-negative int; got 2.5"),
    ({"value": "x"}, "value 'x' is a string, but dtype is int32"),
])
def test_pad_sequences_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        utils.pad_sequences([[1, 2], [3]], **kwargs)


def test_pad_sequences_refuses_steps_of_different_shapes():
    with pytest.raises(ShapeError, match=r"sequences\[1\] has steps of shape \(2,\)"):
        utils.pad_sequences([np.ones((2, 3)), np.ones((1, 2))])


def test_pad_sequences_refuses_what_is_not_a_list_of_sequences():
    with pytest.raises(ArgumentError, match="sequences must be a list of sequences; got int"):
        utils.pad_sequences(3)
    with pytest.raises(ArgumentError, match=r"sequences\[1\] must be a sequence"):
        utils.pad_sequences([[1], 2])


def test_to_categorical_one_hot_rows():
    np.testing.assert_array_equal(utils.to_categorical([2, 0, 1]), np.eye(3)[[2, 0, 1]])
    out = utils.to_categorical(np.array([[1], [3]]), num_classes=5)
    assert out.shape == (2, 5) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
    assert utils.to_categorical([[0, 1], [1, 1]]).shape == (2, 2, 2)
    np.testing.assert_array_equal(utils.to_categorical(2, 4), [0, 0, 1, 0])


@pytest.mark.parametrize("x, kwargs, match", [
    ([-1, 2], {}, "x holds label -1, outside 0..2"),
    ([1, 4], {"num_classes": 3}, "x holds label 4, outside 0..2"),
    ([1.5, 2.0], {}, "whole-number class labels"),
    ([], {}, "x is empty: pass num_classes"),
    (["a"], {}, "x must hold integer class labels"),
    ([1], {"num_classes": -2}, "num_classes must be a positive int; got -2"),
])
def test_to_categorical_refuses_bad_labels(x, kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        utils.to_categorical(x, **kwargs)


# ---- real Keras on a grid of arguments

def _ragged(rng, n, trailing=()):
    return [rng.integers(1, 9, (int(rng.integers(0, 7)),) + trailing).tolist() for _ in range(n)]


@pytest.mark.parametrize("maxlen, padding, truncating, dtype, value", list(itertools.product(
    [None, 1, 3, 8], ["pre", "post"], ["pre", "post"], ["int32", "float32", "int64"], [0, -1, 2.5])))
def test_pad_sequences_equals_keras(keras_utils, maxlen, padding, truncating, dtype, value):
    rng = np.random.default_rng(zlib.crc32(repr((maxlen, padding, truncating, dtype, value)).encode()))
    sequences = _ragged(rng, 6)
    sequences[0] = [4, 5, 6, 7, 8, 1, 2]  # at least one non-empty, longer than the small maxlens
    expected = keras_utils.pad_sequences(sequences, maxlen=maxlen, dtype=dtype, padding=padding,
                                         truncating=truncating, value=value)
    out = utils.pad_sequences(sequences, maxlen=maxlen, dtype=dtype, padding=padding,
                              truncating=truncating, value=value)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("padding, truncating", list(itertools.product(["pre", "post"], ["pre", "post"])))
def test_pad_sequences_with_trailing_shape_equals_keras(keras_utils, padding, truncating):
    rng = np.random.default_rng(7)
    sequences = [rng.standard_normal((int(n), 3)) for n in (4, 1, 6, 2)]
    expected = keras_utils.pad_sequences(sequences, maxlen=5, dtype="float32", padding=padding,
                                         truncating=truncating)
    np.testing.assert_array_equal(utils.pad_sequences(sequences, maxlen=5, dtype="float32",
                                                      padding=padding, truncating=truncating), expected)


@pytest.mark.parametrize("shape, num_classes", [((7,), None), ((7,), 10), ((4, 1), None), ((3, 5), 9),
                                                ((2, 3, 1), 4), ((), 6)])
def test_to_categorical_equals_keras(keras_utils, shape, num_classes):
    rng = np.random.default_rng(len(shape))
    x = rng.integers(0, 4, shape)
    expected = keras_utils.to_categorical(x, num_classes)
    out = utils.to_categorical(x, num_classes)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)
