"""The non-recurrent Keras-style layers: Dense, Embedding, Activation, Dropout, Masking, TimeDistributed.

Each layer pairs ``call`` with an explicit ``backward`` (see
:mod:`fastrnn.keras.layers.base` for the contract); a forward pass run with
``training=True`` keeps what the backward pass needs.
"""

import warnings

import numpy as np

from fastrnn._threads import PerThread
from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.keras import activations, initializers
from fastrnn.keras.layers.base import Layer

__all__ = ["Dense", "Embedding", "Activation", "Dropout", "Masking", "TimeDistributed"]


# helpers shared with the recurrent layers ------------------------------------------------
def positive_int(name, value):
    """``value`` as an int, or ArgumentError unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def probability(name, value):
    """``value`` as a float, or ArgumentError unless it lies in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ArgumentError(f"{name} must be a number in [0, 1); got {value!r}")
    return float(value)


def float_input(layer, x, ndim=None, features=None):
    """``x`` as a C-contiguous array of the layer's dtype, after checking its rank and last axis.

    Parameters
    ----------
    layer : Layer
        Named in error messages; its ``dtype`` is the result's.
    x : array_like
    ndim : int or tuple of int, optional
        Accepted numbers of axes, batch included.
    features : int, optional
        Required size of the last axis.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise DTypeError(f"layer {layer.name!r} needs a numeric input; got dtype {array.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            raise ShapeError(f"layer {layer.name!r} ({type(layer).__name__}) needs an input with "
                             f"{' or '.join(map(str, allowed))} axes (batch first); got shape {array.shape}")
    if features is not None and (array.ndim == 0 or array.shape[-1] != features):
        raise ShapeError(f"layer {layer.name!r} was built for {features} features in the last axis; "
                         f"got an input of shape {array.shape}")
    return np.ascontiguousarray(array, dtype=layer.dtype)


def check_mask(layer, mask, shape):
    """``mask`` as an ndarray of bool of ``shape`` (B, T), or None."""
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ShapeError(f"layer {layer.name!r}: the mask must have shape {tuple(shape)} "
                         f"(batch, steps); got {array.shape}")
    return array.astype(bool, copy=False)


def require_tape(layer, tape):
    """The kept forward state, or ArgumentError when no training forward pass came first."""
    if tape is None:
        raise ArgumentError(f"layer {layer.name!r}: backward() needs a forward call with "
                            "training=True first")
    return tape


def check_gradient(layer, d_output, shape):
    """``d_output`` as an array of the layer's dtype and of ``shape`` (the forward output's)."""
    array = np.asarray(d_output, dtype=layer.dtype)
    if array.shape != tuple(shape):
        raise ShapeError(f"layer {layer.name!r}: the output gradient must have the output's shape "
                         f"{tuple(shape)}; got {array.shape}")
    return array


def serialized_initializers(layer, *names):
    """``{name: serialised initializer}`` for those of ``names`` that fastrnn can serialise
    (a plain callable is left out of the config)."""
    return {name: initializers.serialize(getattr(layer, name)) for name in names
            if isinstance(getattr(layer, name), initializers.Initializer)}


# layers ---------------------------------------------------------------------------------
class Dense(Layer):
    """A fully connected layer ``y = activation(x @ kernel + bias)`` on the last axis.

    Works on inputs of any rank >= 2: (B, D) gives (B, units), (B, T, D)
    gives (B, T, units), as in Keras 3. A mask passes through unchanged.

    Parameters
    ----------
    units : int
    activation : str or None
        One of :mod:`fastrnn.keras.activations`; ``None`` is linear.
    use_bias : bool
    kernel_initializer, bias_initializer : str or Initializer
    seed : int or numpy.random.Generator, optional
        Source of the initial weights.
    **kwargs
        ``name``, ``dtype``, ``trainable``, ``input_shape`` of :class:`Layer`.

    Attributes
    ----------
    kernel : Parameter of shape (D, units)
    bias : Parameter of shape (units,), or None
    """

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.activation = activations.get(activation)
        self.use_bias = check_bool("use_bias", use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.rng = initializers.as_generator(seed)
        self.kernel = self.bias = None
        self._tape = None

    def build(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ShapeError(f"layer {self.name!r} (Dense) needs a known last axis; got input shape "
                             f"{input_shape}")
        D = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", self.kernel_initializer((D, self.units), self.dtype, self.rng))
        if self.use_bias:
            self.bias = self.add_weight("bias", self.bias_initializer((self.units,), self.dtype, self.rng))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x, mask=None, training=False):
        """Apply the layer.

        Parameters
        ----------
        x : array_like of shape (B, ..., D)

        Returns
        -------
        ndarray of shape (B, ..., units)
        """
        x = float_input(self, x, features=self.kernel.shape[0])
        if x.ndim < 2:
            raise ShapeError(f"layer {self.name!r} (Dense) needs a batch axis: input of shape "
                             f"(B, ..., D); got {x.shape}")
        z = x @ self.kernel.values
        if self.use_bias:
            z += self.bias.values
        y = self.activation(z)
        self._tape = (x, z, y) if training else None
        return y

    def backward(self, d_output):
        """Add the kernel and bias gradients; return the input's, of shape (B, ..., D)."""
        x, z, y = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, y.shape)
        dz = self.activation.gradient(dy, z, y).reshape(-1, self.units)
        self.kernel.accumulate(x.reshape(-1, x.shape[-1]).T @ dz)
        if self.use_bias:
            self.bias.accumulate(dz.sum(axis=0))
        return (dz @ self.kernel.values.T).reshape(x.shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation.name,
                "use_bias": self.use_bias,
                **serialized_initializers(self, "kernel_initializer", "bias_initializer")}


