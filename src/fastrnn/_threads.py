"""Thread control: how many threads a call uses, the pool that runs pieces, and the BLAS limiter.

* :func:`set_num_threads` / :func:`get_num_threads`: the process-wide cap for
  calls that do not pass ``n_threads`` (public as ``fastrnn.set_num_threads``);
* :func:`default_n_threads`: the threads a call uses when the caller did not say;
* :func:`run_pieces`: the Numba backend runs the pieces of
  :mod:`fastrnn._partition` on a thread pool;
* :data:`blas_threads`: holds every loaded BLAS to one thread while a kernel
  runs, so that the kernel's threads are the only ones. The Cython backend uses
  OpenMP and calls no BLAS.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from fastrnn._validation import check_n_threads

_thread_cap = None


def available_cores():
    """The cores this process may run on: its CPU affinity where the OS reports one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def capped_n_threads(n_threads):
    """``n_threads`` (a valid count) capped at the cores: more threads than cores only cost
    memory and switching, and results do not depend on the thread count."""
    return min(n_threads, available_cores())


def set_num_threads(n_threads):
    """Cap the threads of every call that does not pass ``n_threads`` (``None``: one per core).

    Like ``torch.set_num_threads``, the setting is process-wide; a call's own
    ``n_threads`` argument still wins. ``n_threads`` is an integer from 1 to
    2**31 - 1 (else :class:`fastrnn.exceptions.ArgumentError`); a value above
    the cores this process may run on counts as that number of cores. Results
    do not depend on it.
    """
    global _thread_cap
    check_n_threads(n_threads)
    _thread_cap = None if n_threads is None else int(n_threads)


def get_num_threads():
    """The most threads a call that does not pass ``n_threads`` uses (at most one per core)."""
    cores = available_cores()
    return min(_thread_cap, cores) if _thread_cap else cores


def default_n_threads(n_pieces):
    """Threads to use when the caller did not say: one per piece, at most one per core (or the cap)."""
    return max(1, min(n_pieces, get_num_threads()))


class _BlasThreads:
    """Sets the thread count of every loaded BLAS for the duration of a kernel call.

    threadpoolctl finds the libraries once; entering and leaving then costs a
    couple of foreign calls (its own ``limit`` context rescans and costs ~40 us).
    """

    def __init__(self):
        self._libraries = None

    def forget_libraries(self):
        """Find the BLAS libraries again on next use (after a module loaded another one)."""
        self._libraries = None

    def _load(self):
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        self._libraries = [lib for lib in controller.lib_controllers if lib.user_api == "blas"]

    @contextmanager
    def limit(self, n_threads):
        if self._libraries is None:
            self._load()
        previous = [lib.get_num_threads() for lib in self._libraries]
        changed = [
            (lib, before) for lib, before in zip(self._libraries, previous) if before != n_threads
        ]
        for lib, _ in changed:
            lib.set_num_threads(n_threads)
        try:
            yield
        finally:
            for lib, before in changed:
                lib.set_num_threads(before)

    def info(self):
        """Describe the loaded BLAS libraries (for ``show_config``)."""
        self._load()
        return [lib.info() for lib in self._libraries]


blas_threads = _BlasThreads()


_pool = None
_pool_lock = threading.Lock()


def run_pieces(work, n_pieces, n_threads):
    """Call ``work(k)`` for every piece ``k`` on up to ``n_threads`` threads.

    ``work`` must release the GIL (a ``nogil`` Numba kernel or a NumPy GEMM) for
    threads to help. Pieces are independent, so their order does not matter;
    the caller reduces any partial results in piece order afterwards.
    """
    global _pool
    n_threads = min(n_threads, n_pieces)
    if n_threads <= 1:
        for k in range(n_pieces):
            work(k)
        return
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="fastrnn")
    # the calling thread takes a share too instead of only waiting
    futures = [_pool.submit(_run_every, work, first, n_pieces, n_threads) for first in range(1, n_threads)]
    _run_every(work, 0, n_pieces, n_threads)
    for future in futures:
        future.result()


def _run_every(work, first, n_pieces, stride):
    for k in range(first, n_pieces, stride):
        work(k)


@contextmanager
def num_threads_capped(n_threads):
    """:func:`set_num_threads` for the duration of a block, the previous cap restored after.

    For callers that cannot pass ``n_threads`` down (``fit``, say).
    """
    saved = _thread_cap
    set_num_threads(n_threads)
    try:
        yield
    finally:
        set_num_threads(saved)
