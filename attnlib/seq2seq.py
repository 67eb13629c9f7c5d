"""Recurrent encoder-decoders, without and with attention.

Chapter 02, "The encoder-decoder and its bottleneck", builds :class:`GRUEncoder` and
:class:`PlainDecoder`: the decoder sees the source only through the encoder's final
state, one fixed-size vector (Cho et al., 2014; Sutskever et al., 2014). Chapter 03,
"Attention for sequence-to-sequence", replaces that vector by a fresh weighted average
of *all* encoder states at every output step: :class:`AttentionDecoder` with
:class:`AdditiveAttention` (Bahdanau et al., 2015) or :class:`DotProductAttention`
(Luong et al., 2015), and :class:`MeanPooling` (fixed equal weights) as a baseline.

The recurrent layers are PyTorch's fused ``nn.GRU``, for speed. ``attnlib.rnn.GRU``
(chapter 01) computes the same function step by step, and its tests check parity
with ``nn.GRU``; read it to see what a GRU does.

Every model here is a :class:`Seq2Seq` and follows the model protocol of
``attnlib.decoding.Seq2SeqModel``, which the transformer of chapter 08 follows too::

    logits = model(src, tgt_in, src_key_padding_mask)           # (B, T, V)
    memory = model.encode(src, src_key_padding_mask)
    logits = model.decode(tgt_in, memory, src_key_padding_mask)

Shape legend: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding
width, ``Hd`` decoder state width, ``Dm`` encoder state width (``2 * hidden_size``
for a bidirectional encoder), ``A`` attention width, ``V`` target vocabulary.
Masks: ``src_key_padding_mask`` is ``True`` at padding (PyTorch's meaning); padding
must sit at the end of each row.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ._checks import positive_int
from .data import PAD_ID
from .functional import safe_softmax

__all__ = [
    "EncoderOutput",
    "DecoderOutput",
    "GRUEncoder",
    "Seq2SeqAttention",
    "AdditiveAttention",
    "DotProductAttention",
    "MeanPooling",
    "PlainDecoder",
    "AttentionDecoder",
    "Seq2Seq",
    "gru_seq2seq",
    "lengths_from_mask",
]


class EncoderOutput(NamedTuple):
    """What the GRU encoder hands the decoder (the ``memory`` of the protocol)."""

    states: Tensor
    """One state per source position, ``(B, S, Dm)``; zeros at padding."""
    final: Tensor
    """The final state (the forward direction's last and the backward direction's
    first, concatenated), ``(B, Dm)``: the fixed-size summary of chapter 02."""


class DecoderOutput(NamedTuple):
    """What a decoder returns for a run of ``T`` steps."""

    logits: Tensor
    """Next-token scores, ``(B, T, V)``."""
    state: Tensor
    """The decoder state after the last step, ``(B, Hd)``; pass it back to continue
    decoding one token at a time."""
    weights: Optional[Tensor]
    """Attention weights over the source, ``(B, T, S)``, or ``None`` for a decoder
    without attention."""


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        positive_int(name, value)


def _check_tokens(name: str, tokens: Tensor) -> None:
    if not isinstance(tokens, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids (got {type(tokens).__name__})")
    if tokens.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids of dtype torch.long (got {tokens.dtype})")
    if tokens.dim() != 2:
        raise ValueError(f"{name} must have shape (B, length) (got shape {tuple(tokens.shape)})")


def lengths_from_mask(src_key_padding_mask: Tensor, shape: Tuple[int, int]) -> Tensor:
    """Sequence lengths from a key padding mask whose padding sits at the end of each row.

    Args:
        src_key_padding_mask: ``True`` at padding.
        shape: the source's ``(B, S)``, to check the mask against.

    Shapes:
        src_key_padding_mask: ``(B, S)``; returns ``(B,)``.

    Returns:
        The number of real tokens in each row (on the mask's device).
    """
    mask = src_key_padding_mask
    if not isinstance(mask, Tensor):
        raise TypeError(f"src_key_padding_mask must be a torch.Tensor or None (got {type(mask).__name__})")
    if mask.dtype != torch.bool:
        raise TypeError(f"src_key_padding_mask must be torch.bool (True = padding) (got {mask.dtype})")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"src_key_padding_mask must have the source's shape (B, S) = {tuple(shape)} (got {tuple(mask.shape)})")
    lengths = (~mask).sum(dim=1)
    if int(lengths.min()) < 1:
        raise ValueError("src_key_padding_mask marks every position of a row as padding; each source needs a token")
    positions = torch.arange(mask.size(1), device=mask.device)
    if not torch.equal(mask, positions[None, :] >= lengths[:, None]):
        raise ValueError("src_key_padding_mask must mark padding at the end of each row only (True after the last token)")
    return lengths


class GRUEncoder(nn.Module):
    """Embed the source and run a GRU over it (both directions by default).

    With a padding mask the GRU runs on packed sequences, so padding changes
    nothing: each row's states and final state are those of the unpadded row.

    Args:
        vocab_size: source vocabulary size.
        embed_dim: embedding width ``E``.
        hidden_size: GRU width per direction.
        bidirectional: read the source both ways (Bahdanau et al., 2015), so each
            state ``h_j`` summarises the whole source with a focus around ``j``.

    Attributes:
        out_dim: ``Dm``, the width of each encoder state.

    Chapter 02 (and 03).
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, bidirectional: bool = True) -> None:
        super().__init__()
        _check_positive(vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.gru = nn.GRU(embed_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.out_dim = hidden_size * (2 if bidirectional else 1)

    def forward(self, src: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> EncoderOutput:
        """Encode a batch of sources.

        Args:
            src: source token ids.
            src_key_padding_mask: ``True`` at padding (``None``: no padding).

        Shapes:
            src, src_key_padding_mask: ``(B, S)``; returns states ``(B, S, Dm)``
            and final ``(B, Dm)``.

        Returns:
            An :class:`EncoderOutput`.
        """
        _check_tokens("src", src)
        B, S = src.shape
        x = self.embedding(src)  # (B, S, E)
        if src_key_padding_mask is None:
            states, h_n = self.gru(x)  # (B, S, Dm), (directions, B, hidden)
        else:
            lengths = lengths_from_mask(src_key_padding_mask, (B, S))
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_states, h_n = self.gru(packed)
            states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=S)  # (B, S, Dm)
        final = h_n.transpose(0, 1).reshape(B, self.out_dim)  # (directions, B, hidden) -> (B, Dm)
        return EncoderOutput(states, final)


class Seq2SeqAttention(nn.Module):
    """Attention of a decoder state over the encoder states: score, mask, softmax, average.

    ``weights = softmax(score(query, keys))`` over the real (non-padding) keys, and
    ``context = weights @ values``. Subclasses define the score. The keys can be
    projected once per source with :meth:`project_keys` and passed back as
    ``projected_keys``, since a recurrent decoder asks one query at a time.

    Chapter 03.
    """

    def project_keys(self, keys: Tensor) -> Tensor:
        """The part of the score that depends only on the keys (computed once per source)."""
        return keys

    def scores(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        """Scores ``(B, T, S)`` of queries ``(B, T, Dq)`` against projected keys."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        projected_keys: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Attend from each query to the keys and average the values.

        Args:
            query: the decoder states that ask.
            keys: the encoder states compared with the queries.
            values: the vectors averaged (default: ``keys``).
            key_padding_mask: ``True`` at padding keys, which get weight 0.
            projected_keys: ``self.project_keys(keys)``, if already computed.

        Shapes:
            query: ``(B, T, Dq)``; keys: ``(B, S, Dk)``; values: ``(B, S, Dv)``;
            key_padding_mask: ``(B, S)``. Returns ``(B, T, Dv)`` and ``(B, T, S)``.

        Returns:
            ``(context, weights)``; each row of weights sums to one.
        """
        values = keys if values is None else values
        for name, t in (("query", query), ("keys", keys), ("values", values)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
            if t.dim() != 3:
                raise ValueError(f"{name} must have shape (B, length, width) (got shape {tuple(t.shape)})")
        if not (query.size(0) == keys.size(0) == values.size(0)) or keys.size(1) != values.size(1):
            raise ValueError(
                "query, keys and values must share the batch size, keys and values the length "
                f"(got shapes {tuple(query.shape)}, {tuple(keys.shape)}, {tuple(values.shape)})"
            )
        B, S = keys.shape[:2]
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        scores = self.scores(query, projected_keys)  # (B, T, S)
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (B, S):
                raise ValueError(
                    f"key_padding_mask must be a torch.bool tensor of shape (B, S) = {(B, S)}, True at padding "
                    f"(got {key_padding_mask.dtype} of shape {tuple(key_padding_mask.shape)})"
                )
            scores = scores.masked_fill(key_padding_mask[:, None, :], float("-inf"))
        weights = safe_softmax(scores, dim=-1)  # (B, T, S)
        return weights @ values, weights  # (B, T, Dv), (B, T, S)


class AdditiveAttention(Seq2SeqAttention):
    """Additive attention: ``score(s, h_j) = vᵀ tanh(W_q s + W_k h_j)``.

    A one-hidden-layer network scores each (decoder state, encoder state) pair.

    Args:
        query_dim: decoder state width ``Dq``.
        key_dim: encoder state width ``Dk``.
        attn_dim: hidden width ``A`` of the scoring network.

    Bahdanau, Cho and Bengio (2015), "Neural machine translation by jointly learning
    to align and translate", section 3.1 and appendix A. Chapter 03.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        _check_positive(query_dim=query_dim, key_dim=key_dim, attn_dim=attn_dim)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, attn_dim)
        self.score_proj = nn.Linear(attn_dim, 1, bias=False)  # the vector v

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (B, S, A)

    def scores(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        q = self.query_proj(query)  # (B, T, A)
        hidden = torch.tanh(q[:, :, None, :] + projected_keys[:, None, :, :])  # (B, T, S, A)
        return self.score_proj(hidden).squeeze(-1)  # (B, T, S, 1) -> (B, T, S)


class DotProductAttention(Seq2SeqAttention):
    """Multiplicative attention: ``score(s, h_j) = sᵀ W h_j`` (Luong's "general" score).

    One matrix product instead of a hidden layer; with ``W`` the identity it is the
    plain dot product that chapter 04 scales by ``1/sqrt(d_k)``. No scale here, as
    in Luong et al.

    Args:
        query_dim: decoder state width ``Dq``.
        key_dim: encoder state width ``Dk``.

    Luong, Pham and Manning (2015), "Effective approaches to attention-based neural
    machine translation", section 3.1. Chapter 03.
    """

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        _check_positive(query_dim=query_dim, key_dim=key_dim)
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False)  # W

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (B, S, Dq)

    def scores(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        return query @ projected_keys.transpose(1, 2)  # (B, T, Dq) @ (B, Dq, S) -> (B, T, S)


class MeanPooling(Seq2SeqAttention):
    """Fixed equal weights over the real source positions: a baseline, not attention.

    Every score is zero, so the softmax gives ``1 / length`` to every real key, for
    every query and every input. The context is the mean of the encoder states:
    all of them are still reachable, but the weights cannot depend on the input
    (claim C7 of the book). Chapter 03.
    """

    def scores(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        return query.new_zeros(query.size(0), query.size(1), projected_keys.size(1))  # (B, T, S)


def _check_decoder_inputs(tgt_in: Tensor, memory: EncoderOutput, state: Optional[Tensor], hidden_size: int) -> None:
    _check_tokens("tgt_in", tgt_in)
    if not isinstance(memory, EncoderOutput):
        raise TypeError(f"memory must be the EncoderOutput of the encoder (got {type(memory).__name__})")
    if memory.final.size(0) != tgt_in.size(0):
        raise ValueError(f"tgt_in and memory must have the same batch size (got {tgt_in.size(0)} and {memory.final.size(0)})")
    if state is not None and tuple(state.shape) != (tgt_in.size(0), hidden_size):
        raise ValueError(f"state must have shape (B, Hd) = {(tgt_in.size(0), hidden_size)} (got {tuple(state.shape)})")


class _Readout(nn.Module):
    """``logits = W_o tanh(W_r [s_i; c_i; e(y_{i-1})])``: one hidden layer before the vocabulary."""

    def __init__(self, hidden_size: int, context_dim: int, embed_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(hidden_size + context_dim + embed_dim, hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, states: Tensor, contexts: Tensor, embedded: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(torch.cat([states, contexts, embedded], dim=-1))))  # (B, T, V)


class PlainDecoder(nn.Module):
    """A GRU decoder that sees the source only through the encoder's final state.

    The context ``c`` (the encoder's final state) sets the initial state,
    ``s_0 = tanh(W c)``, and is fed again at every step, as in Cho et al. (2014):
    ``s_i = GRU([e(y_{i-1}); c], s_{i-1})``. Whatever the source's length, everything
    the decoder knows about it is the ``Dm`` numbers of ``c``: the bottleneck.

    Args:
        vocab_size: target vocabulary size ``V``.
        embed_dim: target embedding width ``E``.
        hidden_size: decoder state width ``Hd``.
        context_dim: encoder state width ``Dm``.

    Cho et al. (2014), "Learning phrase representations using RNN encoder-decoder
    for statistical machine translation"; Sutskever, Vinyals and Le (2014). Chapter 02.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, context_dim: int) -> None:
        super().__init__()
        _check_positive(vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size, context_dim=context_dim)
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.init_proj = nn.Linear(context_dim, hidden_size)
        self.gru = nn.GRU(embed_dim + context_dim, hidden_size, batch_first=True)
        self.readout = _Readout(hidden_size, context_dim, embed_dim, vocab_size)

    def init_state(self, memory: EncoderOutput) -> Tensor:
        """``s_0 = tanh(W c)``, shape ``(B, Hd)``."""
        return torch.tanh(self.init_proj(memory.final))

    def forward(
        self,
        tgt_in: Tensor,
        memory: EncoderOutput,
        src_key_padding_mask: Optional[Tensor] = None,
        state: Optional[Tensor] = None,
    ) -> DecoderOutput:
        """Run the decoder over ``tgt_in`` (teacher forcing), from ``state``.

        Args:
            tgt_in: decoder input ids (``<bos>`` first when starting).
            memory: the encoder's output.
            src_key_padding_mask: unused (the final state already ignores padding);
                accepted so that every decoder has the same signature.
            state: the state to continue from (default: :meth:`init_state`).

        Shapes:
            tgt_in: ``(B, T)``; returns logits ``(B, T, V)`` and state ``(B, Hd)``.

        Returns:
            A :class:`DecoderOutput` with ``weights=None``.
        """
        _check_decoder_inputs(tgt_in, memory, state, self.hidden_size)
        if state is None:
            state = self.init_state(memory)
        B, T = tgt_in.shape
        embedded = self.embedding(tgt_in)  # (B, T, E)
        context = memory.final[:, None, :].expand(B, T, memory.final.size(-1))  # (B, Dm) -> (B, T, Dm)
        states, h_n = self.gru(torch.cat([embedded, context], dim=-1), state[None])  # (B, T, Hd), (1, B, Hd)
        return DecoderOutput(self.readout(states, context, embedded), h_n[0], None)


class AttentionDecoder(nn.Module):
    """A GRU decoder that attends over every encoder state at every step.

    At output step ``i`` the decoder state ``s_i`` is the query:

    ``s_i = GRU(e(y_{i-1}), s_{i-1})``, ``α_i = softmax_j(score(s_i, h_j))``,
    ``c_i = Σ_j α_ij h_j``, and the next-token scores are read out from
    ``[s_i; c_i; e(y_{i-1})]``. The context is a fresh weighted average of all
    encoder states at every step, so the source no longer has to fit in one vector.

    This is the "global attention" of Luong et al. (2015). Bahdanau et al. (2015)
    query with the previous state ``s_{i-1}`` and feed ``c_i`` into the GRU, so their
    decoder must run one step at a time even in training. Here the GRU does not read
    the context, so it runs over the whole target at once (PyTorch's fused GRU) and
    the attention is one batched computation over all steps, as in the transformer's
    decoder (chapter 08). The scores, the weights and the alignments they draw are the
    same kind of object in both.

    Args:
        vocab_size: target vocabulary size ``V``.
        embed_dim: target embedding width ``E``.
        hidden_size: decoder state width ``Hd``.
        context_dim: encoder state width ``Dm``.
        attention: the scorer, e.g. ``AdditiveAttention(Hd, Dm, A)``,
            ``DotProductAttention(Hd, Dm)`` or ``MeanPooling()``.

    Bahdanau, Cho and Bengio (2015), section 3.1; Luong, Pham and Manning (2015),
    section 3.1. Chapter 03.
    """

    def __init__(
        self, vocab_size: int, embed_dim: int, hidden_size: int, context_dim: int, attention: Seq2SeqAttention
    ) -> None:
        super().__init__()
        _check_positive(vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size, context_dim=context_dim)
        if not isinstance(attention, Seq2SeqAttention):
            raise TypeError(f"attention must be a Seq2SeqAttention module (got {type(attention).__name__})")
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.init_proj = nn.Linear(context_dim, hidden_size)
        self.gru = nn.GRU(embed_dim, hidden_size, batch_first=True)
        self.attention = attention
        self.readout = _Readout(hidden_size, context_dim, embed_dim, vocab_size)

    def init_state(self, memory: EncoderOutput) -> Tensor:
        """``s_0 = tanh(W c)`` from the encoder's final state, shape ``(B, Hd)``."""
        return torch.tanh(self.init_proj(memory.final))

    def forward(
        self,
        tgt_in: Tensor,
        memory: EncoderOutput,
        src_key_padding_mask: Optional[Tensor] = None,
        state: Optional[Tensor] = None,
    ) -> DecoderOutput:
        """Run the decoder over ``tgt_in`` (teacher forcing), from ``state``.

        Args:
            tgt_in: decoder input ids (``<bos>`` first when starting).
            memory: the encoder's output.
            src_key_padding_mask: ``True`` at source padding (given no weight).
            state: the state to continue from (default: :meth:`init_state`).

        Shapes:
            tgt_in: ``(B, T)``; returns logits ``(B, T, V)``, state ``(B, Hd)`` and
            weights ``(B, T, S)``.

        Returns:
            A :class:`DecoderOutput`; ``weights[b, i]`` is the alignment of output
            step ``i`` over the source.
        """
        _check_decoder_inputs(tgt_in, memory, state, self.hidden_size)
        if state is None:
            state = self.init_state(memory)
        embedded = self.embedding(tgt_in)  # (B, T, E)
        states, h_n = self.gru(embedded, state[None])  # (B, T, Hd), (1, B, Hd)
        contexts, weights = self.attention(
            states, memory.states, key_padding_mask=src_key_padding_mask
        )  # (B, T, Dm), (B, T, S): every step attends to every source position
        return DecoderOutput(self.readout(states, contexts, embedded), h_n[0], weights)


Decoder = Union[PlainDecoder, AttentionDecoder]


class Seq2Seq(nn.Module):
    """An encoder and a decoder behind the book's sequence-to-sequence protocol.

    Implements ``attnlib.decoding.Seq2SeqModel`` (``forward``, ``encode``,
    ``decode``) and its incremental form (``init_state``, ``decode_step``) that
    greedy decoding uses to carry the recurrent state instead of re-reading the prefix.

    Args:
        encoder: a :class:`GRUEncoder`.
        decoder: a :class:`PlainDecoder` or an :class:`AttentionDecoder`.

    Chapters 02 and 03.
    """

    def __init__(self, encoder: GRUEncoder, decoder: Decoder) -> None:
        super().__init__()
        if not isinstance(encoder, GRUEncoder):
            raise TypeError(f"encoder must be a GRUEncoder (got {type(encoder).__name__})")
        if not isinstance(decoder, (PlainDecoder, AttentionDecoder)):
            raise TypeError(f"decoder must be a PlainDecoder or an AttentionDecoder (got {type(decoder).__name__})")
        if decoder.init_proj.in_features != encoder.out_dim:
            raise ValueError(
                f"the decoder's context_dim must equal the encoder's out_dim "
                f"(got {decoder.init_proj.in_features} and {encoder.out_dim})"
            )
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, src: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> EncoderOutput:
        """Encode the source: ``(B, S)`` ids to an :class:`EncoderOutput` (the memory)."""
        return self.encoder(src, src_key_padding_mask)

    def decode(
        self,
        tgt_in: Tensor,
        memory: EncoderOutput,
        src_key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Optional[Tensor]]]:
        """Next-token logits ``(B, T, V)`` for every prefix of ``tgt_in`` (teacher forcing).

        With ``need_weights=True`` returns ``(logits, weights)``: the attention weights
        ``(B, T, S)``, or ``None`` for a decoder without attention.
        """
        out = self.decoder(tgt_in, memory, src_key_padding_mask)
        return (out.logits, out.weights) if need_weights else out.logits

    def forward(self, src: Tensor, tgt_in: Tensor, src_key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Logits ``(B, T, V)`` of ``tgt_out`` given the source ``(B, S)`` and ``tgt_in`` ``(B, T)``."""
        _check_tokens("src", src)
        _check_tokens("tgt_in", tgt_in)
        if src.size(0) != tgt_in.size(0):
            raise ValueError(f"src and tgt_in must have the same batch size (got {src.size(0)} and {tgt_in.size(0)})")
        memory = self.encode(src, src_key_padding_mask)
        return self.decoder(tgt_in, memory, src_key_padding_mask).logits

    def init_state(self, memory: EncoderOutput) -> Tensor:
        """The decoder's initial state ``(B, Hd)``, for :meth:`decode_step`."""
        return self.decoder.init_state(memory)

    def decode_step(
        self, tokens: Tensor, memory: EncoderOutput, src_key_padding_mask: Optional[Tensor], state: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """One decoder step: the last tokens ``(B,)`` and the state to logits ``(B, V)`` and the new state."""
        out = self.decoder(tokens[:, None], memory, src_key_padding_mask, state)  # (B,) -> (B, 1)
        return out.logits[:, 0], out.state


def gru_seq2seq(
    src_vocab_size: int,
    tgt_vocab_size: int,
    hidden_size: int = 128,
    embed_dim: int = 64,
    attention: Optional[str] = None,
    bidirectional: bool = True,
    attn_dim: Optional[int] = None,
) -> Seq2Seq:
    """Build the GRU encoder-decoder of chapter 02 or one of the attention models of chapter 03.

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size ``V``.
        hidden_size: encoder GRU width per direction; the decoder's width ``Hd`` is
            the encoder state width ``Dm`` (``2 * hidden_size`` if bidirectional).
        embed_dim: embedding width ``E`` (source and target).
        attention: ``None`` (the plain decoder: final state only), ``"additive"``,
            ``"dot"`` or ``"mean"`` (fixed equal weights).
        bidirectional: bidirectional encoder.
        attn_dim: hidden width ``A`` of the additive scorer (default ``hidden_size``).

    Returns:
        A :class:`Seq2Seq`.
    """
    encoder = GRUEncoder(src_vocab_size, embed_dim, hidden_size, bidirectional)
    Dm = encoder.out_dim
    Hd = Dm  # the decoder state is as wide as an encoder state
    if attention is None:
        return Seq2Seq(encoder, PlainDecoder(tgt_vocab_size, embed_dim, Hd, Dm))
    scorers = {
        "additive": lambda: AdditiveAttention(Hd, Dm, attn_dim or hidden_size),
        "dot": lambda: DotProductAttention(Hd, Dm),
        "mean": MeanPooling,
    }
    if attention not in scorers:
        raise ValueError(f"attention must be None or one of {sorted(scorers)} (got {attention!r})")
    return Seq2Seq(encoder, AttentionDecoder(tgt_vocab_size, embed_dim, Hd, Dm, scorers[attention]()))
