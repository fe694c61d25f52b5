"""The Keras-style recurrent layers SimpleRNN, LSTM, GRU and the Bidirectional wrapper.

Weights live in Keras's layout and are converted to the kernels' PyTorch
packing on every call (:mod:`fastrnn.interop.keras`); the time loop, forward
and backward, runs through :func:`fastrnn.functional.direction.run_direction`,
the runner the PyTorch-style modules use too.

Masks follow Keras: at a masked step every state keeps its value and the
output repeats the previous output (zeros before the first valid step, or
zeros at every masked step with ``zero_output_for_mask``, which Bidirectional
sets when it returns sequences). Masks may have holes anywhere, and a row may
be masked entirely (it outputs zeros and keeps its initial states). Because a
masked step changes nothing, the runner gathers each row's valid steps to the
front (:class:`fastrnn.functional.lengths.MaskedSequences`), runs one
right-padded batch, scatters the outputs back with the fill and returns the
states at each row's last valid step; the backward pass goes through the same
maps.

Not supported by the fused kernels, and refused with an ArgumentError:
``recurrent_dropout > 0``, activations other than tanh (and relu for
SimpleRNN), recurrent activations other than sigmoid.
"""

import numpy as np

from fastrnn._threads import PerThread
from fastrnn._validation import as_float_array, check_bool, check_precision
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.functional import cells
from fastrnn.functional.direction import backward_direction, run_direction
from fastrnn.functional.packed import PackedCache, pack_cell
from fastrnn.functional.lengths import MaskedSequences
from fastrnn.interop.keras import keras_to_torch, torch_grads_to_keras
from fastrnn.keras import activations, initializers
from fastrnn.keras.layers.base import Layer, unique_name
from fastrnn.keras.layers.core import (
    check_gradient,
    check_mask,
    float_input,
    positive_int,
    probability,
    require_tape,
    serialized_initializers,
)

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]


class _RecurrentLayer(Layer):
    """What the recurrent layers and Bidirectional share: masks, a call that takes
    initial states, and the mask passed on only with the sequence.

    A subclass sets ``return_sequences``.
    """

    supports_masking = True

    def compute_mask(self, x, mask=None):
        """The input mask when returning sequences (for the main output), else None."""
        return mask if self.return_sequences else None


