# LSTM cell, Cython backend; included by _cy.pyx (after rnn.pxi, whose helpers it shares:
# _rows_times_packed, _recurrent_product, _weight_gradient, _add_rows).
#
# The steps, names and workspace are those of fastrnn._python.lstm, whose
# docstring has the equations and the kernel contract, and the layout follows
# fastrnn._numba.lstm so the two read side by side. The forward projection runs in
# the fixed pieces of _partition.projection_blocks (in inference a block of them, then
# the block's steps), the time loop on fixed batch chunks, both under ``prange``;
# the BPTT's products over all steps (dx, dW_ih, dW_hh) share their results' rows
# and columns among the threads instead, with no partial sums per block. Every product runs on the packed micro-kernel (packed_gemm), the
# weights packed once per call. In float32 a step's recurrent product and its gate
# math run fused, tile by tile, in code of the ISA level chosen at run time (cell_steps.h:
# pg_lstm_step_float, pg_lstm_grad_step_float); float64 keeps libm's tanh and runs
# the product, then one pointwise pass per batch row. Pieces never depend on
# n_threads, so neither do the results.


from packed_gemm cimport (PG_KC, at_b_pair_work_size, gemm_at_b_pair,
                          gemm_packed_bias, pg_gates_packed_size, pg_lstm_grad_step_float,
                          pg_lstm_step_float, pg_nr_float, pg_pack_gates_float, pg_units)


cdef enum:
    LSTM_GATES = 4
    UNIT_BLOCK = 64            # units per pass of the pointwise loops (their stack buffers)


# ---- pointwise passes: one per batch row, over the H units in blocks. Each block is computed
# into local buffers and copied out: the outputs cannot alias the inputs there, so gcc
# vectorises the loop (in place over ``z``, with six output streams, it does not).

cdef inline void _lstm_cell(floating* z, const floating* c_prev, floating* c_t, floating* h_t,
                            Py_ssize_t H) noexcept nogil:
    """One row of a step: activates ``z = [z_i, z_f, z_g, z_o]`` in place, writes ``c_t``, ``h_t``.

    ``c_t`` may be ``c_prev`` (inference keeps only the running cell state).
    """
    cdef floating i[UNIT_BLOCK]
    cdef floating f[UNIT_BLOCK]
    cdef floating g[UNIT_BLOCK]
    cdef floating o[UNIT_BLOCK]
    cdef floating c[UNIT_BLOCK]
    cdef floating h[UNIT_BLOCK]
    cdef Py_ssize_t j, j0 = 0, w
    cdef const floating* z_i
    cdef const floating* z_f
    cdef const floating* z_g
    cdef const floating* z_o
    cdef const floating* c_p
    while j0 < H:
        w = min(<Py_ssize_t>UNIT_BLOCK, H - j0)
        z_i = z + j0
        z_f = z + H + j0
        z_g = z + 2 * H + j0
        z_o = z + 3 * H + j0
        c_p = c_prev + j0
        for j in range(w):
            i[j] = sigmoid(z_i[j])
            f[j] = sigmoid(z_f[j])
            g[j] = tanh(z_g[j])
            o[j] = sigmoid(z_o[j])
            c[j] = f[j] * c_p[j] + i[j] * g[j]
            h[j] = o[j] * tanh(c[j])
        memcpy(z + j0, i, w * sizeof(floating))
        memcpy(z + H + j0, f, w * sizeof(floating))
        memcpy(z + 2 * H + j0, g, w * sizeof(floating))
        memcpy(z + 3 * H + j0, o, w * sizeof(floating))
        memcpy(c_t + j0, c, w * sizeof(floating))
        memcpy(h_t + j0, h, w * sizeof(floating))
        j0 += w


