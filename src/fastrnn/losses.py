"""Loss functions on NumPy arrays that return the loss and, on request, its gradient with respect to the input.

Each loss is a small object used as ``loss = criterion(input, target)`` followed
by ``grad = criterion.backward()``: the call remembers what the gradient needs,
and ``backward`` returns d loss / d input as an array shaped like ``input``.
Values, gradients, reductions and argument meanings follow ``torch.nn``'s
``MSELoss``, ``BCEWithLogitsLoss`` and ``CrossEntropyLoss`` (class-index
targets), so losses can be checked against PyTorch.

Formulas (per element, before the reduction):

MSELoss
    ``l = (x - y)**2``.
BCEWithLogitsLoss
    ``l = w * (pos_weight * y * softplus(-x) + (1 - y) * softplus(x))``,
    which is ``-w * (pos_weight * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x)))``
    computed without overflow; ``dl/dx = w * (sigmoid(x) * (pos_weight * y + 1 - y) - pos_weight * y)``.
CrossEntropyLoss
    with ``log p = log_softmax(x)`` over the classes, target class ``k``,
    class weights ``w`` and label smoothing ``e`` over ``C`` classes:
    ``l = (1 - e) * (-w[k] * log p[k]) + e / C * (-sum_c w[c] * log p[c])``;
    ``"mean"`` divides the sum by ``sum of w[k]`` over the targets that are not
    ``ignore_index`` (ignored targets contribute nothing).
"""

import numpy as np

from fastrnn._validation import as_float_array, check_choice, compute_dtype
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError

__all__ = ["MSELoss", "BCEWithLogitsLoss", "CrossEntropyLoss"]

_REDUCTIONS = ("none", "mean", "sum")


def _softplus(x):
    """``log(1 + exp(x))`` without overflow for large ``|x|``."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow: ``exp`` only ever sees non-positive numbers."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _input_array(value):
    """The prediction as a float32/float64 array (float16 is computed in float32)."""
    array = as_float_array("input", value)
    dtype = compute_dtype([("input", array)])
    return np.asarray(array, dtype=dtype)


def _real_array(name, value, dtype):
    """A target or weight converted to ``dtype``; it must hold real numbers (bool, int or float)."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DTypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


