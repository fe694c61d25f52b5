"""fastrnn.optim: optimizer trajectories and gradient clipping against torch.optim and hand formulas.

The torch comparisons feed the same parameters and the same sequence of random
gradients to both libraries and compare every parameter after each step; they
are skipped when torch is absent. The argument checks, hand-computed steps and
bookkeeping tests need only NumPy.
"""

import math

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, NonFiniteError, ShapeError
from fastrnn.optim import SGD, Adam, RMSprop, clip_grad_norm_, clip_grad_value_
from fastrnn.parameter import Parameter
from tolerances import FLOAT64_REORDERED, HAND_CHECKED, SHORT_COMPUTATION, TORCH_PARITY

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SHAPES = [(3, 4), (5,), (2, 3, 2)]
N_STEPS = 20
#: Same operations in the same order as torch, so float64 agrees to a few roundings per step.
TOLERANCE = {dtype.type: tolerance for dtype, tolerance in TORCH_PARITY.items()}


def initial_arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def gradient_sequence(dtype, seed=1, none_at=None):
    """``N_STEPS`` lists of gradients, one per parameter; ``none_at`` = {(step, index)} gives None there."""
    rng = np.random.default_rng(seed)
    none_at = none_at or set()
    return [
        [None if (step, i) in none_at else rng.standard_normal(shape).astype(dtype) for i, shape in enumerate(SHAPES)]
        for step in range(N_STEPS)
    ]


def params_from(arrays):
    return [Parameter(array.copy()) for array in arrays]


def fastrnn_trajectory(optimizer_class, kwargs, arrays, gradients, groups=None):
    """Parameter values after each step with fastrnn's optimizer."""
    params = params_from(arrays)
    spec = params if groups is None else [dict(g, params=[params[i] for i in g["params"]]) for g in groups]
    optimizer = optimizer_class(spec, **kwargs)
    history = []
    for step_grads in gradients:
        for param, grad in zip(params, step_grads):
            param.grad = None if grad is None else grad.copy()
        optimizer.step()
        history.append([p.data.copy() for p in params])
    return history


def torch_trajectory(optimizer_name, kwargs, arrays, gradients, groups=None):
    """Parameter values after each step with torch.optim's optimizer of the same name."""
    params = [torch.nn.Parameter(torch.from_numpy(array.copy())) for array in arrays]
    spec = params if groups is None else [dict(g, params=[params[i] for i in g["params"]]) for g in groups]
    optimizer = getattr(torch.optim, optimizer_name)(spec, **kwargs)
    history = []
    for step_grads in gradients:
        for param, grad in zip(params, step_grads):
            param.grad = None if grad is None else torch.from_numpy(grad.copy())
        optimizer.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def assert_same_trajectory(ours, theirs, dtype, label):
    for step, (mine, reference) in enumerate(zip(ours, theirs)):
        for i, (a, b) in enumerate(zip(mine, reference)):
            assert a.dtype == b.dtype, f"{label}: dtype {a.dtype} != {b.dtype}"
            np.testing.assert_allclose(a, b, **TOLERANCE[dtype], err_msg=f"{label}: step {step + 1}, parameter {i}")


SGD_CASES = [
    {},
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    {"lr": 0.05, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    {"lr": 0.05, "momentum": 0.5, "maximize": True},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True},
]
ADAM_CASES = [
    {},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6, "maximize": True},
    {"lr": 0.01, "amsgrad": True, "weight_decay": 0.05},
]
RMSPROP_CASES = [
    {},
    {"lr": 0.01, "centered": True},
    {"lr": 0.01, "momentum": 0.9},
    {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1},
    {"lr": 0.01, "alpha": 0.9, "eps": 1e-4, "maximize": True},
]
ALL_CASES = (
    [(SGD, "SGD", kw) for kw in SGD_CASES]
    + [(Adam, "Adam", kw) for kw in ADAM_CASES]
    + [(RMSprop, "RMSprop", kw) for kw in RMSPROP_CASES]
)


