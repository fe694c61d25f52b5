"""fastrnn.losses: values and input gradients against torch.nn, finite differences and hand formulas.

The torch comparisons give both libraries the same inputs in the same dtype and
compare the loss and d loss / d input (torch's from autograd); they are skipped
when torch is absent. The finite-difference checks (float64), the values
written out from the definitions, and the error tests need only NumPy.
"""

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from fastrnn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from helpers import finite_difference_gradient
from tolerances import (FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, FLOAT64_REORDERED, HAND_CHECKED,
                        SHORT_COMPUTATION)

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [np.float64, np.float32]
TOLERANCE = {dtype.type: tolerance for dtype, tolerance in SHORT_COMPUTATION.items()}


# ----------------------------------------------------------------------------- cases

def mse_case(shape, seed=0):
    rng = np.random.default_rng(seed)
    return dict(input=rng.standard_normal(shape), target=rng.standard_normal(shape)), {}


def bce_case(shape, seed=0, pos_weight_shape=None, weight_shape=None, scale=2.0):
    rng = np.random.default_rng(seed)
    kwargs = {}
    if pos_weight_shape is not None:
        kwargs["pos_weight"] = rng.uniform(0.2, 3.0, pos_weight_shape)
    if weight_shape is not None:
        kwargs["weight"] = rng.uniform(0.1, 2.0, weight_shape)
    # targets are probabilities, not only 0/1, to test the general formula
    return dict(input=scale * rng.standard_normal(shape), target=rng.uniform(0, 1, shape)), kwargs


def ce_case(shape, seed=0, weight=False, ignore_index=None, n_ignored=0, label_smoothing=0.0):
    """Logits of ``shape`` ((C,), (N, C) or (N, C, d...)) and valid class targets, some set to ignore_index."""
    rng = np.random.default_rng(seed)
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    target_shape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    target = rng.integers(0, n_classes, target_shape)
    kwargs = {"label_smoothing": label_smoothing}
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
        flat = target.reshape(-1)
        flat[rng.choice(flat.size, n_ignored, replace=False)] = ignore_index
        target = flat.reshape(target_shape)
    if weight:
        kwargs["weight"] = rng.uniform(0.2, 2.0, n_classes)
    return dict(input=3 * rng.standard_normal(shape), target=target), kwargs


MSE_CASES = {"2d": mse_case((4, 3)), "3d": mse_case((2, 3, 5), seed=1), "1d": mse_case((7,), seed=2)}
BCE_CASES = {
    "plain": bce_case((4, 3)),
    "pos_weight": bce_case((4, 3), pos_weight_shape=(3,)),
    "weight_row": bce_case((4, 3), weight_shape=(4, 1)),
    "weight_and_pos_weight": bce_case((2, 5, 3), seed=3, pos_weight_shape=(3,), weight_shape=(3,)),
    "large_logits": bce_case((6, 2), seed=4, scale=60.0, pos_weight_shape=(2,)),
}
CE_CASES = {
    "NC": ce_case((5, 4)),
    "NC_weight": ce_case((5, 4), weight=True),
    "NC_ignore": ce_case((6, 4), ignore_index=-100, n_ignored=2),
    "NC_ignore_in_range": ce_case((6, 4), ignore_index=1, n_ignored=0, seed=5),
    "NC_weight_ignore": ce_case((6, 4), weight=True, ignore_index=-1, n_ignored=3),
    "NC_smoothing": ce_case((5, 4), label_smoothing=0.1),
    "NC_weight_ignore_smoothing": ce_case((6, 4), weight=True, ignore_index=-100, n_ignored=2, label_smoothing=0.2),
    "NCd": ce_case((3, 4, 5), seed=1),
    "NCdd_weight_smoothing": ce_case((2, 3, 4, 2), seed=2, weight=True, label_smoothing=0.15),
    "NCd_ignore": ce_case((3, 4, 5), seed=3, ignore_index=-100, n_ignored=4),
    "C_unbatched": ce_case((6,), seed=4),
    "C_unbatched_weight_smoothing": ce_case((6,), seed=4, weight=True, label_smoothing=0.3),
    "large_logits": (dict(input=np.array([[1e4, -1e4, 0.0], [-5e3, 5e3, 5e3]]), target=np.array([1, 2])), {}),
}
ALL_CASES = (
    [(MSELoss, "MSELoss", name, case) for name, case in MSE_CASES.items()]
    + [(BCEWithLogitsLoss, "BCEWithLogitsLoss", name, case) for name, case in BCE_CASES.items()]
    + [(CrossEntropyLoss, "CrossEntropyLoss", name, case) for name, case in CE_CASES.items()]
)
CASE_IDS = [f"{torch_name}-{name}" for _, torch_name, name, _ in ALL_CASES]


