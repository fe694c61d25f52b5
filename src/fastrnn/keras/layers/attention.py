"""Attention (Luong, dot-product or concat scores) and AdditiveAttention (Bahdanau), as Keras 3.

Inputs are ``[query, value]`` or ``[query, value, key]`` (the key defaults to the value):
query (B, Tq, D), value (B, Tv, Dv), key (B, Tv, D). The scores (B, Tq, Tv) compare every
query step with every key step; their softmax over the value steps weights the values:

* ``Attention(score_mode="dot")``: ``scores = scale * query @ key^T`` (``scale`` a scalar
  weight with ``use_scale``, else 1);
* ``Attention(score_mode="concat")``: ``scores[i, j] = concat_score_weight *
  sum(tanh(scale * (query[i] + key[j])))``;
* ``AdditiveAttention``: ``scores[i, j] = sum(scale * tanh(query[i] + key[j]))`` with
  ``scale`` a weight of shape (D,) (with ``use_scale``, else 1).

Masks ``[query_mask, value_mask]`` (each (B, T) or None): value steps that are masked (and,
with ``use_causal_mask``, later steps) get ``scores - 1e9`` before the softmax; query steps
that are masked give zero output, and the query mask is the output's mask. In training,
``dropout`` drops attention weights (inverted dropout).

Call them as Keras 3: ``layer([q, v], mask=[q_mask, v_mask], return_attention_scores=True,
use_causal_mask=True)``; with ``return_attention_scores`` the result is ``[output, scores]``
(the weights after the softmax, and after dropout in training) and :meth:`backward` takes
``[d_output, d_scores]`` (``d_scores`` may be None).
"""

import numpy as np

from fastrnn._validation import check_bool
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import initializers
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import check_gradient, check_mask, float_input, probability, require_tape
from fastrnn.parameter import Parameter

__all__ = ["Attention", "AdditiveAttention"]

#: What Keras subtracts from the scores of masked value steps (float32 and float64).
MASKED_SCORE_OFFSET = 1e9


def _seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ArgumentError(f"seed must be None or an int; got {seed!r}")
    return None if seed is None else int(seed)


