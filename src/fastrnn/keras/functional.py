"""The functional API's graph: ``Input`` and the order of the layer calls between a model's inputs
and outputs.

``Input(shape)`` gives a :class:`~fastrnn.keras.symbolic.KerasTensor`, a placeholder for a batch of
arrays; calling a layer on KerasTensors (``layer(x)``, ``layer([a, b])``, ``lstm(x,
initial_state=[h, c])``) records a :class:`~fastrnn.keras.symbolic.Node` and returns the output
KerasTensor (a list of them for a layer with several outputs, e.g. ``return_state``).
:class:`fastrnn.keras.Model` then runs the nodes between its inputs and outputs, in the order
:func:`graph_between` gives, forward and backward.
"""

from fastrnn.exceptions import ArgumentError
from fastrnn.keras.layers.input_layer import InputLayer
from fastrnn.keras.symbolic import KerasTensor

__all__ = ["Input", "graph_between"]


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, sparse=None, ragged=None):  # noqa: N802 (Keras's name)
    """A model input, as ``keras.Input``: the KerasTensor that layers are called on.

    Parameters
    ----------
    shape : tuple
        Without the batch axis: ``(T,)`` for token ids, ``(T, D)`` for sequences; ``None``
        for a size left open.
    batch_size : int, optional
    dtype : str, optional
        ``"float32"`` by default; an integer dtype for token ids.
    name : str, optional
        The input's name (keys of a dict of inputs given to fit/predict).
    batch_shape : tuple, optional
        The shape with the batch axis, instead of ``shape`` and ``batch_size``.

    Returns
    -------
    KerasTensor
        Also the first entry a :class:`fastrnn.keras.Sequential` may take.
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape,
                      sparse=sparse, ragged=ragged).output


def graph_between(inputs, outputs):
    """The nodes that compute ``outputs`` from ``inputs``, each after the nodes it reads.

    Parameters
    ----------
    inputs : list of KerasTensor
        Outputs of :class:`InputLayer` s.
    outputs : list of KerasTensor

    Returns
    -------
    nodes : list of Node
        Depth first from the outputs in order, a node's inputs in order, each node after
        those it reads (InputLayer nodes included).
    layers : list of Layer
        Each once, in Keras's order of ``model.layers``: by depth (the longest path to an
        output) decreasing, ties in the order the search first met them; an input no output
        needs comes last-but-depth-0, first among its depth.

    Raises
    ------
    ArgumentError
        For an input that is not an Input's tensor, the same input twice, or an output that
        needs a model input not among ``inputs`` (a disconnected graph).
    """
    input_ids = {id(t) for t in inputs}
    for position, tensor in enumerate(inputs):
        if not isinstance(tensor.node.layer, InputLayer):
            raise ArgumentError(f"inputs[{position}] is {tensor.name}, an output of layer "
                                f"{tensor.node.layer.name!r}; a model's inputs must come from Input()")
    if len(input_ids) != len(inputs):
        raise ArgumentError("the same Input is given twice in inputs")
    order, state, first_seen = [], {}, {}

    def visit(node, path):
        mark = state.get(id(node))
        if mark == "done":
            return
        if mark == "open":  # not reachable by construction; kept as a guard
            raise ArgumentError(f"the graph has a cycle through layer {node.layer.name!r}")
        state[id(node)] = "open"
        first_seen.setdefault(id(node.layer), len(first_seen))
        if isinstance(node.layer, InputLayer):
            if id(node.outputs[0]) not in input_ids:
                raise ArgumentError(f"output {path} depends on Input {node.layer.name!r}, which is not among "
                                    "the model's inputs: the graph is disconnected; add it to inputs")
        for tensor in node.inputs:
            visit(tensor.node, path)
        state[id(node)] = "done"
        order.append(node)

    for position, tensor in enumerate(outputs):
        if not isinstance(tensor, KerasTensor):
            raise ArgumentError(f"outputs[{position}] must be a KerasTensor (a layer's output); got "
                                f"{type(tensor).__name__}")
        visit(tensor.node, f"outputs[{position}] ({tensor.name})")
    return order, _keras_layer_order(order, inputs, first_seen)


def _keras_layer_order(order, inputs, first_seen):
    """The layers of the nodes ``order`` (post-order) sorted as Keras sorts ``model.layers``."""
    node_depth, layer_depth, layers = {}, {}, {}
    for node in reversed(order):  # every node before the nodes it reads
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        layers[id(node.layer)] = node.layer
        for tensor in node.inputs:
            parent = id(tensor.node)
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for tensor in inputs:  # an input no output needs still belongs to the model
        layer = tensor.node.layer
        if id(layer) not in layers:
            layers[id(layer)], layer_depth[id(layer)], first_seen[id(layer)] = layer, 0, -1
    return sorted(layers.values(), key=lambda layer: (-layer_depth[id(layer)], first_seen[id(layer)]))
