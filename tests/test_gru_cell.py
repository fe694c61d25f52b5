"""The GRU cell's two variants on evidence of their own, apart from the conformance suite:

* ``reset_after=True`` (PyTorch's) and ``reset_after=False`` (Keras/ONNX's) worked out by hand for
  one step: they differ only in where the reset gate meets the recurrent product;
* the reference's forward pass against an independent scalar transcription of the equations;
* ``reset_after=False`` against a NumPy transcription of the ONNX GRU operator
  (``linear_before_reset=0``, gates in ONNX's order ``z, r, h``), and both variants against
  ONNX Runtime running a one-node GRU model with the same converted weights (skipped where
  onnx / onnxruntime are absent).

Agreement with torch.nn.GRU is in the conformance suite (``conformance/test_torch.py``).
"""

import math

import numpy as np
import pytest

import fastrnn
from conformance.cases import SMALL_CASES, backend_params, cell_cases
from conformance.cells import GRU, GRU_RESET_BEFORE, require
from helpers import assert_close
from tolerances import BACKEND_VS_REFERENCE, FLOAT64_REORDERED, HAND_CHECKED, TORCH_PARITY

VARIANTS = (GRU, GRU_RESET_BEFORE)


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def scalar_gru(x, w_ih, w_hh, b_ih, b_hh, h0, reset_after):
    """One loop per index, math.exp/math.tanh, float64: an independent transcription of the equations."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    y = np.zeros((T, B, H))
    h = h0.copy()
    for t in range(T):
        new = np.zeros((B, H))
        for b in range(B):
            def pre(block, j, vec, w, bias):
                row = block * H + j
                return sum(w[row, k] * vec[k] for k in range(len(vec))) + bias[row]
            r = [sigmoid(pre(0, k, x[t, b], w_ih, b_ih) + pre(0, k, h[b], w_hh, b_hh)) for k in range(H)]
            for j in range(H):
                z = sigmoid(pre(1, j, x[t, b], w_ih, b_ih) + pre(1, j, h[b], w_hh, b_hh))
                if reset_after:
                    n = math.tanh(pre(2, j, x[t, b], w_ih, b_ih) + r[j] * pre(2, j, h[b], w_hh, b_hh))
                else:  # r of every unit k times h_{t-1}[k] is the input of the n rows of w_hh
                    rh = np.array([r[k] * h[b, k] for k in range(H)])
                    n = math.tanh(pre(2, j, x[t, b], w_ih, b_ih) + pre(2, j, rh, w_hh, b_hh))
                new[b, j] = (1 - z) * n + z * h[b, j]
        h = new
        y[t] = h
    return y, h


@pytest.mark.parametrize("cell, case", cell_cases([SMALL_CASES[i] for i in (0, 3, 5, 6, 10)], cells=VARIANTS))
def test_reference_forward_matches_scalar_loop(cell, case):
    arrays = case.time_major(cell, np.float64)
    H = case.H
    b_ih = arrays.get("b_ih", np.zeros(3 * H))
    b_hh = arrays.get("b_hh", np.zeros(3 * H))
    reset_after = dict(cell.options)["reset_after"]
    expected_y, expected_h = scalar_gru(arrays["x"], arrays["w_ih"], arrays["w_hh"], b_ih, b_hh, arrays["h0"],
                                        reset_after)
    y, states, _ = cell.forward(arrays, "python")
    context = case.describe(cell, "python", np.float64) + " (scalar loop)"
    np.testing.assert_allclose(y, expected_y, **FLOAT64_REORDERED, err_msg=f"{context}: y")
    np.testing.assert_allclose(states["h_n"], expected_h, **FLOAT64_REORDERED, err_msg=f"{context}: h_n")


@pytest.mark.parametrize("backend", backend_params())
def test_hand_checked_one_unit_one_step(backend):
    """T=B=D=H=1: the two variants worked out by hand (they differ only by where b_hn sits)."""
    require(GRU, backend)
    x, h0 = 0.7, -0.4
    w_ih = np.array([[0.5], [-0.3], [0.8]])
    w_hh = np.array([[0.2], [0.6], [-0.9]])
    b_ih = np.array([0.1, -0.2, 0.05])
    b_hh = np.array([-0.1, 0.3, 0.25])
    r = sigmoid(0.5 * x + 0.1 + 0.2 * h0 - 0.1)
    z = sigmoid(-0.3 * x - 0.2 + 0.6 * h0 + 0.3)
    n_after = math.tanh(0.8 * x + 0.05 + r * (-0.9 * h0 + 0.25))
    n_before = math.tanh(0.8 * x + 0.05 + (-0.9 * (r * h0)) + 0.25)
    assert abs(n_after - n_before) > 0.01, "the hand-worked values must tell the variants apart"
    for reset_after, n in [(True, n_after), (False, n_before)]:
        y, h_n, _ = fastrnn.gru_forward(np.array(x).reshape(1, 1, 1), w_ih, w_hh, b_ih, b_hh,
                                        np.array(h0).reshape(1, 1), reset_after=reset_after, backend=backend)
        np.testing.assert_allclose(y.ravel(), [(1 - z) * n + z * h0], **HAND_CHECKED,
                                   err_msg=f"cell=GRU reset_after={reset_after} backend={backend} (hand-checked)")


# ------------------------------------------------------------------------------------------
# ONNX (linear_before_reset=0 is reset_after=False)
# ------------------------------------------------------------------------------------------


def to_onnx_order(a):
    """PyTorch's blocks r, z, n along the first axis -> ONNX's z, r, h."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def onnx_weights(arrays, H):
    """ONNX GRU's W (1, 3H, D), R (1, 3H, H), B (1, 6H) from PyTorch-layout arrays."""
    W = to_onnx_order(arrays["w_ih"])[None]
    R = to_onnx_order(arrays["w_hh"])[None]
    wb = to_onnx_order(arrays.get("b_ih", np.zeros(3 * H)))
    rb = to_onnx_order(arrays.get("b_hh", np.zeros(3 * H)))
    return W, R, np.concatenate([wb, rb])[None]


