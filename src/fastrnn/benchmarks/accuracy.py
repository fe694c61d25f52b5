"""The accuracy table: how far bf16 and int8 inference land from the float64 forward, by cell, T and H.

For each precision, cell, sequence length ``T`` and hidden size ``H`` (``D = H``,
batch :data:`BATCH`), one layer is drawn as PyTorch initialises it (every weight
and bias uniform in ``±1/sqrt(H)``), the input from N(0, 1), the initial state
zero, from a fixed seed. The weights are drawn in float32; the float64 forward
runs on those same values, so the error measured is the precision's alone. The
table gives the largest and the mean ``|y - y_float64|`` over every output
``y`` of shape (T, B, H).

By default the reduced-precision forward runs on the NumPy reference kernels
(:mod:`fastrnn.benchmarks.reduced_forward`), which define every rounding: the
int8 kernels equal them bit for bit and the bf16 kernels are within float32
rounding of them. Given a ``backend``, it runs through fastrnn's public API
(``precision=``) on that backend instead.

:data:`ACCURACY_BOUNDS` are the bounds the README documents;
``tests/test_accuracy_table.py`` recomputes a small table and checks them.
"""

import numpy as np

import fastrnn
from fastrnn.benchmarks.reduced_forward import packed_forward, reference_forward
from fastrnn.benchmarks.tables import format_table
from fastrnn.functional.cells import CELLS

__all__ = ["BATCH", "SEED", "LENGTHS", "HIDDEN_SIZES", "ACCURACY_CELLS", "ACCURACY_PRECISIONS",
           "ACCURACY_BOUNDS", "accuracy_problem", "output_error", "accuracy_table", "format_accuracy",
           "run_accuracy"]

#: Batch rows of every case.
BATCH = 4
#: The seed every case is drawn from (with the case's cell, T and H).
SEED = 1234
#: Sequence lengths and hidden sizes of the full table.
LENGTHS = (10, 100, 1000)
HIDDEN_SIZES = (64, 256, 1024)
ACCURACY_CELLS = ("rnn", "lstm", "gru")
ACCURACY_PRECISIONS = ("bf16", "int8")

#: What the README promises: for T up to 1000 and H up to 1024 (PyTorch's initialisation,
#: N(0, 1) inputs), the largest and the mean |y - y_float64| of every output, by precision.
#: Measured (the table of the README): bf16 at most 8.2e-3, mean at most 9.6e-4; int8 at most
#: 3.2e-2, mean at most 3.6e-3 -- the tanh RNN the worst, the LSTM the best.
ACCURACY_BOUNDS = {
    "bf16": {"max": 1.5e-2, "mean": 2e-3},
    "int8": {"max": 5e-2, "mean": 6e-3},
}


def _case_seed(cell, T, H, seed):
    return [seed, ACCURACY_CELLS.index(cell) if cell in ACCURACY_CELLS else 99, T, H]


def accuracy_problem(cell, T, H, batch=BATCH, seed=SEED):
    """The inputs and weights of one case of the accuracy table, float32.

    Parameters
    ----------
    cell : str
        ``"rnn"``, ``"lstm"`` or ``"gru"``.
    T, H : int
        Sequence length and hidden size (``D = H``).
    batch : int
    seed : int

    Returns
    -------
    dict
        ``x`` (ndarray of shape (T, B, H)), ``weights`` (``w_ih``, ``w_hh``, ``b_ih``,
        ``b_hh`` of shapes (G*H, H), (G*H, H), (G*H,), (G*H,)) and ``states`` (``h0``,
        and ``c0`` for the LSTM, zeros of shape (B, H)).
    """
    spec = CELLS[cell]
    G = spec.gates
    rng = np.random.default_rng(_case_seed(cell, T, H, seed))
    bound = 1.0 / np.sqrt(H)
    weights = tuple(rng.uniform(-bound, bound, dims).astype(np.float32)
                    for dims in ((G * H, H), (G * H, H), (G * H,), (G * H,)))
    x = rng.standard_normal((T, batch, H)).astype(np.float32)
    states = tuple(np.zeros((batch, H), np.float32) for _ in spec.initial_state_names)
    return {"x": x, "weights": weights, "states": states}


def _float64_forward(cell, problem):
    spec = CELLS[cell]
    as64 = [a.astype(np.float64) for a in (problem["x"], *problem["weights"], *problem["states"])]
    x, w_ih, w_hh, b_ih, b_hh, *states = as64
    return getattr(fastrnn, spec.forward)(x, w_ih, w_hh, b_ih, b_hh, *states, requires_grad=False)[0]


