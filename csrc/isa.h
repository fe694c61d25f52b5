/*
 * isa.h -- the instruction-set levels of the kernels and the choice among them at run time.
 *
 * Every kernel of gemm_kernels.h and cell_steps.h, and the vector tanh of
 * activations.h, is compiled once per level from the same source, with the
 * level's vector width and target attribute:
 *
 *   level    target                     float lanes   GEMM panel (NR) float/double
 *   avx512   AVX-512 F/VL/BW/DQ + FMA   16 (zmm)      32 / 16
 *   avx2     AVX2 + FMA                 8 (ymm)       16 / 8
 *   generic  the baseline (SSE2)        8 (2 xmm)     16 / 8
 *
 * The packed layouts depend on the level (panel width NR, units per fused-step
 * panel), so callers must take sizes and widths from pg_nr_float(), pg_units() and
 * friends, and pack and run a computation under one level. The level is chosen
 * once (pg_set_level, or the best the CPU supports at first use) and read by every
 * call; change it only while no kernel runs.
 */
#ifndef FASTRNN_ISA_H
#define FASTRNN_ISA_H

#include <stddef.h>
#include <string.h>
#include <immintrin.h>

#include "activations.h"
#include "gemm_kernels.h"
#include "cell_steps.h"

enum { PG_LEVEL_GENERIC = 0, PG_LEVEL_AVX2 = 1, PG_LEVEL_AVX512 = 2, PG_N_LEVELS = 3 };

/* ---- Tile sizes per level, from measurement (python bench/isa_levels.py; medians of
 * interleaved runs, single thread). AMD EPYC Zen 4 (2 cores, AVX-512 executed as two
 * 256-bit halves) measured for avx512 and avx2; the generic level keeps the AVX2 shapes
 * (not tuned: it exists for CPUs without AVX2).
 *   P##_MR         rows per register block of the GEMM (2*MR accumulators)
 *   P##_SPLIT_ROW  a lone row splits its sum into even and odd k (see gemm_kernels.h)
 *   P##_LSTM_ROWS, P##_GRU_ROWS   rows per tile of the fused steps (4 or 2)
 *   P##_ROWS4_MIN_H  the smallest H that takes tiles of 4 rows (if those are 4)
 * The tiles of avx512 and avx2 can be set at build time (CFLAGS=-Dpg_avx512_MR=4) to
 * measure another value.
 */

/* generic: 32-byte vectors compiled for the baseline (gcc splits them into SSE halves) */
typedef float pg_generic_vf __attribute__((vector_size(32)));
typedef double pg_generic_vd __attribute__((vector_size(32)));
typedef int pg_generic_vi __attribute__((vector_size(32)));
#define pg_generic_UNITS 8
#define pg_generic_MR 4
#define pg_generic_SPLIT_ROW 1
#define pg_generic_LSTM_ROWS 2
#define pg_generic_GRU_ROWS 2
#define pg_generic_ROWS4_MIN_H 0
#define PG_ATTR_generic
#define PG_MAX_pg_generic(a, b) pg_generic_select((a) > (b), (a), (b))
#define PG_MIN_pg_generic(a, b) pg_generic_select((a) < (b), (a), (b))
#define PG_TANH_SATURATE_pg_generic(x, c, one, a) PG_TANH_SATURATE_SELECT(pg_generic, x, c, one, a)
#define PG_IN_REGISTERS_pg_generic(b0, b1, b2, b3) ((void)0)
#define PG_IN_REGISTERS3_pg_generic(b0, b1, b2) ((void)0)

/* avx2: 16 ymm registers: MR 4 (8 accumulators) and fused-step tiles of 2 rows (8
   accumulators and 4 weight vectors; a tile of 4 rows would spill), as tuned before the
   levels existed on the project's AVX2 machine. */
typedef float pg_avx2_vf __attribute__((vector_size(32)));
typedef double pg_avx2_vd __attribute__((vector_size(32)));
typedef int pg_avx2_vi __attribute__((vector_size(32)));
#define pg_avx2_UNITS 8
#ifndef pg_avx2_MR
#define pg_avx2_MR 4
#endif
#define pg_avx2_SPLIT_ROW 1
#ifndef pg_avx2_LSTM_ROWS
#define pg_avx2_LSTM_ROWS 2
#endif
#ifndef pg_avx2_GRU_ROWS
#define pg_avx2_GRU_ROWS 2
#endif
#define pg_avx2_ROWS4_MIN_H 0
#define PG_ATTR_avx2 __attribute__((target("avx2,fma")))
#define PG_MAX_pg_avx2(a, b) (pg_avx2_vf)_mm256_max_ps((__m256)(a), (__m256)(b))
#define PG_MIN_pg_avx2(a, b) (pg_avx2_vf)_mm256_min_ps((__m256)(a), (__m256)(b))
#define PG_TANH_SATURATE_pg_avx2(x, c, one, a) PG_TANH_SATURATE_SELECT(pg_avx2, x, c, one, a)
/* Keep the weight vectors of a k in registers for all rows of a tile: left alone, gcc
   reads them from memory once per row, and the loads, not the FMAs, bound the loop
   (measured 1.07x on the AVX2 LSTM step at H = 128). */
