"""The recurrent product with weights packed once per sequence (``isa.h``, ``gemm_kernels.h``).

``pack(B)`` lays a (k, n) matrix out in panels once, before a time loop;
``gemm_packed`` then adds ``A . B`` to ``C`` at every step without repacking.
``gemm_at_b`` adds ``A^T B``: the weight gradients, a long reduction over
every row of a block of steps.
Each output element is summed in an order fixed by the row blocking, which the
shapes decide, never by the thread or column range that computes it.

The packed layouts depend on the instruction-set level in use (``isa.h``): panel
widths and packed sizes are read at run time (``pg_nr_float()``, ``pg_units()``),
and a computation must pack and run under one level.
"""

from cython cimport floating


cdef extern from "isa.h" nogil:
    int PG_N_LEVELS
    int pg_level_supported(int level)
    int pg_best_level()
    int pg_get_level()
    int pg_set_level(int level)
    const char* pg_level_name(int level)
    int pg_nr_float()
    int pg_nr_double()
    Py_ssize_t pg_packed_size(Py_ssize_t k, Py_ssize_t n, Py_ssize_t nr)
    void pg_pack_float(const float* b, Py_ssize_t k, Py_ssize_t n, Py_ssize_t stride_k,
                       Py_ssize_t stride_n, float* packed)
    void pg_pack_double(const double* b, Py_ssize_t k, Py_ssize_t n, Py_ssize_t stride_k,
                        Py_ssize_t stride_n, double* packed)
    void pg_gemm_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                       const float* packed, float* c, Py_ssize_t ldc)
    void pg_gemm_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                        Py_ssize_t lda, const double* packed, double* c, Py_ssize_t ldc)
    void pg_gemm_bias_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                            Py_ssize_t lda, const float* packed, const float* bias, float* c,
                            Py_ssize_t ldc)
    void pg_gemm_bias_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                             Py_ssize_t lda, const double* packed, const double* bias,
                             double* c, Py_ssize_t ldc)
    int PG_KC
    Py_ssize_t pg_at_b_work_size(Py_ssize_t m, Py_ssize_t n, Py_ssize_t nr)
    void pg_gemm_at_b_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                            Py_ssize_t lda, const float* b, Py_ssize_t ldb, float* c,
                            Py_ssize_t ldc, float* work)
    void pg_gemm_at_b_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                             Py_ssize_t lda, const double* b, Py_ssize_t ldb, double* c,
                             Py_ssize_t ldc, double* work)
    Py_ssize_t pg_at_b_pair_work_size(Py_ssize_t m, Py_ssize_t n1, Py_ssize_t n2, Py_ssize_t nr)
    void pg_gemm_at_b_pair_float(Py_ssize_t m, Py_ssize_t k, const float* a, Py_ssize_t lda,
                                 Py_ssize_t n1, const float* b1, Py_ssize_t ldb1, float* c1,
                                 Py_ssize_t ldc1, Py_ssize_t n2, const float* b2,
                                 Py_ssize_t ldb2, float* c2, Py_ssize_t ldc2, float* work)
    void pg_gemm_at_b_pair_double(Py_ssize_t m, Py_ssize_t k, const double* a, Py_ssize_t lda,
                                  Py_ssize_t n1, const double* b1, Py_ssize_t ldb1, double* c1,
                                  Py_ssize_t ldc1, Py_ssize_t n2, const double* b2,
                                  Py_ssize_t ldb2, double* c2, Py_ssize_t ldc2, double* work)


