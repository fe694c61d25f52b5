"""The precision table: fastrnn's forward in float32, bf16 and int8 against the reduced-precision peers.

Every timed call is one forward pass over a whole sequence, the weights
converted once beforehand: fastrnn's ``pack_<cell>(..., precision=p)`` then
``<cell>_forward(x, packed, ..., requires_grad=False)`` for ``p`` in float32,
bf16 and int8; ONNX Runtime's ``DynamicQuantizeLSTM`` (``"ORT int8"``, LSTM
rows) and OpenVINO at its default precision (``"OV default"``,
:mod:`fastrnn.benchmarks.quantized_peers`). The ratios are those the issue's
speed targets name (:func:`fastrnn.benchmarks.targets.precision_targets`):
float32 / int8, ORT int8 / int8, OV default / bf16 and float32 / bf16, each the
median over paired rounds (:mod:`fastrnn.benchmarks.timing`).

Before a row is timed, each reduced-precision output (fastrnn's and the peers')
is compared with fastrnn's float32 output within the tolerance of its precision
(:data:`fastrnn.benchmarks.peers.PEER_TOLERANCES`); one that disagrees shows
``WRONG`` and is not timed. Each row also says whether fastrnn's bf16 and int8
outputs (and ONNX Runtime's) have the same bits at 1, 2 and 3 threads.

Where this fastrnn has no ``precision=`` (an older version), its bf16 and int8
columns show ``-``, except on the ``python`` backend, whose columns then run the
NumPy reference kernels (:mod:`fastrnn.benchmarks.reduced_forward`).
"""


import numpy as np

import fastrnn
from fastrnn.benchmarks.grid import SHAPES, make_problem
from fastrnn.benchmarks.machine import cpu_info
from fastrnn.benchmarks.peers import PEER_TOLERANCES, agreement
from fastrnn.benchmarks.reduced_forward import packed_forward
from fastrnn.benchmarks.tables import format_ms, format_table, ratio_summary_lines, target_notes, timed_rows
from fastrnn.benchmarks.targets import PRECISION_SHAPES, precision_targets
from fastrnn.benchmarks.timing import time_row
from fastrnn.exceptions import BackendUnavailableError

__all__ = ["OWN_COLUMNS", "RATIOS", "PrecisionRow", "reduced_levels", "precision_runner",
           "bench_precision_row", "run_precision"]

#: fastrnn's columns: column name -> precision.
OWN_COLUMNS = {"f32": "float32", "bf16": "bf16", "int8": "int8"}
#: The ratios of the table: name -> (numerator column, denominator column).
RATIOS = {"f32/int8": ("f32", "int8"), "ORT int8/int8": ("ORT int8", "int8"),
          "OV default/bf16": ("OV default", "bf16"), "f32/bf16": ("f32", "bf16")}
#: The keys of PEER_TOLERANCES for fastrnn's precisions.
_TOLERANCE_KEY = {"float32": "float32", "bf16": "bfloat16", "int8": "int8"}
#: Thread counts whose outputs must have the same bits.
DETERMINISM_THREADS = (1, 2, 3)


class PrecisionRow:
    """What one row of the precision table measured.

    Attributes
    ----------
    cell, shape : str
    n_threads : int
    medians : dict of str to float
        Seconds per call of each column timed.
    ratios : dict of str to float or None
        Each of :data:`RATIOS` (None where a side was not timed).
    diffs : dict of str to (bool, float)
        Each reduced-precision column's agreement with fastrnn's float32, and the
        largest difference.
    same_bits : dict of str to bool
        Each reduced-precision column's outputs at :data:`DETERMINISM_THREADS` equal bit for bit.
    targets : dict of str to float or str
        From :func:`fastrnn.benchmarks.targets.precision_targets`.
    rounds : int
    """

    def __init__(self, cell, shape, n_threads):
        self.cell, self.shape, self.n_threads = cell, shape, n_threads
        self.medians, self.ratios, self.diffs, self.same_bits, self.targets = {}, {}, {}, {}, {}
        self.rounds = 0


