"""SmoothMix: a soft Gaussian blob of the partner image; labels weighted by the blob's area.

Lee et al., "SmoothMix: a Simple Yet Effective Data Augmentation to Train Robust Classifiers", CVPR
Workshops 2020. No official code; reference: OpenMixup ``openmixup/models/augments/smoothmix.py``.

Mask as in OpenMixup: ``G(u) = exp(−‖u − c‖² / 2σ²)`` (peak 1), σ ~ U[0.25, 0.5)·H, centre
c = ((H−1)/2 + dy, (W−1)/2 + dx) with integer offsets dy ∈ int(U{0..H−1} − H/2) (same for x);
``x̃ = (1 − G)·x + G·x_π``. Fixed relative to OpenMixup: G weights the *partner*, so the anchor's label
weight is ``1 − mean(G)``; OpenMixup gives ``mean(G)`` to the anchor (inverted labels). OpenMixup draws a
Beta λ and discards it; mixbench has no α option. Non-square images use H for rows and W for columns.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, blend, per_sample
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch
from mixbench.ranges import POSITIVE
from mixbench.registry import MIXUPS


def gaussian_blob(sigma: Tensor, dy: Tensor, dx: Tensor, height: int, width: int) -> Tensor:
    """(k, 1, H, W) Gaussian of peak 1 centred at ((H−1)/2 + dy, (W−1)/2 + dx); all arguments (k,)."""
    ys = torch.arange(height, device=sigma.device, dtype=torch.float64) - ((height - 1) / 2 + dy.double().view(-1, 1))
    xs = torch.arange(width, device=sigma.device, dtype=torch.float64) - ((width - 1) / 2 + dx.double().view(-1, 1))
    d2 = ys.square().unsqueeze(2) + xs.square().unsqueeze(1)
    return torch.exp(-d2 / (2 * sigma.double().view(-1, 1, 1) ** 2)).unsqueeze(1)


@MIXUPS.register_module("smoothmix")
class SmoothMix(SampledPolicy):
    """SmoothMix (Lee et al., CVPRW 2020): partner shown through a soft Gaussian blob; anchor weight 1 − mean(G).

    Args:
        prob: probability of mixing a batch.
        partner: ``perm`` (OpenMixup), ``flip`` or ``roll``.
        sigma_range: σ / H drawn uniformly in ``[min, max)`` (OpenMixup: [0.25, 0.5)).
        per_sample: one blob per sample instead of one per batch (vectorised variant).
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    ranges = {"sigma_range": POSITIVE}

    def __init__(self, prob: float = 1.0, partner: str = "perm", sigma_range: Sequence[float] = (0.25, 0.5),
                 per_sample: bool = False):
        super().__init__(alpha=1.0, prob=prob, partner=partner)
        if len(sigma_range) != 2 or not 0 < sigma_range[0] <= sigma_range[1]:
            raise ValueError(f"sigma_range: expected [min, max] with 0 < min <= max, got {sigma_range}")
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        self.per_sample = bool(per_sample)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev, g = labels.shape[0], inputs.shape[-2:], inputs.device, ctx.generator
        k = n if self.per_sample else 1
        index = self.partner_index(n, ctx, dev)
        # offsets int(randint(0, S) - S/2): truncation toward zero, as the reference's int()
        dx = torch.trunc(torch.randint(w, (k,), generator=g, device=dev) - w / 2)
        dy = torch.trunc(torch.randint(h, (k,), generator=g, device=dev) - h / 2)
        lo, hi = self.sigma_range
        sigma = (lo + (hi - lo) * torch.rand(k, generator=g, device=dev, dtype=torch.float64)) * h
        return {"sigma": sigma, "dy": dy, "dx": dx, "index": index}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, sigma: Tensor, dy: Tensor, dx: Tensor,
                 index: Tensor, inplace: bool = False) -> MixBatch:
        n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
        anchor_map = (1.0 - gaussian_blob(sigma, dy, dx, h, w)).float()
        x = blend(inputs, index, anchor_map, inplace)
        weight = per_sample(anchor_map.mean(dim=(1, 2, 3)), n)  # the anchor's share of the pixels
        return pair_batch(x, labels, num_classes, index, weight, mask=anchor_map.expand(n, 1, h, w))
