r"""LSTM cell with a projection of the hidden state (PyTorch's ``proj_size``):
reference forward pass and backpropagation through time.

Equations, in row-vector form for one step (``x_t`` of shape (B, D), ``h`` of
shape (B, P), ``c`` and ``m`` of shape (B, H), ``P < H``), with PyTorch's gate
packing ``i, f, g, o`` in blocks of ``H`` columns of the ``4H`` pre-activations:

.. math::

    z_t &= x_t W_{ih}^T + b + h_{t-1} W_{hh}^T        \qquad b = b_{ih} + b_{hh} \\
    i_t &= \sigma(z_i), \quad f_t = \sigma(z_f), \quad g_t = \tanh(z_g), \quad o_t = \sigma(z_o) \\
    c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
    m_t &= o_t \odot \tanh(c_t) \\
    h_t &= m_t W_{hr}^T

``W_hh`` has shape (4H, P) because the recurrent input is the projected ``h``;
the cell state keeps the full size ``H``.

BPTT, with ``dh`` (B, P) and ``dc`` (B, H) arriving from step ``t+1``
(``dh_n``, ``dc_n`` at the last step), ``dy_t`` from the output and
``dc^{seq}_t`` an extra gradient with respect to ``c_t`` from outside the
layer (zero when not given):

.. math::

    dh &\leftarrow dh + dy_t, \qquad dc \leftarrow dc + dc^{seq}_t, \qquad \tau = \tanh(c_t) \\
    dm &= dh\, W_{hr} \\
    do &= dm \odot \tau, \qquad dc \leftarrow dc + dm \odot o_t \odot (1 - \tau^2) \\
    di &= dc \odot g_t, \quad dg = dc \odot i_t, \quad df = dc \odot c_{t-1} \\
    dz_t &= [di \odot i_t (1 - i_t),\; df \odot f_t (1 - f_t),\; dg \odot (1 - g_t^2),\; do \odot o_t (1 - o_t)] \\
    dc_{t-1} &= dc \odot f_t, \qquad dh_{t-1} = dz_t W_{hh} \\
    dW_{hr} &= \textstyle\sum_t dh_t^T m_t, \quad dW_{ih} = \sum_t dz_t^T x_t, \quad
    dW_{hh} = \sum_t dz_t^T h_{t-1}, \quad db = \sum_t \sum_b dz_t \\
    dx_t &= dz_t W_{ih}

where ``dh_t`` is the total gradient reaching ``h_t``: ``dy_t + dz_{t+1} W_hh``
(``dy_{T-1} + dh_n`` at the last step). Only ``dm`` and ``dh_{t-1}`` are
sequential; ``dh_t`` for every step, and with it ``dW_hr``, is recomputed by
GEMMs over all ``T*B`` rows after the loop, like the other weight gradients.

Kernel contract (shared by every backend)
-----------------------------------------
All arrays are C-contiguous, time-major and of one dtype (float32 or float64).
``T`` steps, ``B`` batch rows, ``D`` input features, ``H`` hidden units,
``P`` projected units.

Workspace. The forward pass fills, besides its outputs ``y`` (``y[t] = h_t``,
shape (T, B, P)), ``h_n`` (B, P) and ``c_n`` (B, H):

* ``gates`` of shape (T, B, 4H): first the input projection ``x_t W_ih^T + b``
  of every step, then, step by step, the *activated* gates ``[i_t, f_t, g_t, o_t]``
  written over it in place;
* ``c_all`` of shape (T, B, H): the cell state ``c_t`` of every step;
* ``m_all`` of shape (T, B, H): the unprojected output ``m_t = o_t \odot \tanh(c_t)``
  of every step (the input of the projection, needed for ``dW_hr``).

BPTT needs exactly ``gates``, ``c_all``, ``m_all``, ``y`` (for ``h_{t-1}``),
``h0`` and ``c0``; ``\tanh(c_t)`` is recomputed. In inference ``c_all`` and
``m_all`` may have shape (0, B, H): the kernel then keeps only the running
cell state and stores no step of either.

The input projection runs in the fixed pieces and blocks of steps of
:func:`fastrnn._partition.projection_blocks`, as in :mod:`fastrnn._python.lstm`:
in inference ``gates`` may hold one block's ``S < T`` steps only.

``dc_seq`` of shape (T, B, H), or (0, B, H) for none, lets a caller
backpropagate a loss that reads the cell state of every step.

The reference computes ``\sigma(z) = (1 + \tanh(z/2)) / 2``, which is exact and
cannot overflow, as the compiled backends do.
"""

import numpy as np

from fastrnn._python.lstm import projected_steps, step_gates, step_gradients
from fastrnn._python.reduced import gradient_product, product, product_through


