# LSTM cell with a projection (PyTorch's proj_size), Cython backend; included by _cy.pyx
# (after rnn.pxi and lstm.pxi, whose helpers it shares: _recurrent_product, _add_rows,
# _lstm_project, _lstm_cell, _lstm_cell_grad, _lstm_backward_products).
#
# The steps, names and workspace are those of fastrnn._python.lstm_proj, whose
# docstring has the equations and the kernel contract, and the layout follows
# fastrnn._numba.lstm_proj so the two read side by side. The input projection runs
# in the fixed pieces of _partition.projection_blocks (in inference a block of them, then
# the block's steps), the time loop on fixed batch chunks, both under ``prange``;
# after the BPTT loop the products over all steps (dx, dW_ih, dW_hh, dW_hr) share
# their results' rows and columns among the threads. Every product runs on the packed
# micro-kernel (packed_gemm), the weights packed once per call. A forward step is two
# products (``h_{t-1} W_hh^T``, then the projection ``m_t W_hr^T``) around the pointwise
# gate math of lstm.pxi. A BPTT step is ``dh_t = dy_t + dz_{t+1} W_hh``, then ``dm = dh_t
# W_hr`` and the gate gradients: in float32 the latter two run fused, tile by tile, in
# lstm.pxi's step (cell_steps.h: pg_lstm_grad_step_float, reducing over P columns); float64
# runs the product, then one pointwise pass per batch row. Pieces never depend on
# n_threads, so neither do the results.


# ---- the pieces of work: one batch chunk each (the input projection is lstm.pxi's)

