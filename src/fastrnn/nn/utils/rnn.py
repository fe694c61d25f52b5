"""Padding and packing variable-length batches, under ``torch.nn.utils.rnn``'s names.

A :class:`PackedSequence` holds the steps of every sequence of a batch, time step
by time step, longest sequences first, with the same four fields as PyTorch's.
The recurrent modules accept one and run it on their ``lengths=`` path (padding
once, not running a packed kernel), returning a :class:`PackedSequence` output
as PyTorch does.
"""

from collections import namedtuple

import numpy as np

from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError

__all__ = ["PackedSequence", "pad_sequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence"]

_Fields = namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])


class PackedSequence(_Fields):
    """A batch of sequences stored step by step, as ``torch.nn.utils.rnn.PackedSequence``.

    Attributes
    ----------
    data : ndarray of shape (N, *)
        Step ``t`` of the ``batch_sizes[t]`` longest sequences, for ``t = 0, 1, ...``
        (``N = sum(batch_sizes)``).
    batch_sizes : ndarray of int64 of shape (T,)
        How many sequences are longer than ``t``, for each step ``t``.
    sorted_indices : ndarray of int64 of shape (B,) or None
        ``sorted_indices[j]``: the batch row of the ``j``-th longest sequence
        (None: the batch was sorted already).
    unsorted_indices : ndarray of int64 of shape (B,) or None
        The inverse permutation of ``sorted_indices``.
    """

    __slots__ = ()

    def __new__(cls, data, batch_sizes, sorted_indices=None, unsorted_indices=None):
        data = np.asarray(data)
        batch_sizes = np.asarray(batch_sizes, dtype=np.int64)
        if batch_sizes.ndim != 1:
            raise ShapeError(f"batch_sizes must be 1-D; got shape {batch_sizes.shape}")
        if data.ndim < 1 or data.shape[0] != batch_sizes.sum():
            raise ShapeError(f"data must have sum(batch_sizes) = {batch_sizes.sum()} rows; got shape {data.shape}")
        if sorted_indices is not None:
            sorted_indices = np.asarray(sorted_indices, dtype=np.int64)
            if unsorted_indices is None:
                unsorted_indices = _inverse(sorted_indices)
        if unsorted_indices is not None:
            unsorted_indices = np.asarray(unsorted_indices, dtype=np.int64)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    @property
    def is_cuda(self):
        return False

    def lengths(self):
        """ndarray of int64 of shape (B,): each sequence's length, in the batch's own order."""
        sizes = self.batch_sizes
        B = int(sizes[0]) if sizes.size else 0
        sorted_lengths = (sizes[None, :] > np.arange(B)[:, None]).sum(axis=1)
        return sorted_lengths if self.unsorted_indices is None else sorted_lengths[self.unsorted_indices]

    def _positions(self):
        """(step, batch row) of every row of ``data``, rows in the batch's own order."""
        sizes = self.batch_sizes
        steps = np.repeat(np.arange(sizes.size), sizes)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        ranks = np.arange(int(sizes.sum())) - np.repeat(starts, sizes)
        rows = ranks if self.sorted_indices is None else self.sorted_indices[ranks]
        return steps, rows

    def to(self, *args, **kwargs):
        """``to(dtype)`` converts ``data``; devices other than the CPU are refused."""
        from fastrnn.nn.module import _is_device, _numpy_dtype

        dtype = kwargs.get("dtype")
        for arg in args:
            if _is_device(arg):
                if str(arg).split(":")[0] != "cpu":
                    raise ArgumentError(f"device must be 'cpu': fastrnn runs on the CPU only; got {arg!r}")
            else:
                dtype = arg
        device = kwargs.get("device")
        if device is not None and str(device).split(":")[0] != "cpu":
            raise ArgumentError(f"device must be 'cpu': fastrnn runs on the CPU only; got {device!r}")
        if dtype is None:
            return self
        return type(self)(self.data.astype(_numpy_dtype(dtype)), self.batch_sizes, self.sorted_indices,
                          self.unsorted_indices)


def _inverse(permutation):
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(permutation.size, dtype=permutation.dtype)
    return inverse


def as_packed_sequence(value):
    """``value`` as a fastrnn :class:`PackedSequence` if it is one (or a torch one); else None.

    Raises
    ------
    ArgumentError
        For a torch PackedSequence whose tensors cannot become NumPy arrays (not on the CPU).
    """
    if isinstance(value, PackedSequence):
        return value
    cls = type(value)
    if cls.__name__ != "PackedSequence" or not cls.__module__.startswith("torch"):
        return None
    try:
        fields = [None if f is None else f.detach().cpu().numpy() for f in value]
    except Exception as error:  # a tensor numpy cannot hold (bf16, a meta tensor ...)
        raise ArgumentError(f"a torch PackedSequence must hold CPU tensors NumPy can represent (float32, "
                            f"float64) to run in fastrnn; converting it failed: {error}") from None
    return PackedSequence(*fields)


