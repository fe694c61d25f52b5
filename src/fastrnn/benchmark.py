"""Speed of fastrnn against PyTorch and ONNX Runtime: the shape grid, the peers and the timing loop.

This module is what ``python -m fastrnn bench`` runs, and what the
pytest-benchmark suite in ``bench/`` imports its grid and builders from, so both
time exactly the same work. It needs nothing beyond fastrnn itself; PyTorch and
ONNX Runtime are imported only when a peer is built, and a missing one is
reported rather than fatal.

Three cells are timed (:data:`CELLS`): the Elman RNN, the LSTM and the GRU,
each against ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` and ONNX Runtime's operator of
the same name. Every timed call is one pass of one cell over a whole sequence,
float32:

* ``"fwd"``: forward only (fastrnn with ``requires_grad=False``, PyTorch under
  ``torch.no_grad()``, ONNX Runtime);
* ``"fwdbwd"``: forward and backpropagation through time, with gradients for the
  input, the initial state(s) and every parameter (the work ``rnn_backward``,
  ``lstm_backward`` and ``gru_backward`` do).

The machine these numbers come from is noisy (±30 % between runs), so a speed
claim is a ratio measured in one process: the command-line runner warms every
implementation up (compiling its JIT kernels), then alternates them round after
round and reports medians, and the ratio is the median of the per-round ratios.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

import fastrnn
from fastrnn import _backends
from fastrnn.exceptions import BackendUnavailableError

__all__ = [
    "Shape",
    "SHAPES",
    "Cell",
    "CELLS",
    "PASSES",
    "TARGETS",
    "ORT_TARGETS",
    "Problem",
    "make_problem",
    "COMPILED_BACKENDS",
    "compiled_backends",
    "check_backend",
    "fastrnn_runner",
    "torch_runner",
    "onnxruntime_runner",
    "time_paired",
    "add_arguments",
    "run",
    "main",
]


@dataclass(frozen=True)
class Shape:
    """One point of the benchmark grid.

    Attributes
    ----------
    name : str
        ``"S1"`` ... ``"S5"``; the name benchmark ids and ``--shapes`` use.
    T, B, D, H : int
        Sequence length, batch, input features, hidden units.
    note : str
        What the shape stands for.
    """

    name: str
    T: int
    B: int
    D: int
    H: int
    note: str

    def __str__(self):
        return f"{self.name} (T={self.T}, B={self.B}, D={self.D}, H={self.H})"


#: The grid, smallest problem first (dict order is the order of the tables).
SHAPES = {
    shape.name: shape
    for shape in [
        Shape("S1", 500, 32, 32, 32, "the seeds' Keras model"),
        Shape("S3", 1000, 1, 64, 64, "streaming, batch 1"),
        Shape("S4", 100, 32, 128, 128, "medium"),
        Shape("S2", 100, 64, 512, 512, "PyTorch's fastrnns default"),
        Shape("S5", 50, 16, 512, 1024, "large hidden"),
    ]
}

@dataclass(frozen=True)
class Cell:
    """A recurrent cell as fastrnn, PyTorch and ONNX each spell it.

    Attributes
    ----------
    name : str
        ``"rnn"``, ``"lstm"`` or ``"gru"``; the name benchmark ids and ``--cells`` use.
    gates : int
        Gate blocks stacked in the weights, in PyTorch's layout: ``w_ih`` is
        ``(gates * H, D)``.
    has_cell_state : bool
        Whether the cell carries a cell state ``c`` besides ``h`` (the LSTM).
    forward, backward : str
        The names of fastrnn's functions, e.g. ``"lstm_forward"``.
    torch_module : str
        The ``torch.nn`` class, e.g. ``"LSTM"``.
    onnx_op : str
        The ONNX operator, e.g. ``"LSTM"``.
    onnx_blocks : tuple of int
        PyTorch's gate blocks in ONNX's gate order (LSTM: i,f,g,o to i,o,f,c;
        GRU: r,z,n to z,r,h).
    onnx_attributes : dict
        Extra attributes of the ONNX node.
    """

    name: str
    gates: int
    has_cell_state: bool
    forward: str
    backward: str
    torch_module: str
    onnx_op: str
    onnx_blocks: tuple
    onnx_attributes: dict = field(default_factory=dict)


#: The cells, in the order of the tables.
CELLS = {
    cell.name: cell
    for cell in [
        Cell("rnn", 1, False, "rnn_forward", "rnn_backward", "RNN", "RNN", (0,)),
        Cell("lstm", 4, True, "lstm_forward", "lstm_backward", "LSTM", "LSTM", (0, 3, 1, 2)),
        # PyTorch's GRU applies the reset gate after the recurrent product
        Cell("gru", 3, False, "gru_forward", "gru_backward", "GRU", "GRU", (1, 0, 2),
             {"linear_before_reset": 1}),
    ]
}

#: Passes and how tables print them.
PASSES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}

_AT_2_THREADS = {("fwd", 2): dict.fromkeys(SHAPES, 1.0), ("fwdbwd", 2): dict.fromkeys(SHAPES, 1.0)}

#: Speed targets: minimum ``torch time / fastrnn time`` (best compiled backend,
#: float32), keyed by cell name, then ``(pass, n_threads)``, then shape name.
TARGETS = {
    "rnn": {
        ("fwd", 1): {"S1": 3.0, "S3": 5.0, "S4": 1.3, "S2": 1.1, "S5": 1.0},
        ("fwdbwd", 1): {"S1": 5.0, "S3": 20.0, "S4": 1.5, "S2": 1.2, "S5": 1.3},
        **_AT_2_THREADS,
    },
    "lstm": {
        ("fwd", 1): {"S1": 2.0, "S3": 3.0, "S4": 1.2, "S2": 1.0, "S5": 1.0},
        ("fwdbwd", 1): {"S1": 2.0, "S3": 3.0, "S4": 1.3, "S2": 1.0, "S5": 1.0},
        **_AT_2_THREADS,
    },
    "gru": {
        ("fwd", 1): {"S1": 3.0, "S3": 8.0, "S4": 2.0, "S2": 1.2, "S5": 1.2},
        ("fwdbwd", 1): {"S1": 5.0, "S3": 20.0, "S4": 2.0, "S2": 1.5, "S5": 1.5},
        **_AT_2_THREADS,
    },
}

_ORT_GATED = {("fwd", 1): {"S1": 1.5, "S3": 2.0, "S4": 1.2, "S2": 1.0, "S5": 1.0},
              ("fwd", 2): dict.fromkeys(SHAPES, 1.0)}

#: Minimum ``ONNX Runtime time / fastrnn time`` (forward only), keyed like :data:`TARGETS`.
ORT_TARGETS = {"rnn": {("fwd", 1): {"S3": 2.0}}, "lstm": _ORT_GATED, "gru": _ORT_GATED}

#: Limits of the import-time and first-call targets, in seconds.
IMPORT_TARGET_S = 0.3
FIRST_CALL_TARGET_S = 1.5


# --------------------------------------------------------------------------- problems


@dataclass
class Problem:
    """Inputs, weights and upstream gradients for one cell and shape, in PyTorch's layout.

    ``G`` below is the number of gate blocks, :attr:`Cell.gates`.

    Attributes
    ----------
    cell : Cell
    shape : Shape
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G*H, D)
    w_hh : ndarray of shape (G*H, H)
    b_ih, b_hh : ndarray of shape (G*H,)
    h0 : ndarray of shape (B, H)
    dy : ndarray of shape (T, B, H)
        Gradient of the loss with respect to the output sequence.
    dh_n : ndarray of shape (B, H)
        Gradient of the loss with respect to the final state.
    c0, dc_n : ndarray of shape (B, H) or None
        Initial cell state and the gradient of the final one: LSTM only.
    """

    cell: Cell
    shape: Shape
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    h0: np.ndarray
    dy: np.ndarray
    dh_n: np.ndarray
    c0: np.ndarray = None
    dc_n: np.ndarray = None

    @property
    def initial_states(self):
        """``(h0,)``, or ``(h0, c0)`` for the LSTM: the state arguments, in fastrnn's order."""
        return (self.h0, self.c0) if self.cell.has_cell_state else (self.h0,)

    @property
    def final_state_grads(self):
        """``(dh_n,)``, or ``(dh_n, dc_n)`` for the LSTM, as the backward functions take them."""
        return (self.dh_n, self.dc_n) if self.cell.has_cell_state else (self.dh_n,)


