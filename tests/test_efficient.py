"""Tests for attnlib.efficient: tiled attention equals readable attention; memory is linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlib.efficient import PeakMemory, tiled_attention
from attnlib.functional import padding_mask, scaled_dot_product_attention

f64, f32 = torch.float64, torch.float32
# Block sizes that do not divide the lengths, so ragged last blocks are exercised.
BLOCKS = dict(block_size=7, query_block_size=5)


def qkv(B=2, H=3, T=13, S=17, Dh=8, Dv=6, dtype=f64, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(B, H, n, d, generator=g, dtype=dtype).requires_grad_(grad)
        for n, d in ((T, Dh), (S, Dh), (S, Dv))
    )


def mask_cases(T=13, S=17, seed=1, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    boolean = torch.rand(2, 1, T, S, generator=g) > 0.4
    boolean[0, 0, T // 2] = False  # a query with no key at all: both paths give zeros
    lengths = torch.tensor([S, S - 6])
    return {
        "none": {},
        "causal": {"is_causal": True},
        "bool (B, 1, T, S)": {"attn_mask": boolean},
        "bool (T, S)": {"attn_mask": boolean[1, 0]},
        "float": {"attn_mask": torch.randn(T, S, generator=g, dtype=dtype)},
        "padding as attn_mask": {"attn_mask": ~padding_mask(lengths, S)[:, None, None, :]},
    }, lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype,tol", [(f64, 1e-10), (f32, 1e-5)])
@pytest.mark.parametrize("T,S", [(13, 17), (17, 13), (1, 9), (16, 16)])
def test_matches_readable_attention_forward_and_backward(seed, dtype, tol, T, S):
    cases, _ = mask_cases(T, S, seed=seed, dtype=dtype)
    for name, kwargs in cases.items():
        q, k, v = qkv(T=T, S=S, dtype=dtype, seed=seed, grad=True)
        ours = tiled_attention(q, k, v, **kwargs, **BLOCKS)
        ref = scaled_dot_product_attention(q, k, v, **kwargs)
        assert torch.allclose(ours, ref, atol=tol, rtol=0), f"{name}: {(ours - ref).abs().max():.2e}"
        w = torch.randn_like(ref)  # a generic upstream gradient
        g_ours = torch.autograd.grad((ours * w).sum(), (q, k, v))
        g_ref = torch.autograd.grad((ref * w).sum(), (q, k, v))
        for which, a, b in zip("qkv", g_ours, g_ref):
            assert torch.allclose(a, b, atol=10 * tol, rtol=0), f"{name}: grad {which} {(a - b).abs().max():.2e}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_key_padding_mask_and_causal_combined(seed):
    q, k, v = qkv(T=17, S=17, seed=seed, grad=True)
    lengths = torch.tensor([17, 9])
    kpm = padding_mask(lengths, 17)  # True at padding
    ours = tiled_attention(q, k, v, is_causal=True, key_padding_mask=kpm, **BLOCKS)
    mask = ~kpm[:, None, None, :] & torch.ones(17, 17, dtype=torch.bool).tril()
    ref = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
    g_ours = torch.autograd.grad(ours.sum(), (q, k, v))
    g_ref = torch.autograd.grad(ref.sum(), (q, k, v))
    assert all(torch.allclose(a, b, atol=1e-10, rtol=0) for a, b in zip(g_ours, g_ref))


def test_matches_torch_sdpa_and_custom_scale():
    q, k, v = qkv(T=40, S=40, seed=3)
    for kwargs in ({}, {"is_causal": True}, {"scale": 0.3}):
        ours = tiled_attention(q, k, v, block_size=16, query_block_size=8, **kwargs)
        ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
        assert torch.allclose(ours, ref, atol=1e-10, rtol=0)


def test_three_dimensional_inputs_and_default_blocks():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 600, 4, generator=g, dtype=f64) for _ in range(3))
    kpm = padding_mask(torch.tensor([600, 300, 1]), 600)
    ours = tiled_attention(q, k, v, key_padding_mask=kpm)
    ref = scaled_dot_product_attention(q, k, v, attn_mask=~kpm[:, None, :])
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)


def test_fully_masked_rows_give_zeros_and_finite_gradients():
    q, k, v = qkv(grad=True)
    mask = torch.zeros(13, 17, dtype=torch.bool)
    mask[::2] = True  # odd queries see nothing
    out = tiled_attention(q, k, v, attn_mask=mask, **BLOCKS)
    assert torch.all(out[..., 1::2, :] == 0)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.all(grads[0][..., 1::2, :] == 0)


def test_gradcheck_float64():
    q, k, v = qkv(B=1, H=2, T=6, S=5, Dh=3, Dv=2, grad=True)
    mask = torch.ones(6, 5, dtype=torch.bool).tril(1)
    assert torch.autograd.gradcheck(
        lambda a, b, c: tiled_attention(a, b, c, attn_mask=mask, block_size=2, query_block_size=4), (q, k, v)
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    q, k, v = qkv(T=20, S=20, dtype=f32, seed=4)
    ours = tiled_attention(q.to(dtype), k.to(dtype), v.to(dtype), block_size=8, query_block_size=8)
    assert ours.dtype == dtype and torch.isfinite(ours).all()
    ref = scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype))
    assert (ours.float() - ref.float()).abs().max() < 2e-2


def test_large_logits_stay_finite():
    q, k, v = qkv(T=9, S=30, dtype=f32)
    out = tiled_attention(q * 1e3, k * 1e3, v, block_size=4, query_block_size=4)
    ref = scaled_dot_product_attention(q * 1e3, k * 1e3, v)
    assert torch.isfinite(out).all() and torch.allclose(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1024, 2048])
def test_extra_memory_is_linear_in_n(n):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, n, 64, generator=g) for _ in range(3))
    with PeakMemory() as naive:
        ref = scaled_dot_product_attention(q, k, v)
    with PeakMemory() as tiled:
        out = tiled_attention(q, k, v, block_size=128, query_block_size=128)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    scores = n * n * 4  # one float32 (n, n) matrix
    assert naive.peak >= 2 * scores  # the scores and the weights are alive together
    # The output (n * 64 floats) plus a few (128, 128) tiles and per-row statistics.
    assert tiled.peak <= n * 64 * 4 + 12 * 128 * 128 * 4 + 16 * n * 4


def test_peak_memory_counts_new_tensors_not_views_and_frees():
    x = torch.zeros(1000)  # 4000 bytes, made outside: not counted
    with PeakMemory() as mem:
        a = x * 2  # 4000 new bytes
        b = a.view(10, 100)  # a view: nothing new
        x.add_(1)  # in place: nothing new
        c = a + 1  # 4000 more
        del a, b, c
        d = x[:10].clone()  # 40 bytes
    assert mem.peak == 8000 and mem.current == 40
    del d


def test_errors_name_the_argument():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="dropout_p must be 0.0"):
        tiled_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(TypeError, match="is_causal must be a bool"):
        tiled_attention(q, k, v, is_causal=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        tiled_attention(q, k, v, attn_mask=torch.ones(13, 17, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        tiled_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="query_block_size must be a positive int"):
        tiled_attention(q, k, v, query_block_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not broadcast"):
        tiled_attention(q, k, v, attn_mask=torch.ones(13, 16, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask must be torch.bool"):
        tiled_attention(q, k, v, attn_mask=torch.ones(13, 17, dtype=torch.int64))
    with pytest.raises(ValueError, match="attn_mask must not require grad"):
        tiled_attention(q, k, v, attn_mask=torch.zeros(13, 17, dtype=f64, requires_grad=True))
    with pytest.raises(TypeError, match="key_padding_mask must be a boolean tensor"):
        tiled_attention(q, k, v, key_padding_mask=torch.zeros(2, 17))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, S\) = \(2, 17\)"):
        tiled_attention(q, k, v, key_padding_mask=torch.zeros(2, 13, dtype=torch.bool))
    with pytest.raises(ValueError, match="query and key must have the same width"):
        tiled_attention(q, k[..., :4], v)
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        tiled_attention(q.long(), k, v)


@pytest.mark.parametrize("n", [512, 1024])
def test_backward_memory_is_linear_in_n_too(n):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, n, 64, generator=g).requires_grad_() for _ in range(3))
    with PeakMemory() as naive:
        scaled_dot_product_attention(q, k, v).sum().backward()
    grads_naive = [t.grad for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    with PeakMemory() as tiled:
        tiled_attention(q, k, v, block_size=128, query_block_size=128).sum().backward()
    assert all(torch.allclose(t.grad, gn, atol=1e-5, rtol=0) for t, gn in zip((q, k, v), grads_naive))
    assert naive.peak >= 4 * n * n * 4  # several (n, n) float32 matrices saved for the backward
    # Saved output and log-sum-exp, three gradients, delta, and a few (128, 128) tiles.
    assert tiled.peak <= 8 * n * 64 * 4 + 12 * 128 * 128 * 4
