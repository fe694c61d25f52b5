"""The Elman cell (``rnn_forward``) on evidence of its own, apart from the conformance suite:

* values worked out by hand for T=1 and T=2 (tanh and relu), forward and backward, on every backend;
* the reference's forward pass against an independent scalar loop written with ``math.tanh``.
"""

import math

import numpy as np
import pytest

import fastrnn
from conformance.cases import SMALL_CASES, cell_cases
from conformance.cells import RNN_RELU, RNN_TANH
from tolerances import FLOAT64_REORDERED, HAND_CHECKED


def test_hand_checked_scalar_tanh_two_steps(any_backend):
    """T=2, B=D=H=1, both biases, an initial state; loss L = 0.7*h_1 + 1.5*h_2 - 0.25*h_n."""
    x1, x2 = 0.5, -1.0
    w_ih, w_hh, b_ih, b_hh, h0 = 0.8, -0.3, 0.1, -0.2, 0.4
    # forward, h_t = tanh(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh)
    h1 = math.tanh(w_ih * x1 + b_ih + w_hh * h0 + b_hh)
    h2 = math.tanh(w_ih * x2 + b_ih + w_hh * h1 + b_hh)
    # backward, dy = (0.7, 1.5), dh_n = -0.25, and h_n = h_2
    dz2 = (1.5 - 0.25) * (1 - h2 ** 2)
    dz1 = (0.7 + dz2 * w_hh) * (1 - h1 ** 2)
    expected = {
        "y": [h1, h2], "h_n": h2,
        "x": [dz1 * w_ih, dz2 * w_ih], "h0": dz1 * w_hh,
        "w_ih": dz1 * x1 + dz2 * x2, "w_hh": dz1 * h0 + dz2 * h1, "b_ih": dz1 + dz2, "b_hh": dz1 + dz2,
    }

    def a(*values):
        return np.array(values, dtype=np.float64)

    y, h_n, cache = fastrnn.rnn_forward(
        a(x1, x2).reshape(2, 1, 1), a(w_ih).reshape(1, 1), a(w_hh).reshape(1, 1), a(b_ih), a(b_hh),
        a(h0).reshape(1, 1), backend=any_backend)
    grads = fastrnn.rnn_backward(cache, dy=a(0.7, 1.5).reshape(2, 1, 1), dh_n=a(-0.25).reshape(1, 1))
    context = f"cell=RNN backend={any_backend} dtype=float64 (T, B, D, H)=(2, 1, 1, 1) seed=none (hand-checked)"
    got = {"y": y.ravel(), "h_n": h_n.ravel(), **{name: g.ravel() for name, g in grads.items()}}
    assert sorted(got) == sorted(expected), context
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], np.atleast_1d(value), **HAND_CHECKED, err_msg=f"{context}: {name}")


def test_hand_checked_two_units_one_step(any_backend):
    """T=1, B=1, D=H=2: checks PyTorch's convention h = tanh(x W_ih^T + b_ih + h0 W_hh^T + b_hh), no transposes lost."""
    x = [1.0, -2.0]
    w_ih = [[0.3, -0.1], [0.2, 0.4]]
    w_hh = [[0.2, -0.5], [0.3, 0.1]]      # not symmetric, so W_hh and its transpose differ
    b_ih = [0.05, -0.15]
    b_hh = [0.01, 0.02]
    h0 = [0.6, -0.4]
    expected = [
        math.tanh(0.3 * 1.0 + (-0.1) * (-2.0) + 0.05 + 0.2 * 0.6 + (-0.5) * (-0.4) + 0.01),
        math.tanh(0.2 * 1.0 + 0.4 * (-2.0) + (-0.15) + 0.3 * 0.6 + 0.1 * (-0.4) + 0.02),
    ]
    y, h_n, _ = fastrnn.rnn_forward(np.array(x).reshape(1, 1, 2), np.array(w_ih), np.array(w_hh),
                                    np.array(b_ih), np.array(b_hh), np.array(h0).reshape(1, 2),
                                    backend=any_backend)
    context = f"cell=RNN backend={any_backend} dtype=float64 (T, B, D, H)=(1, 1, 2, 2) seed=none (hand-checked)"
    np.testing.assert_allclose(y.reshape(2), expected, **HAND_CHECKED, err_msg=f"{context}: y")
    np.testing.assert_allclose(h_n.reshape(2), expected, **HAND_CHECKED, err_msg=f"{context}: h_n")


