"""PyTorch-style layers on NumPy arrays: ``fastrnn.nn.RNN``, ``LSTM``, ``GRU``, their cells,
the blocks of a whole model (``Linear``, ``Embedding``, ``Dropout``, ``LayerNorm``, the
activations) and containers (``Sequential``, ``ModuleList``, ``ModuleDict``).

Constructor arguments, parameter names, initialisation and outputs follow
``torch.nn``; gradients come from an explicit ``module.backward(...)`` and
accumulate in each parameter's ``.grad``.
"""

from fastrnn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from fastrnn.nn import utils
from fastrnn.nn.blocks import (GELU, Dropout, Embedding, Identity, LayerNorm, Linear, LogSoftmax, ReLU, Sigmoid,
                               Softmax, Tanh)
from fastrnn.nn.cells import GRUCell, LSTMCell, RNNCell
from fastrnn.nn.containers import LastStep, ModuleDict, ModuleList, Sequential, TakeOutput
from fastrnn.nn.grad_mode import is_grad_enabled, no_grad
from fastrnn.nn.module import Module
from fastrnn.nn.recurrent import GRU, LSTM, RNN
from fastrnn.nn.torch_checkpoint import load_torch_checkpoint
from fastrnn.nn.torch_interop import from_torch, to_torch
from fastrnn.nn.utils.rnn import PackedSequence
from fastrnn.parameter import Parameter

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear", "Embedding", "Dropout", "LayerNorm",
           "Identity", "ReLU", "Tanh", "Sigmoid", "GELU", "Softmax", "LogSoftmax", "Sequential", "ModuleList",
           "ModuleDict", "TakeOutput", "LastStep", "PackedSequence", "Module", "Parameter", "no_grad",
           "is_grad_enabled", "from_torch", "to_torch", "load_torch_checkpoint", "utils", "MSELoss",
           "BCEWithLogitsLoss", "CrossEntropyLoss"]
