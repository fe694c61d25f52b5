"""Optimizers (SGD, Adam, RMSprop) and gradient clipping that update NumPy parameters in place.

Every update rule is PyTorch's, step for step, so that a model trained with
fastrnn follows the same trajectory as the same model trained with
``torch.optim`` (up to floating-point rounding). A parameter is any object with
a ``data`` attribute (a float ndarray, updated in place) and a ``grad``
attribute (an ndarray of the same shape, or ``None`` to be skipped), such as
:class:`fastrnn.parameter.Parameter`.

Update rules, with ``g`` the gradient of parameter ``p`` at step ``t`` (negated
when ``maximize``), after weight decay ``g <- g + weight_decay * p``:

SGD
    ``b <- g`` at the first step, else ``b <- momentum * b + (1 - dampening) * g``;
    ``d = g + momentum * b`` (Nesterov) or ``d = b`` (momentum), ``d = g`` otherwise;
    ``p <- p - lr * d``.
Adam
    ``m <- m + (1 - beta1) * (g - m)``; ``v <- beta2 * v + (1 - beta2) * g**2``;
    ``v_max <- max(v_max, v)`` with amsgrad (used instead of ``v`` below);
    ``p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.
RMSprop
    ``v <- alpha * v + (1 - alpha) * g**2``; centered: ``a <- a + (1 - alpha) * (g - a)``
    and ``s = sqrt(v - a**2) + eps``, otherwise ``s = sqrt(v) + eps``;
    with momentum ``b <- momentum * b + g / s`` and ``p <- p - lr * b``,
    otherwise ``p <- p - lr * g / s``.
"""

import copy
import math
import numbers

import numpy as np

from fastrnn._threads import one_thread_at_a_time
from fastrnn.exceptions import ArgumentError, NonFiniteError, ShapeError

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_grad_norm_", "clip_grad_value_"]


def _is_parameter(obj):
    """Whether ``obj`` looks like one parameter (has ``data`` and ``grad``) rather than a collection."""
    return hasattr(obj, "data") and hasattr(obj, "grad")


