"""The Keras-style layer base class: weights in Keras layouts, forward and backward.

Every fastrnn.keras layer works on NumPy arrays, batch first, and pairs its
forward pass with an explicit backward pass:

* ``build(input_shape)`` creates the weights once the input's shape (without
  the batch axis) is known; ``__call__`` builds on first use.
* ``call(x, mask=None, training=False)`` returns the output and, when
  ``training``, keeps what ``backward`` needs.
* ``backward(d_output)`` adds every weight's gradient into its
  :class:`~fastrnn.parameter.Parameter` ``.grad`` and returns the gradient of
  the input (``None`` for integer inputs such as Embedding's).
* ``compute_mask(x, mask)`` gives the mask the next layer receives (Keras's
  mask propagation), an ndarray of bool of shape (B, T) or ``None``.

A layer of several inputs (the merges, ``Dot``, ``Attention``) takes them as a list
everywhere: ``build`` gets the list of their shapes, ``call`` the list of arrays
(``mask`` a list with an entry, possibly None, per input, or None), ``backward``
returns the list of their gradients (None for an input without one), and
``compute_output_shape`` / ``compute_mask`` take lists too.

What ``backward`` needs of the last training call lives in per-thread attributes
(``_tape``, and a wrapper's layers' own); :meth:`Layer.tape_state` takes it out and
:meth:`Layer.restore_tape_state` puts it back, so that a model calling one layer at
several places of its graph (a shared layer) backpropagates through each call.

Weights are stored in Keras's layouts (``kernel`` (D, k*H), ``recurrent_kernel``
(H, k*H), ...), so ``get_weights()``/``set_weights()`` exchange arrays with a
real Keras model as they are; recurrent layers convert to the kernels'
PyTorch packing on each call (:mod:`fastrnn.interop`).
"""

import copy

import numpy as np

from fastrnn._threads import PerThread, getstate_with_per_thread, setstate_with_per_thread
from fastrnn._validation import check_bool, check_precision, parameter_dtype
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras.symbolic import call_symbolic, is_symbolic
from fastrnn.parameter import Parameter, apply_update, prepare_update

_layer_counts = {}


#: Class name -> class of fastrnn.keras's own layers (each registers itself when defined).
LAYER_CLASSES = {}


def is_layer_entry(value, classes):
    """Whether ``value`` is ``{"class_name": <one of classes>, "config": {...}}``."""
    return isinstance(value, dict) and set(value) == {"class_name", "config"} and value["class_name"] in classes


def revive_nested(config, classes):
    """``config`` with each value that is a layer entry made that layer (``classes``: name -> class)."""
    return {key: classes[value["class_name"]].from_config(value["config"]) if is_layer_entry(value, classes)
            else value for key, value in dict(config).items()}


def input_shapes(x):
    """The shape of ``x`` without the batch axis; for a list of inputs (arrays), the list of theirs.

    A list of plain numbers or nested lists is one input (data), as NumPy reads it.
    """
    if isinstance(x, (list, tuple)) and x and all(hasattr(item, "shape") for item in x):
        return [tuple(np.shape(item)[1:]) for item in x]
    return tuple(np.shape(x)[1:])


def unique_name(prefix):
    """``prefix``, ``prefix_1``, ``prefix_2``, ... as Keras names layers."""
    count = _layer_counts.get(prefix, 0)
    _layer_counts[prefix] = count + 1
    return prefix if count == 0 else f"{prefix}_{count}"


