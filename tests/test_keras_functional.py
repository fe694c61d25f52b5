"""The functional API of fastrnn.keras: Input, layers called on KerasTensors, Model(inputs, outputs).

Each architecture is written once against a module with Keras's names (``fastrnn.keras`` or real
``keras``), so the same code builds both sides; real Keras, given fastrnn's weights, must give the
same predictions, the same GradientTape gradients and the same 20 fit steps. Without Keras, a chain
built functionally must equal the same Sequential, and gradients must equal finite differences.
"""

import io
from contextlib import redirect_stdout

import numpy as np
import pytest

from fastrnn import keras
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import layers
from helpers import keras_twins
from tolerances import FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, KERAS_PARITY

N = 40  # samples: 5 batches of 8, so that 4 epochs are 20 steps


def _seq2seq(k, rnn="LSTM"):
    """Encoder whose final states start the decoder (teacher forcing), a softmax per step."""
    source, target = k.Input((6, 4), name="source"), k.Input((5, 4), name="target")
    cell = getattr(k.layers, rnn)
    _, *states = cell(8, return_state=True, name="encoder")(source)
    decoded = cell(8, return_sequences=True, name="decoder")(target, initial_state=states)
    out = k.layers.TimeDistributed(k.layers.Dense(3, activation="softmax"), name="classify")(decoded)
    return k.Model([source, target], out, name="seq2seq")


def _masked_tokens(k):
    """Token ids with padding on both sides: masks from the Embeddings through both GRUs."""
    source, target = k.Input((7,), dtype="int32", name="source"), k.Input((5,), dtype="int32", name="target")
    embedded = k.layers.Embedding(12, 6, mask_zero=True, name="source_embedding")(source)
    _, state = k.layers.GRU(5, return_state=True, name="encoder")(embedded)
    target_embedded = k.layers.Embedding(12, 6, mask_zero=True, name="target_embedding")(target)
    # Keras 3.15 drops the mask an RNN's input carries when initial_state is given (it keeps an explicit
    # one); fastrnn keeps it, as Keras does without initial_state, so Keras gets it explicitly here
    explicit = {} if k is keras else {"mask": k.ops.not_equal(target, 0)}
    decoded = k.layers.GRU(5, return_sequences=True, name="decoder")(target_embedded, initial_state=[state],
                                                                      **explicit)
    return k.Model([source, target], k.layers.Dense(12, activation="softmax", name="vocab")(decoded))


def _shared_two_heads(k):
    """One LSTM read by two inputs (its gradients add up), a head on each."""
    a, b = k.Input((5, 3), name="a"), k.Input((5, 3), name="b")
    shared = k.layers.LSTM(4, name="shared")
    out_a = k.layers.Dense(1, name="out_a")(shared(a))
    out_b = k.layers.Dense(1, activation="sigmoid", name="out_b")(shared(b))
    return k.Model([a, b], [out_a, out_b], name="two_heads")


def _tensor_used_twice(k):
    """An intermediate tensor that is an output and the input of a further layer."""
    x = k.Input((6, 3), name="x")
    sequence = k.layers.Bidirectional(k.layers.GRU(4, return_sequences=True), name="bi")(x)
    per_step = k.layers.TimeDistributed(k.layers.Dense(2), name="per_step")(sequence)
    final = k.layers.SimpleRNN(3, name="final")(sequence)
    return k.Model(x, [per_step, final], name="twice")


