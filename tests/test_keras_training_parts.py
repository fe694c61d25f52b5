"""Tests of fastrnn.keras's optimizers, losses and metrics: Keras 3's formulas, gradients and errors.

The update rules and losses are checked against formulas written out again
here (no TensorFlow, no PyTorch), the loss gradients against float64 finite
differences, and, when the ``keras`` package is importable, against Keras
itself.
"""

import math

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, FastRNNError, ShapeError
from fastrnn.keras import losses, metrics, optimizers
from fastrnn.parameter import Parameter
from helpers import usable_keras
from tolerances import (CLIPPED_LOG, FINITE_DIFFERENCE_LOSS, FINITE_DIFFERENCE_STEP, FLOAT32_REORDERED,
                        FLOAT64_REORDERED, HAND_CHECKED, KERAS_LOSS_PARITY, KERAS_OPTIMIZER_PARITY)


# ---------------------------------------------------------------------------------------------
# optimizers: the formulas of Keras 3, written independently, in float64
# ---------------------------------------------------------------------------------------------
def _reference_run(kind, config, p0, grads):
    """Run ``len(grads)`` steps of Keras's rule on one float64 variable; returns its values after each step."""
    p = p0.copy()
    lr = config.get("learning_rate", {"SGD": 0.01}.get(kind, 0.001))
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    a = np.zeros_like(p)
    v_hat = np.zeros_like(p)
    history = []
    for t, g in enumerate(grads, start=1):
        g = g.copy()
        if config.get("clipnorm"):
            c = config["clipnorm"]
            g = g * c / max(np.linalg.norm(g), c)
        if config.get("clipvalue"):
            g = np.clip(g, -config["clipvalue"], config["clipvalue"])
        weight_decay = config.get("weight_decay", 0.004 if kind == "AdamW" else None)  # AdamW's default
        if weight_decay:
            p = p - p * weight_decay * lr
        if kind == "SGD":
            mu = config.get("momentum", 0.0)
            if mu:
                m = mu * m - lr * g
                p = p + (mu * m - lr * g if config.get("nesterov") else m)
            else:
                p = p - lr * g
        elif kind == "RMSprop":
            rho, eps, mu = config.get("rho", 0.9), config.get("epsilon", 1e-7), config.get("momentum", 0.0)
            v = rho * v + (1 - rho) * g ** 2
            if config.get("centered"):
                a = rho * a + (1 - rho) * g
                step = lr * g / np.sqrt(v - a ** 2 + eps)
            else:
                step = lr * g / np.sqrt(v + eps)
            if mu:
                m = mu * m + step
                p = p - m
            else:
                p = p - step
        elif kind in ("Adam", "AdamW"):
            b1, b2, eps = config.get("beta_1", 0.9), config.get("beta_2", 0.999), config.get("epsilon", 1e-7)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g ** 2
            denominator_v = v
            if config.get("amsgrad"):
                v_hat = np.maximum(v_hat, v)
                denominator_v = v_hat
            alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            p = p - alpha * m / (np.sqrt(denominator_v) + eps)
        history.append(p.copy())
    return history


OPTIMIZER_CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "clipnorm": 0.5}),
    ("SGD", {"learning_rate": 0.1, "clipvalue": 0.3, "weight_decay": 0.1}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5}),
    ("RMSprop", {"learning_rate": 0.01, "centered": True, "epsilon": 1e-3}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95, "amsgrad": True}),
    ("Adam", {"learning_rate": 0.01, "epsilon": 1e-2, "clipnorm": 1.0, "weight_decay": 0.01}),
    ("AdamW", {}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05, "amsgrad": True}),
]


def _gradient_sequence(shape, steps, seed):
    rng = np.random.default_rng(seed)
    # varying scale, so that clipping sometimes acts and sometimes does not
    return [rng.normal(size=shape) * rng.uniform(0.05, 3.0) for _ in range(steps)]


@pytest.mark.parametrize("kind, config", OPTIMIZER_CASES, ids=lambda c: str(c))
def test_optimizer_follows_keras_formulas_for_20_steps(kind, config):
    rng = np.random.default_rng(1)
    p0 = rng.normal(size=(3, 4))
    grads = _gradient_sequence(p0.shape, 20, seed=2)
    expected = _reference_run(kind, config, p0, grads)
    parameter = Parameter(p0.copy())
    optimizer = getattr(optimizers, kind)(**config)
    for step, (g, want) in enumerate(zip(grads, expected), start=1):
        optimizer.apply([g], [parameter])
        np.testing.assert_allclose(parameter.data, want, **FLOAT64_REORDERED,
                                   err_msg=f"{kind} {config} step {step}")
    assert optimizer.iterations == 20


