"""Speed of fastrnn against PyTorch, ONNX Runtime, OpenVINO, JAX and Keras: what ``python -m fastrnn bench`` runs.

The pytest-benchmark suite in ``bench/`` imports its grid and runners from
here too, so both time exactly the same work. Nothing beyond fastrnn is needed:
PyTorch, ONNX Runtime, OpenVINO, JAX and TensorFlow are imported only when a peer is built,
and a missing one is reported rather than fatal.

Modules, each importing only the ones listed before it:

``grid``
    The shapes, the cells (gates, states, PyTorch and ONNX names) and the problems timed.
``targets``
    The speed ratios and limits the tables mark ``ok`` or ``MISS``.
``timing``
    Alternated, paired rounds and the median per-round ratio.
``machine``
    The report's header: CPU model and ISA flags, fastrnn's ISA level, the sgemm peak.
``tables``
    The formatting of times and tables.
``backends``
    fastrnn's compiled backends and a runner per backend.
``jax_peer``
    JAX's cells written out (``lax.scan`` under ``jit``) and its thread pool.
``peers``
    PyTorch's modules, ONNX Runtime's and OpenVINO's operators and JAX, given the same
    weights, and the check of their outputs against fastrnn's.
``passes``
    The cells' table: forward and forward+backward of each cell; the fastest peer's
    median ratio; GFLOP/s of the large shapes against the sgemm peak.
``streaming``
    The streaming table: one step at batch 1 against torch's cells and ONNX Runtime on T = 1.
``training``
    A training step against PyTorch's, and what variable lengths cost.
``fit``
    One ``fit`` epoch of the seeds' Keras model.
``startup``
    New-process costs: import time, first call, peak memory.
``cli``
    The options of ``python -m fastrnn bench`` and the report.
"""
