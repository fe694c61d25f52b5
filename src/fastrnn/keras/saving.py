"""Saving and loading whole fastrnn.keras models to and from one file.

``save_model`` (also ``Model.save``) writes the format of
:mod:`fastrnn.keras.model_file`; ``load_model`` reads it back into a
``Sequential`` or a functional ``Model``. Anything wrong with a file being loaded -- not a zip,
truncated, corrupted, another format or a newer version, arrays that do not
match the structure -- raises :class:`ModelFileError`.
"""

import os
import zipfile

from fastrnn.keras import initializers, losses, optimizers
from fastrnn.keras.exceptions import ModelFileError
from fastrnn.keras.model_file import (CONFIG_ENTRY, FORMAT_NAME, FORMAT_VERSION, read_array, read_document,
                                      save_model, weight_values)
from fastrnn.keras.serialization import deserialize_layer, serialize_layer
from fastrnn.keras.training import MODEL_CLASSES

__all__ = ["ModelFileError", "save_model", "load_model", "serialize_layer", "deserialize_layer",
           "FORMAT_NAME", "FORMAT_VERSION", "CONFIG_ENTRY"]


def _load(archive, path, custom_objects, compile):
    document = read_document(archive, path)
    model_entry = document["model"]
    model_class = MODEL_CLASSES.get(model_entry.get("class_name"))
    if model_class is None:
        raise ModelFileError(f"{path}: unknown model class {model_entry.get('class_name')!r}")
    # the layers' initial weights may hold no more values than the file's weights: a config
    # declaring huge layers fails here, before they are allocated and drawn
    values = weight_values(archive, document["weights"], path)

    def too_many(requested, left):
        return ModelFileError(f"{path}: the layers' configurations ask for more weight values than the "
                              f"file's {values} saved ones (a weight of {requested} values with {left} left)")

    with initializers.value_budget(values, too_many):
        model = model_class.from_config(model_entry["config"], custom_objects)
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
        layer.set_weights([read_array(archive, record, path) for record in own])
    if records:
        raise ModelFileError(f"{path}: {len(records)} saved weight(s) belong to no layer")

    setup = document.get("compile")
    if compile and setup is not None:
        custom = custom_objects or {}
        optimizer_entry = setup["optimizer"]
        optimizer = (custom[optimizer_entry["class_name"]].from_config(optimizer_entry["config"])
                     if optimizer_entry["class_name"] in custom else optimizers.get(optimizer_entry))
        def loss_of(entry):
            if entry is None:
                return None
            if isinstance(entry, list):
                return [loss_of(item) for item in entry]
            if "class_name" not in entry:  # a dict by output name
                return {name: loss_of(item) for name, item in entry.items()}
            return (custom[entry["class_name"]].from_config(entry["config"])
                    if entry["class_name"] in custom else losses.get(entry))

        model.compile(optimizer=optimizer, loss=loss_of(setup["loss"]), loss_weights=setup.get("loss_weights"),
                      metrics=setup.get("metrics") or [])
        state = document.get("optimizer_state")
        if state is not None:
            slots = [{name: read_array(archive, {"entry": entry}, path) for name, entry in per_variable.items()}
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
    Sequential or Model
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
