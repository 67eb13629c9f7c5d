"""A BERT-style encoder (Devlin et al., 2019), built from attnlib's transformer layers.

Chapter 11, "BERT, pretraining and fine-tuning", trains a small one with the
masked-language-model objective and fine-tunes it; chapter 13 loads the real,
pretrained all-MiniLM-L6-v2 checkpoint into the same :class:`BertEncoder`
(:mod:`attnlib.pretrained`). The module reads top to bottom: config, embeddings,
the encoder, the masked-language-model head, the classification head, masking.

BERT is the transformer's encoder stack alone (Vaswani et al., 2017): post-norm
layers with GELU, learned positions, a token-type ("segment") embedding, and a
LayerNorm on the embeddings. Every layer here is an
:class:`attnlib.transformer.EncoderLayer` (so every attention is
:class:`attnlib.attention.MultiHeadAttention`); nothing re-implements attention.
The names line up one to one with the Hugging Face ``BertModel`` checkpoint
(``embeddings.word_embeddings`` <-> ``embeddings.word_embeddings``,
``layer.N.attention.self.query`` <-> ``layers.N.self_attn.q_proj``, ...), which
:func:`attnlib.pretrained.hf_to_attnlib_names` spells out.

One difference with BERT while *training* only: attnlib's feed-forward network has
dropout after its activation, BERT's has none there. In eval mode they compute the
same function.

Shape legend: ``B`` batch, ``T`` sequence length, ``D`` model width, ``H`` heads,
``V`` vocabulary size, ``K`` number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import fraction, int_in_range, is_int, positive_int, positive_number
from .transformer import ACTIVATIONS, EncoderLayer, TransformerConfig

__all__ = [
    "BertConfig",
    "BertEmbeddings",
    "BertOutput",
    "BertEncoder",
    "BertMLMHead",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "mask_tokens",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100
"""The label of a position that is not predicted (``F.cross_entropy``'s ``ignore_index``)."""

POOLINGS = ("cls", "mean")


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    """Every hyperparameter of :class:`BertEncoder` and its heads, checked on creation.

    The defaults are a small model for two CPU cores. BERT-base (Devlin et al., 2019)
    is ``vocab_size=30522, d_model=768, num_heads=12, num_layers=12,
    dim_feedforward=3072``; all-MiniLM-L6-v2 (chapter 13) is ``d_model=384,
    num_heads=12, num_layers=6, dim_feedforward=1536``.

    Attributes:
        vocab_size: number of tokens ``V``.
        d_model: model width ``D``.
        num_heads: attention heads ``H``; must divide ``d_model``.
        num_layers: encoder layers.
        dim_feedforward: hidden width of each feed-forward network (``4 D`` in BERT).
        max_len: number of learned positions (longest input).
        type_vocab_size: number of token types (segments A and B: 2).
        dropout: dropout on the embeddings, the attention weights and every sublayer.
        layer_norm_eps: epsilon of every LayerNorm (BERT: ``1e-12``).
        activation: ``"gelu"`` (BERT, exact erf form) or ``"relu"``.
        pad_id: the padding token; its embedding starts at zero and gets no gradient.
    """

    vocab_size: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    dim_feedforward: int = 512
    max_len: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    pad_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "dim_feedforward", "max_len",
                     "type_vocab_size"):
            positive_int(f"BertConfig.{name}", getattr(self, name))
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                "BertConfig.d_model must be divisible by num_heads "
                f"(got d_model={self.d_model} and num_heads={self.num_heads})"
            )
        fraction("BertConfig.dropout", self.dropout)
        positive_number("BertConfig.layer_norm_eps", self.layer_norm_eps)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"BertConfig.activation must be one of {ACTIVATIONS} (got {self.activation!r})")
        int_in_range("BertConfig.pad_id", self.pad_id, 0, self.vocab_size)

    def transformer_config(self) -> TransformerConfig:
        """The :class:`~attnlib.transformer.TransformerConfig` of each encoder layer: post-norm, no final norm."""
        return TransformerConfig(
            src_vocab_size=self.vocab_size, tgt_vocab_size=self.vocab_size, d_model=self.d_model,
            num_heads=self.num_heads, num_encoder_layers=self.num_layers, num_decoder_layers=1,
            dim_feedforward=self.dim_feedforward, dropout=self.dropout, activation=self.activation,
            norm_first=False, layer_norm_eps=self.layer_norm_eps, final_norm=False, positional="learned",
            max_len=self.max_len, pad_id=self.pad_id,
        )


def _check_config(config: object) -> BertConfig:
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a BertConfig (got {type(config).__name__})")
    return config


