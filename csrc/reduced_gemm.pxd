"""Products in reduced precision (``reduced_gemm.h``): weights rounded to bf16 or quantized to
int8 once (``rp_pack``), each row of the left operand rounded or quantized per call with a
scale of its own (``rp_gemm``). ``fastrnn._python.reduced`` is the reference that defines
every rounding; the int8 kernels equal it bit for bit.
"""

from libc.stdint cimport int32_t


cdef extern from "reduced_gemm.h" nogil:
    enum:
        RP_BF16
        RP_INT8
    ctypedef struct rp_matrix:
        int precision
        int level
        Py_ssize_t n
        Py_ssize_t k
        void* panels
        float* scale
        int32_t* colsum
    int rp_current_level(int precision)
    const char* rp_level_name(int precision, int level)
    int rp_n_levels(int precision)
    int rp_level_supported(int precision, int level)
    Py_ssize_t rp_panels_bytes(int precision, int level, Py_ssize_t n, Py_ssize_t k)
    Py_ssize_t rp_scratch_bytes(int precision, int level, Py_ssize_t rows, Py_ssize_t k)
    Py_ssize_t rp_column_align(int precision, int level)
    rp_matrix rp_columns(const rp_matrix* m, Py_ssize_t j0, Py_ssize_t count)
    void rp_pack(rp_matrix* m, const float* w, Py_ssize_t ldw)
    void rp_gemm(const rp_matrix* m, Py_ssize_t rows, const float* a, Py_ssize_t lda,
                 const float* bias, float* c, Py_ssize_t ldc, void* scratch)
    Py_ssize_t rp_prepared_bytes(int precision, int level, Py_ssize_t rows, Py_ssize_t k)
    void rp_prepare(const rp_matrix* m, Py_ssize_t rows, const float* a, Py_ssize_t lda,
                    void* prep)
    void rp_gemm_prepared(const rp_matrix* m, Py_ssize_t rows, const void* prep,
                          const float* bias, float* c, Py_ssize_t ldc)
    void rp_pack_transposed(rp_matrix* m, const float* wt, Py_ssize_t ldwt)
    void rp_pack_transposed_rows(const rp_matrix* m, Py_ssize_t i0, Py_ssize_t i1,
                                 const float* wt, Py_ssize_t ldwt)
    void rp_prepare_transposed(const rp_matrix* m, Py_ssize_t rows, const float* at,
                               Py_ssize_t ldat, void* prep)
    void rp_prepare_transposed_sums(const rp_matrix* m, Py_ssize_t rows, const float* at,
                                    Py_ssize_t ldat, void* prep, float* sums)
