"""fastrnn on Dask: lazy inference over dask arrays and data-parallel training on ``dask.distributed``.

* :func:`predict` maps a model over a dask array chunked along its batch axis and
  returns a lazy dask array; it runs on the threaded, process and distributed
  schedulers.
* :func:`fit` trains a :mod:`fastrnn.nn` module or a :mod:`fastrnn.keras` model
  data-parallel on a ``dask.distributed`` cluster: each step's global batch is cut
  into one part per worker, the parts' gradients are summed in a fixed order, and the
  coordinator (the calling process) takes the optimizer step.

Dask is an optional dependency (the ``dask`` extra: ``pip install "fastrnn[dask]"``);
importing this module works without it, and each function says so when it is missing.
"""

import copy
import multiprocessing
import os
import pickle
import threading
import time
import uuid
import warnings
from collections import OrderedDict

import numpy as np

from fastrnn._threads import available_cores
from fastrnn.exceptions import ArgumentError, DTypeError, FastRNNError, ShapeError

__all__ = ["predict", "fit", "History", "task_threads"]

_EXTRA = 'the "dask" extra (pip install "fastrnn[dask]")'


def _require(what, module="dask"):
    """Import ``module`` (dask or distributed), or raise an ImportError naming the extra."""
    try:
        if module == "distributed":
            import distributed
            return distributed
        import dask.array
        return dask
    except ImportError as error:
        raise ImportError(f"fastrnn.dask.{what} needs {module}: install {_EXTRA}") from error


# -- which model, and how it runs ---------------------------------------------------------------

def _model_kind(model):
    """``"nn"`` for a :class:`fastrnn.nn.Module`, ``"keras"`` for a Keras-style model."""
    from fastrnn.keras.training import TrainingModel
    from fastrnn.nn.module import Module

    if isinstance(model, Module):
        return "nn"
    if isinstance(model, TrainingModel):
        return "keras"
    raise ArgumentError("model must be a fastrnn.nn module (RNN, LSTM, GRU) or a fastrnn.keras model; "
                        f"got {type(model).__name__}")


def _set_threads(obj, n_threads, seen=None):
    """Set ``n_threads`` on every fastrnn layer reachable from ``obj`` (a replica, never the
    caller's model)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        children = obj
    elif isinstance(obj, dict):
        children = obj.values()
    elif type(obj).__module__.startswith("fastrnn.") and hasattr(obj, "__dict__"):
        if "n_threads" in vars(obj):
            obj.n_threads = n_threads
        children = vars(obj).values()
    else:
        return
    for child in children:
        if isinstance(child, (list, tuple, dict)) or type(child).__module__.startswith("fastrnn."):
            _set_threads(child, n_threads, seen)


def _nn_forward(module, x, lengths):
    """A :mod:`fastrnn.nn` module's output on a batch-first ``x``, batch first."""
    data = x if module.batch_first else np.swapaxes(x, 0, 1)
    output = module(data, lengths=lengths)[0]
    return output if module.batch_first else np.swapaxes(output, 0, 1)


def _run_model(kind, model, x, lengths):
    if kind == "nn":
        from fastrnn.nn.grad_mode import no_grad

        with no_grad():
            return _nn_forward(model, x, lengths)
    output = model(x, training=False)
    if isinstance(output, list):
        raise ArgumentError(f"fastrnn.dask.predict takes a model with one output; this one has {len(output)}")
    return output


# -- threads per task ---------------------------------------------------------------------------

_running = 0  # this process's fastrnn.dask tasks running now (threaded and synchronous schedulers)
_running_lock = threading.Lock()


