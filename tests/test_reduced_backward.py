"""The Cython backward kernels in bf16 (bf16 training: ``_cy.pack_reduced(..., backward=True)``,
``*_backward_reduced``) against the NumPy reference and against float64.

One forward runs (the reference's bf16 forward, with the training workspaces), and its cache
feeds both the reference backward (:mod:`fastrnn._python.reduced_layer`) and the compiled
one, so the two backward passes start from the same numbers. Their products round the same
operands to bf16 and sum in float32 in different orders; what must hold exactly is checked
bit for bit: any ``n_threads``, and the transposed packing of ``reduced_gemm.h`` against the
plain packing of the transposed matrix.
"""

import numpy as np
import pytest

from conftest import require_backend
from fastrnn._python import gru, lstm, lstm_proj, rnn
from fastrnn._python import reduced_layer as reference
from helpers import assert_close, assert_results_identical

from tolerances import REDUCED_BACKWARD_VS_FLOAT64, REDUCED_BACKWARD_VS_REFERENCE

#: (cell, flag): the RNN with tanh and relu, the LSTM, the LSTM with projection, the GRU
#: with reset_after True and False.
CELLS = (("rnn", False), ("rnn", True), ("lstm", False), ("lstm_proj", False), ("gru", True),
         ("gru", False))
GATES = {"rnn": 1, "lstm": 4, "lstm_proj": 4, "gru": 3}
GATED = ("lstm", "lstm_proj")

SHAPES = [  # (T, B, D, H, P); P is the projection of lstm_proj (H elsewhere)
    (1, 1, 1, 1, 1),
    (5, 3, 7, 17, 9),
    (1, 4, 3, 20, 20),
    (12, 1, 17, 3, 2),
    (20, 9, 1, 130, 64),
    (30, 17, 64, 48, 33),
    (4, 40, 33, 130, 40),     # several batch chunks
    (3, 12, 16, 520, 260),    # one chunk, the steps' products shared by column blocks
]


@pytest.fixture(scope="module")
def cy():
    """The extension (skipped, or failed if required, when it does not load)."""
    require_backend("cython")
    from fastrnn import _cy

    return _cy


def _bf16_isa(cy, level):
    """The float32 ISA level under which bf16 runs ``level``, or None if this CPU cannot."""
    isas = cy.isa_levels()
    if level == "avx512_bf16":
        return "avx512" if "avx512_bf16" in cy.reduced_levels_supported()["bf16"] else None
    return "avx2" if "avx2" in isas else "generic"


@pytest.fixture(params=["avx512_bf16", "emulated"])
def bf16_level(cy, request):
    """Run the test with the bf16 kernels of one level (the float32 ISA level set for it)."""
    isa = _bf16_isa(cy, request.param)
    if isa is None:
        pytest.skip(f"this CPU does not run bf16 {request.param}")
    before, why = cy.isa_level()
    cy.set_isa_level(isa, reason="set by the test suite")
    try:
        assert cy.reduced_levels()["bf16"] == request.param
        yield request.param
    finally:
        cy.set_isa_level(before, reason=why)