def test_global_clipnorm_scales_all_gradients_together():
    a, b = Parameter(np.zeros(3)), Parameter(np.zeros(2))
    ga, gb = np.array([3.0, 0.0, 0.0]), np.array([0.0, 4.0])  # global norm 5
    optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0).apply([ga, gb], [a, b])
    np.testing.assert_allclose(a.data, -ga / 5, **FLOAT64_REORDERED)
    np.testing.assert_allclose(b.data, -gb / 5, **FLOAT64_REORDERED)
    # below the threshold, nothing changes
    c = Parameter(np.zeros(2))
    optimizers.SGD(learning_rate=1.0, global_clipnorm=10.0).apply([gb], [c])
    np.testing.assert_allclose(c.data, -gb, **FLOAT64_REORDERED)


def test_clipnorm_acts_per_variable():
    a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    optimizers.SGD(learning_rate=1.0, clipnorm=1.0).apply([np.array([3.0]), np.array([0.5])], [a, b])
    np.testing.assert_allclose([a.data[0], b.data[0]], [-1.0, -0.5], **FLOAT64_REORDERED)


def test_optimizer_skips_none_gradients_and_updates_plain_arrays():
    array = np.ones(3)
    untouched = Parameter(np.ones(2))
    optimizer = optimizers.SGD(learning_rate=0.5)
    optimizer.apply([np.ones(3), None], [array, untouched])
    np.testing.assert_array_equal(array, 0.5)
    np.testing.assert_array_equal(untouched.data, 1.0)


def test_optimizer_float32_stays_float32_in_place():
    data = np.ones((2, 2), dtype=np.float32)
    parameter = Parameter(data)
    optimizers.Adam().apply([np.full((2, 2), 0.3)], [parameter])
    assert parameter.data is data and data.dtype == np.float32
    # first Adam step moves each entry by lr * sign(g) up to epsilon
    np.testing.assert_allclose(data, 1 - 0.001, **FLOAT32_REORDERED)


def test_apply_gradients_spelling():
    parameter = Parameter(np.zeros(2))
    optimizers.SGD(learning_rate=1.0).apply_gradients([(np.array([1.0, 2.0]), parameter)])
    np.testing.assert_array_equal(parameter.data, [-1.0, -2.0])


def test_optimizer_slot_state_round_trip():
    p0 = np.random.default_rng(3).normal(size=5)
    grads = _gradient_sequence(p0.shape, 6, seed=4)
    whole = Parameter(p0.copy())
    optimizer = optimizers.Adam(learning_rate=0.01)
    for g in grads:
        optimizer.apply([g], [whole])
    first, second = Parameter(p0.copy()), None
    before = optimizers.Adam(learning_rate=0.01)
    for g in grads[:3]:
        before.apply([g], [first])
    second = Parameter(first.data.copy())
    after = optimizers.get(optimizers.serialize(before))
    after.set_slot_arrays([second], before.get_slot_arrays([first]), before.iterations)
    for g in grads[3:]:
        after.apply([g], [second])
    np.testing.assert_array_equal(second.data, whole.data)


def test_optimizers_get_names_and_errors():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    assert isinstance(optimizers.get("RMSprop"), optimizers.RMSprop)
    assert isinstance(optimizers.get("sgd"), optimizers.SGD)
    assert isinstance(optimizers.get("adamw"), optimizers.AdamW) and optimizers.AdamW().weight_decay == 0.004
    with pytest.raises(ArgumentError, match="AdamW needs a weight_decay"):
        optimizers.AdamW(weight_decay=None)
    sgd = optimizers.SGD(learning_rate=0.3)
    assert optimizers.get(sgd) is sgd
    with pytest.raises(ArgumentError, match=r"unknown optimizer 'adamx'.*adam, adamw, rmsprop, sgd"):
        optimizers.get("adamx")
    with pytest.raises(ArgumentError, match="at most one of clipnorm"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ArgumentError, match="learning_rate"):
        optimizers.Adam(learning_rate=-1)
    with pytest.raises(ArgumentError, match="beta_1"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ShapeError, match="shape"):
        optimizers.SGD().apply([np.ones(3)], [Parameter(np.ones(2))])
    with pytest.raises(ArgumentError, match="1 gradient"):
        optimizers.SGD().apply([np.ones(2)], [Parameter(np.ones(2)), Parameter(np.ones(2))])


