"""Decoupled mixup loss (DecoupleMix / DM).

Liu, Li et al., "Harnessing Hard Mixed Samples with Decoupled Regularizer", NeurIPS 2023 (arXiv:2203.10761).
Reference: OpenMixup ``losses/cross_entropy_loss.py::soft_mix_cross_entropy`` with
``heads/cls_mixup_head.py::ClsMixupHead(eta_weight=...)``.

For a two-source mixed sample with classes a (anchor) and b (partner) and label weights λ_a, λ_b:
``L = −Σ_c ỹ_c log softmax(z)_c + Σ_{i∈{a,b}} η_i · (−log e^{z_i} / Σ_{c≠other(i)} e^{z_c})``: each mixed class
also gets a softmax whose normaliser excludes the other mixed class. Rows whose two classes coincide get the
plain soft CE.

Differences from the reference, on purpose: classes are taken from ``MixBatch.indices`` (OpenMixup finds them
by float equality of label values, so λ = 0.5 silently drops the decoupled term), η is ordered by source
(anchor, partner) per sample (OpenMixup reads row 0 in class-index order, which can swap them), and λ is per
sample (OpenMixup assumes one λ per batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.losses.cross_entropy import smooth_targets
from mixbench.mixups.base import MixBatch, non_negative
from mixbench.registry import LOSSES

MODES = ("both", "less", "more")


@LOSSES.register_module("decoupled")
class DecoupledMixupLoss:
    """Soft CE plus η-weighted decoupled softmax terms on the two mixed classes (DecoupleMix).

    Args:
        num_classes: K.
        eta: η (OpenMixup base configs 0.1; per-method CIFAR-100 values 0.01–0.1).
        mode: ``both`` (η·g(λ_a), η·g(λ_b)), ``less`` (only the minority class, λ < thr) or ``more`` (only the
            majority class).
        thr: threshold on the anchor weight that decides the minority/majority class.
        lam_idx: p in g(t) = t^p (0: constant η; 1: η·λ, the base configs).
        label_smoothing: ε applied to the soft-CE targets.
    """

    def __init__(self, num_classes: int, eta: float = 0.1, mode: str = "both", thr: float = 0.5,
                 lam_idx: float = 1.0, label_smoothing: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"loss.mode: expected one of {MODES}, got {mode!r}")
        if not 0.0 <= thr <= 1.0:
            raise ValueError(f"loss.thr: expected a value in [0, 1] (an anchor weight), got {thr}")
        self.num_classes = num_classes
        self.eta = non_negative("eta", eta)
        self.mode = mode
        self.thr = float(thr)
        self.lam_idx = non_negative("lam_idx", lam_idx)
        self.label_smoothing = float(label_smoothing)

    def etas(self, lam_a: Tensor, lam_b: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample η for the anchor class and the partner class."""
        eta_a = self.eta * lam_a.clamp_min(0).pow(self.lam_idx)
        eta_b = self.eta * lam_b.clamp_min(0).pow(self.lam_idx)
        if self.mode == "both":
            return eta_a, eta_b
        a_minor = lam_a < self.thr
        pick_a = a_minor if self.mode == "less" else ~a_minor
        zero = torch.zeros_like(eta_a)
        return torch.where(pick_a, eta_a, zero), torch.where(pick_a, zero, eta_b)

    def __call__(self, logits: Tensor, batch: MixBatch) -> Tensor:
        z = logits.float()
        targets = smooth_targets(batch.targets.float(), self.label_smoothing)
        loss = -(targets * F.log_softmax(z, dim=-1)).sum(-1)
        if batch.num_sources < 2:
            return loss
        ya = batch.labels[batch.indices[0]].long()
        yb = batch.labels[batch.indices[1]].long()
        eta_a, eta_b = self.etas(batch.weights[0].float(), batch.weights[1].float())
        za = z.gather(1, ya[:, None])[:, 0]
        zb = z.gather(1, yb[:, None])[:, 0]
        # Decoupled softmax: the normaliser of class a leaves class b out and vice versa.
        dec_a = torch.logsumexp(z.scatter(1, yb[:, None], float("-inf")), dim=-1) - za
        dec_b = torch.logsumexp(z.scatter(1, ya[:, None], float("-inf")), dim=-1) - zb
        mixed = (ya != yb).float()
        return loss + mixed * (eta_a * dec_a + eta_b * dec_b)