def _check_ids(name: str, ids: object, upper: int, what: str, shape: Optional[Tuple[int, ...]] = None) -> Tensor:
    """Check a ``(B, T)`` integer tensor with values in ``[0, upper)``."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer ids (got {type(ids).__name__})")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype such as torch.long (got {ids.dtype})")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (B, T) (got {tuple(ids.shape)})")
    if shape is not None and tuple(ids.shape) != shape:
        raise ValueError(f"{name} must have the shape of tokens {shape} (got {tuple(ids.shape)})")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= upper):
        raise ValueError(
            f"{name} must hold {what} in [0, {upper}) (got values from {int(ids.min())} to {int(ids.max())})"
        )
    return ids


# --- embeddings ------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """Word + learned position + token-type embeddings, then LayerNorm and dropout.

    Devlin et al. (2019), section 3 and figure 2. Unlike the transformer of chapter
    08 the word embeddings are not scaled by ``sqrt(D)`` and the sum is normalised.
    The four parameter groups are named as in Hugging Face's ``BertEmbeddings``
    (``word_embeddings``, ``position_embeddings``, ``token_type_embeddings``,
    ``LayerNorm`` is ``norm`` here).

    Args:
        config: the model's :class:`BertConfig`.

    Shapes:
        tokens, token_type_ids: ``(B, T)`` with ``T <= max_len``; returns ``(B, T, D)``.

    Chapters 11 and 13.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config = _check_config(config)
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_id)
        self.position_embeddings = nn.Embedding(config.max_len, config.d_model)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: Tensor, token_type_ids: Optional[Tensor] = None) -> Tensor:
        """Embed ``tokens`` at positions ``0..T-1``.

        Args:
            tokens: token ids in ``[0, V)``.
            token_type_ids: segment ids in ``[0, type_vocab_size)``; ``None`` means all 0.

        Returns:
            ``dropout(norm(word + position + token_type))``, ``(B, T, D)``.
        """
        c = self.config
        _check_ids("tokens", tokens, c.vocab_size, "token ids")
        B, T = tokens.shape
        if T > c.max_len:
            raise ValueError(f"tokens must have at most max_len={c.max_len} positions (got T={T})")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(tokens)
        else:
            _check_ids("token_type_ids", token_type_ids, c.type_vocab_size, "token types", (B, T))
        positions = torch.arange(T, device=tokens.device)  # (T,), broadcast over B
        x = self.word_embeddings(tokens) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(x))


# --- the encoder ---------------------------------------------------------------------


@dataclass(frozen=True)
class BertOutput:
    """Everything one :meth:`BertEncoder.run` computes.

    Attributes:
        last_hidden_state: the last layer's output, ``(B, T, D)``.
        hidden_states: the embeddings' output and every layer's output,
            ``num_layers + 1`` tensors of ``(B, T, D)`` (Hugging Face's order).
        attentions: every layer's attention probabilities, ``(B, H, T, T)`` each,
            first layer first (empty unless asked for).
    """

    last_hidden_state: Tensor
    hidden_states: List[Tensor]
    attentions: List[Tensor]


