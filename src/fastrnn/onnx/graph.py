"""A small builder of ONNX graphs: unique names, initializers, nodes and the few
compound operations the exporter needs more than once (reversing an axis, taking
the last step, a mask from lengths), written once for the opset in use.

Tensors flow through the builder as :class:`Value`: an ONNX tensor name and its
dimensions, each an int or a symbolic name (``"batch"``, ``"time"``), so that the
graph's inputs and outputs can be declared with their shapes. Needs the ``onnx``
package; the exporter imports this module only after checking that it is installed.
"""

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GraphBuilder", "Value"]

#: The largest int64, as Slice's "to the end" bound.
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Value:
    """A tensor of the graph being built.

    Attributes
    ----------
    name : str
        The ONNX tensor name.
    dims : tuple of (int or str)
        Each axis's size, or its symbolic name.
    elem_type : int
        ``onnx.TensorProto`` element type (FLOAT by default).
    """

    name: str
    dims: tuple
    elem_type: int = TensorProto.FLOAT

    @property
    def rank(self):
        return len(self.dims)

    def like(self, name, dims=None, elem_type=None):
        """A Value named ``name``, with these ``dims`` / ``elem_type`` or this one's."""
        return Value(name, self.dims if dims is None else tuple(dims),
                     self.elem_type if elem_type is None else elem_type)


class GraphBuilder:
    """Collects the nodes and initializers of one graph.

    Parameters
    ----------
    opset : int
        The default domain's opset the nodes are written for.
    """

    def __init__(self, opset):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._used = set()

    # names ---------------------------------------------------------------------------
    def fresh(self, hint):
        """A tensor or node name not used yet, built from ``hint``."""
        base = "".join(c if c.isalnum() or c in "_./" else "_" for c in str(hint)) or "t"
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def reserve(self, name):
        """Claim ``name`` exactly (a graph input or output chosen by the caller)."""
        self._used.add(name)
        return name

    # building blocks -----------------------------------------------------------------
    def initializer(self, array, hint):
        """Store ``array`` as an initializer; returns its name."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values, hint="const"):
        """An int64 initializer of ``values`` (shapes, axes, indices); returns its name."""
        return self.initializer(np.asarray(values, dtype=np.int64), hint)

    def scalar(self, value, hint="const", dtype=np.float32):
        return self.initializer(np.asarray(value, dtype=dtype), hint)

    def node(self, op, inputs, hint=None, outputs=1, **attributes):
        """Add one node; returns the name of its output (a list of names if ``outputs`` > 1)."""
        hint = hint or op.lower()
        names = [self.fresh(f"{hint}_out{i}" if outputs > 1 else hint) for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=self.fresh(f"{op}_{hint}"),
                                           **attributes))
        return names if outputs > 1 else names[0]

    def apply(self, op, value, hint=None, dims=None, elem_type=None, **attributes):
        """A one-input, one-output node on ``value``; returns the result as a Value."""
        return value.like(self.node(op, [value.name], hint, **attributes), dims, elem_type)

    # compound operations ---------------------------------------------------------------
    def transpose(self, value, perm, hint="transpose"):
        return self.apply("Transpose", value, hint, dims=[value.dims[p] for p in perm], perm=list(perm))

    def squeeze(self, value, axis, hint="squeeze"):
        dims = [d for i, d in enumerate(value.dims) if i != axis % value.rank]
        return value.like(self.node("Squeeze", [value.name, self.ints([axis], "axes")], hint), dims)

    def unsqueeze(self, value, axis, hint="unsqueeze"):
        dims = list(value.dims)
        dims.insert(axis % (value.rank + 1), 1)
        return value.like(self.node("Unsqueeze", [value.name, self.ints([axis], "axes")], hint), dims)

    def reverse(self, value, axis, hint="reverse"):
        """``value`` with ``axis`` in reverse order (a Slice of step -1)."""
        inputs = [value.name, self.ints([-1], "starts"), self.ints([_INT64_MIN], "ends"),
                  self.ints([axis], "axes"), self.ints([-1], "steps")]
        return value.like(self.node("Slice", inputs, hint))

    def last(self, value, axis, hint="last_step"):
        """The last entry along ``axis``, that axis removed."""
        inputs = [value.name, self.ints([-1], "starts"), self.ints([_INT64_MAX], "ends"),
                  self.ints([axis], "axes")]
        sliced = value.like(self.node("Slice", inputs, hint))
        return self.squeeze(sliced, axis, hint)

    def reduce(self, op, value, axes, keepdims, hint=None):
        """``ReduceSum``/``ReduceMean`` over ``axes``: axes are an input from opset 13
        (ReduceSum) or 18 (the others), an attribute before."""
        axes = [a % value.rank for a in axes]
        dims = [1 if i in axes else d for i, d in enumerate(value.dims)] if keepdims else \
            [d for i, d in enumerate(value.dims) if i not in axes]
        as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if as_input:
            name = self.node(op, [value.name, self.ints(axes, "axes")], hint, keepdims=int(keepdims))
        else:
            name = self.node(op, [value.name], hint, axes=axes, keepdims=int(keepdims))
        return value.like(name, dims)

    def step_mask(self, lengths, time_of, time_axis, last_only=False, hint="step_mask"):
        """A bool tensor, True where a step is inside its row's length (or, with
        ``last_only``, only at its last valid step).

        Parameters
        ----------
        lengths : Value of int32 of shape (B,)
        time_of : Value
            A tensor whose axis ``time_axis`` is the time axis (its size gives T).
        time_axis : {0, 1}
            0 gives a mask of shape (T, B), 1 of shape (B, T).

        Returns
        -------
        Value of bool
        """
        shape = self.node("Shape", [time_of.name], f"{hint}_shape")
        T = self.node("Gather", [shape, self.ints(time_axis, "time_axis")], f"{hint}_T")
        steps = self.node("Range", [self.ints(0, "zero"), T, self.ints(1, "one")], f"{hint}_range")
        bound = self.node("Cast", [lengths.name], f"{hint}_lengths", to=TensorProto.INT64)
        if last_only:
            bound = self.node("Sub", [bound, self.ints(1, "one")], f"{hint}_last")
        step_axis, row_axis = (1, 0) if time_axis == 0 else (0, 1)
        left = self.node("Unsqueeze", [steps, self.ints([step_axis], "axes")], f"{hint}_steps")
        right = self.node("Unsqueeze", [bound, self.ints([row_axis], "axes")], f"{hint}_rows")
        dims = (time_of.dims[time_axis], lengths.dims[0])
        return Value(self.node("Equal" if last_only else "Less", [left, right], hint),
                     dims if time_axis == 0 else dims[::-1], TensorProto.BOOL)

    def cast(self, value, elem_type, hint="cast"):
        return self.apply("Cast", value, hint, elem_type=elem_type, to=elem_type)

    # the model -------------------------------------------------------------------------
    def model(self, inputs, outputs, graph_name, ir_version, producer):
        """The ``onnx.ModelProto`` of the nodes built so far.

        Parameters
        ----------
        inputs, outputs : list of Value
            Graph inputs and outputs; their ``dims`` become the declared shapes.
        """
        def info(value):
            return helper.make_tensor_value_info(value.name, value.elem_type, list(value.dims))

        graph = helper.make_graph(self.nodes, graph_name, [info(v) for v in inputs],
                                  [info(v) for v in outputs], initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name=producer[0], producer_version=producer[1])
        model.ir_version = ir_version
        return model
