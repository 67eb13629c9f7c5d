"""The vision transformer (ViT) of Dosovitskiy et al. (2021): a transformer encoder on image patches.

Chapter 12, "The vision transformer", builds it and trains it on scikit-learn's
bundled 8x8 digits. An image is cut into non-overlapping ``P x P`` patches, each
patch is flattened and projected to width ``D`` (a "word" per patch), a learned class
token is put in front, learned position vectors are added, and the sequence runs
through a stack of :class:`attnlib.transformer.EncoderLayer`. The class token's final
vector goes through a linear head. The module reads top to bottom: config, patches,
patch embedding, the model.

The attention is :class:`attnlib.attention.MultiHeadAttention` inside
:class:`attnlib.transformer.Encoder` (pre-norm, GELU, a final ``LayerNorm``, as in
the paper's equations 1-4); positions are
:class:`attnlib.positional.LearnedPositionalEmbedding`. Nothing here re-implements
attention.

Shape legend: ``B`` batch, ``C`` image channels, ``H`` heads, ``Hi x Wi`` image height and
width, ``P`` patch side, ``N`` number of patches ``(Hi / P) * (Wi / P)``, ``D`` model
width, ``K`` number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ._checks import boolean, fraction, int_in_range, positive_int
from .positional import LearnedPositionalEmbedding
from .transformer import ACTIVATIONS, Encoder, TransformerConfig

__all__ = ["ViTConfig", "patchify", "PatchEmbedding", "ViT"]


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class ViTConfig:
    """Every hyperparameter of :class:`ViT`, checked on creation.

    The defaults suit 8x8 grey images (scikit-learn's digits) with 4x4 patches, so
    ``N = 4`` patches plus the class token. ViT-Base of the paper (table 1) is
    ``image_size=224, patch_size=16, in_channels=3, d_model=768, num_heads=12,
    num_layers=12, dim_feedforward=3072``.

    Attributes:
        image_size: side of the square input images, in pixels; a multiple of ``patch_size``.
        patch_size: side ``P`` of the square patches.
        in_channels: image channels ``C`` (1 for grey, 3 for colour).
        num_classes: number of classes ``K`` (the width of the logits).
        d_model: model width ``D``.
        num_heads: attention heads ``H``; must divide ``d_model``.
        num_layers: encoder layers.
        dim_feedforward: hidden width of each layer's feed-forward network.
        dropout: dropout after positions, on attention weights, in the feed-forward
            network and on every sublayer's output.
        activation: ``"gelu"`` (the paper) or ``"relu"``.
        norm_first: pre-norm layers (``True``, the paper) or post-norm (``False``).
        layer_norm_eps: the epsilon of every ``LayerNorm``.
    """

    image_size: int = 8
    patch_size: int = 4
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "num_classes", "d_model", "num_heads",
                     "num_layers", "dim_feedforward"):
            positive_int(f"ViTConfig.{name}", getattr(self, name))
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                "ViTConfig.image_size must be divisible by patch_size "
                f"(got image_size={self.image_size} and patch_size={self.patch_size})"
            )
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                "ViTConfig.d_model must be divisible by num_heads "
                f"(got d_model={self.d_model} and num_heads={self.num_heads})"
            )
        fraction("ViTConfig.dropout", self.dropout)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ViTConfig.activation must be one of {ACTIVATIONS} (got {self.activation!r})")
        boolean("ViTConfig.norm_first", self.norm_first)

    @property
    def num_patches(self) -> int:
        """``N = (image_size / patch_size) ** 2``, the number of patch tokens."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        """``C * P * P``, the length of one flattened patch."""
        return self.in_channels * self.patch_size * self.patch_size

    def encoder_config(self) -> TransformerConfig:
        """The :class:`attnlib.transformer.TransformerConfig` of the encoder stack.

        There is no vocabulary (patches are embedded by a linear map), so the two
        vocabulary sizes are 1 and there is no padding token; positions are added by
        :class:`ViT` itself, so ``positional`` is ``"none"``.
        """
        return TransformerConfig(
            src_vocab_size=1, tgt_vocab_size=1, d_model=self.d_model, num_heads=self.num_heads,
            num_encoder_layers=self.num_layers, num_decoder_layers=1, dim_feedforward=self.dim_feedforward,
            dropout=float(self.dropout), activation=self.activation, norm_first=self.norm_first,
            layer_norm_eps=float(self.layer_norm_eps), final_norm=True, positional="none",
            max_len=self.num_patches + 1, pad_id=None,
        )


# --- patches -------------------------------------------------------------------------


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, each flattened, in reading order.

    Patch ``n`` is row ``n // (Wi / P)``, column ``n % (Wi / P)`` of the patch grid;
    inside a patch the values are ordered channel, row, column (as a ``Conv2d`` weight
    of shape ``(D, C, P, P)`` is, so a linear map of the patches equals a strided
    convolution).

    Args:
        images: a batch of images.
        patch_size: the patch side ``P``; must divide the height and the width.

    Shapes:
        images ``(B, C, Hi, Wi)``; returns ``(B, N, C * P * P)`` with ``N = (Hi / P) (Wi / P)``.

    Returns:
        The flattened patches.

    Dosovitskiy et al. (2021), section 3.1. Chapter 12.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (got {type(images).__name__})")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, Hi, Wi) (got {tuple(images.shape)})")
    positive_int("patch_size", patch_size)
    b, c, h, w = images.shape
    if h % patch_size != 0 or w % patch_size != 0:
        raise ValueError(
            f"images' height and width must be divisible by patch_size={patch_size} (got {h}x{w})"
        )
    x = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)  # (B, C, Hi/P, P, Wi/P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, Hi/P, Wi/P, C, P, P)
    return x.reshape(b, (h // patch_size) * (w // patch_size), c * patch_size * patch_size)  # (B, N, C P P)


class PatchEmbedding(nn.Module):
    """Flatten each ``P x P`` patch and project it to width ``D`` with one linear map.

    The same map is applied to every patch, as a word embedding is to every word; it
    equals a ``Conv2d(C, D, kernel_size=P, stride=P)`` whose weight is
    ``proj.weight.view(D, C, P, P)`` (the tests check it).

    Args:
        patch_size: the patch side ``P``.
        in_channels: image channels ``C``.
        d_model: output width ``D``.

    Shapes:
        input ``(B, C, Hi, Wi)``; output ``(B, N, D)``.

    Dosovitskiy et al. (2021), equation 1. Chapter 12.
    """

    def __init__(self, patch_size: int, in_channels: int, d_model: int) -> None:
        super().__init__()
        positive_int("patch_size", patch_size)
        positive_int("in_channels", in_channels)
        positive_int("d_model", d_model)
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)

    def forward(self, images: Tensor) -> Tensor:
        """Return ``proj(patchify(images, P))``."""
        if isinstance(images, Tensor) and images.dim() == 4 and images.size(1) != self.in_channels:
            raise ValueError(
                f"images must have {self.in_channels} channels, shape (B, {self.in_channels}, Hi, Wi) "
                f"(got {tuple(images.shape)})"
            )
        return self.proj(patchify(images, self.patch_size))

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, in_channels={self.in_channels}"


# --- the model -----------------------------------------------------------------------


class ViT(nn.Module):
    """Vision transformer: patch embedding, class token, learned positions, encoder, linear head.

    ``z0 = [cls; patches W_E] + E_pos``, then the encoder layers, then
    ``logits = head(LayerNorm(z_L[:, 0]))`` (the final ``LayerNorm`` is the encoder's).
    The paper pre-trains with an MLP head and fine-tunes with a linear one; this is the
    linear one.

    Args:
        config: a :class:`ViTConfig`.

    Shapes:
        images ``(B, C, Hi, Wi)`` with ``Hi = Wi = image_size``; logits ``(B, K)``.

    Dosovitskiy et al. (2021), section 3.1, equations 1-4. Chapter 12.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"config must be a ViTConfig (got {type(config).__name__})")
        self.config = config
        self.patch_embed = PatchEmbedding(config.patch_size, config.in_channels, config.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        nn.init.normal_(self.cls_token, std=0.02)
        self.pos_embed = LearnedPositionalEmbedding(config.num_patches + 1, config.d_model, dropout=float(config.dropout))
        self.encoder = Encoder(config.encoder_config())
        self.head = nn.Linear(config.d_model, config.num_classes)

    def _check_images(self, images: Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor (got {type(images).__name__})")
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor (got dtype {images.dtype})")
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise ValueError(f"images must have shape (B, {c}, {s}, {s}) (got {tuple(images.shape)})")

    def forward_features(self, images: Tensor, need_weights: bool = False) -> Tuple[Tensor, Optional[List[Tensor]]]:
        """Run everything but the head.

        Args:
            images: a batch of images.
            need_weights: also return every layer's attention weights.

        Shapes:
            images ``(B, C, Hi, Wi)``; returns ``(B, 1 + N, D)`` (position 0 is the class
            token) and a list of ``(B, H, 1 + N, 1 + N)``, one per layer.

        Returns:
            ``(tokens, attention_weights)``; the list is ``None`` unless ``need_weights``.
        """
        self._check_images(images)
        x = self.patch_embed(images)  # (B, N, D)
        cls = self.cls_token.to(x.dtype).expand(x.size(0), -1, -1)  # (B, 1, D)
        x = self.pos_embed(torch.cat([cls, x], dim=1))  # (B, 1 + N, D)
        return self.encoder(x, need_weights=need_weights)

    def forward(self, images: Tensor) -> Tensor:
        """Return the class logits.

        Shapes:
            images ``(B, C, Hi, Wi)``; returns ``(B, K)``.
        """
        tokens, _ = self.forward_features(images)
        return self.head(tokens[:, 0])  # (B, K)

    def cls_attention(self, images: Tensor, layer: int = -1) -> Tensor:
        """How much the class token attends to each patch, as an image-shaped grid.

        Args:
            images: a batch of images.
            layer: which encoder layer's attention (negative counts from the end).

        Shapes:
            images ``(B, C, Hi, Wi)``; returns ``(B, H, Hi / P, Wi / P)``: one grid per
            head, the class token's weights over the ``N`` patches (its weight on
            itself is left out, so a row sums to at most one).

        Returns:
            The class token's attention weights over the patches.
        """
        n_layers = self.config.num_layers
        int_in_range("layer", layer, -n_layers, n_layers)
        _, maps = self.forward_features(images, need_weights=True)
        if maps is None:  # need_weights=True always returns the maps
            raise RuntimeError("the encoder returned no attention weights")
        grid = self.config.image_size // self.config.patch_size
        weights = maps[layer][:, :, 0, 1:]  # (B, H, N): the class token's row, patches only
        return weights.reshape(weights.size(0), weights.size(1), grid, grid)  # (B, H, Hi/P, Wi/P)
