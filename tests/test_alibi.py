"""Tests for what chapter 07 adds to attnlib.positional: ALiBi and RotarySelfAttention."""

from __future__ import annotations

import math

import pytest
import torch

from attnlib.attention import MultiHeadAttention
from attnlib.functional import attention_weights, causal_mask, scaled_dot_product_attention
from attnlib.positional import RotaryEmbedding, RotarySelfAttention, alibi_bias, alibi_slopes

f64 = torch.float64


# --- ALiBi slopes -------------------------------------------------------------------


def test_slopes_for_8_heads_are_the_papers():
    """Press et al. (2022), section 3: 1/2, 1/4, ..., 1/256 for 8 heads."""
    assert alibi_slopes(8, dtype=f64).tolist() == [2.0 ** -k for k in range(1, 9)]


def test_slopes_for_powers_of_two_are_geometric_from_2_to_the_minus_8_over_h():
    for H in (1, 2, 4, 16, 32):
        slopes = alibi_slopes(H, dtype=f64)
        expected = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], dtype=f64)
        torch.testing.assert_close(slopes, expected, atol=1e-15, rtol=0)
        assert slopes[-1].item() == pytest.approx(1 / 256)
    assert alibi_slopes(16, dtype=f64)[0].item() == pytest.approx(1 / math.sqrt(2))


def _paper_code_slopes(n: int) -> list:
    """The slope rule as the paper's released code writes it (recursion on n)."""
    def power_of_2(n: int) -> list:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _paper_code_slopes(2 * closest)[0::2][: n - closest]


def test_slopes_for_other_head_counts_follow_the_papers_rule():
    # 6 heads: the 4 slopes of H=4, then every other slope of H=8 (1/2, 1/8).
    assert alibi_slopes(6, dtype=f64).tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    assert alibi_slopes(3, dtype=f64).tolist() == [1 / 16, 1 / 256, 1 / 4]
    for H in range(1, 41):
        torch.testing.assert_close(alibi_slopes(H, dtype=f64), torch.tensor(_paper_code_slopes(H), dtype=f64),
                                   atol=1e-15, rtol=0)


def test_slopes_are_distinct_positive_and_keep_dtype():
    for H in range(1, 25):
        slopes = alibi_slopes(H, dtype=f64)
        assert slopes.shape == (H,)
        assert (slopes > 0).all() and (slopes < 1).all()
        assert len(set(slopes.tolist())) == H
    assert alibi_slopes(4).dtype == torch.float32


# --- ALiBi bias ---------------------------------------------------------------------


def test_causal_bias_values():
    H, T, S = 4, 5, 7
    bias = alibi_bias(H, T, S, dtype=f64)
    assert bias.shape == (H, T, S)
    slopes = alibi_slopes(H, dtype=f64)
    for h in range(H):
        for i in range(T):
            for j in range(S):
                expected = -slopes[h].item() * (i - j) if j <= i else -math.inf
                assert bias[h, i, j].item() == expected
    assert (bias.diagonal(dim1=-2, dim2=-1) == 0).all()


def test_causal_bias_is_a_causal_mask_on_its_own():
    bias = alibi_bias(8, 6)
    assert torch.equal(torch.isfinite(bias), causal_mask(6).expand(8, 6, 6))
    q, k = torch.randn(2, 8, 6, 4), torch.randn(2, 8, 6, 4)
    w = attention_weights(q, k, attn_mask=bias)
    assert (w.triu(diagonal=1) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 8, 6))


def test_symmetric_bias_values():
    H, T = 2, 6
    bias = alibi_bias(H, T, causal=False, dtype=f64)
    i = torch.arange(T, dtype=f64)
    expected = -alibi_slopes(H, dtype=f64)[:, None, None] * (i[:, None] - i[None, :]).abs()
    torch.testing.assert_close(bias, expected, atol=0, rtol=0)
    torch.testing.assert_close(bias, bias.transpose(-2, -1), atol=0, rtol=0)
    assert torch.isfinite(bias).all()


def test_bias_is_translation_invariant_and_only_ranks_by_distance():
    bias = alibi_bias(8, 10, dtype=f64)
    # Every diagonal (fixed i - j) is constant: only the distance matters.
    for offset in range(10):
        diag = bias.diagonal(offset=-offset, dim1=-2, dim2=-1)
        assert (diag == diag[:, :1]).all()


def test_bias_as_multihead_attention_mask_matches_manual_attention():
    torch.manual_seed(0)
    B, T, D, H = 2, 5, 16, 4
    mha = MultiHeadAttention(D, H, dtype=f64).eval()
    x = torch.randn(B, T, D, dtype=f64)
    bias = alibi_bias(H, T, dtype=f64)
    out, w = mha(x, x, x, attn_mask=bias[None], need_weights=True, average_attn_weights=False)
    q = mha.q_proj(x).view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, Dh)
    k = mha.k_proj(x).view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, Dh)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // H) + bias  # (B, H, T, T)
    torch.testing.assert_close(w, torch.softmax(scores, dim=-1), atol=1e-12, rtol=0)
    fused, _ = mha(x, x, x, attn_mask=bias[None])  # the fused path agrees
    torch.testing.assert_close(fused, out, atol=1e-12, rtol=0)


