"""The reduced-precision peers: ONNX Runtime's int8 LSTM and OpenVINO at its default precision.

* ``"ORT int8"``: ONNX Runtime's ``com.microsoft`` ``DynamicQuantizeLSTM``
  operator, LSTM only (ONNX Runtime has no int8 GRU or RNN). Its weights are
  int8 with one scale per output unit (per column of its transposed layout
  ``W`` [1, D, 4H], ``R`` [1, H, 4H]) and zero points 0, quantized from the
  same float32 weights as every other peer by fastrnn's own rule
  (:func:`fastrnn._python.reduced.quantize_rows`: symmetric, ``max |w| / 127``);
  the activations are quantized by ONNX Runtime at each step, with one scale
  per thread's share of the batch.
* ``"OV default"``: OpenVINO's CPU plugin without a precision hint
  (:func:`fastrnn.benchmarks.peers.openvino_runner`), which computes in bf16
  on CPUs with AVX512_BF16 or AMX.

Both are built from :class:`fastrnn.benchmarks.grid.Problem` like the float
peers of :mod:`fastrnn.benchmarks.peers`, and checked against fastrnn's float32
output (:func:`fastrnn.benchmarks.peers.agreement`, tolerance of their
precision) before they are timed.
"""

import numpy as np

from fastrnn._python.reduced import quantize_rows
from fastrnn.benchmarks.peers import (Peer, onnx_output, onnx_state_names, onnxruntime_graph_runner,
                                      openvino_default_precision, openvino_runner)

__all__ = ["onnx_int8_lstm_model", "onnxruntime_int8_runner", "available_precision_peers"]


def onnx_int8_lstm_model(problem):
    """A one-node ONNX model running ``problem``'s LSTM with ``com.microsoft.DynamicQuantizeLSTM``.

    Inputs ``X`` [T, B, D], ``initial_h`` and ``initial_c`` [1, B, H]; initializers
    ``W`` int8 [1, D, 4H] and ``R`` int8 [1, H, 4H] (the transposes of ONNX's
    ``LSTM`` weights, gate blocks in ONNX's order ``i, o, f, c``), ``B`` float32
    [1, 8H] = [Wb, Rb], per-column ``W_scale``/``R_scale`` float32 [1, 4H] and zero
    points int8 [1, 4H] of 0.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
        An LSTM problem.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ValueError
        If ``problem`` is not an LSTM's.
    ImportError
        If the ``onnx`` package is not installed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    p = problem
    cell = p.cell
    if cell.name != "lstm":
        raise ValueError(f"DynamicQuantizeLSTM runs an LSTM; got the {cell.name} cell")
    T, B, D, H = p.shape.T, p.shape.B, p.shape.D, p.shape.H

    def onnx_order(array):
        return np.concatenate([array[k * H:(k + 1) * H] for k in cell.blocks("onnx")])

    def quantized(weight, name):
        # one scale per output unit: a row of PyTorch's layout, a column of ORT's transposed one
        q, scale = quantize_rows(onnx_order(weight))
        zeros = np.zeros((1, q.shape[0]), np.int8)
        return [numpy_helper.from_array(np.ascontiguousarray(q.T)[None], name),
                numpy_helper.from_array(scale[None].astype(np.float32), f"{name}_scale"),
                numpy_helper.from_array(zeros, f"{name}_zero_point")]

    initializers = quantized(p.w_ih, "W") + quantized(p.w_hh, "R") + [
        numpy_helper.from_array(np.concatenate([onnx_order(p.b_ih), onnx_order(p.b_hh)])[None], "B")]
    states = onnx_state_names(cell)
    node = helper.make_node(
        "DynamicQuantizeLSTM",
        ["X", "W", "R", "B", "", *states, "", "W_scale", "W_zero_point", "R_scale", "R_zero_point"],
        ["Y", "Y_h", "Y_c"], domain="com.microsoft", hidden_size=H)
    graph = helper.make_graph(
        [node], "fastrnn_bench_lstm_int8",
        inputs=[helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, D])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, B, H]) for name in states],
        outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, B, H]) for name in ("Y_h", "Y_c")],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = min(model.ir_version, 8)  # as peers.onnx_model: older runtimes refuse newer IR
    onnx.checker.check_model(model)
    return model


def onnxruntime_int8_runner(problem, n_threads):
    """A no-argument callable running :func:`onnx_int8_lstm_model` in ONNX Runtime, forward.

    Set up like :func:`fastrnn.benchmarks.peers.onnxruntime_runner`:
    ``intra_op_num_threads = n_threads``, one inter-op thread, sequential, idle
    spinning off.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
        An LSTM problem.
    n_threads : int

    Returns
    -------
    callable

    Raises
    ------
    ImportError
        If ``onnx`` or ``onnxruntime`` is not installed.
    """
    return onnxruntime_graph_runner(onnx_int8_lstm_model(problem), problem, n_threads)


def _onnxruntime_int8_peer(problem, pass_, n_threads):
    return onnxruntime_int8_runner(problem, n_threads)


def _openvino_default_peer(problem, pass_, n_threads):
    return openvino_runner(problem, n_threads, None)


def available_precision_peers(with_onnx=True, with_openvino=True, out=None):
    """The precision table's peers that load here, by column name; say on ``out`` which are missing.

    Parameters
    ----------
    with_onnx, with_openvino : bool
        Whether to try ONNX Runtime's int8 LSTM (``"ORT int8"``) and OpenVINO at its
        default precision (``"OV default"``).
    out : file-like, optional

    Returns
    -------
    dict of str to fastrnn.benchmarks.peers.Peer
        ``"ORT int8"`` runs LSTM rows only (:attr:`Peer.cells`); ``"OV default"``'s
        :attr:`Peer.precision` is ``"bfloat16"`` where the plugin computes in bf16 here.
    """
    def say(text):
        if out is not None:
            print(f"# {text}", file=out)

    peers = {}
    if with_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime

            peers["ORT int8"] = Peer(
                "ORT int8", _onnxruntime_int8_peer, onnx_output, precision="int8", cells=("lstm",),
                notes=(f"'ORT int8': ONNX Runtime {onnxruntime.__version__} com.microsoft."
                       f"DynamicQuantizeLSTM, weights int8 per output unit (fastrnn's quantization of "
                       f"the same weights), activations quantized per step by ORT; LSTM only",))
        except ImportError as error:
            say(f"onnxruntime not available, 'ORT int8' skipped ({error})")
    if with_openvino:
        try:
            import onnx  # noqa: F401
            import openvino

            default = openvino_default_precision()
            peers["OV default"] = Peer(
                "OV default", _openvino_default_peer, onnx_output,
                precision="float32" if default == "f32" else "bfloat16",
                notes=(f"'OV default': OpenVINO {openvino.__version__.split('-')[0]} CPU plugin at its "
                       f"default precision, here {default}",))
        except ImportError as error:
            say(f"openvino not available, 'OV default' skipped ({error})")
    for peer in peers.values():
        for note in peer.notes:
            say(note)
    return peers
