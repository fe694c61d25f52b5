"""The merge layers of functional models: Concatenate, Add, Subtract, Multiply, Average,
Maximum, Minimum and Dot, with Keras 3's forward rules, masks and configs.

They follow the list contract of :mod:`fastrnn.keras.layers.base`: ``call`` takes a list of
arrays (``mask`` a list with an entry per input, or None), ``backward`` returns the list of
the inputs' gradients.

Keras 3's rules, followed here:

* The elementwise merges accept inputs of different ranks (a lower-rank input gets new axes
  after the batch axis) and broadcast axes of size 1.
* ``Multiply``, ``Maximum`` and ``Minimum`` read the inputs' masks in the forward pass:
  ``Multiply`` takes a masked entry as 1 (and zeroes the output where every mask is off when
  all inputs have one); ``Maximum``/``Minimum`` take at a masked entry the value merged so
  far. ``Add``, ``Subtract`` and ``Average`` ignore the masks' values.
* The output mask of the elementwise merges is the OR of the inputs' masks, None as soon as
  one input has none; ``Concatenate`` takes an input without a mask as all valid (so along
  the feature axis one unmasked input makes every step valid) and along another axis
  concatenates the masks; ``Dot`` gives no mask.
"""

import numpy as np

from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import check_gradient, float_input, require_tape

__all__ = ["Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot"]


def shape_of(x):
    """The shape of an array or of anything with a ``shape`` (a symbolic tensor)."""
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else np.shape(x)


def unbroadcast(gradient, shape):
    """Sum ``gradient`` over the axes along which an array of ``shape`` was broadcast."""
    extra = gradient.ndim - len(shape)
    if extra:
        gradient = gradient.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and gradient.shape[i] != 1)
    return gradient.sum(axis=axes, keepdims=True) if axes else gradient


def _fmt(shape):
    """A shape with its batch axis written as B (None for an unknown size)."""
    return "(B" + "".join(f", {n}" for n in shape) + ")"


class _Merge(Layer):
    """What the merges share: the list of inputs, their shapes, masks and errors.

    A subclass sets ``N_INPUTS`` (None: any number from 1) and ``MASKED_FORWARD`` (whether
    its forward pass reads the masks).
    """

    supports_masking = True
    N_INPUTS = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tape = None

    # shapes ------------------------------------------------------------------------
    def _check_list(self, what, items):
        listed = isinstance(items, (list, tuple))
        if not listed or (what == "input shapes" and items and not isinstance(items[0], (list, tuple))):
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}) takes a list of inputs; "
                                f"got {what} {items!r}")
        count = len(items)
        if self.N_INPUTS is not None and count != self.N_INPUTS:
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}) takes exactly "
                                f"{self.N_INPUTS} inputs; got {count}")
        if count < 1:
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}) takes at least one input; "
                                "got an empty list")
        return [tuple(item) for item in items] if what == "input shapes" else list(items)

    def build(self, input_shape):
        shapes = self._check_list("input shapes", input_shape)
        super().build(shapes)
        self.input_shape = shapes

    def compute_output_shape(self, input_shape):
        shapes = self._check_list("input shapes", input_shape)
        rank = max(len(s) for s in shapes)
        # a lower-rank input gets new axes after the batch axis, then the shapes broadcast
        expanded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
        out = []
        for axis in range(rank):
            sizes = {s[axis] for s in expanded} - {1}
            known = sizes - {None}
            if len(known) > 1:
                raise ShapeError(f"layer {self.name!r} ({type(self).__name__}) cannot merge inputs of "
                                 f"shapes {', '.join(_fmt(s) for s in shapes)}: axis {axis + 1} has sizes "
                                 f"{sorted(known)} (they must be equal or 1)")
            out.append(None if None in sizes else (known.pop() if known else 1))
        return tuple(out)

    # masks ---------------------------------------------------------------------------
    def _masks(self, xs, mask):
        """One entry per input: an ndarray of bool broadcastable to the input, or None."""
        if mask is None:
            return [None] * len(xs)
        if not isinstance(mask, (list, tuple)) or len(mask) != len(xs):
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}): mask must be a list with "
                                f"one entry (or None) per input ({len(xs)}); got {mask!r}")
        masks = []
        for i, (x, m) in enumerate(zip(xs, mask)):
            if m is None:
                masks.append(None)
                continue
            m = np.asarray(m)
            if m.shape != x.shape[:-1]:
                raise ShapeError(f"layer {self.name!r} ({type(self).__name__}): the mask of input {i} must "
                                 f"have the input's shape without its last axis, {x.shape[:-1]}; got "
                                 f"{m.shape}")
            masks.append(m.astype(bool, copy=False)[..., None])
        return masks

    def compute_mask(self, x, mask=None):
        """The OR of the inputs' masks, or None when one of them has none."""
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or (x is not None and len(mask) != len(x)):
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}): mask must be a list with "
                                f"one entry (or None) per input; got {mask!r}")
        if any(m is None for m in mask):
            return None
        out = np.asarray(mask[0], dtype=bool)
        for m in mask[1:]:
            out = out | np.asarray(m, dtype=bool)
        return out

    # the pass ----------------------------------------------------------------------------
    def _inputs(self, x):
        xs = self._check_list("inputs", x)
        xs = [float_input(self, item) for item in xs]
        for i, item in enumerate(xs):
            if item.ndim < 2:
                raise ShapeError(f"layer {self.name!r} ({type(self).__name__}) needs inputs with a batch "
                                 f"axis and at least one more; input {i} has shape {item.shape}")
        batches = {item.shape[0] for item in xs}
        if len(batches) > 1:
            raise ShapeError(f"layer {self.name!r} ({type(self).__name__}) cannot merge inputs of different "
                             f"batch sizes: shapes {', '.join(str(item.shape) for item in xs)}")
        return xs

    def call(self, x, mask=None, training=False):
        """Merge the inputs.

        Parameters
        ----------
        x : list of array_like of shape (B, ...)
        mask : list of (ndarray of bool of shape (B, ...) without the last axis, or None), optional

        Returns
        -------
        ndarray of shape (B, ...), the broadcast shape of the inputs
        """
        xs = self._inputs(x)
        masks = self._masks(xs, mask)
        self.compute_output_shape([item.shape[1:] for item in xs])  # the shape error, naming them
        rank = max(item.ndim for item in xs)
        shapes = [item.shape for item in xs]
        xs = [item.reshape(item.shape[:1] + (1,) * (rank - item.ndim) + item.shape[1:]) for item in xs]
        masks = [None if m is None else m.reshape(xs[i].shape[:-1] + (1,)) for i, m in enumerate(masks)]
        y, tape = self._forward(xs, masks)
        self._tape = (shapes, [item.shape for item in xs], tape, y.shape) if training else None
        return y

    def backward(self, d_output):
        """The gradients of the inputs, a list of ndarrays shaped like them."""
        shapes, expanded, tape, out_shape = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, out_shape)
        grads = self._backward(dy, tape)
        return [unbroadcast(g, e).reshape(s) for g, e, s in zip(grads, expanded, shapes)]

    def _forward(self, xs, masks):
        raise NotImplementedError

    def _backward(self, dy, tape):
        raise NotImplementedError


