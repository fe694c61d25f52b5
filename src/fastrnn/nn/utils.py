"""Gradient clipping under ``torch.nn.utils``'s names (implemented in :mod:`fastrnn.optim`)."""

from fastrnn.optim import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_"]
