"""Variable-length batches without packing: the index maps a padded batch needs.

A batch of sequences padded to ``T`` steps, with row ``b`` valid for its first
``lengths[b]`` steps (0 to ``T``), runs through the kernels unchanged, padding
included; these maps make the result equal to running every row alone:

* forward direction: steps past a row's end never influence its earlier
  steps, so only the outputs there are filled (zeros, or Keras's "previous
  output") and the final states are those after step ``lengths[b] - 1``, the
  initial ones for an empty row;
* reverse direction: each row is reversed within its own valid prefix
  (padding stays where it is), so the reverse pass starts at the row's last
  valid step; the same map brings its outputs back, because reversing a
  prefix twice is the identity;
* backward: the gradients of the final states enter at step ``lengths[b] - 1``
  instead of the last step (an empty row passes them straight to its initial
  states), so nothing flows through the padding.

A mask with holes (Keras's, where a masked step anywhere leaves the states
unchanged) comes down to the same thing: :class:`MaskedSequences` gathers each
row's valid steps to the front, which gives a right-padded batch of lengths
``mask.sum(0)``, and scatters the outputs back. Everything is time-major:
sequences have shape (T, B, F).

:func:`fastrnn.functional.direction.run_direction` is the one user of these
maps inside fastrnn.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError

__all__ = ["SequenceLengths", "MaskedSequences", "validated_lengths"]

#: How the outputs at steps past a row's end (or at masked steps) are filled.
FILLS = ("zeros", "previous")


class SequenceLengths:
    """Valid lengths of the rows of a time-major padded batch.

    Parameters
    ----------
    lengths : array_like of int of shape (B,), or None
        Valid steps of each row, 0 to ``T``. ``None`` means every row is
        ``T`` steps long.
    T, B : int
        Steps and rows of the padded batch.

    Attributes
    ----------
    full : bool
        Every row is ``T`` steps long (no masking needed).
    lengths : ndarray of int64 of shape (B,)
    empty : ndarray of bool of shape (B,)
        Rows without a valid step: their final states are the initial ones.
    compacts : bool
        Whether :meth:`compact` moves steps (False here: the batch is already
        right-padded).
    """

    compacts = False

    def __init__(self, lengths, T, B):
        self.T, self.B = T, B
        if lengths is None:
            self.lengths = np.full(B, T, np.int64)
        else:
            self.lengths = validated_lengths("lengths", lengths, T, B)
        self.full = bool(np.all(self.lengths == T))
        self.empty = self.lengths == 0
        self._rows = np.arange(B)
        self._last = np.maximum(self.lengths - 1, 0)
        if self.full:
            self._padding = None
            self._reverse_rows = None
        else:
            steps = np.arange(T)[:, None]
            valid = steps < self.lengths[None, :]
            self._padding = ~valid
            reverse_index = np.where(valid, self.lengths[None, :] - 1 - steps, steps)
            # rows of the (T*B, F) view, so one np.take does the gather
            self._reverse_rows = (reverse_index * B + self._rows).ravel()

    @property
    def trivial(self):
        """Nothing to do: every row full and nothing to compact."""
        return self.full and not self.compacts

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

    def at_last_step(self, sequence, initial=None):
        """Row ``b`` of step ``lengths[b] - 1``: a new array of shape (B, F).

        Parameters
        ----------
        sequence : ndarray of shape (T, B, F)
        initial : ndarray of shape (B, F), optional
            What an empty row gives (its state before any step); needed when
            a row is empty.
        """
        if self.T == 0:
            out = np.empty(sequence.shape[1:], sequence.dtype)
        else:
            out = sequence[self._last, self._rows]
        if self.empty.any():
            if initial is None:
                raise ArgumentError("a row of length 0 has no last step: pass its initial state")
            out[self.empty] = initial[self.empty]
        return out

    def add_at_last_step(self, sequence, values):
        """Add ``values`` (B, F) to row ``b`` of step ``lengths[b] - 1``, in place (empty rows: nowhere)."""
        if self.empty.any():
            keep = ~self.empty
            sequence[self._last[keep], self._rows[keep]] += values[keep]
        else:
            sequence[self._last, self._rows] += values

    # masks: a right-padded batch compacts to itself ---------------------------------
    def compact(self, sequence):
        """The valid steps of each row first, zeros after: here ``sequence`` itself."""
        return sequence

    def expand(self, sequence):
        """Adjoint of :meth:`compact` (a gradient back to the caller's steps): here ``sequence``."""
        return sequence

    def _shown(self, fill):
        """For every step of the caller's batch, the compacted step whose output it shows.

        Returns
        -------
        source : ndarray of int of shape (T, B)
        shown : ndarray of bool of shape (T, B)
            False where the output is zero.
        """
        steps = np.arange(self.T)[:, None]
        if fill == "zeros":
            return np.broadcast_to(steps, (self.T, self.B)), steps < self.lengths[None, :]
        previous = np.minimum(steps, self.lengths[None, :] - 1)
        return np.maximum(previous, 0), previous >= 0

    def show(self, y, fill="zeros"):
        """Outputs of the compacted run, at the caller's steps, the others filled.

        Parameters
        ----------
        y : ndarray of shape (T, B, F)
            Outputs of the right-padded (compacted) run, in its step order.
        fill : {"zeros", "previous"}
            What a step past a row's end (or a masked step) shows: zeros, or
            the output of the row's last valid step before it (zeros before
            the first), as Keras does.

        Returns
        -------
        ndarray of shape (T, B, F)
            ``y`` itself when there is nothing to fill, else a new array.
        """
        _check_fill(fill)
        if self.trivial:
            return y
        if fill == "zeros" and not self.compacts:
            out = np.array(y, order="C")
            self.clear_padding(out)
            return out
        source, shown = self._shown(fill)
        out = y[source, self._rows]
        out[~shown] = 0
        return out

    def show_adjoint(self, dy, fill="zeros"):
        """Adjoint of :meth:`show`: gradients of the shown outputs summed per compacted step.

        Parameters
        ----------
        dy : ndarray of shape (T, B, F)
        fill : {"zeros", "previous"}

        Returns
        -------
        ndarray of shape (T, B, F)
            ``dy`` itself when nothing was filled, else a new C-contiguous
            array, zero at the padding.
        """
        _check_fill(fill)
        if self.trivial:
            return dy
        if fill == "zeros" and not self.compacts:
            out = np.array(dy, order="C")
            self.clear_padding(out)
            return out
        T, B, F = dy.shape
        source, shown = self._shown(fill)
        out = np.zeros((T * B, F), dy.dtype)
        np.add.at(out, (source * B + self._rows)[shown], dy[shown])
        return out.reshape(T, B, F)


class MaskedSequences(SequenceLengths):
    """A time-major batch whose valid steps are marked by a mask, with holes anywhere.

    A masked step leaves every state unchanged (Keras's rule), so row ``b``
    behaves as its valid steps run alone: :meth:`compact` gathers them to the
    front, which makes a right-padded batch of lengths ``mask.sum(0)``, and
    :meth:`show` brings the outputs back to the original steps.

    Parameters
    ----------
    mask : array_like of bool of shape (T, B)
        True at valid steps.
    """

    compacts = True

    def __init__(self, mask):
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.dtype != np.bool_:
            raise ShapeError(f"mask must be a bool array of shape (T, B); got dtype {mask.dtype}, "
                             f"shape {mask.shape}")
        T, B = mask.shape
        super().__init__(mask.sum(axis=0), T, B)
        self.mask = mask
        # order[j, b]: the original step of row b's compacted step j
        self._order = np.argsort(~mask, axis=0, kind="stable")
        self._previous = np.cumsum(mask, axis=0) - 1

    def compact(self, sequence):
        """(T, B, F) -> each row's valid steps first, zeros after: a new array."""
        out = sequence[self._order, self._rows]
        self.clear_padding(out)
        return out

    def expand(self, sequence):
        """Adjoint of :meth:`compact`: (T, B, F) in compacted order -> original steps, a new array."""
        compacted = np.array(sequence, copy=True)
        self.clear_padding(compacted)
        out = np.empty_like(compacted)
        out[self._order, self._rows] = compacted
        return out

    def _shown(self, fill):
        if fill == "zeros":
            return np.maximum(self._previous, 0), self.mask
        return np.maximum(self._previous, 0), self._previous >= 0


def _check_fill(fill):
    if fill not in FILLS:
        raise ArgumentError(f"fill must be one of {', '.join(map(repr, FILLS))}; got {fill!r}")


def validated_lengths(name, lengths, T, B):
    """``lengths`` as an int64 array of shape (B,) with values in [0, T].

    Raises
    ------
    DTypeError, ShapeError, ArgumentError
        Naming ``name``, what was expected and what was given.
    """
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and array.size and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise DTypeError(f"{name} must hold integers; got dtype {array.dtype}")
    if array.shape != (B,):
        raise ShapeError(f"{name} must have shape ({B},), one length per batch row; got shape "
                         f"{array.shape}")
    array = array.astype(np.int64)
    if B and (array.min() < 0 or array.max() > T):
        bad = array[(array < 0) | (array > T)]
        raise ArgumentError(f"{name} must lie in [0, T] = [0, {T}]; got {bad.tolist()[:5]}")
    return array