@lru_cache(maxsize=None)
def make_problem(name, cell="rnn", seed=0):
    """Build the float32 inputs and weights of shape ``name`` for ``cell``.

    Weights are drawn like ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` initialise
    them (uniform in ``±1/sqrt(H)``), so activations stay in the working range
    of tanh and the sigmoid; every peer is then given these same arrays.

    Parameters
    ----------
    name : str
        A key of :data:`SHAPES`.
    cell : str
        A key of :data:`CELLS`.
    seed : int

    Returns
    -------
    Problem
        Cached: the arrays are shared between calls and must not be modified.
    """
    shape = SHAPES[name]
    cell = CELLS[cell]
    T, B, D, H = shape.T, shape.B, shape.D, shape.H
    G = cell.gates
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)

    def uniform(*dims, scale=bound):
        return rng.uniform(-scale, scale, dims).astype(np.float32)

    problem = Problem(
        cell=cell,
        shape=shape,
        x=rng.standard_normal((T, B, D)).astype(np.float32),
        w_ih=uniform(G * H, D),
        w_hh=uniform(G * H, H),
        b_ih=uniform(G * H),
        b_hh=uniform(G * H),
        h0=uniform(B, H, scale=0.5),
        dy=rng.standard_normal((T, B, H)).astype(np.float32),
        dh_n=rng.standard_normal((B, H)).astype(np.float32),
    )
    if cell.has_cell_state:
        problem.c0 = uniform(B, H, scale=0.5)
        problem.dc_n = rng.standard_normal((B, H)).astype(np.float32)
    for array in vars(problem).values():
        if isinstance(array, np.ndarray):
            array.flags.writeable = False
    return problem


