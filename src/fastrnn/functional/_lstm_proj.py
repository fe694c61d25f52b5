r"""Functional API of the LSTM layer with a projection (PyTorch's ``proj_size``):
:func:`lstm_proj_forward` and :func:`lstm_proj_backward`.

The layer is PyTorch's ``torch.nn.LSTM(D, H, proj_size=P)`` for one layer and
one direction: the hidden state ``h`` is projected to ``P < H`` units by
``W_hr`` of shape (P, H) and fed back through ``W_hh`` of shape (4H, P); the
cell state keeps ``H`` units. Inputs are time-major only.

The kernels ``lstm_proj_forward`` / ``lstm_proj_backward`` exist in every
backend (:mod:`fastrnn._python.lstm_proj`, whose docstring has the equations
and the workspace, :mod:`fastrnn._numba.lstm_proj` and ``csrc/lstm_proj.pxi``)
and are chosen by the registry like those of every other cell; the backward
pass runs on the backend of its forward pass.
"""

import numpy as np

from fastrnn import _backends
from fastrnn._partition import projection_workspace_steps
from fastrnn._validation import (
    check_bool,
    as_float_array,
    check_finite,
    check_n_threads,
    check_ndim,
    check_shape,
    compute_dtype,
    kernel_array,
)
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.functional._packed_base import PackedWeights
from fastrnn.functional._precision import (call_precision, check_reduced_call, check_reduced_dtype,
                                           reduced_weights, resolve_reduced)
from fastrnn.functional._layer import (Layer, LayerCache, LayerGradients, backward_inputs,
                                       final_gradients_at_ends, forward_outputs, gradient_input,
                                       row_ends, states_at_ends)
from fastrnn.functional.cells import LSTM

__all__ = ["lstm_proj_forward", "lstm_proj_backward", "LSTMProjCache"]



class _ProjLayer:
    """The validated arguments of :func:`lstm_proj_forward`, time-major, C-contiguous, one dtype.

    Attributes
    ----------
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (4*H, D)
    w_hh : ndarray of shape (4*H, P)
    w_hr : ndarray of shape (P, H)
    b_ih, b_hh : ndarray of shape (4*H,) or None
    h0 : ndarray of shape (B, P)
    c0 : ndarray of shape (B, H)
    """

    batch_first = False  # LayerCache reads it; this layer is time-major only
    gates = LSTM.gates
    # the bias sum, the default thread count, the output layout and the final-state arrays are
    # every cell's: they read T, B, D, H, gates, dtype, the biases and batch_first, which this
    # class has too
    summed_bias = Layer.summed_bias
    n_threads = Layer.n_threads
    to_user_layout = Layer.to_user_layout
    has_steps = Layer.has_steps
    final_state_arrays = Layer.final_state_arrays

    def __init__(self, x, w_ih, w_hh, w_hr, b_ih, b_hh, h0, c0, weights_checked=False):
        # the weights are required (as_float_array refuses None); biases and states are optional
        named = [(name, as_float_array(name, value))
                 for name, value in [("x", x), ("w_ih", w_ih), ("w_hh", w_hh), ("w_hr", w_hr)]]
        for name, value in [("b_ih", b_ih), ("b_hh", b_hh), ("h0", h0), ("c0", c0)]:
            if value is not None:
                named.append((name, as_float_array(name, value)))
        arrays = dict(named)
        self.dtype = compute_dtype(named)

        x, w_ih, w_hh, w_hr = arrays["x"], arrays["w_ih"], arrays["w_hh"], arrays["w_hr"]
        check_ndim("x", x, 3, "(T, B, D) (time-major)")
        check_ndim("w_hr", w_hr, 2, "(P, H), P = proj_size < H = hidden size")
        check_ndim("w_ih", w_ih, 2, "(4*H, D)")
        check_ndim("w_hh", w_hh, 2, "(4*H, P)")
        # H and P come from w_hr, the one weight that holds both
        P, H = w_hr.shape
        if not 0 < P < H:
            raise ShapeError(
                f"w_hr must have shape (P, H) with 0 < P < H (proj_size smaller than hidden_size, "
                f"as torch.nn.LSTM requires); got shape {w_hr.shape}"
                + ("; use lstm_forward for an LSTM without projection" if P == 0 else "")
            )
        T, B, D = x.shape
        check_shape("w_ih", w_ih, (LSTM.gates * H, D),
                    f"4*H = {LSTM.gates * H} rows, H = {H} from w_hr, and D = {D} columns like the features of x")
        check_shape("w_hh", w_hh, (LSTM.gates * H, P),
                    f"4*H = {LSTM.gates * H} rows and P = {P} columns, (P, H) = {w_hr.shape} from w_hr")
        for name in ("b_ih", "b_hh"):
            if name in arrays:
                check_ndim(name, arrays[name], 1, f"({LSTM.gates * H},)")
                check_shape(name, arrays[name], (LSTM.gates * H,), f"4*H, H = {H} from w_hr")
        if "h0" in arrays:
            check_ndim("h0", arrays["h0"], 2, "(B, P)")
            check_shape("h0", arrays["h0"], (B, P), f"B = {B} batch rows of x, P = {P} rows of w_hr")
        if "c0" in arrays:
            check_ndim("c0", arrays["c0"], 2, "(B, H)")
            check_shape("c0", arrays["c0"], (B, H), f"B = {B} batch rows of x, H = {H} columns of w_hr")
        # packed weights (weights_checked) were checked when packed
        weights = () if weights_checked else ("w_ih", "w_hh", "w_hr", "b_ih", "b_hh")
        for name in (*weights, "h0", "c0"):
            if name in arrays:
                check_finite(name, arrays[name])

        self.T, self.B, self.D, self.H, self.P = T, B, D, H, P
        self.x = kernel_array(x, self.dtype)
        self.w_ih = kernel_array(w_ih, self.dtype)
        self.w_hh = kernel_array(w_hh, self.dtype)
        self.w_hr = kernel_array(w_hr, self.dtype)
        self.b_ih = kernel_array(arrays["b_ih"], self.dtype) if "b_ih" in arrays else None
        self.b_hh = kernel_array(arrays["b_hh"], self.dtype) if "b_hh" in arrays else None
        self.h0 = kernel_array(arrays["h0"], self.dtype) if "h0" in arrays else np.zeros((B, P), self.dtype)
        self.c0 = kernel_array(arrays["c0"], self.dtype) if "c0" in arrays else np.zeros((B, H), self.dtype)


