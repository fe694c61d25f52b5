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
 * order fixed by the kernel (bit for bit within a level, whatever the rows computed
 * together; within float32 rounding across levels).
 *
 * Kernel levels, chosen at pack time from the float32 level of isa.h and the CPU (a
 * packed matrix records its level and always runs that level's kernel):
 *
 *   int8  avx512_vnni  vpdpbusd, zmm        float level avx512 and the CPU has AVX512_VNNI
 *         avx2         vpmaddubsw+vpmaddwd  float level avx2 or avx512
 *         generic      scalar               otherwise
 *   bf16  avx512_bf16  vdpbf16ps, zmm       float level avx512 and the CPU has AVX512_BF16
 *         emulated     bf16 widened to float32 by a shift, float32 multiply-adds (ymm with
 *                      FMA under the avx2 and avx512 float levels, else the baseline)
 *
 * Layout of the vector levels ("panels"): W's rows quantized or rounded, then cut into
 * panels of NR output columns (two vectors of 32-bit lanes: 32 for zmm, 16 for ymm); a
 * panel holds, for each group of 4 consecutive k (int8) or 2 (bf16), one 32-bit word per
 * column, so that one vector load feeds a vector of columns and one 32-bit broadcast of
 * an activation row feeds it a group:
 *
 *   word (p, g, c) = W[p*NR + c][g*G .. g*G+G-1]  at panels + ((p * groups + g) * NR + c) * 4
 *
 * with zeros past k and past n. Each call prepares A's rows, by chunks of RP_CHUNK, into
 * the scratch in the same words (int8: quantized, plus 128 for vpdpbusd, which multiplies
 * unsigned by signed bytes -- the sum of W's row, colsum, takes the 128s back out; bf16:
 * rounded), then runs the chunk over column blocks of panels (at most RP_BLOCK_BYTES of
 * W, in L2) one after the other: in a block, each block of MR rows passes over all its
 * panels, so that it writes its rows of C in runs of the block's width, and W streams from
 * memory once per chunk. rp_prepare / rp_gemm_prepared split the two halves, so that the
 * row blocks of one product (the layers' W_hh, cut for threads) share one preparation.
 *
 * The last rows of a chunk (fewer than 4) run 4 panels at once: a lone row times one panel
 * is 2 chains of DOTs waiting on each other's latency, times 4 panels 8 chains. Blocks of
 * MR rows prefetch the next panel (it streams from L3 or memory). Every
 * element is one chain over k in order whatever the blocking, so bf16 results, too, do not
 * depend on which rows are computed together.
 *
 * Measured (python bench/reduced_gemm.py --all-levels --clock cpu: medians of 7
 * interleaved rounds, 1 thread, AMD EPYC Zen 4 with AVX512_VNNI and AVX512_BF16, 2 cores
 * shared with other work), G op/s (2 rows n k per product) and the ratio to NumPy's
 * float32 a @ W^T + bias (OpenBLAS, 1 thread):
 *
 *   k x n      rows  f32 numpy   int8 vnni      int8 avx2     bf16 avx512    bf16 emulated
 *   128x512       1     26.6      54.5 (2.05x)   49.1 (1.85x)   43.8 (1.64x)   39.8 (1.49x)
 *   128x512      64     79.0     315.4 (3.99x)  108.0 (1.37x)  198.5 (2.51x)   72.1 (0.91x)
 *   512x2048     16     44.4     383.4 (8.63x)  121.9 (2.75x)  206.5 (4.65x)   70.3 (1.58x)
 *   512x2048    256     84.4     352.1 (4.17x)  124.7 (1.48x)  189.4 (2.25x)   72.7 (0.86x)
 *   1024x4096     1     12.5     139.0 (11.1x)  102.9 (8.22x)   58.5 (4.67x)   42.5 (3.39x)
 *   1024x4096    16     35.3     373.1 (10.6x)  117.1 (3.32x)  187.0 (5.29x)   68.3 (1.93x)
 *   1024x4096    64     69.0     354.2 (5.14x)  125.0 (1.81x)  204.3 (2.96x)   73.0 (1.06x)
 *   1024x4096   256     88.1     376.9 (4.28x)  126.5 (1.44x)  208.4 (2.37x)   73.9 (0.84x)
 *
 * Whole layers (reduced_layers.pxi), forward, 1 thread, same CPU (AMD EPYC Zen 4, 2 cores,
 * AVX512_VNNI and AVX512_BF16), medians of interleaved runs (ms; LSTM against ONNX Runtime's
 * int8 DynamicQuantizeLSTM; GRU reset_after; ratios = float32 time / ours):
 *
 *   shape (T,B,D,H)          float32  int8           bf16           ORT int8
 *   LSTM S4 100,32,128,128     10.36    3.62 (2.86x)   5.27 (1.97x)   4.85 (ORT/int8 1.33)
 *   LSTM S2 100,64,512,512    261.8    74.2  (3.53x)  134.3 (1.95x)   93.8 (1.26)
 *   LSTM S5 50,16,512,1024    114.4    29.0  (3.95x)   50.6 (2.26x)   30.9 (1.06)
 *   GRU  S4                     7.79    2.75 (2.84x)   4.14 (1.88x)
 *   GRU  S2                   209.9    59.1  (3.55x)  114.3 (1.84x)
 *   GRU  S5                    89.4    21.3  (4.20x)   38.6 (2.32x)
 *
 * 2 threads, LSTM, ORT int8 / our int8: S4 2.06, S2 1.27, S5 1.11 (5.89/2.85, 53.5/41.8,
 * 17.9/16.0 ms).
 *
 * At S5 the int8 micro-kernel is ~80 % of the time and runs near one vpdpbusd per cycle;
 * the rest is the gate math (~5 %) and quantizing the rows.
 *
 * vpdpbusd and vdpbf16ps run at about one zmm per cycle there (64 int8 or 32 bf16
 * multiply-adds), so ~380 and ~200 G op/s are near their peaks, 4x and 2x float32's.
 * A lone row is bound by W's bandwidth (~65 GB/s from L2/L3). The avx2 int8 kernel needs
 * 4 instructions per vector of 32 multiply-adds (vpsignb, vpmaddubsw, vpmaddwd, vpaddd):
 * ~1.4x float32 at many rows, where float32 is at its peak; without the vpsignb (wrong
 * results, measured for the bound) it ran 1.25x faster, so the two multiplies bound it.
 *
 * bf16 training (reduced_backward.pxi) takes the backward's operands from their transposes
 * (rp_pack_transposed, rp_prepare_transposed; bf16 only): dx = dz W_ih on W_ih^T packed from
 * W_ih, dW = dz^T x with dz^T prepared from dz and x^T packed from x, K = T*B rows. The
 * preparation transposes tiles of 16 x 16 words in registers under AVX-512 (4 stages of
 * vpermt2d); packing reads W^T's rows in pairs, one bf16 pair per word. Backward, 1 thread,
 * AMD EPYC Zen 4 (2 cores shared with other work), thread CPU time, medians of 5
 * interleaved runs (ms; ratio = float32 time / bf16 time; GRU reset_after; the training step
 * = float32 forward + backward against bf16 pack_reduced(backward=True) + forward + backward):
 *
 *   shape (T,B,D,H)          float32 bwd   bf16 bwd        training step
 *   LSTM S4 100,32,128,128      25.3       13.3 (1.90x)    1.82x
 *   LSTM S2 100,64,512,512     643.9      284.3 (2.26x)    2.19x
 *   LSTM S5 50,16,512,1024     251.5      103.8 (2.42x)    2.25x
 *   GRU  S4                     17.2       10.4 (1.66x)    1.66x
 *   GRU  S2                    533.7      212.9 (2.51x)    2.36x
 *   GRU  S5                    349.8       87.5 (4.00x)    3.03x
 *
 * At S2 and S5 the products are ~60 % of the bf16 backward (at ~190 G op/s); at S4 under
 * half: the rest is the transposed operands (~18 %), the float32 gate math (~12 %, as in
 * float32: it streams the forward's gates from memory), rounding dz for dx and db's column
 * sums (~4 % each).
 */
#ifndef FASTRNN_REDUCED_GEMM_H
#define FASTRNN_REDUCED_GEMM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#include "isa.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

enum { RP_BF16 = 1, RP_INT8 = 2 };

/* Kernel levels of each precision (indices into rp_int8_levels / rp_bf16_levels). */
enum { RP_INT8_GENERIC = 0, RP_INT8_AVX2 = 1, RP_INT8_AVX512_VNNI = 2, RP_N_INT8 = 3 };
enum { RP_BF16_EMULATED = 0, RP_BF16_AVX512_BF16 = 1, RP_N_BF16 = 2 };

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

/* max |a_i|, NaN winning (the last NaN, as the sequential scan finds it) */
static inline float rp_row_max(const float *a, ptrdiff_t k, float m)
{
    for (ptrdiff_t i = 0; i < k; i++) {
        float v = fabsf(a[i]);
        m = (v > m || v != v) ? v : m;
    }
    return m;
}

/* 127 / m, or 0 for a row of zeros or one holding NaN or infinity */
static inline float rp_inverse_scale(float m)
{
    return (m > 0.0f && m <= 3.4028234663852886e38f) ? 127.0f / m : 0.0f;
}

static inline int8_t rp_quantize_value(float a, float inv)
{
    float s = a * inv;
    float r = (s - s == 0.0f) ? nearbyintf(s) : 0.0f;   /* non-finite: 0 */
    r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
    return (int8_t)r;
}

/* Quantize one row of k values into q (k values, then zeros up to kpad); returns its scale. */
static inline float rp_quantize_row(const float *a, ptrdiff_t k, ptrdiff_t kpad, int8_t *q)
{
    float m = rp_row_max(a, k, 0.0f), inv = rp_inverse_scale(m);
    for (ptrdiff_t i = 0; i < k; i++) q[i] = rp_quantize_value(a[i], inv);
    for (ptrdiff_t i = k; i < kpad; i++) q[i] = 0;
    return m / 127.0f;
}

static inline ptrdiff_t rp_int8_kpad(ptrdiff_t k) { return (k + 3) / 4 * 4; }
static inline ptrdiff_t rp_bf16_kpad(ptrdiff_t k) { return (k + 1) / 2 * 2; }

/* ---- generic int8: W kept row by row (n rows of kpad int8), A quantized into scratch */

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

static void rp_int8_generic_prepare(ptrdiff_t k, ptrdiff_t m, const float *a, ptrdiff_t lda,
                                    void *prep)
{
    ptrdiff_t kpad = rp_int8_kpad(k);
    float *sa = (float *)((char *)prep + m * kpad);
    for (ptrdiff_t r = 0; r < m; r++)
        sa[r] = rp_quantize_row(a + r * lda, k, kpad, (int8_t *)prep + r * kpad);
}

static void rp_int8_generic_run(const rp_matrix *w, ptrdiff_t rows, const void *prep,
                                const float *bias, float *c, ptrdiff_t ldc)
{
    ptrdiff_t kpad = rp_int8_kpad(w->k);
    const int8_t *qw = (const int8_t *)w->panels;
    const float *sa = (const float *)((const char *)prep + rows * kpad);
    for (ptrdiff_t r = 0; r < rows; r++) {
        const int8_t *qa = (const int8_t *)prep + r * kpad;
        for (ptrdiff_t j = 0; j < w->n; j++) {
            int32_t acc = 0;
            for (ptrdiff_t i = 0; i < kpad; i++) acc += (int32_t)qa[i] * qw[j * kpad + i];
            float p = (float)acc * (sa[r] * w->scale[j]);
            c[r * ldc + j] = (bias ? bias[j] : c[r * ldc + j]) + p;
        }
    }
}

/* ---- packing into panels (every vector level; nr columns per panel) */

static void rp_int8_pack_panels(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                                ptrdiff_t nr, void *panels, float *scale, int32_t *colsum)
{
    ptrdiff_t kpad = rp_int8_kpad(k), groups = kpad / 4, np = (n + nr - 1) / nr;
    int8_t *q = (int8_t *)panels;
    memset(q, 0, (size_t)(np * nr * kpad));
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *row = w + j * ldw;
        float m = rp_row_max(row, k, 0.0f), inv = rp_inverse_scale(m);
        int8_t *col = q + (j / nr) * groups * nr * 4 + (j % nr) * 4;
        int32_t s = 0;
        for (ptrdiff_t i = 0; i < k; i++) {
            int8_t v = rp_quantize_value(row[i], inv);
            col[(i / 4) * nr * 4 + i % 4] = v;
            s += v;
        }
        scale[j] = m / 127.0f;
        colsum[j] = s;
    }
}

static void rp_bf16_pack_panels(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                                ptrdiff_t nr, void *panels)
{
    ptrdiff_t kpad = rp_bf16_kpad(k), groups = kpad / 2, np = (n + nr - 1) / nr;
    uint16_t *b = (uint16_t *)panels;
    memset(b, 0, (size_t)(np * nr * kpad) * 2);
    for (ptrdiff_t j = 0; j < n; j++) {
        uint16_t *col = b + (j / nr) * groups * nr * 2 + (j % nr) * 2;
        for (ptrdiff_t i = 0; i < k; i++) col[(i / 2) * nr * 2 + i % 2] = rp_bf16_bits(w[j * ldw + i]);
    }
}

/* Rows of A prepared per pass over the panels: 128 rows of k = 1024 int8 (128 KiB) stay in L2. */
#define RP_CHUNK 128

/* ---- the vector levels, written once over GCC vector types.
 *
 * A level P provides, before RP_DEFINE_*:
 *   P##_vu, P##_vi, P##_vf   vectors of uint32, int32, float32 lanes (all of one width)
 *   P##_vb, P##_vh           vectors of int8 and uint16 with as many lanes
 *   P##_MR                   rows per register block (2*MR accumulators)
 *   P##_DOT(acc, a, w)       acc plus the dot products of the 4 (int8) or 2 (bf16) values
 *                            packed in each 32-bit lane of a and w
 * int8 levels also P##_OFFSET: what the prepared activations add to q (128 when the
 * instruction wants them unsigned, else 0).
 */

#define RP_UNROLL _Pragma("GCC unroll 16")
#ifndef RP_PREFETCH
#define RP_PREFETCH(p) (__builtin_prefetch((const char *)(p)), __builtin_prefetch((const char *)(p) + 64))
#endif

/* Select lanes of a (mask set) or b, for vectors of 32-bit lanes. */
#define RP_SELECT(VI, VF, mask, a, b) ((VF)(((VI)(a) & (mask)) | ((VI)(b) & ~(mask))))

/* Prepare one row of A as int8 (quantized as rp_quantize_row, plus `offset`): the same
   operations on whole vectors; a NaN anywhere sends the maximum to the scalar scan so
   that even its NaN is the same. Rounding to nearest even adds and subtracts 1.5 * 2^23
   (exact for |s| < 2^22; larger s are non-finite or clamped). */
#define RP_DEFINE_QUANTIZE(P, ATTR)                                                     \
ATTR static float P##_quantize_row(const float *a, ptrdiff_t k, ptrdiff_t kpad,         \
                                   int8_t *q, int offset)                               \
{                                                                                       \
    enum { L = sizeof(P##_vf) / 4 };                                                    \
    const P##_vi sign = (P##_vi){0} + 0x7FFFFFFF;                                       \
    /* |a| as int32 orders as the floats do, and every NaN above +inf: an integer max    \
       over 4 independent chains (not one chain of compare-and-blend) */                \
    P##_vi m0 = (P##_vi){0}, m1 = m0, m2 = m0, m3 = m0, v0, v1, v2, v3;                 \
    ptrdiff_t i = 0;                                                                    \
    for (; i + 4 * L <= k; i += 4 * L) {                                                \
        memcpy(&v0, a + i, sizeof v0);                                                  \
        memcpy(&v1, a + i + L, sizeof v1);                                              \
        memcpy(&v2, a + i + 2 * L, sizeof v2);                                          \
        memcpy(&v3, a + i + 3 * L, sizeof v3);                                          \
        v0 &= sign; v1 &= sign; v2 &= sign; v3 &= sign;                                 \
        m0 = RP_SELECT(P##_vi, P##_vi, v0 > m0, v0, m0);                                \
        m1 = RP_SELECT(P##_vi, P##_vi, v1 > m1, v1, m1);                                \
        m2 = RP_SELECT(P##_vi, P##_vi, v2 > m2, v2, m2);                                \
        m3 = RP_SELECT(P##_vi, P##_vi, v3 > m3, v3, m3);                                \
    }                                                                                   \
    for (; i + L <= k; i += L) {                                                        \
        memcpy(&v0, a + i, sizeof v0);                                                  \
        v0 &= sign;                                                                     \
        m0 = RP_SELECT(P##_vi, P##_vi, v0 > m0, v0, m0);                                \
    }                                                                                   \
    m0 = RP_SELECT(P##_vi, P##_vi, m1 > m0, m1, m0);                                    \
    m2 = RP_SELECT(P##_vi, P##_vi, m3 > m2, m3, m2);                                    \
    m0 = RP_SELECT(P##_vi, P##_vi, m2 > m0, m2, m0);                                    \
    int32_t mi = 0;                                                                     \
    for (int l = 0; l < L; l++) mi = m0[l] > mi ? m0[l] : mi;                           \
    float m;                                                                            \
    memcpy(&m, &mi, 4);                                                                 \
    m = mi > 0x7F800000 ? rp_row_max(a, k, 0.0f) : rp_row_max(a + i, k - i, m);         \
    float inv = rp_inverse_scale(m);                                                    \
    const P##_vf magic = (P##_vf){0} + 12582912.0f, lim = (P##_vf){0} + 127.0f;         \
    for (i = 0; i + L <= k; i += L) {                                                   \
        P##_vf s;                                                                       \
        memcpy(&s, a + i, sizeof s);                                                    \
        s = s * inv;                                                                    \
        P##_vi finite = (s - s) == 0.0f;                                                \
        P##_vf r = (s + magic) - magic;                                                 \
        r = RP_SELECT(P##_vi, P##_vf, r > lim, lim, r);                                 \
        r = RP_SELECT(P##_vi, P##_vf, r < -lim, -lim, r);                               \
        r = (P##_vf)((P##_vi)r & finite);                                               \
        P##_vb b = __builtin_convertvector(__builtin_convertvector(r, P##_vi), P##_vb);   \
        b += (signed char)offset;                                                       \
        memcpy(q + i, &b, sizeof b);                                                    \
    }                                                                                   \
    for (; i < k; i++) q[i] = (int8_t)(rp_quantize_value(a[i], inv) + offset);          \
    for (; i < kpad; i++) q[i] = (int8_t)offset;                                        \
    return m / 127.0f;                                                                  \
}

/* Prepare one row of A as bf16 (rp_bf16_bits on whole vectors), zeros up to kpad. */
#define RP_DEFINE_ROUND(P, ATTR)                                                        \
ATTR static void P##_round_row(const float *a, ptrdiff_t k, ptrdiff_t kpad, uint16_t *b) \
{                                                                                       \
    enum { L = sizeof(P##_vu) / 4 };                                                    \
    ptrdiff_t i = 0;                                                                    \
    for (; i + L <= k; i += L) {                                                        \
        P##_vu u;                                                                       \
        memcpy(&u, a + i, sizeof u);                                                    \
        P##_vi nan = (u & 0x7FFFFFFFu) > 0x7F800000u;                                   \
        P##_vu r = RP_SELECT(P##_vi, P##_vu, nan, u | 0x00400000u,                       \
                             u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;                     \
        P##_vh h = __builtin_convertvector(r, P##_vh);                                  \
        memcpy(b + i, &h, sizeof h);                                                    \
    }                                                                                   \
    for (; i < k; i++) b[i] = rp_bf16_bits(a[i]);                                       \
    for (; i < kpad; i++) b[i] = 0;                                                     \
}

/* MR prepared rows (32-bit words, lda words apart) times PN consecutive panels: acc0/acc1
   hold the two vectors of columns of panel q for row r at [q * MR + r]. Every element is
   one chain of DOTs over the groups in order, whatever MR and PN (bf16 results do not
   depend on the blocking). */
#define RP_DOT_LOOP(P, V, MR, PN)                                                       \
    V acc0[PN * MR], acc1[PN * MR];                                                     \
    RP_UNROLL for (int i = 0; i < PN * MR; i++) { acc0[i] = (V){0}; acc1[i] = (V){0}; } \
    for (ptrdiff_t g = 0; g < groups; g++) {                                            \
        if (PN == 1) RP_PREFETCH(panel + (groups + g) * 2 * L);                         \
        RP_UNROLL for (int q = 0; q < PN; q++) {                                        \
            P##_vu w0, w1;                                                              \
            memcpy(&w0, panel + (q * groups + g) * 2 * L, sizeof w0);                   \
            memcpy(&w1, panel + (q * groups + g) * 2 * L + L, sizeof w1);               \
            RP_UNROLL for (int r = 0; r < MR; r++) {                                    \
                P##_vu ar = (P##_vu){0} + a[r * lda + g];                               \
                acc0[q * MR + r] = P##_DOT(acc0[q * MR + r], ar, w0);                   \
                acc1[q * MR + r] = P##_DOT(acc1[q * MR + r], ar, w1);                   \
            }                                                                           \
        }                                                                               \
    }

/* The epilogue of each row r and panel q (columns j of the panel, element i = q*MR + r):
   int8: c = (bias or c) + (float)(acc - OFFSET*colsum) * (sa * scale), element by element
   as the reference rounds it; bf16: c = (bias or c) + acc. Only the last panel may be
   partial (ncols columns). */
#define RP_EPILOGUE(P, V, MR, PN, PRODUCT)                                              \
    RP_UNROLL for (int q = 0; q < PN; q++) {                                            \
        const ptrdiff_t j0 = q * 2 * L;                                                 \
        float *cq = c + j0;                                                             \
        const float *bq = bias ? bias + j0 : NULL;                                      \
        RP_UNROLL for (int r = 0; r < MR; r++) {                                        \
            const int i = q * MR + r;                                                   \
            if (q < PN - 1 || ncols == 2 * L) {                                         \
                P##_vf c0, c1;                                                          \
                memcpy(&c0, bq ? bq : cq + r * ldc, sizeof c0);                         \
                memcpy(&c1, bq ? bq + L : cq + r * ldc + L, sizeof c1);                 \
                c0 += PRODUCT##_VECTOR(P, acc0[i], r, j0);                              \
                c1 += PRODUCT##_VECTOR(P, acc1[i], r, j0 + L);                          \
                memcpy(cq + r * ldc, &c0, sizeof c0);                                   \
                memcpy(cq + r * ldc + L, &c1, sizeof c1);                               \
            } else {                                                                    \
                /* copies, not &acc0[i]: an address taken keeps the accumulators on    \
                   the stack */                                                         \
                __typeof__(acc0[0][0]) sums[2 * L];                                     \
                V t0 = acc0[i], t1 = acc1[i];                                           \
                memcpy(sums, &t0, sizeof t0);                                           \
                memcpy(sums + L, &t1, sizeof t1);                                       \
                for (int j = 0; j < ncols; j++)                                         \
                    cq[r * ldc + j] = (bq ? bq[j] : cq[r * ldc + j]) + PRODUCT##_SCALAR(P, sums[j], r, j0 + j); \
            }                                                                           \
        }                                                                               \
    }
#define RP_INT8_VECTOR(P, acc, r, j)                                                    \
    (__builtin_convertvector((acc) - P##_OFFSET * rp_load_vi_##P(colsum + (j)), P##_vf) \
     * (sa[r] * rp_load_vf_##P(scale + (j))))
#define RP_INT8_SCALAR(P, acc, r, j) ((float)((acc) - P##_OFFSET * colsum[j]) * (sa[r] * scale[j]))
#define RP_BF16_VECTOR(P, acc, r, j) (acc)
#define RP_BF16_SCALAR(P, acc, r, j) (acc)

#define RP_INT8_PARAMS const float *bias, const int32_t *colsum, const float *scale, const float *sa
#define RP_BF16_PARAMS const float *bias
#define RP_INT8_ACC(P) P##_vi
#define RP_BF16_ACC(P) P##_vf

/* A block function: MR rows times PN panels. */
#define RP_DEFINE_BLOCK(P, ATTR, KIND, NAME, MR, PN)                                    \
ATTR static void P##_##NAME(const uint32_t *a, ptrdiff_t lda, const uint32_t *panel,    \
                            ptrdiff_t groups, RP_##KIND##_PARAMS, float *c, ptrdiff_t ldc, \
                            int ncols)                                                  \
{                                                                                       \
    enum { L = sizeof(P##_vu) / 4 };                                                    \
    RP_DOT_LOOP(P, RP_##KIND##_ACC(P), MR, PN)                                          \
    RP_EPILOGUE(P, RP_##KIND##_ACC(P), MR, PN, RP_##KIND)                               \
}

/* The blocks of a level: MR rows, 4 rows, one row times one panel, and one row times
   RP_PANELS panels (a lone row's 2 chains would wait on the DOT's latency; 2 * RP_PANELS
   chains hide it). Its driver: chunks of rows prepared into scratch, then groups of
   RP_PANELS panels (in L2), over each panel the blocks of MR and 4 rows, then the last
   rows over the group. ARGS(p, r) are the kind's arguments for panel p and row r. */
#define RP_PANELS 4
#define RP_DEFINE_BLOCKS(P, ATTR, KIND)                                                 \
ATTR static inline P##_vi rp_load_vi_##P(const int32_t *p) { P##_vi v; memcpy(&v, p, sizeof v); return v; } \
ATTR static inline P##_vf rp_load_vf_##P(const float *p) { P##_vf v; memcpy(&v, p, sizeof v); return v; } \
RP_DEFINE_BLOCK(P, ATTR, KIND, rowsmr, P##_MR, 1)                                       \
RP_DEFINE_BLOCK(P, ATTR, KIND, rows4, 4, 1)                                             \
RP_DEFINE_BLOCK(P, ATTR, KIND, rows1, 1, 1)                                             \
RP_DEFINE_BLOCK(P, ATTR, KIND, row_panels, 1, RP_PANELS)

/* Column blocks of panels, at most RP_BLOCK_BYTES of W (in L2), one after the other; in
   each, every block of MR (then 4) rows runs over all its panels, so that its rows of C are
   written in runs of the block's width (not of one panel's), and the last rows run over
   groups of RP_PANELS panels. */
#define RP_BLOCK_BYTES (256 * 1024)
#define RP_RUN_PANELS(P, ARGS)                                                          \
    ptrdiff_t pb = RP_BLOCK_BYTES / ((groups + 1) * nr * 4) / RP_PANELS * RP_PANELS;    \
    if (pb < RP_PANELS) pb = RP_PANELS;                                                 \
    for (ptrdiff_t b0 = 0; b0 < np; b0 += pb) {                                         \
        ptrdiff_t b1 = np - b0 < pb ? np : b0 + pb, r4 = rows - rows % 4, r = 0;        \
        for (; r + P##_MR <= r4; r += P##_MR)                                           \
            for (ptrdiff_t p = b0; p < b1; p++) {                                       \
                const uint32_t *panel = (const uint32_t *)w->panels + p * groups * nr;  \
                int ncols = (int)(w->n - p * nr < nr ? w->n - p * nr : nr);             \
                P##_rowsmr(qa + r * groups, groups, panel, groups, ARGS(p, r), c + r * ldc + p * nr, ldc, ncols); \
            }                                                                           \
        for (; r < r4; r += 4)                                                          \
            for (ptrdiff_t p = b0; p < b1; p++) {                                       \
                const uint32_t *panel = (const uint32_t *)w->panels + p * groups * nr;  \
                int ncols = (int)(w->n - p * nr < nr ? w->n - p * nr : nr);             \
                P##_rows4(qa + r * groups, groups, panel, groups, ARGS(p, r), c + r * ldc + p * nr, ldc, ncols); \
            }                                                                           \
        for (ptrdiff_t p0 = b0; p0 < b1; p0 += RP_PANELS) {                             \
            ptrdiff_t p1 = b1 - p0 < RP_PANELS ? b1 : p0 + RP_PANELS;                   \
            for (ptrdiff_t r = r4; r < rows; r++) {                                     \
                const uint32_t *panel = (const uint32_t *)w->panels + p0 * groups * nr; \
                if (p1 - p0 == RP_PANELS) {                                             \
                    int ncols = (int)(w->n - (p1 - 1) * nr < nr ? w->n - (p1 - 1) * nr : nr); \
                    P##_row_panels(qa + r * groups, groups, panel, groups, ARGS(p0, r), c + r * ldc + p0 * nr, ldc, ncols); \
                } else                                                                  \
                    for (ptrdiff_t p = p0; p < p1; p++) {                               \
                        int ncols = (int)(w->n - p * nr < nr ? w->n - p * nr : nr);     \
                        P##_rows1(qa + r * groups, groups, panel + (p - p0) * groups * nr, groups, \
                                  ARGS(p, r), c + r * ldc + p * nr, ldc, ncols);        \
                    }                                                                   \
            }                                                                           \
        }                                                                               \
    }

#define RP_INT8_ARGS(p, r) bias ? bias + (p) * nr : NULL, w->colsum + (p) * nr, w->scale + (p) * nr, sa + (r)
#define RP_DEFINE_INT8(P, ATTR)                                                         \
RP_DEFINE_QUANTIZE(P, ATTR)                                                             \
RP_DEFINE_BLOCKS(P, ATTR, INT8)                                                         \
ATTR static void P##_prepare(ptrdiff_t k, ptrdiff_t m, const float *a, ptrdiff_t lda,   \
                             void *prep)                                                \
{                                                                                       \
    ptrdiff_t kpad = rp_int8_kpad(k);                                                   \
    float *sa = (float *)((char *)prep + m * kpad);                                     \
    for (ptrdiff_t r = 0; r < m; r++)                                                   \
        sa[r] = P##_quantize_row(a + r * lda, k, kpad, (int8_t *)prep + r * kpad, P##_OFFSET); \
}                                                                                       \
ATTR static void P##_run(const rp_matrix *w, ptrdiff_t m, const void *prep,             \
                         const float *bias, float *c, ptrdiff_t ldc)                    \
{                                                                                       \
    const ptrdiff_t nr = 2 * (ptrdiff_t)(sizeof(P##_vu) / 4);                           \
    ptrdiff_t kpad = rp_int8_kpad(w->k), groups = kpad / 4, np = (w->n + nr - 1) / nr;   \
    const uint32_t *qa = (const uint32_t *)prep;                                        \
    const float *sa = (const float *)((const char *)prep + m * kpad);                   \
    for (ptrdiff_t r0 = 0; r0 < m; r0 += RP_CHUNK, qa += RP_CHUNK * groups,             \
                                   sa += RP_CHUNK, c += RP_CHUNK * ldc) {               \
        ptrdiff_t rows = m - r0 < RP_CHUNK ? m - r0 : RP_CHUNK;                         \
        RP_RUN_PANELS(P, RP_INT8_ARGS)                                                  \
    }                                                                                   \
}

#define RP_BF16_ARGS(p, r) bias ? bias + (p) * nr : NULL
#define RP_DEFINE_BF16(P, ATTR)                                                         \
RP_DEFINE_ROUND(P, ATTR)                                                                \
RP_DEFINE_BLOCKS(P, ATTR, BF16)                                                         \
ATTR static void P##_prepare(ptrdiff_t k, ptrdiff_t m, const float *a, ptrdiff_t lda,   \
                             void *prep)                                                \
{                                                                                       \
    ptrdiff_t kpad = rp_bf16_kpad(k);                                                   \
    for (ptrdiff_t r = 0; r < m; r++)                                                   \
        P##_round_row(a + r * lda, k, kpad, (uint16_t *)prep + r * kpad);               \
}                                                                                       \
ATTR static void P##_run(const rp_matrix *w, ptrdiff_t m, const void *prep,             \
                         const float *bias, float *c, ptrdiff_t ldc)                    \
{                                                                                       \
    const ptrdiff_t nr = 2 * (ptrdiff_t)(sizeof(P##_vu) / 4);                           \
    ptrdiff_t kpad = rp_bf16_kpad(w->k), groups = kpad / 2, np = (w->n + nr - 1) / nr;   \
    const uint32_t *qa = (const uint32_t *)prep;                                        \
    for (ptrdiff_t r0 = 0; r0 < m; r0 += RP_CHUNK, qa += RP_CHUNK * groups, c += RP_CHUNK * ldc) { \
        ptrdiff_t rows = m - r0 < RP_CHUNK ? m - r0 : RP_CHUNK;                         \
        RP_RUN_PANELS(P, RP_BF16_ARGS)                                                  \
    }                                                                                   \
}

/* Vector types of one width, named for a level. */
#define RP_VECTORS(P, BYTES)                                                            \
typedef uint32_t P##_vu __attribute__((vector_size(BYTES)));                            \
typedef int32_t P##_vi __attribute__((vector_size(BYTES)));                             \
typedef float P##_vf __attribute__((vector_size(BYTES)));                               \
typedef int8_t P##_vb __attribute__((vector_size(BYTES / 4)));                          \
typedef uint16_t P##_vh __attribute__((vector_size(BYTES / 2)));

/* int8, avx512_vnni: vpdpbusd multiplies the unsigned bytes of its first operand (q + 128)
   by the signed bytes of the second (W) and adds each lane's 4 products to the int32 lane,
   without saturation: exact, as |sum| < 255*127*k < 2^31 (k <= INT8_MAX_K). */
#define RP_VNNI_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
RP_VECTORS(rp_vnni, 64)
/* MR 8 (16 accumulators); 12 tied with it (measured within 5%, both ways, on Zen 4 for
   vnni and bf16). The tiles can be set at build time (CFLAGS=-Drp_vnni_MR=12). */
#ifndef rp_vnni_MR
#define rp_vnni_MR 8
#endif
#define rp_vnni_OFFSET 128
#define rp_vnni_DOT(acc, a, w) (rp_vnni_vi)_mm512_dpbusd_epi32((__m512i)(acc), (__m512i)(a), (__m512i)(w))
RP_DEFINE_INT8(rp_vnni, RP_VNNI_ATTR)

/* int8, avx2: vpmaddubsw also wants unsigned times signed bytes, but saturates its pair
   sums to int16, which q + 128 would overflow; |q| times W with q's sign gives the same
   products, and a pair sum |q0 w0 + q1 w1| <= 2*127*127 < 32767 stays exact. vpmaddwd
   with ones then adds the pairs into int32. */
#define RP_AVX2_ATTR __attribute__((target("avx2,fma")))
RP_VECTORS(rp_avx2, 32)
#ifndef rp_avx2_MR
#define rp_avx2_MR 4
#endif
#define rp_avx2_OFFSET 0
RP_AVX2_ATTR static inline rp_avx2_vi rp_avx2_dot(rp_avx2_vi acc, rp_avx2_vu a, rp_avx2_vu w)
{
    __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8((__m256i)a), _mm256_sign_epi8((__m256i)w, (__m256i)a));
    return acc + (rp_avx2_vi)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#define rp_avx2_DOT(acc, a, w) rp_avx2_dot(acc, a, w)
RP_DEFINE_INT8(rp_avx2, RP_AVX2_ATTR)

/* bf16, avx512_bf16: vdpbf16ps adds the two products of each lane's bf16 pair to its
   float32 lane (inputs and outputs below FLT_MIN are flushed to zero). */
#define RP_BF16_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))
RP_VECTORS(rp_bf16, 64)
#ifndef rp_bf16_MR
#define rp_bf16_MR 8
#endif
#define rp_bf16_DOT(acc, a, w) (rp_bf16_vf)_mm512_dpbf16_ps((__m512)(acc), (__m512bh)(a), (__m512bh)(w))
RP_DEFINE_BF16(rp_bf16, RP_BF16_ATTR)

/* bf16, emulated: a bf16 is the high half of a float32, so a 16-bit shift (low value of
   the pair) or a mask (high value) widens it; the products of two bf16 are exact in
   float32 (unless they fall below FLT_MIN), so multiply-then-add rounds as a fused
   multiply-add. One layout (panels of 16
   columns), compiled for AVX2 + FMA and for the baseline. */
#define RP_EMULATED_DOT(FMA, V, acc, a, w)                                              \
    FMA((V)((a) & 0xFFFF0000u), (V)((w) & 0xFFFF0000u), FMA((V)((a) << 16), (V)((w) << 16), acc))
RP_VECTORS(rp_emu_avx2, 32)
#ifndef rp_emu_avx2_MR
#define rp_emu_avx2_MR 4
#endif
#define rp_emu_avx2_FMA(x, y, acc) (rp_emu_avx2_vf)_mm256_fmadd_ps((__m256)(x), (__m256)(y), (__m256)(acc))
#define rp_emu_avx2_DOT(acc, a, w) RP_EMULATED_DOT(rp_emu_avx2_FMA, rp_emu_avx2_vf, acc, a, w)
RP_DEFINE_BF16(rp_emu_avx2, RP_AVX2_ATTR)
RP_VECTORS(rp_emu_generic, 32)
#define rp_emu_generic_MR 4
#define rp_emu_generic_FMA(x, y, acc) ((acc) + (x) * (y))
#define rp_emu_generic_DOT(acc, a, w) RP_EMULATED_DOT(rp_emu_generic_FMA, rp_emu_generic_vf, acc, a, w)
RP_DEFINE_BF16(rp_emu_generic, )

static void rp_bf16_emulated_prepare(ptrdiff_t k, ptrdiff_t rows, const float *a, ptrdiff_t lda,
                                     void *prep)
{
    if (pg_get_level() >= PG_LEVEL_AVX2)
        rp_emu_avx2_prepare(k, rows, a, lda, prep);
    else
        rp_emu_generic_prepare(k, rows, a, lda, prep);
}

static void rp_bf16_emulated_run(const rp_matrix *w, ptrdiff_t rows, const void *prep,
                                 const float *bias, float *c, ptrdiff_t ldc)
{
    if (pg_get_level() >= PG_LEVEL_AVX2)
        rp_emu_avx2_run(w, rows, prep, bias, c, ldc);
    else
        rp_emu_generic_run(w, rows, prep, bias, c, ldc);
}

/* ---- the table of levels */

typedef struct {
    const char *name;
    int (*supported)(void);
    ptrdiff_t (*panels_bytes)(ptrdiff_t n, ptrdiff_t k);
    ptrdiff_t (*scratch_bytes)(ptrdiff_t rows, ptrdiff_t k);
    void (*pack)(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw, void *panels,
                 float *scale, int32_t *colsum);
    /* rows of A rounded or quantized into prep (rp_prepared_bytes), then the product on them */
    void (*prepare)(ptrdiff_t k, ptrdiff_t rows, const float *a, ptrdiff_t lda, void *prep);
    void (*run)(const rp_matrix *w, ptrdiff_t rows, const void *prep, const float *bias,
                float *c, ptrdiff_t ldc);
} rp_level_t;

static int rp_always(void) { return 1; }
static int rp_has_avx2(void) { return pg_level_supported(PG_LEVEL_AVX2); }
static int rp_has_vnni(void)
{
    return pg_level_supported(PG_LEVEL_AVX512) && __builtin_cpu_supports("avx512vnni");
}
static int rp_has_bf16(void)
{
    return pg_level_supported(PG_LEVEL_AVX512) && __builtin_cpu_supports("avx512bf16");
}

static ptrdiff_t rp_chunk(ptrdiff_t rows) { return rows < RP_CHUNK ? rows : RP_CHUNK; }
static ptrdiff_t rp_int8_generic_bytes(ptrdiff_t n, ptrdiff_t k) { return n * rp_int8_kpad(k); }
static ptrdiff_t rp_int8_generic_scratch(ptrdiff_t rows, ptrdiff_t k) { return rp_chunk(rows) * (rp_int8_kpad(k) + 4); }
/* the vector levels: panels of NR columns; scratch: a chunk of prepared rows (+ int8 scales) */
#define RP_PANEL_SIZES(NAME, NR, KPAD, ELEMENT, EXTRA)                                   \
static ptrdiff_t NAME##_bytes(ptrdiff_t n, ptrdiff_t k)                                 \
{ return (n + NR - 1) / NR * NR * KPAD(k) * ELEMENT; }                                  \
static ptrdiff_t NAME##_scratch(ptrdiff_t rows, ptrdiff_t k)                            \
{ return rp_chunk(rows) * (KPAD(k) * ELEMENT + EXTRA); }
RP_PANEL_SIZES(rp_int8_avx2, 16, rp_int8_kpad, 1, 4)
RP_PANEL_SIZES(rp_int8_vnni, 32, rp_int8_kpad, 1, 4)
RP_PANEL_SIZES(rp_bf16_emulated, 16, rp_bf16_kpad, 2, 0)
RP_PANEL_SIZES(rp_bf16_avx512, 32, rp_bf16_kpad, 2, 0)

static void rp_int8_avx2_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                              void *panels, float *scale, int32_t *colsum)
{ rp_int8_pack_panels(w, n, k, ldw, 16, panels, scale, colsum); }
static void rp_int8_vnni_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                              void *panels, float *scale, int32_t *colsum)
{ rp_int8_pack_panels(w, n, k, ldw, 32, panels, scale, colsum); }
static void rp_bf16_emulated_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                                  void *panels, float *scale, int32_t *colsum)
{ (void)scale; (void)colsum; rp_bf16_pack_panels(w, n, k, ldw, 16, panels); }
static void rp_bf16_avx512_pack(const float *w, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldw,
                                void *panels, float *scale, int32_t *colsum)
{ (void)scale; (void)colsum; rp_bf16_pack_panels(w, n, k, ldw, 32, panels); }

static const rp_level_t rp_int8_levels[RP_N_INT8] = {
    { "generic", rp_always, rp_int8_generic_bytes, rp_int8_generic_scratch,
      rp_int8_generic_pack, rp_int8_generic_prepare, rp_int8_generic_run },
    { "avx2", rp_has_avx2, rp_int8_avx2_bytes, rp_int8_avx2_scratch,
      rp_int8_avx2_pack, rp_avx2_prepare, rp_avx2_run },
    { "avx512_vnni", rp_has_vnni, rp_int8_vnni_bytes, rp_int8_vnni_scratch,
      rp_int8_vnni_pack, rp_vnni_prepare, rp_vnni_run },
};

static const rp_level_t rp_bf16_levels[RP_N_BF16] = {
    { "emulated", rp_always, rp_bf16_emulated_bytes, rp_bf16_emulated_scratch,
      rp_bf16_emulated_pack, rp_bf16_emulated_prepare, rp_bf16_emulated_run },
    { "avx512_bf16", rp_has_bf16, rp_bf16_avx512_bytes, rp_bf16_avx512_scratch,
      rp_bf16_avx512_pack, rp_bf16_prepare, rp_bf16_run },
};

static inline const rp_level_t *rp_table(int precision, int level)
{
    return precision == RP_INT8 ? &rp_int8_levels[level] : &rp_bf16_levels[level];
}

/* The kernel level of `precision` that runs now: the best one the CPU supports that the
   float32 level in use (isa.h, FASTRNN_ISA) allows. */
static int rp_current_level(int precision)
{
    int isa = pg_get_level();
    if (precision == RP_INT8) {
        if (isa == PG_LEVEL_AVX512 && rp_has_vnni()) return RP_INT8_AVX512_VNNI;
        return isa >= PG_LEVEL_AVX2 ? RP_INT8_AVX2 : RP_INT8_GENERIC;
    }
    return isa == PG_LEVEL_AVX512 && rp_has_bf16() ? RP_BF16_AVX512_BF16 : RP_BF16_EMULATED;
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

/* Output columns per panel of `level`: a column range that starts at a multiple of it is
   a packed matrix of its own (rp_columns). */
static ptrdiff_t rp_column_align(int precision, int level)
{
    if (precision == RP_INT8) return level == RP_INT8_AVX512_VNNI ? 32 : level == RP_INT8_AVX2 ? 16 : 1;
    return level == RP_BF16_AVX512_BF16 ? 32 : 16;
}

/* Columns j0 .. j0+count-1 of m (j0 a multiple of rp_column_align) as a matrix of their own,
   sharing m's buffers: threads may split the outputs (rp_gemm on it, with bias + j0 and
   c + j0), each reading only its part of W. Each element is the same sum as in m. */
static rp_matrix rp_columns(const rp_matrix *m, ptrdiff_t j0, ptrdiff_t count)
{
    rp_matrix s = *m;
    s.n = count;
    s.panels = (char *)m->panels + rp_panels_bytes(m->precision, m->level, j0, m->k);
    if (m->precision == RP_INT8) {
        s.scale = m->scale + j0;
        s.colsum = m->colsum + j0;
    }
    return s;
}

/* Pack W (n x k, row j at w + j*ldw) into m, whose precision, level, n, k and buffers
   (panels; scale and colsum of n entries for int8) the caller has set. */
static void rp_pack(rp_matrix *m, const float *w, ptrdiff_t ldw)
{
    rp_table(m->precision, m->level)->pack(w, m->n, m->k, ldw, m->panels, m->scale, m->colsum);
}

/* C (rows x n) = (bias ? bias : C) + A (rows x k, lda) . W^T, in m's precision: chunks of
   RP_CHUNK rows prepared into the scratch, then the product on them. */
static void rp_gemm(const rp_matrix *m, ptrdiff_t rows, const float *a, ptrdiff_t lda,
                    const float *bias, float *c, ptrdiff_t ldc, void *scratch)
{
    const rp_level_t *t = rp_table(m->precision, m->level);
    ptrdiff_t chunk = rp_chunk(rows);
    for (ptrdiff_t r0 = 0; r0 < rows; r0 += chunk) {
        ptrdiff_t n = rows - r0 < chunk ? rows - r0 : chunk;
        t->prepare(m->k, n, a + r0 * lda, lda, scratch);
        t->run(m, n, scratch, bias, c + r0 * ldc, ldc);
    }
}

/* Bytes of `rows` rows of A of k values prepared for matrices of `precision` and `level`. */
static ptrdiff_t rp_prepared_bytes(int precision, int level, ptrdiff_t rows, ptrdiff_t k)
{
    (void)level;
    return precision == RP_INT8 ? rows * (rp_int8_kpad(k) + 4) : rows * rp_bf16_kpad(k) * 2;
}

/* A (rows x k, lda) rounded or quantized once into prep (rp_prepared_bytes) for rp_gemm_prepared
   on any matrix of m's precision, level and k (the row blocks of one product share it). */
static void rp_prepare(const rp_matrix *m, ptrdiff_t rows, const float *a, ptrdiff_t lda,
                       void *prep)
{
    rp_table(m->precision, m->level)->prepare(m->k, rows, a, lda, prep);
}

/* rp_gemm on rows prepared by rp_prepare: the same results. */
static void rp_gemm_prepared(const rp_matrix *m, ptrdiff_t rows, const void *prep,
                             const float *bias, float *c, ptrdiff_t ldc)
{
    rp_table(m->precision, m->level)->run(m, rows, prep, bias, c, ldc);
}

/* ---- transposed operands (bf16 only): the backward pass's products take W or A from
   their transposes stored row-major (dx = dz W_ih packs W_ih^T from W_ih; dW = dz^T x
   prepares dz^T from dz and packs x^T from x), rounding and laying them out in one pass.
   Same bytes as rp_pack / rp_prepare on a transposed copy. Two rows of the transpose make
   one bf16 pair per word, 16 lanes at a time: word = bf16(row i) | bf16(row i+1) << 16. */

typedef uint32_t rp_t_vu __attribute__((vector_size(64)));
typedef int32_t rp_t_vi __attribute__((vector_size(64)));
typedef float rp_t_vf __attribute__((vector_size(64)));

/* rp_bf16_bits of 16 floats, in the low halves of 32-bit lanes (RP_DEFINE_ROUND's steps) */
static inline rp_t_vu rp_t_round16(const float *a)
{
    rp_t_vu u;
    memcpy(&u, a, sizeof u);
    rp_t_vi nan = (rp_t_vi)((u & 0x7FFFFFFFu) > 0x7F800000u);
    return RP_SELECT(rp_t_vi, rp_t_vu, nan, u | 0x00400000u, u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

/* Rows i0 .. i1-1 of W^T (row i at wt + (i - i0) * ldwt, m->n values) into m's panels,
   which the caller zeroed: each value lands in its own half word, so W^T's rows may come
   in pieces (i0 odd or not). */
#define RP_DEFINE_PACK_TRANSPOSED(NAME, ATTR)                                           \
ATTR static void NAME(const rp_matrix *m, ptrdiff_t i0, ptrdiff_t i1,                   \
                      const float *wt, ptrdiff_t ldwt)                                  \
{                                                                                       \
    ptrdiff_t nr = rp_column_align(RP_BF16, m->level), groups = rp_bf16_kpad(m->k) / 2; \
    ptrdiff_t n = m->n;                                                                 \
    uint32_t *words = (uint32_t *)m->panels;                                            \
    uint16_t *halves = (uint16_t *)m->panels;                                           \
    /* an unpaired first row (i0 odd) and last row: a half word each */                 \
    if (i0 < i1 && i0 % 2) {                                                            \
        for (ptrdiff_t j = 0; j < n; j++)                                               \
            halves[(((j / nr) * groups + i0 / 2) * nr + j % nr) * 2 + 1] = rp_bf16_bits(wt[j]); \
        wt += ldwt;                                                                     \
        i0++;                                                                           \
    }                                                                                   \
    if (i0 < i1 && (i1 - i0) % 2) {                                                     \
        const float *row = wt + (i1 - 1 - i0) * ldwt;                                   \
        for (ptrdiff_t j = 0; j < n; j++)                                               \
            halves[(((j / nr) * groups + (i1 - 1) / 2) * nr + j % nr) * 2] = rp_bf16_bits(row[j]); \
        i1--;                                                                           \
    }                                                                                   \
    /* pairs of rows, each read once in order */                                        \
    for (ptrdiff_t i = i0; i < i1; i += 2) {                                            \
        const float *row = wt + (i - i0) * ldwt;                                        \
        for (ptrdiff_t j0 = 0; j0 < n; j0 += nr) {                                      \
            ptrdiff_t j1 = n - j0 < nr ? n : j0 + nr, j = j0;                           \
            uint32_t *out = words + ((j0 / nr) * groups + i / 2) * nr - j0;             \
            for (; j + 16 <= j1; j += 16) {                                             \
                rp_t_vu w = rp_t_round16(row + j) | (rp_t_round16(row + ldwt + j) << 16); \
                memcpy(out + j, &w, sizeof w);                                          \
            }                                                                           \
            for (; j < j1; j++)                                                         \
                out[j] = rp_bf16_bits(row[j]) | ((uint32_t)rp_bf16_bits(row[ldwt + j]) << 16); \
        }                                                                               \
    }                                                                                   \
}
RP_DEFINE_PACK_TRANSPOSED(rp_pack_transposed_generic, )
RP_DEFINE_PACK_TRANSPOSED(rp_pack_transposed_avx512, RP_VNNI_ATTR)

static void rp_pack_transposed_rows(const rp_matrix *m, ptrdiff_t i0, ptrdiff_t i1,
                                    const float *wt, ptrdiff_t ldwt)
{
    if (pg_get_level() == PG_LEVEL_AVX512)
        rp_pack_transposed_avx512(m, i0, i1, wt, ldwt);
    else
        rp_pack_transposed_generic(m, i0, i1, wt, ldwt);
}

/* Pack W (m->n x m->k) given W^T (m->k rows of m->n values, row i at wt + i * ldwt). */
static void rp_pack_transposed(rp_matrix *m, const float *wt, ptrdiff_t ldwt)
{
    memset(m->panels, 0, (size_t)rp_panels_bytes(m->precision, m->level, m->n, m->k));
    rp_pack_transposed_rows(m, 0, m->k, wt, ldwt);
}

/* Prepare A (rows x m->k) for rp_gemm_prepared given A^T (m->k rows of `rows` values, row i
   at at + i * ldat): prepared row r is word g = bf16(A^T[2g][r]) | bf16(A^T[2g+1][r]) << 16.
   Blocks of 16 rows of A: the two rows of A^T a word needs are read 64 bytes at a time.
   Under AVX-512, tiles of 16 rows x 16 words are transposed in registers (4 stages of
   two-vector shuffles, vpermt2d) and stored 64 bytes at a time; else each word is stored
   on its own (same bytes). */
#define RP_T_SWAP(M, H, I)                                                              \
    do {                                                                                \
        rp_t_vu a_ = M[I], b_ = M[(I) + (H)];                                           \
        M[I] = __builtin_shuffle(a_, b_, lo_##H);                                       \
        M[(I) + (H)] = __builtin_shuffle(a_, b_, hi_##H);                               \
    } while (0)
/* s[0..15] += rows 0 .. N-1 of A^T (ld apart), one after the other */
#define RP_T_SUM(S, A, LD, N)                                                           \
    do {                                                                                \
        rp_t_vf s_;                                                                     \
        memcpy(&s_, S, sizeof s_);                                                      \
        for (int n_ = 0; n_ < (N); n_++) {                                              \
            rp_t_vf v_;                                                                 \
            memcpy(&v_, (A) + n_ * (LD), sizeof v_);                                    \
            s_ += v_;                                                                   \
        }                                                                               \
        memcpy(S, &s_, sizeof s_);                                                      \
    } while (0)
#define RP_T_STAGE(M, H)                                                                \
    RP_UNROLL for (int i_ = 0; i_ < 16; i_++) if (!(i_ & (H))) RP_T_SWAP(M, H, i_)

#define RP_DEFINE_PREPARE_TRANSPOSED(NAME, ATTR, TILES)                                 \
ATTR static void NAME(ptrdiff_t k, ptrdiff_t rows, const float *at, ptrdiff_t ldat,    \
                      void *prep, float *sums)                                          \
{                                                                                       \
    /* lane j of the pair (a, b) after a swap of blocks of h lanes */                   \
    const rp_t_vu lo_8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};      \
    const rp_t_vu hi_8 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}; \
    const rp_t_vu lo_4 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};    \
    const rp_t_vu hi_4 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};  \
    const rp_t_vu lo_2 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};    \
    const rp_t_vu hi_2 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};  \
    const rp_t_vu lo_1 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};   \
    const rp_t_vu hi_1 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};   \
    ptrdiff_t groups = rp_bf16_kpad(k) / 2, kp = k / 2 * 2, vr = rows / 16 * 16;        \
    uint32_t *words = (uint32_t *)prep;                                                 \
    ptrdiff_t gt = TILES ? kp / 32 * 16 : 0;    /* groups done by tiles */               \
    /* tiles: 16 groups (32 rows of A^T, read as 32 streams) at a time, along A's rows */ \
    for (ptrdiff_t g = 0; g < gt; g += 16)                                              \
        for (ptrdiff_t r0 = 0; r0 < vr; r0 += 16) {                                     \
            rp_t_vu m_[16];                                                             \
            RP_UNROLL for (int l = 0; l < 16; l++) {                                    \
                const float *a0 = at + 2 * (g + l) * ldat + r0;                         \
                m_[l] = rp_t_round16(a0) | (rp_t_round16(a0 + ldat) << 16);             \
            }                                                                           \
            if (sums) RP_T_SUM(sums + r0, at + 2 * g * ldat + r0, ldat, 32);            \
            RP_T_STAGE(m_, 8); RP_T_STAGE(m_, 4); RP_T_STAGE(m_, 2); RP_T_STAGE(m_, 1); \
            RP_UNROLL for (int l = 0; l < 16; l++)                                      \
                memcpy(words + (r0 + l) * groups + g, &m_[l], sizeof m_[l]);            \
        }                                                                               \
    for (ptrdiff_t r0 = 0; r0 < vr; r0 += 16) {                                         \
        ptrdiff_t g = gt;                                                               \
        for (; 2 * g < kp; g++) {                                                       \
            const float *a0 = at + 2 * g * ldat + r0;                                   \
            rp_t_vu w = rp_t_round16(a0) | (rp_t_round16(a0 + ldat) << 16);             \
            for (int l = 0; l < 16; l++) words[(r0 + l) * groups + g] = w[l];           \
            if (sums) RP_T_SUM(sums + r0, a0, ldat, 2);                                 \
        }                                                                               \
        if (kp < k) {                                                                   \
            rp_t_vu w = rp_t_round16(at + kp * ldat + r0);                              \
            for (int l = 0; l < 16; l++) words[(r0 + l) * groups + g] = w[l];           \
            if (sums) RP_T_SUM(sums + r0, at + kp * ldat + r0, ldat, 1);                \
        }                                                                               \
    }                                                                                   \
    for (ptrdiff_t r = vr; r < rows; r++) {                                             \
        ptrdiff_t g = 0;                                                                \
        for (; 2 * g < kp; g++)                                                         \
            words[r * groups + g] = rp_bf16_bits(at[2 * g * ldat + r])                  \
                                    | ((uint32_t)rp_bf16_bits(at[(2 * g + 1) * ldat + r]) << 16); \
        if (kp < k) words[r * groups + g] = rp_bf16_bits(at[kp * ldat + r]);            \
        if (sums)                                                                       \
            for (ptrdiff_t i = 0; i < k; i++) sums[r] += at[i * ldat + r];              \
    }                                                                                   \
}
RP_DEFINE_PREPARE_TRANSPOSED(rp_prepare_transposed_generic, , 0)
RP_DEFINE_PREPARE_TRANSPOSED(rp_prepare_transposed_avx512, RP_VNNI_ATTR, 1)

static void rp_prepare_transposed(const rp_matrix *m, ptrdiff_t rows, const float *at,
                                  ptrdiff_t ldat, void *prep)
{
    if (pg_get_level() == PG_LEVEL_AVX512)
        rp_prepare_transposed_avx512(m->k, rows, at, ldat, prep, NULL);
    else
        rp_prepare_transposed_generic(m->k, rows, at, ldat, prep, NULL);
}

/* rp_prepare_transposed, and sums[r] += A^T[i][r] for every i in order (the column sums of
   A^T, which the preparation reads anyway: the backward's bias gradients). */
static void rp_prepare_transposed_sums(const rp_matrix *m, ptrdiff_t rows, const float *at,
                                       ptrdiff_t ldat, void *prep, float *sums)
{
    if (pg_get_level() == PG_LEVEL_AVX512)
        rp_prepare_transposed_avx512(m->k, rows, at, ldat, prep, sums);
    else
        rp_prepare_transposed_generic(m->k, rows, at, ldat, prep, sums);
}

#pragma GCC pop_options

#endif
