"""The run record (docs/architecture.md, "Run directory and record"): the one file per run that leaderboards read.

``record.json`` is written atomically (temp file in the same directory, fsync, rename) so a reader never sees
a half-written record. :func:`validate_record` checks a loaded record against the versioned schema and
returns a list of problems, one per bad field.

Metric values are stored as the evaluator computes them: top-k accuracies and ECEs as fractions in [0, 1]
(boards show them in percent). Non-finite values are stored as the strings ``"nan"``/``"inf"``. Each metric
carries its ``direction`` (``higher``/``lower`` is better; records written before it existed hold only
higher-is-better top-k accuracies) and, after model selection on a held-out split, ``selected`` (its value at the
selected epoch) and ``selected_epoch``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed")
METRIC_DEFS = ("final", "best", "median_last_k")
OPTIONAL_METRIC_DEFS = ("selected",)
DIRECTIONS = ("higher", "lower")
RECORD_NAME = "record.json"
METRICS_LOG_NAME = "metrics.jsonl"
# How a non-finite float is spelled after :func:`_json_safe` (``str(float("nan"))`` etc.).
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# field -> accepted python types (None allowed where listed)
_REQUIRED: dict[str, tuple[type, ...]] = {
    "schema": (int,),
    "run_id": (str,),
    "status": (str,),
    "experiment": (str,),
    "config_hash": (str,),
    "method": (str,),
    "method_params": (dict,),
    "backbone": (str,),
    "dataset": (str,),
    "epochs": (int,),
    "seed": (int,),
    "metrics": (dict,),
    "time": (dict,),
    "memory": (dict,),
    "env": (dict,),
    "started": (str,),
    "finished": (str, type(None)),
    "error": (str, type(None)),
}


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (published boards are shared).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON; store them as strings so a failed metric survives a round trip."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def record_text(record: Mapping[str, Any]) -> str:
    """The exact text of ``record.json`` for ``record`` (NaN/inf metric values as strings)."""
    return json.dumps(_json_safe(record), indent=2, sort_keys=True) + "\n"


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON atomically; NaN/inf metric values are kept as strings."""
    atomic_write_text(path, record_text(record))


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def as_float(value: Any) -> float:
    """A metric value as a float: numbers as they are, ``"nan"``/``"inf"`` strings back to floats, else NaN."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower(), math.nan)
    return math.nan


def load_record(path: str | os.PathLike) -> tuple[dict[str, Any] | None, str | None]:
    """Read and validate one record; return ``(record, None)`` or ``(None, one-line reason)``."""
    try:
        # bytes straight to json.loads: no text-layer decode pass (a store scan reads thousands of these)
        with open(path, "rb") as f:
            data = f.read()
        rec = json.loads(data)
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable ({e.__class__.__name__}: {e})"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); partial write?"
    if is_valid_record(rec):
        return rec, None
    problems = validate_record(rec)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, f"invalid record: {problems[0]}{more}"
    return rec, None


def _metric_value_ok(value: Any) -> bool:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    return isinstance(value, str) and value.strip().lower() in _NON_FINITE


# Exact JSON types per field for :func:`is_valid_record` (json.loads never yields subclasses).
_EXACT = tuple((key, frozenset(types)) for key, types in _REQUIRED.items())
_NUMBER_TYPES = frozenset((int, float))
_MISSING = object()


def is_valid_record(rec: Any) -> bool:
    """True when ``rec`` is certainly valid: the fast path of a store scan.

    It accepts only what :func:`validate_record` accepts, checking exact JSON types without building
    messages; anything unusual (a missing field, a bool where an int belongs, a dict subclass) returns False
    and the caller falls back to :func:`validate_record` for the reasons.
    """
    if type(rec) is not dict:
        return False
    get = rec.get
    for key, types in _EXACT:
        if type(get(key, _MISSING)) not in types:
            return False
    if rec["schema"] != SCHEMA_VERSION or rec["status"] not in STATUSES:
        return False
    for m in rec["metrics"].values():
        if type(m) is not dict:
            return False
        for d in METRIC_DEFS:
            v = m.get(d, _MISSING)
            if v is None or type(v) in _NUMBER_TYPES:
                continue
            if type(v) is not str or v.strip().lower() not in _NON_FINITE:
                return False
        k = m.get("k", _MISSING)
        if k is not _MISSING and (type(k) is not int or k < 1):
            return False
        if m.get("direction", "higher") not in DIRECTIONS:
            return False
        v = m.get("selected")
        if v is not None and type(v) not in _NUMBER_TYPES and (type(v) is not str or v.strip().lower()
                                                                not in _NON_FINITE):
            return False
    return rec["status"] != "failed" or bool(rec["error"])


def validate_record(rec: Any) -> list[str]:
    """Problems with ``rec`` against schema :data:`SCHEMA_VERSION`; an empty list means valid."""
    if not isinstance(rec, dict):
        return [f"record: expected a JSON object, got {type(rec).__name__}"]
    problems: list[str] = []
    for key, types in _REQUIRED.items():
        if key not in rec:
            problems.append(f"{key}: missing")
        elif not isinstance(rec[key], types) or (isinstance(rec[key], bool) and bool not in types):
            names = "/".join("null" if t is type(None) else t.__name__ for t in types)
            problems.append(f"{key}: expected {names}, got {type(rec[key]).__name__}")
    if problems:
        return problems
    if rec["schema"] != SCHEMA_VERSION:
        problems.append(f"schema: expected {SCHEMA_VERSION}, got {rec['schema']}")
    if rec["status"] not in STATUSES:
        problems.append(f"status: expected one of {'/'.join(STATUSES)}, got {rec['status']!r}")
    for name, m in rec["metrics"].items():
        if not isinstance(m, dict):
            problems.append(f"metrics.{name}: expected an object with {', '.join(METRIC_DEFS)}")
            continue
        for d in METRIC_DEFS:
            if d not in m:
                problems.append(f"metrics.{name}.{d}: missing")
            elif not _metric_value_ok(m[d]):
                problems.append(f"metrics.{name}.{d}: expected a number, null or 'nan', got {m[d]!r}")
        # k of median_last_k: optional, but a positive int when present (it goes into the board header).
        if "k" in m and (not isinstance(m["k"], int) or isinstance(m["k"], bool) or m["k"] < 1):
            problems.append(f"metrics.{name}.k: expected a positive int, got {m['k']!r}")
        if m.get("direction", "higher") not in DIRECTIONS:
            problems.append(f"metrics.{name}.direction: expected one of {'/'.join(DIRECTIONS)}, "
                            f"got {m['direction']!r}")
        if "selected" in m and not _metric_value_ok(m["selected"]):
            problems.append(f"metrics.{name}.selected: expected a number, null or 'nan', got {m['selected']!r}")
    if rec["status"] == "failed" and not rec.get("error"):
        problems.append("error: a failed run must say why")
    return problems
