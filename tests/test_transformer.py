"""Tests for attnlib.transformer: parity with torch.nn's transformer modules, properties, errors.

Parity: torch modules get random weights (non-zero biases, non-unit LayerNorms, so that
a mix-up shows), which are copied into attnlib's (``in_proj_weight`` split into
``q_proj``/``k_proj``/``v_proj``); both run in float64 and eval mode and must agree to
1e-10. Torch's fast paths are kept off: ``enable_nested_tensor=False`` on
``nn.TransformerEncoder``, and the reference runs with autograd on (torch's encoder
fast path, which returns 0 at padded positions, requires grad to be off).
Mask polarity: attnlib's boolean masks are True = may attend, torch's are True = not
allowed, so a boolean mask is inverted on the way to torch; float masks are the same.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from torch import nn

from attnlib.functional import causal_mask
from attnlib.positional import sinusoidal_encoding
from attnlib.transformer import (
    AttentionMaps,
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    FeedForward,
    Transformer,
    TransformerConfig,
)

TOL = 1e-10
f64 = torch.float64
B, S, T = 3, 6, 5
D, H, FF = 16, 4, 24
V_SRC, V_TGT, PAD = 11, 13, 0


def config(**overrides) -> TransformerConfig:
    base = dict(src_vocab_size=V_SRC, tgt_vocab_size=V_TGT, d_model=D, num_heads=H, num_encoder_layers=2,
                num_decoder_layers=2, dim_feedforward=FF, dropout=0.0, max_len=32)
    base.update(overrides)
    return TransformerConfig(**base)


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module


# --- copying torch's weights into attnlib's modules ---------------------------------


@torch.no_grad()
def copy_mha(ours, ref: nn.MultiheadAttention) -> None:
    projections = (ours.q_proj, ours.k_proj, ours.v_proj)
    for proj, w, b in zip(projections, ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)):
        proj.weight.copy_(w)
        proj.bias.copy_(b)
    ours.out_proj.weight.copy_(ref.out_proj.weight)
    ours.out_proj.bias.copy_(ref.out_proj.bias)


@torch.no_grad()
def copy_linear_or_norm(ours, ref) -> None:
    ours.weight.copy_(ref.weight)
    ours.bias.copy_(ref.bias)


def copy_encoder_layer(ours: EncoderLayer, ref: nn.TransformerEncoderLayer) -> None:
    copy_mha(ours.self_attn, ref.self_attn)
    copy_linear_or_norm(ours.feed_forward.linear1, ref.linear1)
    copy_linear_or_norm(ours.feed_forward.linear2, ref.linear2)
    copy_linear_or_norm(ours.norm1, ref.norm1)
    copy_linear_or_norm(ours.norm2, ref.norm2)


def copy_decoder_layer(ours: DecoderLayer, ref: nn.TransformerDecoderLayer) -> None:
    copy_mha(ours.self_attn, ref.self_attn)
    copy_mha(ours.multihead_attn, ref.multihead_attn)
    copy_linear_or_norm(ours.feed_forward.linear1, ref.linear1)
    copy_linear_or_norm(ours.feed_forward.linear2, ref.linear2)
    for name in ("norm1", "norm2", "norm3"):
        copy_linear_or_norm(getattr(ours, name), getattr(ref, name))


def copy_stack(ours, ref, copy_layer) -> None:
    assert len(ours.layers) == len(ref.layers)
    for a, b in zip(ours.layers, ref.layers):
        copy_layer(a, b)
    if ref.norm is not None:
        copy_linear_or_norm(ours.norm, ref.norm)
    else:
        assert isinstance(ours.norm, nn.Identity)


def torch_layer_kwargs(norm_first: bool, activation: str) -> dict:
    return dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.0, activation=activation, batch_first=True,
                norm_first=norm_first, dtype=f64)


def torch_transformer(norm_first: bool, activation: str) -> nn.Transformer:
    with warnings.catch_warnings():
        # torch notes at construction that its nested-tensor fast path is off for norm_first=True.
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        ref = nn.Transformer(D, H, 2, 2, FF, dropout=0.0, activation=activation, batch_first=True,
                             norm_first=norm_first, dtype=f64)
    return randomize_(ref).eval()


# --- inputs ------------------------------------------------------------------------------


def x_input(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, length, D, generator=torch.Generator().manual_seed(seed), dtype=f64)


def kpm(length: int) -> torch.Tensor:
    """A key padding mask (True = padding) that never pads position 0."""
    m = torch.zeros(B, length, dtype=torch.bool)
    m[1, length - 2:] = True
    m[2, length - 1] = True
    return m


def as_float(mask: torch.Tensor) -> torch.Tensor:
    """A boolean padding mask as the float mask torch wants beside a float attn_mask."""
    return torch.zeros(mask.shape, dtype=f64).masked_fill(mask, float("-inf"))


def allowed(rows: int, cols: int, seed: int = 5) -> torch.Tensor:
    """A random boolean attnlib mask (True = may attend); key 0 is always allowed."""
    m = torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed)) > 0.4
    m[:, 0] = True
    return m


def tokens(vocab: int, length: int, seed: int = 2) -> torch.Tensor:
    """Token ids without the padding id."""
    return torch.randint(1, vocab, (B, length), generator=torch.Generator().manual_seed(seed))


def causal_float(n: int) -> torch.Tensor:
    return nn.Transformer.generate_square_subsequent_mask(n, dtype=f64)


# --- parity with torch.nn ------------------------------------------------------------------

ORDERS_AND_ACTIVATIONS = [(nf, act) for nf in (False, True) for act in ("relu", "gelu")]
ENCODER_MASKS = ["none", "bool", "float", "padding", "causal", "bool+padding", "float+padding"]


@pytest.mark.parametrize("masks", ENCODER_MASKS)
@pytest.mark.parametrize("norm_first,activation", ORDERS_AND_ACTIVATIONS)
def test_encoder_layer_matches_torch(norm_first, activation, masks):
    ref = randomize_(nn.TransformerEncoderLayer(**torch_layer_kwargs(norm_first, activation))).eval()
    ours = EncoderLayer(config(norm_first=norm_first, activation=activation)).double().eval()
    copy_encoder_layer(ours, ref)
    x = x_input(S)
    ours_kw, ref_kw = {}, {}
    if "bool" in masks:
        ours_kw["src_mask"], ref_kw["src_mask"] = allowed(S, S), ~allowed(S, S)  # torch: True = NOT allowed
    if "float" in masks:
        bias = torch.randn(S, S, dtype=f64)
        ours_kw["src_mask"] = ref_kw["src_mask"] = bias
    if "padding" in masks:
        ours_kw["src_key_padding_mask"] = kpm(S)
        ref_kw["src_key_padding_mask"] = as_float(kpm(S)) if "float" in masks else kpm(S)
    if masks == "causal":
        ours_kw["is_causal"] = True
        ref_kw.update(src_mask=causal_float(S), is_causal=True)
    out, weights = ours(x, **ours_kw)
    assert weights is None
    torch.testing.assert_close(out, ref(x, **ref_kw), atol=TOL, rtol=0)
    out_readable, weights = ours(x, **ours_kw, need_weights=True)  # the readable path agrees too
    torch.testing.assert_close(out_readable, out, atol=TOL, rtol=0)
    assert weights is not None and weights.shape == (B, H, S, S)


DECODER_MASKS = ["none", "causal", "causal+padding", "bool-causal+padding", "bool-memory", "float"]


@pytest.mark.parametrize("masks", DECODER_MASKS)
@pytest.mark.parametrize("norm_first,activation", ORDERS_AND_ACTIVATIONS)
def test_decoder_layer_matches_torch(norm_first, activation, masks):
    ref = randomize_(nn.TransformerDecoderLayer(**torch_layer_kwargs(norm_first, activation))).eval()
    ours = DecoderLayer(config(norm_first=norm_first, activation=activation)).double().eval()
    copy_decoder_layer(ours, ref)
    y, memory = x_input(T, seed=3), x_input(S, seed=4)
    ours_kw, ref_kw = {}, {}
    if masks == "causal":
        ours_kw["tgt_is_causal"] = True
        ref_kw.update(tgt_mask=causal_float(T), tgt_is_causal=True)
    if masks == "causal+padding":  # torch wants float padding masks beside its float causal mask
        ours_kw.update(tgt_is_causal=True, tgt_key_padding_mask=kpm(T), memory_key_padding_mask=kpm(S))
        ref_kw.update(tgt_mask=causal_float(T), tgt_is_causal=True, tgt_key_padding_mask=as_float(kpm(T)),
                      memory_key_padding_mask=kpm(S))
    if masks == "bool-causal+padding":  # the same masks written as attnlib and torch booleans
        ours_kw.update(tgt_mask=causal_mask(T), tgt_key_padding_mask=kpm(T), memory_key_padding_mask=kpm(S))
        ref_kw.update(tgt_mask=~causal_mask(T), tgt_key_padding_mask=kpm(T), memory_key_padding_mask=kpm(S))
    if masks == "bool-memory":
        ours_kw["memory_mask"], ref_kw["memory_mask"] = allowed(T, S), ~allowed(T, S)
    if masks == "float":
        self_bias, cross_bias = torch.randn(T, T, dtype=f64), torch.randn(T, S, dtype=f64)
        ours_kw.update(tgt_mask=self_bias, memory_mask=cross_bias)
        ref_kw.update(tgt_mask=self_bias, memory_mask=cross_bias)
    out, self_w, cross_w = ours(y, memory, **ours_kw)
    assert self_w is None and cross_w is None
    torch.testing.assert_close(out, ref(y, memory, **ref_kw), atol=TOL, rtol=0)
    out_readable, self_w, cross_w = ours(y, memory, **ours_kw, need_weights=True)
    torch.testing.assert_close(out_readable, out, atol=TOL, rtol=0)
    assert self_w is not None and self_w.shape == (B, H, T, T)
    assert cross_w is not None and cross_w.shape == (B, H, T, S)


@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_match_torch_with_and_without_final_norm(norm_first, final_norm):
    enc_layer = nn.TransformerEncoderLayer(**torch_layer_kwargs(norm_first, "relu"))
    dec_layer = nn.TransformerDecoderLayer(**torch_layer_kwargs(norm_first, "relu"))
    norm = (lambda: nn.LayerNorm(D, dtype=f64)) if final_norm else (lambda: None)
    ref_enc = randomize_(nn.TransformerEncoder(enc_layer, 2, norm=norm(), enable_nested_tensor=False), 1).eval()
    ref_dec = randomize_(nn.TransformerDecoder(dec_layer, 2, norm=norm()), 2).eval()
    cfg = config(norm_first=norm_first, final_norm=final_norm)
    enc, dec = Encoder(cfg).double().eval(), Decoder(cfg).double().eval()
    copy_stack(enc, ref_enc, copy_encoder_layer)
    copy_stack(dec, ref_dec, copy_decoder_layer)
    assert sum(p.numel() for p in enc.parameters()) == sum(p.numel() for p in ref_enc.parameters())
    assert sum(p.numel() for p in dec.parameters()) == sum(p.numel() for p in ref_dec.parameters())
    x, y = x_input(S), x_input(T, seed=3)
    memory, maps = enc(x, src_key_padding_mask=kpm(S))
    assert maps is None
    torch.testing.assert_close(memory, ref_enc(x, src_key_padding_mask=kpm(S)), atol=TOL, rtol=0)
    out, self_maps, cross_maps = dec(y, memory, memory_key_padding_mask=kpm(S), tgt_is_causal=True)
    assert self_maps is None and cross_maps is None
    ref_out = ref_dec(y, memory, tgt_mask=causal_float(T), memory_key_padding_mask=kpm(S), tgt_is_causal=True)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)


@pytest.mark.parametrize("norm_first,activation", ORDERS_AND_ACTIVATIONS)
def test_model_matches_torch_transformer_with_every_mask(norm_first, activation):
    """Our Transformer's logits equal head(nn.Transformer(embeddings)) with all masks."""
    ref = torch_transformer(norm_first, activation)
    model = Transformer(config(norm_first=norm_first, activation=activation)).double().eval()
    copy_stack(model.encoder, ref.encoder, copy_encoder_layer)
    copy_stack(model.decoder, ref.decoder, copy_decoder_layer)
    src, tgt_in = tokens(V_SRC, S), tokens(V_TGT, T, seed=3)
    src[1, -2:] = PAD
    tgt_in[2, -2:] = PAD
    src_pad, tgt_pad = src.eq(PAD), tgt_in.eq(PAD)
    # Embeddings written out: token vector * sqrt(D) + sinusoid (exact in float64).
    table = sinusoidal_encoding(32, D, dtype=f64)
    x = model.src_embedding.weight[src] * math.sqrt(D) + table[:S]
    y = model.tgt_embedding.weight[tgt_in] * math.sqrt(D) + table[:T]
    ref_out = ref(x, y, tgt_mask=causal_float(T), src_key_padding_mask=src_pad,
                  tgt_key_padding_mask=as_float(tgt_pad), memory_key_padding_mask=src_pad, tgt_is_causal=True)
    logits = model(src, tgt_in, src_key_padding_mask=src_pad)
    assert logits.shape == (B, T, V_TGT)
    torch.testing.assert_close(logits, model.head(ref_out), atol=TOL, rtol=0)


