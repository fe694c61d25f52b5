r"""Reduced-precision products: the reference that defines every rounding exactly.

A layer run in reduced precision computes its products ``a W^T`` (the input
projection ``x_t W_ih^T``, the recurrent product ``h_{t-1} W_hh^T``, the GRU's
``(r \odot h) W_hn^T``, the projection ``m_t W_hr^T``) in bf16 or int8; everything
else -- biases, gate math, the cell state -- stays float32. The compiled kernels
(``csrc/reduced_gemm.h``) follow these definitions.

**bf16.** ``W`` is rounded once to bfloat16 (round to nearest, ties to even; NaN
stays NaN), and each row of ``a`` at each product. The products of two bf16
numbers are exact in float32; the sums are float32:

.. math::

    (a W^T)_{rj} = \sum_k \mathrm{bf16}(a_{rk})\, \mathrm{bf16}(W_{jk})

summed in float32 in an order each kernel chooses (results agree within float32
rounding, not bit for bit).

**int8.** Symmetric quantization with one scale per row, for the weights (one per
output unit, once) and for ``a`` (one per batch row and product, from that row's
values only -- never from how rows are shared among threads):

.. math::

    m_r &= \max_k |a_{rk}|, \qquad s_r = m_r / 127, \qquad
    q_{rk} = \mathrm{rint}\bigl(a_{rk} \cdot (127 / m_r)\bigr) \in [-127, 127] \\
    (a W^T)_{rj} &= \mathrm{f32}\Bigl(\sum_k q_{rk}\, q^W_{jk}\Bigr) \cdot (s_r\, s^W_j)

with every operation on float32 values rounded to float32 (``rint`` rounds half to
even), the sum exact in int32, and a row of zeros (``m_r = 0``) quantized to
zeros with scale 0. A row holding NaN or infinity quantizes to zeros with a
non-finite scale, so its results are NaN. The compiled integer kernels equal this
bit for bit, whatever their instruction set and thread count; the result is then
added to the bias or to what the output holds, ``c + p`` in float32.

The int32 sum is exact while ``K * 127 * 127 < 2**31``; :data:`INT8_MAX_K` is the
bound the packers check.

**bf16 training.** The backward pass of a layer trained in bf16 computes its products
the same way: both operands rounded to bf16, products exact, sums float32. They are the
products through the weights, ``dz W`` (:func:`product_through`: ``dh_{t-1} = dz_t
W_hh``, ``dx = dz W_ih``), and the weight gradients, ``dz^T a`` summed over every step
and batch row (:func:`gradient_product`: ``dW_ih = dz^T x``, ``dW_hh = dz^T h_{t-1}``).
The weights are the float32 master weights rounded once per forward call, the same
rounded values in both passes; gradients, states and gate math are float32. int8 has no
backward pass.
"""

import numpy as np

__all__ = ["PRECISIONS", "INT8_MAX_K", "bf16_round", "quantize_rows", "ReducedMatrix",
           "reduce_matrix", "product", "product_through", "gradient_product"]

#: The precisions of inference: float32 (no reduction), bf16 and int8.
PRECISIONS = ("float32", "bf16", "int8")

#: The longest reduction (D or H) an int8 product accepts: 127 * 127 * K must fit int32
#: with room for the unsigned offset of the VNNI kernels (255 * 127 * K < 2**31).
INT8_MAX_K = 65536

_ONE_27 = np.float32(127.0)


def bf16_round(a):
    """``a`` rounded to bfloat16 (nearest, ties to even), as float32 values.

    Parameters
    ----------
    a : ndarray of float32

    Returns
    -------
    ndarray of float32, shaped like ``a``
        Each value with its low 16 bits cleared after rounding; NaN stays a (quiet) NaN,
        a value rounding past the largest bf16 becomes infinity.
    """
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = np.where(nan, (bits | np.uint32(0x00400000)) & np.uint32(0xFFFF0000), rounded)
    return rounded.astype(np.uint32).view(np.float32)


