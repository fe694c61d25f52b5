"""fastrnn.keras layers against real Keras 3 (TensorFlow backend): same weights, same outputs and gradients.

Each case builds a Keras model, copies its weights into the fastrnn layers
with ``get_weights()``/``set_weights()`` and compares outputs (float32:
tolerances.KERAS_PARITY) and, for some cases, the gradients of
``loss = sum(output * R)`` with respect to every weight and the input
(``tf.GradientTape``). Skipped when Keras or TensorFlow is not installed.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from fastrnn.keras import layers  # noqa: E402
from tolerances import KERAS_GRADIENT_PARITY, KERAS_PARITY  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the parity tests use Keras's TensorFlow backend")

B, T, D, H, VOCAB = 4, 7, 5, 6, 9

CELLS = {
    "SimpleRNN": (keras.layers.SimpleRNN, layers.SimpleRNN, {}),
    "SimpleRNN-relu": (keras.layers.SimpleRNN, layers.SimpleRNN, {"activation": "relu"}),
    "LSTM": (keras.layers.LSTM, layers.LSTM, {}),
    "GRU": (keras.layers.GRU, layers.GRU, {}),
    "GRU-reset_before": (keras.layers.GRU, layers.GRU, {"reset_after": False}),
}


def tokens_with_holes():
    """Token ids of shape (B, T): zeros at the end, holes in the middle, a leading gap, an empty row."""
    return np.array([[3, 1, 4, 1, 5, 0, 0],
                     [2, 0, 7, 0, 0, 8, 6],
                     [0, 0, 5, 3, 0, 2, 0],
                     [0, 0, 0, 0, 0, 0, 0]], dtype=np.int32)


def randomize(keras_model, seed):
    """Weights far from their initial values (non-zero biases) so that every term matters."""
    rng = np.random.default_rng(seed)
    keras_model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                             for w in keras_model.get_weights()])


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def run_keras(model, x, seed, with_grads):
    rng = np.random.default_rng(seed + 100)
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        if x.dtype.kind == "f":
            tape.watch(x_t)
        outputs = as_list(model(x_t, training=False))
        weights = [rng.normal(size=o.shape).astype(np.float32) for o in outputs]
        loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outputs, weights)])
    outputs = [np.asarray(o) for o in outputs]
    if not with_grads:
        return outputs, weights, None
    sources = list(model.trainable_weights) + ([x_t] if x.dtype.kind == "f" else [])
    grads = [np.asarray(tf.convert_to_tensor(g)) if g is not None else None
             for g in tape.gradient(loss, sources)]
    return outputs, weights, grads


def run_fastrnn(stack, x, weights, with_grads):
    """``stack``: the fastrnn layers in order; the first may be an Embedding that gives the mask."""
    h, mask = x, None
    for layer in stack:
        out = layer(h, mask=mask, training=with_grads)
        mask = layer.compute_mask(h, mask)
        h = out
    outputs = as_list(h)
    if not with_grads:
        return outputs, None
    d = weights if isinstance(h, list) else weights[0]
    for layer in reversed(stack):
        d = layer.backward(d)
    grads = [p.grad for layer in stack for p in layer.weights]
    if x.dtype.kind == "f":
        grads.append(d)
    return outputs, grads


def compare(keras_layers, fast_layers, x, seed=0, with_grads=False, keras_input=None):
    """Build ``keras_layers`` into a model, copy its weights, compare with ``fast_layers``."""
    inputs = keras_input if keras_input is not None else keras.Input(x.shape[1:], dtype=x.dtype.name)
    h = inputs
    for layer in keras_layers:
        h = layer(h)
    model = keras.Model(inputs, h)
    randomize(model, seed)
    h = x[:1]
    for k, f in zip(keras_layers, fast_layers):
        out = f(h)  # builds the layer
        h = out[0] if isinstance(out, list) else out
        f.set_weights(k.get_weights())
    expected, out_weights, expected_grads = run_keras(model, x, seed, with_grads)
    got, grads = run_fastrnn(fast_layers, x, out_weights, with_grads)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, f"output {i}: shape {g.shape} != Keras's {e.shape}"
        np.testing.assert_allclose(g, e, **KERAS_PARITY, err_msg=f"output {i}")
    if with_grads:
        assert len(grads) == len(expected_grads)
        for i, (g, e) in enumerate(zip(grads, expected_grads)):
            np.testing.assert_allclose(g, e, **KERAS_GRADIENT_PARITY, err_msg=f"gradient {i}")
    return got


def float_input(seed=1):
    return np.random.default_rng(seed).normal(size=(B, T, D)).astype(np.float32)


# --- plain recurrent layers ---------------------------------------------------------------
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_outputs(cell, return_sequences, return_state, go_backwards):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    options = dict(return_sequences=return_sequences, return_state=return_state,
                   go_backwards=go_backwards, **kwargs)
    compare([keras_cls(H, **options)], [fast_cls(H, **options)], float_input())


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_gradients(cell, go_backwards):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    options = dict(return_sequences=True, return_state=True, go_backwards=go_backwards, **kwargs)
    compare([keras_cls(H, **options)], [fast_cls(H, **options)], float_input(), with_grads=True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_recurrent_last_output_gradients(cell):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    compare([keras_cls(H, **kwargs)], [fast_cls(H, **kwargs)], float_input(2), with_grads=True)


# --- masks from Embedding(mask_zero=True) -------------------------------------------------
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masked_outputs(cell, return_sequences, go_backwards):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    options = dict(return_sequences=return_sequences, return_state=True, go_backwards=go_backwards,
                   **kwargs)
    compare([keras.layers.Embedding(VOCAB, D, mask_zero=True), keras_cls(H, **options)],
            [layers.Embedding(VOCAB, D, mask_zero=True), fast_cls(H, **options)], tokens_with_holes())


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU", "GRU-reset_before"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masked_gradients(cell, go_backwards):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    options = dict(return_sequences=True, return_state=True, go_backwards=go_backwards, **kwargs)
    compare([keras.layers.Embedding(VOCAB, D, mask_zero=True), keras_cls(H, **options)],
            [layers.Embedding(VOCAB, D, mask_zero=True), fast_cls(H, **options)], tokens_with_holes(),
            with_grads=True)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_stack_gradients(cell):
    """Two recurrent layers: the first one's sequence output and mask feed the second."""
    keras_cls, fast_cls, kwargs = CELLS[cell]
    compare([keras.layers.Embedding(VOCAB, D, mask_zero=True), keras_cls(H, return_sequences=True),
             keras_cls(3)],
            [layers.Embedding(VOCAB, D, mask_zero=True), fast_cls(H, return_sequences=True),
             fast_cls(3)], tokens_with_holes(), with_grads=True)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_masking_layer(cell):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    x = float_input(3)
    x[0, 2:4] = 0.0
    x[1, 5:] = 0.0
    x[2, :] = 0.0
    compare([keras.layers.Masking(0.0), keras_cls(H, return_sequences=True)],
            [layers.Masking(0.0), fast_cls(H, return_sequences=True)], x, with_grads=True)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_initial_state_with_mask(cell):
    """A non-zero initial state: masked steps before the first valid one output zeros, and an
    empty row keeps its initial state."""
    keras_cls, fast_cls, kwargs = CELLS[cell]
    n = 2 if cell == "LSTM" else 1
    rng = np.random.default_rng(5)
    states = [rng.normal(size=(B, H)).astype(np.float32) for _ in range(n)]
    tokens = tokens_with_holes()
    embedding = keras.layers.Embedding(VOCAB, D, mask_zero=True)
    rnn = keras_cls(H, return_sequences=True, return_state=True)
    # eager calls with the mask passed explicitly: a functional model given initial_state
    # inputs does not carry the Embedding's mask into the layer
    embedded = embedding(tokens)
    rnn(embedded)
    randomize(embedding, 3)
    randomize(rnn, 4)
    expected = [np.asarray(o) for o in rnn(embedding(tokens), mask=embedding.compute_mask(tokens),
                                             initial_state=[tf.constant(s) for s in states])]

    fast_embedding = layers.Embedding(VOCAB, D, mask_zero=True)
    fast_rnn = fast_cls(H, return_sequences=True, return_state=True)
    fast_embedding(tokens)
    fast_embedding.set_weights(embedding.get_weights())
    e = fast_embedding(tokens)
    fast_rnn(e)
    fast_rnn.set_weights(rnn.get_weights())
    got = fast_rnn(e, mask=fast_embedding.compute_mask(tokens), initial_state=states)
    for g, x in zip(got, expected):
        np.testing.assert_allclose(g, x, **KERAS_PARITY)
    np.testing.assert_allclose(got[1][3], states[0][3], **KERAS_PARITY)