# --------------------------------------------------------------------------- implementations


#: Every compiled backend fastrnn knows, loadable here or not, fastest first.
COMPILED_BACKENDS = tuple(name for name in _backends.BACKENDS if name != "python")


def compiled_backends():
    """The backends that load here, fastest first, without the slow ``"python"`` reference.

    Returns
    -------
    list of str
    """
    return [name for name in fastrnn.available_backends() if name != "python"]


def check_backend(name):
    """Raise :class:`fastrnn.BackendUnavailableError` (saying why) unless ``name`` loads."""
    _backends.resolve(name)


def fastrnn_runner(problem, backend, pass_, n_threads):
    """A no-argument callable running one pass of fastrnn's functions for ``problem``'s cell.

    Parameters
    ----------
    problem : Problem
    backend : str
        A backend name, e.g. ``"numba"``.
    pass_ : {"fwd", "fwdbwd"}
    n_threads : int

    Returns
    -------
    callable
    """
    p = problem
    cell_forward = getattr(fastrnn, p.cell.forward)
    cell_backward = getattr(fastrnn, p.cell.backward)
    args = (p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, *p.initial_states)
    if pass_ == "fwd":

        def forward():
            return cell_forward(*args, backend=backend, n_threads=n_threads, requires_grad=False)

        return forward

    def forward_backward():
        *_, cache = cell_forward(*args, backend=backend, n_threads=n_threads)
        return cell_backward(cache, p.dy, *p.final_state_grads)

    return forward_backward


def torch_runner(problem, pass_, n_threads):
    """A no-argument callable running one pass of ``problem``'s cell in PyTorch, with its weights.

    The module is ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (:attr:`Cell.torch_module`).

    Parameters
    ----------
    problem : Problem
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
    rnn = getattr(torch.nn, p.cell.torch_module)(p.shape.D, p.shape.H)
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


def _onnx_state_names(cell):
    """The ONNX model's inputs for the initial states, in the order of :attr:`Problem.initial_states`."""
    return ["initial_h", "initial_c"] if cell.has_cell_state else ["initial_h"]


