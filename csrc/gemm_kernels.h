/*
 * gemm_kernels.h -- packing and the register-blocked GEMM micro-kernels, written once and
 * instantiated per instruction-set level by isa.h.
 *
 * In the time loop, the same weight matrix multiplies a small block of rows at
 * every step (B x H times H x G*H). A BLAS call repacks that matrix on every
 * call, which at few rows costs as much as the arithmetic (measured on this
 * project's machine: OpenBLAS reaches 12-25 GFLOP/s single-threaded on
 * 16x1024 . 1024x1024, this kernel 35). So the weights are packed once, before
 * the loop, into panels of NR columns (two vectors of the level), and every step
 * runs a register-blocked micro-kernel over them.
 *
 *   C (m x n, row-major, leading dimension ldc)  +=  A (m x k)  .  B (k x n)
 *
 * A is read through two strides, so the same kernel serves A and A^T. B is
 * given packed: panel p holds columns p*NR .. p*NR+NR-1 of B, k rows of NR
 * contiguous values, zero-padded past column n.
 *
 * Order of the sums. Rows go by blocks of P##_MR, then of 4, then one by one.
 * In a block each element is one chain of multiply-adds over k = 0, 1, ...
 * With P##_SPLIT_ROW set (the AVX2 and generic levels) a lone row splits its
 * chain into even and odd k (with one row the two accumulators would wait on
 * each other's FMA latency), so its result depends on whether the row falls in
 * a block, which the callers' row ranges, fixed by the shapes, decide. Without
 * it (AVX-512: a zmm FMA's latency is hidden by the others' issue), every
 * element is the same chain whatever the blocking.
 *
 * A level P provides, before PG_DEFINE_GEMM(P, ...): the vector types P##_vf and
 * P##_vd (two of each make a panel), P##_MR and P##_SPLIT_ROW.
 */
#ifndef FASTRNN_GEMM_KERNELS_H
#define FASTRNN_GEMM_KERNELS_H

#include <stddef.h>
#include <string.h>

/* Number of elements the packed form of a (k x n) matrix needs. */
static inline ptrdiff_t pg_packed_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t nr)
{
    return ((n + nr - 1) / nr) * nr * k;
}

/* Pack B (k x n), element (i, j) at b[i*stride_k + j*stride_n], into panels of nr columns. */
#define PG_DEFINE_PACK(T)                                                               \
static void pg_pack_##T##_nr(const T *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t stride_k,  \
                             ptrdiff_t stride_n, ptrdiff_t nr, T *packed)               \
{                                                                                       \
    ptrdiff_t panels = (n + nr - 1) / nr;                                               \
    for (ptrdiff_t p = 0; p < panels; p++)                                              \
        for (ptrdiff_t i = 0; i < k; i++)                                               \
            for (ptrdiff_t c = 0; c < nr; c++) {                                        \
                ptrdiff_t j = p * nr + c;                                               \
                packed[(p * k + i) * nr + c] = j < n ? b[i * stride_k + j * stride_n] : (T)0; \
            }                                                                           \
}
PG_DEFINE_PACK(float)
PG_DEFINE_PACK(double)

/* MR rows of A times one panel: 2*MR vector accumulators stay in registers. */
/* The loops over the rows of a block unrolled in full, so that gcc keeps the accumulators
   in registers rather than in a stack array it zeroes (rep stos) on every call. */
#define PG_UNROLL _Pragma("GCC unroll 16")

