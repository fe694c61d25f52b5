# Layers in reduced precision (int8, bf16) for inference, Cython backend; included by _cy.pyx
# after reduced_matrix.pxi (PackedMatrix) and the cells' .pxi files (it shares rnn.pxi's
# _relu_inplace and step.pxi's _CallArrays).
#
# The steps, names and workspaces are those of the reference kernels (fastrnn._python.rnn,
# lstm, lstm_proj, gru) run on ReducedMatrix weights: every product goes through rp_gemm
# (reduced_gemm.h); bias, gate math and cell state stay float32, the gate math in a pass
# after each product with isa.h's vector tanh and sigmoid of the level in use (the float
# kernels' own, there fused with the product).
#
# One time loop serves the four cells (_reduced_loop), one driver their forward kernels
# (_reduced_forward): the input projection per piece of steps (the float kernels' pieces
# and blocks), then each block's steps on the fixed batch chunks, both under ``prange``. A
# batch of one chunk shares the columns of each step's products among the threads instead:
# the weights of the steps are packed in blocks of rows (_RBlocks), fixed at pack time.
# rp_gemm quantizes or rounds each row of its left operand on its own, so neither pieces,
# chunks nor blocks change a result: results are the same for any n_threads, and the step
# (the loop on T = 1, all rows in one chunk, one thread) equals the forward bit for bit.
# Every thread has scratch of its own (a slot per projection thread, per batch chunk, per
# column thread), allocated before the threads start.

from reduced_gemm cimport (rp_columns, rp_current_level, rp_gemm, rp_gemm_prepared, rp_matrix,
                           rp_prepare, rp_prepared_bytes, rp_scratch_bytes)

from fastrnn._partition import MAX_PIECES, projection_workspace_steps
from fastrnn._python.reduced import INT8_MAX_K
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError, StaleCacheError


