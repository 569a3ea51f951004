"""Binary cross-entropy for mixed targets (timm / RSB recipes, OpenMixup two-hot, PuzzleMix's softmax-BCE).

* ``activation="sigmoid"``: ``BCEWithLogits(z, t)`` per class, as timm ``BinaryCrossEntropy`` and OpenMixup
  ``CrossEntropyLoss(use_sigmoid=True)`` (RSB A2/A3 recipes).
* ``activation="softmax"``: ``BCE(softmax(z), t)``, the loss of the official Manifold Mixup, PuzzleMix and
  Co-Mixup code (``nn.BCELoss()(softmax(output), target)``).

Per-sample losses are the mean (timm, PyTorch ``mean`` reduction) or the sum over classes. Weights that do not
sum to 1 are used as they are, per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.losses.cross_entropy import smooth_targets
from mixbench.mixups.base import MixBatch, positive
from mixbench.registry import LOSSES


@LOSSES.register_module("bce")
class BinaryCrossEntropy:
    """Per-sample binary cross-entropy on (mixed) soft targets, with two-hot and thresholded variants.

    Args:
        num_classes: K.
        label_smoothing: ε; targets become t·(1−ε) + ε·Σt/K (timm's off/on values for one-hot rows).
        target_threshold: if set, targets become 1 where t > threshold and 0 elsewhere (timm).
        two_hot: every mixed class becomes a positive of value ``two_hot_scale`` (OpenMixup ``two_hot``).
        two_hot_scale: value of the positives in two-hot mode.
        activation: ``sigmoid`` (BCE with logits) or ``softmax`` (BCE on the softmax, PuzzleMix/Co-Mixup).
        reduction: ``mean`` or ``sum`` over classes, per sample.
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, target_threshold: float | None = None,
                 two_hot: bool = False, two_hot_scale: float = 1.0, activation: str = "sigmoid",
                 reduction: str = "mean"):
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"loss.activation: expected 'sigmoid' or 'softmax', got {activation!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"loss.reduction: expected 'mean' or 'sum', got {reduction!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing: expected a value in [0, 1), got {label_smoothing}")
        if target_threshold is not None and not 0.0 <= target_threshold <= 1.0:
            raise ValueError(f"loss.target_threshold: expected null or a value in [0, 1], got {target_threshold}")
        positive("two_hot_scale", two_hot_scale)
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.target_threshold = target_threshold
        self.two_hot = bool(two_hot)
        self.two_hot_scale = float(two_hot_scale)
        self.activation = activation
        self.reduction = reduction

    def targets(self, batch: MixBatch) -> Tensor:
        t = batch.targets.float()
        if self.two_hot:
            t = (t > 0).float() * self.two_hot_scale
        t = smooth_targets(t, self.label_smoothing)
        if self.target_threshold is not None:
            t = (t > self.target_threshold).float()
        return t

    def __call__(self, logits: Tensor, batch: MixBatch) -> Tensor:
        t = self.targets(batch)
        z = logits.float()
        if self.activation == "sigmoid":
            loss = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        else:
            # BCE on probabilities; log-softmax and log(1 − p) computed stably (PyTorch clamps logs at −100).
            logp = F.log_softmax(z, dim=-1)
            log1mp = torch.log1p(-logp.exp().clamp(max=1 - 1e-7))
            loss = -(t * logp.clamp_min(-100) + (1 - t) * log1mp.clamp_min(-100))
        return loss.mean(-1) if self.reduction == "mean" else loss.sum(-1)
