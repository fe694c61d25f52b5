"""Attention (dot and concat scores) and AdditiveAttention: finite differences of their backward,
the scores by their definition, masks, errors, and real Keras 3 (forward, GradientTape gradients,
propagated masks, configs)."""

import numpy as np
import pytest

from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.keras import layers
from layer_checks import check_finite_differences, compare_configs, compare_with_keras, keras_module
from tolerances import FLOAT64_REORDERED

F64 = dict(dtype="float64")
B, TQ, TV, D, DV = 2, 4, 5, 3, 2


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


def qvk(seed=0, key=False):
    # without a key the value is the key: it needs the query's last axis
    inputs = [normal(seed, (B, TQ, D)), normal(seed + 1, (B, TV, DV if key else D))]
    return inputs + [normal(seed + 2, (B, TV, D))] if key else inputs


def masks():
    return [np.array([[1, 1, 0, 1], [1, 1, 1, 0]], bool), np.array([[1, 0, 1, 1, 0], [1, 1, 1, 0, 0]], bool)]


@pytest.fixture(scope="module")
def keras():
    return keras_module()


VARIANTS = [
    ("Attention", {}),
    ("Attention", dict(use_scale=True)),
    ("Attention", dict(score_mode="concat")),
    ("Attention", dict(score_mode="concat", use_scale=True)),
    ("AdditiveAttention", {}),
    ("AdditiveAttention", dict(use_scale=False)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}" for name, kwargs in VARIANTS]


def with_weights(layer, inputs, seed=5):
    """Build ``layer`` and give its weights values away from their initial ones."""
    layer.build([np.shape(x)[1:] for x in inputs])
    for parameter in layer.weights:
        parameter.data[...] = 0.5 + np.abs(normal(seed, parameter.shape))
    return layer


# ---- finite differences (float64, no Keras)

@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=IDS)
@pytest.mark.parametrize("key", [False, True])
@pytest.mark.parametrize("masked, causal, scores", [(False, False, False), (True, False, True),
                                                     (False, True, True), (True, True, False)])
def test_gradients(name, kwargs, key, masked, causal, scores):
    inputs = qvk(1, key)
    if causal:  # causal self-attention: as many query steps as value steps
        inputs = [normal(7, (B, TV, D))] + inputs[1:]
    layer = with_weights(getattr(layers, name)(**kwargs, **F64), inputs)
    mask = None
    if masked:
        mask = [np.ones(inputs[0].shape[:2], bool) if causal else masks()[0], masks()[1]]
    check_finite_differences(layer, inputs, mask=mask, return_attention_scores=scores, use_causal_mask=causal)


def test_dropout_gradients_with_a_fixed_draw():
    """Dropout of the attention weights: the gradient of one draw (the generator reseeded)."""
    class ReseededAttention(layers.Attention):
        def __call__(self, x, **kwargs):
            self.rng = np.random.default_rng(4)
            return super().__call__(x, **kwargs)

    layer = ReseededAttention(dropout=0.3, **F64)
    inputs = qvk(2)
    out = check_finite_differences(layer, inputs)
    assert not np.allclose(out, layers.Attention(**F64)(inputs))


# ---- by the definitions

def test_dot_attention_by_its_definition():
    q, v, k = qvk(3, key=True)
    q_mask, v_mask = masks()
    out, weights = layers.Attention(**F64)([q, v, k], mask=[q_mask, v_mask], return_attention_scores=True)
    for b in range(B):
        for i in range(TQ):
            scores = np.array([q[b, i] @ k[b, j] for j in range(TV)])
            scores[~v_mask[b]] -= 1e9
            w = np.exp(scores - scores.max())
            w /= w.sum()
            np.testing.assert_allclose(weights[b, i], w, **FLOAT64_REORDERED)
            np.testing.assert_allclose(out[b, i], (w @ v[b]) * q_mask[b, i], **FLOAT64_REORDERED)


def test_additive_attention_by_its_definition():
    q, v, k = qvk(4, key=True)
    layer = with_weights(layers.AdditiveAttention(**F64), [q, v, k])
    scale = layer.scale.values
    out, weights = layer([q, v, k], return_attention_scores=True, use_causal_mask=False)
    scores = np.array([[[np.sum(scale * np.tanh(q[b, i] + k[b, j])) for j in range(TV)] for i in range(TQ)]
                       for b in range(B)])
    expected = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, **FLOAT64_REORDERED)
    np.testing.assert_allclose(out, expected @ v, **FLOAT64_REORDERED)


