"""Assemble the run record (docs/architecture.md, "Run directory and record") from the config, ``metrics.jsonl``
and the environment."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import resource
import statistics
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

import mixbench
from mixbench.evaluation.specs import HELDOUT_PREFIX, metric_spec
from mixbench.results.record import SCHEMA_VERSION, atomic_write_text


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_sha(path: str | os.PathLike = mixbench.__file__) -> str | None:
    """Commit of the mixbench checkout (``+dirty`` when it has local changes), or None outside git."""
    cwd = Path(path).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"mixbench": mixbench.__version__, "git_sha": git_sha(), "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None, "device": name,
            "world_size": world_size}


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak accelerator memory allocated by torch; on CPU the peak resident set size of the process."""
    if device.type == "cuda":
        return {"peak_bytes": int(torch.cuda.max_memory_allocated(device)), "kind": "cuda_allocated"}
    return {"peak_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "kind": "cpu_rss"}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Lines of metrics.jsonl (a torn last line from a killed process is skipped)."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_metrics(path: str | os.PathLike, last_epoch: int) -> None:
    """Drop lines of epochs after ``last_epoch`` (a resumed run replays them)."""
    rows = [r for r in read_metrics(path) if r.get("epoch", 0) <= last_epoch]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def per_epoch(rows: Iterable[dict], kind: str) -> list[dict]:
    """The last row of ``kind`` for each epoch, in epoch order."""
    by_epoch: dict[int, dict] = {}
    for r in rows:
        if r.get("kind") == kind:
            by_epoch[int(r["epoch"])] = r
    return [by_epoch[e] for e in sorted(by_epoch)]


def _best(series: list[float], direction: str) -> float:
    finite = [v for v in series if math.isfinite(v)]
    if not finite:
        return math.nan
    return max(finite) if direction == "higher" else min(finite)


def selected_row(vals: list[dict], select: str | None) -> dict | None:
    """The validation row whose ``heldout_<select>`` is best (first on ties), ``None`` without a held-out split."""
    key = None if select is None else HELDOUT_PREFIX + select
    spec = None if key is None else metric_spec(key)
    scored = [r for r in vals if spec is not None and key in r and math.isfinite(float(r[key]))]
    if not scored:
        return None
    sign = 1.0 if spec.direction == "higher" else -1.0
    return max(scored, key=lambda r: sign * float(r[key]))


def summarise_metrics(rows: list[dict], k: int, select: str | None = None) -> dict[str, dict]:
    """``{metric: {final, best, median_last_k, k, n, direction[, selected, selected_epoch]}}`` over the validation
    rows, for every logged key that a registered metric declares (its spec gives the direction ``best`` follows).

    With ``select`` and a held-out split, ``selected`` is each metric at the epoch whose ``heldout_<select>`` is
    best: model selection on the held-out split, the number C-Mixup reports.
    """
    vals = per_epoch(rows, "val")
    specs = {key: metric_spec(key) for r in vals for key in r}
    chosen = selected_row(vals, select)
    out = {}
    for name in sorted(key for key, spec in specs.items() if spec is not None):
        series = [float(r[name]) for r in vals if name in r]
        if not series:
            continue
        last = series[-k:]
        direction = specs[name].direction
        out[name] = {"final": series[-1], "best": _best(series, direction), "median_last_k": statistics.median(last),
                     "k": len(last), "n": len(series), "direction": direction}
        if chosen is not None and name in chosen:
            out[name].update(selected=float(chosen[name]), selected_epoch=int(chosen["epoch"]))
    return out


def fitted_values(rows: list[dict]) -> dict[str, Any]:
    """Values fitted on the held-out split rather than scored (the temperature), per epoch and final."""
    vals = [r for r in per_epoch(rows, "val") if "temperature" in r]
    if not vals:
        return {}
    return {"temperature": {"final": float(vals[-1]["temperature"]),
                            "per_epoch": [float(r["temperature"]) for r in vals]}}


def summarise_run(rows: list[dict], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The record fields computed from ``metrics.jsonl``: ``metrics`` and, when fitted, ``fitted``."""
    select = (cfg.get("task") or {}).get("select")
    if select is None:
        from mixbench.config.task import build_task

        select = build_task(cfg).select
    out: dict[str, Any] = {"metrics": summarise_metrics(rows, cfg["eval"]["median_last_k"], select)}
    fitted = fitted_values(rows)
    if fitted:
        out["fitted"] = fitted
    return out


def timing(rows: list[dict], attempt_wall_s: float) -> dict[str, Any]:
    """Seconds and throughput. ``wall_s`` sums the training and validation time of every epoch once (so a
    resumed run reports what an uninterrupted one would); ``attempt_wall_s`` is the last process's wall time
    including setup."""
    epochs = per_epoch(rows, "epoch")
    vals = per_epoch(rows, "val")
    train_s = sum(r["train_s"] for r in epochs)
    images = sum(r["images"] for r in epochs)
    val_s = sum(r.get("val_s", 0.0) for r in vals)
    return {"wall_s": train_s + val_s, "attempt_wall_s": attempt_wall_s, "train_s": train_s, "val_s": val_s,
            "train_images_per_s": images / train_s if train_s > 0 else 0.0,
            "epoch_s_mean": train_s / len(epochs) if epochs else 0.0}


def base_record(cfg: Mapping[str, Any], run_id: str, config_hash: str, started: str) -> dict[str, Any]:
    mix = dict(cfg["mixup"])
    method = mix.pop("type")
    backbone = cfg["model"]["backbone"]
    name = backbone.get("name") or backbone.get("model_name")
    return {
        "schema": SCHEMA_VERSION, "run_id": run_id, "status": "running", "experiment": cfg["experiment"],
        "config_hash": config_hash, "method": method, "method_params": mix,
        "backbone": f"{backbone['type']}:{name}" if name else backbone["type"], "dataset": cfg["data"]["type"],
        "epochs": cfg["schedule"]["epochs"], "seed": cfg["seed"], "metrics": {}, "time": {}, "memory": {},
        "env": {}, "started": started, "finished": None, "error": None,
        "loss": dict(cfg["loss"]), "task": (cfg.get("task") or {}).get("type", "classification"),
        "config": dict(cfg),
    }
