"""Reduced-precision layers, reference backend: the reference kernels run on weights rounded
or quantized once (:mod:`fastrnn._python.reduced`).

The same interface as the compiled extension's: :func:`pack_reduced` takes a layer's
float32 weights as ``fastrnn._cy.pack_layer`` takes them and returns a
:class:`ReducedLayer`, and the ``*_forward_reduced`` kernels take that object in place of
the weights, with every other argument of the ``*_forward_packed`` kernels (the caller
allocates the workspace as for an inference call). The forward passes are the reference
kernels themselves, whose products go through :func:`fastrnn._python.reduced.product`;
the step is the forward pass on one time step.

bf16 training: the ``*_backward_reduced`` kernels take the layer in place of the weights
(and of ``relu`` / ``reset_after``), with every other argument of the ``*_backward``
kernels, and run the reference backward passes on the same rounded weights
(:func:`fastrnn._python.reduced.product_through`, :func:`~fastrnn._python.reduced.gradient_product`).
"""

import numpy as np

from fastrnn._python.gru import gru_backward, gru_forward
from fastrnn._python.lstm import lstm_backward, lstm_forward
from fastrnn._python.lstm_proj import lstm_proj_backward, lstm_proj_forward
from fastrnn._python.reduced import reduce_matrix
from fastrnn._python.rnn import rnn_backward, rnn_forward

__all__ = ["ReducedLayer", "pack_reduced", "rnn_forward_reduced", "lstm_forward_reduced",
           "lstm_proj_forward_reduced", "gru_forward_reduced", "rnn_backward_reduced",
           "lstm_backward_reduced", "lstm_proj_backward_reduced", "gru_backward_reduced"]

_CELLS = ("rnn", "lstm", "lstm_proj", "gru")


class ReducedLayer:
    """A layer's weights in bf16 or int8, made by :func:`pack_reduced`.

    Attributes
    ----------
    cell : {"rnn", "lstm", "lstm_proj", "gru"}
    precision : {"bf16", "int8"}
    w_ih, w_hh : ReducedMatrix of shape (G*H, D) and (G*H, H) (or (4*H, P))
    w_hr : ReducedMatrix of shape (P, H) or None
    bias : ndarray of float32 of shape (G*H,)
        ``b_ih + b_hh`` (RNN, LSTM) or the GRU's ``bias_x``.
    b_hn : ndarray of float32 of shape (H,) or None
    flag : bool
        RNN: relu; GRU: reset_after.
    level : str
        The kernel level, ``"reference"``.
    backward : bool
        Packed for the backward kernels too (bf16 only; the reference's matrices serve both).
    nbytes : int
        Memory held by the reduced weights and the biases.
    """

    __slots__ = ("cell", "precision", "w_ih", "w_hh", "w_hr", "bias", "b_hn", "flag", "level",
                 "nbytes", "backward")

    def __init__(self, cell, precision, w_ih, w_hh, bias, w_hr, b_hn, flag, backward=False):
        self.cell, self.precision, self.flag = cell, precision, bool(flag)
        self.backward = bool(backward)
        self.w_ih = reduce_matrix(w_ih, precision)
        self.w_hh = reduce_matrix(w_hh, precision)
        self.w_hr = None if w_hr is None else reduce_matrix(w_hr, precision)
        self.bias = np.array(bias, np.float32)
        self.b_hn = None if b_hn is None else np.array(b_hn, np.float32)
        self.level = "reference"
        arrays = [self.bias, self.b_hn]
        for matrix in (self.w_ih, self.w_hh, self.w_hr):
            if matrix is not None:
                arrays += [matrix.values, matrix.scale]
        self.nbytes = sum(a.nbytes for a in arrays if a is not None)

    def step(self, x, h, c, h_out, c_out):
        """One time step: the forward pass on ``T = 1``.

        Parameters
        ----------
        x : ndarray of float32 of shape (B, D)
            IN.
        h : ndarray of float32 of shape (B, H) (or (B, P))
            IN. The hidden state before the step.
        c : ndarray of float32 of shape (B, H) or None
            IN. The LSTM's cell state before the step (None for the others).
        h_out : ndarray of float32 of shape (B, H) (or (B, P))
            OUT. The hidden state after the step.
        c_out : ndarray of float32 of shape (B, H) or None
            OUT. The LSTM's cell state after the step; may be ``c``.
        """
        B = x.shape[0]
        x1 = x.reshape(1, B, x.shape[1])
        y = np.empty((1,) + h_out.shape, np.float32)
        H = self.w_hh.shape[0] // {"rnn": 1, "gru": 3}.get(self.cell, 4)
        if self.cell == "rnn":
            rnn_forward_reduced(x1, self, h, y, h_out, 1)
        elif self.cell == "gru":
            gru_forward_reduced(x1, self, h, y, h_out, np.empty((1, B, 4 * H), np.float32), 1)
        else:
            gates = np.empty((1, B, 4 * H), np.float32)
            none = np.empty((0, B, H), np.float32)
            if self.cell == "lstm":
                lstm_forward_reduced(x1, self, h, c, y, h_out, c_out, gates, none, 1)
            else:
                lstm_proj_forward_reduced(x1, self, h, c, y, h_out, c_out, gates, none, none, 1)


