"""Thread control: how many threads a call uses, the pool that runs pieces, and the BLAS limiter.

* :func:`set_num_threads` / :func:`get_num_threads`: the process-wide cap for
  calls that do not pass ``n_threads`` (public as ``fastrnn.set_num_threads``);
* :func:`default_n_threads`: the threads a call uses when the caller did not
  say: one per piece of work, at most one per core that other processes leave
  free (:func:`free_cores`);
* :func:`run_pieces`: the Numba backend runs the pieces of
  :mod:`fastrnn._partition` on a thread pool;
* :data:`blas_threads`: holds every loaded BLAS to one thread while a Numba kernel
  runs, so that the kernel's threads are the only ones (the Cython backend uses
  OpenMP and calls no BLAS), and to a Keras-style model's thread count while its
  NumPy layers run; the limits nest.

Why the default looks at the load
---------------------------------
A kernel's threads meet at barriers: at the end of each parallel GEMM and, when
one step's product is shared by columns, after every step. A thread that the OS
has descheduled in favour of another process holds every other thread at the
barrier until it runs again, which can be a whole scheduler time slice. Measured
on a 2-core AMD EPYC (Zen 4) with one other CPU-bound process running, the old
default (one thread per core) made calls 1.4-3x slower than one thread (LSTM
S5 forward 989 ms against 313 ms). So the default counts only the cores that
other processes left free lately; with none free it runs on one thread and no
barrier waits. An explicit ``n_threads`` is obeyed as given (capped at the cores).
"""

import functools
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from fastrnn._validation import check_n_threads
from fastrnn.exceptions import ConcurrentUseError

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
    the cores this process may run on counts as that number of cores. It is a
    cap: such a call still uses fewer threads when other processes keep cores
    busy (:func:`default_n_threads`). Results do not depend on it.
    """
    global _thread_cap
    check_n_threads(n_threads)
    _thread_cap = None if n_threads is None else int(n_threads)


def get_num_threads():
    """The most threads a call that does not pass ``n_threads`` uses (at most one per core)."""
    cores = available_cores()
    return min(_thread_cap, cores) if _thread_cap else cores


def default_n_threads(n_pieces):
    """Threads to use when the caller did not say.

    One per piece of work, at most :func:`get_num_threads` (the cap, else one
    per core), and at most :func:`free_cores`: the cores other processes left
    free lately. On a machine where another process computes, the default is
    thus one thread, and no barrier of a kernel waits on a thread the OS has
    put aside for that process.

    Parameters
    ----------
    n_pieces : int
        The most pieces the call's work is cut into (:mod:`fastrnn._partition`).

    Returns
    -------
    int
    """
    if n_pieces <= 1:
        return 1  # nothing to share: skip the load probe
    cores = available_cores()
    cap = min(_thread_cap, cores) if _thread_cap else cores
    if min(n_pieces, cap) <= 1:
        return 1
    return max(1, min(n_pieces, cap, free_cores(cores)))


# -- how many cores other processes leave free ------------------------------------------------------

#: A core counts as taken when other processes used more than this share of it lately: a
#: thread that has to share a core even a quarter of the time stalls every barrier it meets.
BUSY_SHARE = 0.25
#: The estimate is reused for this many seconds, so that a burst of small calls reads
#: ``/proc`` once (a reading costs about 30 us, a cached answer well under 1 us).
LOAD_REFRESH_S = 0.1
#: CPU time in ``/proc/stat`` counts in ticks of 10 ms: a window shorter than this is too
#: coarse to tell a busy core from an idle one ...
MIN_WINDOW_S = 0.2
#: ... and one longer than this is too old to describe the machine now.
MAX_WINDOW_S = 2.0

# the probe's clocks, names of their own so that tests can stand in for them
_clock = time.monotonic
_own_cpu_seconds = time.process_time  # every thread of this process, precise
_TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _affinity_ids():
    """The ids of the CPUs this process may run on, or None where the OS does not say."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cpu_busy_seconds(cpu_ids):
    """CPU seconds the CPUs ``cpu_ids`` spent on anything but idling since boot (``/proc/stat``),
    summed; None where that is not known (not Linux, a CPU missing)."""
    try:
        with open("/proc/stat", "rb") as stat:
            lines = stat.read().split(b"\n")
    except OSError:
        return None
    busy, seen = 0, 0
    for line in lines[1:]:
        if not line.startswith(b"cpu"):
            break
        name, *fields = line.split()
        if int(name[3:]) in cpu_ids:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            ticks = [int(f) for f in fields[:8]]
            busy += sum(ticks) - ticks[3] - ticks[4]
            seen += 1
    return busy * _TICK_S if seen == len(cpu_ids) else None


