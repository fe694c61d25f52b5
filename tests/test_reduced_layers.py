"""The Cython layer kernels in reduced precision (``_cy.pack_reduced``, ``*_forward_reduced``,
``ReducedLayer.step``) against the NumPy reference run on reduced weights.

The reference is :mod:`fastrnn._python` (``rnn``, ``lstm``, ``lstm_proj``, ``gru``) with
``reduce_matrix(w, precision)`` weights: it computes every product through
:func:`fastrnn._python.reduced.product`, which defines each rounding. The int8 products
are exact, but the compiled gate math (a float32 tanh within a few ulp) differs from
NumPy's, and a difference of one ulp in ``h`` can move the int8 quantization of the next
product by one step, so the compiled forward is compared with a tolerance measured over
the shapes below; what must hold exactly is checked bit for bit: any ``n_threads``, any
split of the batch, and the step against the forward on one step.
"""

import numpy as np
import pytest

from conftest import require_backend
from fastrnn._python import gru, lstm, lstm_proj, rnn
from fastrnn._python.reduced import INT8_MAX_K, reduce_matrix
from helpers import assert_close, assert_results_identical

from tolerances import REDUCED_LONG_VS_REFERENCE, REDUCED_VS_FLOAT64

PRECISIONS = ("int8", "bf16")
#: (cell, flag): the RNN with tanh and relu, the LSTM, the LSTM with projection, the GRU
#: with reset_after True and False.
CELLS = (("rnn", False), ("rnn", True), ("lstm", False), ("lstm_proj", False), ("gru", True),
         ("gru", False))
GATES = {"rnn": 1, "lstm": 4, "lstm_proj": 4, "gru": 3}


@pytest.fixture(scope="module")
def cy():
    """The extension (skipped, or failed if required, when it does not load)."""
    require_backend("cython")
    from fastrnn import _cy

    return _cy