def onnx_model(problem):
    """A one-node ONNX model computing ``problem``'s layer with the ``RNN``, ``LSTM`` or ``GRU`` operator.

    Inputs ``X`` [T, B, D], ``initial_h`` [1, B, H] and, for the LSTM,
    ``initial_c`` [1, B, H]; weights as initializers in ONNX's layout, the gate
    blocks reordered by :attr:`Cell.onnx_blocks`: ``W`` [1, G*H, D],
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
        return np.concatenate([array[k * H:(k + 1) * H] for k in cell.onnx_blocks])

    initializers = [
        numpy_helper.from_array(onnx_order(p.w_ih)[None], "W"),
        numpy_helper.from_array(onnx_order(p.w_hh)[None], "R"),
        numpy_helper.from_array(
            np.concatenate([onnx_order(p.b_ih), onnx_order(p.b_hh)])[None], "B"),
    ]
    states = _onnx_state_names(cell)
    finals = ["Y_h", "Y_c"] if cell.has_cell_state else ["Y_h"]
    node = helper.make_node(cell.onnx_op, ["X", "W", "R", "B", "", *states], ["Y", *finals],
                            hidden_size=H, **cell.onnx_attributes)
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
    problem : Problem
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
    for name, state in zip(_onnx_state_names(problem.cell), problem.initial_states):
        feeds[name] = state[None]

    def forward():
        return session.run(None, feeds)

    return forward


# --------------------------------------------------------------------------- timing


def time_paired(runners, *, time_budget=1.5, rounds=None, min_rounds=5, max_rounds=500):
    """Time several implementations of the same work, alternating them round after round.

    Each runner is first called twice (the first call compiles JIT kernels and
    fills caches; the second estimates its cost). Then, in every round, each
    runner is called once, in an order rotated from round to round, so slow
    drifts of the machine hit all of them alike. Each timed call follows an
    untimed one of the same runner: after a call, the thread pools of OpenMP,
    MKL and ONNX Runtime keep spinning for a while, and on a machine with few
    cores they would otherwise slow down whichever implementation runs next
    (measured: fastrnn's S5 forward on 2 threads took 96 ms right after torch,
    40 ms on its own).

    Parameters
    ----------
    runners : dict of str to callable
        No-argument callables doing the same work.
    time_budget : float
        Seconds the timed rounds should take in all; sets the number of rounds
        when ``rounds`` is not given.
    rounds : int, optional
        Exact number of timed rounds.
    min_rounds, max_rounds : int
        Bounds on the number of rounds chosen from ``time_budget``.

    Returns
    -------
    dict of str to ndarray of shape (rounds,)
        Seconds per call, round by round (index ``i`` of every runner is round ``i``).
    """
    names = list(runners)
    round_cost = 0.0
    for name in names:
        runners[name]()
        start = time.perf_counter()
        runners[name]()
        round_cost += time.perf_counter() - start
    if rounds is None:
        rounds = int(np.clip(time_budget / max(2 * round_cost, 1e-9), min_rounds, max_rounds))
    times = {name: np.empty(rounds) for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            runners[name]()  # settle: the previous runner's threads go idle meanwhile
            start = time.perf_counter()
            runners[name]()
            times[name][i] = time.perf_counter() - start
    return times


def paired_ratio(peer_times, own_times):
    """Median over rounds of ``peer / own``: the speed-up, robust to drifts of the machine."""
    return float(np.median(np.asarray(peer_times) / np.asarray(own_times)))


# --------------------------------------------------------------------------- start-up cost

_FIRST_CALL_SCRIPT = """\
import time
start = time.perf_counter()
import numpy as np
import fastrnn
rng = np.random.default_rng(0)
T, B, D, H = {T}, {B}, {D}, {H}
x = rng.standard_normal((T, B, D)).astype(np.float32)
w_ih = (0.1 * rng.standard_normal((H, D))).astype(np.float32)
w_hh = (0.1 * rng.standard_normal((H, H))).astype(np.float32)
y, h_n, cache = fastrnn.rnn_forward(x, w_ih, w_hh)
fastrnn.rnn_backward(cache, np.ones_like(y))
print(cache.backend, time.perf_counter() - start)
"""


def _subprocess_env():
    """The environment for child interpreters: they must import this very fastrnn."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _run_python(code):
    """Run ``code`` in a new interpreter; return (wall seconds, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=_subprocess_env(),
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def startup_times(repeat=5, shape="S1"):
    """Wall time of new processes: bare interpreter, ``import fastrnn``, one forward+backward.

    Parameters
    ----------
    repeat : int
        Runs of the two import measurements (the median is kept).
    shape : str
        Shape of the forward+backward run.

    Returns
    -------
    dict
        ``"python"``, ``"import"``: median seconds of ``python -c pass`` and
        ``python -c "import fastrnn"``; ``"first_call"``: list of two
        (seconds, backend) for the forward+backward process, run twice so the
        second finds the Numba cache warm whatever the first found.
    """
    bare = statistics.median(_run_python("pass")[0] for _ in range(repeat))
    imported = statistics.median(_run_python("import fastrnn")[0] for _ in range(repeat))
    s = SHAPES[shape]
    script = _FIRST_CALL_SCRIPT.format(T=s.T, B=s.B, D=s.D, H=s.H)
    first_call = []
    for _ in range(2):
        wall, out = _run_python(script)
        first_call.append((wall, out.split()[0]))
    return {"python": bare, "import": imported, "first_call": first_call}


# VmHWM (the peak resident set of this process image), not getrusage's ru_maxrss,
# which Linux carries over from the parent across fork and exec.
_PEAK_MEMORY_SCRIPT = """\
def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from fastrnn import benchmark
problem = benchmark.make_problem({shape!r}, {cell!r})
if {who!r} == "torch":
    run = benchmark.torch_runner(problem, "fwdbwd", 1)