def grad_output_for(loss_shape, seed=11):
    return np.random.default_rng(seed).standard_normal(loss_shape)


# ----------------------------------------------------------------------------- torch comparison

def torch_loss_and_grad(torch_name, arrays, kwargs, reduction, dtype, grad_output):
    """torch.nn's loss and d(loss)/d(input), in ``dtype``."""
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    x = torch.tensor(arrays["input"].astype(dtype), dtype=tdtype, requires_grad=True)
    if torch_name == "CrossEntropyLoss":
        target = torch.from_numpy(np.asarray(arrays["target"], dtype=np.int64))
    else:
        target = torch.tensor(arrays["target"].astype(dtype), dtype=tdtype)
    tkwargs = {k: (torch.tensor(np.asarray(v).astype(dtype), dtype=tdtype) if isinstance(v, np.ndarray) else v)
               for k, v in kwargs.items()}
    loss = getattr(torch.nn, torch_name)(reduction=reduction, **tkwargs)(x, target)
    if reduction == "none":
        loss.backward(torch.tensor(grad_output.astype(dtype), dtype=tdtype))
    else:
        (loss * float(grad_output)).backward()
    return loss.detach().numpy(), x.grad.numpy()


@requires_torch
class TestAgainstTorch:
    """Loss value and input gradient equal torch.nn's for every loss, case, reduction and dtype."""

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("loss_class,torch_name,name,case", ALL_CASES, ids=CASE_IDS)
    def test_value_and_grad(self, loss_class, torch_name, name, case, reduction, dtype):
        arrays, kwargs = case
        x = arrays["input"].astype(dtype)
        target = arrays["target"] if loss_class is CrossEntropyLoss else arrays["target"].astype(dtype)
        criterion = loss_class(reduction=reduction, **kwargs)
        value = criterion(x, target)
        grad_output = grad_output_for(np.shape(value)) if reduction == "none" else 2.5
        grad = criterion.backward(grad_output)
        expected_value, expected_grad = torch_loss_and_grad(torch_name, arrays, kwargs, reduction, dtype, grad_output)
        label = f"{torch_name} {name} reduction={reduction} {np.dtype(dtype)}"
        if reduction == "none":
            assert isinstance(value, np.ndarray) and value.dtype == dtype, label
            assert value.shape == expected_value.shape, label
        else:
            assert isinstance(value, float), label
        np.testing.assert_allclose(value, expected_value, **TOLERANCE[dtype], err_msg=label)
        assert grad.shape == x.shape and grad.dtype == dtype, label
        np.testing.assert_allclose(grad, expected_grad, **TOLERANCE[dtype], err_msg=label)

    @pytest.mark.parametrize("loss_class,torch_name,name,case", ALL_CASES[:1] + ALL_CASES[3:4] + ALL_CASES[-3:-2],
                             ids=CASE_IDS[:1] + CASE_IDS[3:4] + CASE_IDS[-3:-2])
    def test_default_grad_output(self, loss_class, torch_name, name, case):
        arrays, kwargs = case
        criterion = loss_class(**kwargs)
        value = criterion(arrays["input"], arrays["target"])
        expected_value, expected_grad = torch_loss_and_grad(torch_name, arrays, kwargs, "mean", np.float64, 1.0)
        np.testing.assert_allclose(value, expected_value, **FLOAT64_REORDERED)
        np.testing.assert_allclose(criterion.backward(), expected_grad, **FLOAT64_REORDERED)

    @pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
    @pytest.mark.parametrize("weight", [False, True])
    def test_cross_entropy_all_ignored(self, label_smoothing, weight):
        arrays, kwargs = ce_case((4, 3), weight=weight, ignore_index=-100, n_ignored=4,
                                 label_smoothing=label_smoothing)
        criterion = CrossEntropyLoss(**kwargs)
        value = criterion(arrays["input"], arrays["target"])
        grad = criterion.backward()
        expected_value, expected_grad = torch_loss_and_grad("CrossEntropyLoss", arrays, kwargs, "mean", np.float64, 1.0)
        assert np.isnan(value) and np.isnan(expected_value)
        np.testing.assert_array_equal(grad, expected_grad)


