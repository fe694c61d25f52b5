r"""GRU cell: reference forward pass and backpropagation through time.

Gate blocks are packed as PyTorch does, ``r, z, n`` (reset, update, new), in
row-vector form for one step (``x_t`` of shape (B, D), ``h`` of shape (B, H)),
with :math:`\sigma` the logistic function and ``W_hr, W_hz, W_hn`` the three
row blocks of ``W_hh``:

.. math::

    g^x_t &= x_t W_{ih}^T + b_{ih}        \qquad \text{(split into } g^x_r, g^x_z, g^x_n) \\
    r_t &= \sigma(g^x_r + h_{t-1} W_{hr}^T + b_{hr}) \\
    z_t &= \sigma(g^x_z + h_{t-1} W_{hz}^T + b_{hz}) \\
    h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

and the new gate in one of two variants:

.. math::

    \text{reset\_after=True (PyTorch, ONNX linear\_before\_reset=1):} \quad
        \hat n_t &= h_{t-1} W_{hn}^T + b_{hn}, \quad n_t = \tanh(g^x_n + r_t \odot \hat n_t) \\
    \text{reset\_after=False (Keras, ONNX linear\_before\_reset=0):} \quad
        \hat n_t &= (r_t \odot h_{t-1}) W_{hn}^T + b_{hn}, \quad n_t = \tanh(g^x_n + \hat n_t)

``b_hr`` and ``b_hz`` are folded into the input projection (``bias_x``);
``b_hn`` cannot be, since ``r`` multiplies it when ``reset_after`` is true.

BPTT, with ``g_t = dy_t + dh_t`` (``dh_t`` arriving from step ``t+1``, ``dh_n``
at the last step):

.. math::

    dn_t &= g_t \odot (1 - z_t) \odot (1 - n_t^2)       \qquad \text{(gradient of the n pre-activation)} \\
    dz_t &= g_t \odot (h_{t-1} - n_t) \odot z_t (1 - z_t) \\
    dh_{t-1} &= g_t \odot z_t + \ldots

reset_after=True:

.. math::

    dr_t &= dn_t \odot \hat n_t \odot r_t (1 - r_t) \\
    dz^x_t &= [dr_t, dz_t, dn_t], \quad dz^h_t = [dr_t, dz_t, dn_t \odot r_t] \\
    dh_{t-1} &= g_t \odot z_t + dz^h_t W_{hh}

reset_after=False (the "input" of the n rows of ``W_hh`` is ``r_t \odot h_{t-1}``):

.. math::

    d(rh)_t &= dn_t W_{hn} \\
    dr_t &= d(rh)_t \odot h_{t-1} \odot r_t (1 - r_t) \\
    dz^x_t &= dz^h_t = [dr_t, dz_t, dn_t] \\
    dh_{t-1} &= g_t \odot z_t + [dr_t, dz_t] [W_{hr}; W_{hz}] + d(rh)_t \odot r_t

After the loop, over all ``T*B`` rows:
``dW_ih = sum dz^x^T x``, ``db_ih = sum dz^x``, ``dx = dz^x W_ih``,
``dW_hh = sum dz^h^T h_{t-1}`` (for reset_after=False, its n rows use
``r_t \odot h_{t-1}`` instead of ``h_{t-1}``), ``db_hh = sum dz^h``.

Kernel contract (shared by every backend)
-----------------------------------------
All arrays are C-contiguous, time-major and of one dtype (float32 or float64).
``T`` steps, ``B`` batch rows, ``D`` input features, ``H`` hidden units.

Workspace ``gates`` of shape (T, B, 4H). The forward pass first writes the input
projection ``x W_ih^T + bias_x`` into its first ``3H`` columns; step ``t`` then
overwrites row block ``t`` with ``[r_t, z_t, n_t, \hat n_t]``:

* reset_after=True: ``\hat n_t = h_{t-1} W_{hn}^T + b_{hn}`` (what ``dr`` needs);
* reset_after=False: ``\hat n_t = (r_t \odot h_{t-1}) W_{hn}^T + b_{hn}`` (kept for
  inspection; BPTT does not read it).

``y`` (with ``h0``) gives ``h_{t-1}`` for every step. ``gates`` and ``y`` are all
that BPTT needs.

The input projection runs in the fixed pieces and blocks of steps of
:func:`fastrnn._partition.projection_blocks` (``D`` inputs, ``4H`` columns), one
GEMM per piece, in training and inference alike, as in :mod:`fastrnn._python.lstm`:
in inference ``gates`` may hold one block's ``S < T`` steps only, projected and
run a block at a time.
"""

import numpy as np

from fastrnn._python.lstm import projected_steps
from fastrnn._python.reduced import gradient_product, product, product_through


def sigmoid(v):
    """Logistic function, through ``tanh`` (no overflow for large ``|v|``)."""
    return 0.5 + 0.5 * np.tanh(0.5 * v)


