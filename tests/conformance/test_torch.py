"""fastrnn against the matching ``torch.nn`` layer given the same weights: outputs, final states and
every gradient, in float64 and float32.

The loss is ``L = sum(y * dy) + sum(h_n * dh_n) (+ sum(c_n * dc_n))``, so torch's autograd gives
exactly what the backward call returns given those loss weights. A case with one bias only is
matched by a torch layer whose other bias is zero. Skipped when torch is absent.
"""

import functools

import numpy as np
import pytest

from conformance.cases import LONG, SMALL_CASES, matrix
from conformance.cells import CELLS, require
from helpers import assert_close
from tolerances import TORCH_PARITY

torch = pytest.importorskip("torch")

TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}
TORCH_NAMES = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "w_hr": "weight_hr_l0", "b_ih": "bias_ih_l0",
               "b_hh": "bias_hh_l0"}
#: torch has no GRU that applies the reset gate before the recurrent product (Keras/ONNX's variant):
#: that one is checked against ONNX in test_gru_cell.py.
TORCH_CELLS = [cell for cell in CELLS if cell.torch_layer is not None]


#: The multi-chunk paths are checked against the reference (test_backends.py), which agrees with torch here.
TORCH_CASES = SMALL_CASES + [LONG]


@functools.lru_cache(maxsize=None)
def torch_results(cell, case, dtype):
    """The torch layer's outputs and gradients on the case's inputs rounded to ``dtype``, computed in ``dtype``."""
    arrays = case.reference_arrays(cell, dtype)
    tdtype = TORCH_DTYPES[np.dtype(dtype)]
    class_name, options = cell.torch_layer
    if cell.projected:
        options = dict(options, proj_size=case.proj_size)
    has_bias = any(name in arrays for name in ("b_ih", "b_hh"))
    layer = getattr(torch.nn, class_name)(case.D, case.H, bias=has_bias, batch_first=case.batch_first,
                                          dtype=tdtype, **options)

    def tensor(value):
        return torch.tensor(np.ascontiguousarray(value), dtype=tdtype)

    with torch.no_grad():
        for name, torch_name in TORCH_NAMES.items():
            if hasattr(layer, torch_name):
                getattr(layer, torch_name).copy_(tensor(arrays[name]) if name in arrays else 0.0)
    shapes = cell.shapes(*case.shape, case.proj_size)
    x = tensor(arrays["x"].transpose(1, 0, 2) if case.batch_first else arrays["x"]).requires_grad_(True)
    states = [tensor(arrays.get(name, np.zeros(shapes[name]))[None]).requires_grad_(True) for name in cell.states]
    y, finals = layer(x, tuple(states) if cell.cell_state else states[0])
    finals = finals if cell.cell_state else (finals,)
    dy = arrays["dy"].transpose(1, 0, 2) if case.batch_first else arrays["dy"]
    loss = (y * tensor(dy)).sum()
    for name, final in zip(cell.final_states, finals):
        loss = loss + (final[0] * tensor(arrays["d" + name])).sum()
    loss.backward()
    out = {"y": y.detach().numpy(), "dx": x.grad.numpy()}
    for name, final, state in zip(cell.final_states, finals, states):
        out[name] = final.detach().numpy()[0]
    for name, state in zip(cell.states, states):
        out["d" + name] = state.grad.numpy()[0]
    for name, torch_name in TORCH_NAMES.items():
        if name in arrays:
            out["d" + name] = getattr(layer, torch_name).grad.numpy()
    return out


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("cell, case, backend, dtype", matrix(TORCH_CASES, reference_run=True, cells=TORCH_CELLS))
def test_matches_torch(cell, case, backend, dtype):
    require(cell, backend)
    context = case.describe(cell, backend, dtype) + f" vs torch.nn.{cell.torch_layer[0]}"
    arrays = case.arrays(cell, dtype)
    expected = torch_results(cell, case, dtype)
    y, states, cache = cell.forward(arrays, backend, batch_first=case.batch_first)
    got = {"y": y, **states, **{"d" + name: value for name, value in cell.backward(cache, arrays).items()}}
    assert sorted(got) == sorted(expected), f"{context}: results {sorted(got)} vs torch's {sorted(expected)}"
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, f"{context}: {name} has dtype {got[name].dtype}"
        assert_close(got[name], value, TORCH_PARITY[dtype], context, name)
