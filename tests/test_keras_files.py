"""Real Keras files, both ways: ``.keras`` archives, ``.weights.h5`` and legacy ``.h5``.

Each architecture is written once against a module with Keras's names (``fastrnn.keras`` or real
``keras``). Files written by real Keras 3 must load in fastrnn with Keras's predictions, files written
by fastrnn must load in real Keras with fastrnn's predictions; damaged or hostile files must raise
``ModelFileError`` (never another exception, never run code); unsupported layers are named.
"""

import json
import os
import sys
import warnings
import zipfile

import numpy as np
import pytest

from fastrnn import keras
from fastrnn.exceptions import ArgumentError
from fastrnn.keras import ModelFileError, callbacks, layers
from helpers import assert_close, usable_keras
from tolerances import KERAS_PARITY


# -- architectures, written once for both libraries -------------------------------------------------
def _sequential_tokens(k):
    return k.Sequential([k.Input((7,), dtype="int32"), k.layers.Embedding(12, 5, mask_zero=True),
                         k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True)),
                         k.layers.GRU(3), k.layers.Dropout(0.2), k.layers.Dense(2, activation="softmax")])


def _sequential_features(k):
    return k.Sequential([k.Input((6, 3)), k.layers.Masking(0.0), k.layers.TimeDistributed(k.layers.Dense(4)),
                         k.layers.SimpleRNN(5, return_sequences=True), k.layers.LayerNormalization(),
                         k.layers.GlobalAveragePooling1D(), k.layers.Activation("tanh"), k.layers.Dense(1)])


def _seq2seq(k):
    source, target = k.Input((6, 4), name="source"), k.Input((5, 4), name="target")
    _, *states = k.layers.LSTM(8, return_state=True, name="encoder")(source)
    decoded = k.layers.LSTM(8, return_sequences=True, name="decoder")(target, initial_state=states)
    out = k.layers.TimeDistributed(k.layers.Dense(3, activation="softmax"), name="classify")(decoded)
    return k.Model([source, target], out, name="seq2seq")


def _masked_attention(k):
    source, target = k.Input((7,), dtype="int32", name="source"), k.Input((5,), dtype="int32", name="target")
    embedded = k.layers.Embedding(12, 6, mask_zero=True, name="source_embedding")(source)
    encoded, state = k.layers.GRU(6, return_sequences=True, return_state=True, name="encoder")(embedded)
    target_embedded = k.layers.Embedding(12, 6, mask_zero=True, name="target_embedding")(target)
    # Keras 3.15 drops an RNN input's mask when initial_state is given; fastrnn keeps it, so Keras gets it
    explicit = {} if k is keras else {"mask": k.ops.not_equal(target, 0)}
    decoded = k.layers.GRU(6, return_sequences=True, name="decoder")(target_embedded, initial_state=[state],
                                                                      **explicit)
    context = k.layers.Attention(use_scale=True, name="attention")([decoded, encoded])
    additive = k.layers.AdditiveAttention(name="additive")([decoded, encoded])
    merged = k.layers.Concatenate(name="merge")([decoded, context, additive])
    return k.Model([source, target], k.layers.Dense(12, activation="softmax", name="vocab")(merged))


def _shared_heads(k):
    a, b = k.Input((5, 3), name="a"), k.Input((5, 3), name="b")
    shared = k.layers.LSTM(4, name="shared")
    ha, hb = shared(a), shared(b)
    summed = k.layers.Add(name="add")([ha, hb])
    product = k.layers.Multiply(name="mul")([ha, hb])
    dot = k.layers.Dot(axes=1, name="dot")([ha, hb])
    joined = k.layers.Concatenate(name="join")([summed, product, dot])
    out_a = k.layers.Dense(1, name="out_a")(joined)
    out_b = k.layers.Dense(2, activation="sigmoid", name="out_b")(k.layers.Subtract(name="sub")([ha, hb]))
    return k.Model([a, b], [out_a, out_b], name="two_heads")


