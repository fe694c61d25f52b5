"""Hooks into Sequential.fit, as keras.callbacks: the base Callback, History, EarlyStopping, ModelCheckpoint,
TerminateOnNaN, the learning-rate schedules (LearningRateScheduler, ReduceLROnPlateau), CSVLogger and
LambdaCallback."""

import csv
import math
import os
import warnings

from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "LambdaCallback"]


class Callback:
    """Hooks called by :meth:`fastrnn.keras.Sequential.fit`; override the ones you need.

    ``logs`` is a dict of floats: ``loss`` and the metrics (running means over
    the epoch so far), plus ``val_*`` at the end of an epoch with validation.
    Set ``self.model.stop_training = True`` to end training after the epoch.

    Attributes
    ----------
    model : Sequential
    params : dict
        ``epochs``, ``steps`` (batches per epoch) and ``verbose``.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """What :meth:`fastrnn.keras.Sequential.fit` returns: the logs of every epoch.

    Attributes
    ----------
    history : dict of str to list of float
        ``loss``, one key per metric, and ``val_loss``/``val_<metric>`` when
        there is validation data; one entry per epoch.
    epoch : list of int
        The (0-based) epochs run.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _direction(monitor, mode):
    """``"max"`` or ``"min"``: ``auto`` means max for accuracies and AUC, min for everything else."""
    if mode not in ("auto", "min", "max"):
        raise ArgumentError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if ("acc" in name or name.endswith("auc")) else "min"


class EarlyStopping(Callback):
    """Stop training when a monitored value has stopped improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs.
    min_delta : float, default 0
        Smallest change that counts as an improvement.
    patience : int, default 0
        Epochs without improvement before stopping.
    verbose : int, default 0
        1 prints a line when training stops.
    mode : {"auto", "min", "max"}
    baseline : float, optional
        Training stops unless the value beats it within ``patience`` epochs.
    restore_best_weights : bool, default False
        Put back the weights of the best epoch when stopping.
    start_from_epoch : int, default 0
        Epochs to wait before monitoring at all.

    Attributes
    ----------
    stopped_epoch : int
        The epoch training stopped after (0 if it did not stop early).
    best : float
    best_epoch : int
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _direction(monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def _improves(self, value, reference):
        if reference is None:
            return True
        if self.mode == "max":
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"EarlyStopping monitors {self.monitor!r}, which is not in the logs "
                          f"(available: {', '.join(logs or {})})", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self._improves(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping (best {self.monitor} {self.best:.4f} "
                      f"at epoch {self.best_epoch + 1})")


class ModelCheckpoint(Callback):
    """Save the model at the end of every epoch, or only when a monitored value improves.

    Parameters
    ----------
    filepath : str or os.PathLike
        May hold ``{epoch}`` (1-based) and log keys, e.g.
        ``"model-{epoch:02d}-{val_loss:.3f}.fastrnn"``. The extension picks the format as
        ``Model.save`` does (``.keras``: a Keras 3 archive); with ``save_weights_only`` it must
        end in ``.weights.h5``, as in Keras 3.
    monitor : str, default "val_loss"
    verbose : int, default 0
    save_best_only : bool, default False
    mode : {"auto", "min", "max"}
    save_weights_only : bool, default False
        Write only the weights, with ``model.save_weights``.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto",
                 save_weights_only=False):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = check_bool("save_best_only", save_best_only)
        self.save_weights_only = check_bool("save_weights_only", save_weights_only)
        if self.save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ArgumentError("ModelCheckpoint: with save_weights_only=True, filepath must end in "
                                f"'.weights.h5'; got {self.filepath!r}")
        self.mode = _direction(monitor, mode)
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warnings.warn(f"ModelCheckpoint monitors {self.monitor!r}, which is not in the logs", stacklevel=2)
                return
            better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            if not better:
                return
            self.best = value
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved the {'weights' if self.save_weights_only else 'model'} to {path}")


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite.

    Without it, :meth:`fastrnn.keras.Sequential.fit` raises
    :class:`fastrnn.exceptions.NonFiniteError` at such a batch; with it,
    ``fit`` returns normally. Either way the step of that batch is not applied,
    so the model keeps the weights of the last good step.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: the loss is {loss}; training stops", flush=True)
            self.model.stop_training = True


