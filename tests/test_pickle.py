"""Everything a user holds pickles, and a copy behaves bit for bit like the original.

The public classes are read from the ``__all__`` of every public module, so a
class added later without a case here fails :func:`test_every_public_class_has_a_case`.
Each case builds an object in some state (fresh, built, mid-pass with a tape
kept for ``backward``, trained with optimizer slots), pickles it and checks:

* the copy's whole state is the original's (:func:`assert_identical` walks both:
  same types, same array bytes, same random-generator states, objects shared in
  the original shared alike in the copy, nothing shared between the two);
* the same calls on both (predictions, losses, gradients) give identical results;
* one more training step on both (dropout masks drawn from the kept generators)
  leaves both in identical states.

Comparisons are exact (``tobytes``), not within a tolerance: a copy runs the same
kernels on the same bytes. A ``multiprocessing`` spawn pool then runs trained
models in two fresh worker processes and compares with the parent.
"""

import functools
import inspect
import tempfile
import io
import math
import multiprocessing
import os
import pickle
import threading
import types
from copy import deepcopy

import numpy as np
import pytest

import fastrnn
import fastrnn.keras
import fastrnn.losses
import fastrnn.nn
import fastrnn.optim
from fastrnn import exceptions as fastrnn_exceptions
from fastrnn.keras import activations, callbacks, initializers, layers, metrics
from fastrnn.keras import losses as keras_losses
from fastrnn.keras import optimizers as keras_optimizers
from fastrnn.parameter import Parameter

#: Modules whose ``__all__`` lists public classes that must pickle.
PUBLIC_MODULES = (fastrnn, fastrnn.nn, fastrnn.optim, fastrnn.losses, fastrnn.keras, layers, keras_losses,
                  metrics, keras_optimizers, callbacks, activations, initializers)

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)

B, T, D, H = 3, 5, 4, 6  # small shapes: these tests check identity, not numerics


def round_trip(obj, protocol=pickle.DEFAULT_PROTOCOL):
    return pickle.loads(pickle.dumps(obj, protocol=protocol))


# the comparison ---------------------------------------------------------------------------
_SCALARS = (bool, int, complex, str, bytes, type(None), type(Ellipsis))
_BY_REFERENCE = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, np.ufunc)


def _is_module_constant(obj):
    """Objects that pickle by name and so unpickle to themselves (the built-in activations)."""
    return isinstance(obj, activations.Activation) and activations.get(obj.name) is obj


class _Comparison:
    """One walk over an original and its copy; remembers which original object became which copy."""

    def __init__(self, distinct=True):
        self.distinct = distinct  # whether no mutable object may be common to the two sides
        self.copies = {}  # id(original object) -> the copy's object
        self.alive = []  # keeps every visited object alive, so that no id is reused during the walk

    def compare(self, a, b, path):
        assert type(a) is type(b), f"{path}: a {type(a).__name__} became a {type(b).__name__}"
        if isinstance(a, float):
            assert a.hex() == b.hex() or (math.isnan(a) and math.isnan(b)), f"{path}: {a!r} became {b!r}"
            return
        if isinstance(a, _SCALARS) or isinstance(a, np.dtype):
            assert a == b, f"{path}: {a!r} became {b!r}"
            return
        if isinstance(a, np.generic):
            assert a.tobytes() == b.tobytes(), f"{path}: {a!r} became {b!r}"
            return
        if isinstance(a, _BY_REFERENCE) or (inspect.isroutine(a) and not inspect.ismethod(a)):
            assert a is b or a == b, f"{path}: {a!r} became {b!r}"  # pickled by name: the same object
            return
        if isinstance(a, tuple):  # immutable: identity does not matter
            self._sequence(a, b, path)
            return
        if id(a) in self.copies:
            assert self.copies[id(a)] is b, (f"{path}: an object the original reaches twice is not the same "
                                             "object in the copy (sharing was lost)")
            return
        assert a is not b or not self.distinct or _is_module_constant(a), (
            f"{path}: the copy shares this {type(a).__name__} with the original")
        self.copies[id(a)] = b
        self.alive += [a, b]
        if isinstance(a, np.ndarray):
            assert (a.dtype, a.shape) == (b.dtype, b.shape), (
                f"{path}: array {a.dtype}{a.shape} became {b.dtype}{b.shape}")
            if a.dtype.hasobject:
                self._sequence(list(a.ravel()), list(b.ravel()), path)
            else:
                assert a.tobytes() == b.tobytes(), f"{path}: array values differ"
        elif isinstance(a, np.random.Generator):
            assert type(a.bit_generator) is type(b.bit_generator), f"{path}: another bit generator"
            self.compare(a.bit_generator.state, b.bit_generator.state, path + ".bit_generator.state")
            if hasattr(a.bit_generator, "seed_seq"):  # what Generator.spawn() draws from (NumPy >= 1.25)
                self.compare(a.bit_generator.seed_seq, b.bit_generator.seed_seq, path + ".bit_generator.seed_seq")
        elif isinstance(a, types.MethodType):
            assert a.__func__ is b.__func__, f"{path}: bound to another function"
            self.compare(a.__self__, b.__self__, path + ".__self__")
        elif isinstance(a, dict):
            assert len(a) == len(b), f"{path}: {len(a)} entries became {len(b)}"
            for index, ((ka, va), (kb, vb)) in enumerate(zip(a.items(), b.items())):
                self.compare(ka, kb, f"{path}<key {index}>")
                self.compare(va, vb, f"{path}[{ka!r}]")
            self._state(a, b, path, skip_items=True)
        elif isinstance(a, list):
            self._sequence(a, b, path)
        elif isinstance(a, (set, frozenset)):
            assert a == b, f"{path}: {a!r} became {b!r}"
        else:
            self._state(a, b, path)

    def _sequence(self, a, b, path):
        assert len(a) == len(b), f"{path}: length {len(a)} became {len(b)}"
        for index, (x, y) in enumerate(zip(a, b)):
            self.compare(x, y, f"{path}[{index}]")

    def _state(self, a, b, path, skip_items=False):
        """Compare what pickle itself stores for ``a`` and ``b`` (``__reduce_ex__``)."""
        ra, rb = a.__reduce_ex__(pickle.HIGHEST_PROTOCOL), b.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        if isinstance(ra, str):  # a global reached by name
            assert ra == rb, f"{path}: global {ra} became {rb}"
            return
        ra, rb = list(ra) + [None] * (5 - len(ra)), list(rb) + [None] * (5 - len(rb))
        if skip_items:
            ra[4] = rb[4] = None
        ra[3:5] = [None if it is None else list(it) for it in ra[3:5]]
        rb[3:5] = [None if it is None else list(it) for it in rb[3:5]]
        for part, x, y in zip(("constructor", "arguments", "state", "items", "entries"), ra, rb):
            self.compare(x, y, f"{path}<{part}>")


def assert_identical(original, copy, distinct=True):
    """Fail unless ``copy`` is a deep, bit-exact replica of ``original`` (see the module docstring).

    ``distinct=False`` compares two results that may both hold an input (a mask passed through).
    """
    _Comparison(distinct).compare(original, copy, "obj")


