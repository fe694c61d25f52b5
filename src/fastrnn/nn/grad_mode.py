"""Whether forward passes keep what their backward pass needs (``no_grad``)."""

import contextvars
from contextlib import contextmanager

_enabled = contextvars.ContextVar("fastrnn_grad_enabled", default=True)


def is_grad_enabled():
    """True unless inside :func:`no_grad`."""
    return _enabled.get()


@contextmanager
def no_grad():
    """Run forward passes without keeping their caches, as ``torch.no_grad()`` does.

    Inside, modules use the kernels' inference mode (less memory) and
    ``backward`` cannot follow.
    """
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)
