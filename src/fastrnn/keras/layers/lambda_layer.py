"""Lambda: a NumPy function as a layer, trainable only when given its backward.

fastrnn computes gradients with explicit backward passes, not automatic differentiation, so a
Lambda can take part in training only when it is handed the backward of its function::

    double = layers.Lambda(lambda x: 2 * x, backward=lambda d_output, x, output: 2 * d_output)

Without ``backward`` it works forward only (``predict``, ``evaluate``, calls with
``training=False``); a training call (``fit``, ``training=True``) raises an ArgumentError that
says so, before any computation.
"""

import inspect
import sys

import numpy as np

from fastrnn.exceptions import ArgumentError
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import require_tape

__all__ = ["Lambda"]


def _function_name(layer, what, function):
    """``"module:qualname"`` of a module-level function, the form the config stores it in."""
    qualname = getattr(function, "__qualname__", "")
    module = getattr(function, "__module__", None)
    if not module or not qualname or "<" in qualname:
        raise ArgumentError(f"layer {layer.name!r} (Lambda): its {what} {function!r} cannot be saved in a "
                            "config (a lambda or a nested function); define it at module level, or rebuild "
                            "the layer in code")
    return f"{module}:{qualname}"


def _resolve(what, name):
    """The function a config names, looked up in modules already imported (the config never imports)."""
    if name is None or callable(name):
        return name
    module_name, _, qualname = str(name).partition(":")
    target = sys.modules.get(module_name)
    for part in qualname.split(".") if target is not None else ():
        target = getattr(target, part, None)
    if target is None or not callable(target):
        raise ArgumentError(f"Lambda: the {what} {name!r} of the config is not a function of an imported "
                            "module; import its module first")
    return target


class Lambda(Layer):
    """Apply ``function`` to the input (or the list of inputs).

    Parameters
    ----------
    function : callable
        ``function(inputs, **arguments)``: ndarray (or list of ndarrays) to ndarray. It gets
        ``mask=`` and ``training=`` too when its signature names them (as in Keras).
    output_shape : tuple or callable, optional
        The output's shape without the batch axis, or ``f(input_shape) -> shape`` (with the
        batch axis, as Keras); by default found by running ``function`` on zeros.
    mask : callable or array_like, optional
        The output's mask: ``mask(inputs, previous_mask)`` or a fixed mask. With a mask the
        layer supports masking (as Keras).
    arguments : dict, optional
        Keyword arguments for ``function``.
    backward : callable, optional (fastrnn's addition)
        ``backward(d_output, inputs, output, **arguments)``: the gradient of the input (a
        list, one entry per input, for a list of inputs; None for an input without one),
        given the output's gradient, the inputs and the output of the forward call. Required
        for training.
    **kwargs
        ``name``, ``dtype``, ``trainable`` of :class:`Layer`.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, backward=None, **kwargs):
        if isinstance(function, str):
            function = _resolve("function", function)
        if not callable(function):
            raise ArgumentError(f"Lambda: function must be callable; got {function!r}")
        if backward is not None and not callable(backward := _resolve("backward", backward)):
            raise ArgumentError(f"Lambda: backward must be callable or None; got {backward!r}")
        if arguments is not None and not isinstance(arguments, dict):
            raise ArgumentError(f"Lambda: arguments must be a dict or None; got {arguments!r}")
        if isinstance(output_shape, str):
            output_shape = _resolve("output_shape", output_shape)
        super().__init__(**kwargs)
        self.function = function
        self.backward_function = backward
        self.arguments = dict(arguments or {})
        self.mask = _resolve("mask", mask) if isinstance(mask, str) else mask
        self.supports_masking = mask is not None
        self._output_shape = tuple(output_shape) if isinstance(output_shape, (list, tuple)) else output_shape
        try:
            names = inspect.signature(function).parameters
        except (TypeError, ValueError):
            names = {}
        self._takes_mask = "mask" in names
        self._takes_training = "training" in names
        self._tape = None

    def compute_output_shape(self, input_shape):
        if callable(self._output_shape):
            with_batch = ([(None,) + tuple(s) for s in input_shape] if isinstance(input_shape, list)
                          else (None,) + tuple(input_shape))
            return tuple(self._output_shape(with_batch))[1:]
        if self._output_shape is not None:
            return self._output_shape
        # run the function on a batch of one, unknown sizes taken as 1
        def zeros(shape):
            return np.zeros((1,) + tuple(1 if n is None else n for n in shape), self.dtype)
        probe = [zeros(s) for s in input_shape] if isinstance(input_shape, list) else zeros(input_shape)
        return tuple(np.shape(self._apply(probe, None, False))[1:])

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape] if isinstance(input_shape, list) else tuple(input_shape)
        self.input_shape = shapes
        self.output_shape = self.compute_output_shape(shapes)
        self.built = True

    def _apply(self, inputs, mask, training):
        kwargs = dict(self.arguments)
        if self._takes_mask:
            kwargs["mask"] = mask
        if self._takes_training:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def call(self, x, mask=None, training=False):
        """``function(x, **arguments)``.

        Raises
        ------
        ArgumentError
            For ``training=True`` without a ``backward``.
        """
        if training and self.backward_function is None:
            raise ArgumentError(f"layer {self.name!r} (Lambda) has no backward, so it cannot be trained "
                                "(fastrnn has no automatic differentiation): pass Lambda(function, "
                                "backward=lambda d_output, inputs, output: ...), or use it only for "
                                "inference")
        inputs = list(x) if isinstance(x, (list, tuple)) else x
        output = self._apply(inputs, mask, training)
        self._tape = (inputs, output) if training else None
        return output

    def backward(self, d_output):
        """``backward(d_output, inputs, output, **arguments)``: the inputs' gradients."""
        inputs, output = require_tape(self, self._tape)
        grads = self.backward_function(d_output, inputs, output, **self.arguments)
        if isinstance(inputs, list):
            if not isinstance(grads, (list, tuple)) or len(grads) != len(inputs):
                raise ArgumentError(f"layer {self.name!r} (Lambda): backward must return a list of "
                                    f"{len(inputs)} gradients (one per input); got {type(grads).__name__}")
            return [None if g is None else np.asarray(g, dtype=self.dtype) for g in grads]
        return None if grads is None else np.asarray(grads, dtype=self.dtype)

    def compute_mask(self, x, mask=None):
        if callable(self.mask):
            return self.mask(x, mask)
        return None if self.mask is None else np.asarray(self.mask)

    def get_config(self):
        """The functions by ``"module:qualname"``; a lambda or nested function cannot be saved."""
        config = {**super().get_config(), "function": _function_name(self, "function", self.function)}
        if self._output_shape is not None:
            config["output_shape"] = (_function_name(self, "output_shape", self._output_shape)
                                      if callable(self._output_shape) else self._output_shape)
        if self.mask is not None:
            config["mask"] = (_function_name(self, "mask", self.mask) if callable(self.mask)
                              else np.asarray(self.mask).tolist())
        config["arguments"] = self.arguments
        if self.backward_function is not None:
            config["backward"] = _function_name(self, "backward", self.backward_function)
        return config