# cases --------------------------------------------------------------------------------------
class Subject:
    """One object to pickle and what to do with it afterwards.

    Attributes
    ----------
    obj : object
        What is pickled (a tuple when several objects must travel together,
        such as a module and the optimizer holding its parameters).
    main : object
        The instance of the case's class inside ``obj``.
    probe : callable or None
        ``probe(obj) -> result``: calls that compare the original with the copy.
    step : callable or None
        ``step(obj) -> result``: one more training step.
    """

    def __init__(self, obj, main=None, probe=None, step=None):
        self.obj, self.main, self.probe, self.step = obj, obj if main is None else main, probe, step


class Case:
    def __init__(self, cls, name, make):
        self.cls, self.name, self.make = cls, name, make

    def __repr__(self):
        return self.name


CASES = []


def case(cls, name):
    """Register the decorated ``make() -> Subject`` as a case of ``cls``."""
    def register(make):
        CASES.append(Case(cls, f"{cls.__module__.split('.', 1)[-1]}.{cls.__name__}-{name}", make))
        return make
    return register


def like(value, rng):
    """Random values shaped like ``value`` (an array, or a list of arrays and Nones)."""
    if isinstance(value, (list, tuple)):
        return [like(v, rng) for v in value]
    return None if value is None else rng.standard_normal(np.shape(value)).astype(np.asarray(value).dtype)


def weights_and_grads(parameters):
    return [(p.data, p.grad) for p in parameters]


# fastrnn.nn modules, alone and with a fastrnn.optim optimizer
NN_CONFIGS = {
    "rnn-tanh": (fastrnn.nn.RNN, {}),
    "rnn-relu-3layers-dropout-batch_first-nobias": (fastrnn.nn.RNN, dict(nonlinearity="relu", num_layers=3, dropout=0.5,
                                                                         batch_first=True, bias=False)),
    "lstm": (fastrnn.nn.LSTM, {}),
    "lstm-proj": (fastrnn.nn.LSTM, dict(proj_size=2)),
    "lstm-proj-2layers-bidirectional-dropout": (fastrnn.nn.LSTM, dict(proj_size=3, num_layers=2, bidirectional=True,
                                                                       dropout=0.3)),
    "gru": (fastrnn.nn.GRU, {}),
    "gru-bidirectional-float64-2layers-dropout": (fastrnn.nn.GRU, dict(bidirectional=True, dtype=np.float64,
                                                                        num_layers=2, dropout=0.2)),
}
NN_STATES = ("fresh", "mid-pass", "trained")


class NNRun:
    """Inputs and the training step of a fastrnn.nn module (identical draws on original and copy)."""

    def __init__(self, module, lengths):
        rng = np.random.default_rng(7)
        shape = (B, T, D) if module.batch_first else (T, B, D)
        self.x = rng.standard_normal(shape).astype(module.dtype)
        self.lengths = lengths
        self.seed = 11

    def forward_backward(self, module):
        module.train()
        output, state = module(self.x, lengths=self.lengths)
        return output, state, self.backward(module, output, state)

    def backward(self, module, output, state):
        rng = np.random.default_rng(self.seed)
        d_h = like(state[0] if isinstance(state, tuple) else state, rng)
        return module.backward(like(output, rng), d_h)

    def predict(self, module):
        with fastrnn.nn.no_grad():
            module.eval()
            result = module(self.x, lengths=self.lengths)
        module.train()
        return result


def _nn_subject(cls, options, state, lengths):
    module = cls(D, H, seed=3, **options)
    run = NNRun(module, lengths)
    optimizer = fastrnn.optim.Adam(module.parameters(), lr=0.01)
    pending = None
    if state == "trained":
        for _ in range(2):
            run.forward_backward(module)
            optimizer.step()
            optimizer.zero_grad()
        run.forward_backward(module)  # gradients present when pickled
    elif state == "mid-pass":
        module.train()
        pending = module(run.x, lengths=run.lengths)  # the tape is pickled; backward runs on the copy

    def step(obj):
        module, optimizer, pending = obj
        finished = None if pending is None else run.backward(module, *pending)
        result = run.forward_backward(module)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        return finished, result, weights_and_grads(module.parameters()), optimizer.state_dict()

    return Subject((module, optimizer, pending), main=module, probe=lambda obj: run.predict(obj[0]), step=step)


for _name, (_cls, _options) in NN_CONFIGS.items():
    for _state in NN_STATES:
        case(_cls, f"{_name}-{_state}")(functools.partial(_nn_subject, _cls, _options, _state, None))
case(fastrnn.nn.LSTM, "lengths-mid-pass")(
    functools.partial(_nn_subject, fastrnn.nn.LSTM, dict(bidirectional=True), "mid-pass", np.array([5, 2, 4])))
case(fastrnn.nn.GRU, "lengths-trained")(
    functools.partial(_nn_subject, fastrnn.nn.GRU, dict(num_layers=2, dropout=0.4), "trained", np.array([1, 5, 3])))


@case(fastrnn.nn.Module, "with-parameter-and-submodule")
def _module_subject():
    module = fastrnn.nn.Module()
    module.scale = Parameter(np.arange(3.0))
    module.inner = fastrnn.nn.GRU(2, 3, seed=0)
    module.inner.weight_hh_l0.accumulate(np.ones((9, 3)))
    return Subject(module, probe=lambda m: list(m.state_dict().items()))


# fastrnn.nn blocks, cells and containers: mid-pass (the tape travels) and after a backward
def _int_input(rng):
    return rng.integers(0, 7, (T, B))


NN_BLOCK_CONFIGS = {
    "Linear": (lambda: fastrnn.nn.Linear(D, H, seed=1), (B, D)),
    "Embedding": (lambda: fastrnn.nn.Embedding(7, D, padding_idx=0, seed=1), _int_input),
    "Dropout": (lambda: fastrnn.nn.Dropout(0.3, seed=2), (B, D)),
    "LayerNorm": (lambda: fastrnn.nn.LayerNorm(D, dtype=np.float64), (B, D)),
    "Identity": (lambda: fastrnn.nn.Identity(), (B, D)),
    "ReLU": (lambda: fastrnn.nn.ReLU(), (B, D)),
    "Tanh": (lambda: fastrnn.nn.Tanh(), (B, D)),
    "Sigmoid": (lambda: fastrnn.nn.Sigmoid(), (B, D)),
    "GELU": (lambda: fastrnn.nn.GELU(approximate="tanh"), (B, D)),
    "Softmax": (lambda: fastrnn.nn.Softmax(dim=1), (B, D)),
    "LogSoftmax": (lambda: fastrnn.nn.LogSoftmax(dim=-1), (B, D)),
    "RNNCell": (lambda: fastrnn.nn.RNNCell(D, H, nonlinearity="relu", seed=1), (B, D)),
    "LSTMCell": (lambda: fastrnn.nn.LSTMCell(D, H, seed=1), (B, D)),
    "GRUCell": (lambda: fastrnn.nn.GRUCell(D, H, dtype=np.float64, seed=1), (B, D)),
    "Sequential": (lambda: fastrnn.nn.Sequential(fastrnn.nn.Embedding(7, D, seed=0), fastrnn.nn.LSTM(D, H, seed=1),
                                                 fastrnn.nn.LastStep(), fastrnn.nn.Dropout(0.2, seed=3),
                                                 fastrnn.nn.Linear(H, 2, seed=2)), _int_input),
    "TakeOutput": (lambda: fastrnn.nn.TakeOutput(), lambda rng: (rng.standard_normal((T, B, H)), None)),
    "LastStep": (lambda: fastrnn.nn.LastStep(batch_first=True), (B, T, H)),
}


