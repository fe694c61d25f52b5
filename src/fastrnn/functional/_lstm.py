"""Functional API of the LSTM layer: :func:`lstm_forward` and :func:`lstm_backward`."""

import numpy as np

from fastrnn import _backends
from fastrnn._partition import projection_workspace_steps
from fastrnn._validation import check_bool, check_n_threads
from fastrnn.functional._layer import (Layer, LayerCache, LayerGradients, backward_inputs,
                                       final_gradients_at_ends, forward_outputs, gradient_input,
                                       row_ends, states_at_ends)
from fastrnn.exceptions import ArgumentError
from fastrnn.functional._packed_base import PackedWeights
from fastrnn.functional._precision import (call_precision, check_reduced_call, check_reduced_dtype,
                                           reduced_weights, resolve_reduced)
from fastrnn.functional.cells import LSTM

__all__ = ["lstm_forward", "lstm_backward", "LSTMCache"]


class LSTMCache(LayerCache):
    """What :func:`lstm_forward` keeps for :func:`lstm_backward` (see :class:`LayerCache`).

    Attributes
    ----------
    h0, c0 : ndarray of shape (B, H)
    y : ndarray of shape (T, B, H)
    gates : ndarray of shape (T, B, 4*H)
        Activated gates of every step (workspace, see :mod:`fastrnn._python.lstm`).
    c_all : ndarray of shape (T, B, H)
        Cell state of every step (workspace).
    ends : ndarray of int of shape (B,) or None
        The forward call's ``ends``.
    """

    ARRAYS = ("h0", "c0", "y", "gates", "c_all")
    FORWARD = "lstm_forward"


