"""Tests for attnlib.positional: sinusoidal, learned and rotary encodings."""

from __future__ import annotations

import math

import pytest
import torch

from attnlib.functional import scaled_dot_product_attention
from attnlib.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    rotate_half,
    rotate_interleaved,
    sinusoidal_encoding,
)

f64 = torch.float64


def test_sinusoidal_values_match_the_paper_formula():
    pe = sinusoidal_encoding(50, 16, dtype=f64)
    for p in (0, 1, 7, 49):
        for i in range(8):
            angle = p / 10000 ** (2 * i / 16)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_sinusoidal_shift_is_a_fixed_rotation():
    """PE(p + k) = M_k PE(p) with M_k independent of p (block-diagonal 2x2 rotations)."""
    D, k = 16, 5
    pe = sinusoidal_encoding(64, D, dtype=f64)
    inv_freq = 10000 ** (-torch.arange(0, D, 2, dtype=f64) / D)
    M = torch.zeros(D, D, dtype=f64)
    for i, w in enumerate(inv_freq):
        c, s = math.cos(k * w), math.sin(k * w)
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=f64)
    torch.testing.assert_close(pe[k:] , pe[:-k] @ M.T, atol=1e-10, rtol=0)


def test_sinusoidal_module_adds_the_table():
    enc = SinusoidalPositionalEncoding(8, max_len=10)
    x = torch.zeros(2, 6, 8)
    torch.testing.assert_close(enc(x), sinusoidal_encoding(6, 8).expand(2, 6, 8))
    scaled = SinusoidalPositionalEncoding(8, max_len=10, scale_input=True)
    torch.testing.assert_close(scaled(torch.ones(1, 1, 8)), math.sqrt(8) + sinusoidal_encoding(1, 8)[None])


def test_sinusoidal_module_is_exact_in_float64():
    enc = SinusoidalPositionalEncoding(8, max_len=10).double()
    torch.testing.assert_close(enc(torch.zeros(1, 6, 8, dtype=f64))[0], sinusoidal_encoding(6, 8, dtype=f64),
                               atol=1e-15, rtol=0)


def test_no_float64_state_moves_with_the_module():
    """Apple's MPS has no float64: no buffer may be float64, whatever the module."""
    for module in (SinusoidalPositionalEncoding(8), RotaryEmbedding(8), LearnedPositionalEmbedding(4, 8)):
        assert all(t.dtype != torch.float64 for t in list(module.buffers()) + list(module.parameters()))


def test_learned_embedding_adds_a_trained_vector_per_position():
    emb = LearnedPositionalEmbedding(10, 8)
    x = torch.zeros(2, 4, 8)
    torch.testing.assert_close(emb(x), emb.embedding.weight[:4].expand(2, 4, 8))
    assert sum(p.numel() for p in emb.parameters()) == 80


def test_rope_preserves_norms_and_matches_complex_rotation():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 6, 8, dtype=f64)
    y = rope(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), atol=1e-12, rtol=0)
    # Pair feature i with feature i + Dh/2 as a complex number and rotate it.
    z = torch.complex(x[..., :4], x[..., 4:])
    angles = torch.arange(6, dtype=f64)[:, None] * rope.inv_freq
    zr = z * torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(y, torch.cat([zr.real, zr.imag], dim=-1), atol=1e-12, rtol=0)


def test_rope_scores_depend_only_on_the_offset():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(16, dtype=f64), torch.randn(16, dtype=f64)
    T = 40

    def score(m, n):
        pos_q = torch.full((1,), m)
        pos_k = torch.full((1,), n)
        return (rope(q[None], pos_q) @ rope(k[None], pos_k).T).item()

    for offset in (0, 1, 5, 17):
        values = [score(m + offset, m) for m in range(0, T - offset, 7)]
        assert max(values) - min(values) < 1e-9
    assert abs(score(3, 0) - score(0, 3)) > 1e-6  # the sign of the offset matters


def test_rope_with_attention_is_invariant_to_shifting_all_positions():
    rope = RotaryEmbedding(8)
    q, k, v = (torch.randn(1, 2, 5, 8, dtype=f64) for _ in range(3))
    pos = torch.arange(5)
    a = scaled_dot_product_attention(rope(q, pos), rope(k, pos), v)
    b = scaled_dot_product_attention(rope(q, pos + 100), rope(k, pos + 100), v)
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


