"""What attention learns: head maps, induction scores, head ablation and attribution.

Chapter 17, "Induction heads", finds the two-head circuit of Elhage et al. (2021, "A
mathematical framework for transformer circuits") and Olsson et al. (2022, "In-context
learning and induction heads"): a *previous-token head* copies each token's
predecessor into the residual stream; a later *induction head* then attends, from the
current token, to the position just after that token's earlier occurrence, and copies
what came next. On a sequence whose second half repeats the first, both show as
stripes in the maps. The chapter then asks whether attention weights explain a
prediction (Jain and Wallace, 2019; Wiegreffe and Pinter, 2019) by ranking tokens with
attention, rollout, gradient x input and leave-one-out, and comparing the ranks.

The module reads top to bottom: recording every head's map, repeated random tokens
and the scores, ablating heads, attributions and rank correlation.

How the maps are recorded: attention weights exist only inside the call that
computes them, and the fused path never builds them. :func:`record_attention`
therefore wraps, for the duration of a ``with`` block, the ``attend`` method of each
:class:`~attnlib.attention.MultiHeadAttention` *instance* (an attribute on the
instance shadows the class's method; :mod:`attnlib.attention` is not changed). The
wrapper asks for per-head weights (the readable path), keeps a copy, and hands the
caller exactly what it asked for. It wraps ``attend`` rather than ``forward``
because every path goes through it: ``forward`` calls it, and so does
:class:`attnlib.llama.LlamaBlock`, which bypasses ``forward`` (and its hooks) to
rotate queries and keys. The instances are restored when the block ends, also when
it raises. Head ablation needs no wrapper: a forward pre-hook on ``out_proj`` sees the
concatenated head outputs and can overwrite one head's slice.

A "layer" here is the index of a ``MultiHeadAttention`` in ``model.modules()`` order
(:func:`attention_modules`): for GPT and Llama models, the block index.

Shape legend: ``L`` attention modules, ``B`` batch, ``H`` heads, ``T`` query length,
``S`` key length, ``Dh`` head width, ``V`` vocabulary, ``n`` the repeat period.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._checks import boolean, fraction, int_in_range, is_int, positive_int
from .attention import MultiHeadAttention

__all__ = [
    "attention_modules",
    "RecordedAttention",
    "record_attention",
    "collect_attention",
    "repeated_random_tokens",
    "random_repeats",
    "previous_token_score",
    "prefix_matching_score",
    "duplicate_token_score",
    "ablate_heads",
    "head_means",
    "gradient_x_input",
    "leave_one_out",
    "spearman",
    "attention_rollout",
]

Model = Union[nn.Module, Sequence[MultiHeadAttention]]


def attention_modules(model: Model) -> List[Tuple[str, MultiHeadAttention]]:
    """Every attnlib attention module of ``model``, with its qualified name, in module order.

    Args:
        model: a module (searched by type, ``model.modules()`` order), or a sequence of
            :class:`~attnlib.attention.MultiHeadAttention` (named ``"0"``, ``"1"``, ...).

    Returns:
        ``[(name, module), ...]``; position ``l`` in this list is layer ``l`` for
        :func:`ablate_heads` and :func:`head_means` and row ``l`` of :func:`collect_attention`.

    Chapter 17.
    """
    if isinstance(model, nn.Module):
        found = [(name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    elif isinstance(model, (list, tuple)) and all(isinstance(m, MultiHeadAttention) for m in model):
        found = [(str(i), m) for i, m in enumerate(model)]
    else:
        raise TypeError(f"model must be an nn.Module or a sequence of MultiHeadAttention (got {type(model).__name__})")
    if not found:
        raise ValueError(f"model must contain an attnlib MultiHeadAttention (got a {type(model).__name__} without one)")
    return found


# --- recording every head's map --------------------------------------------------------


def _bind_attend(module: MultiHeadAttention, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """One ``attend`` call's arguments by name, defaults filled in."""
    bound = inspect.signature(type(module).attend).bind(module, *args, **kwargs)
    bound.apply_defaults()
    call = dict(bound.arguments)
    del call["self"]
    return call


