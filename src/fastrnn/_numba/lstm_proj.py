"""LSTM cell with a projection (PyTorch's ``proj_size``), Numba backend.

The steps, names and workspace are those of :mod:`fastrnn._python.lstm_proj`,
whose docstring has the equations and the kernel contract. What differs is how
the work is done: the time loop is a ``nogil`` kernel run on fixed batch chunks
(:func:`fastrnn._parallel.batch_chunks`), with the gate math of a step fused
into one pass (no temporary per gate); the GEMMs over all steps (input
projection before the loop, weight gradients and ``dx`` after it) run once
through NumPy's BLAS. The chunks do not depend on ``n_threads`` and the GEMMs
after the loop are not split, so neither does the result.
"""

import numpy as np

from fastrnn._numba._options import jit
from fastrnn._numba.activations import sigmoid, tanh
from fastrnn._parallel import batch_chunks, blas_threads, run_pieces

GATES = 4


@jit
def _forward_loop(w_hh, w_hr, h0, c0, y, h_n, c_n, gates, c_all, m_all, b0, b1):
    """Time loop for batch rows ``b0:b1``; ``gates`` holds the input projection on entry."""
    T = gates.shape[0]
    H = c0.shape[1]
    keep_cells = c_all.shape[0] == T
    keep_m = m_all.shape[0] == T
    w_hh_t = w_hh.T
    w_hr_t = w_hr.T
    h = h0[b0:b1].copy()
    c = c0[b0:b1].copy()
    m = np.empty_like(c)
    for t in range(T):
        recurrent = np.dot(h, w_hh_t)
        z = gates[t, b0:b1]
        for b in range(b1 - b0):
            for j in range(H):
                i = sigmoid(z[b, j] + recurrent[b, j])
                f = sigmoid(z[b, H + j] + recurrent[b, H + j])
                g = tanh(z[b, 2 * H + j] + recurrent[b, 2 * H + j])
                o = sigmoid(z[b, 3 * H + j] + recurrent[b, 3 * H + j])
                z[b, j] = i
                z[b, H + j] = f
                z[b, 2 * H + j] = g
                z[b, 3 * H + j] = o
                c_j = f * c[b, j] + i * g
                c[b, j] = c_j
                m[b, j] = o * tanh(c_j)
        # the projection: the only GEMM the recurrence adds to the plain LSTM
        h = np.dot(m, w_hr_t)
        y[t, b0:b1] = h
        if keep_cells:
            c_all[t, b0:b1] = c
        if keep_m:
            m_all[t, b0:b1] = m
    h_n[b0:b1] = h
    c_n[b0:b1] = c


@jit
def _backward_loop(w_hh, w_hr, c0, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dh0, dc0, b0, b1):
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz``, ``dh0`` and ``dc0``."""
    T, _, H = c_all.shape
    one = c_all.dtype.type(1)
    has_dc_seq = dc_seq.shape[0] == T
    dh = dh_n[b0:b1].copy()
    dc = dc_n[b0:b1].copy()
    dz_t = np.empty((b1 - b0, GATES * H), dtype=c_all.dtype)
    for t in range(T - 1, -1, -1):
        dh += dy[t, b0:b1]
        dm = np.dot(dh, w_hr)
        a = gates[t, b0:b1]
        c_t = c_all[t, b0:b1]
        c_prev = c0[b0:b1] if t == 0 else c_all[t - 1, b0:b1]
        for b in range(b1 - b0):
            for j in range(H):
                i = a[b, j]
                f = a[b, H + j]
                g = a[b, 2 * H + j]
                o = a[b, 3 * H + j]
                dm_j = dm[b, j]
                dc_j = dc[b, j]
                if has_dc_seq:
                    dc_j += dc_seq[t, b0 + b, j]
                tc = tanh(c_t[b, j])
                do = dm_j * tc
                dc_j = dc_j + dm_j * o * (one - tc * tc)
                di = dc_j * g
                dg = dc_j * i
                df = dc_j * c_prev[b, j]
                dz_t[b, j] = di * i * (one - i)
                dz_t[b, H + j] = df * f * (one - f)
                dz_t[b, 2 * H + j] = dg * (one - g * g)
                dz_t[b, 3 * H + j] = do * o * (one - o)
                dc[b, j] = dc_j * f
        dz[t, b0:b1] = dz_t
        dh = np.dot(dz_t, w_hh)
    dh0[b0:b1] = dh
    dc0[b0:b1] = dc


def lstm_proj_forward(x, w_ih, w_hh, w_hr, bias, h0, c0, y, h_n, c_n, gates, c_all, m_all,
                      n_threads):
    """Numba forward; arguments as :func:`fastrnn._python.lstm_proj.lstm_proj_forward`."""
    T, B, D = x.shape
    H = w_hr.shape[1]
    G = GATES * H
    chunks = batch_chunks(B, H, GATES)
    # 1. input projection for every step at once: gates = x W_ih^T + b
    gate_rows = gates.reshape(T * B, G)
    np.matmul(x.reshape(T * B, D), w_ih.T, out=gate_rows)
    gate_rows += bias

    def recur(k):  # 2. the recurrence, one batch chunk for all steps
        _forward_loop(w_hh, w_hr, h0, c0, y, h_n, c_n, gates, c_all, m_all, chunks[k], chunks[k + 1])

    with blas_threads.limit(1):
        run_pieces(recur, len(chunks) - 1, n_threads)


def lstm_proj_backward(x, w_ih, w_hh, w_hr, h0, c0, y, gates, c_all, m_all, dy, dh_n, dc_n,
                       dc_seq, dz, dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db, n_threads):
    """Numba BPTT; arguments as :func:`fastrnn._python.lstm_proj.lstm_proj_backward`."""
    T, B, D = x.shape
    P, H = w_hr.shape
    G = GATES * H
    chunks = batch_chunks(B, H, GATES)

    def recur(k):  # 1. the recurrence backwards, one batch chunk for all steps
        _backward_loop(w_hh, w_hr, c0, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dh0, dc0,
                       chunks[k], chunks[k + 1])

    with blas_threads.limit(1):
        run_pieces(recur, len(chunks) - 1, n_threads)
    # 2. GEMMs over all T*B rows, unsplit so that n_threads cannot change them
    dz_rows = dz.reshape(T * B, G)
    # dh_t = dy_t + dz_{t+1} W_hh (dh_n at the last step), the left factor of dW_hr
    dh_all = dy.copy()
    if T > 1:
        np.add(dh_all[:-1].reshape((T - 1) * B, P), dz[1:].reshape((T - 1) * B, G) @ w_hh,
               out=dh_all[:-1].reshape((T - 1) * B, P))
    dh_all[-1] += dh_n
    np.matmul(dh_all.reshape(T * B, P).T, m_all.reshape(T * B, H), out=dw_hr)
    np.matmul(dz_rows.T, x.reshape(T * B, D), out=dw_ih)
    np.matmul(dz[0].T, h0, out=dw_hh)
    if T > 1:
        dw_hh += dz[1:].reshape((T - 1) * B, G).T @ y[:-1].reshape((T - 1) * B, P)
    np.sum(dz_rows, axis=0, out=db)
    np.matmul(dz_rows, w_ih, out=dx.reshape(T * B, D))
