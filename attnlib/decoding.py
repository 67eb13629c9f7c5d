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

Greedy decoding (chapter 02) keeps one hypothesis; beam search (chapter 08) keeps
the ``k`` most likely prefixes at every step (Sutskever, Vinyals and Le, 2014;
Wu et al., 2016 for length normalisation) and takes the same arguments plus a beam
size. :func:`sequence_log_prob` scores any output under a model, so the two can be
compared by the quantity beam search maximises.

Chapter 02 (greedy decoding), used again in chapters 03 and 08 (beam search).
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Protocol, Sequence, Tuple, cast, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import is_number, positive_int
from .data import BOS_ID, EOS_ID, PAD_ID, Example
from .train import accuracy_by_bucket

__all__ = [
    "Seq2SeqModel",
    "IncrementalSeq2SeqModel",
    "greedy_decode",
    "BeamSearchOutput",
    "beam_search",
    "sequence_log_prob",
    "translate",
    "exact_match_by_count",
]


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
    _check_src(model, src, src_key_padding_mask, max_len)
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


class BeamSearchOutput(NamedTuple):
    """What :func:`beam_search` returns."""

    tokens: Tensor
    """The best hypothesis per example, ``(B, L)``, formatted like :func:`greedy_decode`'s
    output: no ``<bos>``, ``<eos>`` then padding."""
    log_probs: Tensor
    """Its log-probability under the model (the sum over its tokens, ``<eos>``
    included), ``(B,)``: what :func:`sequence_log_prob` gives for ``tokens``."""


def _map_tensors(value: Any, fn: Any, name: str) -> Any:
    """Apply ``fn`` to every tensor in a (nested) tuple, NamedTuple, list or dict."""
    if isinstance(value, Tensor):
        return fn(value)
    if value is None:
        return None
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_map_tensors(v, fn, name) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn, name) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn, name) for k, v in value.items()}
    raise TypeError(
        f"{name} must be a tensor or a (nested) tuple, list or dict of batch-first tensors "
        f"for beam search to copy it per beam (got {type(value).__name__})"
    )


def _check_src(model: object, src: object, src_key_padding_mask: object, max_len: object) -> None:
    """The argument checks that greedy decoding and beam search share."""
    if not isinstance(model, Seq2SeqModel):
        raise TypeError(f"model must follow the Seq2SeqModel protocol (encode, decode) (got {type(model).__name__})")
    if not isinstance(src, Tensor) or src.dim() != 2:
        got = tuple(src.shape) if isinstance(src, Tensor) else type(src).__name__
        raise ValueError(f"src must be a tensor of shape (B, S) (got {got})")
    if src_key_padding_mask is not None and (
        not isinstance(src_key_padding_mask, Tensor) or src_key_padding_mask.shape != src.shape
    ):
        got = tuple(src_key_padding_mask.shape) if isinstance(src_key_padding_mask, Tensor) else type(src_key_padding_mask).__name__
        raise ValueError(f"src_key_padding_mask must be None or have the shape of src {tuple(src.shape)} (got {got})")
    positive_int("max_len", max_len)