def lstm_forward(x, w_ih, w_hh=None, b_ih=None, b_hh=None, h0=None, c0=None, *, batch_first=False,
                 backend=None, n_threads=None, requires_grad=True, ends=None, precision=None):
    r"""Run an LSTM layer over a sequence (PyTorch's gate packing ``i, f, g, o``).

    .. math::

        [i, f, g, o] &= [\sigma, \sigma, \tanh, \sigma](x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh}) \\
        c_t &= f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)

    Parameters
    ----------
    x : array_like of shape (T, B, D), or (B, T, D) if ``batch_first``
        Input sequence.
    w_ih : array_like of shape (4*H, D), or PackedLSTM
        Input-to-hidden weights (PyTorch's ``weight_ih_l0``); or every weight packed by
        :func:`fastrnn.pack_lstm` (without ``w_hr``), with ``w_hh``, ``b_ih`` and ``b_hh``
        omitted: the Cython kernels then run on its packed buffers (no packing per call;
        weights packed under another ISA level raise StaleCacheError, pack them again),
        the other backends on its arrays.
    w_hh : array_like of shape (4*H, H)
        Hidden-to-hidden weights (``weight_hh_l0``).
    b_ih, b_hh : array_like of shape (4*H,), optional
        Biases; a missing one counts as zero.
    h0, c0 : array_like of shape (B, H), optional
        Initial hidden and cell states; zeros by default.
    batch_first : bool
        ``x`` and ``y`` have the batch first.
    backend : {"cython", "numba", "python", "auto"}, optional
        Overrides :func:`fastrnn.use_backend` and ``FASTRNN_BACKEND``.
    n_threads : int, optional
        Threads to use; by default chosen from the problem size. Results do
        not depend on it. An integer from 1 to 2**31 - 1 (else :class:`~fastrnn.exceptions.ArgumentError`);
        more than the cores this process may run on counts as one per core.
    requires_grad : bool
        Keep a cache for :func:`lstm_backward`. With ``False`` nothing of the
        size of ``T`` is allocated beyond ``y``: the gates are kept for one block
        of steps only, and the cell state of every step is not stored (unless
        ``ends`` needs it).
    ends : array_like of int of shape (B,), optional
        Return as ``(h_n, c_n)`` each row's states after its first ``ends[b]``
        steps (0 to T; 0 gives ``(h0, c0)``) instead of after all T: the final
        states of a right-padded batch. The cell state of every step is then
        stored even without ``requires_grad`` (an array of shape (T, B, H); no
        cache is kept), and
        :func:`lstm_backward` lets ``dh_n`` and ``dc_n`` enter at those steps.
        ``y`` is not changed.
    precision : {"float32", "bf16", "int8"}, optional
        The precision of the layer's products: ``"bf16"`` rounds the weights to bfloat16,
        ``"int8"`` quantizes them per output row and the layer input and state per step and
        batch row (see :mod:`fastrnn._python.reduced`); biases, gate math and states stay
        float32. Both need float32 arrays. bf16 also trains: with ``requires_grad=True``
        the weights are rounded once for both passes and :func:`lstm_backward` computes its
        products in bf16 too (float32 sums; float32 gradients of the float32 weights).
        int8 is inference only (``requires_grad=False``). Plain weights are rounded or
        quantized for this call; pack them once (``precision=`` of the packer) to convert
        them once (a bf16 training call packs its backward layer once per packed object). By default the packed weights'
        precision, float32 for arrays. Numba has no bf16/int8 kernels (``auto`` skips it).

    Returns
    -------
    y : ndarray of shape (T, B, H), or (B, T, H) if ``batch_first``
        Hidden state at every step. Read-only while a cache refers to it.
    (h_n, c_n) : tuple of ndarray of shape (B, H)
        Hidden and cell states after the last step (after step ``ends[b] - 1``
        with ``ends``).
    cache : LSTMCache or None
        ``None`` when ``requires_grad`` is false.
    """
    packed = None
    if isinstance(w_ih, PackedWeights):
        packed = w_ih
        weights = w_ih.forward_weights("lstm_forward", "pack_lstm",
                                       {"w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh})
        if weights.get("w_hr") is not None:
            raise ArgumentError("these packed LSTM weights have a projection (w_hr): run them "
                                "with fastrnn.functional.lstm_proj_forward")
        w_ih, w_hh, b_ih, b_hh = (weights[name] for name in ("w_ih", "w_hh", "b_ih", "b_hh"))
    precision = call_precision(precision, packed)
    check_n_threads(n_threads)
    requires_grad = check_bool("requires_grad", requires_grad)
    check_reduced_call(precision, requires_grad)
    if precision == "float32":
        backend_name, kernels = _backends.resolve(backend, kernel="lstm_forward")
    else:
        backend_name, kernels = resolve_reduced(backend, "lstm_forward", precision, requires_grad)
    layer = Layer(x, w_ih, w_hh, b_ih, b_hh, [("h0", h0), ("c0", c0)], spec=LSTM,
                  batch_first=batch_first, weights_checked=packed is not None)
    check_reduced_dtype(precision, layer.dtype)
    T, B, H = layer.T, layer.B, layer.H
    h0, c0 = layer.states
    ends = row_ends(ends, T, B)
    threads = layer.n_threads(n_threads)

    y = np.empty((T, B, H), layer.dtype)
    # inference projects the input a block of steps at a time: no workspace of T steps
    G = LSTM.gates * H
    gates = np.empty((projection_workspace_steps(T, B, layer.x.shape[2], G, requires_grad), B, G),
                     layer.dtype)
    # the kernels store the cell state of every step only when given room for it
    c_all = np.empty((T if requires_grad or ends is not None else 0, B, H), layer.dtype)
    h_n, c_n = layer.final_state_arrays([h0, c0])
    buffers = None if packed is None else packed.forward_buffers(backend_name)
    reduced = None
    if layer.has_steps and precision != "float32":  # weights rounded once, by the packer or here
        reduced = reduced_weights(kernels, backend_name, precision, packed, requires_grad, "lstm",
                                  layer.w_ih, layer.w_hh, layer.summed_bias())
        kernels.lstm_forward_reduced(layer.x, reduced, h0, c0, y, h_n, c_n, gates, c_all, threads)
    elif layer.has_steps and buffers is not None:  # packed once: no packing per call
        kernels.lstm_forward_packed(layer.x, buffers, h0, c0, y, h_n, c_n, gates, c_all, threads)
    elif layer.has_steps:
        kernels.lstm_forward(layer.x, layer.w_ih, layer.w_hh, layer.summed_bias(), h0, c0,
                             y, h_n, c_n, gates, c_all, threads)
    if ends is not None:
        h_n, c_n = states_at_ends(ends, y, h0), states_at_ends(ends, c_all, c0)
    cache = LSTMCache(layer, backend_name, threads, h0=layer.states[0], c0=layer.states[1], y=y,
                      gates=gates, c_all=c_all, ends=ends, reduced=reduced) if requires_grad else None
    return forward_outputs(layer, y, (h_n, c_n), cache)


def lstm_backward(cache, dy=None, dh_n=None, dc_n=None, *, dc=None):
    """Backpropagate through the layer run by :func:`lstm_forward`.

    Parameters
    ----------
    cache : LSTMCache
        From ``lstm_forward(..., requires_grad=True)``.
    dy : array_like of shape like ``y``, optional
        Gradient of the loss with respect to ``y``; zeros by default.
    dh_n, dc_n : array_like of shape (B, H), optional
        Gradients of the loss with respect to ``h_n`` and ``c_n``; zeros by
        default. They enter at each row's end when the forward call had ``ends``.
    dc : array_like of shape like ``y``, optional
        Gradient of the loss with respect to the cell state ``c_t`` of every
        step: (T, B, H), or (B, T, H) if the forward pass was ``batch_first``.
        None by default (no such term). With ``dy``, this lets a caller inject
        the gradients of the final states at a step other than the last, e.g.
        at each row's own last valid step of a padded batch: ``dc[t, b]``
        acts exactly as ``dc_n[b]`` would for the sequence cut after step ``t``.

    Returns
    -------
    dict of str to ndarray
        ``"x"``, ``"h0"``, ``"c0"``, ``"w_ih"``, ``"w_hh"``, and ``"b_ih"`` /
        ``"b_hh"`` for the biases the forward pass was given, each shaped like
        its input (``"x"`` batch-first if the forward pass was).
    """
    dy, (dh_n, dc_n) = backward_inputs(cache, LSTMCache, dy, [("dh_n", dh_n), ("dc_n", dc_n)])
    T, B, _ = cache.x.shape
    H = cache.w_hh.shape[1]
    dtype = cache.x.dtype
    if dc is None:  # the kernels read shape (0, B, H) as "none": no T*B*H zeros to add
        dc_seq = np.empty((0, B, H), dtype)
    else:
        user_y_shape = (B, T, H) if cache.batch_first else (T, B, H)
        dc_seq = gradient_input("dc", dc, (T, B, H), user_y_shape, dtype, cache.batch_first)
    (dy, dc_seq), (dh_n, dc_n), passed = final_gradients_at_ends(cache.ends,
                                                                 [(dy, dh_n), (dc_seq, dc_n)])
    grads = LayerGradients(cache, [("h0", dh_n), ("c0", dc_n)])
    if grads.has_steps:
        _, kernels = _backends.resolve(cache.backend)
        dz = np.empty((T, B, LSTM.gates * H), dtype)
        if cache.reduced is not None:  # bf16: the forward pass's rounded weights
            kernels.lstm_backward_reduced(cache.x, cache.reduced, cache.h0, cache.c0, cache.y,
                                          cache.gates, cache.c_all, dy, dh_n, dc_n, dc_seq, dz,
                                          grads.x, grads["h0"], grads["c0"], grads["w_ih"],
                                          grads["w_hh"], grads["b"], cache.n_threads)
        else:
            kernels.lstm_backward(cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.c0, cache.y,
                                  cache.gates, cache.c_all, dy, dh_n, dc_n, dc_seq, dz, grads.x,
                                  grads["h0"], grads["c0"], grads["w_ih"], grads["w_hh"],
                                  grads["b"], cache.n_threads)
    return grads.result(passed)