# ----------------------------------------------------------------------------- without torch

FD_CASES = [c for c in ALL_CASES if c[2] != "large_logits"]
FD_IDS = [f"{torch_name}-{name}" for _, torch_name, name, _ in FD_CASES]


class TestFiniteDifferences:
    """backward() equals central differences of the loss, for every case and reduction (float64)."""

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("loss_class,torch_name,name,case", FD_CASES, ids=FD_IDS)
    def test_gradient(self, loss_class, torch_name, name, case, reduction):
        arrays, kwargs = case
        criterion = loss_class(reduction=reduction, **kwargs)
        target = arrays["target"]
        value = criterion(arrays["input"], target)
        # The scalar whose gradient backward(grad_output) returns: sum(loss * grad_output).
        grad_output = grad_output_for(np.shape(value)) if reduction == "none" else 1.7
        analytic = criterion.backward(grad_output)

        def scalar(shifted):
            return float(np.sum(loss_class(reduction=reduction, **kwargs)(shifted["input"], target) * grad_output))

        numeric = finite_difference_gradient(scalar, arrays, "input", FINITE_DIFFERENCE_STEP)
        np.testing.assert_allclose(analytic, numeric, **FINITE_DIFFERENCE)


def log_softmax_rows(x):
    """Direct definition, for inputs small enough that exp does not overflow."""
    return np.log(np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True))