def _machine_cpus():
    """The CPUs of the whole machine (``/proc/loadavg`` counts threads on all of them)."""
    return os.cpu_count() or 1


def _running_tasks():
    """Threads runnable on the whole machine right now, this one included (``/proc/loadavg``);
    None where that is not known."""
    try:
        with open("/proc/loadavg", "rb") as loadavg:
            return int(loadavg.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None


class _LoadProbe:
    """Estimates how many cores other processes keep busy, from ``/proc``, cheaply and cached.

    Over a recent window (``MIN_WINDOW_S`` to ``MAX_WINDOW_S`` seconds) it takes
    the CPU time the process's CPUs spent, less this process's own CPU time (so
    its own threads, spinning or working, never count against it), divided by
    the window. Without such a window (the first call, or after a long pause) it
    takes the threads runnable right now, less the calling one.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._cpu_ids = None  # the affinity the samples below were taken on
        self._sample = None  # (time, busy CPU seconds of those CPUs, this process's CPU seconds)
        self._checked = None  # time of the last estimate
        self._others = 0.0  # the last estimate: cores' worth of other processes' work

    def others(self):
        """Cores' worth of work other processes ran lately (a float, 0.0 where unknown)."""
        now = _clock()
        with self._lock:
            if self._checked is not None and now - self._checked < LOAD_REFRESH_S:
                return self._others
            self._checked = now
            cpu_ids = _affinity_ids()
            busy = _cpu_busy_seconds(cpu_ids) if cpu_ids else None
            own = _own_cpu_seconds()
            if cpu_ids != self._cpu_ids:
                self._cpu_ids, self._sample = cpu_ids, None
            window = now - self._sample[0] if self._sample is not None else None
            if busy is not None and window is not None and MIN_WINDOW_S <= window <= MAX_WINDOW_S:
                self._others = ((busy - self._sample[1]) - (own - self._sample[2])) / window
            elif window is None or window > MAX_WINDOW_S or busy is None:
                running = _running_tasks()
                if running is None:
                    self._others = 0.0
                else:
                    # loadavg counts the whole machine: keep the share on this process's CPUs
                    share = len(cpu_ids) / max(len(cpu_ids), _machine_cpus()) if cpu_ids else 1.0
                    self._others = max(0, running - 1) * min(1.0, share)
            # else: a window too short to read; keep the last estimate
            if busy is not None and (window is None or window >= MIN_WINDOW_S):
                self._sample = (now, busy, own)
            return self._others

    def forget(self):
        """Drop the samples and the cached estimate (the next call starts afresh)."""
        with self._lock:
            self._cpu_ids = self._sample = self._checked = None
            self._others = 0.0


_load = _LoadProbe()


def free_cores(cores=None):
    """The cores of this process that other processes left free lately: at least 1.

    :func:`available_cores` less the cores' worth of work other processes ran
    over the last fraction of a second (``/proc/stat``; the threads runnable now,
    ``/proc/loadavg``, on a first call or after a pause), where a core counts as
    taken from a share of ``BUSY_SHARE`` on. This process's own threads do not
    count. The answer is cached for ``LOAD_REFRESH_S`` seconds. Where ``/proc``
    is not there (not Linux) every core counts as free.

    Parameters
    ----------
    cores : int, optional
        :func:`available_cores`, where the caller has it already.

    Returns
    -------
    int
    """
    if cores is None:
        cores = available_cores()
    taken = int(_load.others() + (1.0 - BUSY_SHARE))  # 0.25 of a core or more: taken
    return max(1, cores - max(0, taken))


# -- how OpenMP threads wait ------------------------------------------------------------------------

#: ``GOMP_SPINCOUNT`` while fastrnn's extension loads libgomp: a thread waiting at a barrier spins
#: this many rounds (some 20-60 us) before it sleeps and gives its core away. libgomp's own default
#: (300 000 rounds, milliseconds) let a waiting thread keep its core from the very thread it waits
#: for when another process competes: measured on a 2-core Zen 4 with one competing process, an
#: LSTM forward (T=50, B=16, D=512, H=1024) on 2 threads took 2.0-2.3x as long as on 1 thread with
#: the default, 0.8x with 1 000 rounds, 0.5x with ``OMP_WAIT_POLICY=passive``. A short spin still
#: bridges the few microseconds between the parallel loops of consecutive steps on an idle machine.
OPENMP_SPIN_COUNT = "1000"


@contextmanager
def openmp_waits_briefly():
    """Set ``GOMP_SPINCOUNT`` to :data:`OPENMP_SPIN_COUNT` for the duration of the block.

    Wrap the import of an extension that loads libgomp: libgomp reads the
    variable once, when it loads, and the variable is removed again after, so
    OpenMP runtimes loaded later (PyTorch ships its own libgomp) see the
    environment as the user left it. Nothing is set where the user set
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``; and where libgomp was loaded
    already (by another package), the setting has no effect.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)


class _BlasThreads:
    """Sets the thread count of every loaded BLAS for the duration of a kernel call.

    threadpoolctl finds the libraries once; entering and leaving then costs a
    couple of foreign calls (its own ``limit`` context rescans and costs ~40 us).
    """

    def __init__(self):
        self._libraries = None
        self._changed = threading.Condition()
        self._inside = 0  # threads now inside a limit block
        self._held = None  # the limit they share
        self._restore = []  # (library, count before the first one entered)
        self._depth = threading.local()  # how deep this thread is in limit blocks
        self._switches = 0  # nested limits switched in now

    def forget_libraries(self):
        """Find the BLAS libraries again on next use (after a module loaded another one)."""
        with self._changed:
            if not self._inside:
                self._libraries = None

    def _load(self):
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        self._libraries = [lib for lib in controller.lib_controllers if lib.user_api == "blas"]

    @contextmanager
    def limit(self, n_threads):
        """Hold every BLAS at ``n_threads`` while any thread is inside a ``limit`` block.

        The BLAS thread count is one process-wide setting. Saving and restoring it per
        call races: a thread leaving would restore the old count while another is still
        inside its kernel. So the first thread in sets the limit and remembers the old
        counts, later ones only count themselves in, and the last one out restores.
        A thread asking for a different limit while one is held waits for it to end.

        Blocks nest: a thread already inside (a Keras model's ``fit`` holding the model's
        thread count, a Numba kernel within it asking for 1) never waits on itself. When
        it is the only thread inside, its inner limit holds until the inner block ends,
        then the outer one again; when others are inside too, the outer limit stays.
        """
        depth = getattr(self._depth, "value", 0)
        switched = None
        with self._changed:
            if depth:
                if self._held != n_threads and self._inside == depth:
                    switched = self._held
                    self._set_all(n_threads)
                    self._switches += 1
            else:
                # a nested limit switched in is its thread's alone: wait for it to switch back
                while self._inside and (self._held != n_threads or self._switches):
                    self._changed.wait()
                if not self._inside:
                    if self._libraries is None:
                        self._load()
                    self._restore = [(lib, lib.get_num_threads()) for lib in self._libraries]
                    for lib, before in self._restore:
                        if before != n_threads:
                            lib.set_num_threads(n_threads)
                    self._held = n_threads
            self._inside += 1
        self._depth.value = depth + 1
        try:
            yield
        finally:
            self._depth.value = depth
            with self._changed:
                self._inside -= 1
                if switched is not None:
                    self._set_all(switched)
                    self._switches -= 1
                elif not self._inside:
                    for lib, before in self._restore:
                        if before != n_threads:
                            lib.set_num_threads(before)
                    self._restore, self._held = [], None
                self._changed.notify_all()

    def _set_all(self, n_threads):
        """Set every library to ``n_threads`` inside a held limit (the lock is held)."""
        for lib, _ in self._restore:
            lib.set_num_threads(n_threads)
        self._held = n_threads

    def info(self):
        """Describe the loaded BLAS libraries (for ``show_config``)."""
        with self._changed:
            if not self._inside:
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


class PerThread:
    """An attribute whose value each thread sees on its own (a data descriptor).

    The facades keep what a forward pass leaves for its backward pass (the tape) in
    such an attribute, so a module shared by threads pairs each thread's backward
    with that thread's own forward. The values live outside the instance (in a
    weak table), so pickling and copying see none of them, and a thread that
    never set a value reads ``default``.
    """

    _table = weakref.WeakKeyDictionary()
    _table_lock = threading.Lock()

    def __init__(self, default=None):
        self.default = default

    def __set_name__(self, owner, name):
        self.name = name

    def _values(self, obj):
        # (this object's threading.local, the value each name was last set to by any thread)
        with PerThread._table_lock:
            values = PerThread._table.get(obj)
            if values is None:
                values = PerThread._table[obj] = (threading.local(), {})
            return values

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(self._values(obj)[0], self.name, self.default)

    def __set__(self, obj, value):
        local, latest = self._values(obj)
        setattr(local, self.name, value)
        latest[self.name] = value

    def for_pickling(self, obj):
        """The calling thread's value, or, where it set none, the last value any thread set
        (a pool pickles in a helper thread what the main thread left)."""
        local, latest = self._values(obj)
        return getattr(local, self.name, latest.get(self.name, self.default))


def _per_thread_attributes(cls):
    return {name: attr for klass in reversed(cls.__mro__) for name, attr in vars(klass).items()
            if isinstance(attr, PerThread)}


def getstate_with_per_thread(obj):
    """``__getstate__`` for a class with :class:`PerThread` attributes: the instance's
    dict plus the calling thread's values (see :meth:`PerThread.for_pickling`): a module
    pickled between forward and backward keeps its tape, and the copy's backward runs in
    the thread that unpickles it."""
    state = dict(obj.__dict__)
    for name, attr in _per_thread_attributes(type(obj)).items():
        state[name] = attr.for_pickling(obj)
    return state


def setstate_with_per_thread(obj, state):
    """``__setstate__`` partner of :func:`getstate_with_per_thread`."""
    state = dict(state)
    per_thread = {name: state.pop(name) for name in _per_thread_attributes(type(obj)) if name in state}
    obj.__dict__.update(state)
    for name, value in per_thread.items():
        setattr(obj, name, value)


class Exclusive:
    """A guard for an object that one thread at a time may use.

    ``with guard.hold(what):`` raises :class:`fastrnn.exceptions.ConcurrentUseError`
    at once, instead of waiting or mixing states, when another thread is inside a
    ``hold`` block of the same guard. The same thread may nest ``hold`` blocks.
    The guard is not pickled state: an owner creates one lazily via :func:`exclusive`.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._owner = None
        self._depth = 0

    @contextmanager
    def hold(self, what):
        me = threading.get_ident()
        if self._owner != me:
            if not self._lock.acquire(blocking=False):
                raise ConcurrentUseError(
                    f"{what} is already running in another thread; this object cannot be used "
                    f"by two threads at once (give each thread its own, or serialise the calls)")
            self._owner = me
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._lock.release()


_guards = weakref.WeakKeyDictionary()
_guards_lock = threading.Lock()


def exclusive(obj):
    """The :class:`Exclusive` guard of ``obj`` (created on first use, never pickled)."""
    with _guards_lock:
        guard = _guards.get(obj)
        if guard is None:
            guard = _guards[obj] = Exclusive()
        return guard


def one_thread_at_a_time(method):
    """Decorate a method so that two threads running it (or another method so decorated)
    on the same object raise :class:`ConcurrentUseError` instead of mixing their states."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        with exclusive(self).hold(f"{type(self).__name__}.{method.__name__}()"):
            return method(self, *args, **kwargs)

    return guarded
