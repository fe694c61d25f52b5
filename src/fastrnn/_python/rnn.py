r"""Elman (SimpleRNN) cell: reference forward pass and backpropagation through time.

Equations, in row-vector form for one step (``x_t`` of shape (B, D), ``h`` of shape (B, H)):

.. math::

    z_t &= x_t W_{ih}^T + b + h_{t-1} W_{hh}^T        \qquad b = b_{ih} + b_{hh} \\
    h_t &= \phi(z_t)                                  \qquad \phi = \tanh \text{ or } \max(\cdot, 0)

BPTT, with ``g_t = dL/dh_t`` arriving from the output (``dy[t]``) and from step ``t+1``:

.. math::

    dz_t &= (dy_t + dh_t) \odot \phi'(z_t)    \qquad \tanh' = 1 - h_t^2, \quad \mathrm{relu}' = [h_t > 0] \\
    dh_{t-1} &= dz_t W_{hh}                       \\
    dW_{ih} &= \textstyle\sum_t dz_t^T x_t, \quad dW_{hh} = \sum_t dz_t^T h_{t-1}, \quad db = \sum_t \sum_b dz_t \\
    dx_t &= dz_t W_{ih}

Kernel contract (shared by every backend)
-----------------------------------------
All arrays are C-contiguous, time-major and of one dtype (float32 or float64).
``T`` steps, ``B`` batch rows, ``D`` input features, ``H`` hidden units.

Workspace. The forward pass keeps nothing but its output: ``y[t]`` is
``h_t``, and both derivatives of the nonlinearity are functions of ``h_t``, so
``y`` together with ``h0`` is all that BPTT needs. The same holds in inference:
the input projection is written straight into ``y`` and overwritten step by
step, so inference needs no memory beyond the output and ``O(B*H)``.
"""

import numpy as np

from fastrnn._python.reduced import gradient_product, product, product_through


def rnn_forward(x, w_ih, w_hh, bias, h0, relu, y, h_n, n_threads):
    """Run an Elman layer over a whole sequence.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (H, D)
        IN. Input-to-hidden weights.
    w_hh : ndarray of shape (H, H)
        IN. Hidden-to-hidden weights.
    bias : ndarray of shape (H,)
        IN. ``b_ih + b_hh`` (zeros for a layer without bias).
    h0 : ndarray of shape (B, H)
        IN. Initial hidden state.
    relu : bool
        IN. ``True`` for ``relu``, ``False`` for ``tanh``.
    y : ndarray of shape (T, B, H)
        OUT. Hidden state of every step, ``y[t] = h_{t+1}``; also the workspace of BPTT.
    h_n : ndarray of shape (B, H)
        OUT. Hidden state after the last step.
    n_threads : int
        Unused by the reference (NumPy's BLAS decides).
    """
    T, B, D = x.shape
    H = w_hh.shape[0]
    # 1. input projection for every step at once, one GEMM over T*B rows
    product(x.reshape(T * B, D), w_ih, out=y.reshape(T * B, H))
    y += bias
    # 2. the recurrence
    h = h0
    for t in range(T):
        z = y[t] + product(h, w_hh)
        y[t] = np.maximum(z, 0) if relu else np.tanh(z)
        h = y[t]
    h_n[...] = h


def rnn_backward(x, w_ih, w_hh, h0, y, dy, dh_n, relu, dz, dx, dh0, dw_ih, dw_hh, db, n_threads):
    """Backpropagate through an Elman layer run by :func:`rnn_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input of the forward pass.
    w_ih : ndarray of shape (H, D)
        IN.
    w_hh : ndarray of shape (H, H)
        IN.
    h0 : ndarray of shape (B, H)
        IN. Initial state of the forward pass.
    y : ndarray of shape (T, B, H)
        IN. Output (and workspace) of the forward pass.
    dy : ndarray of shape (T, B, H)
        IN. Gradient of the loss with respect to ``y``.
    dh_n : ndarray of shape (B, H)
        IN. Gradient of the loss with respect to the final state.
    relu : bool
        IN. The nonlinearity of the forward pass.
    dz : ndarray of shape (T, B, H)
        OUT. Workspace: gradient with respect to the pre-activations ``z_t``.
    dx : ndarray of shape (T, B, D)
        OUT. Gradient with respect to ``x``.
    dh0 : ndarray of shape (B, H)
        OUT. Gradient with respect to ``h0``.
    dw_ih : ndarray of shape (H, D)
        OUT.
    dw_hh : ndarray of shape (H, H)
        OUT.
    db : ndarray of shape (H,)
        OUT. Gradient with respect to ``b_ih`` (equal to that of ``b_hh``).
    n_threads : int
        Unused by the reference.
    """
    T, B, D = x.shape
    H = w_hh.shape[0]
    # 1. the recurrence, backwards: only dh_{t-1} = dz_t W_hh is sequential
    dh = dh_n
    for t in range(T - 1, -1, -1):
        g = dy[t] + dh
        # relu: select rather than multiply, so that a NaN or inf gradient at a unit whose
        # output is 0 gives 0, as in the compiled kernels and torch
        dz[t] = np.where(y[t] > 0, g, 0) if relu else g * (1 - y[t] * y[t])
        dh = product_through(dz[t], w_hh)
    dh0[...] = dh
    # 2. everything else is a GEMM over all T*B rows
    dz_rows = dz.reshape(T * B, H)
    h_prev_rows = np.concatenate([h0[None], y[:-1]]).reshape(T * B, H)  # h_{t-1} for every t
    gradient_product(dz_rows, x.reshape(T * B, D), w_ih, out=dw_ih)
    gradient_product(dz_rows, h_prev_rows, w_hh, out=dw_hh)
    db[...] = dz_rows.sum(axis=0)
    product_through(dz_rows, w_ih, out=dx.reshape(T * B, D))
