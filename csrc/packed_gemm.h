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
 * pg_gemm_bias_* writes C = bias + A . B instead (the input projection).
 *
 * pg_gemm_at_b_* computes the weight gradients C += A^T B (A of shape (k, m),
 * k = all the rows of a block of steps): it packs B a slab of PG_KC rows at a
 * time, so that a slab of B stays in the L1/L2 cache while A passes over it;
 * pg_gemm_at_b_pair_* does two of them that share A (dW_ih and dW_hh).
 *
 * The fused steps of the gated cells (float32, at the end of this file) run a
 * step's recurrent product and its gate math tile by tile, with a vector copy
 * of activations.pxd's float32 tanh.
 *
 * The AVX2+FMA variant is chosen at run time; the generic variant is the same
 * source compiled for the baseline instruction set.
 */
#ifndef FASTRNN_PACKED_GEMM_H
#define FASTRNN_PACKED_GEMM_H

#include <stddef.h>
#include <string.h>
#include <immintrin.h>

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
    if (ncols == NR) { /* a full panel: add whole vectors (the scalar tail below is slow) */ \
        for (int r = 0; r < MR; r++) {                                                  \
            V c0, c1;                                                                   \
            memcpy(&c0, bias ? bias : c + r * ldc, sizeof(V));                          \
            memcpy(&c1, bias ? bias + NR / 2 : c + r * ldc + NR / 2, sizeof(V));        \
            c0 += acc0[r];                                                              \
            c1 += acc1[r];                                                              \
            memcpy(c + r * ldc, &c0, sizeof(V));                                        \
            memcpy(c + r * ldc + NR / 2, &c1, sizeof(V));                               \
        }                                                                               \
    } else                                                                              \
    for (int r = 0; r < MR; r++) {                                                      \
        T sums[NR];                                                                     \
        memcpy(sums, &acc0[r], sizeof(V));                                              \
        memcpy(sums + NR / 2, &acc1[r], sizeof(V));                                     \
        for (int j = 0; j < ncols; j++) c[r * ldc + j] = (bias ? bias[j] : c[r * ldc + j]) + sums[j]; \
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

/* Rows of the result per block in pg_gemm_at_b_*'s slabs: PG_MC x PG_KC of packed A
   (128 KiB in float32) stay in L2 while the panels of B pass over them. */
#define PG_MC 128

/* A's element (r, i) is a[r * a_row + i * a_col]. */
#define PG_DEFINE_GEMM(T, V, NR, NAME, ATTR)                                            \
/* bias NULL: C += A B; else C = bias + A B, bias (n) the same for every row (it saves a   \
   pass that fills C with the bias first; same sums, same result). */                     \
ATTR static void NAME##_rows4(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,             \
                              const T *panel, ptrdiff_t k, const T *bias, T *c,         \
                              ptrdiff_t ldc, int ncols) { PG_BLOCK_BODY(T, V, NR, 4) }   \
ATTR static void NAME##_rows1(const T *a, ptrdiff_t a_row, ptrdiff_t a_col,             \
                              const T *panel, ptrdiff_t k, const T *bias, T *c,         \
                              ptrdiff_t ldc, int ncols) { PG_ROW_BODY(T, V, NR) }        \
ATTR static void NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a, ptrdiff_t a_row, \
                      ptrdiff_t a_col, const T *packed, const T *bias, T *c, ptrdiff_t ldc) \
{                                                                                       \
    ptrdiff_t panels = (n + NR - 1) / NR;                                               \
    for (ptrdiff_t p = 0; p < panels; p++) {                                            \
        const T *panel = packed + p * k * NR;                                           \
        const T *bias_p = bias ? bias + p * NR : NULL;                                  \
        int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                           \
        ptrdiff_t r = 0;                                                                \
        for (; r + 4 <= m; r += 4)                                                      \
            NAME##_rows4(a + r * a_row, a_row, a_col, panel, k, bias_p, c + r * ldc + p * NR, \
                         ldc, ncols);                                                   \
        for (; r < m; r++)                                                              \
            NAME##_rows1(a + r * a_row, a_row, a_col, panel, k, bias_p, c + r * ldc + p * NR, \
                         ldc, ncols);                                                   \
    }                                                                                   \
}                                                                                       \
/* C (m x n) += A^T B over one slab of kc rows of A (kc x m, lda) and of B (packed). With   \
   ap not NULL, A's first columns, by four, are packed there (block j: ap[(j*kc + i)*4 + r] \
   holds A(i, 4j + r)), so that each block streams through contiguous memory; the last    \
   m % 4 columns, and all of them with ap NULL, are read in place. */                      \
