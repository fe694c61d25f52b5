# The backward passes of the layers in bf16 (bf16 training), Cython backend; included by
# _cy.pyx after reduced_layers.pxi (ReducedLayer, _RCell, _rblocks, RL_UNITS/RL_DISPATCH).
#
# The steps, names and workspaces are those of the reference backward kernels
# (fastrnn._python.rnn, lstm, lstm_proj, gru) on bf16 weights: every product has both
# operands rounded to bf16 and float32 sums (fastrnn._python.reduced: product_through,
# gradient_product); gate math, states and gradient sums stay float32.
#
# One BPTT loop serves the four cells (_rb_loop): each step's gate gradients in one float32
# pass (vector code of the ISA level in use, isa.h's tanh), then the product through W_hh
# (and W_hr, or the GRU's W_hn) on the step's rows. The loop runs on the forward's fixed
# batch chunks under ``prange``; a batch of one chunk shares the columns of each step's
# product among the threads instead (column blocks of W_hh^T fixed at pack time). Then the
# products over all T*B rows (_rb_products): dx = dz W_ih (threads share its rows), and the
# weight gradients dW = dz^T x, dz^T h_{t-1} (threads share their rows), where dz^T is
# prepared from dz and x^T packed from x directly (reduced_gemm.h's transposed operands):
# every element is one float32 chain over the T*B rows in order. db (the column sums of dz,
# in row order) is taken while dz^T is prepared. No sum depends on the thread count: results
# are bit for bit the same for any n_threads. The workspace is kept between calls
# (_rb_take).
#
# Measured (1 thread, AMD EPYC Zen 4, 2 cores shared; reduced_gemm.h has the table): the
# backward 1.7-2.5x float32's at S2/S4/S5 (GRU S5 4x), the training step 1.7-3.0x.
#
# lstm_proj's dW_hr = dh_all^T m_all uses the dh_t (dy_t + dz_{t+1} W_hh) of every step,
# kept by the loop: the reference rebuilds them with the same products after it.

from reduced_gemm cimport RP_BF16, rp_pack_transposed_rows, rp_panels_bytes, rp_prepare_transposed_sums


