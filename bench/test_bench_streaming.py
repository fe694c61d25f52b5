"""Benchmarks of one streaming step at batch 1 (see :mod:`fastrnn.benchmarks.streaming`).

Groups ``streaming-{cell}-H{H}`` time a stream of ``STREAMING_STEPS`` steps, one
call per step, the state carried: fastrnn's packed step (or its forward on
T = 1 where this version has no step), ``torch.nn.LSTMCell`` / ``GRUCell`` /
``RNNCell`` and ONNX Runtime on the T = 1 graph. Every stream's final hidden
state is checked against fastrnn's forward over the whole stream first.
"""

import pytest

import fastrnn
from fastrnn.benchmarks.grid import CELLS, STREAMING_SIZES, STREAMING_STEPS, make_step_problem
from fastrnn.benchmarks.peers import agreement
from fastrnn.benchmarks.streaming import fastrnn_step_runner, onnxruntime_step_runner, torch_cell_runner


def _build(implementation, problem):
    if implementation == "fastrnn":
        run, how = fastrnn_step_runner(problem)
        return run, how
    if implementation == "torch":
        pytest.importorskip("torch")
        return torch_cell_runner(problem), "torch cell"
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return onnxruntime_step_runner(problem), "T=1 graph"


@pytest.mark.parametrize("H", STREAMING_SIZES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("implementation", ["fastrnn", "torch", "onnxruntime"])
def test_streaming(benchmark, implementation, cell, H):
    p = make_step_problem(H, cell)
    run, how = _build(implementation, p)
    _, final, _ = getattr(fastrnn, p.cell.forward)(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh,
                                                   *p.initial_states, requires_grad=False)
    state = run()
    h = state[0] if p.cell.has_cell_state else state
    ok, diff = agreement(h, final[0] if p.cell.has_cell_state else final)
    assert ok, f"{implementation}'s stream ends {diff:.2e} away from fastrnn's forward"
    benchmark.group = f"streaming-{cell}-H{H}"
    benchmark.extra_info.update(H=H, D=H, B=1, steps=STREAMING_STEPS, threads=1, how=how,
                                dtype="float32")
    benchmark(run)
