/*
 * reduced_gemm.h -- products in reduced precision (bf16, int8) with the weights packed once.
 *
 *   C (rows x n, ldc)  =  (bias or C)  +  A (rows x k, float32, lda) . W^T
 *
 * W (n x k, one row per output unit, PyTorch's layout) is rounded to bf16 or quantized
 * to int8 once by rp_pack; each row of A is rounded or quantized at every call, with a
 * scale of its own (fastrnn._python.reduced defines every rounding; that module is the
 * reference these kernels are tested against). int8 sums are exact int32, so every
 * int8 kernel gives the reference's results bit for bit, whatever its level and
 * however rows are split among threads; the float32 epilogue is written out so that it
 * rounds as the reference does (no contraction into FMA). bf16 sums are float32, in an
 * order fixed by the kernel (bit for bit within a level, within float32 rounding
 * across levels).
 *
 * Kernel levels, chosen at pack time from the float32 level of isa.h and the CPU:
 *   int8:  generic (scalar)                       [more levels: see RP_INT8_*]
 *   bf16:  emulated (bf16 widened to float32)     [more levels: see RP_BF16_*]
 * A packed matrix records the level it was packed for; rp_gemm runs that level's kernel.
 */
#ifndef FASTRNN_REDUCED_GEMM_H
#define FASTRNN_REDUCED_GEMM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "isa.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

enum { RP_BF16 = 1, RP_INT8 = 2 };

/* Kernel levels of each precision (indices into rp_int8_levels / rp_bf16_levels). */
enum { RP_INT8_GENERIC = 0, RP_N_INT8 = 1 };
enum { RP_BF16_EMULATED = 0, RP_N_BF16 = 1 };

/* A weight matrix packed by rp_pack: the caller owns every buffer. */
typedef struct {
    int precision;      /* RP_BF16 or RP_INT8 */
    int level;          /* the kernel level it was packed for */
    ptrdiff_t n, k;     /* W is n x k */
    void *panels;       /* rp_panels_bytes(precision, level, n, k) bytes */
    float *scale;       /* int8: n row scales of W; bf16: unused */
    int32_t *colsum;    /* int8: n sums of W's quantized rows (for offset kernels); bf16: unused */
} rp_matrix;

/* ---- rounding, shared by every level (the scalar definitions of fastrnn._python.reduced) */

static inline uint16_t rp_bf16_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u | 0x00400000u) >> 16);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float rp_bf16_value(uint16_t bits)
{
    uint32_t u = (uint32_t)bits << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* Quantize one row of k values into q (k values, then zeros up to kpad); returns its scale. */
static inline float rp_quantize_row(const float *a, ptrdiff_t k, ptrdiff_t kpad, int8_t *q)
{
    float m = 0.0f, inv, scale;
    for (ptrdiff_t i = 0; i < k; i++) {
        float v = fabsf(a[i]);
        m = (v > m || v != v) ? v : m;      /* NaN wins, as numpy's max */
    }
    scale = m / 127.0f;
    inv = (m > 0.0f && m <= 3.4028234663852886e38f) ? 127.0f / m : 0.0f;
    for (ptrdiff_t i = 0; i < k; i++) {
        float s = a[i] * inv;
        float r = (s - s == 0.0f) ? nearbyintf(s) : 0.0f;   /* non-finite: 0 */
        r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
        q[i] = (int8_t)r;
    }
    for (ptrdiff_t i = k; i < kpad; i++) q[i] = 0;
    return scale;
}

/* ---- generic int8: W kept row by row (n rows of kpad int8), A quantized into scratch */

static inline ptrdiff_t rp_int8_kpad(ptrdiff_t k) { return (k + 3) / 4 * 4; }

static void rp_int8_generic_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                                 void *panels, float *scale, int32_t *colsum)
{
    ptrdiff_t kpad = rp_int8_kpad(k);
    int8_t *q = (int8_t *)panels;
    for (ptrdiff_t j = 0; j < n; j++) {
        int32_t s = 0;
        scale[j] = rp_quantize_row(w + j * ldw, k, kpad, q + j * kpad);
        for (ptrdiff_t i = 0; i < k; i++) s += q[j * kpad + i];
        colsum[j] = s;
    }
}

static void rp_int8_generic_gemm(const rp_matrix *w, ptrdiff_t rows, const float *a,
                                 ptrdiff_t lda, const float *bias, float *c, ptrdiff_t ldc,
                                 void *scratch)
{
    ptrdiff_t k = w->k, kpad = rp_int8_kpad(k);
    const int8_t *qw = (const int8_t *)w->panels;
    int8_t *qa = (int8_t *)scratch;
    for (ptrdiff_t r = 0; r < rows; r++) {
        float sa = rp_quantize_row(a + r * lda, k, kpad, qa);
        for (ptrdiff_t j = 0; j < w->n; j++) {
            int32_t acc = 0;
            for (ptrdiff_t i = 0; i < kpad; i++) acc += (int32_t)qa[i] * qw[j * kpad + i];
            float p = (float)acc * (sa * w->scale[j]);
            c[r * ldc + j] = (bias ? bias[j] : c[r * ldc + j]) + p;
        }
    }
}

/* ---- emulated bf16: W kept row by row as bf16 bits, A rounded into scratch */

static inline ptrdiff_t rp_bf16_kpad(ptrdiff_t k) { return (k + 1) / 2 * 2; }

