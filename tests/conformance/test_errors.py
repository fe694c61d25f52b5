"""Bad input gets a clear exception before any kernel runs; empty input gets empty results.

One test per user error, run for every cell on every backend: it checks the
exception class (a ValueError or TypeError subclass from fastrnn), that the
message names the argument and says what was given, and that no kernel ran.
"""

import re

import numpy as np
import pytest

import fastrnn
from conformance.cases import Case, backend_marks, collect
from conformance.cells import CELLS, require
from conftest import ALL_BACKENDS
from fastrnn import _backends
from helpers import assert_results_close
from tolerances import BACKEND_VS_REFERENCE

#: The valid call every error case changes one thing of.
VALID = Case("errors", seed=51, T=3, B=2, D=4, H=5, P=3)


def valid_arrays(cell, dtype=np.float64):
    return VALID.arrays(cell, dtype)


def call_args(cell, arrays):
    """The forward call's arguments among ``arrays`` (drops the loss weights)."""
    return {name: value for name, value in arrays.items() if name in cell.inputs}


CELL_BACKENDS = [(cell, backend) for cell in CELLS for backend in ALL_BACKENDS]


def with_cells(table=None, cells=None):
    """Parameters ``kernel_calls`` (indirect: a cell and a backend), and, given ``table(cell)`` (a dict
    of error ids), ``error_id`` for each error the cell has."""
    params = []
    for cell, backend in CELL_BACKENDS:
        if cells is not None and not cells(cell):
            continue
        for error_id in (table(cell) if table else [None]):
            ids = [cell.id, backend] + ([error_id] if table else [])
            values = [(cell, backend)] + ([error_id] if table else [])
            params.append(pytest.param(*values, marks=backend_marks(backend), id="-".join(ids)))
    return params


@pytest.fixture(params=[pytest.param(pair, marks=backend_marks(pair[1]), id=f"{pair[0].id}-{pair[1]}")
                        for pair in CELL_BACKENDS])
def kernel_calls(request, monkeypatch):
    """``(cell, backend, calls)``: the cell's kernels wrapped to record each call in ``calls``."""
    cell, backend = request.param
    require(cell, backend)
    calls = []
    module = cell.kernel_module(backend)
    for name in cell.kernel_names():
        kernel = getattr(module, name)

        def recording(*args, _kernel=kernel, _name=name):
            calls.append(_name)
            return _kernel(*args)

        monkeypatch.setattr(module, name, recording)
    return cell, backend, calls


def shape(*dims):
    return re.escape(str(tuple(dims)))


