"""Containers of modules (:class:`Sequential`, :class:`ModuleList`, :class:`ModuleDict`) and the
adapters that put a recurrent module in a :class:`Sequential` (:class:`TakeOutput`, :class:`LastStep`).

Sub-modules are named as in PyTorch (``"0"``, ``"1"``, ... or the dict's keys), so
``state_dict`` keys match ``torch.nn``'s (``0.weight``, ``layers.1.bias``) and a torch
model's state dict loads.
"""

from collections import OrderedDict

import numpy as np

from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.nn.blocks import TapedModule
from fastrnn.nn.module import Module
from fastrnn.nn.utils.rnn import PackedSequence, as_packed_sequence

__all__ = ["Sequential", "ModuleList", "ModuleDict", "TakeOutput", "LastStep"]


def backward_of(module, grad):
    """Call ``module.backward`` with ``grad`` shaped like the module's output.

    A tuple gradient (of a recurrent module's ``(output, h_n)`` or ``(output, (h_n, c_n))``)
    is spread over the backward's arguments ``(d_output, d_h_n, d_c_n)``.
    """
    if isinstance(grad, tuple) and not isinstance(grad, PackedSequence):
        flat = []
        for part in grad:
            if isinstance(part, tuple) and not isinstance(part, PackedSequence):
                flat.extend(part)
            else:
                flat.append(part)
        return module.backward(*flat)
    return module.backward(grad)


def _index(name, index, size):
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -size <= index < size:
        raise IndexError(f"{name} index {index!r} is out of range for {size} module(s)")
    return int(index) % size


def _container_repr(self):
    """``Name(\n  (key): module\n ...)``, as torch prints its containers."""
    lines = [f"  ({name}): {module!r}" for name, module in self._modules.items()]
    name = type(self).__name__
    return f"{name}(\n" + "\n".join(lines) + "\n)" if lines else f"{name}()"


class Sequential(Module):
    """Modules run one after the other: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Parameters
    ----------
    *modules : Module
        Named ``"0"``, ``"1"``, ...; or one ``OrderedDict`` of names to modules.

    Notes
    -----
    :meth:`backward` calls each module's ``backward`` in reverse order, passing on the
    gradient each returns. A recurrent module returns ``(output, h_n)``: follow it by
    :class:`TakeOutput` or :class:`LastStep`, whose gradients go back as
    ``(d_output, None)``.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[_index("Sequential", index, len(self))]

    def __setitem__(self, index, module):
        name = list(self._modules)[_index("Sequential", index, len(self))]
        self.add_module(name, module)

    def __delitem__(self, index):
        names = list(self._modules)
        chosen = names[index] if isinstance(index, slice) else [names[_index("Sequential", index, len(self))]]
        for name in chosen:
            delattr(self, name)
        # renumber, as PyTorch does
        modules = list(self._modules.values())
        for name in list(self._modules):
            delattr(self, name)
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def append(self, module):
        """Add ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def forward(self, input):
        for module in self:
            input = module(input)
        return input

    def backward(self, grad_output):
        """Backpropagate through every module in reverse; returns the gradient of the input
        (None after an :class:`~fastrnn.nn.Embedding`, whose integer input has none)."""
        grad = grad_output
        for module in reversed(list(self)):
            grad = backward_of(module, grad)
        return grad

    __repr__ = _container_repr


class ModuleList(Module):
    """A list of modules whose parameters are named ``"0.weight"``, ``"1.bias"``, ...

    Parameters
    ----------
    modules : iterable of Module, optional
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return list(self._modules.values())[_index("ModuleList", index, len(self))]

    def __setitem__(self, index, module):
        self.add_module(str(_index("ModuleList", index, len(self))), module)

    def __delitem__(self, index):
        modules = list(self._modules.values())
        del modules[index if isinstance(index, slice) else _index("ModuleList", index, len(self))]
        self._renumber(modules)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        if isinstance(modules, (str, bytes)) or not hasattr(modules, "__iter__"):
            raise ArgumentError(f"ModuleList.extend takes an iterable of modules; got {type(modules).__name__}")
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._renumber(modules)

    def _renumber(self, modules):
        """Hold ``modules`` as entries 0, 1, ... (what a removal or an insertion leaves)."""
        for name in list(self._modules):
            delattr(self, name)
        self.extend(modules)

    __repr__ = _container_repr


class ModuleDict(Module):
    """A dict of modules whose parameters are named ``"<key>.weight"``, in insertion order.

    Parameters
    ----------
    modules : mapping or iterable of (str, Module) pairs, optional
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        delattr(self, key)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        module = self._modules[key]
        delattr(self, key)
        return module

    def clear(self):
        for key in list(self._modules):
            delattr(self, key)

    def update(self, modules):
        pairs = modules.items() if hasattr(modules, "items") else modules
        for key, module in pairs:
            self.add_module(key, module)

    __repr__ = _container_repr


