"""The Numba backend: kernels compiled on first use and cached on disk.

Importing this package imports Numba but compiles nothing; each kernel
compiles (or loads from the cache) on its first call with a given dtype.
"""

import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls; loaded now so threads can be limited)

from fastrnn._numba.gru import gru_backward, gru_forward
from fastrnn._numba.lstm import lstm_backward, lstm_forward
from fastrnn._numba.lstm_proj import lstm_proj_backward, lstm_proj_forward
from fastrnn._numba.rnn import rnn_backward, rnn_forward

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "lstm_proj_forward",
           "lstm_proj_backward", "gru_forward", "gru_backward"]
