"""What a reported number means: its direction, unit and display format.

Every metric class registered in ``METRICS`` declares the keys it reports in ``specs`` (key → :class:`MetricSpec`);
records store each value with its direction, ``best`` follows it and boards rank by it. :func:`metric_spec`
finds the spec of any reported key, including the ``heldout_`` copies computed on the held-out split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from mmengine.evaluator import BaseMetric

DIRECTIONS = ("higher", "lower")
HELDOUT_PREFIX = "heldout_"


@dataclass(frozen=True)
class MetricSpec:
    """How to read one reported number.

    Attributes:
        direction: ``"higher"`` or ``"lower"`` is better.
        unit: what the stored value is in (``"fraction"``, ``"%"``, ``"nats"``, ``"label units"``...).
        fmt: format of the stored value on a board (``"{:.2f}"``); fractions are shown in percent.
        label: short column label (``"top-1"``, ``"ECE"``).
    """

    direction: str
    unit: str
    fmt: str
    label: str

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"


class SpecMetric(BaseMetric):
    """A metric that declares the keys it reports (``specs``); subclasses may match patterns in :meth:`spec`."""

    specs: ClassVar[dict[str, MetricSpec]] = {}

    @classmethod
    def spec(cls, key: str) -> MetricSpec | None:
        return cls.specs.get(key)


def metric_spec(key: str) -> MetricSpec | None:
    """The spec of a reported key from whichever registered metric reports it (``None`` when none does)."""
    from mixbench.registry import METRICS, import_components

    import_components()
    base = key[len(HELDOUT_PREFIX):] if key.startswith(HELDOUT_PREFIX) else key
    for obj in METRICS.module_dict.values():
        if isinstance(obj, type) and issubclass(obj, SpecMetric):
            found = obj.spec(base)
            if found is not None:
                return found
    return None


def topk_key(key: str) -> int | None:
    """``k`` of a ``top<k>`` key, else ``None``."""
    m = re.fullmatch(r"top(\d+)", key)
    return int(m.group(1)) if m else None