class Case:
    """One layer's float32 weights, inputs, a forward cache and the gradients flowing in."""

    def __init__(self, cell, flag, T, B, D, H, P, dc_seq=False, seed=0):
        rng = np.random.default_rng(seed)
        P = P if cell == "lstm_proj" else H
        G = GATES[cell]
        self.cell, self.flag, self.T, self.B, self.D, self.H, self.P = cell, flag, T, B, D, H, P
        bound = 1 / np.sqrt(max(H, 1))  # PyTorch's initialisation

        def uniform(*shape):
            return rng.uniform(-bound, bound, shape).astype(np.float32)

        def normal(*shape, scale=1.0):
            return (scale * rng.standard_normal(shape)).astype(np.float32)

        self.weights = dict(w_ih=uniform(G * H, D), w_hh=uniform(G * H, P), bias=uniform(G * H),
                            w_hr=uniform(P, H) if cell == "lstm_proj" else None,
                            b_hn=uniform(H) if cell == "gru" else None)
        self.x = normal(T, B, D)
        self.h0 = normal(B, P, scale=0.5)
        self.c0 = normal(B, H, scale=0.5) if cell in GATED else None
        self.dy = normal(T, B, P)
        self.dh_n = normal(B, P)
        self.dc_n = normal(B, H) if cell in GATED else None
        self.dc_seq = normal(T, B, H) if dc_seq else np.zeros((0, B, H), np.float32)
        self.cache = self.forward(reference.pack_reduced(
            cell, "bf16", **self.packing(), backward=True), reference)

    def packing(self, weights=None):
        w = self.weights if weights is None else weights
        return dict(w_ih=w["w_ih"], w_hh=w["w_hh"], bias=w["bias"], w_hr=w["w_hr"],
                    b_hn=w["b_hn"], flag=self.flag)

    def pack(self, cy, backward=True, precision="bf16"):
        return cy.pack_reduced(self.cell, precision, **self.packing(), backward=backward)

    def forward(self, layer, module, dtype=np.float32):
        """The forward (training workspaces) of ``module``'s ``*_forward_reduced``."""
        T, B, H, P = self.T, self.B, self.H, self.P
        out = {"y": np.zeros((T, B, P), dtype), "h_n": np.zeros((B, P), dtype)}
        if self.cell in GATED:
            out["c_n"] = np.zeros((B, H), dtype)
        if self.cell != "rnn":
            out["gates"] = np.zeros((T, B, 4 * H), dtype)
        if self.cell in GATED:
            out["c_all"] = np.zeros((T, B, H), dtype)
        if self.cell == "lstm_proj":
            out["m_all"] = np.zeros((T, B, H), dtype)
        head = (self.x, layer, self.h0) + (() if self.c0 is None else (self.c0,))
        getattr(module, f"{self.cell}_forward_reduced")(*head, *out.values(), 1)
        return out

    def gradients(self, dtype=np.float32):
        """Zeroed outputs and workspaces of a backward, by name, in the kernels' order."""
        T, B, D, H, P, G = self.T, self.B, self.D, self.H, self.P, GATES[self.cell]
        if self.cell == "gru":
            names = dict(dz_x=(T, B, 3 * H), dz_h=(T, B, 3 * H), dx=(T, B, D), dh0=(B, H),
                         dw_ih=(3 * H, D), dw_hh=(3 * H, H), db_ih=(3 * H,), db_hh=(3 * H,))
        else:
            names = dict(dz=(T, B, G * H), dx=(T, B, D), dh0=(B, P))
            if self.cell in GATED:
                names["dc0"] = (B, H)
            names.update(dw_ih=(G * H, D), dw_hh=(G * H, P))
            if self.cell == "lstm_proj":
                names["dw_hr"] = (P, H)
            names["db"] = (G * H,)
        return {name: np.zeros(shape, dtype) for name, shape in names.items()}

    def inputs(self, cache=None):
        """The backward's inputs, in the kernels' order (after ``layer``)."""
        c = self.cache if cache is None else cache
        if self.cell == "rnn":
            return [self.h0, c["y"], self.dy, self.dh_n]
        if self.cell == "gru":
            return [self.h0, c["y"], c["gates"], self.dy, self.dh_n]
        if self.cell == "lstm":
            return [self.h0, self.c0, c["y"], c["gates"], c["c_all"], self.dy, self.dh_n,
                    self.dc_n, self.dc_seq]
        return [self.h0, self.c0, c["y"], c["gates"], c["c_all"], c["m_all"], self.dy,
                self.dh_n, self.dc_n, self.dc_seq]

    def backward(self, module, layer, n_threads=1, out=None):
        """``module``'s ``*_backward_reduced`` on the cache; returns the outputs by name."""
        out = self.gradients() if out is None else out
        kernel = getattr(module, f"{self.cell}_backward_reduced")
        kernel(self.x, layer, *self.inputs(), *out.values(), n_threads)
        return out

    def float64(self, own_forward=True):
        """Forward and backward in float64 on the float weights (the reference kernels); with
        ``own_forward=False`` only the backward, on the bf16 forward's outputs (the RNN)."""
        w = {k: None if v is None else v.astype(np.float64) for k, v in self.weights.items()}
        x, h0, dy, dh_n = (a.astype(np.float64) for a in (self.x, self.h0, self.dy, self.dh_n))
        T, B, H, P, f = self.T, self.B, self.H, self.P, np.float64
        y, h_n, gates = np.zeros((T, B, P), f), np.zeros((B, P), f), np.zeros((T, B, 4 * H), f)
        out = self.gradients(np.float64)
        if self.cell == "rnn":
            if own_forward:
                rnn.rnn_forward(x, w["w_ih"], w["w_hh"], w["bias"], h0, self.flag, y, h_n, 1)
            else:
                y[...] = self.cache["y"]
            rnn.rnn_backward(x, w["w_ih"], w["w_hh"], h0, y, dy, dh_n, self.flag,
                             *out.values(), 1)
        elif self.cell == "gru":
            gru.gru_forward(x, w["w_ih"], w["w_hh"], w["bias"], w["b_hn"], h0, self.flag, y, h_n,
                            gates, 1)
            gru.gru_backward(x, w["w_ih"], w["w_hh"], h0, self.flag, y, gates, dy, dh_n,
                             *out.values(), 1)
        else:
            c0, dc_n = self.c0.astype(f), self.dc_n.astype(f)
            dc_seq = self.dc_seq.astype(f)
            c_n, c_all, m_all = np.zeros((B, H), f), np.zeros((T, B, H), f), np.zeros((T, B, H), f)
            if self.cell == "lstm":
                lstm.lstm_forward(x, w["w_ih"], w["w_hh"], w["bias"], h0, c0, y, h_n, c_n, gates,
                                  c_all, 1)
                lstm.lstm_backward(x, w["w_ih"], w["w_hh"], h0, c0, y, gates, c_all, dy, dh_n,
                                   dc_n, dc_seq, *out.values(), 1)
            else:
                lstm_proj.lstm_proj_forward(x, w["w_ih"], w["w_hh"], w["w_hr"], w["bias"], h0, c0,
                                            y, h_n, c_n, gates, c_all, m_all, 1)
                lstm_proj.lstm_proj_backward(x, w["w_ih"], w["w_hh"], w["w_hr"], h0, c0, y, gates,
                                             c_all, m_all, dy, dh_n, dc_n, dc_seq,
                                             *out.values(), 1)
        return out

    def context(self):
        return (f"{self.cell}(flag={self.flag}) T={self.T} B={self.B} D={self.D} H={self.H} "
                f"P={self.P} dc_seq={self.dc_seq.shape[0] > 0}")


