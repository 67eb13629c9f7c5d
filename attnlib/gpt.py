"""GPT: a decoder-only, causal transformer language model, with a key-value cache.

Chapter 10 trains a small one on characters. The model is a stack of attnlib's
:class:`~attnlib.transformer.EncoderLayer` run with ``is_causal=True`` (the "decoder"
of GPT has no cross-attention, so it is an encoder layer with a causal mask), pre-norm
and GELU as in GPT-2 (Radford et al., 2018 and 2019), learned positions, a final
LayerNorm, and an output head that shares its weight with the token embedding.

Generation samples one token at a time with temperature, top-k and top-p (nucleus,
Holtzman et al., 2020) filtering. With ``use_cache=True`` every layer keeps the keys
and values of the prefix in an :class:`~attnlib.attention.KVCache`, so a step runs the
model on the newest token only; without it a step reruns the whole prefix. Both give
the same logits (the tests check this in float64).

Shape legend: ``B`` batch, ``T`` sequence length, ``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import boolean, fraction, is_int, is_number, non_negative_int, optional_positive_int, positive_number
from .attention import KVCache
from .transformer import Encoder, EncoderLayer, TransformerConfig, _check_token_ids

__all__ = ["CausalLM", "GPT", "filter_logits"]


def filter_logits(
    logits: Tensor, temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None
) -> Tensor:
    """Next-token logits after temperature, top-k and top-p; removed tokens get ``-inf``.

    * temperature ``tau``: ``softmax(logits / tau)``; below 1 sharpens, above 1
      flattens the distribution.
    * top-k: keep the ``k`` most likely tokens (ties at the ``k``-th value are kept).
    * top-p (nucleus, Holtzman et al., 2020): keep the smallest set of most likely
      tokens whose probability (after temperature and top-k) reaches ``p``; the most
      likely token is always kept.

    Args:
        logits: unnormalised scores.
        temperature: positive; ``0`` is handled by :meth:`CausalLM.generate` as greedy.
        top_k: positive int or ``None`` (no limit).
        top_p: in ``(0, 1]`` or ``None`` (no limit).

    Shapes:
        logits: ``(B, V)``; returns ``(B, V)``.

    Returns:
        Filtered logits; ``softmax`` of them is the sampling distribution.

    Chapter 10.
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.dtype.is_floating_point:
        got = f"shape {tuple(logits.shape)}, dtype {logits.dtype}" if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating tensor of shape (B, V) (got {got})")
    positive_number("temperature", temperature)
    optional_positive_int("top_k", top_k)
    fraction("top_p", top_p, open_low=True, open_high=False, or_none=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the more likely tokens
        drop_sorted = before >= top_p  # the nucleus already reached p without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class CausalLM(nn.Module):
    """What the book's decoder-only language models share: caches, input checks, generation.

    A subclass sets ``vocab_size`` and ``max_len``, defines ``_num_blocks`` (how
    many blocks keep a key-value cache) and ``forward(tokens, kv_cache=None)``, which
    returns next-token logits ``(B, T, V)`` and calls ``_past_length`` first.
    :class:`GPT` (chapter 10) and :class:`~attnlib.llama.LlamaModel` (chapter 15) are two.
    """

    vocab_size: int
    max_len: int

    def _num_blocks(self) -> int:
        raise NotImplementedError

    def new_cache(self) -> List[KVCache]:
        """One empty :class:`~attnlib.attention.KVCache` per block, for ``forward``."""
        return [KVCache(self.max_len) for _ in range(self._num_blocks())]

    def _check_tokens(self, tokens: Tensor, past: int) -> None:
        _check_token_ids("tokens", tokens, self.vocab_size)
        if past + tokens.size(1) > self.max_len:
            raise ValueError(
                f"sequence length must be at most max_len={self.max_len} (got {past} cached + {tokens.size(1)} new)"
            )

    def _past_length(self, tokens: Tensor, kv_cache: Optional[List[KVCache]]) -> int:
        """Check ``forward``'s inputs; return how many tokens the caches already hold."""
        n = self._num_blocks()
        if kv_cache is not None and (
            not isinstance(kv_cache, list) or len(kv_cache) != n or not all(isinstance(c, KVCache) for c in kv_cache)
        ):
            raise TypeError(f"kv_cache must be None or a list of {n} KVCache (use new_cache())")
        past = len(kv_cache[0]) if kv_cache is not None else 0
        self._check_tokens(tokens, past)
        return past

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        use_cache: bool = True,
        generator: Optional[torch.Generator] = None,
        eos_id: Optional[int] = None,
    ) -> Tensor:
        """Continue ``prompt`` by sampling up to ``max_new_tokens`` tokens, one at a time.

        Each step turns the last position's logits into a distribution with
        :func:`filter_logits` and samples from it (``temperature=0``: take the most
        likely token, greedy decoding). With ``use_cache`` the prompt runs once and
        every later step runs the model on the newest token only, reading the earlier
        keys and values from the caches; without it every step reruns the whole
        sequence. The two give the same tokens. A row that emits ``eos_id`` has
        finished and repeats it; generation stops early once every row has finished.
        Runs in evaluation mode (no dropout) and restores the previous mode.

        Args:
            prompt: the token ids to continue.
            max_new_tokens: the most tokens to add (non-negative).
            temperature: ``0`` (greedy) or positive.
            top_k: keep only the ``k`` most likely tokens (``None``: all).
            top_p: nucleus sampling threshold in ``(0, 1]`` (``None``: no limit).
            use_cache: use key-value caches.
            generator: the random generator of the sampling (on the model's device).
            eos_id: the end-of-sequence token (``None``: always ``max_new_tokens``).

        Shapes:
            prompt: ``(B, T0)`` with ``T0 + max_new_tokens <= max_len``; returns
            ``(B, T0 + n)``, ``n <= max_new_tokens`` (``n = max_new_tokens`` without ``eos_id``).

        Returns:
            The prompt followed by the generated tokens.
        """
        non_negative_int("max_new_tokens", max_new_tokens)
        if not is_number(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a non-negative number, 0 for greedy (got {temperature!r})")
        filter_logits(torch.zeros(1, 1), temperature if temperature > 0 else 1.0, top_k, top_p)  # checks them
        boolean("use_cache", use_cache)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
        if eos_id is not None and (not is_int(eos_id) or not 0 <= eos_id < self.vocab_size):
            raise ValueError(f"eos_id must be None or a token id in [0, {self.vocab_size}) (got {eos_id!r})")
        self._check_tokens(prompt, 0)
        if prompt.size(1) + max_new_tokens > self.max_len:
            raise ValueError(
                f"prompt length + max_new_tokens must be at most max_len={self.max_len} "
                f"(got {prompt.size(1)} + {max_new_tokens})"
            )
        was_training = self.training
        self.eval()
        try:
            tokens = prompt
            cache = self.new_cache() if use_cache else None
            step_input = prompt
            finished = torch.zeros(prompt.size(0), 1, dtype=torch.bool, device=prompt.device)  # (B, 1)
            for _ in range(max_new_tokens):
                # No gradients (the decorator): generation needs none, and without autograd's
                # bookkeeping each step is cheaper and the caches hold plain tensors, not a graph.
                logits = self(step_input if use_cache else tokens, kv_cache=cache)[:, -1]  # (B, V)
                if temperature == 0:
                    next_token = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)
                    next_token = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
                if eos_id is not None:
                    next_token = next_token.masked_fill(finished, eos_id)  # a finished row repeats eos
                    finished = finished | (next_token == eos_id)
                tokens = torch.cat([tokens, next_token], dim=1)
                step_input = next_token
                if eos_id is not None and bool(finished.all()):
                    break
        finally:
            self.train(was_training)
        return tokens


