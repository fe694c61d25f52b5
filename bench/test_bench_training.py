"""Benchmarks of whole training workloads (see :mod:`fastrnn.benchmarks.training` and :mod:`fastrnn.benchmarks.fit`).

Groups ``train-{cell}-{shape}-{threads}t`` time one training step (forward, MSE,
backward, Adam) of a 2-layer bidirectional LSTM or GRU in fastrnn.nn and in
PyTorch; groups ``fit-{threads}t`` time one fit epoch of the seeds' Keras model
in fastrnn.keras, Keras on TensorFlow and PyTorch.
"""

import pytest

from fastrnn.benchmarks.fit import fastrnn_fit_epoch, keras_fit_epoch, torch_fit_epoch
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
