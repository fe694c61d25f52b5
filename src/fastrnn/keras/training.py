"""What every fastrnn.keras model does with its layers: compile, fit, evaluate, predict, and the weights.

:class:`TrainingModel` is the base of :class:`fastrnn.keras.Sequential` and of the functional
:class:`fastrnn.keras.Model`. It works on lists -- one array per model input, one per output --
and asks the subclass for the structure: ``layers``, ``output_names``, how user data maps to
the inputs and outputs (``_input_list`` / ``_output_list``), the forward pass over a batch
(``_run``) and the backward pass from the outputs' gradients (``_backprop``).

Training runs on NumPy arrays, batch first, one mini-batch at a time: the forward pass goes
through the layers with Keras's mask propagation (``layer.compute_mask``), each output's loss
gives the gradient of its predictions (times its ``loss_weights`` entry), the layers'
``backward`` run in reverse order, and the optimizer updates every trainable weight.
Shuffling uses NumPy's global random state (``np.random.seed`` makes ``fit`` repeatable).
"""

import copy
import math
import os
import sys
import time

import numpy as np

from fastrnn._threads import (available_cores, blas_threads, capped_n_threads, default_n_threads,
                              one_thread_at_a_time)
from fastrnn._validation import check_precision
from fastrnn.exceptions import ArgumentError, NonFiniteError, ShapeError
from fastrnn.keras import losses as losses_module
from fastrnn.keras import metrics as metrics_module
from fastrnn.keras import optimizers as optimizers_module
from fastrnn.keras.callbacks import Callback, History, TerminateOnNaN
from fastrnn.keras.data import ArrayBatches, SourceBatches, is_batch_source, split_batch
from fastrnn.keras.exceptions import NotCompiledError
from fastrnn.keras.file_formats import save_model
from fastrnn.keras.layers.base import unique_name
from fastrnn.parameter import apply_update

__all__ = ["TrainingModel", "MODEL_CLASSES", "nested_layers"]

#: Class name -> class of fastrnn.keras's models (``Model``, ``Sequential``; each registers itself),
#: what a model file's class name is looked up in.
MODEL_CLASSES = {}


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


def _samples(arrays):
    """The number of samples of a list of arrays (all have as many)."""
    return len(arrays[0])


def _rows(arrays, rows):
    """The same rows of every array of a list (None entries stay None)."""
    return [None if array is None else array[rows] for array in arrays]


def _unpack_tuple(x, y, sample_weight):
    """``fit((x, y))`` / ``fit((x, y, sample_weight))``: a tuple given as ``x`` without ``y`` holds them."""
    if y is None and isinstance(x, tuple) and len(x) in (2, 3):
        if len(x) == 3 and sample_weight is not None:
            raise ArgumentError("sample_weight is given twice: in the (x, y, sample_weight) tuple and as an argument")
        return x[0], x[1], x[2] if len(x) == 3 else sample_weight
    return x, y, sample_weight


def _refuse_with_batches(**given):
    """The arguments that make no sense when the data comes as made batches."""
    for name, value in given.items():
        if value is not None:
            raise ArgumentError(f"{name} is not taken when x gives batches (a generator, an iterator or a "
                                f"PyDataset-like sequence): each batch is (x, y) or (x, y, sample_weight) already; "
                                f"got {name}={value!r}" if name != "y" else
                                "y is not taken when x gives batches (a generator, an iterator or a PyDataset-like "
                                "sequence): each batch is (x, y) or (x, y, sample_weight) already")


def _limited(batches, steps, name):
    """``batches`` cut to its first ``steps`` (an int at most its count), or as it is for None."""
    if steps is None:
        return batches
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= batches.steps:
        raise ArgumentError(f"{name} must be an integer from 1 to the {batches.steps} batches of the arrays; "
                            f"got {steps!r}")
    batches.steps = int(steps)
    return batches


def _check_finite_data(name, arrays):
    """Require no NaN or infinity in training arrays (a list), naming the first bad index (one pass, before
    training)."""
    for position, array in enumerate(arrays or []):
        _check_finite_array(name if len(arrays) == 1 else f"{name}[{position}]", array)


def _check_finite_array(name, array):
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




