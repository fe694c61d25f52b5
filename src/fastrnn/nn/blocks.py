"""Feed-forward building blocks of fastrnn.nn, each with an explicit backward.

:class:`Linear`, :class:`Embedding`, :class:`Dropout`, :class:`LayerNorm`,
:class:`Identity` and the activations take ``torch.nn``'s constructor arguments,
parameter names and initial distributions. ``forward`` keeps what ``backward``
needs (unless inside :func:`fastrnn.nn.no_grad`); ``backward(grad_output)`` adds
each parameter's gradient into its ``.grad`` and returns the input's gradient.
"""

import math
import warnings

import numpy as np
from scipy.special import erf

from fastrnn._threads import PerThread, getstate_with_per_thread, setstate_with_per_thread
from fastrnn._validation import as_float_array, check_bool, check_choice, parameter_dtype, random_generator
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.nn.grad_mode import is_grad_enabled
from fastrnn.nn.module import Module
from fastrnn.parameter import Parameter

__all__ = ["Linear", "Embedding", "Dropout", "LayerNorm", "Identity", "ReLU", "Tanh", "Sigmoid", "GELU",
           "Softmax", "LogSoftmax"]


def _positive_int(name, value, allow_zero=False):
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "non-negative" if allow_zero else "positive"
        raise ArgumentError(f"{name} must be a {kind} integer; got {value!r}")
    return int(value)


