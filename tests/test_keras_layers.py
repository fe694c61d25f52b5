"""fastrnn.keras layers on their own (no TensorFlow): gradients, masks, errors, parameter counts.

Every layer's ``backward`` is checked against central finite differences in
float64 (with the reference ``python`` backend, so that the checks test the
layers' own maps and not a kernel's speed tricks); masks against their
definition; error messages for what a user can get wrong; parameter counts
against the formulas of docs/weight-layouts.md ("Parameter counts").
"""

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.interop.keras import (
    keras_grads_to_torch,
    keras_to_torch,
    torch_grads_to_keras,
    torch_to_keras,
)
from fastrnn.keras import activations, initializers, layers
from helpers import central_differences
from tolerances import (FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, FLOAT64_REORDERED, HAND_CHECKED,
                        ORTHONORMAL, TORCH_PARITY)

F64 = dict(dtype="float64")
RNN64 = dict(dtype="float64", backend="python")
FD_TOL = FINITE_DIFFERENCE
B, T, D, H = 3, 6, 3, 4


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def random_input(seed=0, shape=(B, T, D)):
    return np.random.default_rng(seed).normal(size=shape)


def holes_mask():
    """Masked steps at the end, in the middle, at the start, and a row with no valid step."""
    return np.array([[1, 1, 0, 1, 0, 0],
                     [0, 1, 1, 0, 1, 1],
                     [0, 0, 0, 0, 0, 0]], dtype=bool)


def check_gradients(layer, x, mask=None, initial_state=None, reseed=None, seed=0):
    """Compare ``layer.backward`` with finite differences for every weight, the input and the
    initial states; the loss is ``sum(output * R)`` over every output array."""
    kwargs = {} if mask is None else {"mask": mask}
    if initial_state is not None:
        kwargs["initial_state"] = initial_state

    def forward():
        if reseed is not None:
            reseed()
        return layer(x, training=True, **kwargs)

    if not layer.built:
        layer(x, **kwargs)  # draw the initial weights before any reseeding
    outputs = forward()
    rng = np.random.default_rng(seed + 1)
    weights = [rng.normal(size=np.shape(o)) for o in as_list(outputs)]
    for parameter in layer.weights:
        parameter.grad = None
    dx = layer.backward(weights if isinstance(outputs, list) else weights[0])

    def loss():
        # central_differences writes into the weights' arrays: say so, as code writing into
        # ``data`` must (recurrent layers keep their weights packed, Parameter.version)
        for parameter in layer.weights:
            parameter.mark_changed()
        return sum(float(np.sum(o * w)) for o, w in zip(as_list(forward()), weights))

    targets = [(f"weight {i} {p.shape}", p.data, p.grad) for i, p in enumerate(layer.weights)]
    if np.asarray(x).dtype.kind == "f":
        targets.append(("input", x, dx))
    if initial_state is not None:
        for i, state in enumerate(initial_state):
            targets.append((f"initial state {i}", state, layer.grad_initial_state[i]))
    for name, array, analytic in targets:
        assert analytic is not None, f"no gradient for {name}"
        np.testing.assert_allclose(analytic, central_differences(loss, array, FINITE_DIFFERENCE_STEP), **FD_TOL,
                                   err_msg=f"{type(layer).__name__}: gradient of {name}")
    return outputs


# --- core layers ------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax", None])
@pytest.mark.parametrize("shape", [(B, D), (B, T, D)])
def test_dense_gradients(activation, shape):
    check_gradients(layers.Dense(5, activation=activation, bias_initializer="uniform", seed=1, **F64),
                    random_input(2, shape))


def test_dense_without_bias():
    layer = layers.Dense(2, use_bias=False, **F64)
    check_gradients(layer, random_input(3, (B, D)))
    assert [w.shape for w in layer.get_weights()] == [(D, 2)]


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_activation_layer_gradients(activation):
    check_gradients(layers.Activation(activation, **F64), random_input(4))