def _learning_rate(model):
    """The learning rate of ``model``'s optimizer (a compiled model's)."""
    return float(model.optimizer.learning_rate)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch from a schedule.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr)`` (or ``schedule(epoch)``) -> the new learning rate, a float;
        ``epoch`` counts from 0 and ``lr`` is the current rate.
    verbose : int, default 0
        1 prints the rate set at each epoch.

    Notes
    -----
    Each epoch's logs get ``learning_rate``, the rate it ran with.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ArgumentError(f"schedule must be callable, schedule(epoch, lr) -> float; got "
                                f"{type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = _learning_rate(self.model)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:  # a schedule of the epoch alone
            lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            raise ArgumentError(f"the schedule must return a finite non-negative float; at epoch {epoch} "
                                f"it returned {lr!r}")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler sets the learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a monitored value stops improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs.
    factor : float, default 0.1
        The new rate is ``max(lr * factor, min_lr)``; below 1.
    patience : int, default 10
        Epochs without improvement before the rate drops.
    verbose : int, default 0
        1 prints a line when the rate drops.
    mode : {"auto", "min", "max"}
        ``auto``: max for accuracies and AUC, min otherwise.
    min_delta : float, default 1e-4
        Smallest change that counts as an improvement.
    cooldown : int, default 0
        Epochs after a drop during which no epoch counts towards ``patience``.
    min_lr : float, default 0
        The rate never goes below it.

    Notes
    -----
    Each epoch's logs get ``learning_rate``, the rate it ran with.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 <= float(factor) < 1:
            raise ArgumentError(f"factor must be in [0, 1) (the rate is multiplied by it); got {factor!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _direction(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)

    def _improves(self, value):
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.cooldown_counter = 0
        self.best = -math.inf if self.mode == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _learning_rate(self.model)
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not in the logs "
                          f"(available: {', '.join(logs)})", stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(value):
            self.best = value
            self.wait = 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        lr = _learning_rate(self.model)
        if lr > self.min_lr:
            new_lr = max(lr * self.factor, self.min_lr)
            self.model.optimizer.learning_rate = new_lr
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reduces the learning rate to {new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file.

    Parameters
    ----------
    filename : str or os.PathLike
    separator : str, default ","
    append : bool, default False
        Add to an existing file (without a second header) instead of replacing it.

    Notes
    -----
    The columns are ``epoch`` (from 0) and the first epoch's log keys, sorted; a value an
    epoch lacks (``val_*`` of an epoch without validation) is written as ``NA``.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = check_bool("append", append)
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        header = not (self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0)
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115 (closed at train end)
        self._header = header
        self._writer = None
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *self._keys],
                                          delimiter=self.separator, extrasaction="ignore")
            if self._header:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{key: logs.get(key, "NA") for key in self._keys}})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None

    def __getstate__(self):
        # an open file does not travel: a copy made during fit writes nothing more
        return {**self.__dict__, "_file": None, "_writer": None}


class LambdaCallback(Callback):
    """A callback made of plain functions, for the hooks given.

    Parameters
    ----------
    on_epoch_begin, on_epoch_end : callable, optional
        ``f(epoch, logs)``.
    on_train_batch_begin, on_train_batch_end : callable, optional
        ``f(batch, logs)``; ``on_batch_begin`` / ``on_batch_end`` are the same hooks.
    on_train_begin, on_train_end : callable, optional
        ``f(logs)``.
    """

    _HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "on_train_batch_begin",
              "on_train_batch_end")
    _ALIASES = {"on_batch_begin": "on_train_batch_begin", "on_batch_end": "on_train_batch_end"}

    def __init__(self, **hooks):
        super().__init__()
        for name, function in hooks.items():
            hook = self._ALIASES.get(name, name)
            if hook not in self._HOOKS:
                raise ArgumentError(f"LambdaCallback has no hook {name!r}; the hooks are "
                                    f"{', '.join(self._HOOKS + tuple(self._ALIASES))}")
            if function is None:
                continue
            if not callable(function):
                raise ArgumentError(f"{name} must be callable; got {type(function).__name__}")
            setattr(self, hook, function)
