"""Scaled dot-product attention, written out so that it can be read.

Chapter 04, "Self-attention from scratch", derives every line of this module.

Shape legend used throughout attnlib::

    B   batch size
    H   number of heads
    T   target (query) length        (``L`` in PyTorch's documentation)
    S   source (key/value) length
    D   model width                  (``embed_dim``)
    Dh  width of one head            (``head_dim``)
    ... any number of leading batch dimensions

Mask convention (the one of :func:`torch.nn.functional.scaled_dot_product_attention`):

* a **boolean** ``attn_mask`` says where a query *may attend*: ``True`` keeps the
  score, ``False`` removes it;
* a **floating-point** ``attn_mask`` is *added* to the scores (use ``-inf`` to remove
  a score, ``0`` to keep it, anything else to bias it).

:class:`torch.nn.MultiheadAttention` uses the *opposite* boolean convention for its
``attn_mask`` (``True`` = not allowed). attnlib follows SDPA everywhere; only
``key_padding_mask`` keeps PyTorch's meaning, the one its name states: ``True``
marks a padding key to ignore.

A query row whose every key is masked has nothing to attend to. attnlib defines its
weights as all zeros, so its output is a zero vector (no NaN), which is also what
PyTorch's SDPA returns for such rows.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Tuple, Union, overload

import torch
from torch import Tensor

from ._checks import positive_int

__all__ = [
    "scaled_dot_product_attention",
    "attention_weights",
    "safe_softmax",
    "causal_mask",
    "padding_mask",
    "check_attn_mask",
]


def safe_softmax(scores: Tensor, dim: int = -1) -> Tensor:
    """Softmax that returns zeros, not NaN, for a row that is entirely ``-inf``.

    Subtracting the row maximum keeps ``exp`` from overflowing for large logits (in
    float16 and bfloat16 too). A row with no finite entry has nothing to attend to;
    its weights are defined as zeros and its gradient is zero.

    Args:
        scores: attention scores; masked positions hold ``-inf``.
        dim: the dimension to normalise over (the key dimension).

    Shapes:
        scores: any shape; the output has the same shape.

    Returns:
        Non-negative weights that sum to one along ``dim`` (or to zero for a fully
        masked row).
    """
    row_max = scores.amax(dim=dim, keepdim=True)
    # A row that is all -inf has max -inf; shift it by 0 instead so exp() gives 0.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp = torch.exp(scores - row_max.detach())
    total = exp.sum(dim=dim, keepdim=True)
    return exp / torch.where(total > 0, total, torch.ones_like(total))


def causal_mask(
    target_len: int,
    source_len: Optional[int] = None,
    device: Optional[Union[torch.device, str]] = None,
) -> Tensor:
    """Boolean mask that lets query ``i`` attend to keys ``0..i`` only.

    Follows the SDPA convention (``True`` = may attend) and PyTorch's alignment for
    ``is_causal=True``: the lower triangle counted from the top-left corner.

    Args:
        target_len: number of queries ``T``.
        source_len: number of keys ``S`` (defaults to ``T``).
        device: where to create the mask.

    Shapes:
        returns ``(T, S)``.

    Returns:
        A boolean tensor, ``True`` on and below the diagonal.

    Chapter 04 (masking) and chapter 08 (the decoder).
    """
    if source_len is None:
        source_len = target_len
    positive_int("target_len", target_len)
    positive_int("source_len", source_len)
    return torch.ones(target_len, source_len, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: Tensor, max_len: Optional[int] = None) -> Tensor:
    """Key padding mask from sequence lengths: ``True`` marks a *padding* position.

    This is the meaning of PyTorch's ``key_padding_mask`` (the name says what
    ``True`` marks). To use it as an SDPA ``attn_mask``, invert it and add the
    query and head dimensions: ``~padding_mask(lengths)[:, None, None, :]``.

    Args:
        lengths: the true length of each sequence in the batch.
        max_len: the padded length ``S`` (defaults to ``lengths.max()``).

    Shapes:
        lengths: ``(B,)``; returns ``(B, S)``.

    Returns:
        A boolean tensor, ``True`` where position ``j >= lengths[b]``.

    Chapter 04 (masking).
    """
    if not isinstance(lengths, Tensor) or lengths.dim() != 1:
        got = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
        raise ValueError(f"lengths must be a 1-D tensor of shape (B,) (got {got})")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor (got dtype {lengths.dtype})")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be non-negative (got min {int(lengths.min())})")
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        max_len = longest
    elif max_len < longest:
        raise ValueError(f"max_len must be at least the longest length (got {max_len} < {longest})")
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


def check_attn_mask(attn_mask: Tensor, scores_shape: Tuple[int, ...], dtype: torch.dtype) -> None:
    """Raise a clear error unless ``attn_mask`` can be applied to scores of a shape.

    The mask must be boolean or of the scores' floating dtype, have at most as many
    dimensions as the scores, and broadcast to them: each of its dimensions equals
    the scores' or is 1. Its last two dimensions are ``(T, S)`` (or 1).

    Args:
        attn_mask: the mask to check.
        scores_shape: the shape of the scores, ``(..., T, S)``.
        dtype: the floating dtype of the scores.
    """
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None (got {type(attn_mask).__name__})")
    if attn_mask.dtype != torch.bool and attn_mask.dtype != dtype:
        raise TypeError(
            f"attn_mask must be torch.bool (True = may attend) or the query dtype {dtype} "
            f"(added to the scores) (got {attn_mask.dtype})"
        )
    if attn_mask.dim() < 2 or attn_mask.dim() > len(scores_shape):
        raise ValueError(
            f"attn_mask must have between 2 and {len(scores_shape)} dimensions, ending in (T, S) = "
            f"{tuple(scores_shape[-2:])} (got shape {tuple(attn_mask.shape)})"
        )
    aligned = scores_shape[len(scores_shape) - attn_mask.dim():]
    if any(m != s and m != 1 for m, s in zip(attn_mask.shape, aligned)):
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the attention "
            f"scores of shape {tuple(scores_shape)} (each mask dimension must match or be 1)"
        )


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (got dtype {t.dtype})")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, width) (got shape {tuple(t.shape)})")
    if not (query.dim() == key.dim() == value.dim()):
        raise ValueError(
            "query, key and value must have the same number of dimensions "
            f"(got {query.dim()}, {key.dim()} and {value.dim()})"
        )
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(f"query, key and value must share a dtype (got {query.dtype}, {key.dtype}, {value.dtype})")
    if query.shape[:-2] != key.shape[:-2] or key.shape[:-2] != value.shape[:-2]:
        raise ValueError(
            "query, key and value must have the same leading (batch, head) dimensions "
            f"(got {tuple(query.shape[:-2])}, {tuple(key.shape[:-2])} and {tuple(value.shape[:-2])})"
        )
    if query.size(-1) != key.size(-1):
        raise ValueError(
            f"query and key must have the same width to be compared by dot product "
            f"(got query width {query.size(-1)} and key width {key.size(-1)})"
        )
    if key.size(-2) != value.size(-2):
        raise ValueError(
            f"key and value must have the same length S (got {key.size(-2)} and {value.size(-2)})"
        )


def attention_weights(
    query: Tensor,
    key: Tensor,
    attn_mask: Optional[Tensor] = None,
    is_causal: bool = False,
    scale: Optional[float] = None,
) -> Tensor:
    """Attention weights ``softmax(q kᵀ · scale + mask)``, one row per query.

    Args:
        query: queries.
        key: keys.
        attn_mask: boolean (``True`` = may attend) or float (added to the scores);
            must broadcast to ``(..., T, S)``.
        is_causal: apply :func:`causal_mask`; may not be combined with ``attn_mask``.
        scale: multiplies the scores; defaults to ``1 / sqrt(Dh)``.

    Shapes:
        query: ``(..., T, Dh)``; key: ``(..., S, Dh)``; returns ``(..., T, S)``.

    Returns:
        Weights that are non-negative and sum to one over the keys (zero for a
        query whose keys are all masked), in the query's dtype. For float16 and
        bfloat16 inputs the scores and the softmax are computed in float32.

    Vaswani et al. (2017), "Attention is all you need", eq. 1. Chapter 04.
    """
    _check_qkv(query, key, key)
    T, S, Dh = query.size(-2), key.size(-2), query.size(-1)
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as in torch's SDPA)")
    if scale is None:
        scale = 1.0 / math.sqrt(Dh)

    # float16/bfloat16 scores overflow or lose the softmax's precision: compute the
    # scores and the softmax in float32 and return weights in the input's dtype.
    compute_dtype = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    q, k = query.to(compute_dtype), key.to(compute_dtype)
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)
    if is_causal:
        attn_mask = causal_mask(T, S, device=query.device)
    if attn_mask is not None:
        check_attn_mask(attn_mask, tuple(scores.shape), query.dtype)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(compute_dtype)
    return safe_softmax(scores, dim=-1).to(query.dtype)


@overload
def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor] = ...,
    dropout_p: float = ...,
    is_causal: bool = ...,
    scale: Optional[float] = ...,
    *,
    need_weights: Literal[False] = ...,
) -> Tensor: ...


@overload
def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor] = ...,
    dropout_p: float = ...,
    is_causal: bool = ...,
    scale: Optional[float] = ...,
    *,
    need_weights: Literal[True],
) -> Tuple[Tensor, Tensor]: ...


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: Optional[float] = None,
    *,
    need_weights: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Readable scaled dot-product attention with the signature of PyTorch's.

    ``softmax(q kᵀ / sqrt(Dh) + mask) v``, computed one visible step at a time. It
    takes the same arguments as :func:`torch.nn.functional.scaled_dot_product_attention`
    and agrees with it (a test checks this in float64), and can also return the
    weights, which the fused kernel cannot.

    Args:
        query: queries.
        key: keys.
        value: values.
        attn_mask: boolean (``True`` = may attend) or float (added to the scores);
            must broadcast to ``(..., T, S)``.
        dropout_p: probability of zeroing a weight. Applied whenever it is positive,
            as in PyTorch's SDPA: pass ``0.0`` at evaluation time.
        is_causal: let query ``i`` see keys ``0..i`` only.
        scale: multiplies the scores; defaults to ``1 / sqrt(Dh)``.
        need_weights: also return the attention weights (after dropout, i.e. the
            ones that multiplied ``value``).

    Shapes:
        query: ``(..., T, Dh)``; key: ``(..., S, Dh)``; value: ``(..., S, Dv)``;
        returns ``(..., T, Dv)`` and, with ``need_weights``, ``(..., T, S)``.

    Returns:
        The attended values, or ``(values, weights)`` when ``need_weights=True``.

    Vaswani et al. (2017), "Attention is all you need", eq. 1. Chapter 04.
    """
    _check_qkv(query, key, value)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1) (got {dropout_p})")
    weights = attention_weights(query, key, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p, training=True)
    out = weights @ value  # (..., T, Dv)
    if need_weights:
        return out, weights
    return out
