"""The report of ``python -m fastrnn bench`` as a smoke test: header, cells' table and streaming table.

Runs the command-line report on the smallest setting (one shape, one thread,
one timed round) with every peer installed here, so the tables' code paths,
the peers' output checks and the header are exercised wherever the suite runs
(``.ci/run`` runs it with ``--benchmark-disable``; nothing here is timed by
pytest-benchmark). Speed is never asserted.
"""

import argparse
import io

from fastrnn.benchmarks import cli
from fastrnn.benchmarks.backends import compiled_backends


def _report(*argv):
    argv += ("--backends", compiled_backends()[0])  # the fastest one alone: the smoke test stays short
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = io.StringIO()
    status = cli.run(parser.parse_args(list(argv)), out=out)
    return status, out.getvalue()


def test_header_cells_and_streaming_tables_print():
    status, text = _report("--cells", "rnn,gru", "--shapes", "S3", "--threads", "1", "--repeat", "1",
                           "--tables", "cells,streaming", "--no-startup")
    assert status == 0, text
    for line in ("# cpu: ", "# isa flags: ", "# fastrnn isa level: ", "# threads: 1",
                 "# sgemm peak, 1 thread"):
        assert line in text
    assert "best peer/fastrnn" in text  # the cells' table
    assert "# streaming: one step at B=1" in text
    assert "WRONG" not in text  # every peer installed here agreed with fastrnn before timing
    for cell in ("rnn", "gru"):
        assert any(line.startswith(f"{cell} ") and " 1024 " in line for line in text.splitlines())


def test_a_peer_that_is_not_installed_is_skipped_with_a_note(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name.split(".")[0] == "openvino":
            raise ImportError("openvino hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    status, text = _report("--cells", "rnn", "--shapes", "S3", "--threads", "1", "--repeat", "1",
                           "--tables", "cells", "--passes", "fwd", "--no-startup", "--no-jax")
    assert status == 0, text
    assert "# openvino not available, skipped (openvino hidden by the test)" in text
    assert "OV f32" not in text.split("# ratios")[1]
