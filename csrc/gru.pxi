# GRU cell, Cython backend; included by _cy.pyx (after rnn.pxi, whose helpers it uses).
#
# The steps, names and workspace are those of fastrnn._python.gru, whose
# docstring has the equations of both variants and the kernel contract, and the
# layout follows fastrnn._numba.gru and rnn.pxi. The GEMMs over all steps run in
# fixed time blocks (the forward projection in the pieces of
# _partition.projection_blocks, in inference a block of them, then the block's
# steps), the time loop runs on fixed batch chunks, both under
# ``prange``; every product runs on the packed micro-kernel, the weights packed
# once per call. In float32 with reset_after=True a step's recurrent product and
# its gate math run fused, tile by tile (cell_steps.h: pg_gru_step_float).
# Pieces never depend on n_threads, so neither do the results.
# Rows of ``gates`` are 4H wide, rows of ``dz_x``/``dz_h`` 3H: products into or
# out of their column blocks pass explicit leading dimensions.


from activations cimport sigmoid
from packed_gemm cimport (gemm_packed_bias, pg_gates_packed_size, pg_gru_step_float,
                          pg_pack_gates_float, pg_units)


# ---- pointwise loops: one pass over one batch row each

# Each loop reads and writes few arrays, so that gcc vectorises it (it must check at run
# time that they do not overlap); a row of H values stays in cache between the loops.

cdef inline void _gru_sigmoid_add(floating* g, const floating* gh, Py_ssize_t n) noexcept nogil:
    """``g = sigmoid(g + gh)``: r and z from their projection and recurrent product."""
    cdef Py_ssize_t j
    for j in range(n):
        g[j] = sigmoid(g[j] + gh[j])


cdef inline void _gru_add(floating* out, const floating* a, const floating* b,
                          Py_ssize_t n) noexcept nogil:
    """``out = a + b``: hn = (recurrent product of the n rows) + b_hn."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = a[j] + b[j]


cdef inline void _gru_mul(floating* out, const floating* a, const floating* b,
                          Py_ssize_t n) noexcept nogil:
    """``out = a * b``: r * h for reset_after=False."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = a[j] * b[j]


cdef inline void _gru_new_after(floating* n_, const floating* r, const floating* hn,
                                Py_ssize_t n) noexcept nogil:
    """reset_after=True: ``n = tanh(gx_n + r * hn)``, in place of ``gx_n``."""
    cdef Py_ssize_t j
    for j in range(n):
        n_[j] = tanh(n_[j] + r[j] * hn[j])


cdef inline void _gru_new_before(floating* n_, const floating* hn, Py_ssize_t n) noexcept nogil:
    """reset_after=False: ``n = tanh(gx_n + hn)``, in place of ``gx_n``."""
    cdef Py_ssize_t j
    for j in range(n):
        n_[j] = tanh(n_[j] + hn[j])


cdef inline void _gru_blend(floating* y_t, const floating* z, const floating* n_,
                            const floating* h, Py_ssize_t n) noexcept nogil:
    """``h_t = (1 - z) * n + z * h_{t-1}``."""
    cdef Py_ssize_t j
    cdef floating one = 1
    for j in range(n):
        y_t[j] = (one - z[j]) * n_[j] + z[j] * h[j]


cdef inline void _gru_cell_after(const floating* gh, const floating* b_hn, const floating* h,
                                 floating* g, floating* y_t, Py_ssize_t H) noexcept nogil:
    """reset_after=True, one row: ``gh = h W_hh^T``; ``g`` holds the projection on entry,
    ``[r, z, n, hn]`` on exit; ``h_t`` into ``y_t``."""
    _gru_sigmoid_add(g, gh, 2 * H)                   # r, z
    _gru_add(g + 3 * H, gh + 2 * H, b_hn, H)          # hn
    _gru_new_after(g + 2 * H, g, g + 3 * H, H)        # n
    _gru_blend(y_t, g + H, g + 2 * H, h, H)


cdef inline void _gru_cell_rz(const floating* gh, const floating* h, floating* g,
                              floating* rh, Py_ssize_t H) noexcept nogil:
    """reset_after=False, first pass of one row: ``gh = h [W_hr; W_hz]^T``; r, z into ``g``,
    ``r * h`` into ``rh``."""
    _gru_sigmoid_add(g, gh, 2 * H)
    _gru_mul(rh, g, h, H)


cdef inline void _gru_cell_n(const floating* ghn, const floating* b_hn, const floating* h,
                             floating* g, floating* y_t, Py_ssize_t H) noexcept nogil:
    """reset_after=False, second pass of one row: ``ghn = (r * h) W_hn^T``."""
    _gru_add(g + 3 * H, ghn, b_hn, H)                 # hn
    _gru_new_before(g + 2 * H, g + 3 * H, H)          # n
    _gru_blend(y_t, g + H, g + 2 * H, h, H)


