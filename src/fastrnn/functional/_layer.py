"""What every cell's functional API shares: validating a layer's arguments and
converting them once to the kernel layout (time-major, C-contiguous, one dtype),
the ``ends`` option (final states read at each row's end, their gradients
entering there), the path of a layer without steps, what a forward function
returns, and the arrays a backward kernel writes with the gradient dictionary
made of them (:class:`LayerGradients`).

Weights use PyTorch's layout: ``w_ih`` of shape (G*H, D), ``w_hh`` of shape
(G*H, H), biases of shape (G*H,), with G gate blocks per cell
(:attr:`fastrnn.functional.cells.CellSpec.gates`).
"""

import numpy as np

from fastrnn._partition import batch_chunks, time_blocks
from fastrnn._threads import capped_n_threads, default_n_threads
from fastrnn._validation import (
    check_bool,
    as_float_array,
    check_finite,
    check_n_threads,
    check_ndim,
    check_shape,
    compute_dtype,
    kernel_array,
)
from fastrnn.exceptions import DTypeError, ShapeError, StaleCacheError
from fastrnn.functional.lengths import validated_lengths


class Layer:
    """A layer's inputs after validation, in kernel layout.

    Parameters
    ----------
    x, w_ih, w_hh, b_ih, b_hh : array_like
        As the functional API takes them.
    states : list of (str, array_like or None)
        The initial states by argument name, e.g. ``[("h0", h0)]``.
    spec : CellSpec
        The cell (gate count and name come from the cell table).
    batch_first : bool
    weights_checked : bool
        The weights come from a packed-weights object, which checked them for NaN and
        infinity: only the states are checked.

    Attributes
    ----------
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G*H, D)
    w_hh : ndarray of shape (G*H, H)
    b_ih, b_hh : ndarray of shape (G*H,) or None
    states : list of ndarray of shape (B, H)
        Initial states (zeros where the caller gave none).
    """

    def __init__(self, x, w_ih, w_hh, b_ih, b_hh, states, *, spec, batch_first, weights_checked=False):
        gates, cell = spec.gates, spec.torch_name
        batch_first = check_bool("batch_first", batch_first)
        named = [("x", as_float_array("x", x)), ("w_ih", as_float_array("w_ih", w_ih)),
                 ("w_hh", as_float_array("w_hh", w_hh))]
        for name, value in [("b_ih", b_ih), ("b_hh", b_hh), *states]:
            if value is not None:
                named.append((name, as_float_array(name, value)))
        arrays = dict(named)
        self.dtype = compute_dtype(named)

        x, w_ih, w_hh = arrays["x"], arrays["w_ih"], arrays["w_hh"]
        check_ndim("x", x, 3, "(B, T, D) with batch_first=True" if batch_first else "(T, B, D)")
        check_ndim("w_hh", w_hh, 2, f"({gates}*H, H)" if gates > 1 else "(H, H)")
        check_ndim("w_ih", w_ih, 2, f"({gates}*H, D)" if gates > 1 else "(H, D)")
        rows = w_hh.shape[0]
        if gates > 1 and rows % gates:
            raise ShapeError(
                f"w_hh must have {gates}*H rows for a {cell} ({gates} gates); got shape {w_hh.shape}"
            )
        H = rows // gates
        if batch_first:
            x = x.transpose(1, 0, 2)
        T, B, D = x.shape
        check_shape("w_hh", w_hh, (gates * H, H), f"{gates}*H rows and H columns, H = hidden size"
                    if gates > 1 else "H x H, H = hidden size from w_hh")
        check_shape("w_ih", w_ih, (gates * H, D),
                    f"{gates * H} rows like w_hh, and D = {D} columns like the features of x")
        for name in ("b_ih", "b_hh"):
            if name in arrays:
                check_ndim(name, arrays[name], 1, f"({gates * H},)")
                check_shape(name, arrays[name], (gates * H,), "one entry per row of w_hh")
        for name, _ in states:
            if name in arrays:
                check_ndim(name, arrays[name], 2, "(B, H)")
                check_shape(name, arrays[name], (B, H), f"B = {B} batch rows of x, H = {H} hidden units")
        # packed weights were checked when packed; only the states are new
        weights = () if weights_checked else ("w_ih", "w_hh", "b_ih", "b_hh")
        for name in (*weights, *(name for name, _ in states)):
            if name in arrays:
                check_finite(name, arrays[name])

        self.T, self.B, self.D, self.H = T, B, D, H
        self.gates = gates
        self.batch_first = batch_first
        self.x = kernel_array(x, self.dtype)
        self.w_ih = kernel_array(w_ih, self.dtype)
        self.w_hh = kernel_array(w_hh, self.dtype)
        self.b_ih = kernel_array(arrays["b_ih"], self.dtype) if "b_ih" in arrays else None
        self.b_hh = kernel_array(arrays["b_hh"], self.dtype) if "b_hh" in arrays else None
        self.states = [
            kernel_array(arrays[name], self.dtype) if name in arrays else np.zeros((B, H), self.dtype)
            for name, _ in states
        ]

    @property
    def has_steps(self):
        """Whether a kernel runs: a layer with no step or no row (T or B zero) runs none."""
        return self.T > 0 and self.B > 0

    def final_state_arrays(self, initial):
        """The arrays a forward kernel writes the final states into, shaped like ``initial``
        (list of ndarray of shape (B, F)); without steps no kernel runs, and the final states
        are copies of the initial ones."""
        return [np.empty_like(state) if self.has_steps else state.copy() for state in initial]

    def summed_bias(self):
        """``b_ih + b_hh`` (zeros for a missing one): the kernels take the sum."""
        bias = np.zeros(self.gates * self.H, self.dtype)
        for b in (self.b_ih, self.b_hh):
            if b is not None:
                bias += b
        return bias

    def n_threads(self, n_threads):
        """The caller's thread count (capped at the cores), or, for ``None``, one per piece of
        work (:mod:`fastrnn._partition`) at most one per core that other processes leave free
        (:func:`fastrnn._threads.default_n_threads`)."""
        if n_threads is not None:
            return capped_n_threads(check_n_threads(n_threads))
        pieces = max(
            len(batch_chunks(self.B, self.H, self.gates)) - 1,
            len(time_blocks(self.T, self.B, self.D * self.gates * self.H)) - 1,
        )
        return default_n_threads(pieces)

    def to_user_layout(self, array):
        """A time-major result in the caller's layout (a view)."""
        return array.transpose(1, 0, 2) if self.batch_first else array


