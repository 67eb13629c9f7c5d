"""Multi-head attention, batch-first, with a readable path and a fused path.

Chapter 05 motivates the learned projections, chapter 06 the heads. The parameter
names are PyTorch's (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), so weights copy
straight across from :class:`torch.nn.MultiheadAttention`.

Shape legend: ``B`` batch, ``T`` target (query) length, ``S`` source (key/value)
length, ``D`` model width (``embed_dim``), ``H`` heads, ``Dh`` head width
(``head_dim = D // H``), ``Hkv`` key/value heads (``num_kv_heads``; ``H`` unless
grouped-query attention shares them, see :class:`MultiHeadAttention`).

Masks:

* ``attn_mask`` follows :func:`torch.nn.functional.scaled_dot_product_attention`:
  boolean ``True`` = *may attend*, a float mask is added to the scores. This is the
  opposite of :class:`torch.nn.MultiheadAttention`'s boolean ``attn_mask``.
* ``key_padding_mask`` keeps PyTorch's meaning, the one its name states: boolean
  ``True`` marks a *padding key to ignore* (a float mask is added to the scores).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import optional_positive_int, positive_int
from .functional import check_attn_mask, scaled_dot_product_attention

__all__ = ["MultiHeadAttention", "KVCache", "merge_masks"]


def merge_masks(
    attn_mask: Optional[Tensor],
    key_padding_mask: Optional[Tensor],
    is_causal: bool,
    batch_size: int,
    num_heads: int,
    target_len: int,
    source_len: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Optional[Tensor]:
    """Combine ``attn_mask``, ``key_padding_mask`` and ``is_causal`` into one SDPA mask.

    Args:
        attn_mask: SDPA convention (``True`` = may attend, float = added); shape
            ``(T, S)``, ``(B, T, S)`` or ``(B, H, T, S)`` (any dimension may be 1).
        key_padding_mask: ``True`` = padding key to ignore (or float, added).
        is_causal: also forbid attending to later positions.
        batch_size, num_heads, target_len, source_len: ``B``, ``H``, ``T``, ``S``.
        dtype: the floating dtype of the scores.
        device: the scores' device.

    Shapes:
        key_padding_mask: ``(B, S)``; returns ``None`` or a mask that broadcasts to
        ``(B, H, T, S)``.

    Returns:
        ``None`` when there is nothing to mask, a boolean mask when every input mask
        is boolean, otherwise a float mask to add to the scores.
    """
    scores_shape = (batch_size, num_heads, target_len, source_len)
    masks = []
    if attn_mask is not None:
        if attn_mask.dim() == 3:  # (B, T, S): add the head dimension
            attn_mask = attn_mask.unsqueeze(1)
        check_attn_mask(attn_mask, scores_shape, dtype)
        masks.append(attn_mask)
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, Tensor):
            raise TypeError(f"key_padding_mask must be a torch.Tensor or None (got {type(key_padding_mask).__name__})")
        if key_padding_mask.shape != (batch_size, source_len):
            raise ValueError(
                f"key_padding_mask must have shape (B, S) = {(batch_size, source_len)} "
                f"(got {tuple(key_padding_mask.shape)})"
            )
        if key_padding_mask.dtype == torch.bool:
            masks.append(~key_padding_mask[:, None, None, :])  # True = may attend
        elif key_padding_mask.dtype == dtype:
            masks.append(key_padding_mask[:, None, None, :])
        else:
            raise TypeError(
                f"key_padding_mask must be torch.bool (True = padding) or the query dtype {dtype} "
                f"(got {key_padding_mask.dtype})"
            )
    if is_causal:
        masks.append(torch.ones(target_len, source_len, dtype=torch.bool, device=device).tril())
    if not masks:
        return None
    if all(m.dtype == torch.bool for m in masks):
        merged = masks[0]
        for m in masks[1:]:
            merged = merged & m
        return merged
    merged_float = torch.zeros((), dtype=dtype, device=device)
    for m in masks:
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(~m, float("-inf"))
        merged_float = merged_float + m
    return merged_float


class KVCache:
    """The keys and values one self-attention layer has computed so far, for generation.

    A decoder that generates token by token recomputes, without a cache, the keys and
    values of the whole prefix at every step, although they never change (the model is
    causal). A ``KVCache`` keeps them: each step appends the new position's key and
    value and attends over everything stored (Pope et al., 2023, "Efficiently scaling
    transformer inference", section 2). Pass one per layer as
    ``MultiHeadAttention.forward(..., kv_cache=cache)``; the layer appends to it.

    The buffers are allocated once, ``(B, H, max_len, Dh)``, at the first
    :meth:`append`, so a step copies one position instead of the whole prefix. Here
    ``H`` is the number of *key/value* heads: under grouped-query attention
    (``MultiHeadAttention(num_kv_heads=...)``) the cache holds only those, not their
    copies for every query head, which is what shrinks it. The cache is for inference:
    use it under ``torch.no_grad()``.

    Args:
        max_len: the most positions it can hold.

    Chapter 10.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = positive_int("max_len", max_len)
        self.length = 0
        self.keys: Optional[Tensor] = None
        self.values: Optional[Tensor] = None

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, max_len={self.max_len})"

    def append(self, keys: Tensor, values: Tensor) -> Tuple[Tensor, Tensor]:
        """Store the new positions' keys and values; return all stored so far.

        Args:
            keys: the new positions' keys, already split into heads.
            values: the new positions' values.

        Shapes:
            keys, values: ``(B, H, T, Dh)``; returns two ``(B, H, L + T, Dh)`` views,
            ``L`` the length before the call.

        Returns:
            ``(all_keys, all_values)``.
        """
        for name, t in (("keys", keys), ("values", values)):
            if not isinstance(t, Tensor) or t.dim() != 4:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a tensor of shape (B, H, T, Dh) (got {got})")
        if keys.shape != values.shape:
            raise ValueError(f"keys and values must have the same shape (got {tuple(keys.shape)} and {tuple(values.shape)})")
        B, H, T, Dh = keys.shape
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KVCache holds at most max_len={self.max_len} positions (got {self.length} + {T} = {end})")
        if self.keys is None or self.values is None:
            self.keys = keys.new_empty(B, H, self.max_len, Dh)  # (B, H, max_len, Dh)
            self.values = values.new_empty(B, H, self.max_len, Dh)
        elif self.keys.shape[:2] != (B, H) or self.keys.size(3) != Dh or self.keys.dtype != keys.dtype:
            raise ValueError(
                f"keys must match the cache's (B, H, *, Dh) = ({self.keys.size(0)}, {self.keys.size(1)}, *, "
                f"{self.keys.size(3)}) and dtype {self.keys.dtype} (got {tuple(keys.shape)}, {keys.dtype})"
            )
        self.keys[:, :, self.length:end] = keys
        self.values[:, :, self.length:end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def reset(self) -> None:
        """Forget every stored position (the buffers are kept)."""
        self.length = 0


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017, section 3.2.2), batch-first.

    Each head attends in its own ``Dh = D / H``-wide subspace; the heads' outputs are
    concatenated and mixed by ``out_proj``. The cost in parameters and multiply-adds
    equals one head of full width ``D``.

    Grouped-query attention (Ainslie et al., 2023, "GQA"): with ``num_kv_heads=Hkv``
    fewer than ``H``, ``k_proj`` and ``v_proj`` produce only ``Hkv`` key/value heads,
    and the ``H / Hkv`` query heads of group ``g`` all read key/value head ``g``:
    query head ``h`` uses key/value head ``h // (H / Hkv)``, Hugging Face's
    ``repeat_kv``. ``num_kv_heads=1`` is multi-query attention (Shazeer, 2019, "Fast
    transformer decoding: one write-head is all you need"). The point is the
    :class:`KVCache`, which stores ``Hkv`` heads instead of ``H``.

    Args:
        embed_dim: model width ``D``.
        num_heads: number of heads ``H``; must divide ``embed_dim``.
        dropout: dropout on the attention weights while training.
        bias: whether the four projections have biases.
        kdim: width of ``key`` inputs (defaults to ``embed_dim``).
        vdim: width of ``value`` inputs (defaults to ``embed_dim``).
        fused: compute with :func:`torch.nn.functional.scaled_dot_product_attention`
            when the weights are not requested; ``False`` always takes the readable
            path (:func:`attnlib.functional.scaled_dot_product_attention`). Both agree.
        num_kv_heads: number of key/value heads ``Hkv``; must divide ``num_heads``.
            ``None`` (the default) is ``num_heads``: plain multi-head attention.
            ``k_proj`` maps ``kdim`` and ``v_proj`` maps ``vdim`` to ``Hkv * Dh``.
        device, dtype: where and in what precision to create the parameters.

    Chapter 06 (grouped-query attention: chapter 15). Parity with
    :class:`torch.nn.MultiheadAttention` is tested, and with
    ``F.scaled_dot_product_attention(..., enable_gqa=True)`` for grouped heads.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
        fused: bool = True,
        num_kv_heads: Optional[int] = None,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        positive_int("embed_dim", embed_dim)
        positive_int("num_heads", num_heads)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim must be divisible by num_heads (got embed_dim={embed_dim} and num_heads={num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {dropout})")
        optional_positive_int("num_kv_heads", num_kv_heads)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_kv_heads must divide num_heads (got num_heads={num_heads} and num_kv_heads={num_kv_heads})"
            )
        kdim = embed_dim if kdim is None else kdim
        vdim = embed_dim if vdim is None else vdim
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim
        self.vdim = vdim
        self.dropout = dropout
        self.fused = fused
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        kv_dim = num_kv_heads * self.head_dim  # embed_dim unless the key/value heads are grouped
        self.k_proj = nn.Linear(kdim, kv_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(vdim, kv_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and zero biases, as in ``nn.MultiheadAttention``."""
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor, num_heads: Optional[int] = None) -> Tensor:
        """``(B, L, heads * Dh) -> (B, heads, L, Dh)``; ``heads`` is ``H`` unless given (``Hkv``)."""
        B, L, _ = x.shape
        heads = self.num_heads if num_heads is None else num_heads
        return x.view(B, L, heads, self.head_dim).transpose(1, 2)  # (B, heads, L, Dh)

    def _repeat_kv(self, x: Tensor) -> Tensor:
        """Give each query head its group's key/value head: head ``h`` gets ``h // (H / Hkv)``."""
        group = self.num_heads // self.num_kv_heads
        if group == 1:
            return x
        # (B, Hkv, S, Dh) -> (B, H, S, Dh): kv head g becomes heads g * group .. g * group + group - 1
        return x.repeat_interleave(group, dim=1)

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, t, width in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
            if t.dim() != 3:
                raise ValueError(f"{name} must be batch-first with shape (B, length, width) (got shape {tuple(t.shape)})")
            if t.size(-1) != width:
                raise ValueError(f"{name} must have width {width} (got shape {tuple(t.shape)})")
        if not (query.size(0) == key.size(0) == value.size(0)):
            raise ValueError(
                f"query, key and value must have the same batch size (got {query.size(0)}, {key.size(0)}, {value.size(0)})"
            )
        if key.size(1) != value.size(1):
            raise ValueError(f"key and value must have the same length S (got {key.size(1)} and {value.size(1)})")

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        kv_cache: Optional[KVCache] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: the sequence that asks.
            key: the sequence that is compared with the queries.
            value: the sequence whose vectors are mixed.
            attn_mask: SDPA convention, ``True`` = may attend (float: added);
                ``(T, S)``, ``(B, T, S)`` or ``(B, H, T, S)``.
            key_padding_mask: ``True`` marks a padding key to ignore (float: added).
            need_weights: also return the attention weights (readable path).
            average_attn_weights: average the returned weights over heads.
            is_causal: forbid attending to later positions (may be combined with
                the masks above).
            kv_cache: self-attention during generation (chapter 10): the new
                positions' keys and values are appended to this :class:`KVCache` and
                the queries attend over all it holds, ``S = len(cache)`` after the
                append; ``is_causal`` then lets query ``i`` see keys up to its own
                position ``S - T + i``. ``key_padding_mask`` must cover all ``S``.

        Shapes:
            query: ``(B, T, D)``; key: ``(B, S, kdim)``; value: ``(B, S, vdim)``;
            key_padding_mask: ``(B, S)``. Returns ``(B, T, D)`` and weights of shape
            ``(B, T, S)`` (averaged) or ``(B, H, T, S)`` (per head), or ``None``.

        Returns:
            ``(out, weights)``; ``weights`` is ``None`` unless ``need_weights``.
        """
        self._check_inputs(query, key, value)
        q = self._split_heads(self.q_proj(query))  # (B, H, T, Dh)
        k = self._split_heads(self.k_proj(key), self.num_kv_heads)  # (B, Hkv, S, Dh)
        v = self._split_heads(self.v_proj(value), self.num_kv_heads)  # (B, Hkv, S, Dh)
        return self.attend(
            q, k, v, attn_mask, key_padding_mask, need_weights, average_attn_weights, is_causal, kv_cache
        )

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        kv_cache: Optional[KVCache] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Everything :meth:`forward` does after the input projections.

        The queries, keys and values come already projected and split into heads, so
        a layer that transforms them first (rotary embeddings in
        :class:`attnlib.llama.LlamaBlock`) reuses the rest unchanged: the
        :class:`KVCache`, the key/value groups, the masks, the fused and readable
        paths, and ``out_proj``. The arguments after ``v`` mean what they mean in
        :meth:`forward`.

        Shapes:
            q: ``(B, H, T, Dh)``; k, v: ``(B, Hkv, S, Dh)`` (the new positions when
            caching). Returns ``(B, T, D)`` and the weights as in :meth:`forward`.

        Returns:
            ``(out, weights)``; ``weights`` is ``None`` unless ``need_weights``.
        """
        for name, t, heads in (("q", q, self.num_heads), ("k", k, self.num_kv_heads), ("v", v, self.num_kv_heads)):
            if not isinstance(t, Tensor) or t.dim() != 4 or t.size(1) != heads or t.size(3) != self.head_dim:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must have shape (B, {heads}, length, {self.head_dim}) (got {got})")
        if k.shape != v.shape or k.size(0) != q.size(0):
            raise ValueError(
                f"k and v must have the same shape and q's batch size "
                f"(got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)})"
            )
        B, _, T, _ = q.shape
        if kv_cache is not None:
            if not isinstance(kv_cache, KVCache):
                raise TypeError(f"kv_cache must be a KVCache or None (got {type(kv_cache).__name__})")
            past = len(kv_cache)
            k, v = kv_cache.append(k, v)  # (B, Hkv, past + S_new, Dh): the whole prefix, Hkv heads only
            if is_causal and past > 0:  # queries sit at positions past .. past + T - 1
                if T > 1:
                    if attn_mask is not None:
                        raise ValueError("attn_mask cannot be combined with is_causal on a non-empty kv_cache")
                    attn_mask = torch.ones(T, k.size(2), dtype=torch.bool, device=q.device).tril(diagonal=past)
                is_causal = False  # a single newest query may see every key
        k, v = self._repeat_kv(k), self._repeat_kv(v)  # (B, H, S, Dh): each query head's key/value head
        S = k.size(2)
        mask = merge_masks(
            attn_mask, key_padding_mask, is_causal, B, self.num_heads, T, S, q.dtype, q.device
        )
        dropout_p = self.dropout if self.training else 0.0
        only_causal = is_causal and attn_mask is None and key_padding_mask is None

        weights: Optional[Tensor] = None
        if need_weights or not self.fused:  # readable path: the weights are visible
            out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, need_weights=True)
        elif only_causal:  # fused path; SDPA skips building the (T, S) mask
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:  # fused path
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        # out: (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D): concatenate the heads
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, self.embed_dim))

        if not need_weights:
            return out, None
        assert weights is not None
        if average_attn_weights:
            weights = weights.mean(dim=1)  # (B, T, S)
        return out, weights

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{kv}, head_dim={self.head_dim}, fused={self.fused}"
