"""Tests for attnlib.llama: RMSNorm, SwiGLU and the Llama decoder, against PyTorch and Hugging Face.

The reference is ``transformers``' ``LlamaForCausalLM`` (a test-only dependency), a tiny
random one with its weights copied into attnlib's model. Hugging Face computes two
things in float32 whatever the model's dtype: the RMSNorm (it casts the input to
float32) and the rotary cos/sin table (float32 frequencies and angles). So that a
float64 comparison checks the architecture rather than those roundings,
:func:`hf_in_float64` makes the reference model compute both in float64, the same
formulas without the casts; then the logits agree to 1e-12 (measured: about 1e-16).
Unpatched, Hugging Face's float64 model differs by its float32 rounding (about 1e-7
here), which one test bounds.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the network

import pytest
import torch
from torch import nn
from transformers import LlamaConfig as HFLlamaConfig
from transformers import LlamaForCausalLM
from llama_reference import LlamaRMSNorm, hf_in_float64

from attnlib.attention import KVCache
from attnlib.llama import LlamaBlock, LlamaConfig, LlamaModel, RMSNorm, SwiGLU

f64 = torch.float64
V, D, H, L, FF = 50, 32, 4, 2, 48


def hf_names(num_layers: int, tied: bool) -> dict:
    """Hugging Face's name of each attnlib parameter."""
    names = {"token_embedding.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "head.weight": "model.embed_tokens.weight" if tied else "lm_head.weight"}
    per_block = {"norm1": "input_layernorm", "self_attn.q_proj": "self_attn.q_proj",
                 "self_attn.k_proj": "self_attn.k_proj", "self_attn.v_proj": "self_attn.v_proj",
                 "self_attn.out_proj": "self_attn.o_proj", "norm2": "post_attention_layernorm",
                 "feed_forward.gate_proj": "mlp.gate_proj", "feed_forward.up_proj": "mlp.up_proj",
                 "feed_forward.down_proj": "mlp.down_proj"}
    for i in range(num_layers):
        for ours, theirs in per_block.items():
            names[f"blocks.{i}.{ours}.weight"] = f"model.layers.{i}.{theirs}.weight"
    return names


def make_pair(num_kv_heads=2, tied=True, seed=0, patch=True):
    """A tiny random Hugging Face Llama (norm weights random too) and attnlib's copy, float64, eval."""
    torch.manual_seed(seed)
    hf_config = HFLlamaConfig(
        vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=L, num_attention_heads=H,
        num_key_value_heads=num_kv_heads, rope_theta=500.0, rms_norm_eps=1e-5, max_position_embeddings=64,
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, pad_token_id=2, attn_implementation="sdpa",
    )
    hf = LlamaForCausalLM(hf_config).to(f64).eval()
    with torch.no_grad():
        for module in hf.modules():
            if isinstance(module, LlamaRMSNorm):
                module.weight.uniform_(0.5, 1.5)  # unit weights would hide a norm mix-up
    config = LlamaConfig(vocab_size=V, d_model=D, num_heads=H, num_kv_heads=num_kv_heads, num_layers=L,
                         dim_feedforward=FF, rope_base=500.0, rms_eps=1e-5, max_len=64, tie_embeddings=tied)
    ours = LlamaModel(config).to(f64).eval()
    hf_state = hf.state_dict()
    ours.load_state_dict({k: hf_state[v] for k, v in hf_names(L, tied).items()}, strict=True)
    return ours, (hf_in_float64(hf) if patch else hf)


def tokens(B=3, T=12, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- RMSNorm and SwiGLU ---------------------------------------------------------------


def test_rms_norm_matches_torch():
    ours = RMSNorm(D, eps=1e-5, dtype=f64)
    ref = nn.RMSNorm(D, eps=1e-5, dtype=f64)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    x = torch.randn(3, 7, D, dtype=f64) * 5
    torch.testing.assert_close(ours(x), ref(x), atol=1e-12, rtol=0)
    assert torch.allclose(RMSNorm(D, dtype=f64)(x).pow(2).mean(-1), torch.ones(3, 7, dtype=f64), atol=1e-5)


def test_swiglu_is_a_gated_mlp():
    ff = SwiGLU(D, FF, dtype=f64)
    x = torch.randn(2, 5, D, dtype=f64)
    gate, up = x @ ff.gate_proj.weight.T, x @ ff.up_proj.weight.T
    expected = (gate * torch.sigmoid(gate) * up) @ ff.down_proj.weight.T
    torch.testing.assert_close(ff(x), expected, atol=1e-12, rtol=0)
    assert all(m.bias is None for m in (ff.gate_proj, ff.up_proj, ff.down_proj))


def test_gradcheck_rms_norm_and_swiglu():
    norm, ff = RMSNorm(4, dtype=f64), SwiGLU(4, 6, dtype=f64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(norm, (x,))
    assert torch.autograd.gradcheck(ff, (x,))


# --- the decoder against Hugging Face --------------------------------------------------


@pytest.mark.parametrize("num_kv_heads,tied", [(2, True), (1, True), (4, False)])
def test_logits_match_hugging_face(num_kv_heads, tied):
    ours, hf = make_pair(num_kv_heads, tied)
    x = tokens()
    with torch.no_grad():
        expected = hf(x).logits
    torch.testing.assert_close(ours(x), expected, atol=1e-12, rtol=0)
    assert (ours.head.weight is ours.token_embedding.weight) == tied


def test_unpatched_hugging_face_differs_only_by_its_float32_rounding():
    ours, hf = make_pair(patch=False)
    x = tokens()
    with torch.no_grad():
        diff = (ours(x) - hf(x).logits).abs().max().item()
    assert diff < 1e-5


def test_block_structure():
    block = LlamaBlock(LlamaConfig(vocab_size=V, d_model=D, num_heads=H, num_kv_heads=2))
    attn = block.self_attn
    assert (attn.num_heads, attn.num_kv_heads, attn.head_dim) == (H, 2, D // H)
    assert all(m.bias is None for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj))
    assert block.rotary.layout == "halves" and block.rotary.head_dim == D // H


def test_interleaved_layout_with_permuted_query_key_rows_computes_the_same():
    """llama.cpp's layout: reorder each head's q/k rows to (2i, 2i + 1) pairs, rotate neighbours."""
    ours, _ = make_pair()
    config = LlamaConfig(**{**ours.config.__dict__, "rope_layout": "interleaved"})
    other = LlamaModel(config).to(f64).eval()
    Dh = D // H
    perm = torch.stack((torch.arange(Dh // 2), torch.arange(Dh // 2) + Dh // 2), dim=-1).flatten()  # (Dh,)
    state = dict(ours.state_dict())
    for name, value in state.items():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = value.size(0) // Dh
            state[name] = value.view(heads, Dh, D)[:, perm].reshape(-1, D)  # rows in llama.cpp's order
    other.load_state_dict(state)
    x = tokens()
    torch.testing.assert_close(other(x), ours(x), atol=1e-12, rtol=0)


def test_no_causal_leak():
    ours, _ = make_pair()
    x = tokens()
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % V
    a, b = ours(x), ours(y)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=0, rtol=0)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-6


# --- caching and generation ----------------------------------------------------------


def test_cached_forward_equals_full_forward():
    ours, _ = make_pair()
    x = tokens(T=10)
    full = ours(x)
    cache = ours.new_cache()
    with torch.no_grad():
        parts = [ours(x[:, :4], kv_cache=cache)] + [ours(x[:, t:t + 1], kv_cache=cache) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-12, rtol=0)
    assert isinstance(cache[0], KVCache) and len(cache[0]) == 10
    assert cache[0].keys is not None and cache[0].keys.shape == (3, 2, 64, D // H)  # only the 2 kv heads


def test_cached_generation_equals_uncached():
    ours, _ = make_pair()
    prompt = tokens(T=5)
    greedy = ours.generate(prompt, 12, temperature=0)
    torch.testing.assert_close(ours.generate(prompt, 12, temperature=0, use_cache=False), greedy, atol=0, rtol=0)
    sampled = [
        ours.generate(prompt, 12, temperature=0.8, top_k=20, top_p=0.9, use_cache=use_cache,
                      generator=torch.Generator().manual_seed(3))
        for use_cache in (True, False)
    ]
    torch.testing.assert_close(sampled[0], sampled[1], atol=0, rtol=0)
    assert sampled[0].shape == (3, 17)
    top1 = ours.generate(prompt, 12, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(top1, greedy, atol=0, rtol=0)


def test_greedy_generation_matches_hugging_face():
    ours, hf = make_pair()
    for row in tokens(B=3, T=6, seed=5):
        prompt = row[None]
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                               eos_token_id=2, pad_token_id=2)
        got = ours.generate(prompt, 20, temperature=0, eos_id=2)
        assert got.tolist() == expected.tolist()


def test_generation_stops_at_eos_and_pads_with_it():
    ours, _ = make_pair()
    prompt = tokens(B=3, T=4)
    free = ours.generate(prompt, 10, temperature=0)
    eos = int(free[0, 5])  # the second token row 0 generates
    stopped = ours.generate(prompt, 10, temperature=0, eos_id=eos)
    assert stopped[0, 5] == eos and (stopped[0, 5:] == eos).all()
    first_end = [int((r[4:] == eos).nonzero()[0]) if (r[4:] == eos).any() else None for r in free]
    for r, end in enumerate(first_end):
        if end is not None:
            assert stopped[r, 4:4 + end + 1].tolist() == free[r, 4:4 + end + 1].tolist()


def test_generate_restores_training_mode():
    ours, _ = make_pair()
    ours.train()
    ours.generate(tokens(T=3), 2, temperature=0)
    assert ours.training


# --- errors ------------------------------------------------------------------------


def test_config_errors():
    with pytest.raises(ValueError, match=r"LlamaConfig.d_model must be num_heads times an even head width "
                                         r"\(got d_model=30 and num_heads=4\)"):
        LlamaConfig(vocab_size=V, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match=r"LlamaConfig.d_model must be num_heads times an even head width "
                                         r"\(got d_model=36 and num_heads=4\)"):
        LlamaConfig(vocab_size=V, d_model=36, num_heads=4)  # head width 9 is odd
    with pytest.raises(ValueError, match=r"LlamaConfig.num_kv_heads must divide num_heads "
                                         r"\(got num_heads=4 and num_kv_heads=3\)"):
        LlamaConfig(vocab_size=V, num_kv_heads=3)
    with pytest.raises(ValueError, match=r"LlamaConfig.num_kv_heads must be None or a positive int \(got 0\)"):
        LlamaConfig(vocab_size=V, num_kv_heads=0)
    with pytest.raises(ValueError, match=r"LlamaConfig.vocab_size must be a positive int \(got 0\)"):
        LlamaConfig(vocab_size=0)
    with pytest.raises(ValueError, match=r"LlamaConfig.rope_layout must be one of \('halves', 'interleaved'\) "
                                         r"\(got 'neox'\)"):
        LlamaConfig(vocab_size=V, rope_layout="neox")
    with pytest.raises(ValueError, match=r"LlamaConfig.rms_eps must be a positive number \(got 0.0\)"):
        LlamaConfig(vocab_size=V, rms_eps=0.0)
    with pytest.raises(TypeError, match=r"LlamaConfig.tie_embeddings must be a bool \(got 1\)"):
        LlamaConfig(vocab_size=V, tie_embeddings=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"config must be a LlamaConfig \(got dict\)"):
        LlamaModel({"vocab_size": V})  # type: ignore[arg-type]


def test_module_errors():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 8\) \(got \(2, 3, 4\)\)"):
        RMSNorm(8)(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"eps must be a positive number \(got -1.0\)"):
        RMSNorm(8, eps=-1.0)
    with pytest.raises(ValueError, match=r"hidden_dim must be a positive int \(got 0\)"):
        SwiGLU(8, 0)


def test_forward_and_generate_errors():
    ours, _ = make_pair()
    with pytest.raises(ValueError, match=r"tokens must hold token ids in \[0, 50\) \(got ids from 0 to 50\)"):
        ours(torch.tensor([[0, 50]]))
    with pytest.raises(TypeError, match=r"tokens must hold integer token ids \(got dtype torch.float32\)"):
        ours(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"sequence length must be at most max_len=64 \(got 0 cached \+ 65 new\)"):
        ours(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(TypeError, match=r"kv_cache must be None or a list of 2 KVCache \(use new_cache\(\)\)"):
        ours(tokens(), kv_cache=[KVCache(64)])
    with pytest.raises(ValueError, match=r"prompt length \+ max_new_tokens must be at most max_len=64 \(got 12 \+ 60\)"):
        ours.generate(tokens(), 60)
    with pytest.raises(ValueError, match=r"temperature must be a non-negative number, 0 for greedy \(got -1\)"):
        ours.generate(tokens(), 2, temperature=-1)
    with pytest.raises(ValueError, match=r"top_p must be None or a number in \(0, 1\] \(got 0\)"):
        ours.generate(tokens(), 2, top_p=0)
    with pytest.raises(ValueError, match=r"eos_id must be None or a token id in \[0, 50\) \(got 50\)"):
        ours.generate(tokens(), 2, eos_id=50)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None \(got int\)"):
        ours.generate(tokens(), 2, generator=0)  # type: ignore[arg-type]


def test_attention_only_model_matches_hugging_face_with_its_mlps_zeroed():
    """feed_forward=False (chapter 17): Hugging Face's Llama whose MLP outputs are zero, in float64."""
    ours_full, hf = make_pair()
    with torch.no_grad():
        for layer in hf.model.layers:
            layer.mlp.down_proj.weight.zero_()  # the MLP branch adds exactly zero
    config = LlamaConfig(**{**ours_full.config.__dict__, "feed_forward": False})
    ours = LlamaModel(config).to(f64).eval()
    kept = {k: v for k, v in ours_full.state_dict().items() if ".feed_forward." not in k and ".norm2." not in k}
    ours.load_state_dict(kept, strict=True)
    x = tokens()
    with torch.no_grad():
        diff = (ours(x) - hf(x).logits).abs().max().item()
    assert diff < 1e-10, diff


def test_attention_only_block_has_no_feed_forward_parameters():
    full = LlamaBlock(LlamaConfig(vocab_size=V, d_model=D, num_heads=H, dim_feedforward=FF))
    bare = LlamaBlock(LlamaConfig(vocab_size=V, d_model=D, num_heads=H, dim_feedforward=FF, feed_forward=False))
    assert bare.feed_forward is None and bare.norm2 is None
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(full) - n(bare) == 3 * D * FF + D  # SwiGLU's three matrices and the second RMSNorm
    x = torch.randn(2, 5, D)
    assert bare(x, torch.arange(5)).shape == (2, 5, D)


def test_feed_forward_must_be_a_bool():
    with pytest.raises(TypeError, match=r"LlamaConfig.feed_forward must be a bool \(got 0\)"):
        LlamaConfig(vocab_size=V, feed_forward=0)
