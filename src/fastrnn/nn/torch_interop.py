"""Moving recurrent modules between PyTorch and fastrnn: :func:`from_torch`, :func:`to_torch`.

Both keep the configuration and copy the weights; torch is imported only when
one of them is called.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError

_CONFIG = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
           "bidirectional")
_TORCH_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def _classes():
    import torch

    from fastrnn.nn.recurrent import GRU, LSTM, RNN

    return torch, [(torch.nn.LSTM, LSTM), (torch.nn.GRU, GRU), (torch.nn.RNN, RNN)]


def _config(module, cls_name):
    config = {name: getattr(module, name) for name in _CONFIG}
    if cls_name == "RNN":
        config["nonlinearity"] = module.nonlinearity
    if cls_name == "LSTM":
        config["proj_size"] = module.proj_size
    return config


def from_torch(module, **options):
    """A fastrnn copy of a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (configuration and weights).

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
    **options
        Extra fastrnn arguments, e.g. ``backend``, ``n_threads``.

    Returns
    -------
    fastrnn.nn.RNN, LSTM or GRU
        In the module's dtype (float32 or float64) and training mode.
    """
    torch, pairs = _classes()
    for torch_cls, fastrnn_cls in pairs:
        if type(module) is torch_cls:
            state = {name: tensor.detach().cpu().numpy() for name, tensor in module.state_dict().items()}
            dtype = next(iter(state.values())).dtype
            copy = fastrnn_cls(**_config(module, fastrnn_cls.__name__), dtype=dtype, **options)
            copy.load_state_dict(state)
            return copy.train(module.training)
    raise ArgumentError("module must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU; got "
                        f"{type(module).__name__}")


def to_torch(module):
    """A ``torch.nn`` copy of a fastrnn RNN, LSTM or GRU (configuration and weights)."""
    torch, pairs = _classes()
    for torch_cls, fastrnn_cls in pairs:
        if type(module) is fastrnn_cls:
            dtype = getattr(torch, _TORCH_DTYPES[module.dtype])
            copy = torch_cls(**_config(module, fastrnn_cls.__name__), dtype=dtype)
            copy.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(array))
                                  for name, array in module.state_dict().items()})
            return copy.train(module.training)
    raise ArgumentError("module must be a fastrnn.nn.RNN, LSTM or GRU; got "
                        f"{type(module).__name__}")
