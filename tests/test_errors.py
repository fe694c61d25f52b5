"""Bad input gets a clear exception before any kernel runs; empty input gets empty results.

Each error case checks the exception class (every one a ValueError or TypeError
subclass), that the message names the argument, what was expected and what was
given, and that no kernel was called. Every case runs on every backend.
"""

import re

import numpy as np
import pytest

import fastrnn
from fastrnn import _backends

T, B, D, H = 3, 2, 4, 5


def valid_arrays(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(T, B, D)).astype(dtype),
        "w_ih": rng.uniform(-0.4, 0.4, (H, D)).astype(dtype),
        "w_hh": rng.uniform(-0.4, 0.4, (H, H)).astype(dtype),
        "b_ih": rng.uniform(-0.4, 0.4, H).astype(dtype),
        "b_hh": rng.uniform(-0.4, 0.4, H).astype(dtype),
        "h0": rng.uniform(-0.5, 0.5, (B, H)).astype(dtype),
    }


@pytest.fixture
def kernel_calls(any_backend, monkeypatch):
    """The backend's kernels, wrapped to record each call; yields (backend name, list of calls)."""
    _, module = _backends.resolve(any_backend)
    calls = []
    for name in ("rnn_forward", "rnn_backward"):
        kernel = getattr(module, name)

        def recording(*args, _kernel=kernel, _name=name):
            calls.append(_name)
            return _kernel(*args)

        monkeypatch.setattr(module, name, recording)
    return any_backend, calls


def with_(name, value):
    """A change to the valid arguments: set ``name`` to ``value`` (a function of the valid arrays)."""
    def change(arrays):
        arrays[name] = value(arrays) if callable(value) else value
    return change


def nan_at(name, bad=np.nan):
    def change(arrays):
        arrays[name] = arrays[name].copy()
        arrays[name].flat[1] = bad
    return change


def all_dtype(dtype):
    def change(arrays):
        for key in arrays:
            arrays[key] = arrays[key].astype(dtype)
    return change


def shape(*dims):
    return re.escape(str(tuple(dims)))


