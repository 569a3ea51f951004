"""Top-k accuracy, the metric of every mixbench leaderboard.

:class:`Accuracy` is an mmengine ``BaseMetric``: per batch it stores the number of samples and of top-k hits
(not per-sample predictions, so validation of large sets stays cheap); under DDP mmengine gathers the
per-batch counts of every rank before :meth:`compute_metrics` sums them.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from mixbench.evaluation.specs import MetricSpec, SpecMetric, topk_key
from mixbench.registry import METRICS


def topk_correct(logits: Tensor, labels: Tensor, topk: Sequence[int]) -> list[int]:
    """Number of samples whose label is among the k highest logits, for each k (k clipped to K)."""
    maxk = min(max(topk), logits.shape[-1])
    pred = logits.topk(maxk, dim=-1).indices
    hit = pred.eq(labels.view(-1, 1))
    return [int(hit[:, :min(k, maxk)].any(dim=1).sum()) for k in topk]


@METRICS.register_module("accuracy")
class Accuracy(SpecMetric):
    """Top-k accuracy as a fraction in [0, 1] (``top1``, ``top5``...); k larger than the class count is dropped.

    Args:
        topk: the k values to report.
        num_classes: classes of the task; a k > num_classes is not reported (it would always be 1).
    """

    default_prefix = ""

    @classmethod
    def spec(cls, key: str) -> MetricSpec | None:
        k = topk_key(key)
        return None if k is None else MetricSpec("higher", "fraction", "{:.2f}", f"top-{k}")

    def __init__(self, topk: Sequence[int] = (1, 5), num_classes: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        ks = sorted(set(int(k) for k in topk))
        self.topk = [k for k in ks if num_classes is None or k < num_classes or k == 1]

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for out in data_samples:
            logits, labels = out["logits"], out["labels"]
            self.results.append({"n": int(labels.numel()), **{f"top{k}": c for k, c in
                                                              zip(self.topk, topk_correct(logits, labels, self.topk))}})

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        n = sum(r["n"] for r in results)
        return {f"top{k}": sum(r[f"top{k}"] for r in results) / max(n, 1) for k in self.topk}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Any, metrics: Sequence[BaseMetric]) -> dict[str, float]:
    """Run ``model`` in predict mode over ``loader`` once and return every metric's values (single process)."""
    model.eval()
    for metric in metrics:
        metric.results.clear()
    for data in loader:
        data = model.data_preprocessor(data, False)
        outputs = model(**data, mode="predict")
        for metric in metrics:
            metric.process(None, outputs)
    out: dict[str, float] = {}
    for metric in metrics:
        out.update(metric.compute_metrics(metric.results))
    return out
