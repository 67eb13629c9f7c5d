"""Tests for attnlib.vit: patches, the patch embedding's equality with a strided Conv2d,
the class-token model's properties, gradients and every error message."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from attnlib.transformer import Encoder
from attnlib.vit import PatchEmbedding, ViT, ViTConfig, patchify

f64 = torch.float64


def small(**overrides) -> ViTConfig:
    base = dict(image_size=8, patch_size=4, in_channels=1, num_classes=10, d_model=16, num_heads=4,
                num_layers=2, dim_feedforward=24, dropout=0.0)
    base.update(overrides)
    return ViTConfig(**base)


# --- config --------------------------------------------------------------------------


def test_config_derived_sizes():
    c = small(image_size=12, patch_size=3, in_channels=3)
    assert c.num_patches == 16 and c.patch_dim == 27
    enc = c.encoder_config()
    assert (enc.d_model, enc.num_heads, enc.num_encoder_layers, enc.max_len) == (16, 4, 2, 17)
    assert enc.norm_first and enc.final_norm and enc.activation == "gelu" and enc.pad_id is None


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(image_size=8, patch_size=3), ValueError, "image_size must be divisible by patch_size (got image_size=8 and patch_size=3)"),
        (dict(d_model=10, num_heads=4), ValueError, "d_model must be divisible by num_heads (got d_model=10 and num_heads=4)"),
        (dict(patch_size=0), ValueError, "ViTConfig.patch_size must be a positive int (got 0)"),
        (dict(num_layers=2.0), ValueError, "ViTConfig.num_layers must be a positive int (got 2.0)"),
        (dict(num_classes=True), ValueError, "ViTConfig.num_classes must be a positive int (got True)"),
        (dict(dropout=1.0), ValueError, "ViTConfig.dropout must be a number in [0, 1) (got 1.0)"),
        (dict(dropout="0.1"), ValueError, "ViTConfig.dropout must be a number in [0, 1) (got '0.1')"),
        (dict(activation="tanh"), ValueError, "ViTConfig.activation must be one of ('relu', 'gelu') (got 'tanh')"),
        (dict(norm_first=1), TypeError, "ViTConfig.norm_first must be a bool (got 1)"),
    ],
)
def test_config_rejects_bad_values(overrides, error, message):
    with pytest.raises(error) as info:
        small(**overrides)
    assert message in str(info.value)


# --- patches -------------------------------------------------------------------------


def test_patchify_shape_and_reading_order():
    images = torch.arange(2 * 3 * 6 * 4, dtype=f64).reshape(2, 3, 6, 4)
    patches = patchify(images, 2)
    assert patches.shape == (2, 6, 12)  # a 3 x 2 grid of 2x2 patches, 3 channels each
    for n in range(6):
        r, c = divmod(n, 2)
        expected = images[:, :, 2 * r: 2 * r + 2, 2 * c: 2 * c + 2].reshape(2, -1)  # channel, row, column
        assert torch.equal(patches[:, n], expected)


def test_patchify_with_patch_as_large_as_the_image_flattens_it():
    images = torch.randn(3, 2, 5, 5)
    assert torch.equal(patchify(images, 5), images.reshape(3, 1, 50))


@pytest.mark.parametrize(
    "images, patch_size, error, message",
    [
        (torch.zeros(2, 1, 8, 8), 3, ValueError, "images' height and width must be divisible by patch_size=3 (got 8x8)"),
        (torch.zeros(2, 1, 8, 6), 4, ValueError, "images' height and width must be divisible by patch_size=4 (got 8x6)"),
        (torch.zeros(2, 8, 8), 4, ValueError, "images must have shape (B, C, Hi, Wi) (got (2, 8, 8))"),
        ([[0.0]], 4, TypeError, "images must be a torch.Tensor (got list)"),
        (torch.zeros(2, 1, 8, 8), 0, ValueError, "patch_size must be a positive int (got 0)"),
    ],
)
def test_patchify_rejects_bad_input(images, patch_size, error, message):
    with pytest.raises(error) as info:
        patchify(images, patch_size)
    assert message in str(info.value)


def test_patch_embedding_equals_a_strided_conv2d():
    torch.manual_seed(0)
    embed = PatchEmbedding(patch_size=3, in_channels=2, d_model=5).to(f64)
    conv = nn.Conv2d(2, 5, kernel_size=3, stride=3).to(f64)
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.view(5, 2, 3, 3))
        conv.bias.copy_(embed.proj.bias)
    images = torch.randn(4, 2, 9, 6, dtype=f64)
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, D, 3, 2) -> (B, 6, D)
    torch.testing.assert_close(embed(images), expected, rtol=0, atol=1e-12)


def test_patch_embedding_rejects_bad_input():
    with pytest.raises(ValueError, match=r"in_channels must be a positive int \(got 0\)"):
        PatchEmbedding(4, 0, 16)
    with pytest.raises(ValueError, match=r"images must have 1 channels, shape \(B, 1, Hi, Wi\) \(got \(2, 3, 8, 8\)\)"):
        PatchEmbedding(4, 1, 16)(torch.zeros(2, 3, 8, 8))


# --- the model -----------------------------------------------------------------------


def test_vit_shapes_and_parts():
    torch.manual_seed(0)
    model = ViT(small()).eval()
    images = torch.rand(5, 1, 8, 8)
    assert model(images).shape == (5, 10)
    tokens, maps = model.forward_features(images, need_weights=True)
    assert tokens.shape == (5, 5, 16)
    assert len(maps) == 2 and all(m.shape == (5, 4, 5, 5) for m in maps)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(5, 4, 5))
    assert model.forward_features(images)[1] is None
    assert isinstance(model.encoder, Encoder)  # the transformer's layers, not a copy
    assert model.pos_embed.embedding.weight.shape == (5, 16)


def test_vit_logits_read_the_class_token():
    torch.manual_seed(0)
    model = ViT(small()).to(f64).eval()
    images = torch.rand(3, 1, 8, 8, dtype=f64)
    tokens, _ = model.forward_features(images)
    torch.testing.assert_close(model(images), model.head(tokens[:, 0]), rtol=0, atol=1e-12)


def _shuffle_patches(images: torch.Tensor, order: list[int], patch: int) -> torch.Tensor:
    """Move patch order[n] of each image to grid cell n."""
    grid = images.size(-1) // patch
    out = images.clone()
    for n, m in enumerate(order):
        (r, c), (r2, c2) = divmod(n, grid), divmod(m, grid)
        out[..., r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = \
            images[..., r2 * patch:(r2 + 1) * patch, c2 * patch:(c2 + 1) * patch]
    return out


def test_without_positions_the_vit_sees_a_bag_of_patches():
    torch.manual_seed(0)
    model = ViT(small(patch_size=2)).to(f64).eval()
    images = torch.rand(3, 1, 8, 8, dtype=f64)
    shuffled = _shuffle_patches(images, torch.randperm(16, generator=torch.Generator().manual_seed(1)).tolist(), 2)
    assert (model(images) - model(shuffled)).abs().max() > 1e-3  # learned positions see the order
    with torch.no_grad():
        model.pos_embed.embedding.weight.zero_()
    torch.testing.assert_close(model(images), model(shuffled), rtol=0, atol=1e-10)  # blind to it without


def test_cls_attention_is_a_grid_of_weights():
    torch.manual_seed(0)
    model = ViT(small(patch_size=2)).eval()
    images = torch.rand(2, 1, 8, 8)
    grid = model.cls_attention(images)
    assert grid.shape == (2, 4, 4, 4)
    total = grid.sum((-1, -2))
    assert bool((grid >= 0).all()) and bool((total <= 1 + 1e-6).all()) and bool((total > 0).all())
    _, maps = model.forward_features(images, need_weights=True)
    torch.testing.assert_close(model.cls_attention(images, layer=0).flatten(-2), maps[0][:, :, 0, 1:])
    with pytest.raises(ValueError, match=r"layer must be an int in \[-2, 2\) \(got 2\)"):
        model.cls_attention(images, layer=2)


def test_vit_gradcheck():
    torch.manual_seed(0)
    model = ViT(small(d_model=8, num_heads=2, dim_feedforward=8, num_layers=1)).to(f64).eval()
    images = torch.rand(2, 1, 8, 8, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x), (images,))


def test_vit_learns_a_toy_task():
    """Bright top half vs bright bottom half: a few steps of Adam separate them."""
    torch.manual_seed(0)
    model = ViT(small())
    images = torch.rand(64, 1, 8, 8) * 0.2
    labels = torch.randint(2, (64,))
    for i, label in enumerate(labels.tolist()):
        images[i, :, (0 if label == 0 else 4):(4 if label == 0 else 8)] += 0.8
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(images).argmax(-1) == labels).float().mean() == 1.0


def test_vit_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    model = ViT(small(dropout=0.5)).eval()
    images = torch.rand(2, 1, 8, 8)
    assert torch.equal(model(images), model(images))


@pytest.mark.parametrize(
    "images, error, message",
    [
        (torch.zeros(2, 1, 6, 6), ValueError, "images must have shape (B, 1, 8, 8) (got (2, 1, 6, 6))"),
        (torch.zeros(2, 3, 8, 8), ValueError, "images must have shape (B, 1, 8, 8) (got (2, 3, 8, 8))"),
        (torch.zeros(2, 8, 8), ValueError, "images must have shape (B, 1, 8, 8) (got (2, 8, 8))"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.long), TypeError, "images must be a floating-point tensor (got dtype torch.int64)"),
        ("image", TypeError, "images must be a torch.Tensor (got str)"),
    ],
)
def test_vit_rejects_bad_images(images, error, message):
    model = ViT(small())
    with pytest.raises(error) as info:
        model(images)
    assert message in str(info.value)


def test_vit_rejects_a_bad_config():
    with pytest.raises(TypeError, match=r"config must be a ViTConfig \(got dict\)"):
        ViT(dataclasses.asdict(small()))
