"""Per-sample soft-target cross-entropy, the default loss for mixed targets.

Every loss in ``LOSSES`` maps ``(logits (N, K), batch: MixBatch) -> (N,)`` per-sample losses; the classifier
averages them. Taking the whole :class:`MixBatch` lets a loss read the per-source indices and weights
(decoupled mixup) and keeps per-sample weights per sample: mixbench never averages λ over the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.registry import LOSSES

if TYPE_CHECKING:  # importing mixbench.mixups here would import every policy, some of which use this module
    from mixbench.mixups.base import MixBatch


def smooth_targets(targets: Tensor, smoothing: float) -> Tensor:
    """Label smoothing applied to (possibly mixed) soft targets: t·(1-ε) + ε·(Σt)/K.

    Using the row sum keeps weights that do not sum to 1 (TransMix, SnapMix) proportional, and reduces to
    timm's ``(1-ε)·onehot + ε/K`` for one-hot rows.
    """
    if smoothing <= 0:
        return targets
    k = targets.shape[-1]
    return targets * (1.0 - smoothing) + smoothing * targets.sum(-1, keepdim=True) / k


@LOSSES.register_module("soft_ce")
class SoftTargetCrossEntropy:
    """Soft-target cross-entropy −Σ_c t_c log softmax(z)_c per sample, with optional label smoothing."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing: expected a value in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)

    def __call__(self, logits: Tensor, batch: MixBatch) -> Tensor:
        targets = smooth_targets(batch.targets.to(torch.float32), self.label_smoothing)
        return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1)
