"""The functional models' layers inside functional models, against real Keras 3.

Each architecture is written once against a module with Keras's names (``fastrnn.keras`` or real
``keras``): attention seq2seq models (Luong with return_state/initial_state, Bahdanau with masks
from Embedding(mask_zero=True) through the merges), and a chain of merges, poolings and
reshapings. Real Keras, given fastrnn's weights, must give the same predictions and the same
GradientTape gradients, and 10 fit steps must give the same weights.
"""


import numpy as np
import pytest

from fastrnn import keras
from helpers import keras_twins
from tolerances import KERAS_GRADIENT_PARITY, KERAS_PARITY, scaled

N = 16


def _luong(k):
    """Encoder states start the decoder; dot attention of the decoder over the encoder."""
    source, target = k.Input((6, 4), name="source"), k.Input((5, 3), name="target")
    encoded, *states = k.layers.LSTM(8, return_sequences=True, return_state=True, name="encoder")(source)
    decoded = k.layers.LSTM(8, return_sequences=True, name="decoder")(target, initial_state=states)
    context = k.layers.Attention(use_scale=True, name="attention")([decoded, encoded])
    joined = k.layers.Concatenate(name="join")([decoded, context])
    out = k.layers.Dense(3, activation="softmax", name="classify")(joined)
    return k.Model([source, target], out, name="luong")


def _bahdanau_masked(k):
    """Padded tokens: the masks go through the GRUs, the attention (value mask, query mask) and
    the merges; a causal self-attention and a LayerNormalization on top."""
    source, target = k.Input((7,), dtype="int32", name="source"), k.Input((5,), dtype="int32", name="target")
    encoded = k.layers.GRU(6, return_sequences=True, name="encoder")(
        k.layers.Embedding(12, 5, mask_zero=True, name="source_embedding")(source))
    decoded = k.layers.GRU(6, return_sequences=True, name="decoder")(
        k.layers.Embedding(12, 5, mask_zero=True, name="target_embedding")(target))
    context = k.layers.AdditiveAttention(name="attention")([decoded, encoded])
    itself = k.layers.Attention(name="self_attention")([decoded, decoded], use_causal_mask=True)
    mixed = k.layers.Add(name="add")([context, itself])
    gated = k.layers.Multiply(name="gate")([mixed, decoded])
    joined = k.layers.Concatenate(name="join")([decoded, gated])
    normalized = k.layers.LayerNormalization(name="norm")(joined)
    return k.Model([source, target], k.layers.Dense(12, activation="softmax", name="vocab")(normalized))


def _merges_and_shapes(k):
    """Two branches merged every way, pooled, repeated, permuted, reshaped and flattened."""
    x = k.Input((6, 4), name="x")
    a = k.layers.Dense(4, activation="tanh", name="a")(x)
    b = k.layers.Dense(4, activation="tanh", name="b")(x)
    merged = [k.layers.Maximum(name="max")([a, b]), k.layers.Minimum(name="min")([a, b]),
              k.layers.Subtract(name="sub")([a, b]), k.layers.Average(name="avg")([a, b, x])]
    pooled = k.layers.Concatenate(name="pools")(
        [k.layers.GlobalAveragePooling1D(name="gap")(merged[0]), k.layers.GlobalMaxPooling1D(name="gmp")(merged[1])])
    repeated = k.layers.RepeatVector(3, name="repeat")(pooled)  # (3, 8)
    permuted = k.layers.Permute((2, 1), name="permute")(repeated)  # (8, 3)
    reshaped = k.layers.Reshape((4, -1), name="reshape")(permuted)  # (4, 6)
    similarity = k.layers.Dot(axes=2, normalize=True, name="cosine")([merged[2], merged[3]])  # (6, 6)
    flat = k.layers.Concatenate(name="flat")([k.layers.Flatten(name="f1")(reshaped),
                                              k.layers.Flatten(name="f2")(similarity)])
    return k.Model(x, k.layers.Dense(2, name="out")(flat), name="merges")


def _data(name, seed=0):
    rng = np.random.default_rng(seed)
    if name == "luong":
        xs = [rng.normal(size=(N, 6, 4)).astype(np.float32), rng.normal(size=(N, 5, 3)).astype(np.float32)]
        return xs, np.eye(3, dtype=np.float32)[rng.integers(0, 3, (N, 5))]
    if name == "bahdanau_masked":
        source, target = rng.integers(1, 12, (N, 7)), rng.integers(1, 12, (N, 5))
        source[: N // 2, 4:] = 0
        target[N // 4:, 3:] = 0
        return [source, target], rng.integers(0, 12, (N, 5))
    return [rng.normal(size=(N, 6, 4)).astype(np.float32)], rng.normal(size=(N, 2)).astype(np.float32)


ARCHITECTURES = {"luong": _luong, "bahdanau_masked": _bahdanau_masked, "merges_and_shapes": _merges_and_shapes}
LOSSES = {"luong": "categorical_crossentropy", "bahdanau_masked": "sparse_categorical_crossentropy",
          "merges_and_shapes": "mse"}


def _pair(real, name):
    return keras_twins(ARCHITECTURES[name], real)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_predictions_and_gradients_equal_keras(real_keras, name):
    real = real_keras
    import tensorflow as tf

    ours, theirs = _pair(real, name)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    xs, _ = _data(name)
    expected = theirs.predict(xs, verbose=0)
    predicted = ours.predict(xs, verbose=0)
    np.testing.assert_allclose(predicted, expected, **scaled(KERAS_PARITY, expected))

    direction = np.random.default_rng(1).normal(size=predicted.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(direction * theirs([tf.convert_to_tensor(x) for x in xs], training=True))
    expected_grads = tape.gradient(total, theirs.trainable_weights)
    for weight in ours.weights:
        weight.grad = None
    _, _, trace = ours._run(xs, training=True)
    ours._backprop(trace, [direction])
    for mine, reference, variable in zip(ours.trainable_weights, expected_grads, theirs.trainable_weights):
        reference = np.asarray(tf.convert_to_tensor(reference))
        np.testing.assert_allclose(mine.grad, reference, **scaled(KERAS_GRADIENT_PARITY, reference),
                                   err_msg=variable.path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_ten_fit_steps_equal_keras(real_keras, name):
    real = real_keras
    ours, theirs = _pair(real, name)
    xs, y = _data(name)
    for model, module in ((ours, keras), (theirs, real)):
        model.compile(optimizer=module.optimizers.SGD(learning_rate=0.1, momentum=0.5), loss=LOSSES[name])
    history = ours.fit(xs, y, batch_size=8, epochs=5, shuffle=False, verbose=0)
    expected = theirs.fit(xs, y, batch_size=8, epochs=5, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], **KERAS_PARITY)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **scaled(KERAS_PARITY, reference))


def test_config_round_trip_keeps_predictions():
    model = _bahdanau_masked(keras)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    xs, _ = _data("bahdanau_masked")
    np.testing.assert_array_equal(clone.predict(xs, verbose=0), model.predict(xs, verbose=0))
