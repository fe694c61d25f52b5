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
