"""The cell table: one :class:`CellSpec` per recurrent cell, the single place that
says how many gate blocks a cell has, which states it carries, which functions
and kernels run it, and how PyTorch, Keras and ONNX name it and order its gates.

Everything above the kernels reads these facts from here (the functional API,
both facades, :mod:`fastrnn.interop` and the benchmarks); the kernels
themselves, one implementation of each cell per backend, are the cells and
keep their own block offsets. The kernels pack the gate blocks in PyTorch's
order (``docs/weight-layouts.md``); the other frameworks' orders are reached
with :meth:`CellSpec.blocks`.
"""

from dataclasses import dataclass

from fastrnn.exceptions import ArgumentError

__all__ = ["CellSpec", "CELLS", "RNN", "LSTM", "GRU", "cell_spec"]

FRAMEWORKS = ("torch", "keras", "onnx")


@dataclass(frozen=True)
class CellSpec:
    """What fastrnn knows about one recurrent cell.

    Attributes
    ----------
    name : str
        fastrnn's name: ``"rnn"`` (Elman / SimpleRNN), ``"lstm"`` or ``"gru"``.
    gates : int
        G, the gate blocks stacked in the weights: ``w_ih`` has shape (G*H, D).
    states : tuple of str
        The states the cell carries from step to step, in the order the
        functional API takes and returns them: ``("h",)`` or ``("h", "c")``.
    forward, backward : str
        Names of the functional API's functions (and of the kernels they call),
        e.g. ``"lstm_forward"``.
    projected_forward, projected_backward : str or None
        The same for the variant with a projected hidden state (PyTorch's
        ``proj_size``), where the cell has one.
    torch_name, keras_name, onnx_name : str
        The ``torch.nn`` class, the Keras layer and the ONNX operator.
    torch_gates, keras_gates, onnx_gates : tuple of str
        The gate blocks in the order each framework stacks them, in that
        framework's letters. ``torch_gates`` is also the kernels' order.
    same_gates : tuple of (str, str)
        Pairs ``(letter, torch letter)`` for blocks that Keras or ONNX name
        differently from PyTorch (LSTM: ``c`` is PyTorch's ``g``).
    onnx_attributes : tuple of (str, object)
        Attributes an ONNX node needs to compute the kernels' cell (the GRU's
        ``linear_before_reset=1``: PyTorch's reset gate, applied after the
        recurrent product).
    """

    name: str
    gates: int
    states: tuple
    forward: str
    backward: str
    torch_name: str
    keras_name: str
    onnx_name: str
    torch_gates: tuple
    keras_gates: tuple
    onnx_gates: tuple
    same_gates: tuple = ()
    projected_forward: str = None
    projected_backward: str = None
    onnx_attributes: tuple = ()
    aliases: tuple = ()

    def __post_init__(self):
        # the table is written by hand: a wrong row must fail at import, not in a kernel
        for framework in FRAMEWORKS:
            order = self.gate_order(framework)
            if len(order) != self.gates or sorted(self._as_torch(order)) != sorted(self.torch_gates):
                raise ValueError(f"cell table: {self.name}'s {framework} gate order {order} does not "
                                 f"name the {self.gates} blocks {self.torch_gates}")

    @property
    def has_cell_state(self):
        """Whether the cell carries a cell state ``c`` besides ``h`` (the LSTM)."""
        return "c" in self.states

    @property
    def initial_state_names(self):
        """The functional API's argument names of the initial states: ``("h0",)`` or ``("h0", "c0")``."""
        return tuple(f"{state}0" for state in self.states)

    def gate_order(self, framework):
        """The gate letters of ``framework`` (``"torch"``, ``"keras"`` or ``"onnx"``), in its order."""
        if framework not in FRAMEWORKS:
            raise ArgumentError(f"framework must be one of {', '.join(FRAMEWORKS)}; got {framework!r}")
        return getattr(self, f"{framework}_gates")

    def blocks(self, framework):
        """The kernels' block index of each of ``framework``'s blocks, in ``framework``'s order.

        Stacking the kernels' (PyTorch-packed) blocks in this order gives the
        framework's packing; e.g. the LSTM's ONNX order ``i, o, f, c`` is
        ``(0, 3, 1, 2)`` of PyTorch's ``i, f, g, o``.

        Returns
        -------
        tuple of int of length :attr:`gates`
        """
        return tuple(self.torch_gates.index(g) for g in self._as_torch(self.gate_order(framework)))

    def _as_torch(self, letters):
        renamed = dict(self.same_gates)
        return tuple(renamed.get(letter, letter) for letter in letters)

    def names(self):
        """Every name :func:`cell_spec` accepts for this cell, lower-case."""
        return tuple(dict.fromkeys(n.lower() for n in (self.name, self.torch_name, self.keras_name,
                                                         self.onnx_name, *self.aliases)))


RNN = CellSpec(
    name="rnn", gates=1, states=("h",), forward="rnn_forward", backward="rnn_backward",
    torch_name="RNN", keras_name="SimpleRNN", onnx_name="RNN",
    torch_gates=("h",), keras_gates=("h",), onnx_gates=("h",),
    aliases=("Elman", "simple_rnn"),
)

LSTM = CellSpec(
    name="lstm", gates=4, states=("h", "c"), forward="lstm_forward", backward="lstm_backward",
    torch_name="LSTM", keras_name="LSTM", onnx_name="LSTM",
    torch_gates=("i", "f", "g", "o"), keras_gates=("i", "f", "c", "o"),
    onnx_gates=("i", "o", "f", "c"), same_gates=(("c", "g"),),
    projected_forward="lstm_proj_forward", projected_backward="lstm_proj_backward",
)

GRU = CellSpec(
    name="gru", gates=3, states=("h",), forward="gru_forward", backward="gru_backward",
    torch_name="GRU", keras_name="GRU", onnx_name="GRU",
    torch_gates=("r", "z", "n"), keras_gates=("z", "r", "h"), onnx_gates=("z", "r", "h"),
    same_gates=(("h", "n"),), onnx_attributes=(("linear_before_reset", 1),),
)

#: The cells by fastrnn's name, in the order tables list them.
CELLS = {spec.name: spec for spec in (RNN, LSTM, GRU)}

_BY_NAME = {alias: spec for spec in CELLS.values() for alias in spec.names()}


def cell_spec(cell):
    """The :class:`CellSpec` of a cell named as fastrnn, PyTorch, Keras or ONNX name it.

    Parameters
    ----------
    cell : str or CellSpec
        ``"rnn"``, ``"RNN"``, ``"SimpleRNN"``, ``"Elman"``, ``"lstm"``,
        ``"LSTM"``, ``"gru"``, ``"GRU"``... (any case); a CellSpec is returned
        as is.

    Returns
    -------
    CellSpec

    Raises
    ------
    ArgumentError
        For any other value.
    """
    if isinstance(cell, CellSpec):
        return cell
    spec = _BY_NAME.get(cell.lower()) if isinstance(cell, str) else None
    if spec is None:
        known = "; ".join(f"{spec.name!r} ({', '.join(repr(n) for n in _spellings(spec))})"
                          for spec in CELLS.values())
        raise ArgumentError(f"cell must be one of {known}; got {cell!r}")
    return spec


def _spellings(spec):
    names = (spec.torch_name, spec.keras_name, spec.onnx_name, *spec.aliases)
    return tuple(n for n in dict.fromkeys(names) if n != spec.name)