# The float32 gate math of the steps, vectorised per ISA level with isa.h's tanh and sigmoid
# (the float kernels fuse it with their product; these run after rp_gemm): one pass per
# batch row over the units, a vector of the level at a time.
cdef extern from *:
    """
    #include "isa.h"
    #define RL_UNITS(P, u, H) (int)((H) - (u) < P##_UNITS ? (H) - (u) : P##_UNITS)
    /* the LSTM's gate math on units u .. u+w-1 of one row */
    #define RL_LSTM_UNITS(P, zr, cp, ct, mt, H, u, w)                                       \
        do {                                                                            \
            P##_vf i_ = P##_sigmoid(P##_load(zr + u, w));                               \
            P##_vf f_ = P##_sigmoid(P##_load(zr + H + u, w));                           \
            P##_vf g_ = P##_tanh(P##_load(zr + 2 * H + u, w));                          \
            P##_vf o_ = P##_sigmoid(P##_load(zr + 3 * H + u, w));                       \
            P##_vf c_ = f_ * P##_load(cp + u, w) + i_ * g_;                             \
            P##_store(zr + u, i_, w);                                                   \
            P##_store(zr + H + u, f_, w);                                               \
            P##_store(zr + 2 * H + u, g_, w);                                           \
            P##_store(zr + 3 * H + u, o_, w);                                           \
            P##_store(ct + u, c_, w);                                                   \
            P##_store(mt + u, o_ * P##_tanh(c_), w);                                    \
        } while (0)
    /* the GRU's (reset_after) gate math on units u .. u+w-1 of one row */
    #define RL_GRU_AFTER_UNITS(P, ghr, b_hn, hr, gr, yr, H, u, w)                          \
        do {                                                                            \
            P##_vf r_ = P##_sigmoid(P##_load(gr + u, w) + P##_load(ghr + u, w));        \
            P##_vf z_ = P##_sigmoid(P##_load(gr + H + u, w) + P##_load(ghr + H + u, w)); \
            P##_vf hn = P##_load(ghr + 2 * H + u, w) + P##_load(b_hn + u, w);           \
            P##_vf n_ = P##_tanh(P##_load(gr + 2 * H + u, w) + r_ * hn);                \
            P##_vf y_ = ((P##_vf){0} + 1.0f - z_) * n_ + z_ * P##_load(hr + u, w);      \
            P##_store(gr + u, r_, w);                                                   \
            P##_store(gr + H + u, z_, w);                                               \
            P##_store(gr + 2 * H + u, n_, w);                                           \
            P##_store(gr + 3 * H + u, hn, w);                                           \
            P##_store(yr + u, y_, w);                                                   \
        } while (0)
    /* the GRU's (reset_after=False) two passes on units u .. u+w-1 of one row */
    #define RL_GRU_RZ_UNITS(P, ghr, hr, gr, rhr, H, u, w)                                  \
        do {                                                                            \
            P##_vf r_ = P##_sigmoid(P##_load(gr + u, w) + P##_load(ghr + u, w));        \
            P##_vf z_ = P##_sigmoid(P##_load(gr + H + u, w) + P##_load(ghr + H + u, w)); \
            P##_store(gr + u, r_, w);                                                   \
            P##_store(gr + H + u, z_, w);                                               \
            P##_store(rhr + u, r_ * P##_load(hr + u, w), w);                            \
        } while (0)
    #define RL_GRU_N_UNITS(P, ghnr, b_hn, hr, gr, yr, H, u, w)                             \
        do {                                                                            \
            P##_vf hn = P##_load(ghnr + u, w) + P##_load(b_hn + u, w);                  \
            P##_vf n_ = P##_tanh(P##_load(gr + 2 * H + u, w) + hn);                     \
            P##_vf z_ = P##_load(gr + H + u, w);                                        \
            P##_vf y_ = ((P##_vf){0} + 1.0f - z_) * n_ + z_ * P##_load(hr + u, w);      \
            P##_store(gr + 2 * H + u, n_, w);                                           \
            P##_store(gr + 3 * H + u, hn, w);                                           \
            P##_store(yr + u, y_, w);                                                   \
        } while (0)
    #define RL_DEFINE_CELLS(P, ATTR)                                                        \
    /* LSTM: z (rows, 4H) pre-activations in, [i, f, g, o] out; c_t (may be c_prev), m_t. \
       Two vectors of units per pass: two independent chains of latency to overlap */   \
    ATTR static void P##_rl_lstm(ptrdiff_t rows, ptrdiff_t H, float *z, const float *c_prev, \
                                 float *c_t, float *m_t)                                \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            float *zr = z + r * 4 * H, *ct = c_t + r * H, *mt = m_t + r * H;            \
            const float *cp = c_prev + r * H;                                           \
            ptrdiff_t u = 0;                                                            \
            for (; u + 2 * P##_UNITS <= H; u += 2 * P##_UNITS) {                        \
                RL_LSTM_UNITS(P, zr, cp, ct, mt, H, u, P##_UNITS);                      \
                RL_LSTM_UNITS(P, zr, cp, ct, mt, H, u + P##_UNITS, P##_UNITS);          \
            }                                                                           \
            for (; u < H; u += P##_UNITS)                                               \
                RL_LSTM_UNITS(P, zr, cp, ct, mt, H, u, RL_UNITS(P, u, H));              \
        }                                                                               \
    }                                                                                   \
    /* GRU, reset_after: gh (rows, 3H) = h W_hh^T; g (rows, 4H) projection in, [r, z, n, hn] out; \
       two vectors of units per pass, as the LSTM */                                    \
    ATTR static void P##_rl_gru_after(ptrdiff_t rows, ptrdiff_t H, const float *gh,     \
                                      const float *b_hn, const float *h, float *g, float *y_t) \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            const float *ghr = gh + r * 3 * H, *hr = h + r * H;                         \
            float *gr = g + r * 4 * H, *yr = y_t + r * H;                               \
            ptrdiff_t u = 0;                                                            \
            for (; u + 2 * P##_UNITS <= H; u += 2 * P##_UNITS) {                        \
                RL_GRU_AFTER_UNITS(P, ghr, b_hn, hr, gr, yr, H, u, P##_UNITS);          \
                RL_GRU_AFTER_UNITS(P, ghr, b_hn, hr, gr, yr, H, u + P##_UNITS, P##_UNITS); \
            }                                                                           \
            for (; u < H; u += P##_UNITS)                                               \
                RL_GRU_AFTER_UNITS(P, ghr, b_hn, hr, gr, yr, H, u, RL_UNITS(P, u, H));  \
        }                                                                               \
    }                                                                                   \
    /* GRU, reset_after=False, first pass: gh (rows, 2H) = h [W_hr; W_hz]^T; r, z into g, r*h */ \
    ATTR static void P##_rl_gru_rz(ptrdiff_t rows, ptrdiff_t H, const float *gh,        \
                                   const float *h, float *g, float *rh)                 \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            const float *ghr = gh + r * 2 * H, *hr = h + r * H;                         \
            float *gr = g + r * 4 * H, *rhr = rh + r * H;                               \
            ptrdiff_t u = 0;                                                            \
            for (; u + 2 * P##_UNITS <= H; u += 2 * P##_UNITS) {                        \
                RL_GRU_RZ_UNITS(P, ghr, hr, gr, rhr, H, u, P##_UNITS);                  \
                RL_GRU_RZ_UNITS(P, ghr, hr, gr, rhr, H, u + P##_UNITS, P##_UNITS);      \
            }                                                                           \
            for (; u < H; u += P##_UNITS)                                               \
                RL_GRU_RZ_UNITS(P, ghr, hr, gr, rhr, H, u, RL_UNITS(P, u, H));          \
        }                                                                               \
    }                                                                                   \
    /* GRU, reset_after=False, second pass: ghn (rows, H) = (r * h) W_hn^T */             \
    ATTR static void P##_rl_gru_n(ptrdiff_t rows, ptrdiff_t H, const float *ghn,        \
                                  const float *b_hn, const float *h, float *g, float *y_t) \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            const float *ghnr = ghn + r * H, *hr = h + r * H;                           \
            float *gr = g + r * 4 * H, *yr = y_t + r * H;                               \
            ptrdiff_t u = 0;                                                            \
            for (; u + 2 * P##_UNITS <= H; u += 2 * P##_UNITS) {                        \
                RL_GRU_N_UNITS(P, ghnr, b_hn, hr, gr, yr, H, u, P##_UNITS);             \
                RL_GRU_N_UNITS(P, ghnr, b_hn, hr, gr, yr, H, u + P##_UNITS, P##_UNITS); \
            }                                                                           \
            for (; u < H; u += P##_UNITS)                                               \
                RL_GRU_N_UNITS(P, ghnr, b_hn, hr, gr, yr, H, u, RL_UNITS(P, u, H));     \
        }                                                                               \
    }                                                                                   \
    /* the Elman activation tanh, in place over n values */                            \
    ATTR static void P##_rl_tanh(ptrdiff_t n, float *z)                                 \
    {                                                                                   \
        for (ptrdiff_t u = 0; u < n; u += P##_UNITS) {                                  \
            int w = RL_UNITS(P, u, n);                                                  \
            P##_store(z + u, P##_tanh(P##_load(z + u, w)), w);                          \
        }                                                                               \
    }
    RL_DEFINE_CELLS(pg_generic, PG_ATTR_generic)
    RL_DEFINE_CELLS(pg_avx2, PG_ATTR_avx2)
    RL_DEFINE_CELLS(pg_avx512, PG_ATTR_avx512)
    #define RL_DISPATCH(level, name, args)                                              \
        do {                                                                            \
            if ((level) == PG_LEVEL_AVX512) pg_avx512_##name args;                      \
            else if ((level) == PG_LEVEL_AVX2) pg_avx2_##name args;                     \
            else pg_generic_##name args;                                                \
        } while (0)
    static void rl_lstm(int level, ptrdiff_t rows, ptrdiff_t H, float *z, const float *c_prev,
                        float *c_t, float *m_t)
    { RL_DISPATCH(level, rl_lstm, (rows, H, z, c_prev, c_t, m_t)); }
    static void rl_gru_after(int level, ptrdiff_t rows, ptrdiff_t H, const float *gh,
                             const float *b_hn, const float *h, float *g, float *y_t)
    { RL_DISPATCH(level, rl_gru_after, (rows, H, gh, b_hn, h, g, y_t)); }
    static void rl_gru_rz(int level, ptrdiff_t rows, ptrdiff_t H, const float *gh, const float *h,
                          float *g, float *rh)
    { RL_DISPATCH(level, rl_gru_rz, (rows, H, gh, h, g, rh)); }
    static void rl_gru_n(int level, ptrdiff_t rows, ptrdiff_t H, const float *ghn,
                         const float *b_hn, const float *h, float *g, float *y_t)
    { RL_DISPATCH(level, rl_gru_n, (rows, H, ghn, b_hn, h, g, y_t)); }
    static void rl_tanh(int level, ptrdiff_t n, float *z)
    { RL_DISPATCH(level, rl_tanh, (n, z)); }
    """
    void rl_lstm(int level, Py_ssize_t rows, Py_ssize_t H, float* z, const float* c_prev,
                 float* c_t, float* m_t) nogil
    void rl_gru_after(int level, Py_ssize_t rows, Py_ssize_t H, const float* gh,
                      const float* b_hn, const float* h, float* g, float* y_t) nogil
    void rl_gru_rz(int level, Py_ssize_t rows, Py_ssize_t H, const float* gh, const float* h,
                   float* g, float* rh) nogil
    void rl_gru_n(int level, Py_ssize_t rows, Py_ssize_t H, const float* ghn, const float* b_hn,
                  const float* h, float* g, float* y_t) nogil
    void rl_tanh(int level, Py_ssize_t n, float* z) nogil


