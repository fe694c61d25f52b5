"""The busy table: the default thread count against ``n_threads=1`` while another process computes.

fastrnn promises that its default thread count never hurts: with one other
CPU-bound process on the machine, a call with ``n_threads=None`` may be at most
10 % slower than the same call on one thread, and on an idle machine it may not
be slower at all. This table measures both. For every backend, cell, shape and
pass it times the default, ``n_threads=1`` and ``n_threads=2`` alternately
(:func:`~fastrnn.benchmarks.timing.time_paired`), first while
:func:`competing_process` keeps one core busy, then with the machine left alone.
"""

import subprocess
import sys
from contextlib import contextmanager

import numpy as np

from fastrnn.benchmarks.backends import fastrnn_runner
from fastrnn.benchmarks.grid import PASSES, SHAPES, make_problem
from fastrnn.benchmarks.tables import format_ms, format_table
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["BUSY_SLOWDOWN_LIMIT", "competing_process", "default_threads_for", "busy_row", "run_busy"]

#: Most a call with the default thread count may take, as a multiple of the same call on one
#: thread, in either table (issue 12: 10 % with a competing process; idle it should be <= 1).
BUSY_SLOWDOWN_LIMIT = 1.10

# A pure-Python spin: one core's worth of work, no memory traffic, no threads of its own.
_SPIN = "while True: pass"


@contextmanager
def competing_process():
    """Keep one other CPU-bound process running for the duration of the block.

    The process is a second Python interpreter spinning in a loop at normal
    priority; it is killed (and waited for) when the block ends, also on error.
    """
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def default_threads_for(problem):
    """The thread count a call with ``n_threads=None`` picks for ``problem`` right now.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem

    Returns
    -------
    int
    """
    from fastrnn.functional._layer import Layer

    states = [(name, value) for name, value in zip(("h0", "c0"), problem.initial_states)]
    layer = Layer(problem.x, problem.w_ih, problem.w_hh, problem.b_ih, problem.b_hh, states,
                  spec=problem.cell, batch_first=False)
    return layer.n_threads(None)


def busy_row(cell, shape, pass_, backend, args):
    """Time one row of the busy table; return its cells (strings) and the ratio default / 1 thread."""
    problem = make_problem(shape.name, cell)
    runners = {label: fastrnn_runner(problem, backend, pass_, n)
               for label, n in (("default", None), ("1", 1), ("2", 2))}
    times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
    picked = default_threads_for(problem)
    ratio = paired_ratio(times["default"], times["1"])
    verdict = "ok" if ratio <= BUSY_SLOWDOWN_LIMIT else "MISS"
    cells = [cell, shape.name, f"{shape.T},{shape.B},{shape.D},{shape.H}", backend, PASSES[pass_],
             str(picked)]
    cells += [format_ms(float(np.median(times[label]))) for label in runners]
    cells += [f"{ratio:.2f}", f"{paired_ratio(times['2'], times['1']):.2f}", verdict,
              str(len(times["1"]))]
    return cells, ratio


def _table(args, backends, out, title):
    header = ["cell", "shape", "T,B,D,H", "backend", "pass", "default thr", "default", "1 thr",
              "2 thr", "default/1", "2/1", f"<={BUSY_SLOWDOWN_LIMIT:g}", "n"]
    rows, ratios = [], []
    for backend in backends:
        for cell in args.cells:
            for name in args.shapes:
                for pass_ in PASSES:
                    if sys.stderr.isatty():  # the table prints at the end: show progress meanwhile
                        print(f"\r\033[K# timing {title}: {backend} {cell} {name} {PASSES[pass_]} ...",
                              end="", file=sys.stderr, flush=True)
                    row, ratio = busy_row(cell, SHAPES[name], pass_, backend, args)
                    rows.append(row)
                    ratios.append(ratio)
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(format_table(header, rows, args.markdown), file=out)
    if ratios:
        print(f"# worst default/1: {max(ratios):.2f} (limit {BUSY_SLOWDOWN_LIMIT:g}); "
              f"rows over it: {sum(r > BUSY_SLOWDOWN_LIMIT for r in ratios)} of {len(ratios)}",
              file=out)
    out.flush()


def run_busy(args, backends, out):
    """Print the busy table, then the same table on the machine left idle.

    ``args`` are the parsed options of :func:`fastrnn.benchmarks.cli.add_arguments`
    (``cells``, ``shapes``, ``time_per_shape``, ``repeat``, ``markdown``).
    """
    print("\n# default thread count (n_threads=None) against n_threads=1 and 2; times are medians "
          "in ms; default/1 and 2/1 = median over paired rounds of the time ratio (< 1: faster "
          "than 1 thread); 'default thr' = the count the default picked when the row ended",
          file=out)
    print("\n## with one competing CPU-bound process (a Python busy loop at normal priority)",
          file=out)
    out.flush()
    with competing_process():
        _table(args, backends, out, "busy")
    print("\n## idle (no competing process; other users of the machine are not controlled)",
          file=out)
    out.flush()
    _table(args, backends, out, "idle")
