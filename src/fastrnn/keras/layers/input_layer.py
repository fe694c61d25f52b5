"""The layer behind a functional model's input (:func:`fastrnn.keras.Input` makes one)."""

import numpy as np

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras.layers.base import Layer, unique_name
from fastrnn.keras.symbolic import KerasTensor, Node

__all__ = ["InputLayer"]


class InputLayer(Layer):
    """The layer behind a model input (what :func:`Input` creates); it has no weights and
    passes its input through.

    Parameters
    ----------
    shape : tuple, optional
        Without the batch axis; ``None`` for an open size.
    batch_size : int, optional
    dtype : str, default "float32"
        ``"int32"``/``"int64"`` for token ids.
    name : str, optional
    batch_shape : tuple, optional
        With the batch axis (instead of ``shape`` and ``batch_size``).
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, sparse=None,
                 ragged=None, **kwargs):
        if sparse or ragged:
            raise ArgumentError("fastrnn has no sparse or ragged inputs; pad sequences to one length "
                                "(fastrnn.keras.utils.pad_sequences) and mask them")
        if batch_shape is not None:
            if shape is not None:
                raise ArgumentError("give Input a shape or a batch_shape, not both")
            batch_shape = _shape_tuple("batch_shape", batch_shape)
            if not batch_shape:
                raise ShapeError("batch_shape must include the batch axis; got ()")
        else:
            if shape is None:
                raise ArgumentError("Input needs a shape (without the batch axis), e.g. Input((100,))")
            batch_shape = (batch_size,) + _shape_tuple("shape", shape)
        self.batch_shape = batch_shape
        self.input_dtype = np.dtype("float32" if dtype is None else dtype).name
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        self.build(batch_shape[1:])
        node = Node(self, None, {}, {})
        node.outputs = [KerasTensor(batch_shape, self.input_dtype, node, 0)]

    @property
    def output(self):
        """The KerasTensor of this input."""
        return self._nodes[0].outputs[0]

    def call(self, x, mask=None, training=False):
        return x

    def backward(self, d_output):
        return d_output

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.input_dtype, "name": self.name}


def _shape_tuple(name, shape):
    if isinstance(shape, (int, np.integer)) or shape is None:
        shape = (shape,)
    try:
        sizes = tuple(shape)
    except TypeError:
        raise ArgumentError(f"{name} must be a tuple of sizes (None for an open one); got {shape!r}") from None
    for size in sizes:
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0):
            raise ShapeError(f"{name} must hold non-negative ints or None; got {shape!r}")
    return tuple(None if size is None else int(size) for size in sizes)
