"""The ``sklearn`` table of ``python -m fastrnn bench --tables sklearn`` as a smoke test, at a tiny size.

Runs both rows (the estimator's fit and the same fit in fastrnn.keras) once each, so the table's code
paths run wherever the suite runs with scikit-learn installed; skipped without it. Speed is never
asserted.
"""

import argparse
import io

import pytest

from fastrnn.benchmarks import cli
from fastrnn.benchmarks.estimators import run_sklearn


def test_sklearn_table_prints():
    pytest.importorskip("sklearn")
    args = argparse.Namespace(sklearn_samples=16, repeat=1, time_per_shape=0.1, markdown=False)
    out = io.StringIO()
    run_sklearn(args, out)
    text = out.getvalue()
    assert "# fastrnn.sklearn.RNNClassifier.fit against the same network" in text, text
    lines = text.splitlines()
    for name in ("LSTM on features", "GRU on token ids"):
        (row,) = [line for line in lines if line.startswith(name)]
        assert "keras/estimator>=0.95" in row and row.split()[-2] == "%", row  # the share outside fit


def test_the_sklearn_table_has_a_name_and_a_sample_count():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert "sklearn" in parser.parse_args([]).tables
    args = parser.parse_args(["--tables", "sklearn", "--sklearn-samples", "64"])
    assert args.tables == ["sklearn"] and args.sklearn_samples == 64