#define PG_IN_REGISTERS_pg_avx2(b0, b1, b2, b3) __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3))
#define PG_IN_REGISTERS3_pg_avx2(b0, b1, b2) __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2))

/* avx512: 32 zmm registers. Measured on AMD EPYC Zen 4 (bench/isa_levels.py --clock cpu,
   float32 forward, 1 thread, medians of 4 alternated builds): fused-step tiles of 4 rows
   (16 accumulators for the LSTM, 12 for the GRU) beat tiles of 2 by 4-16% (LSTM S2 282 vs
   293 ms, S5 124 vs 135; GRU S2 216 vs 229, S5 92 vs 107); GEMM blocks of MR = 8 and 12
   rows tie (within 2%), 4 is 1-3% slower: MR 8 (16 accumulators). Software prefetch in
   the LSTM step (the panel 8 or 32 k ahead, or the next block's panel during a tile) gained
   nothing there and is left out. */
typedef float pg_avx512_vf __attribute__((vector_size(64)));
typedef double pg_avx512_vd __attribute__((vector_size(64)));
typedef int pg_avx512_vi __attribute__((vector_size(64)));
#define pg_avx512_UNITS 16
#ifndef pg_avx512_MR
#define pg_avx512_MR 8
#endif
#define pg_avx512_SPLIT_ROW 0
#ifndef pg_avx512_LSTM_ROWS
#define pg_avx512_LSTM_ROWS 4
#endif
#ifndef pg_avx512_GRU_ROWS
#define pg_avx512_GRU_ROWS 4
#endif
/* ...but at small H (a short product per tile, the gate math as long) tiles of 2 rows are
   faster: measured (thread CPU time, medians of 7 interleaved rounds, T*B rows of 32) 2 vs
   4 rows, LSTM H = 32: 1.14-1.29x, 48: 1.08x, 64: 1.09x, 96: 0.97x, 128: 0.98x; GRU 32:
   1.21-1.25x, 48: 1.11x, 64: 1.09x, 96: 1.01x, 128: 1.00x. */
#ifndef pg_avx512_ROWS4_MIN_H
#define pg_avx512_ROWS4_MIN_H 65
#endif
#define PG_ATTR_avx512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define PG_MAX_pg_avx512(a, b) (pg_avx512_vf)_mm512_max_ps((__m512)(a), (__m512)(b))
#define PG_MIN_pg_avx512(a, b) (pg_avx512_vf)_mm512_min_ps((__m512)(a), (__m512)(b))
/* tanh's saturation as two compares into mask registers and two blends: gcc makes each
   select of vectors two masked xors (same lanes chosen, same results) */
#define PG_TANH_SATURATE_pg_avx512(x, c, one, a)                                        \
    (pg_avx512_vf)_mm512_mask_blend_ps(                                                 \
        _mm512_cmp_ps_mask((__m512)(x), (__m512)(c), _CMP_GE_OQ),                       \
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask((__m512)(x), (__m512)(-(c)), _CMP_LE_OQ), \
                             (__m512)(a), (__m512)(-(one))),                            \
        (__m512)(one))
#define PG_IN_REGISTERS_pg_avx512(b0, b1, b2, b3) __asm__("" : "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3))
#define PG_IN_REGISTERS3_pg_avx512(b0, b1, b2) __asm__("" : "+v"(b0), "+v"(b1), "+v"(b2))

