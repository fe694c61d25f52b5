"""Every numerical tolerance of the test suite, in one place, keyed by dtype.

How a comparison reads: ``actual`` agrees with ``expected`` when, element by element,

    |actual - expected| <= atol * scale + rtol * |expected|,    scale = max(1, max |expected|)

The absolute part is scaled by the largest entry of the expected array because
gradients are sums over ``T*B`` rows: an entry that cancels to nearly zero still
carries the rounding error of its largest terms.
"""

import numpy as np

#: A compiled backend against the reference run in float64 on the same inputs.
#: float64 differs only by summation order; float32 also by its rounding and by
#: the vectorised float32 tanh (within ~5 ulp) of the compiled kernels, which the
#: recurrence and the T*B-row gradient sums accumulate.
BACKEND_VS_REFERENCE = {
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
}

#: Two computations in the same dtype that differ only in the order of summation:
#: a backend against itself after an exact rewriting of the problem (sequence fed in
#: chunks with the state carried, batch rows run one by one), or two backends'
#: backward passes on one cache (BPTT has no tanh to approximate).
INVARIANT = {
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13),
    np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
}

#: fastrnn against torch.nn (RNN, LSTM, GRU) or ONNX Runtime given the same weights, in the same dtype.
TORCH_PARITY = {
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
}

#: float64 values against a formula worked out by hand (math.tanh, a written-out product, one
#: wrapper around one operation): a few roundings apart.
HAND_CHECKED = dict(rtol=1e-14, atol=1e-15)
#: Two float64 computations of one quantity whose sums run in another order or over many terms:
#: an independent scalar loop (math.fsum) against the reference, masked against unmasked steps,
#: chunks against the whole, a closed form over arrays against the code.
FLOAT64_REORDERED = dict(rtol=1e-12, atol=1e-14)
#: Two float32 computations of one quantity in different batches or orders of summation.
FLOAT32_REORDERED = dict(rtol=1e-6, atol=1e-7)
#: A float32 loss averaged batch by batch (as fit/evaluate report it) against the same loss
#: computed at once.
FLOAT32_BATCHED_LOSS = dict(rtol=1e-5)

#: Central finite differences of the float64 reference: step and agreement.
#: The truncation error is O(step**2) and the rounding error O(eps * |loss| / step).
FINITE_DIFFERENCE_STEP = 1e-6
FINITE_DIFFERENCE = dict(rtol=1e-6, atol=1e-8)
#: For relu, a finite difference is only valid if no pre-activation is closer to 0 than this.
RELU_KINK_MARGIN = 1e-3

#: Central differences of a Keras-facade loss (log, softmax, clipping to [1e-7, 1 - 1e-7]): the
#: curvature near the clip makes the truncation error larger than the recurrent layers'.
FINITE_DIFFERENCE_LOSS = dict(rtol=1e-5, atol=1e-8)
#: log of a prediction clipped at Keras's epsilon 1e-7 against math.log(1e-7): relative.
CLIPPED_LOG = dict(rtol=1e-9)

#: A short computation (a loss and its gradient, a gradient clip: a handful of elementwise
#: operations and one reduction) against torch or a NumPy formula, in the same dtype.
SHORT_COMPUTATION = {
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-14),
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
}
#: The global gradient norm of a model trained side by side with torch, float64: relative.
GRADIENT_NORM_PARITY = dict(rtol=1e-9)
#: Rows of an orthogonal initialiser: ``q q^T`` against the identity (or ``gain**2`` times it).
ORTHONORMAL = {
    np.dtype(np.float64): dict(atol=1e-12),
    np.dtype(np.float32): dict(atol=1e-6),
}

#: A Keras-facade layer or model against Keras (TensorFlow backend) on the same float32 weights:
#: outputs, losses, accuracies and trained weights.
KERAS_PARITY = dict(rtol=1e-4, atol=1e-5)
#: The same for gradients, which sum over more terms than outputs do.
KERAS_GRADIENT_PARITY = dict(rtol=2e-4, atol=2e-5)
#: One Keras-facade loss value against Keras's, float32.
KERAS_LOSS_PARITY = dict(rtol=2e-5, atol=1e-6)
#: One optimizer update of the Keras facade against Keras's, float32.
KERAS_OPTIMIZER_PARITY = dict(rtol=2e-5, atol=2e-6)

