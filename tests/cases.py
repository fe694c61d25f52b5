"""The deterministic case set: named SimpleRNN problems that every backend must solve alike.

A :class:`Case` is a recipe: its seed draws float64 values, :meth:`Case.arrays`
rounds them to the requested dtype and then lays them out as the case says
(Fortran order, strided views, read-only, batch-first), so a backend sees the
layout under test while the float64 reference can be run on exactly the same
numbers (:meth:`Case.reference_arrays`).

Weights are drawn like PyTorch's initialiser, U(-k, k) with k = scale / sqrt(H),
so that tanh is neither always linear nor always saturated; ``saturated`` cases
use large weights on purpose, and relu cases use a smaller recurrent scale so
the state does not explode.
"""

from dataclasses import dataclass, replace

import numpy as np

BIASES = {"both": ("b_ih", "b_hh"), "none": (), "ih": ("b_ih",), "hh": ("b_hh",)}


@dataclass(frozen=True)
class Case:
    name: str
    seed: int
    T: int
    B: int
    D: int
    H: int
    nonlinearity: str = "tanh"
    bias: str = "both"            # which biases are passed: "both", "none", "ih", "hh"
    h0: bool = True               # pass an initial state (else the default zeros)
    batch_first: bool = False
    layout: str = "c"             # "c", "fortran", "strided" (non-contiguous views) or "readonly"
    input_scale: float = 1.0      # x ~ N(0, input_scale**2)
    weight_scale: float = 1.0     # w_ih, biases ~ U(-k, k), k = weight_scale / sqrt(H)
    recurrent_scale: float = 1.0  # w_hh ~ U(-k, k), k = recurrent_scale / sqrt(H)
    small: bool = True            # cheap enough for finite differences over every entry

    @property
    def shape(self):
        return (self.T, self.B, self.D, self.H)

    def describe(self, backend=None, dtype=None):
        """Everything a failure message must name: cell, backend, dtype, shape and seed."""
        parts = [f"cell=RNN case={self.name!r}"]
        if backend is not None:
            parts.append(f"backend={backend}")
        if dtype is not None:
            parts.append(f"dtype={np.dtype(dtype).name}")
        parts.append(f"(T, B, D, H)={self.shape} seed={self.seed} nonlinearity={self.nonlinearity} "
                     f"bias={self.bias} h0={self.h0} batch_first={self.batch_first} layout={self.layout}")
        return " ".join(parts)

    # -- the numbers -------------------------------------------------------------------------

    def _draw(self):
        """float64 values, time-major, plus the loss weights dy (time-major) and dh_n."""
        rng = np.random.default_rng(self.seed)
        T, B, D, H = self.shape
        k = 1.0 / np.sqrt(H)
        values = {
            "x": rng.normal(0.0, self.input_scale, (T, B, D)),
            "w_ih": rng.uniform(-k, k, (H, D)) * self.weight_scale,
            "w_hh": rng.uniform(-k, k, (H, H)) * self.recurrent_scale,
            "b_ih": rng.uniform(-k, k, H) * self.weight_scale,
            "b_hh": rng.uniform(-k, k, H) * self.weight_scale,
            "h0": rng.uniform(-0.9, 0.9, (B, H)) if self.nonlinearity == "tanh" else rng.uniform(0, 1, (B, H)),
            "dy": rng.normal(size=(T, B, H)),
            "dh_n": rng.normal(size=(B, H)),
        }
        return values

    def reference_arrays(self, dtype):
        """Time-major, C-contiguous float64 copies of the inputs after rounding to ``dtype``.

        Returns
        -------
        dict of str to ndarray
            ``x, w_ih, w_hh, b_ih, b_hh, h0, dy, dh_n``; entries the case does not pass are absent
            (``h0`` is then zeros for the kernels, which the caller handles by passing ``None``).
        """
        values = self._draw()
        out = {}
        for name, value in values.items():
            if name in ("b_ih", "b_hh") and name not in BIASES[self.bias]:
                continue
            if name == "h0" and not self.h0:
                continue
            out[name] = value.astype(dtype).astype(np.float64)
        return out

    def arrays(self, dtype):
        """The inputs as a caller passes them: dtype ``dtype``, the case's layout, time- or batch-major.

        Returns
        -------
        dict of str to ndarray
            The keyword arguments of ``rnn_forward`` (``x, w_ih, w_hh``, and ``b_ih, b_hh, h0`` where
            the case passes them), plus ``dy`` and ``dh_n`` for ``rnn_backward``, in the same layout.
        """
        out = {}
        for name, value in self.reference_arrays(dtype).items():
            value = value.astype(dtype)
            if self.batch_first and name in ("x", "dy"):
                value = np.ascontiguousarray(value.transpose(1, 0, 2))
            out[name] = _lay_out(value, self.layout)
        return out