class Layer:
    """Random float32 weights of one layer and what each kernel takes of them."""

    def __init__(self, cell, flag, D, H, P=None, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        G = GATES[cell]
        self.cell, self.flag, self.D, self.H = cell, flag, D, H
        self.P = P if cell == "lstm_proj" else H
        bound = 1 / np.sqrt(max(H, 1))  # PyTorch's initialisation

        def uniform(*shape):
            return rng.uniform(-bound, bound, shape).astype(np.float32)

        self.w_ih = uniform(G * H, D)
        self.w_hh = uniform(G * H, self.P)
        self.bias = uniform(G * H)
        self.w_hr = uniform(self.P, H) if cell == "lstm_proj" else None
        self.b_hn = uniform(H) if cell == "gru" else None

    def pack(self, cy, precision):
        return cy.pack_reduced(self.cell, precision, self.w_ih, self.w_hh, self.bias,
                               w_hr=self.w_hr, b_hn=self.b_hn, flag=self.flag)

    def state(self, B, seed=1):
        """``(h0, c0)`` (``c0`` None without a cell state), float32."""
        rng = np.random.default_rng(seed)
        h0 = (0.5 * rng.standard_normal((B, self.P))).astype(np.float32)
        c0 = (0.5 * rng.standard_normal((B, self.H))).astype(np.float32)
        return h0, (c0 if self.cell in ("lstm", "lstm_proj") else None)

    def outputs(self, T, B, gate_steps=None, keep=True, dtype=np.float32):
        """Zeroed outputs and workspaces of a forward, by name, in the kernels' order."""
        H, P = self.H, self.P
        steps = T if keep else 0
        out = {"y": np.zeros((T, B, P), dtype), "h_n": np.zeros((B, P), dtype)}
        if self.cell in ("lstm", "lstm_proj"):
            out["c_n"] = np.zeros((B, H), dtype)
        if self.cell != "rnn":
            out["gates"] = np.zeros((T if gate_steps is None else gate_steps, B, 4 * H), dtype)
        if self.cell in ("lstm", "lstm_proj"):
            out["c_all"] = np.zeros((steps, B, H), dtype)
        if self.cell == "lstm_proj":
            out["m_all"] = np.zeros((steps, B, H), dtype)
        return out

    def forward(self, cy, packed, x, h0, c0, n_threads=1, **kwargs):
        """The compiled forward; returns its outputs by name."""
        out = self.outputs(x.shape[0], x.shape[1], **kwargs)
        kernel = getattr(cy, f"{self.cell}_forward_reduced")
        head = (x, packed, h0) if c0 is None else (x, packed, h0, c0)
        kernel(*head, *out.values(), n_threads)
        return out

    def reference(self, x, h0, c0, precision=None, dtype=np.float32):
        """The reference forward: on reduced weights, or in ``dtype`` on the weights as they are."""
        def weight(w):
            return w.astype(dtype) if precision is None else reduce_matrix(w, precision)

        x, h0 = x.astype(dtype), h0.astype(dtype)
        out = self.outputs(x.shape[0], x.shape[1], dtype=dtype)
        bias = self.bias.astype(dtype)
        if self.cell == "rnn":
            rnn.rnn_forward(x, weight(self.w_ih), weight(self.w_hh), bias, h0, self.flag,
                            *out.values(), 1)
        elif self.cell == "lstm":
            lstm.lstm_forward(x, weight(self.w_ih), weight(self.w_hh), bias, h0, c0.astype(dtype),
                              *out.values(), 1)
        elif self.cell == "lstm_proj":
            lstm_proj.lstm_proj_forward(x, weight(self.w_ih), weight(self.w_hh), weight(self.w_hr),
                                        bias, h0, c0.astype(dtype), *out.values(), 1)
        else:
            gru.gru_forward(x, weight(self.w_ih), weight(self.w_hh), bias, self.b_hn.astype(dtype),
                            h0, self.flag, *out.values(), 1)
        return out


def inputs(T, B, D, seed=2):
    return np.random.default_rng(seed).standard_normal((T, B, D)).astype(np.float32)


def context(cell, flag, precision, T, B, D, H):
    return f"{cell}(flag={flag}) {precision} T={T} B={B} D={D} H={H}"


# ---- against the reference

SHAPES = [  # (T, B, D, H)
    (1, 1, 1, 1), (5, 3, 3, 17), (12, 7, 17, 3), (30, 40, 64, 64), (300, 2, 130, 17),
    (20, 9, 1, 130), (100, 16, 130, 64),
    (6, 8, 16, 512),  # the weights of the steps packed in several blocks of rows
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
@pytest.mark.parametrize("T,B,D,H", SHAPES)
def test_forward_against_the_reference_on_reduced_weights(cy, cell, flag, precision, T, B, D, H):
    layer = Layer(cell, flag, D, H, P=max(H // 2, 1), seed=T + H)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    actual = layer.forward(cy, layer.pack(cy, precision), x, h0, c0)
    expected = layer.reference(x, h0, c0, precision)
    for name in expected:
        if name != "gates":  # gates are checked where the state cannot flip a quantization
            assert_close(actual[name], expected[name], REDUCED_LONG_VS_REFERENCE[precision],
                         context(cell, flag, precision, T, B, D, H), name)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
def test_one_step_equals_the_reference(cy, cell, flag, precision):
    """One step from a given state: the products see the same operands as the reference's,
    so only the float32 gate math differs (a few ulp): the gates too must agree closely."""
    T, B, D, H = 1, 6, 17, 33
    layer = Layer(cell, flag, D, H, P=11)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    actual = layer.forward(cy, layer.pack(cy, precision), x, h0, c0)
    expected = layer.reference(x, h0, c0, precision)
    # GRU reset_after=False rounds r * h, whose ulp differences can flip a bf16 rounding
    loose = cell == "gru" and not flag and precision == "bf16"
    tolerance = REDUCED_LONG_VS_REFERENCE[precision] if loose else dict(rtol=1e-5, atol=1e-5)
    for name in expected:
        assert_close(actual[name], expected[name], tolerance,
                     context(cell, flag, precision, T, B, D, H), name)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
def test_error_against_float64_is_bounded(cy, cell, flag, precision):
    T, B, D, H = 200, 8, 64, 64
    layer = Layer(cell, flag, D, H, P=32, seed=5)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    actual = layer.forward(cy, layer.pack(cy, precision), x, h0, c0)
    exact = layer.reference(x, h0, c0, None, np.float64)
    for name in ("y", "h_n"):
        assert_close(actual[name], exact[name], dict(rtol=0.0, atol=REDUCED_VS_FLOAT64[precision]["max"]),
                     context(cell, flag, precision, T, B, D, H), name)


# ---- what must hold bit for bit

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
@pytest.mark.parametrize("T,B,D,H", [
    (40, 40, 24, 64),   # several batch chunks and projection pieces
    (6, 8, 16, None),   # one batch chunk: threads share the blocks of each product's columns
])
def test_results_do_not_depend_on_the_thread_count(cy, cell, flag, precision, T, B, D, H):
    if H is None:  # B * H * H * gates of at least _partition.MIN_STEP_SPLIT_WORK
        H = 1024 if cell == "rnn" else 600
    layer = Layer(cell, flag, D, H, P=24)
    packed = layer.pack(cy, precision)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    one = layer.forward(cy, packed, x, h0, c0, n_threads=1)
    for n_threads in (2, 3):
        assert_results_identical(layer.forward(cy, packed, x, h0, c0, n_threads=n_threads), one,
                                 f"{cell}(flag={flag}) {precision} n_threads={n_threads}")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
def test_batch_rows_do_not_depend_on_their_neighbours(cy, cell, flag, precision):
    """Rows run in other chunks (a smaller batch, one row alone) give the same bits."""
    T, B, D, H = 25, 40, 9, 64
    layer = Layer(cell, flag, D, H, P=20)
    packed = layer.pack(cy, precision)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    whole = layer.forward(cy, packed, x, h0, c0, n_threads=2)
    for rows in (slice(0, 17), slice(17, 18), slice(18, 40)):
        part = layer.forward(cy, packed, np.ascontiguousarray(x[:, rows]), h0[rows],
                             None if c0 is None else c0[rows], n_threads=2)
        for name, value in part.items():
            expected = whole[name][rows] if value.ndim == 2 else whole[name][:, rows]
            assert_results_identical({name: value}, {name: expected},
                                     f"{cell}(flag={flag}) {precision} rows {rows}")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
def test_inference_workspace_gives_the_same_results(cy, cell, flag, precision):
    """One block of gates and no c_all/m_all (inference) against the whole workspace."""
    T, B, D, H = 110, 40, 3, 130  # blocks of 100 steps
    layer = Layer(cell, flag, D, H, P=16)
    packed = layer.pack(cy, precision)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    whole = layer.forward(cy, packed, x, h0, c0)
    block = None
    if cell != "rnn":
        from fastrnn._partition import projection_workspace_steps

        block = projection_workspace_steps(T, B, D, 4 * H, False)
        assert block < T, "the shape must need more than one block"
    small = layer.forward(cy, packed, x, h0, c0, gate_steps=block, keep=False)
    for name in ("y", "h_n", "c_n"):
        if name in small:
            assert_results_identical({name: small[name]}, {name: whole[name]},
                                     f"{cell}(flag={flag}) {precision} one block of gates")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cell,flag", CELLS)
def test_step_equals_the_forward_on_one_step(cy, cell, flag, precision):
    T, B, D, H = 1, 40, 17, 64  # several batch chunks in the forward, one in the step
    layer = Layer(cell, flag, D, H, P=24)
    packed = layer.pack(cy, precision)
    x = inputs(T, B, D)
    h0, c0 = layer.state(B)
    forward = layer.forward(cy, packed, x, h0, c0, n_threads=2)
    h_out = np.full_like(h0, np.nan)
    c_out = None if c0 is None else np.full_like(c0, np.nan)
    packed.step(x[0], h0, c0, h_out, c_out)
    assert_results_identical({"h": h_out}, {"h": forward["h_n"]}, f"{cell} {precision} step")
    if c0 is not None:
        assert_results_identical({"c": c_out}, {"c": forward["c_n"]}, f"{cell} {precision} step")
        # the cell state updated in place
        c_in_place = c0.copy()
        packed.step(x[0], h0, c_in_place, h_out, c_in_place)
        assert_results_identical({"c": c_in_place}, {"c": forward["c_n"]}, f"{cell} in place")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_steps_run_a_sequence_like_the_forward(cy, precision):
    """A step's state fed to the next: the forward, step by step, bit for bit (large B: the
    step's workspace leaves the stack)."""
    T, B, D, H = 6, 33, 20, 130
    layer = Layer("lstm", False, D, H)
    packed = layer.pack(cy, precision)
    x = inputs(T, B, D)
    h, c = layer.state(B)
    forward = layer.forward(cy, packed, x, h, c)
    for t in range(T):
        h_next = np.empty_like(h)
        packed.step(x[t], h, c, h_next, c)
        h = h_next
        assert_results_identical({"h": h}, {"h": forward["y"][t]}, f"lstm {precision} step {t}")


# ---- the layer object and the errors users can cause

def test_layer_properties(cy):
    layer = Layer("lstm_proj", False, 5, 7, P=3)
    packed = layer.pack(cy, "int8")
    assert (packed.cell, packed.precision, packed.D, packed.H, packed.P) == ("lstm_proj", "int8", 5, 7, 3)
    assert packed.level == cy.reduced_levels()["int8"]
    assert cy.pack_reduced("rnn", "bf16", np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32),
                           np.zeros(2, np.float32)).level == cy.reduced_levels()["bf16"]
    # a byte per int8 weight and two per bf16 weight, plus scales and padding
    big = Layer("lstm", False, 128, 128)
    floats = big.w_ih.nbytes + big.w_hh.nbytes
    int8, bf16 = big.pack(cy, "int8").nbytes, big.pack(cy, "bf16").nbytes
    assert floats / 4 <= int8 < floats / 3, int8
    assert floats / 2 <= bf16 < floats * 0.6, bf16


@pytest.mark.parametrize("change,error", [
    (dict(precision="int4"), ValueError),
    (dict(cell="lstm2"), ValueError),
    (dict(w_ih=np.zeros((28, 5), np.float64)), TypeError),
    (dict(bias=[0.0] * 28), TypeError),
    (dict(w_ih=np.zeros((27, 5), np.float32)), ValueError),
    (dict(w_hh=np.zeros((28, 6), np.float32)), ValueError),
    (dict(bias=np.zeros(27, np.float32)), ValueError),
    (dict(bias=np.zeros((28, 1), np.float32)), ValueError),
    (dict(b_hn=np.zeros(7, np.float32)), ValueError),
    (dict(w_hr=np.zeros((3, 7), np.float32)), ValueError),
])
def test_pack_reduced_rejects_bad_arguments(cy, change, error):
    arguments = dict(cell="lstm", precision="int8", w_ih=np.zeros((28, 5), np.float32),
                     w_hh=np.zeros((28, 7), np.float32), bias=np.zeros(28, np.float32))
    arguments.update(change)
    cell, precision = arguments.pop("cell"), arguments.pop("precision")
    with pytest.raises(error):
        cy.pack_reduced(cell, precision, **arguments)


def test_pack_reduced_wants_the_gru_bias_and_the_projection(cy):
    with pytest.raises(ValueError, match="b_hn"):
        cy.pack_reduced("gru", "int8", np.zeros((6, 1), np.float32), np.zeros((6, 2), np.float32),
                        np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="w_hr"):
        cy.pack_reduced("lstm_proj", "bf16", np.zeros((8, 1), np.float32),
                        np.zeros((8, 2), np.float32), np.zeros(8, np.float32))


def test_int8_reductions_longer_than_int32_holds_are_refused(cy):
    D = INT8_MAX_K + 1
    w_ih = np.zeros((1, D), np.float32)
    with pytest.raises(ValueError, match="int8"):
        cy.pack_reduced("rnn", "int8", w_ih, np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
    cy.pack_reduced("rnn", "bf16", w_ih, np.zeros((1, 1), np.float32), np.zeros(1, np.float32))


def test_forward_rejects_arrays_that_do_not_fit(cy):
    layer = Layer("lstm", False, 5, 7)
    packed = layer.pack(cy, "int8")
    x = inputs(10, 3, 5)
    h0, c0 = layer.state(3)
    out = layer.outputs(10, 3)
    with pytest.raises(ValueError):  # another cell's kernel
        cy.gru_forward_reduced(x, packed, h0, out["y"], out["h_n"], out["gates"], 1)
    with pytest.raises(ValueError):  # another input size
        cy.lstm_forward_reduced(inputs(10, 3, 4), packed, h0, c0, *out.values(), 1)
    for name in out:
        bad = dict(out)
        bad[name] = np.zeros(out[name].shape[:-1] + (out[name].shape[-1] + 1,), np.float32)
        with pytest.raises(ValueError, match=name):
            cy.lstm_forward_reduced(x, packed, h0, c0, *bad.values(), 1)
    with pytest.raises(ValueError, match="gates"):  # fewer gate steps than a block
        bad = dict(out, gates=np.zeros((1, 3, 28), np.float32))
        cy.lstm_forward_reduced(x, packed, h0, c0, *bad.values(), 1)
    with pytest.raises((ValueError, TypeError)):  # float64
        cy.lstm_forward_reduced(x.astype(np.float64), packed, h0, c0, *out.values(), 1)


def test_step_rejects_arrays_that_do_not_fit(cy):
    layer = Layer("gru", True, 5, 7)
    packed = layer.pack(cy, "bf16")
    x = inputs(1, 3, 5)[0]
    h, _ = layer.state(3)
    h_out = np.zeros_like(h)
    with pytest.raises(ValueError):
        packed.step(x[:, :4].copy(), h, None, h_out, None)
    with pytest.raises(ValueError):
        packed.step(x, h[:2], None, h_out, None)
    with pytest.raises(ValueError):
        packed.step(x, h, None, h, None)            # output aliases the state
    with pytest.raises(ValueError):
        packed.step(x.astype(np.float64), h, None, h_out, None)
    assert not h_out.any(), "nothing written before the checks passed"


def test_packed_on_another_isa_level_is_stale(cy):
    from fastrnn.exceptions import StaleCacheError

    levels = cy.isa_levels()
    if len(levels) < 2:
        pytest.skip("this CPU offers one ISA level")
    layer = Layer("rnn", False, 3, 4)
    packed = layer.pack(cy, "int8")
    x = inputs(2, 1, 3)
    h0, _ = layer.state(1)
    out = layer.outputs(2, 1)
    before, why = cy.isa_level()
    cy.set_isa_level(levels[-1] if before != levels[-1] else levels[0], reason="set by the test suite")
    try:
        with pytest.raises(StaleCacheError):
            cy.rnn_forward_reduced(x, packed, h0, *out.values(), 1)
        with pytest.raises(StaleCacheError):
            packed.step(x[0], h0, None, np.zeros_like(h0), None)
    finally:
        cy.set_isa_level(before, reason=why)


@pytest.mark.parametrize("cell,flag", CELLS)
def test_empty_shapes(cy, cell, flag):
    """No steps, no inputs: the state passes through, or the bias alone drives the gates."""
    for T, B, D in ((0, 3, 4), (3, 0, 4), (3, 2, 0)):
        layer = Layer(cell, flag, D, 5, P=3)
        for precision in PRECISIONS:
            x = inputs(T, B, D)
            h0, c0 = layer.state(B)
            actual = layer.forward(cy, layer.pack(cy, precision), x, h0, c0)
            expected = layer.reference(x, h0, c0, precision)
            for name in ("y", "h_n", "c_n"):
                if name in expected:
                    assert_close(actual[name], expected[name], dict(rtol=1e-5, atol=1e-5),
                                 f"{cell} {precision} T={T} B={B} D={D}", name)
