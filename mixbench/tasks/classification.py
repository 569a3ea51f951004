"""Classification: integer class labels, soft one-hot mixed targets, top-k accuracy and calibration."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mixbench.evaluation.accuracy import Accuracy
from mixbench.evaluation.calibration import Calibration
from mixbench.evaluation.specs import SpecMetric
from mixbench.mixups.base import OneHotTargets, TargetBuilder
from mixbench.registry import TASKS
from mixbench.tasks.base import Task


@TASKS.register_module("classification")
class Classification(Task):
    """K-class classification: labels (N,) int64; targets Σ_k w_k · onehot(y[index_k]); loss ``soft_ce``;
    metrics top-k accuracy (``eval.topk``) and the calibration set (ECE, AdaECE, classwise ECE, MCE, NLL,
    Brier; with ``data.holdout`` also after temperature scaling)."""

    name = "classification"
    label_dtype = torch.int64
    default_loss = "soft_ce"
    metric_types = ("accuracy", "calibration")
    default_select = "top1"

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return ("top1", "top5", *Calibration.specs)

    def num_outputs(self, dataset: Any) -> int:
        return int(dataset.num_classes)

    def target_builder(self, num_outputs: int) -> TargetBuilder:
        return OneHotTargets(num_outputs)

    def metrics(self, cfg: Mapping[str, Any], num_outputs: int) -> list[SpecMetric]:
        return [Accuracy(topk=cfg["eval"]["topk"], num_classes=num_outputs), Calibration()]