def _block_input(shape, rng):
    return shape(rng) if callable(shape) else rng.standard_normal(shape).astype(np.float32)


def _block_backward(module, output):
    rng = np.random.default_rng(5)
    if isinstance(output, tuple):
        grads = [like(o, rng) for o in output]
        return module.backward(*grads)
    return module.backward(like(output, rng))


def _block_subject(name):
    make, shape = NN_BLOCK_CONFIGS[name]
    module = make()
    x = _block_input(shape, np.random.default_rng(3))
    pending = module(x)  # the tape is pickled; backward runs on the copy

    def step(obj):
        module, pending = obj
        finished = _block_backward(module, pending)
        again = module(x)
        return finished, again, _block_backward(module, again), weights_and_grads(module.parameters())

    def probe(obj):
        with fastrnn.nn.no_grad():
            obj[0].eval()
            result = obj[0](x)
        obj[0].train()
        return result

    return Subject((module, pending), main=module, probe=probe, step=step)


for _name in NN_BLOCK_CONFIGS:
    case(getattr(fastrnn.nn, _name), "mid-pass")(functools.partial(_block_subject, _name))


@case(fastrnn.nn.ModuleList, "with-layers")
def _module_list_subject():
    layers_ = fastrnn.nn.ModuleList([fastrnn.nn.Linear(2, 3, seed=0), fastrnn.nn.GRU(3, 2, seed=1)])
    layers_[0].weight.accumulate(np.ones((3, 2), np.float32))
    return Subject(layers_, probe=lambda m: list(m.state_dict().items()))


@case(fastrnn.nn.ModuleDict, "with-layers")
def _module_dict_subject():
    heads = fastrnn.nn.ModuleDict({"a": fastrnn.nn.Linear(2, 3, seed=0), "b": fastrnn.nn.LayerNorm(3)})
    heads["a"].requires_grad_(False)
    return Subject(heads, probe=lambda m: [list(m.state_dict().items()), [p.requires_grad for p in m.parameters()]])


@case(fastrnn.nn.PackedSequence, "unsorted")
def _packed_sequence_subject():
    packed = fastrnn.nn.utils.rnn.pack_sequence([np.ones((2, 3)), np.zeros((4, 3))], enforce_sorted=False)
    return Subject(packed, probe=lambda p: fastrnn.nn.utils.rnn.pad_packed_sequence(p))


@case(Parameter, "with-grad")
def _parameter_subject():
    parameter = Parameter(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    parameter.accumulate(np.full((2, 3), 0.5))
    return Subject(parameter)


def _onnx_model_subject(state):
    """An imported ONNX graph (Gather as an embedding, a bidirectional LSTM with sequence_lens, Softmax),
    with Adam; trained, it travels with a forward pass's tape."""
    onnx = pytest.importorskip("onnx")
    import fastrnn.onnx

    helper, tensor = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(5)
    weights = {"table": (7, D), "W": (2, 4 * H, D), "R": (2, 4 * H, H), "B": (2, 8 * H)}
    nodes = [helper.make_node("Gather", ["table", "tokens"], ["x"]),
             helper.make_node("LSTM", ["x", "W", "R", "B", "lengths"], ["y", "h_n"], hidden_size=H,
                              direction="bidirectional"),
             helper.make_node("Softmax", ["y"], ["p"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("tokens", tensor.INT64, [T, B]),
                     helper.make_tensor_value_info("lengths", tensor.INT32, [B])],
        [helper.make_tensor_value_info(name, tensor.FLOAT, None) for name in ("p", "h_n")],
        [onnx.numpy_helper.from_array(rng.uniform(-0.5, 0.5, shape).astype(np.float32), name)
         for name, shape in weights.items()])
    model = fastrnn.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]))
    optimizer = fastrnn.optim.Adam(model.parameters(), lr=0.01)
    tokens, lengths = _int_input(rng), np.array([5, 2, 4], np.int32)

    def train_step(obj):
        module, optimizer = obj
        outputs = module(tokens, lengths)
        grads = module.backward(*like(list(outputs), np.random.default_rng(1)))
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        return outputs, grads, weights_and_grads(module.parameters()), optimizer.state_dict()

    if state == "trained":
        train_step((model, optimizer))
        model(tokens, lengths)  # the tape travels: backward runs on the copy

    def probe(obj):
        with fastrnn.nn.no_grad():
            return obj[0].eval()(tokens, lengths)

    return Subject((model, optimizer), main=model, probe=probe, step=train_step)


def _onnx_model_class():
    from fastrnn.onnx.importer import OnnxModel

    return OnnxModel


for _state in ("fresh", "trained"):
    case(_onnx_model_class(), _state)(functools.partial(_onnx_model_subject, _state))


# fastrnn.optim optimizers, after a few steps on a module's parameters
OPTIM_CONFIGS = {
    "sgd": (fastrnn.optim.SGD, dict(lr=0.1)),
    "sgd-momentum-dampening-decay-maximize": (fastrnn.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1,
                                                                      weight_decay=0.01, maximize=True)),
    "sgd-nesterov": (fastrnn.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
    "adam": (fastrnn.optim.Adam, dict(lr=0.01)),
    "adam-amsgrad-decay": (fastrnn.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1, betas=(0.8, 0.9))),
    "rmsprop": (fastrnn.optim.RMSprop, dict(lr=0.01)),
    "rmsprop-centered-momentum": (fastrnn.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
}


def _optim_subject(cls, options, groups):
    module = fastrnn.nn.LSTM(D, H, seed=5)
    run = NNRun(module, None)
    parameters = list(module.parameters())
    params = ([{"params": parameters[:2], "lr": 0.001}, {"params": parameters[2:]}] if groups else parameters)
    optimizer = cls(params, **options)

    def step(obj):
        module, optimizer = obj
        result = run.forward_backward(module)
        optimizer.step()
        optimizer.zero_grad()
        return result, weights_and_grads(module.parameters()), optimizer.state_dict()

    for _ in range(3):
        step((module, optimizer))
    return Subject((module, optimizer), main=optimizer, probe=lambda obj: obj[1].state_dict(), step=step)


for _name, (_cls, _options) in OPTIM_CONFIGS.items():
    case(_cls, _name)(functools.partial(_optim_subject, _cls, _options, False))
case(fastrnn.optim.Adam, "two-groups")(functools.partial(_optim_subject, fastrnn.optim.Adam, {}, True))