cdef extern from *:
    """
    /* RNN: dz = (dy + dh) * (1 - y * y) (tanh) or dy + dh where y > 0, else 0 (relu: a
       select, so that a NaN gradient at a unit whose output is 0 gives 0) */
    #define RB_DEFINE_CELLS(P, ATTR)                                                        \
    ATTR static void P##_rb_rnn(ptrdiff_t n, int relu, const float *y, const float *dy,    \
                                const float *dh, float *dz)                             \
    {                                                                                   \
        const P##_vf one = (P##_vf){0} + 1.0f, zero = (P##_vf){0};                      \
        for (ptrdiff_t u = 0; u < n; u += P##_UNITS) {                                  \
            int w = RL_UNITS(P, u, n);                                                  \
            P##_vf y_ = P##_load(y + u, w);                                             \
            P##_vf g_ = P##_load(dy + u, w) + P##_load(dh + u, w);                      \
            P##_store(dz + u, relu ? P##_select(y_ > zero, g_, zero) : g_ * (one - y_ * y_), w); \
        }                                                                               \
    }                                                                                   \
    /* LSTM (lstm._python.step_gradients): dz (4H per row) from the gates [i, f, g, o], c_t, \
       c_{t-1}, dh (+ dy when not NULL) and dc (+ dc_ext when not NULL); dc becomes dc_{t-1} */ \
    ATTR static void P##_rb_lstm(ptrdiff_t rows, ptrdiff_t H, const float *a,             \
                                 const float *c_t, const float *c_prev, const float *dh,  \
                                 const float *dy, const float *dc_ext, float *dc, float *dz) \
    {                                                                                   \
        const P##_vf one = (P##_vf){0} + 1.0f;                                          \
        for (ptrdiff_t r = 0; r < rows; r++)                                            \
            for (ptrdiff_t u = 0; u < H; u += P##_UNITS) {                              \
                int w = RL_UNITS(P, u, H);                                              \
                ptrdiff_t o_ = r * H + u;                                               \
                const float *ar = a + r * 4 * H + u;                                    \
                P##_vf i_ = P##_load(ar, w), f_ = P##_load(ar + H, w);                  \
                P##_vf g_ = P##_load(ar + 2 * H, w), o = P##_load(ar + 3 * H, w);       \
                P##_vf dh_ = P##_load(dh + o_, w);                                      \
                if (dy != NULL) dh_ = dh_ + P##_load(dy + o_, w);                       \
                P##_vf dc_ = P##_load(dc + o_, w);                                      \
                if (dc_ext != NULL) dc_ = dc_ + P##_load(dc_ext + o_, w);               \
                P##_vf tc = P##_tanh(P##_load(c_t + o_, w));                            \
                P##_vf do_ = dh_ * tc;                                                  \
                dc_ = dc_ + dh_ * o * (one - tc * tc);                                  \
                P##_vf di = dc_ * g_, dg = dc_ * i_, df = dc_ * P##_load(c_prev + o_, w); \
                float *dzr = dz + r * 4 * H + u;                                        \
                P##_store(dzr, di * i_ * (one - i_), w);                                \
                P##_store(dzr + H, df * f_ * (one - f_), w);                            \
                P##_store(dzr + 2 * H, dg * (one - g_ * g_), w);                        \
                P##_store(dzr + 3 * H, do_ * o * (one - o), w);                         \
                P##_store(dc + o_, dc_ * f_, w);                                        \
            }                                                                           \
    }                                                                                   \
    /* GRU, from the gates [r, z, n, hn] (4H per row): grad = dy + dh; dn and dz into     \
       dz_x[H:3H]; reset_after: dr too, dz_h = [dr, dz, dn * r]; dh becomes grad * z */  \
    ATTR static void P##_rb_gru(ptrdiff_t rows, ptrdiff_t H, int after, const float *g,   \
                                const float *h_prev, const float *dy, float *dh,        \
                                float *dz_x, float *dz_h)                               \
    {                                                                                   \
        const P##_vf one = (P##_vf){0} + 1.0f;                                          \
        for (ptrdiff_t r = 0; r < rows; r++)                                            \
            for (ptrdiff_t u = 0; u < H; u += P##_UNITS) {                              \
                int w = RL_UNITS(P, u, H);                                              \
                ptrdiff_t o_ = r * H + u;                                               \
                const float *gr = g + r * 4 * H + u;                                    \
                P##_vf r_ = P##_load(gr, w), z_ = P##_load(gr + H, w);                  \
                P##_vf n_ = P##_load(gr + 2 * H, w);                                    \
                P##_vf grad = P##_load(dy + o_, w) + P##_load(dh + o_, w);              \
                P##_vf dn = grad * (one - z_) * (one - n_ * n_);                        \
                P##_vf dzg = grad * (P##_load(h_prev + o_, w) - n_) * z_ * (one - z_);   \
                float *dxr = dz_x + r * 3 * H + u;                                      \
                P##_store(dxr + H, dzg, w);                                             \
                P##_store(dxr + 2 * H, dn, w);                                          \
                if (after) {                                                            \
                    P##_vf dr = dn * P##_load(gr + 3 * H, w) * r_ * (one - r_);          \
                    float *dhr = dz_h + r * 3 * H + u;                                  \
                    P##_store(dxr, dr, w);                                              \
                    P##_store(dhr, dr, w);                                              \
                    P##_store(dhr + H, dzg, w);                                         \
                    P##_store(dhr + 2 * H, dn * r_, w);                                 \
                }                                                                       \
                P##_store(dh + o_, grad * z_, w);                                       \
            }                                                                           \
    }                                                                                   \
    /* GRU, reset_after=False, once drh = dn W_hn is known: dr = drh * h_prev * r * (1 - r) \
       into dz_x[0:H], dz_h = dz_x */                                                   \
    ATTR static void P##_rb_gru_r(ptrdiff_t rows, ptrdiff_t H, const float *g,            \
                                  const float *h_prev, const float *drh, float *dz_x,   \
                                  float *dz_h)                                          \
    {                                                                                   \
        const P##_vf one = (P##_vf){0} + 1.0f;                                          \
        for (ptrdiff_t r = 0; r < rows; r++) {                                          \
            for (ptrdiff_t u = 0; u < H; u += P##_UNITS) {                              \
                int w = RL_UNITS(P, u, H);                                              \
                P##_vf r_ = P##_load(g + r * 4 * H + u, w);                             \
                P##_vf dr = P##_load(drh + r * H + u, w) * P##_load(h_prev + r * H + u, w) \
                            * r_ * (one - r_);                                          \
                P##_store(dz_x + r * 3 * H + u, dr, w);                                 \
            }                                                                           \
            memcpy(dz_h + r * 3 * H, dz_x + r * 3 * H, 3 * H * sizeof(float));          \
        }                                                                               \
    }                                                                                   \
    /* GRU, reset_after=False, last: dh += drh * r */                                   \
    ATTR static void P##_rb_gru_add(ptrdiff_t rows, ptrdiff_t H, const float *g,          \
                                    const float *drh, float *dh)                        \
    {                                                                                   \
        for (ptrdiff_t r = 0; r < rows; r++)                                            \
            for (ptrdiff_t u = 0; u < H; u += P##_UNITS) {                              \
                int w = RL_UNITS(P, u, H);                                              \
                P##_vf v = P##_load(dh + r * H + u, w)                                  \
                           + P##_load(drh + r * H + u, w) * P##_load(g + r * 4 * H + u, w); \
                P##_store(dh + r * H + u, v, w);                                        \
            }                                                                           \
    }                                                                                   \
    /* out = a + b over n values (lstm_proj's dh_t = dh + dy_t) */                      \
    ATTR static void P##_rb_add(ptrdiff_t n, const float *a, const float *b, float *out) \
    {                                                                                   \
        for (ptrdiff_t u = 0; u < n; u += P##_UNITS) {                                  \
            int w = RL_UNITS(P, u, n);                                                  \
            P##_store(out + u, P##_load(a + u, w) + P##_load(b + u, w), w);             \
        }                                                                               \
    }
    RB_DEFINE_CELLS(pg_generic, PG_ATTR_generic)
    RB_DEFINE_CELLS(pg_avx2, PG_ATTR_avx2)
    RB_DEFINE_CELLS(pg_avx512, PG_ATTR_avx512)
    static void rb_rnn(int level, ptrdiff_t n, int relu, const float *y, const float *dy,
                       const float *dh, float *dz)
    { RL_DISPATCH(level, rb_rnn, (n, relu, y, dy, dh, dz)); }
    static void rb_lstm(int level, ptrdiff_t rows, ptrdiff_t H, const float *a, const float *c_t,
                        const float *c_prev, const float *dh, const float *dy,
                        const float *dc_ext, float *dc, float *dz)
    { RL_DISPATCH(level, rb_lstm, (rows, H, a, c_t, c_prev, dh, dy, dc_ext, dc, dz)); }
    static void rb_gru(int level, ptrdiff_t rows, ptrdiff_t H, int after, const float *g,
                       const float *h_prev, const float *dy, float *dh, float *dz_x, float *dz_h)
    { RL_DISPATCH(level, rb_gru, (rows, H, after, g, h_prev, dy, dh, dz_x, dz_h)); }
    static void rb_gru_r(int level, ptrdiff_t rows, ptrdiff_t H, const float *g,
                         const float *h_prev, const float *drh, float *dz_x, float *dz_h)
    { RL_DISPATCH(level, rb_gru_r, (rows, H, g, h_prev, drh, dz_x, dz_h)); }
    static void rb_gru_add(int level, ptrdiff_t rows, ptrdiff_t H, const float *g,
                           const float *drh, float *dh)
    { RL_DISPATCH(level, rb_gru_add, (rows, H, g, drh, dh)); }
    static void rb_add(int level, ptrdiff_t n, const float *a, const float *b, float *out)
    { RL_DISPATCH(level, rb_add, (n, a, b, out)); }
    """
    void rb_rnn(int level, Py_ssize_t n, int relu, const float* y, const float* dy,
                const float* dh, float* dz) nogil
    void rb_lstm(int level, Py_ssize_t rows, Py_ssize_t H, const float* a, const float* c_t,
                 const float* c_prev, const float* dh, const float* dy, const float* dc_ext,
                 float* dc, float* dz) nogil
    void rb_gru(int level, Py_ssize_t rows, Py_ssize_t H, int after, const float* g,
                const float* h_prev, const float* dy, float* dh, float* dz_x, float* dz_h) nogil
    void rb_gru_r(int level, Py_ssize_t rows, Py_ssize_t H, const float* g, const float* h_prev,
                  const float* drh, float* dz_x, float* dz_h) nogil
    void rb_gru_add(int level, Py_ssize_t rows, Py_ssize_t H, const float* g, const float* drh,
                    float* dh) nogil
    void rb_add(int level, Py_ssize_t n, const float* a, const float* b, float* out) nogil