cdef inline void _lstm_cell_grad(const floating* a, const floating* c_t, const floating* c_prev,
                                 const floating* dy_t, const floating* dc_ext, const floating* dh,
                                 floating* dc, floating* dz_t, Py_ssize_t H) noexcept nogil:
    """One row of a BPTT step: ``dz_t`` (4H) from the activated gates ``a``; ``dc`` becomes ``dc_{t-1}``.

    ``dc_ext`` is the row of ``dc_seq[t]`` added to ``dc``, or NULL when there is none.
    """
    cdef floating dz_i[UNIT_BLOCK]
    cdef floating dz_f[UNIT_BLOCK]
    cdef floating dz_g[UNIT_BLOCK]
    cdef floating dz_o[UNIT_BLOCK]
    cdef floating dc_next[UNIT_BLOCK]
    cdef Py_ssize_t j, j0 = 0, w
    cdef floating i, f, g, o, dh_j, tc, do, dc_j, di, dg, df, one = 1
    # decided once; the branch in the unit loop is loop-invariant (gcc -O3 unswitches it)
    cdef bint has_dc_ext = dc_ext != NULL
    cdef const floating* a_i
    cdef const floating* a_f
    cdef const floating* a_g
    cdef const floating* a_o
    cdef const floating* c_j0
    cdef const floating* c_p
    cdef const floating* dy_j0
    cdef const floating* dh_j0
    cdef const floating* dc_j0
    cdef const floating* dc_e = NULL
    while j0 < H:
        w = min(<Py_ssize_t>UNIT_BLOCK, H - j0)
        a_i = a + j0
        a_f = a + H + j0
        a_g = a + 2 * H + j0
        a_o = a + 3 * H + j0
        c_j0 = c_t + j0
        c_p = c_prev + j0
        dy_j0 = dy_t + j0
        dh_j0 = dh + j0
        dc_j0 = dc + j0
        if has_dc_ext:
            dc_e = dc_ext + j0
        for j in range(w):
            i = a_i[j]
            f = a_f[j]
            g = a_g[j]
            o = a_o[j]
            dh_j = dh_j0[j] + dy_j0[j]
            dc_j = dc_j0[j]
            if has_dc_ext:
                dc_j = dc_j + dc_e[j]
            tc = tanh(c_j0[j])
            do = dh_j * tc
            dc_j = dc_j + dh_j * o * (one - tc * tc)
            di = dc_j * g
            dg = dc_j * i
            df = dc_j * c_p[j]
            dz_i[j] = di * i * (one - i)
            dz_f[j] = df * f * (one - f)
            dz_g[j] = dg * (one - g * g)
            dz_o[j] = do * o * (one - o)
            dc_next[j] = dc_j * f
        memcpy(dz_t + j0, dz_i, w * sizeof(floating))
        memcpy(dz_t + H + j0, dz_f, w * sizeof(floating))
        memcpy(dz_t + 2 * H + j0, dz_g, w * sizeof(floating))
        memcpy(dz_t + 3 * H + j0, dz_o, w * sizeof(floating))
        memcpy(dc + j0, dc_next, w * sizeof(floating))
        j0 += w


# ---- the pieces of work: one time block or one batch chunk each

