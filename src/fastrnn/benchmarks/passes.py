"""The cells' table: one forward and one forward+backward pass of each cell, every backend against the peers.

Every timed call is one pass of one cell over a whole sequence, float32:

* ``"fwd"``: forward only (fastrnn with ``requires_grad=False``, PyTorch under
  ``torch.no_grad()``, ONNX Runtime, OpenVINO, JAX);
* ``"fwdbwd"``: forward and backpropagation through time, with gradients for the
  input, the initial state(s) and every parameter (the work ``rnn_backward``,
  ``lstm_backward`` and ``gru_backward`` do); PyTorch only.

Before a forward row is timed, each peer's output sequence is compared with
fastrnn's (:func:`fastrnn.benchmarks.peers.agreement`); a peer that disagrees is
not timed in that row. After the table come the median over rows of the
fastest peer's ratio and, for the large shapes, fastrnn's GFLOP/s against the
single-thread sgemm peak. On a shared machine a peak measured once, at the
start, may have met a busier moment than the rows (fastrnn then seemed to run
above it), so the large rows time one sgemm as one more runner of their paired
rounds, and the fraction of the peak is the median over rounds of fastrnn's
rate over the sgemm's in the same round.
"""

import sys

import numpy as np

from fastrnn.benchmarks.backends import fastrnn_runner
from fastrnn.benchmarks.grid import CELLS, PASSES, SHAPES, make_problem
from fastrnn.benchmarks.machine import forward_flops, sgemm_runner
from fastrnn.benchmarks.peers import PEER_TOLERANCES, agreement
from fastrnn.benchmarks.tables import format_ms, format_table, target_note
from fastrnn.benchmarks.targets import (BEST_PEER_MEDIAN_TARGET, LARGE_SHAPES, PEER_TARGETS,
                                        SGEMM_PEAK_TARGET)
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["Row", "is_large_row", "bench_row", "run_cells", "best_peer_summary", "efficiency_table"]


class Row:
    """What one row measured, for the table and the summaries after it.

    Attributes
    ----------
    cell, shape, pass_ : str
    n_threads : int
    medians : dict of str to float
        Seconds per call of each backend and peer timed.
    ratios : dict of str to float or None
        ``peer time / best fastrnn backend time`` per peer (None: not timed in this row).
    best : str
        The fastest fastrnn backend.
    best_peer : str or None
        The targeted peer with the smallest ratio (the fastest), if any ran.
    diffs : dict of str to (bool, float)
        Each checked peer's agreement with fastrnn and largest difference.
    rounds : int
    sgemm_gflops, peak_fraction : float or None
        Large forward rows at 1 thread only: the single-thread sgemm's rate in the
        same rounds (median), and the median over rounds of fastrnn's rate over it.
    """

    def __init__(self, cell, shape, pass_, n_threads):
        self.cell, self.shape, self.pass_, self.n_threads = cell, shape, pass_, n_threads
        self.medians, self.ratios, self.diffs = {}, {}, {}
        self.best = self.best_peer = None
        self.rounds = 0
        self.sgemm_gflops = self.peak_fraction = None

    @property
    def best_peer_ratio(self):
        return self.ratios[self.best_peer] if self.best_peer else None


def bench_row(cell, shape, pass_, n_threads, backends, peers, args):
    """Check and time one row; return its :class:`Row`."""
    problem = make_problem(shape.name, cell)
    row = Row(cell, shape.name, pass_, n_threads)
    runners = {name: fastrnn_runner(problem, name, pass_, n_threads) for name in backends}
    reference = runners[backends[0]]()[0] if pass_ == "fwd" else None
    for name, peer in peers.items():
        if not peer.runs(pass_, n_threads):
            continue
        run = peer(problem, pass_, n_threads)
        if reference is not None:
            row.diffs[name] = agreement(peer.output(run()), reference, peer.precision)
            if not row.diffs[name][0]:
                continue  # a wrong answer is not timed
        runners[name] = run
    sgemm = None
    if is_large_row(row):
        sgemm = runners["sgemm"] = sgemm_runner()
    times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
    row.medians = {name: float(np.median(t)) for name, t in times.items() if name != "sgemm"}
    row.best = min(backends, key=row.medians.__getitem__)
    if sgemm is not None:
        flops = forward_flops(problem.cell, shape)
        row.sgemm_gflops = float(np.median(sgemm.flops / times["sgemm"])) / 1e9
        row.peak_fraction = float(np.median((flops / times[row.best]) / (sgemm.flops / times["sgemm"])))
    row.rounds = len(times[row.best])
    row.ratios = {name: paired_ratio(times[name], times[row.best]) if name in times else None
                  for name in peers}
    timed = [name for name in peers if peers[name].targeted and row.ratios[name] is not None]
    row.best_peer = min(timed, key=row.ratios.__getitem__) if timed else None
    return row


def is_large_row(row):
    """Whether ``row`` carries the sgemm-peak target: forward, 1 thread, a large shape and cell."""
    return ((row.pass_, row.n_threads) == ("fwd", 1) and row.shape in LARGE_SHAPES["shapes"]
            and row.cell in LARGE_SHAPES["cells"])


def _row_cells(row, backends, peers):
    shape = SHAPES[row.shape]
    key = (row.pass_, row.n_threads)
    notes = [target_note(row.ratios.get(name), PEER_TARGETS[name][row.cell].get(key, {}).get(row.shape),
                         name)
             for name in peers if name in PEER_TARGETS]
    cells = [row.cell, row.shape, f"{shape.T},{shape.B},{shape.D},{shape.H}", str(row.n_threads),
             PASSES[row.pass_]]
    cells += [format_ms(row.medians[name]) for name in backends]
    for name in peers:
        wrong = name in row.diffs and not row.diffs[name][0]
        cells.append("WRONG" if wrong else format_ms(row.medians.get(name)))
    cells += [f"{row.ratios[name]:.2f}" if row.ratios[name] is not None else "-" for name in peers]
    cells += [row.best_peer or "-",
              f"{row.best_peer_ratio:.2f}" if row.best_peer else "-",
              row.best, ", ".join(n for n in notes if n) or "-", str(row.rounds)]
    return cells