class Add(_Merge):
    """The sum of the inputs (same shapes, or broadcastable ones).

    Parameters
    ----------
    **kwargs
        ``name``, ``dtype``, ``trainable`` of :class:`Layer`.
    """

    def _forward(self, xs, masks):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y, len(xs)

    def _backward(self, dy, n):
        return [dy] * n


class Subtract(_Merge):
    """The difference ``inputs[0] - inputs[1]`` of exactly two inputs."""

    N_INPUTS = 2

    def _forward(self, xs, masks):
        return xs[0] - xs[1], None

    def _backward(self, dy, tape):
        return [dy, -dy]


class Average(_Merge):
    """The mean of the inputs."""

    def _forward(self, xs, masks):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y / self.dtype.type(len(xs)), len(xs)

    def _backward(self, dy, n):
        return [dy / self.dtype.type(n)] * n


class Multiply(_Merge):
    """The elementwise product of the inputs.

    As in Keras 3, a masked entry of an input counts as 1, and when every input has a mask
    the output is zero where all of them are off.
    """

    def _forward(self, xs, masks):
        one = self.dtype.type(1)
        factors = [x if m is None else np.where(m, x, one) for x, m in zip(xs, masks)]
        partial = [factors[0]]
        for f in factors[1:]:
            partial.append(partial[-1] * f)
        y = partial[-1]
        keep = None
        if all(m is not None for m in masks):
            keep = masks[0]
            for m in masks[1:]:
                keep = keep | m
            y = np.where(keep, y, self.dtype.type(0))
        return y, (factors, partial, masks, keep)

    def _backward(self, dy, tape):
        factors, partial, masks, keep = tape
        g = dy if keep is None else np.where(keep, dy, 0)
        grads = [None] * len(factors)
        # the product's chain, last factor first: d(p * f) gives p to f's gradient, f to p's
        for k in range(len(factors) - 1, 0, -1):
            grads[k] = g * partial[k - 1]
            g = g * factors[k]
        grads[0] = g
        return [gr if m is None else np.where(m, gr, 0) for gr, m in zip(grads, masks)]


