"""Memorisation of noisy labels: the share of flipped training samples the model predicts with their noisy label.

Zhang et al. (2018) and the label-noise literature read it next to the clean test accuracy: ERM fits the flipped
labels as training goes on, mixup much less. It is measured before each validation on the flipped samples of the
training split (no augmentation), so its curve is in ``metrics.jsonl``.
"""

from __future__ import annotations

from typing import Any, Sequence

from mixbench.evaluation.calibration import gather_outputs
from mixbench.evaluation.specs import MetricSpec, SpecMetric
from mixbench.registry import METRICS


@METRICS.register_module("memorisation")
class Memorisation(SpecMetric):
    """``memorised``: fraction of the flipped training samples predicted as their noisy label (lower is better)."""

    default_prefix = ""
    specs = {"memorised": MetricSpec("lower", "fraction", "{:.2f}", "memorised noisy labels")}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.value: float | None = None

    def fit(self, flipped: Sequence[dict]) -> float:
        """Measure on predict-mode outputs of the flipped samples (their ``labels`` are the noisy ones)."""
        logits, noisy = gather_outputs(flipped)
        self.value = float((logits.argmax(1) == noisy).double().mean())
        return self.value

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        return None  # measured on the flipped training samples in :meth:`fit`, not on the validation split

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        return {} if self.value is None else {"memorised": self.value}