class TestDefinitions:
    """Values written out from the definitions, independently of the implementation."""

    def test_mse(self):
        (arrays, _) = MSE_CASES["3d"]
        d = arrays["input"] - arrays["target"]
        assert MSELoss()(**arrays) == pytest.approx(np.mean(d ** 2), rel=HAND_CHECKED["rtol"])
        assert MSELoss("sum")(**arrays) == pytest.approx(np.sum(d ** 2), rel=HAND_CHECKED["rtol"])
        np.testing.assert_allclose(MSELoss("none")(**arrays), d ** 2, **HAND_CHECKED)

    def test_bce(self):
        arrays, kwargs = BCE_CASES["weight_and_pos_weight"]
        x, y = arrays["input"], arrays["target"]
        s = 1 / (1 + np.exp(-x))
        expected = -kwargs["weight"] * (kwargs["pos_weight"] * y * np.log(s) + (1 - y) * np.log(1 - s))
        np.testing.assert_allclose(BCEWithLogitsLoss("none", **kwargs)(x, y), expected, **FLOAT64_REORDERED)

    def test_bce_stable_for_huge_logits(self):
        x = np.array([-1000.0, 1000.0, -1000.0, 1000.0])
        y = np.array([1.0, 0.0, 0.0, 1.0])
        criterion = BCEWithLogitsLoss("none")
        np.testing.assert_allclose(criterion(x, y), [1000.0, 1000.0, 0.0, 0.0], **HAND_CHECKED)
        np.testing.assert_allclose(criterion.backward(np.ones(4)), [-1.0, 1.0, 0.0, 0.0], **HAND_CHECKED)

    def test_cross_entropy_weight_ignore_smoothing(self):
        rng = np.random.default_rng(9)
        x = rng.standard_normal((5, 3))
        target = np.array([0, 2, -1, 1, 2])
        w = np.array([0.5, 1.0, 2.0])
        eps = 0.3
        logp = log_softmax_rows(x)
        kept = target != -1
        k = np.where(kept, target, 0)
        nll = -w[k] * logp[np.arange(5), k]
        smooth = -(logp * w).sum(axis=1)
        per_target = np.where(kept, (1 - eps) * nll + eps / 3 * smooth, 0.0)
        criterion = CrossEntropyLoss(weight=w, ignore_index=-1, label_smoothing=eps)
        assert criterion(x, target) == pytest.approx(per_target.sum() / w[target[kept]].sum(), rel=FLOAT64_REORDERED["rtol"])
        none = CrossEntropyLoss(weight=w, ignore_index=-1, label_smoothing=eps, reduction="none")
        np.testing.assert_allclose(none(x, target), per_target, **FLOAT64_REORDERED)
        grad = none.backward(np.ones(5))
        np.testing.assert_array_equal(grad[2], 0.0)

    def test_cross_entropy_layout_nCd(self):
        # (N, C, d) gives the losses of the (N*d, C) rows obtained by moving classes last.
        arrays, _ = CE_CASES["NCd"]
        x, t = arrays["input"], arrays["target"]
        rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
        expected = -log_softmax_rows(rows)[np.arange(rows.shape[0]), t.reshape(-1)].reshape(t.shape)
        np.testing.assert_allclose(CrossEntropyLoss(reduction="none")(x, t), expected, **FLOAT64_REORDERED)

    def test_cross_entropy_stable_for_huge_logits(self):
        criterion = CrossEntropyLoss(reduction="none")
        value = criterion(np.array([[1e4, -1e4, 0.0], [-5e3, 5e3, 5e3]]), np.array([0, 2]))
        np.testing.assert_allclose(value, [0.0, np.log(2.0)], **FLOAT64_REORDERED)
        assert np.isfinite(criterion.backward(np.ones(2))).all()

    def test_cross_entropy_all_ignored_is_nan_with_zero_grad(self):
        criterion = CrossEntropyLoss(ignore_index=3)
        with np.errstate(all="raise"):  # no floating-point warnings leak out
            value = criterion(np.ones((2, 4)), np.array([3, 3]))
            grad = criterion.backward()
        assert np.isnan(value)
        np.testing.assert_array_equal(grad, 0.0)

    def test_call_resets_saved_state(self):
        criterion = MSELoss()
        criterion(np.ones(3), np.zeros(3))
        np.testing.assert_allclose(criterion.backward(), np.full(3, 2 / 3))
        criterion(np.ones(2), np.zeros(2))
        np.testing.assert_allclose(criterion.backward(), np.full(2, 1.0))

    def test_float32_in_float32_out(self):
        criterion = CrossEntropyLoss(weight=[1.0, 2.0], label_smoothing=0.1)
        criterion(np.zeros((3, 2), np.float32), np.array([0, 1, 1]))
        assert criterion.backward().dtype == np.float32


