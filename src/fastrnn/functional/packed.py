"""Weights packed once, and the streaming step: :func:`pack_rnn`, :func:`pack_lstm`, :func:`pack_gru`.

A packed-weights object validates a layer's weights once (with the checks and
exceptions of the forward functions), keeps read-only copies of them, and keeps
what its backend's step needs laid out in advance: on the Cython backend the
packed panels of ``W_ih^T`` and ``W_hh^T`` the forward kernels build at every
call (``csrc/step.pxi``), on the Numba and Python backends the transposed
C-contiguous arrays. :meth:`PackedWeights.step` then runs one time step with
the state carried by the caller, for real-time use: per call it checks the
arrays cheaply, allocates nothing but its outputs (nothing with ``out=``), never
repacks and starts no thread.

The objects are immutable: to change a weight, pack again. The forward
functions accept one in place of their weights (``lstm_forward(x, packed,
h0=...)``): the Cython kernels then run on its packed buffers (one layout,
``csrc/step.pxi``'s ``pack_layer``, serves the step and the forward), the Numba
and Python kernels on its arrays (they pack nothing per call). Buffers depend on
the ISA level they were packed under: the step and the forward functions refuse
them under another (:class:`~fastrnn.exceptions.StaleCacheError`); pack again.

With ``precision="bf16"`` or ``"int8"`` the weights are rounded or quantized once, when
packed (``pack_reduced`` of the backend: ``fastrnn._cy`` or
:mod:`fastrnn._python.reduced_layer`); the object keeps the float32 weights as given, and
its step and the forward functions run the reduced-precision kernels. A bf16 object also
serves a training call (``requires_grad=True``): a layer for the backward kernels is packed
from its float32 weights on the first such call and kept (the weights never change). int8
runs inference only.
"""

from types import MappingProxyType

import numpy as np

from fastrnn import _backends
from fastrnn._validation import (as_float_array, check_choice, check_ndim, check_precision,
                                 check_shape, compute_dtype, kernel_array)
from fastrnn.exceptions import ArgumentError, DTypeError
from fastrnn.functional._gru import gru_biases
from fastrnn.functional._layer import Layer, read_only_view
from fastrnn.functional._lstm_proj import _ProjLayer
from fastrnn.functional._packed_base import PackedWeights
from fastrnn.functional._precision import check_reduced_dtype, resolve_reduced
from fastrnn.functional._rnn import NONLINEARITIES
from fastrnn.functional.cells import GRU, LSTM, RNN, cell_spec

__all__ = ["pack_rnn", "pack_lstm", "pack_gru", "PackedWeights", "PackedRNN", "PackedLSTM",
           "PackedGRU", "pack_cell", "PackedCache"]

# what a step's fast path lets through to the checked path: the compiled kernel's refusals
# (ValueError, BufferError) and what a non-array argument raises before it is reached
_FAST_PATH_MISSES = (ValueError, TypeError, AttributeError, BufferError, IndexError)


def _frozen(array):
    """A read-only copy of ``array`` (None stays None)."""
    return None if array is None else read_only_view(np.array(array, order="C", copy=True))