def test_rotate_half():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rotate_half(x).tolist() == [-3.0, -4.0, 1.0, 2.0]


def test_gradcheck_rope():
    rope = RotaryEmbedding(4)
    x = torch.randn(2, 3, 4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(rope, (x,))


def test_errors():
    with pytest.raises(ValueError, match=r"embed_dim must be even, to pair sines with cosines \(got 7\)"):
        sinusoidal_encoding(4, 7)
    with pytest.raises(ValueError, match=r"num_positions must be a positive int \(got 0\)"):
        sinusoidal_encoding(0, 8)
    with pytest.raises(ValueError, match=r"head_dim must be even.*\(got 5\)"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match=r"sequence length must be at most max_len=4 \(got 6\)"):
        SinusoidalPositionalEncoding(8, max_len=4)(torch.zeros(1, 6, 8))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, 8\) \(got \(6, 8\)\)"):
        LearnedPositionalEmbedding(10, 8)(torch.zeros(6, 8))
    with pytest.raises(ValueError, match=r"sequence length must be at most max_len=3 \(got 4\)"):
        LearnedPositionalEmbedding(3, 8)(torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., T, 8\) \(got \(3, 6\)\)"):
        RotaryEmbedding(8)(torch.zeros(3, 6))
    with pytest.raises(ValueError, match=r"positions must have shape \(T,\) = \(3,\) \(got \(4,\)\)"):
        RotaryEmbedding(8)(torch.zeros(3, 8), torch.arange(4))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor \(got list\)"):
        RotaryEmbedding(8)([1.0])  # type: ignore[arg-type]


# --- the two rotary layouts ---------------------------------------------------------


def halves_to_interleaved(head_dim):
    """The feature order that puts pair (i, i + Dh/2) of the halves layout at (2i, 2i + 1)."""
    half = head_dim // 2
    return torch.stack((torch.arange(half), torch.arange(half) + half), dim=-1).flatten()  # (Dh,)


def test_rotate_interleaved():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rotate_interleaved(x).tolist() == [-2.0, 1.0, -4.0, 3.0]


def test_rope_layouts_are_a_permutation_of_each_other():
    halves, interleaved = RotaryEmbedding(16, layout="halves"), RotaryEmbedding(16, layout="interleaved")
    x = torch.randn(2, 3, 9, 16, dtype=f64)
    positions = torch.arange(9) * 7
    perm = halves_to_interleaved(16)
    torch.testing.assert_close(interleaved(x[..., perm], positions), halves(x, positions)[..., perm], atol=0, rtol=0)
    assert (interleaved(x, positions) - halves(x, positions)).abs().max() > 1e-2  # not the same map unpermuted


def test_rope_interleaved_matches_complex_rotation_of_neighbours():
    rope = RotaryEmbedding(8, layout="interleaved")
    x = torch.randn(2, 6, 8, dtype=f64)
    z = torch.complex(x[..., 0::2], x[..., 1::2])  # pair (x0, x1), (x2, x3), ...
    angles = torch.arange(6, dtype=f64)[:, None] * rope.inv_freq
    zr = z * torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(rope(x), torch.stack((zr.real, zr.imag), dim=-1).flatten(-2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_rope_scores_depend_only_on_the_offset_in_both_layouts(layout):
    rope = RotaryEmbedding(16, layout=layout)
    q, k = torch.randn(16, dtype=f64), torch.randn(16, dtype=f64)

    def score(m, n):
        return (rope(q[None], torch.full((1,), m)) @ rope(k[None], torch.full((1,), n)).T).item()

    for offset in (0, 1, 5, 17):
        values = [score(m + offset, m) for m in range(0, 40 - offset, 7)]
        assert max(values) - min(values) < 1e-9
    assert abs(score(3, 0) - score(0, 3)) > 1e-6


def test_gradcheck_rope_interleaved():
    rope = RotaryEmbedding(4, layout="interleaved")
    x = torch.randn(2, 3, 4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(rope, (x,))


def test_error_rope_layout():
    with pytest.raises(ValueError, match=r"layout must be one of \('halves', 'interleaved'\) \(got 'pairs'\)"):
        RotaryEmbedding(8, layout="pairs")
    assert "layout='interleaved'" in repr(RotaryEmbedding(8, layout="interleaved"))
