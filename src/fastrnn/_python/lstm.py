r"""LSTM cell: reference forward pass and backpropagation through time.

Equations, in row-vector form for one step (``x_t`` of shape (B, D), ``h`` and
``c`` of shape (B, H)), with PyTorch's gate packing ``i, f, g, o`` in blocks of
``H`` columns of the ``4H`` pre-activations:

.. math::

    z_t &= x_t W_{ih}^T + b + h_{t-1} W_{hh}^T        \qquad b = b_{ih} + b_{hh} \\
    i_t &= \sigma(z_i), \quad f_t = \sigma(z_f), \quad g_t = \tanh(z_g), \quad o_t = \sigma(z_o) \\
    c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
    h_t &= o_t \odot \tanh(c_t)

BPTT, with ``dh`` and ``dc`` arriving from step ``t+1`` (``dh_n``, ``dc_n`` at
the last step), ``dy_t`` from the output and ``dc_t^{ext}`` from an optional
gradient with respect to the cell state of every step (``dc_seq``; zero when
not given):

.. math::

    dh &\leftarrow dh + dy_t, \qquad dc \leftarrow dc + dc_t^{ext}, \qquad \tau = \tanh(c_t) \\
    do &= dh \odot \tau, \qquad dc \leftarrow dc + dh \odot o_t \odot (1 - \tau^2) \\
    di &= dc \odot g_t, \quad dg = dc \odot i_t, \quad df = dc \odot c_{t-1} \\
    dz_t &= [di \odot i_t (1 - i_t),\; df \odot f_t (1 - f_t),\; dg \odot (1 - g_t^2),\; do \odot o_t (1 - o_t)] \\
    dc_{t-1} &= dc \odot f_t, \qquad dh_{t-1} = dz_t W_{hh} \\
    dW_{ih} &= \textstyle\sum_t dz_t^T x_t, \quad dW_{hh} = \sum_t dz_t^T h_{t-1}, \quad db = \sum_t \sum_b dz_t \\
    dx_t &= dz_t W_{ih}

Kernel contract (shared by every backend)
-----------------------------------------
All arrays are C-contiguous, time-major and of one dtype (float32 or float64).
``T`` steps, ``B`` batch rows, ``D`` input features, ``H`` hidden units.

Workspace. The forward pass fills, besides its outputs ``y`` (``y[t] = h_t``),
``h_n`` and ``c_n``:

* ``gates`` of shape (T, B, 4H): first the input projection ``x_t W_ih^T + b``
  of every step, then, step by step, the *activated* gates ``[i_t, f_t, g_t, o_t]``
  written over it in place;
* ``c_all`` of shape (T, B, H): the cell state ``c_t`` of every step.

BPTT needs exactly ``gates``, ``c_all``, ``y`` (for ``h_{t-1}``), ``h0`` and
``c0``; every derivative above is a function of them (``\tanh(c_t)`` is
recomputed). In inference ``c_all`` may have shape (0, B, H): the kernel then
keeps only the running cell state and stores no step of it.

The input projection runs in the fixed pieces of steps of
:func:`fastrnn._partition.projection_blocks` (``D`` inputs, ``4H`` columns),
one GEMM per piece, in training and inference alike, so both compute it bit for
bit the same. In inference ``gates`` may hold only ``S < T`` steps, ``S`` the
steps of the first block (:func:`fastrnn._partition.projection_workspace_steps`):
the kernel then projects a block into it, runs the block's steps, and goes on
to the next block, so no workspace grows with ``T``.

Cell-state gradient of every step. Besides ``dy`` (the gradient with respect to
``h_t`` of every step) and ``dc_n``, the backward pass takes ``dc_seq``, the
gradient with respect to ``c_t`` of every step, of shape (T, B, H). It is added
to the carried ``dc`` of step ``t`` where ``dy[t]`` is added to ``dh``. This is
how a caller injects the gradients of ``h_n`` and ``c_n`` at a step other than
the last (a padded batch whose rows end at different steps). With shape
(0, B, H) there is none: nothing is added, and no zero array of T*B*H entries
has to be allocated in the common case.

The reference computes ``\sigma(z) = (1 + \tanh(z/2)) / 2``, which is exact and
cannot overflow, as the compiled backends do.
"""

import numpy as np

from fastrnn._partition import projection_spans
from fastrnn._python.reduced import gradient_product, product, product_through


