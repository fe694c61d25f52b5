"""The instruction-set levels of the Cython kernels: choosing one, and what each computes.

The conformance suite runs the Cython backend on every level this CPU supports
(``conftest.isa_variants``); here: ``FASTRNN_ISA`` (in a fresh interpreter, since it
is read at import), the private setter, the reports, and the levels against each other.
"""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from conftest import isa_levels, require_backend
from helpers import assert_close
from tolerances import BACKEND_VS_REFERENCE

KNOWN_LEVELS = ("avx512", "avx2", "generic")


@pytest.fixture
def cy():
    require_backend("cython")
    from fastrnn import _cy

    before, why = _cy.isa_level()
    yield _cy
    _cy.set_isa_level(before, reason=why)


def run_python(code, isa):
    """Run ``code`` in a fresh interpreter with FASTRNN_ISA=isa; return the completed process."""
    env = dict(os.environ, FASTRNN_ISA=isa)
    env.pop("FASTRNN_BACKEND", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


CALL_LSTM = ("import numpy as np, fastrnn\n"
             "x = np.ones((2, 1, 3), np.float32); w = np.ones((8, 3), np.float32); u = np.ones((8, 2), np.float32)\n"
             "try:\n"
             "    fastrnn.lstm_forward(x, w, u)\n"
             "except fastrnn.UnknownIsaError as error:\n"
             "    print('UnknownIsaError:', error)\n")


@pytest.mark.parametrize("value", ["avx1024", "AVX2", "sse4", " "])
def test_unknown_isa_in_environment_is_a_clear_error(value, cy):
    """A name fastrnn does not know fails the first call, naming FASTRNN_ISA, the value and the levels."""
    out = run_python(CALL_LSTM, value)
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert message.startswith("UnknownIsaError:"), (out.stdout, out.stderr)
    assert "FASTRNN_ISA" in message and repr(value) in message, message
    for level in cy.isa_levels():
        assert repr(level) in message, message


def test_isa_the_cpu_lacks_is_a_clear_error(cy):
    """A known level this CPU does not support fails the first call and names what the CPU offers."""
    missing = [level for level in KNOWN_LEVELS if level not in cy.isa_levels()]
    if not missing:
        pytest.skip("this CPU supports every level")
    out = run_python(CALL_LSTM, missing[0])
    assert out.stdout.startswith("UnknownIsaError:"), (out.stdout, out.stderr)
    assert "FASTRNN_ISA" in out.stdout and repr(missing[0]) in out.stdout and "does not support" in out.stdout


@pytest.mark.parametrize("level", isa_levels())
def test_isa_from_environment_is_used_and_reported(level, cy):
    """FASTRNN_ISA=<a supported level> is the level that runs, and the reason says so."""
    out = run_python("from fastrnn import _cy; print(*_cy.isa_level(), sep='|')", level)
    assert out.returncode == 0, out.stderr
    name, why = out.stdout.strip().split("|")
    assert name == level and why == f"forced by FASTRNN_ISA={level}"


def test_default_is_the_best_level(cy):
    out = run_python("from fastrnn import _cy; print(_cy.isa_level()[0])", "")
    assert out.stdout.strip() == cy.isa_levels()[0], out.stderr


def test_levels_offered(cy):
    levels = cy.isa_levels()
    assert levels[-1] == "generic" and set(levels) <= set(KNOWN_LEVELS)
    assert levels == [level for level in KNOWN_LEVELS if level in levels], "best first"


@pytest.mark.parametrize("name", ["avx1024", "", None, 2])
def test_setter_rejects_unknown_levels(name, cy):
    before = cy.isa_level()
    with pytest.raises(fastrnn.UnknownIsaError, match="set_isa_level"):
        cy.set_isa_level(name)
    assert cy.isa_level() == before


def test_setter_and_reports(cy):
    """set_isa_level changes the level; isa_level, describe and show_config report it with the reason."""
    from fastrnn import _backends

    for level in cy.isa_levels():
        cy.set_isa_level(level)
        assert cy.isa_level() == (level, "set by fastrnn._cy.set_isa_level")
        out = io.StringIO()
        fastrnn.show_config(file=out)
        assert f"instruction set: {level} (set by fastrnn._cy.set_isa_level)" in out.getvalue()
        assert f"{level} kernels" in _backends.describe("cython")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_levels_agree(cell, dtype, cy):
    """Every level computes forward and backward within the compiled-vs-reference tolerance of the
    others (float32: other summation orders, FMA contraction), on a shape with a multi-row chunk,
    a partial panel and a partial block of units."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    T, B, D, H = 6, 21, 37, 53
    rng = np.random.default_rng(12)
    scale = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    w_ih = rng.uniform(-scale, scale, (gates * H, D)).astype(dtype)
    w_hh = rng.uniform(-scale, scale, (gates * H, H)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    forward, backward = getattr(fastrnn, f"{cell}_forward"), getattr(fastrnn, f"{cell}_backward")
    results = {}
    for level in cy.isa_levels():
        cy.set_isa_level(level)
        y, _, cache = forward(x, w_ih, w_hh, backend="cython")
        results[level] = (y, backward(cache, dy))
    best_y, best_grads = results[cy.isa_levels()[0]]
    tolerance = BACKEND_VS_REFERENCE[np.dtype(dtype)]
    for level, (y, grads) in results.items():
        context = f"{cell} {np.dtype(dtype).name} level {level} vs {cy.isa_levels()[0]}"
        assert_close(y, best_y, tolerance, context, "y")
        for name in best_grads:
            assert_close(grads[name], best_grads[name], tolerance, context, f"gradient {name}")


def test_packed_weights_refuse_another_level(cy):
    """Weights packed on one level (panels of its width) are refused on another, with a clear error."""
    levels = cy.isa_levels()
    if len(levels) < 2:
        pytest.skip("this CPU supports one level only")
    rng = np.random.default_rng(5)
    w_ih, w_hh = rng.standard_normal((2, 4 * 24, 24)).astype(np.float32) * 0.1
    x, h, c = rng.standard_normal((3, 2, 24)).astype(np.float32)
    cy.set_isa_level(levels[1])
    packed = fastrnn.pack_lstm(w_ih, w_hh, backend="cython")
    expected, _ = packed.step(x, (h, c))
    cy.set_isa_level(levels[0])
    with pytest.raises(fastrnn.StaleCacheError, match=f"packed for the {levels[1]} kernels"):
        packed.step(x, (h, c))
    cy.set_isa_level(levels[1])
    np.testing.assert_array_equal(packed.step(x, (h, c))[0], expected)