@case(fastrnn.optim.Optimizer, "base")
def _optim_base_subject():
    parameters = [Parameter(np.ones(3)), Parameter(np.zeros((2, 2), np.float32))]
    optimizer = fastrnn.optim.Optimizer(parameters, {"lr": 0.1})
    return Subject((parameters, optimizer), main=optimizer)


# fastrnn.losses
def _loss_data(kind):
    rng = np.random.default_rng(2)
    if kind == "class":
        return rng.standard_normal((4, 3, 2)), np.array([[0, 2], [1, -100], [2, 2], [0, 1]])
    return rng.standard_normal((4, 3)).astype(np.float32), (rng.random((4, 3)) > 0.5).astype(np.float32)


NN_LOSS_CONFIGS = {
    "mse": (fastrnn.losses.MSELoss, {}, "values"),
    "mse-none": (fastrnn.losses.MSELoss, dict(reduction="none"), "values"),
    "bce-weights": (fastrnn.losses.BCEWithLogitsLoss, dict(pos_weight=[1.0, 2.0, 0.5],
                                                           weight=[[1.0], [0.0], [2.0], [1.0]], reduction="sum"),
                    "values"),
    "bce": (fastrnn.losses.BCEWithLogitsLoss, {}, "values"),
    "cross-entropy": (fastrnn.losses.CrossEntropyLoss, {}, "class"),
    "cross-entropy-weight-smoothing-none": (fastrnn.losses.CrossEntropyLoss, dict(weight=[1.0, 0.5, 2.0],
                                                                                    label_smoothing=0.1,
                                                                                    reduction="none"), "class"),
}


def _nn_loss_subject(cls, options, kind, called):
    loss = cls(**options)
    prediction, target = _loss_data(kind)
    if called:
        loss(prediction, target)  # the copy's backward() uses what this call kept
    grad_output = None if loss.reduction != "none" else np.full(target.shape, 0.5, prediction.dtype)

    def probe(loss):
        kept = loss.backward(grad_output) if called else None
        value = loss(prediction * 2, target)
        return kept, value, loss.backward(grad_output)

    return Subject(loss, probe=probe)


for _name, (_cls, _options, _kind) in NN_LOSS_CONFIGS.items():
    for _called in (False, True):
        case(_cls, _name + ("-called" if _called else ""))(
            functools.partial(_nn_loss_subject, _cls, _options, _kind, _called))


# fastrnn.keras layers
def _lambda_double(x, factor):
    return factor * x


def _lambda_double_backward(d_output, inputs, output, factor):
    return factor * d_output


def _dense(activation):
    return lambda: layers.Dense(4, activation=activation, seed=1)


KERAS_LAYER_CONFIGS = {
    **{f"dense-{name}": (layers.Dense, _dense(name), "seq")
       for name in ("linear", "relu", "sigmoid", "tanh", "softmax")},
    "dense-2d-nobias-initializers": (layers.Dense, lambda: layers.Dense(
        3, use_bias=False, kernel_initializer=initializers.Orthogonal(gain=0.5), seed=2), "flat"),
    "embedding-mask_zero": (layers.Embedding, lambda: layers.Embedding(7, 3, mask_zero=True, seed=3), "tokens"),
    "embedding": (layers.Embedding, lambda: layers.Embedding(7, 3, embeddings_initializer="normal", seed=4), "tokens"),
    **{f"activation-{name}": (layers.Activation, functools.partial(layers.Activation, name), "seq")
       for name in ("linear", "relu", "sigmoid", "tanh", "softmax")},
    "dropout": (layers.Dropout, lambda: layers.Dropout(0.4, seed=5), "seq"),
    "dropout-noise_shape": (layers.Dropout, lambda: layers.Dropout(0.5, noise_shape=(None, 1, None)), "seq"),
    "masking": (layers.Masking, lambda: layers.Masking(0.0), "seq"),
    "timedistributed-dense": (layers.TimeDistributed, lambda: layers.TimeDistributed(
        layers.Dense(2, activation="softmax", seed=6)), "seq"),
    "simplernn": (layers.SimpleRNN, lambda: layers.SimpleRNN(H, seed=7), "seq"),
    "simplernn-relu-sequences-dropout-backwards": (layers.SimpleRNN, lambda: layers.SimpleRNN(
        H, activation="relu", return_sequences=True, dropout=0.3, go_backwards=True), "seq-mask"),
    "simplernn-stateful-state": (layers.SimpleRNN, lambda: layers.SimpleRNN(
        H, stateful=True, return_state=True, seed=8), "seq"),
    "lstm": (layers.LSTM, lambda: layers.LSTM(H, seed=9), "seq"),
    "lstm-sequences-state-mask": (layers.LSTM, lambda: layers.LSTM(
        H, return_sequences=True, return_state=True, dropout=0.2, seed=10), "seq-mask"),
    "lstm-stateful": (layers.LSTM, lambda: layers.LSTM(H, stateful=True, unit_forget_bias=False, seed=11), "seq"),
    "gru": (layers.GRU, lambda: layers.GRU(H, seed=12), "seq"),
    "gru-reset_before-sequences-mask": (layers.GRU, lambda: layers.GRU(
        H, reset_after=False, return_sequences=True, seed=13), "seq-mask"),
    "gru-stateful-state-dropout": (layers.GRU, lambda: layers.GRU(
        H, stateful=True, return_state=True, dropout=0.5, seed=14), "seq"),
    **{f"bidirectional-{mode}": (layers.Bidirectional, functools.partial(
        lambda mode: layers.Bidirectional(layers.GRU(H, return_sequences=True, seed=15), merge_mode=mode), mode),
        "seq-mask") for mode in ("concat", "sum", "mul", "ave", None)},
    "bidirectional-lstm-state": (layers.Bidirectional, lambda: layers.Bidirectional(
        layers.LSTM(H, return_state=True, dropout=0.1, seed=16), merge_mode="sum"), "seq"),
    "bidirectional-backward_layer": (layers.Bidirectional, lambda: layers.Bidirectional(
        layers.SimpleRNN(H, seed=17), backward_layer=layers.SimpleRNN(3, go_backwards=True, seed=18)), "seq"),
    # the layers of functional models ("pair": a list of two sequences)
    **{f"merge-{cls.__name__.lower()}": (cls, cls, "pair-mask")
       for cls in (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum)},
    "concatenate-steps": (layers.Concatenate, lambda: layers.Concatenate(axis=1), "pair-mask"),
    "dot-normalize": (layers.Dot, lambda: layers.Dot(axes=2, normalize=True), "pair"),
    "repeatvector": (layers.RepeatVector, lambda: layers.RepeatVector(3), "flat"),
    "reshape": (layers.Reshape, lambda: layers.Reshape((-1, 2)), "seq"),
    "flatten": (layers.Flatten, layers.Flatten, "seq"),
    "permute": (layers.Permute, lambda: layers.Permute((2, 1)), "seq"),
    "globalaveragepooling1d-mask": (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling1D, "seq-mask"),
    "globalmaxpooling1d-keepdims": (layers.GlobalMaxPooling1D, lambda: layers.GlobalMaxPooling1D(keepdims=True),
                                    "seq"),
    "layernormalization-mask": (layers.LayerNormalization, lambda: layers.LayerNormalization(
        beta_initializer="uniform"), "seq-mask"),
    "attention-concat-dropout": (layers.Attention, lambda: layers.Attention(
        use_scale=True, score_mode="concat", dropout=0.2, seed=19), "pair-mask"),
    "additiveattention": (layers.AdditiveAttention, lambda: layers.AdditiveAttention(seed=20), "pair-mask"),
    "lambda-backward": (layers.Lambda, lambda: layers.Lambda(_lambda_double, backward=_lambda_double_backward,
                                                             arguments={"factor": 2.0}), "seq"),
}
LAYER_STATES = ("unbuilt", "built", "mid-pass", "trained")


