"""Variable-length batches without packing: the index maps a padded batch needs.

A batch of sequences padded to ``T`` steps, with row ``b`` valid for its first
``lengths[b]`` steps, runs through the kernels unchanged, padding included;
these maps make the result equal to running every row alone:

* forward direction: steps past a row's end never influence its earlier
  steps, so only the outputs there are zeroed and the final state is read at
  step ``lengths[b] - 1``;
* reverse direction: each row is reversed within its own valid prefix
  (padding stays where it is), so the reverse pass starts at the row's last
  valid step; the same map brings its outputs back, because reversing a
  prefix twice is the identity;
* backward: the gradients of the final states enter at step ``lengths[b] - 1``
  instead of the last step, so nothing flows through the padding.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError


class SequenceLengths:
    """Valid lengths of the rows of a time-major padded batch.

    Parameters
    ----------
    lengths : array_like of int of shape (B,), or None
        ``None`` means every row is ``T`` steps long.
    T, B : int
        Steps and rows of the padded batch.

    Attributes
    ----------
    full : bool
        Every row is ``T`` steps long (no masking needed).
    lengths : ndarray of int64 of shape (B,)
    """

    def __init__(self, lengths, T, B):
        self.T, self.B = T, B
        if lengths is None:
            self.lengths = np.full(B, T, np.int64)
        else:
            self.lengths = _validated_lengths(lengths, T, B)
        self.full = bool(np.all(self.lengths == T))
        self._rows = np.arange(B)
        self._last = self.lengths - 1
        if self.full:
            self._padding = None
            self._reverse_rows = None
        else:
            steps = np.arange(T)[:, None]
            valid = steps < self.lengths[None, :]
            self._padding = ~valid
            reverse_index = np.where(valid, self._last[None, :] - steps, steps)
            # rows of the (T*B, F) view, so one np.take does the gather
            self._reverse_rows = (reverse_index * B + self._rows).ravel()

    def reverse(self, sequence):
        """Each row reversed within its valid steps, padding in place: a new array.

        Parameters
        ----------
        sequence : ndarray of shape (T, B, F)

        Returns
        -------
        ndarray of shape (T, B, F), C-contiguous
        """
        if self._reverse_rows is None:
            return np.ascontiguousarray(sequence[::-1])
        T, B, F = sequence.shape
        return np.take(sequence.reshape(T * B, F), self._reverse_rows, axis=0).reshape(T, B, F)

    def clear_padding(self, sequence):
        """Set the padded steps of ``sequence`` (T, B, F) to 0, in place."""
        if self._padding is not None:
            sequence[self._padding] = 0

    def at_last_step(self, sequence):
        """Row ``b`` of step ``lengths[b] - 1``: array of shape (B, F)."""
        return sequence[self._last, self._rows]

    def add_at_last_step(self, sequence, values):
        """Add ``values`` (B, F) to row ``b`` of step ``lengths[b] - 1``, in place."""
        sequence[self._last, self._rows] += values


def _validated_lengths(lengths, T, B):
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and array.size and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise DTypeError(f"lengths must hold integers; got dtype {array.dtype}")
    if array.shape != (B,):
        raise ShapeError(f"lengths must have shape ({B},), one length per batch row; got shape "
                         f"{array.shape}")
    array = array.astype(np.int64)
    if B and (array.min() < 1 or array.max() > T):
        bad = array[(array < 1) | (array > T)]
        raise ArgumentError(f"lengths must lie in [1, T] = [1, {T}]; got {bad.tolist()[:5]}")
    return array