def test_bias_dtype_and_device_arguments():
    assert alibi_bias(2, 3).dtype == torch.float32
    assert alibi_bias(2, 3, dtype=torch.float16).dtype == torch.float16
    assert alibi_bias(2, 3, device=torch.device("cpu")).device.type == "cpu"


# --- RotarySelfAttention ------------------------------------------------------------


def test_rotary_attention_with_all_positions_equal_is_plain_multihead_attention():
    torch.manual_seed(0)
    m = RotarySelfAttention(16, 4).to(f64).eval()
    x = torch.randn(3, 6, 16, dtype=f64)
    zeros = torch.zeros(6, dtype=torch.long)
    for kwargs in ({}, {"is_causal": True}):
        ours, _ = m(x, positions=zeros, **kwargs)
        ref, _ = m.attn(x, x, x, **kwargs)
        torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)


def test_rotary_attention_matches_rotating_queries_and_keys_by_hand():
    torch.manual_seed(1)
    B, T, D, H = 2, 7, 16, 2
    m = RotarySelfAttention(D, H).to(f64).eval()
    x = torch.randn(B, T, D, dtype=f64)
    out, w = m(x, is_causal=True, need_weights=True)
    rope = RotaryEmbedding(D // H)
    q = rope(m.attn.q_proj(x).view(B, T, H, D // H).transpose(1, 2))  # (B, H, T, Dh)
    k = rope(m.attn.k_proj(x).view(B, T, H, D // H).transpose(1, 2))  # (B, H, T, Dh)
    v = m.attn.v_proj(x).view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, Dh)
    ref, ref_w = scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    ref = m.attn.out_proj(ref.transpose(1, 2).reshape(B, T, D))  # (B, T, D)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)
    assert w.shape == (B, H, T, T)


def test_rotary_attention_is_invariant_to_a_shift_of_all_positions():
    torch.manual_seed(2)
    m = RotarySelfAttention(16, 2).to(f64).eval()
    x = torch.randn(2, 5, 16, dtype=f64)
    pos = torch.arange(5)
    a, _ = m(x, positions=pos)
    b, _ = m(x, positions=pos + 37)
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    c, _ = m(x, positions=pos.flip(0))  # but the order matters
    assert (a - c).abs().max() > 1e-3


def test_rotary_attention_masks_and_no_weights_by_default():
    torch.manual_seed(3)
    m = RotarySelfAttention(8, 2).to(f64).eval()
    x = torch.randn(2, 4, 8, dtype=f64)
    out, w = m(x)
    assert out.shape == (2, 4, 8) and w is None
    padding = torch.tensor([[False, False, False, True], [False, False, False, False]])
    _, w = m(x, key_padding_mask=padding, need_weights=True)
    assert (w[0, :, :, 3] == 0).all() and (w[1, :, :, 3] > 0).all()
    _, w = m(x, is_causal=True, need_weights=True)
    assert (w.triu(diagonal=1) == 0).all()


def test_rotary_attention_gradcheck():
    torch.manual_seed(4)
    m = RotarySelfAttention(8, 2).to(f64)
    x = torch.randn(1, 3, 8, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: m(t, is_causal=True)[0], (x,))


# --- errors -------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match=r"num_heads must be a positive int \(got 0\)"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match=r"num_heads must be a positive int \(got 2.0\)"):
        alibi_slopes(2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_heads must be a positive int \(got -1\)"):
        alibi_bias(-1, 4)
    with pytest.raises(ValueError, match=r"target_len must be a positive int \(got 0\)"):
        alibi_bias(2, 0)
    with pytest.raises(ValueError, match=r"source_len must be a positive int \(got 0\)"):
        alibi_bias(2, 3, 0)
    with pytest.raises(TypeError, match=r"causal must be a bool \(got str\)"):
        alibi_bias(2, 3, causal="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dtype must be a floating-point torch.dtype \(got torch.int64\)"):
        alibi_bias(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"head_dim must be even.*\(got 3\)"):
        RotarySelfAttention(6, 2)
    with pytest.raises(ValueError, match=r"embed_dim must be divisible by num_heads"):
        RotarySelfAttention(6, 4)
    m = RotarySelfAttention(8, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, 8\) \(got \(1, 3, 6\)\)"):
        m(torch.zeros(1, 3, 6))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor \(got list\)"):
        m([0.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"positions must have shape \(T,\) = \(3,\) \(got \(4,\)\)"):
        m(torch.zeros(1, 3, 8), positions=torch.arange(4))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\) does not broadcast"):
        m(torch.zeros(1, 3, 8), attn_mask=torch.zeros(4, 4))
