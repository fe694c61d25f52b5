"""fit / evaluate / predict on batches made elsewhere (generators, iterators, PyDataset-like sequences)
and on ``(x, y)`` tuples: the same training as on the arrays those batches come from."""

import os

import numpy as np
import pytest

from fastrnn import keras
from fastrnn.exceptions import ArgumentError
from fastrnn.keras import layers
from helpers import usable_keras
from tolerances import KERAS_PARITY

N, BATCH = 40, 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 5, 3)).astype(np.float32)
    return x, (x.sum(axis=(1, 2)) > 0).astype(np.float32)[:, None]


def _model(k=keras):
    model = k.Sequential([k.Input((5, 3)), k.layers.GRU(4, **({"seed": 1} if k is keras else {})),
                          k.layers.Dense(1, activation="sigmoid", **({"seed": 2} if k is keras else {}))])
    return model


def _compiled(weights=None):
    model = _model()
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.3), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _batches(x, y, weights=None):
    for start in range(0, len(x), BATCH):
        rows = slice(start, start + BATCH)
        yield (x[rows], y[rows]) if weights is None else (x[rows], y[rows], weights[rows])


class Sequence:
    """A PyDataset-like sequence of batches: len, indexing, on_epoch_end."""

    def __init__(self, x, y):
        self.x, self.y, self.epochs_ended = x, y, 0

    def __len__(self):
        return int(np.ceil(len(self.x) / BATCH))

    def __getitem__(self, index):
        rows = slice(index * BATCH, (index + 1) * BATCH)
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.epochs_ended += 1


def _same_training(a, b):
    assert a.history.history == b.history.history
    for mine, theirs in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_a_generator_trains_as_the_arrays_it_cuts():
    x, y = _data()
    reference = _compiled()
    reference.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    generated = _compiled(_model().get_weights())

    def forever():
        while True:
            yield from _batches(x, y)

    generated.fit(forever(), steps_per_epoch=N // BATCH, epochs=3, verbose=0)
    _same_training(generated, reference)


def test_a_sequence_trains_as_its_arrays_and_hears_each_epoch_end():
    x, y = _data()
    reference = _compiled()
    reference.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, validation_data=(x[:16], y[:16]))
    sequence = Sequence(x, y)
    model = _compiled(_model().get_weights())
    model.fit(sequence, epochs=2, verbose=0, validation_data=Sequence(x[:16], y[:16]))
    _same_training(model, reference)
    assert sequence.epochs_ended == 2


def test_tuples_stand_for_x_y_and_sample_weight():
    x, y = _data()
    weights = np.linspace(0.5, 1.5, N)
    for given, expected in (((x, y), {}), ((x, y, weights), {"sample_weight": weights})):
        reference = _compiled()
        reference.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, **expected)
        model = _compiled(_model().get_weights())
        model.fit(given, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
        _same_training(model, reference)
        assert model.evaluate(given, verbose=0) == reference.evaluate(x, y, verbose=0, **expected)


def test_evaluate_and_predict_on_sources_of_batches():
    x, y = _data()
    model = _compiled()
    assert model.evaluate(_batches(x, y), verbose=0) == model.evaluate(x, y, batch_size=BATCH, verbose=0)
    assert model.evaluate(Sequence(x, y), steps=2, verbose=0) == model.evaluate(x[:16], y[:16], batch_size=BATCH,
                                                                              verbose=0)
    np.testing.assert_array_equal(model.predict((b[0] for b in _batches(x, y)), verbose=0),
                                  model.predict(x, batch_size=BATCH, verbose=0))
    np.testing.assert_array_equal(model.predict(Sequence(x, y), verbose=0), model.predict(x, verbose=0))
    assert model.predict(x, steps=2, batch_size=BATCH, verbose=0).shape == (16, 1)


def test_an_exhausted_generator_ends_training_with_a_warning():
    x, y = _data()
    model = _compiled()
    with pytest.warns(UserWarning, match="ran out of batches after 0 in this epoch"):
        history = model.fit(_batches(x, y), epochs=3, verbose=0)
    assert history.epoch == [0]
    with pytest.warns(UserWarning, match="ran out of batches after 1 in this epoch"):  # 4 + 1 of 5
        history = _compiled().fit(_batches(x, y), steps_per_epoch=4, epochs=3, verbose=0)
    assert history.epoch == [0, 1]


@pytest.mark.parametrize("kwargs, match", [
    ({"y": np.zeros(N)}, "y is not taken when x gives batches"),
    ({"batch_size": 4}, "batch_size is not taken when x gives batches"),
    ({"validation_split": 0.2}, "validation_split is not taken when x gives batches"),
    ({"steps_per_epoch": 0}, "the steps of training data must be a positive integer"),
])
def test_arguments_refused_with_sources_of_batches(kwargs, match):
    x, y = _data()
    with pytest.raises(ArgumentError, match=match):
        _compiled().fit(_batches(x, y), verbose=0, **kwargs)


def test_bad_batches_and_steps():
    x, y = _data()
    with pytest.raises(ArgumentError, match=r"a batch of training data must be \(x, y\)"):
        _compiled().fit((b[0] for b in _batches(x, y)), verbose=0)
    with pytest.raises(ArgumentError, match="steps_per_epoch must be an integer from 1 to the 5 batches"):
        _compiled().fit(x, y, batch_size=BATCH, steps_per_epoch=6, verbose=0)
    with pytest.raises(ArgumentError, match="sample_weight is given twice"):
        _compiled().fit((x, y, np.ones(N)), sample_weight=np.ones(N), verbose=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_keras_pydataset_trains_as_in_keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    real = usable_keras()
    x, y = _data()

    class Batches(real.utils.PyDataset):
        def __len__(self):
            return N // BATCH

        def __getitem__(self, index):
            return x[index * BATCH:(index + 1) * BATCH], y[index * BATCH:(index + 1) * BATCH]

    ours, theirs = _model(), _model(real)
    theirs.set_weights(ours.get_weights())
    for model, module in ((ours, keras), (theirs, real)):
        model.compile(optimizer=module.optimizers.SGD(learning_rate=0.3), loss="binary_crossentropy")
    history = ours.fit(Batches(), epochs=3, verbose=0)
    expected = theirs.fit(Batches(), epochs=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], **KERAS_PARITY)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, **KERAS_PARITY)
