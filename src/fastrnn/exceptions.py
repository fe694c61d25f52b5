"""Exceptions raised by fastrnn for errors a caller can make.

Every class derives from :class:`ValueError` or :class:`TypeError`, so code that
already catches those keeps working, and from :class:`FastRNNError`, so code that
wants to catch only fastrnn's errors can. The Keras-style facade's own errors
(``NotCompiledError``, ``ModelFileError``) live in :mod:`fastrnn.keras.exceptions`.
"""


class FastRNNError(Exception):
    """Base class of every error fastrnn raises on purpose."""


class ShapeError(FastRNNError, ValueError):
    """An array has the wrong number of dimensions or a size that does not match."""


class DTypeError(FastRNNError, TypeError):
    """An array has a dtype fastrnn cannot compute in, or the inputs mix dtypes."""


class NonFiniteError(FastRNNError, ValueError):
    """A weight or an initial state holds NaN or infinity."""


class ArgumentError(FastRNNError, ValueError):
    """An option has a value outside the ones it accepts (nonlinearity, n_threads, ...)."""


class UnknownBackendError(ArgumentError):
    """A backend name that fastrnn does not know."""


class UnknownIsaError(ArgumentError):
    """An instruction-set level (``FASTRNN_ISA``, ``set_isa_level``) that fastrnn does not
    know, or that this CPU does not support."""


class BackendUnavailableError(FastRNNError, ValueError):
    """A known backend that could not be loaded on this machine.

    Attributes
    ----------
    backend : str
        The backend that was asked for.
    reason : str
        Why it did not load (the import error, or the build banner).
    """

    def __init__(self, backend, reason):
        self.backend = backend
        self.reason = reason
        super().__init__(
            f"backend {backend!r} is not available: {reason}. "
            f"See fastrnn.show_config() for every backend and its state."
        )

    def __reduce__(self):
        # the default rebuilds from the message alone, which this __init__ does not take;
        # a multiprocessing worker that raises this error must be able to send it back
        return (type(self), (self.backend, self.reason))


class ConcurrentUseError(FastRNNError, RuntimeError):
    """An object that one thread at a time may use was used by two threads at once."""


class StaleCacheError(FastRNNError, ValueError):
    """A forward cache whose arrays no longer match what the forward pass stored, or weights
    packed for another instruction-set level than the one the kernels run on now."""


class CheckpointError(FastRNNError, ValueError):
    """A checkpoint file that cannot be read safely: not a ``torch.save`` file, truncated or
    corrupt, declaring sizes its bytes do not hold, or naming code (a global other than
    torch's tensor rebuild functions, storage types and dtypes) that fastrnn refuses to run."""


class OnnxExportError(FastRNNError, ValueError):
    """A model that :func:`fastrnn.onnx.export` cannot write: a layer, option or input that
    ONNX's operators cannot express, or that fastrnn has no export for."""


class OnnxImportError(FastRNNError, ValueError):
    """An ONNX file that :func:`fastrnn.onnx.load` cannot turn into a fastrnn model: not a
    valid ONNX model, or a node whose operator or attribute fastrnn does not support."""
