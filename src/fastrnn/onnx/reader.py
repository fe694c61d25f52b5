"""Reading an ONNX model into a plain, checked graph that needs no ``onnx`` to run or pickle.

:func:`read_graph` takes a file name, the bytes of a file or an ``onnx.ModelProto``
and returns a :class:`Graph`: its nodes in an order where every value is computed
before it is read, its initializers as NumPy arrays, its inputs and outputs with
their dtypes and shapes, and the opset of the default domain. Everything that
could make the model unreadable is checked here, before any node runs: bytes that
are not an ONNX model, tensors stored outside the file (fastrnn reads only the
file it is given, never a path named inside it), values that nothing computes,
and cycles. Nothing in the file is executed: an ONNX file holds data, and
fastrnn reads it with protobuf's parser only.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from fastrnn.exceptions import ArgumentError, OnnxImportError

__all__ = ["Node", "ValueInfo", "Graph", "read_graph", "import_onnx"]

#: The operator domains fastrnn reads: ONNX's default domain under both of its names.
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(eq=False)
class Node:
    """One ONNX node, its attributes read into Python values.

    Attributes
    ----------
    name, op_type, domain : str
    inputs, outputs : tuple of str
        Value names; ``""`` marks an optional input or output left out.
    attributes : dict of str to object
        int, float, str, ndarray (a tensor attribute), or lists of those.
    """

    name: str
    op_type: str
    domain: str
    inputs: tuple
    outputs: tuple
    attributes: dict = field(default_factory=dict)

    @property
    def label(self):
        """How error messages name the node: ``node 'name' (op_type)``."""
        return f"node {self.name!r} ({self.op_type})" if self.name else f"an unnamed {self.op_type} node"


@dataclass
class ValueInfo:
    """A graph input or output: name, NumPy dtype (None if unknown) and shape (a tuple whose
    entries are ints for fixed sizes and str or None for symbolic ones; None if unknown)."""

    name: str
    dtype: object = None
    shape: tuple = None


@dataclass
class Graph:
    """An ONNX graph checked and read into NumPy values (see the module docstring).

    Attributes
    ----------
    nodes : list of Node
        In topological order.
    initializers : dict of str to ndarray
    inputs, outputs : list of ValueInfo
        The inputs a caller gives (initializers listed as inputs are not among them).
    opset : int
        The opset of ONNX's default domain.
    name : str
    """

    nodes: list
    initializers: dict
    inputs: list
    outputs: list
    opset: int
    name: str = ""


def import_onnx():
    """The ``onnx`` package, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError('fastrnn.onnx needs the onnx package: pip install "fastrnn[onnx]" '
                          f"(or pip install onnx); importing it failed: {error}") from error
    return onnx


def read_graph(source):
    """Read and check an ONNX model.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, memoryview or onnx.ModelProto
        A file name, the file's bytes, or a model already parsed.

    Returns
    -------
    Graph

    Raises
    ------
    OnnxImportError
        For bytes that are not an ONNX model, a tensor stored outside the file, a
        value no node computes, a cycle, or a tensor whose bytes do not match its shape.
    ArgumentError
        For a ``source`` of another type.
    """
    onnx = import_onnx()
    model = _parse(onnx, source)
    graph = model.graph
    if not graph.output:
        raise OnnxImportError("the ONNX model has no graph outputs (an empty or non-ONNX "
                              "protobuf message): not a model fastrnn can run")
    opset = _default_opset(model)
    for tensor in graph.initializer:
        _refuse_external(onnx, tensor, f"initializer {tensor.name!r}")
    if graph.sparse_initializer:
        raise OnnxImportError(f"the graph has sparse initializers "
                              f"({', '.join(repr(t.values.name) for t in graph.sparse_initializer)}); "
                              "fastrnn reads dense initializers only")
    initializers = {tensor.name: _to_array(onnx, tensor, f"initializer {tensor.name!r}")
                    for tensor in graph.initializer}
    inputs = [_value_info(onnx, v) for v in graph.input if v.name not in initializers]
    outputs = [_value_info(onnx, v) for v in graph.output]
    nodes = [_node(onnx, proto, index) for index, proto in enumerate(graph.node)]
    ordered = _topological(nodes, set(initializers) | {v.name for v in inputs}, outputs)
    return Graph(ordered, initializers, inputs, outputs, opset, graph.name)


def _parse(onnx, source):
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as file:
                data = file.read()
        except OSError as error:
            raise OnnxImportError(f"cannot read the ONNX file {os.fspath(source)!r}: {error}") from error
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise ArgumentError("source must be a file name, the bytes of an ONNX file or an "
                            f"onnx.ModelProto; got {type(source).__name__}")
    try:
        # from the bytes: onnx.load(path) would also read external-data files the model names
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf's DecodeError and friends: the bytes are not a model
        raise OnnxImportError(f"not a valid ONNX model ({len(data)} bytes could not be parsed: "
                              f"{type(error).__name__}: {error})") from error
    if model.ir_version == 0 and not model.graph.node:
        raise OnnxImportError(f"not a valid ONNX model: {len(data)} bytes parse to no model "
                              "(no IR version, no nodes)")
    return model


