"""Tests for attnlib.rnn: parity with PyTorch's cells and layers, padding, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlib.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

TOL = 1e-10
f64 = torch.float64
I, D, B, T = 3, 5, 4, 7

CELLS = {
    "rnn-tanh": (lambda **kw: RNNCell(I, D, **kw), lambda **kw: nn.RNNCell(I, D, **kw)),
    "rnn-relu": (
        lambda **kw: RNNCell(I, D, nonlinearity="relu", **kw),
        lambda **kw: nn.RNNCell(I, D, nonlinearity="relu", **kw),
    ),
    "lstm": (lambda **kw: LSTMCell(I, D, **kw), lambda **kw: nn.LSTMCell(I, D, **kw)),
    "gru": (lambda **kw: GRUCell(I, D, **kw), lambda **kw: nn.GRUCell(I, D, **kw)),
}
LAYERS = {
    "rnn": (RNN, nn.RNN),
    "lstm": (LSTM, nn.LSTM),
    "gru": (GRU, nn.GRU),
}


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


def make_layers(kind, num_layers=1, bidirectional=False, bias=True, input_size=I, dropout=0.0):
    """attnlib's layer and PyTorch's, float64, with PyTorch's weights copied into ours."""
    ours_cls, ref_cls = LAYERS[kind]
    torch.manual_seed(0)
    ref = ref_cls(input_size, D, num_layers=num_layers, bias=bias, batch_first=True,
                  bidirectional=bidirectional, dropout=dropout).double()
    ours = ours_cls(input_size, D, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                    dropout=dropout).double()
    K = 2 if bidirectional else 1
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    with torch.no_grad():
        for layer in range(num_layers):
            for direction in range(K):
                suffix = "_reverse" if direction == 1 else ""
                cell = ours.cells[layer * K + direction]
                for name in names:
                    getattr(cell, name).copy_(getattr(ref, f"{name}_l{layer}{suffix}"))
    return ours, ref


def initial_state(kind, LK, seed=5):
    h0 = randn(LK, B, D, seed=seed)
    return (h0, randn(LK, B, D, seed=seed + 1)) if kind == "lstm" else h0


def assert_state_close(ours, ref):
    if isinstance(ref, tuple):
        assert isinstance(ours, tuple) and len(ours) == 2
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, atol=TOL, rtol=0)
    else:
        torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)


# --- cells ------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_parity_with_torch(kind, with_state, bias):
    make_ours, make_ref = CELLS[kind]
    torch.manual_seed(0)
    ref = make_ref(bias=bias).double()
    ours = make_ours(bias=bias).double()
    ours.load_state_dict(ref.state_dict())  # same names and shapes: the weights copy straight across
    x = randn(B, I)
    hx = None
    if with_state:
        hx = (randn(B, D, seed=1), randn(B, D, seed=2)) if kind == "lstm" else randn(B, D, seed=1)
    assert_state_close(ours(x, hx), ref(x, hx))


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_parameter_shapes_match_torch(kind):
    make_ours, make_ref = CELLS[kind]
    ours, ref = make_ours(), make_ref()
    assert {n: p.shape for n, p in ours.named_parameters()} == {n: p.shape for n, p in ref.named_parameters()}


def test_default_init_is_uniform_in_one_over_sqrt_hidden():
    cell = LSTMCell(8, 64)
    bound = 64**-0.5
    for p in cell.parameters():
        assert p.abs().max() <= bound
        assert p.abs().max() > 0.9 * bound  # filled, not zeros


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_gradcheck(kind):
    make_ours, _ = CELLS[kind]
    torch.manual_seed(0)
    cell = make_ours().double()
    x = randn(2, I).requires_grad_()
    if kind == "lstm":
        h, c = randn(2, D, seed=1).requires_grad_(), randn(2, D, seed=2).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, h, c: cell(x, (h, c)), (x, h, c))
    else:
        h = randn(2, D, seed=1).requires_grad_()
        assert torch.autograd.gradcheck(cell, (x, h))


