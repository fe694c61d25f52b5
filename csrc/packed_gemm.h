/*
 * packed_gemm.h -- the recurrent product of fastrnn with its weights packed once per sequence.
 *
 * In the time loop, the same weight matrix multiplies a small block of rows at
 * every step (B x H times H x G*H). A BLAS call repacks that matrix on every
 * call, which at few rows costs as much as the arithmetic (measured on this
 * project's machine: OpenBLAS reaches 12-25 GFLOP/s single-threaded on
 * 16x1024 . 1024x1024, this kernel 35). So the weights are packed once, before
 * the loop, into panels of PG_NR columns, and every step runs a register-blocked
 * micro-kernel over them.
 *
 *   C (m x n, row-major, leading dimension ldc)  +=  A (m x k)  .  B (k x n)
 *
 * A is read through two strides, so the same kernel serves A and A^T. B is
 * given packed: panel p holds columns p*NR .. p*NR+NR-1 of B, k rows of NR
 * contiguous values, zero-padded past column n. Each output element is summed
 * in an order fixed by whether its row falls in a block of four rows, never by
 * the thread or the column range that computes it.
 *
 * pg_gemm_at_b_* computes the weight gradients C += A^T B (A of shape (k, m),
 * k = all the rows of a block of steps): it packs B a slab of PG_KC rows at a
 * time, so that a slab of B stays in the L1/L2 cache while A passes over it.
 *
 * The AVX2+FMA variant is chosen at run time; the generic variant is the same
 * source compiled for the baseline instruction set.
 */
#ifndef FASTRNN_PACKED_GEMM_H
#define FASTRNN_PACKED_GEMM_H

#include <stddef.h>
#include <string.h>

/* Two 32-byte vectors make the width of a panel. */
typedef float pg_vf __attribute__((vector_size(32)));
typedef double pg_vd __attribute__((vector_size(32)));
#define PG_NR_FLOAT 16
#define PG_NR_DOUBLE 8

/* Number of elements the packed form of a (k x n) matrix needs. */
static inline ptrdiff_t pg_packed_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t nr)
{
    return ((n + nr - 1) / nr) * nr * k;
}

/* Pack B (k x n), element (i, j) at b[i*stride_k + j*stride_n], into panels of nr columns. */
#define PG_DEFINE_PACK(T, NAME, NR)                                                     \
static void NAME(const T *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t stride_k,              \
                 ptrdiff_t stride_n, T *packed)                                         \
{                                                                                       \
    ptrdiff_t panels = (n + NR - 1) / NR;                                               \
    for (ptrdiff_t p = 0; p < panels; p++)                                              \
        for (ptrdiff_t i = 0; i < k; i++)                                               \
            for (ptrdiff_t c = 0; c < NR; c++) {                                        \
                ptrdiff_t j = p * NR + c;                                               \
                packed[(p * k + i) * NR + c] = j < n ? b[i * stride_k + j * stride_n] : (T)0; \
            }                                                                           \
}

/* MR rows of A times one panel: 2*MR vector accumulators stay in registers. */
#define PG_BLOCK_BODY(T, V, NR, MR)                                                     \
    V acc0[MR], acc1[MR];                                                               \
    for (int r = 0; r < MR; r++) { acc0[r] = (V){0}; acc1[r] = (V){0}; }                \
    for (ptrdiff_t i = 0; i < k; i++) {                                                 \
        V b0, b1;                                                                       \
        memcpy(&b0, panel + i * NR, sizeof(V));                                         \
        memcpy(&b1, panel + i * NR + NR / 2, sizeof(V));                                \
        for (int r = 0; r < MR; r++) {                                                  \
            T a_ri = a[r * a_row + i * a_col];                                          \
            acc0[r] += a_ri * b0;                                                       \
            acc1[r] += a_ri * b1;                                                       \
        }                                                                               \
    }                                                                                   \
    for (int r = 0; r < MR; r++) {                                                      \
        T sums[NR];                                                                     \
        memcpy(sums, &acc0[r], sizeof(V));                                              \
        memcpy(sums + NR / 2, &acc1[r], sizeof(V));                                     \
        for (int j = 0; j < ncols; j++) c[r * ldc + j] += sums[j];                      \
    }

