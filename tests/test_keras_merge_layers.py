"""The merge layers (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot):
finite differences of their backward, masks by Keras 3's rules worked out by hand, errors, and
real Keras 3 (forward, GradientTape gradients, propagated masks, configs)."""

import json

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import layers
from fastrnn.keras.serialization import deserialize_layer, layer_classes, serialize_layer
from layer_checks import check_finite_differences, compare_configs, compare_with_keras, keras_module
from tolerances import HAND_CHECKED

F64 = dict(dtype="float64")
ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
B, T, D = 3, 4, 5


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


def step_masks():
    """Two (B, T) masks with steps valid in one, both and neither."""
    return [np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], bool),
            np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0]], bool)]


def n_inputs(name):
    return 2 if name == "Subtract" else 3


@pytest.fixture(scope="module")
def keras():
    return keras_module()


# ---- finite differences (float64, no Keras)

@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shapes", [[(B, D)] * 3, [(B, T, D)] * 3, [(B, T, D), (B, 1, D), (B, D)]])
def test_elementwise_merge_gradients(name, shapes):
    inputs = [normal(i, s) for i, s in enumerate(shapes)][:n_inputs(name)]
    check_finite_differences(getattr(layers, name)(**F64), inputs)


@pytest.mark.parametrize("name", ["Multiply", "Maximum", "Minimum"])
@pytest.mark.parametrize("which", [(0, 1), (0,), (1,)])
def test_masked_merge_gradients(name, which):
    masks = [m if i in which else None for i, m in enumerate(step_masks())]
    inputs = [normal(1, (B, T, D)), normal(2, (B, T, D))]
    check_finite_differences(getattr(layers, name)(**F64), inputs, mask=masks)


@pytest.mark.parametrize("axis, shapes", [(-1, [(B, T, 2), (B, T, 3)]), (1, [(B, 2, D), (B, 4, D)]),
                                          (-1, [(B, 2), (B, 3), (B, 1)])])
def test_concatenate_gradients(axis, shapes):
    inputs = [normal(i, s) for i, s in enumerate(shapes)]
    out = check_finite_differences(layers.Concatenate(axis=axis, **F64), inputs)
    np.testing.assert_array_equal(out, np.concatenate(inputs, axis=axis))


@pytest.mark.parametrize("axes, shapes", [(-1, [(B, D), (B, D)]), (2, [(B, T, D), (B, 6, D)]),
                                          ((1, 1), [(B, T, D), (B, T, 2)]), ((2, 1), [(B, T, D), (B, D)]),
                                          ((1, 2), [(B, D), (B, T, D)])])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_gradients(axes, shapes, normalize):
    inputs = [normal(i + 3, s) for i, s in enumerate(shapes)]
    check_finite_differences(layers.Dot(axes=axes, normalize=normalize, **F64), inputs)


# ---- hand-worked cases

def test_dot_of_two_vectors_is_a_column():
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(layers.Dot(axes=1, **F64)([x, y]), [[17.0], [53.0]])
    cosine = layers.Dot(axes=1, normalize=True, **F64)([x, y])
    np.testing.assert_allclose(cosine[0, 0], 17 / np.sqrt(5 * 61), **HAND_CHECKED)


def test_masked_merges_follow_keras_rules():
    """Multiply takes a masked entry as 1, and zeroes where every mask is off; Maximum takes the
    other input at a masked entry; the output mask is the OR of the masks."""
    m1, m2 = step_masks()
    a, b = np.full((B, T, 1), 2.0), np.full((B, T, 1), -3.0)
    product = layers.Multiply(**F64)([a, b], mask=[m1, m2])[..., 0]
    expected = np.where(m1 & m2, -6.0, np.where(m1, 2.0, np.where(m2, -3.0, 0.0)))
    np.testing.assert_array_equal(product, expected)
    only_first = layers.Multiply(**F64)([a, b], mask=[m1, None])[..., 0]
    np.testing.assert_array_equal(only_first, np.where(m1, -6.0, -3.0))
    largest = layers.Maximum(**F64)([a, b], mask=[m1, m2])[..., 0]
    np.testing.assert_array_equal(largest, np.where(m1, 2.0, np.where(m2, -3.0, 2.0)))
    for name in ELEMENTWISE:
        layer = getattr(layers, name)()
        np.testing.assert_array_equal(layer.compute_mask([a, b], [m1, m2]), m1 | m2)
        assert layer.compute_mask([a, b], [m1, None]) is None
        assert layer.compute_mask([a, b], None) is None