class LayerRun:
    """Inputs of a Keras layer and its training step."""

    def __init__(self, kind):
        rng = np.random.default_rng(21)
        if kind == "tokens":
            self.x = rng.integers(0, 7, (B, T))
            self.x[0, -2:] = 0
        elif kind == "flat":
            self.x = rng.standard_normal((B, D)).astype(np.float32)
        else:
            self.x = rng.standard_normal((B, T, D)).astype(np.float32)
            self.x[1, 3] = 0.0  # a step Masking masks
        self.mask = None
        if kind in ("seq-mask", "pair-mask"):
            self.mask = np.ones((B, T), bool)
            self.mask[0, 1] = self.mask[1, 3:] = self.mask[2, :] = False  # a hole, a short row, an empty row
        if kind.startswith("pair"):
            self.x = [self.x, rng.standard_normal((B, T, D)).astype(np.float32)]
            self.mask = None if self.mask is None else [self.mask, None]

    def call(self, layer, training):
        return layer(self.x, mask=self.mask, training=training)

    def backward(self, layer, output):
        return layer.backward(like(output, np.random.default_rng(22)))

    def train(self, layer):
        output = self.call(layer, True)
        return output, self.backward(layer, output), [p.grad for p in layer.weights]


def _layer_subject(factory, kind, state):
    layer = factory()
    run = LayerRun(kind)
    pending = None
    if state == "built":
        run.call(layer, False)
    elif state == "mid-pass":
        pending = run.call(layer, True)
    elif state == "trained":
        run.train(layer)
        run.train(layer)

    def step(obj):
        layer, pending = obj
        finished = None if pending is None else run.backward(layer, pending)
        return finished, run.train(layer), layer.get_weights()

    def probe(obj):
        return run.call(obj[0], False), obj[0].get_weights(), obj[0].compute_mask(run.x, run.mask)

    return Subject((layer, pending), main=layer, probe=probe, step=step)


for _name, (_cls, _factory, _kind) in KERAS_LAYER_CONFIGS.items():
    for _state in LAYER_STATES:
        case(_cls, f"{_name}-{_state}")(functools.partial(_layer_subject, _factory, _kind, _state))


@case(layers.Layer, "base")
def _layer_base_subject():
    layer = layers.Layer(name="plain", dtype="float64")
    layer.build((T, D))
    layer.add_weight("w", np.arange(4.0))
    return Subject(layer)


# fastrnn.keras models
def _text_model():
    return fastrnn.keras.Sequential([
        layers.Embedding(9, 4, mask_zero=True, seed=30),
        layers.LSTM(5, return_sequences=True, dropout=0.2, seed=31),
        layers.Dropout(0.3, seed=32),
        layers.Bidirectional(layers.GRU(3, seed=33), merge_mode="concat"),
        layers.Dense(3, activation="softmax", seed=34),
    ])


def _sequence_model():
    return fastrnn.keras.Sequential([
        fastrnn.keras.Input((T, D)),
        layers.Masking(0.0),
        layers.SimpleRNN(4, return_sequences=True, seed=35),
        layers.TimeDistributed(layers.Dense(2, activation="tanh", seed=36)),
        layers.Activation("sigmoid"),
    ])


def _model_data(model_kind):
    rng = np.random.default_rng(40)
    if model_kind == "text":
        x = rng.integers(0, 9, (8, T))
        x[:3, -2:] = 0
        return x, rng.integers(0, 3, 8)
    x = rng.standard_normal((8, T, D)).astype(np.float32)
    x[2, 4] = 0.0
    return x, (rng.random((8, T, 2)) > 0.5).astype(np.float32)


MODEL_COMPILES = {  # factories: a model and its copy must not share one optimizer object
    "sgd": lambda: dict(optimizer=keras_optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0)),
    "rmsprop": lambda: dict(optimizer="rmsprop"),
    "rmsprop-centered": lambda: dict(optimizer=keras_optimizers.RMSprop(0.01, momentum=0.5, centered=True,
                                                                          global_clipnorm=0.5)),
    "adam": lambda: dict(optimizer="adam", metrics=["accuracy"]),
    "adam-amsgrad": lambda: dict(optimizer=keras_optimizers.Adam(0.01, amsgrad=True, weight_decay=0.01,
                                                                 clipvalue=0.1),
                                 metrics=["mse", metrics.MeanAbsoluteError()]),
}
MODEL_LOSSES = {"text": lambda: "sparse_categorical_crossentropy",
                "sequence": lambda: keras_losses.BinaryCrossentropy(label_smoothing=0.1)}
MODEL_STATES = ("unbuilt", "built", "compiled", "trained")


def _model_subject(model_kind, compile_name, state):
    model = _text_model() if model_kind == "text" else _sequence_model()
    x, y = _model_data(model_kind)
    def settings():
        return dict(MODEL_COMPILES[compile_name](), loss=MODEL_LOSSES[model_kind]())

    if state != "unbuilt":
        model.build((None, T) if model_kind == "text" else (None, T, D))
    if state in ("compiled", "trained"):
        model.compile(**settings())
    if state == "trained":
        np.random.seed(0)
        model.fit(x, y, batch_size=3, epochs=2, verbose=0, validation_split=0.25)

    def probe(model):
        result = [model.predict(x, batch_size=4, verbose=0)]
        if model.compiled:
            result.append(model.evaluate(x, y, verbose=0, return_dict=True))
            if isinstance(model.optimizer, keras_optimizers.Optimizer):
                result.append(model.optimizer.get_slot_arrays(model.trainable_weights))
        return result

    def step(model):
        if not model.compiled:
            model.compile(**settings())  # a fresh optimizer object per model; same configuration
        np.random.seed(1)  # fit shuffles with NumPy's global generator
        history = model.fit(x, y, batch_size=3, epochs=1, verbose=0)
        logs = model.train_on_batch(x[:4], y[:4], return_dict=True)
        return history.history, logs, model.get_weights(), model.optimizer.get_slot_arrays(model.trainable_weights)

    return Subject(model, probe=probe, step=step)


