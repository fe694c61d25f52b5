"""The Keras-style Sequential model: a stack of fastrnn.keras layers with summary, compile, fit, evaluate and predict.

Training runs on NumPy arrays, batch first, one mini-batch at a time: the
forward pass goes through the layers with Keras's mask propagation
(``layer.compute_mask``), the loss gives the gradient of the predictions, the
layers' ``backward`` run in reverse order, and the optimizer updates every
trainable weight. Shuffling uses NumPy's global random state
(``np.random.seed`` makes ``fit`` repeatable).
"""

import copy
import math
import sys
import time

import numpy as np

from fastrnn._threads import one_thread_at_a_time
from fastrnn._validation import check_precision
from fastrnn.exceptions import ArgumentError, NonFiniteError, ShapeError
from fastrnn.keras import losses as losses_module
from fastrnn.keras import metrics as metrics_module
from fastrnn.keras import optimizers as optimizers_module
from fastrnn.keras.callbacks import Callback, History, TerminateOnNaN
from fastrnn.keras.exceptions import NotCompiledError
from fastrnn.keras.layers.base import Layer, unique_name
from fastrnn.keras.model_file import save_model
from fastrnn.keras.serialization import deserialize_layer, serialize_layer
from fastrnn.parameter import apply_update

__all__ = ["Sequential", "Input", "NotCompiledError"]


def _as_array(name, value):
    if value is None:
        raise ArgumentError(f"{name} is required; got None")
    try:
        array = np.asarray(value)
    except ValueError as error:  # NumPy refuses ragged nested lists
        raise ShapeError(f"{name} holds samples of different lengths; pad the sequences to one length "
                         f"first (e.g. with 0, and Embedding(mask_zero=True)): {error}") from None
    if array.ndim == 0:
        raise ShapeError(f"{name} must have a batch axis; got a scalar")
    return array


def _check_finite_data(name, array):
    """Require no NaN or infinity in a training array, naming the first bad index (one pass, before training)."""
    if array is None or array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteError(f"{name} has a non-finite value at index {index}: {array[index]}; "
                             "training on it would turn every weight into NaN, so nothing was trained")


def _class_weight_to_sample_weight(y, class_weight):
    """One weight per sample from ``{class: weight}``: the class is ``y`` (integer labels) or its argmax (one-hot)."""
    if not isinstance(class_weight, dict):
        raise ArgumentError(f"class_weight must be a dict {{class index: weight}}; got {type(class_weight).__name__}")
    labels = np.asarray(y)
    if labels.ndim > 1:
        if labels.ndim > 2:
            raise ShapeError(f"class_weight works with targets of shape (N,), (N, 1) or one-hot (N, C); got "
                             f"{labels.shape} (use sample_weight of shape (N, T) for sequences)")
        labels = labels[:, 0] if labels.shape[1] == 1 else np.argmax(labels, axis=1)
    labels = np.round(labels).astype(np.int64)
    return np.array([float(class_weight.get(int(label), 1.0)) for label in labels])


def _check_batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
    return int(batch_size)


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ArgumentError(f"verbose must be 'auto', 0, 1 or 2; got {verbose!r}")
    return int(verbose)


def _format_logs(logs):
    return {key: f"{value:.4f}" for key, value in logs.items()}


