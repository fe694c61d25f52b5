"""Fixtures shared by the test suite: which backends to run, and how a missing one is treated.

A backend that does not load on this machine is skipped with the reason it did
not load, unless the environment variable ``FASTRNN_REQUIRE_BACKENDS`` (a
comma-separated list; CI sets ``cython,numba,python``) names it: then the test
fails, so that CI can never go green by skipping.

The Cython kernels are compiled for several instruction-set levels; a test
parametrised with an :class:`IsaBackend` (see :func:`isa_variants`) runs the
``cython`` backend on that level, set through ``fastrnn._cy.set_isa_level`` for
the test only.
"""

import os

import pytest

import fastrnn
from fastrnn import _backends

ALL_BACKENDS = ("cython", "numba", "python")
COMPILED_BACKENDS = ("numba", "cython")

try:  # hypothesis is optional; tests that use it import it with importorskip
    from hypothesis import settings

    settings.register_profile("fastrnn", deadline=None, max_examples=20, derandomize=True)
    settings.load_profile("fastrnn")
except ImportError:  # pragma: no cover
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "compiled: the test runs a compiled backend (numba, cython)")


def required_backends():
    """The backends ``FASTRNN_REQUIRE_BACKENDS`` says must load."""
    return {name.strip() for name in os.environ.get("FASTRNN_REQUIRE_BACKENDS", "").split(",") if name.strip()}


def require_backend(name, kernel=None):
    """Return ``name`` if the backend loads (and has ``kernel``, if given); otherwise skip the
    test, or fail it if it is required."""
    try:
        _backends.resolve(name, kernel=kernel)
    except fastrnn.BackendUnavailableError as error:
        message = f"backend {name!r} is not available: {error.reason}"
        if name in required_backends():
            pytest.fail(f"{message} (and FASTRNN_REQUIRE_BACKENDS requires it)", pytrace=False)
        pytest.skip(message)
    return name


def isa_levels():
    """Instruction-set levels of the Cython kernels this CPU supports, best first ([] without
    the extension)."""
    try:
        from fastrnn import _cy
    except ImportError:
        return []
    return _cy.isa_levels()


class IsaBackend(str):
    """The backend name ``"cython"``, to be run on instruction-set level ``isa``.

    It is the string ``"cython"`` wherever a backend name goes; the autouse
    fixture ``_isa_level`` reads ``isa`` from a test's ``backend`` parameter.
    """

    def __new__(cls, isa):
        self = super().__new__(cls, "cython")
        self.isa = isa
        return self


def isa_variants(backend):
    """``(backend, id)`` pairs: ``backend`` itself (the default level), and for ``"cython"`` one
    :class:`IsaBackend` per other level this CPU supports."""
    if backend != "cython":
        return [(backend, backend)]
    return [(backend, backend)] + [(IsaBackend(level), f"cython[{level}]") for level in isa_levels()[1:]]


@pytest.fixture(scope="module")
def real_keras():
    """Real Keras on TensorFlow, for the parity tests (skips where it is not usable)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from helpers import usable_keras

    return usable_keras()


@pytest.fixture(autouse=True)
def _isa_level(request):
    """Run the test on the level its ``backend`` parameter names, if it is an IsaBackend."""
    callspec = getattr(request.node, "callspec", None)
    isa = getattr(callspec.params.get("backend") if callspec else None, "isa", None)
    if isa is None:
        yield
        return
    from fastrnn import _cy

    before, why = _cy.isa_level()
    _cy.set_isa_level(isa, reason="set by the test suite")
    try:
        yield
    finally:
        _cy.set_isa_level(before, reason=why)


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    """Each compiled backend in turn (skipped, or failed if required, when it does not load)."""
    return require_backend(request.param)


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request):
    """Every backend in turn, the reference included."""
    return require_backend(request.param)


@pytest.fixture(autouse=True)
def _no_backend_from_environment(monkeypatch):
    """Tests name their backend; a FASTRNN_BACKEND in the caller's shell must not change them."""
    monkeypatch.delenv("FASTRNN_BACKEND", raising=False)
