"""The Keras-style models: the functional :class:`Model`, a graph of layers from Inputs to outputs,
and :class:`Sequential`, a stack of layers. Both train with :class:`fastrnn.keras.training.TrainingModel`.

A functional model runs the layer calls its outputs need (:func:`fastrnn.keras.functional.graph_between`)
in order, each on the arrays of its input tensors, with the masks that travel along; its backward pass
runs them in reverse, each from the sum of the gradients its outputs received (a tensor read by two
layers gets both), a shared layer through each call's own tape
(:meth:`~fastrnn.keras.layers.base.Layer.tape_state`). A layer given tensors in a keyword (an RNN's
``initial_state``) leaves their gradients in ``grad_<keyword>`` after its backward pass.
"""


from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras.functional import Input, graph_between
from fastrnn.keras.symbolic import KerasTensor
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.input_layer import InputLayer
from fastrnn.keras.saving import load_model, save_model
from fastrnn.keras.serialization import deserialize_layer, serialize_layer
from fastrnn.keras.training import TrainingModel, _as_array

__all__ = ["Model", "Sequential", "Input", "load_model", "save_model"]


def _flat(value):
    """``inputs``/``outputs`` as a list of KerasTensors, the names of a dict's keys (or None), and
    whether it was one tensor alone."""
    if isinstance(value, dict):
        return list(value.values()), list(value), False
    if isinstance(value, (list, tuple)):
        return list(value), None, False
    return [value], None, True


def _tensor_entry(tensor, node_positions):
    layer_name, position = node_positions[id(tensor.node)]
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(tensor.shape), "dtype": tensor.dtype,
                       "keras_history": [layer_name, position, tensor.index]}}


#: The most values per sample an Input of a model config may declare: building the model runs each
#: layer on two small batches of that shape (see fastrnn.keras.functional).
MAX_CONFIG_INPUT_VALUES = 1 << 24


def _check_probe_size(name, config):
    shape = config.get("batch_shape") or [None] + list(config.get("shape") or [])
    values = 1
    for size in list(shape)[1:]:
        values *= 1 if size is None else int(size)
    if values > MAX_CONFIG_INPUT_VALUES:
        raise ArgumentError(f"Input {name!r} of the model config declares {values} values per sample (shape "
                            f"{tuple(shape)}); at most {MAX_CONFIG_INPUT_VALUES} are accepted from a config")


