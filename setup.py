"""Build the optional Cython/OpenMP extension ``fastrnn._cy``.

Metadata lives in ``pyproject.toml``; this file only describes the extension
and the policy for building it, set by the environment variable
``FASTRNN_BUILD_EXT``:

``auto`` (default)
    Try to build. If anything fails (no Cython, no compiler, a compile
    error), print a banner that says why and install the pure-Python package
    anyway; fastrnn then runs on its Numba backend.
``1``
    Build, and make any failure fatal (CI uses this).
``0``
    Do not build the extension.

OpenMP is used when a tiny program compiled and linked with the build's
compiler and ``-fopenmp`` (``/openmp`` for MSVC) also runs; otherwise the
extension is built without it (with a banner), and its ``prange`` loops run
on one thread. ``fastrnn._cy.openmp_enabled()`` tells which happened.
"""

import os
import subprocess
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODES = ("auto", "1", "0")
MODE = os.environ.get("FASTRNN_BUILD_EXT", "auto").strip().lower() or "auto"
if MODE not in MODES:
    sys.exit(f"FASTRNN_BUILD_EXT must be one of {', '.join(MODES)}; got {MODE!r}")

CSRC = "csrc"

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
}

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>

int main(void)
{
    int n = 0;
    #pragma omp parallel reduction(+ : n)
    n += 1;
    printf("OpenMP threads: %d\n", n);
    return n >= 1 ? 0 : 1;
}
"""


def banner(*lines):
    """Print ``lines`` framed, to stderr, so they stand out in a build log."""
    rule = "*" * 78
    body = "\n".join(textwrap.fill(line, 74, initial_indent="* ", subsequent_indent="* ")
                     for line in lines)
    print(f"\n{rule}\n{body}\n{rule}\n", file=sys.stderr, flush=True)


def openmp_flags(compiler):
    """Compile and link flags that enable OpenMP with ``compiler``."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def probe_openmp(compiler):
    """Compile, link and run a tiny OpenMP program; return the reason it failed, or None."""
    compile_flags, link_flags = openmp_flags(compiler)
    with tempfile.TemporaryDirectory(prefix="fastrnn-openmp-") as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_flags)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_flags)
            executable = os.path.join(tmp, compiler.executable_filename("probe"))
            subprocess.run([executable], check=True, capture_output=True, timeout=60)
        except Exception as exc:  # compile, link or run: any failure means no OpenMP
            return f"{type(exc).__name__}: {exc}"
    return None


class BuildExt(build_ext):
    """``build_ext`` that applies the FASTRNN_BUILD_EXT policy and probes for OpenMP."""

    def run(self):
        if not self.extensions:
            return
        if MODE == "0":
            banner("fastrnn: FASTRNN_BUILD_EXT=0, so the Cython extension fastrnn._cy "
                   "was not built. fastrnn will use its Numba backend.")
            self._skip()
            return
        try:
            from Cython.Build import cythonize

            cythonized = cythonize(
                self.extensions,
                compiler_directives=CYTHON_DIRECTIVES,
                include_path=[CSRC],
                build_dir=os.path.join(self.build_temp, "cython"),
                quiet=True,
            )
            # keep setuptools' own Extension objects (finalize_options annotated them)
            for ext, done in zip(self.extensions, cythonized):
                ext.sources = done.sources
            super().run()
        except Exception as exc:
            if MODE == "1":
                raise
            banner("fastrnn: the Cython extension fastrnn._cy was SKIPPED "
                   "(set FASTRNN_BUILD_EXT=1 to make this an error).",
                   f"Reason: {type(exc).__name__}: {exc}",
                   "fastrnn is installed without it and will use its Numba backend.")
            self._skip()

    def build_extensions(self):
        # self.compiler exists from here on: probe it, then set flags it understands
        reason = probe_openmp(self.compiler)
        if reason is None:
            compile_flags, link_flags = openmp_flags(self.compiler)
        else:
            compile_flags, link_flags = [], []
            banner("fastrnn: OpenMP was not found; fastrnn._cy is built WITHOUT OpenMP "
                   "and its kernels will run on one thread.",
                   f"Reason: {reason}")
        if self.compiler.compiler_type == "msvc":
            optimise = ["/O2"]
        else:
            # -fno-trapping-math lets gcc vectorise the pointwise loops (their selects and
            # divisions); NaN and inf still propagate. No -ffast-math (it breaks NaN/inf
            # handling) and no -march (wheels must run on any CPU of the platform): AVX2
            # code is compiled per function (target attribute) and chosen at run time.
            # -Wno-psabi: the baseline variants of isa.h pass 32-byte vectors
            # between static inline functions, and gcc notes an ABI change from gcc 4.6
            # that cannot matter there (the pragma does not silence that note).
            optimise = ["-O3", "-fno-trapping-math", "-Wno-psabi"]
        for ext in self.extensions:
            ext.extra_compile_args = optimise + compile_flags + ext.extra_compile_args
            ext.extra_link_args = link_flags + ext.extra_link_args
        super().build_extensions()

    def _skip(self):
        # leave no stale extension from an earlier build behind in build/ or the tree
        for ext in self.extensions:
            path = self.get_ext_fullpath(ext.name)
            if os.path.exists(path):
                os.remove(path)
        self.extensions = []


setup(
    ext_modules=[
        Extension(
            "fastrnn._cy",
            sources=[os.path.join(CSRC, "_cy.pyx")],
            include_dirs=[CSRC],
            depends=[os.path.join(CSRC, name) for name in
                     ("rnn.pxi", "lstm.pxi", "lstm_proj.pxi", "gru.pxi", "step.pxi",
                      "activations.pxd", "activations.h", "packed_gemm.pxd", "isa.h",
                      "gemm_kernels.h", "cell_steps.h", "openmp_shim.pxd", "openmp_shim.h",
                      "reduced_gemm.h", "reduced_gemm.pxd", "reduced_matrix.pxi",
                      "reduced_layers.pxi")],
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