def case_id(case):
    _, name, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


@requires_torch
class TestAgainstTorchOptim:
    """20 steps of each optimizer configuration give torch.optim's parameters after every step."""

    @pytest.mark.parametrize("case", ALL_CASES, ids=[case_id(c) for c in ALL_CASES])
    @pytest.mark.parametrize("dtype", [np.float64, np.float32])
    def test_trajectory(self, case, dtype):
        optimizer_class, name, kwargs = case
        arrays, gradients = initial_arrays(dtype), gradient_sequence(dtype)
        ours = fastrnn_trajectory(optimizer_class, kwargs, arrays, gradients)
        theirs = torch_trajectory(name, kwargs, arrays, gradients)
        assert_same_trajectory(ours, theirs, dtype, case_id(case))

    @pytest.mark.parametrize("case", ALL_CASES, ids=[case_id(c) for c in ALL_CASES])
    def test_missing_gradients(self, case):
        # A parameter without a gradient at some step is skipped there (its state does not advance).
        optimizer_class, name, kwargs = case
        none_at = {(0, 1), (3, 0), (4, 0), (10, 2), (19, 1)}
        arrays, gradients = initial_arrays(np.float64), gradient_sequence(np.float64, none_at=none_at)
        ours = fastrnn_trajectory(optimizer_class, kwargs, arrays, gradients)
        theirs = torch_trajectory(name, kwargs, arrays, gradients)
        assert_same_trajectory(ours, theirs, np.float64, case_id(case))

    @pytest.mark.parametrize("optimizer_class,name,extra", [
        (SGD, "SGD", {"momentum": 0.3}),
        (Adam, "Adam", {"betas": (0.8, 0.99)}),
        (RMSprop, "RMSprop", {"centered": True}),
    ])
    def test_param_groups(self, optimizer_class, name, extra):
        groups = [{"params": [0, 2], "lr": 0.03, **extra}, {"params": [1]}]
        arrays, gradients = initial_arrays(np.float64), gradient_sequence(np.float64)
        ours = fastrnn_trajectory(optimizer_class, {"lr": 0.2}, arrays, gradients, groups=groups)
        theirs = torch_trajectory(name, {"lr": 0.2}, arrays, gradients, groups=groups)
        assert_same_trajectory(ours, theirs, np.float64, f"{name} with groups")


