"""Published claims that a suite tests, as checks computed from the measured numbers (docs/leaderboards.md).

A suite's ``claim`` is either a sentence (stated on the board, not checked) or a mapping::

    claim:
      text: Mixup lowers ECE against ERM at similar accuracy (Thulasidasan et al., 2019).
      checks:
        - {better: mixup, than: none, metric: ece}            # lower ECE: the direction is the metric's
        - {better: mixup, than: none, metric: top1, by_at_least: 5}   # at least 5 points more
        - {similar: mixup, to: none, metric: top1, within: 2}  # |difference| of at most 2 points

``better``/``similar``, ``than``/``to`` name suite entries by their ``label`` (``than`` and ``to`` may be a
list: one check per entry). ``metric`` and ``definition`` default to the suite's. Margins (``by_at_least``,
``within``) are in the units the board shows (percentage points for accuracies and ECEs).

The rule, per check, from the two entries' seeds: ``d`` is the difference of the means (A − B, signed so
that positive is "A better" for a ``better`` check), with its Welch 95 % t-interval ``[lo, hi]``
(``se² = s_A²/n_A + s_B²/n_B``, Welch–Satterthwaite degrees of freedom).

- ``better`` with margin ``m`` (default 0): **held** when ``lo > m``; **did not hold** when ``hi < m`` (A is
  worse, or — with a margin — better by less than claimed); **inconclusive** otherwise.
- ``similar`` within ``w``: **held** when ``[lo, hi]`` lies inside ``[-w, w]``; **did not hold** when it
  lies entirely outside; **inconclusive** otherwise.
- An entry with fewer than two seeds on the board gives no interval: **inconclusive**.

The claim **held** when every check held, **did not hold** when any check did not hold, and is
**inconclusive** otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from mixbench.errors import ConfigError
from mixbench.results.aggregate import Board, aggregate, t_quantile
from mixbench.results.record import METRIC_DEFS, OPTIONAL_METRIC_DEFS
from mixbench.results.store import Store

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
_CHECK_KEYS = {"better": {"better", "than", "metric", "definition", "by_at_least"},
               "similar": {"similar", "to", "metric", "definition", "within"}}


@dataclass(frozen=True)
class Check:
    """One comparison of two suite entries on one metric.

    Attributes:
        kind: ``"better"`` (A beats B by more than ``margin``) or ``"similar"`` (|A − B| ≤ ``margin``).
        a / b: entry labels.
        metric / definition: what is compared (``None``: the suite's).
        margin: ``by_at_least`` or ``within``, in the board's display units.
    """

    kind: str
    a: str
    b: str
    metric: str | None = None
    definition: str | None = None
    margin: float = 0.0

    def text(self, metric_label: str) -> str:
        if self.kind == "similar":
            return f"{self.a} ≈ {self.b} on {metric_label} within ±{self.margin:g}"
        more = f" by more than {self.margin:g}" if self.margin else ""
        return f"{self.a} better than {self.b} on {metric_label}{more}"


@dataclass(frozen=True)
class Claim:
    """The published claim: its sentence and the checks that make it testable (none: only stated)."""

    text: str
    checks: tuple[Check, ...] = ()


@dataclass
class CheckResult:
    """A check's numbers (display units) and verdict; ``diff``/``ci_low``/``ci_high`` are NaN without data."""

    check: Check
    metric_label: str
    a_mean: float
    a_std: float
    a_n: int
    b_mean: float
    b_std: float
    b_n: int
    diff: float
    ci_low: float
    ci_high: float
    verdict: str
    reason: str = ""
    fmt: str = "{:.2f}"

    @property
    def text(self) -> str:
        return self.check.text(self.metric_label)


@dataclass
class ClaimResult:
    claim: Claim
    results: list[CheckResult] = field(default_factory=list)

    @property
    def verdict(self) -> str | None:
        """Overall verdict (``None`` for a claim without checks)."""
        if not self.results:
            return None
        verdicts = {r.verdict for r in self.results}
        if NOT_HELD in verdicts:
            return NOT_HELD
        return HELD if verdicts == {HELD} else INCONCLUSIVE

    @property
    def summary(self) -> str:
        """``"did not hold (2 of 4 checks held, 1 did not hold, 1 inconclusive)"``."""
        if self.verdict is None:
            return "not checked (the suite states the claim without checks)"
        counts = [(sum(r.verdict == v for r in self.results), v) for v in (HELD, NOT_HELD, INCONCLUSIVE)]
        parts = [f"{n} {v}" for n, v in counts if n]
        return f"{self.verdict} ({len(self.results)} checks: {', '.join(parts)})"


# ------------------------------------------------------------------------------------------------ parsing


def parse_claim(value, path: Path, labels: Sequence[str]) -> Claim | None:
    """The suite's ``claim``: a sentence or ``{text, checks}``; mistakes are one-line ConfigErrors."""
    if value is None:
        return None
    if isinstance(value, str):
        return Claim(text=" ".join(value.split()))
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise ConfigError(f"{path}: 'claim' must be a sentence or a mapping with 'text' and 'checks'")
    bad = sorted(set(value) - {"text", "checks"})
    if bad:
        raise ConfigError(f"{path}: claim: unknown key '{bad[0]}'; valid: checks, text")
    raw = value.get("checks") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: claim.checks must be a list of {{better: ..., than: ...}} mappings")
    checks = [c for i, item in enumerate(raw) for c in _parse_check(item, f"{path}: claim.checks[{i}]", labels)]
    return Claim(text=" ".join(value["text"].split()), checks=tuple(checks))


def _parse_check(item, where: str, labels: Sequence[str]) -> list[Check]:
    kind = next((k for k in _CHECK_KEYS if isinstance(item, dict) and k in item), None)
    if kind is None:
        raise ConfigError(f"{where}: expected a mapping with 'better' (and 'than') or 'similar' (and 'to')")
    other, margin_key = ("than", "by_at_least") if kind == "better" else ("to", "within")
    bad = sorted(set(item) - _CHECK_KEYS[kind])
    if bad:
        raise ConfigError(f"{where}: unknown key '{bad[0]}'; valid: {', '.join(sorted(_CHECK_KEYS[kind]))}")
    margin = item.get(margin_key, None if kind == "similar" else 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0 or (
            kind == "similar" and margin == 0):
        need = "a number > 0" if kind == "similar" else "a number >= 0"
        raise ConfigError(f"{where}.{margin_key}: expected {need}, got {margin!r}")
    bs = item.get(other)
    bs = bs if isinstance(bs, list) else [bs]
    for name, v in [(kind, item[kind]), *((other, b) for b in bs)]:
        if str(v) not in labels:
            raise ConfigError(f"{where}.{name}: no suite entry labelled '{v}'; labels: {', '.join(labels)}")
    for key in ("metric", "definition"):
        if key in item and not isinstance(item[key], str):
            raise ConfigError(f"{where}.{key}: expected a name, got {item[key]!r}")
    if item.get("definition", METRIC_DEFS[0]) not in METRIC_DEFS + OPTIONAL_METRIC_DEFS:
        raise ConfigError(f"{where}.definition '{item['definition']}' unknown; valid: "
                          f"{', '.join(METRIC_DEFS + OPTIONAL_METRIC_DEFS)}")
    return [Check(kind=kind, a=str(item[kind]), b=str(b), metric=item.get("metric"),
                  definition=item.get("definition"), margin=float(margin)) for b in bs]


# --------------------------------------------------------------------------------------------- the verdict


def welch_interval(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
                   level: float = 0.95) -> tuple[float, float, float]:
    """``(d, lo, hi)``: the difference of means ``mean_a − mean_b`` and its Welch t-interval.

    NaN bounds when either side has fewer than two values. Zero spread on both sides gives ``[d, d]``.
    """
    d = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return d, math.nan, math.nan
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = float(t_quantile(df, 0.5 + level / 2)) * se
    return d, d - half, d + half


def verdict(kind: str, lo: float, hi: float, margin: float) -> str:
    """The rule of the module docstring on an interval oriented so that positive is "A better"."""
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if kind == "better":
        return HELD if lo > margin else NOT_HELD if hi < margin else INCONCLUSIVE
    if -margin <= lo and hi <= margin:
        return HELD
    return NOT_HELD if lo > margin or hi < -margin else INCONCLUSIVE


def evaluate(claim: Claim, store: Store, *, metric: str, definition: str, by: Sequence[str]) -> ClaimResult:
    """Every check of ``claim`` from the suite's runs (``store`` tagged with entry labels)."""
    result = ClaimResult(claim)
    boards: dict[tuple[str, str], Board] = {}
    group = list(by) if "label" in by else [*by, "label"]  # one row per entry, as on the suite's board
    for check in claim.checks:
        key = (check.metric or metric, check.definition or definition)
        if key not in boards:
            try:
                boards[key] = aggregate(store, metric=key[0], definition=key[1], by=group)
            except ConfigError as exc:  # a metric no run reports: name the check, not a command-line flag
                raise ConfigError(f"claim check '{check.text(key[0])}': {exc}") from None
        result.results.append(_check(check, boards[key]))
    return result


def _side(table: pd.DataFrame, label: str) -> tuple[float, float, int, str]:
    rows = table[table["label"] == label]
    if rows.empty:
        return math.nan, math.nan, 0, f"no finished run of '{label}'"
    if len(rows) > 1:
        return math.nan, math.nan, 0, f"'{label}' is split into {len(rows)} configs"
    r = rows.iloc[0]
    return float(r["mean"]), float(r["std"]), int(r["n"]), ""


def _check(check: Check, board: Board) -> CheckResult:
    (ma, sa, na, why_a), (mb, sb, nb, why_b) = _side(board.table, check.a), _side(board.table, check.b)
    d, lo, hi = welch_interval(ma, sa, na, mb, sb, nb)
    if check.kind == "better" and not board.higher_is_better:
        d, lo, hi = -d, -hi, -lo  # positive = A lower = A better
    reason = why_a or why_b or ("fewer than two seeds" if min(na, nb) < 2 else "")
    return CheckResult(check=check, metric_label=board.metric_label, a_mean=ma, a_std=sa, a_n=na, b_mean=mb,
                       b_std=sb, b_n=nb, diff=d, ci_low=lo, ci_high=hi,
                       verdict=verdict(check.kind, lo, hi, check.margin), reason=reason, fmt=board.fmt)
