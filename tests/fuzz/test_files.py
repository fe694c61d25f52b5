"""Fuzzing every reader of weights: ``fastrnn.keras.load_model`` on damaged files, and
``nn.Module.load_state_dict`` / Keras ``set_weights`` on fuzzed entries.

A file either loads with the saved weights or raises ``ModelFileError``; it never runs code it holds.
An update is either applied or refused with a fastrnn exception, and a refused one changes nothing.
"""

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastrnn import keras, nn
from fastrnn.exceptions import FastRNNError
from fastrnn.keras import model_file
from fastrnn.keras.exceptions import ModelFileError
from fuzz import fuzz_settings
from fuzz.test_functional import JUNK
from test_all_or_nothing import _assert_unchanged, _snapshot

try:  # torch is no test requirement: without it, state dicts hold no tensors
    import torch
except ImportError:  # pragma: no cover
    torch = None

# -- load_model ----------------------------------------------------------------------------------

PAYLOAD_RAN = []


def _payload_ran():
    """Called only if a pickle in a model file is unpickled: the reader would have run the file's code."""
    PAYLOAD_RAN.append(True)


class _Payload:
    def __reduce__(self):
        return (_payload_ran, ())


def pickled_npy():
    """An .npy entry whose object array unpickles by calling :func:`_payload_ran`."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Payload()], dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(good bytes, entries name -> bytes, the saved weights, a scratch path)``, built once per module."""
    model = keras.Sequential([keras.layers.Embedding(10, 4, seed=0), keras.layers.LSTM(3, seed=1),
                              keras.layers.Dense(2, seed=2)])
    model.build((None, 5))
    folder = tmp_path_factory.mktemp("fuzz_files")
    path = folder / "good.fastrnn"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return path.read_bytes(), entries, model.get_weights(), folder / "fuzzed.fastrnn"


def loads_the_same_or_refuses(data, weights, path):
    """Write ``data`` to ``path`` and load it: the saved weights come back, or ModelFileError is raised."""
    path.write_bytes(data)
    try:
        model = keras.load_model(path)
    except ModelFileError:
        return False
    finally:
        assert not PAYLOAD_RAN, "load_model unpickled a pickle the file held"
    loaded = model.get_weights()
    assert len(loaded) == len(weights)
    for ours, theirs in zip(loaded, weights):
        # Values, not dtypes: a description whose layer dtype is changed (to null: float32, or float64) loads the
        # saved float32 values into that dtype exactly (noted in the report).
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs.astype(ours.dtype))
        np.testing.assert_array_equal(ours.astype(theirs.dtype), theirs)
    return True


def zipped(entries, deflate=False):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_the_unchanged_file_loads(saved):
    good, entries, weights, path = saved
    assert loads_the_same_or_refuses(good, weights, path)
    assert loads_the_same_or_refuses(zipped(entries, deflate=True), weights, path)


def test_a_pickled_entry_is_refused_unrun(saved):
    good, entries, weights, path = saved
    name = next(name for name in entries if name.endswith(".npy"))
    assert not loads_the_same_or_refuses(zipped(dict(entries, **{name: pickled_npy()})), weights, path)


@given(data=st.binary(max_size=600))
@fuzz_settings
def test_random_bytes_are_refused(saved, data):
    _, _, weights, path = saved
    assert not loads_the_same_or_refuses(data, weights, path)


@given(flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
@fuzz_settings
def test_flipped_bits_load_the_same_or_are_refused(saved, flips):
    good, _, weights, path = saved
    data = bytearray(good)
    for flip in flips:
        data[(flip // 8) % len(data)] ^= 1 << (flip % 8)
    loads_the_same_or_refuses(bytes(data), weights, path)


@given(length=st.integers(0, 10**6))
@fuzz_settings
def test_a_truncated_file_is_refused(saved, length):
    good, _, weights, path = saved
    assert not loads_the_same_or_refuses(good[:length % len(good)], weights, path)


JSON_JUNK = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                                   st.text(max_size=5)),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3),
                         max_leaves=5)


def json_paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON document."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from json_paths(inner, prefix + (key,))


@given(data=st.data())
@fuzz_settings
def test_a_replaced_entry_loads_the_same_or_is_refused(saved, data):
    """One entry of the archive replaced (junk, another entry's bytes, a pickle), removed or added."""
    good, entries, weights, path = saved
    entries = dict(entries)
    names = sorted(entries)
    name = data.draw(st.sampled_from(names + ["weights/extra.npy"]), label="entry")
    action = data.draw(st.sampled_from(["bytes", "another entry", "pickle", "remove"]), label="action")
    if action == "remove":
        entries.pop(name, None)
    elif action == "bytes":
        entries[name] = data.draw(st.binary(max_size=300), label="bytes")
    elif action == "another entry":
        entries[name] = entries[data.draw(st.sampled_from(names), label="from")]
    else:
        entries[name] = pickled_npy()
    loads_the_same_or_refuses(zipped(entries, deflate=data.draw(st.booleans(), label="deflate")), weights, path)


