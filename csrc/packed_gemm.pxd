"""The recurrent product with weights packed once per sequence (``packed_gemm.h``).

``pack(B)`` lays a (k, n) matrix out in panels once, before a time loop;
``gemm_packed`` then adds ``A . B`` to ``C`` at every step without repacking.
``gemm_at_b`` adds ``A^T B``: the weight gradients, a long reduction over
every row of a block of steps.
Each output element is summed in an order fixed by the row blocking, which the
shapes decide, never by the thread or column range that computes it.
"""

from cython cimport floating


cdef extern from "packed_gemm.h" nogil:
    int PG_NR_FLOAT
    int PG_NR_DOUBLE
    Py_ssize_t pg_packed_size(Py_ssize_t k, Py_ssize_t n, Py_ssize_t nr)
    void pg_pack_float(const float* b, Py_ssize_t k, Py_ssize_t n, Py_ssize_t stride_k,
                       Py_ssize_t stride_n, float* packed)
    void pg_pack_double(const double* b, Py_ssize_t k, Py_ssize_t n, Py_ssize_t stride_k,
                        Py_ssize_t stride_n, double* packed)
    void pg_gemm_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                       const float* packed, float* c, Py_ssize_t ldc)
    void pg_gemm_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                        Py_ssize_t lda, const double* packed, double* c, Py_ssize_t ldc)
    int PG_KC
    Py_ssize_t pg_at_b_work_size(Py_ssize_t m, Py_ssize_t n, Py_ssize_t nr)
    void pg_gemm_at_b_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                            Py_ssize_t lda, const float* b, Py_ssize_t ldb, float* c,
                            Py_ssize_t ldc, float* work)
    void pg_gemm_at_b_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                             Py_ssize_t lda, const double* b, Py_ssize_t ldb, double* c,
                             Py_ssize_t ldc, double* work)


cdef inline Py_ssize_t packed_size(floating dummy, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """Elements needed to pack a (k, n) matrix of ``floating`` (``dummy`` only picks the type)."""
    if floating is float:
        return pg_packed_size(k, n, PG_NR_FLOAT)
    else:
        return pg_packed_size(k, n, PG_NR_DOUBLE)


cdef inline Py_ssize_t panel_width(floating dummy) noexcept nogil:
    """Columns per packed panel for ``floating`` (``dummy`` only picks the type)."""
    if floating is float:
        return PG_NR_FLOAT
    else:
        return PG_NR_DOUBLE


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
