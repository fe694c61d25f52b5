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
where a good one was (see :func:`save_model` for the temporary files'
names, permissions and symlinks). Anything wrong with a file being loaded -- not a zip,
truncated, corrupted, another format or a newer version, arrays that do not
match the structure -- raises :class:`ModelFileError`. Reading costs memory in
proportion to the arrays the file declares: every entry's uncompressed size is
checked against its declared shape and dtype before it is decompressed, and
:mod:`fastrnn.keras.saving` builds the layers within the values those entries
hold (:func:`weight_values`).

This module knows the format and what it stores of a model (``layers``,
``get_config()``, weights, optimizer, loss, metrics), never the model class:
:mod:`fastrnn.keras.saving` rebuilds a ``Sequential`` from what
:func:`read_document` and :func:`read_array` return.
"""

import json
import math
import os
import secrets
import stat
import zipfile

import numpy as np

from fastrnn._version import __version__
from fastrnn.exceptions import ArgumentError
from fastrnn.keras import losses, metrics, optimizers
from fastrnn.keras.exceptions import ModelFileError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "CONFIG_ENTRY", "save_model", "read_document", "read_array",
           "weight_values"]

FORMAT_NAME = "fastrnn.keras.model"
FORMAT_VERSION = 1
CONFIG_ENTRY = "fastrnn_model.json"
# in the names of the temporary files a save writes next to its destination
TEMPORARY_MARKER = ".fastrnn-tmp-"

# Bounds that keep a small file from costing much memory when read.
MAX_DOCUMENT_BYTES = 64 << 20
_MAX_HEADER_BYTES = 1 << 16
_READ_CHUNK = 1 << 20


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


def _nested(serialize, value):
    """``serialize`` applied inside the dicts and lists a model's compile arguments may be."""
    if value is None:
        return None
    if isinstance(value, dict) and "class_name" not in value:
        return {key: _nested(serialize, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nested(serialize, item) for item in value]
    return serialize(value)


def _document(model):
    """The JSON document and the arrays (entry name -> ndarray) that describe ``model``."""
    arrays = {}
    weights = []
    for layer in model.layers:
        for weight_name, parameter in getattr(layer, "_weights", []):
            entry = f"weights/{len(weights):05d}.npy"
            arrays[entry] = parameter.values
            weights.append({"entry": entry, "layer": layer.name, "name": weight_name,
                            "shape": list(parameter.shape), "dtype": parameter.dtype.str})
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
            "loss": _nested(losses.serialize, model.loss),
            "loss_weights": model.loss_weights,
            "metrics": _nested(metrics.serialize, model._metric_identifiers),
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
        good choices. A symlink stays a symlink: the file it points to is
        replaced.

    Notes
    -----
    The model is written to a temporary file next to the destination's
    target, ``.<name>.fastrnn-tmp-<pid>-<random>``, flushed to disk and then
    renamed over the target, so a save that fails or is killed never leaves a
    half-written file where the previous one was. A failed save deletes its
    temporary file; one left by a killed process is deleted by the next save
    to the same file (on Windows, where that process cannot be asked about,
    such files are left for the user to delete: they are safe to remove when
    no save is running). A file being replaced keeps its permission bits; a
    new file gets the default ones (``0o666`` less the umask).

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
    # through a symlink the link stays and its target is replaced
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    prefix = f".{name}{TEMPORARY_MARKER}"
    _remove_stale_temporaries(directory, prefix)
    temporary = os.path.join(directory, f"{prefix}{os.getpid()}-{secrets.token_hex(6)}")
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None  # a new file: os.open's 0o666 lets the umask decide, as for any new file
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as raw:
            if mode is not None:  # the replaced file's permissions, set before any data is written
                if hasattr(os, "fchmod"):
                    os.fchmod(raw.fileno(), mode)
                else:
                    os.chmod(temporary, mode)
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(CONFIG_ENTRY, text)
                for entry, array in arrays.items():
                    _write_array(archive, entry, array)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_directory(directory)


def _remove_stale_temporaries(directory, prefix):
    """Delete the temporary files that earlier saves to the same file left when their process died.

    A temporary file is named ``.<name>.fastrnn-tmp-<pid>-<random>``; one whose
    process still runs may belong to a save in progress and is left alone.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for candidate in names:
        if not candidate.startswith(prefix):
            continue
        pid, _, rest = candidate[len(prefix):].partition("-")
        if not (pid.isdigit() and rest and all(c in "0123456789abcdef" for c in rest)):
            continue
        if _process_alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, candidate))
        except OSError:
            pass


def _process_alive(pid):
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there, not ask
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process, or a platform where this cannot be asked: keep the file
    return True


def _sync_directory(directory):
    """Make the rename durable where the platform allows opening a folder (POSIX)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


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
        info = archive.getinfo(CONFIG_ENTRY)
    except KeyError:
        raise ModelFileError(f"{path}: not a fastrnn model file (the archive has no {CONFIG_ENTRY})") from None
    if info.file_size > MAX_DOCUMENT_BYTES:
        raise ModelFileError(f"{path}: {CONFIG_ENTRY} declares {info.file_size} bytes; a model description "
                             f"has at most {MAX_DOCUMENT_BYTES}")
    with archive.open(info) as handle:
        document = json.loads(handle.read(MAX_DOCUMENT_BYTES).decode("utf-8"))
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


def _declared(record, path):
    """The ``shape`` and ``dtype`` a weight record declares, checked to be an array's."""
    entry = record["entry"]
    shape, dtype = record["shape"], record["dtype"]
    if (not isinstance(shape, list)
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape)):
        raise ModelFileError(f"{path}: entry {entry} declares shape {shape!r}; expected a list of sizes")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ModelFileError(f"{path}: entry {entry} declares dtype {dtype!r}, which is none") from None
    if dtype.kind not in "fiub":
        raise ModelFileError(f"{path}: entry {entry} declares dtype {dtype}; weights are numbers")
    return tuple(shape), dtype


