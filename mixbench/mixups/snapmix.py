"""SnapMix: semantically proportional label weights from class activation maps.

Huang, Wang, Tao, "SnapMix: Semantically Proportional Mixing for Augmenting Fine-grained Data", AAAI 2021
(arXiv:2012.04846). Reference: Shaoli-Huang/SnapMix ``utils/mixmethod.py`` (``get_spm``, ``snapmix``);
OpenMixup ``augments/snapmix.py`` (whose CAM wiring is broken at HEAD: mixbench computes the CAM itself).

Before the forward, the ``cam`` signal gives each image's CAM for its own label from the current model
(backbone feature map × ``head.fc`` weights, an extra no-grad pass; the reference runs it in train mode). The
CAM is upsampled to the image, shifted to min 0 and normalised to sum 1 (the SPM). Two independent boxes:
box₁ ~ λ₁ in the anchor and box₂ ~ λ₂ in the partner, λ₁, λ₂ ~ Beta(α, α); the partner's box₂ is resized
(bilinear, ``align_corners=True``) into box₁. Label weights, which need not sum to 1:
``ρ_a = 1 − Σ_{box₁} SPM_i`` and ``ρ_b = Σ_{box₂} SPM_π(i)``; when y_i = y_π(i) both become ρ_a + ρ_b (the
reference's loss then counts that class twice); NaNs fall back to the box-area λ. When either box is empty
the batch is unmixed. The paste is a ``grid_sample`` with tensor box corners, so no host sync is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.mixups._ops import box_area_fraction, box_from_lam, box_mask, rand_center
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, sample_beta
from mixbench.ranges import POSITIVE
from mixbench.registry import MIXUPS

Box = tuple[Tensor, Tensor, Tensor, Tensor]


def spm(cam: Tensor, height: int, width: int) -> Tensor:
    """Semantic percentage map (N, H, W): CAM upsampled, shifted to min 0, normalised to sum 1."""
    m = F.interpolate(cam.float().unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    m = m - m.flatten(1).min(1).values.view(-1, 1, 1)
    return m / m.flatten(1).sum(1).view(-1, 1, 1)


def resize_paste(inputs: Tensor, index: Tensor, dst: Box, src: Box) -> Tensor:
    """Paste ``inputs[index]`` cropped to ``src`` and resized (bilinear, align_corners) into ``dst``."""
    n, c, h, w = inputs.shape
    y1, y2, x1, x2 = (t.float().expand(n) for t in dst)
    sy1, sy2, sx1, sx2 = (t.float().expand(n) for t in src)
    ys = torch.arange(h, device=inputs.device, dtype=torch.float32)
    xs = torch.arange(w, device=inputs.device, dtype=torch.float32)

    def coord(pos: Tensor, a1: Tensor, a2: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
        scale = (b2 - b1 - 1).clamp_min(0) / (a2 - a1 - 1).clamp_min(1)
        return b1[:, None] + (pos[None, :] - a1[:, None]) * scale[:, None]

    gy = coord(ys, y1, y2, sy1, sy2) / max(h - 1, 1) * 2 - 1  # (N, H)
    gx = coord(xs, x1, x2, sx1, sx2) / max(w - 1, 1) * 2 - 1  # (N, W)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], -1)
    pasted = F.grid_sample(inputs[index].float(), grid, mode="bilinear", align_corners=True).to(inputs.dtype)
    inside = box_mask(dst, h, w).expand(n, 1, h, w)
    return torch.where(inside, pasted, inputs)


@MIXUPS.register_module("snapmix")
class SnapMix(MixPolicy):
    """SnapMix (Huang et al., AAAI 2021): two boxes, CAM-proportional label weights (not summing to 1).

    Args:
        alpha: Beta(α, α) of both box ratios (README: 5 in most experiments; CLI default 1).
        cam_mode: ``train`` (reference: BN in train mode, running stats updated) or ``eval``.
        prob: probability of mixing a batch (reference 1.0).
        partner: ``perm`` (reference).
    """

    needs = ("cam",)

    ranges = {"alpha": POSITIVE}

    def __init__(self, alpha: float = 5.0, cam_mode: str = "train", prob: float = 1.0, partner: str = "perm"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if cam_mode not in ("train", "eval"):
            raise ValueError(f"cam_mode: expected 'train' or 'eval', got {cam_mode!r}")
        self.cam_mode = cam_mode

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, (h, w), dev = labels.shape[0], inputs.shape[-2:], inputs.device
        lam1 = sample_beta(self.alpha, 1, ctx.generator, dev)
        lam2 = sample_beta(self.alpha, 1, ctx.generator, dev)
        index = self.partner_index(n, ctx, dev)
        box1 = box_from_lam(lam1, *rand_center(1, h, w, ctx.generator, dev), h, w)
        box2 = box_from_lam(lam2, *rand_center(1, h, w, ctx.generator, dev), h, w)
        cam = ctx.signal("cam", mode=self.cam_mode)
        return self.mix_with(inputs, labels, num_classes, cam, index, box1, box2)

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, cam: Tensor, index: Tensor, box1: Box,
                 box2: Box) -> MixBatch:
        """Deterministic SnapMix from CAMs (N, h, w), partners and the two boxes (int64 y1, y2, x1, x2)."""
        n, (h, w) = labels.shape[0], inputs.shape[-2:]
        area1, area2 = box_area_fraction(box1, h, w), box_area_fraction(box2, h, w)
        valid = ((area1 > 0) & (area2 > 0)).expand(n)
        x = torch.where(valid.view(-1, 1, 1, 1), resize_paste(inputs, index, box1, box2), inputs)
        s = spm(cam, h, w)
        in1 = box_mask(box1, h, w)[:, 0].float()
        in2 = box_mask(box2, h, w)[:, 0].float()
        rho_a = 1.0 - (s * in1).flatten(1).sum(1)
        rho_b = (s[index] * in2).flatten(1).sum(1)
        lam = (1.0 - area1).expand(n)
        rho_a = torch.where(torch.isnan(rho_a), lam, rho_a)
        rho_b = torch.where(torch.isnan(rho_b), 1.0 - lam, rho_b)
        same = labels == labels[index]
        total = rho_a + rho_b
        rho_a, rho_b = torch.where(same, total, rho_a), torch.where(same, total, rho_b)
        rho_a = torch.where(valid, rho_a, torch.ones_like(rho_a))
        rho_b = torch.where(valid, rho_b, torch.zeros_like(rho_b))
        mask = (~box_mask(box1, h, w)).float().expand(n, 1, h, w)
        return pair_batch(x, labels, num_classes, index, rho_a, rho_b,
                          mask=torch.where(valid.view(-1, 1, 1, 1), mask, 1.0))
