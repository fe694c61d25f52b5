"""The functional API: one recurrent layer's forward pass and its BPTT, NumPy in, NumPy out.

Each function validates its arguments (raising before any kernel runs),
converts them once to the kernel layout (time-major, C-contiguous, one dtype),
allocates the outputs and workspace, picks the backend and calls its kernel.
Weights use PyTorch's layout: ``w_ih`` of shape (G*H, D), ``w_hh`` of shape
(G*H, H), biases of shape (G*H,), with G gates per cell.

Do not modify the arrays passed to a forward call in place before the matching
backward call: the cache refers to them rather than copying them.
"""

import numpy as np

from fastrnn import _backends
from fastrnn._parallel import batch_chunks, default_n_threads, time_blocks
from fastrnn._validation import (
    as_float_array,
    check_choice,
    check_finite,
    check_n_threads,
    check_ndim,
    check_shape,
    compute_dtype,
    kernel_array,
)
from fastrnn.exceptions import ShapeError, StaleCacheError

__all__ = ["rnn_forward", "rnn_backward", "RNNCache"]

NONLINEARITIES = ("tanh", "relu")


class _Layer:
    """A layer's inputs after validation, in kernel layout.

    Attributes
    ----------
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G*H, D)
    w_hh : ndarray of shape (G*H, H)
    b_ih, b_hh : ndarray of shape (G*H,) or None
    states : list of ndarray of shape (B, H)
        Initial states (zeros where the caller gave none).
    """

    def __init__(self, x, w_ih, w_hh, b_ih, b_hh, states, *, gates, cell, batch_first):
        named = [("x", as_float_array("x", x)), ("w_ih", as_float_array("w_ih", w_ih)),
                 ("w_hh", as_float_array("w_hh", w_hh))]
        for name, value in [("b_ih", b_ih), ("b_hh", b_hh), *states]:
            if value is not None:
                named.append((name, as_float_array(name, value)))
        arrays = dict(named)
        self.dtype = compute_dtype(named)

        x, w_ih, w_hh = arrays["x"], arrays["w_ih"], arrays["w_hh"]
        check_ndim("x", x, 3, "(B, T, D) with batch_first=True" if batch_first else "(T, B, D)")
        check_ndim("w_hh", w_hh, 2, f"({gates}*H, H)" if gates > 1 else "(H, H)")
        check_ndim("w_ih", w_ih, 2, f"({gates}*H, D)" if gates > 1 else "(H, D)")
        rows = w_hh.shape[0]
        if gates > 1 and rows % gates:
            raise ShapeError(
                f"w_hh must have {gates}*H rows for a {cell} ({gates} gates); got shape {w_hh.shape}"
            )
        H = rows // gates
        if batch_first:
            x = x.transpose(1, 0, 2)
        T, B, D = x.shape
        check_shape("w_hh", w_hh, (gates * H, H), f"{gates}*H rows and H columns, H = hidden size"
                    if gates > 1 else "H x H, H = hidden size from w_hh")
        check_shape("w_ih", w_ih, (gates * H, D),
                    f"{gates * H} rows like w_hh, and D = {D} columns like the features of x")
        for name in ("b_ih", "b_hh"):
            if name in arrays:
                check_ndim(name, arrays[name], 1, f"({gates * H},)")
                check_shape(name, arrays[name], (gates * H,), "one entry per row of w_hh")
        for name, _ in states:
            if name in arrays:
                check_ndim(name, arrays[name], 2, "(B, H)")
                check_shape(name, arrays[name], (B, H), f"B = {B} batch rows of x, H = {H} hidden units")
        for name in ("w_ih", "w_hh", "b_ih", "b_hh", *(name for name, _ in states)):
            if name in arrays:
                check_finite(name, arrays[name])

        self.T, self.B, self.D, self.H = T, B, D, H
        self.gates = gates
        self.batch_first = batch_first
        self.x = kernel_array(x, self.dtype)
        self.w_ih = kernel_array(w_ih, self.dtype)
        self.w_hh = kernel_array(w_hh, self.dtype)
        self.b_ih = kernel_array(arrays["b_ih"], self.dtype) if "b_ih" in arrays else None
        self.b_hh = kernel_array(arrays["b_hh"], self.dtype) if "b_hh" in arrays else None
        self.states = [
            kernel_array(arrays[name], self.dtype) if name in arrays else np.zeros((B, H), self.dtype)
            for name, _ in states
        ]

    def summed_bias(self):
        """``b_ih + b_hh`` (zeros for a missing one): the kernels take the sum."""
        bias = np.zeros(self.gates * self.H, self.dtype)
        for b in (self.b_ih, self.b_hh):
            if b is not None:
                bias += b
        return bias

    def n_threads(self, n_threads):
        """The caller's thread count, or one chosen from the problem size."""
        if n_threads is not None:
            return int(n_threads)
        pieces = max(
            len(batch_chunks(self.B, self.H, self.gates)) - 1,
            len(time_blocks(self.T, self.B, self.D * self.gates * self.H)) - 1,
        )
        return default_n_threads(pieces)

    def to_user_layout(self, array):
        """A time-major result in the caller's layout (a view)."""
        return array.transpose(1, 0, 2) if self.batch_first else array


