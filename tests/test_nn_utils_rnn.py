"""fastrnn.nn.utils.rnn: padding and packing against torch.nn.utils.rnn and hand-worked cases, and
PackedSequence inputs of the recurrent modules (theirs and torch's) against torch and the lengths path."""

import numpy as np
import pytest

import fastrnn.nn as nn
from fastrnn.exceptions import ArgumentError, ShapeError
from fastrnn.nn.utils import rnn
from helpers import assert_close
from tolerances import TORCH_PARITY


def _sequences(lengths, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, features)) for n in lengths]


def _assert_same_packed(ours, theirs):
    np.testing.assert_array_equal(ours.data, theirs.data.numpy())
    np.testing.assert_array_equal(ours.batch_sizes, theirs.batch_sizes.numpy())
    for field in ("sorted_indices", "unsorted_indices"):
        a, b = getattr(ours, field), getattr(theirs, field)
        assert (a is None) == (b is None), field
        if a is not None:
            np.testing.assert_array_equal(a, b.numpy())


def test_hand_worked_packing():
    padded = np.array([[1, 2, 3], [4, 5, 0], [6, 0, 0]], dtype=np.float64)  # (B, T)
    packed = rnn.pack_padded_sequence(padded[..., None], [3, 2, 1], batch_first=True)
    np.testing.assert_array_equal(packed.data[:, 0], [1, 4, 6, 2, 5, 3])
    np.testing.assert_array_equal(packed.batch_sizes, [3, 2, 1])
    assert packed.sorted_indices is None and packed.unsorted_indices is None
    unsorted = rnn.pack_padded_sequence(padded[[2, 0, 1], :, None], [1, 3, 2], batch_first=True,
                                        enforce_sorted=False)
    np.testing.assert_array_equal(unsorted.sorted_indices, [1, 2, 0])
    np.testing.assert_array_equal(unsorted.unsorted_indices, [2, 0, 1])
    back, lengths = rnn.pad_packed_sequence(unsorted, batch_first=True, padding_value=-1.0, total_length=4)
    np.testing.assert_array_equal(lengths, [1, 3, 2])
    np.testing.assert_array_equal(back[0, :, 0], [6, -1, -1, -1])
    np.testing.assert_array_equal(back[1, :, 0], [1, 2, 3, -1])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_matches_torch(batch_first, enforce_sorted, padding_side):
    torch = pytest.importorskip("torch")
    lengths = [5, 3, 3, 1] if enforce_sorted else [2, 5, 2, 4, 1]
    seqs = _sequences(lengths)
    padded = rnn.pad_sequence(seqs, batch_first=batch_first, padding_value=0.5, padding_side=padding_side)
    t_seqs = [torch.from_numpy(s) for s in seqs]
    t_padded = torch.nn.utils.rnn.pad_sequence(t_seqs, batch_first=batch_first, padding_value=0.5,
                                               padding_side=padding_side)
    np.testing.assert_array_equal(padded, t_padded.numpy())
    if padding_side == "left":
        return
    packed = rnn.pack_padded_sequence(padded, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    t_packed = torch.nn.utils.rnn.pack_padded_sequence(t_padded, torch.tensor(lengths), batch_first=batch_first,
                                                       enforce_sorted=enforce_sorted)
    _assert_same_packed(packed, t_packed)
    _assert_same_packed(rnn.pack_sequence(seqs, enforce_sorted=enforce_sorted),
                        torch.nn.utils.rnn.pack_sequence(t_seqs, enforce_sorted=enforce_sorted))
    out, out_lengths = rnn.pad_packed_sequence(packed, batch_first=batch_first, padding_value=-2.0, total_length=7)
    t_out, t_lengths = torch.nn.utils.rnn.pad_packed_sequence(t_packed, batch_first=batch_first,
                                                              padding_value=-2.0, total_length=7)
    np.testing.assert_array_equal(out, t_out.numpy())
    np.testing.assert_array_equal(out_lengths, t_lengths.numpy())
    # torch's PackedSequence is converted
    out2, _ = rnn.pad_packed_sequence(t_packed, batch_first=batch_first, padding_value=-2.0)
    np.testing.assert_array_equal(out2, t_out.numpy()[:, :5] if batch_first else t_out.numpy()[:5])


@pytest.mark.parametrize("module", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_recurrent_modules_take_packed_sequences_as_torch(module, batch_first):
    torch = pytest.importorskip("torch")
    lengths = [3, 6, 1, 4]
    seqs = _sequences(lengths, seed=2)
    ours = getattr(nn, module)(3, 5, num_layers=2, bidirectional=True, batch_first=batch_first,
                               dtype=np.float64, seed=0)
    theirs = getattr(torch.nn, module)(3, 5, num_layers=2, bidirectional=True, batch_first=batch_first).double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    packed = rnn.pack_sequence(seqs, enforce_sorted=False)
    t_data = torch.from_numpy(packed.data.copy()).requires_grad_(True)
    t_packed = torch.nn.utils.rnn.PackedSequence(t_data, *[torch.from_numpy(f) for f in packed[1:]])
    rng = np.random.default_rng(4)
    tolerance, context = TORCH_PARITY[np.dtype(np.float64)], f"packed {module} batch_first={batch_first}"
    out, state = ours(packed)
    t_out, t_state = theirs(t_packed)
    assert isinstance(out, rnn.PackedSequence)
    _assert_same_packed(out._replace(data=np.zeros(1)), t_out._replace(data=torch.zeros(1)))
    assert_close(out.data, t_out.data.detach().numpy(), tolerance, context, "output")
    h_n = state[0] if module == "LSTM" else state
    t_h_n = t_state[0] if module == "LSTM" else t_state
    assert_close(h_n, t_h_n.detach().numpy(), tolerance, context, "h_n")
    d_out = rng.standard_normal(out.data.shape)
    d_h = rng.standard_normal(h_n.shape)
    torch.autograd.backward([t_out.data, t_h_n], [torch.from_numpy(d_out), torch.from_numpy(d_h)])
    grad = ours.backward(out._replace(data=d_out), d_h)
    assert isinstance(grad, rnn.PackedSequence)
    assert_close(grad.data, t_data.grad.numpy(), tolerance, context, "input gradient")
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad, dict(theirs.named_parameters())[name].grad.numpy(), tolerance, context, name)
    # a torch PackedSequence goes in directly and equals the lengths path
    again, _ = ours(t_packed)
    padded, row_lengths = rnn.pad_packed_sequence(packed, batch_first=batch_first)
    by_lengths, _ = ours(padded, lengths=row_lengths)
    np.testing.assert_array_equal(again.data, out.data)
    np.testing.assert_array_equal(rnn.pad_packed_sequence(again, batch_first=batch_first)[0], by_lengths)


def test_last_step_of_a_packed_output_is_h_n():
    lstm = nn.LSTM(3, 4, dtype=np.float64, seed=0)
    packed = rnn.pack_sequence(_sequences([2, 5, 3]), enforce_sorted=False)
    result = lstm(packed)
    last = nn.LastStep()
    np.testing.assert_array_equal(last(result), result[1][0][0])
    grad, d_h = last.backward(np.ones((3, 4)))
    assert d_h is None and isinstance(grad, rnn.PackedSequence) and grad.data.sum() == 12


@pytest.mark.parametrize("call, match", [
    (lambda: rnn.pack_padded_sequence(np.zeros((4, 3, 2)), [1, 3, 2]), "decreasing"),
    (lambda: rnn.pack_padded_sequence(np.zeros((4, 3, 2)), [4, 3, 0]), r"\[1, 4\]"),
    (lambda: rnn.pack_padded_sequence(np.zeros((4, 3, 2)), [4.0, 3.0, 1.0]), "integers"),
    (lambda: rnn.pad_sequence([np.zeros((2, 3)), np.zeros((2, 4))]), "shape"),
    (lambda: rnn.pad_sequence([np.zeros(2)], padding_side="middle"), "padding_side"),
    (lambda: rnn.pad_packed_sequence(np.zeros((3, 2))), "PackedSequence"),
    (lambda: rnn.pad_packed_sequence(rnn.pack_sequence([np.zeros((3, 1))]), total_length=2), "total_length"),
    (lambda: nn.GRU(1, 2)(rnn.pack_sequence([np.zeros((3, 1), np.float32)]), lengths=[3]), "lengths"),
])
def test_clear_errors(call, match):
    with pytest.raises((ArgumentError, ShapeError), match=match):
        call()


def test_torch_packed_sequence_that_numpy_cannot_hold_is_refused():
    torch = pytest.importorskip("torch")
    t_packed = torch.nn.utils.rnn.pack_sequence([torch.zeros(3, 2, dtype=torch.bfloat16)])
    with pytest.raises(ArgumentError, match="PackedSequence"):
        nn.GRU(2, 3)(t_packed)