cdef enum:
    RK_RNN = 0
    RK_LSTM = 1
    RK_LSTM_PROJ = 2
    RK_GRU = 3
    RK_ALIGN = 64              # bytes: alignment of every scratch slot, and slack past the end
    RK_BLOCK_WORK = 65536      # weights of a product of the steps worth a block of its own

_REDUCED_CELLS = {"rnn": RK_RNN, "lstm": RK_LSTM, "lstm_proj": RK_LSTM_PROJ, "gru": RK_GRU}
_REDUCED_GATES = (1, 4, 4, 3)  # gate blocks per cell (the rows of W_ih are gates * H)


cdef struct _RBlocks:
    # a weight matrix of the steps as blocks of its rows, packed apart, so that threads can
    # share the columns of a product (rp_gemm quantizes A by rows, whatever the block)
    Py_ssize_t count
    const rp_matrix* m         # count blocks
    const Py_ssize_t* row0     # count + 1 first rows


cdef struct _RCell:
    # what the nogil loops read of a ReducedLayer
    int kind                   # RK_*
    int isa                    # the float32 ISA level (isa.h) of the gate math
    bint flag                  # relu (RNN), reset_after (GRU)
    Py_ssize_t D, H, P         # inputs, hidden units, state width (P = H without projection)
    Py_ssize_t W               # columns of a workspace row: H (RNN: the projection lives in y), else 4H
    const rp_matrix* w_ih      # (G*H, D)
    _RBlocks hh                # W_hh (G*H, P); the GRU with reset_after=False: [W_hr; W_hz] (2H, H)
    _RBlocks hx                # W_hr (P, H) of lstm_proj, W_hn (H, H) of that GRU; else no block
    const float* bias          # (G*H,)
    const float* b_hn          # (H,) for the GRU; else NULL
    # packed with backward=True (bf16): the transposed weights of the backward's products
    const rp_matrix* t_ih      # W_ih^T (D, G*H): dx = dz W_ih; else NULL
    _RBlocks t_hh              # W_hh^T (P, G*H) in column blocks; the GRU with
                               # reset_after=False: [W_hr; W_hz]^T (H, 2H)
    _RBlocks t_hx              # W_hr^T (H, P) of lstm_proj, W_hn^T (H, H) of that GRU


cdef inline Py_ssize_t _aligned(Py_ssize_t n) noexcept nogil:
    return (n + RK_ALIGN - 1) // RK_ALIGN * RK_ALIGN


cdef inline void _rgemm(const rp_matrix* m, Py_ssize_t rows, const float* a, Py_ssize_t lda,
                        const float* bias, float* c, Py_ssize_t ldc, void* scratch) noexcept nogil:
    """rp_gemm, with the empty cases kept out of the kernels: K = 0 sums nothing (the
    reference's product is then 0, and ``bias + 0`` is the bias)."""
    cdef Py_ssize_t r
    if rows <= 0 or m.n == 0:
        return
    if m.k == 0:
        if bias != NULL:
            for r in range(rows):
                memcpy(c + r * ldc, bias, m.n * sizeof(float))
        return
    rp_gemm(m, rows, a, lda, bias, c, ldc, scratch)


cdef void _rblocks(const _RBlocks* W, Py_ssize_t rows, const float* a, Py_ssize_t lda, float* c,
                   Py_ssize_t ldc, char* scratch, Py_ssize_t slot_bytes, int threads) noexcept nogil:
    """``c += a W^T``, a block of W's rows at a time, ``a`` rounded or quantized once (into the
    first scratch slot) for all blocks; with ``threads > 1`` threads share the blocks. Every
    element is computed the same way by whichever thread."""
    cdef Py_ssize_t b
    if W.count == 1 or rows <= 0 or W.m[0].k == 0:
        for b in range(W.count):
            _rgemm(&W.m[b], rows, a, lda, NULL, c + W.row0[b], ldc, scratch)
        return
    rp_prepare(&W.m[0], rows, a, lda, scratch)
    if threads <= 1:
        for b in range(W.count):
            rp_gemm_prepared(&W.m[b], rows, scratch, NULL, c + W.row0[b], ldc)
        return
    for b in prange(W.count, num_threads=threads, schedule='static'):
        rp_gemm_prepared(&W.m[b], rows, scratch, NULL, c + W.row0[b], ldc)


