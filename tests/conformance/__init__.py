"""The conformance suite: every test written once, run for every cell, backend and dtype.

* :mod:`conformance.cells` is the per-cell adapter table (how to call a cell's
  forward and backward pass, its parameters and states) and the only place
  that knows how the cells differ;
* :mod:`conformance.cases` draws the deterministic problems and runs them;
* ``test_*.py`` are the checks: the float64 reference against finite
  differences, every backend against the reference, invariants, bad input
  and agreement with PyTorch.

Tests that hold for one cell only (hand-worked values, GRU variants, the
LSTM's per-step cell gradient, ONNX) live in ``tests/test_<cell>_cell.py``.
"""
