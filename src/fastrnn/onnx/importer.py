"""``fastrnn.onnx.load``: an ONNX graph as a runnable, trainable fastrnn model.

:func:`load` reads the file (:mod:`fastrnn.onnx.reader`), checks that every node's
operator is one fastrnn runs and that its attributes are supported, and returns an
:class:`OnnxModel`: a :class:`fastrnn.nn.Module` whose parameters are the graph's
float initializers (``state_dict`` keys are the initializer names), that runs the
nodes in order with NumPy (:mod:`fastrnn.onnx.operators`) and the recurrent nodes
on fastrnn's kernels (:mod:`fastrnn.onnx.recurrent`), and whose :meth:`~OnnxModel.backward`
adds the gradients of the parameters into their ``.grad`` for :mod:`fastrnn.optim`.
"""

import numpy as np

from fastrnn._validation import parameter_dtype
from fastrnn.exceptions import DTypeError, FastRNNError, OnnxImportError, ShapeError, ArgumentError
from fastrnn.nn.grad_mode import is_grad_enabled
from fastrnn.nn.module import Module
from fastrnn.functional.packed import PackedCache, pack_cell
from fastrnn.onnx.recurrent import RECURRENT_SPECS  # importing it registers RNN, LSTM and GRU
from fastrnn.onnx.reader import DEFAULT_DOMAINS, read_graph
from fastrnn.onnx.operators import OPERATORS, Context
from fastrnn.parameter import Parameter

__all__ = ["load", "OnnxModel"]


def load(source):
    """Read an ONNX model as a fastrnn model.

    Parameters
    ----------
    source : str, os.PathLike, bytes or onnx.ModelProto
        The file, its bytes, or a parsed model. Tensors stored in other files
        (external data) are refused: only the given file is read.

    Returns
    -------
    OnnxModel
        In training mode, with the graph's float initializers as parameters.

    Raises
    ------
    ImportError
        Without the ``onnx`` package (``pip install "fastrnn[onnx]"``).
    OnnxImportError
        For a file that is not a valid ONNX model, external data, a value nothing
        computes, a cycle, an operator fastrnn does not run (naming the node and
        the supported operators) or a recurrent attribute it does not support.
    """
    return OnnxModel(read_graph(source))


