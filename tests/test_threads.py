"""Thread safety (issue 11 item 3): 8 threads over the public entry points, bit for bit
against the same calls made serially, and the clear error where concurrent use is refused.

Every concurrent call waits at a :class:`threading.Barrier` so the calls really overlap,
and the interpreter switches threads every microsecond, so that a forward and its backward
of one thread are interleaved with other threads' calls. Each thread's result is compared
exactly (``tobytes``) with the serial result of the same call: the kernels promise results
that do not depend on threads.
"""

import copy
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastrnn
import fastrnn.keras as keras
import fastrnn.nn as nn
from fastrnn._threads import blas_threads, exclusive
from fastrnn.exceptions import ConcurrentUseError
from fastrnn.keras import layers

N = 8  # threads
T, B, D, H = 5, 3, 4, 6


@pytest.fixture(autouse=True)
def _switch_often():
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def concurrently(work):
    """``[work(i) for i in range(N)]``, each on its own thread, all started together."""
    barrier = threading.Barrier(N)

    def run(i):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(N) as pool:
        return [f.result() for f in [pool.submit(run, i) for i in range(N)]]


def as_bytes(value):
    """Every array in ``value`` (nested lists, tuples, dicts) as bytes, for exact comparison."""
    if isinstance(value, dict):
        return {k: as_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_bytes(v) for v in value]
    if value is None:
        return None
    array = np.asarray(value)
    return (array.dtype.str, array.shape, array.tobytes())


def inputs(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(N)]


def assert_same_as_serial(work):
    serial = [as_bytes(work(i)) for i in range(N)]
    parallel = [as_bytes(r) for r in concurrently(work)]
    for i in range(N):
        assert parallel[i] == serial[i], f"thread {i} differs from the serial call"


# functional API ---------------------------------------------------------------