def _as_asked(out: Tensor, weights: Tensor, need_weights: bool, average: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """What ``attend`` would have returned to a caller who asked for ``need_weights`` and ``average``."""
    if not need_weights:
        return out, None
    return out, weights.mean(dim=1) if average else weights  # (B, T, S) or (B, H, T, S)


@contextmanager
def _wrapped_attend(
    modules: Sequence[MultiHeadAttention], wrap: Callable[[MultiHeadAttention, Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Replace each instance's ``attend`` by ``wrap(module, original)``; restore on exit."""
    saved: List[Tuple[MultiHeadAttention, Optional[Any]]] = []
    try:
        for m in modules:
            wrapper = wrap(m, m.attend)  # m.attend: the class's method, or an outer wrapper (nested use)
            saved.append((m, m.__dict__.get("attend")))  # None unless already wrapped
            m.__dict__["attend"] = wrapper
        yield
    finally:
        for m, previous in reversed(saved):
            if previous is None:
                del m.__dict__["attend"]
            else:
                m.__dict__["attend"] = previous


@dataclass
class RecordedAttention:
    """The per-head attention maps recorded by :func:`record_attention`.

    Attributes:
        names: the attention modules' qualified names, in module order (layer order).
        maps: for each name, one ``(B, H, T, S)`` tensor per call, in call order
            (empty for a module that did not run, or that computes attention without
            ``attend``, like :class:`attnlib.positional.RotarySelfAttention`).
    """

    names: List[str]
    maps: Dict[str, List[Tensor]] = field(default_factory=dict)

    def stack(self) -> Tensor:
        """Every module's single map, stacked: ``(L, B, H, T, S)``.

        Raises:
            ValueError: a module ran other than once, or the maps differ in shape
                (an encoder-decoder's cross-attention; read :attr:`maps` instead).
        """
        calls = {name: len(self.maps[name]) for name in self.names}
        if any(c != 1 for c in calls.values()):
            raise ValueError(f"stack needs exactly one call per attention module (got calls {calls}); read .maps")
        shapes = {tuple(self.maps[name][0].shape) for name in self.names}
        if len(shapes) != 1:
            raise ValueError(f"stack needs maps of one shape (got shapes {sorted(shapes)}); read .maps")
        return torch.stack([self.maps[name][0] for name in self.names])  # (L, B, H, T, S)


@contextmanager
def record_attention(model: Model, detach: bool = True) -> Iterator[RecordedAttention]:
    """Record every head's attention map while the ``with`` block runs ``model``.

    ``with record_attention(gpt) as rec: gpt(tokens)``, then ``rec.stack()`` is
    ``(L, B, H, T, T)``. Each attention takes the readable path (weights are built),
    whatever its caller asked; the outputs equal the fused path's to rounding. The
    wrapping of ``attend`` is explained at the top of this module. Run the model in
    ``eval()`` mode: in training the recorded weights are after dropout.

    Args:
        model: as in :func:`attention_modules`.
        detach: store the maps detached from the graph (``False`` keeps them
            differentiable).

    Returns:
        A :class:`RecordedAttention` that fills as the block runs.

    Chapter 17.
    """
    boolean("detach", detach)
    found = attention_modules(model)
    record = RecordedAttention([name for name, _ in found], {name: [] for name, _ in found})
    names = {id(m): name for name, m in found}

    def wrap(module: MultiHeadAttention, original: Callable[..., Any]) -> Callable[..., Any]:
        def attend(*args: Any, **kwargs: Any) -> Tuple[Tensor, Optional[Tensor]]:
            call = _bind_attend(module, args, kwargs)
            asked, average = call["need_weights"], call["average_attn_weights"]
            out, weights = original(**{**call, "need_weights": True, "average_attn_weights": False})
            record.maps[names[id(module)]].append(weights.detach() if detach else weights)  # (B, H, T, S)
            return _as_asked(out, weights, asked, average)

        return attend

    with _wrapped_attend([m for _, m in found], wrap):
        yield record


def collect_attention(model: nn.Module, *args: Any, **kwargs: Any) -> Tensor:
    """Run ``model(*args, **kwargs)`` once, without gradients, and return every head's map.

    Args:
        model: a model whose attention modules each run once (GPT, an attention-only
            stack of :class:`~attnlib.transformer.EncoderLayer`, a Llama model).
        *args: the model's positional inputs.
        **kwargs: the model's keyword inputs.

    Shapes:
        returns ``(L, B, H, T, S)``.

    Returns:
        The maps, first attention module first; row ``i`` of a map is query ``i``'s
        weights over the keys.

    Chapter 17.
    """
    with torch.no_grad(), record_attention(model) as record:
        model(*args, **kwargs)
    return record.stack()


# --- repeated random tokens and the scores -----------------------------------------------


def repeated_random_tokens(
    batch_size: int,
    period: int,
    vocab_size: int,
    generator: Optional[torch.Generator] = None,
    low: int = 0,
    bos_id: Optional[int] = None,
    distinct: bool = False,
) -> Tensor:
    """Random tokens repeated once: ``[bos] x_1 .. x_n x_1 .. x_n``.

    In the second copy a model can predict every token by induction (find the earlier
    occurrence of the current token, copy what followed), and only by induction: the
    tokens are random. Olsson et al. (2022) measure induction heads on such sequences.

    Args:
        batch_size: ``B``.
        period: ``n``, the length of one copy.
        vocab_size: tokens are drawn from ``[low, vocab_size)``.
        generator: the random generator (seed it for reproducible batches).
        low: the smallest token drawn (skip special tokens).
        bos_id: a token to put first, or ``None``.
        distinct: draw the ``n`` tokens of a copy without repetition, so that the
            earlier occurrence of each token is unique (needs ``n <= vocab_size - low``).

    Shapes:
        returns ``(B, 2n)``, or ``(B, 2n + 1)`` with ``bos_id``.

    Returns:
        ``int64`` token ids.

    Chapter 17.
    """
    positive_int("batch_size", batch_size)
    positive_int("period", period)
    positive_int("vocab_size", vocab_size)
    int_in_range("low", low, 0, vocab_size, high_name="vocab_size")
    boolean("distinct", distinct)
    if bos_id is not None:
        int_in_range("bos_id", bos_id, 0, vocab_size, high_name="vocab_size")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    choices = vocab_size - low
    if distinct:
        if period > choices:
            raise ValueError(f"period must be at most vocab_size - low = {choices} with distinct=True (got {period})")
        first = torch.rand(batch_size, choices, generator=generator).argsort(dim=1)[:, :period] + low  # (B, n)
    else:
        first = torch.randint(low, vocab_size, (batch_size, period), generator=generator)  # (B, n)
    tokens = torch.cat([first, first], dim=1)  # (B, 2n)
    if bos_id is not None:
        tokens = torch.cat([torch.full((batch_size, 1), bos_id, dtype=tokens.dtype), tokens], dim=1)
    return tokens


def random_repeats(
    batch_size: int,
    length: int,
    min_period: int,
    max_period: int,
    vocab_size: int,
    generator: Optional[torch.Generator] = None,
    distinct: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Random tokens that end in a copy of ``n`` tokens repeated once, ``n`` drawn per row.

    Row ``b`` is ``r_1 .. r_m x_1 .. x_n x_1 .. x_n``: ``m = length - 2n`` random tokens,
    then a random copy twice, with ``n`` uniform in ``[min_period, max_period]``. Inside
    the second copy every next token can be predicted by induction (find the current
    token in the first copy, copy its successor), and by nothing else: the tokens are
    random, and since ``n`` varies from row to row, no fixed offset points at the answer
    (with one fixed ``n``, as in :func:`repeated_random_tokens`, a single layer can learn
    to attend ``n - 1`` places back). Chapter 17 trains its induction heads on these.

    Args:
        batch_size: ``B``.
        length: ``T``, the same for every row (needs ``T >= 2 * max_period``).
        min_period, max_period: the range of ``n`` (inclusive, ``min_period >= 2``).
        vocab_size: tokens are drawn from ``[0, vocab_size)``.
        generator: the random generator.
        distinct: draw a copy's tokens without repetition, so each token of the second
            copy occurs once in the first (needs ``max_period <= vocab_size``). The random
            tokens before the copy are drawn with repetition either way.

    Shapes:
        returns tokens ``(B, T)`` and mask ``(B, T - 1)``.

    Returns:
        ``(tokens, mask)``: ``mask[b, t]`` is ``True`` where position ``t`` lies in the
        second copy and its next token too (``T - n <= t <= T - 2``), so that the
        prediction ``model(tokens[:, :-1])[mask]`` of ``tokens[:, 1:][mask]`` can be made
        by induction; row ``b`` has ``n - 1`` such targets.

    Chapter 17.
    """
    positive_int("batch_size", batch_size)
    positive_int("length", length)
    positive_int("vocab_size", vocab_size)
    int_in_range("min_period", min_period, 2, length // 2 + 1, high_name="length // 2 + 1")
    int_in_range("max_period", max_period, min_period, length // 2 + 1, high_name="length // 2 + 1")
    boolean("distinct", distinct)
    if distinct and max_period > vocab_size:
        raise ValueError(f"vocab_size must be at least max_period = {max_period} for distinct tokens (got {vocab_size})")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    n = torch.randint(min_period, max_period + 1, (batch_size, 1), generator=generator)  # (B, 1)
    tokens = torch.randint(0, vocab_size, (batch_size, length), generator=generator)  # (B, T): the random start
    if distinct:
        copy = torch.rand(batch_size, vocab_size, generator=generator).argsort(dim=1)[:, :max_period]  # (B, <= V)
    else:
        copy = torch.randint(0, vocab_size, (batch_size, max_period), generator=generator)
    pos = torch.arange(length)[None]  # (1, T)
    start = length - 2 * n  # (B, 1): where the first copy begins
    in_copy = pos >= start  # (B, T)
    index = torch.where(in_copy, (pos - start) % n, 0)  # (B, T): 0..n-1, twice
    tokens = torch.where(in_copy, copy.gather(1, index), tokens)
    return tokens, pos[:, :-1] >= length - n


def _check_maps(maps: Tensor, period: Optional[int] = None) -> int:
    """Check ``(..., T, T)`` self-attention maps; return the period ``n`` (default ``T // 2``)."""
    if not isinstance(maps, Tensor) or maps.dim() < 2 or not maps.dtype.is_floating_point:
        got = f"shape {tuple(maps.shape)}, dtype {maps.dtype}" if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a floating tensor of shape (..., T, T) (got {got})")
    T, S = maps.shape[-2:]
    if T != S or T < 2:
        raise ValueError(f"maps must be self-attention maps (..., T, T) with T >= 2 (got shape {tuple(maps.shape)})")
    n = T // 2 if period is None else period
    if not is_int(n) or not 1 <= n <= T // 2:
        raise ValueError(f"period must be an int in [1, T // 2 = {T // 2}] for maps of length T = {T} (got {n!r})")
    return n


def previous_token_score(maps: Tensor) -> Tensor:
    """Mean weight each query ``t >= 1`` gives to position ``t - 1``.

    1 for a head that always attends to the previous token (Elhage et al., 2021);
    about ``mean(1 / (t + 1))`` for a uniform causal head.

    Args:
        maps: attention maps, e.g. :func:`collect_attention`'s ``(L, B, H, T, T)``.

    Shapes:
        maps: ``(..., T, T)``; returns ``maps.shape[:-2]`` (average over ``B``
        yourself: ``score.mean(1)`` is ``(L, H)``).

    Returns:
        The score of each map.

    Chapter 17.
    """
    _check_maps(maps)
    return maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1)  # (..., T - 1): row t, column t - 1


def prefix_matching_score(maps: Tensor, period: Optional[int] = None) -> Tensor:
    """The induction score: mean weight on the token after the earlier occurrence.

    On sequences whose last ``2n`` positions are a copy repeated
    (:func:`repeated_random_tokens`), query ``t`` of the second copy sees its own token
    ``n`` positions back; an induction head attends to the position after that one,
    ``t - n + 1`` (Olsson et al., 2022, "prefix matching"). The score averages that
    weight over the ``n`` queries of the second copy.

    Args:
        maps: attention maps over such sequences.
        period: ``n``; default ``T // 2`` (so one leading token, a ``bos_id``, is
            allowed when ``T`` is odd).

    Shapes:
        maps: ``(..., T, T)``; returns ``maps.shape[:-2]``.

    Returns:
        1 for an exact induction head.

    Chapter 17.
    """
    n = _check_maps(maps, period)
    T = maps.size(-1)
    stripe = maps.diagonal(offset=1 - n, dim1=-2, dim2=-1)  # row i + n - 1, column i
    return stripe[..., T - 2 * n + 1:].mean(dim=-1)  # rows T - n .. T - 1


def duplicate_token_score(maps: Tensor, period: Optional[int] = None) -> Tensor:
    """Mean weight the second copy's queries give to their own token's earlier occurrence, ``t - n``.

    Args:
        maps, period: as in :func:`prefix_matching_score`.

    Shapes:
        maps: ``(..., T, T)``; returns ``maps.shape[:-2]``.

    Returns:
        1 for an exact duplicate-token head (Elhage et al., 2021).

    Chapter 17.
    """
    n = _check_maps(maps, period)
    T = maps.size(-1)
    stripe = maps.diagonal(offset=-n, dim1=-2, dim2=-1)  # row i + n, column i
    return stripe[..., T - 2 * n:].mean(dim=-1)  # rows T - n .. T - 1


# --- ablating heads ------------------------------------------------------------------


def _check_heads(heads: Iterable[Tuple[int, int]], found: List[Tuple[str, MultiHeadAttention]]) -> Dict[int, List[int]]:
    """``{layer: [head, ...]}`` from ``(layer, head)`` pairs, each checked against the model."""
    by_layer: Dict[int, List[int]] = {}
    for pair in heads:
        if not (isinstance(pair, tuple) and len(pair) == 2 and is_int(pair[0]) and is_int(pair[1])):
            raise TypeError(f"heads must hold (layer, head) pairs of ints (got {pair!r})")
        layer, head = pair
        int_in_range("layer in heads", layer, 0, len(found), high_name="number of attention modules")
        int_in_range(f"head in heads for layer {layer}", head, 0, found[layer][1].num_heads, high_name="num_heads")
        by_layer.setdefault(layer, []).append(head)
    return by_layer


@contextmanager
def ablate_heads(
    model: Model, heads: Iterable[Tuple[int, int]], mode: str = "zero", means: Optional[Tensor] = None
) -> Iterator[None]:
    """Knock heads out while the ``with`` block runs; the model is restored afterwards.

    A forward pre-hook on each chosen layer's ``out_proj`` overwrites head ``h``'s
    slice ``[h * Dh, (h + 1) * Dh)`` of the concatenated head outputs: with zeros
    (``"zero"``: the head's term ``W_O^h o^h`` leaves the sum, ``out_proj``'s bias
    stays) or with the head's mean output over a reference batch (``"mean"``, from
    :func:`head_means`), which removes what the head says about *this* input but not
    its average contribution (mean ablation, as in Wang et al., 2022, "Interpretability
    in the wild").

    Args:
        model: as in :func:`attention_modules`.
        heads: ``(layer, head)`` pairs.
        mode: ``"zero"`` or ``"mean"``.
        means: with ``"mean"``, :func:`head_means`'s ``(L, H, Dh)`` tensor.

    Chapter 17.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean' (got {mode!r})")
    found = attention_modules(model)
    by_layer = _check_heads(heads, found)
    if mode == "mean":
        expected = (len(found), found[0][1].num_heads, found[0][1].head_dim)
        if not isinstance(means, Tensor) or tuple(means.shape) != expected:
            got = tuple(means.shape) if isinstance(means, Tensor) else type(means).__name__
            raise ValueError(f"means must be head_means(model, ...)'s tensor of shape (L, H, Dh) = {expected} (got {got})")
    elif means is not None:
        raise ValueError("means is only used with mode='mean' (got mode='zero' and a means tensor)")

    def hook_for(layer: int, module: MultiHeadAttention) -> Callable[[nn.Module, Tuple[Tensor, ...]], Tuple[Tensor]]:
        def pre_hook(_: nn.Module, inputs: Tuple[Tensor, ...]) -> Tuple[Tensor]:
            heads_out = inputs[0].clone()  # (B, T, H * Dh): the heads, concatenated
            Dh = module.head_dim
            for h in by_layer[layer]:
                if means is None:
                    heads_out[..., h * Dh:(h + 1) * Dh] = 0.0
                else:
                    heads_out[..., h * Dh:(h + 1) * Dh] = means[layer, h].to(heads_out)
            return (heads_out,)

        return pre_hook

    handles = []
    try:
        for layer in by_layer:
            module = found[layer][1]
            handles.append(module.out_proj.register_forward_pre_hook(hook_for(layer, module)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def head_means(model: nn.Module, *args: Any, **kwargs: Any) -> Tensor:
    """Each head's output averaged over a reference batch, for ``ablate_heads(mode="mean")``.

    Runs ``model(*args, **kwargs)`` once without gradients and averages each
    ``out_proj`` input over batch and positions (padding positions included).

    Args:
        model: the model; every attention module must run once, with one head count.
        *args: the reference batch's positional inputs.
        **kwargs: its keyword inputs.

    Shapes:
        returns ``(L, H, Dh)``.

    Returns:
        The mean output of head ``h`` of layer ``l`` at ``[l, h]``.

    Chapter 17.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module to run on the reference batch (got {type(model).__name__})")
    found = attention_modules(model)
    seen: Dict[int, List[Tensor]] = {i: [] for i in range(len(found))}

    def hook_for(layer: int, module: MultiHeadAttention) -> Callable[[nn.Module, Tuple[Tensor, ...]], None]:
        def pre_hook(_: nn.Module, inputs: Tuple[Tensor, ...]) -> None:
            heads_out = inputs[0].reshape(-1, module.num_heads, module.head_dim)  # (B * T, H, Dh)
            seen[layer].append(heads_out.mean(dim=0))

        return pre_hook

    handles = [m.out_proj.register_forward_pre_hook(hook_for(i, m)) for i, (_, m) in enumerate(found)]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    calls = {found[i][0]: len(v) for i, v in seen.items()}
    if any(c != 1 for c in calls.values()):
        raise ValueError(f"head_means needs exactly one call per attention module (got calls {calls})")
    return torch.stack([seen[i][0] for i in range(len(found))])  # (L, H, Dh)


# --- attribution ---------------------------------------------------------------------


def _logit_target(model: nn.Module, tokens: Tensor, position: int, target: Union[int, Tensor]) -> Tuple[int, Tensor]:
    """Check the shared arguments; return ``position`` made non-negative and ``target`` as ``(B,)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module that maps (B, T) tokens to (B, T, V) logits (got {type(model).__name__})")
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
        got = f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be an integer tensor of shape (B, T) (got {got})")
    B, T = tokens.shape
    int_in_range("position", position, -T, T)
    if is_int(target):
        target = torch.full((B,), target, dtype=torch.long, device=tokens.device)
    if not isinstance(target, Tensor) or tuple(target.shape) != (B,):
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be an int or a tensor of shape (B,) = ({B},) (got {shape})")
    return position % T, target


def _selected_logit(logits: Tensor, tokens: Tensor, position: int, target: Tensor) -> Tensor:
    """``logits[b, position, target[b]]`` for each ``b``: ``(B, T, V) -> (B,)``."""
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[:2] != tokens.shape:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"model(tokens) must return logits of shape (B, T, V) = ({tokens.size(0)}, {tokens.size(1)}, V) (got {got})")
    return logits[:, position].gather(1, target[:, None]).squeeze(1)


def gradient_x_input(
    model: nn.Module, tokens: Tensor, position: int, target: Union[int, Tensor], embedding: Optional[nn.Module] = None
) -> Tensor:
    """Gradient x input: how much each token's embedding pushes one output logit.

    ``score[b, j] = <d logit / d e_j, e_j>`` for ``logit = model(tokens)[b, position,
    target[b]]`` and ``e_j`` the token embedding of position ``j`` (positions added
    later are not part of it): the first-order estimate of the logit's change if the
    embedding were zeroed (Shrikumar et al., 2017; Denil et al., 2014). A forward hook
    on ``embedding`` swaps its output for a leaf tensor to differentiate against; no
    parameter's ``.grad`` is touched.

    Args:
        model: maps ``(B, T)`` tokens to ``(B, T, V)`` logits (GPT, Llama models).
        tokens: the input.
        position: the position whose logit is explained (negative counts from the end).
        target: the logit's token, one for all rows or one per row.
        embedding: the token embedding module; default ``model.token_embedding``.

    Shapes:
        tokens: ``(B, T)``; target: ``(B,)`` or an int; returns ``(B, T)``.

    Returns:
        The signed score of each token (take ``abs()`` for a magnitude).

    Chapter 17.
    """
    position, target = _logit_target(model, tokens, position, target)
    embedding = getattr(model, "token_embedding", None) if embedding is None else embedding
    if not isinstance(embedding, nn.Module):
        raise TypeError(f"embedding must be the model's token embedding module (got {type(embedding).__name__})")
    leaves: List[Tensor] = []

    def swap(_: nn.Module, inputs: Tuple[Any, ...], output: Tensor) -> Tensor:
        leaves.append(output.detach().requires_grad_(True))  # (B, T, D)
        return leaves[-1]

    handle = embedding.register_forward_hook(swap)
    try:
        with torch.enable_grad():
            logit = _selected_logit(model(tokens), tokens, position, target)  # (B,)
            if len(leaves) != 1:
                raise ValueError(f"embedding must run exactly once in model(tokens) (ran {len(leaves)} times)")
            (grad,) = torch.autograd.grad(logit.sum(), leaves[0])  # rows are independent: one backward for all
    finally:
        handle.remove()
    return (grad * leaves[0]).sum(dim=-1).detach()  # (B, T)


@torch.no_grad()
def leave_one_out(
    model: nn.Module, tokens: Tensor, position: int, target: Union[int, Tensor], replacement_id: Optional[int] = None
) -> Tensor:
    """Leave-one-out: how much one output logit drops when a token is taken away.

    ``score[b, j] = logit(tokens) - logit(tokens without j)``, one forward pass per
    position ``j``. "Without" means replaced by ``replacement_id`` (a ``[MASK]`` or
    padding token), or, with ``None``, hidden from every self-attention: a key
    padding mask on ``attend`` stops every query reading position ``j`` (position
    ``j`` itself still computes from its own token through the residual stream).
    Both runs of the masked variant take the readable path.

    Args:
        model, tokens, position, target: as in :func:`gradient_x_input`.
        replacement_id: the token put in place of ``j``, or ``None`` to mask it.

    Shapes:
        tokens: ``(B, T)``; returns ``(B, T)``.

    Returns:
        Positive where the token supports the logit.

    Chapter 17.
    """
    position, target = _logit_target(model, tokens, position, target)
    if replacement_id is not None and not is_int(replacement_id):
        raise TypeError(f"replacement_id must be an int token id or None (got {type(replacement_id).__name__})")
    B, T = tokens.shape
    if replacement_id is not None:
        base = _selected_logit(model(tokens), tokens, position, target)
        scores = []
        for j in range(T):
            changed = tokens.clone()
            changed[:, j] = replacement_id
            scores.append(base - _selected_logit(model(changed), tokens, position, target))
        return torch.stack(scores, dim=1)  # (B, T)

    hide = torch.zeros(B, T, dtype=torch.bool, device=tokens.device)  # True: a key no query may read

    def wrap(module: MultiHeadAttention, original: Callable[..., Any]) -> Callable[..., Any]:
        def attend(*args: Any, **kwargs: Any) -> Tuple[Tensor, Optional[Tensor]]:
            call = _bind_attend(module, args, kwargs)
            asked, average = call["need_weights"], call["average_attn_weights"]
            mask = call["key_padding_mask"]
            if call["kv_cache"] is None and call["k"].size(2) == T:  # self-attention over the tokens
                if mask is None:
                    mask = hide
                elif mask.dtype == torch.bool:
                    mask = mask | hide
                else:
                    mask = mask.masked_fill(hide, float("-inf"))
            # the readable path: a fully masked row gives zeros there, not NaN
            out, weights = original(**{**call, "key_padding_mask": mask, "need_weights": True, "average_attn_weights": False})
            return _as_asked(out, weights, asked, average)

        return attend

    with _wrapped_attend([m for _, m in attention_modules(model)], wrap):
        base = _selected_logit(model(tokens), tokens, position, target)
        scores = []
        for j in range(T):
            hide.zero_()
            hide[:, j] = True
            scores.append(base - _selected_logit(model(tokens), tokens, position, target))
    return torch.stack(scores, dim=1)  # (B, T)


def _ranks(x: Tensor) -> Tensor:
    """Ranks 1..N along the last dimension, ties given their average rank."""
    below = (x[..., None, :] < x[..., :, None]).sum(dim=-1)  # (..., N): how many are smaller
    equal = (x[..., None, :] == x[..., :, None]).sum(dim=-1)  # (..., N): how many are equal, itself included
    return below.double() + (equal.double() + 1) / 2


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation along the last dimension, ties given their average rank.

    The Pearson correlation of the ranks, as ``scipy.stats.spearmanr`` computes it;
    ``nan`` where one side is constant. Chapters 13 and 17 compare attention with
    attributions this way.

    Args:
        a, b: two scores of the same items (any real dtype).

    Shapes:
        a, b: ``(..., N)`` with ``N >= 2``; returns ``(...)``, float64.

    Returns:
        The correlation, in ``[-1, 1]``.

    Chapter 17.
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor) or x.dim() < 1 or x.size(-1) < 2 or x.is_complex():
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a real tensor of shape (..., N) with N >= 2 (got {got})")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (got {tuple(a.shape)} and {tuple(b.shape)})")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(dim=-1, keepdim=True), rb - rb.mean(dim=-1, keepdim=True)
    return (ra * rb).sum(dim=-1) / (ra.norm(dim=-1) * rb.norm(dim=-1))


def attention_rollout(maps: Tensor, residual: float = 0.5) -> Tensor:
    """Attention rollout (Abnar and Zuidema, 2020): head-averaged maps multiplied over layers.

    Each layer's map, averaged over heads, is mixed with the identity for the residual
    path, ``A = (1 - r) W + r I`` with rows renormalised, and the layers' ``A`` are
    multiplied, last layer on the left: row ``i`` says how much of each input position
    flows into position ``i`` at the top.

    Args:
        maps: :func:`collect_attention`'s self-attention maps.
        residual: ``r`` in ``[0, 1]``, the residual path's share.

    Shapes:
        maps: ``(L, B, H, T, T)``; returns ``(B, T, T)``.

    Returns:
        The rolled-out flow; rows sum to one.

    Chapter 13 (inline there) and 17.
    """
    if not isinstance(maps, Tensor) or maps.dim() != 5 or maps.size(-1) != maps.size(-2):
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must have shape (L, B, H, T, T) (got {got})")
    fraction("residual", residual, open_high=False)
    T = maps.size(-1)
    eye = torch.eye(T, dtype=maps.dtype, device=maps.device)
    flow = eye.expand(maps.size(1), T, T)  # (B, T, T)
    for layer in maps:  # (B, H, T, T)
        a = (1 - residual) * layer.mean(dim=1) + residual * eye  # (B, T, T)
        flow = (a / a.sum(dim=-1, keepdim=True)) @ flow
    return flow
