"""Random small problems (hypothesis): every compiled backend against the reference, in float64."""

import numpy as np
import pytest

from cases import Case
from helpers import assert_results_close, reference, run_case
from tolerances import BACKEND_VS_REFERENCE

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@pytest.mark.compiled
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(
    T=st.integers(1, 6), B=st.integers(1, 5), D=st.integers(1, 5), H=st.integers(1, 7),
    nonlinearity=st.sampled_from(["tanh", "relu"]), bias=st.sampled_from(["both", "none", "ih", "hh"]),
    h0=st.booleans(), batch_first=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_match_reference(compiled_backend, T, B, D, H, nonlinearity, bias, h0, batch_first, seed):
    case = Case("random", seed=seed, T=T, B=B, D=D, H=H, nonlinearity=nonlinearity, bias=bias, h0=h0,
                batch_first=batch_first, recurrent_scale=0.5 if nonlinearity == "relu" else 1.0)
    result = run_case(case, compiled_backend, np.float64)
    assert_results_close(result, reference(case, np.dtype(np.float64)),
                         BACKEND_VS_REFERENCE[np.dtype(np.float64)], case.describe(compiled_backend, np.float64))