def test_optimizer_defaults_are_keras_defaults():
    assert optimizers.SGD().learning_rate == 0.01
    rms = optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    adam = optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (0.001, 0.9, 0.999, 1e-7,
                                                                                        False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside TensorFlow
@pytest.mark.parametrize("kind, config", OPTIMIZER_CASES, ids=lambda c: str(c))
def test_optimizer_matches_keras_for_20_steps(kind, config):
    keras = usable_keras()
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [g.astype(np.float32) for g in _gradient_sequence(p0.shape, 20, seed=6)]
    variable = keras.Variable(p0.copy())
    theirs = getattr(keras.optimizers, kind)(**config)
    parameter = Parameter(p0.copy())
    ours = getattr(optimizers, kind)(**config)
    for step, g in enumerate(grads, start=1):
        theirs.apply([keras.ops.convert_to_tensor(g)], [variable])
        ours.apply([g], [parameter])
        np.testing.assert_allclose(parameter.data, keras.ops.convert_to_numpy(variable), **KERAS_OPTIMIZER_PARITY,
                                   err_msg=f"{kind} {config} step {step}")


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
def _finite_difference(loss, y_true, y_pred, mask=None, h=FINITE_DIFFERENCE_STEP):
    gradient = np.zeros_like(y_pred)
    for index in np.ndindex(y_pred.shape):
        plus, minus = y_pred.copy(), y_pred.copy()
        plus[index] += h
        minus[index] -= h
        gradient[index] = (loss(y_true, plus, mask) - loss(y_true, minus, mask)) / (2 * h)
    return gradient


def _probabilities(rng, shape):
    z = rng.normal(size=shape)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _loss_cases():
    rng = np.random.default_rng(7)
    cases = []
    for shape in [(5, 1), (4, 3), (2, 3, 4)]:
        y01 = rng.integers(0, 2, size=shape).astype(np.float64)
        cases.append((f"bce{shape}", losses.BinaryCrossentropy(), y01, rng.uniform(0.05, 0.95, size=shape)))
        cases.append((f"bce_logits{shape}", losses.BinaryCrossentropy(from_logits=True), y01,
                      rng.normal(size=shape) * 3))
        cases.append((f"bce_smooth{shape}", losses.BinaryCrossentropy(label_smoothing=0.2), y01,
                      rng.uniform(0.05, 0.95, size=shape)))
        cases.append((f"mse{shape}", losses.MeanSquaredError(), rng.normal(size=shape), rng.normal(size=shape)))
        cases.append((f"mae{shape}", losses.MeanAbsoluteError(), rng.normal(size=shape), rng.normal(size=shape)))
        if shape[-1] > 1:
            labels = rng.integers(0, shape[-1], size=shape[:-1])
            one_hot = np.eye(shape[-1])[labels]
            # unnormalised positive "probabilities" exercise the rescaling by the row sum
            raw = rng.uniform(0.1, 1.0, size=shape)
            cases.append((f"cce{shape}", losses.CategoricalCrossentropy(), one_hot, raw))
            cases.append((f"cce_soft{shape}", losses.CategoricalCrossentropy(label_smoothing=0.1),
                          _probabilities(rng, shape), _probabilities(rng, shape)))
            cases.append((f"cce_logits{shape}", losses.CategoricalCrossentropy(from_logits=True), one_hot,
                          rng.normal(size=shape) * 2))
            cases.append((f"sparse{shape}", losses.SparseCategoricalCrossentropy(), labels, raw))
            cases.append((f"sparse_logits{shape}", losses.SparseCategoricalCrossentropy(from_logits=True), labels,
                          rng.normal(size=shape) * 2))
    return cases


LOSS_CASES = _loss_cases()


@pytest.mark.parametrize("case", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_gradient_matches_finite_differences(case):
    _, loss, y_true, y_pred = case
    value, gradient = loss.value_and_gradient(y_true, y_pred)
    assert gradient.shape == y_pred.shape and gradient.dtype == np.float64
    assert value == pytest.approx(loss(y_true, y_pred))
    np.testing.assert_allclose(gradient, _finite_difference(loss, y_true, y_pred), **FINITE_DIFFERENCE_LOSS)


@pytest.mark.parametrize("case", [c for c in LOSS_CASES if len(c[3].shape) == 3], ids=lambda c: c[0])
def test_masked_loss_is_mean_over_unmasked_steps(case):
    _, loss, y_true, y_pred = case
    mask = np.array([[True, True, False], [True, False, False]])
    value, gradient = loss.value_and_gradient(y_true, y_pred, mask)
    per_step = [loss(y_true[b:b + 1, t:t + 1], y_pred[b:b + 1, t:t + 1]) for b, t in zip(*np.nonzero(mask))]
    assert value == pytest.approx(np.mean(per_step), rel=FLOAT64_REORDERED["rtol"])
    assert np.all(gradient[~mask] == 0)
    np.testing.assert_allclose(gradient, _finite_difference(loss, y_true, y_pred, mask), **FINITE_DIFFERENCE_LOSS)
    # everything masked: zero, as Keras's divide_no_nan gives
    assert loss(y_true, y_pred, np.zeros_like(mask)) == 0.0


@pytest.mark.parametrize("case", [c for c in LOSS_CASES if len(c[3].shape) == 3], ids=lambda c: c[0])
def test_sample_weights_multiply_and_the_divisor_counts_elements(case):
    _, loss, y_true, y_pred = case
    per_sample = np.array([0.5, 2.0])
    per_step = np.array([[1.0, 0.0, 3.0], [0.5, 0.5, 1.0]])
    unweighted = [[loss(y_true[b:b + 1, t:t + 1], y_pred[b:b + 1, t:t + 1]) for t in range(3)] for b in range(2)]
    assert loss(y_true, y_pred, sample_weight=per_sample) == pytest.approx(
        np.mean(np.array(unweighted) * per_sample[:, None]), rel=FLOAT64_REORDERED["rtol"])
    assert loss(y_true, y_pred, sample_weight=per_step) == pytest.approx(
        np.mean(np.array(unweighted) * per_step), rel=FLOAT64_REORDERED["rtol"])
    mask = np.array([[True, True, False], [True, False, False]])
    assert loss(y_true, y_pred, mask, per_sample) == pytest.approx(
        np.sum(np.array(unweighted) * per_sample[:, None] * mask) / 3, rel=FLOAT64_REORDERED["rtol"])
    weighted = lambda t, p, m: loss(t, p, m, per_step)  # noqa: E731
    np.testing.assert_allclose(loss.gradient(y_true, y_pred, mask, per_step),
                               _finite_difference(weighted, y_true, y_pred, mask), **FINITE_DIFFERENCE_LOSS)
    with pytest.raises(ShapeError, match="sample_weight"):
        loss(y_true, y_pred, sample_weight=np.ones(3))


def test_sequence_loss_is_mean_over_batch_and_steps():
    rng = np.random.default_rng(8)
    y_pred = rng.normal(size=(3, 4, 2))
    y_true = rng.normal(size=(3, 4, 2))
    assert losses.MeanSquaredError()(y_true, y_pred) == pytest.approx(np.mean((y_pred - y_true) ** 2), rel=FLOAT64_REORDERED["rtol"])


def test_binary_crossentropy_hand_values_and_clipping():
    bce = losses.BinaryCrossentropy()
    y, p = np.array([[1.0], [0.0]]), np.array([[0.8], [0.4]])
    assert bce(y, p) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, rel=FLOAT64_REORDERED["rtol"])
    # y of shape (B,) against predictions (B, 1), as Keras allows
    assert bce(np.array([1.0, 0.0]), p) == pytest.approx(bce(y, p), rel=HAND_CHECKED["rtol"])
    # exact 0/1 predictions are clipped to [1e-7, 1 - 1e-7]: finite loss, zero gradient outside the clip
    value, gradient = bce.value_and_gradient(np.array([[1.0]]), np.array([[0.0]]))
    assert value == pytest.approx(-math.log(1e-7), rel=CLIPPED_LOG["rtol"])
    assert gradient[0, 0] == 0.0


def test_categorical_crossentropy_hand_value_with_rescaling():
    cce = losses.CategoricalCrossentropy()
    # rows are rescaled to sum to one before the log
    assert cce(np.array([[0, 1.0]]), np.array([[1.0, 3.0]])) == pytest.approx(-math.log(0.75), rel=FLOAT64_REORDERED["rtol"])
    sparse = losses.SparseCategoricalCrossentropy()
    assert sparse(np.array([1]), np.array([[1.0, 3.0]])) == pytest.approx(-math.log(0.75), rel=FLOAT64_REORDERED["rtol"])
    assert sparse(np.array([[1]]), np.array([[1.0, 3.0]])) == pytest.approx(-math.log(0.75), rel=FLOAT64_REORDERED["rtol"])


def test_loss_computes_in_prediction_dtype():
    value, gradient = losses.BinaryCrossentropy().value_and_gradient(np.ones((4, 1)),
                                                                     np.full((4, 1), 0.7, dtype=np.float32))
    assert gradient.dtype == np.float32 and isinstance(value, float)


def test_sparse_labels_out_of_range_name_value_and_range():
    sparse = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ArgumentError, match=r"label 3 at index \(1,\).*\[0, 2\].*3 classes"):
        sparse(np.array([0, 3]), np.full((2, 3), 1 / 3))
    with pytest.raises(ArgumentError, match=r"label -1"):
        sparse(np.array([-1, 0]), np.full((2, 3), 1 / 3))
    with pytest.raises(FastRNNError, match="whole numbers"):
        sparse(np.array([0.5, 1.0]), np.full((2, 3), 1 / 3))
    with pytest.raises(ShapeError, match="labels must have shape"):
        sparse(np.zeros((2, 2), dtype=int), np.full((2, 3), 1 / 3))