def task_threads():
    """The kernel threads a task running now may use without oversubscribing its worker.

    * on a ``dask.distributed`` worker: the worker's threads divided among the tasks it is
      executing (a worker with ``k`` threads running ``k`` tasks gives each 1);
    * in a process of the process-pool scheduler (one task at a time per process): the
      cores divided among the pool's processes (``dask.config`` ``num_workers``, else one
      per core);
    * on the threaded or synchronous scheduler: the cores divided among the fastrnn.dask
      tasks this process runs now.

    Returns
    -------
    int
        At least 1.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        return max(1, worker.state.nthreads // max(1, worker.state.executing_count))
    cores = available_cores()
    if multiprocessing.parent_process() is not None:
        import dask

        processes = dask.config.get("num_workers", None) or os.cpu_count() or 1
        return max(1, cores // processes)
    return max(1, cores // max(1, _running))


class _Running:
    """Count this task among the running ones for :func:`task_threads`."""

    def __enter__(self):
        global _running
        with _running_lock:
            _running += 1

    def __exit__(self, *exc):
        global _running
        with _running_lock:
            _running -= 1


# -- the model as the graph carries it ----------------------------------------------------------

_LOADED = OrderedDict()  # token -> what this process unpickled, the newest last
_LOADED_LOCK = threading.Lock()
_KEEP_LOADED = 8


class _Shipped:
    """A model (with anything else a task needs) pickled once, unpickled once per process.

    Pickling the holder carries the bytes and a token; unpickling it anywhere only
    records them, and :meth:`load` unpickles the bytes the first time a task of this
    process asks, later tasks reusing that copy. The caller's own object is never
    used by the tasks, so they may set its threads and modes freely.
    """

    def __init__(self, payload, token=None):
        self.payload = payload
        self.token = token or uuid.uuid4().hex

    @classmethod
    def of(cls, obj):
        try:  # dask's own pickler (a dependency of dask): takes classes defined in __main__ too
            import cloudpickle as pickler
        except ImportError:
            pickler = pickle
        return cls(pickler.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def __reduce__(self):
        return (_Shipped, (self.payload, self.token))

    def __dask_tokenize__(self):
        return self.token

    def load(self):
        with _LOADED_LOCK:
            loaded = _LOADED.get(self.token)
            if loaded is None:
                loaded = _LOADED[self.token] = pickle.loads(self.payload)
                while len(_LOADED) > _KEEP_LOADED:
                    _LOADED.popitem(last=False)
            _LOADED.move_to_end(self.token)
            return loaded


_per_thread = threading.local()


def _thread_copy(shipped):
    """This thread's own copy of what ``shipped`` holds (training keeps gradients on it)."""
    copies = getattr(_per_thread, "copies", None)
    if copies is None:
        copies = _per_thread.copies = OrderedDict()
    if shipped.token not in copies:
        copies[shipped.token] = copy.deepcopy(shipped.load())
        while len(copies) > _KEEP_LOADED:
            copies.popitem(last=False)
    return copies[shipped.token]


# -- predict ------------------------------------------------------------------------------------

def _predict_block(shipped, kind, x, lengths=None):
    with _Running():
        model = shipped.load()
        _set_threads(model, task_threads())
        if kind == "nn" and model.training:
            model.eval()
        return _run_model(kind, model, np.asarray(x), None if lengths is None else np.asarray(lengths))


def _check_batch_chunks(name, array, ndims):
    if array.ndim not in ndims:
        raise ShapeError(f"{name} must have {' or '.join(map(str, ndims))} axes; got shape {array.shape}")
    for axis in range(1, array.ndim):
        if len(array.chunks[axis]) != 1:
            raise ShapeError(
                f"{name} must be chunked along its batch axis (axis 0) only; axis {axis} has "
                f"{len(array.chunks[axis])} chunks {array.chunks[axis]}: rechunk it first, e.g. "
                f"{name}.rechunk({{{', '.join(f'{a}: -1' for a in range(1, array.ndim))}}})")


