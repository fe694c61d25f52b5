"""The ``precision`` option of the forward functions and the packers: which precision a call
runs in, what reduced precision refuses, and the backend that has its kernels.

In bf16 and int8 the products ``a W^T`` of a layer are computed on weights rounded or
quantized once (:mod:`fastrnn._python.reduced` defines the rounding); biases, gate math and
states stay float32.

bf16 also trains (mixed precision): a call with ``requires_grad=True`` rounds the float32
master weights once into a layer packed for the backward kernels too
(``pack_reduced(..., backward=True)``), runs ``*_forward_reduced`` with the training
workspaces, keeps that layer in the cache, and the backward function runs
``*_backward_reduced`` on it (products with both operands in bf16, float32 sums; the
gradients are float32, of the float32 master weights). int8 is inference only.
"""

import warnings

import numpy as np

from fastrnn import _backends
from fastrnn._validation import check_precision
from fastrnn.exceptions import ArgumentError, BackendUnavailableError, DTypeError

__all__ = ["call_precision", "check_reduced_call", "check_reduced_dtype", "resolve_reduced",
           "reduced_weights"]


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
    """Refuse a call that asks for a backward pass in int8, which has none (bf16 trains).

    Raises
    ------
    ArgumentError
        For ``precision="int8"`` with ``requires_grad=True``.
    """
    if precision == "int8" and requires_grad:
        raise ArgumentError(
            "precision='int8' is inference only: it has no backward pass; pass "
            "requires_grad=False, or train in precision='bf16' or 'float32'")


def check_reduced_dtype(precision, dtype, what="the inputs"):
    """Refuse float64 in reduced precision, which computes in float32."""
    if precision != "float32" and np.dtype(dtype) != np.dtype(np.float32):
        raise DTypeError(f"precision={precision!r} computes in float32; {what} are {np.dtype(dtype)}: "
                         "cast them to float32 (or use precision='float32')")


def resolve_reduced(backend, kernel, precision, requires_grad=False):
    """The backend of a bf16 or int8 call, as :func:`fastrnn._backends.resolve` gives it, that
    has ``kernel + "_reduced"`` and, for a training call (``requires_grad``), the matching
    ``*_backward_reduced`` kernel too (``auto`` skips a backend without them). float32 calls
    resolve through the registry directly, which warns at their caller's line.

    Parameters
    ----------
    backend : str or None
        The call's ``backend=`` argument.
    kernel : str
        The forward kernel (``"lstm_forward"``).
    precision : {"bf16", "int8"}
    requires_grad : bool
        The call keeps a cache for a backward pass in bf16.

    Returns
    -------
    (str, module)

    Raises
    ------
    BackendUnavailableError
        For a backend asked for by name that has no reduced-precision kernels (Numba; the
        extension built before them), or no bf16 backward kernels for a training call, saying so.
    """
    name, module = _backends.resolve(backend)
    needed = [kernel + "_reduced"]
    if requires_grad:
        needed.append(kernel.replace("_forward", "_backward") + "_reduced")
    if all(hasattr(module, k) for k in needed):
        return name, module
    try:
        with warnings.catch_warnings():  # the registry's warning would blame missing backends
            warnings.simplefilter("ignore", RuntimeWarning)
            # every backend with the backward kernels has the forward ones: ask for the last
            fallback = _backends.resolve(backend, kernel=needed[-1])
    except BackendUnavailableError:
        if hasattr(module, needed[0]):
            raise BackendUnavailableError(
                name, f"it has no bf16 training kernels ({needed[-1]}); train in bf16 on "
                "backend='python' (the reference) or a build of the extension that has them, or "
                "pass requires_grad=False (inference), or use precision='float32'") from None
        raise BackendUnavailableError(
            name, f"it has no bf16/int8 kernels (precision={precision!r}); run reduced precision "
            "on backend='cython' (or 'python', the reference), or use precision='float32'") from None
    _warn_reference_fallback(name, precision, "bf16 training" if hasattr(module, needed[0])
                             else "bf16/int8")
    return fallback


def reduced_weights(kernels, backend, precision, packed, requires_grad, cell, *arrays, **keywords):
    """A layer's weights for the reduced-precision kernels of one forward call.

    Parameters
    ----------
    kernels : module
        The backend module (from :func:`resolve_reduced`).
    backend : str
        Its name.
    precision : {"bf16", "int8"}
    packed : PackedWeights or None
        Weights packed in ``precision``: their layer is used (no rounding per call).
    requires_grad : bool
        The layer must also serve the ``*_backward_reduced`` kernels (bf16 training).
    cell, *arrays, **keywords
        For plain weights: ``pack_reduced``'s arguments (the float32 weights of this call).

    Returns
    -------
    ReducedLayer
        What ``kernels.pack_reduced`` returns.
    """
    if packed is not None:
        return packed.reduced_layer(backend, backward=requires_grad)
    if requires_grad:  # an extension without training kernels takes no backward argument
        keywords["backward"] = True
    return kernels.pack_reduced(cell, precision, *arrays, **keywords)


_warned = set()


def _warn_reference_fallback(name, precision, what):
    if (name, what) not in _warned:
        _warned.add((name, what))
        warnings.warn(f"precision={precision!r} runs on the pure-NumPy reference backend, which is "
                      f"slow: the {name} backend has no {what} kernels (the compiled extension "
                      "gets them when built from a source that has them)", RuntimeWarning, stacklevel=4)