#define PG_BLOCK_BODY(T, V, NR, MR)                                                     \
    V acc0[MR], acc1[MR];                                                               \
    PG_UNROLL for (int r = 0; r < MR; r++) { acc0[r] = (V){0}; acc1[r] = (V){0}; }      \
    for (ptrdiff_t i = 0; i < k; i++) {                                                 \
        V b0, b1;                                                                       \
        memcpy(&b0, panel + i * NR, sizeof(V));                                         \
        memcpy(&b1, panel + i * NR + NR / 2, sizeof(V));                                \
        PG_UNROLL for (int r = 0; r < MR; r++) {                                        \
            T a_ri = a[r * a_row + i * a_col];                                          \
            acc0[r] += a_ri * b0;                                                       \
            acc1[r] += a_ri * b1;                                                       \
        }                                                                               \
    }                                                                                   \
    if (ncols == NR) { /* a full panel: add whole vectors (the scalar tail below is slow) */ \
        PG_UNROLL for (int r = 0; r < MR; r++) {                                        \
            V c0, c1;                                                                   \
            memcpy(&c0, bias ? bias : c + r * ldc, sizeof(V));                          \
            memcpy(&c1, bias ? bias + NR / 2 : c + r * ldc + NR / 2, sizeof(V));        \
            c0 += acc0[r];                                                              \
            c1 += acc1[r];                                                              \
            memcpy(c + r * ldc, &c0, sizeof(V));                                        \
            memcpy(c + r * ldc + NR / 2, &c1, sizeof(V));                               \
        }                                                                               \
    } else                                                                              \
    PG_UNROLL for (int r = 0; r < MR; r++) {                                            \
        /* copies, not &acc0[r]: an address taken keeps the accumulators on the stack  \
           (gcc then zeroes them there on every call) */                                \
        T sums[NR];                                                                     \
        V s0 = acc0[r], s1 = acc1[r];                                                   \
        memcpy(sums, &s0, sizeof(V));                                                   \
        memcpy(sums + NR / 2, &s1, sizeof(V));                                          \
        for (int j = 0; j < ncols; j++) c[r * ldc + j] = (bias ? bias[j] : c[r * ldc + j]) + sums[j]; \
    }

/* One row of A times one panel, even and odd k in separate accumulators, added at the end. */
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
    if (ncols == NR) {                                                                  \
        V c0, c1;                                                                       \
        memcpy(&c0, bias ? bias : c, sizeof(V));                                        \
        memcpy(&c1, bias ? bias + NR / 2 : c + NR / 2, sizeof(V));                      \
        c0 += even0;                                                                    \
        c1 += even1;                                                                    \
        memcpy(c, &c0, sizeof(V));                                                      \
        memcpy(c + NR / 2, &c1, sizeof(V));                                             \
    } else {                                                                            \
        T sums[NR];                                                                     \
        memcpy(sums, &even0, sizeof(V));                                                \
        memcpy(sums + NR / 2, &even1, sizeof(V));                                       \
        for (int j = 0; j < ncols; j++) c[j] = (bias ? bias[j] : c[j]) + sums[j];       \
    }

/* Rows of the result per block in the A^T B slabs: PG_MC x PG_KC of packed A
   (128 KiB in float32) stay in L2 while the panels of B pass over them. */
#define PG_MC 128

#define PG_SPLIT_ROW_BODY_1(T, V, NR) PG_ROW_BODY(T, V, NR)
#define PG_SPLIT_ROW_BODY_0(T, V, NR) PG_BLOCK_BODY(T, V, NR, 1)
#define PG_LONE_ROW_BODY(SPLIT, T, V, NR) PG_SPLIT_ROW_BODY_##SPLIT(T, V, NR)
#define PG_LONE_ROW(SPLIT, T, V, NR) PG_LONE_ROW_BODY(SPLIT, T, V, NR)

/* Level P's GEMM over element type T, vector V: P##_gemm_##T and P##_gemm_##T##_at_b_slab.
   A's element (r, i) is a[r * a_row + i * a_col]. */
#define PG_DEFINE_GEMM(P, T, V, ATTR)                                                   \
/* bias NULL: C += A B; else C = bias + A B, bias (n) the same for every row (it saves a   \
   pass that fills C with the bias first; same sums, same result). */                     \
