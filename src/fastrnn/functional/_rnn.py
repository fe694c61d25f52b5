"""Functional API of the Elman (SimpleRNN) layer: :func:`rnn_forward` and :func:`rnn_backward`."""

import numpy as np

from fastrnn import _backends
from fastrnn._validation import check_bool, check_choice, check_n_threads
from fastrnn.functional._layer import (Layer, LayerCache, LayerGradients, backward_inputs,
                                       final_gradients_at_ends, forward_outputs, row_ends,
                                       states_at_ends)
from fastrnn.exceptions import ArgumentError
from fastrnn.functional._packed_base import PackedWeights
from fastrnn.functional._precision import (call_precision, check_reduced_call, check_reduced_dtype,
                                           reduced_weights, resolve_reduced)
from fastrnn.functional.cells import RNN

__all__ = ["rnn_forward", "rnn_backward", "RNNCache"]

NONLINEARITIES = ("tanh", "relu")


class RNNCache(LayerCache):
    """What :func:`rnn_forward` keeps for :func:`rnn_backward` (see :class:`LayerCache`).

    Attributes
    ----------
    nonlinearity : {"tanh", "relu"}
        With packed weights, it must be the one they were packed with.
    h0 : ndarray of shape (B, H)
    y : ndarray of shape (T, B, H)
        The forward output, which is also the whole BPTT workspace of this cell.
    ends : ndarray of int of shape (B,) or None
        The forward call's ``ends``.
    """

    ARRAYS = ("h0", "y")
    FORWARD = "rnn_forward"


