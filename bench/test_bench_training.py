"""Benchmarks of whole training workloads (see :mod:`fastrnn.benchmarks.training` and :mod:`fastrnn.benchmarks.fit`).

Groups ``train-{cell}-{shape}-{threads}t`` time one training step (forward, MSE,
backward, Adam) of a 2-layer bidirectional LSTM or GRU in fastrnn.nn and in
PyTorch; groups ``fit-{threads}t`` time one fit epoch of the seeds' Keras model
in fastrnn.keras, Keras on TensorFlow and PyTorch. The bf16 training table
(:mod:`fastrnn.benchmarks.bf16_training`) runs as a smoke test on a tiny shape:
its rows, columns and checks, never its speed.
"""

import argparse
import io

import pytest

from fastrnn.benchmarks import cli
from fastrnn.benchmarks.bf16_training import Bf16TrainingRow
from fastrnn.benchmarks.fit import fastrnn_fit_epoch, keras_fit_epoch, torch_fit_epoch
from fastrnn.benchmarks.grid import SHAPES, Shape
from fastrnn.benchmarks.tables import target_notes
from fastrnn.benchmarks.targets import bf16_training_targets
from fastrnn.benchmarks.training import (TRAINING_MODELS, TRAINING_SHAPES, fastrnn_training_step,
                                         torch_training_step, training_problem)

THREADS = (1, 2)


def _time(benchmark, function, group):
    benchmark.group = group
    if not getattr(benchmark, "disabled", False):
        function()  # compile and warm up outside the timing
    benchmark(function)


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape", TRAINING_SHAPES)
@pytest.mark.parametrize("cell", TRAINING_MODELS)
@pytest.mark.parametrize("implementation", ["fastrnn", "torch"])
def test_training_step(benchmark, implementation, cell, shape, n_threads):
    problem = training_problem(cell, shape)
    step, module = fastrnn_training_step(problem, n_threads)
    if implementation == "torch":
        pytest.importorskip("torch")
        step = torch_training_step(problem, n_threads, module.state_dict())
    _time(benchmark, step, f"train-{cell}-{shape}-{n_threads}t")


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("implementation", ["fastrnn", "keras", "torch"])
def test_fit_epoch(benchmark, implementation, n_threads):
    if implementation == "keras":
        pytest.importorskip("tensorflow")
    if implementation == "torch":
        pytest.importorskip("torch")
    build = {"fastrnn": fastrnn_fit_epoch, "keras": keras_fit_epoch, "torch": torch_fit_epoch}
    _time(benchmark, build[implementation](n_threads), f"fit-{n_threads}t")


def _bf16_training_report(monkeypatch, *argv):
    # a tiny shape on the NumPy reference: the table's code paths in about a second
    monkeypatch.setitem(SHAPES, "T1", Shape("T1", 6, 3, 5, 8, "tiny, for the smoke test"))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = io.StringIO()
    status = cli.run(parser.parse_args(["--tables", "bf16-training", "--shapes", "T1", "--backends", "python",
                                        "--repeat", "1", "--no-startup", "--no-jax", "--no-onnx",
                                        "--no-openvino", *argv]), out=out)
    return status, out.getvalue()


def test_bf16_training_table_has_a_timed_row_per_cell_and_thread_count(monkeypatch):
    status, text = _bf16_training_report(monkeypatch, "--cells", "rnn,lstm,gru", "--threads", "1,2")
    assert status == 0, text
    table = text.split("# bf16 training step:")[1]
    assert "# cpu has avx512_bf16 " in table and "bf16 backward kernels: lstm python, gru python" in table
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("model "))
    for column in ("fastrnn f32", "fastrnn bf16", "f32/bf16", "autocast/bf16", "target"):
        assert column in header
    rows = [line.split() for line in lines if line.startswith("1-layer ")]
    assert [(row[1], row[2], row[4]) for row in rows] == [  # the RNN has no row: LSTM and GRU only
        ("LSTM", "T1", "1"), ("LSTM", "T1", "2"), ("GRU", "T1", "1"), ("GRU", "T1", "2")]
    for row in rows:
        assert "WRONG" not in row and row[6] != "-"  # fastrnn f32 and bf16 agreed and were timed
        assert "f32/bf16" in " ".join(row)  # a target verdict, ok/MISS or not available
    assert "# checked before timing: fastrnn bf16: first-step loss within" in table
    assert "not timed" not in table


def test_bf16_training_table_times_torch_autocast_next_to_fastrnn(monkeypatch):
    pytest.importorskip("torch")
    status, text = _bf16_training_report(monkeypatch, "--cells", "lstm", "--threads", "1")
    assert status == 0, text
    table = text.split("# bf16 training step:")[1]
    assert "torch f32" in table and "torch autocast" in table
    row, = [line.split() for line in table.splitlines() if line.startswith("1-layer ")]
    assert "-" not in row[5:11] and "WRONG" not in row  # four columns timed, three ratios
    assert "# torch autocast: the module's output dtype: LSTM " in table


def test_bf16_training_targets_follow_the_cpu():
    row = Bf16TrainingRow("gru", "S2", 1)
    row.targets = bf16_training_targets({"avx2", "avx512f", "avx512_bf16"})
    row.ratios = {"f32/bf16": 1.6, "autocast/bf16": 0.9, "torch/f32": 1.0}
    assert target_notes(row.ratios, row.targets) == ["f32/bf16>=1.5 ok", "autocast/bf16>=1 MISS"]
    row.targets = bf16_training_targets({"avx2", "fma"})
    assert target_notes(row.ratios, row.targets) == ["f32/bf16: not available on this CPU",
                                                     "autocast/bf16: not available on this CPU"]


def test_seq2seq_table_prints_its_rows_and_columns():
    # a smoke test on tiny sizes: the table's code paths and the Keras model's weight copy; never timed
    import argparse
    import io

    from fastrnn.benchmarks import seq2seq

    tiny = dict(units=4, embedding=3, source_length=30, batch_size=8, samples=16)
    args = argparse.Namespace(threads=[1], time_per_shape=0.01, repeat=1, markdown=False)
    out = io.StringIO()
    seq2seq.run_seq2seq(args, out, with_keras=False, config=tiny)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("# one fit epoch of the translate demo's encoder-decoder")
    assert lines[2].split() == ["model", "thr", "fastrnn", "n"]
    assert lines[4].split()[:2] == ["seq2seq-attention-lstm", "1"] and lines[4].split()[-1] == "1"
    pytest.importorskip("tensorflow")
    out = io.StringIO()
    seq2seq.run_seq2seq(args, out, with_keras=True, config=tiny)
    header, row = out.getvalue().splitlines()[2], out.getvalue().splitlines()[4]
    assert header.split() == ["model", "thr", "fastrnn", "keras", "keras/fastrnn", "max|dp|", "n"]
    assert len(row.split()) == 7
    if row.split()[3] != "-":  # TensorFlow ran at one thread: same weights, same initial predictions
        assert float(row.split()[5]) < 1e-5