cdef void _reduced_loop(const _RCell* L, Py_ssize_t T, Py_ssize_t B, Py_ssize_t b0,
                        Py_ssize_t b1, const float* h0, const float* c0, float* y, float* h_n,
                        float* c_n, float* gates, float* c_all, float* m_all, float* work,
                        char* scratch, Py_ssize_t slot_bytes, int threads) noexcept nogil:
    """Time loop of batch rows ``b0:b1`` over ``T`` steps; ``gates`` (the RNN: ``y``) holds
    their input projection on entry, ``[i, f, g, o]`` / ``[r, z, n, hn]`` on exit.

    ``h0`` and ``c0`` are the state before the first step (whole batch). ``c_all`` and
    ``m_all`` are NULL when no step of them is kept: the running cell state then lives in
    the chunk's rows of ``c_n`` (which ``c0`` may be), ``m_t`` in ``work``. ``work`` holds
    ``4 * (b1 - b0) * H`` floats, ``scratch`` what rp_gemm needs on these rows (``threads``
    slots of ``slot_bytes``: the threads that share each product's columns); both are this
    chunk's alone.
    """
    cdef Py_ssize_t t, rows = b1 - b0, H = L.H, P = L.P, G = 4 * L.H
    cdef Py_ssize_t q, r0, r1
    cdef int kind = L.kind
    cdef bint gated = kind == RK_LSTM or kind == RK_LSTM_PROJ
    cdef const float* h = h0 + b0 * P
    cdef const float* c_prev = NULL
    cdef float* c_t = NULL
    cdef float* m_t = work
    cdef float* gh = work                    # GRU: the recurrent products of the step
    cdef float* ghn = work + rows * 2 * H    # reset_after=False: (r * h) W_hn^T
    cdef float* rh = work + rows * 3 * H     # reset_after=False: r * h
    cdef float* z
    cdef float* h_t
    if gated:
        c_prev = c0 + b0 * H
        c_t = c_n + b0 * H
        if c_all == NULL:
            if c_t != c_prev:
                memcpy(c_t, c_prev, rows * H * sizeof(float))
            c_prev = c_t
    for t in range(T):
        # the chunk's rows of gates[t], y[t] and h_{t-1} (h0 or y[t-1]) are contiguous blocks
        h_t = y + (t * B + b0) * P
        z = gates + (t * B + b0) * L.W
        if kind == RK_RNN:
            _rblocks(&L.hh, rows, h, H, h_t, H, scratch, slot_bytes, threads)   # projection + h_{t-1} W_hh^T
            if L.flag:
                _relu_inplace(h_t, rows * H)
            else:
                rl_tanh(L.isa, rows * H, h_t)
        elif kind == RK_GRU:
            if L.flag:  # reset_after: one product gives the r, z and n blocks
                memset(gh, 0, rows * 3 * H * sizeof(float))
                _rblocks(&L.hh, rows, h, H, gh, 3 * H, scratch, slot_bytes, threads)
                rl_gru_after(L.isa, rows, H, gh, L.b_hn, h, z, h_t)
            else:
                memset(gh, 0, rows * 2 * H * sizeof(float))
                _rblocks(&L.hh, rows, h, H, gh, 2 * H, scratch, slot_bytes, threads)
                rl_gru_rz(L.isa, rows, H, gh, h, z, rh)
                memset(ghn, 0, rows * H * sizeof(float))
                _rblocks(&L.hx, rows, rh, H, ghn, H, scratch, slot_bytes, threads)
                rl_gru_n(L.isa, rows, H, ghn, L.b_hn, h, z, h_t)
        else:
            if c_all != NULL:
                c_t = c_all + (t * B + b0) * H
            if kind == RK_LSTM:
                m_t = h_t
            elif m_all != NULL:
                m_t = m_all + (t * B + b0) * H
            _rblocks(&L.hh, rows, h, P, z, G, scratch, slot_bytes, threads)     # z += h_{t-1} W_hh^T
            if threads <= 1:
                rl_lstm(L.isa, rows, H, z, c_prev, c_t, m_t)
            else:  # the threads sharing the products share the rows of the gate math too
                for q in prange(threads, num_threads=threads, schedule='static'):
                    r0 = rows * q // threads
                    r1 = rows * (q + 1) // threads
                    rl_lstm(L.isa, r1 - r0, H, z + r0 * G, c_prev + r0 * H, c_t + r0 * H,
                            m_t + r0 * H)
            if kind == RK_LSTM_PROJ:
                memset(h_t, 0, rows * P * sizeof(float))
                _rblocks(&L.hx, rows, m_t, H, h_t, P, scratch, slot_bytes, threads)  # h_t = m_t W_hr^T
            c_prev = c_t
        h = h_t
    if h_n + b0 * P != h:
        memcpy(h_n + b0 * P, h, rows * P * sizeof(float))
    if gated and c_all != NULL:
        memcpy(c_n + b0 * H, c_prev, rows * H * sizeof(float))


cdef void _reduced_project(const _RCell* L, const float* x, float* out, Py_ssize_t rows,
                           char* slots, Py_ssize_t slot_bytes) noexcept nogil:
    """``out = x W_ih^T + bias`` on ``rows`` rows (one piece), in the scratch slot of the
    calling thread."""
    _rgemm(L.w_ih, rows, x, L.D, L.bias, out, L.W,
           slots + openmp_shim.omp_get_thread_num() * slot_bytes)