#: The results compared: every output but the workspaces (dz, dz_x, dz_h), which are
#: compared too but are intermediate.
def _compare(actual, expected, tolerance, context):
    for name in expected:
        assert_close(actual[name], expected[name], tolerance, context, name)


def _cases(shapes):
    for cell, flag in CELLS:
        for shape in shapes:
            for dc_seq in ((False, True) if cell in GATED else (False,)):
                yield pytest.param(cell, flag, *shape, dc_seq,
                                   id=f"{cell}-{int(flag)}-{'x'.join(map(str, shape))}-{int(dc_seq)}")


# ---- against the reference

@pytest.mark.parametrize("cell,flag,T,B,D,H,P,dc_seq", list(_cases(SHAPES)))
def test_backward_against_the_reference(cy, cell, flag, T, B, D, H, P, dc_seq):
    case = Case(cell, flag, T, B, D, H, P, dc_seq, seed=T + H)
    expected = case.backward(reference, reference.pack_reduced(
        cell, "bf16", **case.packing(), backward=True))
    actual = case.backward(cy, case.pack(cy))
    _compare(actual, expected, REDUCED_BACKWARD_VS_REFERENCE, case.context())


@pytest.mark.parametrize("cell,flag,T,B,D,H,P,dc_seq",
                         list(_cases([(5, 3, 7, 17, 9), (6, 33, 40, 70, 35)])))