def test_embedding_gradients_and_mask():
    layer = layers.Embedding(7, 3, mask_zero=True, seed=0, **F64)
    tokens = np.array([[1, 2, 2, 0], [6, 0, 3, 1]])
    check_gradients(layer, tokens)
    assert layer.backward(np.ones((2, 4, 3))) is None
    np.testing.assert_array_equal(layer.compute_mask(tokens), tokens != 0)
    assert layers.Embedding(7, 3).compute_mask(tokens) is None
    # repeated indices add up
    layer.embeddings.grad = None
    layer(tokens, training=True)
    layer.backward(np.ones((2, 4, 3)))
    np.testing.assert_array_equal(layer.embeddings.grad[:, 0], [2, 2, 2, 1, 0, 0, 1])


def test_embedding_errors():
    layer = layers.Embedding(5, 2)
    with pytest.raises(ArgumentError, match=r"index 7 .*input_dim=5"):
        layer(np.array([[1, 7]]))
    with pytest.raises(ArgumentError, match=r"index -1"):
        layer(np.array([[-1, 2]]))
    with pytest.raises(DTypeError, match="integer"):
        layer(np.array([[0.5, 1.0]]))
    np.testing.assert_array_equal(layer(np.array([[1.0, 2.0]])), layer(np.array([[1, 2]])))


def test_dropout_is_inverted_and_training_only():
    layer = layers.Dropout(0.25, seed=0, **F64)
    x = np.ones((200, 50))
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(layer.backward(np.full_like(x, 2.0)), 2 * y)


def test_dropout_gradients_and_noise_shape():
    layer = layers.Dropout(0.5, noise_shape=(None, 1, None), **F64)

    def reseed():
        layer.rng = np.random.default_rng(3)

    y = check_gradients(layer, random_input(5), reseed=reseed)
    x = random_input(5)
    scale = y / x
    np.testing.assert_allclose(scale, np.broadcast_to(scale[:, :1], scale.shape))
    with pytest.raises(ArgumentError, match=r"rate must be a number in \[0, 1\)"):
        layers.Dropout(1.0)


def test_masking_layer():
    x = random_input(6)
    x[0, 2] = 0.0
    x[1, 4:] = 0.0
    layer = layers.Masking(0.0, **F64)
    expected_mask = np.ones((B, T), bool)
    expected_mask[0, 2] = False
    expected_mask[1, 4:] = False
    np.testing.assert_array_equal(layer.compute_mask(x), expected_mask)
    y = layer(x, training=True)
    np.testing.assert_array_equal(y, x)
    # the masked steps sit on the layer's kink: as in Keras, no gradient flows to them
    dy = random_input(7)
    np.testing.assert_array_equal(layer.backward(dy), dy * expected_mask[..., None])
    x[~expected_mask] = 1.0
    check_gradients(layer, x)


def test_time_distributed_dense_gradients():
    layer = layers.TimeDistributed(layers.Dense(4, activation="softmax", **F64), **F64)
    y = check_gradients(layer, random_input(7))
    assert y.shape == (B, T, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0)
    assert layer.count_params() == D * 4 + 4
    assert [w.shape for w in layer.get_weights()] == [(D, 4), (4,)]


def test_dense_matches_time_distributed_dense():
    x = random_input(8)
    dense = layers.Dense(3, seed=1, **F64)
    wrapped = layers.TimeDistributed(layers.Dense(3, **F64))
    dense(x)
    wrapped(x)
    wrapped.set_weights(dense.get_weights())
    np.testing.assert_allclose(dense(x), wrapped(x), **HAND_CHECKED)


# --- recurrent layers: gradients --------------------------------------------------------------
CELLS = {
    "SimpleRNN": (layers.SimpleRNN, {}),
    "SimpleRNN-relu": (layers.SimpleRNN, {"activation": "relu"}),
    "LSTM": (layers.LSTM, {}),
    "GRU": (layers.GRU, {}),
    "GRU-reset_before": (layers.GRU, {"reset_after": False}),
}