def _readable_bytes(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024


class _Progress:
    """One epoch's progress bar (tqdm when installed), or a line per epoch for ``verbose=2``."""

    def __init__(self, verbose, total, description):
        self.verbose = verbose
        self.description = description
        self.started = time.perf_counter()
        self.bar = None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is optional: fall back to one line per epoch
                self.verbose = 2
            else:
                self.bar = tqdm(total=total, desc=description, unit="batch", file=sys.stdout, leave=True,
                                dynamic_ncols=True)

    def update(self, logs):
        if self.bar is not None:
            self.bar.set_postfix(_format_logs(logs), refresh=False)
            self.bar.update(1)

    def close(self, logs):
        if self.bar is not None:
            self.bar.set_postfix(_format_logs(logs), refresh=True)
            self.bar.close()
        elif self.verbose == 2:
            elapsed = time.perf_counter() - self.started
            details = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
            print(f"{self.description} - {elapsed:.1f}s - {details}", file=sys.stdout, flush=True)


class Input:
    """The input's shape for a Sequential model, as ``keras.Input``: ``Sequential([Input((T,)), ...])``.

    A model that starts with one builds every layer as it is added.

    Parameters
    ----------
    shape : tuple
        Without the batch axis: ``(T,)`` for token ids, ``(T, D)`` for
        sequences; ``None`` for a size left open.
    batch_size : int, optional
    name : str, optional
    """

    def __init__(self, shape, batch_size=None, name=None):
        if isinstance(shape, (int, np.integer)) or shape is None:
            shape = (shape,)
        self.shape = tuple(None if size is None else int(size) for size in shape)
        self.batch_size = batch_size
        self.name = name

    def __repr__(self):
        return f"Input(shape={self.shape})"


class Sequential:
    """A linear stack of layers, trained on NumPy arrays with Keras's ``compile``/``fit`` workflow.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order with :meth:`add`.
    name : str, optional
        Defaults to ``"sequential"``, numbered like Keras.

    Attributes
    ----------
    optimizer : Optimizer or None
        Set by :meth:`compile`.
    loss : Loss or None
        Set by :meth:`compile`.
    history : History or None
        Of the last :meth:`fit`.
    stop_training : bool
        Set by a callback to end :meth:`fit` after the current epoch.

    Examples
    --------
    >>> from fastrnn.keras import Sequential, layers
    >>> model = Sequential([layers.Embedding(1000, 32), layers.SimpleRNN(32),
    ...                     layers.Dense(1, activation="sigmoid")])
    >>> model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    >>> history = model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2)  # doctest: +SKIP
    """

    def __init__(self, layers=None, name=None):
        self.name = name or unique_name("sequential")
        self._layers = []
        self.optimizer = None
        self.loss = None
        self._metric_identifiers = []
        self.history = None
        self.stop_training = False
        self._input_shape = None  # with the batch axis, from an Input
        for layer in layers or []:
            self.add(layer)

    # structure ----------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, in order (a new list)."""
        return list(self._layers)

    def add(self, layer):
        """Append a layer (built at once when the model already is, or starts with an :class:`Input`)."""
        if isinstance(layer, Input):
            if self._layers or self._input_shape is not None:
                raise ArgumentError("an Input can only be the first entry of a Sequential model")
            self._input_shape = (layer.batch_size,) + layer.shape
            return
        if not isinstance(layer, Layer):
            raise ArgumentError(f"Sequential.add takes a fastrnn.keras layer; got {type(layer).__name__}")
        if any(existing.name == layer.name for existing in self._layers):
            raise ArgumentError(f"a layer named {layer.name!r} is already in the model; layer names must be unique")
        if self._layers and self.built and not layer.built:
            layer.build(self._output_shape_of(self._layers[-1]))
        self._layers.append(layer)
        if self._input_shape is not None and not layer.built:
            self.build(self._input_shape)

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise ArgumentError("pop() on a model with no layers")
        return self._layers.pop()

    @property
    def built(self):
        """Whether every layer has its weights."""
        return bool(self._layers) and all(layer.built for layer in self._layers)

    @staticmethod
    def _output_shape_of(layer):
        shape = getattr(layer, "output_shape", None)
        return tuple(shape) if shape is not None else tuple(layer.compute_output_shape(layer.input_shape))

    def build(self, input_shape=None):
        """Create every layer's weights for inputs of ``input_shape``.

        Parameters
        ----------
        input_shape : tuple, optional
            With the batch axis first, as in Keras: ``(None, T)`` for token
            ids, ``(None, T, D)`` for sequences; ``None`` for an unknown size.
            Defaults to the ``input_shape`` the first layer was given.
        """
        if not self._layers:
            raise ArgumentError("the model has no layers to build; add some first")
        if input_shape is None:
            input_shape = self._input_shape
        if input_shape is None:
            declared = self._layers[0].declared_input_shape
            if declared is None:
                raise ArgumentError("build() needs input_shape (batch axis first, e.g. (None, 100)) "
                                    "when the first layer was not given one")
            shape = tuple(declared)
        else:
            input_shape = tuple(input_shape)
            if len(input_shape) < 1:
                raise ShapeError("input_shape must include the batch axis first, e.g. (None, 100); got ()")
            shape = input_shape[1:]
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = self._output_shape_of(layer)

    def _try_build_for_summary(self):
        """Build from what the layers already say, when that is enough (a declared shape, a leading Embedding)."""
        if self.built or not self._layers:
            return
        first = self._layers[0]
        if first.built:
            return
        if first.declared_input_shape is not None:
            self.build()
        elif type(first).__name__ == "Embedding":
            self.build((None, None))  # token ids of any length: the weights do not depend on it

    # weights ------------------------------------------------------------------------------
    @property
    def weights(self):
        """Every layer's weight Parameters, in order."""
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        """The weight Parameters the optimizer updates."""
        seen, result = set(), []
        for layer in self._layers:
            for weight in layer.trainable_weights:
                if id(weight) not in seen:  # a weight shared by two layers is updated once
                    seen.add(id(weight))
                    result.append(weight)
        return result

    @property
    def non_trainable_weights(self):
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    def get_weights(self):
        """Copies of every layer's weights, in order (Keras layouts)."""
        return [array for layer in self._layers for array in layer.get_weights()]

    def set_weights(self, weights):
        """Set every layer's weights from a list as :meth:`get_weights` returns, all or nothing.

        Every array is checked (count, shape, real floating dtype, finiteness;
        see ``Layer.set_weights``) before any layer is written, so after an
        error the model is unchanged.
        """
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self._layers)
        if len(weights) != expected:
            raise ArgumentError(f"model {self.name!r} has {expected} weight array(s); got {len(weights)}")
        prepared = []
        start = 0
        for layer in self._layers:
            count = len(layer.weights)
            prepared += layer._prepare_weights(weights[start:start + count])
            start += count
        apply_update(prepared)

    def count_params(self):
        """The number of scalars in every weight."""
        return int(sum(w.size for w in self.weights))

    # forward and backward -----------------------------------------------------------------
    def _forward(self, x, training):
        """Run the layers; returns the output and the mask that reaches it (or None)."""
        mask = None
        for layer in self._layers:
            output = layer(x, mask=mask, training=training)
            mask = layer.compute_mask(x, mask)
            x = output
        return x, mask

    def _backward(self, d_output):
        for layer in reversed(self._layers):
            d_output = layer.backward(d_output)
            if d_output is None:  # integer inputs (Embedding): nothing further back to train
                break

    def __call__(self, x, training=False):
        """The model's output on ``x`` in one pass (no batching)."""
        if not self._layers:
            raise ArgumentError("the model has no layers")
        return self._forward(_as_array("x", x), training)[0]

    # compile ------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, run_eagerly=False, jit_compile="auto",
                steps_per_execution=1):
        """Choose the optimizer, the loss and the metrics.

        Parameters
        ----------
        optimizer : str or Optimizer, default "rmsprop"
            ``"sgd"``, ``"rmsprop"``, ``"adam"`` or an instance of
            :mod:`fastrnn.keras.optimizers`.
        loss : str or Loss
            ``"binary_crossentropy"``, ``"categorical_crossentropy"``,
            ``"sparse_categorical_crossentropy"``, ``"mse"``/``"mean_squared_error"``,
            ``"mae"`` or an instance of :mod:`fastrnn.keras.losses`.
        metrics : list, optional
            Names (``"accuracy"``/``"acc"``, ``"mse"``, ...), Metric instances
            or functions ``(y_true, y_pred) -> scores``.
        run_eagerly, jit_compile, steps_per_execution
            Accepted for compatibility with Keras code; they change nothing here.
        """
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = None if loss is None else losses_module.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, dict)) or callable(metrics):
            metrics = [metrics]
        metrics = list(metrics)
        for identifier in metrics:
            metrics_module.check(identifier)
        self._metric_identifiers = metrics  # resolved on each first batch, when the shapes are known

    @property
    def compiled(self):
        return self.optimizer is not None

    def _require_compiled(self, action):
        if not self._layers:
            raise ArgumentError(f"{action}() on a model with no layers; add some first")
        if self.optimizer is None:
            raise NotCompiledError(f"call compile(optimizer=..., loss=...) before {action}()")
        if self.loss is None:
            raise NotCompiledError(f"{action}() needs a loss; compile(loss=...) was given none")

    def _fresh_metrics(self, y_true, y_pred):
        """Metric objects with no state, for one epoch or one evaluation."""
        metrics = []
        for identifier in self._metric_identifiers:
            if isinstance(identifier, metrics_module.Metric):
                identifier.reset_state()  # a user's instance is reused: start it afresh
                metrics.append(identifier)
            else:
                metrics.append(metrics_module.get(identifier, y_true, y_pred, self.loss))
        return metrics

    @property
    def metrics_names(self):
        """``["loss", <metric names>]`` (metric names known after the first batch for ``"accuracy"``)."""
        names = ["loss"]
        for identifier in self._metric_identifiers:
            if isinstance(identifier, str):
                names.append(identifier)
            elif isinstance(identifier, metrics_module.Metric):
                names.append(identifier.name)
            else:
                names.append(getattr(identifier, "__name__", "metric"))
        return names

    # data helpers -------------------------------------------------------------------------
    @staticmethod
    def _check_pair(x, y, what):
        x = _as_array(f"x ({what})", x)
        y = _as_array(f"y ({what})", y)
        if len(x) != len(y):
            raise ShapeError(f"x and y must have the same number of samples ({what}); "
                             f"got {len(x)} in x and {len(y)} in y")
        if len(x) == 0:
            raise ShapeError(f"x and y have no samples ({what})")
        return x, y

    @staticmethod
    def _sample_weights(y, sample_weight, class_weight, what):
        """Per-sample weights (N,) or (N, ...) from ``sample_weight`` or ``class_weight``, or None."""
        if sample_weight is not None and class_weight is not None:
            raise ArgumentError(f"give sample_weight or class_weight, not both ({what})")
        if class_weight is not None:
            return _class_weight_to_sample_weight(y, class_weight)
        if sample_weight is None:
            return None
        weight = _as_array(f"sample_weight ({what})", sample_weight)
        if len(weight) != len(y):
            raise ShapeError(f"sample_weight must have one entry per sample ({what}); got {len(weight)} "
                             f"for {len(y)} samples")
        return weight.astype(np.float64, copy=False)

    @staticmethod
    def _output_mask(mask, y_pred):
        """The output mask when it matches the per-element losses (y_pred without its last axis)."""
        if mask is None or np.shape(mask) != np.shape(y_pred)[:-1]:
            return None
        return mask

    def _loss_and_metrics_step(self, x, y, metrics, training, sample_weight=None):
        """One batch: forward, loss, metric updates, and when training backward and the optimizer step."""
        if training:
            for weight in self.weights:
                weight.grad = None
        y_pred, mask = self._forward(x, training=training)
        mask = self._output_mask(mask, y_pred)
        loss, d_pred = self.loss.value_and_gradient(y, y_pred, mask, sample_weight)
        if training:
            self._backward(d_pred)
            params = self.trainable_weights
            self._apply_finite_step(loss, params)
            for weight in self.weights:
                weight.grad = None
        if metrics is None:
            metrics = self._fresh_metrics(y, y_pred)
        for metric in metrics:
            metric.update_state(y, y_pred, mask=mask)  # compiled metrics ignore sample weights, as in Keras
        return loss, metrics

    def _apply_finite_step(self, loss, params):
        """The optimizer step, applied only when the loss, the gradients and the updated weights are finite.

        Otherwise the weights, the optimizer's slots and its iteration count
        keep their previous values and NonFiniteError says so.
        """
        problem = None
        if not np.isfinite(loss):
            problem = f"the loss is {loss}"
        else:
            for param in params:
                if param.grad is not None and not np.isfinite(param.grad).all():
                    problem = f"the gradient of {getattr(param, 'name', None) or 'a weight'} is not finite"
                    break
        if problem is None:
            # An overflowing update (e.g. a huge learning rate) makes the weights non-finite
            # from finite gradients; a copy lets the step be undone.
            before = [p.values.copy() for p in params]
            optimizer_before = self.optimizer._snapshot(params)
            self.optimizer.apply([p.grad for p in params], params)
            for param, old in zip(params, before):
                if not np.isfinite(param.values).all():
                    for restored, saved in zip(params, before):
                        restored.data[...] = saved
                        restored.mark_changed()
                    self.optimizer._restore(params, optimizer_before)
                    problem = (f"the update made {getattr(param, 'name', None) or 'a weight'} non-finite "
                               "(is the learning rate too large?)")
                    break
        if problem is not None:
            for weight in self.weights:
                weight.grad = None
            error = NonFiniteError(f"{problem}; the step was not applied and the model keeps its previous "
                                   "weights (callbacks.TerminateOnNaN stops training quietly instead)")
            error.step_not_applied = True  # fit tells this from bad data further down
            raise error

    # training -----------------------------------------------------------------------------
    @one_thread_at_a_time  # training state (optimizer, callbacks, history) is one per model
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0):
        """Train for ``epochs`` passes over ``(x, y)`` in mini-batches.

        Parameters
        ----------
        x : ndarray of shape (N, ...)
            Inputs, batch first: (N, T) token ids, (N, T, D) sequences, (N, D) features.
        y : ndarray of shape (N, ...)
            Targets in the layout the loss takes.
        batch_size : int, default 32
        epochs : int, default 1
            Index of the last epoch (training runs ``initial_epoch .. epochs-1``).
        verbose : {"auto", 0, 1, 2}
            0 silent, 1 (and "auto") a progress bar per epoch with the loss and
            metrics, 2 one line per epoch.
        callbacks : list of Callback, optional
        validation_split : float in [0, 1)
            Share of the samples, taken from the end before any shuffling,
            held out for validation; ignored when ``validation_data`` is given.
        validation_data : tuple (x_val, y_val) or (x_val, y_val, sample_weight_val), optional
        shuffle : bool, default True
            Shuffle the training samples before each epoch.
        class_weight : dict, optional
            ``{class index: weight}``: each sample's loss is multiplied by the
            weight of its class (its label, or the argmax of a one-hot target).
        sample_weight : ndarray of shape (N,) or (N, T), optional
            Multiplies each sample's (or step's) loss; the loss is still
            divided by the number of elements, as in Keras. Not with
            ``class_weight``. Neither weighting touches the metrics (Keras's
            ``metrics``, as opposed to its ``weighted_metrics``).
        initial_epoch : int, default 0

        Returns
        -------
        History
            ``history.history`` maps ``loss``, the metrics and their ``val_``
            versions to one value per epoch. The loss is the mean over the
            epoch's batches weighted by batch size; a metric is its running
            value over the whole epoch.
        """
        self._require_compiled("fit")
        x, y = self._check_pair(x, y, "training data")
        weights = self._sample_weights(y, sample_weight, class_weight, "training data")
        for name, array in (("x", x), ("y", y), ("sample_weight", weights)):
            _check_finite_data(name, array)
        batch_size = _check_batch_size(batch_size)
        verbose = _check_verbose(verbose)
        for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ArgumentError(f"{name} must be a non-negative integer; got {value!r}")
        weights_val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ArgumentError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                                    f"sample_weight_val); got {type(validation_data).__name__} of length "
                                    f"{len(validation_data) if hasattr(validation_data, '__len__') else '?'}")
            x_val, y_val = self._check_pair(validation_data[0], validation_data[1], "validation_data")
            if len(validation_data) == 3:
                weights_val = self._sample_weights(y_val, validation_data[2], None, "validation_data")
        elif validation_split:
            if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                    or not 0 <= validation_split < 1:
                raise ArgumentError(f"validation_split must be a number in [0, 1); got {validation_split!r}")
            split_at = int(math.floor(len(x) * (1.0 - validation_split)))
            if split_at == 0 or split_at == len(x):
                raise ArgumentError(f"validation_split={validation_split} leaves {split_at} training and "
                                    f"{len(x) - split_at} validation sample(s) out of {len(x)}; both must be > 0")
            x, x_val = x[:split_at], x[split_at:]
            y, y_val = y[:split_at], y[split_at:]
            if weights is not None:
                weights, weights_val = weights[:split_at], weights[split_at:]
        else:
            x_val = y_val = None

        steps = math.ceil(len(x) / batch_size)
        history = History()
        callbacks = list(callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise ArgumentError("callbacks must be fastrnn.keras.callbacks.Callback instances; "
                                    f"got {type(callback).__name__}")
        callbacks.append(history)  # last, as in Keras: it sees what the other callbacks add to the logs
        params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        for callback in callbacks:
            callback.set_model(self)
            callback.set_params(params)
        self.stop_training = False
        for callback in callbacks:
            callback.on_train_begin()

        logs = {}
        for epoch in range(initial_epoch, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            order = np.random.permutation(len(x)) if shuffle else None
            progress = _Progress(verbose, steps, f"Epoch {epoch + 1}/{epochs}")
            loss_total, seen, metrics = 0.0, 0, None
            for step in range(steps):
                for callback in callbacks:
                    callback.on_train_batch_begin(step)
                rows = slice(step * batch_size, (step + 1) * batch_size)
                if order is not None:
                    rows = order[rows]
                x_batch, y_batch = x[rows], y[rows]
                try:
                    loss, metrics = self._loss_and_metrics_step(
                        x_batch, y_batch, metrics, training=True,
                        sample_weight=None if weights is None else weights[rows])
                except NonFiniteError as error:
                    if not getattr(error, "step_not_applied", False) or not any(isinstance(callback, TerminateOnNaN) for callback in callbacks):
                        raise
                    # The step was not applied: the callbacks see the NaN loss, TerminateOnNaN
                    # stops training, and the model keeps the weights of the last good step.
                    logs = {**logs, "loss": float("nan")}
                    for callback in callbacks:
                        callback.on_train_batch_end(step, logs)
                    self.stop_training = True
                    break
                loss_total += loss * len(x_batch)
                seen += len(x_batch)
                logs = {"loss": loss_total / seen, **{m.name: m.result() for m in metrics}}
                progress.update(logs)
                for callback in callbacks:
                    callback.on_train_batch_end(step, logs)
            if x_val is not None and not self.stop_training:
                validation = self._evaluate_arrays(x_val, y_val, batch_size, sample_weight=weights_val)
                logs.update({f"val_{key}": value for key, value in validation.items()})
            progress.close(logs)
            epoch_logs = dict(logs)  # one dict for every callback, as in Keras: they may add to it
            for callback in callbacks:
                callback.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end(dict(logs))
        self.history = history
        return history

    @one_thread_at_a_time  # training state (optimizer, callbacks, history) is one per model
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns the loss (and metrics) of that batch."""
        self._require_compiled("train_on_batch")
        x, y = self._check_pair(x, y, "train_on_batch")
        weights = self._sample_weights(y, sample_weight, class_weight, "train_on_batch")
        for name, array in (("x", x), ("y", y), ("sample_weight", weights)):
            _check_finite_data(name, array)
        loss, metrics = self._loss_and_metrics_step(x, y, None, training=True, sample_weight=weights)
        return self._result({"loss": loss, **{m.name: m.result() for m in metrics}}, return_dict)

    # evaluation and prediction ------------------------------------------------------------
    def _evaluate_arrays(self, x, y, batch_size, verbose=0, sample_weight=None):
        loss_total, metrics = 0.0, None
        steps = math.ceil(len(x) / batch_size)
        progress = _Progress(verbose, steps, "Evaluate")
        logs = {}
        for step in range(steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            loss, metrics = self._loss_and_metrics_step(
                x[rows], y[rows], metrics, training=False,
                sample_weight=None if sample_weight is None else sample_weight[rows])
            loss_total += loss * len(x[rows])
            logs = {"loss": loss_total / min(len(x), (step + 1) * batch_size),
                    **{m.name: m.result() for m in metrics}}
            progress.update(logs)
        progress.close(logs)
        return logs

    @staticmethod
    def _result(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, return_dict=False):
        """The loss and metrics on ``(x, y)``, computed in batches without training.

        Parameters
        ----------
        x, y : ndarray of shape (N, ...)
        batch_size : int, default 32
        verbose : {"auto", 0, 1, 2}
        sample_weight : ndarray of shape (N,) or (N, T), optional
        return_dict : bool, default False

        Returns
        -------
        float, list of float, or dict
            The loss alone when there are no metrics, else ``[loss, *metrics]``
            (or a dict keyed by name).
        """
        self._require_compiled("evaluate")
        x, y = self._check_pair(x, y, "evaluate")
        weights = self._sample_weights(y, sample_weight, None, "evaluate")
        logs = self._evaluate_arrays(x, y, _check_batch_size(batch_size), _check_verbose(verbose), weights)
        return self._result(logs, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """The loss (and metrics) of one batch, without training."""
        self._require_compiled("test_on_batch")
        x, y = self._check_pair(x, y, "test_on_batch")
        weights = self._sample_weights(y, sample_weight, None, "test_on_batch")
        loss, metrics = self._loss_and_metrics_step(x, y, None, training=False, sample_weight=weights)
        return self._result({"loss": loss, **{m.name: m.result() for m in metrics}}, return_dict)

    def predict(self, x, batch_size=None, verbose="auto"):
        """The model's output for ``x``, computed ``batch_size`` samples at a time.

        Parameters
        ----------
        x : ndarray of shape (N, ...)
        batch_size : int, default 32
        verbose : {"auto", 0, 1, 2}

        Returns
        -------
        ndarray of shape (N, ...)
            The batches' outputs joined along the first axis.
        """
        if not self._layers:
            raise ArgumentError("the model has no layers")
        x = _as_array("x", x)
        if len(x) == 0:
            raise ShapeError("x has no samples")
        batch_size = _check_batch_size(batch_size)
        steps = math.ceil(len(x) / batch_size)
        progress = _Progress(_check_verbose(verbose), steps, "Predict")
        outputs = []
        for step in range(steps):
            outputs.append(self._forward(x[step * batch_size:(step + 1) * batch_size], training=False)[0])
            progress.update({})
        progress.close({})
        return np.concatenate(outputs, axis=0)

    def predict_on_batch(self, x):
        """The model's output for one batch (no batching)."""
        return self(x)

    def quantized(self, precision):
        """A copy of this model whose recurrent layers run inference in ``precision``
        (:func:`fastrnn.quantize`).

        Parameters
        ----------
        precision : {"float32", "bf16", "int8"}

        Returns
        -------
        Sequential
            A deep copy (compiled as this model is) with ``precision`` set on every recurrent
            layer, a Bidirectional's two included, and their weights packed in it once if the
            model is built. :meth:`predict`, :meth:`evaluate` and calls without ``training``
            run in it; :meth:`fit` trains in bf16 (mixed precision) and raises in int8.
            Its weights are float32 master copies equal to this model's, which is not changed.

        Raises
        ------
        ArgumentError
            For an unknown precision.
        DTypeError
            For bf16 or int8 on a recurrent layer with float64 weights.
        """
        check_precision(precision)
        clone = copy.deepcopy(self)
        for layer in clone._layers:
            layer._apply_precision(precision)
        return clone

    # description --------------------------------------------------------------------------
    def summary(self, line_length=None, print_fn=None):
        """Print a table of the layers: name (type), output shape (None for the batch) and parameter count.

        Parameters
        ----------
        line_length : int, optional
            Total width; defaults to what fits the names.
        print_fn : callable, optional
            Called with each line instead of ``print``.
        """
        print_fn = print_fn or print
        self._try_build_for_summary()
        rows = []
        for layer in self._layers:
            if layer.built:
                shape = str((None,) + tuple(self._output_shape_of(layer)))
                count = f"{layer.count_params():,}"
            else:
                shape, count = "? (unbuilt)", "0 (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, count))
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [max([len(header[i])] + [len(row[i]) for row in rows]) + 3 for i in range(3)]
        widths[0], widths[1] = max(widths[0], 29), max(widths[1], 26)
        if line_length is not None and line_length > sum(widths):
            widths[0] += line_length - sum(widths)
        total_width = sum(widths)

        def line(cells):
            return (" " + cells[0]).ljust(widths[0]) + cells[1].ljust(widths[1]) + cells[2].rjust(widths[2] - 3)

        trainable = int(sum(w.size for w in self.trainable_weights))
        total = self.count_params()
        trainable_bytes = sum(w.nbytes for w in self.trainable_weights)
        total_bytes = sum(w.nbytes for w in self.weights)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * total_width)
        print_fn(line(header))
        print_fn("=" * total_width)
        for index, row in enumerate(rows):
            print_fn(line(row))
            if index != len(rows) - 1:
                print_fn("")
        print_fn("=" * total_width)
        print_fn(f"Total params: {total:,} ({_readable_bytes(total_bytes)})")
        print_fn(f"Trainable params: {trainable:,} ({_readable_bytes(trainable_bytes)})")
        print_fn(f"Non-trainable params: {total - trainable:,} ({_readable_bytes(total_bytes - trainable_bytes)})")
        print_fn("_" * total_width)
        if not self.built:
            print_fn("The model is not built yet: call build(input_shape) or fit()/predict() to create the "
                     "weights.")

    # configuration and saving -------------------------------------------------------------
    def get_config(self):
        """The model's structure (JSON-serialisable): its name and each layer's class and config."""
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "layers": [serialize_layer(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new, unbuilt model from :meth:`get_config`'s output."""
        layers = [deserialize_layer(entry, custom_objects) for entry in config["layers"]]
        input_shape = config.get("input_shape")
        if input_shape is not None:
            layers.insert(0, Input(tuple(input_shape[1:]), batch_size=input_shape[0]))
        return cls(layers, name=config["name"])

    def save(self, filepath):
        """Write the model (structure, weights, compile settings, optimizer state) to one file.

        See :func:`fastrnn.keras.saving.save_model`.
        """
        save_model(self, filepath)

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self._layers)} built={self.built}>"