ATTR static void NAME##_at_b_slab(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kc, const T *ap,    \
                                  const T *a, ptrdiff_t lda, const T *packed, T *c,       \
                                  ptrdiff_t ldc)                                          \
{                                                                                       \
    ptrdiff_t panels = (n + NR - 1) / NR, m4 = m - m % 4;                               \
    /* rows by blocks of PG_MC, so that a block of A stays in L2 while every panel of B \
       (in L1) passes over it: same sums, in the same order, as panel by panel */       \
    for (ptrdiff_t r0 = 0; r0 < m4; r0 += PG_MC) {                                      \
        ptrdiff_t r1 = m4 - r0 < PG_MC ? m4 : r0 + PG_MC;                               \
        for (ptrdiff_t p = 0; p < panels; p++) {                                        \
            int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                       \
            for (ptrdiff_t r = r0; r < r1; r += 4)                                      \
                NAME##_rows4(ap ? ap + r * kc : a + r, 1, ap ? 4 : lda, packed + p * kc * NR, \
                             kc, NULL, c + r * ldc + p * NR, ldc, ncols);               \
        }                                                                               \
    }                                                                                   \
    for (ptrdiff_t p = 0; p < panels; p++) {                                            \
        ptrdiff_t r = m4;                                                               \
        int ncols = (int)(n - p * NR < NR ? n - p * NR : NR);                           \
        for (; r < m; r++)                                                              \
            NAME##_rows1(a + r, 1, lda, packed + p * kc * NR, kc, NULL, c + r * ldc + p * NR, \
                         ldc, ncols);                                                   \
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
/* From this many result rows on, pg_gemm_at_b_* packs slabs of A. */
#define PG_PACK_A_FROM 256

#define PG_DEFINE_DISPATCH(T)                                                           \
/* C (m x n) += A (m x k, lda) . B, with B packed by pg_pack_##T. */                   \
static void pg_gemm_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a, ptrdiff_t lda, \
                        const T *packed, T *c, ptrdiff_t ldc)                           \
{                                                                                       \
    if (pg_cpu_has_avx2_fma()) pg_gemm_##T##_avx2(m, n, k, a, lda, 1, packed, NULL, c, ldc); \
    else pg_gemm_##T##_generic(m, n, k, a, lda, 1, packed, NULL, c, ldc);               \
}                                                                                       \
/* C (m x n) = bias + A (m x k, lda) . B, bias (n) added to every row. */              \
static void pg_gemm_bias_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a,         \
                             ptrdiff_t lda, const T *packed, const T *bias, T *c,       \
                             ptrdiff_t ldc)                                             \
{                                                                                       \
    if (pg_cpu_has_avx2_fma()) pg_gemm_##T##_avx2(m, n, k, a, lda, 1, packed, bias, c, ldc); \
    else pg_gemm_##T##_generic(m, n, k, a, lda, 1, packed, bias, c, ldc);               \
}                                                                                       \
/* C (m x n) += A^T B, A (k x m, lda) and B (k x n, ldb) row-major; work holds        \
   pg_at_b_work_size(m, n, NR) elements. Each slab of PG_KC rows of B is packed. Small  \
   m reads A in place, across rows; larger m first packs A's columns by four (see       \
   at_b_slab), which pays once A's rows no longer fit in cache (measured: packed 1.26x  \
   faster than in place at m = 512, n = 128; in place 1.15x faster at m = 128). */      \
static void pg_gemm_at_b_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a,        \
                             ptrdiff_t lda, const T *b, ptrdiff_t ldb, T *c, ptrdiff_t ldc, \
                             T *work)                                                   \
{                                                                                       \
    int avx2 = pg_cpu_has_avx2_fma();                                                   \
    ptrdiff_t nr = (ptrdiff_t)(32 / sizeof(T)) * 2, m4 = m - m % 4;                     \
    T *ap = m > PG_PACK_A_FROM ? work + pg_packed_size(PG_KC, n, nr) : NULL;            \
    for (ptrdiff_t k0 = 0; k0 < k; k0 += PG_KC) {                                       \
        ptrdiff_t kc = k - k0 < PG_KC ? k - k0 : PG_KC;                                 \
        const T *a_slab = a + k0 * lda;                                                 \
        pg_pack_##T(b + k0 * ldb, kc, n, ldb, 1, work);                                 \
        for (ptrdiff_t r = 0; ap && r < m4; r += 4) /* writes in order: 4 KiB strides alias */ \
            for (ptrdiff_t i = 0; i < kc; i++)                                          \
                memcpy(ap + (r * kc + i * 4), a_slab + i * lda + r, 4 * sizeof(T));     \
        if (avx2) pg_gemm_##T##_avx2_at_b_slab(m, n, kc, ap, a_slab, lda, work, c, ldc); \
        else pg_gemm_##T##_generic_at_b_slab(m, n, kc, ap, a_slab, lda, work, c, ldc);  \
    }                                                                                   \
}                                                                                       \
/* C1 (m x n1) += A^T B1 and C2 (m x n2) += A^T B2 with the same A (k x m, lda): as two   \
   pg_gemm_at_b_* calls, but each slab of A is read from memory once, then from cache   \
   (dW_ih and dW_hh share dz; measured: LSTM BPTT 1.03x faster at H = D = 32). work   \
   holds pg_at_b_pair_work_size(m, n1, n2, NR) elements. */                            \
