"""Fuzzing the functional API: a valid call equals the float64 reference and mutates nothing; an
invalid one raises a fastrnn exception naming the argument, before any kernel runs."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastrnn
from conformance.cases import BIASES, DTYPES, Case, assert_matches_reference, run
from conformance.cells import CELLS
from conformance.test_errors import call_args, forward_errors, valid_arrays
from conftest import ALL_BACKENDS, require_backend
from fuzz import fuzz_settings
from tolerances import BACKEND_VS_REFERENCE

LAYOUTS = ("c", "fortran", "strided", "readonly")


def loaded_backends(cell):
    """The backends that run ``cell`` here (a required one that does not load fails, see conftest)."""
    names = []
    for name in ALL_BACKENDS:
        try:
            fastrnn._backends.resolve(name, kernel=cell.kernel)
        except fastrnn.BackendUnavailableError:
            require_backend(name, kernel=cell.kernel)  # fails when required, else skips the test
            continue
        names.append(name)
    return names


@st.composite
def cases(draw, cell):
    """A small valid problem for ``cell``: sizes from 0 (1 for a projected cell's sizes), any options."""
    low = 2 if cell.projected else 0
    H = draw(st.integers(low, 6))
    P = draw(st.integers(1, H - 1)) if cell.projected else 0
    return Case("fuzz", seed=draw(st.integers(0, 2**32 - 1)), T=draw(st.integers(0, 6)),
                B=draw(st.integers(0, 6)), D=draw(st.integers(0, 6)), H=H, P=P,
                bias=draw(st.sampled_from(sorted(BIASES))), states=draw(st.booleans()),
                batch_first=cell.batch_first and draw(st.booleans()), layout=draw(st.sampled_from(LAYOUTS)))


@pytest.mark.parametrize("cell", CELLS, ids=repr)
@given(data=st.data())
@fuzz_settings
def test_a_valid_call_equals_the_reference_and_mutates_nothing(cell, data):
    case = data.draw(cases(cell), label="case")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    for backend in loaded_backends(cell):
        arrays = case.arrays(cell, dtype)
        before = {name: (value.copy(), value.flags.writeable) for name, value in arrays.items()}
        context = case.describe(cell, backend, dtype)
        assert_matches_reference(run(cell, case, backend, dtype, arrays=arrays), cell, case, dtype,
                                 BACKEND_VS_REFERENCE[dtype], context)
        for name, (copy, writeable) in before.items():
            assert arrays[name].flags.writeable == writeable, f"{context}: {name}'s flags changed"
            np.testing.assert_array_equal(arrays[name], copy, err_msg=f"{context}: {name} was mutated")


@pytest.mark.parametrize("cell", CELLS, ids=repr)
@given(data=st.data())
@fuzz_settings
def test_each_known_bad_input_is_refused_on_every_backend(cell, data):
    """One of the conformance suite's bad inputs (written for float64), drawn at random."""
    table = forward_errors(cell)
    change, error_class, _ = table[data.draw(st.sampled_from(sorted(table)), label="error")]
    arrays = valid_arrays(cell)
    change(arrays)
    for backend in loaded_backends(cell):
        with pytest.raises(error_class):
            cell.forward(call_args(cell, arrays), backend)


# What a fuzzed argument may be replaced with: anything a caller could pass by mistake.
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3),
    st.lists(st.floats(-2, 2), max_size=3),
    st.builds(lambda shape, dtype: np.ones(shape, dtype),
              st.lists(st.integers(0, 3), max_size=4).map(tuple),
              st.sampled_from([np.float64, np.float32, np.float16, np.int32, bool, np.complex64, object])),
    st.builds(lambda shape, value: np.full(shape, value), st.lists(st.integers(1, 3), min_size=1, max_size=3)
              .map(tuple), st.sampled_from([np.nan, np.inf, -np.inf])),
)
OPTIONS = {
    "batch_first": st.one_of(JUNK, st.sampled_from(["yes", 1, 0, np.array([True])])),
    "requires_grad": st.one_of(JUNK, st.sampled_from(["no", 1, 0])),
    "n_threads": st.one_of(JUNK, st.integers(-2**70, 2**70)),
}


@pytest.mark.parametrize("cell", CELLS, ids=repr)
@given(data=st.data())
@fuzz_settings
def test_a_fuzzed_argument_is_used_or_refused_by_name(cell, data):
    """One argument of a valid call replaced with junk: the call either works (the junk was a valid
    value, e.g. ``None`` for a bias) or raises a fastrnn exception whose message names that argument."""
    names = list(cell.inputs) + [name for name in OPTIONS if name != "batch_first" or cell.batch_first]
    name = data.draw(st.sampled_from(names), label="argument")
    strategy = OPTIONS.get(name, JUNK)
    value = data.draw(strategy, label="value")
    arrays = call_args(cell, valid_arrays(cell))
    options = {}
    if name in OPTIONS:
        options[name] = value
    else:
        arrays[name] = value
    snapshot = {key: np.copy(array) for key, array in arrays.items() if key != name}
    backend = data.draw(st.sampled_from(loaded_backends(cell)), label="backend")
    try:
        kwargs = {key: array for key, array in arrays.items()}
        kwargs.update(dict(cell.options), **options)
        cell.forward_fn(**kwargs, backend=backend)
    except fastrnn.FastRNNError as error:
        assert isinstance(error, (ValueError, TypeError)), repr(error)
        # A valid batch_first=True reads x as (B, T, D): the error then names the state that disagrees.
        if not (name == "batch_first" and isinstance(value, (bool, np.bool_))):
            assert re.search(rf"\b{name}\b", str(error)), f"{name}={value!r}: message {str(error)!r} does not name {name}"
    for key, copy in snapshot.items():
        np.testing.assert_array_equal(arrays[key], copy, err_msg=f"{key} was mutated")


@pytest.mark.parametrize("cell", CELLS, ids=repr)
@given(data=st.data())
@fuzz_settings
def test_a_fuzzed_backward_argument_is_used_or_refused_by_name(cell, data):
    arrays = valid_arrays(cell)
    backend = data.draw(st.sampled_from(loaded_backends(cell)), label="backend")
    _, _, cache = cell.forward(call_args(cell, arrays), backend)
    name = data.draw(st.sampled_from(cell.loss_weights), label="argument")
    value = data.draw(JUNK, label="value")
    loss = {key: arrays[key] for key in cell.loss_weights}
    loss[name] = value
    try:
        cell.backward_fn(cache, **loss)
    except fastrnn.FastRNNError as error:
        assert isinstance(error, (ValueError, TypeError)), repr(error)
        assert re.search(rf"\b{name}\b", str(error)), f"{name}={value!r}: message {str(error)!r} does not name {name}"