def _lay_out(array, layout):
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided":
        # every other entry of a twice-as-long last axis: a non-contiguous view
        big = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        big[..., ::2] = array
        view = big[..., ::2]
        assert not view.flags.c_contiguous or view.size <= 1
        return view
    if layout == "readonly":
        array = np.ascontiguousarray(array).copy()
        array.flags.writeable = False
        return array
    raise ValueError(f"unknown layout {layout!r}")


_TANH = [
    Case("tiny_T1_B1_D1_H1", seed=1, T=1, B=1, D=1, H=1),
    Case("T1", seed=2, T=1, B=3, D=4, H=5),
    Case("B1", seed=3, T=6, B=1, D=3, H=4),
    Case("H1", seed=4, T=6, B=3, D=2, H=1),
    Case("odd_7_5_3_11", seed=5, T=7, B=5, D=3, H=11),
    Case("no_bias", seed=6, T=4, B=3, D=2, H=5, bias="none"),
    Case("only_b_ih", seed=7, T=3, B=2, D=3, H=4, bias="ih"),
    Case("only_b_hh", seed=8, T=3, B=2, D=3, H=4, bias="hh"),
    Case("no_h0", seed=9, T=4, B=3, D=3, H=5, h0=False),
    Case("saturated", seed=10, T=5, B=4, D=3, H=6, input_scale=3.0, weight_scale=8.0, recurrent_scale=8.0),
    Case("batch_first", seed=11, T=5, B=3, D=4, H=6, batch_first=True),
    Case("fortran_order", seed=12, T=5, B=3, D=4, H=6, layout="fortran"),
    Case("strided", seed=13, T=4, B=3, D=5, H=6, layout="strided"),
    Case("read_only", seed=14, T=4, B=3, D=5, H=6, layout="readonly"),
    Case("batch_first_strided", seed=15, T=4, B=3, D=2, H=5, batch_first=True, layout="strided"),
    Case("batch_first_read_only_no_bias", seed=16, T=3, B=4, D=2, H=3, batch_first=True,
         layout="readonly", bias="none"),
]

_RELU = [
    Case("relu", seed=21, T=5, B=3, D=4, H=6, nonlinearity="relu", recurrent_scale=0.5),
    Case("relu_odd_7_5_3_11", seed=22, T=7, B=5, D=3, H=11, nonlinearity="relu", recurrent_scale=0.5),
    Case("relu_T1_B1_H1", seed=23, T=1, B=1, D=2, H=1, nonlinearity="relu"),
    Case("relu_no_bias_no_h0", seed=24, T=4, B=3, D=3, H=5, nonlinearity="relu", bias="none", h0=False,
         recurrent_scale=0.5),
    Case("relu_batch_first_fortran", seed=25, T=4, B=2, D=3, H=5, nonlinearity="relu",
         batch_first=True, layout="fortran", recurrent_scale=0.5),
]

#: Large enough that the compiled backends split the batch into 2 chunks for the time
#: loop and the steps into several blocks for the GEMMs (see fastrnn/_parallel.py),
#: so that the multi-chunk code path and n_threads bit-identity are really exercised.
MULTI_CHUNK = Case("multi_chunk", seed=31, T=32, B=64, D=64, H=256, small=False)
MULTI_CHUNK_RELU = replace(MULTI_CHUNK, name="multi_chunk_relu", seed=32, T=8, nonlinearity="relu",
                           recurrent_scale=0.5, bias="ih")

#: A batch too small to cut, in a layer large enough that each step's product is
#: shared among threads by columns instead (fastrnn/_parallel.py: step_column_threads).
COLUMN_SPLIT = Case("column_split", seed=33, T=4, B=8, D=16, H=1040, small=False)

SMALL_CASES = _TANH + _RELU
CASES = SMALL_CASES + [MULTI_CHUNK, MULTI_CHUNK_RELU, COLUMN_SPLIT]


def case_params(cases):
    """``pytest.param`` objects with the case name as id."""
    import pytest

    return [pytest.param(case, id=case.name) for case in cases]
