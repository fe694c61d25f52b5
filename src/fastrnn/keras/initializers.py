"""Keras's weight initialisers, drawn from a NumPy Generator: the starting values of fastrnn.keras weights.

Each initialiser is a callable ``init(shape, dtype, rng)`` returning a new
array. Fan sizes follow Keras: for a matrix of shape (fan_in, fan_out) they
are its two axes, for a vector both equal its length. Recurrent layers apply
``glorot_uniform`` and ``orthogonal`` to the fused matrices, e.g. the LSTM
kernel of shape (D, 4*H) as a whole (see ``docs/weight-layouts.md``, "Initial values").
"""

import contextvars
import math
from contextlib import contextmanager

import numpy as np

from fastrnn._validation import random_generator
from fastrnn.exceptions import ArgumentError

__all__ = ["Initializer", "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal",
           "GlorotUniform", "GlorotNormal", "Orthogonal", "get", "serialize", "as_generator"]

# (values left, error factory) while a model file is loaded; see value_budget
_budget = contextvars.ContextVar("fastrnn_keras_value_budget", default=None)


@contextmanager
def value_budget(values, error):
    """Refuse initial weights of more than ``values`` values in total, in this context.

    Loading a model file builds its layers (drawing initial weights) before the
    saved weights replace them; the budget, the values the file's weight
    entries hold, keeps a config that declares huge layers from allocating
    and drawing them. Past it, ``error(requested, left)`` is raised.
    """
    token = _budget.set([values, error])
    try:
        yield
    finally:
        _budget.reset(token)


def _charge(shape):
    budget = _budget.get()
    if budget is not None:
        requested = math.prod(shape)
        if requested > budget[0]:
            raise budget[1](requested, budget[0])
        budget[0] -= requested


def as_generator(seed):
    """A :class:`numpy.random.Generator` from ``None``, an int or a Generator (returned as is);
    anything else raises :class:`~fastrnn.exceptions.ArgumentError` naming ``seed``."""
    return random_generator(seed)


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    # convolution kernels: the leading axes are the receptive field
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: ``init(shape, dtype="float32", rng=None)`` returns a new ndarray of ``shape``.

    ``rng`` is a :class:`numpy.random.Generator`, an int seed or ``None``
    (fresh entropy).
    """

    name = ""

    def __call__(self, shape, dtype="float32", rng=None):
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        _charge(shape)
        return np.asarray(self._sample(shape, as_generator(rng)), dtype=dtype)

    def _sample(self, shape, rng):
        raise NotImplementedError

    def get_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros."""

    name = "zeros"

    def _sample(self, shape, rng):
        return np.zeros(shape)


class Ones(Initializer):
    """All ones."""

    name = "ones"

    def _sample(self, shape, rng):
        return np.ones(shape)


class Constant(Initializer):
    """Every entry equal to ``value``."""

    name = "constant"

    def __init__(self, value=0.0):
        self.value = float(value)

    def _sample(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomUniform(Initializer):
    """Independent draws from U(minval, maxval); Keras's ``"uniform"`` is U(-0.05, 0.05)."""

    name = "uniform"

    def __init__(self, minval=-0.05, maxval=0.05):
        if not maxval > minval:
            raise ArgumentError(f"RandomUniform needs minval < maxval; got minval={minval}, maxval={maxval}")
        self.minval, self.maxval = float(minval), float(maxval)

    def _sample(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class RandomNormal(Initializer):
    """Independent draws from N(mean, stddev²); Keras's ``"normal"`` is N(0, 0.05²)."""

    name = "normal"

    def __init__(self, mean=0.0, stddev=0.05):
        if not stddev >= 0:
            raise ArgumentError(f"RandomNormal needs stddev >= 0; got {stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def _sample(self, shape, rng):
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class GlorotUniform(Initializer):
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""

    name = "glorot_uniform"

    def _sample(self, shape, rng):
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)


class GlorotNormal(Initializer):
    """Normal with stddev sqrt(2 / (fan_in + fan_out)), redrawn outside two stddevs (truncated, as Keras)."""

    name = "glorot_normal"

    def _sample(self, shape, rng):
        fan_in, fan_out = _fans(shape)
        # 0.8796... is the stddev of a unit normal truncated to [-2, 2]
        stddev = math.sqrt(2.0 / max(1, fan_in + fan_out)) / 0.87962566103423978
        values = rng.normal(0.0, 1.0, shape)
        outside = np.abs(values) > 2
        while outside.any():
            values[outside] = rng.normal(0.0, 1.0, int(outside.sum()))
            outside = np.abs(values) > 2
        return values * stddev


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``, from the QR decomposition of a normal matrix.

    The array is viewed as a matrix of shape (prod(shape[:-1]), shape[-1]);
    it has orthonormal columns if it is tall, orthonormal rows if it is wide
    (the recurrent kernel of shape (H, k*H) gets orthonormal rows).
    """

    name = "orthogonal"

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def _sample(self, shape, rng):
        if len(shape) < 2:
            raise ArgumentError(f"the orthogonal initializer needs at least 2 axes; got shape {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        # the sign fix makes q uniformly distributed over orthogonal matrices
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain}


_BY_NAME = {cls.name: cls for cls in (Zeros, Ones, Constant, RandomUniform, RandomNormal,
                                       GlorotUniform, GlorotNormal, Orthogonal)}
_ALIASES = {"random_uniform": "uniform", "random_normal": "normal"}


def get(identifier):
    """An :class:`Initializer` from a name (``"glorot_uniform"``, ``"orthogonal"``, ``"zeros"``,
    ``"ones"``, ``"uniform"``, ``"normal"``, ...), a dict from :func:`serialize`, an instance,
    or a callable ``f(shape, dtype, rng)``.

    Raises
    ------
    ArgumentError
        For an unknown name; the message lists the known ones.
    """
    if isinstance(identifier, Initializer) or (callable(identifier) and not isinstance(identifier, str)):
        return identifier
    if isinstance(identifier, str):
        key = _ALIASES.get(identifier.lower(), identifier.lower())
        if key in _BY_NAME:
            return _BY_NAME[key]()
    if isinstance(identifier, dict) and set(identifier) == {"class_name", "config"}:
        classes = {cls.__name__: cls for cls in _BY_NAME.values()}
        if identifier["class_name"] in classes:
            return classes[identifier["class_name"]](**identifier["config"])
    raise ArgumentError(f"unknown initializer {identifier!r}; valid names are "
                        f"{', '.join(sorted(_BY_NAME))}, or an Initializer instance")


def serialize(initializer):
    """A JSON-serialisable description that :func:`get` turns back into ``initializer``:
    its name when it has default arguments, else ``{"class_name": ..., "config": ...}``."""
    if not isinstance(initializer, Initializer):
        raise ArgumentError(f"only fastrnn.keras.initializers objects can be serialised; got "
                            f"{type(initializer).__name__}")
    config = initializer.get_config()
    if config == type(initializer)().get_config():
        return initializer.name
    return {"class_name": type(initializer).__name__, "config": config}
