"""The reference backend's BPTT against central finite differences of its own forward pass, in float64.

Every gradient is checked entry by entry: the input, every initial state, every
weight and every bias the case passes. The loss is
``L = sum(y * dy) + sum(h_n * dh_n) (+ sum(c_n * dc_n))``, whose gradient is what
the backward call returns given those loss weights.
"""

import functools

import numpy as np
import pytest

from conformance.cases import SMALL_CASES, cell_cases
from helpers import finite_difference_gradient
from tolerances import FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, RELU_KINK_MARGIN, scaled

#: The layout cases only differ in how the same numbers are passed: the reference sees none of it.
FD_CASES = [case for case in SMALL_CASES if case.layout == "c" and not case.batch_first]


def loss(cell, arrays):
    y, states, _ = cell.forward(arrays, "python", requires_grad=False)
    total = np.sum(y * arrays["dy"])
    for name, value in states.items():
        total += np.sum(value * arrays["d" + name])
    return float(total)


def relu_pre_activations(arrays):
    """The Elman cell's pre-activations of every step, by a plain NumPy loop."""
    x, w_ih, w_hh = arrays["x"], arrays["w_ih"], arrays["w_hh"]
    bias = arrays.get("b_ih", 0.0) + arrays.get("b_hh", 0.0)
    h = arrays["h0"]
    pre = []
    for x_t in x:
        z = x_t @ w_ih.T + h @ w_hh.T + bias
        pre.append(z)
        h = np.maximum(z, 0.0)
    return np.array(pre)


@pytest.mark.parametrize("cell, case", cell_cases(FD_CASES))
def test_reference_gradients_match_finite_differences(cell, case):
    context = case.describe(cell, "python", np.float64)
    arrays = case.reference_arrays(cell, np.float64)
    _, _, cache = cell.forward(arrays, "python")
    grads = cell.backward(cache, arrays)

    expected_names = set(cell.gradients) - {name for name in ("b_ih", "b_hh") if name not in arrays}
    assert set(grads) == expected_names, f"{context}: gradients returned {sorted(grads)}"
    # the initial states default to zeros: differentiate at zeros when the case passes none
    arrays = case.time_major(cell, np.float64)
    if cell.relu:
        margin = np.abs(relu_pre_activations(arrays)).min()
        assert margin > RELU_KINK_MARGIN, (
            f"{context}: a pre-activation lies within {RELU_KINK_MARGIN} of relu's kink, where finite "
            f"differences are meaningless; pick another seed for this case")
    for name in cell.gradients:
        if name not in grads:
            continue
        numeric = finite_difference_gradient(functools.partial(loss, cell), arrays, name, FINITE_DIFFERENCE_STEP)
        assert grads[name].shape == numeric.shape, f"{context}: gradient {name} has shape {grads[name].shape}"
        np.testing.assert_allclose(grads[name], numeric, **scaled(FINITE_DIFFERENCE, numeric),
                                   err_msg=f"{context}: gradient {name} vs central finite differences")