#: id -> (change to the valid call, exception class, regular expressions the message must match)
FORWARD_ERRORS = {
    # wrong number of dimensions
    "x_2d": (with_("x", lambda a: a["x"][0]), fastrnn.ShapeError,
             [r"\bx must be 3-dimensional", re.escape("(T, B, D)"), "got shape " + shape(B, D)]),
    "x_4d": (with_("x", lambda a: a["x"][None]), fastrnn.ShapeError,
             [r"\bx must be 3-dimensional", "got shape " + shape(1, T, B, D)]),
    "w_ih_1d": (with_("w_ih", lambda a: a["w_ih"][0]), fastrnn.ShapeError,
                [r"\bw_ih must be 2-dimensional", "got shape " + shape(D)]),
    "w_hh_3d": (with_("w_hh", lambda a: a["w_hh"][None]), fastrnn.ShapeError,
                [r"\bw_hh must be 2-dimensional", "got shape " + shape(1, H, H)]),
    "b_hh_2d": (with_("b_hh", lambda a: a["b_hh"][None]), fastrnn.ShapeError,
                [r"\bb_hh must be 1-dimensional", "got shape " + shape(1, H)]),
    "h0_3d_like_torch": (with_("h0", lambda a: a["h0"][None]), fastrnn.ShapeError,
                         [r"\bh0 must be 2-dimensional", "got shape " + shape(1, B, H)]),
    # sizes that do not match
    "w_hh_not_square": (with_("w_hh", lambda a: a["w_hh"][:, :H - 1]), fastrnn.ShapeError,
                        [r"\bw_hh must have shape " + shape(H, H), "got shape " + shape(H, H - 1)]),
    "w_ih_rows_not_H": (with_("w_ih", lambda a: a["w_ih"][:H - 1]), fastrnn.ShapeError,
                        [r"\bw_ih must have shape " + shape(H, D), "got shape " + shape(H - 1, D)]),
    "w_ih_columns_not_D": (with_("w_ih", lambda a: a["w_ih"][:, :D - 1]), fastrnn.ShapeError,
                           [r"\bw_ih must have shape " + shape(H, D), "got shape " + shape(H, D - 1)]),
    "b_ih_length": (with_("b_ih", lambda a: a["b_ih"][:H - 1]), fastrnn.ShapeError,
                    [r"\bb_ih must have shape " + shape(H), "got shape " + shape(H - 1)]),
    "b_hh_length": (with_("b_hh", lambda a: np.concatenate([a["b_hh"], [0.0]])), fastrnn.ShapeError,
                    [r"\bb_hh must have shape " + shape(H), "got shape " + shape(H + 1)]),
    "h0_batch": (with_("h0", lambda a: np.zeros((B + 1, H))), fastrnn.ShapeError,
                 [r"\bh0 must have shape " + shape(B, H), "got shape " + shape(B + 1, H)]),
    "h0_hidden": (with_("h0", lambda a: np.zeros((B, H + 1))), fastrnn.ShapeError,
                  [r"\bh0 must have shape " + shape(B, H), "got shape " + shape(B, H + 1)]),
    "x_batch_major_without_batch_first": (with_("x", lambda a: np.ascontiguousarray(a["x"].transpose(1, 0, 2))),
                                          fastrnn.ShapeError,
                                          [r"\bh0 must have shape " + shape(T, H), "got shape " + shape(B, H)]),
    # dtypes
    "x_int": (with_("x", lambda a: np.ones((T, B, D), np.int64)), fastrnn.DTypeError,
              [r"\bx must be a float32 or float64 array", "got dtype int64"]),
    "w_hh_bool": (with_("w_hh", lambda a: np.ones((H, H), bool)), fastrnn.DTypeError,
                  [r"\bw_hh must be a float32 or float64 array", "got dtype bool"]),
    "h0_complex": (with_("h0", lambda a: a["h0"].astype(np.complex128)), fastrnn.DTypeError,
                   [r"\bh0 must be a float32 or float64 array", "got dtype complex128"]),
    "b_ih_strings": (with_("b_ih", ["a"] * H), fastrnn.DTypeError,
                     [r"\bb_ih must be a float32 or float64 array", "got dtype <U1"]),
    "x_float32_weights_float64": (with_("x", lambda a: a["x"].astype(np.float32)), fastrnn.DTypeError,
                                  [r"\bx is float32 but w_ih is float64"]),
    "h0_float32_rest_float64": (with_("h0", lambda a: a["h0"].astype(np.float32)), fastrnn.DTypeError,
                                [r"\bx is float64 but h0 is float32"]),
    # NaN and infinity in weights and the initial state
    "w_ih_nan": (nan_at("w_ih"), fastrnn.NonFiniteError, [r"\bw_ih must be finite", "1 NaN or infinite"]),
    "w_hh_inf": (nan_at("w_hh", np.inf), fastrnn.NonFiniteError, [r"\bw_hh must be finite", "1 NaN or infinite"]),
    "b_ih_nan": (nan_at("b_ih"), fastrnn.NonFiniteError, [r"\bb_ih must be finite", "1 NaN or infinite"]),
    "b_hh_minus_inf": (nan_at("b_hh", -np.inf), fastrnn.NonFiniteError, [r"\bb_hh must be finite"]),
    "h0_nan": (nan_at("h0"), fastrnn.NonFiniteError, [r"\bh0 must be finite", "1 NaN or infinite"]),
}

if np.dtype(np.longdouble).itemsize > 8:  # a float type fastrnn does not compute in
    FORWARD_ERRORS["all_longdouble"] = (all_dtype(np.longdouble), fastrnn.DTypeError,
                                        [r"\bx must be float32 or float64", re.escape(f"got dtype {np.dtype(np.longdouble)}")])


