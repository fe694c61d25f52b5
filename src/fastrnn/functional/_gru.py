"""Functional API of the GRU layer: :func:`gru_forward` and :func:`gru_backward`."""

import numpy as np

from fastrnn import _backends
from fastrnn._partition import projection_workspace_steps
from fastrnn._validation import check_bool, check_n_threads
from fastrnn.functional._layer import (Layer, LayerCache, LayerGradients, backward_inputs,
                                       final_gradients_at_ends, forward_outputs, row_ends,
                                       states_at_ends)
from fastrnn.exceptions import ArgumentError
from fastrnn.functional._packed_base import PackedWeights
from fastrnn.functional._precision import (call_precision, check_reduced_call, check_reduced_dtype,
                                           reduced_weights, resolve_reduced)
from fastrnn.functional.cells import GRU

__all__ = ["gru_forward", "gru_backward", "GRUCache"]

# per step the kernels keep r, z, n and h W_hn^T + b_hn (see fastrnn._python.gru): not the gate count
WORKSPACE_BLOCKS = 4


def gru_biases(b_ih, b_hh, H, dtype):
    """The biases as the kernels take them: ``bias_x = b_ih + [b_hh_r, b_hh_z, 0]`` of shape
    (3*H,) and ``b_hn = b_hh_n`` of shape (H,) (zeros for a missing bias)."""
    bias_x = np.zeros(GRU.gates * H, dtype)
    b_hn = np.zeros(H, dtype)
    if b_ih is not None:
        bias_x += b_ih
    if b_hh is not None:
        bias_x[: 2 * H] += b_hh[: 2 * H]
        b_hn[...] = b_hh[2 * H :]
    return bias_x, b_hn


class GRUCache(LayerCache):
    """What :func:`gru_forward` keeps for :func:`gru_backward` (see :class:`LayerCache`).

    Attributes
    ----------
    reset_after : bool
    h0 : ndarray of shape (B, H)
    y : ndarray of shape (T, B, H)
    gates : ndarray of shape (T, B, 4*H)
        The BPTT workspace ``[r, z, n, hn]`` of every step (see :mod:`fastrnn._python.gru`).
    ends : ndarray of int of shape (B,) or None
        The forward call's ``ends``.
    """

    ARRAYS = ("h0", "y", "gates")
    FORWARD = "gru_forward"