# --- properties ---------------------------------------------------------------------------


def small_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(config(**overrides)).double().eval()


def test_forward_equals_encode_then_decode():
    model = small_model()
    src, tgt_in = tokens(V_SRC, S), tokens(V_TGT, T, seed=3)
    mask = kpm(S)
    memory = model.encode(src, mask)
    assert memory.shape == (B, S, D)
    torch.testing.assert_close(model(src, tgt_in, mask), model.decode(tgt_in, memory, mask), atol=0, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_no_causal_leak(norm_first):
    """Changing target tokens from position k on changes no logit before k."""
    model = small_model(norm_first=norm_first)
    src, tgt_in = tokens(V_SRC, S), tokens(V_TGT, T, seed=3)
    logits = model(src, tgt_in)
    for k in range(1, T):
        changed = tgt_in.clone()
        changed[:, k:] = (changed[:, k:] % (V_TGT - 1)) + 1  # other non-padding tokens
        new_logits = model(src, changed)
        torch.testing.assert_close(new_logits[:, :k], logits[:, :k], atol=TOL, rtol=0)
        assert (new_logits[:, k] - logits[:, k]).abs().max() > 1e-3  # the test can fail


@pytest.mark.parametrize("norm_first", [False, True])
def test_source_padding_changes_nothing(norm_first):
    model = small_model(norm_first=norm_first)
    src, tgt_in = tokens(V_SRC, S)[:1], tokens(V_TGT, T, seed=3)[:1]
    padded = torch.cat([src, torch.full((1, 3), PAD)], dim=1)
    pad_mask = padded.eq(PAD)
    torch.testing.assert_close(model.encode(padded, pad_mask)[:, :S], model.encode(src), atol=TOL, rtol=0)
    torch.testing.assert_close(model(padded, tgt_in, pad_mask), model(src, tgt_in), atol=TOL, rtol=0)
    assert (model(padded, tgt_in) - model(src, tgt_in)).abs().max() > 1e-3  # unmasked padding does change it


def test_target_padding_is_never_attended_and_changes_nothing():
    model = small_model()
    src, tgt_in = tokens(V_SRC, S)[:1], tokens(V_TGT, T, seed=3)[:1]
    padded = torch.cat([tgt_in, torch.full((1, 3), PAD)], dim=1)
    torch.testing.assert_close(model(src, padded)[:, :T], model(src, tgt_in), atol=TOL, rtol=0)
    maps = model.attention_maps(src, padded)
    for w in maps.decoder_self:
        assert w[..., T:].abs().max() == 0  # no query gives weight to a padding key


def test_attention_maps():
    model = small_model()
    src, tgt_in = tokens(V_SRC, S), tokens(V_TGT, T, seed=3)
    mask = kpm(S)
    maps = model.attention_maps(src, tgt_in, mask)
    assert isinstance(maps, AttentionMaps)
    torch.testing.assert_close(maps.logits, model(src, tgt_in, mask), atol=TOL, rtol=0)  # readable == fused
    assert [w.shape for w in maps.encoder_self] == [(B, H, S, S)] * 2
    assert [w.shape for w in maps.decoder_self] == [(B, H, T, T)] * 2
    assert [w.shape for w in maps.decoder_cross] == [(B, H, T, S)] * 2
    for w in maps.encoder_self + maps.decoder_self + maps.decoder_cross:
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=f64), atol=TOL, rtol=0)
    for w in maps.encoder_self + maps.decoder_cross:
        assert w.masked_select(mask[:, None, None, :]).abs().max() == 0  # padded source keys get nothing
    future = ~causal_mask(T)
    for w in maps.decoder_self:
        assert w[..., future].abs().max() == 0


