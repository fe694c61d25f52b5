"""Speed targets: the ratios and limits each table marks ``ok`` or ``MISS``."""

from fastrnn.benchmarks.grid import SHAPES

__all__ = ["TARGETS", "ORT_TARGETS", "IMPORT_TARGET_S", "FIRST_CALL_TARGET_S", "TRAINING_TARGET",
           "LENGTHS_COST_TARGET", "FIT_TARGETS"]

_AT_2_THREADS = {("fwd", 2): dict.fromkeys(SHAPES, 1.0), ("fwdbwd", 2): dict.fromkeys(SHAPES, 1.0)}

#: Speed targets: minimum ``torch time / fastrnn time`` (best compiled backend,
#: float32), keyed by cell name, then ``(pass, n_threads)``, then shape name.
TARGETS = {
    "rnn": {
        ("fwd", 1): {"S1": 3.0, "S3": 5.0, "S4": 1.3, "S2": 1.1, "S5": 1.0},
        ("fwdbwd", 1): {"S1": 5.0, "S3": 20.0, "S4": 1.5, "S2": 1.2, "S5": 1.3},
        **_AT_2_THREADS,
    },
    "lstm": {
        ("fwd", 1): {"S1": 2.0, "S3": 3.0, "S4": 1.2, "S2": 1.0, "S5": 1.0},
        ("fwdbwd", 1): {"S1": 2.0, "S3": 3.0, "S4": 1.3, "S2": 1.0, "S5": 1.0},
        **_AT_2_THREADS,
    },
    "gru": {
        ("fwd", 1): {"S1": 3.0, "S3": 8.0, "S4": 2.0, "S2": 1.2, "S5": 1.2},
        ("fwdbwd", 1): {"S1": 5.0, "S3": 20.0, "S4": 2.0, "S2": 1.5, "S5": 1.5},
        **_AT_2_THREADS,
    },
}

_ORT_GATED = {("fwd", 1): {"S1": 1.5, "S3": 2.0, "S4": 1.2, "S2": 1.0, "S5": 1.0},
              ("fwd", 2): dict.fromkeys(SHAPES, 1.0)}

#: Minimum ``ONNX Runtime time / fastrnn time`` (forward only), keyed like :data:`TARGETS`.
ORT_TARGETS = {"rnn": {("fwd", 1): {"S3": 2.0}}, "lstm": _ORT_GATED, "gru": _ORT_GATED}

#: Limits of the import-time and first-call targets, in seconds.
IMPORT_TARGET_S = 0.3
FIRST_CALL_TARGET_S = 1.5

#: torch time / fastrnn time a training step must reach at 1 thread.
TRAINING_TARGET = 2.0
#: Most that variable lengths may add to a forward+backward of the same padded batch.
LENGTHS_COST_TARGET = 1.10
#: Peer time / fastrnn time one fit epoch must reach at 1 thread.
FIT_TARGETS = {"keras": 3.0, "torch": 2.0}
