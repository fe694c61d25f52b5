"""fastrnn: recurrent neural networks (SimpleRNN, LSTM, GRU) made fast on the CPU for NumPy users.

The forward pass and backpropagation through time run in compiled kernels
(a Cython/OpenMP extension when it was built, Numba otherwise), checked against
a plain NumPy reference that is also shipped as the ``"python"`` backend.

Importing fastrnn compiles nothing and does not import Numba.
"""

from fastrnn._backends import available_backends, show_config, use_backend
from fastrnn._threads import get_num_threads, set_num_threads
from fastrnn._version import __version__
from fastrnn.exceptions import (
    ArgumentError,
    BackendUnavailableError,
    DTypeError,
    FastRNNError,
    NonFiniteError,
    ShapeError,
    StaleCacheError,
    UnknownBackendError,
    UnknownIsaError,
)
from fastrnn.functional import rnn_backward, rnn_forward
from fastrnn.functional import lstm_backward, lstm_forward
from fastrnn.functional import gru_backward, gru_forward
from fastrnn.functional import pack_gru, pack_lstm, pack_rnn

#: Sub-packages loaded on first attribute access, so ``import fastrnn`` stays light.
_SUBPACKAGES = ("nn", "optim", "losses", "keras")
#: Names that live in a facade, loaded from there on first access: the facade is a layer above
#: this package root's eager imports, so only this lazy path may reach it.
_LAZY_NAMES = {"NotCompiledError": "fastrnn.keras.exceptions", "ModelFileError": "fastrnn.keras.exceptions"}


def __getattr__(name):
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f"fastrnn.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'fastrnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_LAZY_NAMES))


__all__ = [
    "rnn_forward",
    "gru_forward",
    "gru_backward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "pack_rnn",
    "pack_lstm",
    "pack_gru",
    "available_backends",
    "use_backend",
    "show_config",
    "set_num_threads",
    "get_num_threads",
    "FastRNNError",
    "ShapeError",
    "DTypeError",
    "NonFiniteError",
    "ArgumentError",
    "UnknownBackendError",
    "UnknownIsaError",
    "BackendUnavailableError",
    "StaleCacheError",
    "NotCompiledError",
    "ModelFileError",
]
