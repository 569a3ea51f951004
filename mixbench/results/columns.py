"""Extra metric columns on a board: other metrics of the same runs, beside the ranked one.

A suite's ``columns: [ece_ts, top1]`` (or ``[{metric: top1, definition: final}]``) adds, per board row, the
mean ± std over the same seeds of each named metric, in that metric's own unit and format; the ranking stays
the board's metric. The definition defaults to the board's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mixbench.errors import ConfigError
from mixbench.results.aggregate import Board, aggregate
from mixbench.results.record import METRIC_DEFS, OPTIONAL_METRIC_DEFS
from mixbench.results.store import Store

_STATS = ("mean", "std", "n")


@dataclass(frozen=True)
class Column:
    """One extra column: a metric under a definition, with the display facts of its own board."""

    metric: str
    definition: str | None = None  # None: the board's
    header: str = ""
    fmt: str = "{:.2f}"
    scale: float = 1.0

    def key(self, stat: str) -> str:
        """The board-table column of one statistic (``ece_ts.median_last_k:mean``)."""
        return f"{self.metric}.{self.definition}:{stat}"


def parse_columns(value, path: Path) -> list[Column]:
    """The suite's ``columns``: metric names or ``{metric, definition}`` mappings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: 'columns' must be a list of metric names, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        item = {"metric": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str) or set(item) - {"metric",
                                                                                                "definition"}:
            raise ConfigError(f"{path}: columns[{i}]: expected a metric name or {{metric: ..., definition: ...}}")
        definition = item.get("definition")
        if definition is not None and definition not in METRIC_DEFS + OPTIONAL_METRIC_DEFS:
            raise ConfigError(f"{path}: columns[{i}].definition '{definition}' unknown; valid: "
                              f"{', '.join(METRIC_DEFS + OPTIONAL_METRIC_DEFS)}")
        out.append(Column(metric=item["metric"], definition=definition))
    return out


def add_columns(board: Board, store: Store, columns: Sequence[Column], by: Sequence[str]) -> Board:
    """``board`` with each column's mean, std and n per row, aggregated from ``store`` grouped by ``by`` (the
    grouping ``board`` was built with); rows without that metric get NaN."""
    for col in columns:
        definition = col.definition or board.definition
        try:
            other = aggregate(store, metric=col.metric, definition=definition, by=list(by))
        except ConfigError as exc:  # a metric no run reports: name the column, not a command-line flag
            raise ConfigError(f"columns: '{col.metric}': {exc}") from None
        lower = "" if other.higher_is_better else ", lower is better"
        when = "" if definition == board.definition else f", {other.definition_text}"
        done = Column(metric=col.metric, definition=definition, fmt=other.fmt, scale=other.scale,
                      header=f"{other.metric_label.removesuffix(' (%)')} ({'%, ' if other.scale == 100 else ''}"
                             f"mean ± std{lower}{when})")
        on = [c for c in board.by if c in other.table.columns]  # a split into variants may differ per metric
        stats = other.table[[*on, *_STATS]].rename(columns={s: done.key(s) for s in _STATS})
        board.table = board.table.merge(stats, on=on, how="left")
        board.columns.append(done)
    return board
