"""TransMix: relabel a CutMix batch with the class-token attention of the same forward.

Chen et al., "TransMix: Attend to Mix for Vision Transformers", CVPR 2022 (arXiv:2111.09833).
Reference: Beckschen/TransMix ``transmix.py``, ``train.py``; OpenMixup ``augments/transmix.py``.

Step 1 (before the forward): timm-style batch mixing with the flip partner: CutMix with probability
``switch_prob`` (reference 0.8), otherwise Mixup. Step 2 (:meth:`relabel`, after the forward): for CutMix
batches, the last block's class→patch attention A (mean over heads, captured during the training forward, no
extra pass) gives the partner share λ₁ = ΣM·A / ΣA with M the partner box on the token grid (nearest
downsampling, as ``nn.Upsample`` in the reference); the label weight of the partner becomes
``ratio·λ₀ + (1−ratio)·λ₁`` with λ₀ the box area (reference ratio 0.5). Mixup batches keep their λ.

The branch choice is a 0/1 tensor (both branches are built, one is kept), so no host sync happens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mixbench.mixups._ops import box_from_lam, box_mask, rand_center
from mixbench.mixups._tokens import grid_side, tokens_of
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, positive, sample_beta
from mixbench.mixups.cutmix import paste_boxes
from mixbench.mixups.mixup import mixup_batch
from mixbench.models.signals import capture_attention
from mixbench.ranges import POSITIVE, UNIT
from mixbench.registry import MIXUPS


def switch_mix(inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext, index: Tensor,
               cut_alpha: float, mix_alpha: float, switch_prob: float) -> tuple[MixBatch, Tensor, Tensor]:
    """timm batch-mode Mixup/CutMix switch: returns the batch, the CutMix flag (N,) and the partner box
    mask (N, 1, H, W) (all zeros on Mixup batches)."""
    n, (h, w), dev = labels.shape[0], inputs.shape[-2:], inputs.device
    use_cut = torch.rand((), generator=ctx.generator, device=dev) < switch_prob
    lam_cut = sample_beta(cut_alpha, 1, ctx.generator, dev)
    cy, cx = rand_center(1, h, w, ctx.generator, dev)
    box = box_from_lam(lam_cut, cy, cx, h, w, "timm")
    lam_mix = sample_beta(mix_alpha, 1, ctx.generator, dev)
    cut = paste_boxes(inputs, labels, num_classes, index, box)
    mix = mixup_batch(inputs, labels, num_classes, lam_mix, index)
    x = torch.where(use_cut, cut.inputs, mix.inputs)
    w_a = torch.where(use_cut, cut.weights[0], mix.weights[0])
    partner = box_mask(box, h, w).expand(n, 1, h, w) & use_cut
    batch = pair_batch(x, labels, num_classes, index, w_a, mask=(~partner).float())
    return batch, use_cut.expand(n), partner


@MIXUPS.register_module("transmix")
class TransMix(MixPolicy):
    """TransMix (Chen et al., CVPR 2022): CutMix/Mixup, then attention-based label weights (same forward).

    Args:
        alpha: Beta(α, α) of the CutMix λ (reference 1.0).
        mixup_alpha: Beta(α, α) of the Mixup λ (reference 0.8).
        switch_prob: probability of the CutMix branch (reference ``--mixup-switch-prob 0.8``; OpenMixup
            ``mix_prob=[0.2, 0.8]``).
        ratio: weight of the box area in the final λ (reference 0.5).
        prob: probability of mixing a batch.
        partner: ``flip`` (reference, timm) or ``perm``/``roll``.
    """

    relabels = True

    # λ = ratio·area + (1 − ratio)·attention is a convex mix
    ranges = {"alpha": POSITIVE, "mixup_alpha": POSITIVE, "ratio": UNIT}

    def __init__(self, alpha: float = 1.0, mixup_alpha: float = 0.8, switch_prob: float = 0.8,
                 ratio: float = 0.5, prob: float = 1.0, partner: str = "flip"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        self.mixup_alpha = positive("mixup_alpha", mixup_alpha)
        self.switch_prob = float(switch_prob)
        self.ratio = float(ratio)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        index = self.partner_index(labels.shape[0], ctx, inputs.device)
        batch, use_cut, partner = switch_mix(inputs, labels, num_classes, ctx, index, self.alpha,
                                             self.mixup_alpha, self.switch_prob)
        batch.extras.update(cut=use_cut, partner_mask=partner)
        return batch

    def capture(self, model: Any):
        return capture_attention(model, ("cls",))

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        return self.relabel_with(batch, outputs["cls"])

    def relabel_with(self, batch: MixBatch, attn: Tensor) -> MixBatch:
        """Deterministic step 2 from a (N, P) class→patch attention map."""
        g = grid_side(attn.shape[1])
        m = tokens_of(batch.extras["partner_mask"], g, mode="nearest")
        a = attn.float()
        w_partner, w_anchor = (m * a).sum(1), ((1 - m) * a).sum(1)
        lam1 = w_partner / (w_anchor + w_partner).clamp_min(1e-12)
        lam0 = 1.0 - batch.weights[0]
        lam = self.ratio * lam0 + (1.0 - self.ratio) * lam1
        on = batch.extras["cut"] & batch.extras.get("applied", torch.ones_like(batch.extras["cut"]))
        w_a = torch.where(on, 1.0 - lam, batch.weights[0])
        return batch.with_weights([w_a, 1.0 - w_a])