def pack_reduced(cell, precision, w_ih, w_hh, bias, *, w_hr=None, b_hn=None, flag=False,
                 backward=False):
    """Round or quantize a layer's weights once.

    Parameters
    ----------
    cell : {"rnn", "lstm", "lstm_proj", "gru"}
    precision : {"bf16", "int8"}
    w_ih : ndarray of float32 of shape (G*H, D)
    w_hh : ndarray of float32 of shape (G*H, H), or (4*H, P) for "lstm_proj"
    bias : ndarray of float32 of shape (G*H,)
        ``b_ih + b_hh``; the GRU's ``bias_x``.
    w_hr : ndarray of float32 of shape (P, H), optional
        "lstm_proj" only.
    b_hn : ndarray of float32 of shape (H,), optional
        "gru" only.
    flag : bool
        RNN: relu; GRU: reset_after.
    backward : bool
        Also for the ``*_backward_reduced`` kernels (bf16 training); bf16 only.

    Returns
    -------
    ReducedLayer
    """
    if cell not in _CELLS:
        raise ValueError(f"cell must be one of {_CELLS}; got {cell!r}")
    if precision not in ("bf16", "int8"):
        raise ValueError(f"precision must be 'bf16' or 'int8'; got {precision!r}")
    if backward and precision != "bf16":
        raise ValueError(f"a backward pass runs in bf16, not {precision!r}")
    return ReducedLayer(cell, precision, w_ih, w_hh, bias, w_hr, b_hn, flag, backward)


def rnn_forward_reduced(x, layer, h0, y, h_n, n_threads):
    """:func:`fastrnn._python.rnn.rnn_forward` on ``layer``'s reduced weights."""
    rnn_forward(x, layer.w_ih, layer.w_hh, layer.bias, h0, layer.flag, y, h_n, n_threads)


def lstm_forward_reduced(x, layer, h0, c0, y, h_n, c_n, gates, c_all, n_threads):
    """:func:`fastrnn._python.lstm.lstm_forward` on ``layer``'s reduced weights."""
    lstm_forward(x, layer.w_ih, layer.w_hh, layer.bias, h0, c0, y, h_n, c_n, gates, c_all, n_threads)


def lstm_proj_forward_reduced(x, layer, h0, c0, y, h_n, c_n, gates, c_all, m_all, n_threads):
    """:func:`fastrnn._python.lstm_proj.lstm_proj_forward` on ``layer``'s reduced weights."""
    lstm_proj_forward(x, layer.w_ih, layer.w_hh, layer.w_hr, layer.bias, h0, c0, y, h_n, c_n,
                      gates, c_all, m_all, n_threads)


def gru_forward_reduced(x, layer, h0, y, h_n, gates, n_threads):
    """:func:`fastrnn._python.gru.gru_forward` on ``layer``'s reduced weights."""
    gru_forward(x, layer.w_ih, layer.w_hh, layer.bias, layer.b_hn, h0, layer.flag, y, h_n, gates,
                n_threads)


def _check_backward(layer, cell):
    if not layer.backward or layer.cell != cell:
        raise ValueError(f"the backward kernels need a {cell} layer packed with backward=True; got "
                         f"a {layer.cell} layer{'' if layer.backward else ' packed for inference'}")


def rnn_backward_reduced(x, layer, h0, y, dy, dh_n, dz, dx, dh0, dw_ih, dw_hh, db, n_threads):
    """:func:`fastrnn._python.rnn.rnn_backward` on ``layer``'s bf16 weights."""
    _check_backward(layer, "rnn")
    rnn_backward(x, layer.w_ih, layer.w_hh, h0, y, dy, dh_n, layer.flag, dz, dx, dh0, dw_ih, dw_hh,
                 db, n_threads)


def lstm_backward_reduced(x, layer, h0, c0, y, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dx, dh0,
                          dc0, dw_ih, dw_hh, db, n_threads):
    """:func:`fastrnn._python.lstm.lstm_backward` on ``layer``'s bf16 weights."""
    _check_backward(layer, "lstm")
    lstm_backward(x, layer.w_ih, layer.w_hh, h0, c0, y, gates, c_all, dy, dh_n, dc_n, dc_seq, dz,
                  dx, dh0, dc0, dw_ih, dw_hh, db, n_threads)


def lstm_proj_backward_reduced(x, layer, h0, c0, y, gates, c_all, m_all, dy, dh_n, dc_n, dc_seq,
                               dz, dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db, n_threads):
    """:func:`fastrnn._python.lstm_proj.lstm_proj_backward` on ``layer``'s bf16 weights."""
    _check_backward(layer, "lstm_proj")
    lstm_proj_backward(x, layer.w_ih, layer.w_hh, layer.w_hr, h0, c0, y, gates, c_all, m_all, dy,
                       dh_n, dc_n, dc_seq, dz, dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db, n_threads)


def gru_backward_reduced(x, layer, h0, y, gates, dy, dh_n, dz_x, dz_h, dx, dh0, dw_ih, dw_hh, db_ih,
                         db_hh, n_threads):
    """:func:`fastrnn._python.gru.gru_backward` on ``layer``'s bf16 weights."""
    _check_backward(layer, "gru")
    gru_backward(x, layer.w_ih, layer.w_hh, h0, layer.flag, y, gates, dy, dh_n, dz_x, dz_h, dx, dh0,
                 dw_ih, dw_hh, db_ih, db_hh, n_threads)
