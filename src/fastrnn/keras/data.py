"""Where ``fit``, ``evaluate`` and ``predict`` take their batches from.

Arrays (one per model input and output) are cut into batches here, shuffled per epoch
(:class:`ArrayBatches`). Batches made elsewhere come from a generator or iterator, or from a
sequence of batches -- an object with ``len`` and indexing, as Keras's ``PyDataset`` -- each
batch a tuple ``(x, y)`` or ``(x, y, sample_weight)``, or ``x`` alone for ``predict``
(:class:`SourceBatches`).
"""

import math
import warnings

import numpy as np

from fastrnn.exceptions import ArgumentError

__all__ = ["is_batch_source", "split_batch", "ArrayBatches", "SourceBatches"]


def is_batch_source(value):
    """Whether ``value`` gives batches (a generator, an iterator, a PyDataset-like sequence) rather
    than being data itself (an array, a list or dict of arrays, anything with ``__array__``)."""
    if value is None or isinstance(value, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(value, "__array__"):
        return False
    return hasattr(value, "__next__") or (hasattr(value, "__getitem__") and hasattr(value, "__len__"))


def split_batch(batch, what, need_targets=True):
    """``(x, y, sample_weight)`` of one batch: a tuple of 1 to 3 entries, or ``x`` alone."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        x, y, weight = (list(batch) + [None, None])[:3]
    elif isinstance(batch, tuple):
        raise ArgumentError(f"a batch of {what} must be (x, y) or (x, y, sample_weight); got a tuple of {len(batch)}")
    else:
        x, y, weight = batch, None, None
    if need_targets and y is None:
        raise ArgumentError(f"a batch of {what} must be (x, y) or (x, y, sample_weight); got "
                            f"{type(batch).__name__} without targets")
    return x, y, weight


def _rows(arrays, rows):
    return [None if array is None else array[rows] for array in arrays]


class ArrayBatches:
    """Arrays cut into batches of ``batch_size`` rows, in a new random order each epoch when ``shuffle``
    (NumPy's global generator, so ``np.random.seed`` makes it repeatable).

    Parameters
    ----------
    xs, ys : list of ndarray
        One per model input / output, all with the same number of rows.
    weights : list of (ndarray or None)
        Sample weights per output.
    batch_size : int
    shuffle : bool
    """

    def __init__(self, xs, ys, weights, batch_size, shuffle):
        self.xs, self.ys, self.weights = xs, ys, weights
        self.batch_size, self.shuffle = batch_size, shuffle
        self.steps = math.ceil(len(xs[0]) / batch_size)

    def epoch(self):
        """The batches of one epoch: ``(xs, ys, weights)`` lists, already checked."""
        order = np.random.permutation(len(self.xs[0])) if self.shuffle else None
        for step in range(self.steps):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            if order is not None:
                rows = order[rows]
            yield _rows(self.xs, rows), _rows(self.ys, rows), _rows(self.weights, rows)


class SourceBatches:
    """Batches from a generator, an iterator or a sequence of batches.

    Parameters
    ----------
    source : iterator or sequence
    steps : int or None
        Batches per epoch; by default ``len(source)`` for a sequence, and for an iterator as many as
        it gives (an iterator then serves one epoch: later ones find it empty and end training).
    convert : callable
        ``convert(batch) -> (xs, ys, weights)`` checks and converts one batch (the model's rules).
    what : str
        Named in messages (``"training data"``, ``"validation_data"``).
    """

    def __init__(self, source, steps, convert, what):
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ArgumentError(f"the steps of {what} must be a positive integer; got {steps!r}")
        self.source, self.convert, self.what = source, convert, what
        self.sequence = not hasattr(source, "__next__")
        self.steps = int(steps) if steps is not None else (len(source) if self.sequence else None)
        self.exhausted = False
        self._iterator = None if self.sequence else iter(source)

    def epoch(self):
        """The batches of one epoch, converted; a sequence's ``on_epoch_end`` is called after it."""
        if self.sequence:
            for index in range(self.steps):
                yield self.convert(self.source[index % len(self.source)])
            on_epoch_end = getattr(self.source, "on_epoch_end", None)
            if callable(on_epoch_end):
                on_epoch_end()
            return
        count = 0
        while self.steps is None or count < self.steps:
            try:
                batch = next(self._iterator)
            except StopIteration:
                if self.steps is not None or count == 0:
                    self.exhausted = True
                    warnings.warn(f"the {self.what} ran out of batches after {count} in this epoch; training stops "
                                  "(give an iterator that yields steps_per_epoch * epochs batches, or a sequence)",
                                  UserWarning, stacklevel=4)
                return
            count += 1
            yield self.convert(batch)
