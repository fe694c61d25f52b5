r"""Activations for the Numba kernels, chosen by dtype at compile time.

float64 uses libm's ``tanh``. float32 uses a rational approximation built only
from multiply, add, divide, min and max, so that LLVM vectorises the loops that
call it (libm's scalar ``tanhf`` was the largest cost of the small-shape loops):

.. math::

    \tanh(x) \approx x \, \frac{P(x^2)}{Q(x^2)}, \qquad |x| \le c = 7.9053...

with ``P`` of degree 6 and ``Q`` of degree 3 in :math:`x^2`, fitted by weighted
least squares on relative error (max 1.6e-9 in exact arithmetic; at most
5 ulp, mean 2 ulp, when evaluated in float32). From ``c`` on, ``tanh`` rounds to
``±1`` in float32, which is what the function returns there. The same coefficients are in
``csrc/activations.pxd``; ``tests/test_activations.py`` checks both.
"""

import math

import numpy as np
from numba import types
from numba.extending import overload

TANH_CLAMP = 7.90531110763549805
TANH_P = (
    9.9999999853935240e-01,
    1.3127998539521096e-01,
    3.1534958223068282e-03,
    1.1687812133285447e-05,
    -2.2517512644196932e-08,
    6.4781839914057922e-11,
    -1.1909507123285503e-13,
)
TANH_Q = (
    1.0,
    4.6461330295547648e-01,
    2.4691291033990908e-02,
    2.6191039455341708e-04,
)

_C = np.float32(TANH_CLAMP)
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(c) for c in TANH_P)
_Q0, _Q1, _Q2, _Q3 = (np.float32(c) for c in TANH_Q)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


def _tanh_float32(x):
    clamped = min(max(x, -_C), _C)
    s = clamped * clamped
    p = ((((((_P6 * s + _P5) * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0)
    q = (((_Q3 * s + _Q2) * s + _Q1) * s + _Q0)
    approx = clamped * p / q
    # past the clamp tanh rounds to +-1 exactly; NaN fails both tests and stays NaN
    return _ONE if x >= _C else (-_ONE if x <= -_C else approx)


def tanh(x):
    """Hyperbolic tangent: exact in float64, vectorisable approximation in float32."""
    return math.tanh(x)


def sigmoid(x):
    """Logistic function, written through ``tanh`` so it shares its speed and accuracy."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(tanh)
def _tanh_overload(x):
    if x == types.float32:
        return _tanh_float32
    return lambda x: math.tanh(x)


@overload(sigmoid)
def _sigmoid_overload(x):
    if x == types.float32:
        return lambda x: _HALF + _HALF * tanh(_HALF * x)
    return lambda x: 0.5 + 0.5 * math.tanh(0.5 * x)
