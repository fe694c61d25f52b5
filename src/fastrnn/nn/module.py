"""The module base class: parameters by name, state dicts, training mode, gradients."""

import copy
import os
from collections import OrderedDict

import numpy as np

from fastrnn._validation import check_bool, check_precision, parameter_dtype
from fastrnn.exceptions import ArgumentError, DTypeError
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

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad_output):
        """Backpropagate ``grad_output`` through the last forward call (see subclasses).

        Adds every parameter's gradient into its ``.grad`` and returns the gradient of
        the input; a subclass that trains defines it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    def add_module(self, name, module):
        """Register ``module`` (or None) as the sub-module ``name``, as ``torch.nn.Module.add_module``."""
        if not isinstance(name, str) or not name or "." in name:
            raise ArgumentError(f"a module name must be a non-empty str without '.'; got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise ArgumentError(f"{name!r} must be a fastrnn.nn.Module; got {type(module).__name__}")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    # the module tree ------------------------------------------------------
    def named_children(self):
        """Yield ``(name, module)`` for each direct sub-module."""
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        """Yield each direct sub-module."""
        for _, module in self.named_children():
            yield module

    def named_modules(self, memo=None, prefix=""):
        """Yield ``(name, module)`` for this module (name ``prefix``) and every descendant, once each."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self.named_children():
            yield from module.named_modules(memo, prefix + ("." if prefix else "") + name)

    def modules(self):
        """Yield this module and every descendant."""
        for _, module in self.named_modules():
            yield module

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module (children first) and then on this one; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # parameters ----------------------------------------------------------
    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield ``(name, Parameter)`` pairs, sub-modules' names dotted as in PyTorch.

        A parameter shared by two modules is yielded once (under its first name),
        unless ``remove_duplicate`` is false.
        """
        seen = set()
        modules = self.named_modules(prefix=prefix.rstrip(".")) if recurse else [(prefix.rstrip("."), self)]
        for module_prefix, module in modules:
            for name, parameter in module._parameters.items():
                if parameter is None or (remove_duplicate and id(parameter) in seen):
                    continue
                seen.add(id(parameter))
                yield (module_prefix + "." if module_prefix else "") + name, parameter

    def parameters(self, recurse=True):
        """Yield every :class:`Parameter` (for an optimizer); this module's own only if not ``recurse``."""
        for _, parameter in self.named_parameters(recurse=recurse):
            yield parameter

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` of every parameter: frozen ones gather no gradient; returns self."""
        flag = check_bool("requires_grad", requires_grad)
        for parameter in self.parameters():
            parameter.requires_grad = flag
        return self

    # dtype and device ------------------------------------------------------
    def double(self):
        """Turn every parameter (and gradient) to float64, in place; returns self."""
        return self._to_dtype(np.float64)

    def float(self):
        """Turn every parameter (and gradient) to float32, in place; returns self."""
        return self._to_dtype(np.float32)

    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to("cpu")``, ``to(device="cpu", dtype=...)`` as in PyTorch; returns self.

        Raises
        ------
        ArgumentError
            For a device other than the CPU (fastrnn runs on the CPU only), or an
            unknown argument.
        DTypeError
            For a dtype other than float32 and float64.
        """
        unknown = set(kwargs) - {"device", "dtype", "non_blocking", "copy"}
        if unknown or len(args) > 2:
            raise ArgumentError("to() takes a device and/or a dtype (to('cpu'), to(numpy.float64), "
                                f"to(device='cpu', dtype=...)); got args={args!r}, kwargs={kwargs!r}")
        device, dtype = kwargs.get("device"), kwargs.get("dtype")
        for arg in args:
            if _is_device(arg):
                device = arg
            else:
                dtype = arg
        if device is not None:
            name = str(device)
            if name.split(":")[0] != "cpu":
                raise ArgumentError(f"device must be 'cpu': fastrnn runs on the CPU only; got {name!r}")
        if dtype is not None:
            self._to_dtype(_numpy_dtype(dtype))
        return self

    def cpu(self):
        """Already on the CPU: returns self."""
        return self

    def flatten_parameters(self):
        """A no-op kept for PyTorch code (fastrnn packs weights itself); returns None."""

    def _to_dtype(self, dtype):
        dtype = parameter_dtype(dtype)
        for module in self.modules():
            for parameter in module._parameters.values():
                if parameter is None or parameter.dtype == dtype:
                    continue
                parameter.data = parameter.values.astype(dtype)  # a new array: packed copies repack
                if parameter.grad is not None:
                    parameter.grad = parameter.grad.astype(dtype)
            if "dtype" in module.__dict__:
                object.__setattr__(module, "dtype", dtype)
            module._tape_cleared()
        return self

    def _tape_cleared(self):
        """Forget a pending forward's tape (its arrays have the old dtype)."""
        if hasattr(type(self), "_tape"):
            self._tape = None

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
        for module in self.children():
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
        for module in self.children():
            module._apply_precision_tree(precision)

    def _apply_precision(self, precision):
        """Take ``precision`` (recurrent modules do; others have no products of their own)."""

    # state dicts ---------------------------------------------------------
    def state_dict(self):
        """An ordered ``{name: ndarray}`` copy of every parameter."""
        # a shared (tied) parameter under each of its names, as torch's state_dict
        return OrderedDict((name, p.values.copy()) for name, p in self.named_parameters(remove_duplicate=False))

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
        own = OrderedDict(self.named_parameters(remove_duplicate=False))
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


def _is_device(value):
    """A device argument of ``to``: a str naming one, or a ``torch.device``."""
    if isinstance(value, str):
        return value.split(":")[0] in ("cpu", "cuda", "mps", "xpu", "meta", "hpu", "xla", "mtia")
    return type(value).__name__ == "device"


def _numpy_dtype(dtype):
    """A NumPy dtype from one of NumPy's or a ``torch.dtype``."""
    if type(dtype).__name__ == "dtype" and type(dtype).__module__ == "torch":
        name = str(dtype).replace("torch.", "")
        if name not in ("float32", "float64"):
            raise DTypeError(f"dtype must be float32 or float64; got {dtype}")
        return np.dtype(name)
    return dtype