def recurrent(cell, **options):
    cls, kwargs = CELLS[cell]
    layer = cls(H, bias_initializer="uniform", seed=11, **kwargs, **options, **RNN64)
    return layer


def initial_states(cell, seed=9):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(B, H)) * 0.5 for _ in range(2 if cell == "LSTM" else 1)]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_gradients(cell, return_sequences, go_backwards):
    layer = recurrent(cell, return_sequences=return_sequences, return_state=True,
                      go_backwards=go_backwards)
    check_gradients(layer, random_input(10), initial_state=initial_states(cell))


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_recurrent_gradients_with_holes(cell, go_backwards, zero_output_for_mask):
    layer = recurrent(cell, return_sequences=True, return_state=True, go_backwards=go_backwards,
                      zero_output_for_mask=zero_output_for_mask)
    check_gradients(layer, random_input(11), mask=holes_mask(), initial_state=initial_states(cell))


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_gradients_last_output_with_holes(cell):
    check_gradients(recurrent(cell), random_input(12), mask=holes_mask())


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_gradients_with_input_dropout(cell):
    layer = recurrent(cell, dropout=0.4, return_sequences=True)

    def reseed():
        layer.rng = np.random.default_rng(5)

    check_gradients(layer, random_input(13), reseed=reseed, mask=holes_mask())


def test_recurrent_gradients_without_bias():
    for cell in CELLS:
        layer = recurrent(cell, use_bias=False, return_sequences=True)
        check_gradients(layer, random_input(14))
        assert len(layer.get_weights()) == 2


# --- recurrent layers: masks -------------------------------------------------------------------
@pytest.mark.parametrize("cell", list(CELLS))
def test_mask_equals_running_valid_steps_alone(cell):
    """With holes, each row's final state is that of its valid steps run alone; the output
    repeats the previous output at masked steps, zeros before the first valid one."""
    layer = recurrent(cell, return_sequences=True, return_state=True)
    x, mask = random_input(15), holes_mask()
    output, *states = layer(x, mask=mask)
    for b in range(B):
        valid = np.nonzero(mask[b])[0]
        if len(valid) == 0:
            np.testing.assert_array_equal(output[b], 0)
            for s in states:
                np.testing.assert_array_equal(s[b], 0)
            continue
        alone, *alone_states = layer(x[b:b + 1, valid])
        for s, a in zip(states, alone_states):
            np.testing.assert_allclose(s[b], a[0], **FLOAT64_REORDERED)
        for t in range(T):
            seen = np.count_nonzero(mask[b, :t + 1])
            expected = np.zeros(H) if seen == 0 else alone[0, seen - 1]
            np.testing.assert_allclose(output[b, t], expected, **FLOAT64_REORDERED)
    last = recurrent(cell)
    last(x)
    last.set_weights(layer.get_weights())
    np.testing.assert_allclose(last(x, mask=mask), output[:, -1], **FLOAT64_REORDERED)


def test_zero_output_for_mask_and_masked_inputs_ignored():
    layer = recurrent("GRU", return_sequences=True, zero_output_for_mask=True)
    x, mask = random_input(16), holes_mask()
    y = layer(x, mask=mask)
    np.testing.assert_array_equal(y[~mask], 0)
    junk = x.copy()
    junk[~mask] = 1e3
    np.testing.assert_array_equal(layer(junk, mask=mask), y)


def test_right_padded_mask_matches_unmasked_prefix():
    layer = recurrent("LSTM", return_state=True)
    x = random_input(17)
    mask = np.ones((B, T), bool)
    mask[:, 4:] = False
    _, h, c = layer(x, mask=mask)
    _, h4, c4 = layer(x[:, :4])
    np.testing.assert_allclose(h, h4, **FLOAT64_REORDERED)
    np.testing.assert_allclose(c, c4, **FLOAT64_REORDERED)


def test_go_backwards_reverses_processing():
    layer = recurrent("GRU", return_sequences=True, go_backwards=True)
    x = random_input(18)
    forward = recurrent("GRU", return_sequences=True)
    layer(x)
    forward(x)
    forward.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(x), forward(x[:, ::-1]), **FLOAT64_REORDERED)


