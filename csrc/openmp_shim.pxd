"""OpenMP runtime calls, declared from ``openmp_shim.h``.

Kernels cimport OpenMP from here and never from ``openmp`` directly: the
header turns every call into a one-thread stub when the compiler has no
OpenMP, so the extension builds either way.
"""

cdef extern from "openmp_shim.h" nogil:
    int fastrnn_openmp_enabled()
    int omp_get_max_threads()
    int omp_get_num_threads()
    int omp_get_thread_num()
