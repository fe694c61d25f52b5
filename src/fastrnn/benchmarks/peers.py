"""The peers fastrnn is compared with, all given the same weights.

PyTorch's modules, ONNX Runtime's and OpenVINO's operators (both compile the
same one-node ONNX graph) and JAX (:mod:`fastrnn.benchmarks.jax_peer`). Each is
imported only when its runner is built; :func:`available_peers` says which ones
load here and skips the others with a note. Before a peer is timed its output
is compared with fastrnn's (:func:`agreement`, :data:`PEER_TOLERANCES`).
"""

from dataclasses import dataclass, field

import numpy as np

from fastrnn.benchmarks import jax_peer

__all__ = ["PEER_TOLERANCES", "agreement", "Peer", "torch_runner", "onnx_state_names", "onnx_model",
           "onnx_output", "onnxruntime_runner", "onnxruntime_graph_runner", "openvino_runner", "openvino_default_precision", "available_peers"]

#: How far a peer's output may be from fastrnn's, by the precision the peer computes in:
#: ``|peer - fastrnn| <= atol * max(1, max |fastrnn|) + rtol * |fastrnn|`` elementwise.
#: float32: the parity tolerance of the test suite (summation order, ~5 ulp tanh); bfloat16
#: (OpenVINO's default precision on CPUs with AVX512_BF16) keeps 8 bits of mantissa, so its
#: products are good to about 1e-2; int8 (ONNX Runtime's DynamicQuantizeLSTM, fastrnn's int8)
#: quantizes weights and activations to 8 bits: outputs within about 3e-2 of float32 (measured at
#: T up to 1000, H up to 1024; see fastrnn.benchmarks.accuracy).
PEER_TOLERANCES = {
    "float32": dict(rtol=2e-4, atol=2e-5),
    "bfloat16": dict(rtol=2e-2, atol=2e-2),
    "int8": dict(rtol=5e-2, atol=5e-2),
}