def predict(model, x, lengths=None, batch_size=None):
    """The model's outputs over a dask array, as a lazy dask array.

    Each chunk of ``x`` (along the batch axis) becomes one task that runs the model
    on it. The model is pickled once, here, into one graph key that every task depends
    on: a ``dask.distributed`` worker fetches it once (no need to scatter it first) and
    unpickles it once; the threaded scheduler unpickles it once; under the process-pool
    scheduler its bytes ride along with each task, but each process unpickles them once.

    Threads: each task runs the model's kernels on as many threads as its worker has
    to give (:func:`task_threads`): a ``dask.distributed`` worker with ``k`` threads
    running ``k`` tasks gives each 1 thread, one running a single task gives it ``k``;
    the threaded scheduler divides the cores among the running tasks; each process of
    the process-pool scheduler gets the cores divided by the pool's size. The caller's
    model is not changed (tasks use their own copy). Results do not depend on threads.

    Chunks are read by their own tasks, so an input backed by Zarr or a ``.npy``
    memory map (``dask.array.from_zarr``, ``dask.array.from_array(np.load(path,
    mmap_mode="r"), chunks=...)``) is never loaded whole.

    Parameters
    ----------
    model : fastrnn.nn.Module or fastrnn.keras model
        An nn module (RNN, LSTM, GRU: the result is its ``output``, batch first) runs in
        ``eval()`` mode on features; a Keras-style model (one output) runs with
        ``training=False`` on what it takes (features or token ids).
    x : dask.array.Array of shape (N, T, D), or (N, T) of token ids for a Keras model
        Chunked along axis 0 only.
    lengths : dask.array.Array or array_like of int of shape (N,), optional
        Valid steps of each row (nn modules only); rechunked to ``x``'s batch chunks
        where it is chunked otherwise.
    batch_size : int, optional
        Rechunk ``x`` to this many rows per chunk first (by default its chunks are kept).

    Returns
    -------
    dask.array.Array of shape (N, ...)
        Lazy; one chunk per chunk of ``x``, the trailing shape and dtype found by running
        the model once on one zero sample here.

    Raises
    ------
    ShapeError
        For ``x`` chunked along another axis (with the rechunk call to use), or ``lengths``
        of another shape.
    ArgumentError
        For a model fastrnn.dask cannot run, ``lengths`` with a Keras model, or a bad
        ``batch_size``.
    ImportError
        Without dask (names the extra).
    """
    dask = _require("predict")
    import dask.array as da

    kind = _model_kind(model)
    if not isinstance(x, da.Array):
        raise ArgumentError(f"x must be a dask array; got {type(x).__name__} (wrap it with dask.array.from_array)")
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
        x = x.rechunk({0: int(batch_size)})
    _check_batch_chunks("x", x, (3,) if kind == "nn" else (2, 3))
    if kind == "nn" and x.dtype.kind != "f":
        raise DTypeError(f"x of an nn module must hold floats (N, T, D); got dtype {x.dtype}")
    if lengths is not None:
        if kind != "nn":
            raise ArgumentError("lengths is for nn modules; a Keras model masks through its layers")
        if not isinstance(lengths, da.Array):
            lengths = da.from_array(np.asarray(lengths), chunks=(x.chunks[0],))
        if lengths.shape != x.shape[:1]:
            raise ShapeError(f"lengths must have shape ({x.shape[0]},); got {lengths.shape}")
        if lengths.chunks[0] != x.chunks[0]:
            lengths = lengths.rechunk((x.chunks[0],))
    # the trailing shape and dtype, from one zero sample (not the data)
    probe = _run_model(kind, _probe_copy(model), np.zeros((1,) + x.shape[1:], x.dtype),
                       None if lengths is None else np.full(1, x.shape[1], np.int64))
    tail = probe.shape[1:]
    # the model is one graph key: each worker (or process) receives it once, not once per chunk
    shipped = dask.delayed(_Shipped.of(model), pure=True)
    out_index = "i" + "uvw"[:len(tail)]
    args = [x, "ijk"[:x.ndim]] + ([] if lengths is None else [lengths, "i"])
    return da.blockwise(_predict_block, out_index, shipped, None, kind, None, *args,
                        new_axes=dict(zip(out_index[1:], tail)), concatenate=True, dtype=probe.dtype,
                        meta=np.empty((0,) * (len(tail) + 1), probe.dtype), name="fastrnn-predict-"
                        + dask.base.tokenize(shipped, kind, x, lengths))


def _probe_copy(model):
    """A copy of ``model`` in inference mode, for the shape probe."""
    probe = copy.deepcopy(model)
    if hasattr(probe, "eval") and not hasattr(probe, "compile"):
        probe.eval()
    return probe


# -- data-parallel training ---------------------------------------------------------------------

