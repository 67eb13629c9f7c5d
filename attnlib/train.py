"""A small, readable training loop: no framework beyond PyTorch.

Every chapter that trains a model calls :func:`fit`. Training is sized by a number of
optimiser **steps**, not by wall-clock time, so a run gives the same result on a slow
or a fast machine.

::

    history = fit(model, loss_fn, batches, steps=500, lr=3e-3,
                  lr_lambda=cosine_schedule(500, warmup=50))

``loss_fn(model, batch)`` returns the scalar loss of one batch; ``batches`` is any
iterable of batches (it is restarted when exhausted, so a finite data loader gives
epochs and an endless generator gives fresh samples).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import fraction, optional_positive_int, positive_int

__all__ = [
    "History",
    "fit",
    "cosine_schedule",
    "inverse_sqrt_schedule",
    "move_to",
    "seq2seq_loss",
    "token_accuracy",
    "exact_match",
    "accuracy_by_bucket",
]

K_ = TypeVar("K_", bound=Hashable)


@dataclass
class History:
    """What happened during :func:`fit`, for plotting.

    Attributes:
        step: the step number of each recorded training loss (1-based).
        loss: the training loss at that step.
        lr: the learning rate used at that step.
        grad_norm: the gradient norm before clipping at that step.
        evals: ``(step, metrics)`` pairs from ``eval_fn``.
        seconds: wall-clock time of the whole run.
    """

    step: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    lr: List[float] = field(default_factory=list)
    grad_norm: List[float] = field(default_factory=list)
    evals: List[Tuple[int, Dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0

    def metric(self, name: str) -> Tuple[List[int], List[float]]:
        """The steps and values of one evaluation metric, ready for ``plt.plot``."""
        pairs = [(s, m[name]) for s, m in self.evals if name in m]
        if not pairs:
            known = sorted({k for _, m in self.evals for k in m})
            raise KeyError(f"no metric named {name!r} was recorded (known: {known})")
        steps, values = zip(*pairs)
        return list(steps), list(values)

    def smoothed_loss(self, window: int = 20) -> List[float]:
        """Running mean of the training loss over ``window`` steps."""
        if window < 1:
            raise ValueError(f"window must be at least 1 (got {window})")
        out, total = [], 0.0
        for i, value in enumerate(self.loss):
            total += value
            if i >= window:
                total -= self.loss[i - window]
            out.append(total / min(i + 1, window))
        return out


def move_to(batch: Any, device: Optional[torch.device]) -> Any:
    """Move every tensor in a (nested) tuple, list or dict to ``device``."""
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def cosine_schedule(steps: int, warmup: int = 0, final: float = 0.1) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``final``.

    Args:
        steps: total number of steps.
        warmup: steps of linear warm-up from ``1/warmup`` to 1.
        final: the multiplier reached at the last step.

    Returns:
        A function ``step -> multiplier`` (step counted from 0), for :func:`fit`'s
        ``lr_lambda``.
    """
    if steps < 1 or warmup < 0 or warmup >= steps:
        raise ValueError(f"need steps >= 1 and 0 <= warmup < steps (got steps={steps}, warmup={warmup})")
    if not 0.0 <= final <= 1.0:
        raise ValueError(f"final must be in [0, 1] (got {final})")

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup - 1)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return multiplier


def inverse_sqrt_schedule(warmup: int, d_model: Optional[int] = None) -> Callable[[int], float]:
    """Learning-rate multiplier of Vaswani et al. (2017, section 5.3): linear warm-up, then ``1/sqrt(step)``.

    The paper sets ``lr = d_model ** -0.5 * min(n ** -0.5, n * warmup ** -1.5)`` at
    step ``n`` (counted from 1): it rises linearly for ``warmup`` steps and then decays
    with the inverse square root of the step number, never reaching zero.

    * ``d_model=None``: the multiplier is scaled to peak at exactly 1 at step
      ``warmup``, so :func:`fit`'s ``lr`` is the peak learning rate.
    * ``d_model`` given: the multiplier *is* the paper's learning rate; pass
      ``lr=1.0`` to :func:`fit` (the paper's base model, ``d_model=512`` and
      ``warmup=4000``, peaks at about 7e-4).

    Args:
        warmup: steps of linear warm-up (4000 in the paper).
        d_model: the model width, for the paper's absolute scale.

    Returns:
        A function ``step -> multiplier`` (step counted from 0), for :func:`fit`'s
        ``lr_lambda``.

    Chapter 08.
    """
    positive_int("warmup", warmup)
    optional_positive_int("d_model", d_model)
    scale = d_model ** -0.5 if d_model is not None else warmup**0.5  # the latter makes the peak 1

    def multiplier(step: int) -> float:
        n = step + 1
        return scale * min(n**-0.5, n * warmup**-1.5)

    return multiplier


