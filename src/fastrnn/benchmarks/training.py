"""The training tables: a whole training step against PyTorch's, and what variable lengths cost.

One step is what a training loop repeats: forward through a 2-layer
bidirectional LSTM or GRU, a mean-squared-error loss against a fixed target,
the backward pass, and an Adam update of every parameter. Both sides start
from the same weights, inputs and targets, in float32, with the same thread
count; the timing (alternated, paired rounds) is
:func:`fastrnn.benchmarks.timing.time_paired`.
"""

import numpy as np

from fastrnn.benchmarks.grid import SHAPES
from fastrnn.benchmarks.tables import format_ms, format_table
from fastrnn.benchmarks.targets import LENGTHS_COST_TARGET, TRAINING_TARGET
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["TRAINING_MODELS", "TRAINING_SHAPES", "NUM_LAYERS", "training_problem", "fastrnn_training_step",
           "torch_training_step", "lengths_runners", "run_training"]

#: The models timed: cell name -> (fastrnn.nn class name, torch.nn class name).
TRAINING_MODELS = {"lstm": "LSTM", "gru": "GRU"}
TRAINING_SHAPES = ("S1", "S4")
NUM_LAYERS = 2


def training_problem(cell, shape, seed=0, *, num_layers=NUM_LAYERS, bidirectional=True):
    """Module configuration, input and target of one training benchmark.

    Parameters
    ----------
    cell : {"lstm", "gru"}
    shape : str or fastrnn.benchmarks.grid.Shape
        A name of :data:`~fastrnn.benchmarks.grid.SHAPES`, or a shape.
    seed : int
    num_layers : int
    bidirectional : bool

    Returns
    -------
    dict
        ``module`` (constructor keyword arguments), ``cls`` (class name),
        ``x`` (ndarray of shape (T, B, D)) and ``target`` (ndarray of shape
        (T, B, directions*H)), float32.
    """
    s = SHAPES[shape] if isinstance(shape, str) else shape
    directions = 2 if bidirectional else 1
    rng = np.random.default_rng(seed)
    return {
        "cls": TRAINING_MODELS[cell],
        "module": dict(input_size=s.D, hidden_size=s.H, num_layers=num_layers,
                       bidirectional=bidirectional),
        "x": rng.standard_normal((s.T, s.B, s.D)).astype(np.float32),
        "target": rng.standard_normal((s.T, s.B, directions * s.H)).astype(np.float32),
    }


def fastrnn_training_step(problem, n_threads, backend=None, precision="float32"):
    """A no-argument callable doing one training step with fastrnn.nn, fastrnn.optim and fastrnn.losses.

    ``precision`` is the module's (``"bf16"``: mixed-precision training, float32
    master weights and Adam state).

    Returns
    -------
    step : callable
        Returns the loss.
    module : fastrnn.nn.LSTM or fastrnn.nn.GRU
        Its initial weights are what :func:`torch_training_step` copies.
    """
    from fastrnn import losses, nn, optim

    options = {} if precision == "float32" else {"precision": precision}  # older modules lack it
    module = getattr(nn, problem["cls"])(**problem["module"], seed=0, backend=backend,
                                         n_threads=n_threads, **options)
    optimizer = optim.Adam(module.parameters(), lr=1e-3)
    criterion = losses.MSELoss()
    x, target = problem["x"], problem["target"]

    def step():
        optimizer.zero_grad()
        output, _ = module(x)
        loss = criterion(output, target)
        module.backward(criterion.backward())
        optimizer.step()
        return loss

    return step, module