def test_positions_matter_unless_switched_off():
    """Without positions the encoder is permutation-equivariant; with them it is not."""
    src = tokens(V_SRC, S)
    perm = torch.randperm(S, generator=torch.Generator().manual_seed(0))
    for kind in ("sinusoidal", "learned", "none"):
        model = small_model(positional=kind)
        gap = (model.encode(src[:, perm]) - model.encode(src)[:, perm]).abs().max()
        if kind == "none":
            assert gap < TOL
        else:
            assert gap > 1e-3


@pytest.mark.parametrize("norm_first", [False, True])
def test_without_residuals_the_sublayers_compose(norm_first):
    layer = randomize_(EncoderLayer(config(norm_first=norm_first, residual=False)).double()).eval()
    x = x_input(S)

    def sa(h):
        return layer.self_attn(h, h, h)[0]

    if norm_first:
        expected = layer.feed_forward(layer.norm2(sa(layer.norm1(x))))
    else:
        expected = layer.norm2(layer.feed_forward(layer.norm1(sa(x))))
    torch.testing.assert_close(layer(x)[0], expected, atol=TOL, rtol=0)

    dec = randomize_(DecoderLayer(config(norm_first=norm_first, residual=False)).double()).eval()
    y = x_input(T, seed=3)

    def self_attn(h):
        return dec.self_attn(h, h, h)[0]

    def cross_attn(h):
        return dec.multihead_attn(h, x, x)[0]

    if norm_first:
        expected = dec.feed_forward(dec.norm3(cross_attn(dec.norm2(self_attn(dec.norm1(y))))))
    else:
        expected = dec.norm3(dec.feed_forward(dec.norm2(cross_attn(dec.norm1(self_attn(y))))))
    torch.testing.assert_close(dec(y, x)[0], expected, atol=TOL, rtol=0)


