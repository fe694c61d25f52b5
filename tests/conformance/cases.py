"""The deterministic case list of the conformance suite, and running a case on a backend.

A :class:`Case` is a recipe independent of the cell: its seed draws float64
values in the cell's shapes (:meth:`Case.reference_arrays`, rounded to the
dtype under test), and :meth:`Case.arrays` lays the same numbers out as a
caller would pass them (Fortran order, strided views, read-only, batch-first),
so a backend sees the layout under test while the float64 reference runs on
exactly the same numbers.

Weights are drawn like PyTorch's initialiser, U(-k, k) with k = 1/sqrt(H), so
that the activations are neither always linear nor always saturated;
``saturated`` cases use large weights on purpose; relu cells get half the
recurrent scale so that the state does not explode.

The multi-chunk cases are derived from the partition thresholds, per cell, so
that the compiled backends really cut the batch into chunks and the steps into
blocks (:func:`multi_chunk` and :func:`column_split`; a guard test checks it).
"""

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from conformance.cells import CELLS
from conftest import ALL_BACKENDS, COMPILED_BACKENDS, isa_variants
from fastrnn import _partition as partition
from helpers import assert_results_close

DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
BIASES = {"both": ("b_ih", "b_hh"), "none": (), "ih": ("b_ih",), "hh": ("b_hh",)}


@dataclass(frozen=True)
class Case:
    name: str
    seed: int
    T: int
    B: int
    D: int
    H: int
    P: int = 0                    # projection size of a projected cell; 0: H // 2
    bias: str = "both"            # which biases are passed: "both", "none", "ih", "hh"
    states: bool = True           # pass the initial states (else the default zeros)
    batch_first: bool = False
    layout: str = "c"             # "c", "fortran", "strided" (non-contiguous views) or "readonly"
    input_scale: float = 1.0      # x ~ N(0, input_scale**2)
    weight_scale: float = 1.0     # w_ih, biases ~ U(-k, k) * weight_scale
    recurrent_scale: float = 1.0  # w_hh ~ U(-k, k) * recurrent_scale
    keep_gate_bias: float = None  # if set, the keep gate's block of one bias is this value
    small: bool = True            # cheap enough for finite differences over every entry

    @property
    def shape(self):
        return (self.T, self.B, self.D, self.H)

    @property
    def proj_size(self):
        return self.P or self.H // 2

    def applies_to(self, cell):
        """Whether the case makes sense for ``cell`` (a projection needs H >= 2, and so on)."""
        if cell.projected and (self.proj_size < 1 or self.proj_size >= self.H or self.batch_first):
            return False
        return self.keep_gate_bias is None or cell.keep_gate is not None

    def describe(self, cell, backend=None, dtype=None):
        """Everything a failure message must name: cell, backend, dtype, shape and seed."""
        parts = [f"cell={cell.name} case={self.name!r}"]
        if backend is not None:
            parts.append(f"backend={backend}")
        if dtype is not None:
            parts.append(f"dtype={np.dtype(dtype).name}")
        parts.append(f"(T, B, D, H)={self.shape}" + (f" P={self.proj_size}" if cell.projected else "")
                     + f" seed={self.seed + cell.seed_offset} bias={self.bias} states={self.states} "
                     f"batch_first={self.batch_first} layout={self.layout}")
        return " ".join(parts)

    # -- the numbers -------------------------------------------------------------------------

    def _draw(self, cell):
        """float64 values of every input and loss weight, time-major."""
        rng = np.random.default_rng(self.seed + cell.seed_offset)
        shapes = cell.shapes(*self.shape, self.proj_size)
        k = 1.0 / math.sqrt(max(self.H, 1))
        recurrent = self.recurrent_scale * (0.5 if cell.relu else 1.0)
        values = {}
        for name, shape in shapes.items():
            if name == "x":
                values[name] = rng.normal(0.0, self.input_scale, shape)
            elif name in ("w_ih", "b_ih", "b_hh"):
                values[name] = rng.uniform(-k, k, shape) * self.weight_scale
            elif name in ("w_hh", "w_hr"):
                values[name] = rng.uniform(-k, k, shape) * recurrent
            elif name == "h0":
                values[name] = rng.uniform(0.0, 1.0, shape) if cell.relu else rng.uniform(-0.9, 0.9, shape)
            else:  # c0 and the loss weights
                values[name] = rng.normal(0.0, 1.0, shape)
        if self.keep_gate_bias is not None:
            bias = "b_ih" if "b_ih" in BIASES[self.bias] else "b_hh"
            values[bias][cell.keep_gate * self.H:(cell.keep_gate + 1) * self.H] = self.keep_gate_bias
        return values

    def reference_arrays(self, cell, dtype):
        """Time-major, C-contiguous float64 copies of the inputs after rounding to ``dtype``.

        Returns
        -------
        dict of str to ndarray
            The forward call's arrays and the loss weights; biases and initial states the case
            does not pass are absent.
        """
        out = {}
        for name, value in self._draw(cell).items():
            if name in ("b_ih", "b_hh") and name not in BIASES[self.bias]:
                continue
            if name in cell.states and not self.states:
                continue
            out[name] = value.astype(dtype).astype(np.float64)
        return out

    def arrays(self, cell, dtype):
        """The arrays as a caller passes them: ``dtype``, the case's layout, time- or batch-major."""
        out = {}
        for name, value in self.reference_arrays(cell, dtype).items():
            value = value.astype(dtype)
            if self.batch_first and name in ("x", "dy"):
                value = np.ascontiguousarray(value.transpose(1, 0, 2))
            out[name] = lay_out(value, self.layout)
        return out

    def time_major(self, cell, dtype):
        """C-contiguous arrays in ``dtype``, time-major, initial states filled in with zeros."""
        arrays = {name: np.ascontiguousarray(value.astype(dtype))
                  for name, value in self.reference_arrays(cell, dtype).items()}
        shapes = cell.shapes(*self.shape, self.proj_size)
        for name in cell.states:
            arrays.setdefault(name, np.zeros(shapes[name], dtype))
        return arrays