def assert_message(error, patterns, context):
    message = str(error.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{context}: message {message!r} does not match {pattern!r}"


@pytest.mark.parametrize("error_id", list(FORWARD_ERRORS))
def test_forward_rejects_bad_input(error_id, kernel_calls):
    backend, calls = kernel_calls
    change, error_class, patterns = FORWARD_ERRORS[error_id]
    arrays = valid_arrays()
    change(arrays)
    with pytest.raises(error_class) as error:
        fastrnn.rnn_forward(**arrays, backend=backend)
    assert isinstance(error.value, (ValueError, TypeError))
    assert_message(error, patterns, f"cell=RNN backend={backend} case={error_id}")
    assert calls == [], f"backend={backend} case={error_id}: a kernel ran before the error: {calls}"


def test_batch_first_mismatch_names_batch_first(kernel_calls):
    """With batch_first=True the batch is x's first axis, and the message spells that layout."""
    backend, calls = kernel_calls
    arrays = valid_arrays()   # x is (T, B, D) = (3, 2, 4): read batch-first, B = 3, so h0 (2, 5) is wrong
    with pytest.raises(fastrnn.ShapeError, match=r"\bh0 must have shape " + shape(T, H)):
        fastrnn.rnn_forward(**arrays, batch_first=True, backend=backend)
    with pytest.raises(fastrnn.ShapeError, match=re.escape("(B, T, D) with batch_first=True")):
        fastrnn.rnn_forward(**dict(arrays, x=arrays["x"][0]), batch_first=True, backend=backend)
    assert calls == []


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "Tanh", None, ""])
def test_unknown_nonlinearity(nonlinearity, kernel_calls):
    backend, calls = kernel_calls
    with pytest.raises(fastrnn.ArgumentError) as error:
        fastrnn.rnn_forward(**valid_arrays(), nonlinearity=nonlinearity, backend=backend)
    assert isinstance(error.value, ValueError)
    assert_message(error, [r"\bnonlinearity must be one of 'tanh', 'relu'", re.escape(f"got {nonlinearity!r}")],
                   f"backend={backend}")
    assert calls == []


@pytest.mark.parametrize("n_threads", [0, -2, 1.5, "2", True])
def test_bad_n_threads(n_threads, kernel_calls):
    backend, calls = kernel_calls
    with pytest.raises(fastrnn.ArgumentError) as error:
        fastrnn.rnn_forward(**valid_arrays(), n_threads=n_threads, backend=backend)
    assert_message(error, [r"\bn_threads must be None or a positive integer", re.escape(f"got {n_threads!r}")],
                   f"backend={backend}")
    assert calls == []


@pytest.mark.parametrize("name", ["fortran", "Numba", "", 3])
def test_unknown_backend(name):
    with pytest.raises(fastrnn.UnknownBackendError) as error:
        fastrnn.rnn_forward(**valid_arrays(), backend=name)
    assert isinstance(error.value, ValueError)
    assert_message(error, [r"\bbackend must be one of 'cython', 'numba', 'python', 'auto'", re.escape(f"got {name!r}")],
                   "unknown backend")


# ------------------------------------------------------------------------------------------
# rnn_backward
# ------------------------------------------------------------------------------------------


def forward(backend, batch_first=False, **changes):
    arrays = dict(valid_arrays(), **changes)
    if batch_first:
        arrays["x"] = np.ascontiguousarray(arrays["x"].transpose(1, 0, 2))
    y, h_n, cache = fastrnn.rnn_forward(**arrays, batch_first=batch_first, backend=backend)
    return arrays, cache


def test_stale_cache_after_x_reshaped_in_place(kernel_calls):
    backend, calls = kernel_calls
    arrays, cache = forward(backend)
    arrays["x"].shape = (T * B, D)    # the cache refers to the caller's x, which changed shape
    calls.clear()
    with pytest.raises(fastrnn.StaleCacheError) as error:
        fastrnn.rnn_backward(cache, dy=np.ones((T, B, H)))
    assert isinstance(error.value, ValueError)
    assert_message(error, [r"\bx was changed", "expected an array of shape " + shape(T, B, D),
                           "found " + shape(T * B, D)], f"backend={backend}")
    assert calls == []


def test_stale_cache_after_h0_reshaped_in_place(kernel_calls):
    backend, calls = kernel_calls
    arrays, cache = forward(backend)
    arrays["h0"].shape = (H, B)
    calls.clear()
    with pytest.raises(fastrnn.StaleCacheError, match=r"\bh0 was changed.*" + shape(B, H) + ".*found " + shape(H, B)):
        fastrnn.rnn_backward(cache, dh_n=np.ones((B, H)))
    assert calls == []


def test_stale_cache_after_weight_replaced(kernel_calls):
    backend, calls = kernel_calls
    _, cache = forward(backend)
    cache.w_hh = np.zeros((H + 1, H + 1))
    calls.clear()
    with pytest.raises(fastrnn.StaleCacheError, match=r"\bw_hh was changed.*found " + shape(H + 1, H + 1)):
        fastrnn.rnn_backward(cache, dh_n=np.ones((B, H)))
    assert calls == []