class _Metrics:
    """The compiled metrics of one epoch or one evaluation: per output, with Keras's log names
    (``<output>_<metric>`` when the model has several outputs)."""

    def __init__(self, model, ys, y_preds):
        self.entries = []  # (output index, Metric, log name)
        losses = model._output_losses()
        several = len(ys) > 1
        for index, identifiers in enumerate(model._output_metrics()):
            for identifier in identifiers:
                if isinstance(identifier, metrics_module.Metric):
                    identifier.reset_state()  # a user's instance is reused: start it afresh
                    metric = identifier
                else:
                    metric = metrics_module.get(identifier, ys[index], y_preds[index], losses[index])
                name = f"{model.output_names[index]}_{metric.name}" if several else metric.name
                self.entries.append((index, metric, name))

    def update(self, ys, y_preds, masks):
        for index, metric, _ in self.entries:
            metric.update_state(ys[index], y_preds[index], mask=masks[index])  # no sample weights, as in Keras

    def results(self):
        return {name: metric.result() for _, metric, name in self.entries}


class _LossMeans:
    """Running means of one epoch's (or evaluation's) loss logs, as Keras 3 reports them: the total
    ``loss`` weighted by batch size, each output's ``<output>_loss`` a plain mean over batches."""

    def __init__(self):
        self.sums, self.samples, self.batches = {}, 0, 0

    def add(self, loss_logs, size):
        self.samples += size
        self.batches += 1
        for key, value in loss_logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + (value * size if key == "loss" else value)

    def result(self):
        return {key: total / (self.samples if key == "loss" else self.batches) for key, total in self.sums.items()}


