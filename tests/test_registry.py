"""The backend registry: which backends load, which one a call uses, and what happens when one is missing."""

import io
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import _backends

REPO = Path(__file__).resolve().parents[1]


def small_call(**kwargs):
    """A tiny valid forward call; returns the backend that ran it."""
    rng = np.random.default_rng(0)
    _, _, cache = fastrnn.rnn_forward(rng.normal(size=(2, 1, 3)), rng.normal(size=(4, 3)) * 0.3,
                                      rng.normal(size=(4, 4)) * 0.3, **kwargs)
    return cache.backend


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that has loaded nothing yet and has not warned; restored after the test."""
    monkeypatch.setattr(_backends, "_loaded", {})
    monkeypatch.setattr(_backends, "_failed", {})
    monkeypatch.setattr(_backends, "_MODULES", dict(_backends._MODULES))
    monkeypatch.setattr(_backends, "_warned_python_fallback", False)
    return _backends


def break_backend(registry, name):
    """Make backend ``name`` fail to import, as it would on a machine without it."""
    registry._MODULES[name] = f"fastrnn._no_such_module_for_{name}"


def test_available_backends_in_speed_order():
    available = fastrnn.available_backends()
    assert "python" in available, available
    assert available == [name for name in ("cython", "numba", "python") if name in available], available


def test_auto_takes_the_first_available():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert small_call() == fastrnn.available_backends()[0]
        assert small_call(backend="auto") == fastrnn.available_backends()[0]


def test_backend_argument(any_backend):
    assert small_call(backend=any_backend) == any_backend


def test_use_backend_context_and_precedence(any_backend, monkeypatch):
    """Argument beats context beats FASTRNN_BACKEND beats auto; the context ends with the with-block."""
    with fastrnn.use_backend(any_backend):
        assert small_call() == any_backend
        assert small_call(backend="python") == "python"
        with fastrnn.use_backend("python"):
            assert small_call() == "python"
        assert small_call() == any_backend
        monkeypatch.setenv("FASTRNN_BACKEND", "python")
        assert small_call() == any_backend
    assert small_call() == "python"          # now the environment variable decides
    monkeypatch.setenv("FASTRNN_BACKEND", any_backend)
    assert small_call() == any_backend
    assert small_call(backend="python") == "python"


def test_use_backend_context_is_restored_after_an_exception():
    with pytest.raises(RuntimeError):
        with fastrnn.use_backend("python"):
            raise RuntimeError("boom")
    assert _backends._requested.get() is None


def test_use_backend_is_per_thread(compiled_backend):
    """Two threads inside different use_backend blocks, interleaved, each see their own."""
    barrier = threading.Barrier(2, timeout=30)
    seen, errors = {}, []

    def worker(name):
        try:
            with fastrnn.use_backend(name):
                barrier.wait()            # both contexts are entered before either thread calls
                seen[name] = [small_call() for _ in range(3)]
                barrier.wait()
                seen[name].append(small_call())
        except Exception as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(name,)) for name in (compiled_backend, "python")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert seen == {compiled_backend: [compiled_backend] * 4, "python": ["python"] * 4}


def test_use_backend_does_not_leak_into_other_threads():
    result = []
    with fastrnn.use_backend("python"):
        thread = threading.Thread(target=lambda: result.append(_backends._requested.get()))
        thread.start()
        thread.join()
    assert result == [None]


def test_unknown_backend_everywhere(monkeypatch):
    with pytest.raises(fastrnn.UnknownBackendError, match=r"use_backend\(name\) must be one of .*got 'fast'"):
        with fastrnn.use_backend("fast"):
            pass
    monkeypatch.setenv("FASTRNN_BACKEND", "fast")
    with pytest.raises(fastrnn.UnknownBackendError, match=r"FASTRNN_BACKEND must be one of .*got 'fast'"):
        small_call()


def test_unavailable_backend_carries_its_reason(fresh_registry, monkeypatch):
    break_backend(fresh_registry, "cython")
    assert "cython" not in fastrnn.available_backends()
    with pytest.raises(fastrnn.BackendUnavailableError) as error:
        small_call(backend="cython")
    assert isinstance(error.value, ValueError)
    assert error.value.backend == "cython"
    assert "ModuleNotFoundError" in error.value.reason and "_no_such_module_for_cython" in error.value.reason
    assert error.value.reason in str(error.value) and "'cython' is not available" in str(error.value)
    # the same through the context and the environment variable
    with fastrnn.use_backend("cython"), pytest.raises(fastrnn.BackendUnavailableError, match="_no_such_module"):
        small_call()
    monkeypatch.setenv("FASTRNN_BACKEND", "cython")
    with pytest.raises(fastrnn.BackendUnavailableError, match="_no_such_module"):
        small_call()
    # and show_config says so too
    out = io.StringIO()
    monkeypatch.delenv("FASTRNN_BACKEND")
    fastrnn.show_config(file=out)
    assert "NOT available" in out.getvalue() and "_no_such_module_for_cython" in out.getvalue(), out.getvalue()


def test_auto_skips_an_unavailable_backend(fresh_registry):
    break_backend(fresh_registry, "cython")
    expected = "numba" if "numba" in fastrnn.available_backends() else "python"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert small_call(backend="auto") == expected


def test_auto_warns_once_when_only_python_is_left(fresh_registry):
    break_backend(fresh_registry, "cython")
    break_backend(fresh_registry, "numba")
    with pytest.warns(RuntimeWarning, match=r"pure-NumPy reference.*cython: .*_no_such_module_for_cython.*"
                                            r"numba: .*_no_such_module_for_numba") as record:
        assert small_call() == "python"
    assert len(record) == 1 and record[0].filename == __file__, "the warning must point at the caller's line"
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # a second warning would now raise
        assert small_call() == "python"
        assert small_call(backend="auto") == "python"


def test_explicit_python_does_not_warn(fresh_registry):
    break_backend(fresh_registry, "cython")
    break_backend(fresh_registry, "numba")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small_call(backend="python") == "python"
        with fastrnn.use_backend("python"):
            assert small_call() == "python"


def test_show_config_lists_every_backend(monkeypatch):
    monkeypatch.setenv("FASTRNN_BACKEND", "python")
    out = io.StringIO()
    fastrnn.show_config(file=out)
    text = out.getvalue()
    for name in ("cython", "numba", "python"):
        assert f"  {name} " in text, text
    assert "FASTRNN_BACKEND: python" in text and "runs on: python" in text, text
    for name in fastrnn.available_backends():
        assert any(line.strip().startswith(name) and "available" in line and "NOT" not in line
                   for line in text.splitlines()), text


def run_python(code):
    env = {key: value for key, value in os.environ.items() if not key.startswith("FASTRNN_")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_import_compiles_nothing_and_imports_no_numba():
    code = (
        "import sys, fastrnn\n"
        "assert fastrnn.__file__.startswith(%r), fastrnn.__file__\n"
        "bad = sorted(m for m in sys.modules if m == 'numba' or m.startswith('numba.') or m == 'fastrnn._cy'"
        " or m.startswith('fastrnn._numba'))\n"
        "assert not bad, bad\n"
        "print('ok')\n" % str(REPO)
    )
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr + result.stdout


def test_missing_backend_is_skipped_unless_required(fresh_registry, monkeypatch):
    """The suite's own rule (conftest.require_backend): skip with the reason, but fail when CI requires it."""
    from conftest import require_backend

    break_backend(fresh_registry, "cython")
    monkeypatch.delenv("FASTRNN_REQUIRE_BACKENDS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="_no_such_module_for_cython"):
        require_backend("cython")
    monkeypatch.setenv("FASTRNN_REQUIRE_BACKENDS", "numba, cython,python")
    with pytest.raises(pytest.fail.Exception, match="_no_such_module_for_cython.*FASTRNN_REQUIRE_BACKENDS"):
        require_backend("cython")
    assert require_backend("python") == "python"


def test_set_num_threads_caps_the_default_and_is_validated(monkeypatch):
    from fastrnn import _threads

    monkeypatch.setattr(_threads, "_thread_cap", None)
    monkeypatch.setattr(_threads, "free_cores", lambda cores=None: cores)  # an idle machine
    assert fastrnn.get_num_threads() == len(os.sched_getaffinity(0))
    fastrnn.set_num_threads(1)
    assert fastrnn.get_num_threads() == 1
    assert _threads.default_n_threads(8) == 1
    fastrnn.set_num_threads(None)
    assert _threads.default_n_threads(8) == min(8, len(os.sched_getaffinity(0)))
    with pytest.raises(fastrnn.ArgumentError, match="n_threads must be None or an integer from 1 to 2147483647; got 0"):
        fastrnn.set_num_threads(0)


def test_unbuilt_source_tree_says_so(tmp_path):
    """A clone's src/ on the import path, without the extension built in it, is named as the cause."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "src" / "fastrnn", clone / "src" / "fastrnn",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    (clone / "setup.py").write_text("")
    env = {key: value for key, value in os.environ.items() if not key.startswith("FASTRNN_")}
    env["PYTHONPATH"] = str(clone / "src")
    result = subprocess.run(
        [sys.executable, "-c", "import fastrnn._backends as b; print(b.describe('cython'))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "NOT available" in result.stdout and "source tree" in result.stdout, result.stdout
    assert f"pip install -e . in {clone}" in result.stdout.replace("`", ""), result.stdout