BACKWARD_ERRORS = {
    "dy_hidden": (dict(dy=np.ones((T, B, H + 1))), False, fastrnn.ShapeError,
                  [r"\bdy must have shape " + shape(T, B, H), "got shape " + shape(T, B, H + 1)]),
    "dy_time_major_for_batch_first": (dict(dy=np.ones((T, B, H))), True, fastrnn.ShapeError,
                                      [r"\bdy must have shape " + shape(B, T, H), "got shape " + shape(T, B, H)]),
    "dy_2d": (dict(dy=np.ones((T, H))), False, fastrnn.ShapeError, [r"\bdy must have shape", "got shape " + shape(T, H)]),
    "dh_n_3d_like_torch": (dict(dh_n=np.ones((1, B, H))), False, fastrnn.ShapeError,
                           [r"\bdh_n must have shape " + shape(B, H), "got shape " + shape(1, B, H)]),
    "dh_n_batch": (dict(dh_n=np.ones((B + 1, H))), False, fastrnn.ShapeError,
                   [r"\bdh_n must have shape " + shape(B, H), "got shape " + shape(B + 1, H)]),
    "dy_int": (dict(dy=np.ones((T, B, H), np.int32)), False, fastrnn.DTypeError,
               [r"\bdy must be a float32 or float64 array", "got dtype int32"]),
}


@pytest.mark.parametrize("error_id", list(BACKWARD_ERRORS))
def test_backward_rejects_bad_gradients(error_id, kernel_calls):
    backend, calls = kernel_calls
    gradients, batch_first, error_class, patterns = BACKWARD_ERRORS[error_id]
    _, cache = forward(backend, batch_first=batch_first)
    calls.clear()
    with pytest.raises(error_class) as error:
        fastrnn.rnn_backward(cache, **gradients)
    assert_message(error, patterns, f"cell=RNN backend={backend} case={error_id}")
    assert calls == []


@pytest.mark.parametrize("not_a_cache", [None, {}, "cache", (1, 2, 3)], ids=["None", "dict", "str", "tuple"])
def test_backward_rejects_what_is_not_a_cache(not_a_cache, kernel_calls):
    backend, calls = kernel_calls
    with pytest.raises(TypeError) as error:
        fastrnn.rnn_backward(not_a_cache)
    assert_message(error, [r"\bcache must be the RNNCache", re.escape(f"got {type(not_a_cache).__name__}")],
                   f"backend={backend}")
    assert calls == []


def test_backward_without_cache_from_inference(any_backend):
    """requires_grad=False gives no cache; passing that None to rnn_backward is a TypeError saying so."""
    _, _, cache = fastrnn.rnn_forward(**valid_arrays(), backend=any_backend, requires_grad=False)
    assert cache is None
    with pytest.raises(TypeError, match=r"requires_grad=True.*got NoneType"):
        fastrnn.rnn_backward(cache)


def test_every_exception_is_a_value_or_type_error():
    for cls in (fastrnn.ShapeError, fastrnn.NonFiniteError, fastrnn.ArgumentError, fastrnn.UnknownBackendError,
                fastrnn.BackendUnavailableError, fastrnn.StaleCacheError):
        assert issubclass(cls, ValueError) and issubclass(cls, fastrnn.FastRNNError), cls
    assert issubclass(fastrnn.DTypeError, TypeError) and issubclass(fastrnn.DTypeError, fastrnn.FastRNNError)