static void rp_bf16_emulated_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                                  void *panels, float *scale, int32_t *colsum)
{
    ptrdiff_t kpad = rp_bf16_kpad(k);
    uint16_t *b = (uint16_t *)panels;
    (void)scale; (void)colsum;
    for (ptrdiff_t j = 0; j < n; j++)
        for (ptrdiff_t i = 0; i < kpad; i++) b[j * kpad + i] = i < k ? rp_bf16_bits(w[j * ldw + i]) : 0;
}

static void rp_bf16_emulated_gemm(const rp_matrix *w, ptrdiff_t rows, const float *a,
                                  ptrdiff_t lda, const float *bias, float *c, ptrdiff_t ldc,
                                  void *scratch)
{
    ptrdiff_t k = w->k, kpad = rp_bf16_kpad(k);
    const uint16_t *bw = (const uint16_t *)w->panels;
    float *ar = (float *)scratch;
    for (ptrdiff_t r = 0; r < rows; r++) {
        for (ptrdiff_t i = 0; i < kpad; i++) ar[i] = i < k ? rp_bf16_value(rp_bf16_bits(a[r * lda + i])) : 0.0f;
        for (ptrdiff_t j = 0; j < w->n; j++) {
            float acc = 0.0f;
            for (ptrdiff_t i = 0; i < kpad; i++) acc += ar[i] * rp_bf16_value(bw[j * kpad + i]);
            c[r * ldc + j] = (bias ? bias[j] : c[r * ldc + j]) + acc;
        }
    }
}

/* ---- the table of levels */

typedef struct {
    const char *name;
    int (*supported)(void);
    ptrdiff_t (*panels_bytes)(ptrdiff_t n, ptrdiff_t k);
    ptrdiff_t (*scratch_bytes)(ptrdiff_t rows, ptrdiff_t k);
    void (*pack)(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw, void *panels,
                 float *scale, int32_t *colsum);
    void (*gemm)(const rp_matrix *w, ptrdiff_t rows, const float *a, ptrdiff_t lda,
                 const float *bias, float *c, ptrdiff_t ldc, void *scratch);
} rp_level_t;

static int rp_always(void) { return 1; }
static ptrdiff_t rp_int8_generic_bytes(ptrdiff_t n, ptrdiff_t k) { return n * rp_int8_kpad(k); }
static ptrdiff_t rp_int8_generic_scratch(ptrdiff_t rows, ptrdiff_t k) { (void)rows; return rp_int8_kpad(k); }
static ptrdiff_t rp_bf16_emulated_bytes(ptrdiff_t n, ptrdiff_t k) { return 2 * n * rp_bf16_kpad(k); }
static ptrdiff_t rp_bf16_emulated_scratch(ptrdiff_t rows, ptrdiff_t k) { (void)rows; return 4 * rp_bf16_kpad(k); }

static const rp_level_t rp_int8_levels[RP_N_INT8] = {
    { "generic", rp_always, rp_int8_generic_bytes, rp_int8_generic_scratch,
      rp_int8_generic_pack, rp_int8_generic_gemm },
};

static const rp_level_t rp_bf16_levels[RP_N_BF16] = {
    { "emulated", rp_always, rp_bf16_emulated_bytes, rp_bf16_emulated_scratch,
      rp_bf16_emulated_pack, rp_bf16_emulated_gemm },
};

static inline const rp_level_t *rp_table(int precision, int level)
{
    return precision == RP_INT8 ? &rp_int8_levels[level] : &rp_bf16_levels[level];
}

/* The kernel level of `precision` that runs now: the best one the CPU supports that the
   float32 level in use (isa.h, FASTRNN_ISA) allows. */
static int rp_current_level(int precision)
{
    (void)pg_get_level;
    return precision == RP_INT8 ? RP_INT8_GENERIC : RP_BF16_EMULATED;
}

/* Number of kernel levels of `precision` (supported here or not). */
static int rp_n_levels(int precision) { return precision == RP_INT8 ? RP_N_INT8 : RP_N_BF16; }

static const char *rp_level_name(int precision, int level)
{
    return level >= 0 && level < rp_n_levels(precision) ? rp_table(precision, level)->name : "";
}

/* Whether this CPU runs `level` of `precision` (whatever the float32 level in use). */
static int rp_level_supported(int precision, int level)
{
    return level >= 0 && level < rp_n_levels(precision) && rp_table(precision, level)->supported();
}

/* Bytes of W's packed panels at `level`. */
static ptrdiff_t rp_panels_bytes(int precision, int level, ptrdiff_t n, ptrdiff_t k)
{
    return rp_table(precision, level)->panels_bytes(n, k);
}

/* Bytes of scratch one rp_gemm call on `rows` rows needs (per thread). */
static ptrdiff_t rp_scratch_bytes(int precision, int level, ptrdiff_t rows, ptrdiff_t k)
{
    return rp_table(precision, level)->scratch_bytes(rows, k);
}

/* Pack W (n x k, row j at w + j*ldw) into m, whose precision, level, n, k and buffers
   (panels; scale and colsum of n entries for int8) the caller has set. */
static void rp_pack(rp_matrix *m, const float *w, ptrdiff_t ldw)
{
    rp_table(m->precision, m->level)->pack(w, m->n, m->k, ldw, m->panels, m->scale, m->colsum);
}

/* C (rows x n) = (bias ? bias : C) + A (rows x k, lda) . W^T, in m's precision. */
static void rp_gemm(const rp_matrix *m, ptrdiff_t rows, const float *a, ptrdiff_t lda,
                    const float *bias, float *c, ptrdiff_t ldc, void *scratch)
{
    rp_table(m->precision, m->level)->gemm(m, rows, a, lda, bias, c, ldc, scratch);
}

#pragma GCC pop_options

#endif
