"""RepeatVector, Reshape, Flatten, Permute, GlobalAveragePooling1D, GlobalMaxPooling1D,
LayerNormalization and Lambda: finite differences of their backward, hand-worked cases, errors,
and real Keras 3 (forward, GradientTape gradients, propagated masks, configs)."""

import json

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import layers
from fastrnn.keras.serialization import deserialize_layer, serialize_layer
from layer_checks import check_finite_differences, compare_configs, compare_with_keras, keras_module
from tolerances import FLOAT64_REORDERED

F64 = dict(dtype="float64")
B, T, D = 3, 5, 4


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


def holes_mask():
    """Masked steps at the end, in the middle and at the start."""
    return np.array([[1, 1, 0, 1, 0], [0, 1, 1, 0, 1], [1, 0, 0, 0, 0]], dtype=bool)


@pytest.fixture(scope="module")
def keras():
    return keras_module()


# (fastrnn layer, Keras layer) factories with their input shapes
REARRANGEMENTS = [
    ("RepeatVector", dict(n=3), (B, D)),
    ("Reshape", dict(target_shape=(2, -1)), (B, T, D)),
    ("Reshape", dict(target_shape=(D, T)), (B, T, D)),
    ("Reshape", dict(target_shape=(-1,)), (B, T, 2, 2)),
    ("Flatten", {}, (B, T, D)),
    ("Flatten", {}, (B, D)),
    ("Flatten", dict(data_format="channels_first"), (B, T, D, 2)),
    ("Permute", dict(dims=(2, 1)), (B, T, D)),
    ("Permute", dict(dims=(3, 1, 2)), (B, T, D, 2)),
    ("GlobalAveragePooling1D", {}, (B, T, D)),
    ("GlobalAveragePooling1D", dict(keepdims=True), (B, T, D)),
    ("GlobalAveragePooling1D", dict(data_format="channels_first"), (B, D, T)),
    ("GlobalMaxPooling1D", {}, (B, T, D)),
    ("GlobalMaxPooling1D", dict(keepdims=True, data_format="channels_first"), (B, D, T)),
    ("LayerNormalization", {}, (B, T, D)),
    ("LayerNormalization", dict(axis=[1, 2], epsilon=1e-5), (B, T, D)),
    ("LayerNormalization", dict(axis=1, center=False), (B, T, D)),
    ("LayerNormalization", dict(scale=False, beta_initializer="uniform"), (B, D)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(REARRANGEMENTS)]


# ---- finite differences (float64, no Keras)

@pytest.mark.parametrize("name, kwargs, shape", REARRANGEMENTS, ids=IDS)
def test_gradients(name, kwargs, shape):
    layer = getattr(layers, name)(**kwargs, **F64)
    if name == "LayerNormalization":
        layer.build(shape[1:])
        for parameter in layer.weights:  # away from the initial ones and zeros
            parameter.data[...] = normal(9, parameter.shape)
    check_finite_differences(layer, normal(1, shape))


def test_masked_average_pooling_gradients():
    check_finite_differences(layers.GlobalAveragePooling1D(**F64), normal(2, (B, T, D)), mask=holes_mask())


# ---- hand-worked cases

def test_masked_average_is_the_mean_of_the_valid_steps():
    x = normal(3, (B, T, D))
    mask = holes_mask()
    out = layers.GlobalAveragePooling1D(**F64)(x, mask=mask)
    for b in range(B):
        np.testing.assert_allclose(out[b], x[b][mask[b]].mean(axis=0), **FLOAT64_REORDERED)


def test_layer_normalization_by_its_definition():
    x = normal(4, (B, T, D))
    layer = layers.LayerNormalization(epsilon=1e-3, **F64)
    layer.build((T, D))
    layer.set_weights([np.arange(1.0, D + 1), np.full(D, 0.5)])
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3) \
        * np.arange(1.0, D + 1) + 0.5
    np.testing.assert_allclose(layer(x), expected, **FLOAT64_REORDERED)
    assert [name for name, _ in layer._weights] == ["gamma", "beta"]


