"""The build policy of setup.py when no C compiler works.

``pip install .`` must succeed without a compiler (``FASTRNN_BUILD_EXT=auto``,
the default: the extension is skipped with a banner and the package still
installs), and must fail when the extension is required (``FASTRNN_BUILD_EXT=1``).
A compiler that always fails stands in for a missing one. The package is
built from a copy of the source tree, so no earlier build output can leak in.
"""

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BANNER = "the Cython extension fastrnn._cy was SKIPPED"
BROKEN_CC = "broken-cc: no compiler here"
# generated or bulky paths that a clean clone does not have
IGNORED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.pyd", "*.o",
    "*.nbi", "*.nbc", ".pytest_cache", ".hypothesis", ".benchmarks", "*venv*", "csrc/*.c",
)


@pytest.fixture(scope="module")
def pip():
    command = [sys.executable, "-m", "pip"]
    if subprocess.run(command + ["--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not available in this environment")
    return command


@pytest.fixture
def no_compiler_build(tmp_path, pip):
    """Build a wheel of a copy of the repository with a C compiler that always fails."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=IGNORED)
    for generated in source.glob("csrc/*.c"):
        generated.unlink()
    broken_cc = tmp_path / "broken-cc"
    broken_cc.write_text(f"#!/bin/sh\necho '{BROKEN_CC}' >&2\nexit 1\n")
    broken_cc.chmod(broken_cc.stat().st_mode | stat.S_IXUSR)

    def build(mode):
        wheels = tmp_path / f"wheels-{mode}"
        env = dict(os.environ, CC=str(broken_cc), FASTRNN_BUILD_EXT=mode)
        result = subprocess.run(
            pip + ["wheel", "-v", "--no-build-isolation", "--no-deps", "--no-index",
                   str(source), "-w", str(wheels)],
            env=env, capture_output=True, text=True, timeout=600,
        )
        return result, sorted(wheels.glob("*.whl"))

    return build


@pytest.mark.skipif(sys.platform == "win32", reason="the broken compiler is a shell script")
def test_auto_without_compiler_installs_pure_python(no_compiler_build):
    result, wheels = no_compiler_build("auto")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert BANNER in log and BROKEN_CC in log, log  # skipped because the compiler failed
    assert len(wheels) == 1, log
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "fastrnn/_numba/rnn.py" in names
    assert not [name for name in names if Path(name).name.startswith("_cy.")], names


@pytest.mark.skipif(sys.platform == "win32", reason="the broken compiler is a shell script")
def test_required_without_compiler_fails(no_compiler_build):
    result, wheels = no_compiler_build("1")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert BROKEN_CC in log, log  # it failed on the compiler, not on anything before it
    assert not wheels