class TestHandComputedSteps:
    """One or two steps worked out from the update formulas, without torch."""

    def setup_method(self):
        rng = np.random.default_rng(7)
        self.p0 = rng.standard_normal((4, 3))
        self.g1 = rng.standard_normal((4, 3))
        self.g2 = rng.standard_normal((4, 3))

    def run(self, optimizer_class, grads, **kwargs):
        param = Parameter(self.p0.copy())
        optimizer = optimizer_class([param], **kwargs)
        for grad in grads:
            param.grad = grad.copy()
            optimizer.step()
        return param.data

    def test_sgd_weight_decay(self):
        got = self.run(SGD, [self.g1], lr=0.1, weight_decay=0.5)
        np.testing.assert_allclose(got, self.p0 - 0.1 * (self.g1 + 0.5 * self.p0), **HAND_CHECKED)

    def test_sgd_momentum_starts_at_gradient(self):
        got = self.run(SGD, [self.g1, self.g2], lr=0.1, momentum=0.9, dampening=0.25)
        buf1 = self.g1  # no dampening on the first step
        buf2 = 0.9 * buf1 + 0.75 * self.g2
        np.testing.assert_allclose(got, self.p0 - 0.1 * buf1 - 0.1 * buf2, **FLOAT64_REORDERED)

    def test_sgd_nesterov(self):
        got = self.run(SGD, [self.g1, self.g2], lr=0.1, momentum=0.9, nesterov=True)
        buf1 = self.g1
        p1 = self.p0 - 0.1 * (self.g1 + 0.9 * buf1)
        buf2 = 0.9 * buf1 + self.g2
        np.testing.assert_allclose(got, p1 - 0.1 * (self.g2 + 0.9 * buf2), **FLOAT64_REORDERED)

    def test_sgd_maximize(self):
        got = self.run(SGD, [self.g1], lr=0.1, maximize=True)
        np.testing.assert_allclose(got, self.p0 + 0.1 * self.g1, **HAND_CHECKED)

    def test_adam_first_step_is_sign_like(self):
        # After bias correction the first step is lr * g / (|g| + eps).
        got = self.run(Adam, [self.g1], lr=0.01, eps=1e-8)
        np.testing.assert_allclose(got, self.p0 - 0.01 * self.g1 / (np.abs(self.g1) + 1e-8), **FLOAT64_REORDERED)

    def test_adam_two_steps(self):
        b1, b2, lr, eps = 0.9, 0.999, 0.01, 1e-8
        got = self.run(Adam, [self.g1, self.g2], lr=lr, betas=(b1, b2), eps=eps)
        m = (1 - b1) * self.g1
        v = (1 - b2) * self.g1 ** 2
        p = self.p0 - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
        m = b1 * m + (1 - b1) * self.g2
        v = b2 * v + (1 - b2) * self.g2 ** 2
        p = p - lr * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + eps)
        np.testing.assert_allclose(got, p, **FLOAT64_REORDERED)

    def test_adam_amsgrad_uses_running_max(self):
        b1, b2, lr, eps = 0.9, 0.5, 0.01, 1e-8
        big, small = 10 * self.g1, 0.01 * self.g2
        got = self.run(Adam, [big, small], lr=lr, betas=(b1, b2), eps=eps, amsgrad=True)
        m, v = (1 - b1) * big, (1 - b2) * big ** 2
        p = self.p0 - lr / (1 - b1) * m / (np.sqrt(v) / np.sqrt(1 - b2) + eps)
        m = b1 * m + (1 - b1) * small
        v_new = b2 * v + (1 - b2) * small ** 2
        v_max = np.maximum(v, v_new)
        p = p - lr / (1 - b1 ** 2) * m / (np.sqrt(v_max) / np.sqrt(1 - b2 ** 2) + eps)
        np.testing.assert_allclose(got, p, **FLOAT64_REORDERED)

    def test_rmsprop_eps_after_sqrt(self):
        got = self.run(RMSprop, [self.g1], lr=0.01, alpha=0.9, eps=0.1)
        v = 0.1 * self.g1 ** 2
        np.testing.assert_allclose(got, self.p0 - 0.01 * self.g1 / (np.sqrt(v) + 0.1), **FLOAT64_REORDERED)

    def test_rmsprop_centered_momentum(self):
        a, lr, mom, eps = 0.9, 0.01, 0.5, 1e-8
        got = self.run(RMSprop, [self.g1, self.g2], lr=lr, alpha=a, eps=eps, momentum=mom, centered=True)
        v, avg, buf, p = 0.0, 0.0, 0.0, self.p0
        for g in (self.g1, self.g2):
            v = a * v + (1 - a) * g ** 2
            avg = a * avg + (1 - a) * g
            buf = mom * buf + g / (np.sqrt(v - avg ** 2) + eps)
            p = p - lr * buf
        np.testing.assert_allclose(got, p, **FLOAT64_REORDERED)

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("optimizer_class", [SGD, Adam, RMSprop])
    def test_updates_in_place_in_dtype(self, optimizer_class, dtype):
        data = self.p0.astype(dtype)
        param = Parameter(data)
        optimizer = optimizer_class([param], lr=0.1)
        param.grad = self.g1.astype(dtype)
        optimizer.step()
        assert param.data is data and data.dtype == dtype
        assert not np.array_equal(data, self.p0.astype(dtype))


