"""Tests for attnlib.gpt (the GPT of chapter 10) and the key-value cache it uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlib.attention import KVCache, MultiHeadAttention
from attnlib.gpt import GPT, filter_logits
from attnlib.transformer import EncoderLayer

V = 11


def make_gpt(seed: int = 0, dtype: torch.dtype = torch.float64, **kwargs) -> GPT:
    torch.manual_seed(seed)
    config = dict(d_model=16, num_heads=4, num_layers=2, dropout=0.0, max_len=64)
    config.update(kwargs)
    return GPT(V, **config).to(dtype).eval()


def test_built_from_attnlib_layers_with_tied_embeddings():
    model = make_gpt()
    assert all(isinstance(layer, EncoderLayer) for layer in model.blocks.layers)
    assert all(isinstance(layer.self_attn, MultiHeadAttention) for layer in model.blocks.layers)
    assert model.head.weight is model.token_embedding.weight
    names = {name for name, _ in model.named_parameters()}
    assert "head.weight" not in names  # shared, counted once
    with torch.no_grad():
        model.token_embedding.weight[3].fill_(0.5)
    assert torch.equal(model.head.weight[3], torch.full((16,), 0.5, dtype=torch.float64))


def test_matches_pytorch_pre_norm_encoder_with_causal_mask():
    model = make_gpt(dim_feedforward=24)
    ref = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, activation="gelu", batch_first=True, norm_first=True),
        num_layers=2, norm=nn.LayerNorm(16), enable_nested_tensor=False,
    ).double().eval()
    for mine, theirs in zip(model.blocks.layers, ref.layers):
        a = mine.self_attn
        with torch.no_grad():
            theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            theirs.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
            theirs.linear1.load_state_dict(mine.feed_forward.linear1.state_dict())
            theirs.linear2.load_state_dict(mine.feed_forward.linear2.state_dict())
            theirs.norm1.load_state_dict(mine.norm1.state_dict())
            theirs.norm2.load_state_dict(mine.norm2.state_dict())
    ref.norm.load_state_dict(model.blocks.norm.state_dict())
    tokens = torch.randint(V, (3, 9), generator=torch.Generator().manual_seed(1))
    x = model.token_embedding(tokens) + model.position_embedding(torch.arange(9))
    mask = nn.Transformer.generate_square_subsequent_mask(9, dtype=torch.float64)  # PyTorch: -inf = not allowed
    expected = ref(x, mask=mask) @ model.token_embedding.weight.T
    torch.testing.assert_close(model(tokens), expected, rtol=1e-10, atol=1e-10)


def test_causal_a_future_token_never_changes_earlier_logits():
    model = make_gpt()
    tokens = torch.randint(V, (2, 12), generator=torch.Generator().manual_seed(2))
    base = model(tokens)
    for j in (0, 5, 11):
        changed = tokens.clone()
        changed[:, j] = (changed[:, j] + 1) % V
        out = model(changed)
        torch.testing.assert_close(out[:, :j], base[:, :j], rtol=0, atol=1e-12)
        assert (out[:, j] - base[:, j]).abs().max() > 1e-6  # the changed position itself does move


def test_cached_logits_equal_uncached_float64():
    model = make_gpt()
    tokens = torch.randint(V, (2, 20), generator=torch.Generator().manual_seed(3))
    full = model(tokens)
    cache = model.new_cache()
    pieces = [model(tokens[:, :5], kv_cache=cache)]  # the prompt in one go
    pieces += [model(tokens[:, t:t + 1], kv_cache=cache) for t in range(5, 12)]  # one token per step
    pieces.append(model(tokens[:, 12:20], kv_cache=cache))  # a chunk after a non-empty cache
    assert len(cache[0]) == 20 and all(len(c) == 20 for c in cache)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [dict(temperature=0), dict(temperature=1.0), dict(temperature=0.7, top_k=3), dict(temperature=1.3, top_p=0.8),
     dict(temperature=1.0, top_k=5, top_p=0.9)],
)
def test_cached_and_uncached_generation_give_identical_tokens(kwargs):
    model = make_gpt(seed=4)
    prompt = torch.randint(V, (3, 4), generator=torch.Generator().manual_seed(5))
    cached = model.generate(prompt, 30, use_cache=True, generator=torch.Generator().manual_seed(6), **kwargs)
    uncached = model.generate(prompt, 30, use_cache=False, generator=torch.Generator().manual_seed(6), **kwargs)
    assert cached.shape == (3, 34)
    assert torch.equal(cached[:, :4], prompt)
    assert torch.equal(cached, uncached)


def test_float32_cache_matches_too_and_generation_is_reproducible():
    model = make_gpt(seed=7, dtype=torch.float32)
    prompt = torch.randint(V, (1, 3), generator=torch.Generator().manual_seed(8))
    a = model.generate(prompt, 40, temperature=0.9, generator=torch.Generator().manual_seed(9))
    b = model.generate(prompt, 40, temperature=0.9, generator=torch.Generator().manual_seed(9), use_cache=False)
    c = model.generate(prompt, 40, temperature=0.9, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_greedy_follows_the_argmax_and_top_k_one_is_greedy():
    model = make_gpt(seed=11)
    prompt = torch.randint(V, (2, 3), generator=torch.Generator().manual_seed(12))
    greedy = model.generate(prompt, 10, temperature=0)
    for t in range(3, 13):
        assert torch.equal(greedy[:, t], model(greedy[:, :t])[:, -1].argmax(-1))
    top1 = model.generate(prompt, 10, temperature=1.5, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1, greedy)
    assert model.generate(prompt, 0).shape == prompt.shape


def test_generate_runs_in_eval_mode_and_restores_training_mode():
    model = make_gpt(seed=13, dropout=0.5).train()
    prompt = torch.zeros(1, 2, dtype=torch.long)
    a = model.generate(prompt, 15, temperature=0)
    assert model.training
    model.eval()
    assert torch.equal(a, model.generate(prompt, 15, temperature=0))


def test_filter_logits_temperature_top_k_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(filter_logits(logits, 2.0), logits / 2.0)
    kept = filter_logits(logits, top_k=2).isfinite()
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert filter_logits(logits, top_k=10).isfinite().all()  # k >= V keeps everything
    # top-p keeps the smallest most-likely set whose probability reaches p
    assert filter_logits(logits, top_p=0.5).isfinite().tolist() == [[True, False, False, False], [False, False, False, True]]
    assert filter_logits(logits, top_p=0.7).isfinite().tolist() == [[True, True, False, False], [False, False, True, True]]
    assert filter_logits(logits, top_p=0.81).isfinite().sum(-1).tolist() == [3, 3]
    assert filter_logits(logits, top_p=0.01).isfinite().sum(-1).tolist() == [1, 1]  # the top token always stays
    assert filter_logits(logits, top_p=1.0).isfinite().all()
    # kept tokens keep their relative probabilities (renormalised)
    probs = filter_logits(logits, top_p=0.7).softmax(-1)
    torch.testing.assert_close(probs[0, :2], torch.tensor([0.625, 0.375], dtype=torch.float64))
    # temperature is applied before top-p: a flatter distribution needs more tokens
    assert filter_logits(logits, temperature=5.0, top_p=0.7).isfinite().sum(-1).tolist() == [3, 3]


def test_sampling_frequencies_follow_the_filtered_distribution():
    torch.manual_seed(0)
    model = make_gpt(seed=14)
    prompt = torch.zeros(4000, 1, dtype=torch.long)
    logits = model(prompt[:1])[:, -1]
    expected = filter_logits(logits, temperature=0.8, top_p=0.9).softmax(-1)[0]
    out = model.generate(prompt, 1, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(out[:, 1], minlength=V).double() / 4000
    assert (freq[expected == 0] == 0).all()
    assert (freq - expected).abs().max() < 0.03


def test_kv_cache_errors():
    with pytest.raises(ValueError, match=r"max_len must be a positive int \(got 0\)"):
        KVCache(0)
    cache = KVCache(4)
    k = torch.zeros(1, 2, 3, 5)
    cache.append(k, k)
    with pytest.raises(ValueError, match=r"at most max_len=4 positions \(got 3 \+ 3 = 6\)"):
        cache.append(k, k)
    with pytest.raises(ValueError, match=r"keys must match the cache's"):
        cache.append(torch.zeros(1, 3, 1, 5), torch.zeros(1, 3, 1, 5))
    with pytest.raises(ValueError, match=r"keys must be a tensor of shape \(B, H, T, Dh\) \(got \(1, 2, 5\)\)"):
        cache.append(torch.zeros(1, 2, 5), k)
    with pytest.raises(ValueError, match=r"keys and values must have the same shape"):
        cache.append(k[:, :, :1], k[:, :, :1, :2])
    cache.reset()
    assert len(cache) == 0 and "length=0" in repr(cache)
    mha = MultiHeadAttention(8, 2)
    x = torch.zeros(1, 2, 8)
    with pytest.raises(TypeError, match=r"kv_cache must be a KVCache or None \(got list\)"):
        mha(x, x, x, kv_cache=[])  # type: ignore[arg-type]
    cache = KVCache(8)
    mha(x, x, x, is_causal=True, kv_cache=cache)
    with pytest.raises(ValueError, match=r"attn_mask cannot be combined with is_causal on a non-empty kv_cache"):
        mha(x, x, x, attn_mask=torch.ones(2, 4, dtype=torch.bool), is_causal=True, kv_cache=cache)


def test_gpt_bad_input_errors():
    model = make_gpt()
    ok = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(TypeError, match=r"tokens must be a torch.Tensor of token ids \(got list\)"):
        model([[1, 2]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tokens must hold integer token ids \(got dtype torch.float32\)"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, length\) with length >= 1 \(got shape \(3,\)\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tokens must hold token ids in \[0, 11\) \(got ids from 0 to 11\)"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match=r"at most max_len=64 \(got 0 cached \+ 65 new\)"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(TypeError, match=r"kv_cache must be None or a list of 2 KVCache"):
        model(ok, kv_cache=[KVCache(4)])
    with pytest.raises(ValueError, match=r"max_new_tokens must be a non-negative int \(got -1\)"):
        model.generate(ok, -1)
    with pytest.raises(ValueError, match=r"temperature must be a non-negative number, 0 for greedy \(got -0.5\)"):
        model.generate(ok, 2, temperature=-0.5)
    with pytest.raises(ValueError, match=r"top_k must be None or a positive int \(got 0\)"):
        model.generate(ok, 2, top_k=0)
    with pytest.raises(ValueError, match=r"top_p must be None or a number in \(0, 1\] \(got 1.5\)"):
        model.generate(ok, 2, top_p=1.5)
    with pytest.raises(TypeError, match=r"use_cache must be a bool \(got 1\)"):
        model.generate(ok, 2, use_cache=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None \(got int\)"):
        model.generate(ok, 2, generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"prompt length \+ max_new_tokens must be at most max_len=64 \(got 3 \+ 62\)"):
        model.generate(ok, 62)
    with pytest.raises(ValueError, match=r"temperature must be a positive number \(got 0\)"):
        filter_logits(torch.zeros(1, 3), temperature=0)
    with pytest.raises(ValueError, match=r"logits must be a floating tensor of shape \(B, V\) \(got shape \(3,\)"):
        filter_logits(torch.zeros(3))
    with pytest.raises(ValueError, match=r"TransformerConfig.d_model must be divisible by num_heads"):
        GPT(V, d_model=10, num_heads=4)


def test_a_few_steps_of_training_learn_a_repeating_sequence():
    torch.manual_seed(0)
    model = GPT(V, d_model=16, num_heads=2, num_layers=1, dropout=0.0, max_len=32)
    seq = torch.arange(24).remainder(6).unsqueeze(0)  # 0 1 2 3 4 5 0 1 ...
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(seq[:, :-1]).flatten(0, 1), seq[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    out = model.eval().generate(seq[:, :3], 12, temperature=0)
    assert torch.equal(out, seq[:, :15])


def test_attention_only_gpt_has_no_feed_forward_and_still_caches():
    torch.manual_seed(0)
    model = GPT(V, d_model=16, num_heads=2, num_layers=2, dropout=0.0, max_len=32, feed_forward=False).double().eval()
    assert model.config.feed_forward is False
    for layer in model.blocks.layers:
        assert isinstance(layer, EncoderLayer) and layer.feed_forward is None
        assert isinstance(layer.norm2, nn.Identity)
    assert not any("linear1" in name or "linear2" in name for name, _ in model.named_parameters())
    full = GPT(V, d_model=16, num_heads=2, num_layers=2, dropout=0.0, max_len=32)
    per_block = 2 * 16 * 64 + 64 + 16 + 2 * 16  # linear1, linear2 and norm2 of one block
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in model.parameters()) == 2 * per_block
    tokens = torch.randint(0, V, (2, 9))
    cache = model.new_cache()
    stepped = torch.cat([model(tokens[:, :5], kv_cache=cache), model(tokens[:, 5:], kv_cache=cache)], dim=1)
    torch.testing.assert_close(stepped, model(tokens))
    with pytest.raises(TypeError, match=r"feed_forward must be a bool \(got 0\)"):
        GPT(V, feed_forward=0)  # type: ignore[arg-type]