#define PG_DEFINE_LEVEL(P, ATTR)                                                        \
    PG_DEFINE_POINTWISE(P, ATTR)                                                        \
    PG_DEFINE_GEMM(P, float, P##_vf, ATTR)                                              \
    PG_DEFINE_GEMM(P, double, P##_vd, ATTR)                                             \
    PG_DEFINE_CELL_STEPS(P, ATTR)

PG_DEFINE_LEVEL(pg_generic, PG_ATTR_generic)
PG_DEFINE_LEVEL(pg_avx2, PG_ATTR_avx2)
PG_DEFINE_LEVEL(pg_avx512, PG_ATTR_avx512)

/* ---- The table of levels */

typedef struct {
    const char *name;
    int nr_float, nr_double, units;
    void (*gemm_float)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t,
                       const float *, const float *, float *, ptrdiff_t);
    void (*gemm_double)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const double *, ptrdiff_t, ptrdiff_t,
                        const double *, const double *, double *, ptrdiff_t);
    void (*at_b_slab_float)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, const float *,
                            ptrdiff_t, const float *, float *, ptrdiff_t);
    void (*at_b_slab_double)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const double *, const double *,
                             ptrdiff_t, const double *, double *, ptrdiff_t);
    void (*lstm_step)(ptrdiff_t, ptrdiff_t, const float *, const float *, float *,
                      const float *, float *, float *, ptrdiff_t, ptrdiff_t);
    void (*lstm_grad_step)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, const float *,
                           float *, const float *, const float *, const float *,
                           const float *, const float *, float *, float *, ptrdiff_t,
                           ptrdiff_t);
    void (*gru_step)(ptrdiff_t, ptrdiff_t, const float *, const float *, const float *,
                     float *, float *, ptrdiff_t, ptrdiff_t);
} pg_level_t;