class TestBookkeeping:
    """Parameters without gradients, zero_grad, parameter groups, state_dict."""

    def test_param_without_grad_untouched(self):
        cases = ((SGD, {"momentum": 0.9}), (Adam, {"amsgrad": True}), (RMSprop, {"momentum": 0.9}))
        for optimizer_class, kwargs in cases:
            with_grad, without = Parameter(np.ones(3)), Parameter(np.ones(2))
            with_grad.grad = np.full(3, 0.5)
            optimizer = optimizer_class([with_grad, without], lr=0.1, **kwargs)
            for _ in range(3):
                optimizer.step()
            np.testing.assert_array_equal(without.data, np.ones(2))
            assert without not in optimizer.state
            assert not np.array_equal(with_grad.data, np.ones(3))

    def test_zero_grad(self):
        param = Parameter(np.ones(3))
        optimizer = SGD([param])
        param.grad = np.ones(3)
        grad = param.grad
        optimizer.zero_grad(set_to_none=False)
        assert param.grad is grad
        np.testing.assert_array_equal(grad, 0)
        optimizer.zero_grad()
        assert param.grad is None

    def test_lr_change_through_param_groups(self):
        param = Parameter(np.ones(3))
        optimizer = SGD([param], lr=0.1)
        optimizer.param_groups[0]["lr"] = 0.0
        param.grad = np.ones(3)
        optimizer.step()
        np.testing.assert_array_equal(param.data, np.ones(3))

    def test_group_overrides_default(self):
        a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
        optimizer = SGD([{"params": [a], "lr": 1.0}, {"params": [b]}], lr=0.5)
        a.grad, b.grad = np.ones(2), np.ones(2)
        optimizer.step()
        np.testing.assert_array_equal(a.data, -1.0)
        np.testing.assert_array_equal(b.data, -0.5)
        assert [g["lr"] for g in optimizer.param_groups] == [1.0, 0.5]

    @pytest.mark.parametrize("optimizer_class,kwargs", [
        (SGD, {"lr": 0.1, "momentum": 0.9}),
        (Adam, {"lr": 0.1, "amsgrad": True}),
        (RMSprop, {"lr": 0.1, "centered": True, "momentum": 0.5}),
    ])
    def test_state_dict_round_trip(self, optimizer_class, kwargs):
        arrays, gradients = initial_arrays(np.float64), gradient_sequence(np.float64)
        params = params_from(arrays)
        first = optimizer_class(params, **kwargs)
        for step in range(10):
            for p, g in zip(params, gradients[step]):
                p.grad = g.copy()
            first.step()
            if step == 4:
                copies = params_from([p.data for p in params])
                second = optimizer_class(copies, lr=123.0)
                second.load_state_dict(first.state_dict())
        for step in range(5, 10):
            for p, g in zip(copies, gradients[step]):
                p.grad = g.copy()
            second.step()
        for mine, theirs in zip(copies, params):
            np.testing.assert_array_equal(mine.data, theirs.data)

    def test_grad_shape_mismatch(self):
        param = Parameter(np.ones(3))
        param.grad = np.ones(4)
        with pytest.raises(ShapeError, match=r"\(3,\).*\(4,\)"):
            SGD([param]).step()


