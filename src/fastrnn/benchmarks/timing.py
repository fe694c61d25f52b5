"""Timing: alternated, paired rounds and the median per-round ratio.

The machines these numbers come from are noisy (±30 % between runs), so a
speed claim is a ratio measured in one process: every implementation is warmed
up (compiling its JIT kernels), then they are alternated round after round and
the ratio is the median of the per-round ratios.
"""

import time

import numpy as np

__all__ = ["time_paired", "paired_ratio"]


def time_paired(runners, *, time_budget=1.5, rounds=None, min_rounds=5, max_rounds=500):
    """Time several implementations of the same work, alternating them round after round.

    Each runner is first called twice (the first call compiles JIT kernels and
    fills caches; the second estimates its cost). Then, in every round, each
    runner is called once, in an order rotated from round to round, so slow
    drifts of the machine hit all of them alike. Each timed call follows an
    untimed one of the same runner: after a call, the thread pools of OpenMP,
    MKL and ONNX Runtime keep spinning for a while, and on a machine with few
    cores they would otherwise slow down whichever implementation runs next
    (measured: fastrnn's S5 forward on 2 threads took 96 ms right after torch,
    40 ms on its own).

    Parameters
    ----------
    runners : dict of str to callable
        No-argument callables doing the same work.
    time_budget : float
        Seconds the timed rounds should take in all; sets the number of rounds
        when ``rounds`` is not given.
    rounds : int, optional
        Exact number of timed rounds.
    min_rounds, max_rounds : int
        Bounds on the number of rounds chosen from ``time_budget``.

    Returns
    -------
    dict of str to ndarray of shape (rounds,)
        Seconds per call, round by round (index ``i`` of every runner is round ``i``).
    """
    names = list(runners)
    round_cost = 0.0
    for name in names:
        runners[name]()
        start = time.perf_counter()
        runners[name]()
        round_cost += time.perf_counter() - start
    if rounds is None:
        rounds = int(np.clip(time_budget / max(2 * round_cost, 1e-9), min_rounds, max_rounds))
    times = {name: np.empty(rounds) for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            runners[name]()  # settle: the previous runner's threads go idle meanwhile
            start = time.perf_counter()
            runners[name]()
            times[name][i] = time.perf_counter() - start
    return times


def paired_ratio(peer_times, own_times):
    """Median over rounds of ``peer / own``: the speed-up, robust to drifts of the machine."""
    return float(np.median(np.asarray(peer_times) / np.asarray(own_times)))


def time_row(row, runners, ratios, args, base="f32"):
    """Time ``runners`` paired (:func:`time_paired`) and store on ``row`` its ``medians`` (name -> s),
    ``rounds`` (of ``base``) and ``ratios`` (ratio name -> :func:`paired_ratio` of its ``(top, bottom)``
    runners, None where one was not timed); ``args`` gives ``time_per_shape`` and ``repeat``."""
    times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
    row.medians = {name: float(np.median(t)) for name, t in times.items()}
    row.rounds = len(times[base])
    row.ratios = {name: paired_ratio(times[top], times[bottom]) if top in times and bottom in times
                  else None for name, (top, bottom) in ratios.items()}
    return row

