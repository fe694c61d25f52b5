"""fastrnn.nn modules against torch.nn given the same weights: outputs, final states,
the input's and hx's gradients and every parameter's gradient, over the grid of
configurations (cell, layers, directions, layout, bias, projection, lengths, dtype).

Variable-length batches are compared with PyTorch's pack_padded_sequence ->
module -> pad_packed_sequence. Skipped when torch is not installed.
"""

import itertools

import numpy as np
import pytest

import fastrnn.nn as fnn
from helpers import assert_close
from tolerances import GRADIENT_NORM_PARITY, TORCH_PARITY

torch = pytest.importorskip("torch")

T, B, D, H = 6, 4, 5, 7
LENGTHS = [6, 2, 1, 4]  # unsorted, with a full-length row and a length-1 row

CELLS = {"RNN": (fnn.RNN, torch.nn.RNN), "LSTM": (fnn.LSTM, torch.nn.LSTM),
         "GRU": (fnn.GRU, torch.nn.GRU)}


def configurations():
    for cell, layers, bidirectional, batch_first, bias, proj, lengths, dtype in itertools.product(
            CELLS, (1, 2, 3), (False, True), (False, True), (True, False), (0, 3),
            (False, True), (np.float32, np.float64)):
        if proj and cell != "LSTM":
            continue
        # the full grid for float64; float32 on a quarter of it keeps the run short
        if dtype is np.float32 and (layers + batch_first + bias) % 2:
            continue
        yield pytest.param(cell, layers, bidirectional, batch_first, bias, proj, lengths, dtype,
                           id=f"{cell}-L{layers}-{'bi' if bidirectional else 'uni'}"
                              f"-{'bf' if batch_first else 'tm'}-{'bias' if bias else 'nobias'}"
                              f"-P{proj}-{'len' if lengths else 'full'}-{np.dtype(dtype).name}")


def make_pair(cell, dtype, **config):
    """A fastrnn module and a torch module holding the same weights."""
    ours_cls, torch_cls = CELLS[cell]
    ours = ours_cls(D, H, dtype=dtype, seed=7, **config)
    theirs = torch_cls(D, H, dtype=getattr(torch, np.dtype(dtype).name), **config)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def torch_run(module, x, hx, lengths, batch_first):
    """Forward with torch; ``lengths`` through pack_padded_sequence."""
    if lengths is None:
        return module(x, hx)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                                     enforce_sorted=False)
    output, state = module(packed, hx)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=batch_first, total_length=T)
    return output, state


@pytest.mark.parametrize("cell, layers, bidirectional, batch_first, bias, proj, with_lengths, dtype",
                         list(configurations()))
def test_module_matches_torch(cell, layers, bidirectional, batch_first, bias, proj, with_lengths,
                              dtype):
    config = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    if proj:
        config["proj_size"] = proj
    ours, theirs = make_pair(cell, dtype, **config)
    rng = np.random.default_rng(3)
    dirs = 2 if bidirectional else 1
    P = proj or H
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(dtype)
    h0 = rng.standard_normal((layers * dirs, B, P)).astype(dtype)
    c0 = rng.standard_normal((layers * dirs, B, H)).astype(dtype)
    lengths = LENGTHS if with_lengths else None
    is_lstm = cell == "LSTM"

    output, state = ours(x, (h0, c0) if is_lstm else h0, lengths=lengths)
    x_t = torch.tensor(x, requires_grad=True)
    h0_t = torch.tensor(h0, requires_grad=True)
    c0_t = torch.tensor(c0, requires_grad=True)
    output_t, state_t = torch_run(theirs, x_t, (h0_t, c0_t) if is_lstm else h0_t, lengths,
                                  batch_first)

    d_output = rng.standard_normal(output.shape).astype(dtype)
    d_h = rng.standard_normal(h0.shape).astype(dtype)
    d_c = rng.standard_normal(c0.shape).astype(dtype)
    states, states_t, d_states = ((state, state_t, (d_h, d_c)) if is_lstm
                                  else ((state,), (state_t,), (d_h,)))
    loss = (output_t * torch.tensor(d_output)).sum()
    for s_t, d in zip(states_t, d_states):
        loss = loss + (s_t * torch.tensor(d)).sum()
    loss.backward()
    d_x = ours.backward(d_output, *d_states)

    tol = TORCH_PARITY[np.dtype(dtype)]
    context = f"{cell} {config} lengths={lengths} {np.dtype(dtype).name}"
    assert_close(output, output_t.detach().numpy(), tol, context, "output")
    for name, s, s_t in zip(("h_n", "c_n"), states, states_t):
        assert_close(s, s_t.detach().numpy(), tol, context, name)
    assert_close(d_x, x_t.grad.numpy(), tol, context, "input gradient")
    grad_hx = ours.grad_hx if is_lstm else (ours.grad_hx,)
    for name, g, g_t in zip(("h0", "c0"), grad_hx, (h0_t.grad, c0_t.grad)):
        assert_close(g, g_t.numpy(), tol, context, f"{name} gradient")
    torch_grads = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(torch_grads)
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad, torch_grads[name].grad.numpy(), tol, context, f"{name}.grad")


