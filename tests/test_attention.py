"""Tests for attnlib.attention.MultiHeadAttention: parity with torch.nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlib.attention import MultiHeadAttention, merge_masks

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