class BertEncoder(nn.Module):
    """Embeddings and a stack of post-norm :class:`~attnlib.transformer.EncoderLayer`.

    Devlin et al. (2019): every position attends to every other (bidirectional
    attention, no causal mask), except to padding when ``key_padding_mask`` is given.
    There is no final LayerNorm: in post-norm each layer's output is already
    normalised. Initialisation is BERT's: normal weights with standard deviation
    0.02, zero biases, unit LayerNorms, a zero padding embedding.

    Args:
        config: the :class:`BertConfig`.

    Chapters 11 and 13.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config = _check_config(config)
        self.config = config
        self.embeddings = BertEmbeddings(config)
        layer_config = config.transformer_config()
        self.layers = nn.ModuleList(EncoderLayer(layer_config) for _ in range(config.num_layers))
        self.apply(_init_bert_weights)

    def run(
        self,
        tokens: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        need_weights: bool = False,
    ) -> BertOutput:
        """Encode ``tokens``, keeping every layer's hidden states (and maps if asked).

        Args:
            tokens: token ids in ``[0, V)``.
            key_padding_mask: boolean, ``True`` at padding (``tokens == config.pad_id``
                gives it); padding keys get attention weight 0. ``None``: no padding.
            token_type_ids: segment ids; ``None`` means all 0.
            need_weights: also return every layer's attention probabilities.

        Shapes:
            tokens, key_padding_mask, token_type_ids: ``(B, T)``.

        Returns:
            a :class:`BertOutput`.
        """
        x = self.embeddings(tokens, token_type_ids)  # (B, T, D)
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
                got = key_padding_mask.dtype if isinstance(key_padding_mask, Tensor) else type(key_padding_mask).__name__
                raise TypeError(f"key_padding_mask must be a torch.bool tensor, True at padding (got {got})")
            if key_padding_mask.shape != tokens.shape:
                raise ValueError(
                    f"key_padding_mask must have the shape of tokens {tuple(tokens.shape)} "
                    f"(got {tuple(key_padding_mask.shape)})"
                )
        hidden, maps = [x], []
        for layer in self.layers:
            x, weights = layer(x, src_key_padding_mask=key_padding_mask, need_weights=need_weights)
            hidden.append(x)
            if weights is not None:
                maps.append(weights)
        return BertOutput(last_hidden_state=x, hidden_states=hidden, attentions=maps)

    def forward(
        self,
        tokens: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        need_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, List[Tensor]]]:
        """Encode ``tokens``; see :meth:`run` for the arguments.

        Shapes:
            tokens: ``(B, T)``; returns ``(B, T, D)`` and, with ``need_weights``, a
            list of ``num_layers`` maps ``(B, H, T, T)``.

        Returns:
            the last hidden states, or ``(hidden, attention_maps)`` when ``need_weights``.
        """
        out = self.run(tokens, key_padding_mask, token_type_ids, need_weights)
        if need_weights:
            return out.last_hidden_state, out.attentions
        return out.last_hidden_state


@torch.no_grad()
def _init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation (Devlin et al.'s released code): N(0, 0.02), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _encode(
    encoder: BertEncoder,
    tokens: Tensor,
    key_padding_mask: Optional[Tensor],
    token_type_ids: Optional[Tensor],
    need_weights: bool,
) -> Tuple[Tensor, List[Tensor]]:
    out = encoder.run(tokens, key_padding_mask, token_type_ids, need_weights)
    return out.last_hidden_state, out.attentions


# --- masked language model -------------------------------------------------------------


class BertMLMHead(nn.Module):
    """BERT's masked-language-model head: dense, GELU, LayerNorm, then a tied decoder.

    Devlin et al. (2019), section 3.1, task 1. ``decoder.weight`` *is* the word
    embedding matrix (one ``(V, D)`` tensor; Press and Wolf, 2017); ``decoder.bias``
    is the head's own per-token bias.

    Args:
        config: the model's :class:`BertConfig`.
        word_embeddings: the encoder's word embeddings, whose weight the decoder shares.

    Shapes:
        input ``(B, T, D)``; output logits ``(B, T, V)``.

    Chapter 11.
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        config = _check_config(config)
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = config.activation
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.d_model, config.vocab_size)
        self.apply(_init_bert_weights)
        self.decoder.weight = word_embeddings.weight  # tied: the same Parameter

    def forward(self, hidden: Tensor) -> Tensor:
        """Return ``decoder(norm(act(dense(hidden))))``."""
        h = self.dense(hidden)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.decoder(self.norm(h))


