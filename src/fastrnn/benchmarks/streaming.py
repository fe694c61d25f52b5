"""The streaming table: the latency of one step at batch 1, fastrnn's step against the peers' cells.

Real-time use (speech, sensors) feeds one frame at a time and carries the
state: the weights do not change between calls, and what counts is the cost of
one call. Each timed call here runs a stream of
:data:`~fastrnn.benchmarks.grid.STREAMING_STEPS` steps from the same initial
state, one call per step, the state carried from call to call; a step's time is
the call's divided by the steps. Everything runs at 1 thread: a step at batch 1
is too small to split.

* fastrnn: ``packed = fastrnn.pack_lstm(w_ih, w_hh, b_ih, b_hh)`` (``pack_gru``,
  ``pack_rnn``) once, then ``y_t, state = packed.step(x_t, state)``; where the
  packed step does not exist (older versions), ``lstm_forward`` etc. on T = 1,
  which the table says;
* PyTorch: ``torch.nn.LSTMCell`` / ``GRUCell`` / ``RNNCell`` under ``torch.no_grad()``;
* ONNX Runtime: the one-node graph of :func:`fastrnn.benchmarks.peers.onnx_model`
  built for T = 1, run once per step with the previous step's final state fed back.

Before timing, each stream's final hidden state is compared with fastrnn's
forward over the whole stream.
"""

import sys

import numpy as np

import fastrnn
from fastrnn.benchmarks.grid import STREAMING_SIZES, STREAMING_STEPS, first_step, make_step_problem
from fastrnn.benchmarks.peers import agreement, onnx_model, onnx_state_names
from fastrnn.benchmarks.tables import format_table, target_note
from fastrnn.benchmarks.targets import STREAMING_TARGET
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["fastrnn_step_runner", "torch_cell_runner", "onnxruntime_step_runner",
           "available_step_peers", "run_streaming"]

def _final_h(state):
    """The hidden state of a state: ``h``, or ``h`` of the LSTM's ``(h, c)``."""
    return state[0] if isinstance(state, (tuple, list)) else state


def fastrnn_step_runner(problem):
    """A no-argument callable streaming ``problem.x`` through fastrnn one step per call.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
        From :func:`~fastrnn.benchmarks.grid.make_step_problem`.

    Returns
    -------
    run : callable
        Returns the final state: ``h`` of shape (1, H), or ``(h, c)`` for the LSTM.
    how : str
        ``"step"`` (the packed step) or ``"forward T=1"`` (no packed step in this version).
    """
    p = problem
    steps = [np.ascontiguousarray(p.x[t]) for t in range(p.shape.T)]
    initial = p.initial_states if p.cell.has_cell_state else p.h0
    pack = getattr(fastrnn, f"pack_{p.cell.name}", None)
    if pack is not None:
        packed = pack(p.w_ih, p.w_hh, p.b_ih, p.b_hh)

        def stream():
            state = initial
            for x_t in steps:
                _, state = packed.step(x_t, state)
            return state

        return stream, "step"

    forward = getattr(fastrnn, p.cell.forward)
    weights = (p.w_ih, p.w_hh, p.b_ih, p.b_hh)

    def stream_forward():
        state = tuple(p.initial_states)
        for x_t in steps:
            _, final, _ = forward(x_t[None], *weights, *state, n_threads=1, requires_grad=False)
            state = tuple(final) if p.cell.has_cell_state else (final,)
        return state if p.cell.has_cell_state else state[0]

    return stream_forward, "forward T=1"


def torch_cell_runner(problem):
    """A no-argument callable streaming ``problem.x`` through ``torch.nn.LSTMCell`` (etc.), 1 thread.

    Returns
    -------
    callable
        Returns the final state as NumPy: ``h`` of shape (1, H), or ``(h, c)``.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    """
    import torch

    p = problem
    torch.set_num_threads(1)
    cell = getattr(torch.nn, f"{p.cell.torch_name}Cell")(p.shape.D, p.shape.H)
    with torch.no_grad():
        for name, value in [("weight_ih", p.w_ih), ("weight_hh", p.w_hh), ("bias_ih", p.b_ih),
                            ("bias_hh", p.b_hh)]:
            getattr(cell, name).copy_(torch.tensor(value))
    steps = [torch.tensor(p.x[t]) for t in range(p.shape.T)]
    initial = tuple(torch.tensor(s) for s in p.initial_states)
    lstm = p.cell.has_cell_state

    def stream():
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        state = initial if lstm else initial[0]
        with torch.no_grad():
            for x_t in steps:
                state = cell(x_t, state)
        return tuple(s.numpy() for s in state) if lstm else state.numpy()

    return stream