class TestArgumentErrors:
    """Invalid hyperparameters and parameter lists raise ArgumentError naming the argument and value."""

    @pytest.mark.parametrize("optimizer_class,kwargs,pattern", [
        (SGD, {"lr": -0.1}, r"lr must be >= 0; got -0\.1"),
        (SGD, {"momentum": -0.5}, r"momentum must be >= 0; got -0\.5"),
        (SGD, {"weight_decay": -1}, r"weight_decay must be >= 0; got -1"),
        (SGD, {"nesterov": True}, r"nesterov.*momentum > 0.*got momentum=0"),
        (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, r"nesterov.*dampening = 0.*dampening=0\.1"),
        (SGD, {"lr": "fast"}, r"lr must be a real number; got 'fast'"),
        (Adam, {"lr": -1e-3}, r"lr must be >= 0; got -0\.001"),
        (Adam, {"betas": (1.0, 0.999)}, r"betas\[0\] must be in \[0, 1\); got 1\.0"),
        (Adam, {"betas": (0.9, -0.1)}, r"betas\[1\] must be in \[0, 1\); got -0\.1"),
        (Adam, {"betas": 0.9}, r"betas must be a pair"),
        (Adam, {"eps": -1e-8}, r"eps must be >= 0"),
        (Adam, {"weight_decay": -0.1}, r"weight_decay must be >= 0"),
        (RMSprop, {"alpha": -0.1}, r"alpha must be >= 0; got -0\.1"),
        (RMSprop, {"eps": -1.0}, r"eps must be >= 0"),
        (RMSprop, {"momentum": -1.0}, r"momentum must be >= 0"),
        (RMSprop, {"lr": float("nan")}, r"lr must be >= 0; got nan"),
    ])
    def test_bad_hyperparameter(self, optimizer_class, kwargs, pattern):
        with pytest.raises(ArgumentError, match=pattern):
            optimizer_class([Parameter(np.ones(2))], **kwargs)

    def test_bad_value_in_a_group(self):
        with pytest.raises(ArgumentError, match=r"lr must be >= 0; got -1"):
            SGD([{"params": [Parameter(np.ones(2))], "lr": -1}])

    @pytest.mark.parametrize("optimizer_class", [SGD, Adam, RMSprop])
    def test_empty_parameter_list(self, optimizer_class):
        with pytest.raises(ArgumentError, match="empty parameter list"):
            optimizer_class([])

    def test_single_parameter_not_wrapped(self):
        with pytest.raises(ArgumentError, match="wrap it in a list"):
            SGD(Parameter(np.ones(2)))

    def test_not_a_parameter(self):
        with pytest.raises(ArgumentError, match="'data' and 'grad'.*ndarray"):
            SGD([np.ones(2)])

    def test_repeated_parameter(self):
        param = Parameter(np.ones(2))
        with pytest.raises(ArgumentError, match="only once"):
            SGD([{"params": [param]}, {"params": [param]}])

    def test_integer_data(self):
        with pytest.raises(ArgumentError, match="float ndarray.*int64"):
            SGD([Parameter(np.ones(2, dtype=np.int64))])


def grads_of(params):
    return [None if p.grad is None else p.grad.copy() for p in params]


def clip_params(dtype, scale=1.0, seed=3):
    rng = np.random.default_rng(seed)
    params = [Parameter(np.zeros(shape, dtype)) for shape in SHAPES]
    for p in params:
        p.grad = (scale * rng.standard_normal(p.data.shape)).astype(dtype)
    return params


