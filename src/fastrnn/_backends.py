"""Which kernel backends load on this machine, and which one a call uses.

A backend is a module exporting the kernel functions of the contract in
``docs/architecture.md`` ("The kernel contract"). Each is imported the first
time it is needed; a failure is remembered with its reason, so asking for that
backend later says why it is missing. Resolution order for a call: its
``backend=`` argument, then the innermost :func:`use_backend` context, then
``FASTRNN_BACKEND``, then ``"auto"``.
"""

import contextvars
import importlib
import os
import platform
import sys
import warnings
from contextlib import contextmanager

from fastrnn.exceptions import BackendUnavailableError, FastRNNError, UnknownBackendError

#: Every backend, fastest first (from ``python -m fastrnn bench``); ``auto`` takes the first that loads.
BACKENDS = ("cython", "numba", "python")
_MODULES = {"cython": "fastrnn._cy", "numba": "fastrnn._numba", "python": "fastrnn._python"}
_WHY_MISSING = {
    "cython": "the compiled extension fastrnn._cy is not installed (built without a working "
    "C compiler, or with FASTRNN_BUILD_EXT=0); reinstall with FASTRNN_BUILD_EXT=1 to see the error",
    "numba": "numba is not installed or failed to import",
}

_loaded = {}
_failed = {}
_requested = contextvars.ContextVar("fastrnn_backend", default=None)
_warned_python_fallback = False


def _load(name):
    """Import backend ``name``; return the module or ``None``, remembering why it failed."""
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        return None
    from fastrnn._threads import openmp_waits_briefly

    try:
        with openmp_waits_briefly():  # the OpenMP runtime reads its settings as it loads
            module = importlib.import_module(_MODULES[name])
    except FastRNNError:  # a setting the user got wrong (FASTRNN_ISA): say so, do not fall back
        raise
    except Exception as error:  # any other import failure means "not available", with its reason
        why = _source_tree_without_build() if name == "cython" else None
        _failed[name] = why or (f"{_WHY_MISSING.get(name, 'import failed')} "
                                f"({type(error).__name__}: {error})")
        return None
    _loaded[name] = module
    # a backend may bring its own BLAS (SciPy's): let the thread limiter find it
    from fastrnn._threads import blas_threads

    blas_threads.forget_libraries()
    return module