def _data(name, seed=0):
    """Inputs and targets (lists) for each architecture."""
    rng = np.random.default_rng(seed)
    if name == "seq2seq":
        xs = [rng.normal(size=(N, 6, 4)).astype(np.float32), rng.normal(size=(N, 5, 4)).astype(np.float32)]
        return xs, [np.eye(3, dtype=np.float32)[rng.integers(0, 3, (N, 5))]]
    if name == "masked_tokens":
        source, target = rng.integers(1, 12, (N, 7)), rng.integers(1, 12, (N, 5))
        source[: N // 2, 4:] = 0
        target[N // 4:, 3:] = 0
        return [source, target], [rng.integers(0, 12, (N, 5))]
    if name == "shared_two_heads":
        xs = [rng.normal(size=(N, 5, 3)).astype(np.float32) for _ in range(2)]
        return xs, [rng.normal(size=(N, 1)).astype(np.float32), (rng.random((N, 1)) > 0.5).astype(np.float32)]
    xs = [rng.normal(size=(N, 6, 3)).astype(np.float32)]
    return xs, [rng.normal(size=(N, 6, 2)).astype(np.float32), rng.normal(size=(N, 3)).astype(np.float32)]


ARCHITECTURES = {"seq2seq": _seq2seq, "masked_tokens": _masked_tokens, "shared_two_heads": _shared_two_heads,
                 "tensor_used_twice": _tensor_used_twice}
LOSSES = {"seq2seq": "categorical_crossentropy", "masked_tokens": "sparse_categorical_crossentropy",
          "shared_two_heads": {"out_a": "mse", "out_b": "binary_crossentropy"}, "tensor_used_twice": ["mse", "mae"]}


def _our_gradients(model, xs, directions):
    """fastrnn's gradients of ``sum(direction * output)`` over every output, per trainable weight."""
    for weight in model.weights:
        weight.grad = None
    _, _, trace = model._run(xs, training=True)
    model._backprop(trace, directions)
    return [np.array(weight.grad) for weight in model.trainable_weights]


# ---- against real Keras --------------------------------------------------------------------------------

def _pair(real, name):
    return keras_twins(ARCHITECTURES[name], real)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_structure_predictions_and_gradients_equal_keras(real_keras, name):
    real = real_keras
    ours, theirs = _pair(real, name)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    xs, _ = _data(name)
    expected = theirs.predict(xs, verbose=0)
    predicted = ours.predict(xs, verbose=0)
    for mine, reference in zip(*(p if isinstance(p, list) else [p] for p in (predicted, expected))):
        np.testing.assert_allclose(mine, reference, **KERAS_PARITY)

    import tensorflow as tf

    outputs = predicted if isinstance(predicted, list) else [predicted]
    rng = np.random.default_rng(1)
    directions = [rng.normal(size=o.shape).astype(np.float32) for o in outputs]
    with tf.GradientTape() as tape:
        result = theirs([tf.convert_to_tensor(x) for x in xs], training=True)
        result = result if isinstance(result, (list, tuple)) else [result]
        total = tf.add_n([tf.reduce_sum(d * r) for d, r in zip(directions, result)])
    expected_grads = tape.gradient(total, theirs.trainable_weights)
    for mine, reference, weight in zip(_our_gradients(ours, xs, directions), expected_grads, theirs.trainable_weights):
        np.testing.assert_allclose(mine, np.asarray(tf.convert_to_tensor(reference)), **KERAS_PARITY,
                                   err_msg=weight.path)  # an Embedding's gradient comes as IndexedSlices


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_twenty_fit_steps_equal_keras(real_keras, name):
    real = real_keras
    ours, theirs = _pair(real, name)
    xs, ys = _data(name)
    loss = LOSSES[name]
    weights = {"out_a": 0.5, "out_b": 2.0} if name == "shared_two_heads" else None
    for model, module in ((ours, keras), (theirs, real)):
        model.compile(optimizer=module.optimizers.SGD(learning_rate=0.1, momentum=0.5), loss=loss,
                      loss_weights=weights)
    y = ys if len(ys) > 1 else ys[0]
    history = ours.fit(xs, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    expected = theirs.fit(xs, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    assert sorted(history.history) == sorted(expected.history)
    for key, values in expected.history.items():
        np.testing.assert_allclose(history.history[key], values, **KERAS_PARITY, err_msg=key)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **KERAS_PARITY)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_multi_output_logs_and_evaluate_equal_keras(real_keras):
    real = real_keras
    ours, theirs = _pair(real, "shared_two_heads")
    xs, ys = _data("shared_two_heads")
    for model, module in ((ours, keras), (theirs, real)):
        model.compile(optimizer=module.optimizers.SGD(learning_rate=0.05), loss=LOSSES["shared_two_heads"],
                      loss_weights=[0.5, 2.0], metrics={"out_b": ["accuracy"], "out_a": ["mae"]})
    feeds = ({"a": xs[0], "b": xs[1]}, {"out_a": ys[0], "out_b": ys[1]})
    mine, reference = ours.evaluate(*feeds, verbose=0, return_dict=True), theirs.evaluate(*feeds, verbose=0,
                                                                                           return_dict=True)
    assert sorted(mine) == sorted(reference)
    for key in reference:
        np.testing.assert_allclose(mine[key], reference[key], **KERAS_PARITY, err_msg=key)
    np.testing.assert_allclose(ours.evaluate(xs, ys, verbose=0), theirs.evaluate(xs, ys, verbose=0), **KERAS_PARITY)
    history = ours.fit(xs, ys, batch_size=8, epochs=1, verbose=0, validation_split=0.25)
    expected = theirs.fit(xs, ys, batch_size=8, epochs=1, verbose=0, validation_split=0.25)
    assert sorted(history.history) == sorted(expected.history)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_config_has_keras_graph(real_keras):
    real = real_keras
    ours, theirs = _pair(real, "seq2seq")

    def calls(config):
        return [(entry["class_name"], entry["name"],
                 [[arg["config"]["keras_history"] for arg in node["args"]]
                  + [[t["config"]["keras_history"] for t in node["kwargs"].get("initial_state", [])]]
                  for node in entry["inbound_nodes"]])
                for entry in config["layers"]]

    mine, reference = ours.get_config(), theirs.get_config()
    assert calls(mine) == calls(reference)
    for key in ("input_layers", "output_layers"):
        assert mine[key] == [list(h) if isinstance(h, (list, tuple)) else h for h in reference[key]]


# ---- without Keras --------------------------------------------------------------------------------------

def _chain(k_model):
    return [layers.Embedding(20, 5, mask_zero=True, seed=1), layers.LSTM(6, return_sequences=True, seed=2),
            layers.GRU(4, seed=3), layers.Dense(1, activation="sigmoid", seed=4)]


def test_a_functional_chain_equals_the_sequential_model():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (N, 7))
    x[:10, 4:] = 0
    y = (rng.random((N, 1)) > 0.5).astype(np.float32)
    sequential = keras.Sequential([keras.Input((7,), dtype="int32")] + _chain(keras))
    inputs = keras.Input((7,), dtype="int32")
    outputs = inputs
    for layer in _chain(keras):
        outputs = layer(outputs)
    functional = keras.Model(inputs, outputs)
    functional.set_weights(sequential.get_weights())
    np.testing.assert_array_equal(functional.predict(x, verbose=0), sequential.predict(x, verbose=0))
    for model in (sequential, functional):
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    a = sequential.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    b = functional.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert a.history == b.history
    for mine, theirs in zip(functional.get_weights(), sequential.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def _float64(k):
    """A small graph in float64: a shared layer, initial states from another layer, two outputs."""
    a, b = k.Input((4, 3), name="a"), k.Input((4, 3), name="b")
    shared = k.layers.GRU(3, return_sequences=True, return_state=True, dtype="float64", seed=5, name="shared")
    seq_a, h_a = shared(a)
    seq_b, _ = shared(b, initial_state=[h_a])
    head = k.layers.Dense(2, dtype="float64", seed=6, name="head")
    return k.Model([a, b], [head(seq_a), k.layers.LSTM(2, dtype="float64", seed=7, name="last")(seq_b)])


def test_gradients_equal_finite_differences():
    model = _float64(keras)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(3, 4, 3)), rng.normal(size=(3, 4, 3))]
    outputs = model.predict(xs, verbose=0)
    directions = [rng.normal(size=o.shape) for o in outputs]

    def objective():
        return sum(float(np.sum(d * o)) for d, o in zip(directions, model.predict(xs, verbose=0)))

    grads = _our_gradients(model, xs, directions)
    for weight, grad in zip(model.trainable_weights, grads):
        for index in [tuple(rng.integers(0, s) for s in weight.shape) for _ in range(3)]:
            keep = weight.data[index]
            weight.data[index] = keep + FINITE_DIFFERENCE_STEP
            weight.mark_changed()
            plus = objective()
            weight.data[index] = keep - FINITE_DIFFERENCE_STEP
            weight.mark_changed()
            minus = objective()
            weight.data[index] = keep
            weight.mark_changed()
            np.testing.assert_allclose(grad[index], (plus - minus) / (2 * FINITE_DIFFERENCE_STEP), **FINITE_DIFFERENCE)


def test_summary_shows_what_each_call_is_connected_to():
    model = _seq2seq(keras)
    text = io.StringIO()
    with redirect_stdout(text):
        model.summary()
    lines = text.getvalue().splitlines()
    assert "Connected to" in lines[2]
    decoder = [line for line in lines if line.startswith(" decoder (LSTM)")][0]
    assert "(None, 5, 8)" in decoder and decoder.rstrip().endswith("target[0][0],")
    at = lines.index(decoder)
    assert lines[at + 1].strip() == "encoder[0][1]," and lines[at + 2].strip() == "encoder[0][2]"
    assert any("[(None, 8), (None, 8), (None, 8)]" in line for line in lines)


def test_config_and_file_round_trips(tmp_path):
    model = _shared_two_heads(keras)
    xs, ys = _data("shared_two_heads")
    model.compile(optimizer="adam", loss=LOSSES["shared_two_heads"], loss_weights=[1.0, 0.5],
                  metrics={"out_b": ["accuracy"]})
    model.fit(xs, ys, batch_size=8, epochs=1, verbose=0)
    again = keras.Model.from_config(model.get_config())
    again.set_weights(model.get_weights())
    for a, b in zip(again.predict(xs, verbose=0), model.predict(xs, verbose=0)):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "two_heads.fastrnn"
    model.save(path)
    loaded = keras.load_model(path)
    assert type(loaded) is keras.Model and loaded.output_names == ["out_a", "out_b"]
    for a, b in zip(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0)):
        np.testing.assert_array_equal(a, b)
    # the optimizer state and the compile settings came along: training goes on the same way
    first = model.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    second = loaded.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert first.history == second.history


