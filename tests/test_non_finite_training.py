"""Training never writes NaN or infinity into a model (issue 11 item 2).

Keras ``fit``/``train_on_batch`` refuse non-finite data up front, naming the
array and its first bad index; a step whose loss, gradients or update are not
finite is not applied; ``TerminateOnNaN`` stops training with the last good
weights. The nn optimizers refuse a whole step when one gradient is not finite.
"""

import warnings

import numpy as np
import pytest

from fastrnn import keras, nn, optim
from fastrnn.exceptions import NonFiniteError
from fastrnn.keras import callbacks, layers


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5, 3)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)


def _model(optimizer="sgd"):
    model = keras.Sequential([layers.LSTM(4, seed=0), layers.Dense(1, seed=1)])
    model.compile(optimizer=optimizer, loss="mse")
    model.build((None, 5, 3))
    return model


def _same(before, after):
    return all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("where", ["x", "y", "sample_weight"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_refuses_non_finite_data_and_keeps_the_weights(where, bad):
    x, y = _data()
    sample_weight = np.ones(len(x), np.float32)
    arrays = {"x": x, "y": y, "sample_weight": sample_weight}
    arrays[where][17] = bad
    model = _model()
    before = model.get_weights()
    with pytest.raises(NonFiniteError, match=rf"{where} has a non-finite value at index \(17"):
        model.fit(x, y, sample_weight=sample_weight, batch_size=8, epochs=1, verbose=0)
    assert _same(before, model.get_weights())
    with pytest.raises(NonFiniteError, match=where):
        model.train_on_batch(x, y, sample_weight=sample_weight)
    assert _same(before, model.get_weights())


def test_integer_token_input_is_accepted():
    model = keras.Sequential([layers.Embedding(10, 3, seed=0), layers.LSTM(2, seed=1), layers.Dense(1, seed=2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).integers(0, 10, size=(8, 4))
    model.fit(x, np.zeros((8, 1), np.float32), epochs=1, verbose=0)


def _overflowing(model):
    """Targets so large that the loss overflows to inf on the first batch."""
    x, y = _data()
    return x, y * np.float32(1e30)


def test_a_step_with_an_infinite_loss_is_not_applied():
    model = _model()
    x, y = _overflowing(model)
    before = model.get_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NonFiniteError, match="not applied"):
            model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert _same(before, model.get_weights())


def test_an_update_that_overflows_is_undone():
    # A learning rate that sends the weights towards infinity: the step that would
    # make them non-finite is refused and the weights stay those before it.
    model = _model(keras.optimizers.SGD(learning_rate=1e38))
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(20):
            before = model.get_weights()
            try:
                model.train_on_batch(x, y)
            except NonFiniteError as error:
                assert "not applied" in str(error)
                break
        else:
            pytest.fail("the updates never overflowed")
    assert _same(before, model.get_weights())
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("optimizer", [keras.optimizers.Adam, keras.optimizers.RMSprop,
                                       lambda **kw: keras.optimizers.SGD(momentum=0.9, **kw)],
                         ids=["adam", "rmsprop", "sgd-momentum"])
@pytest.mark.parametrize("steps_before", [0, 2])
def test_an_undone_step_leaves_the_optimizer_state_as_it_was(optimizer, steps_before):
    # Finite loss and gradients, but a learning rate that overflows float32 makes the
    # update infinite. The undone step must not move the optimizer either: its iteration
    # count and slots (moments, momentum) are those before, and none are left behind
    # when the step would have been the first.
    model = _model(optimizer(learning_rate=1e-3))
    x, y = _data()
    for _ in range(steps_before):
        model.train_on_batch(x, y)
    params = model.trainable_weights
    iterations = model.optimizer.iterations
    slots = model.optimizer.get_slot_arrays(params)
    model.optimizer.learning_rate = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NonFiniteError, match="update made .* non-finite"):
            model.train_on_batch(x, y)
    assert model.optimizer.iterations == iterations == steps_before
    after = model.optimizer.get_slot_arrays(params)
    assert [sorted(s) for s in after] == [sorted(s) for s in slots]
    assert any(after) == (steps_before > 0)
    for saved, now in zip(slots, after):
        for name in saved:
            np.testing.assert_array_equal(now[name], saved[name])


def test_a_nan_gradient_is_not_applied(monkeypatch):
    model = _model()
    x, y = _data()
    before = model.get_weights()
    loss = model.loss
    real = type(loss).value_and_gradient

    def nan_gradient(self, *args, **kwargs):
        value, grad = real(self, *args, **kwargs)
        grad = np.array(grad, copy=True)
        grad.flat[0] = np.nan
        return value, grad

    monkeypatch.setattr(type(loss), "value_and_gradient", nan_gradient)
    with pytest.raises(NonFiniteError, match="gradient .* not finite; the step was not applied"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert _same(before, model.get_weights())


def test_terminate_on_nan_stops_with_the_last_good_weights(capsys):
    x, y = _data()
    model = _model()
    y_bad = y.copy()
    # Finite data whose third batch overflows the loss: two good steps, then a stop.
    y_bad[16:24] = np.float32(3e38)
    reference = _model()
    reference.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        history = model.fit(x, y_bad, batch_size=8, epochs=3, verbose=0, shuffle=False,
                            callbacks=[callbacks.TerminateOnNaN()])
    assert model.stop_training
    assert len(history.history["loss"]) == 1
    assert _same(reference.get_weights(), model.get_weights())
    assert "Batch 2" in capsys.readouterr().out


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: optim.Adam(p, lr=0.1),
    lambda p: optim.RMSprop(p, lr=0.1),
])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nn_optimizers_refuse_a_step_with_a_non_finite_gradient(make, bad):
    module = nn.LSTM(3, 4)
    params = list(module.parameters())
    optimizer = make(params)
    for param in params:
        param.grad = np.ones_like(param.data)
    params[2].grad.flat[1] = bad
    before = [p.data.copy() for p in params]
    with pytest.raises(NonFiniteError, match="parameter 2 of parameter group 0"):
        optimizer.step()
    assert _same(before, [p.data for p in params])
    assert optimizer.state == {} or all(not s for s in optimizer.state.values())
    params[2].grad.flat[1] = 0.0
    optimizer.step()  # a finite step then goes through
    assert not _same(before, [p.data for p in params])
