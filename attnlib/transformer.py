"""The encoder-decoder transformer of Vaswani et al. (2017), built from attnlib's parts.

Chapter 08, "The transformer", assembles it; the ablation experiments (claim C12)
switch its residual connections, layer norms and feed-forward sublayers off. The module reads top to bottom:
config, feed-forward network, encoder layer, decoder layer, the two stacks, the model.

Every attention here is :class:`attnlib.attention.MultiHeadAttention` and every
position signal comes from :mod:`attnlib.positional`. The layers compute exactly
what :class:`torch.nn.TransformerEncoderLayer`, :class:`torch.nn.TransformerDecoderLayer`
and :class:`torch.nn.Transformer` compute (``batch_first=True``); the tests check this
in float64 with weights copied across.

Shape legend: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` model
width (``d_model``), ``H`` heads, ``V`` vocabulary size.

Masks follow attnlib everywhere (the convention of
:func:`torch.nn.functional.scaled_dot_product_attention`): a boolean ``*_mask`` is
``True`` where a query *may attend*, a float mask is added to the scores; a
``*_key_padding_mask`` is ``True`` at padding keys. PyTorch's transformer modules use
the opposite boolean ``attn_mask`` (``True`` = *not* allowed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import boolean, fraction, is_int, positive_int, positive_number
from .attention import KVCache, MultiHeadAttention
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

__all__ = [
    "TransformerConfig",
    "FeedForward",
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "AttentionMaps",
    "Transformer",
]

ACTIVATIONS = ("relu", "gelu")
POSITIONAL_KINDS = ("sinusoidal", "learned", "none")


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerConfig:
    """Every hyperparameter of :class:`Transformer` and its layers, checked on creation.

    The defaults are a small model that trains on two CPU cores. The base model of
    Vaswani et al. (2017, table 3) is ``d_model=512, num_heads=8,
    num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048, dropout=0.1``.

    Attributes:
        src_vocab_size: number of source tokens ``V_src``.
        tgt_vocab_size: number of target tokens ``V`` (the width of the logits).
        d_model: model width ``D``.
        num_heads: attention heads ``H``; must divide ``d_model``.
        num_encoder_layers: encoder layers in the stack.
        num_decoder_layers: decoder layers in the stack.
        dim_feedforward: hidden width of the position-wise feed-forward network.
        dropout: dropout after embeddings + positions, on attention weights, inside
            the feed-forward network and on every sublayer's output (as in PyTorch).
        activation: ``"relu"`` (the paper) or ``"gelu"`` (BERT, GPT).
        norm_first: ``False`` = post-norm, ``x = norm(x + f(x))`` (the paper);
            ``True`` = pre-norm, ``x = x + f(norm(x))`` (GPT-2 and most recent models).
        layer_norm_eps: the epsilon of every ``LayerNorm``.
        final_norm: a ``LayerNorm`` after each stack, as :class:`torch.nn.Transformer`
            adds to both (needed by pre-norm, whose stack output is never normalised).
        positional: ``"sinusoidal"`` (the paper), ``"learned"`` (one trained vector
            per position, separate tables for source and target) or ``"none"``.
        max_len: longest source or target sequence (for the position tables).
        pad_id: the padding token of both vocabularies: its embedding is zero and
            target positions holding it are masked as keys. ``None``: no padding.
        tie_output_embedding: share the output head's weight with the target
            embedding (Vaswani et al., section 3.4; Press and Wolf, 2017).
        residual: ``False`` removes every residual connection (``x = f(x)``).
            For the ablation experiments only.
        layer_norm: ``False`` replaces every ``LayerNorm``, the final ones included,
            by the identity. For the ablation experiments only.
        feed_forward: ``False`` removes every feed-forward sublayer (with its residual
            connection and its ``LayerNorm``): the layers are attention only. For the
            ablation experiments only.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dim_feedforward: int = 256
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False
    layer_norm_eps: float = 1e-5
    final_norm: bool = True
    positional: str = "sinusoidal"
    max_len: int = 256
    pad_id: Optional[int] = 0
    tie_output_embedding: bool = False
    residual: bool = True
    layer_norm: bool = True
    feed_forward: bool = True

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "num_heads", "num_encoder_layers",
                     "num_decoder_layers", "dim_feedforward", "max_len"):
            positive_int(f"TransformerConfig.{name}", getattr(self, name))
        for name in ("norm_first", "final_norm", "tie_output_embedding", "residual", "layer_norm", "feed_forward"):
            boolean(f"TransformerConfig.{name}", getattr(self, name))
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                "TransformerConfig.d_model must be divisible by num_heads "
                f"(got d_model={self.d_model} and num_heads={self.num_heads})"
            )
        fraction("TransformerConfig.dropout", self.dropout)
        positive_number("TransformerConfig.layer_norm_eps", self.layer_norm_eps)
        for name, allowed in (("activation", ACTIVATIONS), ("positional", POSITIONAL_KINDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"TransformerConfig.{name} must be one of {allowed} (got {value!r})")
        if self.positional == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(
                f"TransformerConfig.d_model must be even for sinusoidal positions, which pair sines "
                f"with cosines (got {self.d_model})"
            )
        if self.pad_id is not None:
            smallest = min(self.src_vocab_size, self.tgt_vocab_size)
            if not is_int(self.pad_id) or not 0 <= self.pad_id < smallest:
                raise ValueError(
                    f"TransformerConfig.pad_id must be None or an int in [0, {smallest}), a token of both "
                    f"vocabularies (got {self.pad_id!r})"
                )


def _layer_norm(config: TransformerConfig) -> nn.Module:
    """A ``LayerNorm`` of width ``D``, or the identity when ``config.layer_norm`` is off."""
    if not config.layer_norm:
        return nn.Identity()
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


# --- feed-forward network --------------------------------------------------------------


class FeedForward(nn.Module):
    """The position-wise feed-forward network, ``linear2(dropout(act(linear1(x))))``.

    The same two-layer MLP is applied to every position separately (Vaswani et al.,
    2017, section 3.3, eq. 2). Parameter names are PyTorch's, so weights copy from
    :class:`torch.nn.TransformerEncoderLayer`'s ``linear1`` and ``linear2``.

    Args:
        d_model: input and output width ``D``.
        dim_feedforward: hidden width (``4 D`` in the paper).
        dropout: dropout after the activation.
        activation: ``"relu"`` or ``"gelu"`` (exact, not the tanh approximation).

    Shapes:
        input ``(..., D)``; output ``(..., D)``.

    Chapter 08.
    """

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS} (got {activation!r})")
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """Return ``linear2(dropout(act(linear1(x))))``."""
        h = self.linear1(x)
        h = F.relu(h) if self.activation == "relu" else F.gelu(h)
        return self.linear2(self.dropout(h))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


