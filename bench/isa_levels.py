"""Single-thread float32 forward speed of the Cython kernels on each instruction-set level.

Runs the LSTM and GRU forward (inference) at the issue's large shapes on every
level this CPU supports, interleaved (one call per level in turn, ``--repeats``
rounds), and prints medians with GFLOP/s beside the single-thread sgemm peak of
NumPy's BLAS at n = 2048 measured in the same run. This is how the tile sizes of
``csrc/isa.h`` were chosen: build with another value (e.g.
``CFLAGS=-Dpg_avx512_MR=4``), rerun, compare.

    python bench/isa_levels.py [--repeats 5] [--shapes S2,S5,S4] [--cells lstm,gru] [--clock cpu]

``--clock cpu`` times with the calling thread's CPU time instead of the wall clock
(every call here runs on that one thread): on a machine shared with other work, time
spent descheduled then does not count.
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastrnn
from fastrnn import _cy

SHAPES = {"S1": (500, 32, 32, 32), "S2": (100, 64, 512, 512), "S3": (1000, 1, 64, 64),
          "S4": (100, 32, 128, 128), "S5": (50, 16, 512, 1024)}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


clock = time.perf_counter


def sgemm_gflops(n=2048, repeats=5):
    """Median single-thread GFLOP/s of ``a @ b`` in float32 at size ``n``."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    times = []
    with threadpool_limits(1, user_api="blas"):
        a @ b
        for _ in range(repeats):
            start = clock()
            a @ b
            times.append(clock() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def layer_call(cell, shape):
    """A function running one forward of ``cell`` at ``shape`` on the Cython backend, 1 thread."""
    T, B, D, H = shape
    G = GATES[cell]
    rng = np.random.default_rng(1)
    k = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, D), dtype=np.float32)
    w_ih, w_hh = (rng.uniform(-k, k, (G * H, n)).astype(np.float32) for n in (D, H))
    b_ih, b_hh = (rng.uniform(-k, k, G * H).astype(np.float32) for _ in range(2))
    forward = getattr(fastrnn, f"{cell}_forward")
    return lambda: forward(x, w_ih, w_hh, b_ih, b_hh, backend="cython", n_threads=1, requires_grad=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", default="S2,S5,S4")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--levels", default=",".join(_cy.isa_levels()[:2]))
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    global clock
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    levels = args.levels.split(",")
    peak = sgemm_gflops()
    print(f"{args.clock} clock; single-thread sgemm (NumPy's BLAS, n=2048): {peak:.1f} GFLOP/s")
    print(f"{'cell':<5} {'shape':<6} " + " ".join(f"{level + ' ms':>11} {'GFLOP/s':>8} {'%peak':>6}"
                                                  for level in levels))
    for cell in args.cells.split(","):
        for name in args.shapes.split(","):
            T, B, D, H = SHAPES[name]
            flops = 2 * T * B * (D + H) * GATES[cell] * H
            call = layer_call(cell, SHAPES[name])
            times = {level: [] for level in levels}
            for level in levels:  # warm up each level once
                _cy.set_isa_level(level)
                call()
            for _ in range(args.repeats):
                for level in levels:
                    _cy.set_isa_level(level)
                    start = clock()
                    call()
                    times[level].append(clock() - start)
            row = []
            for level in levels:
                t = statistics.median(times[level])
                gflops = flops / t / 1e9
                row.append(f"{t * 1e3:>11.1f} {gflops:>8.1f} {100 * gflops / peak:>5.0f}%")
            print(f"{cell:<5} {name:<6} " + " ".join(row), flush=True)
    print(f"sgemm again: {sgemm_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
