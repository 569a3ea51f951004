"""Evaluation metrics (top-1/top-5 accuracy). Importing this package registers them in ``METRICS``."""

from mixbench.evaluation.accuracy import Accuracy, evaluate, topk_correct

__all__ = ["Accuracy", "evaluate", "topk_correct"]
