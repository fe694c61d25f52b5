"""fastrnn's forward in a reduced precision, for the precision and accuracy tables.

Through the public API (``precision=`` on ``fastrnn.pack_<cell>`` and the
``*_forward`` functions), or on the NumPy reference kernels given
:class:`fastrnn._python.reduced.ReducedMatrix` weights, which define every rounding of
the reduced-precision kernels (slow: for checks and small tables only).
"""

import numpy as np

import fastrnn
from fastrnn._python import gru as reference_gru
from fastrnn._python import lstm as reference_lstm
from fastrnn._python import rnn as reference_rnn
from fastrnn._python.reduced import PRECISIONS, reduce_matrix
from fastrnn.functional.cells import CELLS

__all__ = ["PRECISIONS", "packed_forward", "reference_forward"]


def _pack(cell, w_ih, w_hh, b_ih, b_hh, precision, backend):
    return getattr(fastrnn, f"pack_{cell.name}")(w_ih, w_hh, b_ih, b_hh, precision=precision,
                                                  backend=backend)


def packed_forward(cell, precision, weights, backend=None):
    """A function running ``cell``'s forward with weights packed once in ``precision`` (public API).

    Parameters
    ----------
    cell : str
        ``"rnn"``, ``"lstm"`` or ``"gru"``.
    precision : {"float32", "bf16", "int8"}
    weights : tuple
        ``(w_ih, w_hh, b_ih, b_hh)`` in PyTorch's layout, float32.
    backend : str, optional

    Returns
    -------
    callable
        ``run(x, *initial_states, n_threads)`` -> the output sequence, ndarray of shape (T, B, H).
    """
    spec = CELLS[cell]
    packed = _pack(spec, *weights, precision, backend)
    forward = getattr(fastrnn, spec.forward)

    def run(x, *states, n_threads=1):
        named = dict(zip(spec.initial_state_names, states))
        return forward(x, packed, **named, backend=backend, n_threads=n_threads, requires_grad=False)[0]

    return run


def reference_forward(cell, precision, x, w_ih, w_hh, b_ih, b_hh, h0, c0=None):
    """``cell``'s forward on the NumPy reference kernels, its products in ``precision``.

    Parameters
    ----------
    cell : str
        ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"`` (PyTorch's, reset after).
    precision : {"float32", "bf16", "int8"}
        ``"float32"``: the arrays as given (float64 arrays run in float64).
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G*H, D)
    w_hh : ndarray of shape (G*H, H)
    b_ih, b_hh : ndarray of shape (G*H,)
    h0 : ndarray of shape (B, H)
    c0 : ndarray of shape (B, H), LSTM only

    Returns
    -------
    ndarray of shape (T, B, H)
    """
    dtype = np.float64 if x.dtype == np.float64 and precision == "float32" else np.float32
    x, w_ih, w_hh, b_ih, b_hh, h0 = (np.ascontiguousarray(a, dtype=dtype)
                                     for a in (x, w_ih, w_hh, b_ih, b_hh, h0))
    T, B, _ = x.shape
    H = w_hh.shape[1]
    if precision != "float32":
        w_ih, w_hh = reduce_matrix(w_ih, precision), reduce_matrix(w_hh, precision)
    y = np.empty((T, B, H), dtype)
    h_n = np.empty((B, H), dtype)
    if cell == "rnn":
        reference_rnn.rnn_forward(x, w_ih, w_hh, b_ih + b_hh, h0, False, y, h_n, 1)
    elif cell == "lstm":
        c0 = np.ascontiguousarray(c0, dtype=dtype)
        reference_lstm.lstm_forward(x, w_ih, w_hh, b_ih + b_hh, h0, c0, y, h_n, np.empty((B, H), dtype),
                                    np.empty((T, B, 4 * H), dtype), np.empty((0, B, H), dtype), 1)
    elif cell == "gru":
        bias_x = b_ih.copy()
        bias_x[:2 * H] += b_hh[:2 * H]
        reference_gru.gru_forward(x, w_ih, w_hh, bias_x, b_hh[2 * H:].copy(), h0, True, y, h_n,
                                  np.empty((T, B, 4 * H), dtype), 1)
    else:
        raise ValueError(f"unknown cell {cell!r}; known: rnn, lstm, gru")
    return y
