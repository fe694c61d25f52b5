# Elman (SimpleRNN) cell, Cython backend; included by _cy.pyx.
#
# The steps, names and workspace are those of fastrnn._python.rnn, whose
# docstring has the equations and the kernel contract, and the layout follows
# fastrnn._numba.rnn so the two read side by side. The GEMMs over all steps run
# in fixed time blocks, the time loop runs on fixed batch chunks, both under
# ``prange``. Every product runs on the packed micro-kernel (packed_gemm), the
# weights packed once per call: a BLAS call would repack them at every step.
# Pieces never depend on n_threads, so neither do the results.


cdef enum:
    SLAB_ROWS = 64             # rows that stay in cache while packed weights pass over them


# ---- pointwise loops: one pass each, written over flat pointers so gcc vectorises them

cdef inline void _tanh_inplace(floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        z[j] = tanh(z[j])


cdef inline void _relu_inplace(floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating v, zero = 0
    for j in range(n):
        v = z[j]
        z[j] = zero if v < zero else v  # keeps NaN, like the reference


cdef inline void _tanh_grad(const floating* dy_t, const floating* dh, const floating* h_t,
                            floating* dz_t, Py_ssize_t n) noexcept nogil:
    # dz = g * (1 - h^2), written as the Numba kernel does
    cdef Py_ssize_t j
    cdef floating g
    for j in range(n):
        g = dy_t[j] + dh[j]
        dz_t[j] = g - g * (h_t[j] * h_t[j])


cdef inline void _relu_grad(const floating* dy_t, const floating* dh, const floating* h_t,
                            floating* dz_t, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating g, zero = 0
    for j in range(n):
        g = dy_t[j] + dh[j]
        dz_t[j] = g if h_t[j] > zero else zero


cdef inline void _add_rows(const floating* a, Py_ssize_t rows, Py_ssize_t n,
                           floating* out) noexcept nogil:
    """``out[j] += a[r, j]`` for every row ``r`` of the (rows, n) array ``a``, in row order."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(n):
            out[j] += a[r * n + j]


# ---- the pieces of work: one time block or one batch chunk each

cdef void _rows_times_packed(Py_ssize_t rows, Py_ssize_t n, Py_ssize_t k, const floating* a,
                             const floating* packed, floating* c) noexcept nogil:
    """``c (rows, n) += a (rows, k) . B`` with B packed, for many rows (lda = k, ldc = n).

    Slabs of rows small enough to stay in cache while every panel of B passes over them.
    """
    cdef Py_ssize_t r0 = 0, slab
    while r0 < rows:
        slab = min(<Py_ssize_t>SLAB_ROWS, rows - r0)
        gemm_packed(slab, n, k, a + r0 * k, k, packed, c + r0 * n, n)
        r0 += slab


cdef void _project(const floating* x, const floating* w_ih_t_packed, const floating* bias,
                   floating* y, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                   Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Input projection of steps ``t0:t1``: ``y = x W_ih^T + b`` over their rows."""
    cdef Py_ssize_t rows = (t1 - t0) * B, r, j
    cdef floating* y_rows = y + t0 * B * H
    for r in range(rows):
        for j in range(H):
            y_rows[r * H + j] = bias[j]
    _rows_times_packed(rows, H, D, x + t0 * B * D, w_ih_t_packed, y_rows)


cdef void _recurrent_product(Py_ssize_t rows, Py_ssize_t n, Py_ssize_t k, const floating* a,
                             const floating* packed, floating* c,
                             int column_threads) noexcept nogil:
    """``c (rows, n) += a (rows, k) . B`` with B packed; rows are contiguous (lda = k, ldc = n).

    With ``column_threads > 1`` the columns are shared among threads: used when
    the batch is too small to cut into chunks but the layer is large. Each
    element's sum is the same whoever computes it, so results do not change.
    """
    cdef Py_ssize_t piece, j0, j1, width = panel_width(c[0])
    cdef Py_ssize_t panels = (n + width - 1) // width
    if column_threads <= 1:
        gemm_packed(rows, n, k, a, k, packed, c, n)
        return
    for piece in prange(column_threads, num_threads=column_threads, schedule='static'):
        j0 = panels * piece // column_threads * width
        j1 = min(panels * (piece + 1) // column_threads * width, n)
        if j1 > j0:
            gemm_packed(rows, j1 - j0, k, a, k, packed + j0 * k, c + j0, n)


cdef void _forward_loop(const floating* w_hh_t_packed,
                        const floating* h0, bint relu, floating* y, floating* h_n,
                        Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                        Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """Time loop for batch rows ``b0:b1``; ``y`` holds the input projection on entry."""
    cdef Py_ssize_t t, rows = b1 - b0, n = (b1 - b0) * H
    cdef const floating* h = h0 + b0 * H
    cdef floating* z
    for t in range(T):
        # the chunk's rows of y[t] and of h_{t-1} (h0 or y[t-1]) are contiguous (rows, H) blocks
        z = y + (t * B + b0) * H
        _recurrent_product(rows, H, H, h, w_hh_t_packed, z, column_threads)  # z += h_{t-1} W_hh^T
        if relu:
            _relu_inplace(z, n)
        else:
            _tanh_inplace(z, n)
        h = z
    memcpy(h_n + b0 * H, h, n * sizeof(floating))


cdef void _backward_loop(const floating* w_hh_packed, const floating* y, const floating* dy,
                         const floating* dh_n, bint relu, floating* dz, floating* dh0,
                         Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                         Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz`` and ``dh0``."""
    cdef Py_ssize_t t, offset, rows = b1 - b0, n = (b1 - b0) * H
    # dh lives in the chunk's rows of dh0: no scratch, and it ends there as dh_0
    cdef floating* dh = dh0 + b0 * H
    cdef floating* dz_t
    memcpy(dh, dh_n + b0 * H, n * sizeof(floating))
    for t in range(T - 1, -1, -1):
        offset = (t * B + b0) * H
        dz_t = dz + offset
        if relu:
            _relu_grad(dy + offset, dh, y + offset, dz_t, n)
        else:
            _tanh_grad(dy + offset, dh, y + offset, dz_t, n)
        memset(dh, 0, n * sizeof(floating))
        _recurrent_product(rows, H, H, dz_t, w_hh_packed, dh, column_threads)  # dh_{t-1} = dz_t W_hh


cdef void _weight_gradient(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                           const floating* b, bint accumulate, floating* c,
                           floating* work) noexcept nogil:
    """``C (m, n) = A^T B`` (or ``+=`` if ``accumulate``) for row-major ``A`` (k, m), ``B`` (k, n)."""
    if not accumulate:
        memset(c, 0, m * n * sizeof(floating))
    gemm_at_b(m, n, k, a, m, b, n, c, n, work)


cdef void _backward_gemms(const floating* x, const floating* w_ih_packed, const floating* h0,
                          const floating* y, const floating* dz, floating* dx,
                          floating* dw_ih_k, floating* dw_hh_k, floating* work,
                          Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                          Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """GEMMs over the rows of steps ``t0:t1``: partial ``dW_ih``, ``dW_hh``, and ``dx``."""
    cdef Py_ssize_t rows = (t1 - t0) * B
    cdef const floating* dz_rows = dz + t0 * B * H
    _weight_gradient(H, D, rows, dz_rows, x + t0 * B * D, False, dw_ih_k, work)
    # h_{t-1} for the block's steps: h0 for t = 0, else y[t - 1]
    if t0 == 0:
        _weight_gradient(H, H, B, dz, h0, False, dw_hh_k, work)
        if t1 > 1:
            _weight_gradient(H, H, (t1 - 1) * B, dz + B * H, y, True, dw_hh_k, work)
    else:
        _weight_gradient(H, H, rows, dz_rows, y + (t0 - 1) * B * H, False, dw_hh_k, work)
    memset(dx + t0 * B * D, 0, rows * D * sizeof(floating))
    _rows_times_packed(rows, D, H, dz_rows, w_ih_packed, dx + t0 * B * D)  # dx = dz W_ih


# ---- the kernels

def rnn_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                const floating[:, ::1] w_hh, const floating[::1] bias,
                const floating[:, ::1] h0, bint relu,
                floating[:, :, ::1] y, floating[:, ::1] h_n, int n_threads):
    """Cython Elman forward; arguments as :func:`fastrnn._python.rnn.rnn_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (H, D)
        IN. Input-to-hidden weights.
    w_hh : ndarray of shape (H, H)
        IN. Hidden-to-hidden weights.
    bias : ndarray of shape (H,)
        IN. ``b_ih + b_hh``.
    h0 : ndarray of shape (B, H)
        IN. Initial hidden state.
    relu : bool
        IN. ``True`` for ``relu``, ``False`` for ``tanh``.
    y : ndarray of shape (T, B, H)
        OUT. Hidden state of every step; also the workspace of BPTT.
    h_n : ndarray of shape (B, H)
        OUT. Hidden state after the last step.
    n_threads : int
        IN. OpenMP threads; results do not depend on it.

    The weights are packed into temporaries (:func:`_rnn_packed`) for this call only;
    :func:`rnn_forward_packed` runs on weights packed once.
    """
    cdef object w_ih_t, w_hh_t
    w_ih_t, w_hh_t = _rnn_packed(w_ih, w_hh)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    _rnn_forward_run(x, &w_ih_t_v[0], &w_hh_t_v[0], &bias[0], h0, relu, y, h_n, w_hh.shape[0],
                     n_threads)


def rnn_forward_packed(const floating[:, :, ::1] x, StepWeights weights,
                       const floating[:, ::1] h0, floating[:, :, ::1] y, floating[:, ::1] h_n,
                       int n_threads):
    """:func:`rnn_forward` on weights packed once (``weights`` from ``pack_layer("rnn", ...)``,
    bias and nonlinearity included); the other arguments as there. Raises StaleCacheError when
    the weights were packed on another ISA level, ValueError when they do not fit ``x``."""
    weights.check_forward(0, floating is float, x.shape[2])
    _rnn_forward_run(x, <const floating*>weights.w_ih_t, <const floating*>weights.w_hh_t,
                     <const floating*>weights.bias, h0, weights.flag, y, h_n, weights.H,
                     n_threads)


cdef object _rnn_packed(const floating[:, ::1] w_ih, const floating[:, ::1] w_hh):
    """``(W_ih^T, W_hh^T)`` packed for the GEMM, new 1-D arrays (element (i, j) of ``W^T`` is
    ``W[j, i]``); ``w_ih`` is (H, D), ``w_hh`` (H, H)."""
    cdef Py_ssize_t D = w_ih.shape[1], H = w_hh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    w_ih_t = np.empty(packed_size(<floating>0, D, H), dtype=dtype)
    w_hh_t = np.empty(packed_size(<floating>0, H, H), dtype=dtype)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    if H == 0:
        return w_ih_t, w_hh_t
    with nogil:
        pack(&w_hh[0, 0], H, H, 1, H, &w_hh_t_v[0])
        if D > 0:
            pack(&w_ih[0, 0], D, H, 1, D, &w_ih_t_v[0])
    return w_ih_t, w_hh_t


cdef int _rnn_forward_run(const floating[:, :, ::1] x, const floating* w_ih_t_packed,
                          const floating* w_hh_t_packed, const floating* bias_p,
                          const floating[:, ::1] h0, bint relu, floating[:, :, ::1] y,
                          floating[:, ::1] h_n, Py_ssize_t H, int n_threads) except -1:
    """The forward proper, on packed weights (:func:`_rnn_packed`'s layouts)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t[::1] blocks = time_blocks(T, B, D * H)
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H)
    cdef Py_ssize_t k, n_blocks = blocks.shape[0] - 1, n_chunks = chunks.shape[0] - 1
    cdef int project_threads = _threads_for(n_threads, n_blocks)
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, 1, n_threads)
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef floating* y_p = &y[0, 0, 0]
    cdef floating* h_n_p = &h_n[0, 0]
    with nogil:
        # 1. input projection for every step: y = x W_ih^T + b
        for k in prange(n_blocks, num_threads=project_threads, schedule='static'):
            _project(x_p, w_ih_t_packed, bias_p, y_p, B, D, H, blocks[k], blocks[k + 1])
        # 2. the recurrence, one batch chunk for all steps
        if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
            _forward_loop(w_hh_t_packed, h0_p, relu, y_p, h_n_p, T, B, H, 0, B,
                          column_threads)
        else:
            for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                _forward_loop(w_hh_t_packed, h0_p, relu, y_p, h_n_p, T, B, H,
                              chunks[k], chunks[k + 1], 1)
    return 0


def rnn_backward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh, const floating[:, ::1] h0,
                 const floating[:, :, ::1] y, const floating[:, :, ::1] dy,
                 const floating[:, ::1] dh_n, bint relu,
                 floating[:, :, ::1] dz, floating[:, :, ::1] dx, floating[:, ::1] dh0,
                 floating[:, ::1] dw_ih, floating[:, ::1] dw_hh, floating[::1] db,
                 int n_threads):
    """Cython Elman BPTT; arguments as :func:`fastrnn._python.rnn.rnn_backward`.

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
        OUT. Workspace: gradient with respect to the pre-activations.
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
        IN. OpenMP threads; results do not depend on it.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = w_hh.shape[0]
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H)
    cdef Py_ssize_t[::1] blocks = time_blocks(T, B, (2 * D + H) * H)
    cdef Py_ssize_t k, n_chunks = chunks.shape[0] - 1, n_blocks = blocks.shape[0] - 1
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, 1, n_threads)
    cdef int gemm_threads = _threads_for(n_threads, n_blocks)
    cdef floating[::1] w_hh_packed = np.empty(packed_size(<floating>0, H, H), dtype=np.asarray(dz).dtype)
    cdef floating[::1] w_ih_packed = np.empty(packed_size(<floating>0, H, D), dtype=np.asarray(dz).dtype)
    # work space of the weight-gradient products, one per block as blocks may run at once
    cdef Py_ssize_t work_size = at_b_work_size(<floating>0, H, max(D, H))
    cdef floating[::1] work = np.empty(n_blocks * work_size, dtype=np.asarray(dz).dtype)
    # per-block partial sums, reduced in block order so n_threads cannot change the result;
    # a single block writes straight into the outputs
    cdef floating[:, :, ::1] dw_ih_part = None
    cdef floating[:, :, ::1] dw_hh_part = None
    cdef floating* dw_ih_part_p = &dw_ih[0, 0]
    cdef floating* dw_hh_part_p = &dw_hh[0, 0]
    if n_blocks > 1:
        dtype = np.float32 if floating is float else np.float64
        dw_ih_part = np.empty((n_blocks, H, D), dtype=dtype)
        dw_hh_part = np.empty((n_blocks, H, H), dtype=dtype)
        dw_ih_part_p = &dw_ih_part[0, 0, 0]
        dw_hh_part_p = &dw_hh_part[0, 0, 0]
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* w_ih_p = &w_ih[0, 0]
    cdef const floating* w_hh_p = &w_hh[0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef const floating* y_p = &y[0, 0, 0]
    cdef const floating* dy_p = &dy[0, 0, 0]
    cdef const floating* dh_n_p = &dh_n[0, 0]
    cdef floating* dz_p = &dz[0, 0, 0]
    cdef floating* dx_p = &dx[0, 0, 0]
    cdef floating* dh0_p = &dh0[0, 0]
    with nogil:
        pack(w_hh_p, H, H, H, 1, &w_hh_packed[0])  # W_hh as it is, packed once for all steps
        pack(w_ih_p, H, D, D, 1, &w_ih_packed[0])  # W_ih as it is, for dx = dz W_ih
        # 1. the recurrence backwards, one batch chunk for all steps
        if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
            _backward_loop(&w_hh_packed[0], y_p, dy_p, dh_n_p, relu, dz_p, dh0_p, T, B, H,
                           0, B, column_threads)
        else:
            for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                _backward_loop(&w_hh_packed[0], y_p, dy_p, dh_n_p, relu, dz_p, dh0_p, T, B, H,
                               chunks[k], chunks[k + 1], 1)
        # 2. GEMMs over the rows of the steps of each block
        for k in prange(n_blocks, num_threads=gemm_threads, schedule='static'):
            _backward_gemms(x_p, &w_ih_packed[0], h0_p, y_p, dz_p, dx_p,
                            dw_ih_part_p + k * H * D, dw_hh_part_p + k * H * H,
                            &work[k * work_size],
                            B, D, H, blocks[k], blocks[k + 1])
        if n_blocks > 1:
            memcpy(&dw_ih[0, 0], dw_ih_part_p, H * D * sizeof(floating))
            memcpy(&dw_hh[0, 0], dw_hh_part_p, H * H * sizeof(floating))
            _add_rows(dw_ih_part_p + H * D, n_blocks - 1, H * D, &dw_ih[0, 0])
            _add_rows(dw_hh_part_p + H * H, n_blocks - 1, H * H, &dw_hh[0, 0])
        memset(&db[0], 0, H * sizeof(floating))
        _add_rows(dz_p, T * B, H, &db[0])
