"""Data preparation as ``keras.utils`` offers it: :func:`pad_sequences` and :func:`to_categorical`.

Both give Keras's results for every input Keras accepts and handles correctly. Where Keras
would silently give a wrong answer -- a negative or fractional class label, which its
indexing wraps or truncates -- these raise :class:`fastrnn.exceptions.ArgumentError` instead.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, ShapeError

__all__ = ["pad_sequences", "to_categorical"]

_PADDING_SIDES = ("pre", "post")


def _side(name, value):
    if value not in _PADDING_SIDES:
        raise ArgumentError(f"{name} must be 'pre' or 'post'; got {value!r}")
    return value


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Sequences of different lengths as one array, cut or padded to ``maxlen`` steps.

    Parameters
    ----------
    sequences : sequence of array_like
        ``N`` sequences; each of shape (L_i,) or (L_i, ...), the trailing shape the same for all.
    maxlen : int, optional
        The length of the result; by default the longest sequence's.
    dtype : str or numpy dtype, default "int32"
        The result's dtype (``object`` or a string dtype for text).
    padding : {"pre", "post"}
        Pad before (``"pre"``) or after each sequence.
    truncating : {"pre", "post"}
        Drop the first (``"pre"``) or the last steps of a sequence longer than ``maxlen``.
    value : scalar, default 0.0
        The padding value (a string only with an object or string ``dtype``).

    Returns
    -------
    ndarray of shape (N, maxlen, ...)

    Raises
    ------
    ArgumentError
        For ``padding`` or ``truncating`` not "pre"/"post", a negative ``maxlen``, a string
        ``value`` with a numeric ``dtype``, or ``sequences`` that is not a sequence.
    ShapeError
        For sequences whose trailing shapes differ.
    """
    _side("padding", padding)
    _side("truncating", truncating)
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise ArgumentError(f"sequences must be a list of sequences; got {type(sequences).__name__}")
    lengths = []
    sample_shape = ()
    found_shape = False
    for i, sequence in enumerate(sequences):
        if not hasattr(sequence, "__len__"):
            raise ArgumentError(f"sequences[{i}] must be a sequence (list or array); got "
                                f"{type(sequence).__name__}")
        lengths.append(len(sequence))
        if not found_shape and len(sequence):
            sample_shape = np.asarray(sequence).shape[1:]
            found_shape = True
    if maxlen is None:
        maxlen = max(lengths, default=0)
    elif isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise ArgumentError(f"maxlen must be None or a non-negative int; got {maxlen!r}")
    dtype = np.dtype(dtype)
    text_dtype = dtype.kind in ("U", "S")
    if isinstance(value, str) and dtype != object and not text_dtype:
        raise ArgumentError(f"value {value!r} is a string, but dtype is {dtype}: pass dtype=object "
                            "(or a string dtype) to pad text")
    out = np.full((len(lengths), int(maxlen)) + sample_shape, value, dtype=dtype)
    if maxlen == 0:
        return out
    for i, sequence in enumerate(sequences):
        if not len(sequence):
            continue
        kept = sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != sample_shape:
            raise ShapeError(f"sequences[{i}] has steps of shape {kept.shape[1:]}; the first "
                             f"non-empty sequence's are {sample_shape}: every step must have one shape")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def to_categorical(x, num_classes=None):
    """Class labels as one-hot rows.

    Parameters
    ----------
    x : array_like of int of shape S
        Labels from 0 to ``num_classes - 1``; a trailing axis of length 1 is dropped (labels
        of shape (N, 1) give (N, num_classes)), as Keras does.
    num_classes : int, optional
        By default the largest label plus one.

    Returns
    -------
    ndarray of float64 of shape S + (num_classes,)

    Raises
    ------
    ArgumentError
        For labels that are negative, not whole numbers, or not below ``num_classes``, an
        empty ``x`` without ``num_classes``, or a ``num_classes`` that is not a positive int.
    """
    labels = np.asarray(x)
    if labels.dtype.kind not in "iufb":
        raise ArgumentError(f"x must hold integer class labels; got dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.floor(labels))):
        raise ArgumentError("x must hold whole-number class labels; got fractional or non-finite values")
    labels = labels.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is None or num_classes == 0:
        if labels.size == 0:
            raise ArgumentError("x is empty: pass num_classes")
        num_classes = int(labels.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise ArgumentError(f"num_classes must be a positive int; got {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ArgumentError(f"x holds label {bad}, outside 0..{num_classes - 1} "
                            f"(num_classes={num_classes})")
    out = np.zeros((labels.size, int(num_classes)))
    out[np.arange(labels.size), labels] = 1
    return out.reshape(shape + (int(num_classes),))
