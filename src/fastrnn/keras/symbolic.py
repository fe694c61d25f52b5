"""Symbolic tensors and the record of a layer called on them: the part of the functional API that
layers themselves use (:class:`~fastrnn.keras.layers.base.Layer` routes a call on KerasTensors here).

A layer called on KerasTensors is built for their shapes, and its output shapes, dtypes and
whether a mask comes out are found by running it on two small batches of zeros whose open
sizes (``None``) differ: a size that changes with them is open in the output too. So every
layer, with its own ``call``, is described exactly as it computes, with no shape rules
written twice. :mod:`fastrnn.keras.functional` builds models from the nodes recorded here.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError

__all__ = ["KerasTensor", "Node", "is_symbolic", "call_symbolic"]

#: The sizes an open dimension takes in the two runs that find a layer's output shapes.
_PROBE_SIZES = (2, 3)


class KerasTensor:
    """A placeholder for a batch of arrays in a functional model: an output of a layer call.

    Attributes
    ----------
    shape : tuple
        With the batch axis first; ``None`` for a size left open (the batch always).
    dtype : str
    node : Node
        The layer call that gives it (an :class:`InputLayer`'s for a model input).
    index : int
        Which of that call's outputs it is.
    has_mask : bool
        Whether a mask travels with it (after ``Embedding(mask_zero=True)``, ``Masking``, ...).
    """

    __slots__ = ("shape", "dtype", "node", "index", "has_mask")

    def __init__(self, shape, dtype, node, index, has_mask=False):
        self.shape = tuple(shape)
        self.dtype = str(dtype)
        self.node = node
        self.index = index
        self.has_mask = has_mask

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def name(self):
        """``layer_name[node_index][tensor_index]``-style name of where it comes from."""
        return self.node.tensor_label(self.index)

    def __getstate__(self):
        return {slot: getattr(self, slot) for slot in self.__slots__}

    def __setstate__(self, state):
        for slot, value in state.items():
            setattr(self, slot, value)

    def __array__(self, *args, **kwargs):
        raise ArgumentError(f"{self!r} is a symbolic placeholder of a functional model, not data: build a "
                            "fastrnn.keras.Model(inputs, outputs) and call it on arrays")

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, from {self.name}>"


class Node:
    """One call of a layer on KerasTensors.

    Attributes
    ----------
    layer : Layer
    x : KerasTensor or list of KerasTensor or None
        The call's first argument (None for an :class:`InputLayer`).
    tensor_kwargs : dict of str to list of KerasTensor
        Keywords given tensors (``initial_state``).
    kwargs : dict
        The other keywords, passed on as they are.
    outputs : list of KerasTensor
    multiple : bool
        The layer returns a list (the outputs are its entries).
    """

    def __init__(self, layer, x, tensor_kwargs, kwargs):
        self.layer = layer
        self.x = x
        self.tensor_kwargs = tensor_kwargs
        self.kwargs = kwargs
        self.outputs = []
        self.multiple = False
        nodes = layer.__dict__.setdefault("_nodes", [])
        self.index = len(nodes)
        nodes.append(self)

    @property
    def inputs(self):
        """Every input tensor, ``x``'s first, then the keywords' (list of KerasTensor)."""
        tensors = [] if self.x is None else (list(self.x) if isinstance(self.x, list) else [self.x])
        for value in self.tensor_kwargs.values():
            tensors += value
        return tensors

    def tensor_label(self, index):
        return f"{self.layer.name}[{self.index}][{index}]"


def is_symbolic(value):
    """Whether ``value`` is a KerasTensor or a list/tuple holding one."""
    if isinstance(value, KerasTensor):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(item, KerasTensor) for item in value)


def _tensors(layer, argument, value):
    """``value`` (a KerasTensor or a list of them) as a list, refusing a mix with arrays."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, KerasTensor):
            raise ArgumentError(f"layer {layer.name!r} ({type(layer).__name__}): {argument} mixes KerasTensors "
                                f"with {type(item).__name__}; in a functional model every input must come from "
                                "Input() or another layer")
    return items


def _probe(tensor, size):
    """Zeros shaped like ``tensor`` with every open size set to ``size``."""
    shape = tuple(size if dim is None else dim for dim in tensor.shape)
    return np.zeros(shape, dtype=tensor.dtype)


def _probe_mask(tensor, size):
    if not tensor.has_mask or tensor.ndim < 2:
        return None
    steps = size if tensor.shape[1] is None else tensor.shape[1]
    batch = size if tensor.shape[0] is None else tensor.shape[0]
    return np.ones((batch, steps), dtype=bool)


def _run_on(layer, x, tensor_kwargs, kwargs, size):
    """The layer on zeros shaped like its inputs (open sizes ``size``): outputs (list), whether a
    list came back, and the main output's mask."""
    if isinstance(x, list):
        arrays = [_probe(t, size) for t in x]
        masks = [_probe_mask(t, size) for t in x]
        mask = masks if any(m is not None for m in masks) else None
    else:
        arrays = _probe(x, size)
        mask = _probe_mask(x, size)
    keywords = {name: [_probe(t, size) for t in tensors] for name, tensors in tensor_kwargs.items()}
    keywords.update(kwargs)
    mask = mask if layer.supports_masking else None
    kept = layer.__dict__.get("states")  # a stateful layer keeps its state, not the probe's
    try:
        result = layer(arrays, mask=mask, training=False, **keywords)
        out_mask = layer.compute_mask(arrays, mask)  # Embedding makes one, without taking any
    finally:
        if "states" in layer.__dict__:
            layer.states = kept
    multiple = isinstance(result, (list, tuple))
    return (list(result) if multiple else [result]), multiple, out_mask


def call_symbolic(layer, x, mask=None, training=False, **kwargs):
    """Record ``layer`` called on KerasTensors and return its output KerasTensor(s).

    Parameters
    ----------
    layer : Layer
    x : KerasTensor or list of KerasTensor
    mask : None
        Masks travel with the tensors in a functional model; an explicit one is refused.
    training : bool
        Must be left False: the model's ``fit`` / ``predict`` decide.
    **kwargs
        The layer's call keywords: KerasTensors (``initial_state=[h, c]``) or plain values.

    Returns
    -------
    KerasTensor or list of KerasTensor
        A list when the layer returns several arrays.
    """
    if mask is not None:
        raise ArgumentError(f"layer {layer.name!r}: masks travel with the tensors of a functional model "
                            "(from Embedding(mask_zero=True) or Masking); do not pass mask=")
    if training:
        raise ArgumentError(f"layer {layer.name!r}: training=True cannot be fixed in a functional model; "
                            "fit() trains and predict() does not")
    x = _tensors(layer, "its input", x) if isinstance(x, (list, tuple)) else _tensors(layer, "its input", x)[0]
    tensor_kwargs, plain = {}, {}
    for name, value in kwargs.items():
        if is_symbolic(value):
            tensor_kwargs[name] = _tensors(layer, name, value)
        else:
            plain[name] = value
    if not layer.built:
        layer.build([t.shape[1:] for t in x] if isinstance(x, list) else x.shape[1:])
    runs = [_run_on(layer, x, tensor_kwargs, plain, size) for size in _PROBE_SIZES]
    (first, multiple, out_mask), (second, _, _) = runs
    node = Node(layer, x, tensor_kwargs, plain)
    node.multiple = multiple
    for index, (a, b) in enumerate(zip(first, second)):
        a, b = np.asarray(a), np.asarray(b)
        shape = (None,) + tuple(p if p == q else None for p, q in zip(a.shape[1:], b.shape[1:]))
        node.outputs.append(KerasTensor(shape, a.dtype.name, node, index, has_mask=index == 0 and out_mask is not None))
    return node.outputs if multiple else node.outputs[0]
