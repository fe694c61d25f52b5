"""The bf16 training table: one training step in fastrnn's bf16 against its float32 and PyTorch's autocast.

One step is what :mod:`fastrnn.benchmarks.training` times (forward, MSE loss,
backward, Adam update) on a 1-layer unidirectional LSTM or GRU at the
reduced-precision shapes (:data:`~fastrnn.benchmarks.targets.PRECISION_SHAPES`).
Four implementations start from the same weights, input and target:

- ``fastrnn f32``: ``fastrnn.nn.LSTM/GRU`` in float32;
- ``fastrnn bf16``: the same module with ``precision="bf16"`` (mixed precision:
  every product of the forward and backward passes with bf16 operands and
  float32 sums; master weights, Adam's state, states and gate math float32);
- ``torch f32``: ``torch.nn.LSTM/GRU`` in float32;
- ``torch autocast``: the same module's forward under
  ``torch.autocast("cpu", dtype=torch.bfloat16)``, the loss computed in float32
  on ``output.float()``.

Before timing, the first step's loss of each (all on the initial weights) is
compared with fastrnn's float32 one (:data:`LOSS_RTOL`); one that disagrees
shows ``WRONG`` and is not timed. The ratios are medians over paired rounds
(:func:`fastrnn.benchmarks.timing.time_paired`), the targets
:func:`fastrnn.benchmarks.targets.bf16_training_targets`.
"""

import warnings


from fastrnn.benchmarks.grid import SHAPES
from fastrnn.benchmarks.machine import cpu_info
from fastrnn.benchmarks.precision import reduced_levels
from fastrnn.benchmarks.tables import format_ms, format_table, ratio_summary_lines, target_notes, timed_rows
from fastrnn.benchmarks.targets import PRECISION_SHAPES, bf16_training_targets
from fastrnn.benchmarks.timing import time_row
from fastrnn.benchmarks.training import (TRAINING_MODELS, fastrnn_training_step, torch_training_step,
                                         training_problem)
from fastrnn.exceptions import FastRNNError

__all__ = ["COLUMNS", "RATIOS", "LOSS_RTOL", "Bf16TrainingRow", "bf16_backward_backend",
           "bench_bf16_training_row", "run_bf16_training"]

#: The timed columns: runner name -> column title.
COLUMNS = {"f32": "fastrnn f32", "bf16": "fastrnn bf16", "torch": "torch f32", "autocast": "torch autocast"}
#: The ratios of the table: name -> (numerator runner, denominator runner); the first two are targeted.
RATIOS = {"f32/bf16": ("f32", "bf16"), "autocast/bf16": ("autocast", "bf16"),
          "torch/f32": ("torch", "f32")}
#: Largest relative difference of a first-step loss from fastrnn float32's: the loss is a mean
#: over T*B*H squared errors of about 1, which bf16 products move by about 1e-3.
LOSS_RTOL = 1e-2


class Bf16TrainingRow:
    """What one row of the bf16 training table measured.

    Attributes
    ----------
    cell, shape : str
    n_threads : int
    medians : dict of str to float
        Seconds per step of each runner timed (keys of :data:`COLUMNS`).
    ratios : dict of str to float or None
        Each of :data:`RATIOS` (None where a side was not timed).
    losses : dict of str to float
        Each runner's first-step loss (on the initial weights).
    wrong : set of str
        Runners whose first-step loss disagreed with fastrnn float32's (not timed).
    skipped : dict of str to str
        Runners not timed for another reason -> the reason.
    autocast_dtype : str or None
        The dtype of the torch module's output under autocast.
    targets : dict of str to float or str
    rounds : int
    """

    def __init__(self, cell, shape, n_threads):
        self.cell, self.shape, self.n_threads = cell, shape, n_threads
        self.medians, self.ratios, self.losses, self.skipped, self.targets = {}, {}, {}, {}, {}
        self.wrong = set()
        self.autocast_dtype = None
        self.rounds = 0