class _Packed(PackedWeights):
    """What the three cells' packed objects share; see :class:`PackedWeights` for the API."""

    __slots__ = ("weights", "options", "dtype", "input_size", "hidden_size", "backend", "precision",
                 "_backend_request", "_buffers", "_run", "_fast", "_state_size", "_kernel",
                 "_reduced")
    CELL = None          # the cell's row of fastrnn.functional.cells
    GATED = False        # the state is (h, c)

    def __init__(self, weights, options, backend, precision="float32"):
        self._set("weights", MappingProxyType(dict(weights)))  # read-only, as its arrays
        self._set("precision", check_precision(precision))
        self._set("options", dict(options))
        self._set("dtype", weights["w_ih"].dtype)
        self._set("input_size", weights["w_ih"].shape[1])
        self._set("hidden_size", weights["w_hh"].shape[0] // self.CELL.gates)
        self._set("_state_size", self.hidden_size)
        self._set("_backend_request", backend)
        if self.precision == "float32":
            name, module = _backends.resolve(backend)
        else:
            name, module = resolve_reduced(backend, self._forward_kernel(), self.precision)
        self._set("backend", name)
        self._set("_fast", None)
        self._set("_kernel", None)
        self._set("_reduced", {})
        if self.precision == "float32":
            self._build(name, module)
        else:
            self._build_reduced(name, module)

    def _set(self, name, value):
        object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable: to change the weights, "
                             f"call {self.PACKER} again")

    def __delattr__(self, name):
        self.__setattr__(name, None)

    def __reduce__(self):
        # the buffers are rebuilt from the weights: they depend on the machine's packing
        return _rebuild, (type(self), dict(self.weights), self.options, self._backend_request,
                          self.precision)

    def __repr__(self):
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}"
                f", dtype={self.dtype}, precision={self.precision!r}, backend={self.backend!r}"
                f"{options})")

    def _forward_kernel(self):
        """The name of the forward kernel these weights run (``"lstm_proj_forward"``...)."""
        return self.CELL.forward

    # ---- reduced precision

    def _build_reduced(self, name, module):
        kernel = self._pack_reduced(module)
        self._set("_kernel", kernel)
        self._set("_buffers", kernel)
        self._reduced[name] = kernel
        if name == "cython":  # the compiled step checks its arguments: the fast path may try it
            self._set("_fast", kernel.step)
        if self.GATED:
            self._set("_run", kernel.step)
        else:
            self._set("_run", lambda x, h, h_out: kernel.step(x, h, None, h_out, None))

    def _pack_reduced(self, module, backward=False):
        cell, arguments, keywords = self._reduced_arguments()
        if backward:  # an extension without training kernels takes no backward argument
            keywords["backward"] = True
        return module.pack_reduced(cell, self.precision, *arguments, **keywords)

    def reduced_layer(self, backend, backward=False):
        """The weights in this object's precision for ``backend``'s reduced-precision kernels,
        packed on first use for a backend other than the object's own.

        Parameters
        ----------
        backend : str
            A backend with reduced-precision kernels (``"cython"``, ``"python"``).
        backward : bool
            For a bf16 training call: the layer must serve the ``*_backward_reduced`` kernels
            too. It is packed from the float32 weights on first use (and kept), beside the
            inference layer.

        Returns
        -------
        ReducedLayer
            What ``backend.pack_reduced`` returns.
        """
        key = (backend, "backward") if backward else backend
        layer = self._reduced.get(key)
        if layer is None:
            layer = self._reduced[key] = self._pack_reduced(_backends.resolve(backend)[1], backward)
        return layer

    @property
    def w_ih(self):
        """ndarray of shape (G*H, D), read-only."""
        return self.weights["w_ih"]

    @property
    def w_hh(self):
        """ndarray of shape (G*H, H) (or (4*H, P) with a projection), read-only."""
        return self.weights["w_hh"]

    @property
    def b_ih(self):
        """ndarray of shape (G*H,) or None, read-only."""
        return self.weights["b_ih"]

    @property
    def b_hh(self):
        """ndarray of shape (G*H,) or None, read-only."""
        return self.weights["b_hh"]

    # ---- the step

    def step(self, x_t, state=None, *, out=None):
        """Run one time step of the layer.

        Parameters
        ----------
        x_t : array_like of shape (B, D)
            The input of this step.
        state : ndarray of shape (B, H), or tuple (h, c) for an LSTM, optional
            The state after the previous step, as the forward function and this method
            return it (``h`` is (B, P) with a projection); zeros by default.
        out : ndarray of shape (B, H), or tuple (h, c) for an LSTM, optional
            Arrays to write the new state into (C-contiguous, of the weights' dtype, not
            sharing memory with ``x_t`` or ``state``, except that an LSTM's ``c`` may be
            updated in place): a loop that alternates two buffers allocates nothing.

        Returns
        -------
        y_t : ndarray of shape (B, H) (or (B, P))
            The output of the step: the new hidden state, the very array that is ``state``'s
            ``h`` (or ``out``'s).
        state : ndarray of shape (B, H), or tuple (h, c)
            The state after this step, to pass to the next call.

        Raises
        ------
        ShapeError, DTypeError, ArgumentError
            For an argument that does not fit, naming it. ``x_t`` must have the weights'
            dtype (float16 counts as float32). Neither ``x_t`` nor the state is checked
            for NaN or infinity (NaN propagates as through ``x`` in the forward functions).

        Notes
        -----
        The result equals the forward function's on one step (``T = 1``) with the same
        weights and state, bit for bit on the Cython backend. One thread runs it.
        """
        fast = self._fast
        if fast is not None and state is not None:
            try:
                if self.GATED:
                    h, c = state
                    if out is None:
                        B = x_t.shape[0]
                        h_out = np.empty((B, self._state_size), self.dtype)
                        c_out = np.empty((B, self.hidden_size), self.dtype)
                    else:
                        h_out, c_out = out
                    fast(x_t, h, c, h_out, c_out)
                    return h_out, (h_out, c_out)
                h_out = np.empty((x_t.shape[0], self.hidden_size), self.dtype) if out is None else out
                fast(x_t, state, None, h_out, None)
                return h_out, h_out
            except _FAST_PATH_MISSES:
                pass  # the checked path below says what is wrong, or converts what it may
        return self._checked_step(x_t, state, out)

    def _checked_step(self, x_t, state, out):
        """The step with every argument validated and converted (float16, lists, layouts)."""
        x = as_float_array("x_t", x_t)
        check_ndim("x_t", x, 2, "(B, D)")
        B = x.shape[0]
        check_shape("x_t", x, (B, self.input_size), f"D = {self.input_size} columns like w_ih")
        shapes = self._state_shapes(B)
        states = self._named(state, "state", len(shapes))
        named = [("x_t", x)] + [(name, as_float_array(name, value)) for name, value in states
                                if value is not None]
        dtype = compute_dtype(named)
        if dtype != self.dtype:
            raise DTypeError(f"x_t and state must have the packed weights' dtype {self.dtype}; "
                             f"got {named[0][1].dtype if len(named) == 1 else [a.dtype for _, a in named]}"
                             f"; cast them first (or pack float{dtype.itemsize * 8} weights)")
        arrays = dict(named)
        inputs = []
        for (name, _), shape in zip(states, shapes):
            if name in arrays:
                check_ndim(name, arrays[name], 2, "(B, H)")
                check_shape(name, arrays[name], shape, f"B = {B} rows like x_t, {shape[1]} units")
                inputs.append(kernel_array(arrays[name], dtype))
            else:
                inputs.append(np.zeros(shape, dtype))
        x = kernel_array(x, dtype)
        if out is None:
            outputs = [np.empty(shape, dtype) for shape in shapes]
        else:
            outputs = [value for _, value in self._named(out, "out", len(shapes))]
            for i, ((name, _), array, shape) in enumerate(zip(self._named(out, "out", len(shapes)),
                                                               outputs, shapes)):
                self._check_output(name, array, shape, [x, *inputs, *outputs[:i]],
                                   inputs[1] if i == 1 else None)
        self._run(x, *inputs, *outputs)
        if self.GATED:
            return outputs[0], tuple(outputs)
        return outputs[0], outputs[0]

    def _state_shapes(self, B):
        shapes = [(B, self._state_size)]
        if self.GATED:
            shapes.append((B, self.hidden_size))
        return shapes

    def _named(self, value, name, count):
        """``[(name, array)]`` (one state) or ``[(name[0], h), (name[1], c)]`` (two)."""
        if count == 1:
            return [(name, value)]
        if value is None:
            return [(f"{name}[0]", None), (f"{name}[1]", None)]
        if isinstance(value, np.ndarray) or not hasattr(value, "__len__") or len(value) != 2:
            raise ArgumentError(f"{name} must be a pair (h, c) of arrays, as the LSTM returns its "
                                f"state; got {type(value).__name__}")
        return [(f"{name}[0]", value[0]), (f"{name}[1]", value[1])]

    def _check_output(self, name, array, shape, inputs, in_place):
        if not isinstance(array, np.ndarray):
            raise ArgumentError(f"{name} must be an ndarray; got {type(array).__name__}")
        if array.dtype != self.dtype:
            raise DTypeError(f"{name} must have the packed weights' dtype {self.dtype}; got {array.dtype}")
        check_shape(name, array, shape, "the shape of the state it receives")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ArgumentError(f"{name} must be C-contiguous and writeable")
        for other in inputs:
            if other is not in_place and np.shares_memory(array, other):
                raise ArgumentError(f"{name} must not share memory with x_t, state or another output "
                                    "(only an LSTM's c may be updated in place)")