cdef inline Py_ssize_t _rk_gates(int kind) noexcept nogil:
    """Gate blocks of cell ``kind`` (_REDUCED_GATES)."""
    return 1 if kind == RK_RNN else (3 if kind == RK_GRU else 4)


cdef struct _RBArrays:
    # the arrays of a backward call (NULL where the cell has none)
    const float* x             # (T, B, D)
    const float* h0            # (B, P)
    const float* c0            # (B, H)
    const float* y             # (T, B, P)
    const float* gates         # (T, B, 4H); the RNN: none
    const float* c_all         # (T, B, H)
    const float* m_all         # (T, B, H), lstm_proj
    const float* dy            # (T, B, P)
    const float* dh_n          # (B, P)
    const float* dc_n          # (B, H)
    const float* dc_seq        # (T, B, H), or NULL: none
    float* dz                  # (T, B, G*H); the GRU's dz_x
    float* dz_h                # the GRU's (T, B, 3H)
    float* dh_all              # lstm_proj: dh_t of every step (T, B, P)
    float* dh0                 # (B, P)
    float* dc0                 # (B, H)


cdef struct _RBProduct:
    # one weight gradient: C (rows x W.n, ldc) = A W^T, A's rows at row a0 of the prepared dz^T
    Py_ssize_t a0, rows
    const rp_matrix* w
    float* c
    Py_ssize_t ldc


cdef void _rb_loop(const _RCell* L, const _RBArrays* A, Py_ssize_t T, Py_ssize_t B,
                   Py_ssize_t b0, Py_ssize_t b1, float* work, char* scratch,
                   int threads) noexcept nogil:
    """BPTT of batch rows ``b0:b1``: fills their rows of dz (dz_x, dz_h), dh_all, dh0 and dc0.

    dh and dc live in the chunk's rows of dh0 and dc0. ``work`` holds ``(b1 - b0) * H`` floats
    (lstm_proj's dm, the GRU's drh), ``scratch`` what one product of the steps needs on these
    rows; ``threads`` share the columns of each product.
    """
    cdef Py_ssize_t t, off, rows = b1 - b0, H = L.H, P = L.P, GZ = _rk_gates(L.kind) * L.H
    cdef int kind = L.kind, isa = L.isa
    cdef float* dh = A.dh0 + b0 * P
    cdef float* dc = NULL
    cdef const float* h_prev
    cdef const float* c_prev
    cdef const float* dc_ext = NULL
    cdef float* dz_t
    cdef float* dzh_t = NULL
    cdef float* dha
    memcpy(dh, A.dh_n + b0 * P, rows * P * sizeof(float))
    if kind == RK_LSTM or kind == RK_LSTM_PROJ:
        dc = A.dc0 + b0 * H
        memcpy(dc, A.dc_n + b0 * H, rows * H * sizeof(float))
    t = T - 1
    while t >= 0:
        off = t * B + b0           # first row of the chunk at step t
        dz_t = A.dz + off * GZ
        h_prev = A.h0 + b0 * P if t == 0 else A.y + (off - B) * P
        if kind == RK_RNN:
            rb_rnn(isa, rows * H, L.flag, A.y + off * H, A.dy + off * H, dh, dz_t)
            memset(dh, 0, rows * H * sizeof(float))
            _rblocks(&L.t_hh, rows, dz_t, H, dh, H, scratch, 0, threads)       # dh = dz_t W_hh
        elif kind == RK_GRU:
            dzh_t = A.dz_h + off * 3 * H
            rb_gru(isa, rows, H, L.flag, A.gates + off * 4 * H, h_prev, A.dy + off * H, dh,
                   dz_t, dzh_t)
            if not L.flag:
                memset(work, 0, rows * H * sizeof(float))
                _rblocks(&L.t_hx, rows, dz_t + 2 * H, 3 * H, work, H, scratch, 0, threads)  # drh = dn W_hn
                rb_gru_r(isa, rows, H, A.gates + off * 4 * H, h_prev, work, dz_t, dzh_t)
            # dh = grad * z + dz_h W_hh (reset_after=False: [dr, dz] [W_hr; W_hz], then + drh * r)
            _rblocks(&L.t_hh, rows, dzh_t, 3 * H, dh, H, scratch, 0, threads)
            if not L.flag:
                rb_gru_add(isa, rows, H, A.gates + off * 4 * H, work, dh)
        else:
            c_prev = A.c0 + b0 * H if t == 0 else A.c_all + (off - B) * H
            if A.dc_seq != NULL:
                dc_ext = A.dc_seq + off * H
            if kind == RK_LSTM:
                rb_lstm(isa, rows, H, A.gates + off * 4 * H, A.c_all + off * H, c_prev, dh,
                        A.dy + off * P, dc_ext, dc, dz_t)
            else:  # dh_t kept for dW_hr; dm = dh_t W_hr
                dha = A.dh_all + off * P
                rb_add(isa, rows * P, dh, A.dy + off * P, dha)
                memset(work, 0, rows * H * sizeof(float))
                _rblocks(&L.t_hx, rows, dha, P, work, H, scratch, 0, threads)
                rb_lstm(isa, rows, H, A.gates + off * 4 * H, A.c_all + off * H, c_prev, work,
                        NULL, dc_ext, dc, dz_t)
            memset(dh, 0, rows * P * sizeof(float))
            _rblocks(&L.t_hh, rows, dz_t, 4 * H, dh, P, scratch, 0, threads)    # dh = dz_t W_hh
        t -= 1


