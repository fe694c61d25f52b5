"""Keras-semantics metrics for fastrnn.keras: stateful means of per-element scores over an epoch.

A metric is updated batch by batch (:meth:`Metric.update_state`) and read
once (:meth:`Metric.result`), so its value over an epoch is the mean over
every element seen, not the mean of the batch means. As in Keras, a per-element
score has the shape ``y_pred.shape[:-1]`` (for a sequence output (B, T, C), one
score per step) and an output mask, when there is one, weights the scores.

``"accuracy"``/``"acc"`` resolve, once the shapes are known, to binary accuracy
(threshold 0.5) when the loss is binary cross-entropy or the prediction has one
column, to sparse categorical accuracy when the labels have one axis fewer than
the predictions (or a last axis of 1 against several columns), and to
categorical accuracy otherwise.
"""

import numpy as np

from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.keras import losses as losses_module

__all__ = [
    "Metric",
    "Mean",
    "MeanMetricWrapper",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "get",
]


# per-element scores ----------------------------------------------------------------------
def _same_rank(y_true, y_pred):
    """``y_true`` with a trailing axis of 1 added when it has one axis fewer than ``y_pred`` (of 1 column)."""
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    if y_true.shape != y_pred.shape:
        raise ShapeError(f"targets must have the predictions' shape {y_pred.shape}; got {y_true.shape}")
    return y_true


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per-element share of columns where ``y_pred > threshold`` equals the 0/1 target.

    Parameters
    ----------
    y_true : array_like of shape (B, ..., C), or (B, ...) when C is 1
    y_pred : array_like of shape (B, ..., C)
    threshold : float

    Returns
    -------
    ndarray of shape (B, ...)
    """
    y_pred = np.asarray(y_pred)
    y_true = _same_rank(y_true, y_pred)
    predicted = (y_pred > threshold).astype(y_pred.dtype)
    return np.mean(predicted == y_true.astype(y_pred.dtype), axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Per element, 1 where the argmax of ``y_pred`` is the argmax of the one-hot ``y_true``.

    Parameters
    ----------
    y_true, y_pred : array_like of shape (B, ..., C)

    Returns
    -------
    ndarray of shape (B, ...)
    """
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    if y_true.shape != y_pred.shape:
        raise ShapeError(f"categorical accuracy needs one-hot targets of the predictions' shape {y_pred.shape}; "
                         f"got {y_true.shape}")
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """Per element, 1 where the argmax of ``y_pred`` is the integer label.

    Parameters
    ----------
    y_true : array_like of shape (B, ...) or (B, ..., 1)
    y_pred : array_like of shape (B, ..., C)

    Returns
    -------
    ndarray of shape (B, ...)
    """
    y_pred = np.asarray(y_pred)
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != y_pred.shape[:-1]:
        raise ShapeError(f"sparse categorical accuracy needs labels of shape {y_pred.shape[:-1]} for predictions "
                         f"of shape {y_pred.shape}; got {np.shape(y_true)}")
    return (np.argmax(y_pred, axis=-1) == labels).astype(np.float64)


def _squared_error(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    difference = y_pred - _same_rank(y_true, y_pred)
    return np.mean(difference * difference, axis=-1)


def _absolute_error(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    return np.mean(np.abs(y_pred - _same_rank(y_true, y_pred)), axis=-1)


# stateful metrics ------------------------------------------------------------------------
class Metric:
    """Base class of a stateful metric.

    Parameters
    ----------
    name : str, optional
        The key of the metric in logs and ``History.history``.
    """

    default_name = "metric"

    def __init__(self, name=None):
        self.name = name or self.default_name
        self.reset_state()

    def reset_state(self):
        """Forget every update (called at the start of each epoch and evaluation)."""

    def update_state(self, y_true, y_pred, mask=None, sample_weight=None):
        """Add one batch: ``y_pred`` of shape (B, ..., C); ``mask`` of shape (B, ...) and
        ``sample_weight`` of shape (B,) or (B, ...) weight the per-element scores."""
        raise NotImplementedError

    def result(self):
        """The metric over every update since the last reset, as a float."""
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """The (weighted) mean of every value passed to :meth:`update_state`."""

    default_name = "mean"

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        """Add ``values`` (any shape), each weighted by ``sample_weight`` (broadcast) or 1."""
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += float(values.size)
        else:
            weight = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), values.shape)
            self.total += float((values * weight).sum())
            self.count += float(weight.sum())

    def result(self):
        # Keras divides with divide_no_nan: nothing seen gives 0.
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """The running mean of a per-element score function ``fn(y_true, y_pred) -> (B, ...)``.

    Parameters
    ----------
    fn : callable
    name : str, optional
    **kwargs
        Passed to ``fn``.
    """

    def __init__(self, fn, name=None, **kwargs):
        self.fn = fn
        self.fn_kwargs = kwargs
        super().__init__(name or getattr(fn, "__name__", "metric"))

    def update_state(self, y_true, y_pred, mask=None, sample_weight=None):
        scores = np.asarray(self.fn(y_true, y_pred, **self.fn_kwargs), dtype=np.float64)
        weight = None
        if mask is not None:
            weight = np.asarray(mask, dtype=np.float64)
            if weight.shape != scores.shape:
                raise ShapeError(f"metric {self.name!r}: the output mask has shape {weight.shape}; "
                                 f"the per-element scores have {scores.shape}")
        if sample_weight is not None:
            sample_weight = losses_module.broadcast_sample_weight(sample_weight, scores.shape)
            weight = sample_weight if weight is None else weight * sample_weight
        super().update_state(scores, weight)


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches the 0/1 target."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(binary_accuracy, name=name, threshold=self.threshold)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of ``y_pred`` matches that of the one-hot target."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name=name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of ``y_pred`` equals the integer label."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name=name)