cdef void _lstm_project(const floating* x, const floating* w_ih_t_packed, const floating* bias,
                        floating* gate_rows, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                        Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Input projection of steps ``t0:t1`` (one piece): ``gate_rows = x W_ih^T + b``.

    ``gate_rows`` points at the workspace row of step ``t0``.
    """
    cdef Py_ssize_t G = LSTM_GATES * H, rows = (t1 - t0) * B, r0 = 0, slab
    cdef const floating* x_rows = x + t0 * B * D
    # slabs of rows that stay in cache while every panel of W_ih^T passes over them; the
    # bias is added in the product's epilogue (no pass filling gates with it first)
    while r0 < rows:
        slab = min(<Py_ssize_t>SLAB_ROWS, rows - r0)
        gemm_packed_bias(slab, G, D, x_rows + r0 * D, D, w_ih_t_packed, bias, gate_rows + r0 * G, G)
        r0 += slab


cdef void _lstm_step_fused(Py_ssize_t rows, Py_ssize_t H, const float* h,
                           const float* w_hh_t_packed, float* z, const float* c_prev,
                           float* c_t, float* h_t, int column_threads) noexcept nogil:
    """float32 step: ``z += h W_hh^T`` and the gate math, tile by tile (cell_steps.h).

    ``w_hh_t_packed`` is packed by ``pg_pack_gates_float``. With ``column_threads > 1`` the
    blocks of units are shared among threads; each element is computed the same way.
    """
    cdef Py_ssize_t piece, u0, u1, units = pg_units(), blocks = (H + units - 1) // units
    if column_threads <= 1:
        pg_lstm_step_float(rows, H, h, w_hh_t_packed, z, c_prev, c_t, h_t, 0, H)
        return
    for piece in prange(column_threads, num_threads=column_threads, schedule='static'):
        u0 = blocks * piece // column_threads * units
        u1 = min(blocks * (piece + 1) // column_threads * units, H)
        if u1 > u0:
            pg_lstm_step_float(rows, H, h, w_hh_t_packed, z, c_prev, c_t, h_t, u0, u1)


cdef void _lstm_forward_loop(const floating* w_hh_t_packed, const floating* h0,
                             const floating* c0, floating* y, floating* h_n, floating* c_n,
                             floating* gates, floating* c_all, bint keep_cells,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                             Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """Time loop for batch rows ``b0:b1``; ``gates`` holds the input projection on entry.

    Without ``keep_cells`` (inference) the running cell state lives in the chunk's rows of
    ``c_n``, which ``c0`` may be (a block after the first).
    """
    cdef Py_ssize_t t, r, rows = b1 - b0, n = (b1 - b0) * H, G = LSTM_GATES * H
    cdef const floating* h = h0 + b0 * H
    cdef const floating* c_prev = c0 + b0 * H
    cdef floating* c_t = c_n + b0 * H
    cdef floating* z
    cdef floating* h_t
    if not keep_cells:
        if c_t != c_prev:
            memcpy(c_t, c_prev, n * sizeof(floating))
        c_prev = c_t
    for t in range(T):
        # the chunk's rows of gates[t] and of h_{t-1} (h0 or y[t-1]) are contiguous blocks
        z = gates + (t * B + b0) * G
        h_t = y + (t * B + b0) * H
        if keep_cells:
            c_t = c_all + (t * B + b0) * H
        if floating is float:  # product and gate math fused; W_hh^T packed by gates
            _lstm_step_fused(rows, H, h, w_hh_t_packed, z, c_prev, c_t, h_t, column_threads)
        else:
            _recurrent_product(rows, G, H, h, w_hh_t_packed, z, column_threads)  # z += h_{t-1} W_hh^T
            for r in range(rows):
                _lstm_cell(z + r * G, c_prev + r * H, c_t + r * H, h_t + r * H, H)
        h = h_t
        c_prev = c_t
    memcpy(h_n + b0 * H, h, n * sizeof(floating))
    if keep_cells:
        memcpy(c_n + b0 * H, c_prev, n * sizeof(floating))


cdef void _lstm_grad_step_fused(Py_ssize_t rows, Py_ssize_t H, Py_ssize_t K,
                                const float* dz_next, const float* w_hh_packed, float* dh,
                                const float* a, const float* c_t, const float* c_prev,
                                const float* dy_t, const float* dc_ext, float* dc, float* dz_t,
                                int column_threads) noexcept nogil:
    """float32 BPTT step: ``dh = dz_next W_hh`` (``dz_next`` of K = 4H columns) and the gate
    gradients, tile by tile.

    See ``pg_lstm_grad_step_float`` (cell_steps.h) for the NULL cases and for the projected
    cell's use (K = P). With ``column_threads > 1`` the panels of units are shared among threads.
    """
    cdef Py_ssize_t piece, u0, u1, width = pg_nr_float()
    cdef Py_ssize_t panels = (H + width - 1) // width
    if column_threads <= 1:
        pg_lstm_grad_step_float(rows, H, K, dz_next, w_hh_packed, dh, a, c_t, c_prev, dy_t,
                                dc_ext, dc, dz_t, 0, H)
        return
    for piece in prange(column_threads, num_threads=column_threads, schedule='static'):
        u0 = panels * piece // column_threads * width
        u1 = min(panels * (piece + 1) // column_threads * width, H)
        if u1 > u0:
            pg_lstm_grad_step_float(rows, H, K, dz_next, w_hh_packed, dh, a, c_t, c_prev, dy_t,
                                    dc_ext, dc, dz_t, u0, u1)


cdef void _lstm_backward_loop(const floating* w_hh_packed, const floating* c0,
                              const floating* gates, const floating* c_all, const floating* dy,
                              const floating* dh_n, const floating* dc_n, const floating* dc_seq,
                              floating* dz, floating* dh0, floating* dc0,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                              Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz``, ``dh0`` and ``dc0``.

    ``dc_seq`` is NULL when there is no cell-state gradient per step.
    """
    cdef Py_ssize_t t, r, offset, rows = b1 - b0, n = (b1 - b0) * H, G = LSTM_GATES * H
    # dh and dc live in the chunk's rows of dh0 and dc0: no scratch, and they end there
    cdef floating* dh = dh0 + b0 * H
    cdef floating* dc = dc0 + b0 * H
    cdef const floating* a
    cdef const floating* c_prev
    cdef floating* dz_t
    cdef const floating* dc_ext = NULL
    memcpy(dh, dh_n + b0 * H, n * sizeof(floating))
    memcpy(dc, dc_n + b0 * H, n * sizeof(floating))
    if floating is float:
        # dh_t = dz_{t+1} W_hh and step t's gate gradients fused, tile by tile; the last step
        # starts from dh_n (dz_next NULL), and dh_0 = dz_0 W_hh is a product alone (a NULL)
        for t in range(T - 1, -1, -1):
            offset = (t * B + b0) * H
            c_prev = c0 + b0 * H if t == 0 else c_all + offset - B * H
            if dc_seq != NULL:
                dc_ext = dc_seq + offset
            _lstm_grad_step_fused(rows, H, G, NULL if t == T - 1 else dz + ((t + 1) * B + b0) * G,
                                  w_hh_packed, dh, gates + (t * B + b0) * G, c_all + offset,
                                  c_prev, dy + offset, dc_ext, dc, dz + (t * B + b0) * G,
                                  column_threads)
        if T > 0:
            _lstm_grad_step_fused(rows, H, G, dz + b0 * G, w_hh_packed, dh, NULL, NULL, NULL, NULL,
                                  NULL, NULL, NULL, column_threads)
    else:
        for t in range(T - 1, -1, -1):
            offset = (t * B + b0) * H
            a = gates + (t * B + b0) * G
            dz_t = dz + (t * B + b0) * G
            c_prev = c0 + b0 * H if t == 0 else c_all + offset - B * H
            for r in range(rows):
                if dc_seq != NULL:
                    dc_ext = dc_seq + offset + r * H
                _lstm_cell_grad(a + r * G, c_all + offset + r * H, c_prev + r * H,
                                dy + offset + r * H, dc_ext, dh + r * H, dc + r * H, dz_t + r * G, H)
            memset(dh, 0, n * sizeof(floating))
            _recurrent_product(rows, H, G, dz_t, w_hh_packed, dh, column_threads)  # dh_{t-1} = dz_t W_hh


cdef void _lstm_backward_products(const floating* x, const floating* h_first,
                                  Py_ssize_t first_rows, const floating* y, const floating* dz, const floating* w_ih_packed,
                                  floating* dx, floating* dw_ih, floating* dw_hh,
                                  floating* work, Py_ssize_t rows, Py_ssize_t D, Py_ssize_t H,
                                  Py_ssize_t K, Py_ssize_t B, Py_ssize_t g0, Py_ssize_t g1,
                                  Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    """One thread's share of the products over all ``rows`` rows of every step: rows
    ``g0:g1`` (multiples of 4) of ``dW_ih = dz^T x`` and ``dW_hh = dz^T h_prev``, and the
    panels ``p0:p1`` of the columns of ``dx = dz W_ih`` (``dx`` zeroed by the caller).
    ``h_prev`` (row r: h0[r] for r < B, else y[r - B]) is read from ``h_first`` for the
    first ``first_rows`` rows (a multiple of PG_KC, or all rows), in place from y after.
    ``h_prev``, ``y`` and ``dW_hh`` have ``K`` columns: ``H``, or ``P`` with a projection.

    The rows of dz go by slabs of PG_KC, the weight gradients' slabs: each slab serves
    both products while it is in cache. Each element is summed in the same order whatever
    ``g0:g1`` and ``p0:p1``: threads share the results, so there are no partial sums per
    block of steps (at large layers, hundreds of MiB to zero, write and add up).
    """
    cdef Py_ssize_t G = LSTM_GATES * H, r0 = 0, n, r, slab, nr = panel_width(<floating>0)
    cdef Py_ssize_t cols = min(p1 * nr, D) - p0 * nr
    cdef const floating* h_prev
    memset(dw_ih + g0 * D, 0, (g1 - g0) * D * sizeof(floating))
    memset(dw_hh + g0 * K, 0, (g1 - g0) * K * sizeof(floating))
    while r0 < rows:
        n = min(<Py_ssize_t>PG_KC, rows - r0)
        h_prev = h_first + r0 * K if r0 < first_rows else y + (r0 - B) * K
        if g1 > g0:
            gemm_at_b_pair(g1 - g0, n, dz + r0 * G + g0, G, D, x + r0 * D, D, dw_ih + g0 * D, D,
                           K, h_prev, K, dw_hh + g0 * K, K, work)
        if cols > 0:
            r = r0
            while r < r0 + n:
                slab = min(<Py_ssize_t>SLAB_ROWS, r0 + n - r)
                gemm_packed(slab, cols, G, dz + r * G, G, w_ih_packed + p0 * nr * G,
                            dx + r * D + p0 * nr, D)
                r += slab
        r0 += n


# ---- the kernels

def lstm_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh, const floating[::1] bias,
                 const floating[:, ::1] h0, const floating[:, ::1] c0,
                 floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, ::1] c_n,
                 floating[:, :, ::1] gates, floating[:, :, ::1] c_all, int n_threads):
    """Cython LSTM forward; arguments as :func:`fastrnn._python.lstm.lstm_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (4*H, D)
        IN. Input-to-hidden weights, blocks ``i, f, g, o``.
    w_hh : ndarray of shape (4*H, H)
        IN. Hidden-to-hidden weights, blocks ``i, f, g, o``.
    bias : ndarray of shape (4*H,)
        IN. ``b_ih + b_hh``.
    h0, c0 : ndarray of shape (B, H)
        IN. Initial hidden and cell states.
    y : ndarray of shape (T, B, H)
        OUT. Hidden state of every step.
    h_n, c_n : ndarray of shape (B, H)
        OUT. Hidden and cell states after the last step.
    gates : ndarray of shape (T, B, 4*H) or (S, B, 4*H)
        OUT. Workspace: the activated gates ``[i, f, g, o]`` of every step; with
        ``S < T`` steps (inference, ``S`` one block's steps) those of the last block.
    c_all : ndarray of shape (T, B, H) or (0, B, H)
        OUT. Workspace: the cell state of every step; with shape (0, B, H)
        (inference) nothing is stored.
    n_threads : int
        IN. OpenMP threads; results do not depend on it.

    The weights are packed into temporaries (:func:`_lstm_packed`) for this call only;
    :func:`lstm_forward_packed` runs on weights packed once.
    """
    cdef object w_ih_t, w_hh_t
    w_ih_t, w_hh_t = _lstm_packed(w_ih, w_hh)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    _lstm_forward_run(x, &w_ih_t_v[0], &w_hh_t_v[0], &bias[0], h0, c0, y, h_n, c_n, gates, c_all,
                      w_hh.shape[1], n_threads)