def quantize_rows(a):
    """Symmetric int8 quantization of each row of ``a`` with its own scale (see above).

    Parameters
    ----------
    a : ndarray of float32 of shape (R, K)

    Returns
    -------
    q : ndarray of int8 of shape (R, K)
    scale : ndarray of float32 of shape (R,)
        ``q[r] * scale[r]`` approximates ``a[r]``.
    """
    a = np.asarray(a, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(np.abs(a), axis=1) if a.shape[1] else np.zeros(a.shape[0], np.float32)
        m = m.astype(np.float32)
        scale = m / _ONE_27
        finite = np.isfinite(m) & (m > 0)
        inv = np.where(finite, _ONE_27 / np.where(finite, m, np.float32(1)), np.float32(0))
        scaled = a * inv.astype(np.float32)[:, None]
        q = np.rint(np.where(np.isfinite(scaled), scaled, np.float32(0)))
    return np.clip(q, -127, 127).astype(np.int8), scale.astype(np.float32)


class ReducedMatrix:
    """A weight matrix ``W`` of shape (N, K) in reduced precision, for :func:`product`.

    Parameters
    ----------
    precision : {"bf16", "int8"}
    values : ndarray of shape (N, K)
        bf16: the rounded weights as float32; int8: the quantized weights (int8).
    scale : ndarray of float32 of shape (N,) or None
        int8: the scale of each row of ``W``.

    Rows may be sliced (``W[:2 * H]``), as the GRU's kernels take ``W_hh`` apart.
    """

    __slots__ = ("precision", "values", "scale")

    def __init__(self, precision, values, scale=None):
        self.precision = precision
        self.values = values
        self.scale = scale

    @property
    def shape(self):
        """tuple (N, K)."""
        return self.values.shape

    def __getitem__(self, rows):
        if not isinstance(rows, slice):
            raise TypeError("a ReducedMatrix takes slices of rows only")
        return ReducedMatrix(self.precision, self.values[rows],
                             None if self.scale is None else self.scale[rows])

    def dequantized(self):
        """ndarray of float32 of shape (N, K): the weights as the products use them."""
        if self.precision == "bf16":
            return self.values.copy()
        return self.values.astype(np.float32) * self.scale[:, None]

    def product(self, a):
        """``a W^T`` in this precision.

        Parameters
        ----------
        a : ndarray of float32 of shape (R, K)

        Returns
        -------
        ndarray of float32 of shape (R, N)
        """
        a = np.asarray(a, dtype=np.float32)
        if self.precision == "bf16":
            return np.matmul(bf16_round(a), self.values.T).astype(np.float32)
        q, scale = quantize_rows(a)
        # exact: |sums| < 2**31 < 2**53, so float64 BLAS gives the int32 sums
        sums = np.matmul(q.astype(np.float64), self.values.T.astype(np.float64))
        with np.errstate(invalid="ignore", over="ignore"):
            return sums.astype(np.float32) * (scale[:, None] * self.scale[None, :])


def reduce_matrix(w, precision):
    """Round or quantize a weight matrix once.

    Parameters
    ----------
    w : ndarray of float32 of shape (N, K)
        A weight in PyTorch's layout (one row per output unit).
    precision : {"bf16", "int8"}

    Returns
    -------
    ReducedMatrix
    """
    w = np.asarray(w, dtype=np.float32)
    if precision == "bf16":
        return ReducedMatrix("bf16", bf16_round(w))
    if precision == "int8":
        q, scale = quantize_rows(w)
        return ReducedMatrix("int8", q, scale)
    raise ValueError(f"unknown precision {precision!r}")


def product(a, w, out=None):
    """``a W^T``: in float for an ndarray ``w``, in ``w``'s precision for a ReducedMatrix.

    The reference kernels compute every forward product through this, so the same loops
    run float32, float64, bf16 and int8.

    Parameters
    ----------
    a : ndarray of shape (R, K)
    w : ndarray or ReducedMatrix of shape (N, K)
    out : ndarray of shape (R, N), optional
        Where to write the result.

    Returns
    -------
    ndarray of shape (R, N)
        ``out`` when given.
    """
    if isinstance(w, ReducedMatrix):
        if out is None:
            return w.product(a)
        out[...] = w.product(a)
        return out
    return np.matmul(a, w.T, out=out)


def product_through(a, w, out=None):
    """``a W``, the backward pass's product through a weight: in float for an ndarray ``w``,
    in bf16 for a bf16 ReducedMatrix (``a`` rounded, float32 sums).

    Parameters
    ----------
    a : ndarray of shape (R, N)
        A gradient with respect to the product's outputs, e.g. ``dz_t``.
    w : ndarray or ReducedMatrix of shape (N, K)
    out : ndarray of shape (R, K), optional

    Returns
    -------
    ndarray of shape (R, K)
        ``out`` when given.
    """
    if isinstance(w, ReducedMatrix):
        _check_trainable(w)
        result = np.matmul(bf16_round(a), w.values).astype(np.float32)
        if out is None:
            return result
        out[...] = result
        return out
    return np.matmul(a, w, out=out)


def gradient_product(a, b, like, out=None):
    """``a^T b``, a weight gradient summed over rows, in the precision of the weight ``like``.

    Parameters
    ----------
    a : ndarray of shape (R, N)
        The gradient with respect to the product's outputs (``dz``), one row per step and
        batch row.
    b : ndarray of shape (R, K)
        The product's inputs (``x``, ``h_{t-1}``) on the same rows.
    like : ndarray or ReducedMatrix
        The weight whose gradient this is: a bf16 ReducedMatrix rounds ``a`` and ``b`` to
        bf16 (float32 sums); an ndarray computes in their own dtype.
    out : ndarray of shape (N, K), optional

    Returns
    -------
    ndarray of shape (N, K)
        ``out`` when given.
    """
    if isinstance(like, ReducedMatrix):
        _check_trainable(like)
        result = np.matmul(bf16_round(a).T, bf16_round(b)).astype(np.float32)
        if out is None:
            return result
        out[...] = result
        return out
    return np.matmul(a.T, b, out=out)


def _check_trainable(w):
    if w.precision != "bf16":
        raise ValueError(f"a backward pass runs in float32 or bf16; these weights are {w.precision}")
