"""Real Keras files, both ways: Keras 3 ``.keras`` archives, ``.weights.h5`` files and legacy ``.h5`` models.

Reading
    :func:`load_keras_archive` reads a ``.keras`` zip (``config.json``, ``metadata.json``,
    ``model.weights.h5``) and :func:`load_legacy_h5` a Keras 2 style HDF5 model (a
    ``model_config`` attribute and a ``model_weights`` group), Sequential or functional.
    :func:`load_weights_h5` sets a ``.weights.h5`` file's weights into an existing model.
Writing
    :func:`save_keras_archive` writes a ``.keras`` archive that ``keras.saving.load_model``
    of Keras 3 loads into the same model; :func:`save_weights_h5` writes Keras 3's
    ``.weights.h5`` layout. Legacy ``.h5`` models are read, never written (Keras 3 itself
    calls that format legacy).

Keras 3 stores a model's variables in ``model.weights.h5`` by the position of each layer
in ``model.layers``, not by its name: the group of a layer is its class name in snake case,
numbered from the second layer of a class on (``layers/dense``, ``layers/dense_1``), and
its variables are ``vars/0``, ``vars/1``, ... in ``get_weights`` order; a recurrent layer
keeps them in ``cell/vars``, ``Bidirectional`` in ``forward_layer/cell/vars`` and
``backward_layer/cell/vars``, ``TimeDistributed`` in ``layer/vars``
(``keras/src/saving/saving_lib.py``). The same rule both ways keeps fastrnn's files and
Keras's interchangeable.

A file is data, never code: layer configs map onto fastrnn's constructors (``Lambda``
layers, which hold Python bytecode, are refused), nothing is unpickled, and anything
wrong with a file -- malformed JSON, missing keys, unsupported layers (named with their
class), regularizers or constraints fastrnn lacks, weights of the wrong shape, declared
sizes the file does not hold -- raises :class:`ModelFileError`.

Compile settings: a ``.keras`` file's ``compile_config`` compiles the model read (when fastrnn
has its optimizer, losses and metrics; otherwise a warning and an uncompiled model), and a
compiled fastrnn model writes one that Keras reads. Optimizer state (slots, iterations) is not
carried either way: training resumes with fresh moments. Legacy ``.h5`` models are read uncompiled. HDF5 goes through h5py, the ``keras`` extra: ``pip install "fastrnn[keras]"``.
"""

import datetime
import inspect
import io
import json
import math
import os
import re
import zipfile

import numpy as np

from fastrnn._version import __version__
from fastrnn.exceptions import FastRNNError
from fastrnn.keras import initializers
from fastrnn.keras.exceptions import ModelFileError
from fastrnn.keras.layers.input_layer import InputLayer

__all__ = ["load_keras_archive", "load_legacy_h5", "save_keras_archive", "load_weights_h5", "save_weights_h5",
           "is_keras_archive", "is_hdf5", "HDF5_SIGNATURE", "SUPPORTED_LAYERS"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_VERSION_WRITTEN = "3.15.1"  # the Keras release fastrnn's .keras files were checked against

SUPPORTED_LAYERS = frozenset({
    "InputLayer", "Dense", "Embedding", "Activation", "Dropout", "Masking", "TimeDistributed",
    "SimpleRNN", "LSTM", "GRU", "Bidirectional", "Concatenate", "Add", "Subtract", "Multiply", "Average",
    "Maximum", "Minimum", "Dot", "RepeatVector", "Reshape", "Flatten", "Permute", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "LayerNormalization", "Attention", "AdditiveAttention"})
_RECURRENT = {"SimpleRNN", "LSTM", "GRU"}

# Bounds that keep a small file from costing much memory when read.
_MAX_CONFIG_BYTES = 64 << 20
_MAX_WEIGHTS_BYTES = 16 << 30
_MAX_DEPTH = 32

# Keras config keys fastrnn has no argument for, and the values that mean "nothing to do".
_NEUTRAL = {"quantization_config": (None,), "unroll": (False,), "sparse": (False, None), "ragged": (False, None),
            "optional": (False,), "time_major": (False,), "seed": None, "implementation": None,
            "batch_size": None, "input_length": None}


def _require_h5py():
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading or writing Keras HDF5 files (.keras, .weights.h5, .h5) needs h5py: "
                          'pip install "fastrnn[keras]" (or pip install h5py)') from error
    return h5py


def is_hdf5(path):
    """Whether the file at ``path`` starts with HDF5's signature."""
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def is_keras_archive(archive):
    """Whether an open :class:`zipfile.ZipFile` is a Keras 3 ``.keras`` archive."""
    return "config.json" in archive.namelist()


def _snake_case(name):
    # keras.src.utils.naming.to_snake_case
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