def test_rearrangements_by_their_definitions():
    x = normal(5, (B, T, D))
    np.testing.assert_array_equal(layers.Permute((2, 1), **F64)(x), x.transpose(0, 2, 1))
    np.testing.assert_array_equal(layers.Reshape((-1, 2), **F64)(x), x.reshape(B, -1, 2))
    np.testing.assert_array_equal(layers.Flatten(**F64)(x), x.reshape(B, -1))
    np.testing.assert_array_equal(layers.RepeatVector(2, **F64)(x[:, 0]), np.stack([x[:, 0]] * 2, axis=1))
    np.testing.assert_array_equal(layers.GlobalMaxPooling1D(**F64)(x), x.max(axis=1))
    assert layers.Reshape((-1, 2)).compute_output_shape((T, D)) == (T * D // 2, 2)
    assert layers.Flatten().compute_output_shape((None, D)) == (None,)


def test_masks_stop_where_keras_stops_them():
    x, mask = normal(6, (B, T, D)), holes_mask()
    assert layers.GlobalAveragePooling1D().compute_mask(x, mask) is None
    np.testing.assert_array_equal(layers.LayerNormalization().compute_mask(x, mask), mask)
    for layer in [layers.Flatten(), layers.Permute((2, 1)), layers.Reshape((-1,)), layers.GlobalMaxPooling1D()]:
        assert not layer.supports_masking and layer.compute_mask(x, mask) is None
        with pytest.raises(ArgumentError, match="cannot take a mask"):
            layer(x, mask=mask)


# ---- Lambda

def _double(x):
    return 2 * x


def _double_backward(d_output, inputs, output):
    return 2 * d_output


def _scaled_sum(inputs, factor=1.0):
    return factor * (inputs[0] + inputs[1])


def _scaled_sum_backward(d_output, inputs, output, factor=1.0):
    return [factor * d_output, factor * d_output]


def test_lambda_with_a_backward_trains():
    check_finite_differences(layers.Lambda(_double, backward=_double_backward, **F64), normal(7, (B, D)))
    layer = layers.Lambda(_scaled_sum, backward=_scaled_sum_backward, arguments={"factor": 3.0}, **F64)
    out = check_finite_differences(layer, [normal(8, (B, D)), normal(9, (B, D))])
    assert out.shape == (B, D) and layer.output_shape == (D,)


def test_lambda_without_a_backward_runs_forward_only():
    layer = layers.Lambda(lambda x: x * x, name="square")
    np.testing.assert_array_equal(layer(np.full((2, 3), 3.0)), np.full((2, 3), 9.0))
    with pytest.raises(ArgumentError, match=r"layer 'square' \(Lambda\) has no backward, so it cannot be "
                                            r"trained .*backward="):
        layer(np.ones((2, 3)), training=True)


def test_lambda_config_names_its_functions():
    layer = layers.Lambda(_double, backward=_double_backward, output_shape=(D,))
    entry = json.loads(json.dumps(serialize_layer(layer)))
    assert entry["config"]["function"] == f"{__name__}:_double"
    clone = deserialize_layer(entry)
    assert clone.function is _double and clone.backward_function is _double_backward
    with pytest.raises(ArgumentError, match="cannot be saved in a config"):
        layers.Lambda(lambda x: x).get_config()
    with pytest.raises(ArgumentError, match="not a function of an imported module"):
        layers.Lambda("no_such_module:f")
    with pytest.raises(ArgumentError, match="function must be callable"):
        layers.Lambda(3)


def test_lambda_mask():
    x = normal(10, (B, T, D))
    layer = layers.Lambda(_double, mask=lambda inputs, mask: mask)
    assert layer.supports_masking
    np.testing.assert_array_equal(layer.compute_mask(x, holes_mask()), holes_mask())


# ---- errors

@pytest.mark.parametrize("make, match", [
    (lambda: layers.RepeatVector(0), "n must be a positive integer; got 0"),
    (lambda: layers.Reshape((2, -1, -1)), r"target_shape must be a tuple of positive ints with at most one -1; "
                                          r"got \(2, -1, -1\)"),
    (lambda: layers.Reshape(3), "target_shape must be a tuple of ints; got 3"),
    (lambda: layers.Permute((1, 3)), r"dims must be a permutation of 1..n .*got \(1, 3\)"),
    (lambda: layers.Flatten(data_format="nchw"), "data_format must be 'channels_last', 'channels_first' or None"),
    (lambda: layers.GlobalAveragePooling1D(keepdims="yes"), "keepdims"),
    (lambda: layers.LayerNormalization(axis="x"), "axis must be an int or a list of ints; got 'x'"),
    (lambda: layers.LayerNormalization(epsilon=0), "epsilon must be a positive number; got 0"),
    (lambda: layers.LayerNormalization(gamma_regularizer="l2"), "gamma_regularizer is not supported"),
    (lambda: layers.LayerNormalization(rms_scaling=True), "rms_scaling=True"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ArgumentError, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (lambda: layers.Reshape((7, -1), name="r"), (B, T, D),
     r"layer 'r' \(Reshape\) cannot reshape inputs of shape \(B, 5, 4\) \(20 values per sample\) to target_shape"),
    (lambda: layers.Reshape((3, 3), name="r"), (B, T, D), r"\(9 values\)"),
    (lambda: layers.Permute((2, 1), name="p"), (B, T, D, 2),
     r"layer 'p' \(Permute\) with dims=\(2, 1\) needs inputs of 3 axes"),
    (lambda: layers.RepeatVector(2, name="rv"), (B, T, D),
     r"layer 'rv' \(RepeatVector\) needs inputs of shape \(B, D\)"),
    (lambda: layers.GlobalMaxPooling1D(name="g"), (B, D),
     r"layer 'g' \(GlobalMaxPooling1D\) needs inputs of 3 axes"),
    (lambda: layers.LayerNormalization(axis=3, name="ln"), (B, T, D),
     r"layer 'ln' \(LayerNormalization\): axis=3 must name distinct non-batch axes"),
])
def test_bad_shapes(layer, shape, match):
    with pytest.raises(ShapeError, match=match):
        layer()(np.zeros(shape))


def test_layer_normalization_refuses_another_feature_size():
    layer = layers.LayerNormalization(name="ln")
    layer(np.zeros((B, T, D)))
    with pytest.raises(ShapeError, match=r"layer 'ln' \(LayerNormalization\) was built for size\(s\) \(4,\)"):
        layer(np.zeros((B, T, D + 1)))


# ---- real Keras 3

@pytest.mark.parametrize("name, kwargs, shape", REARRANGEMENTS, ids=IDS)
def test_equal_keras(keras, name, kwargs, shape):
    theirs = getattr(keras.layers, name)(**kwargs)
    if name == "LayerNormalization":
        theirs.build(shape)
        for i, variable in enumerate(theirs.weights):
            variable.assign(normal(11 + i, variable.shape).astype(np.float32))
    compare_with_keras(getattr(layers, name)(**kwargs), theirs, normal(12, shape))
    ours = getattr(layers, name)(**kwargs)
    ours(np.zeros(shape))  # LayerNormalization's axis becomes a list once built, in Keras too
    fresh = getattr(keras.layers, name)(**kwargs)
    fresh(np.zeros(shape, np.float32))
    compare_configs(ours, fresh)


@pytest.mark.parametrize("name, kwargs", [("GlobalAveragePooling1D", {}),
                                          ("GlobalAveragePooling1D", dict(keepdims=True)),
                                          ("LayerNormalization", {})])
def test_masked_equal_keras(keras, name, kwargs):
    compare_with_keras(getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs),
                       normal(13, (B, T, D)), masks=holes_mask())


def test_average_pooling_of_a_fully_masked_row_is_nan_as_in_keras(keras):
    mask = holes_mask()
    mask[2] = False
    x = normal(14, (B, T, D)).astype(np.float32)
    ours = layers.GlobalAveragePooling1D()(x, mask=mask)
    from keras.src import backend as keras_backend
    import tensorflow as tf
    tensor = tf.constant(x)
    keras_backend.set_keras_mask(tensor, tf.constant(mask))
    theirs = np.asarray(keras.layers.GlobalAveragePooling1D()(tensor))
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[2]).all()


