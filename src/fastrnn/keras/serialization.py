"""Layer (de)serialisation: a layer as ``{"class_name": ..., "config": ...}`` and back.

Used by ``Sequential.get_config`` / ``from_config`` and by the model file; it
knows layers only, never a model.
"""

from fastrnn.exceptions import ArgumentError
from fastrnn.keras import layers
from fastrnn.keras.layers.base import Layer, is_layer_entry

__all__ = ["layer_classes", "serialize_layer", "deserialize_layer"]


def layer_classes(custom_objects=None):
    """Class name -> Layer subclass: every layer fastrnn.keras.layers exports, then ``custom_objects``."""
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
    classes = layer_classes(custom_objects)
    return _revive(entry, classes)


def _revive(entry, classes):
    class_name = entry.get("class_name") if isinstance(entry, dict) else None
    if class_name not in classes:
        raise ArgumentError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(classes))} "
                            "(pass custom_objects={name: class} for your own layers)")
    # nested entries first, with the custom objects; from_config then finds layers there
    config = {key: _revive(value, classes) if is_layer_entry(value, classes) else value
              for key, value in dict(entry.get("config", {})).items()}
    return classes[class_name].from_config(config)