def output_error(cell, precision, T, H, batch=BATCH, seed=SEED, backend=None):
    """Largest and mean ``|y - y_float64|`` of one case.

    Parameters
    ----------
    cell : str
    precision : {"bf16", "int8", "float32"}
    T, H, batch, seed : int
        See :func:`accuracy_problem`.
    backend : str, optional
        Run the reduced-precision forward through fastrnn's API on this backend; by
        default on the NumPy reference kernels.

    Returns
    -------
    (float, float)
        The largest and the mean absolute error over the output of shape (T, B, H).

    Raises
    ------
    RuntimeError
        If ``backend`` is given and this fastrnn has no ``precision=``.
    """
    problem = accuracy_problem(cell, T, H, batch, seed)
    exact = _float64_forward(cell, problem)
    if backend is None:
        y = reference_forward(cell, precision, problem["x"], *problem["weights"], *problem["states"])
    else:
        y = packed_forward(cell, precision, problem["weights"], backend)(problem["x"], *problem["states"])
    error = np.abs(np.asarray(y, np.float64) - exact)
    return float(error.max()), float(error.mean())


def accuracy_table(precisions=ACCURACY_PRECISIONS, cells=ACCURACY_CELLS, lengths=LENGTHS,
                   hidden_sizes=HIDDEN_SIZES, batch=BATCH, seed=SEED, backend=None):
    """The accuracy table as data: one entry per precision, cell, T and H.

    Parameters
    ----------
    precisions, cells : sequence of str
    lengths, hidden_sizes : sequence of int
    batch, seed : int
    backend : str, optional
        See :func:`output_error`.

    Returns
    -------
    list of dict
        Keys ``precision``, ``cell``, ``T``, ``H``, ``max`` and ``mean`` (the largest and
        the mean ``|y - y_float64|``), in the order of the loops: precision, cell, H, T.
    """
    rows = []
    for precision in precisions:
        for cell in cells:
            for H in hidden_sizes:
                for T in lengths:
                    largest, mean = output_error(cell, precision, T, H, batch, seed, backend)
                    rows.append({"precision": precision, "cell": cell, "T": T, "H": H,
                                 "max": largest, "mean": mean})
    return rows


def format_accuracy(rows, markdown=False):
    """The table of :func:`accuracy_table`'s rows: one line per precision, cell and H, a column pair per T.

    Returns
    -------
    str
    """
    lengths = sorted({row["T"] for row in rows})
    keys = list(dict.fromkeys((row["precision"], row["cell"], row["H"]) for row in rows))
    by_key = {(row["precision"], row["cell"], row["H"], row["T"]): row for row in rows}
    header = ["precision", "cell", "H"]
    for T in lengths:
        header += [f"max T={T}", f"mean T={T}"]
    lines = []
    for precision, cell, H in keys:
        line = [precision, cell, str(H)]
        for T in lengths:
            row = by_key.get((precision, cell, H, T))
            line += [f"{row['max']:.1e}", f"{row['mean']:.1e}"] if row else ["-", "-"]
        lines.append(line)
    return format_table(header, lines, markdown, left_columns=2)


def run_accuracy(args, out, backend=None):
    """Print the accuracy table and its bounds (for ``python -m fastrnn bench --tables accuracy``).

    Parameters
    ----------
    args : argparse.Namespace
        ``cells`` and ``markdown`` are read (cells outside :data:`ACCURACY_CELLS` are left out).
    out : file-like
    backend : str, optional
        See :func:`output_error`.

    Returns
    -------
    list of dict
        :func:`accuracy_table`'s rows.
    """
    cells = [cell for cell in args.cells if cell in ACCURACY_CELLS]
    rows = accuracy_table(cells=cells, lengths=LENGTHS, hidden_sizes=HIDDEN_SIZES, backend=backend)
    where = "the NumPy reference kernels" if backend is None else f"fastrnn's {backend} backend"
    print(f"\n# accuracy: |y - y_float64| over the output (T, B={BATCH}, H), D = H, PyTorch's "
          f"initialisation U(-1/sqrt(H), 1/sqrt(H)), x ~ N(0, 1), zero initial state, seed {SEED}; "
          f"reduced precision on {where}", file=out)
    print(format_accuracy(rows, args.markdown), file=out)
    for precision, bound in ACCURACY_BOUNDS.items():
        chosen = [row for row in rows if row["precision"] == precision]
        if not chosen:
            continue
        largest = max(row["max"] for row in chosen)
        mean = max(row["mean"] for row in chosen)
        verdict = "ok" if largest <= bound["max"] and mean <= bound["mean"] else "MISS"
        print(f"# {precision}: largest |error| {largest:.1e}, largest mean {mean:.1e} (documented bounds "
              f"{bound['max']:g} and {bound['mean']:g}: {verdict})", file=out)
    out.flush()
    return rows
