"""Single-thread speed of the reduced-precision products (``reduced_gemm.h``) against float32.

Times ``_cy.PackedMatrix(precision, w).product(a, bias)`` for int8 and bf16 at the level
that runs now (or every level with ``--all-levels``) beside NumPy's float32 ``a @ w.T +
bias`` (its BLAS on one thread), interleaved (one call of each in turn, ``--repeats``
rounds), and prints medians as G operations per second (2 rows n k per product) and the
ratio to float32. Rows 16-64 with W up to 4096 x 1024 are the recurrent products of a
layer (W streamed from memory at every call); hundreds of rows the input projection.

    python bench/reduced_gemm.py [--repeats 7] [--clock cpu] [--all-levels]

``--clock cpu`` times with the thread's CPU time (on a shared machine, time spent
descheduled does not count). Each timed call includes what a call costs from Python (the
output and scratch arrays): at one row and small W that is most of it.
"""

import argparse
import platform
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from fastrnn import _cy

ROWS = (1, 16, 32, 64, 256)
SHAPES = ((128, 512), (512, 2048), (1024, 4096))  # (k, n)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_times(calls, repeats, clock):
    """Median seconds of each call, run in turn ``repeats`` times (each call timed over
    enough inner loops to last about 2 ms)."""
    loops = []
    for call in calls:
        call()
        start = clock()
        call()
        elapsed = max(clock() - start, 1e-7)
        loops.append(max(1, int(2e-3 / elapsed)))
    times = [[] for _ in calls]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = clock()
            for _ in range(loops[i]):
                call()
            times[i].append((clock() - start) / loops[i])
    return [statistics.median(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--all-levels", action="store_true")
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    if args.all_levels:
        variants = [(p, level) for p, levels in _cy.reduced_levels_supported().items()
                    for level in levels]
        variants.sort(key=lambda v: v[0] != "int8")
    else:
        current = _cy.reduced_levels()
        variants = [("int8", current["int8"]), ("bf16", current["bf16"])]
    names = [f"{p} {level}" for p, level in variants]

    print(f"reduced_gemm: {cpu_name()}, 1 thread, float level {_cy.isa_level()[0]}, "
          f"medians of {args.repeats} interleaved rounds ({args.clock} clock)")
    print("G op/s (2 rows n k per product); in brackets: speed / float32 numpy")
    header = f"{'k x n':>11} {'rows':>5} {'f32 numpy':>10}" + "".join(f" {n:>22}" for n in names)
    print(header)
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for k, n in SHAPES:
            w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
            bias = rng.standard_normal(n).astype(np.float32)
            wt = np.ascontiguousarray(w.T)
            packed = [_cy.PackedMatrix(p, w, level=level) for p, level in variants]
            for rows in ROWS:
                a = rng.standard_normal((rows, k)).astype(np.float32)
                out = np.empty((rows, n), np.float32)

                def float32(a=a, out=out):
                    np.matmul(a, wt, out=out)
                    out += bias

                calls = [float32] + [lambda m=m, a=a: m.product(a, bias) for m in packed]
                times = median_times(calls, args.repeats, clock)
                ops = 2.0 * rows * n * k
                cells = "".join(f" {ops / t / 1e9:>12.1f} ({times[0] / t:>5.2f}x)" for t in times[1:])
                print(f"{k:>5}x{n:<5} {rows:>5} {ops / times[0] / 1e9:>10.1f}{cells}")


if __name__ == "__main__":
    main()
