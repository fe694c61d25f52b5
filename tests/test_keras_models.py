"""Tests of fastrnn.keras.Sequential: summary, compile/fit/evaluate/predict, weights, save/load and errors.

Where the ``keras`` package is importable, parameter counts and a short
training run are compared with a real Keras model given the same weights.
"""

import os
import zipfile

import numpy as np
import pytest

from fastrnn import keras
from fastrnn.exceptions import ArgumentError, FastRNNError, ShapeError
from fastrnn.keras import layers, losses, model_file, optimizers, saving
from helpers import usable_keras
from tolerances import FLOAT32_BATCHED_LOSS, FLOAT32_REORDERED, KERAS_PARITY


def _separable(n=240, d=4, seed=0):
    """Linearly separable binary data: x (n, d) float32, y (n,) float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5, 1.0][:d]) > 0).astype(np.float32)
    return x, y


def _dense_model(seed=0):
    return keras.Sequential([layers.Dense(8, activation="tanh", seed=seed),
                             layers.Dense(1, activation="sigmoid", seed=seed + 1)])


def _tokens(n=64, T=12, vocab=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, size=(n, T))
    x[: n // 3, T // 2:] = 0  # padding, for models with mask_zero
    y = (x[:, 0] > vocab // 2).astype(np.float32)
    return x, y


def _rnn_model(vocab=30, seed=0, mask_zero=False):
    return keras.Sequential([layers.Embedding(vocab, 8, mask_zero=mask_zero, seed=seed),
                             layers.SimpleRNN(6, seed=seed + 1),
                             layers.Dense(1, activation="sigmoid", seed=seed + 2)])


def _lines(model, **kwargs):
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    return "\n".join(lines)


# summary ---------------------------------------------------------------------------------
def test_summary_of_the_issue_model_before_fit():
    model = keras.Sequential([layers.Embedding(10000, 32, name="embedding"), layers.SimpleRNN(32, name="rnn"),
                              layers.Dense(1, activation="sigmoid", name="out")], name="imdb")
    text = _lines(model)
    assert 'Model: "imdb"' in text
    assert "embedding (Embedding)" in text and "(None, None, 32)" in text and "320,000" in text
    assert "rnn (SimpleRNN)" in text and "(None, 32)" in text and "2,080" in text  # 32*32 + 32*32 + 32
    assert "out (Dense)" in text and "(None, 1)" in text
    assert "Total params: 322,113" in text
    assert "Trainable params: 322,113" in text and "Non-trainable params: 0" in text


def test_summary_counts_frozen_layers_and_wrappers():
    frozen = layers.Dense(4, trainable=False)
    model = keras.Sequential([layers.Embedding(50, 6), layers.Bidirectional(layers.LSTM(5, return_sequences=True)),
                              layers.TimeDistributed(frozen)])
    model.build((None, 7))
    text = _lines(model)
    lstm = 2 * 4 * 5 * (6 + 5 + 1)
    dense = 10 * 4 + 4
    assert f"{lstm:,}" in text and "(None, 7, 10)" in text and "(None, 7, 4)" in text
    total = 50 * 6 + lstm + dense
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - dense:,}" in text
    assert f"Non-trainable params: {dense:,}" in text
    assert model.count_params() == total


def test_summary_of_an_unbuilt_model_says_so():
    text = _lines(keras.Sequential([layers.Dense(3)]))
    assert "unbuilt" in text and "not built" in text


def test_summary_after_build_with_declared_input_shape():
    model = keras.Sequential([layers.Dense(3, input_shape=(5,))])
    assert "(None, 3)" in _lines(model) and model.built


def test_input_builds_layers_as_they_are_added(tmp_path):
    model = keras.Sequential([keras.Input((7,)), layers.Embedding(40, 6)])
    assert model.built
    model.add(layers.GRU(5))
    assert model.built and "(None, 5)" in _lines(model)
    model.save(tmp_path / "input.fastrnn")
    loaded = keras.load_model(tmp_path / "input.fastrnn")
    _assert_same_weights(model, loaded)
    loaded.add(layers.Dense(2))
    assert loaded.built
    with pytest.raises(ArgumentError, match="first entry"):
        model.add(keras.Input((7,)))


def test_keras_facade_does_not_import_the_torch_style_facade():
    import subprocess
    import sys

    code = "import sys, fastrnn.keras; print('fastrnn.nn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras's backends
def test_param_counts_equal_keras():
    real = usable_keras()
    ours = keras.Sequential([layers.Embedding(100, 16), layers.LSTM(12, return_sequences=True), layers.GRU(7),
                             layers.Dense(3, activation="softmax")])
    ours.build((None, 9))
    theirs = real.Sequential([real.Input((9,)), real.layers.Embedding(100, 16),
                              real.layers.LSTM(12, return_sequences=True), real.layers.GRU(7),
                              real.layers.Dense(3, activation="softmax")])
    assert [layer.count_params() for layer in ours.layers] == [layer.count_params() for layer in theirs.layers]
    assert ours.count_params() == theirs.count_params()


# fit, evaluate, predict ------------------------------------------------------------------
def test_issue_example_runs_on_numpy_arrays(capsys):
    np.random.seed(1)
    x, y = _tokens(n=160, T=15, vocab=50)
    model = keras.Sequential([layers.Embedding(50, 16), layers.SimpleRNN(16),
                              layers.Dense(1, activation="sigmoid")])
    model.summary()
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, verbose=0)
    out = capsys.readouterr().out
    assert "simple_rnn" in out and "Total params: 1,345" in out  # 800 + 528 + 17
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.predict(x[:5], verbose=0).shape == (5, 1)


def test_fit_learns_separable_data_and_history_has_keras_keys():
    np.random.seed(0)
    x, y = _separable()
    model = _dense_model()
    model.compile(optimizer=optimizers.Adam(learning_rate=0.05), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=8, validation_split=0.25, verbose=0)
    assert isinstance(history, keras.History) and model.history is history
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(values) == 8 for values in history.history.values())
    assert history.epoch == list(range(8))
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9 and history.history["val_accuracy"][-1] > 0.85
    assert history.params == {"epochs": 8, "steps": 12, "verbose": 0}  # 180 training samples / 16


def test_fit_with_validation_data_initial_epoch_and_acc_name():
    x, y = _separable(n=64)
    model = _dense_model()
    model.compile(optimizer="sgd", loss="mse", metrics=["acc", "mae"])
    history = model.fit(x, y, epochs=3, initial_epoch=1, validation_data=(x[:10], y[:10]), verbose=0)
    assert list(history.history) == ["loss", "acc", "mae", "val_loss", "val_acc", "val_mae"]
    assert history.epoch == [1, 2]


def test_fit_loss_is_the_batch_size_weighted_mean_and_evaluate_matches_predict():
    x, y = _separable(n=50)
    model = _dense_model()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # lr 0: weights stay
    y_pred = model.predict(x, verbose=0)
    expected_loss = losses.BinaryCrossentropy()(y, y_pred)
    expected_accuracy = np.mean((y_pred[:, 0] > 0.5) == (y == 1))
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=FLOAT32_BATCHED_LOSS["rtol"])
    assert history.history["accuracy"][0] == pytest.approx(expected_accuracy)
    loss, accuracy = model.evaluate(x, y, batch_size=7, verbose=0)
    assert loss == pytest.approx(expected_loss, rel=FLOAT32_BATCHED_LOSS["rtol"]) and accuracy == pytest.approx(expected_accuracy)
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


@pytest.mark.parametrize("builder", [_dense_model, _rnn_model], ids=["dense", "rnn"])
def test_predict_in_batches_equals_one_shot(builder):
    model = builder()
    x = _separable(n=45)[0] if builder is _dense_model else _tokens(n=45)[0]
    one_shot = model(x)
    for batch_size in (1, 7, 32, 100):
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size, verbose=0), one_shot, **FLOAT32_REORDERED,
                                   err_msg=f"batch_size={batch_size}")


def test_rnn_model_with_masking_trains_and_masked_targets_do_not_count():
    x, _ = _tokens(n=48, T=10)
    y = (x % 3).astype(np.int64)
    model = keras.Sequential([layers.Embedding(30, 8, mask_zero=True, seed=1),
                              layers.LSTM(8, return_sequences=True, seed=2),
                              layers.TimeDistributed(layers.Dense(3, activation="softmax", seed=3))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y, verbose=0)
    changed = y.copy()
    changed[x == 0] = (changed[x == 0] + 1) % 3  # only padded steps differ
    assert model.evaluate(x, changed, verbose=0) == pytest.approx(before, rel=FLOAT32_REORDERED["rtol"])
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_class_weight_and_sample_weight():
    x, y = _separable(n=40)
    model = _dense_model()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy", metrics=["accuracy"])
    weights = np.where(y == 1, 3.0, 0.5)
    y_pred = model.predict(x, verbose=0)
    expected = losses.BinaryCrossentropy()(y, y_pred, sample_weight=weights)
    by_class = model.fit(x, y, class_weight={0: 0.5, 1: 3.0}, shuffle=False, epochs=1, verbose=0)
    by_sample = model.fit(x, y, sample_weight=weights, shuffle=False, epochs=1, verbose=0)
    assert by_class.history["loss"][0] == pytest.approx(expected, rel=FLOAT32_BATCHED_LOSS["rtol"])
    assert by_sample.history == by_class.history
    assert model.evaluate(x, y, sample_weight=weights, verbose=0)[0] == pytest.approx(expected, rel=FLOAT32_BATCHED_LOSS["rtol"])
    # compiled metrics are not weighted (Keras's metrics, not weighted_metrics)
    assert by_class.history["accuracy"][0] == pytest.approx(np.mean((y_pred[:, 0] > 0.5) == (y == 1)))
    history = model.fit(x[:30], y[:30], validation_data=(x[30:], y[30:], weights[30:]), epochs=1, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(
        losses.BinaryCrossentropy()(y[30:], y_pred[30:], sample_weight=weights[30:]), rel=FLOAT32_BATCHED_LOSS["rtol"])
    with pytest.raises(ArgumentError, match="not both"):
        model.fit(x, y, sample_weight=weights, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ShapeError, match="one entry per sample"):
        model.fit(x, y, sample_weight=weights[:5], verbose=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_weighted_fit_matches_keras():
    real = usable_keras()
    x, y = _separable(n=48)
    ours = _dense_model()
    ours.build((None, 4))
    theirs = real.Sequential([real.Input((4,)), real.layers.Dense(8, activation="tanh"),
                              real.layers.Dense(1, activation="sigmoid")])
    theirs.set_weights(ours.get_weights())
    for model, module in ((ours, keras), (theirs, real)):
        model.compile(optimizer=module.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy",
                      metrics=["accuracy"])
    history = ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, class_weight={0: 0.3, 1: 2.0}, verbose=0)
    expected = theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, class_weight={0: 0.3, 1: 2.0}, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], **KERAS_PARITY)
    np.testing.assert_allclose(history.history["accuracy"], expected.history["accuracy"], **KERAS_PARITY)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **KERAS_PARITY)


def test_train_and_test_on_batch():
    x, y = _separable(n=32)
    model = _dense_model()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    first = model.test_on_batch(x, y)
    assert isinstance(first, float)
    model.train_on_batch(x, y)
    assert model.optimizer.iterations == 1
    assert model.test_on_batch(x, y) != first


def test_verbose_progress_and_silence(capsys):
    x, y = _separable(n=40)
    model = _dense_model()
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "loss: " in out and "accuracy: " in out
    pytest.importorskip("tqdm")
    model.fit(x, y, epochs=1, verbose=1, validation_split=0.25)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "loss=" in out and "val_loss=" in out


def test_callbacks_can_stop_training():
    class StopAfterTwo(keras.Callback):
        def on_epoch_end(self, epoch, logs=None):
            assert "loss" in logs
            if epoch == 1:
                self.model.stop_training = True

    x, y = _separable(n=32)
    model = _dense_model()
    model.compile(loss="binary_crossentropy")
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[StopAfterTwo()])
    assert history.epoch == [0, 1]


def test_early_stopping_restores_best_weights():
    x, y = _separable(n=48)
    model = _dense_model()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    scores = [3.0, 2.0, 1.0, 1.5, 1.6, 0.5, 0.1]
    seen = []

    class Score(keras.Callback):
        """Puts a chosen score into the logs (callbacks share them) and records the weights."""

        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = scores[epoch]
            seen.append(self.model.get_weights())

    stopper = keras.callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=len(scores), verbose=0, callbacks=[Score(), stopper])
    assert history.epoch == [0, 1, 2, 3, 4] and stopper.stopped_epoch == 4
    assert history.history["score"] == scores[:5]  # History runs last and sees what callbacks add
    assert stopper.best_epoch == 2 and stopper.best == 1.0
    for restored, kept in zip(model.get_weights(), seen[2]):
        np.testing.assert_array_equal(restored, kept)
    assert keras.callbacks.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert keras.callbacks.EarlyStopping().mode == "min"


def test_model_checkpoint_saves_the_best_epochs(tmp_path):
    x, y = _separable(n=40)
    model = _dense_model()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    pattern = str(tmp_path / "m-{epoch:02d}.fastrnn")
    model.fit(x, y, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[keras.callbacks.ModelCheckpoint(pattern, monitor="val_loss", save_best_only=False)])
    assert sorted(os.listdir(tmp_path)) == ["m-01.fastrnn", "m-02.fastrnn", "m-03.fastrnn"]
    _assert_same_weights(model, keras.load_model(tmp_path / "m-03.fastrnn"))


def test_ragged_inputs_get_a_clear_error():
    model = _rnn_model()
    model.compile(loss="binary_crossentropy")
    with pytest.raises(ShapeError, match="different lengths; pad"):
        model.fit([[1, 2, 3], [4, 5]], [0, 1], verbose=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fit_matches_keras_given_the_same_weights():
    real = usable_keras()
    x, y = _tokens(n=64, T=8)
    ours = _rnn_model()
    ours.build((None, 8))
    theirs = real.Sequential([real.Input((8,)), real.layers.Embedding(30, 8), real.layers.SimpleRNN(6),
                              real.layers.Dense(1, activation="sigmoid")])
    theirs.set_weights(ours.get_weights())
    for model, module in ((ours, keras), (theirs, real)):
        model.compile(optimizer=module.optimizers.SGD(learning_rate=0.5, momentum=0.5), loss="binary_crossentropy",
                      metrics=["accuracy"])
    history = ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    expected = theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], **KERAS_PARITY)
    np.testing.assert_allclose(history.history["accuracy"], expected.history["accuracy"], **KERAS_PARITY)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **KERAS_PARITY)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_masked_sequence_loss_and_accuracy_match_keras():
    real = usable_keras()
    x, _ = _tokens(n=32, T=6)
    y = (x % 3).astype(np.int64)
    ours = keras.Sequential([layers.Embedding(30, 5, mask_zero=True, seed=1),
                             layers.LSTM(4, return_sequences=True, seed=2),
                             layers.TimeDistributed(layers.Dense(3, activation="softmax", seed=3))])
    ours.build((None, 6))
    theirs = real.Sequential([real.Input((6,)), real.layers.Embedding(30, 5, mask_zero=True),
                              real.layers.LSTM(4, return_sequences=True),
                              real.layers.TimeDistributed(real.layers.Dense(3, activation="softmax"))])
    theirs.set_weights(ours.get_weights())
    # TensorFlow hands Keras the Embedding gradient as IndexedSlices with a row per occurrence, and
    # RMSprop squares each occurrence apart: a TF quirk, so use a rule linear in the gradient there.
    linear = real.backend.backend() == "tensorflow"
    for model, module in ((ours, keras), (theirs, real)):
        optimizer = (module.optimizers.SGD(learning_rate=0.5, momentum=0.5) if linear
                     else module.optimizers.RMSprop(learning_rate=0.01))
        model.compile(optimizer=optimizer, metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    history = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    expected = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], **KERAS_PARITY)
    np.testing.assert_allclose(history.history["accuracy"], expected.history["accuracy"], **KERAS_PARITY)


# weights and saving ----------------------------------------------------------------------
def test_get_and_set_weights():
    model = _dense_model()
    model.build((None, 4))
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 8), (8,), (8, 1), (1,)]
    other = _dense_model(seed=5)
    other.build((None, 4))
    other.set_weights(weights)
    for a, b in zip(other.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ArgumentError, match="4 weight array"):
        other.set_weights(weights[:3])


def _assert_same_weights(a, b):
    assert len(a.get_weights()) == len(b.get_weights())
    for left, right in zip(a.get_weights(), b.get_weights()):
        assert left.dtype == right.dtype and left.tobytes() == right.tobytes()


@pytest.mark.parametrize("builder", [_dense_model, lambda: _rnn_model(mask_zero=True)], ids=["dense", "rnn"])
def test_save_load_round_trip_is_bit_exact_and_resumes_training(tmp_path, builder):
    model = builder()
    x, y = _separable(n=40) if builder is _dense_model else _tokens(n=40)
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01, clipnorm=1.0), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "model.fastrnn"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.fastrnn"]  # no temporary file left behind
    loaded = keras.load_model(path)
    assert keras.models.load_model(path).get_config() == loaded.get_config()  # Keras's other spelling
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    _assert_same_weights(model, loaded)
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.loss.get_config() == model.loss.get_config()
    # the optimizer state came along: training on goes exactly as it would have
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    _assert_same_weights(model, loaded)


def test_save_load_float64_model(tmp_path):
    model = keras.Sequential([layers.LSTM(3, return_sequences=True, dtype="float64"),
                              layers.Dense(2, dtype="float64")])
    model.build((None, 4, 2))
    model.compile(optimizer=optimizers.RMSprop(centered=True, momentum=0.5), loss="mse")
    x = np.random.default_rng(2).normal(size=(6, 4, 2))
    model.fit(x, np.zeros((6, 4, 2)), verbose=0)
    model.save(tmp_path / "f64.fastrnn")
    loaded = keras.load_model(tmp_path / "f64.fastrnn")
    assert loaded.get_weights()[0].dtype == np.float64
    _assert_same_weights(model, loaded)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_save_load_wrappers_and_uncompiled(tmp_path):
    model = keras.Sequential([layers.Embedding(20, 4), layers.Bidirectional(layers.GRU(3, return_sequences=True)),
                              layers.TimeDistributed(layers.Dense(2))])
    model.build((None, 5))
    model.save(tmp_path / "wrapped.fastrnn")
    loaded = keras.load_model(tmp_path / "wrapped.fastrnn")
    _assert_same_weights(model, loaded)
    assert loaded.optimizer is None
    x = np.random.default_rng(0).integers(0, 20, size=(3, 5))
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_without_compile(tmp_path):
    model = _dense_model()
    model.build((None, 4))
    model.compile(loss="mse")
    model.save(tmp_path / "m.fastrnn")
    assert keras.load_model(tmp_path / "m.fastrnn", compile=False).optimizer is None


def test_save_overwrites_atomically_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.fastrnn"
    first = _dense_model()
    first.build((None, 4))
    first.save(path)
    good = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    second = _dense_model(seed=9)
    second.build((None, 4))
    monkeypatch.setattr(model_file, "_write_array", broken)  # the array writer of the file format
    with pytest.raises(RuntimeError, match="disk full"):
        second.save(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["m.fastrnn"]


def _saved_bytes(tmp_path):
    model = _dense_model()
    model.build((None, 4))
    path = tmp_path / "good.fastrnn"
    model.save(path)
    return path.read_bytes()


def test_corrupt_truncated_and_foreign_files_raise_model_file_error(tmp_path):
    good = _saved_bytes(tmp_path)
    cases = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "random": np.random.default_rng(0).bytes(500),
        "text": b"not a model at all",
    }
    # a flipped byte inside the first array's data: the zip's CRC check catches it
    with zipfile.ZipFile(tmp_path / "good.fastrnn") as archive:
        info = archive.getinfo("weights/00000.npy")
    flipped = bytearray(good)
    flipped[info.header_offset + 30 + len(info.filename) + info.file_size - 1] ^= 0xFF
    cases["flipped"] = bytes(flipped)
    for name, content in cases.items():
        path = tmp_path / f"{name}.fastrnn"
        path.write_bytes(content)
        with pytest.raises(saving.ModelFileError, match=name + r"\.fastrnn"):
            keras.load_model(path)
    with pytest.raises(FileNotFoundError):
        keras.load_model(tmp_path / "missing.fastrnn")


def _rewrite_config(tmp_path, change):
    import json

    good = tmp_path / "good.fastrnn"
    if not good.exists():
        _saved_bytes(tmp_path)
    target = tmp_path / "changed.fastrnn"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == saving.CONFIG_ENTRY:
                document = json.loads(data)
                change(document)
                data = json.dumps(document)
            out.writestr(item.filename, data)
    return target


def test_wrong_version_format_and_mismatched_arrays(tmp_path):
    newer = _rewrite_config(tmp_path, lambda d: d.update(format_version=saving.FORMAT_VERSION + 1))
    with pytest.raises(saving.ModelFileError, match="version 2.*upgrade fastrnn"):
        keras.load_model(newer)
    other = _rewrite_config(tmp_path, lambda d: d.update(format="something.else"))
    with pytest.raises(saving.ModelFileError, match="not a fastrnn model file"):
        keras.load_model(other)
    shape = _rewrite_config(tmp_path, lambda d: d["weights"][0].update(shape=[5, 8]))
    with pytest.raises(saving.ModelFileError, match="shape"):
        keras.load_model(shape)
    with zipfile.ZipFile(tmp_path / "nozip.fastrnn", "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(saving.ModelFileError, match="fastrnn_model.json"):
        keras.load_model(tmp_path / "nozip.fastrnn")
    assert issubclass(saving.ModelFileError, FastRNNError)


# errors ------------------------------------------------------------------------------------
def test_fit_before_compile_and_without_loss():
    x, y = _separable(n=8)
    model = _dense_model()
    with pytest.raises(keras.NotCompiledError, match=r"compile\(.*\) before fit"):
        model.fit(x, y, verbose=0)
    with pytest.raises(keras.NotCompiledError, match="evaluate"):
        model.evaluate(x, y, verbose=0)
    model.compile(optimizer="adam")
    with pytest.raises(keras.NotCompiledError, match="loss"):
        model.fit(x, y, verbose=0)


def test_fit_length_mismatch_and_bad_arguments():
    x, y = _separable(n=10)
    model = _dense_model()
    model.compile(loss="binary_crossentropy")
    with pytest.raises(ShapeError, match="10 in x and 9 in y"):
        model.fit(x, y[:9], verbose=0)
    with pytest.raises(ShapeError, match="validation_data"):
        model.fit(x, y, validation_data=(x, y[:3]), verbose=0)
    with pytest.raises(ArgumentError, match="validation_split"):
        model.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ArgumentError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ArgumentError, match="verbose"):
        model.fit(x, y, verbose=3)


def test_compile_rejects_unknown_names_listing_valid_ones():
    model = _dense_model()
    with pytest.raises(ArgumentError, match=r"unknown optimizer 'adamw2'.*rmsprop"):
        model.compile(optimizer="adamw2", loss="mse")
    with pytest.raises(ArgumentError, match=r"unknown loss 'crossentropy'.*binary_crossentropy"):
        model.compile(loss="crossentropy")
    with pytest.raises(ArgumentError, match=r"unknown metric 'precision'.*accuracy"):
        model.compile(loss="mse", metrics=["precision"])


def test_sparse_labels_out_of_range_in_fit():
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    model = keras.Sequential([layers.Dense(4, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ArgumentError, match=r"label 4 .*\[0, 3\]"):
        model.fit(x, np.array([0, 1, 2, 3, 4, 0]), verbose=0)


def test_layers_add_pop_and_duplicate_names():
    model = keras.Sequential(name="stack")
    model.add(layers.Dense(2, name="a"))
    with pytest.raises(ArgumentError, match="'a' is already in the model"):
        model.add(layers.Dense(2, name="a"))
    with pytest.raises(ArgumentError, match="fastrnn.keras layer"):
        model.add("dense")
    model.add(layers.Dense(1, name="b"))
    assert [layer.name for layer in model.layers] == ["a", "b"]
    assert model.pop().name == "b" and len(model.layers) == 1


# -- threads: the NumPy work runs under the kernels' thread count -------------------------------

def _blas_threads_now():
    """The thread counts of every BLAS loaded in this process, as threadpoolctl reads them."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