def test_keras_configs_build_fastrnn_layers(keras):
    for theirs in [keras.layers.RepeatVector(4), keras.layers.Reshape((2, -1)), keras.layers.Flatten(),
                   keras.layers.Permute((2, 1)), keras.layers.GlobalAveragePooling1D(keepdims=True),
                   keras.layers.GlobalMaxPooling1D(), keras.layers.LayerNormalization(axis=[1, 2], epsilon=1e-5)]:
        config = {k: v for k, v in theirs.get_config().items() if k != "dtype"}
        ours = getattr(layers, type(theirs).__name__).from_config(config)
        compare_configs(ours, theirs)


@pytest.mark.parametrize("make, inputs", [
    (lambda: layers.LayerNormalization(**F64), lambda s: normal(s, (B, T, D))),
    (lambda: layers.Dot(axes=2, normalize=True, **F64), lambda s: [normal(s, (B, T, D)), normal(s + 1, (B, 2, D))]),
    (lambda: layers.AdditiveAttention(**F64), lambda s: [normal(s, (B, T, D)), normal(s + 1, (B, 2, D))]),
    (lambda: layers.GlobalMaxPooling1D(**F64), lambda s: normal(s, (B, T, D))),
])
def test_a_shared_layer_backpropagates_each_call(make, inputs):
    """Two calls of one layer, the tape of the first restored for its backward: the gradients
    equal those of two separate layers with the same weights, and weight gradients add up."""
    shared, first, second = make(), make(), make()
    x1, x2 = inputs(20), inputs(30)
    for layer in (shared, first, second):
        layer(x1)
    for layer in (first, second):
        layer.set_weights(shared.get_weights())
    shared(x1, training=True)
    tape = shared.tape_state()
    y2 = shared(x2, training=True)
    d2 = normal(40, np.shape(y2))
    g2 = shared.backward(d2)
    shared.restore_tape_state(tape)
    d1 = normal(41, np.shape(y2)) if np.shape(first(x1)) == np.shape(y2) else normal(41, np.shape(first(x1)))
    g1 = shared.backward(d1)
    first(x1, training=True)
    second(x2, training=True)
    for expected, actual in [(first.backward(d1), g1), (second.backward(d2), g2)]:
        for e, a in zip(expected if isinstance(expected, list) else [expected],
                        actual if isinstance(actual, list) else [actual]):
            np.testing.assert_allclose(a, e, **FLOAT64_REORDERED)
    for p, p1, p2 in zip(shared.weights, first.weights, second.weights):
        np.testing.assert_allclose(p.grad, p1.grad + p2.grad, **FLOAT64_REORDERED)
