r"""Activations for the Cython kernels, chosen by the fused type at compile time.

float64 uses libm's ``tanh``. float32 uses the rational approximation of
:mod:`fastrnn._numba.activations` (same coefficients, rounded to float32, same
order of operations), built only from multiply, add, divide and compares so
that gcc vectorises the loops that call it:

.. math::

    \tanh(x) \approx x \, \frac{P(x^2)}{Q(x^2)}, \qquad |x| \le c = 7.9053...

From ``c`` on, ``tanh`` rounds to ``±1`` in float32, which is what the
function returns there. A NaN input stays NaN (every compare is false).
``packed_gemm.h`` holds a vector copy of it (``P##_tanh``, same coefficients and
order) for the fused float32 steps of the gated cells: change both together.
"""

from cython cimport floating
from libc.math cimport tanh as libm_tanh


cdef inline float tanh_float32(float x) noexcept nogil:
    """Vectorisable float32 ``tanh`` (at most a few ulp from the exact value)."""
    cdef float c = <float>7.90531110763549805
    cdef float p0 = <float>9.9999999853935240e-01
    cdef float p1 = <float>1.3127998539521096e-01
    cdef float p2 = <float>3.1534958223068282e-03
    cdef float p3 = <float>1.1687812133285447e-05
    cdef float p4 = <float>-2.2517512644196932e-08
    cdef float p5 = <float>6.4781839914057922e-11
    cdef float p6 = <float>-1.1909507123285503e-13
    cdef float q0 = <float>1.0
    cdef float q1 = <float>4.6461330295547648e-01
    cdef float q2 = <float>2.4691291033990908e-02
    cdef float q3 = <float>2.6191039455341708e-04
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