@given(data=st.data())
@fuzz_settings
def test_a_changed_model_description_loads_the_same_or_is_refused(saved, data):
    """One value anywhere in the model's JSON description replaced by other JSON (or the text by bytes)."""
    good, entries, weights, path = saved
    document = json.loads(entries[model_file.CONFIG_ENTRY])
    where = data.draw(st.sampled_from(list(json_paths(document))[1:]), label="path")
    parent = document
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = data.draw(JSON_JUNK, label="value")
    text = json.dumps(document).encode()
    loads_the_same_or_refuses(zipped(dict(entries, **{model_file.CONFIG_ENTRY: text})), weights, path)


# -- load_state_dict and set_weights ---------------------------------------------------------------

#: An entry for a parameter of shape ``shape``: mostly well-formed, sometimes any junk.
def entries_for(shape):
    good = st.builds(lambda seed, dtype: np.random.default_rng(seed).standard_normal(shape).astype(dtype),
                     st.integers(0, 99), st.sampled_from([np.float64, np.float32, np.float16]))
    bad = [st.just(np.full(shape, np.nan)), st.just(np.full(shape, 1e300)), st.just(np.zeros(shape + (1,)))]
    tensors = [] if torch is None else [st.builds(lambda a: torch.from_numpy(np.array(a)), good)]
    return st.one_of(good, good, JUNK, *tensors, *bad)


def assert_applied(parameter, value, context):
    expected = np.asarray(np.asarray(value), dtype=np.float64).astype(parameter.data.dtype)
    assert parameter.data.tobytes() == expected.tobytes(), f"{context} was not applied as given"


def updated(parameters, update):
    """Run ``update()``; if it raises a fastrnn exception, every parameter must be bit-identical."""
    before = _snapshot(parameters)
    try:
        update()
    except FastRNNError as error:
        assert isinstance(error, (ValueError, TypeError)), repr(error)
        _assert_unchanged(parameters, before)
        return False
    return True


@pytest.mark.parametrize("make", [lambda: nn.LSTM(3, 4, num_layers=2), lambda: nn.GRU(2, 3, bidirectional=True),
                                  lambda: nn.RNN(2, 3, bias=False)], ids=["LSTM", "GRU", "RNN"])
@given(data=st.data())
@fuzz_settings
def test_load_state_dict_applies_all_or_nothing(make, data):
    module = make()
    named = dict(module.named_parameters())
    state = {name: np.full(p.shape, 0.5) for name, p in named.items()}
    for name in data.draw(st.lists(st.sampled_from(sorted(named)), unique=True, max_size=3), label="fuzzed"):
        state[name] = data.draw(entries_for(named[name].shape), label=name)
    for name in data.draw(st.lists(st.sampled_from(sorted(named)), unique=True, max_size=1), label="dropped"):
        del state[name]
    if data.draw(st.booleans(), label="unknown key"):
        state["weight_ih_l9"] = np.zeros((2, 2))
    strict = data.draw(st.booleans(), label="strict")
    if updated(list(named.values()), lambda: module.load_state_dict(state, strict=strict)):
        for name, value in state.items():
            if name in named:
                assert_applied(named[name], value, name)


@given(data=st.data())
@fuzz_settings
def test_set_weights_applies_all_or_nothing(data):
    model = keras.Sequential([keras.layers.GRU(3, seed=0), keras.layers.Dense(2, seed=1)])
    model.build((None, 4, 2))
    target = data.draw(st.sampled_from([model, model.layers[0]]), label="target")
    arrays = [np.full(w.shape, 0.5) for w in target.get_weights()]
    for index in data.draw(st.lists(st.integers(0, len(arrays) - 1), unique=True, max_size=2), label="fuzzed"):
        arrays[index] = data.draw(entries_for(arrays[index].shape), label=f"array {index}")
    if data.draw(st.booleans(), label="wrong count"):
        arrays = arrays[:-1] if data.draw(st.booleans(), label="fewer") else arrays + [np.zeros(2)]
    if updated(target.weights, lambda: target.set_weights(arrays)):
        for weight, value in zip(target.weights, arrays):
            assert_applied(weight, value, "a weight")
