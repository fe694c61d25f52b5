"""How compiled kernels share work between threads, and how BLAS is kept out of the way.

Results must not depend on the number of threads. So the work is cut into
pieces whose boundaries depend only on the problem's shape, never on
``n_threads``; threads then take whole pieces, and anything summed over pieces
is summed in piece order. Two cuts are used:

* batch chunks, for the time loop: rows of the batch are independent of each
  other through the whole sequence, so a chunk runs all ``T`` steps with no
  barrier between steps;
* time blocks, for the GEMMs over all steps (input projection, weight and input
  gradients): ``T*B`` rows of a time-major array split at step boundaries are
  contiguous row blocks.

A large layer whose batch is one chunk shares each step's product by columns
instead (:func:`step_column_threads`): every element is still computed the
same way, whichever thread computes it.

The Numba backend runs its pieces on a thread pool (:func:`run_pieces`) and
calls BLAS, which it holds to one thread while a kernel runs so that the
kernel's threads are the only ones (:data:`blas_threads`). The Cython backend
uses OpenMP and calls no BLAS.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

# A chunk of the time loop must carry at least this many multiply-adds per step
# for a second thread to pay for itself (measured with the fused float32 LSTM
# and GRU steps: two chunks of 16 rows at H=128 run 1.5-1.9x faster on 2
# threads than one chunk, and no slower on 1).
MIN_CHUNK_WORK = 16 * 128 * 128 * 2
# Sharing one step's product by columns costs a barrier per step, which a busy
# machine makes expensive (measured: an LSTM with B=32, H=128 ran 3-6x slower
# on 2 threads than on 1 while other processes were running), so it needs this
# much more work per step than a batch chunk.
MIN_STEP_SPLIT_WORK = 32 * 256 * 256 * 4
# Chunks below this many rows make the per-step GEMM inefficient.
MIN_CHUNK_ROWS = 16
# A GEMM over all steps is cut into pieces of at least this many multiply-adds.
MIN_BLOCK_WORK = 1 << 24
# Upper bound on pieces of either kind; it bounds the threads that can help.
MAX_PIECES = 8


def _bounds(n, pieces):
    """Split ``range(n)`` into ``pieces`` near-equal parts; return the ``pieces + 1`` boundaries."""
    return np.array([n * k // pieces for k in range(pieces + 1)], dtype=np.intp)


def batch_chunks(batch, hidden, gates=1):
    """Fixed split of the batch for the time loop.

    Parameters
    ----------
    batch, hidden, gates : int
        Batch size, hidden size and gates per cell (RNN 1, GRU 3, LSTM 4).

    Returns
    -------
    ndarray of shape (n_chunks + 1,)
        Chunk ``k`` holds batch rows ``bounds[k]:bounds[k + 1]``.
    """
    work = batch * hidden * hidden * gates
    pieces = min(work // MIN_CHUNK_WORK, batch // MIN_CHUNK_ROWS, MAX_PIECES)
    return _bounds(batch, max(int(pieces), 1))


def step_column_threads(batch, hidden, gates, n_threads):
    """Threads that share the columns of each step's recurrent product.

    Used only when :func:`batch_chunks` leaves the whole batch in one chunk:
    then a large layer (``MIN_STEP_SPLIT_WORK`` multiply-adds per step) still
    gets ``n_threads``, at the cost of one synchronisation per step. Every
    output element is computed the same way by whichever thread, so results
    still do not depend on ``n_threads``.

    Returns
    -------
    int
    """
    if batch * hidden * hidden * gates < MIN_STEP_SPLIT_WORK:
        return 1
    return max(1, min(n_threads, hidden // 16))


def time_blocks(steps, batch, work_per_row):
    """Fixed split of the steps for GEMMs over all ``steps * batch`` rows.

    Parameters
    ----------
    steps, batch : int
        ``T`` and ``B``.
    work_per_row : int
        Multiply-adds per row of the GEMM (e.g. ``D * G * H`` for the input projection).

    Returns
    -------
    ndarray of shape (n_blocks + 1,)
        Block ``k`` holds steps ``bounds[k]:bounds[k + 1]``.
    """
    work = steps * batch * work_per_row
    pieces = min(work // MIN_BLOCK_WORK, steps, MAX_PIECES)
    return _bounds(steps, max(int(pieces), 1))


_thread_cap = None


def set_num_threads(n_threads):
    """Cap the threads of every call that does not pass ``n_threads`` (``None``: one per core).

    Like ``torch.set_num_threads``, the setting is process-wide; a call's own
    ``n_threads`` argument still wins. Results do not depend on it.
    """
    global _thread_cap
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int)
                                  or n_threads < 1):
        from fastrnn.exceptions import ArgumentError

        raise ArgumentError(f"n_threads must be a positive integer or None; got {n_threads!r}")
    _thread_cap = n_threads


def get_num_threads():
    """The most threads a call that does not pass ``n_threads`` uses."""
    return _thread_cap or os.cpu_count() or 1


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