def reduced_levels():
    """The kernel level fastrnn's reduced precisions run at: ``{"bf16": ..., "int8": ...}``, or None.

    From ``fastrnn._cy.reduced_levels()`` (e.g. ``"emulated"`` for bf16 without
    AVX512_BF16); None without the compiled extension.
    """
    try:
        from fastrnn import _cy
    except ImportError:
        return None
    return dict(_cy.reduced_levels())


def precision_runner(problem, precision, n_threads, backend):
    """A no-argument callable running fastrnn's forward of ``problem`` in ``precision``, or None.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
    precision : {"float32", "bf16", "int8"}
    n_threads : int
    backend : str

    Returns
    -------
    callable or None
        Returns the output sequence, ndarray of shape (T, B, H), the weights packed once
        in the precision; None where ``backend`` has no kernels of that precision. Its
        attribute ``at_threads(n)`` runs the same forward at ``n`` threads.
    """
    p = problem
    weights = (p.w_ih, p.w_hh, p.b_ih, p.b_hh)
    try:
        run = packed_forward(p.cell.name, precision, weights, backend)
    except BackendUnavailableError:
        return None

    def forward_call():
        return run(p.x, *p.initial_states, n_threads=n_threads)

    forward_call.at_threads = lambda threads: run(p.x, *p.initial_states, n_threads=threads)
    return forward_call


def bench_precision_row(cell, shape, n_threads, backend, peers, args, flags):
    """Check and time one row of the precision table; return its :class:`PrecisionRow`.

    Parameters
    ----------
    cell : str
    shape : fastrnn.benchmarks.grid.Shape
    n_threads : int
    backend : str
        The fastrnn backend of the three fastrnn columns.
    peers : dict of str to fastrnn.benchmarks.peers.Peer
        From :func:`fastrnn.benchmarks.quantized_peers.available_precision_peers`.
    args : argparse.Namespace
        ``time_per_shape`` and ``repeat`` are read.
    flags : collection of str
        The CPU's flags, for the targets.
    """
    problem = make_problem(shape.name, cell)
    row = PrecisionRow(cell, shape.name, n_threads)
    row.targets = precision_targets(cell, shape.name, n_threads, flags)
    runners = {}
    for column, precision in OWN_COLUMNS.items():
        run = precision_runner(problem, precision, n_threads, backend)
        if run is not None:
            runners[column] = run
    reference = runners["f32"]()
    for column, run in list(runners.items()):
        if column == "f32":
            continue
        output = run()
        row.diffs[column] = agreement(output, reference, _TOLERANCE_KEY[OWN_COLUMNS[column]])
        row.same_bits[column] = all(np.array_equal(run.at_threads(threads), output)
                                    for threads in DETERMINISM_THREADS)
        if not row.diffs[column][0]:
            del runners[column]  # a wrong answer is not timed
    for name, peer in peers.items():
        if not peer.runs("fwd", n_threads, cell):
            continue
        run = peer(problem, "fwd", n_threads)
        output = peer.output(run())
        row.diffs[name] = agreement(output, reference, peer.precision)
        if peer.precision == "int8":  # ONNX Runtime's int8 scales follow its split of the batch
            others = [peer.output(peer(problem, "fwd", threads)()) for threads in DETERMINISM_THREADS]
            row.same_bits[name] = all(np.array_equal(other, others[0]) for other in others)
        if row.diffs[name][0]:
            runners[name] = run
    return time_row(row, runners, RATIOS, args)


