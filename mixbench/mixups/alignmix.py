"""AlignMix: mix last-stage feature maps after aligning them with entropic optimal transport.

Venkataramanan et al., "AlignMixup: Improving Representations By Interpolating Aligned Features", CVPR 2022
(arXiv:2103.15375). Reference: shashankvkt/AlignMixup_CVPR22 ``cifar10_100/models/resnet18_classifier.py``,
``utils/OT.py``; OpenMixup ``augments/alignmix.py``.

Per batch: λ ~ Beta(α, α), partners, and a branch: with probability ``input_prob`` plain input mixup
(official: ``layer_mix`` ∈ {0, 1} uniformly; OpenMixup uses ManifoldMix there instead), otherwise feature
alignment at the last mix point of the backbone. There, the feature maps A (N, C, h·w) of anchor and partner
are aligned by Sinkhorn on the squared-distance cost between their spatial feature vectors (uniform marginals,
ε = 0.1, log domain, plan detached), R = P·hw, and with probability ½ per batch
``Ã = λ·A + (1−λ)·A_π Rᵀ`` (partner aligned to the anchor) or ``Ã = λ·A R + (1−λ)·A_π``. Gradients flow through
the mixed features. Labels: mixed CE with λ.

Mechanism: the batch is an :class:`AlignMixBatch` whose ``layer`` is the last mix point and whose
``mix_features`` does the alignment; the classifier's ``layer`` hook calls it (interface C). Branches are 0/1
tensors, so there is no host sync; Sinkhorn runs a fixed number of iterations instead of the reference's
early stop (``err.item()`` every iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mixbench.mixups._ops import blend
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, sample_beta
from mixbench.models.signals import backbone_of
from mixbench.ranges import COUNT, NON_NEGATIVE, POSITIVE
from mixbench.registry import MIXUPS


def sinkhorn(cost: Tensor, eps: float, iters: int) -> Tensor:
    """Entropic OT plan (N, m, m) with uniform marginals, log-domain Sinkhorn for a fixed number of steps."""
    n, m, _ = cost.shape
    log_mu = torch.full((n, m), -math.log(m), device=cost.device, dtype=cost.dtype)
    u = torch.zeros(n, m, device=cost.device, dtype=cost.dtype)
    v = torch.zeros_like(u)
    k = -cost / eps
    for _ in range(iters):
        u = eps * (log_mu - torch.logsumexp(k + v[:, None, :] / eps, dim=2))
        v = eps * (log_mu - torch.logsumexp(k + u[:, :, None] / eps, dim=1))
    return torch.exp(k + u[:, :, None] / eps + v[:, None, :] / eps)


def align_mix(feat: Tensor, index: Tensor, lam: Tensor, to_anchor: Tensor, eps: float, iters: int) -> Tensor:
    """Aligned feature mixing of (N, C, h, w) maps (see module docstring)."""
    n, c, h, w = feat.shape
    a = feat.flatten(2)  # (N, C, hw)
    b = a[index]
    with torch.no_grad():
        af, bf = a.detach().float().transpose(1, 2), b.detach().float().transpose(1, 2)
        cost = torch.cdist(af, bf).pow(2)  # (N, hw, hw): anchor position i vs partner position j
        plan = sinkhorn(cost, eps, iters) * (h * w)
    plan = plan.to(feat.dtype)
    lam = lam.to(feat.dtype).view(n, 1, 1)
    partner_aligned = torch.bmm(b, plan.transpose(1, 2))  # column i: partner content moved to anchor position i
    anchor_aligned = torch.bmm(a, plan)  # column j: anchor content moved to partner position j
    mixed = torch.where(to_anchor.view(-1, 1, 1), lam * a + (1 - lam) * partner_aligned,
                        lam * anchor_aligned + (1 - lam) * b)
    return mixed.view(n, c, h, w)


@dataclass
class AlignMixBatch(MixBatch):
    """A MixBatch whose feature mixing aligns the maps first (used through the classifier's layer hook)."""

    def mix_features(self, h: Tensor) -> Tensor:
        ex = self.extras["align"]
        if h.dim() != 4:
            return super().mix_features(h)
        mixed = align_mix(h, self.indices[1], ex["lam"], ex["to_anchor"], ex["eps"], ex["iters"])
        return torch.where(ex["feature"].view(-1, 1, 1, 1), mixed, h)


@MIXUPS.register_module("alignmix")
class AlignMix(MixPolicy):
    """AlignMix (Venkataramanan et al., CVPR 2022): Sinkhorn-aligned mixing of last-stage feature maps.

    Args:
        alpha: Beta(α, α) (official and OpenMixup 2.0).
        input_prob: probability of the input-mixup branch (official 0.5; 0 = always align features).
        eps: Sinkhorn entropic regularisation (0.1).
        iters: Sinkhorn iterations (official: at most 100 with an early stop).
        layer: mix point to align at (1-based, as ``MixBatch.layer``); ``None`` = the last one.
        prob: probability of mixing a batch. partner: ``perm`` (reference).
    """

    # Sinkhorn needs ε > 0 and one iteration; ``layer`` indexes the backbone's mix points
    ranges = {"alpha": POSITIVE, "eps": POSITIVE, "iters": COUNT, "layer": NON_NEGATIVE}

    def __init__(self, alpha: float = 2.0, input_prob: float = 0.5, eps: float = 0.1, iters: int = 100,
                 layer: int | None = None, prob: float = 1.0, partner: str = "perm"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        self.input_prob = float(input_prob)
        self.eps = float(eps)
        self.iters = int(iters)
        self.layer = layer

    def mix_layer(self, model: Any) -> int:
        if self.layer is not None:
            return int(self.layer)
        points = getattr(backbone_of(model), "mix_points", None) if model is not None else None
        if points is None:
            raise ValueError("alignmix: the backbone has no mix_points(); set mixup.layer")
        return len(points())

    def __call__(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        # Probability handled here: the generic helper cannot blend a batch that mixes inputs and features.
        return self.mix(inputs, labels, num_classes, ctx)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, 1, ctx.generator, dev).expand(n)
        index = self.partner_index(n, ctx, dev)
        on = torch.rand((), generator=ctx.generator, device=dev) < self.prob
        use_input = torch.rand((), generator=ctx.generator, device=dev) < self.input_prob
        to_anchor = (torch.rand((), generator=ctx.generator, device=dev) < 0.5).expand(n)
        lam = torch.where(on, lam, torch.ones_like(lam))
        x = torch.where(on & use_input, blend(inputs, index, lam.view(-1, 1, 1, 1)), inputs)
        extras = {"align": {"lam": lam, "to_anchor": to_anchor, "feature": (on & ~use_input).expand(n),
                            "eps": self.eps, "iters": self.iters}}
        return pair_batch(x, labels, num_classes, index, lam, batch_type=AlignMixBatch,
                          layer=self.mix_layer(ctx.model), extras=extras)