class History:
    """What :func:`fit` returns: the loss of every epoch and the time of every step.

    Attributes
    ----------
    history : dict of str to list of float
        ``"loss"``: the mean training loss of each epoch (its steps' global-batch losses,
        weighted by batch size); for a Keras model of several outputs also
        ``"<output>_loss"``, each the plain mean over the epoch's steps, as ``model.fit``
        reports them.
    epoch : list of int
        The (0-based) epochs run.
    step_seconds : list of tuple of float
        ``(wall, compute)`` of each step run by this call: the coordinator's wall time of
        the step (shipping the weights, the workers' work, gathering and summing the
        gradients, the optimizer step) and the slowest part's compute time on its worker.
        ``wall - compute`` is the step's communication and scheduling time.
    """

    def __init__(self):
        self.history = {"loss": []}
        self.epoch = []
        self.step_seconds = []

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, loss={self.history['loss']})"


def _part_bounds(n_rows, n_parts):
    """Where each of ``n_parts`` nearly equal parts of ``n_rows`` rows starts, and the end."""
    return np.linspace(0, n_rows, n_parts + 1).round().astype(np.int64) if n_rows >= n_parts \
        else np.minimum(np.arange(n_parts + 1), n_rows)


def _plan(n_samples, batch_size, n_parts):
    """Which rows each part holds and where each step's rows sit in it.

    Step ``s`` trains on the global batch of rows ``[s * batch_size, (s + 1) * batch_size)``
    (the last one shorter); part ``w`` takes the ``w``-th of ``n_parts`` nearly equal slices
    of it. Returns ``(rows, offsets, sizes)``: ``rows[w]`` the sample indices of part ``w``'s
    shard in order, ``offsets[w][s]:offsets[w][s + 1]`` step ``s``'s rows within that shard,
    ``sizes[s]`` the global batch size of step ``s``.
    """
    starts = np.arange(0, n_samples, batch_size)
    sizes = np.minimum(batch_size, n_samples - starts)
    rows = [[] for _ in range(n_parts)]
    offsets = np.zeros((n_parts, len(starts) + 1), np.int64)
    for s, (start, size) in enumerate(zip(starts, sizes)):
        bounds = _part_bounds(int(size), n_parts)
        for w in range(n_parts):
            rows[w].append(np.arange(start + bounds[w], start + bounds[w + 1]))
            offsets[w, s + 1] = offsets[w, s] + bounds[w + 1] - bounds[w]
    return [np.concatenate(r) for r in rows], offsets, sizes


# -- what fit needs of a model: one trainer per kind of model ------------------------------------
#
# A trainer lives in this process: it checks the arguments, names the trainable parameters in a
# fixed order, and takes the optimizer step from the summed gradient. Its ``part()`` is what each
# worker keeps (a replica and its loss): ``gradient`` runs one part of a step there. Everything
# else in fit -- shards, scheduling, the fixed-order sum, retries, history, checkpoints -- is the
# same for every kind of model.

def _check_no_dropout(layers):
    """Refuse dropout anywhere in ``layers`` (each worker would draw its own masks)."""
    from fastrnn.keras.training import nested_layers

    for layer in nested_layers(layers):
        for attribute in ("rate", "dropout", "recurrent_dropout"):
            value = vars(layer).get(attribute)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                raise ArgumentError(f"fastrnn.dask.fit does not support dropout (each worker would draw its own "
                                    f"masks); layer {getattr(layer, 'name', type(layer).__name__)!r} has "
                                    f"{attribute}={value}")


class _NnPart:
    """A worker's replica of an nn module and its loss."""

    def __init__(self, model, loss):
        self.model, self.loss = model, loss

    def parameters(self):
        return list(self.model.parameters())

    def gradient(self, xs, ys):
        """The gradient of the part's loss, the loss, and the count it averaged over (None for a sum)."""
        model, loss = self.model, self.loss
        model.zero_grad()
        output = _nn_forward(model, xs[0], None)
        value = loss(output, ys[0])
        d_output = loss.backward()
        model.backward(d_output if model.batch_first else np.swapaxes(d_output, 0, 1))
        grads = [np.zeros_like(p.values) if p.grad is None else p.grad for p in self.parameters()]
        return grads, {"loss": float(value)}, len(xs[0]) if loss.reduction == "mean" else None


