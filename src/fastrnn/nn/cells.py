"""One-step recurrent cells with ``torch.nn``'s cell API: :class:`RNNCell`, :class:`LSTMCell`,
:class:`GRUCell`.

``forward(input, hx)`` runs one time step on weights packed once (repacked when a
parameter changes). Inside :func:`fastrnn.nn.no_grad` it is the kernels' streaming
step; with gradients enabled it is the same kernel on one step (``T = 1``, equal bit
for bit on the Cython backend) keeping its cache, and :meth:`backward` adds every
parameter's gradient into ``.grad`` and returns the input's.
"""

import math

import numpy as np

from fastrnn._threads import PerThread, getstate_with_per_thread, setstate_with_per_thread
from fastrnn._validation import as_float_array, check_bool, parameter_dtype, random_generator
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.functional import cells
from fastrnn.functional.direction import backward_direction, run_direction
from fastrnn.functional.packed import PackedCache, pack_cell
from fastrnn.nn.grad_mode import is_grad_enabled
from fastrnn.nn.module import Module
from fastrnn.parameter import Parameter

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]

_STEMS = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


class RNNCellBase(Module):
    """What the three cells share: parameters, packing, forward and backward of one step."""

    SPEC = None
    _tape = PerThread()
    grad_hx = PerThread()
    __getstate__ = getstate_with_per_thread
    __setstate__ = setstate_with_per_thread

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, seed=None, backend=None):
        super().__init__()
        for name, value in [("input_size", input_size), ("hidden_size", hidden_size)]:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.bias = check_bool("bias", bias)
        self.dtype = parameter_dtype(dtype)
        self.backend = backend
        self._tape = None
        self.grad_hx = None
        # PyTorch's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
        rng = random_generator(seed)
        bound = 1 / math.sqrt(self.hidden_size)
        G, H = self.SPEC.gates, self.hidden_size
        shapes = [("weight_ih", (G * H, self.input_size)), ("weight_hh", (G * H, H))]
        if self.bias:
            shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        for name, shape in shapes:
            setattr(self, name, Parameter(rng.uniform(-bound, bound, shape).astype(self.dtype)))

    def _options(self):
        return {}

    def _packed(self):
        cache = self.__dict__.get("_packed_cache")
        if cache is None:
            cache = PackedCache()
            object.__setattr__(self, "_packed_cache", cache)
        parameters = [self._parameters.get(stem) for stem in _STEMS.values()] + [None]
        weights = {key: None if self._parameters.get(stem) is None else self._parameters[stem].values
                   for key, stem in _STEMS.items()}
        return cache.get(0, parameters, lambda: pack_cell(self.SPEC, weights, backend=self.backend,
                                                           **self._options()), self.backend)

    def _state(self, name, value, B, batched):
        shape = (B, self.hidden_size) if batched else (self.hidden_size,)
        if value is None:
            return np.zeros((B, self.hidden_size), self.dtype)
        array = as_float_array(name, value).astype(self.dtype, copy=False)
        if array.shape != shape:
            raise ShapeError(f"{name} must have shape {shape}; got shape {array.shape}")
        return np.ascontiguousarray(array if batched else array[None])

    def forward(self, input, hx=None):
        """One step.

        Parameters
        ----------
        input : array_like of shape (B, input_size), or (input_size,) unbatched
        hx : ndarray of shape (B, hidden_size), optional
            LSTMCell: a pair ``(h, c)``. Zeros by default.

        Returns
        -------
        ndarray of shape (B, hidden_size)
            The new hidden state; LSTMCell returns ``(h', c')``.
        """
        x = as_float_array("input", input).astype(self.dtype, copy=False)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError(f"input must have shape (B, {self.input_size}) or ({self.input_size},); "
                             f"got shape {x.shape}")
        batched = x.ndim == 2
        x = np.ascontiguousarray(x if batched else x[None])
        B = x.shape[0]
        if self.SPEC.has_cell_state:
            if hx is None:
                hx = (None, None)
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ArgumentError(f"hx of an LSTMCell must be a pair (h, c); got {type(hx).__name__}")
            states = [self._state("h", hx[0], B, batched), self._state("c", hx[1], B, batched)]
        else:
            if isinstance(hx, (tuple, list)):
                raise ArgumentError(f"hx of a {type(self).__name__} must be one array; got a {type(hx).__name__}")
            states = [self._state("hx", hx, B, batched)]
        packed = self._packed()
        if is_grad_enabled():
            _, finals, tape = run_direction(self.SPEC, x[None], packed, states, requires_grad=True,
                                            backend=self.backend, **self._options())
            self._tape = (tape, batched)
        else:
            _, state = packed.step(x, states if self.SPEC.has_cell_state else states[0])
            finals = list(state) if self.SPEC.has_cell_state else [state]
            self._tape = None
        if not batched:
            finals = [f[0] for f in finals]
        return tuple(finals) if self.SPEC.has_cell_state else finals[0]

    def backward(self, d_h, d_c=None):
        """Backpropagate through the last forward step.

        Parameters
        ----------
        d_h : array_like of shape (B, hidden_size), or None
            Gradient of the new hidden state.
        d_c : array_like of shape (B, hidden_size), optional
            LSTMCell: gradient of the new cell state.

        Returns
        -------
        ndarray shaped like ``input``
            The gradient of ``hx`` is left in ``grad_hx`` (LSTMCell: a pair).
        """
        if self._tape is None:
            raise ArgumentError(f"{type(self).__name__}.backward() needs a forward() call made with "
                                "gradients enabled (outside fastrnn.nn.no_grad()) since the last backward()")
        tape, batched = self._tape
        if d_c is not None and not self.SPEC.has_cell_state:
            raise ArgumentError(f"d_c is for LSTMCell only; a {type(self).__name__} has no cell state")
        B = tape.steps.B
        shape = (B, self.hidden_size) if batched else (self.hidden_size,)
        d_finals = []
        for name, value in [("d_h", d_h), ("d_c", d_c)][:len(self.SPEC.states)]:
            if value is None:
                d_finals.append(None)
                continue
            array = as_float_array(name, value).astype(self.dtype, copy=False)
            if array.shape != shape:
                raise ShapeError(f"{name} must have shape {shape}; got shape {array.shape}")
            d_finals.append(np.ascontiguousarray(array if batched else array[None]))
        grads = backward_direction(tape, None, d_finals)
        self._tape = None
        for key, stem in _STEMS.items():
            if stem in self._parameters and self._parameters[stem] is not None:
                self._parameters[stem].accumulate(grads[key])
        unbatch = (lambda a: a) if batched else (lambda a: a[0])
        h0 = unbatch(grads["h0"])
        self.grad_hx = (h0, unbatch(grads["c0"])) if self.SPEC.has_cell_state else h0
        return unbatch(grads["x"][0])

    def __repr__(self):
        text = f"{type(self).__name__}({self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text + ")"


class RNNCell(RNNCellBase):
    r"""One step of an Elman RNN: :math:`h' = \phi(x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh})`.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool
    nonlinearity : {"tanh", "relu"}
    dtype : {numpy.float32, numpy.float64}
    seed : int or numpy.random.Generator, optional
    backend : optional
    """

    SPEC = cells.RNN

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype=np.float32, seed=None,
                 backend=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ArgumentError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed, backend=backend)

    def _options(self):
        return {"nonlinearity": self.nonlinearity}


class LSTMCell(RNNCellBase):
    """One step of an LSTM (gates ``i, f, g, o``); ``forward(x, (h, c))`` returns ``(h', c')``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool
    dtype, seed, backend
        As for :class:`RNNCell`.
    """

    SPEC = cells.LSTM


class GRUCell(RNNCellBase):
    """One step of a GRU (gates ``r, z, n``, PyTorch's reset gate placement).

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool
    dtype, seed, backend
        As for :class:`RNNCell`.
    """

    SPEC = cells.GRU