class RNNLayer(_RecurrentLayer):
    """What SimpleRNN, LSTM and GRU share: arguments, weights, masks, states, forward and backward.

    A subclass sets ``SPEC``, its row of the cell table (gate count, states,
    Keras name), and :meth:`_cell_options` for its own options; forward and
    backward go through :func:`fastrnn.functional.direction.run_direction`.
    """

    SPEC = None

    grad_initial_state = PerThread()  # each thread's backward leaves its own

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 seed=None, zero_output_for_mask=False, backend=None, n_threads=None,
                 precision="float32", **kwargs):
        if kwargs.get("name") is None:
            kwargs["name"] = unique_name(self.CELL.lower().replace("simplernn", "simple_rnn"))
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.activation = self._check_activation("activation", activation, self._ACTIVATIONS)
        self.recurrent_activation = self._check_activation(
            "recurrent_activation", recurrent_activation, ("sigmoid",))
        self.use_bias = check_bool("use_bias", use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dropout = probability("dropout", dropout)
        self.recurrent_dropout = probability("recurrent_dropout", recurrent_dropout)
        if self.recurrent_dropout > 0:
            raise ArgumentError(
                f"{self.CELL}: recurrent_dropout={recurrent_dropout} is not supported: it needs a new "
                "mask on h at every step, which the fused kernels do not apply; use dropout (on the "
                "inputs) instead, or recurrent_dropout=0")
        self.return_sequences = check_bool("return_sequences", return_sequences)
        self.return_state = check_bool("return_state", return_state)
        self.go_backwards = check_bool("go_backwards", go_backwards)
        self.stateful = check_bool("stateful", stateful)
        self.zero_output_for_mask = check_bool("zero_output_for_mask", zero_output_for_mask)
        self.seed = seed if isinstance(seed, (int, np.integer)) or seed is None else None
        self.rng = initializers.as_generator(seed)
        self.backend = backend
        self.n_threads = n_threads
        self.precision = check_precision(precision)
        self.states = None
        self.grad_initial_state = None
        self._tape = None

    _ACTIVATIONS = ("tanh",)

    @property
    def CELL(self):
        """The Keras name of the cell (``"SimpleRNN"``, ``"LSTM"``, ``"GRU"``)."""
        return self.SPEC.keras_name

    @property
    def N_STATES(self):
        """How many states the cell carries (LSTM: h and c)."""
        return len(self.SPEC.states)

    def _check_activation(self, argument, value, supported):
        name = activations.get(value).name if not isinstance(value, str) else value.lower()
        if name not in supported:
            raise ArgumentError(
                f"{self.CELL} supports {argument}={' or '.join(repr(s) for s in supported)} only (the "
                f"fused kernels compute it); got {value!r}")
        return name

    # weights -------------------------------------------------------------------------
    @property
    def gates(self):
        """G, the gate blocks in ``kernel`` (D, G*H), from the cell table."""
        return self.SPEC.gates

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ShapeError(f"layer {self.name!r} ({self.CELL}) needs inputs of shape (B, T, D) with "
                             f"a known D; got input shape (B,) + {tuple(input_shape)}")
        D, H, G = int(input_shape[-1]), self.units, self.gates
        self.kernel = self.add_weight("kernel", self.kernel_initializer((D, G * H), self.dtype, self.rng))
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", self.recurrent_initializer((H, G * H), self.dtype, self.rng))
        self.bias = self.add_weight("bias", self._initial_bias()) if self.use_bias else None
        super().build(input_shape)

    def _initial_bias(self):
        return self.bias_initializer((self.gates * self.units,), self.dtype, self.rng)

    def _packed_weights(self, precision="float32"):
        """The weights in PyTorch's layout, packed once in ``precision``
        (:func:`fastrnn.functional.packed.pack_cell`) and packed again only when a weight was
        replaced or its version moved (``set_weights``, the optimizers, model loading, assigning
        ``data``), or another backend, ISA level or precision runs."""
        cache = self.__dict__.get("_packed_cache")
        if cache is None:
            cache = PackedCache()
            object.__setattr__(self, "_packed_cache", cache)
        parameters = [self.kernel, self.recurrent_kernel, self.bias]
        return cache.get(0, parameters, lambda: pack_cell(
            self.SPEC, self._torch_weights(), backend=self.backend, precision=precision,
            **self._cell_options()), self.backend, precision)

    def _call_precision(self, training):
        """The precision of a call: ``precision`` without ``training``; bf16 and int8 refuse
        training and float64 weights."""
        precision = check_precision(self.precision)
        if precision == "float32":
            return precision
        if training:
            raise ArgumentError(
                f"layer {self.name!r} runs in precision={precision!r}, which is inference only "
                "(predict, evaluate, calls without training): training in bf16 or int8 is not "
                "available yet; set its precision to 'float32' to train")
        if self.dtype != np.float32:
            raise DTypeError(f"layer {self.name!r}: precision={precision!r} computes in float32; "
                             f"its weights are {self.dtype}: build it with dtype='float32'")
        return precision

    def _apply_precision(self, precision):
        """Set ``precision`` and, once built, pack the weights in it now (see
        :meth:`~fastrnn.keras.models.Sequential.quantized`)."""
        self.precision = check_precision(precision)
        precision = self._call_precision(False)
        if self.built:
            self._packed_weights(precision)

    def _torch_weights(self):
        return keras_to_torch(self.SPEC, self.kernel.values, self.recurrent_kernel.values,
                              None if self.bias is None else self.bias.values,
                              reset_after=getattr(self, "reset_after", True))

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], self.units)
        return (self.units,)

    # states --------------------------------------------------------------------------
    def reset_states(self, states=None):
        """Forget the kept state of a ``stateful`` layer (or set it to ``states``, a list of (B, H))."""
        if states is None:
            self.states = None
        else:
            states = [states] if isinstance(states, np.ndarray) else list(states)
            self.states = [np.array(s, dtype=self.dtype) for s in states]

    reset_state = reset_states

    def _initial_states(self, initial_state, B):
        if initial_state is None and self.stateful and self.states is not None:
            initial_state = self.states
        if initial_state is None:
            return [np.zeros((B, self.units), self.dtype) for _ in range(self.N_STATES)]
        if isinstance(initial_state, np.ndarray) and initial_state.ndim == 2 and self.N_STATES == 1:
            initial_state = [initial_state]
        if not isinstance(initial_state, (list, tuple)):
            raise ArgumentError(f"layer {self.name!r} ({self.CELL}): initial_state must be a list of "
                                f"{self.N_STATES} array(s) of shape (batch, units); got "
                                f"{type(initial_state).__name__}")
        initial_state = list(initial_state)
        if len(initial_state) != self.N_STATES:
            raise ArgumentError(f"layer {self.name!r} ({self.CELL}) takes {self.N_STATES} initial "
                                f"state(s); got {len(initial_state)}")
        states = []
        for state in initial_state:
            # refuses strings, objects and complex values, which a cast would take or mangle
            array = np.ascontiguousarray(as_float_array("initial_state", state), dtype=self.dtype)
            if array.shape != (B, self.units):
                raise ShapeError(f"layer {self.name!r}: an initial state must have shape "
                                 f"({B}, {self.units}) (batch, units); got {array.shape}")
            states.append(array)
        return states

    # forward -------------------------------------------------------------------------
    def call(self, x, mask=None, training=False, initial_state=None):
        """Run the layer over a batch of sequences.

        Parameters
        ----------
        x : array_like of shape (B, T, D)
        mask : array_like of bool of shape (B, T), optional
            False at steps to skip.
        training : bool
            Apply ``dropout`` and keep what :meth:`backward` needs.
        initial_state : ndarray of shape (B, H) or list of them, optional
            ``[h0]``, or ``[h0, c0]`` for an LSTM. Zeros by default (or the
            kept state of a ``stateful`` layer).

        Returns
        -------
        output : ndarray of shape (B, T, H) if ``return_sequences`` else (B, H)
            With ``go_backwards``, the sequence is in processing (reversed) order.
        states : ndarray of shape (B, H)
            Only with ``return_state``: the list ``[output, h]`` (LSTM
            ``[output, h, c]``) is returned.
        """
        precision = self._call_precision(training)
        x = float_input(self, x, ndim=3, features=self.kernel.shape[0])
        B, T, D = x.shape
        if T == 0 and not self.return_sequences:
            raise ShapeError(f"layer {self.name!r}: x has no time steps (shape {x.shape}); the layer returns "
                             "the output of the last step (return_sequences=False), so it needs T >= 1")
        mask = check_mask(self, mask, (B, T))
        states0 = self._initial_states(initial_state, B)
        drop = None
        if training and self.dropout > 0:
            # one mask per sequence, the same at every step
            keep = self.rng.random((B, D)) >= self.dropout
            drop = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
            x = x * drop[:, None, :]
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        steps = None if mask is None or mask.all() else MaskedSequences(mask.T)
        y, finals, tape = run_direction(
            self.SPEC, x.transpose(1, 0, 2), self._packed_weights(precision), states0, steps=steps,
            fill="zeros" if self.zero_output_for_mask else "previous", requires_grad=training,
            backend=self.backend, n_threads=self.n_threads, precision=precision,
            **self._cell_options())
        outputs = y.transpose(1, 0, 2)
        output = np.ascontiguousarray(outputs) if self.return_sequences else np.array(outputs[:, -1])
        finals = [np.array(f) for f in finals]
        if self.stateful:
            self.states = [f.copy() for f in finals]
        self._tape = {"direction": tape, "drop": drop, "shape": (B, T, D)} if training else None
        return [output] + finals if self.return_state else output

    # backward ------------------------------------------------------------------------
    def backward(self, d_output):
        """Backpropagate through the last ``call(..., training=True)``.

        Parameters
        ----------
        d_output : ndarray shaped like the output, or with ``return_state`` a
            list shaped like ``[output, h(, c)]`` whose entries may be None.

        Returns
        -------
        ndarray of shape (B, T, D)
            Gradient of the input. The initial states' gradients are left in
            ``grad_initial_state`` (list of (B, H)).
        """
        tape = require_tape(self, self._tape)
        B, T, D = tape["shape"]
        H = self.units
        if self.return_state:
            if not isinstance(d_output, (list, tuple)) or len(d_output) != 1 + self.N_STATES:
                raise ArgumentError(f"layer {self.name!r} returns {1 + self.N_STATES} arrays "
                                    "(return_state=True): backward needs a list of as many gradients")
            d_out, d_states = d_output[0], list(d_output[1:])
        else:
            d_out, d_states = d_output, [None] * self.N_STATES
        d_states = [np.zeros((B, H), self.dtype) if d is None else check_gradient(self, d, (B, H))
                    for d in d_states]
        if self.return_sequences:
            dy = np.zeros((B, T, H), self.dtype) if d_out is None else check_gradient(self, d_out, (B, T, H))
        else:
            dy = np.zeros((B, T, H), self.dtype)
            if d_out is not None:
                dy[:, -1] = check_gradient(self, d_out, (B, H))
        grads = backward_direction(tape["direction"], dy.transpose(1, 0, 2), d_states)
        dx = grads["x"].transpose(1, 0, 2)
        if self.go_backwards:
            dx = dx[:, ::-1]
        if tape["drop"] is not None:
            dx = dx * tape["drop"][:, None, :]
        keras_grads = torch_grads_to_keras(self.SPEC, grads, use_bias=self.use_bias,
                                           reset_after=getattr(self, "reset_after", True))
        for parameter, gradient in zip(self.weights, keras_grads):
            parameter.accumulate(gradient)
        self.grad_initial_state = [grads[name] for name in self.SPEC.initial_state_names]
        return np.ascontiguousarray(dx)

    def _cell_options(self):
        """The cell's own functional-API options (SimpleRNN's ``nonlinearity``, GRU's ``reset_after``)."""
        return {}

    def get_config(self):
        config = {**super().get_config(), "units": self.units, "activation": self.activation,
                  "use_bias": self.use_bias, "dropout": self.dropout,
                  "recurrent_dropout": self.recurrent_dropout,
                  "return_sequences": self.return_sequences, "return_state": self.return_state,
                  "go_backwards": self.go_backwards, "stateful": self.stateful, "seed": self.seed,
                  "zero_output_for_mask": self.zero_output_for_mask}
        config.update(serialized_initializers(self, "kernel_initializer", "recurrent_initializer",
                                              "bias_initializer"))
        if self.CELL != "SimpleRNN":
            config["recurrent_activation"] = self.recurrent_activation
        if self.precision != "float32":  # absent otherwise, as in Keras's own configurations
            config["precision"] = self.precision
        return config

    def _clone(self, **changes):
        """A new, unbuilt layer of the same configuration (and initialisers), with ``changes``."""
        config = self.get_config()
        config.update(kernel_initializer=self.kernel_initializer,
                      recurrent_initializer=self.recurrent_initializer,
                      bias_initializer=self.bias_initializer, backend=self.backend,
                      n_threads=self.n_threads, **changes)
        return type(self)(**config)


