"""Benchmarks of the RNN, LSTM and GRU cells: fastrnn's backends against PyTorch and ONNX Runtime.

The grid, the inputs and the callables timed come from :mod:`fastrnn.benchmarks`
(the sub-package ``python -m fastrnn bench`` runs), so both measure the same work.
Benchmarks are grouped by cell, shape, pass and thread count, e.g. group
``lstm-S1-fwd-1t`` holds ``lstm-S1-fwd-1t-numba``, ``lstm-S1-fwd-1t-torch`` and
``lstm-S1-fwd-1t-onnxruntime``. Every callable is run once before timing, which
compiles the JIT kernels. See ``bench/README.md``.
"""

import pytest

from fastrnn.benchmarks.backends import COMPILED_BACKENDS, check_backend, fastrnn_runner
from fastrnn.benchmarks.grid import CELLS, PASSES, SHAPES, make_problem
from fastrnn.benchmarks.peers import onnxruntime_runner, torch_runner
from fastrnn.exceptions import BackendUnavailableError

THREADS = (1, 2)


def _cases(implementations, passes=tuple(PASSES)):
    """Parameters ``(cell, shape, pass, n_threads, implementation)`` for every point of the grid."""
    return [
        pytest.param(cell, shape, pass_, n_threads, implementation,
                     id=f"{cell}-{shape}-{pass_}-{n_threads}t-{implementation}")
        for cell in CELLS
        for shape in SHAPES
        for pass_ in passes
        for n_threads in THREADS
        for implementation in implementations
    ]


def pytest_generate_tests(metafunc):
    # the backends to time come from the command line, so test_fastrnn is parametrized here
    if metafunc.definition.name == "test_fastrnn":
        option = metafunc.config.getoption("--fastrnn-backends")
        backends = option.split(",") if option else COMPILED_BACKENDS
        metafunc.parametrize("cell, shape, pass_, n_threads, backend", _cases(backends))


def _time(benchmark, function, cell, shape, pass_, n_threads):
    """Time ``function`` in the group of its point of the grid, after one untimed call (JIT compilation)."""
    benchmark.group = f"{cell}-{shape}-{pass_}-{n_threads}t"
    s = SHAPES[shape]
    benchmark.extra_info.update(T=s.T, B=s.B, D=s.D, H=s.H, threads=n_threads, dtype="float32")
    # with --benchmark-disable the suite is a smoke test: one call is enough
    if not getattr(benchmark, "disabled", False):
        function()
    benchmark(function)


def test_fastrnn(benchmark, cell, shape, pass_, n_threads, backend):
    try:
        check_backend(backend)
    except BackendUnavailableError as error:
        pytest.skip(str(error))
    function = fastrnn_runner(make_problem(shape, cell), backend, pass_, n_threads)
    _time(benchmark, function, cell, shape, pass_, n_threads)


@pytest.mark.parametrize("cell, shape, pass_, n_threads, peer", _cases(["torch"]))
def test_torch(benchmark, cell, shape, pass_, n_threads, peer):
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    try:
        function = torch_runner(make_problem(shape, cell), pass_, n_threads)
        _time(benchmark, function, cell, shape, pass_, n_threads)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("cell, shape, pass_, n_threads, peer", _cases(["onnxruntime"], ["fwd"]))
def test_onnxruntime(benchmark, cell, shape, pass_, n_threads, peer):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    function = onnxruntime_runner(make_problem(shape, cell), n_threads)
    _time(benchmark, function, cell, shape, pass_, n_threads)
