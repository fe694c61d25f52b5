"""The reference backend: every kernel in plain NumPy, one equation per line.

It is the oracle the compiled backends are tested against (run in float64) and
the fallback when nothing compiled loads. Its kernels have exactly the
signatures of the compiled ones (see :mod:`fastrnn._python.rnn`); its
reduced-precision kernels (:mod:`fastrnn._python.reduced_layer`) define what
bf16 and int8 inference computes.
"""

from fastrnn._python.gru import gru_backward, gru_forward
from fastrnn._python.lstm import lstm_backward, lstm_forward
from fastrnn._python.lstm_proj import lstm_proj_backward, lstm_proj_forward
from fastrnn._python.reduced_layer import (gru_backward_reduced, gru_forward_reduced,
                                           lstm_backward_reduced, lstm_forward_reduced,
                                           lstm_proj_backward_reduced, lstm_proj_forward_reduced,
                                           pack_reduced, rnn_backward_reduced, rnn_forward_reduced)
from fastrnn._python.rnn import rnn_backward, rnn_forward

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "lstm_proj_forward",
           "lstm_proj_backward", "gru_forward", "gru_backward", "pack_reduced", "rnn_forward_reduced",
           "lstm_forward_reduced", "lstm_proj_forward_reduced", "gru_forward_reduced",
           "rnn_backward_reduced", "lstm_backward_reduced", "lstm_proj_backward_reduced",
           "gru_backward_reduced"]
