"""Row-major GEMM on top of SciPy's BLAS (``scipy.linalg.cython_blas``).

BLAS is column-major. A row-major matrix is the transpose of the same memory
read column-major, so row-major ``C = op(A) op(B)`` is column-major
``C^T = op(B)^T op(A)^T``: :func:`gemm_rowmajor` swaps the operands once, and
kernels are written in row-major terms throughout.
"""

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm_rowmajor(char transa, char transb, int m, int n, int k,
                               floating alpha, const floating* a, int lda,
                               const floating* b, int ldb,
                               floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major ``C = alpha op(A) op(B) + beta C``.

    Parameters
    ----------
    transa, transb : char
        ``c'N'`` or ``c'T'``: whether ``op`` transposes ``A`` / ``B``.
    m, n, k : int
        ``op(A)`` is (m, k), ``op(B)`` is (k, n), ``C`` is (m, n).
    a, b, c : pointer to floating
        Row-major matrices with leading dimensions (row strides) ``lda``,
        ``ldb``, ``ldc``; ``A`` is stored (m, k) if ``transa == c'N'``, else
        (k, m), and likewise ``B``.
    """
    # BLAS rejects a leading dimension of 0, which a zero-sized operand has
    if lda < 1:
        lda = 1
    if ldb < 1:
        ldb = 1
    if ldc < 1:
        ldc = 1
    if floating is float:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float*>b, &ldb,
              <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*>b, &ldb,
              <double*>a, &lda, &beta, c, &ldc)