static void pg_gemm_at_b_pair_##T(ptrdiff_t m, ptrdiff_t k, const T *a, ptrdiff_t lda,  \
                                  ptrdiff_t n1, const T *b1, ptrdiff_t ldb1, T *c1,     \
                                  ptrdiff_t ldc1, ptrdiff_t n2, const T *b2,            \
                                  ptrdiff_t ldb2, T *c2, ptrdiff_t ldc2, T *work)       \
{                                                                                       \
    int avx2 = pg_cpu_has_avx2_fma();                                                   \
    ptrdiff_t nr = (ptrdiff_t)(32 / sizeof(T)) * 2, m4 = m - m % 4;                     \
    T *work2 = work + pg_packed_size(PG_KC, n1, nr);                                    \
    T *ap = m > PG_PACK_A_FROM ? work2 + pg_packed_size(PG_KC, n2, nr) : NULL;          \
    for (ptrdiff_t k0 = 0; k0 < k; k0 += PG_KC) {                                       \
        ptrdiff_t kc = k - k0 < PG_KC ? k - k0 : PG_KC;                                 \
        const T *a_slab = a + k0 * lda;                                                 \
        pg_pack_##T(b1 + k0 * ldb1, kc, n1, ldb1, 1, work);                             \
        pg_pack_##T(b2 + k0 * ldb2, kc, n2, ldb2, 1, work2);                            \
        for (ptrdiff_t r = 0; ap && r < m4; r += 4)                                     \
            for (ptrdiff_t i = 0; i < kc; i++)                                          \
                memcpy(ap + (r * kc + i * 4), a_slab + i * lda + r, 4 * sizeof(T));     \
        if (avx2) {                                                                     \
            pg_gemm_##T##_avx2_at_b_slab(m, n1, kc, ap, a_slab, lda, work, c1, ldc1);   \
            pg_gemm_##T##_avx2_at_b_slab(m, n2, kc, ap, a_slab, lda, work2, c2, ldc2);  \
        } else {                                                                        \
            pg_gemm_##T##_generic_at_b_slab(m, n1, kc, ap, a_slab, lda, work, c1, ldc1); \
            pg_gemm_##T##_generic_at_b_slab(m, n2, kc, ap, a_slab, lda, work2, c2, ldc2); \
        }                                                                               \
    }                                                                                   \
}

/* Work space of pg_gemm_at_b_pair_*: two packed slabs of B and a packed slab of A. */
static inline ptrdiff_t pg_at_b_pair_work_size(ptrdiff_t m, ptrdiff_t n1, ptrdiff_t n2, ptrdiff_t nr)
{
    return pg_packed_size(PG_KC, n1, nr) + pg_packed_size(PG_KC, n2, nr) + m * PG_KC;
}

/* Work space of pg_gemm_at_b_*: a packed slab of B and a packed slab of A. */
static inline ptrdiff_t pg_at_b_work_size(ptrdiff_t m, ptrdiff_t n, ptrdiff_t nr)
{
    return pg_packed_size(PG_KC, n, nr) + m * PG_KC;
}

PG_DEFINE_DISPATCH(float)
PG_DEFINE_DISPATCH(double)

/* ---- Fused steps of the gated cells (float32 only; float64 keeps libm's tanh).
 *
 * A step's recurrent product and its gate math run tile by tile: the
 * pre-activations of a few rows and PG_UNITS hidden units never leave the
 * registers before they are activated (measured on an LSTM step with 32
 * rows: 1.6x faster than the product followed by the pointwise pass at
 * H = 32, 1.15x at H = 128). The weights are packed per block of
 * PG_UNITS units with the gates of those units side by side (pg_pack_gates),
 * so one tile holds every gate of its units.
 *
 * Each output element is a single chain of multiply-adds from its initial
 * value over k = 0, 1, ..., in that order, whatever the tile, the rows or the
 * thread that computes it: results do not depend on the blocking.
 */
#define PG_UNITS 8
typedef int pg_vi __attribute__((vector_size(32)));