def test_without_layer_norm_there_is_none():
    model = small_model(layer_norm=False)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    layer = randomize_(EncoderLayer(config(layer_norm=False)).double()).eval()
    x = x_input(S)
    a = x + layer.self_attn(x, x, x)[0]
    torch.testing.assert_close(layer(x)[0], a + layer.feed_forward(a), atol=TOL, rtol=0)
    with_norms = small_model()
    assert sum(isinstance(m, nn.LayerNorm) for m in with_norms.modules()) == 2 * 2 + 2 * 3 + 2


@pytest.mark.parametrize("norm_first", [False, True])
def test_without_feed_forward_the_layers_are_attention_only(norm_first):
    layer = randomize_(EncoderLayer(config(norm_first=norm_first, feed_forward=False)).double()).eval()
    assert layer.feed_forward is None
    x = x_input(S)
    if norm_first:
        expected = x + layer.self_attn(layer.norm1(x), layer.norm1(x), layer.norm1(x))[0]
    else:
        expected = layer.norm1(x + layer.self_attn(x, x, x)[0])
    torch.testing.assert_close(layer(x)[0], expected, atol=TOL, rtol=0)

    dec = randomize_(DecoderLayer(config(norm_first=norm_first, feed_forward=False)).double()).eval()
    y = x_input(T, seed=3)
    h = dec.norm1(y) if norm_first else y
    a = y + dec.self_attn(h, h, h)[0]
    a = a if norm_first else dec.norm1(a)
    h = dec.norm2(a) if norm_first else a
    b = a + dec.multihead_attn(h, x, x)[0]
    expected = b if norm_first else dec.norm2(b)
    torch.testing.assert_close(dec(y, x)[0], expected, atol=TOL, rtol=0)

    # What goes: each layer's feed-forward network and the LayerNorm that wrapped it.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    full, attention_only = small_model(), small_model(feed_forward=False)
    per_layer = count(full.encoder.layers[0].feed_forward) + 2 * D
    layers = full.config.num_encoder_layers + full.config.num_decoder_layers
    assert count(full) - count(attention_only) == layers * per_layer


