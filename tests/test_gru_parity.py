"""The GRU layer against independent implementations given the same weights.

* ``reset_after=True``: torch.nn.GRU, in float32 and float64, with and without bias, batch-first:
  output, final state and the gradients of the input, the initial state and every parameter
  (the loss is L = sum(y * dy) + sum(h_n * dh_n), so autograd gives what ``gru_backward`` returns);
* ``reset_after=False``: a NumPy transcription of the ONNX GRU operator's equations
  (``linear_before_reset=0``, gates in ONNX's order ``z, r, h``), and ONNX Runtime running a
  one-node GRU model with the same converted weights: forward outputs.

Skipped where torch / onnx / onnxruntime are absent.
"""

import functools

import numpy as np
import pytest

import fastrnn
from helpers import assert_close
from test_gru import CASES, forward_kwargs, params, require_gru_backend
from tolerances import BACKEND_VS_REFERENCE, TORCH_PARITY

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]
TORCH_NAMES = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
TORCH_CASES = [case for case in CASES if case.layout in ("c", "readonly", "strided")]


@pytest.fixture(params=("cython", "numba", "python"))
def gru_any_backend(request):
    """Every backend with GRU kernels (a backend without them is skipped)."""
    return require_gru_backend(request.param)


@functools.lru_cache(maxsize=None)
def torch_gru(case, dtype):
    torch = pytest.importorskip("torch")
    tdtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[np.dtype(dtype)]
    arrays = case.reference_arrays(dtype)
    has_bias = any(name in arrays for name in ("b_ih", "b_hh"))
    gru = torch.nn.GRU(case.D, case.H, bias=has_bias, batch_first=case.batch_first, dtype=tdtype)

    def tensor(value):
        return torch.tensor(np.ascontiguousarray(value), dtype=tdtype)

    with torch.no_grad():
        for name, torch_name in TORCH_NAMES.items():
            if hasattr(gru, torch_name):
                getattr(gru, torch_name).copy_(tensor(arrays[name]) if name in arrays else 0.0)
    x = arrays["x"].transpose(1, 0, 2) if case.batch_first else arrays["x"]
    x = tensor(x).requires_grad_(True)
    h0 = tensor(arrays.get("h0", np.zeros((case.B, case.H)))[None]).requires_grad_(True)
    y, h_n = gru(x, h0)
    dy = arrays["dy"].transpose(1, 0, 2) if case.batch_first else arrays["dy"]
    ((y * tensor(dy)).sum() + (h_n[0] * tensor(arrays["dh_n"])).sum()).backward()
    out = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy()[0], "dx": x.grad.numpy(),
           "dh0": h0.grad.numpy()[0]}
    for name, torch_name in TORCH_NAMES.items():
        if name in arrays:
            out["d" + name] = getattr(gru, torch_name).grad.numpy()
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", params(TORCH_CASES))
def test_matches_torch(case, dtype, gru_any_backend):
    pytest.importorskip("torch")
    context = case.describe(gru_any_backend, dtype, True) + " vs torch.nn.GRU"
    expected = torch_gru(case, np.dtype(dtype))
    arrays = case.arrays(dtype)
    y, h_n, cache = fastrnn.gru_forward(**forward_kwargs(arrays), batch_first=case.batch_first,
                                        backend=gru_any_backend)
    grads = fastrnn.gru_backward(cache, dy=arrays["dy"], dh_n=arrays["dh_n"])
    got = {"y": y, "h_n": h_n, **{"d" + name: value for name, value in grads.items()}}
    assert sorted(got) == sorted(expected), f"{context}: results {sorted(got)} vs torch's {sorted(expected)}"
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, f"{context}: {name} has dtype {got[name].dtype}"
        assert_close(got[name], value, TORCH_PARITY[np.dtype(dtype)], context, name)


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
    H = R.shape[-1]
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
    assert Ht.shape[-1] == H
    return np.stack(Y), Ht


ONNX_CASES = [case for case in CASES if not case.batch_first and case.layout == "c"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", params(ONNX_CASES))
def test_reset_before_matches_onnx_equations(case, dtype, gru_any_backend):
    arrays = case.reference_arrays(dtype)
    h0 = arrays.get("h0", np.zeros((case.B, case.H)))
    W, R, B = onnx_weights(arrays, case.H)
    expected_y, expected_h = onnx_gru_numpy(arrays["x"], W, R, B, h0[None], linear_before_reset=0)
    given = case.arrays(dtype)
    y, h_n, _ = fastrnn.gru_forward(**forward_kwargs(given), reset_after=False, backend=gru_any_backend)
    context = case.describe(gru_any_backend, dtype, False) + " vs ONNX GRU equations (linear_before_reset=0)"
    tolerance = BACKEND_VS_REFERENCE[np.dtype(dtype)]
    assert_close(y, expected_y, tolerance, context, "y")
    assert_close(h_n, expected_h, tolerance, context, "h_n")


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


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
@pytest.mark.parametrize("case", params(ORT_CASES))
def test_matches_onnxruntime(case, reset_after, gru_any_backend):
    arrays = case.reference_arrays(np.float32)
    h0 = arrays.get("h0", np.zeros((case.B, case.H)))
    W, R, B = onnx_weights(arrays, case.H)
    expected_y, expected_h = run_onnxruntime(arrays["x"], W, R, B, h0, linear_before_reset=int(reset_after))
    given = case.arrays(np.float32)
    y, h_n, _ = fastrnn.gru_forward(**forward_kwargs(given), reset_after=reset_after, backend=gru_any_backend)
    context = case.describe(gru_any_backend, np.float32, reset_after) + " vs onnxruntime GRU"
    assert_close(y, expected_y, TORCH_PARITY[np.dtype(np.float32)], context, "y")
    assert_close(h_n, expected_h, TORCH_PARITY[np.dtype(np.float32)], context, "h_n")