def test_stateful_lstm():
    keras_rnn = keras.layers.LSTM(H, stateful=True, return_sequences=True)
    inputs = keras.Input(batch_shape=(B, T, D))
    model = keras.Model(inputs, keras_rnn(inputs))
    randomize(model, 4)
    fast_rnn = layers.LSTM(H, stateful=True, return_sequences=True)
    fast_rnn(float_input())
    fast_rnn.set_weights(keras_rnn.get_weights())
    fast_rnn.reset_states()
    for seed in (1, 2, 3):
        x = float_input(seed)
        np.testing.assert_allclose(fast_rnn(x), np.asarray(model(x)), **KERAS_PARITY)
    keras_rnn.reset_states()
    fast_rnn.reset_states()
    x = float_input(9)
    np.testing.assert_allclose(fast_rnn(x), np.asarray(model(x)), **KERAS_PARITY)


# --- Bidirectional --------------------------------------------------------------------------
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU", "GRU-reset_before"])
@pytest.mark.parametrize("merge_mode", MERGE_MODES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_outputs(cell, merge_mode, return_sequences):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    compare([keras.layers.Bidirectional(keras_cls(H, return_sequences=return_sequences, **kwargs),
                                        merge_mode=merge_mode)],
            [layers.Bidirectional(fast_cls(H, return_sequences=return_sequences, **kwargs),
                                  merge_mode=merge_mode)], float_input())


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("merge_mode", MERGE_MODES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_masked_gradients(cell, merge_mode, return_sequences):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    options = dict(return_sequences=return_sequences, return_state=True, **kwargs)
    compare([keras.layers.Embedding(VOCAB, D, mask_zero=True),
             keras.layers.Bidirectional(keras_cls(H, **options), merge_mode=merge_mode)],
            [layers.Embedding(VOCAB, D, mask_zero=True),
             layers.Bidirectional(fast_cls(H, **options), merge_mode=merge_mode)],
            tokens_with_holes(), with_grads=True)


def test_bidirectional_gradients_float_input():
    compare([keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))],
            [layers.Bidirectional(layers.GRU(H, return_sequences=True))], float_input(),
            with_grads=True)