def _default_opset(model):
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    raise OnnxImportError("the ONNX model imports no opset of the default domain ('' / 'ai.onnx')")


def _refuse_external(onnx, tensor, what):
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "?")
        raise OnnxImportError(
            f"{what} is stored outside the model, in {location!r}: fastrnn reads only the file "
            "it is given, never files a model names. Save the model with its data inside "
            "(onnx.save_model(model, path, save_as_external_data=False))")


def _to_array(onnx, tensor, what):
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:
        raise OnnxImportError(f"{what} cannot be read as an array of shape {list(tensor.dims)}: "
                              f"{type(error).__name__}: {error}") from error


def _value_info(onnx, info):
    tensor_type = info.type.tensor_type if info.type.HasField("tensor_type") else None
    if tensor_type is None or not tensor_type.elem_type:
        return ValueInfo(info.name)
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except Exception:  # an element type NumPy has no dtype for (strings of bytes, float8...)
        dtype = None
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in tensor_type.shape.dim)
    return ValueInfo(info.name, dtype, shape)


def _node(onnx, proto, index):
    node = Node(proto.name or "", proto.op_type, proto.domain, tuple(proto.input), tuple(proto.output))
    for attribute in proto.attribute:
        node.attributes[attribute.name] = _attribute(onnx, node, attribute)
    if not node.name:
        node.name = f"#{index}"
    if node.op_type == "Cast" and "to" in node.attributes:
        # the type number as a NumPy dtype, so that running the graph needs no onnx
        try:
            node.attributes["to"] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(node.attributes["to"]))
        except Exception as error:
            raise OnnxImportError(f"{node.label} casts to ONNX type {node.attributes['to']}, which has no "
                                  "NumPy dtype") from error
    return node


def _attribute(onnx, node, attribute):
    kind = onnx.AttributeProto
    if attribute.type == kind.TENSOR:
        _refuse_external(onnx, attribute.t, f"attribute {attribute.name!r} of {node.label}")
        return _to_array(onnx, attribute.t, f"attribute {attribute.name!r} of {node.label}")
    if attribute.type == kind.TENSORS:
        return [_to_array(onnx, t, f"attribute {attribute.name!r} of {node.label}") for t in attribute.tensors]
    if attribute.type in (kind.GRAPH, kind.GRAPHS, kind.SPARSE_TENSOR, kind.SPARSE_TENSORS,
                          kind.TYPE_PROTO, kind.TYPE_PROTOS):
        # subgraphs (If, Loop, Scan) and sparse tensors: no operator fastrnn runs takes them
        return _Unreadable(kind.AttributeType.Name(attribute.type))
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


class _Unreadable:
    """An attribute kept only by its kind (a subgraph, a sparse tensor)."""

    def __init__(self, kind):
        self.kind = kind

    def __repr__(self):
        return f"<{self.kind}>"


def _topological(nodes, available, outputs):
    """``nodes`` in an order where each input is computed before it is read (Kahn's algorithm)."""
    producer = {}
    for node in nodes:
        for name in node.outputs:
            if name:
                if name in producer or name in available:
                    other = producer[name].label if name in producer else "a graph input or initializer"
                    raise OnnxImportError(f"value {name!r} is computed twice: by {node.label} and {other}")
                producer[name] = node
    for node in nodes:
        for name in node.inputs:
            if name and name not in available and name not in producer:
                raise OnnxImportError(f"{node.label} reads the value {name!r}, which no node computes and "
                                      "which is neither a graph input nor an initializer")
    for info in outputs:
        if info.name not in available and info.name not in producer:
            raise OnnxImportError(f"graph output {info.name!r} is computed by no node and is neither a "
                                  "graph input nor an initializer")
    waiting = {id(node): {name for name in node.inputs if name and name in producer} for node in nodes}
    readers = {}
    for node in nodes:
        for name in waiting[id(node)]:
            readers.setdefault(name, []).append(node)
    ready = [node for node in nodes if not waiting[id(node)]]
    ordered = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for name in node.outputs:
            for reader in readers.get(name, ()):
                pending = waiting[id(reader)]
                if name in pending:
                    pending.discard(name)
                    if not pending:  # its last input just arrived
                        ready.append(reader)
    if len(ordered) != len(nodes):
        stuck = [node.label for node in nodes if waiting[id(node)]]
        raise OnnxImportError("the graph has a cycle: these nodes wait on each other's outputs: "
                              + ", ".join(stuck[:10]) + (" ..." if len(stuck) > 10 else ""))
    return ordered