/* Pack the (k, gates*H) matrix B, element (i, j) at b[i*stride_k + j*stride_n], in panels of
   PG_UNITS units: panel p, row i holds [B(i, q*H + p*PG_UNITS + u) for q < gates, u < PG_UNITS]
   (zero past unit H). */
static void pg_pack_gates_float(const float *b, ptrdiff_t k, ptrdiff_t H, int gates,
                                ptrdiff_t stride_k, ptrdiff_t stride_n, float *packed)
{
    ptrdiff_t panels = (H + PG_UNITS - 1) / PG_UNITS;
    for (ptrdiff_t p = 0; p < panels; p++)
        for (ptrdiff_t i = 0; i < k; i++)
            for (int q = 0; q < gates; q++)
                for (int u = 0; u < PG_UNITS; u++) {
                    ptrdiff_t unit = p * PG_UNITS + u;
                    *packed++ = unit < H ? b[i * stride_k + (q * H + unit) * stride_n] : 0.0f;
                }
}

static inline ptrdiff_t pg_gates_packed_size(ptrdiff_t k, ptrdiff_t H, int gates)
{
    return (H + PG_UNITS - 1) / PG_UNITS * PG_UNITS * gates * k;
}

/* Pointwise helpers, defined once per instruction set (an inline function must have the
   target of its caller). The tanh is activations.pxd's: same coefficients, same Horner
   order (contracted to FMAs in the AVX2 variant); at most 5 ulp from tanh in float32. */
#define PG_DEFINE_POINTWISE(P, ATTR)                                                    \
ATTR static inline pg_vf P##_load(const float *p, int w)                               \
{                                                                                       \
    pg_vf v = (pg_vf){0};                                                               \
    if (w == PG_UNITS) memcpy(&v, p, sizeof v); else memcpy(&v, p, w * sizeof(float));  \
    return v;                                                                           \
}                                                                                       \
ATTR static inline void P##_store(float *p, pg_vf v, int w)                            \
{                                                                                       \
    if (w == PG_UNITS) memcpy(p, &v, sizeof v); else memcpy(p, &v, w * sizeof(float));  \
}                                                                                       \
/* mask ? a : b, for a mask from a vector compare */                                   \
ATTR static inline pg_vf P##_select(pg_vi mask, pg_vf a, pg_vf b)                      \
{                                                                                       \
    return (pg_vf)((mask & (pg_vi)a) | (~mask & (pg_vi)b));                             \
}                                                                                       \
ATTR static inline pg_vf P##_max(pg_vf a, pg_vf b) { return PG_MAX_##P(a, b); }     \
ATTR static inline pg_vf P##_min(pg_vf a, pg_vf b) { return PG_MIN_##P(a, b); }     \
ATTR static inline pg_vf P##_tanh(pg_vf x)                                             \
{                                                                                       \
    const pg_vf c = (pg_vf){0} + 7.90531110763549805f, one = (pg_vf){0} + 1.0f;         \
    pg_vf clamped = P##_min(c, P##_max(-c, x));  /* NaN stays NaN */                   \
    pg_vf s = clamped * clamped;                                                        \
    pg_vf p = ((((((-1.1909507123285503e-13f * s + 6.4781839914057922e-11f) * s         \
                  - 2.2517512644196932e-08f) * s + 1.1687812133285447e-05f) * s         \
                + 3.1534958223068282e-03f) * s + 1.3127998539521096e-01f) * s           \
              + 9.9999999853935240e-01f);                                               \
    pg_vf q = (((2.6191039455341708e-04f * s + 2.4691291033990908e-02f) * s             \
               + 4.6461330295547648e-01f) * s + 1.0f);                                  \
    pg_vf approx = clamped * p / q;                                                     \
    /* past the clamp tanh rounds to +-1 exactly; NaN fails both tests and stays NaN */ \
    return P##_select(x >= c, one, P##_select(x <= -c, -one, approx));                  \
}                                                                                       \
ATTR static inline pg_vf P##_sigmoid(pg_vf x)                                          \
{                                                                                       \
    return 0.5f + 0.5f * P##_tanh(0.5f * x);                                            \
}

/* max(a, b) and min(a, b) as x86's maxps/minps: b when either is NaN */
#define PG_MAX_pg_avx2(a, b) (pg_vf)_mm256_max_ps((__m256)(a), (__m256)(b))
#define PG_MIN_pg_avx2(a, b) (pg_vf)_mm256_min_ps((__m256)(a), (__m256)(b))
/* Keep the weight vectors of a k in registers for both rows: left alone, gcc reads
   them from memory once per row, and the loads, not the FMAs, bound the loop
   (measured 1.07x on the LSTM step at H = 128). */
