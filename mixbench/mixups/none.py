"""The no-mixing baseline (ERM): the batch is returned as it is, with one-hot targets."""

from __future__ import annotations

from torch import Tensor

from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, MixPolicy, identity_batch
from mixbench.registry import MIXUPS


@MIXUPS.register_module("none")
class NoMix(MixPolicy):
    """No mixing (empirical risk minimisation baseline); targets are the one-hot labels."""

    tasks = ANY_TARGETS

    def __init__(self) -> None:
        super().__init__(alpha=1.0, prob=1.0, partner="perm")

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        return identity_batch(inputs, labels, num_classes)