class SimpleRNN(RNNLayer):
    """Fully connected recurrent layer: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Parameters
    ----------
    units : int
        H, the size of the state.
    activation : {"tanh", "relu"}
    use_bias : bool
    kernel_initializer, recurrent_initializer, bias_initializer : str or Initializer
        Keras's defaults: glorot_uniform, orthogonal, zeros.
    dropout : float in [0, 1)
        Fraction of the input features dropped in training (one mask per sequence).
    recurrent_dropout : float
        Only 0 is supported.
    return_sequences, return_state, go_backwards, stateful : bool
        As in Keras.
    seed : int or numpy.random.Generator, optional
        Source of the initial weights and dropout masks.
    zero_output_for_mask : bool
        Masked steps output zeros instead of the previous output.
    backend, n_threads : optional
        Passed to the functional API.
    precision : {"float32", "bf16", "int8"}
        The precision of calls without ``training`` (``predict``, ``evaluate``): bf16 rounds
        the weights to bfloat16, int8 quantizes them (see :func:`fastrnn.quantize`).
        Inference only: a training call in bf16 or int8 raises ArgumentError. In the
        configuration when not float32.
    **kwargs
        ``name``, ``dtype``, ``trainable``, ``input_shape``.

    Attributes
    ----------
    kernel : Parameter of shape (D, H)
    recurrent_kernel : Parameter of shape (H, H)
    bias : Parameter of shape (H,) or None
    """

    SPEC = cells.RNN
    _ACTIVATIONS = ("tanh", "relu")

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, seed=None, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, stateful=stateful,
                         seed=seed, **kwargs)

    def _cell_options(self):
        return {"nonlinearity": self.activation}

    def get_config(self):
        config = super().get_config()
        config.pop("recurrent_activation", None)
        return config


