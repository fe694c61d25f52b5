"""The functional API: one recurrent layer's forward pass and its BPTT, NumPy in, NumPy out.

Each function validates its arguments (raising before any kernel runs),
converts them once to the kernel layout (time-major, C-contiguous, one dtype),
allocates the outputs and workspace, picks the backend and calls its kernel.
Weights use PyTorch's layout: ``w_ih`` of shape (G*H, D), ``w_hh`` of shape
(G*H, H), biases of shape (G*H,), with G gates per cell. One module per cell;
what they share is in :mod:`fastrnn.functional._layer`. The cell table (gate
counts, states, names and gate orders in PyTorch, Keras and ONNX) is
:mod:`fastrnn.functional.cells`; one direction of a layer over a padded batch
(lengths or masks, the reverse direction per row, final states at each row's
end) runs through :func:`fastrnn.functional.direction.run_direction`, which
both facades call.

:func:`pack_rnn`, :func:`pack_lstm` and :func:`pack_gru` validate and pack a
layer's weights once (:mod:`fastrnn.functional.packed`): the objects run one
time step at a time (``packed.step(x_t, state)``) and stand in for the weights
of the forward functions.

Inference may run in reduced precision: ``precision="bf16"`` or ``"int8"`` on the
packers and the forward functions (:mod:`fastrnn.functional._precision`; the
rounding is defined by :mod:`fastrnn._python.reduced`).

Do not modify the arrays passed to a forward call in place before the matching
backward call: the cache refers to them rather than copying them.
"""

from fastrnn.functional._gru import GRUCache, gru_backward, gru_forward
from fastrnn.functional._lstm import LSTMCache, lstm_backward, lstm_forward
from fastrnn.functional._rnn import RNNCache, rnn_backward, rnn_forward
from fastrnn.functional.packed import (PackedGRU, PackedLSTM, PackedRNN, PackedWeights, pack_gru,
                                       pack_lstm, pack_rnn)

__all__ = ["rnn_forward", "rnn_backward", "RNNCache", "lstm_forward", "lstm_backward", "LSTMCache", "gru_forward", "gru_backward",
           "GRUCache", "pack_rnn", "pack_lstm", "pack_gru", "PackedWeights", "PackedRNN", "PackedLSTM",
           "PackedGRU"]
