"""Keras-semantics losses for fastrnn.keras: the value of a loss and its gradient with respect to the predictions.

Conventions followed (those of Keras 3):

* probabilities are clipped to ``[eps, 1 - eps]`` with ``eps = 1e-7`` before
  any logarithm, and the clip's gradient is zero outside that interval;
* categorical cross-entropy on probabilities first rescales each row to sum to 1;
* a loss is computed per element of ``y_pred.shape[:-1]`` (the last axis is
  the class or feature axis: binary cross-entropy and mean squared error
  average over it, the categorical losses sum over it), then averaged over
  every remaining axis, so a sequence output (B, T, C) is averaged over B and T;
* a mask of shape ``y_pred.shape[:-1]`` (the one a masking layer propagates to
  the model's output) turns that average into the mean over the unmasked
  elements (0 when every element is masked).

The arithmetic is done in the dtype of ``y_pred`` (float32 for a default
model), as Keras does; the gradient has the shape and dtype of ``y_pred``.
"""

import numpy as np

from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError

__all__ = [
    "Loss",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "get",
    "serialize",
]

EPSILON = 1e-7  # Keras's backend.epsilon(), the clip applied to probabilities


def _as_prediction(y_pred):
    """``y_pred`` as a float ndarray with a last (class/feature) axis."""
    array = np.asarray(y_pred)
    if array.dtype.kind != "f":
        if array.dtype.kind not in "iub":
            raise DTypeError(f"predictions must be numeric; got dtype {array.dtype}")
        array = array.astype(np.float64)
    if array.ndim < 1:
        raise ShapeError("predictions need at least one axis (batch, ..., classes); got a scalar")
    return array


def _same_shape_target(y_true, y_pred, loss_name):
    """``y_true`` in ``y_pred``'s dtype and shape; a missing trailing axis of size 1 is added back."""
    target = np.asarray(y_true)
    if target.dtype.kind not in "fiub":
        raise DTypeError(f"{loss_name}: targets must be numeric; got dtype {target.dtype}")
    # Keras accepts y of shape (B,) for predictions (B, 1), and likewise one axis deeper.
    if target.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        target = target[..., None]
    if target.shape != y_pred.shape:
        raise ShapeError(f"{loss_name}: targets must have the predictions' shape {y_pred.shape} "
                         f"(or that shape without its last axis of size 1); got {target.shape}")
    return target.astype(y_pred.dtype, copy=False)


def _difference(y_true, y_pred, loss_name):
    """``y_pred - y_true`` (the target checked and converted as :func:`_same_shape_target` does) and
    C, the size of the averaged last axis, in ``y_pred``'s dtype."""
    difference = y_pred - _same_shape_target(y_true, y_pred, loss_name)
    return difference, y_pred.dtype.type(y_pred.shape[-1])


def broadcast_sample_weight(sample_weight, shape, what="sample_weight"):
    """``sample_weight`` of shape (B,), (B, 1) or ``shape`` as an array that broadcasts to ``shape`` (B, ...)."""
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.ndim == len(shape) + 1 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    if weight.ndim < len(shape) and weight.ndim >= 1:
        weight = weight.reshape(weight.shape + (1,) * (len(shape) - weight.ndim))
    try:
        np.broadcast_to(weight, shape)
    except ValueError:
        raise ShapeError(f"{what} must have shape {tuple(shape[:1])} (one weight per sample) or {tuple(shape)} "
                         f"(one per element); got {np.shape(sample_weight)}") from None
    if weight.ndim != len(shape):
        raise ShapeError(f"{what} must have shape {tuple(shape[:1])} or {tuple(shape)}; "
                         f"got {np.shape(sample_weight)}")
    return weight


