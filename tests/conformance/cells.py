"""The per-cell adapter table: how the conformance tests call each cell through the public API.

Every difference between the cells that the shared tests need is written here
and nowhere else: the forward and backward functions and their extra options,
the gate blocks G, whether there is a cell state ``c`` and a projection
``w_hr``, and the matching ``torch.nn`` layer. Gate counts are written out
here on purpose, apart from the package's own cell table, so that the tests
check the package rather than repeat it.
"""

from dataclasses import dataclass

import fastrnn
from conftest import require_backend
from fastrnn import _backends
from fastrnn.functional._lstm_proj import lstm_proj_backward, lstm_proj_forward


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per cell
class Cell:
    """One cell as the conformance tests see it.

    Attributes
    ----------
    id : str
        The cell's part of a test id, e.g. ``"gru_reset_before"``.
    name : str
        How failure messages name it.
    gates : int
        G: ``w_ih`` has shape (G*H, D).
    forward_fn, backward_fn : callable
        The public functions, e.g. ``fastrnn.lstm_forward`` / ``fastrnn.lstm_backward``.
    kernel : str
        The kernel a backend must have to run the cell (``"lstm_forward"``).
    options : tuple of (str, object)
        Keyword arguments every forward call gets (``nonlinearity``, ``reset_after``).
    bad_options : tuple of (str, object)
        Values of those options the forward call must reject, naming the option.
    cell_state : bool
        The cell carries ``c`` besides ``h`` (LSTM).
    projected : bool
        ``h`` is projected to ``P < H`` units by ``w_hr`` of shape (P, H).
    batch_first : bool
        The forward call takes ``batch_first``.
    keep_gate : int or None
        The gate block whose pre-activation, when large, keeps the old state
        (LSTM ``f``, GRU ``z``); ``None`` for the Elman cell.
    relu : bool
        The activation is relu (finite differences need a margin from its kink).
    torch_layer : tuple or None
        ``(torch.nn class name, keyword arguments)``; ``None`` where torch has no such layer.
    seed_offset : int
        Added to every case's seed (relu: seeds whose pre-activations keep clear of the kink).
    """

    id: str
    name: str
    gates: int
    forward_fn: object
    backward_fn: object
    kernel: str
    options: tuple = ()
    bad_options: tuple = ()
    cell_state: bool = False
    projected: bool = False
    batch_first: bool = True
    keep_gate: object = None
    relu: bool = False
    torch_layer: object = None
    seed_offset: int = 0

    def __repr__(self):
        return self.id

    # -- names and shapes --------------------------------------------------------------------

    @property
    def states(self):
        """Initial-state arguments of the forward call."""
        return ("h0", "c0") if self.cell_state else ("h0",)

    @property
    def final_states(self):
        """Final states the forward call returns, in order."""
        return ("h_n", "c_n") if self.cell_state else ("h_n",)

    @property
    def weights(self):
        return ("w_ih", "w_hh", "w_hr") if self.projected else ("w_ih", "w_hh")

    @property
    def inputs(self):
        """Array arguments of the forward call, in its positional order."""
        return ("x",) + self.weights + ("b_ih", "b_hh") + self.states

    @property
    def gradients(self):
        """Every gradient the backward call can return (biases only when given)."""
        return ("x",) + self.states + self.weights + ("b_ih", "b_hh")

    @property
    def loss_weights(self):
        """Arguments of the backward call: the loss is the sum of each times its output."""
        return ("dy", "dh_n", "dc_n") if self.cell_state else ("dy", "dh_n")

    def shapes(self, T, B, D, H, P):
        """The shape of every input and loss weight, time-major."""
        R = P if self.projected else H  # width of h (and y)
        G = self.gates
        shapes = {"x": (T, B, D), "w_ih": (G * H, D), "w_hh": (G * H, R), "b_ih": (G * H,), "b_hh": (G * H,),
                  "h0": (B, R), "dy": (T, B, R), "dh_n": (B, R)}
        if self.projected:
            shapes["w_hr"] = (P, H)
        if self.cell_state:
            shapes.update(c0=(B, H), dc_n=(B, H))
        return shapes

    # -- calls ---------------------------------------------------------------------------------

    def forward(self, arrays, backend, *, batch_first=False, n_threads=None, requires_grad=True, **options):
        """The forward call on the arrays of ``arrays`` it takes.

        Returns
        -------
        y : ndarray
        states : dict of str to ndarray
            ``"h_n"`` (and ``"c_n"``).
        cache : object or None
        """
        kwargs = {name: arrays[name] for name in self.inputs if name in arrays}
        kwargs.update(dict(self.options), **options)
        if batch_first:
            kwargs["batch_first"] = True
        y, states, cache = self.forward_fn(**kwargs, backend=backend, n_threads=n_threads,
                                           requires_grad=requires_grad)
        states = states if isinstance(states, tuple) else (states,)
        return y, dict(zip(self.final_states, states)), cache

    def backward(self, cache, arrays):
        """The backward call with the loss weights of ``arrays`` (absent ones default to zeros)."""
        return self.backward_fn(cache, **{name: arrays[name] for name in self.loss_weights if name in arrays})

    def kernel_module(self, backend):
        """The module whose kernel functions a call on ``backend`` runs (for spying on them)."""
        return _backends.resolve(backend, kernel=self.kernel)[1]

    def kernel_names(self):
        return (self.kernel, self.kernel.replace("_forward", "_backward"))


RNN_TANH = Cell("rnn_tanh", "RNN(tanh)", 1, fastrnn.rnn_forward, fastrnn.rnn_backward, "rnn_forward",
                options=(("nonlinearity", "tanh"),),
                bad_options=(("nonlinearity", "sigmoid"), ("nonlinearity", "Tanh"), ("nonlinearity", None),
                             ("nonlinearity", "")),
                torch_layer=("RNN", {"nonlinearity": "tanh"}))
RNN_RELU = Cell("rnn_relu", "RNN(relu)", 1, fastrnn.rnn_forward, fastrnn.rnn_backward, "rnn_forward",
                options=(("nonlinearity", "relu"),), relu=True, seed_offset=500,
                torch_layer=("RNN", {"nonlinearity": "relu"}))
LSTM = Cell("lstm", "LSTM", 4, fastrnn.lstm_forward, fastrnn.lstm_backward, "lstm_forward", cell_state=True,
            keep_gate=1, torch_layer=("LSTM", {}))
LSTM_PROJ = Cell("lstm_proj", "LSTM(proj_size)", 4, lstm_proj_forward, lstm_proj_backward, "lstm_proj_forward",
                 cell_state=True, projected=True, batch_first=False, keep_gate=1, torch_layer=("LSTM", {}))
GRU = Cell("gru", "GRU(reset_after=True)", 3, fastrnn.gru_forward, fastrnn.gru_backward, "gru_forward",
           options=(("reset_after", True),),
           bad_options=(("reset_after", 1), ("reset_after", 0), ("reset_after", "yes"), ("reset_after", None),
                        ("reset_after", 1.0)),
           keep_gate=1, torch_layer=("GRU", {}))
GRU_RESET_BEFORE = Cell("gru_reset_before", "GRU(reset_after=False)", 3, fastrnn.gru_forward, fastrnn.gru_backward,
                        "gru_forward", options=(("reset_after", False),), keep_gate=1)

CELLS = (RNN_TANH, RNN_RELU, LSTM, LSTM_PROJ, GRU, GRU_RESET_BEFORE)


def require(cell, backend):
    """``backend`` if it loads and has ``cell``'s kernels; otherwise skip the test (or fail it, see conftest)."""
    return require_backend(backend, kernel=cell.kernel)
