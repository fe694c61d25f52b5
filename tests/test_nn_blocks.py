"""fastrnn.nn's building blocks, cells and containers: forward and backward against torch.nn
on the same weights, central finite differences in float64, hand-worked cases, the module
tree methods and the errors users can cause."""

from collections import OrderedDict

import numpy as np
import pytest

import fastrnn.nn as nn
from fastrnn.exceptions import ArgumentError, DTypeError, ShapeError
from helpers import assert_close
from tolerances import FINITE_DIFFERENCE, FINITE_DIFFERENCE_STEP, HAND_CHECKED, TORCH_PARITY

DTYPES = [np.float64, np.float32]


def _torch_state(module):
    import torch
    return {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}


def _check_against_torch(ours, theirs, x, dtype, context, integer_input=False, forward_kwargs=None):
    """Load ``ours``'s weights into ``theirs``, run both on ``x`` and a random output gradient, compare."""
    import torch
    forward_kwargs = forward_kwargs or {}
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict(_torch_state(ours))
    tolerance = TORCH_PARITY[np.dtype(dtype)]
    tx = torch.from_numpy(np.array(x))
    if not integer_input:
        tx.requires_grad_(True)
    expected = theirs(tx, **forward_kwargs)
    actual = ours(x, **forward_kwargs)
    assert_close(actual, expected.detach().numpy(), tolerance, context, "output")
    g = np.random.default_rng(5).standard_normal(np.shape(actual)).astype(dtype)
    expected.backward(torch.from_numpy(g))
    dx = ours.backward(g)
    if integer_input:
        assert dx is None
    else:
        assert_close(dx, tx.grad.numpy(), tolerance, context, "input gradient")
    torch_params = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        reference = torch_params[name].grad
        if reference is None:
            assert parameter.grad is None or not parameter.grad.any(), f"{context}: {name}"
        else:
            assert_close(parameter.grad, reference.numpy(), tolerance, context, f"{name}.grad")


def _blocks(torch):
    """(name, fastrnn module factory(dtype), torch module, input factory(rng, dtype), forward kwargs)."""
    real = lambda shape: (lambda rng, dtype: rng.standard_normal(shape).astype(dtype))  # noqa: E731
    return [
        ("linear", lambda d: nn.Linear(5, 4, dtype=d, seed=1), torch.nn.Linear(5, 4), real((3, 2, 5))),
        ("linear-nobias", lambda d: nn.Linear(5, 4, bias=False, dtype=d, seed=1), torch.nn.Linear(5, 4, bias=False),
         real((3, 5))),
        ("layernorm", lambda d: nn.LayerNorm(6, dtype=d), torch.nn.LayerNorm(6), real((4, 6))),
        ("layernorm-2d-noaffine", lambda d: nn.LayerNorm((2, 6), elementwise_affine=False, dtype=d),
         torch.nn.LayerNorm((2, 6), elementwise_affine=False), real((3, 2, 6))),
        ("layernorm-nobias", lambda d: nn.LayerNorm(6, bias=False, dtype=d), torch.nn.LayerNorm(6, bias=False),
         real((4, 6))),
        ("identity", lambda d: nn.Identity(3, x=1), torch.nn.Identity(), real((2, 3))),
        ("relu", lambda d: nn.ReLU(), torch.nn.ReLU(), real((4, 5))),
        ("tanh", lambda d: nn.Tanh(), torch.nn.Tanh(), real((4, 5))),
        ("sigmoid", lambda d: nn.Sigmoid(), torch.nn.Sigmoid(), lambda rng, d: (30 * rng.standard_normal((4, 5))).astype(d)),
        ("gelu", lambda d: nn.GELU(), torch.nn.GELU(), real((4, 5))),
        ("gelu-tanh", lambda d: nn.GELU(approximate="tanh"), torch.nn.GELU(approximate="tanh"), real((4, 5))),
        ("softmax", lambda d: nn.Softmax(dim=1), torch.nn.Softmax(dim=1), real((3, 4, 2))),
        ("logsoftmax", lambda d: nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1), real((3, 4))),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(13))