def _check_real(name, value):
    """Require a real number (not a bool); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a real number; got {value!r}")
    return float(value)


def _check_nonnegative(name, value):
    """Require a real number >= 0."""
    value = _check_real(name, value)
    if not value >= 0.0:  # written so that NaN fails too
        raise ArgumentError(f"{name} must be >= 0; got {value!r}")
    return value


def _check_unit_interval(name, value):
    """Require a real number in [0, 1)."""
    value = _check_real(name, value)
    if not 0.0 <= value < 1.0:
        raise ArgumentError(f"{name} must be in [0, 1); got {value!r}")
    return value


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad`` and ``state_dict``.

    ``step()`` refuses a step in which any gradient holds NaN or infinity:
    it raises :class:`fastrnn.exceptions.NonFiniteError` naming the parameter
    and changes nothing (PyTorch would write the NaN into the weights).

    Parameters
    ----------
    params : iterable of parameters, or iterable of dict
        Objects with ``data`` (float ndarray, updated in place) and ``grad``
        (ndarray of the shape of ``data``, or ``None``); or parameter groups,
        dicts with a ``"params"`` entry and any hyperparameters that override
        ``defaults`` for that group.
    defaults : dict
        The hyperparameters of every group that does not set its own.

    Attributes
    ----------
    param_groups : list of dict
        One dict per group: ``"params"`` (list of parameters) and the
        hyperparameters; change ``group["lr"]`` to schedule the learning rate.
    state : dict
        Per-parameter state (momentum buffers, moment estimates, step counts),
        keyed by the parameter object.
    defaults : dict
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, np.ndarray) or _is_parameter(params):
            # A lone parameter would otherwise be iterated over row by row.
            raise ArgumentError(
                "params must be an iterable of parameters or of parameter-group dicts; "
                f"got a single {type(params).__name__}; wrap it in a list"
            )
        try:
            groups = list(params)
        except TypeError:
            raise ArgumentError(
                "params must be an iterable of parameters or of parameter-group dicts; "
                f"got {type(params).__name__}"
            ) from None
        if len(groups) == 0:
            raise ArgumentError("params must not be empty; got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _validate_group(self, group):
        """Check the hyperparameters of one group; subclasses raise ArgumentError on bad values."""

    def add_param_group(self, param_group):
        """Add a group of parameters, with hyperparameters defaulting to ``self.defaults``.

        Parameters
        ----------
        param_group : dict
            ``{"params": parameter or iterable of parameters, **hyperparameters}``.
        """
        if not isinstance(param_group, dict):
            raise ArgumentError(
                f"a parameter group must be a dict with a 'params' entry; got {type(param_group).__name__}"
            )
        if "params" not in param_group:
            raise ArgumentError(f"a parameter group must have a 'params' entry; got keys {sorted(param_group)}")
        params = param_group["params"]
        params = [params] if _is_parameter(params) else list(params)
        if len(params) == 0:
            raise ArgumentError("a parameter group must hold at least one parameter; got an empty list")
        for index, param in enumerate(params):
            if not _is_parameter(param):
                raise ArgumentError(
                    "every parameter must have 'data' and 'grad' attributes (e.g. fastrnn.parameter.Parameter); "
                    f"parameter {index} of the group is a {type(param).__name__}"
                )
            data = param.data
            if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
                raise ArgumentError(
                    f"parameter {index} of the group must hold a float ndarray in 'data' (updated in place); "
                    f"got {type(data).__name__} of dtype {getattr(data, 'dtype', None)}"
                )
        group = dict(self.defaults)
        group.update(param_group)
        group["params"] = params
        self._validate_group(group)
        seen = {id(p) for existing in self.param_groups for p in existing["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ArgumentError("a parameter must appear only once among all parameter groups; got a repeated one")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradient of every parameter.

        Parameters
        ----------
        set_to_none : bool, default True
            Set ``grad`` to ``None`` (as PyTorch does by default) instead of
            filling the existing array with zeros.
        """
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad[...] = 0

    def _gradients(self, group):
        """Yield ``(param, grad)`` for the parameters of ``group`` that have a gradient.

        The gradient is returned in the parameter's dtype, negated when the
        group maximizes, then with the group's L2 weight decay ``weight_decay * p``
        added (every rule here takes the same coupled decay); it is never the
        caller's array, so updates may work in it.
        """
        for param in group["params"]:
            if param.grad is None:
                continue
            grad = np.asarray(param.grad)
            if grad.shape != param.data.shape:
                raise ShapeError(
                    f"the gradient of a parameter must have the parameter's shape {param.data.shape}; "
                    f"got shape {grad.shape}"
                )
            grad = np.array(grad, dtype=param.data.dtype, copy=True)
            if group.get("maximize", False):
                np.negative(grad, out=grad)
            if group.get("weight_decay", 0) != 0:
                grad += group["weight_decay"] * param.data
            yield param, grad

    def _refuse_non_finite_gradients(self):
        """Raise NonFiniteError, before any parameter changes, when a gradient holds NaN or infinity.

        Unlike PyTorch, a step never spreads a NaN gradient into the weights:
        the whole step is refused, naming the parameter.
        """
        for group_index, group in enumerate(self.param_groups):
            for index, param in enumerate(group["params"]):
                if param.grad is not None and not np.isfinite(param.grad).all():
                    raise NonFiniteError(
                        f"the gradient of parameter {index} of parameter group {group_index} "
                        f"(shape {param.data.shape}) is not finite; the step was not applied and "
                        "no parameter changed"
                    )

    def _state_of(self, param, *buffers):
        """The state of ``param``; on its first step ``{"step": 0}`` and a zero array per name in ``buffers``."""
        state = self.state.setdefault(param, {})
        if not state:
            state["step"] = 0
            for name in buffers:
                state[name] = np.zeros_like(param.data)
        return state

    def step(self):
        """Update every parameter that has a gradient, once."""
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # an optimizer's state (moments, step counts) is updated in place: one step at a time
        if "step" in cls.__dict__:
            cls.step = one_thread_at_a_time(cls.__dict__["step"])

    def state_dict(self):
        """The optimizer's state and hyperparameters, with parameters replaced by their index.

        Returns
        -------
        dict
            ``{"state": {index: {name: value}}, "param_groups": [{..., "params": [index, ...]}]}``;
            arrays are copies.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = []
            for param in group["params"]:
                index[id(param)] = len(index)
                saved["params"].append(index[id(param)])
            groups.append(saved)
        state = {index[id(param)]: copy.deepcopy(value) for param, value in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned, onto this optimizer's parameters (same order).

        Parameters
        ----------
        state_dict : dict
            As returned by :meth:`state_dict` of an optimizer of the same class
            built on parameters of the same shapes.
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ArgumentError(
                f"state_dict has {len(groups)} parameter group(s); this optimizer has {len(self.param_groups)}"
            )
        params = []
        for saved, group in zip(groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ArgumentError(
                    f"a parameter group of state_dict has {len(saved['params'])} parameter(s); "
                    f"the matching group of this optimizer has {len(group['params'])}"
                )
            params.extend(zip(saved["params"], group["params"]))
        by_index = dict(params)
        state = {}
        for index, value in state_dict["state"].items():
            param = by_index[index]
            value = copy.deepcopy(value)
            for name, array in value.items():
                if isinstance(array, np.ndarray) and array.shape != param.data.shape:
                    raise ShapeError(
                        f"state {name!r} of parameter {index} has shape {array.shape}; "
                        f"the parameter has shape {param.data.shape}"
                    )
            state[param] = value
        self.state = state
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = value

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key != "params")
        lines.append(")")
        return "\n".join(lines)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    Parameters
    ----------
    params : iterable of parameters, or iterable of dict
        See :class:`Optimizer`.
    lr : float, default 1e-3
        Learning rate, >= 0.
    momentum : float, default 0
        Momentum factor, >= 0.
    dampening : float, default 0
        Dampening of the momentum buffer update.
    weight_decay : float, default 0
        L2 penalty added to the gradient, >= 0.
    nesterov : bool, default False
        Nesterov momentum; requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Ascend the objective instead of descending it.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        _check_nonnegative("lr", group["lr"])
        _check_nonnegative("momentum", group["momentum"])
        _check_real("dampening", group["dampening"])
        _check_nonnegative("weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ArgumentError(
                "nesterov=True requires momentum > 0 and dampening = 0; "
                f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def step(self):
        """Update every parameter that has a gradient, once (none when a gradient is not finite)."""
        self._refuse_non_finite_gradients()
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            for param, grad in self._gradients(group):
                if momentum != 0:
                    state = self.state.setdefault(param, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        # The first step starts the buffer at the gradient itself (no dampening).
                        buf = grad.copy()
                        state["momentum_buffer"] = buf
                    else:
                        buf *= momentum
                        buf += (1 - group["dampening"]) * grad
                    if group["nesterov"]:
                        grad += momentum * buf
                    else:
                        grad = buf
                param.data -= lr * grad


class Adam(Optimizer):
    """Adam, with optional AMSGrad and (coupled, L2) weight decay.

    Parameters
    ----------
    params : iterable of parameters, or iterable of dict
        See :class:`Optimizer`.
    lr : float, default 1e-3
        Learning rate, >= 0.
    betas : tuple of two floats, default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator after the square root, >= 0.
    weight_decay : float, default 0
        L2 penalty added to the gradient, >= 0.
    amsgrad : bool, default False
        Divide by the running maximum of the second moment estimate.
    maximize : bool, default False
        Ascend the objective instead of descending it.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 maximize=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        _check_nonnegative("lr", group["lr"])
        _check_nonnegative("eps", group["eps"])
        betas = group["betas"]
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ArgumentError(f"betas must be a pair (beta1, beta2); got {betas!r}") from None
        _check_unit_interval("betas[0]", beta1)
        _check_unit_interval("betas[1]", beta2)
        _check_nonnegative("weight_decay", group["weight_decay"])

    def step(self):
        """Update every parameter that has a gradient, once (none when a gradient is not finite)."""
        self._refuse_non_finite_gradients()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param, grad in self._gradients(group):
                state = self._state_of(param, "exp_avg", "exp_avg_sq",
                                       *(["max_exp_avg_sq"] if group["amsgrad"] else []))
                state["step"] += 1
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                # m + (1 - beta1) (g - m) is how torch's lerp_ computes for weights below 0.5.
                exp_avg += (1 - beta1) * (grad - exp_avg)
                exp_avg_sq *= beta2
                exp_avg_sq += (1 - beta2) * grad * grad
                step_size = group["lr"] / (1 - beta1 ** step)
                bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
                if group["amsgrad"]:
                    np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    second = state["max_exp_avg_sq"]
                else:
                    second = exp_avg_sq
                denom = np.sqrt(second) / bias_correction2_sqrt
                denom += group["eps"]
                param.data -= step_size * (exp_avg / denom)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum.

    Parameters
    ----------
    params : iterable of parameters, or iterable of dict
        See :class:`Optimizer`.
    lr : float, default 1e-2
        Learning rate, >= 0.
    alpha : float, default 0.99
        Decay rate of the running average of squared gradients, >= 0.
    eps : float, default 1e-8
        Added to the denominator after the square root, >= 0.
    weight_decay : float, default 0
        L2 penalty added to the gradient, >= 0.
    momentum : float, default 0
        Momentum factor, >= 0.
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its
        second moment.
    maximize : bool, default False
        Ascend the objective instead of descending it.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        _check_nonnegative("lr", group["lr"])
        _check_nonnegative("eps", group["eps"])
        _check_nonnegative("momentum", group["momentum"])
        _check_nonnegative("weight_decay", group["weight_decay"])
        _check_nonnegative("alpha", group["alpha"])

    def step(self):
        """Update every parameter that has a gradient, once (none when a gradient is not finite)."""
        self._refuse_non_finite_gradients()
        for group in self.param_groups:
            alpha = group["alpha"]
            for param, grad in self._gradients(group):
                state = self._state_of(param, "square_avg",
                                       *(["momentum_buffer"] if group["momentum"] > 0 else []),
                                       *(["grad_avg"] if group["centered"] else []))
                state["step"] += 1
                square_avg = state["square_avg"]
                square_avg *= alpha
                square_avg += (1 - alpha) * grad * grad
                if group["centered"]:
                    grad_avg = state["grad_avg"]
                    grad_avg += (1 - alpha) * (grad - grad_avg)
                    avg = np.sqrt(square_avg - grad_avg * grad_avg)
                else:
                    avg = np.sqrt(square_avg)
                avg += group["eps"]  # eps after the square root, as PyTorch does
                if group["momentum"] > 0:
                    buf = state["momentum_buffer"]
                    buf *= group["momentum"]
                    buf += grad / avg
                    param.data -= group["lr"] * buf
                else:
                    param.data -= group["lr"] * (grad / avg)


