"""Switch between several mixup policies, one per batch, with given probabilities.

The recipe of DeiT / timm (Mixup α 0.8 or CutMix α 1.0, 50/50) and of OpenMixup's ``mix_mode`` lists with
``mix_prob`` (e.g. TransMix 0.8 / Mixup 0.2). Sub-policies are any registered ``MIXUPS`` entries.
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from mixbench.errors import ConfigError
from mixbench.mixups._ops import HostChoice
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy
from mixbench.ranges import NON_NEGATIVE
from mixbench.registry import MIXUPS, build


@MIXUPS.register_module("switch")
class Switch(MixPolicy):
    """Pick one sub-policy per batch (probabilities ``probs``, uniform by default) and apply it.

    The choice is made on the host (a policy may need hooks or signals decided before the forward) from a
    CPU generator derived from ``ctx.generator``'s seed and ``ctx.iter``; no device synchronisation.
    ``batch.extras["policy"]`` names the sub-policy used. ``needs`` is the union of the sub-policies' needs;
    :meth:`capture` and :meth:`relabel` go to the sub-policy chosen for the current batch.

    Args:
        policies: sub-policy configs, e.g. ``[{type: mixup, alpha: 0.8}, {type: cutmix, alpha: 1.0}]``.
        probs: one probability per policy (normalised; default uniform).
    """

    # relative weights, normalised to sum to 1
    ranges = {"probs": NON_NEGATIVE}

    def __init__(self, policies: Sequence[Mapping[str, Any]], probs: Sequence[float] | None = None):
        super().__init__()
        if not policies:
            raise ConfigError("mixup.policies: expected a non-empty list of mixup configs")
        self.policies = [build(MIXUPS, cfg, f"mixup.policies[{i}]") for i, cfg in enumerate(policies)]
        self.names = [str(cfg["type"]) for cfg in policies]
        probs = [1.0] * len(self.policies) if probs is None else [float(p) for p in probs]
        if len(probs) != len(self.policies) or min(probs) < 0 or sum(probs) <= 0:
            raise ConfigError(f"mixup.probs: expected {len(self.policies)} non-negative numbers, got {list(probs)}")
        self.probs = [p / sum(probs) for p in probs]
        self.needs = tuple(dict.fromkeys(s for p in self.policies for s in p.needs))
        self.relabels = any(p.relabels for p in self.policies)
        self.tasks = tuple(t for t in self.policies[0].tasks if all(t in p.tasks for p in self.policies))
        self._host = HostChoice()
        self._current = 0

    def choose(self, ctx: MixContext) -> int:
        self._current = self._host.choice(torch.tensor(self.probs, dtype=torch.float64), ctx)
        return self._current

    def __call__(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        return self.mix(inputs, labels, num_classes, ctx)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        k = self.choose(ctx)
        batch = self.policies[k](inputs, labels, num_classes, ctx)
        batch.extras = dict(batch.extras, policy=self.names[k])
        return batch

    def capture(self, model: Any) -> contextlib.AbstractContextManager[dict]:
        return self.policies[self._current].capture(model)

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        return self.policies[self._current].relabel(batch, outputs, ctx)