cdef inline Py_ssize_t _rb_even(Py_ssize_t n, Py_ssize_t q, Py_ssize_t parts) noexcept nogil:
    """Boundary ``q`` of ``n`` split into ``parts``, rounded down to an even number (so that
    no two threads write one word of a transposed pack)."""
    return n if q == parts else n * q // parts // 2 * 2


cdef void _rb_pack_rows(const rp_matrix* m, Py_ssize_t i0, Py_ssize_t i1, const float* first,
                        Py_ssize_t n_first, const float* rest) noexcept nogil:
    """Rows ``i0:i1`` of W^T into ``m``: row i is ``first[i]`` for i < n_first, else
    ``rest[i - n_first]`` (rows of m.n values; h_{t-1} is h0, then y)."""
    cdef Py_ssize_t s = min(i1, n_first)
    if i0 < s:
        rp_pack_transposed_rows(m, i0, s, first + i0 * m.n, m.n)
    s = max(i0, n_first)
    if s < i1:
        rp_pack_transposed_rows(m, s, i1, rest + (s - n_first) * m.n, m.n)


cdef void _rb_products(const _RCell* L, const _RBArrays* A, Py_ssize_t TB, Py_ssize_t B,
                       rp_matrix* packs, Py_ssize_t n_packs, const float** firsts,
                       Py_ssize_t* n_firsts, const float** rests, const float** prep_at,
                       Py_ssize_t* prep_ld, Py_ssize_t* prep_rows, Py_ssize_t n_segments,
                       char* prep, const _RBProduct* products, Py_ssize_t n_products,
                       float** sums, float* dx, const float* zeros, char* slots,
                       Py_ssize_t slot_bytes, float* rh, int threads) noexcept nogil:
    """The products over all ``TB`` rows, ``threads`` sharing each: first the transposed
    operands (the packs of x^T, h_{t-1}^T... by rows of k; the segments of dz^T prepared, by
    rows, with their columns' sums into ``sums[segment]`` where not NULL: zeroed by the
    caller), then dx = dz W_ih by rows and each weight gradient by rows of its result."""
    cdef int q
    cdef Py_ssize_t p, s, r, r0, r1, i0, i1, a0, H = L.H
    cdef Py_ssize_t words = (TB + 1) // 2 * 4         # bytes of a prepared row of k = TB
    cdef Py_ssize_t GZ = _rk_gates(L.kind) * L.H
    cdef const rp_matrix* w
    for q in prange(threads, num_threads=threads, schedule='static'):
        i0 = _rb_even(TB, q, threads)
        i1 = _rb_even(TB, q + 1, threads)
        if rh != NULL:  # the GRU (reset_after=False): r * h_{t-1}, the rows of W_hn's product
            for r in range(i0, i1):
                _rb_times(A.gates + r * 4 * H, A.h0 + r * H if r < B else A.y + (r - B) * H, rh + r * H, H)
        for p in range(n_packs):
            if packs[p].n > 0:
                _rb_pack_rows(&packs[p], i0, i1, firsts[p], n_firsts[p], rests[p])
        for s in range(n_segments):
            r0 = prep_rows[s] * q // threads
            r1 = prep_rows[s] * (q + 1) // threads
            a0 = 0 if s == 0 else prep_rows[0]
            if r1 > r0:
                rp_prepare_transposed_sums(&packs[0], r1 - r0, prep_at[s] + r0, prep_ld[s],
                                           prep + (a0 + r0) * words,
                                           sums[s] + r0 if sums[s] != NULL else NULL)
    for q in prange(threads, num_threads=threads, schedule='static'):
        r0 = TB * q // threads
        r1 = TB * (q + 1) // threads
        if r1 > r0 and L.t_ih.n > 0:                     # dx = dz W_ih
            rp_gemm(L.t_ih, r1 - r0, A.dz + r0 * GZ, GZ, zeros, dx + r0 * L.D, L.D,
                    slots + q * slot_bytes)
        for p in range(n_products):
            w = products[p].w
            r0 = products[p].rows * q // threads
            r1 = products[p].rows * (q + 1) // threads
            if r1 > r0 and w.n > 0:
                rp_gemm_prepared(w, r1 - r0, prep + (products[p].a0 + r0) * words, zeros,
                                 products[p].c + r0 * products[p].ldc, products[p].ldc)


