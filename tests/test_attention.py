"""Tests for attnlib.attention.MultiHeadAttention: parity with torch.nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlib.attention import KVCache, MultiHeadAttention, merge_masks

TOL = 1e-10
f64 = torch.float64
D, H = 16, 4


def make_pair(kdim=None, vdim=None, bias=True, seed=0):
    """An attnlib module and a torch module with the same (random, non-zero-bias) weights."""
    torch.manual_seed(seed)
    ours = MultiHeadAttention(D, H, kdim=kdim, vdim=vdim, bias=bias, dtype=f64)
    ref = nn.MultiheadAttention(D, H, kdim=kdim, vdim=vdim, bias=bias, batch_first=True, dtype=f64)
    with torch.no_grad():
        if bias:  # zero biases would hide a bias mix-up
            for p in (ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias, ours.out_proj.bias):
                p.normal_()
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        else:
            ref.q_proj_weight.copy_(ours.q_proj.weight)
            ref.k_proj_weight.copy_(ours.k_proj.weight)
            ref.v_proj_weight.copy_(ours.v_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            ref.out_proj.bias.copy_(ours.out_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
    return ours.eval(), ref.eval()


def inputs(B=3, T=5, S=6, kdim=D, vdim=D, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, T, D, generator=g, dtype=f64),
        torch.randn(B, S, kdim, generator=g, dtype=f64),
        torch.randn(B, S, vdim, generator=g, dtype=f64),
    )


def kpm(B=3, S=6):
    m = torch.zeros(B, S, dtype=torch.bool)
    m[1, 4:] = True  # True = padding
    m[2, 1] = True
    return m


def as_float(mask):
    """A boolean padding mask as the float mask torch wants beside a float attn_mask."""
    return torch.zeros(mask.shape, dtype=f64).masked_fill(mask, float("-inf"))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("use_kpm", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_parity_outputs(fused, use_kpm, bias):
    ours, ref = make_pair(bias=bias)
    ours.fused = fused
    q, k, v = inputs()
    mask = kpm() if use_kpm else None
    out, w = ours(q, k, v, key_padding_mask=mask)
    assert w is None
    ref_out, _ = ref(q, k, v, key_padding_mask=mask, need_weights=False)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)


@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("use_kpm", [False, True])
def test_parity_weights(average, use_kpm):
    ours, ref = make_pair()
    q, k, v = inputs()
    mask = kpm() if use_kpm else None
    out, w = ours(q, k, v, key_padding_mask=mask, need_weights=True, average_attn_weights=average)
    ref_out, ref_w = ref(q, k, v, key_padding_mask=mask, need_weights=True, average_attn_weights=average)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=TOL, rtol=0)
    assert w.shape == ((3, 5, 6) if average else (3, H, 5, 6))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", ["TS", "BHTS"])
def test_parity_attn_mask_opposite_boolean_convention(fused, shape):
    ours, ref = make_pair()
    ours.fused = fused
    q, k, v = inputs()
    g = torch.Generator().manual_seed(5)
    allowed = torch.rand((5, 6) if shape == "TS" else (3, H, 5, 6), generator=g) > 0.4
    allowed[..., 0] = True
    ref_mask = ~allowed if shape == "TS" else (~allowed).reshape(3 * H, 5, 6)  # torch: True = NOT allowed
    out, _ = ours(q, k, v, attn_mask=allowed)
    ref_out, _ = ref(q, k, v, attn_mask=ref_mask, need_weights=False)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_parity_float_mask_and_padding_together(fused):
    ours, ref = make_pair()
    ours.fused = fused
    q, k, v = inputs()
    bias = torch.randn(5, 6, dtype=f64)
    out, _ = ours(q, k, v, attn_mask=bias, key_padding_mask=kpm())
    ref_out, _ = ref(q, k, v, attn_mask=bias, key_padding_mask=as_float(kpm()), need_weights=False)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_parity_causal(fused):
    ours, ref = make_pair()
    ours.fused = fused
    x = inputs(T=6)[0]
    causal_ref = nn.Transformer.generate_square_subsequent_mask(6, dtype=f64)
    out, _ = ours(x, x, x, is_causal=True)
    ref_out, _ = ref(x, x, x, attn_mask=causal_ref, need_weights=False)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)
    out_kpm, _ = ours(x, x, x, is_causal=True, key_padding_mask=kpm())
    ref_kpm, _ = ref(x, x, x, attn_mask=causal_ref, key_padding_mask=as_float(kpm()), need_weights=False)
    torch.testing.assert_close(out_kpm, ref_kpm, atol=TOL, rtol=0)


def test_parity_cross_attention_with_other_widths():
    ours, ref = make_pair(kdim=10, vdim=7)
    q, k, v = inputs(kdim=10, vdim=7)
    out, w = ours(q, k, v, need_weights=True)
    ref_out, ref_w = ref(q, k, v)
    torch.testing.assert_close(out, ref_out, atol=TOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=TOL, rtol=0)


def test_fused_and_readable_paths_agree_float32_and_gradients():
    ours, _ = make_pair()
    ours = ours.float()
    q, k, v = (t.float() for t in inputs())
    ours.fused = True
    a, _ = ours(q, k, v, key_padding_mask=kpm())
    ga = torch.autograd.grad(a.sum(), list(ours.parameters()))
    ours.fused = False
    b, _ = ours(q, k, v, key_padding_mask=kpm())
    gb = torch.autograd.grad(b.sum(), list(ours.parameters()))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_parameter_names_and_count_match_torch():
    ours, ref = make_pair()
    assert {n for n, _ in ours.named_parameters()} >= {"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight"}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_padded_keys_change_nothing():
    ours, _ = make_pair()
    q, k, v = inputs(B=1, S=4)
    out, _ = ours(q, k, v)
    k_pad = torch.cat([k, torch.randn(1, 3, D, dtype=f64) * 50], dim=1)
    v_pad = torch.cat([v, torch.randn(1, 3, D, dtype=f64) * 50], dim=1)
    pad = torch.tensor([[False] * 4 + [True] * 3])
    for fused in (True, False):
        ours.fused = fused
        out_pad, _ = ours(q, k_pad, v_pad, key_padding_mask=pad)
        torch.testing.assert_close(out_pad, out, atol=TOL, rtol=0)


def test_no_causal_leak():
    ours, _ = make_pair()
    x = inputs(T=6)[0]
    out, _ = ours(x, x, x, is_causal=True)
    x2 = x.clone()
    x2[:, 3:] = torch.randn_like(x2[:, 3:])
    out2, _ = ours(x2, x2, x2, is_causal=True)
    torch.testing.assert_close(out2[:, :3], out[:, :3], atol=TOL, rtol=0)


def test_permutation_equivariance():
    ours, _ = make_pair()
    x = inputs()[0]
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(0))
    out, _ = ours(x, x, x)
    out_p, _ = ours(x[:, perm], x[:, perm], x[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], atol=TOL, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_fully_padded_sequence_is_finite(fused):
    ours, _ = make_pair()
    ours.fused = fused
    q, k, v = inputs()
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[0] = True  # every key of sequence 0 is padding
    out, _ = ours(q, k, v, key_padding_mask=pad)
    assert torch.isfinite(out).all()
    # With nothing to attend to, the heads output zeros: only out_proj's bias is left.
    torch.testing.assert_close(out[0], ours.out_proj.bias.expand(5, D), atol=TOL, rtol=0)


def test_dropout_only_in_training():
    mha = MultiHeadAttention(D, H, dropout=0.5, dtype=f64)
    x = inputs()[0]
    mha.eval()
    a, _ = mha(x, x, x)
    b, _ = mha(x, x, x)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    mha.train()
    torch.manual_seed(0)
    c, _ = mha(x, x, x)
    assert not torch.allclose(a, c)


def test_gradcheck_module():
    mha = MultiHeadAttention(4, 2, dtype=f64)
    x = torch.randn(1, 3, 4, dtype=f64, requires_grad=True)
    mha.fused = False
    assert torch.autograd.gradcheck(lambda t: mha(t, t, t, is_causal=True)[0], (x,))


# --- errors ---------------------------------------------------------------------


def test_error_embed_dim_not_divisible():
    with pytest.raises(ValueError, match=r"embed_dim must be divisible by num_heads \(got embed_dim=10 and num_heads=3\)"):
        MultiHeadAttention(10, 3)


def test_error_bad_sizes():
    with pytest.raises(ValueError, match=r"num_heads must be a positive int \(got 0\)"):
        MultiHeadAttention(8, 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\) \(got 1.0\)"):
        MultiHeadAttention(8, 2, dropout=1.0)


def test_error_wrong_rank_and_width():
    mha = MultiHeadAttention(D, H, dtype=f64)
    q, k, v = inputs()
    with pytest.raises(ValueError, match=r"query must be batch-first with shape \(B, length, width\) \(got shape \(5, 16\)\)"):
        mha(q[0], k, v)
    with pytest.raises(ValueError, match=r"key must have width 16 \(got shape \(3, 6, 8\)\)"):
        mha(q, k[..., :8], v)
    with pytest.raises(ValueError, match=r"key and value must have the same length S \(got 6 and 5\)"):
        mha(q, k, v[:, :5])
    with pytest.raises(ValueError, match=r"same batch size \(got 3, 2, 3\)"):
        mha(q, k[:2], v)


def test_error_masks():
    mha = MultiHeadAttention(D, H, dtype=f64)
    q, k, v = inputs()
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, S\) = \(3, 6\) \(got \(3, 5\)\)"):
        mha(q, k, v, key_padding_mask=torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"key_padding_mask must be torch.bool.*got torch.int64"):
        mha(q, k, v, key_padding_mask=torch.zeros(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(6, 5\) does not broadcast"):
        mha(q, k, v, attn_mask=torch.ones(6, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"attn_mask must be torch.bool.*got torch.float32"):
        mha(q, k, v, attn_mask=torch.zeros(5, 6))


def test_merge_masks_returns_none_without_masks():
    assert merge_masks(None, None, False, 2, 2, 3, 3, f64, torch.device("cpu")) is None


# --- grouped-query attention -------------------------------------------------------


def gqa_inputs(B=2, T=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g, dtype=f64)


def test_gqa_with_as_many_kv_heads_as_heads_is_plain_mha():
    torch.manual_seed(0)
    plain = MultiHeadAttention(D, H, dtype=f64)
    torch.manual_seed(0)
    grouped = MultiHeadAttention(D, H, num_kv_heads=H, dtype=f64)
    assert grouped.num_kv_heads == plain.num_kv_heads == H
    assert list(grouped.state_dict()) == list(plain.state_dict())
    x = gqa_inputs()
    torch.testing.assert_close(grouped(x, x, x, is_causal=True)[0], plain(x, x, x, is_causal=True)[0], atol=0, rtol=0)


@pytest.mark.parametrize("num_kv_heads", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("is_causal", [False, True])
def test_gqa_parity_with_sdpa_enable_gqa(num_kv_heads, fused, is_causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, num_kv_heads=num_kv_heads, fused=fused, dtype=f64).eval()
    with torch.no_grad():
        for p in (mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias, mha.out_proj.bias):
            p.normal_()
    Dh = D // H
    assert mha.k_proj.weight.shape == mha.v_proj.weight.shape == (num_kv_heads * Dh, D)
    x = gqa_inputs()
    B, T, _ = x.shape
    q = mha.q_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    k = mha.k_proj(x).view(B, T, num_kv_heads, Dh).transpose(1, 2)  # (B, Hkv, T, Dh)
    v = mha.v_proj(x).view(B, T, num_kv_heads, Dh).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)  # (B, H, T, Dh)
    ref = mha.out_proj(ref.transpose(1, 2).reshape(B, T, D))
    out, _ = mha(x, x, x, is_causal=is_causal)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_gqa_query_heads_of_a_group_share_one_kv_head():
    """Query head h reads key/value head h // (H / Hkv), as Hugging Face's repeat_kv."""
    mha = MultiHeadAttention(D, H, num_kv_heads=2, dtype=f64).eval()
    x = gqa_inputs()
    with torch.no_grad():
        mha.q_proj.weight.copy_(mha.q_proj.weight[:4].repeat(H, 1))  # every query head asks the same
    _, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)  # (B, H, T, S)
    torch.testing.assert_close(weights[:, 0], weights[:, 1], atol=1e-14, rtol=0)  # group 0: kv head 0
    torch.testing.assert_close(weights[:, 2], weights[:, 3], atol=1e-14, rtol=0)  # group 1: kv head 1
    assert (weights[:, 1] - weights[:, 2]).abs().max() > 1e-3  # the groups read different keys


