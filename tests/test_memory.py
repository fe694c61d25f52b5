"""Costs in proportion to the work: thread counts capped at the cores, model files whose
declared sizes cannot make a small file cost much memory."""

import numpy as np
import pytest

import fastrnn
from conformance.cases import Case, backend_marks
from conformance.cells import CELLS, require
from conftest import ALL_BACKENDS
from fastrnn import _threads

CASE = Case("memory", seed=61, T=5, B=3, D=4, H=6, P=3)
CELL_BACKENDS = [pytest.param(cell, backend, marks=backend_marks(backend), id=f"{cell.id}-{backend}")
                 for cell in CELLS for backend in ALL_BACKENDS]


# -- thread counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell, backend", CELL_BACKENDS)
def test_n_threads_above_the_cores_runs_with_one_per_core(cell, backend, monkeypatch):
    """``n_threads=512`` on a machine of 2 cores used to start 513 threads; now the kernels get
    the core count, and the results are those of one thread bit for bit."""
    require(cell, backend)
    arrays = {name: value for name, value in CASE.arrays(cell, np.float64).items() if name in cell.inputs}
    monkeypatch.setattr(_threads, "available_cores", lambda: 2)
    module = cell.kernel_module(backend)
    seen = []
    kernel = getattr(module, cell.kernel)

    def recording(*args):
        seen.append(args[-1])  # every kernel takes the thread count last
        return kernel(*args)

    monkeypatch.setattr(module, cell.kernel, recording)
    y, states, _ = cell.forward(arrays, backend, n_threads=512, requires_grad=False)
    assert seen == [2]
    y_one, states_one, _ = cell.forward(arrays, backend, n_threads=1, requires_grad=False)
    np.testing.assert_array_equal(y, y_one)
    for name in states:
        np.testing.assert_array_equal(states[name], states_one[name])


def test_set_num_threads_caps_at_the_cores(monkeypatch):
    monkeypatch.setattr(_threads, "available_cores", lambda: 3)
    monkeypatch.setattr(_threads, "_thread_cap", None)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(512)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(2)
    assert fastrnn.get_num_threads() == 2
    for bad in (0, -1, True, 2.0, 2**31):
        with pytest.raises(fastrnn.ArgumentError, match=r"\bn_threads must be None or an integer from 1"):
            fastrnn.set_num_threads(bad)
    assert fastrnn.get_num_threads() == 2
    fastrnn.set_num_threads(None)
    assert fastrnn.get_num_threads() == 3
