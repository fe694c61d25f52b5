"""LSTM cell, Numba backend.

The steps, names and workspace are those of :mod:`fastrnn._python.lstm`, whose
docstring has the equations and the kernel contract. What differs is how the
work is done: the GEMMs over all steps run through NumPy's BLAS in fixed time
blocks (the forward projection in the pieces and blocks of
:func:`fastrnn._partition.projection_blocks`), and the time loop is a ``nogil``
kernel run on fixed batch chunks, with the gate math of a step fused into one
pass (no temporary per gate).
"""

import numpy as np

from fastrnn._numba._gradients import block_gradients
from fastrnn._numba._options import jit
from fastrnn._numba.activations import sigmoid, tanh
from fastrnn._partition import batch_chunks, projection_spans, time_blocks
from fastrnn._threads import blas_threads, run_pieces

GATES = 4


@jit
def _forward_loop(w_hh, h0, c0, y, h_n, c_n, gates, c_all, b0, b1):
    """Time loop for batch rows ``b0:b1``; ``gates`` holds the input projection on entry."""
    T, _, H = y.shape
    keep_cells = c_all.shape[0] == T
    w_hh_t = w_hh.T
    h = h0[b0:b1].copy()
    c = c0[b0:b1].copy()
    for t in range(T):
        recurrent = np.dot(h, w_hh_t)
        z = gates[t, b0:b1]
        y_t = y[t, b0:b1]
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
                h_j = o * tanh(c_j)
                c[b, j] = c_j
                h[b, j] = h_j
                y_t[b, j] = h_j
        if keep_cells:
            c_all[t, b0:b1] = c
    h_n[b0:b1] = h
    c_n[b0:b1] = c


@jit
def _backward_loop(w_hh, c0, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dh0, dc0, b0, b1):
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz``, ``dh0`` and ``dc0``.

    ``dc_seq`` of shape (0, B, H) means no cell-state gradient per step.
    """
    T, _, H = c_all.shape
    one = c_all.dtype.type(1)
    # decided once; the branch in the unit loop is loop-invariant (LLVM unswitches it), and
    # dc_seq is never indexed when it is empty
    has_dc_seq = dc_seq.shape[0] == T
    dh = dh_n[b0:b1].copy()
    dc = dc_n[b0:b1].copy()
    dz_t = np.empty((b1 - b0, GATES * H), dtype=c_all.dtype)
    for t in range(T - 1, -1, -1):
        a = gates[t, b0:b1]
        c_t = c_all[t, b0:b1]
        c_prev = c0[b0:b1] if t == 0 else c_all[t - 1, b0:b1]
        dy_t = dy[t, b0:b1]
        dz_out = dz[t, b0:b1]
        for b in range(b1 - b0):
            for j in range(H):
                i = a[b, j]
                f = a[b, H + j]
                g = a[b, 2 * H + j]
                o = a[b, 3 * H + j]
                dh_j = dh[b, j] + dy_t[b, j]
                dc_j = dc[b, j]
                if has_dc_seq:
                    dc_j += dc_seq[t, b0 + b, j]
                tc = tanh(c_t[b, j])
                do = dh_j * tc
                dc_j = dc_j + dh_j * o * (one - tc * tc)
                di = dc_j * g
                dg = dc_j * i
                df = dc_j * c_prev[b, j]
                dz_t[b, j] = di * i * (one - i)
                dz_t[b, H + j] = df * f * (one - f)
                dz_t[b, 2 * H + j] = dg * (one - g * g)
                dz_t[b, 3 * H + j] = do * o * (one - o)
                dc[b, j] = dc_j * f
        dz_out[:, :] = dz_t
        dh = np.dot(dz_t, w_hh)
    dh0[b0:b1] = dh
    dc0[b0:b1] = dc


def lstm_forward(x, w_ih, w_hh, bias, h0, c0, y, h_n, c_n, gates, c_all, n_threads):
    """Numba LSTM forward; arguments as :func:`fastrnn._python.lstm.lstm_forward`."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    G = GATES * H
    keep_cells = c_all.shape[0] == T
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
        run_pieces(lambda k: _forward_loop(w_hh, h_prev, c_prev, y[t0:t1], h_n, c_n,
                                           gates[:t1 - t0], cells, chunks[k], chunks[k + 1]),
                   len(chunks) - 1, n_threads)

    with blas_threads.limit(1):
        for s in range(len(spans) - 1):  # one span of all steps, or one per block (inference)
            t0, t1 = pieces[spans[s]], pieces[spans[s + 1]]
            run_pieces(lambda k: project(spans[s] + k, t0), spans[s + 1] - spans[s],
                       n_threads if shared else 1)
            recur(t0, t1)


def lstm_backward(x, w_ih, w_hh, h0, c0, y, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dx, dh0,
                  dc0, dw_ih, dw_hh, db, n_threads):
    """Numba LSTM BPTT; arguments as :func:`fastrnn._python.lstm.lstm_backward`."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    G = GATES * H
    chunks = batch_chunks(B, H, GATES)
    blocks = time_blocks(T, B, (2 * D + H) * G)
    n_blocks = len(blocks) - 1
    # per-block partial sums, reduced in block order so n_threads cannot change the result
    dw_ih_part = np.empty((n_blocks, G, D), dtype=x.dtype)
    dw_hh_part = np.empty((n_blocks, G, H), dtype=x.dtype)

    def recur(k):  # 1. the recurrence backwards, one batch chunk for all steps
        _backward_loop(w_hh, c0, gates, c_all, dy, dh_n, dc_n, dc_seq, dz, dh0, dc0, chunks[k],
                       chunks[k + 1])

    def gemms(k):  # 2. GEMMs over the rows of the steps of block k
        block_gradients(x, w_ih, h0, y, dz, dx, dw_ih_part[k], dw_hh_part[k], blocks[k], blocks[k + 1])

    with blas_threads.limit(1):
        run_pieces(recur, len(chunks) - 1, n_threads)
        run_pieces(gemms, n_blocks, n_threads)
    np.sum(dw_ih_part, axis=0, out=dw_ih)
    np.sum(dw_hh_part, axis=0, out=dw_hh)
    np.sum(dz.reshape(T * B, G), axis=0, out=db)