@torch.no_grad()
def beam_search(
    model: Seq2SeqModel,
    src: Tensor,
    src_key_padding_mask: Optional[Tensor] = None,
    beam_size: int = 4,
    max_len: int = 64,
    length_penalty: float = 0.0,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
    incremental: Optional[bool] = None,
) -> BeamSearchOutput:
    """Decode a batch with beam search: keep the ``beam_size`` best prefixes at each step.

    Every example has ``beam_size`` hypotheses, all run as one batch of
    ``B * beam_size`` rows. At each step every hypothesis is extended by every token,
    and the ``beam_size`` best of the ``beam_size * V`` candidates of each example are
    kept. A hypothesis that has emitted ``<eos>`` is finished: it keeps its score and
    stays in the beam (its only continuation is padding, at no cost), competing with
    the unfinished ones. The search stops when every hypothesis of every example has
    finished, or after ``max_len`` tokens; the best hypothesis of each example wins.

    Hypotheses are ranked by their log-probability divided by ``length ** length_penalty``
    (``length`` counts the generated tokens, ``<eos>`` included): ``0`` ranks by the
    plain log-probability, which favours short outputs; ``1`` by the mean per token.
    With ``beam_size=1`` this is :func:`greedy_decode`. Beam search finds outputs at
    least as likely as greedy decoding's in practice, but not always: the greedy path
    can drop out of a beam whose hypotheses all end badly.

    Args:
        model: a :class:`Seq2SeqModel` in evaluation mode. Its memory (the output of
            ``encode``) must be a batch-first tensor or a tuple, list or dict of them.
        src: source token ids.
        src_key_padding_mask: ``True`` at source padding.
        beam_size: hypotheses kept per example.
        max_len: the most tokens to generate per sequence (``<eos>`` included).
        length_penalty: the exponent ``alpha >= 0`` of the length normalisation.
        bos_id, eos_id, pad_id: the special token ids.
        incremental: carry the model's state step to step, as in :func:`greedy_decode`.

    Shapes:
        src, src_key_padding_mask: ``(B, S)``; returns tokens ``(B, L)`` with
        ``L <= max_len`` and log-probabilities ``(B,)``.

    Returns:
        A :class:`BeamSearchOutput`.

    Chapter 08.
    """
    _check_src(model, src, src_key_padding_mask, max_len)
    positive_int("beam_size", beam_size)
    if not is_number(length_penalty) or not length_penalty >= 0:
        raise ValueError(f"length_penalty must be a number >= 0 (got {length_penalty!r})")
    can_step = isinstance(model, IncrementalSeq2SeqModel)
    if incremental is None:
        incremental = can_step
    elif incremental and not can_step:
        raise ValueError(f"incremental=True needs a model with init_state and decode_step (got {type(model).__name__})")

    B, k, device = src.size(0), beam_size, src.device
    memory = model.encode(src, src_key_padding_mask)
    # Row b * k + j of every batch tensor is hypothesis j of example b.
    memory = _map_tensors(memory, lambda t: t.repeat_interleave(k, dim=0), "the model's memory")
    mask = None if src_key_padding_mask is None else src_key_padding_mask.repeat_interleave(k, dim=0)  # (B*k, S)
    stepper = cast(IncrementalSeq2SeqModel, model)
    state = stepper.init_state(memory) if incremental else None

    prefix = torch.full((B * k, 1), bos_id, dtype=torch.long, device=device)  # (B*k, 1)
    scores = torch.full((B, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis to start with, so the first step does not pick k copies
    finished = torch.zeros(B * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * k, device=device)  # generated tokens, <eos> included
    offsets = torch.arange(B, device=device)[:, None] * k  # (B, 1): first row of each example
    for _ in range(max_len):
        if incremental:
            logits, state = stepper.decode_step(prefix[:, -1], memory, mask, state)  # (B*k, V)
        else:
            logits = model.decode(prefix, memory, mask)[:, -1]  # (B*k, t, V) -> (B*k, V)
        log_p = F.log_softmax(logits.float(), dim=-1)  # (B*k, V)
        V = log_p.size(-1)
        after_end = torch.full_like(log_p[0], float("-inf"))
        after_end[pad_id] = 0.0  # a finished hypothesis continues with padding, for free
        log_p = torch.where(finished[:, None], after_end, log_p)
        candidates = scores.reshape(B * k, 1) + log_p  # (B*k, V)
        new_lengths = lengths + (~finished).float()  # (B*k,)
        rank = candidates / new_lengths[:, None] ** length_penalty if length_penalty else candidates
        best = rank.reshape(B, k * V).topk(k, dim=1).indices  # (B, k) over every (hypothesis, token)
        rows = (offsets + best // V).reshape(-1)  # (B*k,): the hypothesis each survivor extends
        tokens = (best % V).reshape(-1)  # (B*k,)
        scores = candidates.reshape(B, k * V).gather(1, best)  # (B, k)
        prefix = torch.cat([prefix[rows], tokens[:, None]], dim=1)  # (B*k, t + 1)
        finished = finished[rows] | (tokens == eos_id)
        lengths = new_lengths[rows]
        if incremental:
            state = _map_tensors(state, lambda t: t.index_select(0, rows), "the model's decoder state")
        if bool(finished.all()):
            break
    final = scores / lengths.reshape(B, k) ** length_penalty if length_penalty else scores
    winner = offsets[:, 0] + final.argmax(dim=1)  # (B,)
    width = int(lengths[winner].max())  # drop the columns only losing hypotheses reached
    return BeamSearchOutput(prefix[winner, 1 : width + 1], scores.reshape(-1)[winner])


@torch.no_grad()
def sequence_log_prob(
    model: Seq2SeqModel,
    src: Tensor,
    tokens: Tensor,
    src_key_padding_mask: Optional[Tensor] = None,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
) -> Tensor:
    """The log-probability the model gives to each output sequence (teacher forcing).

    ``tokens`` are formatted like :func:`greedy_decode`'s output: the sum runs over each
    row's tokens up to and including its first ``<eos>`` (over the whole row if it
    has none); what follows is ignored.

    Args:
        model: a :class:`Seq2SeqModel` in evaluation mode.
        src: source token ids.
        tokens: output ids without ``<bos>``.
        src_key_padding_mask: ``True`` at source padding.
        bos_id, eos_id, pad_id: the special token ids.

    Shapes:
        src: ``(B, S)``; tokens: ``(B, L)``; returns ``(B,)``.

    Returns:
        ``log p(tokens | src)`` per row.

    Chapter 08.
    """
    _check_src(model, src, src_key_padding_mask, 1)
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.size(0) != src.size(0):
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a tensor of shape (B, L) with B = {src.size(0)} (got {got})")
    bos = torch.full_like(tokens[:, :1], bos_id)
    tgt_in = torch.cat([bos, tokens[:, :-1]], dim=1)  # (B, L): the prefix each token is predicted from
    is_end = tokens == eos_id
    after_end = (is_end.long().cumsum(dim=1) - is_end.long()) > 0  # (B, L): strictly after the first <eos>
    tgt_in = tgt_in.masked_fill(after_end, pad_id)
    memory = model.encode(src, src_key_padding_mask)
    log_p = F.log_softmax(model.decode(tgt_in, memory, src_key_padding_mask).float(), dim=-1)  # (B, L, V)
    picked = log_p.gather(2, tokens[:, :, None])[:, :, 0]  # (B, L)
    return picked.masked_fill(after_end, 0.0).sum(dim=1)


def translate(
    model: Seq2SeqModel,
    task: Any,
    examples: Sequence[Example],
    batch_size: int = 500,
    max_len: Optional[int] = None,
    beam_size: int = 1,
    length_penalty: float = 0.0,
) -> List[List[str]]:
    """Decode examples of the task into target tokens, greedily or with a beam.

    Args:
        model: a trained :class:`Seq2SeqModel` (an ``nn.Module``), in evaluation mode.
        task: the task, for its vocabularies and batching: a
            :class:`~attnlib.data.NumberTranslation` or any task with ``collate`` and
            ``tgt_vocab`` (the multi-task data of chapter 08).
        examples: the examples to translate.
        batch_size: examples decoded at once.
        max_len: the most tokens per output (default: the task's longest target).
        beam_size: 1 for :func:`greedy_decode`, more for :func:`beam_search`.
        length_penalty: :func:`beam_search`'s length normalisation exponent.

    Returns:
        One list of target tokens per example (``<eos>`` and padding removed), to
        compare with ``example.tgt``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (got {type(model).__name__})")
    positive_int("batch_size", batch_size)
    positive_int("beam_size", beam_size)
    device = next(model.parameters()).device
    max_len = task.max_target_len if max_len is None else max_len
    outputs: List[List[str]] = []
    for start in range(0, len(examples), batch_size):
        batch = task.collate(examples[start : start + batch_size], device=device)
        if beam_size == 1:
            ids = greedy_decode(model, batch.src, batch.src_key_padding_mask, max_len=max_len)
        else:
            ids = beam_search(model, batch.src, batch.src_key_padding_mask, beam_size=beam_size, max_len=max_len,
                              length_penalty=length_penalty).tokens
        outputs += [task.tgt_vocab.decode(row) for row in ids.cpu()]
    return outputs


def exact_match_by_count(model: Seq2SeqModel, task: Any, examples: Sequence[Example], **decoding: Any) -> Dict[int, float]:
    """Exact match of decoded outputs, for each number count ``K`` of the examples.

    Args:
        model: a trained :class:`Seq2SeqModel`, in evaluation mode.
        task: the task of the examples (as for :func:`translate`).
        examples: examples with ``tgt`` and ``count`` (``Example`` or ``TaskExample``).
        **decoding: passed to :func:`translate` (``beam_size``, ``max_len``, ...).

    Returns:
        ``{K: share of the examples with that K whose output equals the target}``, in
        increasing ``K``. Chapters 08 to 08d read accuracy against length with it.
    """
    if not examples:
        raise ValueError("examples must not be empty")
    predictions = translate(model, task, examples, **decoding)
    correct = [p == e.tgt for p, e in zip(predictions, examples)]
    return accuracy_by_bucket(correct, [e.count for e in examples])
