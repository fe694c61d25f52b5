"""One direction of one recurrent layer over a padded batch: the runner both facades call.

:func:`run_direction` takes a time-major batch, the layer's weights in the
kernels' (PyTorch's) packing, the initial states, and a description of which
steps are valid (:class:`~fastrnn.functional.lengths.SequenceLengths` for
per-row lengths, :class:`~fastrnn.functional.lengths.MaskedSequences` for a
mask with holes). It

1. compacts a masked batch to a right-padded one (each row's valid steps first);
2. in the reverse direction, reverses each row within its own valid steps;
3. runs the cell's functional forward (:mod:`fastrnn.functional.cells` names
   it; the projected LSTM when ``weights`` has ``w_hr``), which returns the
   states after each row's last valid step (``ends``), the initial ones for
   an empty row;
4. puts the outputs back at the caller's steps and fills the others (zeros,
   or Keras's "previous output").

:func:`backward_direction` runs the same maps backwards: the gradients of
the outputs are gathered to the compacted steps, the final states' gradients
enter at each row's end (an empty row's go straight to its initial states),
and the input's gradient goes back to the caller's steps, zero at the
padding. Nothing here reads a kernel workspace, and with
``requires_grad=False`` no cache is kept: for an LSTM the functional forward
computes the cell state at each row's end itself.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.functional import _gru, _lstm, _lstm_proj, _rnn
from fastrnn.functional._packed_base import PackedWeights
from fastrnn.functional.cells import cell_spec
from fastrnn.functional.lengths import SequenceLengths

__all__ = ["run_direction", "backward_direction", "DirectionTape"]

_FUNCTIONS = {name: getattr(module, name)
              for module in (_rnn, _lstm, _gru, _lstm_proj) for name in module.__all__}

#: Weight arguments of the functional API, PyTorch's packing.
WEIGHT_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


class DirectionTape:
    """What :func:`run_direction` keeps for :func:`backward_direction`.

    Attributes
    ----------
    spec : CellSpec
    projected : bool
        The LSTM ran with a projection (``w_hr``).
    cache : LayerCache
        The functional forward's cache.
    steps : SequenceLengths
    reverse : bool
    fill : {"zeros", "previous"}
    """

    def __init__(self, spec, projected, cache, steps, reverse, fill):
        self.spec, self.projected, self.cache = spec, projected, cache
        self.steps, self.reverse, self.fill = steps, reverse, fill


def run_direction(cell, x, weights, initial_states, *, steps=None, reverse=False, fill="zeros",
                  requires_grad=True, backend=None, n_threads=None, precision=None, **options):
    """Run one direction of one layer over a padded, time-major batch.

    Parameters
    ----------
    cell : str or CellSpec
        Any name :func:`~fastrnn.functional.cells.cell_spec` accepts.
    x : array_like of shape (T, B, D)
        The batch, time-major, padded to T steps.
    weights : dict of str to array_like or None, or PackedWeights
        ``"w_ih"``, ``"w_hh"``, and optionally ``"b_ih"``, ``"b_hh"`` and (LSTM
        with a projection) ``"w_hr"``, in the functional API's shapes; or those
        weights packed once (:func:`fastrnn.functional.packed.pack_cell`), which
        the forward functions then run on without packing them per call.
    initial_states : sequence of array_like of shape (B, H_out) / (B, H)
        ``[h0]``, or ``[h0, c0]`` for an LSTM (the cell's ``states``).
    steps : SequenceLengths or MaskedSequences, optional
        Which steps of each row are valid; every step by default.
    reverse : bool
        Run each row backwards over its own valid steps (the reverse
        direction of a bidirectional layer); outputs are returned in the
        caller's step order.
    fill : {"zeros", "previous"}
        What the outputs at invalid steps show: zeros (PyTorch, ONNX), or the
        row's last valid output before them, zeros before the first (Keras).
    requires_grad : bool
        Keep what :func:`backward_direction` needs; with ``False`` nothing is
        kept and no per-step workspace outlives the call.
    backend, n_threads
        As for the functional API.
    precision : {"float32", "bf16", "int8"}, optional
        As for the functional API: packed weights run in their own precision by default,
        arrays in float32; bf16 and int8 need ``requires_grad=False``.
    **options
        The cell's own options: ``nonlinearity`` (RNN), ``reset_after`` (GRU).

    Returns
    -------
    y : ndarray of shape (T, B, H_out)
        Outputs at the caller's steps, invalid steps filled. Read-only when
        it is the functional API's own array (every row full, not reversed).
    finals : list of ndarray of shape (B, H_out) / (B, H)
        The states after each row's last valid step, in the order of
        ``initial_states``; an empty row's are its initial states.
    tape : DirectionTape or None
        ``None`` when ``requires_grad`` is false.
    """
    spec = cell_spec(cell)
    packed = isinstance(weights, PackedWeights)
    projected = (weights.weights if packed else weights).get("w_hr") is not None
    x = np.asarray(x)
    if x.ndim != 3:
        raise ShapeError(f"x must have shape (T, B, D) (time-major); got shape {x.shape}")
    T, B, _ = x.shape
    steps = _steps(steps, T, B)
    if len(initial_states) != len(spec.states):
        raise ArgumentError(f"a {spec.torch_name} takes {len(spec.states)} initial state(s) "
                            f"{spec.initial_state_names}; got {len(initial_states)}")

    x_run = steps.compact(x)
    if reverse:
        x_run = steps.reverse(x_run)
    if packed:  # the forward functions take the object in place of w_ih
        arguments = {"w_ih": weights}
    else:
        arguments = {name: weights.get(name) for name in WEIGHT_NAMES if name != "w_hr" or projected}
    arguments.update(zip(spec.initial_state_names, initial_states))
    if not steps.full:
        arguments["ends"] = steps.lengths
    forward = _FUNCTIONS[spec.projected_forward if projected else spec.forward]
    y, finals, cache = forward(x_run, backend=backend, n_threads=n_threads,
                               requires_grad=requires_grad, precision=precision, **arguments,
                               **options)
    finals = list(finals) if spec.has_cell_state else [finals]

    if reverse:
        y = steps.reverse(y)  # a new array: its padding can be cleared in place
        if fill == "zeros" and not steps.compacts:
            steps.clear_padding(y)
        else:
            y = steps.show(y, fill)
    else:
        y = steps.show(y, fill)
    tape = DirectionTape(spec, projected, cache, steps, reverse, fill) if requires_grad else None
    return y, finals, tape


def backward_direction(tape, dy=None, d_finals=None):
    """Backpropagate through one :func:`run_direction` call.

    Parameters
    ----------
    tape : DirectionTape
        From ``run_direction(..., requires_grad=True)``.
    dy : array_like of shape (T, B, H_out), optional
        Gradient of the loss with respect to ``y`` (the caller's steps);
        zeros by default. Its values at filled steps count as the fill
        defines them (nothing for zeros).
    d_finals : sequence of array_like or None, optional
        Gradients with respect to ``finals`` (entries may be None).

    Returns
    -------
    dict of str to ndarray
        The functional backward's gradients (``"w_ih"``, ``"w_hh"``, biases,
        ``"w_hr"``, ``"h0"``, ``"c0"``), with ``"x"`` of shape (T, B, D) at
        the caller's steps, zero at invalid ones.
    """
    if not isinstance(tape, DirectionTape):
        raise TypeError("tape must be the DirectionTape returned by run_direction(..., "
                        f"requires_grad=True); got {type(tape).__name__}")
    spec, steps = tape.spec, tape.steps
    dy_run = None  # zeros at every step: the functional backward's default
    if dy is not None:
        dy_run = steps.show_adjoint(np.asarray(dy), tape.fill)
        if tape.reverse:
            dy_run = steps.reverse(dy_run)
    d_finals = [None] * len(spec.states) if d_finals is None else list(d_finals)
    if len(d_finals) != len(spec.states):
        raise ArgumentError(f"d_finals must hold {len(spec.states)} gradient(s), one per state "
                            f"{spec.states}; got {len(d_finals)}")
    arguments = {f"d{state}_n": d for state, d in zip(spec.states, d_finals)}
    backward = _FUNCTIONS[spec.projected_backward if tape.projected else spec.backward]
    grads = backward(tape.cache, dy_run, **arguments)

    dx = grads["x"]
    if tape.reverse:
        dx = steps.reverse(dx)
    if not steps.trivial:
        steps.clear_padding(dx)  # exact zeros even where the padding held inf or NaN
        dx = steps.expand(dx)
    grads["x"] = dx
    return grads


def _steps(steps, T, B):
    if steps is None:
        return SequenceLengths(None, T, B)
    if not isinstance(steps, SequenceLengths):
        raise TypeError(f"steps must be a SequenceLengths or MaskedSequences; got "
                        f"{type(steps).__name__}")
    if (steps.T, steps.B) != (T, B):
        raise ShapeError(f"steps describe a batch of T={steps.T}, B={steps.B}; x has T={T}, B={B}")
    return steps
