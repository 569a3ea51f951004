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
from typing import Any, Callable, Mapping

import torch
import yaml

from mixbench.config.validate import config_hash, run_dir_of
from mixbench.engine import dist, startup
from mixbench.engine.lock import LOCK_NAME, RunLock
from mixbench.engine.report import (
    base_record,
    environment,
    now,
    peak_memory,
    read_metrics,
    summarise_run,
    timing,
    truncate_metrics,
)
from mixbench.errors import ConfigError, RunDirError
from mixbench.results.record import atomic_write_text, read_record, validate_record, write_record


@dataclass
class RunResult:
    """What happened: ``finished``, ``skipped`` (already finished) or ``failed``."""

    status: str
    run_dir: str
    record: dict = field(default_factory=dict)


_CHECKPOINT = re.compile(r"epoch_(\d+)\.pth")


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be resumed from (truncated, unreadable, not an mmengine checkpoint), or None."""
    # mmengine is imported only when a run dir has checkpoints
    from mixbench.engine.compat import load_checkpoint

    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except Exception as exc:  # torch.load raises many types for a truncated or foreign file
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "epoch" not in meta or not isinstance(ckpt.get("state_dict"), dict):
        return "no meta.epoch or state_dict"
    return None


def last_checkpoint(run_dir: str) -> str | None:
    """The newest complete ``epoch_N.pth`` inside ``run_dir`` (None when there is none).

    The run dir's files are read rather than the ``last_checkpoint`` marker: mmengine writes an absolute path
    there, stale once the run dir has moved, and a kill between a save and the marker update leaves a newer
    complete checkpoint that the marker does not name. A checkpoint that fails :func:`checkpoint_problem` is
    skipped with a warning, and the one before it is taken. The run dir's checkpoints written by an older
    mixbench are first converted by :func:`~mixbench.engine.compat.rewrite_legacy_checkpoint`.
    """
    if not os.path.isdir(run_dir):
        return None
    found = sorted(((int(m.group(1)), name) for name in os.listdir(run_dir)
                    if (m := _CHECKPOINT.fullmatch(name))), reverse=True)
    if not found:
        return None
    from mixbench.engine.compat import rewrite_legacy_checkpoint

    for _, name in found:
        path = os.path.join(run_dir, name)
        if rewrite_legacy_checkpoint(path):  # the run's own file, from before checkpoints were weights-only
            print(f"note: {path} rewritten in the weights-only checkpoint format", file=sys.stderr)
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print(f"warning: not resuming from {path}: {problem}", file=sys.stderr)
    return None


def checkpoint_epoch(path: str) -> int:
    """The epoch a checkpoint ends (from its ``epoch_N.pth`` name)."""
    m = _CHECKPOINT.fullmatch(os.path.basename(path))
    if m is None:
        raise ValueError(f"{path}: not an epoch_N.pth checkpoint")
    return int(m.group(1))


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

        startup.patch_wandb_launch_inputs()
        return wandb.init(project=cfg["runtime"]["wandb_project"], name=run_id, id=wid, dir=run_dir, mode=mode,
                          config=dict(cfg), resume="allow", reinit="finish_previous")
    except Exception as exc:  # wandb is an extra sink: a broken setup must not lose the run
        print(f"warning: wandb ({mode}) disabled for this run: {type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return None


def finish_wandb(wandb_run: Any) -> None:
    try:
        wandb_run.finish()
    except Exception as exc:  # as in init_wandb: the sink's failure (a full disk...) must not hide the run's
        print(f"warning: wandb could not finish this run: {type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:300]}", file=sys.stderr)


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
    """Train the run of a validated config (or do nothing when it already finished).

    The main rank holds the run dir's lock (:mod:`mixbench.engine.lock`) from before the decision to the end.
    Any failure once the record exists ends it as ``failed`` with the error (where the record can still be
    written); a :class:`ConfigError` from the step is then raised again for the CLI's one line.

    Raises:
        RunDirError: another process holds the run dir, or it cannot be written before training starts.
    """
    t_start = time.perf_counter()
    rt = cfg["runtime"]
    info = dist.detect(rt["launcher"])
    device = dist.select_device(rt["device"], info)
    dist.init(rt["launcher"], rt["dist_backend"], device, info)
    run_dir = run_dir_of(cfg, info.world_size)
    lock = RunLock(run_dir) if info.is_main else None
    _on_main(info, lock.acquire if lock is not None else None)
    try:
        return _train_locked(cfg, source, force, run_dir, info, device, t_start)
    finally:
        if lock is not None:
            lock.release()


def _on_main(info: dist.DistInfo, fn: Callable[[], None] | None) -> None:
    """Run ``fn`` on the main rank; its RunDirError (or OSError, as one) is raised on every rank, not only there."""
    error = None
    if fn is not None:
        try:
            fn()
        except RunDirError as exc:
            error = str(exc)
        except OSError as exc:
            error = os_error_text(exc, None)
    error = dist.broadcast_object(error)
    if error:
        raise RunDirError(str(error))


def os_error_text(exc: OSError, path: str | None) -> str:
    """``cannot write <file> (<reason>)`` without the errno noise, for one-line messages (``path``: the file
    being written, for errors such as a failed flush that do not name it)."""
    where = exc.filename or path
    return f"cannot write{f' {where}' if where else ''} ({exc.strerror or exc})"


def error_text(exc: BaseException) -> str:
    """The exception as the one line a record stores."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]