def _mean_weights(shape, mask, dtype, sample_weight=None):
    """Weights of the per-element losses of ``shape`` that make their (masked, weighted) mean.

    Returns an ndarray of ``shape``: ``1/N`` everywhere without a mask, else
    ``mask / (number of unmasked elements)`` (all zeros when none is
    unmasked); times the sample weights when given. As in Keras, the divisor
    counts elements, not the sum of the sample weights.
    """
    if mask is None:
        size = int(np.prod(shape, dtype=np.int64))
        weights = np.full(shape, 1.0 / max(size, 1), dtype=dtype)
    else:
        mask = np.asarray(mask)
        if mask.shape != tuple(shape):
            raise ShapeError(f"the output mask must have shape {tuple(shape)} (the predictions' shape "
                             f"without the last axis); got {mask.shape}")
        mask = mask.astype(bool)
        valid = int(mask.sum())
        if valid == 0:
            return np.zeros(shape, dtype=dtype)
        weights = mask.astype(dtype) / dtype.type(valid)
    if sample_weight is not None:
        weights = weights * broadcast_sample_weight(sample_weight, shape).astype(dtype)
    return weights


class Loss:
    """Base class: a per-element loss with its gradient, reduced by a (masked) mean.

    Subclasses implement :meth:`elementwise`.

    Parameters
    ----------
    name : str, optional
        Defaults to the Keras name of the loss (``"binary_crossentropy"``, ...).
    """

    default_name = "loss"

    def __init__(self, name=None):
        self.name = name or self.default_name

    def elementwise(self, y_true, y_pred):
        """Per-element losses and their gradients.

        Parameters
        ----------
        y_true : array_like
            Targets, in the layout the loss documents.
        y_pred : ndarray of shape (B, ..., C)
            Predictions, float.

        Returns
        -------
        values : ndarray of shape (B, ...)
            The loss of every element (the last axis reduced).
        gradient : ndarray of shape (B, ..., C)
            The gradient of each element's loss with respect to its own row of
            ``y_pred``.
        """
        raise NotImplementedError

    def value_and_gradient(self, y_true, y_pred, mask=None, sample_weight=None):
        """The reduced loss and its gradient with respect to ``y_pred``.

        Parameters
        ----------
        y_true : array_like
        y_pred : array_like of shape (B, ..., C)
        mask : array_like of bool of shape (B, ...), optional
            Elements to count (True) and to ignore (False).
        sample_weight : array_like of shape (B,) or (B, ...), optional
            Multiplies each sample's (or element's) loss; the mean still
            divides by the number of (unmasked) elements, as in Keras.

        Returns
        -------
        loss : float
        gradient : ndarray of the shape and dtype of ``y_pred``
        """
        y_pred = _as_prediction(y_pred)
        values, gradient = self.elementwise(y_true, y_pred)
        weights = _mean_weights(values.shape, mask, y_pred.dtype, sample_weight)
        loss = float(np.sum(values * weights, dtype=y_pred.dtype))
        gradient *= weights[..., None]
        return loss, gradient

    def __call__(self, y_true, y_pred, mask=None, sample_weight=None):
        """The reduced loss (a float); see :meth:`value_and_gradient`."""
        return self.value_and_gradient(y_true, y_pred, mask, sample_weight)[0]

    def gradient(self, y_true, y_pred, mask=None, sample_weight=None):
        """The gradient of the reduced loss with respect to ``y_pred``; see :meth:`value_and_gradient`."""
        return self.value_and_gradient(y_true, y_pred, mask, sample_weight)[1]

    def get_config(self):
        """Constructor arguments (JSON-serialisable) that recreate the loss."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, averaged over the last axis: ``-mean(y log p + (1-y) log(1-p))``.

    Parameters
    ----------
    from_logits : bool, default False
        Whether ``y_pred`` holds logits (computed stably as
        ``max(z, 0) - z y + log(1 + exp(-|z|))``) instead of probabilities.
    label_smoothing : float in [0, 1], default 0
        Targets become ``y (1 - s) + s / 2``.
    name : str, optional

    Notes
    -----
    ``y_true`` has the shape of ``y_pred`` (B, ..., C), or (B, ...) when C is 1.
    """

    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits = check_bool("from_logits", from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def elementwise(self, y_true, y_pred):
        y = _same_shape_target(y_true, y_pred, self.name)
        dtype = y_pred.dtype.type
        if self.label_smoothing:
            y = y * dtype(1.0 - self.label_smoothing) + dtype(0.5 * self.label_smoothing)
        C = dtype(y_pred.shape[-1])
        if self.from_logits:
            z = y_pred
            e = np.exp(-np.abs(z))  # never overflows
            terms = np.maximum(z, 0) - z * y + np.log1p(e)
            sigmoid = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
            gradient = (sigmoid - y) / C
        else:
            eps = dtype(EPSILON)
            p = np.clip(y_pred, eps, dtype(1) - eps)
            terms = -(y * np.log(p) + (1 - y) * np.log(1 - p))
            inside = (y_pred >= eps) & (y_pred <= dtype(1) - eps)  # the clip passes the gradient here only
            gradient = (-(y / p) + (1 - y) / (1 - p)) / C * inside
        return np.mean(terms, axis=-1), gradient.astype(y_pred.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy with one-hot (or soft) targets: ``-sum(y log p)`` over the last axis.

    Parameters
    ----------
    from_logits : bool, default False
        Whether ``y_pred`` holds logits (a log-softmax is applied) instead of
        probabilities (each row is rescaled to sum to 1, then clipped).
    label_smoothing : float in [0, 1], default 0
        Targets become ``y (1 - s) + s / C``.
    name : str, optional

    Notes
    -----
    ``y_true`` has the shape of ``y_pred``, (B, ..., C).
    """

    default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits = check_bool("from_logits", from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def elementwise(self, y_true, y_pred):
        target = np.asarray(y_true)
        if target.shape != y_pred.shape:
            hint = (" (integer class labels need SparseCategoricalCrossentropy / "
                    "'sparse_categorical_crossentropy')" if target.shape == y_pred.shape[:-1] else "")
            raise ShapeError(f"{self.name}: targets must be one-hot with the predictions' shape "
                             f"{y_pred.shape}; got {target.shape}{hint}")
        if target.dtype.kind not in "fiub":
            raise DTypeError(f"{self.name}: targets must be numeric; got dtype {target.dtype}")
        y = target.astype(y_pred.dtype, copy=False)
        if self.label_smoothing:
            dtype = y_pred.dtype.type
            y = y * dtype(1.0 - self.label_smoothing) + dtype(self.label_smoothing / y_pred.shape[-1])
        return _categorical(y, y_pred, self.from_logits)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer class labels.

    Parameters
    ----------
    from_logits : bool, default False
        Whether ``y_pred`` holds logits instead of probabilities.
    name : str, optional

    Notes
    -----
    ``y_true`` holds integers in ``[0, C)``, of shape (B, ...) or (B, ..., 1),
    for predictions of shape (B, ..., C); float labels must be whole numbers.
    """

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, name=None):
        super().__init__(name)
        self.from_logits = check_bool("from_logits", from_logits)

    def elementwise(self, y_true, y_pred):
        labels = sparse_labels(y_true, y_pred, self.name)
        y = np.zeros_like(y_pred)
        np.put_along_axis(y, labels[..., None], 1, axis=-1)
        return _categorical(y, y_pred, self.from_logits)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class MeanSquaredError(Loss):
    """Mean squared error over the last axis: ``mean((y_pred - y)**2)``.

    Notes
    -----
    ``y_true`` has the shape of ``y_pred`` (B, ..., C), or (B, ...) when C is 1.
    """

    default_name = "mean_squared_error"

    def elementwise(self, y_true, y_pred):
        difference, C = _difference(y_true, y_pred, self.name)
        return np.mean(difference * difference, axis=-1), difference * (2 / C)


class MeanAbsoluteError(Loss):
    """Mean absolute error over the last axis: ``mean(|y_pred - y|)`` (gradient 0 where they are equal).

    Notes
    -----
    ``y_true`` has the shape of ``y_pred`` (B, ..., C), or (B, ...) when C is 1.
    """

    default_name = "mean_absolute_error"

    def elementwise(self, y_true, y_pred):
        difference, C = _difference(y_true, y_pred, self.name)
        return np.mean(np.abs(difference), axis=-1), np.sign(difference) / C


# helpers -------------------------------------------------------------------------------
def _check_smoothing(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ArgumentError(f"label_smoothing must be a number in [0, 1]; got {value!r}")
    return float(value)


def sparse_labels(y_true, y_pred, name):
    """Integer labels of shape ``y_pred.shape[:-1]``, checked to lie in ``[0, C)``.

    Parameters
    ----------
    y_true : array_like of shape (B, ...) or (B, ..., 1)
    y_pred : ndarray of shape (B, ..., C)
    name : str
        The loss or metric, named in errors.

    Returns
    -------
    ndarray of int64 of shape (B, ...)
    """
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.ndim > 0 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != y_pred.shape[:-1]:
        raise ShapeError(f"{name}: integer labels must have shape {y_pred.shape[:-1]} (or with a trailing "
                         f"axis of size 1) for predictions of shape {y_pred.shape}; got {np.shape(y_true)}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))].flat[0]
            raise DTypeError(f"{name}: labels must be whole numbers (class indices); got {bad!r}")
    elif labels.dtype.kind not in "iub":
        raise DTypeError(f"{name}: labels must be integer class indices; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    C = y_pred.shape[-1]
    outside = (labels < 0) | (labels >= C)
    if outside.any():
        position = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ArgumentError(f"{name}: label {int(labels[position])} at index {position} is outside the valid "
                            f"range [0, {C - 1}] for predictions with {C} classes")
    return labels


def _categorical(y, y_pred, from_logits):
    """Per-element ``-sum(y log p)`` and its gradient, for probabilities or logits."""
    dtype = y_pred.dtype.type
    if from_logits:
        shifted = y_pred - np.max(y_pred, axis=-1, keepdims=True)
        log_sum = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        log_prob = shifted - log_sum
        values = -np.sum(y * log_prob, axis=-1)
        gradient = np.exp(log_prob) * np.sum(y, axis=-1, keepdims=True) - y
        return values, gradient
    eps = dtype(EPSILON)
    total = np.sum(y_pred, axis=-1, keepdims=True)
    q = y_pred / total
    p = np.clip(q, eps, dtype(1) - eps)
    values = -np.sum(y * np.log(p), axis=-1)
    # d/dq, then through the rescaling q = y_pred / sum(y_pred): dq_j/dp_k = (delta_jk - q_j) / total
    d_q = -(y / p) * ((q >= eps) & (q <= dtype(1) - eps))
    gradient = (d_q - np.sum(d_q * q, axis=-1, keepdims=True)) / total
    return values, gradient


_BY_NAME = {
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
}
_CLASSES = {cls.__name__: cls for cls in (BinaryCrossentropy, CategoricalCrossentropy,
                                          SparseCategoricalCrossentropy, MeanSquaredError, MeanAbsoluteError)}


def get(identifier):
    """A :class:`Loss` from a Keras name, a class name, a config dict or an instance.

    Parameters
    ----------
    identifier : str, dict, or Loss
        ``"binary_crossentropy"``, ``"categorical_crossentropy"``,
        ``"sparse_categorical_crossentropy"``, ``"mse"``/``"mean_squared_error"``,
        ``"mae"``/``"mean_absolute_error"`` (or the class names); a dict
        ``{"class_name": ..., "config": ...}`` as :func:`serialize` returns;
        or a :class:`Loss` (returned as is).

    Returns
    -------
    Loss

    Raises
    ------
    ArgumentError
        For an unknown name, listing the valid ones.
    DTypeError
        For a plain function: training needs the gradient a :class:`Loss` provides.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        if class_name not in _CLASSES:
            raise ArgumentError(f"unknown loss class {class_name!r}; valid: {', '.join(sorted(_CLASSES))}")
        return _CLASSES[class_name].from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]()
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        raise ArgumentError(f"unknown loss {identifier!r}; valid names: {', '.join(sorted(_BY_NAME))} "
                            f"(or a fastrnn.keras.losses.Loss instance)")
    if callable(identifier):
        # A plain function gives values only; training needs the gradient too.
        raise DTypeError(f"a loss must be a name or a fastrnn.keras.losses.Loss (which has a gradient); "
                         f"got the function {getattr(identifier, '__name__', identifier)!r}; "
                         "subclass Loss and implement elementwise()")
    raise DTypeError(f"a loss must be a name or a fastrnn.keras.losses.Loss; got {type(identifier).__name__}")


def serialize(loss):
    """``{"class_name": ..., "config": ...}`` that :func:`get` turns back into ``loss``."""
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
