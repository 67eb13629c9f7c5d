"""Tiled attention with an online softmax: exact attention in memory linear in n.

Chapter 14, "The cost of attention", derives every line of this module.

Readable attention (:func:`attnlib.functional.scaled_dot_product_attention`) builds the
whole ``(T, S)`` score matrix, so its time *and* memory grow as ``T · S``. The softmax
of a row does not need the whole row at once, though: keeping a running maximum ``m``
and a running sum ``l`` of ``exp(score - m)``, a new block of scores updates both and
rescales what was accumulated so far (the online softmax of Milakov and Gimelshein,
2018). Attention over key/value *blocks* then needs one ``(Tq, Sk)`` tile of scores at
a time, plus ``m``, ``l`` and the output accumulator, which are linear in the length
(Rabe and Staats, 2021; Dao et al., 2022, "FlashAttention"). The result is the same
attention, not an approximation: the tests compare it with the readable path to
``1e-10`` in float64.

The backward pass is written by hand (``_TiledAttention``) so that it, too, works
block by block: it keeps only the inputs, the output and each query's log-sum-exp, and
recomputes every tile of weights when it needs it (Dao et al., 2022, section 3.1).
Autograd through the forward loop would instead store every tile, which is the
quadratic memory we set out to avoid.

This module also holds :class:`PeakMemory`, which counts the bytes that tensors
created inside a ``with`` block hold at their peak, on any device, so that the chapter
and ``benchmarks/run.py`` can measure the memory that tiling saves on a CPU.

Shape legend: ``...`` leading batch dimensions (usually ``B, H``), ``T`` queries,
``S`` keys, ``Dh`` query/key width, ``Dv`` value width.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ._checks import boolean, is_number, positive_int
from .functional import _check_qkv, check_attn_mask

__all__ = ["tiled_attention", "PeakMemory"]


class _Masks:
    """The masks of one call, sliced tile by tile (never materialised at ``(T, S)``)."""

    def __init__(
        self,
        attn_mask: Optional[Tensor],
        key_padding_mask: Optional[Tensor],
        is_causal: bool,
        scores_shape: Tuple[int, ...],
    ) -> None:
        # expand() is a view: a (T, S) or (B, 1, T, S) mask is not copied per head.
        self.attn_mask = None if attn_mask is None else attn_mask.expand(scores_shape)
        self.padding = key_padding_mask  # (B, 1, ..., 1, S): True = padding
        self.is_causal = is_causal

    def skip(self, i0: int, i1: int, j0: int) -> bool:
        """Whether the tile of queries i0..i1-1 and keys from j0 is entirely in the future."""
        return self.is_causal and j0 > i1 - 1

    def apply(self, scores: Tensor, i0: int, i1: int, j0: int, j1: int) -> Tensor:
        """Mask one tile of scores ``(..., i1 - i0, j1 - j0)``."""
        if self.is_causal and j1 - 1 > i0:  # the tile crosses the diagonal
            rows = torch.arange(i0, i1, device=scores.device)[:, None]
            cols = torch.arange(j0, j1, device=scores.device)[None, :]
            scores = scores.masked_fill(cols > rows, float("-inf"))  # (Tq, Sk) broadcast
        if self.attn_mask is not None:
            tile = self.attn_mask[..., i0:i1, j0:j1]
            if tile.dtype == torch.bool:
                scores = scores.masked_fill(~tile, float("-inf"))
            else:
                scores = scores + tile.to(scores.dtype)
        if self.padding is not None:
            scores = scores.masked_fill(self.padding[..., j0:j1], float("-inf"))
        return scores


def _forward(
    q: Tensor, k: Tensor, v: Tensor, masks: _Masks, scale: float, block_q: int, block_k: int
) -> Tuple[Tensor, Tensor]:
    """Tiled forward pass; returns the output and each query's log-sum-exp."""
    T, S = q.size(-2), k.size(-2)
    out = q.new_empty(q.shape[:-1] + (v.size(-1),))  # (..., T, Dv)
    lse = q.new_empty(q.shape[:-1])  # (..., T)
    for i0 in range(0, T, block_q):
        i1 = min(i0 + block_q, T)
        qi = q[..., i0:i1, :] * scale  # (..., Tq, Dh)
        m = q.new_full(qi.shape[:-1] + (1,), float("-inf"))  # running max (..., Tq, 1)
        l = q.new_zeros(qi.shape[:-1] + (1,))  # running sum of exp(score - m)
        acc = q.new_zeros(qi.shape[:-1] + (v.size(-1),))  # running sum of exp(score - m) v
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            if masks.skip(i0, i1, j0):
                break  # causal: every later key block is in the future too
            s = masks.apply(qi @ k[..., j0:j1, :].transpose(-2, -1), i0, i1, j0, j1)  # (..., Tq, Sk)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            # A row with no finite score so far keeps m = -inf; shift it by 0 so exp gives 0, not NaN.
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            p = torch.exp(s - m_safe)  # (..., Tq, Sk)
            correction = torch.exp(m - m_safe)  # rescales what was summed under the old max
            l = l * correction + p.sum(dim=-1, keepdim=True)
            acc = acc * correction + p @ v[..., j0:j1, :]  # (..., Tq, Dv)
            m = m_new
        seen = l > 0  # False for a query whose every key is masked: output zeros, like attnlib
        out[..., i0:i1, :] = acc / torch.where(seen, l, torch.ones_like(l))
        m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        # log-sum-exp of the row; +inf for an empty row makes every recomputed weight 0.
        lse[..., i0:i1] = torch.where(seen, m_safe + torch.log(torch.where(seen, l, torch.ones_like(l))),
                                      torch.full_like(l, float("inf"))).squeeze(-1)
    return out, lse