def test_both_kernel_levels_against_the_reference(cy, bf16_level, cell, flag, T, B, D, H, P,
                                                  dc_seq):
    case = Case(cell, flag, T, B, D, H, P, dc_seq, seed=B)
    layer = case.pack(cy)
    assert layer.level == bf16_level
    expected = case.backward(reference, reference.pack_reduced(
        cell, "bf16", **case.packing(), backward=True))
    _compare(case.backward(cy, layer), expected, REDUCED_BACKWARD_VS_REFERENCE,
             f"{case.context()} {bf16_level}")


@pytest.mark.parametrize("cell,flag", CELLS)
def test_error_against_float64_is_bounded(cy, cell, flag):
    """The bf16 gradients against float64 ones on the unrounded weights: the bf16 error, and
    not more (a gradient of the wrong product would be off by far more). ReLU's gradient is
    a step at 0, where the bf16 and float64 forwards may fall on either side: its float64
    backward runs on the bf16 forward's outputs."""
    case = Case(cell, flag, 40, 8, 24, 48, 20, dc_seq=cell in GATED, seed=3)
    expected = case.float64(own_forward=not flag or cell != "rnn")
    actual = case.backward(cy, case.pack(cy))
    _compare(actual, expected, REDUCED_BACKWARD_VS_FLOAT64, case.context())
    # and bf16 is not float32 passed off: some gradient differs from float64 by more than
    # float32 rounding would
    assert any(np.max(np.abs(actual[n] - expected[n])) > 1e-4 for n in expected), case.context()


# ---- what must hold exactly

@pytest.mark.parametrize("cell,flag,T,B,D,H,P,dc_seq",
                         list(_cases([(5, 3, 7, 17, 9), (4, 40, 33, 130, 40),
                                      (3, 12, 16, 520, 260), (9, 70, 5, 20, 6)])))
def test_results_do_not_depend_on_the_thread_count(cy, cell, flag, T, B, D, H, P, dc_seq):
    case = Case(cell, flag, T, B, D, H, P, dc_seq, seed=1)
    layer = case.pack(cy)
    one = case.backward(cy, layer, n_threads=1)
    for n_threads in (2, 3):
        assert_results_identical(case.backward(cy, layer, n_threads=n_threads), one,
                                 f"{case.context()} n_threads={n_threads}")


@pytest.mark.parametrize("n,k", [(1, 1), (5, 7), (16, 2), (33, 130), (70, 3), (64, 257)])
def test_transposed_packing_equals_packing_the_transpose(cy, bf16_level, n, k):
    """``PackedMatrix(w_t, transposed=True)`` (rp_pack_transposed) gives W's products bit for
    bit as ``PackedMatrix(w_t.T)``; with NaN, infinity and values that round up."""
    rng = np.random.default_rng(n * k)
    w_t = rng.standard_normal((k, n)).astype(np.float32)
    w_t.flat[::7] = np.float32(1.0039062)  # rounds up in bf16
    if w_t.size > 3:
        w_t.flat[1], w_t.flat[2] = np.nan, np.inf
    a = rng.standard_normal((9, k)).astype(np.float32)
    packed = cy.PackedMatrix("bf16", w_t, transposed=True)
    assert packed.shape == (n, k) and packed.level == bf16_level
    plain = cy.PackedMatrix("bf16", np.ascontiguousarray(w_t.T))
    assert packed.nbytes == plain.nbytes
    np.testing.assert_array_equal(packed.product(a), plain.product(a))
    with pytest.raises(ValueError, match="bf16"):
        cy.PackedMatrix("int8", w_t, transposed=True)


# ---- the layer and its errors

def test_layer_packed_for_the_backward(cy):
    case = Case("lstm_proj", False, 2, 3, 5, 8, 4)
    inference, training = case.pack(cy, backward=False), case.pack(cy)
    assert not inference.backward and training.backward
    assert training.nbytes > inference.nbytes
    with pytest.raises(AttributeError):
        training.backward = False


