"""fastrnn's recurrent weights laid out as the inputs ``W``, ``R`` and ``B`` of ONNX's
``RNN``, ``LSTM`` and ``GRU`` operators: the one place that converts them.

The kernels pack gate blocks in PyTorch's order (``docs/weight-layouts.md``); ONNX
stacks them in its own (LSTM ``i, o, f, c``; GRU ``z, r, h``), which the cell table
gives as :meth:`~fastrnn.functional.cells.CellSpec.blocks` ``("onnx")``. NumPy only:
this module does not need the ``onnx`` package.
"""

import numpy as np

from fastrnn.functional.cells import cell_spec

__all__ = ["onnx_recurrent_weights", "onnx_blocks", "kernel_blocks"]


def onnx_blocks(cell, array):
    """The gate blocks stacked on the first axis of ``array`` (the kernels' order, G*H rows)
    in ONNX's order; :func:`kernel_blocks` is the inverse.

    Parameters
    ----------
    cell : str or CellSpec
    array : ndarray of shape (G*H, ...)

    Returns
    -------
    ndarray of shape (G*H, ...)
        A new array.
    """
    spec = cell_spec(cell)
    blocks = np.asarray(array).reshape(spec.gates, -1, *np.shape(array)[1:])
    return blocks[list(spec.blocks("onnx"))].reshape(np.shape(array))


def kernel_blocks(cell, array):
    """The gate blocks stacked on the first axis of ``array`` (ONNX's order, G*H rows) in the
    kernels' (PyTorch's) order, C-contiguous: the inverse of :func:`onnx_blocks`."""
    spec = cell_spec(cell)
    blocks = np.asarray(array).reshape(spec.gates, -1, *np.shape(array)[1:])
    return np.ascontiguousarray(blocks[np.argsort(spec.blocks("onnx"))].reshape(np.shape(array)))


def _onnx_order(spec, array, H):
    """The G blocks of H rows of ``array`` (PyTorch's order) in ONNX's order."""
    return onnx_blocks(spec, array)


def onnx_recurrent_weights(cell, directions, dtype=np.float32):
    """``W``, ``R`` and ``B`` of one ONNX recurrent node from the kernels' weights.

    Parameters
    ----------
    cell : str or CellSpec
        Any name :func:`~fastrnn.functional.cells.cell_spec` takes.
    directions : list of dict
        One per direction (forward, then reverse), each with ``"w_ih"`` ndarray of
        shape (G*H, D), ``"w_hh"`` of shape (G*H, H) and ``"b_ih"``, ``"b_hh"`` of
        shape (G*H,) or None (no bias, or a bias folded into ``b_ih``): the
        functional API's names, in PyTorch's packing.
    dtype : numpy dtype
        Of the returned arrays.

    Returns
    -------
    W : ndarray of shape (dirs, G*H, D)
    R : ndarray of shape (dirs, G*H, H)
    B : ndarray of shape (dirs, 2*G*H)
        ``[Wb, Rb]``; zeros where a bias is None.
    """
    spec = cell_spec(cell)
    W, R, B = [], [], []
    for weights in directions:
        w_ih, w_hh = np.asarray(weights["w_ih"]), np.asarray(weights["w_hh"])
        H = w_hh.shape[1]
        biases = [np.zeros(spec.gates * H) if weights.get(key) is None else np.asarray(weights[key])
                  for key in ("b_ih", "b_hh")]
        W.append(_onnx_order(spec, w_ih, H))
        R.append(_onnx_order(spec, w_hh, H))
        B.append(np.concatenate([_onnx_order(spec, b, H) for b in biases]))
    return tuple(np.stack(arrays).astype(dtype) for arrays in (W, R, B))
