"""Layers that rearrange their input without computing: RepeatVector, Reshape, Flatten, Permute.

As in Keras 3 none of them supports masking: a mask reaching one is dropped (Keras warns), and
:meth:`compute_mask` gives None.
"""

import math

import numpy as np

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import check_gradient, float_input, positive_int, require_tape

__all__ = ["RepeatVector", "Reshape", "Flatten", "Permute"]


def _data_format(value):
    if value is None:
        return "channels_last"
    if value not in ("channels_last", "channels_first"):
        raise ArgumentError(f"data_format must be 'channels_last', 'channels_first' or None; got {value!r}")
    return value


class _Rearrangement(Layer):
    """What the four share: no weights, no mask out, and a tape of the input's shape."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tape = None

    def compute_mask(self, x, mask=None):
        return None


class RepeatVector(_Rearrangement):
    """Repeat a (B, D) input ``n`` times: (B, n, D), e.g. to feed an encoding to every decoder step.

    Parameters
    ----------
    n : int
    **kwargs
        As for :class:`Layer`.
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = positive_int("n", n)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(f"layer {self.name!r} (RepeatVector) needs inputs of shape (B, D); got input "
                             f"shape (B, {', '.join(map(str, input_shape))})")
        return (self.n, input_shape[0])

    def call(self, x, mask=None, training=False):
        """
        Parameters
        ----------
        x : array_like of shape (B, D)

        Returns
        -------
        ndarray of shape (B, n, D)
        """
        x = float_input(self, x, ndim=2)
        self._tape = x.shape if training else None
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, d_output):
        B, D = require_tape(self, self._tape)
        return check_gradient(self, d_output, (B, self.n, D)).sum(axis=1)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


class Reshape(_Rearrangement):
    """Give each sample the shape ``target_shape`` (the batch axis is kept).

    Parameters
    ----------
    target_shape : tuple of int
        Without the batch axis; one entry may be -1, inferred from the input's size.
    **kwargs
        As for :class:`Layer`.
    """

    def __init__(self, target_shape, **kwargs):
        try:
            shape = tuple(target_shape)
        except TypeError:
            raise ArgumentError(f"Reshape: target_shape must be a tuple of ints; got {target_shape!r}") from None
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and (n > 0 or n == -1)
                   for n in shape) or sum(n == -1 for n in shape) > 1:
            raise ArgumentError(f"Reshape: target_shape must be a tuple of positive ints with at most one "
                                f"-1; got {target_shape!r}")
        super().__init__(**kwargs)
        self.target_shape = tuple(int(n) for n in shape)

    def compute_output_shape(self, input_shape):
        if any(n is None for n in input_shape):
            return tuple(None if n == -1 else n for n in self.target_shape)
        size = math.prod(input_shape)
        known = math.prod(n for n in self.target_shape if n != -1)
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ShapeError(f"layer {self.name!r} (Reshape) cannot reshape inputs of shape (B, "
                                 f"{', '.join(map(str, input_shape))}) ({size} values per sample) to "
                                 f"target_shape {self.target_shape}")
            return tuple(size // known if n == -1 else n for n in self.target_shape)
        if known != size:
            raise ShapeError(f"layer {self.name!r} (Reshape) cannot reshape inputs of shape (B, "
                             f"{', '.join(map(str, input_shape))}) ({size} values per sample) to target_shape "
                             f"{self.target_shape} ({known} values)")
        return self.target_shape

    def call(self, x, mask=None, training=False):
        """
        Parameters
        ----------
        x : array_like of shape (B, ...)

        Returns
        -------
        ndarray of shape (B,) + target_shape
        """
        x = float_input(self, x)
        if x.ndim < 1:
            raise ShapeError(f"layer {self.name!r} (Reshape) needs a batch axis; got shape {x.shape}")
        shape = self.compute_output_shape(x.shape[1:])
        self._tape = (x.shape, (x.shape[0],) + shape) if training else None
        return x.reshape((x.shape[0],) + shape)

    def backward(self, d_output):
        in_shape, out_shape = require_tape(self, self._tape)
        return check_gradient(self, d_output, out_shape).reshape(in_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Flatten(_Rearrangement):
    """Flatten each sample: (B, d1, d2, ...) gives (B, d1 * d2 * ...); (B,) gives (B, 1).

    Parameters
    ----------
    data_format : {"channels_last", "channels_first"} or None
        With ``"channels_first"`` the channel axis (1) is moved last first, as in Keras.
    **kwargs
        As for :class:`Layer`.
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)

    def compute_output_shape(self, input_shape):
        if any(n is None for n in input_shape):
            return (None,)
        return (math.prod(input_shape),)

    def call(self, x, mask=None, training=False):
        """
        Parameters
        ----------
        x : array_like of shape (B, ...)

        Returns
        -------
        ndarray of shape (B, prod(...))
        """
        x = float_input(self, x)
        if x.ndim < 1:
            raise ShapeError(f"layer {self.name!r} (Flatten) needs a batch axis; got shape {x.shape}")
        moved = self.data_format == "channels_first" and x.ndim > 2
        source = np.moveaxis(x, 1, -1) if moved else x
        self._tape = (source.shape, moved) if training else None
        return np.ascontiguousarray(source).reshape(x.shape[0], -1)

    def backward(self, d_output):
        shape, moved = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, (shape[0], math.prod(shape[1:])))
        dx = dy.reshape(shape)
        return np.ascontiguousarray(np.moveaxis(dx, -1, 1)) if moved else dx

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Permute(_Rearrangement):
    """Reorder the non-batch axes: ``dims`` is a permutation of 1..n (the batch axis is 0 and stays).

    ``Permute((2, 1))`` turns (B, T, D) into (B, D, T).

    Parameters
    ----------
    dims : tuple of int
    **kwargs
        As for :class:`Layer`.
    """

    def __init__(self, dims, **kwargs):
        try:
            dims = tuple(dims)
        except TypeError:
            raise ArgumentError(f"Permute: dims must be a permutation of 1..n; got {dims!r}") from None
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims) \
                or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ArgumentError(f"Permute: dims must be a permutation of 1..n (the batch axis 0 stays); "
                                f"got {dims!r}")
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ShapeError(f"layer {self.name!r} (Permute) with dims={self.dims} needs inputs of "
                             f"{len(self.dims) + 1} axes (batch included); got input shape (B, "
                             f"{', '.join(map(str, input_shape))})")
        return tuple(input_shape[d - 1] for d in self.dims)

    def call(self, x, mask=None, training=False):
        """
        Parameters
        ----------
        x : array_like of shape (B, d1, ..., dn)

        Returns
        -------
        ndarray of shape (B, d_dims[0], ..., d_dims[n-1])
        """
        x = float_input(self, x, ndim=len(self.dims) + 1)
        y = np.ascontiguousarray(x.transpose((0,) + self.dims))
        self._tape = y.shape if training else None
        return y

    def backward(self, d_output):
        out_shape = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, out_shape)
        return np.ascontiguousarray(dy.transpose(np.argsort((0,) + self.dims)))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
