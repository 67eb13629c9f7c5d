"""Tests for attnlib.seq2seq: shapes, padding invariance, attention weights, errors."""

from __future__ import annotations

import pytest
import torch

from attnlib.data import Example, NumberTranslation
from attnlib.seq2seq import (
    AdditiveAttention,
    AttentionDecoder,
    DotProductAttention,
    EncoderOutput,
    GRUEncoder,
    MeanPooling,
    PlainDecoder,
    Seq2Seq,
    gru_seq2seq,
    lengths_from_mask,
)

f64 = torch.float64
TASK = NumberTranslation()
SV, TV = len(TASK.src_vocab), len(TASK.tgt_vocab)
KINDS = [None, "additive", "dot", "mean"]
EXAMPLES = [Example((5,)), Example((12, 907, 40)), Example((100, 3)), Example((999, 0, 17, 8))]


def model(kind, bidirectional=True, seed=0):
    torch.manual_seed(seed)
    return gru_seq2seq(SV, TV, hidden_size=8, embed_dim=6, attention=kind, bidirectional=bidirectional).to(f64).eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_shapes(kind, bidirectional):
    m = model(kind, bidirectional)
    src, mask, tgt_in, _ = TASK.collate(EXAMPLES)
    B, S = src.shape
    T = tgt_in.size(1)
    memory = m.encode(src, mask)
    Dm = 16 if bidirectional else 8
    assert isinstance(memory, EncoderOutput)
    assert memory.states.shape == (B, S, Dm) and memory.final.shape == (B, Dm)
    assert m(src, tgt_in, mask).shape == (B, T, TV)
    logits, weights = m.decode(tgt_in, memory, mask, need_weights=True)
    assert logits.shape == (B, T, TV)
    assert (weights is None) == (kind is None)
    if weights is not None:
        assert weights.shape == (B, T, S)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_changes_nothing(kind):
    """Each row of a padded batch gives the logits of the same row run alone, unpadded."""
    m = model(kind)
    src, mask, tgt_in, _ = TASK.collate(EXAMPLES)
    logits, weights = m.decode(tgt_in, m.encode(src, mask), mask, need_weights=True)
    memory = m.encode(src, mask)
    assert (memory.states[mask] == 0).all()
    for i, ex in enumerate(EXAMPLES):
        one = TASK.collate([ex])
        assert not one.src_key_padding_mask.any()
        alone, w_alone = m.decode(one.tgt_in, m.encode(one.src, None), None, need_weights=True)
        T, S = one.tgt_in.size(1), one.src.size(1)
        torch.testing.assert_close(logits[i, :T], alone[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(m.encode(one.src).final[0], memory.final[i], rtol=0, atol=1e-12)
        if kind is not None:
            assert (weights[i, :, S:] == 0).all()  # padded keys get exactly zero weight
            torch.testing.assert_close(weights[i, :T, :S], w_alone[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["additive", "dot", "mean"])
def test_attention_weights_sum_to_one_and_depend_on_the_input(kind):
    m = model(kind)
    src, mask, tgt_in, _ = TASK.collate(EXAMPLES)
    _, weights = m.decode(tgt_in, m.encode(src, mask), mask, need_weights=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2], dtype=f64))
    assert (weights >= 0).all()
    lengths = (~mask).sum(1)
    if kind == "mean":  # fixed equal weights: 1 / length, whatever the query
        expected = (~mask)[:, None, :].to(f64) / lengths[:, None, None]
        torch.testing.assert_close(weights, expected.expand_as(weights))
    else:  # weights change from step to step and from input to input
        assert weights[0, 0].std() > 0 and not torch.allclose(weights[1, 0], weights[1, 1])


def test_scores_match_their_formulas_and_key_cache():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, dtype=f64), torch.randn(2, 4, 7, dtype=f64)
    add = AdditiveAttention(5, 7, 6).to(f64)
    W_q, W_k, b_k, v = add.query_proj.weight, add.key_proj.weight, add.key_proj.bias, add.score_proj.weight[0]
    expected = torch.tanh((q @ W_q.T)[:, :, None] + (k @ W_k.T + b_k)[:, None]) @ v  # (B, T, S)
    torch.testing.assert_close(add.scores(q, add.project_keys(k)), expected)
    dot = DotProductAttention(5, 7).to(f64)
    torch.testing.assert_close(dot.scores(q, dot.project_keys(k)), q @ dot.key_proj.weight @ k.transpose(1, 2))
    for att in (add, dot, MeanPooling()):
        ctx, w = att(q, k)
        ctx2, w2 = att(q, k, k, projected_keys=att.project_keys(k))
        torch.testing.assert_close(ctx, ctx2)
        torch.testing.assert_close(ctx, w @ k)
    values = torch.randn(2, 4, 3, dtype=f64)
    assert add(q, k, values)[0].shape == (2, 3, 3)


