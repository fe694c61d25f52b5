"""Keras <-> PyTorch packing of recurrent weights and of their gradients (SimpleRNN, LSTM, GRU).

Keras stores ``kernel`` (D, G*H), ``recurrent_kernel`` (H, G*H) and one bias;
the kernels take PyTorch's ``w_ih`` (G*H, D), ``w_hh`` (G*H, H), ``b_ih`` and
``b_hh`` (G*H,) (``docs/weight-layouts.md``). The gate counts and both gate
orders are read from the cell table (:mod:`fastrnn.functional.cells`). Per cell:

* SimpleRNN and LSTM: the gate blocks are in the same order (LSTM: Keras's
  i, f, c, o is PyTorch's i, f, g, o), so ``w_ih = kernel.T``,
  ``w_hh = recurrent_kernel.T``, ``b_ih = bias`` and ``b_hh`` is absent.
* GRU: Keras orders the blocks z, r, h and PyTorch r, z, n, so the blocks are
  permuted on the way in and back on the way out. With ``reset_after=True``
  the Keras bias has shape (2, 3*H): row 0 is ``b_ih``, row 1 ``b_hh``. With
  ``reset_after=False`` it has shape (3*H,) and is ``b_ih`` alone.

Weight maps go both ways. Gradient maps are the adjoints of the weight maps
used in a forward pass: the Keras layers run ``keras_to_torch`` and turn the
kernels' gradients back with ``torch_grads_to_keras``.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.functional.cells import CELLS, cell_spec

__all__ = ["keras_to_torch", "torch_to_keras", "torch_grads_to_keras", "keras_grads_to_torch",
           "GATES"]

#: Gate blocks per Keras layer name, read from the cell table.
GATES = {spec.keras_name: spec.gates for spec in CELLS.values()}


def _spec(cell):
    try:
        return cell_spec(cell)
    except ArgumentError:
        raise ArgumentError(f"cell must be one of {', '.join(GATES)}; got {cell!r}") from None


def _permute_blocks(array, axis, order):
    """The gate blocks of ``array`` along ``axis`` taken in ``order`` (indices of the blocks)."""
    array = np.asarray(array)
    if order == tuple(range(len(order))):
        return array
    blocks = np.split(array, len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


def _to_torch(spec, array, axis):
    """Blocks stacked in Keras's gate order -> the kernels' (PyTorch's) order."""
    keras_blocks = spec.blocks("keras")
    return _permute_blocks(array, axis, tuple(keras_blocks.index(j) for j in range(spec.gates)))


def _to_keras(spec, array, axis):
    """Blocks stacked in the kernels' (PyTorch's) gate order -> Keras's order."""
    return _permute_blocks(array, axis, spec.blocks("keras"))


def _is_gru(spec):
    return spec.keras_name == "GRU"


def _check_pair(spec, kernel, recurrent_kernel):
    G, cell = spec.gates, spec.keras_name
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
    cell : {"SimpleRNN", "LSTM", "GRU"} or CellSpec
        Any name :func:`fastrnn.functional.cells.cell_spec` accepts.
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
    spec = _spec(cell)
    kernel, recurrent_kernel, H = _check_pair(spec, kernel, recurrent_kernel)
    G = spec.gates
    weights = {"w_ih": np.ascontiguousarray(_to_torch(spec, kernel, 1).T),
               "w_hh": np.ascontiguousarray(_to_torch(spec, recurrent_kernel, 1).T),
               "b_ih": None, "b_hh": None}
    if bias is None:
        return weights
    bias = np.asarray(bias)
    if _is_gru(spec) and reset_after:
        if bias.shape != (2, G * H):
            raise ShapeError(f"a Keras GRU bias with reset_after=True must have shape (2, {G * H}); "
                             f"got {bias.shape}")
        weights["b_ih"] = np.ascontiguousarray(_to_torch(spec, bias[0], 0))
        weights["b_hh"] = np.ascontiguousarray(_to_torch(spec, bias[1], 0))
    else:
        if bias.shape != (G * H,):
            raise ShapeError(f"a Keras {spec.keras_name} bias must have shape ({G * H},); got "
                             f"{bias.shape}")
        weights["b_ih"] = np.ascontiguousarray(_to_torch(spec, bias, 0))
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
    spec = _spec(cell)
    w_ih, w_hh = np.asarray(w_ih), np.asarray(w_hh)
    _check_pair(spec, w_ih.T, w_hh.T)
    G, H = spec.gates, w_hh.shape[1]
    weights = [np.ascontiguousarray(_to_keras(spec, w_ih, 0).T),
               np.ascontiguousarray(_to_keras(spec, w_hh, 0).T)]
    if b_ih is None and b_hh is None:
        return weights
    zeros = np.zeros(G * H, w_ih.dtype)
    b_ih = zeros if b_ih is None else np.asarray(b_ih)
    b_hh = zeros if b_hh is None else np.asarray(b_hh)
    if _is_gru(spec) and reset_after:
        weights.append(np.stack([_to_keras(spec, b_ih, 0), _to_keras(spec, b_hh, 0)]))
    elif _is_gru(spec):
        if np.any(b_hh[2 * H:] != 0):
            raise ArgumentError("a GRU with reset_after=False has no recurrent bias inside the reset "
                                "gate: b_hh[2*H:] must be zero to convert")
        weights.append(_to_keras(spec, b_ih + b_hh, 0))
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
    spec = _spec(cell)
    out = [np.ascontiguousarray(_to_keras(spec, grads["w_ih"], 0).T),
           np.ascontiguousarray(_to_keras(spec, grads["w_hh"], 0).T)]
    if use_bias:
        if _is_gru(spec) and reset_after:
            out.append(np.stack([_to_keras(spec, grads["b_ih"], 0), _to_keras(spec, grads["b_hh"], 0)]))
        else:
            out.append(np.ascontiguousarray(_to_keras(spec, grads["b_ih"], 0)))
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
    spec = _spec(cell)
    grads = keras_to_torch(spec, d_kernel, d_recurrent_kernel, None)
    if d_bias is None:
        return grads
    d_bias = np.asarray(d_bias)
    if _is_gru(spec) and reset_after:
        grads["b_ih"] = np.ascontiguousarray(_to_torch(spec, d_bias[0], 0))
        grads["b_hh"] = np.ascontiguousarray(_to_torch(spec, d_bias[1], 0))
    elif _is_gru(spec):
        H = d_bias.shape[0] // spec.gates
        grads["b_ih"] = np.ascontiguousarray(_to_torch(spec, d_bias, 0))
        grads["b_hh"] = grads["b_ih"].copy()
        grads["b_hh"][2 * H:] = 0  # that block of b_hh does not exist in this cell
    else:
        grads["b_ih"] = np.ascontiguousarray(d_bias)
        grads["b_hh"] = grads["b_ih"].copy()
    return grads
