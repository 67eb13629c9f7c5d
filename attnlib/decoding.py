"""Decoding: from a trained sequence-to-sequence model to output sequences.

Training reads the reference target (teacher forcing); at test time the model must
feed its own predictions back in, one token at a time. This module defines the model
protocol that every sequence-to-sequence model of the book follows (the GRU models
of chapters 02-03 and the transformer of chapter 08), and decodes for it.

The protocol, :class:`Seq2SeqModel`::

    logits = model(src, tgt_in, src_key_padding_mask)           # (B, T, V), training
    memory = model.encode(src, src_key_padding_mask)            # whatever the decoder needs
    logits = model.decode(tgt_in, memory, src_key_padding_mask) # (B, T, V)

``src`` is ``(B, S)`` token ids, ``src_key_padding_mask`` is ``(B, S)`` and ``True`` at
padding, ``tgt_in`` is ``(B, T)`` starting with ``<bos>``, and ``logits[:, i]`` scores
the token that follows ``tgt_in[:, :i + 1]``. A model may also follow
:class:`IncrementalSeq2SeqModel` (``init_state`` and ``decode_step``) to carry its
state from one step to the next, as a recurrent decoder does; decoding then costs one
step per token instead of re-reading the whole prefix each time. Both give the same
tokens (a test checks this).

Greedy decoding lives here; beam search (a later chapter) will sit beside
:func:`greedy_decode` with the same arguments plus a beam size.

Chapter 02 (greedy decoding), used again in chapters 03 and 08.
"""

from __future__ import annotations

from typing import Any, List, Optional, Protocol, Sequence, Tuple, cast, runtime_checkable

import torch
from torch import Tensor, nn

from .data import BOS_ID, EOS_ID, PAD_ID, Example, NumberTranslation

__all__ = ["Seq2SeqModel", "IncrementalSeq2SeqModel", "greedy_decode", "translate"]


@runtime_checkable
class Seq2SeqModel(Protocol):
    """What a sequence-to-sequence model provides (see the module docstring)."""

    def __call__(self, src: Tensor, tgt_in: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor: ...

    def encode(self, src: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Any: ...

    def decode(self, tgt_in: Tensor, memory: Any, src_key_padding_mask: Optional[Tensor] = None) -> Any: ...


@runtime_checkable
class IncrementalSeq2SeqModel(Seq2SeqModel, Protocol):
    """A :class:`Seq2SeqModel` that can also decode one token at a time from a state."""

    def init_state(self, memory: Any) -> Any: ...

    def decode_step(
        self, tokens: Tensor, memory: Any, src_key_padding_mask: Optional[Tensor], state: Any
    ) -> Tuple[Tensor, Any]: ...


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqModel,
    src: Tensor,
    src_key_padding_mask: Optional[Tensor] = None,
    max_len: int = 64,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
    incremental: Optional[bool] = None,
) -> Tensor:
    """Decode by always taking the most likely next token, for a whole batch at once.

    Each sequence stops at its own ``<eos>``: from then on it emits ``pad_id``. The
    loop ends when every sequence has finished or after ``max_len`` tokens.
    Put the model in evaluation mode first (``model.eval()``; ``fit`` does so).

    Args:
        model: a :class:`Seq2SeqModel`.
        src: source token ids.
        src_key_padding_mask: ``True`` at source padding.
        max_len: the most tokens to generate per sequence (``<eos>`` included).
        bos_id, eos_id, pad_id: the special token ids.
        incremental: carry the model's state step to step (``None``: whenever the
            model is an :class:`IncrementalSeq2SeqModel`); ``False`` re-reads the
            whole prefix at every step, which any model supports.

    Shapes:
        src, src_key_padding_mask: ``(B, S)``; returns ``(B, L)`` with ``L <= max_len``.

    Returns:
        The generated ids, without ``<bos>``, each row ending with ``<eos>`` (unless
        ``max_len`` cut it) followed by padding: comparable with a batch's ``tgt_out``.
    """
    if not isinstance(model, Seq2SeqModel):
        raise TypeError(f"model must follow the Seq2SeqModel protocol (encode, decode) (got {type(model).__name__})")
    if not isinstance(src, Tensor) or src.dim() != 2:
        got = tuple(src.shape) if isinstance(src, Tensor) else type(src).__name__
        raise ValueError(f"src must be a tensor of shape (B, S) (got {got})")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise ValueError(f"max_len must be a positive int (got {max_len!r})")
    can_step = isinstance(model, IncrementalSeq2SeqModel)
    if incremental is None:
        incremental = can_step
    elif incremental and not can_step:
        raise ValueError(f"incremental=True needs a model with init_state and decode_step (got {type(model).__name__})")

    B = src.size(0)
    memory = model.encode(src, src_key_padding_mask)
    prefix = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1): <bos>
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    stepper = cast(IncrementalSeq2SeqModel, model)
    state = stepper.init_state(memory) if incremental else None
    generated: List[Tensor] = []
    for _ in range(max_len):
        if incremental:
            logits, state = stepper.decode_step(prefix[:, -1], memory, src_key_padding_mask, state)  # (B, V)
        else:
            logits = model.decode(prefix, memory, src_key_padding_mask)[:, -1]  # (B, t, V) -> (B, V)
        next_token = logits.argmax(dim=-1)  # (B,)
        next_token = torch.where(finished, torch.full_like(next_token, pad_id), next_token)
        generated.append(next_token)
        prefix = torch.cat([prefix, next_token[:, None]], dim=1)  # (B, t + 1)
        finished |= next_token == eos_id
        if bool(finished.all()):
            break
    return torch.stack(generated, dim=1)  # (B, L)


def translate(
    model: Seq2SeqModel,
    task: NumberTranslation,
    examples: Sequence[Example],
    batch_size: int = 500,
    max_len: Optional[int] = None,
) -> List[List[str]]:
    """Greedy-decode examples of the task into target tokens.

    Args:
        model: a trained :class:`Seq2SeqModel` (an ``nn.Module``), in evaluation mode.
        task: the task, for its vocabularies and batching.
        examples: the examples to translate.
        batch_size: examples decoded at once.
        max_len: the most tokens per output (default: the task's longest target).

    Returns:
        One list of target tokens per example (``<eos>`` and padding removed), to
        compare with ``example.tgt``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (got {type(model).__name__})")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (got {batch_size!r})")
    device = next(model.parameters()).device
    max_len = task.max_target_len if max_len is None else max_len
    outputs: List[List[str]] = []
    for start in range(0, len(examples), batch_size):
        batch = task.collate(examples[start : start + batch_size], device=device)
        ids = greedy_decode(model, batch.src, batch.src_key_padding_mask, max_len=max_len)
        outputs += [task.tgt_vocab.decode(row) for row in ids.cpu()]
    return outputs
