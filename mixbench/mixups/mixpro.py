"""MixPro: MaskMix (patch-aligned random grid masks) + Progressive Attention Labelling (PAL).

Zhao et al., "MixPro: Data Augmentation with MaskMix and Progressive Attention Labeling for Vision
Transformer", ICLR 2023 (arXiv:2304.12043). Reference: fistyee/MixPro ``utils.py`` (``MaskMix``), ``main.py``;
OpenMixup ``augments/mixpro.py`` + ``MixUpClassification.forward_vit_based_mix``.

MaskMix: r ~ Beta(α, α) once per batch; the image is a g×g grid of ``mask_patch_size`` cells (a multiple of the
ViT patch); ``ceil(g²·r)`` cells, drawn independently per sample, keep the anchor (M = 1), the rest come from the
partner; λ_old = count/g². With probability ``1 − maskmix_prob`` the batch uses plain Mixup instead.

PAL (:meth:`relabel`, from the *same* forward — the official code; OpenMixup uses an extra forward on the
unmixed images): λ_attn = Σ M_tok·A / ΣA with A the class→patch attention, and
``λ = f·λ_attn + (1−f)·λ_old`` where the progressive factor f is the cosine similarity between the smoothed
mixed target and the (detached) prediction (official), or ``progress²`` of training (``progressive:
schedule``, the alternative left commented out in the official code, driven by ``ctx.progress``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.losses.cross_entropy import smooth_targets
from mixbench.mixups._ops import blend
from mixbench.mixups._tokens import attention_share, grid_side, model_patch_size, rank_select, tokens_of
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, positive, sample_beta
from mixbench.models.signals import capture_attention
from mixbench.ranges import COUNT, POSITIVE
from mixbench.registry import MIXUPS


def maskmix_masks(n: int, size: int, cell: int, r: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-sample random cell masks: (N, 1, size, size) float (1 = anchor) and the anchor share (N,)."""
    g = math.ceil(size / cell)
    count = torch.ceil(r.double() * g * g).long().clamp(0, g * g)
    scores = torch.rand(n, g * g, generator=generator, device=r.device)
    keep = rank_select(scores, count.expand(n)).float().view(n, 1, g, g)
    mask = keep.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :size, :size]
    return mask, (count.float() / (g * g)).expand(n)


@MIXUPS.register_module("mixpro")
class MixPro(MixPolicy):
    """MixPro (Zhao et al., ICLR 2023): MaskMix + progressive attention labelling.

    Args:
        alpha: Beta(α, α) of the MaskMix ratio (reference 1.0).
        mask_patch_size: side of a MaskMix cell in pixels; ``None`` = 4 ViT patches (reference 56 for patch
            14, OpenMixup 64 for patch 16).
        patch_size: ViT patch size in pixels; ``None`` reads it from the backbone.
        maskmix_prob: probability of MaskMix, else Mixup (reference 0.5; OpenMixup 0.8).
        mixup_alpha: Beta(α, α) of the Mixup branch (0.8).
        pal: relabel MaskMix batches with attention after the forward.
        progressive: ``similarity`` (official: cos(ỹ, softmax(z))) or ``schedule`` (progress²).
        smoothing: label smoothing of the target used in the similarity (reference 0.1).
        prob: probability of mixing a batch.
        partner: ``perm`` (reference).
    """

    relabels = True

    ranges = {"alpha": POSITIVE, "mask_patch_size": COUNT, "patch_size": COUNT, "mixup_alpha": POSITIVE}

    def __init__(self, alpha: float = 1.0, mask_patch_size: int | None = None, patch_size: int | None = None,
                 maskmix_prob: float = 0.5, mixup_alpha: float = 0.8, pal: bool = True,
                 progressive: str = "similarity", smoothing: float = 0.1, prob: float = 1.0,
                 partner: str = "perm"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if progressive not in ("similarity", "schedule"):
            raise ValueError(f"progressive: expected 'similarity' or 'schedule', got {progressive!r}")
        self.mask_patch_size = mask_patch_size
        self.patch_size = patch_size
        self.maskmix_prob = float(maskmix_prob)
        self.mixup_alpha = positive("mixup_alpha", mixup_alpha)
        self.pal = bool(pal)
        self.progressive = progressive
        self.smoothing = float(smoothing)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, size, dev = labels.shape[0], inputs.shape[-1], inputs.device
        p = model_patch_size(ctx.model, self.patch_size, size)
        cell = self.mask_patch_size or 4 * p
        use_mask = torch.rand((), generator=ctx.generator, device=dev) < self.maskmix_prob
        r = sample_beta(self.alpha, 1, ctx.generator, dev)
        index = self.partner_index(n, ctx, dev)
        mask, lam_old = maskmix_masks(n, size, cell, r, ctx.generator)
        lam_mix = sample_beta(self.mixup_alpha, 1, ctx.generator, dev).expand(n)
        weight_map = torch.where(use_mask, mask, lam_mix.view(-1, 1, 1, 1))
        x = blend(inputs, index, weight_map)
        w_a = torch.where(use_mask, lam_old, lam_mix)
        extras = {"maskmix": use_mask.expand(n), "anchor_mask": mask}
        return pair_batch(x, labels, num_classes, index, w_a, mask=torch.where(use_mask, mask, 1.0), extras=extras)

    def capture(self, model: Any):
        return capture_attention(model, ("cls",)) if self.pal else super().capture(model)

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        if not self.pal:
            return batch
        return self.relabel_with(batch, outputs["cls"], outputs["logits"], ctx.progress)

    def factor(self, batch: MixBatch, logits: Tensor, progress: float) -> Tensor:
        if self.progressive == "schedule":
            return torch.full_like(batch.weights[0], float(progress) ** 2)
        target = smooth_targets(batch.targets.float(), self.smoothing)
        return F.cosine_similarity(target, F.softmax(logits.detach().float(), -1), dim=1)

    def relabel_with(self, batch: MixBatch, attn: Tensor, logits: Tensor, progress: float) -> MixBatch:
        """Deterministic PAL from a (N, P) class→patch attention map and the forward's logits."""
        m = tokens_of(batch.extras["anchor_mask"], grid_side(attn.shape[1]))
        lam_attn = attention_share(attn, m)
        f = self.factor(batch, logits, progress)
        lam = f * lam_attn + (1.0 - f) * batch.weights[0]
        on = batch.extras["maskmix"] & batch.extras.get("applied", torch.ones_like(batch.extras["maskmix"]))
        w_a = torch.where(on, lam, batch.weights[0])
        return batch.with_weights([w_a, 1.0 - w_a])
