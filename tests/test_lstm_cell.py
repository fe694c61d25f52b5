"""The LSTM cell on evidence of its own, apart from the conformance suite:

* one step worked out by hand, every gate, forward and backward, on every backend;
* the reference's forward pass against an independent scalar loop (``math.exp``, ``math.tanh``);
* inference hands the kernel an empty cell-state workspace (no ``c`` of every step is kept).

The per-step cell-state gradient ``dc=`` is tested in ``test_lstm_cell_gradient.py``.
"""

import math

import numpy as np
import pytest

import fastrnn
from conformance.cases import SMALL_CASES, backend_params, cell_cases
from conformance.cells import LSTM, require
from fastrnn import _backends
from tolerances import FLOAT64_REORDERED, HAND_CHECKED


@pytest.fixture(params=backend_params())
def backend(request):
    return require(LSTM, request.param)


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def scalar_loop_forward(arrays):
    """The LSTM equations entry by entry with Python floats, math.exp and math.tanh."""
    x, w_ih, w_hh = arrays["x"], arrays["w_ih"], arrays["w_hh"]
    T, B, D = x.shape
    H = w_hh.shape[1]
    b_ih = arrays.get("b_ih", np.zeros(4 * H))
    b_hh = arrays.get("b_hh", np.zeros(4 * H))
    h = arrays.get("h0", np.zeros((B, H))).tolist()
    c = arrays.get("c0", np.zeros((B, H))).tolist()
    ys = np.zeros((T, B, H))
    for t in range(T):
        new_h = [[0.0] * H for _ in range(B)]
        new_c = [[0.0] * H for _ in range(B)]
        for b in range(B):
            z = [b_ih[r] + b_hh[r] + math.fsum(w_ih[r, k] * x[t, b, k] for k in range(D))
                 + math.fsum(w_hh[r, k] * h[b][k] for k in range(H)) for r in range(4 * H)]
            for j in range(H):
                i, f = sigmoid(z[j]), sigmoid(z[H + j])
                g, o = math.tanh(z[2 * H + j]), sigmoid(z[3 * H + j])
                new_c[b][j] = f * c[b][j] + i * g
                new_h[b][j] = o * math.tanh(new_c[b][j])
        h, c = new_h, new_c
        ys[t] = h
    return ys, np.array(h), np.array(c)


@pytest.mark.parametrize("cell, case", cell_cases(SMALL_CASES, cells=(LSTM,)))
def test_reference_forward_matches_scalar_loops(cell, case):
    arrays = case.reference_arrays(cell, np.float64)
    context = case.describe(cell, "python", np.float64)
    expected = dict(zip(("y", "h_n", "c_n"), scalar_loop_forward(arrays)))
    y, states, _ = cell.forward(arrays, "python")
    for name, got in dict(states, y=y).items():
        np.testing.assert_allclose(got, expected[name], **FLOAT64_REORDERED, err_msg=f"{context}: {name}")


def test_hand_checked_scalar_one_step(backend):
    """T=B=D=H=1: every gate worked out by hand, forward and backward."""
    x, h0, c0 = 0.5, -0.3, 0.8
    w_ih = np.array([0.4, -0.6, 0.9, 0.2])        # rows i, f, g, o
    w_hh = np.array([0.3, 0.5, -0.7, 0.1])
    b = np.array([0.1, 0.2, -0.1, 0.05])
    z = w_ih * x + w_hh * h0 + b
    sig = [1 / (1 + math.exp(-v)) for v in z]
    i, f, g, o = sig[0], sig[1], math.tanh(z[2]), sig[3]
    c1 = f * c0 + i * g
    h1 = o * math.tanh(c1)
    dy, dh_n, dc_n = 0.7, -0.25, 1.3
    dh = dy + dh_n
    tc = math.tanh(c1)
    dc = dc_n + dh * o * (1 - tc * tc)
    dz = np.array([dc * g * i * (1 - i), dc * c0 * f * (1 - f), dc * i * (1 - g * g), dh * tc * o * (1 - o)])
    expected = {"y": h1, "h_n": h1, "c_n": c1, "x": dz @ w_ih, "h0": dz @ w_hh, "c0": dc * f,
                "w_ih": dz * x, "w_hh": dz * h0, "b_ih": dz}

    y, (h_n, c_n), cache = fastrnn.lstm_forward(
        np.array([[[x]]]), w_ih.reshape(4, 1), w_hh.reshape(4, 1), b_ih=b, h0=np.array([[h0]]),
        c0=np.array([[c0]]), backend=backend)
    grads = fastrnn.lstm_backward(cache, dy=np.array([[[dy]]]), dh_n=np.array([[dh_n]]), dc_n=np.array([[dc_n]]))
    got = {"y": y, "h_n": h_n, "c_n": c_n, **grads}
    context = f"cell=LSTM backend={backend} dtype=float64 (T, B, D, H)=(1, 1, 1, 1) seed=none (hand-checked)"
    assert sorted(got) == sorted(expected), context
    for name, value in expected.items():
        np.testing.assert_allclose(np.ravel(got[name]), np.ravel(value), **HAND_CHECKED,
                                   err_msg=f"{context}: {name}")


def test_inference_kernel_gets_empty_cell_workspace(backend, monkeypatch):
    """With requires_grad=False the kernel receives c_all of shape (0, B, H)."""
    _, module = _backends.resolve(backend)
    seen = []
    kernel = module.lstm_forward

    def spy(*args):
        seen.append(args[10].shape)
        return kernel(*args)

    monkeypatch.setattr(module, "lstm_forward", spy)
    case = SMALL_CASES[5]
    arrays = case.arrays(LSTM, np.float64)
    LSTM.forward(arrays, backend, requires_grad=False)
    LSTM.forward(arrays, backend)
    T, B, _, H = case.shape
    assert seen == [(0, B, H), (T, B, H)], f"backend={backend}: c_all shapes {seen}"
