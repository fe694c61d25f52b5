"""PyTorch-style recurrent modules: :class:`RNN`, :class:`LSTM`, :class:`GRU`.

Each module stacks ``num_layers`` layers of one or two directions and runs
every (layer, direction) through the functional API, with PyTorch's
constructor arguments, parameter names, initialisation, output layout and
dropout placement. What torch.nn adds with autograd is explicit here:
``forward`` keeps the caches (unless inside :func:`fastrnn.nn.no_grad`) and
``backward(d_output, d_h_n)`` walks the layers back, adding every parameter's
gradient into its ``.grad`` and returning the input's gradient.

Variable-length batches take ``lengths`` instead of a packed sequence. Every
(layer, direction) runs through
:func:`fastrnn.functional.direction.run_direction`, which keeps padding out
of the results (see :mod:`fastrnn.functional.lengths`).
"""

import math
import warnings

import numpy as np

from fastrnn._threads import PerThread, getstate_with_per_thread, setstate_with_per_thread
from fastrnn._validation import (as_float_array, check_bool, check_precision, parameter_dtype,
                                 random_generator)
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.functional import cells
from fastrnn.functional.packed import PackedCache, pack_cell
from fastrnn.functional.direction import backward_direction, run_direction
from fastrnn.functional.lengths import SequenceLengths
from fastrnn.nn.grad_mode import is_grad_enabled
from fastrnn.nn.module import Module
from fastrnn.nn.utils.rnn import PackedSequence, as_packed_sequence, check_float_packed, packed_like, \
    pad_packed_sequence
from fastrnn.parameter import Parameter

__all__ = ["RNN", "LSTM", "GRU"]