def lstm_proj_forward(x, w_ih, w_hh, w_hr, bias, h0, c0, y, h_n, c_n, gates, c_all, m_all,
                      n_threads):
    """Run an LSTM layer with a projection over a whole sequence.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (4*H, D)
        IN. Input-to-hidden weights, blocks ``i, f, g, o``.
    w_hh : ndarray of shape (4*H, P)
        IN. Hidden-to-hidden weights (from the projected state), blocks ``i, f, g, o``.
    w_hr : ndarray of shape (P, H)
        IN. Projection weights.
    bias : ndarray of shape (4*H,)
        IN. ``b_ih + b_hh`` (zeros for a layer without bias).
    h0 : ndarray of shape (B, P)
        IN. Initial (projected) hidden state.
    c0 : ndarray of shape (B, H)
        IN. Initial cell state.
    y : ndarray of shape (T, B, P)
        OUT. Projected hidden state of every step, ``y[t] = h_t``.
    h_n : ndarray of shape (B, P)
        OUT. Hidden state after the last step.
    c_n : ndarray of shape (B, H)
        OUT. Cell state after the last step.
    gates : ndarray of shape (T, B, 4*H) or (S, B, 4*H)
        OUT. Workspace: the activated gates ``[i, f, g, o]`` of every step; with
        ``S < T`` steps (inference, ``S`` one block's steps) those of the last block.
    c_all : ndarray of shape (T, B, H) or (0, B, H)
        OUT. Workspace: the cell state of every step; with shape (0, B, H)
        (inference) nothing is stored.
    m_all : ndarray of shape (T, B, H) or (0, B, H)
        OUT. Workspace: ``o_t * tanh(c_t)`` of every step; with shape
        (0, B, H) (inference) nothing is stored.
    n_threads : int
        Unused by the reference (NumPy's BLAS decides).
    """
    T, B, D = x.shape
    keep_cells = c_all.shape[0] == T
    keep_m = m_all.shape[0] == T
    h = h0
    c = c0
    for t, z in projected_steps(x, w_ih, bias, gates):
        z += product(h, w_hh)
        c, m = step_gates(z, c)
        h = product(m, w_hr)
        y[t] = h
        if keep_cells:
            c_all[t] = c
        if keep_m:
            m_all[t] = m
    h_n[...] = h
    c_n[...] = c


def lstm_proj_backward(x, w_ih, w_hh, w_hr, h0, c0, y, gates, c_all, m_all, dy, dh_n, dc_n,
                       dc_seq, dz, dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db, n_threads):
    """Backpropagate through an LSTM layer run by :func:`lstm_proj_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input of the forward pass.
    w_ih : ndarray of shape (4*H, D)
        IN.
    w_hh : ndarray of shape (4*H, P)
        IN.
    w_hr : ndarray of shape (P, H)
        IN.
    h0 : ndarray of shape (B, P)
        IN. Initial hidden state of the forward pass.
    c0 : ndarray of shape (B, H)
        IN. Initial cell state of the forward pass.
    y : ndarray of shape (T, B, P)
        IN. Output of the forward pass.
    gates : ndarray of shape (T, B, 4*H)
        IN. Activated gates kept by the forward pass.
    c_all : ndarray of shape (T, B, H)
        IN. Cell states kept by the forward pass.
    m_all : ndarray of shape (T, B, H)
        IN. ``o_t * tanh(c_t)`` kept by the forward pass.
    dy : ndarray of shape (T, B, P)
        IN. Gradient of the loss with respect to ``y``.
    dh_n : ndarray of shape (B, P)
        IN. Gradient of the loss with respect to ``h_n``.
    dc_n : ndarray of shape (B, H)
        IN. Gradient of the loss with respect to ``c_n``.
    dc_seq : ndarray of shape (T, B, H) or (0, B, H)
        IN. Gradient of the loss with respect to the cell state of every step
        (``c_all[t]``); shape (0, B, H) means none.
    dz : ndarray of shape (T, B, 4*H)
        OUT. Workspace: gradient with respect to the pre-activations ``z_t``.
    dx : ndarray of shape (T, B, D)
        OUT. Gradient with respect to ``x``.
    dh0 : ndarray of shape (B, P)
        OUT. Gradient with respect to ``h0``.
    dc0 : ndarray of shape (B, H)
        OUT. Gradient with respect to ``c0``.
    dw_ih : ndarray of shape (4*H, D)
        OUT.
    dw_hh : ndarray of shape (4*H, P)
        OUT.
    dw_hr : ndarray of shape (P, H)
        OUT.
    db : ndarray of shape (4*H,)
        OUT. Gradient with respect to ``b_ih`` (equal to that of ``b_hh``).
    n_threads : int
        Unused by the reference.
    """
    T, B, D = x.shape
    P, H = w_hr.shape
    has_dc_seq = dc_seq.shape[0] == T
    # 1. the recurrence, backwards: only dm = dh W_hr and dh_{t-1} = dz_t W_hh are sequential
    dh = dh_n
    dc = dc_n
    for t in range(T - 1, -1, -1):
        dh = dh + dy[t]
        if has_dc_seq:
            dc = dc + dc_seq[t]
        c_prev = c0 if t == 0 else c_all[t - 1]
        dm = product_through(dh, w_hr)
        dc = step_gradients(gates[t], c_all[t], c_prev, dm, dc, dz[t])
        dh = product_through(dz[t], w_hh)
    dh0[...] = dh
    dc0[...] = dc
    # 2. everything else is a GEMM over all T*B rows
    dz_rows = dz.reshape(T * B, 4 * H)
    h_prev_rows = np.concatenate([h0[None], y[:-1]]).reshape(T * B, P)  # h_{t-1} for every t
    # dh_t = dy_t + dz_{t+1} W_hh (dh_n at the last step): rebuilt rather than kept in the loop
    dh_all = dy.copy()
    dh_all[:-1] += product_through(dz[1:].reshape((T - 1) * B, 4 * H), w_hh).reshape(T - 1, B, P)
    dh_all[-1] += dh_n
    gradient_product(dh_all.reshape(T * B, P), m_all.reshape(T * B, H), w_hr, out=dw_hr)
    gradient_product(dz_rows, x.reshape(T * B, D), w_ih, out=dw_ih)
    gradient_product(dz_rows, h_prev_rows, w_hh, out=dw_hh)
    db[...] = dz_rows.sum(axis=0)
    product_through(dz_rows, w_ih, out=dx.reshape(T * B, D))
