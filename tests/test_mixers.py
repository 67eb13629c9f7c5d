"""Tests for attnlib.mixers: one shell around four sequence mixers, and its training helpers."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from attnlib.data import TokenTask, associative_recall, modular_prefix_sum
from attnlib.mixers import (
    MIXERS,
    recall_sweep_results,
    SequenceModel,
    token_task_accuracy,
    token_task_loss,
    train_recall,
    train_token_task,
)

f64 = torch.float64
TOL = 1e-10


def close(a, b, tol=TOL):
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


SHELLS = [(m, "none") for m in MIXERS] + [("softmax", "sinusoidal"), ("softmax", "rope"), ("lstm", "sinusoidal")]


@pytest.mark.parametrize("mixer,positional", SHELLS, ids=lambda x: str(x))
def test_sequence_model_shapes_and_causality(mixer, positional):
    torch.manual_seed(0)
    model = SequenceModel(11, 8, mixer, num_layers=2, num_heads=2, num_outputs=5, positional=positional).double()
    tokens = torch.randint(11, (3, 10), generator=torch.Generator().manual_seed(0))
    logits = model(tokens)
    assert logits.shape == (3, 10, 5) and logits.dtype == f64
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 11  # change the future of position 5
    close(model(changed)[:, :6], logits[:, :6])
    assert (model(changed)[:, 6:] - logits[:, 6:]).abs().max() > 1e-6  # and the change is seen later


def test_sequence_model_without_token_shift_reads_only_its_token_at_position_0():
    torch.manual_seed(0)
    model = SequenceModel(7, 8, "mingru", token_shift=False).double()
    a = model(torch.tensor([[3, 1, 2]]))
    b = model(torch.tensor([[3, 5, 6]]))
    close(a[:, 0], b[:, 0])
    assert model.shift is None


def test_sequence_model_state_numbers():
    D, T = 16, 100
    counts = {m: SequenceModel(10, D, m, num_layers=2, num_heads=2).state_numbers(T) for m in MIXERS}
    assert counts == {"softmax": 2 * 2 * T * D, "linear": 2 * 2 * (8 * 8 + 8), "lstm": 2 * 2 * D, "mingru": 2 * D}
    softmax = SequenceModel(10, D, "softmax", num_heads=2, positional="rope")
    assert softmax.state_numbers(2 * T) == 2 * counts["softmax"]


def test_sequence_model_errors():
    with pytest.raises(ValueError, match=r"mixer must be one of \('softmax', 'linear', 'lstm', 'mingru'\) \(got 'gru'\)"):
        SequenceModel(10, 8, "gru")
    with pytest.raises(ValueError, match=r"positional must be one of \('none', 'sinusoidal', 'rope'\) \(got 'alibi'\)"):
        SequenceModel(10, 8, "softmax", positional="alibi")
    with pytest.raises(ValueError, match=r"positional='rope' .* needs mixer='softmax' \(got 'lstm'\)"):
        SequenceModel(10, 8, "lstm", positional="rope")
    with pytest.raises(ValueError, match=r"num_heads must divide embed_dim \(got embed_dim=8 and num_heads=3\)"):
        SequenceModel(10, 8, "linear", num_heads=3)
    model = SequenceModel(10, 8, "lstm")
    with pytest.raises(TypeError, match=r"tokens must be a torch.Tensor \(got list\)"):
        model([[1, 2]])
    with pytest.raises(ValueError, match=r"tokens must be integer ids of shape \(B, T\) with T >= 1 \(got \(4,\), torch.int64\)"):
        model(torch.arange(4))
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 10\) \(got 0..10\)"):
        model(torch.arange(11).view(1, 11))
    with pytest.raises(ValueError, match=r"length must be a positive int \(got 0\)"):
        model.state_numbers(0)


def test_token_task_loss_and_accuracy_read_only_the_masked_positions():
    torch.manual_seed(0)
    model = SequenceModel(128, 8, "linear")
    batch = associative_recall(4, 3)
    logits = model(batch.tokens)
    expected = F.cross_entropy(logits[:, 6:].reshape(-1, 128), batch.targets[:, 6:].reshape(-1))
    torch.testing.assert_close(token_task_loss(model, batch), expected)
    accuracy = token_task_accuracy(model, batch)
    assert float(accuracy) == float((logits[:, 6:].argmax(-1) == batch.targets[:, 6:]).double().mean())
    per_position = token_task_accuracy(model, batch, per_position=True)
    assert per_position.shape == (9,) and per_position[:6].isnan().all() and not per_position[6:].isnan().any()
    with pytest.raises(TypeError, match=r"batch must be a TokenTask \(tokens, targets, mask\) \(got Tensor\)"):
        token_task_loss(model, batch.tokens)
    with pytest.raises(ValueError, match=r"batch's tokens, targets and mask must share a shape"):
        token_task_accuracy(model, TokenTask(batch.tokens, batch.targets, batch.mask.long()))


def test_train_token_task_learns_parity_with_an_lstm():
    torch.manual_seed(0)
    model = SequenceModel(2, 16, "lstm", num_layers=1, num_outputs=2)
    losses = train_token_task(model, partial(modular_prefix_sum, 32, 8), 150, 1e-2, seed=0)
    assert len(losses) == 150 and sum(losses[-10:]) < 0.5 * sum(losses[:10])
    test = modular_prefix_sum(256, 8, generator=torch.Generator().manual_seed(1))
    assert float(token_task_accuracy(model, test)) > 0.9
    with pytest.raises(ValueError, match=r"lr must be a positive number \(got 0\)"):
        train_token_task(model, partial(modular_prefix_sum, 32, 8), 10, 0, seed=0)


def test_train_recall_is_reproducible_and_attention_beats_chance():
    a = train_recall("softmax", 16, 2, 1e-2, seed=0, steps=60, batch_size=16, num_keys=8, num_values=8, eval_size=64)
    b = train_recall("softmax", 16, 2, 1e-2, seed=0, steps=60, batch_size=16, num_keys=8, num_values=8, eval_size=64)
    assert a == b and a > 2 / 8  # chance is 1/8


def test_shipped_recall_sweep_is_complete():
    # That the shipped copy is byte for byte the committed results file is a test of the
    # repository (tests/test_scripts.py); this one also runs on the installed wheel.
    sweep = recall_sweep_results()
    cells = len(sweep["models"]) * len(sweep["widths"]) * len(sweep["pairs"])
    assert len(sweep["runs"]) == cells * len(sweep["lrs"]) * len(sweep["seeds"]) and len(sweep["best"]) == cells
    assert sweep["command"].startswith("python scripts/recall_sweep.py")