cdef void _lstm_proj_forward_loop(const floating* w_hh_t_packed, const floating* w_hr_t_packed,
                                  const floating* h0, const floating* c0, floating* y,
                                  floating* h_n, floating* c_n, floating* gates,
                                  floating* c_all, bint keep_cells, floating* m_all,
                                  bint keep_m, floating* m_scratch,
                                  Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P,
                                  Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """Time loop for batch rows ``b0:b1``; ``gates`` holds the input projection on entry.

    Without ``keep_cells`` (inference) the running cell state lives in the chunk's rows of
    ``c_n``, which ``c0`` may be (a block after the first); without ``keep_m``, ``m_t``
    lives in the chunk's rows of ``m_scratch`` (B, H).
    """
    cdef Py_ssize_t t, r, rows = b1 - b0, G = LSTM_GATES * H
    cdef const floating* h = h0 + b0 * P
    cdef const floating* c_prev = c0 + b0 * H
    cdef floating* c_t = c_n + b0 * H
    cdef floating* m_t = m_scratch + b0 * H
    cdef floating* z
    cdef floating* h_t
    if not keep_cells:
        if c_t != c_prev:
            memcpy(c_t, c_prev, rows * H * sizeof(floating))
        c_prev = c_t
    for t in range(T):
        # the chunk's rows of gates[t], y[t], c_all[t] and m_all[t] are contiguous blocks
        z = gates + (t * B + b0) * G
        h_t = y + (t * B + b0) * P
        if keep_cells:
            c_t = c_all + (t * B + b0) * H
        if keep_m:
            m_t = m_all + (t * B + b0) * H
        _recurrent_product(rows, G, P, h, w_hh_t_packed, z, column_threads)  # z += h_{t-1} W_hh^T
        for r in range(rows):  # activates z in place, writes c_t and m_t = o * tanh(c_t)
            _lstm_cell(z + r * G, c_prev + r * H, c_t + r * H, m_t + r * H, H)
        # the projection: the only product the recurrence adds to the plain LSTM
        memset(h_t, 0, rows * P * sizeof(floating))
        _recurrent_product(rows, P, H, m_t, w_hr_t_packed, h_t, column_threads)  # h_t = m_t W_hr^T
        h = h_t
        c_prev = c_t
    memcpy(h_n + b0 * P, h, rows * P * sizeof(floating))
    if keep_cells:
        memcpy(c_n + b0 * H, c_prev, rows * H * sizeof(floating))


cdef void _lstm_proj_backward_loop(const floating* w_hh_packed, const floating* w_hr_packed,
                                   const floating* c0, const floating* gates,
                                   const floating* c_all, const floating* dy,
                                   const floating* dh_n, const floating* dc_n,
                                   const floating* dc_seq, const floating* zeros,
                                   floating* dz, floating* dh_all, floating* dm,
                                   floating* dh0, floating* dc0,
                                   Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P,
                                   Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz``, ``dh0``, ``dc0`` and ``dh_all``.

    ``dh_all`` (T, B, P) receives ``dh_t``, the total gradient reaching ``h_t``, of every
    step: the left factor of ``dW_hr``, kept rather than recomputed after the loop. ``dm``
    (B, H) is scratch; ``zeros`` holds H zeros. ``dc_seq`` is NULL when there is no
    cell-state gradient per step.
    """
    cdef Py_ssize_t t, r, offset, rows = b1 - b0, G = LSTM_GATES * H
    # dc lives in the chunk's rows of dc0: no scratch, and it ends there
    cdef floating* dc = dc0 + b0 * H
    cdef floating* dm_rows = dm + b0 * H
    cdef floating* dh
    cdef const floating* a
    cdef const floating* c_prev
    cdef floating* dz_t
    cdef const floating* dc_ext = NULL
    memcpy(dc, dc_n + b0 * H, rows * H * sizeof(floating))
    for t in range(T - 1, -1, -1):
        offset = (t * B + b0) * H
        dh = dh_all + (t * B + b0) * P
        # dh_t = dy_t + (dh_n at the last step, else dz_{t+1} W_hh)
        memcpy(dh, dy + (t * B + b0) * P, rows * P * sizeof(floating))
        if t == T - 1:
            _add_rows(dh_n + b0 * P, 1, rows * P, dh)
        else:
            _recurrent_product(rows, P, G, dz + ((t + 1) * B + b0) * G, w_hh_packed, dh,
                               column_threads)
        a = gates + (t * B + b0) * G
        dz_t = dz + (t * B + b0) * G
        c_prev = c0 + b0 * H if t == 0 else c_all + offset - B * H
        if floating is float:
            # dm = dh_t W_hr and the gate gradients fused, tile by tile (lstm.pxi's step,
            # its product reduced over the P columns of dh_t; no dy, it is in dh_t already)
            if dc_seq != NULL:
                dc_ext = dc_seq + offset
            _lstm_grad_step_fused(rows, H, P, dh, w_hr_packed, NULL, a, c_all + offset, c_prev,
                                  NULL, dc_ext, dc, dz_t, column_threads)
        else:
            memset(dm_rows, 0, rows * H * sizeof(floating))
            _recurrent_product(rows, H, P, dh, w_hr_packed, dm_rows, column_threads)  # dm = dh_t W_hr
            for r in range(rows):
                if dc_seq != NULL:
                    dc_ext = dc_seq + offset + r * H
                # _lstm_cell_grad adds a recurrent gradient to the output's; here all of dm
                # is the output's gradient (the recurrence reached it through dh_t already)
                _lstm_cell_grad(a + r * G, c_all + offset + r * H, c_prev + r * H,
                                dm_rows + r * H, dc_ext, zeros, dc + r * H, dz_t + r * G, H)
    memset(dh0 + b0 * P, 0, rows * P * sizeof(floating))
    _recurrent_product(rows, P, G, dz + b0 * G, w_hh_packed, dh0 + b0 * P, column_threads)  # dh_0 = dz_0 W_hh


# ---- the kernels

def lstm_proj_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                      const floating[:, ::1] w_hh, const floating[:, ::1] w_hr,
                      const floating[::1] bias, const floating[:, ::1] h0,
                      const floating[:, ::1] c0, floating[:, :, ::1] y, floating[:, ::1] h_n,
                      floating[:, ::1] c_n, floating[:, :, ::1] gates, floating[:, :, ::1] c_all,
                      floating[:, :, ::1] m_all, int n_threads):
    """Cython forward; arguments as :func:`fastrnn._python.lstm_proj.lstm_proj_forward`.

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
        IN. ``b_ih + b_hh``.
    h0 : ndarray of shape (B, P)
        IN. Initial (projected) hidden state.
    c0 : ndarray of shape (B, H)
        IN. Initial cell state.
    y : ndarray of shape (T, B, P)
        OUT. Projected hidden state of every step.
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
        OUT. Workspace: ``o_t * tanh(c_t)`` of every step; with shape (0, B, H)
        (inference) nothing is stored.
    n_threads : int
        IN. OpenMP threads; results do not depend on it.

    The weights are packed into temporaries (:func:`_lstm_proj_packed`) for this call only;
    :func:`lstm_proj_forward_packed` runs on weights packed once.
    """
    cdef object w_ih_t, w_hh_t, w_hr_t
    w_ih_t, w_hh_t, w_hr_t = _lstm_proj_packed(w_ih, w_hh, w_hr)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    cdef floating[::1] w_hr_t_v = w_hr_t
    _lstm_proj_forward_run(x, &w_ih_t_v[0], &w_hh_t_v[0], &w_hr_t_v[0], &bias[0], h0, c0, y, h_n,
                           c_n, gates, c_all, m_all, w_hr.shape[1], w_hr.shape[0], n_threads)


def lstm_proj_forward_packed(const floating[:, :, ::1] x, StepWeights weights,
                             const floating[:, ::1] h0, const floating[:, ::1] c0,
                             floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, ::1] c_n,
                             floating[:, :, ::1] gates, floating[:, :, ::1] c_all,
                             floating[:, :, ::1] m_all, int n_threads):
    """:func:`lstm_proj_forward` on weights packed once (``weights`` from
    ``pack_layer("lstm_proj", ...)``, bias included); the other arguments as there. Raises
    StaleCacheError when the weights were packed on another ISA level, ValueError when they do
    not fit ``x``."""
    weights.check_forward(2, floating is float, x.shape[2])
    _lstm_proj_forward_run(x, <const floating*>weights.w_ih_t, <const floating*>weights.w_hh_t,
                           <const floating*>weights.w_extra, <const floating*>weights.bias, h0, c0,
                           y, h_n, c_n, gates, c_all, m_all, weights.H, weights.P, n_threads)


cdef object _lstm_proj_packed(const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                              const floating[:, ::1] w_hr):
    """``(W_ih^T, W_hh^T, W_hr^T)`` packed for the GEMM, new 1-D arrays (element (i, j) of
    ``W^T`` is ``W[j, i]``): ``w_ih`` is (4*H, D), ``w_hh`` (4*H, P), ``w_hr`` (P, H). No
    fused step here: W_hh^T is packed plainly in float32 too."""
    cdef Py_ssize_t D = w_ih.shape[1], P = w_hr.shape[0], H = w_hr.shape[1], G = LSTM_GATES * H
    dtype = np.float32 if floating is float else np.float64
    w_ih_t = np.empty(packed_size(<floating>0, D, G), dtype=dtype)
    w_hh_t = np.empty(packed_size(<floating>0, P, G), dtype=dtype)
    w_hr_t = np.empty(packed_size(<floating>0, H, P), dtype=dtype)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    cdef floating[::1] w_hr_t_v = w_hr_t
    if H == 0 or P == 0:
        return w_ih_t, w_hh_t, w_hr_t
    with nogil:
        if D > 0:
            pack(&w_ih[0, 0], D, G, 1, D, &w_ih_t_v[0])  # W_ih^T (D, 4H)
        pack(&w_hh[0, 0], P, G, 1, P, &w_hh_t_v[0])  # W_hh^T (P, 4H)
        pack(&w_hr[0, 0], H, P, 1, H, &w_hr_t_v[0])  # W_hr^T (H, P)
    return w_ih_t, w_hh_t, w_hr_t


cdef int _lstm_proj_forward_run(const floating[:, :, ::1] x, const floating* w_ih_t_packed,
                                const floating* w_hh_t_packed, const floating* w_hr_t_packed,
                                const floating* bias_p, const floating[:, ::1] h0,
                                const floating[:, ::1] c0, floating[:, :, ::1] y,
                                floating[:, ::1] h_n, floating[:, ::1] c_n,
                                floating[:, :, ::1] gates, floating[:, :, ::1] c_all,
                                floating[:, :, ::1] m_all, Py_ssize_t H, Py_ssize_t P,
                                int n_threads) except -1:
    """The forward proper, on packed weights (:func:`_lstm_proj_packed`'s layouts)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], G = LSTM_GATES * H
    cdef bint keep_cells = c_all.shape[0] == T
    cdef bint keep_m = m_all.shape[0] == T
    cdef Py_ssize_t[::1] pieces, spans
    cdef bint shared
    pieces, spans, shared = projection_spans(T, B, D, G, gates.shape[0])
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, LSTM_GATES)
    cdef Py_ssize_t k, s, p0, p1, t0, t1, n_chunks = chunks.shape[0] - 1
    cdef int project_threads
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, LSTM_GATES, n_threads)
    dtype = np.asarray(y).dtype
    # m_t of every chunk's rows when m_all keeps no step (inference)
    cdef floating[:, ::1] m_scratch = np.empty((1 if keep_m else max(B, 1), H), dtype=dtype)
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef const floating* c0_p = &c0[0, 0]
    cdef floating* y_p = &y[0, 0, 0]
    cdef floating* h_n_p = &h_n[0, 0]
    cdef floating* c_n_p = &c_n[0, 0]
    cdef floating* gates_p = &gates[0, 0, 0]
    cdef floating* c_all_p = NULL
    cdef floating* m_all_p = NULL
    cdef const floating* h_prev
    cdef const floating* c_prev
    cdef floating* cells
    cdef floating* ms
    if keep_cells and T > 0:
        c_all_p = &c_all[0, 0, 0]
    if keep_m and T > 0:
        m_all_p = &m_all[0, 0, 0]
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
            h_prev = h0_p if t0 == 0 else y_p + (t0 - 1) * B * P
            c_prev = c0_p if t0 == 0 else (c_all_p + (t0 - 1) * B * H if keep_cells else c_n_p)
            cells = c_all_p + t0 * B * H if keep_cells else NULL
            ms = m_all_p + t0 * B * H if keep_m else NULL
            if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
                _lstm_proj_forward_loop(w_hh_t_packed, w_hr_t_packed, h_prev, c_prev,
                                        y_p + t0 * B * P, h_n_p, c_n_p, gates_p, cells, keep_cells,
                                        ms, keep_m, &m_scratch[0, 0], t1 - t0, B, H, P, 0, B,
                                        column_threads)
            else:
                for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                    _lstm_proj_forward_loop(w_hh_t_packed, w_hr_t_packed, h_prev, c_prev,
                                            y_p + t0 * B * P, h_n_p, c_n_p, gates_p, cells,
                                            keep_cells, ms, keep_m, &m_scratch[0, 0], t1 - t0, B,
                                            H, P, chunks[k], chunks[k + 1], 1)
    return 0


def lstm_proj_backward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                       const floating[:, ::1] w_hh, const floating[:, ::1] w_hr,
                       const floating[:, ::1] h0, const floating[:, ::1] c0,
                       const floating[:, :, ::1] y, const floating[:, :, ::1] gates,
                       const floating[:, :, ::1] c_all, const floating[:, :, ::1] m_all,
                       const floating[:, :, ::1] dy, const floating[:, ::1] dh_n,
                       const floating[:, ::1] dc_n, const floating[:, :, ::1] dc_seq,
                       floating[:, :, ::1] dz, floating[:, :, ::1] dx, floating[:, ::1] dh0,
                       floating[:, ::1] dc0, floating[:, ::1] dw_ih, floating[:, ::1] dw_hh,
                       floating[:, ::1] dw_hr, floating[::1] db, int n_threads):
    """Cython BPTT; arguments as :func:`fastrnn._python.lstm_proj.lstm_proj_backward`.

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
        IN. Gradient of the loss with respect to the cell state of every step,
        added to ``dc`` at step ``t``; with shape (0, B, H) there is none.
    dz : ndarray of shape (T, B, 4*H)
        OUT. Workspace: gradient with respect to the pre-activations.
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
        IN. OpenMP threads; results do not depend on it.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t P = w_hr.shape[0], H = w_hr.shape[1], G = LSTM_GATES * H
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, LSTM_GATES)
    cdef Py_ssize_t k, n_chunks = chunks.shape[0] - 1
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, LSTM_GATES, n_threads)
    cdef Py_ssize_t d_panels = (D + panel_width(<floating>0) - 1) // panel_width(<floating>0)
    # the weight gradients: threads share the 4H rows of dW_ih and dW_hh and the P rows of
    # dW_hr, by fours (the micro-kernel's row blocks, so the sums do not depend on the share)
    cdef int grad_threads = _threads_for(n_threads, H)
    cdef Py_ssize_t g_piece = (H + grad_threads - 1) // grad_threads * LSTM_GATES
    cdef Py_ssize_t p_piece = ((P + 3) // 4 + grad_threads - 1) // grad_threads * 4
    dtype = np.asarray(dz).dtype
    cdef floating[::1] w_ih_packed = np.empty(packed_size(<floating>0, G, D), dtype=dtype)
    cdef floating[::1] w_hh_packed = np.empty(packed_size(<floating>0, G, P), dtype=dtype)
    cdef floating[::1] w_hr_packed = np.empty(packed_size(<floating>0, P, H), dtype=dtype)
    # dh_t of every step (the left factor of dW_hr), dm of each chunk's rows, H zeros
    cdef floating[:, :, ::1] dh_all = np.empty((T, B, P), dtype=dtype)
    cdef floating[:, ::1] dm = np.empty((max(B, 1), H), dtype=dtype)
    cdef floating[::1] zeros = np.zeros(H, dtype=dtype)
    # h_{t-1} of the first slabs of rows, those holding h0: [h0; y[:first_rows - B]]
    cdef Py_ssize_t first_rows = min(T * B, (B + PG_KC - 1) // PG_KC * PG_KC)
    cdef floating[:, ::1] h_first = np.empty((max(first_rows, 1), P), dtype=dtype)
    # work space of the weight-gradient products, one per thread
    cdef Py_ssize_t work_size = max(at_b_pair_work_size(<floating>0, g_piece, D, P),
                                    at_b_work_size(<floating>0, p_piece, H))
    cdef floating[::1] work = np.empty(grad_threads * work_size, dtype=dtype)
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* w_ih_p = &w_ih[0, 0]
    cdef const floating* w_hh_p = &w_hh[0, 0]
    cdef const floating* w_hr_p = &w_hr[0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef const floating* c0_p = &c0[0, 0]
    cdef const floating* y_p = &y[0, 0, 0]
    cdef const floating* gates_p = &gates[0, 0, 0]
    cdef const floating* c_all_p = &c_all[0, 0, 0]
    cdef const floating* m_all_p = &m_all[0, 0, 0]
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
    cdef floating* dh_all_p = &dh_all[0, 0, 0]
    cdef floating* dw_hr_p = &dw_hr[0, 0]
    cdef Py_ssize_t p0, p1
    with nogil:
        # the weights as they are, packed once for all steps
        pack(w_ih_p, G, D, D, 1, &w_ih_packed[0])  # W_ih (4H, D), for dx = dz W_ih
        pack(w_hh_p, G, P, P, 1, &w_hh_packed[0])  # W_hh (4H, P), for dh_{t-1} = dz_t W_hh
        pack(w_hr_p, P, H, H, 1, &w_hr_packed[0])  # W_hr (P, H), for dm = dh_t W_hr
        # 1. the recurrence backwards, one batch chunk for all steps
        if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
            _lstm_proj_backward_loop(&w_hh_packed[0], &w_hr_packed[0], c0_p, gates_p, c_all_p,
                                     dy_p, dh_n_p, dc_n_p, dc_seq_p, &zeros[0], dz_p, dh_all_p,
                                     &dm[0, 0], dh0_p, dc0_p, T, B, H, P, 0, B, column_threads)
        else:
            for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                _lstm_proj_backward_loop(&w_hh_packed[0], &w_hr_packed[0], c0_p, gates_p,
                                         c_all_p, dy_p, dh_n_p, dc_n_p, dc_seq_p, &zeros[0], dz_p,
                                         dh_all_p, &dm[0, 0], dh0_p, dc0_p, T, B, H, P,
                                         chunks[k], chunks[k + 1], 1)
        # 2. dx = dz W_ih, dW_ih, dW_hh and dW_hr = dh^T m over all steps at once, the
        # results shared
        memset(dx_p, 0, T * B * D * sizeof(floating))
        if T > 0:
            memcpy(&h_first[0, 0], h0_p, B * P * sizeof(floating))
            memcpy(&h_first[0, 0] + B * P, y_p, (first_rows - B) * P * sizeof(floating))
            for k in prange(grad_threads, num_threads=grad_threads, schedule='static'):
                _lstm_backward_products(x_p, &h_first[0, 0], first_rows, y_p, dz_p,
                                        &w_ih_packed[0], dx_p, &dw_ih[0, 0], &dw_hh[0, 0],
                                        &work[k * work_size], T * B, D, H, P, B,
                                        min(k * g_piece, G), min((k + 1) * g_piece, G),
                                        d_panels * k // grad_threads,
                                        d_panels * (k + 1) // grad_threads)
                p0 = min(k * p_piece, P)
                p1 = min((k + 1) * p_piece, P)
                if p1 > p0:
                    memset(dw_hr_p + p0 * H, 0, (p1 - p0) * H * sizeof(floating))
                    gemm_at_b(p1 - p0, H, T * B, dh_all_p + p0, P, m_all_p, H, dw_hr_p + p0 * H,
                              H, &work[k * work_size])
        else:
            memset(&dw_ih[0, 0], 0, G * D * sizeof(floating))
            memset(&dw_hh[0, 0], 0, G * P * sizeof(floating))
            memset(dw_hr_p, 0, P * H * sizeof(floating))
        memset(&db[0], 0, G * sizeof(floating))
        _add_rows(dz_p, T * B, G, &db[0])
