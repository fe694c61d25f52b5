"""Named activation functions of fastrnn.keras layers, each with the gradient its backward pass needs."""

import numpy as np

from fastrnn.exceptions import ArgumentError

__all__ = ["Activation", "get", "linear", "relu", "sigmoid", "tanh", "softmax"]


class Activation:
    """An elementwise (or, for softmax, last-axis) function and its vector-Jacobian product.

    Parameters
    ----------
    name : str
    forward : callable
        ``forward(x) -> y``.
    gradient : callable
        ``gradient(dy, x, y) -> dx``: the gradient of the loss with respect to
        ``x`` given the one with respect to ``y = forward(x)``.
    """

    def __init__(self, name, forward, gradient):
        self.name = name
        self._forward = forward
        self._gradient = gradient

    def __call__(self, x):
        return self._forward(x)

    def gradient(self, dy, x, y):
        """Gradient with respect to the input; arrays of one shape."""
        return self._gradient(dy, x, y)

    def __repr__(self):
        return f"<activation {self.name}>"

    def __reduce__(self):
        # a built-in pickles by name, so an unpickled layer shares the module's object
        if _BY_NAME.get(self.name) is self:
            return (get, (self.name,))
        return (Activation, (self.name, self._forward, self._gradient))


# Module-level functions, not lambdas: an Activation (and every layer holding one)
# must pickle, and pickle stores a function by its qualified name.
def _identity(x):
    return x


def _identity_gradient(dy, x, y):
    return dy


def _relu(x):
    return np.maximum(x, 0)


def _relu_gradient(dy, x, y):
    return dy * (x > 0)


def _sigmoid(x):
    # exp of a non-positive number only: no overflow warning for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _sigmoid_gradient(dy, x, y):
    return dy * y * (1 - y)


def _tanh_gradient(dy, x, y):
    return dy * (1 - y * y)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_gradient(dy, x, y):
    # the Jacobian of softmax is diag(y) - y y^T along the last axis
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


linear = Activation("linear", _identity, _identity_gradient)
relu = Activation("relu", _relu, _relu_gradient)
sigmoid = Activation("sigmoid", _sigmoid, _sigmoid_gradient)
tanh = Activation("tanh", np.tanh, _tanh_gradient)
softmax = Activation("softmax", _softmax, _softmax_gradient)

_BY_NAME = {a.name: a for a in (linear, relu, sigmoid, tanh, softmax)}


def get(identifier):
    """The :class:`Activation` for a name, ``None`` (linear) or an :class:`Activation` (returned as is).

    Raises
    ------
    ArgumentError
        For any other value; the message lists the valid names.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    raise ArgumentError(f"unknown activation {identifier!r}; valid names are "
                        f"{', '.join(sorted(_BY_NAME))} (or None for linear)")
