"""The modern decoder: RMSNorm, SwiGLU, rotary embeddings and grouped-query attention.

Chapter 15 builds a real chat model (SmolLM2-135M-Instruct, loaded by
:mod:`attnlib.smollm`) from these parts. The decoder of Llama (Touvron et al., 2023)
and of most open models since is chapter 10's GPT with four parts swapped:

* :class:`RMSNorm` instead of LayerNorm: scale by the root mean square, no mean to
  subtract and no bias (Zhang and Sennrich, 2019);
* :class:`SwiGLU` instead of the GELU feed-forward: a gated MLP (Shazeer, 2020);
* rotary embeddings (:class:`attnlib.positional.RotaryEmbedding`, Su et al., 2021)
  on the queries and keys instead of learned positions added to the input;
* grouped-query attention (``MultiHeadAttention(num_kv_heads=...)``, Ainslie et al.,
  2023): fewer key/value heads than query heads, so a smaller KV cache.

One block is ``x + attention(RMSNorm(x))``, then ``x + SwiGLU(RMSNorm(x))``
(:class:`LlamaBlock`); :class:`LlamaModel` stacks them between a token embedding and
a final RMSNorm and output head. No projection has a bias. The attention is attnlib's
:class:`~attnlib.attention.MultiHeadAttention`: the block uses its projections and
its :meth:`~attnlib.attention.MultiHeadAttention.attend`, and rotates the per-head
queries and keys in between. The tests check the logits against Hugging Face's
``LlamaForCausalLM`` with the same weights (float64, 1e-12, with the reference's RMSNorm
and rotary table, which it computes in float32, made to compute in float64).

Shape legend: ``B`` batch, ``T`` length, ``D`` model width, ``F`` feed-forward width,
``V`` vocabulary, ``H`` query heads, ``Hkv`` key/value heads, ``Dh`` head width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import boolean, optional_positive_int, positive_int, positive_number
from .attention import KVCache, MultiHeadAttention
from .gpt import CausalLM
from .positional import ROPE_LAYOUTS, RotaryEmbedding

__all__ = ["RMSNorm", "SwiGLU", "LlamaConfig", "LlamaBlock", "LlamaModel"]


class RMSNorm(nn.Module):
    """Root mean square normalisation (Zhang and Sennrich, 2019): ``w * x / rms(x)``.

    LayerNorm centres each vector, divides by its standard deviation, and adds a
    bias. RMSNorm only divides by the root mean square ``sqrt(mean(x^2) + eps)`` and
    scales by a learned ``w``: cheaper, and as good in practice.

    Args:
        dim: the width ``D`` of the normalised (last) dimension.
        eps: added to the mean square.
        device, dtype: of the weight.

    Shapes:
        input ``(..., D)``; output ``(..., D)``.

    Chapter 15. Equal to :class:`torch.nn.RMSNorm` with the same ``eps`` (tested).
    """

    def __init__(
        self, dim: int, eps: float = 1e-6, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> None:
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.eps = positive_number("eps", eps)
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        """Return ``weight * x / sqrt(mean(x^2) + eps)`` over the last dimension."""
        if not isinstance(x, Tensor) or x.dim() == 0 or x.size(-1) != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (..., {self.dim}) (got {got})")
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return self.weight * (x * inv_rms)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class SwiGLU(nn.Module):
    """The gated feed-forward network of Llama: ``down(silu(gate(x)) * up(x))``.

    Shazeer (2020), "GLU variants improve transformer": one projection, passed through
    SiLU (``x * sigmoid(x)``, "Swish"), gates another elementwise; a third maps back
    to the model width. Three matrices instead of two, so models pick ``F`` about
    ``8/3 D`` instead of ``4 D`` to keep the parameter count. No biases.

    Args:
        embed_dim: model width ``D``.
        hidden_dim: hidden width ``F``.
        device, dtype: of the weights.

    Shapes:
        input ``(..., D)``; output ``(..., D)``.

    Chapter 15.
    """

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        positive_int("embed_dim", embed_dim)
        positive_int("hidden_dim", hidden_dim)
        factory = {"device": device, "dtype": dtype}
        self.gate_proj = nn.Linear(embed_dim, hidden_dim, bias=False, **factory)
        self.up_proj = nn.Linear(embed_dim, hidden_dim, bias=False, **factory)
        self.down_proj = nn.Linear(hidden_dim, embed_dim, bias=False, **factory)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``down_proj(silu(gate_proj(x)) * up_proj(x))``."""
        hidden = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (..., F)
        return self.down_proj(hidden)  # (..., D)


