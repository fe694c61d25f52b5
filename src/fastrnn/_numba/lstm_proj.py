"""LSTM cell with a projection (PyTorch's ``proj_size``), Numba backend.

The steps, names and workspace are those of :mod:`fastrnn._python.lstm_proj`,
whose docstring has the equations and the kernel contract, and the layout follows
:mod:`fastrnn._numba.lstm`. What differs from the reference is how the work is
done: the GEMMs over all steps run through NumPy's BLAS in fixed time blocks
(the input projection in the pieces of :func:`fastrnn._partition.projection_blocks`,
before the loop or, in inference, a block at a time between runs of it; weight
gradients and ``dx`` after it, with
partial weight gradients summed in block order), and the time loop is a
``nogil`` kernel run on fixed batch chunks, with the gate math of a step fused
into one pass (no temporary per gate). The BPTT loop keeps ``dh_t`` of every
step, the left factor of ``dW_hr``, instead of recomputing it after the loop.
Pieces do not depend on ``n_threads``, and BLAS runs on one thread inside them,
so neither does the result.
"""

import numpy as np

from fastrnn._numba._gradients import block_gradients
from fastrnn._numba._options import jit
from fastrnn._numba.activations import sigmoid, tanh
from fastrnn._partition import batch_chunks, projection_spans, time_blocks
from fastrnn._threads import blas_threads, run_pieces

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
def _backward_loop(w_hh, w_hr, c0, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dh_all, dh0, dc0,
                   b0, b1):
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz``, ``dh0``, ``dc0`` and ``dh_all``
    (``dh_t``, the total gradient reaching ``h_t``, of every step)."""
    T, _, H = c_all.shape
    one = c_all.dtype.type(1)
    has_dc_seq = dc_seq.shape[0] == T
    dh = dh_n[b0:b1].copy()
    dc = dc_n[b0:b1].copy()
    dz_t = np.empty((b1 - b0, GATES * H), dtype=c_all.dtype)
    for t in range(T - 1, -1, -1):
        dh += dy[t, b0:b1]
        dh_all[t, b0:b1] = dh
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
    keep_cells = c_all.shape[0] == T
    keep_m = m_all.shape[0] == T
    pieces, spans, shared = projection_spans(T, B, D, G, gates.shape[0])
    chunks = batch_chunks(B, H, GATES)

    def project(k, base):  # gates[rows of piece k] = x W_ih^T + b, gates[0] holding step base
        t0, t1 = pieces[k], pieces[k + 1]
        rows = (t1 - t0) * B
        gate_rows = gates[t0 - base:t1 - base].reshape(rows, G)
        np.matmul(x[t0:t1].reshape(rows, D), w_ih.T, out=gate_rows)
        gate_rows += bias

    def recur(t0, t1):  # the recurrence over steps t0:t1, one batch chunk per piece of work
        h_prev = h0 if t0 == 0 else y[t0 - 1]
        c_prev = c0 if t0 == 0 else c_n  # c_n holds the running cell state between spans
        cells = c_all[t0:t1] if keep_cells else c_all
        ms = m_all[t0:t1] if keep_m else m_all
        run_pieces(lambda k: _forward_loop(w_hh, w_hr, h_prev, c_prev, y[t0:t1], h_n, c_n,
                                           gates[:t1 - t0], cells, ms, chunks[k], chunks[k + 1]),
                   len(chunks) - 1, n_threads)

    with blas_threads.limit(1):
        for s in range(len(spans) - 1):  # one span of all steps, or one per block (inference)
            t0, t1 = pieces[spans[s]], pieces[spans[s + 1]]
            run_pieces(lambda k: project(spans[s] + k, t0), spans[s + 1] - spans[s],
                       n_threads if shared else 1)
            recur(t0, t1)


def lstm_proj_backward(x, w_ih, w_hh, w_hr, h0, c0, y, gates, c_all, m_all, dy, dh_n, dc_n,
                       dc_seq, dz, dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db, n_threads):
    """Numba BPTT; arguments as :func:`fastrnn._python.lstm_proj.lstm_proj_backward`."""
    T, B, D = x.shape
    P, H = w_hr.shape
    G = GATES * H
    chunks = batch_chunks(B, H, GATES)
    blocks = time_blocks(T, B, (2 * D + P) * G + P * H)
    n_blocks = len(blocks) - 1
    dh_all = np.empty((T, B, P), dtype=x.dtype)
    # per-block partial sums, reduced in block order so n_threads cannot change the result
    dw_ih_part = np.empty((n_blocks, G, D), dtype=x.dtype)
    dw_hh_part = np.empty((n_blocks, G, P), dtype=x.dtype)
    dw_hr_part = np.empty((n_blocks, P, H), dtype=x.dtype)

    def recur(k):  # 1. the recurrence backwards, one batch chunk for all steps
        _backward_loop(w_hh, w_hr, c0, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dh_all, dh0, dc0,
                       chunks[k], chunks[k + 1])

    def gemms(k):  # 2. GEMMs over the rows of the steps of block k (h_{t-1} has P columns)
        t0, t1 = blocks[k], blocks[k + 1]
        block_gradients(x, w_ih, h0, y, dz, dx, dw_ih_part[k], dw_hh_part[k], t0, t1)
        rows = (t1 - t0) * B
        np.matmul(dh_all[t0:t1].reshape(rows, P).T, m_all[t0:t1].reshape(rows, H), out=dw_hr_part[k])

    with blas_threads.limit(1):
        run_pieces(recur, len(chunks) - 1, n_threads)
        run_pieces(gemms, n_blocks, n_threads)
    np.sum(dw_ih_part, axis=0, out=dw_ih)
    np.sum(dw_hh_part, axis=0, out=dw_hh)
    np.sum(dw_hr_part, axis=0, out=dw_hr)
    np.sum(dz.reshape(T * B, G), axis=0, out=db)