class TakeOutput(TapedModule):
    """Keep the ``output`` of a recurrent module's ``(output, h_n)``, as ``output, _ = lstm(x)``.

    Anything that is not a tuple passes through. In :meth:`backward` the gradient goes
    back as ``(d_output, None)`` (no gradient of ``h_n``).
    """

    def forward(self, input):
        was_tuple = isinstance(input, tuple) and not isinstance(input, PackedSequence)
        self._keep(was_tuple)
        return input[0] if was_tuple else input

    def backward(self, grad_output):
        was_tuple = self._take_tape()
        return (grad_output, None) if was_tuple else grad_output


class LastStep(TapedModule):
    """The last valid step of each sequence of a recurrent module's output, as ``output[-1]``
    (``output[:, -1]`` with ``batch_first``) on full sequences.

    Parameters
    ----------
    batch_first : bool
        The layout of the output it takes, as the recurrent module's.

    Notes
    -----
    ``forward(input, lengths=None)`` takes ``(output, h_n)`` or ``output`` alone: an array
    of shape (T, B, F) ((B, T, F) with ``batch_first``), or a PackedSequence (each
    sequence's own last step, in the batch's original order). With ``lengths``, row
    ``b`` gives step ``lengths[b] - 1`` (zeros for a row of length 0). Returns an array
    of shape (B, F). For a bidirectional module this is what ``output[-1]`` is: the
    forward direction after the whole sequence, the reverse direction after one step.
    """

    def __init__(self, batch_first=False):
        super().__init__()
        self.batch_first = check_bool("batch_first", batch_first)

    def forward(self, input, lengths=None):
        was_tuple = isinstance(input, tuple) and not isinstance(input, PackedSequence)
        output = input[0] if was_tuple else input
        packed = as_packed_sequence(output)
        if packed is not None:
            if lengths is not None:
                raise ArgumentError("lengths must be None with a PackedSequence: its batch_sizes give them")
            steps, rows = packed._positions()
            row_lengths = packed.lengths()
            B = row_lengths.size
            # the data row of each sequence's last step
            last = np.full(B, -1, dtype=np.int64)
            is_last = steps == row_lengths[rows] - 1
            last[rows[is_last]] = np.flatnonzero(is_last)
            self._keep((was_tuple, packed, last))
            return packed.data[last]
        array = np.asarray(output)
        if array.ndim != 3:
            layout = "(B, T, F)" if self.batch_first else "(T, B, F)"
            raise ShapeError(f"LastStep takes an output of shape {layout} or a PackedSequence; got shape {array.shape}")
        time_major = array.swapaxes(0, 1) if self.batch_first else array
        T, B = time_major.shape[:2]
        if lengths is None:
            result = time_major[T - 1].copy()
            index = np.full(B, T - 1, dtype=np.int64)
        else:
            index = np.asarray(lengths)
            if index.dtype.kind not in "iu" or index.shape != (B,) or (B and (index.min() < 0 or index.max() > T)):
                raise ArgumentError(f"lengths must be {B} integers in [0, {T}]; got {lengths!r}")
            index = index.astype(np.int64) - 1
            result = time_major[np.maximum(index, 0), np.arange(B)]
            result[index < 0] = 0
        self._keep((was_tuple, array.shape, index))
        return result

    def backward(self, grad_output):
        was_tuple, source, index = self._take_tape()
        d = np.asarray(grad_output)
        if isinstance(source, PackedSequence):
            if d.shape != (index.size,) + source.data.shape[1:]:
                raise ShapeError(f"grad_output must have shape {(index.size,) + source.data.shape[1:]}; "
                                 f"got shape {d.shape}")
            data = np.zeros(source.data.shape, d.dtype)
            data[index] = d
            grad = source._replace(data=data)
        else:
            shape = source
            B = index.size
            if d.shape != (B, shape[-1]):
                raise ShapeError(f"grad_output must have shape {(B, shape[-1])}; got shape {d.shape}")
            grad = np.zeros(shape, d.dtype)
            time_major = grad.swapaxes(0, 1) if self.batch_first else grad
            valid = index >= 0
            time_major[index[valid], np.flatnonzero(valid)] = d[valid]
        return (grad, None) if was_tuple else grad

    def extra_repr(self):
        return f"batch_first={self.batch_first}"