def test_int8_has_no_backward(cy):
    from fastrnn.exceptions import ArgumentError

    case = Case("lstm", False, 2, 3, 5, 8, 8)
    with pytest.raises(ArgumentError, match="bf16"):
        case.pack(cy, precision="int8")
    assert not case.pack(cy, backward=False, precision="int8").backward


@pytest.mark.parametrize("cell,flag", CELLS)
def test_backward_refuses_a_layer_packed_for_inference_or_another_cell(cy, cell, flag):
    from fastrnn.exceptions import ArgumentError

    case = Case(cell, flag, 3, 2, 4, 6, 3)
    other = Case("gru" if cell != "gru" else "lstm", True, 3, 2, 4, 6, 3)
    for layer, message in ((case.pack(cy, backward=False), "backward=True"),
                           (other.pack(cy), "backward kernels need a")):
        out = {name: np.full_like(a, 7.0) for name, a in case.gradients().items()}
        with pytest.raises(ArgumentError, match=message):
            case.backward(cy, layer, out=out)
        assert all((a == 7.0).all() for a in out.values()), "written before the error"


@pytest.mark.parametrize("cell,flag", CELLS)
def test_backward_rejects_arrays_that_do_not_fit(cy, cell, flag):
    """Each input and output of a wrong shape raises ShapeError, before anything is written."""
    from fastrnn.exceptions import ShapeError

    case = Case(cell, flag, 3, 2, 4, 6, 3, dc_seq=cell in GATED)
    layer = case.pack(cy)
    kernel = getattr(cy, f"{cell}_backward_reduced")
    arrays = [case.x] + case.inputs() + list(case.gradients().values())
    for i in range(len(arrays)):
        wrong = list(arrays)
        wrong[i] = np.zeros(arrays[i].shape[:-1] + (arrays[i].shape[-1] + 1,), np.float32)
        out = [np.full_like(a, 7.0) if j > len(case.inputs()) else a for j, a in enumerate(wrong)]
        with pytest.raises(ShapeError):
            kernel(out[0], layer, *out[1:], 1)
        assert all((a == 7.0).all() for a in out[len(case.inputs()) + 1:]), \
            f"{cell}: written before the error on argument {i}"


def test_packed_on_another_isa_level_is_stale(cy):
    from fastrnn.exceptions import StaleCacheError

    levels = cy.isa_levels()
    if len(levels) < 2:
        pytest.skip("this CPU offers one ISA level")
    case = Case("gru", True, 3, 2, 4, 6, 6)
    layer = case.pack(cy)
    before, why = cy.isa_level()
    cy.set_isa_level(levels[-1] if before != levels[-1] else levels[0], reason="set by the test suite")
    try:
        with pytest.raises(StaleCacheError):
            case.backward(cy, layer)
    finally:
        cy.set_isa_level(before, reason=why)


@pytest.mark.parametrize("cell,flag", CELLS)
@pytest.mark.parametrize("T,B,D", [(0, 3, 4), (3, 0, 4), (0, 0, 4), (3, 2, 0)])
def test_empty_shapes(cy, cell, flag, T, B, D):
    """No steps or no batch: the weight and bias gradients sum nothing (zeros), dh0 and dc0
    are dh_n and dc_n (no step to go through). No inputs: as the reference."""
    case = Case(cell, flag, T, B, D, 5, 3, dc_seq=cell in GATED)
    out = {name: np.full_like(a, 7.0) for name, a in case.gradients().items()}
    actual = case.backward(cy, case.pack(cy), out=out)
    if T and B:
        expected = case.backward(reference, reference.pack_reduced(
            cell, "bf16", **case.packing(), backward=True))
        _compare(actual, expected, REDUCED_BACKWARD_VS_REFERENCE, case.context())
        return
    for name, a in actual.items():
        if name == "dh0":
            np.testing.assert_array_equal(a, case.dh_n if T == 0 else a)
        elif name == "dc0":
            np.testing.assert_array_equal(a, case.dc_n if T == 0 else a)
        else:
            assert not a.size or (a == 0).all(), f"{case.context()}: {name} is not zero"
