r"""Activations for the Cython kernels, chosen by the fused type at compile time.

float64 uses libm's ``tanh``. float32 uses the rational approximation of
:mod:`fastrnn._numba.activations` (same coefficients, rounded to float32, same
order of operations), built only from multiply, add, divide and compares so
that gcc vectorises the loops that call it:

.. math::

    \tanh(x) \approx x \, \frac{P(x^2)}{Q(x^2)}, \qquad |x| \le c = 7.9053...

From ``c`` on, ``tanh`` rounds to ``±1`` in float32, which is what the
function returns there. A NaN input stays NaN (every compare is false).
The coefficients come from ``activations.h``, which also builds the vector
``tanh`` of the fused float32 steps from them (``P##_tanh``, same order).
"""

from cython cimport floating
from libc.math cimport tanh as libm_tanh


cdef extern from "activations.h" nogil:
    const float FR_TANH_CLAMP, FR_TANH_P0, FR_TANH_P1, FR_TANH_P2, FR_TANH_P3, FR_TANH_P4
    const float FR_TANH_P5, FR_TANH_P6, FR_TANH_Q0, FR_TANH_Q1, FR_TANH_Q2, FR_TANH_Q3


cdef inline float tanh_float32(float x) noexcept nogil:
    """Vectorisable float32 ``tanh`` (at most a few ulp from the exact value)."""
    cdef float c = FR_TANH_CLAMP
    cdef float p0 = FR_TANH_P0, p1 = FR_TANH_P1, p2 = FR_TANH_P2, p3 = FR_TANH_P3
    cdef float p4 = FR_TANH_P4, p5 = FR_TANH_P5, p6 = FR_TANH_P6
    cdef float q0 = FR_TANH_Q0, q1 = FR_TANH_Q1, q2 = FR_TANH_Q2, q3 = FR_TANH_Q3
    cdef float clamped, s, p, q, approx
    clamped = -c if x < -c else x
    clamped = c if clamped > c else clamped
    s = clamped * clamped
    p = ((((((p6 * s + p5) * s + p4) * s + p3) * s + p2) * s + p1) * s + p0)
    q = (((q3 * s + q2) * s + q1) * s + q0)
    approx = clamped * p / q
    # past the clamp tanh rounds to +-1 exactly; NaN fails both tests and stays NaN
    return <float>1 if x >= c else (<float>-1 if x <= -c else approx)


cdef inline floating tanh(floating x) noexcept nogil:
    """Hyperbolic tangent: exact in float64, vectorisable approximation in float32."""
    if floating is float:
        return tanh_float32(x)
    else:
        return libm_tanh(x)


cdef inline floating sigmoid(floating x) noexcept nogil:
    """Logistic function, written through ``tanh`` so it shares its speed and accuracy."""
    cdef floating half = 0.5
    return half + half * tanh(half * x)