def _entry_info(archive, entry, path):
    try:
        return archive.getinfo(entry)
    except KeyError:
        raise ModelFileError(f"{path}: the archive has no entry {entry}") from None


def _check_entry_size(info, nbytes, path):
    """An entry declaring a size its array cannot have is refused before any of it is decompressed."""
    if not nbytes <= info.file_size <= nbytes + _MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: entry {info.filename} declares {info.file_size} bytes; its array "
                             f"takes {nbytes} bytes (plus a header of at most {_MAX_HEADER_BYTES})")


def weight_values(archive, records, path):
    """The number of values the weight entries ``records`` hold, after checking every entry's
    declared size against the shape and dtype the model description gives it.

    This bounds what loading may allocate: see
    :func:`fastrnn.keras.initializers.value_budget`.

    Raises
    ------
    ModelFileError
        When a record's shape or dtype is not an array's, its entry is missing, or the entry's
        declared uncompressed size does not fit the shape and dtype.
    """
    values = 0
    for record in records:
        shape, dtype = _declared(record, path)
        count = math.prod(shape)
        _check_entry_size(_entry_info(archive, record["entry"], path), count * dtype.itemsize, path)
        values += count
    return values


def read_array(archive, record, path):
    """The array of one ``record`` (``entry`` and, optionally, the ``shape`` and ``dtype`` it must have).

    The entry's declared size is checked against the declared shape before
    anything is decompressed, its ``.npy`` header against the declared shape
    and the entry's size, and no more than the header's array is read (the
    zip CRC is still verified), so an entry cannot cost more memory than the
    array it is declared to hold.
    """
    entry = record["entry"]
    info = _entry_info(archive, entry, path)
    declared = _declared(record, path) if "shape" in record else None
    if declared is not None:
        _check_entry_size(info, math.prod(declared[0]) * declared[1].itemsize, path)
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ModelFileError(f"{path}: entry {entry} is in .npy format version {version}; 1.0 or 2.0 "
                                 "was expected")
        if dtype.hasobject:
            raise ModelFileError(f"{path}: entry {entry} holds Python objects; weights are numbers")
        if declared is not None and (shape, dtype) != declared:
            raise ModelFileError(f"{path}: entry {entry} holds an array of shape {shape} and dtype {dtype}; "
                                 f"the model description says {declared[0]} and {declared[1]}")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != handle.tell() + nbytes:
            raise ModelFileError(f"{path}: entry {entry} declares {info.file_size} bytes; its header "
                                 f"({handle.tell()} bytes) and array of shape {shape} and dtype {dtype} "
                                 f"take {handle.tell() + nbytes}")
        array = np.empty(shape[::-1] if fortran_order else shape, dtype)
        target = memoryview(array.reshape(-1).view(np.uint8))
        for start in range(0, nbytes, _READ_CHUNK):
            chunk = handle.read(min(_READ_CHUNK, nbytes - start))
            if len(chunk) != min(_READ_CHUNK, nbytes - start):
                raise ModelFileError(f"{path}: entry {entry} ends before its array does")
            target[start:start + len(chunk)] = chunk
        handle.read(1)  # reaches the end, where zipfile checks the CRC
    return array.T if fortran_order else array