# --- layers -----------------------------------------------------------------------------

SHAPES = [  # (num_layers, bidirectional, bias)
    (1, False, True),
    (1, True, True),
    (2, False, True),
    (2, True, True),
    (1, False, False),
]
LAYER_CASES = [(kind, *shape) for kind in LAYERS for shape in SHAPES]


def case_id(case):
    kind, num_layers, bidirectional, bias = case
    return f"{kind}-L{num_layers}" + ("-bi" if bidirectional else "") + ("" if bias else "-nobias")


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_layer_parity_with_torch(case, with_state):
    kind, num_layers, bidirectional, bias = case
    ours, ref = make_layers(kind, num_layers, bidirectional, bias)
    x = randn(B, T, I)
    hx = initial_state(kind, num_layers * (2 if bidirectional else 1)) if with_state else None
    out, final = ours(x, hx)
    ref_out, ref_final = ref(x, hx)
    K = 2 if bidirectional else 1
    assert out.shape == (B, T, K * D)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)
    assert_state_close(final, ref_final)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_padded_batch_matches_torch_packed_sequence(case, with_state):
    kind, num_layers, bidirectional, bias = case
    ours, ref = make_layers(kind, num_layers, bidirectional, bias)
    x = randn(B, T, I)
    lengths = torch.tensor([T, 3, 5, 1])  # unsorted, one full, one of length 1
    hx = initial_state(kind, num_layers * (2 if bidirectional else 1)) if with_state else None
    out, final = ours(x, hx, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_packed, ref_final = ref(packed, hx)
    ref_out, _ = pad_packed_sequence(ref_packed, batch_first=True, total_length=T)  # zeros at padding
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)
    assert_state_close(final, ref_final)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_padding_values_do_not_matter_and_each_sequence_runs_alone(kind):
    ours, _ = make_layers(kind, num_layers=2, bidirectional=True)
    x = randn(B, T, I)
    lengths = [4, T, 2, 6]
    noisy = x.clone()
    for b, n in enumerate(lengths):
        noisy[b, n:] = randn(T - n, I, seed=10 + b) * 100  # garbage in the padding
    out, final = ours(x, lengths=lengths)
    out_noisy, final_noisy = ours(noisy, lengths=lengths)
    torch.testing.assert_close(out, out_noisy, atol=TOL, rtol=0)
    assert_state_close(final, final_noisy)
    for b, n in enumerate(lengths):  # the same as running sequence b alone, unpadded
        alone_out, alone_final = ours(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone_out[0], atol=TOL, rtol=0)
        assert (out[b, n:] == 0).all()
        if kind == "lstm":
            assert_state_close((final[0][:, b], final[1][:, b]), (alone_final[0][:, 0], alone_final[1][:, 0]))
        else:
            torch.testing.assert_close(final[:, b], alone_final[:, 0], atol=TOL, rtol=0)


def test_lengths_all_full_equals_no_lengths():
    ours, _ = make_layers("gru", bidirectional=True)
    x = randn(B, T, I)
    out, final = ours(x)
    out_full, final_full = ours(x, lengths=torch.full((B,), T))
    torch.testing.assert_close(out, out_full, atol=0, rtol=0)
    torch.testing.assert_close(final, final_full, atol=0, rtol=0)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_dropout_between_layers_matches_torch_in_eval_and_acts_in_training(kind):
    ours, ref = make_layers(kind, num_layers=2, dropout=0.5)
    ours.eval(), ref.eval()
    x = randn(B, T, I)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=TOL, rtol=0)
    ours.train()
    torch.manual_seed(1)
    a = ours(x)[0]
    torch.manual_seed(2)
    b = ours(x)[0]
    assert not torch.allclose(a, b)


