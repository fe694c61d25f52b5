"""The peers fastrnn is compared with: PyTorch's modules and ONNX Runtime's operators, same weights.

PyTorch, ``onnx`` and ONNX Runtime are imported only when a runner is built.
"""

import numpy as np

__all__ = ["torch_runner", "onnx_state_names", "onnx_model", "onnxruntime_runner", "available_peers"]


def torch_runner(problem, pass_, n_threads):
    """A no-argument callable running one pass of ``problem``'s cell in PyTorch, with its weights.

    The module is ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (:attr:`CellSpec.torch_name`).

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
    pass_ : {"fwd", "fwdbwd"}
    n_threads : int
        Passed to ``torch.set_num_threads`` now and before every call (the
        setting is process-wide, and other runners may change it).

    Returns
    -------
    callable

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    """
    import torch

    p = problem
    torch.set_num_threads(n_threads)
    rnn = getattr(torch.nn, p.cell.torch_name)(p.shape.D, p.shape.H)
    with torch.no_grad():
        for name, value in [("weight_ih_l0", p.w_ih), ("weight_hh_l0", p.w_hh),
                            ("bias_ih_l0", p.b_ih), ("bias_hh_l0", p.b_hh)]:
            getattr(rnn, name).copy_(torch.tensor(value))
    x = torch.tensor(p.x)
    states = [torch.tensor(state)[None] for state in p.initial_states]
    # torch.nn.LSTM takes and returns the pair (h, c); RNN and GRU, h alone
    hidden = tuple(states) if p.cell.has_cell_state else states[0]

    def set_threads():
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)

    if pass_ == "fwd":

        def forward():
            set_threads()
            with torch.no_grad():
                return rnn(x, hidden)

        return forward

    # fastrnn returns the gradients of the input, the initial state(s) and the
    # weights, so torch is asked for the same ones
    for leaf in [x, *states]:
        leaf.requires_grad_(True)
    upstream = [torch.tensor(p.dy), *(torch.tensor(g)[None] for g in p.final_state_grads)]
    leaves = [x, *states, *rnn.parameters()]

    def forward_backward():
        set_threads()
        for leaf in leaves:  # fresh gradients, as fastrnn returns, rather than accumulating
            leaf.grad = None
        y, final = rnn(x, hidden)
        finals = list(final) if p.cell.has_cell_state else [final]
        torch.autograd.backward([y, *finals], upstream)
        return [leaf.grad for leaf in leaves]

    return forward_backward


def onnx_state_names(cell):
    """The ONNX model's inputs for the initial states, in the order of :attr:`Problem.initial_states`."""
    return ["initial_h", "initial_c"] if cell.has_cell_state else ["initial_h"]


def onnx_model(problem):
    """A one-node ONNX model computing ``problem``'s layer with the ``RNN``, ``LSTM`` or ``GRU`` operator.

    Inputs ``X`` [T, B, D], ``initial_h`` [1, B, H] and, for the LSTM,
    ``initial_c`` [1, B, H]; weights as initializers in ONNX's layout, the gate
    blocks reordered by :meth:`CellSpec.blocks` (``"onnx"``): ``W`` [1, G*H, D],
    ``R`` [1, G*H, H], ``B`` [1, 2*G*H] = [Wb, Rb].

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    p = problem
    cell = p.cell
    T, B, D, H = p.shape.T, p.shape.B, p.shape.D, p.shape.H

    def onnx_order(array):
        return np.concatenate([array[k * H:(k + 1) * H] for k in cell.blocks("onnx")])

    initializers = [
        numpy_helper.from_array(onnx_order(p.w_ih)[None], "W"),
        numpy_helper.from_array(onnx_order(p.w_hh)[None], "R"),
        numpy_helper.from_array(
            np.concatenate([onnx_order(p.b_ih), onnx_order(p.b_hh)])[None], "B"),
    ]
    states = onnx_state_names(cell)
    finals = ["Y_h", "Y_c"] if cell.has_cell_state else ["Y_h"]
    node = helper.make_node(cell.onnx_name, ["X", "W", "R", "B", "", *states], ["Y", *finals],
                            hidden_size=H, **dict(cell.onnx_attributes))
    graph = helper.make_graph(
        [node], f"fastrnn_bench_{cell.name}",
        inputs=[helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, D])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, B, H]) for name in states],
        outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, B, H]) for name in finals],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    # a recent onnx writes an IR version older runtimes refuse; opset 14 needs only IR 7
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def onnxruntime_runner(problem, n_threads):
    """A no-argument callable running ONNX Runtime's operator for ``problem``'s cell, forward.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
    n_threads : int
        ``intra_op_num_threads``; ``inter_op_num_threads`` is 1.

    Returns
    -------
    callable

    Raises
    ------
    ImportError
        If ``onnx`` or ``onnxruntime`` is not installed.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # no warnings about unused initializers and the like
    session = onnxruntime.InferenceSession(
        onnx_model(problem).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {"X": problem.x}
    for name, state in zip(onnx_state_names(problem.cell), problem.initial_states):
        feeds[name] = state[None]

    def forward():
        return session.run(None, feeds)

    return forward


def _onnxruntime_peer(problem, pass_, n_threads):
    """:func:`onnxruntime_runner` with the signature of :func:`torch_runner` (forward only)."""
    return onnxruntime_runner(problem, n_threads)


def available_peers(with_torch=True, with_onnx=True, out=None):
    """The peers that import here, as name -> runner builder; say on ``out`` which ones are missing.

    Parameters
    ----------
    with_torch, with_onnx : bool
        Whether to try PyTorch (``"torch"``) and ONNX Runtime (``"ORT"``).
    out : file-like, optional
        Where to report a missing peer; nowhere by default.

    Returns
    -------
    dict of str to callable
        Each builder takes ``(problem, pass_, n_threads)``; ``"ORT"`` times forward only.
    """
    peers = {}
    if with_torch:
        try:
            import torch  # noqa: F401

            peers["torch"] = torch_runner
        except ImportError as error:
            if out is not None:
                print(f"# torch not available, skipped ({error})", file=out)
    if with_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            peers["ORT"] = _onnxruntime_peer
        except ImportError as error:
            if out is not None:
                print(f"# onnxruntime not available, skipped ({error})", file=out)
    return peers
