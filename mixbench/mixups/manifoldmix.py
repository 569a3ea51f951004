"""ManifoldMix: Mixup of hidden representations at a randomly chosen layer.

Verma et al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019
(arXiv:1806.05236). Reference code: vikasverma1077/manifold_mixup ``supervised/models/preresnet.py``;
OpenMixup ``MixUpClassification._manifoldmix`` with the ``*_Mix`` backbones (``layer=(0, 3)``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mixbench.mixups._ops import HostChoice, SampledPolicy
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.mixups.mixup import mixup_batch
from mixbench.ranges import NON_NEGATIVE, POSITIVE
from mixbench.registry import MIXUPS


@MIXUPS.register_module("manifoldmix")
class ManifoldMix(SampledPolicy):
    """ManifoldMix (Verma et al., ICML 2019): λ ~ Beta(α, α), mix the features at a random eligible layer.

    Layer 0 is the input (plain Mixup, done here). Layer k ≥ 1 is the output of the backbone's k-th mix point
    (``backbone.mix_points()[k-1]``, i.e. after stage k for the CIFAR ResNets); the returned batch then keeps
    the inputs unmixed and sets ``layer``, and the classifier mixes the features there with
    :meth:`MixBatch.mix_features`. The layer is chosen on the host (the classifier must know which hook to
    install before the forward) from a CPU generator derived from ``ctx.generator``'s seed and ``ctx.iter``,
    so no device synchronisation happens.

    Args:
        alpha: Beta(α, α) (official and OpenMixup CIFAR: 2.0; OpenMixup ImageNet: 0.2).
        prob: probability of mixing a batch.
        partner: ``perm`` (official, OpenMixup), ``flip`` or ``roll``.
        layers: eligible layers, drawn uniformly (official PreActResNet and OpenMixup: 0, 1, 2).
    """

    tasks = ANY_TARGETS

    ranges = {"alpha": POSITIVE, "layers": NON_NEGATIVE}

    def __init__(self, alpha: float = 2.0, prob: float = 1.0, partner: str = "perm",
                 layers: Sequence[int] = (0, 1, 2)):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        layers = tuple(int(k) for k in layers)
        if not layers or min(layers) < 0:
            raise ValueError(f"layers: expected a non-empty list of layer indices >= 0, got {list(layers)}")
        self.layers = layers
        self._host = HostChoice()

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, 1, ctx.generator, dev).expand(n)
        index = self.partner_index(n, ctx, dev)
        probs = torch.full((len(self.layers),), 1.0 / len(self.layers), dtype=torch.float64)
        return {"lam": lam, "index": index, "layer": self.layers[self._host.choice(probs, ctx)]}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor,
                 layer: int) -> MixBatch:
        """Layer 0: Mixup of the inputs. Layer k ≥ 1: inputs untouched, ``batch.layer = k``."""
        if layer == 0:
            return mixup_batch(inputs, labels, num_classes, lam, index)
        n = labels.shape[0]
        lam = lam.float().reshape(-1).expand(n) if lam.numel() == 1 else lam.float()
        return pair_batch(inputs, labels, num_classes, index, lam, layer=int(layer))
