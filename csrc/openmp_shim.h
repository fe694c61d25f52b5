/* OpenMP, reached only through this header.
 *
 * With a compiler that supports OpenMP (and -fopenmp or /openmp given), this
 * is <omp.h>.  Without it, the few runtime functions fastrnn calls are stubs
 * for one thread, so the same Cython source compiles either way; ``prange``
 * loops then run serially (Cython guards its pragmas with ``#ifdef _OPENMP``).
 */
#ifndef FASTRNN_OPENMP_SHIM_H
#define FASTRNN_OPENMP_SHIM_H

#ifdef _OPENMP
#include <omp.h>
#define FASTRNN_OPENMP_ENABLED 1
#else
#define FASTRNN_OPENMP_ENABLED 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

/* 1 if this translation unit was compiled with OpenMP, else 0. */
static inline int fastrnn_openmp_enabled(void) { return FASTRNN_OPENMP_ENABLED; }

#endif /* FASTRNN_OPENMP_SHIM_H */
