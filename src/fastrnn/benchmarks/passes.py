"""The cells' table: one forward and one forward+backward pass of each cell, every backend against the peers.

Every timed call is one pass of one cell over a whole sequence, float32:

* ``"fwd"``: forward only (fastrnn with ``requires_grad=False``, PyTorch under
  ``torch.no_grad()``, ONNX Runtime);
* ``"fwdbwd"``: forward and backpropagation through time, with gradients for the
  input, the initial state(s) and every parameter (the work ``rnn_backward``,
  ``lstm_backward`` and ``gru_backward`` do).
"""

import sys

import numpy as np

from fastrnn.benchmarks.backends import fastrnn_runner
from fastrnn.benchmarks.grid import PASSES, SHAPES, make_problem
from fastrnn.benchmarks.tables import format_ms, format_table, target_note
from fastrnn.benchmarks.targets import ORT_TARGETS, TARGETS
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["bench_row", "run_cells"]


def bench_row(cell, shape, pass_, n_threads, backends, peers, args):
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
    notes = [target_note(ratios.get(peer), targets[cell].get(key, {}).get(shape.name), peer)
             for peer, targets in (("torch", TARGETS), ("ORT", ORT_TARGETS))]
    cells = [cell, shape.name, f"{shape.T},{shape.B},{shape.D},{shape.H}", str(n_threads),
             PASSES[pass_]]
    cells += [format_ms(medians[name]) for name in backends]
    cells += [format_ms(medians.get(peer)) for peer in peers]
    cells += [f"{ratios[peer]:.2f}" if ratios[peer] is not None else "-" for peer in peers]
    cells += [best, ", ".join(n for n in notes if n) or "-", str(len(times[best]))]
    return cells


def run_cells(args, backends, peers, out):
    """Print the table of the cells: every backend and peer, per cell, shape, thread count and pass.

    ``args`` are the parsed options of :func:`fastrnn.benchmarks.cli.add_arguments`; ``peers`` come
    from :func:`fastrnn.benchmarks.peers.available_peers`.
    """
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
                    rows.append(bench_row(cell, SHAPES[name], pass_, n_threads, backends, peers,
                                           args))
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()