# functional-API gradient keys -> PyTorch parameter name stems
_PARAMETER_STEMS = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih",
                    "b_hh": "bias_hh", "w_hr": "weight_hr"}


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the layer stack, parameters, forward and backward.

    A subclass sets ``SPEC``, its row of the cell table (gate count, states,
    PyTorch name), and implements :meth:`_cell_forward` and
    :meth:`_cell_backward` for one direction of one layer.
    """

    SPEC = None

    # what forward leaves for backward, and backward's hx gradient: each thread has its
    # own, so threads sharing a module pair their own forward and backward
    _tape = PerThread()
    grad_hx = PerThread()
    __getstate__ = getstate_with_per_thread
    __setstate__ = setstate_with_per_thread

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, dtype=np.float32, seed=None,
                 backend=None, n_threads=None, precision="float32"):
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ArgumentError(f"dropout must be a probability in [0, 1); got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"dropout={dropout} has no effect with num_layers=1: it applies to the "
                          "outputs of every layer but the last", UserWarning, stacklevel=3)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ArgumentError(f"proj_size must be a non-negative integer; got {proj_size!r}")
        if proj_size >= self.hidden_size:
            raise ArgumentError(f"proj_size must be smaller than hidden_size = {self.hidden_size}; "
                                f"got {proj_size}")
        dtype = parameter_dtype(dtype)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.dropout = float(dropout)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.proj_size = int(proj_size)
        self.dtype = dtype
        self.backend = backend
        self.n_threads = n_threads
        self.precision = check_precision(precision)
        self.rng = random_generator(seed)
        self._tape = None
        self.grad_hx = None
        self._make_parameters()

    # parameters ------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """Features of ``h``: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def _make_parameters(self):
        # PyTorch's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
        bound = 1.0 / math.sqrt(self.hidden_size)
        G, H, P = self.SPEC.gates, self.hidden_size, self.output_size
        for layer in range(self.num_layers):
            inputs = self.input_size if layer == 0 else P * self.num_directions
            for direction in range(self.num_directions):
                shapes = [("weight_ih", (G * H, inputs)), ("weight_hh", (G * H, P))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                if self.proj_size:
                    shapes.append(("weight_hr", (P, H)))
                for stem, shape in shapes:
                    values = self.rng.uniform(-bound, bound, shape).astype(self.dtype)
                    setattr(self, self._name(stem, layer, direction), Parameter(values))

    @staticmethod
    def _name(stem, layer, direction):
        return f"{stem}_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, layer, direction):
        """The arrays of one (layer, direction), keyed by functional-API names."""
        weights = {}
        for key, stem in _PARAMETER_STEMS.items():
            parameter = self._parameters.get(self._name(stem, layer, direction))
            weights[key] = None if parameter is None else parameter.values
        return weights

    # forward ---------------------------------------------------------------
    def forward(self, input, hx=None, lengths=None):
        """Run the stack over a batch of sequences.

        Parameters
        ----------
        input : array_like of shape (T, B, input_size), (B, T, input_size) if ``batch_first``, or (T, input_size) unbatched
            Converted to the module's dtype. Or a :class:`~fastrnn.nn.utils.rnn.PackedSequence`
            (fastrnn's or torch's): it runs padded with its lengths (the ``lengths``
            path), and ``output`` is a PackedSequence packed alike; ``hx`` and ``h_n``
            are in the batch's original order, as in PyTorch.
        hx : array_like of shape (num_layers * num_directions, B, H_out), optional
            Initial hidden state of every layer and direction (index
            ``layer * num_directions + direction``), without the B axis for
            unbatched input; zeros by default. LSTM takes a pair ``(h0, c0)``,
            ``c0`` with ``hidden_size`` features.
        lengths : array_like of int of shape (B,), optional
            Valid steps of each row, 0..T, in any order. Results equal
            PyTorch's ``pack_padded_sequence`` -> module -> ``pad_packed_sequence``:
            outputs past a row's end are 0 and final states are those of its
            last valid step. A row of length 0 (which ``pack_padded_sequence``
            refuses) outputs zeros and keeps its initial states as final
            states; in :meth:`backward` their gradients pass straight to
            ``grad_hx``.

        Returns
        -------
        output : ndarray of shape (T, B, num_directions * H_out), batch first if ``batch_first``
        h_n : ndarray of shape (num_layers * num_directions, B, H_out)
            LSTM returns ``(h_n, c_n)``, ``c_n`` with ``hidden_size`` features.

        Raises
        ------
        ArgumentError
            With ``precision="int8"`` in training mode: int8 runs in ``eval()`` mode only.

        Notes
        -----
        Each (layer, direction) runs on its weights packed once and packed again only
        when a parameter changed (see :meth:`step`); any read of a parameter's ``data``
        counts as a change, so writing into it in place is seen. In ``precision`` bf16 or
        int8 the packed copies hold the weights rounded or quantized once. In training mode
        with gradients enabled, bf16 trains: each call rounds the float32 parameters once
        for its forward and backward passes (the packed copies are not used, since an
        optimizer step changes the parameters anyway), keeps the caches, and
        :meth:`backward` adds float32 gradients of the float32 parameters. In ``eval()``
        mode bf16 and int8 run inference only and keep nothing for :meth:`backward`.
        """
        packed = as_packed_sequence(input)
        if packed is not None:
            return self._forward_packed(packed, hx, lengths)
        precision = self._inference_precision()
        if precision == "int8" and self.training:
            raise ArgumentError(
                "precision='int8' is inference only: call module.eval() before forward, or set "
                "module.precision = 'bf16' or 'float32' to train")
        x, batched = self._input_time_major(input)
        T, B, _ = x.shape
        if lengths is not None and not batched:
            raise ShapeError("lengths needs a batched input of shape (T, B, input_size); the input "
                             f"is unbatched with shape {np.shape(input)}")
        h0, c0 = self._initial_states(hx, B, batched)
        sequences = SequenceLengths(lengths, T, B)
        # reduced precision in eval() mode is inference: no caches
        keep = is_grad_enabled() and (precision == "float32" or self.training)
        # bf16 training rounds the parameters per call, packed for its backward pass too
        per_call = keep and precision != "float32"
        tape = {"sequences": sequences, "batched": batched, "layers": [], "dropout_masks": []}

        layer_input = x
        h_n = np.empty_like(h0)
        c_n = None if c0 is None else np.empty_like(c0)
        dirs = self.num_directions
        for layer in range(self.num_layers):
            tapes, outputs = [], []
            for direction in range(dirs):
                k = layer * dirs + direction
                states = [h0[k]] if c0 is None else [h0[k], c0[k]]
                y, finals, direction_tape = run_direction(
                    self.SPEC, layer_input, self._weights(layer, direction) if per_call
                    else self._packed_weights(layer, direction, precision), states,
                    steps=sequences, reverse=direction == 1, requires_grad=keep,
                    backend=self.backend, n_threads=self.n_threads, precision=precision,
                    **self._cell_options())
                h_n[k] = finals[0]
                if c_n is not None:
                    c_n[k] = finals[1]
                tapes.append(direction_tape)
                outputs.append(y)
            # one direction: the runner's output as is (no copy)
            layer_output = outputs[0] if dirs == 1 else np.concatenate(outputs, axis=2)
            tape["layers"].append(tapes)
            layer_input = layer_output
            if layer < self.num_layers - 1 and self.training and self.dropout > 0:
                keep_mask = self.rng.random(layer_input.shape) >= self.dropout
                mask = keep_mask.astype(self.dtype) / self.dtype.type(1 - self.dropout)
                layer_input = layer_input * mask
                tape["dropout_masks"].append(mask)
            else:
                tape["dropout_masks"].append(None)

        self._tape = tape if keep else None
        output = layer_input
        if not batched:
            output, h_n = output[:, 0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        elif self.batch_first:
            output = output.transpose(1, 0, 2)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _forward_packed(self, packed, hx, lengths):
        """A packed batch run padded on the lengths path; the output packed alike."""
        if lengths is not None:
            raise ArgumentError("lengths must be None with a PackedSequence input: its batch_sizes give them")
        check_float_packed(packed)
        padded, row_lengths = pad_packed_sequence(packed, batch_first=self.batch_first)
        output, state = self.forward(padded, hx, lengths=row_lengths)
        if self._tape is not None:
            self._tape["packed"] = packed
        return packed_like(output, packed, self.batch_first), state

    def _input_time_major(self, input):
        array = np.asarray(input)
        if array.dtype.kind != "f":
            raise DTypeError(f"input must be a float array; got dtype {array.dtype}")
        if array.ndim not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ShapeError(f"input must have shape {layout}, or (T, input_size) unbatched; "
                             f"got shape {array.shape}")
        if array.shape[-1] != self.input_size:
            raise ShapeError(f"input must have input_size = {self.input_size} features in its last "
                             f"axis; got shape {array.shape}")
        batched = array.ndim == 3
        if not batched:
            array = array[:, None, :]
        elif self.batch_first:
            array = array.transpose(1, 0, 2)
        return np.ascontiguousarray(array, dtype=self.dtype), batched

    def _initial_states(self, hx, B, batched):
        """``hx`` validated and converted: (h0, c0) of shape (L*dirs, B, ·); c0 None but for LSTM."""
        L = self.num_layers * self.num_directions
        is_lstm = self.SPEC.has_cell_state
        if hx is None:
            h0, c0 = None, None
        elif is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ArgumentError(f"hx of an LSTM must be a pair (h0, c0); got {type(hx).__name__}")
            h0, c0 = hx
        else:
            if isinstance(hx, (tuple, list)):
                raise ArgumentError(f"hx of a {self.SPEC.torch_name} must be one array, not a "
                                    f"{type(hx).__name__}")
            h0, c0 = hx, None
        states = []
        for name, value, size in [("h0", h0, self.output_size), ("c0", c0, self.hidden_size)]:
            if name == "c0" and not is_lstm:
                states.append(None)
                continue
            if value is None:
                states.append(np.zeros((L, B, size), self.dtype))
                continue
            # refuses strings, objects and complex values, which a cast would take or mangle
            array = as_float_array(name, value).astype(self.dtype, copy=False)
            expected = (L, B, size) if batched else (L, size)
            if array.shape != expected:
                raise ShapeError(
                    f"{name} must have shape {expected} (num_layers * num_directions = {L}"
                    + (f", batch {B}" if batched else "") + f", {size} features); got shape {array.shape}")
            states.append(np.ascontiguousarray(array if batched else array[:, None]))
        return states[0], states[1]

    # backward --------------------------------------------------------------
    def backward(self, d_output, d_h_n=None, d_c_n=None):
        """Backpropagate through the last ``forward`` call.

        Every parameter's gradient is added into its ``.grad`` (allocated on
        first use; clear with :meth:`zero_grad`), as ``loss.backward()`` does
        in PyTorch. The gradient of ``hx`` is left in ``grad_hx`` (LSTM: a
        pair).

        Parameters
        ----------
        d_output : array_like shaped like ``output``, or None
            Gradient of the loss with respect to ``output``.
        d_h_n : array_like shaped like ``h_n``, optional
        d_c_n : array_like shaped like ``c_n``, optional
            LSTM only.

        Returns
        -------
        ndarray shaped like ``input``
            Gradient of the loss with respect to the input: a PackedSequence packed like
            the input when it was one (``d_output`` then is a PackedSequence like
            ``output``, or its ``data``).
        """
        tape = self._tape
        packed = None if tape is None else tape.pop("packed", None)
        if packed is not None and d_output is not None:
            d_data = d_output.data if isinstance(d_output, PackedSequence) else np.asarray(d_output)
            if d_data.shape[0] != packed.data.shape[0]:
                raise ShapeError(f"d_output must be packed like output, with {packed.data.shape[0]} rows; "
                                 f"got shape {d_data.shape}")
            d_output, _ = pad_packed_sequence(packed._replace(data=d_data), batch_first=self.batch_first,
                                              total_length=tape["sequences"].T)
        if packed is not None:
            return packed_like(self._backward_padded(tape, d_output, d_h_n, d_c_n), packed, self.batch_first)
        return self._backward_padded(tape, d_output, d_h_n, d_c_n)

    def _backward_padded(self, tape, d_output, d_h_n, d_c_n):
        if tape is None:
            raise ArgumentError("backward() needs a forward() call made with gradients enabled "
                                "(outside fastrnn.nn.no_grad()) since the last backward()")
        if d_c_n is not None and not self.SPEC.has_cell_state:
            raise ArgumentError(f"d_c_n is for LSTM only; a {self.SPEC.torch_name} has no cell state")
        sequences, batched = tape["sequences"], tape["batched"]
        T, B = sequences.T, sequences.B
        L, dirs, P, H = self.num_layers, self.num_directions, self.output_size, self.hidden_size
        d_layer_output = self._gradient("d_output", d_output, (T, B, dirs * P), batched,
                                        time_major=True)
        d_h = self._gradient("d_h_n", d_h_n, (L * dirs, B, P), batched)
        d_c = (self._gradient("d_c_n", d_c_n, (L * dirs, B, H), batched)
               if self.SPEC.has_cell_state else None)

        dh0 = np.empty_like(d_h)
        dc0 = None if d_c is None else np.empty_like(d_c)
        for layer in range(L - 1, -1, -1):
            d_input = None
            for direction in range(dirs):
                k = layer * dirs + direction
                dy = d_layer_output[:, :, direction * P:(direction + 1) * P]
                d_finals = [d_h[k]] if d_c is None else [d_h[k], d_c[k]]
                grads = backward_direction(tape["layers"][layer][direction], dy, d_finals)
                for key, gradient in grads.items():
                    if key in _PARAMETER_STEMS:
                        name = self._name(_PARAMETER_STEMS[key], layer, direction)
                        self._parameters[name].accumulate(gradient)
                dh0[k] = grads["h0"]
                if dc0 is not None:
                    dc0[k] = grads["c0"]
                # each direction's input gradient is its own array, zero past a row's end
                if d_input is None:
                    d_input = grads["x"]
                else:
                    d_input += grads["x"]
            if layer > 0 and tape["dropout_masks"][layer - 1] is not None:
                d_input = d_input * tape["dropout_masks"][layer - 1]
            d_layer_output = d_input
        self._tape = None

        if not batched:
            d_input, dh0 = d_input[:, 0], dh0[:, 0]
            dc0 = None if dc0 is None else dc0[:, 0]
        elif self.batch_first:
            d_input = d_input.transpose(1, 0, 2)
        self.grad_hx = dh0 if dc0 is None else (dh0, dc0)
        return d_input

    def _gradient(self, name, value, shape, batched, time_major=False):
        """A gradient argument as a time-major array of ``shape``; zeros when None."""
        if value is None:
            return np.zeros(shape, self.dtype)
        array = np.asarray(value, dtype=self.dtype)
        swap = batched and time_major and self.batch_first
        if not batched:
            expected = (shape[0], shape[2])
        elif swap:
            expected = (shape[1], shape[0], shape[2])
        else:
            expected = shape
        if array.shape != expected:
            raise ShapeError(f"{name} must have shape {expected}, like the forward result it is the "
                             f"gradient of; got shape {array.shape}")
        if not batched:
            array = array[:, None]
        elif swap:
            array = array.transpose(1, 0, 2)
        return np.ascontiguousarray(array)

    # streaming ---------------------------------------------------------------
    def step(self, x_t, state=None):
        """Run one time step of a single-layer, unidirectional module, the state carried by the caller.

        The weights are packed once (:func:`fastrnn.pack_lstm` and its siblings) and packed
        again only when a parameter changed: replaced, assigned, loaded
        (``load_state_dict``) or stepped by an optimizer (see
        :attr:`fastrnn.parameter.Parameter.version`: reading ``data`` counts too, so
        in-place writes are seen). Nothing is recorded for
        :meth:`backward`. The step runs in the module's ``precision`` (in either mode: it
        records nothing).

        Parameters
        ----------
        x_t : array_like of shape (B, input_size)
            Converted to the module's dtype.
        state : ndarray of shape (B, H_out), or tuple (h, c) for an LSTM, optional
            The state after the previous step, as this method returns it (``c`` with
            ``hidden_size`` features); zeros by default.

        Returns
        -------
        y_t : ndarray of shape (B, H_out)
            The new hidden state (the same array as the returned state's ``h``).
        state : ndarray of shape (B, H_out), or tuple (h, c)

        Raises
        ------
        ArgumentError
            For a module with ``num_layers > 1`` or ``bidirectional=True``: a step of a
            stack or of a backward direction needs the steps after it.
        """
        if self.num_layers != 1 or self.bidirectional:
            raise ArgumentError(
                f"step runs one time step of a single-layer, unidirectional module; this one has "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}. A reverse direction "
                "needs the inputs that come after the step: run forward over the whole sequence, or "
                "build one single-layer unidirectional module per layer and chain their steps")
        if not (isinstance(x_t, np.ndarray) and x_t.dtype == self.dtype):
            x_t = as_float_array("x_t", x_t).astype(self.dtype)
        return self._packed_weights(precision=self._inference_precision()).step(x_t, state)

    def _inference_precision(self):
        """``precision``, checked (it may have been assigned): float64 modules run float32 only."""
        precision = check_precision(self.precision)
        if precision != "float32" and self.dtype != np.float32:
            raise DTypeError(f"precision={precision!r} computes in float32; this module's parameters "
                             f"are {self.dtype}: build it with dtype=numpy.float32")
        return precision

    def _packed_weights(self, layer=0, direction=0, precision="float32"):
        """The weights of one (layer, direction) packed in ``precision``, packed again when a
        parameter was replaced or its version moved (or another backend, ISA level or
        precision runs)."""
        cache = self.__dict__.get("_packed_cache")
        if cache is None:
            cache = PackedCache()
            object.__setattr__(self, "_packed_cache", cache)
        parameters = [self._parameters.get(self._name(stem, layer, direction))
                      for stem in _PARAMETER_STEMS.values()]
        return cache.get((layer, direction), parameters, lambda: pack_cell(
            self.SPEC, self._weights(layer, direction), backend=self.backend,
            precision=precision, **self._cell_options()), self.backend, precision)

    def _apply_precision(self, precision):
        """Set ``precision`` and pack every (layer, direction) in it now (see
        :meth:`~fastrnn.nn.module.Module.quantized`)."""
        self.precision = check_precision(precision)
        precision = self._inference_precision()
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                self._packed_weights(layer, direction, precision)

    def _cell_options(self):
        """The cell's own options for the functional API (``nonlinearity`` of an RNN)."""
        return {}

    def extra_repr(self):
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.proj_size:
            parts.append(f"proj_size={self.proj_size}")
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        for name, default in [("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)]:
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        if self.precision != "float32":
            parts.append(f"precision={self.precision!r}")
        return ", ".join(parts)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class RNN(RNNBase):
    r"""Elman RNN layers: :math:`h_t = \phi(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    nonlinearity : {"tanh", "relu"}
    bias, batch_first : bool
    dropout : float in [0, 1)
        Dropout on the outputs of every layer but the last, in training mode.
    bidirectional : bool
    dtype : {numpy.float32, numpy.float64}
    seed : int or numpy.random.Generator, optional
        Source of the initial weights and dropout masks.
    backend, n_threads : optional
        Passed to the functional API.
    precision : {"float32", "bf16", "int8"}
        The precision of forward and of :meth:`step` (float32 modules only; see
        :func:`fastrnn.quantize`). bf16 also trains (mixed precision: products in bf16,
        float32 parameters, states and gradients; see :meth:`forward`); int8 runs in
        ``eval()`` mode only. An attribute that may be assigned.
    """

    SPEC = cells.RNN

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=np.float32,
                 seed=None, backend=None, n_threads=None, precision="float32"):
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, seed=seed, backend=backend, n_threads=n_threads,
                         precision=precision)

    def _cell_options(self):
        return {"nonlinearity": self.nonlinearity}

    def extra_repr(self):
        text = super().extra_repr()
        return text + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """LSTM layers (gates ``i, f, g, o``), with an optional output projection.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    bias, batch_first : bool
    dropout : float in [0, 1)
    bidirectional : bool
    proj_size : int
        If > 0, ``h_t = (o_t * tanh(c_t)) W_hr^T`` has ``proj_size`` features.
    dtype, seed, backend, n_threads, precision
        As for :class:`RNN`.
    """

    SPEC = cells.LSTM

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, dtype=np.float32, seed=None,
                 backend=None, n_threads=None, precision="float32"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype=dtype, seed=seed, backend=backend,
                         n_threads=n_threads, precision=precision)


class GRU(RNNBase):
    """GRU layers (gates ``r, z, n``, reset gate applied to ``h W_hn^T + b_hn`` as in PyTorch).

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    bias, batch_first : bool
    dropout : float in [0, 1)
    bidirectional : bool
    dtype, seed, backend, n_threads, precision
        As for :class:`RNN`.
    """

    SPEC = cells.GRU

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None, backend=None,
                 n_threads=None, precision="float32"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, seed=seed, backend=backend, n_threads=n_threads,
                         precision=precision)