def test_layer_gradcheck_bidirectional_gru_with_lengths():
    torch.manual_seed(0)
    gru = GRU(2, 3, bidirectional=True).double()
    x = randn(2, 4, 2).requires_grad_()
    h0 = randn(2, 2, 3, seed=1).requires_grad_()

    def f(x, h0):
        out, final = gru(x, h0, lengths=[4, 2])
        return out, final

    assert torch.autograd.gradcheck(f, (x, h0))


def test_layer_gradcheck_lstm_two_layers():
    torch.manual_seed(0)
    lstm = LSTM(2, 3, num_layers=2).double()
    x = randn(2, 4, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: lstm(x)[0], (x,))


def test_forward_stashes_nothing():
    lstm = LSTM(I, D).double()
    before = set(vars(lstm))
    lstm(randn(B, T, I))
    assert set(vars(lstm)) == before


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU])
def test_constructor_errors(cls):
    with pytest.raises(ValueError, match=r"input_size must be a positive int \(got 0\)"):
        cls(0, D)
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int \(got 2.5\)"):
        cls(I, 2.5)
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int \(got True\)"):
        cls(I, True)


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_layer_constructor_errors(cls):
    with pytest.raises(ValueError, match=r"num_layers must be a positive int \(got 0\)"):
        cls(I, D, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\) \(got 1.0\)"):
        cls(I, D, dropout=1.0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\) \(got 'a'\)"):
        cls(I, D, dropout="a")
    with pytest.raises(TypeError, match=r"bidirectional must be a bool \(got 2\)"):
        cls(I, D, bidirectional=2)


@pytest.mark.parametrize("cls", [RNNCell, RNN])
def test_nonlinearity_error(cls):
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu' \(got 'sigmoid'\)"):
        cls(I, D, nonlinearity="sigmoid")


