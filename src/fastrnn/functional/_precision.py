"""The ``precision`` option of the forward functions and the packers: which precision a call
runs in, what reduced precision refuses, and the backend that has its kernels.

In bf16 and int8 the products ``a W^T`` of a layer are computed on weights rounded or
quantized once (:mod:`fastrnn._python.reduced` defines the rounding); biases, gate math and
states stay float32. It is inference only for now: no cache, no backward pass.
"""

import warnings

import numpy as np

from fastrnn import _backends
from fastrnn._validation import check_precision
from fastrnn.exceptions import ArgumentError, BackendUnavailableError, DTypeError

__all__ = ["call_precision", "check_reduced_call", "check_reduced_dtype", "resolve_reduced"]


def call_precision(precision, packed):
    """The precision a forward call runs in.

    Parameters
    ----------
    precision : str or None
        The call's argument; None takes the packed weights' precision, else float32.
    packed : PackedWeights or None

    Returns
    -------
    str

    Raises
    ------
    ArgumentError
        For an unknown precision, or one that differs from the packed weights'.
    """
    precision = check_precision(precision, allow_none=True)
    if packed is None:
        return precision or "float32"
    if precision is not None and precision != packed.precision:
        raise ArgumentError(f"precision={precision!r} differs from the packed weights' "
                            f"{packed.precision!r}; omit precision (or pack again with "
                            f"precision={precision!r})")
    return packed.precision


def check_reduced_call(precision, requires_grad):
    """Refuse a reduced-precision call that asks for a backward pass."""
    if precision != "float32" and requires_grad:
        raise ArgumentError(
            f"precision={precision!r} runs inference only: training in bf16 or int8 is not "
            "available yet; pass requires_grad=False (or precision='float32' to train)")


def check_reduced_dtype(precision, dtype, what="the inputs"):
    """Refuse float64 in reduced precision, which computes in float32."""
    if precision != "float32" and np.dtype(dtype) != np.dtype(np.float32):
        raise DTypeError(f"precision={precision!r} computes in float32; {what} are {np.dtype(dtype)}: "
                         "cast them to float32 (or use precision='float32')")


def resolve_reduced(backend, kernel, precision):
    """The backend of a bf16 or int8 call, as :func:`fastrnn._backends.resolve` gives it, that
    has ``kernel + "_reduced"`` (``auto`` skips a backend without it). float32 calls resolve
    through the registry directly, which warns at their caller's line.

    Returns
    -------
    (str, module)

    Raises
    ------
    BackendUnavailableError
        For a backend asked for by name that has no reduced-precision kernels (Numba; the
        extension built before them), saying so.
    """
    name, module = _backends.resolve(backend)
    reduced = kernel + "_reduced"
    if hasattr(module, reduced):
        return name, module
    try:
        with warnings.catch_warnings():  # the registry's warning would blame missing backends
            warnings.simplefilter("ignore", RuntimeWarning)
            fallback = _backends.resolve(backend, kernel=reduced)
    except BackendUnavailableError:
        raise BackendUnavailableError(
            name, f"it has no bf16/int8 kernels (precision={precision!r}); run reduced precision "
            "on backend='cython' (or 'python', the reference), or use precision='float32'") from None
    _warn_reference_fallback(name, precision)
    return fallback


_warned = set()


def _warn_reference_fallback(name, precision):
    if name not in _warned:
        _warned.add(name)
        warnings.warn(f"precision={precision!r} runs on the pure-NumPy reference backend, which is "
                      f"slow: the {name} backend has no bf16/int8 kernels (the compiled extension "
                      "gets them when built from a source that has them)", RuntimeWarning, stacklevel=4)