def test_compute_mask_propagation():
    mask = holes_mask()
    assert recurrent("LSTM", return_sequences=True).compute_mask(None, mask) is mask
    assert recurrent("LSTM").compute_mask(None, mask) is None
    assert layers.Dense(2).compute_mask(None, mask) is mask


def test_mask_to_a_layer_without_mask_support():
    with pytest.raises(ArgumentError, match="cannot take a mask"):
        layers.Embedding(4, 2)(np.array([[1, 2]]), mask=np.array([[True, False]]))


def test_stateful_carries_state_between_calls():
    x = random_input(19)
    whole = recurrent("LSTM", return_sequences=True)
    chunks = recurrent("LSTM", return_sequences=True, stateful=True)
    whole(x)
    chunks(x)
    chunks.set_weights(whole.get_weights())
    chunks.reset_states()
    y = np.concatenate([chunks(x[:, :2]), chunks(x[:, 2:])], axis=1)
    np.testing.assert_allclose(y, whole(x), **FLOAT64_REORDERED)
    chunks.reset_states()
    np.testing.assert_allclose(chunks(x[:, :2]), whole(x)[:, :2], **FLOAT64_REORDERED)


def test_input_dropout_uses_one_mask_per_sequence():
    layer = recurrent("SimpleRNN", dropout=0.5, return_sequences=True)
    x = random_input(20)
    y = layer(x, training=True)
    drop = layer._tape["drop"]
    assert drop.shape == (B, D)
    assert set(np.unique(drop)) <= {0.0, 2.0}
    np.testing.assert_allclose(y, layer(x * drop[:, None, :]), **FLOAT64_REORDERED)
    np.testing.assert_array_equal(layer(x), layer(x, training=False))


# --- Bidirectional ----------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU-reset_before"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_gradients(cell, merge_mode, return_sequences):
    layer = layers.Bidirectional(recurrent(cell, return_sequences=return_sequences, return_state=True),
                                 merge_mode=merge_mode, **F64)
    check_gradients(layer, random_input(21), mask=holes_mask(),
                    initial_state=initial_states(cell, 1) + initial_states(cell, 2))


def test_bidirectional_masked_outputs_are_zero_and_directions_line_up():
    layer = layers.Bidirectional(recurrent("GRU", return_sequences=True), merge_mode=None, **F64)
    x, mask = random_input(22), holes_mask()
    y_f, y_b = layer(x, mask=mask)
    np.testing.assert_array_equal(y_f[~mask], 0)
    np.testing.assert_array_equal(y_b[~mask], 0)
    # the backward half at t has seen steps t..T-1: at a row's first valid step it equals
    # the backward layer's final state
    backward = layer.backward_layer
    backward.return_state = True
    backward.zero_output_for_mask = False
    _, h = backward(x, mask=mask)
    backward.return_state, backward.zero_output_for_mask = False, True
    for b in range(2):
        first = np.nonzero(mask[b])[0][0]
        np.testing.assert_allclose(y_b[b, first], h[b], **FLOAT64_REORDERED)


def test_bidirectional_weights_and_params():
    layer = layers.Bidirectional(layers.LSTM(H), **F64)
    layer(random_input(23))
    assert layer.count_params() == 2 * (4 * H * (D + H) + 4 * H)
    shapes = [w.shape for w in layer.get_weights()]
    assert shapes == [(D, 4 * H), (H, 4 * H), (4 * H,)] * 2
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards
    assert layer.backward_layer.name.startswith("backward_")
    # the two directions start from different weights
    assert not np.array_equal(layer.get_weights()[0], layer.get_weights()[3])


def test_bidirectional_errors():
    with pytest.raises(ArgumentError, match="merge_mode"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ArgumentError, match="go_backwards=True"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2))
    with pytest.raises(ArgumentError, match="return_sequences"):
        layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2, go_backwards=True,
                                                                          return_sequences=True))
    with pytest.raises(ArgumentError, match="SimpleRNN, LSTM or GRU"):
        layers.Bidirectional(layers.Dense(2))


