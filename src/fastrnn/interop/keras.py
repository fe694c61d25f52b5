"""Keras <-> PyTorch packing of recurrent weights and of their gradients (SimpleRNN, LSTM, GRU).

Keras stores ``kernel`` (D, G*H), ``recurrent_kernel`` (H, G*H) and one bias;
the kernels take PyTorch's ``w_ih`` (G*H, D), ``w_hh`` (G*H, H), ``b_ih`` and
``b_hh`` (G*H,) (REFERENCE.md b1-b3, b5). Per cell:

* SimpleRNN and LSTM: the gate blocks are in the same order (LSTM i, f, g, o),
  so ``w_ih = kernel.T``, ``w_hh = recurrent_kernel.T``, ``b_ih = bias`` and
  ``b_hh`` is absent.
* GRU: Keras orders the blocks z, r, h and PyTorch r, z, n, so the first two
  blocks swap (the permutation is its own inverse). With ``reset_after=True``
  the Keras bias has shape (2, 3*H): row 0 is ``b_ih``, row 1 ``b_hh``. With
  ``reset_after=False`` it has shape (3*H,) and is ``b_ih`` alone.

Weight maps go both ways. Gradient maps are the adjoints of the weight maps
used in a forward pass: the Keras layers run ``keras_to_torch`` and turn the
kernels' gradients back with ``torch_grads_to_keras``.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, ShapeError

__all__ = ["keras_to_torch", "torch_to_keras", "torch_grads_to_keras", "keras_grads_to_torch",
           "GATES"]

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


def _gates(cell):
    if cell not in GATES:
        raise ArgumentError(f"cell must be one of {', '.join(GATES)}; got {cell!r}")
    return GATES[cell]


def _swap_gru_blocks(array, axis):
    """The first two of the three gate blocks along ``axis`` swapped (z, r, h <-> r, z, n)."""
    z, r, h = np.split(np.asarray(array), 3, axis=axis)
    return np.concatenate([r, z, h], axis=axis)


def _reorder(cell, array, axis):
    return _swap_gru_blocks(array, axis) if cell == "GRU" else np.asarray(array)


def _check_pair(cell, kernel, recurrent_kernel):
    G = _gates(cell)
    kernel, recurrent_kernel = np.asarray(kernel), np.asarray(recurrent_kernel)
    if recurrent_kernel.ndim != 2 or recurrent_kernel.shape[1] != G * recurrent_kernel.shape[0]:
        raise ShapeError(f"a Keras {cell} recurrent_kernel must have shape (H, {G}*H); got "
                         f"{recurrent_kernel.shape}")
    H = recurrent_kernel.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ShapeError(f"a Keras {cell} kernel must have shape (D, {G * H}) for H = {H}; got "
                         f"{kernel.shape}")
    return kernel, recurrent_kernel, H


def keras_to_torch(cell, kernel, recurrent_kernel, bias=None, *, reset_after=True):
    """Keras weights of one layer in the PyTorch packing the kernels take.

    Parameters
    ----------
    cell : {"SimpleRNN", "LSTM", "GRU"}
    kernel : array_like of shape (D, G*H)
    recurrent_kernel : array_like of shape (H, G*H)
    bias : array_like of shape (G*H,), or (2, 3*H) for a GRU with ``reset_after``; optional
    reset_after : bool
        GRU only: which Keras variant ``bias`` belongs to.

    Returns
    -------
    dict
        ``"w_ih"`` ndarray of shape (G*H, D), ``"w_hh"`` of shape (G*H, H),
        ``"b_ih"`` and ``"b_hh"`` of shape (G*H,) or None. C-contiguous copies.
    """
    kernel, recurrent_kernel, H = _check_pair(cell, kernel, recurrent_kernel)
    G = GATES[cell]
    weights = {"w_ih": np.ascontiguousarray(_reorder(cell, kernel, 1).T),
               "w_hh": np.ascontiguousarray(_reorder(cell, recurrent_kernel, 1).T),
               "b_ih": None, "b_hh": None}
    if bias is None:
        return weights
    bias = np.asarray(bias)
    if cell == "GRU" and reset_after:
        if bias.shape != (2, G * H):
            raise ShapeError(f"a Keras GRU bias with reset_after=True must have shape (2, {G * H}); "
                             f"got {bias.shape}")
        weights["b_ih"] = np.ascontiguousarray(_reorder(cell, bias[0], 0))
        weights["b_hh"] = np.ascontiguousarray(_reorder(cell, bias[1], 0))
    else:
        if bias.shape != (G * H,):
            raise ShapeError(f"a Keras {cell} bias must have shape ({G * H},); got {bias.shape}")
        weights["b_ih"] = np.ascontiguousarray(_reorder(cell, bias, 0))
    return weights


def torch_to_keras(cell, w_ih, w_hh, b_ih=None, b_hh=None, *, reset_after=True):
    """PyTorch-packed weights of one layer in Keras's layout.

    Parameters
    ----------
    cell : {"SimpleRNN", "LSTM", "GRU"}
    w_ih : array_like of shape (G*H, D)
    w_hh : array_like of shape (G*H, H)
    b_ih, b_hh : array_like of shape (G*H,), optional
        A missing one counts as zero.
    reset_after : bool
        GRU only. ``True`` gives the (2, 3*H) bias. ``False`` is a different
        cell, which PyTorch cannot run unless ``b_hh`` is zero in its last
        block (the one inside the reset gate); ``b_hh``'s other blocks are
        folded into the input bias.

    Returns
    -------
    list of ndarray
        ``[kernel (D, G*H), recurrent_kernel (H, G*H), bias]``, the order of
        Keras's ``get_weights()``; ``bias`` is left out when both biases are None.
        SimpleRNN and LSTM get ``bias = b_ih + b_hh``.
    """
    w_ih, w_hh = np.asarray(w_ih), np.asarray(w_hh)
    _check_pair(cell, w_ih.T, w_hh.T)
    G, H = GATES[cell], w_hh.shape[1]
    weights = [np.ascontiguousarray(_reorder(cell, w_ih, 0).T),
               np.ascontiguousarray(_reorder(cell, w_hh, 0).T)]
    if b_ih is None and b_hh is None:
        return weights
    zeros = np.zeros(G * H, w_ih.dtype)
    b_ih = zeros if b_ih is None else np.asarray(b_ih)
    b_hh = zeros if b_hh is None else np.asarray(b_hh)
    if cell == "GRU" and reset_after:
        weights.append(np.stack([_reorder(cell, b_ih, 0), _reorder(cell, b_hh, 0)]))
    elif cell == "GRU":
        if np.any(b_hh[2 * H:] != 0):
            raise ArgumentError("a GRU with reset_after=False has no recurrent bias inside the reset "
                                "gate: b_hh[2*H:] must be zero to convert")
        weights.append(_reorder(cell, b_ih + b_hh, 0))
    else:
        weights.append(b_ih + b_hh)
    return weights


def torch_grads_to_keras(cell, grads, *, use_bias=True, reset_after=True):
    """Gradients with respect to PyTorch-packed weights, as gradients of the Keras weights.

    This is the adjoint of :func:`keras_to_torch`: for a loss computed from
    ``keras_to_torch(kernel, ...)``, it maps the gradients of ``w_ih`` etc.
    to those of ``kernel`` etc.

    Parameters
    ----------
    cell : {"SimpleRNN", "LSTM", "GRU"}
    grads : dict
        ``"w_ih"`` (G*H, D), ``"w_hh"`` (G*H, H) and, with ``use_bias``,
        ``"b_ih"`` (G*H,) and, for a GRU with ``reset_after``, ``"b_hh"``
        (G*H,): what the functional API's backward returns.
    use_bias, reset_after : bool

    Returns
    -------
    list of ndarray
        ``[d_kernel (D, G*H), d_recurrent_kernel (H, G*H), d_bias]`` (no
        ``d_bias`` without ``use_bias``), in ``get_weights()`` order.
    """
    _gates(cell)
    out = [np.ascontiguousarray(_reorder(cell, grads["w_ih"], 0).T),
           np.ascontiguousarray(_reorder(cell, grads["w_hh"], 0).T)]
    if use_bias:
        if cell == "GRU" and reset_after:
            out.append(np.stack([_reorder(cell, grads["b_ih"], 0), _reorder(cell, grads["b_hh"], 0)]))
        else:
            out.append(np.ascontiguousarray(_reorder(cell, grads["b_ih"], 0)))
    return out


def keras_grads_to_torch(cell, d_kernel, d_recurrent_kernel, d_bias=None, *, reset_after=True):
    """Gradients with respect to Keras weights, as gradients of PyTorch-packed weights.

    The adjoint of :func:`torch_to_keras`: because Keras's SimpleRNN/LSTM
    bias is ``b_ih + b_hh`` there, both PyTorch biases get ``d_bias``.

    Parameters
    ----------
    cell : {"SimpleRNN", "LSTM", "GRU"}
    d_kernel : array_like of shape (D, G*H)
    d_recurrent_kernel : array_like of shape (H, G*H)
    d_bias : array_like of shape (G*H,) or (2, 3*H) (GRU ``reset_after``), optional
    reset_after : bool

    Returns
    -------
    dict
        ``"w_ih"``, ``"w_hh"``, ``"b_ih"``, ``"b_hh"`` (the biases None without ``d_bias``).
    """
    grads = keras_to_torch(cell, d_kernel, d_recurrent_kernel, None)
    if d_bias is None:
        return grads
    d_bias = np.asarray(d_bias)
    if cell == "GRU" and reset_after:
        grads["b_ih"] = np.ascontiguousarray(_reorder(cell, d_bias[0], 0))
        grads["b_hh"] = np.ascontiguousarray(_reorder(cell, d_bias[1], 0))
    elif cell == "GRU":
        H = d_bias.shape[0] // 3
        grads["b_ih"] = np.ascontiguousarray(_reorder(cell, d_bias, 0))
        grads["b_hh"] = grads["b_ih"].copy()
        grads["b_hh"][2 * H:] = 0  # that block of b_hh does not exist in this cell
    else:
        grads["b_ih"] = np.ascontiguousarray(d_bias)
        grads["b_hh"] = grads["b_ih"].copy()
    return grads