class BertForMaskedLM(nn.Module):
    """A :class:`BertEncoder` with the masked-language-model head (pretraining).

    Train it with ``F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
    ignore_index=IGNORE_INDEX)`` on the ``(inputs, labels)`` of :func:`mask_tokens`.

    Args:
        config: the :class:`BertConfig`.

    Chapter 11.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        config = _check_config(config)
        self.config = config
        self.encoder = BertEncoder(config)
        self.head = BertMLMHead(config, self.encoder.embeddings.word_embeddings)

    def forward(
        self,
        tokens: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        need_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, List[Tensor]]]:
        """Predict every position's token.

        Args:
            tokens, key_padding_mask, token_type_ids, need_weights: as in :meth:`BertEncoder.run`.

        Shapes:
            tokens: ``(B, T)``; returns logits ``(B, T, V)`` (and the ``(B, H, T, T)`` maps).

        Returns:
            the logits, or ``(logits, attention_maps)`` when ``need_weights``.
        """
        hidden, maps = _encode(self.encoder, tokens, key_padding_mask, token_type_ids, need_weights)
        logits = self.head(hidden)
        return (logits, maps) if need_weights else logits


# --- sequence classification -------------------------------------------------------------


class BertForSequenceClassification(nn.Module):
    """A :class:`BertEncoder` with a classification head on a pooled vector.

    Devlin et al. (2019), section 4: the final vector of the first token ([CLS]) goes
    through BERT's pooler (dense + tanh), dropout and a linear layer to ``K`` logits.
    ``pooling="mean"`` averages the non-padding positions instead (as sentence
    encoders do, chapter 13) before the same pooler.

    Fine-tuning starts from a pretrained encoder: :meth:`load_pretrained_encoder`
    copies a :class:`BertForMaskedLM`'s (or a :class:`BertEncoder`'s) weights in.

    Args:
        config: the :class:`BertConfig`.
        num_classes: number of classes ``K``.
        pooling: ``"cls"`` (the first token) or ``"mean"``.

    Chapter 11.
    """

    def __init__(self, config: BertConfig, num_classes: int, pooling: str = "cls") -> None:
        super().__init__()
        config = _check_config(config)
        positive_int("num_classes", num_classes)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} (got {pooling!r})")
        self.config = config
        self.num_classes = num_classes
        self.pooling = pooling
        self.encoder = BertEncoder(config)
        self.pooler = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_classes)
        self.pooler.apply(_init_bert_weights)
        self.classifier.apply(_init_bert_weights)

    def load_pretrained_encoder(self, source: Union[BertForMaskedLM, BertEncoder]) -> None:
        """Copy a pretrained encoder's weights into this model's encoder (in place).

        The head (pooler and classifier) keeps its fresh initialisation.

        Args:
            source: a :class:`BertForMaskedLM` or :class:`BertEncoder` with the same config.
        """
        if isinstance(source, BertForMaskedLM):
            source = source.encoder
        if not isinstance(source, BertEncoder):
            raise TypeError(f"source must be a BertForMaskedLM or BertEncoder (got {type(source).__name__})")
        if source.config != self.config:
            raise ValueError(f"source must have this model's config {self.config} (got {source.config})")
        self.encoder.load_state_dict(source.state_dict())

    def pool(self, hidden: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """The vector the head reads: the first position's, or the mean over non-padding.

        Shapes:
            hidden: ``(B, T, D)``; key_padding_mask: ``(B, T)``; returns ``(B, D)``.
        """
        if self.pooling == "cls":
            return hidden[:, 0]
        if key_padding_mask is None:
            return hidden.mean(dim=1)
        keep = (~key_padding_mask).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        tokens: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        need_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, List[Tensor]]]:
        """Classify each sequence.

        Args:
            tokens, key_padding_mask, token_type_ids, need_weights: as in :meth:`BertEncoder.run`.

        Shapes:
            tokens: ``(B, T)``; returns logits ``(B, K)`` (and the ``(B, H, T, T)`` maps).

        Returns:
            the logits, or ``(logits, attention_maps)`` when ``need_weights``.
        """
        hidden, maps = _encode(self.encoder, tokens, key_padding_mask, token_type_ids, need_weights)
        pooled = torch.tanh(self.pooler(self.pool(hidden, key_padding_mask)))  # (B, D)
        logits = self.classifier(self.dropout(pooled))
        return (logits, maps) if need_weights else logits


# --- masking for pretraining ---------------------------------------------------------------


def mask_tokens(
    tokens: Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    prob: float = 0.15,
    special_ids: Iterable[int] = (),
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor]:
    """BERT's masking for the masked-language-model objective: 80/10/10.

    Devlin et al. (2019), section 3.1 and appendix A.1: each position that is not a
    special token is chosen with probability ``prob``; a chosen position becomes
    ``mask_id`` with probability 0.8, a uniformly random token of ``[0, vocab_size)``
    with probability 0.1, and stays unchanged with probability 0.1. The model must
    predict the original token at every chosen position (and only there).

    Args:
        tokens: the clean token ids (any shape; usually ``(B, T)``).
        mask_id: the [MASK] token.
        vocab_size: ``V``; random replacements are drawn from ``[0, V)``.
        prob: probability that a position is chosen, in ``(0, 1)``.
        special_ids: tokens never chosen (padding, [CLS], [SEP]...).
        generator: the random generator (on ``tokens``' device), for reproducibility.

    Shapes:
        tokens: ``(B, T)``; returns two ``(B, T)`` tensors.

    Returns:
        ``(inputs, labels)``: the corrupted tokens, and the original tokens at chosen
        positions with ``IGNORE_INDEX`` (-100) everywhere else.
    """
    if not isinstance(tokens, Tensor):
        raise TypeError(f"tokens must be a torch.Tensor of integer ids (got {type(tokens).__name__})")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must have an integer dtype such as torch.long (got {tokens.dtype})")
    positive_int("vocab_size", vocab_size)
    int_in_range("mask_id", mask_id, 0, vocab_size, high_name="vocab_size")
    fraction("prob", prob, open_low=True)
    special = list(special_ids)
    for s in special:
        if not is_int(s):
            raise TypeError(f"special_ids must hold ints (got {s!r})")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"tokens must hold ids in [0, vocab_size={vocab_size}) "
            f"(got values from {int(tokens.min())} to {int(tokens.max())})"
        )

    def uniform() -> Tensor:
        return torch.rand(tokens.shape, generator=generator, device=tokens.device)

    candidate = torch.ones_like(tokens, dtype=torch.bool)
    if special:
        candidate &= ~torch.isin(tokens, torch.tensor(special, dtype=tokens.dtype, device=tokens.device))
    chosen = candidate & (uniform() < prob)
    u = uniform()  # one draw decides between [MASK] (< 0.8), random (< 0.9) and unchanged
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)
    random_tokens = torch.randint(0, vocab_size, tokens.shape, generator=generator, device=tokens.device,
                                  dtype=tokens.dtype)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_tokens, inputs)
    labels = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, labels
