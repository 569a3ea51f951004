"""CutMix: paste a rectangle of the partner image; labels weighted by the realised area.

Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features", ICCV 2019
(arXiv:1905.04899). Reference code: clovaai/CutMix-PyTorch ``train.py`` (``rand_bbox``); OpenMixup
``openmixup/models/augments/cutmix.py``; timm ``timm/data/mixup.py``; torchvision ``transforms.v2.CutMix``;
mmpretrain ``models/utils/batch_augments/cutmix.py``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mixbench.mixups._ops import (
    SampledPolicy,
    blend,
    box_area_fraction,
    box_from_lam,
    box_mask,
    host_rows,
    on_host,
    paste_rows,
    per_sample,
    rand_box_minmax,
    rand_center,
)
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.ranges import NON_NEGATIVE, UNIT
from mixbench.registry import MIXUPS

Box = tuple[Tensor, Tensor, Tensor, Tensor]


def paste_boxes(inputs: Tensor, labels: Tensor, num_classes: int, index: Tensor, box: Box,
                lam: Tensor | None = None, inplace: bool = False) -> MixBatch:
    """Deterministic CutMix core: the partner's pixels inside ``box``, the anchor's elsewhere.

    Args:
        inputs: (N, C, H, W).
        labels: (N,) int64.
        num_classes: K.
        index: (N,) partner of each sample.
        box: int64 (y1, y2, x1, x2), each (1,) for one box shared by the batch or (N,) per sample; half-open.
        lam: label weight of the anchor; ``None`` (the default, "correct_lam") uses the realised anchor area
            1 − box area / (H·W).
        inplace: ``inputs`` is an owned batch: on the host, paste into it (one vectorised slice assignment
            for a shared box, whatever the image size) instead of building a new batch.
    """
    n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
    anchor_map = (~box_mask(box, h, w)).float()  # (1|N, 1, H, W), 1 = anchor pixel
    if host_rows(inputs, index, *box) or (inplace and box[0].numel() == 1 and on_host(inputs, index, *box)):
        x = paste_rows(inputs, index, box, inplace)
    else:
        x = blend(inputs, index, anchor_map)
    weight = 1.0 - box_area_fraction(box, h, w) if lam is None else lam.float()
    weight = per_sample(weight, n)
    return pair_batch(x, labels, num_classes, index, weight, mask=anchor_map.expand(n, 1, h, w))


@MIXUPS.register_module("cutmix")
class CutMix(SampledPolicy):
    """CutMix (Yun et al., ICCV 2019): a box of area ≈ (1−λ)·HW from the partner, λ ~ Beta(α, α).

    The label weight of the anchor is the realised (border-clipped) anchor area, as in every reference.

    Args:
        alpha: Beta(α, α) parameter (official 1.0; OpenMixup CIFAR-100 uses 0.2); 0 disables mixing, < 0 is an
            error.
        prob: probability of mixing a batch (official CIFAR recipe: 0.5).
        partner: ``perm`` (official, OpenMixup, mmpretrain), ``flip`` (timm) or ``roll`` (torchvision v2).
        cutmix_minmax: ``[min, max]`` box side ratios (timm/mmpretrain "min-max CutMix"): box sides drawn
            uniformly, box fully inside the image; λ is then unused.
        correct_lam: label weight = realised area (True, all references) or the sampled λ (False).
        rounding: box corners ``clovaai`` (c ± ⌊cut/2⌋: official, torchvision, mmpretrain) or ``timm``
            (side exactly ⌊H√(1−λ)⌋, timm ≥ 1.0).
        per_sample: one λ and box per sample instead of one per batch (vectorised variant).
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    # α = 0 turns it off, as in timm
    ranges = {"alpha": NON_NEGATIVE, "cutmix_minmax": UNIT}

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm",
                 cutmix_minmax: Sequence[float] | None = None, correct_lam: bool = True, rounding: str = "clovaai",
                 per_sample: bool = False):
        super().__init__(alpha=alpha, prob=prob, partner=partner, check_alpha=False)
        if rounding not in ("clovaai", "timm"):
            raise ValueError(f"rounding: expected 'clovaai' or 'timm', got {rounding!r}")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1.0:
                raise ValueError(f"cutmix_minmax: expected [min, max] with 0 <= min < max <= 1, got {cutmix_minmax}")
            cutmix_minmax = (float(cutmix_minmax[0]), float(cutmix_minmax[1]))
        self.cutmix_minmax = cutmix_minmax
        self.correct_lam = bool(correct_lam)
        self.rounding = rounding
        self.per_sample = bool(per_sample)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev = labels.shape[0], inputs.shape[-2:], inputs.device
        k = n if self.per_sample else 1
        lam = sample_beta(self.alpha, k, ctx.generator, dev) if self.alpha > 0 else torch.ones(k, device=dev)
        index = self.partner_index(n, ctx, dev)
        if self.cutmix_minmax is not None:
            box = rand_box_minmax(k, h, w, self.cutmix_minmax, ctx.generator, dev)
        else:
            cy, cx = rand_center(k, h, w, ctx.generator, dev)
            box = box_from_lam(lam, cy, cx, h, w, self.rounding)
        return {"lam": lam, "index": index, "box": box}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor,
                 box: Box, inplace: bool = False) -> MixBatch:
        corrected = self.correct_lam or self.cutmix_minmax is not None
        return paste_boxes(inputs, labels, num_classes, index, box, None if corrected else lam, inplace)
