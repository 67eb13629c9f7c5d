"""Tests for the sequence-to-sequence helpers of attnlib.train (loss, accuracies)."""

from __future__ import annotations

import pytest
import torch

from attnlib.data import EOS_ID, PAD_ID, NumberTranslation, Seq2SeqBatch
from attnlib.seq2seq import gru_seq2seq
from attnlib.train import accuracy_by_bucket, exact_match, fit, seq2seq_loss, token_accuracy


class Fixed(torch.nn.Module):
    """Returns the same logits whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, src, tgt_in, src_key_padding_mask=None):
        return self.logits


def test_loss_ignores_padding():
    torch.manual_seed(0)
    tgt_out = torch.tensor([[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]])
    batch = Seq2SeqBatch(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.bool), tgt_out, tgt_out)
    logits = torch.randn(2, 3, 9)
    loss = seq2seq_loss(Fixed(logits), batch)
    real = tgt_out != PAD_ID
    expected = torch.nn.functional.cross_entropy(logits[real], tgt_out[real])
    torch.testing.assert_close(loss, expected)
    changed = logits.clone()
    changed[1, 2] = 100.0  # the padded position: must not matter
    torch.testing.assert_close(seq2seq_loss(Fixed(changed), batch), expected)


def test_accuracies():
    targets = torch.tensor([[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]])
    logits = torch.nn.functional.one_hot(torch.tensor([[5, 0, EOS_ID], [7, EOS_ID, 4]]), 9).float()
    assert token_accuracy(logits, targets) == pytest.approx(4 / 5)  # the padded position is not counted
    pred = torch.tensor([[5, 6, EOS_ID, PAD_ID], [7, 3, EOS_ID, PAD_ID]])  # wider than targets: padded
    assert exact_match(pred, targets).tolist() == [True, False]
    assert exact_match(pred[:, :2], targets).tolist() == [False, False]  # cut before <eos>
    assert exact_match(torch.tensor([[7, EOS_ID]]), targets[1:]).tolist() == [True]
    acc = accuracy_by_bucket([True, False, True, True], [3, 1, 3, 1])
    assert acc == {1: 0.5, 3: 1.0} and list(acc) == [1, 3]


def test_training_a_small_task_lowers_the_loss():
    torch.manual_seed(0)
    task = NumberTranslation(max_count=2, digit_weights=(1, 1, 0))
    model = gru_seq2seq(len(task.src_vocab), len(task.tgt_vocab), hidden_size=16, embed_dim=8, attention="additive")
    h = fit(model, seq2seq_loss, task.batches(16, seed=0), steps=40, lr=1e-2, progress=False)
    assert sum(h.loss[-5:]) / 5 < 0.6 * sum(h.loss[:5]) / 5


def test_errors():
    batch = Seq2SeqBatch(*(torch.zeros(2, 3, dtype=torch.long),) * 4)
    with pytest.raises(TypeError, match=r"batch must have the fields of a Seq2SeqBatch \(missing 'src' in tuple\)"):
        seq2seq_loss(Fixed(torch.zeros(2, 3, 5)), (1, 2))
    with pytest.raises(ValueError, match=r"model output must have shape \(B, T, V\) with \(B, T\) = \(2, 3\) \(got \(2, 4, 5\)\)"):
        seq2seq_loss(Fixed(torch.zeros(2, 4, 5)), batch)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, T, V\) and targets \(B, T\) \(got \(2, 3\) and \(2, 3\)\)"):
        token_accuracy(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets has no position other than padding"):
        token_accuracy(torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"predictions and targets must be \(B, L\) and \(B, T\) with the same B \(got \(3, 2\) and \(2, 3\)\)"):
        exact_match(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"correct and buckets must have the same length \(got 2 and 1\)"):
        accuracy_by_bucket([True, False], [1])
    with pytest.raises(ValueError, match="correct must not be empty"):
        accuracy_by_bucket([], [])