class Layer:
    """Base class of fastrnn.keras layers.

    Parameters
    ----------
    name : str, optional
        Defaults to the snake_case class name, numbered like Keras.
    dtype : {"float32", "float64"}
    trainable : bool

    Attributes
    ----------
    built : bool
    input_shape, output_shape : tuple
        Without the batch axis (``None`` for an unknown length).
    supports_masking : bool
        Whether the layer accepts a mask; passing one to a layer that cannot
        take it is an error.
    """

    supports_masking = False
    # what call(training=True) leaves for backward: each thread has its own, so
    # threads sharing a layer pair their own call and backward
    _tape = PerThread()
    __getstate__ = getstate_with_per_thread
    __setstate__ = setstate_with_per_thread

    def __init__(self, name=None, dtype="float32", trainable=True, input_shape=None):
        snake = "".join("_" + c.lower() if c.isupper() else c for c in type(self).__name__).lstrip("_")
        self.name = name or unique_name(snake)
        self.dtype = parameter_dtype(dtype)
        self.trainable = check_bool("trainable", trainable)
        self.built = False
        self.declared_input_shape = None if input_shape is None else tuple(input_shape)
        self._weights = []  # (name, Parameter) in Keras's get_weights() order

    # weights -------------------------------------------------------------
    def add_weight(self, name, values):
        """Register an array as a weight; returns its :class:`Parameter`."""
        parameter = Parameter(np.ascontiguousarray(values, dtype=self.dtype))
        self._weights.append((name, parameter))
        return parameter

    @property
    def weights(self):
        """Every weight's :class:`Parameter`, in ``get_weights()`` order."""
        return [parameter for _, parameter in self._weights]

    @property
    def trainable_weights(self):
        return self.weights if self.trainable else []

    def get_weights(self):
        """Copies of the weights, in Keras's order and layouts."""
        return [parameter.values.copy() for parameter in self.weights]

    def set_weights(self, weights):
        """Copy arrays into the weights, all or nothing.

        Parameters
        ----------
        weights : list of array_like
            One real floating-point array per weight, in :meth:`get_weights`
            order, each of the weight's shape and finite.

        Raises
        ------
        ArgumentError
            When the number of arrays differs from the number of weights.
        ShapeError, DTypeError, NonFiniteError
            Naming the weight whose array has the wrong shape, is not real
            floating point, or is not finite. Every array is checked before
            any is written, so after an error the layer is unchanged.
        """
        apply_update(self._prepare_weights(weights))

    def _prepare_weights(self, weights):
        """Check ``weights`` against this layer's weights; the (Parameter, array) pairs to write."""
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ArgumentError(f"layer {self.name!r} has {len(self._weights)} weight(s) "
                                f"({', '.join(n for n, _ in self._weights)}); got {len(weights)} array(s)")
        for (name, parameter), array in zip(self._weights, weights):
            shape = np.shape(array)
            if shape != parameter.shape:
                raise ShapeError(f"layer {self.name!r}: weight {name!r} must have shape "
                                 f"{parameter.shape}; got {shape}")
        entries = ((name, parameter, array) for (name, parameter), array in zip(self._weights, weights))
        return prepare_update(entries, f"layer {self.name!r}: set_weights")

    def count_params(self):
        return int(sum(parameter.size for parameter in self.weights))

    # the pass ----------------------------------------------------------------
    def __call__(self, x, mask=None, training=False, **kwargs):
        """``call`` on arrays (built for their shapes on first use); on KerasTensors, the call is
        recorded in a functional model's graph (:func:`fastrnn.keras.symbolic.call_symbolic`)."""
        if is_symbolic(x) or any(is_symbolic(value) for value in kwargs.values()):
            return call_symbolic(self, x, mask=mask, training=training, **kwargs)
        if not self.built:
            self.build(input_shapes(x))
        if mask is not None and not self.supports_masking:
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}) cannot take a mask; "
                                "remove the masking layer before it or use a layer that supports masks")
        return self.call(x, mask=mask, training=training, **kwargs)

    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape`` (no batch axis)."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x, mask=None, training=False):
        raise NotImplementedError

    def backward(self, d_output):
        raise NotImplementedError

    def compute_mask(self, x, mask=None):
        """The mask for the next layer: by default the incoming one passes through."""
        return mask

    def tape_state(self):
        """What :meth:`backward` needs of this thread's last training call (an opaque object)."""
        return self._tape

    def restore_tape_state(self, state):
        """Make ``state``, from :meth:`tape_state`, what the next :meth:`backward` runs on."""
        self._tape = state

    # precision ---------------------------------------------------------------
    def quantized(self, precision):
        """A copy of this layer whose recurrent layers run inference in ``precision``
        (:func:`fastrnn.quantize`).

        Parameters
        ----------
        precision : {"float32", "bf16", "int8"}

        Returns
        -------
        Layer
            A deep copy with ``precision`` set on its recurrent layers (a Bidirectional's
            two), their weights packed in it once if built. This layer is not changed.
        """
        check_precision(precision)
        clone = copy.deepcopy(self)
        clone._apply_precision(precision)
        return clone

    def _apply_precision(self, precision):
        """Take ``precision``: recurrent layers do; the others compute in float32 as before."""

    def get_config(self):
        """Constructor arguments that recreate the layer (JSON-serialisable)."""
        return {"name": self.name, "dtype": self.dtype.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        """A new, unbuilt layer from :meth:`get_config`'s output (a wrapped layer's entry, as
        ``{"class_name": ..., "config": ...}``, becomes that layer)."""
        return cls(**revive_nested(config, LAYER_CLASSES))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("fastrnn.keras.layers") and not cls.__name__.startswith("_"):
            LAYER_CLASSES[cls.__name__] = cls
