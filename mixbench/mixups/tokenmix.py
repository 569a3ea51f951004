"""TokenMix: token-level block masks with content-based label weights.

Liu et al., "TokenMix: Rethinking Image Mixing for Data Augmentation in Vision Transformers", ECCV 2022
(arXiv:2207.08409). Reference: Sense-X/TokenMix ``tokenmix.py``; OpenMixup ``augments/tokenmix.py``.

Mask: ``min(P, ⌊(1−λ)·P⌋ + minimum_tokens)`` partner tokens on the patch grid (M = 1 = partner), λ fixed to 0.5
as in the official CutMix branch (or Beta-sampled, as OpenMixup). ``block`` masks follow BEiT's block masking
(rectangles of random area and aspect ratio, log-uniform in [0.3, 1/0.3]) with a fixed number of rectangle
proposals per sample, vectorised; the count is then made exact by adding random tokens or dropping the
rectangle-adjacent excess. ``random`` masks pick the tokens uniformly. Masks are drawn per sample.

Label weights ("the right way round"): with s_i the score map of image i normalised to sum 1,
``w_a = Σ(1−M)·s_i`` (what is left of the anchor) and ``w_b = ΣM·s_π(i)`` (what was pasted from the partner);
they need not sum to 1. The official code takes s from an offline teacher's dense label maps; mixbench uses the
trained model's class→patch attention: ``label_source: clean`` (extra eval no-grad forward on the unmixed
images, as OpenMixup — which however swaps the two regions) or ``mixed`` (the attention of the training forward
on the mixed image, no extra pass). With probability ``1 − switch_prob`` the batch uses Mixup (α 0.8) instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mixbench.mixups._ops import blend
from mixbench.mixups._tokens import model_patch_size, pixels_of, rank_select
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, positive, sample_beta
from mixbench.models.signals import capture_attention
from mixbench.ranges import COUNT, NON_NEGATIVE, POSITIVE, UNIT
from mixbench.registry import MIXUPS


def block_token_mask(n: int, grid: int, count: Tensor, generator: torch.Generator, proposals: int = 10,
                     min_area: int = 4) -> Tensor:
    """(N, grid²) bool masks with exactly ``count`` tokens each, built from random rectangles (BEiT-style)."""
    dev = count.device
    total = grid * grid
    mask = torch.zeros(n, grid, grid, dtype=torch.bool, device=dev)
    rows = torch.arange(grid, device=dev)
    for _ in range(proposals):
        left = (count.view(-1) - mask.flatten(1).sum(1)).clamp_min(0).float()
        area = min_area + torch.rand(n, generator=generator, device=dev) * (left - min_area).clamp_min(0)
        aspect = torch.exp(math.log(0.3) + torch.rand(n, generator=generator, device=dev) * 2 * math.log(1 / 0.3))
        h = torch.round(torch.sqrt(area * aspect)).long().clamp(1, grid)
        w = torch.round(torch.sqrt(area / aspect)).long().clamp(1, grid)
        top = torch.floor(torch.rand(n, generator=generator, device=dev) * (grid - h + 1)).long()
        lft = torch.floor(torch.rand(n, generator=generator, device=dev) * (grid - w + 1)).long()
        rect = (((rows >= top[:, None]) & (rows < (top + h)[:, None]))[:, :, None]
                & ((rows >= lft[:, None]) & (rows < (lft + w)[:, None]))[:, None, :])
        new = (rect & ~mask).flatten(1).sum(1)
        ok = (new <= left.long()) & (left > 0)
        mask = mask | (rect & ok.view(-1, 1, 1))
    # Exact count: keep mask tokens first, then random ones; drop the excess among random ones.
    scores = mask.flatten(1).float() * 2.0 + torch.rand(n, total, generator=generator, device=dev)
    return rank_select(scores, count.expand(n))


@MIXUPS.register_module("tokenmix")
class TokenMix(MixPolicy):
    """TokenMix (Liu et al., ECCV 2022): token-level block masks, attention-derived label weights.

    Args:
        alpha: Beta(α, α) of λ when ``lam`` is None (OpenMixup α=1).
        lam: fixed anchor ratio of the mask (official 0.5); ``None`` samples it.
        minimum_tokens: tokens added to the partner count (official 14 on a 14×14 grid).
        mask_type: ``block`` (official default) or ``random``.
        label_source: ``clean`` (extra forward on unmixed images) or ``mixed`` (same forward).
        patch_size: ViT patch size in pixels; ``None`` reads it from the backbone.
        switch_prob: probability of the TokenMix branch, else Mixup (official 0.5; OpenMixup 0.9).
        mixup_alpha: Beta(α, α) of the Mixup branch (0.8).
        prob: probability of mixing a batch.
        partner: ``flip`` (official) or ``perm``/``roll``.
    """

    relabels = True

    # α is unused while λ is fixed (``lam``, then 0 is allowed)
    ranges = {"alpha": NON_NEGATIVE, "lam": UNIT, "minimum_tokens": NON_NEGATIVE, "patch_size": COUNT,
              "mixup_alpha": POSITIVE}

    def __init__(self, alpha: float = 1.0, lam: float | None = 0.5, minimum_tokens: int = 14,
                 mask_type: str = "block", label_source: str = "clean", patch_size: int | None = None,
                 switch_prob: float = 0.5, mixup_alpha: float = 0.8, prob: float = 1.0, partner: str = "flip"):
        super().__init__(alpha=alpha, prob=prob, partner=partner, check_alpha=lam is None)
        if mask_type not in ("block", "random"):
            raise ValueError(f"mask_type: expected 'block' or 'random', got {mask_type!r}")
        if label_source not in ("clean", "mixed"):
            raise ValueError(f"label_source: expected 'clean' or 'mixed', got {label_source!r}")
        self.lam = lam
        self.minimum_tokens = int(minimum_tokens)
        self.mask_type = mask_type
        self.label_source = label_source
        self.patch_size = patch_size
        self.switch_prob = float(switch_prob)
        self.mixup_alpha = positive("mixup_alpha", mixup_alpha)
        self.needs = ("attention",) if label_source == "clean" else ()

    def token_mask(self, n: int, grid: int, ctx: MixContext, device: torch.device) -> Tensor:
        total = grid * grid
        lam = (torch.full((1,), float(self.lam), device=device) if self.lam is not None
               else sample_beta(self.alpha, 1, ctx.generator, device))
        count = (torch.floor((1.0 - lam.double()) * total).long() + self.minimum_tokens).clamp(0, total)
        if self.mask_type == "random":
            return rank_select(torch.rand(n, total, generator=ctx.generator, device=device), count.expand(n))
        return block_token_mask(n, grid, count, ctx.generator)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, (h, w), dev = labels.shape[0], inputs.shape[-2:], inputs.device
        grid = h // model_patch_size(ctx.model, self.patch_size, h)
        use_tok = torch.rand((), generator=ctx.generator, device=dev) < self.switch_prob
        index = self.partner_index(n, ctx, dev)
        tok = self.token_mask(n, grid, ctx, dev)
        lam_mix = sample_beta(self.mixup_alpha, 1, ctx.generator, dev).expand(n)
        anchor_map = 1.0 - pixels_of(tok, grid, h, w)
        x = blend(inputs, index, torch.where(use_tok, anchor_map, lam_mix.view(-1, 1, 1, 1)))
        area = 1.0 - tok.float().mean(1)
        w_a = torch.where(use_tok, area, lam_mix)
        extras = {"tokenmix": use_tok.expand(n), "partner_tokens": tok.float()}
        batch = pair_batch(x, labels, num_classes, index, w_a, mask=torch.where(use_tok, anchor_map, 1.0),
                           extras=extras)
        if self.label_source == "clean":
            batch = self.relabel_with(batch, ctx.signal("attention")["cls"], None)
        return batch

    def capture(self, model: Any):
        return capture_attention(model, ("cls",)) if self.label_source == "mixed" else super().capture(model)

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        if self.label_source == "clean":
            return batch
        return self.relabel_with(batch, None, outputs["cls"])

    def relabel_with(self, batch: MixBatch, clean: Tensor | None, mixed: Tensor | None) -> MixBatch:
        """Label weights from clean score maps (N, P) of each image, or from the mixed image's attention."""
        m = batch.extras["partner_tokens"]
        if clean is not None:
            s = clean.float() / clean.float().sum(1, keepdim=True).clamp_min(1e-12)
            w_a = ((1 - m) * s).sum(1)
            w_b = (m * s[batch.indices[1]]).sum(1)
        else:
            s = mixed.float() / mixed.float().sum(1, keepdim=True).clamp_min(1e-12)
            w_a, w_b = ((1 - m) * s).sum(1), (m * s).sum(1)
        on = batch.extras["tokenmix"] & batch.extras.get("applied", torch.ones_like(batch.extras["tokenmix"]))
        weights = [torch.where(on, w_a, batch.weights[0]), torch.where(on, w_b, batch.weights[1])]
        return batch.with_weights(weights)