def _parameters_with_grad(parameters):
    """The parameters (one, or an iterable) whose ``grad`` is not None, as a list."""
    if _is_parameter(parameters):
        parameters = [parameters]
    elif isinstance(parameters, np.ndarray):
        raise ArgumentError(
            "parameters must be a parameter (with 'data' and 'grad') or an iterable of them; got an ndarray"
        )
    result = []
    for index, param in enumerate(parameters):
        if not _is_parameter(param):
            raise ArgumentError(
                f"every parameter must have 'data' and 'grad' attributes; item {index} is a {type(param).__name__}"
            )
        if param.grad is not None:
            result.append(param)
    return result


def _vector_norm(array, norm_type):
    """The ``norm_type``-norm of ``array`` flattened, in its own dtype (0-d array)."""
    array = np.abs(array.ravel())
    if norm_type == math.inf:
        return array.max(initial=0) if array.size else np.zeros((), array.dtype)
    if norm_type == -math.inf:
        return array.min() if array.size else np.asarray(np.inf, array.dtype)
    if norm_type == 0:
        return np.asarray(np.count_nonzero(array), array.dtype)
    if norm_type == 1:
        return array.sum()
    if norm_type == 2:
        return np.sqrt(np.dot(array, array))
    return np.sum(array ** norm_type) ** (1.0 / norm_type)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients in place so that their joint norm is at most ``max_norm``.

    The joint norm is the norm of the vector of every gradient concatenated.
    Every gradient is multiplied by ``min(1, max_norm / (total_norm + 1e-6))``,
    as in ``torch.nn.utils.clip_grad_norm_``.

    Parameters
    ----------
    parameters : parameter or iterable of parameters
        Objects with ``data`` and ``grad``; those whose ``grad`` is None are ignored.
    max_norm : float
        The largest norm allowed.
    norm_type : float, default 2.0
        The p of the p-norm; ``math.inf`` (or ``"inf"``) for the largest absolute value.
    error_if_nonfinite : bool, default False
        Raise instead of clipping when the joint norm is NaN or infinite.

    Returns
    -------
    float
        The joint norm of the gradients before clipping (0.0 when there are none).

    Raises
    ------
    NonFiniteError
        When ``error_if_nonfinite`` and the joint norm is NaN or infinite.
    """
    params = _parameters_with_grad(parameters)
    max_norm = _check_real("max_norm", max_norm)
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise ArgumentError(f"norm_type must be a number or 'inf'; got {norm_type!r}") from None
    if not params:
        return 0.0
    norms = [_vector_norm(np.asarray(p.grad), norm_type) for p in params]
    dtype = np.result_type(*norms)
    total = _vector_norm(np.array(norms, dtype=dtype), norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise NonFiniteError(
            f"the total norm of order {norm_type} of the gradients is {float(total)}, so they cannot be "
            "clipped; set error_if_nonfinite=False to scale them anyway"
        )
    # Always multiplied (even by 1.0), as torch does: NaN gradients stay NaN.
    clip_coef = np.minimum(dtype.type(max_norm) / (total + dtype.type(1e-6)), dtype.type(1.0))
    for param in params:
        param.grad *= clip_coef.astype(param.grad.dtype)
    return float(total)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient in place to ``[-clip_value, clip_value]``.

    Parameters
    ----------
    parameters : parameter or iterable of parameters
        Objects with ``data`` and ``grad``; those whose ``grad`` is None are ignored.
    clip_value : float
        The largest absolute value a gradient entry may keep.
    """
    clip_value = _check_real("clip_value", clip_value)
    for param in _parameters_with_grad(parameters):
        np.clip(param.grad, -clip_value, clip_value, out=param.grad)