cdef inline Py_ssize_t packed_size(floating dummy, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """Elements needed to pack a (k, n) matrix of ``floating`` (``dummy`` only picks the type)."""
    if floating is float:
        return pg_packed_size(k, n, pg_nr_float())
    else:
        return pg_packed_size(k, n, pg_nr_double())


cdef inline Py_ssize_t panel_width(floating dummy) noexcept nogil:
    """Columns per packed panel for ``floating`` on the current level (``dummy`` only picks
    the type)."""
    if floating is float:
        return pg_nr_float()
    else:
        return pg_nr_double()


cdef inline void pack(const floating* b, Py_ssize_t k, Py_ssize_t n, Py_ssize_t stride_k,
                      Py_ssize_t stride_n, floating* packed) noexcept nogil:
    """Pack B (k, n), element (i, j) at ``b[i*stride_k + j*stride_n]``, into ``packed``."""
    if floating is float:
        pg_pack_float(b, k, n, stride_k, stride_n, packed)
    else:
        pg_pack_double(b, k, n, stride_k, stride_n, packed)


cdef inline void gemm_packed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                             Py_ssize_t lda, const floating* packed, floating* c,
                             Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C (m, n) += A (m, k) . B (k, n)``, with B packed by :func:`pack`."""
    if floating is float:
        pg_gemm_float(m, n, k, a, lda, packed, c, ldc)
    else:
        pg_gemm_double(m, n, k, a, lda, packed, c, ldc)


cdef inline void gemm_packed_bias(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                                  Py_ssize_t lda, const floating* packed, const floating* bias,
                                  floating* c, Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C (m, n) = bias + A (m, k) . B``, ``bias`` (n) added to every row: the
    same sums as filling C with the bias, then :func:`gemm_packed`, without that pass."""
    if floating is float:
        pg_gemm_bias_float(m, n, k, a, lda, packed, bias, c, ldc)
    else:
        pg_gemm_bias_double(m, n, k, a, lda, packed, bias, c, ldc)


cdef inline Py_ssize_t at_b_work_size(floating dummy, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """Elements of work space :func:`gemm_at_b` needs for an (m, n) result."""
    return pg_at_b_work_size(m, n, panel_width(<floating>0))


cdef inline void gemm_at_b(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                           Py_ssize_t lda, const floating* b, Py_ssize_t ldb, floating* c,
                           Py_ssize_t ldc, floating* work) noexcept nogil:
    """Row-major ``C (m, n) += A^T B`` with ``A`` (k, m) and ``B`` (k, n); ``work`` holds
    :func:`at_b_work_size` elements."""
    if floating is float:
        pg_gemm_at_b_float(m, n, k, a, lda, b, ldb, c, ldc, work)
    else:
        pg_gemm_at_b_double(m, n, k, a, lda, b, ldb, c, ldc, work)



cdef inline Py_ssize_t at_b_pair_work_size(floating dummy, Py_ssize_t m, Py_ssize_t n1,
                                           Py_ssize_t n2) noexcept nogil:
    """Elements of work space :func:`gemm_at_b_pair` needs."""
    return pg_at_b_pair_work_size(m, n1, n2, panel_width(<floating>0))


cdef inline void gemm_at_b_pair(Py_ssize_t m, Py_ssize_t k, const floating* a, Py_ssize_t lda,
                                Py_ssize_t n1, const floating* b1, Py_ssize_t ldb1,
                                floating* c1, Py_ssize_t ldc1, Py_ssize_t n2,
                                const floating* b2, Py_ssize_t ldb2, floating* c2,
                                Py_ssize_t ldc2, floating* work) noexcept nogil:
    """``C1 += A^T B1`` and ``C2 += A^T B2`` with one ``A`` (k, m), read from memory once;
    ``work`` holds :func:`at_b_pair_work_size` elements."""
    if floating is float:
        pg_gemm_at_b_pair_float(m, k, a, lda, n1, b1, ldb1, c1, ldc1, n2, b2, ldb2, c2, ldc2, work)
    else:
        pg_gemm_at_b_pair_double(m, k, a, lda, n1, b1, ldb1, c1, ldc1, n2, b2, ldb2, c2, ldc2, work)

# ---- fused steps of the gated cells (float32): the step's product and its gate math per tile

cdef extern from "isa.h" nogil:
    int pg_units()
    Py_ssize_t pg_gates_packed_size(Py_ssize_t k, Py_ssize_t H, int gates)
    void pg_pack_gates_float(const float* b, Py_ssize_t k, Py_ssize_t H, int gates,
                             Py_ssize_t stride_k, Py_ssize_t stride_n, float* packed)
    void pg_lstm_step_float(Py_ssize_t rows, Py_ssize_t H, const float* h_prev,
                            const float* packed, float* z, const float* c_prev, float* c_t,
                            float* h_t, Py_ssize_t u0, Py_ssize_t u1)
    void pg_lstm_grad_step_float(Py_ssize_t rows, Py_ssize_t H, Py_ssize_t K, const float* dz_next,
                                 const float* packed, float* dh, const float* a,
                                 const float* c_t, const float* c_prev, const float* dy_t,
                                 const float* dc_ext, float* dc, float* dz_t, Py_ssize_t u0,
                                 Py_ssize_t u1)
    void pg_gru_step_float(Py_ssize_t rows, Py_ssize_t H, const float* h_prev,
                           const float* packed, const float* b_hn, float* g, float* y_t,
                           Py_ssize_t u0, Py_ssize_t u1)