def bf16_backward_backend(cell, backend):
    """The backend whose kernel runs the bf16 backward of ``cell`` when ``backend`` is asked for.

    Returns
    -------
    str or None
        ``backend``'s resolved name where it has ``<cell>_backward_reduced``, ``"python"``
        where only the NumPy reference has it, None where no backend does.
    """
    from fastrnn import _backends

    kernel = f"{cell}_backward_reduced"
    name, module = _backends.resolve(backend)
    if hasattr(module, kernel):
        return name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return _backends.resolve("python", kernel=kernel)[0]
    except FastRNNError:
        return None


def _runners(problem, n_threads, backend, with_torch, row):
    """The row's step callables, all built before any of them runs (same initial weights)."""
    f32, module = fastrnn_training_step(problem, n_threads, backend)
    initial = module.state_dict()
    runners = {"f32": f32}
    try:
        runners["bf16"], _ = fastrnn_training_step(problem, n_threads, backend, precision="bf16")
    except (FastRNNError, TypeError) as error:  # a fastrnn without bf16 modules
        row.skipped["bf16"] = f"{type(error).__name__}: {error}"
    if with_torch:
        runners["torch"] = torch_training_step(problem, n_threads, initial)
        runners["autocast"] = torch_training_step(problem, n_threads, initial, autocast=True)
    return runners