def gru_forward(x, w_ih, w_hh, bias_x, b_hn, h0, reset_after, y, h_n, gates, n_threads):
    """Run a GRU layer over a whole sequence.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (3*H, D)
        IN. Input-to-hidden weights, blocks ``r, z, n``.
    w_hh : ndarray of shape (3*H, H)
        IN. Hidden-to-hidden weights, blocks ``r, z, n``.
    bias_x : ndarray of shape (3*H,)
        IN. ``b_ih + [b_hh_r, b_hh_z, 0]`` (zeros for a missing bias).
    b_hn : ndarray of shape (H,)
        IN. ``b_hh_n``, the recurrent bias of the new gate.
    h0 : ndarray of shape (B, H)
        IN. Initial hidden state.
    reset_after : bool
        IN. ``True``: reset applied after the recurrent product (PyTorch); ``False``: before.
    y : ndarray of shape (T, B, H)
        OUT. Hidden state of every step, ``y[t] = h_{t+1}``.
    h_n : ndarray of shape (B, H)
        OUT. Hidden state after the last step.
    gates : ndarray of shape (T, B, 4*H) or (S, B, 4*H)
        OUT. Workspace ``[r, z, n, hn]`` of every step (see the module docstring);
        with ``S < T`` steps (inference, ``S`` one block's steps) of the last block.
    n_threads : int
        Unused by the reference (NumPy's BLAS decides).
    """
    T, B, D = x.shape
    H = w_hh.shape[1]
    w_hr_z = w_hh[: 2 * H]
    w_hn = w_hh[2 * H :]
    h = h0
    for t, g in projected_steps(x, w_ih, bias_x, gates):  # the projection in g[:, :3H]
        gx_r, gx_z, gx_n = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H]
        gh = product(h, w_hr_z)
        r = sigmoid(gx_r + gh[:, :H])
        z = sigmoid(gx_z + gh[:, H:])
        if reset_after:
            hn = product(h, w_hn) + b_hn
            n = np.tanh(gx_n + r * hn)
        else:
            hn = product(r * h, w_hn) + b_hn
            n = np.tanh(gx_n + hn)
        h = (1 - z) * n + z * h
        g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :] = r, z, n, hn
        y[t] = h
    h_n[...] = h


def gru_backward(x, w_ih, w_hh, h0, reset_after, y, gates, dy, dh_n, dz_x, dz_h, dx, dh0, dw_ih, dw_hh,
                 db_ih, db_hh, n_threads):
    """Backpropagate through a GRU layer run by :func:`gru_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input of the forward pass.
    w_ih : ndarray of shape (3*H, D)
        IN.
    w_hh : ndarray of shape (3*H, H)
        IN.
    h0 : ndarray of shape (B, H)
        IN. Initial state of the forward pass.
    reset_after : bool
        IN. The variant of the forward pass.
    y : ndarray of shape (T, B, H)
        IN. Output of the forward pass.
    gates : ndarray of shape (T, B, 4*H)
        IN. Workspace of the forward pass.
    dy : ndarray of shape (T, B, H)
        IN. Gradient of the loss with respect to ``y``.
    dh_n : ndarray of shape (B, H)
        IN. Gradient of the loss with respect to the final state.
    dz_x : ndarray of shape (T, B, 3*H)
        OUT. Workspace: gradient with respect to the x-side pre-activations ``[dr, dz, dn]``.
    dz_h : ndarray of shape (T, B, 3*H)
        OUT. Workspace: gradient with respect to the recurrent-side pre-activations
        (``[dr, dz, dn * r]`` for reset_after=True, ``[dr, dz, dn]`` for reset_after=False).
    dx : ndarray of shape (T, B, D)
        OUT. Gradient with respect to ``x``.
    dh0 : ndarray of shape (B, H)
        OUT. Gradient with respect to ``h0``.
    dw_ih : ndarray of shape (3*H, D)
        OUT.
    dw_hh : ndarray of shape (3*H, H)
        OUT.
    db_ih : ndarray of shape (3*H,)
        OUT.
    db_hh : ndarray of shape (3*H,)
        OUT.
    n_threads : int
        Unused by the reference.
    """
    T, B, D = x.shape
    H = w_hh.shape[1]
    w_hr_z = w_hh[: 2 * H]
    w_hn = w_hh[2 * H :]
    h_prev_all = np.concatenate([h0[None], y[:-1]])  # h_{t-1} for every t
    # 1. the recurrence, backwards: only dh_{t-1} is sequential
    dh = dh_n
    for t in range(T - 1, -1, -1):
        g = gates[t]
        r, z, n, hn = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        h_prev = h_prev_all[t]
        grad = dy[t] + dh
        dn = grad * (1 - z) * (1 - n * n)
        dzg = grad * (h_prev - n) * z * (1 - z)
        if reset_after:
            dr = dn * hn * r * (1 - r)
            dz_x[t] = np.concatenate([dr, dzg, dn], axis=1)
            dz_h[t] = np.concatenate([dr, dzg, dn * r], axis=1)
            dh = grad * z + product_through(dz_h[t], w_hh)
        else:
            drh = product_through(dn, w_hn)
            dr = drh * h_prev * r * (1 - r)
            dz_x[t] = np.concatenate([dr, dzg, dn], axis=1)
            dz_h[t] = dz_x[t]
            dh = grad * z + product_through(dz_h[t, :, : 2 * H], w_hr_z) + drh * r
    dh0[...] = dh
    # 2. everything else is a GEMM over all T*B rows
    dz_x_rows = dz_x.reshape(T * B, 3 * H)
    dz_h_rows = dz_h.reshape(T * B, 3 * H)
    h_prev_rows = h_prev_all.reshape(T * B, H)
    gradient_product(dz_x_rows, x.reshape(T * B, D), w_ih, out=dw_ih)
    db_ih[...] = dz_x_rows.sum(axis=0)
    product_through(dz_x_rows, w_ih, out=dx.reshape(T * B, D))
    gradient_product(dz_h_rows, h_prev_rows, w_hh, out=dw_hh)
    if not reset_after:
        r_rows = gates[:, :, :H].reshape(T * B, H)
        gradient_product(dz_h_rows[:, 2 * H :], r_rows * h_prev_rows, w_hh, out=dw_hh[2 * H :])
    db_hh[...] = dz_h_rows.sum(axis=0)