class Model(TrainingModel):
    """A model over a graph of layers, as ``keras.Model(inputs, outputs)`` builds it.

    Parameters
    ----------
    inputs : KerasTensor, list or dict of KerasTensor
        From :func:`Input`.
    outputs : KerasTensor, list or dict of KerasTensor
        Outputs of layers called on the inputs (directly or through other layers).
    name : str, optional

    Attributes
    ----------
    inputs, outputs : list of KerasTensor
    input_names, output_names : list of str
        The input layers' names (keys of a dict ``x``), the output layers' (keys of dict ``y``,
        ``loss``, ``metrics``, ``loss_weights``; prefixes of the logs of several outputs).
    optimizer, loss, history, stop_training
        See :class:`~fastrnn.keras.training.TrainingModel`.

    Examples
    --------
    An encoder-decoder whose encoder states start the decoder:

    >>> from fastrnn import keras
    >>> from fastrnn.keras import layers
    >>> source, target = keras.Input((None, 8)), keras.Input((None, 8))
    >>> _, h, c = layers.LSTM(16, return_state=True)(source)
    >>> decoded = layers.LSTM(16, return_sequences=True)(target, initial_state=[h, c])
    >>> model = keras.Model([source, target], layers.Dense(8, activation="softmax")(decoded))
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True):
        if inputs is None or outputs is None:
            raise ArgumentError("Model(inputs, outputs) builds a functional model from Input() tensors and layer "
                                "outputs; subclassing Model with a call() method is not supported (use the "
                                "functional API or Sequential)")
        self._init_training(name, "functional")
        self.inputs, self._input_keys, self._single_input = _flat(inputs)
        self.outputs, self._output_keys, self._single_output = _flat(outputs)
        for argument, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for position, tensor in enumerate(tensors):
                if not isinstance(tensor, KerasTensor):
                    raise ArgumentError(f"{argument}[{position}] must be a KerasTensor (from Input() or a layer "
                                        f"called on one); got {type(tensor).__name__}")
        self._nodes, layers = graph_between(self.inputs, self.outputs)
        names = [layer.name for layer in layers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ArgumentError(f"two different layers are named {', '.join(map(repr, repeated))}; layer names "
                                "must be unique in a model")
        self._layers = layers
        self.input_names = self._input_keys or [t.node.layer.name for t in self.inputs]
        self._output_names = self._output_keys or self._unique_output_names()
        self.trainable = trainable

    def _unique_output_names(self):
        names = []
        for tensor in self.outputs:
            name = tensor.node.layer.name
            names.append(name if name not in names else f"{name}_{tensor.index}")
        return names

    @property
    def output_names(self):
        return list(self._output_names)

    @property
    def layers(self):
        """The layers, each once, in the order Keras lists them (InputLayers included)."""
        return list(self._layers)

    @property
    def built(self):
        return True

    # data ---------------------------------------------------------------------------------
    def _arrays(self, value, names, argument, what):
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            missing = [name for name in names if name not in value]
            if unknown or missing:
                raise ArgumentError(f"{argument} ({what}) is a dict keyed by the model's {argument == 'x' and 'inputs' or 'outputs'} "
                                    f"{', '.join(map(repr, names))}; "
                                    + (f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else
                                       f"missing {', '.join(map(repr, missing))}"))
            return [_as_array(f"{argument}[{name!r}] ({what})", value[name]) for name in names]
        if len(names) == 1:
            if isinstance(value, (list, tuple)) and len(value) == 1 and hasattr(value[0], "shape"):
                value = value[0]  # [array] for the one input, as Keras takes it (not a list of samples)
            return [_as_array(f"{argument} ({what})", value)]
        if not isinstance(value, (list, tuple)) or len(value) != len(names):
            given = f"a list of {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__
            raise ArgumentError(f"{argument} ({what}) must be a list of {len(names)} arrays (or a dict keyed by "
                                f"{', '.join(map(repr, names))}), one per model "
                                f"{'input' if argument == 'x' else 'output'}; got {given}")
        return [_as_array(f"{argument}[{position}] ({what})", item) for position, item in enumerate(value)]

    def _input_list(self, x, what):
        return self._arrays(x, self.input_names, "x", what)

    def _output_list(self, y, what):
        return self._arrays(y, self.output_names, "y", what)

    # forward and backward -----------------------------------------------------------------
    def _run(self, xs, training):
        values, masks, tapes = {}, {}, {}
        for tensor, array in zip(self.inputs, xs):
            values[id(tensor)], masks[id(tensor)] = array, None
        for node in self._nodes:
            layer = node.layer
            if isinstance(layer, InputLayer):
                continue
            if isinstance(node.x, list):
                x = [values[id(t)] for t in node.x]
                mask = [masks[id(t)] for t in node.x]
                mask = mask if any(m is not None for m in mask) else None
            else:
                x, mask = values[id(node.x)], masks[id(node.x)]
            keywords = {name: [values[id(t)] for t in tensors] for name, tensors in node.tensor_kwargs.items()}
            keywords.update(node.kwargs)
            mask = mask if layer.supports_masking else None  # a layer that cannot take a mask ends it
            result = layer(x, mask=mask, training=training, **keywords)
            if training:
                tapes[id(node)] = layer.tape_state()
            out_mask = layer.compute_mask(x, mask)
            for tensor, array in zip(node.outputs, result if node.multiple else [result]):
                values[id(tensor)] = array
                masks[id(tensor)] = out_mask if tensor.index == 0 else None
        return ([values[id(t)] for t in self.outputs], [masks[id(t)] for t in self.outputs], tapes)

    def _backprop(self, tapes, d_outputs):
        grads = {}

        def add(tensor, gradient):
            if gradient is not None:
                key = id(tensor)
                grads[key] = gradient if key not in grads else grads[key] + gradient

        for tensor, gradient in zip(self.outputs, d_outputs):
            add(tensor, gradient)
        for node in reversed(self._nodes):
            if isinstance(node.layer, InputLayer):
                continue
            received = [grads.get(id(t)) for t in node.outputs]
            if all(g is None for g in received):
                continue  # nothing downstream depends on this call
            node.layer.restore_tape_state(tapes[id(node)])
            d_input = node.layer.backward(received if node.multiple else received[0])
            if isinstance(node.x, list):
                for tensor, gradient in zip(node.x, d_input if d_input is not None else [None] * len(node.x)):
                    add(tensor, gradient)
            else:
                add(node.x, d_input)
            for name, tensors in node.tensor_kwargs.items():
                for tensor, gradient in zip(tensors, getattr(node.layer, f"grad_{name}")):
                    add(tensor, gradient)

    # description --------------------------------------------------------------------------
    def _node_positions(self):
        """Each node of this model: (its layer's name, its index among that layer's nodes here)."""
        positions, counts = {}, {}
        for node in self._nodes:
            count = counts.get(id(node.layer), 0)
            positions[id(node)] = (node.layer.name, count)
            counts[id(node.layer)] = count + 1
        return positions

    def _summary_rows(self):
        positions = self._node_positions()
        rows = []
        for layer in self._layers:
            nodes = [node for node in self._nodes if node.layer is layer] or layer._nodes[:1]  # an unused Input
            shapes = [str(t.shape) for t in nodes[0].outputs]
            shape = shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"
            if len(nodes) > 1:
                shape = "multiple"
            connected = []
            for node in nodes:
                for tensor in node.inputs:
                    name, position = positions[id(tensor.node)]
                    connected.append(f"{name}[{position}][{tensor.index}]")
            connected = [f"{entry}," for entry in connected[:-1]] + connected[-1:] or ["-"]
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}", connected))
        return ("Layer (type)", "Output Shape", "Param #", "Connected to"), rows

    # configuration ------------------------------------------------------------------------
    def get_config(self):
        """The graph in Keras's functional format: each layer's class, config and calls (its
        ``inbound_nodes``, tensors as ``keras_history`` ``[layer, node, index]``), and the
        model's input and output layers."""
        positions = self._node_positions()
        layer_entries = []
        for layer in self._layers:
            nodes = []
            for node in self._nodes:
                if node.layer is not layer or isinstance(layer, InputLayer):
                    continue
                if isinstance(node.x, list):
                    args = [[_tensor_entry(t, positions) for t in node.x]]
                else:
                    args = [_tensor_entry(node.x, positions)]
                kwargs = {name: [_tensor_entry(t, positions) for t in tensors]
                          for name, tensors in node.tensor_kwargs.items()}
                kwargs.update(node.kwargs)
                nodes.append({"args": args, "kwargs": kwargs})
            layer_entries.append({**serialize_layer(layer), "name": layer.name, "inbound_nodes": nodes})

        def history(tensor):
            name, position = positions[id(tensor.node)]
            return [name, position, tensor.index]

        inputs, outputs = [history(t) for t in self.inputs], [history(t) for t in self.outputs]
        return {"name": self.name, "trainable": self.trainable, "layers": layer_entries,
                "input_layers": inputs[0] if self._single_input else inputs,
                "output_layers": outputs[0] if self._single_output else outputs,
                "input_names": self._input_keys, "output_names": self._output_keys}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new model from :meth:`get_config`'s output: the layers made, then called on their inputs
        in an order where every call's inputs exist.

        Raises
        ------
        ArgumentError
            For a layer call whose inputs never exist (a config naming an unknown layer or node).
        """
        made = {}   # layer name -> layer
        calls = []  # (layer, node config) not made yet, in order
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer":
                _check_probe_size(entry["name"], entry["config"])
            layer = deserialize_layer({"class_name": entry["class_name"], "config": entry["config"]},
                                      custom_objects)
            made[entry["name"]] = layer
            calls += [(layer, node) for node in entry.get("inbound_nodes", [])]
        outputs = {}  # (layer name, node position) -> output tensors

        for name, layer in made.items():
            if isinstance(layer, InputLayer):
                outputs[(name, 0)] = layer._nodes[0].outputs

        def tensor(value):
            history = value["config"]["keras_history"]
            key = (history[0], history[1])
            if key not in outputs:
                raise LookupError(key)
            return outputs[key][history[2]]

        def revive(value):
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                return tensor(value)
            if isinstance(value, list):
                return [revive(item) for item in value]
            return value

        counts = {}
        while calls:
            progress = False
            for call in list(calls):
                layer, node = call
                try:
                    args = [revive(arg) for arg in node.get("args", [])]
                    kwargs = {key: revive(value) for key, value in node.get("kwargs", {}).items()}
                except LookupError:
                    continue
                result = layer(*args, **kwargs)
                position = counts.get(layer.name, 0)
                counts[layer.name] = position + 1
                outputs[(layer.name, position)] = result if isinstance(result, list) else [result]
                calls.remove(call)
                progress = True
            if not progress:
                stuck = ", ".join(sorted({layer.name for layer, _ in calls}))
                raise ArgumentError(f"the model config calls layer(s) {stuck} on tensors no layer of it makes")

        def pick(history):
            return outputs[(history[0], history[1])][history[2]]

        def picks(histories):  # one [layer, node, index], or a list of them
            return pick(histories) if histories and not isinstance(histories[0], list) else [pick(h) for h in histories]

        inputs, outs = picks(config["input_layers"]), picks(config["output_layers"])
        if config.get("input_names"):
            inputs = dict(zip(config["input_names"], inputs))
        if config.get("output_names"):
            outs = dict(zip(config["output_names"], outs))
        return cls(inputs, outs, name=config.get("name"), trainable=config.get("trainable", True))

    def __repr__(self):
        return (f"<Model name={self.name!r} inputs={[t.shape for t in self.inputs]} "
                f"outputs={[t.shape for t in self.outputs]} layers={len(self._layers)}>")


class Sequential(Model):
    """A linear stack of layers, trained on NumPy arrays with Keras's ``compile``/``fit`` workflow.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order with :meth:`add`.
    name : str, optional
        Defaults to ``"sequential"``, numbered like Keras.

    Attributes
    ----------
    optimizer, loss, history, stop_training
        See :class:`fastrnn.keras.training.TrainingModel`.

    Examples
    --------
    >>> from fastrnn.keras import Sequential, layers
    >>> model = Sequential([layers.Embedding(1000, 32), layers.SimpleRNN(32),
    ...                     layers.Dense(1, activation="sigmoid")])
    >>> model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    >>> history = model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2)  # doctest: +SKIP
    """

    def __init__(self, layers=None, name=None):
        self._init_training(name, "sequential")
        self._layers = []
        self._input_shape = None  # with the batch axis, from an Input
        for layer in layers or []:
            self.add(layer)

    # structure ----------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, in order (a new list)."""
        return list(self._layers)

    @property
    def output_names(self):
        return [self._layers[-1].name] if self._layers else []

    def add(self, layer):
        """Append a layer (built at once when the model already is, or starts with an :func:`Input`)."""
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_shape is not None:
                raise ArgumentError("an Input can only be the first entry of a Sequential model")
            self._input_shape = layer.batch_shape
            return
        if not isinstance(layer, Layer):
            raise ArgumentError(f"Sequential.add takes a fastrnn.keras layer; got {type(layer).__name__}")
        if any(existing.name == layer.name for existing in self._layers):
            raise ArgumentError(f"a layer named {layer.name!r} is already in the model; layer names must be unique")
        if self._layers and self.built and not layer.built:
            layer.build(self._output_shape_of(self._layers[-1]))
        self._layers.append(layer)
        if self._input_shape is not None and not layer.built:
            self.build(self._input_shape)

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise ArgumentError("pop() on a model with no layers")
        return self._layers.pop()

    @property
    def built(self):
        """Whether every layer has its weights."""
        return bool(self._layers) and all(layer.built for layer in self._layers)

    @staticmethod
    def _output_shape_of(layer):
        shape = getattr(layer, "output_shape", None)
        return tuple(shape) if shape is not None else tuple(layer.compute_output_shape(layer.input_shape))

    def build(self, input_shape=None):
        """Create every layer's weights for inputs of ``input_shape``.

        Parameters
        ----------
        input_shape : tuple, optional
            With the batch axis first, as in Keras: ``(None, T)`` for token
            ids, ``(None, T, D)`` for sequences; ``None`` for an unknown size.
            Defaults to the ``input_shape`` the first layer was given.
        """
        if not self._layers:
            raise ArgumentError("the model has no layers to build; add some first")
        if input_shape is None:
            input_shape = self._input_shape
        if input_shape is None:
            declared = self._layers[0].declared_input_shape
            if declared is None:
                raise ArgumentError("build() needs input_shape (batch axis first, e.g. (None, 100)) "
                                    "when the first layer was not given one")
            shape = tuple(declared)
        else:
            input_shape = tuple(input_shape)
            if len(input_shape) < 1:
                raise ShapeError("input_shape must include the batch axis first, e.g. (None, 100); got ()")
            shape = input_shape[1:]
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = self._output_shape_of(layer)

    def _try_build_for_summary(self):
        """Build from what the layers already say, when that is enough (a declared shape, a leading Embedding)."""
        if self.built or not self._layers:
            return
        first = self._layers[0]
        if first.built:
            return
        if first.declared_input_shape is not None:
            self.build()
        elif type(first).__name__ == "Embedding":
            self.build((None, None))  # token ids of any length: the weights do not depend on it

    # forward and backward -----------------------------------------------------------------
    def _forward(self, x, training):
        """Run the layers; returns the output and the mask that reaches it (or None)."""
        mask = None
        for layer in self._layers:
            output = layer(x, mask=mask, training=training)
            mask = layer.compute_mask(x, mask)
            x = output
        return x, mask

    def _backward(self, d_output):
        for layer in reversed(self._layers):
            d_output = layer.backward(d_output)
            if d_output is None:  # integer inputs (Embedding): nothing further back to train
                break

    def _input_list(self, x, what):
        return [_as_array(f"x ({what})" if what != "predict" and what != "call" else "x", x)]

    def _output_list(self, y, what):
        return [_as_array(f"y ({what})", y)]

    def _run(self, xs, training):
        y, mask = self._forward(xs[0], training)
        return [y], [mask], None

    def _backprop(self, trace, d_outputs):
        self._backward(d_outputs[0])

    def _summary_rows(self):
        self._try_build_for_summary()
        rows = []
        for layer in self._layers:
            if layer.built:
                shape = str((None,) + tuple(self._output_shape_of(layer)))
                count = f"{layer.count_params():,}"
            else:
                shape, count = "? (unbuilt)", "0 (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, count))
        return ("Layer (type)", "Output Shape", "Param #"), rows

    # configuration and saving -------------------------------------------------------------
    def get_config(self):
        """The model's structure (JSON-serialisable): its name and each layer's class and config."""
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "layers": [serialize_layer(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new, unbuilt model from :meth:`get_config`'s output."""
        layers = [deserialize_layer(entry, custom_objects) for entry in config["layers"]]
        input_shape = config.get("input_shape")
        if input_shape is not None:
            layers.insert(0, Input(batch_shape=tuple(input_shape)))
        return cls(layers, name=config["name"])

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self._layers)} built={self.built}>"