def test_concatenate_masks_take_an_unmasked_input_as_valid():
    m1, m2 = step_masks()
    a, b = np.zeros((B, T, 2)), np.zeros((B, T, 3))
    features = layers.Concatenate()
    np.testing.assert_array_equal(features.compute_mask([a, b], [m1, m2]), m1 | m2)
    assert features.compute_mask([a, b], [m1, None]).all()
    assert features.compute_mask([a, b], [None, None]) is None
    steps = layers.Concatenate(axis=1)
    np.testing.assert_array_equal(steps.compute_mask([a, a], [m1, None]),
                                  np.concatenate([m1, np.ones_like(m1)], axis=1))
    assert layers.Dot(axes=2).compute_mask([a, a], [m1, m2]) is None


# ---- errors

@pytest.mark.parametrize("layer, shapes, match", [
    (lambda: layers.Add(name="add_x"), [(B, T, D), (B, T, 4)],
     r"layer 'add_x' \(Add\) cannot merge inputs of shapes \(B, 4, 5\), \(B, 4, 4\): axis 2 has sizes \[4, 5\]"),
    (lambda: layers.Concatenate(name="cat"), [(B, T, 2), (B, 3, 2)],
     r"layer 'cat' \(Concatenate\) needs inputs of the same shape except along axis -1; got shapes "
     r"\(B, 4, 2\), \(B, 3, 2\)"),
    (lambda: layers.Dot(axes=2, name="dot_x"), [(B, T, D), (B, T, 4)],
     r"layer 'dot_x' \(Dot\) cannot multiply inputs of shapes \(B, 4, 5\) and \(B, 4, 4\) along axes 2 and 2"),
])
def test_mismatched_shapes_are_named(layer, shapes, match):
    with pytest.raises(ShapeError, match=match):
        layer()([np.zeros(s) for s in shapes])


def test_bad_merge_calls():
    with pytest.raises(ArgumentError, match=r"layer 'sub' \(Subtract\) takes exactly 2 inputs; got 3"):
        layers.Subtract(name="sub")([np.zeros((2, 3))] * 3)
    with pytest.raises(ArgumentError, match=r"\(Add\) takes a list of inputs"):
        layers.Add()(np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="different batch sizes"):
        layers.Add()([np.zeros((2, 3)), np.zeros((4, 3))])
    with pytest.raises(ArgumentError, match="mask must be a list with one entry"):
        layers.Add()([np.zeros((2, 3, 1))] * 2, mask=[None])
    with pytest.raises(ArgumentError, match="Concatenate: axis must be an int; got 'x'"):
        layers.Concatenate(axis="x")
    with pytest.raises(ArgumentError, match=r"Dot: axes must be an int or a pair of ints; got \(1, 2, 3\)"):
        layers.Dot(axes=(1, 2, 3))
    with pytest.raises(ArgumentError, match=r"axes=0 must name non-batch axes"):
        layers.Dot(axes=0)([np.zeros((2, 3))] * 2)
    with pytest.raises(ArgumentError, match="backward\\(\\) needs a forward call with training=True"):
        layers.Add().backward(np.zeros((2, 3)))


def test_configs_round_trip():
    for layer in [layers.Concatenate(axis=1), layers.Dot(axes=(1, 2), normalize=True), layers.Maximum()]:
        entry = json.loads(json.dumps(serialize_layer(layer)))
        clone = deserialize_layer(entry)
        assert type(clone) is type(layer)
        assert json.dumps(clone.get_config()) == json.dumps(layer.get_config())
    assert {"Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
            "Dot"} <= set(layer_classes())