def test_block_matches_torch(index, dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    name, make, theirs, make_input = _blocks(torch)[index]
    _check_against_torch(make(dtype), theirs, make_input(np.random.default_rng(index), dtype), dtype,
                         f"{name} {np.dtype(dtype)}")


@pytest.mark.parametrize("options", [dict(padding_idx=2), dict(padding_idx=-1, scale_grad_by_freq=True), {}])
def test_embedding_matches_torch(options):
    torch = pytest.importorskip("torch")
    ours = nn.Embedding(10, 4, dtype=np.float64, seed=0, **options)
    indices = np.array([[1, 2, 2, 9], [0, 9, 2, 1]])
    _check_against_torch(ours, torch.nn.Embedding(10, 4, **options), indices, np.float64, f"embedding {options}",
                         integer_input=True)
    if "padding_idx" in options:
        assert not ours.weight.grad[options["padding_idx"]].any()


@pytest.mark.parametrize("cell", ["RNNCell", "RNNCell-relu", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batched", [True, False])
def test_cell_matches_torch(cell, dtype, batched):
    torch = pytest.importorskip("torch")
    name, _, nonlinearity = cell.partition("-")
    kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
    ours = getattr(nn, name)(3, 5, dtype=dtype, seed=2, **kwargs)
    theirs = getattr(torch.nn, name)(3, 5, **kwargs).to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict(_torch_state(ours))
    rng = np.random.default_rng(3)
    lead = (2,) if batched else ()
    x = rng.standard_normal(lead + (3,)).astype(dtype)
    states = [rng.standard_normal(lead + (5,)).astype(dtype) for _ in range(2 if name == "LSTMCell" else 1)]
    tx = torch.from_numpy(x).requires_grad_(True)
    ts = [torch.from_numpy(s).requires_grad_(True) for s in states]
    hx = tuple(states) if name == "LSTMCell" else states[0]
    t_out = theirs(tx, tuple(ts) if name == "LSTMCell" else ts[0])
    out = ours(x, hx)
    outs, t_outs = (list(out), list(t_out)) if name == "LSTMCell" else ([out], [t_out])
    tolerance, context = TORCH_PARITY[np.dtype(dtype)], f"{cell} {np.dtype(dtype)} batched={batched}"
    grads = [rng.standard_normal(o.shape).astype(dtype) for o in outs]
    for i, (a, e) in enumerate(zip(outs, t_outs)):
        assert_close(a, e.detach().numpy(), tolerance, context, f"output {i}")
    torch.autograd.backward(t_outs, [torch.from_numpy(g) for g in grads])
    assert_close(ours.backward(*grads), tx.grad.numpy(), tolerance, context, "input gradient")
    grad_hx = list(ours.grad_hx) if name == "LSTMCell" else [ours.grad_hx]
    for a, t in zip(grad_hx, ts):
        assert_close(a, t.grad.numpy(), tolerance, context, "hx gradient")
    for pname, parameter in ours.named_parameters():
        assert_close(parameter.grad, dict(theirs.named_parameters())[pname].grad.numpy(), tolerance, context, pname)
    # the streaming step (no_grad) gives the same values
    with nn.no_grad():
        again = ours(x, hx)
    for a, b in zip(outs, list(again) if name == "LSTMCell" else [again]):
        assert_close(b, a, TORCH_PARITY[np.dtype(dtype)], context, "no_grad step")


def _classifier(torch_module=None, batch_first=True):
    model = nn.Sequential(nn.Embedding(30, 6, padding_idx=0, seed=0), nn.LSTM(6, 7, batch_first=batch_first, seed=1),
                          nn.LastStep(batch_first=batch_first), nn.Linear(7, 3, seed=2))
    return model


class _TorchClassifier:
    """The same model in torch (a Sequential cannot hold the LSTM's tuple output)."""

    def __init__(self, torch, batch_first=True):
        self.torch = torch
        self.model = torch.nn.Sequential(torch.nn.Embedding(30, 6, padding_idx=0), torch.nn.LSTM(6, 7, batch_first=batch_first),
                                         torch.nn.Identity(), torch.nn.Linear(7, 3))
        self.batch_first = batch_first

    def __call__(self, x):
        e = self.model[0](x)
        out, _ = self.model[1](e)
        last = out[:, -1] if self.batch_first else out[-1]
        return self.model[3](last)


@pytest.mark.parametrize("batch_first", [True, False])
def test_whole_classifier_loads_a_torch_state_dict_and_matches_torch(batch_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = _TorchClassifier(torch, batch_first)
    theirs.model.double()
    ours = _classifier(batch_first=batch_first).double()
    assert list(ours.state_dict()) == list(theirs.model.state_dict())
    ours.load_state_dict({k: v.numpy() for k, v in theirs.model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, (4, 9) if batch_first else (9, 4))
    target = rng.integers(0, 3, 4)
    logits = ours(x)
    t_logits = theirs(torch.from_numpy(x))
    tolerance = TORCH_PARITY[np.dtype(np.float64)]
    assert_close(logits, t_logits.detach().numpy(), tolerance, "classifier", "logits")
    loss = nn.CrossEntropyLoss()
    loss(logits, target)
    assert ours.backward(loss.backward()) is None
    torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(target)).backward()
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad, dict(theirs.model.named_parameters())[name].grad.numpy(), tolerance,
                     "classifier", f"{name}.grad")
    # float32 torch weights load into a float32 model too
    ours32 = _classifier(batch_first=batch_first)
    ours32.load_state_dict({k: v.float().numpy() for k, v in theirs.model.state_dict().items()})
    assert_close(ours32(x), t_logits.detach().numpy(), TORCH_PARITY[np.dtype(np.float32)], "classifier", "float32")


def _finite_difference_check(model, x, context):
    """Every parameter's and the input's gradient of ``sum(w * model(x))`` against central differences."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal(np.shape(model(x)))
    loss = lambda: float(np.sum(w * model(x)))  # noqa: E731
    model.zero_grad()
    model(x)
    dx = model.backward(w)
    step = FINITE_DIFFERENCE_STEP
    for name, parameter in list(model.named_parameters()) + [("input", None)]:
        values = x if parameter is None else parameter.data
        analytic = dx if parameter is None else parameter.grad
        numeric = np.zeros_like(values)
        for i in np.ndindex(values.shape):
            saved = values[i]
            values[i] = saved + step
            if parameter is not None:
                parameter.mark_changed()
            up = loss()
            values[i] = saved - step
            if parameter is not None:
                parameter.mark_changed()
            down = loss()
            values[i] = saved
            if parameter is not None:
                parameter.mark_changed()
            numeric[i] = (up - down) / (2 * step)
        assert_close(analytic, numeric, FINITE_DIFFERENCE, context, f"{name} gradient")


def test_feed_forward_stack_against_finite_differences():
    model = nn.Sequential(nn.Linear(4, 6, dtype=np.float64, seed=0), nn.LayerNorm(6, dtype=np.float64), nn.GELU(),
                          nn.Linear(6, 5, dtype=np.float64, seed=1), nn.Tanh(), nn.Sigmoid(),
                          nn.Linear(5, 3, dtype=np.float64, seed=2), nn.Softmax(dim=-1), nn.Identity(),
                          nn.GELU("tanh"), nn.LogSoftmax(dim=1))
    model[1].weight.data[...] = np.linspace(0.5, 1.5, 6)
    model[1].bias.data[...] = np.linspace(-0.2, 0.3, 6)
    _finite_difference_check(model, np.random.default_rng(0).standard_normal((3, 4)), "feed-forward stack")


@pytest.mark.parametrize("cell", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_in_a_sequential_against_finite_differences(cell):
    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = getattr(nn, cell)(3, 4, dtype=np.float64, seed=0)
            self.head = nn.Linear(4, 2, dtype=np.float64, seed=1)

        def forward(self, x):
            out = self.cell(x, None)
            return self.head(out[0] if isinstance(out, tuple) else out)

        def backward(self, d):
            d_h = self.head.backward(d)
            return self.cell.backward(d_h)

    _finite_difference_check(Step(), np.random.default_rng(0).standard_normal((2, 3)), cell)


def test_recurrent_stack_with_adapters_against_finite_differences():
    model = nn.Sequential(nn.GRU(3, 4, dtype=np.float64, seed=0, bidirectional=True), nn.TakeOutput(),
                          nn.Linear(8, 2, dtype=np.float64, seed=1), nn.ReLU())
    _finite_difference_check(model, np.random.default_rng(2).standard_normal((4, 2, 3)) + 0.3, "GRU-TakeOutput")


def test_hand_worked_values():
    linear = nn.Linear(2, 1, dtype=np.float64)
    linear.weight.data[...] = [[2.0, -1.0]]
    linear.bias.data[...] = [0.5]
    assert linear(np.array([[3.0, 4.0]]))[0, 0] == 2.5
    assert np.array_equal(linear.backward(np.array([[2.0]])), [[4.0, -2.0]])
    assert np.array_equal(linear.weight.grad, [[6.0, 8.0]]) and linear.bias.grad[0] == 2.0
    norm = nn.LayerNorm(2, eps=0.0, dtype=np.float64)
    np.testing.assert_allclose(norm(np.array([[1.0, 3.0]])), [[-1.0, 1.0]], **HAND_CHECKED)
    soft = nn.Softmax(dim=0)
    np.testing.assert_allclose(soft(np.array([0.0, np.log(3.0)])), [0.25, 0.75], **HAND_CHECKED)
    import math
    gelu = nn.GELU()
    np.testing.assert_allclose(gelu(np.array([1.0])), [0.5 * (1 + math.erf(1 / math.sqrt(2)))], **HAND_CHECKED)
    emb = nn.Embedding(3, 2, padding_idx=1, dtype=np.float64, seed=0)
    assert not emb.weight.data[1].any()
    emb(np.array([1, 2, 2]))
    emb.backward(np.ones((3, 2)))
    assert np.array_equal(emb.weight.grad, [[0, 0], [0, 0], [2, 2]])


def test_dropout_training_and_eval():
    drop = nn.Dropout(0.25, seed=0)
    x = np.ones((200, 50), np.float32)
    y = drop(x)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    assert np.allclose(y[kept], 1 / 0.75)
    assert np.array_equal(drop.backward(np.full_like(x, 2.0)), 2 * y)
    drop.eval()
    assert drop(x) is x and drop.backward(x) is x
    drop.train()
    assert not nn.Dropout(1.0)(x).any()
    assert nn.Dropout(0.0)(x) is x


def test_initial_distributions_follow_torch():
    linear = nn.Linear(400, 300, seed=0)
    bound = 1 / np.sqrt(400)
    assert np.abs(linear.weight.data).max() <= bound and np.abs(linear.bias.data).max() <= bound
    assert abs(linear.weight.data.std() - bound / np.sqrt(3)) < 0.02 * bound
    emb = nn.Embedding(1000, 100, seed=0)
    assert abs(emb.weight.data.std() - 1) < 0.01 and abs(emb.weight.data.mean()) < 0.01
    norm = nn.LayerNorm(7)
    assert (norm.weight.data == 1).all() and (norm.bias.data == 0).all()
    cell = nn.GRUCell(10, 100, seed=0)
    assert cell.weight_ih.shape == (300, 10) and np.abs(cell.weight_hh.data).max() <= 0.1
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_containers_name_parameters_as_torch():
    torch = pytest.importorskip("torch")
    ours = nn.Module()
    ours.layers = nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 3)])
    ours.heads = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.LayerNorm(3)})
    ours.seq = nn.Sequential(OrderedDict([("fc", nn.Linear(3, 2)), ("act", nn.ReLU())]))
    ours.cell = nn.LSTMCell(2, 3)
    theirs = torch.nn.Module()
    theirs.layers = torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.Linear(3, 3)])
    theirs.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.LayerNorm(3)})
    theirs.seq = torch.nn.Sequential(OrderedDict([("fc", torch.nn.Linear(3, 2)), ("act", torch.nn.ReLU())]))
    theirs.cell = torch.nn.LSTMCell(2, 3)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]


def test_container_operations():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and len(seq[1:]) == 2
    assert list(seq[1:].state_dict()) == ["2.weight", "2.bias"]  # names kept, as torch
    del seq[1]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    seq.append(nn.Tanh())
    assert len(seq) == 3
    layers = nn.ModuleList()
    layers.append(nn.Linear(1, 1))
    layers.insert(0, nn.ReLU())
    assert isinstance(layers[0], nn.ReLU) and list(layers.state_dict()) == ["1.weight", "1.bias"]
    heads = nn.ModuleDict()
    heads["x"] = nn.Linear(1, 2)
    assert "x" in heads and list(heads.keys()) == ["x"]
    assert isinstance(heads.pop("x"), nn.Linear) and len(heads) == 0
    with pytest.raises(IndexError):
        seq[5]


def test_module_tree_methods():
    model = nn.Sequential(nn.Embedding(5, 3), nn.LSTM(3, 4), nn.TakeOutput(), nn.Linear(4, 2))
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2", "3"]
    assert len(list(model.children())) == 4 and len(list(model.modules())) == 5
    assert list(model.parameters(recurse=False)) == []
    assert len(list(model[1].parameters(recurse=False))) == 4
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Embedding", "LSTM", "TakeOutput", "Linear", "Sequential"]
    assert model.flatten_parameters() is None and model[1].flatten_parameters() is None
    model[0].requires_grad_(False)
    out = model(np.array([[1, 2], [3, 4]]))
    model.backward(np.ones_like(out))
    assert model[0].weight.grad is None and model[3].weight.grad is not None
    assert model.to("cpu") is model and model.to(device="cpu") is model
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters()) and model[1].dtype == np.float64
    assert model(np.array([[1, 2]])).dtype == np.float64
    assert model[3].weight.grad.dtype == np.float64
    model.to(np.float32)
    assert model(np.array([[1, 2]])).dtype == np.float32
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_to_accepts_torch_dtypes_and_refuses_other_devices():
    torch = pytest.importorskip("torch")
    model = nn.Sequential(nn.Linear(2, 2), nn.GRU(2, 3))
    model.to(torch.float64)
    assert model[1].weight_ih_l0.dtype == np.float64
    model.to(torch.device("cpu"), torch.float32)
    assert model[0].weight.dtype == np.float32
    with pytest.raises(ArgumentError, match="cpu"):
        model.to(torch.device("meta"))


def test_cells_have_no_backward_in_no_grad():
    cell = nn.GRUCell(2, 3)
    with nn.no_grad():
        cell(np.ones((1, 2), np.float32))
    with pytest.raises(ArgumentError, match="backward"):
        cell.backward(np.ones((1, 3), np.float32))


def test_last_step_respects_lengths_and_layout():
    out = np.arange(24, dtype=np.float64).reshape(4, 3, 2)  # (T, B, F)
    last = nn.LastStep()
    np.testing.assert_array_equal(last(out, lengths=np.array([4, 1, 0])), [out[3, 0], out[0, 1], [0, 0]])
    grad = last.backward(np.ones((3, 2)))
    assert grad.shape == out.shape and grad.sum() == 4 and grad[3, 0].all() and grad[0, 1].all()
    first = nn.LastStep(batch_first=True)
    np.testing.assert_array_equal(first((out.transpose(1, 0, 2), None)), out[-1])
    d, d_h = first.backward(np.ones((3, 2)))
    assert d_h is None and d[:, -1].all() and d.sum() == 6


@pytest.mark.parametrize("call, error, match", [
    (lambda: nn.Embedding(5, 2, max_norm=1.0), ArgumentError, "max_norm"),
    (lambda: nn.Embedding(5, 2, sparse=True), ArgumentError, "sparse"),
    (lambda: nn.Embedding(5, 2, padding_idx=5), ArgumentError, "padding_idx"),
    (lambda: nn.Embedding(5, 2)(np.array([0.5])), DTypeError, "integer"),
    (lambda: nn.Embedding(5, 2)(np.array([7])), ArgumentError, "index 7"),
    (lambda: nn.Linear(-1, 2), ArgumentError, "in_features"),
    (lambda: nn.Linear(3, 2)(np.ones((2, 4), np.float32)), ShapeError, "in_features"),
    (lambda: nn.Linear(3, 2).backward(np.ones((1, 2))), ArgumentError, "forward"),
    (lambda: nn.GELU("exact"), ArgumentError, "approximate"),
    (lambda: nn.Dropout(1.5), ArgumentError, "p must"),
    (lambda: nn.LayerNorm(4)(np.ones((2, 3), np.float32)), ShapeError, "normalized_shape"),
    (lambda: nn.Softmax(dim=3)(np.ones((2, 3))), ArgumentError, "dim"),
    (lambda: nn.LSTMCell(2, 3)(np.ones((1, 2), np.float32), np.zeros((1, 3))), ArgumentError, "pair"),
    (lambda: nn.GRUCell(2, 3)(np.ones((1, 2), np.float32), np.zeros((2, 3))), ShapeError, "hx"),
    (lambda: nn.RNNCell(2, 3, nonlinearity="gelu"), ArgumentError, "nonlinearity"),
    (lambda: nn.Linear(2, 2).to("cuda"), ArgumentError, "cpu"),
    (lambda: nn.Linear(2, 2).to(np.int32), DTypeError, "float32"),
    (lambda: nn.LastStep()(np.ones((2, 3))), ShapeError, "LastStep"),
    (lambda: nn.Sequential(nn.Linear(2, 2), "relu"), ArgumentError, "Module"),
])
def test_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_softmax_without_dim_warns_as_torch():
    with pytest.warns(UserWarning, match="dim"):
        y = nn.Softmax()(np.zeros((2, 4)))
    np.testing.assert_array_equal(y, 0.25)  # dim 1 for a 2-D input, as torch picks


def test_frozen_parameters_are_left_alone_by_an_optimizer():
    import fastrnn.optim
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = nn.Sequential(nn.Embedding.from_pretrained(table), nn.Linear(3, 2, seed=0))
    assert not model[0].weight.requires_grad and np.array_equal(model[0].weight.data, table)
    optimizer = fastrnn.optim.Adam(model.parameters(), lr=0.1)
    before = model[1].weight.data.copy()
    out = model(np.array([1, 3]))
    model.backward(np.ones_like(out))
    optimizer.step()
    assert np.array_equal(model[0].weight.data, table) and model[0].weight.grad is None
    assert not np.array_equal(model[1].weight.data, before)
    model.requires_grad_(True)
    model(np.array([1, 3]))
    model.backward(np.ones_like(out))
    assert np.array_equal(model[0].weight.grad[[0, 2]], np.zeros((2, 3)))
    assert np.array_equal(model[0].weight.grad[1], model[1].weight.data.sum(axis=0))


def test_tied_weights_are_named_twice_in_state_dicts_and_once_in_parameters():
    torch = pytest.importorskip("torch")
    ours = nn.Module()
    ours.embed = nn.Embedding(5, 3)
    ours.out = nn.Linear(3, 5, bias=False)
    ours.out.weight = ours.embed.weight
    theirs = torch.nn.Module()
    theirs.embed = torch.nn.Embedding(5, 3)
    theirs.out = torch.nn.Linear(3, 5, bias=False)
    theirs.out.weight = theirs.embed.weight
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["embed.weight", "out.weight"]
    assert len(list(ours.parameters())) == len(list(theirs.parameters())) == 1
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert np.array_equal(ours.out.weight.data, theirs.out.weight.detach().numpy())
