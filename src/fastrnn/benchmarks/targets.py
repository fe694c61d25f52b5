"""Speed targets: the ratios and limits each table marks ``ok`` or ``MISS``."""

from fastrnn.benchmarks.grid import SHAPES

__all__ = ["TARGETS", "ORT_TARGETS", "OPENVINO_TARGETS", "JAX_TARGETS", "PEER_TARGETS",
           "BEST_PEER_MEDIAN_TARGET", "SGEMM_PEAK_TARGET", "LARGE_SHAPES", "STREAMING_TARGET",
           "IMPORT_TARGET_S", "FIRST_CALL_TARGET_S", "TRAINING_TARGET", "LENGTHS_COST_TARGET",
           "FIT_TARGETS", "PRECISION_SHAPES", "INT8_VS_FLOAT32", "INT8_VS_ORT", "BF16_VS_OPENVINO",
           "BF16_VS_FLOAT32", "precision_targets", "BF16_TRAINING_VS_FLOAT32",
           "BF16_TRAINING_VS_AUTOCAST", "bf16_training_targets", "SKLEARN_FIT_TARGET"]

# issue 12: forward and forward+backward at least even with every peer at 2 threads too; the
# LSTM's forward+backward at S1 and S3 1.5x torch's at either thread count
_AT_2_THREADS = {("fwd", 2): dict.fromkeys(SHAPES, 1.0), ("fwdbwd", 2): dict.fromkeys(SHAPES, 1.0)}
_LSTM_AT_2_THREADS = {("fwd", 2): dict.fromkeys(SHAPES, 1.0),
                      ("fwdbwd", 2): {**dict.fromkeys(SHAPES, 1.0), "S1": 1.5, "S3": 1.5}}

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
        **_LSTM_AT_2_THREADS,
    },
    "gru": {
        ("fwd", 1): {"S1": 3.0, "S3": 8.0, "S4": 2.0, "S2": 1.2, "S5": 1.2},
        ("fwdbwd", 1): {"S1": 5.0, "S3": 20.0, "S4": 2.0, "S2": 1.5, "S5": 1.5},
        **_AT_2_THREADS,
    },
}

_ORT_GATED = {("fwd", 1): {"S1": 1.5, "S3": 2.0, "S4": 1.2, "S2": 1.0, "S5": 1.0},
              ("fwd", 2): dict.fromkeys(SHAPES, 1.0)}

_EVEN_FORWARD = {("fwd", 1): dict.fromkeys(SHAPES, 1.0), ("fwd", 2): dict.fromkeys(SHAPES, 1.0)}

#: Minimum ``ONNX Runtime time / fastrnn time`` (forward only), keyed like :data:`TARGETS`.
ORT_TARGETS = {"rnn": {("fwd", 1): {**dict.fromkeys(SHAPES, 1.0), "S3": 2.0},
                       ("fwd", 2): dict.fromkeys(SHAPES, 1.0)},
               "lstm": _ORT_GATED, "gru": _ORT_GATED}
#: Minimum ``OpenVINO (f32) time / fastrnn time``, forward, every cell and shape (issue 12).
OPENVINO_TARGETS = dict.fromkeys(("rnn", "lstm", "gru"), _EVEN_FORWARD)
#: Minimum ``JAX time / fastrnn time``, forward, every cell and shape (issue 12).
JAX_TARGETS = dict.fromkeys(("rnn", "lstm", "gru"), _EVEN_FORWARD)
#: The targets of each peer column of the cells' table. "OV default" has none: it may run in
#: bfloat16, which fastrnn's float32 is not measured against.
PEER_TARGETS = {"torch": TARGETS, "ORT": ORT_TARGETS, "OV f32": OPENVINO_TARGETS, "JAX": JAX_TARGETS}

#: Median over the forward rows of one thread count of ``fastest peer's time / fastrnn time``.
BEST_PEER_MEDIAN_TARGET = 1.2
#: Fraction of the single-thread sgemm peak (measured in the same run) fastrnn's forward must
#: reach on the large shapes, for these cells, at 1 thread.
SGEMM_PEAK_TARGET = 0.9
LARGE_SHAPES = {"shapes": ("S2", "S5"), "cells": ("lstm", "gru")}
#: ``peer time / fastrnn time`` of one streaming step (B = 1) against torch's cell modules and
#: ONNX Runtime running T = 1.
STREAMING_TARGET = 2.0

#: Limits of the import-time and first-call targets, in seconds.
IMPORT_TARGET_S = 0.3
FIRST_CALL_TARGET_S = 1.5