def _row_cells(row, peers):
    shape = SHAPES[row.shape]
    cells = [row.cell, row.shape, f"{shape.T},{shape.B},{shape.D},{shape.H}", str(row.n_threads)]
    for column in [*OWN_COLUMNS, *peers]:
        wrong = column in row.diffs and not row.diffs[column][0]
        cells.append("WRONG" if wrong else format_ms(row.medians.get(column)))
    cells += [f"{row.ratios[name]:.2f}" if row.ratios[name] is not None else "-" for name in RATIOS]
    cells.append(", ".join(f"{name} {'yes' if same else 'NO'}" for name, same in row.same_bits.items())
                 or "-")
    cells += [", ".join(target_notes(row.ratios, row.targets)) or "-", str(row.rounds)]
    return cells


def _check_lines(rows):
    lines = []
    for column in sorted({name for row in rows for name in row.diffs}, key=str):
        checked = [row.diffs[column] for row in rows if column in row.diffs]
        wrong = sum(not ok for ok, _ in checked)
        label = f"fastrnn {column}" if column in OWN_COLUMNS else column
        lines.append(f"{label}: largest |{label} - fastrnn f32| over {len(checked)} rows "
                     f"{max(diff for _, diff in checked):.1e}"
                     + (f"; {wrong} row(s) WRONG, not timed" if wrong else ""))
    return lines


def run_precision(args, backend, peers, out):
    """Print the precision table: per cell, shape and thread count, fastrnn's three precisions and the peers.

    Parameters
    ----------
    args : argparse.Namespace
        ``cells``, ``shapes`` (or None: :data:`~fastrnn.benchmarks.targets.PRECISION_SHAPES`),
        ``threads``, ``markdown``, ``time_per_shape`` and ``repeat`` are read.
    backend : str
        The fastrnn backend timed (the fastest compiled one, say).
    peers : dict of str to fastrnn.benchmarks.peers.Peer
        From :func:`fastrnn.benchmarks.quantized_peers.available_precision_peers`.
    out : file-like

    Returns
    -------
    list of PrecisionRow
    """
    cpu = cpu_info()
    shapes = getattr(args, "precision_shapes", None) or list(PRECISION_SHAPES)
    levels = reduced_levels()
    has = {name: name in cpu.flags for name in ("avx512_bf16", "avx512_vnni", "avx_vnni", "avx2")}
    print(f"\n# precision: forward, weights converted once (fastrnn pack_<cell>(..., precision=)); "
          f"fastrnn backend {backend}; times in ms", file=out)
    print("# cpu has " + ", ".join(f"{name} {'yes' if value else 'no'}" for name, value in has.items())
          + "; fastrnn's reduced-precision kernels: "
          + (", ".join(f"{k} {v}" for k, v in levels.items()) if levels else "no level query"), file=out)
    for precision in ("bf16", "int8"):
        try:
            fastrnn.pack_rnn(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32),
                             precision=precision, backend=backend)
        except BackendUnavailableError as error:
            print(f"# fastrnn {precision} not timed ('-'): {error}", file=out)
    tolerances = ", ".join(f"{key} rtol {value['rtol']:g} atol {value['atol']:g}"
                           for key, value in PEER_TOLERANCES.items())
    print(f"# checked before timing against fastrnn's float32 output ({tolerances}); ratios = median "
          f"over paired rounds of the first time / the second (> 1: the second is faster); "
          f"same bits: outputs at {', '.join(map(str, DETERMINISM_THREADS))} threads equal bit for bit",
          file=out)
    header = ["cell", "shape", "T,B,D,H", "thr", *(f"fastrnn {name}" for name in OWN_COLUMNS), *peers,
              *RATIOS, "same bits", "target", "n"]
    rows = timed_rows("precision", args.cells, shapes, args.threads, lambda cell, name, n_threads:
                      bench_precision_row(cell, SHAPES[name], n_threads, backend, peers, args, cpu.flags))
    print(format_table(header, [_row_cells(row, peers) for row in rows], args.markdown, left_columns=4),
          file=out)
    for line in _check_lines(rows):
        print(f"# checked before timing: {line}", file=out)
    for line in ratio_summary_lines(rows, RATIOS):
        print(f"# {line}", file=out)
    out.flush()
    return rows
