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


# --- chapter 08: label smoothing and the warm-up schedule of Vaswani et al. ------------

from attnlib.train import inverse_sqrt_schedule  # noqa: E402


def test_label_smoothing_matches_its_definition_and_ignores_padding():
    torch.manual_seed(0)
    tgt_out = torch.tensor([[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]])
    batch = Seq2SeqBatch(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.bool), tgt_out, tgt_out)
    logits = torch.randn(2, 3, 9, dtype=torch.float64)
    eps = 0.1
    real = tgt_out != PAD_ID
    log_p = logits[real].log_softmax(-1)  # (N, V) at real positions only
    nll = -log_p.gather(1, tgt_out[real][:, None])[:, 0]
    uniform = -log_p.mean(-1)  # cross-entropy against the uniform distribution
    expected = ((1 - eps) * nll + eps * uniform).mean()
    torch.testing.assert_close(seq2seq_loss(Fixed(logits), batch, label_smoothing=eps), expected, rtol=0, atol=1e-12)
    # A perfect, confident model still pays for smoothing; without it the loss is ~0.
    perfect = torch.nn.functional.one_hot(tgt_out, 9).double() * 50.0
    assert float(seq2seq_loss(Fixed(perfect), batch).detach()) < 1e-12
    assert float(seq2seq_loss(Fixed(perfect), batch, label_smoothing=eps).detach()) > 1.0
    for bad in (-0.1, 1.0, "0.1", True):
        with pytest.raises(ValueError, match=rf"label_smoothing must be a number in \[0, 1\) \(got {bad!r}\)"):
            seq2seq_loss(Fixed(logits), batch, label_smoothing=bad)  # type: ignore[arg-type]


def test_inverse_sqrt_schedule():
    warmup = 100
    f = inverse_sqrt_schedule(warmup)
    values = [f(s) for s in range(1000)]
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == warmup - 1  # peak at step n = warmup
    assert values[0] == pytest.approx(1 / warmup)  # linear rise from 1/warmup
    assert values[49] == pytest.approx(0.5)
    assert values[4 * warmup - 1] == pytest.approx(0.5)  # then 1/sqrt: four times the steps, half the rate
    assert all(a < b for a, b in zip(values[:warmup - 1], values[1:warmup]))
    assert all(a > b > 0 for a, b in zip(values[warmup:-1], values[warmup + 1 :]))
    # The paper's absolute rate: d_model ** -0.5 * min(n ** -0.5, n * warmup ** -1.5).
    paper = inverse_sqrt_schedule(4000, d_model=512)
    for n in (1, 100, 4000, 10000):
        assert paper(n - 1) == pytest.approx(512**-0.5 * min(n**-0.5, n * 4000**-1.5))
    assert paper(3999) == pytest.approx(7.0e-4, rel=0.02)
    # It plugs into fit as lr_lambda.
    model = torch.nn.Linear(2, 1)
    history = fit(model, lambda m, b: m(b).pow(2).mean(), [torch.ones(4, 2)], steps=5, lr=0.1,
                  lr_lambda=inverse_sqrt_schedule(2), progress=False)
    assert history.lr == pytest.approx([0.1 * f for f in (2**-0.5 * 2**0.5 / 2, 1.0, 3**-0.5 * 2**0.5, 0.5 * 2**0.5, 5**-0.5 * 2**0.5)])
    with pytest.raises(ValueError, match=r"warmup must be a positive int \(got 0\)"):
        inverse_sqrt_schedule(0)
    with pytest.raises(ValueError, match=r"d_model must be None or a positive int \(got 0.5\)"):
        inverse_sqrt_schedule(10, d_model=0.5)  # type: ignore[arg-type]