def test_gqa_with_other_key_and_value_widths():
    mha = MultiHeadAttention(D, H, kdim=6, vdim=10, num_kv_heads=1, dtype=f64)
    assert mha.k_proj.weight.shape == (D // H, 6) and mha.v_proj.weight.shape == (D // H, 10)
    q, k, v = inputs(kdim=6, vdim=10)
    out, weights = mha(q, k, v, need_weights=True, average_attn_weights=False)
    assert out.shape == (3, 5, D) and weights.shape == (3, H, 5, 6)


@pytest.mark.parametrize("num_kv_heads", [1, 2, H])
def test_gqa_cache_stores_only_kv_heads_and_incremental_equals_full(num_kv_heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, num_kv_heads=num_kv_heads, dtype=f64).eval()
    x = gqa_inputs(T=7)
    full, _ = mha(x, x, x, is_causal=True)
    cache = KVCache(max_len=7)
    with torch.no_grad():
        first, _ = mha(x[:, :3], x[:, :3], x[:, :3], is_causal=True, kv_cache=cache)  # the prompt at once
        steps = [mha(x[:, t:t + 1], x[:, t:t + 1], x[:, t:t + 1], is_causal=True, kv_cache=cache)[0] for t in range(3, 7)]
    assert cache.keys is not None and cache.values is not None
    assert cache.keys.shape == cache.values.shape == (2, num_kv_heads, 7, D // H)
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, atol=1e-12, rtol=0)


def test_gqa_extra_repr():
    assert "num_kv_heads" not in repr(MultiHeadAttention(D, H))
    assert "num_heads=4, num_kv_heads=2, head_dim=4" in repr(MultiHeadAttention(D, H, num_kv_heads=2))


def test_error_num_kv_heads():
    with pytest.raises(ValueError, match=r"num_kv_heads must divide num_heads \(got num_heads=4 and num_kv_heads=3\)"):
        MultiHeadAttention(D, H, num_kv_heads=3)
    with pytest.raises(ValueError, match=r"num_kv_heads must be None or a positive int \(got 0\)"):
        MultiHeadAttention(D, H, num_kv_heads=0)
    with pytest.raises(ValueError, match=r"num_kv_heads must divide num_heads \(got num_heads=4 and num_kv_heads=8\)"):
        MultiHeadAttention(D, H, num_kv_heads=8)


def test_error_attend_shapes():
    mha = MultiHeadAttention(D, H, num_kv_heads=2, dtype=f64)
    q = torch.zeros(2, H, 5, 4, dtype=f64)
    kv = torch.zeros(2, 2, 5, 4, dtype=f64)
    with pytest.raises(ValueError, match=r"k must have shape \(B, 2, length, 4\) \(got \(2, 4, 5, 4\)\)"):
        mha.attend(q, q, q)
    with pytest.raises(ValueError, match=r"q must have shape \(B, 4, length, 4\) \(got \(2, 2, 5, 4\)\)"):
        mha.attend(kv, kv, kv)
    with pytest.raises(ValueError, match=r"k and v must have the same shape and q's batch size"):
        mha.attend(q, kv, kv[:, :, :3])