class TestErrors:
    """What a caller can get wrong raises a fastrnn error that says what was expected and given."""

    @pytest.mark.parametrize("loss_class", [MSELoss, BCEWithLogitsLoss])
    def test_target_shape_mismatch(self, loss_class):
        with pytest.raises(ShapeError, match=r"shape of input \(3, 2\); got shape \(3,\)"):
            loss_class()(np.zeros((3, 2)), np.zeros(3))

    def test_cross_entropy_target_shape(self):
        with pytest.raises(ShapeError, match=r"target must have shape \(3,\).*got shape \(3, 1\)"):
            CrossEntropyLoss()(np.zeros((3, 4)), np.zeros((3, 1), dtype=int))
        with pytest.raises(ShapeError, match=r"target must have shape \(2, 5\).*got shape \(2,\)"):
            CrossEntropyLoss()(np.zeros((2, 4, 5)), np.zeros(2, dtype=int))

    @pytest.mark.parametrize("bad", [3, 7, -1])
    def test_cross_entropy_class_out_of_range(self, bad):
        with pytest.raises(ArgumentError, match=rf"class index {bad}, outside the valid range \[0, 2\]"):
            CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, bad]))

    def test_cross_entropy_float_target(self):
        with pytest.raises(DTypeError, match="integer class indices; got dtype float64"):
            CrossEntropyLoss()(np.zeros((2, 3)), np.array([0.0, 1.0]))

    def test_cross_entropy_weight_shape(self):
        with pytest.raises(ShapeError, match=r"weight must have shape \(3,\).*got shape \(2,\)"):
            CrossEntropyLoss(weight=[1.0, 2.0])(np.zeros((2, 3)), np.array([0, 1]))

    @pytest.mark.parametrize("value", [-0.1, 1.5])
    def test_label_smoothing_range(self, value):
        with pytest.raises(ArgumentError, match=rf"label_smoothing must be in \[0, 1\]; got {value}"):
            CrossEntropyLoss(label_smoothing=value)

    def test_ignore_index_type(self):
        with pytest.raises(ArgumentError, match="ignore_index must be an integer; got 1.5"):
            CrossEntropyLoss(ignore_index=1.5)

    @pytest.mark.parametrize("loss_class", [MSELoss, BCEWithLogitsLoss, CrossEntropyLoss])
    def test_unknown_reduction(self, loss_class):
        with pytest.raises(ArgumentError, match="reduction must be one of 'none', 'mean', 'sum'; got 'avg'"):
            loss_class(reduction="avg")

    @pytest.mark.parametrize("loss_class", [MSELoss, BCEWithLogitsLoss, CrossEntropyLoss])
    def test_backward_before_call(self, loss_class):
        with pytest.raises(ArgumentError, match=r"backward\(\) was called before"):
            loss_class().backward()

    def test_backward_after_failed_call(self):
        criterion = MSELoss()
        criterion(np.ones(2), np.ones(2))
        with pytest.raises(ShapeError):
            criterion(np.ones(2), np.ones(3))
        with pytest.raises(ArgumentError, match="before"):
            criterion.backward()

    def test_none_reduction_needs_grad_output(self):
        criterion = MSELoss(reduction="none")
        criterion(np.ones((2, 3)), np.zeros((2, 3)))
        with pytest.raises(ArgumentError, match=r"needs grad_output.*\(2, 3\); got None"):
            criterion.backward()
        with pytest.raises(ShapeError, match=r"\(2, 3\); got shape \(3,\)"):
            criterion.backward(np.ones(3))

    def test_reduced_grad_output_must_be_scalar(self):
        criterion = MSELoss()
        criterion(np.ones(2), np.zeros(2))
        with pytest.raises(ShapeError, match=r"must be a scalar; got shape \(2,\)"):
            criterion.backward(np.ones(2))

    def test_integer_input(self):
        with pytest.raises(DTypeError, match="input must be a float32 or float64 array; got dtype int64"):
            MSELoss()(np.ones(2, dtype=np.int64), np.ones(2))

    def test_pos_weight_not_broadcastable(self):
        with pytest.raises(ShapeError, match=r"pos_weight of shape \(4,\) does not broadcast.*\(2, 3\)"):
            BCEWithLogitsLoss(pos_weight=np.ones(4))(np.zeros((2, 3)), np.zeros((2, 3)))
