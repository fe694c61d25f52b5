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
``quantized_peers``
    The reduced-precision peers: ONNX Runtime's int8 LSTM (``DynamicQuantizeLSTM``) and
    OpenVINO at its default precision.
``reduced_forward``
    fastrnn's forward in bf16 or int8: through ``precision=``, or on the NumPy reference kernels.
``passes``
    The cells' table: forward and forward+backward of each cell; the fastest peer's
    median ratio; GFLOP/s of the large shapes against the sgemm peak.
``streaming``
    The streaming table: one step at batch 1 against torch's cells and ONNX Runtime on T = 1.
``training``
    A training step against PyTorch's, and what variable lengths cost.
``fit``
    One ``fit`` epoch of the seeds' Keras model.
``precision``
    The precision table: fastrnn's float32, bf16 and int8 forward against the reduced-precision
    peers, with the issue 13 targets.
``bf16_training``
    The bf16 training table: a training step in fastrnn's bf16 against its float32, torch's
    float32 and ``torch.autocast`` bf16, with the issue 13 targets.
``accuracy``
    The accuracy table: the error of bf16 and int8 against the float64 forward over T and H.
``startup``
    New-process costs: import time, first call, peak memory.
``cli``
    The options of ``python -m fastrnn bench`` and the report.
"""
