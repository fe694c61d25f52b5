"""JAX as a peer: the three cells written out in ``jax.numpy``, ``jax.lax.scan`` over time, ``jax.jit``, CPU.

The cells follow PyTorch's gate packing and take the weights in PyTorch's
layout, as fastrnn does, so every peer is given the same arrays. As a careful
JAX user would write them, the input projection of all steps is one product
before the scan, and only the recurrent product and the gate math are inside.

Threads: XLA's CPU client sizes its thread pool once, when it starts, from the
CPUs the starting thread may run on; ``XLA_FLAGS`` such as
``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` no longer
limit it (measured with jaxlib 0.10: two pool threads still shared a scan's
work). :func:`configure_jax` therefore narrows the calling thread's CPU
affinity to ``n`` CPUs while the client starts, then gives that thread and
every thread the client started back the whole set: the pool keeps ``n``
threads, which the scheduler may move between all CPUs like every other
peer's. Once started the count cannot change, so JAX is timed only in rows of
that thread count. When JAX's client was started before (or affinity cannot be
set, off Linux), the count is not controlled and the header says so.
"""

import os
import sys

import numpy as np

__all__ = ["configure_jax", "jax_version", "jax_forward", "jax_runner"]

#: ``(threads, how)`` once :func:`configure_jax` has run: the process-wide setting.
_CONFIGURED = []


def jax_version():
    """The installed version of jax and jaxlib, as one string."""
    import jax
    import jaxlib

    return f"{jax.__version__} (jaxlib {jaxlib.__version__})"


def _started_clients():
    """Whether JAX's backends have been started already (so their thread pool is sized)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def configure_jax(n_threads):
    """Import JAX and start its CPU client with a pool of ``n_threads`` threads (first call only).

    Parameters
    ----------
    n_threads : int

    Returns
    -------
    threads : int or None
        The pool's thread count, or None when it could not be set.
    how : str
        One line for the report's header.

    Raises
    ------
    ImportError
        If jax or jaxlib is not installed.
    """
    if _CONFIGURED:
        return _CONFIGURED[0]
    import jax  # noqa: F401  (raises ImportError before anything is changed)

    if _started_clients():
        result = (None, "XLA threads not controlled: JAX's CPU client was started before the "
                        "benchmark could size it (XLA's default: one per CPU)")
    elif not hasattr(os, "sched_setaffinity"):
        jax.devices("cpu")
        result = (None, "XLA threads not controlled on this platform (XLA's default: one per CPU)")
    else:
        allowed = os.sched_getaffinity(0)
        n = min(n_threads, len(allowed))
        before = set(os.listdir("/proc/self/task"))
        os.sched_setaffinity(0, sorted(allowed)[:n])
        try:
            jax.devices("cpu")  # starts the client: its pool is sized from this affinity
        finally:
            os.sched_setaffinity(0, allowed)
            for task in set(os.listdir("/proc/self/task")) - before:
                try:
                    os.sched_setaffinity(int(task), allowed)
                except OSError:  # the thread has ended meanwhile
                    pass
        result = (n, f"XLA's CPU pool sized to {n} thread(s) at start (CPU affinity narrowed while "
                     f"the client started, then restored); JAX timed only in {n}-thread rows")
    _CONFIGURED.append(result)
    return result


def _cell_steps(jnp, jax):
    """The step of each cell: ``step(carry, (xp_t)) -> (carry, h_t)`` given the recurrent weights.

    ``xp_t`` is the input projection of step t with its bias; LSTM and RNN also
    hold ``b_hh`` there, while the GRU adds ``b_hh`` to the recurrent product,
    since its reset gate multiplies that product with its bias.
    """
    sigmoid = jax.nn.sigmoid

    def rnn(w_hh, b_hh):
        def step(h, xp):
            h = jnp.tanh(xp + h @ w_hh.T)
            return h, h
        return step

    def lstm(w_hh, b_hh):
        def step(carry, xp):
            h, c = carry
            i, f, g, o = jnp.split(xp + h @ w_hh.T, 4, axis=-1)  # PyTorch's i, f, g, o
            c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
            h = sigmoid(o) * jnp.tanh(c)
            return (h, c), h
        return step

    def gru(w_hh, b_hh):
        def step(h, xp):
            x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)  # PyTorch's r, z, n
            h_r, h_z, h_n = jnp.split(h @ w_hh.T + b_hh, 3, axis=-1)
            r = sigmoid(x_r + h_r)
            z = sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
            h = (1.0 - z) * n + z * h
            return h, h
        return step

    return {"rnn": rnn, "lstm": lstm, "gru": gru}


def jax_forward(cell):
    """The jitted forward of ``cell``: ``(x, w_ih, w_hh, b_ih, b_hh, *states) -> (y, *final states)``.

    Parameters
    ----------
    cell : fastrnn.functional.cells.CellSpec

    Returns
    -------
    callable
        Takes x of shape (T, B, D), the weights in PyTorch's layout and the
        initial state(s) of shape (B, H); returns y of shape (T, B, H) and the
        final state(s).
    """
    import jax
    import jax.numpy as jnp

    make_step = _cell_steps(jnp, jax)[cell.name]
    gru = cell.name == "gru"

    def forward(x, w_ih, w_hh, b_ih, b_hh, *states):
        bias = b_ih if gru else b_ih + b_hh
        xp = x @ w_ih.T + bias  # all steps at once, before the scan
        carry = tuple(states) if len(states) > 1 else states[0]
        final, y = jax.lax.scan(make_step(w_hh, b_hh), carry, xp)
        return (y, *final) if len(states) > 1 else (y, final)

    return jax.jit(forward)


def jax_runner(problem, n_threads):
    """A no-argument callable running the jitted JAX forward of ``problem``'s cell, compiled now.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
    n_threads : int
        Used only if JAX's client is not started yet (:func:`configure_jax`).

    Returns
    -------
    callable
        Returns ``(y, *final states)`` as JAX arrays, computed (it waits for them).

    Raises
    ------
    ImportError
        If jax or jaxlib is not installed.
    """
    configure_jax(n_threads)
    import jax

    p = problem
    args = [jax.device_put(np.asarray(a)) for a in
            (p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, *p.initial_states)]
    compiled = jax_forward(p.cell).lower(*args).compile()  # compiling is not timed

    def forward():
        return jax.block_until_ready(compiled(*args))

    return forward
