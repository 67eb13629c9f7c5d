"""Tests for attnlib.functional: parity with PyTorch's SDPA, properties, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib.functional import (
    attention_weights,
    causal_mask,
    check_attn_mask,
    padding_mask,
    safe_softmax,
    scaled_dot_product_attention,
)

TOL = 1e-10
f64 = torch.float64


def qkv(B=2, H=3, T=5, S=7, Dh=8, Dv=6, dtype=f64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, Dh, generator=g, dtype=dtype)
    k = torch.randn(B, H, S, Dh, generator=g, dtype=dtype)
    v = torch.randn(B, H, S, Dv, generator=g, dtype=dtype)
    return q, k, v


def random_bool_mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) > 0.3
    mask[..., 0] = True  # every query keeps at least one key: PyTorch's reference has no NaN then
    return mask


# --- parity with torch.nn.functional.scaled_dot_product_attention -------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scale": 0.37},
        {"is_causal": True},
        {"attn_mask": "bool-TS"},
        {"attn_mask": "bool-BHTS"},
        {"attn_mask": "bool-B1TS"},
        {"attn_mask": "float-TS"},
        {"attn_mask": "float-BHTS"},
        {"attn_mask": "bool-TS", "scale": 2.0},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain",
)
def test_parity_with_torch_sdpa(kwargs):
    q, k, v = qkv()
    B, H, T, S = 2, 3, 5, 7
    kwargs = dict(kwargs)
    spec = kwargs.get("attn_mask")
    if spec is not None:
        kind, shape_name = spec.split("-")
        shape = {"TS": (T, S), "BHTS": (B, H, T, S), "B1TS": (B, 1, T, S)}[shape_name]
        if kind == "bool":
            kwargs["attn_mask"] = random_bool_mask(shape)
        else:
            kwargs["attn_mask"] = torch.randn(shape, dtype=f64, generator=torch.Generator().manual_seed(3))
    ours = scaled_dot_product_attention(q, k, v, **kwargs)
    ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)


def test_causal_with_more_keys_than_queries_matches_torch_alignment():
    q, k, v = qkv(T=3, S=6)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, is_causal=True),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
        atol=TOL,
        rtol=0,
    )


def test_unbatched_three_dim_inputs_match_torch():
    q, k, v = (t[0] for t in qkv())  # (H, T, Dh): any number of leading dims
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=TOL, rtol=0
    )


def test_need_weights_returns_the_weights_that_multiply_values():
    q, k, v = qkv()
    out, weights = scaled_dot_product_attention(q, k, v, need_weights=True)
    torch.testing.assert_close(out, weights @ v, atol=TOL, rtol=0)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    torch.testing.assert_close(weights, torch.softmax(scores, dim=-1), atol=TOL, rtol=0)


def test_dropout_zero_is_deterministic_and_positive_dropout_changes_weights():
    q, k, v = qkv()
    a = scaled_dot_product_attention(q, k, v, dropout_p=0.0)
    torch.testing.assert_close(a, scaled_dot_product_attention(q, k, v), atol=0, rtol=0)
    torch.manual_seed(0)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, need_weights=True)
    assert (w == 0).any()  # some weights were dropped
    kept = w[w != 0]
    assert (kept > 0).all()


# --- properties -----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 6),
    S=st.integers(1, 6),
    Dh=st.integers(1, 8),
    seed=st.integers(0, 10_000),
    logit_scale=st.sampled_from([1.0, 10.0, 1e3]),
)
def test_weights_are_a_probability_distribution(T, S, Dh, seed, logit_scale):
    q, k, _ = qkv(B=2, H=1, T=T, S=S, Dh=Dh, seed=seed)
    w = attention_weights(q * logit_scale, k)
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-12, rtol=0)


def test_permutation_equivariance_without_positions():
    q, k, v = qkv(T=6, S=6)
    x_perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    out = scaled_dot_product_attention(q, k, v)
    # Permuting the queries permutes the outputs the same way...
    out_q = scaled_dot_product_attention(q[..., x_perm, :], k, v)
    torch.testing.assert_close(out_q, out[..., x_perm, :], atol=TOL, rtol=0)
    # ...and permuting the keys and values together changes nothing.
    out_kv = scaled_dot_product_attention(q, k[..., x_perm, :], v[..., x_perm, :])
    torch.testing.assert_close(out_kv, out, atol=TOL, rtol=0)


def test_no_causal_leak_later_tokens_do_not_change_earlier_outputs():
    q, k, v = qkv(T=6, S=6)
    out = scaled_dot_product_attention(q, k, v, is_causal=True)
    for t in range(5):
        k2, v2 = k.clone(), v.clone()
        k2[..., t + 1 :, :] = torch.randn_like(k2[..., t + 1 :, :])
        v2[..., t + 1 :, :] = torch.randn_like(v2[..., t + 1 :, :])
        out2 = scaled_dot_product_attention(q, k2, v2, is_causal=True)
        torch.testing.assert_close(out2[..., : t + 1, :], out[..., : t + 1, :], atol=TOL, rtol=0)
        assert not torch.allclose(out2[..., t + 1 :, :], out[..., t + 1 :, :])


def test_padded_keys_change_nothing():
    q, k, v = qkv(B=1, H=2, T=4, S=5)
    pad_k = torch.cat([k, 100 * torch.randn(1, 2, 3, 8, dtype=f64)], dim=-2)
    pad_v = torch.cat([v, 100 * torch.randn(1, 2, 3, 6, dtype=f64)], dim=-2)
    keep = ~padding_mask(torch.tensor([5]), max_len=8)[:, None, None, :]  # (B, 1, 1, S): True = may attend
    out, w = scaled_dot_product_attention(q, pad_k, pad_v, attn_mask=keep, need_weights=True)
    torch.testing.assert_close(out, scaled_dot_product_attention(q, k, v), atol=TOL, rtol=0)
    assert (w[..., 5:] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_not_nan(dtype, mask_kind):
    q, k, v = qkv(dtype=dtype)
    allowed = torch.ones(5, 7, dtype=torch.bool)
    allowed[2] = False  # query 2 may attend to nothing
    if mask_kind == "bool":
        mask = allowed
    else:
        mask = torch.zeros(5, 7, dtype=dtype).masked_fill(~allowed, float("-inf"))
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, need_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (out[..., 2, :] == 0).all() and (w[..., 2, :] == 0).all()
    if dtype == torch.float64:  # the other rows still match PyTorch's
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


def test_fully_masked_rows_have_finite_zero_gradients():
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=1, T=3, S=4))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[..., 1, :] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_large_logits_stay_finite_in_low_precision(dtype):
    q, k, v = qkv(dtype=dtype)
    out = scaled_dot_product_attention(q * 300, k * 300, v)
    assert torch.isfinite(out).all()
    ref = scaled_dot_product_attention(*(t.double() for t in (q * 300, k * 300, v)))
    # Near-one-hot weights: the output is close to one value row per query.
    assert (out.double() - ref).abs().max() < 0.1


def test_safe_softmax_matches_softmax_on_finite_rows_and_handles_empty_rows():
    x = torch.randn(4, 9, dtype=f64)
    torch.testing.assert_close(safe_softmax(x), torch.softmax(x, -1), atol=TOL, rtol=0)
    x[1] = float("-inf")
    y = safe_softmax(x)
    assert (y[1] == 0).all()
    torch.testing.assert_close(y[0], torch.softmax(x[0], -1), atol=TOL, rtol=0)
    # Large logits do not overflow.
    big = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float32)
    assert torch.isfinite(safe_softmax(big)).all()


def test_causal_and_padding_helpers():
    m = causal_mask(3, 4)
    assert m.dtype == torch.bool
    assert m.tolist() == [[True, False, False, False], [True, True, False, False], [True, True, True, False]]
    assert causal_mask(2).shape == (2, 2)
    p = padding_mask(torch.tensor([2, 0, 3]))
    assert p.tolist() == [[False, False, True], [True, True, True], [False, False, False]]
    assert padding_mask(torch.tensor([1]), max_len=3).tolist() == [[False, True, True]]


# --- gradients ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"attn_mask": "bool"}, {"attn_mask": "float"}])
def test_gradcheck_attention(kwargs):
    q, k, v = (t.requires_grad_() for t in qkv(B=1, H=2, T=3, S=4, Dh=3, Dv=2))
    kwargs = dict(kwargs)
    if kwargs.get("attn_mask") == "bool":
        kwargs["attn_mask"] = random_bool_mask((3, 4))
    elif kwargs.get("attn_mask") == "float":
        kwargs["attn_mask"] = torch.randn(3, 4, dtype=f64)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, **kwargs), (q, k, v))


def test_gradcheck_safe_softmax_with_masked_entries():
    x = torch.randn(3, 5, dtype=f64)
    x[0, 1] = float("-inf")
    x = x.requires_grad_()
    assert torch.autograd.gradcheck(safe_softmax, (x,))


# --- errors ---------------------------------------------------------------------


def test_error_mismatched_query_key_width():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"query and key must have the same width.*query width 8 and key width 4"):
        scaled_dot_product_attention(q, k[..., :4], v)


def test_error_key_value_length():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"key and value must have the same length S \(got 7 and 6\)"):
        scaled_dot_product_attention(q, k, v[..., :6, :])


def test_error_rank():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"query must have at least 2 dimensions.*got shape \(8,\)"):
        scaled_dot_product_attention(q[0, 0, 0], k, v)
    with pytest.raises(ValueError, match=r"same number of dimensions \(got 3, 4 and 4\)"):
        scaled_dot_product_attention(q[0], k, v)


def test_error_batch_dims_are_not_silently_broadcast():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"same leading \(batch, head\) dimensions"):
        scaled_dot_product_attention(q[:1], k, v)


def test_error_dtypes():
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"query must be a floating-point tensor \(got dtype torch.int64\)"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(TypeError, match=r"must share a dtype"):
        scaled_dot_product_attention(q, k.float(), v)
    with pytest.raises(TypeError, match=r"query must be a torch.Tensor \(got list\)"):
        scaled_dot_product_attention([1.0], k, v)


def test_error_mask_dtype():
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"attn_mask must be torch.bool.*got torch.int64"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(TypeError, match=r"attn_mask must be torch.bool.*got torch.float32"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(5, 7))


def test_error_mask_that_does_not_broadcast():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"attn_mask of shape \(5, 6\) does not broadcast.*\(2, 3, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask must have between 2 and 4 dimensions.*got shape \(7,\)"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 3, 5, 7\) does not broadcast"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 3, 5, 7, dtype=torch.bool))


def test_error_mask_and_is_causal_together():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"either attn_mask or is_causal=True, not both"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.bool), is_causal=True)


def test_error_dropout_range():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\) \(got 1.5\)"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.5)


def test_error_helpers():
    with pytest.raises(ValueError, match=r"target_len must be a positive int \(got 0\)"):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"source_len must be a positive int \(got 2.5\)"):
        causal_mask(2, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"lengths must be a 1-D tensor of shape \(B,\) \(got \(2, 2\)\)"):
        padding_mask(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"lengths must be an integer tensor \(got dtype torch.float32\)"):
        padding_mask(torch.ones(2))
    with pytest.raises(ValueError, match=r"lengths must be non-negative \(got min -1\)"):
        padding_mask(torch.tensor([2, -1]))
    with pytest.raises(ValueError, match=r"max_len must be at least the longest length \(got 2 < 3\)"):
        padding_mask(torch.tensor([3]), max_len=2)
    with pytest.raises(TypeError, match=r"attn_mask must be a torch.Tensor or None \(got list\)"):
        check_attn_mask([True], (1, 1), f64)  # type: ignore[arg-type]