@dataclass(frozen=True)
class LlamaConfig:
    """Every hyperparameter of :class:`LlamaModel`, checked on creation.

    Hugging Face's ``LlamaConfig`` names in brackets. The defaults are a small model
    for two CPU cores; SmolLM2-135M is ``vocab_size=49152, d_model=576, num_heads=9,
    num_kv_heads=3, num_layers=30, dim_feedforward=1536, rope_base=100000``.

    Attributes:
        vocab_size: number of tokens ``V``.
        d_model: model width ``D`` (``hidden_size``).
        num_heads: query heads ``H``; must divide ``d_model``, and ``Dh = D / H``
            must be even, for the rotary pairs (``num_attention_heads``).
        num_kv_heads: key/value heads ``Hkv``; must divide ``num_heads``; ``None``
            is ``num_heads`` (``num_key_value_heads``).
        num_layers: decoder blocks (``num_hidden_layers``).
        dim_feedforward: hidden width ``F`` of each SwiGLU (``intermediate_size``).
        rope_base: the rotary wavelength scale (``rope_theta``).
        rope_layout: which features rotate together, ``"halves"`` (Hugging Face's
            layout) or ``"interleaved"`` (llama.cpp's); see
            :class:`~attnlib.positional.RotaryEmbedding`.
        rms_eps: epsilon of every RMSNorm (``rms_norm_eps``).
        max_len: the longest sequence, prompt plus generated tokens; it sizes the
            KV caches (``max_position_embeddings``).
        tie_embeddings: the output head is the token embedding (``tie_word_embeddings``).
        feed_forward: ``False`` removes every block's SwiGLU (with its RMSNorm and
            residual branch): an attention-only model, as chapter 17 trains (not a
            Hugging Face setting).
    """

    vocab_size: int
    d_model: int = 128
    num_heads: int = 4
    num_kv_heads: Optional[int] = None
    num_layers: int = 2
    dim_feedforward: int = 344
    rope_base: float = 10000.0
    rope_layout: str = "halves"
    rms_eps: float = 1e-5
    max_len: int = 2048
    tie_embeddings: bool = True
    feed_forward: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "dim_feedforward", "max_len"):
            positive_int(f"LlamaConfig.{name}", getattr(self, name))
        optional_positive_int("LlamaConfig.num_kv_heads", self.num_kv_heads)
        if self.d_model % self.num_heads != 0 or (self.d_model // self.num_heads) % 2 != 0:
            raise ValueError(
                "LlamaConfig.d_model must be num_heads times an even head width "
                f"(got d_model={self.d_model} and num_heads={self.num_heads})"
            )
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads != 0:
            raise ValueError(
                "LlamaConfig.num_kv_heads must divide num_heads "
                f"(got num_heads={self.num_heads} and num_kv_heads={self.num_kv_heads})"
            )
        positive_number("LlamaConfig.rope_base", self.rope_base)
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"LlamaConfig.rope_layout must be one of {ROPE_LAYOUTS} (got {self.rope_layout!r})")
        positive_number("LlamaConfig.rms_eps", self.rms_eps)
        boolean("LlamaConfig.tie_embeddings", self.tie_embeddings)
        boolean("LlamaConfig.feed_forward", self.feed_forward)

    @property
    def head_dim(self) -> int:
        """The width ``Dh = D / H`` of each head."""
        return self.d_model // self.num_heads


