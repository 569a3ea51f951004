"""Mixup: convex combinations of image pairs and of their labels.

Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018 (arXiv:1710.09412).
Reference code: facebookresearch/mixup-cifar10 ``train.py`` (``mixup_data``); OpenMixup
``openmixup/models/augments/mixup.py``; timm ``timm/data/mixup.py``; torchvision ``transforms.v2.MixUp``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, blend, per_sample
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.ranges import NON_NEGATIVE
from mixbench.registry import MIXUPS


def mixup_batch(inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor,
                inplace: bool = False) -> MixBatch:
    """Deterministic Mixup core: ``x̃ = λ·x + (1−λ)·x[index]``, ``ỹ = λ·y + (1−λ)·y[index]``.

    Args:
        inputs: (N, C, H, W) float images.
        labels: (N,) int64.
        num_classes: K.
        lam: (N,) or (1,) anchor weight λ.
        index: (N,) partner of each sample.
        inplace: ``inputs`` is an owned batch that may be blended in place (see ``blend``).
    """
    n = labels.shape[0]
    lam = per_sample(lam.float(), n)
    x = blend(inputs, index, lam.view(-1, 1, 1, 1), inplace)
    return pair_batch(x, labels, num_classes, index, lam)


@MIXUPS.register_module("mixup")
class Mixup(SampledPolicy):
    """Mixup (Zhang et al., ICLR 2018): λ ~ Beta(α, α) once per batch, x̃ = λx + (1−λ)x_π.

    Args:
        alpha: Beta(α, α) parameter; α = 0 disables mixing (λ = 1) like the official code; α < 0 is an error.
            Default 1.0 (official CIFAR value and OpenMixup's CIFAR-100 setting).
        prob: probability of mixing a batch.
        partner: ``perm`` (official, OpenMixup, mmpretrain), ``flip`` (timm) or ``roll`` (torchvision v2).
        per_sample: draw one λ per sample instead of one per batch (a vectorised variant; the references
            use one per batch).
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    # α = 0 turns it off, as in timm
    ranges = {"alpha": NON_NEGATIVE}

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", per_sample: bool = False):
        super().__init__(alpha=alpha, prob=prob, partner=partner, check_alpha=False)
        self.per_sample = bool(per_sample)

    def sample_lam(self, n: int, ctx: MixContext, device: torch.device) -> Tensor:
        if self.alpha == 0:
            return torch.ones(n, device=device)
        if self.per_sample:
            return sample_beta(self.alpha, n, ctx.generator, device)
        return super().sample_lam(n, ctx, device)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n = labels.shape[0]
        lam = self.sample_lam(n, ctx, inputs.device)  # λ before the partner, as the references draw them
        return {"lam": lam, "index": self.partner_index(n, ctx, inputs.device)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor,
                 inplace: bool = False) -> MixBatch:
        return mixup_batch(inputs, labels, num_classes, lam, index, inplace)