cdef inline void _gru_grad_dn(floating* dn, const floating* grad, const floating* z,
                              const floating* n_, Py_ssize_t n) noexcept nogil:
    """``dn = grad * (1 - z) * (1 - n^2)``."""
    cdef Py_ssize_t j
    cdef floating one = 1
    for j in range(n):
        dn[j] = grad[j] * (one - z[j]) * (one - n_[j] * n_[j])


cdef inline void _gru_grad_dz(floating* dzg, const floating* grad, const floating* z,
                              const floating* n_, const floating* h_prev,
                              Py_ssize_t n) noexcept nogil:
    """``dz = grad * (h_{t-1} - n) * z (1 - z)``."""
    cdef Py_ssize_t j
    cdef floating one = 1
    for j in range(n):
        dzg[j] = grad[j] * (h_prev[j] - n_[j]) * z[j] * (one - z[j])


cdef inline void _gru_grad_dr(floating* dr, const floating* a, const floating* b,
                              const floating* r, Py_ssize_t n) noexcept nogil:
    """``dr = a * b * r (1 - r)``: ``dn * hn`` (reset_after=True) or ``d(rh) * h_{t-1}``."""
    cdef Py_ssize_t j
    cdef floating one = 1
    for j in range(n):
        dr[j] = a[j] * b[j] * r[j] * (one - r[j])


cdef inline void _gru_add_to(floating* out, const floating* a, Py_ssize_t n) noexcept nogil:
    """``out += a``."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] += a[j]


cdef inline void _gru_scale(floating* out, const floating* a, Py_ssize_t n) noexcept nogil:
    """``out *= a``."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] *= a[j]