def test_additive_attention_gradcheck():
    torch.manual_seed(0)
    att = AdditiveAttention(3, 4, 5).to(f64)
    q = torch.randn(2, 2, 3, dtype=f64, requires_grad=True)
    k = torch.randn(2, 4, 4, dtype=f64, requires_grad=True)
    pad = torch.tensor([[False, False, False, True], [False, False, False, False]])
    assert torch.autograd.gradcheck(lambda q, k: att(q, k, key_padding_mask=pad)[0], (q, k))


@pytest.mark.parametrize("kind", [None, "additive"])
def test_decode_step_by_step_equals_teacher_forcing(kind):
    m = model(kind)
    src, mask, tgt_in, _ = TASK.collate(EXAMPLES)
    memory = m.encode(src, mask)
    full = m.decode(tgt_in, memory, mask)
    state = m.init_state(memory)
    for i in range(tgt_in.size(1)):
        logits, state = m.decode_step(tgt_in[:, i], memory, mask, state)
        torch.testing.assert_close(logits, full[:, i], rtol=0, atol=1e-12)


def test_errors():
    m = model("additive")
    src, mask, tgt_in, _ = TASK.collate(EXAMPLES)
    memory = m.encode(src, mask)
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int \(got 0\)"):
        GRUEncoder(SV, 4, 0)
    with pytest.raises(TypeError, match=r"src must be a torch.Tensor of token ids \(got list\)"):
        m.encode([[1, 2]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"src must hold token ids of dtype torch.long \(got torch.float32\)"):
        m.encode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"tgt_in must have shape \(B, length\) \(got shape \(4,\)\)"):
        m(src, tgt_in[:, 0], mask)
    with pytest.raises(ValueError, match=r"src and tgt_in must have the same batch size \(got 4 and 2\)"):
        m(src, tgt_in[:2], mask)
    with pytest.raises(TypeError, match=r"src_key_padding_mask must be torch.bool \(True = padding\) \(got torch.int64\)"):
        m.encode(src, mask.long())
    with pytest.raises(ValueError, match=r"src_key_padding_mask must have the source's shape \(B, S\) = \(4, 10\) \(got \(4, 9\)\)"):
        m.encode(src, mask[:, :-1])
    with pytest.raises(ValueError, match="must mark padding at the end of each row only"):
        m.encode(src, mask.flip(1))
    with pytest.raises(ValueError, match="marks every position of a row as padding"):
        lengths_from_mask(torch.ones(1, 3, dtype=torch.bool), (1, 3))
    with pytest.raises(TypeError, match=r"src_key_padding_mask must be a torch.Tensor or None \(got list\)"):
        lengths_from_mask([[True]], (1, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"memory must be the EncoderOutput of the encoder \(got Tensor\)"):
        m.decode(tgt_in, memory.states, mask)
    with pytest.raises(ValueError, match=r"tgt_in and memory must have the same batch size \(got 2 and 4\)"):
        m.decode(tgt_in[:2], memory, mask)
    with pytest.raises(ValueError, match=r"state must have shape \(B, Hd\) = \(4, 16\) \(got \(4, 3\)\)"):
        m.decode_step(tgt_in[:, 0], memory, mask, torch.zeros(4, 3, dtype=f64))
    with pytest.raises(ValueError, match=r"key_padding_mask must be a torch.bool tensor of shape \(B, S\) = \(4, 10\)"):
        m.decode(tgt_in, memory, mask[:, :3])
    att = AdditiveAttention(3, 4, 5)
    with pytest.raises(ValueError, match=r"query must have shape \(B, length, width\) \(got shape \(2, 3\)\)"):
        att(torch.zeros(2, 3), torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match=r"keys must be a torch.Tensor \(got NoneType\)"):
        att(torch.zeros(2, 1, 3), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query, keys and values must share the batch size"):
        att(torch.zeros(2, 1, 3), torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match=r"attention must be a Seq2SeqAttention module \(got Linear\)"):
        AttentionDecoder(TV, 4, 8, 8, torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"encoder must be a GRUEncoder \(got Linear\)"):
        Seq2Seq(torch.nn.Linear(2, 2), PlainDecoder(TV, 4, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"decoder must be a PlainDecoder or an AttentionDecoder \(got Linear\)"):
        Seq2Seq(GRUEncoder(SV, 4, 4), torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"the decoder's context_dim must equal the encoder's out_dim \(got 6 and 8\)"):
        Seq2Seq(GRUEncoder(SV, 4, 4), PlainDecoder(TV, 4, 8, 6))
    with pytest.raises(ValueError, match=r"attention must be None or one of \['additive', 'dot', 'mean'\] \(got 'luong'\)"):
        gru_seq2seq(SV, TV, attention="luong")