def read_only_view(array):
    view = array.view()
    view.flags.writeable = False
    return view


def forward_outputs(layer, y, finals, cache):
    """What a forward function returns, ``(y, finals, cache)``.

    ``y`` comes in the caller's layout, and read-only when a cache refers to it
    (the backward pass reads it as the kernels wrote it).

    Parameters
    ----------
    layer : Layer
    y : ndarray of shape (T, B, F)
        The output the kernel wrote.
    finals : ndarray or tuple of ndarray
        The final states, returned as given.
    cache : LayerCache or None
    """
    if cache is not None:
        y = read_only_view(y)
    return layer.to_user_layout(y), finals, cache


def row_ends(ends, T, B):
    """The ``ends`` argument of a forward call: None, or int64 of shape (B,) in [0, T]."""
    return None if ends is None else validated_lengths("ends", ends, T, B)


def states_at_ends(ends, sequence, initial):
    """Row ``b`` of ``sequence[ends[b] - 1]``, and ``initial[b]`` where ``ends[b] == 0``.

    Parameters
    ----------
    ends : ndarray of int of shape (B,)
    sequence : ndarray of shape (T, B, F)
        A state at every step.
    initial : ndarray of shape (B, F)

    Returns
    -------
    ndarray of shape (B, F), a new array
    """
    empty = ends == 0
    if sequence.shape[0] == 0:
        return initial.copy()
    out = sequence[np.maximum(ends - 1, 0), np.arange(len(ends))]
    out[empty] = initial[empty]
    return out


def gradients_to_ends(ends, sequence_grad, final_grad):
    """Move the gradient of the final states to each row's end step.

    Parameters
    ----------
    ends : ndarray of int of shape (B,)
    sequence_grad : ndarray of shape (T, B, F)
        Gradient of the per-step sequence the final state is read from
        (``y`` for ``h``); not modified.
    final_grad : ndarray of shape (B, F)

    Returns
    -------
    sequence_grad : ndarray of shape (T, B, F)
        A copy with ``final_grad[b]`` added at step ``ends[b] - 1``.
    passed : ndarray of shape (B, F)
        ``final_grad`` on rows with ``ends == 0`` (zeros elsewhere): those
        rows' final states are their initial states, so this gradient goes
        straight to the initial state.
    """
    out = np.array(sequence_grad, order="C")
    ended = np.nonzero(ends > 0)[0]
    out[ends[ended] - 1, ended] += final_grad[ended]
    passed = np.zeros_like(final_grad)
    empty = ends == 0
    passed[empty] = final_grad[empty]
    return out, passed


