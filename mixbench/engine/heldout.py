"""Measure on an extra split before each validation: the held-out split (temperature, model selection) and
the flipped training samples (memorisation).

:class:`FitOnSplitHook` runs the model in predict mode over its loader and hands the outputs to a metric's
``fit``; the metric then reports what it measured with the validation metrics, in the same ``val`` row.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.hooks import Hook

from mixbench.registry import HOOKS


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Any) -> list[dict]:
    """Predict-mode outputs of ``model`` over ``loader`` (eval mode; the caller restores train mode)."""
    outputs: list[dict] = []
    for data in loader:
        data = model.data_preprocessor(data, False)
        outputs.extend(model(**data, mode="predict"))
    return outputs


@HOOKS.register_module("fit_on_split")
class FitOnSplitHook(Hook):
    """Before each validation, ``metric.fit(predict(model, loader))`` (the held-out split or flipped samples)."""

    priority = "NORMAL"

    def __init__(self, loader: Any, metric: Any):
        self.loader = loader
        self.metric = metric

    def before_val_epoch(self, runner: Any) -> None:
        from mixbench.engine.hooks import unwrap

        model = unwrap(runner.model)
        was_training = model.training
        model.eval()
        self.metric.fit(predict(model, self.loader))
        model.train(was_training)
