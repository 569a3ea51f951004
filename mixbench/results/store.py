"""The results store: every ``record.json`` under one or more work dirs, as one pandas table.

A store is read-only and rebuilt from disk each time, so it can never disagree with the run records
(docs/architecture.md, "Run directory and record"). Each record is validated against the versioned schema; a corrupt or partial one is skipped
with a one-line warning naming the file, and the reason is kept in :attr:`Store.skipped` so boards can
list it. Which runs enter a board (finished, finite metric) is decided by :mod:`mixbench.results.aggregate`
because "NaN" depends on the metric definition the board uses.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from mixbench.errors import ConfigError
from mixbench.results.record import (
    METRIC_DEFS,
    METRICS_LOG_NAME,
    OPTIONAL_METRIC_DEFS,
    RECORD_NAME,
    as_float,
    load_record,
)

log = logging.getLogger("mixbench.results")

# Record fields copied into the table as they are (one column each).
_SCALAR_FIELDS = (
    "run_id", "status", "experiment", "config_hash", "method", "backbone", "dataset", "epochs", "seed",
    "started", "finished", "error",
)
# Nested objects flattened to "<field>.<key>" columns when their values are scalars.
_FLAT_FIELDS = ("time", "memory", "env")


@dataclass
class Store:
    """Runs read from work dirs.

    Attributes:
        runs: one row per valid record; columns are the record's scalar fields, ``params.<key>`` for each
            method parameter, ``method_params`` (canonical JSON, so runs with equal params group together),
            ``<metric>.<definition>`` floats (NaN kept), ``<metric>.k``, ``time.*``/``memory.*``/``env.*``
            scalars, and ``path`` (the run directory).
        skipped: ``(path, reason)`` for each record that could not be read or failed validation.
        roots: the work dirs that were scanned.
    """

    runs: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs)

    def metric_names(self) -> list[str]:
        """Metric names present in at least one record (``top1``, ``top5``, ...)."""
        names = {c.rsplit(".", 1)[0] for c in self.runs.columns if c.endswith(".median_last_k")}
        return sorted(names)


def iter_record_paths(roots: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield every ``record.json`` under ``roots`` (a root may itself be a run dir or a record file)."""
    for root in roots:
        root = os.fspath(root)
        if os.path.isfile(root):
            yield root
        elif not os.path.isdir(root):
            raise ConfigError(f"work dir '{root}': no such directory")
        else:
            yield from _walk(root)


def _walk(top: str) -> Iterator[str]:
    # os.scandir and plain string joins (no Path objects): scanning 10,000 run dirs is most of a board's cost.
    record = top + os.sep + RECORD_NAME
    if os.path.isfile(record):
        yield record  # a run dir holds one run: do not walk its checkpoints / wandb / tensorboard folders
        return
    try:
        with os.scandir(top) as it:
            entries = sorted(e.path for e in it if e.name[0] != "." and e.is_dir())
    except OSError:
        return
    for path in entries:
        yield from _walk(path)


_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
_METRIC_SUFFIXES = tuple((d, "." + d) for d in METRIC_DEFS + OPTIONAL_METRIC_DEFS)


def flatten_record(rec: Mapping[str, Any], path: str | os.PathLike,
                   _params_json: dict | None = None) -> dict[str, Any]:
    """One table row from a validated record (see :class:`Store` for the columns).

    ``_params_json`` is a cache of canonical params JSON shared across one scan (most runs of a store
    share a handful of parameter sets, and ``json.dumps`` is a large part of a scan's cost).
    """
    row: dict[str, Any] = {k: rec.get(k) for k in _SCALAR_FIELDS}
    params = rec.get("method_params") or {}
    row["method_params"] = _canonical_params(params, _params_json)
    for key, value in params.items():
        row["params." + key] = value if _is_scalar(value) else json.dumps(value, sort_keys=True, default=str)
    for name, m in rec.get("metrics", {}).items():
        for d, suffix in _METRIC_SUFFIXES:
            v = m.get(d)
            row[name + suffix] = v if type(v) is float else as_float(v)
        if "k" in m:
            row[name + ".k"] = m["k"]
        if "direction" in m:
            row[name + ".direction"] = m["direction"]
    for group in _FLAT_FIELDS:
        for key, value in (rec.get(group) or {}).items():
            if _is_scalar(value):
                row[group + "." + key] = value
    row["path"] = os.path.dirname(os.fspath(path))
    return row


def _canonical_params(params: Mapping[str, Any], cache: dict | None) -> str:
    if cache is None:
        return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    try:
        # the value's type is part of the key: 1, 1.0 and True hash alike but are written differently
        key = tuple((k, type(v), v) for k, v in params.items())
        hit = cache.get(key)
    except TypeError:  # list/dict values are not hashable: no caching for those
        return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    if hit is None:
        hit = cache[key] = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hit


def _is_scalar(value: Any) -> bool:
    return type(value) in _SCALAR_TYPES or isinstance(value, (str, int, float, bool))


def scan(roots: Iterable[str | os.PathLike] | str | os.PathLike, *, warn: bool = True) -> Store:
    """Read every record under ``roots`` into a :class:`Store`.

    Args:
        roots: work dirs (or run dirs, or record files) to scan recursively.
        warn: log a one-line warning per skipped record (``mixbench.results`` logger).

    Raises:
        ConfigError: a root does not exist.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    roots = [str(r) for r in roots]
    rows, skipped, params_json = [], [], {}
    for path in iter_record_paths(roots):
        rec, reason = load_record(path)
        if rec is None:
            skipped.append((str(path), reason))
            if warn:
                log.warning("skipping %s: %s", path, reason)
            continue
        rows.append(flatten_record(rec, path, params_json))
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=[*_SCALAR_FIELDS, "method_params", "path"])
    return Store(runs=runs, skipped=skipped, roots=roots)


def read_curve(run_dir: str | os.PathLike, metric: str = "top1") -> tuple[list[float], list[float]]:
    """Validation curve ``(epochs, values)`` of one run from its ``metrics.jsonl``.

    A line counts when it has an ``epoch`` and the metric under one of the names loggers use for it
    (``top1``, ``val/top1``, ``accuracy/top1``, ``val/accuracy/top1``). Unparsable lines (a run killed
    mid-write) are ignored; a later line for the same epoch wins, so a resumed run is not double counted.
    """
    path = Path(run_dir) / METRICS_LOG_NAME
    keys = (metric, f"val/{metric}", f"accuracy/{metric}", f"val/accuracy/{metric}", f"val_{metric}")
    points: dict[float, float] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if metric not in line:  # cheap filter: most lines are per-iteration train logs
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("kind", "val") != "val":  # train/epoch rows of the trainer's log
                    continue
                epoch = entry.get("epoch")
                if not isinstance(epoch, (int, float)):
                    continue
                for key in keys:
                    if key in entry:
                        value = as_float(entry[key])
                        if value == value:  # NaN epochs leave a gap instead of breaking the plot
                            points[float(epoch)] = value
                        break
    except OSError:
        return [], []
    epochs = sorted(points)
    return epochs, [points[e] for e in epochs]
