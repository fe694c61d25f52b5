"""What a new process costs: ``import fastrnn``, the first forward+backward, and peak memory.

Each measurement runs in a fresh interpreter that imports this very fastrnn.
"""

import os
import statistics
import subprocess
import sys
import time

import fastrnn
from fastrnn.benchmarks.grid import SHAPES

__all__ = ["startup_times", "peak_memory", "run_python"]

_FIRST_CALL_SCRIPT = """\
import time
start = time.perf_counter()
import numpy as np
import fastrnn
rng = np.random.default_rng(0)
T, B, D, H = {T}, {B}, {D}, {H}
x = rng.standard_normal((T, B, D)).astype(np.float32)
w_ih = (0.1 * rng.standard_normal((H, D))).astype(np.float32)
w_hh = (0.1 * rng.standard_normal((H, H))).astype(np.float32)
y, h_n, cache = fastrnn.rnn_forward(x, w_ih, w_hh)
fastrnn.rnn_backward(cache, np.ones_like(y))
print(cache.backend, time.perf_counter() - start)
"""


def subprocess_env():
    """The environment for child interpreters: they must import this very fastrnn."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def run_python(code):
    """Run ``code`` in a new interpreter; return (wall seconds, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def startup_times(repeat=5, shape="S1"):
    """Wall time of new processes: bare interpreter, ``import fastrnn``, one forward+backward.

    Parameters
    ----------
    repeat : int
        Runs of the two import measurements (the median is kept).
    shape : str
        Shape of the forward+backward run.

    Returns
    -------
    dict
        ``"python"``, ``"import"``: median seconds of ``python -c pass`` and
        ``python -c "import fastrnn"``; ``"first_call"``: list of two
        (seconds, backend) for the forward+backward process, run twice so the
        second finds the Numba cache warm whatever the first found.
    """
    bare = statistics.median(run_python("pass")[0] for _ in range(repeat))
    imported = statistics.median(run_python("import fastrnn")[0] for _ in range(repeat))
    s = SHAPES[shape]
    script = _FIRST_CALL_SCRIPT.format(T=s.T, B=s.B, D=s.D, H=s.H)
    first_call = []
    for _ in range(2):
        wall, out = run_python(script)
        first_call.append((wall, out.split()[0]))
    return {"python": bare, "import": imported, "first_call": first_call}


# VmHWM (the peak resident set of this process image), not getrusage's ru_maxrss,
# which Linux carries over from the parent across fork and exec.
_PEAK_MEMORY_SCRIPT = """\
def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
from fastrnn.benchmarks.backends import fastrnn_runner
from fastrnn.benchmarks.grid import make_problem
from fastrnn.benchmarks.peers import torch_runner
problem = make_problem({shape!r}, {cell!r})
if {who!r} == "torch":
    run = torch_runner(problem, "fwdbwd", 1)
else:
    run = fastrnn_runner(problem, {who!r}, "fwdbwd", 1)
before = peak_kib()
run()
print(before, peak_kib())
"""


def peak_memory(implementations, cell="lstm", shape="S2"):
    """Peak resident memory of one forward+backward, each implementation in a new process.

    Each child builds the problem and its runner, reads its peak resident
    set (``VmHWM`` of ``/proc/self/status``, so Linux only), runs one
    forward+backward and reads it again; the difference is what the pass
    itself added on top of the inputs, weights and imported libraries.

    Parameters
    ----------
    implementations : list of str
        fastrnn backend names and/or ``"torch"``.
    cell, shape : str

    Returns
    -------
    dict of str to (float, float)
        Peak RSS of the whole process and the part added by the pass, in MiB.
    """
    result = {}
    for who in implementations:
        _, out = run_python(_PEAK_MEMORY_SCRIPT.format(cell=cell, shape=shape, who=who))
        before, after = (int(v) / 1024 for v in out.split()[-2:])  # KiB
        result[who] = (after, after - before)
    return result