def sigmoid(z):
    """Logistic function, through ``tanh`` (no overflow for large negative ``z``)."""
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def step_gates(z, c_prev):
    """One step's gate math: the equations above from the gates to ``o * tanh(c_t)``.

    Parameters
    ----------
    z : ndarray of shape (B, 4*H)
        IN: the pre-activations ``[z_i, z_f, z_g, z_o]``. OUT: the activated gates
        ``[i, f, g, o]``, written over them.
    c_prev : ndarray of shape (B, H)
        Cell state of step ``t - 1``.

    Returns
    -------
    c_t : ndarray of shape (B, H)
        Cell state of step ``t``.
    m_t : ndarray of shape (B, H)
        ``o * tanh(c_t)``: the hidden state (or, with a projection, its input).
    """
    H = c_prev.shape[1]
    i = sigmoid(z[:, 0 * H:1 * H])
    f = sigmoid(z[:, 1 * H:2 * H])
    g = np.tanh(z[:, 2 * H:3 * H])
    o = sigmoid(z[:, 3 * H:4 * H])
    c = f * c_prev + i * g
    z[:, 0 * H:1 * H] = i
    z[:, 1 * H:2 * H] = f
    z[:, 2 * H:3 * H] = g
    z[:, 3 * H:4 * H] = o
    return c, o * np.tanh(c)


def step_gradients(gates_t, c_t, c_prev, dh, dc, dz_t):
    """One step of BPTT through the gates: the equations above from ``do`` to ``dc_{t-1}``.

    Parameters
    ----------
    gates_t : ndarray of shape (B, 4*H)
        Activated gates ``[i, f, g, o]`` of step ``t``.
    c_t, c_prev : ndarray of shape (B, H)
        Cell states of steps ``t`` and ``t-1``.
    dh : ndarray of shape (B, H)
        Whole gradient with respect to ``o * tanh(c_t)`` (``h_t``, or its projection's input).
    dc : ndarray of shape (B, H)
        Gradient arriving at ``c_t`` from step ``t+1`` (and from outside).
    dz_t : ndarray of shape (B, 4*H)
        OUT. Gradient with respect to the pre-activations of step ``t``.

    Returns
    -------
    ndarray of shape (B, H)
        ``dc_{t-1}``.
    """
    H = c_t.shape[1]
    i = gates_t[:, 0 * H:1 * H]
    f = gates_t[:, 1 * H:2 * H]
    g = gates_t[:, 2 * H:3 * H]
    o = gates_t[:, 3 * H:4 * H]
    tc = np.tanh(c_t)
    do = dh * tc
    dc = dc + dh * o * (1 - tc * tc)
    di = dc * g
    dg = dc * i
    df = dc * c_prev
    dz_t[:, 0 * H:1 * H] = di * i * (1 - i)
    dz_t[:, 1 * H:2 * H] = df * f * (1 - f)
    dz_t[:, 2 * H:3 * H] = dg * (1 - g * g)
    dz_t[:, 3 * H:4 * H] = do * o * (1 - o)
    return dc * f


def lstm_forward(x, w_ih, w_hh, bias, h0, c0, y, h_n, c_n, gates, c_all, n_threads):
    """Run an LSTM layer over a whole sequence.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (4*H, D)
        IN. Input-to-hidden weights, blocks ``i, f, g, o``.
    w_hh : ndarray of shape (4*H, H)
        IN. Hidden-to-hidden weights, blocks ``i, f, g, o``.
    bias : ndarray of shape (4*H,)
        IN. ``b_ih + b_hh`` (zeros for a layer without bias).
    h0 : ndarray of shape (B, H)
        IN. Initial hidden state.
    c0 : ndarray of shape (B, H)
        IN. Initial cell state.
    y : ndarray of shape (T, B, H)
        OUT. Hidden state of every step, ``y[t] = h_{t+1}``.
    h_n : ndarray of shape (B, H)
        OUT. Hidden state after the last step.
    c_n : ndarray of shape (B, H)
        OUT. Cell state after the last step.
    gates : ndarray of shape (T, B, 4*H) or (S, B, 4*H)
        OUT. Workspace: the activated gates ``[i, f, g, o]`` of every step; with
        ``S < T`` steps (inference, ``S`` one block's steps) those of the last block.
    c_all : ndarray of shape (T, B, H) or (0, B, H)
        OUT. Workspace: the cell state of every step; with shape (0, B, H)
        (inference) nothing is stored.
    n_threads : int
        Unused by the reference (NumPy's BLAS decides).
    """
    T, B, D = x.shape
    keep_cells = c_all.shape[0] == T
    h = h0
    c = c0
    for t, z in projected_steps(x, w_ih, bias, gates):
        z += product(h, w_hh)
        c, h = step_gates(z, c)
        y[t] = h
        if keep_cells:
            c_all[t] = c
    h_n[...] = h
    c_n[...] = c