class _NnTrainer:
    """fit for a :mod:`fastrnn.nn` module: ``optimizer`` and ``loss`` given as arguments."""

    def __init__(self, model, optimizer, loss):
        from fastrnn.optim import Optimizer

        if getattr(model, "dropout", 0) and getattr(model, "num_layers", 1) > 1:
            raise ArgumentError("fastrnn.dask.fit does not support dropout (each worker would draw its own masks)")
        if not isinstance(optimizer, Optimizer):
            raise ArgumentError("optimizer must be a fastrnn.optim optimizer built on model.parameters(); "
                                f"got {type(optimizer).__name__}")
        if getattr(loss, "reduction", None) not in ("mean", "sum"):
            raise ArgumentError(f"loss must be a fastrnn.losses loss with reduction 'mean' or 'sum'; got {loss!r}")
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.parameters = list(model.parameters())
        if {id(p) for group in optimizer.param_groups for p in group["params"]} != {id(p) for p in self.parameters}:
            raise ArgumentError("optimizer must be built on model.parameters()")
        self.mean = loss.reduction == "mean"

    @staticmethod
    def arrays(value, what):
        return [value]

    def build(self, xs):
        pass  # an nn module has its weights from the start

    def part(self):
        return _NnPart(self.model, self.loss)

    def step(self, grads, loss):
        for parameter, grad in zip(self.parameters, grads):
            parameter.grad = grad
        self.optimizer.step()

    def finish(self):
        self.model.zero_grad()

    def optimizer_state(self):
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state):
        self.optimizer.load_state_dict(state)


class _KerasPart:
    """A worker's replica of a compiled Keras-style model."""

    def __init__(self, model):
        self.model = model

    def parameters(self):
        return self.model.trainable_weights

    def gradient(self, xs, ys):
        """The gradient of the part's loss (as ``train_on_batch`` computes it, without the optimizer
        step), the loss logs, and the count of elements the loss averaged over."""
        logs, _, masks = self.model._losses_and_gradients(xs, ys, training=True)
        if len(masks) > 1 and any(mask is not None for mask in masks):
            raise ArgumentError("fastrnn.dask.fit cannot split a step of a model of several outputs whose outputs "
                                "carry masks: each output's loss averages over its own unmasked elements")
        count = len(xs[0]) if masks[0] is None else int(np.count_nonzero(masks[0]))
        grads = [np.zeros_like(p.values) if p.grad is None else p.grad for p in self.parameters()]
        return grads, logs, count


class _KerasTrainer:
    """fit for a :mod:`fastrnn.keras` model: the optimizer and loss of ``model.compile``, or, when
    given as arguments, compiled into the model first (its loss weights and metrics kept)."""

    mean = True  # Keras losses average over the batch's (unmasked) elements

    def __init__(self, model, optimizer, loss):
        if optimizer is not None or loss is not None:
            model.compile(optimizer=optimizer if optimizer is not None else (model.optimizer or "rmsprop"),
                          loss=loss if loss is not None else model.loss, loss_weights=model.loss_weights,
                          metrics=model._metric_identifiers)
        model._require_compiled("fastrnn.dask.fit")
        _check_no_dropout(model.layers)
        self.model = model

    def arrays(self, value, what):
        """``x`` or ``y`` as one array per model input or output (without reading a dask array)."""
        names = (getattr(self.model, "input_names", None) or ["input"]) if what == "x" else self.model.output_names
        if isinstance(value, dict):
            missing = [name for name in names if name not in value]
            if missing or len(value) != len(names):
                raise ArgumentError(f"{what} is a dict keyed by the model's {'inputs' if what == 'x' else 'outputs'} "
                                    f"{names}; got keys {sorted(value)}")
            return [value[name] for name in names]
        if isinstance(value, (list, tuple)) and (len(names) > 1 or len(value) == 1):
            if len(value) != len(names):
                raise ArgumentError(f"{what} must be a list of {len(names)} arrays, one per model "
                                    f"{'input' if what == 'x' else 'output'}; got {len(value)}")
            return list(value)
        if len(names) > 1:
            raise ArgumentError(f"{what} must be a list of {len(names)} arrays (or a dict keyed by {names}); "
                                f"got {type(value).__name__}")
        return [value]

    def build(self, xs):
        """Build the model here from one sample, so that every replica starts from these weights."""
        if not self.model.built:
            self.model._run([np.asarray(array[:1]) for array in xs], training=False)
        self.parameters = self.model.trainable_weights

    def part(self):
        return _KerasPart(self.model)

    def step(self, grads, loss):
        for parameter, grad in zip(self.parameters, grads):
            parameter.grad = grad
        self.model._apply_finite_step(loss, self.parameters)  # NonFiniteError keeps the weights
        self.finish()

    def finish(self):
        for weight in self.model.weights:
            weight.grad = None

    def optimizer_state(self):
        optimizer = self.model.optimizer
        return {"slots": optimizer.get_slot_arrays(self.parameters), "iterations": optimizer.iterations}

    def load_optimizer_state(self, state):
        self.model.optimizer.set_slot_arrays(self.parameters, state["slots"], state["iterations"])


