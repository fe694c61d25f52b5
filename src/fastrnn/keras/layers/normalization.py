"""LayerNormalization: each sample normalised over its feature axis (or axes), then scaled and shifted.

``y = (x - mean) / sqrt(var + epsilon) * gamma + beta``, the mean and (biased) variance taken
over ``axis`` for each sample (and each step), as Keras 3's ``layer_normalization``.
"""

import numpy as np

from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import initializers
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import check_gradient, float_input, require_tape, serialized_initializers

__all__ = ["LayerNormalization"]


def keras_initializer(identifier):
    """:func:`fastrnn.keras.initializers.get`, also given Keras 3's serialised form (with its
    ``module`` and ``registered_name`` entries, and a ``seed`` of None)."""
    if isinstance(identifier, dict) and {"class_name", "config"} <= set(identifier):
        config = {k: v for k, v in identifier["config"].items() if not (k == "seed" and v is None)}
        identifier = {"class_name": identifier["class_name"], "config": config}
    return initializers.get(identifier)


def _no_option(name, value):
    if value is not None:
        raise ArgumentError(f"LayerNormalization: {name} is not supported by fastrnn; pass None "
                            f"(got {value!r})")


class LayerNormalization(Layer):
    """Layer normalisation (Ba et al., 2016) with Keras 3's arguments and weights.

    Parameters
    ----------
    axis : int or list of int
        The axis (or axes) to normalise over, counted with the batch axis (-1: the features).
    epsilon : float
        Added to the variance.
    center : bool
        Add ``beta``.
    scale : bool
        Multiply by ``gamma``.
    beta_initializer, gamma_initializer : str, dict or Initializer
        ``"zeros"`` and ``"ones"`` by default.
    beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint : None
        Keras's arguments; only None is supported.
    rms_scaling : bool
        Deprecated in Keras 3; only False is supported.
    seed : int or numpy.random.Generator, optional
        Source of the initial weights for a random initializer (fastrnn's addition, as Dense's).
    **kwargs
        ``name``, ``dtype``, ``trainable``, ``input_shape`` of :class:`Layer`.

    Attributes
    ----------
    gamma, beta : Parameter of the normalised axes' shape, or None
        In Keras's ``get_weights()`` order: ``gamma`` then ``beta``.
    """

    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, rms_scaling=False, seed=None, **kwargs):
        if isinstance(axis, (list, tuple)):
            axes = list(axis)
        else:
            axes = [axis]
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            raise ArgumentError(f"LayerNormalization: axis must be an int or a list of ints; got {axis!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) or not epsilon > 0:
            raise ArgumentError(f"LayerNormalization: epsilon must be a positive number; got {epsilon!r}")
        for name, value in (("beta_regularizer", beta_regularizer), ("gamma_regularizer", gamma_regularizer),
                            ("beta_constraint", beta_constraint), ("gamma_constraint", gamma_constraint)):
            _no_option(name, value)
        if check_bool("rms_scaling", rms_scaling):
            raise ArgumentError("LayerNormalization: rms_scaling=True (deprecated in Keras 3) is not "
                                "supported by fastrnn; got True")
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.center = check_bool("center", center)
        self.scale = check_bool("scale", scale)
        self.beta_initializer = keras_initializer(beta_initializer)
        self.gamma_initializer = keras_initializer(gamma_initializer)
        self.rng = initializers.as_generator(seed)
        self.gamma = self.beta = None
        self._tape = None

    def _axes(self, rank):
        """The normalised axes, sorted, counted with the batch axis, for inputs of ``rank`` axes."""
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        resolved = sorted(a + rank if a < 0 else a for a in axes)
        if any(not 1 <= a < rank for a in resolved) or len(set(resolved)) != len(resolved):
            raise ShapeError(f"layer {self.name!r} (LayerNormalization): axis={self.axis} must name distinct "
                             f"non-batch axes of inputs with {rank} axes (batch included)")
        return resolved

    def build(self, input_shape):
        axes = self._axes(len(input_shape) + 1)
        shape = tuple(input_shape[a - 1] for a in axes)
        if any(n is None for n in shape):
            raise ShapeError(f"layer {self.name!r} (LayerNormalization) needs the normalised axes' sizes; "
                             f"got input shape (B, {', '.join(map(str, input_shape))})")
        if self.scale:
            self.gamma = self.add_weight("gamma", self.gamma_initializer(shape, self.dtype, self.rng))
        if self.center:
            self.beta = self.add_weight("beta", self.beta_initializer(shape, self.dtype, self.rng))
        # as Keras, the config's axis becomes the sorted list once built
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape) + 1)
        return tuple(input_shape)

    def call(self, x, mask=None, training=False):
        """Normalise.

        Parameters
        ----------
        x : array_like of shape (B, ...)
        mask : ndarray of bool, optional
            Passed on unchanged; the normalisation is per sample and step, so it needs none.

        Returns
        -------
        ndarray shaped like ``x``
        """
        x = float_input(self, x)
        axes = tuple(self._axes(x.ndim))
        shape = tuple(x.shape[a] for a in axes)
        built = self.gamma if self.gamma is not None else self.beta
        expected = shape if built is None else built.shape
        if shape != expected:
            raise ShapeError(f"layer {self.name!r} (LayerNormalization) was built for size(s) {expected} on "
                             f"axis {self.axis}; got an input of shape {x.shape}")
        broadcast = [1] * x.ndim
        for a in axes:
            broadcast[a] = x.shape[a]
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        variance = (centered * centered).mean(axis=axes, keepdims=True)
        inverse = 1 / np.sqrt(variance + self.dtype.type(self.epsilon))
        normalized = centered * inverse
        y = normalized
        if self.gamma is not None:
            y = y * self.gamma.values.reshape(broadcast)
        if self.beta is not None:
            y = y + self.beta.values.reshape(broadcast)
        self._tape = (normalized, inverse, axes, broadcast) if training else None
        return y

    def backward(self, d_output):
        """Add gamma's and beta's gradients; return the input's, shaped like it."""
        normalized, inverse, axes, broadcast = require_tape(self, self._tape)
        dy = check_gradient(self, d_output, normalized.shape)
        others = tuple(i for i in range(dy.ndim) if i not in axes)
        if self.gamma is not None:
            self.gamma.accumulate((dy * normalized).sum(axis=others).reshape(self.gamma.shape))
            dy = dy * self.gamma.values.reshape(broadcast)
        if self.beta is not None:
            self.beta.accumulate(np.asarray(d_output, dtype=self.dtype).sum(axis=others)
                                 .reshape(self.beta.shape))
        mean_dy = dy.mean(axis=axes, keepdims=True)
        mean_dy_n = (dy * normalized).mean(axis=axes, keepdims=True)
        return inverse * (dy - mean_dy - normalized * mean_dy_n)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "rms_scaling": False,
                **serialized_initializers(self, "beta_initializer", "gamma_initializer"),
                "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
                "gamma_constraint": None}