# --- errors ----------------------------------------------------------------------------------------
def test_unsupported_activations():
    with pytest.raises(ArgumentError, match=r"activation='tanh' or 'relu' only.*'sigmoid'"):
        layers.SimpleRNN(2, activation="sigmoid")
    with pytest.raises(ArgumentError, match=r"LSTM supports activation='tanh' only"):
        layers.LSTM(2, activation="relu")
    with pytest.raises(ArgumentError, match=r"recurrent_activation='sigmoid' only"):
        layers.GRU(2, recurrent_activation="tanh")
    with pytest.raises(ArgumentError, match="recurrent_dropout=0.2 is not supported"):
        layers.LSTM(2, recurrent_dropout=0.2)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ArgumentError, match="linear, relu, sigmoid, softmax, tanh"):
        activations.get("swish")
    with pytest.raises(ArgumentError, match="valid names"):
        layers.Dense(2, activation="gelu")


def test_unknown_initializer():
    with pytest.raises(ArgumentError, match="glorot_uniform.*orthogonal"):
        initializers.get("he_magic")


def test_shape_errors():
    layer = layers.LSTM(3)
    layer(np.zeros((2, 4, 5)))
    with pytest.raises(ShapeError, match="5 features"):
        layer(np.zeros((2, 4, 6)))
    with pytest.raises(ShapeError, match="3 axes"):
        layer(np.zeros((2, 5)))
    with pytest.raises(ShapeError, match=r"mask must have shape \(2, 4\)"):
        layer(np.zeros((2, 4, 5)), mask=np.ones((2, 3), bool))
    with pytest.raises(ShapeError, match=r"initial state must have shape \(2, 3\)"):
        layer(np.zeros((2, 4, 5)), initial_state=[np.zeros((2, 2)), np.zeros((2, 3))])
    with pytest.raises(ArgumentError, match="2 initial state"):
        layer(np.zeros((2, 4, 5)), initial_state=[np.zeros((2, 3))])
    with pytest.raises(ShapeError, match="'kernel' must have shape"):
        layer.set_weights([np.zeros((4, 12)), np.zeros((3, 12)), np.zeros(12)])


def test_backward_needs_training_forward():
    layer = layers.GRU(2)
    layer(np.zeros((1, 3, 2)))
    with pytest.raises(ArgumentError, match="training=True"):
        layer.backward(np.zeros((1, 2)))
    dense = layers.Dense(2)
    dense(np.zeros((1, 2)))
    with pytest.raises(ArgumentError, match="training=True"):
        dense.backward(np.zeros((1, 2)))


def test_argument_errors():
    with pytest.raises(ArgumentError, match="units must be a positive integer"):
        layers.LSTM(0)
    with pytest.raises(ArgumentError, match="dropout must be a number"):
        layers.GRU(2, dropout=1.5)
    with pytest.raises(ArgumentError, match="input_dim must be a positive integer"):
        layers.Embedding(0, 3)


# --- parameter counts (docs/weight-layouts.md, "Parameter counts") --------------------------------
def counts_of(layer, D_=8):
    layer(np.zeros((1, 2, D_)))
    return layer.count_params()


@pytest.mark.parametrize("D_, H_", [(8, 4), (3, 7), (1, 1)])
def test_parameter_counts(D_, H_):
    x = np.zeros((1, 2, D_))
    counts = {
        layers.SimpleRNN(H_): H_ * (H_ + D_) + H_,
        layers.LSTM(H_): 4 * H_ * (D_ + H_) + 4 * H_,
        layers.GRU(H_): 3 * H_ * (D_ + H_) + 6 * H_,
        layers.GRU(H_, reset_after=False): 3 * H_ * (D_ + H_) + 3 * H_,
        layers.Bidirectional(layers.GRU(H_)): 2 * (3 * H_ * (D_ + H_) + 6 * H_),
        layers.Dense(H_): D_ * H_ + H_,
    }
    for layer, expected in counts.items():
        layer(x)
        assert layer.count_params() == expected, type(layer).__name__
    if (D_, H_) == (8, 4):  # the worked examples of docs/weight-layouts.md
        assert [counts_of(layers.LSTM(4)), counts_of(layers.GRU(4)),
                counts_of(layers.GRU(4, reset_after=False))] == [208, 168, 156]
    embedding = layers.Embedding(10, H_)
    embedding(np.zeros((1, 2), int))
    assert embedding.count_params() == 10 * H_