#define PG_IN_REGISTERS_pg_avx2(b0, b1, b2, b3) __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3))
#define PG_IN_REGISTERS_pg_generic(b0, b1, b2, b3) ((void)0)
#define PG_IN_REGISTERS3_pg_avx2(b0, b1, b2) __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2))
#define PG_IN_REGISTERS3_pg_generic(b0, b1, b2) ((void)0)
#define PG_MAX_pg_generic(a, b) pg_generic_select((a) > (b), (a), (b))
#define PG_MIN_pg_generic(a, b) pg_generic_select((a) < (b), (a), (b))
PG_DEFINE_POINTWISE(pg_avx2, __attribute__((target("avx2,fma"))))
PG_DEFINE_POINTWISE(pg_generic, )

/* LSTM forward step: z (rows, 4H) holds x W_ih^T + b on entry and the activated gates
   [i, f, g, o] on exit; c_t (may be c_prev) and h_t (rows, H) are written. Only units u0:u1
   (u0 a multiple of PG_UNITS) are done, so threads may share the columns. Rows go in pairs:
   8 accumulators, 4 vectors of weights loaded once per k for both rows (named variables,
   not arrays: gcc keeps arrays of vectors on the stack). */
#define PG_LSTM_GATE_MATH(P, ACC_I, ACC_F, ACC_G, ACC_O, ROW)                           \
    {                                                                                   \
        float *z_m = z + (ROW) * G + u;                                                 \
        pg_vf i_ = P##_sigmoid(ACC_I), f_ = P##_sigmoid(ACC_F);                         \
        pg_vf g_ = P##_tanh(ACC_G), o_ = P##_sigmoid(ACC_O);                            \
        pg_vf c_ = f_ * P##_load(c_prev + (ROW) * H + u, w) + i_ * g_;                  \
        P##_store(z_m, i_, w);                                                          \
        P##_store(z_m + H, f_, w);                                                      \
        P##_store(z_m + 2 * H, g_, w);                                                  \
        P##_store(z_m + 3 * H, o_, w);                                                  \
        P##_store(c_t + (ROW) * H + u, c_, w);                                          \
        P##_store(h_t + (ROW) * H + u, o_ * P##_tanh(c_), w);                           \
    }

#define PG_LOAD_GATES(P, ROW, A0, A1, A2, A3)                                           \
    pg_vf A0 = P##_load(z + (ROW) * G + u, w), A1 = P##_load(z + (ROW) * G + H + u, w); \
    pg_vf A2 = P##_load(z + (ROW) * G + 2 * H + u, w), A3 = P##_load(z + (ROW) * G + 3 * H + u, w);

#define PG_DEFINE_LSTM_STEP(P, ATTR)                                                    \
ATTR static void P##_lstm_step(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,       \
                               const float *packed, float *z, const float *c_prev,      \
                               float *c_t, float *h_t, ptrdiff_t u0, ptrdiff_t u1)      \
{                                                                                       \
    ptrdiff_t G = 4 * H;                                                                \
    for (ptrdiff_t u = u0; u < u1; u += PG_UNITS) {                                     \
        const float *panel = packed + u * 4 * H;                                        \
        int w = (int)(u1 - u < PG_UNITS ? u1 - u : PG_UNITS);                           \
        ptrdiff_t r = 0;                                                                \
        for (; r + 2 <= rows; r += 2) {                                                 \
            PG_LOAD_GATES(P, r, i0, f0, g0, o0)                                         \
            PG_LOAD_GATES(P, r + 1, i1, f1, g1, o1)                                     \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                pg_vf b0, b1, b2, b3;                                                   \
                const float *pk = panel + k * 4 * PG_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + PG_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * PG_UNITS, sizeof b2);                              \
                memcpy(&b3, pk + 3 * PG_UNITS, sizeof b3);                              \
                PG_IN_REGISTERS_##P(b0, b1, b2, b3);                                    \
                float a0 = a[k], a1 = a[H + k];                                         \
                i0 += a0 * b0; f0 += a0 * b1; g0 += a0 * b2; o0 += a0 * b3;             \
                i1 += a1 * b0; f1 += a1 * b1; g1 += a1 * b2; o1 += a1 * b3;             \
            }                                                                           \
            PG_LSTM_GATE_MATH(P, i0, f0, g0, o0, r)                                     \
            PG_LSTM_GATE_MATH(P, i1, f1, g1, o1, r + 1)                                 \
        }                                                                               \
        if (r < rows) {                                                                 \
            PG_LOAD_GATES(P, r, i0, f0, g0, o0)                                         \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                pg_vf b0, b1, b2, b3;                                                   \
                const float *pk = panel + k * 4 * PG_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + PG_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * PG_UNITS, sizeof b2);                              \
                memcpy(&b3, pk + 3 * PG_UNITS, sizeof b3);                              \
                float a0 = a[k];                                                        \
                i0 += a0 * b0; f0 += a0 * b1; g0 += a0 * b2; o0 += a0 * b3;             \
            }                                                                           \
            PG_LSTM_GATE_MATH(P, i0, f0, g0, o0, r)                                     \
        }                                                                               \
    }                                                                                   \
}