def gru_forward(x, w_ih, w_hh=None, b_ih=None, b_hh=None, h0=None, *, reset_after=True, batch_first=False,
                backend=None, n_threads=None, requires_grad=True, ends=None, precision=None):
    r"""Run a GRU layer over a sequence (PyTorch's gate packing ``r, z, n``).

    .. math::

        r_t &= \sigma(x_t W_{ir}^T + b_{ir} + h_{t-1} W_{hr}^T + b_{hr}), \quad
        z_t = \sigma(x_t W_{iz}^T + b_{iz} + h_{t-1} W_{hz}^T + b_{hz}) \\
        n_t &= \tanh(x_t W_{in}^T + b_{in} + r_t \odot (h_{t-1} W_{hn}^T + b_{hn})) \quad
        \text{(reset\_after=True)} \\
        n_t &= \tanh(x_t W_{in}^T + b_{in} + (r_t \odot h_{t-1}) W_{hn}^T + b_{hn}) \quad
        \text{(reset\_after=False)} \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    Parameters
    ----------
    x : array_like of shape (T, B, D), or (B, T, D) if ``batch_first``
        Input sequence.
    w_ih : array_like of shape (3*H, D), or PackedGRU
        Input-to-hidden weights, blocks ``r, z, n`` (PyTorch's ``weight_ih_l0``); or every
        weight packed by :func:`fastrnn.pack_gru`, with ``w_hh``, ``b_ih`` and ``b_hh`` omitted
        (the Cython kernels then run on its packed buffers, with no packing per call; weights
        packed under another ISA level raise StaleCacheError: pack them again).
    w_hh : array_like of shape (3*H, H)
        Hidden-to-hidden weights (``weight_hh_l0``).
    b_ih, b_hh : array_like of shape (3*H,), optional
        Biases; a missing one counts as zero.
    h0 : array_like of shape (B, H), optional
        Initial hidden state; zeros by default.
    reset_after : bool
        With packed weights, it must be the one they were packed with. ``True`` (PyTorch; Keras ``reset_after=True``; ONNX ``linear_before_reset=1``) applies
        the reset gate after the recurrent product; ``False`` (Keras ``reset_after=False``; ONNX
        ``linear_before_reset=0``) applies it to ``h_{t-1}`` before.
    batch_first : bool
        ``x`` and ``y`` have the batch first.
    backend : {"cython", "numba", "python", "auto"}, optional
        Overrides :func:`fastrnn.use_backend` and ``FASTRNN_BACKEND``.
    n_threads : int, optional
        Threads to use; by default chosen from the problem size. Results do not depend on it.
        An integer from 1 to 2**31 - 1 (else :class:`~fastrnn.exceptions.ArgumentError`);
        more than the cores this process may run on counts as one per core.
    requires_grad : bool
        Keep a cache for :func:`gru_backward`. With ``False`` nothing of the
        size of ``T`` is allocated beyond ``y``: the gates are kept for one block
        of steps only.
    ends : array_like of int of shape (B,), optional
        Return as ``h_n`` each row's state after its first ``ends[b]`` steps
        (0 to T; 0 gives ``h0``) instead of after all T: the final states of a
        right-padded batch. :func:`gru_backward` then lets ``dh_n`` enter at
        those steps. ``y`` is not changed.
    precision : {"float32", "bf16", "int8"}, optional
        The precision of the layer's products: ``"bf16"`` rounds the weights to bfloat16,
        ``"int8"`` quantizes them per output row and the layer input and state per step and
        batch row (see :mod:`fastrnn._python.reduced`); biases, gate math and states stay
        float32. Both need float32 arrays. bf16 also trains: with ``requires_grad=True``
        the weights are rounded once for both passes and :func:`gru_backward` computes its
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
    cache : GRUCache or None
        ``None`` when ``requires_grad`` is false.
    """
    packed = None
    if isinstance(w_ih, PackedWeights):
        packed = w_ih
        w_ih, w_hh, b_ih, b_hh = packed.forward_weights(
            "gru_forward", "pack_gru", {"w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}).values()
        reset_after = check_bool("reset_after", reset_after)
        if reset_after != packed.options["reset_after"]:
            raise ArgumentError(f"reset_after={reset_after} differs from the packed weights' "
                                f"{packed.options['reset_after']}; pass reset_after="
                                f"{packed.options['reset_after']} (or pack again)")
    reset_after = check_bool("reset_after", reset_after)
    precision = call_precision(precision, packed)
    check_n_threads(n_threads)
    requires_grad = check_bool("requires_grad", requires_grad)
    check_reduced_call(precision, requires_grad)
    if precision == "float32":
        backend_name, kernels = _backends.resolve(backend, kernel="gru_forward")
    else:
        backend_name, kernels = resolve_reduced(backend, "gru_forward", precision, requires_grad)
    layer = Layer(x, w_ih, w_hh, b_ih, b_hh, [("h0", h0)], spec=GRU, batch_first=batch_first,
                  weights_checked=packed is not None)
    check_reduced_dtype(precision, layer.dtype)
    T, B, H = layer.T, layer.B, layer.H
    h0 = layer.states[0]
    ends = row_ends(ends, T, B)
    threads = layer.n_threads(n_threads)

    y = np.empty((T, B, H), layer.dtype)
    # inference projects the input a block of steps at a time: no workspace of T steps
    W = WORKSPACE_BLOCKS * H
    gates = np.empty((projection_workspace_steps(T, B, layer.x.shape[2], W, requires_grad), B, W),
                     layer.dtype)
    (h_n,) = layer.final_state_arrays([h0])
    buffers = None if packed is None else packed.forward_buffers(backend_name)
    reduced = None
    if layer.has_steps and precision != "float32":  # weights rounded once, by the packer or here
        bias_x, b_hn = gru_biases(layer.b_ih, layer.b_hh, H, layer.dtype)
        reduced = reduced_weights(kernels, backend_name, precision, packed, requires_grad, "gru",
                                  layer.w_ih, layer.w_hh, bias_x, b_hn=b_hn, flag=reset_after)
        kernels.gru_forward_reduced(layer.x, reduced, h0, y, h_n, gates, threads)
    elif layer.has_steps and buffers is not None:  # packed once: no packing per call
        kernels.gru_forward_packed(layer.x, buffers, h0, y, h_n, gates, threads)
    elif layer.has_steps:
        bias_x, b_hn = gru_biases(layer.b_ih, layer.b_hh, H, layer.dtype)
        kernels.gru_forward(layer.x, layer.w_ih, layer.w_hh, bias_x, b_hn, h0, reset_after, y, h_n, gates,
                            threads)
    if ends is not None:
        h_n = states_at_ends(ends, y, h0)
    cache = GRUCache(layer, backend_name, threads, reset_after=reset_after, h0=layer.states[0],
                     y=y, gates=gates, ends=ends, reduced=reduced) if requires_grad else None
    return forward_outputs(layer, y, h_n, cache)


def gru_backward(cache, dy=None, dh_n=None):
    """Backpropagate through the layer run by :func:`gru_forward`.

    Parameters
    ----------
    cache : GRUCache
        From ``gru_forward(..., requires_grad=True)``.
    dy : array_like of shape like ``y``, optional
        Gradient of the loss with respect to ``y``; zeros by default.
    dh_n : array_like of shape (B, H), optional
        Gradient of the loss with respect to ``h_n``; zeros by default. It
        enters at each row's end when the forward call had ``ends``.

    Returns
    -------
    dict of str to ndarray
        ``"x"``, ``"h0"``, ``"w_ih"``, ``"w_hh"``, and ``"b_ih"`` / ``"b_hh"`` for the biases
        the forward pass was given, each shaped like its input (``"x"`` batch-first if the
        forward pass was).
    """
    dy, (dh_n,) = backward_inputs(cache, GRUCache, dy, [("dh_n", dh_n)])
    (dy,), (dh_n,), passed = final_gradients_at_ends(cache.ends, [(dy, dh_n)])
    # the GRU's n gate keeps b_hn apart from b_in, so the two bias gradients differ
    grads = LayerGradients(cache, [("h0", dh_n)], split_bias=True)
    if grads.has_steps:
        _, kernels = _backends.resolve(cache.backend)
        T, B, _ = cache.x.shape
        G = GRU.gates * cache.w_hh.shape[1]
        dz_x = np.empty((T, B, G), cache.x.dtype)
        dz_h = np.empty((T, B, G), cache.x.dtype)
        if cache.reduced is not None:  # bf16: the forward pass's rounded weights
            kernels.gru_backward_reduced(cache.x, cache.reduced, cache.h0, cache.y, cache.gates, dy,
                                         dh_n, dz_x, dz_h, grads.x, grads["h0"], grads["w_ih"],
                                         grads["w_hh"], grads["b_ih"], grads["b_hh"],
                                         cache.n_threads)
        else:
            kernels.gru_backward(cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.reset_after,
                                 cache.y, cache.gates, dy, dh_n, dz_x, dz_h, grads.x, grads["h0"],
                                 grads["w_ih"], grads["w_hh"], grads["b_ih"], grads["b_hh"],
                                 cache.n_threads)
    return grads.result(passed)