def _recording_model(n_threads, backend=None):
    """LSTM -> Lambda that records the BLAS threads it runs under -> Dense; and the record."""
    seen = []

    def record(inputs):
        seen.append(_blas_threads_now())
        return inputs

    model = keras.Sequential([
        layers.LSTM(4, return_sequences=True, n_threads=n_threads, backend=backend),
        layers.Lambda(record, backward=lambda d_output, inputs, output: d_output),
        layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model, seen


def _train_and_predict(model):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 5, 3)).astype(np.float32), rng.standard_normal((8, 5, 2)).astype(np.float32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    model(x)


def test_fit_and_predict_hold_the_blas_at_the_kernels_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    model, seen = _recording_model(n_threads=1)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outside = _blas_threads_now()
        if outside != {2}:
            pytest.skip(f"no BLAS here that takes 2 threads ({outside})")
        _train_and_predict(model)
        assert _blas_threads_now() == {2}  # restored after each call
    assert len(seen) >= 6 and all(threads == {1} for threads in seen), seen


def test_a_numba_kernel_inside_a_held_limit_switches_to_one_thread_and_back():
    from conftest import require_backend
    from fastrnn._threads import available_cores

    require_backend("numba")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if available_cores() < 2:
        pytest.skip("needs 2 cores for a limit other than the Numba kernels' 1")
    model, seen = _recording_model(n_threads=2, backend="numba")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        if _blas_threads_now() != {1}:
            pytest.skip("no BLAS loaded")
        _train_and_predict(model)  # the kernel's own limit of 1 nests in the model's 2 without waiting
        assert _blas_threads_now() == {1}
    assert len(seen) >= 6 and all(threads == {2} for threads in seen), seen