class RNNCache:
    """What :func:`rnn_forward` keeps for :func:`rnn_backward`.

    Attributes
    ----------
    backend : str
        The backend that ran the forward pass; the backward pass uses it too.
    n_threads : int
    nonlinearity : {"tanh", "relu"}
    batch_first : bool
    has_b_ih, has_b_hh : bool
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (H, D)
    w_hh : ndarray of shape (H, H)
    h0 : ndarray of shape (B, H)
    y : ndarray of shape (T, B, H)
        The forward output, which is also the whole BPTT workspace of this cell.
    """

    def __init__(self, layer, y, nonlinearity, backend, n_threads):
        self.backend = backend
        self.n_threads = n_threads
        self.nonlinearity = nonlinearity
        self.batch_first = layer.batch_first
        self.has_b_ih = layer.b_ih is not None
        self.has_b_hh = layer.b_hh is not None
        self.x, self.w_ih, self.w_hh, self.h0, self.y = layer.x, layer.w_ih, layer.w_hh, layer.states[0], y
        self._shapes = {name: (a.shape, a.dtype) for name, a in self._arrays()}

    def _arrays(self):
        return [("x", self.x), ("w_ih", self.w_ih), ("w_hh", self.w_hh), ("h0", self.h0), ("y", self.y)]

    def check_unchanged(self):
        """Raise :class:`StaleCacheError` if an array was replaced by one of another shape or dtype."""
        for name, array in self._arrays():
            shape, dtype = self._shapes[name]
            if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
                given = getattr(array, "shape", type(array).__name__)
                raise StaleCacheError(
                    f"the cache's {name} was changed after the forward pass: expected an array of "
                    f"shape {shape} and dtype {dtype}, found {given}; run rnn_forward again"
                )


def _read_only_view(array):
    view = array.view()
    view.flags.writeable = False
    return view


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, nonlinearity="tanh",
                batch_first=False, backend=None, n_threads=None, requires_grad=True):
    r"""Run an Elman (SimpleRNN) layer over a sequence: :math:`h_t = \phi(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    Parameters
    ----------
    x : array_like of shape (T, B, D), or (B, T, D) if ``batch_first``
        Input sequence.
    w_ih : array_like of shape (H, D)
        Input-to-hidden weights (PyTorch's ``weight_ih_l0``).
    w_hh : array_like of shape (H, H)
        Hidden-to-hidden weights (``weight_hh_l0``).
    b_ih, b_hh : array_like of shape (H,), optional
        Biases; a missing one counts as zero.
    h0 : array_like of shape (B, H), optional
        Initial hidden state; zeros by default.
    nonlinearity : {"tanh", "relu"}
    batch_first : bool
        ``x`` and ``y`` have the batch first.
    backend : {"cython", "numba", "python", "auto"}, optional
        Overrides :func:`fastrnn.use_backend` and ``FASTRNN_BACKEND``.
    n_threads : int, optional
        Threads to use; by default chosen from the problem size. Results do
        not depend on it.
    requires_grad : bool
        Keep a cache for :func:`rnn_backward`. With ``False`` the forward pass
        needs no memory beyond its outputs.

    Returns
    -------
    y : ndarray of shape (T, B, H), or (B, T, H) if ``batch_first``
        Hidden state at every step. Read-only while a cache refers to it.
    h_n : ndarray of shape (B, H)
        Hidden state after the last step.
    cache : RNNCache or None
        ``None`` when ``requires_grad`` is false.

    Notes
    -----
    Arrays of any layout are accepted and converted once; see
    :mod:`fastrnn._validation` for the dtype rule (float32 stays float32,
    float64 stays float64, float16 computes in float32, mixes are an error).
    """
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    check_n_threads(n_threads)
    backend_name, kernels = _backends.resolve(backend)
    layer = _Layer(x, w_ih, w_hh, b_ih, b_hh, [("h0", h0)], gates=1, cell="RNN",
                   batch_first=batch_first)
    T, B, H = layer.T, layer.B, layer.H
    h0 = layer.states[0]
    threads = layer.n_threads(n_threads)

    y = np.empty((T, B, H), layer.dtype)
    if T == 0 or B == 0:
        h_n = h0.copy()
    else:
        h_n = np.empty((B, H), layer.dtype)
        kernels.rnn_forward(layer.x, layer.w_ih, layer.w_hh, layer.summed_bias(), h0,
                            nonlinearity == "relu", y, h_n, threads)
    if not requires_grad:
        return layer.to_user_layout(y), h_n, None
    cache = RNNCache(layer, y, nonlinearity, backend_name, threads)
    return layer.to_user_layout(_read_only_view(y)), h_n, cache


