"""Positional information for self-attention, which on its own ignores order.

Chapter 07, "Positional encoding", explains and compares these. Shape legend:
``B`` batch, ``T`` length, ``D`` model width, ``H`` heads, ``Dh`` head width.

* :func:`sinusoidal_encoding` / :class:`SinusoidalPositionalEncoding`: fixed sines
  and cosines added to the embeddings (Vaswani et al., 2017, section 3.5).
* :class:`LearnedPositionalEmbedding`: one trained vector per position
  (Gehring et al., 2017; BERT and GPT use it).
* :class:`RotaryEmbedding`: rotates queries and keys by a position-dependent angle
  so that their dot product depends only on the offset (Su et al., 2021, RoPE).
* :class:`RotarySelfAttention`: multi-head self-attention with RoPE applied to the
  queries and keys, built from :class:`attnlib.attention.MultiHeadAttention`'s parts.
* :func:`alibi_slopes` / :func:`alibi_bias`: attention with linear biases (ALiBi;
  Press, Smith and Lewis, 2022), a per-head penalty proportional to the distance,
  added to the scores as a float ``attn_mask``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ._checks import boolean, positive_int
from .attention import MultiHeadAttention, merge_masks
from .functional import scaled_dot_product_attention

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "rotate_half",
    "rotate_interleaved",
    "RotarySelfAttention",
    "alibi_slopes",
    "alibi_bias",
]


ROPE_LAYOUTS = ("halves", "interleaved")
"""Which features :class:`RotaryEmbedding` rotates together: ``i`` with ``i + Dh/2``, or ``2i`` with ``2i + 1``."""


def _check_even(name: str, value: int) -> None:
    positive_int(name, value)
    if value % 2 != 0:
        raise ValueError(f"{name} must be even, to pair sines with cosines (got {value})")


def _check_sequence(x: Tensor, width: int, max_len: Optional[int] = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor (got {type(x).__name__})")
    if x.dim() != 3 or x.size(-1) != width:
        raise ValueError(f"x must have shape (B, T, {width}) (got {tuple(x.shape)})")
    if max_len is not None and x.size(1) > max_len:
        raise ValueError(f"sequence length must be at most max_len={max_len} (got {x.size(1)})")


def sinusoidal_encoding(
    num_positions: int,
    embed_dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> Tensor:
    """The sinusoidal position table of Vaswani et al. (2017), section 3.5.

    ``PE[p, 2i] = sin(p / base^(2i/D))`` and ``PE[p, 2i+1] = cos(p / base^(2i/D))``.
    Each pair of columns turns at its own frequency, so ``PE[p + k]`` is a fixed
    rotation of ``PE[p]`` for every ``p``.

    Args:
        num_positions: number of positions ``T``.
        embed_dim: width ``D`` (even).
        base: the wavelength scale.
        dtype, device: of the returned table.

    Shapes:
        returns ``(T, D)``.

    Returns:
        The table; row ``p`` is the encoding of position ``p``.

    Chapter 07.
    """
    positive_int("num_positions", num_positions)
    _check_even("embed_dim", embed_dim)
    # Computed in float64 on the CPU (Apple's MPS has no float64), then moved.
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, embed_dim, 2, dtype=torch.float64) / embed_dim)  # (D/2,)
    angles = position * inv_freq  # (T, D/2)
    table = torch.empty(num_positions, embed_dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.to(device=device, dtype=dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds :func:`sinusoidal_encoding` to a batch of embeddings (no parameters).

    Args:
        embed_dim: width ``D`` (even).
        max_len: longest sequence supported.
        dropout: dropout after the addition, as in the original transformer.
        scale_input: multiply the embeddings by ``sqrt(D)`` first, as Vaswani et al. do.

    Shapes:
        input ``(B, T, D)`` with ``T <= max_len``; output ``(B, T, D)``.

    Chapter 07.
    """

    pe: Tensor

    def __init__(self, embed_dim: int, max_len: int = 512, dropout: float = 0.0, scale_input: bool = False) -> None:
        super().__init__()
        positive_int("max_len", max_len)
        self.embed_dim = embed_dim
        self.max_len = max_len
        self.input_scale = math.sqrt(embed_dim) if scale_input else 1.0
        self.register_buffer("pe", sinusoidal_encoding(max_len, embed_dim), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``dropout(x * scale + PE[:T])``."""
        _check_sequence(x, self.embed_dim, self.max_len)
        T = x.size(1)
        # The buffer is float32 (every device has it); float64 inputs get an exact table.
        pe = sinusoidal_encoding(T, self.embed_dim, dtype=x.dtype, device=x.device) if x.dtype == torch.float64 \
            else self.pe[:T].to(x.dtype)
        return self.dropout(x * self.input_scale + pe)


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position, added to the embeddings.

    Args:
        max_len: number of positions with a vector; longer inputs are an error
            (a learned table cannot extrapolate, which chapter 07 measures).
        embed_dim: width ``D``.
        dropout: dropout after the addition.

    Shapes:
        input ``(B, T, D)`` with ``T <= max_len``; output ``(B, T, D)``.

    Chapter 07.
    """

    def __init__(self, max_len: int, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        positive_int("max_len", max_len)
        positive_int("embed_dim", embed_dim)
        self.max_len = max_len
        self.embed_dim = embed_dim
        self.embedding = nn.Embedding(max_len, embed_dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``dropout(x + P[:T])``."""
        _check_sequence(x, self.embed_dim, self.max_len)
        positions = torch.arange(x.size(1), device=x.device)
        return self.dropout(x + self.embedding(positions).to(x.dtype))


def rotate_half(x: Tensor) -> Tensor:
    """Map each pair ``(a, b)`` of the last dimension to ``(-b, a)``.

    The pairs are the two halves of the last dimension (first half with second half),
    the layout used by GPT-NeoX and Llama.
    """
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotate_interleaved(x: Tensor) -> Tensor:
    """Map each pair ``(a, b)`` of the last dimension to ``(-b, a)``, pairs side by side.

    The pairs are neighbours, ``(x0, x1), (x2, x3), ...``: the layout of the RoFormer
    paper, GPT-J and llama.cpp.
    """
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., Dh/2) each: the pairs' first and second features
    return torch.stack((-odd, even), dim=-1).flatten(-2)  # (..., Dh/2, 2) -> (..., Dh)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE; Su et al., 2021).

    Rotates each pair of query/key features by the angle ``p * theta_i``. A query at
    position ``m`` and a key at position ``n`` then have a dot product that depends
    on their content and on ``m - n`` only. Apply it to queries and keys after the
    projections, inside attention; values are not rotated.

    Which features form a pair is a convention, ``layout``: ``"halves"`` pairs feature
    ``i`` with ``i + Dh/2`` (GPT-NeoX, Hugging Face's Llama; :func:`rotate_half`),
    ``"interleaved"`` pairs ``2i`` with ``2i + 1`` (the paper, GPT-J, llama.cpp;
    :func:`rotate_interleaved`). Pair ``i`` turns at frequency ``theta_i`` in both, so
    the two are the same rotation up to a fixed permutation of the features, which
    a model's query and key projections absorb (see :mod:`attnlib.smollm`).

    Args:
        head_dim: width ``Dh`` of the vectors to rotate (even).
        base: the wavelength scale (10000 in the paper).
        layout: ``"halves"`` (the default) or ``"interleaved"``.

    Shapes:
        input ``(..., T, Dh)``; ``positions`` ``(T,)``; output ``(..., T, Dh)``.

    Chapter 07.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, layout: str = "halves") -> None:
        super().__init__()
        _check_even("head_dim", head_dim)
        if layout not in ROPE_LAYOUTS:
            raise ValueError(f"layout must be one of {ROPE_LAYOUTS} (got {layout!r})")
        self.head_dim = head_dim
        self.layout = layout
        # Kept in float64 on the CPU, not as a buffer: Apple's MPS has no float64, and
        # the angles are computed here and moved to the input's device and dtype.
        self.inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (Dh/2,)

    def forward(self, x: Tensor, positions: Optional[Tensor] = None) -> Tensor:
        """Rotate ``x`` by its positions (``0..T-1`` unless ``positions`` is given)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor (got {type(x).__name__})")
        if x.dim() < 2 or x.size(-1) != self.head_dim:
            raise ValueError(f"x must have shape (..., T, {self.head_dim}) (got {tuple(x.shape)})")
        T = x.size(-2)
        if positions is None:
            positions = torch.arange(T, device=x.device)
        elif positions.shape != (T,):
            raise ValueError(f"positions must have shape (T,) = ({T},) (got {tuple(positions.shape)})")
        angles = positions.detach().to("cpu", torch.float64)[:, None] * self.inv_freq  # (T, Dh/2)
        if self.layout == "halves":
            angles = torch.cat((angles, angles), dim=-1)  # (T, Dh): same angle for both halves of a pair
        else:
            angles = angles.repeat_interleave(2, dim=-1)  # (T, Dh): same angle for both neighbours of a pair
        cos = angles.cos().to(device=x.device, dtype=x.dtype)
        sin = angles.sin().to(device=x.device, dtype=x.dtype)
        rotated = rotate_half(x) if self.layout == "halves" else rotate_interleaved(x)
        return x * cos + rotated * sin

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, layout={self.layout!r}"


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention whose queries and keys are rotated by RoPE.

    RoPE acts *inside* attention, between the projections and the scores, so it
    cannot be added to the input like the other encodings. This module owns a
    :class:`attnlib.attention.MultiHeadAttention` (``self.attn``) and uses its four
    projections, its head split and its mask handling unchanged; the one new step
    is :class:`RotaryEmbedding` applied to the per-head queries and keys. The
    attention itself is :func:`attnlib.functional.scaled_dot_product_attention`.
    With every position equal (``positions`` all zero) it computes exactly what
    ``self.attn`` computes.

    Args:
        embed_dim: model width ``D``.
        num_heads: number of heads ``H``; must divide ``embed_dim``, and
            ``Dh = D / H`` must be even.
        dropout: dropout on the attention weights while training.
        bias: whether the projections have biases.
        base: RoPE's wavelength scale (10000 in the paper).

    Shapes:
        x: ``(B, T, D)``; positions: ``(T,)``; returns ``(B, T, D)`` and weights
        ``(B, H, T, T)`` or ``None``.

    Su et al. (2021), "RoFormer". Chapter 07.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, base: float = 10000.0
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.rotary = RotaryEmbedding(self.attn.head_dim, base=base)

    def forward(
        self,
        x: Tensor,
        attn_mask: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        is_causal: bool = False,
        positions: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend from ``x`` to itself with rotated queries and keys.

        Args:
            x: the sequence, batch-first.
            attn_mask: as in :class:`attnlib.attention.MultiHeadAttention`: boolean
                ``True`` = may attend, float = added; ``(T, T)``, ``(B, T, T)`` or
                ``(B, H, T, T)``.
            key_padding_mask: ``(B, T)``, ``True`` at padding positions.
            need_weights: also return the per-head weights ``(B, H, T, T)``.
            is_causal: let position ``i`` attend to ``0..i`` only.
            positions: the position of each step (``0..T-1`` by default).

        Returns:
            ``(out, weights)``; ``weights`` is ``None`` unless ``need_weights``.
        """
        attn = self.attn
        _check_sequence(x, attn.embed_dim)
        B, T, _ = x.shape
        mask = merge_masks(attn_mask, key_padding_mask, is_causal, B, attn.num_heads, T, T, x.dtype, x.device)
        q = self.rotary(attn._split_heads(attn.q_proj(x)), positions)  # (B, H, T, Dh), rotated
        k = self.rotary(attn._split_heads(attn.k_proj(x)), positions)  # (B, H, T, Dh), rotated
        v = attn._split_heads(attn.v_proj(x))  # (B, H, T, Dh), not rotated
        dropout_p = attn.dropout if self.training else 0.0
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, need_weights=True)
        # out: (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D): concatenate the heads
        out = attn.out_proj(out.transpose(1, 2).reshape(B, T, attn.embed_dim))
        return out, (weights if need_weights else None)


def _slopes_power_of_2(n: int) -> List[float]:
    # 2^(-8/n), 2^(-16/n), ..., 2^(-8): a geometric sequence from 2^(-8/n) down to 1/256.
    start = 2.0 ** (-8.0 / n)
    return [start ** (h + 1) for h in range(n)]


def alibi_slopes(num_heads: int, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None) -> Tensor:
    """The head slopes ``m`` of ALiBi (Press, Smith and Lewis, 2022, section 3).

    For ``H`` a power of two the slopes are the geometric sequence that starts at
    ``2^(-8/H)`` and has that ratio: ``1/2, 1/4, ..., 1/256`` for 8 heads,
    ``1/sqrt(2), 1/2, ..., 1/256`` for 16. For any other ``H`` the paper's code takes
    the ``2^floor(log2 H)`` slopes of the power of two below ``H`` and adds the
    remaining heads from every other slope of the next power of two (``H = 6``:
    ``1/4, 1/16, 1/64, 1/256`` then ``1/2, 1/8``).

    Args:
        num_heads: number of heads ``H``.
        dtype, device: of the result.

    Shapes:
        returns ``(H,)``.

    Returns:
        One distinct slope per head, between 0 and 1.

    Chapter 07.
    """
    positive_int("num_heads", num_heads)
    if num_heads & (num_heads - 1) == 0:  # a power of two
        slopes = _slopes_power_of_2(num_heads)
    else:
        below = 2 ** math.floor(math.log2(num_heads))
        extra = _slopes_power_of_2(2 * below)[0::2][: num_heads - below]
        slopes = _slopes_power_of_2(below) + extra
    return torch.tensor(slopes, dtype=dtype, device=device)


def alibi_bias(
    num_heads: int,
    target_len: int,
    source_len: Optional[int] = None,
    causal: bool = True,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> Tensor:
    """ALiBi's bias: minus each head's slope times the query-key distance.

    Query ``i`` and key ``j`` are at positions ``i`` and ``j`` counted from the start
    (the top-left alignment of :func:`attnlib.functional.causal_mask`).

    * ``causal=True`` (the paper's setting, a decoder): ``-m_h * (i - j)`` for
      ``j <= i`` and ``-inf`` for ``j > i``. The causal mask is part of the bias,
      so the result on its own is a complete float ``attn_mask``.
    * ``causal=False`` (a symmetric variant for encoders; the paper defines only
      the causal case): ``-m_h * |i - j|`` everywhere. It penalises distance but
      cannot tell left from right.

    Args:
        num_heads: number of heads ``H`` (see :func:`alibi_slopes`).
        target_len: number of queries ``T``.
        source_len: number of keys ``S`` (defaults to ``T``).
        causal: the causal bias with ``-inf`` above the diagonal, or the symmetric one.
        dtype: a floating dtype (the dtype of the scores it is added to).
        device: where to create the bias.

    Shapes:
        returns ``(H, T, S)``. To pass it to
        :class:`attnlib.attention.MultiHeadAttention`, whose 3-D ``attn_mask`` means
        ``(B, T, S)``, add a batch dimension: ``alibi_bias(...)[None]`` is
        ``(1, H, T, S)``.

    Returns:
        The bias, to be added to the attention scores (a float ``attn_mask``).

    Press, Smith and Lewis (2022), "Train short, test long". Chapter 07.
    """
    positive_int("target_len", target_len)
    if source_len is None:
        source_len = target_len
    positive_int("source_len", source_len)
    boolean("causal", causal, got_type=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (got {dtype!r})")
    # Built in float64 on the CPU (Apple's MPS has no float64), then moved.
    slopes = alibi_slopes(num_heads, dtype=torch.float64)  # (H,)
    i = torch.arange(target_len, dtype=torch.float64)[:, None]  # (T, 1)
    j = torch.arange(source_len, dtype=torch.float64)[None, :]  # (1, S)
    distance = i - j  # (T, S): positive when the key is earlier
    if causal:
        distance = distance.masked_fill(distance < 0, float("inf"))  # future keys: -inf after the minus
    else:
        distance = distance.abs()
    bias = 0.0 - slopes[:, None, None] * distance  # (H, T, S); 0.0 - x turns -0.0 into 0.0
    return bias.to(device=device, dtype=dtype)