cdef class ReducedLayer:
    """One layer's weights packed once in bf16 or int8, for the reduced-precision forward
    kernels (``*_forward_reduced``) and :meth:`step`; made by :func:`pack_reduced`.

    Attributes
    ----------
    cell : str
    precision : {"bf16", "int8"}
    D, H, P : int
        Input size, hidden size, state width (P = H without projection).
    flag : bool
        ``relu`` for the RNN, ``reset_after`` for the GRU.
    backward : bool
        Packed for the backward kernels too (``*_backward_reduced``, bf16 training).
    """

    cdef _RCell c
    cdef readonly object cell, precision
    cdef readonly Py_ssize_t D, H, P
    cdef readonly bint flag, backward
    cdef int isa                     # the float32 ISA level (isa.h) when it was packed
    cdef object _matrices            # the PackedMatrix objects the struct points into
    cdef object _blocks              # the arrays of the _RBlocks
    cdef object _bias, _b_hn

    def __init__(self, str cell, str precision, dict matrices, bias, b_hn, Py_ssize_t D,
                 Py_ssize_t H, Py_ssize_t P, bint flag, bint backward=False):
        cdef PackedMatrix w_ih = matrices["w_ih"]
        cdef PackedMatrix t_ih
        cdef const float[::1] bv = bias
        cdef const float[::1] bnv
        self.cell, self.precision, self.D, self.H, self.P, self.flag = cell, precision, D, H, P, flag
        self.isa = pg_get_level()
        self._matrices, self._bias, self._b_hn = matrices, bias, b_hn
        self.c.kind = _REDUCED_CELLS[cell]
        self.c.isa = self.isa
        self.c.flag = flag
        self.c.D, self.c.H, self.c.P = D, H, P
        self.c.W = H if self.c.kind == RK_RNN else 4 * H
        self.c.w_ih = &w_ih.m
        self._blocks = [self._set_blocks(&self.c.hh, matrices["w_hh"]),
                        self._set_blocks(&self.c.hx, matrices.get("w_x", []))]
        self.backward = backward
        self.c.t_ih = NULL
        self._blocks += [self._set_blocks(&self.c.t_hh, matrices.get("t_hh", [])),
                         self._set_blocks(&self.c.t_hx, matrices.get("t_hx", []))]
        if backward:
            t_ih = matrices["t_ih"]
            self.c.t_ih = &t_ih.m
        self.c.bias = &bv[0] if bv.shape[0] else NULL
        self.c.b_hn = NULL
        if b_hn is not None:
            bnv = b_hn
            self.c.b_hn = &bnv[0] if bnv.shape[0] else NULL

    cdef object _set_blocks(self, _RBlocks* blocks, list matrices):
        """Point ``blocks`` at the row blocks ``matrices`` (PackedMatrix, or (PackedMatrix,
        j0, j1): its columns j0:j1, rp_columns); returns the arrays it points into."""
        cdef Py_ssize_t i, count = len(matrices)
        structs = np.zeros(max(count, 1) * sizeof(rp_matrix), np.uint8)
        row0 = np.zeros(count + 1, np.intp)
        cdef unsigned char[::1] sv = structs
        cdef Py_ssize_t[::1] rv = row0
        cdef rp_matrix* m = <rp_matrix*>&sv[0]
        for i in range(count):
            if isinstance(matrices[i], tuple):
                m[i] = rp_columns(&(<PackedMatrix>matrices[i][0]).m, matrices[i][1],
                                  matrices[i][2] - matrices[i][1])
            else:
                m[i] = (<PackedMatrix>matrices[i]).m
            rv[i + 1] = rv[i] + m[i].n
        blocks.count = count
        blocks.m = m
        blocks.row0 = &rv[0]
        return structs, row0

    cdef Py_ssize_t backward_step_bytes(self, Py_ssize_t rows):
        """Bytes of rp_gemm's scratch for a product of the backward's steps on ``rows`` rows."""
        cdef Py_ssize_t b, s = 0
        cdef const rp_matrix* m
        for b in range(self.c.t_hh.count + self.c.t_hx.count):
            m = &self.c.t_hh.m[b] if b < self.c.t_hh.count else &self.c.t_hx.m[b - self.c.t_hh.count]
            s = max(s, rp_scratch_bytes(m.precision, m.level, rows, m.k),
                    rp_prepared_bytes(m.precision, m.level, rows, m.k))
        return _aligned(s)

    @property
    def level(self):
        """str: the reduced kernel level the weights were packed for (``reduced_gemm.h``)."""
        return rp_level_name(self.c.w_ih.precision, self.c.w_ih.level).decode()

    @property
    def nbytes(self):
        """int: bytes of the packed weights (the backward's transposes too), their scales and
        the biases."""
        total = self._bias.nbytes + (self._b_hn.nbytes if self._b_hn is not None else 0)
        packed = {}  # column blocks share one PackedMatrix
        for value in self._matrices.values():
            for m in (value if isinstance(value, list) else [value]):
                m = m[0] if isinstance(m, tuple) else m
                packed[id(m)] = m.nbytes
        return total + sum(packed.values())

    cpdef check_level(self):
        """Raise StaleCacheError unless the ISA level that packed these weights runs now."""
        if pg_get_level() != self.isa or rp_current_level(self.c.w_ih.precision) != self.c.w_ih.level:
            raise StaleCacheError(
                f"these {self.precision} weights were packed for the "
                f"{pg_level_name(self.isa).decode()} kernels, and the "
                f"{pg_level_name(pg_get_level()).decode()} kernels run now "
                "(fastrnn._cy.set_isa_level): pack them again")

    cdef Py_ssize_t project_bytes(self, Py_ssize_t rows):
        """Bytes of one thread's scratch slot for a projection piece of ``rows`` rows."""
        return _aligned(rp_scratch_bytes(self.c.w_ih.precision, self.c.w_ih.level, rows, self.D))

    cdef Py_ssize_t step_bytes(self, Py_ssize_t rows):
        """Bytes of rp_gemm's scratch for a product of the steps on ``rows`` rows (one thread)."""
        cdef Py_ssize_t b, s = 0
        cdef const rp_matrix* m
        for b in range(self.c.hh.count + self.c.hx.count):
            m = &self.c.hh.m[b] if b < self.c.hh.count else &self.c.hx.m[b - self.c.hh.count]
            s = max(s, rp_scratch_bytes(m.precision, m.level, rows, m.k),
                    rp_prepared_bytes(m.precision, m.level, rows, m.k))
        return _aligned(s)

    cdef Py_ssize_t chunk_bytes(self, Py_ssize_t rows, int threads):
        """Bytes of a batch chunk's slot (``rows`` rows): float work, then rp_gemm's scratch
        for each of ``threads`` threads."""
        return _aligned(rows * 4 * self.H * sizeof(float)) + threads * self.step_bytes(rows)

    def step(self, x, h, c, h_out, c_out):
        """Run one step: ``h_out`` (and ``c_out``) from ``x`` (B, D), ``h`` (B, P) and ``c`` (B, H).

        ``c`` and ``c_out`` are None for the RNN and the GRU; ``c_out`` may be ``c``. float32
        only. Raises ValueError, before writing anything, when an array does not fit, and
        StaleCacheError under another ISA level. Equal bit for bit to the forward kernel on
        one step.
        """
        cdef _CallArrays calls = _CallArrays()
        cdef Py_ssize_t B, D = self.D, H = self.H, P = self.P
        cdef bint gated = self.c.kind == RK_LSTM or self.c.kind == RK_LSTM_PROJ
        self.check_level()
        cdef char* x_p = calls.take(x, False, True, -1, D)
        B = calls.views[0].shape[0]
        cdef char* h_p = calls.take(h, False, True, B, P)
        cdef char* c_p = NULL
        if gated:
            c_p = calls.take(c, False, True, B, H)
        cdef char* h_out_p = calls.take(h_out, True, True, B, P)
        cdef char* c_out_p = NULL
        if gated:
            c_out_p = calls.take(c_out, True, True, B, H)
        calls.check_disjoint(3 if gated else 2)
        if B == 0 or H == 0:
            return
        # workspace: the gates (not the RNN's: h_out takes its projection), the loop's work,
        # then rp_gemm's scratch; on the stack when small
        cdef Py_ssize_t gate_bytes = 0 if self.c.kind == RK_RNN else _aligned(B * self.c.W * sizeof(float))
        cdef Py_ssize_t work_bytes = _aligned(B * 4 * H * sizeof(float))
        cdef Py_ssize_t scratch_bytes = max(self.project_bytes(B), self.step_bytes(B))
        cdef size_t need = gate_bytes + work_bytes + scratch_bytes + 2 * RK_ALIGN
        cdef double stack[STEP_STACK_DOUBLES]
        cdef char* block = <char*>stack
        cdef char* base
        if need > STEP_STACK:
            block = <char*>malloc(need)
            if block == NULL:
                raise MemoryError()
        base = <char*>_aligned(<size_t>block)
        try:
            with nogil:
                _reduced_step(&self.c, <const float*>x_p, <const float*>h_p, <const float*>c_p,
                              <float*>h_out_p, <float*>c_out_p, <float*>base,
                              <float*>(base + gate_bytes), base + gate_bytes + work_bytes, B)
        finally:
            if block != <char*>stack:
                free(block)