def _rebuild(cls, weights, options, backend, precision="float32"):
    return cls(weights, options, backend, precision)


class PackedRNN(_Packed):
    """An Elman layer's weights packed once (:func:`pack_rnn`); state ``h`` of shape (B, H)."""

    __slots__ = ()
    CELL = RNN
    PACKER = "pack_rnn"

    def _build(self, name, module):
        w, relu = self.weights, self.options["nonlinearity"] == "relu"
        bias = _summed_bias(w, self.dtype, self.hidden_size)
        if name == "cython":
            kernel = buffers = module.pack_layer("rnn", w["w_ih"], w["w_hh"], bias, flag=relu)
            self._set("_kernel", kernel)
            self._set("_fast", kernel.step)
            self._set("_run", lambda x, h, h_out: kernel.step(x, h, None, h_out, None))
        else:
            steps = _array_steps(name)
            w_ih_t, w_hh_t = _transposed(w["w_ih"]), _transposed(w["w_hh"])
            buffers = (w_ih_t, w_hh_t, bias)
            self._set("_run", lambda x, h, h_out: steps.rnn_step(x, w_ih_t, w_hh_t, bias, h, relu, h_out))
        self._set("_buffers", buffers)

    def _reduced_arguments(self):
        w = self.weights
        bias = _summed_bias(w, self.dtype, self.hidden_size)
        return "rnn", (w["w_ih"], w["w_hh"], bias), {"flag": self.options["nonlinearity"] == "relu"}