def _source_tree_without_build():
    """Why the extension is missing when fastrnn is imported from an unbuilt source tree, else None.

    In a clone, ``src/fastrnn`` holds no compiled extension until it is built
    in place; pointing ``PYTHONPATH`` at it imports that tree, not the
    installed package. Say so rather than blame the build.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(package))
    built = any(entry.startswith("_cy.") for entry in os.listdir(package))
    if built or os.path.basename(os.path.dirname(package)) != "src" or not os.path.exists(
            os.path.join(root, "setup.py")):
        return None
    return (f"fastrnn is running from the source tree {package}, where the extension is not built; "
            f"run `pip install -e .` in {root} to build it there, or `pip install .` and do not put "
            "src/ on the import path")


def describe(name):
    """One line that says what backend ``name`` is and how it runs here, e.g. for a log.

    Parameters
    ----------
    name : {"cython", "numba", "python"}

    Returns
    -------
    str
    """
    module = _load(name)
    if module is None:
        return f"{name} backend, which is NOT available: {_failed[name]}"
    if name == "cython":
        openmp = (f"OpenMP, up to {module.openmp_max_threads()} threads" if module.openmp_enabled()
                  else "built without OpenMP: one thread")
        level, why = module.isa_level()
        return f"cython backend (the compiled extension fastrnn._cy, {openmp}, {level} kernels: {why})"
    if name == "numba":
        why = _failed.get("cython")
        return "numba backend (JIT-compiled" + (f"; the extension fastrnn._cy is not available: {why})" if why else ")")
    return "python backend (the pure-NumPy reference: slow, meant for validation)"


def _check_name(name, argument):
    if not isinstance(name, str) or (name not in BACKENDS and name != "auto"):
        raise UnknownBackendError(
            f"{argument} must be one of {', '.join(map(repr, BACKENDS + ('auto',)))}; got {name!r}"
        )


def available_backends():
    """Names of the backends that load on this machine, fastest first.

    Returns
    -------
    list of str
    """
    return [name for name in BACKENDS if _load(name) is not None]


@contextmanager
def use_backend(name):
    """Run the enclosed calls on backend ``name`` unless a call names its own.

    The setting is a context variable: it holds for the current thread (and
    asyncio task) only, so concurrent code can use different backends.

    Parameters
    ----------
    name : {"cython", "numba", "python", "auto"}

    Examples
    --------
    >>> with fastrnn.use_backend("python"):
    ...     y, h_n, cache = fastrnn.rnn_forward(x, w_ih, w_hh)
    """
    _check_name(name, "use_backend(name)")
    token = _requested.set(name)
    try:
        yield
    finally:
        _requested.reset(token)


def resolve(backend=None, kernel=None):
    """The backend module a call runs on.

    Parameters
    ----------
    backend : str or None
        The call's ``backend=`` argument.
    kernel : str, optional
        A kernel the backend must have (e.g. ``"lstm_forward"``): ``auto`` then
        skips backends without it, and naming such a backend is an error.

    Returns
    -------
    (str, module)
        The backend's name and module.

    Raises
    ------
    UnknownBackendError
        For a name fastrnn does not know.
    BackendUnavailableError
        For a known backend that does not load here; the message says why.
    """
    if backend is not None:
        _check_name(backend, "backend")
        name = backend
    elif _requested.get() is not None:
        name = _requested.get()
    else:
        name = os.environ.get("FASTRNN_BACKEND", "auto") or "auto"
        _check_name(name, "the environment variable FASTRNN_BACKEND")
    if name != "auto":
        module = _load(name)
        if module is None:
            raise BackendUnavailableError(name, _failed[name])
        if kernel is not None and not hasattr(module, kernel):
            raise BackendUnavailableError(name, f"it has no {kernel} kernel yet")
        return name, module
    for candidate in BACKENDS:
        module = _load(candidate)
        if module is not None and (kernel is None or hasattr(module, kernel)):
            if candidate == "python":
                _warn_python_fallback()
            return candidate, module
    raise BackendUnavailableError("auto", "no backend loads")  # python always loads with numpy


def _warn_python_fallback():
    global _warned_python_fallback
    if not _warned_python_fallback:
        _warned_python_fallback = True
        reasons = "; ".join(f"{name}: {_failed.get(name, '?')}" for name in BACKENDS[:-1])
        warnings.warn(
            f"fastrnn is running on its pure-NumPy reference backend, which is slow: {reasons}",
            RuntimeWarning,
            stacklevel=4,
        )


def show_config(file=None):
    """Print every backend (available or not, and why), OpenMP, the instruction-set level of
    the compiled kernels (and why it was chosen), threads and BLAS.

    Parameters
    ----------
    file : file-like, optional
        Where to print; standard output by default.
    """
    import numpy

    from fastrnn._threads import blas_threads
    from fastrnn._version import __version__

    out = file or sys.stdout
    lines = [
        f"fastrnn {__version__} on Python {platform.python_version()} ({platform.machine()})",
        f"numpy {numpy.__version__}",
        f"cpu cores: {os.cpu_count()}",
        "backends (auto takes the first available):",
    ]
    for name in BACKENDS:
        try:
            module = _load(name)
        except FastRNNError as error:  # FASTRNN_ISA names a level this CPU lacks
            lines.append(f"  {name:<7} NOT available: {error}")
            continue
        state = "available" if module is not None else f"NOT available: {_failed[name]}"
        lines.append(f"  {name:<7} {state}")
        if name == "cython" and module is not None:
            openmp = "yes" if module.openmp_enabled() else "no (built without OpenMP: one thread)"
            lines.append(f"          OpenMP: {openmp}, max threads {module.openmp_max_threads()}")
            level, why = module.isa_level()
            lines.append(f"          instruction set: {level} ({why}); "
                         f"this CPU offers {', '.join(module.isa_levels())}")
        if name == "numba" and module is not None:
            import numba

            lines.append(f"          numba {numba.__version__}")
    selected = os.environ.get("FASTRNN_BACKEND")
    lines.append(f"FASTRNN_BACKEND: {selected if selected else '(unset: auto)'}")
    try:
        auto_name, _ = resolve("auto") if selected is None else resolve()
        lines.append(f"a call with no backend= runs on: {auto_name}")
    except Exception as error:
        lines.append(f"a call with no backend= fails: {error}")
    for info in blas_threads.info():
        lines.append(
            f"BLAS: {info.get('internal_api')} {info.get('version')} "
            f"({info.get('architecture')}, {info.get('num_threads')} threads) {info.get('filepath')}"
        )
    print("\n".join(lines), file=out)