cdef void _reduced_step(const _RCell* L, const float* x, const float* h, const float* c,
                        float* h_out, float* c_out, float* gates, float* work, void* scratch,
                        Py_ssize_t B) noexcept nogil:
    """The forward kernel's step on T = 1, all rows in one chunk: the projection (the RNN's
    into ``h_out``), then the loop."""
    if L.kind == RK_RNN:
        gates = h_out
    _rgemm(L.w_ih, B, x, L.D, L.bias, gates, L.W, scratch)
    _reduced_loop(L, 1, B, 0, B, h, c, h_out, h_out, c_out, gates, NULL, NULL, work,
                  <char*>scratch, 0, 1)


def pack_reduced(str cell, str precision, w_ih, w_hh, bias, *, w_hr=None, b_hn=None,
                 bint flag=False, bint backward=False):
    """A layer's weights rounded to bf16 or quantized to int8 once, for the reduced-precision
    kernels: the arguments of :func:`pack_layer`, float32 only.

    Parameters
    ----------
    cell : {"rnn", "lstm", "lstm_proj", "gru"}
    precision : {"bf16", "int8"}
    w_ih : ndarray of float32 of shape (G*H, D)
        G gate blocks: 1 (RNN), 4 (LSTM), 3 (GRU).
    w_hh : ndarray of float32 of shape (G*H, P)
        P = H, or the projection size for ``"lstm_proj"`` (the RNN's is (H, H)).
    bias : ndarray of float32 of shape (G*H,)
        ``b_ih + b_hh`` (the GRU: ``bias_x``); copied.
    w_hr : ndarray of float32 of shape (P, H), optional
        The projection (``"lstm_proj"`` only).
    b_hn : ndarray of float32 of shape (H,), optional
        The GRU's ``b_hh_n`` (the GRU only, required there); copied.
    flag : bool
        ``relu`` for the RNN, ``reset_after`` for the GRU.
    backward : bool
        Also pack what the backward kernels (``*_backward_reduced``, bf16 training) need: the
        weights' transposes in bf16 (W_ih^T for ``dx = dz W_ih``, W_hh^T, W_hr^T). bf16 only.

    Returns
    -------
    ReducedLayer

    Raises
    ------
    ArgumentError
        For an unknown cell or precision, a missing or extra ``w_hr``/``b_hn``, an int8
        reduction longer than ``INT8_MAX_K``, or ``backward=True`` with int8.
    DTypeError
        For an array that is not float32.
    ShapeError
        For arrays whose shapes do not fit together.
    """
    if cell not in _REDUCED_CELLS:
        raise ArgumentError(f"cell must be one of {', '.join(map(repr, _REDUCED_CELLS))}; got {cell!r}")
    if precision not in REDUCED_PRECISIONS:
        raise ArgumentError(f"precision must be 'bf16' or 'int8'; got {precision!r}")
    if backward and precision != "bf16":
        raise ArgumentError(f"backward=True needs precision 'bf16' (a backward pass runs in bf16); "
                            f"got {precision!r}")
    arrays = {"w_ih": w_ih, "w_hh": w_hh, "bias": bias, "w_hr": w_hr, "b_hn": b_hn}
    if (w_hr is not None) != (cell == "lstm_proj"):
        raise ArgumentError(f"w_hr is {'required' if cell == 'lstm_proj' else 'not taken'} "
                            f"for cell {cell!r}")
    if (b_hn is not None) != (cell == "gru"):
        raise ArgumentError(f"b_hn is {'required' if cell == 'gru' else 'not taken'} for cell {cell!r}")
    for name, array in arrays.items():
        if array is None:
            continue
        dtype = getattr(array, "dtype", None)
        if dtype != np.float32:
            raise DTypeError(f"{name} must be a float32 ndarray; got {dtype or type(array).__name__}")
        if array.ndim != (1 if name in ("bias", "b_hn") else 2):
            raise ShapeError(f"{name} must have {1 if name in ('bias', 'b_hn') else 2} dimensions; "
                             f"got shape {array.shape}")
    gates = _REDUCED_GATES[_REDUCED_CELLS[cell]]
    if cell == "rnn":
        H = P = w_hh.shape[0]
    elif cell == "lstm_proj":
        P, H = w_hr.shape
    else:
        H = P = w_hh.shape[1]
    D = w_ih.shape[1]
    expected = {"w_ih": (gates * H, D), "w_hh": (gates * H, P), "bias": (gates * H,),
                "w_hr": (P, H), "b_hn": (H,)}
    for name, array in arrays.items():
        if array is not None and array.shape != expected[name]:
            raise ShapeError(f"{name} must have shape {expected[name]} for this {cell} layer "
                             f"(D={D}, H={H}{f', P={P}' if cell == 'lstm_proj' else ''}); "
                             f"got {array.shape}")
    if precision == "int8" and max(D, H, P) > INT8_MAX_K:
        raise ArgumentError(f"int8 products sum at most {INT8_MAX_K} terms; this layer has "
                            f"D={D}, H={H}, P={P}")
    matrices = {"w_ih": PackedMatrix(precision, w_ih)}
    if cell == "gru" and not flag:  # the n rows multiply r * h, not h: a product of their own
        matrices["w_hh"] = _row_blocks(precision, w_hh[:2 * H])
        matrices["w_x"] = _row_blocks(precision, w_hh[2 * H:])
    else:
        matrices["w_hh"] = _row_blocks(precision, w_hh)
        if cell == "lstm_proj":
            matrices["w_x"] = _row_blocks(precision, w_hr)
    if backward:  # dz W = dz (W^T)^T: W^T packed from W itself
        matrices["t_ih"] = PackedMatrix(precision, w_ih, transposed=True)
        if cell == "gru" and not flag:
            matrices["t_hh"] = _column_blocks(w_hh[:2 * H])
            matrices["t_hx"] = _column_blocks(w_hh[2 * H:])
        else:
            matrices["t_hh"] = _column_blocks(w_hh)
            if cell == "lstm_proj":
                matrices["t_hx"] = _column_blocks(w_hr)
    return ReducedLayer(cell, precision, matrices, np.array(bias, dtype=np.float32),
                        None if b_hn is None else np.array(b_hn, dtype=np.float32), D, H, P, flag,
                        backward)