_TRAINERS = {"nn": _NnTrainer, "keras": _KerasTrainer}


def _part_gradient(shipped, x_shard, y_shard, weights, lo, hi):
    """One part's gradient for one step, run on the worker that holds the shard.

    Returns the part's gradient and loss logs (of its loss averaged over its own rows), the
    count it averaged over (None for a summed loss) and the seconds it computed.
    """
    start = time.perf_counter()
    with _Running():
        part = _thread_copy(shipped)
        _set_threads(part.model, task_threads())
        parameters = part.parameters()
        for parameter, value in zip(parameters, weights):
            parameter.data[...] = value
        if hi == lo:
            return [np.zeros_like(w) for w in weights], {}, 0, time.perf_counter() - start
        grads, logs, count = part.gradient([np.asarray(a[lo:hi]) for a in x_shard],
                                           [np.asarray(a[lo:hi]) for a in y_shard])
        return grads, logs, count, time.perf_counter() - start


def _summed(results, mean):
    """The parts' gradients and loss logs, each part weighted by its share of the global count,
    summed in part order: the same sum whichever worker ran what."""
    if mean:
        total = sum(result[2] for result in results)
        shares = [result[2] / total if total else 0.0 for result in results]
    else:
        shares = [1.0] * len(results)
    grads = []
    for index in range(len(results[0][0])):
        first = results[0][0][index]
        grad = first * first.dtype.type(shares[0])
        for result, share in zip(results[1:], shares[1:]):
            grad += result[0][index] * grad.dtype.type(share)
        grads.append(grad)
    logs = {}
    for result, share in zip(results, shares):
        for key, value in result[1].items():
            logs[key] = logs.get(key, 0.0) + value * share
    return grads, logs


def _take(array, rows):
    return np.asarray(array[rows])


def _is_fault(error):
    """Whether ``error`` came from losing a worker (worth a retry), not from the user's data."""
    if isinstance(error, (FastRNNError, TypeError, ValueError, ArithmeticError, KeyError)):
        return False
    return True


def _save_checkpoint(path, trainer, done_steps, history, epoch_sums):
    state = {"steps": done_steps, "weights": [p.values.copy() for p in trainer.parameters],
             "optimizer": trainer.optimizer_state(), "history": copy.deepcopy(history.history),
             "epoch": list(history.epoch), "epoch_sums": dict(epoch_sums)}
    partial = f"{path}.partial"
    with open(partial, "wb") as file:
        pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)  # a crash mid-write leaves the previous checkpoint whole


def _load_checkpoint(path, trainer, history):
    with open(path, "rb") as file:
        state = pickle.load(file)
    for parameter, value in zip(trainer.parameters, state["weights"]):
        parameter.data[...] = value
    trainer.load_optimizer_state(state["optimizer"])
    history.history = copy.deepcopy(state["history"])
    history.epoch = list(state["epoch"])
    return state["steps"], dict(state["epoch_sums"])