class PackedLSTM(_Packed):
    """An LSTM layer's weights packed once (:func:`pack_lstm`); state ``(h, c)``, ``h`` of
    shape (B, P) with a projection, else (B, H), and ``c`` of shape (B, H)."""

    __slots__ = ()
    CELL = LSTM
    PACKER = "pack_lstm"
    GATED = True

    @property
    def w_hr(self):
        """ndarray of shape (P, H) or None: the projection, read-only."""
        return self.weights.get("w_hr")

    def _forward_kernel(self):
        return "lstm_proj_forward" if self.weights.get("w_hr") is not None else "lstm_forward"

    def _build_reduced(self, name, module):
        if self.weights.get("w_hr") is not None:
            self._set("_state_size", self.weights["w_hr"].shape[0])
        super()._build_reduced(name, module)

    def _reduced_arguments(self):
        w = self.weights
        bias = _summed_bias(w, self.dtype, LSTM.gates * self.hidden_size)
        if w.get("w_hr") is None:
            return "lstm", (w["w_ih"], w["w_hh"], bias), {}
        return "lstm_proj", (w["w_ih"], w["w_hh"], bias), {"w_hr": w["w_hr"]}

    def _build(self, name, module):
        w, H = self.weights, self.hidden_size
        projected = w.get("w_hr") is not None
        if projected:
            self._set("_state_size", w["w_hr"].shape[0])
        bias = _summed_bias(w, self.dtype, LSTM.gates * H)
        if name == "cython":
            kernel = buffers = module.pack_layer("lstm_proj" if projected else "lstm", w["w_ih"],
                                                 w["w_hh"], bias, w_hr=w.get("w_hr"))
            self._set("_kernel", kernel)
            self._set("_fast", kernel.step)
            self._set("_run", kernel.step)
        else:
            steps = _array_steps(name)
            w_ih_t, w_hh_t = _transposed(w["w_ih"]), _transposed(w["w_hh"])
            if projected:
                w_hr_t = _transposed(w["w_hr"])
                buffers = (w_ih_t, w_hh_t, w_hr_t, bias)
                self._set("_run", lambda x, h, c, h_out, c_out: steps.lstm_proj_step(
                    x, w_ih_t, w_hh_t, w_hr_t, bias, h, c, h_out, c_out))
            else:
                buffers = (w_ih_t, w_hh_t, bias)
                self._set("_run", lambda x, h, c, h_out, c_out: steps.lstm_step(
                    x, w_ih_t, w_hh_t, bias, h, c, h_out, c_out))
        self._set("_buffers", buffers)


