/*
 * cell_steps.h -- the fused steps of the gated cells (float32; float64 keeps libm's tanh),
 * written once and instantiated per instruction-set level by isa.h.
 *
 * A step's recurrent product and its gate math run tile by tile: the
 * pre-activations of a few rows and P##_UNITS hidden units (one vector of the
 * level) never leave the registers before they are activated (measured on an
 * LSTM step with 32 rows, AVX2: 1.6x faster than the product followed by the
 * pointwise pass at H = 32, 1.15x at H = 128). The weights are packed per block
 * of P##_UNITS units with the gates of those units side by side
 * (pg_pack_gates_units), so one tile holds every gate of its units.
 *
 * Each output element is a single chain of multiply-adds from its initial
 * value over k = 0, 1, ..., in that order, whatever the tile, the rows or the
 * thread that computes it: results do not depend on the blocking.
 *
 * A level P provides, before PG_DEFINE_CELL_STEPS(P, ATTR): P##_vf, P##_UNITS, the
 * pointwise helpers of activations.h, P##_LSTM_ROWS and P##_GRU_ROWS (rows per tile,
 * 2 or 4: 4 needs 16 or 12 accumulators and fits only in 32 vector registers) and
 * P##_ROWS4_MIN_H (the tiles of 4 rows only from this H on: below, 2) and
 * PG_IN_REGISTERS_##P / PG_IN_REGISTERS3_##P.
 */
#ifndef FASTRNN_CELL_STEPS_H
#define FASTRNN_CELL_STEPS_H

#include <stddef.h>
#include <string.h>

/* Pack the (k, gates*H) matrix B, element (i, j) at b[i*stride_k + j*stride_n], in panels of
   `units` units: panel p, row i holds [B(i, q*H + p*units + u) for q < gates, u < units]
   (zero past unit H). */
static void pg_pack_gates_units(const float *b, ptrdiff_t k, ptrdiff_t H, int gates,
                                ptrdiff_t stride_k, ptrdiff_t stride_n, int units, float *packed)
{
    ptrdiff_t panels = (H + units - 1) / units;
    for (ptrdiff_t p = 0; p < panels; p++)
        for (ptrdiff_t i = 0; i < k; i++)
            for (int q = 0; q < gates; q++)
                for (int u = 0; u < units; u++) {
                    ptrdiff_t unit = p * units + u;
                    *packed++ = unit < H ? b[i * stride_k + (q * H + unit) * stride_n] : 0.0f;
                }
}

static inline ptrdiff_t pg_gates_packed_size_units(ptrdiff_t k, ptrdiff_t H, int gates, int units)
{
    return (H + units - 1) / units * units * gates * k;
}

/* LSTM forward step: z (rows, 4H) holds x W_ih^T + b on entry and the activated gates
   [i, f, g, o] on exit; c_t (may be c_prev) and h_t (rows, H) are written. Only units u0:u1
   (u0 a multiple of P##_UNITS) are done, so threads may share the columns. Rows go by
   P##_LSTM_ROWS (4 or 2), then in pairs: 4 accumulators a row, 4 vectors of weights loaded
   once per k for every row of the tile (named variables, not arrays: gcc keeps arrays of
   vectors on the stack). */
#define PG_LSTM_GATE_MATH(P, ACC_I, ACC_F, ACC_G, ACC_O, ROW)                           \
    {                                                                                   \
        float *z_m = z + (ROW) * G + u;                                                 \
        P##_vf i_ = P##_sigmoid(ACC_I), f_ = P##_sigmoid(ACC_F);                         \
        P##_vf g_ = P##_tanh(ACC_G), o_ = P##_sigmoid(ACC_O);                            \
        P##_vf c_ = f_ * P##_load(c_prev + (ROW) * H + u, w) + i_ * g_;                  \
        P##_store(z_m, i_, w);                                                          \
        P##_store(z_m + H, f_, w);                                                      \
        P##_store(z_m + 2 * H, g_, w);                                                  \
        P##_store(z_m + 3 * H, o_, w);                                                  \
        P##_store(c_t + (ROW) * H + u, c_, w);                                          \
        P##_store(h_t + (ROW) * H + u, o_ * P##_tanh(c_), w);                           \
    }