def fit(model, x, y, *, client, batch_size, epochs=1, optimizer=None, loss=None, n_parts=None,
        checkpoint=None, checkpoint_every=None, verbose=1, max_retries=5, on_step=None):
    """Train an nn module or a Keras-style model data-parallel on a ``dask.distributed`` cluster.

    Each step's global batch (``batch_size`` consecutive samples, in order, every epoch;
    shuffle the data beforehand for random batches) is cut into ``n_parts`` nearly equal
    parts, one per worker. Before the first step each part's rows of every step are
    gathered once into a shard that stays on its worker. A step ships the current weights
    to each worker once, each worker computes its part's gradient on its own copy of the
    model (kept between steps, never shipped again), the coordinator (this process) sums
    the parts' gradients in part order, each weighted by its share of the global batch,
    and takes the optimizer step on ``model``. The sum in a fixed order makes a run
    bit-for-bit reproducible for a fixed ``n_parts``, and it equals single-process
    training on the same global batches up to float32 rounding.

    A Keras-style model trains as ``model.fit`` would train it on those batches
    (``shuffle=False``): each part runs what ``train_on_batch`` runs up to the optimizer
    step, with the compiled losses, loss weights and output masks (a masked loss is the
    mean over the global batch's unmasked elements), and the coordinator takes the
    compiled optimizer's step. Compiled metrics are not computed.

    Faults: a task lost with its worker is rerun elsewhere by Dask (a shard is rebuilt from
    its source, which the graph keeps); if a step still fails it is retried, up to
    ``max_retries`` times, from the same weights. Either way the result is the one a run
    without the fault gives, bit for bit. Threads: each part's task uses the threads its
    worker has to give (:func:`task_threads`).

    Parameters
    ----------
    model : fastrnn.nn.Module or fastrnn.keras model
        Trained in place. An nn module: an RNN, LSTM or GRU (or a module with
        ``forward(x, lengths=None)`` returning ``(output, state)`` and
        ``backward(d_output)``) whose output (batch first) is what ``loss`` compares with
        ``y``. A Keras-style model (Sequential or functional ``Model``), compiled, or
        given ``optimizer`` and ``loss`` here. Dropout is not supported.
    x : ndarray or dask.array.Array of shape (N, T, D), or (N, T) of token ids for a Keras model
        For a Keras model of several inputs, a list (or a dict by input name) of them.
    y : ndarray or dask.array.Array of shape (N, ...)
        The target of the model's batch-first output; for a Keras model of several
        outputs, a list (or a dict by output name) of them.
    client : distributed.Client
    batch_size : int
        Global batch size.
    epochs : int
    optimizer : fastrnn.optim.Optimizer, or for a Keras model a fastrnn.keras optimizer or its name
        For an nn module, required and built on ``model.parameters()``. For a Keras model,
        optional: given, the model is compiled with it (and ``loss``, its loss weights and
        metrics kept) as ``model.compile`` would, so the model holds the optimizer's state
        afterwards; omitted, the compiled one is used.
    loss : fastrnn.losses loss, or for a Keras model a fastrnn.keras loss or its name
        For an nn module, required, with ``reduction`` "mean" or "sum". For a Keras model,
        optional, as ``optimizer``.
    n_parts : int, optional
        Parts per step (by default the workers the client sees when training starts).
    checkpoint : str or path, optional
        File to write every ``checkpoint_every`` steps and at the end; when it exists at
        the start, training resumes from it (weights, optimizer state, step, history).
    checkpoint_every : int, optional
    verbose : {0, 1}
        1 shows a tqdm progress bar.
    max_retries : int
        Retries of one step after a fault.
    on_step : callable, optional
        Called as ``on_step(step)`` (0-based, counted over all epochs) after each step.

    Returns
    -------
    History
        ``history["loss"]`` per epoch (and, for a Keras model of several outputs,
        ``"<output>_loss"``, as ``model.fit`` reports them).

    Raises
    ------
    ArgumentError, ShapeError
        For bad arguments, before anything runs on the cluster.
    NotCompiledError
        For a Keras model neither compiled nor given ``optimizer`` and ``loss``.
    NonFiniteError
        For a Keras model whose step would make a weight non-finite (the step is not applied).
    ImportError
        Without dask.distributed (names the extra).
    """
    _require("fit")
    distributed = _require("fit", "distributed")
    import dask.array as da
    from tqdm.auto import tqdm

    if not isinstance(client, distributed.Client):
        raise ArgumentError(f"client must be a distributed.Client; got {type(client).__name__}")
    trainer = _TRAINERS[_model_kind(model)](model, optimizer, loss)
    for name, value in [("batch_size", batch_size), ("epochs", epochs), ("max_retries", max_retries)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if name == "max_retries" else 1):
            raise ArgumentError(f"{name} must be a positive integer; got {value!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1):
        raise ArgumentError(f"checkpoint_every must be a positive integer; got {checkpoint_every!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise ArgumentError("checkpoint_every needs checkpoint, the file to write")
    xs, ys = trainer.arrays(x, "x"), trainer.arrays(y, "y")
    counts = [len(array) for array in xs + ys]
    if len(set(counts)) > 1:
        raise ShapeError(f"x and y must have the same number of samples; got {counts[0]} and {counts[len(xs)]}"
                         if len(counts) == 2 else f"every input and target must have the same number of samples; "
                         f"got {counts}")
    n_samples = counts[0]
    if n_samples == 0:
        raise ShapeError("x has no samples")
    trainer.build(xs)
    parameters = trainer.parameters

    workers = sorted(client.scheduler_info()["workers"])
    if n_parts is None:
        n_parts = len(workers)
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 1:
        raise ArgumentError(f"n_parts must be a positive integer; got {n_parts!r}")
    rows, offsets, sizes = _plan(n_samples, int(batch_size), int(n_parts))
    steps_per_epoch = len(sizes)

    # shards: built once on their worker from a source the scheduler keeps, so a lost one is rebuilt
    shards = []
    for w in range(n_parts):
        placement = dict(workers=[workers[w % len(workers)]], allow_other_workers=True)
        pair = []
        for arrays in (xs, ys):
            futures = []
            for array in arrays:
                if isinstance(array, da.Array):
                    futures.append(client.compute(array[rows[w]], **placement))
                else:
                    with warnings.catch_warnings():  # the shard in the graph is the point: it can be rebuilt
                        warnings.filterwarnings("ignore", message=".*[Ll]arge object", category=UserWarning)
                        futures.append(client.submit(_take, np.asarray(array)[rows[w]], slice(None), pure=False,
                                                     **placement))
            pair.append(futures)
        shards.append(pair)
    client.wait_for_workers(1)
    shipped = client.scatter(_Shipped.of(trainer.part()), broadcast=True, hash=False)

    history = History()
    done, epoch_sums = 0, {}
    if checkpoint is not None and os.path.exists(checkpoint):
        done, epoch_sums = _load_checkpoint(checkpoint, trainer, history)
    total = epochs * steps_per_epoch
    progress = tqdm(total=total, initial=done, disable=not verbose, desc="fastrnn.dask.fit", unit="step")
    try:
        while done < total:
            step = done % steps_per_epoch
            wall = time.perf_counter()
            weights = [p.values for p in parameters]
            for attempt in range(max_retries + 1):
                try:
                    sent = client.scatter(weights, broadcast=True, hash=False)
                    futures = [client.submit(_part_gradient, shipped, shards[w][0], shards[w][1], sent,
                                             int(offsets[w, step]), int(offsets[w, step + 1]), pure=False)
                               for w in range(n_parts)]
                    results = client.gather(futures)
                    break
                except Exception as error:  # noqa: BLE001 -- faults of any kind are retried
                    if not _is_fault(error) or attempt == max_retries:
                        raise
                    client.wait_for_workers(1)
                    if shipped.status != "finished":
                        shipped = client.scatter(_Shipped.of(trainer.part()), broadcast=True, hash=False)
            grads, logs = _summed(results, trainer.mean)
            trainer.step(grads, logs["loss"])
            for key, value in logs.items():  # "loss" weighted by batch size, others by batch, as Keras
                weight = sizes[step] if key == "loss" and trainer.mean else 1
                epoch_sums[key] = epoch_sums.get(key, 0.0) + value * weight
            done += 1
            history.step_seconds.append((time.perf_counter() - wall, max(part[3] for part in results)))
            if step == steps_per_epoch - 1:
                for key, value in epoch_sums.items():
                    divisor = (n_samples if trainer.mean else 1) if key == "loss" else steps_per_epoch
                    history.history.setdefault(key, []).append(float(value / divisor))
                history.epoch.append(done // steps_per_epoch - 1)
                epoch_sums = {}
            progress.update(1)
            progress.set_postfix(loss=f"{logs['loss']:.4g}")
            if checkpoint is not None and (done == total or (checkpoint_every and done % checkpoint_every == 0)):
                _save_checkpoint(checkpoint, trainer, done, history, epoch_sums)
            if on_step is not None:
                on_step(done - 1)
    finally:
        progress.close()
    trainer.finish()
    return history