for _kind, _compile in (("text", "adam"), ("text", "sgd"), ("sequence", "rmsprop-centered"),
                        ("sequence", "adam-amsgrad"), ("text", "rmsprop")):
    for _state in MODEL_STATES:
        case(fastrnn.keras.Sequential, f"{_kind}-{_compile}-{_state}")(
            functools.partial(_model_subject, _kind, _compile, _state))


@case(fastrnn.keras.KerasTensor, "input")
def _input_subject():
    return Subject(fastrnn.keras.Input((None, 3), batch_size=2, name="tokens"))


@case(layers.InputLayer, "shape")
def _input_layer_subject():
    return Subject(layers.InputLayer(shape=(None, 3), dtype="int32", name="ids"))


def _functional_model():
    """A functional encoder-decoder: initial states from another layer, a shared Dense, two outputs."""
    source, target = fastrnn.keras.Input((T, D), name="source"), fastrnn.keras.Input((T, D), name="target")
    _, h, c = layers.LSTM(4, return_state=True, seed=40)(source)
    decoded = layers.LSTM(4, return_sequences=True, seed=41)(target, initial_state=[h, c])
    head = layers.Dense(2, seed=42)
    return fastrnn.keras.Model([source, target], [head(decoded), head(layers.GRU(4, return_sequences=True,
                                                                                    seed=43)(source))])


@case(fastrnn.keras.Model, "functional-trained")
def _functional_subject():
    model = _functional_model()
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(8, T, D)).astype(np.float32) for _ in range(2)]
    ys = [rng.normal(size=(8, T, 2)).astype(np.float32) for _ in range(2)]
    model.compile(optimizer="adam", loss=["mse", "mae"], loss_weights=[1.0, 0.5])
    model.fit(xs, ys, batch_size=4, epochs=1, verbose=0)

    def probe(model):
        return model.predict(xs, verbose=0), model.evaluate(xs, ys, verbose=0, return_dict=True)

    def step(model):
        np.random.seed(1)
        return model.fit(xs, ys, batch_size=4, epochs=1, verbose=0).history, model.get_weights()

    return Subject(model, probe=probe, step=step)


# fastrnn.keras optimizers, after a few steps on Parameters and a bare ndarray
KERAS_OPTIMIZER_CONFIGS = {
    "sgd": (keras_optimizers.SGD, {}),
    "sgd-momentum-clipvalue": (keras_optimizers.SGD, dict(learning_rate=0.1, momentum=0.9, clipvalue=0.5)),
    "sgd-nesterov-decay": (keras_optimizers.SGD, dict(momentum=0.5, nesterov=True, weight_decay=0.1)),
    "rmsprop": (keras_optimizers.RMSprop, {}),
    "rmsprop-centered-momentum-clipnorm": (keras_optimizers.RMSprop, dict(centered=True, momentum=0.3, clipnorm=0.7)),
    "adam": (keras_optimizers.Adam, dict(learning_rate=0.01)),
    "adam-amsgrad-global_clipnorm": (keras_optimizers.Adam, dict(amsgrad=True, global_clipnorm=1.0,
                                                                 weight_decay=0.004)),
    "adamw": (keras_optimizers.AdamW, dict(learning_rate=0.01)),
}


def _keras_optimizer_subject(cls, options):
    rng = np.random.default_rng(50)
    variables = [Parameter(rng.standard_normal((3, 4)).astype(np.float32)),
                 Parameter(rng.standard_normal(4)), rng.standard_normal((2, 2)).astype(np.float32)]
    optimizer = cls(**options)

    def step(obj):
        variables, optimizer = obj
        draw = np.random.default_rng(51)
        grads = [draw.standard_normal(_data(v).shape).astype(_data(v).dtype) for v in variables]
        optimizer.apply(grads[:2] + [None], variables)  # one variable without a gradient this step
        optimizer.apply(grads, variables)
        return [_data(v) for v in variables], optimizer.iterations

    for _ in range(2):
        step((variables, optimizer))
    return Subject((variables, optimizer), main=optimizer,
                   probe=lambda obj: (obj[1].get_slot_arrays(obj[0]), obj[1].iterations), step=step)


def _data(variable):
    return variable if isinstance(variable, np.ndarray) else variable.data


for _name, (_cls, _options) in KERAS_OPTIMIZER_CONFIGS.items():
    case(_cls, _name)(functools.partial(_keras_optimizer_subject, _cls, _options))


@case(keras_optimizers.Optimizer, "base")
def _keras_optimizer_base_subject():
    return Subject(keras_optimizers.Optimizer(0.1, clipnorm=2.0, name="plain"))


# fastrnn.keras losses and metrics
def _keras_targets(kind):
    rng = np.random.default_rng(60)
    logits = rng.standard_normal((4, T, 3)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    mask = np.ones((4, T), bool)
    mask[1, 2:] = False
    if kind == "sparse":
        return rng.integers(0, 3, (4, T)), probabilities, mask
    if kind == "onehot":
        return np.eye(3, dtype=np.float32)[rng.integers(0, 3, (4, T))], probabilities, mask
    if kind == "logits":
        return (rng.random((4, T, 3)) > 0.5).astype(np.float32), logits, mask
    return rng.random((4, T, 3)).astype(np.float32), probabilities, mask


KERAS_LOSS_CONFIGS = {
    "binary": (keras_losses.BinaryCrossentropy, {}, "values"),
    "binary-logits-smoothing": (keras_losses.BinaryCrossentropy, dict(from_logits=True, label_smoothing=0.2), "logits"),
    "categorical": (keras_losses.CategoricalCrossentropy, {}, "onehot"),
    "categorical-logits-smoothing": (keras_losses.CategoricalCrossentropy, dict(from_logits=True, label_smoothing=0.1),
                                     "onehot"),
    "sparse": (keras_losses.SparseCategoricalCrossentropy, {}, "sparse"),
    "sparse-logits": (keras_losses.SparseCategoricalCrossentropy, dict(from_logits=True, name="sce"), "sparse"),
    "mse": (keras_losses.MeanSquaredError, {}, "values"),
    "mae": (keras_losses.MeanAbsoluteError, dict(name="l1"), "values"),
}


def _keras_loss_subject(cls, options, kind):
    y_true, y_pred, mask = _keras_targets(kind)
    weights = np.linspace(0.5, 2.0, 4)
    return Subject(cls(**options), probe=lambda loss: (loss.value_and_gradient(y_true, y_pred),
                                                       loss.value_and_gradient(y_true, y_pred, mask, weights)))


for _name, (_cls, _options, _kind) in KERAS_LOSS_CONFIGS.items():
    case(_cls, _name)(functools.partial(_keras_loss_subject, _cls, _options, _kind))


@case(keras_losses.Loss, "base")
def _keras_loss_base_subject():
    return Subject(keras_losses.Loss(name="custom"))


KERAS_METRIC_CONFIGS = {
    "mean": (metrics.Mean, lambda: metrics.Mean(name="avg"), None),
    "wrapper-module-function": (metrics.MeanMetricWrapper, lambda: metrics.MeanMetricWrapper(
        metrics.binary_accuracy, threshold=0.3), "values"),
    "binary-accuracy": (metrics.BinaryAccuracy, lambda: metrics.BinaryAccuracy(threshold=0.6), "values"),
    "categorical-accuracy": (metrics.CategoricalAccuracy, metrics.CategoricalAccuracy, "onehot"),
    "sparse-categorical-accuracy": (metrics.SparseCategoricalAccuracy, metrics.SparseCategoricalAccuracy, "sparse"),
    "mse": (metrics.MeanSquaredError, metrics.MeanSquaredError, "values"),
    "mae": (metrics.MeanAbsoluteError, lambda: metrics.MeanAbsoluteError(name="l1"), "values"),
}


def _metric_subject(factory, kind):
    metric = factory()
    if kind is None:
        values = np.random.default_rng(61).standard_normal((4, T))

        def update(metric, part):
            metric.update_state(values[part], sample_weight=np.arange(T) + 1.0)
    else:
        y_true, y_pred, mask = _keras_targets(kind)

        def update(metric, part):
            metric.update_state(y_true[part], y_pred[part], mask=mask[part])

    update(metric, slice(0, 2))

    def step(metric):
        update(metric, slice(2, 4))
        return metric.result()

    return Subject(metric, probe=lambda metric: metric.result(), step=step)


for _name, (_cls, _factory, _kind) in KERAS_METRIC_CONFIGS.items():
    case(_cls, _name)(functools.partial(_metric_subject, _factory, _kind))


@case(metrics.Metric, "base")
def _metric_base_subject():
    return Subject(metrics.Metric(name="plain"))


# fastrnn.keras callbacks, as fit leaves them (each holds the model)
def _fitted_callback(make_callback):
    model = _sequence_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = _model_data("sequence")
    callback = make_callback()
    np.random.seed(2)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[] if callback is None else [callback])
    callback = model.history if callback is None else callback

    def probe(callback):
        return callback.model.predict(x, verbose=0)

    return Subject(callback, probe=probe)