#define PG_LOAD_GATES(P, ROW, A0, A1, A2, A3)                                           \
    P##_vf A0 = P##_load(z + (ROW) * G + u, w), A1 = P##_load(z + (ROW) * G + H + u, w); \
    P##_vf A2 = P##_load(z + (ROW) * G + 2 * H + u, w), A3 = P##_load(z + (ROW) * G + 3 * H + u, w);

/* Prefetch the GATES pre-activation blocks of the tile that follows (the next NROWS rows,
   or the first rows of the next block of units) while this tile's product runs: without
   it the first loads of a tile wait on L2 (perf: 13% of the avx512 LSTM step at S1). */
#define PG_PREFETCH_TILE(P, BUF, NROWS, GATES)                                          \
    {                                                                                   \
        ptrdiff_t nr_ = r + (NROWS), nu_ = u;                                           \
        if (nr_ >= rows) { nr_ = 0; nu_ = u + P##_UNITS; }                               \
        if (nu_ < u1)                                                                   \
            for (int j_ = 0; j_ < (NROWS) && nr_ + j_ < rows; j_++)                     \
                for (int q_ = 0; q_ < (GATES); q_++)                                   \
                    __builtin_prefetch((BUF) + (nr_ + j_) * G + q_ * H + nu_);         \
    }

#define PG_DEFINE_LSTM_STEP(P, ATTR)                                                    \
ATTR static void P##_lstm_step(ptrdiff_t rows, ptrdiff_t H, const float *h_prev,       \
                               const float *packed, float *z, const float *c_prev,      \
                               float *c_t, float *h_t, ptrdiff_t u0, ptrdiff_t u1)      \
{                                                                                       \
    ptrdiff_t G = 4 * H;                                                                \
    for (ptrdiff_t u = u0; u < u1; u += P##_UNITS) {                                     \
        const float *panel = packed + u * 4 * H;                                        \
        int w = (int)(u1 - u < P##_UNITS ? u1 - u : P##_UNITS);                           \
        ptrdiff_t r = 0;                                                                \
        for (; P##_LSTM_ROWS >= 4 && H >= P##_ROWS4_MIN_H && r + 4 <= rows; r += 4) { \
            PG_LOAD_GATES(P, r, i0, f0, g0, o0)                                         \
            PG_LOAD_GATES(P, r + 1, i1, f1, g1, o1)                                     \
            PG_LOAD_GATES(P, r + 2, i2, f2, g2, o2)                                     \
            PG_LOAD_GATES(P, r + 3, i3, f3, g3, o3)                                     \
            PG_PREFETCH_TILE(P, z, 4, 4)                                                 \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                P##_vf b0, b1, b2, b3;                                                  \
                const float *pk = panel + k * 4 * P##_UNITS;                            \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + P##_UNITS, sizeof b1);                                 \
                memcpy(&b2, pk + 2 * P##_UNITS, sizeof b2);                             \
                memcpy(&b3, pk + 3 * P##_UNITS, sizeof b3);                             \
                PG_IN_REGISTERS_##P(b0, b1, b2, b3);                                    \
                float a0 = a[k], a1 = a[H + k], a2 = a[2 * H + k], a3 = a[3 * H + k];   \
                i0 += a0 * b0; f0 += a0 * b1; g0 += a0 * b2; o0 += a0 * b3;             \
                i1 += a1 * b0; f1 += a1 * b1; g1 += a1 * b2; o1 += a1 * b3;             \
                i2 += a2 * b0; f2 += a2 * b1; g2 += a2 * b2; o2 += a2 * b3;             \
                i3 += a3 * b0; f3 += a3 * b1; g3 += a3 * b2; o3 += a3 * b3;             \
            }                                                                           \
            PG_LSTM_GATE_MATH(P, i0, f0, g0, o0, r)                                     \
            PG_LSTM_GATE_MATH(P, i1, f1, g1, o1, r + 1)                                 \
            PG_LSTM_GATE_MATH(P, i2, f2, g2, o2, r + 2)                                 \
            PG_LSTM_GATE_MATH(P, i3, f3, g3, o3, r + 3)                                 \
        }                                                                               \
        for (; r + 2 <= rows; r += 2) {                                                 \
            PG_LOAD_GATES(P, r, i0, f0, g0, o0)                                         \
            PG_LOAD_GATES(P, r + 1, i1, f1, g1, o1)                                     \
            PG_PREFETCH_TILE(P, z, 2, 4)                                                \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                P##_vf b0, b1, b2, b3;                                                   \
                const float *pk = panel + k * 4 * P##_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + P##_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * P##_UNITS, sizeof b2);                              \
                memcpy(&b3, pk + 3 * P##_UNITS, sizeof b3);                              \
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
                P##_vf b0, b1, b2, b3;                                                   \
                const float *pk = panel + k * 4 * P##_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + P##_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * P##_UNITS, sizeof b2);                              \
                memcpy(&b3, pk + 3 * P##_UNITS, sizeof b3);                              \
                float a0 = a[k];                                                        \
                i0 += a0 * b0; f0 += a0 * b1; g0 += a0 * b2; o0 += a0 * b3;             \
            }                                                                           \
            PG_LSTM_GATE_MATH(P, i0, f0, g0, o0, r)                                     \
        }                                                                               \
    }                                                                                   \
}


/* LSTM BPTT step (one per batch chunk and step t, backwards): for units u0:u1 of every row,
   dh_t = dz_{t+1} W_hh (dz_next, rows x K, K = 4H, times W_hh (4H x H) packed by
   pg_pack_float, 2 * P##_UNITS units per panel) and, still in registers, the gate gradients of
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
            P##_vf one = (P##_vf){0} + 1.0f;                                              \
            P##_vf i_ = P##_load(a_, W), f_ = P##_load(a_ + H, W);                       \
            P##_vf g_ = P##_load(a_ + 2 * H, W), o = P##_load(a_ + 3 * H, W);            \
            P##_vf dh_ = ACC;                                                            \
            if (dy_t != NULL) dh_ += P##_load(dy_t + o_, W);                            \
            P##_vf dc_ = P##_load(dc + o_, W);                                           \
            if (dc_ext != NULL) dc_ += P##_load(dc_ext + o_, W);                        \
            P##_vf tc = P##_tanh(P##_load(c_t + o_, W));                                 \
            P##_vf do_ = dh_ * tc;                                                       \
            dc_ = dc_ + dh_ * o * (one - tc * tc);                                      \
            P##_vf di = dc_ * g_, dg = dc_ * i_, df = dc_ * P##_load(c_prev + o_, W);    \
            float *dz_ = dz_t + (ROW) * G + (U);                                        \
            P##_store(dz_, di * i_ * (one - i_), W);                                    \
            P##_store(dz_ + H, df * f_ * (one - f_), W);                                \
            P##_store(dz_ + 2 * H, dg * (one - g_ * g_), W);                            \
            P##_store(dz_ + 3 * H, do_ * o * (one - o), W);                             \
            P##_store(dc + o_, dc_ * f_, W);                                            \
        }                                                                               \
    }

#define PG_LSTM_GRAD_INIT(P, ROW, LO, HI)                                                  \
    P##_vf LO = (P##_vf){0}, HI = (P##_vf){0};                                             \
    if (dz_next == NULL) { LO = P##_load(dh + (ROW) * H + u, w0);                      \
                           HI = P##_load(dh + (ROW) * H + u + P##_UNITS, w1); }

#define PG_DEFINE_LSTM_GRAD_STEP(P, ATTR)                                               \
ATTR static void P##_lstm_grad_step(ptrdiff_t rows, ptrdiff_t H, ptrdiff_t K,           \
                                    const float *dz_next, const float *packed,          \
                                    float *dh, const float *a,                          \
                                    const float *c_t, const float *c_prev,              \
                                    const float *dy_t, const float *dc_ext, float *dc,  \
                                    float *dz_t, ptrdiff_t u0, ptrdiff_t u1)            \
{                                                                                       \
    ptrdiff_t G = 4 * H;                                                                \
    for (ptrdiff_t u = u0; u < u1; u += 2 * P##_UNITS) {                                 \
        const float *panel = packed + u * K;                                            \
        ptrdiff_t left = u1 - u;                                                        \
        int w0 = (int)(left < P##_UNITS ? left : P##_UNITS);                              \
        int w1 = (int)(left - w0 < P##_UNITS ? left - w0 : P##_UNITS);                    \
        ptrdiff_t r = 0;                                                                \
        for (; r + 4 <= rows; r += 4) {                                                 \
            PG_LSTM_GRAD_INIT(P, r, l0, h0) PG_LSTM_GRAD_INIT(P, r + 1, l1, h1)                \
            PG_LSTM_GRAD_INIT(P, r + 2, l2, h2) PG_LSTM_GRAD_INIT(P, r + 3, l3, h3)            \
            if (dz_next != NULL) {                                                      \
                const float *d = dz_next + r * K;                                       \
                for (ptrdiff_t k = 0; k < K; k++) {                                     \
                    P##_vf b0, b1;                                                       \
                    memcpy(&b0, panel + k * 2 * P##_UNITS, sizeof b0);                   \
                    memcpy(&b1, panel + k * 2 * P##_UNITS + P##_UNITS, sizeof b1);        \
                    float d0 = d[k], d1 = d[K + k], d2 = d[2 * K + k], d3 = d[3 * K + k]; \
                    l0 += d0 * b0; h0 += d0 * b1; l1 += d1 * b0; h1 += d1 * b1;         \
                    l2 += d2 * b0; h2 += d2 * b1; l3 += d3 * b0; h3 += d3 * b1;         \
                }                                                                       \
            }                                                                           \
            PG_LSTM_GRAD_HALF(P, l0, r, u, w0) PG_LSTM_GRAD_HALF(P, h0, r, u + P##_UNITS, w1) \
            PG_LSTM_GRAD_HALF(P, l1, r + 1, u, w0) PG_LSTM_GRAD_HALF(P, h1, r + 1, u + P##_UNITS, w1) \
            PG_LSTM_GRAD_HALF(P, l2, r + 2, u, w0) PG_LSTM_GRAD_HALF(P, h2, r + 2, u + P##_UNITS, w1) \
            PG_LSTM_GRAD_HALF(P, l3, r + 3, u, w0) PG_LSTM_GRAD_HALF(P, h3, r + 3, u + P##_UNITS, w1) \
        }                                                                               \
        for (; r < rows; r++) {                                                         \
            PG_LSTM_GRAD_INIT(P, r, l0, h0)                                             \
            if (dz_next != NULL) {                                                      \
                const float *d = dz_next + r * K;                                       \
                for (ptrdiff_t k = 0; k < K; k++) {                                     \
                    P##_vf b0, b1;                                                       \
                    memcpy(&b0, panel + k * 2 * P##_UNITS, sizeof b0);                   \
                    memcpy(&b1, panel + k * 2 * P##_UNITS + P##_UNITS, sizeof b1);        \
                    l0 += d[k] * b0; h0 += d[k] * b1;                                   \
                }                                                                       \
            }                                                                           \
            PG_LSTM_GRAD_HALF(P, l0, r, u, w0) PG_LSTM_GRAD_HALF(P, h0, r, u + P##_UNITS, w1) \
        }                                                                               \
    }                                                                                   \
}


/* GRU forward step, reset_after=True: g (rows, 4H) holds the projection [x_r, x_z, x_n]
   (biases in) on entry and [r, z, n, hn] on exit, h_t is written to y_t. The accumulators
   of r and z start from the projection, that of hn from b_hn. Units u0:u1 only. */
#define PG_GRU_GATE_MATH(P, ACC_R, ACC_Z, ACC_HN, ROW)                                  \
    {                                                                                   \
        float *g_m = g + (ROW) * G + u;                                                 \
        P##_vf r_ = P##_sigmoid(ACC_R), z_ = P##_sigmoid(ACC_Z);                         \
        P##_vf n_ = P##_tanh(P##_load(g_m + 2 * H, w) + r_ * ACC_HN);                    \
        P##_vf h_ = ((P##_vf){0} + 1.0f - z_) * n_ + z_ * P##_load(h_prev + (ROW) * H + u, w); \
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
    for (ptrdiff_t u = u0; u < u1; u += P##_UNITS) {                                     \
        const float *panel = packed + u * 3 * H;                                        \
        int w = (int)(u1 - u < P##_UNITS ? u1 - u : P##_UNITS);                           \
        P##_vf bias_n = P##_load(b_hn + u, w);                                           \
        ptrdiff_t r = 0;                                                                \
        for (; P##_GRU_ROWS >= 4 && H >= P##_ROWS4_MIN_H && r + 4 <= rows; r += 4) { \
            P##_vf r0 = P##_load(g + r * G + u, w), z0 = P##_load(g + r * G + H + u, w); \
            P##_vf r1 = P##_load(g + (r + 1) * G + u, w);                               \
            P##_vf z1 = P##_load(g + (r + 1) * G + H + u, w);                           \
            P##_vf r2 = P##_load(g + (r + 2) * G + u, w);                               \
            P##_vf z2 = P##_load(g + (r + 2) * G + H + u, w);                           \
            P##_vf r3 = P##_load(g + (r + 3) * G + u, w);                               \
            P##_vf z3 = P##_load(g + (r + 3) * G + H + u, w);                           \
            P##_vf n0 = bias_n, n1 = bias_n, n2 = bias_n, n3 = bias_n;                  \
            PG_PREFETCH_TILE(P, g, 4, 3)                                                \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                P##_vf b0, b1, b2;                                                      \
                const float *pk = panel + k * 3 * P##_UNITS;                            \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + P##_UNITS, sizeof b1);                                 \
                memcpy(&b2, pk + 2 * P##_UNITS, sizeof b2);                             \
                PG_IN_REGISTERS3_##P(b0, b1, b2);                                       \
                float a0 = a[k], a1 = a[H + k], a2 = a[2 * H + k], a3 = a[3 * H + k];   \
                r0 += a0 * b0; z0 += a0 * b1; n0 += a0 * b2;                            \
                r1 += a1 * b0; z1 += a1 * b1; n1 += a1 * b2;                            \
                r2 += a2 * b0; z2 += a2 * b1; n2 += a2 * b2;                            \
                r3 += a3 * b0; z3 += a3 * b1; n3 += a3 * b2;                            \
            }                                                                           \
            PG_GRU_GATE_MATH(P, r0, z0, n0, r)                                          \
            PG_GRU_GATE_MATH(P, r1, z1, n1, r + 1)                                      \
            PG_GRU_GATE_MATH(P, r2, z2, n2, r + 2)                                      \
            PG_GRU_GATE_MATH(P, r3, z3, n3, r + 3)                                      \
        }                                                                               \
        for (; r + 2 <= rows; r += 2) {                                                 \
            P##_vf r0 = P##_load(g + r * G + u, w), z0 = P##_load(g + r * G + H + u, w); \
            P##_vf r1 = P##_load(g + (r + 1) * G + u, w);                                \
            P##_vf z1 = P##_load(g + (r + 1) * G + H + u, w);                            \
            P##_vf n0 = bias_n, n1 = bias_n;                                             \
            PG_PREFETCH_TILE(P, g, 2, 3)                                                \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                P##_vf b0, b1, b2;                                                       \
                const float *pk = panel + k * 3 * P##_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + P##_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * P##_UNITS, sizeof b2);                              \
                PG_IN_REGISTERS3_##P(b0, b1, b2);                                       \
                float a0 = a[k], a1 = a[H + k];                                         \
                r0 += a0 * b0; z0 += a0 * b1; n0 += a0 * b2;                            \
                r1 += a1 * b0; z1 += a1 * b1; n1 += a1 * b2;                            \
            }                                                                           \
            PG_GRU_GATE_MATH(P, r0, z0, n0, r)                                          \
            PG_GRU_GATE_MATH(P, r1, z1, n1, r + 1)                                      \
        }                                                                               \
        if (r < rows) {                                                                 \
            P##_vf r0 = P##_load(g + r * G + u, w), z0 = P##_load(g + r * G + H + u, w); \
            P##_vf n0 = bias_n;                                                          \
            const float *a = h_prev + r * H;                                            \
            for (ptrdiff_t k = 0; k < H; k++) {                                         \
                P##_vf b0, b1, b2;                                                       \
                const float *pk = panel + k * 3 * P##_UNITS;                             \
                memcpy(&b0, pk, sizeof b0);                                             \
                memcpy(&b1, pk + P##_UNITS, sizeof b1);                                  \
                memcpy(&b2, pk + 2 * P##_UNITS, sizeof b2);                              \
                r0 += a[k] * b0; z0 += a[k] * b1; n0 += a[k] * b2;                      \
            }                                                                           \
            PG_GRU_GATE_MATH(P, r0, z0, n0, r)                                          \
        }                                                                               \
    }                                                                                   \
}

#define PG_DEFINE_CELL_STEPS(P, ATTR)                                                   \
    PG_DEFINE_LSTM_STEP(P, ATTR)                                                        \
    PG_DEFINE_LSTM_GRAD_STEP(P, ATTR)                                                   \
    PG_DEFINE_GRU_STEP(P, ATTR)

#endif
