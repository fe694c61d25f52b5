"""Conversions between fastrnn's kernel packing (PyTorch's) and other frameworks' weight layouts.

:mod:`fastrnn.interop.keras` converts Keras's SimpleRNN, LSTM and GRU weights
(and gradients) to and from the PyTorch packing the kernels use.
"""

from fastrnn.interop.keras import (
    keras_grads_to_torch,
    keras_to_torch,
    torch_grads_to_keras,
    torch_to_keras,
)

__all__ = ["keras_to_torch", "torch_to_keras", "torch_grads_to_keras", "keras_grads_to_torch"]