def test_bidirectional_backward_layer():
    options = dict(return_sequences=True)
    compare([keras.layers.Bidirectional(keras.layers.LSTM(H, **options),
                                        backward_layer=keras.layers.GRU(3, go_backwards=True, **options))],
            [layers.Bidirectional(layers.LSTM(H, **options),
                                  backward_layer=layers.GRU(3, go_backwards=True, **options))],
            float_input(), with_grads=True)


def test_bidirectional_count_params():
    k = keras.layers.Bidirectional(keras.layers.LSTM(H))
    k.build((None, T, D))
    f = layers.Bidirectional(layers.LSTM(H))
    f(float_input())
    assert f.count_params() == k.count_params() == 2 * (4 * H * (D + H) + 4 * H)


# --- core layers ------------------------------------------------------------------------------
def test_dense_3d_gradients():
    compare([keras.layers.Dense(3, activation="tanh")], [layers.Dense(3, activation="tanh")],
            float_input(), with_grads=True)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_dense_2d_gradients(activation):
    x = np.random.default_rng(7).normal(size=(B, D)).astype(np.float32)
    compare([keras.layers.Dense(4, activation=activation)], [layers.Dense(4, activation=activation)],
            x, with_grads=True)


def test_time_distributed_softmax_gradients():
    compare([keras.layers.LSTM(H, return_sequences=True),
             keras.layers.TimeDistributed(keras.layers.Dense(4, activation="softmax"))],
            [layers.LSTM(H, return_sequences=True),
             layers.TimeDistributed(layers.Dense(4, activation="softmax"))],
            float_input(), with_grads=True)


def test_embedding_gradients():
    tokens = np.random.default_rng(3).integers(0, VOCAB, size=(B, T)).astype(np.int32)
    compare([keras.layers.Embedding(VOCAB, D), keras.layers.GRU(H)],
            [layers.Embedding(VOCAB, D), layers.GRU(H)], tokens, with_grads=True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_count_params(cell):
    keras_cls, fast_cls, kwargs = CELLS[cell]
    k = keras_cls(H, **kwargs)
    k.build((None, T, D))
    f = fast_cls(H, **kwargs)
    f(float_input())
    assert f.count_params() == k.count_params()
    assert [w.shape for w in f.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
