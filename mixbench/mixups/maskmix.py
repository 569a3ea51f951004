"""MaskMix, the mixing half of MixPro: a random patch-grid mask per sample.

Zhao et al., "MixPro: Data Augmentation with MaskMix and Progressive Attention Labeling for Vision
Transformer", ICLR 2023 (arXiv:2304.12043). Reference code: fistyee/MixPro ``utils.py`` (``MaskMix``);
OpenMixup ``openmixup/models/augments/mixpro.py``. The attention-based relabelling (PAL) reads the model and
is not part of this static policy; MixPro's released configs run MaskMix without it (``PAL_ATTN: False``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, blend
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.ranges import COUNT, POSITIVE
from mixbench.registry import MIXUPS


def grid_cells(height: int, width: int, patch: int) -> tuple[int, int]:
    return math.ceil(height / patch), math.ceil(width / patch)


def kept_cells(lam: Tensor, scores: Tensor, height: int, width: int, patch: int) -> Tensor:
    """(N, gh, gw) bool: each sample keeps (as anchor) its ``ceil(G·λ)`` lowest-score cells of the grid."""
    gh, gw = grid_cells(height, width, patch)
    count = torch.ceil(lam.double().reshape(-1, 1) * (gh * gw))
    rank = scores.argsort(dim=1).argsort(dim=1)
    return (rank < count).view(-1, gh, gw)


def cell_mask(keep: Tensor, height: int, width: int, patch: int) -> Tensor:
    """(N, 1, H, W) float anchor mask from (N, gh, gw) kept cells (cells at the border cropped to the image)."""
    n, gh, gw = keep.shape
    full = keep.float().view(n, 1, gh, 1, gw, 1).expand(n, 1, gh, patch, gw, patch)
    return full.reshape(n, 1, gh * patch, gw * patch)[:, :, :height, :width]


def kept_area(keep: Tensor, height: int, width: int, patch: int) -> Tensor:
    """(N,) float32 anchor area fraction of the kept cells, exact from the cells' pixel counts."""
    _, gh, gw = keep.shape
    rows = (height - patch * torch.arange(gh, device=keep.device)).clamp(max=patch)
    cols = (width - patch * torch.arange(gw, device=keep.device)).clamp(max=patch)
    pixels = (keep.long() * (rows.view(gh, 1) * cols.view(1, gw))).sum(dim=(1, 2))
    return pixels.double().div(height * width).float()


@MIXUPS.register_module("maskmix")
class MaskMix(SampledPolicy):
    """MaskMix (MixPro, ICLR 2023): ⌈G·r⌉ random grid cells of each sample stay the anchor, r ~ Beta(α, α).

    The label weight is the realised anchor area (``count / G`` when the patch size divides the image).

    Args:
        alpha: Beta(α, α) (official 1.0).
        prob: probability of mixing a batch (MixPro switches MaskMix 0.5 / timm mixup-cutmix 0.5; use
            ``switch`` for that recipe).
        partner: ``perm`` (references), ``flip`` or ``roll``.
        mask_patch_size: grid cell side in pixels (official DeiT 56 on 224 px = 4×4 cells; OpenMixup 64).
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    ranges = {"alpha": POSITIVE, "mask_patch_size": COUNT}

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", mask_patch_size: int = 56):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if mask_patch_size < 1:
            raise ValueError(f"mask_patch_size: expected a positive int, got {mask_patch_size}")
        self.mask_patch_size = int(mask_patch_size)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev = labels.shape[0], inputs.shape[-2:], inputs.device
        gh, gw = grid_cells(h, w, self.mask_patch_size)
        lam = sample_beta(self.alpha, 1, ctx.generator, dev)
        scores = torch.rand((n, gh * gw), generator=ctx.generator, device=dev)
        return {"lam": lam, "scores": scores, "index": self.partner_index(n, ctx, dev)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, scores: Tensor,
                 index: Tensor, inplace: bool = False) -> MixBatch:
        h, w = inputs.shape[-2:]
        keep = kept_cells(lam, scores, h, w, self.mask_patch_size)
        anchor_map = cell_mask(keep, h, w, self.mask_patch_size)
        x = blend(inputs, index, anchor_map, inplace)
        weight = kept_area(keep, h, w, self.mask_patch_size)
        return pair_batch(x, labels, num_classes, index, weight, mask=anchor_map)