def assert_message(error, patterns, context):
    message = str(error.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{context}: message {message!r} does not match {pattern!r}"


# -- the forward call ------------------------------------------------------------------------------

T, B, D, H = VALID.shape


def forward_errors(cell):
    """id -> (change to the valid arrays, exception class, patterns the message must match)."""
    G, R = cell.gates, (VALID.proj_size if cell.projected else H)

    def set_(name, make):
        def change(arrays):
            arrays[name] = make(arrays)
        return change

    def bad_entry(name, bad):
        def change(arrays):
            arrays[name] = arrays[name].copy()
            arrays[name].flat[1] = bad
        return change

    errors = {
        "x_2d": (set_("x", lambda a: a["x"][0]), fastrnn.ShapeError,
                 [r"\bx must be 3-dimensional", "got shape " + shape(B, D)]),
        "x_4d": (set_("x", lambda a: a["x"][None]), fastrnn.ShapeError,
                 [r"\bx must be 3-dimensional", "got shape " + shape(1, T, B, D)]),
        "w_ih_1d": (set_("w_ih", lambda a: a["w_ih"][0]), fastrnn.ShapeError,
                    [r"\bw_ih must be 2-dimensional", "got shape " + shape(D)]),
        "w_hh_3d": (set_("w_hh", lambda a: a["w_hh"][None]), fastrnn.ShapeError,
                    [r"\bw_hh must be 2-dimensional", "got shape " + shape(1, G * H, R)]),
        "b_hh_2d": (set_("b_hh", lambda a: a["b_hh"][None]), fastrnn.ShapeError,
                    [r"\bb_hh must be 1-dimensional", "got shape " + shape(1, G * H)]),
        "h0_3d_like_torch": (set_("h0", lambda a: a["h0"][None]), fastrnn.ShapeError,
                             [r"\bh0 must be 2-dimensional", "got shape " + shape(1, B, R)]),
        "w_hh_rows": (set_("w_hh", lambda a: a["w_hh"][:-1]), fastrnn.ShapeError,
                      [r"\bw_hh must have", "got shape " + shape(G * H - 1, R)]),
        "w_hh_columns": (set_("w_hh", lambda a: a["w_hh"][:, :-1]), fastrnn.ShapeError,
                         [r"\bw_hh must have", "got shape " + shape(G * H, R - 1)]),
        "w_ih_rows": (set_("w_ih", lambda a: a["w_ih"][:-1]), fastrnn.ShapeError,
                      [r"\bw_ih must have shape " + shape(G * H, D), "got shape " + shape(G * H - 1, D)]),
        "w_ih_columns_not_D": (set_("w_ih", lambda a: a["w_ih"][:, :-1]), fastrnn.ShapeError,
                               [r"\bw_ih must have shape " + shape(G * H, D), "got shape " + shape(G * H, D - 1)]),
        "b_ih_length": (set_("b_ih", lambda a: a["b_ih"][:-1]), fastrnn.ShapeError,
                        [r"\bb_ih must have shape " + shape(G * H), "got shape " + shape(G * H - 1)]),
        "b_hh_length": (set_("b_hh", lambda a: np.append(a["b_hh"], 0.0)), fastrnn.ShapeError,
                        [r"\bb_hh must have shape " + shape(G * H), "got shape " + shape(G * H + 1)]),
        "h0_batch": (set_("h0", lambda a: np.zeros((B + 1, R))), fastrnn.ShapeError,
                     [r"\bh0 must have shape " + shape(B, R), "got shape " + shape(B + 1, R)]),
        "h0_hidden": (set_("h0", lambda a: np.zeros((B, R + 1))), fastrnn.ShapeError,
                      [r"\bh0 must have shape " + shape(B, R), "got shape " + shape(B, R + 1)]),
        "x_batch_major_without_batch_first": (set_("x", lambda a: np.ascontiguousarray(a["x"].transpose(1, 0, 2))),
                                              fastrnn.ShapeError, [r"\bh0 must have shape " + shape(T, R)]),
        "x_int": (set_("x", lambda a: np.ones((T, B, D), np.int64)), fastrnn.DTypeError,
                  [r"\bx must be a float32 or float64 array", "got dtype int64"]),
        "w_hh_bool": (set_("w_hh", lambda a: np.ones(a["w_hh"].shape, bool)), fastrnn.DTypeError,
                      [r"\bw_hh must be a float32 or float64 array", "got dtype bool"]),
        "h0_complex": (set_("h0", lambda a: a["h0"].astype(np.complex128)), fastrnn.DTypeError,
                       [r"\bh0 must be a float32 or float64 array", "got dtype complex128"]),
        "b_ih_strings": (set_("b_ih", lambda a: ["a"] * (G * H)), fastrnn.DTypeError,
                         [r"\bb_ih must be a float32 or float64 array", "got dtype <U1"]),
        "x_float32_weights_float64": (set_("x", lambda a: a["x"].astype(np.float32)), fastrnn.DTypeError,
                                      [r"\bx is float32 but w_ih is float64"]),
        "h0_float32_rest_float64": (set_("h0", lambda a: a["h0"].astype(np.float32)), fastrnn.DTypeError,
                                    [r"\bx is float64 but h0 is float32"]),
        "w_ih_nan": (bad_entry("w_ih", np.nan), fastrnn.NonFiniteError,
                     [r"\bw_ih must be finite", "1 NaN or infinite"]),
        "w_hh_inf": (bad_entry("w_hh", np.inf), fastrnn.NonFiniteError,
                     [r"\bw_hh must be finite", "1 NaN or infinite"]),
        "b_ih_nan": (bad_entry("b_ih", np.nan), fastrnn.NonFiniteError,
                     [r"\bb_ih must be finite", "1 NaN or infinite"]),
        "b_hh_minus_inf": (bad_entry("b_hh", -np.inf), fastrnn.NonFiniteError, [r"\bb_hh must be finite"]),
        "h0_nan": (bad_entry("h0", np.nan), fastrnn.NonFiniteError, [r"\bh0 must be finite", "1 NaN or infinite"]),
    }
    if cell.cell_state:
        errors.update({
            "c0_3d_like_torch": (set_("c0", lambda a: a["c0"][None]), fastrnn.ShapeError,
                                 [r"\bc0 must be 2-dimensional", "got shape " + shape(1, B, H)]),
            "c0_hidden": (set_("c0", lambda a: np.zeros((B, H + 1))), fastrnn.ShapeError,
                          [r"\bc0 must have shape " + shape(B, H), "got shape " + shape(B, H + 1)]),
            "c0_float32_rest_float64": (set_("c0", lambda a: a["c0"].astype(np.float32)), fastrnn.DTypeError,
                                        [r"\bx is float64 but c0 is float32"]),
            "c0_nan": (bad_entry("c0", np.nan), fastrnn.NonFiniteError, [r"\bc0 must be finite", "1 NaN or infinite"]),
        })
    if cell.projected:
        P = VALID.proj_size
        errors.update({
            "w_hr_P_not_below_H": (set_("w_hr", lambda a: np.zeros((H, H))), fastrnn.ShapeError,
                                   [r"\bw_hr must have shape \(P, H\) with 0 < P < H", "got shape " + shape(H, H)]),
            "w_hr_1d": (set_("w_hr", lambda a: a["w_hr"][0]), fastrnn.ShapeError,
                        [r"\bw_hr must be 2-dimensional", "got shape " + shape(H)]),
            "w_hr_nan": (bad_entry("w_hr", np.nan), fastrnn.NonFiniteError, [r"\bw_hr must be finite"]),
        })
    if np.dtype(np.longdouble).itemsize > 8:  # a float type fastrnn does not compute in
        def all_longdouble(arrays):
            for name in arrays:
                arrays[name] = arrays[name].astype(np.longdouble)
        errors["all_longdouble"] = (all_longdouble, fastrnn.DTypeError, [
            r"\bx must be float32 or float64", re.escape(f"got dtype {np.dtype(np.longdouble)}")])
    return errors


@pytest.mark.parametrize("kernel_calls, error_id", with_cells(forward_errors), indirect=["kernel_calls"])
def test_forward_rejects_bad_input(kernel_calls, error_id):
    cell, backend, calls = kernel_calls
    change, error_class, patterns = forward_errors(cell)[error_id]
    arrays = valid_arrays(cell)
    change(arrays)
    with pytest.raises(error_class) as error:
        cell.forward(call_args(cell, arrays), backend)
    assert isinstance(error.value, (ValueError, TypeError))
    context = f"cell={cell.name} backend={backend} case={error_id}"
    assert_message(error, patterns, context)
    assert calls == [], f"{context}: a kernel ran before the error: {calls}"


@pytest.mark.parametrize("kernel_calls", with_cells(cells=lambda cell: cell.batch_first), indirect=True)
def test_batch_first_mismatch_names_batch_first(kernel_calls):
    """With batch_first=True the batch is x's first axis, and the message spells that layout."""
    cell, backend, calls = kernel_calls
    arrays = call_args(cell, valid_arrays(cell))  # x is (T, B, D): read batch-first, h0 has the wrong batch
    with pytest.raises(fastrnn.ShapeError, match=r"\bh0 must have shape " + shape(T, H)):
        cell.forward(arrays, backend, batch_first=True)
    with pytest.raises(fastrnn.ShapeError, match=re.escape("(B, T, D) with batch_first=True")):
        cell.forward(dict(arrays, x=arrays["x"][0]), backend, batch_first=True)
    assert calls == []


def bad_options(cell):
    return {f"{name}={value!r}": (name, value) for name, value in cell.bad_options}


@pytest.mark.parametrize("kernel_calls, option", with_cells(bad_options), indirect=["kernel_calls"])
def test_bad_option(kernel_calls, option):
    """A cell's own option (``nonlinearity``, ``reset_after``) with a value it does not take."""
    cell, backend, calls = kernel_calls
    name, value = bad_options(cell)[option]
    with pytest.raises(fastrnn.ArgumentError) as error:
        cell.forward(call_args(cell, valid_arrays(cell)), backend, **{name: value})
    assert isinstance(error.value, ValueError)
    assert_message(error, [rf"\b{name}\b", re.escape(repr(value))], f"cell={cell.name} backend={backend}")
    assert calls == []


NOT_BOOLEANS = ["no", "", 1, 0, None, 1.0, np.int64(1), np.array([True])]


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
@pytest.mark.parametrize("kernel_calls", with_cells(cells=lambda cell: cell.batch_first), indirect=True)
def test_batch_first_takes_only_booleans(kernel_calls, value):
    """``batch_first="no"`` used to be read as true (any truthy value was)."""
    cell, backend, calls = kernel_calls
    with pytest.raises(fastrnn.ArgumentError) as error:
        cell.forward_fn(**call_args(cell, valid_arrays(cell)), **dict(cell.options), batch_first=value,
                        backend=backend)
    assert_message(error, [r"\bbatch_first must be True or False", re.escape(f"got {value!r}")],
                   f"cell={cell.name} backend={backend}")
    assert calls == []


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
def test_requires_grad_takes_only_booleans(kernel_calls, value):
    cell, backend, calls = kernel_calls
    with pytest.raises(fastrnn.ArgumentError) as error:
        cell.forward(call_args(cell, valid_arrays(cell)), backend, requires_grad=value)
    assert_message(error, [r"\brequires_grad must be True or False", re.escape(f"got {value!r}")],
                   f"cell={cell.name} backend={backend}")
    assert calls == []


@pytest.mark.parametrize("value", [np.bool_(True), np.bool_(False)], ids=repr)
def test_numpy_booleans_are_booleans(kernel_calls, value):
    cell, backend, _ = kernel_calls
    _, _, cache = cell.forward(call_args(cell, valid_arrays(cell)), backend, requires_grad=value)
    assert (cache is not None) == bool(value)


@pytest.mark.parametrize("n_threads", [0, -2, 1.5, "2", True, np.bool_(True), 2**31, 2**64])
def test_bad_n_threads(n_threads, kernel_calls):
    """Not a thread count, or one no C int holds (it used to overflow inside the Cython kernel)."""
    cell, backend, calls = kernel_calls
    with pytest.raises(fastrnn.ArgumentError) as error:
        cell.forward(call_args(cell, valid_arrays(cell)), backend, n_threads=n_threads)
    assert_message(error, [r"\bn_threads must be None or an integer from 1 to 2147483647",
                           re.escape(f"got {n_threads!r}")],
                   f"cell={cell.name} backend={backend}")
    assert calls == []


@pytest.mark.parametrize("name", ["fortran", "Numba", "", 3])
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_unknown_backend(cell, name):
    with pytest.raises(fastrnn.UnknownBackendError) as error:
        cell.forward(call_args(cell, valid_arrays(cell)), name)
    assert isinstance(error.value, ValueError)
    assert_message(error, [r"\bbackend must be one of 'cython', 'numba', 'python', 'auto'", re.escape(f"got {name!r}")],
                   f"cell={cell.name}")


#: Every backend has the Elman kernels (a backend is one that has them); the others are optional.
OPTIONAL_KERNELS = [cell for cell in CELLS if cell.kernel != "rnn_forward"]


@pytest.mark.parametrize("cell", OPTIONAL_KERNELS, ids=repr)
def test_backend_without_the_cells_kernels_is_named_in_the_error(cell, monkeypatch):
    """A backend that loads but lacks the cell's kernels: naming it raises, ``auto`` passes it by."""
    import types

    fake = types.SimpleNamespace()
    real_load = _backends._load
    monkeypatch.setattr(_backends, "_load", lambda name: fake if name == "cython" else real_load(name))
    arrays = call_args(cell, valid_arrays(cell))
    with pytest.raises(fastrnn.BackendUnavailableError, match=f"no {cell.kernel} kernel"):
        cell.forward(arrays, "cython")
    _, _, cache = cell.forward(arrays, "auto")
    assert cache.backend in ("numba", "python"), cache.backend


# -- the backward call -----------------------------------------------------------------------------


def forward(cell, backend, batch_first=False):
    arrays = valid_arrays(cell)
    if batch_first:
        arrays["x"] = np.ascontiguousarray(arrays["x"].transpose(1, 0, 2))
    _, _, cache = cell.forward(call_args(cell, arrays), backend, batch_first=batch_first)
    return arrays, cache


def test_stale_cache_after_an_input_reshaped_in_place(kernel_calls):
    """The cache refers to the caller's arrays: one that changed shape since is named."""
    cell, backend, calls = kernel_calls
    R = VALID.proj_size if cell.projected else H
    changes = {"x": ((T * B, D), (T, B, D)), "h0": ((R, B), (B, R))}
    if cell.cell_state:
        changes["c0"] = ((H, B), (B, H))
    for name, (new_shape, old_shape) in changes.items():
        arrays, cache = forward(cell, backend)
        arrays[name].shape = new_shape
        calls.clear()
        with pytest.raises(fastrnn.StaleCacheError) as error:
            cell.backward(cache, {})
        assert isinstance(error.value, ValueError)
        assert_message(error, [rf"\b{name} was changed", "expected an array of shape " + shape(*old_shape),
                               "found " + shape(*new_shape)], f"cell={cell.name} backend={backend}")
        assert calls == []


def test_stale_cache_after_weight_replaced(kernel_calls):
    cell, backend, calls = kernel_calls
    _, cache = forward(cell, backend)
    cache.w_hh = np.zeros((H + 1, H + 1))
    calls.clear()
    with pytest.raises(fastrnn.StaleCacheError, match=r"\bw_hh was changed.*found " + shape(H + 1, H + 1)):
        cell.backward(cache, {})
    assert calls == []


def backward_errors(cell):
    """id -> (loss weights, forward batch-first, exception class, patterns)."""
    R = VALID.proj_size if cell.projected else H
    errors = {
        "dy_hidden": (dict(dy=np.ones((T, B, R + 1))), False, fastrnn.ShapeError,
                      [r"\bdy must have shape " + shape(T, B, R), "got shape " + shape(T, B, R + 1)]),
        "dy_2d": (dict(dy=np.ones((T, R))), False, fastrnn.ShapeError,
                  [r"\bdy must have shape", "got shape " + shape(T, R)]),
        "dy_int": (dict(dy=np.ones((T, B, R), np.int32)), False, fastrnn.DTypeError,
                   [r"\bdy must be a float32 or float64 array", "got dtype int32"]),
        "dh_n_3d_like_torch": (dict(dh_n=np.ones((1, B, R))), False, fastrnn.ShapeError,
                               [r"\bdh_n must have shape " + shape(B, R), "got shape " + shape(1, B, R)]),
        "dh_n_batch": (dict(dh_n=np.ones((B + 1, R))), False, fastrnn.ShapeError,
                       [r"\bdh_n must have shape " + shape(B, R), "got shape " + shape(B + 1, R)]),
        # the forward ran in float64: a float32 gradient used to be cast silently
        "dy_float32": (dict(dy=np.ones((T, B, R), np.float32)), False, fastrnn.DTypeError,
                       [r"\bdy must have the dtype of the forward pass \(float64\)", "got dtype float32"]),
        "dh_n_float16": (dict(dh_n=np.ones((B, R), np.float16)), False, fastrnn.DTypeError,
                         [r"\bdh_n must have the dtype of the forward pass \(float64\)", "got dtype float16"]),
    }
    if cell.batch_first:
        errors["dy_time_major_for_batch_first"] = (dict(dy=np.ones((T, B, R))), True, fastrnn.ShapeError,
                                                   [r"\bdy must have shape " + shape(B, T, R),
                                                    "got shape " + shape(T, B, R)])
    if cell.cell_state:
        errors.update({
            "dc_n_hidden": (dict(dc_n=np.ones((B, H + 1))), False, fastrnn.ShapeError,
                            [r"\bdc_n must have shape " + shape(B, H), "got shape " + shape(B, H + 1)]),
            "dc_n_3d_like_torch": (dict(dc_n=np.ones((1, B, H))), False, fastrnn.ShapeError,
                                   [r"\bdc_n must have shape " + shape(B, H)]),
            "dc_n_float32": (dict(dc_n=np.ones((B, H), np.float32)), False, fastrnn.DTypeError,
                             [r"\bdc_n must have the dtype of the forward pass \(float64\)", "got dtype float32"]),
        })
    return errors


@pytest.mark.parametrize("kernel_calls, error_id", with_cells(backward_errors), indirect=["kernel_calls"])
def test_backward_rejects_bad_gradients(kernel_calls, error_id):
    cell, backend, calls = kernel_calls
    gradients, batch_first, error_class, patterns = backward_errors(cell)[error_id]
    _, cache = forward(cell, backend, batch_first=batch_first)
    calls.clear()
    with pytest.raises(error_class) as error:
        cell.backward(cache, gradients)
    context = f"cell={cell.name} backend={backend} case={error_id}"
    assert_message(error, patterns, context)
    assert calls == [], context


@pytest.mark.parametrize("not_a_cache", [None, {}, "cache", (1, 2, 3)], ids=["None", "dict", "str", "tuple"])
def test_backward_rejects_what_is_not_a_cache(not_a_cache, kernel_calls):
    cell, backend, calls = kernel_calls
    with pytest.raises(TypeError) as error:
        cell.backward(not_a_cache, {})
    assert_message(error, [r"\bcache must be the \w+Cache", re.escape(f"got {type(not_a_cache).__name__}")],
                   f"cell={cell.name} backend={backend}")
    assert calls == []


def test_backward_rejects_another_cells_cache(kernel_calls):
    cell, backend, calls = kernel_calls
    other = next(o for o in CELLS if o.backward_fn is not cell.backward_fn)
    _, _, cache = other.forward(call_args(other, valid_arrays(other)), "python")
    calls.clear()
    with pytest.raises(TypeError, match=r"\bcache must be the \w+Cache.*got " + type(cache).__name__):
        cell.backward(cache, {})
    assert calls == []


def test_backward_without_cache_from_inference(kernel_calls):
    """requires_grad=False gives no cache; passing that None on is a TypeError saying so."""
    cell, backend, _ = kernel_calls
    _, _, cache = cell.forward(call_args(cell, valid_arrays(cell)), backend, requires_grad=False)
    assert cache is None
    with pytest.raises(TypeError, match=r"requires_grad=True.*got NoneType"):
        cell.backward(cache, {})


def test_kernel_spy_records_a_valid_call(kernel_calls):
    """Guard for the tests above: the recording wrapper does see kernel calls, so 'no call' means something."""
    cell, backend, calls = kernel_calls
    _, cache = forward(cell, backend)
    cell.backward(cache, {})
    assert calls == list(cell.kernel_names()), f"cell={cell.name} backend={backend}: {calls}"


def test_every_exception_is_a_value_or_type_error():
    for cls in (fastrnn.ShapeError, fastrnn.NonFiniteError, fastrnn.ArgumentError, fastrnn.UnknownBackendError,
                fastrnn.BackendUnavailableError, fastrnn.StaleCacheError):
        assert issubclass(cls, ValueError) and issubclass(cls, fastrnn.FastRNNError), cls
    assert issubclass(fastrnn.DTypeError, TypeError) and issubclass(fastrnn.DTypeError, fastrnn.FastRNNError)


# -- empty input is not an error -------------------------------------------------------------------


def empty_cases(cell):
    """id -> (dtype, batch_first)."""
    return {f"{np.dtype(dtype).name}-{'batch_first' if batch_first else 'time_major'}": (dtype, batch_first)
            for dtype in (np.float64, np.float32) for batch_first in (False, True)
            if cell.batch_first or not batch_first}


@pytest.mark.parametrize("kernel_calls, empty_case", with_cells(empty_cases), indirect=["kernel_calls"])
def test_zero_steps(kernel_calls, empty_case):
    """T=0: no output steps, the final states are the initial ones, their gradients are the final states'
    loss weights, every other gradient is zero; without initial states they are zeros."""
    cell, backend, _ = kernel_calls
    dtype, batch_first = empty_cases(cell)[empty_case]
    context = f"cell={cell.name} backend={backend} dtype={np.dtype(dtype).name} (T, B, D, H)=(0, {B}, {D}, {H})"
    arrays = valid_arrays(cell, dtype)
    arrays["x"] = np.zeros((B, 0, D) if batch_first else (0, B, D), dtype)
    arrays["dy"] = np.zeros((B, 0) + arrays["dy"].shape[2:] if batch_first else (0,) + arrays["dy"].shape[1:], dtype)
    y, states, cache = cell.forward(call_args(cell, arrays), backend, batch_first=batch_first)
    assert y.shape == arrays["dy"].shape and y.dtype == dtype, context
    for name, final in zip(cell.states, cell.final_states):
        assert states[final].dtype == dtype, context
        np.testing.assert_array_equal(states[final], arrays[name], err_msg=f"{context}: {final}")
    grads = cell.backward(cache, arrays)
    assert grads["x"].shape == arrays["x"].shape, context
    for name, final in zip(cell.states, cell.final_states):
        np.testing.assert_array_equal(grads[name], arrays["d" + final], err_msg=f"{context}: gradient {name}")
    for name in cell.weights + ("b_ih", "b_hh"):
        assert grads[name].shape == arrays[name].shape and grads[name].dtype == dtype, f"{context}: {name}"
        assert not grads[name].any(), f"{context}: gradient {name} is not zero"
    no_states = {name: value for name, value in call_args(cell, arrays).items() if name not in cell.states}
    _, states, cache = cell.forward(no_states, backend, batch_first=batch_first)
    assert not any(value.any() for value in states.values()), context
    assert not any(cell.backward(cache, {})[name].any() for name in cell.states), context


@pytest.mark.parametrize("kernel_calls, empty_case", with_cells(empty_cases), indirect=["kernel_calls"])
def test_zero_batch(kernel_calls, empty_case):
    """B=0: empty outputs and gradients of the right shapes, zero weight gradients."""
    cell, backend, _ = kernel_calls
    dtype, batch_first = empty_cases(cell)[empty_case]
    context = f"cell={cell.name} backend={backend} dtype={np.dtype(dtype).name} (T, B, D, H)=({T}, 0, {D}, {H})"
    arrays = valid_arrays(cell, dtype)
    for name in cell.states + ("x", "dy") + tuple("d" + final for final in cell.final_states):
        value = arrays[name]
        arrays[name] = value[:, :0] if name in ("x", "dy") else value[:0]
        if batch_first and name in ("x", "dy"):
            arrays[name] = np.ascontiguousarray(arrays[name].transpose(1, 0, 2))
    y, states, cache = cell.forward(call_args(cell, arrays), backend, batch_first=batch_first)
    assert y.shape == arrays["dy"].shape and y.dtype == dtype, context
    for name, final in zip(cell.states, cell.final_states):
        assert states[final].shape == arrays[name].shape and states[final].dtype == dtype, f"{context}: {final}"
    grads = cell.backward(cache, arrays)
    for name in ("x",) + cell.states:
        assert grads[name].shape == arrays[name].shape, f"{context}: gradient {name}"
    for name in cell.weights + ("b_ih", "b_hh"):
        assert grads[name].shape == arrays[name].shape and grads[name].dtype == dtype, f"{context}: {name}"
        assert not grads[name].any(), f"{context}: gradient {name} is not zero"


@pytest.mark.parametrize("D, H", [(0, 4), (3, 0), (0, 0)], ids=["D=0", "H=0", "D=H=0"])
def test_zero_features_or_units(kernel_calls, D, H):
    """D=0 or H=0 either runs, giving the reference's results, or raises a fastrnn error before any
    kernel runs; never a raw error from inside a kernel."""
    cell, backend, _ = kernel_calls
    case = Case("empty_features", seed=52, T=3, B=2, D=D, H=H, P=max(H - 1, 0))
    context = case.describe(cell, backend, np.float64)
    shapes = cell.shapes(*case.shape, case.proj_size)
    arrays = {name: np.random.default_rng(0).uniform(-0.5, 0.5, shape) for name, shape in shapes.items()}
    try:
        y, states, cache = cell.forward(call_args(cell, arrays), backend)
        grads = cell.backward(cache, arrays)
    except fastrnn.FastRNNError:
        return
    except Exception as error:
        pytest.fail(f"{context}: raw {type(error).__name__} from inside the call: {error}")
    y_ref, states_ref, cache_ref = cell.forward(call_args(cell, arrays), "python")
    expected = collect(cell, y_ref, states_ref, cell.backward(cache_ref, arrays), False)
    assert_results_close(collect(cell, y, states, grads, False), expected, BACKEND_VS_REFERENCE[np.dtype(np.float64)],
                         context)
