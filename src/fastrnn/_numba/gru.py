"""GRU cell, Numba backend.

The steps, names and workspace are those of :mod:`fastrnn._python.gru`, whose
docstring has the equations of both variants and the kernel contract. What
differs is how the work is done: the GEMMs over all steps run through NumPy's
BLAS in fixed time blocks (the forward projection in the pieces and blocks of
:func:`fastrnn._partition.projection_blocks`), and the time loop is a ``nogil`` kernel run on fixed
batch chunks, with the pointwise gate math fused into one pass per step (two
passes for reset_after=False, whose second recurrent product needs ``r`` first).
"""

import numpy as np

from fastrnn._numba._options import jit
from fastrnn._numba.activations import sigmoid, tanh
from fastrnn._partition import batch_chunks, projection_spans, time_blocks
from fastrnn._threads import blas_threads, run_pieces


@jit
def _forward_loop(w_hh, w_hr_z, w_hn, b_hn, h0, reset_after, y, h_n, gates, b0, b1):
    """Time loop for batch rows ``b0:b1``; ``gates[..., :3H]`` holds the input projection on entry."""
    T, _, H = y.shape
    one = y.dtype.type(1)
    nb = b1 - b0
    w_hh_t = w_hh.T
    w_hr_z_t = w_hr_z.T
    w_hn_t = w_hn.T
    h = h0[b0:b1].copy()
    rh = np.empty_like(h)
    for t in range(T):
        g = gates[t, b0:b1]
        y_t = y[t, b0:b1]
        if reset_after:
            gh = np.dot(h, w_hh_t)
            for b in range(nb):
                for j in range(H):
                    r = sigmoid(g[b, j] + gh[b, j])
                    z = sigmoid(g[b, H + j] + gh[b, H + j])
                    hn = gh[b, 2 * H + j] + b_hn[j]
                    n = tanh(g[b, 2 * H + j] + r * hn)
                    v = (one - z) * n + z * h[b, j]
                    g[b, j] = r
                    g[b, H + j] = z
                    g[b, 2 * H + j] = n
                    g[b, 3 * H + j] = hn
                    y_t[b, j] = v
                    h[b, j] = v
        else:
            gh = np.dot(h, w_hr_z_t)
            for b in range(nb):
                for j in range(H):
                    r = sigmoid(g[b, j] + gh[b, j])
                    z = sigmoid(g[b, H + j] + gh[b, H + j])
                    g[b, j] = r
                    g[b, H + j] = z
                    rh[b, j] = r * h[b, j]
            ghn = np.dot(rh, w_hn_t)
            for b in range(nb):
                for j in range(H):
                    z = g[b, H + j]
                    hn = ghn[b, j] + b_hn[j]
                    n = tanh(g[b, 2 * H + j] + hn)
                    v = (one - z) * n + z * h[b, j]
                    g[b, 2 * H + j] = n
                    g[b, 3 * H + j] = hn
                    y_t[b, j] = v
                    h[b, j] = v
    h_n[b0:b1] = h