class PackedGRU(_Packed):
    """A GRU layer's weights packed once (:func:`pack_gru`); state ``h`` of shape (B, H)."""

    __slots__ = ()
    CELL = GRU
    PACKER = "pack_gru"

    def _build(self, name, module):
        w, H = self.weights, self.hidden_size
        reset_after = self.options["reset_after"]
        bias_x, b_hn = gru_biases(w["b_ih"], w["b_hh"], H, self.dtype)
        if name == "cython":
            kernel = buffers = module.pack_layer("gru", w["w_ih"], w["w_hh"], bias_x, b_hn=b_hn,
                                                 flag=reset_after)
            self._set("_kernel", kernel)
            self._set("_fast", kernel.step)
            self._set("_run", lambda x, h, h_out: kernel.step(x, h, None, h_out, None))
        else:
            steps = _array_steps(name)
            w_ih_t = _transposed(w["w_ih"])
            w_hrz_t, w_hn_t = _transposed(w["w_hh"][:2 * H]), _transposed(w["w_hh"][2 * H:])
            buffers = (w_ih_t, w_hrz_t, w_hn_t, bias_x, b_hn)
            self._set("_run", lambda x, h, h_out: steps.gru_step(
                x, w_ih_t, w_hrz_t, w_hn_t, bias_x, b_hn, h, reset_after, h_out))
        self._set("_buffers", buffers)

    def _reduced_arguments(self):
        w = self.weights
        bias_x, b_hn = gru_biases(w["b_ih"], w["b_hh"], self.hidden_size, self.dtype)
        return "gru", (w["w_ih"], w["w_hh"], bias_x), {"b_hn": b_hn,
                                                       "flag": self.options["reset_after"]}


# ---- building blocks

def _summed_bias(weights, dtype, rows):
    """``b_ih + b_hh`` as the forward functions sum it (:meth:`Layer.summed_bias`)."""
    bias = np.zeros(rows, dtype)
    for b in (weights["b_ih"], weights["b_hh"]):
        if b is not None:
            bias += b
    return bias


def _transposed(w):
    return np.ascontiguousarray(w.T)


#: The step kernels of the backends without packed buffers, imported on first use.
_ARRAY_STEPS = {"numba": "fastrnn._numba.step", "python": "fastrnn._python.step"}


def _array_steps(name):
    import importlib

    return importlib.import_module(_ARRAY_STEPS[name])


def _weights_of(layer, names):
    return {name: _frozen(getattr(layer, name)) for name in names}


# ---- the packers

def pack_rnn(w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", backend=None,
             precision="float32"):
    """Validate and pack an Elman layer's weights once, for :meth:`PackedRNN.step` and
    :func:`~fastrnn.rnn_forward`.

    Parameters
    ----------
    w_ih : array_like of shape (H, D)
    w_hh : array_like of shape (H, H)
    b_ih, b_hh : array_like of shape (H,), optional
        As :func:`fastrnn.rnn_forward` takes them (PyTorch's layout); copied.
    nonlinearity : {"tanh", "relu"}
    backend : {"cython", "numba", "python", "auto"}, optional
        The backend the step runs on, resolved now (as the forward functions resolve
        theirs at each call). Numba has no bf16/int8 kernels.
    precision : {"float32", "bf16", "int8"}
        The precision of the products: ``"bf16"`` rounds the weights to bfloat16 once,
        ``"int8"`` quantizes them once per output row (symmetric); both need float32 weights
        (int8 runs inference only; bf16 also trains: see the module's docstring). The object
        keeps the float32 weights.

    Returns
    -------
    PackedRNN
        Immutable: to change a weight, pack again.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, ArgumentError
        As :func:`fastrnn.rnn_forward` raises them for its weights; DTypeError for float64
        weights in bf16 or int8, ArgumentError for an unknown precision.
    BackendUnavailableError
        For bf16 or int8 on a backend without their kernels (Numba).
    """
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    check_precision(precision)
    layer = _weights_layer(w_ih, w_hh, b_ih, b_hh, RNN)
    check_reduced_dtype(precision, layer.dtype, "the weights")
    weights = _weights_of(layer, ("w_ih", "w_hh", "b_ih", "b_hh"))
    return PackedRNN(weights, {"nonlinearity": nonlinearity}, backend, precision)


