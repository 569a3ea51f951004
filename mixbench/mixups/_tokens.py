"""Token-grid helpers shared by the ViT-attention policies (TransMix, TokenMix, MixPro, SMMix).

Masks are kept at pixel level in ``MixBatch.mask`` (1 = anchor pixel) and converted to the model's patch grid
here. Everything is tensor-only (no host synchronisation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.errors import ConfigError
from mixbench.models.signals import backbone_of


def model_patch_size(model: nn.Module | None, override: int | None, image_size: int) -> int:
    """Pixel size of one ViT patch: ``override`` if given, else the backbone's ``patch_size``."""
    if override is not None:
        p = int(override)
    else:
        p = None
        if model is not None:
            for m in backbone_of(model).modules():
                size = getattr(m, "patch_size", None)
                if isinstance(size, (tuple, list)) and size:
                    p = int(size[0])
                    break
                if isinstance(size, int):
                    p = size
                    break
        if p is None:
            raise ConfigError("mixup.patch_size: the model exposes no patch size; set it in the mixup config")
    if p <= 0 or image_size % p:
        raise ConfigError(f"mixup.patch_size: {p} does not divide the image size {image_size}")
    return p


def tokens_of(mask: Tensor, grid: int, mode: str = "area") -> Tensor:
    """Pixel mask (N, 1, H, W) → token mask (N, grid²): mean over each patch (``area``) or ``nearest``."""
    m = mask.float()
    if mode == "area":
        t = F.adaptive_avg_pool2d(m, grid)
    else:
        t = F.interpolate(m, size=(grid, grid), mode="nearest")
    return t.flatten(1)


def pixels_of(tok: Tensor, grid: int, height: int, width: int) -> Tensor:
    """Token mask (N, grid²) → pixel mask (N, 1, H, W) by nearest upsampling."""
    t = tok.float().view(-1, 1, grid, grid)
    return F.interpolate(t, size=(height, width), mode="nearest")


def grid_side(num_tokens: int) -> int:
    g = math.isqrt(num_tokens)
    if g * g != num_tokens:
        raise ConfigError(f"mixup: {num_tokens} patch tokens do not form a square grid")
    return g


def attention_share(attn: Tensor, tok_mask: Tensor) -> Tensor:
    """Σ(M·A) / ΣA per sample: the share of attention on the tokens where ``tok_mask`` is 1."""
    a = attn.float()
    return (a * tok_mask).sum(1) / a.sum(1).clamp_min(1e-12)


def rank_select(scores: Tensor, count: Tensor) -> Tensor:
    """Bool mask of the ``count`` highest scores in each row (count: (N,) or scalar tensor), no host sync."""
    rank = torch.argsort(torch.argsort(scores, dim=1, descending=True), dim=1)
    return rank < count.view(-1, 1)
