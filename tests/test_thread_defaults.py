"""The default thread count follows the cores other processes leave free (issue 12, item 4).

The load source (``/proc/stat``, ``/proc/loadavg``, the clocks) is replaced by
scripted values, so every test is deterministic and none measures time. That
the default stays bit-identical to one thread is checked with the other thread
counts in ``tests/conformance/test_invariants.py``; the speed it buys is
measured by ``python -m fastrnn bench --busy``, never asserted here.
"""

import os
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import _threads
from fastrnn.functional._layer import Layer
from fastrnn.functional.cells import CELLS


class FakeMachine:
    """A machine of ``cpus`` CPUs whose clocks and ``/proc`` readings the test sets."""

    def __init__(self, cpus=2):
        self.cpus = cpus
        self.now = 1000.0  # seconds
        self.busy = 500.0  # CPU seconds the process's CPUs spent busy since boot
        self.own = 10.0  # this process's CPU seconds
        self.running = 1  # threads runnable now, the caller included
        self.stat_reads = 0
        self.has_proc = True

    def advance(self, seconds, *, others, own):
        """Let ``seconds`` pass while other processes keep ``others`` cores busy and this one ``own``."""
        self.now += seconds
        self.busy += (others + own) * seconds
        self.own += own * seconds

    def install(self, monkeypatch):
        monkeypatch.setattr(_threads, "_clock", lambda: self.now)
        monkeypatch.setattr(_threads, "_own_cpu_seconds", lambda: self.own)
        monkeypatch.setattr(_threads, "_affinity_ids", lambda: frozenset(range(self.cpus)))
        monkeypatch.setattr(_threads, "available_cores", lambda: self.cpus)
        monkeypatch.setattr(_threads, "_machine_cpus", lambda: self.cpus)
        monkeypatch.setattr(_threads, "_cpu_busy_seconds", self._busy)
        monkeypatch.setattr(_threads, "_running_tasks", lambda: self.running if self.has_proc else None)
        monkeypatch.setattr(_threads, "_thread_cap", None)
        _threads._load.forget()
        monkeypatch.setattr(_threads, "_load", _threads._LoadProbe())

    def _busy(self, cpu_ids):
        assert cpu_ids == frozenset(range(self.cpus))
        self.stat_reads += 1
        return self.busy if self.has_proc else None

    def settle(self, *, others, own=0.0):
        """A window of exactly 0.5 s under that load, then the estimate read after it."""
        self.advance(0.5, others=others, own=own)
        return _threads.free_cores()


@pytest.fixture
def machine(monkeypatch):
    fake = FakeMachine()
    fake.install(monkeypatch)
    return fake


def test_first_call_counts_the_threads_running_now(machine):
    machine.running = 1  # only the caller
    assert _threads.free_cores() == 2
    assert _threads.default_n_threads(8) == 2


def test_first_call_with_another_process_running_takes_one_thread(machine):
    machine.running = 2  # the caller and one other
    assert _threads.free_cores() == 1
    assert _threads.default_n_threads(8) == 1


def test_running_threads_elsewhere_count_by_this_process_share_of_the_machine(machine, monkeypatch):
    """``/proc/loadavg`` counts all CPUs: 7 others on a 64-CPU host take 2 * 7/64 of 2 cores."""
    monkeypatch.setattr(_threads, "_machine_cpus", lambda: 64)
    machine.running = 8
    assert _threads.free_cores() == 2
    _threads._load.forget()
    machine.running = 33  # 32 others: one core's worth of this process's two
    assert _threads.free_cores() == 1


def test_a_competing_process_over_the_window_takes_its_core(machine):
    _threads.free_cores()  # first sample
    assert machine.settle(others=1.0, own=1.0) == 1
    assert _threads.default_n_threads(8) == 1


def test_this_process_own_threads_never_count(machine):
    """Two busy threads of fastrnn (working, or OpenMP workers spinning) leave both cores free."""
    _threads.free_cores()
    assert machine.settle(others=0.0, own=2.0) == 2
    assert _threads.default_n_threads(8) == 2


def test_a_quarter_of_a_core_counts_as_taken(machine):
    _threads.free_cores()
    assert machine.settle(others=0.2) == 2
    assert machine.settle(others=0.3) == 1
    assert machine.settle(others=1.2) == 1  # never below one
    assert machine.settle(others=0.0) == 2  # the core comes back once the other process stops


def test_the_estimate_is_cached_between_refreshes(machine):
    _threads.free_cores()
    reads = machine.stat_reads
    machine.advance(_threads.LOAD_REFRESH_S / 2, others=2.0, own=0.0)
    for _ in range(100):
        assert _threads.default_n_threads(8) == 2
    assert machine.stat_reads == reads


