"""Tests for attnlib.decoding: greedy decoding for the sequence-to-sequence protocol."""

from __future__ import annotations

from typing import Optional

import pytest
import torch
from torch import Tensor

from attnlib.data import BOS_ID, EOS_ID, PAD_ID, Example, NumberTranslation
from attnlib.decoding import IncrementalSeq2SeqModel, Seq2SeqModel, greedy_decode, translate
from attnlib.seq2seq import gru_seq2seq

TASK = NumberTranslation()
EXAMPLES = [Example((5,)), Example((12, 907, 40)), Example((100, 3)), Example((999, 0, 17, 8))]


class Scripted(torch.nn.Module):
    """A stand-in model that reads out a fixed script per row: the token at each position."""

    def __init__(self, scripts: Tensor, vocab: int = 8) -> None:
        super().__init__()
        self.scripts = scripts  # (B, L)
        self.vocab = vocab
        self.calls = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def encode(self, src: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        return src

    def decode(self, tgt_in: Tensor, memory: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        self.calls += 1
        B, T = tgt_in.shape
        assert (tgt_in[:, 0] == BOS_ID).all()
        return torch.nn.functional.one_hot(self.scripts[:, :T], self.vocab).float()  # (B, T, V)

    def forward(self, src: Tensor, tgt_in: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.decode(tgt_in, self.encode(src))


def test_greedy_stops_at_eos_per_sequence_and_pads_after():
    scripts = torch.tensor([[5, 6, EOS_ID, 7, 7, 7], [4, EOS_ID, 7, 7, 7, 7], [6, 6, 6, 6, EOS_ID, 7]])
    model = Scripted(scripts)
    assert isinstance(model, Seq2SeqModel) and not isinstance(model, IncrementalSeq2SeqModel)
    out = greedy_decode(model, torch.zeros(3, 2, dtype=torch.long), max_len=20)
    expected = torch.tensor([[5, 6, EOS_ID, PAD_ID, PAD_ID], [4, EOS_ID, PAD_ID, PAD_ID, PAD_ID], [6, 6, 6, 6, EOS_ID]])
    assert torch.equal(out, expected)
    assert model.calls == 5  # stopped as soon as every row had finished, not at max_len
    cut = greedy_decode(Scripted(scripts), torch.zeros(3, 2, dtype=torch.long), max_len=2)
    assert torch.equal(cut, expected[:, :2])


@pytest.mark.parametrize("kind", [None, "additive"])
def test_greedy_equals_step_by_step_argmax(kind):
    torch.manual_seed(0)
    model = gru_seq2seq(len(TASK.src_vocab), len(TASK.tgt_vocab), hidden_size=8, embed_dim=6, attention=kind).eval()
    assert isinstance(model, IncrementalSeq2SeqModel)
    src, mask, _, _ = TASK.collate(EXAMPLES)
    out = greedy_decode(model, src, mask, max_len=12)
    assert torch.equal(out, greedy_decode(model, src, mask, max_len=12, incremental=False))
    # The definition, one row at a time: append argmax of the last position until <eos>.
    for i, ex in enumerate(EXAMPLES):
        one = TASK.collate([ex])
        memory = model.encode(one.src)
        prefix = [BOS_ID]
        with torch.no_grad():
            while len(prefix) <= 12:
                logits = model.decode(torch.tensor([prefix]), memory)
                prefix.append(int(logits[0, -1].argmax()))
                if prefix[-1] == EOS_ID:
                    break
        row = out[i].tolist()
        assert row[: len(prefix) - 1] == prefix[1:]
        assert all(t == PAD_ID for t in row[len(prefix) - 1 :])


def test_translate_returns_tokens():
    torch.manual_seed(0)
    model = gru_seq2seq(len(TASK.src_vocab), len(TASK.tgt_vocab), hidden_size=8, embed_dim=6).eval()
    preds = translate(model, TASK, EXAMPLES, batch_size=3, max_len=7)
    assert len(preds) == 4 and all(isinstance(p, list) and len(p) <= 7 for p in preds)
    assert all(tok in TASK.tgt_vocab.stoi and tok not in ("<eos>", "<pad>", "<bos>") for p in preds for tok in p)
    src, mask, _, _ = TASK.collate(EXAMPLES)
    ids = greedy_decode(model, src, mask, max_len=7)
    assert preds == [TASK.tgt_vocab.decode(r) for r in ids]


def test_errors():
    model = Scripted(torch.tensor([[EOS_ID]]))
    src = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"model must follow the Seq2SeqModel protocol \(encode, decode\) \(got Linear\)"):
        greedy_decode(torch.nn.Linear(2, 2), src)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"src must be a tensor of shape \(B, S\) \(got \(2,\)\)"):
        greedy_decode(model, src[0])
    with pytest.raises(ValueError, match=r"src must be a tensor of shape \(B, S\) \(got list\)"):
        greedy_decode(model, [[0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_len must be a positive int \(got 0\)"):
        greedy_decode(model, src, max_len=0)
    with pytest.raises(ValueError, match=r"incremental=True needs a model with init_state and decode_step \(got Scripted\)"):
        greedy_decode(model, src, incremental=True)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module \(got str\)"):
        translate("model", TASK, EXAMPLES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"batch_size must be a positive int \(got 0\)"):
        translate(model, TASK, EXAMPLES, batch_size=0)
