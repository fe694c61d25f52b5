"""Checks shared by the tests of the functional models' layers (merges, reshaping, pooling,
normalization, attention): finite differences of a layer's backward, and the comparison of a
layer with real Keras 3 (forward, GradientTape gradients, propagated mask, config).
"""

import os

import numpy as np
import pytest

from helpers import central_differences
from tolerances import (FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, KERAS_GRADIENT_PARITY, KERAS_PARITY,
                        scaled)

#: What every layer's config has besides its own arguments (Keras's dtype is a DTypePolicy dict).
BASE_KEYS = {"name", "dtype", "trainable"}


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def keras_module():
    """Keras 3 on TensorFlow, or skip the test."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return pytest.importorskip("keras")


def check_finite_differences(layer, inputs, mask=None, seed=0, **call_kwargs):
    """Compare ``layer.backward`` with central differences (float64) for every float input and
    weight; the loss is ``sum(output * R)`` summed over the outputs."""
    kwargs = dict(call_kwargs)
    if mask is not None:
        kwargs["mask"] = mask

    def forward():
        return layer(inputs, training=True, **kwargs)

    outputs = forward()
    rng = np.random.default_rng(seed + 100)
    weights = [rng.normal(size=np.shape(o)) for o in as_list(outputs)]
    for parameter in layer.weights:
        parameter.grad = None
    grads = layer.backward(weights if isinstance(outputs, list) else weights[0])

    def loss():
        for parameter in layer.weights:
            parameter.mark_changed()
        return sum(float(np.sum(o * w)) for o, w in zip(as_list(forward()), weights))

    targets = [(f"weight {name}", p.data, p.grad) for name, p in layer._weights]
    for i, (array, grad) in enumerate(zip(as_list(inputs), as_list(grads))):
        targets.append((f"input {i}", array, grad))
    for name, array, analytic in targets:
        assert analytic is not None, f"no gradient for {name}"
        np.testing.assert_allclose(analytic, central_differences(loss, array, FINITE_DIFFERENCE_STEP),
                                   **FINITE_DIFFERENCE, err_msg=f"{type(layer).__name__}: gradient of {name}")
    return outputs


def compare_with_keras(ours, theirs, inputs, masks=None, seed=0, **call_kwargs):
    """Run a fastrnn layer and a Keras layer on the same float32 inputs and weights (Keras's,
    copied into ours) and compare outputs, GradientTape gradients of ``sum(output * R)`` with
    respect to every input and weight, and the output mask Keras propagates.

    ``masks`` (a list like the inputs, or a single mask) are attached to Keras's tensors, as a
    functional model does, and given to fastrnn's ``call`` and ``compute_mask``.
    """
    import tensorflow as tf
    from keras.src import backend as keras_backend

    single = not isinstance(inputs, (list, tuple))
    arrays = [np.asarray(x, np.float32) for x in as_list(inputs)]
    mask_list = None if masks is None else as_list(masks)
    ours_inputs = arrays[0] if single else arrays
    ours_mask = None if masks is None else (mask_list[0] if single else mask_list)

    def keras_tensors():
        tensors = [tf.constant(a) for a in arrays]
        for i, t in enumerate(tensors):
            if mask_list is not None and mask_list[i] is not None:
                keras_backend.set_keras_mask(t, tf.constant(mask_list[i]))
        return tensors

    tensors = keras_tensors()
    theirs(tensors[0] if single else tensors, **call_kwargs)  # build, draw Keras's weights
    if not ours.built:
        ours(ours_inputs, mask=ours_mask, **call_kwargs)
    ours.set_weights(theirs.get_weights())
    assert [name for name, _ in ours._weights] == [w.name for w in theirs.weights]

    with tf.GradientTape(persistent=True) as tape:
        tensors = keras_tensors()
        for t in tensors:
            tape.watch(t)
        expected = theirs(tensors[0] if single else tensors, **call_kwargs)
        expected_list = as_list(expected)
        rng = np.random.default_rng(seed + 7)
        weights = [rng.normal(size=tuple(e.shape)).astype(np.float32) for e in expected_list]
        loss = sum(tf.reduce_sum(e * w) for e, w in zip(expected_list, weights))
    keras_grads = tape.gradient(loss, tensors + list(theirs.trainable_variables))
    expected_mask = keras_backend.get_keras_mask(expected_list[0])

    for parameter in ours.weights:
        parameter.grad = None
    actual = ours(ours_inputs, mask=ours_mask, training=True, **call_kwargs)
    actual_list = as_list(actual)
    assert len(actual_list) == len(expected_list)
    for a, e in zip(actual_list, expected_list):
        e = np.asarray(e)
        np.testing.assert_allclose(a, e, **scaled(KERAS_PARITY, e), err_msg=f"{type(ours).__name__}: forward")
    grads = as_list(ours.backward(weights if isinstance(actual, list) else weights[0]))
    ours_grads = grads + [p.grad for p in ours.weights]
    for i, (a, e) in enumerate(zip(ours_grads, keras_grads)):
        what = f"input {i}" if i < len(arrays) else f"weight {ours._weights[i - len(arrays)][0]}"
        e = np.zeros_like(a) if e is None else np.asarray(e)
        np.testing.assert_allclose(a, e, **scaled(KERAS_GRADIENT_PARITY, e),
                                   err_msg=f"{type(ours).__name__}: gradient of {what}")

    ours_out_mask = ours.compute_mask(ours_inputs, ours_mask)
    if expected_mask is None:
        assert ours_out_mask is None, f"{type(ours).__name__}: Keras gives no mask"
    else:
        assert ours_out_mask is not None, f"{type(ours).__name__}: Keras gives a mask"
        np.testing.assert_array_equal(ours_out_mask, np.asarray(expected_mask))
    return actual


def normalized_config(config):
    """A config without the base keys, initializers reduced to their class names."""
    from fastrnn.keras.layers.normalization import keras_initializer

    out = {}
    for key, value in config.items():
        if key in BASE_KEYS:
            continue
        if key.endswith("_initializer"):
            value = type(keras_initializer(value)).__name__
        out[key] = value
    return out


def compare_configs(ours, theirs, added=()):
    """fastrnn's config equals Keras's but for the base keys and the keys fastrnn ``added``."""
    mine = normalized_config(ours.get_config())
    for key in added:
        mine.pop(key, None)
    assert mine == normalized_config(theirs.get_config())
    assert BASE_KEYS <= set(ours.get_config())