def test_tied_output_embedding_and_initialisation():
    tied, untied = small_model(tie_output_embedding=True), small_model()
    assert tied.head.weight is tied.tgt_embedding.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(untied) - count(tied) == V_TGT * D
    for model in (tied, untied):
        assert model.src_embedding.weight[PAD].abs().max() == 0
        assert model.tgt_embedding.weight[PAD].abs().max() == 0
    wide = Transformer(TransformerConfig(src_vocab_size=4000, tgt_vocab_size=10, d_model=64))
    assert 0.8 < (wide.src_embedding.weight.std() * math.sqrt(64)).item() < 1.2  # scaled embeddings ~ unit


def test_dropout_only_in_training():
    model = small_model(dropout=0.3)
    src, tgt_in = tokens(V_SRC, S), tokens(V_TGT, T, seed=3)
    torch.testing.assert_close(model(src, tgt_in), model(src, tgt_in), atol=0, rtol=0)
    model.train()
    assert not torch.allclose(model(src, tgt_in), model(src, tgt_in))


def test_gradcheck_layers():
    cfg = config(d_model=4, num_heads=2, dim_feedforward=6, norm_first=True)
    enc = randomize_(EncoderLayer(cfg).double()).eval()
    dec = randomize_(DecoderLayer(config(d_model=4, num_heads=2, dim_feedforward=6)).double()).eval()
    x = torch.randn(2, 3, 4, dtype=f64, requires_grad=True)
    memory = torch.randn(2, 4, 4, dtype=f64, requires_grad=True)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    mem_pad = torch.tensor([[False, False, False, True], [False, False, False, False]])
    assert torch.autograd.gradcheck(lambda t: enc(t, src_key_padding_mask=pad, is_causal=True)[0], (x,))
    assert torch.autograd.gradcheck(
        lambda t, m: dec(t, m, tgt_is_causal=True, memory_key_padding_mask=mem_pad)[0], (x, memory)
    )