def _column_blocks(w):
    """``w^T`` packed in bf16 once (from ``w``), as blocks of its output columns of 64-column
    multiples (a list of (PackedMatrix, j0, j1)), whose products threads can share."""
    N, K = w.shape[1], w.shape[0]
    whole = PackedMatrix("bf16", w, transposed=True)
    count = max(1, min(MAX_PIECES, N * K // RK_BLOCK_WORK, N // 64))
    bounds = [N * i // count // 64 * 64 for i in range(count)] + [N]
    return [(whole, a, b) for a, b in zip(bounds, bounds[1:])]


def _row_blocks(str precision, w):
    """A weight of the steps packed as blocks of its rows (a list of PackedMatrix): several
    blocks of 64-row multiples for a large product, whose columns threads can then share."""
    N, K = w.shape
    count = max(1, min(MAX_PIECES, N * K // RK_BLOCK_WORK, N // 64))
    bounds = [N * i // count // 64 * 64 for i in range(count)] + [N]
    return [PackedMatrix(precision, w[a:b]) for a, b in zip(bounds, bounds[1:])]


# ---- the forward kernels

cdef _reduced_check(ReducedLayer layer, int kind, x, dict arrays, Py_ssize_t gates_steps):
    """ValueError (ShapeError) unless ``layer`` is of cell ``kind`` and ``arrays`` (name: (array,
    expected shape)) fit ``x``; StaleCacheError under another ISA level."""
    layer.check_level()
    if layer.c.kind != kind:
        raise ArgumentError(f"these weights are packed for cell {layer.cell!r}")
    for name, (array, shape) in arrays.items():
        given = tuple(array.shape)
        if given != shape and not (name in ("c_all", "m_all") and given == (0,) + shape[1:]):
            raise ShapeError(f"{name} must have shape {shape}"
                             f"{' or ' + str((0,) + shape[1:]) if name in ('c_all', 'm_all') else ''}; "
                             f"got {given}")
    T, B = x.shape[0], x.shape[1]
    if gates_steps >= 0 and gates_steps < T and gates_steps < projection_workspace_steps(
            T, B, layer.D, layer.c.W, False):
        raise ShapeError(f"gates must hold {T} steps, or at least one block's "
                         f"({projection_workspace_steps(T, B, layer.D, layer.c.W, False)}); "
                         f"got {gates_steps}")


cdef int _reduced_forward(ReducedLayer layer, const float[:, :, ::1] x, const float[:, ::1] h0,
                          const float[:, ::1] c0, float[:, :, ::1] y, float[:, ::1] h_n,
                          float[:, ::1] c_n, float[:, :, ::1] gates, float[:, :, ::1] c_all,
                          float[:, :, ::1] m_all, int n_threads) except -1:
    """The forward of every cell (arguments checked): the projection per piece of steps, then
    each block's steps on the batch chunks."""
    cdef const _RCell* L = &layer.c
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = layer.H, P = layer.P
    cdef Py_ssize_t W = L.W
    cdef bint rnn = L.kind == RK_RNN
    if B == 0:
        return 0
    cdef Py_ssize_t[::1] pieces, spans
    cdef bint shared
    if rnn:  # all steps projected into y at once, as rnn.pxi does
        pieces = time_blocks(T, B, D * H)
        spans = np.array([0, pieces.shape[0] - 1], dtype=np.intp)
        shared = True
    else:
        pieces, spans, shared = projection_spans(T, B, D, W, gates.shape[0])
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, _REDUCED_GATES[L.kind])
    cdef Py_ssize_t k, s, p0, p1, t0, t1, n_chunks = chunks.shape[0] - 1
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    # no batch to cut: large layers share each product's blocks of columns instead
    cdef int column_threads = 1
    if n_chunks == 1 and step_column_threads(B, H, _REDUCED_GATES[L.kind], n_threads) > 1:
        column_threads = _threads_for(n_threads, max(L.hh.count, L.hx.count))
    cdef Py_ssize_t step_slot = layer.step_bytes(B if n_chunks == 1 else 0)
    cdef int project_threads, slots = 1
    # scratch: one slot per projection thread, then one per batch chunk
    cdef Py_ssize_t piece_rows = 0, slot_bytes
    for s in range(spans.shape[0] - 1):
        if shared:
            slots = max(slots, _threads_for(n_threads, spans[s + 1] - spans[s]))
    for k in range(pieces.shape[0] - 1):
        piece_rows = max(piece_rows, (pieces[k + 1] - pieces[k]) * B)
    slot_bytes = layer.project_bytes(piece_rows)
    cdef Py_ssize_t[::1] chunk_at = np.zeros(n_chunks + 1, dtype=np.intp)
    chunk_at[0] = slots * slot_bytes
    for k in range(n_chunks):
        chunk_at[k + 1] = chunk_at[k] + layer.chunk_bytes(chunks[k + 1] - chunks[k], column_threads)
    buffer = np.empty(chunk_at[n_chunks] + 2 * RK_ALIGN, dtype=np.uint8)
    cdef unsigned char[::1] buffer_v = buffer
    cdef char* base = <char*>_aligned(<size_t>&buffer_v[0])
    cdef const float* x_p = &x[0, 0, 0]
    cdef const float* h0_p = &h0[0, 0]
    cdef const float* c0_p = NULL
    cdef float* y_p = &y[0, 0, 0]
    cdef float* h_n_p = &h_n[0, 0]
    cdef float* c_n_p = NULL
    cdef float* gates_p = y_p if rnn else &gates[0, 0, 0]
    cdef float* c_all_p = NULL
    cdef float* m_all_p = NULL
    cdef const float* h_prev
    cdef const float* c_prev = NULL
    cdef float* cells
    cdef float* ms
    if c0 is not None:
        c0_p = &c0[0, 0]
        c_n_p = &c_n[0, 0]
        if c_all.shape[0] == T and T > 0:
            c_all_p = &c_all[0, 0, 0]
    if m_all is not None and m_all.shape[0] == T and T > 0:
        m_all_p = &m_all[0, 0, 0]
    with nogil:
        for s in range(spans.shape[0] - 1):  # one span of all steps, or one per block (inference)
            p0 = spans[s]
            p1 = spans[s + 1]
            t0 = pieces[p0]
            t1 = pieces[p1]
            project_threads = _threads_for(n_threads, p1 - p0) if shared else 1
            # 1. input projection of the span's steps, one piece each; gates[0] holds step t0
            for k in prange(p0, p1, num_threads=project_threads, schedule='static'):
                _reduced_project(L, x_p + pieces[k] * B * D,
                                 gates_p + (pieces[k] - (0 if rnn else t0)) * B * W,
                                 (pieces[k + 1] - pieces[k]) * B, base, slot_bytes)
            if rnn:  # the steps of every span, after all the projection
                t0 = 0
                t1 = T
            # 2. the recurrence over them, one batch chunk each; between spans the state is
            # y[t0 - 1] and the cell state c_all[t0 - 1], or c_n where it runs (inference)
            h_prev = h0_p if t0 == 0 else y_p + (t0 - 1) * B * P
            if c0_p != NULL:
                c_prev = c0_p if t0 == 0 else (c_all_p + (t0 - 1) * B * H if c_all_p != NULL
                                               else c_n_p)
            cells = c_all_p + t0 * B * H if c_all_p != NULL else NULL
            ms = m_all_p + t0 * B * H if m_all_p != NULL else NULL
            if n_chunks == 1:
                _reduced_loop(L, t1 - t0, B, 0, B, h_prev, c_prev, y_p + t0 * B * P, h_n_p,
                              c_n_p, gates_p, cells, ms, <float*>(base + chunk_at[0]),
                              base + chunk_at[0] + _aligned(B * 4 * H * sizeof(float)),
                              step_slot, column_threads)
            else:
                for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                    _reduced_loop(L, t1 - t0, B, chunks[k], chunks[k + 1], h_prev, c_prev,
                                  y_p + t0 * B * P, h_n_p, c_n_p, gates_p,
                                  cells, ms, <float*>(base + chunk_at[k]),
                                  base + chunk_at[k] + _aligned(
                                      (chunks[k + 1] - chunks[k]) * 4 * H * sizeof(float)), 0, 1)
    return 0


def rnn_forward_reduced(const float[:, :, ::1] x, ReducedLayer layer, const float[:, ::1] h0,
                        float[:, :, ::1] y, float[:, ::1] h_n, int n_threads):
    """Elman forward on reduced-precision weights (``pack_reduced("rnn", ...)``); the other
    arguments as :func:`rnn_forward_packed` (float32). Equals
    :func:`fastrnn._python.rnn.rnn_forward` on :func:`~fastrnn._python.reduced.reduce_matrix`
    weights up to the float32 tanh; bit for bit the same for any ``n_threads``."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], P = layer.P
    _reduced_check(layer, RK_RNN, x, {"x": (x, (T, B, layer.D)), "h0": (h0, (B, P)),
                                      "y": (y, (T, B, P)), "h_n": (h_n, (B, P))}, -1)
    _reduced_forward(layer, x, h0, None, y, h_n, None, None, None, None, n_threads)


def lstm_forward_reduced(const float[:, :, ::1] x, ReducedLayer layer, const float[:, ::1] h0,
                         const float[:, ::1] c0, float[:, :, ::1] y, float[:, ::1] h_n,
                         float[:, ::1] c_n, float[:, :, ::1] gates, float[:, :, ::1] c_all,
                         int n_threads):
    """LSTM forward on reduced-precision weights (``pack_reduced("lstm", ...)``); the other
    arguments, workspaces included, as :func:`lstm_forward_packed` (float32)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], H = layer.H, P = layer.P
    _reduced_check(layer, RK_LSTM, x, {
        "x": (x, (T, B, layer.D)), "h0": (h0, (B, P)), "c0": (c0, (B, H)), "y": (y, (T, B, P)),
        "h_n": (h_n, (B, P)), "c_n": (c_n, (B, H)), "gates": (gates, (gates.shape[0], B, 4 * H)),
        "c_all": (c_all, (T, B, H))}, gates.shape[0])
    _reduced_forward(layer, x, h0, c0, y, h_n, c_n, gates, c_all, None, n_threads)


def lstm_proj_forward_reduced(const float[:, :, ::1] x, ReducedLayer layer,
                              const float[:, ::1] h0, const float[:, ::1] c0,
                              float[:, :, ::1] y, float[:, ::1] h_n, float[:, ::1] c_n,
                              float[:, :, ::1] gates, float[:, :, ::1] c_all,
                              float[:, :, ::1] m_all, int n_threads):
    """LSTM-with-projection forward on reduced-precision weights
    (``pack_reduced("lstm_proj", ...)``); the other arguments as
    :func:`lstm_proj_forward_packed` (float32): ``m_all`` of shape (T, B, H) or (0, B, H)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], H = layer.H, P = layer.P
    _reduced_check(layer, RK_LSTM_PROJ, x, {
        "x": (x, (T, B, layer.D)), "h0": (h0, (B, P)), "c0": (c0, (B, H)), "y": (y, (T, B, P)),
        "h_n": (h_n, (B, P)), "c_n": (c_n, (B, H)), "gates": (gates, (gates.shape[0], B, 4 * H)),
        "c_all": (c_all, (T, B, H)), "m_all": (m_all, (T, B, H))}, gates.shape[0])
    _reduced_forward(layer, x, h0, c0, y, h_n, c_n, gates, c_all, m_all, n_threads)


def gru_forward_reduced(const float[:, :, ::1] x, ReducedLayer layer, const float[:, ::1] h0,
                        float[:, :, ::1] y, float[:, ::1] h_n, float[:, :, ::1] gates,
                        int n_threads):
    """GRU forward on reduced-precision weights (``pack_reduced("gru", ..., flag=reset_after)``);
    the other arguments as :func:`gru_forward_packed` (float32): ``gates`` (T or S, B, 4H)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], H = layer.H
    _reduced_check(layer, RK_GRU, x, {
        "x": (x, (T, B, layer.D)), "h0": (h0, (B, H)), "y": (y, (T, B, H)), "h_n": (h_n, (B, H)),
        "gates": (gates, (gates.shape[0], B, 4 * H))}, gates.shape[0])
    _reduced_forward(layer, x, h0, None, y, h_n, None, gates, None, None, n_threads)
