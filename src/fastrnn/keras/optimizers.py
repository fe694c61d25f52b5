"""Keras-semantics optimizers for fastrnn.keras: SGD, RMSprop, Adam and AdamW with Keras 3's update rules.

They differ from the PyTorch rules of :mod:`fastrnn.optim` in where epsilon
goes, in how Adam corrects its bias and in the form of the momentum buffer, so
they are written out here; their results follow Keras's step for step.

One call of :meth:`Optimizer.apply` does, for every variable ``p`` with
gradient ``g``, in ``p``'s dtype and in this order:

1. clipping (at most one of): ``clipnorm`` -- each gradient scaled by
   ``clipnorm / max(||g||, clipnorm)``; ``global_clipnorm`` -- every gradient
   scaled by ``c / max(N, c)`` with ``N`` the norm of all gradients together;
   ``clipvalue`` -- each entry clipped to ``[-v, v]``;
2. decoupled weight decay: ``p <- p - p * weight_decay * lr``;
3. the update, with ``t`` the 1-based step:

SGD
    without momentum ``p <- p - lr g``; with it ``m <- momentum m - lr g`` and
    ``p <- p + m`` (Nesterov: ``p <- p + momentum m - lr g``, with the new ``m``).
RMSprop
    ``v <- rho v + (1 - rho) g**2``; centered: ``a <- rho a + (1 - rho) g`` and
    ``d = v - a**2 + eps``, else ``d = v + eps``; ``inc = lr g / sqrt(d)``
    (epsilon inside the square root); with momentum ``b <- momentum b + inc``
    and ``p <- p - b``, else ``p <- p - inc``.
Adam
    ``alpha = lr sqrt(1 - beta_2**t) / (1 - beta_1**t)``;
    ``m <- m + (g - m)(1 - beta_1)``; ``v <- v + (g**2 - v)(1 - beta_2)``;
    amsgrad: ``v_hat <- max(v_hat, v)`` used for ``v`` below;
    ``p <- p - alpha m / (sqrt(v) + eps)`` (epsilon not bias-corrected).
AdamW
    Adam with step 2 always on (``weight_decay`` 0.004 by default).
"""

import math
import numbers

import numpy as np

from fastrnn._threads import one_thread_at_a_time
from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, ShapeError

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "get", "serialize"]