def test_a_window_too_short_keeps_the_last_estimate(machine):
    _threads.free_cores()
    assert machine.settle(others=1.0) == 1
    machine.advance((_threads.LOAD_REFRESH_S + _threads.MIN_WINDOW_S) / 2, others=0.0, own=0.0)
    assert _threads.free_cores() == 1  # a window of 0.15 s: too coarse to believe
    machine.advance(_threads.MIN_WINDOW_S, others=0.0, own=0.0)
    assert _threads.free_cores() == 2


def test_after_a_long_pause_the_threads_running_now_decide(machine):
    _threads.free_cores()
    machine.advance(_threads.MAX_WINDOW_S * 5, others=0.1, own=0.0)  # an old, quiet window
    machine.running = 2  # but another process runs now
    assert _threads.free_cores() == 1


def test_without_proc_every_core_is_free(machine):
    machine.has_proc = False
    machine.running = 5
    assert _threads.free_cores() == 2
    machine.advance(1.0, others=2.0, own=0.0)
    assert _threads.free_cores() == 2


def test_one_piece_or_a_cap_of_one_skips_the_probe(machine):
    machine.running = 1
    assert _threads.default_n_threads(1) == 1
    fastrnn.set_num_threads(1)
    assert _threads.default_n_threads(8) == 1
    assert machine.stat_reads == 0
    fastrnn.set_num_threads(None)


def test_the_cap_and_the_pieces_still_bound_the_default(machine):
    machine.cpus = 8
    _threads._load.forget()
    machine.running = 3  # two others: 6 of 8 cores free
    assert _threads.default_n_threads(16) == 6
    assert _threads.default_n_threads(3) == 3
    fastrnn.set_num_threads(4)
    assert _threads.default_n_threads(16) == 4
    fastrnn.set_num_threads(None)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_default_follows_the_load_and_an_explicit_count_does_not(cell, machine):
    """A layer of the benchmark's S4 shape (T=100, B=32, D=H=128) cuts its work in 2+ pieces."""
    spec = CELLS[cell]
    T, B, D, H, G = 100, 32, 128, 128, spec.gates
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    w_ih = rng.standard_normal((G * H, D)).astype(np.float32)
    w_hh = rng.standard_normal((G * H, H)).astype(np.float32)
    states = [("h0", None), ("c0", None)] if spec.has_cell_state else [("h0", None)]
    layer = Layer(x, w_ih, w_hh, None, None, states, spec=spec, batch_first=False)
    machine.running = 1
    assert layer.n_threads(None) == 2
    _threads.free_cores()
    machine.settle(others=1.0)
    assert layer.n_threads(None) == 1
    assert layer.n_threads(2) == 2


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc")
def test_the_real_proc_readings_parse():
    cpus = frozenset(os.sched_getaffinity(0))
    first = _threads._cpu_busy_seconds(cpus)
    assert first is not None and first > 0
    assert _threads._cpu_busy_seconds(cpus) >= first
    assert _threads._cpu_busy_seconds(frozenset({10**6})) is None  # a CPU /proc/stat lacks
    assert _threads._running_tasks() >= 1
    assert 1 <= _threads.free_cores() <= _threads.available_cores()


def test_benchmark_competing_process_runs_for_the_block_only():
    from fastrnn.benchmarks.busy import competing_process

    with competing_process() as spinner:
        assert spinner.poll() is None
        assert spinner.args[0] == sys.executable
    assert spinner.poll() is not None
    with pytest.raises(ZeroDivisionError):
        with competing_process() as spinner:
            1 / 0
    assert spinner.poll() is not None


# -- how OpenMP threads wait ------------------------------------------------------------------------


def test_openmp_spin_count_is_set_only_while_the_runtime_loads(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with _threads.openmp_waits_briefly():
        assert os.environ["GOMP_SPINCOUNT"] == _threads.OPENMP_SPIN_COUNT
    assert "GOMP_SPINCOUNT" not in os.environ
    with pytest.raises(ImportError):
        with _threads.openmp_waits_briefly():
            raise ImportError("the extension failed to load")
    assert "GOMP_SPINCOUNT" not in os.environ


@pytest.mark.parametrize("name, value", [("GOMP_SPINCOUNT", "300000"), ("OMP_WAIT_POLICY", "active")])
def test_openmp_settings_of_the_user_win(name, value, monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv(name, value)
    with _threads.openmp_waits_briefly():
        assert os.environ[name] == value
        assert os.environ.get("GOMP_SPINCOUNT", value) == value
    assert os.environ[name] == value


def test_the_extension_loads_under_the_brief_spin(monkeypatch):
    """The registry imports every backend inside :func:`openmp_waits_briefly`."""
    from fastrnn import _backends

    seen = []
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(_backends, "_loaded", {})
    monkeypatch.setattr(_backends, "_failed", {})
    monkeypatch.setattr(_backends.importlib, "import_module",
                        lambda name: seen.append((name, os.environ.get("GOMP_SPINCOUNT"))) or sys)
    assert _backends._load("cython") is sys
    assert seen == [("fastrnn._cy", _threads.OPENMP_SPIN_COUNT)]
    assert "GOMP_SPINCOUNT" not in os.environ
