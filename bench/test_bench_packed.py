"""Benchmarks of the forward on weights packed once against the forward on arrays.

Groups ``packed-lstm-T{T}`` time ``fastrnn.lstm_forward`` at batch 1, H = D = 256,
one thread, float32, inference, on the Cython backend: with the weight arrays (the
kernel packs ``W_ih^T`` and ``W_hh^T`` at every call) and with ``fastrnn.pack_lstm``'s
object (packed once), and ``fastrnn.nn.LSTM``, which keeps its weights packed. Short
sequences are where the packing per call weighs.
"""

import numpy as np
import pytest

import fastrnn

H = D = 256


@pytest.mark.parametrize("T", [1, 10])
@pytest.mark.parametrize("how", ["arrays", "packed", "nn.LSTM"])
def test_packed_forward(benchmark, how, T):
    try:
        from fastrnn import _cy  # noqa: F401
    except ImportError:
        pytest.skip("the Cython backend is not built")
    rng = np.random.default_rng(0)
    w = [rng.uniform(-0.1, 0.1, s).astype(np.float32) for s in ((4 * H, D), (4 * H, H), (4 * H,), (4 * H,))]
    x = rng.uniform(-1, 1, (T, 1, D)).astype(np.float32)
    expected = fastrnn.lstm_forward(x, *w, backend="cython", n_threads=1, requires_grad=False)[0]
    if how == "nn.LSTM":
        module = fastrnn.nn.LSTM(D, H, backend="cython", n_threads=1)
        module.load_state_dict({"weight_ih_l0": w[0], "weight_hh_l0": w[1], "bias_ih_l0": w[2],
                                "bias_hh_l0": w[3]})

        def run():
            with fastrnn.nn.no_grad():
                return module(x)[0]
    else:
        weights = [fastrnn.pack_lstm(*w, backend="cython")] if how == "packed" else w

        def run():
            return fastrnn.lstm_forward(x, *weights, backend="cython", n_threads=1,
                                        requires_grad=False)[0]
    assert np.array_equal(run(), expected), f"{how}: not the forward on arrays, bit for bit"
    benchmark.group = f"packed-lstm-T{T}"
    benchmark.extra_info.update(H=H, D=D, B=1, T=T, threads=1, dtype="float32", how=how)
    benchmark(run)