@jit
def _backward_loop(w_hh, w_hr_z, w_hn, h0, reset_after, y, gates, dy, dh_n, dz_x, dz_h, dh0, b0, b1):
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz_x``, ``dz_h`` and ``dh0``."""
    T, _, H = y.shape
    one = y.dtype.type(1)
    nb = b1 - b0
    dh = dh_n[b0:b1].copy()
    direct = np.empty_like(dh)        # g * z, the path of h_{t-1} that skips every product
    dn_t = np.empty_like(dh)          # reset_after=False: dn, the input of d(rh) = dn W_hn
    dzh_t = np.empty((nb, 3 * H), dtype=y.dtype)
    dzrz_t = np.empty((nb, 2 * H), dtype=y.dtype)
    for t in range(T - 1, -1, -1):
        h_prev = y[t - 1] if t > 0 else h0
        g = gates[t]
        if reset_after:
            for b in range(nb):
                row = b0 + b
                for j in range(H):
                    r = g[row, j]
                    z = g[row, H + j]
                    n = g[row, 2 * H + j]
                    hn = g[row, 3 * H + j]
                    grad = dy[t, row, j] + dh[b, j]
                    dn = grad * (one - z) * (one - n * n)
                    dzg = grad * (h_prev[row, j] - n) * z * (one - z)
                    dr = dn * hn * r * (one - r)
                    dz_x[t, row, j] = dr
                    dz_x[t, row, H + j] = dzg
                    dz_x[t, row, 2 * H + j] = dn
                    dzh_t[b, j] = dr
                    dzh_t[b, H + j] = dzg
                    dzh_t[b, 2 * H + j] = dn * r
                    dz_h[t, row, j] = dr
                    dz_h[t, row, H + j] = dzg
                    dz_h[t, row, 2 * H + j] = dn * r
                    direct[b, j] = grad * z
            dh = np.dot(dzh_t, w_hh)
            for b in range(nb):
                for j in range(H):
                    dh[b, j] += direct[b, j]
        else:
            for b in range(nb):
                row = b0 + b
                for j in range(H):
                    z = g[row, H + j]
                    n = g[row, 2 * H + j]
                    grad = dy[t, row, j] + dh[b, j]
                    dn = grad * (one - z) * (one - n * n)
                    dzg = grad * (h_prev[row, j] - n) * z * (one - z)
                    dn_t[b, j] = dn
                    dz_x[t, row, H + j] = dzg
                    dz_x[t, row, 2 * H + j] = dn
                    dz_h[t, row, H + j] = dzg
                    dz_h[t, row, 2 * H + j] = dn
                    dzrz_t[b, H + j] = dzg
                    direct[b, j] = grad * z
            drh = np.dot(dn_t, w_hn)
            for b in range(nb):
                row = b0 + b
                for j in range(H):
                    r = g[row, j]
                    dr = drh[b, j] * h_prev[row, j] * r * (one - r)
                    dz_x[t, row, j] = dr
                    dz_h[t, row, j] = dr
                    dzrz_t[b, j] = dr
                    direct[b, j] += drh[b, j] * r
            dh = np.dot(dzrz_t, w_hr_z)
            for b in range(nb):
                for j in range(H):
                    dh[b, j] += direct[b, j]
    dh0[b0:b1] = dh


def _split(w_hh):
    """The ``r|z`` rows and the ``n`` rows of ``w_hh``, each C-contiguous."""
    H = w_hh.shape[1]
    return w_hh[: 2 * H], w_hh[2 * H :]


def gru_forward(x, w_ih, w_hh, bias_x, b_hn, h0, reset_after, y, h_n, gates, n_threads):
    """Numba GRU forward; arguments as :func:`fastrnn._python.gru.gru_forward`."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    w_hr_z, w_hn = _split(w_hh)
    reset_after = bool(reset_after)
    pieces, spans, shared = projection_spans(T, B, D, 4 * H, gates.shape[0])
    chunks = batch_chunks(B, H, 3)

    def project(k, base):  # gates[rows of piece k, :3H] = x W_ih^T + bias_x, gates[0] holding step base
        t0, t1 = pieces[k], pieces[k + 1]
        rows = (t1 - t0) * B
        projection = gates[t0 - base:t1 - base].reshape(rows, 4 * H)[:, : 3 * H]
        np.matmul(x[t0:t1].reshape(rows, D), w_ih.T, out=projection)
        projection += bias_x

    def recur(t0, t1):  # the recurrence over steps t0:t1, one batch chunk per piece of work
        h_prev = h0 if t0 == 0 else y[t0 - 1]
        run_pieces(lambda k: _forward_loop(w_hh, w_hr_z, w_hn, b_hn, h_prev, reset_after, y[t0:t1],
                                           h_n, gates[:t1 - t0], chunks[k], chunks[k + 1]),
                   len(chunks) - 1, n_threads)

    with blas_threads.limit(1):
        for s in range(len(spans) - 1):  # one span of all steps, or one per block (inference)
            t0, t1 = pieces[spans[s]], pieces[spans[s + 1]]
            run_pieces(lambda k: project(spans[s] + k, t0), spans[s + 1] - spans[s],
                       n_threads if shared else 1)
            recur(t0, t1)


def gru_backward(x, w_ih, w_hh, h0, reset_after, y, gates, dy, dh_n, dz_x, dz_h, dx, dh0, dw_ih, dw_hh,
                 db_ih, db_hh, n_threads):
    """Numba GRU BPTT; arguments as :func:`fastrnn._python.gru.gru_backward`."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    w_hr_z, w_hn = _split(w_hh)
    reset_after = bool(reset_after)
    chunks = batch_chunks(B, H, 3)
    blocks = time_blocks(T, B, (2 * D + H) * 3 * H)
    n_blocks = len(blocks) - 1
    # per-block partial sums, reduced in block order so n_threads cannot change the result
    dw_ih_part = np.empty((n_blocks, 3 * H, D), dtype=x.dtype)
    dw_hh_part = np.empty((n_blocks, 3 * H, H), dtype=x.dtype)

    def recur(k):  # 1. the recurrence backwards, one batch chunk for all steps
        _backward_loop(w_hh, w_hr_z, w_hn, h0, reset_after, y, gates, dy, dh_n, dz_x, dz_h, dh0,
                       chunks[k], chunks[k + 1])

    def gemms(k):  # 2. GEMMs over the rows of the steps of block k
        t0, t1 = blocks[k], blocks[k + 1]
        rows = (t1 - t0) * B
        dz_x_rows = dz_x[t0:t1].reshape(rows, 3 * H)
        dz_h_rows = dz_h[t0:t1].reshape(rows, 3 * H)
        np.matmul(dz_x_rows.T, x[t0:t1].reshape(rows, D), out=dw_ih_part[k])
        np.matmul(dz_x_rows, w_ih, out=dx[t0:t1].reshape(rows, D))
        # h_{t-1} for the block's steps: h0 for t = 0, else y[t - 1]
        if t0 == 0:
            h_prev = np.concatenate((h0[None], y[0 : t1 - 1])).reshape(rows, H)
        else:
            h_prev = y[t0 - 1 : t1 - 1].reshape(rows, H)
        if reset_after:
            np.matmul(dz_h_rows.T, h_prev, out=dw_hh_part[k])
        else:
            np.matmul(dz_h_rows[:, : 2 * H].T, h_prev, out=dw_hh_part[k, : 2 * H])
            rh = gates[t0:t1, :, :H].reshape(rows, H) * h_prev
            np.matmul(dz_h_rows[:, 2 * H :].T, rh, out=dw_hh_part[k, 2 * H :])

    with blas_threads.limit(1):
        run_pieces(recur, len(chunks) - 1, n_threads)
        run_pieces(gemms, n_blocks, n_threads)
    np.sum(dw_ih_part, axis=0, out=dw_ih)
    np.sum(dw_hh_part, axis=0, out=dw_hh)
    np.sum(dz_x.reshape(T * B, 3 * H), axis=0, out=db_ih)
    np.sum(dz_h.reshape(T * B, 3 * H), axis=0, out=db_hh)