class Embedding(Layer):
    """Look-up of a vector per integer token: (B, T) indices give (B, T, output_dim).

    Parameters
    ----------
    input_dim : int
        Size of the vocabulary; indices lie in [0, input_dim).
    output_dim : int
    embeddings_initializer : str or Initializer
        ``"uniform"`` (Keras's default) is U(-0.05, 0.05).
    mask_zero : bool
        Index 0 is padding: :meth:`compute_mask` gives ``x != 0``, which the
        following layers (recurrent ones) skip.
    seed : int or numpy.random.Generator, optional
    input_length : int, optional
        Deprecated, as in Keras 3: accepted with a warning and ignored.
    **kwargs
        As for :class:`Layer`.

    Attributes
    ----------
    embeddings : Parameter of shape (input_dim, output_dim)
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False,
                 seed=None, input_length=None, **kwargs):
        if input_length is not None:
            # Keras 3 deprecates it (the length comes from the data) and ignores it
            warnings.warn("Embedding's input_length is deprecated and ignored (the sequence length comes "
                          "from the input); remove it", UserWarning, stacklevel=2)
        super().__init__(**kwargs)
        self.input_dim = positive_int("input_dim", input_dim)
        self.output_dim = positive_int("output_dim", output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = check_bool("mask_zero", mask_zero)
        self.rng = initializers.as_generator(seed)
        self.embeddings = None
        self._tape = None

    def build(self, input_shape):
        self.embeddings = self.add_weight("embeddings", self.embeddings_initializer(
            (self.input_dim, self.output_dim), self.dtype, self.rng))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _indices(self, x):
        array = np.asarray(x)
        if array.dtype.kind == "f":
            # Keras casts float token ids to int; accept them only when exact
            if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
                raise DTypeError(f"layer {self.name!r} (Embedding) needs integer indices; got "
                                 f"non-integer values of dtype {array.dtype}")
            array = array.astype(np.int64)
        elif array.dtype.kind not in "iu":
            raise DTypeError(f"layer {self.name!r} (Embedding) needs integer indices; got dtype "
                             f"{array.dtype}")
        if array.size:
            bad = (array < 0) | (array >= self.input_dim)
            if bad.any():
                where = tuple(int(i[0]) for i in np.nonzero(bad))
                raise ArgumentError(f"layer {self.name!r} (Embedding): index {int(array[where])} at "
                                    f"position {where} is out of range for input_dim={self.input_dim} "
                                    f"(valid indices are 0..{self.input_dim - 1})")
        return array

    def call(self, x, mask=None, training=False):
        """Look the indices up.

        Parameters
        ----------
        x : array_like of int of shape (B, T) (any shape works)

        Returns
        -------
        ndarray of shape (B, T, output_dim)
        """
        indices = self._indices(x)
        self._tape = indices if training else None
        return self.embeddings.values[indices]

    def backward(self, d_output):
        """Add the rows' gradients into ``embeddings.grad`` (repeated indices add up); returns None."""
        indices = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, indices.shape + (self.output_dim,))
        grad = np.zeros_like(self.embeddings.values)
        # sum the rows of each index: sort once, then one reduceat (np.add.at is ~10x slower)
        flat = indices.reshape(-1)
        order = np.argsort(flat, kind="stable")
        rows = dy.reshape(-1, self.output_dim)[order]
        used, starts = np.unique(flat[order], return_index=True)
        if used.size:
            grad[used] = np.add.reduceat(rows, starts, axis=0)
        self.embeddings.accumulate(grad)
        return None

    def compute_mask(self, x, mask=None):
        """``x != 0`` (ndarray of bool shaped like ``x``) if ``mask_zero``, else None."""
        if not self.mask_zero:
            return None
        return np.asarray(x) != 0

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "mask_zero": self.mask_zero, **serialized_initializers(self, "embeddings_initializer")}


