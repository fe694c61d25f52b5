"""Saving and loading whole fastrnn.keras models to and from one file.

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
"""

import io
import json
import os
import secrets
import zipfile

import numpy as np

from fastrnn.exceptions import ArgumentError
from fastrnn.keras.exceptions import ModelFileError

__all__ = ["ModelFileError", "save_model", "load_model", "serialize_layer", "deserialize_layer",
           "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "fastrnn.keras.model"
FORMAT_VERSION = 1
CONFIG_ENTRY = "fastrnn_model.json"


# layer (de)serialisation ---------------------------------------------------------------
def _layer_classes(custom_objects=None):
    """Class name -> Layer subclass: every layer fastrnn.keras.layers exports, then ``custom_objects``."""
    from fastrnn.keras import layers
    from fastrnn.keras.layers.base import Layer

    classes = {name: obj for name, obj in vars(layers).items()
               if isinstance(obj, type) and issubclass(obj, Layer)}
    for name, obj in (custom_objects or {}).items():
        if isinstance(obj, type) and issubclass(obj, Layer):
            classes[name] = obj
    return classes


def serialize_layer(layer):
    """``{"class_name": ..., "config": layer.get_config()}``; :func:`deserialize_layer` reverses it."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize_layer(entry, custom_objects=None):
    """A new, unbuilt layer from :func:`serialize_layer`'s output.

    Nested entries of the same form inside the config (the layer a wrapper
    such as TimeDistributed or Bidirectional holds) become layers too.

    Parameters
    ----------
    entry : dict
        ``{"class_name": str, "config": dict}``.
    custom_objects : dict, optional
        Class name -> Layer subclass, for layers defined outside fastrnn.

    Returns
    -------
    Layer
    """
    classes = _layer_classes(custom_objects)
    return _revive(entry, classes)


def _is_layer_entry(value, classes):
    return isinstance(value, dict) and set(value) == {"class_name", "config"} and value["class_name"] in classes


def _revive(entry, classes):
    class_name = entry.get("class_name") if isinstance(entry, dict) else None
    if class_name not in classes:
        raise ArgumentError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(classes))} "
                            "(pass custom_objects={name: class} for your own layers)")
    config = {key: _revive(value, classes) if _is_layer_entry(value, classes) else value
              for key, value in dict(entry.get("config", {})).items()}
    cls = classes[class_name]
    from_config = getattr(cls, "from_config", None)
    return from_config(config) if callable(from_config) else cls(**config)


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


# saving -----------------------------------------------------------------------------------
def _write_array(archive, name, array):
    with archive.open(name, "w", force_zip64=array.nbytes > (1 << 30)) as handle:
        np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


def _document(model):
    """The JSON document and the arrays (entry name -> ndarray) that describe ``model``."""
    from fastrnn.keras import losses, metrics, optimizers

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
    from fastrnn import __version__
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
    model : Sequential
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


# loading ----------------------------------------------------------------------------------
def _read_array(archive, record, path):
    entry = record["entry"]
    array = np.lib.format.read_array(io.BytesIO(archive.read(entry)), allow_pickle=False)
    shape = tuple(record["shape"]) if "shape" in record else array.shape
    dtype = np.dtype(record["dtype"]) if "dtype" in record else array.dtype
    if array.shape != shape or array.dtype != dtype:
        raise ModelFileError(f"{path}: entry {entry} holds an array of shape {array.shape} and dtype {array.dtype}; "
                             f"the model description says {shape} and {dtype}")
    return array


def _load(archive, path, custom_objects, compile):
    from fastrnn.keras import losses, optimizers
    from fastrnn.keras.models import Sequential

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
    model_entry = document["model"]
    if model_entry.get("class_name") != "Sequential":
        raise ModelFileError(f"{path}: unknown model class {model_entry.get('class_name')!r}")
    model = Sequential.from_config(model_entry["config"], custom_objects)

    shapes = document["build_shapes"]
    if len(shapes) != len(model.layers):
        raise ModelFileError(f"{path}: {len(shapes)} build shapes for {len(model.layers)} layers")
    for layer, shape in zip(model.layers, shapes):
        if shape is not None and not layer.built:
            layer.build(tuple(shape))

    records = list(document["weights"])
    for layer in model.layers:
        count = len(layer.weights)
        own, records = records[:count], records[count:]
        if len(own) != count or any(record["layer"] != layer.name for record in own):
            raise ModelFileError(f"{path}: the saved weights do not match layer {layer.name!r} "
                                 f"({count} weight(s) expected)")
        layer.set_weights([_read_array(archive, record, path) for record in own])
    if records:
        raise ModelFileError(f"{path}: {len(records)} saved weight(s) belong to no layer")

    setup = document.get("compile")
    if compile and setup is not None:
        custom = custom_objects or {}
        optimizer_entry = setup["optimizer"]
        optimizer = (custom[optimizer_entry["class_name"]].from_config(optimizer_entry["config"])
                     if optimizer_entry["class_name"] in custom else optimizers.get(optimizer_entry))
        loss_entry = setup["loss"]
        loss = None
        if loss_entry is not None:
            loss = (custom[loss_entry["class_name"]].from_config(loss_entry["config"])
                    if loss_entry["class_name"] in custom else losses.get(loss_entry))
        model.compile(optimizer=optimizer, loss=loss, metrics=setup.get("metrics") or [])
        state = document.get("optimizer_state")
        if state is not None:
            slots = [{name: _read_array(archive, {"entry": entry}, path) for name, entry in per_variable.items()}
                     for per_variable in state["slots"]]
            model.optimizer.set_slot_arrays(model.trainable_weights, slots, state["iterations"])
    return model


def load_model(filepath, custom_objects=None, compile=True):
    """Read a model that :func:`save_model` (or ``Sequential.save``) wrote.

    Parameters
    ----------
    filepath : str or os.PathLike
    custom_objects : dict, optional
        Class name -> class, for layers, losses or optimizers defined outside fastrnn.
    compile : bool, default True
        Also restore the optimizer (with its state), loss and metrics, when the
        saved model was compiled.

    Returns
    -------
    Sequential
        With the saved weights, bit for bit.

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    ModelFileError
        When the file is not a fastrnn model, is truncated or corrupted, or
        was written by a newer format version.
    """
    path = os.fspath(filepath)
    with open(path, "rb") as handle:  # FileNotFoundError and PermissionError stay what they are
        try:
            with zipfile.ZipFile(handle) as archive:
                return _load(archive, path, custom_objects, compile)
        except ModelFileError:
            raise
        except zipfile.BadZipFile as error:
            raise ModelFileError(f"{path}: not a fastrnn model file, or a truncated or corrupted one "
                                 f"({error})") from error
        except Exception as error:  # any other damage (bad JSON, missing keys, bad arrays) reads the same way
            raise ModelFileError(f"{path}: damaged or incompatible fastrnn model file: "
                                 f"{type(error).__name__}: {error}") from error