class _Extremum(_Merge):
    """Maximum and Minimum: Keras 3's merge of masked inputs, with the source of every entry
    recorded so that the gradient goes where TensorFlow sends it (a tie to the earlier input)."""

    def _forward(self, xs, masks):
        out, source, out_mask = xs[0], np.zeros(xs[0].shape, np.intp), masks[0]
        for i in range(1, len(xs)):
            x, m = xs[i], masks[i]
            x_source = np.full(x.shape, i, np.intp)
            if m is not None:
                x, x_source = np.where(m, x, out), np.where(m, x_source, source)
            if out_mask is not None:
                out, source = np.where(out_mask, out, x), np.where(out_mask, source, x_source)
            out_mask = out_mask | m if (m is not None and out_mask is not None) else None
            take = self._keeps(out, x)
            out, source = np.where(take, out, x), np.where(take, source, x_source)
        return out, (source, len(xs))

    def _backward(self, dy, tape):
        source, n = tape
        return [np.where(source == i, dy, 0) for i in range(n)]


class Maximum(_Extremum):
    """The elementwise maximum of the inputs; at an entry masked in an input, that input is
    left out (Keras 3)."""

    @staticmethod
    def _keeps(a, b):
        return a >= b


class Minimum(_Extremum):
    """The elementwise minimum of the inputs; masked entries are left out as for Maximum."""

    @staticmethod
    def _keeps(a, b):
        return a <= b


