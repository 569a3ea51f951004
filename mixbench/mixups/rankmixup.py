"""RankMixup batches: the clean batch followed by ``num_mixup`` independent Mixup copies.

Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023.
Reference: cvlab-yonsei/RankMixup ``calibrate/net/resnet_mixup.py`` (``forward_multimixup``): each mixture has
its own λ_m ~ Beta(α, α) and its own permutation, and all of them go through one concatenated forward with
the clean batch. Pair with ``loss.type: rankmixup`` (mixbench/losses/rankmixup.py), which reads the layout
from ``extras["rank_mixup"]``. The batch the model sees has N·(1 + num_mixup) rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixups._ops import blend
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, OneHotTargets, sample_beta
from mixbench.ranges import COUNT, POSITIVE
from mixbench.registry import MIXUPS


@MIXUPS.register_module("rankmixup")
class RankMixupBatch(MixPolicy):
    """Clean batch + ``num_mixup`` Mixup copies for the RankMixup losses (MRL: 1 copy, M-NDCG: 3).

    Args:
        alpha: Beta(α, α) of each copy's λ (reference 2.0 on CIFAR, 1.0 on Tiny-ImageNet).
        num_mixup: number of mixed copies.
        partner: partner scheme of each copy (reference: a fresh permutation per copy).
    """

    ranges = {"alpha": POSITIVE, "num_mixup": COUNT}

    def __init__(self, alpha: float = 2.0, num_mixup: int = 1, partner: str = "perm"):
        super().__init__(alpha=alpha, prob=1.0, partner=partner)
        if num_mixup < 1:
            raise ValueError(f"num_mixup: expected >= 1, got {num_mixup}")
        self.num_mixup = int(num_mixup)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, dev = labels.shape[0], labels.device
        xs, a_idx, b_idx, wa = [inputs], [torch.arange(n, device=dev)], [torch.arange(n, device=dev)], [
            torch.ones(n, device=dev)]
        for m in range(1, self.num_mixup + 1):
            lam = sample_beta(self.alpha, 1, ctx.generator, dev).expand(n)
            index = self.partner_index(n, ctx, dev)
            xs.append(blend(inputs, index, lam.view(-1, 1, 1, 1)))
            a_idx.append(torch.arange(n, device=dev) + m * n)
            b_idx.append(index + m * n)
            wa.append(lam)
        labels_all = labels.repeat(self.num_mixup + 1)
        w0 = torch.cat(wa)
        w1 = torch.cat([torch.zeros(n, device=dev)] + [1.0 - w for w in wa[1:]])
        indices = [torch.cat(a_idx), torch.cat(b_idx)]
        weights = [w0, w1]
        return MixBatch(inputs=torch.cat(xs), labels=labels_all, indices=indices, weights=weights,
                        builder=OneHotTargets(num_classes),
                        extras={"rank_mixup": {"n": n, "num_mixup": self.num_mixup}})