def _functional_call(cell, backend, xs):
    rng = np.random.default_rng(1)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    w_ih = (rng.standard_normal((G * H, D)) * 0.3).astype(np.float32)
    w_hh = (rng.standard_normal((G * H, H)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(G * H) * 0.1).astype(np.float32)
    forward = getattr(fastrnn, f"{cell}_forward")
    backward = getattr(fastrnn, f"{cell}_backward")

    def work(i):
        y, _, cache = forward(xs[i], w_ih, w_hh, b, b, backend=backend, n_threads=2)
        return y, backward(cache, np.ones_like(y) * (i + 1))

    return work


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_functional_forward_backward_from_threads(cell, any_backend):
    assert_same_as_serial(_functional_call(cell, any_backend, inputs((T, B, D))))


# nn: one module shared by every thread -----------------------------------------

@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_shared_nn_module_pairs_each_threads_forward_and_backward(cls):
    module = cls(D, H, num_layers=2, bidirectional=True)
    xs = inputs((T, B, D), seed=2)

    def work(i):
        output, _ = module(xs[i])
        d_input = module.backward(np.full_like(output, i + 1))
        return output, d_input, module.grad_hx

    assert_same_as_serial(work)


def test_concurrent_backward_sums_every_gradient():
    xs = inputs((T, B, D), seed=3, dtype=np.float64)
    module = nn.LSTM(D, H, dtype=np.float64)

    def work(i):
        output, _ = module(xs[i])
        module.backward(np.ones_like(output))

    for i in range(N):
        work(i)
    serial = {name: p.grad.copy() for name, p in module.named_parameters()}
    module.zero_grad()
    concurrently(work)
    for name, p in module.named_parameters():
        # the order of the additions is the threads' arrival order: equal up to rounding
        np.testing.assert_allclose(p.grad, serial[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_nn_optimizers_one_per_thread():
    xs = inputs((T, B, D), seed=4)
    template = nn.GRU(D, H)

    def work(i):
        module = copy.deepcopy(template)
        optimizer = fastrnn.optim.Adam(module.parameters(), lr=0.01)
        for _ in range(2):
            output, _ = module(xs[i])
            module.backward(output)
            optimizer.step()
            optimizer.zero_grad()
        return [p.data for p in module.parameters()]

    assert_same_as_serial(work)


def test_shared_optimizer_step_refuses_a_second_thread():
    module = nn.RNN(D, H)
    optimizer = fastrnn.optim.SGD(module.parameters(), lr=0.1)
    output, _ = module(inputs((T, B, D))[0])
    module.backward(output)
    before = [p.data.copy() for p in module.parameters()]
    with exclusive(optimizer).hold("a step"):  # as if this thread were inside step()
        with ThreadPoolExecutor(1) as pool:
            with pytest.raises(ConcurrentUseError, match="SGD.step"):
                pool.submit(optimizer.step).result()
        for p, b in zip(module.parameters(), before):
            assert np.array_equal(p.data, b)  # the refused step changed nothing
        optimizer.step()  # the holding thread itself may step
    assert not np.array_equal(before[0], next(iter(module.parameters())).data)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(optimizer.step).result()  # released: another thread may step now


# Keras: one layer / one model shared by every thread ---------------------------

@pytest.mark.parametrize("make", [lambda: layers.LSTM(H, return_sequences=True, seed=1),
                                  lambda: layers.GRU(H, seed=1),
                                  lambda: layers.Bidirectional(layers.SimpleRNN(H, seed=1)),
                                  lambda: layers.TimeDistributed(layers.Dense(3, seed=1))],
                         ids=["LSTM", "GRU", "Bidirectional", "TimeDistributed"])
def test_shared_keras_layer_call_and_backward(make):
    layer = make()
    xs = inputs((B, T, D), seed=5)
    layer(xs[0])  # built before it is shared

    def work(i):
        output = layer(xs[i], training=True)
        return output, layer.backward(np.full_like(output, i + 1))

    assert_same_as_serial(work)


def test_shared_sequential_predict():
    model = keras.Sequential([layers.Embedding(20, 5, mask_zero=True, seed=1),
                              layers.LSTM(H, seed=2), layers.Dense(2, seed=3)])
    rng = np.random.default_rng(6)
    xs = [rng.integers(0, 20, size=(4, 7)) for _ in range(N)]
    model.predict(xs[0], verbose=0)
    assert_same_as_serial(lambda i: model.predict(xs[i], verbose=0))


def test_shared_sequential_fit_refuses_a_second_thread():
    model = keras.Sequential([layers.Dense(2, seed=1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model.train_on_batch(x, y)
    with exclusive(model).hold("fit"):  # as if this thread were inside fit()
        with ThreadPoolExecutor(1) as pool:
            for call in (lambda: model.fit(x, y, verbose=0), lambda: model.train_on_batch(x, y)):
                with pytest.raises(ConcurrentUseError, match="Sequential"):
                    pool.submit(call).result()
    model.fit(x, y, verbose=0)  # released


def test_keras_fit_one_model_per_thread():
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((8, T, D)).astype(np.float32) for _ in range(N)]

    def work(i):
        model = keras.Sequential([layers.GRU(H, seed=1), layers.Dense(1, seed=2)])
        model.compile(optimizer="adam", loss="mse")
        model.fit(xs[i], xs[i][:, -1, :1], epochs=2, batch_size=4, shuffle=False, verbose=0)
        return model.get_weights()

    assert_same_as_serial(work)


# the Numba backend's BLAS limit -------------------------------------------------

class _FakeBlas:
    """A BLAS library's thread setting: one process-wide number, as in OpenBLAS or MKL."""

    def __init__(self, n):
        self.n = n
        self.history = []

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.n = n
        self.history.append(n)


def test_blas_limit_is_held_until_the_last_thread_leaves(monkeypatch):
    library = _FakeBlas(2)
    monkeypatch.setattr(blas_threads, "_libraries", [library])
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with blas_threads.limit(1):
            first_in.set()
            second_in.wait()
        first_out.set()

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(first)
        first_in.wait()
        with blas_threads.limit(1):
            second_in.set()
            first_out.wait()
            # the first thread left while this one is inside: the limit still holds
            assert library.n == 1
        done.result()
    assert library.n == 2  # the last one out restored it
    assert library.history == [1, 2]  # set once, restored once


def test_blas_limit_from_many_threads_restores_the_setting(monkeypatch):
    library = _FakeBlas(4)
    monkeypatch.setattr(blas_threads, "_libraries", [library])
    seen = []

    def work(i):
        for _ in range(20):
            with blas_threads.limit(1):
                seen.append(library.n)

    concurrently(work)
    assert set(seen) == {1} and library.n == 4


def test_concurrent_numba_calls_match_serial_bit_for_bit():
    backend = "numba"
    from conftest import require_backend

    require_backend(backend)
    xs = inputs((12, 8, 16), seed=8, dtype=np.float64)
    rng = np.random.default_rng(9)
    w_ih, w_hh = rng.standard_normal((64, 16)) * 0.2, rng.standard_normal((64, 16)) * 0.2

    def work(i):
        y, _, cache = fastrnn.lstm_forward(xs[i], w_ih, w_hh, backend=backend, n_threads=2)
        return y, fastrnn.lstm_backward(cache, y)

    assert_same_as_serial(work)


def test_blas_limits_nest_in_one_thread_without_waiting(monkeypatch):
    library = _FakeBlas(4)
    monkeypatch.setattr(blas_threads, "_libraries", [library])
    with blas_threads.limit(2):
        with blas_threads.limit(1):  # alone inside: the inner limit holds ...
            assert library.n == 1
            with blas_threads.limit(1):
                assert library.n == 1
        assert library.n == 2  # ... until it ends
    assert library.n == 4 and library.history == [2, 1, 2, 4]