def _reshaping(k):
    x = k.Input((4, 6), name="x")
    pooled = k.layers.GlobalMaxPooling1D(name="pool")(x)
    repeated = k.layers.RepeatVector(3, name="repeat")(pooled)
    rnn = k.layers.SimpleRNN(4, return_sequences=True, name="rnn")(repeated)
    permuted = k.layers.Permute((2, 1), name="permute")(rnn)
    reshaped = k.layers.Reshape((6, 2), name="reshape")(permuted)
    flat = k.layers.Flatten(name="flat")(reshaped)
    merged = k.layers.Average(name="avg")([k.layers.Dense(5, name="d1")(flat), k.layers.Dense(5, name="d2")(flat)])
    out = k.layers.Maximum(name="max")([merged, k.layers.Minimum(name="min")([merged, merged])])
    return k.Model(x, out, name="reshaping")


BUILDERS = [_sequential_tokens, _sequential_features, _seq2seq, _masked_attention, _shared_heads, _reshaping]


def _inputs(builder, seed=0):
    rng = np.random.default_rng(seed)
    if builder is _sequential_tokens:
        x = rng.integers(1, 12, (4, 7))
        x[0, 4:] = 0
        x[1, :2] = 0
        return x
    if builder is _sequential_features:
        x = rng.normal(size=(4, 6, 3)).astype(np.float32)
        x[0, 3:] = 0.0
        return x
    if builder is _seq2seq:
        return [rng.normal(size=(4, 6, 4)).astype(np.float32), rng.normal(size=(4, 5, 4)).astype(np.float32)]
    if builder is _masked_attention:
        source, target = rng.integers(1, 12, (4, 7)), rng.integers(1, 12, (4, 5))
        source[0, 5:] = 0
        target[1, 3:] = 0
        return [source, target]
    if builder is _shared_heads:
        return [rng.normal(size=(4, 5, 3)).astype(np.float32), rng.normal(size=(4, 5, 3)).astype(np.float32)]
    return rng.normal(size=(4, 4, 6)).astype(np.float32)


def _randomize(model, seed=1):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.4, np.shape(w)).astype(np.float32) for w in model.get_weights()])


def _predict(model, x):
    out = model.predict(x, verbose=0)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def _assert_same(actual, expected, what):
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, KERAS_PARITY, what, f"output {index}")


def _fastrnn_model(builder):
    model = builder(keras)
    if isinstance(model, keras.Sequential):
        model.build()
    _randomize(model)
    return model


# -- Keras -> fastrnn ---------------------------------------------------------------------------------
@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_keras_archive_loads_in_fastrnn(tmp_path, builder):
    pytest.importorskip("h5py")
    k = usable_keras()
    original = builder(k)
    _randomize(original)
    path = tmp_path / "model.keras"
    original.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an uncompiled Keras model loads uncompiled, without a warning
        loaded = keras.load_model(path)
    assert loaded.optimizer is None
    x = _inputs(builder)
    _assert_same(_predict(loaded, x), _predict(original, x), f"{builder.__name__} written by Keras")
    assert [layer.name for layer in loaded.layers if not isinstance(layer, layers.InputLayer)] == \
           [layer.name for layer in original.layers if type(layer).__name__ != "InputLayer"]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_fastrnn_archive_loads_in_keras(tmp_path, builder):
    pytest.importorskip("h5py")
    k = usable_keras()
    model = _fastrnn_model(builder)
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    loaded = k.saving.load_model(path)
    x = _inputs(builder)
    _assert_same(_predict(loaded, x), _predict(model, x), f"{builder.__name__} written by fastrnn")
    # and back: fastrnn reads its own .keras file into the same model
    _assert_same(_predict(keras.load_model(path), x), _predict(model, x), f"{builder.__name__} round trip")


@pytest.mark.parametrize("builder", [_sequential_tokens, _seq2seq, _masked_attention, _reshaping],
                         ids=lambda b: b.__name__)