def _backward(
    q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor,
    masks: _Masks, scale: float, block_q: int, block_k: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Tiled backward pass: recompute each tile of weights from the saved log-sum-exp."""
    T, S = q.size(-2), k.size(-2)
    grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    # d(loss)/d(score_ij) = p_ij (dP_ij - D_i) with D_i = sum_j p_ij dP_ij = <dO_i, O_i>.
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # (..., T, 1)
    for i0 in range(0, T, block_q):
        i1 = min(i0 + block_q, T)
        qi = q[..., i0:i1, :]  # (..., Tq, Dh)
        doi = grad_out[..., i0:i1, :]  # (..., Tq, Dv)
        lse_i = lse[..., i0:i1, None]  # (..., Tq, 1)
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            if masks.skip(i0, i1, j0):
                break
            kj, vj = k[..., j0:j1, :], v[..., j0:j1, :]  # (..., Sk, Dh), (..., Sk, Dv)
            s = masks.apply((qi * scale) @ kj.transpose(-2, -1), i0, i1, j0, j1)  # (..., Tq, Sk)
            p = torch.exp(s - lse_i)  # the forward's weights, recomputed
            grad_v[..., j0:j1, :] += p.transpose(-2, -1) @ doi
            dp = doi @ vj.transpose(-2, -1)  # (..., Tq, Sk)
            ds = p * (dp - delta[..., i0:i1, :]) * scale
            grad_q[..., i0:i1, :] += ds @ kj
            grad_k[..., j0:j1, :] += ds.transpose(-2, -1) @ qi
    return grad_q, grad_k, grad_v


class _TiledAttention(torch.autograd.Function):
    """Autograd wrapper: tiled forward, tiled backward that recomputes the weights."""

    @staticmethod
    def forward(
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, masks: _Masks, scale: float, block_q: int, block_k: int
    ) -> Tensor:
        out, lse = _forward(q, k, v, masks, scale, block_q, block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.masks, ctx.scale, ctx.block_q, ctx.block_k = masks, scale, block_q, block_k
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        q, k, v, out, lse = ctx.saved_tensors
        grads = _backward(q, k, v, out, lse, grad_out, ctx.masks, ctx.scale, ctx.block_q, ctx.block_k)
        return grads + (None, None, None, None)


def tiled_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: Optional[float] = None,
    *,
    key_padding_mask: Optional[Tensor] = None,
    block_size: int = 512,
    query_block_size: int = 1024,
) -> Tensor:
    """Exact scaled dot-product attention, computed over blocks with an online softmax.

    Same arguments and the same result as
    :func:`attnlib.functional.scaled_dot_product_attention` (and PyTorch's SDPA), but
    it never holds more than one ``(query_block_size, block_size)`` tile of scores:
    its extra memory is linear in the length instead of quadratic. Forward and
    backward are both tiled; the backward recomputes the weights.

    Args:
        query: queries.
        key: keys.
        value: values.
        attn_mask: boolean (``True`` = may attend) or float (added to the scores);
            must broadcast to ``(..., T, S)``. It is read tile by tile through a
            broadcast view, but a full ``(T, S)`` mask is itself quadratic: for
            padding prefer ``key_padding_mask``. Not differentiated.
        dropout_p: must be ``0.0``; attention dropout is not implemented here (use
            the readable path to train with it).
        is_causal: let query ``i`` see keys ``0..i`` only (top-left aligned, as in
            PyTorch); tiles entirely in the future are skipped, which halves the work.
        scale: multiplies the scores; defaults to ``1 / sqrt(Dh)``.
        key_padding_mask: ``True`` marks a padding key to ignore, one row per batch
            element (PyTorch's meaning); may be combined with the other masks.
        block_size: keys (and values) per block, ``Sk``.
        query_block_size: queries per block, ``Tq``.

    Shapes:
        query: ``(B, ..., T, Dh)``; key: ``(B, ..., S, Dh)``; value: ``(B, ..., S, Dv)``;
        key_padding_mask: ``(B, S)``; returns ``(B, ..., T, Dv)``.

    Returns:
        The attended values, in the query's dtype (float16 and bfloat16 inputs are
        computed in float32). A query whose keys are all masked gets a zero vector.

    Milakov and Gimelshein (2018), "Online normalizer calculation for softmax";
    Rabe and Staats (2021), "Self-attention does not need O(n²) memory"; Dao et al.
    (2022), "FlashAttention". Chapter 14.
    """
    _check_qkv(query, key, value)
    if not is_number(dropout_p) or dropout_p != 0.0:
        raise ValueError(f"dropout_p must be 0.0 for tiled_attention, which has no attention dropout (got {dropout_p!r})")
    boolean("is_causal", is_causal)
    if is_causal and attn_mask is not None:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as in torch's SDPA)")
    block_k = positive_int("block_size", block_size)
    block_q = positive_int("query_block_size", query_block_size)
    T, S, Dh = query.size(-2), key.size(-2), query.size(-1)
    if scale is None:
        scale = 1.0 / math.sqrt(Dh)
    compute_dtype = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    scores_shape = tuple(query.shape[:-1]) + (S,)  # (..., T, S), never allocated
    if attn_mask is not None:
        check_attn_mask(attn_mask, scores_shape, query.dtype)
        if attn_mask.requires_grad and torch.is_grad_enabled():
            raise ValueError("attn_mask must not require grad: tiled_attention does not differentiate the mask")
    padding = None
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
            got = key_padding_mask.dtype if isinstance(key_padding_mask, Tensor) else type(key_padding_mask).__name__
            raise TypeError(f"key_padding_mask must be a boolean tensor, True at padding (got {got})")
        if query.dim() < 3 or tuple(key_padding_mask.shape) != (query.size(0), S):
            raise ValueError(
                f"key_padding_mask must have shape (B, S) = {(query.size(0), S)} for a query of shape "
                f"(B, ..., T, Dh) (got {tuple(key_padding_mask.shape)} for a query of shape {tuple(query.shape)})"
            )
        padding = key_padding_mask.view((query.size(0),) + (1,) * (query.dim() - 2) + (S,))  # (B, 1, .., 1, S)
    masks = _Masks(attn_mask, padding, is_causal, scores_shape)
    q, k, v = (t.to(compute_dtype) for t in (query, key, value))
    out = _TiledAttention.apply(q, k, v, masks, float(scale), block_q, block_k)
    return out.to(query.dtype)


class PeakMemory(TorchDispatchMode):
    """Count the bytes held by tensors created inside a ``with`` block, and their peak.

    Every PyTorch operation run inside the block passes through this mode. Each
    output whose storage is new (not one of the operation's inputs: views and
    in-place results are not new memory) is added to the live total until its
    storage is freed, which a ``weakref.finalize`` reports. ``peak`` is the largest
    live total seen: the *extra* memory the code needed beyond its inputs, counted
    exactly, on the CPU as on a GPU, without reading the allocator's statistics.

    Memory allocated outside PyTorch operations (NumPy, Python objects) and
    workspace that a kernel frees before returning is not counted. Backward passes
    run on the calling thread are counted on the CPU; on CUDA, prefer
    ``torch.cuda.max_memory_allocated``.

    Attributes:
        current: bytes held now by tensors created inside the block.
        peak: the largest ``current`` seen.

    Example::

        with PeakMemory() as mem:
            out = tiled_attention(q, k, v)
        print(mem.peak)

    Chapter 14.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: Dict[int, int] = {}

    def _free(self, ptr: int) -> None:
        self.current -= self._live.pop(ptr, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs: List[Any] = tree_flatten((args, kwargs))[0]
        seen = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in seen or ptr in self._live:
                continue
            self._live[ptr] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, ptr)
        return out