/* One row of A times one panel. With a single row the two accumulators of
   PG_BLOCK_BODY would wait on each other's FMA latency, so even and odd k go
   to separate accumulators, added at the end (a fixed order: the result of a
   row depends only on whether it falls in a block of four or not, which the
   batch chunks, fixed by the shapes, decide). */
#define PG_ROW_BODY(T, V, NR)                                                           \
    V even0 = (V){0}, even1 = (V){0}, odd0 = (V){0}, odd1 = (V){0};                     \
    ptrdiff_t i = 0;                                                                    \
    for (; i + 2 <= k; i += 2) {                                                        \
        V b0, b1, b2, b3;                                                               \
        memcpy(&b0, panel + i * NR, sizeof(V));                                         \
        memcpy(&b1, panel + i * NR + NR / 2, sizeof(V));                                \
        memcpy(&b2, panel + (i + 1) * NR, sizeof(V));                                   \
        memcpy(&b3, panel + (i + 1) * NR + NR / 2, sizeof(V));                          \
        T a_even = a[i * a_col], a_odd = a[(i + 1) * a_col];                            \
        even0 += a_even * b0;                                                           \
        even1 += a_even * b1;                                                           \
        odd0 += a_odd * b2;                                                             \
        odd1 += a_odd * b3;                                                             \
    }                                                                                   \
    if (i < k) {                                                                        \
        V b0, b1;                                                                       \
        memcpy(&b0, panel + i * NR, sizeof(V));                                         \
        memcpy(&b1, panel + i * NR + NR / 2, sizeof(V));                                \
        even0 += a[i * a_col] * b0;                                                     \
        even1 += a[i * a_col] * b1;                                                     \
    }                                                                                   \
    even0 += odd0;                                                                      \
    even1 += odd1;                                                                      \
    {                                                                                   \
        T sums[NR];                                                                     \
        memcpy(sums, &even0, sizeof(V));                                                \
        memcpy(sums + NR / 2, &even1, sizeof(V));                                       \
        for (int j = 0; j < ncols; j++) c[j] += sums[j];                                \
    }

/* A's element (r, i) is a[r * a_row + i * a_col]. */
#define PG_DEFINE_GEMM(T, V, NR, NAME, ATTR)                                            \
ATTR static void NAME##_rows4(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,             \
                              const T *panel, ptrdiff_t k, T *c, ptrdiff_t ldc,         \
                              int ncols) { PG_BLOCK_BODY(T, V, NR, 4) }                  \
ATTR static void NAME##_rows1(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,             \
                              const T *panel, ptrdiff_t k, T *c, ptrdiff_t ldc,         \
                              int ncols) { PG_ROW_BODY(T, V, NR) }                       \
ATTR static void NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a, ptrdiff_t a_row, \
                      ptrdiff_t a_col, const T *packed, T *c, ptrdiff_t ldc)            \
{                                                                                       \
    ptrdiff_t panels = (n + NR - 1) / NR;                                               \
    for (ptrdiff_t p = 0; p < panels; p++) {                                            \
        const T *panel = packed + p * k * NR;                                           \
        int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                           \
        ptrdiff_t r = 0;                                                                \
        for (; r + 4 <= m; r += 4)                                                      \
            NAME##_rows4(a + r * a_row, a_row, a_col, panel, k, c + r * ldc + p * NR, ldc, ncols); \
        for (; r < m; r++)                                                              \
            NAME##_rows1(a + r * a_row, a_row, a_col, panel, k, c + r * ldc + p * NR, ldc, ncols); \
    }                                                                                   \
}