def test_weights_files_both_ways(tmp_path, builder):
    pytest.importorskip("h5py")
    k = usable_keras()
    x = _inputs(builder)
    theirs, ours = builder(k), _fastrnn_model(builder)
    _randomize(theirs, seed=5)
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    _assert_same(_predict(ours, x), _predict(theirs, x), "Keras's weights in fastrnn")

    _randomize(ours, seed=6)
    ours.save_weights(tmp_path / "fastrnn.weights.h5")
    theirs.load_weights(tmp_path / "fastrnn.weights.h5")
    _assert_same(_predict(theirs, x), _predict(ours, x), "fastrnn's weights in Keras")


@pytest.mark.parametrize("builder", [_sequential_tokens, _sequential_features, _seq2seq, _shared_heads],
                         ids=lambda b: b.__name__)
def test_legacy_h5_written_by_keras_loads(tmp_path, builder):
    pytest.importorskip("h5py")
    k = usable_keras()
    original = builder(k)
    _randomize(original)
    path = tmp_path / "model.h5"
    original.save(path)
    loaded = keras.load_model(path)
    x = _inputs(builder)
    _assert_same(_predict(loaded, x), _predict(original, x), f"{builder.__name__} legacy .h5")
    # its weights load into an existing model too
    fresh = _fastrnn_model(builder)
    fresh.load_weights(path)
    _assert_same(_predict(fresh, x), _predict(original, x), f"{builder.__name__} legacy .h5 weights")


def test_legacy_h5_is_not_written(tmp_path):
    model = _fastrnn_model(_sequential_features)
    with pytest.raises(ArgumentError, match="legacy Keras HDF5"):
        model.save(tmp_path / "model.h5")
    assert not os.listdir(tmp_path)


# -- the formats and their dispatch --------------------------------------------------------------------
def test_save_picks_the_format_by_extension_and_load_by_content(tmp_path):
    pytest.importorskip("h5py")
    model = _fastrnn_model(_sequential_features)
    model.compile(optimizer="adam", loss="mse")
    x = _inputs(_sequential_features)
    for name, is_keras in [("m.fastrnn", False), ("m", False), ("m.bin", False), ("m.keras", True)]:
        model.save(tmp_path / name)
        with zipfile.ZipFile(tmp_path / name) as archive:
            assert ("config.json" in archive.namelist()) == is_keras
            assert ("fastrnn_model.json" in archive.namelist()) != is_keras
        loaded = keras.load_model(tmp_path / name)
        assert type(loaded.optimizer).__name__ == "Adam"
        assert type(loaded.loss).__name__ == "MeanSquaredError"
        _assert_same(_predict(loaded, x), _predict(model, x), name)
    # content, not the name, decides: a Keras archive under another name still loads
    os.replace(tmp_path / "m.keras", tmp_path / "renamed.fastrnn")
    _assert_same(_predict(keras.load_model(tmp_path / "renamed.fastrnn"), x), _predict(model, x), "renamed")


def test_fastrnn_weights_file_round_trip_and_checkpoint(tmp_path):
    pytest.importorskip("h5py")
    model = _fastrnn_model(_seq2seq)
    model.save_weights(tmp_path / "a.weights.h5")
    other = _fastrnn_model(_seq2seq)
    _randomize(other, seed=9)
    other.load_weights(tmp_path / "a.weights.h5")
    for mine, theirs in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ArgumentError, match="weights.h5"):
        model.save_weights(tmp_path / "a.h5")

    seq = _fastrnn_model(_sequential_features)
    seq.compile(optimizer="adam", loss="mse")
    x = _inputs(_sequential_features)
    y = np.zeros((4, 1), np.float32)
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.weights.h5"), save_weights_only=True,
                                           monitor="loss")
    seq.fit(x, y, epochs=2, verbose=0, callbacks=[checkpoint])
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("w-")) == ["w-1.weights.h5", "w-2.weights.h5"]
    fresh = _fastrnn_model(_sequential_features)
    fresh.load_weights(tmp_path / "w-2.weights.h5")
    for mine, theirs in zip(seq.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ArgumentError, match="weights.h5"):
        callbacks.ModelCheckpoint(str(tmp_path / "w.keras"), save_weights_only=True)


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    model = _fastrnn_model(_sequential_features)
    with pytest.raises(ImportError, match=r"fastrnn\[keras\]"):
        model.save(tmp_path / "m.keras")
    with pytest.raises(ImportError, match=r"fastrnn\[keras\]"):
        model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.fastrnn")  # fastrnn's own format needs no h5py
    assert keras.load_model(tmp_path / "m.fastrnn").count_params() == model.count_params()


