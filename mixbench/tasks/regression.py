"""Regression: float target vectors, mixed targets Σ_k w_k · y[index_k], MSE by default, C-Mixup's metrics."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from mixbench.evaluation.regression import RegressionMetrics
from mixbench.evaluation.specs import SpecMetric
from mixbench.mixups.base import TargetBuilder, expand_as
from mixbench.registry import TASKS
from mixbench.tasks.base import Task


class WeightedTargets:
    """targets = Σ_k weights[k] · labels[indices[k]] for (M, D) float labels (float32); N = len(indices[k])
    rows (M > N when a policy appends partner samples, as C-Mixup's dataset-level sampler does)."""

    def __call__(self, labels: Tensor, indices: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
        y = labels.float()
        out = torch.zeros((indices[0].shape[0],) + tuple(y.shape[1:]), device=y.device)
        for idx, w in zip(indices, weights):
            out = out + expand_as(w.float(), out) * y[idx]
        return out

    def __repr__(self) -> str:
        return "WeightedTargets()"


@TASKS.register_module("regression")
class Regression(Task):
    """D-output regression: labels (N, D) float32; targets the weighted sum of the sources' labels; loss
    ``mse``; metrics RMSE, MAE, MAPE, Pearson r, R², worst-group RMSE and r; model selection on the held-out
    split's RMSE (``heldout_rmse``) as in C-Mixup."""

    name = "regression"
    label_dtype = torch.float32
    default_loss = "mse"
    metric_types = ("regression",)
    default_select = "rmse"

    def num_outputs(self, dataset: Any) -> int:
        return int(dataset.num_targets)

    def target_builder(self, num_outputs: int) -> TargetBuilder:
        return WeightedTargets()

    def metrics(self, cfg: Mapping[str, Any], num_outputs: int) -> list[SpecMetric]:
        return [RegressionMetrics()]