def test_shared_layer_gradients_add_up():
    """The shared LSTM's gradient is the sum of what each call alone gives."""
    model = _shared_two_heads(keras)
    xs, _ = _data("shared_two_heads")
    rng = np.random.default_rng(3)
    d_a, d_b = rng.normal(size=(N, 1)).astype(np.float32), rng.normal(size=(N, 1)).astype(np.float32)
    both = _our_gradients(model, xs, [d_a, d_b])
    only_a = _our_gradients(model, xs, [d_a, None])
    only_b = _our_gradients(model, xs, [None, d_b])
    shared = [i for i, w in enumerate(model.trainable_weights) if any(w is v for v in model.layers[2].weights)]
    assert shared
    for i in shared:
        np.testing.assert_allclose(both[i], only_a[i] + only_b[i], rtol=1e-5, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------------------

def test_a_disconnected_output_is_refused():
    a, b = keras.Input((3,), name="first"), keras.Input((3,), name="second")
    out = layers.Dense(2)(b)
    with pytest.raises(ArgumentError, match="depends on Input 'second', which is not among the model's inputs"):
        keras.Model(a, out)


def test_a_model_input_must_come_from_input():
    a = keras.Input((3,))
    hidden = layers.Dense(2, name="hidden")(a)
    with pytest.raises(ArgumentError, match=r"inputs\[0\] is hidden\[0\]\[0\], an output of layer 'hidden'"):
        keras.Model(hidden, layers.Dense(1)(hidden))
    with pytest.raises(ArgumentError, match=r"outputs\[0\] must be a KerasTensor"):
        keras.Model(a, np.zeros(3))
    with pytest.raises(ArgumentError, match="subclassing Model with a call"):
        keras.Model()


def test_mixing_arrays_and_tensors_or_passing_masks_is_refused():
    a = keras.Input((4, 3))
    lstm = layers.LSTM(2, name="mixer")
    with pytest.raises(ArgumentError, match="layer 'mixer' .*initial_state mixes KerasTensors with ndarray"):
        lstm(a, initial_state=[layers.Dense(2)(layers.GRU(2)(a)), np.zeros((1, 2))])
    with pytest.raises(ArgumentError, match="masks travel with the tensors"):
        layers.GRU(2)(a, mask=np.ones((1, 4), bool))


def test_bad_data_for_a_model_of_two_inputs():
    model = _seq2seq(keras)
    xs, ys = _data("seq2seq")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ArgumentError, match=r"x \(predict\) must be a list of 2 arrays"):
        model.predict(xs[0], verbose=0)
    with pytest.raises(ArgumentError, match="missing 'target'"):
        model.predict({"source": xs[0]}, verbose=0)
    with pytest.raises(ShapeError, match="every input and target must have the same number of samples"):
        model.fit([xs[0], xs[1][:10]], ys[0], verbose=0)
    with pytest.raises(ArgumentError, match="loss names output.*'nope'"):
        model.compile(optimizer="sgd", loss={"nope": "mse"})
        model.fit(xs, ys[0], verbose=0)
    with pytest.raises(ShapeError, match="layer 'decoder'"):
        layers.LSTM(8, name="encoder_b", return_state=True)  # a fresh name; the mismatch comes next
        source = keras.Input((6, 4))
        _, h, c = layers.LSTM(7, return_state=True)(source)
        layers.LSTM(8, name="decoder")(keras.Input((5, 4)), initial_state=[h, c])


def test_layer_names_must_be_unique():
    a = keras.Input((3,))
    with pytest.raises(ArgumentError, match="two different layers are named 'twin'"):
        keras.Model(a, layers.Dense(1, name="twin")(layers.Dense(2, name="twin")(a)))


def test_input_arguments():
    assert keras.Input((None, 3)).shape == (None, None, 3)
    assert keras.Input(batch_shape=(4, 5)).shape == (4, 5)
    assert keras.Input((5,), dtype="int32").dtype == "int32"
    with pytest.raises(ArgumentError, match="Input needs a shape"):
        keras.Input()
    with pytest.raises(ShapeError, match="shape must hold non-negative ints or None"):
        keras.Input((-1, 3))
    with pytest.raises(ArgumentError, match="no sparse or ragged inputs"):
        keras.Input((3,), sparse=True)
