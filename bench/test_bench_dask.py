"""The Dask tables of ``python -m fastrnn bench --tables dask`` as a smoke test, on a tiny shape.

Starts LocalClusters of 1 and 2 worker processes, so the tables' code paths run wherever the
suite runs with the dask extra installed; skipped without it. Speed is never asserted.
"""

import argparse
import io

import pytest

from fastrnn.benchmarks import cli
from fastrnn.benchmarks.grid import Shape
from fastrnn.benchmarks.on_dask import run_dask


def test_dask_tables_print():
    pytest.importorskip("distributed")
    tiny = Shape("tiny", 4, 8, 3, 5, "smoke test")
    args = argparse.Namespace(dask_shapes=[tiny], dask_sequences=32, dask_global_batch=8, dask_steps=2,
                              repeat=1, markdown=False)
    out = io.StringIO()
    run_dask(args, out)
    text = out.getvalue()
    assert "# fastrnn.dask.predict, 1-layer LSTM tiny" in text, text
    assert "# fastrnn.dask.fit, 1-layer LSTM tiny" in text, text
    lines = text.splitlines()
    assert sum(line.startswith("LocalCluster") for line in lines) == 2, text
    assert any(line.startswith("2 x 1 thr") for line in lines), text
    # the targets are judged on the 2-worker rows
    assert sum("vs one process>=0.9" in line for line in lines) == 1, text
    assert sum("vs 1 worker>=1.6" in line for line in lines) == 1, text


def test_the_dask_table_is_asked_for_by_name_only():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert "dask" not in parser.parse_args([]).tables
    assert parser.parse_args(["--tables", "dask"]).tables == ["dask"]
