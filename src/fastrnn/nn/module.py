"""The module base class: parameters by name, state dicts, training mode, gradients."""

import copy
import os
from collections import OrderedDict

import numpy as np

from fastrnn._validation import check_bool, check_precision
from fastrnn.exceptions import ArgumentError
from fastrnn.parameter import Parameter, apply_update, prepare_update


class Module:
    """Base class of fastrnn.nn's layers, shaped like ``torch.nn.Module``.

    A subclass registers its parameters by assigning :class:`Parameter` s and
    its sub-modules by assigning :class:`Module` s as attributes; both are
    found by name, in assignment order.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # parameters ----------------------------------------------------------
    def named_parameters(self, prefix=""):
        """Yield ``(name, Parameter)`` pairs, sub-modules' names dotted as in PyTorch."""
        for name, parameter in self._parameters.items():
            yield prefix + name, parameter
        for module_name, module in self._modules.items():
            yield from module.named_parameters(prefix + module_name + ".")

    def parameters(self):
        """Yield every :class:`Parameter` (for an optimizer)."""
        for _, parameter in self.named_parameters():
            yield parameter

    def zero_grad(self, set_to_none=True):
        """Forget accumulated gradients (``grad = None``, or zeros with ``set_to_none=False``)."""
        for parameter in self.parameters():
            if set_to_none or parameter.grad is None:
                parameter.grad = None
            else:
                parameter.grad[...] = 0

    # modes -------------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (dropout active) on this module and its sub-modules; returns self."""
        object.__setattr__(self, "training", check_bool("mode", mode))
        for module in self._modules.values():
            module.train(mode)
        return self

    def eval(self):
        """Set evaluation mode; same as ``train(False)``."""
        return self.train(False)

    # precision -------------------------------------------------------------------
    def quantized(self, precision):
        """A copy of this module for inference in ``precision`` (:func:`fastrnn.quantize`).

        Parameters
        ----------
        precision : {"float32", "bf16", "int8"}

        Returns
        -------
        Module
            A deep copy in ``eval()`` mode whose recurrent modules (this one and every
            sub-module) have ``precision`` set and their weights packed in it once, now.
            Its parameters stay float32 master copies equal to this module's; this module
            is not changed.

        Raises
        ------
        ArgumentError
            For an unknown precision.
        DTypeError
            For bf16 or int8 on a recurrent module with float64 parameters.
        """
        check_precision(precision)
        clone = copy.deepcopy(self)
        clone._apply_precision_tree(precision)
        return clone.eval()

    def _apply_precision_tree(self, precision):
        self._apply_precision(precision)
        for module in self._modules.values():
            module._apply_precision_tree(precision)

    def _apply_precision(self, precision):
        """Take ``precision`` (recurrent modules do; others have no products of their own)."""

    # state dicts ---------------------------------------------------------
    def state_dict(self):
        """An ordered ``{name: ndarray}`` copy of every parameter."""
        return OrderedDict((name, p.values.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters of the same names.

        Accepts a fastrnn state dict or a PyTorch one whose tensors were turned
        into arrays (``{k: v.numpy() for k, v in module.state_dict().items()}``);
        tensors themselves are accepted too when they convert with ``numpy.asarray``.
        A file name is read with :func:`fastrnn.nn.load_torch_checkpoint`, so a
        ``torch.save(model.state_dict(), "model.pt")`` file loads without torch.

        Parameters
        ----------
        state_dict : mapping of str to array_like, or str or os.PathLike
        strict : bool
            Require exactly this module's names. Shapes must always match.

        Returns
        -------
        (missing_keys, unexpected_keys) : tuple of list of str

        Raises
        ------
        ArgumentError
            With ``strict``, naming every missing and unexpected key.
        ShapeError
            Naming each key whose array has the wrong shape.
        DTypeError
            Naming a key whose value is not a real floating-point array
            (integers, strings, objects and complex values are refused).
        NonFiniteError
            Naming a key whose array holds NaN or infinity.
        CheckpointError
            For a file that is not a readable torch checkpoint, or names code to run.

        Notes
        -----
        All or nothing: every entry is checked before any is written, so
        after an error the module's parameters are exactly as they were.
        """
        if isinstance(state_dict, (str, os.PathLike)):
            from fastrnn.nn.torch_checkpoint import load_torch_checkpoint
            state_dict = load_torch_checkpoint(state_dict)
        if not hasattr(state_dict, "keys"):
            raise ArgumentError(
                f"state_dict must be a mapping of parameter names to arrays; got {type(state_dict).__name__}"
            )
        own = OrderedDict(self.named_parameters())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing key(s): " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
            raise ArgumentError(f"error loading state_dict into {type(self).__name__}: "
                                + "; ".join(parts))
        # every entry is checked and converted before any parameter is written
        apply_update(prepare_update(((name, parameter, state_dict[name]) for name, parameter in own.items()
                                     if name in state_dict),
                                    f"error loading state_dict into {type(self).__name__}"))
        return missing, unexpected