else:
    run = benchmark.fastrnn_runner(problem, {who!r}, "fwdbwd", 1)
before = peak_kib()
run()
print(before, peak_kib())
"""


def peak_memory(implementations, cell="lstm", shape="S2"):
    """Peak resident memory of one forward+backward, each implementation in a new process.

    Each child builds the problem and its runner, reads its peak resident
    set (``VmHWM`` of ``/proc/self/status``, so Linux only), runs one
    forward+backward and reads it again; the difference is what the pass
    itself added on top of the inputs, weights and imported libraries.

    Parameters
    ----------
    implementations : list of str
        fastrnn backend names and/or ``"torch"``.
    cell, shape : str

    Returns
    -------
    dict of str to (float, float)
        Peak RSS of the whole process and the part added by the pass, in MiB.
    """
    result = {}
    for who in implementations:
        _, out = _run_python(_PEAK_MEMORY_SCRIPT.format(cell=cell, shape=shape, who=who))
        before, after = (int(v) / 1024 for v in out.split()[-2:])  # KiB
        result[who] = (after, after - before)
    return result


# --------------------------------------------------------------------------- report


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _format_ms(seconds):
    """Milliseconds with three significant digits, without exponent notation."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if ms >= limit:
            return f"{ms:.{digits}f}"
    return f"{ms:.3f}"