# ------------------------------------------------------------------------------------------
# Empty input is not an error
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_zero_steps(any_backend, dtype, batch_first):
    """T=0: no output steps, h_n is h0, the gradient of h0 is dh_n, every other gradient is zero."""
    context = f"cell=RNN backend={any_backend} dtype={np.dtype(dtype).name} (T, B, D, H)=(0, {B}, {D}, {H})"
    arrays = valid_arrays(dtype)
    arrays["x"] = np.zeros((B, 0, D) if batch_first else (0, B, D), dtype)
    y, h_n, cache = fastrnn.rnn_forward(**arrays, batch_first=batch_first, backend=any_backend)
    assert y.shape == ((B, 0, H) if batch_first else (0, B, H)) and y.dtype == dtype, context
    assert h_n.shape == (B, H) and h_n.dtype == dtype, context
    np.testing.assert_array_equal(h_n, arrays["h0"], err_msg=context)
    dh_n = np.arange(B * H, dtype=dtype).reshape(B, H)
    grads = fastrnn.rnn_backward(cache, dy=np.zeros(y.shape, dtype), dh_n=dh_n)
    assert grads["x"].shape == arrays["x"].shape, context
    np.testing.assert_array_equal(grads["h0"], dh_n, err_msg=context)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert grads[name].shape == arrays[name].shape and grads[name].dtype == dtype, f"{context}: {name}"
        assert not grads[name].any(), f"{context}: gradient {name} is not zero"
    # without h0 the state stays at its default, zeros; without dh_n its gradient is zero
    y, h_n, cache = fastrnn.rnn_forward(arrays["x"], arrays["w_ih"], arrays["w_hh"], batch_first=batch_first,
                                        backend=any_backend)
    assert h_n.shape == (B, H) and not h_n.any(), context
    assert not fastrnn.rnn_backward(cache)["h0"].any(), context


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_zero_batch(any_backend, dtype, batch_first):
    """B=0: empty outputs and gradients of the right shapes, zero weight gradients."""
    context = f"cell=RNN backend={any_backend} dtype={np.dtype(dtype).name} (T, B, D, H)=({T}, 0, {D}, {H})"
    arrays = valid_arrays(dtype)
    arrays["x"] = np.zeros((0, T, D) if batch_first else (T, 0, D), dtype)
    arrays["h0"] = np.zeros((0, H), dtype)
    y, h_n, cache = fastrnn.rnn_forward(**arrays, batch_first=batch_first, backend=any_backend)
    assert y.shape == ((0, T, H) if batch_first else (T, 0, H)) and y.dtype == dtype, context
    assert h_n.shape == (0, H) and h_n.dtype == dtype, context
    grads = fastrnn.rnn_backward(cache, dy=np.zeros(y.shape, dtype), dh_n=np.zeros((0, H), dtype))
    assert grads["x"].shape == arrays["x"].shape and grads["h0"].shape == (0, H), context
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        assert grads[name].shape == arrays[name].shape and grads[name].dtype == dtype, f"{context}: {name}"
        assert not grads[name].any(), f"{context}: gradient {name} is not zero"


def test_kernel_spy_records_a_valid_call(kernel_calls):
    """Guard for the tests above: the recording wrapper does see kernel calls, so 'no call' means something."""
    backend, calls = kernel_calls
    _, _, cache = fastrnn.rnn_forward(**valid_arrays(), backend=backend)
    fastrnn.rnn_backward(cache, dh_n=np.ones((B, H)))
    assert calls == ["rnn_forward", "rnn_backward"], f"backend={backend}: {calls}"


@pytest.mark.parametrize("D, H", [(0, 4), (3, 0), (0, 0)], ids=["D=0", "H=0", "D=H=0"])
def test_zero_features_or_units(any_backend, D, H):
    """D=0 or H=0 is well defined (x contributes nothing; or there is no state). Either the call works
    and gives h_t = tanh(b + h_{t-1} W_hh^T) with the right shapes, or it raises a fastrnn error
    before any kernel runs; never a raw error from inside a kernel."""
    T, B = 3, 2
    context = f"cell=RNN backend={any_backend} dtype=float64 (T, B, D, H)=({T}, {B}, {D}, {H})"
    rng = np.random.default_rng(0)
    x, w_ih = np.ones((T, B, D)), np.zeros((H, D))
    w_hh, b_ih, h0 = rng.uniform(-0.5, 0.5, (H, H)), rng.uniform(-0.5, 0.5, H), rng.uniform(-0.5, 0.5, (B, H))
    try:
        y, h_n, cache = fastrnn.rnn_forward(x, w_ih, w_hh, b_ih, None, h0, backend=any_backend)
        grads = fastrnn.rnn_backward(cache, dy=np.ones((T, B, H)), dh_n=np.ones((B, H)))
    except fastrnn.FastRNNError:
        return
    except Exception as error:
        pytest.fail(f"{context}: raw {type(error).__name__} from inside the call: {error}")
    h, expected = h0, []
    for _ in range(T):
        h = np.tanh(b_ih + h @ w_hh.T)
        expected.append(h)
    np.testing.assert_allclose(y, np.array(expected).reshape(T, B, H), rtol=1e-12, err_msg=context)
    assert h_n.shape == (B, H) and grads["x"].shape == (T, B, D) and grads["w_ih"].shape == (H, D), context
