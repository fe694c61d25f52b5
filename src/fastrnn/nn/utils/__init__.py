"""``torch.nn.utils``'s names: gradient clipping (implemented in :mod:`fastrnn.optim`) and
:mod:`fastrnn.nn.utils.rnn` (padding and packing variable-length batches)."""

from fastrnn.nn.utils import rnn
from fastrnn.optim import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]