class LSTM(RNNLayer):
    """Long short-term memory layer (gates i, f, c, o; ``docs/weight-layouts.md``, "LSTM").

    Parameters
    ----------
    units : int
    activation : {"tanh"}
    recurrent_activation : {"sigmoid"}
    use_bias : bool
    kernel_initializer, recurrent_initializer, bias_initializer : str or Initializer
    unit_forget_bias : bool
        Start the forget gate's bias at 1 (the other blocks from ``bias_initializer``).
    dropout, recurrent_dropout, return_sequences, return_state, go_backwards, stateful, seed
        As for :class:`SimpleRNN`. ``return_state`` gives ``[output, h, c]``.
    **kwargs
        As for :class:`SimpleRNN`.

    Attributes
    ----------
    kernel : Parameter of shape (D, 4*H)
    recurrent_kernel : Parameter of shape (H, 4*H)
    bias : Parameter of shape (4*H,) or None
    """

    SPEC = cells.LSTM

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 seed=None, **kwargs):
        self.unit_forget_bias = check_bool("unit_forget_bias", unit_forget_bias)
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, stateful=stateful,
                         seed=seed, **kwargs)

    def _initial_bias(self):
        H = self.units
        if not self.unit_forget_bias:
            return super()._initial_bias()
        return np.concatenate([self.bias_initializer((H,), self.dtype, self.rng), np.ones(H),
                               self.bias_initializer((2 * H,), self.dtype, self.rng)])

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(RNNLayer):
    """Gated recurrent unit layer (gates z, r, h; ``docs/weight-layouts.md``, "GRU").

    Parameters
    ----------
    units : int
    activation : {"tanh"}
    recurrent_activation : {"sigmoid"}
    use_bias : bool
    kernel_initializer, recurrent_initializer, bias_initializer : str or Initializer
    dropout, recurrent_dropout, return_sequences, return_state, go_backwards, stateful, seed
        As for :class:`SimpleRNN`.
    reset_after : bool
        ``True`` (Keras's default, PyTorch's cell): the reset gate multiplies
        ``h @ recurrent_kernel + recurrent bias``, and ``bias`` has shape
        (2, 3*H) (input bias, recurrent bias). ``False``: it multiplies
        ``h`` before the product, and ``bias`` has shape (3*H,).
    **kwargs
        As for :class:`SimpleRNN`.

    Attributes
    ----------
    kernel : Parameter of shape (D, 3*H)
    recurrent_kernel : Parameter of shape (H, 3*H)
    bias : Parameter of shape (2, 3*H) or (3*H,), or None
    """

    SPEC = cells.GRU

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 seed=None, reset_after=True, **kwargs):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer,
                         bias_initializer=bias_initializer, dropout=dropout,
                         recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, stateful=stateful,
                         seed=seed, **kwargs)

    def _initial_bias(self):
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        return self.bias_initializer(shape, self.dtype, self.rng)

    def _cell_options(self):
        return {"reset_after": self.reset_after}

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(_RecurrentLayer):
    """Run a recurrent layer forwards and a copy of it backwards, and merge the two outputs.

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
        The forward layer (used as is, not copied).
    merge_mode : {"concat", "sum", "mul", "ave", None}
        How the outputs combine; ``None`` returns the two as a list.
    backward_layer : SimpleRNN, LSTM or GRU, optional
        Must have the opposite ``go_backwards`` and the same
        ``return_sequences``/``return_state``. By default a layer of the same
        configuration with ``go_backwards`` flipped.
    **kwargs
        As for :class:`Layer`.

    Notes
    -----
    The backward layer's outputs are flipped back to the input's time order.
    With ``return_sequences``, masked steps output zeros in both directions
    (Keras's ``zero_output_for_mask``). Weights are the forward layer's then the
    backward layer's. ``return_state`` gives ``[output, *forward_states,
    *backward_states]``.
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if not isinstance(layer, RNNLayer):
            raise ArgumentError("Bidirectional wraps a SimpleRNN, LSTM or GRU layer; got "
                                f"{type(layer).__name__}")
        if merge_mode not in _MERGE_MODES:
            raise ArgumentError(f"merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None; "
                                f"got {merge_mode!r}")
        super().__init__(**kwargs)
        self.forward_layer = layer
        if backward_layer is None:
            # its own random stream, so that the two directions start from different weights
            backward_layer = layer._clone(name="backward_" + layer.name,
                                          go_backwards=not layer.go_backwards,
                                          seed=layer.rng.spawn(1)[0])
        elif not isinstance(backward_layer, RNNLayer):
            raise ArgumentError("backward_layer must be a SimpleRNN, LSTM or GRU layer; got "
                                f"{type(backward_layer).__name__}")
        else:
            if backward_layer.go_backwards == layer.go_backwards:
                raise ArgumentError("backward_layer must have go_backwards="
                                    f"{not layer.go_backwards} (the opposite of the forward layer's)")
            for attribute in ("return_sequences", "return_state", "stateful"):
                if getattr(backward_layer, attribute) != getattr(layer, attribute):
                    raise ArgumentError(f"backward_layer must have the same {attribute} as the "
                                        f"forward layer ({getattr(layer, attribute)})")
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.grad_initial_state = None
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        if self.return_sequences:
            layer.zero_output_for_mask = backward_layer.zero_output_for_mask = True
        self._tape = None

    def tape_state(self):
        return self._tape, [layer.tape_state() for layer in self.layers]

    def restore_tape_state(self, state):
        self._tape, inner = state
        for layer, kept in zip(self.layers, inner):
            layer.restore_tape_state(kept)

    @property
    def layers(self):
        return [self.forward_layer, self.backward_layer]

    @property
    def precision(self):
        """{"float32", "bf16", "int8"}: the wrapped layers' precision (setting it sets both)."""
        return self.forward_layer.precision

    @precision.setter
    def precision(self, value):
        value = check_precision(value)
        for layer in self.layers:
            layer.precision = value

    def _apply_precision(self, precision):
        for layer in self.layers:
            layer._apply_precision(precision)

    def build(self, input_shape):
        for layer in self.layers:
            if not layer.built:
                layer.build(tuple(input_shape))
        self._weights = self.forward_layer._weights + self.backward_layer._weights
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            shape = shape[:-1] + (shape[-1] + self.backward_layer.units,)
        return shape

    def reset_states(self, states=None):
        """Reset both layers' kept states (``states``: forward's then backward's)."""
        if states is None:
            for layer in self.layers:
                layer.reset_states()
        else:
            n = self.forward_layer.N_STATES
            self.forward_layer.reset_states(list(states)[:n])
            self.backward_layer.reset_states(list(states)[n:])

    reset_state = reset_states

    def call(self, x, mask=None, training=False, initial_state=None):
        """Run both directions and merge.

        Parameters
        ----------
        x : array_like of shape (B, T, D)
        mask : array_like of bool of shape (B, T), optional
        training : bool
        initial_state : list of ndarray of shape (B, H), optional
            The forward layer's states then the backward layer's.

        Returns
        -------
        ndarray of shape (B, T, 2*H) for "concat" with ``return_sequences``
        ((B, T, H) for the other modes, (B, ...) without ``return_sequences``);
        a list ``[forward, backward]`` for ``merge_mode=None``; followed by
        the states with ``return_state``.
        """
        n = self.forward_layer.N_STATES
        if initial_state is not None:
            initial_state = list(initial_state)
            if len(initial_state) != 2 * n:
                raise ArgumentError(f"layer {self.name!r} takes {2 * n} initial states (forward "
                                    f"layer's then backward layer's); got {len(initial_state)}")
        halves = [None, None] if initial_state is None else [initial_state[:n], initial_state[n:]]
        results = [layer(x, mask=mask, training=training, initial_state=state)
                   for layer, state in zip(self.layers, halves)]
        if self.return_state:
            (y_f, *states_f), (y_b, *states_b) = results
        else:
            (y_f, y_b), states_f, states_b = results, [], []
        if self.return_sequences:
            y_b = np.ascontiguousarray(y_b[:, ::-1])
        self._tape = (y_f, y_b) if training else None
        if self.merge_mode == "concat":
            outputs = [np.concatenate([y_f, y_b], axis=-1)]
        elif self.merge_mode == "sum":
            outputs = [y_f + y_b]
        elif self.merge_mode == "mul":
            outputs = [y_f * y_b]
        elif self.merge_mode == "ave":
            outputs = [(y_f + y_b) / 2]
        else:
            outputs = [y_f, y_b]
        if self.return_state:
            return outputs + states_f + states_b
        return outputs[0] if self.merge_mode is not None else outputs

    def backward(self, d_output):
        """Backpropagate through both layers.

        Parameters
        ----------
        d_output : gradient shaped like the output (a list for ``merge_mode=None``
            or ``return_state``; entries may be None)

        Returns
        -------
        ndarray of shape (B, T, D)
            The initial states' gradients are left in ``grad_initial_state``
            (forward layer's then backward layer's).
        """
        y_f, y_b = require_tape(self, self._tape)
        n = self.forward_layer.N_STATES
        n_outputs = 2 if self.merge_mode is None else 1
        if self.return_state or self.merge_mode is None:
            d_output = list(d_output)
            if len(d_output) != n_outputs + (2 * n if self.return_state else 0):
                raise ArgumentError(f"layer {self.name!r}: backward needs one gradient per output "
                                    f"array; got {len(d_output)}")
        else:
            d_output = [d_output]
        d_merged, d_states = d_output[:n_outputs], d_output[n_outputs:]
        if self.merge_mode is None:
            d_f, d_b = [np.zeros_like(y) if d is None else check_gradient(self, d, y.shape)
                        for d, y in zip(d_merged, (y_f, y_b))]
        else:
            H = y_f.shape[-1]
            shape = (y_f.shape[:-1] + (H + y_b.shape[-1],) if self.merge_mode == "concat"
                     else y_f.shape)
            d = (np.zeros(shape, self.dtype) if d_merged[0] is None
                 else check_gradient(self, d_merged[0], shape))
            if self.merge_mode == "concat":
                d_f, d_b = d[..., :H], d[..., H:]
            elif self.merge_mode == "sum":
                d_f, d_b = d, d
            elif self.merge_mode == "mul":
                d_f, d_b = d * y_b, d * y_f
            else:
                d_f, d_b = d / 2, d / 2
        if self.return_sequences:
            d_b = d_b[:, ::-1]
        dx = 0
        for layer, d_y, d_s in ((self.forward_layer, d_f, d_states[:n]),
                                (self.backward_layer, d_b, d_states[n:])):
            dx = dx + layer.backward([d_y, *d_s] if self.return_state else d_y)
        self.grad_initial_state = (self.forward_layer.grad_initial_state
                                   + self.backward_layer.grad_initial_state)
        return dx

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": type(self.forward_layer).__name__,
                          "config": self.forward_layer.get_config()},
                "backward_layer": {"class_name": type(self.backward_layer).__name__,
                                   "config": self.backward_layer.get_config()}}
