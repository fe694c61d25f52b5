"""The learning-rate schedules, CSVLogger and LambdaCallback of fastrnn.keras.callbacks, in fit and against
real Keras's callbacks driven by the same epoch logs."""

import csv
import itertools
import os

import numpy as np
import pytest

from fastrnn import keras
from fastrnn.exceptions import ArgumentError
from fastrnn.keras import callbacks, layers, optimizers


def _data(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)


def _model(lr=0.1):
    model = keras.Sequential([layers.Dense(4, activation="tanh", seed=0), layers.Dense(1, activation="sigmoid", seed=1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="binary_crossentropy")
    return model


class _Holder:
    """What a callback reads of a model: ``optimizer.learning_rate`` and ``stop_training``."""

    def __init__(self, lr):
        self.optimizer = type("Optimizer", (), {})()
        self.optimizer.learning_rate = lr
        self.stop_training = False


def _rates(callback, values, monitor="val_loss", lr=1.0):
    """The learning rate after each epoch of ``callback`` fed ``values`` of ``monitor``."""
    holder = _Holder(lr)
    callback.set_model(holder)
    callback.on_train_begin({})
    rates = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value})
        rates.append(float(np.asarray(holder.optimizer.learning_rate)))
    return rates


@pytest.fixture(scope="module")
def real_callbacks():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    real = pytest.importorskip("keras")
    return real.callbacks


# ---- ReduceLROnPlateau

def test_reduce_lr_on_plateau_drops_after_patience_epochs():
    reducer = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=0.0)
    # improves, improves, 2 epochs without -> drop, improves, 2 without -> drop
    assert _rates(reducer, [5, 4, 4, 4.5, 3, 3, 3]) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_reduce_lr_on_plateau_respects_min_lr_and_cooldown():
    reducer = callbacks.ReduceLROnPlateau(factor=0.1, patience=1, cooldown=2, min_lr=0.05, min_delta=0.0)
    # drop at epoch 1 to 0.1; the cooldown counts down at epochs 2 and 3, and epoch 3, no longer in
    # cooldown, counts towards patience: drop to 0.1 * 0.1, raised to min_lr 0.05, where it stays
    assert _rates(reducer, [1.0] * 7) == pytest.approx([1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])


def test_reduce_lr_on_plateau_refuses_a_factor_of_one():
    with pytest.raises(ArgumentError, match=r"factor must be in \[0, 1\)"):
        callbacks.ReduceLROnPlateau(factor=1.0)


@pytest.mark.parametrize("patience, cooldown, min_delta, factor, min_lr, mode", list(itertools.product(
    [0, 1, 3], [0, 2], [0.0, 0.05], [0.5, 0.2], [0.0, 0.1], ["min", "max", "auto"])))
def test_reduce_lr_on_plateau_equals_keras(real_callbacks, patience, cooldown, min_delta, factor, min_lr, mode):
    values = list(np.random.default_rng(patience * 7 + cooldown).normal(size=25).cumsum() * 0.1)
    kwargs = dict(monitor="val_loss", patience=patience, cooldown=cooldown, min_delta=min_delta, factor=factor,
                  min_lr=min_lr, mode=mode)
    expected = _rates(real_callbacks.ReduceLROnPlateau(**kwargs), values)
    assert _rates(callbacks.ReduceLROnPlateau(**kwargs), values) == pytest.approx(expected, rel=1e-6)


def test_reduce_lr_on_plateau_lowers_the_rate_fit_runs_with():
    x, y = _data()
    model = _model(lr=0.2)

    class Stalled(keras.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = 1.0  # never improves after the first epoch

    reducer = callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=1)
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[Stalled(), reducer])
    assert history.history["learning_rate"] == pytest.approx([0.2, 0.2, 0.1, 0.05])
    assert model.optimizer.learning_rate == pytest.approx(0.025)


# ---- LearningRateScheduler

def test_learning_rate_scheduler_sets_each_epochs_rate_in_fit():
    x, y = _data()
    model = _model(lr=0.3)
    history = model.fit(x, y, epochs=4, verbose=0,
                        callbacks=[callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr / 3)])
    assert history.history["learning_rate"] == pytest.approx([0.3, 0.3, 0.1, 0.1 / 3])
    one_argument = _model()
    one_argument.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e: 0.01 * (e + 1))])
    assert one_argument.optimizer.learning_rate == pytest.approx(0.03)


def test_learning_rate_scheduler_changes_training_like_a_new_rate():
    """A schedule that sets 0.05 from the start trains exactly as the rate 0.05 does."""
    x, y = _data()
    scheduled, fixed = _model(lr=1.0), _model(lr=0.05)
    scheduled.fit(x, y, epochs=2, shuffle=False, verbose=0,
                  callbacks=[callbacks.LearningRateScheduler(lambda epoch: 0.05)])
    fixed.fit(x, y, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(scheduled.get_weights(), fixed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_scheduler_refuses_bad_schedules():
    with pytest.raises(ArgumentError, match="schedule must be callable"):
        callbacks.LearningRateScheduler(0.1)
    x, y = _data()
    with pytest.raises(ArgumentError, match="at epoch 0 it returned 'fast'"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e, lr: "fast")])


def test_learning_rate_scheduler_equals_keras(real_callbacks):
    def schedule(epoch, lr):
        return lr * 0.9 if epoch % 2 else lr + 0.01

    ours, theirs = _Holder(0.5), _Holder(0.5)
    mine, real = callbacks.LearningRateScheduler(schedule), real_callbacks.LearningRateScheduler(schedule)
    mine.set_model(ours)
    real.set_model(theirs)
    for epoch in range(6):
        mine.on_epoch_begin(epoch, {})
        real.on_epoch_begin(epoch, {})
        assert float(ours.optimizer.learning_rate) == pytest.approx(float(np.asarray(theirs.optimizer.learning_rate)))


# ---- CSVLogger and LambdaCallback

def test_csv_logger_writes_each_epochs_logs(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    history = _model().fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert list(rows[0]) == ["epoch", "loss", "val_loss"]
    for key in ("loss", "val_loss"):
        assert [float(row[key]) for row in rows] == pytest.approx(history.history[key])


def test_csv_logger_appends_without_a_second_header(tmp_path):
    x, y = _data()
    path = tmp_path / "log.tsv"
    model = _model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(path, separator="\t")])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, separator="\t", append=True)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch\tloss" and len(lines) == 4 and lines[3].startswith("0\t")


def test_lambda_callback_calls_the_functions_given():
    x, y = _data(n=20)
    seen = []
    hooks = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch, "loss" in logs)),
                                     on_batch_end=lambda batch, logs: seen.append(("batch", batch)),
                                     on_train_end=lambda logs: seen.append("end"))
    _model().fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[hooks])
    assert seen == [("batch", 0), ("batch", 1), ("epoch", 0, True), ("batch", 0), ("batch", 1), ("epoch", 1, True),
                    "end"]


def test_lambda_callback_refuses_unknown_hooks():
    with pytest.raises(ArgumentError, match="LambdaCallback has no hook 'on_predict_end'"):
        callbacks.LambdaCallback(on_predict_end=print)
    with pytest.raises(ArgumentError, match="on_epoch_end must be callable; got int"):
        callbacks.LambdaCallback(on_epoch_end=3)