PG_DEFINE_LSTM_STEP(pg_avx2, __attribute__((target("avx2,fma"))))
PG_DEFINE_LSTM_STEP(pg_generic, )

/* LSTM BPTT step (one per batch chunk and step t, backwards): for units u0:u1 of every row,
   dh_t = dz_{t+1} W_hh (dz_next, rows x K, K = 4H, times W_hh (4H x H) packed by
   pg_pack_float, PG_NR_FLOAT units per panel) and, still in registers, the gate gradients of
   step t: dz_t from the activated gates a, c_t, c_{t-1}, dy_t (NULL: none) and dc (dc_{t-1}
   on exit); dc_ext (NULL: none) is added to dc. With dz_next NULL, dh holds dh_t (the last
   step). With a NULL, only the product is done and stored into dh (dh_0 = dz_0 W_hh, after
   the loop). With a projection the product is dm_t = dh_t W_hr instead: dz_next is dh_t
   (rows x K, K = P), W_hr (P x H) packed, and dy_t NULL. Rows go by four: 8 accumulators,
   as pg_gemm's micro-kernel. */
#define PG_LSTM_GRAD_HALF(P, ACC, ROW, U, W)                                            \
    if ((W) > 0) {                                                                      \
        ptrdiff_t o_ = (ROW) * H + (U);                                                 \
        if (a == NULL) P##_store(dh + o_, ACC, W);                                      \
        else {                                                                          \
            const float *a_ = a + (ROW) * G + (U);                                      \
            pg_vf one = (pg_vf){0} + 1.0f;                                              \
            pg_vf i_ = P##_load(a_, W), f_ = P##_load(a_ + H, W);                       \
            pg_vf g_ = P##_load(a_ + 2 * H, W), o = P##_load(a_ + 3 * H, W);            \
            pg_vf dh_ = ACC;                                                            \
            if (dy_t != NULL) dh_ += P##_load(dy_t + o_, W);                            \
            pg_vf dc_ = P##_load(dc + o_, W);                                           \
            if (dc_ext != NULL) dc_ += P##_load(dc_ext + o_, W);                        \
            pg_vf tc = P##_tanh(P##_load(c_t + o_, W));                                 \
            pg_vf do_ = dh_ * tc;                                                       \
            dc_ = dc_ + dh_ * o * (one - tc * tc);                                      \
            pg_vf di = dc_ * g_, dg = dc_ * i_, df = dc_ * P##_load(c_prev + o_, W);    \
            float *dz_ = dz_t + (ROW) * G + (U);                                        \
            P##_store(dz_, di * i_ * (one - i_), W);                                    \
            P##_store(dz_ + H, df * f_ * (one - f_), W);                                \
            P##_store(dz_ + 2 * H, dg * (one - g_ * g_), W);                            \
            P##_store(dz_ + 3 * H, do_ * o * (one - o), W);                             \
            P##_store(dc + o_, dc_ * f_, W);                                            \
        }                                                                               \
    }