ATTR static void P##_gemm_##T##_rowsmr(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,    \
                                       const T *panel, ptrdiff_t k, const T *bias, T *c, \
                                       ptrdiff_t ldc, int ncols)                        \
{ PG_BLOCK_BODY(T, V, (2 * (int)(sizeof(V) / sizeof(T))), P##_MR) }                     \
ATTR static void P##_gemm_##T##_rows4(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,     \
                                      const T *panel, ptrdiff_t k, const T *bias, T *c, \
                                      ptrdiff_t ldc, int ncols)                         \
{ PG_BLOCK_BODY(T, V, (2 * (int)(sizeof(V) / sizeof(T))), 4) }                          \
ATTR static void P##_gemm_##T##_rows1(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,     \
                                      const T *panel, ptrdiff_t k, const T *bias, T *c, \
                                      ptrdiff_t ldc, int ncols)                         \
{ (void)a_row; PG_LONE_ROW(P##_SPLIT_ROW, T, V, (2 * (int)(sizeof(V) / sizeof(T)))) }    \
ATTR static void P##_gemm_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a,         \
                              ptrdiff_t a_row, ptrdiff_t a_col, const T *packed,         \
                              const T *bias, T *c, ptrdiff_t ldc)                        \
{                                                                                       \
    const ptrdiff_t NR = 2 * (ptrdiff_t)(sizeof(V) / sizeof(T));                         \
    ptrdiff_t panels = (n + NR - 1) / NR;                                               \
    for (ptrdiff_t p = 0; p < panels; p++) {                                            \
        const T *panel = packed + p * k * NR;                                           \
        const T *bias_p = bias ? bias + p * NR : NULL;                                  \
        int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                           \
        ptrdiff_t r = 0;                                                                \
        if (P##_MR != 4)                                                                \
            for (; r + P##_MR <= m; r += P##_MR)                                        \
                P##_gemm_##T##_rowsmr(a + r * a_row, a_row, a_col, panel, k, bias_p,     \
                                      c + r * ldc + p * NR, ldc, ncols);                \
        for (; r + 4 <= m; r += 4)                                                      \
            P##_gemm_##T##_rows4(a + r * a_row, a_row, a_col, panel, k, bias_p,          \
                                 c + r * ldc + p * NR, ldc, ncols);                     \
        for (; r < m; r++)                                                              \
            P##_gemm_##T##_rows1(a + r * a_row, a_row, a_col, panel, k, bias_p,          \
                                 c + r * ldc + p * NR, ldc, ncols);                     \
    }                                                                                   \
}                                                                                       \
/* C (m x n) += A^T B over one slab of kc rows of A (kc x m, lda) and of B (packed). With   \
   ap not NULL, A's first columns, by four, are packed there (block j: ap[(j*kc + i)*4 + r] \
   holds A(i, 4j + r)), so that each block streams through contiguous memory; the last    \
   m % 4 columns, and all of them with ap NULL, are read in place. */                      \
ATTR static void P##_gemm_##T##_at_b_slab(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kc,        \
                                          const T *ap, const T *a, ptrdiff_t lda,        \
                                          const T *packed, T *c, ptrdiff_t ldc)          \
{                                                                                       \
    const ptrdiff_t NR = 2 * (ptrdiff_t)(sizeof(V) / sizeof(T));                         \
    ptrdiff_t panels = (n + NR - 1) / NR, m4 = m - m % 4;                               \
    /* rows by blocks of PG_MC, so that a block of A stays in L2 while every panel of B \
       (in L1) passes over it: same sums, in the same order, as panel by panel */       \
    for (ptrdiff_t r0 = 0; r0 < m4; r0 += PG_MC) {                                      \
        ptrdiff_t r1 = m4 - r0 < PG_MC ? m4 : r0 + PG_MC;                               \
        for (ptrdiff_t p = 0; p < panels; p++) {                                        \
            int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                       \
            for (ptrdiff_t r = r0; r < r1; r += 4)                                      \
                P##_gemm_##T##_rows4(ap ? ap + r * kc : a + r, 1, ap ? 4 : lda,          \
                                     packed + p * kc * NR, kc, NULL, c + r * ldc + p * NR, \
                                     ldc, ncols);                                       \
        }                                                                               \
    }                                                                                   \
    for (ptrdiff_t p = 0; p < panels; p++) {                                            \
        ptrdiff_t r = m4;                                                               \
        int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                           \
        for (; r < m; r++)                                                              \
            P##_gemm_##T##_rows1(a + r, 1, lda, packed + p * kc * NR, kc, NULL,          \
                                 c + r * ldc + p * NR, ldc, ncols);                     \
    }                                                                                   \
}

#endif