def test_hand_checked_scalar_relu_two_steps(any_backend):
    """relu, T=2, only b_ih; the second step is cut off by relu, so only the first step carries gradient."""
    x1, x2, w_ih, w_hh, b_ih, h0 = 1.0, -2.0, 0.5, 0.9, 0.1, 0.2
    z1 = w_ih * x1 + b_ih + w_hh * h0          # 0.78 > 0
    h1 = max(0.0, z1)
    z2 = w_ih * x2 + b_ih + w_hh * h1          # -0.198 < 0
    h2 = max(0.0, z2)
    assert z1 > 0 > z2
    # loss L = 1.0*h_1 + 3.0*h_2 + 2.0*h_n: dz2 = 0 (cut off), dz1 = 1.0
    dz1 = 1.0
    expected = {"y": [h1, h2], "h_n": [h2], "x": [dz1 * w_ih, 0.0], "h0": [dz1 * w_hh],
                "w_ih": [dz1 * x1], "w_hh": [dz1 * h0], "b_ih": [dz1]}
    y, h_n, cache = fastrnn.rnn_forward(
        np.array([x1, x2]).reshape(2, 1, 1), np.array([[w_ih]]), np.array([[w_hh]]), b_ih=np.array([b_ih]),
        h0=np.array([[h0]]), nonlinearity="relu", backend=any_backend)
    grads = fastrnn.rnn_backward(cache, dy=np.array([1.0, 3.0]).reshape(2, 1, 1), dh_n=np.array([[2.0]]))
    context = f"cell=RNN backend={any_backend} dtype=float64 (T, B, D, H)=(2, 1, 1, 1) seed=none relu (hand-checked)"
    got = {"y": y.ravel(), "h_n": h_n.ravel(), **{name: g.ravel() for name, g in grads.items()}}
    assert sorted(got) == sorted(expected), context
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, **HAND_CHECKED, err_msg=f"{context}: {name}")


def scalar_loop_forward(arrays, relu):
    """h_t[b, j] = phi(sum_k w_ih[j, k] x_t[b, k] + b_ih[j] + sum_k w_hh[j, k] h_{t-1}[b, k] + b_hh[j]),
    entry by entry in Python floats."""
    x, w_ih, w_hh = arrays["x"], arrays["w_ih"], arrays["w_hh"]
    T, B, D = x.shape
    H = w_hh.shape[0]
    b_ih = arrays.get("b_ih", np.zeros(H))
    b_hh = arrays.get("b_hh", np.zeros(H))
    h = arrays.get("h0", np.zeros((B, H))).tolist()
    ys = np.zeros((T, B, H))
    for t in range(T):
        new_h = [[0.0] * H for _ in range(B)]
        for b in range(B):
            for j in range(H):
                z = b_ih[j] + b_hh[j]
                z += math.fsum(w_ih[j, k] * x[t, b, k] for k in range(D))
                z += math.fsum(w_hh[j, k] * h[b][k] for k in range(H))
                new_h[b][j] = max(z, 0.0) if relu else math.tanh(z)
        h = new_h
        ys[t] = h
    return ys


@pytest.mark.parametrize("cell, case", cell_cases(SMALL_CASES, cells=(RNN_TANH, RNN_RELU)))
def test_reference_forward_matches_scalar_loops(cell, case):
    arrays = case.reference_arrays(cell, np.float64)
    context = case.describe(cell, "python", np.float64)
    expected_y = scalar_loop_forward(arrays, cell.relu)
    y, states, _ = cell.forward(arrays, "python")
    np.testing.assert_allclose(y, expected_y, **FLOAT64_REORDERED, err_msg=f"{context}: y")
    np.testing.assert_allclose(states["h_n"], expected_y[-1], **FLOAT64_REORDERED, err_msg=f"{context}: h_n")