class OnnxModel(Module):
    """An ONNX graph run by fastrnn: recurrent nodes on its kernels, the rest in NumPy.

    Parameters
    ----------
    graph : fastrnn.onnx.reader.Graph
        As :func:`fastrnn.onnx.reader.read_graph` returns it (:func:`load` builds one).

    Attributes
    ----------
    input_names, output_names : list of str
        The graph's inputs (those a caller gives, in order) and outputs.
    dtype : numpy.dtype
        The dtype floats compute in: float32 for a float32 graph; :meth:`double`
        turns the whole model to float64.
    grad_inputs : tuple or None
        After :meth:`backward`, the gradient of each float graph input (None for
        the others), as backward also returns them.

    Notes
    -----
    Forward runs ``Dropout`` as inference does (the identity), in either mode. A
    recurrent node's all-zero ``P`` gets no gradient (it must stay zero).
    """

    _tape = None

    def __init__(self, graph):
        super().__init__()
        for node in graph.nodes:
            _check_node(node)
        self.graph = graph
        self.input_names = [info.name for info in graph.inputs]
        self.output_names = [info.name for info in graph.outputs]
        self.constants = {}
        float_dtypes = {array.dtype for array in graph.initializers.values() if array.dtype.kind == "f"}
        self.dtype = np.dtype(np.float64) if float_dtypes == {np.dtype(np.float64)} else np.dtype(np.float32)
        for name, array in graph.initializers.items():
            if array.dtype.kind == "f":
                # registered under the initializer's own name (ONNX names hold dots and colons)
                self._parameters[name] = Parameter(np.array(array, dtype=self.dtype))
            else:
                self.constants[name] = array
        self.grad_inputs = None

    # forward -----------------------------------------------------------------------------------
    def forward(self, *inputs, **named):
        """Run the graph.

        Parameters
        ----------
        *inputs : array_like
            The graph inputs, in the order of :attr:`input_names`; float inputs are
            converted to :attr:`dtype`, integer inputs (token ids, lengths) kept.
        **named : array_like
            Inputs by name instead (or for the ones after the positional ones).

        Returns
        -------
        ndarray, or tuple of ndarray
            The graph output, or a tuple of them in the order of :attr:`output_names`.

        Raises
        ------
        ArgumentError
            For a missing, repeated or unknown input.
        ShapeError, DTypeError
            For an input whose rank, fixed sizes or kind (float or integer) differ
            from what the graph declares, or a node that cannot run on the shapes it gets.
        """
        values = self._bind(inputs, named)
        keep = is_grad_enabled()
        context = Context(self.dtype, self.graph.opset, keep, self._recurrent_weights)
        # values a gradient reaches: those computed from a trainable parameter, and (for the
        # input gradients backward returns) from a float graph input
        trained = {name for name, p in self._parameters.items() if p.requires_grad} if keep else set()
        needs_grad = set(trained)
        if keep:
            needs_grad.update(info.name for info in self.graph.inputs if values[info.name].dtype.kind == "f")
        for name, parameter in self._parameters.items():
            values[name] = parameter.values
        values.update(self.constants)
        records = []
        for node in self.graph.nodes:
            arguments = [values[name] if name else None for name in node.inputs]
            while arguments and arguments[-1] is None:
                arguments.pop()
            track = keep and any(name in needs_grad for name in node.inputs if name)
            from_parameters = keep and any(name in trained for name in node.inputs if name)
            context.keep = track
            try:
                outputs, saved = OPERATORS[node.op_type].forward(node, arguments, context)
            except FastRNNError:
                raise
            except (ValueError, LookupError, TypeError, AttributeError, ArithmeticError, MemoryError) as error:
                shapes = [None if a is None else list(np.shape(a)) for a in arguments]
                raise ShapeError(f"{node.label} cannot run on inputs of shapes {shapes}: "
                                 f"{type(error).__name__}: {error}") from error
            if any(node.outputs[len(outputs):]):
                raise OnnxImportError(f"{node.label} names {len(node.outputs)} outputs; fastrnn's "
                                      f"{node.op_type} computes {len(outputs)}")
            for name, output in zip(node.outputs, outputs):
                if name:
                    values[name] = output
                    if track and output is not None and np.asarray(output).dtype.kind == "f":
                        needs_grad.add(name)
                        if from_parameters:
                            trained.add(name)
            if track:
                records.append((node, saved))
        result = tuple(np.asarray(values[name]) for name in self.output_names)
        self._tape = {"records": records, "needs_grad": needs_grad, "trained": trained,
                      "inputs": [values[name] for name in self.input_names],
                      "outputs": result} if keep else None
        return result[0] if len(result) == 1 else result

    def _bind(self, inputs, named):
        """The graph inputs by name, checked against what the graph declares."""
        if len(inputs) > len(self.input_names):
            raise ArgumentError(f"the model takes {len(self.input_names)} input(s) {self.input_names}; "
                                f"got {len(inputs)} positional")
        given = dict(zip(self.input_names, inputs))
        for name, value in named.items():
            if name not in self.input_names:
                raise ArgumentError(f"unknown input {name!r}; the model's inputs are {self.input_names}")
            if name in given:
                raise ArgumentError(f"input {name!r} given twice (by position and by name)")
            given[name] = value
        missing = [name for name in self.input_names if name not in given]
        if missing:
            raise ArgumentError(f"missing input(s) {missing}; the model takes {self.input_names}")
        values = {}
        for info in self.graph.inputs:
            values[info.name] = self._checked_input(info, given[info.name])
        return values

    def _checked_input(self, info, value):
        array = np.asarray(value)
        if info.dtype is not None:
            if info.dtype.kind == "f":
                if array.dtype.kind not in "fiu":
                    raise DTypeError(f"input {info.name!r} must be a float array; got dtype {array.dtype}")
                array = array.astype(self.dtype, copy=False)
            elif info.dtype.kind in "iu":
                if array.dtype.kind not in "iu":
                    raise DTypeError(f"input {info.name!r} must be an integer array ({info.dtype}); got "
                                     f"dtype {array.dtype}")
                array = array.astype(info.dtype, copy=False)
            elif info.dtype.kind == "b":
                array = array.astype(bool, copy=False)
        elif array.dtype.kind == "f":  # an input of undeclared type: floats compute in the model's dtype
            array = array.astype(self.dtype, copy=False)
        if info.shape is not None:
            if array.ndim != len(info.shape) or any(
                    isinstance(size, int) and size > 0 and size != actual
                    for size, actual in zip(info.shape, array.shape)):
                declared = [size if isinstance(size, int) and size > 0 else (size or "?") for size in info.shape]
                raise ShapeError(f"input {info.name!r} must have shape {declared}; got {list(array.shape)}")
        return array

    def _recurrent_weights(self, node, direction, build, options):
        """One direction's weights of a recurrent node: packed once and reused while its W, R
        and B are parameters whose values did not change (an optimizer step, ``load_state_dict``
        or a write through ``data`` packs them again); ``build()``'s arrays otherwise."""
        names = [name for name in node.inputs[1:4] if name]
        if any(name not in self._parameters for name in names):
            return build()
        cache = self.__dict__.get("_packed_cache")
        if cache is None:
            cache = PackedCache()
            object.__setattr__(self, "_packed_cache", cache)
        spec = RECURRENT_SPECS[node.op_type]
        return cache.get((node.name, direction), [self._parameters[name] for name in names],
                         lambda: pack_cell(spec, build(), **options), None)

    # backward -----------------------------------------------------------------------------------
    def backward(self, *grad_outputs):
        """Backpropagate through the last forward call.

        Adds the gradient of every parameter (float initializer) into its ``.grad``.

        Parameters
        ----------
        *grad_outputs : array_like or None
            The gradient of the loss with respect to each graph output, in the order
            of :attr:`output_names` (None: the loss does not depend on that output).

        Returns
        -------
        ndarray, tuple or None
            The gradient with respect to each graph input (None for integer inputs, and
            for every input when a node without backward lies between the inputs and the
            outputs, off the parameters' path); one array for a model of one input. Also
            kept in :attr:`grad_inputs`.

        Raises
        ------
        ArgumentError
            Without a forward call (with gradients enabled) since the last backward,
            or with a wrong number of gradients.
        OnnxImportError
            When the gradient must pass through a node whose operator fastrnn runs
            forward only (shape, comparison and constant operators) to reach a trainable
            parameter: freeze the parameters before it (``requires_grad_(False)``).
        """
        tape = self._tape
        if tape is None:
            raise ArgumentError("backward() needs a forward() call made with gradients enabled "
                                "(outside fastrnn.nn.no_grad()) since the last backward()")
        if len(grad_outputs) != len(self.output_names):
            raise ArgumentError(f"backward takes one gradient per output {self.output_names}; got "
                                f"{len(grad_outputs)}")
        needs_grad = tape["needs_grad"]
        inputs_complete = True
        grads = {}
        for name, output, grad in zip(self.output_names, tape["outputs"], grad_outputs):
            if grad is None or name not in needs_grad:
                continue
            grad = np.asarray(grad, dtype=self.dtype)
            if grad.shape != np.shape(output):
                raise ShapeError(f"the gradient of output {name!r} must have its shape "
                                 f"{list(np.shape(output))}; got {list(grad.shape)}")
            _add(grads, name, grad)
        for node, saved in reversed(tape["records"]):
            output_grads = [grads.pop(name, None) if name else None for name in node.outputs]
            if all(g is None for g in output_grads):
                continue
            operator = OPERATORS[node.op_type]
            if operator.backward is None and not any(name in tape["trained"] for name in node.inputs):
                inputs_complete = False  # only the graph inputs' gradients stop here
                continue
            if operator.backward is None:
                raise OnnxImportError(
                    f"{node.label}: fastrnn runs {node.op_type} forward only, and the gradient of the "
                    "loss flows through it to the parameters; freeze what lies before it "
                    "(requires_grad_(False)) or train a graph without it")
            input_grads = operator.backward(node, saved, output_grads)
            for name, grad in zip(node.inputs, input_grads):
                if name and grad is not None and name in needs_grad:
                    _add(grads, name, np.asarray(grad))
        for name, parameter in self._parameters.items():
            if name in grads:
                parameter.accumulate(grads[name].astype(parameter.dtype, copy=False))
        self._tape = None
        result = tuple(grads.get(name) if value.dtype.kind == "f" else None
                       for name, value in zip(self.input_names, tape["inputs"]))
        result = tuple(np.zeros_like(value) if g is None and value.dtype.kind == "f" else g
                       for g, value in zip(result, tape["inputs"]))
        if not inputs_complete:
            result = (None,) * len(result)
        self.grad_inputs = result
        return result[0] if len(result) == 1 else result

    # dtype --------------------------------------------------------------------------------------
    def _to_dtype(self, dtype):
        super()._to_dtype(dtype)
        object.__setattr__(self, "dtype", parameter_dtype(dtype))
        return self

    def extra_repr(self):
        ops = sorted({node.op_type for node in self.graph.nodes})
        return (f"inputs={self.input_names}, outputs={self.output_names}, {len(self.graph.nodes)} nodes "
                f"({', '.join(ops)}), {len(self._parameters)} parameters")

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def _add(grads, name, grad):
    grads[name] = grad if name not in grads else grads[name] + grad


def _check_node(node):
    if node.domain not in DEFAULT_DOMAINS or node.op_type not in OPERATORS:
        domain = f" of domain {node.domain!r}" if node.domain not in DEFAULT_DOMAINS else ""
        raise OnnxImportError(f"{node.label}: operator {node.op_type!r}{domain} is not supported by "
                              f"fastrnn.onnx.load; it runs {', '.join(sorted(OPERATORS))} (default domain)")
    check = OPERATORS[node.op_type].check
    if check is not None:
        check(node)