# --- errors --------------------------------------------------------------------------------

CONFIG_ERRORS = [
    (dict(d_model=30), ValueError, r"d_model must be divisible by num_heads \(got d_model=30 and num_heads=4\)"),
    (dict(num_heads=0), ValueError, r"TransformerConfig.num_heads must be a positive int \(got 0\)"),
    (dict(src_vocab_size=True), ValueError, r"src_vocab_size must be a positive int \(got True\)"),
    (dict(num_decoder_layers=2.0), ValueError, r"num_decoder_layers must be a positive int \(got 2.0\)"),
    (dict(max_len=0), ValueError, r"max_len must be a positive int \(got 0\)"),
    (dict(dropout=1.0), ValueError, r"dropout must be a number in \[0, 1\) \(got 1.0\)"),
    (dict(dropout="0.1"), ValueError, r"dropout must be a number in \[0, 1\) \(got '0.1'\)"),
    (dict(activation="tanh"), ValueError, r"activation must be one of \('relu', 'gelu'\) \(got 'tanh'\)"),
    (dict(layer_norm_eps=0.0), ValueError, r"layer_norm_eps must be a positive number \(got 0.0\)"),
    (dict(positional="rope"), ValueError,
     r"positional must be one of \('sinusoidal', 'learned', 'none'\) \(got 'rope'\)"),
    (dict(d_model=15, num_heads=3), ValueError, r"d_model must be even for sinusoidal positions.*\(got 15\)"),
    (dict(pad_id=11), ValueError, r"pad_id must be None or an int in \[0, 11\).*\(got 11\)"),
    (dict(pad_id=-1), ValueError, r"pad_id must be None or an int in \[0, 11\).*\(got -1\)"),
    (dict(norm_first=1), TypeError, r"TransformerConfig.norm_first must be a bool \(got 1\)"),
    (dict(feed_forward="no"), TypeError, r"TransformerConfig.feed_forward must be a bool \(got 'no'\)"),
    (dict(residual="no"), TypeError, r"TransformerConfig.residual must be a bool \(got 'no'\)"),
]