def _endless(batches: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("batches yielded nothing")


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    batches: Iterable[Any],
    steps: int,
    *,
    lr: float = 1e-3,
    optimizer: Optional[torch.optim.Optimizer] = None,
    lr_lambda: Optional[Callable[[int], float]] = None,
    clip_norm: Optional[float] = 1.0,
    eval_fn: Optional[Callable[[nn.Module], Dict[str, float]]] = None,
    eval_every: int = 0,
    device: Optional[torch.device] = None,
    progress: bool = True,
    desc: str = "training",
) -> History:
    """Train ``model`` for ``steps`` optimiser steps and return its :class:`History`.

    Each step: take a batch, compute ``loss_fn(model, batch)``, back-propagate, clip
    the gradient norm to ``clip_norm``, step the optimiser and the schedule.

    Args:
        model: the model; put in training mode here, evaluation mode for ``eval_fn``.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``.
        batches: an iterable of batches, restarted when exhausted.
        steps: number of optimiser steps.
        lr: learning rate of the default optimiser (AdamW, no weight decay).
        optimizer: use this optimiser instead of the default.
        lr_lambda: multiplier of the learning rate per step (e.g. :func:`cosine_schedule`).
        clip_norm: clip the global gradient norm to this (``None``: no clipping).
        eval_fn: ``eval_fn(model) -> {name: value}``, run without gradients every
            ``eval_every`` steps (if positive) and after the last step.
        eval_every: evaluation period in steps (0: only at the end).
        device: move each batch's tensors here (the model must already be there).
        progress: show progress: a ``tqdm`` bar, or, when bars are hidden (the
            environment variable ``TQDM_DISABLE=1``, as in the book build and the
            tests), plain lines on standard output with the step, the running loss
            and the elapsed time: one at each tenth of the steps that comes at
            least 10 s after the previous line, and one at the end. ``False``:
            nothing.
        desc: the label of the bar or of each line.

    Returns:
        The :class:`History` of the run.
    """
    from tqdm.auto import tqdm

    from .utils import bars_hidden

    positive_int("steps", steps)
    if eval_every < 0:
        raise ValueError(f"eval_every must be non-negative (got {eval_every})")
    if clip_norm is not None and clip_norm <= 0:
        raise ValueError(f"clip_norm must be positive or None (got {clip_norm})")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None:
        if not params:
            raise ValueError("model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda) if lr_lambda is not None else None

    def evaluate(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.evals.append((step, metrics))

    history = History()
    start = time.perf_counter()
    model.train()
    stream = _endless(batches)
    # tqdm.notebook ignores TQDM_DISABLE (it passes disable=False itself), so the switch
    # is made here. A hidden bar must send nothing: a widget bar in a kernel whose
    # messages nobody reads (nbval waits for the cell's reply first) floods the
    # kernel's output channel until messages, the cell's final one too, are dropped.
    show_bar = progress and not bars_hidden()
    line_every = max(1, math.ceil(steps / 10)) if progress and not show_bar else 0
    last_line = start
    bar = tqdm(range(1, steps + 1), desc=desc, leave=True, disable=not show_bar)
    for step in bar:
        batch = move_to(next(stream), device)
        loss = loss_fn(model, batch)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar tensor (got shape {tuple(loss.shape)})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        if clip_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0
        history.lr.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.step.append(step)
        history.loss.append(float(loss.detach()))
        history.grad_norm.append(grad_norm)
        if show_bar and (step % 10 == 0 or step == steps):
            recent = history.loss[-10:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        if line_every and (step == steps or (step % line_every == 0 and time.perf_counter() - last_line >= 10.0)):
            last_line = time.perf_counter()
            recent = history.loss[-line_every:]
            print(f"{desc}: step {step}/{steps}, loss {sum(recent) / len(recent):.4f}, "
                  f"{last_line - start:.0f} s", flush=True)
        if eval_every and step % eval_every == 0 and step != steps:
            evaluate(step)
    evaluate(steps)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


# --- Sequence-to-sequence training and evaluation (chapters 02, 03 and 08) -----------


def seq2seq_loss(model: nn.Module, batch: Any, pad_id: int = 0, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of the next target token over the real (non-padding) positions.

    The ``loss_fn`` of :func:`fit` for any model of the sequence-to-sequence protocol
    (``attnlib.decoding.Seq2SeqModel``): teacher forcing, the decoder reads ``tgt_in``
    and is scored on ``tgt_out``.

    Args:
        model: ``model(src, tgt_in, src_key_padding_mask) -> logits``.
        batch: an ``attnlib.data.Seq2SeqBatch`` (fields ``src``,
            ``src_key_padding_mask``, ``tgt_in``, ``tgt_out``).
        pad_id: the padding id, ignored in the mean (``attnlib.data.PAD_ID`` is 0).
        label_smoothing: ``epsilon`` in ``[0, 1)``: the target distribution puts
            ``1 - epsilon`` on the right token and spreads ``epsilon`` evenly over all
            ``V`` tokens (Szegedy et al., 2016; Vaswani et al., 2017 use 0.1), as in
            ``torch.nn.functional.cross_entropy``. The loss then stays above zero
            even for a perfect model.

    Shapes:
        logits ``(B, T, V)`` against ``tgt_out`` ``(B, T)``; returns a scalar.

    Returns:
        The loss, a scalar tensor.
    """
    fraction("label_smoothing", label_smoothing)
    for name in ("src", "src_key_padding_mask", "tgt_in", "tgt_out"):
        if not hasattr(batch, name):
            raise TypeError(f"batch must have the fields of a Seq2SeqBatch (missing {name!r} in {type(batch).__name__})")
    logits = model(batch.src, batch.tgt_in, batch.src_key_padding_mask)  # (B, T, V)
    if logits.shape[:2] != batch.tgt_out.shape:
        raise ValueError(
            f"model output must have shape (B, T, V) with (B, T) = {tuple(batch.tgt_out.shape)} "
            f"(got {tuple(logits.shape)})"
        )
    V = logits.size(-1)
    return F.cross_entropy(
        logits.reshape(-1, V), batch.tgt_out.reshape(-1), ignore_index=pad_id, label_smoothing=label_smoothing
    )  # (B, T, V) -> (B*T, V)


def token_accuracy(logits: Tensor, targets: Tensor, pad_id: int = 0) -> float:
    """Fraction of real target positions where the top-scoring token is right.

    Measured with teacher forcing (each position sees the true prefix), so it is
    kinder than :func:`exact_match` of decoded sequences.

    Shapes:
        logits: ``(B, T, V)``; targets: ``(B, T)``.

    Returns:
        A float in ``[0, 1]``.
    """
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits must have shape (B, T, V) and targets (B, T) (got {tuple(logits.shape)} and {tuple(targets.shape)})"
        )
    real = targets != pad_id
    if not bool(real.any()):
        raise ValueError("targets has no position other than padding")
    return float((logits.argmax(-1) == targets)[real].float().mean())


def exact_match(predictions: Tensor, targets: Tensor, pad_id: int = 0) -> Tensor:
    """Whether each predicted sequence equals its target exactly (padding aside).

    Args:
        predictions: decoded ids, e.g. from ``attnlib.decoding.greedy_decode``
            (``<eos>`` then padding).
        targets: reference ids, e.g. a batch's ``tgt_out``.
        pad_id: the padding id; the shorter tensor is padded with it.

    Shapes:
        predictions: ``(B, L)``; targets: ``(B, T)``; returns ``(B,)``.

    Returns:
        A boolean tensor.
    """
    if predictions.dim() != 2 or targets.dim() != 2 or predictions.size(0) != targets.size(0):
        raise ValueError(
            "predictions and targets must be (B, L) and (B, T) with the same B "
            f"(got {tuple(predictions.shape)} and {tuple(targets.shape)})"
        )
    width = max(predictions.size(1), targets.size(1))
    p = F.pad(predictions, (0, width - predictions.size(1)), value=pad_id)  # (B, width)
    t = F.pad(targets, (0, width - targets.size(1)), value=pad_id)  # (B, width)
    return (p == t).all(dim=1)


def accuracy_by_bucket(correct: Sequence[bool], buckets: Sequence[K_]) -> Dict[K_, float]:
    """Mean of ``correct`` within each bucket (e.g. the number count ``K``), buckets sorted.

    ``accuracy_by_bucket([p == e.tgt for p, e in zip(preds, test)], [e.count for e in test])``
    gives exact match by input length: the curve of chapters 02, 03 and 08.

    Args:
        correct: one boolean (or 0/1) per example.
        buckets: one bucket key per example.

    Returns:
        ``{bucket: accuracy}``.
    """
    if len(correct) != len(buckets):
        raise ValueError(f"correct and buckets must have the same length (got {len(correct)} and {len(buckets)})")
    if not len(correct):
        raise ValueError("correct must not be empty")
    totals: Dict[K_, List[float]] = {}
    for ok, key in zip(correct, buckets):
        totals.setdefault(key, []).append(float(ok))
    return {k: sum(totals[k]) / len(totals[k]) for k in sorted(totals)}  # type: ignore[type-var]