def _probability(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ArgumentError(f"{name} must be a probability in [0, 1]; got {value!r}")
    return float(value)


class TapedModule(Module):
    """A module whose forward leaves a per-thread tape for its backward."""

    _tape = PerThread()
    __getstate__ = getstate_with_per_thread
    __setstate__ = setstate_with_per_thread

    def _keep(self, tape):
        self._tape = tape if is_grad_enabled() else None

    def _take_tape(self):
        tape = self._tape
        if tape is None:
            raise ArgumentError(f"{type(self).__name__}.backward() needs a forward() call made with "
                                "gradients enabled (outside fastrnn.nn.no_grad()) since the last backward()")
        self._tape = None
        return tape

    @staticmethod
    def _grad(grad_output, shape, dtype):
        array = as_float_array("grad_output", grad_output).astype(dtype, copy=False)
        if array.shape != shape:
            raise ShapeError(f"grad_output must have shape {shape}, like the forward result it is "
                             f"the gradient of; got shape {array.shape}")
        return array

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""


def _float_input(name, value, dtype=None):
    """``value`` as a float array (of ``dtype`` when given: a module's parameters' dtype)."""
    array = as_float_array(name, value)
    return array if dtype is None else array.astype(dtype, copy=False)


class Linear(TapedModule):
    """``y = x W^T + b`` over the last axis.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : {numpy.float32, numpy.float64}
    seed : int or numpy.random.Generator, optional
        Source of the initial values: ``weight`` and ``bias`` ~ U(-1/sqrt(in_features),
        1/sqrt(in_features)), PyTorch's distributions.

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features)
    bias : Parameter of shape (out_features,) or None
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features, allow_zero=True)
        self.out_features = _positive_int("out_features", out_features, allow_zero=True)
        self.dtype = parameter_dtype(dtype)
        rng = random_generator(seed)
        # torch's kaiming_uniform_(a=sqrt(5)) works out to this same bound
        bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
        self.weight = Parameter(rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(self.dtype))
        if check_bool("bias", bias):
            self.bias = Parameter(rng.uniform(-bound, bound, self.out_features).astype(self.dtype))
        else:
            self.bias = None

    def forward(self, input):
        """ndarray of shape (..., in_features) -> ndarray of shape (..., out_features)."""
        x = _float_input("input", input, self.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(f"input must have in_features = {self.in_features} features in its last "
                             f"axis; got shape {x.shape}")
        y = x @ self.weight.values.T
        if self.bias is not None:
            y += self.bias.values
        self._keep(x)
        return y

    def backward(self, grad_output):
        """Gradient of ``(..., out_features)`` -> gradient of the input ``(..., in_features)``."""
        x = self._take_tape()
        d = self._grad(grad_output, x.shape[:-1] + (self.out_features,), self.dtype)
        rows = d.reshape(-1, self.out_features)
        self.weight.accumulate(rows.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self.bias.accumulate(rows.sum(axis=0))
        return d @ self.weight.values

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(TapedModule):
    """A lookup table: integer indices of any shape -> rows of ``weight``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
    padding_idx : int, optional
        A row (negative counts from the end) initialised to zeros that gets no gradient.
    max_norm : None
        Renormalising rows in forward is not supported: anything but None is refused.
    norm_type : float
        Only with ``max_norm``; accepted for PyTorch's signature.
    scale_grad_by_freq : bool
        Divide each row's gradient by how often its index occurs in the batch.
    sparse : bool
        Sparse gradients are not supported: True is refused.
    _weight : array_like of shape (num_embeddings, embedding_dim), optional
        Initial values (as PyTorch's keyword); otherwise ~ N(0, 1).
    _freeze : bool
        ``weight.requires_grad = False``.
    dtype, seed
        As for :class:`Linear`.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, *,
                 dtype=np.float32, seed=None):
        super().__init__()
        self.num_embeddings = _positive_int("num_embeddings", num_embeddings, allow_zero=True)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim, allow_zero=True)
        if max_norm is not None:
            raise ArgumentError("max_norm is not supported by fastrnn.nn.Embedding (it rewrites rows of "
                                f"weight during forward); got max_norm={max_norm!r}: leave it None")
        if check_bool("sparse", sparse):
            raise ArgumentError("sparse=True is not supported by fastrnn.nn.Embedding: gradients are dense")
        if padding_idx is not None:
            n = self.num_embeddings
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                    or not -n <= padding_idx < n:
                raise ArgumentError(f"padding_idx must be an integer in [-{n}, {n}); got {padding_idx!r}")
            padding_idx = int(padding_idx) % n
        self.padding_idx = padding_idx
        self.max_norm = None
        self.norm_type = float(norm_type)
        self.scale_grad_by_freq = check_bool("scale_grad_by_freq", scale_grad_by_freq)
        self.sparse = False
        self.dtype = parameter_dtype(dtype)
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            values = random_generator(seed).standard_normal(shape).astype(self.dtype)
            if padding_idx is not None:
                values[padding_idx] = 0
        else:
            values = np.array(as_float_array("_weight", _weight), dtype=self.dtype)
            if values.shape != shape:
                raise ShapeError(f"_weight must have shape {shape}; got shape {values.shape}")
        self.weight = Parameter(values, requires_grad=not _freeze)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding on a copy of ``embeddings`` (array of shape (num_embeddings, embedding_dim))."""
        array = as_float_array("embeddings", embeddings)
        if array.ndim != 2:
            raise ShapeError(f"embeddings must be 2-D (num_embeddings, embedding_dim); got shape {array.shape}")
        return cls(array.shape[0], array.shape[1], padding_idx, max_norm, norm_type, scale_grad_by_freq,
                   sparse, _weight=array, _freeze=freeze, dtype=array.dtype)

    def forward(self, input):
        """Integer array of any shape -> ndarray of shape ``input.shape + (embedding_dim,)``."""
        indices = np.asarray(input)
        if indices.dtype.kind not in "iu":
            raise DTypeError(f"input must hold integer indices; got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_embeddings):
            bad = indices[(indices < 0) | (indices >= self.num_embeddings)].flat[0]
            raise ArgumentError(f"input holds index {bad}, outside [0, {self.num_embeddings - 1}] "
                                f"(num_embeddings = {self.num_embeddings})")
        self._keep(indices)
        return self.weight.values[indices]

    def backward(self, grad_output):
        """Adds into ``weight.grad``; returns None (integer indices have no gradient)."""
        indices = self._take_tape()
        d = self._grad(grad_output, indices.shape + (self.embedding_dim,), self.dtype)
        flat = indices.reshape(-1)
        rows = d.reshape(-1, self.embedding_dim)
        if self.scale_grad_by_freq:
            counts = np.bincount(flat, minlength=self.num_embeddings)
            rows = rows / counts[flat, None].astype(self.dtype)
        grad = np.zeros((self.num_embeddings, self.embedding_dim), self.dtype)
        if flat.size:
            # rows grouped by index and summed per group: several times faster than np.add.at
            order = np.argsort(flat, kind="stable")
            grouped = flat[order]
            starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
            grad[grouped[starts]] = np.add.reduceat(rows[order], starts, axis=0)
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        self.weight.accumulate(grad)
        return None

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        return text


class Dropout(TapedModule):
    """Zero each element with probability ``p`` in training mode, scaling the rest by ``1 / (1 - p)``.

    Parameters
    ----------
    p : float in [0, 1]
    inplace : bool
        Accepted for PyTorch's signature; the result is always a new array.
    seed : int or numpy.random.Generator, optional
        Source of the masks.
    """

    def __init__(self, p=0.5, inplace=False, *, seed=None):
        super().__init__()
        self.p = _probability("p", p)
        self.inplace = check_bool("inplace", inplace)
        self.rng = random_generator(seed)

    def forward(self, input):
        """Any float array -> the same shape; the input itself (no copy) in eval mode or with p = 0."""
        x = _float_input("input", input)
        if not self.training or self.p == 0:
            self._keep(None)
            return x
        if self.p == 1:
            mask = np.zeros(x.shape, x.dtype)
        else:
            mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1 - self.p)
        self._keep((mask,))
        return x * mask

    def _keep(self, tape):
        # eval mode keeps a marker: its backward is the identity
        super()._keep("identity" if tape is None else tape)

    def backward(self, grad_output):
        tape = self._take_tape()
        d = as_float_array("grad_output", grad_output)
        if tape == "identity":
            return d
        mask = tape[0]
        if d.shape != mask.shape:
            raise ShapeError(f"grad_output must have shape {mask.shape}; got shape {d.shape}")
        return d * mask

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class LayerNorm(TapedModule):
    """Normalise over the last axes to mean 0 and variance 1, then scale by ``weight`` and shift by ``bias``.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalised over.
    eps : float
        Added to the (biased) variance.
    elementwise_affine : bool
        Learn ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape``.
    bias : bool
        With ``elementwise_affine``, learn ``bias`` too.
    dtype : {numpy.float32, numpy.float64}
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *, dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        try:
            shape = tuple(_positive_int("normalized_shape", n) for n in shape)
        except TypeError:
            raise ArgumentError(f"normalized_shape must be an int or a tuple of int; got {normalized_shape!r}") from None
        if not shape:
            raise ArgumentError("normalized_shape must name at least one axis; got ()")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise ArgumentError(f"eps must be a non-negative float; got {eps!r}")
        self.normalized_shape = shape
        self.eps = float(eps)
        self.elementwise_affine = check_bool("elementwise_affine", elementwise_affine)
        self.dtype = parameter_dtype(dtype)
        self.weight = Parameter(np.ones(shape, self.dtype)) if self.elementwise_affine else None
        has_bias = self.elementwise_affine and check_bool("bias", bias)
        self.bias = Parameter(np.zeros(shape, self.dtype)) if has_bias else None

    def forward(self, input):
        """ndarray of shape (..., *normalized_shape) -> the same shape."""
        x = _float_input("input", input, self.dtype)
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ShapeError(f"input must end in normalized_shape = {self.normalized_shape}; got shape {x.shape}")
        axes = tuple(range(x.ndim - k, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean
        rstd = 1 / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + self.eps)
        xhat = centred * rstd
        y = xhat if self.weight is None else xhat * self.weight.values
        if self.bias is not None:
            y = y + self.bias.values
        self._keep((xhat, rstd, axes))
        return y

    def backward(self, grad_output):
        xhat, rstd, axes = self._take_tape()
        d = self._grad(grad_output, xhat.shape, self.dtype)
        batch_axes = tuple(range(xhat.ndim - len(axes)))
        if self.weight is not None:
            self.weight.accumulate((d * xhat).sum(axis=batch_axes))
            d_xhat = d * self.weight.values
        else:
            d_xhat = d
        if self.bias is not None:
            self.bias.accumulate(d.sum(axis=batch_axes))
        mean_d = d_xhat.mean(axis=axes, keepdims=True)
        mean_dx = (d_xhat * xhat).mean(axis=axes, keepdims=True)
        return rstd * (d_xhat - mean_d - xhat * mean_dx)

    def extra_repr(self):
        shape = self.normalized_shape
        return f"{shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Identity(TapedModule):
    """Returns its input; takes and ignores any constructor arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input

    def backward(self, grad_output):
        return grad_output


class _Elementwise(TapedModule):
    """An activation applied element by element; the tape is what its derivative needs."""

    def forward(self, input):
        x = _float_input("input", input)
        y, kept = self._apply(x)
        self._keep((kept, x.shape))
        return y

    def backward(self, grad_output):
        kept, shape = self._take_tape()
        d = as_float_array("grad_output", grad_output)
        if d.shape != shape:
            raise ShapeError(f"grad_output must have shape {shape}, like the forward result; got shape {d.shape}")
        return self._derivative(d.astype(kept.dtype, copy=False), kept)


class ReLU(_Elementwise):
    """``max(x, 0)``; ``inplace`` is accepted for PyTorch's signature (the result is a new array)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = check_bool("inplace", inplace)

    def _apply(self, x):
        y = np.maximum(x, 0)
        return y, y

    def _derivative(self, d, y):
        return d * (y > 0)


class Tanh(_Elementwise):
    """``tanh(x)``."""

    def _apply(self, x):
        y = np.tanh(x)
        return y, y

    def _derivative(self, d, y):
        return d * (1 - y * y)


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, without overflow for large ``|x|``."""

    def _apply(self, x):
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return y, y

    def _derivative(self, d, y):
        return d * y * (1 - y)


class GELU(_Elementwise):
    """``x * Phi(x)``, ``Phi`` the standard normal CDF; or PyTorch's tanh approximation.

    Parameters
    ----------
    approximate : {"none", "tanh"}
        ``"tanh"``: ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``.
    """

    _K = math.sqrt(2 / math.pi)

    def __init__(self, approximate="none"):
        super().__init__()
        check_choice("approximate", approximate, ("none", "tanh"))
        self.approximate = approximate

    def _apply(self, x):
        if self.approximate == "tanh":
            y = 0.5 * x * (1 + np.tanh(self._K * (x + 0.044715 * x ** 3)))
        else:
            y = 0.5 * x * (1 + erf(x / math.sqrt(2)))
        return y.astype(x.dtype, copy=False), x

    def _derivative(self, d, x):
        if self.approximate == "tanh":
            t = np.tanh(self._K * (x + 0.044715 * x ** 3))
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * self._K * (1 + 3 * 0.044715 * x * x)
        else:
            cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
            slope = cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return (d * slope).astype(x.dtype, copy=False)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


def _softmax_dim(dim, ndim, name):
    """The axis of (Log)Softmax; PyTorch's legacy choice, with its warning, when ``dim`` is None."""
    if dim is None:
        warnings.warn(f"implicit dimension choice for {name} has been deprecated (as in PyTorch): "
                      "pass dim", UserWarning, stacklevel=4)
        dim = 0 if ndim in (0, 1, 3) else 1
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ArgumentError(f"dim must be an integer in [-{max(ndim, 1)}, {max(ndim, 1)}) for an input "
                            f"with {ndim} axes; got {dim!r}")
    return int(dim) % max(ndim, 1)


class _SoftmaxBase(TapedModule):
    def __init__(self, dim=None):
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
            raise ArgumentError(f"dim must be an integer or None; got {dim!r}")
        self.dim = dim

    def forward(self, input):
        x = _float_input("input", input)
        axis = _softmax_dim(self.dim, x.ndim, type(self).__name__)
        shifted = x - x.max(axis=axis, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        y = self._result(shifted, log_sum)
        self._keep((y, axis))
        return y

    def backward(self, grad_output):
        y, axis = self._take_tape()
        d = as_float_array("grad_output", grad_output)
        if d.shape != y.shape:
            raise ShapeError(f"grad_output must have shape {y.shape}, like the forward result; got shape {d.shape}")
        return self._derivative(d.astype(y.dtype, copy=False), y, axis)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """``exp(x) / sum(exp(x))`` along ``dim``."""

    def _result(self, shifted, log_sum):
        return np.exp(shifted - log_sum)

    def _derivative(self, d, y, axis):
        return y * (d - (d * y).sum(axis=axis, keepdims=True))


class LogSoftmax(_SoftmaxBase):
    """``x - log(sum(exp(x)))`` along ``dim``."""

    def _result(self, shifted, log_sum):
        return shifted - log_sum

    def _derivative(self, d, y, axis):
        return d - np.exp(y) * d.sum(axis=axis, keepdims=True)