def _lengths_array(lengths, B):
    array = np.asarray(lengths.detach().cpu().numpy() if hasattr(lengths, "detach") else lengths)
    if array.dtype.kind not in "iu" or array.ndim != 1:
        raise ArgumentError(f"lengths must be a 1-D sequence of integers; got {lengths!r}")
    if array.shape[0] != B:
        raise ShapeError(f"lengths must have one entry per sequence of the batch ({B}); got {array.shape[0]}")
    return array.astype(np.int64)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack arrays of different lengths into one, padded to the longest.

    Parameters
    ----------
    sequences : sequence of array_like of shape (L_i, *)
        Every trailing shape ``*`` equal.
    batch_first : bool
    padding_value : float
    padding_side : {"right", "left"}

    Returns
    -------
    ndarray of shape (max L_i, B, *), or (B, max L_i, *) if ``batch_first``
    """
    if padding_side not in ("right", "left"):
        raise ArgumentError(f"padding_side must be 'right' or 'left'; got {padding_side!r}")
    arrays = [np.asarray(s) for s in sequences]
    if not arrays:
        raise ArgumentError("sequences must hold at least one array; got none")
    trailing = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[1:] != trailing:
            raise ShapeError(f"every sequence must have shape (L,) + {trailing} like sequences[0]; "
                             f"sequences[{i}] has shape {a.shape}")
    dtype = np.result_type(*arrays)
    T = max(a.shape[0] for a in arrays)
    out = np.full((len(arrays), T) + trailing, padding_value, dtype=dtype)
    for i, a in enumerate(arrays):
        if padding_side == "right":
            out[i, :a.shape[0]] = a
        else:
            out[i, T - a.shape[0]:] = a
    return out if batch_first else np.ascontiguousarray(np.swapaxes(out, 0, 1))


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch.

    Parameters
    ----------
    input : array_like of shape (T, B, *), or (B, T, *) if ``batch_first``
    lengths : array_like of int of shape (B,)
        Each row's length, 1..T.
    batch_first : bool
    enforce_sorted : bool
        Require ``lengths`` in decreasing order (then ``sorted_indices`` is None);
        otherwise the rows are sorted by decreasing length, ties in batch order.

    Returns
    -------
    PackedSequence
    """
    x = np.asarray(input)
    if x.ndim < 2:
        raise ShapeError(f"input must have at least 2 axes (T, B, *); got shape {x.shape}")
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    T, B = x.shape[:2]
    lengths = _lengths_array(lengths, B)
    if B and (lengths.min() < 1 or lengths.max() > T):
        raise ArgumentError(f"lengths must lie in [1, {T}] (the padded length); got {lengths.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ArgumentError("lengths must be sorted in decreasing order with enforce_sorted=True; got "
                                f"{lengths.tolist()}: sort the batch or pass enforce_sorted=False")
        sorted_indices = None
        sorted_lengths = lengths
    else:
        sorted_indices = np.argsort(-lengths, kind="stable").astype(np.int64)
        sorted_lengths = lengths[sorted_indices]
    batch_sizes = (sorted_lengths[None, :] > np.arange(int(sorted_lengths.max(initial=0)))[:, None]).sum(axis=1)
    shell = PackedSequence(np.empty((int(batch_sizes.sum()),) + x.shape[2:], x.dtype), batch_sizes,
                           sorted_indices)
    steps, rows = shell._positions()
    return shell._replace(data=x[steps, rows])


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Pad a packed batch; the inverse of :func:`pack_padded_sequence`.

    Parameters
    ----------
    sequence : PackedSequence
        Or a torch one (converted).
    batch_first : bool
    padding_value : float
    total_length : int, optional
        Pad to this many steps (at least the longest length).

    Returns
    -------
    padded : ndarray of shape (T, B, *), or (B, T, *) if ``batch_first``
        Rows in the batch's original order.
    lengths : ndarray of int64 of shape (B,)
    """
    packed = as_packed_sequence(sequence)
    if packed is None:
        raise ArgumentError(f"sequence must be a PackedSequence; got {type(sequence).__name__}")
    T = packed.batch_sizes.size
    if total_length is not None:
        if isinstance(total_length, bool) or not isinstance(total_length, (int, np.integer)) or total_length < T:
            raise ArgumentError(f"total_length must be an integer at least the longest length {T}; "
                                f"got {total_length!r}")
        T = int(total_length)
    B = int(packed.batch_sizes[0]) if packed.batch_sizes.size else 0
    padded = np.full((T, B) + packed.data.shape[1:], padding_value, dtype=packed.data.dtype)
    steps, rows = packed._positions()
    padded[steps, rows] = packed.data
    if batch_first:
        padded = np.ascontiguousarray(np.swapaxes(padded, 0, 1))
    return padded, packed.lengths()


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of arrays of shape (L_i, *): :func:`pad_sequence` then :func:`pack_padded_sequence`."""
    arrays = [np.asarray(s) for s in sequences]
    lengths = np.array([a.shape[0] if a.ndim else 0 for a in arrays], dtype=np.int64)
    return pack_padded_sequence(pad_sequence(arrays), lengths, enforce_sorted=enforce_sorted)


def packed_like(padded, packed, batch_first=False):
    """The rows of ``padded`` (shape (T, B, *), or (B, T, *)) at ``packed``'s positions, packed alike."""
    steps, rows = packed._positions()
    array = np.asarray(padded)
    values = array[rows, steps] if batch_first else array[steps, rows]
    return PackedSequence(values, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


def check_float_packed(packed, name="input"):
    if packed.data.dtype.kind != "f":
        raise DTypeError(f"{name}.data must be a float array; got dtype {packed.data.dtype}")