#: bf16 and int8 inference against the float64 forward on the same weights (PyTorch's
#: initialisation U(-1/sqrt(H), 1/sqrt(H)), x ~ N(0, 1), T <= 100, H <= 128): bounds on the largest
#: and on the mean absolute error of the outputs. Measured on the reference (AMD EPYC Zen 4), the
#: Elman cell being the worst: bf16 max 5.6e-3, mean 8.7e-4; int8 max 1.5e-2, mean 2.4e-3.
REDUCED_VS_FLOAT64 = {"bf16": dict(max=2e-2, mean=3e-3), "int8": dict(max=5e-2, mean=8e-3)}
#: A bf16 or int8 output must differ from the float32 one by more than this somewhere (the
#: typical difference is 1e-3), so that a float32 run passed off as reduced precision fails.
REDUCED_DIFFERS_FROM_FLOAT32 = 1e-5
#: A compiled bf16/int8 forward against the reference on the same reduced weights: the products
#: agree (int8 bit for bit, bf16 within float32 rounding) and the vector tanh and sigmoid within
#: a few ulp, but a state a few ulp apart may round to another bf16 value or int8 quantum at the
#: next step. Measured through the API (T = 30, lengths): up to 2e-7, 2e-5 for the bf16 GRU with
#: the reset gate before the product (its r * h is rounded to bf16).
REDUCED_BACKEND_VS_REFERENCE = dict(rtol=5e-4, atol=5e-4)
#: The same over longer sequences (the layer kernels' tests: D, H up to 130, T up to 300), where
#: such a moved quantum has time to happen; atol scaled by max(1, max |expected|). Measured on the
#: generic int8 and emulated bf16 kernels: int8 6.8e-3 (Elman tanh; 1.3e-3 gated cells, 0 relu),
#: bf16 1.9e-3.
REDUCED_LONG_VS_REFERENCE = {"int8": dict(rtol=0.0, atol=1.5e-2), "bf16": dict(rtol=0.0, atol=5e-3)}
#: "Within noise" for a demo task trained in bf16 against the same task, seed and data trained in
#: float32 (``--quick`` sizes, tests/test_demo_precision.py): the seed-to-seed standard deviation of
#: the float32 run, measured over seeds 0-4 on the cython backend (AMD EPYC Zen 4), rounded down.
#: The same-seed bf16 - float32 differences measured there were 10 to 1000 times smaller except for
#: the order task's test accuracy (0.010, one test pair of 96). ``loss``: final training loss (for
#: memory every cell and length, ``loss_<cell>_<length>``); the other key the task's test metric.
DEMO_BF16_TRAINING_NOISE = {
    "order": {"final_loss": 0.004, "test_accuracy": 0.028},
    "tagging": {"final_loss": 0.015, "test_accuracy": 0.06},
    "charlm": {"final_loss": 0.0014, "val_loss": 0.008},
    "memory": {"loss": 0.15, "mse": 0.15},
}

#: The compiled bf16 backward (``*_backward_reduced``) against the reference's on one forward
#: cache: both round the same operands to bf16, but an operand computed by float32 operations
#: in another order (dz from the gate math, dh_{t-1} from a product's float32 sum) can differ
#: by a float32 ulp and so round to the neighbouring bf16 value, one bf16 ulp (2**-8 relative)
#: of one term; atol scaled by max(1, max |expected|). Measured (tests/test_reduced_backward.py
#: shapes): up to 1.9e-3 (dW_hr of lstm_proj at H = 520), mostly below 5e-4.
REDUCED_BACKWARD_VS_REFERENCE = dict(rtol=0.0, atol=5e-3)
#: The compiled bf16 backward against float64 forward and backward on the float weights: the
#: bf16 error of the products (operands to 8 bits) through forward and backward, T = 40,
#: H = 48; atol scaled by max(1, max |expected|). Measured over 3 seeds, every cell: up to
#: 3.9e-3 (the ReLU RNN's backward on the bf16 forward's outputs: its gradient steps at 0).
REDUCED_BACKWARD_VS_FLOAT64 = dict(rtol=0.0, atol=1e-2)

#: The float32 tanh of the compiled backends against float64 tanh rounded to float32, in ulp.
TANH_FLOAT32_ULP = 8
#: The float64 tanh of the compiled backends (libm) against numpy's float64 tanh, in ulp.
TANH_FLOAT64_ULP = 2


def scaled(tolerance, expected):
    """``tolerance`` (a dict with ``rtol`` and ``atol``) with ``atol`` scaled by ``max(1, max |expected|)``."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    return dict(rtol=tolerance["rtol"], atol=tolerance["atol"] * scale)

#: bf16 training (the functional forward and backward, every cell, uni- and bidirectional, with
#: lengths) against the float64 reference on the same float32 inputs; atol scaled by
#: max(1, max |expected|). Measured on the reference backend (T <= 40, H <= 64, PyTorch's
#: initialisation, x, dy ~ N(0, 1), 12 seeds): at most 8.1e-3 (LSTM weight gradients; 6.4e-3 the
#: Elman cell, 4.9e-3 the GRU). The relu Elman cell's gradients are compared with the float64
#: backward run on the bf16 forward's outputs: with the float64 forward's own, pre-activations
#: that bf16 moves across 0 change the derivative, relative errors up to 0.5.
BF16_TRAINING_VS_FLOAT64 = dict(rtol=0.0, atol=2e-2)
#: A compiled bf16 training step against the reference backend's, same weights and inputs:
#: products agree within float32 rounding, but a state or dz a few ulp apart may round to
#: another bf16 value at the next product (as for REDUCED_BACKEND_VS_REFERENCE, here through
#: both passes and the T*B-row weight-gradient sums); atol scaled by max(1, max |expected|).
#: Measured (Cython avx512_bf16 and emulated, T <= 40, H <= 64, 6 seeds): up to 1.9e-3 (Elman
#: tanh), 1.2e-3 the GRU, 5e-4 the LSTM, 2e-7 the relu Elman cell.
BF16_TRAINING_BACKEND_VS_REFERENCE = dict(rtol=0.0, atol=5e-3)
#: The loss of a short training run in bf16 (nn modules and Adam, Keras fit) against the same run
#: in float32, step by step: measured relative differences up to 1.5e-3 (25 Adam steps of a
#: two-layer bidirectional LSTM with projection), 2.2e-4 over 6 Keras epochs.
BF16_TRAINING_LOSS_VS_FLOAT32 = dict(rtol=1e-2, atol=0.0)