case(callbacks.History, "after-fit")(functools.partial(_fitted_callback, lambda: None))
case(callbacks.Callback, "after-fit")(functools.partial(_fitted_callback, callbacks.Callback))
case(callbacks.TerminateOnNaN, "after-fit")(functools.partial(_fitted_callback, callbacks.TerminateOnNaN))
case(callbacks.ReduceLROnPlateau, "after-fit")(functools.partial(
    _fitted_callback, lambda: callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1)))


def _halving_schedule(epoch, lr):
    """A learning-rate schedule that pickles (a module-level function)."""
    return lr / 2


def _note_epoch(epoch, logs):
    logs["noted"] = epoch


case(callbacks.LearningRateScheduler, "after-fit")(functools.partial(
    _fitted_callback, lambda: callbacks.LearningRateScheduler(_halving_schedule)))
case(callbacks.LambdaCallback, "after-fit")(functools.partial(
    _fitted_callback, lambda: callbacks.LambdaCallback(on_epoch_end=_note_epoch)))


@case(callbacks.CSVLogger, "after-fit")
def _csv_logger_subject():
    path = os.path.join(tempfile.mkdtemp(), "log.csv")
    return _fitted_callback(lambda: callbacks.CSVLogger(path))
case(callbacks.EarlyStopping, "restore-best-after-fit")(functools.partial(
    _fitted_callback, lambda: callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True,
                                                      min_delta=1e-3)))


@case(callbacks.ModelCheckpoint, "with-model")
def _checkpoint_subject():
    callback = callbacks.ModelCheckpoint(os.path.join("never-written", "model-{epoch:02d}.fastrnn"),
                                         save_best_only=True, mode="min")
    callback.set_model(_sequence_model())
    callback.set_params({"epochs": 2, "steps": 3, "verbose": 0})
    callback.best = 0.25
    return Subject(callback)


# activations and initialisers
def _double(x):
    return 2 * x


def _double_gradient(dy, x, y):
    return 2 * dy


@case(activations.Activation, "custom-module-functions")
def _custom_activation_subject():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    return Subject(activations.Activation("double", _double, _double_gradient),
                   probe=lambda a: (a(x), a.gradient(np.ones_like(x), x, a(x))))


INITIALIZER_CONFIGS = {
    "zeros": initializers.Zeros, "ones": initializers.Ones,
    "constant": lambda: initializers.Constant(0.25),
    "uniform": lambda: initializers.RandomUniform(-1.0, 3.0),
    "normal": lambda: initializers.RandomNormal(1.0, 0.5),
    "glorot-uniform": initializers.GlorotUniform, "glorot-normal": initializers.GlorotNormal,
    "orthogonal": lambda: initializers.Orthogonal(gain=1.5),
}


def _initializer_subject(factory):
    initializer = factory()
    return Subject(initializer, probe=lambda init: init((4, 6), "float64", np.random.default_rng(70)))


for _name, _factory in INITIALIZER_CONFIGS.items():
    _cls = _factory if isinstance(_factory, type) else type(_factory())
    case(_cls, _name)(functools.partial(_initializer_subject, _factory))


@case(initializers.Initializer, "base")
def _initializer_base_subject():
    return Subject(initializers.Initializer())


# exceptions: a worker process sends them back to its parent by pickling them
def _exception_classes():
    found = {obj for obj in vars(fastrnn_exceptions).values()
             if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__.startswith("fastrnn")}
    for module in PUBLIC_MODULES:
        found.update(obj for obj in map(functools.partial(getattr, module), module.__all__)
                     if isinstance(obj, type) and issubclass(obj, BaseException))
    return sorted(found, key=lambda cls: (cls.__module__, cls.__name__))


def _exception_subject(cls):
    error = cls("cython", "the extension is not built") if cls is fastrnn.BackendUnavailableError else \
        cls("argument x must be positive; got -1")
    return Subject(error, probe=lambda e: (str(e), e.args))


for _cls in _exception_classes():
    case(_cls, "message")(functools.partial(_exception_subject, _cls))


# the tests ---------------------------------------------------------------------------------------
def public_classes():
    """Every class named in a public module's ``__all__``."""
    found = {}
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_public_class_has_a_case():
    covered = {c.cls for c in CASES}
    missing = sorted(name for name, cls in public_classes().items() if cls not in covered)
    assert not missing, f"public classes without a pickling case in {__file__}: {', '.join(missing)}"


def test_the_comparison_can_fail():
    """assert_identical notices a changed bit, a replaced generator state and lost sharing."""
    layer = layers.Dense(3, seed=0)
    layer.build((4,))
    copy = round_trip(layer)
    copy.kernel.data[1, 2] = np.nextafter(copy.kernel.data[1, 2], np.inf)
    with pytest.raises(AssertionError, match="values differ"):
        assert_identical(layer, copy)
    copy = round_trip(layer)
    copy.rng.random()
    with pytest.raises(AssertionError, match="bit_generator"):
        assert_identical(layer, copy)
    copy = round_trip(layer)
    copy._weights[0] = (copy._weights[0][0], Parameter(copy.kernel.data.copy()))
    with pytest.raises(AssertionError, match="sharing was lost"):
        assert_identical(layer, copy)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_round_trip(case):
    subject = case.make()
    if subject.main is not None:
        assert type(subject.main) is case.cls, f"the case builds a {type(subject.main).__name__}"
    copy = round_trip(subject.obj)
    assert_identical(subject.obj, copy)
    if subject.step is not None:  # first: a probe's inference pass would drop a kept tape
        assert_identical(subject.step(subject.obj), subject.step(copy), distinct=False)
    if subject.probe is not None:
        assert_identical(subject.probe(subject.obj), subject.probe(copy), distinct=False)
    assert_identical(subject.obj, copy)


