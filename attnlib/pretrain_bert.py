"""Pretrain chapter 11's small character-level BERT with the masked-language-model objective.

The pretraining run does not fit a notebook's three-minute budget on two CPU cores, so
it runs here, once, and chapter 11 loads the checkpoint it writes (a ~0.5 MB
safetensors file shipped as attnlib's package data, whose sha256 attnlib and the chapter
check: :func:`checkpoint_path`). The shipped checkpoint is one run::

    OMP_NUM_THREADS=1 python -m attnlib.pretrain_bert --steps 3000 --seed 0 --out bert_char_pydoc.safetensors

It wrote ``attnlib/_resources/bert_char_pydoc.safetensors`` (sha256
``6ad0566a45d2f93c7ba041a9dad5f38c2c492abce86e062cdfadd8ffa359de04``) in 188 s of one
CPU core: 0.72 masked-character accuracy on validation text (15% masking), where
always guessing a space scores about 0.21.

Corpus: the English help text of Python's language topics, attnlib's snapshot of
CPython 3.11.7's ``pydoc_data.topics`` (:func:`attnlib.data.load_pydoc_topics`, training
split), minus every line that shares
text with the held-out last quarter of each of the four topics that chapter 11's
classification task tests on (topics overlap), so the encoder never reads a test
passage. Tokens are characters, plus three control
characters used as special tokens: ``\\x00`` padding, ``\\x01`` [MASK], ``\\x02`` [CLS].
Every example is [CLS] followed by a random window of characters; a share of the
characters (``--mask-prob``, 30% by default) is chosen and masked 80/10/10
(:func:`attnlib.bert.mask_tokens`).

Why the recipe differs from BERT's (15% masking, 128-token windows from the start):
with those, this 2-layer, width-64 encoder stalls. Its attention stays uniform over
the 129 positions, so it only learns to copy the visible character or guess from
the bag of characters in the window (~0.3 masked-character accuracy) and was still
there after 3,000 steps. Learning to look at the neighbours of a gap requires
attention that depends on relative position, and with learned positions the gradient
that starts it is diluted over all keys: a neighbour is 1 of 129 keys. So the first
``--short-steps`` steps use 32-character windows (four times as many per batch, the
same number of characters), where a neighbour is 1 of 33 keys, then the run goes on
with 128-character windows. Masking 30% instead of 15% doubles the predictions per
batch; dropout is off. Both changes mattered: after 1,000 steps this recipe reached
0.47, the same with ``--short-steps 0`` 0.32, and short windows with 15% masking,
dropout 0.1 and learning rate 5e-3 0.31.

Chapter 11; Devlin et al. (2019).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ._package_data import resource_path
from .bert import IGNORE_INDEX, BertConfig, BertForMaskedLM, mask_tokens
from .data import CharTokenizer, load_pydoc_topics, pydoc_topics
from .train import cosine_schedule, fit
from .utils import get_device, seed_everything

__all__ = ["checkpoint_path", "main", "pretrain", "save"]

PAD, MASK, CLS = "\x00", "\x01", "\x02"
SPECIALS = PAD + MASK + CLS
TOPICS: Tuple[str, ...] = ("formatstrings", "specialnames", "string-methods", "types")
HELD_OUT = 0.25  # the last quarter of each topic's text is chapter 11's test text
WINDOW = 128
SHORT_WINDOW = 32  # windows of the first --short-steps steps


def checkpoint_path() -> Path:
    """The path of chapter 11's pretrained checkpoint, shipped with attnlib, its sha256 checked.

    Returns:
        The path of ``bert_char_pydoc.safetensors`` in attnlib's package data: the run
        described at the top of this module.

    Chapter 11.
    """
    return resource_path("bert_char_pydoc.safetensors")


def topic_text(name: str) -> str:
    """The help text of one topic of :func:`attnlib.data.pydoc_topics`, as :func:`load_pydoc_topics` joins it."""
    return pydoc_topics()[name].strip()


def split_topic(name: str) -> Tuple[str, str]:
    """``(train_part, test_part)`` of a topic: the test part is its last ``HELD_OUT``."""
    text = topic_text(name)
    cut = int(len(text) * (1 - HELD_OUT))
    return text[:cut], text[cut:]


def tokenizer() -> CharTokenizer:
    """Every character of :func:`attnlib.data.pydoc_topics` plus the three special tokens (ids 0, 1, 2)."""
    return CharTokenizer("".join(pydoc_topics().values()) + SPECIALS)


def pretraining_text(shingle: int = 32) -> str:
    """The training split of the corpus without any line that shares text with a test part.

    Topics overlap (``specialnames`` contains ``numeric-types``, ``with`` and others), so
    cutting out the test parts themselves is not enough: every line that shares a
    ``shingle``-character substring with a test part is dropped.
    """
    text, _ = load_pydoc_topics()
    held = [split_topic(name)[1] for name in TOPICS]
    seen = {part[i:i + shingle] for part in held for i in range(len(part) - shingle + 1)}
    kept = [line for line in text.split("\n")
            if not any(line[i:i + shingle] in seen for i in range(len(line) - shingle + 1))]
    return "\n".join(kept)


def model_config(vocab_size: int, dropout: float = 0.0) -> BertConfig:
    """The small encoder of chapter 11: 2 layers of width 64 (about 120k parameters)."""
    return BertConfig(vocab_size=vocab_size, d_model=64, num_heads=4, num_layers=2, dim_feedforward=256,
                      max_len=WINDOW + 1, dropout=dropout)


def windows(ids: Tensor, batch_size: int, generator: torch.Generator, window: int = WINDOW) -> Tensor:
    """``batch_size`` random windows of ``window`` tokens, each preceded by [CLS]: ``(B, 1 + window)``."""
    starts = torch.randint(ids.numel() - window, (batch_size, 1), generator=generator)
    body = ids[starts + torch.arange(window)]  # (B, window)
    return F.pad(body, (1, 0), value=2)  # (B, 1 + window), [CLS] = 2


def mlm_batches(ids: Tensor, batch_size: int, seed: int, vocab_size: int, prob: float = 0.15,
                short_steps: int = 0, short_window: int = SHORT_WINDOW) -> Iterator[Tuple[Tensor, Tensor]]:
    """Endless ``(inputs, labels)`` batches for masked-language-model training.

    The first ``short_steps`` batches hold ``batch_size * WINDOW // short_window``
    windows of ``short_window`` characters (the same number of characters), the rest
    ``batch_size`` windows of ``WINDOW``.
    """
    gen = torch.Generator().manual_seed(seed)
    step = 0
    while True:
        if step < short_steps:
            clean = windows(ids, batch_size * WINDOW // short_window, gen, short_window)
        else:
            clean = windows(ids, batch_size, gen)
        step += 1
        yield mask_tokens(clean, mask_id=1, vocab_size=vocab_size, prob=prob, special_ids=(0, 2), generator=gen)


def mlm_loss(model: torch.nn.Module, batch: Tuple[Tensor, Tensor]) -> Tensor:
    """Cross-entropy on the chosen positions only."""
    inputs, labels = batch
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def masked_accuracy(model: torch.nn.Module, batches: Sequence[Tuple[Tensor, Tensor]]) -> float:
    """Share of chosen positions whose original character the model ranks first."""
    right = total = 0
    for inputs, labels in batches:
        logits = model(inputs.to(next(model.parameters()).device))
        chosen = labels != IGNORE_INDEX
        right += int((logits.argmax(-1).cpu()[chosen] == labels[chosen]).sum())
        total += int(chosen.sum())
    return right / max(total, 1)


def pretrain(steps: int, seed: int, batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.01,
             mask_prob: float = 0.3, short_steps: int = 400, dropout: float = 0.0,
             device: Optional[torch.device] = None, progress: bool = True) -> Tuple[BertForMaskedLM, Dict[str, object]]:
    """Train a fresh :class:`~attnlib.bert.BertForMaskedLM` for ``steps`` steps; return it and a summary.

    The accuracy curve is measured on validation text (never trained on) with BERT's
    standard 15% masking and 128-character windows, whatever ``mask_prob`` is.
    """
    device = device or get_device()
    tok = tokenizer()
    ids = tok.encode(pretraining_text())
    val_ids = tok.encode(load_pydoc_topics()[1])
    seed_everything(seed)
    model = BertForMaskedLM(model_config(tok.vocab_size, dropout)).to(device)
    val_stream = mlm_batches(val_ids, 64, 10_000 + seed, tok.vocab_size)
    val = [next(val_stream) for _ in range(4)]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embeddings" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embeddings" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr)
    batches = mlm_batches(ids, batch_size, seed, tok.vocab_size, mask_prob, min(short_steps, steps))
    history = fit(model, mlm_loss, batches, steps, optimizer=optimizer,
                  lr_lambda=cosine_schedule(steps, warmup=max(1, min(100, steps // 20))), device=device,
                  eval_fn=lambda m: {"masked_accuracy": masked_accuracy(m, val)},
                  eval_every=max(1, steps // 12), progress=progress, desc="MLM pretraining")
    steps_done, accs = history.metric("masked_accuracy")
    summary: Dict[str, object] = {
        "steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "mask_prob": mask_prob, "short_steps": short_steps, "short_window": SHORT_WINDOW, "dropout": dropout,
        "final_train_loss": sum(history.loss[-20:]) / len(history.loss[-20:]),
        "val_masked_accuracy": accs[-1], "accuracy_curve": [[s, a] for s, a in zip(steps_done, accs)],
        "seconds": history.seconds,
    }
    return model.cpu().eval(), summary


def save(model: BertForMaskedLM, summary: Dict[str, object], path: Path) -> None:
    """Write the weights and, as safetensors metadata, the config, vocabulary and summary."""
    from dataclasses import asdict

    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"config": json.dumps(asdict(model.config)), "chars": json.dumps(tokenizer().chars),
                "topics": json.dumps(list(TOPICS)), "held_out": str(HELD_OUT), "summary": json.dumps(summary)}
    save_model(model, str(path), metadata=metadata)


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m attnlib.pretrain_bert``: pretrain, save the checkpoint, print a JSON summary line."""
    parser = argparse.ArgumentParser(prog="python -m attnlib.pretrain_bert",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mask-prob", type=float, default=0.3, help="share of characters to predict")
    parser.add_argument("--short-steps", type=int, default=400, help=f"steps on {SHORT_WINDOW}-character windows first")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("bert_char_pydoc.safetensors"),
                        help="where to write the checkpoint (default: the current folder)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive int (got {args.steps})")
    if args.short_steps < 0:
        parser.error(f"--short-steps must be a non-negative int (got {args.short_steps})")
    if not 0.0 < args.mask_prob < 1.0:
        parser.error(f"--mask-prob must be in (0, 1) (got {args.mask_prob})")
    model, summary = pretrain(args.steps, args.seed, args.batch_size, args.lr, mask_prob=args.mask_prob,
                              short_steps=args.short_steps, dropout=args.dropout)
    save(model, summary, args.out)
    import hashlib

    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps({"out": str(args.out), "sha256": digest, "val_masked_accuracy": summary["val_masked_accuracy"],
                      "steps": args.steps, "seconds": round(cast(float, summary["seconds"]), 1)}))  # noqa: T201


if __name__ == "__main__":
    main()