@pytest.mark.parametrize("cls", [RNNCell, GRUCell])
def test_cell_input_errors(cls):
    cell = cls(I, D)
    with pytest.raises(TypeError, match=r"input must be a torch.Tensor \(got list\)"):
        cell([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"input must have shape \(B, I\) with I=3 \(got \(4, 2\)\)"):
        cell(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"input must have shape \(B, I\) with I=3 \(got \(3,\)\)"):
        cell(torch.zeros(3))
    with pytest.raises(TypeError, match=r"hx must be a torch.Tensor \(got float\)"):
        cell(torch.zeros(4, I), 0.0)
    with pytest.raises(ValueError, match=r"hx must have shape \(B, D\) = \(4, 5\) \(got \(3, 5\)\)"):
        cell(torch.zeros(4, I), torch.zeros(3, D))


def test_lstm_cell_state_errors():
    cell = LSTMCell(I, D)
    x = torch.zeros(4, I)
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h, c\) or None \(got Tensor\)"):
        cell(x, torch.zeros(4, D))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h, c\) or None \(got tuple\)"):
        cell(x, (torch.zeros(4, D),))
    with pytest.raises(ValueError, match=r"h must have shape \(B, D\) = \(4, 5\) \(got \(4, 6\)\)"):
        cell(x, (torch.zeros(4, 6), torch.zeros(4, D)))
    with pytest.raises(ValueError, match=r"c must have shape \(B, D\) = \(4, 5\) \(got \(5,\)\)"):
        cell(x, (torch.zeros(4, D), torch.zeros(5)))
    with pytest.raises(TypeError, match=r"c must be a torch.Tensor \(got NoneType\)"):
        cell(x, (torch.zeros(4, D), None))


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_layer_input_and_lengths_errors(cls):
    layer = cls(I, D)
    x = torch.zeros(B, T, I)
    with pytest.raises(TypeError, match=r"input must be a torch.Tensor \(got ndarray\)"):
        layer(x.numpy())
    shape_error = r"input must be batch-first with shape \(B, T, I\) and I=3 "
    with pytest.raises(ValueError, match=shape_error + r"\(got \(7, 3\)\)"):
        layer(torch.zeros(T, I))
    with pytest.raises(ValueError, match=shape_error + r"\(got \(4, 7, 2\)\)"):
        layer(torch.zeros(B, T, 2))
    with pytest.raises(TypeError, match=r"lengths must hold integers \(got dtype torch.float32\)"):
        layer(x, lengths=torch.tensor([7.0, 3.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match=r"lengths must hold integers \(got dtype torch.bool\)"):
        layer(x, lengths=torch.ones(B, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(4,\) \(got \(3,\)\)"):
        layer(x, lengths=[7, 3, 2])
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T\] = \[1, 7\] \(got \[7, 0, 2, 1\]\)"):
        layer(x, lengths=[7, 0, 2, 1])
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T\] = \[1, 7\] \(got \[8, 3, 2, 1\]\)"):
        layer(x, lengths=torch.tensor([8, 3, 2, 1]))


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_layer_initial_state_errors(cls):
    layer = cls(I, D, num_layers=2, bidirectional=True)
    x = torch.zeros(B, T, I)
    with pytest.raises(TypeError, match=r"h0 must be a torch.Tensor \(got tuple\)"):
        layer(x, (torch.zeros(4, B, D), torch.zeros(4, B, D)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(L\*K, B, D\) = \(4, 4, 5\) \(got \(2, 4, 5\)\)"):
        layer(x, torch.zeros(2, B, D))


def test_lstm_initial_state_errors():
    layer = LSTM(I, D)
    x = torch.zeros(B, T, I)
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\) or None \(got Tensor\)"):
        layer(x, torch.zeros(1, B, D))
    with pytest.raises(ValueError, match=r"h0 must have shape \(L\*K, B, D\) = \(1, 4, 5\) \(got \(1, 4, 6\)\)"):
        layer(x, (torch.zeros(1, B, 6), torch.zeros(1, B, D)))
    with pytest.raises(ValueError, match=r"c0 must have shape \(L\*K, B, D\) = \(1, 4, 5\) \(got \(4, 5\)\)"):
        layer(x, (torch.zeros(1, B, D), torch.zeros(B, D)))
    with pytest.raises(TypeError, match=r"c0 must be a torch.Tensor \(got int\)"):
        layer(x, (torch.zeros(1, B, D), 0))


# --- forget-gate bias -------------------------------------------------------------------


def test_forget_bias_sets_the_forget_block_and_nothing_else():
    torch.manual_seed(0)
    plain = LSTMCell(I, D)
    torch.manual_seed(0)
    opened = LSTMCell(I, D, forget_bias=1.0)
    torch.testing.assert_close(opened.bias_ih[D : 2 * D], torch.ones(D))
    torch.testing.assert_close(opened.bias_hh[D : 2 * D], torch.zeros(D))
    for name in ["weight_ih", "weight_hh"]:
        torch.testing.assert_close(getattr(opened, name), getattr(plain, name))
    others = torch.cat([torch.arange(D), torch.arange(2 * D, 4 * D)])
    torch.testing.assert_close(opened.bias_ih[others], plain.bias_ih[others])
    layer = LSTM(I, D, num_layers=2, bidirectional=True, forget_bias=2)
    for cell in layer.cells:
        assert ((cell.bias_ih + cell.bias_hh)[D : 2 * D] == 2).all()
    cell = LSTMCell(I, D, forget_bias=3.0)
    cell.reset_parameters()
    assert (cell.bias_ih[D : 2 * D] == 3).all()


@pytest.mark.parametrize("cls", [LSTMCell, LSTM])
def test_forget_bias_errors(cls):
    with pytest.raises(ValueError, match=r"forget_bias must be a finite float or None \(got 'one'\)"):
        cls(I, D, forget_bias="one")
    with pytest.raises(ValueError, match=r"forget_bias must be a finite float or None \(got inf\)"):
        cls(I, D, forget_bias=float("inf"))
    with pytest.raises(ValueError, match=r"forget_bias needs bias=True \(got forget_bias=1.0 and bias=False\)"):
        cls(I, D, bias=False, forget_bias=1.0)
