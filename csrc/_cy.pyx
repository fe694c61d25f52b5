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
packed micro-kernel of ``packed_gemm.h`` rather than BLAS: measured on a
2-core Zen machine, it beats OpenBLAS on each product these kernels need
(OpenBLAS repacks the recurrent weights at every step, and is slow on the
long, narrow reductions of the weight gradients).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from activations cimport sigmoid, tanh
cimport openmp_shim
from packed_gemm cimport at_b_work_size, gemm_at_b, gemm_packed, pack, packed_size, panel_width

import numpy as np

from fastrnn._partition import batch_chunks, projection_spans, step_column_threads, time_blocks


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




include "rnn.pxi"
include "lstm.pxi"
include "lstm_proj.pxi"
include "gru.pxi"
include "step.pxi"