def _per_output(argument, value, names, default):
    """A compile argument given once, as a list or as a dict by output name, as one entry per output."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ArgumentError(f"{argument} names output(s) {', '.join(map(repr, unknown))}; the model's outputs "
                                f"are {', '.join(map(repr, names))}")
        return [value.get(name, default) for name in names]
    if isinstance(value, (list, tuple)) and len(names) > 1:
        if len(value) != len(names):
            raise ArgumentError(f"{argument} must have one entry per output ({len(names)}: "
                                f"{', '.join(map(repr, names))}); got {len(value)}")
        return list(value)
    return [value] * len(names)


class TrainingModel:
    """What Sequential and the functional Model share (see the module docstring).

    Attributes
    ----------
    optimizer : Optimizer or None
        Set by :meth:`compile`.
    loss : Loss, list or dict, or None
        Set by :meth:`compile`: the loss of every output, or one per output.
    history : History or None
        Of the last :meth:`fit`.
    stop_training : bool
        Set by a callback to end :meth:`fit` after the current epoch.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("fastrnn.keras"):
            MODEL_CLASSES[cls.__name__] = cls

    def _init_training(self, name, default_name):
        self.name = name or unique_name(default_name)
        self.optimizer = None
        self.loss = None
        self.loss_weights = None
        self._metric_identifiers = []
        self.history = None
        self.stop_training = False

    # structure the subclasses give ------------------------------------------------------------
    @property
    def layers(self):
        raise NotImplementedError

    @property
    def output_names(self):
        """The names of the outputs (their layers'), in order."""
        raise NotImplementedError

    def _input_list(self, x, what):
        """The user's ``x`` as a list of arrays, one per model input."""
        raise NotImplementedError

    def _output_list(self, y, what):
        """The user's ``y`` as a list of arrays, one per model output."""
        raise NotImplementedError

    def _run(self, xs, training):
        """Forward pass over one batch: ``(outputs, masks, trace)``, lists per output; ``trace`` is
        what :meth:`_backprop` needs."""
        raise NotImplementedError

    def _backprop(self, trace, d_outputs):
        """Backward pass from the gradients of the outputs (a list; entries may be None)."""
        raise NotImplementedError

    def _require_layers(self, action):
        if not self.layers:
            raise ArgumentError(f"{action}() on a model with no layers; add some first")

    # weights ------------------------------------------------------------------------------
    @property
    def weights(self):
        """Every layer's weight Parameters, in order (a weight shared by two layers once)."""
        seen, result = set(), []
        for layer in self.layers:
            for weight in layer.weights:
                if id(weight) not in seen:
                    seen.add(id(weight))
                    result.append(weight)
        return result

    @property
    def trainable_weights(self):
        """The weight Parameters the optimizer updates."""
        seen, result = set(), []
        for layer in self.layers:
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
        return [array for layer in self.layers for array in layer.get_weights()]

    def set_weights(self, weights):
        """Set every layer's weights from a list as :meth:`get_weights` returns, all or nothing.

        Every array is checked (count, shape, real floating dtype, finiteness;
        see ``Layer.set_weights``) before any layer is written, so after an
        error the model is unchanged.
        """
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise ArgumentError(f"model {self.name!r} has {expected} weight array(s); got {len(weights)}")
        prepared = []
        start = 0
        for layer in self.layers:
            count = len(layer.weights)
            prepared += layer._prepare_weights(weights[start:start + count])
            start += count
        apply_update(prepared)

    def count_params(self):
        """The number of scalars in every weight."""
        return int(sum(w.size for w in self.weights))

    # compile ------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, run_eagerly=False,
                jit_compile="auto", steps_per_execution=1):
        """Choose the optimizer, the loss and the metrics.

        Parameters
        ----------
        optimizer : str or Optimizer, default "rmsprop"
            ``"sgd"``, ``"rmsprop"``, ``"adam"``, ``"adamw"`` or an instance of
            :mod:`fastrnn.keras.optimizers`.
        loss : str, Loss, list or dict
            ``"binary_crossentropy"``, ``"categorical_crossentropy"``,
            ``"sparse_categorical_crossentropy"``, ``"mse"``/``"mean_squared_error"``,
            ``"mae"`` or an instance of :mod:`fastrnn.keras.losses`; for a model of several
            outputs one for all of them, a list with one per output, or a dict by output
            name (an output left out has no loss).
        loss_weights : list or dict, optional
            Each output's loss is multiplied by its weight (1 by default) in the total.
        metrics : list or dict, optional
            Names (``"accuracy"``/``"acc"``, ``"mse"``, ...), Metric instances
            or functions ``(y_true, y_pred) -> scores``; for several outputs a list of lists
            (one per output) or a dict by output name.
        run_eagerly, jit_compile, steps_per_execution
            Accepted for compatibility with Keras code; they change nothing here.
        """
        self.optimizer = optimizers_module.get(optimizer)
        if isinstance(loss, dict):
            self.loss = {name: None if value is None else losses_module.get(value) for name, value in loss.items()}
        elif isinstance(loss, (list, tuple)):
            self.loss = [None if value is None else losses_module.get(value) for value in loss]
        else:
            self.loss = None if loss is None else losses_module.get(loss)
        self.loss_weights = loss_weights
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str) or callable(metrics) or isinstance(metrics, metrics_module.Metric):
            metrics = [metrics]
        if isinstance(metrics, dict) and "class_name" not in metrics:
            metrics = {name: [value] if isinstance(value, str) or callable(value) else list(value or [])
                       for name, value in metrics.items()}
            identifiers = [item for value in metrics.values() for item in value]
        else:
            metrics = [metrics] if isinstance(metrics, dict) else list(metrics)
            identifiers = [item for value in metrics
                           for item in (value if isinstance(value, (list, tuple)) else [value])]
        for identifier in identifiers:
            metrics_module.check(identifier)
        self._metric_identifiers = metrics  # resolved on each first batch, when the shapes are known

    @property
    def compiled(self):
        return self.optimizer is not None

    def _require_compiled(self, action):
        self._require_layers(action)
        if self.optimizer is None:
            raise NotCompiledError(f"call compile(optimizer=..., loss=...) before {action}()")
        if not any(loss is not None for loss in self._output_losses()):
            raise NotCompiledError(f"{action}() needs a loss; compile(loss=...) was given none")

    def _output_losses(self):
        """The loss of each output (None for an output without one)."""
        return _per_output("loss", self.loss, self.output_names, None)

    def _output_loss_weights(self):
        weights = _per_output("loss_weights", self.loss_weights, self.output_names, None)
        return [1.0 if weight is None else float(weight) for weight in weights]

    def _output_metrics(self):
        """The metric identifiers of each output (a list per output)."""
        names = self.output_names
        metrics = self._metric_identifiers
        if isinstance(metrics, dict):
            _per_output("metrics", metrics, names, None)  # refuses names of no output
            return [list(metrics.get(name, [])) for name in names]
        if len(names) > 1 and metrics:
            if not all(isinstance(value, (list, tuple)) for value in metrics):
                raise ArgumentError(f"a model of {len(names)} outputs takes metrics as a list of lists (one per "
                                    f"output) or a dict by output name; got a flat list")
            return [list(value) for value in _per_output("metrics", metrics, names, None)]
        return [list(metrics)]

    @property
    def metrics_names(self):
        """``["loss", <metric names>]`` (metric names known after the first batch for ``"accuracy"``)."""
        several = len(self.output_names) > 1
        names = ["loss"]
        if several:
            names += [f"{name}_loss" for name, loss in zip(self.output_names, self._output_losses())
                      if loss is not None]
        for output, identifiers in zip(self.output_names, self._output_metrics()):
            for identifier in identifiers:
                if isinstance(identifier, str):
                    name = identifier
                elif isinstance(identifier, metrics_module.Metric):
                    name = identifier.name
                else:
                    name = getattr(identifier, "__name__", "metric")
                names.append(f"{output}_{name}" if several else name)
        return names

    # data helpers -------------------------------------------------------------------------
    def _check_pair(self, x, y, what):
        """``x`` and ``y`` as lists of arrays with the same number of samples."""
        xs = self._input_list(x, what)
        ys = self._output_list(y, what)
        counts = {len(array) for array in xs + ys}
        if len(counts) > 1:
            if len(xs) == len(ys) == 1:
                raise ShapeError(f"x and y must have the same number of samples ({what}); "
                                 f"got {len(xs[0])} in x and {len(ys[0])} in y")
            raise ShapeError(f"every input and target must have the same number of samples ({what}); got "
                             f"{[len(a) for a in xs]} in x and {[len(a) for a in ys]} in y")
        if counts == {0}:
            raise ShapeError(f"x and y have no samples ({what})")
        return xs, ys

    def _sample_weights(self, ys, sample_weight, class_weight, what):
        """Per-sample weights of each output (a list; None entries for none)."""
        if sample_weight is not None and class_weight is not None:
            raise ArgumentError(f"give sample_weight or class_weight, not both ({what})")
        if class_weight is not None:
            if len(ys) > 1:
                raise ArgumentError(f"class_weight is for a model of one output; this one has {len(ys)}: give "
                                    f"sample_weight per output instead ({what})")
            return [_class_weight_to_sample_weight(ys[0], class_weight)]
        if sample_weight is None:
            return [None] * len(ys)
        given = _per_output("sample_weight", sample_weight, self.output_names, None) \
            if isinstance(sample_weight, (dict, list, tuple)) and len(ys) > 1 else [sample_weight] * len(ys)
        weights = []
        for y, value in zip(ys, given):
            if value is None:
                weights.append(None)
                continue
            weight = _as_array(f"sample_weight ({what})", value)
            if len(weight) != len(y):
                raise ShapeError(f"sample_weight must have one entry per sample ({what}); got {len(weight)} "
                                 f"for {len(y)} samples")
            weights.append(weight.astype(np.float64, copy=False))
        return weights

    @staticmethod
    def _output_mask(mask, y_pred):
        """The output mask when it matches the per-element losses (y_pred without its last axis)."""
        if mask is None or np.shape(mask) != np.shape(y_pred)[:-1]:
            return None
        return mask

    def _losses_and_gradients(self, xs, ys, sample_weights=None, training=True):
        """One batch's forward pass and losses, and when training its backward pass.

        The gradient of the weighted total loss is left in each trainable weight's ``grad``
        (every ``grad`` is cleared first); no weight changes. This is one training step
        without its optimizer step: :meth:`train_on_batch` and ``fastrnn.dask.fit`` (which
        sums these gradients over the parts of a batch) both run it.

        Parameters
        ----------
        xs, ys : list of ndarray
            One array per input / output, batch first.
        sample_weights : list of (ndarray or None), optional
        training : bool

        Returns
        -------
        loss_logs : dict of str to float
            ``loss`` (the weighted total) and, with several outputs, ``<output>_loss``.
        y_preds : list of ndarray
        masks : list of (ndarray or None)
            The output masks the losses counted elements by.
        """
        with blas_threads.limit(self._numpy_threads()):
            if training:
                for weight in self.weights:
                    weight.grad = None
            y_preds, masks, trace = self._run(xs, training=training)
            masks = [self._output_mask(mask, y_pred) for mask, y_pred in zip(masks, y_preds)]
            sample_weights = sample_weights or [None] * len(ys)
            total, loss_logs, d_preds = 0.0, {}, []
            for name, loss_fn, weight, y, y_pred, mask, sample_weight in zip(
                    self.output_names, self._output_losses(), self._output_loss_weights(), ys, y_preds, masks,
                    sample_weights):
                if loss_fn is None:
                    d_preds.append(None)
                    continue
                value, d_pred = loss_fn.value_and_gradient(y, y_pred, mask, sample_weight)
                total += weight * value
                loss_logs[f"{name}_loss"] = value
                d_preds.append(d_pred if weight == 1.0 else d_pred * d_pred.dtype.type(weight))
            if training:
                self._backprop(trace, d_preds)
        return {"loss": total, **(loss_logs if len(ys) > 1 else {})}, y_preds, masks

    def _numpy_threads(self):
        """The BLAS threads for the NumPy work of this model's layers (Dense, Attention, losses):
        as many as its recurrent kernels run on, so the two never oversubscribe the cores.

        The largest ``n_threads`` its recurrent layers were given (capped at the cores) when
        every one has one, else what a kernel call that does not pass ``n_threads`` gets at
        most now (:func:`fastrnn._threads.default_n_threads`: the cap, and the cores other
        processes leave free).
        """
        given = [layer.n_threads for layer in _recurrent_layers(self.layers)]
        if given and all(n is not None for n in given):
            return capped_n_threads(max(given))
        return default_n_threads(available_cores())

    def _loss_and_metrics_step(self, xs, ys, metrics, training, sample_weights=None):
        """One batch: forward, losses, metric updates, and when training backward and the optimizer step.

        Returns
        -------
        loss_logs : dict of str to float
            ``loss`` (the weighted total) and, with several outputs, ``<output>_loss``.
        metrics : _Metrics
        """
        loss_logs, y_preds, masks = self._losses_and_gradients(xs, ys, sample_weights, training)
        if training:
            self._apply_finite_step(loss_logs["loss"], self.trainable_weights)
            for weight in self.weights:
                weight.grad = None
        if metrics is None:
            metrics = _Metrics(self, ys, y_preds)
        metrics.update(ys, y_preds, masks)
        return loss_logs, metrics

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
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None):
        """Train for ``epochs`` passes over ``(x, y)`` in mini-batches.

        Parameters
        ----------
        x : ndarray of shape (N, ...), a list or dict of them, a tuple, or a source of batches
            Inputs, batch first: (N, T) token ids, (N, T, D) sequences, (N, D) features;
            one per model input (a dict keyed by the inputs' names). A tuple ``(x, y)`` or
            ``(x, y, sample_weight)`` with ``y`` left out counts as those arguments. A generator
            or iterator of batches, or a sequence of them (``len`` and indexing, as Keras's
            ``PyDataset``, whose ``on_epoch_end`` is called after each epoch): each batch
            ``(x, y)`` or ``(x, y, sample_weight)``; ``y``, ``batch_size`` and
            ``validation_split`` are then not taken.
        y : ndarray of shape (N, ...), or a list or dict of them
            Targets in the layout the loss takes; one per model output (a dict keyed by
            the output layers' names).
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
        steps_per_epoch : int, optional
            Batches per epoch: by default all of the arrays', a sequence's ``len``, or as many as
            an iterator gives (it then serves one epoch only). An iterator that runs out before
            ends training with a warning.
        validation_steps : int, optional
            Batches of ``validation_data`` when it is a source of batches.

        Returns
        -------
        History
            ``history.history`` maps ``loss``, the metrics and their ``val_``
            versions to one value per epoch. The loss is the mean over the
            epoch's batches weighted by batch size; a metric is its running
            value over the whole epoch.
        """
        self._require_compiled("fit")
        verbose = _check_verbose(verbose)
        for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ArgumentError(f"{name} must be a non-negative integer; got {value!r}")
        x, y, sample_weight = _unpack_tuple(x, y, sample_weight)
        validation = None
        if is_batch_source(x):
            _refuse_with_batches(y=y, batch_size=batch_size, sample_weight=sample_weight,
                                 validation_split=validation_split or None)
            train = SourceBatches(x, steps_per_epoch, self._batch_converter("training data", class_weight),
                                  "training data")
            batch_size = 32  # for arrays of validation_data
        else:
            x, y = self._check_pair(x, y, "training data")
            weights = self._sample_weights(y, sample_weight, class_weight, "training data")
            _check_finite_data("x", x)
            _check_finite_data("y", y)
            _check_finite_data("sample_weight", weights)
            batch_size = _check_batch_size(batch_size)
            if validation_data is None and validation_split:
                if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                        or not 0 <= validation_split < 1:
                    raise ArgumentError(f"validation_split must be a number in [0, 1); got {validation_split!r}")
                n = _samples(x)
                split_at = int(math.floor(n * (1.0 - validation_split)))
                if split_at == 0 or split_at == n:
                    raise ArgumentError(f"validation_split={validation_split} leaves {split_at} training and "
                                        f"{n - split_at} validation sample(s) out of {n}; both must be > 0")
                before, after = slice(None, split_at), slice(split_at, None)
                validation = ArrayBatches(_rows(x, after), _rows(y, after), _rows(weights, after), batch_size, False)
                x, y, weights = _rows(x, before), _rows(y, before), _rows(weights, before)
            train = _limited(ArrayBatches(x, y, weights, batch_size, shuffle), steps_per_epoch, "steps_per_epoch")
        if validation_data is not None:
            validation = self._validation_batches(validation_data, validation_steps, batch_size)

        history = History()
        callbacks = list(callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise ArgumentError("callbacks must be fastrnn.keras.callbacks.Callback instances; "
                                    f"got {type(callback).__name__}")
        callbacks.append(history)  # last, as in Keras: it sees what the other callbacks add to the logs
        params = {"epochs": epochs, "steps": train.steps, "verbose": verbose}
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
            progress = _Progress(verbose, train.steps, f"Epoch {epoch + 1}/{epochs}")
            means, metrics = _LossMeans(), None
            for step, (x_batch, y_batch, weight_batch) in enumerate(train.epoch()):
                for callback in callbacks:
                    callback.on_train_batch_begin(step)
                try:
                    loss_logs, metrics = self._loss_and_metrics_step(
                        x_batch, y_batch, metrics, training=True, sample_weights=weight_batch)
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
                means.add(loss_logs, _samples(x_batch))
                logs = {**means.result(), **metrics.results()}
                progress.update(logs)
                for callback in callbacks:
                    callback.on_train_batch_end(step, logs)
            if metrics is None:  # an iterator with nothing left: no epoch to report
                progress.close(logs)
                self.stop_training = True
                break
            if validation is not None and not self.stop_training:
                logs.update({f"val_{key}": value for key, value in self._evaluate_batches(validation).items()})
            if getattr(train, "exhausted", False):  # the iterator ran out during this epoch
                self.stop_training = True
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
        for name, arrays in (("x", x), ("y", y), ("sample_weight", weights)):
            _check_finite_data(name, arrays)
        loss_logs, metrics = self._loss_and_metrics_step(x, y, None, training=True, sample_weights=weights)
        return self._result({**loss_logs, **metrics.results()}, return_dict)

    # evaluation and prediction ------------------------------------------------------------
    def _batch_converter(self, what, class_weight=None):
        """A function checking and converting one batch ``(x, y[, sample_weight])`` of a source."""
        def convert(batch):
            x, y, weight = split_batch(batch, what)
            xs, ys = self._check_pair(x, y, what)
            weights = self._sample_weights(ys, weight, class_weight, what)
            for name, arrays in (("x", xs), ("y", ys), ("sample_weight", weights)):
                _check_finite_data(f"{name} of a batch of {what}", arrays)
            return xs, ys, weights
        return convert

    def _validation_batches(self, validation_data, validation_steps, batch_size):
        if is_batch_source(validation_data):
            return SourceBatches(validation_data, validation_steps, self._batch_converter("validation_data"),
                                 "validation_data")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ArgumentError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                                f"sample_weight_val), or a source of batches; got {type(validation_data).__name__}"
                                f" of length {len(validation_data) if hasattr(validation_data, '__len__') else '?'}")
        x_val, y_val = self._check_pair(validation_data[0], validation_data[1], "validation_data")
        weights = self._sample_weights(y_val, validation_data[2] if len(validation_data) == 3 else None, None,
                                       "validation_data")
        return _limited(ArrayBatches(x_val, y_val, weights, batch_size, False), validation_steps, "validation_steps")

    def _evaluate_batches(self, batches, verbose=0):
        means, metrics = _LossMeans(), None
        progress = _Progress(verbose, batches.steps, "Evaluate")
        logs = {}
        for x, y, weights in batches.epoch():
            loss_logs, metrics = self._loss_and_metrics_step(x, y, metrics, training=False, sample_weights=weights)
            means.add(loss_logs, _samples(x))
            logs = {**means.result(), **metrics.results()}
            progress.update(logs)
        progress.close(logs)
        if metrics is None:
            raise ArgumentError("the evaluation data gave no batch")
        return logs

    @staticmethod
    def _result(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 return_dict=False):
        """The loss and metrics on ``(x, y)``, computed in batches without training.

        Parameters
        ----------
        x, y : ndarray of shape (N, ...), or lists or dicts of them (one per input / output)
            Or ``x`` a tuple ``(x, y[, sample_weight])``, or a source of batches, as :meth:`fit` takes.
        batch_size : int, default 32
        verbose : {"auto", 0, 1, 2}
        sample_weight : ndarray of shape (N,) or (N, T), optional
        steps : int, optional
            Batches to evaluate (by default all).
        return_dict : bool, default False

        Returns
        -------
        float, list of float, or dict
            The loss alone when there are no metrics (and one output), else ``[loss,
            *output losses, *metrics]`` (or a dict keyed by name).
        """
        self._require_compiled("evaluate")
        x, y, sample_weight = _unpack_tuple(x, y, sample_weight)
        if is_batch_source(x):
            _refuse_with_batches(y=y, batch_size=batch_size, sample_weight=sample_weight)
            batches = SourceBatches(x, steps, self._batch_converter("evaluate"), "evaluate")
        else:
            x, y = self._check_pair(x, y, "evaluate")
            weights = self._sample_weights(y, sample_weight, None, "evaluate")
            batches = _limited(ArrayBatches(x, y, weights, _check_batch_size(batch_size), False), steps, "steps")
        return self._result(self._evaluate_batches(batches, _check_verbose(verbose)), return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """The loss (and metrics) of one batch, without training."""
        self._require_compiled("test_on_batch")
        x, y = self._check_pair(x, y, "test_on_batch")
        weights = self._sample_weights(y, sample_weight, None, "test_on_batch")
        loss_logs, metrics = self._loss_and_metrics_step(x, y, None, training=False, sample_weights=weights)
        return self._result({**loss_logs, **metrics.results()}, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        """The model's output for ``x``, computed ``batch_size`` samples at a time.

        Parameters
        ----------
        x : ndarray of shape (N, ...), or a list or dict of them (one per input)
            Or a source of batches, each ``x`` or a tuple whose first entry is ``x``.
        batch_size : int, default 32
        verbose : {"auto", 0, 1, 2}
        steps : int, optional
            Batches to predict (by default all).

        Returns
        -------
        ndarray of shape (N, ...), or a list of them (one per output)
            The batches' outputs joined along the first axis.
        """
        self._require_layers("predict")
        if is_batch_source(x):
            _refuse_with_batches(batch_size=batch_size)

            def convert(batch):
                return self._input_list(split_batch(batch, "predict", need_targets=False)[0], "predict"), None, None

            batches = SourceBatches(x, steps, convert, "predict")
        else:
            xs = self._input_list(x, "predict")
            if len({len(a) for a in xs}) > 1:
                raise ShapeError(f"every input must have the same number of samples; got {[len(a) for a in xs]}")
            if _samples(xs) == 0:
                raise ShapeError("x has no samples")
            batches = _limited(ArrayBatches(xs, [], [], _check_batch_size(batch_size), False), steps, "steps")
        progress = _Progress(_check_verbose(verbose), batches.steps, "Predict")
        outputs = []
        for xs, _, _ in batches.epoch():
            with blas_threads.limit(self._numpy_threads()):
                outputs.append(self._run(xs, training=False)[0])
            progress.update({})
        progress.close({})
        if not outputs:
            raise ArgumentError("the prediction data gave no batch")
        joined = [np.concatenate([batch[index] for batch in outputs], axis=0) for index in range(len(outputs[0]))]
        return joined[0] if len(joined) == 1 else joined

    def predict_on_batch(self, x):
        """The model's output for one batch (no batching)."""
        return self(x)

    def __call__(self, x, training=False):
        """The model's output on ``x`` in one pass (no batching): an array, or a list per output."""
        self._require_layers("call")
        xs = self._input_list(x, "call")
        with blas_threads.limit(self._numpy_threads()):
            outputs = self._run(xs, training)[0]
        return outputs[0] if len(outputs) == 1 else outputs

    def quantized(self, precision):
        """A copy of this model whose recurrent layers run inference in ``precision``
        (:func:`fastrnn.quantize`).

        Parameters
        ----------
        precision : {"float32", "bf16", "int8"}

        Returns
        -------
        Model
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
        for layer in clone.layers:
            layer._apply_precision(precision)
        return clone

    # description --------------------------------------------------------------------------
    def _summary_rows(self):
        """The summary table: its header and rows (tuples of cells; a cell may be a list of lines)."""
        raise NotImplementedError

    def summary(self, line_length=None, print_fn=None):
        """Print a table of the layers: name (type), output shape (None for the batch), parameter
        count, and for a functional model what each layer call is connected to.

        Parameters
        ----------
        line_length : int, optional
            Total width; defaults to what fits the names.
        print_fn : callable, optional
            Called with each line instead of ``print``.
        """
        print_fn = print_fn or print
        header, rows = self._summary_rows()
        rows = [tuple(cell if isinstance(cell, list) else [cell] for cell in row) for row in rows]
        columns = len(header)
        widths = [max([len(header[i])] + [len(line) for row in rows for line in row[i]]) + 3 for i in range(columns)]
        widths[0], widths[1] = max(widths[0], 29), max(widths[1], 26)
        if line_length is not None and line_length > sum(widths):
            widths[0] += line_length - sum(widths)
        total_width = sum(widths)

        def line(cells):
            text = (" " + cells[0]).ljust(widths[0]) + cells[1].ljust(widths[1]) + cells[2].rjust(widths[2] - 3)
            return text + "".join("   " + cell.ljust(width - 3) for cell, width in zip(cells[3:], widths[3:])).rstrip()

        trainable = int(sum(w.size for w in self.trainable_weights))
        total = self.count_params()
        trainable_bytes = sum(w.nbytes for w in self.trainable_weights)
        total_bytes = sum(w.nbytes for w in self.weights)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * total_width)
        print_fn(line(header))
        print_fn("=" * total_width)
        for index, row in enumerate(rows):
            for depth in range(max(len(cell) for cell in row)):
                print_fn(line([cell[depth] if depth < len(cell) else "" for cell in row]))
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

    def save(self, filepath):
        """Write the model to one file, in the format the extension names: ``.keras`` a real
        Keras 3 archive, any other (``.fastrnn`` by convention) fastrnn's own format with the
        compile settings and optimizer state.

        See :func:`fastrnn.keras.file_formats.save_model`.
        """
        save_model(self, filepath)

    def save_weights(self, filepath):
        """Write the weights in Keras 3's ``.weights.h5`` layout, which ``keras.Model.load_weights``
        reads into the same architecture (needs h5py: ``pip install "fastrnn[keras]"``).

        Parameters
        ----------
        filepath : str or os.PathLike
            Must end in ``.weights.h5``, as Keras 3 requires.

        Raises
        ------
        ArgumentError
            For another file name.
        ModelFileError
            For a model that is not built.
        """
        from fastrnn.keras.keras_files import save_weights_h5

        save_weights_h5(self, _weights_path(filepath, "save_weights"))

    def load_weights(self, filepath):
        """Set the weights from a ``.weights.h5`` file (Keras 3's layout, written by Keras or by
        :meth:`save_weights`) or a legacy Keras ``.h5`` file, all or nothing; layers are matched
        by position and class, as Keras matches them.

        Raises
        ------
        ModelFileError
            When the file does not hold weights of this architecture, or is damaged.
        """
        from fastrnn.keras.keras_files import load_weights_h5

        path = os.fspath(filepath)
        with open(path, "rb"):  # FileNotFoundError stays what it is
            pass
        load_weights_h5(self, path)


def nested_layers(layers):
    """Every layer of ``layers`` and every layer they hold (a Bidirectional's two, a TimeDistributed's
    one), each once."""
    found, seen, stack = [], set(), list(layers)
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        stack += [child for child in vars(layer).values() if hasattr(child, "trainable_weights")]
    return found


def _recurrent_layers(layers):
    """The layers (wrapped ones included) that run fastrnn kernels: those with ``n_threads``."""
    return [layer for layer in nested_layers(layers) if "n_threads" in vars(layer)]


def _weights_path(filepath, method):
    path = os.fspath(filepath)
    if not path.endswith(".weights.h5"):
        raise ArgumentError(f"{method}: filepath must end in '.weights.h5' (Keras 3's weights format); "
                            f"got {path!r}")
    return path