def agreement(actual, expected, precision="float32"):
    """Whether a peer's output agrees with fastrnn's, and the largest difference.

    Parameters
    ----------
    actual, expected : ndarray of shape (T, B, H)
        The peer's and fastrnn's output sequences.
    precision : {"float32", "bfloat16", "int8"}
        Selects the tolerance in :data:`PEER_TOLERANCES`.

    Returns
    -------
    ok : bool
    max_abs_diff : float
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return False, float("inf")
    tolerance = PEER_TOLERANCES[precision]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    diff = np.abs(actual - expected)
    ok = bool(np.all(diff <= tolerance["atol"] * scale + tolerance["rtol"] * np.abs(expected)))
    return ok, float(np.max(diff, initial=0.0))


@dataclass(frozen=True)
class Peer:
    """One peer: how to build its runner and how to read its output.

    Attributes
    ----------
    name : str
        Its column in the tables, e.g. ``"OV f32"``.
    build : callable
        ``build(problem, pass_, n_threads)`` -> a no-argument callable running one pass.
    output : callable
        Maps what a forward call returned to the output sequence, ndarray of shape (T, B, H).
    passes : tuple of str
        The passes it can time: ``("fwd",)`` or ``("fwd", "fwdbwd")``.
    precision : str
        A key of :data:`PEER_TOLERANCES`.
    targeted : bool
        Whether its ratios count for the targets (and the best peer of a row).
    threads : int or None
        A thread count fixed for the whole process (JAX), or None when it follows each row's.
    cells : tuple of str or None
        The cells it runs (ONNX Runtime's int8 operator: ``("lstm",)``); None for all.
    notes : tuple of str
        Lines for the report's header.
    """

    name: str
    build: object
    output: object
    passes: tuple = ("fwd",)
    precision: str = "float32"
    targeted: bool = True
    threads: int = None
    cells: tuple = None
    notes: tuple = field(default=())

    def __call__(self, problem, pass_, n_threads):
        return self.build(problem, pass_, n_threads)

    def runs(self, pass_, n_threads, cell=None):
        """Whether this peer has a column entry in a row of ``pass_`` at ``n_threads`` (of ``cell``)."""
        return (pass_ in self.passes and (self.threads is None or self.threads == n_threads)
                and (cell is None or self.cells is None or cell in self.cells))


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

    from fastrnn.onnx.layout import onnx_recurrent_weights

    p = problem
    cell = p.cell
    T, B, D, H = p.shape.T, p.shape.B, p.shape.D, p.shape.H

    # one layout for the benchmarks and the exporter
    weights = onnx_recurrent_weights(cell, [{"w_ih": p.w_ih, "w_hh": p.w_hh, "b_ih": p.b_ih, "b_hh": p.b_hh}],
                                     dtype=p.w_ih.dtype)
    initializers = [numpy_helper.from_array(array, name) for array, name in zip(weights, "WRB")]
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
    return onnxruntime_graph_runner(onnx_model(problem), problem, n_threads)


def onnxruntime_graph_runner(model, problem, n_threads):
    """A no-argument callable running the ONNX graph ``model`` on ``problem``'s input and
    initial states with ONNX Runtime's CPU provider (``intra_op_num_threads = n_threads``).

    Parameters
    ----------
    model : onnx.ModelProto
        A graph with inputs ``X`` and the cell's initial states (``onnx_state_names``).
    problem : fastrnn.benchmarks.grid.Problem
    n_threads : int

    Returns
    -------
    callable
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # no warnings about unused initializers and the like
    # ORT's idle workers spin for tens of milliseconds after a run and take a core from
    # whatever runs next (measured, LSTM S4, 2 threads: fastrnn 11.9 ms after ORT, 6.5 ms
    # with spinning off); ORT itself is as fast without (6.16 vs 6.16 ms alone)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    feeds = {"X": problem.x}
    for name, state in zip(onnx_state_names(problem.cell), problem.initial_states):
        feeds[name] = state[None]

    def forward():
        return session.run(None, feeds)

    return forward


#: OpenVINO's runtime, made once: building a ``Core`` scans the plugins.
_OPENVINO_CORE = []


def _openvino_core():
    import openvino

    if not _OPENVINO_CORE:
        _OPENVINO_CORE.append(openvino.Core())
    return _OPENVINO_CORE[0]


def openvino_default_precision():
    """The precision OpenVINO's CPU plugin computes float32 models in when not told (a string).

    ``"bf16"`` on CPUs with AVX512_BF16 or AMX, ``"f32"`` elsewhere.
    """
    return _openvino_core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def openvino_runner(problem, n_threads, precision="f32"):
    """A no-argument callable running OpenVINO's CPU plugin on :func:`onnx_model`'s graph, forward.

    Compiled with ``INFERENCE_NUM_THREADS = n_threads``, ``PERFORMANCE_HINT =
    LATENCY`` and one stream (one request at a time, as every runner here is
    called); inputs are shared with the request rather than copied, outputs
    are the request's own buffers (valid until the next call).

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
    n_threads : int
    precision : str or None
        ``INFERENCE_PRECISION_HINT``: ``"f32"``, or None for the plugin's default
        (:func:`openvino_default_precision`).

    Returns
    -------
    callable
        Its attribute ``precision`` says which precision the compiled model runs in.

    Raises
    ------
    ImportError
        If ``onnx`` or ``openvino`` is not installed.
    """
    core = _openvino_core()
    model = core.read_model(onnx_model(problem).SerializeToString(), b"")
    config = {"INFERENCE_NUM_THREADS": n_threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feeds = {"X": problem.x}
    for name, state in zip(onnx_state_names(problem.cell), problem.initial_states):
        feeds[name] = np.ascontiguousarray(state[None])

    def forward():
        return request.infer(feeds, share_inputs=True, share_outputs=True)

    forward.precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return forward


def _onnxruntime_peer(problem, pass_, n_threads):
    """:func:`onnxruntime_runner` with the signature of :func:`torch_runner` (forward only)."""
    return onnxruntime_runner(problem, n_threads)


def _openvino_f32_peer(problem, pass_, n_threads):
    return openvino_runner(problem, n_threads, "f32")


def _openvino_default_peer(problem, pass_, n_threads):
    return openvino_runner(problem, n_threads, None)


def _jax_peer(problem, pass_, n_threads):
    return jax_peer.jax_runner(problem, n_threads)


def _torch_output(result):
    return result[0].numpy()


def onnx_output(result):
    """The output sequence of an ONNX recurrent operator's run, ndarray of shape (T, B, H).

    ``Y``, the first output, is (T, num_directions, B, H); the one direction is taken.
    """
    return np.asarray(result[0])[:, 0]


def _jax_output(result):
    return np.asarray(result[0])


def available_peers(with_torch=True, with_onnx=True, with_openvino=True, with_jax=True,
                    jax_threads=1, out=None):
    """The peers that import here, by column name; say on ``out`` which ones are missing.

    Parameters
    ----------
    with_torch, with_onnx, with_openvino, with_jax : bool
        Whether to try PyTorch (``"torch"``), ONNX Runtime (``"ORT"``), OpenVINO
        (``"OV f32"`` and ``"OV default"``) and JAX (``"JAX"``).
    jax_threads : int
        Threads for XLA's CPU client, which are fixed for the process
        (:func:`fastrnn.benchmarks.jax_peer.configure_jax`); JAX is timed only in
        rows of this thread count.
    out : file-like, optional
        Where to report a missing peer, and what each peer was set to; nowhere by default.

    Returns
    -------
    dict of str to Peer
        Only ``"torch"`` times forward+backward; ``"OV default"`` is shown but
        not targeted (it may compute in bfloat16).
    """
    def say(text):
        if out is not None:
            print(f"# {text}", file=out)

    peers = {}
    if with_torch:
        try:
            import torch  # noqa: F401

            peers["torch"] = Peer("torch", torch_runner, _torch_output, passes=("fwd", "fwdbwd"))
        except ImportError as error:
            say(f"torch not available, skipped ({error})")
    if with_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            peers["ORT"] = Peer("ORT", _onnxruntime_peer, onnx_output)
        except ImportError as error:
            say(f"onnxruntime not available, skipped ({error})")
    if with_openvino:
        try:
            import onnx  # noqa: F401
            import openvino  # noqa: F401

            default = openvino_default_precision()
            notes = (f"OpenVINO {openvino.__version__.split('-')[0]}: the ONNX graph ORT runs, CPU plugin, "
                     f"INFERENCE_NUM_THREADS = thread count, PERFORMANCE_HINT=LATENCY, 1 stream; "
                     f"'OV f32': INFERENCE_PRECISION_HINT=f32; 'OV default': the plugin's default "
                     f"precision, here {default} (not targeted)",)
            peers["OV f32"] = Peer("OV f32", _openvino_f32_peer, onnx_output, notes=notes)
            peers["OV default"] = Peer("OV default", _openvino_default_peer, onnx_output,
                                       precision="float32" if default == "f32" else "bfloat16",
                                       targeted=False)
        except ImportError as error:
            say(f"openvino not available, skipped ({error})")
    if with_jax:
        try:
            threads, how = jax_peer.configure_jax(jax_threads)
            peers["JAX"] = Peer("JAX", _jax_peer, _jax_output, threads=threads,
                                notes=(f"JAX {jax_peer.jax_version()}: cells written out, "
                                       f"jax.lax.scan under jax.jit, CPU; {how}",))
        except ImportError as error:
            say(f"jax not available, skipped ({error})")
    for peer in peers.values():
        for note in peer.notes:
            say(note)
    return peers