# -- damaged, hostile and unsupported files ------------------------------------------------------------
def _archive(tmp_path, edit_config=None, weights=None, name="edited.keras", drop=()):
    """A fastrnn-written .keras file with its config (and optionally its weights) replaced."""
    source = tmp_path / "source.keras"
    if not source.exists():
        _fastrnn_model(_seq2seq).save(source)
    with zipfile.ZipFile(source) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    if edit_config is not None:
        config = json.loads(entries["config.json"])
        result = edit_config(config)
        entries["config.json"] = result if isinstance(result, (bytes, str)) else json.dumps(config)
    if weights is not None:
        entries["model.weights.h5"] = weights
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in entries.items():
            if key not in drop:
                archive.writestr(key, value)
    return path


def _layer(config, name):
    return next(entry for entry in config["config"]["layers"] if entry["name"] == name)


def _set(entry, key, value):
    entry["config"][key] = value


EDITS = {
    "malformed JSON": (lambda c: "{not json", "malformed JSON"),
    "not a dict": (lambda c: "[1, 2]", "model config"),
    "no layers": (lambda c: c["config"].pop("layers"), "list of layers"),
    "unknown model class": (lambda c: c.update(class_name="MyModel"), "MyModel"),
    "huge layer": (lambda c: _set(_layer(c, "encoder"), "units", 10 ** 9), "more weight values"),
    "wrong units": (lambda c: _set(_layer(c, "encoder"), "units", 7), "shape"),
    "regularizer": (lambda c: _set(_layer(c, "encoder"), "kernel_regularizer",
                                   {"class_name": "L2", "config": {"l2": 0.01}}), "regularizers"),
    "unknown key": (lambda c: _set(_layer(c, "encoder"), "frobnicate", 3), "frobnicate"),
    "unknown activation": (lambda c: _set(_layer(c, "encoder"), "activation", "os.system"), "activation"),
    "dangling input": (lambda c: _layer(c, "decoder")["inbound_nodes"][0]["args"][0]["config"].update(
        keras_history=["nowhere", 0, 0]), "nowhere|decoder"),
    "huge input": (lambda c: _set(_layer(c, "source"), "batch_shape", [None, 10 ** 12, 4]), "values per sample"),
    "nested garbage": (lambda c: _set(_layer(c, "classify"), "layer", [1, 2]), "layer entry"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_damaged_keras_configs_raise_model_file_error(tmp_path, case):
    pytest.importorskip("h5py")
    edit, message = EDITS[case]
    with pytest.raises(ModelFileError, match=message):
        keras.load_model(_archive(tmp_path, edit))


def test_unsupported_layers_are_named(tmp_path):
    pytest.importorskip("h5py")

    def conv(config):
        entry = _layer(config, "classify")
        entry["class_name"], entry["name"] = "Conv1D", "my_conv"

    with pytest.raises(ModelFileError, match=r"'my_conv' \(Conv1D\)"):
        keras.load_model(_archive(tmp_path, conv))


def test_lambda_layers_are_refused_without_running_code(tmp_path):
    pytest.importorskip("h5py")
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"

    def lam(config):
        entry = _layer(config, "classify")
        entry["class_name"], entry["name"] = "Lambda", "evil"
        entry["config"] = {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": code}}}

    with pytest.raises(ModelFileError, match="Lambda.*never runs"):
        keras.load_model(_archive(tmp_path, lam))
    assert not marker.exists()


def test_damaged_weights_raise_model_file_error(tmp_path):
    h5py = pytest.importorskip("h5py")
    for weights, message in [(b"garbage", "HDF5"), (b"\x89HDF\r\n\x1a\n" + bytes(100), "HDF5")]:
        with pytest.raises(ModelFileError, match=message):
            keras.load_model(_archive(tmp_path, weights=weights))
    with pytest.raises(ModelFileError, match="model.weights.h5"):
        keras.load_model(_archive(tmp_path, drop=("model.weights.h5",)))

    # a weights file whose datasets have the wrong shapes, or are missing
    import io
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("layers/lstm/cell/vars/0", data=np.zeros((2, 2), np.float32))
    with pytest.raises(ModelFileError, match="more weight values"):
        keras.load_model(_archive(tmp_path, weights=buffer.getvalue()))

    # a compressed dataset declaring far more than the file holds
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("layers/lstm/cell/vars/0", shape=(20000, 1000), dtype=np.float32, compression="gzip",
                         fillvalue=0.0)
    with pytest.raises(ModelFileError, match="declare"):
        keras.load_model(_archive(tmp_path, weights=buffer.getvalue()))


def test_garbage_files_raise_model_file_error(tmp_path):
    pytest.importorskip("h5py")
    for name, data in [("trunc.keras", b"PK\x03\x04garbage"), ("sig.h5", b"\x89HDF\r\n\x1a\n" + bytes(64)),
                       ("empty.keras", b"")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFileError):
            keras.load_model(tmp_path / name)
    model = _fastrnn_model(_seq2seq)
    (tmp_path / "bad.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelFileError):
        model.load_weights(tmp_path / "bad.weights.h5")
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "absent.weights.h5")


def test_weights_of_another_architecture_leave_the_model_unchanged(tmp_path):
    pytest.importorskip("h5py")
    _fastrnn_model(_sequential_features).save_weights(tmp_path / "other.weights.h5")
    model = _fastrnn_model(_seq2seq)
    before = model.get_weights()
    with pytest.raises(ModelFileError):
        model.load_weights(tmp_path / "other.weights.h5")
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_saving_a_lambda_model_as_keras_is_refused(tmp_path):
    pytest.importorskip("h5py")
    x = keras.Input((3,))
    model = keras.Model(x, layers.Lambda(lambda t: t * 2)(x))
    with pytest.raises(ModelFileError, match="Lambda"):
        model.save(tmp_path / "m.keras")
    assert not os.listdir(tmp_path)


def test_hdf5_links_to_other_files_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.create_dataset("data", data=np.ones(3, np.float32))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(4 * 32, np.float32).tobytes())
    model = _fastrnn_model(_seq2seq)
    for kind in ("external link", "external storage"):
        path = tmp_path / f"{kind.replace(' ', '_')}.weights.h5"
        model.save_weights(path)
        with h5py.File(path, "a") as f:
            if kind == "external link":
                f["layers/elsewhere"] = h5py.ExternalLink(str(secret), "/data")
            else:
                del f["layers/lstm/cell/vars/0"]
                f.create_dataset("layers/lstm/cell/vars/0", shape=(4, 32), dtype=np.float32,
                                 external=[(str(raw), 0, 4 * 4 * 32)])
        with pytest.raises(ModelFileError, match="other files|links"):
            model.load_weights(path)


def test_keras2_style_legacy_file(tmp_path):
    """A legacy file in Keras 2's own config format ([[name, node, index, kwargs]] nodes, batch_input_shape,
    weight names with ':0'), checked against the computation written out in NumPy."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    kernel, bias = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    config = {"class_name": "Functional", "config": {
        "name": "model", "layers": [
            {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 3], "dtype": "float32", "sparse": False, "ragged": False,
                        "name": "x"}},
            {"class_name": "Dense", "name": "dense", "inbound_nodes": [[["x", 0, 0, {}]]],
             "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 2, "activation": "tanh",
                        "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform",
                                                                 "config": {"seed": None}},
                        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
                        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
                        "bias_constraint": None}}],
        "input_layers": [["x", 0, 0]], "output_layers": [["dense", 0, 0]]}}
    path = tmp_path / "keras2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [b"x", b"dense"]
        group.create_group("x").attrs["weight_names"] = []
        dense = group.create_group("dense")
        dense.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        dense.create_dataset("dense/kernel:0", data=kernel)
        dense.create_dataset("dense/bias:0", data=bias)
    model = keras.load_model(path)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    assert_close(model.predict(x, verbose=0), np.tanh(x.astype(np.float64) @ kernel + bias), KERAS_PARITY,
                 "Keras 2 style file", "prediction")


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, prefix + (key,))


def test_mutated_keras_configs_load_or_raise_model_file_error(tmp_path):
    """Any value of config.json replaced by a value of another kind: the file loads, or ModelFileError."""
    pytest.importorskip("h5py")
    _archive(tmp_path, None)
    with zipfile.ZipFile(tmp_path / "source.keras") as archive:
        original = json.loads(archive.read("config.json"))
    paths = [path for path, _ in _paths(original) if path]
    rng = np.random.default_rng(0)
    replacements = [None, -1, 0, 2 ** 40, 1e308, float("nan"), "", "x", [], {}, [None], {"class_name": None},
                    True]
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(150):
        path = paths[rng.integers(len(paths))]
        replacement = replacements[rng.integers(len(replacements))]

        def edit(config, path=path, replacement=replacement):
            target = config
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = replacement

        try:
            keras.load_model(_archive(tmp_path, edit))
            outcomes["loaded"] += 1
        except ModelFileError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def test_flipped_bytes_in_the_weights_load_or_raise_model_file_error(tmp_path):
    pytest.importorskip("h5py")
    _archive(tmp_path, None)
    with zipfile.ZipFile(tmp_path / "source.keras") as archive:
        data = archive.read("model.weights.h5")
    rng = np.random.default_rng(1)
    refused = 0
    for _ in range(100):
        damaged = bytearray(data)
        for _ in range(rng.integers(1, 8)):
            damaged[rng.integers(len(damaged))] = rng.integers(256)
        try:
            keras.load_model(_archive(tmp_path, weights=bytes(damaged)))
        except ModelFileError:
            refused += 1
    assert refused > 0
    for size in (0, 8, 100, len(data) // 2, len(data) - 1):  # truncated
        with pytest.raises(ModelFileError):
            keras.load_model(_archive(tmp_path, weights=data[:size]))


# Keras warns that the optimizer's variables are not in the file, as for its own unfitted models
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compile_settings_both_ways(tmp_path):
    pytest.importorskip("h5py")
    k = usable_keras()
    x, y = _inputs(_sequential_tokens), np.array([0, 1, 1, 0])
    ours = _fastrnn_model(_sequential_tokens)
    ours.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours.save(tmp_path / "ours.keras")
    theirs = k.saving.load_model(tmp_path / "ours.keras")
    assert type(theirs.optimizer).__name__ == "Adam"
    assert float(theirs.optimizer.learning_rate) == pytest.approx(0.01)
    assert_close(np.array(theirs.evaluate(x, y, verbose=0)), np.array(ours.evaluate(x, y, verbose=0)),
                 KERAS_PARITY, "compiled in fastrnn, evaluated in Keras", "loss and accuracy")

    theirs = _sequential_tokens(k)
    theirs.compile(optimizer=k.optimizers.RMSprop(0.003), loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"])
    theirs.save(tmp_path / "theirs.keras")
    loaded = keras.load_model(tmp_path / "theirs.keras")
    assert type(loaded.optimizer).__name__ == "RMSprop"
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.003)
    assert_close(np.array(loaded.evaluate(x, y, verbose=0)), np.array(theirs.evaluate(x, y, verbose=0)),
                 KERAS_PARITY, "compiled in Keras, evaluated in fastrnn", "loss and accuracy")
    assert keras.load_model(tmp_path / "theirs.keras", compile=False).optimizer is None

    # an optimizer fastrnn lacks: a warning and an uncompiled model with its weights
    with zipfile.ZipFile(tmp_path / "theirs.keras") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    config["compile_config"]["optimizer"] = {"class_name": "Lion", "config": {"learning_rate": 0.1}}
    entries["config.json"] = json.dumps(config)
    with zipfile.ZipFile(tmp_path / "lion.keras", "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.warns(UserWarning, match="uncompiled"):
        model = keras.load_model(tmp_path / "lion.keras")
    assert model.optimizer is None