class Activation(Layer):
    """Apply a named activation elementwise (softmax: along the last axis).

    Parameters
    ----------
    activation : str or None
        linear, relu, sigmoid, tanh or softmax.
    """

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self._tape = None

    def call(self, x, mask=None, training=False):
        x = float_input(self, x)
        y = self.activation(x)
        self._tape = (x, y) if training else None
        return y

    def backward(self, d_output):
        x, y = require_tape(self, self._tape)
        return self.activation.gradient(check_gradient(self, d_output, y.shape), x, y)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.name}


class Dropout(Layer):
    """Inverted dropout: in training, zero each entry with probability ``rate`` and scale the
    rest by ``1 / (1 - rate)``; the identity otherwise.

    Parameters
    ----------
    rate : float in [0, 1)
    noise_shape : tuple of int or None, optional
        Shape of the keep mask, broadcast against the input (``None`` entries
        take the input's size), e.g. ``(None, 1, None)`` to drop the same
        features at every step.
    seed : int or numpy.random.Generator, optional
    """

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = probability("rate", rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.rng = initializers.as_generator(seed)
        self._tape = None

    def call(self, x, mask=None, training=False):
        x = float_input(self, x)
        if not training or self.rate == 0:
            self._tape = (None,) if training else None
            return x
        shape = x.shape
        if self.noise_shape is not None:
            if len(self.noise_shape) != x.ndim:
                raise ShapeError(f"layer {self.name!r}: noise_shape {self.noise_shape} must have one "
                                 f"entry per input axis; the input has shape {x.shape}")
            shape = tuple(s if n is None else n for n, s in zip(self.noise_shape, x.shape))
        keep = self.rng.random(shape) >= self.rate
        scale = keep.astype(self.dtype) / self.dtype.type(1.0 - self.rate)
        self._tape = (scale,)
        return x * scale

    def backward(self, d_output):
        (scale,) = require_tape(self, self._tape)
        dy = np.asarray(d_output, dtype=self.dtype)
        return dy if scale is None else dy * scale

    def get_config(self):
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}


class Masking(Layer):
    """Mark the steps whose features all equal ``mask_value`` as padding, and zero them.

    The mask, ``any(x != mask_value, axis=-1)`` of shape (B, T), goes to the
    next layers.

    Parameters
    ----------
    mask_value : float
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self._tape = None

    def compute_mask(self, x, mask=None):
        return np.any(np.asarray(x) != self.mask_value, axis=-1)

    def call(self, x, mask=None, training=False):
        x = float_input(self, x)
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        self._tape = keep if training else None
        return x * keep

    def backward(self, d_output):
        keep = require_tape(self, self._tape)
        return np.asarray(d_output, dtype=self.dtype) * keep

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


class TimeDistributed(Layer):
    """Apply a layer to every step of a sequence: (B, T, ...) runs as (B*T, ...).

    The wrapped layer's weights are this layer's weights (one set, shared by
    all steps). A mask passes through unchanged.

    Parameters
    ----------
    layer : Layer
        E.g. ``Dense(10, activation="softmax")``.
    """

    supports_masking = True

    _shape = PerThread()  # the (B, T) of this thread's last call, for backward

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ArgumentError(f"TimeDistributed wraps a fastrnn.keras layer; got {type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer
        self._weights = layer._weights  # the same list: weights added later show up here too
        self._shape = None

    @property
    def trainable_weights(self):
        return self.layer.trainable_weights

    def tape_state(self):
        return self._shape, self.layer.tape_state()

    def restore_tape_state(self, state):
        self._shape, inner = state
        self.layer.restore_tape_state(inner)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ShapeError(f"layer {self.name!r} (TimeDistributed) needs inputs of shape (B, T, ...); "
                             f"got input shape (B,) + {tuple(input_shape)}")
        if not self.layer.built:
            self.layer.build(tuple(input_shape[1:]))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.layer.compute_output_shape(tuple(input_shape[1:])))

    def call(self, x, mask=None, training=False):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ShapeError(f"layer {self.name!r} (TimeDistributed) needs inputs of shape (B, T, ...); "
                             f"got shape {x.shape}")
        B, T = x.shape[:2]
        y = self.layer.call(x.reshape((B * T,) + x.shape[2:]), training=training)
        self._shape = (B, T)
        return y.reshape((B, T) + y.shape[1:])

    def backward(self, d_output):
        if self._shape is None:
            require_tape(self, None)
        B, T = self._shape
        dy = np.asarray(d_output, dtype=self.dtype)
        dx = self.layer.backward(dy.reshape((B * T,) + dy.shape[2:]))
        return None if dx is None else dx.reshape((B, T) + dx.shape[1:])

    def get_config(self):
        return {**super().get_config(), "layer": {"class_name": type(self.layer).__name__,
                                                   "config": self.layer.get_config()}}
