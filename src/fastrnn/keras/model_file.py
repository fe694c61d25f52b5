"""The model file format: one zip archive per model, written atomically, read back bit-exactly.

The file is a zip archive (stored, not compressed) holding:

* ``fastrnn_model.json`` -- the format name and version, the model's structure
  (each layer's class name and ``get_config()``), the input shape each layer
  was built for, the list of weight entries (layer, weight name, shape,
  dtype), and, for a compiled model, the optimizer, loss and metrics
  configurations and which entries hold the optimizer's state;
* ``weights/NNNNN.npy`` and ``optimizer/NNNNN.npy`` -- the arrays, in NumPy's
  ``.npy`` format (no pickles).

Arrays are written as they are, so a save/load round trip is bit-exact. The
file is written to a temporary file in the destination folder and renamed over
the destination (``os.replace``), so a crash never leaves a half-written model
where a good one was. Anything wrong with a file being loaded -- not a zip,
truncated, corrupted, another format or a newer version, arrays that do not
match the structure -- raises :class:`ModelFileError`.

This module knows the format and what it stores of a model (``layers``,
``get_config()``, weights, optimizer, loss, metrics), never the model class:
:mod:`fastrnn.keras.saving` rebuilds a ``Sequential`` from what
:func:`read_document` and :func:`read_array` return.
"""

import io
import json
import os
import secrets
import zipfile

import numpy as np

from fastrnn._version import __version__
from fastrnn.exceptions import ArgumentError
from fastrnn.keras import losses, metrics, optimizers
from fastrnn.keras.exceptions import ModelFileError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "CONFIG_ENTRY", "save_model", "read_document", "read_array"]

FORMAT_NAME = "fastrnn.keras.model"
FORMAT_VERSION = 1
CONFIG_ENTRY = "fastrnn_model.json"


def _json_default(value):
    """JSON for NumPy scalars and arrays that configs may hold."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.dtype):
        return value.name
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _write_array(archive, name, array):
    with archive.open(name, "w", force_zip64=array.nbytes > (1 << 30)) as handle:
        np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


def _document(model):
    """The JSON document and the arrays (entry name -> ndarray) that describe ``model``."""
    arrays = {}
    weights = []
    for layer in model.layers:
        for weight_name, parameter in getattr(layer, "_weights", []):
            entry = f"weights/{len(weights):05d}.npy"
            arrays[entry] = parameter.data
            weights.append({"entry": entry, "layer": layer.name, "name": weight_name,
                            "shape": list(parameter.data.shape), "dtype": parameter.data.dtype.str})
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": {"class_name": type(model).__name__, "config": model.get_config()},
        "build_shapes": [list(layer.input_shape) if layer.built else None for layer in model.layers],
        "weights": weights,
        "compile": None,
        "optimizer_state": None,
    }
    document["fastrnn_version"] = __version__
    if model.optimizer is not None:
        document["compile"] = {
            "optimizer": optimizers.serialize(model.optimizer),
            "loss": None if model.loss is None else losses.serialize(model.loss),
            "metrics": [metrics.serialize(m) for m in model._metric_identifiers],
        }
        slots = []
        for index, per_variable in enumerate(model.optimizer.get_slot_arrays(model.trainable_weights)):
            names = {}
            for slot_name, array in sorted(per_variable.items()):
                entry = f"optimizer/{len(arrays):05d}.npy"
                arrays[entry] = array
                names[slot_name] = entry
            slots.append(names)
        document["optimizer_state"] = {"iterations": model.optimizer.iterations, "slots": slots}
    return document, arrays


def save_model(model, filepath):
    """Write ``model`` to ``filepath`` as one zip file (see the module docstring), atomically.

    Parameters
    ----------
    model : fastrnn.keras.Sequential
    filepath : str or os.PathLike
        Written as given (no suffix is added); ``.keras`` or ``.fastrnn`` are
        good choices.

    Raises
    ------
    ArgumentError
        When a layer's config, the loss or a metric cannot be written as JSON.
    """
    path = os.fspath(filepath)
    document, arrays = _document(model)
    try:
        text = json.dumps(document, indent=1, default=_json_default, allow_nan=True)
    except TypeError as error:
        raise ArgumentError(f"the model's configuration cannot be saved as JSON: {error}") from error
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the final file's mode, as for any new file
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(CONFIG_ENTRY, text)
                for name, array in arrays.items():
                    _write_array(archive, name, array)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_document(archive, path):
    """The JSON document of an open model file, after checking its format name and version.

    Parameters
    ----------
    archive : zipfile.ZipFile
    path : str
        The file's name, for error messages.

    Returns
    -------
    dict

    Raises
    ------
    ModelFileError
        When the archive is not a fastrnn model file or was written by a newer format version.
    """
    try:
        document = json.loads(archive.read(CONFIG_ENTRY).decode("utf-8"))
    except KeyError:
        raise ModelFileError(f"{path}: not a fastrnn model file (the archive has no {CONFIG_ENTRY})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a fastrnn model file (format {document.get('format')!r} "
                             f"where {FORMAT_NAME!r} was expected)" if isinstance(document, dict)
                             else f"{path}: not a fastrnn model file")
    version = document.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written in model format version {version} (by fastrnn "
                             f"{document.get('fastrnn_version', '?')}); this fastrnn reads versions up to "
                             f"{FORMAT_VERSION}: upgrade fastrnn")
    return document


def read_array(archive, record, path):
    """The array of one ``record`` (``entry`` and, optionally, the ``shape`` and ``dtype`` it must have)."""
    entry = record["entry"]
    array = np.lib.format.read_array(io.BytesIO(archive.read(entry)), allow_pickle=False)
    shape = tuple(record["shape"]) if "shape" in record else array.shape
    dtype = np.dtype(record["dtype"]) if "dtype" in record else array.dtype
    if array.shape != shape or array.dtype != dtype:
        raise ModelFileError(f"{path}: entry {entry} holds an array of shape {array.shape} and dtype {array.dtype}; "
                             f"the model description says {shape} and {dtype}")
    return array