class GPT(CausalLM):
    """A decoder-only transformer language model (Radford et al., 2018, 2019).

    ``tokens -> token embedding + learned position -> num_layers causal pre-norm
    blocks -> LayerNorm -> logits``; the output head is the transposed token embedding
    (tied weights, Press and Wolf, 2017). Logit ``t`` depends on tokens ``0..t`` only.

    The blocks are :class:`~attnlib.transformer.EncoderLayer` (self-attention is
    :class:`~attnlib.attention.MultiHeadAttention`) built from a
    :class:`~attnlib.transformer.TransformerConfig` with ``norm_first=True``,
    ``activation="gelu"``, no padding token and ``num_encoder_layers=num_layers``
    (the config's decoder fields are unused), stored as ``self.config``. With
    ``feed_forward=False`` the blocks are attention only.

    Args:
        vocab_size: number of tokens ``V``.
        d_model: width ``D``.
        num_heads: attention heads; must divide ``d_model``.
        num_layers: number of blocks.
        dim_feedforward: hidden width of the feed-forward networks (default ``4 D``).
        dropout: dropout on embeddings, attention weights and sublayer outputs.
        max_len: the longest sequence (prompt plus generated tokens) it can read.
        feed_forward: ``False`` leaves the feed-forward sublayers out, so every block is
            attention only (the attention-only transformers of Elhage et al., 2021;
            chapter 17 trains its induction heads in the rotary-position decoder of
            :class:`~attnlib.llama.LlamaConfig` with ``feed_forward=False``);
            ``dim_feedforward`` is then unused.

    Generation (:meth:`~CausalLM.generate`) and key-value caches come from :class:`CausalLM`.

    Chapter 10.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 4,
        dim_feedforward: Optional[int] = None,
        dropout: float = 0.1,
        max_len: int = 1024,
        feed_forward: bool = True,
    ) -> None:
        super().__init__()
        boolean("feed_forward", feed_forward)
        self.config = TransformerConfig(
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            d_model=d_model,
            num_heads=num_heads,
            num_encoder_layers=num_layers,
            num_decoder_layers=1,
            dim_feedforward=4 * d_model if dim_feedforward is None else dim_feedforward,
            dropout=dropout,
            activation="gelu",
            norm_first=True,
            final_norm=True,
            positional="learned",
            max_len=max_len,
            pad_id=None,
            tie_output_embedding=True,
            feed_forward=feed_forward,
        )
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = Encoder(self.config)  # the causal blocks and the final LayerNorm
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # tied: one (V, D) matrix
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: ``N(0, 0.02)`` weights, zero biases, unit LayerNorms.

        The output projections of attention and feed-forward are scaled by
        ``1 / sqrt(2 * num_layers)``, so the residual stream's variance does not grow
        with depth (Radford et al., 2019, section 2.3).
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        scale = 0.02 / (2 * self.config.num_encoder_layers) ** 0.5
        for layer in self.blocks.layers:
            assert isinstance(layer, EncoderLayer)  # what Encoder holds; a ModuleList only knows Module
            nn.init.normal_(layer.self_attn.out_proj.weight, std=scale)
            if layer.feed_forward is not None:
                nn.init.normal_(layer.feed_forward.linear2.weight, std=scale)

    def _num_blocks(self) -> int:
        return len(self.blocks.layers)

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
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))  # (B, T, D)
        for i, layer in enumerate(self.blocks.layers):
            x, _ = layer(x, is_causal=True, kv_cache=None if kv_cache is None else kv_cache[i])
        return self.head(self.blocks.norm(x))  # (B, T, V)