def onnxruntime_step_runner(problem):
    """A no-argument callable streaming ``problem.x`` through ONNX Runtime's T = 1 graph, 1 thread.

    Returns
    -------
    callable
        Returns the final state: ``h`` of shape (1, H), or ``(h, c)``.

    Raises
    ------
    ImportError
        If ``onnx`` or ``onnxruntime`` is not installed.
    """
    import onnxruntime

    p = problem
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(onnx_model(first_step(p)).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    names = onnx_state_names(p.cell)
    steps = [np.ascontiguousarray(p.x[t:t + 1]) for t in range(p.shape.T)]
    initial = [np.ascontiguousarray(s[None]) for s in p.initial_states]

    def stream():
        state = initial
        for x_t in steps:
            # outputs: Y, then the final states in the order of the state inputs
            state = session.run(None, {"X": x_t, **dict(zip(names, state))})[1:]
        return (state[0][0], state[1][0]) if len(state) > 1 else state[0][0]

    return stream


def available_step_peers(with_torch=True, with_onnx=True, out=None):
    """The streaming table's peers that import here, name -> builder; the others are skipped with a note."""
    def say(name, error):
        if out is not None:
            print(f"# streaming: {name} not available, skipped ({error})", file=out)

    peers = {}
    if with_torch:
        try:
            import torch  # noqa: F401

            peers["torch"] = torch_cell_runner
        except ImportError as error:
            say("torch", error)
    if with_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            peers["ORT"] = onnxruntime_step_runner
        except ImportError as error:
            say("onnxruntime", error)
    return peers


def _format_us(seconds):
    """Microseconds with three significant digits."""
    us = seconds * 1e6
    return f"{us:.0f}" if us >= 100 else f"{us:.1f}" if us >= 10 else f"{us:.2f}"


def run_streaming(args, peers, out):
    """Print the streaming table: per-step latency at B = 1 for each cell and ``STREAMING_SIZES``.

    Parameters
    ----------
    args : argparse.Namespace
        ``cells``, ``markdown``, ``time_per_shape`` and ``repeat`` are read.
    peers : dict of str to callable
        From :func:`available_step_peers`.
    out : file-like

    Returns
    -------
    list of dict
        One per row: ``cell``, ``H``, ``us`` (seconds per step by implementation), ``ratios``, ``how``.
    """
    header = ["cell", "H", "fastrnn us", *(f"{name} us" for name in peers),
              *(f"{name}/fastrnn" for name in peers), "step", "target", "n"]
    rows, table = [], []
    for cell in args.cells:
        for H in STREAMING_SIZES:
            if sys.stderr.isatty():
                print(f"\r\033[K# timing streaming {cell} H={H} ...", end="", file=sys.stderr, flush=True)
            problem = make_step_problem(H, cell)
            own, how = fastrnn_step_runner(problem)
            p = problem
            _, final, _ = getattr(fastrnn, p.cell.forward)(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh,
                                                           *p.initial_states, n_threads=1,
                                                           requires_grad=False)
            expected = _final_h(final)
            runners, wrong = {}, []
            for name, build in {"fastrnn": None, **peers}.items():
                run = own if build is None else build(problem)
                ok, diff = agreement(_final_h(run()), expected)
                if not ok:
                    wrong.append(f"{name} (|diff| {diff:.1e})")
                if ok or build is None:  # fastrnn is timed regardless: every ratio needs it
                    runners[name] = run
            times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
            per_step = {name: float(np.median(t)) / STREAMING_STEPS for name, t in times.items()}
            ratios = {name: paired_ratio(times[name], times["fastrnn"]) if name in times else None
                      for name in peers}
            notes = [target_note(ratios[name], STREAMING_TARGET, name) for name in peers]
            if wrong:
                notes.append("WRONG: " + ", ".join(wrong))
            rows.append({"cell": cell, "H": H, "us": per_step, "ratios": ratios, "how": how})
            table.append([cell, str(H),
                          _format_us(per_step["fastrnn"]),
                          *(_format_us(per_step[name]) if name in per_step else "-" for name in peers),
                          *(f"{ratios[name]:.2f}" if ratios[name] is not None else "-" for name in peers),
                          how, ", ".join(n for n in notes if n) or "-", str(len(times["fastrnn"]))])
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(f"\n# streaming: one step at B=1, D=H, float32, 1 thread; us per step = median call over "
          f"{STREAMING_STEPS} steps / {STREAMING_STEPS}; final states checked against fastrnn's "
          f"forward before timing", file=out)
    if any(row["how"] != "step" for row in rows):
        print("# 'forward T=1': this fastrnn has no packed step (fastrnn.pack_<cell>), so each step "
              "is a forward call on T=1 that packs the weights again", file=out)
    print(format_table(header, table, args.markdown, left_columns=2), file=out)
    out.flush()
    return rows