#: torch time / fastrnn time a training step must reach at 1 thread.
TRAINING_TARGET = 2.0
#: Most that variable lengths may add to a forward+backward of the same padded batch.
LENGTHS_COST_TARGET = 1.10
#: Peer time / fastrnn time one fit epoch must reach at 1 thread.
FIT_TARGETS = {"keras": 3.0, "torch": 2.0}

#: issue 16: fastrnn.keras time / fastrnn.sklearn estimator time of the same training, at least this
#: (the estimator adds at most 5 %).
SKLEARN_FIT_TARGET = 0.95


# issue 13: reduced-precision inference, forward, peer (or fastrnn float32) time / fastrnn time
#: The shapes the precision targets hold on.
PRECISION_SHAPES = ("S2", "S4", "S5")
#: int8 against fastrnn's float32, LSTM and GRU, 1 thread: by the CPU's int8 instructions.
INT8_VS_FLOAT32 = {"vnni": {"S2": 3.0, "S4": 2.0, "S5": 3.0},
                   "avx2": {"S2": 2.0, "S4": 2.0, "S5": 2.0}}
#: int8 against ONNX Runtime's DynamicQuantizeLSTM, LSTM rows, 1 and 2 threads.
INT8_VS_ORT = 1.1
#: bf16 against OpenVINO at its default precision and against fastrnn's float32, every cell, on
#: CPUs with AVX512_BF16.
BF16_VS_OPENVINO = 1.0
BF16_VS_FLOAT32 = 1.8

#: The CPU flags that give each precision its native kernels.
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
_BF16_FLAGS = ("avx512_bf16",)


def precision_targets(cell, shape, n_threads, flags):
    """The issue 13 targets of one row of the precision table.

    Parameters
    ----------
    cell, shape : str
    n_threads : int
    flags : collection of str
        The CPU's flags, lower case (:attr:`fastrnn.benchmarks.machine.CpuInfo.flags`).

    Returns
    -------
    dict of str to float or str
        Ratio name (``"f32/int8"``, ``"ORT int8/int8"``, ``"OV default/bf16"``,
        ``"f32/bf16"``) -> the least ratio, for the ratios this row carries; the string
        ``"not available on this CPU"`` where the CPU lacks the instructions a target
        is set for.
    """
    flags = set(flags)
    missing = "not available on this CPU"
    targets = {}
    if shape not in PRECISION_SHAPES:
        return targets
    if cell in ("lstm", "gru") and n_threads == 1:
        if flags & set(_VNNI_FLAGS):
            targets["f32/int8"] = INT8_VS_FLOAT32["vnni"][shape]
        elif "avx2" in flags:
            targets["f32/int8"] = INT8_VS_FLOAT32["avx2"][shape]
        else:
            targets["f32/int8"] = missing
    if cell == "lstm" and n_threads in (1, 2):
        targets["ORT int8/int8"] = INT8_VS_ORT
    if flags & set(_BF16_FLAGS):
        targets["OV default/bf16"] = BF16_VS_OPENVINO
        targets["f32/bf16"] = BF16_VS_FLOAT32
    else:
        targets["OV default/bf16"] = targets["f32/bf16"] = missing
    return targets


# issue 13: bf16 training, one step of a 1-layer LSTM or GRU on PRECISION_SHAPES, any thread count
#: fastrnn float32 time / fastrnn bf16 time, on CPUs with AVX512_BF16.
BF16_TRAINING_VS_FLOAT32 = 1.5
#: torch autocast (bf16) time / fastrnn bf16 time, on CPUs with AVX512_BF16.
BF16_TRAINING_VS_AUTOCAST = 1.0


def bf16_training_targets(flags):
    """The issue 13 targets of a row of the bf16 training table.

    Parameters
    ----------
    flags : collection of str
        The CPU's flags, lower case.

    Returns
    -------
    dict of str to float or str
        ``"f32/bf16"`` and ``"autocast/bf16"`` -> the least ratio, or the string
        ``"not available on this CPU"`` where the CPU lacks AVX512_BF16 (fastrnn's bf16
        then runs emulated: correct, not fast).
    """
    if set(flags) & set(_BF16_FLAGS):
        return {"f32/bf16": BF16_TRAINING_VS_FLOAT32, "autocast/bf16": BF16_TRAINING_VS_AUTOCAST}
    return dict.fromkeys(("f32/bf16", "autocast/bf16"), "not available on this CPU")