def lstm_forward_packed(const floating[:, :, ::1] x, StepWeights weights,
                        const floating[:, ::1] h0, const floating[:, ::1] c0,
                        floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, ::1] c_n,
                        floating[:, :, ::1] gates, floating[:, :, ::1] c_all, int n_threads):
    """:func:`lstm_forward` on weights packed once (``weights`` from ``pack_layer("lstm", ...)``,
    bias included); the other arguments as there. Raises StaleCacheError when the weights were
    packed on another ISA level, ValueError when they do not fit ``x``."""
    weights.check_forward(1, floating is float, x.shape[2])
    _lstm_forward_run(x, <const floating*>weights.w_ih_t, <const floating*>weights.w_hh_t,
                      <const floating*>weights.bias, h0, c0, y, h_n, c_n, gates, c_all,
                      weights.H, n_threads)


cdef object _lstm_packed(const floating[:, ::1] w_ih, const floating[:, ::1] w_hh):
    """``(W_ih^T, W_hh^T)`` packed in the forward's layouts, new 1-D arrays: element (i, j)
    of ``W^T`` is ``W[j, i]``; float32 packs W_hh^T by blocks of units for the fused step
    (gates side by side). ``w_ih`` is (4*H, D), ``w_hh`` (4*H, H)."""
    cdef Py_ssize_t D = w_ih.shape[1], H = w_hh.shape[1], G = LSTM_GATES * H
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t w_hh_size = (pg_gates_packed_size(H, H, LSTM_GATES) if floating is float
                                 else packed_size(<floating>0, H, G))
    w_ih_t = np.empty(packed_size(<floating>0, D, G), dtype=dtype)
    w_hh_t = np.empty(w_hh_size, dtype=dtype)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    if G == 0:
        return w_ih_t, w_hh_t
    with nogil:
        if floating is float:
            pg_pack_gates_float(&w_hh[0, 0], H, H, LSTM_GATES, 1, H, &w_hh_t_v[0])
        else:
            pack(&w_hh[0, 0], H, G, 1, H, &w_hh_t_v[0])
        if D > 0:
            pack(&w_ih[0, 0], D, G, 1, D, &w_ih_t_v[0])
    return w_ih_t, w_hh_t