class _Loss:
    """What every loss shares: the reduction, the memory of the last call and ``backward``.

    Subclasses compute, in ``_forward``, the unreduced loss and the gradient of
    each of its elements with respect to ``input`` (``elementwise_grad``); the
    reduction and the chain rule through it are done here.
    """

    def __init__(self, reduction):
        check_choice("reduction", reduction, _REDUCTIONS)
        self.reduction = reduction
        self._saved = None

    def __call__(self, input, target):
        """Compute the loss and remember what :meth:`backward` needs.

        Returns
        -------
        float, or ndarray of the shape of the unreduced loss
            A Python float for ``reduction="mean"`` or ``"sum"``; the
            per-element losses for ``reduction="none"``.
        """
        self._saved = None  # a failed call must not leave the previous call's gradient behind
        losses, grad, divisor, input_shape = self._forward(input, target)
        if self.reduction == "none":
            result = losses
        else:
            total = losses.sum(dtype=losses.dtype)
            if self.reduction == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 is NaN, as in PyTorch
                    total = total / divisor
            result = float(total)
        self._saved = (grad, divisor, losses.shape, input_shape)
        return result

    def forward(self, input, target):
        """Same as calling the loss."""
        return self(input, target)

    def backward(self, grad_output=None):
        """The gradient of the (reduced) loss of the last call with respect to its ``input``.

        Parameters
        ----------
        grad_output : float, or ndarray of the shape of the unreduced loss, optional
            The gradient of whatever comes after the loss with respect to it.
            For ``reduction="mean"`` or ``"sum"`` a scalar, 1.0 by default;
            for ``reduction="none"`` it is required and has the shape of the
            loss array the call returned.

        Returns
        -------
        ndarray of the shape of ``input``
            In the dtype the loss was computed in.
        """
        if self._saved is None:
            raise ArgumentError(
                f"{type(self).__name__}.backward() was called before the loss was computed; "
                "call the loss on (input, target) first"
            )
        grad, divisor, loss_shape, input_shape = self._saved
        dtype = grad.dtype
        if self.reduction == "none":
            if grad_output is None:
                raise ArgumentError(
                    "backward() of a loss with reduction='none' needs grad_output, an array of the "
                    f"loss's shape {loss_shape}; got None"
                )
            scale = _real_array("grad_output", grad_output, dtype)
            if scale.shape != loss_shape:
                raise ShapeError(
                    f"grad_output must have the shape of the unreduced loss {loss_shape}; got shape {scale.shape}"
                )
        else:
            scale = _real_array("grad_output", 1.0 if grad_output is None else grad_output, dtype)
            if scale.size != 1:
                raise ShapeError(
                    f"grad_output of a loss with reduction={self.reduction!r} must be a scalar; "
                    f"got shape {scale.shape}"
                )
            scale = scale.reshape(())
            if self.reduction == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = scale / divisor
        return self._chain(grad, scale, input_shape)

    def _chain(self, grad, scale, input_shape):
        """``grad`` (d loss_i / d input) times ``scale`` (d out / d loss_i), shaped like the input."""
        return (grad * scale).astype(grad.dtype, copy=False).reshape(input_shape)

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(_Loss):
    """Mean squared error, ``(input - target)**2`` reduced.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over every element, ``"sum"`` adds them,
        ``"none"`` returns the per-element losses.

    Notes
    -----
    ``input`` and ``target`` are ndarrays of the same shape (any shape);
    ``target`` is converted to the dtype of ``input``.
    """

    def __init__(self, reduction="mean"):
        super().__init__(reduction)

    def _forward(self, input, target):
        x = _input_array(input)
        y = _real_array("target", target, x.dtype)
        if y.shape != x.shape:
            raise ShapeError(f"target must have the shape of input {x.shape}; got shape {y.shape}")
        diff = x - y
        return diff * diff, 2 * diff, x.size, x.shape


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (a sigmoid followed by the cross-entropy, computed stably).

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over every element, ``"sum"`` adds them,
        ``"none"`` returns the per-element losses.
    pos_weight : array_like, optional
        Weight of the positive term, broadcast against ``target`` along its
        trailing axes (typically of shape ``(C,)`` for ``C`` labels).
    weight : array_like, optional
        Weight of each element's loss, broadcastable to the shape of ``input``.

    Notes
    -----
    ``input`` holds logits of any shape; ``target`` (probabilities in [0, 1])
    has the same shape.
    """

    def __init__(self, reduction="mean", pos_weight=None, weight=None):
        super().__init__(reduction)
        self.pos_weight = None if pos_weight is None else _real_array("pos_weight", pos_weight, np.float64)
        self.weight = None if weight is None else _real_array("weight", weight, np.float64)

    def _broadcast(self, name, array, shape, dtype):
        """``array`` in ``dtype``, broadcast to ``shape``, or a ShapeError naming it."""
        try:
            return np.broadcast_to(array.astype(dtype, copy=False), shape)
        except ValueError:
            raise ShapeError(f"{name} of shape {array.shape} does not broadcast to the input's shape {shape}") from None

    def _forward(self, input, target):
        x = _input_array(input)
        y = _real_array("target", target, x.dtype)
        if y.shape != x.shape:
            raise ShapeError(f"target must have the shape of input {x.shape}; got shape {y.shape}")
        if self.pos_weight is None:
            losses = y * _softplus(-x) + (1 - y) * _softplus(x)
            grad = _sigmoid(x) - y
        else:
            pw = self._broadcast("pos_weight", self.pos_weight, x.shape, x.dtype)
            losses = pw * y * _softplus(-x) + (1 - y) * _softplus(x)
            grad = _sigmoid(x) * (pw * y + 1 - y) - pw * y
        if self.weight is not None:
            w = self._broadcast("weight", self.weight, x.shape, x.dtype)
            losses = w * losses
            grad = w * grad
        return losses, grad, x.size, x.shape


class CrossEntropyLoss(_Loss):
    """Cross-entropy between logits and class-index targets, with optional class weights and label smoothing.

    Parameters
    ----------
    weight : array_like of shape (C,), optional
        The weight of each class.
    ignore_index : int, default -100
        Targets equal to it contribute neither loss nor gradient, and do not
        count in the ``"mean"`` denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides the sum by the total weight of the non-ignored
        targets (their number without ``weight``; NaN when all are ignored),
        ``"sum"`` adds the losses, ``"none"`` returns one loss per target.
    label_smoothing : float, default 0.0
        In [0, 1]: the target distribution is ``1 - label_smoothing`` on the
        target class plus ``label_smoothing / C`` on every class.

    Notes
    -----
    Shapes: ``input`` is an ndarray of shape (N, C), (N, C, d1, ..., dk) or
    (C,) (one unbatched sample); ``target`` is an integer ndarray of shape
    (N,), (N, d1, ..., dk) or () respectively, each entry in ``[0, C)`` or
    equal to ``ignore_index``. The unreduced loss has the shape of ``target``.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ArgumentError(f"ignore_index must be an integer; got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float, np.floating, np.integer)):
            raise ArgumentError(f"label_smoothing must be a number in [0, 1]; got {label_smoothing!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ArgumentError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        if weight is not None:
            weight = _real_array("weight", weight, np.float64)
            if weight.ndim != 1:
                raise ShapeError(f"weight must be 1-dimensional with shape (C,); got shape {weight.shape}")
        self.weight = weight

    def _forward(self, input, target):
        x = _input_array(input)
        t = np.asarray(target)
        if x.ndim == 0:
            raise ShapeError("input must have shape (C,), (N, C) or (N, C, d1, ...); got a 0-dimensional array")
        if t.dtype.kind not in "iu":
            raise DTypeError(f"target must hold integer class indices; got dtype {t.dtype}")
        n_classes = x.shape[0] if x.ndim == 1 else x.shape[1]
        expected = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
        if t.shape != expected:
            layout = "()" if x.ndim == 1 else "(N, d1, ...) for input (N, C, d1, ...)"
            raise ShapeError(
                f"target must have shape {expected} ({layout}, input has shape {x.shape}); got shape {t.shape}"
            )
        if self.weight is not None and self.weight.shape != (n_classes,):
            raise ShapeError(
                f"weight must have shape ({n_classes},) (one per class of input {x.shape}); "
                f"got shape {self.weight.shape}"
            )
        # Classes on the last axis, one row per target: (M, C) and (M,).
        logits = np.moveaxis(x.reshape((1,) + x.shape) if x.ndim == 1 else x, 1, -1).reshape(-1, n_classes)
        labels = t.reshape(-1).astype(np.int64)
        kept = labels != self.ignore_index
        bad = kept & ((labels < 0) | (labels >= n_classes))
        if bad.any():
            raise ArgumentError(
                f"target holds class index {labels[bad][0]}, outside the valid range [0, {n_classes - 1}] "
                f"for input with {n_classes} classes (ignore_index={self.ignore_index} is also allowed)"
            )
        safe = np.where(kept, labels, 0)  # a valid index for the gather; the row is masked out below
        rows = np.arange(labels.size)

        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_prob = shifted - log_norm
        prob = np.exp(log_prob)

        w = np.ones(n_classes, x.dtype) if self.weight is None else self.weight.astype(x.dtype)
        target_weight = np.where(kept, w[safe], 0).astype(x.dtype)
        eps = x.dtype.type(self.label_smoothing)
        # The one-hot part: -w[k] log p[k], gradient w[k] (p - onehot(k)).
        losses = -target_weight * log_prob[rows, safe]
        grad = prob * target_weight[:, None]
        grad[rows, safe] -= target_weight
        if self.label_smoothing > 0:
            # The uniform part: -sum_c w[c] log p[c], gradient p * sum(w) - w.
            smooth = -(log_prob * w).sum(axis=1)
            smooth_grad = prob * w.sum() - w
            scale = np.where(kept, eps / n_classes, 0).astype(x.dtype)
            losses = (1 - eps) * losses + scale * smooth
            grad = (1 - eps) * grad + scale[:, None] * smooth_grad
        divisor = target_weight.sum(dtype=x.dtype)
        self._kept = kept
        return losses.reshape(t.shape), grad, divisor, x.shape

    def _chain(self, grad, scale, input_shape):
        # grad is (M, C) with classes last; scale is a scalar or the (target-shaped) loss gradient.
        scale = np.asarray(scale)
        with np.errstate(invalid="ignore"):  # scale is inf when every target is ignored ("mean")
            rows = grad * (scale.reshape(-1, 1) if scale.ndim else scale)
        rows = rows.astype(grad.dtype, copy=False)
        # Ignored targets get exactly zero gradient, even when the mean's divisor is 0 (as in PyTorch).
        rows[~self._kept] = 0
        if len(input_shape) == 1:
            return rows.reshape(input_shape)
        moved = (input_shape[0],) + input_shape[2:] + (input_shape[1],)
        return np.ascontiguousarray(np.moveaxis(rows.reshape(moved), -1, 1))

    def __repr__(self):
        return (f"CrossEntropyLoss(weight={'None' if self.weight is None else 'array'}, "
                f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing})")