@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_input_matches_torch(cell):
    ours, theirs = make_pair(cell, np.float64, num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((T, D))
    output, state = ours(x)
    output_t, state_t = theirs(torch.tensor(x))
    assert output.shape == (T, 2 * H)
    assert_close(output, output_t.detach().numpy(), TORCH_PARITY[np.dtype(np.float64)], cell, "output")
    h, h_t = (state[0], state_t[0]) if cell == "LSTM" else (state, state_t)
    assert h.shape == (4, H)
    assert_close(h, h_t.detach().numpy(), TORCH_PARITY[np.dtype(np.float64)], cell, "h_n")


@pytest.mark.parametrize("cell", CELLS)
def test_relu_rnn_and_eval_mode_dropout_match_torch(cell):
    """In eval mode dropout is off, so a module with dropout equals torch's in eval mode."""
    extra = {"nonlinearity": "relu"} if cell == "RNN" else {}
    ours, theirs = make_pair(cell, np.float64, num_layers=3, dropout=0.5, **extra)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(1).standard_normal((T, B, D))
    output, _ = ours(x)
    assert_close(output, theirs(torch.tensor(x))[0].detach().numpy(),
                 TORCH_PARITY[np.dtype(np.float64)], cell, "output")


@pytest.mark.parametrize("cell", CELLS)
def test_training_dropout_equals_layers_run_one_by_one_with_the_same_masks(cell):
    """Dropout sits between layers only: torch single-layer modules, with fastrnn's masks
    applied to their outputs, reproduce the stacked module's output and gradients."""
    layers, p = 3, 0.4
    ours = CELLS[cell][0](D, H, num_layers=layers, dropout=p, bidirectional=True,
                          dtype=np.float64, seed=11)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, D))
    output, _ = ours(x)
    masks = ours._tape["dropout_masks"]
    assert masks[-1] is None and all(m is not None for m in masks[:-1])
    for mask in masks[:-1]:  # inverted dropout: kept entries scaled by 1/(1-p)
        assert set(np.unique(mask)) <= {0.0, 1 / (1 - p)}
    d_output = rng.standard_normal(output.shape)
    d_x = ours.backward(d_output)

    state = ours.state_dict()
    x_t = torch.tensor(x, requires_grad=True)
    h = x_t
    torch_layers = []
    for layer in range(layers):
        single = CELLS[cell][1](h.shape[2], H, bidirectional=True, dtype=torch.float64)
        single.load_state_dict({name: torch.from_numpy(state[name.replace("_l0", f"_l{layer}")])
                                for name in single.state_dict()})
        torch_layers.append(single)
        h = single(h)[0]
        if masks[layer] is not None:
            h = h * torch.from_numpy(masks[layer])
    (h * torch.tensor(d_output)).sum().backward()
    tol = TORCH_PARITY[np.dtype(np.float64)]
    assert_close(output, h.detach().numpy(), tol, cell, "output")
    assert_close(d_x, x_t.grad.numpy(), tol, cell, "input gradient")
    for layer, single in enumerate(torch_layers):
        for name, parameter in single.named_parameters():
            ours_name = name.replace("_l0", f"_l{layer}")
            assert_close(ours._parameters[ours_name].grad, parameter.grad.numpy(), tol, cell,
                         ours_name)


@pytest.mark.parametrize("cell", CELLS)
def test_from_torch_and_to_torch_round_trip(cell):
    extra = {"proj_size": 3} if cell == "LSTM" else {}
    theirs = CELLS[cell][1](D, H, num_layers=2, bidirectional=True, batch_first=True, **extra)
    ours = fnn.from_torch(theirs)
    assert type(ours) is CELLS[cell][0] and ours.batch_first and ours.num_layers == 2
    x = np.random.default_rng(2).standard_normal((B, T, D)).astype(np.float32)
    assert_close(ours(x)[0], theirs(torch.tensor(x))[0].detach().numpy(),
                 TORCH_PARITY[np.dtype(np.float32)], cell, "output")
    back = fnn.to_torch(ours)
    assert type(back) is CELLS[cell][1]
    for (name, a), (name_b, b) in zip(theirs.state_dict().items(), back.state_dict().items()):
        assert name == name_b and torch.equal(a, b)


@pytest.mark.parametrize("cell, optimizer", [("LSTM", "Adam"), ("GRU", "SGD"), ("RNN", "RMSprop")])
def test_twenty_training_steps_match_torch(cell, optimizer):
    """Module, loss, clipping and optimizer together: the weights after 20 steps agree."""
    from fastrnn import losses, optim

    ours, theirs = make_pair(cell, np.float64, num_layers=2, bidirectional=True, batch_first=True)
    settings = {"Adam": dict(lr=0.01), "SGD": dict(lr=0.1, momentum=0.9, nesterov=True),
                "RMSprop": dict(lr=0.01, centered=True)}[optimizer]
    opt = getattr(optim, optimizer)(ours.parameters(), **settings)
    opt_t = getattr(torch.optim, optimizer)(theirs.parameters(), **settings)
    criterion, criterion_t = losses.MSELoss(), torch.nn.MSELoss()
    rng = np.random.default_rng(9)
    lengths = [T, 3, 5, 1]
    for _ in range(20):
        x = rng.standard_normal((B, T, D))
        target = rng.standard_normal((B, T, 2 * H))
        opt.zero_grad()
        output, _ = ours(x, lengths=lengths)
        criterion(output, target)
        ours.backward(criterion.backward())
        norm = fnn.utils.clip_grad_norm_(ours.parameters(), max_norm=0.5)
        opt.step()

        opt_t.zero_grad()
        output_t, _ = torch_run(theirs, torch.tensor(x), None, lengths, True)
        criterion_t(output_t, torch.tensor(target)).backward()
        norm_t = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm=0.5)
        opt_t.step()
        assert abs(norm - float(norm_t)) <= GRADIENT_NORM_PARITY["rtol"] * float(norm_t)
    tol = TORCH_PARITY[np.dtype(np.float64)]
    torch_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        assert_close(value, torch_state[name].numpy(), tol, f"{cell} {optimizer}", name)
