"""The precision and accuracy tables of ``python -m fastrnn bench`` as smoke tests, and their parts.

The precision table runs on the smallest setting (one shape, one timed round)
with every peer installed here: fastrnn's float32, bf16 and int8 columns,
ONNX Runtime's ``DynamicQuantizeLSTM`` and OpenVINO at its default precision,
each checked against fastrnn's float32 output before timing. Speed is never
asserted; the targets' logic is checked on made-up CPUs.
"""

import argparse
import io
import types

import numpy as np
import pytest

from fastrnn.benchmarks import accuracy, cli, precision
from fastrnn.benchmarks.backends import compiled_backends
from fastrnn.benchmarks.grid import SHAPES, make_problem, make_step_problem
from fastrnn.benchmarks.peers import agreement
from fastrnn.benchmarks.precision import PrecisionRow, bench_precision_row
from fastrnn.benchmarks.quantized_peers import available_precision_peers
from fastrnn.benchmarks.reduced_forward import reference_forward
from fastrnn.benchmarks.tables import target_notes
from fastrnn.benchmarks.targets import precision_targets

ZEN4 = {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}
ZEN3 = {"avx2", "fma"}


def _report(*argv, backend=None):
    argv += ("--backends", backend or compiled_backends()[0], "--no-startup", "--no-jax", "--no-torch",
             "--repeat", "1")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = io.StringIO()
    status = cli.run(parser.parse_args(list(argv)), out=out)
    return status, out.getvalue()


def _table_lines(text, cell):
    return [line for line in text.split("# precision:")[1].splitlines() if line.startswith(f"{cell} ")]


def test_precision_table_prints_on_the_fastest_backend():
    status, text = _report("--cells", "lstm,gru", "--shapes", "S4", "--threads", "1", "--tables", "precision")
    assert status == 0, text
    assert "# precision: forward" in text and "fastrnn's reduced-precision kernels" in text
    assert "WRONG" not in text  # every column and peer agreed with fastrnn's float32 before timing
    lstm, = _table_lines(text, "lstm")
    gru, = _table_lines(text, "gru")
    if "# fastrnn int8 not timed ('-')" in text:  # the extension was built without int8 kernels
        assert "has no bf16/int8 kernels" in text
    else:
        assert "bf16 yes, int8 yes" in lstm and "bf16 yes, int8 yes" in gru
    assert "f32/int8" in text and "OV default/bf16" in text


def test_precision_row_on_the_reference_checks_and_times_every_column(monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    # the reference kernels are slow: a small problem (50 steps, B = 1, H = 16) in the S4 row
    monkeypatch.setattr(precision, "make_problem", lambda name, cell: make_step_problem(16, cell))
    peers = available_precision_peers(with_openvino=False)
    args = types.SimpleNamespace(time_per_shape=0.1, repeat=1)
    row = bench_precision_row("lstm", SHAPES["S4"], 2, "python", peers, args, ZEN4)
    assert set(row.medians) == {"f32", "bf16", "int8", "ORT int8"}
    assert row.same_bits["bf16"] and row.same_bits["int8"]  # the same bits at 1, 2 and 3 threads
    assert all(ok for ok, _ in row.diffs.values()), row.diffs
    assert row.diffs["bf16"][1] > 1e-5 and row.diffs["int8"][1] > 1e-4  # really reduced
    assert all(row.ratios[name] > 0 for name in ("f32/int8", "ORT int8/int8", "f32/bf16"))
    assert row.ratios["OV default/bf16"] is None
    assert row.targets["ORT int8/int8"] == 1.1  # LSTM rows carry the target against ONNX Runtime's int8


def test_row_notes_give_each_target_its_verdict():
    row = PrecisionRow("lstm", "S5", 1)
    row.targets = precision_targets("lstm", "S5", 1, ZEN3)
    row.ratios = {"f32/int8": 2.5, "ORT int8/int8": 1.0, "OV default/bf16": None, "f32/bf16": None}
    assert target_notes(row.ratios, row.targets) == [
        "f32/int8>=2 ok", "ORT int8/int8>=1.1 MISS", "OV default/bf16: not available on this CPU",
        "f32/bf16: not available on this CPU"]
    row.targets = precision_targets("lstm", "S5", 1, ZEN4)
    notes = target_notes(row.ratios, row.targets)
    assert notes[0] == "f32/int8>=3 MISS" and notes[2] == "OV default/bf16>=1 not timed"


def test_onnxruntime_int8_lstm_agrees_with_float32_and_really_quantizes():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from fastrnn.benchmarks.quantized_peers import onnx_int8_lstm_model, onnxruntime_int8_runner

    p = make_problem("S4", "lstm")
    y = np.asarray(onnxruntime_int8_runner(p, 1)()[0])[:, 0]
    expected = reference_forward("lstm", "float32", p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh,
                                 *p.initial_states)
    ok, diff = agreement(y, expected, "int8")
    assert ok, diff
    assert diff > 1e-3  # int8, not float32 in disguise
    with pytest.raises(ValueError, match="runs an LSTM"):
        onnx_int8_lstm_model(make_problem("S4", "gru"))


def test_precision_targets_follow_the_cpu():
    assert precision_targets("lstm", "S2", 1, ZEN4) == {
        "f32/int8": 3.0, "ORT int8/int8": 1.1, "OV default/bf16": 1.0, "f32/bf16": 1.8}
    assert precision_targets("gru", "S4", 1, ZEN4) == {"f32/int8": 2.0, "OV default/bf16": 1.0,
                                                       "f32/bf16": 1.8}
    assert precision_targets("rnn", "S5", 2, ZEN4) == {"OV default/bf16": 1.0, "f32/bf16": 1.8}
    zen3 = precision_targets("lstm", "S5", 1, ZEN3)
    assert zen3["f32/int8"] == 2.0  # AVX2 only: 2x at every shape
    assert zen3["f32/bf16"] == zen3["OV default/bf16"] == "not available on this CPU"
    assert precision_targets("lstm", "S2", 1, {"sse2"})["f32/int8"] == "not available on this CPU"
    assert precision_targets("lstm", "S1", 1, ZEN4) == {}  # no target off S2/S4/S5


def test_accuracy_table_prints_with_its_bounds(monkeypatch):
    monkeypatch.setattr(accuracy, "LENGTHS", (5, 20))
    monkeypatch.setattr(accuracy, "HIDDEN_SIZES", (16,))
    status, text = _report("--cells", "rnn,lstm", "--tables", "accuracy", "--no-onnx", "--no-openvino")
    assert status == 0, text
    table = text.split("# accuracy:")[1]
    assert "max T=5" in table and "mean T=20" in table
    assert sum(line.startswith(("bf16 ", "int8 ")) for line in table.splitlines()) == 4
    assert "# bf16: largest |error|" in table and "# int8: largest |error|" in table
    assert "MISS" not in table