# -------------------------------------------------------------------------------------------------
# Keras configs -> fastrnn configs
# -------------------------------------------------------------------------------------------------
def _accepted_arguments(cls):
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` up the class chain."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names - {"self"}


def _dtype_name(value, where):
    if isinstance(value, dict):  # a DTypePolicy
        value = (value.get("config") or {}).get("name")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ModelFileError(f"{where}: dtype {value!r} is not a dtype name")
    return value


def _initializer(value, where):
    """A fastrnn initializer identifier for a Keras one, or None for one fastrnn lacks (the
    layer's default: the file's weights replace what it draws anyway)."""
    if value is None or isinstance(value, str):
        try:
            initializers.get(value)
        except FastRNNError:
            return None
        return value
    if not isinstance(value, dict):
        raise ModelFileError(f"{where}: initializer {value!r} is neither a name nor a config")
    config = value.get("config") or {}
    try:
        cls = getattr(initializers, str(value.get("class_name")), None)
        if not (isinstance(cls, type) and issubclass(cls, initializers.Initializer)):
            return None
        accepted = _accepted_arguments(cls)
        return {"class_name": cls.__name__, "config": {k: v for k, v in config.items() if k in accepted}}
    except (TypeError, ValueError):
        return None


def _layer_name(entry):
    if isinstance(entry, dict):
        config = entry.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        return entry.get("name", name)
    return None


def _layer_from_keras(entry, layer_classes, depth=0):
    """A fastrnn layer entry ``{"class_name", "config"}`` from a Keras one."""
    if depth > _MAX_DEPTH:
        raise ModelFileError("layer configs nested too deeply")
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), dict):
        raise ModelFileError(f"a layer entry is not {{'class_name': str, 'config': dict}}: {str(entry)[:200]}")
    class_name, name = entry["class_name"], _layer_name(entry)
    where = f"layer {name!r} ({class_name})"
    if class_name == "Lambda":
        raise ModelFileError(f"{where}: Lambda layers hold Python code, which fastrnn never runs from a "
                             "file; rebuild the model in code with the Lambda and load its weights")
    if class_name not in SUPPORTED_LAYERS:
        raise ModelFileError(f"{where}: fastrnn.keras has no such layer; supported: "
                             f"{', '.join(sorted(SUPPORTED_LAYERS))}")
    cls = layer_classes[class_name]
    accepted = _accepted_arguments(cls)
    config = {}
    for key, value in entry["config"].items():
        if key == "dtype":
            value = _dtype_name(value, where)
            if class_name != "InputLayer" and value not in (None, "float32", "float64"):
                raise ModelFileError(f"{where}: dtype policy {value!r}; fastrnn layers compute in float32 "
                                     "or float64")
            if value is not None:
                config[key] = value
        elif key.endswith("_regularizer") or key.endswith("_constraint"):
            if value is not None:
                raise ModelFileError(f"{where}: {key} = {str(value)[:200]}; fastrnn.keras has no "
                                     "regularizers or constraints (only None is accepted)")
        elif key.endswith("_initializer"):
            value = _initializer(value, f"{where}, {key}")
            if value is not None:
                config[key] = value
        elif key in ("layer", "backward_layer") and class_name in ("TimeDistributed", "Bidirectional"):
            config[key] = _layer_from_keras(value, layer_classes, depth + 1)
        elif key == "batch_input_shape" and class_name == "InputLayer":
            config["batch_shape"] = value
        elif key in accepted:
            config[key] = value
        elif key in _NEUTRAL:
            if _NEUTRAL[key] is not None and value not in _NEUTRAL[key]:
                raise ModelFileError(f"{where}: {key} = {value!r} is not supported by fastrnn.keras")
        else:
            raise ModelFileError(f"{where}: config key {key!r} = {str(value)[:200]} has no fastrnn.keras "
                                 "equivalent")
    if class_name == "Bidirectional" and "backward_layer" in config and "backward_layer" not in accepted:
        config.pop("backward_layer")
    return {"class_name": class_name, "config": config}


def _tensor(history):
    return {"class_name": "__keras_tensor__", "config": {"keras_history": list(history)}}


def _keras2_nodes(nodes, where):
    """Keras 2's ``[[[layer, node, index, kwargs], ...], ...]`` as Keras 3's ``{"args", "kwargs"}``."""
    converted = []
    for node in nodes:
        if isinstance(node, dict):
            converted.append(node)
            continue
        if not isinstance(node, list) or not node:
            raise ModelFileError(f"{where}: an inbound node is neither a dict nor a list of tensors")
        tensors = []
        kwargs = {}
        for item in node:
            if not isinstance(item, list) or len(item) < 3:
                raise ModelFileError(f"{where}: an inbound tensor is not [layer, node, index, kwargs]")
            tensors.append(_tensor(item[:3]))
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs = {key: _revive_keras2_kwarg(value) for key, value in item[3].items()}
        converted.append({"args": [tensors[0]] if len(tensors) == 1 else [tensors], "kwargs": kwargs})
    return converted


def _revive_keras2_kwarg(value):
    # Keras 2 writes a tensor in a call's kwargs as [layer, node, index] (lists of them for initial_state)
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(
            isinstance(v, int) for v in value[1:]):
        return _tensor(value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [_revive_keras2_kwarg(v) for v in value]
    return value


def _histories(value, found):
    """Every keras_history inside a node's args or kwargs, into ``found``."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = (value.get("config") or {}).get("keras_history")
            if isinstance(history, list) and history:
                found.append(history[0])
            return
        for item in value.values():
            _histories(item, found)
    elif isinstance(value, list):
        for item in value:
            _histories(item, found)


def _functional_from_keras(config, layer_classes):
    """fastrnn's functional config (``Model.from_config``) from Keras's."""
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ModelFileError("the model config has no list of layers")
    # Keras 3 records the masks it computes as op nodes (NotEqual of an Embedding's input) passed as
    # mask=; fastrnn's layers compute and pass those masks themselves, so such ops and kwargs go
    ops, unsupported = set(), []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ModelFileError("a layer entry of the model config is not a dict")
        module = entry.get("module") or ""
        if module.startswith("keras.src.ops") or entry.get("class_name") in ("NotEqual",):
            ops.add(entry.get("name"))
    layers = []
    for entry in entries:
        name = entry.get("name")
        if name in ops:
            continue
        if entry.get("class_name") not in SUPPORTED_LAYERS:
            unsupported.append(f"{name!r} ({entry.get('class_name')})")
            if entry.get("class_name") == "Lambda":
                _layer_from_keras(entry, layer_classes)
            continue
        converted = _layer_from_keras(entry, layer_classes)
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ModelFileError(f"layer {name!r}: inbound_nodes is not a list")
        nodes = _keras2_nodes(nodes, f"layer {name!r}")
        cleaned = []
        for node in nodes:
            args, kwargs = node.get("args", []), dict(node.get("kwargs") or {})
            kwargs.pop("training", None)
            if "mask" in kwargs:
                found = []
                _histories(kwargs["mask"], found)
                if any(source in ops for source in found):
                    kwargs.pop("mask")
            found = []
            _histories([args, kwargs], found)
            used_ops = sorted(set(found) & ops)
            if used_ops:
                raise ModelFileError(f"layer {name!r} takes the output of the Keras operation(s) {used_ops} "
                                     "as an input; fastrnn.keras has no such operations")
            cleaned.append({"args": args, "kwargs": kwargs})
        if "name" not in converted["config"]:
            converted["config"]["name"] = name
        layers.append({**converted, "name": name, "inbound_nodes": cleaned})
    if unsupported:
        raise ModelFileError(f"unsupported layer(s) in the Keras file: {', '.join(unsupported)}; "
                             f"fastrnn.keras supports {', '.join(sorted(SUPPORTED_LAYERS))}")

    def histories(value):
        if isinstance(value, list) and value and isinstance(value[0], list):
            return [list(v[:3]) for v in value]
        return list(value[:3]) if isinstance(value, list) else value

    result = {"name": config.get("name"), "trainable": config.get("trainable", True), "layers": layers,
              "input_layers": histories(config.get("input_layers")),
              "output_layers": histories(config.get("output_layers"))}
    # Keras 2 lists one input as [[name, 0, 0]]; fastrnn then returns a list of one output
    for key in ("input_layers", "output_layers"):
        value = result[key]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
            result[key] = value[0]
    return result


def _sequential_from_keras(config, layer_classes):
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ModelFileError("the Sequential config has no list of layers")
    layers, input_shape = [], config.get("build_input_shape")
    unsupported = [f"{_layer_name(e)!r} ({e.get('class_name')})" for e in entries
                   if isinstance(e, dict) and e.get("class_name") not in SUPPORTED_LAYERS]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("class_name") == "Lambda":
            _layer_from_keras(entry, layer_classes)
    if unsupported:
        raise ModelFileError(f"unsupported layer(s) in the Keras file: {', '.join(unsupported)}; "
                             f"fastrnn.keras supports {', '.join(sorted(SUPPORTED_LAYERS))}")
    for entry in entries:
        converted = _layer_from_keras(entry, layer_classes)
        if converted["class_name"] == "InputLayer":
            input_shape = converted["config"].get("batch_shape", input_shape)
            continue
        # Keras 2 puts the input shape on the first layer
        shape = entry["config"].get("batch_input_shape") if isinstance(entry.get("config"), dict) else None
        if shape is not None and not layers:
            input_shape = shape
        layers.append(converted)
    return {"name": config.get("name", "sequential"), "layers": layers,
            "input_shape": None if input_shape is None else list(input_shape)}


def _model_from_keras_config(document, budget, where, model_classes):
    """A fastrnn model from a Keras ``config.json`` (or ``model_config``) document, layers built;
    ``model_classes`` maps "Sequential", "Functional" and "Model" to fastrnn's classes."""
    from fastrnn.keras.serialization import layer_classes

    Sequential, Model = model_classes["Sequential"], model_classes["Functional"]

    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise ModelFileError("the model config is not {'class_name': ..., 'config': {...}}")
    class_name = document.get("class_name")
    classes = layer_classes()

    def too_many(requested, left):
        return ModelFileError(f"{where}: the layers' configurations ask for more weight values than the file's "
                              f"{budget} stored ones (a weight of {requested} values with {left} left)")

    with initializers.value_budget(budget, too_many):
        if class_name == "Sequential":
            config = _sequential_from_keras(document["config"], classes)
            model = Sequential.from_config(config)
            if config["input_shape"] is None and model.layers and not model.built:
                model._try_build_for_summary()
        elif class_name in ("Functional", "Model"):
            model = Model.from_config(_functional_from_keras(document["config"], classes))
        else:
            raise ModelFileError(f"model class {class_name!r}: fastrnn reads Sequential and functional models "
                                 "(a subclassed Keras model's code is not in its file)")
    return model


# -------------------------------------------------------------------------------------------------
# compile settings
# -------------------------------------------------------------------------------------------------
_OPTIMIZER_NEUTRAL = {"name": None, "use_ema": (False,), "ema_momentum": None, "ema_overwrite_frequency": None,
                      "loss_scale_factor": (None,), "gradient_accumulation_steps": (None,), "is_legacy_optimizer": None,
                      "decay": (0, 0.0, None), "jit_compile": None}


def _compile_from_keras(model, compile_config, where):
    """Compile ``model`` as the Keras file's ``compile_config`` says, when fastrnn has its optimizer,
    losses and metrics; otherwise warn and leave it uncompiled (as Keras does with what it cannot read)."""
    import warnings

    from fastrnn.keras import optimizers

    from fastrnn.keras import losses, metrics

    def revive(value, module):  # a Keras object config (module, registered_name) made that object
        if isinstance(value, dict) and "class_name" in value:
            return module.get({"class_name": value["class_name"], "config": value.get("config") or {}})
        if isinstance(value, dict):  # by output name
            return {key: revive(item, module) for key, item in value.items()}
        if isinstance(value, list):
            return [revive(item, module) for item in value]
        return value

    try:
        entry = compile_config["optimizer"]
        if isinstance(entry, dict):
            cls = getattr(optimizers, str(entry.get("class_name")), None)
            if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)):
                raise ValueError(f"optimizer {entry.get('class_name')!r}")
            accepted = _accepted_arguments(cls)
            config = {}
            for key, value in (entry.get("config") or {}).items():
                if key in accepted:
                    config[key] = value
                elif key not in _OPTIMIZER_NEUTRAL or (_OPTIMIZER_NEUTRAL[key] is not None
                                                       and value not in _OPTIMIZER_NEUTRAL[key]):
                    raise ValueError(f"optimizer setting {key}={value!r}")
            optimizer = cls(**config)
        else:
            optimizer = optimizers.get(entry)
        if compile_config.get("weighted_metrics"):
            raise ValueError("weighted_metrics")
        model.compile(optimizer=optimizer, loss=revive(compile_config.get("loss"), losses),
                      loss_weights=compile_config.get("loss_weights"),
                      metrics=revive(compile_config.get("metrics"), metrics))
    except (FastRNNError, TypeError, ValueError, KeyError, AttributeError) as error:
        warnings.warn(f"{where}: the model is returned uncompiled: fastrnn cannot read its compile settings "
                      f"({error}); compile it yourself", stacklevel=4)


# -------------------------------------------------------------------------------------------------
# weights: where each layer's variables live
# -------------------------------------------------------------------------------------------------
def _variable_groups(layer, path):
    """``[(group path, count)]`` where ``layer``'s weights live in a Keras 3 weights file, in
    ``get_weights`` order."""
    kind = type(layer).__name__
    if kind in _RECURRENT:
        return [(f"{path}/cell/vars", len(layer.weights))]
    if kind == "Bidirectional":
        return (_variable_groups(layer.forward_layer, f"{path}/forward_layer")
                + _variable_groups(layer.backward_layer, f"{path}/backward_layer"))
    if kind == "TimeDistributed":
        return _variable_groups(layer.layer, f"{path}/layer")
    return [(f"{path}/vars", len(layer.weights))]


def _layer_paths(model, prefix="layers"):
    """``[(layer, path)]`` in ``model.layers`` order, named as Keras 3 names them."""
    used, result = {}, []
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        if base in used:
            used[base] += 1
            base = f"{base}_{used[base]}"
        else:
            used[base] = 0
        result.append((layer, f"{prefix}/{base}"))
    return result


def _check_sizes(h5file, file_bytes, where):
    """Refuse datasets declaring more data than the file holds (compressed or forged sizes), and count values."""
    h5py = _require_h5py()
    links = []
    h5file.visititems_links(lambda name, link: links.append(name) if isinstance(
        link, (h5py.ExternalLink, h5py.SoftLink)) else None)
    if links:
        raise ModelFileError(f"{where}: the HDF5 file holds links ({', '.join(links[:5])}); a weights file "
                             "reads only its own data")
    datasets = []
    h5file.visititems(lambda name, obj: datasets.append(obj) if hasattr(obj, "shape") else None)
    declared, values = 0, 0
    for dataset in datasets:
        if dataset.external or dataset.is_virtual:
            raise ModelFileError(f"{where}: dataset {dataset.name} stores its data in other files; a weights "
                                 "file reads only its own data")
        shape = dataset.shape or ()
        count = math.prod(shape)
        declared += count * dataset.dtype.itemsize
        values += count
    if declared > file_bytes + (1 << 20):
        raise ModelFileError(f"{where}: the datasets declare {declared} bytes but the file holds {file_bytes} "
                             "(compressed or forged weights are not read)")
    return values


def _read_dataset(group, key, expected_shape, where):
    if key not in group:
        raise ModelFileError(f"{where}: missing weight {group.name}/{key}")
    dataset = group[key]
    if not hasattr(dataset, "shape"):
        raise ModelFileError(f"{where}: {group.name}/{key} is not a dataset")
    if tuple(dataset.shape) != tuple(expected_shape):
        raise ModelFileError(f"{where}: weight {group.name}/{key} has shape {tuple(dataset.shape)}, "
                             f"expected {tuple(expected_shape)}")
    if dataset.dtype.kind not in "fiu":
        raise ModelFileError(f"{where}: weight {group.name}/{key} has dtype {dataset.dtype}, expected a number")
    return np.asarray(dataset[()])


def _set_weights_from_h5(model, h5file, where):
    """Set every layer's weights from a Keras 3 weights file, all or nothing."""
    arrays = []
    for layer, path in _layer_paths(model):
        expected = [w.shape for w in layer.weights]
        values = []
        for group_path, count in _variable_groups(layer, path):
            if count == 0:
                continue
            group = h5file.get(group_path)
            if group is None or hasattr(group, "shape"):
                raise ModelFileError(f"{where}: no weights for layer {layer.name!r} ({type(layer).__name__}) "
                                     f"at {group_path}")
            stored = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
            if len(stored) != count:
                raise ModelFileError(f"{where}: layer {layer.name!r} ({type(layer).__name__}) has {count} "
                                     f"weight(s) at {group_path}; the file holds {len(stored)}")
            for index in range(count):
                shape = expected[len(values)]
                values.append(_read_dataset(group, str(index), shape, f"{where}, layer {layer.name!r}"))
        arrays.extend(values)
    _set_all(model, arrays, where)


def _set_all(model, arrays, where):
    try:
        model.set_weights([np.asarray(a, dtype=w.dtype) for a, w in zip(arrays, model.weights)]
                          if len(arrays) == len(model.weights) else arrays)
    except FastRNNError as error:
        raise ModelFileError(f"{where}: {error}") from error


def _write_weights(model, h5file):
    h5file.create_group("layers")
    for layer, path in _layer_paths(model):
        h5file.create_group(path).create_group("vars").attrs["name"] = layer.name
        weights = layer.get_weights()
        for group_path, count in _variable_groups(layer, path):
            group = h5file.require_group(group_path)
            own, weights = weights[:count], weights[count:]
            for index, array in enumerate(own):
                group.create_dataset(str(index), data=array)
    h5file.create_group("vars").attrs["name"] = model.name


def _open_h5(source, where):
    h5py = _require_h5py()
    try:
        return h5py.File(source, "r")
    except OSError as error:
        raise ModelFileError(f"{where}: not a readable HDF5 file ({error})") from error


def _guarded(where, function, *args):
    """Run ``function``; damage to the file reads as ModelFileError, never another exception."""
    try:
        return function(*args)
    except (ModelFileError, ImportError):
        raise
    except FastRNNError as error:
        raise ModelFileError(f"{where}: {error}") from error
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, LookupError, OSError,
            RecursionError, OverflowError, MemoryError, UnicodeError) as error:
        raise ModelFileError(f"{where}: damaged or unsupported Keras file: {type(error).__name__}: "
                             f"{error}") from error


# -------------------------------------------------------------------------------------------------
# public functions
# -------------------------------------------------------------------------------------------------
def _read_json(text, where):
    try:
        return json.loads(text)
    except (ValueError, UnicodeError, RecursionError) as error:
        raise ModelFileError(f"{where}: malformed JSON ({error})") from error


def load_keras_archive(archive, where, model_classes, compile=True):
    """A model from an open Keras 3 ``.keras`` :class:`zipfile.ZipFile`.

    Parameters
    ----------
    archive : zipfile.ZipFile
    where : str
        The file's name, for messages.
    model_classes : dict
        ``{"Sequential": ..., "Functional": ..., "Model": ...}``: fastrnn's model classes
        (:mod:`fastrnn.keras.saving` passes them; this module does not import the models).

    compile : bool, default True
        Compile the model as the file's ``compile_config`` says, when fastrnn has its
        optimizer, losses and metrics (a warning otherwise). The optimizer's state is not read.

    Returns
    -------
    Sequential or Model
        With the file's weights.

    Raises
    ------
    ModelFileError
        For anything wrong with the file, unsupported layers (named) included.
    """
    def load():
        names = archive.namelist()
        for member in ("config.json", "model.weights.h5"):
            if member not in names:
                raise ModelFileError(f"{where}: a Keras archive without {member}")
        info = archive.getinfo("config.json")
        if info.file_size > _MAX_CONFIG_BYTES:
            raise ModelFileError(f"{where}: config.json of {info.file_size} bytes is too large")
        document = _read_json(archive.read("config.json"), where)
        weights_info = archive.getinfo("model.weights.h5")
        if weights_info.file_size > _MAX_WEIGHTS_BYTES:
            raise ModelFileError(f"{where}: model.weights.h5 of {weights_info.file_size} bytes is too large")
        data = archive.read("model.weights.h5")
        with _open_h5(io.BytesIO(data), where) as h5file:
            budget = _check_sizes(h5file, len(data), where)
            model = _model_from_keras_config(document, budget, where, model_classes)
            _set_weights_from_h5(model, h5file, where)
        setup = document.get("compile_config") if isinstance(document, dict) else None
        if compile and isinstance(setup, dict) and setup.get("optimizer") is not None:
            _compile_from_keras(model, setup, where)
        return model

    return _guarded(where, load)


def load_legacy_h5(path, model_classes):
    """A model from a legacy (Keras 2 style) HDF5 file: ``model_config`` and ``model_weights``.

    Parameters
    ----------
    path : str
    model_classes : dict
        As for :func:`load_keras_archive`.

    Returns
    -------
    Sequential or Model
        Uncompiled, with the file's weights.

    Raises
    ------
    ModelFileError
        For anything wrong with the file, unsupported layers (named) included, and for an
        HDF5 file that holds weights only (load those with ``model.load_weights``).
    """
    def load():
        with _open_h5(path, path) as h5file:
            if "model_config" not in h5file.attrs:
                raise ModelFileError(f"{path}: an HDF5 file without a model config (a weights file? load it "
                                     "into a model with model.load_weights)")
            text = h5file.attrs["model_config"]
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            if not isinstance(text, str) or len(text) > _MAX_CONFIG_BYTES:
                raise ModelFileError(f"{path}: model_config is not a JSON string of a sensible size")
            document = _read_json(text, path)
            budget = _check_sizes(h5file, os.path.getsize(path), path)
            weights = h5file.get("model_weights", h5file)
            model = _model_from_keras_config(document, budget, path, model_classes)
            arrays = []
            for layer in model.layers:
                if isinstance(layer, InputLayer) or not layer.weights:
                    continue
                group = weights.get(layer.name)
                if group is None:
                    raise ModelFileError(f"{path}: no weights for layer {layer.name!r} ({type(layer).__name__})")
                names = [n.decode("utf-8") if isinstance(n, bytes) else str(n)
                         for n in group.attrs.get("weight_names", [])]
                if len(names) != len(layer.weights):
                    raise ModelFileError(f"{path}: layer {layer.name!r} ({type(layer).__name__}) has "
                                         f"{len(layer.weights)} weight(s); the file holds {len(names)}")
                for name, weight in zip(names, layer.weights):
                    arrays.append(_read_dataset(group, name, weight.shape, f"{path}, layer {layer.name!r}"))
            _set_all(model, arrays, path)
        return model

    return _guarded(path, load)


def load_weights_h5(model, path):
    """Set ``model``'s weights from a Keras 3 ``.weights.h5`` file (or a legacy ``.h5`` model's
    weights), all or nothing, matching layers by position as Keras does.

    Raises
    ------
    ModelFileError
        When the file does not hold weights of this architecture.
    """
    def load():
        if not model.built:
            raise ModelFileError(f"{path}: the model is not built; build it (or call it once) before "
                                 "loading weights")
        with _open_h5(path, path) as h5file:
            _check_sizes(h5file, os.path.getsize(path), path)
            if "layers" in h5file:
                _set_weights_from_h5(model, h5file, path)
                return
            group = h5file.get("model_weights", h5file)  # Keras 2's layout: by layer name
            names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])]
            arrays, layers = [], [layer for layer in model.layers if layer.weights]
            stored = [n for n in names if len(group[n].attrs.get("weight_names", [])) > 0]
            if len(stored) != len(layers):
                raise ModelFileError(f"{path}: the file holds weights of {len(stored)} layer(s); the model has "
                                     f"{len(layers)} with weights")
            for layer, name in zip(layers, stored):
                weight_names = [n.decode("utf-8") if isinstance(n, bytes) else str(n)
                                for n in group[name].attrs["weight_names"]]
                if len(weight_names) != len(layer.weights):
                    raise ModelFileError(f"{path}: layer {layer.name!r} has {len(layer.weights)} weight(s); "
                                         f"the file's {name!r} holds {len(weight_names)}")
                for weight_name, weight in zip(weight_names, layer.weights):
                    arrays.append(_read_dataset(group[name], weight_name, weight.shape, path))
            _set_all(model, arrays, path)

    _guarded(path, load)


def save_weights_h5(model, path):
    """Write ``model``'s weights in Keras 3's ``.weights.h5`` layout (``model.save_weights``)."""
    h5py = _require_h5py()
    if not model.built:
        raise ModelFileError("the model is not built, so it has no weights to save; build it first")
    with h5py.File(os.fspath(path), "w") as h5file:
        _write_weights(model, h5file)


# -------------------------------------------------------------------------------------------------
# fastrnn configs -> Keras configs
# -------------------------------------------------------------------------------------------------
_FASTRNN_ONLY = {"precision", "backend", "n_threads"}


def _keras_initializer(value):
    if isinstance(value, dict) and set(value) == {"class_name", "config"}:
        return {"module": "keras.initializers", "class_name": value["class_name"], "config": value["config"],
                "registered_name": None}
    return value


def _layer_to_keras(entry):
    config = {}
    for key, value in entry["config"].items():
        if key in _FASTRNN_ONLY:
            continue
        if key.endswith("_initializer"):
            value = _keras_initializer(value)
        elif key in ("layer", "backward_layer") and isinstance(value, dict) and "class_name" in value:
            value = _layer_to_keras(value)
        elif key == "dtype" and entry["class_name"] != "InputLayer":
            value = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": value},
                     "registered_name": None}
        config[key] = value
    if entry["class_name"] == "InputLayer":
        config.setdefault("dtype", "float32")
    return {"module": "keras.layers", "class_name": entry["class_name"], "config": config, "registered_name": None}


def _keras_model_config(model):
    from fastrnn.keras.serialization import serialize_layer

    unsupported = [f"{layer.name!r} ({type(layer).__name__})" for layer in _all_layers(model)
                   if type(layer).__name__ not in SUPPORTED_LAYERS]
    if unsupported:
        raise ModelFileError(f"cannot write layer(s) {', '.join(unsupported)} to a Keras file: Keras would "
                             "need their code; save in fastrnn's own format (.fastrnn) instead")
    if not hasattr(model, "_nodes"):  # a Sequential (a functional Model keeps its graph's nodes)
        input_shape = model._input_shape
        if input_shape is None:
            input_shape = (None,) + tuple(model.layers[0].input_shape)
        layers = [{"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"batch_shape": list(input_shape), "dtype": _input_dtype(model),
                              "sparse": False, "ragged": False, "name": f"{model.name}_input"},
                   "registered_name": None}]
        for layer in model.layers:
            layers.append({**_layer_to_keras(serialize_layer(layer)),
                           "build_config": {"input_shape": [None] + list(layer.input_shape)}})
        return {"module": "keras", "class_name": "Sequential",
                "config": {"name": model.name, "trainable": getattr(model, "trainable", True), "layers": layers,
                           "build_input_shape": list(input_shape)},
                "registered_name": None, "build_config": {"input_shape": list(input_shape)}}
    config = model.get_config()
    layers = [{**_layer_to_keras({"class_name": e["class_name"], "config": e["config"]}),
               "name": e["name"], "inbound_nodes": e["inbound_nodes"]} for e in config["layers"]]
    layers = _explicit_masks(layers)
    keras_config = {"name": config["name"], "trainable": config["trainable"], "layers": layers,
                    "input_layers": config["input_layers"], "output_layers": config["output_layers"]}
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": keras_config,
            "registered_name": "Functional", "build_config": {"input_shape": None}}


def _explicit_masks(layers):
    """Keras 3 (3.15) drops the mask an RNN's input carries when the RNN is called with
    ``initial_state``; fastrnn keeps it. Where that mask comes straight from an
    ``Embedding(mask_zero=True)``, the Keras config gets it explicitly, as Keras itself records
    an explicit mask: a ``NotEqual(tokens, 0)`` op passed as ``mask=``."""
    by_name = {entry["name"]: entry for entry in layers}
    result, count = [], 0
    for entry in layers:
        if entry["class_name"] in _RECURRENT | {"Bidirectional"}:
            for node in entry["inbound_nodes"]:
                kwargs = node["kwargs"]
                if "initial_state" not in kwargs or "mask" in kwargs or not node["args"]:
                    continue
                tensor = node["args"][0]
                source = by_name.get(tensor["config"]["keras_history"][0]) if isinstance(tensor, dict) else None
                if source is None or source["class_name"] != "Embedding" or \
                        not source["config"].get("mask_zero") or len(source["inbound_nodes"]) != 1:
                    continue
                tokens = source["inbound_nodes"][0]["args"][0]
                name = f"fastrnn_mask_{count}"
                count += 1
                result.append({"module": "keras.src.ops.numpy", "class_name": "NotEqual",
                               "config": {"name": name}, "registered_name": "NotEqual", "name": name,
                               "inbound_nodes": [{"args": [tokens, 0], "kwargs": {}}]})
                kwargs["mask"] = {"class_name": "__keras_tensor__",
                                  "config": {"shape": tokens["config"].get("shape"), "dtype": "bool",
                                             "keras_history": [name, 0, 0]}}
        result.append(entry)
    return result


def _keras_compile_config(model):
    """Keras's ``compile_config`` of a compiled model, or None (uncompiled)."""
    from fastrnn.keras import losses, metrics, optimizers
    from fastrnn.keras.model_file import _nested

    if model.optimizer is None:
        return None

    def with_module(value, module):
        if isinstance(value, dict) and "class_name" in value:
            return {"module": module, "class_name": value["class_name"], "config": value["config"],
                    "registered_name": None}
        if isinstance(value, dict):
            return {key: with_module(item, module) for key, item in value.items()}
        if isinstance(value, list):
            return [with_module(item, module) for item in value]
        return value

    optimizer = optimizers.serialize(model.optimizer)
    return {"optimizer": with_module(optimizer, "keras.optimizers"),
            "loss": with_module(_nested(losses.serialize, model.loss), "keras.losses"),
            "loss_weights": model.loss_weights,
            "metrics": with_module(_nested(metrics.serialize, model._metric_identifiers), "keras.metrics"),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


def _input_dtype(model):
    first = model.layers[0]
    return "int32" if type(first).__name__ == "Embedding" else "float32"


def _all_layers(model):
    stack, result = list(model.layers), []
    while stack:
        layer = stack.pop()
        result.append(layer)
        for attribute in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attribute, None)
            if inner is not None and hasattr(inner, "get_config") and type(layer).__name__ in (
                    "TimeDistributed", "Bidirectional"):
                stack.append(inner)
    return result


def save_keras_archive(model, path):
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.saving.load_model`` reads.

    Parameters
    ----------
    model : Sequential or Model
        Built (its weights exist).
    path : str

    Raises
    ------
    ModelFileError
        For an unbuilt model or a layer Keras has no class for.
    ImportError
        When h5py (the ``keras`` extra) is missing.
    """
    h5py = _require_h5py()
    if not model.built:
        raise ModelFileError("the model is not built, so it has no weights to save; build it first")
    from fastrnn.keras.model_file import _json_default

    document = _keras_model_config(model)
    compile_config = _keras_compile_config(model)
    if compile_config is not None:
        document["compile_config"] = compile_config
    text = json.dumps(document, indent=1, default=_json_default)
    metadata = json.dumps({"keras_version": KERAS_VERSION_WRITTEN, "date_saved":
                           datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                           "fastrnn_version": __version__})
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5file:
        _write_weights(model, h5file)
    target = os.fspath(path)
    temporary = f"{target}.fastrnn-tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("metadata.json", metadata)
            archive.writestr("config.json", text)
            archive.writestr("model.weights.h5", buffer.getvalue())
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