def pack_lstm(w_ih, w_hh, b_ih=None, b_hh=None, *, w_hr=None, backend=None, precision="float32"):
    """Validate and pack an LSTM layer's weights once, for :meth:`PackedLSTM.step`,
    :func:`~fastrnn.lstm_forward` and (with ``w_hr``) :func:`~fastrnn.functional.lstm_proj_forward`.

    Parameters
    ----------
    w_ih : array_like of shape (4*H, D)
    w_hh : array_like of shape (4*H, H), or (4*H, P) with ``w_hr``
    b_ih, b_hh : array_like of shape (4*H,), optional
    w_hr : array_like of shape (P, H), optional
        A projection of the hidden state, ``0 < P < H``, as in
        :func:`~fastrnn.functional.lstm_proj_forward`.
    backend : {"cython", "numba", "python", "auto"}, optional
        The backend the step runs on, resolved now. Numba has no bf16/int8 kernels.
    precision : {"float32", "bf16", "int8"}
        The precision of the products: ``"bf16"`` rounds the weights to bfloat16 once,
        ``"int8"`` quantizes them once per output row (symmetric); both need float32 weights
        (int8 runs inference only; bf16 also trains: see the module's docstring). The object
        keeps the float32 weights.

    Returns
    -------
    PackedLSTM
        Immutable: to change a weight, pack again.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
        As the forward functions raise them for their weights; DTypeError for float64
        weights in bf16 or int8.
    ArgumentError
        For an unknown precision.
    BackendUnavailableError
        For bf16 or int8 on a backend without their kernels (Numba).
    """
    check_precision(precision)
    if w_hr is None:
        layer = _weights_layer(w_ih, w_hh, b_ih, b_hh, LSTM)
        weights = _weights_of(layer, ("w_ih", "w_hh", "b_ih", "b_hh"))
    else:
        dtype, D = _weights_dtype([("w_ih", w_ih), ("w_hh", w_hh), ("w_hr", w_hr), ("b_ih", b_ih),
                                   ("b_hh", b_hh)])
        layer = _ProjLayer(np.empty((0, 0, D), dtype), w_ih, w_hh, w_hr, b_ih, b_hh, None, None)
        weights = _weights_of(layer, ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr"))
    check_reduced_dtype(precision, layer.dtype, "the weights")
    return PackedLSTM(weights, {}, backend, precision)


def pack_gru(w_ih, w_hh, b_ih=None, b_hh=None, *, reset_after=True, backend=None,
             precision="float32"):
    """Validate and pack a GRU layer's weights once, for :meth:`PackedGRU.step` and
    :func:`~fastrnn.gru_forward`.

    Parameters
    ----------
    w_ih : array_like of shape (3*H, D)
    w_hh : array_like of shape (3*H, H)
    b_ih, b_hh : array_like of shape (3*H,), optional
    reset_after : bool
        As :func:`fastrnn.gru_forward` takes it.
    backend : {"cython", "numba", "python", "auto"}, optional
        The backend the step runs on, resolved now. Numba has no bf16/int8 kernels.
    precision : {"float32", "bf16", "int8"}
        The precision of the products: ``"bf16"`` rounds the weights to bfloat16 once,
        ``"int8"`` quantizes them once per output row (symmetric); both need float32 weights
        (int8 runs inference only; bf16 also trains: see the module's docstring). The object
        keeps the float32 weights.

    Returns
    -------
    PackedGRU
        Immutable: to change a weight, pack again.

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError, ArgumentError, BackendUnavailableError
        As :func:`pack_rnn` raises them.
    """
    from fastrnn._validation import check_bool

    reset_after = check_bool("reset_after", reset_after)
    check_precision(precision)
    layer = _weights_layer(w_ih, w_hh, b_ih, b_hh, GRU)
    check_reduced_dtype(precision, layer.dtype, "the weights")
    weights = _weights_of(layer, ("w_ih", "w_hh", "b_ih", "b_hh"))
    return PackedGRU(weights, {"reset_after": reset_after}, backend, precision)


def _weights_dtype(named):
    """The weights' one dtype (their mix refused, naming them) and D from ``w_ih``."""
    arrays = [(name, as_float_array(name, value)) for name, value in named if value is not None
              or name in ("w_ih", "w_hh", "w_hr")]
    dtype = compute_dtype(arrays)
    w_ih = arrays[0][1]
    return dtype, (w_ih.shape[1] if w_ih.ndim == 2 else 0)


def _weights_layer(w_ih, w_hh, b_ih, b_hh, spec):
    """The weights validated by the forward functions' :class:`Layer`, on an empty input
    (T = B = 0) of their own dtype and width."""
    dtype, D = _weights_dtype([("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh)])
    return Layer(np.empty((0, 0, D), dtype), w_ih, w_hh, b_ih, b_hh, [], spec=spec, batch_first=False)


# ---- packed copies of weights that change: the nn modules' and Keras layers'

def pack_cell(cell, weights, *, backend=None, **options):
    """Pack one layer's weights with its cell's packer.

    Parameters
    ----------
    cell : str or CellSpec
        Any name :func:`~fastrnn.functional.cells.cell_spec` accepts.
    weights : dict of str to array_like or None
        ``w_ih``, ``w_hh``, ``b_ih``, ``b_hh`` and (LSTM) ``w_hr``, as
        :func:`~fastrnn.functional.direction.run_direction` takes them.
    backend : str, optional
    **options
        ``nonlinearity`` (RNN) or ``reset_after`` (GRU), and ``precision``.

    Returns
    -------
    PackedWeights
    """
    spec = cell_spec(cell)
    packer = {"RNN": pack_rnn, "LSTM": pack_lstm, "GRU": pack_gru}[spec.torch_name]
    if weights.get("w_hr") is not None:
        options = dict(options, w_hr=weights["w_hr"])
    return packer(weights["w_ih"], weights["w_hh"], weights.get("b_ih"), weights.get("b_hh"),
                  backend=backend, **options)


def _packing_target(backend, precision="float32"):
    """What packed buffers depend on besides the weights: the backend, and the ISA level
    for the Cython kernels (whose panel widths differ between levels)."""
    if precision == "float32":
        name, module = _backends.resolve(backend)
    else:
        name, module = resolve_reduced(backend, "rnn_forward", precision)
    return (name, module.isa_level()[0]) if name == "cython" else (name, None)


class PackedCache:
    """Packed weights of layers whose parameters change (nn modules, Keras layers).

    An entry is packed again when one of its parameters was replaced or written
    (:attr:`fastrnn.parameter.Parameter.version`, which assigning ``data``, the
    optimizers, ``load_state_dict``, ``set_weights`` and model loading move), or when
    another backend or ISA level runs than the one it was packed for; otherwise
    every call reuses it. Copies and pickles start empty.
    """

    __slots__ = ("_entries",)

    def __init__(self):
        self._entries = {}

    def __reduce__(self):
        return PackedCache, ()

    def get(self, slot, parameters, build, backend, precision="float32"):
        """The packed weights of ``slot``, built by ``build()`` when stale.

        Parameters
        ----------
        slot : hashable
            Which layer (e.g. ``(layer, direction)``).
        parameters : sequence of Parameter or None
            Everything the packed weights are made of.
        build : callable
            ``build()`` packs the parameters' current values.
        backend : str or None
            The backend the caller runs on.
        precision : {"float32", "bf16", "int8"}
            The precision ``build()`` packs in: entries of other precisions are packed again.
        """
        key = (tuple(parameters), tuple(None if p is None else p.version for p in parameters),
               _packing_target(backend, precision), precision)
        entry = self._entries.get(slot)
        if entry is not None and _same_key(entry[0], key):
            return entry[1]
        packed = build()
        self._entries[slot] = (key, packed)
        return packed

    def clear(self):
        """Forget every packed copy."""
        self._entries.clear()


def _same_key(a, b):
    return (len(a[0]) == len(b[0]) and all(x is y for x, y in zip(a[0], b[0]))
            and a[1] == b[1] and a[2] == b[2] and a[3] == b[3])