@pytest.mark.parametrize("protocol", [*PROTOCOLS, "deepcopy"])
def test_every_protocol(protocol):
    """A trained model with every kind of layer, its optimizer and history, under each pickle protocol
    and through ``copy.deepcopy`` (which uses the same reduction)."""
    for subject in (_model_subject("text", "adam", "trained"),
                    _nn_subject(fastrnn.nn.LSTM, dict(proj_size=2, num_layers=2, dropout=0.5), "trained", None)):
        copy = deepcopy(subject.obj) if protocol == "deepcopy" else round_trip(subject.obj, protocol)
        assert_identical(subject.obj, copy)
        assert_identical(subject.step(subject.obj), subject.step(copy), distinct=False)


def test_copy_keeps_the_objects_tied_together():
    """In a copy, the optimizer updates the copy's own weights and the built-in activations stay the module's."""
    subject = _model_subject("text", "adam", "trained")
    model = subject.obj
    copy = round_trip(model)
    assert copy.layers[-1].activation is activations.softmax
    assert copy.history.model is copy
    before = [w.copy() for w in model.get_weights()]
    copy.train_on_batch(*[a[:4] for a in _model_data("text")])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the original changed"
    slots = copy.optimizer.get_slot_arrays(copy.trainable_weights)
    assert all(slots) and not any(copy.optimizer.get_slot_arrays(model.trainable_weights))

    module, optimizer, _ = round_trip(_nn_subject(fastrnn.nn.GRU, {}, "trained", None).obj)
    assert {id(p) for p in optimizer.state} == {id(p) for p in module.parameters()}


# one pool of two spawned workers for the whole module: each start-up costs seconds
_barrier = None


def _set_barrier(barrier):
    global _barrier
    _barrier = barrier


def _in_worker(job):
    """Run in a spawned worker: predict, or predict after one more training step and send the model back."""
    _barrier.wait(timeout=60)  # both workers hold a job at once, so the two jobs ran in two processes
    action, obj, x = job
    if isinstance(obj, fastrnn.keras.Sequential):
        if action == "train":
            obj.train_on_batch(*x)
            return os.getpid(), obj
        return os.getpid(), obj.predict(x, verbose=0)
    with fastrnn.nn.no_grad():
        obj.eval()
        return os.getpid(), obj(x)


@pytest.fixture(scope="module")
def spawn_pool():
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    with context.Pool(2, initializer=_set_barrier, initargs=(barrier,)) as pool:
        yield pool


def test_spawn_pool_predicts_like_the_parent(spawn_pool):
    keras_model = _model_subject("text", "adam", "trained").obj
    module, _, _ = _nn_subject(fastrnn.nn.LSTM, NN_CONFIGS["lstm-proj-2layers-bidirectional-dropout"][1], "trained",
                               None).obj
    x_text, y_text = _model_data("text")
    x_nn = NNRun(module, None).x
    expected_keras = keras_model.predict(x_text, verbose=0)
    with fastrnn.nn.no_grad():
        expected_nn = round_trip(module).eval()(x_nn)

    results = spawn_pool.map(_in_worker, [("predict", keras_model, x_text)] * 2 + [("predict", module, x_nn)] * 2,
                             chunksize=1)
    assert len({pid for pid, _ in results[:2]}) == 2 and len({pid for pid, _ in results[2:]}) == 2
    assert os.getpid() not in {pid for pid, _ in results}
    for _, prediction in results[:2]:
        assert_identical(expected_keras, prediction)
    for _, prediction in results[2:]:
        assert_identical(expected_nn, prediction)

    batch = (x_text[:4], y_text[:4])
    trained = [model for _, model in spawn_pool.map(_in_worker, [("train", keras_model, batch)] * 2, chunksize=1)]
    keras_model.train_on_batch(*batch)
    for model in trained:
        assert_identical(keras_model, model)


def test_no_thread_lock_or_open_file_in_a_trained_model():
    """What cannot travel to another process (locks, files) is not held by models, even indirectly."""
    objects = [_model_subject("sequence", "adam-amsgrad", "trained").obj,
               _nn_subject(fastrnn.nn.LSTM, dict(proj_size=2), "trained", None).obj]
    comparison = _Comparison()
    for obj in objects:
        comparison.compare(obj, round_trip(obj), "obj")
    kinds = (type(threading.Lock()), type(threading.RLock()), threading.Thread, io.IOBase)
    reached = [obj for obj in comparison.alive if isinstance(obj, kinds) or hasattr(obj, "fileno")]
    assert not reached, f"a model holds {reached}"


# fastrnn.sklearn: scikit-learn is optional, so its estimators are not in PUBLIC_MODULES (importing
# them there would need it); they have their own test, skipped without it
def _sklearn_subject(kind, state):
    pytest.importorskip("sklearn")
    from fastrnn.sklearn import RNNClassifier, RNNRegressor

    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, T, D))
    if kind == "classifier":
        estimator = RNNClassifier(cell="gru", hidden_sizes=(H, 3), bidirectional=True, dropout=0.3, epochs=2,
                                  batch_size=4, random_state=0)
        y = np.array(["a", "b", "c"] * 4)
        fit = functools.partial(estimator.partial_fit, classes=["a", "b", "c"]) if state == "partial" else \
            estimator.fit
        probe = lambda e: (e.predict_proba(x), e.predict(x))  # noqa: E731
        step = lambda e: e.partial_fit(x, y)  # noqa: E731
    else:
        estimator = RNNRegressor(hidden_sizes=H, dropout=0.2, epochs=2, batch_size=4, early_stopping=True,
                                 validation_fraction=0.25, random_state=0)
        y = rng.standard_normal((12, 2))
        fit = estimator.partial_fit if state == "partial" else estimator.fit
        probe = lambda e: e.predict(x)  # noqa: E731
        step = lambda e: e.partial_fit(x, y)  # noqa: E731
    if state != "fresh":
        fit(x, y)
    return Subject(estimator, probe=None if state == "fresh" else probe, step=None if state == "fresh" else step)


@pytest.mark.parametrize("state", ["fresh", "partial", "trained"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_sklearn_estimators_round_trip(kind, state):
    subject = _sklearn_subject(kind, state)
    copy = round_trip(subject.obj)
    assert_identical(subject.obj, copy)
    if subject.step is not None:  # dropout masks and the sample order come from the kept generators
        assert_identical(subject.step(subject.obj), subject.step(copy))
    if subject.probe is not None:
        assert_identical(subject.probe(subject.obj), subject.probe(copy), distinct=False)
    assert_identical(subject.obj, copy)