cdef inline void _gru_add_product(floating* out, const floating* a, const floating* b,
                                  Py_ssize_t n) noexcept nogil:
    """``out += a * b``."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] += a[j] * b[j]


cdef inline void _gru_grad_after(const floating* g, const floating* h_prev, const floating* dy_t,
                                 floating* dh, floating* dz_x_t, floating* dz_h_t,
                                 Py_ssize_t H) noexcept nogil:
    """reset_after=True, one row: ``dz_x``, ``dz_h``; ``dh`` (in: from step t+1) becomes
    ``g * z``, the direct path, to which ``dz_h W_hh`` is added next."""
    _gru_add_to(dh, dy_t, H)                                           # grad = dy + dh
    _gru_grad_dn(dz_x_t + 2 * H, dh, g + H, g + 2 * H, H)               # dn
    _gru_grad_dz(dz_x_t + H, dh, g + H, g + 2 * H, h_prev, H)           # dz
    _gru_grad_dr(dz_x_t, dz_x_t + 2 * H, g + 3 * H, g, H)               # dr = dn hn r(1-r)
    memcpy(dz_h_t, dz_x_t, 2 * H * sizeof(floating))
    _gru_mul(dz_h_t + 2 * H, dz_x_t + 2 * H, g, H)                      # dn * r
    _gru_scale(dh, g + H, H)                                           # grad * z


cdef inline void _gru_grad_zn(const floating* g, const floating* h_prev, const floating* dy_t,
                              floating* dh, floating* dz_x_t, floating* dz_h_t,
                              Py_ssize_t H) noexcept nogil:
    """reset_after=False, first pass of one row: dz, dn; ``dh`` becomes ``g * z``."""
    _gru_add_to(dh, dy_t, H)
    _gru_grad_dn(dz_x_t + 2 * H, dh, g + H, g + 2 * H, H)
    _gru_grad_dz(dz_x_t + H, dh, g + H, g + 2 * H, h_prev, H)
    memcpy(dz_h_t + H, dz_x_t + H, 2 * H * sizeof(floating))
    _gru_scale(dh, g + H, H)


cdef inline void _gru_grad_r(const floating* g, const floating* h_prev, const floating* drh,
                             floating* dh, floating* dz_x_t, floating* dz_h_t,
                             Py_ssize_t H) noexcept nogil:
    """reset_after=False, second pass of one row: ``drh = dn W_hn``; dr, and ``dh += drh * r``."""
    _gru_grad_dr(dz_x_t, drh, h_prev, g, H)
    memcpy(dz_h_t, dz_x_t, H * sizeof(floating))
    _gru_add_product(dh, drh, g, H)


# ---- the pieces of work: one time block or one batch chunk each

cdef void _gru_product(Py_ssize_t rows, Py_ssize_t n, Py_ssize_t k, const floating* a,
                       Py_ssize_t lda, const floating* packed, floating* c, Py_ssize_t ldc,
                       int column_threads) noexcept nogil:
    """``c (rows, n) += a (rows, k) . B`` with B packed; as rnn.pxi's ``_recurrent_product``
    with explicit leading dimensions. ``column_threads > 1`` shares the columns."""
    cdef Py_ssize_t piece, j0, j1, width = panel_width(c[0])
    cdef Py_ssize_t panels = (n + width - 1) // width
    if column_threads <= 1:
        gemm_packed(rows, n, k, a, lda, packed, c, ldc)
        return
    for piece in prange(column_threads, num_threads=column_threads, schedule='static'):
        j0 = panels * piece // column_threads * width
        j1 = min(panels * (piece + 1) // column_threads * width, n)
        if j1 > j0:
            gemm_packed(rows, j1 - j0, k, a, lda, packed + j0 * k, c + j0, ldc)


cdef void _gru_step_fused(Py_ssize_t rows, Py_ssize_t H, const float* h,
                          const float* w_hh_t_packed, const float* b_hn, float* g, float* y_t,
                          int column_threads) noexcept nogil:
    """float32, reset_after=True: ``h W_hh^T`` and the gate math of a step, tile by tile.

    ``w_hh_t_packed`` is packed by ``pg_pack_gates_float`` (isa.h). With
    ``column_threads > 1`` the blocks of units are shared among threads.
    """
    cdef Py_ssize_t piece, u0, u1, units = pg_units(), blocks = (H + units - 1) // units
    if column_threads <= 1:
        pg_gru_step_float(rows, H, h, w_hh_t_packed, b_hn, g, y_t, 0, H)
        return
    for piece in prange(column_threads, num_threads=column_threads, schedule='static'):
        u0 = blocks * piece // column_threads * units
        u1 = min(blocks * (piece + 1) // column_threads * units, H)
        if u1 > u0:
            pg_gru_step_float(rows, H, h, w_hh_t_packed, b_hn, g, y_t, u0, u1)


cdef void _gru_project(const floating* x, const floating* w_ih_t_packed,
                       const floating* bias_x, floating* g_rows, Py_ssize_t B, Py_ssize_t D,
                       Py_ssize_t H, Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Input projection of steps ``t0:t1`` (one piece): ``g_rows[..., :3H] = x W_ih^T + bias_x``.

    ``g_rows`` points at the workspace row of step ``t0``.
    """
    cdef Py_ssize_t rows = (t1 - t0) * B, r0 = 0, slab
    cdef const floating* x_rows = x + t0 * B * D
    # slabs of rows that stay in cache while every panel of W_ih^T passes over them; the
    # bias is added in the product's epilogue (no pass filling gates with it first)
    while r0 < rows:
        slab = min(<Py_ssize_t>SLAB_ROWS, rows - r0)
        gemm_packed_bias(slab, 3 * H, D, x_rows + r0 * D, D, w_ih_t_packed, bias_x,
                         g_rows + r0 * 4 * H, 4 * H)
        r0 += slab


