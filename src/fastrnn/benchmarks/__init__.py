"""Speed of fastrnn against PyTorch, ONNX Runtime and Keras: what ``python -m fastrnn bench`` runs.

The pytest-benchmark suite in ``bench/`` imports its grid and runners from
here too, so both time exactly the same work. Nothing beyond fastrnn is needed:
PyTorch, ONNX Runtime and TensorFlow are imported only when a peer is built,
and a missing one is reported rather than fatal.

Modules, each importing only the ones listed before it:

``grid``
    The shapes, the cells (gates, states, PyTorch and ONNX names) and the problems timed.
``targets``
    The speed ratios and limits the tables mark ``ok`` or ``MISS``.
``timing``
    Alternated, paired rounds and the median per-round ratio.
``tables``
    The machine's description and the formatting of times and tables.
``backends``
    fastrnn's compiled backends and a runner per backend.
``peers``
    PyTorch's modules and ONNX Runtime's operators given the same weights.
``passes``
    The cells' table: forward and forward+backward of each cell.
``training``
    A training step against PyTorch's, and what variable lengths cost.
``fit``
    One ``fit`` epoch of the seeds' Keras model.
``startup``
    New-process costs: import time, first call, peak memory.
``cli``
    The options of ``python -m fastrnn bench`` and the report.
"""
