r"""The GEMMs after the BPTT loop of the Numba backend, shared by the cells whose
recurrent input is ``h_{t-1}`` itself (SimpleRNN, LSTM, and the LSTM with a
projection, where ``h``, and so ``H`` below, has the P projected units).

With ``dz`` the gradient with respect to the pre-activations (G*H of them per
row), every step's rows give, by time block:

.. math::

    dW_{ih} \mathrel{+}= dz^T x, \qquad dW_{hh} \mathrel{+}= dz^T h_{t-1}, \qquad dx = dz\, W_{ih}

Partial weight gradients are kept per block and summed in block order by the
caller, so the thread that ran a block cannot change the result.
"""

import numpy as np


def block_gradients(x, w_ih, h0, y, dz, dx, dw_ih_part, dw_hh_part, t0, t1):
    """GEMMs over the rows of steps ``t0:t1`` into ``dw_ih_part``, ``dw_hh_part`` and ``dx``.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G*H, D)
    h0 : ndarray of shape (B, H)
    y : ndarray of shape (T, B, H)
        ``h_t`` of every step, so ``h_{t-1}`` is ``h0`` for ``t = 0`` and ``y[t - 1]`` after.
    dz : ndarray of shape (T, B, G*H)
    dx : ndarray of shape (T, B, D)
        OUT, rows of the block only.
    dw_ih_part : ndarray of shape (G*H, D)
        OUT, this block's share of ``dW_ih``.
    dw_hh_part : ndarray of shape (G*H, H)
        OUT, this block's share of ``dW_hh``.
    t0, t1 : int
    """
    B, D = x.shape[1], x.shape[2]
    H, G = y.shape[2], dz.shape[2]
    rows = (t1 - t0) * B
    dz_rows = dz[t0:t1].reshape(rows, G)
    np.matmul(dz_rows.T, x[t0:t1].reshape(rows, D), out=dw_ih_part)
    if t0 == 0:
        np.matmul(dz[0].T, h0, out=dw_hh_part)
        if t1 > 1:
            dw_hh_part += dz[1:t1].reshape(rows - B, G).T @ y[0 : t1 - 1].reshape(rows - B, H)
    else:
        np.matmul(dz_rows.T, y[t0 - 1 : t1 - 1].reshape(rows, H), out=dw_hh_part)
    np.matmul(dz_rows, w_ih, out=dx[t0:t1].reshape(rows, D))