class Attention(Layer):
    """Dot-product (Luong) attention, or concat scores, with Keras 3's arguments and weights.

    Parameters
    ----------
    use_scale : bool
        Learn a scalar ``scale`` of the scores (initialised to 1).
    score_mode : {"dot", "concat"}
        ``"concat"`` adds a scalar weight ``concat_score_weight`` (initialised to 1).
    dropout : float in [0, 1)
        Of the attention weights, in training.
    seed : int, optional
        Of the dropout.
    **kwargs
        ``name``, ``dtype``, ``trainable`` of :class:`Layer`.

    Attributes
    ----------
    scale : Parameter of shape (), or None
    concat_score_weight : Parameter of shape (), or None
        In Keras's ``get_weights()`` order.
    """

    supports_masking = True

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        if score_mode not in ("dot", "concat"):
            raise ArgumentError(f"{type(self).__name__}: score_mode must be 'dot' or 'concat'; got {score_mode!r}")
        super().__init__(**kwargs)
        self.use_scale = check_bool("use_scale", use_scale)
        self.score_mode = score_mode
        self.dropout = probability("dropout", dropout)
        self.seed = _seed(seed)
        self.rng = initializers.as_generator(self.seed)
        self.scale = self.concat_score_weight = None
        self._tape = None

    # shapes --------------------------------------------------------------------------
    def _check_shapes(self, shapes):
        """Check ``[query, value(, key)]`` shapes (without the batch axis)."""
        name = type(self).__name__
        if not isinstance(shapes, (list, tuple)) or not 2 <= len(shapes) <= 3:
            raise ArgumentError(f"layer {self.name!r} ({name}) takes a list [query, value] or [query, value, "
                                f"key]; got {shapes!r}")
        if not all(isinstance(s, (list, tuple)) for s in shapes):
            raise ArgumentError(f"layer {self.name!r} ({name}) takes a list [query, value] or [query, value, "
                                f"key] of arrays; got one array")
        shapes = [tuple(s) for s in shapes]
        if any(len(s) != 2 for s in shapes):
            raise ShapeError(f"layer {self.name!r} ({name}) needs query, value and key of shape (B, T, D); "
                             f"got shapes {', '.join('(B, ' + ', '.join(map(str, s)) + ')' for s in shapes)}")
        query, value = shapes[0], shapes[1]
        key = shapes[2] if len(shapes) == 3 else value
        problems = []
        if key[0] is not None and value[0] is not None and key[0] != value[0]:
            problems.append(f"key and value must have the same number of steps ({key[0]} != {value[0]})")
        if query[1] is not None and key[1] is not None and query[1] != key[1]:
            problems.append(f"query and key must have the same last axis ({query[1]} != {key[1]})")
        if problems:
            raise ShapeError(f"layer {self.name!r} ({name}): {'; '.join(problems)}; got query (B, {query[0]}, "
                             f"{query[1]}), value (B, {value[0]}, {value[1]}), key (B, {key[0]}, {key[1]})")
        return shapes

    def build(self, input_shape):
        shapes = self._check_shapes(input_shape)
        self._build_weights(shapes)
        super().build(shapes)
        self.input_shape = shapes

    def add_weight(self, name, values):
        """As :meth:`Layer.add_weight`, keeping a weight of shape () scalar (Keras's ``scale``;
        the base class's ``np.ascontiguousarray`` would make it (1,))."""
        parameter = Parameter(np.array(values, dtype=self.dtype, order="C"))
        self._weights.append((name, parameter))
        return parameter

    def _build_weights(self, shapes):
        if self.use_scale:
            self.scale = self.add_weight("scale", np.ones((), self.dtype))
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight("concat_score_weight", np.ones((), self.dtype))

    def compute_output_shape(self, input_shape):
        query, value = self._check_shapes(input_shape)[:2]
        return (query[0], value[1])

    def compute_mask(self, x, mask=None):
        """The query's mask (or None)."""
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3:
            raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}): mask must be a list "
                                f"[query_mask, value_mask]; got {mask!r}")
        return None if mask[0] is None else np.asarray(mask[0], dtype=bool)

    # scores ----------------------------------------------------------------------------
    def _scores(self, q, k):
        """The scores (B, Tq, Tv) and what their backward needs."""
        scale = self.scale.values if self.scale is not None else None
        if self.score_mode == "dot":
            product = q @ k.transpose(0, 2, 1)
            return (product if scale is None else product * scale), product
        pre = q[:, :, None, :] + k[:, None, :, :]
        hidden = np.tanh(pre if scale is None else scale * pre)
        summed = hidden.sum(axis=-1)
        return self.concat_score_weight.values * summed, (pre, hidden, summed)

    def _scores_backward(self, ds, q, k, cache):
        """The gradients of q and k from that of the scores; adds the weights'."""
        if self.score_mode == "dot":
            product = cache
            if self.scale is not None:
                self.scale.accumulate(np.sum(ds * product))
                ds = ds * self.scale.values
            return ds @ k, ds.transpose(0, 2, 1) @ q
        pre, hidden, summed = cache
        self.concat_score_weight.accumulate(np.sum(ds * summed))
        d_pre = (ds * self.concat_score_weight.values)[..., None] * (1 - hidden * hidden)
        if self.scale is not None:
            self.scale.accumulate(np.sum(d_pre * pre))
            d_pre = d_pre * self.scale.values
        return d_pre.sum(axis=2), d_pre.sum(axis=1)

    # the pass -----------------------------------------------------------------------------
    def call(self, x, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        """Attend.

        Parameters
        ----------
        x : list [query, value] or [query, value, key]
            ndarrays of shapes (B, Tq, D), (B, Tv, Dv), (B, Tv, D).
        mask : list [query_mask, value_mask] or None
            ndarrays of bool of shapes (B, Tq) and (B, Tv), either may be None.
        training : bool
        return_attention_scores : bool
        use_causal_mask : bool
            Query step i attends to value steps j <= i only (for decoder self-attention).

        Returns
        -------
        ndarray of shape (B, Tq, Dv), or with ``return_attention_scores`` the list
        ``[output, scores]``, scores of shape (B, Tq, Tv)
        """
        return_attention_scores = check_bool("return_attention_scores", return_attention_scores)
        use_causal_mask = check_bool("use_causal_mask", use_causal_mask)
        if not isinstance(x, (list, tuple)):
            self._check_shapes(x)
        xs = [float_input(self, item, ndim=3) for item in x]
        self._check_shapes([item.shape[1:] for item in xs])
        if len({item.shape[0] for item in xs}) > 1:
            raise ShapeError(f"layer {self.name!r} ({type(self).__name__}): query, value and key must have "
                             f"the same batch size; got shapes {', '.join(str(i.shape) for i in xs)}")
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) == 3 else v
        q_mask = v_mask = None
        if mask is not None:
            self.compute_mask(x, mask)
            q_mask = check_mask(self, mask[0], q.shape[:2])
            v_mask = check_mask(self, mask[1], v.shape[:2])
        scores, cache = self._scores(q, k)
        allowed = None if v_mask is None else v_mask[:, None, :]
        if use_causal_mask:
            causal = np.tril(np.ones(scores.shape[1:], bool))[None]
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            scores = np.where(allowed, scores, scores - self.dtype.type(MASKED_SCORE_OFFSET))
        shifted = scores - scores.max(axis=-1, keepdims=True)
        weights = np.exp(shifted)
        weights /= weights.sum(axis=-1, keepdims=True)
        keep = None
        if training and self.dropout > 0:
            keep = (self.rng.random(weights.shape) >= self.dropout) / self.dtype.type(1 - self.dropout)
            keep = keep.astype(self.dtype)
            dropped = weights * keep
        else:
            dropped = weights
        output = dropped @ v
        if q_mask is not None:
            output = output * q_mask[..., None]
        if training:
            self._tape = (q, v, k, len(xs) == 3, cache, weights, keep, dropped, q_mask, return_attention_scores)
        else:
            self._tape = None
        return [output, dropped] if return_attention_scores else output

    def backward(self, d_output):
        """Add the weights' gradients; return ``[d_query, d_value]`` or ``[d_query, d_value, d_key]``.

        Parameters
        ----------
        d_output : ndarray of shape (B, Tq, Dv), or with ``return_attention_scores`` the list
            ``[d_output, d_scores]`` (``d_scores`` of shape (B, Tq, Tv) or None)
        """
        q, v, k, has_key, cache, weights, keep, dropped, q_mask, with_scores = require_tape(self, self._tape)
        d_scores_out = None
        if with_scores:
            if not isinstance(d_output, (list, tuple)) or len(d_output) != 2:
                raise ArgumentError(f"layer {self.name!r} ({type(self).__name__}) returned [output, scores] "
                                    "(return_attention_scores=True): backward needs [d_output, d_scores]")
            d_output, d_scores_out = d_output
        dy = check_gradient(self, d_output, (q.shape[0], q.shape[1], v.shape[2]))
        if q_mask is not None:
            dy = dy * q_mask[..., None]
        d_dropped = dy @ v.transpose(0, 2, 1)
        if d_scores_out is not None:
            d_dropped = d_dropped + check_gradient(self, d_scores_out, dropped.shape)
        dv = dropped.transpose(0, 2, 1) @ dy
        dw = d_dropped if keep is None else d_dropped * keep
        # softmax: ds = w * (dw - sum(dw * w)); the -1e9 shift of masked scores is a constant
        ds = weights * (dw - (dw * weights).sum(axis=-1, keepdims=True))
        dq, dk = self._scores_backward(ds, q, k, cache)
        if has_key:
            return [dq, dv, dk]
        return [dq, dv + dk]

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode,
                "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(Attention):
    """Additive (Bahdanau) attention: ``scores[i, j] = sum(scale * tanh(query[i] + key[j]))``.

    Parameters
    ----------
    use_scale : bool
        Learn ``scale``, of shape (D,) (glorot_uniform, as Keras); else the sum is unweighted.
    dropout : float in [0, 1)
    seed : int, optional
        Of the dropout and of ``scale``'s initial values.
    **kwargs
        As for :class:`Layer`.

    Attributes
    ----------
    scale : Parameter of shape (D,), or None
    """

    def __init__(self, use_scale=True, dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, seed=seed, **kwargs)

    def _build_weights(self, shapes):
        if self.use_scale:
            dim = shapes[0][-1]
            self.scale = self.add_weight("scale", initializers.get("glorot_uniform")((dim,), self.dtype, self.rng))

    def _scores(self, q, k):
        hidden = np.tanh(q[:, :, None, :] + k[:, None, :, :])
        if self.scale is None:
            return hidden.sum(axis=-1), hidden
        return hidden @ self.scale.values, hidden

    def _scores_backward(self, ds, q, k, hidden):
        if self.scale is None:
            d_hidden = np.broadcast_to(ds[..., None], hidden.shape)
        else:
            self.scale.accumulate(np.einsum("bij,bijd->d", ds, hidden))
            d_hidden = ds[..., None] * self.scale.values
        d_pre = d_hidden * (1 - hidden * hidden)
        return d_pre.sum(axis=2), d_pre.sum(axis=1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
