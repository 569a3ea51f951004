"""SMMix: self-motivated max–min attention region mixing with fine-grained and consistency losses.

Chen et al., "SMMix: Self-Motivated Image Mixing for Vision Transformers", ICCV 2023 (arXiv:2212.12977).
Reference: ChenMnZ/SMMix ``smmix.py``, ``engine.py``, ``deit.py``; OpenMixup ``augments/smmix.py``.

Before the forward, an eval-mode no-grad pass of the current model on the unmixed batch gives the
patch→patch attention of the last block (mean over heads and query patches: one score per token) and the
unmixed logits (the ``attention`` signal). A side s ~ U{⌊g·min⌋, …, ⌊g·max⌋} tokens is drawn per batch; for
each image the s×s token window of *minimum* attention is replaced by the partner's (flip) window of *maximum*
attention, copied at token level. λ = 1 − s²/g².

After the forward (:meth:`relabel`) two terms go to ``batch.extras["losses"]``:

* ``smmix_fine`` = ½[CE(head(mean of the anchor-region tokens), y) + CE(head(mean of the pasted tokens),
  y_π)], soft CE with label smoothing, on the final patch tokens;
* ``smmix_con`` = KL(softmax(λ·z_u + (1−λ)·z_u[π]) ‖ softmax(z)), z_u the unmixed logits.

Simplification: the official model has a separate token head; mixbench reuses the classifier head's ``fc``
(no parameters outside the classifier, so the optimiser sees everything). With probability ``1 − smmix_prob``
the batch uses Mixup (α 0.8) and no extra losses. OpenMixup uses class-token attention and drops both losses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.losses.cross_entropy import smooth_targets
from mixbench.mixups._ops import blend
from mixbench.mixups._tokens import grid_side, model_patch_size
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, positive, sample_beta
from mixbench.models.signals import head_of, num_prefix_tokens
from mixbench.ranges import COUNT, NON_NEGATIVE, POSITIVE, UNIT_OPEN_BOTTOM
from mixbench.registry import MIXUPS


def window_sums(score: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of ``score`` (N, g, g) over every side×side window (top-left corner at each token) and a validity
    mask, with ``side`` a tensor (integral image + gathers: no host sync)."""
    n, g, _ = score.shape
    integ = F.pad(score.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (N, g+1, g+1)
    r = torch.arange(g, device=score.device)
    r2 = (r + side).clamp(max=g)
    flat = integ.flatten(1)

    def at(rows: Tensor, cols: Tensor) -> Tensor:
        idx = (rows[:, None] * (g + 1) + cols[None, :]).flatten()
        return flat[:, idx].view(n, g, g)

    sums = at(r2, r2) - at(r, r2) - at(r2, r) + at(r, r)
    valid = (r + side <= g)
    return sums, valid[:, None] & valid[None, :]


def max_min_windows(score: Tensor, side: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Top-left token of each image's min-attention window and of its partner's max-attention window;
    each (N, 2) int64 (row, col)."""
    n, g, _ = score.shape
    sums, valid = window_sums(score, side)
    big = torch.finfo(sums.dtype).max
    lo = torch.where(valid, sums, big).flatten(1).argmin(1)
    hi = torch.where(valid, sums, -big).flatten(1).argmax(1)[index]
    return torch.stack([lo // g, lo % g], 1), torch.stack([hi // g, hi % g], 1)


def paste_windows(inputs: Tensor, index: Tensor, dst: Tensor, src: Tensor, side: Tensor,
                  patch: int) -> tuple[Tensor, Tensor]:
    """Copy the partner's window at ``src`` into the anchor's window at ``dst`` (token units, side ``side``).
    Returns the mixed images and the (N, 1, H, W) anchor mask."""
    n, c, h, w = inputs.shape
    ys = torch.arange(h, device=inputs.device)
    xs = torch.arange(w, device=inputs.device)
    y0, x0 = (dst[:, 0] * patch)[:, None], (dst[:, 1] * patch)[:, None]
    span = side * patch
    in_y = (ys >= y0) & (ys < y0 + span)
    in_x = (xs >= x0) & (xs < x0 + span)
    inside = in_y[:, :, None] & in_x[:, None, :]  # (N, H, W)
    dy, dx = ((src - dst) * patch).unbind(1)
    sy = (ys[None, :] + dy[:, None]).clamp(0, h - 1)
    sx = (xs[None, :] + dx[:, None]).clamp(0, w - 1)
    src_idx = torch.where(inside, sy[:, :, None] * w + sx[:, None, :], ys[None, :, None] * w + xs[None, None, :])
    partner = inputs[index].flatten(2).gather(2, src_idx.flatten(1)[:, None].expand(n, c, h * w))
    anchor = (~inside).unsqueeze(1)
    return torch.where(anchor, inputs, partner.view(n, c, h, w)), anchor.float()


@MIXUPS.register_module("smmix")
class SMMix(MixPolicy):
    """SMMix (Chen et al., ICCV 2023): max–min attention token windows + fine-grained/consistency losses.

    Args:
        min_side_ratio: smallest window side as a fraction of the token grid (reference 0.25).
        max_side_ratio: largest window side fraction (reference 0.75).
        smmix_prob: probability of the SMMix branch, else Mixup (reference switch 0.5; OpenMixup 0.8).
        mixup_alpha: Beta(α, α) of the Mixup branch (reference 0.8).
        fine_weight: weight of ``smmix_fine`` (reference 1).
        con_weight: weight of ``smmix_con`` (reference 1).
        smoothing: label smoothing of the fine-grained targets (reference 0.1).
        patch_size: ViT patch size in pixels; ``None`` reads it from the backbone.
        prob: probability of mixing a batch.
        partner: ``flip`` (reference) or ``perm``/``roll``.
    """

    needs = ("attention",)
    relabels = True

    # side ratios are non-empty shares of the token grid's side; the loss weights are non-negative
    ranges = {"min_side_ratio": UNIT_OPEN_BOTTOM, "max_side_ratio": UNIT_OPEN_BOTTOM, "mixup_alpha": POSITIVE,
              "fine_weight": NON_NEGATIVE, "con_weight": NON_NEGATIVE, "patch_size": COUNT}

    def __init__(self, min_side_ratio: float = 0.25, max_side_ratio: float = 0.75, smmix_prob: float = 0.5,
                 mixup_alpha: float = 0.8, fine_weight: float = 1.0, con_weight: float = 1.0,
                 smoothing: float = 0.1, patch_size: int | None = None, prob: float = 1.0, partner: str = "flip"):
        super().__init__(alpha=positive("mixup_alpha", mixup_alpha), prob=prob, partner=partner)
        if not 0.0 < min_side_ratio <= max_side_ratio <= 1.0:
            raise ValueError("min_side_ratio/max_side_ratio: expected 0 < min <= max <= 1")
        self.min_side_ratio = float(min_side_ratio)
        self.max_side_ratio = float(max_side_ratio)
        self.smmix_prob = float(smmix_prob)
        self.mixup_alpha = float(mixup_alpha)
        self.fine_weight = float(fine_weight)
        self.con_weight = float(con_weight)
        self.smoothing = float(smoothing)
        self.patch_size = patch_size

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        att = ctx.signal("attention")
        return self.mix_with(inputs, labels, num_classes, ctx, att["patch"], att["logits"])

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext, score: Tensor,
                 clean_logits: Tensor) -> MixBatch:
        n, h, dev = labels.shape[0], inputs.shape[-1], inputs.device
        patch = model_patch_size(ctx.model, self.patch_size, h)
        g = grid_side(score.shape[1])
        lo, hi = max(1, int(g * self.min_side_ratio)), max(1, int(g * self.max_side_ratio))
        side = torch.randint(lo, hi + 1, (), generator=ctx.generator, device=dev)
        use = torch.rand((), generator=ctx.generator, device=dev) < self.smmix_prob
        index = self.partner_index(n, ctx, dev)
        dst, src = max_min_windows(score.float().view(n, g, g), side, index)
        x_sm, anchor = paste_windows(inputs, index, dst, src, side, patch)
        lam_sm = (1.0 - side.float() ** 2 / (g * g)).expand(n)
        lam_mix = sample_beta(self.mixup_alpha, 1, ctx.generator, dev).expand(n)
        x = torch.where(use, x_sm, blend(inputs, index, lam_mix.view(-1, 1, 1, 1)))
        w_a = torch.where(use, lam_sm, lam_mix)
        extras = {"smmix": use.expand(n), "pasted_tokens": F.adaptive_avg_pool2d(1.0 - anchor, g).flatten(1),
                  "clean_logits": clean_logits}
        return pair_batch(x, labels, num_classes, index, w_a, mask=torch.where(use, anchor, 1.0), extras=extras)

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        fc = head_of(ctx.model).fc
        tokens = outputs["features"][:, num_prefix_tokens(ctx.model):]
        losses = dict(batch.extras.get("losses", {}))
        losses.update(self.extra_losses(batch, outputs["logits"], tokens, fc))
        batch.extras["losses"] = losses
        return batch

    def extra_losses(self, batch: MixBatch, logits: Tensor, tokens: Tensor, fc: torch.nn.Linear) -> dict[str, Tensor]:
        """The fine-grained token loss and the consistency loss (scalars), zero on Mixup batches."""
        on = (batch.extras["smmix"] & batch.extras.get("applied", torch.ones_like(batch.extras["smmix"]))).float()
        pasted = batch.extras["pasted_tokens"].to(tokens.dtype)
        t = tokens.float()
        src_feat = (pasted.float()[..., None] * t).sum(1) / pasted.float().sum(1, keepdim=True).clamp_min(1e-6)
        tgt_feat = ((1 - pasted.float())[..., None] * t).sum(1) / (1 - pasted.float()).sum(1, keepdim=True).clamp_min(1e-6)
        ya = smooth_targets(batch.source_targets(0), self.smoothing)
        yb = smooth_targets(batch.source_targets(1), self.smoothing)
        ce_a = -(ya * F.log_softmax(F.linear(tgt_feat, fc.weight.float(), None if fc.bias is None else fc.bias.float()), -1)).sum(-1)
        ce_b = -(yb * F.log_softmax(F.linear(src_feat, fc.weight.float(), None if fc.bias is None else fc.bias.float()), -1)).sum(-1)
        fine = (0.5 * (ce_a + ce_b) * on).mean()
        zu = batch.extras["clean_logits"].float()
        lam = batch.weights[0].float()[:, None]
        mixed_target = F.softmax(lam * zu + (1 - lam) * zu[batch.indices[1]], -1)
        kl = F.kl_div(F.log_softmax(logits.float(), -1), mixed_target, reduction="none").sum(-1)
        con = (kl * on).mean()
        return {"smmix_fine": self.fine_weight * fine, "smmix_con": self.con_weight * con}