#define PG_LSTM_GRAD_INIT(P, ROW, LO, HI)                                                  \
    pg_vf LO = (pg_vf){0}, HI = (pg_vf){0};                                             \
    if (dz_next == NULL) { LO = P##_load(dh + (ROW) * H + u, w0);                      \
                           HI = P##_load(dh + (ROW) * H + u + PG_UNITS, w1); }

#define PG_DEFINE_LSTM_GRAD_STEP(P, ATTR)                                               \
ATTR static void P##_lstm_grad_step(ptrdiff_t rows, ptrdiff_t H, ptrdiff_t K,           \
                                    const float *dz_next, const float *packed,          \
                                    float *dh, const float *a,                          \
                                    const float *c_t, const float *c_prev,              \
                                    const float *dy_t, const float *dc_ext, float *dc,  \
                                    float *dz_t, ptrdiff_t u0, ptrdiff_t u1)            \
{                                                                                       \
    ptrdiff_t G = 4 * H;                                                                \
    for (ptrdiff_t u = u0; u < u1; u += 2 * PG_UNITS) {                                 \
        const float *panel = packed + u * K;                                            \
        ptrdiff_t left = u1 - u;                                                        \
        int w0 = (int)(left < PG_UNITS ? left : PG_UNITS);                              \
        int w1 = (int)(left - w0 < PG_UNITS ? left - w0 : PG_UNITS);                    \
        ptrdiff_t r = 0;                                                                \
        for (; r + 4 <= rows; r += 4) {                                                 \
            PG_LSTM_GRAD_INIT(P, r, l0, h0) PG_LSTM_GRAD_INIT(P, r + 1, l1, h1)                \
            PG_LSTM_GRAD_INIT(P, r + 2, l2, h2) PG_LSTM_GRAD_INIT(P, r + 3, l3, h3)            \
            if (dz_next != NULL) {                                                      \
                const float *d = dz_next + r * K;                                       \
                for (ptrdiff_t k = 0; k < K; k++) {                                     \
                    pg_vf b0, b1;                                                       \
                    memcpy(&b0, panel + k * 2 * PG_UNITS, sizeof b0);                   \
                    memcpy(&b1, panel + k * 2 * PG_UNITS + PG_UNITS, sizeof b1);        \
                    float d0 = d[k], d1 = d[K + k], d2 = d[2 * K + k], d3 = d[3 * K + k]; \
                    l0 += d0 * b0; h0 += d0 * b1; l1 += d1 * b0; h1 += d1 * b1;         \
                    l2 += d2 * b0; h2 += d2 * b1; l3 += d3 * b0; h3 += d3 * b1;         \
                }                                                                       \
            }                                                                           \
            PG_LSTM_GRAD_HALF(P, l0, r, u, w0) PG_LSTM_GRAD_HALF(P, h0, r, u + PG_UNITS, w1) \
            PG_LSTM_GRAD_HALF(P, l1, r + 1, u, w0) PG_LSTM_GRAD_HALF(P, h1, r + 1, u + PG_UNITS, w1) \
            PG_LSTM_GRAD_HALF(P, l2, r + 2, u, w0) PG_LSTM_GRAD_HALF(P, h2, r + 2, u + PG_UNITS, w1) \
            PG_LSTM_GRAD_HALF(P, l3, r + 3, u, w0) PG_LSTM_GRAD_HALF(P, h3, r + 3, u + PG_UNITS, w1) \
        }                                                                               \
        for (; r < rows; r++) {                                                         \
            PG_LSTM_GRAD_INIT(P, r, l0, h0)                                             \
            if (dz_next != NULL) {                                                      \
                const float *d = dz_next + r * K;                                       \
                for (ptrdiff_t k = 0; k < K; k++) {                                     \
                    pg_vf b0, b1;                                                       \
                    memcpy(&b0, panel + k * 2 * PG_UNITS, sizeof b0);                   \
                    memcpy(&b1, panel + k * 2 * PG_UNITS + PG_UNITS, sizeof b1);        \
                    l0 += d[k] * b0; h0 += d[k] * b1;                                   \
                }                                                                       \
            }                                                                           \
            PG_LSTM_GRAD_HALF(P, l0, r, u, w0) PG_LSTM_GRAD_HALF(P, h0, r, u + PG_UNITS, w1) \
        }                                                                               \
    }                                                                                   \
}

PG_DEFINE_LSTM_GRAD_STEP(pg_avx2, __attribute__((target("avx2,fma"))))
PG_DEFINE_LSTM_GRAD_STEP(pg_generic, )

/* GRU forward step, reset_after=True: g (rows, 4H) holds the projection [x_r, x_z, x_n]
   (biases in) on entry and [r, z, n, hn] on exit, h_t is written to y_t. The accumulators
   of r and z start from the projection, that of hn from b_hn. Units u0:u1 only. */
#define PG_GRU_GATE_MATH(P, ACC_R, ACC_Z, ACC_HN, ROW)                                  \
    {                                                                                   \
        float *g_m = g + (ROW) * G + u;                                                 \
        pg_vf r_ = P##_sigmoid(ACC_R), z_ = P##_sigmoid(ACC_Z);                         \
        pg_vf n_ = P##_tanh(P##_load(g_m + 2 * H, w) + r_ * ACC_HN);                    \
        pg_vf h_ = ((pg_vf){0} + 1.0f - z_) * n_ + z_ * P##_load(h_prev + (ROW) * H + u, w); \
        P##_store(g_m, r_, w);                                                          \
        P##_store(g_m + H, z_, w);                                                      \
        P##_store(g_m + 2 * H, n_, w);                                                  \
        P##_store(g_m + 3 * H, ACC_HN, w);                                              \
        P##_store(y_t + (ROW) * H + u, h_, w);                                          \
    }