class Concatenate(_Merge):
    """Join the inputs along ``axis``; their other axes must match.

    Parameters
    ----------
    axis : int
        Counted with the batch axis, as in Keras: ``-1`` (default) the features, ``1`` the
        steps of (B, T, D) inputs. The batch axis cannot be joined.
    **kwargs
        As for :class:`Layer`.
    """

    def __init__(self, axis=-1, **kwargs):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ArgumentError(f"Concatenate: axis must be an int; got {axis!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _axis(self, rank):
        """The axis in shapes without the batch axis, for inputs of ``rank`` axes besides it."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ArgumentError(f"layer {self.name!r} (Concatenate): axis={self.axis} must name a "
                                f"non-batch axis of inputs with {rank + 1} axes (batch included)")
        return axis - 1

    def compute_output_shape(self, input_shape):
        shapes = self._check_list("input shapes", input_shape)
        ranks = {len(s) for s in shapes}
        bad = len(ranks) > 1
        if not bad:
            axis = self._axis(ranks.pop())
            rest = [s[:axis] + s[axis + 1:] for s in shapes]
            for i in range(len(rest[0])):
                if len({r[i] for r in rest} - {None}) > 1:
                    bad = True
        if bad:
            raise ShapeError(f"layer {self.name!r} (Concatenate) needs inputs of the same shape except "
                             f"along axis {self.axis}; got shapes {', '.join(_fmt(s) for s in shapes)}")
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else int(sum(sizes))
        return tuple(out)

    def call(self, x, mask=None, training=False):
        """Join the inputs.

        Parameters
        ----------
        x : list of array_like of shape (B, ...)
        mask : list or None
            Ignored here (see :meth:`compute_mask`); checked for its length.

        Returns
        -------
        ndarray
        """
        xs = self._inputs(x)
        self._masks(xs, mask)
        self.compute_output_shape([item.shape[1:] for item in xs])
        axis = self._axis(xs[0].ndim - 1) + 1
        y = np.concatenate(xs, axis=axis)
        self._tape = (axis, np.cumsum([item.shape[axis] for item in xs])[:-1], y.shape) if training else None
        return y

    def backward(self, d_output):
        axis, splits, out_shape = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, out_shape)
        return [np.ascontiguousarray(g) for g in np.split(dy, splits, axis=axis)]

    def compute_mask(self, x, mask=None):
        """Keras 3's rule: an input without a mask counts as all valid; the masks, spread over
        their inputs' shapes, are joined along ``axis`` and reduced with OR over the last axis."""
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or len(mask) != len(x):
            raise ArgumentError(f"layer {self.name!r} (Concatenate): mask must be a list with one entry "
                                f"(or None) per input; got {mask!r}")
        if all(m is None for m in mask):
            return None
        spread = []
        for item, m in zip(x, mask):
            shape = shape_of(item)
            if m is None:
                spread.append(np.ones(shape, bool))
            else:
                m = np.asarray(m, dtype=bool)
                spread.append(np.broadcast_to(m[..., None], shape) if m.ndim < len(shape) else m)
        return np.concatenate(spread, axis=self.axis).any(axis=-1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """The dot product of two inputs along an axis of each, sample by sample (Keras's
    ``batch_dot``).

    For (B, T, D) and (B, S, D) with ``axes=2``, the output is (B, T, S) with
    ``out[b, t, s] = sum_d x[b, t, d] * y[b, s, d]``; for two (B, D) inputs it is (B, 1).

    Parameters
    ----------
    axes : int or (int, int)
        The axis of each input to sum over, counted with the batch axis (never 0).
    normalize : bool
        L2-normalise each input along its axis first (then the product is the cosine
        similarity), as Keras: ``x * min(1 / sqrt(sum x**2), 1e7)``.
    **kwargs
        As for :class:`Layer`.
    """

    N_INPUTS = 2
    EPSILON = 1e-7  # Keras's backend.epsilon(), the lower bound of the norm

    def __init__(self, axes, normalize=False, **kwargs):
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                         for a in axes):
                raise ArgumentError(f"Dot: axes must be an int or a pair of ints; got {axes!r}")
            axes = type(axes)(int(a) for a in axes)  # kept a list or a tuple, as Keras's config
        elif isinstance(axes, bool) or not isinstance(axes, (int, np.integer)):
            raise ArgumentError(f"Dot: axes must be an int or a pair of ints; got {axes!r}")
        else:
            axes = int(axes)
        super().__init__(**kwargs)
        self.axes = axes
        self.normalize = check_bool("normalize", normalize)

    def _resolved_axes(self, ranks):
        """The two axes, batch included and non-negative, for inputs of ``ranks`` (batch included)."""
        pair = [self.axes] * 2 if isinstance(self.axes, int) else list(self.axes)
        axes = [a % r if a < 0 else a for a, r in zip(pair, ranks)]
        for a, r in zip(axes, ranks):
            if not 1 <= a < r:
                raise ArgumentError(f"layer {self.name!r} (Dot): axes={self.axes} must name non-batch axes "
                                    f"of the inputs (of {ranks[0]} and {ranks[1]} axes, batch included)")
        return axes

    def compute_output_shape(self, input_shape):
        s1, s2 = self._check_list("input shapes", input_shape)
        a1, a2 = self._resolved_axes([len(s1) + 1, len(s2) + 1])
        if s1[a1 - 1] is not None and s2[a2 - 1] is not None and s1[a1 - 1] != s2[a2 - 1]:
            raise ShapeError(f"layer {self.name!r} (Dot) cannot multiply inputs of shapes {_fmt(s1)} and "
                             f"{_fmt(s2)} along axes {a1} and {a2}: sizes {s1[a1 - 1]} and {s2[a2 - 1]} differ")
        out = list(s1[:a1 - 1] + s1[a1:]) + list(s2[:a2 - 1] + s2[a2:])
        return tuple(out) if out else (1,)

    def compute_mask(self, x, mask=None):
        """None: Dot gives no mask (Keras 3)."""
        return None

    def _normalized(self, x, axis):
        squares = np.sum(x * x, axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            inverse = 1 / np.sqrt(squares)
        limit = self.dtype.type(1 / self.EPSILON)
        free = inverse <= limit  # where the bound is off, the norm's gradient flows (TF's minimum)
        inverse = np.where(free, inverse, limit)
        return x * inverse, (x, inverse, free, axis)

    @staticmethod
    def _normalized_backward(g, cache):
        x, inverse, free, axis = cache
        inner = np.sum(g * x, axis=axis, keepdims=True)
        return g * inverse - np.where(free, x * inner * inverse ** 3, 0)

    def call(self, x, mask=None, training=False):
        """The sample-by-sample dot product.

        Parameters
        ----------
        x : list of two array_like, of shapes (B, ...)

        Returns
        -------
        ndarray of shape :meth:`compute_output_shape` (with the batch axis)
        """
        xs = self._inputs(x)
        self._masks(xs, mask)
        a, b = xs
        out_shape = (a.shape[0],) + self.compute_output_shape([a.shape[1:], b.shape[1:]])
        a1, a2 = self._resolved_axes([a.ndim, b.ndim])
        caches = [None, None]
        if self.normalize:
            a, caches[0] = self._normalized(a, a1)
            b, caches[1] = self._normalized(b, a2)
        # (B, M, K) @ (B, K, N): the summed axis last in a, first after the batch in b
        am = np.moveaxis(a, a1, -1)
        bm = np.moveaxis(b, a2, 1)
        A = am.reshape(a.shape[0], -1, am.shape[-1])
        Bm = bm.reshape(b.shape[0], bm.shape[1], -1)
        y = np.matmul(A, Bm).reshape(out_shape)
        self._tape = (A, Bm, am.shape, bm.shape, (a1, a2), caches, out_shape) if training else None
        return y

    def backward(self, d_output):
        A, Bm, am_shape, bm_shape, (a1, a2), caches, out_shape = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, out_shape).reshape(A.shape[0], A.shape[1], Bm.shape[2])
        dA = np.moveaxis((dy @ Bm.transpose(0, 2, 1)).reshape(am_shape), -1, a1)
        dB = np.moveaxis((A.transpose(0, 2, 1) @ dy).reshape(bm_shape), 1, a2)
        if self.normalize:
            dA = self._normalized_backward(dA, caches[0])
            dB = self._normalized_backward(dB, caches[1])
        return [np.ascontiguousarray(dA), np.ascontiguousarray(dB)]

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}