class MeanSquaredError(MeanMetricWrapper):
    """Running mean of the squared error, averaged over the last axis."""

    def __init__(self, name="mean_squared_error"):
        super().__init__(_squared_error, name=name)


class MeanAbsoluteError(MeanMetricWrapper):
    """Running mean of the absolute error, averaged over the last axis."""

    def __init__(self, name="mean_absolute_error"):
        super().__init__(_absolute_error, name=name)


_BY_NAME = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
}
_CLASSES = {cls.__name__: cls for cls in (BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                                          MeanSquaredError, MeanAbsoluteError)}
VALID_NAMES = ("accuracy", "acc", *sorted(_BY_NAME))


def _accuracy_for(name, y_true, y_pred, loss):
    """The accuracy that ``"accuracy"`` means for these shapes and this loss (see the module docstring)."""
    y_true_shape, y_pred_shape = np.shape(y_true), np.shape(y_pred)
    if isinstance(loss, losses_module.BinaryCrossentropy) or y_pred_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    sparse = len(y_true_shape) < len(y_pred_shape) or (len(y_true_shape) > 0 and y_true_shape[-1] == 1)
    return SparseCategoricalAccuracy(name=name) if sparse else CategoricalAccuracy(name=name)


def check(identifier):
    """Raise unless ``identifier`` can become a metric (checked at compile time, before the shapes are known)."""
    if isinstance(identifier, (Metric, dict)) or callable(identifier):
        return
    if isinstance(identifier, str):
        if identifier.lower() in VALID_NAMES or identifier in _CLASSES:
            return
        raise ArgumentError(f"unknown metric {identifier!r}; valid names: {', '.join(VALID_NAMES)} "
                            "(or a fastrnn.keras.metrics.Metric, or a function (y_true, y_pred) -> scores)")
    raise DTypeError(f"a metric must be a name, a Metric or a function; got {type(identifier).__name__}")


def get(identifier, y_true=None, y_pred=None, loss=None):
    """A fresh :class:`Metric` from a name, a config dict, a function or an instance.

    Parameters
    ----------
    identifier : str, dict, callable or Metric
        A name of :data:`VALID_NAMES` (``"accuracy"``/``"acc"`` included, named
        as given), a class name, ``{"class_name": ..., "config": ...}``, a
        function ``(y_true, y_pred) -> ndarray of shape (B, ...)``, or a
        :class:`Metric` (returned as is).
    y_true, y_pred : array_like, optional
        A batch of targets and predictions; needed to resolve ``"accuracy"``.
    loss : Loss, optional
        The compiled loss; binary cross-entropy makes ``"accuracy"`` binary.

    Returns
    -------
    Metric
    """
    check(identifier)
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        if class_name not in _CLASSES:
            raise ArgumentError(f"unknown metric class {class_name!r}; valid: {', '.join(sorted(_CLASSES))}")
        return _CLASSES[class_name].from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            if y_pred is None:
                raise ArgumentError("'accuracy' is resolved from the shapes of the targets and predictions; "
                                    "pass y_true and y_pred")
            return _accuracy_for(identifier, y_true, y_pred, loss)
        cls = _CLASSES.get(identifier) or _BY_NAME[identifier.lower()]
        return cls(name=identifier)  # keyed in logs by the name the user wrote, as Keras does
    return MeanMetricWrapper(identifier)


def serialize(identifier):
    """A JSON-serialisable form of a compile-time metric identifier (a name or a config dict)."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, Metric) and type(identifier) in _CLASSES.values():
        return {"class_name": type(identifier).__name__, "config": identifier.get_config()}
    raise ArgumentError(f"metric {identifier!r} cannot be saved: only names and the built-in metric classes "
                        "are serialisable; compile the loaded model again with it")
