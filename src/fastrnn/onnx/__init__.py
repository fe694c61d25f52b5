"""fastrnn and ONNX: write a fastrnn model as an ONNX file, and read an ONNX file as a fastrnn model.

* :func:`export` writes a :mod:`fastrnn.nn` model or a :mod:`fastrnn.keras` model
  as an ONNX graph whose recurrent layers are ONNX's ``RNN``, ``LSTM`` and ``GRU``
  operators (module :mod:`fastrnn.onnx.exporter`).
* :func:`load` turns an ONNX graph of those operators and the ones exporters put
  around them into a runnable, trainable fastrnn model, an :class:`OnnxModel`
  (module :mod:`fastrnn.onnx.importer`).

Both need the ``onnx`` package (the ``onnx`` extra: ``pip install "fastrnn[onnx]"``);
importing this package works without it.
"""

__all__ = ["export", "load", "OnnxModel"]

#: Public names, loaded from their module on first access so that ``import fastrnn.onnx``
#: imports neither ``onnx`` nor the facades.
_LAZY_NAMES = {"export": "fastrnn.onnx.exporter", "load": "fastrnn.onnx.importer",
               "OnnxModel": "fastrnn.onnx.importer"}


def __getattr__(name):
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'fastrnn.onnx' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY_NAMES))
