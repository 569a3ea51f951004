"""Evaluation metrics: top-k accuracy, calibration, regression, memorisation of noisy labels.

Importing this package registers every metric in ``METRICS``; each declares the keys it reports with their
direction, unit and format (:mod:`mixbench.evaluation.specs`).
"""

import importlib
import pkgutil

from mixbench.evaluation.accuracy import Accuracy, evaluate, topk_correct

__all__ = ["Accuracy", "evaluate", "topk_correct"]

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