def final_gradients_at_ends(ends, pairs):
    """The backward side of ``ends``: let each final state's gradient enter at each row's end.

    Parameters
    ----------
    ends : ndarray of int of shape (B,) or None
        The forward call's ``ends``; with ``None`` the gradients are returned as given.
    pairs : list of (ndarray of shape (T, B, F), ndarray of shape (B, F))
        For each final state, the gradient of the per-step sequence it is read from
        (``dy`` for ``h_n``; a sequence of zero steps stands for zeros, the kernels'
        "no per-step gradient") and the final state's gradient.

    Returns
    -------
    sequences : list of ndarray of shape (T, B, F)
        With the final gradients added at each row's end (the given arrays without ``ends``).
    finals : list of ndarray of shape (B, F)
        Zeros with ``ends`` (the gradients have entered already), else the given ones.
    passed : list of ndarray of shape (B, F) or None
        What goes straight to the initial states (rows with ``ends == 0``); None without ``ends``.
    """
    sequences = [sequence for sequence, _ in pairs]
    finals = [final for _, final in pairs]
    if ends is None:
        return sequences, finals, None
    T = sequences[0].shape[0]
    passed = []
    for i, (sequence, final) in enumerate(pairs):
        if sequence.shape[0] == 0:
            sequence = np.zeros((T,) + sequence.shape[1:], sequence.dtype)
        sequences[i], through = gradients_to_ends(ends, sequence, final)
        finals[i] = np.zeros_like(final)
        passed.append(through)
    return sequences, finals, passed


class LayerGradients:
    """The arrays a backward kernel writes, and the gradient dictionary made of them.

    Parameters
    ----------
    cache : LayerCache
    initial : list of (str, ndarray of shape (B, F))
        Each initial state's name and the gradient of its final state as the kernel
        receives it, e.g. ``[("h0", dh_n)]``. A layer without steps (T or B zero)
        runs no kernel: there the final gradients are the initial states' gradients.
    weights : tuple of str
        The cache's weights beyond ``w_ih`` and ``w_hh`` that get a gradient (``("w_hr",)``).
    split_bias : bool
        The kernel writes ``b_ih``'s and ``b_hh``'s gradients apart (GRU); otherwise
        one array ``"b"`` for the bias sum, which both biases share.

    Attributes
    ----------
    has_steps : bool
        The kernel runs (T and B are not zero).
    x : ndarray of shape (T, B, D)
        Written in full by the kernel.

    Notes
    -----
    ``grads[name]`` is the array for an initial state, a weight or ``"b"`` /
    ``"b_ih"`` / ``"b_hh"``; weight and bias gradients start at zero because the
    kernels add into them.
    """

    def __init__(self, cache, initial, weights=(), *, split_bias=False):
        T, B, D = cache.x.shape
        dtype = cache.x.dtype
        self._cache = cache
        self.has_steps = T > 0 and B > 0
        self.x = np.empty((T, B, D), dtype)
        self._initial = [name for name, _ in initial]
        self._arrays = {
            name: np.empty(final.shape, dtype) if self.has_steps else np.array(final, dtype, order="C")
            for name, final in initial
        }
        self._weights = ("w_ih", "w_hh", *weights)
        for name in self._weights:
            self._arrays[name] = np.zeros(getattr(cache, name).shape, dtype)
        for name in ("b_ih", "b_hh") if split_bias else ("b",):
            self._arrays[name] = np.zeros(cache.w_ih.shape[0], dtype)

    def __getitem__(self, name):
        return self._arrays[name]

    def result(self, passed=None):
        """The backward function's dictionary.

        Parameters
        ----------
        passed : list of ndarray of shape (B, F) or None
            From :func:`final_gradients_at_ends`, added to the initial states' gradients.

        Returns
        -------
        dict of str to ndarray
            ``"x"`` (batch-first if the forward pass was), the initial states, the
            weights, and ``"b_ih"`` / ``"b_hh"`` for the biases the forward pass was given.
        """
        cache = self._cache
        if passed is not None:
            for name, through in zip(self._initial, passed):
                self._arrays[name] += through
        grads = {"x": self.x.transpose(1, 0, 2) if cache.batch_first else self.x}
        for name in (*self._initial, *self._weights):
            grads[name] = self._arrays[name]
        db_ih = self._arrays.get("b_ih", self._arrays.get("b"))
        db_hh = self._arrays.get("b_hh", self._arrays.get("b"))
        if cache.has_b_ih:
            grads["b_ih"] = db_ih
        if cache.has_b_hh:
            # a shared bias-sum gradient is copied so that the two entries are not one array
            grads["b_hh"] = db_hh.copy() if cache.has_b_ih and db_hh is db_ih else db_hh
        return grads