def bench_bf16_training_row(cell, shape, n_threads, backend, with_torch, args, flags):
    """Check and time one row of the bf16 training table; return its :class:`Bf16TrainingRow`.

    Parameters
    ----------
    cell : {"lstm", "gru"}
    shape : fastrnn.benchmarks.grid.Shape
    n_threads : int
    backend : str
        The fastrnn backend of both fastrnn columns.
    with_torch : bool
        Time the two torch columns.
    args : argparse.Namespace
        ``time_per_shape`` and ``repeat`` are read.
    flags : collection of str
        The CPU's flags, for the targets.
    """
    row = Bf16TrainingRow(cell, shape.name, n_threads)
    row.targets = bf16_training_targets(flags)
    problem = training_problem(cell, shape, num_layers=1, bidirectional=False)
    runners = _runners(problem, n_threads, backend, with_torch, row)
    if "bf16" in runners:
        resolved = bf16_backward_backend(cell, backend)
        if resolved != backend:  # the reference's products take minutes at these shapes
            row.skipped["bf16"] = (f"the {backend} backend has no bf16 backward kernel "
                                   f"({cell}_backward_reduced)")
            del runners["bf16"]
    for name, run in list(runners.items()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the fallback warning: noted above
                row.losses[name] = float(run())
        except FastRNNError as error:  # e.g. bf16 modules that do not train yet
            row.skipped[name] = f"{type(error).__name__}: {error}"
            del runners[name]
    if "autocast" in runners:
        row.autocast_dtype = str(runners["autocast"].output_dtype).replace("torch.", "")
    reference = row.losses["f32"]
    for name in list(runners):
        if abs(row.losses[name] - reference) > LOSS_RTOL * abs(reference):
            row.wrong.add(name)
            del runners[name]  # a wrong answer is not timed
    if "f32" not in runners:
        return row
    return time_row(row, runners, RATIOS, args)


def _row_cells(row, columns):
    shape = SHAPES.get(row.shape)
    size = f"{shape.T},{shape.B},{shape.D},{shape.H}" if shape is not None else "-"
    cells = [f"1-layer {TRAINING_MODELS[row.cell]}", row.shape, size, str(row.n_threads)]
    cells += ["WRONG" if name in row.wrong else format_ms(row.medians.get(name)) for name in columns]
    cells += [f"{row.ratios[name]:.2f}" if row.ratios.get(name) is not None else "-" for name in RATIOS]
    cells += [", ".join(target_notes(row.ratios, row.targets)) or "-", str(row.rounds)]
    return cells


def _check_lines(rows):
    lines = []
    for name in ("bf16", "torch", "autocast"):
        checked = [row for row in rows if name in row.losses]
        if not checked:
            continue
        largest = max(abs(row.losses[name] - row.losses["f32"]) / abs(row.losses["f32"]) for row in checked)
        wrong = sum(name in row.wrong for row in checked)
        lines.append(f"{COLUMNS[name]}: first-step loss within {largest:.1e} (relative) of fastrnn f32's "
                     f"over {len(checked)} rows" + (f"; {wrong} row(s) WRONG, not timed" if wrong else ""))
    for row in rows:
        for name, reason in row.skipped.items():
            lines.append(f"{COLUMNS[name]} not timed ('-') in {row.cell} {row.shape}, {row.n_threads} "
                         f"thread(s): {reason}")
    return lines


def _autocast_line(rows):
    dtypes = {}
    for row in rows:
        if row.autocast_dtype is not None:
            dtypes.setdefault(row.cell, set()).add(row.autocast_dtype)
    if not dtypes:
        return None
    parts = [f"{TRAINING_MODELS[cell]} {'/'.join(sorted(found))}" for cell, found in dtypes.items()]
    return "torch autocast: the module's output dtype: " + ", ".join(parts)


def run_bf16_training(args, backend, out, with_torch):
    """Print the bf16 training table for ``args.threads`` (see :func:`fastrnn.benchmarks.cli.run`).

    Parameters
    ----------
    args : argparse.Namespace
        ``cells`` (the LSTM and GRU among them are run), ``precision_shapes`` (or None:
        :data:`~fastrnn.benchmarks.targets.PRECISION_SHAPES`), ``threads``, ``markdown``,
        ``time_per_shape`` and ``repeat`` are read.
    backend : str
        The fastrnn backend of both fastrnn columns.
    out : file-like
    with_torch : bool
        Time the torch float32 and autocast columns.

    Returns
    -------
    list of Bf16TrainingRow
    """
    cpu = cpu_info()
    shapes = getattr(args, "precision_shapes", None) or list(PRECISION_SHAPES)
    cells = [cell for cell in args.cells if cell in TRAINING_MODELS]
    levels = reduced_levels()
    print("\n# bf16 training step: forward, MSE loss, backward, Adam update of a 1-layer "
          f"unidirectional module; fastrnn backend {backend}; times in ms", file=out)
    print(f"# cpu has avx512_bf16 {'yes' if 'avx512_bf16' in cpu.flags else 'no'}; fastrnn's bf16 "
          f"kernels: {levels['bf16'] if levels else 'no level query'}; bf16 backward kernels: "
          + ", ".join(f"{cell} {bf16_backward_backend(cell, backend) or 'none'}" for cell in cells), file=out)
    print(f"# fastrnn bf16: nn module precision='bf16' (bf16 products, float32 sums, master weights and "
          f"Adam state); torch autocast: forward under torch.autocast('cpu', dtype=torch.bfloat16), loss "
          f"on output.float(); checked before timing: first-step loss within {LOSS_RTOL:g} (relative) of "
          f"fastrnn f32's; ratios = median over paired rounds of the first time / the second", file=out)
    columns = [name for name in COLUMNS if with_torch or name in ("f32", "bf16")]
    header = ["model", "shape", "T,B,D,H", "thr", *(COLUMNS[name] for name in columns), *RATIOS, "target", "n"]
    rows = timed_rows("bf16 training", cells, shapes, args.threads, lambda cell, name, n_threads:
                      bench_bf16_training_row(cell, SHAPES[name], n_threads, backend, with_torch, args, cpu.flags))
    print(format_table(header, [_row_cells(row, columns) for row in rows], args.markdown, left_columns=4),
          file=out)
    for line in _check_lines(rows):
        print(f"# checked before timing: {line}", file=out)
    autocast = _autocast_line(rows)
    if autocast:
        print(f"# {autocast}", file=out)
    for line in ratio_summary_lines(rows, ("f32/bf16", "autocast/bf16")):
        print(f"# {line}", file=out)
    out.flush()
    return rows
