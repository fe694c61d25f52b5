# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""fastrnn's optional compiled backend: Cython kernels with OpenMP threads.

Every kernel has the signature and semantics of its counterpart in
:mod:`fastrnn._python` (the reference) and reads side by side with
:mod:`fastrnn._numba`. Arrays are C-contiguous and all float32 or all float64
(a fused type picks the specialisation); callers validate them first.

Work is cut into pieces fixed by the problem's shape
(:func:`fastrnn._partition.batch_chunks`, :func:`fastrnn._partition.time_blocks`)
and spread over ``n_threads`` OpenMP threads with ``prange``, so results are
bit for bit the same for any ``n_threads``. Every product is computed by the
packed micro-kernel of ``gemm_kernels.h`` rather than BLAS: measured on a
2-core Zen machine, it beats OpenBLAS on each product these kernels need
(OpenBLAS repacks the recurrent weights at every step, and is slow on the
long, narrow reductions of the weight gradients).

The C kernels are compiled for several instruction-set levels (``isa.h``:
``avx512``, ``avx2``, ``generic``); the best one the CPU supports runs, unless
the environment variable ``FASTRNN_ISA`` names another when this module is
imported. :func:`isa_level` says which runs and why.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from activations cimport sigmoid, tanh
cimport openmp_shim
from packed_gemm cimport (PG_N_LEVELS, at_b_work_size, gemm_at_b, gemm_packed, pack, packed_size,
                          panel_width, pg_best_level, pg_get_level, pg_level_name,
                          pg_level_supported, pg_set_level)

import os

import numpy as np

from fastrnn._partition import batch_chunks, projection_spans, step_column_threads, time_blocks
from fastrnn.exceptions import UnknownIsaError

#: The environment variable that forces an instruction-set level, read at import.
ISA_VARIABLE = "FASTRNN_ISA"


cdef inline int _threads_for(int n_threads, Py_ssize_t n_pieces) noexcept nogil:
    """Threads worth starting for ``n_pieces`` pieces: between 1 and ``n_pieces``."""
    if n_threads > n_pieces:
        n_threads = <int>n_pieces
    return n_threads if n_threads > 1 else 1


def openmp_enabled():
    """Whether this extension was compiled with OpenMP.

    Returns
    -------
    bool
        ``False`` means every ``prange`` runs on one thread.
    """
    return bool(openmp_shim.fastrnn_openmp_enabled())


def openmp_max_threads():
    """Threads an OpenMP parallel region would use by default (1 without OpenMP).

    Returns
    -------
    int
    """
    return openmp_shim.omp_get_max_threads()


# ---- instruction-set levels (isa.h)

_isa_reason = ""


def isa_levels():
    """Instruction-set levels this CPU supports, best first.

    Returns
    -------
    list of str
        A sublist of ``["avx512", "avx2", "generic"]``; ``"generic"`` is always there.
    """
    return [pg_level_name(level).decode() for level in range(PG_N_LEVELS - 1, -1, -1)
            if pg_level_supported(level)]


def _level_named(name, source):
    """The index in isa.h of level ``name``; UnknownIsaError naming ``source`` otherwise."""
    offered = ", ".join(map(repr, isa_levels()))
    known = [pg_level_name(level).decode() for level in range(PG_N_LEVELS - 1, -1, -1)]
    if not isinstance(name, str) or name not in known:
        raise UnknownIsaError(f"{source} must be one of {', '.join(map(repr, known))}; got {name!r} "
                              f"(this CPU offers {offered})")
    level = PG_N_LEVELS - 1 - known.index(name)
    if not pg_level_supported(level):
        raise UnknownIsaError(f"{source} is {name!r}, a level this CPU does not support; "
                              f"this CPU offers {offered}")
    return level


def set_isa_level(name, reason=None):
    """Run the kernels on level ``name`` from now on (private: for tests and benchmarks).

    Packed weights are laid out for the level that packed them, so change the
    level only while no kernel runs.

    Parameters
    ----------
    name : {"avx512", "avx2", "generic"}
    reason : str, optional
        What :func:`isa_level` reports as the reason; by default that this call set it.

    Raises
    ------
    UnknownIsaError
        For a name fastrnn does not know or a level this CPU lacks.
    """
    global _isa_reason
    level = _level_named(name, "set_isa_level(name)")
    pg_set_level(level)
    _isa_reason = reason or "set by fastrnn._cy.set_isa_level"


def isa_level():
    """The instruction-set level the kernels run on, and why.

    Returns
    -------
    (str, str)
        The level (``"avx512"``, ``"avx2"`` or ``"generic"``) and why it was chosen.
    """
    return pg_level_name(pg_get_level()).decode(), _isa_reason


def _choose_isa_level():
    """At import: the level ``FASTRNN_ISA`` forces, or the best this CPU supports."""
    global _isa_reason
    forced = os.environ.get(ISA_VARIABLE, "")
    if forced:
        pg_set_level(_level_named(forced, f"the environment variable {ISA_VARIABLE}"))
        _isa_reason = f"forced by {ISA_VARIABLE}={forced}"
        return
    pg_set_level(pg_best_level())
    _isa_reason = f"the best level this CPU supports ({ISA_VARIABLE} unset)"


_choose_isa_level()




include "rnn.pxi"
include "lstm.pxi"
include "lstm_proj.pxi"
include "gru.pxi"
include "step.pxi"
include "reduced_matrix.pxi"
include "reduced_layers.pxi"
include "reduced_backward.pxi"