cdef int _lstm_forward_run(const floating[:, :, ::1] x, const floating* w_ih_t_packed,
                           const floating* w_hh_t_packed, const floating* bias_p,
                           const floating[:, ::1] h0, const floating[:, ::1] c0,
                           floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, ::1] c_n,
                           floating[:, :, ::1] gates, floating[:, :, ::1] c_all, Py_ssize_t H,
                           int n_threads) except -1:
    """The forward proper, on packed weights (:func:`_lstm_packed`'s layouts)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t G = LSTM_GATES * H
    cdef bint keep_cells = c_all.shape[0] == T
    cdef Py_ssize_t[::1] pieces, spans
    cdef bint shared
    pieces, spans, shared = projection_spans(T, B, D, G, gates.shape[0])
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, LSTM_GATES)
    cdef Py_ssize_t k, s, p0, p1, t0, t1, n_chunks = chunks.shape[0] - 1
    cdef int project_threads
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, LSTM_GATES, n_threads)
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef const floating* c0_p = &c0[0, 0]
    cdef floating* y_p = &y[0, 0, 0]
    cdef floating* h_n_p = &h_n[0, 0]
    cdef floating* c_n_p = &c_n[0, 0]
    cdef floating* gates_p = &gates[0, 0, 0]
    cdef floating* c_all_p = NULL
    cdef const floating* h_prev
    cdef const floating* c_prev
    cdef floating* cells
    if keep_cells and T > 0:
        c_all_p = &c_all[0, 0, 0]
    with nogil:
        for s in range(spans.shape[0] - 1):  # one span of all steps, or one per block (inference)
            p0 = spans[s]
            p1 = spans[s + 1]
            t0 = pieces[p0]
            t1 = pieces[p1]
            project_threads = _threads_for(n_threads, p1 - p0) if shared else 1
            # 1. input projection of the span's steps, one piece each: gates = x W_ih^T + b,
            # gates[0] holding step t0
            for k in prange(p0, p1, num_threads=project_threads, schedule='static'):
                _lstm_project(x_p, w_ih_t_packed, bias_p, gates_p + (pieces[k] - t0) * B * G,
                              B, D, H, pieces[k], pieces[k + 1])
            # 2. the recurrence over them, one batch chunk each; between spans the state is
            # y[t0 - 1] and the cell state c_all[t0 - 1], or c_n where it runs (inference)
            h_prev = h0_p if t0 == 0 else y_p + (t0 - 1) * B * H
            c_prev = c0_p if t0 == 0 else (c_all_p + (t0 - 1) * B * H if keep_cells else c_n_p)
            cells = c_all_p + t0 * B * H if keep_cells else NULL
            if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
                _lstm_forward_loop(w_hh_t_packed, h_prev, c_prev, y_p + t0 * B * H, h_n_p,
                                   c_n_p, gates_p, cells, keep_cells, t1 - t0, B, H, 0, B,
                                   column_threads)
            else:
                for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                    _lstm_forward_loop(w_hh_t_packed, h_prev, c_prev, y_p + t0 * B * H, h_n_p,
                                       c_n_p, gates_p, cells, keep_cells, t1 - t0, B, H,
                                       chunks[k], chunks[k + 1], 1)
    return 0


def lstm_backward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[:, ::1] h0,
                  const floating[:, ::1] c0, const floating[:, :, ::1] y,
                  const floating[:, :, ::1] gates, const floating[:, :, ::1] c_all,
                  const floating[:, :, ::1] dy, const floating[:, ::1] dh_n,
                  const floating[:, ::1] dc_n, const floating[:, :, ::1] dc_seq,
                  floating[:, :, ::1] dz,
                  floating[:, :, ::1] dx, floating[:, ::1] dh0, floating[:, ::1] dc0,
                  floating[:, ::1] dw_ih, floating[:, ::1] dw_hh, floating[::1] db,
                  int n_threads):
    """Cython LSTM BPTT; arguments as :func:`fastrnn._python.lstm.lstm_backward`.

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
        IN. Gradient of the loss with respect to the cell state of every step,
        added to ``dc`` at step ``t``; with shape (0, B, H) there is none.
    dz : ndarray of shape (T, B, 4*H)
        OUT. Workspace: gradient with respect to the pre-activations.
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
        IN. OpenMP threads; results do not depend on it.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t G = LSTM_GATES * H
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, LSTM_GATES)
    cdef Py_ssize_t k, n_chunks = chunks.shape[0] - 1
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, LSTM_GATES, n_threads)
    cdef Py_ssize_t d_panels = (D + panel_width(<floating>0) - 1) // panel_width(<floating>0)
    # the weight gradients: threads share the 4H rows of the results, by fours
    cdef int grad_threads = _threads_for(n_threads, H)
    cdef Py_ssize_t g_piece = (H + grad_threads - 1) // grad_threads * LSTM_GATES
    cdef floating[::1] w_hh_packed = np.empty(packed_size(<floating>0, G, H), dtype=np.asarray(dz).dtype)
    cdef floating[::1] w_ih_packed = np.empty(packed_size(<floating>0, G, D), dtype=np.asarray(dz).dtype)
    # h_{t-1} of the first slabs of rows, those holding h0: [h0; y[:first_rows - B]]
    cdef Py_ssize_t first_rows = min(T * B, (B + PG_KC - 1) // PG_KC * PG_KC)
    cdef floating[:, ::1] h_first = np.empty((max(first_rows, 1), H), dtype=np.asarray(dz).dtype)
    # work space of the weight-gradient products, one per thread
    cdef Py_ssize_t work_size = at_b_pair_work_size(<floating>0, g_piece, D, H)
    cdef floating[::1] work = np.empty(grad_threads * work_size, dtype=np.asarray(dz).dtype)
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* w_ih_p = &w_ih[0, 0]
    cdef const floating* w_hh_p = &w_hh[0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef const floating* c0_p = &c0[0, 0]
    cdef const floating* y_p = &y[0, 0, 0]
    cdef const floating* gates_p = &gates[0, 0, 0]
    cdef const floating* c_all_p = &c_all[0, 0, 0]
    cdef const floating* dy_p = &dy[0, 0, 0]
    cdef const floating* dh_n_p = &dh_n[0, 0]
    cdef const floating* dc_n_p = &dc_n[0, 0]
    # NULL: no cell-state gradient per step (the kernels branch on it, nothing is allocated)
    cdef const floating* dc_seq_p = NULL
    if dc_seq.shape[0] == T and T > 0:
        dc_seq_p = &dc_seq[0, 0, 0]
    cdef floating* dz_p = &dz[0, 0, 0]
    cdef floating* dx_p = &dx[0, 0, 0]
    cdef floating* dh0_p = &dh0[0, 0]
    cdef floating* dc0_p = &dc0[0, 0]
    with nogil:
        pack(w_hh_p, G, H, H, 1, &w_hh_packed[0])  # W_hh (4H, H) as it is, packed once
        pack(w_ih_p, G, D, D, 1, &w_ih_packed[0])  # W_ih (4H, D) as it is, for dx = dz W_ih
        # 1. the recurrence backwards, one batch chunk for all steps
        if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
            _lstm_backward_loop(&w_hh_packed[0], c0_p, gates_p, c_all_p, dy_p, dh_n_p, dc_n_p,
                                dc_seq_p, dz_p, dh0_p, dc0_p, T, B, H, 0, B, column_threads)
        else:
            for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                _lstm_backward_loop(&w_hh_packed[0], c0_p, gates_p, c_all_p, dy_p, dh_n_p,
                                    dc_n_p, dc_seq_p, dz_p, dh0_p, dc0_p, T, B, H,
                                    chunks[k], chunks[k + 1], 1)
        # 2. dx = dz W_ih, dW_ih and dW_hh over all steps at once, the results shared
        memset(dx_p, 0, T * B * D * sizeof(floating))
        if T > 0:
            memcpy(&h_first[0, 0], h0_p, B * H * sizeof(floating))
            memcpy(&h_first[0, 0] + B * H, y_p, (first_rows - B) * H * sizeof(floating))
            for k in prange(grad_threads, num_threads=grad_threads, schedule='static'):
                _lstm_backward_products(x_p, &h_first[0, 0], first_rows, y_p, dz_p,
                                        &w_ih_packed[0], dx_p, &dw_ih[0, 0], &dw_hh[0, 0],
                                        &work[k * work_size], T * B, D, H, H, B, min(k * g_piece, G),
                                        min((k + 1) * g_piece, G), d_panels * k // grad_threads,
                                        d_panels * (k + 1) // grad_threads)
        else:
            memset(&dw_ih[0, 0], 0, G * D * sizeof(floating))
            memset(&dw_hh[0, 0], 0, G * H * sizeof(floating))
        memset(&db[0], 0, G * sizeof(floating))
        _add_rows(dz_p, T * B, G, &db[0])
