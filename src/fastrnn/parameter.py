"""A trainable array and its gradient, shared by both facades (fastrnn.nn, fastrnn.keras) and the optimizers."""

import threading

import numpy as np

from fastrnn.exceptions import DTypeError, NonFiniteError, ShapeError

# backward passes of a module shared by threads add into the same .grad arrays
_accumulate_lock = threading.Lock()


class Parameter:
    """A trainable array of a module, with the gradient that backward passes add into.

    Optimizers update ``data`` in place, so arrays handed out by
    ``named_parameters()`` stay the module's own.

    ``version`` moves whenever ``data`` may have been written: on assigning it
    (the optimizers' ``param.data -= ...``), on loading (``load_state_dict``,
    ``set_weights``) and on every read of ``data`` itself, because the array it
    hands out can be written in place (``p.data[...] = v``, as PyTorch users
    write). The recurrent modules and Keras layers keep their weights packed (for
    ``forward``, ``call`` and ``step``) and pack again when it moved, so no write
    through ``data`` can leave them running on old values. Reading through
    :attr:`values` (a read-only view) does not move it, and keeps the packed
    weights. Only a write through a reference to the array taken earlier needs
    :meth:`mark_changed`.

    Parameters
    ----------
    data : ndarray
        The values; kept as given (not copied).

    Attributes
    ----------
    data : ndarray
    grad : ndarray of the shape of ``data``, or None
        Sum of the gradients of every backward pass since the last
        ``zero_grad()``; ``None`` before the first one, as in PyTorch.
    requires_grad : bool
        When false, :meth:`accumulate` adds nothing (``grad`` stays as it is), so an
        optimizer leaves the parameter alone (``Module.requires_grad_(False)``).
    """

    __slots__ = ("_data", "grad", "_version", "requires_grad")

    def __init__(self, data, requires_grad=True):
        self._version = 0
        self.data = np.asarray(data)
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def data(self):
        """ndarray: the values, writeable; handing them out counts as a write (see the class docstring)."""
        self._version += 1
        return self._data

    @property
    def values(self):
        """ndarray: a read-only view of the values, for reading without a repack."""
        view = self._data.view()
        view.flags.writeable = False
        return view

    @data.setter
    def data(self, value):
        self._data = value
        self._version += 1

    @property
    def version(self):
        """int: bumped by every write fastrnn makes to ``data`` (see the class docstring)."""
        return self._version

    def mark_changed(self):
        """Record that the values changed, so packed copies of them are rebuilt (reading
        :attr:`data` already does; this is for writes through a reference taken earlier)."""
        self._version += 1

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    @property
    def nbytes(self):
        return self._data.nbytes

    def accumulate(self, gradient):
        """Add ``gradient`` into ``grad`` (allocating it on first use).

        Safe from several threads at once: each sum is complete, taken in the order the
        gradients arrive (so the last bits of a float sum may differ from run to run).
        """
        if not self.requires_grad:
            return  # frozen (``requires_grad_(False)``): no gradient, as in PyTorch
        with _accumulate_lock:
            if self.grad is None:
                self.grad = np.array(gradient, dtype=self._data.dtype, copy=True)
            else:
                self.grad += gradient

    # explicit state: protocols 0 and 1 cannot store a __slots__ class without it
    def __getstate__(self):
        return {"data": self._data, "grad": self.grad, "requires_grad": self.requires_grad}

    def __setstate__(self, state):
        self._version = 0
        self.data = state["data"]
        self.grad = state["grad"]
        self.requires_grad = state.get("requires_grad", True)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        return f"Parameter(shape={self._data.shape}, dtype={self._data.dtype})"


def _as_array(value):
    """``value`` as an ndarray; a torch tensor is detached and moved to the CPU first."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        try:
            return value.numpy()
        except TypeError:  # e.g. bfloat16, which NumPy has no dtype for
            raise DTypeError(f"a tensor of dtype {value.dtype}, which NumPy cannot hold") from None
    if isinstance(value, Parameter):
        return value.values
    return np.asarray(value)


def prepare_update(entries, where):
    """Check every new value of an update and convert it, before any parameter is written.

    Both facades' loaders (``nn.Module.load_state_dict``, Keras ``set_weights``
    and the model file reader through it) call this first and
    :func:`apply_update` only when it returns, so an update is all or nothing:
    a bad entry anywhere leaves every parameter as it was.

    Parameters
    ----------
    entries : iterable of (str, Parameter, array_like)
        The name to report, the parameter and its new value (an array, a
        nested list or a torch tensor).
    where : str
        What is being updated, for messages (``"state_dict of LSTM"``).

    Returns
    -------
    list of (Parameter, ndarray)
        Each value converted to its parameter's dtype, ready for
        :func:`apply_update`.

    Raises
    ------
    ShapeError
        Naming every entry whose shape differs from its parameter's.
    DTypeError
        Naming the first entry that is not real floating point (integers,
        booleans, strings, objects and complex numbers are refused: a silent
        cast would change or drop values).
    NonFiniteError
        Naming the first entry holding NaN or infinity, including values that
        overflow the parameter's dtype.
    """
    entries = list(entries)
    arrays = []
    for name, parameter, value in entries:
        try:
            arrays.append(_as_array(value))
        except DTypeError as error:
            raise DTypeError(f"{where}: {name!r} must be a real floating-point array; got {error}") from None
        except (TypeError, ValueError) as error:  # ragged nested lists and the like
            raise DTypeError(f"{where}: {name!r} must be a real floating-point array; got "
                             f"{type(value).__name__} ({error})") from None
    wrong = [f"{name!r}: expected shape {parameter.shape}, got {array.shape}"
             for (name, parameter, _), array in zip(entries, arrays) if array.shape != parameter.shape]
    if wrong:
        raise ShapeError(f"{where}: size mismatch for " + "; ".join(wrong))
    prepared = []
    for (name, parameter, _), array in zip(entries, arrays):
        if array.dtype.kind != "f":
            raise DTypeError(f"{where}: {name!r} must be a real floating-point array "
                             f"(converted to {parameter.dtype}); got dtype {array.dtype}")
        with np.errstate(over="ignore"):
            converted = np.array(array, dtype=parameter.dtype, copy=True)
        if not np.isfinite(converted).all():
            index = tuple(int(i) for i in np.argwhere(~np.isfinite(converted))[0])
            source = "holds" if not np.isfinite(array[index]) else f"overflows {parameter.dtype} with"
            raise NonFiniteError(f"{where}: {name!r} must be finite; it {source} {float(array[index])!r} "
                                 f"at index {index}")
        prepared.append((parameter, converted))
    return prepared


def apply_update(prepared):
    """Write the arrays that :func:`prepare_update` returned into their parameters (in place)."""
    for parameter, array in prepared:
        parameter.data[...] = array
        parameter.mark_changed()
