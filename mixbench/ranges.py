"""Allowed values of numeric options (docs/architecture.md, "Configs").

A :class:`Range` is an interval, open or closed at each end, plus optional single values outside it (the
``-1`` that means "all" or "automatic"). The fixed config groups give every numeric key one
(``mixbench.config.schema.RANGES``); a component declares the ranges of its options in a ``ranges`` class
attribute (:func:`declared_ranges`), and options whose name fixes their meaning (probabilities, dropout and
smoothing rates) have one by name (:func:`option_range`). :func:`mixbench.registry.build` checks both before it
builds a component, so a bad value is one line naming the key, also before any run state exists.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from mixbench.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The allowed values of a number: ``lo``/``hi`` bounds (``None``: unbounded), each closed or open, and
    the single values ``also`` allowed outside them.

    For a list-valued option the range applies to every element.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    also: tuple[float, ...] = ()

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if value in self.also:
            return True
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def check(self, key: str, value: Any, where: str = "") -> None:
        """Raise a one-line :class:`ConfigError` naming ``key`` and ``where`` (the file or the command line
        that set it, if known) unless ``value``, or each element of a list, is a number in this range."""
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in self:
                raise ConfigError(f"{key}={value!r}: expected {self}" + (f" (in {where})" if where else ""))

    def __str__(self) -> str:
        lo, hi = _number(self.lo), _number(self.hi)
        if self.hi is None:
            interval = f"{'>' if self.lo_open else '≥'} {lo}"
        elif self.lo is None:
            interval = f"{'<' if self.hi_open else '≤'} {hi}"
        else:
            interval = f"a value in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        return " or ".join([*(_number(v) for v in self.also), interval])


def _number(x: float | None) -> str:
    """A bound as the user would type it: ``4294967295``, not ``4.29497e+09``."""
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x}"


ANY = Range()  # any finite or infinite number (not NaN)
COUNT = Range(1)  # a positive integer count or interval
POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)  # a probability, a share
UNIT_OPEN_TOP = Range(0, 1, hi_open=True)  # a rate that must leave something (dropout, smoothing, momentum)
UNIT_OPEN_BOTTOM = Range(0, 1, lo_open=True)  # a share of the image that must hold something

# Options of any component (mixup, loss, backbone, head) whose name fixes their meaning; every ``*_prob``
# option is a probability too (``switch_prob``, ``input_prob``...).
OPTION_RANGES: dict[str, Range] = {
    "prob": UNIT,
    "dropout": UNIT_OPEN_TOP,
    "drop_rate": UNIT_OPEN_TOP,
    "drop_path_rate": UNIT_OPEN_TOP,
    "attn_drop_rate": UNIT_OPEN_TOP,
    "label_smoothing": UNIT_OPEN_TOP,
    "smoothing": UNIT_OPEN_TOP,
}


def option_range(name: str) -> Range | None:
    """The range of a component option named ``name``, if its name fixes one."""
    return OPTION_RANGES.get(name, UNIT if name.endswith("_prob") else None)


def declared_ranges(component: Any) -> dict[str, Range]:
    """The ranges a registered class declares for its options (``ranges``, merged along its bases), with the
    ranges its option names fix; a function declares none of its own."""
    declared: dict[str, Range] = {}
    for klass in reversed(inspect.getmro(component) if inspect.isclass(component) else ()):
        declared.update(vars(klass).get("ranges", {}))
    return declared


def check_option_ranges(component: Any, options: dict[str, Any], where: str, source: str = "") -> None:
    """Every numeric option in ``options`` within the range ``component`` declares or its name fixes
    (``None`` and values of other types pass: the signature check reports a wrong type)."""
    declared = declared_ranges(component)
    for key, value in options.items():
        allowed = declared.get(key) or option_range(key)
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if allowed is not None and value is not None and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            allowed.check(f"{where}.{key}", value, source)
