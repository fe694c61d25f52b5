"""Elman (SimpleRNN) cell, Numba backend.

The steps, names and workspace are those of :mod:`fastrnn._python.rnn`, whose
docstring has the equations and the kernel contract. What differs is how the
work is done: the GEMMs over all steps run through NumPy's BLAS in fixed time
blocks, and the time loop is a ``nogil`` kernel run on fixed batch chunks, with
the pointwise math fused into one pass per step.
"""

import numpy as np

from fastrnn._numba._gradients import block_gradients
from fastrnn._numba._options import jit
from fastrnn._numba.activations import tanh
from fastrnn._partition import batch_chunks, time_blocks
from fastrnn._threads import blas_threads, run_pieces


@jit
def _forward_loop(w_hh, h0, relu, y, h_n, b0, b1):
    """Time loop for batch rows ``b0:b1``; ``y`` holds the input projection on entry."""
    T, _, H = y.shape
    zero = y.dtype.type(0)
    w_hh_t = w_hh.T
    h = h0[b0:b1].copy()
    for t in range(T):
        recurrent = np.dot(h, w_hh_t)
        z = y[t, b0:b1]
        if relu:
            for b in range(b1 - b0):
                for j in range(H):
                    v = z[b, j] + recurrent[b, j]
                    v = zero if v < zero else v  # keeps NaN, like the reference
                    z[b, j] = v
                    h[b, j] = v
        else:
            for b in range(b1 - b0):
                for j in range(H):
                    v = tanh(z[b, j] + recurrent[b, j])
                    z[b, j] = v
                    h[b, j] = v
    h_n[b0:b1] = h


@jit
def _backward_loop(w_hh, y, dy, dh_n, relu, dz, dh0, b0, b1):
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz`` and ``dh0``."""
    T, _, H = y.shape
    zero = y.dtype.type(0)
    dh = dh_n[b0:b1].copy()
    dz_t = np.empty_like(dh)
    for t in range(T - 1, -1, -1):
        h_t = y[t, b0:b1]
        dy_t = dy[t, b0:b1]
        dz_out = dz[t, b0:b1]
        if relu:
            for b in range(b1 - b0):
                for j in range(H):
                    g = dy_t[b, j] + dh[b, j]
                    d = g if h_t[b, j] > zero else zero
                    dz_t[b, j] = d
                    dz_out[b, j] = d
        else:
            for b in range(b1 - b0):
                for j in range(H):
                    g = dy_t[b, j] + dh[b, j]
                    d = g - g * (h_t[b, j] * h_t[b, j])
                    dz_t[b, j] = d
                    dz_out[b, j] = d
        dh = np.dot(dz_t, w_hh)
    dh0[b0:b1] = dh


def rnn_forward(x, w_ih, w_hh, bias, h0, relu, y, h_n, n_threads):
    """Numba Elman forward; arguments as :func:`fastrnn._python.rnn.rnn_forward`."""
    T, B, D = x.shape
    H = w_hh.shape[0]
    blocks = time_blocks(T, B, D * H)
    chunks = batch_chunks(B, H)

    def project(k):  # 1. input projection for every step: y = x W_ih^T + b
        t0, t1 = blocks[k], blocks[k + 1]
        rows = (t1 - t0) * B
        y_rows = y[t0:t1].reshape(rows, H)
        np.matmul(x[t0:t1].reshape(rows, D), w_ih.T, out=y_rows)
        y_rows += bias

    def recur(k):  # 2. the recurrence, one batch chunk for all steps
        _forward_loop(w_hh, h0, relu, y, h_n, chunks[k], chunks[k + 1])

    with blas_threads.limit(1):
        run_pieces(project, len(blocks) - 1, n_threads)
        run_pieces(recur, len(chunks) - 1, n_threads)


def rnn_backward(x, w_ih, w_hh, h0, y, dy, dh_n, relu, dz, dx, dh0, dw_ih, dw_hh, db, n_threads):
    """Numba Elman BPTT; arguments as :func:`fastrnn._python.rnn.rnn_backward`."""
    T, B, D = x.shape
    H = w_hh.shape[0]
    chunks = batch_chunks(B, H)
    blocks = time_blocks(T, B, (2 * D + H) * H)
    n_blocks = len(blocks) - 1
    # per-block partial sums, reduced in block order so n_threads cannot change the result
    dw_ih_part = np.empty((n_blocks, H, D), dtype=x.dtype)
    dw_hh_part = np.empty((n_blocks, H, H), dtype=x.dtype)

    def recur(k):  # 1. the recurrence backwards, one batch chunk for all steps
        _backward_loop(w_hh, y, dy, dh_n, relu, dz, dh0, chunks[k], chunks[k + 1])

    def gemms(k):  # 2. GEMMs over the rows of the steps of block k
        block_gradients(x, w_ih, h0, y, dz, dx, dw_ih_part[k], dw_hh_part[k], blocks[k], blocks[k + 1])

    with blas_threads.limit(1):
        run_pieces(recur, len(chunks) - 1, n_threads)
        run_pieces(gemms, n_blocks, n_threads)
    np.sum(dw_ih_part, axis=0, out=dw_ih)
    np.sum(dw_hh_part, axis=0, out=dw_hh)
    np.sum(dz.reshape(T * B, H), axis=0, out=db)
