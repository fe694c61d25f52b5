"""Updates of a model's weights are all or nothing (issue 11, "All-or-nothing updates").

``nn.Module.load_state_dict``, Keras ``Layer.set_weights``/``Sequential.set_weights``
and ``load_model`` check every entry (names, shapes, real floating dtype,
finiteness) before writing any: a bad entry, even the last one, raises a
fastrnn exception naming it and leaves every parameter bit-identical.
"""

import numpy as np
import pytest

import fastrnn.keras as keras
import fastrnn.nn as fnn
from fastrnn.exceptions import ArgumentError, DTypeError, FastRNNError, NonFiniteError, ShapeError


def _snapshot(parameters):
    return [np.array(p.data, copy=True) for p in parameters]


def _assert_unchanged(parameters, snapshot):
    for parameter, before in zip(parameters, snapshot):
        assert parameter.data.dtype == before.dtype
        assert parameter.data.tobytes() == before.tobytes()


# (a bad last entry given the expected shape) -> the error expected, a part of its message
BAD = {
    "string": (lambda shape: np.full(shape, "abc"), DTypeError, "got dtype <U3"),
    "numeric string": (lambda shape: np.full(shape, "1.5"), DTypeError, "got dtype <U3"),
    "object None": (lambda shape: np.full(shape, None, dtype=object), DTypeError, "got dtype object"),
    "complex": (lambda shape: np.full(shape, 1 + 2j), DTypeError, "got dtype complex128"),
    "integer": (lambda shape: np.ones(shape, np.int64), DTypeError, "got dtype int64"),
    "bool": (lambda shape: np.ones(shape, bool), DTypeError, "got dtype bool"),
    "nan": (lambda shape: np.full(shape, np.nan, np.float32), NonFiniteError, "holds nan"),
    "inf": (lambda shape: np.full(shape, -np.inf), NonFiniteError, "holds -inf"),
    "overflow": (lambda shape: np.full(shape, 1e300), NonFiniteError, "overflows float32"),
    "shape": (lambda shape: np.zeros(shape + (2,), np.float32), ShapeError, "expected shape"),
    "ragged": (lambda shape: [[1.0], [1.0, 2.0]], DTypeError, "real floating-point"),
}
# the same for torch tensors, which a torch state dict holds (built when torch is installed)
BAD_TENSORS = {
    "complex tensor": (lambda torch, shape: torch.ones(shape, dtype=torch.complex64), DTypeError, "complex64"),
    "bfloat16 tensor": (lambda torch, shape: torch.ones(shape, dtype=torch.bfloat16), DTypeError, "bfloat16"),
}


def _bad(case):
    """``(make, error, message)`` of a bad entry; a tensor case skips without torch."""
    if case not in BAD_TENSORS:
        return BAD[case]
    torch = pytest.importorskip("torch")
    make_tensor, error, message = BAD_TENSORS[case]
    return (lambda shape: make_tensor(torch, shape)), error, message


@pytest.mark.parametrize("case", sorted(BAD) + sorted(BAD_TENSORS))
def test_load_state_dict_with_a_bad_last_entry_changes_nothing(case):
    make, error, message = _bad(case)
    module = fnn.LSTM(3, 4, num_layers=2)
    named = list(module.named_parameters())
    before = _snapshot(p for _, p in named)
    state = {name: np.full(p.shape, 0.5, np.float32) for name, p in named}
    last, parameter = named[-1]
    state[last] = make(parameter.shape)
    with pytest.raises(error, match=message) as raised:
        module.load_state_dict(state)
    assert isinstance(raised.value, FastRNNError) and isinstance(raised.value, (ValueError, TypeError))
    assert repr(last) in str(raised.value)
    _assert_unchanged([p for _, p in named], before)


def test_load_state_dict_accepts_floats_of_other_widths_and_tensors():
    torch = pytest.importorskip("torch")
    module = fnn.GRU(3, 4)
    rng = np.random.default_rng(0)
    state = {name: rng.standard_normal(p.shape) for name, p in module.named_parameters()}  # float64
    state["weight_hh_l0"] = torch.from_numpy(state["weight_hh_l0"].astype(np.float16))
    module.load_state_dict(state)
    for name, parameter in module.named_parameters():
        assert parameter.data.dtype == np.float32
        expected = np.asarray(state[name], dtype=np.float64).astype(np.float32)
        assert parameter.data.tobytes() == expected.tobytes()


def test_load_state_dict_non_strict_checks_the_entries_it_loads():
    module = fnn.RNN(3, 4)
    before = _snapshot(module.parameters())
    with pytest.raises(NonFiniteError, match=r"'weight_ih_l0'.*index \(1, 2\)"):
        values = np.zeros((4, 3))
        values[1, 2] = np.nan
        module.load_state_dict({"bias_ih_l0": np.ones(4), "weight_ih_l0": values}, strict=False)
    _assert_unchanged(module.parameters(), before)


def _keras_model():
    model = keras.Sequential([keras.layers.LSTM(4, input_shape=(5, 3)), keras.layers.Dense(2)])
    model.build((None, 5, 3))
    return model


@pytest.mark.parametrize("case", sorted(set(BAD) - {"ragged"}) + sorted(BAD_TENSORS))
def test_sequential_set_weights_with_a_bad_last_array_changes_nothing(case):
    make, error, message = _bad(case)
    model = _keras_model()
    before = _snapshot(model.weights)
    arrays = [np.full(w.shape, 0.5, np.float32) for w in model.get_weights()]
    arrays[-1] = make(arrays[-1].shape)
    with pytest.raises(error, match="must have shape" if case == "shape" else message) as raised:
        model.set_weights(arrays)
    assert isinstance(raised.value, FastRNNError)
    assert "'bias'" in str(raised.value) and "'dense" in str(raised.value)
    _assert_unchanged(model.weights, before)


def test_layer_set_weights_with_a_bad_last_array_changes_nothing():
    layer = _keras_model().layers[0]
    before = _snapshot(layer.weights)
    arrays = [np.full(w.shape, 0.5, np.float32) for w in layer.get_weights()]
    arrays[-1] = np.full(arrays[-1].shape, None, dtype=object)
    with pytest.raises(DTypeError, match="'bias'.*got dtype object"):
        layer.set_weights(arrays)
    _assert_unchanged(layer.weights, before)
    with pytest.raises(ArgumentError, match="3 weight"):
        layer.set_weights(arrays[:2])
    _assert_unchanged(layer.weights, before)
    good = [np.full(w.shape, 0.25) for w in layer.get_weights()]  # float64 converts
    layer.set_weights(good)
    assert all(np.all(w.data == np.float32(0.25)) and w.data.dtype == np.float32 for w in layer.weights)


def test_load_model_refuses_a_non_finite_saved_weight(tmp_path):
    model = _keras_model()
    path = tmp_path / "model.fastrnn"
    model.layers[1].weights[1].data[0] = np.nan  # written behind set_weights' back
    model.save(path)
    with pytest.raises(keras.ModelFileError, match=r"'bias' must be finite"):
        keras.load_model(path)
