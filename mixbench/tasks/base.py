"""The task contract (docs/architecture.md, "Task contract").

A task, registered in ``TASKS`` and chosen by the ``task`` config group, decides:

* the label type (:attr:`Task.label_dtype`): class indices (int64, shape (N,)) or float vectors (N, D);
* the number of model outputs for a dataset (:meth:`Task.num_outputs`): K classes or D targets;
* how a :class:`~mixbench.mixups.base.MixBatch`'s targets follow from its ``indices``/``weights``
  (:meth:`Task.target_builder`); the batch builds them on first access, never a policy;
* the default loss (:attr:`Task.default_loss`) and which losses and policies fit it (their ``tasks``);
* the metrics it reports (:attr:`Task.metric_types`, ``METRICS`` keys; each reported key has a spec with
  its direction) and the key that selects the model on the held-out split (:attr:`Task.select`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch

from mixbench.evaluation.specs import HELDOUT_PREFIX, SpecMetric
from mixbench.mixups.base import TargetBuilder
from mixbench.registry import METRICS


class Task:
    """Base class of registered tasks; a subclass sets the class attributes and the two builders.

    Args:
        select: the metric key that picks the epoch of the ``selected`` values on the held-out split
            (``None``: the task's default, :attr:`default_select`).
    """

    name: ClassVar[str]
    label_dtype: ClassVar[torch.dtype]
    default_loss: ClassVar[str]
    metric_types: ClassVar[tuple[str, ...]]
    default_select: ClassVar[str]

    def __init__(self, select: str | None = None):
        select = self.default_select if select is None else select
        if not self.defines(select):
            raise ValueError(f"select: '{select}' is not a metric of task '{self.name}'; "
                             f"expected one of {', '.join(self.keys())}")
        self.select = select

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every metric key the task can report (without the ``heldout_`` copies)."""
        return tuple(key for name in cls.metric_types for key in METRICS.get(name).specs)

    @classmethod
    def defines(cls, key: str) -> bool:
        """True when ``key`` (or its ``heldout_`` copy) is a metric this task reports."""
        base = key[len(HELDOUT_PREFIX):] if key.startswith(HELDOUT_PREFIX) else key
        return any(METRICS.get(name).spec(base) is not None for name in cls.metric_types)

    def num_outputs(self, dataset: Any) -> int:
        raise NotImplementedError

    def target_builder(self, num_outputs: int) -> TargetBuilder:
        raise NotImplementedError

    def metrics(self, cfg: Mapping[str, Any], num_outputs: int) -> list[SpecMetric]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(select={self.select!r})"


def supports(component: Any, task: str) -> bool:
    """Whether a registered policy or loss declares ``task`` in its ``tasks`` (default: classification only)."""
    return task in getattr(component, "tasks", ("classification",))
