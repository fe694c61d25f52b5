"""Benchmarks of the RNN, LSTM and GRU cells: fastrnn's backends against PyTorch, ONNX Runtime, OpenVINO and JAX.

The grid, the inputs and the callables timed come from :mod:`fastrnn.benchmarks`
(the sub-package ``python -m fastrnn bench`` runs), so both measure the same work.
Benchmarks are grouped by cell, shape, pass and thread count, e.g. group
``lstm-S1-fwd-1t`` holds ``lstm-S1-fwd-1t-numba``, ``lstm-S1-fwd-1t-torch`` and
``lstm-S1-fwd-1t-onnxruntime`` (and, forward only, ``-openvino-f32``,
``-openvino-default`` and ``-jax``). Every callable is run once before timing, which
compiles the JIT kernels; the forward peers' outputs are first checked against
fastrnn's, so the smoke run (``--benchmark-disable``) is also a parity check of
the peers as the tables build them. See ``bench/README.md``.
"""

import functools

import pytest

from fastrnn.benchmarks.backends import COMPILED_BACKENDS, check_backend, fastrnn_runner
from fastrnn.benchmarks.grid import CELLS, PASSES, SHAPES, make_problem
from fastrnn.benchmarks.jax_peer import configure_jax, jax_runner
from fastrnn.benchmarks.peers import agreement, onnxruntime_runner, openvino_runner, torch_runner
from fastrnn.exceptions import BackendUnavailableError

THREADS = (1, 2)


def _cases(implementations, passes=tuple(PASSES), threads=THREADS):
    """Parameters ``(cell, shape, pass, n_threads, implementation)`` for every point of the grid."""
    return [
        pytest.param(cell, shape, pass_, n_threads, implementation,
                     id=f"{cell}-{shape}-{pass_}-{n_threads}t-{implementation}")
        for cell in CELLS
        for shape in SHAPES
        for pass_ in passes
        for n_threads in threads
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


@functools.lru_cache(maxsize=None)
def _fastrnn_output(cell, shape):
    import fastrnn

    p = make_problem(shape, cell)
    return getattr(fastrnn, p.cell.forward)(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, *p.initial_states,
                                            requires_grad=False)[0]


def _check_forward(problem, output, precision="float32"):
    """Fail unless a peer's forward output agrees with fastrnn's on ``problem``."""
    expected = _fastrnn_output(problem.cell.name, problem.shape.name)
    ok, diff = agreement(output, expected, precision)
    assert ok, f"the peer's output differs from fastrnn's by up to {diff:.2e} ({precision})"


@pytest.mark.parametrize("precision", ["f32", "default"])
@pytest.mark.parametrize("cell, shape, pass_, n_threads, peer", _cases(["openvino"], ["fwd"]))
def test_openvino(benchmark, cell, shape, pass_, n_threads, peer, precision):
    pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    problem = make_problem(shape, cell)
    function = openvino_runner(problem, n_threads, "f32" if precision == "f32" else None)
    benchmark.extra_info["openvino_precision"] = function.precision
    _check_forward(problem, function()[0][:, 0], "float32" if function.precision == "f32" else "bfloat16")
    _time(benchmark, function, cell, shape, pass_, n_threads)


# XLA's CPU pool is sized once per process, so JAX is timed at one thread count only (the
# tables do the same: `python -m fastrnn bench --threads 2` times it at 2 in a run of its own)
@pytest.mark.parametrize("cell, shape, pass_, n_threads, peer", _cases(["jax"], ["fwd"], threads=THREADS[:1]))
def test_jax(benchmark, cell, shape, pass_, n_threads, peer):
    pytest.importorskip("jax")
    threads, how = configure_jax(n_threads)
    assert threads in (None, n_threads), f"JAX's thread pool was sized elsewhere: {how}"
    problem = make_problem(shape, cell)
    function = jax_runner(problem, n_threads)
    _check_forward(problem, function()[0])
    _time(benchmark, function, cell, shape, pass_, n_threads)