class LlamaBlock(nn.Module):
    """One pre-norm decoder block: ``x + attention(RMSNorm(x))``, ``x + SwiGLU(RMSNorm(x))``.

    With ``config.feed_forward=False`` the second step is left out (``feed_forward`` and
    ``norm2`` are ``None``): an attention-only block.

    The attention is a :class:`~attnlib.attention.MultiHeadAttention` without biases and
    with ``config.num_kv_heads`` key/value heads (``self.self_attn``). Between its
    projections and :meth:`~attnlib.attention.MultiHeadAttention.attend`, the per-head
    queries and keys are rotated by their positions (``self.rotary``), as in
    :class:`attnlib.positional.RotarySelfAttention`; the values are not.

    Args:
        config: the model's :class:`LlamaConfig`.

    Shapes:
        x: ``(B, T, D)``; positions: ``(T,)``; returns ``(B, T, D)``.

    Chapter 15.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(config.d_model, eps=config.rms_eps)
        self.self_attn = MultiHeadAttention(
            config.d_model, config.num_heads, bias=False, num_kv_heads=config.num_kv_heads
        )
        self.rotary = RotaryEmbedding(config.head_dim, base=config.rope_base, layout=config.rope_layout)
        self.norm2: Optional[RMSNorm] = None
        self.feed_forward: Optional[SwiGLU] = None
        if config.feed_forward:
            self.norm2 = RMSNorm(config.d_model, eps=config.rms_eps)
            self.feed_forward = SwiGLU(config.d_model, config.dim_feedforward)

    def forward(self, x: Tensor, positions: Tensor, kv_cache: Optional[KVCache] = None) -> Tensor:
        """Run the block causally on ``x``, whose steps sit at ``positions``.

        Args:
            x: the residual stream.
            positions: the position of each step (``len(kv_cache)`` onwards when caching).
            kv_cache: this block's cache, extended by the call (chapter 10).

        Returns:
            The residual stream after the block.
        """
        attn = self.self_attn
        h = self.norm1(x)  # (B, T, D)
        q = self.rotary(attn._split_heads(attn.q_proj(h)), positions)  # (B, H, T, Dh), rotated
        k = self.rotary(attn._split_heads(attn.k_proj(h), attn.num_kv_heads), positions)  # (B, Hkv, T, Dh), rotated
        v = attn._split_heads(attn.v_proj(h), attn.num_kv_heads)  # (B, Hkv, T, Dh), not rotated
        out, _ = attn.attend(q, k, v, is_causal=True, kv_cache=kv_cache)  # (B, T, D)
        x = x + out
        if self.feed_forward is None or self.norm2 is None:
            return x
        return x + self.feed_forward(self.norm2(x))


class LlamaModel(CausalLM):
    """A Llama-style decoder-only language model (Touvron et al., 2023).

    ``tokens -> token embedding -> num_layers LlamaBlocks -> RMSNorm -> logits``. No
    position is added to the input: the blocks rotate queries and keys instead. With
    ``config.tie_embeddings`` the output head is the token embedding (one ``(V, D)``
    matrix, as in chapter 10's GPT). Logit ``t`` depends on tokens ``0..t`` only.

    Args:
        config: a :class:`LlamaConfig`.

    Generation, key-value caches and input checks come from :class:`~attnlib.gpt.CausalLM`,
    as for GPT.

    Chapter 15. :func:`attnlib.smollm.load_smollm` fills one with SmolLM2's weights.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a LlamaConfig (got {type(config).__name__})")
        self.config = config
        self.vocab_size = config.vocab_size
        self.max_len = config.max_len
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.d_model, eps=config.rms_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.token_embedding.weight  # tied: one (V, D) matrix
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``N(0, 0.02)`` for every matrix and unit RMSNorm weights, as Hugging Face's Llama."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def _num_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, tokens: Tensor, kv_cache: Optional[List[KVCache]] = None) -> Tensor:
        """Next-token logits at every position.

        Args:
            tokens: token ids. With ``kv_cache`` they are the *new* tokens, which
                follow the ``len(kv_cache[0])`` tokens already cached.
            kv_cache: ``None``, or :meth:`~attnlib.gpt.CausalLM.new_cache`'s list, which every call extends.

        Shapes:
            tokens: ``(B, T)``; returns ``(B, T, V)``.

        Returns:
            Logits; position ``t`` predicts the token after ``t`` from tokens ``0..t``.
        """
        past = self._past_length(tokens, kv_cache)
        positions = torch.arange(past, past + tokens.size(1), device=tokens.device)  # (T,)
        x = self.token_embedding(tokens)  # (B, T, D)
        for i, block in enumerate(self.blocks):
            x = block(x, positions, None if kv_cache is None else kv_cache[i])
        return self.head(self.norm(x))  # (B, T, V)
