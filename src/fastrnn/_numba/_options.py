"""Every Numba option fastrnn uses, in one place.

``cache=True`` keeps compiled kernels on disk between processes; ``nogil=True``
lets several batch chunks run at once from a thread pool. ``error_model="numpy"``
drops the division-by-zero checks that would stop loops from vectorising.
Kernels never receive functions as arguments: that defeats the disk cache.
"""

from numba import njit

jit = njit(cache=True, nogil=True, error_model="numpy")