def _format_table(header, rows, markdown):
    """Rows of cells as aligned plain text, or as Markdown; numbers are right-aligned."""
    left = [i < 5 or name in ("best", "target") for i, name in enumerate(header)]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if is_left else "---:" for is_left in left) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    fmt = "  ".join(f"{{:{'<' if is_left else '>'}{w}}}" for is_left, w in zip(left, widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


def _target_note(value, target, label):
    if target is None or value is None:
        return None
    return f"{label}>={target:g} {'ok' if value >= target else 'MISS'}"


def _bench_row(cell, shape, pass_, n_threads, backends, peers, args):
    """Time one table row; return its cells."""
    problem = make_problem(shape.name, cell)
    runners = {name: fastrnn_runner(problem, name, pass_, n_threads) for name in backends}
    for peer, build in peers.items():
        if peer == "ORT" and pass_ != "fwd":
            continue
        runners[peer] = build(problem, pass_, n_threads)
    times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    best = min(backends, key=medians.__getitem__)
    ratios = {peer: paired_ratio(times[peer], times[best]) if peer in times else None
              for peer in peers}
    key = (pass_, n_threads)
    notes = [_target_note(ratios.get(peer), targets[cell].get(key, {}).get(shape.name), peer)
             for peer, targets in (("torch", TARGETS), ("ORT", ORT_TARGETS))]
    cells = [cell, shape.name, f"{shape.T},{shape.B},{shape.D},{shape.H}", str(n_threads),
             PASSES[pass_]]
    cells += [_format_ms(medians[name]) for name in backends]
    cells += [_format_ms(medians.get(peer)) for peer in peers]
    cells += [f"{ratios[peer]:.2f}" if ratios[peer] is not None else "-" for peer in peers]
    cells += [best, ", ".join(n for n in notes if n) or "-", str(len(times[best]))]
    return cells


def _peers(args, out):
    """The peers to compare with, as name -> runner builder; say which ones are missing."""
    peers = {}
    if not args.no_torch:
        try:
            import torch  # noqa: F401

            peers["torch"] = torch_runner
        except ImportError as error:
            print(f"# torch not available, skipped ({error})", file=out)
    if not args.no_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            peers["ORT"] = lambda problem, pass_, n_threads: onnxruntime_runner(problem, n_threads)
        except ImportError as error:
            print(f"# onnxruntime not available, skipped ({error})", file=out)
    return peers


def _parse_list(text, kind=str):
    return [kind(item.strip()) for item in text.split(",") if item.strip()]


def add_arguments(parser):
    """Add the options of ``python -m fastrnn bench`` to an :class:`argparse.ArgumentParser`."""
    grid = "; ".join(f"{s.name}=(T={s.T}, B={s.B}, D={s.D}, H={s.H}) {s.note}" for s in SHAPES.values())
    parser.add_argument("--cells", type=lambda t: _parse_list(t.lower()), default=list(CELLS),
                        metavar="rnn,lstm", help=f"comma-separated cells to run (default: all: "
                                                 f"{','.join(CELLS)})")
    parser.add_argument("--shapes", type=lambda t: _parse_list(t.upper()), default=list(SHAPES),
                        metavar="S1,S3", help=f"comma-separated shapes to run (default: all). {grid}")
    parser.add_argument("--threads", type=lambda t: _parse_list(t, int), default=[1, 2],
                        metavar="1,2", help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--backends", type=_parse_list, default=None, metavar="numba,cython",
                        help="comma-separated fastrnn backends (default: every available compiled "
                             "backend; 'python' only when named)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="timed rounds per row (default: chosen from --time-per-shape)")
    budget.add_argument("--time-per-shape", type=float, default=1.5, metavar="SECONDS",
                        help="seconds of timed rounds for each cell, shape, thread count and pass; the "
                             "number of rounds follows (at least 5) (default: 1.5)")
    parser.add_argument("--no-torch", action="store_true",
                        help="do not compare with torch.nn.RNN / LSTM / GRU")
    parser.add_argument("--no-onnx", action="store_true",
                        help="do not compare with ONNX Runtime's RNN / LSTM / GRU operators")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the new-process measurements (import time, first call)")
    parser.add_argument("--tables", type=_parse_list, default=["cells", "training", "fit"],
                        metavar="cells,training,fit",
                        help="which tables to print: 'cells' (each cell's forward and forward+"
                             "backward), 'training' (a whole training step of 2-layer "
                             "bidirectional LSTM and GRU, with Adam, and what variable lengths "
                             "cost) and 'fit' (one fastrnn.keras fit epoch of the seeds' "
                             "Embedding-SimpleRNN-Dense model against Keras and PyTorch) "
                             "(default: all)")
    parser.add_argument("--no-keras", action="store_true",
                        help="do not compare with Keras on TensorFlow in the 'fit' table")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak memory of an LSTM forward+backward on S2 in new "
                             "processes, fastrnn against torch")
    return parser


def _run_cells(args, backends, peers, out):
    """Print the table of the cells: every backend and peer, per cell, shape, thread count and pass."""
    header = ["cell", "shape", "T,B,D,H", "thr", "pass", *backends, *peers,
              *(f"{peer}/fastrnn" for peer in peers), "best", "target", "n"]
    rows = []
    for cell in args.cells:
        for name in args.shapes:
            for n_threads in args.threads:
                for pass_ in PASSES:
                    if sys.stderr.isatty():  # the table prints at the end: show progress meanwhile
                        print(f"\r\033[K# timing {cell} {name}, {n_threads} thread(s), "
                              f"{PASSES[pass_]} ...", end="", file=sys.stderr, flush=True)
                    rows.append(_bench_row(cell, SHAPES[name], pass_, n_threads, backends, peers,
                                           args))
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(_format_table(header, rows, args.markdown), file=out)
    out.flush()


def run(args, out=None):
    """Run the benchmarks described by parsed ``args`` and print the report.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser given :func:`add_arguments`.
    out : file-like, optional
        Where to print; standard output by default.

    Returns
    -------
    int
        Exit status: 0, or 2 for an unknown cell or shape, or an unavailable backend.
    """
    out = out or sys.stdout
    for what, names, known in (("cell", args.cells, CELLS), ("shape", args.shapes, SHAPES),
                               ("table", args.tables, ("cells", "training", "fit"))):
        unknown = [name for name in names if name not in known]
        if unknown:
            print(f"error: unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}",
                  file=sys.stderr)
            return 2
    backends = args.backends if args.backends is not None else compiled_backends()
    try:
        for name in backends:
            check_backend(name)
    except (BackendUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not backends:
        print("error: no compiled backend is available; try --backends python", file=sys.stderr)
        return 2
    if any(n < 1 for n in args.threads):
        print("error: --threads must be positive integers", file=sys.stderr)
        return 2

    print(f"# fastrnn {fastrnn.__version__} benchmark, float32, times are medians in ms", file=out)
    print(f"# cpu: {_cpu_name()} ({os.cpu_count()} logical cores); Python "
          f"{platform.python_version()}", file=out)
    print("# " + ", ".join(f"{pkg} {_version(pkg)}"
                           for pkg in ("numpy", "scipy", "numba", "torch", "onnxruntime")), file=out)
    print(f"# backends: {', '.join(backends)} (available: {', '.join(fastrnn.available_backends())}); "
          f"threads: {', '.join(map(str, args.threads))} (fastrnn n_threads, "
          f"torch.set_num_threads, ORT intra_op_num_threads)", file=out)
    peers = _peers(args, out)
    print("# ratios = median over paired rounds of peer time / best fastrnn backend time "
          "(> 1: fastrnn faster); n = rounds", file=out)
    out.flush()

    if "cells" in args.tables:
        _run_cells(args, backends, peers, out)
    if "training" in args.tables:
        from fastrnn.benchmark_training import run_training

        run_training(args, out, with_torch="torch" in peers)
    if "fit" in args.tables:
        from fastrnn.benchmark_training import run_fit

        fit_peers = [peer for peer in peers if peer == "torch"]
        if not args.no_keras:
            try:
                import tensorflow  # noqa: F401

                fit_peers.append("keras")
            except ImportError as error:
                print(f"# tensorflow not available, Keras skipped ({error})", file=out)
        run_fit(args, out, fit_peers)

    if args.memory:
        implementations = backends + (["torch"] if "torch" in peers else [])
        memory = peak_memory(implementations)
        print("\n# peak RSS of one LSTM forward+backward on S2, float32, 1 thread, each in a new "
              "process (MiB): whole process / added by the pass", file=out)
        for who, (total, added) in memory.items():
            print(f"{who}: {total:.0f} / {added:.0f}", file=out)

    if not args.no_startup:
        startup = startup_times()
        (cold, backend), (warm, _) = startup["first_call"]
        print(f"\n# new process (wall time; bare `python -c pass`: {startup['python']:.3f} s)", file=out)
        verdict = "ok" if startup["import"] < IMPORT_TARGET_S else "MISS"
        print(f"python -c 'import fastrnn': {startup['import']:.3f} s "
              f"(target < {IMPORT_TARGET_S} s: {verdict})", file=out)
        verdict = "ok" if warm < FIRST_CALL_TARGET_S else "MISS"
        print(f"import + one forward+backward on S1 ({backend}): "
              f"first run {cold:.3f} s, second run (warm caches) {warm:.3f} s "
              f"(target < {FIRST_CALL_TARGET_S} s: {verdict})", file=out)
    return 0


def main(argv=None):
    """Entry point of ``python -m fastrnn.benchmark``; ``python -m fastrnn bench`` is the same.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m fastrnn bench",
        description=__doc__.split("\n\n")[0] + " Prints a table of medians and ratios.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
