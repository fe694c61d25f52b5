"""fastrnn on Dask: lazy inference over dask arrays and data-parallel training on ``dask.distributed``.

* :func:`predict` maps a model over a dask array chunked along its batch axis and
  returns a lazy dask array; it runs on the threaded, process and distributed
  schedulers.
* :func:`fit` trains a :mod:`fastrnn.nn` module data-parallel on a
  ``dask.distributed`` cluster: each step's global batch is cut into one part per
  worker, the parts' gradients are summed in a fixed order, and the coordinator
  (the calling process) takes the optimizer step.

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
        return cls(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

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
    on it. The model travels pickled inside one graph object and is unpickled once
    per process (a worker of ``dask.distributed``, a process of the process-pool
    scheduler, or this process for the threaded one); with ``dask.distributed``
    scatter it first (``client.scatter(model, broadcast=True)``) is not needed: the
    holder is one graph key, sent to each worker once. Under the process-pool
    scheduler the bytes ride along with each task but are unpickled once per process.

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
    lengths : dask.array.Array of int of shape (N,), optional
        Valid steps of each row (nn modules only), chunked as ``x``'s axis 0.
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
        of another shape or chunking.
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
