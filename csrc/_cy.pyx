# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""fastrnn's optional compiled backend: Cython kernels with OpenMP threads.

Every kernel has the signature and semantics of its counterpart in
:mod:`fastrnn._python` (the reference) and reads side by side with
:mod:`fastrnn._numba`. Arrays are C-contiguous and all float32 or all float64
(a fused type picks the specialisation); callers validate them first.

Work is cut into pieces fixed by the problem's shape
(:func:`fastrnn._parallel.batch_chunks`, :func:`fastrnn._parallel.time_blocks`)
and spread over ``n_threads`` OpenMP threads with ``prange``, while BLAS is
held to one thread, so results are bit for bit the same for any ``n_threads``.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from activations cimport tanh
from blas cimport gemm_rowmajor
cimport openmp_shim
from packed_gemm cimport gemm_at_b, gemm_packed, pack, packed_size, panel_width

import numpy as np

from fastrnn._parallel import batch_chunks, blas_threads, step_column_threads, time_blocks


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


cdef void _warm_up_blas():
    """Run one 64x64 GEMM per dtype.

    Measured with SciPy's OpenBLAS: until a process has run one GEMM of about
    this size, every small GEMM (such as a 32x32 recurrent step) runs 2-3x
    slower. One call at import costs microseconds.
    """
    cdef float[:, ::1] a32 = np.ones((64, 64), dtype=np.float32)
    cdef float[:, ::1] c32 = np.empty((64, 64), dtype=np.float32)
    cdef double[:, ::1] a64 = np.ones((64, 64), dtype=np.float64)
    cdef double[:, ::1] c64 = np.empty((64, 64), dtype=np.float64)
    gemm_rowmajor(c'N', c'N', 64, 64, 64, <float>1, &a32[0, 0], 64, &a32[0, 0], 64,
                  <float>0, &c32[0, 0], 64)
    gemm_rowmajor(c'N', c'N', 64, 64, 64, <double>1, &a64[0, 0], 64, &a64[0, 0], 64,
                  <double>0, &c64[0, 0], 64)


_warm_up_blas()


include "rnn.pxi"
