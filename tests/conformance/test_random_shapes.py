"""Random small problems (hypothesis): every compiled backend against the reference, in float64,
for every cell. Skipped when hypothesis is absent."""

import pytest

from conformance.cases import DTYPES, Case, assert_matches_reference, backend_params, run
from conformance.cells import CELLS, require
from conftest import COMPILED_BACKENDS
from tolerances import BACKEND_VS_REFERENCE

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@pytest.mark.parametrize("backend", backend_params(COMPILED_BACKENDS))
@pytest.mark.parametrize("cell", CELLS, ids=repr)
@hypothesis.settings(max_examples=10)
@hypothesis.given(T=st.integers(1, 6), B=st.integers(1, 5), D=st.integers(1, 5), H=st.integers(2, 7),
                  bias=st.sampled_from(sorted(["both", "none", "ih", "hh"])), states=st.booleans(),
                  batch_first=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_random_shapes_match_reference(cell, backend, T, B, D, H, bias, states, batch_first, seed):
    """Random small problems (hypothesis), in float64."""
    require(cell, backend)
    case = Case("random", seed=seed, T=T, B=B, D=D, H=H, bias=bias, states=states,
                batch_first=batch_first and cell.batch_first)
    dtype = DTYPES[0]
    assert_matches_reference(run(cell, case, backend, dtype), cell, case, dtype, BACKEND_VS_REFERENCE[dtype],
                             case.describe(cell, backend, dtype))