#define PG_LEVEL_ENTRY(NAME, P)                                                         \
    { NAME, 2 * (int)(sizeof(P##_vf) / sizeof(float)),                                  \
      2 * (int)(sizeof(P##_vd) / sizeof(double)), P##_UNITS,                            \
      P##_gemm_float, P##_gemm_double, P##_gemm_float_at_b_slab,                        \
      P##_gemm_double_at_b_slab, P##_lstm_step, P##_lstm_grad_step, P##_gru_step }

static const pg_level_t pg_levels[PG_N_LEVELS] = {
    PG_LEVEL_ENTRY("generic", pg_generic),
    PG_LEVEL_ENTRY("avx2", pg_avx2),
    PG_LEVEL_ENTRY("avx512", pg_avx512),
};

/* Whether this CPU (and its OS, which must save the wider registers: gcc's cpu
   detection checks XGETBV) runs level `level`. */
static int pg_level_supported(int level)
{
    __builtin_cpu_init();
    switch (level) {
    case PG_LEVEL_GENERIC: return 1;
    case PG_LEVEL_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case PG_LEVEL_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return 0;
    }
}

static int pg_best_level(void)
{
    int level = PG_N_LEVELS - 1;
    while (level > 0 && !pg_level_supported(level)) level--;
    return level;
}

static const char *pg_level_name(int level)
{
    return level >= 0 && level < PG_N_LEVELS ? pg_levels[level].name : "";
}

static int pg_current_level = -1;

/* The level in use (the best supported one until pg_set_level says otherwise). */
static int pg_get_level(void)
{
    if (pg_current_level < 0) pg_current_level = pg_best_level();
    return pg_current_level;
}

/* Use `level` from now on; -1 (and nothing changes) if this CPU lacks it. */
static int pg_set_level(int level)
{
    if (level < 0 || level >= PG_N_LEVELS || !pg_level_supported(level)) return -1;
    pg_current_level = level;
    return 0;
}

static inline const pg_level_t *pg_level(void) { return &pg_levels[pg_get_level()]; }

/* ---- The entry points of packed_gemm.pxd, on the current level */

/* Columns per GEMM panel, and units per panel of the fused steps. */
static int pg_nr_float(void) { return pg_level()->nr_float; }
static int pg_nr_double(void) { return pg_level()->nr_double; }
static int pg_units(void) { return pg_level()->units; }

static void pg_pack_float(const float *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t stride_k,
                          ptrdiff_t stride_n, float *packed)
{
    pg_pack_float_nr(b, k, n, stride_k, stride_n, pg_nr_float(), packed);
}

static void pg_pack_double(const double *b, ptrdiff_t k, ptrdiff_t n, ptrdiff_t stride_k,
                           ptrdiff_t stride_n, double *packed)
{
    pg_pack_double_nr(b, k, n, stride_k, stride_n, pg_nr_double(), packed);
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
    pg_level()->gemm_##T(m, n, k, a, lda, 1, packed, NULL, c, ldc);                     \
}                                                                                       \
/* C (m x n) = bias + A (m x k, lda) . B, bias (n) added to every row. */              \
static void pg_gemm_bias_##T(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a,         \
                             ptrdiff_t lda, const T *packed, const T *bias, T *c,       \
                             ptrdiff_t ldc)                                             \
{                                                                                       \
    pg_level()->gemm_##T(m, n, k, a, lda, 1, packed, bias, c, ldc);                     \
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
    const pg_level_t *level = pg_level();                                               \
    ptrdiff_t nr = pg_nr_##T(), m4 = m - m % 4;                                         \
    T *ap = m > PG_PACK_A_FROM ? work + pg_packed_size(PG_KC, n, nr) : NULL;            \
    for (ptrdiff_t k0 = 0; k0 < k; k0 += PG_KC) {                                       \
        ptrdiff_t kc = k - k0 < PG_KC ? k - k0 : PG_KC;                                 \
        const T *a_slab = a + k0 * lda;                                                 \
        pg_pack_##T##_nr(b + k0 * ldb, kc, n, ldb, 1, nr, work);                        \
        for (ptrdiff_t r = 0; ap && r < m4; r += 4) /* writes in order: 4 KiB strides alias */ \
            for (ptrdiff_t i = 0; i < kc; i++)                                          \
                memcpy(ap + (r * kc + i * 4), a_slab + i * lda + r, 4 * sizeof(T));     \
        level->at_b_slab_##T(m, n, kc, ap, a_slab, lda, work, c, ldc);                  \
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
    const pg_level_t *level = pg_level();                                               \
    ptrdiff_t nr = pg_nr_##T(), m4 = m - m % 4;                                         \
    T *work2 = work + pg_packed_size(PG_KC, n1, nr);                                    \
    T *ap = m > PG_PACK_A_FROM ? work2 + pg_packed_size(PG_KC, n2, nr) : NULL;          \
    for (ptrdiff_t k0 = 0; k0 < k; k0 += PG_KC) {                                       \
        ptrdiff_t kc = k - k0 < PG_KC ? k - k0 : PG_KC;                                 \
        const T *a_slab = a + k0 * lda;                                                 \
        pg_pack_##T##_nr(b1 + k0 * ldb1, kc, n1, ldb1, 1, nr, work);                    \
        pg_pack_##T##_nr(b2 + k0 * ldb2, kc, n2, ldb2, 1, nr, work2);                   \
        for (ptrdiff_t r = 0; ap && r < m4; r += 4)                                     \
            for (ptrdiff_t i = 0; i < kc; i++)                                          \
                memcpy(ap + (r * kc + i * 4), a_slab + i * lda + r, 4 * sizeof(T));     \
        level->at_b_slab_##T(m, n1, kc, ap, a_slab, lda, work, c1, ldc1);               \
        level->at_b_slab_##T(m, n2, kc, ap, a_slab, lda, work2, c2, ldc2);              \
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

/* The fused steps' packing: panels of pg_units() units, the gates of a unit side by side. */
static void pg_pack_gates_float(const float *b, ptrdiff_t k, ptrdiff_t H, int gates,
                                ptrdiff_t stride_k, ptrdiff_t stride_n, float *packed)
{
    pg_pack_gates_units(b, k, H, gates, stride_k, stride_n, pg_units(), packed);
}

static inline ptrdiff_t pg_gates_packed_size(ptrdiff_t k, ptrdiff_t H, int gates)
{
    return pg_gates_packed_size_units(k, H, gates, pg_units());
}

/* One LSTM forward step for units u0:u1 (u0 a multiple of pg_units()); see cell_steps.h. */
static void pg_lstm_step_float(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,
                               const float *packed, float *z, const float *c_prev, float *c_t,
                               float *h_t, ptrdiff_t u0, ptrdiff_t u1)
{
    pg_level()->lstm_step(rows, H, h_prev, packed, z, c_prev, c_t, h_t, u0, u1);
}

/* One LSTM BPTT step for units u0:u1 (u0 a multiple of pg_nr_float()); see cell_steps.h. */
static void pg_lstm_grad_step_float(ptrdiff_t rows, ptrdiff_t H, ptrdiff_t K, const float *dz_next,
                                    const float *packed, float *dh, const float *a,
                                    const float *c_t, const float *c_prev, const float *dy_t,
                                    const float *dc_ext, float *dc, float *dz_t, ptrdiff_t u0,
                                    ptrdiff_t u1)
{
    pg_level()->lstm_grad_step(rows, H, K, dz_next, packed, dh, a, c_t, c_prev, dy_t, dc_ext,
                               dc, dz_t, u0, u1);
}

/* One GRU (reset_after=True) forward step for units u0:u1; see cell_steps.h. */
static void pg_gru_step_float(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,
                              const float *packed, const float *b_hn, float *g, float *y_t,
                              ptrdiff_t u0, ptrdiff_t u1)
{
    pg_level()->gru_step(rows, H, h_prev, packed, b_hn, g, y_t, u0, u1);
}

#endif