def test_causal_mask_hides_later_steps():
    x = normal(5, (B, TV, D))
    _, weights = layers.Attention(**F64)([x, x], return_attention_scores=True, use_causal_mask=True)
    assert np.all(weights[:, np.triu_indices(TV, 1)[0], np.triu_indices(TV, 1)[1]] == 0)


def test_output_mask_is_the_query_mask():
    q_mask, v_mask = masks()
    layer = layers.Attention()
    np.testing.assert_array_equal(layer.compute_mask(qvk(), [q_mask, v_mask]), q_mask)
    assert layer.compute_mask(qvk(), [None, v_mask]) is None
    assert layer.compute_mask(qvk(), None) is None


def test_weights_as_keras_names_them():
    assert [n for n, _ in with_weights(layers.Attention(use_scale=True, score_mode="concat"), qvk())._weights] \
        == ["scale", "concat_score_weight"]
    additive = with_weights(layers.AdditiveAttention(), qvk())
    assert [(n, p.shape) for n, p in additive._weights] == [("scale", (D,))]
    assert with_weights(layers.Attention(), qvk()).weights == []


# ---- errors

def test_bad_arguments_and_shapes():
    with pytest.raises(ArgumentError, match="score_mode must be 'dot' or 'concat'; got 'add'"):
        layers.Attention(score_mode="add")
    with pytest.raises(ArgumentError, match=r"dropout must be a number in \[0, 1\); got 1.5"):
        layers.AdditiveAttention(dropout=1.5)
    with pytest.raises(ArgumentError, match="seed must be None or an int"):
        layers.Attention(seed="x")
    with pytest.raises(ArgumentError, match=r"layer 'att' \(Attention\) takes a list \[query, value\]"):
        layers.Attention(name="att")(normal(0, (B, TQ, D)))
    q, v, k = qvk(0, key=True)
    with pytest.raises(ShapeError, match=r"layer 'att' \(Attention\): query and key must have the same last "
                                         r"axis \(3 != 2\)"):
        layers.Attention(name="att")([q, v])
    with pytest.raises(ShapeError, match=r"key and value must have the same number of steps \(4 != 5\)"):
        layers.Attention()([q, v, k[:, :4]])
    with pytest.raises(ArgumentError, match=r"mask must be a list \[query_mask, value_mask\]"):
        layers.Attention()([q, v, k], mask=masks()[0])
    layer = layers.Attention()
    layer([q, v, k], training=True, return_attention_scores=True)
    with pytest.raises(ArgumentError, match=r"backward needs \[d_output, d_scores\]"):
        layer.backward(np.zeros((B, TQ, DV)))


# ---- real Keras 3

@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=IDS)
@pytest.mark.parametrize("key", [False, True])
@pytest.mark.parametrize("masked, causal, scores", [(False, False, False), (True, False, True),
                                                     (False, True, True), (True, True, False)])
def test_equal_keras(keras, name, kwargs, key, masked, causal, scores):
    inputs = qvk(6, key)
    if causal:
        inputs = [normal(8, (B, TV, D))] + inputs[1:]
    mask_list = None
    if masked:
        mask_list = [np.ones(inputs[0].shape[:2], bool) if causal else masks()[0], masks()[1]]
        mask_list += [None] * (len(inputs) - 2)  # the key takes the value's mask
    theirs = getattr(keras.layers, name)(**kwargs)
    theirs([np.asarray(x, np.float32) for x in inputs])
    for i, variable in enumerate(theirs.weights):
        variable.assign((0.5 + np.abs(normal(9 + i, variable.shape))).astype(np.float32))
    compare_with_keras(getattr(layers, name)(**kwargs), theirs, inputs, masks=mask_list,
                       return_attention_scores=scores, use_causal_mask=causal)
    compare_configs(getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs))


def test_keras_configs_build_fastrnn_attention(keras):
    for theirs in [keras.layers.Attention(use_scale=True, score_mode="concat", dropout=0.1, seed=3),
                   keras.layers.AdditiveAttention(use_scale=False)]:
        config = {k: v for k, v in theirs.get_config().items() if k != "dtype"}
        ours = getattr(layers, type(theirs).__name__).from_config(config)
        compare_configs(ours, theirs)