# --- initialisers -------------------------------------------------------------------------------
def test_initializers():
    rng = np.random.default_rng(0)
    w = initializers.get("glorot_uniform")((30, 40), "float64", rng)
    limit = np.sqrt(6 / 70)
    assert w.dtype == np.float64 and np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    q = initializers.get("orthogonal")((5, 20), "float64", rng)
    np.testing.assert_allclose(q @ q.T, np.eye(5), **ORTHONORMAL[np.dtype(np.float64)])
    q = initializers.Orthogonal(gain=2.0)((20, 5), "float64", rng)
    np.testing.assert_allclose(q.T @ q, 4 * np.eye(5), **ORTHONORMAL[np.dtype(np.float64)])
    u = initializers.get("uniform")((1000,), "float32", rng)
    assert u.dtype == np.float32 and np.abs(u).max() <= 0.05
    n = initializers.get("normal")((20000,), "float64", rng)
    assert abs(n.std() - 0.05) < 0.002
    np.testing.assert_array_equal(initializers.get("zeros")((2, 3)), 0)
    np.testing.assert_array_equal(initializers.get("ones")((2,)), 1)
    a = initializers.get("glorot_uniform")((3, 3), rng=7)
    np.testing.assert_array_equal(a, initializers.get("glorot_uniform")((3, 3), rng=7))


