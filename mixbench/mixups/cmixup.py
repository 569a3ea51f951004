"""C-Mixup: mixup for regression with partners drawn by label similarity, within the batch or the dataset.

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
from mixbench.mixups.base import MixBatch, MixContext, OneHotTargets, pair_batch, positive, sample_beta
from mixbench.mixups.mixup import mixup_batch
from mixbench.ranges import NON_NEGATIVE, POSITIVE
from mixbench.registry import MIXUPS

LAMBDA_MODES = ("batch", "sample")
SCOPES = ("batch", "dataset")


def label_kernel(labels: Tensor, bandwidth: float, pool: Tensor | None = None) -> Tensor:
    """Row-stochastic P[i, j] = exp(−‖y_i − y_j‖² / 2σ²) / Σ_j' exp(−‖y_i − y_j'‖² / 2σ²), float64, over the
    candidates ``pool`` (default: the labels themselves, (N, N)); (N, M) for a pool of M labels."""
    y = labels.double().reshape(labels.shape[0], -1)
    c = y if pool is None else pool.double().reshape(pool.shape[0], -1)
    d2 = torch.cdist(y, c).pow(2)
    return torch.softmax(-d2 / (2.0 * float(bandwidth) ** 2), dim=1)


@MIXUPS.register_module("cmixup")
class CMixup(SampledPolicy):
    """C-Mixup (Yao et al., NeurIPS 2022): partners by the label kernel, λ ~ Beta(α, α), linear mixing.

    ``scope: dataset`` (the reference's default, its tabular and time-series runs) draws each partner from the
    whole training split: the model gives the policy the split's tensors (:meth:`attach`), the partners are
    normalised like the batch and appended to it, so the batch carries N anchors and N partners and the model
    mixes the two halves (at the input, or at ``layer``). ``scope: batch`` restricts the kernel to the batch
    (the reference's ``batch_type=1``, which it uses for RCF-MNIST). Defaults follow the reference's
    ``src/config.py``: α = 2.0 for every dataset, one λ per batch (``lam: sample`` draws one per sample, as its
    PovertyMap code); σ is per dataset there (Airfoil 1.75, NO2 1.2, RCF-MNIST 0.2 on labels in [0, 1]...), so
    set ``bandwidth`` in label units.

    Args:
        alpha: Beta(α, α) parameter (reference: 2.0).
        bandwidth: σ of the Gaussian label kernel, in label units (> 0).
        lam: ``batch`` (reference) or ``sample``: one λ per batch or per sample.
        layer: 0 mixes the inputs; k ≥ 1 mixes the output of the backbone's k-th mix point (the reference's
            MLP mixes after its first block: ``layer: 1`` with the ``mlp`` backbone).
        scope: ``dataset`` (reference default) or ``batch``: where partners are drawn from.
        prob: probability of mixing a batch (``scope: batch`` only; the dataset scope always mixes).
    """

    tasks = ("regression",)

    ranges = {"alpha": POSITIVE, "bandwidth": POSITIVE, "layer": NON_NEGATIVE}

    def __init__(self, alpha: float = 2.0, bandwidth: float = 1.0, lam: str = "batch", layer: int = 0,
                 scope: str = "dataset", prob: float = 1.0):
        super().__init__(alpha=alpha, prob=prob)
        self.bandwidth = positive("bandwidth", bandwidth)
        if lam not in LAMBDA_MODES:
            raise ValueError(f"lam: expected one of {', '.join(LAMBDA_MODES)}, got {lam!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "dataset" and prob < 1:
            raise ValueError(f"prob: scope 'dataset' mixes every batch (its batches carry the partners), got {prob}")
        if int(layer) < 0:
            raise ValueError(f"layer: expected an int >= 0, got {layer}")
        self.lam, self.layer, self.scope = lam, int(layer), scope
        self._pool: tuple[Tensor, Tensor] | None = None

    def attach(self, inputs: Tensor, labels: Tensor) -> None:
        """The training split's raw inputs and labels, the partner pool of ``scope: dataset``."""
        self._pool = (inputs, labels)

    def pool(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if self._pool is None:
            raise RuntimeError("cmixup scope 'dataset' needs the training split: the model attaches it")
        if self._pool[0].device != device:
            self._pool = (self._pool[0].to(device), self._pool[1].to(device))
        return self._pool

    def partners(self, labels: Tensor, generator: torch.Generator, pool: Tensor | None = None) -> Tensor:
        """One partner per sample drawn from its row of :func:`label_kernel` over ``pool`` (default: the batch)."""
        p = label_kernel(labels, self.bandwidth, pool).to(torch.float32)
        return torch.multinomial(p, 1, generator=generator).view(-1)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, n if self.lam == "sample" else 1, ctx.generator, dev).expand(n)
        if self.scope == "batch":
            return {"lam": lam.contiguous(), "index": self.partners(labels, ctx.generator)}
        pool_x, pool_y = self.pool(dev)
        j = self.partners(labels, ctx.generator, pool_y)
        partner = ctx.model.data_preprocessor({"inputs": pool_x[j], "labels": pool_y[j]}, True)
        return {"lam": lam.contiguous(), "index": j, "partner_inputs": partner["inputs"],
                "partner_labels": partner["labels"]}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor,
                 partner_inputs: Tensor | None = None, partner_labels: Tensor | None = None) -> MixBatch:
        """Deterministic op: x̃ = λx + (1 − λ)x[index] at the input, or ``layer`` set for the model to mix.

        With ``partner_inputs``/``partner_labels`` (dataset scope) the partners are appended: the batch holds
        2N rows, source 0 the first half and source 1 the second, and the model mixes them (``layer`` 0: at
        the input)."""
        if partner_inputs is None:
            if self.layer == 0:
                return mixup_batch(inputs, labels, num_classes, lam, index)
            return pair_batch(inputs, labels, num_classes, index, lam, layer=self.layer)
        n = labels.shape[0]
        rows = torch.arange(n, device=labels.device)
        return MixBatch(inputs=torch.cat([inputs, partner_inputs.to(inputs.dtype)]),
                        labels=torch.cat([labels, partner_labels.to(labels.dtype)]), indices=[rows, rows + n],
                        weights=[lam, 1.0 - lam], layer=self.layer, builder=OneHotTargets(num_classes))
