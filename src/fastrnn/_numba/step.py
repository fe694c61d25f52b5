"""The streaming step, Numba backend; the kernels and arguments of :mod:`fastrnn._python.step`.

The products run through NumPy's BLAS (``np.dot``), the gate math of a step in
one fused pass per row, as the time loops of :mod:`fastrnn._numba.lstm` and its
siblings do; one thread, the caller's.
"""

import numpy as np

from fastrnn._numba._options import jit
from fastrnn._numba.activations import sigmoid, tanh

__all__ = ["rnn_step", "lstm_step", "lstm_proj_step", "gru_step"]


@jit
def rnn_step(x, w_ih_t, w_hh_t, bias, h, relu, h_out):
    """Numba Elman step; arguments as :func:`fastrnn._python.step.rnn_step`."""
    z = np.dot(x, w_ih_t)
    recurrent = np.dot(h, w_hh_t)
    zero = h_out.dtype.type(0)
    for b in range(h_out.shape[0]):
        for j in range(h_out.shape[1]):
            v = z[b, j] + bias[j] + recurrent[b, j]
            if relu:
                h_out[b, j] = zero if v < zero else v
            else:
                h_out[b, j] = tanh(v)


@jit
def _lstm_gates(z, recurrent, c, m_out, c_out):
    """Activate ``z + recurrent`` (B, 4H); ``c_out`` and ``m_out = o * tanh(c_out)``."""
    H = c.shape[1]
    for b in range(c.shape[0]):
        for j in range(H):
            i = sigmoid(z[b, j] + recurrent[b, j])
            f = sigmoid(z[b, H + j] + recurrent[b, H + j])
            g = tanh(z[b, 2 * H + j] + recurrent[b, 2 * H + j])
            o = sigmoid(z[b, 3 * H + j] + recurrent[b, 3 * H + j])
            c_j = f * c[b, j] + i * g
            c_out[b, j] = c_j
            m_out[b, j] = o * tanh(c_j)


@jit
def lstm_step(x, w_ih_t, w_hh_t, bias, h, c, h_out, c_out):
    """Numba LSTM step; arguments as :func:`fastrnn._python.step.lstm_step`."""
    z = np.dot(x, w_ih_t) + bias
    _lstm_gates(z, np.dot(h, w_hh_t), c, h_out, c_out)


@jit
def lstm_proj_step(x, w_ih_t, w_hh_t, w_hr_t, bias, h, c, h_out, c_out):
    """Numba projected LSTM step; arguments as :func:`fastrnn._python.step.lstm_proj_step`."""
    z = np.dot(x, w_ih_t) + bias
    m = np.empty_like(c)
    _lstm_gates(z, np.dot(h, w_hh_t), c, m, c_out)
    h_out[...] = np.dot(m, w_hr_t)


@jit
def gru_step(x, w_ih_t, w_hrz_t, w_hn_t, bias_x, b_hn, h, reset_after, h_out):
    """Numba GRU step; arguments as :func:`fastrnn._python.step.gru_step`."""
    B, H = h.shape
    one = h.dtype.type(1)
    g = np.dot(x, w_ih_t)
    gh = np.dot(h, w_hrz_t)
    r = np.empty_like(h)
    z = np.empty_like(h)
    for b in range(B):
        for j in range(H):
            r[b, j] = sigmoid(g[b, j] + bias_x[j] + gh[b, j])
            z[b, j] = sigmoid(g[b, H + j] + bias_x[H + j] + gh[b, H + j])
    if reset_after:
        hn = np.dot(h, w_hn_t)
    else:
        hn = np.dot(r * h, w_hn_t)
    for b in range(B):
        for j in range(H):
            hn_j = hn[b, j] + b_hn[j]
            gx_n = g[b, 2 * H + j] + bias_x[2 * H + j]
            n = tanh(gx_n + r[b, j] * hn_j) if reset_after else tanh(gx_n + hn_j)
            h_out[b, j] = (one - z[b, j]) * n + z[b, j] * h[b, j]