PG_DEFINE_PACK(float, pg_pack_float, PG_NR_FLOAT)
PG_DEFINE_PACK(double, pg_pack_double, PG_NR_DOUBLE)
PG_DEFINE_GEMM(float, pg_vf, PG_NR_FLOAT, pg_gemm_float_avx2, __attribute__((target("avx2,fma"))))
PG_DEFINE_GEMM(float, pg_vf, PG_NR_FLOAT, pg_gemm_float_generic, )
PG_DEFINE_GEMM(double, pg_vd, PG_NR_DOUBLE, pg_gemm_double_avx2, __attribute__((target("avx2,fma"))))
PG_DEFINE_GEMM(double, pg_vd, PG_NR_DOUBLE, pg_gemm_double_generic, )

static int pg_cpu_has_avx2_fma(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return known;
}

/* Rows of B packed per slab in pg_gemm_at_b_*: a slab of panels stays in cache. */
#define PG_KC 256
/* From this many result rows on, pg_gemm_at_b_* transposes slabs of A. */
#define PG_TRANSPOSE_FROM 256

#define PG_DEFINE_DISPATCH(T)                                                           \
/* C (m x n) += A (m x k, lda) . B, with B packed by pg_pack_##T. */                   \
static void pg_gemm_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a, ptrdiff_t lda, \
                        const T *packed, T *c, ptrdiff_t ldc)                           \
{                                                                                       \
    if (pg_cpu_has_avx2_fma()) pg_gemm_##T##_avx2(m, n, k, a, lda, 1, packed, c, ldc);  \
    else pg_gemm_##T##_generic(m, n, k, a, lda, 1, packed, c, ldc);                     \
}                                                                                       \
/* C (m x n) += A^T B, A (k x m, lda) and B (k x n, ldb) row-major; work holds        \
   pg_at_b_work_size(m, n, NR) elements. Each slab of PG_KC rows of B is packed.      \
   Small m reads A in place, across rows; larger m first transposes the slab of A,   \
   which pays once its rows no longer fit in cache (measured: 36 GFLOP/s against    \
   24 at m = n = 512; in place wins below m = 256). */                               \
static void pg_gemm_at_b_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a,         \
                             ptrdiff_t lda, const T *b, ptrdiff_t ldb, T *c, ptrdiff_t ldc, \
                             T *work)                                                   \
{                                                                                       \
    int avx2 = pg_cpu_has_avx2_fma();                                                   \
    ptrdiff_t nr = (ptrdiff_t)(32 / sizeof(T)) * 2;                                     \
    T *a_t = work + pg_packed_size(PG_KC, n, nr);                                       \
    for (ptrdiff_t k0 = 0; k0 < k; k0 += PG_KC) {                                       \
        ptrdiff_t kc = k - k0 < PG_KC ? k - k0 : PG_KC;                                 \
        const T *a_slab = a + k0 * lda;                                                 \
        ptrdiff_t a_row = 1, a_col = lda;                                               \
        pg_pack_##T(b + k0 * ldb, kc, n, ldb, 1, work);                                 \
        if (m > PG_TRANSPOSE_FROM) {                                                    \
            for (ptrdiff_t i = 0; i < kc; i++)                                          \
                for (ptrdiff_t r = 0; r < m; r++)                                       \
                    a_t[r * kc + i] = a_slab[i * lda + r];                              \
            a_slab = a_t; a_row = kc; a_col = 1;                                        \
        }                                                                               \
        if (avx2) pg_gemm_##T##_avx2(m, n, kc, a_slab, a_row, a_col, work, c, ldc);     \
        else pg_gemm_##T##_generic(m, n, kc, a_slab, a_row, a_col, work, c, ldc);       \
    }                                                                                   \
}

/* Work space of pg_gemm_at_b_*: a packed slab of B and a transposed slab of A. */
static inline ptrdiff_t pg_at_b_work_size(ptrdiff_t m, ptrdiff_t n, ptrdiff_t nr)
{
    return pg_packed_size(PG_KC, n, nr) + m * PG_KC;
}

PG_DEFINE_DISPATCH(float)
PG_DEFINE_DISPATCH(double)

#endif
