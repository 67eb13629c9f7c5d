"""Tests for attnlib.pretrain_bert (python -m attnlib.pretrain_bert), the pretraining run behind chapter 11's checkpoint:
it runs for a few steps, writes a loadable safetensors file with its metadata, keeps the
classification task's test text out of the corpus, starts on short windows, and rejects
bad arguments."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_model

from attnlib.bert import IGNORE_INDEX, BertConfig, BertForMaskedLM

import attnlib.pretrain_bert


@pytest.fixture(scope="module")
def script():
    return attnlib.pretrain_bert


def test_the_shipped_checkpoint_is_the_pinned_one_with_this_tokenizer(script):
    path = script.checkpoint_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == "6ad0566a45d2f93c7ba041a9dad5f38c2c492abce86e062cdfadd8ffa359de04"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["chars"]) == script.tokenizer().chars
    assert json.loads(meta["topics"]) == list(script.TOPICS)


def test_tokenizer_puts_the_special_tokens_first(script):
    tok = script.tokenizer()
    assert [tok.char_to_id[c] for c in (script.PAD, script.MASK, script.CLS)] == [0, 1, 2]


def test_pretraining_text_leaves_out_every_test_part(script):
    text = script.pretraining_text()
    for name in script.TOPICS:
        train_part, test_part = script.split_topic(name)
        assert test_part not in text and test_part[:200] not in text
        assert train_part[:200] in text  # the train parts stay


def test_mlm_batches_mask_about_15_percent_and_keep_cls(script):
    tok = script.tokenizer()
    ids = tok.encode(script.pretraining_text()[:5000])
    inputs, labels = next(script.mlm_batches(ids, 64, 0, tok.vocab_size))
    assert inputs.shape == labels.shape == (64, script.WINDOW + 1)
    assert bool((inputs[:, 0] == 2).all()) and bool((labels[:, 0] == IGNORE_INDEX).all())
    share = (labels != IGNORE_INDEX).float().mean().item()
    assert 0.12 < share < 0.18


def test_mlm_batches_start_with_short_windows_of_the_same_size(script):
    tok = script.tokenizer()
    ids = tok.encode(script.pretraining_text()[:5000])
    stream = script.mlm_batches(ids, 8, 0, tok.vocab_size, prob=0.3, short_steps=2)
    shapes = [tuple(next(stream)[0].shape) for _ in range(3)]
    short = 8 * script.WINDOW // script.SHORT_WINDOW
    assert shapes == [(short, script.SHORT_WINDOW + 1)] * 2 + [(8, script.WINDOW + 1)]
    assert short * script.SHORT_WINDOW == 8 * script.WINDOW  # the same number of characters per batch


def test_script_runs_a_few_steps_and_writes_a_loadable_checkpoint(script, tmp_path, capsys):
    out = tmp_path / "ckpt" / "bert.safetensors"
    script.main(["--steps", "3", "--seed", "1", "--short-steps", "2", "--out", str(out)])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 3 and Path(report["out"]) == out and len(report["sha256"]) == 64
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    config = BertConfig(**json.loads(meta["config"]))
    assert config == script.model_config(script.tokenizer().vocab_size)
    assert json.loads(meta["topics"]) == list(script.TOPICS)
    summary = json.loads(meta["summary"])
    assert summary["steps"] == 3 and summary["short_steps"] == 2 and summary["mask_prob"] == 0.3
    assert 0.0 <= summary["val_masked_accuracy"] <= 1.0 and summary["accuracy_curve"][-1][0] == 3
    model = BertForMaskedLM(config)
    load_model(model, str(out))
    logits = model.eval()(torch.full((1, 5), 2))
    assert logits.shape == (1, 5, config.vocab_size) and bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be a positive int (got 0)"),
    (["--short-steps", "-1"], "--short-steps must be a non-negative int (got -1)"),
    (["--mask-prob", "1.5"], "--mask-prob must be in (0, 1) (got 1.5)"),
])
def test_script_rejects_bad_arguments(script, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit):
        script.main(args + ["--out", str(tmp_path / "x.safetensors")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