def rnn_forward(x, w_ih, w_hh=None, b_ih=None, b_hh=None, h0=None, *, nonlinearity="tanh",
                batch_first=False, backend=None, n_threads=None, requires_grad=True, ends=None,
                precision=None):
    r"""Run an Elman (SimpleRNN) layer over a sequence: :math:`h_t = \phi(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    Parameters
    ----------
    x : array_like of shape (T, B, D), or (B, T, D) if ``batch_first``
        Input sequence.
    w_ih : array_like of shape (H, D), or PackedRNN
        Input-to-hidden weights (PyTorch's ``weight_ih_l0``); or every weight packed by
        :func:`fastrnn.pack_rnn`, with ``w_hh``, ``b_ih`` and ``b_hh`` omitted (the Cython
        kernels then run on its packed buffers, with no packing per call; weights packed
        under another ISA level raise StaleCacheError: pack them again).
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
        not depend on it. An integer from 1 to 2**31 - 1 (else :class:`~fastrnn.exceptions.ArgumentError`);
        more than the cores this process may run on counts as one per core.
    requires_grad : bool
        Keep a cache for :func:`rnn_backward`. With ``False`` the forward pass
        needs no memory beyond its outputs.
    ends : array_like of int of shape (B,), optional
        Return as ``h_n`` each row's state after its first ``ends[b]`` steps
        (0 to T; 0 gives ``h0``) instead of after all T: the final states of a
        right-padded batch. :func:`rnn_backward` then lets ``dh_n`` enter at
        those steps. ``y`` is not changed.
    precision : {"float32", "bf16", "int8"}, optional
        The precision of the layer's products: ``"bf16"`` rounds the weights to bfloat16,
        ``"int8"`` quantizes them per output row and the layer input and state per step and
        batch row (see :mod:`fastrnn._python.reduced`); biases, gate math and states stay
        float32. Both need float32 arrays. bf16 also trains: with ``requires_grad=True``
        the weights are rounded once for both passes and :func:`rnn_backward` computes its
        products in bf16 too (float32 sums; float32 gradients of the float32 weights).
        int8 is inference only (``requires_grad=False``). Plain weights are rounded or
        quantized for this call; pack them once (``precision=`` of the packer) to convert
        them once (a bf16 training call packs its backward layer once per packed object). By default the packed weights'
        precision, float32 for arrays. Numba has no bf16/int8 kernels (``auto`` skips it).

    Returns
    -------
    y : ndarray of shape (T, B, H), or (B, T, H) if ``batch_first``
        Hidden state at every step. Read-only while a cache refers to it.
    h_n : ndarray of shape (B, H)
        Hidden state after the last step (after step ``ends[b] - 1`` with ``ends``).
    cache : RNNCache or None
        ``None`` when ``requires_grad`` is false.

    Notes
    -----
    Arrays of any layout are accepted and converted once; see
    :mod:`fastrnn._validation` for the dtype rule (float32 stays float32,
    float64 stays float64, float16 computes in float32, mixes are an error).
    """
    packed = None
    if isinstance(w_ih, PackedWeights):
        packed = w_ih
        w_ih, w_hh, b_ih, b_hh = packed.forward_weights(
            "rnn_forward", "pack_rnn", {"w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}).values()
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if nonlinearity != packed.options["nonlinearity"]:
            raise ArgumentError(f"nonlinearity={nonlinearity!r} differs from the packed weights' "
                                f"{packed.options['nonlinearity']!r}; pass nonlinearity="
                                f"{packed.options['nonlinearity']!r} (or pack again)")
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    precision = call_precision(precision, packed)
    check_n_threads(n_threads)
    requires_grad = check_bool("requires_grad", requires_grad)
    check_reduced_call(precision, requires_grad)
    if precision == "float32":
        backend_name, kernels = _backends.resolve(backend)
    else:
        backend_name, kernels = resolve_reduced(backend, "rnn_forward", precision, requires_grad)
    layer = Layer(x, w_ih, w_hh, b_ih, b_hh, [("h0", h0)], spec=RNN, batch_first=batch_first,
                  weights_checked=packed is not None)
    check_reduced_dtype(precision, layer.dtype)
    T, B, H = layer.T, layer.B, layer.H
    h0 = layer.states[0]
    ends = row_ends(ends, T, B)
    threads = layer.n_threads(n_threads)

    y = np.empty((T, B, H), layer.dtype)
    (h_n,) = layer.final_state_arrays([h0])
    buffers = None if packed is None else packed.forward_buffers(backend_name)
    reduced = None
    if layer.has_steps and precision != "float32":  # weights rounded once, by the packer or here
        reduced = reduced_weights(kernels, backend_name, precision, packed, requires_grad, "rnn",
                                  layer.w_ih, layer.w_hh, layer.summed_bias(),
                                  flag=nonlinearity == "relu")
        kernels.rnn_forward_reduced(layer.x, reduced, h0, y, h_n, threads)
    elif layer.has_steps and buffers is not None:  # packed once: no packing per call
        kernels.rnn_forward_packed(layer.x, buffers, h0, y, h_n, threads)
    elif layer.has_steps:
        kernels.rnn_forward(layer.x, layer.w_ih, layer.w_hh, layer.summed_bias(), h0,
                            nonlinearity == "relu", y, h_n, threads)
    if ends is not None:
        h_n = states_at_ends(ends, y, h0)
    cache = RNNCache(layer, backend_name, threads, nonlinearity=nonlinearity, h0=h0, y=y,
                     ends=ends, reduced=reduced) if requires_grad else None
    return forward_outputs(layer, y, h_n, cache)


def rnn_backward(cache, dy=None, dh_n=None):
    """Backpropagate through the layer run by :func:`rnn_forward`.

    Parameters
    ----------
    cache : RNNCache
        From ``rnn_forward(..., requires_grad=True)``.
    dy : array_like of shape like ``y``, optional
        Gradient of the loss with respect to ``y``; zeros by default.
    dh_n : array_like of shape (B, H), optional
        Gradient of the loss with respect to ``h_n``; zeros by default. It
        enters at each row's end when the forward call had ``ends``.

    Returns
    -------
    dict of str to ndarray
        ``"x"``, ``"h0"``, ``"w_ih"``, ``"w_hh"``, and ``"b_ih"`` / ``"b_hh"``
        for the biases the forward pass was given, each shaped like its input
        (``"x"`` batch-first if the forward pass was).
    """
    dy, (dh_n,) = backward_inputs(cache, RNNCache, dy, [("dh_n", dh_n)])
    (dy,), (dh_n,), passed = final_gradients_at_ends(cache.ends, [(dy, dh_n)])
    grads = LayerGradients(cache, [("h0", dh_n)])
    if grads.has_steps:
        _, kernels = _backends.resolve(cache.backend)
        dz = np.empty(cache.y.shape, cache.x.dtype)
        if cache.reduced is not None:  # bf16: the forward pass's rounded weights
            kernels.rnn_backward_reduced(cache.x, cache.reduced, cache.h0, cache.y, dy, dh_n, dz,
                                         grads.x, grads["h0"], grads["w_ih"], grads["w_hh"],
                                         grads["b"], cache.n_threads)
        else:
            kernels.rnn_backward(cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.y, dy, dh_n,
                                 cache.nonlinearity == "relu", dz, grads.x, grads["h0"],
                                 grads["w_ih"], grads["w_hh"], grads["b"], cache.n_threads)
    return grads.result(passed)
