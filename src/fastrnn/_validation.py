"""Checks on what a caller passes in, each raising a fastrnn exception that names the
argument, what was expected and what was given. Everything here runs before any
kernel, so compiled code only ever sees consistent, C-contiguous float arrays.

The dtype rule: a call computes in float32 or float64. Every array argument
must be a floating-point array (or something ``numpy.asarray`` turns into one);
float16 is computed in float32; the computation dtype is that of ``x``, and a
float32/float64 mix among the inputs is an error rather than a silent cast,
so that the caller chooses the precision.
"""

import numbers

import numpy as np

from fastrnn.exceptions import ArgumentError, DTypeError, NonFiniteError, ShapeError

_COMPUTE_DTYPES = {np.dtype(np.float16): np.dtype(np.float32)}


def as_float_array(name, value):
    """``numpy.asarray(value)``, required to hold floating-point numbers.

    Returns
    -------
    ndarray
        The array, not copied.
    """
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise DTypeError(f"{name} must be a float32 or float64 array; got dtype {array.dtype}")
    return array


def compute_dtype(named_arrays):
    """The one dtype a call computes in, from its ``(name, array)`` pairs (the first is ``x``).

    Raises
    ------
    DTypeError
        When the arrays mix float32 and float64 (after float16 counts as float32).
    """
    first_name, first = named_arrays[0]
    dtype = _COMPUTE_DTYPES.get(first.dtype, first.dtype)
    for name, array in named_arrays[1:]:
        other = _COMPUTE_DTYPES.get(array.dtype, array.dtype)
        if other != dtype:
            raise DTypeError(
                f"all arrays must share one dtype: {first_name} is {first.dtype} but {name} is "
                f"{array.dtype}; cast them to float32 or float64 first"
            )
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DTypeError(f"{first_name} must be float32 or float64; got dtype {first.dtype}")
    return dtype


def check_ndim(name, array, ndim, layout):
    """Require ``array.ndim == ndim``; ``layout`` spells the expected shape, e.g. ``"(T, B, D)"``."""
    if array.ndim != ndim:
        raise ShapeError(
            f"{name} must be {ndim}-dimensional with shape {layout}; got shape {array.shape}"
        )


def check_shape(name, array, expected, why):
    """Require ``array.shape == expected``; ``why`` says where the sizes come from."""
    if array.shape != tuple(expected):
        raise ShapeError(f"{name} must have shape {tuple(expected)} ({why}); got shape {array.shape}")


def check_finite(name, array):
    """Require no NaN or infinity in ``array``."""
    if not np.isfinite(array).all():
        bad = np.count_nonzero(~np.isfinite(array))
        raise NonFiniteError(f"{name} must be finite; it holds {bad} NaN or infinite value(s)")


def check_bool(name, value):
    """Require ``True`` or ``False`` (a Python or NumPy boolean), so that e.g. ``"no"`` is not read as true.

    Returns
    -------
    bool
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be True or False; got {value!r} of type {type(value).__name__}")
    return bool(value)


#: The precisions of inference: float32 (no reduction), bf16 and int8
#: (``fastrnn._python.reduced`` defines their rounding).
PRECISIONS = ("float32", "bf16", "int8")


def check_precision(precision, allow_none=False):
    """Require one of :data:`PRECISIONS` (or None when ``allow_none``).

    Returns
    -------
    str or None
    """
    if precision is None and allow_none:
        return None
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ArgumentError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}; "
                            f"got {precision!r}")
    return precision


def check_choice(name, value, choices):
    """Require ``value`` to be one of ``choices``."""
    if value not in choices:
        raise ArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


# Thread counts beyond a C int are never meant (and would overflow the compiled kernels).
MAX_N_THREADS = 2**31 - 1


def check_n_threads(n_threads):
    """Require ``None`` or a positive integer of at most :data:`MAX_N_THREADS`.

    Returns
    -------
    int or None
        ``None``, or ``n_threads`` as an ``int`` (:func:`fastrnn._threads.capped_n_threads`
        then caps it at the cores).
    """
    if n_threads is None:
        return None
    if (isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, numbers.Integral)
            or not 1 <= n_threads <= MAX_N_THREADS):
        raise ArgumentError(
            f"n_threads must be None or an integer from 1 to {MAX_N_THREADS}; got {n_threads!r}")
    return int(n_threads)


def kernel_array(array, dtype):
    """``array`` as a C-contiguous array of ``dtype``, copied only when it is not one already."""
    return np.ascontiguousarray(array, dtype=dtype)


def random_generator(seed, name="seed"):
    """A :class:`numpy.random.Generator` from a user's ``seed`` argument.

    Parameters
    ----------
    seed : None, int >= 0, numpy.random.SeedSequence or numpy.random.Generator
        A Generator is returned as is (its stream is shared, not copied).

    Raises
    ------
    ArgumentError
        For anything else, naming ``name`` (NumPy's own message would not).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    valid = (seed is None or isinstance(seed, np.random.SeedSequence)
             or (isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_))
                 and seed >= 0))
    if not valid:
        raise ArgumentError(f"{name} must be None, a non-negative integer or a "
                            f"numpy.random.Generator; got {seed!r} of type {type(seed).__name__}")
    return np.random.default_rng(seed)


def parameter_dtype(dtype, name="dtype"):
    """The dtype of a layer's parameters from a user's ``dtype`` argument.

    ``None`` means float32, as it does for PyTorch modules (the default dtype)
    and Keras layers (``floatx``), not NumPy's float64.

    Raises
    ------
    DTypeError
        Unless ``dtype`` names float32 or float64, naming ``name``.
    """
    if dtype is None:
        return np.dtype(np.float32)
    try:
        chosen = np.dtype(dtype)
    except (TypeError, ValueError):
        raise DTypeError(f"{name} must be float32 or float64; got {dtype!r}") from None
    if chosen not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DTypeError(f"{name} must be float32 or float64; got {chosen}")
    return chosen