cdef void _gru_forward_loop(const floating* w_hh_t_packed, const floating* w_hn_t_packed,
                            const floating* b_hn, const floating* h0, bint reset_after,
                            floating* y, floating* h_n, floating* gates, floating* scratch,
                            Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                            Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """Time loop for batch rows ``b0:b1``; ``gates[..., :3H]`` holds the projection on entry.

    ``w_hh_t_packed`` is W_hh^T (reset_after=True) or [W_hr; W_hz]^T (False, with
    ``w_hn_t_packed`` = W_hn^T). ``scratch`` holds ``4 * (b1 - b0) * H`` elements:
    the recurrent product ``gh`` of the step, and for reset_after=False ``r * h``.
    """
    cdef Py_ssize_t t, b, rows = b1 - b0
    cdef const floating* h = h0 + b0 * H
    cdef floating* gh = scratch
    cdef floating* ghn = scratch + rows * 2 * H   # reset_after=False: (r * h) W_hn^T
    cdef floating* rh = scratch + rows * 3 * H
    cdef floating* g
    cdef floating* y_t
    for t in range(T):
        # the chunk's rows of gates[t], y[t] and h_{t-1} (h0 or y[t-1]) are contiguous blocks
        g = gates + (t * B + b0) * 4 * H
        y_t = y + (t * B + b0) * H
        if reset_after:
            if floating is float:  # product and gate math fused, W_hh^T packed by gates
                _gru_step_fused(rows, H, h, w_hh_t_packed, b_hn, g, y_t, column_threads)
            else:
                memset(gh, 0, rows * 3 * H * sizeof(floating))
                _gru_product(rows, 3 * H, H, h, H, w_hh_t_packed, gh, 3 * H, column_threads)
                for b in range(rows):
                    _gru_cell_after(gh + b * 3 * H, b_hn, h + b * H, g + b * 4 * H, y_t + b * H, H)
        else:
            memset(gh, 0, rows * 3 * H * sizeof(floating))
            _gru_product(rows, 2 * H, H, h, H, w_hh_t_packed, gh, 2 * H, column_threads)
            for b in range(rows):
                _gru_cell_rz(gh + b * 2 * H, h + b * H, g + b * 4 * H, rh + b * H, H)
            _gru_product(rows, H, H, rh, H, w_hn_t_packed, ghn, H, column_threads)
            for b in range(rows):
                _gru_cell_n(ghn + b * H, b_hn, h + b * H, g + b * 4 * H, y_t + b * H, H)
        h = y_t
    memcpy(h_n + b0 * H, h, rows * H * sizeof(floating))


cdef void _gru_backward_loop(const floating* w_hh_packed, const floating* w_hn_packed,
                             const floating* h0, bint reset_after, const floating* y,
                             const floating* gates, const floating* dy, const floating* dh_n,
                             floating* dz_x, floating* dz_h, floating* dh0, floating* scratch,
                             Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                             Py_ssize_t b0, Py_ssize_t b1, int column_threads) noexcept nogil:
    """BPTT time loop for batch rows ``b0:b1``: fills ``dz_x``, ``dz_h`` and ``dh0``.

    ``w_hh_packed`` is W_hh (reset_after=True) or [W_hr; W_hz] (False, with
    ``w_hn_packed`` = W_hn), as they are. ``scratch`` holds ``(b1 - b0) * H``
    elements: ``d(r * h) = dn W_hn`` for reset_after=False.
    """
    cdef Py_ssize_t t, b, rows = b1 - b0
    # dh lives in the chunk's rows of dh0: it ends there as dh_0
    cdef floating* dh = dh0 + b0 * H
    cdef floating* drh = scratch
    cdef const floating* h_prev
    cdef const floating* g
    cdef floating* dz_x_t
    cdef floating* dz_h_t
    cdef Py_ssize_t offset
    memcpy(dh, dh_n + b0 * H, rows * H * sizeof(floating))
    for t in range(T - 1, -1, -1):
        h_prev = y + ((t - 1) * B + b0) * H if t > 0 else h0 + b0 * H
        offset = (t * B + b0) * H
        g = gates + offset * 4
        dz_x_t = dz_x + offset * 3
        dz_h_t = dz_h + offset * 3
        if reset_after:
            for b in range(rows):
                _gru_grad_after(g + b * 4 * H, h_prev + b * H, dy + offset + b * H, dh + b * H,
                                dz_x_t + b * 3 * H, dz_h_t + b * 3 * H, H)
            # dh_{t-1} = g * z + dz_h W_hh
            _gru_product(rows, H, 3 * H, dz_h_t, 3 * H, w_hh_packed, dh, H, column_threads)
        else:
            for b in range(rows):
                _gru_grad_zn(g + b * 4 * H, h_prev + b * H, dy + offset + b * H, dh + b * H,
                             dz_x_t + b * 3 * H, dz_h_t + b * 3 * H, H)
            memset(drh, 0, rows * H * sizeof(floating))
            _gru_product(rows, H, H, dz_x_t + 2 * H, 3 * H, w_hn_packed, drh, H,
                         column_threads)  # d(rh) = dn W_hn
            for b in range(rows):
                _gru_grad_r(g + b * 4 * H, h_prev + b * H, drh + b * H, dh + b * H,
                            dz_x_t + b * 3 * H, dz_h_t + b * 3 * H, H)
            # dh_{t-1} = g * z + d(rh) * r + [dr, dz] [W_hr; W_hz]
            _gru_product(rows, H, 2 * H, dz_h_t, 3 * H, w_hh_packed, dh, H, column_threads)


cdef void _gru_at_b(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                    Py_ssize_t lda, const floating* b, Py_ssize_t ldb, bint accumulate,
                    floating* c, Py_ssize_t ldc, floating* work) noexcept nogil:
    """``C (m, n) = A^T B`` (or ``+=`` if ``accumulate``), explicit leading dimensions."""
    cdef Py_ssize_t i
    if not accumulate:
        for i in range(m):
            memset(c + i * ldc, 0, n * sizeof(floating))
    gemm_at_b(m, n, k, a, lda, b, ldb, c, ldc, work)


cdef void _gru_at_h_prev(Py_ssize_t m, const floating* a, Py_ssize_t lda, const floating* h0,
                         const floating* y, Py_ssize_t B, Py_ssize_t H,
                         Py_ssize_t t0, Py_ssize_t t1, floating* c, Py_ssize_t ldc,
                         floating* work) noexcept nogil:
    """``C (m, H) = sum over the rows of steps t0:t1 of a^T h_{t-1}``; ``a`` points at step 0."""
    # h_{t-1} for the block's steps: h0 for t = 0, else y[t - 1]
    if t0 == 0:
        _gru_at_b(m, H, B, a, lda, h0, H, False, c, ldc, work)
        if t1 > 1:
            _gru_at_b(m, H, (t1 - 1) * B, a + B * lda, lda, y, H, True, c, ldc, work)
    else:
        _gru_at_b(m, H, (t1 - t0) * B, a + t0 * B * lda, lda, y + (t0 - 1) * B * H, H,
                  False, c, ldc, work)


cdef void _gru_backward_gemms(const floating* x, const floating* w_ih_packed,
                              const floating* h0, bint reset_after, const floating* y,
                              const floating* gates, const floating* dz_x,
                              const floating* dz_h, floating* dx, floating* dw_ih_k,
                              floating* dw_hh_k, floating* rh, floating* work,
                              Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                              Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """GEMMs over the rows of steps ``t0:t1``: partial ``dW_ih``, ``dW_hh``, and ``dx``.

    For reset_after=False, ``rh`` (``T*B*H``) receives ``r * h_{t-1}`` of the block's rows,
    the input of the n rows of ``W_hh``.
    """
    cdef Py_ssize_t rows = (t1 - t0) * B, G = 3 * H, t, i, j
    cdef const floating* dz_x_rows = dz_x + t0 * B * G
    cdef const floating* h_prev
    cdef const floating* r
    cdef floating* rh_rows = rh + t0 * B * H
    cdef floating* rh_t
    _weight_gradient(G, D, rows, dz_x_rows, x + t0 * B * D, False, dw_ih_k, work)
    if reset_after:
        _gru_at_h_prev(G, dz_h, G, h0, y, B, H, t0, t1, dw_hh_k, H, work)
    else:
        _gru_at_h_prev(2 * H, dz_h, G, h0, y, B, H, t0, t1, dw_hh_k, H, work)
        for t in range(t0, t1):
            h_prev = y + (t - 1) * B * H if t > 0 else h0
            r = gates + t * B * 4 * H
            rh_t = rh_rows + (t - t0) * B * H
            for i in range(B):
                for j in range(H):
                    rh_t[i * H + j] = r[i * 4 * H + j] * h_prev[i * H + j]
        _gru_at_b(H, H, rows, dz_h + t0 * B * G + 2 * H, G, rh_rows, H, False,
                  dw_hh_k + 2 * H * H, H, work)
    memset(dx + t0 * B * D, 0, rows * D * sizeof(floating))
    _rows_times_packed(rows, D, G, dz_x_rows, w_ih_packed, dx + t0 * B * D)  # dx = dz_x W_ih


# ---- the kernels

def gru_forward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                const floating[:, ::1] w_hh, const floating[::1] bias_x,
                const floating[::1] b_hn, const floating[:, ::1] h0, bint reset_after,
                floating[:, :, ::1] y, floating[:, ::1] h_n, floating[:, :, ::1] gates,
                int n_threads):
    """Cython GRU forward; arguments as :func:`fastrnn._python.gru.gru_forward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input sequence.
    w_ih : ndarray of shape (3*H, D)
        IN. Input-to-hidden weights, blocks ``r, z, n``.
    w_hh : ndarray of shape (3*H, H)
        IN. Hidden-to-hidden weights, blocks ``r, z, n``.
    bias_x : ndarray of shape (3*H,)
        IN. ``b_ih + [b_hh_r, b_hh_z, 0]``.
    b_hn : ndarray of shape (H,)
        IN. ``b_hh_n``.
    h0 : ndarray of shape (B, H)
        IN. Initial hidden state.
    reset_after : bool
        IN. ``True``: reset applied after the recurrent product (PyTorch); ``False``: before.
    y : ndarray of shape (T, B, H)
        OUT. Hidden state of every step.
    h_n : ndarray of shape (B, H)
        OUT. Hidden state after the last step.
    gates : ndarray of shape (T, B, 4*H) or (S, B, 4*H)
        OUT. Workspace ``[r, z, n, hn]`` of every step; with ``S < T`` steps
        (inference, ``S`` one block's steps) of the last block.
    n_threads : int
        IN. OpenMP threads; results do not depend on it.

    The weights are packed into temporaries (:func:`_gru_packed`) for this call only;
    :func:`gru_forward_packed` runs on weights packed once.
    """
    cdef object w_ih_t, w_hh_t
    w_ih_t, w_hh_t = _gru_packed(w_ih, w_hh, reset_after)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    cdef Py_ssize_t H = w_hh.shape[1]
    _gru_forward_run(x, &w_ih_t_v[0], &w_hh_t_v[0], &w_hh_t_v[0] + _gru_rz_size(<floating>0, H),
                     &bias_x[0], &b_hn[0], h0, reset_after, y, h_n, gates, H, n_threads)


def gru_forward_packed(const floating[:, :, ::1] x, StepWeights weights,
                       const floating[:, ::1] h0, floating[:, :, ::1] y, floating[:, ::1] h_n,
                       floating[:, :, ::1] gates, int n_threads):
    """:func:`gru_forward` on weights packed once (``weights`` from ``pack_layer("gru", ...)``,
    biases and ``reset_after`` included); the other arguments as there. Raises StaleCacheError
    when the weights were packed on another ISA level, ValueError when they do not fit ``x``."""
    weights.check_forward(3, floating is float, x.shape[2])
    _gru_forward_run(x, <const floating*>weights.w_ih_t, <const floating*>weights.w_hh_t,
                     <const floating*>weights.w_extra, <const floating*>weights.bias,
                     <const floating*>weights.b_hn, h0, weights.flag, y, h_n, gates, weights.H,
                     n_threads)


cdef inline Py_ssize_t _gru_rz_size(floating zero, Py_ssize_t H) noexcept nogil:
    """Elements of packed ``[W_hr; W_hz]^T``, where W_hn^T starts (reset_after=False)."""
    return packed_size(zero, H, 2 * H)


cdef object _gru_packed(const floating[:, ::1] w_ih, const floating[:, ::1] w_hh, bint reset_after):
    """``(W_ih^T, W_hh^T)`` packed in the forward's layouts, new 1-D arrays (element (i, j) of
    ``W^T`` is ``W[j, i]``); ``w_ih`` is (3*H, D), ``w_hh`` (3*H, H). With reset_after=True
    W_hh^T is packed whole (float32: by blocks of units, for the fused step); with False,
    ``[W_hr; W_hz]^T`` then ``W_hn^T`` from element ``_gru_rz_size(H)`` on."""
    cdef Py_ssize_t D = w_ih.shape[1], H = w_hh.shape[1]
    cdef Py_ssize_t rz_size = _gru_rz_size(<floating>0, H)
    dtype = np.float32 if floating is float else np.float64
    w_ih_t = np.empty(packed_size(<floating>0, D, 3 * H), dtype=dtype)
    w_hh_t = np.empty(max(rz_size + packed_size(<floating>0, H, H), pg_gates_packed_size(H, H, 3)),
                      dtype=dtype)
    cdef floating[::1] w_ih_t_v = w_ih_t
    cdef floating[::1] w_hh_t_v = w_hh_t
    if H == 0:
        return w_ih_t, w_hh_t
    with nogil:
        if reset_after:
            if floating is float:
                pg_pack_gates_float(&w_hh[0, 0], H, H, 3, 1, H, &w_hh_t_v[0])
            else:
                pack(&w_hh[0, 0], H, 3 * H, 1, H, &w_hh_t_v[0])
        else:
            pack(&w_hh[0, 0], H, 2 * H, 1, H, &w_hh_t_v[0])
            pack(&w_hh[0, 0] + 2 * H * H, H, H, 1, H, &w_hh_t_v[rz_size])
        if D > 0:
            pack(&w_ih[0, 0], D, 3 * H, 1, D, &w_ih_t_v[0])
    return w_ih_t, w_hh_t


cdef int _gru_forward_run(const floating[:, :, ::1] x, const floating* w_ih_t_packed,
                          const floating* w_hh_t_packed, const floating* w_hn_t_p,
                          const floating* bias_x_p, const floating* b_hn_p,
                          const floating[:, ::1] h0, bint reset_after, floating[:, :, ::1] y,
                          floating[:, ::1] h_n, floating[:, :, ::1] gates, Py_ssize_t H,
                          int n_threads) except -1:
    """The forward proper, on packed weights (:func:`_gru_packed`'s layouts; ``w_hn_t_p`` is
    read with reset_after=False only)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2]
    cdef Py_ssize_t[::1] pieces, spans
    cdef bint shared
    pieces, spans, shared = projection_spans(T, B, D, 4 * H, gates.shape[0])
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, 3)
    cdef Py_ssize_t k, s, p0, p1, t0, t1, n_chunks = chunks.shape[0] - 1
    cdef int project_threads
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, 3, n_threads)
    dtype = np.asarray(y).dtype
    cdef floating[::1] scratch = np.empty(max(B * 4 * H, 1), dtype=dtype)  # per chunk: 4 * rows * H
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef floating* y_p = &y[0, 0, 0]
    cdef floating* h_n_p = &h_n[0, 0]
    cdef floating* gates_p = &gates[0, 0, 0]
    cdef const floating* h_prev
    with nogil:
        for s in range(spans.shape[0] - 1):  # one span of all steps, or one per block (inference)
            p0 = spans[s]
            p1 = spans[s + 1]
            t0 = pieces[p0]
            t1 = pieces[p1]
            project_threads = _threads_for(n_threads, p1 - p0) if shared else 1
            # 1. input projection of the span's steps, one piece each: gates[..., :3H] =
            # x W_ih^T + bias_x, gates[0] holding step t0
            for k in prange(p0, p1, num_threads=project_threads, schedule='static'):
                _gru_project(x_p, w_ih_t_packed, bias_x_p, gates_p + (pieces[k] - t0) * B * 4 * H,
                             B, D, H, pieces[k], pieces[k + 1])
            # 2. the recurrence over them, one batch chunk each, from h = y[t0 - 1] after the first
            h_prev = h0_p if t0 == 0 else y_p + (t0 - 1) * B * H
            if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
                _gru_forward_loop(w_hh_t_packed, w_hn_t_p, b_hn_p, h_prev, reset_after,
                                  y_p + t0 * B * H, h_n_p, gates_p, &scratch[0], t1 - t0, B, H, 0,
                                  B, column_threads)
            else:
                for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                    _gru_forward_loop(w_hh_t_packed, w_hn_t_p, b_hn_p, h_prev, reset_after,
                                      y_p + t0 * B * H, h_n_p, gates_p, &scratch[chunks[k] * 4 * H],
                                      t1 - t0, B, H, chunks[k], chunks[k + 1], 1)
    return 0


def gru_backward(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                 const floating[:, ::1] w_hh, const floating[:, ::1] h0, bint reset_after,
                 const floating[:, :, ::1] y, const floating[:, :, ::1] gates,
                 const floating[:, :, ::1] dy, const floating[:, ::1] dh_n,
                 floating[:, :, ::1] dz_x, floating[:, :, ::1] dz_h, floating[:, :, ::1] dx,
                 floating[:, ::1] dh0, floating[:, ::1] dw_ih, floating[:, ::1] dw_hh,
                 floating[::1] db_ih, floating[::1] db_hh, int n_threads):
    """Cython GRU BPTT; arguments as :func:`fastrnn._python.gru.gru_backward`.

    Parameters
    ----------
    x : ndarray of shape (T, B, D)
        IN. Input of the forward pass.
    w_ih : ndarray of shape (3*H, D)
        IN.
    w_hh : ndarray of shape (3*H, H)
        IN.
    h0 : ndarray of shape (B, H)
        IN. Initial state of the forward pass.
    reset_after : bool
        IN. The variant of the forward pass.
    y : ndarray of shape (T, B, H)
        IN. Output of the forward pass.
    gates : ndarray of shape (T, B, 4*H)
        IN. Workspace of the forward pass.
    dy : ndarray of shape (T, B, H)
        IN. Gradient of the loss with respect to ``y``.
    dh_n : ndarray of shape (B, H)
        IN. Gradient of the loss with respect to the final state.
    dz_x : ndarray of shape (T, B, 3*H)
        OUT. Workspace: gradient with respect to the x-side pre-activations.
    dz_h : ndarray of shape (T, B, 3*H)
        OUT. Workspace: gradient with respect to the recurrent-side pre-activations.
    dx : ndarray of shape (T, B, D)
        OUT. Gradient with respect to ``x``.
    dh0 : ndarray of shape (B, H)
        OUT. Gradient with respect to ``h0``.
    dw_ih : ndarray of shape (3*H, D)
        OUT.
    dw_hh : ndarray of shape (3*H, H)
        OUT.
    db_ih : ndarray of shape (3*H,)
        OUT.
    db_hh : ndarray of shape (3*H,)
        OUT.
    n_threads : int
        IN. OpenMP threads; results do not depend on it.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = w_hh.shape[1]
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, 3)
    cdef Py_ssize_t[::1] blocks = time_blocks(T, B, (2 * D + H) * 3 * H)
    cdef Py_ssize_t k, n_chunks = chunks.shape[0] - 1, n_blocks = blocks.shape[0] - 1
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = step_column_threads(B, H, 3, n_threads)
    cdef int gemm_threads = _threads_for(n_threads, n_blocks)
    dtype = np.asarray(dz_x).dtype
    # W_hh as it is (reset_after=True) or [W_hr; W_hz] then W_hn (False), in one buffer
    cdef Py_ssize_t rz_size = packed_size(<floating>0, 2 * H, H)
    cdef floating[::1] w_hh_packed = np.empty(rz_size + packed_size(<floating>0, H, H), dtype=dtype)
    cdef floating[::1] w_ih_packed = np.empty(packed_size(<floating>0, G, D), dtype=dtype)
    cdef floating[::1] scratch = np.empty(max(B * H, 1), dtype=dtype)  # per chunk: d(rh)
    # reset_after=False: r * h_{t-1} of every row, built block by block
    cdef floating[::1] rh = np.empty(1 if reset_after else max(T * B * H, 1), dtype=dtype)
    # work space of the weight-gradient products, one per block as blocks may run at once
    cdef Py_ssize_t work_size = at_b_work_size(<floating>0, G, max(D, H))
    cdef floating[::1] work = np.empty(n_blocks * work_size, dtype=dtype)
    # per-block partial sums, reduced in block order so n_threads cannot change the result;
    # a single block writes straight into the outputs
    cdef floating[:, :, ::1] dw_ih_part = None
    cdef floating[:, :, ::1] dw_hh_part = None
    cdef floating* dw_ih_part_p = &dw_ih[0, 0]
    cdef floating* dw_hh_part_p = &dw_hh[0, 0]
    if n_blocks > 1:
        dw_ih_part = np.empty((n_blocks, G, D), dtype=dtype)
        dw_hh_part = np.empty((n_blocks, G, H), dtype=dtype)
        dw_ih_part_p = &dw_ih_part[0, 0, 0]
        dw_hh_part_p = &dw_hh_part[0, 0, 0]
    cdef const floating* x_p = &x[0, 0, 0]
    cdef const floating* w_ih_p = &w_ih[0, 0]
    cdef const floating* w_hh_p = &w_hh[0, 0]
    cdef const floating* h0_p = &h0[0, 0]
    cdef const floating* y_p = &y[0, 0, 0]
    cdef const floating* gates_p = &gates[0, 0, 0]
    cdef const floating* dy_p = &dy[0, 0, 0]
    cdef const floating* dh_n_p = &dh_n[0, 0]
    cdef floating* dz_x_p = &dz_x[0, 0, 0]
    cdef floating* dz_h_p = &dz_h[0, 0, 0]
    cdef floating* dx_p = &dx[0, 0, 0]
    cdef floating* dh0_p = &dh0[0, 0]
    cdef floating* w_hn_p = &w_hh_packed[rz_size]
    with nogil:
        # weights as they are, packed once for all steps
        if reset_after:
            pack(w_hh_p, G, H, H, 1, &w_hh_packed[0])
        else:
            pack(w_hh_p, 2 * H, H, H, 1, &w_hh_packed[0])
            pack(w_hh_p + 2 * H * H, H, H, H, 1, w_hn_p)
        pack(w_ih_p, G, D, D, 1, &w_ih_packed[0])  # W_ih, for dx = dz_x W_ih
        # 1. the recurrence backwards, one batch chunk for all steps
        if n_chunks == 1:  # no batch to cut: large layers share each step's columns instead
            _gru_backward_loop(&w_hh_packed[0], w_hn_p, h0_p, reset_after, y_p, gates_p, dy_p,
                               dh_n_p, dz_x_p, dz_h_p, dh0_p, &scratch[0], T, B, H, 0, B,
                               column_threads)
        else:
            for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                _gru_backward_loop(&w_hh_packed[0], w_hn_p, h0_p, reset_after, y_p, gates_p,
                                   dy_p, dh_n_p, dz_x_p, dz_h_p, dh0_p, &scratch[chunks[k] * H],
                                   T, B, H, chunks[k], chunks[k + 1], 1)
        # 2. GEMMs over the rows of the steps of each block
        for k in prange(n_blocks, num_threads=gemm_threads, schedule='static'):
            _gru_backward_gemms(x_p, &w_ih_packed[0], h0_p, reset_after, y_p, gates_p, dz_x_p,
                                dz_h_p, dx_p, dw_ih_part_p + k * G * D, dw_hh_part_p + k * G * H,
                                &rh[0], &work[k * work_size], B, D, H, blocks[k], blocks[k + 1])
        if n_blocks > 1:
            memcpy(&dw_ih[0, 0], dw_ih_part_p, G * D * sizeof(floating))
            memcpy(&dw_hh[0, 0], dw_hh_part_p, G * H * sizeof(floating))
            _add_rows(dw_ih_part_p + G * D, n_blocks - 1, G * D, &dw_ih[0, 0])
            _add_rows(dw_hh_part_p + G * H, n_blocks - 1, G * H, &dw_hh[0, 0])
        memset(&db_ih[0], 0, G * sizeof(floating))
        _add_rows(dz_x_p, T * B, G, &db_ih[0])
        memset(&db_hh[0], 0, G * sizeof(floating))
        _add_rows(dz_h_p, T * B, G, &db_hh[0])