class LSTMProjCache(LayerCache):
    """What :func:`lstm_proj_forward` keeps for :func:`lstm_proj_backward` (see :class:`LayerCache`).

    Attributes
    ----------
    w_hr : ndarray of shape (P, H)
    h0 : ndarray of shape (B, P)
    c0 : ndarray of shape (B, H)
    y : ndarray of shape (T, B, P)
    gates : ndarray of shape (T, B, 4*H)
        Activated gates of every step (workspace, see :mod:`fastrnn._python.lstm_proj`).
    c_all : ndarray of shape (T, B, H)
        Cell state of every step (workspace).
    m_all : ndarray of shape (T, B, H)
        ``o_t * tanh(c_t)`` of every step, before the projection (workspace).
    """

    ARRAYS = ("w_hr", "h0", "c0", "y", "gates", "c_all", "m_all")
    FORWARD = "lstm_proj_forward"


def lstm_proj_forward(x, w_ih, w_hh=None, w_hr=None, b_ih=None, b_hh=None, h0=None, c0=None, *, backend=None,
                      n_threads=None, requires_grad=True, ends=None, precision=None):
    r"""Run an LSTM layer with a projected hidden state over a sequence (``torch.nn.LSTM(proj_size=P)``).

    .. math::

        [i, f, g, o] &= [\sigma, \sigma, \tanh, \sigma](x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh}) \\
        c_t &= f \odot c_{t-1} + i \odot g, \qquad h_t = (o \odot \tanh(c_t))\, W_{hr}^T

    Parameters
    ----------
    x : array_like of shape (T, B, D)
        Input sequence, time-major.
    w_ih : array_like of shape (4*H, D), or PackedLSTM
        Input-to-hidden weights, blocks ``i, f, g, o`` (PyTorch's ``weight_ih_l0``); or every
        weight packed by ``fastrnn.pack_lstm(..., w_hr=...)``, with ``w_hh``, ``w_hr``,
        ``b_ih`` and ``b_hh`` omitted (the Cython kernels then run on its packed buffers,
        with no packing per call; weights packed under another ISA level raise
        StaleCacheError: pack them again).
    w_hh : array_like of shape (4*H, P)
        Hidden-to-hidden weights from the projected state (``weight_hh_l0``).
    w_hr : array_like of shape (P, H)
        Projection weights (``weight_hr_l0``), ``0 < P < H``. ``H`` and ``P``
        are read from this array.
    b_ih, b_hh : array_like of shape (4*H,), optional
        Biases; a missing one counts as zero.
    h0 : array_like of shape (B, P), optional
        Initial projected hidden state; zeros by default.
    c0 : array_like of shape (B, H), optional
        Initial cell state; zeros by default.
    backend : {"cython", "numba", "python", "auto"}, optional
        Overrides :func:`fastrnn.use_backend` and ``FASTRNN_BACKEND``.
    n_threads : int, optional
        Threads to use; by default chosen from the problem size, as for
        :func:`fastrnn.lstm_forward`. Results do not depend on it.
        An integer from 1 to 2**31 - 1 (else :class:`~fastrnn.exceptions.ArgumentError`);
        more than the cores this process may run on counts as one per core.
    requires_grad : bool
        Keep a cache for :func:`lstm_proj_backward`. With ``False`` nothing of
        the size of ``T`` is allocated beyond ``y``: the gates are kept for one
        block of steps only, and neither the cell state (unless ``ends`` needs
        it) nor the unprojected output of every step is stored.
    ends : array_like of int of shape (B,), optional
        Return as ``(h_n, c_n)`` each row's states after its first ``ends[b]``
        steps (0 gives ``(h0, c0)``), as :func:`~fastrnn.functional.lstm_forward`
        does (storing the cell state of every step, shape (T, B, H), even
        without ``requires_grad``); :func:`lstm_proj_backward` then lets
        ``dh_n`` and ``dc_n`` enter at those steps.
    precision : {"float32", "bf16", "int8"}, optional
        The precision of the layer's products: ``"bf16"`` rounds the weights to bfloat16,
        ``"int8"`` quantizes them per output row and the layer input and state per step and
        batch row (see :mod:`fastrnn._python.reduced`); biases, gate math and states stay
        float32. Both need float32 arrays. bf16 also trains: with ``requires_grad=True``
        the weights are rounded once for both passes and :func:`lstm_proj_backward` computes its
        products in bf16 too (float32 sums; float32 gradients of the float32 weights).
        int8 is inference only (``requires_grad=False``). Plain weights are rounded or
        quantized for this call; pack them once (``precision=`` of the packer) to convert
        them once (a bf16 training call packs its backward layer once per packed object). By default the packed weights'
        precision, float32 for arrays. Numba has no bf16/int8 kernels (``auto`` skips it).

    Returns
    -------
    y : ndarray of shape (T, B, P)
        Projected hidden state at every step. Read-only while a cache refers to it.
    (h_n, c_n) : tuple of ndarray of shape (B, P) and (B, H)
        Hidden and cell states after the last step.
    cache : LSTMProjCache or None
        ``None`` when ``requires_grad`` is false.

    Raises
    ------
    ShapeError
        For an array of the wrong shape, or ``w_hr`` without ``0 < P < H``.
    DTypeError
        For a non-float array, or float32 and float64 mixed.
    NonFiniteError
        For NaN or infinity in a weight or an initial state.
    """
    packed = None
    if isinstance(w_ih, PackedWeights):
        packed = w_ih
        weights = w_ih.forward_weights("lstm_proj_forward", "pack_lstm",
                                       {"w_hh": w_hh, "w_hr": w_hr, "b_ih": b_ih, "b_hh": b_hh})
        if weights.get("w_hr") is None:
            raise ArgumentError("these packed LSTM weights have no projection (w_hr): run them "
                                "with fastrnn.lstm_forward")
        w_ih, w_hh, w_hr, b_ih, b_hh = (weights[name] for name in ("w_ih", "w_hh", "w_hr", "b_ih", "b_hh"))
    precision = call_precision(precision, packed)
    check_n_threads(n_threads)
    requires_grad = check_bool("requires_grad", requires_grad)
    check_reduced_call(precision, requires_grad)
    if precision == "float32":
        backend_name, kernels = _backends.resolve(backend, kernel="lstm_proj_forward")
    else:
        backend_name, kernels = resolve_reduced(backend, "lstm_proj_forward", precision, requires_grad)
    layer = _ProjLayer(x, w_ih, w_hh, w_hr, b_ih, b_hh, h0, c0, weights_checked=packed is not None)
    check_reduced_dtype(precision, layer.dtype)
    T, B, H, P = layer.T, layer.B, layer.H, layer.P
    threads = layer.n_threads(n_threads)
    ends = row_ends(ends, T, B)  # states at each row's end: see lstm_forward

    y = np.empty((T, B, P), layer.dtype)
    # inference projects the input a block of steps at a time: no workspace of T steps
    G = LSTM.gates * H
    gates = np.empty((projection_workspace_steps(T, B, layer.x.shape[2], G, requires_grad), B, G),
                     layer.dtype)
    kept = T if requires_grad else 0  # inference stores no step of c or m
    c_all = np.empty((T if requires_grad or ends is not None else 0, B, H), layer.dtype)
    m_all = np.empty((kept, B, H), layer.dtype)
    h_n, c_n = layer.final_state_arrays([layer.h0, layer.c0])
    buffers = None if packed is None else packed.forward_buffers(backend_name)
    reduced = None
    if layer.has_steps and precision != "float32":  # weights rounded once, by the packer or here
        reduced = reduced_weights(kernels, backend_name, precision, packed, requires_grad,
                                  "lstm_proj", layer.w_ih, layer.w_hh, layer.summed_bias(),
                                  w_hr=layer.w_hr)
        kernels.lstm_proj_forward_reduced(layer.x, reduced, layer.h0, layer.c0, y, h_n, c_n, gates,
                                          c_all, m_all, threads)
    elif layer.has_steps and buffers is not None:  # packed once: no packing per call
        kernels.lstm_proj_forward_packed(layer.x, buffers, layer.h0, layer.c0, y, h_n, c_n, gates,
                                         c_all, m_all, threads)
    elif layer.has_steps:
        kernels.lstm_proj_forward(layer.x, layer.w_ih, layer.w_hh, layer.w_hr, layer.summed_bias(),
                                  layer.h0, layer.c0, y, h_n, c_n, gates, c_all, m_all, threads)
    if ends is not None:
        h_n, c_n = states_at_ends(ends, y, layer.h0), states_at_ends(ends, c_all, layer.c0)
    cache = LSTMProjCache(layer, backend_name, threads, w_hr=layer.w_hr, h0=layer.h0, c0=layer.c0,
                          y=y, gates=gates, c_all=c_all, m_all=m_all, ends=ends,
                          reduced=reduced) if requires_grad else None
    return forward_outputs(layer, y, (h_n, c_n), cache)


