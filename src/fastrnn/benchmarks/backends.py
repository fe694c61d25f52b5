"""fastrnn's side of the comparison: which compiled backends to time, and a runner per backend."""

import fastrnn
from fastrnn import _backends

__all__ = ["COMPILED_BACKENDS", "compiled_backends", "check_backend", "fastrnn_runner"]


#: Every compiled backend fastrnn knows, loadable here or not, fastest first.
COMPILED_BACKENDS = tuple(name for name in _backends.BACKENDS if name != "python")


def compiled_backends():
    """The backends that load here, fastest first, without the slow ``"python"`` reference.

    Returns
    -------
    list of str
    """
    return [name for name in fastrnn.available_backends() if name != "python"]


def check_backend(name):
    """Raise :class:`fastrnn.BackendUnavailableError` (saying why) unless ``name`` loads."""
    _backends.resolve(name)


def fastrnn_runner(problem, backend, pass_, n_threads):
    """A no-argument callable running one pass of fastrnn's functions for ``problem``'s cell.

    Parameters
    ----------
    problem : fastrnn.benchmarks.grid.Problem
    backend : str
        A backend name, e.g. ``"numba"``.
    pass_ : {"fwd", "fwdbwd"}
    n_threads : int

    Returns
    -------
    callable
    """
    p = problem
    cell_forward = getattr(fastrnn, p.cell.forward)
    cell_backward = getattr(fastrnn, p.cell.backward)
    args = (p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, *p.initial_states)
    if pass_ == "fwd":

        def forward():
            return cell_forward(*args, backend=backend, n_threads=n_threads, requires_grad=False)

        return forward

    def forward_backward():
        *_, cache = cell_forward(*args, backend=backend, n_threads=n_threads)
        return cell_backward(cache, p.dy, *p.final_state_grads)

    return forward_backward
