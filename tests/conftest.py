"""Fixtures shared by the test suite: which backends to run, and how a missing one is treated.

A backend that does not load on this machine is skipped with the reason it did
not load, unless the environment variable ``FASTRNN_REQUIRE_BACKENDS`` (a
comma-separated list; CI sets ``cython,numba,python``) names it: then the test
fails, so that CI can never go green by skipping.
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
