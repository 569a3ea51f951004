"""C-Mixup: mixup for regression with partners drawn by label similarity.

Yao et al., "C-Mixup: Improving Generalization in Regression", NeurIPS 2022 (arXiv:2210.05775). Reference
code: huaxiuyao/C-Mixup ``src/algorithm.py`` (``get_mixup_sample_rate``, ``train``; MIT). The partner j of
sample i is drawn from P[i, j] ∝ exp(−‖y_i − y_j‖² / 2σ²), j = i included (the reference fits a Gaussian
KDE of bandwidth σ on y_i and scores every label); then x̃ = λx_i + (1 − λ)x_j, ỹ = λy_i + (1 − λ)y_j with
λ ~ Beta(α, α), at the input or, like the reference's ``use_manifold``, at a hidden layer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy
from mixbench.mixups.base import MixBatch, MixContext, pair_batch, positive, sample_beta
from mixbench.mixups.mixup import mixup_batch
from mixbench.registry import MIXUPS

LAMBDA_MODES = ("batch", "sample")


def label_kernel(labels: Tensor, bandwidth: float) -> Tensor:
    """Row-stochastic (N, N) P[i, j] = exp(−‖y_i − y_j‖² / 2σ²) / Σ_j' exp(−‖y_i − y_j'‖² / 2σ²), float64."""
    y = labels.double().reshape(labels.shape[0], -1)
    d2 = torch.cdist(y, y).pow(2)
    return torch.softmax(-d2 / (2.0 * float(bandwidth) ** 2), dim=1)


@MIXUPS.register_module("cmixup")
class CMixup(SampledPolicy):
    """C-Mixup (Yao et al., NeurIPS 2022): partners by the label kernel, λ ~ Beta(α, α), linear mixing.

    The kernel is over the samples of the batch (the reference's batch-level variant, ``batch_type=1``, which
    it uses for RCF-MNIST). Defaults follow the reference's ``src/config.py``: α = 2.0 for every dataset, one λ
    per batch (``lam: sample`` draws one per sample, as its PovertyMap code); σ is per dataset there (Airfoil
    1.75, NO2 1.2, RCF-MNIST 0.2 on labels in [0, 1]...), so set ``bandwidth`` in label units.

    Args:
        alpha: Beta(α, α) parameter (reference: 2.0).
        bandwidth: σ of the Gaussian label kernel, in label units (> 0).
        lam: ``batch`` (reference) or ``sample``: one λ per batch or per sample.
        layer: 0 mixes the inputs; k ≥ 1 mixes the output of the backbone's k-th mix point (the reference's
            MLP mixes after its first block: ``layer: 1`` with the ``mlp`` backbone).
        prob: probability of mixing a batch.
    """

    tasks = ("regression",)

    def __init__(self, alpha: float = 2.0, bandwidth: float = 1.0, lam: str = "batch", layer: int = 0,
                 prob: float = 1.0):
        super().__init__(alpha=alpha, prob=prob)
        self.bandwidth = positive("bandwidth", bandwidth)
        if lam not in LAMBDA_MODES:
            raise ValueError(f"lam: expected one of {', '.join(LAMBDA_MODES)}, got {lam!r}")
        if int(layer) < 0:
            raise ValueError(f"layer: expected an int >= 0, got {layer}")
        self.lam, self.layer = lam, int(layer)

    def partners(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        """One partner per sample drawn from its row of :func:`label_kernel` (on the labels' device)."""
        p = label_kernel(labels, self.bandwidth).to(torch.float32)
        return torch.multinomial(p, 1, generator=generator).view(-1)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, n if self.lam == "sample" else 1, ctx.generator, dev).expand(n)
        return {"lam": lam.contiguous(), "index": self.partners(labels, ctx.generator)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor) -> MixBatch:
        """Deterministic op: x̃ = λx + (1 − λ)x[index] at the input, or ``layer`` set for the model to mix."""
        if self.layer == 0:
            return mixup_batch(inputs, labels, num_classes, lam, index)
        return pair_batch(inputs, labels, num_classes, index, lam, layer=self.layer)
