"""The machine a benchmark ran on: CPU model, ISA flags, fastrnn's ISA level and the sgemm peak.

Every report starts with these lines (:func:`header_lines`), so a table can be
judged against the CPU it came from: ratios move between micro-architectures,
and a kernel's speed means something only next to the matrix-multiply peak
measured on the same machine in the same run.
"""

import platform
import time

import numpy as np

__all__ = ["RELEVANT_FLAGS", "CpuInfo", "parse_cpuinfo", "parse_lscpu", "cpu_info", "isa_level",
           "SGEMM_N", "sgemm_runner", "sgemm_peak", "forward_flops", "header_lines"]

#: The CPU flags that decide which kernels can run fast here, as Linux names them.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
                  "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")

#: What the header says when the compiled extension cannot report its level.
NO_LEVEL_QUERY = "avx2+fma or generic (level query not available)"


class CpuInfo:
    """A CPU's model name and flags.

    Attributes
    ----------
    model : str
    flags : frozenset of str
        Every flag the operating system reports, lower case.
    family : str or None
        ``"<vendor> family <f> model <m>"`` where the OS reports them: under a
        hypervisor the model name may be as vague as "AMD EPYC", while family 25
        model 17 says Zen 4.
    """

    def __init__(self, model, flags, family=None):
        self.model = model
        self.flags = frozenset(flags)
        self.family = family

    def describe(self):
        """The model name, followed by vendor, family and model numbers when known."""
        return f"{self.model} ({self.family})" if self.family else self.model

    def relevant_flags(self):
        """``(present, absent)``: the :data:`RELEVANT_FLAGS` this CPU has and lacks, in that order."""
        present = [flag for flag in RELEVANT_FLAGS if flag in self.flags]
        absent = [flag for flag in RELEVANT_FLAGS if flag not in self.flags]
        return present, absent

    def describe_flags(self):
        """One line: the relevant flags present, then the missing ones in parentheses."""
        present, absent = self.relevant_flags()
        text = " ".join(present) or "none of " + " ".join(RELEVANT_FLAGS)
        return text + (f" (no {' '.join(absent)})" if absent and present else "")


def parse_cpuinfo(text):
    """The first processor's model name and flags in the text of ``/proc/cpuinfo``.

    Parameters
    ----------
    text : str

    Returns
    -------
    CpuInfo or None
        None when the text names no model and no flags (not Linux on x86, say).
    """
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: all cores are alike here
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields and "flags" not in fields:
        return None
    family = None
    if "cpu family" in fields and "model" in fields:
        family = f"{fields.get('vendor_id', 'vendor?')} family {fields['cpu family']} model {fields['model']}"
    return CpuInfo(fields.get("model name") or "unknown CPU", fields.get("flags", "").lower().split(),
                   family)


def parse_lscpu(text):
    """The model name and flags in the output of ``lscpu`` (``Model name:`` and ``Flags:`` lines).

    Returns
    -------
    CpuInfo or None
    """
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and model is None:
            model = value.strip()
        elif key.strip() == "Flags" and flags is None:
            flags = value.lower().split()
    if model is None and flags is None:
        return None
    return CpuInfo(model or "unknown CPU", flags or ())


def cpu_info(cpuinfo_path="/proc/cpuinfo"):
    """This machine's CPU: ``/proc/cpuinfo``, else ``lscpu``, else what :mod:`platform` knows.

    Parameters
    ----------
    cpuinfo_path : str
        Where to read ``cpuinfo`` from (tests point it at a file of their own).

    Returns
    -------
    CpuInfo
    """
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as file:
            info = parse_cpuinfo(file.read())
        if info is not None:
            return info
    except OSError:
        pass
    import subprocess

    try:
        result = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
        info = parse_lscpu(result.stdout)
        if info is not None:
            return info
    except (OSError, subprocess.SubprocessError):
        pass
    return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", ())


def isa_level():
    """The instruction-set level fastrnn's compiled kernels run at, and why, as one line.

    Asks the extension's ``isa_level()`` where it has one (it returns the level
    and the reason, or a line); otherwise says which levels the extension of
    this version may run.

    Returns
    -------
    str
    """
    try:
        from fastrnn import _cy
    except ImportError:
        return "no compiled extension (the cython backend did not load)"
    query = getattr(_cy, "isa_level", None)
    if query is None:
        return NO_LEVEL_QUERY
    answer = query()
    if isinstance(answer, (tuple, list)):
        level, *why = answer
        return f"{level} ({'; '.join(map(str, why))})" if why else str(level)
    return str(answer)


#: Size of the square float32 product that measures the sgemm peak: large enough to reach it.
SGEMM_N = 2048


def sgemm_runner(n=SGEMM_N):
    """A no-argument callable doing one single-thread float32 product of two (n, n) matrices.

    NumPy's BLAS is limited to one thread for the call only, so the runner can
    be timed among the others of a row (:func:`fastrnn.benchmarks.timing.time_paired`).

    Returns
    -------
    callable
        Its attribute ``flops`` is ``2 n**3``.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)

    def product():
        with threadpool_limits(limits=1):
            np.matmul(a, b, out=c)
        return c

    product.flops = 2.0 * n ** 3
    return product


def sgemm_peak(n=SGEMM_N, repeats=5):
    """Single-thread float32 matrix-multiply speed of NumPy's BLAS, in GFLOP/s.

    Parameters
    ----------
    n : int
        Square matrices of this size; 2048 is large enough to reach the peak.
    repeats : int
        Timed products (after one untimed); the median is returned.

    Returns
    -------
    float
        ``2 n**3 / seconds / 1e9``, median over the repeats.
    """
    product = sgemm_runner(n)
    product()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        times.append(time.perf_counter() - start)
    return product.flops / float(np.median(times)) / 1e9


def forward_flops(cell, shape):
    """Multiply-add work of one forward pass, counting the two products only (2 flops each).

    Parameters
    ----------
    cell : fastrnn.functional.cells.CellSpec
    shape : fastrnn.benchmarks.grid.Shape

    Returns
    -------
    float
        ``2 T B G H (D + H)``: the input and recurrent products; the gate math is left out.
    """
    return 2.0 * shape.T * shape.B * cell.gates * shape.H * (shape.D + shape.H)


def header_lines(threads, peak=None, cpu=None, level=None):
    """The lines every report starts with (without the leading ``#``).

    Parameters
    ----------
    threads : list of int
        The thread counts of the run.
    peak : float, optional
        The measured sgemm peak (GFLOP/s); not printed when None.
    cpu : CpuInfo, optional
        Read from this machine when None.
    level : str, optional
        :func:`isa_level` when None.

    Returns
    -------
    list of str
    """
    import os

    cpu = cpu or cpu_info()
    lines = [f"cpu: {cpu.describe()}, {os.cpu_count()} logical cores; Python {platform.python_version()}",
             f"isa flags: {cpu.describe_flags()}",
             f"fastrnn isa level: {level or isa_level()}",
             f"threads: {', '.join(map(str, threads))}"]
    if peak is not None:
        lines.append(f"sgemm peak, 1 thread (numpy matmul, float32, n=2048, median): {peak:.1f} GFLOP/s")
    return lines