def _gradient_input(name, value, shape, user_shape, dtype, batch_first):
    """A gradient argument (``dy``, ``dh_n``): zeros when ``None``, else validated and converted."""
    if value is None:
        return np.zeros(shape, dtype)
    array = as_float_array(name, value)
    check_shape(name, array, user_shape, "the shape of the matching forward output")
    if batch_first and array.ndim == 3:
        array = array.transpose(1, 0, 2)
    return kernel_array(array, dtype)


def rnn_backward(cache, dy=None, dh_n=None):
    """Backpropagate through the layer run by :func:`rnn_forward`.

    Parameters
    ----------
    cache : RNNCache
        From ``rnn_forward(..., requires_grad=True)``.
    dy : array_like of shape like ``y``, optional
        Gradient of the loss with respect to ``y``; zeros by default.
    dh_n : array_like of shape (B, H), optional
        Gradient of the loss with respect to ``h_n``; zeros by default.

    Returns
    -------
    dict of str to ndarray
        ``"x"``, ``"h0"``, ``"w_ih"``, ``"w_hh"``, and ``"b_ih"`` / ``"b_hh"``
        for the biases the forward pass was given, each shaped like its input
        (``"x"`` batch-first if the forward pass was).
    """
    if not isinstance(cache, RNNCache):
        raise TypeError(
            f"cache must be the RNNCache returned by rnn_forward(..., requires_grad=True); "
            f"got {type(cache).__name__}"
        )
    cache.check_unchanged()
    T, B, D = cache.x.shape
    H = cache.w_hh.shape[0]
    dtype = cache.x.dtype
    user_y_shape = (B, T, H) if cache.batch_first else (T, B, H)
    dy = _gradient_input("dy", dy, (T, B, H), user_y_shape, dtype, cache.batch_first)
    dh_n = _gradient_input("dh_n", dh_n, (B, H), (B, H), dtype, False)

    dx = np.empty((T, B, D), dtype)
    dh0 = np.empty((B, H), dtype)
    dw_ih = np.zeros((H, D), dtype)
    dw_hh = np.zeros((H, H), dtype)
    db = np.zeros(H, dtype)
    if T == 0 or B == 0:
        dh0[...] = dh_n
    else:
        _, kernels = _backends.resolve(cache.backend)
        dz = np.empty((T, B, H), dtype)
        kernels.rnn_backward(cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.y, dy, dh_n,
                             cache.nonlinearity == "relu", dz, dx, dh0, dw_ih, dw_hh, db,
                             cache.n_threads)
    grads = {"x": dx.transpose(1, 0, 2) if cache.batch_first else dx, "h0": dh0,
             "w_ih": dw_ih, "w_hh": dw_hh}
    if cache.has_b_ih:
        grads["b_ih"] = db
    if cache.has_b_hh:
        grads["b_hh"] = db.copy() if cache.has_b_ih else db
    return grads
