"""The streaming step, reference backend: one time step of each cell in plain NumPy.

A step is the forward kernels' step ``t`` on its own (see :mod:`fastrnn._python.rnn`,
:mod:`~fastrnn._python.lstm`, :mod:`~fastrnn._python.lstm_proj`, :mod:`~fastrnn._python.gru`
for the equations), with the weights given transposed and C-contiguous once
(:func:`fastrnn.functional.packed.pack_lstm` and its siblings) rather than
transposed per call. Every kernel writes its outputs and returns nothing; the
arrays are validated by the caller. :mod:`fastrnn._numba.step` reads alike.
"""

import numpy as np

from fastrnn._python.lstm import sigmoid, step_gates

__all__ = ["rnn_step", "lstm_step", "lstm_proj_step", "gru_step"]


def rnn_step(x, w_ih_t, w_hh_t, bias, h, relu, h_out):
    """One Elman step: ``h_out = phi(x W_ih^T + b + h W_hh^T)``.

    Parameters
    ----------
    x : ndarray of shape (B, D)
        IN. Input of the step.
    w_ih_t : ndarray of shape (D, H)
        IN. ``W_ih^T``.
    w_hh_t : ndarray of shape (H, H)
        IN. ``W_hh^T``.
    bias : ndarray of shape (H,)
        IN. ``b_ih + b_hh``.
    h : ndarray of shape (B, H)
        IN. Hidden state before the step.
    relu : bool
        IN. ``True`` for ``relu``, ``False`` for ``tanh``.
    h_out : ndarray of shape (B, H)
        OUT. Hidden state after the step.
    """
    z = x @ w_ih_t + bias + h @ w_hh_t
    h_out[...] = np.maximum(z, 0) if relu else np.tanh(z)


def lstm_step(x, w_ih_t, w_hh_t, bias, h, c, h_out, c_out):
    """One LSTM step (gate blocks ``i, f, g, o``).

    Parameters
    ----------
    x : ndarray of shape (B, D)
        IN.
    w_ih_t : ndarray of shape (D, 4*H)
        IN. ``W_ih^T``.
    w_hh_t : ndarray of shape (H, 4*H)
        IN. ``W_hh^T``.
    bias : ndarray of shape (4*H,)
        IN. ``b_ih + b_hh``.
    h, c : ndarray of shape (B, H)
        IN. Hidden and cell states before the step.
    h_out, c_out : ndarray of shape (B, H)
        OUT. Hidden and cell states after the step; ``c_out`` may be ``c``.
    """
    z = x @ w_ih_t + bias + h @ w_hh_t  # h has P columns in a projected LSTM (lstm_proj_step)
    c_out[...], h_out[...] = step_gates(z, c)


def lstm_proj_step(x, w_ih_t, w_hh_t, w_hr_t, bias, h, c, h_out, c_out):
    """One step of an LSTM with a projection: :func:`lstm_step`, then ``h_out = m W_hr^T``.

    Parameters
    ----------
    x : ndarray of shape (B, D)
        IN.
    w_ih_t : ndarray of shape (D, 4*H)
        IN.
    w_hh_t : ndarray of shape (P, 4*H)
        IN.
    w_hr_t : ndarray of shape (H, P)
        IN. ``W_hr^T``.
    bias : ndarray of shape (4*H,)
        IN.
    h : ndarray of shape (B, P)
        IN. Projected hidden state before the step.
    c : ndarray of shape (B, H)
        IN. Cell state before the step.
    h_out : ndarray of shape (B, P)
        OUT.
    c_out : ndarray of shape (B, H)
        OUT; may be ``c``.
    """
    m = np.empty_like(c)  # the unprojected output o * tanh(c_out)
    lstm_step(x, w_ih_t, w_hh_t, bias, h, c, m, c_out)
    h_out[...] = m @ w_hr_t


def gru_step(x, w_ih_t, w_hrz_t, w_hn_t, bias_x, b_hn, h, reset_after, h_out):
    """One GRU step (gate blocks ``r, z, n``).

    Parameters
    ----------
    x : ndarray of shape (B, D)
        IN.
    w_ih_t : ndarray of shape (D, 3*H)
        IN. ``W_ih^T``.
    w_hrz_t : ndarray of shape (H, 2*H)
        IN. ``[W_hr; W_hz]^T``, the first two blocks of ``W_hh^T``.
    w_hn_t : ndarray of shape (H, H)
        IN. ``W_hn^T``, its last block.
    bias_x : ndarray of shape (3*H,)
        IN. ``b_ih + [b_hh_r, b_hh_z, 0]``.
    b_hn : ndarray of shape (H,)
        IN. ``b_hh_n``.
    h : ndarray of shape (B, H)
        IN.
    reset_after : bool
        IN. Reset gate applied after the recurrent product (PyTorch) or before.
    h_out : ndarray of shape (B, H)
        OUT.
    """
    H = h.shape[1]
    gx = x @ w_ih_t + bias_x
    gh = h @ w_hrz_t
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:])
    if reset_after:
        hn = h @ w_hn_t + b_hn
        n = np.tanh(gx[:, 2 * H:] + r * hn)
    else:
        hn = (r * h) @ w_hn_t + b_hn
        n = np.tanh(gx[:, 2 * H:] + hn)
    h_out[...] = (1 - z) * n + z * h