# --- layers ------------------------------------------------------------------------


class _Sublayers(nn.Module):
    """What encoder and decoder layers share: how a sublayer's output joins the stream.

    Post-norm (the paper): ``x = norm(x + dropout(f(x)))``.
    Pre-norm: ``x = x + dropout(f(norm(x)))``.
    Without residuals (ablation) the ``x +`` is dropped; without layer norm (ablation)
    ``norm`` is the identity.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig (got {type(config).__name__})")
        self.norm_first = config.norm_first
        self.residual = config.residual

    def _sublayer_input(self, x: Tensor, norm: nn.Module) -> Tensor:
        """What the sublayer reads: ``norm(x)`` in pre-norm, ``x`` in post-norm."""
        return norm(x) if self.norm_first else x

    def _add_and_norm(self, x: Tensor, update: Tensor, norm: nn.Module) -> Tensor:
        """Add the (dropped-out) update to the stream, then normalise in post-norm."""
        x = x + update if self.residual else update
        return x if self.norm_first else norm(x)


class EncoderLayer(_Sublayers):
    """Self-attention then a feed-forward network, each with a residual and a LayerNorm.

    Vaswani et al. (2017), section 3.1. Computes what
    :class:`torch.nn.TransformerEncoderLayer` computes (``batch_first=True``), with
    the same parameter names (``self_attn``, ``norm1``, ``norm2``; its ``linear1`` and
    ``linear2`` live in ``feed_forward``). With ``is_causal=True`` it is a GPT block.

    Args:
        config: the model's :class:`TransformerConfig`.

    Chapter 08.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads, dropout=config.dropout)
        self.feed_forward: Optional[FeedForward] = (
            FeedForward(config.d_model, config.dim_feedforward, config.dropout, config.activation)
            if config.feed_forward else None
        )
        self.norm1 = _layer_norm(config)
        self.norm2 = _layer_norm(config) if config.feed_forward else nn.Identity()
        self.dropout1 = nn.Dropout(config.dropout)
        self.dropout2 = nn.Dropout(config.dropout)

    def forward(
        self,
        src: Tensor,
        src_mask: Optional[Tensor] = None,
        src_key_padding_mask: Optional[Tensor] = None,
        is_causal: bool = False,
        need_weights: bool = False,
        kv_cache: Optional[KVCache] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Run one encoder layer.

        Args:
            src: the input sequence.
            src_mask: attnlib convention (boolean ``True`` = may attend, float: added);
                ``(S, S)``, ``(B, S, S)`` or ``(B, H, S, S)``.
            src_key_padding_mask: ``True`` at padding positions.
            is_causal: let position ``i`` attend to ``0..i`` only.
            need_weights: also return the self-attention weights (readable path).
            kv_cache: generation with a key-value cache (chapter 10): ``src`` holds only
                the new positions, and self-attention also reads the cached earlier
                ones (see :class:`attnlib.attention.KVCache`).

        Shapes:
            src: ``(B, S, D)``; src_key_padding_mask: ``(B, S)``; returns ``(B, S, D)``
            and weights ``(B, H, S, S)`` (one map per head) or ``None``.

        Returns:
            ``(out, self_attn_weights)``.
        """
        h = self._sublayer_input(src, self.norm1)
        h, weights = self.self_attn(
            h, h, h, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
            need_weights=need_weights, average_attn_weights=False, is_causal=is_causal, kv_cache=kv_cache,
        )
        x = self._add_and_norm(src, self.dropout1(h), self.norm1)
        if self.feed_forward is not None:
            h = self.feed_forward(self._sublayer_input(x, self.norm2))
            x = self._add_and_norm(x, self.dropout2(h), self.norm2)
        return x, weights


class DecoderLayer(_Sublayers):
    """Masked self-attention, cross-attention over the encoder output, then an FFN.

    Vaswani et al. (2017), section 3.1. Computes what
    :class:`torch.nn.TransformerDecoderLayer` computes (``batch_first=True``), with the
    same parameter names (``self_attn``, ``multihead_attn`` for cross-attention,
    ``norm1`` to ``norm3``; ``linear1`` and ``linear2`` live in ``feed_forward``).

    Args:
        config: the model's :class:`TransformerConfig`.

    Chapter 08.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads, dropout=config.dropout)
        self.multihead_attn = MultiHeadAttention(config.d_model, config.num_heads, dropout=config.dropout)
        self.feed_forward: Optional[FeedForward] = (
            FeedForward(config.d_model, config.dim_feedforward, config.dropout, config.activation)
            if config.feed_forward else None
        )
        self.norm1 = _layer_norm(config)
        self.norm2 = _layer_norm(config)
        self.norm3 = _layer_norm(config) if config.feed_forward else nn.Identity()
        self.dropout1 = nn.Dropout(config.dropout)
        self.dropout2 = nn.Dropout(config.dropout)
        self.dropout3 = nn.Dropout(config.dropout)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Optional[Tensor] = None,
        memory_mask: Optional[Tensor] = None,
        tgt_key_padding_mask: Optional[Tensor] = None,
        memory_key_padding_mask: Optional[Tensor] = None,
        tgt_is_causal: bool = False,
        need_weights: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Run one decoder layer.

        Args:
            tgt: the decoder's input sequence.
            memory: the encoder's output, which cross-attention reads.
            tgt_mask: self-attention mask, attnlib convention (``True`` = may attend).
            memory_mask: cross-attention mask, attnlib convention; ``(T, S)`` or wider.
            tgt_key_padding_mask: ``True`` at padding target positions.
            memory_key_padding_mask: ``True`` at padding source positions.
            tgt_is_causal: let target position ``i`` attend to ``0..i`` only (what a
                decoder that is trained with teacher forcing needs).
            need_weights: also return both attention maps (readable path).

        Shapes:
            tgt: ``(B, T, D)``; memory: ``(B, S, D)``; returns ``(B, T, D)``, self-attention
            weights ``(B, H, T, T)`` and cross-attention weights ``(B, H, T, S)`` (or
            ``None``).

        Returns:
            ``(out, self_attn_weights, cross_attn_weights)``.
        """
        h = self._sublayer_input(tgt, self.norm1)
        h, self_weights = self.self_attn(
            h, h, h, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
            need_weights=need_weights, average_attn_weights=False, is_causal=tgt_is_causal,
        )
        x = self._add_and_norm(tgt, self.dropout1(h), self.norm1)
        h = self._sublayer_input(x, self.norm2)
        h, cross_weights = self.multihead_attn(  # queries from the target, keys and values from the source
            h, memory, memory, attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask,
            need_weights=need_weights, average_attn_weights=False,
        )
        x = self._add_and_norm(x, self.dropout2(h), self.norm2)
        if self.feed_forward is not None:
            h = self.feed_forward(self._sublayer_input(x, self.norm3))
            x = self._add_and_norm(x, self.dropout3(h), self.norm3)
        return x, self_weights, cross_weights


# --- stacks ------------------------------------------------------------------------


class Encoder(nn.Module):
    """``num_encoder_layers`` encoder layers and an optional final LayerNorm.

    Equals :class:`torch.nn.TransformerEncoder` given ``norm=LayerNorm(D)`` when
    ``config.final_norm`` is on (as inside :class:`torch.nn.Transformer`), ``norm=None``
    otherwise. The final norm is called ``norm``, as in PyTorch.

    Args:
        config: the model's :class:`TransformerConfig`.

    Chapter 08.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig (got {type(config).__name__})")
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.norm = _layer_norm(config) if config.final_norm else nn.Identity()

    def forward(
        self,
        src: Tensor,
        src_mask: Optional[Tensor] = None,
        src_key_padding_mask: Optional[Tensor] = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> Tuple[Tensor, Optional[List[Tensor]]]:
        """Run every layer, then the final norm.

        Args:
            src, src_mask, src_key_padding_mask, is_causal: as in :meth:`EncoderLayer.forward`.
            need_weights: also return each layer's self-attention weights.

        Shapes:
            src: ``(B, S, D)``; returns ``(B, S, D)`` and a list of ``(B, H, S, S)``.

        Returns:
            ``(out, self_attn_weights)``; the list has one entry per layer, or is
            ``None`` unless ``need_weights``.
        """
        x, maps = src, []
        for layer in self.layers:
            x, weights = layer(x, src_mask, src_key_padding_mask, is_causal, need_weights)
            maps.append(weights)
        return self.norm(x), _collect(maps, need_weights)


class Decoder(nn.Module):
    """``num_decoder_layers`` decoder layers and an optional final LayerNorm.

    Equals :class:`torch.nn.TransformerDecoder` given ``norm=LayerNorm(D)`` when
    ``config.final_norm`` is on (as inside :class:`torch.nn.Transformer`), ``norm=None``
    otherwise. Like PyTorch's, it is causal only when asked (``tgt_is_causal=True``);
    :class:`Transformer` always asks.

    Args:
        config: the model's :class:`TransformerConfig`.

    Chapter 08.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig (got {type(config).__name__})")
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_decoder_layers))
        self.norm = _layer_norm(config) if config.final_norm else nn.Identity()

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Optional[Tensor] = None,
        memory_mask: Optional[Tensor] = None,
        tgt_key_padding_mask: Optional[Tensor] = None,
        memory_key_padding_mask: Optional[Tensor] = None,
        tgt_is_causal: bool = False,
        need_weights: bool = False,
    ) -> Tuple[Tensor, Optional[List[Tensor]], Optional[List[Tensor]]]:
        """Run every layer, then the final norm.

        Args:
            tgt: the decoder's input sequence.
            memory: the encoder's output.
            tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal:
                as in :meth:`DecoderLayer.forward`.
            need_weights: also return each layer's attention weights.

        Shapes:
            tgt: ``(B, T, D)``; memory: ``(B, S, D)``; returns ``(B, T, D)``, a list of
            ``(B, H, T, T)`` and a list of ``(B, H, T, S)``.

        Returns:
            ``(out, self_attn_weights, cross_attn_weights)``; each list has one entry
            per layer, or is ``None`` unless ``need_weights``.
        """
        x, self_maps, cross_maps = tgt, [], []
        for layer in self.layers:
            x, self_weights, cross_weights = layer(
                x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                tgt_is_causal, need_weights,
            )
            self_maps.append(self_weights)
            cross_maps.append(cross_weights)
        return self.norm(x), _collect(self_maps, need_weights), _collect(cross_maps, need_weights)


def _collect(maps: List[Optional[Tensor]], need_weights: bool) -> Optional[List[Tensor]]:
    """The per-layer weights as a list of tensors, or ``None`` when none were asked for."""
    if not need_weights:
        return None
    return [m for m in maps if m is not None]


# --- the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionMaps:
    """Every attention map of one :class:`Transformer` pass, for plotting.

    Each list holds one tensor per layer, first layer first, with one map per head
    (average over dimension 1 for the mean map). Row ``i`` of a map is the weights
    query ``i`` gives to each key; a masked key has weight 0.

    Attributes:
        logits: the model's output, ``(B, T, V)``.
        encoder_self: encoder self-attention, ``(B, H, S, S)`` per layer.
        decoder_self: decoder masked self-attention, ``(B, H, T, T)`` per layer.
        decoder_cross: decoder cross-attention (target queries, source keys),
            ``(B, H, T, S)`` per layer: the transformer's alignment maps.
    """

    logits: Tensor
    encoder_self: List[Tensor]
    decoder_self: List[Tensor]
    decoder_cross: List[Tensor]


def _check_token_ids(name: str, tokens: Tensor, vocab_size: int) -> None:
    """Raise a clear error unless ``tokens`` is a ``(B, length >= 1)`` integer tensor of ids in ``[0, vocab_size)``."""
    if not isinstance(tokens, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids (got {type(tokens).__name__})")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids (got dtype {tokens.dtype})")
    if tokens.dim() != 2 or tokens.size(1) == 0:
        raise ValueError(f"{name} must have shape (B, length) with length >= 1 (got shape {tuple(tokens.shape)})")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must hold token ids in [0, {vocab_size}) (got ids from {low} to {high})")


class Transformer(nn.Module):
    """The encoder-decoder transformer for sequence-to-sequence tasks.

    Vaswani et al. (2017), "Attention is all you need", figure 1: token embeddings
    scaled by ``sqrt(D)`` (section 3.4) plus positions (section 3.5), an encoder stack
    over the source, a decoder stack over the shifted target that cross-attends to the
    encoder's output, and a linear head to target-vocabulary logits.

    It follows the protocol of attnlib's recurrent sequence-to-sequence models:
    ``forward(src, tgt_in, src_key_padding_mask)`` for teacher-forced training,
    ``encode`` once and ``decode`` step by step for generation.

    * Source padding is masked when ``src_key_padding_mask`` is passed (``True`` at
      padding; ``src == config.pad_id`` gives it), in encoder self-attention and in
      cross-attention.
    * Target padding (``tgt_in == config.pad_id``) is masked inside, as are later
      target positions (the decoder is causal): logit ``t`` depends on ``tgt_in[:, :t+1]``
      and the source only.

    Initialisation: every matrix of the two stacks is Xavier-uniform (as in
    :class:`torch.nn.Transformer`); embeddings are normal with standard deviation
    ``D ** -0.5``, so that the scaled embeddings have unit scale like the sinusoids,
    and the padding row is zero.

    Args:
        config: the :class:`TransformerConfig`.

    Chapter 08.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig (got {type(config).__name__})")
        self.config = config
        D = config.d_model
        self.embed_scale = math.sqrt(D)
        self.src_embedding = nn.Embedding(config.src_vocab_size, D, padding_idx=config.pad_id)
        self.tgt_embedding = nn.Embedding(config.tgt_vocab_size, D, padding_idx=config.pad_id)
        self.src_positions = self._make_positions(config)
        self.tgt_positions = self._make_positions(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.head = nn.Linear(D, config.tgt_vocab_size)
        if config.tie_output_embedding:
            self.head.weight = self.tgt_embedding.weight  # one (V, D) matrix
        self.reset_parameters()

    @staticmethod
    def _make_positions(config: TransformerConfig) -> nn.Module:
        """The position module; it adds positions to ``(B, L, D)`` and applies dropout."""
        if config.positional == "sinusoidal":
            return SinusoidalPositionalEncoding(config.d_model, config.max_len, dropout=config.dropout)
        if config.positional == "learned":
            return LearnedPositionalEmbedding(config.max_len, config.d_model, dropout=config.dropout)
        return nn.Dropout(config.dropout)  # "none": attention alone cannot tell positions apart

    def reset_parameters(self) -> None:
        """Xavier-uniform stacks, ``N(0, 1/D)`` embeddings with a zero padding row."""
        for p in list(self.encoder.parameters()) + list(self.decoder.parameters()):
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.head.reset_parameters()
        with torch.no_grad():
            for embedding in (self.src_embedding, self.tgt_embedding):  # after the head: it may be tied
                nn.init.normal_(embedding.weight, std=self.config.d_model ** -0.5)
                if self.config.pad_id is not None:
                    embedding.weight[self.config.pad_id].zero_()

    # -- input checks --

    def _check_tokens(self, name: str, tokens: Tensor, vocab_size: int) -> None:
        _check_token_ids(name, tokens, vocab_size)
        if self.config.positional != "none" and tokens.size(1) > self.config.max_len:
            raise ValueError(f"{name} length must be at most max_len={self.config.max_len} (got {tokens.size(1)})")

    @staticmethod
    def _check_padding_mask(mask: Optional[Tensor], batch_size: int, source_len: int) -> None:
        if mask is None:
            return
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise TypeError(f"src_key_padding_mask must be a boolean tensor, True at padding (got {got})")
        if mask.shape != (batch_size, source_len):
            raise ValueError(
                f"src_key_padding_mask must have shape (B, S) = {(batch_size, source_len)} (got {tuple(mask.shape)})"
            )

    # -- the three steps: encode, decode, both --

    def _encode(
        self, src: Tensor, src_key_padding_mask: Optional[Tensor], need_weights: bool
    ) -> Tuple[Tensor, Optional[List[Tensor]]]:
        self._check_tokens("src", src, self.config.src_vocab_size)
        self._check_padding_mask(src_key_padding_mask, src.size(0), src.size(1))
        x = self.src_positions(self.src_embedding(src) * self.embed_scale)  # (B, S, D)
        return self.encoder(x, src_key_padding_mask=src_key_padding_mask, need_weights=need_weights)

    def _decode(
        self, tgt_in: Tensor, memory: Tensor, src_key_padding_mask: Optional[Tensor], need_weights: bool
    ) -> Tuple[Tensor, Optional[List[Tensor]], Optional[List[Tensor]]]:
        self._check_tokens("tgt_in", tgt_in, self.config.tgt_vocab_size)
        if not isinstance(memory, Tensor):
            raise TypeError(f"memory must be a torch.Tensor, the output of encode (got {type(memory).__name__})")
        if memory.dim() != 3 or memory.size(0) != tgt_in.size(0) or memory.size(2) != self.config.d_model:
            raise ValueError(
                f"memory must be the encoder output of shape (B, S, D) = ({tgt_in.size(0)}, S, {self.config.d_model}) "
                f"(got {tuple(memory.shape)})"
            )
        self._check_padding_mask(src_key_padding_mask, memory.size(0), memory.size(1))
        pad_id = self.config.pad_id
        tgt_key_padding_mask = tgt_in.eq(pad_id) if pad_id is not None else None  # (B, T), True at padding
        y = self.tgt_positions(self.tgt_embedding(tgt_in) * self.embed_scale)  # (B, T, D)
        out, self_maps, cross_maps = self.decoder(
            y, memory, tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=src_key_padding_mask,
            tgt_is_causal=True, need_weights=need_weights,
        )
        return self.head(out), self_maps, cross_maps  # logits (B, T, V)

    def encode(self, src: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Encode the source once.

        Args:
            src: source token ids.
            src_key_padding_mask: ``True`` at padding source positions.

        Shapes:
            src: ``(B, S)``; src_key_padding_mask: ``(B, S)``; returns ``(B, S, D)``.

        Returns:
            The memory that :meth:`decode` cross-attends to.
        """
        return self._encode(src, src_key_padding_mask, need_weights=False)[0]

    def decode(self, tgt_in: Tensor, memory: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Next-token logits for every prefix of ``tgt_in``, given the encoded source.

        Args:
            tgt_in: target token ids, starting with the start token (the target
                shifted right); ``config.pad_id`` marks padding.
            memory: the output of :meth:`encode`.
            src_key_padding_mask: the mask given to :meth:`encode`.

        Shapes:
            tgt_in: ``(B, T)``; memory: ``(B, S, D)``; returns ``(B, T, V)``.

        Returns:
            Logits; position ``t`` predicts token ``t + 1`` from ``tgt_in[:, :t+1]``.
        """
        return self._decode(tgt_in, memory, src_key_padding_mask, need_weights=False)[0]

    def forward(self, src: Tensor, tgt_in: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Teacher-forced logits: :meth:`encode` then :meth:`decode`.

        Args:
            src: source token ids.
            tgt_in: target token ids shifted right (start token first).
            src_key_padding_mask: ``True`` at padding source positions.

        Shapes:
            src: ``(B, S)``; tgt_in: ``(B, T)``; returns ``(B, T, V)``.

        Returns:
            The logits over the target vocabulary.
        """
        memory = self.encode(src, src_key_padding_mask)
        if isinstance(tgt_in, Tensor) and tgt_in.dim() == 2 and tgt_in.size(0) != src.size(0):
            raise ValueError(f"src and tgt_in must have the same batch size (got {src.size(0)} and {tgt_in.size(0)})")
        return self.decode(tgt_in, memory, src_key_padding_mask)

    def attention_maps(
        self, src: Tensor, tgt_in: Tensor, src_key_padding_mask: Optional[Tensor] = None
    ) -> AttentionMaps:
        """Run :meth:`forward` on the readable path and return every attention map.

        Args:
            src, tgt_in, src_key_padding_mask: as in :meth:`forward`.

        Returns:
            An :class:`AttentionMaps` with the logits and, per layer, the encoder
            self-attention, decoder self-attention and cross-attention weights.
        """
        memory, encoder_self = self._encode(src, src_key_padding_mask, need_weights=True)
        logits, decoder_self, decoder_cross = self._decode(tgt_in, memory, src_key_padding_mask, need_weights=True)
        assert encoder_self is not None and decoder_self is not None and decoder_cross is not None
        return AttentionMaps(logits, encoder_self, decoder_self, decoder_cross)
