/*
 * activations.h -- the float32 tanh and sigmoid of the compiled kernels, one source.
 *
 *     tanh(x) ~ x P(x^2) / Q(x^2),   |x| <= c = 7.9053...;   +-1 from c on
 *
 * The coefficients are those of fastrnn._numba.activations rounded to float32. The
 * scalar function (activations.pxd, for the pointwise loops gcc vectorises) reads them
 * from here; PG_DEFINE_POINTWISE below builds the vector function of each instruction-set
 * level from them, in the same Horner order (contracted to FMAs where the level has
 * FMA). At most 5 ulp from tanh in float32; a NaN input stays NaN.
 */
#ifndef FASTRNN_ACTIVATIONS_H
#define FASTRNN_ACTIVATIONS_H

#include <string.h>

#define FR_TANH_CLAMP 7.90531110763549805f
#define FR_TANH_P0 9.9999999853935240e-01f
#define FR_TANH_P1 1.3127998539521096e-01f
#define FR_TANH_P2 3.1534958223068282e-03f
#define FR_TANH_P3 1.1687812133285447e-05f
#define FR_TANH_P4 -2.2517512644196932e-08f
#define FR_TANH_P5 6.4781839914057922e-11f
#define FR_TANH_P6 -1.1909507123285503e-13f
#define FR_TANH_Q0 1.0f
#define FR_TANH_Q1 4.6461330295547648e-01f
#define FR_TANH_Q2 2.4691291033990908e-02f
#define FR_TANH_Q3 2.6191039455341708e-04f

/* Pointwise helpers of level P on its float vector P##_vf (P##_UNITS lanes) and int vector
   P##_vi, with the target attribute ATTR of the level (an inline function must have the
   target of its caller). P##_load/P##_store move the first w lanes; the rest read as 0.
   PG_MAX_##P / PG_MIN_##P are x86's maxps/minps: the second argument when either is NaN.
   PG_TANH_SATURATE_##P(x, c, one, approx) is x >= c ? 1 : x <= -c ? -1 : approx, lane by
   lane (PG_TANH_SATURATE_SELECT, or the level's own form of it). */
#define PG_TANH_SATURATE_SELECT(P, x, c, one, approx)                                   \
    P##_select((x) >= (c), (one), P##_select((x) <= -(c), -(one), (approx)))
#define PG_DEFINE_POINTWISE(P, ATTR)                                                    \
ATTR static inline P##_vf P##_load(const float *p, int w)                              \
{                                                                                       \
    P##_vf v = (P##_vf){0};                                                             \
    if (w == P##_UNITS) memcpy(&v, p, sizeof v); else memcpy(&v, p, w * sizeof(float)); \
    return v;                                                                           \
}                                                                                       \
ATTR static inline void P##_store(float *p, P##_vf v, int w)                           \
{                                                                                       \
    if (w == P##_UNITS) memcpy(p, &v, sizeof v); else memcpy(p, &v, w * sizeof(float)); \
}                                                                                       \
/* mask ? a : b, for a mask from a vector compare */                                   \
ATTR static inline P##_vf P##_select(P##_vi mask, P##_vf a, P##_vf b)                  \
{                                                                                       \
    return (P##_vf)((mask & (P##_vi)a) | (~mask & (P##_vi)b));                          \
}                                                                                       \
ATTR static inline P##_vf P##_max(P##_vf a, P##_vf b) { return PG_MAX_##P(a, b); }  \
ATTR static inline P##_vf P##_min(P##_vf a, P##_vf b) { return PG_MIN_##P(a, b); }  \
ATTR static inline P##_vf P##_tanh(P##_vf x)                                           \
{                                                                                       \
    const P##_vf c = (P##_vf){0} + FR_TANH_CLAMP, one = (P##_vf){0} + 1.0f;             \
    P##_vf clamped = P##_min(c, P##_max(-c, x));  /* NaN stays NaN */                  \
    P##_vf s = clamped * clamped;                                                       \
    P##_vf p = ((((((FR_TANH_P6 * s + FR_TANH_P5) * s + FR_TANH_P4) * s + FR_TANH_P3) * s \
                  + FR_TANH_P2) * s + FR_TANH_P1) * s + FR_TANH_P0);                    \
    P##_vf q = (((FR_TANH_Q3 * s + FR_TANH_Q2) * s + FR_TANH_Q1) * s + FR_TANH_Q0);     \
    P##_vf approx = clamped * p / q;                                                    \
    /* past the clamp tanh rounds to +-1 exactly; NaN fails both tests and stays NaN */ \
    return PG_TANH_SATURATE_##P(x, c, one, approx);                                     \
}                                                                                       \
ATTR static inline P##_vf P##_sigmoid(P##_vf x)                                        \
{                                                                                       \
    return 0.5f + 0.5f * P##_tanh(0.5f * x);                                            \
}

#endif
