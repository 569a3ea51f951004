"""RankMixup calibration losses: mixup margin ranking (MRL) and mixup NDCG (M-NDCG).

Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023.
Reference: cvlab-yonsei/RankMixup ``calibrate/losses/rankmixup.py``, ``calibrate/net/resnet_mixup.py``.

The loss works with the ``rankmixup`` policy, whose batch is ``[clean N | mixture 1 | … | mixture M]``
(each mixture with its own λ_m and permutation). The objective is ``CE(z_clean, y) + α_r · L_rank`` — no
mixed-label CE. Per-row losses are returned so that their plain mean over all N·(1+M) rows equals
``mean_i(CE_i + α_r · rank_i)``: clean rows carry ``(1+M)·(CE_i + α_r·rank_i)``, mixture rows 0.

* MRL: ``rank_i = mean_m [ỹ_m,i not one-hot] · relu(max_c z̃_m,i − max_c z_i + margin)`` (max logits).
* M-NDCG: relevances r = (1, max ỹ_1, …) with mixtures sorted by relevance, gains = max softmax; nDCG =
  DCG/IDCG when IDCG > DCG else IDCG/DCG; ``rank_i = 1 − nDCG_i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.errors import ConfigError
from mixbench.mixups.base import MixBatch, non_negative
from mixbench.registry import LOSSES

EXTRA_KEY = "rank_mixup"


def split_groups(logits: Tensor, batch: MixBatch) -> tuple[int, int]:
    info = batch.extras.get(EXTRA_KEY)
    if info is None:
        raise ConfigError("loss.type: rankmixup losses need the batch built by mixup.type=rankmixup")
    n, m = int(info["n"]), int(info["num_mixup"])
    if logits.shape[0] != n * (1 + m):
        raise ValueError(f"rankmixup: expected {n * (1 + m)} rows, got {logits.shape[0]}")
    return n, m


def mrl(clean: Tensor, mixed: Tensor, one_hot_mixed: Tensor, margin: float) -> Tensor:
    """(N,) margin ranking term; ``mixed`` (M, N, K), ``one_hot_mixed`` (M, N) bool (masked out)."""
    diff = mixed.max(-1).values - clean.max(-1).values.unsqueeze(0)
    return ((~one_hot_mixed).float() * F.relu(diff + margin)).mean(0)


def ndcg(clean: Tensor, mixed: Tensor, relevance: Tensor) -> Tensor:
    """(N,) nDCG of clean + mixtures; ``relevance`` (M, N) = max of each mixed target."""
    gains = torch.cat([F.softmax(clean, -1).max(-1).values[None], F.softmax(mixed, -1).max(-1).values], 0)
    rel = torch.cat([torch.ones_like(relevance[:1]), relevance], 0)  # (1+M, N)
    order = torch.argsort(relevance, dim=0, descending=True, stable=True) + 1
    order = torch.cat([torch.zeros_like(order[:1]), order], 0)
    gains, rel = gains.gather(0, order), rel.gather(0, order)
    disc = 1.0 / torch.log2(torch.arange(2, gains.shape[0] + 2, device=gains.device, dtype=gains.dtype))
    dcg = (gains * disc[:, None]).sum(0)
    idcg = (rel * disc[:, None]).sum(0)
    return torch.where(idcg > dcg, dcg / idcg, idcg / dcg)


@LOSSES.register_module("rankmixup")
class RankMixupLoss:
    """RankMixup: clean CE + α_r · (MRL or M-NDCG) on the ``rankmixup`` policy's extra mixtures.

    Args:
        num_classes: K.
        mode: ``mrl`` (reference ``num_mixup=1``) or ``ndcg`` (reference ``num_mixup=3``).
        alpha: α_r, weight of the ranking term (reference 0.1).
        margin: MRL margin on max logits (reference 2.0 on CIFAR, 1.0 on Tiny-ImageNet).
    """

    def __init__(self, num_classes: int, mode: str = "mrl", alpha: float = 0.1, margin: float = 2.0):
        if mode not in ("mrl", "ndcg"):
            raise ValueError(f"loss.mode: expected 'mrl' or 'ndcg', got {mode!r}")
        self.num_classes = num_classes
        self.mode = mode
        self.alpha = non_negative("alpha", alpha)
        self.margin = non_negative("margin", margin)

    def __call__(self, logits: Tensor, batch: MixBatch) -> Tensor:
        n, m = split_groups(logits, batch)
        z = logits.float()
        clean, mixed = z[:n], z[n:].reshape(m, n, -1)
        ce = F.cross_entropy(clean, batch.labels[:n].long(), reduction="none")
        top = batch.targets[n:].float().reshape(m, n, -1).max(-1).values
        if self.mode == "mrl":
            rank = mrl(clean, mixed, top >= 1.0 - 1e-6, self.margin)
        else:
            rank = 1.0 - ndcg(clean, mixed, top)
        per_clean = (1 + m) * (ce + self.alpha * rank)
        return torch.cat([per_clean, per_clean.new_zeros(n * m)])