def best_peer_summary(rows):
    """Lines: per pass and thread count, the median over rows of the fastest peer's ratio.

    Only forward rows carry :data:`BEST_PEER_MEDIAN_TARGET`; forward+backward
    rows (PyTorch only) are summarised without one.
    """
    lines = []
    for pass_ in PASSES:
        for n_threads in sorted({row.n_threads for row in rows}):
            values = [row.best_peer_ratio for row in rows
                      if row.pass_ == pass_ and row.n_threads == n_threads and row.best_peer]
            if not values:
                continue
            median = float(np.median(values))
            line = (f"{PASSES[pass_]}, {n_threads} thread(s): median over {len(values)} rows of "
                    f"fastest peer time / fastrnn time = {median:.2f}, lowest {min(values):.2f}")
            if pass_ == "fwd":
                verdict = "ok" if median >= BEST_PEER_MEDIAN_TARGET else "MISS"
                line += f" (target median >= {BEST_PEER_MEDIAN_TARGET:g}: {verdict})"
            lines.append(line)
    return lines


def efficiency_table(rows, markdown):
    """fastrnn's GFLOP/s on the large shapes against the sgemm timed in the same rounds; None without such rows.

    Uses the forward rows at 1 thread of :data:`LARGE_SHAPES` (those with
    :attr:`Row.peak_fraction`); the flops are the two products only
    (:func:`fastrnn.benchmarks.machine.forward_flops`).
    """
    header = ["cell", "shape", "GFLOP", "fastrnn ms", "fastrnn GFLOP/s", "sgemm GFLOP/s", "of peak",
              "best peer", "peer GFLOP/s", "target"]
    lines = []
    for row in rows:
        if row.peak_fraction is None:
            continue
        flops = forward_flops(CELLS[row.cell], SHAPES[row.shape])
        own = flops / row.medians[row.best] / 1e9
        fraction = row.peak_fraction
        peer = row.best_peer
        lines.append([row.cell, row.shape, f"{flops / 1e9:.1f}", format_ms(row.medians[row.best]),
                      f"{own:.1f}", f"{row.sgemm_gflops:.1f}", f"{fraction:.0%}", peer or "-",
                      f"{flops / row.medians[peer] / 1e9:.1f}" if peer else "-",
                      f">={SGEMM_PEAK_TARGET:.0%} {'ok' if fraction >= SGEMM_PEAK_TARGET else 'MISS'}"])
    if not lines:
        return None
    return format_table(header, lines, markdown, left_columns=2)


def _agreement_lines(rows, peers):
    lines = []
    for name, peer in peers.items():
        checked = [row.diffs[name] for row in rows if name in row.diffs]
        if not checked:
            continue
        wrong = sum(not ok for ok, _ in checked)
        tolerance = PEER_TOLERANCES[peer.precision]
        lines.append(f"{name}: largest |peer - fastrnn| over {len(checked)} rows "
                     f"{max(diff for _, diff in checked):.1e} ({peer.precision} tolerance rtol "
                     f"{tolerance['rtol']:g}, atol {tolerance['atol']:g})"
                     + (f"; {wrong} row(s) WRONG, not timed" if wrong else ""))
    return lines


def run_cells(args, backends, peers, out, peak=None):
    """Print the table of the cells: every backend and peer, per cell, shape, thread count and pass.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options of :func:`fastrnn.benchmarks.cli.add_arguments`.
    backends : list of str
    peers : dict of str to fastrnn.benchmarks.peers.Peer
        From :func:`fastrnn.benchmarks.peers.available_peers`.
    out : file-like
    peak : float, optional
        The sgemm peak measured at the start of the run (GFLOP/s), quoted above
        the large shapes' table (whose fractions use the sgemm timed in their rounds).

    Returns
    -------
    list of Row
    """
    passes = getattr(args, "passes", None) or list(PASSES)
    header = ["cell", "shape", "T,B,D,H", "thr", "pass", *backends, *peers,
              *(f"{name}/fastrnn" for name in peers), "best peer", "best peer/fastrnn", "best",
              "target", "n"]
    rows = []
    for cell in args.cells:
        for name in args.shapes:
            for n_threads in args.threads:
                for pass_ in passes:
                    if sys.stderr.isatty():  # the table prints at the end: show progress meanwhile
                        print(f"\r\033[K# timing {cell} {name}, {n_threads} thread(s), "
                              f"{PASSES[pass_]} ...", end="", file=sys.stderr, flush=True)
                    rows.append(bench_row(cell, SHAPES[name], pass_, n_threads, backends, peers, args))
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(format_table(header, [_row_cells(row, backends, peers) for row in rows], args.markdown),
          file=out)
    for line in _agreement_lines(rows, peers):
        print(f"# checked before timing: {line}", file=out)
    for line in best_peer_summary(rows):
        print(f"# {line}", file=out)
    table = efficiency_table(rows, args.markdown)
    if table is not None:
        start = f"; {peak:.1f} GFLOP/s at the start of the run" if peak is not None else ""
        print(f"\n# large shapes, forward, 1 thread: GFLOP/s of the two products; of peak = median over "
              f"rounds of fastrnn's rate / the single-thread sgemm's (n=2048) timed in the same "
              f"rounds{start}", file=out)
        print(table, file=out)
    out.flush()
    return rows