def _prepare(run_dir: str, action: str, ckpt: str | None, cfg: Mapping[str, Any]) -> None:
    """Main rank: clear (fresh; the lock file stays) or truncate (resume) the run dir, write config.yaml."""
    if action == "fresh":
        for entry in os.scandir(run_dir):
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    else:
        truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), checkpoint_epoch(ckpt))
    path = os.path.join(run_dir, "config.yaml")
    try:
        atomic_write_text(path, yaml.safe_dump(dict(cfg), sort_keys=False))
    except OSError as exc:
        raise RunDirError(os_error_text(exc, path)) from None


def _train_locked(cfg: Mapping[str, Any], source: str, force: bool, run_dir: str, info: dist.DistInfo,
                  device: torch.device, t_start: float) -> RunResult:
    h = config_hash(cfg, world_size=info.world_size)
    run_id = f"{cfg['experiment']}/{h}-s{cfg['seed']}"
    decision = dist.broadcast_object(_decide(run_dir, force) if info.is_main else None)
    action, ckpt, prev = decision  # type: ignore[misc]
    if action == "skip":
        return RunResult("skipped", run_dir, prev or {})
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    _on_main(info, (lambda: _prepare(run_dir, action, ckpt, cfg)) if info.is_main else None)

    from mixbench.engine.builder import build_runner  # heavy imports only when training
    from mixbench.engine.hooks import NonFiniteLoss

    started = ((prev or {}).get("started") or now()) if action == "resume" else now()
    record = base_record(cfg, run_id, h, started)
    record["env"] = environment(device, info.world_size)
    rec_path = os.path.join(run_dir, "record.json")
    wandb_run = init_wandb(cfg, run_dir, run_id) if info.is_main else None
    failure: Exception | None = None
    try:
        try:
            if info.is_main:
                write_record(rec_path, record)
            runner = build_runner(cfg, run_dir, device=device, info=info, resume_from=ckpt,
                                  wandb_run=wandb_run, source=source)
            record.update(runner.mixbench_data.info)  # the task's data facts: held-out split, label noise
            if info.is_main:
                write_record(rec_path, record)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            runner.train()
            record["status"] = "finished"
        except Exception as exc:  # a failed run is recorded, not lost: NaN loss, OOM, full disk, data errors...
            failure = exc
            record["status"] = "failed"
            record["error"] = error_text(exc)
        # every rank gets here together after a finished run or a non-finite loss (a collective check)
        together = failure is None or isinstance(failure, NonFiniteLoss)
        if together:
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
            try:
                write_record(rec_path, record)
            except OSError as exc:  # the result must still reach the user: say so in the one line
                note = f"record.json left unfinished: {os_error_text(exc, rec_path)}"
                record["status"] = "failed"
                record["error"] = f"{record['error']}; {note}" if record.get("error") else note
                if isinstance(failure, ConfigError):
                    failure = type(failure)(f"{failure}; {note}")
    finally:
        if wandb_run is not None:
            finish_wandb(wandb_run)
    if together and failure is not None:
        dist.barrier()  # torchrun ends the job at the first failed process: not before the record is written
    if isinstance(failure, ConfigError):
        raise failure
    return RunResult(record["status"], run_dir, record)
