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
from fastrnn._validation import PRECISIONS, check_precision

#: Sub-packages loaded on first attribute access, so ``import fastrnn`` stays light.
_SUBPACKAGES = ("nn", "optim", "losses", "keras")
#: Names that live in a facade, loaded from there on first access: the facade is a layer above
#: this package root's eager imports, so only this lazy path may reach it.
_LAZY_NAMES = {"NotCompiledError": "fastrnn.keras.exceptions", "ModelFileError": "fastrnn.keras.exceptions"}


def quantize(model, precision):
    """A copy of a model whose recurrent layers run inference in ``precision``.

    Parameters
    ----------
    model : fastrnn.nn.Module or fastrnn.keras model
        A module (``fastrnn.nn.RNN``, ``LSTM``, ``GRU``, or a module holding them) or a
        Keras-style model (``fastrnn.keras.Sequential``): anything with a
        ``quantized(precision)`` method.
    precision : {"float32", "bf16", "int8"}
        ``"bf16"``: weights rounded to bfloat16; ``"int8"``: weights quantized per output
        row, the layer input and state per step and batch row; biases, gate math and
        states stay float32 (see ``fastrnn._python.reduced``).

    Returns
    -------
    object of the type of ``model``
        A deep copy whose recurrent layers have ``precision`` set and their weights packed
        in it once, now. Its weights are float32 master copies equal to ``model``'s, which
        is not changed. An nn module comes back in ``eval()`` mode; a Keras model runs in
        ``precision`` in ``predict``, ``evaluate`` and calls without ``training``.

    Raises
    ------
    ArgumentError
        For an unknown precision, or a ``model`` that cannot be quantized.
    DTypeError
        For bf16 or int8 on float64 weights.
    """
    check_precision(precision)
    method = getattr(model, "quantized", None)
    if not callable(method):
        raise ArgumentError(f"model must be a fastrnn.nn module or a fastrnn.keras model (with a "
                            f"quantized(precision) method); got {type(model).__name__}")
    return method(precision)


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
    "quantize",
    "PRECISIONS",
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