@pytest.mark.parametrize("overrides,error,message", CONFIG_ERRORS)
def test_config_validation(overrides, error, message):
    with pytest.raises(error, match=message):
        config(**overrides)


def test_config_is_frozen_and_accepts_valid_variants():
    cfg = config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 8  # type: ignore[misc]
    assert config(d_model=15, num_heads=3, positional="learned").d_model == 15  # odd width is fine without sines
    assert config(pad_id=None).pad_id is None


def test_constructor_type_errors():
    for cls in (EncoderLayer, DecoderLayer, Encoder, Decoder, Transformer):
        with pytest.raises(TypeError, match=r"config must be a TransformerConfig \(got dict\)"):
            cls({"d_model": 16})
    with pytest.raises(ValueError, match=r"activation must be one of \('relu', 'gelu'\) \(got 'swish'\)"):
        FeedForward(8, 16, activation="swish")


def test_input_errors():
    model = small_model()
    src, tgt_in = tokens(V_SRC, S), tokens(V_TGT, T, seed=3)
    with pytest.raises(TypeError, match=r"src must be a torch.Tensor of token ids \(got list\)"):
        model([[1, 2]], tgt_in)
    with pytest.raises(TypeError, match=r"src must hold integer token ids \(got dtype torch.float32\)"):
        model(src.float(), tgt_in)
    with pytest.raises(ValueError, match=r"src must have shape \(B, length\) with length >= 1 \(got shape \(6,\)\)"):
        model(src[0], tgt_in)
    with pytest.raises(ValueError, match=r"tgt_in length must be at most max_len=32 \(got 33\)"):
        model(src, torch.ones(B, 33, dtype=torch.long))
    with pytest.raises(ValueError, match=r"src must hold token ids in \[0, 11\) \(got ids from 0 to 11\)"):
        model(torch.cat([src, torch.tensor([[0], [11], [1]])], dim=1), tgt_in)
    with pytest.raises(ValueError, match=r"tgt_in must hold token ids in \[0, 13\) \(got ids from -1 to"):
        model(src, tgt_in - 2)
    with pytest.raises(ValueError, match=r"src and tgt_in must have the same batch size \(got 3 and 2\)"):
        model(src, tgt_in[:2])
    with pytest.raises(TypeError, match=r"src_key_padding_mask must be a boolean tensor, True at padding \(got torch.float32"):
        model(src, tgt_in, torch.zeros(B, S))
    with pytest.raises(ValueError, match=r"src_key_padding_mask must have shape \(B, S\) = \(3, 6\) \(got \(3, 5\)\)"):
        model(src, tgt_in, torch.zeros(B, 5, dtype=torch.bool))
    memory = model.encode(src)
    with pytest.raises(ValueError, match=r"memory must be the encoder output of shape \(B, S, D\) = \(3, S, 16\) \(got \(3, 6, 8"):
        model.decode(tgt_in, memory[..., :8])
    with pytest.raises(TypeError, match=r"memory must be a torch.Tensor, the output of encode \(got NoneType\)"):
        model.decode(tgt_in, None)
    with pytest.raises(ValueError, match=r"src_key_padding_mask must have shape \(B, S\) = \(3, 6\) \(got \(3, 4\)\)"):
        model.decode(tgt_in, memory, torch.zeros(B, 4, dtype=torch.bool))