# ---- real Keras 3

@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shapes", [[(B, T, D)] * 3, [(B, T, D), (B, 1, D), (B, D)], [(B, D)] * 3])
def test_elementwise_merges_equal_keras(keras, name, shapes):
    inputs = [normal(i + 10, s) for i, s in enumerate(shapes)][:n_inputs(name)]
    compare_with_keras(getattr(layers, name)(), getattr(keras.layers, name)(), inputs)
    compare_configs(getattr(layers, name)(), getattr(keras.layers, name)())


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("which", [(0, 1), (0,), (1,), ()])
def test_masked_merges_equal_keras(keras, name, which):
    masks = [m if i in which else None for i, m in enumerate(step_masks())]
    inputs = [normal(20, (B, T, D)), normal(21, (B, T, D))]
    compare_with_keras(getattr(layers, name)(), getattr(keras.layers, name)(), inputs, masks=masks)


def test_maximum_ties_send_the_gradient_where_keras_does(keras):
    tie = np.ones((B, T, D))
    masks = step_masks()
    compare_with_keras(layers.Maximum(), keras.layers.Maximum(), [tie, tie, tie])
    compare_with_keras(layers.Minimum(), keras.layers.Minimum(), [tie, tie], masks=masks)


@pytest.mark.parametrize("axis, shapes", [(-1, [(B, T, 2), (B, T, 3)]), (1, [(B, 2, D), (B, 4, D)]),
                                          (2, [(B, T, 1), (B, T, 3), (B, T, 2)]), (-1, [(B, 2), (B, 3)])])
@pytest.mark.parametrize("which", [(0, 1), (0,), ()])
def test_concatenate_equals_keras(keras, axis, shapes, which):
    inputs = [normal(i + 30, s) for i, s in enumerate(shapes)]
    masks = None
    if len(shapes[0]) == 3 and which:
        masks = [np.random.default_rng(i).random(s[:2]) > 0.4 if i in which else None
                 for i, s in enumerate(shapes)]
    compare_with_keras(layers.Concatenate(axis=axis), keras.layers.Concatenate(axis=axis), inputs, masks=masks)
    compare_configs(layers.Concatenate(axis=axis), keras.layers.Concatenate(axis=axis))


@pytest.mark.parametrize("axes, shapes", [(-1, [(B, D), (B, D)]), (2, [(B, T, D), (B, 6, D)]),
                                          ((1, 1), [(B, T, D), (B, T, 2)]), ((2, 1), [(B, T, D), (B, D)]),
                                          ((1, 2), [(B, D), (B, T, D)]), ((-1, -2), [(B, T, D), (B, D, 2)])])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_equals_keras(keras, axes, shapes, normalize):
    inputs = [normal(i + 40, s) for i, s in enumerate(shapes)]
    compare_with_keras(layers.Dot(axes=axes, normalize=normalize),
                       keras.layers.Dot(axes=axes, normalize=normalize), inputs)
    compare_configs(layers.Dot(axes=axes, normalize=normalize), keras.layers.Dot(axes=axes, normalize=normalize))


def test_dot_of_zero_vectors_equals_keras(keras):
    """The norm's lower bound 1e-7: a zero vector normalises to zero, with Keras's gradient."""
    x = normal(50, (B, D))
    x[0] = 0.0
    compare_with_keras(layers.Dot(axes=1, normalize=True), keras.layers.Dot(axes=1, normalize=True), [x, x[::-1]])


def test_keras_configs_build_fastrnn_merges(keras):
    for theirs in [keras.layers.Concatenate(axis=1), keras.layers.Dot(axes=[1, 2], normalize=True),
                   keras.layers.Add(), keras.layers.Multiply()]:
        config = {k: v for k, v in theirs.get_config().items() if k != "dtype"}
        ours = getattr(layers, type(theirs).__name__).from_config(config)
        compare_configs(ours, theirs)
