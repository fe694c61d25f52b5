"""fastrnn against torch.nn.RNN given the same weights: output, final state and every gradient.

The loss is L = sum(y * dy) + sum(h_n * dh_n), so torch's autograd gives exactly
what ``rnn_backward(cache, dy, dh_n)`` must return. A case with one bias only is
matched by a torch layer whose other bias is zero. Skipped when torch is absent.
"""

import functools

import numpy as np
import pytest

import fastrnn
from cases import CASES, case_params
from helpers import assert_close, forward_kwargs
from tolerances import TORCH_PARITY

torch = pytest.importorskip("torch")

DTYPES = [np.float64, np.float32]
TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}
TORCH_NAMES = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}


@functools.lru_cache(maxsize=None)
def torch_rnn(case, dtype):
    """torch.nn.RNN's outputs and gradients on the case's inputs rounded to ``dtype``, computed in ``dtype``."""
    arrays = case.reference_arrays(dtype)
    tdtype = TORCH_DTYPES[np.dtype(dtype)]
    has_bias = any(name in arrays for name in ("b_ih", "b_hh"))
    rnn = torch.nn.RNN(case.D, case.H, nonlinearity=case.nonlinearity, bias=has_bias,
                       batch_first=case.batch_first, dtype=tdtype)

    def tensor(value):
        return torch.tensor(np.ascontiguousarray(value), dtype=tdtype)

    with torch.no_grad():
        for name, torch_name in TORCH_NAMES.items():
            if hasattr(rnn, torch_name):
                getattr(rnn, torch_name).copy_(tensor(arrays[name]) if name in arrays else 0.0)
    x = arrays["x"].transpose(1, 0, 2) if case.batch_first else arrays["x"]
    x = tensor(x).requires_grad_(True)
    h0 = tensor(arrays.get("h0", np.zeros((case.B, case.H)))[None]).requires_grad_(True)
    y, h_n = rnn(x, h0)
    dy = arrays["dy"].transpose(1, 0, 2) if case.batch_first else arrays["dy"]
    loss = (y * tensor(dy)).sum() + (h_n[0] * tensor(arrays["dh_n"])).sum()
    loss.backward()
    out = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy()[0], "dx": x.grad.numpy(), "dh0": h0.grad.numpy()[0]}
    for name, torch_name in TORCH_NAMES.items():
        if name in arrays:
            out["d" + name] = getattr(rnn, torch_name).grad.numpy()
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", case_params(CASES))
def test_matches_torch(case, any_backend, dtype):
    context = case.describe(any_backend, dtype) + " vs torch.nn.RNN"
    arrays = case.arrays(dtype)
    expected = torch_rnn(case, np.dtype(dtype))

    y, h_n, cache = fastrnn.rnn_forward(**forward_kwargs(arrays), nonlinearity=case.nonlinearity,
                                        batch_first=case.batch_first, backend=any_backend)
    grads = fastrnn.rnn_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    got = {"y": y, "h_n": h_n, **{"d" + name: value for name, value in grads.items()}}
    assert sorted(got) == sorted(expected), f"{context}: results {sorted(got)} vs torch's {sorted(expected)}"
    tolerance = TORCH_PARITY[np.dtype(dtype)]
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, f"{context}: {name} has dtype {got[name].dtype}"
        assert_close(got[name], value, tolerance, context, name)