def test_layer_initial_weights():
    lstm = layers.LSTM(3, seed=0)
    lstm(np.zeros((1, 2, 4)))
    np.testing.assert_array_equal(lstm.bias.data, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    r = lstm.recurrent_kernel.data.astype(np.float64)
    np.testing.assert_allclose(r @ r.T, np.eye(3), **ORTHONORMAL[np.dtype(np.float32)])
    no_forget = layers.LSTM(3, unit_forget_bias=False)
    no_forget(np.zeros((1, 2, 4)))
    np.testing.assert_array_equal(no_forget.bias.data, 0)
    again = layers.LSTM(3, seed=0)
    again(np.zeros((1, 2, 4)))
    for a, b in zip(lstm.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    gru = layers.GRU(3)
    gru(np.zeros((1, 2, 4)))
    assert gru.bias.shape == (2, 9)


# --- interop: Keras <-> PyTorch packing ---------------------------------------------------------------
INTEROP = [("SimpleRNN", True), ("LSTM", True), ("GRU", True), ("GRU", False)]


def keras_arrays(cell, reset_after, rng):
    G = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[cell]
    bias_shape = (2, G * H) if cell == "GRU" and reset_after else (G * H,)
    return [rng.normal(size=(D, G * H)), rng.normal(size=(H, G * H)), rng.normal(size=bias_shape)]


@pytest.mark.parametrize("cell, reset_after", INTEROP)
def test_interop_round_trip_and_adjoint(cell, reset_after):
    rng = np.random.default_rng(0)
    kernel, recurrent_kernel, bias = keras_arrays(cell, reset_after, rng)
    torch_weights = keras_to_torch(cell, kernel, recurrent_kernel, bias, reset_after=reset_after)
    back = torch_to_keras(cell, **torch_weights, reset_after=reset_after)
    for a, b in zip(back, [kernel, recurrent_kernel, bias]):
        np.testing.assert_array_equal(a, b)
    # torch_grads_to_keras is the adjoint of keras_to_torch: <A k, g> = <k, A^T g>
    grads = {name: rng.normal(size=np.shape(value)) for name, value in torch_weights.items()
             if value is not None}
    keras_grads = torch_grads_to_keras(cell, grads, reset_after=reset_after)
    lhs = sum(np.sum(torch_weights[name] * g) for name, g in grads.items())
    rhs = sum(np.sum(k * g) for k, g in zip([kernel, recurrent_kernel, bias], keras_grads))
    np.testing.assert_allclose(lhs, rhs, **FLOAT64_REORDERED)
    # keras_grads_to_torch is the adjoint of torch_to_keras
    torch_arrays = {name: rng.normal(size=torch_weights["b_ih"].shape if v is None else v.shape)
                    for name, v in torch_weights.items()}
    if cell == "GRU" and not reset_after:
        torch_arrays["b_hh"][2 * H:] = 0
    keras_view = torch_to_keras(cell, **torch_arrays, reset_after=reset_after)
    d_keras = keras_arrays(cell, reset_after, rng)
    d_torch = keras_grads_to_torch(cell, *d_keras, reset_after=reset_after)
    lhs = sum(np.sum(k * d) for k, d in zip(keras_view, d_keras))
    rhs = sum(np.sum(torch_arrays[name] * d_torch[name]) for name in torch_arrays)
    np.testing.assert_allclose(lhs, rhs, **FLOAT64_REORDERED)


def test_interop_gru_gate_order():
    """Keras's z block is PyTorch's second block, its r block the first."""
    kernel = np.concatenate([np.full((D, H), 1.0), np.full((D, H), 2.0), np.full((D, H), 3.0)], axis=1)
    w = keras_to_torch("GRU", kernel, np.zeros((H, 3 * H)))["w_ih"]
    np.testing.assert_array_equal(w[:H], 2.0)
    np.testing.assert_array_equal(w[H:2 * H], 1.0)
    np.testing.assert_array_equal(w[2 * H:], 3.0)


def test_interop_errors():
    with pytest.raises(ArgumentError, match="cell must be one of"):
        keras_to_torch("LSTMCell", np.zeros((2, 8)), np.zeros((2, 8)))
    with pytest.raises(ShapeError, match=r"recurrent_kernel must have shape \(H, 4\*H\)"):
        keras_to_torch("LSTM", np.zeros((2, 8)), np.zeros((2, 6)))
    with pytest.raises(ShapeError, match=r"bias with reset_after=True must have shape \(2, 6\)"):
        keras_to_torch("GRU", np.zeros((3, 6)), np.zeros((2, 6)), np.zeros(6))
    with pytest.raises(ArgumentError, match="b_hh"):
        torch_to_keras("GRU", np.zeros((6, 3)), np.zeros((6, 2)), np.zeros(6), np.ones(6),
                       reset_after=False)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_keras_layer_matches_torch_through_interop(cell):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[cell](
        D, H, batch_first=True).double()
    params = {name: p.detach().numpy() for name, p in module.named_parameters()}
    x = random_input(30)
    expected, _ = module(torch.from_numpy(x))
    layer = recurrent(cell, return_sequences=True)
    layer(x)
    layer.set_weights(torch_to_keras(cell, params["weight_ih_l0"], params["weight_hh_l0"],
                                     params["bias_ih_l0"], params["bias_hh_l0"]))
    np.testing.assert_allclose(layer(x), expected.detach().numpy(), **TORCH_PARITY[np.dtype(np.float64)])


def test_float32_default_and_public_names():
    layer = layers.LSTM(4)
    y = layer(random_input(31))
    assert y.dtype == np.float32 and layer.kernel.dtype == np.float32
    assert layer.name.startswith("lstm") and layers.SimpleRNN(2).name.startswith("simple_rnn")
    for name in ("Dense", "Embedding", "Activation", "Dropout", "Masking", "TimeDistributed",
                 "SimpleRNN", "LSTM", "GRU", "Bidirectional"):
        assert name in layers.__all__


def test_config_round_trip_and_backward_layer_copies_initializers():
    layer = layers.GRU(3, reset_after=False, go_backwards=True, kernel_initializer="orthogonal",
                       bias_initializer=initializers.RandomUniform(-0.3, 0.3), return_sequences=True)
    config = layer.get_config()
    assert config["bias_initializer"] == {"class_name": "RandomUniform",
                                          "config": {"minval": -0.3, "maxval": 0.3}}
    config.pop("name")
    again = layers.GRU(**config)
    assert again.get_config() == {**layer.get_config(), "name": again.name}
    bidirectional = layers.Bidirectional(layers.LSTM(2, bias_initializer="ones",
                                                     unit_forget_bias=False))
    bidirectional(np.zeros((1, 3, 2)))
    np.testing.assert_array_equal(bidirectional.backward_layer.bias.data, 1.0)


def revive(entry):
    """A layer from ``{"class_name", "config"}``, wrapped layers first (what saving does)."""
    config = {key: revive(value) if isinstance(value, dict) and set(value) == {"class_name", "config"}
              and hasattr(layers, value["class_name"]) else value
              for key, value in entry["config"].items()}
    return getattr(layers, entry["class_name"])(**config)


@pytest.mark.parametrize("make", [
    lambda: layers.Dense(3, activation="relu", kernel_initializer="orthogonal"),
    lambda: layers.Embedding(5, 2, mask_zero=True, embeddings_initializer="normal"),
    lambda: layers.Activation("softmax"),
    lambda: layers.Dropout(0.3, noise_shape=(None, 1, None)),
    lambda: layers.Masking(-1.0),
    lambda: layers.TimeDistributed(layers.Dense(2)),
    lambda: layers.SimpleRNN(2, activation="relu", return_state=True, seed=3),
    lambda: layers.LSTM(2, unit_forget_bias=False, stateful=True),
    lambda: layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode="mul"),
    lambda: layers.Bidirectional(layers.LSTM(2), backward_layer=layers.GRU(3, go_backwards=True)),
])
def test_get_config_recreates_the_layer(make):
    import json

    layer = make()
    entry = json.loads(json.dumps({"class_name": type(layer).__name__, "config": layer.get_config()}))
    again = revive(entry)
    assert type(again) is type(layer)
    assert again.get_config() == entry["config"]
    # Keras's spelling, wrapped layers given as their entries
    from_config = type(layer).from_config(entry["config"])
    assert type(from_config) is type(layer) and from_config.get_config() == entry["config"]


def test_embedding_input_length_is_deprecated_and_ignored():
    with pytest.warns(UserWarning, match="input_length is deprecated and ignored"):
        layer = layers.Embedding(10, 3, input_length=500)
    assert "input_length" not in layer.get_config()
    assert layer(np.array([[1, 2, 3]])).shape == (1, 3, 3)


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Dense(3, activation="tanh", seed=0), (4, 5)),
    (lambda: layers.TimeDistributed(layers.Dense(2, seed=0)), (4, 3, 5)),
    (lambda: layers.LSTM(3, return_sequences=True, seed=0), (4, 3, 5)),
    (lambda: layers.Bidirectional(layers.GRU(2, seed=0)), (4, 3, 5)),
])
def test_tape_state_lets_each_call_of_a_shared_layer_backpropagate(make, shape):
    """Two training calls, then the first call's backward from its restored tape: the same input
    gradient and weight gradients as the first call alone."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=shape), rng.normal(size=shape)
    alone = make()
    y1 = alone(x1, training=True)
    d = rng.normal(size=np.shape(y1))
    expected_dx = alone.backward(d)
    expected_grads = [w.grad.copy() for w in alone.weights]

    shared = make()
    shared(x1, training=True)
    first = shared.tape_state()
    shared(x2, training=True)
    shared.restore_tape_state(first)
    np.testing.assert_array_equal(shared.backward(d), expected_dx)
    for weight, grad in zip(shared.weights, expected_grads):
        np.testing.assert_array_equal(weight.grad, grad)