def lstm_proj_backward(cache, dy=None, dh_n=None, dc_n=None, dc=None):
    """Backpropagate through the layer run by :func:`lstm_proj_forward`.

    Parameters
    ----------
    cache : LSTMProjCache
        From ``lstm_proj_forward(..., requires_grad=True)``.
    dy : array_like of shape (T, B, P), optional
        Gradient of the loss with respect to ``y``; zeros by default.
    dh_n : array_like of shape (B, P), optional
        Gradient of the loss with respect to ``h_n``; zeros by default.
    dc_n : array_like of shape (B, H), optional
        Gradient of the loss with respect to ``c_n``; zeros by default.
    dc : array_like of shape (T, B, H), optional
        Gradient of the loss with respect to the cell state of every step
        (``c_t`` for ``t = 0 .. T-1``; its last step is ``c_n``, and both
        gradients are added); none by default.

    Returns
    -------
    dict of str to ndarray
        ``"x"`` (T, B, D), ``"h0"`` (B, P), ``"c0"`` (B, H), ``"w_ih"``,
        ``"w_hh"``, ``"w_hr"``, and ``"b_ih"`` / ``"b_hh"`` for the biases the
        forward pass was given, each shaped like its input.
    """
    # dy and dh_n have P columns: backward_inputs reads that from w_hh's second axis
    dy, (dh_n,) = backward_inputs(cache, LSTMProjCache, dy, [("dh_n", dh_n)])
    T, B, _ = cache.x.shape
    H = cache.w_hr.shape[1]
    dtype = cache.x.dtype
    dc_n = gradient_input("dc_n", dc_n, (B, H), (B, H), dtype, False)
    if dc is None:
        dc_seq = np.zeros((0, B, H), dtype)  # the kernels' "no per-step gradient"
    else:
        dc_seq = gradient_input("dc", dc, (T, B, H), (T, B, H), dtype, False)
    (dy, dc_seq), (dh_n, dc_n), passed = final_gradients_at_ends(cache.ends,
                                                                 [(dy, dh_n), (dc_seq, dc_n)])
    grads = LayerGradients(cache, [("h0", dh_n), ("c0", dc_n)], ("w_hr",))
    if grads.has_steps:
        _, kernels = _backends.resolve(cache.backend, kernel="lstm_proj_backward")
        dz = np.empty((T, B, LSTM.gates * H), dtype)
        if cache.reduced is not None:  # bf16: the forward pass's rounded weights
            kernels.lstm_proj_backward_reduced(
                cache.x, cache.reduced, cache.h0, cache.c0, cache.y, cache.gates, cache.c_all,
                cache.m_all, dy, dh_n, dc_n, dc_seq, dz, grads.x, grads["h0"], grads["c0"],
                grads["w_ih"], grads["w_hh"], grads["w_hr"], grads["b"], cache.n_threads)
        else:
            kernels.lstm_proj_backward(
                cache.x, cache.w_ih, cache.w_hh, cache.w_hr, cache.h0, cache.c0, cache.y,
                cache.gates, cache.c_all, cache.m_all, dy, dh_n, dc_n, dc_seq, dz, grads.x,
                grads["h0"], grads["c0"], grads["w_ih"], grads["w_hh"], grads["w_hr"], grads["b"],
                cache.n_threads)
    return grads.result(passed)