def gradient_input(name, value, shape, user_shape, dtype, batch_first):
    """A gradient argument (``dy``, ``dh_n``): zeros when ``None``, else validated and converted.

    Its dtype must be the forward pass's (float16 counting as float32), as
    forward refuses mixed inputs, rather than being cast silently.
    """
    if value is None:
        return np.zeros(shape, dtype)
    array = as_float_array(name, value)
    given = np.dtype(np.float32) if array.dtype == np.float16 else array.dtype
    if given != dtype:
        raise DTypeError(f"{name} must have the dtype of the forward pass ({dtype}); got dtype "
                         f"{array.dtype}; cast it to {dtype} first")
    check_shape(name, array, user_shape, "the shape of the matching forward output")
    if batch_first and array.ndim == 3:
        array = array.transpose(1, 0, 2)
    return kernel_array(array, dtype)


class LayerCache:
    """What a forward pass keeps for its backward pass.

    Every cell's cache holds the layer's inputs in kernel layout (``x``,
    ``w_ih``, ``w_hh``, the initial states) and its workspace; a subclass
    names its arrays in ``ARRAYS`` and its forward function in ``FORWARD``.

    Attributes
    ----------
    backend : str
        The backend that ran the forward pass; the backward pass uses it too.
    n_threads : int
    batch_first : bool
    has_b_ih, has_b_hh : bool
    x : ndarray of shape (T, B, D)
    w_ih : ndarray of shape (G*H, D)
    w_hh : ndarray of shape (G*H, H)
    reduced : ReducedLayer or None
        bf16 training: the weights the forward pass ran on, rounded once and packed for the
        backward kernels too (``pack_reduced(..., backward=True)``), which the backward pass
        runs on; None in float32 (and for a layer without steps).
    """

    ARRAYS = ()
    reduced = None
    FORWARD = ""

    def __init__(self, layer, backend, n_threads, **fields):
        self.backend = backend
        self.n_threads = n_threads
        self.batch_first = layer.batch_first
        self.has_b_ih = layer.b_ih is not None
        self.has_b_hh = layer.b_hh is not None
        self.x, self.w_ih, self.w_hh = layer.x, layer.w_ih, layer.w_hh
        for name, value in fields.items():
            setattr(self, name, value)
        self._shapes = {name: (a.shape, a.dtype) for name, a in self._arrays()}

    def _arrays(self):
        return [(name, getattr(self, name)) for name in ("x", "w_ih", "w_hh") + self.ARRAYS]

    def check_unchanged(self):
        """Raise :class:`StaleCacheError` if an array was replaced by one of another shape or dtype."""
        for name, array in self._arrays():
            shape, dtype = self._shapes[name]
            if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
                given = getattr(array, "shape", type(array).__name__)
                raise StaleCacheError(
                    f"the cache's {name} was changed after the forward pass: expected an array of "
                    f"shape {shape} and dtype {dtype}, found {given}; run {self.FORWARD} again"
                )


def backward_inputs(cache, cache_type, dy, state_gradients):
    """Check a backward call's cache and bring its gradients to kernel layout.

    Parameters
    ----------
    cache : LayerCache
        What the caller passed; must be a ``cache_type`` whose arrays are unchanged.
    cache_type : type
        The cache class of the cell.
    dy : array_like or None
        Gradient with respect to the output ``y``, in the caller's layout.
    state_gradients : list of (str, array_like or None)
        Gradients with respect to the final states, e.g. ``[("dh_n", dh_n)]``.

    Returns
    -------
    dy : ndarray of shape (T, B, H)
    states : list of ndarray of shape (B, H)
        Zeros where the caller gave ``None``.
    """
    if not isinstance(cache, cache_type):
        raise TypeError(
            f"cache must be the {cache_type.__name__} returned by {cache_type.FORWARD}(..., "
            f"requires_grad=True); got {type(cache).__name__}"
        )
    cache.check_unchanged()
    T, B, _ = cache.x.shape
    H = cache.w_hh.shape[1]
    dtype = cache.x.dtype
    user_y_shape = (B, T, H) if cache.batch_first else (T, B, H)
    dy = gradient_input("dy", dy, (T, B, H), user_y_shape, dtype, cache.batch_first)
    states = [gradient_input(name, value, (B, H), (B, H), dtype, False)
              for name, value in state_gradients]
    return dy, states