def lay_out(array, layout):
    """``array`` in memory layout ``layout`` (see :class:`Case`), same values."""
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided":
        # every other entry of a twice-as-long last axis: a non-contiguous view
        big = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        big[..., ::2] = array
        return big[..., ::2]
    if layout == "readonly":
        array = np.ascontiguousarray(array).copy()
        array.flags.writeable = False
        return array
    raise ValueError(f"unknown layout {layout!r}")


SMALL_CASES = [
    Case("tiny_T1_B1_D1_H1", seed=1, T=1, B=1, D=1, H=1),
    Case("T1", seed=2, T=1, B=3, D=4, H=5),
    Case("B1", seed=3, T=6, B=1, D=3, H=4),
    Case("H1", seed=4, T=6, B=3, D=2, H=1),
    Case("P1_H2", seed=5, T=3, B=2, D=2, H=2),
    Case("odd_7_5_3_11", seed=6, T=7, B=5, D=3, H=11),
    Case("no_bias", seed=7, T=4, B=3, D=2, H=5, bias="none"),
    Case("only_b_ih", seed=8, T=3, B=2, D=3, H=4, bias="ih"),
    Case("only_b_hh", seed=9, T=3, B=2, D=3, H=4, bias="hh"),
    Case("no_states", seed=10, T=4, B=3, D=3, H=5, states=False),
    Case("saturated", seed=11, T=5, B=4, D=3, H=6, input_scale=3.0, weight_scale=8.0, recurrent_scale=8.0),
    Case("keep_gate_near_0", seed=12, T=5, B=3, D=3, H=4, keep_gate_bias=-10.0),
    Case("keep_gate_near_1", seed=13, T=5, B=3, D=3, H=4, keep_gate_bias=10.0),
    Case("batch_first", seed=14, T=5, B=3, D=4, H=6, batch_first=True),
    Case("fortran_order", seed=15, T=5, B=3, D=4, H=6, layout="fortran"),
    Case("strided", seed=16, T=4, B=3, D=5, H=6, layout="strided"),
    Case("read_only", seed=17, T=4, B=3, D=5, H=6, layout="readonly"),
    Case("batch_first_strided_no_bias", seed=18, T=4, B=3, D=2, H=5, batch_first=True, layout="strided",
         bias="none"),
    Case("batch_first_read_only_no_states", seed=19, T=3, B=4, D=2, H=3, batch_first=True, layout="readonly",
         states=False),
]
#: One long sequence: errors the recurrence accumulates over many steps.
LONG = Case("long_T2000_B1", seed=20, T=2000, B=1, D=3, H=4, small=False)


def _ceil_sqrt(value):
    return math.isqrt(max(int(value) - 1, 0)) + 1


