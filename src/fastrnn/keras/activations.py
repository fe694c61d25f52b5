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


def _sigmoid(x):
    # exp of a non-positive number only: no overflow warning for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


linear = Activation("linear", lambda x: x, lambda dy, x, y: dy)
relu = Activation("relu", lambda x: np.maximum(x, 0), lambda dy, x, y: dy * (x > 0))
sigmoid = Activation("sigmoid", _sigmoid, lambda dy, x, y: dy * y * (1 - y))
tanh = Activation("tanh", np.tanh, lambda dy, x, y: dy * (1 - y * y))
# the Jacobian of softmax is diag(y) - y y^T along the last axis
softmax = Activation("softmax", _softmax,
                     lambda dy, x, y: y * (dy - np.sum(dy * y, axis=-1, keepdims=True)))

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
