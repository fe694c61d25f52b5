"""The benchmark grid: shapes, cells as fastrnn, PyTorch and ONNX spell them, and the problems timed.

Every table and the pytest-benchmark suite in ``bench/`` take their shapes,
cells and inputs from here, so they all time the same work.
"""

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from fastrnn.functional import cells
from fastrnn.functional.cells import CellSpec

__all__ = ["Shape", "SHAPES", "STREAMING_SIZES", "STREAMING_STEPS", "Cell", "CELLS", "PASSES", "Problem",
           "make_problem", "make_step_problem", "first_step"]


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

#: Hidden sizes of the streaming table: batch 1, D = H, one step per call.
STREAMING_SIZES = (64, 256, 1024)
#: Steps of a stream in one timed call of the streaming table (per-step time = call time / steps).
STREAMING_STEPS = 50


#: A recurrent cell as fastrnn, PyTorch and ONNX each spell it: the functional
#: layer's cell table row (gates, states, function names, ``torch_name``,
#: ``onnx_name``, ``blocks("onnx")``, ``onnx_attributes``).
Cell = CellSpec

#: The cells, in the order of the tables: the cell table itself.
CELLS = cells.CELLS

#: Passes and how tables print them.
PASSES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}


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
    return _build_problem(SHAPES[name], cell, seed)


@lru_cache(maxsize=None)
def make_step_problem(H, cell="rnn", seed=0):
    """The inputs and weights of the streaming table: a stream of :data:`STREAMING_STEPS` steps.

    Parameters
    ----------
    H : int
        Hidden units, and input features (D = H); batch 1.
    cell : str
    seed : int

    Returns
    -------
    Problem
        Its shape is named ``"H<H>"``; x has shape (STREAMING_STEPS, 1, H). Cached, read-only.
    """
    return _build_problem(Shape(f"H{H}", STREAMING_STEPS, 1, H, H, "streaming, batch 1"), cell, seed)


def first_step(problem):
    """``problem`` cut to its first step: T = 1 (the ONNX graph of one step is built from it)."""
    return replace(problem, shape=replace(problem.shape, T=1), x=problem.x[:1], dy=problem.dy[:1])


def _build_problem(shape, cell, seed):
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