class TestClipByHand:
    """Clipping worked out by hand, without torch."""

    def test_norm_two(self):
        param = Parameter(np.zeros(2))
        param.grad = np.array([3.0, 4.0])
        total = clip_grad_norm_(param, max_norm=1.0)
        assert isinstance(total, float) and total == pytest.approx(5.0, rel=HAND_CHECKED["rtol"])
        np.testing.assert_allclose(param.grad, np.array([3.0, 4.0]) / (5.0 + 1e-6), **HAND_CHECKED)

    def test_joint_norm_over_parameters(self):
        a, b, c = Parameter(np.zeros(1)), Parameter(np.zeros(2)), Parameter(np.zeros(3))
        a.grad, b.grad = np.array([1.0]), np.array([2.0, -2.0])
        total = clip_grad_norm_([a, b, c], max_norm=1.5)
        assert total == pytest.approx(3.0, rel=HAND_CHECKED["rtol"])
        assert c.grad is None
        np.testing.assert_allclose(b.grad, np.array([2.0, -2.0]) * 1.5 / (3.0 + 1e-6), **HAND_CHECKED)

    @pytest.mark.parametrize("norm_type", [math.inf, "inf"])
    def test_norm_inf(self, norm_type):
        param = Parameter(np.zeros(3))
        param.grad = np.array([1.0, -7.0, 2.0])
        assert clip_grad_norm_([param], 3.5, norm_type=norm_type) == 7.0
        np.testing.assert_allclose(param.grad, np.array([1.0, -7.0, 2.0]) * 3.5 / (7.0 + 1e-6), **HAND_CHECKED)

    def test_no_clipping_below_max_norm(self):
        params = clip_params(np.float64)
        before = grads_of(params)
        total = clip_grad_norm_(params, max_norm=1e6)
        expected = np.sqrt(sum(np.sum(g ** 2) for g in before))
        assert total == pytest.approx(expected, rel=HAND_CHECKED["rtol"])
        for p, g in zip(params, before):
            np.testing.assert_array_equal(p.grad, g)

    def test_no_gradients(self):
        assert clip_grad_norm_([Parameter(np.ones(2))], 1.0) == 0.0

    def test_nonfinite(self):
        param = Parameter(np.zeros(2))
        param.grad = np.array([np.inf, 1.0])
        with pytest.raises(NonFiniteError, match="inf"):
            clip_grad_norm_(param, 1.0, error_if_nonfinite=True)

    def test_value(self):
        param = Parameter(np.zeros(4, np.float32))
        param.grad = np.array([-3.0, -0.5, 0.5, 3.0], np.float32)
        clip_grad_value_(param, 1.0)
        np.testing.assert_array_equal(param.grad, np.array([-1.0, -0.5, 0.5, 1.0], np.float32))
        assert param.grad.dtype == np.float32

    def test_float32_stays_float32(self):
        params = clip_params(np.float32)
        clip_grad_norm_(params, 0.1)
        assert all(p.grad.dtype == np.float32 for p in params)


@requires_torch
class TestClipAgainstTorch:
    """clip_grad_norm_ and clip_grad_value_ give torch.nn.utils' total norm and clipped gradients."""

    @staticmethod
    def torch_params(params):
        result = []
        for p in params:
            t = torch.nn.Parameter(torch.from_numpy(p.data.copy()))
            t.grad = torch.from_numpy(p.grad.copy())
            result.append(t)
        return result

    @pytest.mark.parametrize("dtype", [np.float64, np.float32])
    @pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
    @pytest.mark.parametrize("max_norm", [0.5, 1e4])  # 1e4: no clipping happens
    def test_clip_grad_norm(self, dtype, norm_type, max_norm):
        params = clip_params(dtype)
        reference = self.torch_params(params)
        total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
        expected = torch.nn.utils.clip_grad_norm_(reference, max_norm, norm_type=norm_type)
        tolerance = SHORT_COMPUTATION[np.dtype(dtype)]
        assert total == pytest.approx(float(expected), rel=tolerance["rtol"])
        for p, t in zip(params, reference):
            assert p.grad.dtype == dtype
            np.testing.assert_allclose(p.grad, t.grad.numpy(), **tolerance)

    def test_clip_grad_norm_single_parameter(self):
        (param,) = clip_params(np.float64)[:1]
        (reference,) = self.torch_params([param])
        total = clip_grad_norm_(param, 0.3)
        expected = torch.nn.utils.clip_grad_norm_(reference, 0.3)
        assert total == pytest.approx(float(expected), rel=FLOAT64_REORDERED["rtol"])
        np.testing.assert_allclose(param.grad, reference.grad.numpy(), **FLOAT64_REORDERED)

    @pytest.mark.parametrize("dtype", [np.float64, np.float32])
    def test_clip_grad_value(self, dtype):
        params = clip_params(dtype, scale=2.0)
        reference = self.torch_params(params)
        clip_grad_value_(params, 0.7)
        torch.nn.utils.clip_grad_value_(reference, 0.7)
        for p, t in zip(params, reference):
            np.testing.assert_array_equal(p.grad, t.grad.numpy())