cdef inline void _rb_times(const float* r, const float* h, float* out, Py_ssize_t H) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(H):
        out[j] = r[j] * h[j]


cdef _rb_check(ReducedLayer layer, int kind, x, dict arrays):
    """ArgumentError unless ``layer`` is of cell ``kind`` and packed for the backward pass;
    ShapeError unless ``arrays`` (name: (array, expected shape)) fit ``x``; StaleCacheError
    under another ISA level."""
    if layer.c.kind != kind or not layer.backward:
        raise ArgumentError(
            f"the backward kernels need a {list(_REDUCED_CELLS)[kind]} layer packed with "
            f"backward=True; got a {layer.cell} layer"
            f"{'' if layer.backward else ' packed without backward=True'}")
    for name, (array, shape) in arrays.items():
        given = tuple(array.shape)
        if given != shape and not (name == "dc_seq" and given == (0,) + shape[1:]):
            raise ShapeError(f"{name} must have shape {shape}"
                             f"{' or ' + str((0,) + shape[1:]) if name == 'dc_seq' else ''}; "
                             f"got {given}")
    layer.check_level()


cdef inline const float* _rb_p3(const float[:, :, ::1] a) noexcept:
    return &a[0, 0, 0] if a is not None and a.shape[0] > 0 and a.shape[1] > 0 and a.shape[2] > 0 else NULL


cdef inline const float* _rb_p2(const float[:, ::1] a) noexcept:
    return &a[0, 0] if a is not None and a.shape[0] > 0 and a.shape[1] > 0 else NULL


# The workspace of the backward calls (hundreds of MiB at large layers): kept between calls
# and grown when needed, as a fresh one costs the kernel zeroing its pages at every call
# (measured 12 % of the LSTM's backward at S2). A call that finds it in use (another Python
# thread in a backward) takes a fresh one.
cdef object _rb_workspace = None
cdef bint _rb_workspace_busy = False


cdef object _rb_take(Py_ssize_t nbytes):
    """A uint8 array of at least ``nbytes`` (the kept workspace if free), and whether it is
    the kept one (to hand back with _rb_give_back)."""
    global _rb_workspace, _rb_workspace_busy
    if _rb_workspace_busy:
        return np.empty(nbytes, np.uint8), False
    if _rb_workspace is None or _rb_workspace.shape[0] < nbytes:
        _rb_workspace = None
        _rb_workspace = np.empty(nbytes, np.uint8)
    _rb_workspace_busy = True
    return _rb_workspace, True


def release_backward_workspace():
    """Free the workspace the bf16 backward kernels keep between calls (it is allocated
    again, at the size needed, by the next call)."""
    global _rb_workspace
    if not _rb_workspace_busy:
        _rb_workspace = None


cdef class _RBSpace:
    """Byte offsets of the pieces of a backward call's workspace, each 64-byte aligned."""
    cdef Py_ssize_t size

    cdef Py_ssize_t add(self, Py_ssize_t nbytes):
        cdef Py_ssize_t at = self.size
        self.size += _aligned(nbytes)
        return at