def onnx_gru_numpy(X, W, R, B, initial_h, linear_before_reset):
    """The ONNX GRU operator's equations (one direction, default activations), transcribed as written."""
    Wz, Wr, Wh = np.split(W[0], 3)
    Rz, Rr, Rh = np.split(R[0], 3)
    Wbz, Wbr, Wbh, Rbz, Rbr, Rbh = np.split(B[0], 6)

    def f(v):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-v))

    Ht = initial_h[0]
    Y = []
    for Xt in X:
        zt = f(Xt @ Wz.T + Ht @ Rz.T + Wbz + Rbz)
        rt = f(Xt @ Wr.T + Ht @ Rr.T + Wbr + Rbr)
        if linear_before_reset:
            ht = np.tanh(Xt @ Wh.T + rt * (Ht @ Rh.T + Rbh) + Wbh)
        else:
            ht = np.tanh(Xt @ Wh.T + (rt * Ht) @ Rh.T + Rbh + Wbh)
        Ht = (1 - zt) * ht + zt * Ht
        Y.append(Ht)
    return np.stack(Y), Ht


ONNX_CASES = [case for case in SMALL_CASES if not case.batch_first and case.layout == "c"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("cell, case", cell_cases(ONNX_CASES, cells=(GRU_RESET_BEFORE,)))
def test_reset_before_matches_onnx_equations(cell, case, backend, dtype):
    require(cell, backend)
    reference = {name: value.astype(np.float64) for name, value in case.time_major(cell, dtype).items()}
    W, R, B = onnx_weights(reference, case.H)
    expected_y, expected_h = onnx_gru_numpy(reference["x"], W, R, B, reference["h0"][None], linear_before_reset=0)
    y, states, _ = cell.forward(case.arrays(cell, dtype), backend)
    context = case.describe(cell, backend, dtype) + " vs ONNX GRU equations (linear_before_reset=0)"
    tolerance = BACKEND_VS_REFERENCE[np.dtype(dtype)]
    assert_close(y, expected_y, tolerance, context, "y")
    assert_close(states["h_n"], expected_h, tolerance, context, "h_n")


def run_onnxruntime(x, W, R, B, h0, linear_before_reset):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    T, batch, D = x.shape
    H = R.shape[-1]
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"], hidden_size=H,
                            linear_before_reset=linear_before_reset)
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, batch, D]),
         helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [1, batch, H])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, batch, H]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, batch, H])],
        initializer=[numpy_helper.from_array(a.astype(np.float32), name) for a, name in ((W, "W"), (R, "R"), (B, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Y_h = session.run(None, {"X": x.astype(np.float32), "initial_h": h0[None].astype(np.float32)})
    return Y[:, 0], Y_h[0]


ORT_CASES = [case for case in ONNX_CASES if case.name in ("T1", "odd_7_5_3_11", "no_bias", "saturated")]


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("cell, case", cell_cases(ORT_CASES, cells=VARIANTS))
def test_matches_onnxruntime(cell, case, backend):
    require(cell, backend)
    arrays = case.time_major(cell, np.float32)
    W, R, B = onnx_weights(arrays, case.H)
    linear_before_reset = int(dict(cell.options)["reset_after"])
    expected_y, expected_h = run_onnxruntime(arrays["x"], W, R, B, arrays["h0"], linear_before_reset)
    y, states, _ = cell.forward(case.arrays(cell, np.float32), backend)
    context = case.describe(cell, backend, np.float32) + " vs onnxruntime GRU"
    assert_close(y, expected_y, TORCH_PARITY[np.dtype(np.float32)], context, "y")
    assert_close(states["h_n"], expected_h, TORCH_PARITY[np.dtype(np.float32)], context, "h_n")