def test_loss_shape_errors_and_names():
    with pytest.raises(ShapeError, match="SparseCategoricalCrossentropy"):
        losses.CategoricalCrossentropy()(np.array([0, 1]), np.full((2, 3), 1 / 3))
    with pytest.raises(ShapeError, match="shape"):
        losses.MeanSquaredError()(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ArgumentError, match=r"unknown loss 'hinge_loss'.*binary_crossentropy.*mse"):
        losses.get("hinge_loss")
    with pytest.raises(FastRNNError, match="gradient"):
        losses.get(lambda y_true, y_pred: 0.0)
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("mean_squared_error"), losses.MeanSquaredError)
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    restored = losses.get(losses.serialize(losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)))
    assert restored.from_logits and restored.label_smoothing == 0.1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside TensorFlow
@pytest.mark.parametrize("case", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_matches_keras(case):
    keras = usable_keras()
    _, loss, y_true, y_pred = case
    theirs = getattr(keras.losses, type(loss).__name__)(**{k: v for k, v in loss.get_config().items()
                                                           if k != "name"})
    y_true, y_pred = y_true.astype(np.float32), y_pred.astype(np.float32)
    expected = float(keras.ops.convert_to_numpy(theirs(y_true, y_pred)))
    assert loss(y_true, y_pred) == pytest.approx(expected, rel=KERAS_LOSS_PARITY["rtol"], abs=KERAS_LOSS_PARITY["atol"])
    # one weight per element of the loss (Keras itself does not broadcast (B,) weights over steps)
    weight = np.linspace(0.5, 2.0, y_pred[..., 0].size).reshape(y_pred.shape[:-1]).astype(np.float32)
    expected = float(keras.ops.convert_to_numpy(theirs(y_true, y_pred, sample_weight=weight)))
    assert loss(y_true, y_pred, sample_weight=weight) == pytest.approx(expected, rel=KERAS_LOSS_PARITY["rtol"], abs=KERAS_LOSS_PARITY["atol"])


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def test_accuracy_resolution_follows_loss_and_shapes():
    bce = losses.BinaryCrossentropy()
    assert isinstance(metrics.get("accuracy", np.zeros(4), np.zeros((4, 1)), bce), metrics.BinaryAccuracy)
    assert isinstance(metrics.get("acc", np.zeros(4), np.zeros((4, 3))), metrics.SparseCategoricalAccuracy)
    assert isinstance(metrics.get("accuracy", np.zeros((4, 3)), np.zeros((4, 3))), metrics.CategoricalAccuracy)
    assert isinstance(metrics.get("accuracy", np.zeros((4, 3)), np.zeros((4, 3)), bce), metrics.BinaryAccuracy)
    assert metrics.get("acc", np.zeros(4), np.zeros((4, 1))).name == "acc"


def test_accuracy_values_over_batches_and_sequences():
    binary = metrics.BinaryAccuracy()
    binary.update_state(np.array([1, 0, 1]), np.array([[0.9], [0.2], [0.4]]))
    binary.update_state(np.array([0]), np.array([[0.6]]))
    assert binary.result() == pytest.approx(0.5)  # 2 right of 4, not the mean of the batch means
    sparse = metrics.SparseCategoricalAccuracy()
    y_pred = np.zeros((2, 3, 4))
    y_pred[..., 2] = 1
    labels = np.array([[2, 2, 0], [1, 2, 2]])
    sparse.update_state(labels, y_pred)
    assert sparse.result() == pytest.approx(4 / 6)
    masked = metrics.SparseCategoricalAccuracy()
    masked.update_state(labels, y_pred, mask=np.array([[True, True, False], [False, True, True]]))
    assert masked.result() == pytest.approx(1.0)
    categorical = metrics.CategoricalAccuracy()
    categorical.update_state(np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 2, 2]])
    assert categorical.result() == pytest.approx(2 / 3)
    categorical.reset_state()
    assert categorical.result() == 0.0


def test_metric_errors():
    with pytest.raises(ArgumentError, match=r"unknown metric 'f1'.*accuracy"):
        metrics.check("f1")
    with pytest.raises(ArgumentError, match="y_pred"):
        metrics.get("accuracy")
