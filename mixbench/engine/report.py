"""Assemble the run record (DESIGN §6) from the config, ``metrics.jsonl`` and the environment."""

from __future__ import annotations

import datetime as _dt
import json
import os
import resource
import statistics
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

import mixbench
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


def summarise_metrics(rows: list[dict], k: int) -> dict[str, dict]:
    """``{metric: {final, best, median_last_k, k, n}}`` over the validation rows."""
    vals = per_epoch(rows, "val")
    names = sorted({key for r in vals for key in r if key.startswith("top")})
    out = {}
    for name in names:
        series = [float(r[name]) for r in vals if name in r]
        if not series:
            continue
        last = series[-k:]
        out[name] = {"final": series[-1], "best": max(series), "median_last_k": statistics.median(last),
                     "k": len(last), "n": len(series)}
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
        "loss": dict(cfg["loss"]), "config": dict(cfg),
    }