def torch_training_step(problem, n_threads, initial_state, autocast=False):
    """The same training step in PyTorch, from the weights in ``initial_state`` (a state dict of arrays).

    With ``autocast`` the forward runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``
    (PyTorch's mixed precision: float32 weights, the ops it lists in bf16) and the loss is
    computed in float32 on ``output.float()``. The callable's attribute ``output_dtype``
    is the dtype of the module's output in the last step (``torch.bfloat16`` where autocast
    reached the recurrent layer).
    """
    import contextlib

    import torch

    torch.set_num_threads(n_threads)
    module = getattr(torch.nn, problem["cls"])(**problem["module"])
    module.load_state_dict({name: torch.from_numpy(np.array(value))
                            for name, value in initial_state.items()})
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    criterion = torch.nn.MSELoss()
    x, target = torch.from_numpy(problem["x"]), torch.from_numpy(problem["target"])

    def step():
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)
        optimizer.zero_grad()
        with (torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()):
            output, _ = module(x)
        step.output_dtype = output.dtype
        loss = criterion(output.float(), target)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step.output_dtype = None
    return step


def lengths_runners(problem, n_threads):
    """Forward+backward of one module on a padded batch, without and with random ``lengths``.

    Returns
    -------
    dict of str to callable
        ``"full"`` and ``"lengths"``.
    """
    from fastrnn import nn

    module = getattr(nn, problem["cls"])(**problem["module"], seed=0, n_threads=n_threads)
    x, d_output = problem["x"], problem["target"]
    T, B, _ = x.shape
    lengths = np.random.default_rng(1).integers(1, T + 1, B)

    def full():
        module(x)
        return module.backward(d_output)

    def with_lengths():
        module(x, lengths=lengths)
        return module.backward(d_output)

    return {"full": full, "lengths": with_lengths}


def run_training(args, out, with_torch):
    """Print the training-step table for ``args.threads`` (see :func:`fastrnn.benchmarks.cli.run`)."""
    header = ["model", "shape", "T,B,D,H", "thr", "fastrnn", *(["torch", "torch/fastrnn", "target"]
                                                              if with_torch else []), "n"]
    rows = []
    for cell in TRAINING_MODELS:
        for shape in TRAINING_SHAPES:
            for n_threads in args.threads:
                problem = training_problem(cell, shape)
                step, module = fastrnn_training_step(problem, n_threads)
                runners = {"fastrnn": step}
                if with_torch:
                    runners["torch"] = torch_training_step(problem, n_threads, module.state_dict())
                times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
                s = SHAPES[shape]
                row = [f"2-layer bidir {TRAINING_MODELS[cell]}", shape, f"{s.T},{s.B},{s.D},{s.H}",
                       str(n_threads), format_ms(float(np.median(times["fastrnn"])))]
                if with_torch:
                    ratio = paired_ratio(times["torch"], times["fastrnn"])
                    target = TRAINING_TARGET if n_threads == 1 else 1.0
                    row += [format_ms(float(np.median(times["torch"]))), f"{ratio:.2f}",
                            f">={target:g} {'ok' if ratio >= target else 'MISS'}"]
                rows.append(row + [str(len(times["fastrnn"]))])
    print("\n# training step: forward, MSE loss, backward, Adam update; float32; medians in ms",
          file=out)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()

    header = ["model", "shape", "T,B,D,H", "thr", "no lengths", "lengths", "lengths/no lengths",
              "target", "n"]
    rows = []
    for cell in TRAINING_MODELS:
        for shape in TRAINING_SHAPES:
            times = time_paired(lengths_runners(training_problem(cell, shape), 1),
                                time_budget=args.time_per_shape, rounds=args.repeat)
            cost = paired_ratio(times["lengths"], times["full"])
            s = SHAPES[shape]
            rows.append([f"2-layer bidir {TRAINING_MODELS[cell]}", shape, f"{s.T},{s.B},{s.D},{s.H}",
                         "1", format_ms(float(np.median(times["full"]))),
                         format_ms(float(np.median(times["lengths"]))), f"{cost:.2f}",
                         f"<={LENGTHS_COST_TARGET:g} {'ok' if cost <= LENGTHS_COST_TARGET else 'MISS'}",
                         str(len(times["full"]))])
    print("\n# variable lengths (random, 1..T) against the same padded batch without them: module "
          "forward+backward; float32; medians in ms", file=out)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()
