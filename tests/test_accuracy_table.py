"""The accuracy table of reduced-precision inference (fastrnn.benchmarks.accuracy), recomputed small.

The README promises bounds on ``|y - y_float64|`` for bf16 and int8
(:data:`~fastrnn.benchmarks.accuracy.ACCURACY_BOUNDS`, measured on the full
table: T up to 1000, H up to 1024). Here a small table (T 10 and 100, H 16 and
64, every cell) is recomputed on the NumPy reference kernels and held to them;
the float64 forward it is measured against is fastrnn's own, checked elsewhere
against finite differences and torch.
"""

import pathlib
import re

import numpy as np
import pytest

from fastrnn.benchmarks import accuracy
from fastrnn.benchmarks.accuracy import (ACCURACY_BOUNDS, ACCURACY_CELLS, accuracy_problem, accuracy_table,
                                         format_accuracy, output_error)

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SMALL = dict(lengths=(10, 100), hidden_sizes=(16, 64))


@pytest.fixture(scope="module")
def small_table():
    return accuracy_table(**SMALL)


def test_small_table_covers_every_precision_cell_and_shape(small_table):
    keys = {(row["precision"], row["cell"], row["T"], row["H"]) for row in small_table}
    assert len(keys) == len(small_table) == 2 * len(ACCURACY_CELLS) * 2 * 2


@pytest.mark.parametrize("precision", sorted(ACCURACY_BOUNDS))
def test_errors_are_within_the_documented_bounds(small_table, precision):
    bound = ACCURACY_BOUNDS[precision]
    for row in small_table:
        if row["precision"] != precision:
            continue
        where = f"{precision} {row['cell']} T={row['T']} H={row['H']}"
        assert row["max"] <= bound["max"], f"{where}: largest |error| {row['max']:.2e} > {bound['max']}"
        assert row["mean"] <= bound["mean"], f"{where}: mean |error| {row['mean']:.2e} > {bound['mean']}"
        assert row["mean"] <= row["max"]


def test_the_reduced_precisions_are_really_reduced(small_table):
    # float32 products land orders of magnitude closer: the table measures the rounding it claims
    for cell in ACCURACY_CELLS:
        float32_max, _ = output_error(cell, "float32", 100, 64)
        assert float32_max < 1e-5
        bf16, int8 = (next(r for r in small_table if (r["precision"], r["cell"], r["T"], r["H"])
                           == (precision, cell, 100, 64)) for precision in ("bf16", "int8"))
        assert 100 * float32_max < bf16["max"] < int8["max"], (cell, float32_max, bf16, int8)
        assert bf16["mean"] < int8["mean"]


def test_the_problem_is_drawn_like_pytorch_from_a_fixed_seed():
    first = accuracy_problem("lstm", 10, 64)
    again = accuracy_problem("lstm", 10, 64)
    for a, b in zip(first["weights"], again["weights"]):
        np.testing.assert_array_equal(a, b)
    bound = 1 / np.sqrt(64)
    for weight in first["weights"]:
        assert weight.dtype == np.float32 and np.abs(weight).max() <= bound
        assert np.abs(weight).max() > 0.9 * bound  # uniform over the whole range
    assert first["x"].shape == (10, accuracy.BATCH, 64)
    assert abs(float(first["x"].std()) - 1) < 0.1
    assert [s.shape for s in first["states"]] == [(accuracy.BATCH, 64)] * 2
    assert not np.array_equal(accuracy_problem("gru", 10, 64)["x"], first["x"])


def test_the_table_prints_one_line_per_precision_cell_and_hidden_size(small_table):
    text = format_accuracy(small_table)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "cell", "H", "max", "T=10", "mean", "T=10", "max", "T=100",
                                "mean", "T=100"]
    assert len(lines) == 2 + 2 * len(ACCURACY_CELLS) * 2


def test_the_api_backends_give_the_reference_numbers():
    import fastrnn
    from fastrnn.exceptions import BackendUnavailableError

    checked = []
    for backend in [name for name in ("cython", "python") if name in fastrnn.available_backends()]:
        try:
            output_error("gru", "int8", 30, 32, backend=backend)
        except BackendUnavailableError:
            continue  # an extension built without reduced-precision kernels
        checked.append(backend)
        for cell in ACCURACY_CELLS:
            # the products equal the reference's (int8) or within float32 rounding (bf16); the
            # compiled gate math rounds its own way: the errors agree to a few per cent
            for precision in ("int8", "bf16"):
                api, reference = (output_error(cell, precision, 30, 32, backend=b) for b in (backend, None))
                assert api == pytest.approx(reference, rel=0.02, abs=1e-6), (backend, cell, precision)
    assert checked  # the reference backend always has them


def test_readme_states_the_bounds():
    text = README.read_text()
    section = text.split("## Reduced precision", 1)[1].split("\n## ", 1)[0]
    for precision, bound in ACCURACY_BOUNDS.items():
        line = next(line for line in section.splitlines() if line.startswith(f"- **{precision}**"))
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?e-\d+", line)]
        assert numbers[:2] == [bound["max"], bound["mean"]], line