cdef int _reduced_backward(ReducedLayer layer, _RBArrays* A, Py_ssize_t T, Py_ssize_t B,
                           float* dx, float* dw_ih, float* dw_hh, float* dw_hr, float* db,
                           float* db_hh, int n_threads) except -1:
    """The backward of every cell (arguments checked, pointers in ``A``): the loop on the
    batch chunks, then the products over all rows and the bias gradients."""
    global _rb_workspace_busy
    cdef const _RCell* L = &layer.c
    cdef Py_ssize_t H = layer.H, P = layer.P, D = layer.D, TB = T * B
    cdef int kind = L.kind
    cdef Py_ssize_t GZ = _REDUCED_GATES[kind] * H
    cdef Py_ssize_t G_hh = 3 * H if kind == RK_GRU else GZ
    cdef bint gru = kind == RK_GRU, after = L.flag
    if TB == 0 or H == 0:  # no rows to sum, or no units: dh0, dc0 = dh_n, dc_n (no step)
        if A.dh0 != NULL:
            if T == 0:
                memcpy(A.dh0, A.dh_n, B * P * sizeof(float))
            else:
                memset(A.dh0, 0, B * P * sizeof(float))
        if A.dc0 != NULL:
            memcpy(A.dc0, A.dc_n, B * H * sizeof(float))
        if dx != NULL:
            memset(dx, 0, TB * D * sizeof(float))
        if D > 0 and GZ > 0:
            memset(dw_ih, 0, GZ * D * sizeof(float))
        if G_hh > 0 and P > 0:
            memset(dw_hh, 0, G_hh * P * sizeof(float))
        if dw_hr != NULL and P > 0 and H > 0:
            memset(dw_hr, 0, P * H * sizeof(float))
        if GZ > 0:
            memset(db, 0, GZ * sizeof(float))
            if db_hh != NULL:
                memset(db_hh, 0, GZ * sizeof(float))
        return 0
    cdef Py_ssize_t[::1] chunks = batch_chunks(B, H, _REDUCED_GATES[kind])
    cdef Py_ssize_t k, p, n_chunks = chunks.shape[0] - 1
    cdef int recur_threads = _threads_for(n_threads, n_chunks)
    cdef int column_threads = 1
    if n_chunks == 1 and step_column_threads(B, H, _REDUCED_GATES[kind], n_threads) > 1:
        column_threads = _threads_for(n_threads, max(L.t_hh.count, L.t_hx.count))
    cdef int threads = _threads_for(n_threads, max(1, TB // 16))
    cdef int level = L.w_ih.level
    # the workspace: each chunk's (H floats per row, then the scratch of a product of the
    # steps), lstm_proj's dh_t of every step, the GRU's r * h_{t-1} (reset_after=False), the
    # packs of x^T, h_{t-1}^T (and m_all^T or (r * h_{t-1})^T), dz^T prepared, zeros, and the
    # scratch of the threads' dx products
    cdef _RBSpace space = _RBSpace()
    cdef Py_ssize_t[::1] chunk_at = np.zeros(n_chunks + 1, dtype=np.intp)
    for k in range(n_chunks):
        chunk_at[k] = space.add(_aligned((chunks[k + 1] - chunks[k]) * H * sizeof(float))
                                + layer.backward_step_bytes(chunks[k + 1] - chunks[k]))
    cdef Py_ssize_t dh_all_at = space.add(TB * P * sizeof(float) if kind == RK_LSTM_PROJ else 0)
    cdef Py_ssize_t rh_at = space.add(TB * H * sizeof(float) if gru and not after else 0)
    cdef Py_ssize_t n_packs = 3 if kind == RK_LSTM_PROJ or (gru and not after) else 2
    cdef Py_ssize_t widths[3]
    widths[0] = D
    widths[1] = P
    widths[2] = H
    cdef Py_ssize_t pack_at[3]
    for p in range(n_packs):
        pack_at[p] = space.add(rp_panels_bytes(RP_BF16, level, widths[p], TB) + 64)
    cdef Py_ssize_t pack_end = space.size
    # dz^T prepared by segments: dz (dz_x), then the GRU's dz_h n block (reset_after) or
    # lstm_proj's dh_t
    cdef const float* prep_at[2]
    cdef Py_ssize_t prep_ld[2]
    cdef Py_ssize_t prep_rows[2]
    cdef Py_ssize_t n_segments = 1 if kind == RK_LSTM or kind == RK_RNN or (gru and not after) else 2
    prep_rows[0] = GZ
    prep_rows[1] = P if kind == RK_LSTM_PROJ else H
    cdef Py_ssize_t prep_off = space.add(
        (prep_rows[0] + (prep_rows[1] if n_segments == 2 else 0)) * ((TB + 1) // 2 * 4) + 64)
    cdef Py_ssize_t zeros_at = space.add((max(D, P, H) + 16) * sizeof(float))
    cdef Py_ssize_t slot_bytes = _aligned(rp_scratch_bytes(RP_BF16, level, (TB + threads - 1) // threads, GZ))
    cdef Py_ssize_t slots_at = space.add(threads * slot_bytes)
    workspace, kept = _rb_take(space.size + 2 * RK_ALIGN)
    cdef unsigned char[::1] workspace_v = workspace
    cdef char* base = <char*>_aligned(<size_t>&workspace_v[0])
    if kind == RK_LSTM_PROJ:
        A.dh_all = <float*>(base + dh_all_at)
    cdef rp_matrix packs[3]
    cdef const float* firsts[3]
    cdef const float* rests[3]
    cdef Py_ssize_t n_firsts[3]
    for p in range(n_packs):
        packs[p].precision = RP_BF16
        packs[p].level = level
        packs[p].n = widths[p]
        packs[p].k = TB
        packs[p].scale = NULL
        packs[p].colsum = NULL
        packs[p].panels = base + pack_at[p]
    firsts[0] = A.x              # row i of W^T: firsts[i] for i < n_firsts, then rests
    n_firsts[0] = TB
    rests[0] = A.x
    firsts[1] = A.h0
    n_firsts[1] = B
    rests[1] = A.y
    cdef float* rh_p = NULL
    if kind == RK_LSTM_PROJ:
        firsts[2] = A.m_all
        n_firsts[2] = TB
        rests[2] = A.m_all
    elif gru and not after:
        rh_p = <float*>(base + rh_at)
        firsts[2] = rh_p
        n_firsts[2] = TB
        rests[2] = rh_p
    prep_at[0] = A.dz
    prep_ld[0] = GZ
    if gru:
        prep_at[1] = A.dz_h + 2 * H
        prep_ld[1] = 3 * H
    else:
        prep_at[1] = A.dh_all
        prep_ld[1] = P
    # the weight gradients: rows a0.. of the prepared dz^T times a pack
    cdef _RBProduct products[4]
    cdef Py_ssize_t n_products = 2
    products[0] = _RBProduct(0, GZ, &packs[0], dw_ih, D)
    if not gru:
        products[1] = _RBProduct(0, GZ, &packs[1], dw_hh, P)
        if kind == RK_LSTM_PROJ:
            products[2] = _RBProduct(GZ, P, &packs[2], dw_hr, H)
            n_products = 3
    else:
        products[1] = _RBProduct(0, 2 * H, &packs[1], dw_hh, H)
        if after:  # dz_h's n block, rows 3H.. of the prepared operand
            products[2] = _RBProduct(3 * H, H, &packs[1], dw_hh + 2 * H * H, H)
        else:      # dz_x's (= dz_h's) n block times (r * h_{t-1})^T
            products[2] = _RBProduct(2 * H, H, &packs[2], dw_hh + 2 * H * H, H)
        n_products = 3
    # db: column sums of dz in row order, taken while dz^T is prepared; the GRU's db_hh from
    # dz_h = [dr, dz, dn * r] (reset_after) or dz_x
    cdef float* sums[2]
    sums[0] = db
    sums[1] = db_hh + 2 * H if gru and after else NULL
    try:
        with nogil:
            memset(db, 0, GZ * sizeof(float))
            if gru:
                memset(db_hh, 0, GZ * sizeof(float))
            # the packs' padding (past n, past an odd k) must be zeros; zeros for "bias 0"
            memset(base + pack_at[0], 0, pack_end - pack_at[0])
            memset(base + zeros_at, 0, (max(D, P, H) + 16) * sizeof(float))
            if n_chunks == 1:
                _rb_loop(L, A, T, B, 0, B, <float*>(base + chunk_at[0]),
                         base + chunk_at[0] + _aligned(B * H * sizeof(float)), column_threads)
            else:
                for k in prange(n_chunks, num_threads=recur_threads, schedule='static'):
                    _rb_loop(L, A, T, B, chunks[k], chunks[k + 1], <float*>(base + chunk_at[k]),
                             base + chunk_at[k] + _aligned((chunks[k + 1] - chunks[k]) * H * sizeof(float)),
                             1)
            _rb_products(L, A, TB, B, packs, n_packs, firsts, n_firsts, rests, prep_at, prep_ld,
                         prep_rows, n_segments, base + prep_off, products, n_products, sums,
                         dx, <float*>(base + zeros_at), base + slots_at, slot_bytes, rh_p, threads)
            if gru:  # the r and z blocks of dz_h are dz_x's
                memcpy(db_hh, db, (2 * H if after else GZ) * sizeof(float))
    finally:
        if kept:
            _rb_workspace_busy = False
    return 0


def rnn_backward_reduced(const float[:, :, ::1] x, ReducedLayer layer, const float[:, ::1] h0,
                         const float[:, :, ::1] y, const float[:, :, ::1] dy,
                         const float[:, ::1] dh_n, float[:, :, ::1] dz, float[:, :, ::1] dx,
                         float[:, ::1] dh0, float[:, ::1] dw_ih, float[:, ::1] dw_hh,
                         float[::1] db, int n_threads):
    """Elman BPTT in bf16 on a layer packed with ``pack_reduced("rnn", "bf16", ...,
    backward=True)``; the other arguments as :func:`rnn_backward` (float32). Equals
    :func:`fastrnn._python.reduced_layer.rnn_backward_reduced` within float32 rounding of
    the bf16 products' operands; bit for bit the same for any ``n_threads``."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = layer.D, H = layer.H
    _rb_check(layer, RK_RNN, x, {
        "x": (x, (T, B, D)), "h0": (h0, (B, H)), "y": (y, (T, B, H)), "dy": (dy, (T, B, H)),
        "dh_n": (dh_n, (B, H)), "dz": (dz, (T, B, H)), "dx": (dx, (T, B, D)),
        "dh0": (dh0, (B, H)), "dw_ih": (dw_ih, (H, D)), "dw_hh": (dw_hh, (H, H)),
        "db": (db, (H,))})
    cdef _RBArrays A
    memset(&A, 0, sizeof(A))
    A.x, A.h0, A.y, A.dy, A.dh_n = _rb_p3(x), _rb_p2(h0), _rb_p3(y), _rb_p3(dy), _rb_p2(dh_n)
    A.dz, A.dh0 = <float*>_rb_p3(dz), <float*>_rb_p2(dh0)
    _reduced_backward(layer, &A, T, B, <float*>_rb_p3(dx), <float*>_rb_p2(dw_ih),
                      <float*>_rb_p2(dw_hh), NULL, &db[0] if H else NULL, NULL, n_threads)


def lstm_backward_reduced(const float[:, :, ::1] x, ReducedLayer layer, const float[:, ::1] h0,
                          const float[:, ::1] c0, const float[:, :, ::1] y,
                          const float[:, :, ::1] gates, const float[:, :, ::1] c_all,
                          const float[:, :, ::1] dy, const float[:, ::1] dh_n,
                          const float[:, ::1] dc_n, const float[:, :, ::1] dc_seq,
                          float[:, :, ::1] dz, float[:, :, ::1] dx, float[:, ::1] dh0,
                          float[:, ::1] dc0, float[:, ::1] dw_ih, float[:, ::1] dw_hh,
                          float[::1] db, int n_threads):
    """LSTM BPTT in bf16 on a layer packed with ``pack_reduced("lstm", "bf16", ...,
    backward=True)``; the other arguments as :func:`lstm_backward` (float32)."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = layer.D, H = layer.H
    _rb_check(layer, RK_LSTM, x, {
        "x": (x, (T, B, D)), "h0": (h0, (B, H)), "c0": (c0, (B, H)), "y": (y, (T, B, H)),
        "gates": (gates, (T, B, 4 * H)), "c_all": (c_all, (T, B, H)), "dy": (dy, (T, B, H)),
        "dh_n": (dh_n, (B, H)), "dc_n": (dc_n, (B, H)), "dc_seq": (dc_seq, (T, B, H)),
        "dz": (dz, (T, B, 4 * H)), "dx": (dx, (T, B, D)), "dh0": (dh0, (B, H)),
        "dc0": (dc0, (B, H)), "dw_ih": (dw_ih, (4 * H, D)), "dw_hh": (dw_hh, (4 * H, H)),
        "db": (db, (4 * H,))})
    cdef _RBArrays A
    memset(&A, 0, sizeof(A))
    A.x, A.h0, A.c0, A.y, A.gates = _rb_p3(x), _rb_p2(h0), _rb_p2(c0), _rb_p3(y), _rb_p3(gates)
    A.c_all, A.dy, A.dh_n, A.dc_n = _rb_p3(c_all), _rb_p3(dy), _rb_p2(dh_n), _rb_p2(dc_n)
    A.dc_seq = _rb_p3(dc_seq)
    A.dz, A.dh0, A.dc0 = <float*>_rb_p3(dz), <float*>_rb_p2(dh0), <float*>_rb_p2(dc0)
    _reduced_backward(layer, &A, T, B, <float*>_rb_p3(dx), <float*>_rb_p2(dw_ih),
                      <float*>_rb_p2(dw_hh), NULL, &db[0] if H else NULL, NULL, n_threads)


def lstm_proj_backward_reduced(const float[:, :, ::1] x, ReducedLayer layer,
                               const float[:, ::1] h0, const float[:, ::1] c0,
                               const float[:, :, ::1] y, const float[:, :, ::1] gates,
                               const float[:, :, ::1] c_all, const float[:, :, ::1] m_all,
                               const float[:, :, ::1] dy, const float[:, ::1] dh_n,
                               const float[:, ::1] dc_n, const float[:, :, ::1] dc_seq,
                               float[:, :, ::1] dz, float[:, :, ::1] dx, float[:, ::1] dh0,
                               float[:, ::1] dc0, float[:, ::1] dw_ih, float[:, ::1] dw_hh,
                               float[:, ::1] dw_hr, float[::1] db, int n_threads):
    """LSTM-with-projection BPTT in bf16 on a layer packed with ``pack_reduced("lstm_proj",
    "bf16", ..., backward=True)``; the other arguments as :func:`lstm_proj_backward`."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = layer.D, H = layer.H, P = layer.P
    _rb_check(layer, RK_LSTM_PROJ, x, {
        "x": (x, (T, B, D)), "h0": (h0, (B, P)), "c0": (c0, (B, H)), "y": (y, (T, B, P)),
        "gates": (gates, (T, B, 4 * H)), "c_all": (c_all, (T, B, H)),
        "m_all": (m_all, (T, B, H)), "dy": (dy, (T, B, P)), "dh_n": (dh_n, (B, P)),
        "dc_n": (dc_n, (B, H)), "dc_seq": (dc_seq, (T, B, H)), "dz": (dz, (T, B, 4 * H)),
        "dx": (dx, (T, B, D)), "dh0": (dh0, (B, P)), "dc0": (dc0, (B, H)),
        "dw_ih": (dw_ih, (4 * H, D)), "dw_hh": (dw_hh, (4 * H, P)), "dw_hr": (dw_hr, (P, H)),
        "db": (db, (4 * H,))})
    cdef _RBArrays A
    memset(&A, 0, sizeof(A))
    A.x, A.h0, A.c0, A.y, A.gates = _rb_p3(x), _rb_p2(h0), _rb_p2(c0), _rb_p3(y), _rb_p3(gates)
    A.c_all, A.m_all, A.dy = _rb_p3(c_all), _rb_p3(m_all), _rb_p3(dy)
    A.dh_n, A.dc_n, A.dc_seq = _rb_p2(dh_n), _rb_p2(dc_n), _rb_p3(dc_seq)
    A.dz, A.dh0, A.dc0 = <float*>_rb_p3(dz), <float*>_rb_p2(dh0), <float*>_rb_p2(dc0)
    _reduced_backward(layer, &A, T, B, <float*>_rb_p3(dx), <float*>_rb_p2(dw_ih),
                      <float*>_rb_p2(dw_hh), <float*>_rb_p2(dw_hr), &db[0] if H else NULL,
                      NULL, n_threads)


def gru_backward_reduced(const float[:, :, ::1] x, ReducedLayer layer, const float[:, ::1] h0,
                         const float[:, :, ::1] y, const float[:, :, ::1] gates,
                         const float[:, :, ::1] dy, const float[:, ::1] dh_n,
                         float[:, :, ::1] dz_x, float[:, :, ::1] dz_h, float[:, :, ::1] dx,
                         float[:, ::1] dh0, float[:, ::1] dw_ih, float[:, ::1] dw_hh,
                         float[::1] db_ih, float[::1] db_hh, int n_threads):
    """GRU BPTT in bf16 on a layer packed with ``pack_reduced("gru", "bf16", ...,
    flag=reset_after, backward=True)``; the other arguments as :func:`gru_backward`."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = layer.D, H = layer.H
    _rb_check(layer, RK_GRU, x, {
        "x": (x, (T, B, D)), "h0": (h0, (B, H)), "y": (y, (T, B, H)),
        "gates": (gates, (T, B, 4 * H)), "dy": (dy, (T, B, H)), "dh_n": (dh_n, (B, H)),
        "dz_x": (dz_x, (T, B, 3 * H)), "dz_h": (dz_h, (T, B, 3 * H)), "dx": (dx, (T, B, D)),
        "dh0": (dh0, (B, H)), "dw_ih": (dw_ih, (3 * H, D)), "dw_hh": (dw_hh, (3 * H, H)),
        "db_ih": (db_ih, (3 * H,)), "db_hh": (db_hh, (3 * H,))})
    cdef _RBArrays A
    memset(&A, 0, sizeof(A))
    A.x, A.h0, A.y, A.gates = _rb_p3(x), _rb_p2(h0), _rb_p3(y), _rb_p3(gates)
    A.dy, A.dh_n = _rb_p3(dy), _rb_p2(dh_n)
    A.dz, A.dz_h, A.dh0 = <float*>_rb_p3(dz_x), <float*>_rb_p3(dz_h), <float*>_rb_p2(dh0)
    _reduced_backward(layer, &A, T, B, <float*>_rb_p3(dx), <float*>_rb_p2(dw_ih),
                      <float*>_rb_p2(dw_hh), NULL, &db_ih[0] if H else NULL,
                      &db_hh[0] if H else NULL, n_threads)