def multi_chunk(cell):
    """A case the compiled backends cut into >= 2 batch chunks for the time loop and >= 2 time
    blocks for the GEMMs over all steps, sized from the partition thresholds for ``cell``."""
    G = cell.gates
    B = 2 * partition.MIN_CHUNK_ROWS
    H = _ceil_sqrt(2 * partition.MIN_CHUNK_WORK / (B * G))
    D = H  # the input projection (D*G*H per row) is cut too, not only the BPTT GEMMs
    T = max(3, -(-2 * partition.MIN_BLOCK_WORK // (B * D * G * H)))
    return Case("multi_chunk", seed=31, T=T, B=B, D=D, H=H, small=False)


def column_split(cell):
    """A batch too small to cut, in a layer large enough that each step's product is shared
    among threads by columns instead."""
    G, B = cell.gates, partition.MIN_CHUNK_ROWS // 2
    H = _ceil_sqrt(partition.MIN_STEP_SPLIT_WORK / (B * G))
    return Case("column_split", seed=32, T=3, B=B, D=8, H=H, small=False)


def cases_for(cell, cases=None):
    """The case list of ``cell`` (all by default), without the cases that do not apply to it."""
    if cases is None:
        cases = SMALL_CASES + [LONG, multi_chunk(cell), column_split(cell)]
    return [case for case in cases if case.applies_to(cell)]


def cell_cases(cases=None, cells=CELLS):
    """``pytest.param(cell, case)`` for every cell and each case that applies to it."""
    return [pytest.param(cell, case, id=f"{cell.id}-{case.name}")
            for cell in cells for case in cases_for(cell, cases(cell) if callable(cases) else cases)]


def matrix(cases=None, backends=ALL_BACKENDS, dtypes=DTYPES, reference_run=False, cells=CELLS):
    """``pytest.param(cell, case, backend, dtype)`` over the product (the Cython backend also on
    every other instruction-set level this CPU supports, :func:`conftest.isa_variants`, in float32
    and on the large float64 cases); without the run that *is*
    the reference (python, float64, time-major C order) unless ``reference_run``, and with the
    reference backend on the small cases only (the large ones are there for the compiled kernels'
    chunked paths, and would only time the reference against itself)."""
    params = []
    for cell in cells:
        for case in cases_for(cell, cases(cell) if callable(cases) else cases):
            for backend, backend_id in (pair for name in backends for pair in isa_variants(name)):
                for dtype in dtypes:
                    is_reference = (backend, dtype, case.layout, case.batch_first) == ("python", DTYPES[0], "c", False)
                    if (is_reference and not reference_run) or (backend == "python" and not case.small):
                        continue
                    # the other levels on a representative subset, to bound the suite's time: every
                    # float32 case (fused steps, vector tanh), float64 on the large cases only
                    if hasattr(backend, "isa") and dtype == DTYPES[0] and case.small:
                        continue
                    params.append(pytest.param(cell, case, backend, dtype, marks=backend_marks(backend),
                                               id=f"{cell.id}-{case.name}-{backend_id}-{dtype.name}"))
    return params


def backend_marks(backend):
    """The ``compiled`` mark for a compiled backend (``-m "not compiled"`` runs the reference alone)."""
    return [pytest.mark.compiled] if backend in COMPILED_BACKENDS else []


def backend_params(backends=ALL_BACKENDS):
    """``pytest.param(backend)`` with its marks, the Cython backend on every level this CPU supports."""
    return [pytest.param(backend, marks=backend_marks(backend), id=backend_id)
            for name in backends for backend, backend_id in isa_variants(name)]


# -- running a case ----------------------------------------------------------------------------


def collect(cell, y, states, grads, batch_first):
    """Results in one dict, time-major: ``y``, the final states and ``d<name>`` per gradient."""
    out = {"y": np.asarray(y).transpose(1, 0, 2) if batch_first else np.asarray(y)}
    out.update({name: np.asarray(value) for name, value in states.items()})
    for name, value in grads.items():
        value = np.asarray(value)
        out["d" + name] = value.transpose(1, 0, 2) if (batch_first and name == "x") else value
    return out


def run(cell, case, backend, dtype, n_threads=None, arrays=None):
    """Forward and backward of ``case`` on ``backend`` in ``dtype`` through the public API.

    Returns
    -------
    dict of str to ndarray
        ``"y"`` (time-major), the final states and ``"d<name>"`` for every gradient returned.
    """
    arrays = case.arrays(cell, dtype) if arrays is None else arrays
    y, states, cache = cell.forward(arrays, backend, batch_first=case.batch_first, n_threads=n_threads)
    return collect(cell, y, states, cell.backward(cache, arrays), case.batch_first)


@functools.lru_cache(maxsize=None)
def reference(cell, case, dtype):
    """The reference backend's results, in float64, on the case's inputs rounded to ``dtype``."""
    arrays = case.reference_arrays(cell, np.dtype(dtype))
    result = run(cell, replace(case, batch_first=False), "python", np.float64, arrays=arrays)
    for value in result.values():
        value.flags.writeable = False
    return result


def assert_matches_reference(result, cell, case, dtype, tolerance, context):
    """Every result has ``dtype`` and agrees with the float64 reference within ``tolerance``."""
    for name, value in result.items():
        assert value.dtype == np.dtype(dtype), f"{context}: {name} has dtype {value.dtype}"
    assert_results_close(result, reference(cell, case, np.dtype(dtype)), tolerance, context)


def dtype_params():
    return [pytest.param(dtype, id=dtype.name) for dtype in DTYPES]