#define PG_DEFINE_GRU_STEP(P, ATTR)                                                     \
ATTR static void P##_gru_step(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,        \
                              const float *packed, const float *b_hn, float *g,         \
                              float *y_t, ptrdiff_t u0, ptrdiff_t u1)                   \
{                                                                                       \
    ptrdiff_t G = 4 * H;                                                                \
    for (ptrdiff_t u = u0; u < u1; u += PG_UNITS) {                                     \
        const float *panel = packed + u * 3 * H;                                        \
        int w = (int)(u1 - u < PG_UNITS ? u1 - u : PG_UNITS);                           \
        pg_vf bias_n = P##_load(b_hn + u, w);                                           \
        ptrdiff_t r = 0;                                                                \
        for (; r + 2 <= rows; r += 2) {                                                 \
            pg_vf r0 = P##_load(g + r * G + u, w), z0 = P##_load(g + r * G + H + u, w); \
            pg_vf r1 = P##_load(g + (r + 1) * G + u, w);                                \
            pg_vf z1 = P##_load(g + (r + 1) * G + H + u, w);                            \
            pg_vf n0 = bias_n, n1 = bias_n;                                             \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                pg_vf b0, b1, b2;                                                       \
                const float *pk = panel + k * 3 * PG_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + PG_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * PG_UNITS, sizeof b2);                              \
                PG_IN_REGISTERS3_##P(b0, b1, b2);                                       \
                float a0 = a[k], a1 = a[H + k];                                         \
                r0 += a0 * b0; z0 += a0 * b1; n0 += a0 * b2;                            \
                r1 += a1 * b0; z1 += a1 * b1; n1 += a1 * b2;                            \
            }                                                                           \
            PG_GRU_GATE_MATH(P, r0, z0, n0, r)                                          \
            PG_GRU_GATE_MATH(P, r1, z1, n1, r + 1)                                      \
        }                                                                               \
        if (r < rows) {                                                                 \
            pg_vf r0 = P##_load(g + r * G + u, w), z0 = P##_load(g + r * G + H + u, w); \
            pg_vf n0 = bias_n;                                                          \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                pg_vf b0, b1, b2;                                                       \
                const float *pk = panel + k * 3 * PG_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + PG_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * PG_UNITS, sizeof b2);                              \
                r0 += a[k] * b0; z0 += a[k] * b1; n0 += a[k] * b2;                      \
            }                                                                           \
            PG_GRU_GATE_MATH(P, r0, z0, n0, r)                                          \
        }                                                                               \
    }                                                                                   \
}

PG_DEFINE_GRU_STEP(pg_avx2, __attribute__((target("avx2,fma"))))
PG_DEFINE_GRU_STEP(pg_generic, )

/* One LSTM forward step for units u0:u1 of rows (rows, 4H) etc.; see PG_LSTM_TILE. */
static void pg_lstm_step_float(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,
                               const float *packed, float *z, const float *c_prev, float *c_t,
                               float *h_t, ptrdiff_t u0, ptrdiff_t u1)
{
    if (pg_cpu_has_avx2_fma()) pg_avx2_lstm_step(rows, H, h_prev, packed, z, c_prev, c_t, h_t, u0, u1);
    else pg_generic_lstm_step(rows, H, h_prev, packed, z, c_prev, c_t, h_t, u0, u1);
}


/* One LSTM BPTT step for units u0:u1 (u0 a multiple of PG_NR_FLOAT); see PG_DEFINE_LSTM_GRAD_STEP. */
static void pg_lstm_grad_step_float(ptrdiff_t rows, ptrdiff_t H, ptrdiff_t K, const float *dz_next,
                                    const float *packed, float *dh, const float *a,
                                    const float *c_t, const float *c_prev, const float *dy_t,
                                    const float *dc_ext, float *dc, float *dz_t, ptrdiff_t u0,
                                    ptrdiff_t u1)
{
    if (pg_cpu_has_avx2_fma())
        pg_avx2_lstm_grad_step(rows, H, K, dz_next, packed, dh, a, c_t, c_prev, dy_t, dc_ext, dc, dz_t, u0, u1);
    else
        pg_generic_lstm_grad_step(rows, H, K, dz_next, packed, dh, a, c_t, c_prev, dy_t, dc_ext, dc, dz_t, u0, u1);
}

/* One GRU (reset_after=True) forward step for units u0:u1; see PG_DEFINE_GRU_STEP. */
static void pg_gru_step_float(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,
                              const float *packed, const float *b_hn, float *g, float *y_t,
                              ptrdiff_t u0, ptrdiff_t u1)
{
    if (pg_cpu_has_avx2_fma()) pg_avx2_gru_step(rows, H, h_prev, packed, b_hn, g, y_t, u0, u1);
    else pg_generic_gru_step(rows, H, h_prev, packed, b_hn, g, y_t, u0, u1);
}

#endif
