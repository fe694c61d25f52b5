"""The classifier benchmark table: both training steps compute the same loss, and the table prints."""

import io
from types import SimpleNamespace

import numpy as np
import pytest

from fastrnn.benchmarks.classifier import (classifier_problem, fastrnn_classifier_step, run_classifier,
                                           torch_classifier_step)
from tolerances import TORCH_PARITY

SMALL = dict(vocabulary=50, embedding=4, hidden=6, classes=3, batch=5, steps=7)


def test_both_steps_train_the_same_model():
    pytest.importorskip("torch")
    problem = classifier_problem(**SMALL)
    step, model = fastrnn_classifier_step(problem, 1)
    torch_step = torch_classifier_step(problem, 1, model.state_dict())
    for _ in range(3):  # the losses agree after Adam updates too
        np.testing.assert_allclose(step(), torch_step(), **TORCH_PARITY[np.dtype(np.float32)])


def test_table_prints_without_torch():
    out = io.StringIO()
    run_classifier(SimpleNamespace(threads=[1], time_per_shape=0.01, repeat=2, markdown=False), out,
                   with_torch=False, sizes=SMALL)
    text = out.getvalue()
    assert "classifier training step" in text and "Embedding(50,4)-LSTM(6)-Linear(3)" in text
