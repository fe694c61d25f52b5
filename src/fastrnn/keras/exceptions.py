"""Exceptions of the Keras-style facade: errors a caller can make with a model or a model file.

Both derive from :class:`ValueError` and from :class:`fastrnn.FastRNNError`, like
every error fastrnn raises on purpose, and stay importable as
``fastrnn.NotCompiledError`` and ``fastrnn.ModelFileError``.
"""

from fastrnn.exceptions import FastRNNError

__all__ = ["NotCompiledError", "ModelFileError"]


class NotCompiledError(FastRNNError, ValueError):
    """A Keras-style model was trained or evaluated before ``compile()`` gave it a loss and an optimizer."""


class ModelFileError(FastRNNError, ValueError):
    """A model file that cannot be loaded: not a fastrnn model, damaged, or of an unsupported version."""
