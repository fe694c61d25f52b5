"""Fuzzing the facades' argument checks: ``fastrnn.nn`` modules and ``fastrnn.keras`` layers built and
called with fuzzed arguments either work or raise a fastrnn exception, never another exception type."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastrnn import keras, nn
from fastrnn.exceptions import FastRNNError
from fuzz import fuzz_settings
from fuzz.test_functional import JUNK

#: Small sizes, some invalid (negative, zero, not integers); never large enough to allocate much.
VALID_SIZES = st.integers(1, 4)
SIZES = st.one_of(VALID_SIZES, VALID_SIZES, VALID_SIZES,  # mostly valid, so that the calls get fuzzed too
                  st.integers(-2, 0), st.sampled_from([2.0, "3", True, None, np.int64(3), 2.5]))
RATES = st.one_of(st.floats(-1, 2), st.sampled_from([0.0, 0.5, "0.1", None, np.nan, 1]))
SEEDS = st.one_of(st.none(), st.integers(0, 5), st.sampled_from([-1, "1", 1.5, True, np.int64(2), 2**70]))
FLAGS = st.one_of(st.booleans(), st.sampled_from([np.bool_(True), "no", 1, 0, None, 1.0]))


def either_works_or_raises_fastrnn(make):
    """Call ``make()``; return its result, or None if it raised a fastrnn exception (anything else fails)."""
    try:
        return make()
    except FastRNNError as error:
        assert isinstance(error, (ValueError, TypeError, RuntimeError)), repr(error)
        return None


#: Arrays of any small shape and of dtypes valid and not (integers, booleans, complex), for states.
ARRAYS = st.builds(lambda shape, dtype: np.ones(shape, dtype),
                   st.lists(st.integers(0, 3), max_size=4).map(tuple),
                   st.sampled_from([np.float64, np.float32, np.int32, bool, np.complex64, "U1", object]))


NN_OPTIONS = {
    "num_layers": SIZES, "bias": FLAGS, "batch_first": FLAGS, "dropout": RATES, "bidirectional": FLAGS,
    "dtype": st.sampled_from([np.float32, np.float64, "float32", np.float16, int, None, "x", 3, "complex64"]),
    "seed": SEEDS,
    "backend": st.sampled_from([None, "python", "cython", "numba", "Numba", "", 3]),
    "n_threads": st.one_of(st.none(), st.integers(-1, 3), st.sampled_from([1.5, "2", True])),
}
NN_EXTRA = {nn.RNN: {"nonlinearity": st.sampled_from(["tanh", "relu", "Tanh", None, 1])},
            nn.LSTM: {"proj_size": SIZES}, nn.GRU: {}}


@pytest.mark.filterwarnings("ignore:dropout=.*has no effect:UserWarning")
@pytest.mark.parametrize("module", [nn.RNN, nn.LSTM, nn.GRU], ids=lambda m: m.__name__)
@given(data=st.data())
@fuzz_settings
def test_nn_modules_build_and_run_or_raise_fastrnn(module, data):
    options = dict(NN_OPTIONS, **NN_EXTRA[module])
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=2), label="options")
    kwargs = {name: data.draw(options[name], label=name) for name in chosen}
    input_size, hidden_size = data.draw(SIZES, label="input_size"), data.draw(SIZES, label="hidden_size")
    layer = either_works_or_raises_fastrnn(lambda: module(input_size, hidden_size, **kwargs))
    if layer is None:
        return
    shape = data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple), label="input shape")
    x = data.draw(st.one_of(st.just(np.ones(shape, np.float32)), JUNK), label="input")
    hx = data.draw(st.one_of(st.none(), JUNK, ARRAYS, st.tuples(ARRAYS, ARRAYS)), label="hx")
    either_works_or_raises_fastrnn(lambda: layer(x) if hx is None else layer(x, hx))


KERAS_OPTIONS = {
    "activation": st.sampled_from(["tanh", "relu", "sigmoid", "linear", None, "nope", 3]),
    "use_bias": FLAGS, "dropout": RATES, "recurrent_dropout": RATES, "return_sequences": FLAGS,
    "return_state": FLAGS, "go_backwards": FLAGS, "stateful": FLAGS,
    "kernel_initializer": st.sampled_from(["glorot_uniform", "zeros", "orthogonal", "nope", None, 1]),
    "seed": SEEDS,
}
KERAS_EXTRA = {keras.layers.SimpleRNN: {}, keras.layers.GRU: {"reset_after": FLAGS},
               keras.layers.LSTM: {"unit_forget_bias": FLAGS,
                                   "recurrent_activation": st.sampled_from(["sigmoid", "hard_sigmoid", "x"])}}


INITIAL_STATES = st.one_of(st.none(), JUNK, ARRAYS, st.lists(st.one_of(ARRAYS, JUNK), max_size=3))


@pytest.mark.parametrize("layer_class", sorted(KERAS_EXTRA, key=lambda c: c.__name__), ids=lambda c: c.__name__)
@given(data=st.data())
@fuzz_settings
def test_keras_layers_build_and_run_or_raise_fastrnn(layer_class, data):
    options = dict(KERAS_OPTIONS, **KERAS_EXTRA[layer_class])
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=2), label="options")
    kwargs = {name: data.draw(options[name], label=name) for name in chosen}
    units = data.draw(SIZES, label="units")
    layer = either_works_or_raises_fastrnn(lambda: layer_class(units, **kwargs))
    if layer is None:
        return
    shape = data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple), label="input shape")
    x = data.draw(st.one_of(st.just(np.ones(shape, np.float32)), JUNK), label="input")
    call = {name: data.draw(strategy, label=name) for name, strategy in
            [("training", FLAGS), ("mask", st.one_of(st.none(), JUNK)), ("initial_state", INITIAL_STATES)]
            if data.draw(st.booleans(), label=f"pass {name}")}
    either_works_or_raises_fastrnn(lambda: layer(x, **call))