def project(x, w_ih, bias, out, t0, t1):
    """Input projection of steps ``t0:t1`` into their first ``G`` columns: ``out[..., :G] = x W_ih^T + bias``.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G, D)
    bias : ndarray of shape (G,)
    out : ndarray of shape (t1 - t0, B, W), W >= G
        OUT. The workspace rows of the steps (the GRU's are wider than ``G``).
    t0, t1 : int
        The steps, one piece of :func:`fastrnn._partition.projection_blocks`.
    """
    B, D = x.shape[1:]
    rows = out.reshape((t1 - t0) * B, out.shape[2])[:, :w_ih.shape[0]]
    product(x[t0:t1].reshape((t1 - t0) * B, D), w_ih, out=rows)
    rows += bias


def projected_steps(x, w_ih, bias, gates):
    """The steps of a forward pass, each after its input projection is in ``gates``.

    Projects a span of steps (all steps in training, one block in inference:
    :func:`fastrnn._partition.projection_spans` tells from ``gates``' length)
    one GEMM per piece, then yields its steps; the next span reuses ``gates``.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G, D)
    bias : ndarray of shape (G,)
    gates : ndarray of shape (T, B, W) or (S, B, W), W >= G
        The workspace, its first ``G`` columns filled with the projection.

    Yields
    ------
    t : int
        The step.
    gates_t : ndarray of shape (B, W)
        Its row block of ``gates`` (a view: the caller writes the activated gates there).
    """
    T, B, D = x.shape
    pieces, spans, _ = projection_spans(T, B, D, gates.shape[2], gates.shape[0])
    for s in range(len(spans) - 1):
        base = pieces[spans[s]]  # gates[0] holds this span's first step
        for k in range(spans[s], spans[s + 1]):
            project(x, w_ih, bias, gates[pieces[k] - base:pieces[k + 1] - base], pieces[k], pieces[k + 1])
        for t in range(base, pieces[spans[s + 1]]):
            yield t, gates[t - base]


def lstm_backward(x, w_ih, w_hh, h0, c0, y, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dx, dh0,
                  dc0, dw_ih, dw_hh, db, n_threads):
    """Backpropagate through an LSTM layer run by :func:`lstm_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input of the forward pass.
    w_ih : ndarray of shape (4*H, D)
        IN.
    w_hh : ndarray of shape (4*H, H)
        IN.
    h0, c0 : ndarray of shape (B, H)
        IN. Initial states of the forward pass.
    y : ndarray of shape (T, B, H)
        IN. Output of the forward pass.
    gates : ndarray of shape (T, B, 4*H)
        IN. Activated gates kept by the forward pass.
    c_all : ndarray of shape (T, B, H)
        IN. Cell states kept by the forward pass.
    dy : ndarray of shape (T, B, H)
        IN. Gradient of the loss with respect to ``y``.
    dh_n, dc_n : ndarray of shape (B, H)
        IN. Gradients of the loss with respect to the final states.
    dc_seq : ndarray of shape (T, B, H) or (0, B, H)
        IN. Gradient of the loss with respect to the cell state ``c_t`` of
        every step, added to ``dc`` at step ``t``; with shape (0, B, H) there
        is none.
    dz : ndarray of shape (T, B, 4*H)
        OUT. Workspace: gradient with respect to the pre-activations ``z_t``.
    dx : ndarray of shape (T, B, D)
        OUT. Gradient with respect to ``x``.
    dh0, dc0 : ndarray of shape (B, H)
        OUT. Gradients with respect to ``h0`` and ``c0``.
    dw_ih : ndarray of shape (4*H, D)
        OUT.
    dw_hh : ndarray of shape (4*H, H)
        OUT.
    db : ndarray of shape (4*H,)
        OUT. Gradient with respect to ``b_ih`` (equal to that of ``b_hh``).
    n_threads : int
        Unused by the reference.
    """
    T, B, D = x.shape
    H = w_hh.shape[1]
    has_dc_seq = dc_seq.shape[0] == T  # else (0, B, H): no cell-state gradient per step
    # 1. the recurrence, backwards: only dh_{t-1} = dz_t W_hh is sequential
    dh = dh_n
    dc = dc_n
    for t in range(T - 1, -1, -1):
        dh = dh + dy[t]
        if has_dc_seq:
            dc = dc + dc_seq[t]
        c_prev = c0 if t == 0 else c_all[t - 1]
        dc = step_gradients(gates[t], c_all[t], c_prev, dh, dc, dz[t])
        dh = product_through(dz[t], w_hh)
    dh0[...] = dh
    dc0[...] = dc
    # 2. everything else is a GEMM over all T*B rows
    dz_rows = dz.reshape(T * B, 4 * H)
    h_prev_rows = np.concatenate([h0[None], y[:-1]]).reshape(T * B, H)  # h_{t-1} for every t
    gradient_product(dz_rows, x.reshape(T * B, D), w_ih, out=dw_ih)
    gradient_product(dz_rows, h_prev_rows, w_hh, out=dw_hh)
    db[...] = dz_rows.sum(axis=0)
    product_through(dz_rows, w_ih, out=dx.reshape(T * B, D))