def _number(name, value, low=None, high=None, low_open=False, high_open=False, optional=False):
    """``value`` as a float after checking that it is a real number in the given interval."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ArgumentError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
                   f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
        raise ArgumentError(f"{name} must be in {interval}; got {value!r}")
    return value


def _data(variable):
    """The ndarray updated in place for ``variable`` (a Parameter, or an ndarray itself)."""
    data = variable if isinstance(variable, np.ndarray) else getattr(variable, "data", None)
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise ArgumentError("a variable must be a float ndarray or have one in '.data' "
                            f"(fastrnn.parameter.Parameter); got {type(variable).__name__}")
    return data


class Optimizer:
    """Base class: clipping, weight decay, step counting and per-variable slots.

    Parameters
    ----------
    learning_rate : float
    weight_decay : float, optional
        Decoupled decay applied before the update (``p -= p * wd * lr``).
    clipnorm, clipvalue, global_clipnorm : float, optional
        At most one; see the module docstring.
    name : str, optional

    Attributes
    ----------
    iterations : int
        Number of :meth:`apply` calls so far.
    learning_rate : float
        May be changed between steps.
    """

    default_name = "optimizer"
    slot_names = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None):
        self.learning_rate = _number("learning_rate", learning_rate, low=0)
        self.weight_decay = _number("weight_decay", weight_decay, low=0, optional=True)
        self.clipnorm = _number("clipnorm", clipnorm, low=0, low_open=True, optional=True)
        self.clipvalue = _number("clipvalue", clipvalue, low=0, low_open=True, optional=True)
        self.global_clipnorm = _number("global_clipnorm", global_clipnorm, low=0, low_open=True, optional=True)
        given = [n for n in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ArgumentError(f"set at most one of clipnorm, clipvalue and global_clipnorm; got {', '.join(given)}")
        self.name = name or self.default_name
        self.iterations = 0
        self._slots = {}  # id(variable) -> (variable, {slot name: ndarray}); the variable keeps the id valid

    # the step ------------------------------------------------------------------------------
    def apply(self, grads, variables):
        """Update ``variables`` in place from their gradients, once.

        Parameters
        ----------
        grads : list of (ndarray or None)
            One per variable, of its shape; ``None`` leaves that variable alone.
        variables : list of Parameter or ndarray
            Float arrays (or objects holding one in ``.data``) updated in place.
        """
        variables = list(variables)
        grads = list(grads)
        if len(grads) != len(variables):
            raise ArgumentError(f"got {len(grads)} gradient(s) for {len(variables)} variable(s); "
                                "pass one gradient (or None) per variable")
        pairs = []
        for index, (grad, variable) in enumerate(zip(grads, variables)):
            if grad is None:
                continue
            data = _data(variable)
            grad = np.asarray(grad)
            if grad.shape != data.shape:
                raise ShapeError(f"the gradient of variable {index} must have its shape {data.shape}; "
                                 f"got {grad.shape}")
            pairs.append((variable, data, grad.astype(data.dtype, copy=False)))
        if pairs:
            clipped = self._clip([grad for _, _, grad in pairs])
            for (variable, data, _), grad in zip(pairs, clipped):
                lr = data.dtype.type(self.learning_rate)
                if self.weight_decay is not None:
                    data -= data * data.dtype.type(self.weight_decay) * lr
                self.update_step(grad, data, self._slots_of(variable, data), lr)
                if hasattr(variable, "mark_changed"):  # packed copies of it are stale now
                    variable.mark_changed()
        self.iterations += 1

    @one_thread_at_a_time  # slots and iteration counts are updated in place
    def apply_gradients(self, grads_and_vars):
        """Keras's spelling of :meth:`apply`: an iterable of ``(gradient, variable)`` pairs."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def _clip(self, grads):
        if self.clipnorm is not None:
            clipped = []
            for grad in grads:
                norm = np.sqrt(np.sum(grad * grad))
                c = grad.dtype.type(self.clipnorm)
                clipped.append(grad * c / np.maximum(norm, c))
            return clipped
        if self.global_clipnorm is not None:
            total = math.sqrt(sum(float(np.sum(np.square(grad, dtype=np.float64))) for grad in grads))
            scale = self.global_clipnorm * min(1.0 / total if total else math.inf, 1.0 / self.global_clipnorm)
            if not math.isfinite(total):
                scale = math.nan  # a NaN or infinite norm poisons every gradient, as in Keras
            return [grad * grad.dtype.type(scale) for grad in grads]
        if self.clipvalue is not None:
            return [np.clip(grad, -self.clipvalue, self.clipvalue).astype(grad.dtype, copy=False) for grad in grads]
        return grads

    def _slots_of(self, variable, data):
        entry = self._slots.get(id(variable))
        if entry is None or entry[0] is not variable:
            entry = (variable, {name: np.zeros_like(data) for name in self.active_slots()})
            self._slots[id(variable)] = entry
        return entry[1]

    # pickling: the slots are keyed by id(), which a copy of the variables does not keep -------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_slots"] = list(self._slots.values())
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # pickle keeps the variables shared with the model, so re-keying by their new ids
        # reattaches every slot to the model's copy of its variable
        self._slots = {id(variable): (variable, slots) for variable, slots in state["_slots"]}

    def active_slots(self):
        """Names of the per-variable state arrays this configuration keeps."""
        return self.slot_names

    def update_step(self, grad, data, slots, lr):
        """Update ``data`` in place from ``grad`` (same dtype) and the variable's ``slots``."""
        raise NotImplementedError

    # state -------------------------------------------------------------------------------
    def get_slot_arrays(self, variables):
        """Per variable, a dict of copies of its state arrays (empty before its first update)."""
        result = []
        for variable in variables:
            entry = self._slots.get(id(variable))
            result.append({} if entry is None or entry[0] is not variable
                          else {name: array.copy() for name, array in entry[1].items()})
        return result

    def _snapshot(self, variables):
        """The state a step on ``variables`` changes: the iteration count and copies of their slots."""
        return self.iterations, {id(v): (v, {name: a.copy() for name, a in self._slots[id(v)][1].items()})
                                 for v in variables if id(v) in self._slots}

    def _restore(self, variables, snapshot):
        """Undo a step on ``variables``: put back what :meth:`_snapshot` saved (slots made since go)."""
        self.iterations, saved = snapshot
        for variable in variables:
            self._slots.pop(id(variable), None)
        self._slots.update(saved)

    def set_slot_arrays(self, variables, slot_arrays, iterations):
        """Restore what :meth:`get_slot_arrays` returned, for the same variables in the same order."""
        variables = list(variables)
        if len(slot_arrays) != len(variables):
            raise ArgumentError(f"got optimizer state for {len(slot_arrays)} variable(s); "
                                f"the model has {len(variables)} trainable variable(s)")
        for index, (variable, slots) in enumerate(zip(variables, slot_arrays)):
            if not slots:
                continue
            data = _data(variable)
            restored = {}
            for name in self.active_slots():
                if name not in slots:
                    raise ArgumentError(f"optimizer state of variable {index} lacks {name!r}")
                array = np.asarray(slots[name])
                if array.shape != data.shape:
                    raise ShapeError(f"optimizer state {name!r} of variable {index} has shape {array.shape}; "
                                     f"the variable has {data.shape}")
                restored[name] = np.array(array, dtype=data.dtype, copy=True)
            self._slots[id(variable)] = (variable, restored)
        self.iterations = int(iterations)

    def get_config(self):
        """Constructor arguments (JSON-serialisable) that recreate the optimizer, without its state."""
        return {"name": self.name, "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items() if value is not None)
        return f"{type(self).__name__}({arguments})"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras's formulation.

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float in [0, 1], default 0
    nesterov : bool, default False
    weight_decay, clipnorm, clipvalue, global_clipnorm, name
        See :class:`Optimizer`.
    """

    default_name = "SGD"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.momentum = _number("momentum", momentum, low=0, high=1)
        self.nesterov = check_bool("nesterov", nesterov)

    def active_slots(self):
        return ("momentum",) if self.momentum != 0 else ()

    def update_step(self, grad, data, slots, lr):
        if self.momentum == 0:
            data -= grad * lr
            return
        # in place, in Keras's order of operations (same rounding), with one or two temporaries
        m = slots["momentum"]
        momentum = data.dtype.type(self.momentum)
        step = grad * lr
        m *= momentum
        m -= step
        if self.nesterov:
            ahead = m * momentum
            ahead -= step
            data += ahead
        else:
            data += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSprop, Keras's formulation (epsilon inside the square root).

    Parameters
    ----------
    learning_rate : float, default 0.001
    rho : float in [0, 1), default 0.9
        Decay of the mean of squared gradients.
    momentum : float in [0, 1], default 0
    epsilon : float, default 1e-7
    centered : bool, default False
        Divide by an estimate of the gradient's variance instead of its second moment.
    weight_decay, clipnorm, clipvalue, global_clipnorm, name
        See :class:`Optimizer`.
    """

    default_name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = _number("rho", rho, low=0, high=1, high_open=True)
        self.momentum = _number("momentum", momentum, low=0, high=1)
        self.epsilon = _number("epsilon", epsilon, low=0)
        self.centered = check_bool("centered", centered)

    def active_slots(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + \
               (("average_gradient",) if self.centered else ())

    def update_step(self, grad, data, slots, lr):
        # in place, in Keras's order of operations (same rounding), with two temporaries
        dtype = data.dtype.type
        rho, one_minus_rho = dtype(self.rho), dtype(1 - self.rho)
        v = slots["velocity"]
        scratch = np.multiply(grad, grad)
        scratch *= one_minus_rho
        v *= rho
        v += scratch
        if self.centered:
            a = slots["average_gradient"]
            a *= rho
            a += one_minus_rho * grad
            np.multiply(a, a, out=scratch)
            np.subtract(v, scratch, out=scratch)
            scratch += dtype(self.epsilon)
        else:
            np.add(v, dtype(self.epsilon), out=scratch)
        np.sqrt(scratch, out=scratch)
        increment = lr * grad
        increment /= scratch
        if self.momentum > 0:
            b = slots["momentum"]
            b *= dtype(self.momentum)
            b += increment
            data -= b
        else:
            data -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adam(Optimizer):
    """Adam, Keras's formulation (bias correction folded into the step size, epsilon not corrected).

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta_1 : float in [0, 1), default 0.9
    beta_2 : float in [0, 1), default 0.999
    epsilon : float, default 1e-7
    amsgrad : bool, default False
    weight_decay, clipnorm, clipvalue, global_clipnorm, name
        See :class:`Optimizer`.
    """

    default_name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = _number("beta_1", beta_1, low=0, high=1, high_open=True)
        self.beta_2 = _number("beta_2", beta_2, low=0, high=1, high_open=True)
        self.epsilon = _number("epsilon", epsilon, low=0)
        self.amsgrad = check_bool("amsgrad", amsgrad)

    def active_slots(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def update_step(self, grad, data, slots, lr):
        dtype = data.dtype.type
        t = dtype(self.iterations + 1)
        alpha = lr * np.sqrt(dtype(1) - dtype(self.beta_2) ** t) / (dtype(1) - dtype(self.beta_1) ** t)
        # in place, in Keras's order of operations (same rounding), with two temporaries
        m, v = slots["momentum"], slots["velocity"]
        first = grad - m
        first *= dtype(1 - self.beta_1)
        m += first
        second = np.multiply(grad, grad)
        second -= v
        second *= dtype(1 - self.beta_2)
        v += second
        if self.amsgrad:
            v_hat = slots["velocity_hat"]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        np.sqrt(v, out=second)
        second += dtype(self.epsilon)
        np.multiply(m, alpha, out=first)
        first /= second
        data -= first

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras's ``AdamW``): :class:`Adam` whose ``weight_decay``
    defaults to 0.004 and must be given.

    Parameters
    ----------
    learning_rate : float, default 0.001
    weight_decay : float, default 0.004
        Each step first shrinks every weight: ``p <- p - p * weight_decay * lr``.
    beta_1, beta_2, epsilon, amsgrad
        See :class:`Adam`.
    clipnorm, clipvalue, global_clipnorm, name
        See :class:`Optimizer`.
    """

    default_name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        if weight_decay is None:
            raise ArgumentError("AdamW needs a weight_decay (a float >= 0); got None (use Adam without decay)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)


_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
_CLASSES = {cls.__name__: cls for cls in (SGD, RMSprop, Adam, AdamW)}


def get(identifier):
    """An optimizer from a Keras name (``"sgd"``, ``"rmsprop"``, ``"adam"``), a config dict or an instance.

    Parameters
    ----------
    identifier : str, dict or Optimizer
        A name (case-insensitive) gives that optimizer with its defaults; a
        dict ``{"class_name": ..., "config": ...}`` is what :func:`serialize`
        returns; an :class:`Optimizer` is returned as is.

    Returns
    -------
    Optimizer

    Raises
    ------
    ArgumentError
        For an unknown name, listing the valid ones.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        cls = _CLASSES.get(class_name) or _BY_NAME.get(str(class_name).lower())
        if cls is None:
            raise ArgumentError(f"unknown optimizer class {class_name!r}; valid: {', '.join(sorted(_CLASSES))}")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ArgumentError(f"unknown optimizer {identifier!r}; valid names: {', '.join(sorted(_BY_NAME))} "
                                "(or a fastrnn.keras.optimizers.Optimizer instance)")
        return cls()
    raise ArgumentError(f"an optimizer must be a name ({', '.join(sorted(_BY_NAME))}) or a "
                        f"fastrnn.keras.optimizers.Optimizer; got {type(identifier).__name__}")


def serialize(optimizer):
    """``{"class_name": ..., "config": ...}`` that :func:`get` turns back into an equal optimizer."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
