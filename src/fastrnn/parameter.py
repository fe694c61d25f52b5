"""A trainable array and its gradient, shared by both facades (fastrnn.nn, fastrnn.keras) and the optimizers."""

import numpy as np


class Parameter:
    """A trainable array of a module, with the gradient that backward passes add into.

    Optimizers update ``data`` in place, so arrays handed out by
    ``named_parameters()`` stay the module's own.

    Parameters
    ----------
    data : ndarray
        The values; kept as given (not copied).

    Attributes
    ----------
    data : ndarray
    grad : ndarray of the shape of ``data``, or None
        Sum of the gradients of every backward pass since the last
        ``zero_grad()``; ``None`` before the first one, as in PyTorch.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.asarray(data)
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def accumulate(self, gradient):
        """Add ``gradient`` into ``grad`` (allocating it on first use)."""
        if self.grad is None:
            self.grad = np.array(gradient, dtype=self.data.dtype, copy=True)
        else:
            self.grad += gradient

    # explicit state: protocols 0 and 1 cannot store a __slots__ class without it
    def __getstate__(self):
        return {"data": self.data, "grad": self.grad}

    def __setstate__(self, state):
        self.data = state["data"]
        self.grad = state["grad"]

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
