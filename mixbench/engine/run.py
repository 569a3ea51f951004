"""Train one run end to end: run dir, no-op/resume/retrain decision, Runner, record (docs/architecture.md, "Run directory and record").

The run dir ``<work_dir>/<experiment>/<config_hash>-s<seed>/`` is a pure function of the config, so every
DDP rank and every rerun of the same command finds the same directory. It holds ``config.yaml`` (the
resolved config), ``record.json`` (atomic; ``running`` → ``finished`` or ``failed``), ``metrics.jsonl``,
checkpoints (``epoch_N.pth`` + ``last_checkpoint``), ``tb/`` and ``wandb/``.
"""

from __future__ import annotations

import netrc
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import yaml

from mixbench.config.validate import config_hash, run_dir_of
from mixbench.engine import dist
from mixbench.engine.report import (base_record, environment, now, peak_memory, read_metrics, summarise_run, timing,
                                    truncate_metrics)
from mixbench.errors import ConfigError
from mixbench.results.record import atomic_write_text, read_record, validate_record, write_record


@dataclass
class RunResult:
    """What happened: ``finished``, ``skipped`` (already finished) or ``failed``."""

    status: str
    run_dir: str
    record: dict = field(default_factory=dict)


def last_checkpoint(run_dir: str) -> str | None:
    """Path of the last checkpoint mmengine saved in ``run_dir`` (None when there is none)."""
    marker = os.path.join(run_dir, "last_checkpoint")
    if not os.path.exists(marker):
        return None
    with open(marker, encoding="utf-8") as f:
        path = f.read().strip()
    local = os.path.join(run_dir, os.path.basename(path))
    # mmengine stores an absolute path; prefer the copy inside this run dir (the run dir may have moved)
    return local if os.path.exists(local) else (path if os.path.exists(path) else None)


def checkpoint_epoch(path: str) -> int:
    m = re.search(r"epoch_(\d+)\.pth$", path)
    if m:
        return int(m.group(1))
    return int(torch.load(path, map_location="cpu", weights_only=False)["meta"]["epoch"])


def wandb_mode(setting: str) -> str:
    """``auto``: ``WANDB_MODE`` when set, else online with credentials (API key or netrc) and offline without."""
    if setting != "auto":
        return "disabled" if setting == "off" else setting
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def init_wandb(cfg: Mapping[str, Any], run_dir: str, run_id: str) -> Any:
    mode = wandb_mode(cfg["runtime"]["wandb"])
    if mode == "disabled":
        return None
    wid = re.sub(r"[^A-Za-z0-9_-]", "-", run_id)
    try:
        import wandb

        return wandb.init(project=cfg["runtime"]["wandb_project"], name=run_id, id=wid, dir=run_dir, mode=mode,
                          config=dict(cfg), resume="allow", reinit="finish_previous")
    except Exception as exc:  # wandb is an extra sink: a broken setup must not lose the run
        print(f"warning: wandb ({mode}) disabled for this run: {type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return None


def _decide(run_dir: str, force: bool) -> tuple[str, str | None, dict | None]:
    """('skip'|'resume'|'fresh', checkpoint, previous record) — decided on the main rank only."""
    rec_path = os.path.join(run_dir, "record.json")
    prev = read_record(rec_path) if os.path.exists(rec_path) else None
    if force:
        return "fresh", None, None
    if prev is not None and prev.get("status") == "finished":
        return "skip", None, prev
    ckpt = last_checkpoint(run_dir)
    return ("resume" if ckpt else "fresh"), ckpt, prev


def train(cfg: Mapping[str, Any], source: str = "", *, force: bool = False) -> RunResult:
    """Train the run of a validated config (or do nothing when it already finished)."""
    t_start = time.perf_counter()
    rt = cfg["runtime"]
    info = dist.detect(rt["launcher"])
    device = dist.select_device(rt["device"], info)
    dist.init(rt["launcher"], rt["dist_backend"], device, info)
    h = config_hash(cfg)
    run_dir = run_dir_of(cfg)
    run_id = f"{cfg['experiment']}/{h}-s{cfg['seed']}"
    decision = dist.broadcast_object(_decide(run_dir, force) if info.is_main else None)
    action, ckpt, prev = decision  # type: ignore[misc]
    if action == "skip":
        return RunResult("skipped", run_dir, prev or {})
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if info.is_main:
        if action == "fresh" and os.path.isdir(run_dir):
            shutil.rmtree(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        if action == "resume":
            truncate_metrics(metrics_path, checkpoint_epoch(ckpt))
        atomic_write_text(os.path.join(run_dir, "config.yaml"), yaml.safe_dump(dict(cfg), sort_keys=False))
    dist.barrier()

    from mixbench.engine.builder import build_runner  # heavy imports only when training

    started = ((prev or {}).get("started") or now()) if action == "resume" else now()
    record = base_record(cfg, run_id, h, started)
    record["env"] = environment(device, info.world_size)
    rec_path = os.path.join(run_dir, "record.json")
    wandb_run = init_wandb(cfg, run_dir, run_id) if info.is_main else None
    try:
        runner = build_runner(cfg, run_dir, device=device, info=info, resume=action == "resume",
                              wandb_run=wandb_run, source=source)
        record.update(runner.mixbench_data.info)
        if info.is_main:
            write_record(rec_path, record)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            runner.train()
            record["status"] = "finished"
        except ConfigError:
            raise
        except Exception as exc:  # a failed run is recorded, not lost: NaN loss, OOM, data errors...
            record["status"] = "failed"
            record["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
        if record["status"] == "finished":
            dist.barrier()
        record["finished"] = now()
        rows = read_metrics(metrics_path) if info.is_main else []
        record.update(summarise_run(rows, cfg))
        record["time"] = timing(rows, time.perf_counter() - t_start)
        record["memory"] = peak_memory(device)
        if info.is_main:
            problems = validate_record(record)
            if problems:
                raise RuntimeError("record does not match the schema: " + "; ".join(problems))
            write_record(rec_path, record)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    return RunResult(record["status"], run_dir, record)
